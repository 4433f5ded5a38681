/*
 * c_session_compress: a C `api` worker of the leak suite: many small blocks kept by one kind,
 * heap churn by another.
 *
 *   session   keeps 300 small nodes (64 bytes each, ~24 KiB with malloc's headers) in a list
 *             nobody frees (the leak: small blocks that fill every hole in the heap)
 *   compress  64 blocks of 8 KiB, touched, then freed in a shuffled order (a compressor's
 *             window: 512 KiB of churn below the mmap threshold)
 *   lookup    a binary search in a static table
 */
#include "c_worker.h"

struct node {
    struct node *next;
    long id;
    char data[48];
};

static struct node *sessions;
static size_t nnodes;

static int session(long n, long arg, char *out, size_t outcap)
{
    for (int i = 0; i < 300; i++) {
        struct node *s = malloc(sizeof *s);
        if (!s)
            return -1;
        s->id = n * 1000 + i;
        memset(s->data, (int)(arg & 0x7f), sizeof s->data);
        s->next = sessions;
        sessions = s;
        nnodes++;
    }
    snprintf(out, outcap, "nodes %zu", nnodes);
    return 0;
}

static int compress(long n, long arg, char *out, size_t outcap)
{
    unsigned char *blocks[64];
    unsigned sum = 0;
    unsigned long r = (unsigned long)arg | 1;

    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc(8192);
        if (!blocks[i]) {
            while (i-- > 0)
                free(blocks[i]);
            return -1;
        }
        sum += touch(blocks[i], 8192);
    }
    for (int i = 63; i > 0; i--) { /* a shuffled free order */
        int j;
        unsigned char *t;
        r = r * 6364136223846793005UL + 1442695040888963407UL;
        j = (int)((r >> 33) % (unsigned long)(i + 1));
        t = blocks[i], blocks[i] = blocks[j], blocks[j] = t;
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    snprintf(out, outcap, "compressed %u", sum);
    return 0;
}

static int lookup(long n, long arg, char *out, size_t outcap)
{
    static const long keys[] = {3, 17, 42, 99, 256, 1024, 4096, 65536, 999983};
    size_t lo = 0, hi = sizeof keys / sizeof keys[0];
    long want = arg % 1000000;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (keys[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    snprintf(out, outcap, "rank %zu", lo);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"session", session},
        {"compress", compress},
        {"lookup", lookup},
    };

    return leak_worker_main("c_session_compress", kinds, sizeof kinds / sizeof kinds[0]);
}
