/*
 * handoff: a template memvisor did not start, handed over at exec (supervisor/handoff.h), as
 * memvisor.Pool forks its first template from the caller. The parsing of the variable alone;
 * then the real binary, exec'd by tests/helpers/handoff_exec after it forked the template
 * (mvtest_worker): adopted and forking workers; refused when the templates are off (the child
 * is killed) or the variable is bad (the run goes on with a template it starts); a handed-over
 * template that dies at adoption is replaced by one memvisor starts; one dropped while it moves
 * into its cgroup (a stop, in the loop of the test) leaves neither the cgroup nor an fd.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "../supervisor/handoff.h"
#include "../supervisor/template.h"
#include "cg_util.h"
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

/* ---- a template stopped while the one handed over moves into its cgroup ---- */

static int fds_open(void)
{
    char path[64];
    int n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        n += access(path, F_OK) == 0;
    }
    return n;
}

static int tgone, tclosed;

static void tv_ready(mv_template_t *t)
{
    (void)t;
}

static void tv_forked(mv_template_t *t, mv_freq_t *r, int pid, int err, bool in_cgroup)
{
    (void)t, (void)pid, (void)err, (void)in_cgroup;
    mv_freq_free(r);
}

static void tv_gone(mv_template_t *t, mv_tgone_t *g)
{
    (void)t;
    ck_assert_ptr_null(g->unanswered);
    tgone++;
}

static void tv_closed(mv_template_t *t)
{
    mv_template_free(t);
    tclosed++;
}

static const mv_template_events_t tv_events = {tv_ready, tv_forked, tv_ready, tv_gone, tv_closed};

/* A stop (or a reload) while the handed-over template is written into its new cgroup in the
 * thread pool: the template is killed and reaped, and its cgroup goes with its files (it was
 * left, six fds open, until the run's end). */
START_TEST(a_template_dropped_while_it_moves_in_leaves_no_cgroup_and_no_fd)
{
    char *const argv[] = {"/bin/true", NULL};
    mv_config_t cfg;
    mv_cg_t cg;
    mv_log_t lg;
    uv_loop_t loop;
    mv_handoff_t h;
    mv_worker_opts_t o;
    mv_template_t *t;
    int ctl[2], out[2], before;
    char why[512], *path;
    pid_t pid;

    if (!v1_here(&cg, 0, 0))
        return;
    ck_assert_int_eq(mv_config_init(&cfg), 0);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_ERROR, "/dev/null"), 0);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    before = fds_open();
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    pid = fork();
    if (pid == 0) {
        pause();
        _exit(0);
    }
    ck_assert_int_gt(pid, 0);
    close(ctl[1]);
    close(out[1]);
    h = (mv_handoff_t){pidfd_open(pid, 0), ctl[0], out[0], pid};
    ck_assert_int_ge(h.pidfd, 0);
    mv_template_offer(&h);

    tgone = tclosed = 0;
    o = (mv_worker_opts_t){.loop = &loop, .log = &lg, .cfg = &cfg, .argv = argv, .cg = &cg};
    t = mv_template_new(&o, 1, &tv_events, NULL);
    ck_assert_ptr_nonnull(t);
    mv_template_start(t);
    /* Its cgroup made, the move queued (its answer needs another turn of the loop). */
    while (!tgone && !(t->has_cg && t->cg_job))
        ck_assert_int_ne(uv_run(&loop, UV_RUN_ONCE), 0);
    ck_assert_int_eq(tgone, 0);
    ck_assert_int_eq(t->state, MV_T_PREPARING);
    path = strdup(t->cg.path);
    mv_template_retire(t);
    while (uv_run(&loop, UV_RUN_ONCE)) /* the move, the kill, the removal, the handles */
        ;
    ck_assert_int_eq(tgone, 1);
    ck_assert_int_eq(tclosed, 1);
    ck_assert_msg(access(path, F_OK) != 0, "%s left behind", path);
    ck_assert_int_eq(waitpid(pid, NULL, WNOHANG), -1); /* killed and reaped by the drop */
    ck_assert_int_eq(errno, ECHILD);
    ck_assert_int_eq(fds_open(), before);
    free(path);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mv_log_close(&lg);
    mv_config_free(&cfg);
    ck_assert_msg(mv_cg_teardown(&cg, why, sizeof why) == 0, "%s", why);
}
END_TEST

Suite *handoff_suite(void)
{
    Suite *s = suite_create("handoff");
    TCase *unit = tcase_create("unit");
    TCase *tc = tcase_create("e2e");

    tcase_add_test(unit, the_variable_is_three_distinct_fds_above_2);
    tcase_add_test(unit, a_template_dropped_while_it_moves_in_leaves_no_cgroup_and_no_fd);
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
