/*
 * suspect: history, leak verdicts and snapshots (see suspect.h).
 *
 * A snapshot (snapjob) lives as long as its heap-view deadline timer and its thread-pool job
 * each hold a reference; its worker may go away first (sw becomes NULL): the snapshot is
 * still written, without the worker's own heap view.
 */
#include "suspect.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

#define NEAR_HARD 0.9 /* share of the hard limit that makes a worker "near" it */

typedef struct mv_snapjob {
    uv_timer_t timer; /* the deadline of the worker's heap view */
    int refs;         /* the timer and the thread-pool job each hold one */
    bool queued;      /* the thread-pool job was started */
    mv_suspect_t *s;
    mv_suspected_t *sw; /* NULL once the worker is gone */
    int pid;
    char *cgroup;  /* the worker's cgroup directory, or NULL */
    char *path;    /* the file to write */
    unsigned num;  /* its number in the run (mv_rundir_snapshot_path) */
    unsigned keep; /* [leak] snapshots_max when it was taken */
    int trimmed;   /* older snapshot files removed for `keep`, or -errno */
    json_t *doc;
    json_t *baseline; /* the worker's baseline mappings (unpacked for this job), or NULL */
    int result;
    bool kill; /* a hard-limit kill waits for this snapshot */
    /* What its allocation sites are for (the worker's own heap view, Python tracemalloc):
     * LINK: a worker that ran `kind` alone, whose growing sites are that kind's; CHECK: a
     * suspect of `kind` whose growth may be at another kind's site. */
    enum { SITES_NONE, SITES_LINK, SITES_CHECK } sites;
    char kind[MV_LEAK_KIND_MAX + 1];
} mv_snapjob_t;

typedef struct write_job {
    mv_job_t job;
    mv_snapjob_t *snap;
} write_job_t;

typedef struct base_job {
    mv_job_t job;
    int pid;
    json_t *mappings;
} base_job_t;

/* ---- history and baseline ---- */

/* What a ring entry refers to when the pool is out of memory (never dropped). */
static const char no_kind[] = "";

static const char *hold_kind(mv_suspect_t *s, const char *name)
{
    const char *k = mv_kindpool_hold(&s->kinds, name, MV_LEAK_KIND_MAX);

    return k ? k : no_kind;
}

static void drop_kind(mv_suspect_t *s, const char *kind)
{
    if (kind && kind != no_kind)
        mv_kindpool_drop(&s->kinds, kind);
}

static void remember(mv_suspect_t *s, mv_suspected_t *sw, const mv_task_t *t, const mv_result_t *r)
{
    /* The ring keeps the size the worker started with (a reload may change it). */
    unsigned cap = sw->hist_cap;
    mv_taskrec_t *rec;

    if (cap == 0)
        return;
    if (!sw->history && !(sw->history = calloc(cap, sizeof *sw->history)))
        return;
    rec = &sw->history[(sw->hist_head + sw->hist_n) % cap];
    if (sw->hist_n < cap) {
        sw->hist_n++;
    } else {
        drop_kind(s, rec->kind); /* the oldest entry's */
        sw->hist_head = (sw->hist_head + 1) % cap;
    }
    *rec = (mv_taskrec_t){.id = t->id,
                          .kind = hold_kind(s, r->kind ? r->kind : ""),
                          .mem_after = r->mem_after,
                          .retained = r->retained,
                          .mem_peak = r->mem_peak,
                          .fds_after = r->fds_after};
}

/* The worker's rings go, with their references to kinds. */
static void forget(mv_suspect_t *s, mv_suspected_t *sw)
{
    for (unsigned i = 0; sw->history && i < sw->hist_n; i++)
        drop_kind(s, sw->history[(sw->hist_head + i) % sw->hist_cap].kind);
    for (unsigned i = 0; sw->grow_kind && i < sw->grow_n; i++)
        drop_kind(s, sw->grow_kind[(sw->grow_head + i) % sw->grow_cap]);
    free(sw->history);
    free(sw->grow);
    free(sw->grow_off);
    free(sw->grow_kind);
    sw->history = NULL;
    sw->grow = NULL;
    sw->grow_off = NULL;
    sw->grow_kind = NULL;
    sw->hist_n = sw->grow_n = 0;
}

static json_t *history_json(const mv_suspected_t *sw)
{
    json_t *a = json_array();

    for (unsigned i = 0; i < sw->hist_n; i++) {
        const mv_taskrec_t *r = &sw->history[(sw->hist_head + i) % sw->hist_cap];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:I, s:I, s:I, s:i}", "id", (json_int_t)r->id, "kind", r->kind,
                         "mem_after", (json_int_t)r->mem_after, "retained", (json_int_t)r->retained,
                         "mem_peak", (json_int_t)r->mem_peak, "fds_after", r->fds_after));
    }
    return a;
}

static void base_work(mv_job_t *j)
{
    base_job_t *b = (base_job_t *)j;

    b->mappings = mv_snap_mappings(b->pid);
}

static void base_done(mv_job_t *j, void *owner, int cancelled)
{
    base_job_t *b = (base_job_t *)j;
    mv_suspected_t *sw = owner;

    if (sw) {
        sw->baseline = mv_snap_pack(b->mappings);
        sw->basejob = NULL;
    }
    json_decref(b->mappings);
}

/* The worker's mappings after its first task: what later snapshots compare with. */
static void take_baseline(mv_suspect_t *s, mv_suspected_t *sw)
{
    base_job_t *b = calloc(1, sizeof *b);

    if (!b)
        return;
    b->pid = sw->w->proc.pid;
    if (mv_job_queue(s->loop, &b->job, base_work, base_done, sw) < 0) {
        free(b);
        return;
    }
    sw->basejob = &b->job;
}

/* ---- snapshots ---- */

static void unref(mv_snapjob_t *sj)
{
    if (--sj->refs > 0)
        return;
    json_decref(sj->doc);
    json_decref(sj->baseline);
    free(sj->cgroup);
    free(sj->path);
    free(sj);
}

static void timer_closed_cb(uv_handle_t *h)
{
    unref(h->data);
}

/* The worker's snapshot in progress is over (written, or dropped): the next may start, and
 * a pool that waited for it to stop the worker is told (stop_after_snapshot). */
static void snapshot_over(mv_suspect_t *s, mv_suspected_t *sw)
{
    sw->snap = NULL;
    if (sw->stop_after_snapshot) {
        sw->stop_after_snapshot = false;
        s->ev->on_snapshot_done(s->arg, sw);
    }
}

static void write_work(mv_job_t *j)
{
    mv_snapjob_t *sj = ((write_job_t *)j)->snap;
    char stamp[48];

    sj->result = mv_snap_collect(sj->doc, sj->pid, sj->cgroup, sj->baseline);
    mv_iso_time(stamp);
    json_object_set_new(sj->doc, "written", json_string(stamp));
    if (sj->path && mv_json_write_atomic(sj->path, sj->doc) < 0)
        sj->result = -EIO;
    else if (sj->path)
        sj->trimmed = mv_rundir_trim_snapshots(sj->path, sj->num, sj->keep);
}

static const char *snapshot(mv_suspect_t *s, mv_suspected_t *sw, const char *reason,
                            const char *kind, const mv_leak_verdict_t *v, const mv_task_t *t,
                            const mv_result_t *r, bool ask_heap, bool kill);

static void write_done(mv_job_t *j, void *owner, int cancelled)
{
    mv_snapjob_t *sj = ((write_job_t *)j)->snap;
    mv_suspected_t *sw = sj->sw;
    mv_suspect_t *s = sj->s;

    mv_info(s->log, "snapshot", MV_S("path", sj->path), MV_I("pid", sj->pid),
            MV_S("reason", json_string_value(json_object_get(sj->doc, "reason"))),
            MV_S("heap", json_string_value(json_object_get(sj->doc, "heap_status"))),
            MV_S("result", sj->result == 0        ? "ok"
                           : sj->result == -ESRCH ? "gone"
                                                  : "failed"));
    if (sj->trimmed > 0)
        mv_info(s->log, "snapshots_trimmed", MV_I("removed", sj->trimmed), MV_I("keep", sj->keep));
    else if (sj->trimmed < 0)
        mv_warn(s->log, "snapshots_trimmed", MV_I("removed", 0), MV_I("keep", sj->keep),
                MV_S("error", strerror(-sj->trimmed)));
    if (sw) {
        free(sw->last_snapshot);
        sw->last_snapshot = sj->path ? strdup(sj->path) : NULL;
        snapshot_over(s, sw);
        if (sj->kill) {
            sw->kill_snapshot_done = true;
            s->ev->on_kill_ready(s->arg, sw); /* it was stopped while it was read */
        } else if (sw->kill_snapshot_next) {
            /* The kill waited for this one (the worker is stopped): its own now, or the
             * kill at once when it cannot be taken. */
            sw->kill_snapshot_next = false;
            if (!snapshot(s, sw, "hard_limit", NULL, NULL, NULL, NULL, false, true)) {
                sw->kill_snapshot_done = true;
                s->ev->on_kill_ready(s->arg, sw);
            }
        }
    }
    unref(sj);
}

/* Hands the snapshot to the thread pool (once the heap view came, or did not). false when
 * it could not be queued: then it is dropped (and may be freed already). */
static bool go(mv_snapjob_t *sj, const char *heap_status)
{
    write_job_t *j;

    if (sj->queued)
        return true;
    sj->queued = true;
    /* A suspect's own evidence is in (or will not come): its isolation may start. */
    if (sj->sites == SITES_CHECK && sj->s->exp)
        mv_experiment_hold(sj->s->exp, sj->kind, false);
    json_object_set_new(sj->doc, "heap_status", json_string(heap_status));
    if (!json_object_get(sj->doc, "heap"))
        json_object_set_new(sj->doc, "heap", json_null());
    if (sj->refs > 0) /* the deadline timer: not needed any more */
        uv_close((uv_handle_t *)&sj->timer, timer_closed_cb);
    j = calloc(1, sizeof *j);
    if (j) {
        j->snap = sj;
        sj->refs++;
        if (mv_job_queue(sj->s->loop, &j->job, write_work, write_done, NULL) == 0)
            return true;
        free(j);
    } else {
        sj->refs++;
    }
    mv_warn(sj->s->log, "snapshot", MV_S("path", sj->path), MV_S("result", "failed"));
    if (sj->sw)
        snapshot_over(sj->s, sj->sw);
    unref(sj); /* the job's reference (the timer's, if any, goes when it is closed) */
    return false;
}

static void heap_timeout_cb(uv_timer_t *t)
{
    go(t->data, "timeout");
}

/* The loop's part of a snapshot document. */
static json_t *start_doc(mv_suspected_t *sw, const char *reason, const mv_leak_verdict_t *v,
                         const mv_task_t *t, const mv_result_t *r)
{
    const mv_worker_t *w = sw->w;
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
                                  (int)w->gen, "pid", w->proc.pid, "cgroup",
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
    json_object_set_new(doc, "history", history_json(sw));
    return doc;
}

/* Starts a snapshot of the worker; asks an api worker for its heap view when `ask_heap`.
 * Returns the path it will be written to (owned by the job), or NULL when none can be made. */
static const char *snapshot(mv_suspect_t *s, mv_suspected_t *sw, const char *reason,
                            const char *kind, const mv_leak_verdict_t *v, const mv_task_t *t,
                            const mv_result_t *r, bool ask_heap, bool kill)
{
    mv_worker_t *w = sw->w;
    mv_snapjob_t *sj;

    if (!s->run || !s->run->dir || sw->snap || w->proc.exited)
        return NULL;
    sj = calloc(1, sizeof *sj);
    if (!sj)
        return NULL;
    sj->s = s;
    sj->sw = sw;
    sj->pid = w->proc.pid;
    sj->kill = kill;
    sj->cgroup = w->has_cg && w->cg.path ? strdup(w->cg.path) : NULL;
    sj->path = mv_rundir_snapshot_path(s->run, reason, kind, w->slot, &sj->num);
    sj->keep = (unsigned)s->cfg->leak.snapshots_max;
    sj->doc = start_doc(sw, reason, v, t, r);
    sj->baseline = mv_snap_unpack(sw->baseline);
    sw->snap = sj; /* one snapshot of a worker at a time, until it is written */
    if (ask_heap && s->cfg->leak.snapshot_timeout > 0 && mv_worker_ask_snapshot(w) == 0) {
        uv_timer_init(s->loop, &sj->timer);
        sj->timer.data = sj;
        sj->refs++;
        uv_timer_start(&sj->timer, heap_timeout_cb, (uint64_t)s->cfg->leak.snapshot_timeout, 0);
        return sj->path;
    }
    return go(sj, ask_heap ? "unsupported" : "skipped") ? sj->path : NULL;
}

/* The sites that grew most, as the worker's heap view lists them (Python tracemalloc:
 * {"tracemalloc": {"top": [{"where": "file.py:12", "size_diff": N}, ...]}}), biggest first;
 * only those that grew. Valid while `heap` is. */
static int grown_sites(json_t *heap, const char **sites, int max)
{
    json_t *top = json_object_get(json_object_get(heap, "tracemalloc"), "top");
    int n = 0;

    for (size_t i = 0; i < json_array_size(top) && n < max; i++) {
        json_t *e = json_array_get(top, i);
        const char *where = json_string_value(json_object_get(e, "where"));
        if (where && json_integer_value(json_object_get(e, "size_diff")) > 0)
            sites[n++] = where;
    }
    return n;
}

/* A snapshot's own evidence: the sites a kind grows at alone are linked to it; a suspect
 * whose biggest growth is at another kind's site is demoted, and that kind examined. */
static void weigh_sites(mv_suspect_t *s, const mv_snapjob_t *sj, json_t *heap)
{
    const char *sites[8], *owner;
    int n;

    if (!s->exp || sj->sites == SITES_NONE || (n = grown_sites(heap, sites, 8)) == 0)
        return;
    if (sj->sites == SITES_LINK) {
        mv_experiment_link_sites(s->exp, sj->kind, sites, n);
        return;
    }
    owner = mv_experiment_site_owner(s->exp, sites[0]);
    if (owner && strcmp(owner, sj->kind) != 0)
        mv_experiment_demote(s->exp, sj->kind, owner, sites[0]);
}

void mv_suspect_reply(mv_suspect_t *s, mv_suspected_t *sw, const uint8_t *p, size_t n)
{
    mv_snapjob_t *sj = sw->snap;
    json_error_t err;
    json_t *heap;
    int b64;

    if (!sj || sj->queued)
        return; /* a late answer, after the deadline: the snapshot went without it */
    heap = json_loadb((const char *)p, n, 0, &err);
    if (!json_is_object(heap)) {
        json_decref(heap);
        heap = json_pack("{s:s, s:o}", "error", "the worker's answer is not a JSON object",
                         "excerpt", mv_snap_excerpt(p, n, 256, &b64));
        json_object_set_new(sj->doc, "heap", heap);
        go(sj, "error");
        return;
    }
    weigh_sites(s, sj, heap);
    json_object_set_new(sj->doc, "heap", heap);
    go(sj, "worker");
}

/* Says what the snapshot just started for `sw` is for (snapshot() may have started none). */
static void snapshot_sites(mv_suspect_t *s, mv_suspected_t *sw, int sites, const char *kind)
{
    if (!sw || !sw->snap || sw->snap->queued || !kind)
        return;
    sw->snap->sites = sites;
    snprintf(sw->snap->kind, sizeof sw->snap->kind, "%s", kind);
}

/* Counts a confirmed suspect of `kind` (the kinds are as few as the detector tracks) and
 * keeps what it said: per_task bytes or fds per task, and its evidence (static). */
static void count_kind(mv_suspect_t *s, const char *kind, int64_t per_task, double fds,
                       const char *evidence)
{
    mv_suspect_count_t *grown, *k = NULL;

    for (size_t i = 0; i < s->nkinds && !k; i++)
        if (strcmp(s->by_kind[i].kind, kind) == 0)
            k = &s->by_kind[i];
    if (!k) {
        if (s->nkinds == s->capkinds) {
            size_t cap = s->capkinds ? s->capkinds * 2 : 8;
            if (cap > MV_LEAK_KINDS_MAX || !(grown = realloc(s->by_kind, cap * sizeof *grown)))
                return;
            s->by_kind = grown;
            s->capkinds = cap;
        }
        k = &s->by_kind[s->nkinds++];
        memset(k, 0, sizeof *k);
        snprintf(k->kind, sizeof k->kind, "%s", kind);
    }
    k->n++;
    k->per_task = per_task;
    k->fds_per_task = fds;
    k->evidence = evidence;
}

/* ---- what a finished task says ---- */

/* The memory figure the detector takes for a task: live heap bytes when it has them; else,
 * for a worker that never had any, the kernel's retained; else none (a kernel delta must not
 * land among heap deltas). */
static bool task_figure(mv_suspected_t *sw, const mv_result_t *res, int64_t *fig, bool *heap)
{
    *heap = res->heap.measured;
    if (res->heap.measured) {
        sw->heap_seen = true;
        *fig = res->heap.after - res->heap.before;
        /* A worker's own figures: its small objects are counted as blocks only. */
        if (strcmp(res->heap.source, "worker") == 0 && res->heap.blocks != INT64_MIN)
            *fig += res->heap.blocks * MV_HEAP_BLOCK_BYTES;
        return true;
    }
    *fig = res->retained;
    return !sw->heap_seen;
}

/* Whether the detector judged each kind that makes a tenth or more of the worker's recent
 * tasks: only then does "no kind is suspected" mean that no kind explains its growth. */
static bool kinds_judged(mv_suspect_t *s, const mv_suspected_t *sw, const char *const *kinds,
                         int nk)
{
    for (int j = 0; j < nk; j++) {
        unsigned n = 0;
        for (unsigned i = 0; i < sw->grow_n; i++)
            n += strcmp(sw->grow_kind[(sw->grow_head + i) % sw->grow_cap], kinds[j]) == 0;
        if (n * 10 >= sw->grow_n && !mv_leak_judged(s->leak, kinds[j]))
            return false;
    }
    return true;
}

/* Its growth, for the bisection of a worker that grows while no kind is suspected: judged
 * every tenth of a window from 80% of one (as a kind's trend), twice in a row. A worker with
 * heap figures is judged on them, and, when they do not grow, on its growth outside them
 * (`off`: the kernel's figure less the heap's): memory that no malloc-family call and no
 * mmap of its own made (threads never joined keep their stacks, which glibc maps itself)
 * grows the worker with no kind's heap figures growing, and the kernel's per-task figures
 * cannot say whose it is (a thread touches its stack after its task answered). */
static void watch_growth(mv_suspect_t *s, mv_suspected_t *sw, const char *kind, int64_t fig,
                         int64_t off)
{
    const mv_config_t *cfg = s->cfg;
    mv_leak_cfg_t lc = {cfg->leak.window, cfg->leak.warmup, cfg->leak.min_slope,
                        cfg->leak.task_growth};
    const char *kinds[MV_ISO_KINDS_MAX];
    double series[1024], offs[1024], per;
    unsigned cap = sw->grow_cap, n;
    int nk = 0;
    bool grows, off_grows = false;

    if (cap == 0 || sw->w->tasks_done <= cfg->leak.warmup || mv_experiment_is_arm(s->exp, sw->w))
        return;
    if (!sw->grow && (!(sw->grow = calloc(cap, sizeof *sw->grow)) ||
                      !(sw->grow_off = calloc(cap, sizeof *sw->grow_off)) ||
                      !(sw->grow_kind = calloc(cap, sizeof *sw->grow_kind)))) {
        sw->grow_cap = 0; /* out of memory: this worker is not watched */
        return;
    }
    n = (sw->grow_head + sw->grow_n) % cap;
    sw->grow[n] = (double)fig;
    sw->grow_off[n] = (double)off;
    if (sw->grow_n < cap) {
        sw->grow_n++;
    } else {
        drop_kind(s, sw->grow_kind[n]); /* the oldest entry's */
        sw->grow_head = (sw->grow_head + 1) % cap;
    }
    sw->grow_kind[n] = hold_kind(s, kind && *kind ? kind : "(none)");
    if (sw->grow_n * 10 < cap * 8 || ++sw->grow_since < (cap >= 10 ? cap / 10 : 1))
        return;
    sw->grow_since = 0;
    /* Its verdict could only start an experiment that a known kind forbids for good (and
     * says nothing else): the Theil-Sen judgement is spared. */
    if (mv_experiment_settled(s->exp))
        return;
    for (unsigned i = 0; i < sw->grow_n; i++) {
        unsigned at = (sw->grow_head + i) % cap;
        int j = 0;
        series[i] = sw->grow[at];
        offs[i] = sw->grow_off[at];
        while (j < nk && strcmp(kinds[j], sw->grow_kind[at]) != 0)
            j++;
        if (j == nk && nk < MV_ISO_KINDS_MAX)
            kinds[nk++] = sw->grow_kind[at];
    }
    grows = mv_leak_grows(&lc, series, (int)sw->grow_n, nk, &per);
    if (!grows && sw->heap_seen)
        off_grows = mv_leak_grows(&lc, offs, (int)sw->grow_n, nk, &per);
    if (((grows && sw->grow_pending) || (off_grows && sw->off_pending)) &&
        mv_experiment_takes_growth(s->exp) && kinds_judged(s, sw, kinds, nk)) {
        mv_info(s->log, "worker_grows", MV_I("worker", sw->w->slot), MV_I("pid", sw->w->proc.pid),
                MV_I("per_task", (long long)per), MV_I("kinds", nk), MV_I("tasks", sw->grow_n),
                MV_S("figures", grows ? (sw->heap_seen ? "heap" : "kernel") : "off_heap"));
        mv_experiment_grows(s->exp, sw->w, kinds, nk, !grows);
    }
    sw->grow_pending = grows;
    sw->off_pending = off_grows;
}

/* A worker as the detector's observations name it (mv_leak_obs_t.source). */
static uint64_t source_of(const mv_worker_t *w)
{
    return (uint64_t)(uint32_t)w->slot << 32 | w->gen;
}

/* The evidence a memory verdict stands on, as the events say it. */
static const char *evidence(bool heap, bool isolation)
{
    if (isolation)
        return heap ? "heap,isolation" : "isolation";
    return heap ? "heap" : "kernel-trend";
}

/* A worker's slot, generation or pid in an event: null when there is none (0 would read as
 * a real one). */
static mv_kv_t id_kv(const char *key, long long x)
{
    return x > 0 ? MV_I(key, x) : MV_S(key, NULL);
}

/* Why an event has no snapshot, as its last field; none (the list ends there) for NULL. */
static mv_kv_t last_reason(const char *why)
{
    return why ? MV_S("snapshot_reason", why) : MV_KV_END_MARKER;
}

/* Says a suspect: confirmed (with its evidence), or suspected until an experiment says.
 * Whether a snapshot of it was started (none while another of the worker's is in progress). */
static bool say_suspect(mv_suspect_t *s, mv_suspected_t *sw, const mv_leak_verdict_t *v,
                        const mv_task_t *t, const mv_result_t *res, bool confirmed, const char *ev,
                        const char *experiment)
{
    mv_worker_t *w = sw->w;
    /* The task that completed the verdict, in the snapshot of the worker that ran it; the
     * worker named may be another (judge_suspect). */
    bool own = res && res->slot == w->slot && res->gen == w->gen;
    const char *path =
        snapshot(s, sw, "leak_suspect", v->kind, v, own ? t : NULL, own ? res : NULL, true, false);

    if (confirmed) {
        s->suspects++;
        count_kind(s, v->kind ? v->kind : "(none)", v->rule == MV_LEAK_FD_TREND ? 0 : v->per_task,
                   v->fds_per_task, ev);
    }
    mv_log(s->log, confirmed ? MV_LVL_WARN : MV_LVL_INFO, "leak_suspect", MV_S("kind", v->kind),
           MV_I("per_task", (long long)v->per_task), MV_D("fds_per_task", v->fds_per_task),
           MV_D("confidence", v->confidence), MV_I("tasks", v->tasks),
           MV_S("rule", mv_leak_rule_name(v->rule)), MV_T("confirmed", confirmed),
           MV_S("evidence", ev), MV_S("experiment", experiment), MV_I("worker", w->slot),
           MV_I("gen", w->gen), id_kv("pid", w->proc.pid), MV_I("task", t ? (long long)t->id : 0),
           MV_S("snapshot", path));
    return path != NULL;
}

/* A verdict of the detector: a handle leak stands on the kernel's fd counts; a memory one is
 * confirmed by an isolation when there can be one, else stands on its own figures.
 *
 * A kind's window holds every worker's tasks of it, and the task that completed the verdict
 * (sw's) may have kept nothing: the verdict names the worker whose tasks kept the most of the
 * window, and that worker is the one the suspect names and snapshots, and the one an
 * isolation in place runs on (a leak that needs an older process grows on the oldest only;
 * named by the task's worker, the isolation ran on a process that had not reached it yet,
 * and cleared it). When that worker is leaving or gone, or an experiment's arm, the task's
 * worker is named, and no isolation runs in place. */
static void judge_suspect(mv_suspect_t *s, mv_suspected_t *sw, const mv_leak_verdict_t *v,
                          const mv_task_t *t, const mv_result_t *res)
{
    mv_exp_answer_t a = MV_EXP_NOW;
    bool grew_here = true, queued = false;

    if (v->source && v->source != source_of(sw->w)) {
        mv_suspected_t *grew = s->ev->find(s->arg, (int)(v->source >> 32), (uint32_t)v->source);
        /* An experiment's arm runs its own kind now: not this suspect's to snapshot. */
        if (grew && !(s->exp && mv_experiment_is_arm(s->exp, grew->w)))
            sw = grew;
        else
            grew_here = false;
    }
    if (v->rule != MV_LEAK_FD_TREND && s->exp) {
        queued = mv_experiment_queued(s->exp, v->kind);
        a = mv_experiment_suspect(s->exp, v, sw->w, grew_here);
    }
    switch (a) {
    case MV_EXP_QUEUED:
        /* Newly queued, it is held for its snapshot's evidence; with no heap view coming, it
         * may go now. A snapshot of the worker already in progress is another suspect's:
         * relabelled, it released this kind when its view came and held that one for good
         * (four kinds suspected on one worker within its first snapshot: three never
         * isolated). A kind queued before keeps the hold its first snapshot took. */
        if (!say_suspect(s, sw, v, t, res, false, evidence(v->heap, false), "queued")) {
            if (!queued)
                mv_experiment_hold(s->exp, v->kind, false);
            break;
        }
        snapshot_sites(s, sw, SITES_CHECK, v->kind);
        if (!queued && (!sw->snap || sw->snap->sites != SITES_CHECK || sw->snap->queued))
            mv_experiment_hold(s->exp, v->kind, false);
        break;
    case MV_EXP_KNOWN: say_suspect(s, sw, v, t, res, true, evidence(v->heap, true), NULL); break;
    case MV_EXP_CLEARED:
        mv_debug(s->log, "leak_suspect_cleared", MV_S("kind", v->kind),
                 MV_S("msg", "an isolation cleared this kind already"));
        break;
    case MV_EXP_NOW:
        say_suspect(s, sw, v, t, res, true,
                    v->rule == MV_LEAK_FD_TREND ? "kernel-trend" : evidence(v->heap, false),
                    "none");
        break;
    }
}

/* One observation for the detector; t and res: the task that ended (what a verdict made now
 * names and snapshots). */
static void detect(mv_suspect_t *s, mv_suspected_t *sw, const mv_leak_obs_t *o, int64_t off,
                   const mv_task_t *t, const mv_result_t *res)
{
    mv_leak_verdict_t v = mv_leak_observe(s->leak, o);

    /* A suspect first: it may explain the worker's growth. */
    if (v.rule != MV_LEAK_NONE && v.report)
        judge_suspect(s, sw, &v, t, res);
    else if (v.handed_off)
        mv_info(s->log, "leak_cleared", MV_S("kind", v.kind), MV_S("verdict", "handed_off"),
                MV_I("per_task", (long long)v.per_task), MV_I("tasks", v.tasks),
                MV_S("evidence", v.heap ? "heap" : "kernel-trend"),
                MV_S("why", "other kinds' tasks freed what it kept"),
                MV_I("task", t ? (long long)t->id : 0));
    if (s->exp && !o->no_memory)
        watch_growth(s, sw, o->kind, o->retained, off);
}

/* ---- answers that share a reading ----
 * With prefetch, answers that came together share one reading: the first task of them shows
 * their growth and the others none, as their per-task figures say (docs/protocols.md). Fed
 * as it is, that series is a staircase, and a trend over a window shorter than a step reads
 * no growth at all: a leak of 64 KiB a task with prefetch 64 went unseen. The detector gets
 * the group's growth spread evenly over its tasks instead (all the readings say of each),
 * when the next reading shows where the group ended. An experiment's worker takes one task
 * at a time (worker.h: mv_worker_measure_exactly): its figures are its own, but for the
 * answers it owed when bound in place (mv_experiment_owes), which came together still. */

bool mv_suspect_in_groups(const mv_suspect_t *s, const mv_suspected_t *sw)
{
    return sw->w->cap > 1 &&
           (!sw->w->one_at_a_time || (s->exp && mv_experiment_owes(s->exp, sw->w)));
}

/* Feeds the detector the group kept so far, if any. */
static void flush_group(mv_suspect_t *s, mv_suspected_t *sw, const mv_task_t *t,
                        const mv_result_t *res)
{
    unsigned n = sw->group.n;

    sw->group.n = 0;
    for (unsigned i = 0; i < n; i++) {
        int64_t share = sw->group.growth / n + (i == 0 ? sw->group.growth % n : 0);
        int64_t off = sw->group.off / n + (i == 0 ? sw->group.off % n : 0);
        mv_leak_obs_t o = {sw->group.kind[i], share,          sw->group.fds[i],
                           sw->group.age + i, sw->group.heap, !sw->group.known,
                           source_of(sw->w)};
        detect(s, sw, &o, off, t, res);
    }
}

/* Keeps o in the group: the first of a new one, or one more that shared its reading. False
 * when it cannot be kept (no memory, or the group is full). */
static bool keep_in_group(mv_suspect_t *s, mv_suspected_t *sw, const mv_leak_obs_t *o, int64_t off,
                          bool first)
{
    const char *kind = mv_leak_kind_name(s->leak, o->kind);
    unsigned cap = sw->w->cap;

    if (!sw->group.kind) {
        sw->group.kind = calloc(cap, sizeof *sw->group.kind);
        sw->group.fds = calloc(cap, sizeof *sw->group.fds);
        sw->group.cap = sw->group.kind && sw->group.fds ? cap : 0;
    }
    if (!kind || sw->group.n >= sw->group.cap)
        return false;
    if (first) {
        sw->group.growth = o->retained;
        sw->group.off = off;
        sw->group.age = o->worker_age;
        sw->group.heap = o->heap;
        sw->group.known = !o->no_memory;
    }
    sw->group.kind[sw->group.n] = kind;
    sw->group.fds[sw->group.n++] = o->fds_delta;
    return true;
}

void mv_suspect_observe(mv_suspect_t *s, mv_suspected_t *sw, const mv_task_t *t,
                        const mv_result_t *res)
{
    mv_worker_t *w = sw->w;
    mv_leak_obs_t o;
    int64_t fig, off;
    bool heap, known;

    if (!s->leak || !res->measured)
        return;
    remember(s, sw, t, res);
    /* Not for a worker that takes no other task (max_tasks reached, e.g. a process per
     * task): nothing would ever be compared with it, and smaps costs ~1 ms a worker. */
    if (w->tasks_done == 1 && !sw->baseline && !sw->basejob &&
        !(w->lim.max_tasks > 0 && w->tasks_done >= w->lim.max_tasks))
        take_baseline(s, sw);
    known = task_figure(sw, res, &fig, &heap);
    /* Its growth outside the heap figures, for a task the preload counted (a worker's own
     * figures estimate its small objects: no base for a difference); else none. */
    off = heap && strcmp(res->heap.source, "preload") == 0 ? res->retained - fig : 0;
    o = (mv_leak_obs_t){
        res->kind,
        fig,
        res->fds_before >= 0 && res->fds_after >= 0 ? res->fds_after - res->fds_before : INT32_MIN,
        w->tasks_done - 1,
        heap,
        !known,
        source_of(w)};
    if (s->exp)
        mv_experiment_observe(s->exp, w, t, res->kind, (double)fig, known, heap,
                              (double)res->retained);
    if (!mv_suspect_in_groups(s, sw)) {
        flush_group(s, sw, t, res); /* kept before it became an experiment's worker */
        detect(s, sw, &o, off, t, res);
        return;
    }
    if (res->shared_reading && sw->group.n > 0 && keep_in_group(s, sw, &o, off, false))
        return;
    flush_group(s, sw, t, res);
    if (!keep_in_group(s, sw, &o, off, true))
        detect(s, sw, &o, off, t, res);
}

void mv_suspect_verdict(mv_suspect_t *s, mv_suspected_t *sw, const mv_exp_verdict_t *v)
{
    const char *how = v->mode == MV_ISO_BISECT ? "bisection" : "isolation";
    mv_leak_verdict_t lv = {.rule = MV_LEAK_TREND,
                            .per_task = v->per_task,
                            .confidence = v->confidence,
                            .tasks = v->tasks,
                            .heap = v->heap,
                            .kind = v->kind};
    const char *path;
    long long slot = 0, gen = 0, pid = 0;

    if (!v->kind)
        return; /* a bisection that found nothing: its leak_experiment event said so */
    /* The worker that showed it: the deciding arm's, named even after it left (its slot,
     * generation and pid as they were; null, never 0, when there was none). */
    if (sw) {
        slot = sw->w->slot;
        gen = sw->w->gen;
        pid = sw->w->proc.pid;
    } else if (v->slot > 0) {
        slot = v->slot;
        gen = v->gen;
        pid = v->pid;
    }
    if (v->verdict == MV_ISO_V_LEAK) {
        path = sw ? snapshot(s, sw, "leak_suspect", v->kind, &lv, NULL, NULL, true, false)
                  : v->snapshot;
        if (sw && path) /* a snapshot in progress is another's: not relabelled */
            snapshot_sites(s, sw, SITES_LINK, v->kind);
        s->suspects++;
        count_kind(s, v->kind, v->per_task, 0, evidence(v->heap, true));
        mv_warn(s->log, "leak_suspect", MV_S("kind", v->kind),
                MV_I("per_task", (long long)v->per_task), MV_D("fds_per_task", 0),
                MV_D("confidence", v->confidence), MV_I("tasks", v->tasks), MV_S("rule", "trend"),
                MV_T("confirmed", true), MV_S("evidence", evidence(v->heap, true)),
                MV_S("experiment", how), MV_S("why", v->why), id_kv("worker", slot),
                id_kv("gen", slot ? gen : 0), id_kv("pid", pid), MV_I("task", (long long)v->task),
                MV_S("snapshot", path),
                last_reason(path || sw ? NULL
                                       : "the worker exited before the verdict; no snapshot "
                                         "was taken of it"));
        return;
    }
    /* The experiment could not say: the suspect stays a suspect, not confirmed, on the
     * figures it was suspected on (the experiment's say nothing: "per_task 0" read as a
     * kind that keeps nothing). */
    if (v->verdict == MV_ISO_V_INCONCLUSIVE) {
        /* Queued on other evidence (no figures, 0): "trend", as these lines always said. */
        const mv_exp_figures_t *f = &v->suspicion;
        mv_leak_rule_t rule = f->rule == MV_LEAK_NONE ? MV_LEAK_TREND : f->rule;
        mv_warn(
            s->log, "leak_suspect", MV_S("kind", v->kind), MV_I("per_task", (long long)f->per_task),
            MV_D("fds_per_task", f->fds), MV_D("confidence", f->confidence),
            MV_I("tasks", v->tasks), MV_S("rule", mv_leak_rule_name(rule)),
            MV_T("confirmed", false), MV_S("evidence", v->suspect_heap ? "heap" : "kernel-trend"),
            MV_S("experiment", "inconclusive"), MV_S("why", v->why), id_kv("worker", slot),
            id_kv("gen", slot ? gen : 0), id_kv("pid", pid), MV_I("task", (long long)v->task),
            MV_S("snapshot", NULL), last_reason("an inconclusive experiment takes no snapshot"));
        return;
    }
    /* Suspected again, it is on figures from after this (and tried in place: experiment.c). */
    if (v->mode == MV_ISO_ISOLATE)
        mv_leak_forget(s->leak, v->kind);
    /* A kind that ran alone: its growing sites are its own, even when it is not a leak. */
    path = sw ? snapshot(s, sw, "leak_cleared", v->kind, &lv, NULL, NULL, true, false) : NULL;
    if (path)
        snapshot_sites(s, sw, SITES_LINK, v->kind);
    mv_info(s->log, "leak_cleared", MV_S("kind", v->kind),
            MV_S("verdict", mv_iso_verdict_name(v->verdict)),
            MV_I("per_task", (long long)v->per_task), MV_I("tasks", v->tasks),
            MV_S("evidence", how), MV_S("figures", v->heap ? "heap" : "kernel"),
            MV_S("why", v->why), MV_I("task", (long long)v->task), MV_S("snapshot", path));
}

void mv_suspect_near_limit(mv_suspect_t *s, mv_suspected_t *sw, const mv_reading_t *r)
{
    int64_t hard = sw->w->lim.hard_bytes;

    if (!s->leak || sw->near_hard_done || hard <= 0 || !r ||
        (double)r->usage < NEAR_HARD * (double)hard)
        return;
    /* The kernel may kill it at the next page: no time to ask for its heap view. */
    sw->near_hard_done = true;
    snapshot(s, sw, "near_hard_limit", NULL, NULL, NULL, NULL, false, false);
}

bool mv_suspect_before_kill(mv_suspect_t *s, mv_suspected_t *sw)
{
    if (!s->leak || sw->kill_snapshot_done || sw->kill_snapshot_next || sw->w->proc.exited ||
        !s->run || !s->run->dir)
        return false;
    /* One snapshot of a worker at a time: one in progress (near the limit, a suspect's) is
     * written first, and the kill's own taken after it (a busy host can be that slow). */
    if (sw->snap) {
        sw->kill_snapshot_next = true;
        return true;
    }
    return snapshot(s, sw, "hard_limit", NULL, NULL, NULL, NULL, false, true) != NULL;
}

const char *mv_suspect_last_snapshot(const mv_suspected_t *sw)
{
    return sw->snap && sw->snap->path ? sw->snap->path : sw->last_snapshot;
}

void mv_suspect_attach(mv_suspect_t *s, mv_suspected_t *sw, mv_worker_t *w)
{
    memset(sw, 0, sizeof *sw);
    sw->w = w;
    sw->hist_cap = s->cfg->leak.history > 0 ? (unsigned)s->cfg->leak.history : 0;
    sw->grow_cap = s->exp && s->cfg->leak.window <= 1024 ? (unsigned)s->cfg->leak.window : 0;
    if (s->exp)
        mv_experiment_attach(s->exp, w);
}

void mv_suspect_release(mv_suspect_t *s, mv_suspected_t *sw)
{
    /* Its last snapshot, for a verdict of an experiment it was an arm of. */
    const char *last = mv_suspect_last_snapshot(sw);
    char *snap = s->exp && last ? strdup(last) : NULL;

    if (sw->snap) {
        mv_snapjob_t *sj = sw->snap;
        sj->sw = NULL;
        sw->snap = NULL;
        go(sj, "gone"); /* nothing when already queued: it finishes without the worker */
    }
    if (sw->basejob) {
        mv_job_detach(sw->basejob);
        sw->basejob = NULL;
    }
    free(sw->baseline);
    sw->baseline = NULL;
    forget(s, sw);
    free(sw->last_snapshot);
    sw->last_snapshot = NULL;
    free(sw->group.kind);
    free(sw->group.fds);
    sw->group.kind = NULL;
    sw->group.fds = NULL;
    sw->group.n = sw->group.cap = 0;
    if (s->exp)
        mv_experiment_gone(s->exp, sw->w, snap);
    free(snap);
}

void mv_suspect_init(mv_suspect_t *s, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                     mv_leak_t *leak, mv_rundir_t *run, const mv_suspect_events_t *ev, void *arg)
{
    *s = (mv_suspect_t){
        .loop = loop, .log = log, .cfg = cfg, .leak = leak, .run = run, .ev = ev, .arg = arg};
}

void mv_suspect_free(mv_suspect_t *s)
{
    free(s->by_kind);
    s->by_kind = NULL;
    s->nkinds = s->capkinds = 0;
    mv_kindpool_free(&s->kinds);
}
