/*
 * c_ttl_swing: a C `api` worker of the leak suite's seventh held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   ttl_big    strdup's 2,000 keys of ~90 bytes (the request's number in each) into a hash
 *              table; at its next call it deletes 90% of the previous call's keys (expired)
 *              and keeps the rest for ever (pinned by a bug): ~10x its leak churned a task
 *              (the leak: about 25 KB a task)
 *   ttl_small  the same table and expiry with 320 keys a call: about 4 KB a task kept
 *              (a leak under memvisor's default min_slope, 16 KiB a task)
 *   swing      holds its working set until its next call: 16 MiB on every other call in a
 *              process, 1 MiB between (malloc'd, touched; the old one freed first): clean,
 *              what it holds swings by 15 MiB
 *   tally      a small sum (clean)
 */
#include <stdint.h>

#include "c_worker.h"

#define BUCKETS 65536

typedef struct entry {
    struct entry *next;
    char *key;
    long task;
} entry_t;

typedef struct table {
    entry_t *bucket[BUCKETS];
    entry_t **prev; /* the previous call's entries, to expire at the next call */
    size_t nprev, capprev;
    size_t live;
} table_t;

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void unlink_entry(table_t *t, entry_t *e)
{
    entry_t **p = &t->bucket[hash(e->key) % BUCKETS];

    while (*p && *p != e)
        p = &(*p)->next;
    if (*p)
        *p = e->next;
    free(e->key);
    free(e);
    t->live--;
}

/* Expires 9 in 10 of the last call's keys (the others stay for ever), then adds nkeys. */
static int ttl_call(table_t *t, long n, long arg, int nkeys, char *out, size_t outcap)
{
    char key[128];
    size_t kept = 0;

    for (size_t k = 0; k < t->nprev; k++) {
        if ((k + (size_t)arg) % 10 != 0)
            unlink_entry(t, t->prev[k]);
        else
            kept++;
    }
    t->nprev = 0;
    for (int k = 0; k < nkeys; k++) {
        entry_t *e = malloc(sizeof *e);
        uint32_t b;

        snprintf(key, sizeof key, "session:%08ld:%06ld:%05d:user-agent=memvisor-suite/7.0 (x86_64)",
                 arg % 100000000, n % 1000000, k);
        if (!e || !(e->key = strdup(key)) || leak_grow(&t->prev, &t->capprev, t->nprev) < 0) {
            free(e);
            return -1;
        }
        e->task = n;
        b = hash(e->key) % BUCKETS;
        e->next = t->bucket[b];
        t->bucket[b] = e;
        t->prev[t->nprev++] = e;
        t->live++;
    }
    snprintf(out, outcap, "ttl %zu kept %zu", t->live, kept);
    return 0;
}

static table_t big_table, small_table;

static int ttl_big(long n, long arg, char *out, size_t outcap)
{
    return ttl_call(&big_table, n, arg, 2000, out, outcap);
}

static int ttl_small(long n, long arg, char *out, size_t outcap)
{
    return ttl_call(&small_table, n, arg, 320, out, outcap);
}

static unsigned char *frame;
static long swing_calls;

static int swing(long n, long arg, char *out, size_t outcap)
{
    size_t size = (++swing_calls % 2 ? 16u : 1u) << 20;
    unsigned sum;

    free(frame); /* the old frame goes before the new one is made */
    frame = malloc(size);
    if (!frame)
        return -1;
    sum = touch(frame, size);
    snprintf(out, outcap, "swing %zu %u %ld", size >> 20, sum, arg % 7);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"ttl_big", ttl_big},
        {"ttl_small", ttl_small},
        {"swing", swing},
        {"tally", leak_tally},
    };

    return leak_worker_main("c_ttl_swing", kinds, sizeof kinds / sizeof kinds[0]);
}
