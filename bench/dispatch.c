/*
 * bench/dispatch: task throughput through memvisor against a bare socketpair ping-pong
 * measured in the same run (DESIGN §9).
 *
 *     dispatch [--tasks N] [--prefetch P] [--runs R] [--mode api|lines|both]
 *
 * Baseline: one parent, two children, one socketpair each, the same 16-byte framing
 * (protocol.h) and an epoll loop: the floor any supervisor of two workers pays per task.
 * memvisor: `memvisor run` with 2 no-op `api` workers (bench/noop_worker) over N tasks,
 * results written to a file, timed from the first worker's `ready` to `batch_done` in
 * memvisor's log (so start-up and teardown, cgroups included, are not counted as dispatch),
 * per-task memory accounting on (the default) and off, so the
 * cost of accounting per task is measured in the same run. Each case runs R times; the
 * median rate is reported, and the ratio to the baseline of the same shape.
 * Lines mode: 2 `lines` workers (bench/noop_lines: one write of answers per read) at
 * prefetch 1, 8 and 64, against the same exchange over bare pipes: task lines written in one
 * write per pass and answers read in bulk is what prefetch buys a line worker.
 * This measures; it asserts nothing (tests assert behaviour, benchmarks measure).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/protocol.h>

#define WORKERS 2

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "dispatch: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Reads into buf[*len..cap); returns bytes read (0 at EOF). */
static size_t fill(int fd, uint8_t *buf, size_t *len, size_t cap)
{
    ssize_t n;

    do
        n = read(fd, buf + *len, cap - *len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        die("read");
    *len += (size_t)n;
    return (size_t)n;
}

/* The baseline's child: answers every TASK with an empty DONE, batching like libmemvisor:
 * all answers to what one read brought go out in one write. */
static void echo_child(int fd)
{
    static uint8_t in[1 << 16], out[1 << 16];
    size_t len = 0, off, olen;
    struct mvw_msg m;
    long used;

    for (;;) {
        if (fill(fd, in, &len, sizeof in) == 0)
            _exit(0);
        off = olen = 0;
        while ((used = mvw_decode(in + off, len - off, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR, &m)) >
               0) {
            mvw_put_header(out + olen, MVW_MSG_DONE, 0, m.h.task, 0);
            olen += MVW_HEADER_SIZE;
            off += (size_t)used;
        }
        memmove(in, in + off, len - off);
        len -= off;
        if (olen && write(fd, out, olen) != (ssize_t)olen)
            die("write");
    }
}

/* Bare ping-pong: N tasks over WORKERS children, `prefetch` in flight each. Tasks/s. */
static double baseline(long n, int prefetch)
{
    int fds[WORKERS], ep = epoll_create1(EPOLL_CLOEXEC);
    pid_t pids[WORKERS];
    long sent = 0, done = 0;
    static uint8_t in[1 << 16], out[1 << 16];
    double t0;

    for (int i = 0; i < WORKERS; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            die("socketpair");
        pids[i] = fork();
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(sv[0]);
            for (int j = 0; j < i; j++)
                close(fds[j]); /* else child j never sees EOF */
            echo_child(sv[1]);
        }
        close(sv[1]);
        fds[i] = sv[0];
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i],
                  &(struct epoll_event){.events = EPOLLIN, .data.u32 = (uint32_t)i});
    }
    t0 = now();
    for (int i = 0; i < WORKERS; i++) {
        size_t olen = 0;
        for (int k = 0; k < prefetch && sent < n; k++, sent++) {
            mvw_put_header(out + olen, MVW_MSG_TASK, 0, (uint64_t)sent + 1, 1);
            out[olen + MVW_HEADER_SIZE] = 'x';
            olen += MVW_HEADER_SIZE + 1;
        }
        if (write(fds[i], out, olen) != (ssize_t)olen)
            die("write");
    }
    while (done < n) {
        struct epoll_event ev[WORKERS];
        int k = epoll_wait(ep, ev, WORKERS, -1);
        for (int e = 0; e < k; e++) {
            int fd = fds[ev[e].data.u32];
            size_t len = 0, olen = 0, got;
            fill(fd, in, &len, sizeof in);
            got = len / MVW_HEADER_SIZE; /* empty DONEs: whole headers only */
            done += (long)got;
            for (size_t a = 0; a < got && sent < n; a++, sent++) {
                mvw_put_header(out + olen, MVW_MSG_TASK, 0, (uint64_t)sent + 1, 1);
                out[olen + MVW_HEADER_SIZE] = 'x';
                olen += MVW_HEADER_SIZE + 1;
            }
            if (olen && write(fd, out, olen) != (ssize_t)olen)
                die("write");
        }
    }
    double rate = (double)n / (now() - t0);
    for (int i = 0; i < WORKERS; i++) {
        close(fds[i]);
        waitpid(pids[i], NULL, 0);
    }
    close(ep);
    return rate;
}

/* Bare lines: N task lines over WORKERS children's stdin/stdout pipes (noop_lines),
 * `prefetch` in flight each, every pass's lines in one write. Tasks/s. */
static double baseline_lines(long n, int prefetch)
{
    int to[WORKERS], from[WORKERS], ep = epoll_create1(EPOLL_CLOEXEC);
    pid_t pids[WORKERS];
    long sent = 0, done = 0;
    static char in[1 << 16], out[1 << 17];
    double t0;

    for (int i = 0; i < WORKERS; i++) {
        int a[2], b[2];
        if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
            die("pipe");
        pids[i] = fork();
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            dup2(a[0], STDIN_FILENO);
            dup2(b[1], STDOUT_FILENO);
            execl(MV_BUILD_DIR "/bench/noop_lines", "noop_lines", (char *)NULL);
            _exit(127);
        }
        close(a[0]);
        close(b[1]);
        to[i] = a[1];
        from[i] = b[0];
        epoll_ctl(ep, EPOLL_CTL_ADD, from[i],
                  &(struct epoll_event){.events = EPOLLIN, .data.u32 = (uint32_t)i});
    }
    t0 = now();
    for (int i = 0; i < WORKERS; i++) {
        size_t olen = 0;
        for (int k = 0; k < prefetch && sent < n; k++, sent++)
            memcpy(out + 2 * (olen++), "x\n", 2);
        if (write(to[i], out, 2 * olen) != (ssize_t)(2 * olen))
            die("write");
    }
    while (done < n) {
        struct epoll_event ev[WORKERS];
        int k = epoll_wait(ep, ev, WORKERS, -1);
        for (int e = 0; e < k; e++) {
            int i = (int)ev[e].data.u32;
            ssize_t r = read(from[i], in, sizeof in);
            size_t got = 0, olen = 0;
            if (r <= 0)
                die("read");
            for (ssize_t j = 0; j < r; j++)
                got += in[j] == '\n';
            done += (long)got;
            for (size_t a = 0; a < got && sent < n; a++, sent++)
                memcpy(out + 2 * (olen++), "x\n", 2);
            if (olen && write(to[i], out, 2 * olen) != (ssize_t)(2 * olen))
                die("write");
        }
    }
    double rate = (double)n / (now() - t0);
    for (int i = 0; i < WORKERS; i++) {
        close(to[i]);
        close(from[i]);
        waitpid(pids[i], NULL, 0);
    }
    close(ep);
    return rate;
}

/* "2026-11-21T15:05:06.818204Z" at the start of a log line -> seconds; 0 if none. */
static double log_seconds(const char *line)
{
    struct tm tm;
    char *rest;

    memset(&tm, 0, sizeof tm);
    rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest || *rest != '.')
        return 0;
    return (double)timegm(&tm) + strtod(rest, NULL);
}

/* memvisor over `tasks`: tasks/s from the first `ready` to `batch_done`, or -1. */
static double memvisor(const char *tasks, long n, int prefetch, const char *results,
                       bool accounting, bool lines)
{
    char pf[32], log[64], logopt[80], line[1024];
    double t0 = 0, t1 = 0;
    pid_t pid;
    int st;
    FILE *f;

    snprintf(pf, sizeof pf, "worker.prefetch=%d", prefetch);
    snprintf(log, sizeof log, "%s.log", tasks);
    snprintf(logopt, sizeof logopt, "log.file=%s", log);
    unlink(log);
    unlink(results); /* memvisor refuses a non-empty results file it is not told to resume */
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(MV_BUILD_DIR "/memvisor", "memvisor", "run", "-o", "supervisor.workers=2", "-o", pf,
              "-o", logopt, "-o", accounting ? "tasks.accounting=yes" : "tasks.accounting=no", "-o",
              lines ? "worker.protocol=lines" : "worker.protocol=api", "--tasks", tasks,
              "--results", results, "--",
              lines ? MV_BUILD_DIR "/bench/noop_lines" : MV_BUILD_DIR "/bench/noop_worker",
              (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    f = fopen(log, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!t0 && strstr(line, "event=ready"))
            t0 = log_seconds(line);
        if (strstr(line, "event=batch_done"))
            t1 = log_seconds(line);
    }
    if (f)
        fclose(f);
    unlink(log);
    return t0 > 0 && t1 > t0 ? (double)n / (t1 - t0) : -1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

/* The api cases: lock-step with accounting on and off, and prefetch P. Non-zero on a failure. */
static int api_cases(const char *tasks, const char *results, long n, int prefetch, int runs)
{
    double b1[16], m1[16], m0[16], bp[16], mp[16], mpn[16];

    /* Interleaved, so a noisy neighbour hurts every case alike. */
    for (int r = 0; r < runs; r++) {
        b1[r] = baseline(n, 1);
        m1[r] = memvisor(tasks, n, 1, results, true, false);
        m0[r] = memvisor(tasks, n, 1, results, false, false);
        bp[r] = baseline(n, prefetch);
        mp[r] = memvisor(tasks, n, prefetch, results, true, false);
        mpn[r] = memvisor(tasks, n, prefetch, "", true, false);
    }
    double B1 = median(b1, runs), M1 = median(m1, runs), M0 = median(m0, runs),
           BP = median(bp, runs), MP = median(mp, runs), MPN = median(mpn, runs);
    printf("dispatch: %ld no-op tasks, 2 api workers, median of %d runs\n", n, runs);
    printf("  lock-step   bare socketpair  %9.0f tasks/s\n", B1);
    printf("  lock-step   memvisor         %9.0f tasks/s  ratio %.2f of bare, accounting on "
           "(target >= 0.80)\n",
           M1, M1 / B1);
    printf("  lock-step   memvisor         %9.0f tasks/s  ratio %.2f of bare, accounting off\n", M0,
           M0 / B1);
    printf("  accounting costs %.1f us per task on average (%.0f%% of lock-step throughput; "
           "bench/accounting has it read by read, with percentiles)\n",
           1e6 / M1 - 1e6 / M0, 100.0 * (1.0 - M1 / M0));
    printf("  prefetch %-3d bare socketpair  %9.0f tasks/s\n", prefetch, BP);
    printf("  prefetch %-3d memvisor         %9.0f tasks/s  ratio %.2f of bare (results file)\n",
           prefetch, MP, MP / BP);
    printf("  prefetch %-3d memvisor         %9.0f tasks/s  (no results file; target >= 1M)\n",
           prefetch, MPN);
    return M1 < 0 || M0 < 0 || MP < 0 || MPN < 0;
}

/* The lines cases: prefetch 1, 8 and 64, against bare pipes. Non-zero on a failure. */
static int lines_cases(const char *tasks, const char *results, long n, int runs)
{
    static const int pf[] = {1, 8, 64};
    double b[3][16], m[3][16], B[3], M[3];
    int bad = 0;

    for (int r = 0; r < runs; r++)
        for (int i = 0; i < 3; i++) {
            b[i][r] = baseline_lines(n, pf[i]);
            m[i][r] = memvisor(tasks, n, pf[i], results, true, true);
        }
    printf("dispatch: %ld no-op tasks, 2 lines workers, accounting on, median of %d runs\n", n,
           runs);
    for (int i = 0; i < 3; i++) {
        B[i] = median(b[i], runs);
        M[i] = median(m[i], runs);
        bad |= M[i] < 0;
        printf("  prefetch %-3d bare pipes %9.0f tasks/s  memvisor %9.0f tasks/s  ratio %.2f  "
               "(%.1fx prefetch 1)\n",
               pf[i], B[i], M[i], M[i] / B[i], M[i] / M[0]);
    }
    return bad;
}

int main(int argc, char **argv)
{
    long n = 200000;
    int prefetch = 64, runs = 3, bad = 0;
    const char *mode = "both";
    char tasks[] = "/tmp/mv-bench-tasks-XXXXXX", results[64];
    FILE *f;
    int fd;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc)
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--prefetch") && i + 1 < argc)
            prefetch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = argv[++i];
        else {
            fprintf(stderr, "usage: dispatch [--tasks N] [--prefetch P] [--runs R] "
                            "[--mode api|lines|both]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 16 || n < 1 || prefetch < 1 || prefetch > 4096 ||
        (strcmp(mode, "api") && strcmp(mode, "lines") && strcmp(mode, "both")))
        return 2;
    fd = mkstemp(tasks);
    f = fdopen(fd, "w");
    for (long i = 0; i < n; i++)
        fputs("x\n", f);
    fclose(f);
    snprintf(results, sizeof results, "%s.jsonl", tasks);
    if (strcmp(mode, "lines") != 0)
        bad |= api_cases(tasks, results, n, prefetch, runs);
    if (strcmp(mode, "api") != 0)
        bad |= lines_cases(tasks, results, n, runs);
    unlink(tasks);
    unlink(results);
    return bad;
}
