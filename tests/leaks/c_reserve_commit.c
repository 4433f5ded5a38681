/*
 * c_reserve_commit: a C `api` worker of the leak suite's fourth held-out set (written to test
 * how the detector generalises; docs/leak-suite.md).
 *
 * Its object store is a region allocator as language runtimes and databases make them: one
 * 1 GiB reservation (an anonymous PROT_NONE mapping, made once), whose pages are committed
 * with mprotect(PROT_READ | PROT_WRITE) as the store grows. No malloc, no new mapping.
 *
 *   commit_leak commits the next 32 KiB of the region, writes an object there and never gives
 *              it back (the leak: 32 KiB per task, by mprotect inside a reservation)
 *   commit_ok   commits 1 MiB at the region's far end, writes it, then decommits it
 *              (madvise(MADV_DONTNEED), mprotect(PROT_NONE)): nothing kept
 *   tally       a checksum over a small static table (clean)
 */
#include <sys/mman.h>

#include "c_worker.h"

#define REGION  (1ul << 30)
#define OBJ     (32 * 1024)
#define SCRATCH (1ul << 20)

static unsigned char *region;
static size_t used;

static int reserve(void)
{
    if (region)
        return 0;
    region = mmap(NULL, REGION, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) {
        region = NULL;
        return -1;
    }
    return 0;
}

static int commit_leak(long n, long arg, char *out, size_t outcap)
{
    unsigned char *p;

    if (reserve() < 0 || used + OBJ > REGION - SCRATCH)
        return -1;
    p = region + used;
    if (mprotect(p, OBJ, PROT_READ | PROT_WRITE) < 0)
        return -1;
    memset(p, (int)('a' + arg % 26), OBJ);
    used += OBJ;
    snprintf(out, outcap, "committed %zu", used);
    return 0;
}

static int commit_ok(long n, long arg, char *out, size_t outcap)
{
    unsigned char *p;
    unsigned sum;

    if (reserve() < 0)
        return -1;
    p = region + REGION - SCRATCH;
    if (mprotect(p, SCRATCH, PROT_READ | PROT_WRITE) < 0)
        return -1;
    sum = touch(p, SCRATCH);
    madvise(p, SCRATCH, MADV_DONTNEED);
    mprotect(p, SCRATCH, PROT_NONE);
    snprintf(out, outcap, "scratch %u %ld", sum, arg % 3);
    return 0;
}

static int tally(long n, long arg, char *out, size_t outcap)
{
    static const unsigned char table[256] = {1, 2, 3, 5, 8, 13, 21, 34};
    unsigned sum = 0;

    for (int i = 0; i < 256; i++)
        sum += table[(i + arg) & 0xff];
    snprintf(out, outcap, "tally %u", sum);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"commit_leak", commit_leak},
        {"commit_ok", commit_ok},
        {"tally", tally},
    };

    return leak_worker_main("c_reserve_commit", kinds, sizeof kinds / sizeof kinds[0]);
}
