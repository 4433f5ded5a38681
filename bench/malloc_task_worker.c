/*
 * malloc_task_worker: the malloc-heavy C `api` worker of bench/heap_e2e.py. Each task line
 * "N" makes N allocator calls (malloc_worker's mix: a ring of 4096 live blocks, a random one
 * replaced per operation, 80% 16-256 bytes, 15% up to 4 KiB, 5% up to 64 KiB, a realloc every
 * 16th) and answers with a checksum. The ring lives across tasks, as a service's heap does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <memvisor/worker.h>

#define RING 4096

static char *ring[RING];
static uint64_t seed = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

static size_t pick_size(uint64_t r)
{
    unsigned p = (unsigned)(r % 100);

    if (p < 80)
        return 16 + (r >> 8) % 240;
    if (p < 95)
        return 256 + (r >> 8) % 3840;
    return 4096 + (r >> 8) % 61440;
}

static uint64_t work(long ops)
{
    uint64_t sum = 0;

    for (long i = 0; i < ops; i++) {
        uint64_t r = next();
        size_t idx = (r >> 32) % RING, n = pick_size(r);
        free(ring[idx]);
        ring[idx] = malloc(n);
        if (!ring[idx])
            continue;
        ring[idx][0] = (char)r;
        if (i % 16 == 0) {
            char *q = realloc(ring[idx], n * 2);
            if (q)
                ring[idx] = q;
        }
        sum += (unsigned char)ring[idx][0];
    }
    return sum;
}

int main(void)
{
    char out[32];
    mvw_task_t t;
    mvw_t *w;

    if (mvw_open(&w) < 0) {
        fprintf(stderr, "malloc_task_worker: run me under memvisor (bench/heap_e2e.py)\n");
        return MVW_EXIT_FATAL;
    }
    while (mvw_next(w, &t) > 0) {
        int n = snprintf(out, sizeof out, "%llu",
                         (unsigned long long)work(strtol((const char *)t.data, NULL, 10)));
        mvw_done(w, out, (size_t)n);
    }
    mvw_close(w);
    return 0;
}
