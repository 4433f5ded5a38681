/*
 * dispatch: handing tasks to workers, taking their answers, per-task memory, results,
 * and the memory checks that drive recycling.
 *
 * Per-task accounting: the task at the head of a worker's in-flight list is the one being
 * worked on (workers answer in order). Its "before" reading is taken when it becomes the
 * head: at dispatch to an idle worker, or at the answer to the previous task; the reading
 * taken for an answer is reused for the next task in the same loop iteration, so lock-step
 * costs one reading per task, and with prefetch one reading per batch of answers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* Whether `w` may be sent one more task. Tasks in flight count toward max_tasks, so a worker
 * never runs more than its limit; a worker waiting for its turn to recycle for another
 * reason keeps working meanwhile, so capacity does not drop (the hard limit still holds). */
static bool takes_tasks(const mv_worker_t *w)
{
    if (!mv_fsm_takes_tasks(w->state) || w->broken || w->count >= w->cap ||
        w->reason != MV_R_NONE || w->pool->cfg->worker.protocol == MV_PROTO_NONE)
        return false;
    /* Observe-only: max_tasks is reported (would_recycle), not enforced. */
    return w->lim.max_tasks == 0 || !w->pool->cfg->limits.enforce ||
           w->tasks_done + w->count < w->lim.max_tasks;
}

static mv_task_t *head_task(const mv_worker_t *w)
{
    return w->count ? w->inflight[w->head] : NULL;
}

static void push_task(mv_worker_t *w, mv_task_t *t)
{
    w->inflight[(w->head + w->count) % w->cap] = t;
    w->count++;
}

static mv_task_t *pop_task(mv_worker_t *w)
{
    mv_task_t *t = w->inflight[w->head];

    w->head = (w->head + 1) % w->cap;
    w->count--;
    return t;
}

const mv_reading_t *mv__reading(mv_worker_t *w, bool fresh)
{
    mv_pool_t *p = w->pool;
    mv_slot_t *s = mv__slot(w);
    mv_task_t *t;
    mv_reading_t r;

    if (!w->meter_ok)
        return NULL;
    if (!fresh && w->have_reading && w->last_tick == p->tick)
        return &w->last;
    if (mv_meter_read(&w->meter, &r) < 0)
        return w->have_reading ? &w->last : NULL; /* gone: its last reading stands */
    if (r.priv < 0 && w->have_reading) {
        /* The process is gone, its cgroup not: fresh usage and peak, its last own figures. */
        r.priv = w->last.priv;
        r.rss = w->last.rss;
        r.fds = w->last.fds;
    }
    w->last = r;
    w->last_tick = p->tick;
    w->have_reading = true;
    w->peak = MV_MAX(w->peak, MV_MAX(r.usage, r.peak));
    s->peak = MV_MAX(s->peak, w->peak);
    t = head_task(w);
    if (t)
        t->peak_seen = MV_MAX(t->peak_seen, r.usage);
    return &w->last;
}

/* A reading for the task accounting, or NULL when [tasks] accounting is off. */
static const mv_reading_t *task_reading(mv_worker_t *w)
{
    return w->pool->cfg->tasks.accounting ? mv__reading(w, false) : NULL;
}

/* The task becomes the one the worker works on: its "before" and a new peak window. */
static void begin_task(mv_worker_t *w, mv_task_t *t, const mv_reading_t *r)
{
    int64_t timeout = w->pool->cfg->limits.task_timeout;

    t->attempts++;
    t->started_ns = uv_hrtime();
    t->measured = r != NULL;
    if (r) {
        t->before = *r;
        t->peak_seen = r->usage;
        /* One peak window per reading: the tasks of one batch of answers (prefetch) share
         * their "before", and a reset per task would cost a system call per task. */
        if (w->has_cg && w->peak_reset_tick != w->last_tick + 1) {
            mv_cg_reset_peak(&w->cg);
            w->peak_reset_tick = w->last_tick + 1;
        }
    }
    if (timeout > 0)
        mv__arm(w, MV_DL_TASK, timeout);
}

/* Writes a task's result line and lets it go. `w` is the worker it last ran on (NULL: it
 * never ran); `after` is the reading at its end (NULL: no memory figures). */
static void end_task(mv_pool_t *p, mv_worker_t *w, mv_task_t *t, mv_status_t st,
                     const void *payload, size_t n, const mv_reading_t *after, const uint8_t *named,
                     size_t named_len)
{
    char kind[MV_LEAK_KIND_MAX + 1];
    mv_metric_t metric = p->cfg->limits.metric;
    const mv_attempt_t *last = t->nhist ? &t->hist[t->nhist - 1] : NULL;
    mv_result_t res = {
        .task = t->id,
        .status = st,
        .attempts = t->attempts,
        .slot = w      ? w->slot
                : last ? last->slot
                       : 0,
        .pid = w      ? w->pid
               : last ? last->pid
                      : 0,
        .payload = payload,
        .len = n,
        .hist = t->hist,
        .nhist = t->nhist,
        .kind = t->bad ? NULL : mv__task_kind(p->cfg, t, named, named_len, kind),
    };

    if (w && after && t->measured) {
        res.measured = true;
        res.mem_before = mv_reading_task_metric(&t->before, metric);
        res.mem_after = mv_reading_task_metric(after, metric);
        res.retained = res.mem_after - res.mem_before;
        res.mem_peak = after->peak >= 0 ? after->peak : MV_MAX(t->peak_seen, after->usage);
        res.peak_source = after->peak >= 0 ? "kernel" : "sampled";
        res.fds_before = t->before.fds;
        res.fds_after = after->fds;
    }
    if (t->started_ns)
        res.duration_ms = (double)(uv_hrtime() - t->started_ns) / 1e6;
    if (mv_results_add(p->results, &res) < 0)
        mv_error(p->log, "result_lost", MV_I("task", (long long)t->id),
                 MV_S("error", "out of memory encoding the result"));
    if (w && after)
        mv__observe_task(w, t, res.kind, &res);
    mv_tasks_end(p->tasks, t);
    if (p->on_progress)
        p->on_progress(p);
}

/* A task that used up its attempts (`why`: how the last one ended). */
static void quarantine(mv_pool_t *p, mv_task_t *t, mv_reason_t why, mv_worker_t *w)
{
    char msg[160];

    snprintf(msg, sizeof msg, "quarantined after %u attempts; last: %s", t->attempts,
             mv_reason_name(why));
    mv_warn(p->log, "quarantine", MV_I("task", (long long)t->id), MV_I("attempts", t->attempts),
            MV_S("reason", mv_reason_name(why)), MV_I("worker", w->slot), MV_I("pid", w->pid));
    /* A task ended: the pool is getting somewhere, even if its workers crash. */
    p->consecutive_crashes = 0;
    end_task(p, w, t, MV_ST_QUARANTINED, msg, strlen(msg), NULL, NULL, 0);
}

/* What the task in hand of a dead worker is charged with: the worker's own reason when it
 * was stopped for the task (limits, timeouts, protocol errors, the OOM killer); a crash when
 * it died during a planned recycle, which lets the task in hand finish. */
static mv_reason_t charged_reason(const mv_worker_t *w)
{
    switch (w->reason) {
    case MV_R_NONE:
    case MV_R_MAX_TASKS:
    case MV_R_MAX_LIFETIME:
    case MV_R_SOFT_LIMIT:
    case MV_R_REQUESTED: return MV_R_CRASH;
    default: return w->reason;
    }
}

/* Service mode: a request cannot be replayed, so the one a dead worker had open is lost. Only
 * a kill does that (hard limit, kernel OOM, a crash): a drain lets requests finish. */
static void lose_requests(mv_worker_t *w, mv_reason_t why)
{
    char msg[96];

    while (w->count > 0) {
        mv_task_t *t = head_task(w);
        pop_task(w);
        snprintf(msg, sizeof msg, "lost: the worker ended (%s)", mv_reason_name(why));
        mv_warn(w->pool->log, "request_lost", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_I("request", (long long)t->id), MV_S("reason", mv_reason_name(why)));
        end_task(w->pool, w, t, MV_ST_FAILED, msg, strlen(msg), NULL, (const uint8_t *)t->data,
                 t->len);
    }
    w->head = 0;
}

void mv__settle_tasks(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    /* A worker that exits 0 after STOP did not start the task at its head (DESIGN §3: STOP
     * means "finish the task in hand, start no other"): it is not charged. */
    bool clean = w->stop_sent && w->term_signal == 0 && w->exit_status == 0;
    mv_reason_t why = charged_reason(w);
    int status = w->term_signal ? -w->term_signal : (int)w->exit_status;
    /* The cgroup outlives its process: its kernel peak says how far the last task got. */
    const mv_reading_t *last = mv__reading(w, true);
    int64_t peak = last ? MV_MAX(last->peak, last->usage) : -1;

    if (p->service) {
        lose_requests(w, why);
        return;
    }
    /* Newest first, so that requeueing at the front keeps their order. */
    while (w->count > 0) {
        unsigned i = (w->head + w->count - 1) % w->cap;
        mv_task_t *t = w->inflight[i];
        bool started = w->count == 1;

        w->count--;
        if (started && (clean || why == MV_R_SHUTDOWN))
            t->attempts--; /* it did not really run: not an attempt */
        else if (started) {
            /* Out of memory for the record: the task still ends, its history is shorter. */
            mv_task_note_attempt(t, why, w->slot, w->pid, status, peak);
            if (t->attempts >= p->cfg->tasks.max_attempts) {
                quarantine(p, t, why, w);
                continue;
            }
            mv_info(p->log, "requeue", MV_I("task", (long long)t->id),
                    MV_I("attempts", t->attempts), MV_S("reason", mv_reason_name(why)),
                    MV_I("worker", w->slot), MV_I("pid", w->pid));
            p->stats.requeued++; /* only tasks that lost an attempt */
        }
        mv_tasks_requeue(p->tasks, t);
    }
    w->head = 0;
}

/* Observe-only: says once per worker and reason what would have happened. */
static void would_recycle(mv_worker_t *w, mv_reason_t reason, const mv_reading_t *r)
{
    if (w->would & (1u << reason))
        return;
    w->would |= 1u << reason;
    mv_info(w->pool->log, "would_recycle", MV_I("worker", w->slot), MV_I("gen", w->gen),
            MV_I("pid", w->pid), MV_S("reason", mv_reason_name(reason)),
            MV_I("tasks", w->tasks_done),
            MV_I("mem", r ? mv_reading_limit_metric(r, w->pool->cfg->limits.metric) : -1),
            MV_I("usage", r ? r->usage : -1));
}

void mv__check_policy(mv_worker_t *w, const mv_reading_t *r)
{
    const mv_config_t *cfg = w->pool->cfg;
    mv_wfacts_t f = {
        .tasks_done = w->tasks_done,
        .age_ms = mv_now_ms() - w->spawned_ms,
        .soft_value = r ? mv_reading_limit_metric(r, cfg->limits.metric) : -1,
        .hard_value = r ? r->usage : -1,
        .hard_by_kernel = w->has_cg && cfg->limits.enforce,
    };
    mv_verdict_t v = mv_policy_check(&w->lim, &f);

    mv__near_limit(w, r);
    if (v.kind == MV_VERDICT_KEEP)
        return;
    if (!cfg->limits.enforce) {
        unsigned all = mv_policy_reasons(&w->lim, &f);
        for (int reason = 0; reason < MV_R_COUNT; reason++)
            if (all & (1u << reason))
                would_recycle(w, (mv_reason_t)reason, r);
    } else if (v.kind == MV_VERDICT_KILL)
        mv__kill(w, v.reason);
    else if (w->reason == MV_R_NONE)
        mv__recycle(w, v.reason);
}

void mv__on_hello(mv_worker_t *w, uint32_t version)
{
    mv_pool_t *p = w->pool;
    struct mvw_go go = {MVW_PROTOCOL_VERSION, (uint32_t)w->slot, (uint32_t)p->cfg->worker.prefetch,
                        p->service ? MVW_MODE_SERVICE : MVW_MODE_BATCH};
    char what[96];

    if (version != MVW_PROTOCOL_VERSION) {
        snprintf(what, sizeof what, "worker speaks protocol %" PRIu32 ", memvisor speaks %u",
                 version, MVW_PROTOCOL_VERSION);
        mv__on_protocol_error(w, what);
        return;
    }
    if (w->state != MV_W_SPAWNING)
        return; /* asked to stop before it was ready: it gets STOP, not GO */
    mv__disarm(w);
    mv__chan_send(w, MVW_MSG_GO, 0, &go, sizeof go);
    mv__chan_flush(w);
    mv__fsm(w, MV_EV_READY);
    mv_info(p->log, "ready", MV_I("worker", w->slot), MV_I("pid", w->pid),
            MV_I("ms", (long long)(mv_now_ms() - w->spawned_ms)));
    mv__on_ready(w);
    mv_pool_kick(p);
}

/* ---- service mode: the worker makes its tasks (requests) with BEGIN/END ---- */

void mv__on_begin(mv_worker_t *w, uint64_t id, const uint8_t *kind, size_t kind_len)
{
    mv_pool_t *p = w->pool;
    mv_task_t *t;
    char what[96];

    if (w->broken)
        return;
    if (w->count > 0) {
        snprintf(what, sizeof what, "BEGIN %" PRIu64 " while request %" PRIu64 " is open", id,
                 head_task(w)->id);
        mv__on_protocol_error(w, what);
        return;
    }
    /* The task's bytes are its kind: a request has no payload memvisor knows. */
    t = mv_task_new(id, kind, kind_len);
    if (!t) {
        mv_error(p->log, "request_untracked", MV_I("worker", w->slot), MV_I("pid", w->pid),
                 MV_I("request", (long long)id), MV_S("error", "out of memory"));
        w->untracked = true;
        return;
    }
    p->tasks->loaded++;
    push_task(w, t);
    /* Its "before" is the reading at the previous END: a worker sends BEGIN and END after
     * the work is done as far as memvisor can tell (they often arrive in one read), so a
     * reading taken now would already hold the request's memory. */
    begin_task(w, t, w->have_end ? &w->end_reading : task_reading(w));
    /* A draining worker still finishes the requests of its open connections. */
    if (w->state == MV_W_READY)
        mv__fsm(w, MV_EV_DISPATCH);
}

void mv__on_end(mv_worker_t *w, uint64_t id, uint32_t status)
{
    mv_pool_t *p = w->pool;
    mv_task_t *t = head_task(w);
    const mv_reading_t *r;
    char what[96];

    if (w->broken)
        return;
    if (!t && w->untracked) {
        w->untracked = false;
        return;
    }
    if (!t || t->id != id) {
        snprintf(what, sizeof what, "END %" PRIu64 " with %s", id,
                 t ? "another request open" : "no request open");
        mv__on_protocol_error(w, what);
        return;
    }
    pop_task(w);
    r = task_reading(w);
    if (r) {
        w->end_reading = *r;
        w->have_end = true;
    }
    snprintf(what, sizeof what, "status %" PRIu32, status);
    end_task(p, w, t, status == 0 ? MV_ST_OK : MV_ST_FAILED, status == 0 ? "" : what,
             status == 0 ? 0 : strlen(what), r, (const uint8_t *)t->data, t->len);
    w->tasks_done++;
    p->consecutive_crashes = 0;
    mv__slot(w)->crashes = 0;
    if (w->deadline == MV_DL_TASK)
        mv__disarm(w);
    if (w->state == MV_W_BUSY || w->state == MV_W_DRAINING)
        mv__fsm(w, MV_EV_IDLE);
    if (w->state == MV_W_READY)
        mv__check_policy(w, r);
}

void mv__on_answer(mv_worker_t *w, uint64_t id, bool ok, const uint8_t *kind, size_t kind_len,
                   const void *payload, size_t n)
{
    mv_pool_t *p = w->pool;
    mv_task_t *t = head_task(w);
    const mv_reading_t *r;
    char what[96];

    if (w->broken)
        return;
    if (!t) {
        mv__on_protocol_error(w, "answer with no task in flight");
        return;
    }
    if (p->cfg->worker.protocol == MV_PROTO_API && id != t->id) {
        snprintf(what, sizeof what, "answer for task %" PRIu64 ", expected %" PRIu64, id, t->id);
        mv__on_protocol_error(w, what);
        return;
    }
    pop_task(w);
    r = task_reading(w);
    end_task(p, w, t, ok ? MV_ST_OK : MV_ST_FAILED, payload, n, r, kind, kind_len);
    w->tasks_done++;
    p->consecutive_crashes = 0;
    mv__slot(w)->crashes = 0;
    if (w->count > 0) {
        begin_task(w, head_task(w), r);
    } else {
        if (w->deadline == MV_DL_TASK)
            mv__disarm(w);
        mv__fsm(w, MV_EV_IDLE);
    }
    if (w->state == MV_W_READY || w->state == MV_W_BUSY)
        mv__check_policy(w, r);
    mv_pool_kick(p);
}

static void dispatch_one(mv_worker_t *w, mv_task_t *t)
{
    if (w->count == 0)
        begin_task(w, t, task_reading(w));
    push_task(w, t);
    mv__chan_send_task(w, t);
    mv__fsm(w, MV_EV_DISPATCH);
}

/* The next task worth sending; lines that could not become tasks end here. */
static mv_task_t *next_task(mv_pool_t *p)
{
    mv_task_t *t;

    while ((t = mv_tasks_pop(p->tasks)) && t->bad)
        end_task(p, NULL, t, MV_ST_FAILED, t->bad, strlen(t->bad), NULL, NULL, 0);
    return t;
}

/* Once per loop iteration when kicked: one task per ready worker per round, round after
 * round, so tasks spread over workers; then one write per worker. */
static void dispatch_cb(uv_check_t *h)
{
    mv_pool_t *p = h->data;
    mv_worker_t *w;
    mv_task_t *t = NULL;
    bool gave;

    /* Every loop iteration ends a tick, with or without a dispatch pass (service mode's
     * BEGIN/END have none): readings are reused within one iteration only. */
    if (!p->dispatch_pending) {
        p->tick++;
        return;
    }
    p->dispatch_pending = false;
    /* While the results writer is backlogged, start nothing new: it calls back when it
     * has caught up. */
    if (p->accepting && !mv_results_backlogged(p->results)) {
        do {
            gave = false;
            for (w = p->workers; w; w = w->next) {
                if (!takes_tasks(w))
                    continue;
                t = next_task(p);
                if (!t)
                    break;
                dispatch_one(w, t);
                gave = true;
            }
        } while (gave && t);
        for (w = p->workers; w; w = w->next)
            mv__chan_flush(w);
    }
    mv_tasks_pump(p->tasks);
    p->tick++;
}

static void sample_cb(uv_timer_t *h)
{
    mv_pool_t *p = h->data;
    mv_worker_t *w, *next;

    for (w = p->workers; w; w = next) {
        next = w->next;
        if (w->state == MV_W_DEAD || w->state == MV_W_KILLING || w->state == MV_W_SPAWNING ||
            w->state == MV_W_PREPARING)
            continue;
        mv__check_policy(w, mv__reading(w, true));
        /* A worker with no tasks to prove itself (protocol none) ends a crash streak by
         * staying up as long as the longest backoff. */
        if (mv_now_ms() - w->spawned_ms >= (uint64_t)p->cfg->worker.backoff_max) {
            mv__slot(w)->crashes = 0;
            p->consecutive_crashes = 0;
        }
    }
    /* Timers run before the loop blocks in poll: an answer that wakes it must not reuse these
     * readings, taken up to a sample interval earlier (a new tick). */
    p->tick++;
}

#define RECHECK_MS 5

/* Checks a worker whose cgroup usage is above the soft limit; says whether to keep at it. */
static bool recheck_one(mv_worker_t *w)
{
    const mv_reading_t *r;

    if (w->state == MV_W_DEAD || w->state == MV_W_KILLING || w->reason != MV_R_NONE ||
        w->wanted != MV_R_NONE)
        return false;
    r = mv__reading(w, true);
    mv__check_policy(w, r);
    return r && w->reason == MV_R_NONE && w->wanted == MV_R_NONE && r->usage >= w->lim.soft_bytes;
}

static void recheck_cb(uv_timer_t *h)
{
    mv_pool_t *p = h->data;
    bool any = false;

    for (mv_worker_t *w = p->workers; w; w = w->next)
        if (w->near_soft)
            any |= w->near_soft = recheck_one(w);
    if (!any) {
        p->rechecking = false;
        uv_timer_stop(h);
    }
    p->tick++; /* as in sample_cb */
}

/*
 * The cgroup said something (v1 threshold crossed, v2 memory.events changed): look now.
 * The v1 threshold is on usage, which counts page cache, and memory.stat lags the charge: the
 * private figure the soft limit compares may still be just below it, and the threshold will
 * not fire again. So while usage stays above the limit, the worker is re-read every 5 ms.
 */
static void notify_cb(uv_poll_t *h, int status, int events)
{
    mv_worker_t *w = h->data;
    mv_pool_t *p = w->pool;

    if (status < 0 || w->state == MV_W_DEAD || mv_cg_notified(&w->cg) <= 0)
        return;
    if (w->lim.soft_bytes > 0 && recheck_one(w)) {
        w->near_soft = true;
        if (!p->rechecking) {
            p->rechecking = true;
            uv_timer_start(&p->recheck, recheck_cb, RECHECK_MS, RECHECK_MS);
        }
    }
}

void mv__watch(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    int r;

    if (!w->has_cg || w->cg.notify_fd < 0)
        return;
    r = uv_poll_init(p->loop, &w->notify, w->cg.notify_fd);
    if (r < 0) {
        /* e.g. a fixture tree of plain files: the sampler still watches this worker. */
        mv_debug(p->log, "cgroup_poll_unavailable", MV_I("worker", w->slot),
                 MV_S("error", uv_strerror(r)));
        return;
    }
    w->notify.data = w;
    w->notify_open = true;
    w->open_handles++;
    /* v2 signals memory.events changes as POLLPRI only; v1's eventfd is plain readable. */
    uv_poll_start(&w->notify, w->cg.version == MV_CG_V2 ? UV_PRIORITIZED : UV_READABLE, notify_cb);
}

int mv__dispatch_init(mv_pool_t *p)
{
    uv_check_init(p->loop, &p->dispatcher);
    p->dispatcher.data = p;
    uv_check_start(&p->dispatcher, dispatch_cb);
    /* The check handle runs every iteration but must not keep the loop alive by itself. */
    uv_unref((uv_handle_t *)&p->dispatcher);
    p->open_handles++;
    uv_timer_init(p->loop, &p->recheck);
    p->recheck.data = p;
    uv_unref((uv_handle_t *)&p->recheck);
    p->open_handles++;
    uv_timer_init(p->loop, &p->sampler);
    p->sampler.data = p;
    uv_timer_start(&p->sampler, sample_cb, (uint64_t)p->cfg->limits.sample_interval,
                   (uint64_t)p->cfg->limits.sample_interval);
    uv_unref((uv_handle_t *)&p->sampler);
    p->open_handles++;
    return 0;
}
