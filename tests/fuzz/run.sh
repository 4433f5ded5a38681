#!/usr/bin/env bash
# Runs the libFuzzer harnesses built by tests/fuzz/fuzz.mk.
#   run.sh smoke BUILD 0 NAME...              each harness once over its seeds (a regression run)
#   run.sh fuzz BUILD SECONDS 'NAME FLAGS'... each harness for SECONDS; new inputs are kept in
#                                             BUILD/corpus/NAME, crashes in BUILD/crashes/
# Prints one line per harness (executions, coverage, crashes); exits 1 if any crashed.
set -uo pipefail
mode=$1 build=$2 secs=$3
shift 3
# A small quarantine: the control harness frees a connection per input, and ASan's default
# quarantine (256 MiB) would otherwise grow the process until libFuzzer's RSS limit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
seeds=tests/fuzz/corpus
failed=0
for spec in "$@"; do
    read -r name flags <<<"$spec"
    bin=$build/fuzz_$name
    log=$build/fuzz_$name.log
    mkdir -p "$build/corpus/$name" "$build/crashes"
    if [ "$mode" = smoke ]; then
        # Every seed (and every kept crash reproducer: tests/fuzz/corpus holds them) once.
        "$bin" $flags "$seeds/$name"/* >"$log" 2>&1
        rc=$?
        n=$(ls "$seeds/$name" | wc -l)
        if [ $rc -eq 0 ]; then
            echo "fuzz smoke: $name: $n inputs ok"
        else
            echo "fuzz smoke: $name: FAILED (log: $log)"; tail -30 "$log"; failed=1
        fi
        continue
    fi
    "$bin" $flags -max_total_time="$secs" -print_final_stats=1 -timeout=20 \
        -artifact_prefix="$build/crashes/$name-" "$build/corpus/$name" "$seeds/$name" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(ls "$build/corpus/$name" | wc -l)
    crashes=$(ls "$build/crashes" 2>/dev/null | grep -c "^$name-" || true)
    echo "fuzz: $name: ${secs}s, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?} features," \
        "corpus $corp, crashes $crashes, exit $rc"
    if [ $rc -ne 0 ]; then
        failed=1
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
    fi
done
exit $failed
