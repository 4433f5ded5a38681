/*
 * kindpool: one copy of each task kind that per-worker rings refer to (see kindpool.h).
 *
 * A hash table of chains; a reference is a pointer to the copy's name, whose entry is found
 * again from it (the name is the entry's last member).
 */
#include "kindpool.h"

#include <stdlib.h>
#include <string.h>

typedef struct mv_kindref {
    struct mv_kindref *next;
    uint32_t hash;
    uint32_t refs;
    char name[];
} kindref_t;

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static kindref_t *entry_of(const char *kind)
{
    return (kindref_t *)(void *)(kind - offsetof(kindref_t, name));
}

/* Twice the buckets once there are more kinds than buckets: chains stay short. 0 or -1. */
static int grow(mv_kindpool_t *p)
{
    size_t n = p->nbuckets ? p->nbuckets * 2 : 16;
    kindref_t **b = calloc(n, sizeof *b);

    if (!b)
        return -1;
    for (size_t i = 0; i < p->nbuckets; i++)
        for (kindref_t *e = p->bucket[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(p->bucket);
    p->bucket = b;
    p->nbuckets = n;
    return 0;
}

const char *mv_kindpool_hold(mv_kindpool_t *p, const char *name, size_t max)
{
    size_t n = strnlen(name, max);
    uint32_t h = fnv1a(name, n);
    kindref_t *e;

    if (p->count >= p->nbuckets && grow(p) < 0 && !p->nbuckets)
        return NULL;
    for (e = p->bucket[h & (p->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && strncmp(e->name, name, n) == 0 && e->name[n] == '\0') {
            e->refs++;
            return e->name;
        }
    e = malloc(sizeof *e + n + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, n);
    e->name[n] = '\0';
    e->hash = h;
    e->refs = 1;
    e->next = p->bucket[h & (p->nbuckets - 1)];
    p->bucket[h & (p->nbuckets - 1)] = e;
    p->count++;
    return e->name;
}

void mv_kindpool_drop(mv_kindpool_t *p, const char *kind)
{
    kindref_t *e = entry_of(kind), **at;

    if (--e->refs > 0)
        return;
    for (at = &p->bucket[e->hash & (p->nbuckets - 1)]; *at != e; at = &(*at)->next)
        ;
    *at = e->next;
    p->count--;
    free(e);
}

size_t mv_kindpool_count(const mv_kindpool_t *p)
{
    return p->count;
}

void mv_kindpool_free(mv_kindpool_t *p)
{
    for (size_t i = 0; i < p->nbuckets; i++)
        for (kindref_t *e = p->bucket[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(p->bucket);
    memset(p, 0, sizeof *p);
}
