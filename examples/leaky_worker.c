/*
 * leaky_worker: a batch worker (`protocol = api`) that leaks on purpose, to watch memvisor
 * measure per-task memory, flag the leak and recycle the worker.
 *
 *     memvisor run -c conf/batch.ini --tasks examples/tasks.txt -- ./leaky_worker --leak 1M
 *
 * Every task allocates --leak bytes, writes them (so they are resident, not just reserved)
 * and never frees them; --sleep makes each task take that long.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memvisor/worker.h>

#include "options.h"

/* Kept so the leak stays reachable: an honest leak, as a growing cache would be. */
struct hoard {
    void **blocks;
    size_t n, cap;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: leaky_worker [--leak SIZE] [--sleep DURATION]\n"
               "  --leak SIZE       bytes kept per task, suffix K, M or G (default 64K)\n"
               "  --sleep DURATION  time spent per task: 500us, 10ms, 1s, 2m (default 0)\n"
               "Run it under memvisor: memvisor run --tasks FILE -- leaky_worker [OPTIONS]\n");
}

/* Allocates, touches and keeps `size` bytes. 0 or -ENOMEM. */
static int leak(struct hoard *h, size_t size)
{
    void *p;

    if (size == 0)
        return 0;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        void **b = realloc(h->blocks, cap * sizeof *b);
        if (!b)
            return -ENOMEM;
        h->blocks = b;
        h->cap = cap;
    }
    p = malloc(size);
    if (!p)
        return -ENOMEM;
    memset(p, 0xa5, size);
    h->blocks[h->n++] = p;
    return 0;
}

int main(int argc, char **argv)
{
    long long leak_size = 64 << 10, sleep_for = 0;
    unsigned long long total = 0;
    struct hoard h = {0};
    mvw_task_t t;
    char out[96];
    mvw_t *w;
    int rc, n;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--leak") && i + 1 < argc) {
            leak_size = parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--sleep") && i + 1 < argc) {
            sleep_for = parse_duration(argv[++i]);
        } else {
            fprintf(stderr, "leaky_worker: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (leak_size < 0 || sleep_for < 0) {
            fprintf(stderr, "leaky_worker: bad value '%s' for %s\n", argv[i], argv[i - 1]);
            usage(stderr);
            return 2;
        }
    }

    rc = mvw_open(&w);
    if (rc < 0) {
        fprintf(stderr, "leaky_worker: %s; run it under memvisor (memvisor run -- %s)\n",
                mvw_strerror(rc), argv[0]);
        return MVW_EXIT_FATAL;
    }
    while ((rc = mvw_next(w, &t)) > 0) {
        if (sleep_for)
            sleep_ns(sleep_for);
        if (leak(&h, (size_t)leak_size) < 0) {
            static const char msg[] = "out of memory";
            rc = mvw_fail(w, msg, sizeof msg - 1);
        } else {
            total += (unsigned long long)leak_size;
            n = snprintf(out, sizeof out, "leaked=%lld total=%llu", leak_size, total);
            rc = mvw_done(w, out, (size_t)n);
        }
        if (rc < 0)
            break;
    }
    if (rc < 0)
        fprintf(stderr, "leaky_worker: %s\n", mvw_strerror(rc));
    mvw_close(w);
    return rc < 0 ? 1 : 0;
}
