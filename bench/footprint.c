/*
 * bench/footprint: the supervisor's own memory with W (64) workers and tasks flowing, read
 * from /proc/PID/smaps_rollup and /proc/PID/smaps (DESIGN §9: RSS <= 4 MiB).
 *
 *     footprint [--workers W] [--seconds S] [--task-us U] [--max-tasks M] [--spares N]
 *
 * memvisor runs W bench/stamp_worker `api` workers over tasks that sleep U us (10000: about
 * W*100 tasks a second), with per-task accounting, results and the timeline on (the
 * defaults); after the pool is ready it is sampled every 250 ms for S seconds (3). Printed:
 * the highest VmRSS (the process's own: RssAnon + RssFile + RssShmem) and its parts: heap,
 * other anonymous memory (thread stacks, libraries' bss, blocks malloc mmaps), file mappings
 * (the binary and its libraries: every page of them this process maps counts, shared with
 * other processes or not) with the workers' heap counter pages (shared memory, one 4 KiB
 * page a worker); what each mapped object holds resident now (the binary, each library, the
 * heap, the anonymous mappings, the stack, the heap counter pages); and the ratio to the
 * target. It measures and asserts nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TARGET_KIB 4096

typedef struct sample {
    long rss, anon, file, shmem, heap, other_anon, threads;
} sample_t;

static long status_field(pid_t pid, const char *key)
{
    char path[64], line[256];
    long v = -1;
    size_t k = strlen(key);
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ':')
            v = strtol(line + k + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

#define NAMES 64

/* Rss of the heap and of the other anonymous mappings, and the file-backed Rss, from smaps;
 * with `print`, the Rss of each mapped object (all its mappings together; the heap counter
 * pages as one line), largest first. */
static void smaps(pid_t pid, sample_t *s, bool print)
{
    char path[64], line[512], name[400] = "", names[NAMES][160];
    long rss[NAMES] = {0};
    int n = 0;
    bool anon = false;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        long kb;
        int off = 0, i;

        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) == 2 && off > 0) {
            snprintf(name, sizeof name, "%s", line + off);
            name[strcspn(name, "\n")] = '\0';
            anon = name[0] == '\0' || name[0] == '[';
            continue;
        }
        if (sscanf(line, "Rss: %ld kB", &kb) != 1)
            continue;
        if (strcmp(name, "[heap]") == 0)
            s->heap += kb;
        else if (anon && strcmp(name, "[stack]") != 0 && strncmp(name, "[v", 2) != 0)
            s->other_anon += kb;
        if (!anon)
            s->file += kb;
        /* One line per object: the workers' heap counter pages (/memfd:memvisor-heap) as one */
        for (i = 0; i < n && strncmp(names[i], name[0] ? name : "(anonymous)", 159) != 0; i++)
            ;
        if (i == n && n < NAMES)
            snprintf(names[n++], sizeof names[0], "%s", name[0] ? name : "(anonymous)");
        if (i < n)
            rss[i] += kb;
    }
    if (f)
        fclose(f);
    for (int k = 0; print && k < n; k++) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rss[i] > rss[best])
                best = i;
        if (rss[best] <= 0)
            break;
        printf("    %6ld KiB  %s\n", rss[best], names[best]);
        rss[best] = -1;
    }
}

static bool ready(const char *log)
{
    char line[2048];
    bool r = false;
    FILE *f = fopen(log, "r");

    while (f && !r && fgets(line, sizeof line, f))
        r = strstr(line, "event=pool_ready") != NULL;
    if (f)
        fclose(f);
    return r;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    int workers = 64, seconds = 3, task_us = 10000, max_tasks = 0, spares = 0;
    char dir[] = "/tmp/mv-bench-footprint-XXXXXX", tasks[128], log[128], res[128], cmd[160];
    char o[6][300];
    sample_t best = {0};
    pid_t pid;
    FILE *f;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--task-us") && i + 1 < argc)
            task_us = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-tasks") && i + 1 < argc)
            max_tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--spares") && i + 1 < argc)
            spares = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: footprint [--workers W] [--seconds S] [--task-us U] "
                            "[--max-tasks M] [--spares N]\n");
            return 2;
        }
    }
    if (workers < 1 || workers > 1024 || seconds < 1 || task_us < 0 || !mkdtemp(dir))
        return 2;
    snprintf(tasks, sizeof tasks, "%s/tasks", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(res, sizeof res, "%s/results.jsonl", dir);
    f = fopen(tasks, "w");
    /* Enough for the whole run: W workers answering every task_us. */
    for (long i = 0; f && i < (long)workers * (seconds + 30) * (1000000L / (task_us + 100)); i++)
        fprintf(f, "%d\n", task_us);
    if (f)
        fclose(f);
    snprintf(o[0], sizeof o[0], "supervisor.workers=%d", workers);
    snprintf(o[1], sizeof o[1], "supervisor.state_dir=%s/state", dir);
    snprintf(o[2], sizeof o[2], "log.file=%s", log);
    snprintf(o[3], sizeof o[3], "limits.max_tasks=%d", max_tasks);
    snprintf(o[4], sizeof o[4], "recycle.spares=%d", spares);
    snprintf(o[5], sizeof o[5], "supervisor.grace_period=0");
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(MV_BUILD_DIR "/memvisor", "memvisor", "run", "-o", o[0], "-o", o[1], "-o", o[2], "-o",
              o[3], "-o", o[4], "-o", o[5], "--tasks", tasks, "--results", res, "--",
              MV_BUILD_DIR "/bench/stamp_worker", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600 && !ready(log); i++)
        sleep_ms(50);
    for (int i = 0; i < seconds * 4; i++) {
        sample_t s = {0};
        sleep_ms(250);
        s.rss = status_field(pid, "VmRSS");
        s.anon = status_field(pid, "RssAnon");
        s.shmem = status_field(pid, "RssShmem");
        s.threads = status_field(pid, "Threads");
        smaps(pid, &s, false);
        if (s.rss > best.rss)
            best = s;
    }
    printf("footprint: memvisor with %d api workers, tasks of %d us flowing%s, highest of %d "
           "samples\n",
           workers, task_us, max_tasks ? " and recycling" : "", seconds * 4);
    printf("  VmRSS %ld KiB = %.2f MiB  (target <= %d KiB: %.2fx of it)\n", best.rss,
           best.rss / 1024.0, TARGET_KIB, (double)best.rss / TARGET_KIB);
    printf("  anonymous %ld KiB (heap %ld, other: thread stacks, libraries' bss and mmap'd "
           "blocks %ld), file-backed %ld KiB (of which shared memory %ld: the workers' heap "
           "counter pages, 4 KiB each), %ld threads\n",
           best.anon, best.heap, best.other_anon, best.file, best.shmem, best.threads);
    printf("  resident now, by object (shared libraries' text is mapped by the kernel's "
           "fault-around and shared with every process that maps them):\n");
    smaps(pid, &(sample_t){0}, true);
    kill(pid, SIGINT);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) != 0 || best.rss <= 0;
}
