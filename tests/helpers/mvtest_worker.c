/*
 * mvtest_worker: the `api` worker the end-to-end tests drive; every task line is a command.
 *
 *   ok [TEXT]      done with TEXT (or "ok")
 *   echo ...       done with the task bytes unchanged, "echo" included (binary-safe)
 *   fail [TEXT]    fail with TEXT (or "fail")
 *   kind K REST    set the task kind to K, then behave as REST (empty REST: ok)
 *   say WORD REST  write "WORD pid=PID task=ID" on stderr (memvisor logs it: the tests wait
 *                  for that line to act mid-task), then behave as REST (empty REST: ok)
 *   spew N         write N lines "spew I pid=PID task=ID" on stderr (a chatty worker)
 *   crash          abort()
 *   exit N         _exit(N)
 *   sleep MS       sleep MS milliseconds, then done "slept=MS"
 *   alloc MIB      malloc + memset MIB MiB and keep it (a leak), done "allocated=MIB"
 *   allocfree MIB  malloc + memset + free + malloc_trim(0), done "freed=MIB"
 *   defer KIB      keep KIB KiB as garbage a collector frees: at the start of any task
 *                  after 8 such blocks (a generational collector's threshold), all of them
 *                  are freed -- by whatever task comes, of whatever kind, done "deferred=KIB"
 *   later N KIB    keep nothing for this process's first N calls of `later`, then KIB KiB
 *                  more each call (a leak that needs an older process: a feature turned on
 *                  after N requests), done "later=CALLS"
 *   thread KIB     start a thread that touches KIB KiB of its own stack and exits, never
 *                  joined nor detached: glibc keeps its stack (memory no malloc-family call
 *                  and no mmap of the worker's made), done "threads=N"
 *   joined KIB     the same thread, joined: its stack goes back to glibc's cache and the
 *                  next one reuses it (the process's memory rises once), done "joined=N"
 *   grow MIB MS    keep 1 MiB more every MS milliseconds until MIB MiB, done "grown=MIB"
 *   grace KIB MS   keep KIB KiB (touched) for MS milliseconds, then a thread of its own frees
 *                  it, between or during later tasks (a closed session kept for a grace
 *                  period: memory held for a time, bounded), done "grace=KIB"
 *   hold MIB       keep MIB MiB more (1 MiB at a time, no pause), write "held pid=PID task=ID"
 *                  on stderr, wait for SIGUSR1 (the test looks at its cgroup meanwhile), then
 *                  done "held=MIB" ("held=0" when no SIGUSR1 came within 120 s)
 *   cgroup         done with the worker's own cgroup: "cgroup=PATH" (the v2 "0::" line, else
 *                  the v1 memory line of /proc/self/cgroup)
 *   selfmem MIB    what the worker measures of itself around keeping MIB MiB more (touched):
 *                  done "usage=U0,U1 priv=P0,P1 pid=PID", its cgroup's usage (v1
 *                  memory.usage_in_bytes, v2 memory.current) and its private memory (statm:
 *                  resident - shared) at the task's start and end
 *   whoami         done with "uid=U gid=G groups=N pdeathsig=S": its ids, how many
 *                  supplementary groups it has, and the parent-death signal it was started
 *                  with (read before it arms its own)
 *   cgwrite        tries to open its own cgroup's hard-limit file for writing (v1
 *                  memory.limit_in_bytes, v2 memory.max) and writes nothing: done with
 *                  "cgwrite=ok", "cgwrite=denied" (EACCES/EPERM/EROFS) or "cgwrite=errno:N"
 *   subcg          makes cgroups inside its own (sub, sub/inner) with a child of its own in
 *                  the inner one, sleeping up to 120 s: done "subcg=PATH" (the inner one)
 *   enter_sub      makes a cgroup inside its own (self) and moves itself into it, as a v2
 *                  delegation asks of a process that gives cgroups to children: done
 *                  "entered=PATH"
 *   orphan MS CODE double-forks a grandchild that exits CODE after MS ms (its parent, the
 *                  child, exits at once, so the grandchild is an orphan); writes
 *                  "orphan=PID worker=PID" on stderr and is done with "orphan=PID" once the
 *                  child is reaped
 *   hang           pause() forever
 *   fds N          open N fds of /dev/null and keep them, done "fds=N"
 *   garbage        write 32 bytes that are no message to the socket, then go on
 *   oversize       write a header claiming a 0x7fffffff-byte payload, then go on
 *   outoforder     send DONE for task id + 1000, then go on
 *   twice          done "twice", sent at once, then the same task's DONE again ("again")
 *   big N          done with a result of N bytes
 *   answer MIB     keeps nothing and answers MIB MiB: what it measured of itself at its start
 *                  and before it made the answer, as tests/helpers/truth_worker.py answers
 *                  (JSON: "start" and "end" with "priv", "usage", "heap" (glibc's
 *                  uordblks + hblkhd), "free" (its fordblks), "pid", "task"), padded with
 *                  MIB MiB of 'x' in "pad";
 *                  the answer's buffer is freed once mvw_done returns
 *   anything else  fail "unknown command"
 *
 * Options: --alloc-at-start MIB (allocate and keep MIB MiB before mvw_open),
 * --crash-at-start (abort before mvw_open), --crash-at-start-slot N (the same when
 * MEMVISOR_SLOT is N: 0 is the warm template), --crash-first N FILE (abort before mvw_open
 * in the first N processes started: each appends a byte to FILE), --crash-every N FILE (the
 * same in every Nth process started), --fatal (exit MVW_EXIT_FATAL
 * before mvw_open), --no-hello (never call mvw_open; sleep forever), --crash-after N (abort when
 * task N+1 arrives, so that task is in flight), --ignore-stop (after STOP, sleep forever),
 * --ignore-term (ignore SIGTERM), --leak-forever MS (a `none` worker: never opens the API,
 * keeps 1 MiB more every MS milliseconds until it is killed), --start-ms MS (sleep MS
 * milliseconds before mvw_open: a slow start-up that takes no CPU).
 *
 * Deterministic: before anything abnormal (crash, exit, hang, raw bytes) the buffered answers
 * are flushed, so what memvisor received does not depend on timing. It never forks (but for
 * `orphan`), and it dies with its parent (PR_SET_PDEATHSIG) so a failed test leaves no stray
 * process. Core dumps are off.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: mvtest_worker [--alloc-at-start MIB] [--crash-at-start]\n"
            "       [--crash-at-start-slot N] [--crash-first N FILE] [--crash-every N FILE]\n"
            "       [--fatal]\n"
            "       [--no-hello]\n"
            "       [--crash-after N] [--ignore-stop] [--ignore-term] [--service SCRIPT]\n"
            "       [--leak-forever MS]\n");
    exit(2);
}

/* This process's start, counted in `path` (a byte appended by each): 1 for the first; -1
 * on an error. */
static long count_start(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    long k = -1;

    if (fd < 0)
        return -1;
    if (write(fd, "x", 1) == 1 && fstat(fd, &st) == 0)
        k = (long)st.st_size;
    close(fd);
    return k;
}

/* Sleeps forever (pause() returns on every caught signal). */
static void __attribute__((noreturn)) forever(void)
{
    for (;;)
        pause();
}

static void sleep_ms(unsigned long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Writes raw bytes to memvisor's socket, after what the library has buffered. */
static void raw_write(mvw_t *w, const void *p, size_t n)
{
    const char *c = p;
    ssize_t r;

    mvw_flush(w);
    while (n > 0) {
        r = send(mvw_fd(w), c, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        c += r;
        n -= (size_t)r;
    }
}

/* Whether task bytes p[0..n) start with the word `cmd`; sets *arg to what follows it. */
static int is_cmd(const char *p, size_t n, const char *cmd, const char **arg, size_t *arg_len)
{
    size_t k = strlen(cmd);

    if (n < k || memcmp(p, cmd, k) != 0 || (n > k && p[k] != ' '))
        return 0;
    *arg = n > k ? p + k + 1 : p + n;
    *arg_len = n > k ? n - k - 1 : 0;
    return 1;
}

/* The numeric argument of a command (0 when missing or malformed). */
static unsigned long num(const char *arg, size_t len)
{
    char tmp[24];

    if (len == 0 || len >= sizeof tmp)
        return 0;
    memcpy(tmp, arg, len);
    tmp[len] = '\0';
    return strtoul(tmp, NULL, 10);
}

/* Touches and keeps (or frees and trims) `mib` MiB. 0 or -ENOMEM. */
static int alloc_mib(unsigned long mib, int keep)
{
    static void **kept; /* reachable, so valgrind calls it "still reachable", like a cache */
    static size_t nkept;
    size_t size = (size_t)mib << 20;
    void *p = malloc(size ? size : 1);
    void **k;

    if (!p)
        return -ENOMEM;
    memset(p, 0x5a, size);
    /* Without this barrier GCC drops malloc+memset+free as dead code, and nothing is
     * ever charged to the worker. */
    __asm__ volatile("" : : "r"(p) : "memory");
    if (!keep) {
        free(p);
        malloc_trim(0);
        return 0;
    }
    k = realloc(kept, (nkept + 1) * sizeof *k);
    if (!k) {
        free(p);
        return -ENOMEM;
    }
    kept = k;
    kept[nkept++] = p;
    return 0;
}

/* Garbage waiting for a collector (the defer command). */
static void *garbage[8];
static size_t ngarbage;

/* The collector: runs at the start of every task, frees the garbage once there are 8. */
static void collect(void)
{
    if (ngarbage < sizeof garbage / sizeof garbage[0])
        return;
    while (ngarbage)
        free(garbage[--ngarbage]);
}

static int defer_kib(unsigned long kib)
{
    void *p = malloc(kib ? kib << 10 : 1);

    if (!p)
        return -ENOMEM;
    memset(p, 0x33, kib << 10);
    __asm__ volatile("" : : "r"(p) : "memory");
    garbage[ngarbage++] = p;
    return 0;
}

/* The later command: its calls in this process so far, and what it keeps after N of them. */
static int later_kib(unsigned long after, unsigned long kib, unsigned long *calls)
{
    static void **kept;
    static size_t nkept;
    void **k, *p;

    if (++*calls <= after)
        return 0;
    if (!(p = malloc(kib ? kib << 10 : 1)))
        return -ENOMEM;
    memset(p, 0x44, kib << 10);
    if (!(k = realloc(kept, (nkept + 1) * sizeof *k))) {
        free(p);
        return -ENOMEM;
    }
    kept = k;
    kept[nkept++] = p;
    return 0;
}

/* The body of the thread and joined commands' thread: it touches its stack and exits. */
static void *stack_toucher(void *arg)
{
    unsigned long kib = (unsigned long)(uintptr_t)arg;
    volatile unsigned char *buf = __builtin_alloca(kib << 10);

    for (size_t i = 0; i < kib << 10; i += 256)
        buf[i] = (unsigned char)i;
    return NULL;
}

/* The thread and joined commands: a thread that touches KIB KiB of its stack, joined or not
 * (the bug under test: neither joined nor detached, its stack is never given back). */
static int stack_thread(unsigned long kib, bool join, unsigned long *threads)
{
    pthread_t t;

    if (kib > 1024 || pthread_create(&t, NULL, stack_toucher, (void *)(uintptr_t)kib) != 0)
        return -1;
    if (join && pthread_join(t, NULL) != 0)
        return -1;
    ++*threads;
    return 0;
}

/* The grace command: a block freed MS ms later by a detached thread of its own. */
struct grace {
    void *block;
    unsigned long ms;
};

static void *grace_reaper(void *arg)
{
    struct grace *g = arg;

    nanosleep(&(struct timespec){(time_t)(g->ms / 1000), (long)(g->ms % 1000) * 1000000}, NULL);
    free(g->block);
    free(g);
    return NULL;
}

static int grace_keep(unsigned long kib, unsigned long ms)
{
    struct grace *g = malloc(sizeof *g);
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    if (!g || kib > 65536 || !(g->block = malloc(kib << 10))) {
        free(g);
        return -1;
    }
    memset(g->block, 'G', kib << 10);
    g->ms = ms;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, grace_reaper, g);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(g->block);
        free(g);
        return -1;
    }
    return 0;
}

/* Answers "NAME=V". */
static int done_num(mvw_t *w, const char *name, unsigned long v)
{
    char out[64];
    int n = snprintf(out, sizeof out, "%s=%lu", name, v);

    return mvw_done(w, out, (size_t)n);
}

/* Answers "cgroup=PATH": where this worker is, as the kernel says. */
static int own_cgroup(mvw_t *w)
{
    char line[512], out[600] = "", v2[600] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");

    while (f && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        line[strcspn(line, "\n")] = '\0';
        if (c2 && c2 == c1 + 1)
            snprintf(v2, sizeof v2, "cgroup=%s", c2 + 1);
        else if (c2 && memmem(c1, (size_t)(c2 - c1), "memory", 6))
            snprintf(out, sizeof out, "cgroup=%s", c2 + 1);
    }
    if (f)
        fclose(f);
    if (!out[0]) /* no v1 memory controller: the unified hierarchy's */
        memcpy(out, v2, sizeof out);
    if (!out[0])
        return mvw_fail(w, "no cgroup", 9);
    return mvw_done(w, out, strlen(out));
}

static int inherited_pdeathsig; /* read in main before this worker arms its own */

/* Answers "uid=U gid=G groups=N pdeathsig=S". */
static int whoami(mvw_t *w)
{
    char out[128];
    int n = snprintf(out, sizeof out, "uid=%u gid=%u groups=%d pdeathsig=%d", (unsigned)getuid(),
                     (unsigned)getgid(), getgroups(0, NULL), inherited_pdeathsig);

    return mvw_done(w, out, (size_t)n);
}

/* This worker's memory cgroup directory, as /proc/self/cgroup says: v1's memory hierarchy
 * (returns 1), else the unified one (2); 0 and "" without either. */
static int own_cgroup_dir(char *dir, size_t n)
{
    char line[512];
    FILE *f = fopen("/proc/self/cgroup", "re");
    int v = 0;

    dir[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        line[strcspn(line, "\n")] = '\0';
        if (c2 && memmem(c1, (size_t)(c2 - c1), "memory", 6)) {
            snprintf(dir, n, "/sys/fs/cgroup/memory%s", c2 + 1);
            v = 1;
        } else if (c2 && c2 == c1 + 1 && !dir[0]) {
            snprintf(dir, n, "/sys/fs/cgroup%s", c2 + 1);
            v = 2;
        }
    }
    if (f)
        fclose(f);
    return v;
}

/* Answers whether its own cgroup's hard-limit file opens for writing (nothing is written). */
static int cgwrite(mvw_t *w)
{
    char dir[700], path[760] = "", out[64];
    int v = own_cgroup_dir(dir, sizeof dir), fd, n;

    if (v)
        snprintf(path, sizeof path, "%s/%s", dir, v == 1 ? "memory.limit_in_bytes" : "memory.max");
    fd = path[0] ? open(path, O_WRONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        close(fd);
        return mvw_done(w, "cgwrite=ok", 10);
    }
    if (errno == EACCES || errno == EPERM || errno == EROFS)
        return mvw_done(w, "cgwrite=denied", 14);
    n = snprintf(out, sizeof out, "cgwrite=errno:%d", path[0] ? errno : 0);
    return mvw_done(w, out, (size_t)n);
}

/* Makes cgroups inside its own, sub/inner, and a child that joins sub/inner and sleeps (at
 * most 120 s: it does not die with this worker, whose cgroup's removal must kill it);
 * answers "subcg=PATH" (the inner one) once the child is in it, else fails with why. */
static int subcg(mvw_t *w)
{
    char dir[700], inner[760], procs[800], out[800];
    int p[2];
    pid_t child;
    char c = 0;

    own_cgroup_dir(dir, sizeof dir);
    snprintf(inner, sizeof inner, "%s/sub", dir);
    if (!dir[0] || mkdir(inner, 0755) < 0)
        return mvw_fail(w, "subcg: mkdir sub failed", 23);
    snprintf(inner, sizeof inner, "%s/sub/inner", dir);
    snprintf(procs, sizeof procs, "%s/cgroup.procs", inner);
    if (mkdir(inner, 0755) < 0 || pipe(p) < 0)
        return mvw_fail(w, "subcg: mkdir sub/inner failed", 29);
    mvw_flush(w);
    child = fork();
    if (child == 0) {
        FILE *pf = fopen(procs, "we");
        prctl(PR_SET_PDEATHSIG, 0);
        close(p[0]);
        c = pf && fprintf(pf, "%d\n", (int)getpid()) > 0 && fclose(pf) == 0 ? 'y' : 'n';
        if (write(p[1], &c, 1) != 1 || c != 'y')
            _exit(1);
        close(p[1]);
        sleep(120);
        _exit(0);
    }
    close(p[1]);
    if (child < 0 || read(p[0], &c, 1) != 1 || c != 'y') {
        close(p[0]);
        return mvw_fail(w, "subcg: the child did not join sub/inner", 39);
    }
    close(p[0]);
    snprintf(out, sizeof out, "subcg=%s", inner);
    return mvw_done(w, out, strlen(out));
}

/* Makes `self` inside its own cgroup and moves itself into it; answers "entered=PATH". */
static int enter_sub(mvw_t *w)
{
    char dir[700], sub[760], procs[800], out[800];
    bool moved;
    FILE *f;

    own_cgroup_dir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/self", dir);
    snprintf(procs, sizeof procs, "%s/cgroup.procs", sub);
    if (!dir[0] || mkdir(sub, 0755) < 0)
        return mvw_fail(w, "enter_sub: mkdir self failed", 28);
    f = fopen(procs, "we");
    moved = f && fprintf(f, "%d\n", (int)getpid()) > 0;
    if (f && fclose(f) != 0)
        moved = false;
    if (!moved)
        return mvw_fail(w, "enter_sub: could not move into self", 35);
    snprintf(out, sizeof out, "entered=%s", sub);
    return mvw_done(w, out, strlen(out));
}

/* Double-forks a grandchild that exits `code` after `ms`; answers "orphan=PID". */
static int orphan(mvw_t *w, unsigned long ms, int code)
{
    int p[2], st;
    pid_t child, grandchild = 0;

    if (pipe(p) < 0)
        return mvw_fail(w, "pipe failed", 11);
    mvw_flush(w);
    child = fork();
    if (child == 0) {
        pid_t g = fork();
        if (g == 0) {
            close(p[0]);
            close(p[1]);
            prctl(PR_SET_PDEATHSIG, 0); /* an orphan outlives its parent on purpose */
            sleep_ms(ms);
            _exit(code);
        }
        (void)!write(p[1], &g, sizeof g);
        _exit(0);
    }
    close(p[1]);
    if (child < 0 || read(p[0], &grandchild, sizeof grandchild) != (ssize_t)sizeof grandchild) {
        close(p[0]);
        return mvw_fail(w, "fork failed", 11);
    }
    close(p[0]);
    waitpid(child, &st, 0);
    /* Reparented by now (at the child's exit, before its wait): the test may look. */
    fprintf(stderr, "orphan=%d worker=%d\n", (int)grandchild, (int)getpid());
    fflush(stderr);
    return done_num(w, "orphan", (unsigned long)grandchild);
}

/* This process's cgroup usage (v2 memory.current, else v1 memory.usage_in_bytes), -1 when
 * unknown. */
static long long own_usage(void)
{
    char line[512], path[700] = "";
    long long v = -1;
    FILE *f = fopen("/proc/self/cgroup", "re");

    while (f && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        line[strcspn(line, "\n")] = '\0';
        if (c2 && c2 != c1 + 1 && memmem(c1, (size_t)(c2 - c1), "memory", 6))
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", c2 + 1);
        else if (c2 && c2 == c1 + 1 && !path[0])
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", c2 + 1);
    }
    if (f)
        fclose(f);
    f = path[0] ? fopen(path, "re") : NULL;
    if (f && fscanf(f, "%lld", &v) != 1)
        v = -1;
    if (f)
        fclose(f);
    return v;
}

/* This process's private memory as statm gives it (resident - shared), -1 when unknown. */
static long long own_private(void)
{
    long long size, res = -1, shared = 0;
    FILE *f = fopen("/proc/self/statm", "re");

    if (f && fscanf(f, "%lld %lld %lld", &size, &res, &shared) != 3)
        res = -1;
    if (f)
        fclose(f);
    return res < 0 ? -1 : (res - shared) * sysconf(_SC_PAGESIZE);
}

/* Answers what it measured of itself around keeping `mib` MiB more. */
static int self_measured(mvw_t *w, unsigned long mib)
{
    long long u0 = own_usage(), p0 = own_private(), u1, p1;
    char out[160];
    int n;

    if (alloc_mib(mib, 1) < 0)
        return mvw_fail(w, "out of memory", 13);
    u1 = own_usage();
    p1 = own_private();
    n = snprintf(out, sizeof out, "usage=%lld,%lld priv=%lld,%lld pid=%d", u0, u1, p0, p1,
                 (int)getpid());
    return mvw_done(w, out, (size_t)n);
}

/* Live heap bytes as glibc's allocator sees them (mallinfo2), and the free bytes it holds
 * in *free_bytes; -1 when unknown. */
static long long own_heap(long long *free_bytes)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();

    *free_bytes = (long long)mi.fordblks;
    return (long long)(mi.uordblks + mi.hblkhd);
#else
    *free_bytes = -1;
    return -1;
#endif
}

/* "answer MIB": keeps nothing, answers MIB MiB (its own figures, then the padding) from a
 * buffer it frees once mvw_done returns. */
static int big_answer(mvw_t *w, const char *task, size_t task_len, unsigned long mib)
{
    long long f0, f1, p0 = own_private(), u0 = own_usage(), h0 = own_heap(&f0), p1, u1, h1;
    size_t pad = (size_t)mib << 20, n;
    char *out;
    int rc;

    p1 = own_private();
    u1 = own_usage();
    h1 = own_heap(&f1);
    out = malloc(512 + pad);
    if (!out)
        return mvw_fail(w, "out of memory", 13);
    n = (size_t)snprintf(out, 512,
                         "{\"task\":\"%.*s\",\"cgroup\":\"\",\"pid\":%d,"
                         "\"start\":{\"priv\":%lld,\"usage\":%lld,\"peak\":-1,\"heap\":%lld,"
                         "\"free\":%lld},"
                         "\"end\":{\"priv\":%lld,\"usage\":%lld,\"peak\":-1,\"heap\":%lld,"
                         "\"free\":%lld},\"pad\":\"",
                         (int)(task_len < 64 ? task_len : 64), task, (int)getpid(), p0, u0, h0, f0,
                         p1, u1, h1, f1);
    memset(out + n, 'x', pad);
    n += pad;
    memcpy(out + n, "\"}", 2);
    rc = mvw_done(w, out, n + 2);
    free(out);
    return rc;
}

/* Runs one command (the task bytes p[0..n)) and answers it. */
static int run(mvw_t *w, const mvw_task_t *t, const char *p, size_t n)
{
    const char *arg;
    size_t len;

    if (is_cmd(p, n, "ok", &arg, &len))
        return len ? mvw_done(w, arg, len) : mvw_done(w, "ok", 2);
    if (is_cmd(p, n, "echo", &arg, &len))
        return mvw_done(w, p, n); /* the whole task (or REST under "kind") */
    if (is_cmd(p, n, "fail", &arg, &len))
        return len ? mvw_fail(w, arg, len) : mvw_fail(w, "fail", 4);
    if (is_cmd(p, n, "kind", &arg, &len)) {
        const char *sp = memchr(arg, ' ', len);
        size_t klen = sp ? (size_t)(sp - arg) : len;
        char kind[256];

        if (klen == 0 || klen >= sizeof kind)
            return mvw_fail(w, "bad kind", 8);
        memcpy(kind, arg, klen);
        kind[klen] = '\0';
        if (mvw_set_kind(w, kind) < 0)
            return mvw_fail(w, "bad kind", 8);
        if (!sp)
            return mvw_done(w, "ok", 2);
        return run(w, t, sp + 1, len - klen - 1);
    }
    if (is_cmd(p, n, "say", &arg, &len)) {
        const char *sp = memchr(arg, ' ', len);
        size_t wlen = sp ? (size_t)(sp - arg) : len;

        mvw_flush(w);
        fprintf(stderr, "%.*s pid=%d task=%" PRIu64 "\n", (int)wlen, arg, (int)getpid(), t->id);
        fflush(stderr);
        if (!sp)
            return mvw_done(w, "ok", 2);
        return run(w, t, sp + 1, len - wlen - 1);
    }
    if (is_cmd(p, n, "spew", &arg, &len)) {
        unsigned long lines = num(arg, len);

        for (unsigned long i = 0; i < lines; i++)
            fprintf(stderr, "spew %lu pid=%d task=%" PRIu64 "\n", i, (int)getpid(), t->id);
        fflush(stderr);
        return done_num(w, "spewed", lines);
    }
    if (is_cmd(p, n, "crash", &arg, &len)) {
        mvw_flush(w);
        abort();
    }
    if (is_cmd(p, n, "exit", &arg, &len)) {
        mvw_flush(w);
        _exit((int)num(arg, len));
    }
    if (is_cmd(p, n, "sleep", &arg, &len)) {
        sleep_ms(num(arg, len));
        return done_num(w, "slept", num(arg, len));
    }
    if (is_cmd(p, n, "alloc", &arg, &len)) {
        if (alloc_mib(num(arg, len), 1) < 0)
            return mvw_fail(w, "out of memory", 13);
        return done_num(w, "allocated", num(arg, len));
    }
    if (is_cmd(p, n, "later", &arg, &len)) {
        static unsigned long calls;
        const char *sp = memchr(arg, ' ', len);
        unsigned long after = num(arg, sp ? (size_t)(sp - arg) : len);
        unsigned long kib = sp ? num(sp + 1, len - (size_t)(sp - arg) - 1) : 0;

        if (later_kib(after, kib, &calls) < 0)
            return mvw_fail(w, "out of memory", 13);
        return done_num(w, "later", calls);
    }
    if (is_cmd(p, n, "grace", &arg, &len)) {
        const char *sp = memchr(arg, ' ', len);
        unsigned long kib = num(arg, sp ? (size_t)(sp - arg) : len);

        if (!sp || grace_keep(kib, num(sp + 1, len - (size_t)(sp - arg) - 1)) < 0)
            return mvw_fail(w, "no grace", 8);
        return done_num(w, "grace", kib);
    }
    if (is_cmd(p, n, "thread", &arg, &len)) {
        static unsigned long threads;

        if (stack_thread(num(arg, len), false, &threads) < 0)
            return mvw_fail(w, "no thread", 9);
        return done_num(w, "threads", threads);
    }
    if (is_cmd(p, n, "joined", &arg, &len)) {
        static unsigned long joined;

        if (stack_thread(num(arg, len), true, &joined) < 0)
            return mvw_fail(w, "no thread", 9);
        return done_num(w, "joined", joined);
    }
    if (is_cmd(p, n, "grow", &arg, &len)) {
        const char *sp = memchr(arg, ' ', len);
        unsigned long mib = num(arg, sp ? (size_t)(sp - arg) : len);
        unsigned long step = sp ? num(sp + 1, len - (size_t)(sp - arg) - 1) : 1;

        mvw_flush(w);
        for (unsigned long i = 0; i < mib; i++) {
            if (alloc_mib(1, 1) < 0)
                return mvw_fail(w, "out of memory", 13);
            sleep_ms(step);
        }
        return done_num(w, "grown", mib);
    }
    if (is_cmd(p, n, "hold", &arg, &len)) {
        sigset_t usr1;

        /* Blocked before saying "held": a SIGUSR1 sent at once must wait for sigwait. */
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        for (unsigned long i = 0; i < num(arg, len); i++)
            if (alloc_mib(1, 1) < 0)
                return mvw_fail(w, "out of memory", 13);
        mvw_flush(w);
        fprintf(stderr, "held pid=%d task=%" PRIu64 "\n", (int)getpid(), t->id);
        fflush(stderr);
        /* Bounded, so that a test waiting for something that never comes ends with the log
         * ("held=0") instead of a deadlock. */
        if (sigtimedwait(&usr1, NULL, &(struct timespec){120, 0}) != SIGUSR1)
            return done_num(w, "held", 0);
        return done_num(w, "held", num(arg, len));
    }
    if (is_cmd(p, n, "cgroup", &arg, &len))
        return own_cgroup(w);
    if (is_cmd(p, n, "selfmem", &arg, &len))
        return self_measured(w, num(arg, len));
    if (is_cmd(p, n, "defer", &arg, &len)) {
        if (ngarbage == sizeof garbage / sizeof garbage[0] || defer_kib(num(arg, len)) < 0)
            return mvw_fail(w, "out of memory", 13);
        return done_num(w, "deferred", num(arg, len));
    }
    if (is_cmd(p, n, "whoami", &arg, &len))
        return whoami(w);
    if (is_cmd(p, n, "cgwrite", &arg, &len))
        return cgwrite(w);
    if (is_cmd(p, n, "subcg", &arg, &len))
        return subcg(w);
    if (is_cmd(p, n, "enter_sub", &arg, &len))
        return enter_sub(w);
    if (is_cmd(p, n, "orphan", &arg, &len)) {
        const char *sp = memchr(arg, ' ', len);
        unsigned long ms = num(arg, sp ? (size_t)(sp - arg) : len);
        int code = sp ? (int)num(sp + 1, len - (size_t)(sp - arg) - 1) : 0;

        return orphan(w, ms, code);
    }
    if (is_cmd(p, n, "allocfree", &arg, &len)) {
        if (alloc_mib(num(arg, len), 0) < 0)
            return mvw_fail(w, "out of memory", 13);
        return done_num(w, "freed", num(arg, len));
    }
    if (is_cmd(p, n, "hang", &arg, &len)) {
        mvw_flush(w);
        forever();
    }
    if (is_cmd(p, n, "fds", &arg, &len)) {
        for (unsigned long i = 0; i < num(arg, len); i++)
            if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0)
                return mvw_fail(w, "open failed", 11);
        return done_num(w, "fds", num(arg, len));
    }
    if (is_cmd(p, n, "garbage", &arg, &len)) {
        uint8_t junk[32];
        uint32_t x = 0x9e3779b9u;

        for (size_t i = 0; i < sizeof junk; i++) {
            x = x * 1664525u + 1013904223u;
            junk[i] = (uint8_t)(x >> 24);
        }
        junk[4] = junk[5] = 0xff; /* type 0xffff: no message can start like this */
        raw_write(w, junk, sizeof junk);
        return mvw_done(w, "garbage", 7);
    }
    if (is_cmd(p, n, "oversize", &arg, &len)) {
        uint8_t h[MVW_HEADER_SIZE];

        mvw_put_header(h, MVW_MSG_DONE, 0, t->id, 0x7fffffffu);
        raw_write(w, h, sizeof h);
        return mvw_done(w, "oversize", 8);
    }
    if (is_cmd(p, n, "twice", &arg, &len)) {
        uint8_t m[MVW_HEADER_SIZE + 5];
        int rc = mvw_done(w, "twice", 5);

        /* The same answer again, as a process forked from a worker might send it. */
        if (rc == 0 && (rc = mvw_flush(w)) == 0) {
            mvw_put_header(m, MVW_MSG_DONE, 0, t->id, 5);
            memcpy(m + MVW_HEADER_SIZE, "again", 5);
            raw_write(w, m, sizeof m);
        }
        return rc;
    }
    if (is_cmd(p, n, "outoforder", &arg, &len)) {
        uint8_t m[MVW_HEADER_SIZE + 10];

        mvw_put_header(m, MVW_MSG_DONE, 0, t->id + 1000, 10);
        memcpy(m + MVW_HEADER_SIZE, "outoforder", 10);
        raw_write(w, m, sizeof m);
        return mvw_done(w, "outoforder", 10);
    }
    if (is_cmd(p, n, "answer", &arg, &len))
        return big_answer(w, p, n, num(arg, len));
    if (is_cmd(p, n, "big", &arg, &len)) {
        size_t size = num(arg, len);
        char *out = malloc(size ? size : 1);
        int rc;

        if (!out)
            return mvw_fail(w, "out of memory", 13);
        for (size_t i = 0; i < size; i++)
            out[i] = (char)('a' + i % 26);
        rc = mvw_done(w, out, size);
        free(out);
        return rc;
    }
    return mvw_fail(w, "unknown command", 15);
}

/* Service mode: runs `script` (';'-separated: "begin KIND", "end STATUS", "alloc MIB",
 * "rawend ID" = an END written past the API, "rawbegin" = a BEGIN with no kind flag while one
 * is open), then serves until STOP. */
static int service(mvw_t *w, const char *script)
{
    char buf[4096], *save = NULL, *cmd;
    uint8_t raw[MVW_HEADER_SIZE + 4] = {0};
    int rc = 0;

    snprintf(buf, sizeof buf, "%s", script);
    for (cmd = strtok_r(buf, ";", &save); cmd && rc >= 0; cmd = strtok_r(NULL, ";", &save)) {
        while (*cmd == ' ')
            cmd++;
        if (!strncmp(cmd, "begin ", 6))
            rc = mvw_begin(w, cmd + 6);
        else if (!strncmp(cmd, "end ", 4))
            rc = mvw_end(w, atoi(cmd + 4));
        else if (!strncmp(cmd, "alloc ", 6))
            rc = alloc_mib(strtoul(cmd + 6, NULL, 10), 1);
        else if (!strncmp(cmd, "rawend ", 7)) {
            mvw_put_header(raw, MVW_MSG_END, 0, strtoull(cmd + 7, NULL, 10), 4);
            rc = write(mvw_fd(w), raw, sizeof raw) == (ssize_t)sizeof raw ? 0 : -errno;
        } else if (!strcmp(cmd, "rawbegin")) {
            mvw_put_header(raw, MVW_MSG_BEGIN, 0, 777, 0);
            rc = write(mvw_fd(w), raw, MVW_HEADER_SIZE) == MVW_HEADER_SIZE ? 0 : -errno;
        } else
            usage();
    }
    while (rc >= 0 && !mvw_stop_requested(w)) {
        struct pollfd pfd = {.fd = mvw_fd(w), .events = POLLIN};
        if (poll(&pfd, 1, -1) > 0)
            rc = mvw_poll(w);
    }
    return rc;
}

int main(int argc, char **argv)
{
    long crash_after = -1, ntasks = 0, leak_ms = 0;
    const struct rlimit no_core = {0, 0};
    int ignore_stop = 0, rc;
    const char *script = NULL;
    mvw_task_t t;
    mvw_t *w;

    prctl(PR_GET_PDEATHSIG, &inherited_pdeathsig);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setrlimit(RLIMIT_CORE, &no_core); /* `crash` must not litter the test directory */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--crash-at-start")) {
            abort();
        } else if (!strcmp(argv[i], "--crash-at-start-slot") && i + 1 < argc) {
            const char *slot = getenv("MEMVISOR_SLOT");
            if (slot && !strcmp(slot, argv[++i]))
                abort();
        } else if (!strcmp(argv[i], "--crash-first") && i + 2 < argc) {
            long n = strtol(argv[++i], NULL, 10), k = count_start(argv[++i]);
            if (k < 0)
                return 1;
            if (k <= n)
                abort();
        } else if (!strcmp(argv[i], "--crash-every") && i + 2 < argc) {
            long n = strtol(argv[++i], NULL, 10), k = count_start(argv[++i]);
            if (k < 0 || n < 1)
                return 1;
            if (k % n == 0)
                abort();
        } else if (!strcmp(argv[i], "--fatal")) {
            fprintf(stderr, "mvtest_worker: --fatal: exiting with %d\n", MVW_EXIT_FATAL);
            return MVW_EXIT_FATAL;
        } else if (!strcmp(argv[i], "--no-hello")) {
            forever();
        } else if (!strcmp(argv[i], "--alloc-at-start") && i + 1 < argc) {
            /* A worker too big for its limits before its first task. */
            if (alloc_mib(strtoul(argv[++i], NULL, 10), 1) < 0)
                return 1;
        } else if (!strcmp(argv[i], "--crash-after") && i + 1 < argc) {
            char *end;
            crash_after = strtol(argv[++i], &end, 10);
            if (*end || crash_after < 0)
                usage();
        } else if (!strcmp(argv[i], "--service") && i + 1 < argc) {
            script = argv[++i];
        } else if (!strcmp(argv[i], "--ignore-stop")) {
            ignore_stop = 1;
        } else if (!strcmp(argv[i], "--ignore-term")) {
            signal(SIGTERM, SIG_IGN);
        } else if (!strcmp(argv[i], "--start-ms") && i + 1 < argc) {
            long ms = strtol(argv[++i], NULL, 10);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
            if (ms < 0)
                usage();
            nanosleep(&ts, NULL);
        } else if (!strcmp(argv[i], "--leak-forever") && i + 1 < argc) {
            leak_ms = strtol(argv[++i], NULL, 10);
            if (leak_ms <= 0)
                usage();
        } else {
            usage();
        }
    }

    while (leak_ms > 0) {
        struct timespec ts = {leak_ms / 1000, (leak_ms % 1000) * 1000000};
        if (alloc_mib(1, 1) < 0)
            return 1;
        nanosleep(&ts, NULL);
    }
    rc = mvw_open(&w);
    if (rc < 0) {
        fprintf(stderr, "mvtest_worker: mvw_open: %s\n", mvw_strerror(rc));
        return MVW_EXIT_FATAL;
    }
    if (mvw_is_service(w)) {
        rc = service(w, script ? script : "");
        if (rc < 0)
            fprintf(stderr, "mvtest_worker: %s\n", mvw_strerror(rc));
        mvw_close(w);
        return rc < 0 ? 1 : 0;
    }
    while ((rc = mvw_next(w, &t)) > 0) {
        if (crash_after >= 0 && ntasks++ >= crash_after) {
            mvw_flush(w);
            abort();
        }
        collect();
        rc = run(w, &t, t.data, t.len);
        if (rc < 0)
            break;
    }
    if (rc == 0 && ignore_stop) {
        mvw_flush(w);
        forever();
    }
    if (rc < 0)
        fprintf(stderr, "mvtest_worker: %s\n", mvw_strerror(rc));
    mvw_close(w);
    return rc < 0 ? 1 : 0;
}
