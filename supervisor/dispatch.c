/*
 * dispatch: handing tasks to workers, and turning answers into results (see dispatch.h).
 */
#include "dispatch.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escalate.h"
#include "meter.h"

/* A task is handed to worker w at wall-clock time `now` (a service request: w began it):
 * `started` of its result line (docs/run-files.md). */
static void stamp_sent(mv_task_t *t, const mv_worker_t *w, int64_t now)
{
    t->sent_us = now;
    t->gen = w->gen;
}

/* Writes a task's result line and lets it go. `w` is the worker it last ran on (NULL: it
 * never ran); `a` holds its figures (NULL: none). */
static void end_task(mv_dispatch_t *d, mv_worker_t *w, mv_task_t *t, mv_status_t st,
                     const void *payload, size_t n, const mv_answer_t *a)
{
    char kind[MV_LEAK_KIND_MAX + 1];
    mv_metric_t metric = d->cfg->limits.metric;
    const mv_attempt_t *last = t->nhist ? &t->hist[t->nhist - 1] : NULL;
    mv_result_t res = {
        .task = t->id,
        .status = st,
        .attempts = t->attempts,
        .slot = w      ? w->slot
                : last ? last->slot
                       : 0,
        .pid = w      ? w->proc.pid
               : last ? last->pid
                      : 0,
        /* The generation it last ran on: the worker's that answered, else the one its last
         * attempt was sent to (the one that died: quarantine); none for a line never sent. */
        .gen = w            ? w->gen
               : t->sent_us ? t->gen
                            : 0,
        .started_us = t->sent_us,
        .ended_us = mv_wall_us(),
        .payload = payload,
        .len = n,
        .hist = t->hist,
        .nhist = t->nhist,
        .kind =
            t->bad ? NULL : mv_task_kind(d->cfg, t, a ? a->kind : NULL, a ? a->kind_len : 0, kind),
        .mem_limit = w      ? w->lim.hard_bytes
                     : last ? last->limit
                            : 0,
        .escalations = t->escalations,
    };

    if (a && a->before && a->after) {
        res.measured = true;
        res.mem_before = mv_reading_task_metric(a->before, metric);
        res.mem_after = mv_reading_task_metric(a->after, metric);
        res.retained = res.mem_after - res.mem_before;
        res.mem_peak = a->peak;
        res.peak_source = a->peak_source;
        res.fds_before = a->before->fds;
        res.fds_after = a->after->fds;
        if (a->heap)
            res.heap = *a->heap;
        res.shared_reading = a->shared;
    }
    /* No answer (quarantined, written off, a request lost with its worker): no duration. */
    res.duration_ms = a ? a->duration_ms : NAN;
    if (mv_results_add(d->results, &res) < 0)
        mv_error(d->log, "result_lost", MV_I("task", (long long)t->id),
                 MV_S("error", "out of memory encoding the result"));
    d->ev->on_result(d->arg, w, t, &res);
    mv_tasks_end(d->tasks, t, &res);
    d->ev->on_progress(d->arg);
}

void mv_dispatch_answer(mv_dispatch_t *d, mv_worker_t *w, const mv_answer_t *a)
{
    end_task(d, w, a->task, a->ok ? MV_ST_OK : MV_ST_FAILED, a->payload, a->len, a);
    mv_dispatch_kick(d);
}

void mv_dispatch_begin(mv_dispatch_t *d, mv_worker_t *w, mv_task_t *t)
{
    if (!t) {
        mv_error(d->log, "request_untracked", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_S("error", "out of memory"));
        return;
    }
    t->attempts = 1;
    stamp_sent(t, w, mv_wall_us());
    d->tasks->loaded++;
}

/* A task that used up its attempts, or was killed for memory at escalate_max (`at_max`);
 * `why`: how the last one ended. */
static void quarantine(mv_dispatch_t *d, mv_task_t *t, mv_reason_t why, mv_worker_t *w, bool at_max)
{
    char msg[200];

    if (at_max)
        snprintf(msg, sizeof msg,
                 "quarantined after %u attempts: %s at escalate_max (%lld bytes), the highest "
                 "limit",
                 t->attempts, mv_reason_name(why), (long long)w->lim.hard_bytes);
    else
        snprintf(msg, sizeof msg, "quarantined after %u attempts; last: %s", t->attempts,
                 mv_reason_name(why));
    mv_warn(d->log, "quarantine", MV_I("task", (long long)t->id), MV_I("attempts", t->attempts),
            MV_S("reason", mv_reason_name(why)), MV_I("worker", w->slot), MV_I("pid", w->proc.pid));
    end_task(d, NULL, t, MV_ST_QUARANTINED, msg, strlen(msg), NULL);
}

void mv_dispatch_esc_lost(mv_dispatch_t *d, mv_task_t *t, const mv_worker_t *w, const mv_gone_t *g)
{
    char last[160], msg[400];

    if (g->spawn_call)
        snprintf(last, sizeof last, "could not be started (%s: %s)", g->spawn_call,
                 g->spawn_error ? g->spawn_error : "failed");
    else if (g->status < 0)
        snprintf(last, sizeof last, "%s, signal %d", mv_reason_name(g->verdict.reason), -g->status);
    else
        snprintf(last, sizeof last, "%s, status %d", mv_reason_name(g->verdict.reason), g->status);
    snprintf(msg, sizeof msg,
             "quarantined: its escalation workers (hard limit %lld bytes) failed %u times in a "
             "row before taking it (crash_limit); last: %s",
             (long long)w->lim.hard_bytes, (unsigned)t->esc_lost, last);
    mv_warn(d->log, "quarantine", MV_I("task", (long long)t->id), MV_I("attempts", t->attempts),
            MV_S("reason", "escalation_not_started"), MV_I("worker", w->slot),
            MV_I("pid", w->proc.pid), MV_I("limit", w->lim.hard_bytes),
            MV_I("failures", t->esc_lost), MV_S("last", last));
    end_task(d, NULL, t, MV_ST_QUARANTINED, msg, strlen(msg), NULL);
    mv_dispatch_kick(d);
}

/* Service mode: a request cannot be replayed, so the one a dead worker had open is lost. Only
 * a kill does that (hard limit, kernel OOM, a crash): a drain lets requests finish. */
static unsigned lose_requests(mv_dispatch_t *d, mv_worker_t *w, const mv_gone_t *g, mv_reason_t why)
{
    char msg[96];

    for (unsigned i = 0; i < g->ntasks; i++) {
        mv_task_t *t = g->tasks[i];
        snprintf(msg, sizeof msg, "lost: the worker ended (%s)", mv_reason_name(why));
        mv_warn(d->log, "request_lost", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_I("request", (long long)t->id), MV_S("reason", mv_reason_name(why)));
        end_task(d, w, t, MV_ST_FAILED, msg, strlen(msg),
                 &(mv_answer_t){
                     .kind = (const uint8_t *)t->data, .kind_len = t->len, .duration_ms = NAN});
    }
    return g->ntasks;
}

/* A task killed for memory at this host's ceiling: handed to the task source for a host
 * with more memory (escalate.h; Redis: a routed stream), at the next rung of this host's
 * ladder. False (nothing changed) when the source has nowhere to send it. */
static bool escalate_elsewhere(mv_dispatch_t *d, mv_task_t *t, mv_reason_t why, mv_worker_t *w,
                               const mv_esc_cfg_t *ec)
{
    int64_t need = mv_escalate_beyond(ec, w->lim.hard_bytes), was = t->limit;
    long long id = (long long)t->id, attempts = t->attempts;

    if (need <= w->lim.hard_bytes)
        return false;
    t->limit = need;
    t->escalations++;
    if (!mv_tasks_route(d->tasks, t)) { /* the task is the source's now, if it took it */
        t->limit = was;
        t->escalations--;
        return false;
    }
    mv_warn(d->log, "escalate_elsewhere", MV_I("task", id), MV_I("from", w->lim.hard_bytes),
            MV_I("need", need), MV_S("reason", mv_reason_name(why)), MV_I("attempts", attempts),
            MV_I("worker", w->slot), MV_I("pid", w->proc.pid));
    return true;
}

/* The task a dead worker worked on, charged with the attempt: quarantined, escalated (handed
 * to the owner to run with more memory) or to be requeued (true). */
static bool charge(mv_dispatch_t *d, mv_worker_t *w, const mv_gone_t *g, mv_task_t *t,
                   mv_reason_t why, mv_settled_t *s)
{
    mv_esc_cfg_t ec = mv_escalate_cfg(d->cfg);
    mv_esc_verdict_t v;

    /* Out of memory for the record: the task still ends, its history is shorter. */
    if (mv_task_note_attempt(t, why, w->slot, w->proc.pid, g->status, g->peak) == 0)
        t->hist[t->nhist - 1].limit = w->lim.hard_bytes;
    v = mv_escalate_decide(&ec, &(mv_esc_facts_t){why, w->lim.hard_bytes, t->attempts,
                                                  t->escalations, d->cfg->tasks.max_attempts});
    if (v.action == MV_ESC_QUARANTINE) {
        if (v.at_max && escalate_elsewhere(d, t, why, w, &ec)) {
            s->requeued++;
            d->requeued++;
            return false;
        }
        quarantine(d, t, why, w, v.at_max);
        s->quarantined++;
        return false;
    }
    s->requeued++;
    d->requeued++; /* only tasks that lost an attempt */
    if (v.action == MV_ESC_RAISE) {
        mv_warn(d->log, "escalate", MV_I("task", (long long)t->id), MV_I("from", w->lim.hard_bytes),
                MV_I("to", v.limit), MV_S("reason", mv_reason_name(why)),
                MV_I("attempts", t->attempts), MV_I("worker", w->slot), MV_I("pid", w->proc.pid));
        t->limit = v.limit;
        t->escalations++;
        s->escalated++;
        d->escalated++;
        mv_tasks_escalated(d->tasks, t);
        d->ev->on_escalate(d->arg, t);
        return false;
    }
    mv_info(d->log, "requeue", MV_I("task", (long long)t->id), MV_I("attempts", t->attempts),
            MV_S("reason", mv_reason_name(why)), MV_I("worker", w->slot), MV_I("pid", w->proc.pid));
    return true;
}

mv_settled_t mv_dispatch_settle(mv_dispatch_t *d, mv_worker_t *w, const mv_gone_t *g)
{
    mv_reason_t why = mv_policy_charge(g->verdict.reason);
    mv_settled_t s = {0};

    if (d->service) {
        s.lost = lose_requests(d, w, g, why);
        return s;
    }
    /* Newest first, so that requeueing at the front keeps their order. Only the oldest was
     * started (tasks after it were sent ahead, prefetch); a worker that exits 0 after STOP
     * did not start it either (DESIGN §3: STOP means "finish the task in hand, start no
     * other"), and a shutdown charges nobody. */
    for (unsigned i = g->ntasks; i-- > 0;) {
        mv_task_t *t = g->tasks[i];
        bool started = i == 0 && !g->clean_stop && why != MV_R_SHUTDOWN;

        if (!started)
            t->attempts--; /* it did not really run: not an attempt */
        else if (!charge(d, w, g, t, why, &s))
            continue;
        /* An escalated task runs on a worker of its own only (but at a shutdown: it stays in
         * the queue, counted as not run). */
        if (t->limit > 0 && why != MV_R_SHUTDOWN)
            d->ev->on_escalate(d->arg, t);
        else if (started)
            mv_tasks_retry(d->tasks, t); /* behind the work queued now (tasks.h) */
        else
            mv_tasks_requeue(d->tasks, t);
    }
    mv_dispatch_kick(d);
    return s;
}

int mv_dispatch_reserve(mv_dispatch_t *d, mv_worker_t *w, mv_task_t *t)
{
    if (d->nr == d->capr) {
        int cap = d->capr ? d->capr * 2 : 8;
        mv_worker_t **rw = realloc(d->rw, (size_t)cap * sizeof *rw);
        mv_task_t **rt = rw ? realloc(d->rt, (size_t)cap * sizeof *rt) : NULL;

        if (rw)
            d->rw = rw;
        if (!rt)
            return -ENOMEM;
        d->rt = rt;
        d->capr = cap;
    }
    d->rw[d->nr] = w;
    d->rt[d->nr++] = t;
    mv_dispatch_kick(d);
    return 0;
}

mv_task_t *mv_dispatch_unreserve(mv_dispatch_t *d, mv_worker_t *w)
{
    mv_task_t *t;

    for (int i = 0; i < d->nr; i++)
        if (d->rw[i] == w) {
            t = d->rt[i];
            d->rw[i] = d->rw[--d->nr];
            d->rt[i] = d->rt[d->nr];
            return t;
        }
    return NULL;
}

/* Escalated tasks go to the workers made for them, and those take no other task. */
static void give_reserved(mv_dispatch_t *d)
{
    for (int i = 0; i < d->nr;) {
        mv_worker_t *w = d->rw[i];
        mv_task_t *t = d->rt[i];

        if (!mv_worker_takes_tasks(w)) {
            i++;
            continue;
        }
        d->rw[i] = d->rw[--d->nr];
        d->rt[i] = d->rt[d->nr];
        t->attempts++;
        mv_worker_send_task(w, t);
        mv_worker_flush(w);
    }
}

/* The next task worth sending; lines that could not become tasks end here, and so do tasks
 * that used up their attempts elsewhere (a Redis source's); tasks escalated elsewhere go to
 * the pool's escalation workers. */
static mv_task_t *next_task(mv_dispatch_t *d)
{
    mv_task_t *t;

    while ((t = mv_tasks_pop(d->tasks)) && (t->bad || t->limit > 0)) {
        if (t->bad) {
            end_task(d, NULL, t, t->quarantine ? MV_ST_QUARANTINED : MV_ST_FAILED, t->bad,
                     strlen(t->bad), NULL);
            continue;
        }
        /* Escalated on another host (a Redis source): its own worker, at its raised limit. */
        d->ev->on_escalate(d->arg, t);
        if (d->tasks->head == t)
            return NULL; /* the pool cannot take it now (stopping): it waits in the queue */
    }
    return t;
}

/* A filter's predicate for mv_tasks_take_if. */
typedef struct take_ctx {
    mv_dispatch_t *d;
    const mv_worker_t *w;
} take_ctx_t;

static bool may_take(void *arg, const mv_task_t *t)
{
    take_ctx_t *c = arg;

    return t->bad || c->d->filter->may_take(c->d->filter->arg, c->w, t);
}

/* The next task worker w may take (the head, without a filter); NULL when none. */
static mv_task_t *next_for(mv_dispatch_t *d, mv_worker_t *w)
{
    const mv_dispatch_filter_t *f = d->filter;
    take_ctx_t c = {d, w};
    mv_task_t *t;

    if (!f || !f->active(f->arg, w))
        return next_task(d);
    /* Lines that could not become tasks end wherever they are: no worker runs them. */
    for (;;) {
        if (f->scan)
            f->scan(f->arg, w);
        t = mv_tasks_take_if(d->tasks, may_take, &c);
        if (!t || !t->bad)
            break;
        end_task(d, NULL, t, MV_ST_FAILED, t->bad, strlen(t->bad), NULL);
    }
    /* Starving can end the experiment (nothing more will come: it is judged on what ran),
     * and then nothing else may wake the loop for another pass (the source is done, every
     * worker idle): this pass looks again. Without the filter, w takes the head now; and the
     * next experiment may have begun on a worker bound at once (a fresh one that ran
     * nothing, w itself or one already passed): the next round hands it its kind. */
    if (!t && f->starved(f->arg, w, mv_tasks_source_done(d->tasks))) {
        d->refilter = true;
        if (!f->active(f->arg, w) && mv_worker_takes_tasks(w))
            t = next_task(d);
    }
    return t;
}

/* Whether no worker that serves (free or busy, not leaving) may take any queued task. */
static bool held_back(mv_dispatch_t *d)
{
    for (int i = 0; i < d->nws; i++) {
        take_ctx_t c = {d, d->ws[i]};
        if (mv_worker_leaving(d->ws[i]))
            continue;
        if (d->filter->scan)
            d->filter->scan(d->filter->arg, d->ws[i]);
        if (!d->filter->active(d->filter->arg, d->ws[i]) || mv_tasks_find(d->tasks, may_take, &c))
            return false;
    }
    return true;
}

void mv_dispatch_eager(mv_dispatch_t *d, mv_worker_t *w)
{
    mv_task_t *t;

    if (w->cap != 1 || !w->flush_at_dispatch || !d->accepting || d->paused || d->nr > 0 ||
        !d->tasks->queued || mv_results_backlogged(d->results) ||
        (d->filter && d->filter->active(d->filter->arg, w)) || !mv_worker_takes_tasks(w) ||
        !(t = next_task(d)))
        return;
    t->attempts++;
    stamp_sent(t, w, mv_wall_us());
    mv_worker_send_task(w, t);
    mv_worker_flush(w);
}

/* What the attached workers can hold at once, for the task source (tasks.h ready_slots). */
static void count_ready_slots(mv_dispatch_t *d)
{
    int64_t n = 0;

    for (int i = 0; i < d->nws; i++)
        n += d->ws[i]->cap;
    d->tasks->ready_slots = n;
}

static void dispatch_cb(uv_check_t *h)
{
    mv_dispatch_t *d = h->data;
    mv_task_t *t = NULL;
    int64_t now = 0;
    bool gave, free_worker = false, any = false;

    if (!d->pending)
        return;
    d->pending = false;
    /* While the results writer is backlogged, start nothing new: it calls back when it has
     * caught up. */
    if (d->accepting && !d->paused && !mv_results_backlogged(d->results)) {
        give_reserved(d);
        do {
            gave = d->refilter = false;
            for (int i = 0; i < d->nws && d->tasks->queued; i++) {
                if (!mv_worker_takes_tasks(d->ws[i]))
                    continue;
                free_worker = true;
                t = next_for(d, d->ws[i]);
                if (!t)
                    continue; /* a filter: others may still take what is queued */
                t->attempts++;
                /* One clock read per pass: what a pass hands out is written together at
                 * its end (mv_worker_flush). */
                if (!now)
                    now = mv_wall_us();
                stamp_sent(t, d->ws[i], now);
                mv_worker_send_task(d->ws[i], t);
                gave = any = true;
            }
        } while ((gave || d->refilter) && d->tasks->queued);
        /* Filters must never leave tasks waiting that no worker will ever take. */
        if (d->filter && free_worker && !any && d->tasks->queued && held_back(d) &&
            d->filter->stuck(d->filter->arg))
            mv_dispatch_kick(d);
    }
    /* Every pass, given tasks or not: a new worker's GO waits here (mv_dispatch_attach). */
    for (int i = 0; i < d->nws; i++)
        mv_worker_flush(d->ws[i]);
    count_ready_slots(d);
    mv_tasks_pump(d->tasks);
}

int mv_dispatch_attach(mv_dispatch_t *d, mv_worker_t *w)
{
    if (d->nws == d->capws) {
        int cap = d->capws ? d->capws * 2 : 16;
        mv_worker_t **ws = realloc(d->ws, (size_t)cap * sizeof *ws);
        if (!ws)
            return -ENOMEM;
        d->ws = ws;
        d->capws = cap;
    }
    d->ws[d->nws++] = w;
    /* Its channel is flushed by every pass from now on, the first one in this loop iteration
     * (kicked here): what it is sent meanwhile (GO) goes with its first task. */
    w->flush_at_dispatch = true;
    mv_dispatch_kick(d);
    return 0;
}

void mv_dispatch_detach(mv_dispatch_t *d, mv_worker_t *w)
{
    for (int i = 0; i < d->nws; i++)
        if (d->ws[i] == w) {
            memmove(d->ws + i, d->ws + i + 1, (size_t)(d->nws - i - 1) * sizeof *d->ws);
            d->nws--;
            w->flush_at_dispatch = false;
            mv_worker_flush(w);
            return;
        }
}

void mv_dispatch_set_filter(mv_dispatch_t *d, const mv_dispatch_filter_t *f)
{
    d->filter = f;
}

void mv_dispatch_kick(mv_dispatch_t *d)
{
    d->pending = true;
}

void mv_dispatch_stop(mv_dispatch_t *d)
{
    d->accepting = false;
}

void mv_dispatch_pause(mv_dispatch_t *d, unsigned reason, bool on)
{
    d->paused = on ? d->paused | reason : d->paused & ~reason;
    if (!d->paused)
        mv_dispatch_kick(d);
}

int mv_dispatch_init(mv_dispatch_t *d, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                     mv_tasks_t *tasks, mv_results_t *results, bool service,
                     const mv_dispatch_events_t *ev, void *arg)
{
    memset(d, 0, sizeof *d);
    d->loop = loop;
    d->log = log;
    d->cfg = cfg;
    d->tasks = tasks;
    d->results = results;
    d->service = service;
    d->ev = ev;
    d->arg = arg;
    d->accepting = true;
    d->tasks->ready_slots = 0; /* none yet */
    uv_check_init(loop, &d->check);
    d->check.data = d;
    uv_check_start(&d->check, dispatch_cb);
    /* The check handle runs every iteration but must not keep the loop alive by itself. */
    uv_unref((uv_handle_t *)&d->check);
    d->open = true;
    return 0;
}

static void handle_closed_cb(uv_handle_t *h)
{
    mv_dispatch_t *d = h->data;

    if (d->closed)
        d->closed(d->closed_arg);
}

void mv_dispatch_close(mv_dispatch_t *d, void (*cb)(void *arg), void *arg)
{
    if (!d->open)
        return;
    d->open = false;
    d->closed = cb;
    d->closed_arg = arg;
    uv_close((uv_handle_t *)&d->check, handle_closed_cb);
}

void mv_dispatch_free(mv_dispatch_t *d)
{
    /* Every reserved worker is gone by now (its task went back to the pool): none is left,
     * but the memory is ours either way. */
    while (d->nr > 0)
        mv_task_free(d->rt[--d->nr]);
    free(d->rw);
    free(d->rt);
    d->rw = NULL;
    d->rt = NULL;
    free(d->ws);
    d->ws = NULL;
    d->nws = d->capws = 0;
}
