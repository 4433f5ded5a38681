#!/usr/bin/env bash
# Whether clang can build libFuzzer harnesses; installs Debian's clang when it cannot.
#   deps.sh [--check] CC      --check: only say (exit 1 when it cannot), install nothing
set -euo pipefail
check=0
[ "${1:-}" = --check ] && { check=1; shift; }
cc=${1:-clang-14}
works() {
    local d
    d=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' > "$d/t.c"
    local r=0
    "$cc" -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1 || r=1
    rm -rf "$d"
    return $r
}
command -v "$cc" >/dev/null 2>&1 && works && exit 0
[ $check = 1 ] && exit 1
echo "memvisor: installing clang for the fuzz harnesses"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
works
