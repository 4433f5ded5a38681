/*
 * suspect: task kinds, each worker's recent tasks, leak verdicts and the snapshots they
 * trigger (DESIGN §7). The detector is pure (leak.c), the kernel reads run in the thread
 * pool (snapshot.c); this file ties them to workers on the loop.
 *
 * A snapshot is written for the first suspect of a kind and when its estimate changes
 * materially (the detector's `report`), when a worker nears its hard limit (90%: the kernel
 * would kill it without warning), and before memvisor kills one for its hard limit (the
 * worker is stopped with SIGSTOP while it is read). For a leak suspect an `api` worker is
 * first asked for its own heap view; its answer (or [leak] snapshot_timeout) lets the
 * snapshot go ahead.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "pool.h"
#include "snapshot.h"

#define NEAR_HARD 0.9 /* share of the hard limit that makes a worker "near" it */

typedef struct mv_snapjob {
    uv_work_t job;
    uv_timer_t timer; /* the deadline of the worker's heap view */
    int refs;         /* the timer and the thread-pool job each hold one */
    bool queued;      /* the thread-pool job was started */
    mv_pool_t *pool;
    mv_worker_t *w; /* NULL once the worker is gone */
    int pid;
    char *cgroup; /* the worker's cgroup directory, or NULL */
    char *path;   /* the file to write */
    json_t *doc;
    json_t *baseline; /* a reference to the worker's baseline mappings, or NULL */
    int result;
    mv_reason_t kill; /* MV_R_NONE, or the reason of a kill waiting for this snapshot */
} mv_snapjob_t;

typedef struct mv_basejob {
    uv_work_t job;
    mv_worker_t *w; /* NULL once the worker is gone */
    int pid;
    json_t *mappings;
} mv_basejob_t;

/* ---- kinds ---- */

const char *mv__task_kind(const mv_config_t *cfg, const mv_task_t *t, const uint8_t *named,
                          size_t named_len, char out[MV_LEAK_KIND_MAX + 1])
{
    /* The worker's own name for it, else what [leak] kind makes of the line (kind.h). */
    if (named)
        return mv_kind_clean(named, named_len, out);
    return mv_task_kind(cfg, (const uint8_t *)t->data, t->len, out);
}

/* ---- history and baseline ---- */

static void remember(mv_worker_t *w, const mv_task_t *t, const char *kind, const mv_result_t *r)
{
    int cap = w->pool->cfg->leak.history;
    mv_taskrec_t *rec;

    if (cap <= 0)
        return;
    if (!w->history && !(w->history = calloc((size_t)cap, sizeof *w->history)))
        return;
    rec = &w->history[(w->hist_head + w->hist_n) % (unsigned)cap];
    if (w->hist_n < (unsigned)cap)
        w->hist_n++;
    else
        w->hist_head = (w->hist_head + 1) % (unsigned)cap;
    *rec = (mv_taskrec_t){.id = t->id,
                          .mem_after = r->mem_after,
                          .retained = r->retained,
                          .mem_peak = r->mem_peak,
                          .fds_after = r->fds_after};
    snprintf(rec->kind, sizeof rec->kind, "%s", kind ? kind : "");
}

static json_t *history_json(const mv_worker_t *w)
{
    json_t *a = json_array();
    int cap = w->pool->cfg->leak.history;

    for (unsigned i = 0; i < w->hist_n; i++) {
        const mv_taskrec_t *r = &w->history[(w->hist_head + i) % (unsigned)cap];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:I, s:I, s:I, s:i}", "id", (json_int_t)r->id, "kind", r->kind,
                         "mem_after", (json_int_t)r->mem_after, "retained", (json_int_t)r->retained,
                         "mem_peak", (json_int_t)r->mem_peak, "fds_after", r->fds_after));
    }
    return a;
}

static void base_cb(uv_work_t *req)
{
    mv_basejob_t *j = req->data;

    j->mappings = mv_snap_mappings(j->pid);
}

static void base_done_cb(uv_work_t *req, int status)
{
    mv_basejob_t *j = req->data;

    if (j->w) {
        j->w->baseline = j->mappings;
        j->w->basejob = NULL;
    } else {
        json_decref(j->mappings);
    }
    free(j);
}

/* The worker's mappings after its first task: what later snapshots compare with. */
static void take_baseline(mv_worker_t *w)
{
    mv_basejob_t *j = calloc(1, sizeof *j);

    if (!j)
        return;
    j->job.data = j;
    j->w = w;
    j->pid = w->pid;
    w->basejob = j;
    if (uv_queue_work(w->pool->loop, &j->job, base_cb, base_done_cb) < 0) {
        w->basejob = NULL;
        free(j);
    }
}

/* ---- snapshots ---- */

static void snap_cb(uv_work_t *req)
{
    mv_snapjob_t *s = req->data;
    char stamp[48];

    s->result = mv_snap_collect(s->doc, s->pid, s->cgroup, s->baseline);
    mv_iso_time(stamp);
    json_object_set_new(s->doc, "written", json_string(stamp));
    if (s->path && mv_json_write_atomic(s->path, s->doc) < 0)
        s->result = -EIO;
}

static void unref(mv_snapjob_t *s)
{
    if (--s->refs > 0)
        return;
    json_decref(s->doc);
    json_decref(s->baseline);
    free(s->cgroup);
    free(s->path);
    free(s);
}

static void timer_closed_cb(uv_handle_t *h)
{
    unref(h->data);
}

static void snap_done_cb(uv_work_t *req, int status)
{
    mv_snapjob_t *s = req->data;
    mv_worker_t *w = s->w;

    mv_info(s->pool->log, "snapshot", MV_S("path", s->path), MV_I("pid", s->pid),
            MV_S("reason", json_string_value(json_object_get(s->doc, "reason"))),
            MV_S("heap", json_string_value(json_object_get(s->doc, "heap_status"))),
            MV_S("result", s->result == 0        ? "ok"
                           : s->result == -ESRCH ? "gone"
                                                 : "failed"));
    if (w) {
        w->snap = NULL;
        free(w->last_snapshot);
        w->last_snapshot = s->path ? strdup(s->path) : NULL;
        if (s->kill != MV_R_NONE) {
            w->kill_snapshot_done = true;
            mv__kill(w, s->kill); /* it was stopped while it was read */
        }
    }
    unref(s);
}

/* Hands the snapshot to the thread pool (once the heap view came, or did not). */
static void go(mv_snapjob_t *s, const char *heap_status)
{
    if (s->queued)
        return;
    s->queued = true;
    json_object_set_new(s->doc, "heap_status", json_string(heap_status));
    if (!json_object_get(s->doc, "heap"))
        json_object_set_new(s->doc, "heap", json_null());
    if (s->refs > 0) /* the deadline timer: not needed any more */
        uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
    s->job.data = s;
    s->refs++;
    if (uv_queue_work(s->pool->loop, &s->job, snap_cb, snap_done_cb) < 0) {
        mv_warn(s->pool->log, "snapshot", MV_S("path", s->path), MV_S("result", "failed"));
        if (s->w)
            s->w->snap = NULL;
        unref(s);
    }
}

static void heap_timeout_cb(uv_timer_t *t)
{
    go(t->data, "timeout");
}

/* The loop's part of a snapshot document. */
static json_t *start_doc(mv_worker_t *w, const char *reason, const mv_leak_verdict_t *v,
                         const mv_task_t *t, const mv_result_t *r)
{
    json_t *doc = json_object(), *task = json_null();
    int b64;

    json_object_set_new(doc, "memvisor", json_string(MV_VERSION));
    json_object_set_new(doc, "reason", json_string(reason));
    json_object_set_new(doc, "suspect",
                        !v ? json_null()
                           : json_pack("{s:s?, s:f, s:f, s:f, s:i, s:s}", "kind", v->kind,
                                       "per_task", v->per_task, "fds_per_task", v->fds_per_task,
                                       "confidence", v->confidence, "tasks", v->tasks, "rule",
                                       mv_leak_rule_name(v->rule)));
    json_object_set_new(doc, "worker",
                        json_pack("{s:i, s:i, s:i, s:s?, s:I, s:I}", "slot", w->slot, "gen",
                                  (int)w->gen, "pid", w->pid, "cgroup",
                                  w->has_cg ? w->cg.path : NULL, "age_ms",
                                  (json_int_t)(mv_now_ms() - w->spawned_ms), "tasks_done",
                                  (json_int_t)w->tasks_done));
    if (t && r) {
        json_t *payload = mv_snap_excerpt(t->data, t->len, 256, &b64);
        task = json_pack("{s:I, s:s?, s:o, s:I, s:I, s:I, s:I, s:i, s:i, s:f}", "id",
                         (json_int_t)t->id, "kind", r->kind, b64 ? "payload_base64" : "payload",
                         payload, "mem_before", (json_int_t)r->mem_before, "mem_after",
                         (json_int_t)r->mem_after, "mem_peak", (json_int_t)r->mem_peak, "retained",
                         (json_int_t)r->retained, "fds_before", r->fds_before, "fds_after",
                         r->fds_after, "duration_ms", r->duration_ms);
    }
    json_object_set_new(doc, "task", task ? task : json_null());
    json_object_set_new(doc, "history", history_json(w));
    return doc;
}

/* Starts a snapshot of `w`; asks an api worker for its heap view when `ask_heap`. Returns
 * the path it will be written to (owned by the job), or NULL when none can be made. */
static const char *snapshot(mv_worker_t *w, const char *reason, const char *kind,
                            const mv_leak_verdict_t *v, const mv_task_t *t, const mv_result_t *r,
                            bool ask_heap, mv_reason_t kill)
{
    mv_pool_t *p = w->pool;
    mv_snapjob_t *s;

    if (!p->run || !p->run->dir || w->snap || w->exited)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->pool = p;
    s->w = w;
    s->pid = w->pid;
    s->kill = kill;
    s->cgroup = w->has_cg && w->cg.path ? strdup(w->cg.path) : NULL;
    s->path = mv_rundir_snapshot_path(p->run, reason, kind, w->slot);
    s->doc = start_doc(w, reason, v, t, r);
    s->baseline = json_incref(w->baseline);
    w->snap = s; /* one snapshot of a worker at a time, until it is written */
    if (ask_heap && p->cfg->worker.protocol == MV_PROTO_API && w->hello && w->chan_open &&
        !w->broken && p->cfg->leak.snapshot_timeout > 0) {
        uv_timer_init(p->loop, &s->timer);
        s->timer.data = s;
        s->refs++;
        uv_timer_start(&s->timer, heap_timeout_cb, (uint64_t)p->cfg->leak.snapshot_timeout, 0);
        w->snap_asked++;
        mv__chan_send(w, MVW_MSG_SNAPSHOT, 0, NULL, 0);
        mv__chan_flush(w);
    } else {
        go(s, ask_heap ? "unsupported" : "skipped");
    }
    return s->path;
}

void mv__on_snapshot_reply(mv_worker_t *w, const uint8_t *p, size_t n)
{
    mv_snapjob_t *s = w->snap;
    json_error_t err;
    json_t *heap;
    int b64;

    if (!s || s->queued)
        return; /* a late answer, after the deadline: the snapshot went without it */
    heap = json_loadb((const char *)p, n, 0, &err);
    if (!json_is_object(heap)) {
        json_decref(heap);
        heap = json_pack("{s:s, s:o}", "error", "the worker's answer is not a JSON object",
                         "excerpt", mv_snap_excerpt(p, n, 256, &b64));
        json_object_set_new(s->doc, "heap", heap);
        go(s, "error");
        return;
    }
    json_object_set_new(s->doc, "heap", heap);
    go(s, "worker");
}

/* ---- what a finished task says ---- */

void mv__observe_task(mv_worker_t *w, const mv_task_t *t, const char *kind, const mv_result_t *res)
{
    mv_pool_t *p = w->pool;
    mv_leak_verdict_t v;
    mv_leak_obs_t o;
    const char *path;

    if (!p->leak || !res->measured)
        return;
    remember(w, t, kind, res);
    if (w->tasks_done == 0 && !w->baseline && !w->basejob)
        take_baseline(w);
    o = (mv_leak_obs_t){
        kind, res->retained,
        res->fds_before >= 0 && res->fds_after >= 0 ? res->fds_after - res->fds_before : INT32_MIN,
        w->tasks_done};
    v = mv_leak_observe(p->leak, &o);
    if (v.rule == MV_LEAK_NONE || !v.report)
        return;
    path = snapshot(w, "leak_suspect", v.kind, &v, t, res, true, MV_R_NONE);
    p->stats.suspects++;
    mv_warn(p->log, "leak_suspect", MV_S("kind", v.kind), MV_I("per_task", (long long)v.per_task),
            MV_D("fds_per_task", v.fds_per_task), MV_D("confidence", v.confidence),
            MV_I("tasks", v.tasks), MV_S("rule", mv_leak_rule_name(v.rule)),
            MV_I("worker", w->slot), MV_I("pid", w->pid), MV_I("task", (long long)t->id),
            MV_S("snapshot", path));
}

void mv__near_limit(mv_worker_t *w, const mv_reading_t *r)
{
    int64_t hard = w->lim.hard_bytes;

    if (!w->pool->leak || w->near_hard_done || hard <= 0 || !r ||
        (double)r->usage < NEAR_HARD * (double)hard)
        return;
    /* The kernel may kill it at the next page: no time to ask for its heap view. */
    w->near_hard_done = true;
    snapshot(w, "near_hard_limit", NULL, NULL, NULL, NULL, false, MV_R_NONE);
}

bool mv__snapshot_then_kill(mv_worker_t *w, mv_reason_t reason)
{
    if (!w->pool->leak || w->kill_snapshot_done || w->snap || w->exited || !w->pool->run ||
        !w->pool->run->dir)
        return false;
    /* Frozen, it grows no further while it is read; SIGKILL works on a stopped process. */
    mv__signal(w, SIGSTOP);
    return snapshot(w, "hard_limit", NULL, NULL, NULL, NULL, false, reason) != NULL;
}

void mv__suspect_release(mv_worker_t *w)
{
    if (w->snap) {
        mv_snapjob_t *s = w->snap;
        s->w = NULL;
        w->snap = NULL;
        go(s, "gone"); /* nothing when already queued: it finishes without the worker */
    }
    if (w->basejob) {
        w->basejob->w = NULL;
        w->basejob = NULL;
    }
    json_decref(w->baseline);
    w->baseline = NULL;
    free(w->history);
    w->history = NULL;
    free(w->last_snapshot);
    w->last_snapshot = NULL;
}
