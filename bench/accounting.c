/*
 * bench/accounting: what per-task accounting costs the supervisor, read by read (DESIGN §9:
 * <= 3 us per task at p99).
 *
 *     accounting [--tasks N] [--pin same|apart]
 *
 * A child process in a worker cgroup of its own (made by memvisor's cgroup.c, limits and
 * notifications set as for a worker) does tasks on request over a pipe: "n" does nothing,
 * "s" allocates, touches and frees 1 MiB (a spike: its window's peak is above its usage at
 * the end, so the next window needs a reset). Timed here, with CLOCK_MONOTONIC around each
 * call, N times each (p50, p90, p99, p99.9, and the share more than 1 us over the median):
 *   - each read alone: /proc/PID/statm, usage, the kernel peak, the peak reset, memory.stat
 *     (read and parsed), the fd count (fstat st_size, Linux >= 6.2) and the directory walk
 *     older kernels need; and a bare getpid(), the cost of any syscall;
 *   - a task boundary as worker.c does it (one reading, mv_meter_read, then the peak reset,
 *     mv_cg_reset_peak), after a no-op task and after a spike, with this meter; interleaved
 *     with it, task by task, a control: as many bare getpid() as last as long as the
 *     boundary's median, timed the same way. A tail the control has too is the machine's
 *     (interrupts, preemption by other sessions, the guest's occasional slow syscall), not
 *     accounting's; the boundary's page faults are counted;
 *   - the same boundary reading everything every time ("all reads": the meter before
 *     issue 13), and each of the boundary's four syscalls timed alone where the boundary
 *     makes them (after a task), next to their tight-loop cost above.
 * --pin puts this process on CPU 0 and the child on CPU 0 too (same) or on CPU 1 (apart: as a
 * supervisor's workers mostly are, with more than one of them); without it the scheduler
 * places both (here mostly on one CPU).
 * The task itself is not timed, only the accounting around it. It measures and asserts
 * nothing; it needs root and a memory cgroup (v1 or v2). docs/accounting.md has the
 * figures and what the tail is.
 */
#include <sched.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "meter.h"

static int n_tasks = 20000;
static int pin = -1;           /* the child's CPU with --pin (this process on CPU 0), -1 = none */
static int n_control = 4;      /* getpid() calls in the control: see control() */
static double getpid_ns = 100; /* one getpid(), p50 (measured in reads()) */
static double *v;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles of v[0..n_tasks) (sorted here), and the share of samples more than 1 us over
 * the median: on this guest about one syscall in 450 takes ~1 us longer whatever it does (a
 * bare getpid() too), so that share grows with the syscalls a row makes. */
static void report(const char *name, const char *note)
{
    int n = n_tasks, over = 0;

    qsort(v, (size_t)n, sizeof *v, cmp);
    for (int i = n - 1; i >= 0 && v[i] > v[n / 2] + 1e3; i--)
        over++;
    printf("  %-44s p50 %5.2f  p90 %5.2f  p99 %5.2f  p99.9 %6.2f us  >p50+1us %5.2f%%%s\n", name,
           v[n / 2] / 1e3, v[n * 9 / 10] / 1e3, v[n * 99 / 100] / 1e3, v[n * 999 / 1000] / 1e3,
           100.0 * over / n, note);
}

/* Minor and major page faults of this process so far. */
static long faults(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/* Keeps the calling process on one CPU. 0 or -1 (errno set). */
static int on_cpu(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* The child: one task per byte read, one byte back when done. */
static void child(int in, int out, int procs_fd)
{
    char c;

    if (write(procs_fd, "0", 1) != 1)
        _exit(1);
    while (read(in, &c, 1) == 1) {
        if (c == 's') {
            volatile char *p = malloc(1 << 20);
            for (int i = 0; p && i < (1 << 20); i += 4096)
                p[i] = 1;
            free((void *)p);
        }
        if (write(out, &c, 1) != 1)
            break;
    }
    _exit(0);
}

static void task(int to, int from, char what)
{
    char c;

    if (write(to, &what, 1) != 1 || read(from, &c, 1) != 1) {
        fprintf(stderr, "accounting: the child is gone\n");
        exit(1);
    }
}

/* The reads of the meter before issue 13: usage, peak, statm and fds every time. */
static void all_reads(mv_meter_t *m, mv_cgw_t *w)
{
    char buf[256];
    struct stat st;

    if (pread(m->statm_fd, buf, sizeof buf, 0) < 0 || pread(w->usage_fd, buf, sizeof buf, 0) < 0 ||
        pread(w->peak_fd, buf, sizeof buf, 0) < 0 || fstat(m->fd_dir_fd, &st) < 0)
        exit(1);
}

/* Each read alone. */
static void reads(mv_meter_t *m, mv_cgw_t *w)
{
    char buf[2048];
    struct stat st;
    int64_t x;
    double t;

    for (int i = 0; i < n_tasks; i++) {
        t = now_ns();
        if (pread(m->statm_fd, buf, sizeof buf, 0) < 0)
            exit(1);
        v[i] = now_ns() - t;
    }
    report("/proc/PID/statm (priv, rss)", "");
    for (int i = 0; i < n_tasks; i++) {
        t = now_ns();
        if (pread(w->usage_fd, buf, sizeof buf, 0) < 0)
            exit(1);
        v[i] = now_ns() - t;
    }
    report(w->version == MV_CG_V1 ? "memory.usage_in_bytes" : "memory.current", "");
    for (int i = 0; i < n_tasks; i++) {
        t = now_ns();
        if (pread(w->peak_fd, buf, sizeof buf, 0) < 0)
            exit(1);
        v[i] = now_ns() - t;
    }
    report(w->version == MV_CG_V1 ? "memory.max_usage_in_bytes" : "memory.peak", "");
    for (int i = 0; i < n_tasks && w->peak_kernel; i++) {
        t = now_ns();
        if (pwrite(w->peak_fd, "0\n", 2, 0) < 0)
            exit(1);
        v[i] = now_ns() - t;
    }
    if (w->peak_kernel)
        report("peak reset (write)", "");
    for (int i = 0; i < n_tasks; i++) {
        ssize_t n;
        t = now_ns();
        if ((n = pread(w->stat_fd, buf, sizeof buf - 1, 0)) < 0)
            exit(1);
        buf[n] = '\0';
        mv_cg_parse_stat(buf, w->version == MV_CG_V1 ? "rss" : "anon", &x);
        v[i] = now_ns() - t;
    }
    report("memory.stat, read and parsed", "  (private metric, usage >= soft only)");
    for (int i = 0; i < n_tasks; i++) {
        t = now_ns();
        if (fstat(m->fd_dir_fd, &st) < 0)
            exit(1);
        v[i] = now_ns() - t;
    }
    report("fd count: fstat of /proc/PID/fd", "  (st_size: Linux >= 6.2)");
    for (int i = 0; i < n_tasks; i++) {
        DIR *d;
        t = now_ns();
        if (!(d = opendir(m->fd_dir)))
            exit(1);
        while (readdir(d))
            ;
        closedir(d);
        v[i] = now_ns() - t;
    }
    report("fd count: walk of /proc/PID/fd", "  (kernels < 6.2)");
    for (int i = 0; i < n_tasks; i++) {
        t = now_ns();
        syscall(SYS_getpid);
        v[i] = now_ns() - t;
    }
    report("control: getpid(), the bare syscall", "");
    getpid_ns = v[n_tasks / 2];
}

/* The control: bare syscalls (getpid: no lock, no file, nothing to copy), as many as take
 * as long as a boundary's median, timed the same way at the same place. What its tail
 * shares with the boundary's is the machine (interrupts, preemption, the guest's slow
 * syscalls), not accounting. */
static void control(void)
{
    for (int j = 0; j < n_control; j++)
        syscall(SYS_getpid);
}

/* Task boundaries: the reading and the reset worker.c takes, after each kind of task; the
 * control interleaved with it task by task (each first every other task), so that both
 * see the same load. */
static void boundaries(mv_meter_t *m, mv_cgw_t *w, int to, int from)
{
    mv_reading_t r;
    const char kinds[] = {'n', 's'};
    const char *names[] = {"no-op tasks", "spiking tasks (reset needed)"};
    const char *steps[] = {"statm", "peak", "fd count", "peak reset"};
    char label[96], note[64], buf[256];
    double t, *ctl = calloc((size_t)n_tasks, sizeof *ctl), *step[4];
    struct stat st;
    long f;

    for (int s = 0; s < 4; s++)
        step[s] = calloc((size_t)n_tasks, sizeof **step);
    if (!ctl || !step[0] || !step[1] || !step[2] || !step[3])
        exit(1);
    /* A warm-up pass sizes the control: as many getpid() as last a boundary's median. */
    for (int i = 0; i < n_tasks / 10; i++) {
        task(to, from, 'n');
        t = now_ns();
        if (mv_meter_read(m, &r) < 0)
            exit(1);
        mv_cg_reset_peak(w);
        v[i] = now_ns() - t;
    }
    qsort(v, (size_t)(n_tasks / 10), sizeof *v, cmp);
    n_control = (int)(v[n_tasks / 20] / getpid_ns + 0.5);
    if (n_control < 1)
        n_control = 1;
    for (int k = 0; k < 2; k++) {
        f = faults();
        for (int i = 0; i < n_tasks; i++) {
            task(to, from, kinds[k]);
            if (i & 1) {
                t = now_ns();
                control();
                ctl[i] = now_ns() - t;
            }
            t = now_ns();
            if (mv_meter_read(m, &r) < 0)
                exit(1);
            mv_cg_reset_peak(w);
            v[i] = now_ns() - t;
            if (!(i & 1)) {
                t = now_ns();
                control();
                ctl[i] = now_ns() - t;
            }
        }
        f = faults() - f;
        snprintf(label, sizeof label, "task boundary, %s", names[k]);
        snprintf(note, sizeof note, "  (target p99 <= 3 us; %ld page faults)", f);
        report(label, note);
        memcpy(v, ctl, (size_t)n_tasks * sizeof *v);
        snprintf(label, sizeof label, "  control: %d x getpid() at the same place", n_control);
        report(label, "");
        for (int i = 0; i < n_tasks; i++) {
            task(to, from, kinds[k]);
            t = now_ns();
            all_reads(m, w);
            if (kinds[k] == 's' && w->peak_kernel && pwrite(w->peak_fd, "0\n", 2, 0) < 0)
                exit(1);
            v[i] = now_ns() - t;
        }
        snprintf(label, sizeof label, "  all reads every time, %s", names[k]);
        report(label, "");
        /* Each read of the boundary timed alone where the boundary makes it (after a task,
         * in the meter's order): what each adds to the tail, next to its tight-loop cost. */
        for (int i = 0; i < n_tasks; i++) {
            task(to, from, kinds[k]);
            t = now_ns();
            if (pread(m->statm_fd, buf, sizeof buf, 0) < 0)
                exit(1);
            step[0][i] = now_ns() - t;
            t = now_ns();
            if (pread(w->peak_fd, buf, sizeof buf, 0) < 0)
                exit(1);
            step[1][i] = now_ns() - t;
            t = now_ns();
            if (fstat(m->fd_dir_fd, &st) < 0)
                exit(1);
            step[2][i] = now_ns() - t;
            t = now_ns();
            if (w->peak_kernel && pwrite(w->peak_fd, "0\n", 2, 0) < 0)
                exit(1);
            step[3][i] = now_ns() - t;
        }
        for (int s = 0; s < 4; s++) {
            memcpy(v, step[s], (size_t)n_tasks * sizeof *v);
            snprintf(label, sizeof label, "    in the boundary: %s", steps[s]);
            report(label, "");
        }
    }
    for (int s = 0; s < 4; s++)
        free(step[s]);
    free(ctl);
}

int main(int argc, char **argv)
{
    mv_cg_opts_t o = {.mode = MV_CGMODE_AUTO,
                      .parent = "",
                      .soft = 256 << 20,
                      .hard = 512 << 20,
                      .enforce = true};
    int down[2], up[2], code = 0;
    char why[256];
    mv_meter_t m;
    mv_cgw_t w;
    mv_cg_t cg;
    pid_t pid;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc)
            n_tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pin") && i + 1 < argc && !strcmp(argv[i + 1], "same"))
            pin = 0, i++;
        else if (!strcmp(argv[i], "--pin") && i + 1 < argc && !strcmp(argv[i + 1], "apart"))
            pin = 1, i++;
        else {
            fprintf(stderr, "usage: accounting [--tasks N] [--pin same|apart]\n");
            return 2;
        }
    }
    if (n_tasks < 100 || !(v = calloc((size_t)n_tasks, sizeof *v)))
        return 2;
    /* The child's CPU is tried here, before anything is made; the child inherits CPU 0. */
    if (pin >= 0 && (on_cpu(pin) < 0 || on_cpu(0) < 0)) {
        fprintf(stderr, "accounting: --pin: CPU %d: %s\n", pin, strerror(errno));
        return 1;
    }
    if (mv_cg_setup(&cg, &o, why, sizeof why) < 0 || cg.version == MV_CG_OFF) {
        fprintf(stderr, "accounting: no memory cgroup: %s\n", why);
        return 1;
    }
    if (mv_cg_create(&cg, 1, 1, &w, why, sizeof why) < 0) {
        fprintf(stderr, "accounting: %s\n", why);
        mv_cg_teardown(&cg, why, sizeof why);
        return 1;
    }
    if (pipe(down) < 0 || pipe(up) < 0 || (pid = fork()) < 0)
        return 1;
    if (pid == 0 && pin > 0 && on_cpu(pin) < 0)
        _exit(1); /* it could a moment ago */
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        child(down[0], up[1], w.procs_fd);
    }
    close(down[0]);
    close(up[1]);
    task(down[1], up[0], 'n'); /* it is in its cgroup */
    if (mv_meter_open(&m, pid, &w, o.soft) < 0) {
        code = 1;
    } else {
        printf("accounting: cgroup %s, %d reads of each, us%s\n",
               cg.version == MV_CG_V1 ? "v1" : "v2", n_tasks,
               pin < 0 ? ""
               : pin   ? "; the child on CPU 1, this on CPU 0"
                       : "; both on CPU 0");
        reads(&m, &w);
        boundaries(&m, &w, down[1], up[0]);
        mv_meter_close(&m);
    }
    close(down[1]);
    waitpid(pid, NULL, 0);
    mv_cg_remove(w.version, w.path, why, sizeof why);
    mv_cg_close(&w);
    mv_cg_teardown(&cg, why, sizeof why);
    free(v);
    return code;
}
