/*
 * cgahead: each slot's next worker cgroup, made while the current worker runs ([recycle]
 * cgroup_ahead), so a replacement started by a recycle only has to start its process.
 *
 * Making a cgroup is slow on the spawn path, and the cost is in the kernel, not in our code:
 * on cgroup v1 here the soft limit's threshold registration (a write to cgroup.event_control)
 * waits 5-15 ms, serialized across workers (CGROUP-FACTS §6; docs/recycling.md has the
 * figures). Done ahead, in the thread pool (cgasync.h), that wait is off the critical path.
 *
 * Each cgroup made ahead is named for the generation that will use it (w<slot>.<gen>), made
 * with the run's limits as they are when it is asked for. It is taken only by that
 * generation: one whose generation went elsewhere (a spare, spares.h) is let go when a later
 * generation of the slot is asked for or taken (kept for reuse, or removed).
 * A reload changes the limits: every cgroup made ahead is dropped (removed in the thread
 * pool) and the next ones are made with the new limits.
 *
 * v1: the cgroup of a slot's gone worker is kept for a later generation of the slot
 * (mv_cgahead_keep), and the next one asked for is that one, renamed, instead of a new one
 * (mv_cg_reuse: the threshold registration is what a new v1 cgroup costs; measured figures
 * in docs/recycling.md). Up to MV_CGAHEAD_KEEP a slot; kept ones go at a reload and at the
 * end. Kept ones are reused several at once, for the slot's next generations, in one
 * thread-pool run (MV_CGAHEAD_BATCH). v2 makes new ones: its cgroups cost no grace period,
 * and v2 cannot rename them.
 */
#ifndef MV_CGAHEAD_H
#define MV_CGAHEAD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cgroup.h"
#include "job.h"
#include "log.h"

typedef struct mv_cgahead mv_cgahead_t;

/* Generations a slot's kept cgroups are reused for in one thread-pool run: with a worker
 * per task every recycle asked for one, and its job's round trip (a pool thread woken, the
 * loop woken by its answer) was 3.5 context switches a worker (docs/recycling.md, "fifth
 * pass"). Reused ahead of their generation, they wait renamed and empty; a generation
 * that goes elsewhere (a spare, an escalation) gives its cgroup back to the kept ones. */
#define MV_CGAHEAD_BATCH 4
/* Gone workers' cgroups a slot keeps for reuse: a batch's worth, and one more, for with
 * surge a slot's worker and its replacement live at once. */
#define MV_CGAHEAD_KEEP (MV_CGAHEAD_BATCH + 1)
/* A slot asks again within this of its last request: it recycles fast, and may grow its
 * cgroups to a batch's worth (make(), cgahead.c). A slot that recycles more slowly keeps the
 * few it has: an empty v1 memcg costs kernel memory (its per-CPU statistics), and a job every
 * 100 ms or more costs nothing worth batching. */
#define MV_CGAHEAD_FAST_NS (100 * 1000 * 1000ULL)
/* At most this many slots' cgroups made at once; the other slots' requests wait their turn.
 * The pool asks for every slot's next cgroup at its start: 64 jobs that the kernel serializes
 * anyway (the threshold registration) held all four thread-pool threads for ~270 ms, while
 * the results and timeline jobs waited and their batches grew to 256 KiB (bench/footprint).
 * Two leave the other threads to them. Queued requests start in turn. */
#define MV_CGAHEAD_JOBS 2

typedef struct mv_cgnext mv_cgnext_t;

/* One generation's cgroup, asked for ahead. */
typedef struct mv_cgpre {
    mv_cgnext_t *x; /* its slot */
    uint32_t gen;   /* 0 = unused */
    mv_job_t *job;  /* being made, or NULL */
    bool ready;     /* made: cg holds it */
    mv_cgw_t cg;
} mv_cgpre_t;

struct mv_cgnext {
    mv_cgahead_t *ahead;
    uint32_t queued; /* the generation asked for, waiting for one of the MV_CGAHEAD_JOBS */
    mv_cgpre_t first;
    /* [MV_CGAHEAD_BATCH], allocated at the first batch of more than one (a slot that
     * recycles slowly holds no room for them) */
    mv_cgpre_t *more;
    /* v1: gone workers' cgroups, their files open ([MV_CGAHEAD_KEEP], allocated at the first
     * one kept: a slot that never recycles holds no room for them) */
    mv_cgw_t *kept;
    int nkept;
    uint64_t asked_ns; /* uv_hrtime of its last request started (0: none yet) */
    bool retired;      /* mv_cgahead_forget: nothing is made or kept for it */
};

struct mv_cgahead {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_cg_t *cg; /* the run's cgroups (its limits are read at each request) */
    bool on;           /* [recycle] cgroup_ahead, and cgroups in use */
    mv_cgnext_t *slot; /* [n], by slot - 1 */
    int n;
    int turn; /* where the next queued request is looked for (slot - 1) */
    uint64_t made, used, dropped, reused;
    uint64_t runs; /* thread-pool runs that reused kept cgroups (one per batch) */
};

/* nslots slots, nothing made yet. 0 or -ENOMEM. */
int mv_cgahead_init(mv_cgahead_t *a, uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int nslots,
                    bool on);
/* Makes <run>/w<slot>.<gen> ahead (a no-op when off, when it is being made or made already);
 * ones made for earlier generations of the slot are let go (kept for reuse, or removed).
 * With kept cgroups, up to MV_CGAHEAD_BATCH of them become gen, gen + 1, ... in one
 * thread-pool run. Queued while MV_CGAHEAD_JOBS slots' are being made. */
void mv_cgahead_prepare(mv_cgahead_t *a, int slot, uint32_t gen);
/* What a slot has for (slot, gen). */
enum { MV_AHEAD_NONE, MV_AHEAD_READY, MV_AHEAD_MAKING };
/* Takes the cgroup made for (slot, gen): READY (*out: the caller owns it now), MAKING (*job:
 * still being made; the caller takes the job over with mv_cg_create_retarget, so that no
 * second cgroup of that name is made meanwhile) or NONE (a queued request is dropped: the
 * caller makes its own). Ones made for earlier generations are let go; later ones stay. */
int mv_cgahead_take(mv_cgahead_t *a, int slot, uint32_t gen, mv_cgw_t *out, mv_job_t **job);
/* Whether (slot, gen) is being made or made ahead: a worker that is not the slot's next one
 * (an escalation worker beside it) must not take that generation, whose cgroup directory is
 * this one's. */
bool mv_cgahead_holds(const mv_cgahead_t *a, int slot, uint32_t gen);
/* A slot's worker is gone (reaped): its cgroup is kept for a later generation when that can
 * be exact (v1, made with the run's limits now, room in the slot): true, and *cg is the
 * slot's now (cleared). false: the caller removes it. */
bool mv_cgahead_keep(mv_cgahead_t *a, int slot, mv_cgw_t *cg);
/* The last generation `slot` has a cgroup asked for, made or being made (0: none). Dropped,
 * it is removed under that name in the thread pool: a later worker of that generation would
 * make a cgroup of the same name meanwhile (its removal would kill that worker, or its files
 * be gone): the slot's numbering passes it first (mv_slots_pass). */
uint32_t mv_cgahead_last(const mv_cgahead_t *a, int slot);
/* Removes every cgroup made ahead or kept (reload, stop); `on` for the requests from now on. */
void mv_cgahead_drop(mv_cgahead_t *a, bool on);
/* Removes what `slot` has made ahead or kept, and makes or keeps nothing for it until
 * mv_cgahead_revive (it is retired: a pool scaled down; its workers' cgroups are removed as
 * they go). The slot's numbering passes mv_cgahead_last first, as for mv_cgahead_drop. */
void mv_cgahead_forget(mv_cgahead_t *a, int slot);
void mv_cgahead_revive(mv_cgahead_t *a, int slot);
/* Room for slots up to n (a pool scaled up). The table moves: everything made ahead or kept
 * is dropped first (mv_cgahead_drop; the numbering passes mv_cgahead_last of every slot
 * before). 0 or -ENOMEM (then it still has its old room, emptied). */
int mv_cgahead_grow(mv_cgahead_t *a, int n);
/* Drops everything and frees the table (after the loop, or at the pool's end). */
void mv_cgahead_free(mv_cgahead_t *a);

#endif
