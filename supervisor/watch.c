/*
 * watch: samples, cgroup events and rechecks, turned into verdicts (see watch.h).
 */
#include "watch.h"

#include "meter.h"

#define RECHECK_MS 5

void mv_watch_would(mv_watch_t *wt, mv_watched_t *ww, mv_reason_t reason, const mv_reading_t *r)
{
    mv_worker_t *w = ww->w;

    if (ww->would & (1u << reason))
        return;
    ww->would |= 1u << reason;
    mv_info(wt->log, "would_recycle", MV_I("worker", w->slot), MV_I("gen", w->gen),
            MV_I("pid", w->proc.pid), MV_S("reason", mv_reason_name(reason)),
            MV_I("tasks", w->tasks_done),
            MV_I("mem", r ? mv_reading_limit_metric(r, wt->cfg->limits.metric) : -1),
            MV_I("usage", r ? r->usage : -1));
}

/* Asks the policy about w with reading r (NULL: none); says whether a decision is taken. */
static bool look(mv_watch_t *wt, mv_watched_t *ww, const mv_reading_t *r, bool sampled)
{
    const mv_config_t *cfg = wt->cfg;
    mv_worker_t *w = ww->w;
    mv_wfacts_t f = {
        .tasks_done = w->tasks_done,
        .age_ms = mv_now_ms() - w->spawned_ms,
        .soft_value = r ? mv_reading_limit_metric(r, cfg->limits.metric) : -1,
        .hard_value = r ? r->usage : -1,
        .hard_by_kernel = mv_worker_kernel_limits(w) && cfg->limits.enforce,
    };
    mv_verdict_t v = mv_policy_check(&w->lim, &f);

    if (v.kind != MV_VERDICT_KEEP && !cfg->limits.enforce) {
        unsigned all = mv_policy_reasons(&w->lim, &f);
        for (int reason = 0; reason < MV_R_COUNT; reason++)
            if (all & (1u << reason))
                mv_watch_would(wt, ww, (mv_reason_t)reason, r);
        v = (mv_verdict_t){MV_VERDICT_KEEP, MV_R_NONE};
    }
    return wt->ev->on_check(wt->arg, ww, r, v, sampled);
}

void mv_watch_check(mv_watch_t *wt, mv_watched_t *ww, const mv_reading_t *r)
{
    if (mv_fsm_takes_tasks(ww->w->state))
        look(wt, ww, r, false);
}

/* [limits] task_warn: a task running that long is said once, and again at each doubling of
 * its running time (a worker that never answers, or never flushes, is not silent). */
static void check_slow(mv_watch_t *wt, mv_watched_t *ww, const mv_reading_t *r)
{
    const mv_worker_t *w = ww->w;
    const mv_task_t *t = mv_worker_current(w);
    int64_t warn = wt->cfg->limits.task_warn, ms;

    if (warn <= 0 || !t)
        return;
    if (ww->slow_task != t->id) {
        ww->slow_task = t->id;
        ww->slow_next_ms = warn;
    }
    ms = (int64_t)((uv_hrtime() - w->win.started_ns) / 1000000);
    if (ms < ww->slow_next_ms)
        return;
    mv_warn(wt->log, "task_slow", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_I("task", (long long)t->id), MV_I("running_ms", ms), MV_I("mem", r ? r->usage : -1),
            MV_S("msg", w->o.cfg->worker.protocol == MV_PROTO_LINES
                            ? "no answer yet: a lines worker must flush each result line"
                            : "no answer yet"));
    while (ww->slow_next_ms <= ms)
        ww->slow_next_ms *= 2;
}

static void sample_cb(uv_timer_t *h)
{
    mv_watch_t *wt = h->data;
    mv_watched_t *ww, *next;
    const mv_reading_t *r;

    for (ww = wt->list; ww; ww = next) {
        next = ww->next; /* a decision may end it (a kill of a /proc-sampled worker) */
        if (!mv_fsm_watched(ww->w->state))
            continue;
        mv_worker_check_placement(ww->w);
        r = mv_worker_read(ww->w, true);
        check_slow(wt, ww, r);
        look(wt, ww, r, true);
    }
}

/* Re-reads a worker whose cgroup usage is above the soft limit; says whether to keep at it. */
static bool recheck_one(mv_watch_t *wt, mv_watched_t *ww)
{
    mv_worker_t *w = ww->w;
    bool decided;

    if (!mv_fsm_watched(w->state) || (mv_worker_leaving(w) && !ww->follow))
        return false;
    decided = look(wt, ww, mv_worker_read(w, true), false);
    /* Followed (maybe since this look) until the pool says otherwise: it bounds its memory. */
    if (ww->follow)
        return true;
    return !decided && !mv_worker_leaving(w) && w->mem.have &&
           w->mem.last.usage >= w->lim.soft_bytes;
}

static void recheck_cb(uv_timer_t *h)
{
    mv_watch_t *wt = h->data;
    bool any = false;

    for (mv_watched_t *ww = wt->list; ww; ww = ww->next)
        if (ww->near_soft)
            any |= ww->near_soft = recheck_one(wt, ww);
    if (!any) {
        wt->rechecking = false;
        uv_timer_stop(h);
    }
}

/* Re-reads ww every RECHECK_MS while recheck_one says so. */
static void start_recheck(mv_watch_t *wt, mv_watched_t *ww)
{
    ww->near_soft = true;
    if (!wt->rechecking) {
        wt->rechecking = true;
        uv_timer_start(&wt->recheck, recheck_cb, RECHECK_MS, RECHECK_MS);
    }
}

void mv_watch_follow(mv_watch_t *wt, mv_watched_t *ww, bool on)
{
    ww->follow = on;
    if (on)
        start_recheck(wt, ww);
}

void mv_watch_notified(mv_watch_t *wt, mv_watched_t *ww)
{
    if (ww->w->lim.soft_bytes > 0 && recheck_one(wt, ww))
        start_recheck(wt, ww);
}

void mv_watch_add(mv_watch_t *wt, mv_watched_t *ww, mv_worker_t *w)
{
    *ww = (mv_watched_t){.w = w, .next = wt->list};
    wt->list = ww;
}

void mv_watch_remove(mv_watch_t *wt, mv_watched_t *ww)
{
    for (mv_watched_t **pp = &wt->list; *pp; pp = &(*pp)->next)
        if (*pp == ww) {
            *pp = ww->next;
            break;
        }
    ww->next = NULL;
    ww->near_soft = false;
}

void mv_watch_init(mv_watch_t *wt, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                   const mv_watch_events_t *ev, void *arg)
{
    uint64_t every = (uint64_t)cfg->limits.sample_interval;

    *wt = (mv_watch_t){.loop = loop, .log = log, .cfg = cfg, .ev = ev, .arg = arg};
    uv_timer_init(loop, &wt->sampler);
    wt->sampler.data = wt;
    uv_timer_start(&wt->sampler, sample_cb, every, every);
    uv_timer_init(loop, &wt->recheck);
    wt->recheck.data = wt;
    /* Neither timer keeps the loop alive by itself. */
    uv_unref((uv_handle_t *)&wt->sampler);
    uv_unref((uv_handle_t *)&wt->recheck);
    wt->open = 2;
}

void mv_watch_reconfigure(mv_watch_t *wt, const mv_config_t *cfg)
{
    wt->cfg = cfg;
    uv_timer_set_repeat(&wt->sampler, (uint64_t)cfg->limits.sample_interval);
}

static void timer_closed_cb(uv_handle_t *h)
{
    mv_watch_t *wt = h->data;

    if (--wt->open == 0 && wt->closed)
        wt->closed(wt->closed_arg);
}

void mv_watch_close(mv_watch_t *wt, void (*cb)(void *arg), void *arg)
{
    wt->closed = cb;
    wt->closed_arg = arg;
    uv_close((uv_handle_t *)&wt->sampler, timer_closed_cb);
    uv_close((uv_handle_t *)&wt->recheck, timer_closed_cb);
}
