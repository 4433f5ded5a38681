/*
 * worker: one worker process (see worker.h).
 *
 * File descriptors of a worker:
 *   api    0 /dev/null, 1+2 output pipe (to the log), then the socketpair (MEMVISOR_FD)
 *   lines  0 task pipe, 1 result pipe, 2 output pipe (to the log)
 *   none   0 /dev/null, 1+2 output pipe (to the log)
 * With [service] listen sockets, those come first from fd 3 (systemd's LISTEN_FDS
 * convention), so MEMVISOR_FD is 3 + their number.
 */
#include "worker_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memvisor/protocol.h>

#include "cgasync.h"

/* How often a sampled worker's /proc/PID/cgroup is read to see it still in its cgroup. */
#define PLACEMENT_CHECK_MS 1000

/* ---- handles ---- */

static void part_closed(mv_worker_t *w)
{
    if (--w->open == 0)
        w->ev->on_closed(w);
}

void mv_worker_part_closed(mv_worker_t *w)
{
    part_closed(w);
}

static void handle_closed_cb(uv_handle_t *h)
{
    part_closed(h->data);
}

static void chan_closed(void *owner)
{
    part_closed(owner);
}

static void proc_closed(void *owner)
{
    part_closed(owner);
}

void mv_worker_close(mv_worker_t *w)
{
    if (w->closing)
        return;
    w->closing = true;
    if (w->gate.state != MV_GATE_OUT) /* dropped on its way to the gate, or waiting there */
        mv_startgate_leave(w->o.gate, &w->gate);
    if (w->cg_job) { /* dropped while its cgroup was being made: the job removes it */
        mv_job_detach(w->cg_job);
        w->cg_job = NULL;
    }
    mv_chan_close(&w->chan);
    mv_proc_close(&w->proc);
    mv_waitprobe_close(&w->probe);
    w->probe_ok = false;
    uv_close((uv_handle_t *)&w->look, handle_closed_cb);
    mv_wlook_close(w);
    if (w->notify_open) {
        w->notify_open = false;
        uv_close((uv_handle_t *)&w->notify, handle_closed_cb);
    }
    uv_close((uv_handle_t *)&w->timer, handle_closed_cb);
}

void mv_worker_free(mv_worker_t *w)
{
    if (!w)
        return;
    mv_heapwin_end(&w->heap);
    free(w->inflight);
    mv_buf_free(&w->held.payload);
    free(w);
}

/* ---- in flight ---- */

mv_task_t *mv_worker_current(const mv_worker_t *w)
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

static void reverse(mv_task_t **a, unsigned from, unsigned to)
{
    while (from + 1 < to) {
        mv_task_t *t = a[from];
        a[from++] = a[--to];
        a[to] = t;
    }
}

/* Puts the ring in order from index 0 (rotating the whole ring left by `head`), so the owner
 * gets one array. */
static void linearize(mv_worker_t *w)
{
    reverse(w->inflight, 0, w->head);
    reverse(w->inflight, w->head, w->cap);
    reverse(w->inflight, 0, w->cap);
    w->head = 0;
}

static mv_take_facts_t take_facts(const mv_worker_t *w)
{
    const mv_config_t *cfg = w->o.cfg;

    return (mv_take_facts_t){
        .serving = mv_fsm_takes_tasks(w->state),
        .leaving = mv_worker_leaving(w),
        .broken = w->chan.broken,
        .no_tasks = cfg->worker.protocol == MV_PROTO_NONE || w->o.service,
        .in_flight = w->count,
        .prefetch = w->one_at_a_time ? 1 : w->cap,
        .tasks_done = w->tasks_done,
        .max_tasks = w->lim.max_tasks,
        .enforce = cfg->limits.enforce,
    };
}

bool mv_worker_takes_tasks(const mv_worker_t *w)
{
    mv_take_facts_t f = take_facts(w);

    return mv_policy_takes_tasks(&f);
}

/* ---- memory ---- */

/* Its cgroup no longer holds it: removed under it (its files read ENODEV) or it was moved
 * out (the cgroup left in place, its figures stop growing). The last reading would stand for
 * every later task (retained 0, limits never reached, as the 6.12 guest showed) and the
 * kernel's limits no longer hold it. From now on its figures are its process's own and its
 * limits, the hard one too, are checked on samples; the task in hand, begun on the cgroup's
 * figures, gets none (a cgroup "before" and a /proc "after" are two different measures). */
static void cgroup_lost(mv_worker_t *w, const char *why)
{
    char msg[160];

    snprintf(msg, sizeof msg,
             "%s: its memory is now read from /proc and its limits are enforced by sampling", why);
    mv_warn(w->o.log, "cgroup_lost", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_S("cgroup", w->cg.path ? w->cg.path : "?"), MV_S("msg", msg));
    w->mem.meter.cg = NULL;
    w->win.measured = false;
}

/* A reading taken at or after `since_ns` (uv_hrtime): the last one when it is that recent,
 * else a new one. NULL when it cannot be read (never could, or gone before any reading). */
static const mv_reading_t *read_since(mv_worker_t *w, uint64_t since_ns)
{
    mv_wmem_t *m = &w->mem;
    mv_reading_t r;
    int rc;

    if (!m->meter_ok)
        return NULL;
    if (m->have && m->taken_ns >= since_ns)
        return &m->last;
    rc = mv_meter_read(&m->meter, &r);
    if (rc == -ENODEV && m->meter.cg) {
        cgroup_lost(w, "its cgroup was removed under it");
        rc = mv_meter_read(&m->meter, &r);
    }
    if (rc < 0)
        return m->have ? &m->last : NULL; /* gone: its last reading stands */
    if (r.priv < 0 && m->have) {
        /* The process is gone, its cgroup not: fresh usage and peak, its last own figures. */
        r.priv = m->last.priv;
        r.rss = m->last.rss;
        r.fds = m->last.fds;
    }
    m->last = r;
    m->taken_ns = uv_hrtime();
    m->seq++;
    m->have = true;
    m->peak = MV_MAX(m->peak, MV_MAX(r.usage, r.peak));
    if (w->count)
        w->win.peak_seen = MV_MAX(w->win.peak_seen, r.usage);
    if (w->o.timeline)
        mv_timeline_point(w->o.timeline,
                          &(mv_tl_point_t){w->slot, w->gen, r.usage, r.priv, r.rss, -1,
                                           w->count ? mv_worker_current(w)->id : 0});
    return &m->last;
}

const mv_reading_t *mv_worker_read(mv_worker_t *w, bool fresh)
{
    return read_since(w, fresh ? UINT64_MAX : 0);
}

bool mv_worker_kernel_limits(const mv_worker_t *w)
{
    return w->has_cg && (!w->mem.meter_ok || w->mem.meter.cg);
}

void mv_worker_check_placement(mv_worker_t *w)
{
    uint64_t now = mv_now_ms();

    /* Not before it serves: a worker forked by a template enters its cgroup on its own,
     * before its HELLO. */
    if (!w->has_cg || !w->mem.meter_ok || !w->mem.meter.cg || w->proc.pid <= 0 ||
        !mv_fsm_takes_tasks(w->state) || now - w->mem.placed_ms < PLACEMENT_CHECK_MS)
        return;
    w->mem.placed_ms = now;
    /* A process on its way out may have left its cgroup already (v1 moves an exiting task
     * to the root): that is its exit, not a move. */
    if (mv_cg_holds(&w->cg, w->proc.pid) == 0 && !mv_proc_dying(w->proc.pid))
        cgroup_lost(w, "it was moved out of its cgroup");
}

/* A reading for the task accounting taken at or after since_ns, or NULL when [tasks]
 * accounting is off. */
static const mv_reading_t *task_reading(mv_worker_t *w, uint64_t since_ns)
{
    return w->o.cfg->tasks.accounting ? read_since(w, since_ns) : NULL;
}

/* ---- deadlines ---- */

static void deadline_cb(uv_timer_t *t)
{
    mv_worker_t *w = t->data;
    mv_deadline_t what = w->armed;

    w->armed = MV_DL_NONE;
    if (what == MV_DL_READY && w->o.cfg->worker.protocol != MV_PROTO_API) {
        /* Not seen reading its stdin or waiting yet: long start-ups are no failure of a
         * lines or none worker (it never promised a HELLO). */
        mv_wlook_assume_ready(w, "not seen waiting for its first task within ready_timeout");
        return;
    }
    if (what == MV_DL_KILL) {
        mv_warn(w->o.log, "kill_timeout", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                MV_I("after_ms", w->o.cfg->worker.kill_timeout), MV_S("action", "SIGKILL"));
        mv_worker_step(w, MV_EV_TIMEOUT);
    } else if (what != MV_DL_NONE) {
        w->ev->on_deadline(w, what);
    }
}

static void arm(mv_worker_t *w, mv_deadline_t what, int64_t ms)
{
    w->armed = what;
    uv_timer_start(&w->timer, deadline_cb, (uint64_t)(ms > 0 ? ms : 0), 0);
}

static void disarm(mv_worker_t *w)
{
    w->armed = MV_DL_NONE;
    uv_timer_stop(&w->timer);
}

/* The deadline of the state just entered: armed when it differs from what runs. A task
 * deadline is armed per task (open_window), not by a state. */
static void arm_state(mv_worker_t *w)
{
    const mv_config_t *cfg = w->o.cfg;
    mv_deadline_t d = mv_fsm_deadline(w->state);

    if (d == w->armed || (d == MV_DL_TASK && w->armed == MV_DL_NONE))
        return;
    if (d == MV_DL_READY)
        arm(w, d, cfg->worker.ready_timeout);
    else if (d == MV_DL_KILL)
        arm(w, d, cfg->worker.kill_timeout);
    else if (d == MV_DL_NONE)
        disarm(w);
}

/* The task at the head becomes the one being worked on, from start_ns on (its send, or the
 * previous answer when it was sent ahead): its "before" (r, the worker's last reading) and a
 * new kernel peak window, reset right after that reading (once per reading: with prefetch,
 * tasks whose answers came together share one). */
static void open_window(mv_worker_t *w, const mv_reading_t *r, uint64_t start_ns)
{
    w->win.started_ns = start_ns;
    w->win.measured = r != NULL && !w->first_unmeasured;
    w->first_unmeasured = false;
    if (r)
        mv_heapwin_open(&w->heap); /* the heap's "before", next to the kernel's */
    if (r) {
        w->win.before = *r;
        w->win.before_seq = r == &w->mem.last ? w->mem.seq : 0;
        w->win.peak_seen = r->usage;
        if (w->mem.reset_seq != w->mem.seq) {
            if (w->has_cg)
                mv_cg_reset_peak(&w->cg);
            w->win.hwm_reset = mv_meter_reset_hwm(&w->mem.meter) == 0;
            w->mem.reset_seq = w->mem.seq;
        }
    }
}

/* The task's mem_peak (docs/run-files.md): the kernel's peak of the window when the cgroup
 * has one; else the highest of the usage seen during it and the usage it began at plus how
 * far the process's resident high-water mark rose above its resident size then. Read before
 * the next window resets them. */
static int64_t window_peak(mv_worker_t *w, const mv_reading_t *after, const char **source)
{
    const mv_reading_t *before = &w->win.before;
    int64_t peak = MV_MAX(w->win.peak_seen, after->usage), hwm;

    if (after->peak >= 0) {
        *source = "kernel";
        return after->peak;
    }
    *source = "sampled";
    /* Answers that came together share one reading, and the mark is reset after the first
     * of them: the others take what it said then (the group's peak, as the kernel's). */
    if (w->mem.hwm_seq != w->mem.seq) {
        w->mem.hwm = mv_meter_hwm(&w->mem.meter);
        w->mem.hwm_seq = w->mem.seq;
    }
    hwm = w->mem.hwm;
    if (w->win.measured && w->win.hwm_reset && before->rss > 0 && hwm >= before->rss) {
        *source = "process";
        peak = MV_MAX(peak, before->usage + (hwm - before->rss));
    }
    return peak;
}

/* An answer's figures: its "after" (a reading taken at or after since_ns), then its "before"
 * (a copy of the window's) when the window was measured, and its peak. The reading comes
 * first: a cgroup it finds lost leaves the window unmeasured. */
static void answer_figures(mv_worker_t *w, mv_answer_t *a, const mv_reading_t *before,
                           uint64_t since_ns)
{
    a->after = task_reading(w, since_ns);
    a->before = a->after && w->win.measured ? before : NULL;
    if (a->after)
        a->peak = window_peak(w, a->after, &a->peak_source);
}

/* The task deadline of the task just begun, in a state that has one. */
static void arm_task(mv_worker_t *w)
{
    int64_t timeout = w->o.cfg->limits.task_timeout;

    if (timeout > 0 && mv_fsm_deadline(w->state) == MV_DL_TASK)
        arm(w, MV_DL_TASK, timeout);
}

/* Nothing is in flight any more: no task deadline. */
static void idle(mv_worker_t *w)
{
    if (w->armed == MV_DL_TASK)
        disarm(w);
    mv_worker_step(w, MV_EV_IDLE);
}

/* ---- the table's actions ---- */

void mv_worker_signal(mv_worker_t *w, int sig)
{
    int r = mv_proc_signal(&w->proc, sig);

    if (r < 0 && r != -ESRCH)
        mv_error(w->o.log, "signal_failed", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_I("signal", sig), MV_S("error", uv_strerror(r)));
}

static void reap(mv_worker_t *w);
static void release_cgroup(mv_worker_t *w);

static void act(mv_worker_t *w, mv_action_t a, mv_wevent_t ev)
{
    switch (a) {
    case MV_ACT_NONE: break;
    case MV_ACT_DRAIN: mv_chan_send_stop(&w->chan); break;
    case MV_ACT_STOP:
        if (w->o.cfg->worker.protocol == MV_PROTO_API) {
            mv_chan_send_stop(&w->chan);
        } else {
            mv_chan_close_input(&w->chan);
            mv_worker_signal(w, SIGTERM);
        }
        break;
    case MV_ACT_TERM: mv_worker_signal(w, SIGTERM); break;
    case MV_ACT_FREEZE: mv_worker_signal(w, SIGSTOP); break;
    case MV_ACT_KILL: mv_worker_signal(w, SIGKILL); break;
    case MV_ACT_REAP: reap(w); break;
    case MV_ACT_DISCARD: /* its cgroup may be made already (a template's fork was pending) */
        release_cgroup(w);
        mv_worker_close(w);
        break;
    case MV_ACT_IMPOSSIBLE:
        mv_error(w->o.log, "cant_happen", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_S("state", mv_wstate_name(w->state)), MV_S("fsm_event", mv_wevent_name(ev)));
        break;
    }
}

/* The only place a worker's state changes. */
void mv_worker_step(mv_worker_t *w, mv_wevent_t ev)
{
    mv_transition_t t = mv_fsm_step(w->state, ev);

    if (t.action != MV_ACT_IMPOSSIBLE && t.next != w->state) {
        w->state = t.next;
        arm_state(w);
        /* Started (ready, or gone or stopped on the way): its place at the gate is free. */
        if ((w->gate.state == MV_GATE_IN && w->state != MV_W_SPAWNING) ||
            (w->gate.state == MV_GATE_COMING && w->state != MV_W_PREPARING))
            mv_startgate_leave(w->o.gate, &w->gate);
    }
    act(w, t.action, ev);
    /* Draining with nothing in hand is idle at once. */
    if (w->state == MV_W_DRAINING && w->count == 0)
        mv_worker_step(w, MV_EV_IDLE);
}

/* ---- commands ---- */

void mv_worker_drain(mv_worker_t *w, mv_reason_t reason)
{
    /* Brand new: nothing to recycle. Only a shutdown drops it. */
    if (w->state == MV_W_PREPARING && reason != MV_R_SHUTDOWN)
        return;
    if (w->reason == MV_R_NONE || reason == MV_R_SHUTDOWN)
        w->reason = reason;
    mv_worker_step(w, MV_EV_DRAIN);
}

void mv_worker_handover(mv_worker_t *w, mv_reason_t reason)
{
    if (w->reason == MV_R_NONE)
        w->reason = reason;
    mv_worker_step(w, MV_EV_HANDOVER);
}

int mv_worker_cap(mv_worker_t *w, int64_t bytes)
{
    return w->has_cg ? mv_cg_cap(&w->cg, bytes) : -ENODEV;
}

void mv_worker_replaced(mv_worker_t *w)
{
    mv_worker_step(w, MV_EV_REPLACED);
}

void mv_worker_fault(mv_worker_t *w, mv_reason_t reason)
{
    if (w->reason != MV_R_SHUTDOWN) /* shutting down already: it stays a shutdown */
        w->reason = reason;
    mv_worker_step(w, MV_EV_FAULT);
}

void mv_worker_freeze(mv_worker_t *w, mv_reason_t reason)
{
    w->reason = reason;
    mv_worker_step(w, MV_EV_FREEZE);
}

void mv_worker_kill(mv_worker_t *w, mv_reason_t reason)
{
    w->reason = reason;
    mv_worker_step(w, MV_EV_KILL);
}

void mv_worker_measure_exactly(mv_worker_t *w, bool on)
{
    w->chan.collect = on;
    w->one_at_a_time = on;
}

int mv_worker_ask_snapshot(mv_worker_t *w)
{
    return mv_chan_ask_snapshot(&w->chan);
}

void mv_worker_send_task(mv_worker_t *w, mv_task_t *t)
{
    push_task(w, t);
    if (w->count == 1)
        open_window(w, task_reading(w, w->idle_ns), uv_hrtime());
    mv_chan_send_task(&w->chan, t->id, t->data, t->len);
    mv_worker_step(w, MV_EV_DISPATCH);
    if (w->count == 1)
        arm_task(w);
    if (w->ev->on_last_task) {
        mv_take_facts_t f = take_facts(w);
        if (mv_policy_last_task(&f))
            w->ev->on_last_task(w);
    }
}

/* After a dispatch pass: what it was given is written, then (gather.h) reading its answers
 * may pause, now that the pass has refilled it. */
void mv_worker_flush(mv_worker_t *w)
{
    uint64_t ms;

    mv_chan_flush(&w->chan);
    ms = mv_gather_pause(&w->gather, w->count);
    if (ms > 0)
        mv_chan_pause(&w->chan, ms);
}

/* ---- what the channel says ---- */

/* It has started: what it holds now is its start-up memory, and the reading stands as its
 * first task's "before". */
void mv_worker_became_ready(mv_worker_t *w)
{
    const mv_reading_t *r;

    w->ready_ms = mv_now_ms();
    w->startup_ms = (int64_t)(w->ready_ms - w->spawned_ms);
    w->ready = true;
    w->idle_ns = uv_hrtime();
    r = read_since(w, w->idle_ns);
    w->startup = r ? mv_reading_limit_metric(r, w->o.cfg->limits.metric) : -1;
    mv_worker_step(w, MV_EV_READY);
    mv_info(w->o.log, "ready", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_I("ms", (long long)w->startup_ms), MV_I("startup_mem", w->startup));
    w->ev->on_ready(w);
}

/* Whether a worker should send its own heap figures with each answer, or each request's
 * BEGIN and END (v2): only when they are used (accounting and detection on) and nothing
 * better counts (no preload page). */
static bool wants_heap_reports(const mv_worker_t *w, uint32_t version)
{
    return version >= 2 && !w->heap.hm.page && w->o.cfg->tasks.accounting && w->o.cfg->leak.detect;
}

/* Queues GO, in the version the worker's HELLO said, with its slot (and whether to send heap
 * figures). */
static void queue_go(mv_worker_t *w)
{
    struct mvw_go go = {w->chan.version, (uint32_t)w->slot, w->cap,
                        w->o.service ? MVW_MODE_SERVICE : MVW_MODE_BATCH};

    if (wants_heap_reports(w, w->chan.version)) {
        go.mode |= MVW_GO_HEAP;
        /* A big answer's figures at its end, measured once its result is freed, for a
         * worker that said it can (docs/protocols.md, "Big answers"); a service has no
         * answers. */
        w->chan.heap_late = !w->o.service && (w->chan.hello_flags & MVW_HELLO_HEAP_LATE) != 0;
        if (w->chan.heap_late)
            go.mode |= MVW_GO_HEAP_LATE;
    }
    mv_chan_send(&w->chan, MVW_MSG_GO, 0, &go, sizeof go);
}

void mv_worker_queue_go(mv_worker_t *w)
{
    queue_go(w);
}

static void chan_hello(void *owner, uint32_t version)
{
    mv_worker_t *w = owner;
    char what[96];

    if (version < MVW_PROTOCOL_MIN || version > MVW_PROTOCOL_VERSION) {
        snprintf(what, sizeof what, "worker speaks protocol %" PRIu32 ", memvisor speaks %u to %u",
                 version, MVW_PROTOCOL_MIN, MVW_PROTOCOL_VERSION);
        return mv_chan_fail(&w->chan, what);
    }
    if (w->state != MV_W_SPAWNING)
        return; /* asked to stop before it was ready: it gets STOP, not GO */
    /* A spare (slot 0) or a successor hears GO, with its slot, when it takes one
     * (mv_worker_adopt). */
    if (w->slot > 0 && !w->hold_go)
        queue_go(w);
    mv_worker_became_ready(w);
    /* Ready, it is attached to the dispatcher, whose pass at the end of this loop iteration
     * writes GO and the first task together: the worker reads both at once instead of
     * sleeping between them (a wake-up and a write less per worker; with `max_tasks = 1`
     * that is per task). Anyone else's worker, or one that left meanwhile, gets GO now (a
     * STOP or a snapshot request flushes what is queued before it too). */
    if (!w->flush_at_dispatch || mv_worker_leaving(w))
        mv_chan_flush(&w->chan);
}

/* The task being worked on is answered; `since_ns`: when the answer was complete, so that no
 * reading from before then stands as its "after". */
void mv_worker_answered(mv_worker_t *w, bool ok, const uint8_t *kind, size_t kind_len,
                        const void *payload, size_t n, uint64_t since_ns)
{
    mv_task_t *t = pop_task(w);
    mv_reading_t before = w->win.before;
    uint64_t before_seq = w->win.before_seq;
    bool own_heap = w->o.cfg->worker.protocol == MV_PROTO_API && w->chan.heap_fresh > 0;
    mv_heap_task_t heap;
    mv_answer_t a = {t,
                     ok,
                     kind,
                     kind_len,
                     payload,
                     n,
                     NULL,
                     NULL,
                     0,
                     NULL,
                     (double)(since_ns - MV_MIN(since_ns, w->win.started_ns)) / 1e6,
                     NULL,
                     false};

    answer_figures(w, &a, &before, since_ns);
    /* The heap's "after" next to the kernel's; an api worker's own figures came with it. */
    mv_heapwin_close(&w->heap, own_heap ? &w->chan.heap : NULL, &heap);
    a.heap = a.before ? &heap : NULL;
    a.shared = a.before && before_seq != 0 && before_seq == w->mem.seq && !own_heap;
    w->tasks_done++;
    if (w->count > 0) {
        open_window(w, a.after, since_ns);
        arm_task(w);
    } else {
        w->idle_ns = since_ns;
        idle(w);
    }
    w->ev->on_answer(w, &a);
}

static void chan_answer(void *owner, uint64_t id, bool ok, const uint8_t *kind, size_t kind_len,
                        const void *payload, size_t n)
{
    mv_worker_t *w = owner;
    mv_task_t *t = mv_worker_current(w);
    char what[96];

    if (!t && w->o.cfg->worker.protocol == MV_PROTO_API) {
        /* Not a line on stdout: an answered task answered again (by a process forked from the
         * worker, which shares its channel), or a DONE made up. */
        snprintf(what, sizeof what, "answer for task %" PRIu64 " while it had no task", id);
        return mv_chan_fail(&w->chan, what);
    }
    if (!t)
        return mv_wlook_stray(w, "while it had no task");
    if (w->o.cfg->worker.protocol == MV_PROTO_API) {
        if (id != t->id) {
            snprintf(what, sizeof what, "answer for task %" PRIu64 ", expected %" PRIu64, id,
                     t->id);
            return mv_chan_fail(&w->chan, what);
        }
        return mv_worker_answered(w, ok, kind, kind_len, payload, n, w->chan.rx_ns);
    }
    /* lines: in lock-step, one line per task is checked (with prefetch it cannot be). */
    if (w->cap > 1 || !w->probe_ok)
        return mv_worker_answered(w, ok, kind, kind_len, payload, n, w->chan.rx_ns);
    if (w->held.held)
        return mv_wlook_stray(w, "twice for one task");
    if (mv_chan_input_pending(&w->chan) > 0)
        return mv_wlook_stray(w, "before it read its task");
    mv_wlook_hold(w, ok, payload, n);
}

static void chan_begin(void *owner, uint64_t id, const uint8_t *kind, size_t kind_len)
{
    mv_worker_t *w = owner;
    mv_task_t *t;
    char what[96];

    if (w->count > 0) {
        snprintf(what, sizeof what, "BEGIN %" PRIu64 " while request %" PRIu64 " is open", id,
                 mv_worker_current(w)->id);
        return mv_chan_fail(&w->chan, what);
    }
    /* The task's bytes are its kind: a request has no payload memvisor knows. */
    t = mv_task_new(id, kind, kind_len);
    if (!t) {
        w->untracked = true;
        return w->ev->on_begin(w, NULL);
    }
    push_task(w, t);
    /* Its "before" is the reading at the previous END: a worker sends BEGIN and END after
     * the work is done as far as memvisor can tell (they often arrive in one read), so a
     * reading taken now would already hold the request's memory. */
    open_window(w, w->have_end ? &w->end_reading : task_reading(w, w->idle_ns), uv_hrtime());
    if (w->have_end)
        mv_heapwin_since_close(&w->heap); /* the same for the heap */
    /* Without a page, the worker's own figures as it began (when GO asked for them). */
    mv_heapwin_begin(&w->heap, w->chan.heap_fresh > 0 ? &w->chan.heap : NULL);
    mv_worker_step(w, MV_EV_DISPATCH);
    arm_task(w);
    w->ev->on_begin(w, t);
}

static void chan_end(void *owner, uint64_t id, uint32_t status)
{
    mv_worker_t *w = owner;
    mv_task_t *t = mv_worker_current(w);
    mv_heap_task_t heap;
    mv_reading_t before;
    mv_answer_t a;
    char what[96];

    if (!t && w->untracked) {
        w->untracked = false;
        return;
    }
    if (!t || t->id != id) {
        snprintf(what, sizeof what, "END %" PRIu64 " with %s", id,
                 t ? "another request open" : "no request open");
        return mv_chan_fail(&w->chan, what);
    }
    pop_task(w);
    snprintf(what, sizeof what, "status %" PRIu32, status);
    before = w->win.before;
    a = (mv_answer_t){t,
                      status == 0,
                      (const uint8_t *)t->data,
                      t->len,
                      status == 0 ? "" : what,
                      status == 0 ? 0 : strlen(what),
                      NULL,
                      NULL,
                      0,
                      NULL,
                      (double)(uv_hrtime() - w->win.started_ns) / 1e6,
                      NULL,
                      false};
    answer_figures(w, &a, &before, w->chan.rx_ns);
    if (a.after) {
        w->end_reading = *a.after;
        w->have_end = true;
    }
    mv_heapwin_close(&w->heap, w->chan.heap_fresh > 0 ? &w->chan.heap : NULL, &heap);
    a.heap = a.before ? &heap : NULL;
    w->tasks_done++;
    idle(w);
    w->ev->on_end(w, &a);
}

static void chan_snapshot(void *owner, const uint8_t *payload, size_t n)
{
    mv_worker_t *w = owner;

    w->ev->on_snapshot(w, payload, n);
}

static void chan_output(void *owner, const char *stream, const void *line, size_t n)
{
    mv_worker_t *w = owner;

    mv_info(w->o.log, "output", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_S("stream", stream), MV_B("line", line, n));
}

static void chan_error(void *owner, const char *what)
{
    mv_worker_t *w = owner;

    w->ev->on_error(w, what);
}

static void chan_eof(void *owner)
{
    mv_worker_t *w = owner;

    mv_wlook_release(w, uv_hrtime()); /* nothing more can come for the held answer */
    /* Its exit normally follows at once: STOPPING gives it kill_timeout to do so. */
    mv_worker_step(w, MV_EV_CHAN_EOF);
}

/* A read's answers are handled. With prefetch, a batch worker ([worker] gather) learns how
 * fast it answers, and the dispatch pass that follows may pause reading it (gather.h). Not in
 * lock-step (a lines answer there waits for the worker to be back on its stdin), nor in
 * service mode (requests are the worker's, not handed out ahead). */
static void chan_read(void *owner)
{
    mv_worker_t *w = owner;

    if (w->cap > 1 && !w->o.service && w->o.cfg->worker.gather)
        mv_gather_read(&w->gather, w->chan.rx_ns, (uint64_t)w->tasks_done, w->count);
}

static const mv_chan_events_t chan_events = {
    .on_hello = chan_hello,
    .on_answer = chan_answer,
    .on_begin = chan_begin,
    .on_end = chan_end,
    .on_snapshot = chan_snapshot,
    .on_output = chan_output,
    .on_error = chan_error,
    .on_eof = chan_eof,
    .on_closed = chan_closed,
    .on_read = chan_read,
};

/* ---- exit ---- */

static void proc_exit(void *owner, int64_t status, int term_signal)
{
    mv_worker_t *w = owner;

    /* Answers sent just before the exit are still in the pipes: count them first. A lines
     * answer held for the worker to be back on its stdin stands: nothing more can come. */
    mv_chan_drain(&w->chan);
    mv_wlook_release(w, uv_hrtime());
    mv_worker_step(w, MV_EV_EXIT);
}

static const mv_proc_events_t proc_events = {proc_exit, proc_closed, mv_worker_proc_started,
                                             mv_worker_proc_failed};

/* Why it left (the kernel's OOM killer, the fatal code, a crash, or what it was asked for),
 * and whether that was its failure. */
static mv_exit_verdict_t classify(mv_worker_t *w)
{
    uint64_t n = 0;
    mv_start_facts_t s = {w->ready, w->startup, w->lim.soft_bytes, w->ready_serving};
    mv_exit_facts_t f = {
        .asked = w->reason,
        .term_signal = w->proc.term_signal,
        .exit_status = w->proc.status,
        .fatal_exit = w->o.cfg->worker.fatal_exit,
        .cgroup_oom = w->has_cg && mv_cg_oom_kills(&w->cg, &n) == 0 && n > 0,
        /* A forked worker's template said HELLO: its own death before it is a crash. */
        .no_hello = w->o.cfg->worker.protocol == MV_PROTO_API && !w->chan.hello && !w->proc.forked,
        .premature = mv_policy_premature(&s),
    };

    return mv_policy_exit(&f);
}

/* Lets go of its cgroup (it is reaped): kept by its slot for a later worker (cgahead.h),
 * or its files closed now and its directory removed in the thread pool. */
static void release_cgroup(mv_worker_t *w)
{
    if (w->notify_open) /* off epoll before its fd closes with the cgroup's files */
        uv_poll_stop(&w->notify);
    if (!w->has_cg)
        return;
    w->has_cg = false;
    if (!w->ahead || !mv_cgahead_keep(w->ahead, w->slot, &w->cg))
        mv_cg_remove_async(w->o.loop, w->o.log, &w->cg);
}

static void log_exit(mv_worker_t *w, bool failed)
{
    mv_log(w->o.log, failed ? MV_LVL_WARN : MV_LVL_INFO, "exit", MV_I("worker", w->slot),
           MV_I("gen", w->gen), MV_I("pid", w->proc.pid), MV_S("reason", mv_reason_name(w->reason)),
           w->proc.term_signal ? MV_S("signal", strsignal(w->proc.term_signal))
                               : MV_I("status", w->proc.status),
           MV_I("tasks", w->tasks_done), MV_I("peak", w->mem.peak),
           MV_I("age_ms", (long long)(mv_now_ms() - w->spawned_ms)),
           MV_I("startup_mem", w->ready ? w->startup : -1),
           MV_I("startup_ms", w->ready ? (long long)w->startup_ms : -1),
           MV_I("held", w->held.count), MV_I("held_looks", w->held.looks),
           MV_I("held_slow", w->held.slow));
    /* An api worker that failed without a HELLO (a crash at start, or one that does not speak
     * the protocol: exiting 0 ends the run with the same hint, pool.c). Its own output says
     * which more often than the protocol does: a Python worker that cannot import
     * memvisor_worker (not installed, run from the source tree) exits 1 with a traceback. */
    if (failed && w->reason != MV_R_NO_HELLO && w->o.cfg->worker.protocol == MV_PROTO_API &&
        !w->chan.hello && !w->proc.forked)
        mv_warn(w->o.log, "no_hello", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                w->proc.term_signal ? MV_S("signal", strsignal(w->proc.term_signal))
                                    : MV_I("status", w->proc.status),
                MV_S("msg", "it failed before saying HELLO: its output, if any (event=output, "
                            "above), says why; "
                            "a Python worker needs memvisor_worker importable (make install, or "
                            "PYTHONPATH=worker-api/python of the source tree); a worker that reads "
                            "tasks from stdin and writes one result line per task to stdout needs "
                            "[worker] protocol = lines"));
}

/* Gone: the verdict and its tasks go up, then everything it had is let go. */
static void reap(mv_worker_t *w)
{
    /* The cgroup outlives its process: its kernel peak says how far the last task got. */
    const mv_reading_t *last = mv_worker_read(w, true);
    mv_gone_t g = {
        .clean_stop = w->chan.stop_sent && w->proc.term_signal == 0 && w->proc.status == 0,
        .status = w->proc.term_signal ? -w->proc.term_signal : (int)w->proc.status,
        .peak = last ? MV_MAX(last->peak, last->usage) : -1,
        .spawn_call = w->spawn_call,
        .spawn_error = w->spawn_call ? w->spawn_why : NULL,
        .hopeless = w->hopeless,
    };

    if (w->spawn_call)
        g.verdict = (mv_exit_verdict_t){MV_R_CRASH, !w->spawn_retry, false};
    else
        g.verdict = classify(w);
    disarm(w);
    w->reason = g.verdict.reason;
    linearize(w);
    g.tasks = w->inflight;
    g.ntasks = w->count;
    w->ev->on_gone(w, &g);
    w->count = 0;
    if (!w->spawn_call)
        log_exit(w, g.verdict.failure);
    if (w->o.timeline)
        mv_timeline_mark(w->o.timeline,
                         &(mv_tl_mark_t){w->slot, w->gen, MV_TL_EXIT, mv_reason_name(w->reason),
                                         w->proc.pid, -1, -1, 0});
    mv_meter_close(&w->mem.meter);
    w->mem.meter_ok = false;
    mv_heapwin_end(&w->heap);
    release_cgroup(w);
    mv_worker_close(w);
}

mv_worker_t *mv_worker_new(const mv_worker_opts_t *o, int slot, uint32_t gen,
                           const mv_wlimits_t *lim, const mv_worker_events_t *ev, void *data)
{
    mv_worker_t *w = calloc(1, sizeof *w);

    if (w)
        w->inflight = calloc((size_t)o->cfg->worker.prefetch, sizeof *w->inflight);
    if (!w || !w->inflight) {
        free(w);
        return NULL;
    }
    w->o = *o;
    w->slot = slot;
    w->gen = gen;
    w->lim = *lim;
    w->ev = ev;
    w->data = data;
    w->state = MV_W_PREPARING;
    w->cap = (unsigned)o->cfg->worker.prefetch;
    w->created_ms = mv_now_ms();
    mv_meter_init(&w->mem.meter);
    w->cg.procs_fd = w->cg.notify_fd = -1;
    mv_heapwin_init(&w->heap);
    uv_timer_init(o->loop, &w->timer);
    w->timer.data = w;
    uv_timer_init(o->loop, &w->look);
    w->look.data = w;
    w->fine_fd = -1;
    mv_waitprobe_init(&w->probe);
    w->startup = -1;
    mv_chan_init(&w->chan, o->loop,
                 &(mv_chan_opts_t){o->cfg->worker.protocol, (uint32_t)o->cfg->worker.max_message,
                                   o->cfg->worker.fail_prefix, o->service},
                 &chan_events, w);
    mv_proc_init(&w->proc, &proc_events, w);
    w->open = 4; /* the two timers, the channel and the process (and `fine` once opened) */
    return w;
}
