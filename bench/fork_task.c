/*
 * fork_task: the task of bench/fork_per_task.py, both ways. With an argument it is the peer's
 * program: one task (the argument), its answer on stdout, exit (xargs runs one per task).
 * Without, it is an `api` worker (libmemvisor): the same answer for every task it gets. The
 * task: the 64-bit FNV-1a hash of the task's text, in hex.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <memvisor/worker.h>

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv)
{
    char out[32];
    mvw_task_t t;
    mvw_t *w;
    int n;

    if (argc > 1) {
        printf("%016" PRIx64 "\n", fnv1a(argv[1], strlen(argv[1])));
        return 0;
    }
    if (mvw_open(&w) < 0)
        return MVW_EXIT_FATAL;
    while (mvw_next(w, &t) > 0) {
        n = snprintf(out, sizeof out, "%016" PRIx64, fnv1a(t.data, t.len));
        if (mvw_done(w, out, (size_t)n) < 0)
            break;
    }
    mvw_close(w);
    return 0;
}
