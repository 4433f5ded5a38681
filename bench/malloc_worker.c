/*
 * malloc_worker: the malloc-heavy C worker of bench/heap_overhead. Each thread keeps a ring
 * of 4096 live blocks and replaces a random one per operation (sizes: 80% 16-256 bytes, 15%
 * up to 4 KiB, 5% up to 64 KiB, the spread of a typical service), growing every 16th with
 * realloc. It times its own loop in CPU time (all threads), so neither process start-up nor
 * waiting for a CPU on a shared machine is in the figure:
 *
 *     malloc_worker OPS THREADS      ->  ns=ELAPSED sum=CHECKSUM
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING 4096

struct job {
    long ops;
    uint64_t seed, sum;
};

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
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

static void *run(void *arg)
{
    struct job *j = arg;
    static __thread char *ring[RING];

    for (long i = 0; i < j->ops; i++) {
        uint64_t r = next(&j->seed);
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
        j->sum += (unsigned char)ring[idx][0];
    }
    for (size_t i = 0; i < RING; i++) {
        free(ring[i]);
        ring[i] = NULL;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 1000000;
    int nthreads = argc > 2 ? atoi(argv[2]) : 1;
    pthread_t tid[16];
    struct job jobs[16];
    struct timespec a, b;
    uint64_t sum = 0;

    if (nthreads < 1 || nthreads > 16 || ops < 1) {
        fprintf(stderr, "usage: malloc_worker OPS THREADS(1-16)\n");
        return 2;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (struct job){ops, 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1), 0};
        pthread_create(&tid[i], NULL, run, &jobs[i]);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tid[i], NULL);
        sum += jobs[i].sum;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("ns=%lld sum=%llu\n",
           (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec),
           (unsigned long long)sum);
    return 0;
}
