/*
 * c_arena_cache: a C `api` worker of the leak suite, held out (written after the detector was
 * designed, run as it is; docs/leak-suite.md).
 *
 *   arena    an arena allocator that maps a 64 KiB chunk per task (anonymous mmap) for the
 *            task's records and never unmaps it (the leak: no malloc involved)
 *   cache    a cache of 40 entries of 16 KiB keyed by ARG % 97: fills, then replaces (plateau)
 *   scratch  a buffer grown by realloc to 512 KiB, touched, freed
 */
#include <sys/mman.h>

#include "c_worker.h"

#define CHUNK   (64 * 1024)
#define ENTRIES 40
#define ENTRY   (16 * 1024)

static void **chunks;
static size_t nchunks, chunkcap;

static int arena(long n, long arg, char *out, size_t outcap)
{
    void *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return -1;
    if (leak_grow(&chunks, &chunkcap, nchunks) < 0) {
        munmap(p, CHUNK);
        return -1;
    }
    touch(p, CHUNK);
    chunks[nchunks++] = p;
    snprintf(out, outcap, "chunks %zu", nchunks);
    return 0;
}

static struct {
    long key;
    char *val;
} cache_slot[ENTRIES];
static size_t next_victim;

static int cache(long n, long arg, char *out, size_t outcap)
{
    long key = arg % 97;
    size_t i;

    for (i = 0; i < ENTRIES; i++)
        if (cache_slot[i].val && cache_slot[i].key == key)
            break;
    if (i == ENTRIES) {
        i = next_victim++ % ENTRIES;
        free(cache_slot[i].val);
        cache_slot[i].val = malloc(ENTRY);
        if (!cache_slot[i].val)
            return -1;
        touch((unsigned char *)cache_slot[i].val, ENTRY);
        cache_slot[i].key = key;
    }
    snprintf(out, outcap, "cache %zu", i);
    return 0;
}

static int scratch(long n, long arg, char *out, size_t outcap)
{
    unsigned char *buf = NULL, *p;
    size_t size = 0;
    unsigned sum = 0;

    while (size < 512 * 1024) {
        size = size ? size * 2 : 4096;
        p = realloc(buf, size);
        if (!p) {
            free(buf);
            return -1;
        }
        buf = p;
        sum += touch(buf, size);
    }
    free(buf);
    snprintf(out, outcap, "scratch %u", sum);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"arena", arena},
        {"cache", cache},
        {"scratch", scratch},
    };

    return leak_worker_main("c_arena_cache", kinds, sizeof kinds / sizeof kinds[0]);
}
