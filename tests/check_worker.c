/*
 * worker: one worker and one real helper process (mvtest_worker), with no pool: the test
 * plays the owner, records every event the worker raises and gives the commands a pool
 * would. No cgroup (memory is sampled from /proc), so it runs anywhere.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config.h"
#include "harness.h"
#include "log.h"
#include "suites.h"
#include "worker.h"

typedef struct owner {
    mv_worker_t *w;
    int started, ready, answers, gone, closed;
    mv_deadline_t deadline;
    char error[128];
    char last[128]; /* the last answer: "ok PAYLOAD" or "fail PAYLOAD" */
    bool measured;
    int64_t retained;
    mv_exit_verdict_t verdict;
    unsigned gone_tasks;
    bool clean_stop, spawn_failed, hopeless;
    int status;
} owner_t;

static uv_loop_t loop;
static mv_log_t lg;
static mv_config_t cfg;

static owner_t *own(mv_worker_t *w)
{
    return w->data;
}

static void e_started(mv_worker_t *w)
{
    own(w)->started++;
}

static void e_ready(mv_worker_t *w)
{
    own(w)->ready++;
}

static void e_answer(mv_worker_t *w, const mv_answer_t *a)
{
    owner_t *o = own(w);

    o->answers++;
    snprintf(o->last, sizeof o->last, "%s %.*s", a->ok ? "ok" : "fail", (int)a->len,
             (const char *)a->payload);
    o->measured = a->before && a->after;
    if (o->measured)
        o->retained = a->after->priv - a->before->priv;
    mv_task_free(a->task);
}

static void e_begin(mv_worker_t *w, mv_task_t *t)
{
}

static void e_end(mv_worker_t *w, const mv_answer_t *a)
{
}

static void e_snapshot(mv_worker_t *w, const uint8_t *p, size_t n)
{
}

static void e_notify(mv_worker_t *w)
{
}

/* A deadline comes from a timer: uv_run(UV_RUN_ONCE) runs a timer that is due when it starts
 * (a loaded host let the deadline pass before it) and then waits for I/O with no timeout, for
 * ever with a silent worker (a_silent_worker_hits_its_ready_deadline hung so, 2 runs in 7 at
 * load 8). uv_stop makes that wait return at once. */
static void e_deadline(mv_worker_t *w, mv_deadline_t what)
{
    own(w)->deadline = what;
    uv_stop(&loop);
}

static void e_error(mv_worker_t *w, const char *what)
{
    snprintf(own(w)->error, sizeof own(w)->error, "%s", what);
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void e_gone(mv_worker_t *w, const mv_gone_t *g)
{
    owner_t *o = own(w);

    o->gone++;
    o->verdict = g->verdict;
    o->gone_tasks = g->ntasks;
    o->clean_stop = g->clean_stop;
    o->spawn_failed = g->spawn_call != NULL;
    o->hopeless = g->hopeless;
    o->status = g->status;
    for (unsigned i = 0; i < g->ntasks; i++)
        mv_task_free(g->tasks[i]);
}

static void e_closed(mv_worker_t *w)
{
    own(w)->closed++;
}

static const mv_worker_events_t events = {e_started, e_ready,    e_answer, e_begin,
                                          e_end,     e_snapshot, e_notify, e_deadline,
                                          e_error,   e_gone,     e_closed, NULL};

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(mv_config_init(&cfg), 0);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_ERROR, "/dev/null"), 0);
    lg.events_fd = -1;
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mv_log_close(&lg);
    mv_config_free(&cfg);
}

/* A worker running `argv` (NULL: mvtest_worker), started. */
static mv_worker_t *start(owner_t *o, char *const *argv)
{
    static char *dflt[2]; /* the worker keeps the pointer for its life */
    static char *const env[] = {"PATH=/usr/bin:/bin", NULL};
    mv_worker_opts_t opts = {
        .loop = &loop,
        .log = &lg,
        .cfg = &cfg,
        .argv = argv ? argv : dflt,
        .env = env,
        .self_exe = MEMVISOR,
    };
    mv_wlimits_t lim = {0};

    dflt[0] = (char *)MVTEST;
    memset(o, 0, sizeof *o);
    o->w = mv_worker_new(&opts, 1, 1, &lim, &events, o);
    ck_assert_ptr_nonnull(o->w);
    mv_worker_start(o->w);
    return o->w;
}

static void run_until(const int *counter, int n)
{
    while (*counter < n)
        uv_run(&loop, UV_RUN_ONCE);
}

static void send_line(mv_worker_t *w, uint64_t id, const char *line)
{
    mv_worker_send_task(w, mv_task_new(id, line, strlen(line)));
    mv_worker_flush(w);
}

static void finish(owner_t *o)
{
    run_until(&o->closed, 1);
    mv_worker_free(o->w);
}

START_TEST(a_life_ready_answer_drain_gone)
{
    owner_t o;
    mv_worker_t *w = start(&o, NULL);

    run_until(&o.ready, 1);
    ck_assert_int_eq(o.started, 1);
    ck_assert_int_eq(w->state, MV_W_READY);
    ck_assert(mv_worker_takes_tasks(w));
    send_line(w, 1, "ok hello");
    ck_assert_int_eq(w->state, MV_W_BUSY);
    run_until(&o.answers, 1);
    ck_assert_str_eq(o.last, "ok hello");
    ck_assert(o.measured);
    send_line(w, 2, "alloc 8");
    run_until(&o.answers, 2);
    /* Its own figure, from /proc: the 8 MiB it kept. */
    ck_assert_int_ge(o.retained, 8 << 20);
    ck_assert_int_eq(w->tasks_done, 2);
    mv_worker_drain(w, MV_R_MAX_TASKS);
    ck_assert(mv_worker_leaving(w) && !mv_worker_takes_tasks(w));
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_MAX_TASKS);
    ck_assert(!o.verdict.failure && o.clean_stop && o.gone_tasks == 0);
    finish(&o);
}
END_TEST

START_TEST(a_crash_in_a_task_hands_the_task_back)
{
    owner_t o;
    mv_worker_t *w = start(&o, NULL);

    run_until(&o.ready, 1);
    send_line(w, 1, "crash");
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_CRASH);
    ck_assert(o.verdict.failure && !o.clean_stop);
    ck_assert_uint_eq(o.gone_tasks, 1);
    ck_assert_int_eq(o.status, -SIGABRT);
    finish(&o);
}
END_TEST

START_TEST(a_task_deadline_goes_to_the_owner)
{
    owner_t o;
    mv_worker_t *w;

    cfg.limits.task_timeout = 50;
    cfg.worker.kill_timeout = 50;
    w = start(&o, NULL);
    run_until(&o.ready, 1);
    send_line(w, 1, "hang");
    while (o.deadline == MV_DL_NONE)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(o.deadline, MV_DL_TASK);
    ck_assert_int_eq(w->state, MV_W_BUSY); /* the owner decides */
    mv_worker_fault(w, MV_R_TASK_TIMEOUT);
    ck_assert_int_eq(w->state, MV_W_STOPPING);
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_TASK_TIMEOUT);
    ck_assert(!o.verdict.failure);
    ck_assert_uint_eq(o.gone_tasks, 1);
    finish(&o);
}
END_TEST

START_TEST(a_silent_worker_hits_its_ready_deadline)
{
    owner_t o;
    char *const argv[] = {(char *)MVTEST, "--no-hello", NULL};
    mv_worker_t *w;

    cfg.worker.ready_timeout = 50;
    cfg.worker.kill_timeout = 50;
    w = start(&o, argv);
    while (o.deadline == MV_DL_NONE)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(o.deadline, MV_DL_READY);
    ck_assert_int_eq(o.ready, 0);
    mv_worker_fault(w, MV_R_READY_TIMEOUT);
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_READY_TIMEOUT);
    ck_assert(o.verdict.failure);
    finish(&o);
}
END_TEST

START_TEST(an_answer_for_another_task_is_a_protocol_error)
{
    owner_t o;
    mv_worker_t *w = start(&o, NULL);

    run_until(&o.ready, 1);
    send_line(w, 7, "outoforder");
    run_until(&o.gone, 1);
    ck_assert_str_eq(o.error, "answer for task 1007, expected 7");
    ck_assert_int_eq(o.verdict.reason, MV_R_PROTOCOL_ERROR);
    ck_assert(o.verdict.failure);
    finish(&o);
}
END_TEST

START_TEST(frozen_then_killed)
{
    owner_t o;
    mv_worker_t *w = start(&o, NULL);

    run_until(&o.ready, 1);
    send_line(w, 1, "sleep 10000");
    mv_worker_freeze(w, MV_R_HARD_LIMIT);
    ck_assert_int_eq(w->state, MV_W_FROZEN);
    ck_assert(!mv_worker_takes_tasks(w));
    mv_worker_kill(w, MV_R_HARD_LIMIT);
    ck_assert_int_eq(w->state, MV_W_KILLING);
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_HARD_LIMIT);
    ck_assert_int_eq(o.status, -SIGKILL);
    ck_assert_uint_eq(o.gone_tasks, 1);
    finish(&o);
}
END_TEST

START_TEST(a_command_that_cannot_start)
{
    owner_t o;
    char *const argv[] = {"/nonexistent/worker", NULL};

    /* Every worker starts through the exec shim (it joins the cgroup, arms the parent-death
     * signal): the shim runs, its exec fails, it exits 127 like a shell. A crash, never
     * ready: the pool's crash streak ends a run whose command cannot start. */
    start(&o, argv);
    run_until(&o.gone, 1);
    ck_assert(!o.spawn_failed && o.verdict.failure);
    ck_assert_int_eq(o.verdict.reason, MV_R_CRASH);
    ck_assert_int_eq(o.status, 127);
    ck_assert_int_eq(o.ready, 0);
    finish(&o);
}
END_TEST

START_TEST(a_shutdown_before_it_started_drops_it)
{
    owner_t o;
    mv_worker_t *w = start(&o, NULL);

    /* No cgroup: it is started at once; a drain before HELLO stops it with STOP. */
    ck_assert_int_eq(w->state, MV_W_SPAWNING);
    mv_worker_drain(w, MV_R_SHUTDOWN);
    ck_assert_int_eq(w->state, MV_W_STOPPING);
    run_until(&o.gone, 1);
    ck_assert_int_eq(o.verdict.reason, MV_R_SHUTDOWN);
    ck_assert_int_eq(o.ready, 0);
    finish(&o);
}
END_TEST

Suite *worker_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("one");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, a_life_ready_answer_drain_gone);
    tcase_add_test(tc, a_crash_in_a_task_hands_the_task_back);
    tcase_add_test(tc, a_task_deadline_goes_to_the_owner);
    tcase_add_test(tc, a_silent_worker_hits_its_ready_deadline);
    tcase_add_test(tc, an_answer_for_another_task_is_a_protocol_error);
    tcase_add_test(tc, frozen_then_killed);
    tcase_add_test(tc, a_command_that_cannot_start);
    tcase_add_test(tc, a_shutdown_before_it_started_drops_it);
    suite_add_tcase(s, tc);
    return s;
}
