/*
 * policy: every decision about a worker as a pure function of plain facts (DESIGN §5). No
 * I/O, no clock: callers pass `now` and random draws, so each decision is tested with plain
 * numbers (tests/check_policy.c).
 *
 *   mv_policy_limits        a worker's limits, jitter drawn once at spawn
 *   mv_policy_reasons       every limit that applies now (the one place limits are tested)
 *   mv_policy_check         the verdict: keep, recycle (finish the task in hand) or kill
 *   mv_policy_takes_tasks   whether a worker may be sent one more task
 *   mv_policy_last_task     whether the task just sent is the last one max_tasks allows
 *   mv_policy_premature     a memory stop before the worker did anything
 *   mv_policy_is_failure    whether leaving for a reason counts as the worker's failure
 *   mv_policy_exit          why a worker that exited left, and whether that was a failure
 *   mv_policy_charge        what the task in hand of a dead worker is charged with
 *   mv_policy_gate          whether a planned recycle may start now (max_concurrent, spacing)
 *   mv_policy_backoff       the respawn delay of a crash-looping slot
 *   mv_policy_spare_delay   when a spare that died is replaced (spares.h)
 *   mv_policy_overshoot     how far a worker stopped for memory grows after its stop
 *   mv_policy_stop_at       where a worker recycled for memory that still serves is stopped
 *   mv_policy_spawn_hopeless whether a spawn error means the command can never start
 */
#ifndef MV_POLICY_H
#define MV_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "reason.h"

typedef enum {
    MV_VERDICT_KEEP,    /* nothing to do */
    MV_VERDICT_RECYCLE, /* finish the task in hand, then replace the worker */
    MV_VERDICT_KILL,    /* kill now (SIGKILL) and requeue its task */
} mv_verdict_kind_t;

typedef struct mv_verdict {
    mv_verdict_kind_t kind;
    mv_reason_t reason;
} mv_verdict_t;

/* A worker's limits, fixed at spawn (jitter drawn once per worker). 0 = off. */
typedef struct mv_wlimits {
    int64_t max_tasks;
    int64_t lifetime_ms;
    int64_t soft_bytes;
    int64_t hard_bytes;
} mv_wlimits_t;

/* What the limits are compared with. */
typedef struct mv_wfacts {
    int64_t tasks_done;  /* tasks this worker answered */
    uint64_t age_ms;     /* since spawn */
    int64_t soft_value;  /* the configured metric (private or rss), bytes; < 0 = unknown */
    int64_t hard_value;  /* what the hard limit compares (rss / cgroup usage); < 0 = unknown */
    bool hard_by_kernel; /* the kernel enforces the hard limit: never kill on a reading */
} mv_wfacts_t;

/* Draws one worker's limits from the config: max_tasks + u * jitter, lifetime + u * jitter,
 * where u in [0,1) is the caller's random draw (one per jitter). */
mv_wlimits_t mv_policy_limits(const mv_config_t *cfg, double u_tasks, double u_life);

/* Every limit that applies now, as a bit mask (1 << mv_reason_t): what observe-only mode
 * reports (each reason once), and what mv_policy_check picks from. */
unsigned mv_policy_reasons(const mv_wlimits_t *lim, const mv_wfacts_t *f);

/* The verdict for a worker now: the hard limit (a kill) outranks the recycle reasons, memory
 * outranks counts. (task_timeout is not here: the worker's deadline enforces it.) */
mv_verdict_t mv_policy_check(const mv_wlimits_t *lim, const mv_wfacts_t *f);

/* Whether a worker may be sent one more task. */
typedef struct mv_take_facts {
    bool serving;       /* its state takes tasks (fsm: mv_fsm_takes_tasks) */
    bool leaving;       /* a recycle, fault or kill was decided for it */
    bool broken;        /* it broke the protocol: nothing more it says counts */
    bool no_tasks;      /* [worker] protocol = none */
    unsigned in_flight; /* tasks sent and not answered */
    unsigned prefetch;  /* [worker] prefetch */
    int64_t tasks_done;
    int64_t max_tasks; /* its drawn limit, 0 = off */
    bool enforce;      /* [limits] enforce */
} mv_take_facts_t;

/* Tasks in flight count toward max_tasks, so a worker never runs more than its limit; in
 * observe-only mode max_tasks is reported (would_recycle), not enforced. */
bool mv_policy_takes_tasks(const mv_take_facts_t *f);

/* Whether the task just sent (counted in in_flight) is the last one its count limit lets the
 * worker take: max_tasks on and enforced, reached by tasks done plus in flight just now. Its
 * slot's next worker may start then (a successor, succ.h): the recycle itself is decided at
 * the answer, as for any worker. */
bool mv_policy_last_task(const mv_take_facts_t *f);

/* How a worker started, for the "premature" rule. */
typedef struct mv_start_facts {
    bool ready;      /* it finished starting (HELLO, or waiting for its first task) */
    int64_t startup; /* its memory then (the figure the soft limit compares) */
    int64_t soft;    /* its soft limit; 0 = none */
    /* A `none` worker first seen serving (it had accepted a connection): its start-up ended
     * before that look, and `startup` holds what it served meanwhile too (the look comes 10 ms
     * later at best, ~100 ms on a busy host: 65 MB for a service leaking 700 MB/s under load,
     * which was then failed as premature). It started: any memory stop is a recycle. */
    bool serving;
} mv_start_facts_t;

/* A worker stopped for memory whose start-up does not fit the limits: it was stopped before
 * it finished starting, or it was already at or above its soft limit when it did. Its
 * replacement would start the same way: a failure (crash backoff, crash_limit). Any other
 * memory stop, however soon after the start (a leaking service under load crosses its soft
 * limit within a second), is a recycle doing its job. */
bool mv_policy_premature(const mv_start_facts_t *f);

/* Whether leaving for `reason` is the worker's failure: then its slot is respawned only once
 * it is gone, with the crash backoff, and it counts toward crash_limit. Planned recycles (and
 * a task that hung or outgrew the limits) get their replacement at once. */
bool mv_policy_is_failure(mv_reason_t reason, bool premature);

/* How a worker ended, as far as memvisor knows it. */
typedef struct mv_exit_facts {
    mv_reason_t asked; /* why memvisor stopped it; MV_R_NONE when nobody asked */
    int term_signal;   /* 0 = it exited */
    int64_t exit_status;
    int fatal_exit;  /* [worker] fatal_exit */
    bool cgroup_oom; /* its cgroup counts a kernel OOM kill (v1 oom_control, v2 oom_kill) */
    bool no_hello;   /* an api worker that never said HELLO */
    bool premature;  /* mv_policy_premature at its exit */
} mv_exit_facts_t;

typedef struct mv_exit_verdict {
    mv_reason_t reason; /* why it finally left */
    bool failure;       /* counts toward crash_limit and the backoff */
    bool premature;     /* stopped for memory before doing anything: say so */
} mv_exit_verdict_t;

/* A SIGKILL with an OOM kill in its cgroup is the kernel's (unless memvisor killed it for
 * the hard limit or a shutdown: then the count may be an older kill); a worker nobody asked
 * to go exited with the fatal code, or exited 0 without a HELLO (it does not speak the api
 * protocol: no use starting it again), or crashed. */
mv_exit_verdict_t mv_policy_exit(const mv_exit_facts_t *f);

/* What the task in hand of a dead worker is charged with: the worker's own reason when it was
 * stopped for the task (limits, timeouts, protocol errors, the OOM killer); a crash when it
 * died during a planned recycle, which lets the task in hand finish. */
mv_reason_t mv_policy_charge(mv_reason_t reason);

/* Whether a planned recycle may start now. */
typedef struct mv_gate {
    bool go;
    uint64_t wait_ms; /* !go: > 0 = wait for the spacing; 0 = wait for a recycle to end */
} mv_gate_t;

mv_gate_t mv_policy_gate(int recycling, int max_concurrent, uint64_t now_ms, uint64_t last_start_ms,
                         int64_t spacing_ms);

/* How far a worker stopped for memory grows after its stop (SIGTERM or STOP: it finishes
 * what it has in flight), learned over the run from `growth`, one drain's peak less its
 * memory at the stop: the larger of that and the figure so far (-1: none yet) decayed by a
 * sixteenth (one slow drain raises it at once; it comes back down over some 20 drains).
 * Negative growth counts as 0. */
int64_t mv_policy_overshoot(int64_t learned, int64_t growth);

/* Where a worker recycled for memory that still serves (its replacement starting, or waiting
 * its turn) is stopped: at soft + headroom less a margin, so that its peak, not its stop,
 * stays within soft + headroom: the learned overshoot and a quarter more (drains vary), or
 * all of the headroom while nothing is learned (overshoot < 0: it stops at soft); never
 * below soft. INT64_MAX:
 * no bound (headroom 0, or no soft limit). */
int64_t mv_policy_stop_at(int64_t soft, int64_t headroom, int64_t overshoot);

/* Delay before respawning a slot after `crashes` consecutive crashes: none for the first
 * (a one-off crash costs nothing), then min, 2*min, 4*min ... bounded by max. */
uint64_t mv_policy_backoff(int crashes, int64_t min_ms, int64_t max_ms);

/* A spare is gone before it took a slot: the delay before the next spare starts, and the
 * streak of spares that died young (*streak). One that lived at least max_ms (the longest
 * backoff), or that was asked to go (failure false), ends the streak; one that died younger
 * extends it, and the delay is the crash backoff of that streak. Spares never count toward
 * crash_limit: a command that cannot start shows in the slots' own workers. */
uint64_t mv_policy_spare_delay(int *streak, bool failure, uint64_t age_ms, int64_t min_ms,
                               int64_t max_ms);

/* Whether a spawn error (a negative errno) means the command can never start, so retrying
 * is pointless and the run ends. */
bool mv_policy_spawn_hopeless(int err);

#endif
