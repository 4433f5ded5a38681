/*
 * cgahead: each slot's next worker cgroup, made while the current worker runs ([recycle]
 * cgroup_ahead), so a replacement started by a recycle only has to start its process.
 *
 * Making a cgroup is slow on the spawn path, and the cost is in the kernel, not in our code:
 * on cgroup v1 here the soft limit's threshold registration (a write to cgroup.event_control)
 * waits 5-15 ms, serialized across workers (CGROUP-FACTS §6; docs/recycling.md has the
 * figures). Done ahead, in the thread pool (cgasync.h), that wait is off the critical path.
 *
 * One cgroup per slot, named for the generation that will use it (w<slot>.<gen>), made with
 * the run's limits as they are when it is asked for. It is taken only by that generation: a
 * slot whose next generation went to a spare (spares.h) has it removed and a new one made.
 * A reload changes the limits: every cgroup made ahead is dropped (removed in the thread
 * pool) and the next ones are made with the new limits.
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

typedef struct mv_cgnext {
    mv_cgahead_t *ahead;
    uint32_t gen;  /* the generation it is for; 0 = none asked */
    mv_job_t *job; /* being made, or NULL */
    bool ready;    /* made: cg holds it */
    mv_cgw_t cg;
} mv_cgnext_t;

struct mv_cgahead {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_cg_t *cg; /* the run's cgroups (its limits are read at each request) */
    bool on;           /* [recycle] cgroup_ahead, and cgroups in use */
    mv_cgnext_t *slot; /* [n], by slot - 1 */
    int n;
    uint64_t made, used, dropped;
};

/* nslots slots, nothing made yet. 0 or -ENOMEM. */
int mv_cgahead_init(mv_cgahead_t *a, uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int nslots,
                    bool on);
/* Makes <run>/w<slot>.<gen> ahead (a no-op when off, when it is being made or made already);
 * one made for another generation of the slot is removed. */
void mv_cgahead_prepare(mv_cgahead_t *a, int slot, uint32_t gen);
/* What a slot has for (slot, gen). */
enum { MV_AHEAD_NONE, MV_AHEAD_READY, MV_AHEAD_MAKING };
/* Takes the cgroup made for (slot, gen): READY (*out: the caller owns it now), MAKING (*job:
 * still being made; the caller takes the job over with mv_cg_create_retarget, so that no
 * second cgroup of that name is made meanwhile) or NONE (one made for another generation is
 * removed). */
int mv_cgahead_take(mv_cgahead_t *a, int slot, uint32_t gen, mv_cgw_t *out, mv_job_t **job);
/* Whether (slot, gen) is being made or made ahead: a worker that is not the slot's next one
 * (an escalation worker beside it) must not take that generation, whose cgroup directory is
 * this one's. */
bool mv_cgahead_holds(const mv_cgahead_t *a, int slot, uint32_t gen);
/* Removes every cgroup made ahead (reload, stop); `on` for the requests from now on. */
void mv_cgahead_drop(mv_cgahead_t *a, bool on);
/* Drops everything and frees the table (after the loop, or at the pool's end). */
void mv_cgahead_free(mv_cgahead_t *a);

#endif
