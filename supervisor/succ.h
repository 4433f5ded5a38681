/*
 * succ: successors ([recycle] successor). A slot's next worker, started when its worker is
 * sent the last task its max_tasks allows (mv_policy_last_task), so that the process, its
 * cgroup (the slot's next one, made ahead: cgahead.h) and its start-up are done while that
 * task runs; the recycle at the answer adopts it (mv_worker_adopt) instead of starting one.
 * With a worker per task (`max_tasks = 1`, a template) a slot's cycle is then answer -> GO
 * and the task -> answer, where it was answer -> FORK to the template -> the clone -> HELLO ->
 * GO and the task -> answer (docs/recycling.md "A worker per task").
 *
 * Nothing is decided early: the recycle, its reason (a soft-limit crossing in the last task
 * still says soft_limit) and whether a replacement comes at all stay at the answer, as for
 * any worker. The successor only waits: an api one at HELLO without GO (hold_go), a lines one
 * on its stdin, as a spare does (spares.h); it is sent no task before it is adopted, so no
 * task can be lost or run twice through it (STOP means "start no other task": the worker it
 * follows is never stopped early).
 *
 * What a successor is until it is adopted:
 *   - its slot's next generation: MEMVISOR_SLOT is its slot, its cgroup w<slot>.<gen> (v1:
 *     three in rotation a slot, the gone worker's, the serving one's and the successor's);
 *     logs say its slot and generation; no timeline point; it counts against nothing (not
 *     the live count, not max_concurrent) but crash_limit when it fails before it is
 *     ready (on_failed);
 *   - its generation is reserved for it (mv_slots_reserve): no other worker of the slot gets
 *     it or its cgroup's name, whether it takes the slot or dies first;
 *   - adopted by its slot's next start, ready or still starting (then it reports its start
 *     and readiness to the pool, as a worker started there would);
 *   - one that dies or fails to start while it waits is logged (successor_gone), counted
 *     toward crash_limit when it was not ready yet (a failed start of the command:
 *     on_failed), and the
 *     slot's next worker is started the ordinary way (exec or fork, with the crash backoff
 *     and crash_limit of any worker): a successor is never started again for the slot until
 *     one of its workers has been started that way, so a command that cannot wait never
 *     loops here;
 *   - its cgroup says the soft limit or an OOM while it waits: its owner looks at it once
 *     adopted (taken->notified);
 *   - a reload retires the waiting ones (old command, old limits); a stop retires them with
 *     the workers (STOP while they wait: a clean exit; SIGKILL when not graceful).
 * Escalation workers, service mode and `none` workers have none.
 */
#ifndef MV_SUCC_H
#define MV_SUCC_H

#include <stdbool.h>
#include <stdint.h>

#include "cgahead.h"
#include "worker.h"

typedef struct mv_succ mv_succ_t;

/* One successor's record (the worker's data until it is adopted). */
typedef struct mv_succ_rec {
    mv_succ_t *s;
    mv_worker_t *w;
    int slot;
    bool retire;   /* asked to leave: it is no longer its slot's */
    bool notified; /* its cgroup said something while it waited */
} mv_succ_rec_t;

typedef struct mv_succ_events {
    void (*on_closed)(void *arg); /* a successor's handles are all closed (the pool may be done) */
    /* A waiting successor failed (died or could not start unasked): before it was ready, a
     * failed start of the pool's command, counted toward crash_limit. */
    void (*on_failed)(void *arg, mv_worker_t *w, const mv_gone_t *g);
} mv_succ_events_t;

struct mv_succ {
    mv_worker_opts_t wo; /* what successors are started with (its pointers outlive them) */
    mv_cgahead_t *ahead;
    const mv_succ_events_t *ev;
    void *arg;
    bool on; /* [recycle] successor, and workers that take tasks */
    bool stopping;
    int n;
    mv_succ_rec_t **slot; /* [n]: each slot's waiting successor, or NULL */
    bool *plain;          /* [n]: the slot's next worker starts the ordinary way (one died) */
    unsigned open;        /* successors whose handles are open (waiting or leaving) */
    uint64_t started, taken, lost, retired;
};

/* nslots slots, none started. 0 or -ENOMEM. wo is copied (its timeline is not used). */
int mv_succ_init(mv_succ_t *s, const mv_worker_opts_t *wo, mv_cgahead_t *ahead, int nslots, bool on,
                 const mv_succ_events_t *ev, void *arg);
void mv_succ_free(mv_succ_t *s);
/* Whether `slot` would start a successor now (on, not stopping, none waits, and the slot's
 * next worker is not to start the ordinary way). */
bool mv_succ_may_start(const mv_succ_t *s, int slot);
/* Starts `slot`'s successor as generation `gen` (reserved for it: mv_slots_reserve) with
 * limits `lim`; whether it waits now (it may be gone already: it could not start). */
bool mv_succ_start(mv_succ_t *s, int slot, uint32_t gen, const mv_wlimits_t *lim);

/* What mv_succ_take gives. */
typedef struct mv_succ_taken {
    mv_worker_t *w; /* NULL: none (start one the ordinary way) */
    bool ready;     /* it is ready (else it reports its start and readiness when they come) */
    bool started;   /* its process runs (else it reports on_started) */
    bool notified;  /* its cgroup said something while it waited: look at it */
} mv_succ_taken_t;

/* `slot`'s successor, no longer the module's (adopt it now, as its own generation:
 * mv_slots_take_reserved, mv_worker_adopt), or none: one leaving is not given. A slot that
 * gets none starts its next worker the ordinary way, and later ones start successors again. */
mv_succ_taken_t mv_succ_take(mv_succ_t *s, int slot);
/* A reload: the waiting successors are retired; later ones start with wo (and `on`). */
void mv_succ_reconfigure(mv_succ_t *s, const mv_worker_opts_t *wo, bool on);
/* No more successors: the waiting ones leave (STOP, or SIGKILL when not graceful). */
void mv_succ_stop(mv_succ_t *s, bool graceful);
/* Room for slots up to n (a pool scaled up). 0 or -ENOMEM (nothing changed). */
int mv_succ_grow(mv_succ_t *s, int n);
/* `slot` is retired (a pool scaled down): its waiting successor, if any, is told to leave. */
void mv_succ_retire_slot(mv_succ_t *s, int slot);
/* Whether every successor is gone and closed. */
bool mv_succ_done(const mv_succ_t *s);
/* Successors waiting now (ready or starting). */
int mv_succ_waiting(const mv_succ_t *s);

#endif
