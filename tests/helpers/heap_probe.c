/*
 * heap_probe: makes known allocations on command, for tests/check_heap.c, which runs it
 * under libmemvisor-heap.so and reads the heap page between commands.
 *
 * It prints "ready" once, then reads one command a line from stdin and answers one line
 * ("ok [VALUE]" or "error WHAT"). Between commands it is blocked in read(2), so the
 * counters hold still while the test reads them. Nothing here allocates behind the test's
 * back after "ready": stdio's buffers are static, fgets reads into a static buffer, printf
 * of numbers does not allocate.
 *
 *   malloc S N | calloc S N M | realloc S N | reallocarray S N M | free S | freenull
 *   memalign S A N | posix_memalign S A N | aligned_alloc S A N | valloc S N | pvalloc S N
 *       -> ok USABLE (malloc_usable_size of slot S afterwards, 0 when NULL)
 *   calloc_overflow | reallocarray_overflow S    -> ok null (nothing allocated)
 *   mmap S N | mmap_none S N | mmap_file S N      -> ok (anonymous rw, PROT_NONE, a file)
 *   munmap S OFF LEN | mremap S NEWLEN            -> ok
 *   protect S OFF LEN | unprotect S OFF LEN       -> ok (mprotect read-write / PROT_NONE)
 *   protect_pages S OFF N                         -> ok (N pages read-write, one call each)
 *   threads T N K       T threads: N malloc/free pairs each, K blocks kept -> ok KEPT_USABLE
 *   threads_free        frees the kept blocks
 *   fork N              a child allocates N bytes and exits -> ok CHILD_STATE
 *   forkattach FD N     a child attaches to the page on FD, allocates N -> ok USABLE
 *   spawn N             posix_spawn of this program: it allocates N and exits -> ok STATE
 *   exec                exec of this program (same pid); the new image says "ready"
 *   state               -> ok memvisor_heap_state()
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memvisor/heap.h>

#define SLOTS   16
#define THREADS 8

extern char **environ;

static void *slot[SLOTS];  /* malloc-family blocks */
static void *mslot[SLOTS]; /* mappings */
static size_t maplen[SLOTS];
static void *kept[THREADS][1024];
static int nkept[THREADS];
static int (*heap_state)(void);
static volatile size_t huge = SIZE_MAX / 2; /* volatile: the compiler would refuse the call */
static int (*heap_attach)(int);

struct job {
    int id;
    long n, k;
};

static void *thread_main(void *arg)
{
    const struct job *j = arg;

    for (long i = 0; i < j->n; i++) {
        volatile char *p = malloc((size_t)(16 + i % 200));
        if (p)
            p[0] = 1;
        free((void *)p);
    }
    for (long i = 0; i < j->k && i < 1024; i++)
        kept[j->id][nkept[j->id]++] = malloc(100);
    return NULL;
}

static size_t usable(int s)
{
    return slot[s] ? malloc_usable_size(slot[s]) : 0;
}

static int threads(long t, long n, long k, size_t *kept_usable)
{
    pthread_t tid[THREADS];
    struct job jobs[THREADS];

    if (t < 1 || t > THREADS)
        return -1;
    for (long i = 0; i < t; i++) {
        jobs[i] = (struct job){(int)i, n, k};
        if (pthread_create(&tid[i], NULL, thread_main, &jobs[i]) != 0)
            return -1;
    }
    *kept_usable = 0;
    for (long i = 0; i < t; i++) {
        pthread_join(tid[i], NULL);
        for (int b = 0; b < nkept[i]; b++)
            *kept_usable += malloc_usable_size(kept[i][b]);
    }
    return 0;
}

/* A child that allocates n bytes (touched) and says, in its exit status, how it counted. */
static int fork_child(long n)
{
    int st;
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *p = malloc((size_t)n);
        if (p)
            memset(p, 1, (size_t)n);
        _exit(heap_state ? heap_state() : 9);
    }
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* A child that attaches to the page on fd, allocates n bytes, and writes their usable size. */
static long fork_attach(int fd, long n)
{
    int p[2], st;
    long got = -1;
    pid_t pid;

    if (!heap_attach || pipe(p) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        long u = -1;
        if (heap_attach(fd) == 0) {
            void *b = malloc((size_t)n);
            u = b ? (long)malloc_usable_size(b) : -1;
        }
        _exit(write(p[1], &u, sizeof u) == sizeof u ? 0 : 1);
    }
    close(p[1]);
    if (pid > 0 && read(p[0], &got, sizeof got) != sizeof got)
        got = -1;
    close(p[0]);
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return got;
}

static int spawn_self(const char *self, long n)
{
    char arg[32];
    char *argv[] = {(char *)self, "--alloc-and-exit", arg, NULL};
    pid_t pid;
    int st;

    snprintf(arg, sizeof arg, "%ld", n);
    if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0)
        return -1;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int map_cmd(const char *cmd, int s, long n, const char *self)
{
    if (strcmp(cmd, "mmap") == 0 || strcmp(cmd, "mmap_none") == 0) {
        int prot = cmd[4] ? PROT_NONE : PROT_READ | PROT_WRITE;
        mslot[s] = mmap(NULL, (size_t)n, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    } else {
        FILE *f = fopen(self, "r"); /* fopen allocates: the test allows for it */
        if (!f)
            return -1;
        mslot[s] = mmap(NULL, (size_t)n, PROT_READ, MAP_PRIVATE, fileno(f), 0);
        fclose(f);
    }
    if (mslot[s] == MAP_FAILED) {
        mslot[s] = NULL;
        return -1;
    }
    maplen[s] = (size_t)n;
    return 0;
}

/* A malloc-family command on slot s. 1 done, 0 not one of these, -1 it went wrong. */
static int alloc_cmd(const char *cmd, int s, long b, long c)
{
    if (strcmp(cmd, "malloc") == 0)
        slot[s] = malloc((size_t)b);
    else if (strcmp(cmd, "calloc") == 0)
        slot[s] = calloc((size_t)b, (size_t)c);
    else if (strcmp(cmd, "realloc") == 0) {
        void *q = realloc(slot[s], (size_t)b);
        if (q || b == 0)
            slot[s] = q;
    } else if (strcmp(cmd, "reallocarray") == 0) {
        void *q = reallocarray(slot[s], (size_t)b, (size_t)c);
        if (q)
            slot[s] = q;
    } else if (strcmp(cmd, "free") == 0) {
        free(slot[s]);
        slot[s] = NULL;
    } else if (strcmp(cmd, "freenull") == 0) {
        free(NULL);
    } else if (strcmp(cmd, "memalign") == 0 || strcmp(cmd, "aligned_alloc") == 0) {
        slot[s] =
            cmd[0] == 'm' ? memalign((size_t)b, (size_t)c) : aligned_alloc((size_t)b, (size_t)c);
        if (slot[s] && (uintptr_t)slot[s] % (uintptr_t)b)
            return -1;
    } else if (strcmp(cmd, "posix_memalign") == 0) {
        if (posix_memalign(&slot[s], (size_t)b, (size_t)c) != 0)
            slot[s] = NULL;
    } else if (strcmp(cmd, "valloc") == 0 || strcmp(cmd, "pvalloc") == 0) {
        slot[s] = cmd[0] == 'v' ? valloc((size_t)b) : pvalloc((size_t)b);
        if (slot[s] && (uintptr_t)slot[s] % (uintptr_t)sysconf(_SC_PAGESIZE))
            return -1;
    } else
        return 0;
    return 1;
}

/* A mapping command on mapping slot s. 1 done, 0 not one of these, -1 it failed. */
static int map_slot_cmd(const char *cmd, int s, long b, long c, const char *self)
{
    if (strncmp(cmd, "mmap", 4) == 0)
        return map_cmd(cmd, s, b, self) < 0 ? -1 : 1;
    if (strcmp(cmd, "munmap") == 0)
        return munmap((char *)mslot[s] + b, (size_t)c) < 0 ? -1 : 1;
    if (strcmp(cmd, "protect") == 0 || strcmp(cmd, "unprotect") == 0) {
        int prot = cmd[0] == 'p' ? PROT_READ | PROT_WRITE : PROT_NONE;
        return mprotect((char *)mslot[s] + b, (size_t)c, prot) < 0 ? -1 : 1;
    }
    if (strcmp(cmd, "protect_pages") == 0) {
        const long pg = sysconf(_SC_PAGESIZE);
        for (long i = 0; i < c; i++)
            if (mprotect((char *)mslot[s] + b + i * pg, (size_t)pg, PROT_READ | PROT_WRITE) < 0)
                return -1;
        return 1;
    }
    if (strcmp(cmd, "mremap") == 0) {
        void *q = mremap(mslot[s], maplen[s], (size_t)b, MREMAP_MAYMOVE);
        if (q == MAP_FAILED)
            return -1;
        mslot[s] = q, maplen[s] = (size_t)b;
        return 1;
    }
    return 0;
}

/* Commands about processes and threads; prints its own answer. 0 when not one of these. */
static int process_cmd(const char *cmd, long a, long b, long c, const char *self)
{
    char *argv[] = {(char *)self, NULL};
    size_t u;
    long r;

    if (strcmp(cmd, "threads") == 0)
        r = threads(a, b, c, &u) < 0 ? -1 : (long)u;
    else if (strcmp(cmd, "threads_free") == 0) {
        for (int t = 0; t < THREADS; t++)
            for (; nkept[t] > 0; nkept[t]--)
                free(kept[t][nkept[t] - 1]);
        r = 0;
    } else if (strcmp(cmd, "fork") == 0)
        r = fork_child(a);
    else if (strcmp(cmd, "spawn") == 0)
        r = spawn_self(self, a);
    else if (strcmp(cmd, "forkattach") == 0)
        r = fork_attach((int)a, b);
    else if (strcmp(cmd, "exec") == 0) {
        fflush(stdout);
        execv(self, argv);
        r = -1;
    } else if (strcmp(cmd, "state") == 0)
        r = heap_state ? heap_state() : -1;
    else
        return 0;
    if (r < 0)
        printf("error %s %s\n", cmd, strerror(errno));
    else
        printf("ok %ld\n", r);
    return 1;
}

/* One command; the answer goes to stdout. */
static void command(char *line, const char *self)
{
    char cmd[32] = "";
    long a = 0, b = 0, c = 0;
    int s, r;

    if (sscanf(line, "%31s %ld %ld %ld", cmd, &a, &b, &c) < 1)
        goto bad;
    s = a >= 0 && a < SLOTS ? (int)a : 0;
    if (strcmp(cmd, "calloc_overflow") == 0) {
        void *q = calloc(huge, 4);
        printf(q ? "error allocated\n" : "ok null\n");
        return;
    }
    if (strcmp(cmd, "reallocarray_overflow") == 0) {
        void *q = reallocarray(slot[s], huge, 4);
        printf(q || errno != ENOMEM ? "error allocated\n" : "ok null\n");
        return;
    }
    if (process_cmd(cmd, a, b, c, self))
        return;
    r = alloc_cmd(cmd, s, b, c);
    if (r > 0) {
        printf("ok %zu\n", usable(s));
        return;
    }
    if (r == 0 && (r = map_slot_cmd(cmd, s, b, c, self)) > 0) {
        printf("ok\n");
        return;
    }
bad:
    printf("error %s %s\n", cmd, strerror(errno));
}

int main(int argc, char **argv)
{
    static char line[256], inbuf[4096], outbuf[4096];
    const char *self = "/proc/self/exe";

    /* Buffers of our own: stdio would malloc them at first use, after "ready". */
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    heap_state = (int (*)(void))dlsym(RTLD_DEFAULT, "memvisor_heap_state");
    heap_attach = (int (*)(int))dlsym(RTLD_DEFAULT, "memvisor_heap_attach");
    if (argc == 3 && strcmp(argv[1], "--alloc-and-exit") == 0) {
        char *p = malloc((size_t)atol(argv[2]));
        if (p)
            memset(p, 1, (size_t)atol(argv[2]));
        return heap_state ? heap_state() : 9;
    }
    printf("ready\n");
    while (fgets(line, sizeof line, stdin))
        command(line, self);
    return 0;
}
