/*
 * commands: what the control socket answers (status, recycle, reload, stop, metrics) and the
 * reload that SIGHUP also triggers. Replies are jansson objects; control.c frames them.
 *
 * Reload re-reads the file given with -c, re-applies every -o, validates all of it, and only
 * then swaps the configuration: an invalid file changes nothing and the reply says why. The
 * new settings reach workers by a rolling replacement of every worker (each new worker gets
 * the new limits and command); settings a running pool cannot change (sockets, cgroup mode,
 * ...) keep their old values and are named in `restart_needed`. The number of workers
 * changes live (mv_pool_scale), from the file at a reload or from the `workers` command.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "confdiff.h"
#include "metrics.h"

/* ---- status ---- */

static json_t *worker_json(const mv_worker_view_t *w)
{
    json_t *o =
        json_pack("{s:i, s:i, s:i, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:s?, s:b}", "slot",
                  w->slot, "gen", (int)w->gen, "pid", w->pid, "state", w->state, "age_s", w->age_s,
                  "tasks", (json_int_t)w->tasks, "in_flight", (json_int_t)w->in_flight, "mem",
                  (json_int_t)w->mem, "usage", (json_int_t)w->usage, "peak", (json_int_t)w->peak,
                  "fds", (json_int_t)w->fds, "recycling", w->recycling || w->handover, "reason",
                  w->reason, "pending_drain", w->handover);

    /* The task in hand and how long it has run: a worker that never answers shows here. */
    json_object_set_new(o, "task", w->task ? json_integer((json_int_t)w->task) : json_null());
    json_object_set_new(o, "task_s", w->task ? json_real(w->task_s) : json_null());
    return o;
}

static json_t *recycles_json(const uint64_t *recycles)
{
    json_t *o = json_object();

    for (int r = 1; r < MV_R_COUNT; r++)
        if (recycles[r] && mv_reason_recycles((mv_reason_t)r))
            json_object_set_new(o, mv_reason_name((mv_reason_t)r),
                                json_integer((json_int_t)recycles[r]));
    return o;
}

/* A Redis source: the stream's figures as last read (rtasks.h). */
static void source_json(mv_t *mv, json_t *reply)
{
    mv_rtasks_view_t r;

    if (mv_rtasks_view(&mv->tasks, &r) < 0)
        return;
    json_object_set_new(
        reply, "source",
        json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "kind",
                  "redis", "url", r.url, "group", r.group, "consumer", r.consumer, "connected",
                  r.connected, "waiting",
                  r.length >= 0 ? json_integer(MV_MAX(r.length - r.pending, 0)) : json_null(),
                  "pending", r.length >= 0 ? json_integer(r.pending) : json_null(), "as_of_s",
                  r.age_s >= 0 ? json_real(r.age_s) : json_null(), "held", (json_int_t)r.held,
                  "taken", (json_int_t)r.taken, "claimed", (json_int_t)r.claimed, "readded",
                  (json_int_t)r.readded, "duplicates", (json_int_t)r.duplicates));
}

/* The warm template, or null without one. */
static json_t *template_json(const mv_template_view_t *t)
{
    if (!t->on)
        return json_null();
    return json_pack("{s:i, s:i, s:s?, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "gen", (int)t->gen,
                     "pid", t->pid, "state", t->state, "age_s", t->age_s, "forks",
                     (json_int_t)t->forks, "replaced", (json_int_t)t->replaced, "failed",
                     (json_int_t)t->failed, "mem", (json_int_t)t->mem, "usage",
                     (json_int_t)t->usage, "peak", (json_int_t)t->peak, "fallback", t->fallback);
}

/* Whether new tasks are held back, and why: the host's memory (pause_below), a results
 * writer that is behind. */
static json_t *dispatch_json(mv_t *mv)
{
    const mv_hostmem_t *h = &mv->hostmem;
    json_t *why = json_array();

    if (mv->pool.dispatch.paused & MV_PAUSE_HOST_MEMORY)
        json_array_append_new(why, json_string("host_memory"));
    if (mv_results_backlogged(&mv->results))
        json_array_append_new(why, json_string("results_backlog"));
    if (mv->tasks.paused && !mv->tasks.error) /* a Redis source without its connection */
        json_array_append_new(why, json_string("source_disconnected"));
    return json_pack("{s:b, s:o, s:o, s:o, s:I, s:I}", "paused", json_array_size(why) > 0,
                     "reasons", why, "host_available",
                     h->have ? json_integer(h->available) : json_null(), "host_threshold",
                     h->have ? json_integer(h->threshold) : json_null(), "pauses",
                     (json_int_t)h->pauses, "orphans_reaped", (json_int_t)mv->reaper.reaped);
}

/* An integer, or null for -1 (not known). */
static json_t *known(int64_t v)
{
    return v >= 0 ? json_integer((json_int_t)v) : json_null();
}

/* The progress line's figures (ticker.c): the same numbers a terminal shows. */
static json_t *progress_json(const mv_progress_t *p)
{
    json_t *o = json_pack("{s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:i, s:i, s:I}", "done",
                          (json_int_t)p->done, "total", known(p->total), "queue", known(p->queue),
                          "in_flight", (json_int_t)p->in_flight, "ok", (json_int_t)p->ok, "failed",
                          (json_int_t)p->failed, "quarantined", (json_int_t)p->quarantined, "rate",
                          p->rate >= 0 ? json_real(p->rate) : json_null(), "eta_s",
                          p->eta_s >= 0 ? json_real(p->eta_s) : json_null(), "busy", p->busy,
                          "workers", p->workers, "recycles", (json_int_t)p->recycles);

    json_object_set_new(o, "top",
                        p->top_slot > 0 ? json_pack("{s:i, s:I, s:I, s:I}", "slot", p->top_slot,
                                                    "mem", (json_int_t)p->top_mem, "memory_soft",
                                                    (json_int_t)p->top_soft, "memory_hard",
                                                    (json_int_t)p->top_hard)
                                        : json_null());
    return o;
}

static json_t *status_json(mv_t *mv, char *err, size_t errlen)
{
    const mv_config_t *cfg = mv->cfg;
    const uint64_t *count = mv->results.count;
    uint64_t now = mv_now_ms();
    mv_pool_view_t v;
    mv_progress_t pg;
    json_t *workers = json_array(), *spares = json_array(), *successors = json_array(), *reply;

    if (mv_pool_view(&mv->pool, &v) < 0 || mv_ticker_figures(mv, &pg) < 0) {
        json_decref(workers);
        json_decref(spares);
        json_decref(successors);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < v.nworkers; i++)
        json_array_append_new(workers, worker_json(&v.workers[i]));
    for (int i = 0; i < v.nspares; i++)
        json_array_append_new(spares, worker_json(&v.spares[i]));
    for (int i = 0; i < v.nsuccessors; i++)
        json_array_append_new(successors, worker_json(&v.successors[i]));
    reply = json_pack("{s:{s:s?, s:i, s:s, s:f, s:s, s:s?, s:i, s:b}}", "run", "id", mv->run.id,
                      "pid", (int)getpid(), "mode", mv->service ? "service" : "batch", "uptime_s",
                      (double)(now - mv->started_ms) / 1000.0, "cgroup",
                      mv->cg.version == MV_CG_V1   ? "v1"
                      : mv->cg.version == MV_CG_V2 ? "v2"
                                                   : "off",
                      "config", mv->config_path, "reloads", mv->reloads, "stopping", mv->stopping);
    json_object_set_new(
        reply, "limits",
        json_pack("{s:I, s:I, s:I, s:I, s:b}", "memory_soft", (json_int_t)cfg->limits.memory_soft,
                  "memory_hard", (json_int_t)cfg->limits.memory_hard, "max_tasks",
                  (json_int_t)cfg->limits.max_tasks, "max_lifetime_ms",
                  (json_int_t)cfg->limits.max_lifetime, "enforce", cfg->limits.enforce));
    json_object_set_new(reply, "workers", workers);
    json_object_set_new(reply, "spares", spares); /* spares.h: slot 0, counted in no total */
    json_object_set_new(reply, "successors", successors); /* succ.h: counted in no total */
    json_object_set_new(reply, "dispatch", dispatch_json(mv));
    json_object_set_new(reply, "template", template_json(&v.tmpl));
    /* queue: tasks not sent to a worker yet (null while the total is not known). */
    json_object_set_new(
        reply, "totals",
        json_pack("{s:i, s:i, s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:I}", "slots", v.target,
                  "workers", v.live, "tasks",
                  (json_int_t)(count[MV_ST_OK] + count[MV_ST_FAILED] + count[MV_ST_QUARANTINED]),
                  "ok", (json_int_t)count[MV_ST_OK], "failed", (json_int_t)count[MV_ST_FAILED],
                  "recycles", recycles_json(v.recycles), "spawned", (json_int_t)v.spawned,
                  "suspects", (json_int_t)v.suspects, "queue", known(pg.queue), "in_flight",
                  (json_int_t)v.in_flight));
    json_object_set_new(json_object_get(reply, "totals"), "escalated",
                        json_integer((json_int_t)v.escalated));
    json_object_set_new(json_object_get(reply, "totals"), "child_recycles",
                        json_integer((json_int_t)v.child_recycles));
    json_object_set_new(json_object_get(reply, "totals"), "starting", json_integer(v.starting));
    json_object_set_new(json_object_get(reply, "totals"), "waiting_to_start",
                        json_integer(v.waiting_to_start));
    if (!mv->service)
        json_object_set_new(reply, "progress", progress_json(&pg));
    mv_pool_view_free(&v);
    source_json(mv, reply);
    return reply;
}

/* ---- metrics: the Prometheus text exposition format (metrics.h) ---- */

/* The usage of workers that wait for a slot (spares, successors), together. */
static int64_t usage_of(const mv_worker_view_t *ws, int n)
{
    int64_t sum = 0;

    for (int i = 0; i < n; i++)
        sum += ws[i].usage > 0 ? ws[i].usage : 0;
    return sum;
}

/* The exposition of the run now, from the pool's view: labelled by slot, never by pid or
 * state, so a recycle does not start new series. 0 or -ENOMEM. */
static int metrics(mv_t *mv, mv_buf_t *out)
{
    mv_metrics_slot_t *slots;
    mv_metrics_count_t tasks[MV_ST_COUNT], recycles[MV_R_COUNT], *kinds;
    mv_metrics_template_t tm;
    size_t nrecycles = 0, nslots = 0;
    mv_pool_view_t v;
    mv_progress_t pg;
    int r;

    if (mv_ticker_figures(mv, &pg) < 0 || mv_pool_view(&mv->pool, &v) < 0)
        return -ENOMEM;
    slots = calloc((size_t)(v.nslots ? v.nslots : 1), sizeof *slots);
    kinds = calloc(v.nkinds ? v.nkinds : 1, sizeof *kinds);
    if (!slots || !kinds) {
        free(slots);
        free(kinds);
        mv_pool_view_free(&v);
        return -ENOMEM;
    }
    /* The live slots only: a slot retired by a scale down has no series (its number may
     * come back with a scale up). */
    for (int i = 0; i < v.nslots; i++)
        if (v.slot_live[i])
            slots[nslots++] = (mv_metrics_slot_t){.slot = i + 1,
                                                  .mem = -1,
                                                  .usage = -1,
                                                  .priv = -1,
                                                  .rss = -1,
                                                  .peak = v.slot_peak[i],
                                                  .tasks = -1,
                                                  .age_s = -1};
    for (int i = 0; i < v.nworkers; i++) {
        const mv_worker_view_t *w = &v.workers[i];
        mv_metrics_slot_t *sl = NULL;

        for (size_t k = 0; k < nslots && !sl; k++)
            sl = slots[k].slot == w->slot ? &slots[k] : NULL;
        if (!w->active || !sl)
            continue;
        *sl = (mv_metrics_slot_t){w->slot,  w->pid > 0, w->gen, w->soft, w->hard,  w->mem,
                                  w->usage, w->priv,    w->rss, w->peak, w->tasks, w->age_s};
    }
    for (int st = 0; st < MV_ST_COUNT; st++)
        tasks[st] = (mv_metrics_count_t){mv_status_name((mv_status_t)st), mv->results.count[st]};
    for (int rr = 1; rr < MV_R_COUNT; rr++)
        if (mv_reason_recycles((mv_reason_t)rr))
            recycles[nrecycles++] =
                (mv_metrics_count_t){mv_reason_name((mv_reason_t)rr), v.recycles[rr]};
    for (size_t k = 0; k < v.nkinds; k++)
        kinds[k] = (mv_metrics_count_t){v.suspects_by_kind[k].kind, v.suspects_by_kind[k].n};
    tm = (mv_metrics_template_t){v.tmpl.pid > 0 && v.tmpl.state && !strcmp(v.tmpl.state, "ready"),
                                 v.tmpl.gen,
                                 v.tmpl.mem,
                                 v.tmpl.usage,
                                 v.tmpl.peak,
                                 v.tmpl.forks,
                                 v.tmpl.replaced};
    r = mv_metrics_render(
        &(mv_metrics_view_t){.slots = slots,
                             .nslots = nslots,
                             .target = v.target,
                             .tasks = tasks,
                             .ntasks = MV_ST_COUNT,
                             .recycles = recycles,
                             .nrecycles = nrecycles,
                             .suspects = kinds,
                             .nsuspects = v.nkinds,
                             .spawned = v.spawned,
                             .child_recycles = v.child_recycles,
                             .reloads = (uint64_t)mv->reloads,
                             .workers = v.live,
                             .queue = pg.queue,
                             .in_flight = (int64_t)v.in_flight,
                             .spares = v.nspares,
                             .spares_usage = usage_of(v.spares, v.nspares),
                             .successors = v.nsuccessors,
                             .successors_usage = usage_of(v.successors, v.nsuccessors),
                             .starting = v.starting,
                             .waiting_to_start = v.waiting_to_start,
                             .uptime_s = (double)(mv_now_ms() - mv->started_ms) / 1000.0,
                             .paused_host = mv->pool.dispatch.paused & MV_PAUSE_HOST_MEMORY,
                             .paused_results = mv_results_backlogged(&mv->results),
                             .have_host = mv->hostmem.have,
                             .host_available = mv->hostmem.available,
                             .host_threshold = mv->hostmem.threshold,
                             .orphans_reaped = mv->reaper.reaped,
                             .tmpl = v.tmpl.on ? &tm : NULL},
        out);
    free(slots);
    free(kinds);
    mv_pool_view_free(&v);
    return r;
}

/* ---- recycle ---- */

/* Recycles slot n (0 = all) with reason `requested`; the slots asked, as a JSON array. */
static json_t *recycle_all_json(mv_t *mv, int n)
{
    int *slots = calloc((size_t)mv->pool.nslots, sizeof *slots);
    int k = mv_pool_recycle(&mv->pool, n, MV_R_REQUESTED, slots);
    json_t *a = json_array();

    for (int i = 0; slots && i < k; i++)
        json_array_append_new(a, json_integer(slots[i]));
    free(slots);
    return a;
}

static json_t *recycle(mv_t *mv, json_t *req, char *err, size_t errlen)
{
    json_t *slot = json_object_get(req, "slot"), *asked;
    int n;

    if (json_is_string(slot) && strcmp(json_string_value(slot), "all") == 0) {
        n = 0;
    } else if (json_is_integer(slot) && json_integer_value(slot) >= 1 &&
               json_integer_value(slot) <= mv->pool.nslots) {
        n = (int)json_integer_value(slot);
    } else {
        snprintf(err, errlen, "recycle takes \"slot\": a slot number from 1 to %d, or \"all\"",
                 mv->pool.nslots);
        return NULL;
    }
    if (mv->stopping) {
        snprintf(err, errlen, "memvisor is stopping");
        return NULL;
    }
    asked = recycle_all_json(mv, n);
    mv_info(&mv->log, "recycle_requested", MV_S("slot", n ? "one" : "all"),
            MV_I("workers", (long long)json_array_size(asked)));
    return json_pack("{s:o}", "workers", asked);
}

/* ---- workers: the pool's size, live ---- */

/* The reply to a scale, and its message. NULL (err said) when it could not be done. */
static json_t *scale(mv_t *mv, int n, const char *by, char *err, size_t errlen)
{
    int was = mv->pool.slots.live, r = mv_pool_scale(&mv->pool, n, by);

    if (r == -ECANCELED)
        snprintf(err, errlen, "memvisor is stopping");
    else if (r == -EINVAL)
        snprintf(err, errlen, "%d workers is out of range: 1 to %d", n, MV_POOL_MAX_WORKERS);
    else if (r < 0)
        snprintf(err, errlen, "out of memory: still %d workers", was);
    if (r < 0)
        return NULL;
    if (!mv->service) /* the task source reads for as many workers as there are now */
        mv_rtasks_capacity(&mv->tasks, mv->cfg, n);
    return json_pack("{s:i, s:i, s:s}", "from", was, "to", n, "message",
                     n > was   ? "scaling up: the new workers start now"
                     : n < was ? "scaling down: the workers removed finish their task first"
                               : "unchanged: as many workers as asked already");
}

/* `workers` {"n": N}: the number of workers, without a restart. The file is not written: its
 * [supervisor] workers applies again at the next reload (docs/operations.md). */
static json_t *workers(mv_t *mv, json_t *req, char *err, size_t errlen)
{
    json_t *n = json_object_get(req, "n"), *reply;
    json_int_t v;

    if (!json_is_integer(n) || (v = json_integer_value(n)) < 1 || v > MV_POOL_MAX_WORKERS) {
        char *got = n ? json_dumps(n, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        snprintf(err, errlen,
                 "the request's \"n\" must be a number of workers from 1 to %d, not %.40s",
                 MV_POOL_MAX_WORKERS, got ? got : "missing");
        free(got);
        return NULL;
    }
    if (mv->stopping) {
        snprintf(err, errlen, "memvisor is stopping");
        return NULL;
    }
    if ((reply = scale(mv, (int)v, "control", err, errlen)))
        mv_notify_status(&mv->notify, "%d workers asked (control socket)", (int)v);
    return reply;
}

/* ---- reload ---- */

/* Every mistake of the new configuration, in one line each. */
static void errors_text(const mv_errors_t *e, char *err, size_t errlen)
{
    size_t used = 0;

    err[0] = '\0';
    for (size_t i = 0; i < e->n && used < errlen; i++)
        used += (size_t)snprintf(err + used, errlen - used, "%s%s", i ? "; " : "", e->msg[i]);
}

/* Keeps a heap object until the run ends. 0 or -ENOMEM. */
static int keep(void ***list, int *n, void *item)
{
    void **grown = realloc(*list, (size_t)(*n + 1) * sizeof *grown);

    if (!grown)
        return -ENOMEM;
    grown[(*n)++] = item;
    *list = grown;
    return 0;
}

/* The new worker command, when it comes from the configuration and changed. */
static int new_command(mv_t *mv, const mv_config_t *nc, char ***argv, char *err, size_t errlen)
{
    const char *why = NULL;
    int n = 0;

    *argv = NULL;
    if (mv->argv_from_cli || strcmp(nc->worker.command, mv->cfg->worker.command) == 0)
        return 0;
    if (mv_split_words(nc->worker.command, argv, &n, &why) < 0 || n == 0) {
        snprintf(err, errlen, "[worker] command: %s", why ? why : "empty");
        mv_argv_free(*argv);
        *argv = NULL;
        return -1;
    }
    return 0;
}

/* What the command line set (--tasks, --results, --resume) wins over the file at a reload as
 * it did at the start; without this every reload of such a run named them in restart_needed.
 * 0 or -ENOMEM. */
static int cli_wins(const mv_t *mv, mv_config_t *nc)
{
    char *s;

    if (mv->tasks_from_cli) {
        if (!(s = strdup(mv->cfg->tasks.source)))
            return -ENOMEM;
        free(nc->tasks.source);
        nc->tasks.source = s;
    }
    if (mv->results_from_cli) {
        if (!(s = strdup(mv->cfg->tasks.results)))
            return -ENOMEM;
        free(nc->tasks.results);
        nc->tasks.results = s;
    }
    if (mv->resume_from_cli)
        nc->tasks.resume = mv->cfg->tasks.resume;
    return 0;
}

static json_t *reload(mv_t *mv, char *err, size_t errlen)
{
    mv_config_t *nc = calloc(1, sizeof *nc);
    mv_errors_t errs = {0};
    json_t *changed = json_array(), *kept = json_array(), *reply;
    mv_config_diff_t diff = {0};
    char **argv = NULL;
    int r;

    if (mv->stopping || !nc) {
        snprintf(err, errlen, "%s", nc ? "memvisor is stopping" : "out of memory");
        free(nc);
        json_decref(changed);
        json_decref(kept);
        return NULL;
    }
    mv_notify_reloading(&mv->notify);
    r = mv_config_rebuild(nc, mv->config_path, mv->overrides, mv->noverrides, &errs);
    if (r == 0)
        r = cli_wins(mv, nc);
    if (r == 0)
        r = mv_config_diff(nc, mv->cfg, &diff);
    for (size_t i = 0; i < diff.nchanged; i++)
        json_array_append_new(
            changed, json_sprintf("%s.%s", diff.changed[i]->section, diff.changed[i]->name));
    for (size_t i = 0; i < diff.nkept; i++)
        json_array_append_new(kept,
                              json_sprintf("%s.%s", diff.kept[i]->section, diff.kept[i]->name));
    mv_config_diff_free(&diff);
    if (r == 0 && new_command(mv, nc, &argv, err, errlen) < 0)
        r = -EINVAL;
    else if (r == -EINVAL)
        errors_text(&errs, err, errlen);
    else if (r == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (r == 0 && (keep((void ***)&mv->old_cfgs, &mv->nold, nc) < 0 ||
                   (argv && keep((void ***)&mv->old_argvs, &mv->nold_argv, argv) < 0))) {
        snprintf(err, errlen, "out of memory");
        r = -ENOMEM;
    }
    mv_errors_free(&errs);
    if (r < 0) {
        mv_warn(&mv->log, "reload_failed", MV_S("config", mv->config_path), MV_S("error", err),
                MV_S("msg", "nothing changed"));
        if (nc && (mv->nold == 0 || mv->old_cfgs[mv->nold - 1] != nc)) {
            mv_config_free(nc);
            free(nc);
        }
        mv_argv_free(argv);
        json_decref(changed);
        json_decref(kept);
        mv_notify_ready(&mv->notify, "reload failed: nothing changed");
        return NULL;
    }
    /* The swap: everything reads the configuration through these pointers. */
    mv->cfg = nc;
    if (argv)
        mv->argv = argv;
    mv->log.level = nc->log.level;
    mv->cg.soft = nc->limits.memory_soft;
    mv->cg.hard = nc->limits.memory_hard;
    mv->cg.enforce = nc->limits.enforce;
    mv_pool_reconfigure(&mv->pool, nc, argv);
    /* The file's worker count wins at a reload, over a `workers` command before it. */
    if (nc->supervisor.workers != mv->pool.slots.live) {
        char why[160];
        json_t *s = scale(mv, nc->supervisor.workers, "reload", why, sizeof why);
        if (!s)
            mv_warn(&mv->log, "scale_failed", MV_S("config", mv->config_path), MV_S("error", why));
        json_decref(s);
    }
    mv->reloads++;
    reply = json_pack("{s:s?, s:o, s:o, s:o}", "config", mv->config_path, "changed", changed,
                      "restart_needed", kept, "workers", recycle_all_json(mv, 0));
    {
        char *c = json_dumps(changed, JSON_COMPACT), *k = json_dumps(kept, JSON_COMPACT);
        mv_info(&mv->log, "reload", MV_S("config", mv->config_path), MV_S("changed", c),
                MV_S("restart_needed", k),
                MV_I("recycling", (long long)json_array_size(json_object_get(reply, "workers"))));
        free(c);
        free(k);
    }
    json_object_set_new(reply, "message",
                        json_sprintf("reloaded %s: %zu setting%s changed, %zu kept until restart; "
                                     "replacing every worker",
                                     mv->config_path ? mv->config_path : "(defaults and -o)",
                                     json_array_size(changed),
                                     json_array_size(changed) == 1 ? "" : "s",
                                     json_array_size(kept)));
    mv_notify_ready(&mv->notify, "reloaded");
    return reply;
}

static void release(mv_t *mv)
{
    for (int i = 0; i < mv->nold; i++) {
        mv_config_free(mv->old_cfgs[i]);
        free(mv->old_cfgs[i]);
    }
    for (int i = 0; i < mv->nold_argv; i++)
        mv_argv_free(mv->old_argvs[i]);
    free(mv->old_cfgs);
    free(mv->old_argvs);
    mv->old_cfgs = NULL;
    mv->old_argvs = NULL;
    mv->nold = mv->nold_argv = 0;
}

/* ---- the control socket's handler ---- */

static json_t *control(void *arg, const char *cmd, json_t *req, char *err, size_t errlen)
{
    mv_t *mv = arg;

    if (strcmp(cmd, "status") == 0)
        return status_json(mv, err, errlen);
    if (strcmp(cmd, "metrics") == 0) {
        mv_buf_t text = {0};
        json_t *reply = metrics(mv, &text) == 0
                            ? json_pack("{s:s%}", "text", (const char *)mv_buf_head(&text),
                                        mv_buf_unread(&text))
                            : NULL;
        mv_buf_free(&text);
        if (!reply)
            snprintf(err, errlen, "out of memory");
        return reply;
    }
    if (strcmp(cmd, "recycle") == 0)
        return recycle(mv, req, err, errlen);
    if (strcmp(cmd, "reload") == 0)
        return reload(mv, err, errlen);
    if (strcmp(cmd, "workers") == 0)
        return workers(mv, req, err, errlen);
    if (strcmp(cmd, "stop") == 0) {
        mv_info(&mv->log, "stop_requested", MV_S("from", "control socket"));
        if (!mv->stopping) {
            mv->stop_requested = true; /* the exit code says who stopped the batch */
            mv_stop(mv, true);
        }
        return json_object();
    }
    snprintf(err, errlen,
             "unknown command \"%.40s\": status, recycle, reload, workers, stop or metrics", cmd);
    return NULL;
}

const mv_commands_t mv_commands = {control, reload, release, metrics};
