/*
 * ops: what an operator touches. Path resolution (paths.c), pruning old run directories
 * (rundir.c), finding a running memvisor through -c FILE from anywhere, `report` without
 * PATH, the help and the man page against the tables they document, `make install` /
 * `make uninstall` (the .pc file follows PREFIX, the installed service.ini and unit agree),
 * and the systemd unit through systemd-analyze verify when it is there.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "harness.h"
#include "paths.h"
#include "rundir.h"
#include "suites.h"

static char tmp[64];

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-ops-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

/* A path under tmp (static until the next call). */
__attribute__((format(printf, 1, 2))) static const char *at(const char *fmt, ...)
{
    static char path[512];
    char rel[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    return path;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs argv in `cwd` (NULL: here) with `env` (NAME=VALUE strings, NULL-ended, may be NULL)
 * added; its stdout and stderr in *out and *err (free them; either may be NULL to drop it).
 * Returns the exit code. MAKEFLAGS and friends are dropped: a make run from a test under
 * `make check` must not join that make's jobserver. */
static int sh(const char *cwd, const char *const *env, char **out, char **err,
              const char *const *argv)
{
    char po[PATH_MAX], pe[PATH_MAX];
    int status;
    pid_t pid;

    snprintf(po, sizeof po, "%s/.out", tmp);
    snprintf(pe, sizeof pe, "%s/.err", tmp);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fo < 0 || fe < 0 || (cwd && chdir(cwd) < 0))
            _exit(126);
        dup2(fo, STDOUT_FILENO);
        dup2(fe, STDERR_FILENO);
        unsetenv("MAKEFLAGS");
        unsetenv("MFLAGS");
        unsetenv("MAKELEVEL");
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (out)
        *out = read_text(po);
    if (err)
        *err = read_text(pe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* sh() for the memvisor binary: `memvisor ARGS...`. */
#define MV(cwd, out, err, ...) \
    sh((cwd), NULL, (out), (err), (const char *[]){MEMVISOR, __VA_ARGS__, NULL})

static bool have(const char *tool)
{
    char *out = NULL;
    int rc =
        sh(NULL, NULL, &out, NULL, (const char *[]){"sh", "-c", "command -v \"$0\"", tool, NULL});

    free(out);
    return rc == 0;
}

/* ---- paths ------------------------------------------------------------------------------ */

static const char *resolved(const char *base, const char *path)
{
    static char out[256];

    ck_assert_int_eq(mv_path_resolve(base, path, out, sizeof out), 0);
    return out;
}

START_TEST(path_resolution)
{
    char small[8];

    ck_assert_str_eq(resolved("/srv/app/conf", ".memvisor"), "/srv/app/conf/.memvisor");
    ck_assert_str_eq(resolved("/srv/app/conf", "./state/"), "/srv/app/conf/state");
    ck_assert_str_eq(resolved("/srv/app/conf", "../state"), "/srv/app/state");
    ck_assert_str_eq(resolved("/srv/app/conf", "../../../../x"), "/x");
    ck_assert_str_eq(resolved("/srv/app/conf", "a/../b"), "/srv/app/conf/a/../b");
    ck_assert_str_eq(resolved("/srv//app/", "a//b"), "/srv/app/a/b");
    ck_assert_str_eq(resolved("/", "x"), "/x");
    ck_assert_str_eq(resolved("/", ".."), "/");
    ck_assert_str_eq(resolved("/srv", "."), "/srv");
    ck_assert_str_eq(resolved(NULL, "/var/lib//mv/"), "/var/lib/mv");
    ck_assert_str_eq(resolved("/ignored", "/run/./m.sock"), "/run/m.sock");
    ck_assert_str_eq(resolved(NULL, "/"), "/");
    ck_assert_int_eq(mv_path_resolve("relative", "x", small, sizeof small), -EINVAL);
    ck_assert_int_eq(mv_path_resolve(NULL, "x", small, sizeof small), -EINVAL);
    ck_assert_int_eq(mv_path_resolve("/", "", small, sizeof small), -EINVAL);
    ck_assert_int_eq(mv_path_resolve("/srv/app", "state", small, sizeof small), -ENAMETOOLONG);
    ck_assert_int_eq(mv_path_resolve("/srv", "st", small, sizeof small), 0);
    ck_assert_str_eq(small, "/srv/st");
}
END_TEST

START_TEST(base_directories)
{
    char *base = NULL, cwd[PATH_MAX], real[PATH_MAX];

    ck_assert_ptr_nonnull(realpath(tmp, real));
    ck_assert_int_eq(mkdir(at("conf"), 0755), 0);
    put(at("conf/a.ini"), "");
    ck_assert_int_eq(symlink("conf/a.ini", at("link.ini")), 0);
    ck_assert_int_eq(mv_path_base_of(at("conf/a.ini"), &base), 0);
    ck_assert_str_eq(base, at("conf"));
    free(base);
    /* a symlinked file counts where the link is */
    ck_assert_int_eq(mv_path_base_of(at("link.ini"), &base), 0);
    ck_assert_str_eq(base, real);
    free(base);
    ck_assert_int_eq(mv_path_base_of(at("nosuch/a.ini"), &base), -ENOENT);
    ck_assert_ptr_null(base);
    ck_assert_int_eq(mv_path_base_of(NULL, &base), 0);
    ck_assert_str_eq(base, getcwd(cwd, sizeof cwd));
    free(base);
}
END_TEST

/* ---- pruning run directories ------------------------------------------------------------- */

/* A run directory with a snapshot in it. */
static void fake_run(const char *state, const char *name)
{
    char p[1024];

    snprintf(p, sizeof p, "%s/%s", state, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/%s/snapshots", state, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/%s/snapshots/0001-leak_suspect-x-w1.json", state, name);
    put(p, "{}");
    snprintf(p, sizeof p, "%s/%s/run.json", state, name);
    put(p, "{}");
}

static bool exists(const char *state, const char *name)
{
    char p[1024];
    struct stat st;

    snprintf(p, sizeof p, "%s/%s", state, name);
    return lstat(p, &st) == 0;
}

START_TEST(run_names)
{
    pid_t pid = 0;

    ck_assert(mv_rundir_name("20261121T160000Z-4242", &pid));
    ck_assert_int_eq(pid, 4242);
    ck_assert(!mv_rundir_name("20261121T160000Z-", &pid));
    ck_assert(!mv_rundir_name("20261121T160000Z-0", &pid));
    ck_assert(!mv_rundir_name("20261121T160000Z-12a", &pid));
    ck_assert(!mv_rundir_name("20261121T160000Z-99999999999", &pid));
    ck_assert(!mv_rundir_name("2026112T160000Z-1", &pid));
    ck_assert(!mv_rundir_name("20261121-160000Z-1", &pid));
    ck_assert(!mv_rundir_name("latest", &pid));
    ck_assert(!mv_rundir_name("", &pid));
}
END_TEST

/* [leak] snapshots_max: the newest snapshot files of a run stay, nothing else is touched. */
START_TEST(snapshot_trim_keeps_the_newest)
{
    static const char *const names[] = {"0001-leak_suspect-load-w1.json",
                                        "0002-hard_limit-none-w2.json",
                                        "0003-leak_cleared-a_b-w1.json",
                                        "0004-leak_suspect-load-w2.json",
                                        "0005-leak_suspect-x-w1.json",
                                        "0002-hard_limit-none-w1.json.new", /* being written */
                                        "notes.json",
                                        "0001.json", /* no snapshot's */
                                        "-1-x.json",
                                        "0003-x-w1.txt"};
    char dir[512], p[1024];

    snprintf(dir, sizeof dir, "%s/snapshots", tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        put(p, "{}");
    }
    snprintf(p, sizeof p, "%s/0005-leak_suspect-x-w1.json", dir);
    ck_assert_int_eq(mv_rundir_trim_snapshots(p, 5, 0), 0); /* no bound */
    ck_assert_int_eq(mv_rundir_trim_snapshots(p, 5, 5), 0); /* within it */
    ck_assert_int_eq(mv_rundir_trim_snapshots(p, 5, 2), 3); /* 1, 2 and 3 go */
    ck_assert(!exists(dir, names[0]) && !exists(dir, names[1]) && !exists(dir, names[2]));
    for (size_t i = 3; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(exists(dir, names[i]), "%s was removed", names[i]);
    ck_assert_int_eq(mv_rundir_trim_snapshots(p, 5, 2), 0); /* again: nothing left to do */
    snprintf(p, sizeof p, "%s/gone/0009-x-none-w1.json", tmp);
    ck_assert_int_eq(mv_rundir_trim_snapshots(p, 9, 2), -ENOENT);
}
END_TEST

START_TEST(prune_keeps_the_newest_and_the_running)
{
    char state[256], name[64], why[512] = "", outside[256];
    pid_t live;
    mv_prune_t pr;
    int lockfd, lockfile;

    snprintf(state, sizeof state, "%s/state", tmp);
    ck_assert_int_eq(mkdir(state, 0755), 0);
    /* A live pid that is not ours: a child that waits to be killed. */
    live = fork();
    ck_assert_int_ge(live, 0);
    if (live == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pause();
        _exit(0);
    }
    /* Oldest to newest; the dead ones carry a pid no kernel hands out (above pid_max). */
    fake_run(state, "20260101T000000Z-99999991");             /* dead: removed */
    fake_run(state, "20260102T000000Z-99999992");             /* dead, locked: kept */
    fake_run(state, "20260103T000000Z-99999993");             /* dead, lock file held: kept */
    snprintf(name, sizeof name, "20260104T000000Z-%d", live); /* alive: kept */
    fake_run(state, name);
    fake_run(state, "20260105T000000Z-99999995");                 /* dead: removed */
    snprintf(name, sizeof name, "20260106T000000Z-%d", getpid()); /* ours: an old one, gone */
    fake_run(state, name);
    fake_run(state, "20260107T000000Z-99999997"); /* newest two: kept */
    fake_run(state, "20260107T000000Z-199999997");
    /* Not runs: left alone, whatever their age. */
    fake_run(state, "20250101T000000Z-abc");
    fake_run(state, "mydata");
    put(at("state/20250101T000000Z-5"), "a file named like a run");
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    fake_run(tmp, "outside");
    ck_assert_int_eq(symlink(outside, at("state/20250102T000000Z-6")), 0);
    ck_assert_int_eq(symlink("20260107T000000Z-199999997", at("state/latest")), 0);

    lockfd = open(at("state/20260102T000000Z-99999992"), O_RDONLY | O_DIRECTORY);
    ck_assert_int_eq(flock(lockfd, LOCK_EX | LOCK_NB), 0);
    put(at("state/20260103T000000Z-99999993/lock"), "");
    lockfile = open(at("state/20260103T000000Z-99999993/lock"), O_RDONLY);
    ck_assert_int_eq(flock(lockfile, LOCK_EX | LOCK_NB), 0);

    ck_assert_int_eq(mv_rundir_prune(state, 2, &pr, why, sizeof why), 0);
    ck_assert_str_eq(why, "");
    ck_assert_int_eq(pr.kept, 2);
    ck_assert_int_eq(pr.running, 3);
    ck_assert_int_eq(pr.removed, 3);
    ck_assert_int_eq(pr.failed, 0);
    ck_assert(!exists(state, "20260101T000000Z-99999991"));
    ck_assert(exists(state, "20260102T000000Z-99999992"));
    ck_assert(exists(state, "20260103T000000Z-99999993"));
    snprintf(name, sizeof name, "20260104T000000Z-%d", live);
    ck_assert(exists(state, name));
    ck_assert(!exists(state, "20260105T000000Z-99999995"));
    snprintf(name, sizeof name, "20260106T000000Z-%d", getpid());
    ck_assert(!exists(state, name));
    ck_assert(exists(state, "20260107T000000Z-99999997"));
    ck_assert(exists(state, "20260107T000000Z-199999997"));
    ck_assert(exists(state, "20250101T000000Z-abc"));
    ck_assert(exists(state, "mydata"));
    ck_assert(exists(state, "20250101T000000Z-5"));
    ck_assert(exists(state, "20250102T000000Z-6"));
    ck_assert(exists(tmp, "outside/run.json")); /* never through a symlink */
    ck_assert(exists(state, "latest"));

    /* Once the locks go and the child is gone, those go too; keep 0 keeps nothing old. */
    close(lockfd);
    close(lockfile);
    kill(live, SIGKILL);
    ck_assert_int_eq(waitpid(live, NULL, 0), live);
    ck_assert_int_eq(mv_rundir_prune(state, 0, &pr, why, sizeof why), 0);
    ck_assert_int_eq(pr.removed, 5);
    ck_assert_int_eq(pr.running + pr.kept + pr.failed, 0);
    ck_assert(exists(state, "mydata"));

    /* No state directory yet: nothing to do. An unreadable one: said. */
    ck_assert_int_eq(mv_rundir_prune(at("nosuch"), 1, &pr, why, sizeof why), 0);
    put(at("file"), "");
    ck_assert_int_eq(mv_rundir_prune(at("file"), 1, &pr, why, sizeof why), -ENOTDIR);
    ck_assert_ptr_nonnull(strstr(why, "cannot read the state directory"));
}
END_TEST

/* A run holds the lock on its run directory while it lives: another run may share the state
 * directory, and pruning spares the live one and removes the ended one. */
START_TEST(a_run_locks_its_directory)
{
    char why[512] = "";
    mv_rundir_t r, r2;
    mv_prune_t pr;
    pid_t child, holder;
    int st;

    ck_assert_int_eq(mv_rundir_open(&r, at("state"), 99999990, why, sizeof why), 0);
    ck_assert_int_eq(mv_rundir_running(at("state"), &holder), 1);
    ck_assert_int_eq(holder, getpid());
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) /* another run, in another process (flock is per open file) */
        _exit(mv_rundir_open(&r2, at("state"), 99999991, why, sizeof why) == 0 ? 0 : 1);
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    /* `latest` is the child's run, which died with the child. */
    ck_assert_int_eq(mv_rundir_running(at("state"), &holder), 0);
    ck_assert_int_eq(mv_rundir_prune(at("state"), 0, &pr, why, sizeof why), 0);
    ck_assert_int_eq(pr.removed, 1);
    ck_assert_int_eq(pr.running, 1);
    mv_rundir_close(&r);
    ck_assert_int_eq(mv_rundir_prune(at("state"), 0, &pr, why, sizeof why), 0);
    ck_assert_int_eq(pr.removed, 1);
}
END_TEST

/* keep_runs through real runs: the old ones go at start, and say so. */
START_TEST(keep_runs_end_to_end)
{
    char opt[PATH_MAX + 32], *out = NULL, *err = NULL, *latest;
    int n = 0;
    DIR *d;
    struct dirent *de;

    ck_assert_int_eq(mkdir(at("state"), 0755), 0);
    for (int i = 1; i <= 4; i++) {
        char name[64];

        snprintf(name, sizeof name, "2026010%dT000000Z-9999999%d", i, i);
        fake_run(at("state"), name);
    }
    put(at("tasks.txt"), "a\nb\n");
    snprintf(opt, sizeof opt, "supervisor.state_dir=%s/state", tmp);
    ck_assert_int_eq(MV(tmp, &out, &err, "run", "-o", opt, "-o", "supervisor.keep_runs=3", "-o",
                        "worker.protocol=lines", "-o", "supervisor.workers=1", "--tasks",
                        "tasks.txt", "--", "cat"),
                     0);
    ck_assert_msg(strstr(err, "event=runs_pruned"), "%s", err);
    /* kept: this run and the two newest before it */
    ck_assert_msg(strstr(err, " removed=2 kept=3 running=0 keep_runs=3"), "%s", err);
    d = opendir(at("state"));
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += de->d_name[0] == '2';
    closedir(d);
    ck_assert_int_eq(n, 3);
    ck_assert(!exists(at("state"), "20260101T000000Z-99999991"));
    ck_assert(!exists(at("state"), "20260102T000000Z-99999992"));
    ck_assert(exists(at("state"), "20260104T000000Z-99999994"));
    /* `report` without PATH: that state directory's latest run */
    latest = realpath(at("state/latest"), NULL);
    ck_assert_ptr_nonnull(latest);
    free(out);
    free(err);
    ck_assert_int_eq(MV(tmp, &out, &err, "report", "-o", opt), 0);
    ck_assert_msg(strstr(out, strrchr(latest, '/') + 1), "%s\n%s", out, err);
    free(latest);
    free(out);
    free(err);
}
END_TEST

/* ---- finding a running memvisor through -c FILE ----------------------------------------- */

/* Reads memvisor's log (fd) until a line containing `needle`; returns the log so far. */
static char *read_until(int fd, char *log, size_t *len, const char *needle)
{
    ssize_t n;

    for (;;) {
        if (log && strstr(log, needle))
            return log;
        log = realloc(log, *len + 4097);
        ck_assert_ptr_nonnull(log);
        n = read(fd, log + *len, 4096);
        ck_assert_msg(n > 0, "memvisor's log ended before %s:\n%.*s", needle, (int)*len, log);
        *len += (size_t)n;
        log[*len] = '\0';
    }
}

START_TEST(control_commands_find_it_from_anywhere)
{
    char conf[PATH_MAX], want[PATH_MAX + 64], *log = NULL, *out = NULL, *err = NULL;
    size_t len = 0;
    int errp[2], st;
    pid_t pid;

    ck_assert_int_eq(mkdir(at("conf"), 0755), 0);
    ck_assert_int_eq(mkdir(at("elsewhere"), 0755), 0);
    /* No state_dir in the file: its default is next to the file. */
    put(at("conf/svc.ini"), "[supervisor]\nworkers = 1\n[worker]\nprotocol = none\n"
                            "command = sleep 600\n");
    snprintf(conf, sizeof conf, "%s", at("conf/svc.ini"));
    ck_assert_int_eq(pipe2(errp, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (chdir(at("elsewhere")) < 0)
            _exit(126);
        dup2(errp[1], STDERR_FILENO);
        execl(MEMVISOR, MEMVISOR, "run", "-c", "../conf/svc.ini", (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    log = read_until(errp[0], log, &len, "event=control");
    /* started from elsewhere with a relative -c: absolute paths, next to the file */
    snprintf(want, sizeof want, "state_dir=%s/.memvisor ", at("conf"));
    ck_assert_msg(strstr(log, want), "no %s in\n%s", want, log);
    snprintf(want, sizeof want, "socket=%s/.memvisor/control.sock", at("conf"));
    ck_assert_msg(strstr(log, want), "no %s in\n%s", want, log);
    snprintf(want, sizeof want, "config=%s ", conf);
    ck_assert_msg(strstr(log, want), "no %s in\n%s", want, log);

    /* status and stop from another directory, given the same file */
    ck_assert_int_eq(MV("/", &out, &err, "status", "-c", conf), 0);
    ck_assert_msg(strstr(out, "SLOT"), "%s\n%s", out, err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(at("elsewhere"), &out, &err, "status", "-c", "../conf/svc.ini", "--json"),
                     0);
    ck_assert_msg(strstr(out, "\"ok\": true"), "%s\n%s", out, err);
    free(out);
    free(err);
    /* without -c, from elsewhere: not found, and told how to find it */
    ck_assert_int_eq(MV(at("elsewhere"), &out, &err, "status"), 3);
    ck_assert_msg(strstr(err, "the same -c FILE"), "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(MV("/", &out, &err, "stop", "-c", conf), 0);
    free(out);
    free(err);
    log = read_until(errp[0], log, &len, "event=stop");
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, log);
    close(errp[0]);
    /* the run directory went where the log said */
    ck_assert(exists(at("conf/.memvisor"), "latest"));
    /* and report -c FILE finds it too */
    ck_assert_int_eq(MV("/", &out, &err, "report", "-c", conf), 0);
    ck_assert_msg(strstr(out, "memvisor report: run "), "%s\n%s", out, err);
    free(out);
    free(err);
    /* nothing there yet: said, exit 3 */
    ck_assert_int_eq(MV(at("elsewhere"), &out, &err, "report"), 3);
    ck_assert_msg(strstr(err, "no run in"), "%s", err);
    free(out);
    free(err);
    free(log);
}
END_TEST

/* A control socket path that cannot be bound (over 107 bytes, here a deep state_dir's) is a
 * mistake of the file, said by check and run with its FILE:LINE and key; run refused it only
 * at its start, "control socket path too long", naming neither. A report needs no socket. */
START_TEST(a_socket_path_too_long_is_a_configuration_error)
{
    char text[400], dir[300], ini[300], want[PATH_MAX], *out = NULL, *err = NULL;

    snprintf(dir, sizeof dir, "%s/%0100d", at("deep"), 0);
    snprintf(text, sizeof text, "[supervisor]\nstate_dir = %s\n", dir);
    snprintf(ini, sizeof ini, "%s", at("deep.ini"));
    put(ini, text);
    snprintf(want, sizeof want,
             "%s:2: [supervisor] state_dir: the control socket %s/control.sock is ", ini, dir);
    ck_assert_int_eq(MV("/", &out, &err, "check", "-c", ini), 2);
    ck_assert_msg(strstr(err, want), "no %s in\n%s", want, err);
    free(out);
    free(err);
    ck_assert_int_eq(MV("/", &out, &err, "run", "-c", ini, "--", "true"), 2);
    ck_assert_msg(strstr(err, want), "no %s in\n%s", want, err);
    free(out);
    free(err);
    ck_assert_int_eq(MV("/", &out, &err, "check", "-c", ini, "-o", "control.socket=none"), 0);
    free(out);
    free(err);
    ck_assert_int_eq(MV("/", &out, &err, "report", "-c", ini), 3);
    ck_assert_msg(strstr(err, "no run in"), "%s", err);
    free(out);
    free(err);
}
END_TEST

/* A control socket that cannot be bound at the start (a state_dir memvisor cannot make: a
 * newcomer's first unwritable path) ends the run with exit 3; the error says which key to
 * change: state_dir for the default socket, [control] socket for one set. It named only the
 * path and the errno, after a warning that the run went on without a run directory. */
START_TEST(a_control_socket_that_cannot_be_bound_names_the_key_to_change)
{
    char tasks[300], state[400], *out = NULL, *err = NULL;

    snprintf(tasks, sizeof tasks, "%s", at("t.txt"));
    put(tasks, "a\n");
    ck_assert_int_eq(MV(NULL, &out, &err, "run", "-o", "supervisor.state_dir=/proc/no/such", "-o",
                        "worker.protocol=lines", "--tasks", tasks, "--results", at("r0.jsonl"),
                        "--", "cat"),
                     3);
    ck_assert_msg(strstr(err, "event=control_failed"), "%s", err);
    ck_assert_msg(strstr(err, "make [supervisor] state_dir a directory memvisor can write"), "%s",
                  err);
    free(out);
    free(err);
    snprintf(state, sizeof state, "supervisor.state_dir=%s", at("state"));
    ck_assert_int_eq(MV(NULL, &out, &err, "run", "-o", state, "-o",
                        "control.socket=/proc/no/such/c.sock", "-o", "worker.protocol=lines",
                        "--tasks", tasks, "--results", at("r.jsonl"), "--", "cat"),
                     3);
    ck_assert_msg(strstr(err, "event=control_failed"), "%s", err);
    ck_assert_msg(strstr(err, "set [control] socket to a path memvisor can bind"), "%s", err);
    ck_assert_msg(!strstr(err, "[supervisor] state_dir"), "%s", err);
    free(out);
    free(err);
}
END_TEST

/* A worker command that cannot run is said with where it came from (the words after --, a
 * -o, or [worker] command at FILE:LINE): what to edit. It named the command alone. */
START_TEST(a_command_that_cannot_run_is_said_with_where_it_was_given)
{
    char ini[300], tasks[300], want[PATH_MAX + 128], *out = NULL, *err = NULL;

    snprintf(tasks, sizeof tasks, "%s", at("t.txt"));
    put(tasks, "a\n");
    snprintf(ini, sizeof ini, "%s", at("w.ini"));
    put(ini, "; a worker that is not there\n[worker]\ncommand = /nonexistent/w --flag\n");
    snprintf(want, sizeof want,
             "cannot run the worker command /nonexistent/w ([worker] command at %s:3): ", ini);
    ck_assert_int_eq(MV(NULL, &out, &err, "run", "-c", ini, "--tasks", tasks), 3);
    ck_assert_msg(strstr(err, want), "no %s in\n%s", want, err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "run", "-c", ini, "-o", "worker.command=/nonexistent/o",
                        "--tasks", tasks),
                     3);
    ck_assert_msg(strstr(err, "command /nonexistent/o (-o worker.command): "), "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(
        MV(NULL, &out, &err, "run", "-c", ini, "--tasks", tasks, "--", "/nonexistent/d"), 3);
    ck_assert_msg(strstr(err, "command /nonexistent/d (given after --): "), "%s", err);
    free(out);
    free(err);
    /* check says it too, as a warning (the file may be checked on a host without the worker):
     * it said nothing, and exit 0, as if the run would start. */
    snprintf(want, sizeof want,
             "memvisor check: warning: the worker command /nonexistent/w ([worker] command at "
             "%s:3) cannot run here: No such file or directory",
             ini);
    ck_assert_int_eq(MV(NULL, &out, &err, "check", "-c", ini), 0);
    ck_assert_msg(strstr(err, want), "no %s in\n%s", want, err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "check", "-c", ini, "-o", "worker.command=true"), 0);
    ck_assert_msg(!strstr(err, "warning"), "%s", err);
    free(out);
    free(err);
}
END_TEST

/* ---- help and the man page ----------------------------------------------------------------- */

START_TEST(help_lists_every_command_and_option)
{
    const mv_cli_cmd_t *cmds;
    char *all = NULL, *out = NULL, *err = NULL, line[128];
    size_t n;

    cmds = mv_cli_commands(&n);
    ck_assert_int_eq(MV(NULL, &all, &err, "--help"), 0);
    free(err);
    for (size_t i = 0; i < n; i++) {
        const mv_cli_cmd_t *c = &cmds[i];

        snprintf(line, sizeof line, "\n  memvisor %s", c->name);
        if (c->hidden) {
            ck_assert_msg(!strstr(all, line), "--help lists the internal %s", c->name);
            continue;
        }
        ck_assert_msg(strstr(all, line), "--help lacks %s:\n%s", c->name, all);
        /* dispatched: `memvisor NAME --help` is that command's help */
        ck_assert_int_eq(MV(NULL, &out, &err, c->name, "--help"), 0);
        snprintf(line, sizeof line, "usage: memvisor %s", c->name);
        ck_assert_msg(strstr(out, line) == out || c->id == MV_CMD_HELP, "%s --help:\n%s%s", c->name,
                      out, err);
        free(out);
        free(err);
        ck_assert_int_eq(MV(NULL, &out, &err, "help", c->name), 0);
        snprintf(line, sizeof line, "usage: memvisor %s", c->name);
        ck_assert_msg(strstr(out, line) == out, "help %s:\n%s", c->name, out);
        for (size_t k = 0; k < MV_CLI_MAX_OPTS && c->opts[k] != MV_CLI_NOPTIONS; k++) {
            const mv_cli_opt_t *o = mv_cli_opt(c->opts[k]);

            snprintf(line, sizeof line, "  %s%s%s", o->flag, o->alias ? ", " : "",
                     o->alias ? o->alias : "");
            ck_assert_msg(strstr(out, line), "help %s lacks %s", c->name, line);
            ck_assert_msg(strstr(all, line), "--help lacks %s", line);
            ck_assert_ptr_eq(mv_cli_option(c, o->flag), o);
        }
        free(out);
        free(err);
    }
    free(all);
    /* every option is some command's */
    for (int id = 0; id < MV_CLI_NOPTIONS; id++) {
        bool used = false;

        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < MV_CLI_MAX_OPTS && cmds[i].opts[k] != MV_CLI_NOPTIONS; k++)
                used = used || cmds[i].opts[k] == (mv_cli_opt_id_t)id;
        ck_assert_msg(used, "option %s is no command's", mv_cli_opt((mv_cli_opt_id_t)id)->flag);
    }
    /* -h, help, --version, mistakes */
    ck_assert_int_eq(MV(NULL, &out, &err, "-h"), 0);
    ck_assert_ptr_nonnull(strstr(out, "\nexit status:\n"));
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "--version"), 0);
    ck_assert_str_eq(out, "memvisor " MV_VERSION "\n");
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "stauts"), 2);
    ck_assert_msg(strstr(err, "unknown command: stauts (did you mean status?)"), "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "help", "reprot"), 2);
    ck_assert_msg(strstr(err, "(did you mean report?)"), "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "check", "--tasks", "x"), 2);
    ck_assert_msg(strstr(err, "unknown option: --tasks\nusage: memvisor check"), "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(MV(NULL, &out, &err, "version", "x"), 2);
    free(out);
    free(err);
    ck_assert_int_eq(sh(NULL, NULL, &out, &err, (const char *[]){MEMVISOR, NULL}), 2);
    ck_assert_msg(strstr(err, "missing command"), "%s", err);
    free(out);
    free(err);
}
END_TEST

/* The man page names every command, option and configuration key, with each key's default;
 * and no key that is not one. A key added to options.c without a line here fails this. */
START_TEST(man_page_documents_every_key)
{
    const mv_option_t *t;
    const mv_cli_cmd_t *cmds;
    char *man = read_text(SOURCE_DIR "/docs/memvisor.1"), *save, *l, section[64] = "", want[160];
    char *out = NULL, *err = NULL;
    size_t n, nk, found = 0;
    bool seen[256] = {false};

    ck_assert_ptr_nonnull(man);
    cmds = mv_cli_commands(&nk);
    for (size_t i = 0; i < nk; i++) {
        if (cmds[i].hidden)
            continue;
        snprintf(want, sizeof want, "\n.It Cm %s", cmds[i].name);
        ck_assert_msg(strstr(man, want), "memvisor.1: no %s under COMMANDS", want + 1);
    }
    for (int id = 0; id < MV_CLI_NOPTIONS; id++) {
        const mv_cli_opt_t *o = mv_cli_opt((mv_cli_opt_id_t)id);

        for (const char *f = o->flag; f; f = f == o->flag ? o->alias : NULL) {
            snprintf(want, sizeof want, "Fl %s%s", f[1] == '-' ? "\\-" : "",
                     f + (f[1] == '-' ? 2 : 1));
            ck_assert_msg(strstr(man, want), "memvisor.1: no %s", want);
        }
    }
    t = mv_config_options(&n);
    ck_assert_uint_le(n, sizeof seen);
    for (l = strtok_r(man, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        const mv_option_t *o;
        char key[64], def[64] = "";
        const char *d;

        if (sscanf(l, ".Ss \\&[%63[^]]]", section) == 1 || sscanf(l, ".It Ic %63s", key) != 1 ||
            !strstr(l, " No = "))
            continue;
        if ((d = strstr(l, " No = Li ")))
            snprintf(def, sizeof def, "%s", d + 9);
        else
            ck_assert_msg(strstr(l, " No = Pq empty"), "memvisor.1: %s", l);
        o = mv_config_find(section, key);
        ck_assert_msg(o != NULL, "memvisor.1 documents [%s] %s, which is no key", section, key);
        ck_assert_msg(strcmp(def, o->def) == 0, "memvisor.1: [%s] %s = \"%s\", default \"%s\"",
                      section, key, def, o->def);
        seen[o - t] = true;
        found++;
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(seen[i], "memvisor.1 does not document [%s] %s", t[i].section, t[i].name);
    ck_assert_uint_eq(found, n);
    free(man);
    /* and it renders without a warning */
    if (!have("groff"))
        return;
    ck_assert_int_eq(sh(NULL, NULL, &out, &err,
                        (const char *[]){"groff", "-mandoc", "-ww", "-z", "-Tutf8",
                                         SOURCE_DIR "/docs/memvisor.1", NULL}),
                     0);
    ck_assert_msg(err[0] == '\0', "groff warns:\n%s", err);
    free(out);
    free(err);
}
END_TEST

/* ---- make install, the unit ---------------------------------------------------------------- */

/* `make install|uninstall PREFIX=prefix [DESTDIR=...]` from the source tree, on this build. */
static void make_target(const char *target, const char *prefix, const char *destdir)
{
    char p[PATH_MAX + 16], d[PATH_MAX + 16], *out = NULL, *err = NULL;
    const char *argv[] = {"make",
                          "-s",
                          "--no-print-directory",
                          "-C",
                          SOURCE_DIR,
                          target,
                          "BUILD=" MV_BUILD_DIR,
                          p,
                          destdir ? d : NULL,
                          NULL};

    snprintf(p, sizeof p, "PREFIX=%s", prefix);
    snprintf(d, sizeof d, "DESTDIR=%s", destdir ? destdir : "");
    ck_assert_msg(sh(NULL, NULL, &out, &err, argv) == 0, "make %s failed:\n%s%s", target, out, err);
    free(out);
    free(err);
}

/* Every regular file or symlink under dir, counted. */
static int files_under(const char *dir)
{
    char cmd[PATH_MAX + 64], *out = NULL;
    int n = 0;

    snprintf(cmd, sizeof cmd, "find '%s' -type f -o -type l", dir);
    ck_assert_int_eq(sh(NULL, NULL, &out, NULL, (const char *[]){"sh", "-c", cmd, NULL}), 0);
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        n++;
    free(out);
    return n;
}

/* The value of `key=` in a unit file's text. */
static const char *unit_value(const char *unit, const char *key, char *out, size_t cap)
{
    char want[64];
    const char *p;

    snprintf(want, sizeof want, "\n%s=", key);
    p = strstr(unit, want);
    ck_assert_msg(p != NULL, "the unit has no %s=", key);
    p += strlen(want);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
    return out;
}

START_TEST(install_follows_prefix)
{
    char p1[256], p2[256], env[320], cfg[320], *out = NULL, *err = NULL;
    char want[1024], v[256], *text;
    const char *envs[] = {env, NULL};

    snprintf(p1, sizeof p1, "%s", at("p1"));
    snprintf(p2, sizeof p2, "%s", at("p2"));
    make_target("install", p1, NULL);
    make_target("install", p2, NULL); /* after p1: the .pc file must follow PREFIX */
    snprintf(env, sizeof env, "PKG_CONFIG_PATH=%s/lib/pkgconfig", p2);
    ck_assert_int_eq(sh(NULL, envs, &out, &err,
                        (const char *[]){"pkg-config", "--cflags", "--libs", "memvisor", NULL}),
                     0);
    snprintf(want, sizeof want, "-I%s/include -L%s/lib -lmemvisor", p2, p2);
    ck_assert_msg(strstr(out, want), "pkg-config says %s, not %s", out, want);
    free(out);
    free(err);
    text = read_text(at("p1/lib/pkgconfig/memvisor.pc"));
    snprintf(want, sizeof want, "prefix=%s\n", p1);
    ck_assert_msg(strstr(text, want) == text, "%s", text);
    free(text);
    /* The Python modules installed with their byte code (an interpreter that may not write
     * its cache would compile them at every start). */
    ck_assert_msg(sh(NULL, NULL, &out, &err,
                     (const char *[]){"python3", "-c",
                                      "import glob, importlib.util, os, sys\n"
                                      "py = glob.glob(sys.argv[1] + '/lib/python3*/dist-packages/"
                                      "**/*.py', recursive=True)\n"
                                      "bare = [f for f in py if not os.path.exists("
                                      "importlib.util.cache_from_source(f))]\n"
                                      "print(len(py), 'modules, not compiled:', *bare)\n"
                                      "sys.exit(1 if len(py) < 10 or bare else 0)",
                                      p1, NULL}) == 0,
                  "%s%s", out, err);
    free(out);
    free(err);

    /* A worker built against the installed header and library, run by the installed
     * memvisor, nothing from the source tree. */
    /* (In the sanitizer build the installed library is instrumented: so must the worker be,
     * for the sanitizer's runtime to load first.) */
    snprintf(want, sizeof want,
             "cc %s %s/examples/leaky_worker.c $(pkg-config --cflags --libs memvisor) -o %s/w",
#ifdef __SANITIZE_ADDRESS__
             "-fsanitize=address,undefined 2>/dev/null",
#else
             "",
#endif
             SOURCE_DIR, p2);
    ck_assert_int_eq(sh(NULL, envs, &out, &err, (const char *[]){"sh", "-c", want, NULL}), 0);
    free(out);
    free(err);
    put(at("t.txt"), "1\n2\n3\n");
    snprintf(env, sizeof env, "LD_LIBRARY_PATH=%s/lib", p2);
    snprintf(cfg, sizeof cfg, "%s/bin/memvisor", p2);
    snprintf(want, sizeof want, "%s/w", p2);
    ck_assert_int_eq(sh(tmp, envs, &out, &err,
                        (const char *[]){cfg, "run", "-o", "supervisor.workers=1", "--tasks",
                                         "t.txt", "--", want, NULL}),
                     0);
    free(out);
    free(err);

    /* The installed service.ini points at installed paths, and the unit agrees with it. */
    snprintf(cfg, sizeof cfg, "%s/etc/memvisor/service.ini", p2);
    ck_assert_int_eq(MV(NULL, &out, &err, "check", "-c", cfg), 0);
    snprintf(want, sizeof want, "\ncommand = %s/lib/memvisor/examples/http_service ", p2);
    ck_assert_msg(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "%s/lib/memvisor/examples/http_service", p2);
    ck_assert_int_eq(access(want, X_OK), 0);
    text = read_text(at("p2/lib/systemd/system/memvisor.service"));
    ck_assert_ptr_nonnull(text);
    snprintf(want, sizeof want, "\nstate_dir = /var/lib/%s ",
             unit_value(text, "StateDirectory", v, sizeof v));
    ck_assert_msg(strstr(out, want), "no %s in\n%s", want, out);
    snprintf(want, sizeof want, "\nsocket = /run/%s/control.sock ",
             unit_value(text, "RuntimeDirectory", v, sizeof v));
    ck_assert_msg(strstr(out, want), "no %s in\n%s", want, out);
    snprintf(want, sizeof want, "%s/bin/memvisor run -c %s", p2, cfg);
    ck_assert_str_eq(unit_value(text, "ExecStart", v, sizeof v), want);
    free(text);
    free(out);
    free(err);
    /* the man page is where man looks, and systemd-analyze finds it (Documentation=) */
    snprintf(env, sizeof env, "MANPATH=%s/share/man", p2);
    ck_assert_int_eq(sh(NULL, envs, &out, &err, (const char *[]){"man", "-w", "memvisor", NULL}),
                     0);
    snprintf(want, sizeof want, "%s/share/man/man1/memvisor.1\n", p2);
    ck_assert_str_eq(out, want);
    free(out);
    free(err);
    if (have("systemd-analyze")) {
        snprintf(want, sizeof want, "%s/lib/systemd/system/memvisor.service", p2);
        ck_assert_int_eq(
            sh(NULL, envs, &out, &err, (const char *[]){"systemd-analyze", "verify", want, NULL}),
            0);
        ck_assert_msg(!out[0] && !err[0], "systemd-analyze verify:\n%s%s", out, err);
        free(out);
        free(err);
    }

    /* DESTDIR stages under another root, for the PREFIX the files will live at */
    make_target("install", "/usr", at("stage"));
    text = read_text(at("stage/usr/lib/pkgconfig/memvisor.pc"));
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_eq(strstr(text, "prefix=/usr\n"), text);
    free(text);

    /* uninstall leaves nothing behind */
    ck_assert_int_gt(files_under(p1), 30);
    make_target("uninstall", p1, NULL);
    make_target("uninstall", p2, NULL);
    make_target("uninstall", "/usr", at("stage"));
    ck_assert_int_eq(files_under(p1), 0);
    ck_assert_int_eq(files_under(p2), 1); /* the worker built above, which is ours */
    ck_assert_int_eq(files_under(at("stage")), 0);
}
END_TEST

/* conf/memvisor.service, pointed at this build, passes systemd-analyze verify with no
 * warning (an unknown or misspelt key is only a warning there: the output must be empty). */
START_TEST(unit_file_verifies)
{
    char *unit = read_text(SOURCE_DIR "/conf/memvisor.service"), *out = NULL, *err = NULL, *p;
    const char *copy = at("memvisor.service");
    FILE *f;

    if (!have("systemd-analyze"))
        return;
    ck_assert_ptr_nonnull(unit);
    ck_assert_ptr_nonnull(p = strstr(unit, "ExecStart=/usr/local/bin/memvisor run -c "));
    f = fopen(copy, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%.*sExecStart=%s run -c %s/conf/service.ini%s", (int)(p - unit), unit, MEMVISOR,
            SOURCE_DIR, strchr(p, '\n'));
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(sh(NULL, NULL, &out, &err,
                        (const char *[]){"systemd-analyze", "verify", "--man=no", copy, NULL}),
                     0);
    ck_assert_msg(!out[0] && !err[0], "systemd-analyze verify:\n%s%s", out, err);
    free(out);
    free(err);
    /* the check can fail: a misspelt key is reported */
    {
        char bad[PATH_MAX + 64];
        snprintf(bad, sizeof bad, "[Service]\nExecStart=%s run\nStateDirectry=memvisor\n",
                 MEMVISOR);
        put(copy, bad);
    }
    ck_assert_int_eq(sh(NULL, NULL, &out, &err,
                        (const char *[]){"systemd-analyze", "verify", "--man=no", copy, NULL}),
                     0);
    ck_assert_msg(strstr(err, "StateDirectry"), "%s%s", out, err);
    free(out);
    free(err);
    free(unit);
}
END_TEST

Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("paths");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, path_resolution);
    tcase_add_test(tc, base_directories);
    suite_add_tcase(s, tc);

    tc = tcase_create("prune");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, run_names);
    tcase_add_test(tc, snapshot_trim_keeps_the_newest);
    tcase_add_test(tc, prune_keeps_the_newest_and_the_running);
    tcase_add_test(tc, a_run_locks_its_directory);
    tcase_add_test(tc, keep_runs_end_to_end);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("find");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, control_commands_find_it_from_anywhere);
    tcase_add_test(tc, a_socket_path_too_long_is_a_configuration_error);
    tcase_add_test(tc, a_control_socket_that_cannot_be_bound_names_the_key_to_change);
    tcase_add_test(tc, a_command_that_cannot_run_is_said_with_where_it_was_given);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("docs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, help_lists_every_command_and_option);
    tcase_add_test(tc, man_page_documents_every_key);
    suite_add_tcase(s, tc);

    tc = tcase_create("install");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, install_follows_prefix);
    tcase_add_test(tc, unit_file_verifies);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
