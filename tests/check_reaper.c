/*
 * reaper: [supervisor] subreaper and memvisor as PID 1 (issue 8 #8). A worker double-forks
 * grandchildren that exit later: with the subreaper they become memvisor's children and are
 * reaped with their exact status, while every worker's own exit status still reaches libuv
 * (each crash is counted and recorded once, with its status). Without it they are not
 * memvisor's. As PID 1 of a new pid namespace (unshare), auto turns it on and SIGTERM still
 * stops the run gracefully, a second one at once.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "reaper.h"
#include "suites.h"

START_TEST(rate_limit_and_children_text)
{
    mv_ratelimit_t rl = {0};
    uint64_t sup = 99;
    int pids[4];

    for (int i = 0; i < MV_REAPER_LOG_PER_S; i++)
        ck_assert(mv_ratelimit_take(&rl, 5000 + (uint64_t)i, &sup));
    ck_assert_int_eq(sup, 0);
    ck_assert(!mv_ratelimit_take(&rl, 5500, &sup));
    ck_assert(!mv_ratelimit_take(&rl, 5999, &sup));
    ck_assert(mv_ratelimit_take(&rl, 6000, &sup)); /* a new second says what it left out */
    ck_assert_int_eq(sup, 2);
    ck_assert(mv_ratelimit_take(&rl, 6001, &sup));
    ck_assert_int_eq(sup, 0);
    ck_assert(mv_ratelimit_take(&rl, 10, &sup)); /* the clock went back: a new window */

    ck_assert_int_eq(mv_reaper_parse_children("", pids, 4), 0);
    ck_assert_int_eq(mv_reaper_parse_children("12 345 \n", pids, 4), 2);
    ck_assert_int_eq(pids[0], 12);
    ck_assert_int_eq(pids[1], 345);
    ck_assert_int_eq(mv_reaper_parse_children("1 2 3 4 5 6", pids, 4), 4);
    ck_assert_int_eq(mv_reaper_parse_children("7 x 8", pids, 4), 1);
}
END_TEST

/* Writes `text` to dir/rel, making the directories on the way. */
static void put(const char *dir, const char *rel, const char *text)
{
    char path[512], *slash;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (slash = strchr(path + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(path, 0755);
        *slash = '/';
    }
    if (!text)
        return;
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The children list from a fixture /proc: the main thread's children file, or (a kernel
 * without it) a scan of every PID/stat for our pid as the parent, comm names with spaces and
 * parentheses included. */
START_TEST(children_from_a_fixture_proc)
{
    char dir[] = "/tmp/mv-reaper-XXXXXX", rel[128], text[128], *o = NULL;
    mv_reaper_t r = {.proc = dir};
    int out[8], n, me = (int)getpid();

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(rel, sizeof rel, "self/task/%d/children", me);
    put(dir, rel, "41 42 ");
    ck_assert_int_eq(mv_reaper_children(&r, out, 8), 2);
    ck_assert_int_eq(out[1], 42);
    snprintf(rel, sizeof rel, "%s/self/task/%d/children", dir, me);
    ck_assert_int_eq(unlink(rel), 0);
    snprintf(text, sizeof text, "100 (sh) S %d 1 1\n", me);
    put(dir, "100/stat", text);
    snprintf(text, sizeof text, "101 (a) b (c) S %d 1 1\n", me);
    put(dir, "101/stat", text);
    put(dir, "102/stat", "102 (x) S 1 1 1\n");
    put(dir, "notapid/stat", text);
    n = mv_reaper_children(&r, out, 8);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(out[0] + out[1], 201);
    ck_assert_int_eq(run_capture((const char *const[]){"rm", "-rf", dir, NULL}, &o), 0);
    free(o);
}
END_TEST

/* The parent pid of `pid` (from /proc/PID/stat), or -1 when it is gone. */
static int ppid_of(int pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p ? atoi(p + 4) : -1;
}

/* The pid the next "orphan=PID" output line names. */
static int next_orphan(mvrun_t *r)
{
    char *line = run_wait_for(r, "orphan=");
    int pid = atoi(strstr(line, "orphan=") + 7);

    free(line);
    ck_assert_int_gt(pid, 1);
    return pid;
}

/* Waits until a line containing `needle` has come, before or after the previous match. */
static void wait_seen(mvrun_t *r, const char *needle)
{
    run_drain(r);
    if (run_count(r, needle) == 0)
        free(run_wait_for(r, needle));
}

/* Tasks 1-2 leave orphans that exit 7 and 9 later, task 3 keeps the run going until they
 * have, task 4 crashes its worker every time (exit 3), task 5 is plain. One worker: in order. */
static const char *orphan_tasks = "orphan 400 7\norphan 300 9\nsleep 900\nexit 3\nok\n";

START_TEST(orphans_are_reaped_and_no_worker_status_is_lost)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "supervisor.subreaper=yes"), RUN_CMD(MVTEST));
    char want[96];
    int g1, g2, pp;
    json_t *q, *e;
    size_t i;

    run_init(&r, orphan_tasks);
    run_start(&r, args, NULL);
    g1 = next_orphan(&r);
    g2 = next_orphan(&r);
    /* Reparented to memvisor, not to init: checked while they live (a sleep of 300 ms or
     * more; once gone, the reaped line below is the proof). */
    pp = ppid_of(g1);
    ck_assert(pp == -1 || pp == r.pid);
    pp = ppid_of(g2);
    ck_assert(pp == -1 || pp == r.pid);
    snprintf(want, sizeof want, "event=orphan_reaped pid=%d status=9 ", g2);
    wait_seen(&r, want);
    ck_assert_int_eq(ppid_of(g2), -1); /* reaped: no zombie left */
    ck_assert_int_eq(run_finish(&r), 1);
    snprintf(want, sizeof want, "event=orphan_reaped pid=%d status=7 ", g1);
    ck_assert_int_eq(run_count(&r, want), 1);
    ck_assert_int_eq(run_count(&r, "event=orphan_reaped "), 2);
    ck_assert_int_eq(run_count(&r, "event=orphans_reaped reaped=2 suppressed=0"), 1);
    /* Every task ended once; the crashing one after exactly three attempts, each with the
     * worker's own exit status, and three crash exits logged with it. */
    run_assert_once(&r, 5, NULL);
    q = run_result(&r, 4);
    ck_assert_str_eq(jstr(q, "status"), "quarantined");
    ck_assert_int_eq(jint(q, "attempts"), 3);
    ck_assert_uint_eq(json_array_size(json_object_get(q, "attempt_errors")), 3);
    json_array_foreach(json_object_get(q, "attempt_errors"), i, e)
    {
        ck_assert_str_eq(jstr(e, "reason"), "crash");
        ck_assert_int_eq(jint(e, "exit"), 3);
    }
    ck_assert_int_eq(run_count(&r, "reason=crash status=3 "), 3);
    ck_assert_int_eq(run_count(&r, "event=cant_happen"), 0);
    run_free(&r);
}
END_TEST

START_TEST(without_the_subreaper_orphans_are_not_memvisors)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "supervisor.subreaper=no"), RUN_CMD(MVTEST));
    int g;

    run_init(&r, "orphan 500 7\nsleep 50\n");
    run_start(&r, args, NULL);
    g = next_orphan(&r);
    ck_assert_int_ne(ppid_of(g), r.pid);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_int_eq(run_count(&r, "event=orphan_reaped"), 0);
    ck_assert_int_eq(run_count(&r, "event=subreaper"), 0);
    run_free(&r);
}
END_TEST

/* Whether `unshare --pid --fork --mount-proc` works here (root, and no seccomp or container
 * rule against new namespaces). */
static bool pid_namespaces(void)
{
    const char *argv[] = {"unshare", "--pid", "--fork", "--mount-proc", "true", NULL};
    char *out = NULL;
    int code = run_capture(argv, &out);

    if (code != 0)
        fprintf(stderr,
                "reaper: skipped the PID 1 test: unshare --pid --fork --mount-proc "
                "exits %d here: %s\n",
                code, out ? out : "");
    free(out);
    return code == 0;
}

/* memvisor's pid outside its namespace: the one child of unshare. */
static int child_of(int pid)
{
    char path[96], buf[64] = "";
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
    if ((f = fopen(path, "r"))) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    return atoi(buf);
}

START_TEST(as_pid_1_it_reaps_and_obeys_sigterm)
{
    mvrun_t r;
    const char *wrap[] = {"unshare", "--pid", "--fork", "--mount-proc", NULL};
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "supervisor.grace_period=1h"), RUN_CMD(MVTEST));
    char want[96];
    int g, mv;

    if (geteuid() != 0 || !pid_namespaces())
        return;
    run_init(&r, "orphan 100 7\nsay hung hang\nok\n");
    r.wrap = wrap;
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=subreaper state=on pid1=1 reason=\"memvisor is PID 1\""));
    g = next_orphan(&r);
    snprintf(want, sizeof want, "event=orphan_reaped pid=%d status=7 ", g);
    wait_seen(&r, want);
    wait_seen(&r, "hung pid=");
    /* PID 1 gets no signal it has no handler for: memvisor's are installed. The first
     * SIGTERM lets running tasks finish (this one never does), the second kills. */
    mv = child_of(r.pid);
    ck_assert_int_gt(mv, 1);
    kill(mv, SIGTERM);
    free(run_wait_for(&r, "event=signal signal=Terminated msg=\"stopping"));
    kill(mv, SIGTERM);
    free(run_wait_for(&r, "killing workers now"));
    ck_assert_int_eq(run_finish(&r), 128 + SIGTERM);
    ck_assert_str_eq(jstr(run_result(&r, 1), "status"), "ok");
    ck_assert_ptr_null(run_result(&r, 2)); /* killed: not run */
    ck_assert_int_eq(run_count(&r, "event=orphans_reaped reaped=1 "), 1);
    run_free(&r);
}
END_TEST

Suite *reaper_suite(void)
{
    Suite *s = suite_create("reaper");
    TCase *tc = tcase_create("unit");

    tcase_add_test(tc, rate_limit_and_children_text);
    tcase_add_test(tc, children_from_a_fixture_proc);
    suite_add_tcase(s, tc);
    tc = tcase_create("orphans");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, orphans_are_reaped_and_no_worker_status_is_lost);
    tcase_add_test(tc, without_the_subreaper_orphans_are_not_memvisors);
    tcase_add_test(tc, as_pid_1_it_reaps_and_obeys_sigterm);
    suite_add_tcase(s, tc);
    return s;
}
