/*
 * results are sacred: a second memvisor is refused before it touches a running batch's
 * results or state directory (flocks, runlock.c); a full disk stalls the writer, keeps the
 * results of running tasks in memory while it retries, and never leaves a torn line; a
 * writer that gives up leaves whole lines that --resume completes.
 *
 * The full-disk tests mount a 64 KiB tmpfs (root only; skipped with a message otherwise).
 */
#include <check.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "results.h"
#include "rundir.h"
#include "runlock.h"
#include "suites.h"

static void nap_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* ---- locks ---- */

START_TEST(proc_locks_parser_finds_the_holder)
{
    static const char text[] = "1: POSIX  ADVISORY  WRITE 77 00:20:54980 0 EOF\n"
                               "2: FLOCK  ADVISORY  WRITE 20981 00:20:54981 0 EOF\n"
                               "2: -> FLOCK  ADVISORY  WRITE 20999 00:20:54981 0 EOF\n"
                               "3: FLOCK  ADVISORY  WRITE 4242 fd:01:54980 0 EOF\n"
                               "4: OFDLCK ADVISORY  READ  -1 00:20:7 0 EOF\n"
                               "5: FLOCK  ADVISORY  WRITE 0 00:20:8 0 EOF\n";

    ck_assert_int_eq(mv_lock_parse_holder(text, 0, 0x20, 54981), 20981);
    ck_assert_int_eq(mv_lock_parse_holder(text, 0xfd, 1, 54980), 4242);
    ck_assert_int_eq(mv_lock_parse_holder(text, 0, 0x20, 54980), 0); /* POSIX, not flock */
    ck_assert_int_eq(mv_lock_parse_holder(text, 0, 0x20, 7), 0);
    ck_assert_int_eq(mv_lock_parse_holder(text, 0, 0x20, 8), 0); /* another pid namespace */
    ck_assert_int_eq(mv_lock_parse_holder(text, 0, 0x20, 1), 0);
    ck_assert_int_eq(mv_lock_parse_holder("", 0, 0, 1), 0);
    ck_assert_int_eq(mv_lock_parse_holder("garbage\n\n1:\n", 0, 0, 1), 0);
}
END_TEST

START_TEST(results_check_refuses_what_it_must)
{
    char dir[] = "/tmp/mv-results-XXXXXX", path[64], why[1024], me[32];
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    snprintf(me, sizeof me, "pid %d", (int)getpid());
    ck_assert_int_eq(mv_results_check(path, false, why, sizeof why), 0); /* missing: fine */
    ck_assert_int_eq(mv_results_check("", true, why, sizeof why), 0);    /* none */
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(mv_results_check(path, false, why, sizeof why), 0); /* empty: fine */
    ck_assert_int_eq(write(fd, "x\n", 2), 2);
    ck_assert_int_eq(mv_results_check(path, false, why, sizeof why), -EEXIST);
    ck_assert_ptr_nonnull(strstr(why, "--resume"));
    ck_assert_int_eq(mv_results_check(path, true, why, sizeof why), 0);
    /* Held by another open file (this process, as another run would): refused, naming it. */
    ck_assert_int_eq(mv_lock_try(fd), 0);
    ck_assert_int_eq(mv_results_check(path, true, why, sizeof why), -EBUSY);
    ck_assert_msg(strstr(why, me) && strstr(why, path), "%s", why);
    ck_assert_int_eq(mv_lock_holder(fd), getpid());
    close(fd);
    ck_assert_int_eq(mv_results_check(path, true, why, sizeof why), 0);
    ck_assert_int_eq(mv_results_check(dir, true, why, sizeof why), -EINVAL);
    ck_assert_int_eq(mv_results_check(dir, false, why, sizeof why), 0);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Forks a locker of `path`: it takes the lock, forks a child that shares the open file (as a
 * worker memvisor forked before its exec does) and exits at once. The child lets go after
 * 300 ms (go NULL), or once a byte comes on the pipe `go` (its read end; the write end is
 * closed in the child, so the caller's end is the last) and it has spun `spin` rounds. The
 * locker's pid (the caller reaps it). */
static pid_t fork_locker(const char *path, const int *go, int spin)
{
    pid_t a = fork();
    int fd;
    char c;

    ck_assert_int_ge(a, 0);
    if (a > 0)
        return a;
    fd = open(path, O_RDONLY);
    if (fd < 0 || flock(fd, LOCK_EX) < 0)
        _exit(1);
    if (fork() == 0) {
        if (!go) {
            nap_ms(300);
            _exit(0);
        }
        close(go[1]);
        if (read(go[0], &c, 1) != 1) /* go */
            _exit(1);
        for (volatile int i = 0; i < spin; i++)
            ;
        _exit(0);
    }
    _exit(0);
}

/* A lock that outlives its locker for a moment (memvisor SIGKILLed just after a fork: the
 * child shares the open file until its exec closes it) is waited for, not taken for a live
 * run: a rerun right after a crash is not refused. */
START_TEST(a_lock_left_by_a_dead_lockers_child_is_waited_for)
{
    char dir[] = "/tmp/mv-results-XXXXXX", path[64], why[1024];
    pid_t a;
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    close(fd);
    a = fork_locker(path, NULL, 0);
    /* The locker has exited but is not reaped while memvisor looks: a zombie (as a SIGKILLed
     * memvisor is until its parent reaps it), whose pid no other process can take meanwhile. */
    ck_assert_int_eq(waitid(P_PID, (id_t)a, &(siginfo_t){0}, WEXITED | WNOWAIT), 0);
    ck_assert_int_eq(mv_results_check(path, true, why, sizeof why), 0);
    ck_assert_int_eq(waitpid(a, NULL, 0), a);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* The same when that child lets go while memvisor looks at /proc/locks for the holder (it
 * execs a moment later): the lock is free, and a rerun right after a SIGKILL must take it.
 * Once read as "no holder named: a live run of another pid namespace" and refused (the
 * SIGKILL-and-resume test, once in a while). The child lets go at a different moment in each
 * round, around the first look (measured: the refusal came about once in 40 rounds before). */
START_TEST(a_lock_let_go_while_its_holder_is_looked_up_is_taken)
{
    char dir[] = "/tmp/mv-results-XXXXXX", path[64];
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    close(fd);
    for (int round = 0; round < 300; round++) {
        int p[2];
        pid_t a;

        ck_assert_int_eq(pipe(p), 0);
        a = fork_locker(path, p, (round % 30) * 2000);
        close(p[0]);
        ck_assert_int_eq(waitpid(a, NULL, 0), a);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(p[1], "g", 1), 1);
        close(p[1]);
        ck_assert_msg(mv_lock_take(fd, MV_LOCK_GRACE_MS, false) == 0, "round %d: refused", round);
        close(fd);
        /* the child: gone once the lock was free (reparented, not ours to reap) */
    }
    unlink(path);
    rmdir(dir);
}
END_TEST

/* In a fresh pid namespace with its own /proc: a dead locker's child holding `path` (the
 * locker reaped), and `held`, which the test holds from outside. Exit 0 when all is as said
 * in the test; 77 when no namespace can be made here; else the number of the check. */
static int locks_in_a_pid_namespace(const char *path, const char *held)
{
    pid_t init, a;
    int st, fd;

    if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0)
        return 77;
    init = fork();
    if (init < 0)
        return 1;
    if (init == 0) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("proc", "/proc", "proc", 0, NULL) < 0)
            _exit(77);
        a = fork();
        if (a == 0) { /* the locker: locks, forks a child that keeps the file 300 ms, dies */
            fd = open(path, O_RDONLY);
            if (fd < 0 || flock(fd, LOCK_EX) < 0)
                _exit(1);
            if (fork() == 0) {
                nap_ms(300);
                _exit(0);
            }
            _exit(0);
        }
        if (a < 0 || waitpid(a, &st, 0) != a || st != 0) /* reaped: its pid is free */
            _exit(2);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (mv_lock_holder(fd) != 0)
            _exit(3); /* the kernel does not name it here */
        if (mv_lock_take(fd, MV_LOCK_GRACE_MS, false) != -EWOULDBLOCK)
            _exit(4); /* a scan: taken for a live run at once */
        if (mv_lock_take(fd, MV_LOCK_GRACE_MS, true) != 0)
            _exit(5); /* a claim: waited for, then taken */
        close(fd);
        fd = open(held, O_RDONLY | O_CLOEXEC);
        if (mv_lock_holder(fd) != 0 || mv_lock_take(fd, 200, true) != -EWOULDBLOCK)
            _exit(6); /* a live holder outside: unseen, and refused after the wait */
        _exit(0);
    }
    return waitpid(init, &st, 0) == init && WIFEXITED(st) ? WEXITSTATUS(st) : 7;
}

/* In a container (a pid namespace with its own /proc), the pid of a SIGKILLed memvisor is
 * freed once its parent reaps it, and /proc/locks then lists its lock no more (kernel 6.1
 * fs/locks.c: a lock whose owner pid is 0 here is not shown) while a child it forked just
 * before dying still holds it: a resume at once was refused, "in use by another memvisor run:
 * a process in another pid namespace". A claim (the results file, the run directory) waits
 * for such a holder as for a dead locker's; a scan of other runs' directories does not. */
START_TEST(in_a_pid_namespace_a_claim_waits_for_an_unseen_holder)
{
    char dir[] = "/tmp/mv-results-XXXXXX", path[64], held[64];
    int fd, hfd, st;
    pid_t c;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    snprintf(held, sizeof held, "%s/held.jsonl", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    close(fd);
    hfd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ck_assert_int_eq(mv_lock_try(hfd), 0);
    c = fork();
    ck_assert_int_ge(c, 0);
    if (c == 0)
        _exit(locks_in_a_pid_namespace(path, held));
    ck_assert_int_eq(waitpid(c, &st, 0), c);
    ck_assert(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        fprintf(stderr, "skipped: no pid and mount namespace can be made here\n");
    else
        ck_assert_msg(WEXITSTATUS(st) == 0, "check %d failed", WEXITSTATUS(st));
    close(hfd);
    unlink(held);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Waits until `path` has at least n lines. */
static void wait_lines(const char *path, size_t n)
{
    for (int i = 0; i < 2000 && file_lines(path) < n; i++)
        nap_ms(10);
    ck_assert_uint_ge(file_lines(path), n);
}

/* Review drill 7d: a second memvisor on a running batch's results file or state directory is
 * refused before it writes anything; the running batch's results all survive. */
/* The run directories in a state directory. */
static int count_runs(const char *state)
{
    DIR *d = opendir(state);
    struct dirent *de;
    pid_t pid;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += mv_rundir_name(de->d_name, &pid);
    closedir(d);
    return n;
}

/* A runs until the test lets it end: its one worker holds the task in the middle (hold 0,
 * released by SIGUSR1) while the second runs are tried. Before, A's 400 tasks of 3 ms ended
 * on their own; under ASan at load 14-25 they ended while the refused runs were still being
 * tried, and a run on the results file A had let go was refused for its results instead
 * (exit 2, "already holds N bytes", where 3 names the running holder). */
START_TEST(a_refused_second_run_leaves_the_running_batch_intact)
{
    enum { HALF = 20, N = 2 * HALF + 1 };
    char state[128], opt_state[160], *oks = repeat_line("ok", HALF), *tasks, *line;
    const char *a_args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    mvrun_t a, b;
    pid_t holder, held;
    size_t before;

    ck_assert_int_gt(asprintf(&tasks, "%shold 0\n%s", oks, oks), 0);
    free(oks);
    run_init(&a, tasks);
    run_start(&a, a_args, NULL);
    snprintf(state, sizeof state, "%s/state", a.dir);
    snprintf(opt_state, sizeof opt_state, "supervisor.state_dir=%s", state);
    line = run_wait_for(&a, "held pid=");
    held = (pid_t)atoi(strstr(line, "held pid=") + 9);
    free(line);
    wait_lines(a.results, HALF); /* the tasks before the held one, written meanwhile */
    ck_assert_int_eq(mv_rundir_running(state, &holder), 1);
    ck_assert_int_eq(holder, a.pid);
    {
        /* Same results file: refused at once, naming the file and the running memvisor. */
        const char *same_results[] = {"run", "--results", a.results, "--", MVTEST, NULL};
        const char *resume_it[] = {"run", "--resume", "--results", a.results, "--", MVTEST, NULL};
        const char *no_socket[] = {
            "run", "-o", "control.socket=none", "--results", a.results, "--", MVTEST, NULL};
        /* Same state directory, own results, but the control socket A answers on: refused
         * before touching `latest`. */
        const char *same_state[] = {"run", "-o", opt_state, "--", MVTEST, NULL};
        const char *const *cases[] = {same_results, resume_it, no_socket, same_state};
        char pid_text[32];

        snprintf(pid_text, sizeof pid_text, "pid %d", (int)a.pid);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            before = file_lines(a.results);
            run_init(&b, "ok 1\n");
            run_start(&b, cases[i], NULL);
            ck_assert_int_eq(run_finish(&b), 3);
            ck_assert_log(&b, strstr(b.log, "in use by") && strstr(b.log, pid_text),
                          "case %zu: not \"in use by\" %s", i, pid_text);
            ck_assert_ptr_nonnull(strstr(b.log, i < 3 ? a.results : state));
            ck_assert_int_eq(run_count(&b, "event=spawn"), 0);
            ck_assert_int_eq(run_count(&b, "event=start"), 0); /* no run directory made */
            ck_assert_uint_eq(b.nres, 0);
            ck_assert_uint_ge(file_lines(a.results), before);
            run_free(&b);
        }
    }
    {
        /* Same state directory with its own results and no control socket: it runs beside A,
         * in a run directory of its own, and its pruning (keep_runs = 1) spares A's, whose
         * lock A holds. */
        mvargs_t beside_av;
        const char *const *beside = run_argv(
            &beside_av, RUN_OPTS(opt_state, "control.socket=none", "supervisor.keep_runs=1"),
            RUN_CMD(MVTEST));
        run_init(&b, "ok 1\n");
        run_start(&b, beside, NULL);
        ck_assert_int_eq(run_finish(&b), 0);
        ck_assert_uint_eq(b.nres, 1);
        ck_assert_int_eq(count_runs(state), 2);
        run_free(&b);
    }
    ck_assert_int_eq(kill(held, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&a), 0);
    run_assert_once(&a, N, NULL);
    ck_assert_int_eq(mv_rundir_running(state, &holder), 0); /* A ended: its lock is free */
    free(tasks);
    run_free(&a);
}
END_TEST

/* ---- a full disk ---- */

/* Mounts a tmpfs of `size` at <dir>/small and points the run's results there. false (with a
 * message) when this cannot be done here (not root, no mount namespaces). */
static bool small_disk(mvrun_t *r, const char *size, char *mnt, size_t n)
{
    char opts[32];

    if (geteuid() != 0) {
        fprintf(stderr, "check_results: skipped a full-disk test: needs root to mount a tmpfs\n");
        return false;
    }
    snprintf(mnt, n, "%s/small", r->dir);
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    snprintf(opts, sizeof opts, "size=%s", size);
    /* In a mount namespace of this test's own (Check forks each test): the tmpfs goes away
     * with the test even when an assertion ends it early. memvisor inherits it. */
    if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
        fprintf(stderr, "check_results: skipped a full-disk test: unshare/mount tmpfs: %s\n",
                strerror(errno));
        return false;
    }
    snprintf(r->results, sizeof r->results, "%s/results.jsonl", mnt);
    return true;
}

static void resize(const char *mnt, const char *size)
{
    char opts[32];

    snprintf(opts, sizeof opts, "size=%s", size);
    ck_assert_int_eq(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, opts), 0);
}

/* ENOSPC that does not end: the writer retries for results_retry, then the run ends with
 * exit 3 and a message; the file holds only whole lines (before: a torn last line). Once
 * there is room, --resume finishes the batch, every task exactly once. */
START_TEST(a_full_disk_leaves_whole_lines_and_resume_finishes)
{
    enum { N = 600 };
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", "tasks.results_retry=1s"), RUN_CMD(MVTEST));
    const char *again[] = {"run", "--resume", "-o", "supervisor.workers=2", "--", MVTEST, NULL};
    char *tasks = repeat_line("ok", N), mnt[128], *text;
    struct stat st;
    mvrun_t r;

    run_init(&r, tasks);
    if (!small_disk(&r, "64k", mnt, sizeof mnt))
        goto out;
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 3); /* every line parsed and ends with a newline */
    ck_assert_int_eq(run_count(&r, "event=results_write_stalled"), 1);
    ck_assert_int_eq(run_count(&r, "event=results_write_failed"), 1);
    ck_assert_int_eq(run_count(&r, "event=results_incomplete"), 1);
    ck_assert_ptr_nonnull(strstr(r.log, "no space left on device"));
    ck_assert_ptr_nonnull(strstr(r.log, "run again with --resume"));
    run_assert_at_most_once(&r, N);
    ck_assert_uint_gt(r.nres, 10);
    ck_assert_uint_lt(r.nres, N);
    ck_assert_int_eq(stat(r.results, &st), 0);
    text = read_text(r.results);
    ck_assert_int_eq(text[st.st_size - 1], '\n');
    free(text);

    resize(mnt, "4m");
    run_again(&r);
    run_start(&r, again, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, N, NULL);
out:
    umount2(mnt, MNT_DETACH);
    free(tasks);
    run_free(&r);
}
END_TEST

/* ENOSPC that ends: dispatch waits, the results of the tasks that were running wait in
 * memory, and once there is room they are written; the batch ends with exit 0, every task
 * exactly once. */
START_TEST(a_full_disk_that_recovers_loses_nothing)
{
    enum { N = 600 };
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=2", "tasks.results_retry=30s"), RUN_CMD(MVTEST));
    char *tasks = repeat_line("ok", N), mnt[128], *line;
    mvrun_t r;

    run_init(&r, tasks);
    if (!small_disk(&r, "64k", mnt, sizeof mnt))
        goto out;
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=results_write_stalled");
    ck_assert_ptr_nonnull(strstr(line, "no space left on device"));
    free(line);
    resize(mnt, "4m");
    free(run_wait_for(&r, "event=results_write_recovered"));
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, N, NULL);
    ck_assert_int_eq(run_count(&r, "event=results_write_failed"), 0);
out:
    umount2(mnt, MNT_DETACH);
    free(tasks);
    run_free(&r);
}
END_TEST

/* results_retry = 0: a write error ends the run at once (exit 3), loudly. */
/* The results file removed under a running memvisor: its lines would go to a file no one can
 * open. The run stops at the next write, exit 3, naming the error. */
START_TEST(a_results_file_removed_mid_run_stops_the_run)
{
    enum { N = 200 };
    char *tasks = repeat_line("sleep 5", N);
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    mvrun_t r;

    run_init(&r, tasks);
    run_start(&r, args, NULL);
    wait_lines(r.results, 1);
    ck_assert_int_eq(unlink(r.results), 0);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_int_eq(run_count(&r, "event=results_write_failed"), 1);
    ck_assert_int_eq(run_count(&r, "the results file was removed"), 1);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "WRITING FAILED"));
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "not run")); /* it stopped early */
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(no_retry_gives_up_at_once)
{
    const char *args[] = {"run",  "-o", "tasks.results_retry=0", "--results", "/dev/full", "--",
                          MVTEST, NULL};
    mvrun_t r;

    run_init(&r, "ok a\nok b\n");
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_int_eq(run_count(&r, "event=results_write_stalled"), 0);
    ck_assert_int_eq(run_count(&r, "event=results_write_failed"), 1);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "WRITING FAILED"));
    run_free(&r);
}
END_TEST

Suite *results_suite(void)
{
    Suite *s = suite_create("results");
    TCase *tc = tcase_create("locks");
    TCase *disk = tcase_create("disk");

    tcase_add_test(tc, proc_locks_parser_finds_the_holder);
    tcase_add_test(tc, results_check_refuses_what_it_must);
    tcase_add_test(tc, a_lock_left_by_a_dead_lockers_child_is_waited_for);
    tcase_add_test(tc, a_lock_let_go_while_its_holder_is_looked_up_is_taken);
    tcase_add_test(tc, in_a_pid_namespace_a_claim_waits_for_an_unseen_holder);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_refused_second_run_leaves_the_running_batch_intact);
    suite_add_tcase(s, tc);
    tcase_set_timeout(disk, 60);
    tcase_add_test(disk, a_full_disk_leaves_whole_lines_and_resume_finishes);
    tcase_add_test(disk, a_full_disk_that_recovers_loses_nothing);
    tcase_add_test(disk, no_retry_gives_up_at_once);
    tcase_add_test(disk, a_results_file_removed_mid_run_stops_the_run);
    suite_add_tcase(s, disk);
    return s;
}
