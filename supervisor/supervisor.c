/*
 * supervisor: a run from start to summary.
 *
 * Shutdown order: the pool stops its workers (gracefully: running tasks get grace_period),
 * then the results are flushed and made durable, then the last handles close and uv_run
 * returns. A second SIGINT/SIGTERM kills the workers at once.
 */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handoff.h"
#include "template.h"

static void close_signals(mv_t *mv)
{
    mv_reaper_close(&mv->reaper);
    mv_hostmem_close(&mv->hostmem);
    if (!mv->sig_open)
        return;
    mv->sig_open = false;
    for (size_t i = 0; i < MV_ARRAY_LEN(mv->sig); i++)
        uv_close((uv_handle_t *)&mv->sig[i], NULL);
}

static void results_closed_cb(void *arg)
{
    close_signals(arg);
}

static void close_metrics(mv_t *mv);

static void pool_stopped_cb(void *arg)
{
    mv_t *mv = arg;

    mv_ticker_stop(mv);
    if (mv->control_open) {
        mv->control_open = false;
        mv_control_close(&mv->control, NULL, NULL);
    }
    close_metrics(mv);
    mv_notify_close(&mv->notify);
    mv_tasks_close(&mv->tasks);
    mv_timeline_close(&mv->timeline, NULL, NULL); /* every worker is gone: no more points */
    mv_results_close(&mv->results, results_closed_cb);
}

/* A resumed results file with lines for tasks the source does not have (ids past its end,
 * or of its empty lines) was written from another source, or the source changed: said once
 * the whole source was read, since the summary counts those lines as they are. */
static void check_resumed(mv_t *mv)
{
    const mv_tasks_t *t = &mv->tasks;
    uint64_t had = mv_idset_count(&mv->results.done);

    if ((t->kind != MV_SRC_FILE && t->kind != MV_SRC_STREAM) || !t->eof || t->error ||
        had <= t->skipped)
        return;
    mv_warn(&mv->log, "resume_mismatch",
            MV_I("results_without_task", (long long)(had - t->skipped)),
            MV_I("source_lines", (long long)t->lineno),
            MV_S("msg", "the results file has lines for tasks that the task source does not have "
                        "(past its end, or empty lines): was it written from another source? "
                        "The summary counts them"));
}

/* Whether the batch is complete: then the workers are let go. */
static void check_done(mv_t *mv)
{
    if (mv->stopping || mv->service || !mv_tasks_all_ended(&mv->tasks))
        return;
    check_resumed(mv);
    mv_info(&mv->log, "batch_done", MV_I("tasks", (long long)mv->tasks.ended));
    mv_stop(mv, true);
}

static void progress_cb(void *arg)
{
    check_done(arg);
}

/* A worker became ready: systemd hears READY=1 once every slot has served, then STATUS. */
static void ready_cb(void *arg)
{
    mv_t *mv = arg;
    mv_pool_t *p = &mv->pool;
    int live = mv_pool_live(p);
    uint64_t done = mv->results.count[MV_ST_OK] + mv->results.count[MV_ST_FAILED];

    if (!mv->announced && live >= p->slots.live) {
        mv->announced = true;
        mv_info(&mv->log, "pool_ready", MV_I("workers", live));
        mv_notify_ready(&mv->notify, "ready");
    }
    if (mv->announced)
        mv_notify_status(&mv->notify, "%d/%d workers ready, %llu %s done, %llu spawned", live,
                         p->slots.live, (unsigned long long)done,
                         mv->service ? "requests" : "tasks", (unsigned long long)p->spawned);
}

static void fatal_cb(void *arg)
{
    mv_t *mv = arg;

    mv->cant_run = true;
    mv_stop(mv, true);
}

static const mv_pool_events_t pool_events = {
    .on_progress = progress_cb,
    .on_ready = ready_cb,
    .on_fatal = fatal_cb,
    .on_stopped = pool_stopped_cb,
};

static void tasks_input_cb(void *arg)
{
    mv_t *mv = arg;

    if (mv->tasks.error && !mv->stopping) {
        mv_error(&mv->log, "tasks_read_failed", MV_S("source", mv->tasks.name),
                 MV_I("line", (long long)mv->tasks.lineno),
                 MV_S("error", uv_strerror(mv->tasks.error)));
        mv->cant_run = true;
        mv_stop(mv, true);
        return;
    }
    mv_pool_kick(&mv->pool);
    check_done(mv);
}

static void results_drained_cb(void *arg)
{
    mv_t *mv = arg;

    mv_pool_kick(&mv->pool);
}

static void results_error_cb(void *arg)
{
    mv_t *mv = arg;

    if (mv->results.error == UV_ENOENT) /* results.c's word for a removed file */
        mv_error(&mv->log, "results_write_failed", MV_S("file", mv->results.path),
                 MV_S("error", uv_strerror(mv->results.error)),
                 MV_S("msg", "the results file was removed while the run wrote it: its lines "
                             "are gone with it; run the batch again"));
    else
        mv_error(&mv->log, "results_write_failed", MV_S("file", mv->results.path),
                 MV_S("error", uv_strerror(mv->results.error)));
    mv->cant_run = true;
    mv_stop(mv, true);
}

void mv_stop(mv_t *mv, bool graceful)
{
    if (!mv->stopping)
        mv_notify_stopping(&mv->notify);
    mv->stopping = true;
    /* A service that stops starts no worker again: its copy of each listening socket goes now,
     * so that once the draining workers have closed theirs a client is refused (and may try
     * elsewhere) instead of being queued by the kernel until memvisor exits and then reset,
     * its request sent and never served. Under socket activation systemd keeps its own. */
    if (mv->service)
        mv_listen_close(&mv->listen);
    mv_pool_stop(&mv->pool, graceful);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    mv_t *mv = h->data;

    if (signum == SIGHUP) {
        char err[1024];
        json_t *reply;

        mv_info(&mv->log, "signal", MV_S("signal", "SIGHUP"), MV_S("msg", "reloading"));
        reply = mv->stopping ? NULL : mv->commands->reload(mv, err, sizeof err);
        json_decref(reply); /* the reload logged what it did, or why it did nothing */
        return;
    }
    if (mv->stop_signal == 0) {
        mv->stop_signal = signum;
        mv_warn(&mv->log, "signal", MV_S("signal", strsignal(signum)),
                MV_S("msg", "stopping: running tasks may finish; signal again to kill workers"),
                MV_I("grace_ms", mv->cfg->supervisor.grace_period));
        mv_stop(mv, true);
    } else {
        mv_warn(&mv->log, "signal", MV_S("signal", strsignal(signum)),
                MV_S("msg", "killing workers now"));
        mv_stop(mv, false);
    }
}

static int start_signals(mv_t *mv)
{
    static const int which[] = {SIGINT, SIGTERM, SIGHUP};
    sigset_t set;
    int r;

    sigemptyset(&set);
    for (size_t i = 0; i < MV_ARRAY_LEN(which); i++) {
        uv_signal_init(&mv->loop, &mv->sig[i]);
        mv->sig[i].data = mv;
        r = uv_signal_start(&mv->sig[i], signal_cb, which[i]);
        if (r < 0)
            return r;
        /* Signal handles must not keep the loop alive on their own. */
        uv_unref((uv_handle_t *)&mv->sig[i]);
        sigaddset(&set, which[i]);
    }
    mv->sig_open = true;
    /* The mask is inherited across exec: from a caller that blocks the signals it sigwaits
     * for (a memvisor.Pool caller), a stop would wait for ever (the Pool's terminate killed
     * us after 20 s, the cgroups left behind). Unblocked once handled: one that came before
     * is delivered now, to the handler. SIGCHLD too: libuv and the reaper learn of exits by it. */
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

/* An ignored SIGCHLD is inherited across exec too (a caller that ignores it to leave no
 * zombies, then runs memvisor.Pool): the kernel then reaps our children itself, and a
 * waitid on a pidfd finds none (every forked worker's and template's exit status was lost:
 * -1). Back to the default, before any child of ours can exit. */
static void default_sigchld(void)
{
    struct sigaction sa;

    if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
        (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT)))
        (void)signal(SIGCHLD, SIG_DFL);
}

/* Confirmed leak suspects, most kept per task first (fd leaks after). */
static int cmp_leak(const void *a, const void *b)
{
    const mv_suspect_count_t *x = a, *y = b;

    if (x->per_task != y->per_task)
        return x->per_task < y->per_task ? 1 : -1;
    return (x->fds_per_task < y->fds_per_task) - (x->fds_per_task > y->fds_per_task);
}

/* The summary's peaks: each slot's, up to MV_SUMMARY_SLOTS slots; past that the highest,
 * the median and the lowest (status and /metrics list every slot). A slot no worker was
 * measured in (none started before the end) has no peak: "-", never "0 B". */
#define MV_SUMMARY_SLOTS 8

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

    return (a > b) - (a < b);
}

static void summary_peaks(const mv_pool_view_t *v)
{
    char hi[24], mid[24], lo[24];
    int64_t *sorted;
    int n = 0, top = 0, low = 0;

    if (v->nslots <= MV_SUMMARY_SLOTS) {
        for (int i = 0; i < v->nslots; i++) {
            mv_fmt_bytes(v->slot_peak[i], hi);
            printf("%s #%d %s", i ? "," : "", i + 1, v->slot_peak[i] > 0 ? hi : "-");
        }
        return;
    }
    if (!(sorted = malloc((size_t)v->nslots * sizeof *sorted))) {
        printf(" (out of memory)");
        return;
    }
    for (int i = 0; i < v->nslots; i++)
        if (v->slot_peak[i] > 0) {
            sorted[n++] = v->slot_peak[i];
            top = v->slot_peak[i] > v->slot_peak[top] ? i : top;
            low = v->slot_peak[low] <= 0 || v->slot_peak[i] < v->slot_peak[low] ? i : low;
        }
    if (n == 0) {
        printf(" none measured");
    } else {
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
        mv_fmt_bytes(v->slot_peak[top], hi);
        mv_fmt_bytes(sorted[(n - 1) / 2], mid);
        mv_fmt_bytes(v->slot_peak[low], lo);
        printf(" highest %s (#%d), median %s, lowest %s (#%d) of %d slots", hi, top + 1, mid, lo,
               low + 1, n);
    }
    if (n < v->nslots)
        printf(", %d never measured (no worker started there before the end)", v->nslots - n);
    free(sorted);
}

/* The summary's leaks line: the confirmed suspects, the three biggest named with what they
 * keep a task and their evidence, and where the rest is (with leak detection off: none). */
static void summary_leaks(const mv_t *mv, const mv_pool_view_t *v)
{
    mv_suspect_count_t *k;
    size_t n = v->nkinds;

    if (!mv->cfg->leak.detect)
        return;
    if (n == 0 || !(k = malloc(n * sizeof *k))) {
        printf("  leaks     %s\n", n ? "(out of memory)" : "none confirmed");
        return;
    }
    memcpy(k, v->suspects_by_kind, n * sizeof *k);
    qsort(k, n, sizeof *k, cmp_leak);
    printf("  leaks     %zu kind%s confirmed:", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n && i < 3; i++) {
        char per[24];
        if (k[i].per_task > 0)
            mv_fmt_bytes(k[i].per_task, per);
        else
            snprintf(per, sizeof per, "%.1f fds", k[i].fds_per_task);
        printf("%s %s %s a task (%s)", i ? "," : "", k[i].kind, per,
               k[i].evidence ? k[i].evidence : "?");
    }
    if (n > 3)
        printf(", %zu more", n - 3);
    printf("\n");
    if (mv->run.dir)
        printf("            their evidence and snapshots: memvisor report %s\n", mv->run.dir);
    free(k);
}

static void summary(mv_t *mv, int code)
{
    const uint64_t *c = mv->results.count;
    uint64_t left = mv_tasks_outstanding(&mv->tasks);
    char a[24], b[24];
    mv_pool_view_t v;
    int any = 0;

    if (mv_pool_view(&mv->pool, &v) < 0)
        return;
    printf("\nmemvisor: %s in %.1f s\n",
           mv->cant_run         ? "run ended early"
           : mv->stop_requested ? "stopped by memvisor stop"
           : mv->stop_signal    ? "stopped by a signal"
                                : "done",
           (double)(mv_now_ms() - mv->started_ms) / 1000.0);
    printf("  tasks     %llu ok, %llu failed, %llu quarantined; %llu retried after their worker "
           "died",
           (unsigned long long)c[MV_ST_OK], (unsigned long long)c[MV_ST_FAILED],
           (unsigned long long)c[MV_ST_QUARANTINED], (unsigned long long)v.requeued);
    if (v.escalated) /* [limits] escalate */
        printf(", %llu of them with more memory", (unsigned long long)v.escalated);
    printf("\n");
    if (mv->not_run > 0)
        printf("  not run   %lld tasks (%llu loaded but unfinished, %lld not read from the "
               "source): no result line\n",
               (long long)mv->not_run, (unsigned long long)left,
               (long long)mv->not_run - (long long)left);
    else if (mv->not_run < 0)
        printf("  not run   %llu loaded but unfinished, and the rest of %s (not counted): no "
               "result line\n",
               (unsigned long long)left, mv->tasks.name ? mv->tasks.name : "the source");
    printf("  workers   %d slots", v.target);
    if (v.nslots != v.target) /* scaled: slot numbers that served at some time */
        printf(" (%d numbered)", v.nslots);
    printf(", %llu spawned; recycles:", (unsigned long long)v.spawned);
    for (int r = 1; r < MV_R_COUNT; r++)
        if (v.recycles[r] && mv_reason_recycles((mv_reason_t)r)) {
            printf("%s %s %llu", any ? "," : "", mv_reason_name(r),
                   (unsigned long long)v.recycles[r]);
            any = 1;
        }
    printf("%s\n", any ? "" : " none");
    mv_fmt_bytes(mv->cfg->limits.memory_soft, a);
    mv_fmt_bytes(mv->cfg->limits.memory_hard, b);
    printf("  memory    peak per worker (%s):", mv->cg.version == MV_CG_V1   ? "cgroup v1"
                                                : mv->cg.version == MV_CG_V2 ? "cgroup v2"
                                                                             : "sampled");
    summary_peaks(&v);
    printf("; limits soft %s, hard %s\n", mv->cfg->limits.memory_soft ? a : "off",
           mv->cfg->limits.memory_hard ? b : "off");
    summary_leaks(mv, &v);
    if (mv->results.error)
        printf("  results   %s: WRITING FAILED (%s): lines after the failure are missing\n",
               mv->results.path, uv_strerror(mv->results.error));
    else if (mv->results.path && *mv->results.path)
        printf("  results   %s\n", mv->results.path);
    mv_rtasks_summary(&mv->tasks, stdout); /* a Redis source: its line */
    printf("  exit      %d\n", code);
    fflush(stdout);
    mv_pool_view_free(&v);
}

/* Tasks of the batch that got no final line: loaded but unfinished, and what the source
 * still holds (-1: not countable, stdin). After the loop has ended: it may read a file. */
static int64_t count_not_run(mv_t *mv)
{
    int64_t rest;

    if (mv->service || mv_tasks_all_ended(&mv->tasks))
        return 0;
    rest = mv_tasks_count_rest(&mv->tasks);
    return rest < 0 ? -1 : (int64_t)mv_tasks_outstanding(&mv->tasks) + rest;
}

static int exit_code(mv_t *mv)
{
    const uint64_t *c = mv->results.count;

    if (mv->cant_run)
        return MV_EXIT_CANT_RUN;
    /* A service runs until it is told to stop: being stopped is its normal end. */
    if (mv->service)
        return MV_EXIT_OK;
    /* Judged at exit (exitcode.h): a stop that let the last tasks finish changed nothing. */
    if (!mv_tasks_all_ended(&mv->tasks) && mv->stop_requested)
        return MV_EXIT_STOPPED;
    if (!mv_tasks_all_ended(&mv->tasks) && mv->stop_signal)
        return MV_EXIT_SIGNAL + mv->stop_signal;
    if (c[MV_ST_FAILED] || c[MV_ST_QUARANTINED])
        return MV_EXIT_TASKS;
    return MV_EXIT_OK;
}

/* The children the pool reaps itself: workers forked by its warm template (templates.h). */
static bool pool_keeps(void *arg, int pid)
{
    return mv_pool_keeps(arg, pid);
}

/* [supervisor] subreaper (reaper.h): auto is yes when memvisor is PID 1, where orphans come
 * to it whatever it asks, and would stay zombies. -1 when it cannot be set up (logged). */
static int open_reaper(mv_t *mv)
{
    mv_reapmode_t mode = mv->cfg->supervisor.subreaper;
    bool pid1 = getpid() == 1;
    char why[256];

    if (mode == MV_REAP_NO || (mode == MV_REAP_AUTO && !pid1)) {
        if (pid1)
            mv_warn(&mv->log, "subreaper", MV_S("state", "off"), MV_I("pid1", 1),
                    MV_S("msg", "memvisor is PID 1 with subreaper = no: orphans it inherits "
                                "stay zombies until it exits"));
        return 0;
    }
    if (mv_reaper_open(&mv->reaper, &mv->loop, &mv->log, why, sizeof why) < 0) {
        mv_error(&mv->log, "start_failed", MV_S("call", "subreaper"), MV_S("error", why));
        return -1;
    }
    mv_reaper_keep(&mv->reaper, pool_keeps, &mv->pool);
    mv_info(&mv->log, "subreaper", MV_S("state", "on"), MV_I("pid1", pid1),
            MV_S("reason", mode == MV_REAP_YES ? "subreaper = yes" : "memvisor is PID 1"));
    return 0;
}

static void host_memory_cb(void *arg, bool paused)
{
    mv_t *mv = arg;

    mv_dispatch_pause(&mv->pool.dispatch, MV_PAUSE_HOST_MEMORY, paused);
}

/* [supervisor] pause_below (hostmem.h): read on the sampler's period, from before the first
 * task is handed out. A service hands out no tasks: nothing to pause. */
static void open_hostmem(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    /* A test knob: a fixture file in place of the host's /proc/meminfo. */
    const char *path = getenv("MEMVISOR_TEST_MEMINFO");
    int r;

    if (!cfg->supervisor.pause_bytes && !cfg->supervisor.pause_permille)
        return;
    if (mv->service) {
        mv_warn(&mv->log, "pause_ignored", MV_S("pause_below", cfg->supervisor.pause_below),
                MV_S("msg", "a service hands out no tasks: [supervisor] pause_below is for "
                            "batches"));
        return;
    }
    r = mv_hostmem_open(&mv->hostmem, &mv->loop, &mv->log, path ? path : "/proc/meminfo",
                        cfg->supervisor.pause_bytes, cfg->supervisor.pause_permille,
                        (uint64_t)cfg->limits.sample_interval, host_memory_cb, mv);
    if (r < 0)
        mv_warn(&mv->log, "host_memory_unreadable", MV_S("error", uv_strerror(r)),
                MV_S("msg", "no pause tier for this run"));
}

/* Sets up the per-worker cgroups. -1 when the configured mode cannot work (exit 3). */
static int setup_cgroups(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    mv_cg_opts_t o = {
        .mode = cfg->supervisor.cgroup,
        .parent = cfg->supervisor.cgroup_parent,
        .soft = cfg->limits.memory_soft,
        .hard = cfg->limits.memory_hard,
        .enforce = cfg->limits.enforce,
        /* A test knob: fixture trees in place of /proc's view of the cgroups. */
        .proc_cgroup = getenv("MEMVISOR_TEST_PROC_CGROUP"),
        .mountinfo = getenv("MEMVISOR_TEST_MOUNTINFO"),
        .log = &mv->log, /* event=stale_run_removed */
    };
    char why[512];
    ssize_t n;

    n = readlink("/proc/self/exe", mv->self_exe, sizeof mv->self_exe - 1);
    mv->self_exe[n > 0 ? n : 0] = '\0';
    if (mv_cg_setup(&mv->cg, &o, why, sizeof why) < 0) {
        mv_error(&mv->log, "cgroup_setup_failed",
                 MV_S("mode", cfg->supervisor.cgroup == MV_CGMODE_V1 ? "v1" : "v2"),
                 MV_S("error", why));
        return -1;
    }
    if (mv->cg.version == MV_CG_OFF && cfg->supervisor.cgroup != MV_CGMODE_OFF)
        /* Said once: limits now rest on samples, and peaks are sampled. */
        mv_warn(&mv->log, "cgroup_unavailable", MV_S("reason", why),
                MV_S("msg", "no per-worker cgroups: memory is sampled from /proc, the hard limit "
                            "is enforced by sampling, per-task peaks are sampled"),
                MV_I("sample_ms", cfg->limits.sample_interval));
    else if (*why && mv->cg.version != MV_CG_OFF)
        mv_warn(&mv->log, "cgroup_stale", MV_S("msg", why));
    return 0;
}

static void teardown_cgroups(mv_t *mv)
{
    char why[512];

    if (mv->cg.version != MV_CG_OFF && mv_cg_teardown(&mv->cg, why, sizeof why) < 0)
        mv_warn(&mv->log, "cgroup_teardown_failed", MV_S("error", why));
}

/* run.json: what ran, with what limits, where the results are, and (final) how it ended. */
static void write_run_json(mv_t *mv, int code, bool final)
{
    const mv_config_t *cfg = mv->cfg;
    const char *file = mv_rurl_results_file(cfg->tasks.results);
    char path[4200], now[48], results[4096];
    json_t *doc, *cmd = json_array();

    if (!mv->run.dir)
        return;
    for (char **a = mv->argv; *a; a++)
        json_array_append_new(cmd, json_string(*a));
    mv_iso_time(now);
    /* the results file (a results stream's URL, which may hold a password, stays out) */
    if (!*file || !realpath(file, results))
        snprintf(results, sizeof results, "%s", file);
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s?, s:o, s:s?, s:s?, s:s, s:i}", "memvisor", MV_VERSION,
                    "run", mv->run.id, "pid", (int)getpid(), "started", mv->started_iso, "ended",
                    final ? now : NULL, "command", cmd, "config", mv->config_path, "results",
                    *results ? results : NULL, "cgroup", mv->cg.desc, "workers",
                    /* as scaled last (`memvisor workers N` is in no configuration) */
                    mv->pool.started ? mv->pool.slots.live : cfg->supervisor.workers);
    json_object_set_new(doc, "limits",
                        json_pack("{s:I, s:I, s:I, s:I, s:s, s:b}", "memory_soft",
                                  (json_int_t)cfg->limits.memory_soft, "memory_hard",
                                  (json_int_t)cfg->limits.memory_hard, "max_tasks",
                                  (json_int_t)cfg->limits.max_tasks, "max_lifetime_ms",
                                  (json_int_t)cfg->limits.max_lifetime, "metric",
                                  cfg->limits.metric == MV_METRIC_RSS ? "rss" : "private",
                                  "enforce", cfg->limits.enforce));
    json_object_set_new(doc, "leak",
                        json_pack("{s:b, s:i, s:i, s:I, s:I, s:s}", "detect", cfg->leak.detect,
                                  "window", cfg->leak.window, "warmup", cfg->leak.warmup,
                                  "min_slope", (json_int_t)cfg->leak.min_slope, "task_growth",
                                  (json_int_t)cfg->leak.task_growth, "kind", cfg->leak.kind));
    json_object_set_new(doc, "exit", final ? json_integer(code) : json_null());
    json_object_set_new(doc, "tasks",
                        json_pack("{s:I, s:I, s:I}", "ok", (json_int_t)mv->results.count[MV_ST_OK],
                                  "failed", (json_int_t)mv->results.count[MV_ST_FAILED],
                                  "quarantined", (json_int_t)mv->results.count[MV_ST_QUARANTINED]));
    if (final) /* null: the rest of stdin was not counted */
        json_object_set_new(json_object_get(doc, "tasks"), "not_run",
                            mv->not_run >= 0 ? json_integer(mv->not_run) : json_null());
    snprintf(path, sizeof path, "%s/run.json", mv->run.dir);
    if (mv_json_write_atomic(path, doc) < 0)
        mv_warn(&mv->log, "run_file_failed", MV_S("file", path));
    json_decref(doc);
}

/* [supervisor] keep_runs: the run directories beyond the newest keep_runs (this one
 * included) go, but for those whose memvisor still holds their lock. */
static void prune_runs(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    const char *dir = cfg->supervisor.state_dir;
    char why[PATH_MAX + 128] = "";
    mv_prune_t pr;

    if (cfg->supervisor.keep_runs <= 0)
        return;
    if (mv_rundir_prune(dir, cfg->supervisor.keep_runs, &pr, why, sizeof why) < 0) {
        mv_warn(&mv->log, "prune_failed", MV_S("state_dir", dir), MV_S("error", why));
        return;
    }
    if (pr.removed)
        mv_info(&mv->log, "runs_pruned", MV_S("state_dir", dir), MV_I("removed", pr.removed),
                MV_I("kept", pr.kept), MV_I("running", pr.running),
                MV_I("keep_runs", cfg->supervisor.keep_runs));
    if (pr.failed)
        mv_warn(&mv->log, "prune_failed", MV_S("state_dir", dir), MV_I("failed", pr.failed),
                MV_S("error", why));
}

/* The run directory (events, snapshots) and the leak detector. Without a usable state
 * directory the run goes on, without snapshots: said once. */
static void open_run(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    mv_leak_cfg_t lc = {cfg->leak.window, cfg->leak.warmup, cfg->leak.min_slope,
                        cfg->leak.task_growth};
    char why[512];

    mv_iso_time(mv->started_iso);
    if (mv_rundir_open(&mv->run, cfg->supervisor.state_dir, getpid(), why, sizeof why) < 0) {
        mv_warn(&mv->log, "run_dir_unavailable", MV_S("error", why),
                MV_S("msg", "no events file and no snapshots for this run"));
        mv_rundir_close(&mv->run);
    } else {
        mv->log.events_fd = mv->run.events_fd;
        mv->log.events_max = cfg->log.events_max;
        mv->log.events_bytes = 0;
        if (asprintf(&mv->log.events_path, "%s/events.jsonl", mv->run.dir) < 0)
            mv->log.events_path = NULL; /* no bound, rather than no events */
        prune_runs(mv);
    }
    if (cfg->leak.detect && !(mv->leak = mv_leak_new(&lc)))
        mv_warn(&mv->log, "leak_unavailable", MV_S("error", "out of memory"));
}

/* What to change when the control socket cannot be made: the key that placed it. By default
 * it is in state_dir, which an operator set for the runs and may not think of as the
 * socket's place (an unwritable state_dir ends the run here, after run_dir_unavailable). */
static const char *control_fix(const mv_config_t *cfg)
{
    if (cfg->control.socket && *cfg->control.socket)
        return "set [control] socket to a path memvisor can bind, or to none for no control "
               "socket";
    return "the control socket is STATE_DIR/control.sock: make [supervisor] state_dir a "
           "directory memvisor can write, or set [control] socket to another path, or to none "
           "for no control socket";
}

/* A control socket another memvisor answers on refuses the run, before its run directory is
 * made (mv_control_open replaces a stale one later). 0 or -1 (logged). */
static int probe_control(mv_t *mv)
{
    char path[256], why[1024];
    int r = mv_control_path(mv->cfg, path, sizeof path);

    if (r == -ENOENT)
        return 0; /* [control] socket = none */
    if (r < 0) {
        mv_error(&mv->log, "control_failed", MV_S("error", "control socket path too long"));
        return -1;
    }
    if (mv_control_probe(path, why, sizeof why) < 0) {
        mv_error(&mv->log, "control_failed", MV_S("socket", path), MV_S("error", why));
        return -1;
    }
    return 0;
}

static int metrics_cb(void *arg, mv_buf_t *out)
{
    mv_t *mv = arg;

    return mv->commands->metrics(mv, out);
}

/* [metrics] listen: GET /metrics over HTTP, from the loop. 0 or -1 (logged). */
static int open_metrics(mv_t *mv)
{
    const char *spec = mv->cfg->metrics.listen;
    char why[256];

    if (!*spec)
        return 0;
    if (mv_metrics_http_open(&mv->metrics, &mv->loop, &mv->log, spec, metrics_cb, mv, why,
                             sizeof why) < 0) {
        mv_error(&mv->log, "metrics_failed", MV_S("listen", spec), MV_S("error", why));
        return -1;
    }
    mv->metrics_open = true;
    return 0;
}

static void close_metrics(mv_t *mv)
{
    if (!mv->metrics_open)
        return;
    mv->metrics_open = false;
    mv_metrics_http_close(&mv->metrics, NULL, NULL);
}

/* The service's listening sockets, the control socket (said once if there is none) and the
 * metrics endpoint. 0 or -1 (logged). */
static int open_service(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    char path[256], why[512];
    int r;

    if (open_metrics(mv) < 0)
        return -1;
    if (mv_listen_open(&mv->listen, cfg->service.listen, cfg->service.backlog, &mv->log, why,
                       sizeof why) < 0) {
        mv_error(&mv->log, "listen_failed", MV_S("listen", cfg->service.listen),
                 MV_S("error", why));
        return -1;
    }
    r = mv_control_path(cfg, path, sizeof path);
    if (r == -ENOENT)
        return 0; /* [control] socket = none */
    if (r < 0) {
        mv_error(&mv->log, "control_failed", MV_S("error", "control socket path too long"));
        return -1;
    }
    if (mv_control_open(&mv->control, &mv->loop, &mv->log, path, mv->commands->control, mv, why,
                        sizeof why) < 0) {
        mv_error(&mv->log, "control_failed", MV_S("socket", path), MV_S("error", why),
                 MV_S("msg", control_fix(cfg)));
        return -1;
    }
    mv->control_open = true;
    mv_info(&mv->log, "control", MV_S("socket", path));
    return 0;
}

/* Opens the task source, then the results file, then the signals. 0 or -1 (logged). */
static int open_io(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    char why[1024];
    int r;

    /* A file, stdin, or a Redis stream (rtasks.h); none for a service. */
    r = mv_rtasks_open_any(&mv->tasks, &mv->loop, &mv->log, cfg, tasks_input_cb, mv, why,
                           sizeof why);
    if (r < 0) {
        mv_error(&mv->log, "tasks_open_failed", MV_S("source", cfg->tasks.source),
                 MV_S("error", why));
        return -1;
    }
    if (cfg->tasks.follow && mv->tasks.kind != MV_SRC_REDIS && !mv->service)
        mv_warn(&mv->log, "follow_ignored", MV_S("source", cfg->tasks.source),
                MV_S("msg", "[tasks] follow is for a Redis source: a file source ends at its "
                            "end (to follow a growing file, pipe it in: tail -f FILE | memvisor "
                            "run --tasks - ...)"));
    /* Checks and locks the results (with --resume, reads them back); writes nothing: the
     * first write comes from the loop, after every check that can refuse the run. */
    r = mv_results_open(&mv->results, &mv->loop,
                        &(mv_results_opts_t){mv_rurl_results_file(cfg->tasks.results),
                                             cfg->tasks.resume, cfg->tasks.results_retry,
                                             &mv->tasks, &mv->log, results_error_cb, mv},
                        why, sizeof why);
    mv->results.on_drained = results_drained_cb;
    if (r < 0) {
        mv_error(&mv->log, "results_open_failed", MV_S("file", cfg->tasks.results),
                 MV_S("error", why));
        return -1;
    }
    mv_rtasks_attach_results(&mv->tasks, &mv->results); /* a Redis source acks when written */
    default_sigchld();
    r = start_signals(mv);
    if (r < 0) {
        mv_error(&mv->log, "start_failed", MV_S("call", "uv_signal_start"),
                 MV_S("error", uv_strerror(r)));
        return -1;
    }
    return 0;
}

/* The run's first line: what runs, how, where. */
static void log_start(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;

    mv_info(&mv->log, "start", MV_S("version", MV_VERSION),
            MV_S("config", mv->config_path ? mv->config_path : "(defaults)"),
            MV_S("command", mv->argv[0]), MV_I("workers", cfg->supervisor.workers),
            MV_S("protocol", cfg->worker.protocol == MV_PROTO_API     ? "api"
                             : cfg->worker.protocol == MV_PROTO_LINES ? "lines"
                                                                      : "none"),
            MV_S("mode", mv->service ? "service" : "batch"), MV_S("memory", mv->cg.desc),
            MV_S("state_dir", cfg->supervisor.state_dir), MV_S("run", mv->run.dir));
}

/* The memory timeline of the run (points from the workers' readings, marks from the pool;
 * closed once the pool has stopped, so every exit mark is in it), then the pool. A pool
 * that cannot start stops the run (exit 3); one that did watches the host's memory. */
static void start_pool(mv_t *mv)
{
    int r;

    if (mv->run.dir && (r = mv_timeline_open(&mv->timeline, &mv->loop, mv->run.dir, NULL)) < 0)
        mv_warn(&mv->log, "timeline_open_failed", MV_S("dir", mv->run.dir),
                MV_S("error", strerror(-r)));
    r = mv_pool_start(&mv->pool,
                      &(mv_pool_opts_t){
                          .loop = &mv->loop,
                          .log = &mv->log,
                          .cfg = mv->cfg,
                          .tasks = &mv->tasks,
                          .results = &mv->results,
                          .leak = mv->leak,
                          .run = &mv->run,
                          .argv = mv->argv,
                          .env = environ,
                          .self_exe = mv->self_exe,
                          .cg = &mv->cg,
                          .listen = mv->listen.n ? &mv->listen : NULL,
                          .service = mv->service,
                          .timeline = mv->timeline.path ? &mv->timeline : NULL,
                      },
                      &pool_events, mv);
    if (r < 0) {
        mv_error(&mv->log, "start_failed", MV_S("call", "mv_pool_start"),
                 MV_S("error", strerror(-r)));
        mv->cant_run = true;
        mv_stop(mv, false);
    }
    if (r == 0)
        open_hostmem(mv);
}

/* A template handed over by whoever exec'd us (handoff.h, memvisor.Pool): the first template
 * adopts it. Refused (killed) when it is not what it says, or templates are off. */
static void take_handoff(mv_t *mv)
{
    mv_handoff_t h;
    char why[256];
    int r = mv_handoff_take(&h, why, sizeof why);

    if (r < 0)
        mv_warn(&mv->log, "template_handoff_refused", MV_S("error", why));
    if (r <= 0)
        return;
    if (!mv->cfg->worker.template || mv->cfg->worker.protocol != MV_PROTO_API) {
        mv_warn(&mv->log, "template_handoff_refused", MV_I("pid", h.pid),
                MV_S("error", "[worker] template is off (or the protocol is not api)"));
        mv_handoff_drop(&h);
        return;
    }
    /* Without memory cgroups a worker's limit figure is its private memory, which counts the
     * pages it shares with its template: forked from a copy of a big caller, every worker would
     * be over its soft limit from its start. A template started from the command holds only
     * what its start-up loads. */
    if (mv->cg.version == MV_CG_OFF) {
        mv_info(&mv->log, "template_handoff_refused", MV_I("pid", h.pid),
                MV_S("error", "no memory cgroups: the template is started from the command"));
        mv_handoff_drop(&h);
        return;
    }
    mv_template_offer(&h);
}

/* Everything the run opened, closed in order; the loop runs once more so that closing
 * handles and jobs finish. */
static void close_run(mv_t *mv)
{
    mv_template_offer_drop(); /* the run ended before a template took it */
    mv_ticker_stop(mv);
    close_signals(mv);
    if (mv->control_open) {
        mv->control_open = false;
        mv_control_close(&mv->control, NULL, NULL);
    }
    close_metrics(mv);
    mv_notify_close(&mv->notify);
    mv_tasks_close(&mv->tasks);
    if (mv->results.timer_open || mv->results.working)
        mv_results_close(&mv->results, NULL); /* an early exit: write what there is */
    if (!mv->timeline.closing)
        mv_timeline_close(&mv->timeline, NULL, NULL);
    uv_run(&mv->loop, UV_RUN_DEFAULT); /* let closing handles and jobs finish */
    if (uv_loop_close(&mv->loop) != 0)
        mv_error(&mv->log, "loop_close_failed", MV_S("msg", "handles left open at exit"));
    teardown_cgroups(mv);
    mv_listen_close(&mv->listen);
    mv->commands->release(mv);
    mv_tasks_free(&mv->tasks);
    mv_results_free(&mv->results);
    mv_timeline_free(&mv->timeline);
    mv_pool_free(&mv->pool);
    mv_leak_free(mv->leak);
    mv->log.events_fd = -1;
    free(mv->log.events_path);
    mv->log.events_path = NULL;
    mv_rundir_close(&mv->run);
}

int mv_run(mv_t *mv)
{
    const mv_config_t *cfg = mv->cfg;
    int r, code;

    mv->started_ms = mv_now_ms();
    r = uv_loop_init(&mv->loop);
    if (r < 0) {
        mv_error(&mv->log, "start_failed", MV_S("call", "uv_loop_init"),
                 MV_S("error", uv_strerror(r)));
        return MV_EXIT_CANT_RUN;
    }
    /* Every check that can refuse the run (the control socket, the results file's lock)
     * comes before anything is made in the state directory. */
    if (probe_control(mv) < 0 || open_io(mv) < 0) {
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    open_run(mv);
    /* No task source: a service, whose workers make their own tasks (or none). */
    mv->service = !*cfg->tasks.source;
    if (setup_cgroups(mv) < 0) {
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    log_start(mv);

    mv_notify_open(&mv->notify, &mv->loop, &mv->log);
    if (open_reaper(mv) < 0 || open_service(mv) < 0) {
        code = MV_EXIT_CANT_RUN;
        goto out;
    }

    take_handoff(mv);
    start_pool(mv);
    mv_template_offer_drop(); /* no template took it: templates are off */
    write_run_json(mv, 0, false);
    if ((r = mv_ticker_start(mv)) < 0)
        mv_warn(&mv->log, "progress_unavailable", MV_S("error", uv_strerror(r)));
    mv_tasks_pump(&mv->tasks);
    check_done(mv);
    uv_run(&mv->loop, UV_RUN_DEFAULT);
    mv->not_run = count_not_run(mv);
    code = exit_code(mv);
    write_run_json(mv, code, true);
    if (mv->ticker.draw)
        mv_log_flush(&mv->log, 1000); /* the progress line is erased before the summary */
    summary(mv, code);

out:
    close_run(mv);
    return code;
}
