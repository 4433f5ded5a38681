/*
 * exitcode: what a stopped batch's exit status and summary say (issue 8 #6). `memvisor stop`
 * before every task ended: 4; a signal: 128+N; a stop that let the last tasks finish: as if
 * there had been none. The summary and run.json count the tasks that did not run, those still
 * in the source included.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

/* `held` tasks that hold their worker until released ("hold 0": SIGUSR1), then `n` short
 * ones, on 2 workers; once the held ones run, stopped by `memvisor stop` (how "stop") and then
 * signal `sig` if it is not 0, or by signal `sig` alone (how NULL); then the held tasks are
 * released. Deterministic: whatever the speed of the machine, the held tasks are in flight
 * when the stop comes. */
static int stop_mid_batch(mvrun_t *r, int held, int n, const char *how, int sig)
{
    char *rest = repeat_line("sleep 50", n), *first = repeat_line("hold 0", held);
    char *tasks = malloc(strlen(rest) + strlen(first) + 1), sock[128], *line;
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", MVTEST, NULL};
    int pids[2];

    ck_assert_int_le(held, 2);
    sprintf(tasks, "%s%s", first, rest);
    run_init(r, tasks);
    run_start(r, args, NULL);
    for (int i = 0; i < held; i++) {
        line = run_wait_for(r, "held pid=");
        pids[i] = atoi(strstr(line, "held pid=") + 9);
        free(line);
    }
    snprintf(sock, sizeof sock, "%s/state/control.sock", r->dir);
    if (how)
        ck_assert_int_eq(run_ctl(how, sock), 0);
    if (sig)
        kill(r->pid, sig);
    free(run_wait_for(r, how ? "event=stop_requested" : "event=signal"));
    for (int i = 0; i < held; i++)
        kill(pids[i], SIGUSR1);
    free(rest);
    free(first);
    free(tasks);
    return run_finish(r);
}

/* The "not run" count of the summary (-1 when there is no such line). */
static long long summary_not_run(mvrun_t *r)
{
    const char *s = strstr(run_summary(r), "not run   ");

    return s ? atoll(s + 10) : -1;
}

/* run.json's tasks.not_run, or -2 when missing, -1 when null. */
static long long run_json_not_run(const mvrun_t *r)
{
    char path[256];
    json_t *doc, *v;
    long long n;

    snprintf(path, sizeof path, "%s/state/latest/run.json", r->dir);
    doc = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    v = json_object_get(json_object_get(doc, "tasks"), "not_run");
    n = !v ? -2 : json_is_null(v) ? -1 : json_integer_value(v);
    json_decref(doc);
    return n;
}

START_TEST(stop_before_the_end_exits_4)
{
    mvrun_t r;

    ck_assert_int_eq(stop_mid_batch(&r, 1, 200, "stop", 0), 4);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "stopped by memvisor stop"));
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "exit      4"));
    /* Every task is either in the results or counted as not run: exactly. */
    ck_assert_uint_lt(r.nres, 201);
    ck_assert_int_eq(summary_not_run(&r), 201 - (long long)r.nres);
    ck_assert_int_eq(run_json_not_run(&r), 201 - (long long)r.nres);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "held=0"); /* the running one finished */
    run_assert_at_most_once(&r, 201);
    run_free(&r);
}
END_TEST

START_TEST(a_signal_before_the_end_exits_128_plus_n)
{
    mvrun_t r;

    ck_assert_int_eq(stop_mid_batch(&r, 1, 200, NULL, SIGTERM), 128 + SIGTERM);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "stopped by a signal"));
    ck_assert_int_eq(summary_not_run(&r), 201 - (long long)r.nres);
    ck_assert_int_eq(run_json_not_run(&r), 201 - (long long)r.nres);
    run_free(&r);
    /* A signal after `memvisor stop` does not change who stopped it. */
    ck_assert_int_eq(stop_mid_batch(&r, 1, 200, "stop", SIGTERM), 4);
    run_free(&r);
}
END_TEST

/* Judged at exit: a stop that lets the last tasks finish leaves nothing undone, so the batch
 * exits as it would have (0 here; 1 with a failed task). */
START_TEST(a_stop_after_the_last_task_started_changes_nothing)
{
    mvrun_t r;

    ck_assert_int_eq(stop_mid_batch(&r, 2, 0, "stop", 0), 0);
    run_assert_once(&r, 2, NULL);
    ck_assert_int_eq(summary_not_run(&r), -1);
    ck_assert_int_eq(run_json_not_run(&r), 0);
    run_free(&r);
    ck_assert_int_eq(stop_mid_batch(&r, 2, 0, NULL, SIGINT), 0);
    run_assert_once(&r, 2, NULL);
    run_free(&r);
}
END_TEST

Suite *exitcode_suite(void)
{
    Suite *s = suite_create("exitcode");
    TCase *tc = tcase_create("stopped");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, stop_before_the_end_exits_4);
    tcase_add_test(tc, a_signal_before_the_end_exits_128_plus_n);
    tcase_add_test(tc, a_stop_after_the_last_task_started_changes_nothing);
    suite_add_tcase(s, tc);
    return s;
}
