#!/bin/sh
# Runs in the check-v2 guest, chrooted into the host's root (read-only, under a tmpfs overlay)
# with this checkout read-write at its own path: runs the plan that tests/v2/run.sh wrote in
# OUT/plan, writes everything it prints to OUT/check.log (and the console), then OUT/status.
#
# Plan lines:  build DIR      the build directory (absolute, as on the host)
#              suite NAME     run that Check suite (CK_RUN_SUITE=NAME); NAME/CASE runs one
#                             test case of it (CK_RUN_CASE=CASE)
#              cmd COMMAND    run a shell command instead (benchmarks)
checkout=$1
out=$2
cd "$checkout" || exit 125
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8
# Everything runs slower under emulation: give each Check test that much more time.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}

run_plan() {
    failed=0
    echo "check-v2: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    while read -r what arg; do
        case "$what" in
        build) build=$arg ;;
        suite)
            t0=$(date +%s%N)
            # An empty CK_RUN_CASE would select no test case at all: set only for SUITE/CASE.
            # Streamed as it runs (a hung guest's console says where), kept to be checked.
            {
                case "$arg" in
                */*) env CK_RUN_CASE="${arg#*/}" CK_RUN_SUITE="${arg%%/*}" MV_BUILD="$build" \
                    "$build/tests/check_memvisor" ;;
                *) env -u CK_RUN_CASE CK_RUN_SUITE="$arg" MV_BUILD="$build" \
                    "$build/tests/check_memvisor" ;;
                esac
                echo $? >"$out/suite.rc"
            } 2>&1 | tee "$out/suite.log"
            rc=$(cat "$out/suite.rc")
            # A plan step that selects no test at all is a broken plan, not a pass.
            if [ "$rc" -ne 0 ] || grep -q "Checks: 0," "$out/suite.log"; then
                failed=$((failed + 1))
            fi
            rm -f "$out/suite.log" "$out/suite.rc"
            echo "check-v2: suite $arg took $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}') s"
            ;;
        cmd) sh -c "$arg" || failed=$((failed + 1)) ;;
        esac
    done <"$out/plan"
    echo "check-v2: $failed of the plan's steps failed"
    [ "$failed" -eq 0 ]
}

# tee: the console shows progress (a hung guest's log says where), the file keeps it all.
{ run_plan; echo $? >"$out/rc"; } 2>&1 | tee "$out/check.log"
rc=$(cat "$out/rc")
rm -f "$out/rc"
echo "$rc" >"$out/status"
sync
exit "$rc"
