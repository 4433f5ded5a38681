/*
 * tpolicy: decisions about the warm template (see tpolicy.h).
 */
#include "tpolicy.h"

#include <errno.h>

#include "policy.h"

mv_tplan_t mv_tpolicy_gone(const mv_tgone_facts_t *f, int64_t backoff_min, int64_t backoff_max)
{
    mv_tplan_t p = {MV_TPLAN_NOTHING, f->streak, 0};

    if (f->unsupported) { /* retired for it, but no other would do better */
        p.kind = MV_TPLAN_FALLBACK;
        return p;
    }
    if (f->asked)
        return p;
    if (f->fatal_exit || f->hopeless) {
        p.kind = MV_TPLAN_FATAL;
        return p;
    }
    p.streak = f->streak + 1;
    if (p.streak >= MV_TEMPLATE_CRASH_LIMIT) {
        p.kind = MV_TPLAN_FALLBACK;
        return p;
    }
    p.kind = MV_TPLAN_RESPAWN;
    p.delay_ms = mv_policy_backoff(p.streak, backoff_min, backoff_max);
    return p;
}

mv_tmem_t mv_tpolicy_memory(int64_t mem, int64_t at_ready, int64_t soft, bool enforce)
{
    if (soft <= 0 || mem < 0 || mem < soft)
        return MV_TMEM_OK;
    if (at_ready >= soft)
        return MV_TMEM_TOO_BIG;
    return enforce ? MV_TMEM_RECYCLE : MV_TMEM_OBSERVED;
}

bool mv_tpolicy_fork_hopeless(int err)
{
    return err == ENOSYS || err == EPERM || err == EINVAL || err == EOPNOTSUPP;
}
