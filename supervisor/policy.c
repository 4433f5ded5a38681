/*
 * policy: pure decisions about workers.
 */
#include "policy.h"

#include <errno.h>
#include <signal.h>

#include "util.h"

/* A memory stop this soon after spawn, with no task done, is a failed start. */

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

unsigned mv_policy_reasons(const mv_wlimits_t *lim, const mv_wfacts_t *f)
{
    unsigned m = 0;

    /* A reading over the hard limit kills, unless the kernel enforces the limit itself (then
     * it has already OOM-killed the worker, or will at its next allocation). */
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

mv_verdict_t mv_policy_check(const mv_wlimits_t *lim, const mv_wfacts_t *f)
{
    static const mv_reason_t order[] = {MV_R_SOFT_LIMIT, MV_R_MAX_TASKS, MV_R_MAX_LIFETIME};
    unsigned m = mv_policy_reasons(lim, f);

    if (m & (1u << MV_R_HARD_LIMIT))
        return (mv_verdict_t){MV_VERDICT_KILL, MV_R_HARD_LIMIT};
    for (size_t i = 0; i < MV_ARRAY_LEN(order); i++)
        if (m & (1u << order[i]))
            return (mv_verdict_t){MV_VERDICT_RECYCLE, order[i]};
    return (mv_verdict_t){MV_VERDICT_KEEP, MV_R_NONE};
}

bool mv_policy_takes_tasks(const mv_take_facts_t *f)
{
    if (!f->serving || f->leaving || f->broken || f->no_tasks || f->in_flight >= f->prefetch)
        return false;
    return f->max_tasks == 0 || !f->enforce || f->tasks_done + (int64_t)f->in_flight < f->max_tasks;
}

bool mv_policy_last_task(const mv_take_facts_t *f)
{
    return f->max_tasks > 0 && f->enforce && !f->no_tasks &&
           f->tasks_done + (int64_t)f->in_flight == f->max_tasks;
}

bool mv_policy_premature(const mv_start_facts_t *f)
{
    return !f->ready || (f->soft > 0 && f->startup >= f->soft && !f->serving);
}

bool mv_policy_is_failure(mv_reason_t reason, bool premature)
{
    switch (reason) {
    case MV_R_CRASH:
    case MV_R_READY_TIMEOUT:
    case MV_R_PROTOCOL_ERROR:
    case MV_R_FATAL:
    case MV_R_NO_HELLO: return true;
    case MV_R_SOFT_LIMIT:
    case MV_R_HARD_LIMIT:
    case MV_R_KERNEL_OOM: return premature;
    default: return false;
    }
}

mv_exit_verdict_t mv_policy_exit(const mv_exit_facts_t *f)
{
    mv_exit_verdict_t v = {f->asked, false, false};

    if (f->cgroup_oom && f->term_signal == SIGKILL && f->asked != MV_R_HARD_LIMIT &&
        f->asked != MV_R_SHUTDOWN)
        v.reason = MV_R_KERNEL_OOM;
    else if (f->asked == MV_R_NONE && f->term_signal == 0 && f->exit_status == f->fatal_exit)
        v.reason = MV_R_FATAL;
    else if (f->asked == MV_R_NONE && f->term_signal == 0 && f->exit_status == 0 && f->no_hello)
        v.reason = MV_R_NO_HELLO;
    else if (f->asked == MV_R_NONE)
        v.reason = MV_R_CRASH;
    v.failure = mv_policy_is_failure(v.reason, f->premature);
    v.premature = v.failure && (v.reason == MV_R_SOFT_LIMIT || v.reason == MV_R_HARD_LIMIT ||
                                v.reason == MV_R_KERNEL_OOM);
    return v;
}

mv_reason_t mv_policy_charge(mv_reason_t reason)
{
    switch (reason) {
    case MV_R_NONE:
    case MV_R_MAX_TASKS:
    case MV_R_MAX_LIFETIME:
    case MV_R_SOFT_LIMIT:
    case MV_R_REQUESTED: return MV_R_CRASH;
    default: return reason;
    }
}

mv_gate_t mv_policy_gate(int recycling, int max_concurrent, uint64_t now_ms, uint64_t last_start_ms,
                         int64_t spacing_ms)
{
    uint64_t next = last_start_ms + (uint64_t)spacing_ms;

    if (recycling >= max_concurrent)
        return (mv_gate_t){false, 0};
    if (spacing_ms > 0 && last_start_ms != 0 && now_ms < next)
        return (mv_gate_t){false, next - now_ms};
    return (mv_gate_t){true, 0};
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

uint64_t mv_policy_spare_delay(int *streak, bool failure, uint64_t age_ms, int64_t min_ms,
                               int64_t max_ms)
{
    if (!failure || age_ms >= (uint64_t)max_ms) {
        *streak = 0;
        return 0;
    }
    if (*streak < 1000) /* past a few, the backoff is at its bound anyway */
        ++*streak;
    return mv_policy_backoff(*streak, min_ms, max_ms);
}

bool mv_policy_spawn_hopeless(int err)
{
    return err == -ENOENT || err == -EACCES || err == -ENOTDIR || err == -EISDIR ||
           err == -ENAMETOOLONG || err == -ELOOP || err == -EINVAL;
}

int64_t mv_policy_overshoot(int64_t learned, int64_t growth)
{
    int64_t decayed = learned - learned / 16;

    if (growth < 0)
        growth = 0;
    return growth > decayed ? growth : decayed;
}

int64_t mv_policy_stop_at(int64_t soft, int64_t headroom, int64_t overshoot)
{
    int64_t margin;

    if (soft <= 0 || headroom <= 0)
        return INT64_MAX;
    /* Nothing learned yet: all of it (the first stop is at soft). Learned: a quarter more
     * than the figure, for drains slower than any of the recent ones. */
    margin = overshoot < 0 ? headroom : overshoot + overshoot / 4;
    return margin >= headroom ? soft : soft + headroom - margin;
}
