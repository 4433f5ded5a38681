/*
 * kindpool: one copy of each task kind that per-worker rings refer to. Pure: no I/O.
 *
 * suspect.c keeps, per worker, its last [leak] history tasks and its last [leak] window task
 * figures, each with the task's kind. A kind held in place (MV_LEAK_KIND_MAX + 1 bytes) made
 * those rings ~5.5 KiB a worker, 350 KiB of the supervisor's heap for 64 workers
 * (bench/footprint), for the handful of kinds a run has. A ring entry now holds a reference
 * to the pool's copy; the copy lives while an entry refers to it, so the pool holds no more
 * kinds than the rings do, however many kinds a run has seen.
 */
#ifndef MV_KINDPOOL_H
#define MV_KINDPOOL_H

#include <stddef.h>
#include <stdint.h>

struct mv_kindref;

/* Zeroed: an empty pool. Loop thread only. */
typedef struct mv_kindpool {
    struct mv_kindref **bucket;
    size_t nbuckets, count;
} mv_kindpool_t;

/* A reference to the pool's copy of `name`, cut to `max` bytes (made on first use). NULL on
 * ENOMEM. */
const char *mv_kindpool_hold(mv_kindpool_t *p, const char *name, size_t max);
/* Gives back a reference mv_kindpool_hold returned; the copy goes with the last one. */
void mv_kindpool_drop(mv_kindpool_t *p, const char *kind);
/* Kinds held now. */
size_t mv_kindpool_count(const mv_kindpool_t *p);
/* Frees every copy (references held become invalid). */
void mv_kindpool_free(mv_kindpool_t *p);

#endif
