/*
 * c_realloc_log: a C `api` worker of the leak suite's third held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   log_append appends a 24 KiB record to one log buffer that grows by realloc and is never
 *            trimmed (the leak: one block that only grows, 24 KiB per task; glibc moves it to
 *            an mmap'd chunk and then grows it with mremap)
 *   burst    allocates 4,000 blocks of 512 bytes (2 MiB) and frees them all (the holes the
 *            allocator hands to whatever comes next; nothing kept)
 *   shrink   reallocs a 16-byte block up to 512 KiB step by step, touches it, reallocs it down
 *            to 1 KiB and frees it (nothing kept)
 */
#include "c_worker.h"

#define RECORD (24 * 1024)
#define BURST  4000

static char *logbuf;
static size_t loglen;

static int log_append(long n, long arg, char *out, size_t outcap)
{
    char *p = realloc(logbuf, loglen + RECORD);

    if (!p)
        return -1;
    logbuf = p;
    memset(logbuf + loglen, (int)('a' + arg % 26), RECORD);
    loglen += RECORD;
    snprintf(out, outcap, "log %zu", loglen);
    return 0;
}

static int burst(long n, long arg, char *out, size_t outcap)
{
    static void *blk[BURST];
    unsigned sum = 0;
    int k;

    for (k = 0; k < BURST; k++) {
        if (!(blk[k] = malloc(512)))
            break;
        sum += touch(blk[k], 512);
    }
    while (k > 0)
        free(blk[--k]);
    snprintf(out, outcap, "burst %u", sum);
    return 0;
}

static int shrink(long n, long arg, char *out, size_t outcap)
{
    char *p = malloc(16), *q;
    size_t size = 16;
    unsigned sum;

    if (!p)
        return -1;
    while (size < 512 * 1024) {
        size *= 2;
        if (!(q = realloc(p, size))) {
            free(p);
            return -1;
        }
        p = q;
    }
    sum = touch((unsigned char *)p, size);
    if ((q = realloc(p, 1024)) != NULL)
        p = q;
    free(p);
    snprintf(out, outcap, "shrink %u %ld", sum, arg % 7);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"log_append", log_append},
        {"burst", burst},
        {"shrink", shrink},
    };

    return leak_worker_main("c_realloc_log", kinds, sizeof kinds / sizeof kinds[0]);
}
