/*
 * bench/recycle: how long a slot goes without a worker when one recycles. From the recycle
 * decision (memvisor's `event=recycle` line) to the replacement answering its first task (the
 * time bench/stamp_worker writes in that answer; both clocks are CLOCK_REALTIME), p50/p90/p99
 * and max, for four ways of getting the replacement, raced in the same run:
 *
 *   at decision  [recycle] cgroup_ahead = no, spares = 0: the cgroup is made when the recycle
 *                is decided, then the process starts (main before issue 13; for `lines`
 *                workers this is why the replacement started after the old worker exited)
 *   ahead        cgroup_ahead = yes: the slot's next cgroup was made while the worker ran
 *   spares 1/2   [recycle] spares = 1 or 2: a started worker takes the slot
 *   successor    [recycle] successor = yes (and cgroup_ahead): the slot's next worker
 *                started when its worker was sent its last task (succ.h)
 * The four first run with successor = no.
 *
 *     recycle [--recycles N] [--max-tasks M] [--task-us U] [--workers W]
 *
 * Workload: W (2) C `api` workers, max_tasks M (50), each task sleeps U us (2000), so a
 * worker lives M*U and the pool recycles W/(M*U) times a second (20/s by default); the
 * replacement's first task is answered at once (stamp_worker), so the figure is the
 * replacement's readiness, not the task. It measures and asserts nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXREC 8192

typedef struct rec {
    int slot, gen;
    double t; /* decision */
} rec_t;

typedef struct gen_pid {
    int slot, gen, pid;
} gen_pid_t;

typedef struct first {
    int pid;
    double t; /* first answer */
} first_t;

static rec_t recs[MAXREC];
static gen_pid_t gens[MAXREC];
static first_t firsts[MAXREC];
static int nrecs, ngens, nfirsts;

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

static int field(const char *line, const char *key)
{
    const char *p = strstr(line, key);

    return p ? atoi(p + strlen(key)) : -1;
}

static void parse_log(const char *path)
{
    char line[2048];
    FILE *f = fopen(path, "r");

    while (f && fgets(line, sizeof line, f)) {
        bool taken = strstr(line, "event=spare_taken ") != NULL;
        if (strstr(line, "event=recycle ") && !strstr(line, "reason=shutdown") && nrecs < MAXREC)
            recs[nrecs++] =
                (rec_t){field(line, " worker="), field(line, " gen="), log_seconds(line)};
        if ((strstr(line, "event=spawn ") || taken) && ngens < MAXREC &&
            field(line, " worker=") > 0)
            gens[ngens++] =
                (gen_pid_t){field(line, " worker="), field(line, " gen="), field(line, " pid=")};
    }
    if (f)
        fclose(f);
}

/* Each pid's earliest answer, from the results' "result":"PID SECONDS". */
static void parse_results(const char *path)
{
    char line[4096];
    FILE *f = fopen(path, "r");

    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"result\":\"");
        char *end;
        int pid, i;
        double t;

        if (!p)
            continue;
        pid = (int)strtol(p + 10, &end, 10);
        t = strtod(end, NULL);
        for (i = 0; i < nfirsts && firsts[i].pid != pid; i++)
            ;
        if (i == nfirsts && nfirsts < MAXREC)
            firsts[nfirsts++] = (first_t){pid, t};
        else if (i < nfirsts && t < firsts[i].t)
            firsts[i].t = t;
    }
    if (f)
        fclose(f);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    int n;
    double p50, p90, p99, max;
} stats_t;

/* Decision -> first answer of the next generation of the same slot, in ms. */
static stats_t latencies(void)
{
    static double v[MAXREC];
    stats_t s = {0};

    for (int r = 0; r < nrecs; r++) {
        int pid = -1;
        for (int g = 0; g < ngens; g++)
            if (gens[g].slot == recs[r].slot && gens[g].gen == recs[r].gen + 1)
                pid = gens[g].pid;
        for (int i = 0; pid > 0 && i < nfirsts; i++)
            if (firsts[i].pid == pid && firsts[i].t >= recs[r].t)
                v[s.n++] = (firsts[i].t - recs[r].t) * 1e3;
    }
    if (s.n == 0)
        return s;
    qsort(v, (size_t)s.n, sizeof *v, cmp);
    s.p50 = v[s.n / 2];
    s.p90 = v[(s.n * 9) / 10];
    s.p99 = v[(s.n * 99) / 100];
    s.max = v[s.n - 1];
    return s;
}

static stats_t run(const char *dir, const char *tasks, int workers, int max_tasks, bool ahead,
                   int spares, bool successor)
{
    char log[256], res[256], state[300], o[7][300];
    pid_t pid;
    int st;

    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(res, sizeof res, "%s/results.jsonl", dir);
    snprintf(state, sizeof state, "supervisor.state_dir=%s/state", dir);
    snprintf(o[0], sizeof o[0], "supervisor.workers=%d", workers);
    snprintf(o[1], sizeof o[1], "limits.max_tasks=%d", max_tasks);
    snprintf(o[2], sizeof o[2], "recycle.cgroup_ahead=%s", ahead ? "yes" : "no");
    snprintf(o[3], sizeof o[3], "recycle.spares=%d", spares);
    snprintf(o[4], sizeof o[4], "log.file=%s", log);
    snprintf(o[5], sizeof o[5], "leak.detect=no");
    snprintf(o[6], sizeof o[6], "recycle.successor=%s", successor ? "yes" : "no");
    unlink(log);
    unlink(res);
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(MV_BUILD_DIR "/memvisor", "memvisor", "run", "-o", state, "-o", o[0], "-o", o[1],
              "-o", o[2], "-o", o[3], "-o", o[4], "-o", o[5], "-o", o[6], "--tasks", tasks,
              "--results", res, "--", MV_BUILD_DIR "/bench/stamp_worker", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    nrecs = ngens = nfirsts = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "recycle: memvisor failed (status %d); log in %s\n", st, log);
        return (stats_t){0};
    }
    parse_log(log);
    parse_results(res);
    return latencies();
}

int main(int argc, char **argv)
{
    int recycles = 100, max_tasks = 50, task_us = 2000, workers = 2;
    char dir[] = "/tmp/mv-bench-recycle-XXXXXX", tasks[128], cmd[160];
    const char *names[] = {"at decision (cgroup_ahead=no)", "cgroup ahead", "spares = 1",
                           "spares = 2", "successor"};
    stats_t s[5];
    FILE *f;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--recycles") && i + 1 < argc)
            recycles = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-tasks") && i + 1 < argc)
            max_tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--task-us") && i + 1 < argc)
            task_us = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: recycle [--recycles N] [--max-tasks M] [--task-us U] "
                            "[--workers W]\n");
            return 2;
        }
    }
    if (recycles < 1 || max_tasks < 1 || task_us < 0 || workers < 1 ||
        (long)recycles * max_tasks > 1000000 || !mkdtemp(dir))
        return 2;
    snprintf(tasks, sizeof tasks, "%s/tasks", dir);
    f = fopen(tasks, "w");
    for (long i = 0; f && i < (long)(recycles + workers) * max_tasks; i++)
        fprintf(f, "%d\n", task_us);
    if (f)
        fclose(f);
    s[0] = run(dir, tasks, workers, max_tasks, false, 0, false);
    s[1] = run(dir, tasks, workers, max_tasks, true, 0, false);
    s[2] = run(dir, tasks, workers, max_tasks, true, 1, false);
    s[3] = run(dir, tasks, workers, max_tasks, true, 2, false);
    s[4] = run(dir, tasks, workers, max_tasks, true, 0, true);
    printf("recycle: decision -> replacement's first answer, ms; %d C api workers, max_tasks %d, "
           "%d us tasks\n",
           workers, max_tasks, task_us);
    printf("  %-32s %5s %7s %7s %7s %7s  %s\n", "replacement", "n", "p50", "p90", "p99", "max",
           "p50 vs at decision");
    for (int i = 0; i < 5; i++)
        printf("  %-32s %5d %7.2f %7.2f %7.2f %7.2f  %.2fx%s\n", names[i], s[i].n, s[i].p50,
               s[i].p90, s[i].p99, s[i].max, s[i].p50 > 0 ? s[0].p50 / s[i].p50 : 0.0,
               i >= 2 ? "  (target p99 <= 5 ms)" : "");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) != 0 || s[0].n == 0 || s[3].n == 0;
}
