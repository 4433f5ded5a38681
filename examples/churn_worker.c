/*
 * churn_worker: heavy allocation churn and no leak. Every task allocates a few thousand
 * blocks of 16 B..64 KiB, touches them and frees them in a shuffled order: memory goes up
 * and down a lot within each task, and the allocator keeps some of it around, but nothing
 * grows task after task. memvisor must never call this a leak.
 *
 *   memvisor run --tasks examples/churn.tasks -- build/examples/churn_worker
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memvisor/worker.h>

#define BLOCKS 3000

static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

int main(void)
{
    static void *blocks[BLOCKS];
    uint64_t seed = 1;
    mvw_task_t t;
    mvw_t *w;
    char out[32];

    if (mvw_open(&w) < 0) {
        fprintf(stderr, "churn_worker: run me under memvisor (see the top of the source)\n");
        return MVW_EXIT_FATAL;
    }
    while (mvw_next(w, &t) > 0) {
        size_t total = 0;
        for (int i = 0; i < BLOCKS; i++) {
            size_t size = (size_t)16 << (next(&seed) % 13); /* 16 B .. 64 KiB */
            blocks[i] = malloc(size);
            if (blocks[i])
                memset(blocks[i], i, size);
            total += size;
        }
        for (int i = BLOCKS - 1; i > 0; i--) { /* free in a shuffled order */
            int j = (int)(next(&seed) % (uint64_t)(i + 1));
            void *tmp = blocks[i];
            blocks[i] = blocks[j];
            blocks[j] = tmp;
        }
        for (int i = 0; i < BLOCKS; i++)
            free(blocks[i]);
        snprintf(out, sizeof out, "churned=%zu", total);
        mvw_done(w, out, strlen(out));
    }
    mvw_close(w);
    return 0;
}
