#!/bin/sh
# line_worker.sh: a `protocol = lines` worker in POSIX sh.
# memvisor writes one task line to stdin and reads one result line from stdout.
# A line starting with "fail" is answered "FAIL: reason".
#
#   memvisor run -o worker.protocol=lines --tasks examples/tasks.txt -- examples/line_worker.sh
set -f # the word count below must not glob
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    fail*)
        reason=${line#fail}
        reason=${reason# }
        printf 'FAIL: %s\n' "${reason:-asked to fail}"
        ;;
    *)
        # shellcheck disable=SC2086 # splitting into words is the point
        set -- $line
        printf 'words=%d chars=%d\n' "$#" "${#line}"
        ;;
    esac
done
