/*
 * startgate: [supervisor] max_starting. The gate alone on a real libuv loop (places, the
 * order of turns, turns given from the loop, a raised cap, a dropped waiter), then the real
 * binary: workers that take 300 ms to start, never more of them starting at once than the
 * cap, the waiting ones shown in status and never timed by ready_timeout, a reload that
 * raises the cap, a scale up through the same gate.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "harness.h"
#include "startgate.h"
#include "suites.h"

/* ---- the gate alone ---- */

typedef struct fake {
    mv_gate_entry_t e;
    mv_startgate_t *g;
    int id;
    bool fail_at_once; /* its start fails within go: it gives its place back there */
} fake_t;

static int order[16], norder;

static void fake_go(mv_gate_entry_t *e)
{
    fake_t *f = (fake_t *)(void *)e;

    order[norder++] = f->id;
    if (f->fail_at_once)
        mv_startgate_leave(f->g, e);
}

static void closed(void *arg)
{
    *(bool *)arg = true;
}

/* A gate of `cap` places on a loop of its own. */
static void gate_open(uv_loop_t *loop, mv_startgate_t *g, int cap)
{
    uv_loop_init(loop);
    mv_startgate_init(g, loop, cap);
    norder = 0;
}

/* The gate's timer closed, and the loop with nothing left on it. */
static void gate_close(uv_loop_t *loop, mv_startgate_t *g)
{
    bool done = false;

    mv_startgate_close(g, closed, &done);
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert(done);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(places_turns_and_order)
{
    uv_loop_t loop;
    mv_startgate_t g;
    fake_t f[6];

    gate_open(&loop, &g, 2);
    for (int i = 0; i < 6; i++)
        f[i] = (fake_t){.e = {.go = fake_go}, .g = &g, .id = i};
    ck_assert(mv_startgate_enter(&g, &f[0].e));
    ck_assert(mv_startgate_enter(&g, &f[1].e));
    ck_assert(!mv_startgate_enter(&g, &f[2].e));
    ck_assert(!mv_startgate_enter(&g, &f[3].e));
    ck_assert(!mv_startgate_enter(&g, &f[4].e));
    ck_assert_int_eq(g.in, 2);
    ck_assert_int_eq(g.waiting, 3);

    /* A place given back: the next turn comes from the loop, not from within leave. */
    mv_startgate_leave(&g, &f[0].e);
    ck_assert_int_eq(norder, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 1);
    ck_assert_int_eq(order[0], 2);
    ck_assert_int_eq(f[2].e.state, MV_GATE_IN);

    /* A waiter dropped (its worker stopped before its turn) leaves the line. */
    mv_startgate_leave(&g, &f[3].e);
    ck_assert_int_eq(g.waiting, 1);
    ck_assert_int_eq(f[3].e.state, MV_GATE_OUT);

    /* One that comes while others wait goes behind them, even with a place free. */
    mv_startgate_leave(&g, &f[1].e);
    ck_assert(!mv_startgate_enter(&g, &f[5].e));
    /* A start that fails at once gives its place back: the next goes in the same pass. */
    f[4].fail_at_once = true;
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 3);
    ck_assert_int_eq(order[1], 4);
    ck_assert_int_eq(order[2], 5);
    ck_assert_int_eq(g.in, 2); /* 2 and 5 */
    ck_assert_int_eq(g.waiting, 0);

    gate_close(&loop, &g);
}
END_TEST

START_TEST(a_raised_cap_lets_the_waiting_start)
{
    uv_loop_t loop;
    mv_startgate_t g;
    fake_t f[5];

    gate_open(&loop, &g, 1);
    for (int i = 0; i < 5; i++) {
        f[i] = (fake_t){.e = {.go = fake_go}, .g = &g, .id = i};
        ck_assert(mv_startgate_enter(&g, &f[i].e) == (i == 0));
    }
    mv_startgate_set_cap(&g, 3);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 2);
    ck_assert_int_eq(order[0], 1);
    ck_assert_int_eq(order[1], 2);
    /* Lowered: those in keep their place; no one goes in until fewer than the cap are. */
    mv_startgate_set_cap(&g, 1);
    mv_startgate_leave(&g, &f[0].e);
    mv_startgate_leave(&g, &f[1].e);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 2);
    mv_startgate_leave(&g, &f[2].e);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 3);
    ck_assert_int_eq(order[2], 3);
    mv_startgate_set_cap(&g, 0); /* never below one place */
    ck_assert_int_eq(g.cap, 1);
    gate_close(&loop, &g);
}
END_TEST

/* A spare (entry.last) waits behind every worker to serve, whenever either came. */
START_TEST(spares_wait_behind_workers_to_serve)
{
    uv_loop_t loop;
    mv_startgate_t g;
    fake_t f[5];

    gate_open(&loop, &g, 1);
    for (int i = 0; i < 5; i++)
        f[i] = (fake_t){.e = {.go = fake_go, .last = i == 1 || i == 2}, .g = &g, .id = i};
    ck_assert(mv_startgate_enter(&g, &f[0].e));
    ck_assert(!mv_startgate_enter(&g, &f[1].e)); /* spares, first */
    ck_assert(!mv_startgate_enter(&g, &f[2].e));
    ck_assert(!mv_startgate_enter(&g, &f[3].e)); /* then workers to serve */
    ck_assert(!mv_startgate_enter(&g, &f[4].e));
    ck_assert_int_eq(g.waiting, 4);
    mv_startgate_leave(&g, &f[2].e); /* a spare dropped while it waits */
    ck_assert_int_eq(g.waiting, 3);
    for (int i = 0, next[] = {0, 3, 4, 1}; i < 4; i++) {
        mv_startgate_leave(&g, &f[next[i]].e);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    ck_assert_int_eq(norder, 3);
    ck_assert_int_eq(order[0], 3);
    ck_assert_int_eq(order[1], 4);
    ck_assert_int_eq(order[2], 1);
    /* A place free (its kick not run yet) with a spare waiting: a worker to serve goes in at
     * once, before the spare. */
    ck_assert(mv_startgate_enter(&g, &f[0].e));
    ck_assert(!mv_startgate_enter(&g, &f[2].e));
    mv_startgate_set_cap(&g, 2);
    ck_assert(mv_startgate_enter(&g, &f[3].e));
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 3);
    mv_startgate_leave(&g, &f[0].e);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 4);
    ck_assert_int_eq(order[3], 2);
    gate_close(&loop, &g);
}
END_TEST

/* A spare leaves the places that workers to serve on their way (their cgroups being made)
 * will take: at a run's start a spare whose cgroup came first took the only place. */
START_TEST(spares_leave_places_to_workers_on_their_way)
{
    uv_loop_t loop;
    mv_startgate_t g;
    fake_t f[4];

    gate_open(&loop, &g, 2);
    for (int i = 0; i < 4; i++)
        f[i] = (fake_t){.e = {.go = fake_go, .last = i >= 2}, .g = &g, .id = i};
    mv_startgate_expect(&g, &f[0].e);
    mv_startgate_expect(&g, &f[1].e);
    mv_startgate_expect(&g, &f[2].e); /* nothing for a spare */
    ck_assert_int_eq(g.coming, 2);
    ck_assert_int_eq(f[2].e.state, MV_GATE_OUT);
    ck_assert(!mv_startgate_enter(&g, &f[2].e)); /* both places kept */
    ck_assert(mv_startgate_enter(&g, &f[0].e));
    ck_assert_int_eq(g.coming, 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 0);
    /* One on its way dropped (its worker stopped while its cgroup was made): the place it
     * kept goes to the spare, from the loop. */
    mv_startgate_leave(&g, &f[1].e);
    ck_assert_int_eq(g.coming, 0);
    ck_assert_int_eq(norder, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(norder, 1);
    ck_assert_int_eq(order[0], 2);
    /* With room left over, a spare goes in at once. */
    mv_startgate_set_cap(&g, 4);
    mv_startgate_expect(&g, &f[1].e);
    ck_assert(mv_startgate_enter(&g, &f[3].e));
    ck_assert(mv_startgate_enter(&g, &f[1].e));
    ck_assert_int_eq(g.in, 4);
    ck_assert_int_eq(g.coming, 0);
    gate_close(&loop, &g);
}
END_TEST

/* ---- the real binary ---- */

/* The most workers between their spawn and their ready line at once, by the log's order
 * (a place is taken before the spawn line and given back before the ready line). */
static int most_starting(const char *log)
{
    int now = 0, most = 0;

    for (const char *p = log; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *eol = strchr(p, '\n');
        const char *spawn = strstr(p, "event=spawn "), *ready = strstr(p, "event=ready ");

        if (spawn && (!eol || spawn < eol))
            now++;
        else if (ready && (!eol || ready < eol))
            now--;
        if (now > most)
            most = now;
    }
    return most;
}

/* 20 workers that take 300 ms each to start, 2 at a time: at most 2 between spawn and
 * ready, the others shown waiting; the last ones wait 9 starts (2.7 s or more) for their
 * turn, past a 2 s ready_timeout that does not run while they wait; every task runs once.
 * The timeout leaves a start (spawn, the exec shim, the worker's exec, its 300 ms, HELLO)
 * 1.7 s to spare on a loaded machine, and load that slows the starts lengthens the wait with
 * them. It had 700 ms (10 workers, 1 s: 4 starts of wait): ASan starts took 400-470 ms at
 * load 13 here, and it failed under ASan at load 14-25; with 500 ms, a cold ASan run had 6
 * of 10 workers time out. Each worker holds a task (hold 0) until all 20 hold one: the batch
 * cannot end before the last start, however slow the starts (with 300 ms tasks for the
 * first ones, it ended at load 13 with 10 of 20 started). */
START_TEST(at_most_max_starting_workers_start_at_once)
{
    enum { WORKERS = 20 };
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=20", "supervisor.max_starting=2",
                          "worker.ready_timeout=2s", "supervisor.grace_period=0"),
                 RUN_CMD(MVTEST, "--start-ms", "300"));
    char *holds = repeat_line("hold 0", WORKERS), *sleeps = repeat_line("sleep 300", 10), *tasks;
    json_t *st = NULL, *w;
    size_t i;
    int waiting = 0;
    char *metrics, *line;
    pid_t held[WORKERS];

    ck_assert_int_gt(asprintf(&tasks, "%s%s", holds, sleeps), 0);
    free(holds);
    free(sleeps);
    run_init(&r, tasks);
    free(tasks);
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=spawn "));
    /* Workers reach the gate as their cgroups are made (in the thread pool): look until 4 of
     * the 18 not started are waiting there (they wait >= 300 ms a turn; no time assert). */
    for (int look = 0; look < 200; look++) {
        st = run_status(&r);
        waiting = 0;
        json_array_foreach(json_object_get(st, "workers"), i, w) waiting +=
            strcmp(jstr(w, "state"), "waiting_to_start") == 0 && jint(w, "pid") == 0;
        if (waiting >= 4)
            break;
        json_decref(st);
        st = NULL;
        usleep(10 * 1000);
    }
    ck_assert_msg(st, "never 4 of 20 shown waiting_to_start (last: %d)", waiting);
    ck_assert_int_eq(jint(json_object_get(st, "totals"), "waiting_to_start"), waiting);
    ck_assert_int_le(jint(json_object_get(st, "totals"), "starting"), 2);
    ck_assert_int_ge(jint(json_object_get(st, "totals"), "starting"), 1);
    json_decref(st);
    metrics = run_ask(&r, "metrics", false);
    ck_assert_msg(strstr(metrics, "\nmemvisor_workers_waiting_to_start ") &&
                      strstr(metrics, "\nmemvisor_workers_starting "),
                  "%s", metrics);
    free(metrics);
    /* One task a worker (prefetch 1): the 20 holds are held by 20 workers, all ready. */
    for (int k = 0; k < WORKERS; k++) {
        line = run_wait_for(&r, "held pid=");
        held[k] = (pid_t)atoi(strstr(line, "held pid=") + 9);
        free(line);
    }
    for (int k = 0; k < WORKERS; k++)
        ck_assert_int_eq(kill(held[k], SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_int_eq(run_count(&r, "event=ready "), WORKERS);
    ck_assert_int_eq(run_count(&r, "ready_timeout"), 0);
    ck_assert_int_eq(most_starting(r.log), 2);
    run_assert_once(&r, 30, NULL);
    run_free(&r);
}
END_TEST

/* A reload that raises the cap lets the waiting ones start at once. */
START_TEST(a_reload_raises_max_starting)
{
    mvrun_t r;
    char conf[256];
    const char *args[] = {"run", "-c", conf, "--", MVTEST, "--start-ms", "400", NULL};

    run_init(&r, "hang\n");
    snprintf(conf, sizeof conf, "%s",
             run_file(&r, "memvisor.ini",
                      "[supervisor]\nworkers = 6\nmax_starting = 1\ngrace_period = 0\n"
                      "[worker]\nkill_timeout = 100ms\n"));
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=spawn "));
    run_file(&r, "memvisor.ini",
             "[supervisor]\nworkers = 6\nmax_starting = 6\ngrace_period = 0\n"
             "[worker]\nkill_timeout = 100ms\n");
    ck_assert_int_eq(kill(r.pid, SIGHUP), 0);
    free(run_wait_for(&r, "event=pool_ready"));
    kill(r.pid, SIGTERM);
    run_finish(&r);
    /* The first alone (the others waited: no other spawn before the reload), then the five
     * others together. */
    {
        const char *reload = strstr(r.log, "event=reload ");
        char *upto;
        int before;

        ck_assert_ptr_nonnull(reload);
        upto = strndup(r.log, (size_t)(reload - r.log));
        before = most_starting(upto);
        free(upto);
        ck_assert_int_eq(before, 1);
    }
    ck_assert_int_ge(most_starting(r.log), 5);
    run_free(&r);
}
END_TEST

/* Whether process pid's command line has the argument `arg`. */
static bool cmdline_has(pid_t pid, const char *arg)
{
    char path[64], buf[4096];
    size_t n = 0, len = strlen(arg);
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    if (!(f = fopen(path, "r")))
        return false;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
        if (strlen(buf + i) == len && memcmp(buf + i, arg, len) == 0)
            return true;
    return false;
}

/* A reload that changes the command while workers wait their turn: those start with the new
 * command, not the one they were made with (they would keep it: a worker not started yet
 * is not recycled). Waits until each of the 4 slots has a ready (or busy: one takes the task)
 * worker, then reads their command lines. */
START_TEST(a_reload_gives_the_waiting_the_new_command)
{
    mvrun_t r;
    char conf[256], text[PATH_MAX + 256];
    const char *args[] = {"run", "-c", conf, NULL};
    int ready = 0, old = 0;

    run_init(&r, "hang\n");
    snprintf(text, sizeof text,
             "[supervisor]\nworkers = 4\nmax_starting = 1\ngrace_period = 0\n"
             "[worker]\nkill_timeout = 100ms\ncommand = %s --start-ms 300\n",
             MVTEST);
    snprintf(conf, sizeof conf, "%s", run_file(&r, "memvisor.ini", text));
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=spawn "));
    snprintf(text, sizeof text,
             "[supervisor]\nworkers = 4\nmax_starting = 1\ngrace_period = 0\n"
             "[worker]\nkill_timeout = 100ms\ncommand = %s --start-ms 301\n",
             MVTEST);
    run_file(&r, "memvisor.ini", text);
    ck_assert_int_eq(kill(r.pid, SIGHUP), 0);
    free(run_wait_for(&r, "event=reload "));
    for (int tries = 0; tries < 300 && ready < 4; tries++) {
        json_t *st = run_status(&r), *w;
        bool seen[5] = {false};
        size_t i;

        ready = old = 0;
        json_array_foreach(json_object_get(st, "workers"), i, w)
        {
            long long slot = jint(w, "slot");
            const char *state = jstr(w, "state");
            if ((strcmp(state, "ready") != 0 && strcmp(state, "busy") != 0) || slot < 1 ||
                slot > 4 || seen[slot])
                continue;
            seen[slot] = true;
            ready++;
            old += !cmdline_has((pid_t)jint(w, "pid"), "301");
        }
        json_decref(st);
        if (ready < 4)
            usleep(100 * 1000);
    }
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_eq(ready, 4);
    ck_assert_msg(old == 0, "%d of 4 ready workers run the command before the reload", old);
    run_free(&r);
}
END_TEST

/* The same for an escalation worker (a task killed at its hard limit runs again on a worker
 * of its own with a raised one): one waiting its turn at a reload that changes the command
 * starts with the new command (it kept the old one). Two slots, one start at a time, 2 s
 * each: the first slot's worker takes `hold 24`, is killed at 16 MiB while the second slot's
 * worker starts, so the escalation worker waits; the reload comes then. */
#define ESC_INI                                                                         \
    "[supervisor]\nworkers = 2\nmax_starting = 1\ngrace_period = 0\n"                   \
    "[worker]\nkill_timeout = 100ms\nready_timeout = 20s\ncommand = %s --start-ms %d\n" \
    "[limits]\nmemory_hard = 16M\nescalate = 4x\nescalate_max = 64M\n"                  \
    "[log]\nlevel = debug\n"

START_TEST(a_reload_gives_a_waiting_escalation_worker_the_new_command)
{
    mvrun_t r;
    char conf[256], text[PATH_MAX + 256], *line;
    const char *args[] = {"run", "-c", conf, NULL};
    pid_t held;
    json_t *t1;

    run_init(&r, "hold 24\n");
    snprintf(text, sizeof text, ESC_INI, MVTEST, 2000);
    snprintf(conf, sizeof conf, "%s", run_file(&r, "memvisor.ini", text));
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=escalate task=1 "));
    /* A worker for slot 1 behind the second slot's: the escalation worker, or the slot's
     * next one (the escalation worker is then still on its way: not started either). */
    free(run_wait_for(&r, "event=start_waits worker=1 "));
    snprintf(text, sizeof text, ESC_INI, MVTEST, 2001);
    run_file(&r, "memvisor.ini", text);
    ck_assert_int_eq(kill(r.pid, SIGHUP), 0);
    line = run_wait_for(&r, "held pid=");
    held = (pid_t)atoi(strstr(line, "held pid=") + 9);
    free(line);
    ck_assert_msg(cmdline_has(held, "2001"), "the escalated task runs on the old command");
    ck_assert_int_eq(kill(held, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 1, NULL);
    t1 = run_result(&r, 1);
    ck_assert_str_eq(jstr(t1, "status"), "ok");
    ck_assert_int_eq(jint(t1, "escalations"), 1);
    ck_assert_int_eq(jint(t1, "mem_limit"), 64 * 1024 * 1024);
    run_free(&r);
}
END_TEST

/* Scaling 1 -> 8 goes through the same gate. */
START_TEST(a_scale_up_starts_max_starting_at_once)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "supervisor.max_starting=2",
                          "supervisor.grace_period=0", "worker.kill_timeout=100ms"),
                 RUN_CMD(MVTEST, "--start-ms", "200"));

    run_init(&r, "hang\n");
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=pool_ready"));
    run_workers(&r, 8);
    run_wait_nth(&r, "event=ready ", 7);
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_eq(most_starting(r.log), 2);
    ck_assert_int_eq(run_count(&r, "ready_timeout"), 0);
    run_free(&r);
}
END_TEST

/* Successors that wait their turn keep the cgroup made ahead for them: the slot's next one,
 * made at once, must not take it (a worker per 3 tasks, one start at a time, so a successor
 * often waits; a cgroup let go while its worker was still to start was removed later, killing
 * the worker that had started in it: SIGKILL, reason=crash). */
START_TEST(successors_waiting_their_turn_keep_their_cgroups)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=2", "supervisor.max_starting=1", "limits.max_tasks=3",
                          "recycle.successor=yes", "recycle.max_concurrent=2", "log.level=debug"),
                 RUN_CMD(MVTEST));
    char *tasks = repeat_line("ok", 300);

    run_init(&r, tasks);
    free(tasks);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_int_gt(run_count(&r, "event=start_waits "), 0);
    ck_assert_int_eq(run_count(&r, "reason=crash"), 0);
    ck_assert_int_eq(run_count(&r, "event=requeue "), 0);
    ck_assert_int_le(most_starting(r.log), 1);
    run_assert_once(&r, 300, NULL);
    run_free(&r);
}
END_TEST

/* Slots scaled up while spares wait their turn start first: 1 worker, 2 spares, one start at
 * a time, each taking 1 s; `workers 3` comes while the slot's first worker starts and the
 * spares wait. First come, first served started both spares before the new slots, and a
 * spare whose cgroup was made before the slot's took the first place. */
START_TEST(new_slots_start_before_waiting_spares)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "recycle.spares=2", "supervisor.max_starting=1",
                          "worker.ready_timeout=20s", "supervisor.grace_period=0",
                          "worker.kill_timeout=100ms", "log.level=debug"),
                 RUN_CMD(MVTEST, "--start-ms", "1000"));
    const char *w0, *w3;

    run_init(&r, "hang\n");
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=start_waits worker=0 gen=2 "));
    run_workers(&r, 3);
    free(run_wait_for(&r, "event=spawn worker=0 "));
    kill(r.pid, SIGTERM);
    run_finish(&r);
    w3 = strstr(r.log, "event=spawn worker=3 ");
    w0 = strstr(r.log, "event=spawn worker=0 ");
    ck_assert_log(&r, w3 && w0 && w3 < w0, "a spare started before slot 3");
    /* ...and at the start before slot 1, whichever cgroup was made first. */
    ck_assert_log(&r, strstr(r.log, "event=spawn worker=1 ") == strstr(r.log, "event=spawn "),
                  "a spare started first");
    ck_assert_ptr_nonnull(strstr(r.log, "event=spawn worker=2 "));
    ck_assert_int_eq(most_starting(r.log), 1);
    run_free(&r);
}
END_TEST

Suite *startgate_suite(void)
{
    Suite *s = suite_create("startgate");
    TCase *gate = tcase_create("gate"), *e2e = tcase_create("starts");

    tcase_add_test(gate, places_turns_and_order);
    tcase_add_test(gate, a_raised_cap_lets_the_waiting_start);
    tcase_add_test(gate, spares_wait_behind_workers_to_serve);
    tcase_add_test(gate, spares_leave_places_to_workers_on_their_way);
    tcase_set_timeout(e2e, 60);
    tcase_add_test(e2e, at_most_max_starting_workers_start_at_once);
    tcase_add_test(e2e, a_reload_raises_max_starting);
    tcase_add_test(e2e, a_scale_up_starts_max_starting_at_once);
    tcase_add_test(e2e, successors_waiting_their_turn_keep_their_cgroups);
    tcase_add_test(e2e, a_reload_gives_the_waiting_the_new_command);
    tcase_add_test(e2e, new_slots_start_before_waiting_spares);
    tcase_add_test(e2e, a_reload_gives_a_waiting_escalation_worker_the_new_command);
    suite_add_tcase(s, gate);
    suite_add_tcase(s, e2e);
    return s;
}
