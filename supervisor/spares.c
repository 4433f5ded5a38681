/*
 * spares: workers started ahead of need (see spares.h).
 */
#include "spares.h"

#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "util.h"

static void start_one(mv_spares_t *s);

static mv_spare_t *spare_of(const mv_worker_t *w)
{
    return w->data;
}

static bool alive(const mv_spare_t *sp)
{
    return !sp->retire && sp->w->state != MV_W_DEAD;
}

int mv_spares_alive(const mv_spares_t *s, int *ready)
{
    int n = 0, r = 0;

    for (const mv_spare_t *sp = s->list; sp; sp = sp->next)
        if (alive(sp)) {
            n++;
            r += sp->ready;
        }
    if (ready)
        *ready = r;
    return n;
}

/* Asks a spare to leave: STOP while it waits (it exits cleanly), SIGKILL when `now`. */
static void retire(mv_spare_t *sp, mv_reason_t why, bool now)
{
    sp->retire = true;
    sp->ready = false;
    /* One still making its cgroup is simply dropped (a drain would keep it for later). */
    if (now || sp->w->state == MV_W_PREPARING)
        mv_worker_kill(sp->w, why);
    else
        mv_worker_drain(sp->w, why);
}

static int failing(const mv_spares_t *s)
{
    return s->ev->failing ? s->ev->failing(s->arg) : 0;
}

static void backoff_cb(uv_timer_t *t)
{
    mv_spares_fill(t->data);
}

void mv_spares_fill(mv_spares_t *s)
{
    int n, want;

    if (s->stopping || uv_is_active((uv_handle_t *)&s->backoff))
        return;
    /* While starts fail, one spare tries at a time (the others would fail the same way). */
    n = mv_spares_alive(s, NULL);
    want = failing(s) > 0 ? MV_MIN(s->want, n + 1) : s->want;
    for (; n < want; n++)
        start_one(s);
}

/* ---- what a spare reports ---- */

static void sp_started(mv_worker_t *w)
{
    spare_of(w)->s->started++;
}

static void sp_ready(mv_worker_t *w)
{
    mv_spares_t *s = spare_of(w)->s;

    spare_of(w)->ready = true;
    if (s->ev->on_ready)
        s->ev->on_ready(s->arg);
}

static void sp_answer(mv_worker_t *w, const mv_answer_t *a)
{
    (void)a; /* no task was sent: the channel refuses an answer with none in flight */
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sp_begin(mv_worker_t *w, mv_task_t *t)
{
    /* A request before GO: not a service worker yet. Its task goes with it (on_gone). */
    (void)t;
    mv_warn(w->o.log, "protocol_error", MV_I("worker", 0), MV_I("pid", w->proc.pid),
            MV_S("error", "a spare began a request before it took a slot"));
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sp_end(mv_worker_t *w, const mv_answer_t *a)
{
    mv_task_free(a->task);
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sp_snapshot(mv_worker_t *w, const uint8_t *payload, size_t len)
{
    (void)w, (void)payload, (void)len; /* never asked */
}

/* A spare at or over its soft limit now (a fresh reading) is retired and replaced, and
 * returns true. Its start-up memory says whether that is a failure (sp_gone): limits that do
 * not fit its start-up, or a `none` spare that served connections on the shared sockets while
 * it waited, and grew. */
static bool over_limit(mv_worker_t *w)
{
    const mv_reading_t *r = mv_worker_read(w, true);
    int64_t mem = r ? mv_reading_limit_metric(r, w->o.cfg->limits.metric) : -1;

    if (spare_of(w)->retire || w->lim.soft_bytes <= 0 || mem < w->lim.soft_bytes)
        return false;
    mv_warn(w->o.log, "spare_over_limit", MV_I("worker", 0), MV_I("gen", w->gen),
            MV_I("pid", w->proc.pid), MV_I("mem", mem), MV_I("soft", w->lim.soft_bytes));
    retire(spare_of(w), MV_R_SOFT_LIMIT, false);
    return true;
}

/* Every 5 ms while a spare's usage is over its soft limit and the limit's figure is not (on
 * v1 the threshold is on usage, memory.stat lags the charge, and the threshold will not fire
 * again): the figure catches up within milliseconds, and a `none` spare serving the shared
 * sockets meanwhile grows as fast as the slots' workers. */
#define RECHECK_MS 5

static void recheck_cb(uv_timer_t *t)
{
    mv_spares_t *s = t->data;
    bool any = false;

    for (mv_spare_t *sp = s->list; sp; sp = sp->next) {
        const mv_reading_t *r;
        if (!sp->near || sp->retire || sp->w->state == MV_W_DEAD || over_limit(sp->w)) {
            sp->near = false;
            continue;
        }
        r = mv_worker_read(sp->w, false); /* over_limit just read it */
        sp->near = r && r->usage >= sp->w->lim.soft_bytes;
        any |= sp->near;
    }
    if (!any)
        uv_timer_stop(&s->recheck);
}

/* Its cgroup said something while it waits. */
static void sp_notify(mv_worker_t *w)
{
    mv_spare_t *sp = spare_of(w);
    const mv_reading_t *r;

    if (over_limit(w) || sp->retire)
        return;
    r = mv_worker_read(w, false);
    if (r && w->lim.soft_bytes > 0 && r->usage >= w->lim.soft_bytes) {
        sp->near = true;
        if (!uv_is_active((uv_handle_t *)&sp->s->recheck))
            uv_timer_start(&sp->s->recheck, recheck_cb, RECHECK_MS, RECHECK_MS);
    }
}

static void sp_deadline(mv_worker_t *w, mv_deadline_t what)
{
    if (what != MV_DL_READY)
        return;
    mv_warn(w->o.log, "ready_timeout", MV_I("worker", 0), MV_I("pid", w->proc.pid),
            MV_I("after_ms", w->o.cfg->worker.ready_timeout));
    mv_worker_fault(w, MV_R_READY_TIMEOUT);
}

static void sp_error(mv_worker_t *w, const char *what)
{
    mv_warn(w->o.log, "protocol_error", MV_I("worker", 0), MV_I("pid", w->proc.pid),
            MV_S("error", what));
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sp_gone(mv_worker_t *w, const mv_gone_t *g)
{
    mv_spare_t *sp = spare_of(w);
    mv_spares_t *s = sp->s;
    const mv_config_t *cfg = w->o.cfg;
    mv_start_facts_t f = {w->ready, w->startup, w->lim.soft_bytes, w->ready_serving};
    bool failure = !sp->retire || (w->reason == MV_R_SOFT_LIMIT && mv_policy_premature(&f));
    uint64_t age = w->spawned_ms ? mv_now_ms() - w->spawned_ms : 0, delay;

    for (unsigned i = 0; i < g->ntasks; i++)
        mv_task_free(g->tasks[i]); /* requests a spare began: nobody else knows them */
    sp->ready = false;
    if (s->stopping)
        return;
    if (!sp->retire) {
        s->lost++;
        mv_warn(w->o.log, "spare_gone", MV_I("worker", 0), MV_I("gen", w->gen),
                MV_I("pid", w->proc.pid), MV_I("status", g->status),
                MV_S("error", g->spawn_error ? g->spawn_error : mv_reason_name(g->verdict.reason)));
    }
    /* Unasked, a failure by the exit's verdict (not a start the template's going away
     * cancelled); asked, only a start-up that did not fit the limits. */
    if (failure && (sp->retire || g->verdict.failure) && s->ev->on_failed) {
        s->ev->on_failed(s->arg, w, g); /* may end the run: stopping then */
        if (s->stopping)
            return;
    }
    delay = mv_policy_spare_delay(&s->streak, failure, age, cfg->worker.backoff_min,
                                  cfg->worker.backoff_max);
    /* Not sooner than a slot would retry after that many failed starts in a row. */
    if (failure)
        delay = MV_MAX(
            delay, mv_policy_backoff(failing(s), cfg->worker.backoff_min, cfg->worker.backoff_max));
    if (delay > 0 && !uv_is_active((uv_handle_t *)&s->backoff))
        uv_timer_start(&s->backoff, backoff_cb, delay, 0);
    mv_spares_fill(s);
}

static void sp_closed(mv_worker_t *w)
{
    mv_spare_t *sp = spare_of(w);
    mv_spares_t *s = sp->s;

    for (mv_spare_t **pp = &s->list; *pp; pp = &(*pp)->next)
        if (*pp == sp) {
            *pp = sp->next;
            break;
        }
    mv_worker_free(w);
    free(sp);
    s->ev->on_closed(s->arg);
}

static const mv_worker_events_t spare_events = {
    .on_started = sp_started,
    .on_ready = sp_ready,
    .on_answer = sp_answer,
    .on_begin = sp_begin,
    .on_end = sp_end,
    .on_snapshot = sp_snapshot,
    .on_notify = sp_notify,
    .on_deadline = sp_deadline,
    .on_error = sp_error,
    .on_gone = sp_gone,
    .on_closed = sp_closed,
};

/* ---- starting, taking, stopping ---- */

static void start_one(mv_spares_t *s)
{
    mv_spare_t *sp = calloc(1, sizeof *sp);
    /* Its memory limits now; the per-worker jitter of counts is drawn when it takes a slot. */
    mv_wlimits_t lim = mv_policy_limits(s->wo.cfg, 0, 0);

    if (!sp)
        return;
    sp->s = s;
    sp->w = mv_worker_new(&s->wo, 0, ++s->seq, &lim, &spare_events, sp);
    if (!sp->w) {
        free(sp);
        return;
    }
    sp->next = s->list;
    s->list = sp;
    mv_worker_start(sp->w);
}

/* The spare mv_spares_take would give, or NULL. */
static mv_spare_t *pick(mv_spares_t *s)
{
    mv_spare_t *best = NULL;

    /* The one that waited longest: the others stay warm in turn. Not one at its soft limit
     * (read now: the threshold's event may have come while memory.stat lagged the charge):
     * it would be recycled at once and overshoot while it drains. */
    for (mv_spare_t *sp = s->list; sp; sp = sp->next)
        if (sp->ready && !sp->retire && sp->w->state == MV_W_READY && !mv_worker_leaving(sp->w) &&
            (!best || sp->w->ready_ms <= best->w->ready_ms) && !over_limit(sp->w))
            best = sp;
    return best;
}

bool mv_spares_ready(mv_spares_t *s)
{
    return pick(s) != NULL;
}

mv_worker_t *mv_spares_take(mv_spares_t *s)
{
    mv_spare_t *best = pick(s);
    mv_worker_t *w;

    if (!best)
        return NULL;
    for (mv_spare_t **pp = &s->list; *pp; pp = &(*pp)->next)
        if (*pp == best) {
            *pp = best->next;
            break;
        }
    w = best->w;
    free(best);
    s->taken++;
    s->streak = 0; /* a spare that served proves the command starts */
    mv_spares_fill(s);
    return w;
}

void mv_spares_init(mv_spares_t *s, const mv_worker_opts_t *wo, int want,
                    const mv_spares_events_t *ev, void *arg)
{
    memset(s, 0, sizeof *s);
    s->wo = *wo;
    s->wo.timeline = NULL;   /* a spare has no slot to plot yet */
    s->wo.start_last = true; /* nobody needs it before a recycle (startgate.h) */
    s->want = want;
    s->ev = ev;
    s->arg = arg;
    uv_timer_init(wo->loop, &s->backoff);
    s->backoff.data = s;
    uv_unref((uv_handle_t *)&s->backoff);
    uv_timer_init(wo->loop, &s->recheck);
    s->recheck.data = s;
    uv_unref((uv_handle_t *)&s->recheck);
}

void mv_spares_reconfigure(mv_spares_t *s, const mv_worker_opts_t *wo, int want)
{
    s->wo = *wo;
    s->wo.timeline = NULL;
    s->wo.start_last = true;
    s->want = want;
    s->streak = 0;
    uv_timer_stop(&s->backoff);
    for (mv_spare_t *sp = s->list; sp; sp = sp->next)
        if (!sp->retire && sp->w->state != MV_W_DEAD)
            retire(sp, MV_R_REQUESTED, false);
    mv_spares_fill(s);
}

void mv_spares_stop(mv_spares_t *s, bool graceful)
{
    mv_spare_t *sp, *next;

    s->stopping = true;
    uv_timer_stop(&s->backoff);
    uv_timer_stop(&s->recheck);
    for (sp = s->list; sp; sp = next) {
        next = sp->next; /* a kill of a spare with no process yet closes it at once */
        if (sp->w->state != MV_W_DEAD && (!sp->retire || !graceful))
            retire(sp, MV_R_SHUTDOWN, !graceful);
    }
}

bool mv_spares_done(const mv_spares_t *s)
{
    return s->list == NULL;
}

static void timer_closed_cb(uv_handle_t *h)
{
    mv_spares_t *s = h->data;

    if (--s->closing == 0)
        s->closed(s->closed_arg);
}

void mv_spares_close(mv_spares_t *s, void (*cb)(void *arg), void *arg)
{
    s->closed = cb;
    s->closed_arg = arg;
    s->closing = 2;
    uv_close((uv_handle_t *)&s->backoff, timer_closed_cb);
    uv_close((uv_handle_t *)&s->recheck, timer_closed_cb);
}
