/*
 * End to end: successors ([recycle] successor, succ.h). A slot's next worker starts when its
 * worker is sent its last task (max_tasks) and waits, without GO, for that task's answer; the
 * recycle then adopts it. Each test holds the last task (`hold`, released by SIGUSR1) so the
 * successor is seen waiting, then checks that it ran no task before it took the slot, that
 * every task ran exactly once, and what happens when it dies, when memvisor stops and when
 * the configuration is reloaded while it waits. Orderings are asserted through the log's
 * events, never through timing.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define ON "recycle.successor=yes"

/* Where `needle` first appears in the log after `from` (NULL: nowhere). */
static const char *at(const mvrun_t *r, const char *from, const char *needle)
{
    return strstr(from ? from : r->log, needle);
}

/* The pid in the first log line holding `needle` (0: none). */
static int pid_in(const mvrun_t *r, const char *needle)
{
    const char *line = at(r, NULL, needle), *p;

    if (!line)
        return 0;
    p = strstr(line, " pid=");
    return p && p < line + strcspn(line, "\n") ? atoi(p + 5) : 0;
}

/* Reads the log until `needle` is in it (anywhere: run_wait_for wants an order). */
static void wait_seen(mvrun_t *r, const char *needle)
{
    for (;;) {
        run_drain(r);
        if (r->log && strstr(r->log, needle))
            return;
        ck_assert_log(r, pid_alive(r->pid), "memvisor ended before %s", needle);
        usleep(10000);
    }
}

/* Waits until `slot`'s successor of generation `gen` said it is ready; its pid. */
static int successor_ready(mvrun_t *r, int slot, int gen)
{
    char needle[64];
    int pid;

    snprintf(needle, sizeof needle, "event=spawn worker=%d gen=%d ", slot, gen);
    wait_seen(r, needle);
    pid = pid_in(r, needle);
    ck_assert_int_gt(pid, 1);
    snprintf(needle, sizeof needle, "event=ready worker=%d pid=%d ", slot, pid);
    wait_seen(r, needle);
    return pid;
}

/* The holder's pid (its "held pid=" line); it is released with SIGUSR1. */
static int holder(mvrun_t *r)
{
    const char *p;

    wait_seen(r, "held pid=");
    p = strstr(r->log, "held pid=");
    return atoi(p + 9);
}

/* Starts a run whose slot 1 holds its first task (`hold`): the holder's pid in *first, and
 * the pid of the successor (generation 2), once it is ready, returned. */
static int start_held(mvrun_t *r, const char *tasks, const char *const *args, int *first)
{
    run_init(r, tasks);
    run_start(r, args, NULL);
    *first = holder(r);
    return successor_ready(r, 1, 2);
}

static int results_of(const mvrun_t *r, int pid)
{
    int n = 0;

    for (size_t i = 0; i < r->nres; i++)
        n += jint(r->res[i], "pid") == pid;
    return n;
}

/* Forked from a template, `max_tasks = 2`: the successor starts with the second task, waits
 * at HELLO while that task is held, takes the slot at its answer (after the recycle is
 * decided) and runs the next two, in the slot's cgroup, with its own per-task figures. */
START_TEST(a_successor_waits_and_takes_the_slot_at_the_answer)
{
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=1", "limits.max_tasks=2",
                                                "worker.template=yes", "log.level=debug", ON),
                                       RUN_CMD(MVTEST));
    int first, succ;
    const char *taken, *drain;
    char *text;
    json_t *t3, *st, *sv;
    mvrun_t r;

    succ = start_held(&r, "ok\nhold 0\ncgroup\nok\nok\n", args, &first);
    ck_assert_int_ne(succ, first);
    /* Ready, it waits: no task of it yet, and the recycle is still to be decided. */
    ck_assert_ptr_null(at(&r, NULL, "event=successor_taken"));
    ck_assert_ptr_null(at(&r, NULL, "action=drain"));
    /* status and metrics show it and what it holds, counted in no total. */
    st = run_status(&r);
    sv = json_array_get(json_object_get(st, "successors"), 0);
    ck_assert_msg(sv != NULL, "%s", json_dumps(st, 0));
    ck_assert_int_eq(jint(sv, "slot"), 1);
    ck_assert_int_eq(jint(sv, "gen"), 2);
    ck_assert_int_eq(jint(sv, "pid"), succ);
    ck_assert_str_eq(jstr(sv, "state"), "successor");
    ck_assert_int_eq(json_array_size(json_object_get(st, "successors")), 1);
    ck_assert_int_eq(jint(json_object_get(st, "totals"), "workers"), 1);
    json_decref(st);
    text = run_ask(&r, "metrics", false);
    ck_assert_msg(strstr(text, "\nmemvisor_successors 1\n") != NULL, "%s", text);
    if (strstr(r.log, "memory=\"cgroup v")) /* its cgroup's usage: its process, started */
        ck_assert_ptr_null(strstr(text, "\nmemvisor_successors_usage_bytes 0\n"));
    free(text);
    text = run_ask(&r, "status", false); /* the table: one row more, its own state */
    ck_assert_msg(strstr(text, " successor ") != NULL, "%s", text);
    free(text);
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 5, NULL);
    ck_assert_int_eq(jint(run_result(&r, 1), "pid"), first);
    ck_assert_int_eq(jint(run_result(&r, 2), "pid"), first);
    ck_assert_int_eq(jint(run_result(&r, 3), "pid"), succ);
    ck_assert_int_eq(jint(run_result(&r, 4), "pid"), succ);
    ck_assert_int_ne(jint(run_result(&r, 5), "pid"), succ);
    drain = at(&r, NULL, "event=recycle worker=1 gen=1 ");
    ck_assert_ptr_nonnull(drain);
    ck_assert_ptr_nonnull(strstr(drain, "reason=max_tasks action=drain"));
    taken = at(&r, drain, "event=successor_taken worker=1 gen=2 ");
    ck_assert_log(&r, taken != NULL, "no successor taken");
    /* A normal worker: its own figures, its exit status, the slot's cgroup. */
    t3 = run_result(&r, 3);
    ck_assert_int_gt(jint(t3, "mem_before"), 0);
    ck_assert_int_gt(jint(t3, "mem_after"), 0);
    ck_assert_int_eq(jint(t3, "gen"), 2);
    if (strstr(r.log, "memory=\"cgroup v"))
        ck_assert_msg(strstr(jstr(t3, "result"), "/w1.2") != NULL, "%s", jstr(t3, "result"));
    ck_assert_ptr_nonnull(at(&r, NULL, "event=exit worker=1 gen=2 "));
    ck_assert_ptr_nonnull(strstr(at(&r, NULL, "event=exit worker=1 gen=2 "), "status=0 "));
    ck_assert_int_eq(run_count(&r, "event=successor_gone"), 0);
    run_free(&r);
}
END_TEST

/* A successor killed while it waits is said (successor_gone), is no crash (crash_limit 1 is
 * not reached), and the slot's next worker is started the ordinary way; no task is lost. */
START_TEST(a_successor_that_dies_while_waiting_is_no_crash)
{
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1",
                                                "worker.crash_limit=1", "worker.template=yes", ON),
                                       RUN_CMD(MVTEST));
    int first, succ;
    mvrun_t r;

    succ = start_held(&r, "hold 0\nok\nok\nok\n", args, &first);
    ck_assert_int_eq(kill(succ, SIGKILL), 0);
    wait_seen(&r, "event=successor_gone worker=1 gen=2 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 4, NULL);
    ck_assert_int_eq(results_of(&r, succ), 0);
    ck_assert_int_eq(run_count(&r, "event=successor_gone"), 1);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    /* Its generation was its: the slot's next worker is the next one, started then. */
    ck_assert_int_eq(jint(run_result(&r, 2), "gen"), 3);
    run_free(&r);
}
END_TEST

/* A successor that fails before it is ready, while it waits (every second process started
 * aborts before its HELLO: the successor, while the slot's worker holds its task) is a failed
 * start of the command, counted toward crash_limit like a slot's worker: with crash_limit 1
 * the run ends (exit 3). Before, a successor's death was never counted: the run went on to
 * the end (exit 0). */
START_TEST(a_successor_that_fails_its_start_counts_toward_crash_limit)
{
    char count[128];
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", "worker.crash_limit=1",
                          "worker.backoff_min=1ms", ON),
                 RUN_CMD(MVTEST, "--crash-every", "2", count));
    mvrun_t r;

    int first;

    run_init(&r, "hold 0\n");
    snprintf(count, sizeof count, "%s/starts", r.dir);
    run_start(&r, args, NULL);
    first = holder(&r);
    wait_seen(&r, "event=successor_gone worker=1 gen=2 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_int_eq(run_count(&r, "event=crash_limit crashes=1 "), 1);
    run_free(&r);
}
END_TEST

/* memvisor stopped (SIGTERM) while both slots' successors wait: they leave cleanly (STOP)
 * and run nothing; the held tasks finish; nothing runs twice. */
START_TEST(a_stop_while_successors_wait_runs_nothing_on_them)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", ON), RUN_CMD(MVTEST));
    int first, succ;
    mvrun_t r;

    succ = start_held(&r, "hold 0\nok\nok\nok\n", args, &first);
    kill(r.pid, SIGTERM);
    wait_seen(&r, "event=exit worker=1 gen=2 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 128 + SIGTERM);
    run_assert_at_most_once(&r, 4);
    ck_assert_str_eq(jstr(run_result(&r, 1), "status"), "ok");
    ck_assert_int_eq(results_of(&r, succ), 0);
    ck_assert_ptr_nonnull(strstr(at(&r, NULL, "event=exit worker=1 gen=2 "), "status=0 "));
    ck_assert(!pid_alive(succ));
    run_free(&r);
}
END_TEST

/* A reload retires the waiting successor (old command, old limits): it runs nothing, and the
 * slot's next worker starts with the new configuration; every task runs once. */
START_TEST(a_reload_retires_the_waiting_successor)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", ON), RUN_CMD(MVTEST));
    char sock[160], *out = NULL;
    int first, succ;
    mvrun_t r;

    succ = start_held(&r, "hold 0\nok\nok\n", args, &first);
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "reload", "--socket", sock, NULL}, &out), 0);
    free(out);
    wait_seen(&r, "event=exit worker=1 gen=2 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_eq(results_of(&r, succ), 0);
    ck_assert_ptr_nonnull(strstr(at(&r, NULL, "event=exit worker=1 gen=2 "), "reason=requested"));
    run_free(&r);
}
END_TEST

/* The template killed while a successor it forked waits: the successor is a worker of its own
 * (memvisor's child), takes the slot and runs the next task; later workers come from the new
 * template. */
/* A scale down that retires a slot whose successor waits (its worker was sent its last
 * task): the successor leaves unused, the worker finishes its task, and nothing replaces
 * either; the kept slot's successor takes its slot as usual. */
START_TEST(a_scale_down_retires_the_waiting_successor_of_its_slot)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", ON), RUN_CMD(MVTEST));
    const char *second;
    int first, held2, succ2;
    mvrun_t r;

    start_held(&r, "hold 0\nhold 0\nok\nok\n", args, &first);
    run_workers(&r, 2);
    wait_seen(&r, "event=spawn worker=2 gen=1 ");
    for (;;) { /* slot 2's worker holds the second task */
        run_drain(&r);
        if ((second = strstr(strstr(r.log, "held pid=") + 9, "held pid=")))
            break;
        usleep(10000);
    }
    held2 = atoi(second + 9);
    succ2 = successor_ready(&r, 2, 2);
    run_workers(&r, 1);
    wait_seen(&r, "event=exit worker=2 gen=2 ");
    ck_assert(pid_alive(held2)); /* its task is not cut short */
    ck_assert_int_eq(kill(held2, SIGUSR1), 0);
    wait_seen(&r, "event=exit worker=2 gen=1 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 4, NULL);
    ck_assert_int_eq(results_of(&r, succ2), 0);
    ck_assert_ptr_nonnull(strstr(at(&r, NULL, "event=exit worker=2 gen=1 "), "reason=scaled_down"));
    ck_assert_ptr_null(strstr(r.log, "event=spawn worker=2 gen=3 "));
    run_free(&r);
}
END_TEST

START_TEST(a_successor_outlives_its_template)
{
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", "worker.template=yes", ON),
        RUN_CMD(MVTEST));
    int first, succ, tp;
    mvrun_t r;

    succ = start_held(&r, "hold 0\nok\nok\n", args, &first);
    tp = pid_in(&r, "event=template_ready template=1 ");
    ck_assert_int_gt(tp, 1);
    ck_assert_int_eq(kill(tp, SIGKILL), 0);
    wait_seen(&r, "event=template_exit template=1 ");
    ck_assert_int_eq(kill(first, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_eq(jint(run_result(&r, 2), "pid"), succ);
    ck_assert_str_eq(jstr(run_result(&r, 2), "status"), "ok");
    ck_assert_int_eq(run_count(&r, "start=exec"), 0);
    ck_assert_int_eq(run_count(&r, "event=successor_gone"), 0);
    run_free(&r);
}
END_TEST

/* Successors are off unless asked for (none starts); a value that is no boolean is a
 * configuration error. */
START_TEST(successors_are_off_by_default_and_bad_values_are_errors)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", "log.level=debug"),
                 RUN_CMD(MVTEST));
    char *out = NULL;
    mvrun_t r;

    ck_assert_int_eq(run_batch(&r, "ok\nok\nok\n", args), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_eq(run_count(&r, "event=successor_taken"), 0);
    ck_assert_int_eq(run_count(&r, "event=spawn "), 3); /* one a task, none more */
    run_free(&r);
    ck_assert_int_ne(
        run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.successor=maybe", NULL},
                    &out),
        0);
    ck_assert_ptr_nonnull(strstr(out, "successor"));
    free(out);
}
END_TEST

Suite *succ_suite(void)
{
    Suite *s = suite_create("succ");
    TCase *tc = tcase_create("successor");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_successor_waits_and_takes_the_slot_at_the_answer);
    tcase_add_test(tc, a_successor_that_dies_while_waiting_is_no_crash);
    tcase_add_test(tc, a_successor_that_fails_its_start_counts_toward_crash_limit);
    tcase_add_test(tc, a_stop_while_successors_wait_runs_nothing_on_them);
    tcase_add_test(tc, a_reload_retires_the_waiting_successor);
    tcase_add_test(tc, a_scale_down_retires_the_waiting_successor_of_its_slot);
    tcase_add_test(tc, a_successor_outlives_its_template);
    tcase_add_test(tc, successors_are_off_by_default_and_bad_values_are_errors);
    suite_add_tcase(s, tc);
    return s;
}
