#!/usr/bin/env bash
# make bench: the benchmarks of DESIGN §9 on this machine. They measure; nothing here asserts.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR}
echo "== dispatch (bench/dispatch) =="
"$build/bench/dispatch" --tasks 200000 --runs 3
echo
echo "== detection (bench/detect) =="
"$build/bench/detect" --runs 10
echo
echo "== service recycling under load (bench/service.sh) =="
bash "$(dirname "$0")/service.sh" "$build"
echo
echo "== soft limit cost to a growing task (bench/soft_throttle.sh) =="
bash "$(dirname "$0")/soft_throttle.sh" "$build" 3
