/*
 * bench/heap_overhead: what libmemvisor-heap.so costs a worker (docs/heap.md).
 *
 *     heap_overhead [--rounds N] [--ops N] [--py N]
 *
 * The same work, timed by the worker itself in CPU time (process start-up and waiting for a
 * CPU on a shared machine excluded), under:
 *
 *   C, bench/malloc_worker (malloc-heavy: ~1 free + 1 malloc per op, a realloc every 16th),
 *      1 thread and 2 threads:  plain | preloaded, no page (inert) | preloaded, counting
 *   Python, a JSON/dict/str workload:  pymalloc (the default) | PYTHONMALLOC=malloc, each
 *      plain and preloaded-counting
 *
 * Configurations take turns within each round (the machine is shared: the peers see the
 * same noise), and the median of the rounds is reported, with its ratio to the plain run of
 * the same group. A counting run also reports its cost per counted call (against the
 * uncounted run of the same allocator) and what its page counted, which shows the preload
 * was live. This measures; it asserts nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heapmon.h"

#define PRELOAD  MV_BUILD_DIR "/libmemvisor-heap.so"
#define MWORKER  MV_BUILD_DIR "/bench/malloc_worker"
#define PAGE_FD  7
#define MAX_RUNS 64
#define MAX_CFG  8

typedef struct cfg {
    const char *group, *name;
    int preload, page;
    const char *pymalloc; /* PYTHONMALLOC value, NULL: unset */
    int peer;             /* the uncounted run of the same work: per-call cost against it */
    int64_t ns[MAX_RUNS];
    uint64_t allocs, calls; /* counted by the page in the last run */
    int64_t mapped;
} cfg_t;

static const char py_work[] =
    "import json, sys, time\n"
    "def work(n):\n"
    "    out = 0\n"
    "    keep = []\n"
    "    for i in range(n):\n"
    "        d = {'id': i, 'name': f'user{i}', 'tags': [str(j) for j in range(12)],\n"
    "             'score': i * 1.5, 'nested': {'a': [i, i + 1], 'b': 'x' * (i % 50)}}\n"
    "        e = json.loads(json.dumps(d))\n"
    "        words = (e['name'] + ',' + ','.join(e['tags'])).split(',')\n"
    "        keep.append(tuple(words))\n"
    "        if len(keep) > 500:\n"
    "            keep = keep[250:]\n"
    "        out += len(words)\n"
    "    return out\n"
    "t = time.process_time()\n"
    "r = work(int(sys.argv[1]))\n"
    "print(f'ns={int((time.process_time() - t) * 1e9)} sum={r}')\n";

/* Runs argv once under c; returns the ns the worker printed, or -1. */
static int64_t run_once(cfg_t *c, char *const argv[])
{
    mv_heapmon_t hm = {.fd = -1};
    mv_heap_reading_t r = {0};
    char out[256];
    long long ns = -1;
    int p[2], st;
    ssize_t n, len = 0;
    pid_t pid;

    if (c->page && mv_heapmon_open(&hm) < 0)
        return -1;
    if (pipe(p) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        unsetenv("LD_PRELOAD");
        unsetenv(MVH_ENV_FD);
        unsetenv("PYTHONMALLOC");
        if (c->preload)
            setenv("LD_PRELOAD", PRELOAD, 1);
        if (c->page) {
            dup2(hm.fd, PAGE_FD);
            setenv(MVH_ENV_FD, "7", 1);
        }
        if (c->pymalloc)
            setenv("PYTHONMALLOC", c->pymalloc, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    while (len < (ssize_t)sizeof out - 1 &&
           ((n = read(p[0], out + len, sizeof out - 1 - (size_t)len)) > 0 ||
            (n < 0 && errno == EINTR)))
        len += n > 0 ? n : 0;
    out[len] = '\0';
    close(p[0]);
    waitpid(pid, &st, 0);
    if (c->page) {
        if (mv_heapmon_read(&hm, &r) == 0 || r.pid) {
            c->allocs = r.allocs;
            c->calls = r.allocs + r.frees + r.reallocs + r.mmaps + r.munmaps;
            c->mapped = r.mmap_bytes;
        }
        mv_heapmon_close(&hm);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sscanf(out, "ns=%lld", &ns) != 1)
        return -1;
    return ns;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static double median_ms(cfg_t *c, int rounds)
{
    int64_t v[MAX_RUNS];

    memcpy(v, c->ns, sizeof(int64_t) * (size_t)rounds);
    qsort(v, (size_t)rounds, sizeof v[0], cmp64);
    return (rounds % 2 ? (double)v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2.0) / 1e6;
}

/* Runs every configuration of a group `rounds` times, taking turns; prints the table. */
static int race(cfg_t *cfgs, int n, char *const argv[], int rounds)
{
    double base;

    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            cfgs[i].ns[r] = run_once(&cfgs[i], argv);
            if (cfgs[i].ns[r] < 0) {
                fprintf(stderr, "heap_overhead: %s / %s failed\n", cfgs[i].group, cfgs[i].name);
                return -1;
            }
        }
    base = median_ms(&cfgs[0], rounds);
    for (int i = 0; i < n; i++) {
        double ms = median_ms(&cfgs[i], rounds);
        printf("  %-34s %9.1f ms  x%.3f", cfgs[i].name, ms, ms / base);
        if (cfgs[i].page && cfgs[i].calls)
            printf("  %+5.1f ns/call  (page: %llu allocations, %lld B mapped)",
                   (ms - median_ms(&cfgs[cfgs[i].peer], rounds)) * 1e6 / (double)cfgs[i].calls,
                   (unsigned long long)cfgs[i].allocs, (long long)cfgs[i].mapped);
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = 5;
    long ops = 2000000, py = 30000;
    char ops_s[32], py_s[32], thr[2][4] = {"1", "2"};

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--ops") == 0)
            ops = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--py") == 0)
            py = atol(argv[i + 1]);
    }
    if (rounds < 1 || rounds > MAX_RUNS || ops < 1 || py < 1) {
        fprintf(stderr, "usage: heap_overhead [--rounds 1-%d] [--ops N] [--py N]\n", MAX_RUNS);
        return 2;
    }
    snprintf(ops_s, sizeof ops_s, "%ld", ops);
    snprintf(py_s, sizeof py_s, "%ld", py);
    printf("CPU time, median of %d rounds; x = time / the group's plain run\n", rounds);
    for (int t = 0; t < 2; t++) {
        char *cargv[] = {MWORKER, ops_s, thr[t], NULL};
        cfg_t c[] = {
            {.group = "C", .name = "plain"},
            {.group = "C", .name = "preloaded, inert (no page)", .preload = 1},
            {.group = "C", .name = "preloaded, counting", .preload = 1, .page = 1, .peer = 0},
        };
        printf("C malloc_worker, %ld ops x %s thread(s):\n", ops, thr[t]);
        if (race(c, 3, cargv, rounds) < 0)
            return 1;
    }
    {
        char *pargv[] = {"python3", "-c", (char *)py_work, py_s, NULL};
        cfg_t c[] = {
            {.group = "Python", .name = "pymalloc (default), plain"},
            {.group = "Python", .name = "PYTHONMALLOC=malloc, plain", .pymalloc = "malloc"},
            {.group = "Python", .name = "pymalloc, preloaded, counting", .preload = 1, .page = 1},
            {.group = "Python",
             .name = "PYTHONMALLOC=malloc, counting",
             .preload = 1,
             .page = 1,
             .pymalloc = "malloc"},
        };
        printf("Python, %ld JSON/dict/str iterations:\n", py);
        if (race(c, 4, pargv, rounds) < 0)
            return 1;
    }
    return 0;
}
