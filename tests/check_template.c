/*
 * template: [worker] template = yes end to end (docs/templates.md). The real binary starts a
 * real template (mvtest_worker, whose code before mvw_open is its start-up, or a Python
 * worker), which forks every worker; each test checks that a forked worker is a worker in
 * every respect (its exit status, its limits, its figures against what it measures of
 * itself) and that the template itself is supervised (a crash at start and later, growth past
 * the soft limit, a fatal exit, memvisor killed with SIGKILL).
 *
 * On cgroup v2 (the check-v2 guest) the workers are born in their cgroups; here (v1) they
 * join them by writing cgroup.procs: both ways run the same tests.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define MiB (1024LL * 1024)
#define T   "worker.template=yes"

/* The number after `key` in a log line (key includes its '='), or -1. */
static long long field(const char *line, const char *key)
{
    const char *p = line ? strstr(line, key) : NULL;

    return p ? atoll(p + strlen(key)) : -1;
}

/* The pid of the template that became ready (the next template_ready line). */
static pid_t template_pid(mvrun_t *r)
{
    char *line = run_wait_for(r, "event=template_ready");
    pid_t pid = (pid_t)field(line, " pid=");

    free(line);
    ck_assert_int_gt(pid, 1);
    return pid;
}

/* Whether a process is gone (reaped, or a zombie nobody waits for yet). */
static bool gone(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return true;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'Z';
}

/* Waits up to 5 s for a process to be gone. */
static bool gone_soon(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        if (gone(pid))
            return true;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return false;
}

/* Whether the run's cgroups are v2 ones. */
static bool v2_run(mvrun_t *r)
{
    return run_count(r, "memory=\"cgroup v2") > 0;
}

/* Whether the run's cgroups are real (the per-task kernel figures exist). */
static bool cgroups(mvrun_t *r)
{
    return run_count(r, "memory=\"cgroup v") > 0;
}

START_TEST(forked_workers_exit_with_their_exact_status)
{
    mvrun_t r;
    const char *tasks = "ok\nexit 3\ncrash\ncgroup\nok\n";
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", "tasks.max_attempts=1", T), RUN_CMD(MVTEST));
    json_t *why;
    pid_t tp;

    run_init(&r, tasks);
    run_start(&r, args, NULL);
    tp = template_pid(&r);
    ck_assert_int_eq(run_finish(&r), 1);
    run_assert_once(&r, 5, NULL);
    why = json_array_get(json_object_get(run_result(&r, 2), "attempt_errors"), 0);
    ck_assert_str_eq(jstr(why, "reason"), "crash");
    ck_assert_int_eq(jint(why, "exit"), 3);
    ck_assert_ptr_null(json_object_get(why, "signal"));
    why = json_array_get(json_object_get(run_result(&r, 3), "attempt_errors"), 0);
    ck_assert_int_eq(jint(why, "signal"), SIGABRT);
    ck_assert_ptr_null(json_object_get(why, "exit"));
    for (size_t i = 1; i <= 5; i++)
        ck_assert_int_ne(jint(run_result(&r, i), "pid"), tp);
    ck_assert_str_eq(jstr(run_result(&r, 5), "status"), "ok");
    /* In its own cgroup (w<slot>.<gen>), not the template's (t.<gen>): born there on v2,
     * moved there before any of its code ran on v1. */
    if (cgroups(&r)) {
        const char *cg = jstr(run_result(&r, 4), "result");
        ck_assert_ptr_nonnull(cg);
        ck_assert_msg(strstr(cg, "/w1.") || strstr(cg, "/w2."), "%s", cg);
        ck_assert_int_eq(run_count(&r, v2_run(&r) ? "start=fork\n" : "start=fork_in_cgroup"), 0);
    }
    /* Every worker was forked (none exec'd), from the one template, retired at the end: the
     * two first ones and a replacement for each death (the last may not be needed). */
    ck_assert_int_ge(run_count(&r, "event=spawn "), 3);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 1);
    ck_assert_int_eq(run_count(&r, "status=3 "), 1);
    ck_assert_int_eq(run_count(&r, "signal=Aborted"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "reason=retired"), 1);
    run_free(&r);
}
END_TEST

/* As a subreaper (or PID 1) memvisor reaps the orphans it inherits; a forked worker is its
 * child but not libuv's: the orphan reaper must leave it to its pidfd, or its status would be
 * lost. */
START_TEST(forked_workers_keep_their_status_with_a_subreaper)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("supervisor.workers=2", "tasks.max_attempts=1", "supervisor.subreaper=yes", T),
        RUN_CMD(MVTEST));
    json_t *why;

    ck_assert_int_eq(run_batch(&r, "exit 5\ncrash\nok\nexit 6\nok\n", args), 1);
    run_assert_once(&r, 5, NULL);
    why = json_array_get(json_object_get(run_result(&r, 1), "attempt_errors"), 0);
    ck_assert_int_eq(jint(why, "exit"), 5);
    why = json_array_get(json_object_get(run_result(&r, 2), "attempt_errors"), 0);
    ck_assert_int_eq(jint(why, "signal"), SIGABRT);
    why = json_array_get(json_object_get(run_result(&r, 4), "attempt_errors"), 0);
    ck_assert_int_eq(jint(why, "exit"), 6);
    ck_assert_int_eq(run_count(&r, "event=subreaper state=on"), 1);
    ck_assert_int_eq(run_count(&r, "event=orphan_reaped"), 0);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    run_free(&r);
}
END_TEST

/* A fork in flight as the run ends (a crashed slot's replacement, asked for just before the
 * batch's last answer): the retiring template answers it before it exits, and the child, no
 * worker any more, is killed and reaped as the template's. Before, the template was killed
 * with the fork unanswered, and its child, when there was one, was left to find its cgroup
 * gone and to the orphan reaper (1 run in 150 of the test above). Stopped (SIGSTOP), the
 * template holds the fork for as long as the test needs (kill_timeout, which bounds the
 * wait, is long). */
START_TEST(a_fork_in_flight_at_the_end_is_answered_before_the_template_goes)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("supervisor.workers=2", "tasks.max_attempts=1", "supervisor.subreaper=yes",
                 "worker.backoff_min=1ms", "worker.kill_timeout=60s", "log.level=debug", T),
        RUN_CMD(MVTEST));
    pid_t tpid, held[2];
    char *line;

    run_init(&r, "hold 0\nhold 0\nexit 5\n");
    run_start(&r, args, NULL);
    tpid = template_pid(&r);
    for (int i = 0; i < 2; i++) {
        line = run_wait_for(&r, "held pid=");
        held[i] = (pid_t)field(line, "held pid=");
        free(line);
    }
    ck_assert_int_eq(kill(tpid, SIGSTOP), 0);
    kill(held[1], SIGUSR1); /* it takes `exit 5`; its slot's replacement is asked for */
    free(run_wait_for(&r, "event=fork_asked"));
    kill(held[0], SIGUSR1); /* the batch ends */
    free(run_wait_for(&r, "event=batch_done"));
    ck_assert_int_eq(kill(tpid, SIGCONT), 0);
    ck_assert_int_eq(run_finish(&r), 1);
    run_assert_once(&r, 3, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 3), "status"), "quarantined");
    /* Every FORK sent was answered (v1: the child is killed and reaped, template_orphan; v2:
     * its clone into the cgroup given up fails), and no child was left to the orphan reaper. */
    ck_assert_int_eq(run_count(&r, "event=forked "), run_count(&r, "event=fork_asked "));
    ck_assert_int_eq(run_count(&r, "event=orphan_reaped"), 0);
    run_free(&r);
}
END_TEST

START_TEST(the_hard_limit_kills_a_forked_worker_and_only_it)
{
    mvrun_t r;
    const char *tasks = "ok\nalloc 200\nok\nok\nok\n";
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "limits.memory_hard=48M", "tasks.max_attempts=2", T),
        RUN_CMD(MVTEST));
    json_t *j, *a;

    ck_assert_int_eq(run_batch(&r, tasks, args), 1);
    run_assert_once(&r, 5, NULL);
    j = run_result(&r, 2);
    ck_assert_str_eq(jstr(j, "status"), "quarantined");
    ck_assert_int_eq(json_array_size(json_object_get(j, "attempt_errors")), 2);
    for (size_t i = 0; i < 2; i++) {
        a = json_array_get(json_object_get(j, "attempt_errors"), i);
        /* the kernel, in the worker's own cgroup; or memvisor's reading without cgroups */
        ck_assert_str_eq(jstr(a, "reason"), cgroups(&r) ? "kernel_oom" : "hard_limit");
        ck_assert_int_eq(jint(a, "signal"), SIGKILL);
    }
    for (size_t i = 3; i <= 5; i++)
        ck_assert_str_eq(jstr(run_result(&r, i), "status"), "ok");
    /* The template lived through it and forked every replacement (one at least: the retry
     * may come last, when no worker is needed after it). */
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 1);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_ge(run_count(&r, "event=spawn "), 2);
    run_free(&r);
}
END_TEST

/* "usage=U0,U1 priv=P0,P1 pid=PID": what mvtest_worker's selfmem measured. */
static void self_figures(json_t *j, long long f[4])
{
    const char *s = jstr(j, "result");

    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(sscanf(s, "usage=%lld,%lld priv=%lld,%lld", &f[0], &f[1], &f[2], &f[3]), 4);
}

START_TEST(per_task_figures_of_a_forked_worker_match_its_own)
{
    mvrun_t r;
    const char *tasks = "selfmem 8\nselfmem 8\nselfmem 4\n";
    /* The template keeps 16 MiB (touched) before mvw_open: its workers map those pages. */
    mvargs_t av;
    const char *const *args = run_argv(&av, RUN_OPTS("supervisor.workers=1", T),
                                       RUN_CMD(MVTEST, "--alloc-at-start", "16"));

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 3, NULL);
    for (size_t i = 1; i <= 3; i++) {
        json_t *j = run_result(&r, i);
        long long f[4];

        self_figures(j, f);
        /* Live heap bytes: the worker's own (a forked worker runs the template's image, which
         * was not preloaded: a preload page would stay blank), from its second answer on (the
         * first has no answer before it), 8 or 4 MiB kept. */
        ck_assert_msg(i == 1 ||
                          (jstr(j, "heap_source") && strcmp(jstr(j, "heap_source"), "worker") == 0),
                      "task %zu: heap_source %s", i, jstr(j, "heap_source"));
        if (i > 1)
            ck_assert_int_ge(jint(j, "heap_retained"), (i == 3 ? 4 : 8) * MiB - 256 * 1024);
        /* Private memory: statm, the same source; "before" is read before the task is sent
         * (the worker then holds its bytes), "after" once its answer is in. */
        ck_assert_int_le(llabs(jint(j, "mem_before") - f[2]), 64 * 1024);
        ck_assert_int_le(llabs(jint(j, "mem_after") - f[3]), 64 * 1024);
        ck_assert_int_le(llabs(jint(j, "retained") - (f[3] - f[2])), 64 * 1024);
        /* The template's 16 MiB count in the worker's private memory (it maps them)... */
        ck_assert_int_ge(f[2], 16 * MiB);
        if (!cgroups(&r))
            continue;
        /* ...but not in its cgroup: they are charged to the template's. The kernel's peak
         * of the task is the cgroup's usage at its end (the task only grew). */
        ck_assert_int_lt(f[0], 16 * MiB + 8 * MiB * (long long)(i - 1));
        ck_assert_int_le(llabs(jint(j, "mem_peak") - f[1]), 512 * 1024);
        ck_assert_str_eq(jstr(j, "peak_source"), "kernel");
    }
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    /* Recycled for none of that: the soft limit (384M) sees the worker's own memory. */
    ck_assert_int_eq(run_count(&r, "event=recycle "), 0);
    run_free(&r);
}
END_TEST

/* A forked worker (no heap preload: its heap figures are its own, MVW_GO_HEAP) that keeps
 * nothing and answers 12 MiB: heap_retained and retained are what it measured of itself
 * before it made the answer (mvtest_worker's "answer": mallinfo2 and statm), not the
 * answer's buffer (its heap figures come at the answer's end, MVW_F_HEAP_LATE, measured
 * once the buffer is freed: docs/protocols.md, "Big answers"); nor does the task after it
 * show the buffer going away. */
START_TEST(a_forked_workers_big_answer_is_not_what_the_task_kept)
{
    mvrun_t r;
    const char *tasks = "answer 0\nanswer 12\nanswer 0\nanswer 12\nanswer 0\n";
    mvargs_t av;
    const char *const *args = run_argv(&av, RUN_OPTS("supervisor.workers=1", T), RUN_CMD(MVTEST));

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 5, NULL);
    for (size_t i = 2; i <= 5; i++) {
        json_t *j = run_result(&r, i), *own = json_loads(jstr(j, "result"), 0, NULL);
        json_t *start = json_object_get(own, "start"), *end = json_object_get(own, "end");
        long long heap = jint(end, "heap") - jint(start, "heap");
        long long priv = jint(end, "priv") - jint(start, "priv");

        ck_assert_ptr_nonnull(own);
        ck_assert_msg(jstr(j, "heap_source") && strcmp(jstr(j, "heap_source"), "worker") == 0,
                      "task %zu: heap_source %s", i, jstr(j, "heap_source"));
        ck_assert_msg(llabs(jint(j, "heap_retained") - heap) <= 256 * 1024,
                      "task %zu (%s): heap_retained %lld, the worker's own %lld", i,
                      jstr(own, "task"), jint(j, "heap_retained"), heap);
        /* After a big answer the library gives the allocator's free memory back
         * (malloc_trim): lower by at most what the allocator held free. */
        ck_assert_msg(jint(j, "retained") - priv <= 256 * 1024 &&
                          jint(j, "retained") - priv >= -256 * 1024 - jint(end, "free"),
                      "task %zu (%s): retained %lld, the worker's own %lld (%lld free)", i,
                      jstr(own, "task"), jint(j, "retained"), priv, jint(end, "free"));
        json_decref(own);
    }
    run_free(&r);
}
END_TEST

START_TEST(a_template_over_the_soft_limit_from_its_start_is_kept)
{
    mvrun_t r;
    char *tasks = repeat_line("ok", 20);
    /* 40 MiB at start, soft 32M: the template is over it before it forks anything, and its
     * workers map those 40 MiB. Neither is recycled for it: a new template would be as big,
     * and the pages are not the workers'. */
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=2", "limits.memory_soft=32M",
                                                "limits.memory_hard=256M", "limits.max_tasks=4", T),
                                       RUN_CMD(MVTEST, "--alloc-at-start", "40"));

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 20, NULL);
    ck_assert_int_eq(run_count(&r, "event=template_over_soft_limit"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 1);
    ck_assert_int_eq(run_count(&r, "reason=soft_limit"), 0);
    ck_assert_int_ge(run_count(&r, "reason=max_tasks"), 4);
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(a_template_that_crashes_at_start_falls_back_to_exec)
{
    mvrun_t r;
    char *tasks = repeat_line("ok", 10);
    /* It aborts before mvw_open only as the template (MEMVISOR_SLOT=0). */
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", "worker.backoff_min=5ms", T),
                 RUN_CMD(MVTEST, "--crash-at-start-slot", "0"));

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 10, NULL);
    ck_assert_int_eq(run_count(&r, "event=template_exit"), 3);
    ck_assert_int_eq(run_count(&r, "signal=Aborted"), 3);
    ck_assert_int_eq(run_count(&r, "event=template_fallback reason=crash_limit"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 0);
    /* Meanwhile the workers waited; then every one was exec'd (the second may not be needed
     * before the batch ends), and none counts as crashed. */
    ck_assert_int_ge(run_count(&r, "start=exec"), 1);
    ck_assert_int_eq(run_count(&r, "start=fork"), 0);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

/* Spares (and successors) started after templates were given up are exec'd like the slots'
 * workers: their options, copied while templates served, still named the template, so each
 * start was cancelled ("call=uv_spawn error=operation canceled", spare_gone) and, with the
 * backoff, tried again until a reload: no spare ever took a slot. The first 3 processes (the
 * templates) crash; every later one starts. */
START_TEST(spares_start_by_exec_after_templates_are_given_up)
{
    mvrun_t r;
    char count[128];
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "recycle.spares=1", "worker.backoff_min=5ms",
                          "tasks.max_attempts=1", T),
                 RUN_CMD(MVTEST, "--crash-first", "3", count));

    run_init(&r, "ok\ncrash\nok\ncrash\nok\ncrash\nok\ncrash\nok\n");
    snprintf(count, sizeof count, "%s/starts", r.dir);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1);
    run_assert_once(&r, 9, NULL);
    ck_assert_int_eq(run_count(&r, "event=template_fallback reason=crash_limit"), 1);
    ck_assert_int_eq(run_count(&r, "call=uv_spawn error=\"operation canceled\""), 0);
    ck_assert_int_ge(run_count(&r, "event=spare_taken"), 1);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    run_free(&r);
}
END_TEST

/* Templates given up after a crash loop are tried again at a reload, which may have fixed the
 * start-up: here the reload drops the option that crashed it, a template becomes ready and
 * the workers from then on are forked from it. Every task runs once. */
START_TEST(a_reload_tries_templates_given_up_again)
{
    mvrun_t r;
    char conf[PATH_MAX], text[PATH_MAX + 64];
    const char *args[] = {"run",
                          "-c",
                          conf,
                          "-o",
                          "supervisor.workers=1",
                          "-o",
                          "limits.max_tasks=1",
                          "-o",
                          "worker.backoff_min=5ms",
                          "-o",
                          T,
                          NULL};
    char *line;
    pid_t held;

    run_init(&r, "hold 0\nok\nok\nok\nok\n");
    snprintf(text, sizeof text, "[worker]\ncommand = %s --crash-at-start-slot 0\n", MVTEST);
    snprintf(conf, sizeof conf, "%s", run_file(&r, "t.ini", text));
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=template_fallback reason=crash_limit"));
    line = run_wait_for(&r, "held pid=");
    held = (pid_t)field(line, "held pid=");
    free(line);
    ck_assert_int_gt(held, 1);
    snprintf(text, sizeof text, "[worker]\ncommand = %s\n", MVTEST);
    run_file(&r, "t.ini", text);
    ck_assert_int_eq(kill(r.pid, SIGHUP), 0);
    free(run_wait_for(&r, "event=template_retry reason=reload"));
    free(run_wait_for(&r, "event=template_ready template=4 "));
    ck_assert_int_eq(kill(held, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 5, NULL);
    ck_assert_int_eq(jint(run_result(&r, 1), "pid"), held);
    ck_assert_int_eq(run_count(&r, "event=template_fallback"), 1);
    /* The held task's worker was exec'd; the tasks after the reload went to forked ones. */
    ck_assert_int_ge(run_count(&r, "start=exec"), 1);
    ck_assert_int_ge(run_count(&r, "start=fork"), 1);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    run_free(&r);
}
END_TEST

START_TEST(a_template_fatal_exit_ends_the_run)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", T), RUN_CMD(MVTEST, "--fatal"));

    ck_assert_int_ne(run_batch(&r, "ok\nok\n", args), 0);
    ck_assert_int_eq(run_count(&r, "event=fatal_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_exit"), 1);
    ck_assert_int_eq(run_count(&r, "event=spawn "), 0); /* no worker was started at all */
    ck_assert_int_eq(run_count(&r, "--fatal: exiting with 78"), 1);
    run_free(&r);
}
END_TEST

START_TEST(a_template_killed_later_is_replaced_and_its_workers_live_on)
{
    mvrun_t r;
    const char *tasks = "ok\nsay busy sleep 500\nok\nok\nok\nok\n";
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", "limits.max_tasks=1", T), RUN_CMD(MVTEST));
    char *line;
    pid_t tp, busy;
    json_t *j;

    run_init(&r, tasks);
    run_start(&r, args, NULL);
    tp = template_pid(&r);
    line = run_wait_for(&r, "busy pid=");
    busy = (pid_t)field(line, "busy pid=");
    free(line);
    ck_assert_int_eq(kill(tp, SIGKILL), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 6, NULL);
    /* The busy worker finished its task: the template's death is not its own. */
    j = run_result(&r, 2);
    ck_assert_int_eq(jint(j, "pid"), busy);
    ck_assert_int_eq(jint(j, "attempts"), 1);
    ck_assert_str_eq(jstr(j, "result"), "slept=500");
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_ge(run_count(&r, "signal=Killed"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_ready template=2"), 1);
    /* Later workers came from the new template; nobody gave up on templates. */
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_eq(run_count(&r, "template_fallback"), 0);
    for (size_t i = 1; i <= 6; i++)
        ck_assert_str_eq(jstr(run_result(&r, i), "status"), "ok");
    run_free(&r);
}
END_TEST

/* A Python worker whose template grows by 4 MiB before each fork (os.register_at_fork: the
 * interpreter's own before-fork hooks run in the template), and which answers with what it
 * is: pid, parent, slot, a random number. A "wait" task waits for the file named by its
 * third argument: the test holds the batch there until the new template is ready. */
static const char *grower = "import os, random, sys, time\n"
                            "sys.path.insert(0, sys.argv[1])\n"
                            "KEPT = []\n"
                            "os.register_at_fork(before=lambda: KEPT.append(b'x' * (4 << 20)))\n"
                            "import memvisor_worker\n"
                            "def handle(task):\n"
                            "    while task.text == 'wait' and not os.path.exists(sys.argv[2]):\n"
                            "        time.sleep(0.01)\n"
                            "    return '%d %d %s %r' % (os.getpid(), os.getppid(),\n"
                            "        os.environ['MEMVISOR_SLOT'], random.random())\n"
                            "memvisor_worker.main(handle)\n";

START_TEST(a_python_template_that_grows_past_the_soft_limit_is_replaced)
{
    mvrun_t r;
    char *who = repeat_line("who", 12), *tasks = malloc(strlen(who) * 2 + 16), flag[128];
    const char *script, *args[] = {"run",
                                   "-o",
                                   "supervisor.workers=1",
                                   "-o",
                                   "limits.memory_soft=32M",
                                   "-o",
                                   "limits.memory_hard=256M",
                                   "-o",
                                   "limits.max_tasks=1",
                                   "-o",
                                   T,
                                   "--",
                                   "python3",
                                   NULL,
                                   SOURCE_DIR "/worker-api/python",
                                   flag,
                                   NULL};
    char seen[25][64];
    FILE *f;

    sprintf(tasks, "%swait\n%s", who, who);
    run_init(&r, tasks);
    script = run_file(&r, "grower.py", grower);
    args[13] = script;
    snprintf(flag, sizeof flag, "%s/go", r.dir);
    run_start(&r, args, NULL);
    /* The first one grew past 32M after a few forks: a new one starts, the old one serves
     * until it is ready (the batch waits meanwhile at "wait"), then retires. */
    free(run_wait_for(&r, "event=template_recycle template=1"));
    free(run_wait_for(&r, "event=template_ready template=2"));
    f = fopen(flag, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 25, NULL);
    ck_assert_int_ge(run_count(&r, "reason=soft_limit"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    for (size_t i = 1; i <= 25; i++) {
        json_t *j = run_result(&r, i);
        long long pid, ppid;
        char slot[8], rnd[48];

        ck_assert_str_eq(jstr(j, "status"), "ok");
        ck_assert_int_eq(sscanf(jstr(j, "result"), "%lld %lld %7s %47s", &pid, &ppid, slot, rnd),
                         4);
        /* memvisor is every worker's parent; each has its slot and its own random state */
        ck_assert_int_eq(pid, jint(j, "pid"));
        ck_assert_int_eq(ppid, r.pid);
        ck_assert_str_eq(slot, "1");
        snprintf(seen[i - 1], sizeof seen[i - 1], "%s", rnd);
        for (size_t k = 0; k + 1 < i; k++)
            ck_assert_str_ne(seen[k], rnd);
    }
    free(who);
    free(tasks);
    run_free(&r);
}
END_TEST

/* [worker] user: the template runs as that user (the exec shim drops to it), so its workers
 * are that user from their first instruction; they still join their own cgroups (v1: the
 * cgroup.procs memvisor opened as root; v2: born there when allowed, else the same write),
 * whose limits they cannot touch. */
START_TEST(forked_workers_run_as_the_worker_user)
{
    mvrun_t r;
    struct passwd *pw = getpwnam("nobody");
    const char *args[] = {
        "run", "-o", "supervisor.workers=1", "-o", "worker.user=nobody", "-o", T, "--", NULL, NULL};

    if (geteuid() != 0 || !pw || pw->pw_uid != 65534) {
        fprintf(stderr, "template: skipped the worker user test (needs root and nobody)\n");
        return;
    }
    run_init(&r, "whoami\ncgwrite\ncgroup\n");
    args[8] = run_reachable(&r, MVTEST);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_ptr_nonnull(
        strstr(jstr(run_result(&r, 1), "result"), "uid=65534 gid=65534 groups=0"));
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 1);
    if (cgroups(&r)) {
        ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "cgwrite=denied");
        ck_assert_msg(strstr(jstr(run_result(&r, 3), "result"), "/w1."), "%s",
                      jstr(run_result(&r, 3), "result"));
    }
    run_free(&r);
}
END_TEST

START_TEST(kill_9_of_memvisor_leaves_no_template_and_no_worker)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(&av, RUN_OPTS("supervisor.workers=2", T), RUN_CMD(MVTEST));
    pid_t tp, w[2];
    char *line;

    run_init(&r, "say held hang\nsay held hang\n");
    run_start(&r, args, NULL);
    tp = template_pid(&r);
    for (int i = 0; i < 2; i++) {
        line = run_wait_for(&r, "held pid=");
        w[i] = (pid_t)field(line, "held pid=");
        free(line);
    }
    kill(r.pid, SIGKILL);
    ck_assert_int_eq(run_finish(&r), 128 + SIGKILL);
    ck_assert_msg(gone_soon(tp), "the template %d outlived memvisor", (int)tp);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(gone_soon(w[i]), "worker %d outlived memvisor", (int)w[i]);
    run_free(&r);
}
END_TEST

START_TEST(status_and_metrics_show_the_template)
{
    mvrun_t r, c;
    mvargs_t av;
    const char *const *args = run_argv(&av, RUN_OPTS("supervisor.workers=2", T), RUN_CMD(MVTEST));
    char sock[160];
    const char *ctl[] = {"status", "--json", "--socket", sock, NULL};
    json_error_t je;
    json_t *j, *t;
    pid_t tp;

    run_init(&r, "say held hang\nsay held hang\n");
    run_start(&r, args, NULL);
    tp = template_pid(&r);
    free(run_wait_for(&r, "held pid="));
    free(run_wait_for(&r, "held pid="));
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    run_init(&c, NULL);
    run_start(&c, ctl, NULL);
    ck_assert_int_eq(run_finish(&c), 0);
    j = json_loads(run_summary(&c), 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);
    t = json_object_get(j, "template");
    ck_assert_int_eq(jint(t, "pid"), tp);
    ck_assert_int_eq(jint(t, "gen"), 1);
    ck_assert_str_eq(jstr(t, "state"), "ready");
    ck_assert_int_ge(jint(t, "forks"), 2);
    ck_assert_int_gt(jint(t, "usage"), 0);
    ck_assert(json_is_false(json_object_get(t, "fallback")));
    json_decref(j);
    run_free(&c);
    ctl[0] = "metrics";
    ctl[1] = "--socket";
    ctl[2] = sock;
    ctl[3] = NULL;
    run_init(&c, NULL);
    run_start(&c, ctl, NULL);
    ck_assert_int_eq(run_finish(&c), 0);
    ck_assert_ptr_nonnull(strstr(run_summary(&c), "memvisor_template_up 1\n"));
    ck_assert_ptr_nonnull(strstr(run_summary(&c), "memvisor_template_generation 1\n"));
    ck_assert_ptr_nonnull(strstr(run_summary(&c), "memvisor_template_forks_total "));
    run_free(&c);
    ck_assert_int_eq(run_ctl("stop", sock), 0);
    kill(r.pid, SIGKILL); /* the workers hang: no need to wait for the grace period */
    run_finish(&r);
    run_free(&r);
}
END_TEST

/* A FORK goes with memvisor's own fds when nothing is queued before it (no copies: three
 * fcntl and three close a worker); requests queued while the template starts or is replaced
 * take copies. Either way each worker gets exactly its own fds (the same count in every
 * task, against a leaked or a missing one), and every one is a normal worker. */
START_TEST(forks_go_with_memvisors_fds_when_nothing_is_queued)
{
    mvrun_t r;
    mvargs_t a;
    char *tasks = repeat_line("ok", 30);
    const char *const *args = run_argv(&a,
                                       RUN_OPTS("supervisor.workers=2", "limits.max_tasks=1",
                                                "recycle.max_concurrent=2", "log.level=debug", T),
                                       RUN_CMD(MVTEST));
    int direct, copied;
    long long fds;

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 30, NULL);
    direct = run_count(&r, " fds=direct");
    copied = run_count(&r, " fds=copied");
    ck_assert_int_ge(direct, 20);
    ck_assert_int_eq(direct + copied, run_count(&r, "event=forked "));
    ck_assert_int_eq(run_count(&r, "event=spawn "), run_count(&r, "start=fork"));
    /* A replacement asked for at the end may be forked and then not needed (an orphan). */
    ck_assert_int_le(run_count(&r, "event=spawn "), direct + copied);
    ck_assert_int_ge(run_count(&r, "event=spawn "), 30);
    fds = jint(run_result(&r, 1), "fds_before");
    ck_assert_int_gt(fds, 2);
    for (size_t i = 1; i <= 30; i++) {
        ck_assert_str_eq(jstr(run_result(&r, i), "status"), "ok");
        ck_assert_int_eq(jint(run_result(&r, i), "fds_before"), fds);
    }
    /* Each exited 0 after its one task, for max_tasks, or for the run's end: the last one,
     * and the other slot's when the run ended while it was still leaving for max_tasks (a
     * shutdown's reason goes over a drain's; 28 and 2 once, on a loaded machine). */
    ck_assert_int_eq(run_count(&r, " status=0 tasks=1 "), 30);
    ck_assert_int_ge(run_count(&r, " reason=max_tasks status=0 "), 28);
    ck_assert_int_eq(run_count(&r, " reason=max_tasks status=0 tasks=1 ") +
                         run_count(&r, " reason=shutdown status=0 tasks=1 "),
                     30);
    ck_assert_int_eq(run_count(&r, "template_protocol_error"), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

/* Spares are slot 0 (w0.<n>) and count their own generations; a template's cgroup is t.<gen>.
 * Both were w0.<n>: the first spare was made in the template's cgroup (its figures counted the
 * template), and the template was killed when that cgroup was removed or reused. */
START_TEST(a_spare_never_shares_the_templates_cgroup)
{
    mvrun_t r;
    mvargs_t a;
    char *tasks = repeat_line("ok", 200), needle[4200];
    const char *const *args =
        run_argv(&a, RUN_OPTS("supervisor.workers=2", "recycle.spares=1", "limits.max_tasks=20", T),
                 RUN_CMD(MVTEST));
    const char *at, *end;

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 200, NULL);
    ck_assert_int_ge(run_count(&r, "event=spare_taken"), 1);
    if (cgroups(&r)) {
        at = strstr(strstr(r.log, "event=template_spawn template=1 "), " cgroup=");
        ck_assert_ptr_nonnull(at);
        at += strlen(" cgroup=");
        end = strpbrk(at, " \n");
        ck_assert_ptr_nonnull(end);
        snprintf(needle, sizeof needle, "cgroup=%.*s ", (int)(end - at), at);
        ck_assert_msg(run_count(&r, needle) == 0, "a worker in the template's %s", needle);
    }
    ck_assert_int_eq(run_count(&r, "event=template_ready"), 1); /* never killed, never replaced */
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "reason=retired"), 1);
    ck_assert_int_eq(run_count(&r, "event=spawn_failed"), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

/* A forked Python worker's channel is on the fd $MEMVISOR_FD names and not inherited by what
 * it runs, whether the template's Worker took that fd (its socket object is kept for the
 * worker) or was given another (`Worker(fd)`, a wrapper that moved it: the worker then holds
 * no copy of the template's channel). Each task answers: forked, its channel on
 * $MEMVISOR_FD, that fd inheritable, the moved fd still open. */
static const char *channel_fd =
    "import os, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import memvisor_worker\n"
    "FD = int(os.environ['MEMVISOR_FD'])\n"
    "MOVED = os.dup(FD) if sys.argv[2] == 'moved' else None\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "        return True\n"
    "    except OSError:\n"
    "        return False\n"
    "w = memvisor_worker.Worker(MOVED)\n"
    "for task in w:\n"
    "    w.done('%s %s %s %s' % (w.forked, w.fileno() == FD,\n"
    "        os.get_inheritable(FD), MOVED is not None and is_open(MOVED)))\n"
    "w.close()\n";

START_TEST(a_forked_python_workers_channel_is_its_own_and_not_inherited)
{
    static const char *const ways[] = {"same", "moved"};

    for (size_t k = 0; k < 2; k++) {
        mvrun_t r;
        mvargs_t av;

        run_init(&r, "a\nb\nc\n");
        run_start(&r,
                  run_argv(&av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", T),
                           RUN_CMD("python3", run_file(&r, "channel.py", channel_fd),
                                   SOURCE_DIR "/worker-api/python", ways[k])),
                  NULL);
        ck_assert_int_eq(run_finish(&r), 0);
        run_assert_once(&r, 3, NULL);
        ck_assert_int_eq(run_count(&r, "start=exec"), 0);
        for (size_t i = 1; i <= 3; i++) {
            json_t *j = run_result(&r, i);

            ck_assert_str_eq(jstr(j, "status"), "ok");
            ck_assert_msg(strcmp(jstr(j, "result"), "True True False False") == 0,
                          "%s: task %zu answered %s", ways[k], i, jstr(j, "result"));
        }
        run_free(&r);
    }
}
END_TEST

/* A Python template that dies as it is asked to fork (an at-fork hook of its start-up): every
 * FORK in flight is cancelled and asked again of the next template, which dies too, until
 * templates are given up and workers exec'd. No task fails: each cancelled start is said as a
 * warning that it is started again, not as an error (one error line per request was logged
 * while nothing failed). */
static const char *dies_at_fork = "import os, sys\n"
                                  "sys.path.insert(0, sys.argv[1])\n"
                                  "os.register_at_fork(before=lambda: os._exit(1))\n"
                                  "import memvisor_worker\n"
                                  "memvisor_worker.main(lambda task: 'ok')\n";

START_TEST(a_template_dying_at_each_fork_warns_its_starts_are_retried)
{
    mvrun_t r;
    mvargs_t av;

    run_init(&r, "ok\nok\nok\n");
    run_start(&r,
              run_argv(&av, RUN_OPTS("supervisor.workers=1", "worker.ready_timeout=10s", T),
                       RUN_CMD("python3", run_file(&r, "dies.py", dies_at_fork),
                               SOURCE_DIR "/worker-api/python")),
              NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_ge(run_count(&r, "event=template_fallback"), 1);
    ck_assert_log(&r, run_count(&r, "warn  event=spawn_failed") >= 1, "no spawn_failed warning");
    ck_assert_log(&r, run_count(&r, "error event=spawn_failed") == 0, "a spawn_failed error");
    run_free(&r);
}
END_TEST

/* A Python worker whose first forked child exits 0 before its HELLO (an at-fork hook of its
 * start-up, os.register_at_fork(after_in_child=...), runs in each child before HELLO): the
 * file named by argv[2] marks that it happened once. */
static const char *quitter = "import os, sys\n"
                             "sys.path.insert(0, sys.argv[1])\n"
                             "TEMPLATE = os.getpid()\n"
                             "def child():\n"
                             "    if os.getpid() != TEMPLATE and not os.path.exists(sys.argv[2]):\n"
                             "        open(sys.argv[2], 'w').close()\n"
                             "        os._exit(0)\n"
                             "os.register_at_fork(after_in_child=child)\n"
                             "import memvisor_worker\n"
                             "memvisor_worker.main(lambda task: 'ok')\n";

/* A forked worker that exits 0 before HELLO is a crash of that worker (respawned, counted
 * toward crash_limit), not a worker that does not speak the protocol: its template said
 * HELLO. It ended the run (`no_hello ... needs [worker] protocol = lines; the run ends`). */
START_TEST(a_forked_worker_that_exits_0_before_hello_is_a_crash)
{
    mvrun_t r;
    mvargs_t av;
    char flag[128];

    run_init(&r, "ok\nok\nok\n");
    snprintf(flag, sizeof flag, "%s/quit", r.dir);
    run_start(&r,
              run_argv(&av, RUN_OPTS("supervisor.workers=1", "worker.backoff_min=5ms", T),
                       RUN_CMD("python3", run_file(&r, "quitter.py", quitter),
                               SOURCE_DIR "/worker-api/python", flag)),
              NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    for (size_t i = 1; i <= 3; i++)
        ck_assert_str_eq(jstr(run_result(&r, i), "status"), "ok");
    ck_assert_int_eq(access(flag, F_OK), 0);
    ck_assert_int_eq(run_count(&r, "reason=crash status=0 tasks=0"), 1);
    ck_assert_int_eq(run_count(&r, "event=no_hello"), 0);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    run_free(&r);
}
END_TEST

/* A Python template that exits with the fatal code (78) in its at-fork hook at its 5th FORK:
 * that request is in flight when it goes. */
static const char *fatal_at_fork = "import os, sys\n"
                                   "sys.path.insert(0, sys.argv[1])\n"
                                   "N = [0]\n"
                                   "def before():\n"
                                   "    N[0] += 1\n"
                                   "    if N[0] == 5:\n"
                                   "        os._exit(78)\n"
                                   "os.register_at_fork(before=before)\n"
                                   "import memvisor_worker\n"
                                   "memvisor_worker.main(lambda task: 'ok')\n";

/* The template's fatal exit stops the run, which lets go of the worker waiting for the FORK
 * it never answered; that request is not answered afterwards as if the worker still waited
 * (it was: `cant_happen state=dead fsm_event=spawn_failed`, on a worker the stop had let go). */
START_TEST(a_template_fatal_exit_with_a_fork_in_flight_ends_the_run_cleanly)
{
    mvrun_t r;
    mvargs_t av;
    char *tasks = repeat_line("ok", 20);

    run_init(&r, tasks);
    run_start(&r,
              run_argv(&av, RUN_OPTS("supervisor.workers=2", "limits.max_tasks=1", T),
                       RUN_CMD("python3", run_file(&r, "fatal_at_fork.py", fatal_at_fork),
                               SOURCE_DIR "/worker-api/python")),
              NULL);
    ck_assert_int_eq(run_finish(&r), 3);
    run_assert_at_most_once(&r, 20);
    ck_assert_int_eq(run_count(&r, "event=fatal_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "forks=4"), 1);
    ck_assert_int_eq(run_count(&r, "event=cant_happen"), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

/* A template that lies in its FORKED: it forks nothing and names another process (argv[2])
 * as the child, as code in a template could, writing to its control socket itself. */
static const char *liar =
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import memvisor_template\n"
    "VICTIM = int(sys.argv[2])\n"
    "memvisor_template._Clone.clone = lambda self, cgdir: (VICTIM, 0, False)\n"
    "import memvisor_worker\n"
    "memvisor_worker.main(lambda task: 'ok')\n";

/* memvisor watches and signals only its own children: a pid a template names that is not one
 * (here the test's own child) is refused, never signalled. It was taken for the worker, and
 * SIGKILLed at its kill_timeout: a template (the worker's code, as [worker] user) could have
 * memvisor, as root, kill any process. */
START_TEST(a_template_that_names_a_pid_not_memvisors_child_gets_it_signalled_never)
{
    mvrun_t r;
    mvargs_t av;
    char victim_text[16];
    pid_t victim = fork();
    int status;

    ck_assert_int_ge(victim, 0);
    if (victim == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            pause();
    }
    snprintf(victim_text, sizeof victim_text, "%d", (int)victim);
    run_init(&r, "ok\nok\n");
    run_start(&r,
              run_argv(&av,
                       RUN_OPTS("supervisor.workers=1", "worker.crash_limit=2",
                                "worker.kill_timeout=200ms", "worker.ready_timeout=10s", T),
                       RUN_CMD("python3", run_file(&r, "liar.py", liar),
                               SOURCE_DIR "/worker-api/python", victim_text)),
              NULL);
    ck_assert_int_eq(run_finish(&r), 3);                    /* no worker ever starts: crash_limit */
    ck_assert_int_eq(waitpid(victim, &status, WNOHANG), 0); /* still running */
    ck_assert_log(&r, run_count(&r, "not memvisor's child") >= 1, "no \"not memvisor's child\"");
    ck_assert_int_eq(run_count(&r, "event=kill_timeout"), 0);
    kill(victim, SIGKILL);
    ck_assert_int_eq(waitpid(victim, &status, 0), victim);
    run_free(&r);
}
END_TEST

/* A spare (or a successor) is forked, watched through its pidfd and reaped there: the reaper
 * ([supervisor] subreaper) leaves it alone, as it leaves the slots' workers. It did not: a
 * sweep run by another child's SIGCHLD (here the template's, killed at the same moment) took
 * the spare's status (`orphan_reaped`), and the spare's own reap found nothing:
 * `spare_gone ... status=-1`. A race: 2 of 15 rounds lost it here; 100 rounds are run. */
START_TEST(a_spare_killed_with_its_template_keeps_its_exact_status_under_a_subreaper)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "supervisor.subreaper=yes", "recycle.spares=1",
                          "worker.backoff_min=5ms", "worker.backoff_max=20ms",
                          "supervisor.grace_period=100ms", T),
                 RUN_CMD(MVTEST));
    const int rounds = 100;

    run_init(&r, "hang\n");
    run_start(&r, args, NULL);
    for (int i = 0; i < rounds; i++) {
        pid_t tp = template_pid(&r);
        char *line = run_wait_for(&r, "event=ready worker=0 ");
        pid_t sp = (pid_t)field(line, " pid=");

        free(line);
        ck_assert_int_gt(sp, 0);
        kill(tp, SIGKILL);
        kill(sp, SIGKILL);
    }
    template_pid(&r); /* the last ones are replaced: their exits are in */
    free(run_wait_for(&r, "event=ready worker=0 "));
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_eq(run_count(&r, "event=orphan_reaped"), 0);
    ck_assert_int_eq(run_count(&r, "status=-1 "), 0);
    /* Each killed spare, with its exact status; a spare whose FORK was in flight to the
     * template killed with it never existed (spare_gone pid=0, "Connection reset by peer"). */
    ck_assert_int_eq(run_count(&r, "status=-9 error=crash"), rounds);
    ck_assert_int_ge(run_count(&r, "event=spare_gone"), rounds);
    ck_assert_int_eq(run_count(&r, "reason=crash signal=Killed"), rounds); /* the spares */
    ck_assert_int_eq(run_count(&r, "signal=Killed reason=crash"), rounds); /* the templates */
    run_free(&r);
}
END_TEST

/* A template that names itself in its FORKED. */
static const char *narcissus = "import os, sys\n"
                               "sys.path.insert(0, sys.argv[1])\n"
                               "import memvisor_template\n"
                               "memvisor_template._Clone.clone = lambda self, cgdir: (os.getpid(), "
                               "0, False)\n"
                               "import memvisor_worker\n"
                               "memvisor_worker.main(lambda task: 'ok')\n";

/* A pid memvisor has already (here the template's own, its child) is no new worker either:
 * refused as above. It froze the run: the template was taken for its own worker, that
 * worker's pidfd reaped the template, so libuv never reported the template's exit; no other
 * template started, no crash_limit came, and SIGTERM did not end it. */
START_TEST(a_template_that_names_itself_is_refused_and_the_run_goes_on)
{
    mvrun_t r;
    mvargs_t av;

    run_init(&r, "ok\nok\n");
    run_start(&r,
              run_argv(&av,
                       RUN_OPTS("supervisor.workers=1", "worker.crash_limit=2",
                                "worker.kill_timeout=200ms", "worker.ready_timeout=10s", T),
                       RUN_CMD("python3", run_file(&r, "narcissus.py", narcissus),
                               SOURCE_DIR "/worker-api/python")),
              NULL);
    ck_assert_int_eq(run_finish(&r), 3); /* no worker ever starts: crash_limit */
    ck_assert_int_ge(run_count(&r, "not memvisor's child"), 1);
    ck_assert_int_ge(run_count(&r, "event=template_exit template=2 "), 1); /* replaced */
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 1);
    run_free(&r);
}
END_TEST

Suite *template_suite(void)
{
    Suite *s = suite_create("template");
    TCase *tc = tcase_create("forked");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forked_workers_exit_with_their_exact_status);
    tcase_add_test(tc, forked_workers_keep_their_status_with_a_subreaper);
    tcase_add_test(tc, a_fork_in_flight_at_the_end_is_answered_before_the_template_goes);
    tcase_add_test(tc, the_hard_limit_kills_a_forked_worker_and_only_it);
    tcase_add_test(tc, per_task_figures_of_a_forked_worker_match_its_own);
    tcase_add_test(tc, a_forked_workers_big_answer_is_not_what_the_task_kept);
    tcase_add_test(tc, a_template_over_the_soft_limit_from_its_start_is_kept);
    tcase_add_test(tc, a_template_that_crashes_at_start_falls_back_to_exec);
    tcase_add_test(tc, spares_start_by_exec_after_templates_are_given_up);
    tcase_add_test(tc, a_template_fatal_exit_ends_the_run);
    tcase_add_test(tc, a_template_killed_later_is_replaced_and_its_workers_live_on);
    tcase_add_test(tc, a_python_template_that_grows_past_the_soft_limit_is_replaced);
    tcase_add_test(tc, forked_workers_run_as_the_worker_user);
    tcase_add_test(tc, kill_9_of_memvisor_leaves_no_template_and_no_worker);
    tcase_add_test(tc, status_and_metrics_show_the_template);
    tcase_add_test(tc, forks_go_with_memvisors_fds_when_nothing_is_queued);
    tcase_add_test(tc, a_spare_never_shares_the_templates_cgroup);
    tcase_add_test(tc, a_forked_worker_that_exits_0_before_hello_is_a_crash);
    tcase_add_test(tc, a_forked_python_workers_channel_is_its_own_and_not_inherited);
    tcase_add_test(tc, a_template_dying_at_each_fork_warns_its_starts_are_retried);
    tcase_add_test(tc, a_template_fatal_exit_with_a_fork_in_flight_ends_the_run_cleanly);
    tcase_add_test(tc, a_template_that_names_a_pid_not_memvisors_child_gets_it_signalled_never);
    tcase_add_test(tc, a_template_that_names_itself_is_refused_and_the_run_goes_on);
    tcase_add_test(tc, a_reload_tries_templates_given_up_again);
    tcase_add_test(tc, a_spare_killed_with_its_template_keeps_its_exact_status_under_a_subreaper);
    suite_add_tcase(s, tc);
    return s;
}
