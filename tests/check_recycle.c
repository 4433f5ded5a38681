/*
 * End to end: a replacement ready before it is needed (issue 13). Hot spares taking a slot
 * at a recycle, with every protocol; a spare that dies while it waits is replaced and is no
 * crash; spares leave nothing behind; the replacement of a `lines` worker in batch mode
 * starts before the old one exits (surge), at once when its cgroup was made ahead; answers
 * of a `lines` worker with 64 tasks in flight pair with their tasks. Orderings are asserted
 * through the log's events, never through timing.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/wait.h>

#include "cgahead.h"
#include "harness.h"
#include "kids.h"
#include "suites.h"

/* Where `needle` first appears in the log after `from` (NULL: nowhere). */
static const char *log_at(const mvrun_t *r, const char *from, const char *needle)
{
    return strstr(from ? from : r->log, needle);
}

/* The value of `key=` in the first log line holding `needle` (a copy in buf), or "". */
static const char *log_field(const mvrun_t *r, const char *needle, const char *key, char *buf,
                             size_t n)
{
    const char *line = log_at(r, NULL, needle), *p;
    size_t k = strlen(key);

    buf[0] = '\0';
    if (!line)
        return buf;
    for (p = line; *p && *p != '\n'; p++)
        if (p[-1] == ' ' && strncmp(p, key, k) == 0 && p[k] == '=') {
            snprintf(buf, n, "%.*s", (int)strcspn(p + k + 1, " \n"), p + k + 1);
            break;
        }
    return buf;
}

/* Reads the log until both needles are in it, in either order (run_wait_for wants an
 * order). */
static void wait_both(mvrun_t *r, const char *a, const char *b)
{
    for (;;) {
        run_drain(r);
        if (r->log && strstr(r->log, a) && strstr(r->log, b))
            return;
        ck_assert_msg(pid_alive(r->pid), "memvisor ended before %s and %s", a, b);
        usleep(10000);
    }
}

static bool cgroups_here(const mvrun_t *r)
{
    if (strstr(r->log, "memory=\"cgroup v"))
        return true;
    fprintf(stderr, "check_recycle: no memory cgroup here, cgroup parts not checked\n");
    return false;
}

/* api: the spare is started, in its own cgroup, shown by status, and takes the slot in the
 * pass that decides the recycle (its spare_taken comes before the old worker's exit); the
 * tasks after it are its; at the end its cgroup and every spare's are gone. */
START_TEST(a_spare_takes_the_slot_at_the_recycle)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "recycle.spares=1", "limits.max_tasks=3"),
                 RUN_CMD(MVTEST));
    char pid[32], cg[512], ms[32];
    const char *held;
    const char *taken, *exit1;
    json_t *st, *sp;
    mvrun_t r;

    run_init(&r, "hold 0\nok\nok\nok\nok\nok\n");
    run_start(&r, args, NULL);
    /* The slot's worker holds its first task until the spare is ready. */
    wait_both(&r, "held pid=", "event=ready worker=0 ");
    held = strstr(r.log, "held pid=");
    st = run_status(&r);
    sp = json_array_get(json_object_get(st, "spares"), 0);
    ck_assert_ptr_nonnull(sp);
    ck_assert_int_eq(json_integer_value(json_object_get(sp, "slot")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sp, "state")), "spare");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(st, "totals"), "workers")),
                     1); /* a spare is no worker of the pool */
    json_decref(st);
    ck_assert_int_eq(kill(atoi(held + 9), SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 6, NULL);

    log_field(&r, "event=spawn worker=0 gen=1 ", "pid", pid, sizeof pid);
    taken = log_at(&r, NULL, "event=spare_taken worker=1 gen=2 ");
    exit1 = log_at(&r, NULL, "event=exit worker=1 gen=1 ");
    ck_assert_log(&r, taken && exit1 && taken < exit1, "the spare not taken before the exit");
    ck_assert_ptr_nonnull(
        log_at(&r, log_at(&r, NULL, "reason=max_tasks action=drain"), "event=spare_taken"));
    ck_assert_int_eq(atoi(pid), atoi(strstr(taken, " pid=") + 5));
    /* Its start-up is its own (spawn to ready), not counted from when it took the slot. */
    log_field(&r, "event=exit worker=1 gen=2 ", "startup_ms", ms, sizeof ms);
    ck_assert_msg(atoi(ms) >= 0, "startup_ms=%s", ms);
    /* Tasks 4..6 ran on the spare. */
    for (size_t t = 4; t <= 6; t++)
        ck_assert_int_eq(jint(run_result(&r, t), "pid"), atoi(pid));
    ck_assert(!pid_alive(atoi(pid)));
    /* Every spare's cgroup is gone with the run (the one taken and the ones still waiting). */
    if (cgroups_here(&r))
        for (int g = 1; g <= 3; g++) {
            char needle[64];
            snprintf(needle, sizeof needle, "event=spawn worker=0 gen=%d ", g);
            if (!log_at(&r, NULL, needle))
                continue;
            log_field(&r, needle, "cgroup", cg, sizeof cg);
            ck_assert_msg(strstr(cg, "/w0.") != NULL, "%s", cg);
            ck_assert_msg(access(cg, F_OK) != 0, "%s is left", cg);
        }
    run_free(&r);
}
END_TEST

/* A reload retires the spares (they run the old command and limits) and starts new ones. */
START_TEST(a_reload_replaces_the_spares)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "recycle.spares=1"), RUN_CMD(MVTEST));
    char sock[160], *out = NULL;
    mvrun_t r;

    run_init(&r, "hold 0\nok\n");
    run_start(&r, args, NULL);
    wait_both(&r, "held pid=", "event=ready worker=0 ");
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "reload", "--socket", sock, NULL}, &out), 0);
    free(out);
    /* In either order: the new spare may start before the old one has exited (seen on the
     * v2 kernels of make check-v2, and on a loaded host). */
    wait_both(&r, "event=exit worker=0 gen=1 ", "event=spawn worker=0 gen=2 ");
    ck_assert_int_eq(kill(atoi(strstr(r.log, "held pid=") + 9), SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 2, NULL);
    ck_assert_ptr_nonnull(strstr(strstr(r.log, "event=exit worker=0 gen=1 "), "reason=requested"));
    run_free(&r);
}
END_TEST

/* lines: spares that die at their start (three of them) are replaced; each is a failed
 * start of the command, counted toward crash_limit (4: not reached; it was "no crash of the
 * pool" before, tested with crash_limit 1). The fourth one takes the slot. */
START_TEST(a_spare_that_dies_while_waiting_is_replaced_and_no_crash)
{
    const char *script = "#!/bin/sh\n"
                         "d=$(dirname \"$0\")\n"
                         "if [ \"$MEMVISOR_SLOT\" = 0 ]; then\n"
                         "  for i in 1 2 3; do\n"
                         "    mkdir \"$d/died.$i\" 2>/dev/null && exit 3\n"
                         "  done\n"
                         "fi\n"
                         "while IFS= read -r line; do\n"
                         "  while [ ! -e \"$d/go\" ]; do sleep 0.01; done\n"
                         "  echo \"ok $MEMVISOR_SLOT $line\"\n"
                         "done\n";
    mvargs_t av;
    const char *const *args;
    char path[256], go[256];
    mvrun_t r;

    run_init(&r, "a\nb\nc\nd\n");
    snprintf(path, sizeof path, "%s", run_file(&r, "w.sh", script));
    chmod(path, 0755);
    args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "recycle.spares=1", "worker.protocol=lines",
                          "worker.crash_limit=4", "worker.backoff_min=10ms", "limits.max_tasks=2"),
                 RUN_CMD(path));
    run_start(&r, args, NULL);
    run_wait_nth(&r, "event=spare_gone ", 3);
    free(run_wait_for(&r, "event=spawn worker=0 gen=4 "));
    free(run_wait_for(&r, "event=ready worker=0 "));
    snprintf(go, sizeof go, "%s", run_file(&r, "go", ""));
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 4, NULL);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    ck_assert_int_eq(run_count(&r, "event=spare_gone "), 3);
    ck_assert_ptr_nonnull(log_at(&r, NULL, "event=spare_taken worker=1 gen=2 "));
    /* The first slot worker and the spare that took the slot were told their slot: 1 by the
     * environment, the spare 0 (it started as one). */
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "ok 1 a");
    ck_assert_str_eq(jstr(run_result(&r, 3), "result"), "ok 0 c");
    run_free(&r);
}
END_TEST

/* none (a service with no conversation): the spare is running, takes the slot at a recycle
 * asked over the control socket, and the stop ends it. */
START_TEST(a_none_spare_takes_the_slot_of_a_service)
{
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=1", "recycle.spares=1",
                                                "worker.protocol=none", "worker.kill_timeout=1s"),
                                       RUN_CMD("sleep", "300"));
    char sock[160], pid[32], *out = NULL;
    mvrun_t r;

    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    wait_both(&r, "event=pool_ready", "event=ready worker=0 ");
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "recycle", "1", "--socket", sock, NULL}, &out), 0);
    free(out);
    free(run_wait_for(&r, "event=spare_taken worker=1 gen=2 "));
    ck_assert_int_eq(run_ctl("stop", sock), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    log_field(&r, "event=spawn worker=0 gen=1 ", "pid", pid, sizeof pid);
    ck_assert_int_eq(atoi(pid), atoi(strstr(log_at(&r, NULL, "event=spare_taken"), " pid=") + 5));
    ck_assert(!pid_alive(atoi(pid)));
    run_free(&r);
}
END_TEST

/* Surge for `lines` in batch mode: the replacement is started when the recycle is decided,
 * not once the old worker has exited. The old worker (it ignores SIGTERM) waits, after its
 * EOF, for the next worker to have started: if the replacement were only started after the
 * exit, the exit would come first (after its 10 s wait). A worker that did fewer than
 * max_tasks was not recycled (the batch ended): it exits at its EOF. */
START_TEST(lines_replacement_starts_before_the_old_worker_exits)
{
    const char *script = "#!/bin/sh\n"
                         "trap '' TERM\n"
                         "d=$(dirname \"$0\")\n"
                         "i=1\n"
                         "while ! mkdir \"$d/started.$i\" 2>/dev/null; do i=$((i+1)); done\n"
                         "c=0\n"
                         "while IFS= read -r line; do echo \"ok $i\"; c=$((c+1)); done\n"
                         "[ $c -lt 3 ] && exit 0 # not recycled: the batch is over\n"
                         "n=0\n"
                         "while [ ! -d \"$d/started.$((i+1))\" ] && [ $n -lt 100 ]; do\n"
                         "  sleep 0.1; n=$((n+1))\n"
                         "done\n";
    mvargs_t av;
    const char *const *args;
    char path[256];
    const char *spawn2, *exit1;
    mvrun_t r;

    run_init(&r, "a\nb\nc\nd\ne\n");
    snprintf(path, sizeof path, "%s", run_file(&r, "w.sh", script));
    chmod(path, 0755);
    args = run_argv(&av,
                    RUN_OPTS("supervisor.workers=1", "worker.protocol=lines", "limits.max_tasks=3",
                             "worker.kill_timeout=30s"),
                    RUN_CMD(path));
    ck_assert_int_eq((run_start(&r, args, NULL), run_finish(&r)), 0);
    run_assert_once(&r, 5, NULL);
    spawn2 = log_at(&r, NULL, "event=spawn worker=1 gen=2 ");
    exit1 = log_at(&r, NULL, "event=exit worker=1 gen=1 ");
    ck_assert_log(&r, spawn2 && exit1 && spawn2 < exit1,
                  "no surge: gen 2 not spawned before gen 1 exited");
    ck_assert_str_eq(jstr(run_result(&r, 4), "result"), "ok 2");
    run_free(&r);
}
END_TEST

/* [recycle] cgroup_ahead: once the slot's next cgroup is made, a recycle starts the
 * replacement's process in the same pass (its spawn logged before anything else happens to
 * the old worker, which exits at its EOF), in that cgroup. */
START_TEST(a_cgroup_made_ahead_starts_the_replacement_at_once)
{
    const char *script = "#!/bin/sh\n"
                         "d=$(dirname \"$0\")\n"
                         "while IFS= read -r line; do\n"
                         "  while [ ! -e \"$d/go\" ]; do sleep 0.01; done\n"
                         "  echo ok\n"
                         "done\n";
    mvargs_t av;
    const char *const *args;
    char path[256], made[512], used[512];
    const char *rec, *spawn2, *exit1;
    char *line;
    mvrun_t r;

    run_init(&r, "a\nb\n");
    snprintf(path, sizeof path, "%s", run_file(&r, "w.sh", script));
    chmod(path, 0755);
    args = run_argv(&av,
                    RUN_OPTS("supervisor.workers=1", "worker.protocol=lines", "limits.max_tasks=1",
                             "log.level=debug"),
                    RUN_CMD(path));
    run_start(&r, args, NULL);
    if (!strstr((line = run_wait_for(&r, "event=start ")), "memory=\"cgroup v")) {
        fprintf(stderr, "check_recycle: no memory cgroup here, cgroup_ahead not checked\n");
        run_file(&r, "go", "");
        free(line);
        ck_assert_int_eq(run_finish(&r), 0);
        run_free(&r);
        return;
    }
    free(line);
    free(run_wait_for(&r, "event=cgroup_ahead worker=1 gen=2 "));
    run_file(&r, "go", "");
    ck_assert_int_eq(run_finish(&r), 0);
    rec = log_at(&r, NULL, "event=recycle worker=1 gen=1 ");
    spawn2 = log_at(&r, NULL, "event=spawn worker=1 gen=2 ");
    exit1 = log_at(&r, NULL, "event=exit worker=1 gen=1 ");
    ck_assert_log(&r, rec && spawn2 && exit1 && rec < spawn2 && spawn2 < exit1,
                  "not recycle, then gen 2, then gen 1's exit");
    log_field(&r, "event=cgroup_ahead worker=1 gen=2 ", "cgroup", made, sizeof made);
    log_field(&r, "event=spawn worker=1 gen=2 ", "cgroup", used, sizeof used);
    ck_assert_str_eq(made, used);
    run_free(&r);
}
END_TEST

/* What a slot's cgroup made ahead is for: only that generation of that slot; nothing for a
 * slot out of range or generation 0 (none asked). */
START_TEST(cgahead_holds_only_the_generation_asked)
{
    mv_cgahead_t a;

    ck_assert_int_eq(mv_cgahead_init(&a, NULL, NULL, NULL, 2, true), 0);
    ck_assert(!a.on); /* no cgroups: nothing is ever made */
    ck_assert(!mv_cgahead_holds(&a, 1, 0));
    a.slot[1].first.gen = 3; /* as mv_cgahead_prepare(&a, 2, 3) leaves it while it is made */
    ck_assert(mv_cgahead_holds(&a, 2, 3));
    ck_assert(!mv_cgahead_holds(&a, 2, 4));
    ck_assert(!mv_cgahead_holds(&a, 1, 3));
    ck_assert(!mv_cgahead_holds(&a, 0, 3));
    ck_assert(!mv_cgahead_holds(&a, 3, 3));
    ck_assert(!mv_cgahead_holds(&a, -1, 3));
    a.slot[1].first.gen = 0;
    a.slot[0].queued = 5; /* asked for, waiting for its turn: its name is taken too */
    ck_assert(mv_cgahead_holds(&a, 1, 5));
    a.slot[0].queued = 0;
    mv_cgahead_free(&a);
}
END_TEST

/* Escalation workers (pool_esc.c) and spares both start workers beside a slot's own: they do
 * not fight. The task killed at memory_hard runs again on an escalation worker that took
 * neither the spare (its limits are the run's) nor the cgroup made ahead for the slot's next
 * worker (the same directory); the spare takes the slot. */
START_TEST(escalation_workers_take_no_spare_and_no_cgroup_made_ahead)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "recycle.spares=1", "recycle.cgroup_ahead=yes",
                          "limits.memory_hard=64M", "limits.escalate=2x",
                          "limits.escalate_max=256M", "tasks.max_attempts=1", "log.level=debug"),
                 RUN_CMD(MVTEST));
    char needle[64], esc_cg[512], made[512];
    const char *taken, *at;
    json_t *t1;
    long long esc_pid;
    mvrun_t r;

    run_init(&r, "alloc 100\nok\nok\n");
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    t1 = run_result(&r, 1);
    ck_assert_str_eq(jstr(t1, "status"), "ok");
    ck_assert_int_eq(jint(t1, "escalations"), 1);
    ck_assert_int_eq(jint(t1, "mem_limit"), 128 << 20);
    esc_pid = jint(t1, "pid");
    /* One spare taken, by the slot (its worker was killed); not by the escalation worker. */
    ck_assert_int_eq(run_count(&r, "event=spare_taken "), 1);
    taken = log_at(&r, NULL, "event=spare_taken worker=1 ");
    ck_assert_int_ne(atoll(strstr(taken, " pid=") + 5), esc_pid);
    /* Made where one was made ahead, its cgroup failed (v1: libcgroup refuses a cgroup that
     * exists) or was shared (v2: mkdir finds it). */
    ck_assert_log(&r, run_count(&r, "event=spawn_failed") == 0, "a spawn failed");
    ck_assert_int_eq(run_count(&r, "event=cgroup_remove_failed"), 0);
    if (!cgroups_here(&r)) {
        run_free(&r);
        return;
    }
    /* The escalation worker's cgroup is none that was made ahead. */
    snprintf(needle, sizeof needle, " pid=%lld cgroup=", esc_pid);
    ck_assert_ptr_nonnull(log_at(&r, NULL, needle));
    log_field(&r, needle, "cgroup", esc_cg, sizeof esc_cg);
    ck_assert_int_ge(run_count(&r, "event=cgroup_ahead "), 1);
    for (at = log_at(&r, NULL, "event=cgroup_ahead "); at;
         at = log_at(&r, at + 1, "event=cgroup_ahead ")) {
        const char *c = strstr(at, " cgroup=") + 8;
        snprintf(made, sizeof made, "%.*s", (int)strcspn(c, " \n"), c);
        ck_assert_str_ne(made, esc_cg);
    }
    run_free(&r);
}
END_TEST

/* Batching: 64 task lines in flight per worker, written together and answered in bulk by
 * cat (which writes whatever it read, cut anywhere), still pair each answer with its task. */
START_TEST(lines_answers_pair_with_tasks_at_prefetch_64)
{
    enum { N = 2000 };
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=2", "worker.protocol=lines", "worker.prefetch=64"),
        RUN_CMD("cat"));
    char *tasks = calloc(N, 16), want[24];
    size_t used = 0;
    mvrun_t r;

    for (int i = 1; i <= N; i++)
        used += (size_t)sprintf(tasks + used, "task-%d\n", i);
    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, N, NULL);
    for (int i = 1; i <= N; i++) {
        snprintf(want, sizeof want, "task-%d", i);
        ck_assert_str_eq(jstr(run_result(&r, (size_t)i), "result"), want);
    }
    free(tasks);
    run_free(&r);
}
END_TEST

/* Gathered answers ([worker] gather, on by default): a worker at prefetch 64 whose tasks take
 * ~150 us holds enough work for its answers to be read in batches. Every answer still pairs
 * with its task, and each worker's windows still chain (a task's mem_before is the previous
 * task's mem_after on that worker): tasks read together share one reading. A lines worker
 * and an api one (the Python module), each with gather = yes and no. */
static const char *const pace_lines = "import sys, time\n"
                                      "for line in sys.stdin:\n"
                                      "    t = time.perf_counter()\n"
                                      "    while time.perf_counter() - t < 0.00015:\n"
                                      "        pass\n"
                                      "    sys.stdout.write(line)\n"
                                      "    sys.stdout.flush()\n";
static const char *const pace_api = "import sys, time\n"
                                    "sys.path.insert(0, '" SOURCE_DIR "/worker-api/python')\n"
                                    "import memvisor_worker\n"
                                    "def task(t):\n"
                                    "    s = time.perf_counter()\n"
                                    "    while time.perf_counter() - s < 0.00015:\n"
                                    "        pass\n"
                                    "    return t.data\n"
                                    "memvisor_worker.main(task)\n";

/* One run of the paced worker; its answers and windows checked. */
static void gathered_run(const char *tasks, int n, const char *protocol, const char *pace,
                         const char *gather)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", protocol, "worker.prefetch=64", gather),
                 RUN_CMD("python3", "-c", pace));
    long long pid[2] = {0, 0}, after[2] = {0, 0};
    char want[16];
    mvrun_t r;

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, (size_t)n, NULL);
    for (int i = 1; i <= n; i++) {
        json_t *res = run_result(&r, (size_t)i);
        long long p = jint(res, "pid");
        int k = p == pid[0] || pid[0] == 0 ? 0 : 1;

        snprintf(want, sizeof want, "task-%d", i);
        ck_assert_str_eq(jstr(res, "result"), want);
        if (pid[k] == p)
            ck_assert_msg(jint(res, "mem_before") == after[k],
                          "%s %s: task %d: mem_before %lld, the worker's task before ended at %lld",
                          protocol, gather, i, jint(res, "mem_before"), after[k]);
        ck_assert_int_eq(jint(res, "retained"), jint(res, "mem_after") - jint(res, "mem_before"));
        pid[k] = p;
        after[k] = jint(res, "mem_after");
    }
    run_free(&r);
}

START_TEST(gathered_answers_pair_and_chain)
{
    enum { N = 1500 };
    char *tasks = calloc(N, 16);
    size_t used = 0;

    for (int i = 1; i <= N; i++)
        used += (size_t)sprintf(tasks + used, "task-%d\n", i);
    gathered_run(tasks, N, "worker.protocol=lines", pace_lines, "worker.gather=yes");
    gathered_run(tasks, N, "worker.protocol=lines", pace_lines, "worker.gather=no");
    gathered_run(tasks, N, "worker.protocol=api", pace_api, "worker.gather=yes");
    gathered_run(tasks, N, "worker.protocol=api", pace_api, "worker.gather=no");
    free(tasks);
}
END_TEST

/* A bad spares count is a configuration error naming the key. */
START_TEST(spares_out_of_range_is_a_config_error)
{
    char *out = NULL;

    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.spares=2000", NULL}, &out),
        2);
    ck_assert_msg(strstr(out, "spares"), "%s", out);
    free(out);
    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.cgroup_ahead=maybe", NULL},
                    &out),
        2);
    ck_assert_msg(strstr(out, "cgroup_ahead"), "%s", out);
    free(out);
}
END_TEST

/* ---- [recycle] target = child (kids.h, pool_kids.c) ---- */

/* The child to stop is the one with the most private memory, and only one holding more than
 * the master; unreadable ones (gone) never. */
START_TEST(the_largest_child_is_picked_unless_the_master_holds_more)
{
    const mv_kid_t kids[] = {{10, 5 << 20}, {11, 40 << 20}, {12, -1}, {13, 20 << 20}};

    ck_assert_int_eq(mv_kids_pick(kids, 4, 1 << 20), 1);
    ck_assert_int_eq(mv_kids_pick(kids, 4, 40 << 20), -1); /* the master grows */
    ck_assert_int_eq(mv_kids_pick(kids, 0, 0), -1);
    ck_assert_int_eq(mv_kids_pick(kids + 2, 1, 0), -1);
}
END_TEST

/* Real children of this process: listed with their memory (the one that touched 16 MiB is
 * picked), told to stop through a pidfd, and seen gone once they exit. */
START_TEST(children_are_listed_weighed_and_stopped)
{
    mv_kid_t kids[8];
    mv_kidstop_t ks;
    pid_t pid[2];
    int n, big = -1, st;

    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            signal(SIGTERM, SIG_DFL); /* not the harness's handler (it stops the group) */
            if (i == 1)
                memset(mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                            0),
                       1, 16 << 20);
            pause();
            _exit(0);
        }
    }
    for (int tries = 0; tries < 200; tries++) { /* until the second has touched its memory */
        n = mv_kids_list(getpid(), kids, 8);
        ck_assert_int_eq(n, 2);
        big = mv_kids_pick(kids, n, mv_kids_priv(getpid()) > (8 << 20) ? 8 << 20 : 0);
        if (big >= 0 && kids[big].pid == pid[1] && kids[big].priv >= 16 << 20)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(kids[big].pid, pid[1]);
    mv_kidstop_init(&ks);
    ck_assert(mv_kidstop_gone(&ks)); /* nothing stopping */
    ck_assert_int_eq(mv_kidstop_start(&ks, pid[1], SIGTERM), 0);
    ck_assert_int_eq(waitpid(pid[1], &st, 0), pid[1]);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    ck_assert(mv_kidstop_gone(&ks));
    mv_kidstop_end(&ks);
    ck_assert_int_eq(mv_kidstop_start(&ks, pid[0], SIGSTOP), 0); /* stopped, not gone */
    ck_assert(!mv_kidstop_gone(&ks));
    ck_assert_int_eq(mv_kidstop_kill(&ks), 0);
    ck_assert_int_eq(waitpid(pid[0], &st, 0), pid[0]);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    mv_kidstop_end(&ks);
    ck_assert_int_eq(mv_kids_list(getpid(), kids, 8), 0);
}
END_TEST

/* A worker with no child to stop (here one that leaks in its own process) is recycled whole,
 * and the log says why. */
START_TEST(a_worker_without_children_is_recycled_whole)
{
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("worker.protocol=none", "supervisor.workers=1", "limits.memory_soft=24M",
                          "limits.memory_hard=512M", "recycle.target=child"),
                 RUN_CMD(MVTEST, "--leak-forever", "5"));
    char *line;
    mvrun_t r;

    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=child_recycle_skipped ");
    ck_assert_msg(strstr(line, "why=\"the master has no child\""), "%s", line);
    free(line);
    free(run_wait_for(&r, "event=recycle worker=1 gen=1 "));
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_eq(run_count(&r, "action=child"), 0);
    ck_assert_log(&r, strstr(strstr(r.log, "event=recycle worker=1 gen=1 "), "reason=soft_limit"),
                  "worker 1's first recycle was not for soft_limit");
    run_free(&r);
}
END_TEST

/* A shell that waits on its command is no master: its child told to stop, it exits too, and
 * the log says what went wrong (the exit itself counts as any worker's). */
START_TEST(a_worker_that_is_no_master_is_named)
{
    char cmd[512];
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("worker.protocol=none", "supervisor.workers=1", "limits.memory_soft=24M",
                          "limits.memory_hard=512M", "recycle.target=child"),
                 RUN_CMD("/bin/sh", "-c", cmd));
    char *line;
    mvrun_t r;

    snprintf(cmd, sizeof cmd, "%s --leak-forever 5; exit 3", MVTEST);
    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=master_exited ");
    ck_assert_msg(strstr(line, "worker=1 "), "%s", line);
    free(line);
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_ge(run_count(&r, "action=child"), 1);
    run_free(&r);
}
END_TEST

/* A child that ignores the stop signal gets SIGKILL after kill_timeout; its master replaces
 * it as it would any child, and the worker itself stays. */
START_TEST(a_child_that_ignores_its_signal_is_killed)
{
    /* A master in a few lines of Python: one child at a time, which ignores SIGTERM and
     * keeps 1 MiB more every 5 ms; a new child whenever one exits. */
    const char *master = "import os, signal, time\n"
                         "while True:\n"
                         "    pid = os.fork()\n"
                         "    if pid == 0:\n"
                         "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                         "        keep = []\n"
                         "        while True:\n"
                         "            keep.append(bytearray(1 << 20))\n"
                         "            time.sleep(0.005)\n"
                         "    os.waitpid(pid, 0)\n";
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("worker.protocol=none", "supervisor.workers=1", "limits.memory_soft=48M",
                 "limits.memory_hard=1G", "recycle.target=child", "worker.kill_timeout=300ms"),
        RUN_CMD("python3", "-c", master));
    char *line, child[32];
    mvrun_t r;

    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=kill_timeout ");
    ck_assert_msg(strstr(line, " child=") && strstr(line, "SIGKILL"), "%s", line);
    snprintf(child, sizeof child, " child=%ld ", atol(strstr(line, " child=") + 7));
    free(line);
    line = run_wait_for(&r, "event=child_gone ");
    ck_assert_msg(strstr(line, child), "%s", line);
    free(line);
    run_wait_nth(&r, "action=child ", 2); /* the master's next child, in its turn */
    kill(r.pid, SIGTERM);
    run_finish(&r);
    ck_assert_int_eq(run_count(&r, "event=spawn "), 1);
    ck_assert_int_eq(run_count(&r, "event=master_exited"), 0);
    run_free(&r);
}
END_TEST

/* [recycle] child_signal: each value but TERM (the other tests' default) is the signal the
 * chosen child gets. A Python master whose children say which signal stopped them (each has
 * a handler for all six), exit at once, and are replaced; the first child told to stop names
 * the configured one, and nobody needed a SIGKILL. */
START_TEST(each_child_signal_is_the_one_the_child_gets)
{
    const char *master = "import os, signal, sys, time\n"
                         "def stop(n, f):\n"
                         "    sys.stderr.write('stopped by %s pid=%d\\n' % "
                         "(signal.Signals(n).name, os.getpid()))\n"
                         "    sys.stderr.flush()\n"
                         "    os._exit(0)\n"
                         "while True:\n"
                         "    pid = os.fork()\n"
                         "    if pid == 0:\n"
                         "        for s in ('TERM', 'INT', 'QUIT', 'HUP', 'USR1', 'USR2'):\n"
                         "            signal.signal(getattr(signal, 'SIG' + s), stop)\n"
                         "        keep = []\n"
                         "        while True:\n"
                         "            keep.append(bytearray(1 << 20))\n"
                         "            time.sleep(0.005)\n"
                         "    os.waitpid(pid, 0)\n";
    static const char *const sigs[] = {"INT", "QUIT", "HUP", "USR1", "USR2"};

    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        char opt[64], want[64], child[32], *line;
        mvargs_t av;
        const char *const *args = run_argv(
            &av,
            RUN_OPTS("worker.protocol=none", "supervisor.workers=1", "limits.memory_soft=48M",
                     "limits.memory_hard=1G", "recycle.target=child", opt),
            RUN_CMD("python3", "-c", master));
        mvrun_t r;

        snprintf(opt, sizeof opt, "recycle.child_signal=%s", sigs[i]);
        run_init(&r, NULL);
        r.service = true;
        run_start(&r, args, NULL);
        line = run_wait_for(&r, "action=child ");
        snprintf(child, sizeof child, " pid=%ld", atol(strstr(line, " child=") + 7));
        free(line);
        line = run_wait_for(&r, "stopped by SIG");
        snprintf(want, sizeof want, "stopped by SIG%s%s", sigs[i], child);
        ck_assert_msg(strstr(line, want), "%s: %s", want, line);
        free(line);
        free(run_wait_for(&r, "event=child_gone "));
        kill(r.pid, SIGTERM);
        run_finish(&r);
        ck_assert_int_eq(run_count(&r, "event=kill_timeout"), 0);
        ck_assert_int_eq(run_count(&r, "event=master_exited"), 0);
        ck_assert_int_eq(run_count(&r, "event=spawn "), 1);
        run_free(&r);
    }
}
END_TEST

/* Only a protocol-none worker is a master whose children memvisor may stop. */
START_TEST(target_child_needs_protocol_none)
{
    char *out = NULL;

    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.target=child", NULL}, &out),
        2);
    ck_assert_msg(strstr(out, "target") && strstr(out, "protocol = none"), "%s", out);
    free(out);
    ck_assert_int_eq(run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.target=child",
                                                  "-o", "worker.protocol=none", "-o",
                                                  "recycle.child_signal=KILL", NULL},
                                 &out),
                     2);
    ck_assert_msg(strstr(out, "child_signal"), "%s", out);
    free(out);
    ck_assert_int_eq(run_capture((const char *[]){MEMVISOR, "check", "-o", "recycle.target=child",
                                                  "-o", "worker.protocol=none", "-o",
                                                  "recycle.child_signal=QUIT", NULL},
                                 &out),
                     0);
    free(out);
}
END_TEST

/* Lock-step: a worker whose answer puts it past its stop point (the soft limit, with a
 * handover headroom of 1 byte) is sent no other task, though its next task now goes at its
 * answer (mv_dispatch_eager): the recycle is decided first. Per worker, only its last task
 * may end over the soft limit. Without a cgroup and with a sampling interval longer than the
 * run, the answers' readings alone decide (a kernel notification or a sample would decide
 * while a task is in flight, which that task then finishes). */
START_TEST(a_worker_over_its_soft_limit_at_an_answer_is_sent_no_other_task)
{
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("supervisor.workers=2", "supervisor.cgroup=off", "limits.sample_interval=1h",
                 "limits.memory_soft=40M", "limits.memory_hard=512M", "recycle.max_concurrent=2",
                 "recycle.handover_headroom=1"),
        RUN_CMD(MVTEST));
    char *tasks = repeat_line("alloc 8", 40);
    int gone = 0;
    mvrun_t r;

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 40, NULL);
    for (size_t i = 0; i < r.nres; i++) {
        long long pid = jint(r.res[i], "pid"), over = 0;
        const char *last_end = "";
        for (size_t j = 0; j < r.nres; j++) {
            if (jint(r.res[j], "pid") != pid)
                continue;
            if (strcmp(jstr(r.res[j], "ended"), last_end) > 0)
                last_end = jstr(r.res[j], "ended");
            over += jint(r.res[j], "mem_after") >= 40LL << 20;
        }
        /* The one task over the limit is its last: none was started after it. */
        ck_assert_msg(over <= 1, "pid %lld ran %lld tasks over the soft limit", pid, over);
        if (jint(r.res[i], "mem_after") >= 40LL << 20) {
            ck_assert_msg(strcmp(jstr(r.res[i], "ended"), last_end) == 0,
                          "pid %lld ran a task after the one over its limit", pid);
            gone++;
        }
    }
    ck_assert_int_ge(gone, 2); /* it did recycle, more than once */
    ck_assert_int_ge(run_count(&r, "reason=soft_limit"), 2);
    free(tasks);
    run_free(&r);
}
END_TEST

Suite *recycle_suite(void)
{
    Suite *s = suite_create("recycle");
    TCase *tc = tcase_create("spares");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_spare_takes_the_slot_at_the_recycle);
    tcase_add_test(tc, a_spare_that_dies_while_waiting_is_replaced_and_no_crash);
    tcase_add_test(tc, a_none_spare_takes_the_slot_of_a_service);
    tcase_add_test(tc, a_reload_replaces_the_spares);
    tcase_add_test(tc, spares_out_of_range_is_a_config_error);
    tcase_add_test(tc, escalation_workers_take_no_spare_and_no_cgroup_made_ahead);
    tcase_add_test(tc, cgahead_holds_only_the_generation_asked);
    suite_add_tcase(s, tc);
    tc = tcase_create("kids");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, the_largest_child_is_picked_unless_the_master_holds_more);
    tcase_add_test(tc, children_are_listed_weighed_and_stopped);
    tcase_add_test(tc, a_worker_without_children_is_recycled_whole);
    tcase_add_test(tc, a_worker_that_is_no_master_is_named);
    tcase_add_test(tc, a_child_that_ignores_its_signal_is_killed);
    tcase_add_test(tc, each_child_signal_is_the_one_the_child_gets);
    tcase_add_test(tc, target_child_needs_protocol_none);
    suite_add_tcase(s, tc);

    tc = tcase_create("surge");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lines_replacement_starts_before_the_old_worker_exits);
    tcase_add_test(tc, a_cgroup_made_ahead_starts_the_replacement_at_once);
    tcase_add_test(tc, lines_answers_pair_with_tasks_at_prefetch_64);
    tcase_add_test(tc, gathered_answers_pair_and_chain);
    tcase_add_test(tc, a_worker_over_its_soft_limit_at_an_answer_is_sent_no_other_task);
    suite_add_tcase(s, tc);
    return s;
}
