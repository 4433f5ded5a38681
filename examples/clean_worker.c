/*
 * clean_worker: a batch worker (`protocol = api`) that does real work and keeps nothing, the
 * control group next to leaky_worker: its memory stays flat however many tasks it runs.
 *
 *     memvisor run --tasks examples/tasks.txt -- ./clean_worker [--sleep 5ms]
 *
 * For each task line it answers "words=N bytes=N fnv1a=HEX" (FNV-1a 64 of the bytes).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memvisor/worker.h>

#include "options.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: clean_worker [--sleep DURATION]\n"
               "  --sleep DURATION  time spent per task: 500us, 10ms, 1s, 2m (default 0)\n"
               "Run it under memvisor: memvisor run --tasks FILE -- clean_worker [OPTIONS]\n");
}

/* Word count (runs of non-blank bytes) and FNV-1a 64 of the task, as one result line. */
static int summarize(const unsigned char *p, size_t len, char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t words = 0;
    int in_word = 0;

    for (size_t i = 0; i < len; i++) {
        int blank = p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n';
        if (!blank && !in_word)
            words++;
        in_word = !blank;
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return snprintf(out, cap, "words=%zu bytes=%zu fnv1a=%016" PRIx64, words, len, h);
}

int main(int argc, char **argv)
{
    long long sleep_for = 0;
    mvw_task_t t;
    char out[96];
    mvw_t *w;
    int rc, n;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--sleep") && i + 1 < argc &&
                   (sleep_for = parse_duration(argv[i + 1])) >= 0) {
            i++;
        } else {
            fprintf(stderr, "clean_worker: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    rc = mvw_open(&w);
    if (rc < 0) {
        fprintf(stderr, "clean_worker: %s; run it under memvisor (memvisor run -- %s)\n",
                mvw_strerror(rc), argv[0]);
        return MVW_EXIT_FATAL;
    }
    while ((rc = mvw_next(w, &t)) > 0) {
        if (sleep_for)
            sleep_ns(sleep_for);
        n = summarize(t.data, t.len, out, sizeof out);
        rc = mvw_done(w, out, (size_t)n);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        fprintf(stderr, "clean_worker: %s\n", mvw_strerror(rc));
    mvw_close(w);
    return rc < 0 ? 1 : 0;
}
