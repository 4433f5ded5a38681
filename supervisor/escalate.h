/*
 * escalate: memory escalation before quarantine ([limits] escalate, escalate_max; issue 14
 * #4) as pure decisions. A task whose worker was stopped for memory (memvisor's hard-limit
 * kill, or the kernel's OOM kill in its cgroup) runs again on a fresh worker whose limits are
 * raised for that one task; only a task that fails at escalate_max is quarantined for it.
 *
 *   mv_escalate_next     the next hard limit: times the factor, or plus the step, capped at
 *                        escalate_max, whole pages
 *   mv_escalate_decide   what the attempt that just ended means for its task: run it again
 *                        as it was, escalate it, or quarantine it
 *   mv_escalate_limits   the limits of the worker that runs an escalated task
 *
 * Counting. `attempts` counts every run, so the results show how many there were; an attempt
 * that ends in an escalation does not count toward max_attempts (each limit gets its chance,
 * and the ladder is finite: it ends at escalate_max). A task killed for memory at
 * escalate_max is quarantined at once (the same limit would kill it again); any other end
 * (a crash, a timeout) of an escalated task counts as usual, and the task keeps its raised
 * limit when it runs again.
 *
 * The mark. An escalated task carries the hard limit it needs (mv_task_t.limit, 0 = the
 * pool's own): that field alone routes it, so a task source that moves tasks between hosts
 * (the Redis stream) carries it with the task and lets only a host whose ceiling allows that
 * limit take it:
 *   mv_escalate_ceiling  the highest hard limit this host gives a task
 *   mv_escalate_beyond   the limit a task killed at this host's ceiling needs from another
 *                        host: the next rung of this host's ladder, without its cap
 */
#ifndef MV_ESCALATE_H
#define MV_ESCALATE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "policy.h"
#include "reason.h"

/* [limits] escalate and escalate_max, resolved (mv_config_finish). */
typedef struct mv_esc_cfg {
    mv_escmode_t mode;
    double factor; /* MV_ESC_FACTOR */
    int64_t step;  /* MV_ESC_STEP, bytes */
    int64_t max;   /* escalate_max, bytes */
} mv_esc_cfg_t;

typedef enum {
    MV_ESC_REQUEUE,    /* run it again, at the limit it has */
    MV_ESC_RAISE,      /* run it again with `limit` */
    MV_ESC_QUARANTINE, /* it used up its attempts, or failed for memory at escalate_max */
} mv_esc_action_t;

/* The attempt that just ended. */
typedef struct mv_esc_facts {
    mv_reason_t reason;   /* what it was charged with (mv_policy_charge) */
    int64_t ran_under;    /* the hard limit of the worker it ran on; 0 = none */
    unsigned attempts;    /* runs so far, this one included */
    unsigned escalations; /* runs so far that ended in an escalation (not this one) */
    int max_attempts;     /* [tasks] max_attempts */
} mv_esc_facts_t;

typedef struct mv_esc_verdict {
    mv_esc_action_t action;
    int64_t limit; /* MV_ESC_RAISE: the new hard limit */
    bool at_max;   /* MV_ESC_QUARANTINE: killed for memory at escalate_max */
} mv_esc_verdict_t;

/* The configuration's escalation settings. */
mv_esc_cfg_t mv_escalate_cfg(const mv_config_t *cfg);
/* Whether a reason is "stopped for memory": the hard limit, or the kernel's OOM killer. */
bool mv_escalate_for_memory(mv_reason_t r);
/* The hard limit after `cur`: cur * factor or cur + step, rounded up to a whole page, at most
 * max; `cur` itself when it is at max already (or escalation is off). */
int64_t mv_escalate_next(const mv_esc_cfg_t *c, int64_t cur);
/* The rung after `cur` as mv_escalate_next climbs, with no escalate_max: what a task killed
 * for memory at `cur` (this host's ceiling) asks of a bigger host. `cur` itself when
 * escalation is off or `cur` is 0. */
int64_t mv_escalate_beyond(const mv_esc_cfg_t *c, int64_t cur);
/* The highest hard limit this host runs a task under: escalate_max, or with escalation off
 * the pool's hard limit `hard` (no limit at all: INT64_MAX, it takes any task). */
int64_t mv_escalate_ceiling(const mv_esc_cfg_t *c, int64_t hard);
mv_esc_verdict_t mv_escalate_decide(const mv_esc_cfg_t *c, const mv_esc_facts_t *f);
/* The limits of a worker for one escalated task: `base` (the pool's, as drawn) with the hard
 * limit `hard`, the soft limit raised in the same proportion (off stays off), one task, no
 * lifetime (it retires after its task). */
mv_wlimits_t mv_escalate_limits(const mv_wlimits_t *base, int64_t hard);

#endif
