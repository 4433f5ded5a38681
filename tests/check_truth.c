/*
 * Per-task figures against ground truth: tests/helpers/truth_worker.py reads, at the start and
 * at the end of every task, its own cgroup's usage and peak and its own statm, and answers
 * with them. Each task's figures in the results are compared with what the worker measured
 * of itself (README "Per-task figures", docs/run-files.md):
 *
 *   mem_before  ~ the worker's private memory when it began the task
 *   mem_after   ~ its private memory when it ended it
 *   mem_peak    ~ its cgroup's peak over the task: at least what it touched, and never an
 *                 earlier task's (the window is reset: at the task's start, the worker's own
 *                 peak reading is its usage)
 *
 * Tolerance: TOL. statm is page-exact, but between memvisor's reading and the worker's the
 * interpreter reads the task line and builds the answer (a few KiB), and cgroup usage moves
 * in per-CPU charge batches (64 pages per CPU). The bugs these tests catch are 5-60 MiB.
 *
 * Lock-step (prefetch = 1) is exact in every window; with prefetch > 1 a worker may begin
 * task N+1 before memvisor has seen N's answer, so each window runs from the previous answer
 * seen to this one: tested as such (windows chain, and no peak is lost).
 *
 * Also here: what a lines worker can get wrong (a stray line, no flush, the wrong protocol, a
 * worker that dies at once), and the waitprobe that tells when a lines worker is ready.
 */
#include <check.h>
#include <sched.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "waitprobe.h"
#include "util.h"
#include "suites.h"

#define MiB   (1024LL * 1024)
#define TOL   MiB
#define TRUTH SOURCE_DIR "/tests/helpers/truth_worker.py"

typedef struct truth {
    long long before, after, peak, retained; /* memvisor's */
    long long start_priv, end_priv, start_usage, end_usage, start_peak, end_peak, pid;
    long long end_free;        /* free bytes its allocator held at its end (-1: unknown) */
    const char *task, *cgroup; /* the worker's */
} truth_t;

static bool cgroups_here(void)
{
    char line[1024];
    FILE *f = fopen("/proc/self/cgroup", "r");
    bool v1 = false, v2 = false;

    while (f && fgets(line, sizeof line, f)) {
        v1 |= strstr(line, ":memory:") != NULL;
        v2 |= strncmp(line, "0::", 3) == 0 &&
              access("/sys/fs/cgroup/cgroup.subtree_control", F_OK) == 0;
    }
    if (f)
        fclose(f);
    if (v1 || v2)
        return true;
    fprintf(stderr, "check_truth: skipped, no memory cgroup here\n");
    return false;
}

/* Task `id`'s figures, memvisor's and the worker's. */
static truth_t truth_of(const mvrun_t *r, size_t id, json_t **keep)
{
    json_t *res = run_result(r, id), *ans, *start, *end;
    json_error_t err;
    truth_t t;

    ck_assert_msg(res != NULL, "task %zu has no result", id);
    ck_assert_msg(strcmp(jstr(res, "status"), "ok") == 0, "task %zu: %s", id, jstr(res, "status"));
    ans = json_loads(jstr(res, "result"), 0, &err);
    ck_assert_msg(ans != NULL, "task %zu: the answer is not JSON: %s", id, jstr(res, "result"));
    start = json_object_get(ans, "start");
    end = json_object_get(ans, "end");
    t = (truth_t){
        .before = jint(res, "mem_before"),
        .after = jint(res, "mem_after"),
        .peak = jint(res, "mem_peak"),
        .retained = jint(res, "retained"),
        .start_priv = jint(start, "priv"),
        .end_priv = jint(end, "priv"),
        .start_usage = jint(start, "usage"),
        .start_peak = jint(start, "peak"),
        .end_peak = jint(end, "peak"),
        .end_usage = jint(end, "usage"),
        .end_free = json_is_integer(json_object_get(end, "free")) ? jint(end, "free") : -1,
        .pid = jint(ans, "pid"),
        .task = jstr(ans, "task"),
        .cgroup = jstr(ans, "cgroup") ? jstr(ans, "cgroup") : "",
    };
    ck_assert_int_eq(t.pid, jint(res, "pid"));
    *keep = ans;
    return t;
}

/* What a task touched and let go: a spike, or a big answer (its bytes are the task's peak,
 * made after the worker's end reading). */
static long long spike_of(const char *task)
{
    if (strncmp(task, "answer ", 7) == 0)
        return atoll(task + 7) * MiB;
    return strncmp(task, "spike ", 6) == 0 ? atoll(task + 6) * MiB : 0;
}

/* Lock-step: every figure of every task against the worker's own. */
static void assert_exact(const mvrun_t *r, size_t n)
{
    for (size_t id = 1; id <= n; id++) {
        json_t *ans;
        truth_t t = truth_of(r, id, &ans);

        ck_assert_msg(llabs(t.before - t.start_priv) <= TOL,
                      "task %zu (%s): mem_before %lld, the worker began it at %lld", id, t.task,
                      t.before, t.start_priv);
        /* After a big answer the worker library gives the allocator's free memory back
         * (malloc_trim): mem_after may then be lower, by what the allocator held free. */
        ck_assert_msg(llabs(t.after - t.end_priv) <= TOL ||
                          (spike_of(t.task) >= MiB && strncmp(t.task, "answer ", 7) == 0 &&
                           t.after < t.end_priv && t.end_priv - t.after <= t.end_free + TOL),
                      "task %zu (%s): mem_after %lld, the worker ended it at %lld (%lld free)", id,
                      t.task, t.after, t.end_priv, t.end_free);
        ck_assert_int_eq(t.retained, t.after - t.before);
        if (strcmp(t.cgroup, "v1") == 0) {
            /* memvisor's window is the worker's: fresh at its start (its peak is its usage),
             * and what it reads at its end is mem_peak. */
            ck_assert_msg(t.start_peak - t.start_usage <= TOL,
                          "task %zu (%s): its peak window was not reset (peak %lld at its "
                          "start, usage %lld)",
                          id, t.task, t.start_peak, t.start_usage);
            ck_assert_msg(llabs(t.peak - t.end_peak) <= TOL ||
                              (strncmp(t.task, "answer ", 7) == 0 && t.peak > t.end_peak),
                          "task %zu (%s): mem_peak %lld, the worker's cgroup peak at its end %lld",
                          id, t.task, t.peak, t.end_peak);
        } else {
            /* v2: the worker cannot see memvisor's window (memory.peak through its own fd is
             * the cgroup's life peak, and writing it would reset memvisor's): a task that
             * touched nothing big never shows an earlier task's peak. */
            ck_assert_msg(spike_of(t.task) > 0 || t.peak <= t.end_usage + TOL,
                          "task %zu (%s): mem_peak %lld, usage at its end %lld", id, t.task, t.peak,
                          t.end_usage);
        }
        ck_assert_msg(t.peak >= spike_of(t.task), "task %zu (%s): mem_peak %lld", id, t.task,
                      t.peak);
        json_decref(ans);
    }
}

/* Runs the truth worker on `tasks` (api or lines) with -o pairs `opts` (NULL-terminated). */
static void run_truth(mvrun_t *r, const char *tasks, bool api, const char *const *opts)
{
    const char *args[32] = {"run", "-o", "supervisor.workers=1"};
    size_t n = 3;
    int code;

    for (; opts && *opts; opts++) {
        args[n++] = "-o";
        args[n++] = *opts;
    }
    args[n++] = "-o";
    args[n++] = api ? "worker.protocol=api" : "worker.protocol=lines";
    args[n++] = "--";
    args[n++] = "python3";
    args[n++] = TRUTH;
    if (api)
        args[n++] = "--api";
    args[n] = NULL;
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    code = run_batch(r, tasks, args);
    ck_assert_log(r, code == 0, "memvisor exited %d", code);
}

static const char mixed[] = "spike 50\nleak 8\nspike 50\nok\nleak 4\nspike 30\nok\nok\n";

/* The first task of every generation (max_tasks = 1: a process per task): its "before" is
 * the started interpreter, its peak the task's. */
START_TEST(the_first_task_of_every_generation)
{
    const char *opts[] = {"limits.max_tasks=1", NULL};
    mvrun_t r;

    if (!cgroups_here())
        return;
    char state[PATH_MAX], *out, *p;
    const char *report[] = {MEMVISOR, "report", state, NULL};

    run_truth(&r, "spike 50\nspike 50\nleak 8\nspike 50\n", _i, opts);
    assert_exact(&r, 4);
    /* Each generation's start-up: in its exit event, and summed up by the report. */
    ck_assert_int_ge(run_count(&r, "startup_mem="), 4);
    snprintf(state, sizeof state, "%s/state", r.dir);
    ck_assert_int_eq(run_capture(report, &out), 0);
    p = strstr(out, "Worker start-up (");
    ck_assert_msg(p && atoi(p + 17) >= 4, "%s", out);
    ck_assert_msg(strstr(p, "memory      p50") && strstr(p, "MiB"), "%s", out);
    free(out);
    run_free(&r);
}
END_TEST

/* A spike, then a leak, then a spike: the second spike's peak is its own, the leak retained. */
START_TEST(spike_leak_spike_in_lock_step)
{
    mvrun_t r;

    if (!cgroups_here())
        return;
    run_truth(&r, mixed, _i, NULL);
    assert_exact(&r, 8);
    run_free(&r);
}
END_TEST

/* Sampling every millisecond: samples and answers collide all the time; no sample stands as a
 * task's end or start. */
START_TEST(samples_colliding_with_answers)
{
    const char *opts[] = {"limits.sample_interval=1ms", NULL};
    mvrun_t r;

    if (!cgroups_here())
        return;
    run_truth(&r, mixed, _i, opts);
    assert_exact(&r, 8);
    run_free(&r);
}
END_TEST

/* With prefetch, task `id`'s spike shows in its own peak or in the one before (`prev`, NULL
 * for the first): the worker may have begun it before memvisor saw that one's answer. */
static void assert_spike_seen(const truth_t *t, const truth_t *prev, size_t id)
{
    ck_assert_msg(MV_MAX(t->peak, prev ? prev->peak : 0) >= spike_of(t->task),
                  "task %zu (%s): mem_peak %lld, the one before %lld", id, t->task, t->peak,
                  prev ? prev->peak : -1);
}

/* A task that keeps nothing and answers 12 MiB (under [worker] max_message, 16M): mem_after,
 * retained and the heap figures are what the task kept (the worker's own view, taken before it made
 * its answer), not the answer's carrier (the result, its encoded bytes: docs/run-files.md,
 * "Per-task figures"); and the task after it does not show them going away. _i: 0 = lines, 1 = api
 * (Python, memvisor_worker), 2 = api (C, libmemvisor: mvtest_worker's "answer"), lock-step. */
START_TEST(a_big_answer_is_not_what_the_task_kept)
{
    const char *tasks = "answer 0\nanswer 12\nanswer 0\nanswer 12\nanswer 0\n";
    const char *c_api[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    mvrun_t r;
    json_t *ans;

    if (!cgroups_here())
        return;
    if (_i == 2) {
        int code = run_batch(&r, tasks, c_api);
        ck_assert_log(&r, code == 0, "memvisor exited %d", code);
    } else {
        run_truth(&r, tasks, _i == 1, NULL);
    }
    assert_exact(&r, 5);
    for (size_t id = 1; id <= 5; id++) {
        truth_t t = truth_of(&r, id, &ans);
        json_t *res = run_result(&r, id);
        long long h0 = jint(json_object_get(ans, "start"), "heap"),
                  h1 = jint(json_object_get(ans, "end"), "heap");

        /* The heap preload (on by default for these dynamically linked workers): live bytes
         * the task left, as the worker's allocator counts them. */
        if (json_is_integer(json_object_get(res, "heap_retained")) && h0 >= 0 && h1 >= 0)
            ck_assert_msg(llabs(jint(res, "heap_retained") - (h1 - h0)) <= TOL,
                          "task %zu (%s): heap_retained %lld, the worker's heap went %lld -> %lld",
                          id, t.task, jint(res, "heap_retained"), h0, h1);
        json_decref(ans);
    }
    run_free(&r);
}
END_TEST

/* A task that comes in big (8 MiB of padding; [tasks] max_size 16M) and keeps nothing:
 * its retained and heap_retained are what the task kept (the worker's own view, taken from
 * its start to its end), not the library's buffers that carried it in (its read buffer and
 * the task's copy: +16 MiB, then -16 MiB on the next task, before they were given back ahead
 * of the answer's end). _i: 0 = C api (mvtest_worker's "answer 0"), 1 = Python api
 * (memvisor_worker, truth_worker.py's "answer 0": its answer holds the task's text, so it is
 * big too), lock-step. */
START_TEST(a_big_task_is_not_what_the_task_kept)
{
    const char *argv[] = {"run",  "-o", "supervisor.workers=1", "-o", "tasks.max_size=16M", "--",
                          MVTEST, NULL};
    const char *opts[] = {"tasks.max_size=16M", NULL};
    size_t pad = 8u << 20, cap = 4 * pad + 256, len = 0;
    char *tasks = malloc(cap);
    mvrun_t r;
    json_t *ans;
    int code;

    if (!cgroups_here()) {
        free(tasks);
        return;
    }
    ck_assert_ptr_nonnull(tasks);
    for (int i = 0; i < 5; i++) {
        len += (size_t)snprintf(tasks + len, cap - len, "answer 0 ");
        if (i % 2) {
            memset(tasks + len, 'x', pad);
            len += pad;
        }
        tasks[len++] = '\n';
    }
    tasks[len] = '\0';
    if (_i == 0) {
        code = run_batch(&r, tasks, argv);
        ck_assert_log(&r, code == 0, "memvisor exited %d", code);
    } else {
        run_truth(&r, tasks, true, opts);
    }
    for (size_t id = 1; id <= 5; id++) {
        truth_t t = truth_of(&r, id, &ans);
        json_t *res = run_result(&r, id);
        long long h0 = jint(json_object_get(ans, "start"), "heap"),
                  h1 = jint(json_object_get(ans, "end"), "heap");

        /* Python: the trim before the first big answer's end gives back the start-up's free
         * heap once (~1.8 MiB less than the worker's own reading: protocols.md, "Big
         * answers"), so there only no growth is checked; C: exact. */
        if (_i == 1)
            ck_assert_msg(t.retained <= (t.end_priv - t.start_priv) + TOL,
                          "task %zu: retained %lld, the worker's memory went %lld -> %lld", id,
                          t.retained, t.start_priv, t.end_priv);
        else
            ck_assert_msg(llabs(t.retained - (t.end_priv - t.start_priv)) <= TOL,
                          "task %zu: retained %lld, the worker's memory went %lld -> %lld", id,
                          t.retained, t.start_priv, t.end_priv);
        if (json_is_integer(json_object_get(res, "heap_retained")) && h0 >= 0 && h1 >= 0)
            ck_assert_msg(llabs(jint(res, "heap_retained") - (h1 - h0)) <= TOL,
                          "task %zu: heap_retained %lld, the worker's heap went %lld -> %lld", id,
                          jint(res, "heap_retained"), h0, h1);
        json_decref(ans);
    }
    free(tasks);
    run_free(&r);
}
END_TEST

/* prefetch = 8: windows chain (each begins where the previous task's ended on that worker),
 * and every spike shows in its own task's peak or the one before it (the worker may have
 * begun it before memvisor saw that one's answer). */
START_TEST(prefetch_windows_chain_and_lose_no_peak)
{
    const char *opts[] = {"worker.prefetch=8", NULL};
    mvrun_t r;
    truth_t prev = {0};
    json_t *ans;

    if (!cgroups_here())
        return;
    run_truth(&r, mixed, _i, opts);
    for (size_t id = 1; id <= 8; id++) {
        truth_t t = truth_of(&r, id, &ans);

        if (id > 1 && t.pid == prev.pid)
            ck_assert_msg(t.before == prev.after,
                          "task %zu: mem_before %lld, task %zu ended at %lld", id, t.before, id - 1,
                          prev.after);
        ck_assert_int_eq(t.retained, t.after - t.before);
        assert_spike_seen(&t, id > 1 ? &prev : NULL, id);
        prev = t;
        json_decref(ans);
    }
    run_free(&r);
}
END_TEST

/* Without a cgroup (or on v2 before 6.12, when the cgroup's lifetime mark does not move), the
 * peak is the process's own: its resident high-water mark, reset at each task's start. Every
 * spike shows in full, and a task that touched nothing big never carries an earlier one's
 * peak (the mark was reset), in lock-step and with prefetch (its own or the one before). */
START_TEST(without_a_cgroup_the_process_peak_is_per_task)
{
    const char *lock_step[] = {"supervisor.cgroup=off", NULL};
    const char *prefetch[] = {"supervisor.cgroup=off", "worker.prefetch=8", NULL};
    mvrun_t r;
    truth_t prev = {0};
    json_t *ans;

    run_truth(&r, mixed, _i & 1, _i < 2 ? lock_step : prefetch);
    for (size_t id = 1; id <= 8; id++) {
        truth_t t = truth_of(&r, id, &ans);
        long long spike = spike_of(t.task);

        ck_assert_str_eq(jstr(run_result(&r, id), "peak_source"), "process");
        ck_assert_int_ge(t.peak, MV_MAX(t.before, t.after));
        if (_i < 2) {
            ck_assert_msg(llabs(t.before - t.start_priv) <= TOL &&
                              llabs(t.after - t.end_priv) <= TOL,
                          "task %zu (%s): %lld..%lld, the worker's own %lld..%lld", id, t.task,
                          t.before, t.after, t.start_priv, t.end_priv);
            ck_assert_msg(t.peak >= t.before + spike - TOL,
                          "task %zu (%s): mem_peak %lld from %lld", id, t.task, t.peak, t.before);
            ck_assert_msg(spike > 0 || t.peak <= t.after + TOL,
                          "task %zu (%s): mem_peak %lld, mem_after %lld", id, t.task, t.peak,
                          t.after);
        } else {
            assert_spike_seen(&t, id > 1 ? &prev : NULL, id);
        }
        prev = t;
        json_decref(ans);
    }
    run_free(&r);
}
END_TEST

/* ---- a lines worker that says more than its answers ---- */

/* The task line a truth_worker answer names (its "task"), for result `id`. */
static char *answered_line(const mvrun_t *r, size_t id)
{
    json_t *res = run_result(r, id), *ans;
    char *line;

    ck_assert_ptr_nonnull(res);
    ans = json_loads(jstr(res, "result"), 0, NULL);
    ck_assert_msg(ans != NULL, "task %zu: %s", id, jstr(res, "result"));
    line = strdup(jstr(ans, "task"));
    json_decref(ans);
    return line;
}

/* A print() inside one task: that task runs again (and is quarantined, as it prints every
 * time), said with what to do; every other answer is its own task's. */
START_TEST(a_stray_line_is_never_an_answer)
{
    const char *opts[] = {"tasks.max_attempts=2", "worker.backoff_min=1ms", NULL};
    static const char *const lines[] = {"ok", "say debug output", "leak 1", "ok again"};
    const char *args[32] = {"run", "-o", "supervisor.workers=1", "-o", "worker.protocol=lines"};
    size_t n = 5;
    mvrun_t r;
    json_t *q;

    for (const char *const *o = opts; *o; o++) {
        args[n++] = "-o";
        args[n++] = *o;
    }
    args[n++] = "--";
    args[n++] = "python3";
    args[n++] = TRUTH;
    args[n] = NULL;
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    ck_assert_int_eq(run_batch(&r, "ok\nsay debug output\nleak 1\nok again\n", args), 1);
    run_assert_once(&r, 4, NULL);
    for (size_t id = 1; id <= 4; id++) {
        if (id == 2)
            continue;
        char *line = answered_line(&r, id);
        ck_assert_str_eq(line, lines[id - 1]);
        free(line);
    }
    q = run_result(&r, 2);
    ck_assert_str_eq(jstr(q, "status"), "quarantined");
    ck_assert_int_eq(run_count(&r, "event=protocol_error"), 2);
    ck_assert_log(&r, strstr(r.log, "debug output belongs on stderr"), "no hint about stderr");
    run_free(&r);
}
END_TEST

/* A line written at start-up, before any task: a protocol error each time, and the run ends
 * at crash_limit with the reason (not a shifted answer for every task). */
START_TEST(a_line_before_any_task_ends_in_crash_limit)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "worker.protocol=lines", "worker.crash_limit=3",
                          "worker.backoff_min=1ms", "worker.backoff_max=5ms"),
                 RUN_CMD("python3", TRUTH, "--print-at-start"));
    mvrun_t r;

    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    ck_assert_int_eq(run_batch(&r, "ok\nok\n", args), 3);
    ck_assert_int_ge(run_count(&r, "event=protocol_error"), 3);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 1);
    ck_assert_log(&r, strstr(r.log, "debug output belongs on stderr"), "no hint about stderr");
    for (size_t i = 0; i < r.nres; i++)
        ck_assert_str_ne(jstr(r.res[i], "status"), "ok");
    run_free(&r);
}
END_TEST

/* A Python lines worker that never flushes still answers: memvisor sets PYTHONUNBUFFERED. */
START_TEST(an_unflushed_python_worker_answers)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "worker.protocol=lines"),
                 RUN_CMD("python3", TRUTH, "--no-flush"));
    mvrun_t r;

    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    unsetenv("PYTHONUNBUFFERED"); /* memvisor's to set */
    ck_assert_int_eq(run_batch(&r, "ok\nleak 1\n", args), 0);
    run_assert_once(&r, 2, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 2), "status"), "ok");
    run_free(&r);
}
END_TEST

/* One that cannot answer (the user's own PYTHONUNBUFFERED= wins, and Python reads an empty
 * value as unset): task_slow says so, again at each doubling, and status shows the task in
 * hand and how long it has run. */
START_TEST(a_silent_task_is_said_to_be_slow)
{
    char opt_sock[PATH_MAX + 32], sock[PATH_MAX];
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "worker.protocol=lines", "limits.task_warn=100ms",
                          "limits.task_timeout=2s", "tasks.max_attempts=1", opt_sock),
                 RUN_CMD("python3", TRUTH, "--no-flush"));
    const char *status[] = {MEMVISOR, "status", "--json", "--socket", sock, NULL};
    char *out, *line;
    json_t *st, *w;
    mvrun_t r;

    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    setenv("PYTHONUNBUFFERED", "", 1);
    run_init(&r, "ok\n");
    snprintf(sock, sizeof sock, "%s/c.sock", r.dir);
    snprintf(opt_sock, sizeof opt_sock, "control.socket=%s", sock);
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=task_slow");
    ck_assert_ptr_nonnull(strstr(line, "task=1 "));
    ck_assert_ptr_nonnull(strstr(line, "must flush"));
    free(line);
    free(run_wait_for(&r, "event=task_slow")); /* again, at 200 ms */
    ck_assert_int_eq(run_capture(status, &out), 0);
    st = json_loads(out, 0, NULL);
    ck_assert_msg(st != NULL, "%s", out);
    w = json_array_get(json_object_get(st, "workers"), 0);
    ck_assert_int_eq(jint(w, "task"), 1);
    ck_assert(json_real_value(json_object_get(w, "task_s")) >= 0.2);
    json_decref(st);
    free(out);
    ck_assert_int_eq(run_finish(&r), 1); /* task_timeout, then quarantined */
    unsetenv("PYTHONUNBUFFERED");
    run_free(&r);
}
END_TEST

/* A plain stdin/stdout worker started as an api worker: it exits 0 without a HELLO, and the
 * run ends at once with the hint, not after crash_limit crash loops. */
START_TEST(the_wrong_protocol_gets_a_hint)
{
    const char *args[] = {
        "run", "-o", "supervisor.workers=2", "--", SOURCE_DIR "/examples/line_worker.sh", NULL};
    mvrun_t r;

    ck_assert_int_eq(run_batch(&r, "a b\nc\n", args), 3);
    ck_assert_int_eq(run_count(&r, "event=no_hello"), 1);
    ck_assert_ptr_nonnull(strstr(r.log, "protocol = lines"));
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    ck_assert_int_le(run_count(&r, "event=spawn "), 2);
    run_free(&r);
}
END_TEST

/* An api worker that fails before its HELLO with an error of its own (a Python worker that
 * cannot import memvisor_worker exits 1 with a traceback): the hint says how it exited and
 * points at its output and at what such a worker needs, not only at the lines protocol. */
START_TEST(a_worker_failing_before_hello_is_pointed_at_its_output)
{
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("worker.crash_limit=2", "worker.backoff_min=1ms", "worker.backoff_max=2ms"),
        RUN_CMD("sh", "-c", "echo \"ModuleNotFoundError: no memvisor_worker\" >&2; exit 7"));
    mvrun_t r;
    const char *hint, *eol;
    char line[1024];

    ck_assert_int_eq(run_batch(&r, "a\nb\n", args), 3);
    hint = strstr(r.log, "event=no_hello");
    ck_assert_log(&r, hint != NULL, "no hint");
    eol = strchr(hint, '\n');
    snprintf(line, sizeof line, "%.*s", (int)(eol ? eol - hint : (long)strlen(hint)), hint);
    ck_assert_msg(strstr(line, " status=7 "), "%s", line);
    ck_assert_msg(strstr(line, "its output, if any (event=output, above)"), "%s", line);
    ck_assert_msg(strstr(line, "PYTHONPATH=worker-api/python"), "%s", line);
    ck_assert_msg(strstr(line, "[worker] protocol = lines"), "%s", line);
    ck_assert_ptr_nonnull(strstr(r.log, "ModuleNotFoundError"));
    run_free(&r);
}
END_TEST

/* Workers that die at once count toward crash_limit whatever their protocol: a lines worker
 * is never handed a task before it reads its stdin, so no quarantine resets the streak. */
START_TEST(instant_deaths_trip_crash_limit_for_every_protocol)
{
    static const char *const protocols[] = {"worker.protocol=lines", "worker.protocol=none",
                                            "worker.protocol=api"};
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("worker.crash_limit=4", "worker.backoff_min=1ms",
                                                "worker.backoff_max=2ms", protocols[_i]),
                                       RUN_CMD("false"));
    mvrun_t r;

    run_init(&r, _i == 1 ? NULL : "a\nb\nc\n");
    r.service = _i == 1; /* none: a service, no tasks */
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 1);
    ck_assert_int_eq(run_count(&r, "event=quarantine"), 0);
    run_free(&r);
}
END_TEST

/* ---- waitprobe ---- */

START_TEST(syscall_lines_parse)
{
    mv_syscall_t sc;

    ck_assert_int_eq(mv_syscall_parse("running\n", &sc), 0);
    ck_assert_int_eq(sc.state, MV_SC_RUNNING);
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_BUSY);
    ck_assert_int_eq(mv_syscall_parse("0 0x0 0x7ffd1000 0x2000 0x0 0x0 0x0 0x7ffd0ff8 "
                                      "0x7f12345678\n",
                                      &sc),
                     0);
    ck_assert_int_eq(sc.state, MV_SC_BLOCKED);
    ck_assert_int_eq(sc.nr, SYS_read);
    ck_assert_uint_eq(sc.pc, 0x7f12345678ull);
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_STDIN);
    sc.arg0 = 3; /* a read of another fd: a wrapper waiting for its child's output */
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_BUSY);
    sc.nr = SYS_ppoll;
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_IDLE);
    sc.nr = SYS_wait4;
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_CHILD);
    ck_assert_int_eq(mv_syscall_parse("-1 0x7ffd0ff8 0x7f12345678\n", &sc), 0);
    ck_assert_int_eq(sc.state, MV_SC_NONE);
    ck_assert_int_eq(mv_wait_classify(&sc), MV_WAIT_BUSY);
    ck_assert_int_eq(mv_syscall_parse("", &sc), -EINVAL);
    ck_assert_int_eq(mv_syscall_parse("0 0x0 0x1\n", &sc), -EINVAL);
    ck_assert_int_eq(mv_syscall_parse("-1 0x1\n", &sc), -EINVAL);
    ck_assert_int_eq(mv_syscall_parse("x 0x0\n", &sc), -EINVAL);
}
END_TEST

/* Starts `sh -c SCRIPT` with a pipe on its stdin (kept open: the write end is returned). */
static pid_t start_sh(const char *script, int *in)
{
    int fds[2];
    pid_t pid;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    *in = fds[1];
    return pid;
}

/* Looks until `want` (or 5 s). */
static int look_for(mv_waitprobe_t *p, int want)
{
    int r = -1;

    for (int i = 0; i < 5000 && r != want; i++) {
        r = mv_waitprobe_look(p);
        if (r < 0)
            return r;
        if (r != want)
            usleep(1000);
    }
    return r;
}

static void stop_sh(pid_t pid, int in)
{
    close(in);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

START_TEST(probe_sees_stdin_idle_and_through_a_wrapper)
{
    mv_waitprobe_t p;
    int in;
    pid_t pid;

    /* A shell reading its stdin (sh's read: one byte at a time, on fd 0). */
    pid = start_sh("read x", &in);
    ck_assert_int_eq(mv_waitprobe_open(&p, pid), 0);
    ck_assert_int_eq(look_for(&p, MV_WAIT_STDIN), MV_WAIT_STDIN);
    ck_assert_int_eq(mv_waitprobe_back_on_stdin(&p), 1);
    mv_waitprobe_close(&p);
    stop_sh(pid, in);

    /* Sleeping: idle after MV_PROBE_IDLE_LOOKS looks in the same wait, never stdin. */
    pid = start_sh("exec sleep 30", &in);
    ck_assert_int_eq(mv_waitprobe_open(&p, pid), 0);
    ck_assert_int_eq(look_for(&p, MV_WAIT_IDLE), MV_WAIT_IDLE);
    ck_assert_int_eq(mv_waitprobe_back_on_stdin(&p), 0);
    mv_waitprobe_close(&p);
    stop_sh(pid, in);

    /* A wrapper that does not exec (it waits for its child, then goes on): its child is
     * looked at, and found reading the stdin it inherited. */
    pid = start_sh("sh -c 'read x'; echo done", &in);
    ck_assert_int_eq(mv_waitprobe_open(&p, pid), 0);
    ck_assert_int_eq(look_for(&p, MV_WAIT_STDIN), MV_WAIT_STDIN);
    ck_assert_int_ne(p.pid, pid);
    mv_waitprobe_close(&p);
    stop_sh(pid, in);

    /* A thread started after the first looks, that reads stdin while the main thread waits
     * for it: picked up (its threads are listed again when their count moves). */
    pid = start_sh("exec python3 -c 'import sys, threading, time\n"
                   "time.sleep(0.05)\n"
                   "t = threading.Thread(target=sys.stdin.read)\n"
                   "t.start()\n"
                   "t.join()'",
                   &in);
    ck_assert_int_eq(mv_waitprobe_open(&p, pid), 0);
    ck_assert_int_eq(look_for(&p, MV_WAIT_STDIN), MV_WAIT_STDIN);
    ck_assert_int_gt(p.n, 1);
    ck_assert_int_gt(p.stdin_at, 0); /* not the main thread */
    mv_waitprobe_close(&p);
    stop_sh(pid, in);

    /* Gone. */
    pid = start_sh("exit 0", &in);
    waitpid(pid, NULL, 0);
    ck_assert_int_lt(mv_waitprobe_open(&p, pid), 0);
    mv_waitprobe_close(&p);
    close(in);
}
END_TEST

/* ---- held answers: looked at asleep ---- */

/* The schedule of looks at a held answer: 20 us apart, then half its age, then every ms; at
 * most 10 looks before it is a millisecond old, whatever the delays on the way. */
START_TEST(held_answer_looks_grow_rarer)
{
    uint64_t age = 0;
    int fast = 0;

    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(0), MV_PROBE_HELD_STEP_NS);
    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(30000), MV_PROBE_HELD_STEP_NS);
    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(300000), 150000);
    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(MV_PROBE_HELD_FINE_NS - 2), 999999);
    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(MV_PROBE_HELD_FINE_NS), MV_PROBE_HELD_SLOW_NS);
    ck_assert_uint_eq(mv_waitprobe_held_delay_ns(UINT64_MAX), MV_PROBE_HELD_SLOW_NS);
    for (; age < MV_PROBE_HELD_SLOW_NS; age += mv_waitprobe_held_delay_ns(age))
        fast++;
    ck_assert_int_eq(fast, 10);
}
END_TEST

/* Sums field `key` over the exit events of the log. */
static long long exit_sum(const mvrun_t *r, const char *key)
{
    char needle[32];
    long long sum = 0;
    const char *p = r->log, *end, *f;

    snprintf(needle, sizeof needle, " %s=", key);
    while ((p = strstr(p, "event=exit "))) {
        end = strchr(p, '\n');
        f = strstr(p, needle);
        if (f && (!end || f < end))
            sum += atoll(f + strlen(needle));
        p += 11;
    }
    return sum;
}

/* A lines worker that is not back on its stdin for 2 ms after each answer (it sleeps), with
 * memvisor, its worker and everything on one CPU: every answer is held until the worker reads
 * again, and the supervisor sleeps between its looks. It used to look on every pass of its
 * loop for 300 us (dozens of looks per answer, its CPU kept from a worker that shared it),
 * then every millisecond. Now: at most 10 looks before the answer is 1 ms old (the schedule
 * above; later delays only make fewer), and each answer still its own task's. */
START_TEST(held_answers_are_awaited_asleep)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "worker.protocol=lines"),
                 RUN_CMD("python3", "-c",
                         "import sys, time\n"
                         "for line in sys.stdin:\n"
                         "    print('got ' + line.strip(), flush=True)\n"
                         "    time.sleep(0.002)\n"));
    char *tasks = malloc(64 * 8), *p = tasks;
    cpu_set_t was, one;
    long long held, looks, slow;
    mvrun_t r;

    for (int i = 1; i <= 30; i++)
        p += sprintf(p, "t%d\n", i);
    ck_assert_int_eq(sched_getaffinity(0, sizeof was, &was), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &was)) {
            CPU_SET(c, &one); /* the first CPU this test may use */
            break;
        }
    ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0);
    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    ck_assert_int_eq(sched_setaffinity(0, sizeof was, &was), 0);
    free(tasks);
    run_assert_once(&r, 30, NULL);
    for (size_t id = 1; id <= 30; id++) {
        char want[16];

        snprintf(want, sizeof want, "got t%zu", id);
        ck_assert_str_eq(jstr(run_result(&r, id), "result"), want);
    }
    held = exit_sum(&r, "held");
    looks = exit_sum(&r, "held_looks");
    slow = exit_sum(&r, "held_slow");
    ck_assert_int_eq(held, 30);
    ck_assert_msg(slow >= held, "held %lld, slow %lld: the worker sleeps 2 ms", held, slow);
    ck_assert_msg(looks - slow <= 10 * held, "held %lld, looks %lld of which %lld at 1 ms+", held,
                  looks, slow);
    run_free(&r);
}
END_TEST

Suite *truth_suite(void)
{
    Suite *s = suite_create("truth");
    TCase *tc = tcase_create("lock_step");

    /* _i: 0 = lines, 1 = api */
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, the_first_task_of_every_generation, 0, 2);
    tcase_add_loop_test(tc, spike_leak_spike_in_lock_step, 0, 2);
    tcase_add_loop_test(tc, samples_colliding_with_answers, 0, 2);
    tcase_add_loop_test(tc, prefetch_windows_chain_and_lose_no_peak, 0, 2);
    tcase_add_loop_test(tc, a_big_answer_is_not_what_the_task_kept, 0, 3);
    tcase_add_loop_test(tc, a_big_task_is_not_what_the_task_kept, 0, 2);
    tcase_add_loop_test(tc, without_a_cgroup_the_process_peak_is_per_task, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("waitprobe");
    tcase_add_test(tc, syscall_lines_parse);
    tcase_add_test(tc, probe_sees_stdin_idle_and_through_a_wrapper);
    tcase_add_test(tc, held_answer_looks_grow_rarer);
    suite_add_tcase(s, tc);

    tc = tcase_create("held_answers");
    tcase_set_timeout(tc, 60); /* one CPU for everything: slow when the machine is busy */
    tcase_add_test(tc, held_answers_are_awaited_asleep);
    suite_add_tcase(s, tc);

    tc = tcase_create("lines_safety");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_stray_line_is_never_an_answer);
    tcase_add_test(tc, a_line_before_any_task_ends_in_crash_limit);
    tcase_add_test(tc, an_unflushed_python_worker_answers);
    tcase_add_test(tc, a_silent_task_is_said_to_be_slow);
    tcase_add_test(tc, the_wrong_protocol_gets_a_hint);
    tcase_add_test(tc, a_worker_failing_before_hello_is_pointed_at_its_output);
    tcase_add_loop_test(tc, instant_deaths_trip_crash_limit_for_every_protocol, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}
