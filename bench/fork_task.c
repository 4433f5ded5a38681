/*
 * fork_task: the task of bench/fork_per_task.py, both ways. With an argument it is the peer's
 * program: one task (the argument), its answer on stdout, exit (xargs runs one per task).
 * Without, it is an `api` worker (libmemvisor): the same answer for every task it gets. The
 * task: the 64-bit FNV-1a hash of the task's text, in hex.
 *
 * `fork_task --ceiling` is the bench's ceiling: no supervisor, the tasks (lines of stdin)
 * each in a child forked from this warm process, two at a time, the answer written by the
 * child, nothing else (no exec, no IPC but the answer, no cgroup, no accounting).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>

#include <memvisor/worker.h>

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

/* A child per line of stdin, two at a time; each writes its answer line and _exits. */
static int ceiling(void)
{
    char line[4096], out[32];
    int running = 0, n;
    size_t len;
    pid_t pid;

    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        len = strcspn(line, "\n");
        if (running == 2 && wait(NULL) > 0)
            running--;
        pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            n = snprintf(out, sizeof out, "%016" PRIx64 "\n", fnv1a(line, len));
            _exit(write(STDOUT_FILENO, out, (size_t)n) == n ? 0 : 1);
        }
        running++;
    }
    while (wait(NULL) > 0)
        ;
    return 0;
}

int main(int argc, char **argv)
{
    char out[32];
    mvw_task_t t;
    mvw_t *w;
    int n;

    if (argc > 1 && strcmp(argv[1], "--ceiling") == 0)
        return ceiling();
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
