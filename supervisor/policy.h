/*
 * policy: recycling verdicts as a pure function of a worker's counters and memory readings
 * (DESIGN §5). No I/O, no clock: the caller passes `now` and the random draw for jitter, so
 * every verdict can be tested with plain numbers.
 */
#ifndef MV_POLICY_H
#define MV_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Why a worker left; the names are the machine-readable `reason=` of recycle events. */
typedef enum {
    MV_R_NONE,
    MV_R_MAX_TASKS,
    MV_R_MAX_LIFETIME,
    MV_R_SOFT_LIMIT,
    MV_R_HARD_LIMIT,
    MV_R_KERNEL_OOM,
    MV_R_TASK_TIMEOUT,
    MV_R_READY_TIMEOUT,
    MV_R_CRASH,
    MV_R_PROTOCOL_ERROR,
    MV_R_REQUESTED,
    MV_R_SHUTDOWN,
    MV_R_FATAL,
    MV_R_COUNT
} mv_reason_t;

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

/* What the policy looks at. */
typedef struct mv_wfacts {
    int64_t tasks_done;  /* tasks this worker answered */
    uint64_t age_ms;     /* since spawn */
    int64_t soft_value;  /* the configured metric (private or rss), bytes; < 0 = unknown */
    int64_t hard_value;  /* what the hard limit compares (rss / cgroup usage); < 0 = unknown */
    bool hard_by_kernel; /* the kernel enforces the hard limit: never kill on a reading */
} mv_wfacts_t;

/*
 * Draws one worker's limits from the config: max_tasks + u * jitter, lifetime + u * jitter,
 * where u in [0,1) is the caller's random draw (one per jitter).
 */
mv_wlimits_t mv_policy_limits(const mv_config_t *cfg, double u_tasks, double u_life);

/* The verdict for a worker now. Kill reasons outrank recycle reasons. (task_timeout is not
 * here: the worker's deadline timer enforces it, see fsm.h.) */
mv_verdict_t mv_policy_check(const mv_wlimits_t *lim, const mv_wfacts_t *f);

/* Every reason that applies now, as a bit mask (1 << mv_reason_t): what observe-only mode
 * reports, each reason once. */
unsigned mv_policy_reasons(const mv_wlimits_t *lim, const mv_wfacts_t *f);

/*
 * Delay before respawning a slot after `crashes` consecutive crashes: none for the first
 * (a one-off crash costs nothing), then min, 2*min, 4*min ... bounded by max.
 */
uint64_t mv_policy_backoff(int crashes, int64_t min_ms, int64_t max_ms);

const char *mv_reason_name(mv_reason_t r);

#endif
