/*
 * clone3_spawn: what starting a worker inside its cgroup costs, three ways (cgroup v2 only;
 * run it in the check-v2 guest: MV_V2_CMD='build/bench/clone3_spawn' make check-v2).
 *
 *   shim    what memvisor does: fork (as uv_spawn does) and exec `memvisor exec-shim 3 PROG`
 *           with the cgroup's cgroup.procs on fd 3; the shim writes "0" to it and execs PROG
 *   write   fork, the child writes "0" to cgroup.procs itself and execs PROG (DESIGN §2)
 *   clone3  clone3(CLONE_INTO_CGROUP) with an O_PATH fd of the cgroup: the child starts in
 *           it (no migration, no write side of cgroup_threadgroup_rwsem) and execs PROG
 *
 * Each spawn gets a fresh cgroup (made and removed outside the timing), as each worker
 * generation does. Per method: "blocked" = the spawning call until the exec is confirmed (a
 * CLOEXEC pipe reaching EOF: what uv_spawn waits for, i.e. how long the loop would stall),
 * "exit" = until PROG (/bin/true) has exited, i.e. spawn to a worker's first instruction plus
 * one exec and exit. Medians and p90 over N spawns, back to back and SPACED ms apart (the
 * migration write waits for an RCU grace period, which back-to-back writes share).
 *
 *   clone3_spawn [--runs N] [--spaced N] [--space-ms MS] [--memvisor PATH]
 *
 * It also checks where the child landed (a child that reads /proc/self/cgroup). Exit 0: it
 * measures; 3 when there is no writable cgroup v2 here.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

enum { M_SHIM, M_WRITE, M_CLONE3, M_COUNT };
static const char *const names[M_COUNT] = {"shim", "write", "clone3"};

static const char *memvisor = MV_BUILD_DIR "/memvisor";
static char base[256];

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[(int)(p * (n - 1) + 0.5)];
}

static pid_t clone_into(int cgfd)
{
    struct clone_args a;

    memset(&a, 0, sizeof a);
    a.flags = CLONE_INTO_CGROUP;
    a.exit_signal = SIGCHLD;
    a.cgroup = (uint64_t)cgfd;
    return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

/* One spawn of `argv` into cgroup `dir` by method `m`; times in ms. 0 or -errno. */
static int spawn_one(int m, const char *dir, char *const argv[], int out_fd, double *blocked,
                     double *exited)
{
    char procs[300];
    int pfd = -1, cgfd = -1, errp[2], st;
    double t0;
    pid_t pid;
    char c;

    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    /* Opened before the clock starts: memvisor opens them with the cgroup, off the loop. */
    if (m == M_CLONE3)
        cgfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    else
        pfd = open(procs, O_WRONLY | O_CLOEXEC);
    if (pfd < 0 && cgfd < 0)
        return -errno;
    if (pipe2(errp, O_CLOEXEC) < 0)
        return -errno;
    t0 = now_ms();
    pid = m == M_CLONE3 ? clone_into(cgfd) : fork();
    if (pid == 0) {
        if (out_fd >= 0)
            dup2(out_fd, 1);
        if (m == M_SHIM) {
            char *shim[8] = {(char *)memvisor, "exec-shim", "3"};
            for (int i = 0; i < 4 && argv[i]; i++)
                shim[3 + i] = argv[i];
            /* dup2 clears CLOEXEC on 3, unless pfd is 3 already (then it does nothing). */
            if (pfd == 3)
                fcntl(3, F_SETFD, 0);
            else
                dup2(pfd, 3);
            execv(memvisor, shim);
        } else {
            if (m == M_WRITE && write(pfd, "0", 1) != 1)
                _exit(125);
            execv(argv[0], argv);
        }
        _exit(127);
    }
    if (pid < 0) {
        int e = -errno;
        close(errp[0]);
        close(errp[1]);
        return e;
    }
    close(errp[1]);
    while (read(errp[0], &c, 1) < 0 && errno == EINTR)
        ;
    *blocked = now_ms() - t0;
    close(errp[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *exited = now_ms() - t0;
    if (pfd >= 0)
        close(pfd);
    if (cgfd >= 0)
        close(cgfd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
}

/* Writes `text` to DIR/FILE. 0 or -1 (errno set). */
static int write_in(const char *dir, const char *file, const char *text)
{
    char p[400];
    int fd, ok;

    snprintf(p, sizeof p, "%s/%s", dir, file);
    fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

/* A fresh cgroup for one spawn. */
static int make_cg(char *dir, size_t n, int i)
{
    snprintf(dir, n, "%s/w%d", base, i);
    return mkdir(dir, 0755) < 0 ? -errno : 0;
}

static void series(int runs, int space_ms)
{
    char *const prog[] = {"/bin/true", NULL};
    double *b[M_COUNT], *e[M_COUNT];
    char dir[300];
    int k = 0;

    for (int m = 0; m < M_COUNT; m++) {
        b[m] = calloc((size_t)runs, sizeof **b);
        e[m] = calloc((size_t)runs, sizeof **e);
    }
    /* Interleaved, so that the methods share whatever else the machine does meanwhile. */
    for (int i = 0; i < runs; i++)
        for (int m = 0; m < M_COUNT; m++) {
            int r;
            if (make_cg(dir, sizeof dir, k++) < 0) {
                perror("mkdir");
                exit(3);
            }
            if (space_ms)
                nanosleep(&(struct timespec){0, space_ms * 1000000L}, NULL);
            r = spawn_one(m, dir, prog, -1, &b[m][i], &e[m][i]);
            if (r < 0) {
                fprintf(stderr, "clone3_spawn: %s: %s\n", names[m], strerror(-r));
                exit(3);
            }
            rmdir(dir);
        }
    printf("%d spawns each, %s:\n", runs, space_ms ? "spaced" : "back to back");
    for (int m = 0; m < M_COUNT; m++)
        printf("  %-7s blocked %7.3f ms (p90 %7.3f)   exit %7.3f ms (p90 %7.3f)\n", names[m],
               pct(b[m], runs, 0.5), pct(b[m], runs, 0.9), pct(e[m], runs, 0.5),
               pct(e[m], runs, 0.9));
    for (int m = 0; m < M_COUNT; m++) {
        free(b[m]);
        free(e[m]);
    }
}

/* Where does a child of each method land? Prints its /proc/self/cgroup. */
static void check_placement(void)
{
    char *const cat[] = {"/bin/cat", "/proc/self/cgroup", NULL};
    char dir[300], buf[512];
    double b, e;
    int p[2];

    for (int m = 0; m < M_COUNT; m++) {
        ssize_t n;
        if (make_cg(dir, sizeof dir, 100000 + m) < 0 || pipe(p) < 0)
            exit(3);
        if (spawn_one(m, dir, cat, p[1], &b, &e) < 0)
            exit(3);
        close(p[1]);
        n = read(p[0], buf, sizeof buf - 1);
        close(p[0]);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        printf("  %-7s child in %s (wanted %s)\n", names[m], buf, dir + strlen("/sys/fs/cgroup"));
        rmdir(dir);
    }
}

int main(int argc, char **argv)
{
    int runs = 200, spaced = 20, space_ms = 100;
    char self[300], *line = NULL;
    size_t cap = 0;
    FILE *f;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--spaced"))
            spaced = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--space-ms"))
            space_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--memvisor"))
            memvisor = argv[i + 1];
    }
    /* Our own cgroup must be a leaf to spawn into siblings: make <root>/clone3-bench/{self,w*}. */
    snprintf(base, sizeof base, "/sys/fs/cgroup/clone3-bench-%d", (int)getpid());
    snprintf(self, sizeof self, "%s/self", base);
    f = fopen("/sys/fs/cgroup/cgroup.controllers", "r");
    if (!f || getline(&line, &cap, f) <= 0 || !strstr(line, "memory") || mkdir(base, 0755) < 0) {
        fprintf(stderr, "clone3_spawn: needs root on a cgroup v2 hierarchy with memory\n");
        return 3;
    }
    fclose(f);
    free(line);
    mkdir(self, 0755);
    /* Offer memory to the children of base, then leave it for the leaf (no internal
     * processes). */
    if (write_in(base, "cgroup.subtree_control", "+memory") < 0 ||
        write_in(self, "cgroup.procs", "0") < 0) {
        perror("clone3_spawn: setting up the cgroups");
        return 3;
    }
    check_placement();
    series(runs, 0);
    series(spaced, space_ms);
    /* Leave: back to the root, remove what we made. */
    write_in("/sys/fs/cgroup", "cgroup.procs", "0");
    rmdir(self);
    rmdir(base);
    return 0;
}
