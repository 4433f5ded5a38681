/*
 * pool: worker slots and the life of each worker.
 *
 * The lifecycle is the table in fsm.c; this file only carries out its actions. Deaths are
 * settled in one place (reap): the tasks of the dead worker are requeued or quarantined,
 * the exit is classified (asked for, crash, fatal), and the slot is respawned (at once for
 * workers that were asked to go, with exponential backoff for crash loops).
 *
 * Recycling keeps capacity (DESIGN §5): the replacement is spawned when the decision is
 * taken, before the old worker retires (surge), and at most [recycle] max_concurrent
 * workers recycle at once; the others wait their turn (`wanted`).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

static void tl_mark(mv_worker_t *w, mv_tl_what_t what, const char *reason);

/* A memory stop this soon after spawn, with no task done, is a failed start. */
#define MV_PREMATURE_MS 10000

mv_slot_t *mv__slot(mv_worker_t *w)
{
    return &w->pool->slots[w->slot - 1];
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

static void pool_closed(mv_pool_t *p)
{
    if (--p->open_handles == 0 && p->on_stopped)
        p->on_stopped(p);
}

static void pool_handle_closed_cb(uv_handle_t *h)
{
    pool_closed(h->data);
}

/* A slot's backoff timer carries its slot, not the pool. */
static void backoff_closed_cb(uv_handle_t *h)
{
    mv_slot_t *s = h->data;

    pool_closed(s->pool);
}

/* Once stopping and every worker is gone, closes the pool's own handles (then on_stopped). */
static void maybe_stopped(mv_pool_t *p)
{
    if (!p->stopping || p->workers || p->closing)
        return;
    p->closing = true;
    uv_close((uv_handle_t *)&p->dispatcher, pool_handle_closed_cb);
    uv_close((uv_handle_t *)&p->sampler, pool_handle_closed_cb);
    uv_close((uv_handle_t *)&p->recheck, pool_handle_closed_cb);
    uv_close((uv_handle_t *)&p->grace, pool_handle_closed_cb);
    uv_close((uv_handle_t *)&p->spacer, pool_handle_closed_cb);
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].backoff_open) {
            p->slots[i].backoff_open = false;
            uv_close((uv_handle_t *)&p->slots[i].backoff, backoff_closed_cb);
        }
}

/* ---- deadlines ---- */

static void deadline_cb(uv_timer_t *t)
{
    mv_worker_t *w = t->data;
    int what = w->deadline;

    w->deadline = MV_DL_NONE;
    switch (what) {
    case MV_DL_READY:
        mv_warn(w->pool->log, "ready_timeout", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_I("after_ms", w->pool->cfg->worker.ready_timeout));
        mv__fault(w, MV_R_READY_TIMEOUT);
        break;
    case MV_DL_TASK:
        if (w->pool->cfg->limits.enforce) {
            mv__fault(w, MV_R_TASK_TIMEOUT);
        } else if (!(w->would & (1u << MV_R_TASK_TIMEOUT))) {
            w->would |= 1u << MV_R_TASK_TIMEOUT;
            mv_info(w->pool->log, "would_recycle", MV_I("worker", w->slot), MV_I("pid", w->pid),
                    MV_S("reason", "task_timeout"));
        }
        break;
    case MV_DL_CHANNEL:
        mv_warn(w->pool->log, "channel_closed", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_S("msg", "worker closed its channel but did not exit"));
        mv__fault(w, MV_R_CRASH);
        break;
    case MV_DL_KILL:
        mv_warn(w->pool->log, "kill_timeout", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_I("after_ms", w->pool->cfg->worker.kill_timeout), MV_S("action", "SIGKILL"));
        mv__fsm(w, MV_EV_TIMEOUT);
        break;
    default: break;
    }
}

void mv__arm(mv_worker_t *w, int deadline, int64_t ms)
{
    /* Once SIGKILL is scheduled (kill_timeout) or the channel is gone, no task or ready
     * deadline may push it back: that would leave a worker that ignores SIGTERM alive. */
    if ((w->deadline == MV_DL_KILL || w->deadline == MV_DL_CHANNEL) &&
        (deadline == MV_DL_TASK || deadline == MV_DL_READY))
        return;
    w->deadline = deadline;
    uv_timer_start(&w->timer, deadline_cb, (uint64_t)(ms > 0 ? ms : 0), 0);
}

void mv__disarm(mv_worker_t *w)
{
    w->deadline = MV_DL_NONE;
    uv_timer_stop(&w->timer);
}

/* A worker stopped for memory before it did anything: nothing done or in hand, and young.
 * Its replacement would start the same way, so this is a startup that does not fit the
 * limits, not a recycle. */
static bool premature(const mv_worker_t *w)
{
    return w->tasks_done == 0 && w->count == 0 && mv_now_ms() - w->spawned_ms < MV_PREMATURE_MS;
}

/* Whether leaving for `reason` is the worker's failure: then its slot is respawned only
 * once it is gone, with the crash backoff, and it counts toward crash_limit. Planned
 * recycles (and a task that hung or outgrew the limits) get their replacement at once. */
static bool is_failure(const mv_worker_t *w, mv_reason_t reason)
{
    switch (reason) {
    case MV_R_CRASH:
    case MV_R_READY_TIMEOUT:
    case MV_R_PROTOCOL_ERROR:
    case MV_R_FATAL: return true;
    case MV_R_SOFT_LIMIT:
    case MV_R_HARD_LIMIT:
    case MV_R_KERNEL_OOM: return premature(w);
    default: return false;
    }
}

/* ---- spawning ---- */

static void schedule_respawn(mv_pool_t *p, int slot, uint64_t delay_ms);

/* Whether a spawn error means the command can never start (so retrying is pointless). */
static bool spawn_hopeless(int err)
{
    return err == UV_ENOENT || err == UV_EACCES || err == UV_ENOTDIR || err == UV_EISDIR ||
           err == UV_ENAMETOOLONG || err == UV_ELOOP || err == UV_EINVAL;
}

static void fatal(mv_pool_t *p)
{
    if (p->fatal)
        return;
    p->fatal = true;
    p->accepting = false;
    if (p->on_fatal)
        p->on_fatal(p);
}

static void count_failure(mv_worker_t *w);

/* Removes a dead worker's cgroup in the thread pool (rmdir may wait on cgroup_mutex). */
typedef struct cg_removal {
    uv_work_t req;
    mv_cg_version_t version;
    char *path;
    int result;
    char why[256];
    mv_log_t *log;
} cg_removal_t;

static void removal_cb(uv_work_t *req)
{
    cg_removal_t *j = req->data;

    j->result = mv_cg_remove(j->version, j->path, j->why, sizeof j->why);
}

static void removal_done_cb(uv_work_t *req, int status)
{
    cg_removal_t *j = req->data;

    if (j->result < 0)
        mv_warn(j->log, "cgroup_remove_failed", MV_S("cgroup", j->path), MV_S("error", j->why));
    free(j->path);
    free(j);
}

/* Closes a worker's cgroup files and has the directory removed. */
static void release_cgroup(mv_worker_t *w)
{
    cg_removal_t *j;

    if (!w->has_cg)
        return;
    w->has_cg = false;
    j = calloc(1, sizeof *j);
    if (j) {
        j->req.data = j;
        j->version = w->cg.version;
        j->path = w->cg.path; /* the job owns the path now */
        j->log = w->pool->log;
        w->cg.path = NULL;
        if (uv_queue_work(w->pool->loop, &j->req, removal_cb, removal_done_cb) < 0) {
            mv_warn(w->pool->log, "cgroup_remove_failed", MV_S("cgroup", j->path),
                    MV_S("error", "cannot queue the removal"));
            free(j->path);
            free(j);
        }
    }
    mv_cg_close(&w->cg);
}

/* A worker could not be started (cgroup or spawn): the slot retries after a backoff, or the
 * run ends when the command can never start. */
static void spawn_failed(mv_worker_t *w, const char *call, const char *error, bool hopeless)
{
    mv_pool_t *p = w->pool;
    mv_slot_t *s = mv__slot(w);

    mv_error(p->log, "spawn_failed", MV_I("worker", w->slot), MV_S("command", p->argv[0]),
             MV_S("call", call), MV_S("error", error));
    w->state = MV_W_DEAD;
    release_cgroup(w);
    mv__close_handles(w);
    if (s->active == w)
        s->active = NULL;
    if (hopeless) {
        fatal(p);
        return;
    }
    w->reason = MV_R_CRASH;
    count_failure(w);
    schedule_respawn(
        p, w->slot,
        mv_policy_backoff(s->crashes, p->cfg->worker.backoff_min, p->cfg->worker.backoff_max));
}

/* The worker's cgroup (if any) is ready: start its process. */
static void start_process(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    const char *call = "uv_spawn";
    int r = mv__spawn(p, w, &call);

    if (r < 0 && w->pid <= 0) {
        spawn_failed(w, call, uv_strerror(r), spawn_hopeless(r));
        return;
    }
    p->stats.spawned++;
    mv__fsm(w, MV_EV_STARTED);
    if (r < 0) {
        /* It runs (already sent SIGKILL) but could not be wired up: its exit is reaped as a
         * crash, with the backoff and crash_limit of any failure. */
        mv_error(p->log, "spawn_failed", MV_I("worker", w->slot), MV_I("pid", w->pid),
                 MV_S("call", call), MV_S("error", uv_strerror(r)));
        w->reason = MV_R_CRASH;
        mv__fsm(w, MV_EV_KILL);
        return;
    }
    w->meter_ok = mv_meter_open(&w->meter, w->pid, w->has_cg ? &w->cg : NULL,
                                p->cfg->limits.memory_soft) == 0;
    mv__watch(w);
    mv_info(p->log, "spawn", MV_I("worker", w->slot), MV_I("gen", w->gen), MV_I("pid", w->pid),
            MV_S("cgroup", w->has_cg ? w->cg.path : "none"));
    tl_mark(w, MV_TL_SPAWN, NULL);
    if (p->cfg->worker.protocol == MV_PROTO_API) {
        mv__arm(w, MV_DL_READY, p->cfg->worker.ready_timeout);
    } else {
        mv__fsm(w, MV_EV_READY);
        mv_info(p->log, "ready", MV_I("worker", w->slot), MV_I("pid", w->pid), MV_I("ms", 0));
        mv__on_ready(w);
        mv_pool_kick(p);
    }
}

static void cg_create_cb(uv_work_t *req)
{
    mv_worker_t *w = req->data;

    w->cg_result = mv_cg_create(&w->cg_conf, w->slot, w->gen, &w->cg, w->cg_why, sizeof w->cg_why);
}

static void cg_created_cb(uv_work_t *req, int status)
{
    mv_worker_t *w = req->data;

    if (status < 0 && w->cg_result == 0) {
        w->cg_result = status;
        snprintf(w->cg_why, sizeof w->cg_why, "the cgroup job was cancelled");
    }
    w->has_cg = w->cg_result == 0;
    if (w->state == MV_W_DEAD) { /* discarded while its cgroup was being made */
        release_cgroup(w);
        mv__close_handles(w);
        return;
    }
    if (!w->has_cg) {
        spawn_failed(w, "cgroup", w->cg_why, false);
        return;
    }
    start_process(w);
}

/* A new worker for `slot`: its cgroup is made in the thread pool, then its process starts. */
static int spawn_slot(mv_pool_t *p, int slot)
{
    mv_slot_t *s = &p->slots[slot - 1];
    mv_worker_t *w = calloc(1, sizeof *w);

    if (w)
        w->inflight = calloc((size_t)p->cfg->worker.prefetch, sizeof *w->inflight);
    if (!w || !w->inflight) {
        free(w);
        mv_error(p->log, "spawn_failed", MV_I("worker", slot), MV_S("error", "out of memory"));
        schedule_respawn(p, slot, (uint64_t)p->cfg->worker.backoff_max);
        return -ENOMEM;
    }
    w->pool = p;
    w->slot = slot;
    w->gen = ++s->gen;
    w->state = MV_W_PREPARING;
    w->cap = (unsigned)p->cfg->worker.prefetch;
    w->lim = mv_policy_limits(p->cfg, rand01(p), rand01(p));
    w->meter.statm_fd = w->meter.fd_dir_fd = -1;
    w->cg.procs_fd = w->cg.notify_fd = -1;
    uv_timer_init(p->loop, &w->timer);
    w->timer.data = w;
    w->open_handles = 1;
    w->next = p->workers;
    p->workers = w;
    s->active = w;
    if (p->cg->version == MV_CG_OFF) {
        start_process(w);
        return 0;
    }
    w->cg_job.data = w;
    w->cg_conf = *p->cg;
    if (uv_queue_work(p->loop, &w->cg_job, cg_create_cb, cg_created_cb) < 0)
        spawn_failed(w, "uv_queue_work", "cannot queue the cgroup job", false);
    return 0;
}

static void backoff_cb(uv_timer_t *t)
{
    mv_slot_t *s = t->data;
    mv_pool_t *p = s->pool;

    s->backoff_armed = false;
    if (!p->stopping && !p->fatal && !s->active)
        spawn_slot(p, (int)(s - p->slots) + 1);
}

static void schedule_respawn(mv_pool_t *p, int slot, uint64_t delay_ms)
{
    mv_slot_t *s = &p->slots[slot - 1];

    if (p->stopping || p->fatal || s->fatal)
        return;
    if (delay_ms == 0) {
        spawn_slot(p, slot);
        return;
    }
    if (!s->backoff_open) {
        uv_timer_init(p->loop, &s->backoff);
        s->backoff.data = s;
        s->backoff_open = true;
        p->open_handles++;
    }
    mv_warn(p->log, "backoff", MV_I("worker", slot), MV_I("crashes", s->crashes),
            MV_I("delay_ms", (long long)delay_ms));
    s->backoff_armed = true;
    uv_timer_start(&s->backoff, backoff_cb, delay_ms, 0);
}

/* ---- leaving ---- */

/* Spawns the worker that takes over `w`'s slot, unless that already happened. */
static void start_replacement(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    mv_slot_t *s = mv__slot(w);

    if (w->replaced || p->stopping || p->fatal)
        return;
    w->replaced = true;
    if (s->active == w) {
        s->active = NULL;
        spawn_slot(p, w->slot);
    }
}

/* The figure the soft limit compares ([limits] metric), as last read; -1 if never read. */
static int64_t leaving_mem(const mv_worker_t *w)
{
    return w->have_reading ? mv_reading_limit_metric(&w->last, w->pool->cfg->limits.metric) : -1;
}

/* issue 15 hook: a timeline mark of the worker (spawn carries its limits). */
static void tl_mark(mv_worker_t *w, mv_tl_what_t what, const char *reason)
{
    if (w->pool->timeline)
        mv_timeline_mark(w->pool->timeline,
                         &(mv_tl_mark_t){w->slot, w->gen, what, reason, w->pid,
                                         what == MV_TL_SPAWN ? w->lim.soft_bytes : -1,
                                         what == MV_TL_SPAWN ? w->lim.hard_bytes : -1,
                                         w->count ? w->inflight[w->head]->id : 0});
}

static void log_leaving(mv_worker_t *w, mv_reason_t reason, const char *action)
{
    if (reason != MV_R_SHUTDOWN)
        tl_mark(w, strcmp(action, "kill") == 0 ? MV_TL_KILL : MV_TL_RECYCLE,
                mv_reason_name(reason));
    mv_log(w->pool->log, reason == MV_R_SHUTDOWN ? MV_LVL_DEBUG : MV_LVL_INFO, "recycle",
           MV_I("worker", w->slot), MV_I("gen", w->gen), MV_I("pid", w->pid),
           MV_S("reason", mv_reason_name(reason)), MV_S("action", action),
           MV_I("tasks", w->tasks_done), MV_I("mem", leaving_mem(w)),
           MV_I("usage", w->have_reading ? w->last.usage : -1));
}

/* Starts the recycles that were waiting for a free recycle slot or for the spacing. */
static void start_wanted(mv_pool_t *p)
{
    for (mv_worker_t *w = p->workers; w && p->recycling < p->cfg->recycle.max_concurrent;
         w = w->next)
        if (w->wanted != MV_R_NONE && w->reason == MV_R_NONE && w->state != MV_W_DEAD)
            mv__recycle(w, w->wanted);
}

static void spacer_cb(uv_timer_t *t)
{
    start_wanted(t->data);
}

/* Whether a planned recycle must wait for [recycle] spacing (then the spacer is armed). */
static bool too_soon(mv_pool_t *p)
{
    uint64_t now = mv_now_ms(), next = p->last_recycle_ms + (uint64_t)p->cfg->recycle.spacing;

    if (p->cfg->recycle.spacing == 0 || p->last_recycle_ms == 0 || now >= next)
        return false;
    if (!uv_is_active((uv_handle_t *)&p->spacer))
        uv_timer_start(&p->spacer, spacer_cb, next - now, 0);
    return true;
}

void mv__on_ready(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;

    if (p->on_ready)
        p->on_ready(p);
    if (!p->service)
        return;
    /* Its capacity is there now: the worker it replaces can stop taking requests. */
    for (mv_worker_t *old = p->workers; old; old = old->next)
        if (old != w && old->slot == w->slot && old->drain_pending) {
            old->drain_pending = false;
            mv_debug(p->log, "drain", MV_I("worker", old->slot), MV_I("pid", old->pid),
                     MV_I("replacement", w->pid));
            mv__fsm(old, MV_EV_DRAIN);
        }
}

void mv__recycle(mv_worker_t *w, mv_reason_t reason)
{
    mv_pool_t *p = w->pool;

    if (w->drain_pending && reason == MV_R_SHUTDOWN) {
        /* Was waiting for its replacement, which will not come now. */
        w->drain_pending = false;
        mv__fsm(w, MV_EV_DRAIN);
        return;
    }
    if (w->reason != MV_R_NONE || w->state == MV_W_DEAD)
        return;
    if (w->state == MV_W_PREPARING) {
        /* Brand new: nothing to recycle. Only a shutdown drops it. */
        if (reason == MV_R_SHUTDOWN) {
            w->reason = reason;
            mv__fsm(w, MV_EV_DRAIN);
        }
        return;
    }
    if (reason != MV_R_SHUTDOWN &&
        (p->recycling >= p->cfg->recycle.max_concurrent || too_soon(p))) {
        if (w->wanted == MV_R_NONE)
            mv_debug(p->log, "recycle_deferred", MV_I("worker", w->slot), MV_I("pid", w->pid),
                     MV_S("reason", mv_reason_name(reason)));
        w->wanted = reason;
        return;
    }
    w->wanted = MV_R_NONE;
    w->reason = reason;
    log_leaving(w, reason, "drain");
    if (reason != MV_R_SHUTDOWN) {
        w->recycling = true;
        p->recycling++;
        p->last_recycle_ms = mv_now_ms();
        if (!is_failure(w, reason))
            start_replacement(w);
        /* A service keeps its capacity: the old worker serves until the new one is ready. */
        if (p->service && w->replaced && mv__slot(w)->active &&
            mv__slot(w)->active->state != MV_W_READY && mv__slot(w)->active->state != MV_W_BUSY) {
            w->drain_pending = true;
            return;
        }
    }
    mv__fsm(w, MV_EV_DRAIN);
}

/* Stuck or broken: SIGTERM now, SIGKILL after kill_timeout. */
void mv__fault(mv_worker_t *w, mv_reason_t reason)
{
    if (w->state == MV_W_DEAD || w->state == MV_W_STOPPING || w->state == MV_W_KILLING)
        return;
    if (w->reason != MV_R_SHUTDOWN) /* shutting down already: it stays a shutdown */
        w->reason = reason;
    log_leaving(w, reason, "term");
    if (!is_failure(w, reason))
        start_replacement(w);
    mv__fsm(w, MV_EV_FAULT);
}

/* SIGKILL now: the hard limit by sampling, or memvisor told twice to stop. A hard-limit kill
 * first has the worker snapshot (stopped meanwhile), and comes back here once it is written. */
void mv__kill(mv_worker_t *w, mv_reason_t reason)
{
    if (w->state == MV_W_DEAD || w->state == MV_W_KILLING || w->state == MV_W_PREPARING)
        return;
    if (reason == MV_R_HARD_LIMIT && w->reason != MV_R_HARD_LIMIT &&
        mv__snapshot_then_kill(w, reason)) {
        w->reason = reason; /* takes no task meanwhile */
        return;
    }
    w->reason = reason;
    log_leaving(w, reason, "kill");
    if (!is_failure(w, reason))
        start_replacement(w);
    mv__fsm(w, MV_EV_KILL);
}

/* ---- the table's actions ---- */

static void send_stop(mv_worker_t *w)
{
    if (w->pool->cfg->worker.protocol != MV_PROTO_API || w->stop_sent || !w->chan_open)
        return;
    w->stop_sent = true;
    mv__chan_send(w, MVW_MSG_STOP, 0, NULL, 0);
    mv__chan_flush(w);
}

static void reap(mv_worker_t *w);

static void act(mv_worker_t *w, mv_action_t a, mv_wevent_t ev)
{
    const mv_config_t *cfg = w->pool->cfg;

    switch (a) {
    case MV_ACT_NONE: break;
    case MV_ACT_DRAIN: send_stop(w); break;
    case MV_ACT_STOP:
        if (cfg->worker.protocol == MV_PROTO_API) {
            send_stop(w);
        } else {
            mv__chan_close_input(w);
            mv__signal(w, SIGTERM);
        }
        mv__arm(w, MV_DL_KILL, cfg->worker.kill_timeout);
        break;
    case MV_ACT_TERM:
        mv__signal(w, SIGTERM);
        mv__arm(w, MV_DL_KILL, cfg->worker.kill_timeout);
        break;
    case MV_ACT_KILL:
        mv__disarm(w);
        mv__signal(w, SIGKILL);
        break;
    case MV_ACT_REAP: reap(w); break;
    case MV_ACT_DISCARD: break; /* cg_created_cb lets it go once its cgroup job is done */
    case MV_ACT_IMPOSSIBLE:
        mv_error(w->pool->log, "cant_happen", MV_I("worker", w->slot), MV_I("pid", w->pid),
                 MV_S("state", mv_wstate_name(w->state)), MV_S("fsm_event", mv_wevent_name(ev)));
        break;
    }
}

void mv__fsm(mv_worker_t *w, mv_wevent_t ev)
{
    mv_transition_t t = mv_fsm_step(w->state, ev);

    if (t.action == MV_ACT_IMPOSSIBLE) {
        act(w, t.action, ev);
        return;
    }
    w->state = t.next;
    act(w, t.action, ev);
}

/* ---- what the channel reports ---- */

void mv__on_output(mv_worker_t *w, const char *stream, const void *line, size_t n)
{
    mv_info(w->pool->log, "output", MV_I("worker", w->slot), MV_I("pid", w->pid),
            MV_S("stream", stream), MV_B("line", line, n));
}

void mv__on_protocol_error(mv_worker_t *w, const char *what)
{
    mv_pool_t *p = w->pool;
    mv_task_t *t = w->count ? w->inflight[w->head] : NULL;

    if (w->broken)
        return;
    w->broken = true;
    p->stats.protocol_errors++;
    mv_error(p->log, "protocol_error", MV_I("worker", w->slot), MV_I("pid", w->pid),
             MV_S("error", what), MV_I("task", t ? (long long)t->id : 0));
    if (w->chan_open)
        uv_read_stop((uv_stream_t *)&w->chan);
    mv__fault(w, MV_R_PROTOCOL_ERROR);
}

void mv__on_chan_eof(mv_worker_t *w)
{
    /* Its exit normally follows at once; give it kill_timeout to do so. */
    if (w->state != MV_W_STOPPING && w->state != MV_W_KILLING && w->state != MV_W_DEAD)
        mv__arm(w, MV_DL_CHANNEL, w->pool->cfg->worker.kill_timeout);
}

/* ---- exit ---- */

static void log_exit(mv_worker_t *w, bool failed)
{
    tl_mark(w, MV_TL_EXIT, mv_reason_name(w->reason));
    mv_log(w->pool->log, failed ? MV_LVL_WARN : MV_LVL_INFO, "exit", MV_I("worker", w->slot),
           MV_I("gen", w->gen), MV_I("pid", w->pid), MV_S("reason", mv_reason_name(w->reason)),
           w->term_signal ? MV_S("signal", strsignal(w->term_signal))
                          : MV_I("status", w->exit_status),
           MV_I("tasks", w->tasks_done), MV_I("peak", w->peak),
           MV_I("age_ms", (long long)(mv_now_ms() - w->spawned_ms)));
}

/* Counts a failed worker: the fatal code ends the run; crashes feed backoff and the limit. */
static void count_failure(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    mv_slot_t *s = mv__slot(w);
    const mv_config_t *cfg = p->cfg;

    if (w->reason == MV_R_FATAL) {
        s->fatal = true;
        mv_error(p->log, "fatal_exit", MV_I("worker", w->slot), MV_I("pid", w->pid),
                 MV_I("status", w->exit_status),
                 MV_S("msg", "worker exited with the fatal code: not respawned; the run ends"));
        fatal(p);
        return;
    }
    s->crashes++;
    p->consecutive_crashes++;
    if (cfg->worker.crash_limit > 0 && p->consecutive_crashes >= cfg->worker.crash_limit) {
        mv_error(p->log, "crash_limit", MV_I("crashes", p->consecutive_crashes),
                 MV_S("msg", "workers keep failing without a task ending: giving up"));
        fatal(p);
    }
}

/* Whether the kernel OOM-killed the worker inside its cgroup (v1 oom_control / v2
 * memory.events oom_kill, already counted when the exit arrives: CGROUP-FACTS §3.1). */
static bool killed_by_oom(mv_worker_t *w)
{
    uint64_t n = 0;

    return w->has_cg && w->term_signal == SIGKILL && w->reason != MV_R_HARD_LIMIT &&
           w->reason != MV_R_SHUTDOWN && mv_cg_oom_kills(&w->cg, &n) == 0 && n > 0;
}

/* Why the worker left, when nobody asked it to: the kernel's OOM killer, the fatal code, or
 * a crash. */
static void classify_exit(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;

    if (killed_by_oom(w)) {
        w->reason = MV_R_KERNEL_OOM;
        tl_mark(w, MV_TL_OOM, "kernel_oom");
        mv_warn(p->log, "kernel_oom", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_S("cgroup", w->cg.path), MV_I("limit", p->cfg->limits.memory_hard),
                MV_S("snapshot", w->last_snapshot));
    } else if (w->reason == MV_R_NONE) {
        w->reason = w->term_signal == 0 && w->exit_status == p->cfg->worker.fatal_exit ? MV_R_FATAL
                                                                                       : MV_R_CRASH;
    }
}

static void reap(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    mv_slot_t *s = mv__slot(w);
    bool failed;

    mv__disarm(w);
    classify_exit(w);
    /* One count per worker, by why it finally left (a soft-limit drain that ends in a kernel
     * OOM kill counts as kernel_oom). */
    if (w->reason != MV_R_SHUTDOWN)
        p->stats.recycles[w->reason]++;
    failed = is_failure(w, w->reason); /* before settling: it looks at the tasks in hand */
    if (failed && (w->reason == MV_R_SOFT_LIMIT || w->reason == MV_R_HARD_LIMIT ||
                   w->reason == MV_R_KERNEL_OOM))
        mv_warn(p->log, "premature_recycle", MV_I("worker", w->slot), MV_I("pid", w->pid),
                MV_S("reason", mv_reason_name(w->reason)),
                MV_S("msg", "stopped for memory before its first task: the limits may be too "
                            "low for this worker to start"));
    mv__settle_tasks(w);
    log_exit(w, failed);
    if (failed)
        count_failure(w);
    if (w->recycling) {
        w->recycling = false;
        p->recycling--;
    }
    if (s->active == w) {
        s->active = NULL;
        schedule_respawn(p, w->slot,
                         failed ? mv_policy_backoff(s->crashes, p->cfg->worker.backoff_min,
                                                    p->cfg->worker.backoff_max)
                                : 0);
    }
    mv_meter_close(&w->meter);
    w->meter_ok = false;
    if (w->notify_open) {
        /* Off epoll before its fd closes with the cgroup's files. */
        uv_poll_stop(&w->notify);
    }
    release_cgroup(w);
    mv__suspect_release(w);
    start_wanted(p);
    mv__close_handles(w);
    mv_pool_kick(p);
}

void mv__on_exit(mv_worker_t *w, int64_t status, int term_signal)
{
    w->exited = true; /* libuv reaped it: from here on its pid is not ours to signal */
    w->exit_status = status;
    w->term_signal = term_signal;
    /* Answers sent just before the exit are still in the pipes: count them first. */
    mv__chan_drain(w);
    mv__fsm(w, MV_EV_EXIT);
}

void mv__on_closed(mv_worker_t *w)
{
    mv_pool_t *p = w->pool;
    mv_worker_t **pp;

    for (pp = &p->workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    mv_buf_free(&w->rbuf);
    mv_buf_free(&w->wbuf);
    mv_buf_free(&w->wflight);
    mv_buf_free(&w->outline);
    free(w->inflight);
    free(w);
    maybe_stopped(p);
}

/* ---- public ---- */

static void grace_cb(uv_timer_t *t)
{
    mv_pool_t *p = t->data;
    int n = 0;

    /* Workers still finishing a task when the grace period ends get SIGTERM, then SIGKILL
     * after kill_timeout, like any worker that does not stop when asked. */
    for (mv_worker_t *w = p->workers; w; w = w->next)
        if (w->state == MV_W_DRAINING || w->state == MV_W_BUSY) {
            mv__fsm(w, MV_EV_FAULT);
            n++;
        }
    if (n)
        mv_warn(p->log, "grace_expired", MV_I("workers", n),
                MV_I("grace_ms", p->cfg->supervisor.grace_period), MV_S("action", "SIGTERM"));
}

int mv_pool_start(mv_pool_t *p)
{
    int r;

    /* The pool's own handles first, so that stopping after any failure below is safe. */
    uv_timer_init(p->loop, &p->grace);
    p->grace.data = p;
    uv_timer_init(p->loop, &p->spacer);
    p->spacer.data = p;
    p->open_handles += 2;
    r = mv__dispatch_init(p);
    if (r < 0)
        return r;
    p->slots = calloc((size_t)p->cfg->supervisor.workers, sizeof *p->slots);
    if (!p->slots)
        return -ENOMEM;
    p->nslots = p->cfg->supervisor.workers;
    for (int i = 0; i < p->nslots; i++)
        p->slots[i].pool = p;
    p->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    p->accepting = true;
    for (int i = 1; i <= p->nslots && !p->fatal; i++)
        spawn_slot(p, i);
    return p->fatal ? -ECHILD : 0;
}

void mv_pool_kick(mv_pool_t *p)
{
    p->dispatch_pending = true;
}

void mv_pool_stop(mv_pool_t *p, bool graceful)
{
    mv_worker_t *w, *next;

    p->accepting = false;
    if (!p->stopping) {
        p->stopping = true;
        for (int i = 0; i < p->nslots; i++)
            if (p->slots[i].backoff_armed) {
                p->slots[i].backoff_armed = false;
                uv_timer_stop(&p->slots[i].backoff);
            }
        if (graceful)
            uv_timer_start(&p->grace, grace_cb, (uint64_t)p->cfg->supervisor.grace_period, 0);
    }
    for (w = p->workers; w; w = next) {
        next = w->next;
        if (w->state == MV_W_DEAD)
            continue;
        if (graceful)
            mv__recycle(w, MV_R_SHUTDOWN);
        else
            mv__kill(w, MV_R_SHUTDOWN);
    }
    maybe_stopped(p);
}

int mv_pool_live(const mv_pool_t *p)
{
    int n = 0;

    for (const mv_worker_t *w = p->workers; w; w = w->next)
        n += mv_fsm_takes_tasks(w->state) && w->reason == MV_R_NONE;
    return n;
}

int mv_pool_recycle(mv_pool_t *p, int slot, mv_reason_t reason, int *slots)
{
    int n = 0;

    if (slot < 0 || slot > p->nslots)
        return -EINVAL;
    for (mv_worker_t *w = p->workers; w; w = w->next)
        if ((slot == 0 || w->slot == slot) && mv__slot(w)->active == w && w->reason == MV_R_NONE &&
            w->state != MV_W_DEAD) {
            if (slots)
                slots[n] = w->slot;
            n++;
            mv__recycle(w, reason);
        }
    return n;
}

void mv_pool_free(mv_pool_t *p)
{
    free(p->slots);
    p->slots = NULL;
}
