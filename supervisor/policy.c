/*
 * policy: pure recycling verdicts.
 */
#include "policy.h"

#include "util.h"

mv_wlimits_t mv_policy_limits(const mv_config_t *cfg, double u_tasks, double u_life)
{
    mv_wlimits_t l = {0};

    if (cfg->limits.max_tasks > 0)
        l.max_tasks =
            cfg->limits.max_tasks + (int64_t)(u_tasks * (double)(cfg->limits.max_tasks_jitter + 1));
    if (cfg->limits.max_lifetime > 0)
        l.lifetime_ms = cfg->limits.max_lifetime +
                        (int64_t)(u_life * (double)(cfg->limits.max_lifetime_jitter + 1));
    l.soft_bytes = cfg->limits.memory_soft;
    l.hard_bytes = cfg->limits.memory_hard;
    return l;
}

mv_verdict_t mv_policy_check(const mv_wlimits_t *lim, const mv_wfacts_t *f)
{
    /* A reading over the hard limit kills now, unless the kernel enforces the limit itself
     * (then it has already OOM-killed the worker, or will at its next allocation). */
    if (lim->hard_bytes > 0 && !f->hard_by_kernel && f->hard_value >= lim->hard_bytes)
        return (mv_verdict_t){MV_VERDICT_KILL, MV_R_HARD_LIMIT};
    if (lim->soft_bytes > 0 && f->soft_value >= lim->soft_bytes)
        return (mv_verdict_t){MV_VERDICT_RECYCLE, MV_R_SOFT_LIMIT};
    if (lim->max_tasks > 0 && f->tasks_done >= lim->max_tasks)
        return (mv_verdict_t){MV_VERDICT_RECYCLE, MV_R_MAX_TASKS};
    if (lim->lifetime_ms > 0 && f->age_ms >= (uint64_t)lim->lifetime_ms)
        return (mv_verdict_t){MV_VERDICT_RECYCLE, MV_R_MAX_LIFETIME};
    return (mv_verdict_t){MV_VERDICT_KEEP, MV_R_NONE};
}

unsigned mv_policy_reasons(const mv_wlimits_t *lim, const mv_wfacts_t *f)
{
    unsigned m = 0;

    if (lim->hard_bytes > 0 && !f->hard_by_kernel && f->hard_value >= lim->hard_bytes)
        m |= 1u << MV_R_HARD_LIMIT;
    if (lim->soft_bytes > 0 && f->soft_value >= lim->soft_bytes)
        m |= 1u << MV_R_SOFT_LIMIT;
    if (lim->max_tasks > 0 && f->tasks_done >= lim->max_tasks)
        m |= 1u << MV_R_MAX_TASKS;
    if (lim->lifetime_ms > 0 && f->age_ms >= (uint64_t)lim->lifetime_ms)
        m |= 1u << MV_R_MAX_LIFETIME;
    return m;
}

uint64_t mv_policy_backoff(int crashes, int64_t min_ms, int64_t max_ms)
{
    uint64_t d;

    if (crashes <= 1)
        return 0;
    d = (uint64_t)(min_ms > 0 ? min_ms : 1);
    for (int i = 2; i < crashes && d < (uint64_t)max_ms; i++)
        d *= 2;
    return d > (uint64_t)max_ms ? (uint64_t)max_ms : d;
}

const char *mv_reason_name(mv_reason_t r)
{
    static const char *const n[MV_R_COUNT] = {
        "none",       "max_tasks",    "max_lifetime",  "soft_limit", "hard_limit",
        "kernel_oom", "task_timeout", "ready_timeout", "crash",      "protocol_error",
        "requested",  "shutdown",     "fatal",
    };
    return (unsigned)r < MV_R_COUNT ? n[r] : "?";
}
