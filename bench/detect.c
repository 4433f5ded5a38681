/*
 * bench/detect: how fast memvisor reacts when a worker crosses a memory limit, and by how
 * much the worker overshoots it (DESIGN §9: <= 10 ms, <= 1 MiB over).
 *
 *     detect [--runs N] [--rate MIB_PER_S] [--limit MIB]
 *
 * A worker (bench/grow_worker) grows at a fixed rate and records in a shared file when its
 * private memory crossed the limit, when it got STOP, and how big it was last. memvisor's
 * log (microsecond timestamps) says when it decided. Scenarios, each run N times:
 *
 *   soft, cgroup event   1-MiB tasks; the v1 threshold eventfd (v2: memory.events) fires
 *   soft, /proc 100 ms   the fallback: sampling every sample_interval (default and 10 ms)
 *   hard, cgroup         one task that keeps growing; the kernel stops it at the limit
 *   hard, /proc 100 ms   the fallback: memvisor's sampler kills it (default and 10 ms)
 *
 * Reported: detected = limit crossed -> memvisor's recycle (soft) or kill (hard) decision in
 * its log; overshoot = how far past the limit the worker got before it stopped growing (soft:
 * at its STOP, which by design waits for the task in hand, a 1-MiB task here; hard: at its
 * death). With the kernel enforcing the hard limit the worker never crosses: detected is
 * then the time from its death to memvisor's kernel_oom line, and overshoot is the kernel's
 * own peak of the cgroup minus the limit. This measures; it asserts nothing.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "detect_record.h"

#define MiB (1024LL * 1024)

typedef struct scenario {
    const char *name;
    int hard;           /* 0: soft limit */
    const char *cgroup; /* auto | off */
    const char *sample; /* sample_interval */
} scenario_t;

static const scenario_t scenarios[] = {
    {"soft, cgroup event", 0, "auto", "100ms"}, {"soft, /proc 100 ms", 0, "off", "100ms"},
    {"soft, /proc 10 ms", 0, "off", "10ms"},    {"hard, cgroup (kernel)", 1, "auto", "100ms"},
    {"hard, /proc 100 ms", 1, "off", "100ms"},  {"hard, /proc 10 ms", 1, "off", "10ms"},
};

/* "2026-11-21T15:05:06.818204Z" -> ns since the epoch; 0 if it does not parse. */
static int64_t log_time(const char *line)
{
    struct tm tm;
    char *rest;
    long us;

    memset(&tm, 0, sizeof tm);
    rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest || *rest != '.')
        return 0;
    us = strtol(rest + 1, NULL, 10);
    return (int64_t)timegm(&tm) * 1000000000 + (int64_t)us * 1000;
}

/* The time of the first log line containing every needle (NULL-terminated), or 0. */
static int64_t first_event(const char *log, const char *const *needles)
{
    FILE *f = fopen(log, "r");
    char line[4096];
    int64_t t = 0;

    while (f && !t && fgets(line, sizeof line, f)) {
        int all = 1;
        for (const char *const *n = needles; *n; n++)
            all &= strstr(line, *n) != NULL;
        if (all)
            t = log_time(line);
    }
    if (f)
        fclose(f);
    return t;
}

typedef struct sample {
    double detect_ms, over_mib;
} sample_t;

/* The kernel's peak of the worker's cgroup, as the quarantined task's attempt records it. */
static int64_t attempt_peak(const char *results)
{
    FILE *f = fopen(results, "r");
    char line[8192], *p;
    long long v = -1;

    if (f && fgets(line, sizeof line, f) && (p = strstr(line, "\"attempt_errors\"")) &&
        (p = strstr(p, "\"mem_peak\":")))
        v = atoll(p + 11);
    if (f)
        fclose(f);
    return v;
}

/* One run of a scenario; 0, or -1 when it could not be measured. */
static int run_once(const scenario_t *sc, int rate, int limit_mib, sample_t *out)
{
    char dir[] = "/tmp/mv-detect-XXXXXX", path[4][64], opt[5][128], rate_s[16], mark[32];
    detect_record_t rec;
    int64_t decided;
    pid_t pid;
    int fd, st;
    FILE *f;

    if (!mkdtemp(dir))
        return -1;
    snprintf(path[0], sizeof path[0], "%s/record", dir);
    snprintf(path[1], sizeof path[1], "%s/tasks", dir);
    snprintf(path[2], sizeof path[2], "%s/log", dir);
    snprintf(path[3], sizeof path[3], "%s/results", dir);
    fd = open(path[0], O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, sizeof rec) < 0)
        return -1;
    /* soft: 1-MiB tasks, enough to cross with room to spare; hard: one task that never ends */
    f = fopen(path[1], "w");
    for (int i = 0; i < (sc->hard ? 1 : limit_mib + 64); i++)
        fputs("x\n", f);
    fclose(f);
    snprintf(opt[0], sizeof opt[0], "limits.memory_%s=%dM", sc->hard ? "hard" : "soft", limit_mib);
    snprintf(opt[1], sizeof opt[1], "limits.memory_%s=0", sc->hard ? "soft" : "hard");
    snprintf(opt[2], sizeof opt[2], "supervisor.cgroup=%s", sc->cgroup);
    snprintf(opt[3], sizeof opt[3], "limits.sample_interval=%s", sc->sample);
    snprintf(opt[4], sizeof opt[4], "log.file=%s", path[2]);
    snprintf(rate_s, sizeof rate_s, "%d", rate);
    snprintf(mark, sizeof mark, "%lld", (long long)limit_mib * MiB);
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(MV_BUILD_DIR "/memvisor", "memvisor", "run", "-o", "supervisor.workers=1", "-o",
              opt[0], "-o", opt[1], "-o", opt[2], "-o", opt[3], "-o", opt[4], "-o",
              "tasks.max_attempts=1", "--tasks", path[1], "--results", path[3], "--",
              MV_BUILD_DIR "/bench/grow_worker", "--record", path[0], "--mark", mark, "--rate",
              rate_s, "--step", sc->hard ? "100000" : "1", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    if (pread(fd, &rec, sizeof rec, 0) != sizeof rec || !rec.last_ns)
        return -1;
    close(fd);
    if (sc->hard && !strcmp(sc->cgroup, "auto")) {
        int64_t peak = attempt_peak(path[3]);
        decided = first_event(path[2], (const char *const[]){"event=kernel_oom", NULL});
        if (peak < 0 || !first_event(path[2], (const char *const[]){"memory=\"cgroup", NULL}))
            return -1; /* no cgroup here */
        out->detect_ms = decided ? (double)(decided - rec.last_ns) / 1e6 : -1;
        out->over_mib = (double)(peak - (int64_t)limit_mib * MiB) / (double)MiB;
    } else {
        decided = first_event(
            path[2], sc->hard ? (const char *const[]){"reason=hard_limit", "action=kill", NULL}
                              : (const char *const[]){"reason=soft_limit", NULL});
        if (!rec.cross_ns)
            return -1;
        out->detect_ms = decided ? (double)(decided - rec.cross_ns) / 1e6 : -1;
        out->over_mib = (double)(rec.total - (int64_t)limit_mib * MiB) / (double)MiB;
    }
    unlink(path[0]);
    unlink(path[1]);
    unlink(path[2]);
    rmdir(dir);
    return out->detect_ms < 0 ? -1 : 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and max of v[0..n). */
static void stats(double *v, int n, double *med, double *max)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    *med = v[n / 2];
    *max = v[n - 1];
}

int main(int argc, char **argv)
{
    int runs = 10, rate = 64, limit = 64;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--limit"))
            limit = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 100 || rate < 1 || limit < 8) {
        fprintf(stderr, "usage: detect [--runs N] [--rate MIB_PER_S] [--limit MIB]\n");
        return 2;
    }
    printf("detect: a worker growing %d MiB/s crosses a %d MiB limit; median / max of %d runs\n",
           rate, limit, runs);
    printf("  %-22s %23s %23s\n", "scenario", "detected ms", "overshoot MiB");
    for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++) {
        double d[100], o[100], dm, dx, om, ox;
        int n = 0;
        for (int r = 0; r < runs; r++) {
            sample_t x;
            if (run_once(&scenarios[s], rate, limit, &x) == 0) {
                d[n] = x.detect_ms;
                o[n++] = x.over_mib;
            }
        }
        if (n == 0) {
            printf("  %-22s (no measurable run: no cgroup here?)\n", scenarios[s].name);
            continue;
        }
        stats(d, n, &dm, &dx);
        stats(o, n, &om, &ox);
        printf("  %-22s %10.3f / %10.3f %10.2f / %10.2f\n", scenarios[s].name, dm, dx, om, ox);
    }
    return 0;
}
