/*
 * orphans: workers never outlive their supervisor, and a dead run's cgroups are cleaned by
 * the next one, decided by locks, never by pids.
 *
 *  - memvisor SIGKILLed with busy `api` workers, busy `lines` workers and `none` workers
 *    (`sleep 1000`): every worker is gone within moments (PR_SET_PDEATHSIG, set by the exec
 *    shim); a worker's own child, which no parent-death signal reaches, is left in the dead
 *    run's cgroup, and the next memvisor kills it and removes the cgroups (stale_run_removed).
 *  - A run directory whose lock is held is alive, whatever its pid says; one whose lock is
 *    free is dead, even if its pid names a live process (pid namespaces, pid reuse).
 *  - A memvisor in another pid namespace whose pid is taken by a live run's directory name
 *    uses its own name (memvisor-<pid>-<k>) and leaves the live one alone.
 * The cgroup parts need a writable memory cgroup (root here); they are skipped, with a
 * message, without one.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "runlock.h"
#include "suites.h"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* Dead: no such process, or a zombie waiting for whoever reaps orphans here. */
static bool gone(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return true;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'Z';
}

/* The first line of /proc/PID/FILE (comm, wchan), or "" when it cannot be read. */
static void proc_text(pid_t pid, const char *file, char *out, size_t n)
{
    char path[64];
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    out[0] = '\0';
    f = fopen(path, "r");
    if (f && fgets(out, (int)n, f))
        out[strcspn(out, "\n")] = '\0';
    if (f)
        fclose(f);
}

/* Waits (bounded) until /proc/PID/FILE contains `what`: the worker is where the test wants
 * it (in its task, or exec'd into its program). */
static void wait_proc(pid_t pid, const char *file, const char *what)
{
    char text[128] = "";

    for (int i = 0; i < 1000; i++) {
        proc_text(pid, file, text, sizeof text);
        if (strstr(text, what))
            return;
        if (strcmp(file, "wchan") == 0 && (!*text || strcmp(text, "0") == 0) && i > 100)
            return; /* a kernel that hides wchan: go on, busy or not */
        nap_ms(10);
    }
    ck_abort_msg("pid %d: /proc/%s is \"%s\", not \"%s\"", (int)pid, file, text, what);
}

/* The value of `key=` in a log line (up to a space or a quote), into out. */
static void field(const char *line, const char *key, char *out, size_t n)
{
    const char *p = strstr(line, key);
    size_t k = 0;

    ck_assert_msg(p != NULL, "no %s in %s", key, line);
    for (p += strlen(key); *p && *p != ' ' && *p != '"' && k < n - 1; p++)
        out[k++] = *p;
    out[k] = '\0';
}

/* Worker pids from the next `n` spawn events; with cgroups, each one's cgroup too. */
static void spawned(mvrun_t *r, int n, pid_t *pids, char (*cg)[512])
{
    char text[512];

    for (int i = 0; i < n; i++) {
        char *line = run_wait_for(r, "event=spawn ");
        field(line, " pid=", text, sizeof text);
        pids[i] = (pid_t)atoi(text);
        if (cg)
            field(line, " cgroup=", cg[i], sizeof cg[i]);
        free(line);
    }
}

/* The run's cgroup run directory from its start event; "" without cgroups. */
static void run_cgroup(mvrun_t *r, char *out, size_t n)
{
    char *line = run_wait_for(r, "event=start ");
    const char *p = strstr(line, "memory=\"cgroup v");

    out[0] = '\0';
    if (p) {
        p += strlen("memory=\"cgroup v1 ");
        snprintf(out, n, "%.*s", (int)strcspn(p, "\""), p);
    }
    free(line);
}

/* The cgroup base memvisor uses here (dirname of a run directory), or "" without cgroups. */
static void cgroup_base(char *out, size_t n)
{
    const char *args[] = {"run", "--", MVTEST, NULL};
    char dir[512];
    mvrun_t r;

    run_init(&r, "ok\n");
    run_start(&r, args, NULL);
    run_cgroup(&r, dir, sizeof dir);
    ck_assert_int_eq(run_finish(&r), 0);
    run_free(&r);
    snprintf(out, n, "%s", *dir ? dirname(dir) : "");
}

/* A parent cgroup of the test's own (`priv`, under the base) and the option that gives it to
 * memvisor (`opt`): a memvisor looks for dead runs under its parent, and any other memvisor
 * that starts on the host meanwhile, under the base, would clean up the test's dead runs
 * before its next run could ("not cleaned" or its grandchild gone already: 9 runs in 10 with
 * memvisors starting one after another beside it). Without cgroups, "" and an empty parent
 * (memvisor's own cgroup). */
static void private_parent(const char *name, char *priv, size_t npriv, char *opt, size_t nopt)
{
    const char *mount = "/sys/fs/cgroup";
    char base[512];

    cgroup_base(base, sizeof base);
    priv[0] = '\0';
    if (*base) {
        snprintf(priv, npriv, "%s/mv-orphans-%s-%d", base, name, (int)getpid());
        ck_assert_int_eq(mkdir(priv, 0755), 0);
        if (!strncmp(base, "/sys/fs/cgroup/memory", strlen("/sys/fs/cgroup/memory")))
            mount = "/sys/fs/cgroup/memory";
    }
    snprintf(opt, nopt, "supervisor.cgroup_parent=%s", *priv ? priv + strlen(mount) : "");
}

/* SIGKILL of memvisor: its busy api and lines workers and its none workers die at once. A
 * worker's own child survives them, in the dead run's cgroup; the next memvisor kills it
 * and removes every cgroup of the dead runs. */
START_TEST(workers_die_with_a_sigkilled_memvisor_and_the_next_run_cleans_up)
{
    char priv[600], opt[660]; /* filled before the first run (private_parent) */
    const char *api[] = {"run", "-o", "supervisor.workers=2", "-o", opt, "--", LEAKY, "--sleep",
                         "60s", NULL};
    mvargs_t lines_av;
    const char *const *lines =
        run_argv(&lines_av, RUN_OPTS("supervisor.workers=2", "worker.protocol=lines", opt),
                 RUN_CMD("/bin/sh", "-c", "read l; exec sleep 1000"));
    mvargs_t none_av;
    const char *const *none =
        run_argv(&none_av, RUN_OPTS("supervisor.workers=2", "worker.protocol=none", opt),
                 RUN_CMD("/bin/sleep", "1000"));
    mvargs_t child_av;
    const char *const *child =
        run_argv(&child_av, RUN_OPTS("supervisor.workers=1", "worker.protocol=none", opt),
                 RUN_CMD("/bin/sh", "-c", "sleep 1001 & exec sleep 1002"));
    const char *next[] = {"run", "-o", opt, "--", MVTEST, NULL};
    mvrun_t r[4], after;
    pid_t w[7], grandchild = 0;
    char cg[7][512], rundir[4][512], procs[600], text[256], want[2100];
    double t0, waited;
    bool all;

    private_parent("kill", priv, sizeof priv, opt, sizeof opt);
    run_init(&r[0], "x\nx\nx\n");
    run_start(&r[0], api, NULL);
    run_init(&r[1], "x\nx\nx\n");
    run_start(&r[1], lines, NULL);
    run_init(&r[2], NULL);
    r[2].service = true;
    run_start(&r[2], none, NULL);
    run_init(&r[3], NULL);
    r[3].service = true;
    run_start(&r[3], child, NULL);
    for (int i = 0; i < 4; i++)
        run_cgroup(&r[i], rundir[i], sizeof rundir[i]);
    spawned(&r[0], 2, w, cg);
    spawned(&r[1], 2, w + 2, cg + 2);
    spawned(&r[2], 2, w + 4, cg + 4);
    spawned(&r[3], 1, w + 6, cg + 6);
    /* Busy: api workers asleep in their task, lines workers exec'd into it, none running. */
    for (int i = 0; i < 2; i++)
        wait_proc(w[i], "wchan", "nanosleep");
    for (int i = 2; i < 7; i++)
        wait_proc(w[i], "comm", "sleep");
    if (*rundir[3]) {
        /* The worker's own child, in its cgroup with it. */
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg[6]);
        for (int i = 0; i < 500 && !grandchild; i++) {
            /* (a cgroup file's size reads as 0: read it, do not stat it) */
            int fd = open(procs, O_RDONLY);
            ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
            if (fd >= 0)
                close(fd);
            text[n > 0 ? n : 0] = '\0';
            for (char *p = text; *p; p = strchr(p, '\n'), p = p ? p + 1 : text + n)
                if (atoi(p) > 0 && atoi(p) != w[6])
                    grandchild = atoi(p);
            if (!grandchild)
                nap_ms(10);
        }
        ck_assert_int_gt(grandchild, 0);
    }

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(kill(r[i].pid, SIGKILL), 0);
    t0 = now_s();
    do {
        all = true;
        for (int i = 0; i < 7; i++)
            all &= gone(w[i]);
        if (!all)
            nap_ms(5);
    } while (!all && now_s() - t0 < 10);
    waited = now_s() - t0;
    for (int i = 0; i < 7; i++)
        ck_assert_msg(gone(w[i]), "worker %d (pid %d) outlived its memvisor", i, (int)w[i]);
    fprintf(stderr, "check_orphans: 7 workers of 4 SIGKILLed memvisors gone in %.0f ms\n",
            waited * 1000);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(run_finish(&r[i]), 128 + SIGKILL);
        run_free(&r[i]);
    }
    if (!*rundir[0]) {
        fprintf(stderr, "check_orphans: no cgroups here: skipped the cleanup part\n");
        return;
    }
    ck_assert(!gone(grandchild)); /* no parent-death signal reaches it: the cgroup must */

    ck_assert_int_eq(run_batch(&after, "ok\n", next), 0);
    for (int i = 0; i < 4; i++) {
        char *line;
        snprintf(want, sizeof want, "cgroup=%s ", rundir[i]);
        ck_assert_msg(strstr(after.log, want), "%s not cleaned", rundir[i]);
        ck_assert_int_ne(access(rundir[i], F_OK), 0);
        line = strstr(after.log, want);
        ck_assert_ptr_nonnull(strstr(line, i == 3 ? " killed=1 " : " killed=0 "));
    }
    snprintf(want, sizeof want, "pids=%d ", (int)grandchild);
    ck_assert_ptr_nonnull(strstr(after.log, want));
    for (int i = 0; i < 500 && !gone(grandchild); i++)
        nap_ms(10);
    ck_assert(gone(grandchild));
    run_free(&after);
    ck_assert_int_eq(rmdir(priv), 0); /* the runs removed what they made */
}
END_TEST

/* A dead run's template cgroup (t.<gen>, beside the workers' w<slot>.<gen>) goes with the rest
 * of its run directory when the next run cleans up. */
START_TEST(a_sigkilled_runs_template_cgroup_is_removed_by_the_next_run)
{
    mvargs_t av;
    char priv[600], opt[660]; /* filled before the first run (private_parent) */
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "worker.template=yes", opt), RUN_CMD(MVTEST));
    const char *next[] = {"run", "-o", opt, "--", MVTEST, NULL};
    char rundir[512], tcg[600], *line;
    mvrun_t r, after;

    private_parent("template", priv, sizeof priv, opt, sizeof opt);
    run_init(&r, "sleep 60000\n");
    run_start(&r, args, NULL);
    run_cgroup(&r, rundir, sizeof rundir);
    free(run_wait_for(&r, "event=template_ready"));
    line = run_wait_for(&r, "event=spawn ");
    free(line);
    ck_assert_int_eq(kill(r.pid, SIGKILL), 0);
    ck_assert_int_eq(run_finish(&r), 128 + SIGKILL);
    run_free(&r);
    if (!*rundir) {
        fprintf(stderr, "check_orphans: no cgroups here: skipped the template cleanup\n");
        return;
    }
    snprintf(tcg, sizeof tcg, "%s/t.1", rundir);
    ck_assert_msg(access(tcg, F_OK) == 0, "%s: not left by the dead run", tcg);
    ck_assert_int_eq(run_batch(&after, "ok\n", next), 0);
    ck_assert_msg(access(rundir, F_OK) != 0, "%s not cleaned", rundir);
    ck_assert_int_eq(run_count(&after, "cgroup_stale"), 0);
    run_free(&after);
    ck_assert_int_eq(rmdir(priv), 0);
}
END_TEST

/* A pid that names no process now. */
static pid_t dead_pid(void)
{
    pid_t p = fork();

    if (p == 0)
        _exit(0);
    ck_assert_int_gt(p, 0);
    waitpid(p, NULL, 0);
    return p;
}

/* "Dead" is "its lock is free": a locked run directory named after a pid that is gone (a
 * run of another pid namespace) is left alone; an unlocked one named after a live pid is
 * removed. Before locks, both decisions went the other way. */
START_TEST(a_run_is_dead_when_its_lock_is_free_not_when_its_pid_is_gone)
{
    char priv[600], opt[660], live[700], dead[700], sub[740], want[800];
    const char *args[] = {"run", "-o", opt, "--", MVTEST, NULL};
    mvrun_t r;
    int fd;

    /* The runs look for dead runs under a parent of this test's own: any other memvisor on
     * the host, under the base, would clean up "live" once it is let go. */
    private_parent("lock", priv, sizeof priv, opt, sizeof opt);
    if (!*priv) {
        fprintf(stderr, "check_orphans: no cgroups here: skipped the stale-run test\n");
        return;
    }
    /* "live": named after a dead pid, but its lock is held (by this test) */
    snprintf(live, sizeof live, "%s/memvisor-%d", priv, (int)dead_pid());
    /* "dead": named after a live pid (this test), its lock free, with a worker cgroup */
    snprintf(dead, sizeof dead, "%s/memvisor-%d", priv, (int)getpid());
    snprintf(sub, sizeof sub, "%s/w1.1", dead);
    ck_assert_int_eq(mkdir(live, 0755), 0);
    ck_assert_int_eq(mkdir(dead, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    fd = mv_lock_path(live, 0);
    ck_assert_int_ge(fd, 0);

    ck_assert_int_eq(run_batch(&r, "ok\n", args), 0);
    ck_assert_int_eq(access(live, F_OK), 0);
    snprintf(want, sizeof want, "cgroup=%s ", live);
    ck_assert_ptr_null(strstr(r.log, want));
    ck_assert_int_ne(access(dead, F_OK), 0);
    snprintf(want, sizeof want, "cgroup=%s workers=1 killed=0", dead);
    ck_assert_log(&r, strstr(r.log, want), "no \"%s\" in the log", want);
    run_free(&r);

    close(fd); /* that run ends: the next start removes its directory */
    ck_assert_int_eq(run_batch(&r, "ok\n", args), 0);
    ck_assert_int_ne(access(live, F_OK), 0);
    snprintf(want, sizeof want, "cgroup=%s ", live);
    ck_assert_ptr_nonnull(strstr(r.log, want));
    run_free(&r);
    ck_assert_int_eq(rmdir(priv), 0); /* both runs removed what they made */
}
END_TEST

/* memvisor as pid 1 of a new pid namespace, where another namespace's live run holds
 * memvisor-1: it makes memvisor-1-1, runs, removes it, and never touches memvisor-1. */
START_TEST(a_pid_namespace_twin_gets_its_own_run_directory)
{
    const char *wrap[] = {"unshare", "--pid", "--fork", "--mount-proc", NULL};
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", MVTEST, NULL};
    char base[512], taken[600], mine[600], used[600];
    mvrun_t r;
    int fd;

    cgroup_base(base, sizeof base);
    if (!*base || geteuid() != 0 || system("unshare --pid --fork true 2>/dev/null") != 0) {
        fprintf(stderr, "check_orphans: skipped the pid namespace test (needs cgroups, root "
                        "and unshare)\n");
        return;
    }
    snprintf(taken, sizeof taken, "%s/memvisor-1", base);
    snprintf(mine, sizeof mine, "%s/memvisor-1-1", base);
    ck_assert_int_eq(mkdir(taken, 0755), 0);
    fd = mv_lock_path(taken, 0);
    ck_assert_int_ge(fd, 0);
    run_init(&r, "ok\nok\nok\n");
    r.wrap = wrap;
    run_start(&r, args, NULL);
    run_cgroup(&r, used, sizeof used);
    ck_assert_str_eq(used, mine);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_eq(access(taken, F_OK), 0);
    ck_assert_int_ne(access(mine, F_OK), 0); /* removed at its end */
    ck_assert_int_eq(run_count(&r, "event=stale_run_removed"), 0);
    close(fd);
    ck_assert_int_eq(rmdir(taken), 0);
    run_free(&r);
}
END_TEST

/* Runs `memvisor exec-shim - /bin/sh -c SCRIPT` as a child whose expected parent is `parent`
 * (MV_ENV_SUPERVISOR_PID); its exit code. */
static int shim(pid_t parent, const char *script)
{
    char text[24];
    pid_t p;
    int st;

    snprintf(text, sizeof text, "%d", (int)parent);
    p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) {
        setenv(MV_ENV_SUPERVISOR_PID, text, 1);
        execl(MEMVISOR, "memvisor", "exec-shim", "-", "/bin/sh", "-c", script, (char *)NULL);
        _exit(99);
    }
    ck_assert_int_eq(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The shim arms the parent-death signal, then makes sure memvisor did not die before it did:
 * a child whose parent is not the memvisor that started it runs nothing (exit 125). With its
 * parent there it runs the command, which does not see the variable. */
START_TEST(the_shim_runs_nothing_for_a_parent_that_is_gone)
{
    char dir[] = "/tmp/mv-shim-XXXXXX", script[128], mark[64], *text;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(mark, sizeof mark, "%s/ran", dir);
    snprintf(script, sizeof script, "echo ${%s-unset} > %s", MV_ENV_SUPERVISOR_PID, mark);
    ck_assert_int_eq(shim(dead_pid(), script), 125);
    ck_assert_int_ne(access(mark, F_OK), 0);
    ck_assert_int_eq(shim(getpid(), script), 0);
    text = read_text(mark);
    ck_assert_str_eq(text, "unset\n");
    free(text);
    unlink(mark);
    rmdir(dir);
}
END_TEST

Suite *orphans_suite(void)
{
    Suite *s = suite_create("orphans");
    TCase *tc = tcase_create("orphans");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, workers_die_with_a_sigkilled_memvisor_and_the_next_run_cleans_up);
    tcase_add_test(tc, a_sigkilled_runs_template_cgroup_is_removed_by_the_next_run);
    tcase_add_test(tc, a_run_is_dead_when_its_lock_is_free_not_when_its_pid_is_gone);
    tcase_add_test(tc, a_pid_namespace_twin_gets_its_own_run_directory);
    tcase_add_test(tc, the_shim_runs_nothing_for_a_parent_that_is_gone);
    suite_add_tcase(s, tc);
    return s;
}
