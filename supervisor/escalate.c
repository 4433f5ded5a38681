/*
 * escalate: pure decisions of memory escalation (see escalate.h).
 */
#include "escalate.h"

#define PAGE INT64_C(4096)

mv_esc_cfg_t mv_escalate_cfg(const mv_config_t *cfg)
{
    return (mv_esc_cfg_t){cfg->limits.escalate_mode, cfg->limits.escalate_factor,
                          cfg->limits.escalate_step, cfg->limits.escalate_max};
}

bool mv_escalate_for_memory(mv_reason_t r)
{
    return r == MV_R_HARD_LIMIT || r == MV_R_KERNEL_OOM;
}

int64_t mv_escalate_next(const mv_esc_cfg_t *c, int64_t cur)
{
    double next;
    int64_t n;

    if (c->mode == MV_ESC_OFF || cur <= 0 || cur >= c->max)
        return cur;
    if (c->mode == MV_ESC_FACTOR) {
        next = (double)cur * c->factor;
        n = next >= (double)c->max ? c->max : (int64_t)next;
    } else {
        n = cur > c->max - c->step ? c->max : cur + c->step;
    }
    n = (n + PAGE - 1) / PAGE * PAGE; /* cgroups round limits to pages anyway */
    if (n <= cur)
        n = cur + PAGE; /* a factor too small to move a page still moves one */
    return n > c->max ? c->max : n;
}

int64_t mv_escalate_beyond(const mv_esc_cfg_t *c, int64_t cur)
{
    mv_esc_cfg_t open = *c;

    open.max = INT64_MAX / 2; /* far above any memory, and cur * factor still fits */
    return cur >= open.max ? cur : mv_escalate_next(&open, cur);
}

int64_t mv_escalate_ceiling(const mv_esc_cfg_t *c, int64_t hard)
{
    if (c->mode != MV_ESC_OFF)
        return c->max;
    return hard > 0 ? hard : INT64_MAX;
}

mv_esc_verdict_t mv_escalate_decide(const mv_esc_cfg_t *c, const mv_esc_facts_t *f)
{
    mv_esc_verdict_t v = {MV_ESC_REQUEUE, 0, false};
    unsigned counted = f->attempts > f->escalations ? f->attempts - f->escalations : 0;

    if (c->mode != MV_ESC_OFF && mv_escalate_for_memory(f->reason) && f->ran_under > 0) {
        if (f->ran_under >= c->max) {
            v.action = MV_ESC_QUARANTINE; /* the highest limit killed it: so would it again */
            v.at_max = true;
        } else {
            v.action = MV_ESC_RAISE;
            v.limit = mv_escalate_next(c, f->ran_under);
        }
        return v;
    }
    if ((int)counted >= f->max_attempts)
        v.action = MV_ESC_QUARANTINE;
    return v;
}

mv_wlimits_t mv_escalate_limits(const mv_wlimits_t *base, int64_t hard)
{
    mv_wlimits_t l = *base;

    if (base->hard_bytes > 0 && base->soft_bytes > 0) {
        /* Same share of the limit; in long double, so no 64-bit product overflows. */
        l.soft_bytes = (int64_t)((long double)base->soft_bytes * (long double)hard /
                                 (long double)base->hard_bytes);
        l.soft_bytes = l.soft_bytes / PAGE * PAGE;
    }
    l.hard_bytes = hard;
    l.max_tasks = 1; /* it retires after its task */
    l.lifetime_ms = 0;
    return l;
}
