/*
 * End to end with per-worker cgroups on this machine's kernel (cgroup v1; v2 is covered by
 * fixture tests in check_cgroup.c): kernel-enforced hard limits, kernel OOM kills that lose
 * no task, kernel-measured per-task memory, the event-driven soft limit, the /proc fallback
 * for an unprivileged user, and no cgroup left behind whatever happens to memvisor.
 * Where no writable memory cgroup exists, the tests say so and pass without running.
 */
#include <check.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define MiB (1024LL * 1024)

/* memvisor's memory cgroup directory (a child inherits ours), or NULL without v1 memory. */
static const char *own_memcg(void)
{
    static char dir[1024];
    char line[1024];
    FILE *f = fopen("/proc/self/cgroup", "r");

    dir[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 && strstr(c1, "memory") && strstr(c1, "memory") < c2) {
            c2[strcspn(c2, "\n")] = '\0';
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", c2 + 1);
        }
    }
    if (f)
        fclose(f);
    return dir[0] && access(dir, W_OK) == 0 ? dir : NULL;
}

static bool cgroups_here(void)
{
    if (own_memcg())
        return true;
    fprintf(stderr, "check_cgroup_e2e: skipped, no writable v1 memory cgroup here\n");
    return false;
}

/* Run directories memvisor left in its cgroup. */
/* Whether the cgroup of the run with memvisor pid `pid` is still there (other memvisors, a
 * soak or another checkout's tests, may share this cgroup: only this test's runs count). */
static int leftovers(pid_t pid)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s/memvisor-%d", own_memcg(), (int)pid);
    return access(path, F_OK) == 0;
}

START_TEST(kernel_oom_kill_loses_no_task)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=2", "limits.memory_soft=0",
                                                "limits.memory_hard=32M", "tasks.max_attempts=2"),
                                       RUN_CMD(MVTEST));
    json_t *j, *h;

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "ok 1\ngrow 200 1\nok 3\nok 4\n", args), 1);
    run_assert_once(&r, 4, NULL);
    j = run_result(&r, 2);
    ck_assert_str_eq(jstr(j, "status"), "quarantined");
    h = json_object_get(j, "attempt_errors");
    ck_assert_uint_eq(json_array_size(h), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *a = json_array_get(h, i);
        ck_assert_str_eq(jstr(a, "reason"), "kernel_oom");
        ck_assert_int_eq(jint(a, "signal"), SIGKILL);
        /* The kernel stopped it at the limit, not a byte over. */
        ck_assert_int_le(jint(a, "mem_peak"), 32 * MiB);
        ck_assert_int_ge(jint(a, "mem_peak"), 30 * MiB);
    }
    for (size_t id = 1; id <= 4; id++)
        if (id != 2)
            ck_assert_str_eq(jstr(run_result(&r, id), "status"), "ok");
    ck_assert_int_eq(run_count(&r, "event=kernel_oom"), 2);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "kernel_oom 2"));
    run_free(&r);
}
END_TEST

START_TEST(no_worker_ever_passes_the_hard_limit)
{
    mvrun_t r;
    char *tasks = repeat_line("alloc 1", 120);
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=2", "limits.memory_soft=0", "limits.memory_hard=24M"),
        RUN_CMD(MVTEST));

    if (!cgroups_here())
        return;
    /* Each task leaks 1 MiB: workers reach the hard limit again and again. */
    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 120, NULL);
    ck_assert_int_ge(run_count(&r, "event=kernel_oom"), 3);
    for (size_t i = 0; i < r.nres; i++) {
        ck_assert_str_eq(jstr(r.res[i], "status"), "ok");
        ck_assert_str_eq(jstr(r.res[i], "peak_source"), "kernel");
        ck_assert_int_le(jint(r.res[i], "mem_peak"), 24 * MiB);
    }
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(per_task_memory_comes_from_the_kernel)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    json_t *j;

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "ok\nallocfree 50\nalloc 1\nfds 5\n", args), 0);
    /* 50 MiB allocated, touched and freed: a peak of at least 50 MiB, nothing retained
     * (within the kernel's per-CPU charge batches). */
    j = run_result(&r, 2);
    ck_assert_str_eq(jstr(j, "peak_source"), "kernel");
    ck_assert_int_ge(jint(j, "mem_peak"), 50 * MiB);
    ck_assert_int_le(llabs(jint(j, "retained")), 512 * 1024);
    /* 1 MiB leaked: about 1 MiB retained. */
    j = run_result(&r, 3);
    ck_assert_int_ge(jint(j, "retained"), 1 * MiB - 512 * 1024);
    ck_assert_int_le(jint(j, "retained"), 1 * MiB + 512 * 1024);
    /* Handles leak too. */
    j = run_result(&r, 4);
    ck_assert_int_eq(jint(j, "fds_after") - jint(j, "fds_before"), 5);
    ck_assert_ptr_nonnull(strstr(r.log, "memory=\"cgroup v1 "));
    run_free(&r);
}
END_TEST

/* v1: a slot's next worker gets the cgroup of a gone one (cgahead.h), renamed for its
 * generation, and nothing of the workers before shows in its figures: not the 8 MiB the
 * first one kept, not the kernel OOM kill of the third (the later workers exit for max_tasks,
 * and only one kernel_oom is counted). */
START_TEST(a_slots_cgroup_is_reused_and_its_figures_start_fresh)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.max_tasks=1", "limits.memory_soft=0",
                          "limits.memory_hard=32M", "tasks.max_attempts=1", "log.level=debug"),
                 RUN_CMD(MVTEST));
    int reused = 0;
    char want[64];

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "alloc 8\nok\ngrow 200 1\nok\nok\nok\nok\nok\n", args), 1);
    run_assert_once(&r, 8, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 3), "status"), "quarantined");
    ck_assert_int_eq(run_count(&r, "event=kernel_oom"), 1);
    for (size_t id = 4; id <= 8; id++) {
        json_t *j = run_result(&r, id);
        ck_assert_str_eq(jstr(j, "status"), "ok");
        ck_assert_str_eq(jstr(j, "peak_source"), "kernel");
        ck_assert_msg(jint(j, "mem_peak") < 4 * MiB, "task %zu: mem_peak %lld", id,
                      jint(j, "mem_peak"));
    }
    /* Kept cgroups are taken by the next generations asked for (one or two a slot): most of
     * the 7 after the first; how many depends on whether the old worker was reaped before
     * its replacement was ready. */
    for (const char *at = strstr(r.log, "event=cgroup_reuse "); at;
         at = strstr(at + 1, "event=cgroup_reuse "))
        reused += atoll(strstr(at, " inherited=") + 11) >= 0;
    ck_assert_msg(reused >= 2, "%d cgroups reused", reused);
    /* Each generation's cgroup still has its name, and only the OOM-killed one is kernel_oom. */
    for (int gen = 1; gen <= 8; gen++) {
        snprintf(want, sizeof want, "event=spawn worker=1 gen=%d ", gen);
        const char *sp = strstr(r.log, want);
        ck_assert_msg(sp != NULL, "no %s", want);
        snprintf(want, sizeof want, "/w1.%d ", gen);
        ck_assert_msg(strstr(sp, want) && strstr(sp, want) < strchr(sp, '\n'), "%.300s", sp);
    }
    ck_assert_int_eq(run_count(&r, "reason=kernel_oom signal="), 1);
    ck_assert_int_eq(run_count(&r, "reason=max_tasks status=0"), 6); /* the 8th: shutdown */
    run_free(&r);
}
END_TEST

START_TEST(soft_limit_is_noticed_by_a_kernel_event)
{
    mvrun_t r;
    /* No sampling (1 h) and no per-task readings: only the cgroup's threshold event can see
     * the worker cross 16 MiB in the middle of its task. */
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.memory_soft=16M", "limits.memory_hard=0",
                          "limits.sample_interval=1h", "tasks.accounting=no"),
                 RUN_CMD(MVTEST));
    char *line;

    if (!cgroups_here())
        return;
    run_init(&r, "grow 40 5\nok\n");
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "reason=soft_limit action=drain");
    ck_assert_int_ge(atoll(strstr(line, " mem=") + 5), 16 * MiB);
    free(line);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 2, NULL);
    /* It finished the task in hand before it was replaced. */
    ck_assert_str_eq(jstr(run_result(&r, 1), "status"), "ok");
    ck_assert_int_eq(jint(run_result(&r, 1), "attempts"), 1);
    ck_assert(json_is_null(json_object_get(run_result(&r, 1), "mem_before")));
    run_free(&r);
}
END_TEST

/* Someone moves a worker out of its cgroup and leaves the cgroup in place: the cgroup's
 * figures stopped growing (the tasks after it read retained ~0) and the kernel's hard limit no
 * longer held it (it grew past 24 MiB unchecked). memvisor sees it on a sample (its
 * /proc/PID/cgroup), says so once and reads it from /proc: the task in hand gets no figures
 * (begun on the cgroup's), the later ones their own, and the hard limit is checked on its
 * readings (it is killed past it, and its successor has a cgroup again). */
START_TEST(a_worker_moved_out_of_its_cgroup_is_said_and_measured_from_proc)
{
    mvrun_t r;
    char procs[PATH_MAX];

    if (!cgroups_here())
        return;
    snprintf(procs, sizeof procs, "%s/cgroup.procs", own_memcg());
    run_moved_out_drill(&r, NULL, procs);
    run_free(&r);
}
END_TEST

/* A worker that moves itself into a cgroup inside its own is still in it (harness.h). */
START_TEST(a_worker_in_a_cgroup_inside_its_own_is_not_lost)
{
    mvrun_t r;

    if (!cgroups_here())
        return;
    run_inside_own_drill(&r, NULL);
    ck_assert_int_eq(leftovers(r.pid), 0);
    run_free(&r);
}
END_TEST

START_TEST(nothing_left_behind_after_a_run_sigterm_or_sigkill)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", MVTEST, NULL};
    char *line;
    pid_t killed;

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "ok\nok\nok\n", args), 0);
    ck_assert_int_eq(leftovers(r.pid), 0);
    run_free(&r);

    run_init(&r, "say up sleep 300\nsleep 300\nok\n");
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "up pid="));
    kill(r.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&r), 128 + SIGTERM);
    ck_assert_int_eq(leftovers(r.pid), 0);
    run_free(&r);

    /* SIGKILL leaves the run's cgroups behind; the next run removes them. */
    run_init(&r, "say up hang\nhang\n");
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "up pid=");
    free(line);
    killed = r.pid;
    kill(killed, SIGKILL);
    ck_assert_int_eq(run_finish(&r), 128 + SIGKILL);
    run_free(&r);
    ck_assert_int_eq(leftovers(killed), 1);
    ck_assert_int_eq(run_batch(&r, "ok\n", args), 0);
    ck_assert_int_eq(run_count(&r, "cgroup_stale"), 0); /* removed, no warning needed */
    run_free(&r);
    ck_assert_int_eq(leftovers(killed), 0);
}
END_TEST

/* A worker that makes cgroups inside its own (as a memvisor.Pool made in a Pool's task does:
 * its memvisor's run cgroup) with a process in one: its cgroup was reused for a later worker
 * of the slot with them (`sub` was there again: that worker's subcg failed, and the process
 * lived on in its cgroup), and a cgroup not reused could not be removed (EBUSY), nor the
 * run's: both left in place, the processes in them alive. */
START_TEST(cgroups_a_worker_made_in_its_own_are_removed_with_it)
{
    mvrun_t r;
    const char *args[] = {"run",  "-o", "supervisor.workers=1", "-o", "limits.max_tasks=1", "--",
                          MVTEST, NULL};
    json_t *j;

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "subcg\nsubcg\nsubcg\nsubcg\nsubcg\nsubcg\n", args), 0);
    for (int i = 1; i <= 6; i++) {
        j = run_result(&r, i);
        ck_assert_str_eq(jstr(j, "status"), "ok");
        ck_assert_ptr_nonnull(strstr(jstr(j, "result"), "/sub/inner"));
    }
    ck_assert_ptr_null(strstr(r.log, "left in place"));
    ck_assert_int_eq(leftovers(r.pid), 0);
    run_free(&r);
}
END_TEST

START_TEST(unprivileged_user_falls_back_to_proc)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    struct passwd *nobody = getpwnam("nobody");

    if (!nobody || geteuid() != 0) {
        fprintf(stderr, "check_cgroup_e2e: skipped the unprivileged run (needs root and nobody)\n");
        return;
    }
    run_init(&r, "alloc 2\nok\n");
    if (!run_as(&r, nobody->pw_uid, nobody->pw_gid)) {
        run_free(&r);
        return;
    }
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 2, NULL);
    ck_assert_int_eq(run_count(&r, "event=cgroup_unavailable"), 1);
    ck_assert_ptr_nonnull(strstr(r.log, "the hard limit is enforced by sampling"));
    /* Its workers run as nobody too: their own high-water marks are memvisor's to reset. */
    ck_assert_str_eq(jstr(run_result(&r, 1), "peak_source"), "process");
    ck_assert_int_ge(jint(run_result(&r, 1), "retained"), 2 * MiB - 256 * 1024);
    ck_assert_int_ge(jint(run_result(&r, 1), "mem_peak"), jint(run_result(&r, 1), "mem_after"));
    run_free(&r);
}
END_TEST

START_TEST(an_explicit_mode_that_cannot_work_exits_3)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.cgroup=v2", "--", MVTEST, NULL};
    FILE *f = fopen("/sys/fs/cgroup/cgroup.controllers", "r");

    if (f) { /* a pure v2 host: v2 would work here */
        fclose(f);
        return;
    }
    ck_assert_int_eq(run_batch(&r, "ok\n", args), 3);
    ck_assert_int_eq(run_count(&r, "event=cgroup_setup_failed"), 1);
    ck_assert_uint_eq(r.nres, 0);
    run_free(&r);
}
END_TEST

START_TEST(cgroup_parent_names_where_workers_go)
{
    mvrun_t r;
    char parent[1200], rel[1200], opt[1300];
    const char *args[] = {"run", "-o", opt, "--", MVTEST, NULL};
    const char *own = own_memcg();

    if (!cgroups_here())
        return;
    snprintf(parent, sizeof parent, "%s/mv-test-parent", own);
    snprintf(rel, sizeof rel, "%s/mv-test-parent", own + strlen("/sys/fs/cgroup/memory"));
    snprintf(opt, sizeof opt, "supervisor.cgroup_parent=%s", rel);
    ck_assert_int_eq(mkdir(parent, 0755), 0);
    ck_assert_int_eq(run_batch(&r, "ok\n", args), 0);
    ck_assert_ptr_nonnull(strstr(r.log, "/mv-test-parent/memvisor-"));
    ck_assert_int_eq(rmdir(parent), 0); /* empty again: nothing left in it */
    run_free(&r);
}
END_TEST

/* Review finding: a worker already over the hard limit before its first task must not be
 * respawned in a tight loop: it is a failed start (backoff, crash_limit). */
START_TEST(a_worker_too_big_to_start_backs_off_and_gives_up)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.memory_soft=0", "limits.memory_hard=16M",
                          "worker.crash_limit=3", "worker.backoff_min=5ms"),
                 RUN_CMD(MVTEST, "--alloc-at-start", "64"));

    if (!cgroups_here())
        return;
    ck_assert_int_eq(run_batch(&r, "ok\n", args), 3);
    ck_assert_int_ge(run_count(&r, "event=premature_recycle"), 1);
    ck_assert_int_ge(run_count(&r, "event=backoff"), 1);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 1);
    ck_assert_int_le(run_count(&r, "event=spawn "), 3);
    run_free(&r);
}
END_TEST

Suite *cgroup_e2e_suite(void)
{
    Suite *s = suite_create("cgroup_e2e");
    TCase *tc = tcase_create("kernel");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kernel_oom_kill_loses_no_task);
    tcase_add_test(tc, no_worker_ever_passes_the_hard_limit);
    tcase_add_test(tc, per_task_memory_comes_from_the_kernel);
    tcase_add_test(tc, soft_limit_is_noticed_by_a_kernel_event);
    tcase_add_test(tc, a_slots_cgroup_is_reused_and_its_figures_start_fresh);
    tcase_add_test(tc, a_worker_moved_out_of_its_cgroup_is_said_and_measured_from_proc);
    tcase_add_test(tc, a_worker_in_a_cgroup_inside_its_own_is_not_lost);
    tcase_add_test(tc, nothing_left_behind_after_a_run_sigterm_or_sigkill);
    tcase_add_test(tc, cgroups_a_worker_made_in_its_own_are_removed_with_it);
    tcase_add_test(tc, an_explicit_mode_that_cannot_work_exits_3);
    tcase_add_test(tc, cgroup_parent_names_where_workers_go);
    tcase_add_test(tc, a_worker_too_big_to_start_backs_off_and_gives_up);
    suite_add_tcase(s, tc);

    /* Runs binaries as another user (check_checkout runs this case from a 0700 checkout). */
    tc = tcase_create("other_uid");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, unprivileged_user_falls_back_to_proc);
    suite_add_tcase(s, tc);
    return s;
}
