/*
 * slots: the pool's bookkeeping as pure decisions over plain structs, so that surge, the
 * recycle queue, backoff and crash streaks are tested with fake workers (tests/check_pool.c)
 * and pool.c only carries them out.
 *
 *   - a slot is served by one active worker; a recycled one keeps its seat until it is gone;
 *   - surge: a planned recycle (or a kill that is not the worker's fault) has its replacement
 *     started at once, before the old worker leaves;
 *   - handover (service mode): the old worker serves on until its replacement is ready;
 *   - at most max_concurrent recycles at once, spaced by `spacing`; the others wait in a
 *     queue, most urgent first (memory before counts: a soft-limit recycle that waits its
 *     turn may reach the hard limit), then in order of arrival;
 *   - a worker that fails (crash, protocol error, ready timeout, a start that does not fit
 *     the limits) is respawned with exponential backoff and counts toward crash_limit; any
 *     task that ends resets the streak; the fatal exit code ends the run;
 *   - so does a worker started for no slot yet (a spare, a successor) that fails before it
 *     is ready: crash_limit counts the failed starts of the pool's command, whoever asked
 *     for them (mv_slots_failed); `unstarted` counts those of workers that never became
 *     ready, none ready since, which pace the spares (spares.h).
 *
 * No I/O and no clock: callers pass `now` (ms).
 */
#ifndef MV_SLOTS_H
#define MV_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

/* A worker, as the slots see it (embedded in the pool's record of the worker). */
typedef struct mv_seat {
    int slot;           /* 1-based */
    bool recycling;     /* counts against max_concurrent */
    bool replaced;      /* its slot has (or is getting) another worker */
    bool handover;      /* serves until its replacement is ready */
    bool gone;          /* it exited (its seat is free) */
    bool started;       /* it became ready (mv_slots_started) */
    mv_reason_t queued; /* a recycle waiting its turn; MV_R_NONE when none */
    uint64_t queued_seq;
    struct mv_seat *qnext; /* the recycle queue */
    struct mv_seat *hnext; /* its slot's workers in handover */
} mv_seat_t;

typedef struct mv_slot {
    mv_seat_t *active;  /* the worker serving the slot (not a retiring one); NULL: none */
    mv_seat_t *handing; /* workers of this slot in handover, waiting for a ready one */
    uint32_t gen;       /* generations started */
    int crashes;        /* consecutive failures of this slot's workers */
    bool fatal;         /* its worker asked not to be respawned */
    bool retired;       /* scaled away: no worker is started for it until it is revived */
} mv_slot_t;

typedef struct mv_slots_cfg {
    int max_concurrent;  /* [recycle] max_concurrent */
    int64_t spacing;     /* [recycle] spacing, ms */
    int64_t backoff_min; /* [worker] backoff_min, ms */
    int64_t backoff_max; /* [worker] backoff_max, ms */
    int crash_limit;     /* [worker] crash_limit; 0 = never give up */
    bool service;        /* handover: a recycled worker serves until its replacement is ready */
} mv_slots_cfg_t;

typedef struct mv_slots {
    mv_slots_cfg_t cfg;
    mv_slot_t *slot; /* [n], indexed by slot - 1 */
    int n;           /* slot numbers ever used (live or retired) */
    int live;        /* slots not retired: the pool's worker count ([supervisor] workers) */
    int recycling;   /* recycles under way (counted against max_concurrent) */
    uint64_t last_recycle_ms; /* start of the latest planned recycle */
    mv_seat_t *queue;         /* recycles waiting their turn, most urgent first */
    uint64_t seq;
    int streak;    /* consecutive failures pool-wide, no task ending in between: the slots'
                    * workers', the spares', the successors' (every start of the command) */
    int unstarted; /* failures in a row of workers that never became ready, none becoming
                    * ready since: the command does not start now (spares.h: failing) */
    bool stopping;
    bool fatal; /* the run ends */
} mv_slots_t;

/* What a recycle decision says. */
typedef struct mv_recycle_plan {
    bool go;           /* false: it waits its turn (queued, or already leaving) */
    bool replacement;  /* start a new worker for its slot now (surge) */
    bool handover;     /* serve until the replacement is ready, then drain */
    uint64_t retry_ms; /* !go and queued: try the queue again after this (spacing); 0 = when
                        * a recycle ends */
} mv_recycle_plan_t;

/* What a worker's exit means for its slot and the run. */
typedef struct mv_gone_plan {
    bool respawn;      /* start a new worker for the slot... */
    uint64_t delay_ms; /* ...after this (the crash backoff; 0 = now) */
    bool run_ends;     /* crash_limit reached, or the fatal code */
    bool crash_limit;  /* which of the two */
} mv_gone_plan_t;

/* nslots slots, all empty. 0 or -ENOMEM. */
int mv_slots_init(mv_slots_t *s, int nslots, const mv_slots_cfg_t *cfg);
void mv_slots_free(mv_slots_t *s);

/* A new worker takes `slot`: it becomes the active one; returns its generation. */
uint32_t mv_slots_take(mv_slots_t *s, mv_seat_t *w, int slot);
/* Reserves `slot`'s next generation for a worker started ahead of its turn (a successor,
 * succ.h): no other worker gets it, whether that one takes the slot or not (its cgroup
 * w<slot>.<gen> is its own, kept or not). */
uint32_t mv_slots_reserve(mv_slots_t *s, int slot);
/* `slot`'s next generations come after `gen` (those up to it named cgroups that are being
 * removed: cgahead.h, a reload). */
void mv_slots_pass(mv_slots_t *s, int slot, uint32_t gen);
/* mv_slots_take for the worker started ahead with a reserved generation (it keeps it). */
void mv_slots_take_reserved(mv_slots_t *s, mv_seat_t *w, int slot);
/* A worker beside `slot`'s active one, never active itself (an escalated task's: escalate.h):
 * counted as replaced from the start, so nothing replaces or respawns it, while its failures
 * count toward crash_limit like any worker's. Returns its generation (the slot's numbering). */
uint32_t mv_slots_take_extra(mv_slots_t *s, mv_seat_t *w, int slot);

/* A planned recycle (max_tasks, lifetime, soft limit, requested, reload), or a shutdown. A
 * failure (premature: the limits do not fit its start-up) gets no replacement until gone.
 * Planned recycles pass the gate (max_concurrent, spacing) or wait in the queue; a shutdown
 * never waits. */
mv_recycle_plan_t mv_slots_recycle(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason, bool failure,
                                   uint64_t now);
/* mv_slots_recycle when a ready hot spare will replace w at once: a soft-limit recycle of
 * the slot's active worker (not a failure) then passes the gate. max_concurrent and spacing
 * keep capacity and spread start-ups; with the replacement ready there is neither a drop nor
 * a start-up, while a worker past its soft limit that waits its turn keeps growing toward
 * soft + handover_headroom (bench/w2: 17 of 18 headroom passes were such waits). It still
 * counts as a recycle under way. Any other recycle is planned as by mv_slots_recycle. */
mv_recycle_plan_t mv_slots_recycle_spare(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason,
                                         bool failure, uint64_t now);
/* A fault or kill (task timeout, hard limit, protocol error...): whether a replacement
 * starts now (not for the worker's own failure, nor when it already has one). */
bool mv_slots_replace_now(mv_slots_t *s, mv_seat_t *w, bool failure);
/* w became ready: the handover workers of its slot it releases (drain them), at most `max`
 * written to out; returns how many. */
int mv_slots_ready(mv_slots_t *s, const mv_seat_t *w, mv_seat_t **out, int max);
/* w's handover ends before its replacement is ready (it passed the handover headroom): it
 * drains now, and the replacement, once ready, has nothing of it to release. */
void mv_slots_handover_end(mv_slots_t *s, mv_seat_t *w);
/* w is gone (failure: mv_policy_exit's verdict; fatal: the fatal exit code). */
mv_gone_plan_t mv_slots_gone(mv_slots_t *s, mv_seat_t *w, bool failure, bool fatal);
/* A worker that no slot has yet (a spare, a successor) failed before it was ready: a failed
 * start, counted in the streak like a slot's worker's; the plan says whether the run ends
 * (crash_limit; respawn and delay_ms stay 0: it has no slot). */
mv_gone_plan_t mv_slots_failed(mv_slots_t *s);
/* A worker became ready (w: a slot's, NULL: a spare or a successor): the command starts.
 * Returns true when that ends a run of failed starts (spares may start again). */
bool mv_slots_started(mv_slots_t *s, mv_seat_t *w);
/* A task ended (done, failed or quarantined): the pool is getting somewhere. */
void mv_slots_progress(mv_slots_t *s, const mv_seat_t *w);
/* A worker stayed up as long as the longest backoff: its slot's streak is over. */
void mv_slots_survived(mv_slots_t *s, const mv_seat_t *w);
/* The most urgent queued recycle that may start now (recycle it: mv_slots_recycle takes it
 * off the queue), or NULL; *retry_ms says when to look again if the spacing holds it (0: when
 * a recycle ends). */
mv_seat_t *mv_slots_next_queued(mv_slots_t *s, uint64_t now, uint64_t *retry_ms);
/* Takes w off the recycle queue (it is leaving anyway, or gone). */
void mv_slots_unqueue(mv_slots_t *s, mv_seat_t *w);
/* Whether a slot with no worker may get one (not stopping, not fatal). */
bool mv_slots_may_spawn(const mv_slots_t *s, int slot);
/* Stopping: nothing is respawned or started from the queue from now on. */
void mv_slots_stop(mv_slots_t *s);

/* Scaling (a reload's or the control socket's `workers`). Slot numbers are the workers'
 * names (cgroups w<slot>.<gen>, the timeline, the log), so a pool that shrinks retires
 * slots instead of renumbering them, and one that grows revives retired slots, lowest
 * first, before it numbers new ones.
 *
 * mv_slots_scale_plan: which slots change to make `want` live (1 <= want). Growing, the
 * revived or new slot numbers are written to out (lowest first); shrinking, the slots to
 * retire, chosen by rank[slot - 1] (lower first: an idle worker before one starting, before
 * one with a task; the caller ranks a slot it must keep, as a leak experiment's, highest),
 * a tie to the highest number; slot 1 is never retired, so a pool always keeps its first
 * slot. out has room for |want - live| + n entries; returns how many it wrote; `grow` says
 * which way. No change is made. */
int mv_slots_scale_plan(const mv_slots_t *s, int want, const int *rank, int *out, bool *grow);

/* The slot numbers out[0..k) as a log value "3,4,5" in buf (cap > 4): whole numbers only;
 * when they do not all fit, as many as fit with ",..." after them, so that a cut never names
 * a slot that is not in the list. */
void mv_slots_list(char *buf, size_t cap, const int *out, int k);
/* Room for slots up to n (n > s->n: new ones start retired, revived by mv_slots_revive).
 * 0 or -ENOMEM (nothing changed). */
int mv_slots_grow(mv_slots_t *s, int n);
/* `slot` serves again: its next worker may be started (its crash count starts over). */
void mv_slots_revive(mv_slots_t *s, int slot);
/* `slot` is retired: nothing is respawned or started for it; its active worker (returned,
 * or NULL) stays its seat's until gone, counted as replaced (no surge, no respawn); the
 * caller drains it. Its recycle waiting in the queue is dropped. */
mv_seat_t *mv_slots_retire(mv_slots_t *s, int slot);

/* Urgency of a recycle reason: higher first (memory, then counts and requests). */
int mv_slots_urgency(mv_reason_t r);

#endif
