/*
 * c_names_mapper: a C `api` worker of the leak suite's second held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   names    interns 600 new 31-character names per task with strdup into a table nothing
 *            frees (the leak: many 32-byte blocks, 600 x 40 usable bytes = 24,000 bytes per
 *            task, 28,800 of heap with glibc's chunk headers, plus the table's doubling)
 *   mapper   maps a 128 KiB anonymous region for a batch and unmaps it, except on every fourth
 *            task of the kind, whose region is kept (the leak: 32 KiB per task on average, in
 *            steps of 128 KiB)
 *   shuffle  2,000 blocks of 16 B-16 KiB allocated, then freed in a shuffled order with new
 *            ones allocated in between (the heap fragments and its top moves; nothing kept)
 */
#include <sys/mman.h>

#include "c_worker.h"

#define NAMES  600
#define REGION (128 * 1024)
#define BLOCKS 2000

static char **names_tab;
static size_t nnames, namescap;

static int names(long n, long arg, char *out, size_t outcap)
{
    char buf[32];

    for (int k = 0; k < NAMES; k++) {
        if (leak_grow(&names_tab, &namescap, nnames) < 0)
            return -1;
        snprintf(buf, sizeof buf, "n%08ld.%04d.%016ld", n, k, arg);
        names_tab[nnames] = strdup(buf);
        if (!names_tab[nnames])
            return -1;
        nnames++;
    }
    snprintf(out, outcap, "names %zu", nnames);
    return 0;
}

static void **regions;
static size_t nregions, regioncap, mapper_calls;

static int mapper(long n, long arg, char *out, size_t outcap)
{
    void *p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned sum;

    if (p == MAP_FAILED)
        return -1;
    sum = touch(p, REGION);
    if (++mapper_calls % 4 == 0) {
        if (leak_grow(&regions, &regioncap, nregions) < 0) {
            munmap(p, REGION);
            return -1;
        }
        regions[nregions++] = p;
    } else {
        munmap(p, REGION);
    }
    snprintf(out, outcap, "mapped %u %zu", sum, nregions);
    return 0;
}

static unsigned long rnd(unsigned long *s)
{
    *s = *s * 6364136223846793005UL + 1442695040888963407UL;
    return *s >> 33;
}

static int shuffle(long n, long arg, char *out, size_t outcap)
{
    static void *blk[BLOCKS], *mid[BLOCKS / 3 + 1];
    unsigned long s = (unsigned long)arg + 1;
    unsigned sum = 0;
    int k, m = 0, ok = 1;

    for (k = 0; k < BLOCKS; k++) {
        size_t size = 16 + rnd(&s) % (16 * 1024);

        if (!(blk[k] = malloc(size)))
            break;
        sum += touch(blk[k], size);
    }
    ok = k == BLOCKS;
    /* Frees in a shuffled order; every third free, a new block that lives to the task's end
     * lands in the holes (the heap fragments; its top moves). */
    for (int j = k - 1; j >= 0; j--) {
        size_t r = rnd(&s) % (size_t)(j + 1);
        void *t = blk[r];

        blk[r] = blk[j];
        blk[j] = NULL;
        free(t);
        if (j % 3 == 0 && (mid[m] = malloc(16 + rnd(&s) % 4096)) != NULL)
            sum += touch(mid[m++], 16);
    }
    while (m > 0)
        free(mid[--m]);
    if (!ok)
        return -1;
    snprintf(out, outcap, "shuffled %u", sum);
    return 0;
}

static int tally(long n, long arg, char *out, size_t outcap)
{
    snprintf(out, outcap, "tally %ld", (n ^ arg) % 1000);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"names", names},
        {"mapper", mapper},
        {"shuffle", shuffle},
        {"tally", tally},
    };

    return leak_worker_main("c_names_mapper", kinds, sizeof kinds / sizeof kinds[0]);
}
