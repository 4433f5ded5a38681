/*
 * handoff: a template memvisor did not start, handed over at exec (supervisor/handoff.h), as
 * memvisor.Pool forks its first template from the caller. The parsing of the variable alone;
 * then the real binary, exec'd by tests/helpers/handoff_exec after it forked the template
 * (mvtest_worker): adopted and forking workers; refused when the templates are off (the child
 * is killed) or the variable is bad (the run goes on with a template it starts); a handed-over
 * template that dies at adoption is replaced by one memvisor starts.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../supervisor/handoff.h"
#include "harness.h"
#include "suites.h"

#define T       "worker.template=yes"
#define HANDOFF mv_test_path("helpers/handoff_exec")

START_TEST(the_variable_is_three_distinct_fds_above_2)
{
    mv_handoff_t h;

    ck_assert_int_eq(mv_handoff_parse("5,6,7", &h), 0);
    ck_assert_int_eq(h.pidfd, 5);
    ck_assert_int_eq(h.ctl, 6);
    ck_assert_int_eq(h.out, 7);
    ck_assert_int_eq(h.pid, 0);
    ck_assert_int_eq(mv_handoff_parse("12,3,1000", &h), 0);
    ck_assert_int_eq(h.out, 1000);
    static const char *const bad[] = {"",       "5,6",    "5,6,7,8", "5,6,x",
                                      "2,6,7",  "5,5,7",  "5,6,5",   "5, 6, 7",
                                      "-5,6,7", "5,6,7 ", "5,,7",    "99999999,6,7"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(mv_handoff_parse(bad[i], &h) == -EINVAL, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(h.pidfd, -1);
    }
    ck_assert_int_eq(mv_handoff_parse(NULL, &h), -EINVAL);
}
END_TEST

/* A batch of n "ok" tasks, memvisor exec'd by handoff_exec with `wrap` in front. */
static int handed_over(mvrun_t *r, int n, const char *const *wrap, const char *const *opts)
{
    char *tasks = repeat_line("ok", n);
    mvargs_t av;
    int code;

    run_init(r, tasks);
    r->wrap = wrap;
    run_start(r, run_argv(&av, opts, RUN_CMD(MVTEST)), NULL);
    code = run_finish(r);
    free(tasks);
    return code;
}

/* The number after `key` in the first line with `event`, or -1. */
static long long first_field(mvrun_t *r, const char *event, const char *key)
{
    const char *at = strstr(r->log, event);
    const char *v = at ? strstr(at, key) : NULL;

    return v && v < strchr(at, '\n') ? atoll(v + strlen(key)) : -1;
}

static bool gone_soon(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    for (int i = 0; i < 500; i++) {
        if (access(path, F_OK) != 0)
            return true;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return false;
}

START_TEST(a_handed_over_template_is_adopted_and_forks_the_workers)
{
    mvrun_t r;
    const char *const wrap[] = {HANDOFF, MVTEST, "--", NULL};

    ck_assert_int_eq(handed_over(&r, 20, wrap, RUN_OPTS("supervisor.workers=2", T)), 0);
    run_assert_once(&r, 20, NULL);
    ck_assert_int_eq(run_count(&r, "event=template_adopted template=1"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_spawn"), 1); /* no other template */
    ck_assert_int_eq(run_count(&r, "event=template_ready template=1"), 1);
    ck_assert_int_ge(run_count(&r, "start=fork"), 1);
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_eq(run_count(&r, "reason=retired"), 1);
    ck_assert_int_eq(run_count(&r, "template_handoff_refused"), 0);
    run_free(&r);
}
END_TEST

/* One refusal was logged, and the handed-over child it names is gone. */
static void assert_refused_and_killed(mvrun_t *r)
{
    pid_t pid;

    ck_assert_int_eq(run_count(r, "event=template_handoff_refused"), 1);
    pid = (pid_t)first_field(r, "event=template_handoff_refused", " pid=");
    ck_assert_int_gt(pid, 1);
    ck_assert_msg(gone_soon(pid), "the refused template %d still runs", (int)pid);
}

START_TEST(a_handoff_without_templates_is_refused_and_its_child_killed)
{
    mvrun_t r;
    const char *const wrap[] = {HANDOFF, MVTEST, "--", NULL};

    ck_assert_int_eq(handed_over(&r, 5, wrap, RUN_OPTS("supervisor.workers=1")), 0);
    run_assert_once(&r, 5, NULL);
    assert_refused_and_killed(&r);
    ck_assert_int_eq(run_count(&r, "event=template_"), 1);
    run_free(&r);
}
END_TEST

/* Without memory cgroups a forked worker's limit figure counts the pages it shares with its
 * template: a copy of a big caller would put every worker over its soft limit. */
START_TEST(without_cgroups_a_handoff_is_refused_and_the_template_started)
{
    mvrun_t r;
    const char *const wrap[] = {HANDOFF, MVTEST, "--", NULL};

    ck_assert_int_eq(
        handed_over(&r, 10, wrap, RUN_OPTS("supervisor.workers=2", "supervisor.cgroup=off", T)), 0);
    run_assert_once(&r, 10, NULL);
    assert_refused_and_killed(&r);
    ck_assert_int_eq(run_count(&r, "no memory cgroups"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_adopted"), 0);
    ck_assert_int_eq(run_count(&r, "event=template_spawn template=1"), 1);
    ck_assert_int_ge(run_count(&r, "start=fork"), 1);
    run_free(&r);
}
END_TEST

START_TEST(a_bad_handoff_is_refused_and_memvisor_starts_the_template)
{
    static const char *const values[] = {"1,2,x", "40,41,42"}; /* not fds; fds not open */

    for (size_t i = 0; i < 2; i++) {
        mvrun_t r;
        const char *const wrap[] = {HANDOFF, "-e", values[i], MVTEST, "--", NULL};

        ck_assert_int_eq(handed_over(&r, 5, wrap, RUN_OPTS("supervisor.workers=1", T)), 0);
        run_assert_once(&r, 5, NULL);
        ck_assert_int_eq(run_count(&r, "event=template_handoff_refused"), 1);
        ck_assert_int_eq(run_count(&r, "event=template_adopted"), 0);
        ck_assert_int_eq(run_count(&r, "event=template_ready template=1"), 1);
        run_free(&r);
    }
}
END_TEST

START_TEST(a_template_that_dies_at_adoption_is_replaced_by_a_started_one)
{
    mvrun_t r;
    const char *const wrap[] = {HANDOFF, "-x", "7", MVTEST, "--", NULL};

    ck_assert_int_eq(
        handed_over(&r, 10, wrap, RUN_OPTS("supervisor.workers=2", "worker.backoff_min=5ms", T)),
        0);
    run_assert_once(&r, 10, NULL);
    ck_assert_int_eq(run_count(&r, "event=template_exit template=1"), 1);
    ck_assert_int_eq(first_field(&r, "event=template_exit template=1", " status="), 7);
    ck_assert_int_eq(run_count(&r, "reason=crash"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_ready template=2"), 1);
    ck_assert_int_eq(run_count(&r, "event=template_ready template=1"), 0);
    ck_assert_int_ge(run_count(&r, "start=fork"), 1);
    run_free(&r);
}
END_TEST

Suite *handoff_suite(void)
{
    Suite *s = suite_create("handoff");
    TCase *unit = tcase_create("unit");
    TCase *tc = tcase_create("e2e");

    tcase_add_test(unit, the_variable_is_three_distinct_fds_above_2);
    suite_add_tcase(s, unit);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_handed_over_template_is_adopted_and_forks_the_workers);
    tcase_add_test(tc, a_handoff_without_templates_is_refused_and_its_child_killed);
    tcase_add_test(tc, a_bad_handoff_is_refused_and_memvisor_starts_the_template);
    tcase_add_test(tc, without_cgroups_a_handoff_is_refused_and_the_template_started);
    tcase_add_test(tc, a_template_that_dies_at_adoption_is_replaced_by_a_started_one);
    suite_add_tcase(s, tc);
    return s;
}
