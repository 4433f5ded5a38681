/*
 * heap: libmemvisor-heap.so (worker-api/heap/heap.c) and the supervisor's side of its page
 * (supervisor/heapmon.c), for real: tests/helpers/heap_probe runs under the preload with a
 * page made by mv_heapmon_open, makes known allocations on command, and the counters are
 * read between commands (the probe is blocked in read(2) then, so they hold still).
 * Python (through the pyenv/env exec chain, with PYTHONMALLOC=malloc and without) too.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "heapmon.h"
#include "suites.h"

#define PRELOAD      MV_BUILD_DIR "/libmemvisor-heap.so"
#define PROBE        MV_BUILD_DIR "/helpers/heap_probe"
#define STATIC_TRUE  MV_BUILD_DIR "/helpers/static_true"
#define PAGE_FD      7 /* where the child finds its page */
#define EXTRA_FD     8 /* a second page, for forkattach */
#define PAGE_FD_TEXT "7"

typedef struct probe {
    pid_t pid;
    FILE *in, *out;
    mv_heapmon_t hm;
    char err[64]; /* the child's stderr, a temp file */
} probe_t;

/* Starts argv under the preload. fdval: MEMVISOR_HEAP_FD's value (NULL: unset; "7": the page
 * made here). extra: an fd the child also gets, at EXTRA_FD (-1: none). env: more NAME=VALUE
 * entries (NULL-terminated, may be NULL). Waits for the first line, "ready". */
static void probe_start_env(probe_t *p, const char *const *argv, const char *fdval, int extra,
                            const char *const *env)
{
    int in[2], out[2], errfd;
    char line[64];

    memset(p, 0, sizeof *p);
    ck_assert_int_eq(mv_heapmon_open(&p->hm), 0);
    strcpy(p->err, "/tmp/mv-heap-err-XXXXXX");
    errfd = mkstemp(p->err);
    ck_assert_int_ge(errfd, 0);
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(errfd, STDERR_FILENO);
        dup2(p->hm.fd, PAGE_FD); /* dup2 clears FD_CLOEXEC: the child inherits the page */
        if (extra >= 0)
            dup2(extra, EXTRA_FD);
        setenv("LD_PRELOAD", PRELOAD, 1);
        if (fdval)
            setenv(MVH_ENV_FD, fdval, 1);
        else
            unsetenv(MVH_ENV_FD);
        for (; env && *env; env++)
            putenv((char *)*env);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(errfd);
    p->in = fdopen(in[1], "w");
    p->out = fdopen(out[0], "r");
    ck_assert_ptr_nonnull(p->in);
    ck_assert_ptr_nonnull(p->out);
    setvbuf(p->in, NULL, _IOLBF, 0);
    ck_assert_msg(fgets(line, sizeof line, p->out) != NULL, "%s did not start", argv[0]);
    ck_assert_str_eq(line, "ready\n");
}

static void probe_start(probe_t *p, const char *fdval, int extra)
{
    const char *argv[] = {PROBE, NULL};

    probe_start_env(p, argv, fdval, extra, NULL);
}

/* Sends one command; returns the number after "ok" (0 when there is none). */
static long cmd(probe_t *p, const char *fmt, ...)
{
    char line[256], text[128];
    va_list ap;
    long v = 0;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(p->in, "%s\n", text);
    ck_assert_msg(fgets(line, sizeof line, p->out) != NULL, "no answer to \"%s\"", text);
    ck_assert_msg(strncmp(line, "ok", 2) == 0, "\"%s\" answered %s", text, line);
    sscanf(line + 2, "%ld", &v);
    return v;
}

/* Sends a command that must fail. */
static void cmd_fails(probe_t *p, const char *text)
{
    char line[256];

    fprintf(p->in, "%s\n", text);
    ck_assert_msg(fgets(line, sizeof line, p->out) != NULL, "no answer to \"%s\"", text);
    ck_assert_msg(strncmp(line, "error", 5) == 0, "\"%s\" answered %s", text, line);
}

static mv_heap_reading_t rd(const probe_t *p)
{
    mv_heap_reading_t r;
    int e = mv_heapmon_read(&p->hm, &r);

    ck_assert_msg(e == 0, "mv_heapmon_read: %s", strerror(-e));
    return r;
}

/* Ends the probe (EOF on its stdin) and its page; returns its exit status. */
static int probe_stop(probe_t *p)
{
    int st;

    fclose(p->in);
    fclose(p->out);
    ck_assert_int_eq(waitpid(p->pid, &st, 0), p->pid);
    mv_heapmon_close(&p->hm);
    unlink(p->err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the page itself ---- */

START_TEST(page_is_sealed_cloexec_and_checked)
{
    mv_heapmon_t hm;
    mv_heap_reading_t r;
    uint32_t bad = 0xdeadbeef;

    ck_assert_int_eq(mv_heapmon_open(&hm), 0);
    ck_assert_int_ne(fcntl(hm.fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(mv_heapmon_read(&hm, &r), -ENODATA); /* nobody attached */
    ck_assert_int_eq(r.pid, 0);
    /* A worker cannot make the supervisor's mapping fault, nor add seals of its own. */
    ck_assert_int_eq(ftruncate(hm.fd, 0), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(ftruncate(hm.fd, 2 * MVH_PAGE_SIZE), -1);
    ck_assert_int_eq(fcntl(hm.fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
    /* A page whose header was overwritten is refused. */
    ck_assert_int_eq(pwrite(hm.fd, &bad, sizeof bad, 0), (ssize_t)sizeof bad);
    ck_assert_int_eq(mv_heapmon_read(&hm, &r), -EPROTO);
    mv_heapmon_close(&hm);
    ck_assert_int_eq(mv_heapmon_read(&hm, &r), -EBADF);
    ck_assert_int_eq(mv_heapmon_reset_peak(&hm), -EBADF);
    mv_heapmon_close(&hm); /* twice: harmless */
}
END_TEST

/* ---- the malloc family ---- */

START_TEST(malloc_calloc_free_count_usable_bytes)
{
    probe_t p;
    mv_heap_reading_t base, a, b;
    long u;

    probe_start(&p, PAGE_FD_TEXT, -1);
    base = a = rd(&p);
    ck_assert_int_eq(a.pid, p.pid);
    ck_assert_uint_eq(a.generation, 1);
    u = cmd(&p, "malloc 0 1000");
    b = rd(&p);
    ck_assert_int_ge(u, 1000);
    ck_assert_int_le(u, 1000 + 32);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, u);
    ck_assert_uint_eq(b.allocs - a.allocs, 1);
    ck_assert_uint_eq(b.frees, a.frees);
    /* A big block: glibc mmaps it with its internal __mmap, so it is live bytes, not mmap. */
    u = cmd(&p, "malloc 1 %d", 4 << 20);
    a = rd(&p);
    ck_assert_int_ge(u, 4 << 20);
    ck_assert_int_eq(a.live_bytes - b.live_bytes, u);
    ck_assert_int_eq(a.mmap_bytes, b.mmap_bytes);
    ck_assert_int_ge(a.peak_bytes, a.live_bytes + a.mmap_bytes);
    u = cmd(&p, "calloc 2 100 10");
    b = rd(&p);
    ck_assert_int_ge(u, 1000);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, u);
    cmd(&p, "free 1");
    cmd(&p, "free 2");
    cmd(&p, "free 0");
    a = rd(&p);
    ck_assert_uint_eq(a.frees - b.frees, 3);
    /* Everything freed: live bytes are back exactly where they were. */
    ck_assert_int_eq(a.live_bytes, base.live_bytes);
    ck_assert_uint_eq(a.allocs - a.frees, base.allocs - base.frees);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(realloc_growth_shrink_and_edges)
{
    probe_t p;
    mv_heap_reading_t a, b;
    long u0, u1;

    probe_start(&p, PAGE_FD_TEXT, -1);
    a = rd(&p);
    u0 = cmd(&p, "realloc 0 64"); /* realloc(NULL, 64) is an allocation */
    b = rd(&p);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, u0);
    ck_assert_uint_eq(b.allocs - a.allocs, 1);
    u1 = cmd(&p, "realloc 0 100000"); /* growth */
    a = rd(&p);
    ck_assert_int_ge(u1, 100000);
    ck_assert_int_eq(a.live_bytes - b.live_bytes, u1 - u0);
    ck_assert_uint_eq(a.reallocs - b.reallocs, 1);
    ck_assert_uint_eq(a.allocs, b.allocs);
    ck_assert_uint_eq(a.frees, b.frees);
    u0 = cmd(&p, "realloc 0 200"); /* shrink */
    b = rd(&p);
    ck_assert_int_lt(u0, u1);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, u0 - u1);
    u1 = cmd(&p, "reallocarray 0 100 50");
    a = rd(&p);
    ck_assert_int_ge(u1, 5000);
    ck_assert_int_eq(a.live_bytes - b.live_bytes, u1 - u0);
    ck_assert_int_eq(cmd(&p, "realloc 0 0"), 0); /* glibc frees, returns NULL */
    b = rd(&p);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, -u1);
    ck_assert_uint_eq(b.frees - a.frees, 1);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(aligned_allocations_count)
{
    static const char *const cmds[] = {"memalign 0 4096 100", "posix_memalign 1 64 1000",
                                       "aligned_alloc 2 256 512", "valloc 3 100", "pvalloc 4 100"};
    static const long least[] = {100, 1000, 512, 100, 4096};
    probe_t p;
    mv_heap_reading_t a, b;
    long u;

    probe_start(&p, PAGE_FD_TEXT, -1);
    for (int i = 0; i < 5; i++) {
        a = rd(&p);
        u = cmd(&p, "%s", cmds[i]);
        b = rd(&p);
        ck_assert_msg(u >= least[i], "%s: usable %ld", cmds[i], u);
        ck_assert_int_eq(b.live_bytes - a.live_bytes, u);
        ck_assert_uint_eq(b.allocs - a.allocs, 1);
    }
    for (int i = 0; i < 5; i++)
        cmd(&p, "free %d", i);
    a = rd(&p);
    ck_assert_uint_eq(a.frees - b.frees, 5);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(null_and_overflow_count_nothing)
{
    probe_t p;
    mv_heap_reading_t a, b;

    probe_start(&p, PAGE_FD_TEXT, -1);
    cmd(&p, "malloc 0 300");
    a = rd(&p);
    cmd(&p, "freenull");
    cmd(&p, "calloc_overflow");
    cmd(&p, "reallocarray_overflow 0");
    cmd(&p, "malloc 1 %lld", (long long)1 << 50); /* fails: ENOMEM */
    b = rd(&p);
    ck_assert_int_eq(b.live_bytes, a.live_bytes);
    ck_assert_uint_eq(b.allocs, a.allocs);
    ck_assert_uint_eq(b.frees, a.frees);
    ck_assert_uint_eq(b.reallocs, a.reallocs);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* ---- mappings ---- */

START_TEST(anonymous_mappings_count_and_others_do_not)
{
    probe_t p;
    mv_heap_reading_t a, b;
    const long pg = sysconf(_SC_PAGESIZE);

    probe_start(&p, PAGE_FD_TEXT, -1);
    a = rd(&p);
    cmd(&p, "mmap 0 %ld", 5 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 5 * pg);
    ck_assert_uint_eq(b.mmaps - a.mmaps, 1);
    cmd(&p, "munmap 0 %ld %ld", pg, pg); /* a hole in the middle */
    a = rd(&p);
    ck_assert_int_eq(a.mmap_bytes - b.mmap_bytes, -pg);
    ck_assert_uint_eq(a.munmaps - b.munmaps, 1);
    cmd(&p, "munmap 0 0 %ld", 5 * pg); /* both pieces, and the hole again */
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, -4 * pg);
    /* A reservation and a file mapping are not heap. */
    cmd(&p, "mmap_none 1 %ld", 64 * pg);
    cmd(&p, "mmap_file 2 %ld", pg);
    cmd(&p, "munmap 1 0 %ld", 64 * pg);
    cmd(&p, "munmap 2 0 %ld", pg);
    a = rd(&p);
    ck_assert_int_eq(a.mmap_bytes, b.mmap_bytes);
    /* mremap keeps a counted mapping counted, at its new size. */
    cmd(&p, "mmap 3 %ld", pg);
    cmd(&p, "mremap 3 %ld", 40 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 40 * pg);
    ck_assert_int_ge(b.peak_bytes, b.live_bytes + b.mmap_bytes);
    cmd(&p, "munmap 3 0 %ld", 40 * pg);
    a = rd(&p);
    ck_assert_int_eq(a.mmap_bytes, b.mmap_bytes - 40 * pg);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* A runtime's heap inside a PROT_NONE reservation grows by mprotect, not by mmap: what it
 * commits is counted, what it decommits is not, and nothing else that mprotect touches. */
START_TEST(commits_inside_a_reservation_count)
{
    probe_t p;
    mv_heap_reading_t a, b;
    const long pg = sysconf(_SC_PAGESIZE);

    probe_start(&p, PAGE_FD_TEXT, -1);
    cmd(&p, "mmap_none 1 %ld", 64 * pg);
    a = rd(&p);
    cmd(&p, "protect 1 0 %ld", 8 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 8 * pg);
    cmd(&p, "protect 1 %ld %ld", 8 * pg, 8 * pg); /* the next piece */
    cmd(&p, "protect 1 0 %ld", 16 * pg);          /* committed already: no change */
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 16 * pg);
    cmd(&p, "unprotect 1 %ld %ld", 4 * pg, 4 * pg); /* a decommit in the middle */
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 12 * pg);
    cmd(&p, "protect 1 0 %ld", 32 * pg); /* the hole and 16 more pages */
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 32 * pg);
    cmd(&p, "munmap 1 0 %ld", 64 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes, a.mmap_bytes);
    /* A page at a time joins its neighbour: more commits than the table has ranges. */
    cmd(&p, "mmap_none 1 %ld", 9000 * pg);
    cmd(&p, "protect_pages 1 0 9000");
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, 9000 * pg);
    ck_assert_uint_eq(b.flags & MVH_F_UNTRACKED, 0);
    cmd(&p, "munmap 1 0 %ld", 9000 * pg);
    /* A counted mapping made PROT_NONE is a reservation; read-write again, counted again. */
    cmd(&p, "mmap 3 %ld", 4 * pg);
    a = rd(&p);
    cmd(&p, "unprotect 3 0 %ld", 4 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes - a.mmap_bytes, -4 * pg);
    cmd(&p, "protect 3 0 %ld", 4 * pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes, a.mmap_bytes);
    cmd(&p, "munmap 3 0 %ld", 4 * pg);
    /* A file mapping made writable is not heap. */
    cmd(&p, "mmap_file 2 %ld", pg);
    a = rd(&p);
    cmd(&p, "protect 2 0 %ld", pg);
    b = rd(&p);
    ck_assert_int_eq(b.mmap_bytes, a.mmap_bytes);
    cmd(&p, "munmap 2 0 %ld", pg);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* ---- threads, fork, exec, spawn ---- */

START_TEST(threads_count_exactly)
{
    probe_t p;
    mv_heap_reading_t a, b;
    long kept;

    probe_start(&p, PAGE_FD_TEXT, -1);
    /* A first round makes glibc's per-thread structures (each thread's TLS vector is a
     * malloc block); the threads of the second reuse them from its stack cache. */
    cmd(&p, "threads 4 0 0");
    a = rd(&p);
    kept = cmd(&p, "threads 4 20000 100");
    b = rd(&p);
    /* Thread stacks are mmap'd by glibc internally; its per-thread arenas are not blocks. */
    ck_assert_uint_eq(b.allocs - a.allocs, 4 * 20000 + 4 * 100);
    ck_assert_uint_eq(b.frees - a.frees, 4 * 20000);
    ck_assert_int_ge(kept, 400 * 100);
    ck_assert_int_eq(b.live_bytes - a.live_bytes, kept);
    cmd(&p, "threads_free");
    a = rd(&p);
    ck_assert_int_eq(a.live_bytes - b.live_bytes, -kept);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(forked_child_counts_privately)
{
    probe_t p;
    mv_heap_reading_t a, b;

    probe_start(&p, PAGE_FD_TEXT, -1);
    cmd(&p, "malloc 0 5000");
    a = rd(&p);
    /* The child allocates 8 MiB and says how it counted: privately. */
    ck_assert_int_eq(cmd(&p, "fork %d", 8 << 20), MVH_STATE_PRIVATE);
    b = rd(&p);
    ck_assert_int_eq(b.pid, p.pid);
    ck_assert_int_eq(b.live_bytes, a.live_bytes);
    ck_assert_uint_eq(b.allocs, a.allocs);
    ck_assert_uint_eq(b.generation, a.generation);
    ck_assert_int_eq(cmd(&p, "state"), MVH_STATE_SHARED);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(forked_child_attaches_to_its_own_page)
{
    probe_t p;
    mv_heapmon_t second;
    mv_heap_reading_t a, b, c;
    long u;

    ck_assert_int_eq(mv_heapmon_open(&second), 0);
    probe_start(&p, PAGE_FD_TEXT, second.fd);
    cmd(&p, "malloc 0 70000");
    a = rd(&p);
    u = cmd(&p, "forkattach %d %d", EXTRA_FD, 300000);
    b = rd(&p);
    ck_assert_int_eq(mv_heapmon_read(&second, &c), 0);
    ck_assert_int_ne(c.pid, p.pid);
    ck_assert_uint_eq(c.generation, 1);
    ck_assert_int_ge(u, 300000);
    /* The child's page starts from the heap it inherited, then counts its own calls. */
    ck_assert_int_eq(c.live_bytes, a.live_bytes + u);
    ck_assert_uint_eq(c.allocs, 1);
    ck_assert_int_eq(b.live_bytes, a.live_bytes);
    ck_assert_uint_eq(b.allocs, a.allocs);
    /* A page another process owns is refused (the probe's own, to a child of the probe). */
    cmd_fails(&p, "forkattach " PAGE_FD_TEXT " 100");
    ck_assert_int_eq(probe_stop(&p), 0);
    mv_heapmon_close(&second);
}
END_TEST

START_TEST(spawned_program_leaves_the_page_alone)
{
    probe_t p;
    mv_heap_reading_t a, b;

    probe_start(&p, PAGE_FD_TEXT, -1);
    a = rd(&p);
    /* It inherits the fd and the environment, loads the library, finds the page taken. */
    ck_assert_int_eq(cmd(&p, "spawn %d", 4 << 20), MVH_STATE_OFF);
    b = rd(&p);
    ck_assert_int_eq(b.pid, p.pid);
    ck_assert_uint_eq(b.generation, a.generation);
    ck_assert_int_eq(b.live_bytes, a.live_bytes);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

START_TEST(exec_of_the_same_pid_starts_a_new_generation)
{
    probe_t p;
    mv_heap_reading_t a, b;
    char line[64];

    probe_start(&p, PAGE_FD_TEXT, -1);
    cmd(&p, "malloc 0 %d", 1 << 20);
    a = rd(&p);
    fprintf(p.in, "exec\n");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, p.out));
    ck_assert_str_eq(line, "ready\n");
    b = rd(&p);
    ck_assert_int_eq(b.pid, p.pid);
    ck_assert_uint_eq(b.generation, a.generation + 1);
    ck_assert_int_lt(b.live_bytes, a.live_bytes - (1 << 20) / 2); /* a fresh heap */
    ck_assert_int_eq(cmd(&p, "state"), MVH_STATE_SHARED);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* ---- inert ---- */

/* A file of one zeroed page: a regular file of the right size that is not a heap page. */
static int zero_page_fd(void)
{
    char path[] = "/tmp/mv-heap-zero-XXXXXX";
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(ftruncate(fd, MVH_PAGE_SIZE), 0);
    return fd;
}

START_TEST(inert_without_a_usable_page)
{
    /* unset; not a number; a closed fd; a regular file that is not a page */
    static const char *const vals[] = {NULL, "x7", "99", "8"};
    probe_t p;
    mv_heap_reading_t r;
    int zero = zero_page_fd();
    char *err;

    for (int i = 0; i < 4; i++) {
        probe_start(&p, vals[i], zero);
        ck_assert_int_eq(cmd(&p, "state"), MVH_STATE_OFF);
        ck_assert_int_ge(cmd(&p, "malloc 0 1000"), 1000);
        cmd(&p, "free 0");
        cmd(&p, "mmap 1 8192");
        ck_assert_int_eq(mv_heapmon_read(&p.hm, &r), -ENODATA);
        err = read_text(p.err);
        ck_assert_ptr_nonnull(err);
        if (vals[i])
            ck_assert_msg(strstr(err, "not counting") != NULL, "%s: stderr %s", vals[i], err);
        else
            ck_assert_str_eq(err, ""); /* no page: not a word */
        free(err);
        ck_assert_int_eq(probe_stop(&p), 0);
    }
    close(zero);
}
END_TEST

START_TEST(reset_peak_starts_a_new_window)
{
    probe_t p;
    mv_heap_reading_t a, b;

    probe_start(&p, PAGE_FD_TEXT, -1);
    cmd(&p, "malloc 0 %d", 8 << 20);
    cmd(&p, "free 0");
    a = rd(&p);
    ck_assert_int_ge(a.peak_bytes, (8 << 20) + mv_heap_total(&a));
    ck_assert_int_eq(mv_heapmon_reset_peak(&p.hm), 0);
    b = rd(&p);
    ck_assert_int_eq(b.peak_bytes, mv_heap_total(&b));
    cmd(&p, "malloc 0 %d", 1 << 20);
    cmd(&p, "free 0");
    a = rd(&p);
    ck_assert_int_ge(a.peak_bytes, (1 << 20) + mv_heap_total(&a));
    ck_assert_int_lt(a.peak_bytes, (8 << 20) + mv_heap_total(&a));
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* glibc 2.36's dlsym does not allocate; older ones (and other libcs) do, from inside the
 * heap library's own look-up of the real allocator. */
START_TEST(bootstrap_serves_allocations_made_by_dlsym)
{
    const char *argv[] = {PROBE, NULL};
    const char *env[] = {"LD_PRELOAD=" PRELOAD ":" MV_BUILD_DIR "/helpers/libdlsym_alloc.so", NULL};
    probe_t p;
    mv_heap_reading_t a, b;
    long u;

    probe_start_env(&p, argv, PAGE_FD_TEXT, -1, env);
    ck_assert_int_eq(cmd(&p, "state"), MVH_STATE_SHARED);
    a = rd(&p);
    u = cmd(&p, "calloc 0 10 100");
    cmd(&p, "realloc 0 5000");
    cmd(&p, "free 0");
    b = rd(&p);
    ck_assert_int_ge(u, 1000);
    ck_assert_int_eq(b.live_bytes, a.live_bytes);
    ck_assert_uint_eq(b.allocs - a.allocs, 1);
    ck_assert_uint_eq(b.frees - a.frees, 1);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* ---- Python ---- */

static const char py_probe[] = "import sys\n"
                               "keep = None\n"
                               "print('ready', flush=True)\n"
                               "for line in sys.stdin:\n"
                               "    w = line.split()\n"
                               "    if w[0] == 'bytes':\n"
                               "        keep = bytearray(int(w[1]))\n"
                               "    elif w[0] == 'small':\n"
                               "        keep = [str(i) * 3 for i in range(int(w[1]))]\n"
                               "    else:\n"
                               "        keep = None\n"
                               "    print('ok', flush=True)\n";

/* Python through its launcher (here a pyenv shim: bash execs python with the same pid). */
static void python_start(probe_t *p, const char *pymalloc)
{
    const char *argv[] = {"python3", "-S", "-c", py_probe, NULL};
    const char *env[] = {pymalloc, "PYTHONDONTWRITEBYTECODE=1", NULL};

    probe_start_env(p, argv, PAGE_FD_TEXT, -1, env);
}

START_TEST(python_bytearray_is_counted)
{
    const long n = 10 << 20;
    probe_t p;
    mv_heap_reading_t a, b;

    python_start(&p, "PYTHONMALLOC=malloc");
    cmd(&p, "bytes 1000");
    cmd(&p, "none");
    a = rd(&p);
    ck_assert_int_eq(a.pid, p.pid);
    cmd(&p, "bytes %ld", n);
    b = rd(&p);
    /* The interpreter's own comings and goings (the line read, dicts resized with a random
     * hash seed) move a few KiB either way. */
    ck_assert_int_ge(mv_heap_total(&b) - mv_heap_total(&a), n - 16 * 1024);
    ck_assert_int_le(mv_heap_total(&b) - mv_heap_total(&a), n + 64 * 1024);
    cmd(&p, "none");
    a = rd(&p);
    ck_assert_int_le(mv_heap_total(&a) - mv_heap_total(&b), -n + 64 * 1024);
    ck_assert_int_ge(mv_heap_total(&a) - mv_heap_total(&b), -n - 16 * 1024);
    ck_assert_int_eq(probe_stop(&p), 0);
}
END_TEST

/* 200,000 small strings and a list: under PYTHONMALLOC=malloc each is a malloc block; under
 * pymalloc (the default) they live in 1 MiB arenas, which pymalloc mmaps: seen either way. */
START_TEST(python_small_objects_are_counted)
{
    static const char *const modes[] = {"PYTHONMALLOC=malloc", "PYTHONMALLOC=pymalloc"};
    probe_t p;
    mv_heap_reading_t a, b;

    for (int i = 0; i < 2; i++) {
        python_start(&p, modes[i]);
        cmd(&p, "none");
        a = rd(&p);
        cmd(&p, "small 200000");
        b = rd(&p);
        /* 200,000 str objects of 50+ bytes each, and a list of as many pointers */
        ck_assert_msg(mv_heap_total(&b) - mv_heap_total(&a) >= 200000 * 50 + 200000 * 8,
                      "%s: grew %lld", modes[i],
                      (long long)(mv_heap_total(&b) - mv_heap_total(&a)));
        if (i == 0)
            ck_assert_uint_ge(b.allocs - a.allocs, 200000);
        else
            ck_assert_int_ge(b.mmap_bytes - a.mmap_bytes, 8 << 20);
        ck_assert_int_eq(probe_stop(&p), 0);
    }
}
END_TEST

/* ---- is a command dynamically linked ---- */

START_TEST(dynamic_check_reads_elf_and_scripts)
{
    mvrun_t r;
    char path[320], loop[256];

    run_init(&r, NULL);
    ck_assert_int_eq(mv_heapmon_dynamic("/bin/true"), 1);
    ck_assert_int_eq(mv_heapmon_dynamic("sh"), 1); /* through $PATH */
    ck_assert_int_eq(mv_heapmon_dynamic(PROBE), 1);
    ck_assert_int_eq(mv_heapmon_dynamic(STATIC_TRUE), 0);
    snprintf(path, sizeof path, "%s", run_file(&r, "a.sh", "#!/bin/sh\necho hi\n"));
    ck_assert_int_eq(mv_heapmon_dynamic(path), 1);
    snprintf(path, sizeof path, "%s",
             run_file(&r, "b.py", "#!/usr/bin/env -S PYTHONMALLOC=malloc python3 -u\n"));
    ck_assert_int_eq(mv_heapmon_dynamic(path), 1);
    snprintf(path, sizeof path, "%s", run_file(&r, "c.sh", "#! " STATIC_TRUE " -x\n"));
    ck_assert_int_eq(mv_heapmon_dynamic(path), 0);
    /* bad input */
    snprintf(loop, sizeof loop, "%s/loop", r.dir);
    snprintf(path, sizeof path, "#!%s\n", loop);
    run_file(&r, "loop", path);
    ck_assert_int_eq(mv_heapmon_dynamic(loop), -ELOOP);
    ck_assert_int_eq(mv_heapmon_dynamic("no-such-command-here"), -ENOENT);
    ck_assert_int_eq(mv_heapmon_dynamic("/nonexistent/x"), -ENOENT);
    ck_assert_int_eq(mv_heapmon_dynamic(""), -ENOENT);
    snprintf(path, sizeof path, "%s", run_file(&r, "text", "just words\n"));
    ck_assert_int_eq(mv_heapmon_dynamic(path), -ENOEXEC);
    snprintf(path, sizeof path, "%s", run_file(&r, "empty", "#!\n"));
    ck_assert_int_eq(mv_heapmon_dynamic(path), -ENOEXEC);
    /* An ELF cut after its header: the program headers are missing. */
    {
        char *elf = read_text("/bin/true");
        char cut[80];
        FILE *f;
        ck_assert_ptr_nonnull(elf);
        snprintf(cut, sizeof cut, "%s/cut", r.dir);
        f = fopen(cut, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(elf, 1, 64, f), 64);
        fclose(f);
        ck_assert_int_eq(mv_heapmon_dynamic(cut), -ENOEXEC);
        free(elf);
    }
    run_free(&r);
}
END_TEST

START_TEST(library_is_found_next_to_memvisor_or_in_lib)
{
    mvrun_t r;
    char buf[PATH_MAX], exe[256], lib[256], want[PATH_MAX];

    ck_assert_int_eq(mv_heapmon_library(MEMVISOR, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(realpath(PRELOAD, want));
    ck_assert_str_eq(buf, want);
    /* An install: bin/memvisor and lib/libmemvisor-heap.so */
    run_init(&r, NULL);
    snprintf(exe, sizeof exe, "%s/bin", r.dir);
    ck_assert_int_eq(mkdir(exe, 0755), 0);
    snprintf(lib, sizeof lib, "%s/lib", r.dir);
    ck_assert_int_eq(mkdir(lib, 0755), 0);
    snprintf(exe, sizeof exe, "%s/bin/memvisor", r.dir);
    ck_assert_int_eq(mv_heapmon_library(exe, buf, sizeof buf), -ENOENT);
    run_file(&r, "lib/libmemvisor-heap.so", "");
    ck_assert_int_eq(mv_heapmon_library(exe, buf, sizeof buf), 0);
    snprintf(lib, sizeof lib, "%s/lib/libmemvisor-heap.so", r.dir);
    ck_assert_ptr_nonnull(realpath(lib, want));
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(mv_heapmon_library(exe, buf, 8), -ENAMETOOLONG);
    run_free(&r);
}
END_TEST

/* The worker module of the source tree memvisor runs from (build/memvisor): none for an
 * installed bin/memvisor, whose parent has no worker-api/python/memvisor_worker.py. */
START_TEST(source_python_is_found_only_from_a_build_tree)
{
    mvrun_t r;
    char buf[PATH_MAX], path[256], want[PATH_MAX];

    ck_assert_int_eq(mv_heapmon_source_python(MEMVISOR, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(realpath(SOURCE_DIR "/worker-api/python", want));
    ck_assert_str_eq(buf, want);
    run_init(&r, NULL);
    snprintf(path, sizeof path, "%s/bin", r.dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/bin/memvisor", r.dir);
    ck_assert_int_eq(mv_heapmon_source_python(path, buf, sizeof buf), -ENOENT);
    /* A directory without the module is not a source tree. */
    snprintf(path, sizeof path, "%s/worker-api", r.dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/worker-api/python", r.dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/bin/memvisor", r.dir);
    ck_assert_int_eq(mv_heapmon_source_python(path, buf, sizeof buf), -ENOENT);
    run_file(&r, "worker-api/python/memvisor_worker.py", "");
    ck_assert_int_eq(mv_heapmon_source_python(path, buf, sizeof buf), 0);
    snprintf(path, sizeof path, "%s/worker-api/python", r.dir);
    ck_assert_ptr_nonnull(realpath(path, want));
    ck_assert_str_eq(buf, want);
    snprintf(path, sizeof path, "%s/bin/memvisor", r.dir);
    ck_assert_int_eq(mv_heapmon_source_python(path, buf, 8), -ENAMETOOLONG);
    run_free(&r);
}
END_TEST

/* What runs python: the plan's judgement, through `env` and a script's "#!" too. */
START_TEST(python_commands_are_told_from_others)
{
    mvrun_t r;
    char *const py[] = {"python3", "w.py", NULL};
    char *const env_py[] = {"env", "A=1", "python3", "w.py", NULL};
    char *const sh[] = {"sh", "-c", "true", NULL};
    char *script[] = {NULL, NULL};

    ck_assert(mv_heapmon_python(py));
    ck_assert(mv_heapmon_python(env_py));
    ck_assert(!mv_heapmon_python(sh));
    ck_assert(!mv_heapmon_python(NULL));
    run_init(&r, NULL);
    script[0] = (char *)run_file(&r, "w", "#!/usr/bin/env python3\nprint(1)\n");
    ck_assert_int_eq(chmod(script[0], 0755), 0);
    ck_assert(mv_heapmon_python(script));
    run_free(&r);
}
END_TEST

Suite *heap_suite(void)
{
    Suite *s = suite_create("heap");
    TCase *page = tcase_create("page");
    TCase *counts = tcase_create("counts");
    TCase *procs = tcase_create("processes");
    TCase *python = tcase_create("python");
    TCase *files = tcase_create("files");

    tcase_set_timeout(counts, 20);
    tcase_set_timeout(procs, 20);
    tcase_set_timeout(python, 30);
    tcase_add_test(page, page_is_sealed_cloexec_and_checked);
    tcase_add_test(page, reset_peak_starts_a_new_window);
    tcase_add_test(counts, malloc_calloc_free_count_usable_bytes);
    tcase_add_test(counts, realloc_growth_shrink_and_edges);
    tcase_add_test(counts, aligned_allocations_count);
    tcase_add_test(counts, null_and_overflow_count_nothing);
    tcase_add_test(counts, anonymous_mappings_count_and_others_do_not);
    tcase_add_test(counts, commits_inside_a_reservation_count);
    tcase_add_test(procs, threads_count_exactly);
    tcase_add_test(procs, forked_child_counts_privately);
    tcase_add_test(procs, forked_child_attaches_to_its_own_page);
    tcase_add_test(procs, spawned_program_leaves_the_page_alone);
    tcase_add_test(procs, exec_of_the_same_pid_starts_a_new_generation);
    tcase_add_test(procs, inert_without_a_usable_page);
    tcase_add_test(procs, bootstrap_serves_allocations_made_by_dlsym);
    tcase_add_test(python, python_bytearray_is_counted);
    tcase_add_test(python, python_small_objects_are_counted);
    tcase_add_test(files, dynamic_check_reads_elf_and_scripts);
    tcase_add_test(files, library_is_found_next_to_memvisor_or_in_lib);
    tcase_add_test(files, source_python_is_found_only_from_a_build_tree);
    tcase_add_test(files, python_commands_are_told_from_others);
    suite_add_tcase(s, page);
    suite_add_tcase(s, counts);
    suite_add_tcase(s, procs);
    suite_add_tcase(s, python);
    suite_add_tcase(s, files);
    return s;
}
