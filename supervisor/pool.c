/*
 * pool: worker slots (see pool.h). Every decision is made in slots.c, policy.c or watch.c;
 * this file carries them out and routes each worker event to the modules that need it.
 */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"
#include "pool_int.h"

static void spawn_slot(mv_pool_t *p, int slot);
static void start_queued(mv_pool_t *p);
static void memory_stop(const mv_pool_t *p, mv_member_t *m);

static mv_member_t *member_of(const mv_worker_t *w)
{
    return w->data;
}

static mv_member_t *member_of_seat(mv_seat_t *s)
{
    return (mv_member_t *)((char *)s - offsetof(mv_member_t, seat));
}

static mv_pool_t *pool_of(const mv_worker_t *w)
{
    return member_of(w)->pool;
}

static uint64_t next_rand(mv_pool_t *p)
{
    /* xorshift64*: jitter only needs to differ between workers, not to be secret. */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 2685821657736338717ull;
}

static double rand01(mv_pool_t *p)
{
    return (double)(next_rand(p) >> 11) * 0x1.0p-53;
}

static bool premature(const mv_worker_t *w)
{
    mv_start_facts_t f = {w->ready, w->startup, w->lim.soft_bytes, w->ready_serving};

    return mv_policy_premature(&f);
}

/* The run cannot go on: no more tasks, no more respawns. */
static void fatal(mv_pool_t *p)
{
    if (p->fatal)
        return;
    p->fatal = true;
    p->slots.fatal = true;
    mv_dispatch_stop(&p->dispatch);
    p->ev->on_fatal(p->arg);
}

/* ---- closing ---- */

static void part_closed(void *arg)
{
    mv_pool_t *p = arg;

    if (--p->open == 0)
        p->ev->on_stopped(p->arg);
}

static void handle_closed_cb(uv_handle_t *h)
{
    part_closed(h->data);
}

static void backoff_closed_cb(uv_handle_t *h)
{
    mv_backoff_t *b = h->data;
    mv_pool_t *p = b->pool;

    free(b);
    part_closed(p);
}

/* Once stopping and every worker is gone, closes the pool's own handles (then on_stopped). */
static void maybe_stopped(mv_pool_t *p)
{
    if (!p->stopping || p->members || p->closing || !mv_spares_done(&p->spares) ||
        !mv_succ_done(&p->succ))
        return;
    p->closing = true;
    mv_spares_close(&p->spares, part_closed, p);
    mv__pool_esc_close(p);
    mv_dispatch_close(&p->dispatch, part_closed, p);
    mv_watch_close(&p->watch, part_closed, p);
    if (p->tmpl.started)
        mv_templates_close(&p->tmpl, part_closed, p);
    uv_close((uv_handle_t *)&p->grace, handle_closed_cb);
    uv_close((uv_handle_t *)&p->spacer, handle_closed_cb);
    uv_close((uv_handle_t *)&p->settle, handle_closed_cb);
    mv_startgate_close(&p->gate, part_closed, p);
    for (int i = 0; i < p->nslots; i++)
        if (p->slot[i].backoff) {
            uv_close((uv_handle_t *)&p->slot[i].backoff->timer, backoff_closed_cb);
            p->slot[i].backoff = NULL;
        }
}

/* ---- leaving ---- */

/* The figure the soft limit compares ([limits] metric), as last read; -1 if never read. */
static int64_t leaving_mem(const mv_pool_t *p, const mv_worker_t *w)
{
    return w->mem.have ? mv_reading_limit_metric(&w->mem.last, p->o.cfg->limits.metric) : -1;
}

static void log_leaving(mv_pool_t *p, const mv_worker_t *w, mv_reason_t reason, const char *action)
{
    mv_log(p->o.log, reason == MV_R_SHUTDOWN ? MV_LVL_DEBUG : MV_LVL_INFO, "recycle",
           MV_I("worker", w->slot), MV_I("gen", w->gen), MV_I("pid", w->proc.pid),
           MV_S("reason", mv_reason_name(reason)), MV_S("action", action),
           MV_I("tasks", w->tasks_done), MV_I("mem", leaving_mem(p, w)),
           MV_I("usage", w->mem.have ? w->mem.last.usage : -1));
    if (p->o.timeline && reason != MV_R_SHUTDOWN)
        mv_timeline_mark(p->o.timeline,
                         &(mv_tl_mark_t){w->slot, w->gen,
                                         strcmp(action, "kill") == 0 ? MV_TL_KILL : MV_TL_RECYCLE,
                                         mv_reason_name(reason), w->proc.pid, -1, -1,
                                         w->count ? mv_worker_current(w)->id : 0});
}

static void spacer_cb(uv_timer_t *t)
{
    start_queued(t->data);
}

bool mv__pool_unstarted_stale(const mv_pool_t *p, const mv_worker_t *w)
{
    return w->state == MV_W_PREPARING && w->gate.state != MV_GATE_IN &&
           (w->o.cfg != p->o.cfg || w->o.argv != p->o.argv);
}

/* A planned recycle (or a shutdown): with surge and handover, or queued for its turn.
 * Returns whether a decision is taken (it recycles, or waits its turn). */
static bool recycle(mv_pool_t *p, mv_member_t *m, mv_reason_t reason)
{
    mv_worker_t *w = m->w;
    mv_recycle_plan_t plan;
    bool failure;

    if (w->state == MV_W_DEAD || m->seat.gone) {
        mv_slots_unqueue(&p->slots, &m->seat);
        return false;
    }
    if (w->state == MV_W_PREPARING) {
        /* Brand new: nothing to recycle. Only a shutdown drops it. */
        if (reason == MV_R_SHUTDOWN) {
            mv_worker_drain(w, reason);
        } else if (!p->slots.stopping && !p->slots.fatal && mv__pool_unstarted_stale(p, w)) {
            /* It would start with what a reload replaced, and stay. A new one, with what is
             * current, takes its slot (and waits its turn); it has nothing to lose. */
            int slot = w->slot;

            mv_worker_kill(w, reason);
            spawn_slot(p, slot);
        }
        mv_slots_unqueue(&p->slots, &m->seat);
        return false;
    }
    if (mv_worker_leaving(w) && !(m->seat.handover && reason == MV_R_SHUTDOWN)) {
        mv_slots_unqueue(&p->slots, &m->seat);
        return true;
    }
    failure = mv_policy_is_failure(reason, premature(w));
    /* A memory recycle a ready spare can take at once does not wait its turn (slots.h). */
    plan = reason == MV_R_SOFT_LIMIT && mv_spares_ready(&p->spares)
               ? mv_slots_recycle_spare(&p->slots, &m->seat, reason, failure, mv_now_ms())
               : mv_slots_recycle(&p->slots, &m->seat, reason, failure, mv_now_ms());
    if (!plan.go) {
        /* Waiting its turn, it serves on; for memory, only up to the headroom (on_check). */
        if (reason == MV_R_SOFT_LIMIT)
            mv_watch_follow(&p->watch, &m->watch, true);
        if (!m->deferred_said)
            mv_debug(p->o.log, "recycle_deferred", MV_I("worker", w->slot),
                     MV_I("pid", w->proc.pid), MV_S("reason", mv_reason_name(reason)));
        m->deferred_said = true;
        if (plan.retry_ms > 0 && !uv_is_active((uv_handle_t *)&p->spacer))
            uv_timer_start(&p->spacer, spacer_cb, plan.retry_ms, 0);
        return true;
    }
    if (reason != MV_R_SHUTDOWN || !mv_worker_leaving(w))
        log_leaving(p, w, reason, "drain");
    mv_watch_follow(&p->watch, &m->watch, plan.handover); /* its memory bounds the handover */
    /* Its own way out first: a replacement taken from the spares is ready at once, and its
     * readiness is what ends a handover. */
    if (plan.handover) {
        mv_worker_handover(w, reason);
    } else {
        mv_worker_drain(w, reason);
        memory_stop(p, m);
    }
    if (plan.replacement)
        spawn_slot(p, w->slot);
    return true;
}

/* A worker that waited its turn to recycle for memory and passed the handover headroom: it
 * drains now, past max_concurrent and spacing (memory does not wait), with its replacement. */
static void drain_now(mv_pool_t *p, mv_member_t *m, mv_reason_t reason)
{
    mv_worker_t *w = m->w;

    log_leaving(p, w, reason, "drain");
    if (mv_slots_replace_now(&p->slots, &m->seat, mv_policy_is_failure(reason, premature(w))))
        spawn_slot(p, w->slot);
    mv_worker_drain(w, reason);
}

/* Stuck or broken: SIGTERM now, SIGKILL after kill_timeout. */
static void fault(mv_pool_t *p, mv_member_t *m, mv_reason_t reason)
{
    mv_worker_t *w = m->w;

    if (!mv_fsm_has_process(w->state) || w->state == MV_W_STOPPING || w->state == MV_W_FROZEN ||
        w->state == MV_W_KILLING)
        return;
    log_leaving(p, w, reason, "term");
    if (mv_slots_replace_now(&p->slots, &m->seat, mv_policy_is_failure(reason, premature(w))))
        spawn_slot(p, w->slot);
    mv_worker_fault(w, reason);
}

/* SIGKILL now: the hard limit by sampling, or memvisor told twice to stop. A hard-limit kill
 * first has the worker snapshot (frozen meanwhile), and comes back here once it is written. */
static void kill_now(mv_pool_t *p, mv_member_t *m, mv_reason_t reason)
{
    mv_worker_t *w = m->w;

    if (w->state == MV_W_PREPARING && reason == MV_R_SHUTDOWN) {
        mv_worker_drain(w, reason); /* no process yet: dropped */
        return;
    }
    if (!mv_fsm_has_process(w->state) || w->state == MV_W_KILLING)
        return;
    if (reason == MV_R_HARD_LIMIT && w->reason != MV_R_HARD_LIMIT &&
        mv_suspect_before_kill(&p->suspect, &m->suspect)) {
        mv_worker_freeze(w, reason);
        return;
    }
    log_leaving(p, w, reason, "kill");
    if (mv_slots_replace_now(&p->slots, &m->seat, mv_policy_is_failure(reason, premature(w))))
        spawn_slot(p, w->slot);
    mv_worker_kill(w, reason);
}

/* Starts the recycles that waited for a free recycle slot or for the spacing. */
static void start_queued(mv_pool_t *p)
{
    uint64_t retry = 0;
    mv_seat_t *s;

    while ((s = mv_slots_next_queued(&p->slots, mv_now_ms(), &retry)))
        recycle(p, member_of_seat(s), s->queued);
    if (retry > 0 && !uv_is_active((uv_handle_t *)&p->spacer))
        uv_timer_start(&p->spacer, spacer_cb, retry, 0);
}

/* ---- what the layers below report ---- */

/* Where a worker recycled for memory that serves on is stopped (mv_policy_stop_at). */
static int64_t stop_at(const mv_pool_t *p, const mv_worker_t *w)
{
    return mv_policy_stop_at(w->lim.soft_bytes, p->o.cfg->recycle.handover_headroom, p->overshoot);
}

/* A worker in handover (or waiting its turn) whose memory reached its stop point: soft +
 * [recycle] handover_headroom, less what workers stopped for memory grew after their stop. */
static bool headroom_passed(const mv_pool_t *p, const mv_worker_t *w, const mv_reading_t *r)
{
    return mv_reading_limit_metric(r, p->o.cfg->limits.metric) >= stop_at(p, w);
}

/* [recycle] drain_cap: a service worker stopped for memory drains under a hard limit of soft +
 * handover_headroom: what it finishes after its stop (its connections' requests in flight)
 * may take it that far and no further; the kernel enforces it where a reading would come
 * late. Off by default: a drain that needs more is OOM-killed and its requests are lost (a
 * 700 MB/s leak under wrk with an 8M headroom: socket errors). Never in a batch: a task the
 * soft limit lets finish may need more than the headroom. */
static void drain_cap(const mv_pool_t *p, mv_member_t *m)
{
    mv_worker_t *w = m->w;
    int64_t head = p->o.cfg->recycle.handover_headroom, cap = w->lim.soft_bytes + head;
    int r;

    if (!p->o.cfg->recycle.drain_cap || !p->o.service || !p->o.cfg->limits.enforce || head <= 0 ||
        w->lim.soft_bytes <= 0 || (w->lim.hard_bytes > 0 && cap >= w->lim.hard_bytes))
        return;
    r = mv_worker_cap(w, cap);
    if (r == 0)
        m->cap = cap;
    mv_log(p->o.log, r == 0 ? MV_LVL_INFO : MV_LVL_DEBUG, "drain_cap", MV_I("worker", w->slot),
           MV_I("pid", w->proc.pid), MV_I("limit", cap), MV_I("mem", leaving_mem(p, w)),
           MV_S("result", r == 0 ? "ok" : strerror(-r)));
}

/* w is told to stop now for memory: the limit's figure then, to learn its overshoot at
 * exit. Its peak is of usage, so the overshoot includes what usage counts beyond the figure
 * (page cache): with the stop at soft + headroom less the overshoot, the peak of usage
 * stays within soft + headroom. */
static void memory_stop(const mv_pool_t *p, mv_member_t *m)
{
    int64_t mem = leaving_mem(p, m->w);

    if (m->w->reason != MV_R_SOFT_LIMIT || mem <= 0)
        return;
    m->stop_mem = mem;
    drain_cap(p, m);
}

/* A worker stopped for memory is gone: how far it grew after its stop. */
static void learn_overshoot(mv_pool_t *p, const mv_member_t *m)
{
    if (m->stop_mem > 0 && m->w->mem.peak > 0)
        p->overshoot = mv_policy_overshoot(p->overshoot, m->w->mem.peak - m->stop_mem);
}

/*
 * cgroup v1: at the hard limit the kernel's OOM killer takes the largest process of the
 * worker's cgroup, which may be one of its children (a master's server, a subprocess) while
 * the worker lives on, and no exit would ever say so (the requests that child had were lost).
 * A kill the cgroup counted that is still unexplained a sample interval later, with the worker
 * neither gone nor dying (no SIGKILL pending, not exiting: its own kill is reaped and
 * classified kernel_oom by its exit; 5 ms after the count it may not even be acted on yet),
 * was of another of its processes: logged as kernel_oom with process=child and kills=N, and
 * taken off the count its own exit is classified by. v2 kills the whole worker
 * (memory.oom.group).
 */
static void oom_inside(mv_pool_t *p, mv_member_t *m)
{
    mv_worker_t *w = m->w;
    uint64_t n = 0, now = mv_now_ms();

    if (!w->has_cg || w->cg.version != MV_CG_V1 || mv_cg_oom_kills(&w->cg, &n) < 0 || n == 0)
        return;
    if (m->oom_seen_ms && now - m->oom_seen_ms >= (uint64_t)p->o.cfg->limits.sample_interval &&
        !mv_proc_dying(w->proc.pid)) {
        w->cg.oom_base += m->oom_seen;
        mv_warn(p->o.log, "kernel_oom", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_S("process", "child"), MV_I("kills", (long long)m->oom_seen),
                MV_S("cgroup", w->cg.path), MV_I("limit", m->cap ? m->cap : w->lim.hard_bytes),
                MV_S("msg",
                     "the kernel's OOM killer took another of this worker's processes "
                     "at the hard limit: the worker lives on, what that one served is lost"));
        n -= m->oom_seen;
        m->oom_seen_ms = 0;
    }
    if (n > 0 && !m->oom_seen_ms) {
        m->oom_seen = n;
        m->oom_seen_ms = now;
    }
}

static bool on_check(void *arg, mv_watched_t *ww, const mv_reading_t *r, mv_verdict_t v,
                     bool sampled)
{
    mv_pool_t *p = arg;
    mv_member_t *m = member_of(ww->w);
    mv_worker_t *w = m->w;

    if (sampled)
        oom_inside(p, m);
    mv_suspect_near_limit(&p->suspect, &m->suspect, r);
    /* Serving on while its replacement starts, or while it waits its turn to recycle, but
     * not without bound: past the headroom it drains and the other workers take the load. */
    if (ww->follow && (m->seat.handover || m->seat.queued != MV_R_NONE) && r &&
        headroom_passed(p, w, r)) {
        mv_watch_follow(&p->watch, ww, false);
        mv_info(p->o.log, "headroom_passed", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_I("mem", mv_reading_limit_metric(r, p->o.cfg->limits.metric)),
                MV_I("soft", w->lim.soft_bytes),
                MV_I("headroom", p->o.cfg->recycle.handover_headroom),
                MV_I("overshoot", p->overshoot), MV_I("stop_at", stop_at(p, w)),
                MV_S("msg", m->seat.handover ? "its replacement is not ready yet: it drains now"
                                             : "it waited its turn to recycle: it drains now"));
        if (m->seat.handover) {
            mv_slots_handover_end(&p->slots, &m->seat);
            mv_worker_replaced(w);
        } else if (m->seat.queued != MV_R_NONE && !mv_worker_leaving(w)) {
            drain_now(p, m, m->seat.queued);
        }
        memory_stop(p, m);
        return true;
    }
    /* A worker with no tasks to prove itself (protocol none) ends a crash streak by staying
     * up as long as the longest backoff once it has started: one still starting proves
     * nothing (an api worker that never says HELLO lives until ready_timeout, longer than a
     * short backoff_max, and reset the streak so that crash_limit never or late tripped). */
    if (sampled && w->ready && mv_now_ms() - w->ready_ms >= (uint64_t)p->o.cfg->worker.backoff_max)
        mv_slots_survived(&p->slots, &m->seat);
    if (v.kind == MV_VERDICT_KILL) {
        kill_now(p, m, v.reason);
        return true;
    }
    if (mv__pool_kids_check(p, m, r, v))
        return true;
    if (v.kind == MV_VERDICT_RECYCLE && !mv_worker_leaving(w))
        return recycle(p, m, v.reason);
    return mv_worker_leaving(w) || m->seat.queued != MV_R_NONE;
}

static void on_result(void *arg, mv_worker_t *w, const mv_task_t *t, const mv_result_t *r)
{
    mv_pool_t *p = arg;

    if (w && r->measured)
        mv_suspect_observe(&p->suspect, &member_of(w)->suspect, t, r);
    /* A task ended: the pool is getting somewhere, even if its workers crash. */
    mv_slots_progress(&p->slots, w && r->status != MV_ST_QUARANTINED ? &member_of(w)->seat : NULL);
}

static void on_progress(void *arg)
{
    mv_pool_t *p = arg;

    p->ev->on_progress(p->arg);
}

static void on_kill_ready(void *arg, mv_suspected_t *sw)
{
    mv_pool_t *p = arg;

    kill_now(p, member_of(sw->w), MV_R_HARD_LIMIT);
}

/* A leak experiment wants a fresh worker in `slot`: a worker that has run nothing and holds
 * no task is fresh already; any other drains now, and its replacement attaches to the
 * experiment. It does not wait its turn behind [recycle] spacing or max_concurrent: the
 * experiment holds its kind's tasks back until that replacement is ready, and one experiment
 * runs at a time. A worker already leaving has its replacement on the way.
 *
 * A worker that has run nothing but holds a task it took before (a hung or long task of
 * another kind) is not fresh. Bound, it was an arm that held its kind's tasks back until that
 * task ended, however long, while the other workers, which may not take them, sat idle
 * (2 workers, a task that hangs: 22 of 81 tasks done in 20 s); and that task's memory would
 * have been in the arm's readings. Binding it once it is free would not do either: by then it
 * has run that task. Drained, it finishes its task aside, and its replacement, started at
 * once (surge), runs nothing but the kind from its first task: the isolation's evidence is
 * as clean as any other's, for the price of one worker start. */
static void on_fresh(void *arg, int slot)
{
    mv_pool_t *p = arg;
    mv_seat_t *seat = p->slots.slot[slot - 1].active;
    mv_member_t *m = seat ? member_of_seat(seat) : NULL;

    if (!m || mv_worker_leaving(m->w))
        return;
    if ((m->w->tasks_done == 0 && m->w->count == 0) || mv_experiment_in_place(&p->exp))
        mv_experiment_attach(&p->exp, m->w);
    else if (m->w->state != MV_W_DEAD && !seat->gone && !p->stopping)
        drain_now(p, m, MV_R_EXPERIMENT); /* no replacement is started while the pool stops */
}

static mv_suspected_t *find_suspected(void *arg, int slot, uint32_t gen)
{
    mv_pool_t *p = arg;
    mv_seat_t *seat = slot >= 1 && slot <= p->slots.n ? p->slots.slot[slot - 1].active : NULL;
    mv_member_t *m = seat ? member_of_seat(seat) : NULL;

    return m && m->w->gen == gen && !mv_worker_leaving(m->w) ? &m->suspect : NULL;
}

static void on_verdict(void *arg, const mv_exp_verdict_t *v)
{
    mv_pool_t *p = arg;

    mv_suspect_verdict(&p->suspect, v->w ? &member_of(v->w)->suspect : NULL, v);
}

static void settle_cb(uv_timer_t *t)
{
    mv_pool_t *p = t->data;

    mv_experiment_settle_due(&p->exp); /* on_settled follows */
}

static void on_settle(void *arg, uint64_t ms)
{
    mv_pool_t *p = arg;

    uv_timer_start(&p->settle, settle_cb, ms, 0);
}

/* The idle is over, whatever ended it (the timer, another kind's suspicion, the worker's
 * exit). A worker mv_pool_stop left idling stops now, or once the verdict's snapshot of it
 * is written (stopped first, the snapshot had the worker gone: no smaps, no status). */
static void on_settled(void *arg, mv_worker_t *w)
{
    mv_pool_t *p = arg;
    mv_member_t *m;

    uv_timer_stop(&p->settle);
    if (!w || w != p->settle_idle) {
        p->settle_idle = NULL;
        if (!p->stopping)
            mv_dispatch_kick(&p->dispatch); /* it takes tasks again */
        return;
    }
    p->settle_idle = NULL;
    m = member_of(w);
    if (mv_worker_leaving(w))
        return;
    if (m->suspect.snap)
        m->suspect.stop_after_snapshot = true;
    else
        recycle(p, m, MV_R_SHUTDOWN);
}

static void on_snapshot_done(void *arg, mv_suspected_t *sw)
{
    mv_pool_t *p = arg;

    if (p->stopping && !mv_worker_leaving(sw->w))
        recycle(p, member_of(sw->w), MV_R_SHUTDOWN);
}

static const mv_dispatch_events_t dispatch_events = {on_result, on_progress, mv__pool_esc_task};
static const mv_experiment_events_t experiment_events = {on_fresh, on_verdict, on_settle,
                                                         on_settled};
static const mv_watch_events_t watch_events = {on_check};
static const mv_suspect_events_t suspect_events = {on_kill_ready, find_suspected, on_snapshot_done};

/* ---- what a worker reports ---- */

static void w_started(mv_worker_t *w)
{
    pool_of(w)->spawned++;
}

static void w_ready(mv_worker_t *w)
{
    mv_pool_t *p = pool_of(w);
    mv_member_t *m = member_of(w);
    mv_seat_t *old[8];
    int n;

    /* The command starts again: spares held back while it did not are started now. */
    if (mv_slots_started(&p->slots, &m->seat))
        mv_spares_fill(&p->spares);
    if (m->esc) { /* made for one escalated task: it takes that one only */
        mv__pool_esc_ready(p, m);
        return;
    }
    mv_dispatch_attach(&p->dispatch, w);
    if (p->slots.slot[w->slot - 1].active == &m->seat)
        mv_cgahead_prepare(&p->ahead, w->slot, p->slots.slot[w->slot - 1].gen + 1);
    /* Its capacity is there now: the workers it replaces can stop taking requests. */
    while ((n = mv_slots_ready(&p->slots, &m->seat, old, (int)MV_ARRAY_LEN(old))) > 0)
        for (int i = 0; i < n; i++) {
            mv_worker_t *ow = member_of_seat(old[i])->w;
            mv_debug(p->o.log, "drain", MV_I("worker", ow->slot), MV_I("pid", ow->proc.pid),
                     MV_I("replacement", w->proc.pid));
            mv_watch_follow(&p->watch, &member_of_seat(old[i])->watch, false);
            mv_worker_replaced(ow);
            memory_stop(p, member_of_seat(old[i]));
        }
    p->ev->on_ready(p->arg);
    mv_dispatch_kick(&p->dispatch);
}

static void w_answer(mv_worker_t *w, const mv_answer_t *a)
{
    mv_pool_t *p = pool_of(w);

    mv_dispatch_answer(&p->dispatch, w, a);
    mv_watch_check(&p->watch, &member_of(w)->watch, a->after);
    mv_dispatch_eager(&p->dispatch, w); /* after the recycle is decided */
}

static void w_begin(mv_worker_t *w, mv_task_t *t)
{
    mv_dispatch_begin(&pool_of(w)->dispatch, w, t);
}

static void w_end(mv_worker_t *w, const mv_answer_t *a)
{
    mv_pool_t *p = pool_of(w);

    mv_dispatch_answer(&p->dispatch, w, a);
    if (w->state == MV_W_READY)
        mv_watch_check(&p->watch, &member_of(w)->watch, a->after);
}

static void w_snapshot(mv_worker_t *w, const uint8_t *payload, size_t n)
{
    mv_pool_t *p = pool_of(w);

    mv_suspect_reply(&p->suspect, &member_of(w)->suspect, payload, n);
}

static void w_notify(mv_worker_t *w)
{
    mv_pool_t *p = pool_of(w);

    mv_watch_notified(&p->watch, &member_of(w)->watch);
}

static void w_deadline(mv_worker_t *w, mv_deadline_t what)
{
    mv_pool_t *p = pool_of(w);
    mv_member_t *m = member_of(w);

    if (what == MV_DL_READY) {
        mv_warn(p->o.log, "ready_timeout", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_I("after_ms", w->o.cfg->worker.ready_timeout));
        fault(p, m, MV_R_READY_TIMEOUT);
    } else if (w->o.cfg->limits.enforce) {
        fault(p, m, MV_R_TASK_TIMEOUT);
    } else {
        mv_watch_would(&p->watch, &m->watch, MV_R_TASK_TIMEOUT, NULL);
    }
}

static void w_error(mv_worker_t *w, const char *what)
{
    mv_pool_t *p = pool_of(w);
    mv_task_t *t = mv_worker_current(w);

    p->protocol_errors++;
    mv_error(p->o.log, "protocol_error", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
             MV_S("error", what), MV_I("task", t ? (long long)t->id : 0));
    fault(p, member_of(w), MV_R_PROTOCOL_ERROR);
}

static void schedule_respawn(mv_pool_t *p, int slot, uint64_t delay_ms);

/* Its last task is on its way (max_tasks): the slot's next worker starts now and waits for
 * the answer's recycle to adopt it (succ.h; adopt_successor). */
static void w_last_task(mv_worker_t *w)
{
    mv_pool_t *p = pool_of(w);
    mv_member_t *m = member_of(w);
    mv_wlimits_t lim = mv_policy_limits(p->o.cfg, 0, 0); /* count jitter: drawn at adoption */
    uint32_t gen;

    if (m->esc || p->stopping || p->fatal || p->slots.slot[w->slot - 1].active != &m->seat ||
        !mv_succ_may_start(&p->succ, w->slot))
        return;
    gen = mv_slots_reserve(&p->slots, w->slot);
    /* The cgroup after its own, made now: it took the one made at this worker's start, and
     * the next successor starts within a task from here (v1 rotates the slot's cgroups). */
    if (mv_succ_start(&p->succ, w->slot, gen, &lim))
        mv_cgahead_prepare(&p->ahead, w->slot, gen + 1);
}

static void w_gone(mv_worker_t *w, const mv_gone_t *g)
{
    mv_pool_t *p = pool_of(w);
    mv_member_t *m = member_of(w);
    mv_reason_t why = g->verdict.reason;
    mv_gone_plan_t plan;
    bool esc_lost;

    if (g->spawn_call && g->hopeless)
        fatal(p); /* the command can never start: retrying is pointless */
    if (why == MV_R_KERNEL_OOM && p->o.timeline)
        mv_timeline_mark(p->o.timeline,
                         &(mv_tl_mark_t){w->slot, w->gen, MV_TL_OOM, "kernel_oom", w->proc.pid, -1,
                                         -1, g->ntasks ? g->tasks[0]->id : 0});
    if (why == MV_R_KERNEL_OOM)
        mv_warn(p->o.log, "kernel_oom", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_S("cgroup", w->cg.path), MV_I("limit", m->cap ? m->cap : w->lim.hard_bytes),
                MV_S("snapshot", mv_suspect_last_snapshot(&m->suspect)));
    mv__pool_kids_exit(p, m, why);
    /* One count per worker, by why it finally left (a soft-limit drain that ends in a kernel
     * OOM kill counts as kernel_oom). */
    if (why != MV_R_SHUTDOWN && !g->spawn_call)
        p->recycles[why]++;
    if (g->verdict.premature)
        mv_warn(p->o.log, "premature_recycle", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_S("reason", mv_reason_name(why)),
                MV_S("msg", "stopped for memory before its first task: the limits may be too "
                            "low for this worker to start"));
    mv_dispatch_detach(&p->dispatch, w);
    mv_dispatch_settle(&p->dispatch, w, g);
    esc_lost = m->esc && mv__pool_esc_gone(p, m, g);
    mv_watch_remove(&p->watch, &m->watch);
    mv_suspect_release(&p->suspect, &m->suspect);
    p->slot[w->slot - 1].peak = MV_MAX(p->slot[w->slot - 1].peak, w->mem.peak);
    learn_overshoot(p, m);
    plan = mv_slots_gone(&p->slots, &m->seat, g->verdict.failure && !g->hopeless && !esc_lost,
                         why == MV_R_FATAL || why == MV_R_NO_HELLO);
    if (plan.run_ends && why == MV_R_FATAL)
        mv_error(p->o.log, "fatal_exit", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_I("status", w->proc.status),
                 MV_S("msg", "worker exited with the fatal code: not respawned; the run ends"));
    else if (plan.run_ends && why == MV_R_NO_HELLO)
        mv_error(p->o.log, "no_hello", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_S("msg", MV_NO_HELLO_HINT "; the run ends"));
    else if (plan.crash_limit)
        mv_error(p->o.log, "crash_limit", MV_I("crashes", p->slots.streak),
                 MV_S("msg", "workers keep failing without a task ending: giving up"));
    if (plan.run_ends)
        fatal(p);
    if (plan.respawn)
        schedule_respawn(p, w->slot, plan.delay_ms);
    start_queued(p);
    mv_dispatch_kick(&p->dispatch);
}

static void w_closed(mv_worker_t *w)
{
    mv_pool_t *p = pool_of(w);
    mv_member_t *m = member_of(w);

    for (mv_member_t **pp = &p->members; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    /* A worker dropped before it had a process (a shutdown while its cgroup was being made)
     * closes without being gone: let go of its seat and its watch here. */
    if (!m->seat.gone) {
        mv_slots_gone(&p->slots, &m->seat, false, false);
        mv_watch_remove(&p->watch, &m->watch);
        mv_suspect_release(&p->suspect, &m->suspect);
    }
    if (m->esc)
        mv__pool_esc_closed(p, m);
    mv__pool_kids_gone(m);
    mv_worker_free(w);
    free(m);
    maybe_stopped(p);
}

static const mv_worker_events_t worker_events = {
    .on_started = w_started,
    .on_ready = w_ready,
    .on_answer = w_answer,
    .on_begin = w_begin,
    .on_end = w_end,
    .on_snapshot = w_snapshot,
    .on_notify = w_notify,
    .on_deadline = w_deadline,
    .on_error = w_error,
    .on_gone = w_gone,
    .on_closed = w_closed,
    .on_last_task = w_last_task,
};

/* ---- spawning ---- */

/* What every worker (and the warm template) is started with. */
static mv_worker_opts_t worker_opts(mv_pool_t *p)
{
    return (mv_worker_opts_t){
        .loop = p->o.loop,
        .log = p->o.log,
        .cfg = p->o.cfg,
        .argv = p->o.argv,
        .env = p->env,
        .self_exe = p->o.self_exe,
        .listen = p->o.listen,
        .cg = p->o.cg,
        .service = p->o.service,
        .timeline = p->o.timeline,
        .forker = mv_templates_forker(&p->tmpl),
        .heap = &p->heap,
        .pythonpath = p->pythonpath[0] ? p->pythonpath : NULL,
        .gate = &p->gate,
    };
}

/* The slot's successor takes it (succ.h): ready, or it reports its start and readiness. */
static bool adopt_successor(mv_pool_t *p, mv_member_t *m, int slot, const mv_wlimits_t *lim)
{
    mv_succ_taken_t t = mv_succ_take(&p->succ, slot);

    if (!t.w)
        return false;
    mv_slots_take_reserved(&p->slots, &m->seat, slot);
    m->w = t.w;
    mv_worker_adopt(m->w, slot, m->w->gen, lim, &worker_events, m, p->o.timeline);
    m->next = p->members;
    p->members = m;
    mv_watch_add(&p->watch, &m->watch, m->w);
    mv_suspect_attach(&p->suspect, &m->suspect, m->w);
    if (t.started)
        p->spawned++;
    if (t.ready)
        w_ready(m->w);
    if (t.notified && mv_fsm_has_process(m->w->state))
        w_notify(m->w);
    return true;
}

/* A ready spare takes the slot (spares.h): it is ready in this pass. */
static bool adopt_spare(mv_pool_t *p, mv_member_t *m, uint32_t gen, const mv_wlimits_t *lim)
{
    if (!(m->w = mv_spares_take(&p->spares)))
        return false;
    mv_worker_adopt(m->w, m->seat.slot, gen, lim, &worker_events, m, p->o.timeline);
    m->next = p->members;
    p->members = m;
    mv_watch_add(&p->watch, &m->watch, m->w);
    mv_suspect_attach(&p->suspect, &m->suspect, m->w);
    p->spawned++;
    w_ready(m->w);
    return true;
}

/* A new worker for `slot` with limits `lim` (pool_int.h): a spare if one is ready; else its
 * cgroup (made ahead, or now in the thread pool), then its process. An escalation worker takes
 * neither: a spare and a cgroup made ahead have the run's limits, not the task's raised ones. */
mv_member_t *mv__pool_spawn(mv_pool_t *p, int slot, const mv_wlimits_t *lim, mv_task_t *esc)
{
    mv_member_t *m = calloc(1, sizeof *m);
    mv_worker_opts_t o = worker_opts(p);
    uint32_t gen;

    if (!m) {
        mv_error(p->o.log, "spawn_failed", MV_I("worker", slot), MV_S("error", "out of memory"));
        if (!esc)
            schedule_respawn(p, slot, (uint64_t)p->o.cfg->worker.backoff_max);
        return NULL;
    }
    m->pool = p;
    m->esc = esc != NULL;
    m->esc_task = esc;
    if (esc) {
        /* Beside the slot's own worker, never in the cgroup made ahead for its successor: a
         * generation that cgahead is making is passed over (made twice, the directory would
         * be one, and its removal would kill this worker). */
        do
            gen = mv_slots_take_extra(&p->slots, &m->seat, slot);
        while (mv_cgahead_holds(&p->ahead, slot, gen));
    } else {
        if (adopt_successor(p, m, slot, lim))
            return m;
        gen = mv_slots_take(&p->slots, &m->seat, slot);
        if (adopt_spare(p, m, gen, lim))
            return m;
    }
    m->w = mv_worker_new(&o, slot, gen, lim, &worker_events, m);
    if (!m->w) {
        if (!esc)
            p->slots.slot[slot - 1].active = NULL;
        free(m);
        mv_error(p->o.log, "spawn_failed", MV_I("worker", slot), MV_S("error", "out of memory"));
        if (!esc)
            schedule_respawn(p, slot, (uint64_t)p->o.cfg->worker.backoff_max);
        return NULL;
    }
    m->next = p->members;
    p->members = m;
    mv_watch_add(&p->watch, &m->watch, m->w);
    mv_suspect_attach(&p->suspect, &m->suspect, m->w);
    if (esc)
        mv_worker_start(m->w);
    else
        mv_worker_start_ahead(m->w, &p->ahead);
    return m;
}

/* A new worker for `slot`, with the run's limits. */
static void spawn_slot(mv_pool_t *p, int slot)
{
    mv_wlimits_t lim = mv_policy_limits(p->o.cfg, rand01(p), rand01(p));

    mv__pool_spawn(p, slot, &lim, NULL);
}

static void spare_closed(void *arg)
{
    maybe_stopped(arg);
}

/* A spare or a waiting successor failed. Before it was ready, that is a failed start of the
 * command, counted toward crash_limit as a slot's worker's would be (slots.h), and a command
 * that can never start ends the run as it does for a slot's worker. Once ready it proved the
 * command starts: its death while it waits (a kill from outside, mostly) is not counted. */
static void extra_failed(void *arg, mv_worker_t *w, const mv_gone_t *g)
{
    mv_pool_t *p = arg;
    mv_gone_plan_t plan;

    if (p->fatal)
        return;
    if (g->spawn_call && g->hopeless) {
        fatal(p);
        return;
    }
    if (w->ready)
        return;
    plan = mv_slots_failed(&p->slots);
    if (plan.crash_limit)
        mv_error(p->o.log, "crash_limit", MV_I("crashes", p->slots.streak),
                 MV_S("msg", "workers keep failing without a task ending: giving up"));
    if (plan.run_ends)
        fatal(p);
}

static void spare_ready(void *arg)
{
    mv_pool_t *p = arg;

    /* The command starts again: the spares held back while it did not are started now (a
     * slot's worker may have been ready all along: w_ready has nothing to end then). */
    if (mv_slots_started(&p->slots, NULL))
        mv_spares_fill(&p->spares);
}

static int spares_failing(void *arg)
{
    mv_pool_t *p = arg;

    return p->slots.unstarted;
}

static const mv_spares_events_t spares_events = {spare_closed, extra_failed, spare_ready,
                                                 spares_failing};

/* The spares the configuration asks for now, started with its command (start, reload). */
static void pool_spares(mv_pool_t *p)
{
    mv_worker_opts_t o = worker_opts(p);

    mv_spares_reconfigure(&p->spares, &o, p->stopping ? 0 : p->o.cfg->recycle.spares);
}

static void successor_closed(void *arg)
{
    maybe_stopped(arg);
}

static const mv_succ_events_t succ_events = {successor_closed, extra_failed};

/* Whether the configuration has slots start their next worker at the last task (succ.h):
 * batch workers that take tasks. */
static bool successors_on(const mv_pool_t *p, const mv_config_t *cfg)
{
    return cfg->recycle.successor && !p->o.service && cfg->worker.protocol != MV_PROTO_NONE;
}

static void backoff_cb(uv_timer_t *t)
{
    mv_backoff_t *b = t->data;
    mv_pool_t *p = b->pool;
    int slot = b->slot;

    p->slot[slot - 1].backoff_armed = false;
    if (mv_slots_may_spawn(&p->slots, slot))
        spawn_slot(p, slot);
}

static void schedule_respawn(mv_pool_t *p, int slot, uint64_t delay_ms)
{
    mv_pool_slot_t *s = &p->slot[slot - 1];

    if (!mv_slots_may_spawn(&p->slots, slot))
        return;
    if (delay_ms == 0) {
        spawn_slot(p, slot);
        return;
    }
    if (!s->backoff) {
        if (!(s->backoff = calloc(1, sizeof *s->backoff))) {
            spawn_slot(p, slot); /* out of memory: no wait rather than no worker */
            return;
        }
        uv_timer_init(p->o.loop, &s->backoff->timer);
        s->backoff->timer.data = s->backoff;
        s->backoff->pool = p;
        s->backoff->slot = slot;
        p->open++;
    }
    mv_warn(p->o.log, "backoff", MV_I("worker", slot),
            MV_I("crashes", p->slots.slot[slot - 1].crashes),
            MV_I("delay_ms", (long long)delay_ms));
    s->backoff_armed = true;
    uv_timer_start(&s->backoff->timer, backoff_cb, delay_ms, 0);
}

/* ---- public ---- */

/* The warm template's start-up said "do not retry" (its fatal exit code): as a worker's. */
static void on_template_fatal(void *arg)
{
    fatal(arg);
}

static const mv_templates_events_t templates_events = {on_template_fatal};

static void grace_cb(uv_timer_t *t)
{
    mv_pool_t *p = t->data;
    int n = 0;

    /* Workers still working when the grace period ends get SIGTERM, then SIGKILL after
     * kill_timeout, like any worker that does not stop when asked. */
    for (mv_member_t *m = p->members; m; m = m->next)
        if (m->w->state == MV_W_DRAINING || m->w->state == MV_W_BUSY ||
            m->w->state == MV_W_HANDOVER) {
            mv_worker_fault(m->w, MV_R_SHUTDOWN);
            n++;
        }
    if (n)
        mv_warn(p->o.log, "grace_expired", MV_I("workers", n),
                MV_I("grace_ms", p->o.cfg->supervisor.grace_period), MV_S("action", "SIGTERM"));
}

/* [leak] heap for the workers of cfg and argv: decided and said once per configuration. */
static void plan_heap(mv_pool_t *p, const mv_config_t *cfg)
{
    mv_heapmon_plan(cfg->leak.heap, cfg->leak.python_malloc,
                    cfg->worker.protocol != MV_PROTO_NONE && !p->o.service, p->o.argv,
                    p->o.self_exe, &p->heap);
    mv_log(p->o.log,
           p->heap.preload || cfg->leak.heap != MV_HEAPMODE_PRELOAD ? MV_LVL_INFO : MV_LVL_WARN,
           "heap", MV_S("preload", p->heap.preload ? p->heap.library : "off"),
           MV_S("python_malloc", p->heap.python ? "yes" : "no"), MV_S("why", p->heap.why));
}

/* A Python api worker of memvisor run from its build tree (not installed) imports the
 * worker module of the same tree: its worker-api/python goes after the PYTHONPATH of the
 * environment, whose own memvisor_worker, if any, comes first. Said once per configuration. */
static void plan_pythonpath(mv_pool_t *p, const mv_config_t *cfg)
{
    char dir[PATH_MAX];
    const char *have = NULL;
    int n;

    p->pythonpath[0] = '\0';
    if (cfg->worker.protocol != MV_PROTO_API || !mv_heapmon_python(p->o.argv) ||
        mv_heapmon_source_python(p->o.self_exe, dir, sizeof dir) < 0)
        return;
    for (char *const *e = p->env; e && *e; e++)
        if (strncmp(*e, "PYTHONPATH=", 11) == 0)
            have = *e + 11;
    n = have && *have ? snprintf(p->pythonpath, sizeof p->pythonpath, "PYTHONPATH=%s:%s", have, dir)
                      : snprintf(p->pythonpath, sizeof p->pythonpath, "PYTHONPATH=%s", dir);
    if (n < 0 || (size_t)n >= sizeof p->pythonpath) {
        p->pythonpath[0] = '\0';
        mv_warn(p->o.log, "python_path_too_long", MV_S("dir", dir), MV_I("bytes", n - 11),
                MV_I("max", (long long)sizeof p->pythonpath - 12), /* its value's length */
                MV_S("msg", "the environment's PYTHONPATH with the build tree's worker-api/python "
                            "after it is too long: not added; a Python worker imports "
                            "memvisor_worker from the environment's PYTHONPATH or not at all"));
        return;
    }
    mv_info(p->o.log, "python_path", MV_S("added", dir), MV_S("pythonpath", p->pythonpath + 11),
            MV_S("why", "memvisor runs from its build tree: Python workers import its "
                        "memvisor_worker"));
}

/* memvisor's environment minus what each worker gets its own value of, or none (NOTIFY_SOCKET
 * is memvisor's). NULL on ENOMEM. */
static char **pool_env(char *const *env)
{
    size_t n = 0, k = 0;
    char **out;

    while (env && env[n])
        n++;
    out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!mv_worker_env_private(env[i]) && !mv_notify_env_private(env[i]))
            out[k++] = env[i];
    return out;
}

int mv_pool_start(mv_pool_t *p, const mv_pool_opts_t *o, const mv_pool_events_t *ev, void *arg)
{
    const mv_config_t *cfg = o->cfg;
    mv_slots_cfg_t sc = {cfg->recycle.max_concurrent, cfg->recycle.spacing,
                         cfg->worker.backoff_min,     cfg->worker.backoff_max,
                         cfg->worker.crash_limit,     o->service};

    memset(p, 0, sizeof *p);
    p->o = *o;
    p->ev = ev;
    p->arg = arg;
    p->overshoot = -1; /* nothing learned yet */
    p->nslots = cfg->supervisor.workers;
    p->env = pool_env(o->env);
    p->slot = calloc((size_t)p->nslots, sizeof *p->slot);
    if (!p->env || !p->slot || mv_slots_init(&p->slots, p->nslots, &sc) < 0 ||
        mv_cgahead_init(&p->ahead, o->loop, o->log, o->cg, p->nslots, cfg->recycle.cgroup_ahead) <
            0) {
        mv_pool_free(p);
        return -ENOMEM;
    }
    mv_dispatch_init(&p->dispatch, o->loop, o->log, cfg, o->tasks, o->results, o->service,
                     &dispatch_events, p);
    mv_watch_init(&p->watch, o->loop, o->log, cfg, &watch_events, p);
    mv_suspect_init(&p->suspect, o->loop, o->log, cfg, o->leak, o->run, &suspect_events, p);
    mv_experiment_init(&p->exp, o->log, cfg, o->tasks, o->service, &experiment_events, p);
    if (p->exp.enabled && o->leak) {
        p->suspect.exp = &p->exp;
        mv_dispatch_set_filter(&p->dispatch, mv_experiment_filter(&p->exp));
    }
    uv_timer_init(o->loop, &p->grace);
    p->grace.data = p;
    uv_timer_init(o->loop, &p->spacer);
    p->spacer.data = p;
    uv_timer_init(o->loop, &p->settle);
    p->settle.data = p;
    mv_startgate_init(&p->gate, o->loop, cfg->supervisor.max_starting);
    p->open = 7; /* dispatch, watch, grace, spacer, settle, spares, gate */
    mv__pool_esc_init(p);
    p->started = true;
    p->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    plan_heap(p, cfg);
    plan_pythonpath(p, cfg);
    mv_spares_init(&p->spares, &(mv_worker_opts_t){.loop = o->loop}, 0, &spares_events, p);
    if (cfg->worker.template) {
        mv_worker_opts_t wo = worker_opts(p);
        mv_templates_start(&p->tmpl, &wo, &templates_events, p);
        p->open++;
    }
    {
        mv_worker_opts_t wo = worker_opts(p); /* after the template: they fork from it */
        if (mv_succ_init(&p->succ, &wo, &p->ahead, p->nslots, successors_on(p, cfg), &succ_events,
                         p) < 0) {
            mv_error(o->log, "successors_off", MV_S("error", "out of memory"));
            p->succ.on = false;
        }
    }
    for (int i = 1; i <= p->nslots && !p->fatal; i++)
        spawn_slot(p, i);
    pool_spares(p); /* after the slots: their workers' cgroups come first */
    return 0;
}

void mv_pool_kick(mv_pool_t *p)
{
    mv_dispatch_kick(&p->dispatch);
}

void mv_pool_stop(mv_pool_t *p, bool graceful)
{
    mv_member_t *m, *next;

    /* A leak's isolation idling ([leak] settle): its worker stops once the idle is over and
     * the verdict went up (on_settled), at most that much later; at once when not graceful. */
    mv_worker_t *idle = graceful ? mv_experiment_settling(&p->exp) : NULL;

    mv_dispatch_stop(&p->dispatch);
    if (!p->stopping) {
        p->stopping = true;
        mv_slots_stop(&p->slots);
        mv_cgahead_drop(&p->ahead, false);
        mv__pool_esc_stop(p);
        /* After the slots: the workers waiting for a fork are not respawned by exec. */
        if (p->tmpl.started)
            mv_templates_stop(&p->tmpl, graceful);
        for (int i = 0; i < p->nslots; i++)
            if (p->slot[i].backoff_armed) {
                p->slot[i].backoff_armed = false;
                uv_timer_stop(&p->slot[i].backoff->timer);
            }
        if (graceful)
            uv_timer_start(&p->grace, grace_cb, (uint64_t)p->o.cfg->supervisor.grace_period, 0);
    }
    mv_spares_stop(&p->spares, graceful);
    mv_succ_stop(&p->succ, graceful);
    if (idle)
        p->settle_idle = idle;
    else /* after `stopping`: a verdict that requeues its kind starts no worker now */
        mv_experiment_settle_due(&p->exp);
    for (m = p->members; m; m = next) {
        next = m->next;
        if (m->w == idle)
            continue;
        if (graceful)
            recycle(p, m, MV_R_SHUTDOWN);
        else
            kill_now(p, m, MV_R_SHUTDOWN);
    }
    maybe_stopped(p);
}

bool mv_pool_keeps(const mv_pool_t *p, int pid)
{
    if (!p->tmpl.started)
        return false;
    /* a slot's worker, a spare, a successor: each reaped through its pidfd (proc.h) */
    return mv_templates_keeps(&p->tmpl, pid) || mv_proc_known(pid);
}

int mv_pool_live(const mv_pool_t *p)
{
    int n = 0;

    for (const mv_member_t *m = p->members; m; m = m->next)
        n += mv_fsm_serving(m->w->state) && !mv_worker_leaving(m->w);
    return n;
}

int mv_pool_recycle(mv_pool_t *p, int slot, mv_reason_t reason, int *slots)
{
    mv_member_t *m, *next;
    int n = 0;

    if (slot < 0 || slot > p->nslots)
        return -EINVAL;
    for (m = p->members; m; m = next) {
        next = m->next;
        if ((slot != 0 && m->seat.slot != slot) ||
            p->slots.slot[m->seat.slot - 1].active != &m->seat || mv_worker_leaving(m->w) ||
            m->w->state == MV_W_DEAD)
            continue;
        if (slots)
            slots[n] = m->seat.slot;
        n++;
        recycle(p, m, reason);
    }
    return n;
}

/* How much a slot's worker would lose by being retired (mv_slots_scale_plan): lower first. */
static int retire_rank(const mv_pool_t *p, int slot)
{
    const mv_seat_t *seat = p->slots.slot[slot - 1].active;
    const mv_worker_t *w = seat ? member_of_seat((mv_seat_t *)seat)->w : NULL;

    if (mv_experiment_uses(&p->exp, slot))
        return 4; /* its arm would end early */
    if (!w || mv_worker_leaving(w))
        return 0; /* nothing serves it: a backoff, or a worker leaving already */
    if (w->count > 0)
        return 3; /* a task in flight: it finishes it first */
    if (w->state != MV_W_READY)
        return 2; /* starting: a start-up spent for nothing */
    return w->tasks_done > 0 || p->o.service ? 1 : 0;
}

/* `slot` serves no more: its worker finishes what it holds and stops, unreplaced. */
static void retire_slot(mv_pool_t *p, int slot)
{
    mv_slot_t *sl = &p->slots.slot[slot - 1];
    mv_seat_t *seat;

    if (p->slot[slot - 1].backoff_armed) {
        p->slot[slot - 1].backoff_armed = false;
        uv_timer_stop(&p->slot[slot - 1].backoff->timer);
    }
    mv_succ_retire_slot(&p->succ, slot);
    mv_slots_pass(&p->slots, slot, mv_cgahead_last(&p->ahead, slot)); /* cgahead.h */
    mv_cgahead_forget(&p->ahead, slot);
    seat = mv_slots_retire(&p->slots, slot);
    mv_experiment_slot_retired(&p->exp, slot);
    /* Workers in handover wait for a replacement that will not come: they drain now. */
    while (sl->handing) {
        mv_member_t *old = member_of_seat(sl->handing);
        mv_slots_handover_end(&p->slots, sl->handing);
        mv_watch_follow(&p->watch, &old->watch, false);
        mv_worker_replaced(old->w);
    }
    if (!seat)
        return;
    {
        mv_member_t *m = member_of_seat(seat);
        mv_worker_t *w = m->w;

        if (w->state == MV_W_PREPARING) {
            mv_worker_kill(w, MV_R_SCALED); /* no process yet: dropped */
        } else if (mv_fsm_has_process(w->state) && !mv_worker_leaving(w)) {
            log_leaving(p, w, MV_R_SCALED, "drain");
            mv_watch_follow(&p->watch, &m->watch, false);
            mv_worker_drain(w, MV_R_SCALED);
        }
    }
}

/* Room for slots up to n: the pool's table, the slots', the successors', cgahead's. */
static int grow(mv_pool_t *p, int n)
{
    mv_pool_slot_t *grown;

    if (n <= p->nslots)
        return 0;
    if (!(grown = realloc(p->slot, (size_t)n * sizeof *grown)))
        return -ENOMEM;
    memset(grown + p->nslots, 0, (size_t)(n - p->nslots) * sizeof *grown);
    p->slot = grown;
    if (mv_slots_grow(&p->slots, n) < 0 || mv_succ_grow(&p->succ, n) < 0)
        return -ENOMEM;
    /* cgahead's table moves: what it made is dropped, under names the numbering passes. */
    for (int i = 1; i <= p->nslots; i++)
        mv_slots_pass(&p->slots, i, mv_cgahead_last(&p->ahead, i));
    if (mv_cgahead_grow(&p->ahead, n) < 0)
        return -ENOMEM;
    p->nslots = n;
    return 0;
}

int mv_pool_scale(mv_pool_t *p, int n, const char *from)
{
    int was = p->slots.live, k, *rank = NULL, *out = NULL, top = 0;
    char list[256];
    bool up;

    if (n < 1 || n > MV_POOL_MAX_WORKERS)
        return -EINVAL;
    if (!p->started || p->stopping || p->fatal)
        return -ECANCELED;
    if (n == was)
        return 0;
    rank = calloc((size_t)p->nslots + 1, sizeof *rank);
    out = calloc((size_t)(n > was ? n - was : was - n) + (size_t)p->nslots + 1, sizeof *out);
    if (!rank || !out) {
        free(rank);
        free(out);
        return -ENOMEM;
    }
    for (int i = 1; i <= p->nslots; i++)
        rank[i - 1] = retire_rank(p, i);
    k = mv_slots_scale_plan(&p->slots, n, rank, out, &up);
    for (int i = 0; i < k; i++)
        top = MV_MAX(top, out[i]);
    if (up && grow(p, top) < 0) {
        free(rank);
        free(out);
        mv_error(p->o.log, "scale_failed", MV_I("from", was), MV_I("to", n),
                 MV_S("error", "out of memory"));
        return -ENOMEM;
    }
    mv_slots_list(list, sizeof list, out, k);
    mv_experiment_slots(&p->exp, n);
    mv_info(p->o.log, "scaled", MV_I("from", was), MV_I("to", n),
            MV_S(up ? "added" : "retired", list), MV_S("by", from));
    for (int i = 0; i < k; i++) {
        if (!up) {
            retire_slot(p, out[i]);
            continue;
        }
        mv_slots_revive(&p->slots, out[i]);
        mv_cgahead_revive(&p->ahead, out[i]);
        if (mv_slots_may_spawn(&p->slots, out[i]))
            spawn_slot(p, out[i]);
    }
    free(rank);
    free(out);
    start_queued(p);
    mv_dispatch_kick(&p->dispatch);
    return 0;
}

void mv_pool_reconfigure(mv_pool_t *p, const mv_config_t *cfg, char *const *argv)
{
    p->o.cfg = cfg;
    if (argv)
        p->o.argv = argv;
    plan_heap(p, cfg);
    plan_pythonpath(p, cfg);
    p->dispatch.cfg = cfg;
    p->suspect.cfg = cfg;
    p->exp.cfg = cfg;
    mv_watch_reconfigure(&p->watch, cfg);
    p->slots.cfg.max_concurrent = cfg->recycle.max_concurrent;
    p->slots.cfg.spacing = cfg->recycle.spacing;
    p->slots.cfg.backoff_min = cfg->worker.backoff_min;
    p->slots.cfg.backoff_max = cfg->worker.backoff_max;
    p->slots.cfg.crash_limit = cfg->worker.crash_limit;
    mv_startgate_set_cap(&p->gate, cfg->supervisor.max_starting);
    mv__pool_esc_reconfigure(p);
    /* The template first: spares started from here on fork from the new one. Spares and
     * cgroups made ahead carry the old command and limits. */
    if (p->tmpl.started)
        mv_templates_reconfigure(&p->tmpl, cfg, argv);
    for (int i = 1; i <= p->nslots; i++) /* never a name being removed: cgahead.h */
        mv_slots_pass(&p->slots, i, mv_cgahead_last(&p->ahead, i));
    mv_cgahead_drop(&p->ahead, cfg->recycle.cgroup_ahead);
    pool_spares(p);
    {
        mv_worker_opts_t o = worker_opts(p);
        mv_succ_reconfigure(&p->succ, &o, successors_on(p, cfg));
    }
}

void mv_pool_free(mv_pool_t *p)
{
    mv_suspect_free(&p->suspect);
    mv_experiment_free(&p->exp);
    mv_dispatch_free(&p->dispatch);
    mv_slots_free(&p->slots);
    mv_cgahead_free(&p->ahead);
    mv_succ_free(&p->succ);
    free(p->slot);
    free(p->env);
    p->slot = NULL;
    p->env = NULL;
}
