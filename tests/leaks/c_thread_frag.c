/*
 * c_thread_frag: a C `api` worker of the leak suite's fourth held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   thread_keep runs its work on a helper thread (created and joined per task) that mallocs a
 *              24 KiB result in its own glibc arena and hands it to a global list that nobody
 *              empties (the leak: memory from another thread's arena, 24 KiB per task)
 *   align_leak keeps a 20 KiB block from posix_memalign (4 KiB aligned, a DMA-style buffer)
 *              in a static array of pointers (the leak: aligned blocks, ~20 KiB per task)
 *   frag_keep  allocates 64 blocks of 8 KiB and 64 of 48 bytes interleaved, frees the big
 *              ones and keeps the small ones in a ring of 8,192 (each replacing the oldest):
 *              live bytes stay flat once the ring is full, the small blocks pin the freed
 *              space between them (fragmentation: clean by live bytes)
 *   big_spike  mallocs 24 MiB, touches it and frees it (glibc mmaps and unmaps it: clean)
 */
#include <pthread.h>

#include "c_worker.h"

#define KEEP  (24 * 1024)
#define ALIGN (20 * 1024)
#define RING  8192
#define BIGS  64

typedef struct kept {
    struct kept *next;
    unsigned char data[];
} kept_t;

static kept_t *kept_head;
static size_t kept_n;

static void *thread_body(void *argp)
{
    long arg = *(long *)argp;
    kept_t *k = malloc(sizeof *k + KEEP);

    if (k)
        memset(k->data, (int)(arg & 0x7f), KEEP);
    return k;
}

static int thread_keep(long n, long arg, char *out, size_t outcap)
{
    pthread_t t;
    void *res = NULL;

    if (pthread_create(&t, NULL, thread_body, &arg) != 0 || pthread_join(t, &res) != 0 || !res)
        return -1;
    ((kept_t *)res)->next = kept_head;
    kept_head = res;
    kept_n++;
    snprintf(out, outcap, "kept %zu", kept_n);
    return 0;
}

static int align_leak(long n, long arg, char *out, size_t outcap)
{
    static void **blocks;
    static size_t nblocks, cap;
    void *p;

    if (nblocks == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        void **nb = realloc(blocks, ncap * sizeof *nb);

        if (!nb)
            return -1;
        blocks = nb;
        cap = ncap;
    }
    if (posix_memalign(&p, 4096, ALIGN) != 0)
        return -1;
    memset(p, (int)(arg & 0x7f), ALIGN);
    blocks[nblocks++] = p;
    snprintf(out, outcap, "aligned %zu", nblocks);
    return 0;
}

static int frag_keep(long n, long arg, char *out, size_t outcap)
{
    static void *ring[RING];
    static size_t pos;
    void *big[BIGS];
    unsigned sum = 0;
    int k;

    for (k = 0; k < BIGS; k++) {
        big[k] = malloc(8192);
        if (big[k])
            sum += touch(big[k], 8192);
        free(ring[pos % RING]);
        ring[pos % RING] = malloc(48);
        if (ring[pos % RING])
            memset(ring[pos % RING], (int)(arg & 0x7f), 48);
        pos++;
    }
    for (k = 0; k < BIGS; k++)
        free(big[k]);
    snprintf(out, outcap, "frag %u %zu", sum, pos);
    return 0;
}

static int big_spike(long n, long arg, char *out, size_t outcap)
{
    size_t size = 24u << 20;
    unsigned char *p = malloc(size);
    unsigned sum;

    if (!p)
        return -1;
    sum = touch(p, size);
    free(p);
    snprintf(out, outcap, "spike %u %ld", sum, arg % 5);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"thread_keep", thread_keep},
        {"align_leak", align_leak},
        {"frag_keep", frag_keep},
        {"big_spike", big_spike},
    };

    return leak_worker_main("c_thread_frag", kinds, sizeof kinds / sizeof kinds[0]);
}
