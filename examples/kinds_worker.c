/*
 * kinds_worker: an `api` worker with three kinds of task, of which one leaks. It names each
 * task's kind itself (mvw_set_kind), and answers memvisor's snapshot requests with its own
 * view of its heap (mvw_set_snapshot), the way a C service would.
 *
 *   load ...    keeps 64 KiB per task (the leak: a cache that is never trimmed)
 *   render ...  allocates and frees ~1 MiB of scratch per task (not a leak)
 *   tally ...   counts the words of the line (not a leak)
 *
 *   memvisor run --tasks examples/kinds.tasks --results kinds.jsonl -- build/examples/kinds_worker
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memvisor/worker.h>

struct cache {
    void **blocks;
    size_t n;
};

/* The heap view memvisor gets on a SNAPSHOT request: the allocator's figures, and what this
 * worker knows and the allocator cannot: how much its cache holds. */
static long snapshot(void *arg, char *buf, size_t cap)
{
    const struct cache *c = arg;
    struct mallinfo2 mi = mallinfo2();
    int n = snprintf(buf, cap,
                     "{\"allocator\":\"glibc\",\"uordblks\":%zu,\"fordblks\":%zu,\"hblkhd\":%zu,"
                     "\"cache_blocks\":%zu,\"cache_bytes\":%zu}",
                     mi.uordblks, mi.fordblks, mi.hblkhd, c->n, c->n * 65536);

    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int load(struct cache *c)
{
    void **b = realloc(c->blocks, (c->n + 1) * sizeof *b);
    char *p = malloc(65536);

    if (!b || !p) {
        free(p);
        return -1;
    }
    memset(p, 'L', 65536);
    c->blocks = b;
    c->blocks[c->n++] = p;
    return 0;
}

static void render(void)
{
    char *scratch = malloc(1 << 20);

    if (!scratch)
        return;
    memset(scratch, 'R', 1 << 20);
    __asm__ volatile("" : : "r"(scratch) : "memory"); /* really touched, really freed */
    free(scratch);
}

int main(void)
{
    struct cache cache = {0};
    mvw_task_t t;
    mvw_t *w;
    char out[64];

    /* glibc raises its mmap threshold when an mmap'd block is freed: render's 1 MiB scratch
     * would then come from the heap and stay resident after free, load's small blocks would
     * reuse those pages, and the kernel would see the heap grow in the next render, not in
     * load. Pinning the threshold keeps big scratch buffers mmap'd (returned on free), as
     * services that churn big buffers often do. (memvisor's snapshot still carries this
     * worker's own heap view, which attributes by allocation whatever the allocator does.) */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    if (mvw_open(&w) < 0) {
        fprintf(stderr, "kinds_worker: run me under memvisor (see the top of the source)\n");
        return MVW_EXIT_FATAL;
    }
    mvw_set_snapshot(w, snapshot, &cache);
    while (mvw_next(w, &t) > 0) {
        const char *line = t.data;
        if (strncmp(line, "load", 4) == 0) {
            mvw_set_kind(w, "load");
            if (load(&cache) < 0) {
                mvw_fail(w, "out of memory", 13);
                continue;
            }
            snprintf(out, sizeof out, "cached=%zu", cache.n);
        } else if (strncmp(line, "render", 6) == 0) {
            mvw_set_kind(w, "render");
            render();
            snprintf(out, sizeof out, "rendered");
        } else {
            size_t words = 0;
            mvw_set_kind(w, "tally");
            for (size_t i = 0; i < t.len; i++)
                words += line[i] != ' ' && (i == 0 || line[i - 1] == ' ');
            snprintf(out, sizeof out, "words=%zu", words);
        }
        mvw_done(w, out, strlen(out));
    }
    mvw_close(w);
    return 0;
}
