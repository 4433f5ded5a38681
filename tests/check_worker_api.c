/*
 * Tests of libmemvisor (include/memvisor/worker.h) over a real socketpair: the test plays
 * memvisor with the raw codec, the worker side runs in a forked child that reports through
 * its exit status (and stderr). Every child has an alarm and dies with the test
 * (PR_SET_PDEATHSIG); every test reaps its child, the teardown reaps leftovers.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/protocol.h>
#include <memvisor/worker.h>

#include "proto_util.h"
#include "suites.h"

/* ---- worker_api suite: the test is memvisor, a forked child is the worker ---------------- */

#define IO_TIMEOUT_S 5

struct sup {
    int fd;      /* memvisor's end of the socketpair */
    int sync[2]; /* the child writes a byte here to say "I got there" */
    pid_t pid;
    uint8_t *buf; /* what the worker sent, not decoded yet */
    size_t cap, pos, len;
    uint8_t *msg; /* the payload of the last sup_recv, NUL-terminated */
    size_t msg_cap;
};

static struct sup *live; /* for the teardown, should a test fail with its child alive */

/* Child side: a failed expectation exits with 99 after naming the line on stderr. */
#define CHILD_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                                      \
        if (a_ != b_) {                                                                          \
            fprintf(stderr, "%s:%d: child: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, \
                    a_, b_);                                                                     \
            _exit(99);                                                                           \
        }                                                                                        \
    } while (0)
#define CHILD_TRUE(c) CHILD_EQ(!!(c), 1)

/* Starts `fn` as the worker in a child with MEMVISOR_FD set; the fd is not close-on-exec,
 * as memvisor hands it over. */
static void sup_start(struct sup *s, int (*fn)(void *), void *arg)
{
    struct timeval tv = {IO_TIMEOUT_S, 0};
    int sv[2];

    memset(s, 0, sizeof *s);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(pipe2(s->sync, O_CLOEXEC), 0);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        char env[16];

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(20);
        close(sv[0]);
        close(s->sync[0]);
        snprintf(env, sizeof env, "%d", sv[1]);
        setenv(MVW_ENV_FD, env, 1);
        _exit(fn(arg));
    }
    live = s;
    close(sv[1]);
    close(s->sync[1]);
    s->fd = sv[0];
    fcntl(s->fd, F_SETFD, FD_CLOEXEC);
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    s->cap = 1 << 16;
    s->buf = malloc(s->cap);
    ck_assert_ptr_nonnull(s->buf);
}

/* Child: tells the test it reached a point. */
static void child_signal(const struct sup *s)
{
    CHILD_EQ(write(s->sync[1], "!", 1), 1);
}

/* Waits for child_signal(). */
static void sup_wait_signal(struct sup *s)
{
    struct pollfd p = {.fd = s->sync[0], .events = POLLIN};
    char c;

    ck_assert_msg(poll(&p, 1, IO_TIMEOUT_S * 1000) == 1, "the worker never signalled");
    ck_assert_int_eq(read(s->sync[0], &c, 1), 1);
}

static void sup_send_raw(struct sup *s, const void *p, size_t n)
{
    const uint8_t *c = p;

    while (n > 0) {
        ssize_t r = send(s->fd, c, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r > 0, "send to the worker: %s", strerror(errno));
        c += r;
        n -= (size_t)r;
    }
}

static void sup_send(struct sup *s, uint16_t type, uint16_t flags, uint64_t task, const void *p,
                     size_t len)
{
    uint8_t *m = malloc(MVW_HEADER_SIZE + len);

    ck_assert_ptr_nonnull(m);
    sup_send_raw(s, m, enc(m, type, flags, task, p, len));
    free(m);
}

/* Receives HELLO and answers GO. */
static void sup_handshake(struct sup *s, uint32_t slot, uint32_t prefetch, uint32_t mode);

/*
 * Receives the next message from the worker into *m (payload copied to s->msg, with a NUL
 * after it). Returns 0 at EOF; fails the test on a timeout or a malformed message.
 */
static int sup_recv(struct sup *s, struct mvw_msg *m)
{
    for (;;) {
        long n = dec(s->buf + s->pos, s->len - s->pos, MVW_FROM_WORKER, m);
        ssize_t r;

        ck_assert_int_ge(n, 0);
        if (n > 0) {
            if (s->msg_cap < m->h.length + 1) {
                s->msg_cap = m->h.length + 1;
                s->msg = realloc(s->msg, s->msg_cap);
                ck_assert_ptr_nonnull(s->msg);
            }
            memcpy(s->msg, m->payload, m->h.length);
            s->msg[m->h.length] = '\0';
            m->payload = s->msg;
            s->pos += (size_t)n;
            return 1;
        }
        memmove(s->buf, s->buf + s->pos, s->len - s->pos);
        s->len -= s->pos;
        s->pos = 0;
        if (s->len == s->cap) {
            s->cap *= 2;
            s->buf = realloc(s->buf, s->cap);
            ck_assert_ptr_nonnull(s->buf);
        }
        r = recv(s->fd, s->buf + s->len, s->cap - s->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r >= 0, "no message from the worker within %d s: %s", IO_TIMEOUT_S,
                      strerror(errno));
        if (r == 0) {
            ck_assert_uint_eq(s->len, 0);
            return 0;
        }
        s->len += (size_t)r;
    }
}

/* Receives one message and checks its type and task id. */
static void sup_expect(struct sup *s, struct mvw_msg *m, uint16_t type, uint64_t task)
{
    ck_assert_msg(sup_recv(s, m), "EOF instead of %s", mvw_type_name(type));
    ck_assert_str_eq(mvw_type_name(m->h.type), mvw_type_name(type));
    ck_assert_uint_eq(m->h.task, task);
}

static void sup_handshake(struct sup *s, uint32_t slot, uint32_t prefetch, uint32_t mode)
{
    struct mvw_go go = {MVW_PROTOCOL_VERSION, slot, prefetch, mode};
    struct mvw_hello hello;
    struct mvw_msg m;

    sup_expect(s, &m, MVW_MSG_HELLO, 0);
    memcpy(&hello, m.payload, sizeof hello);
    ck_assert_uint_eq(hello.version, MVW_PROTOCOL_VERSION);
    /* single-threaded: it can be one; and it sends a big answer's heap figures at its end */
    ck_assert_uint_eq(hello.flags, MVW_HELLO_TEMPLATE | MVW_HELLO_HEAP_LATE);
    sup_send(s, MVW_MSG_GO, 0, 0, &go, sizeof go);
}

/* Reaps the child within IO_TIMEOUT_S (SIGKILL after) and returns its wait status. */
static int sup_reap(struct sup *s)
{
    int status = 0;

    for (int i = 0; i < IO_TIMEOUT_S * 100; i++) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            s->pid = 0;
            return status;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    ck_abort_msg("the worker did not exit within %d s", IO_TIMEOUT_S);
    return status;
}

/* Reaps the child, expects exit status 0, frees everything. */
static void sup_finish(struct sup *s)
{
    int status = sup_reap(s);

    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "worker: status 0x%x (exit %d, signal %d)", status, WEXITSTATUS(status),
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (s->fd >= 0)
        close(s->fd);
    close(s->sync[0]);
    free(s->buf);
    free(s->msg);
    live = NULL;
}

static void sup_expect_eof(struct sup *s)
{
    struct mvw_msg m;

    ck_assert_msg(sup_recv(s, &m) == 0, "expected EOF, got %s", mvw_type_name(m.h.type));
}

static void wapi_teardown(void)
{
    int status;

    if (live && live->pid > 0) {
        kill(live->pid, SIGKILL);
        waitpid(live->pid, &status, 0);
    }
    live = NULL;
}

/* The plainest worker: answers every task with its own bytes. Exit 0 after STOP. */
static int echo_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;
    int rc;

    CHILD_EQ(mvw_open(&w), 0);
    while ((rc = mvw_next(w, &t)) > 0) {
        CHILD_EQ(((const char *)t.data)[t.len], '\0');
        CHILD_EQ(mvw_done(w, t.data, t.len), 0);
    }
    CHILD_EQ(rc, 0);
    mvw_close(w);
    return 0;
}

static int handshake_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_slot(w), 3);
    CHILD_EQ(mvw_is_service(w), 0);
    CHILD_TRUE(fcntl(mvw_fd(w), F_GETFD) & FD_CLOEXEC);
    CHILD_EQ(mvw_next(w, &t), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    CHILD_EQ(mvw_stop_requested(w), 1);
    mvw_close(w);
    return 0;
}

START_TEST(test_handshake)
{
    struct sup s;

    sup_start(&s, handshake_worker, NULL);
    sup_handshake(&s, 3, 1, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

static int version_worker(void *arg)
{
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), -EPROTONOSUPPORT);
    CHILD_TRUE(w == NULL);
    return 0;
}

START_TEST(test_version_mismatch)
{
    struct mvw_go go = {MVW_PROTOCOL_VERSION + 1, 1, 1, MVW_MODE_BATCH};
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, version_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    sup_finish(&s);
}
END_TEST

/* Keeps what each "keep N" task asks for: the heap figures of its answers must show it. */
static int heap_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    while (mvw_next(w, &t) > 0) {
        size_t n = (size_t)strtoul((const char *)t.data + 5, NULL, 10);
        void *p = n ? malloc(n) : NULL;
        if (p)
            memset(p, 1, n); /* kept: the leak */
        CHILD_EQ(mvw_done(w, "ok", 2), 0);
    }
    mvw_close(w);
    return 0;
}

/* The live bytes of the next answer (DONE with MVW_F_HEAP, then "ok"). */
static int64_t heap_answer(struct sup *s, uint64_t id, const char *task)
{
    const uint8_t *kind, *rest;
    struct mvw_heap h;
    size_t kl, rl;
    struct mvw_msg m;

    sup_send(s, MVW_MSG_TASK, 0, id, task, strlen(task));
    sup_expect(s, &m, MVW_MSG_DONE, id);
    ck_assert_uint_eq(m.h.flags, MVW_F_HEAP);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &h), 1);
    ck_assert_uint_eq(rl, 2);
    ck_assert_int_eq(h.blocks, -1); /* glibc's mallinfo2 counts no live blocks */
    return h.live_bytes;
}

/* Version 2: GO asks for heap figures, and every answer carries mallinfo2's live bytes. */
START_TEST(test_heap_figures_on_request)
{
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 1, MVW_MODE_BATCH | MVW_GO_HEAP};
    int64_t a, b, c;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, heap_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    a = heap_answer(&s, 1, "keep 0");
    b = heap_answer(&s, 2, "keep 300000");
    c = heap_answer(&s, 3, "keep 0");
#ifdef __SANITIZE_ADDRESS__
    /* The sanitizer's malloc is not glibc's: mallinfo2 knows nothing, and says unknown. */
    ck_assert_int_eq(a, -1);
    ck_assert_int_eq(b, -1);
    ck_assert_int_eq(c, -1);
#else
    ck_assert_int_gt(a, 0);
    ck_assert_int_ge(b - a, 300000);
    ck_assert_int_lt(c - b, 4096);
#endif
    /* a TASK that asks for a collection is a TASK like any other in C */
    sup_send(&s, MVW_MSG_TASK, MVW_F_COLLECT, 4, "keep 0", 6);
    sup_expect(&s, &m, MVW_MSG_DONE, 4);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* The worker's heap in use (glibc's figure: small blocks and mmap'd ones). */
static long long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return (long long)(mi.uordblks + mi.hblkhd);
}

static volatile long long heap_at_hello = -1;

static void note_heap_at_hello(int sig)
{
    (void)sig;
    heap_at_hello = heap_in_use(); /* safe here: the worker is in sendmsg, not in malloc */
}

/* Traced from its start; the test stops it as its HELLO leaves (SIGUSR1 at that sendmsg's
 * return) and it notes its heap then: taking its first task must not have made it bigger. */
static int settled_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    (void)arg;
    signal(SIGUSR1, note_heap_at_hello);
    CHILD_EQ(ptrace(PTRACE_TRACEME, 0, NULL, NULL), 0);
    raise(SIGSTOP);
    CHILD_EQ(mvw_open(&w), 0);
    CHILD_TRUE(heap_at_hello >= 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(heap_in_use(), heap_at_hello);
    CHILD_EQ(mvw_done(w, "ok", 2), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

/* Runs the traced child to the return of its first sendmsg (HELLO), then lets it go with
 * SIGUSR1. */
static void release_after_hello(pid_t pid)
{
    struct __ptrace_syscall_info info;
    int st, in_sendmsg = 0;

    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
    ck_assert_int_eq(ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)PTRACE_O_TRACESYSGOOD), 0);
    for (int sig = 0;;) {
        ck_assert_int_eq(ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig), 0);
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFSTOPPED(st), "the worker ended before its HELLO: 0x%x", st);
        sig = WSTOPSIG(st) == (SIGTRAP | 0x80) ? 0 : WSTOPSIG(st);
        if (sig)
            continue;
        ck_assert_int_gt(ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof info, &info), 0);
        if (info.op == PTRACE_SYSCALL_INFO_ENTRY)
            in_sendmsg = info.entry.nr == SYS_sendmsg;
        else if (info.op == PTRACE_SYSCALL_INFO_EXIT && in_sendmsg)
            break;
    }
    ck_assert_int_eq(ptrace(PTRACE_DETACH, pid, NULL, (void *)(long)SIGUSR1), 0);
}

/* memvisor reads a worker's starting memory for its first task once the worker said HELLO:
 * every buffer the library needs is made before (a race put its 64 KiB input buffer in the
 * first task's heap_retained, or not, by how fast memvisor looked). */
START_TEST(test_buffers_made_before_hello)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, settled_worker, NULL);
    release_after_hello(s.pid);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "a task", 6);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Answers "big N" with N bytes from a buffer it frees once mvw_done returns, then waits for
 * the test (a byte on the gate pipe, `arg`) before it asks for its next task. */
static int gated_worker(void *arg)
{
    const int *gate = arg;
    mvw_task_t t;
    mvw_t *w;
    char c;

    CHILD_EQ(mvw_open(&w), 0);
    while (mvw_next(w, &t) > 0) {
        size_t n = (size_t)strtoul((const char *)t.data + 4, NULL, 10);
        char *p = malloc(n + 1);

        CHILD_TRUE(p);
        memset(p, 'b', n);
        CHILD_EQ(mvw_done(w, p, n), 0);
        free(p);
        CHILD_EQ(read(gate[0], &c, 1), 1);
    }
    mvw_close(w);
    return 0;
}

/* Sends "big N", receives the answer (its payload `len`) up to its last `held` bytes, checks
 * that those do not come while the worker has not come back for its next task, lets it come
 * back, and decodes the whole answer into *m. */
static void gated_answer(struct sup *s, const int *gate, uint64_t id, size_t n, size_t len,
                         size_t held, struct mvw_msg *m)
{
    size_t total = MVW_HEADER_SIZE + len, got = 0;
    char task[32];
    uint8_t one;
    ssize_t r;

    snprintf(task, sizeof task, "big %zu", n);
    sup_send(s, MVW_MSG_TASK, 0, id, task, strlen(task));
    if (s->cap < total) {
        s->cap = total;
        s->buf = realloc(s->buf, s->cap);
        ck_assert_ptr_nonnull(s->buf);
    }
    s->pos = s->len = 0;
    while (got < total - held) {
        r = recv(s->fd, s->buf + got, total - held - got, 0);
        ck_assert_msg(r > 0, "answer cut at %zu of %zu bytes: %s", got, total - held,
                      r < 0 ? strerror(errno) : "EOF");
        got += (size_t)r;
    }
    /* The worker waits on the gate, its answer's result freed: the rest is held back. */
    r = recv(s->fd, &one, 1, MSG_DONTWAIT);
    ck_assert_msg(r < 0 && errno == EAGAIN, "a big answer's end came before the worker was back");
    ck_assert_int_eq(write(gate[1], "g", 1), 1);
    while (got < total) {
        r = recv(s->fd, s->buf + got, total - got, 0);
        ck_assert_msg(r > 0, "the answer's end never came");
        got += (size_t)r;
    }
    s->len = got;
    sup_expect(s, m, MVW_MSG_DONE, id);
    ck_assert_uint_eq(m->h.length, len);
}

/* Checks an answer of `len` bytes that came after a big answer or task: with late heap figures
 * (late), flagged so and measured with the big bytes given back (live bytes within 64 KiB of
 * `small`'s, a small task's); else without figures. Returns its result. */
static const uint8_t *late_answer(const struct mvw_msg *m, int late, size_t len,
                                  const struct mvw_heap *small)
{
    struct mvw_heap h = {0, 0};
    const uint8_t *kind, *rest;
    size_t kl, rl;

    ck_assert_uint_eq(m->h.flags, late ? MVW_F_HEAP | MVW_F_HEAP_LATE : 0);
    ck_assert_int_eq(mvw_split_kind(m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(m, &rest, &rl, &h), late);
    ck_assert_uint_eq(rl, len);
#ifndef __SANITIZE_ADDRESS__
    if (late)
        ck_assert_msg(llabs(h.live_bytes - small->live_bytes) < 65536,
                      "live bytes %lld after the big one, %lld after a small one",
                      (long long)h.live_bytes, (long long)small->live_bytes);
#endif
    return rest;
}

/*
 * An answer of 128 KiB or more is sent but for its end until the worker is back for its next
 * task, so that memvisor reads the worker's memory once the answer's result is freed
 * (docs/protocols.md, "Big answers"). _i = 0: its last byte is held; _i = 1 (GO asked for heap
 * figures and allowed them late): its heap figures go at its end, measured then, without the
 * freed result. Smaller answers go as before.
 */
START_TEST(test_big_answer_ends_when_the_worker_is_back)
{
    uint32_t mode = _i ? MVW_GO_HEAP | MVW_GO_HEAP_LATE : 0;
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 1, MVW_MODE_BATCH | mode};
    const size_t big = 300000;
    const uint8_t *kind, *rest;
    struct mvw_heap small_h = {0, 0};
    size_t kl, rl;
    struct mvw_msg m;
    struct sup s;
    int gate[2];

    ck_assert_int_eq(pipe2(gate, O_CLOEXEC), 0);
    sup_start(&s, gated_worker, gate);
    close(gate[0]);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    /* a small answer: whole, its figures first */
    sup_send(&s, MVW_MSG_TASK, 0, 1, "big 100", 7);
    ck_assert_int_eq(write(gate[1], "g", 1), 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_uint_eq(m.h.flags, _i ? MVW_F_HEAP : 0);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &small_h), _i);
    ck_assert_uint_eq(rl, 100);
    /* a big one, twice (the second comes from glibc's heap: the mmap threshold moved up) */
    for (uint64_t id = 2; id <= 3; id++) {
        gated_answer(&s, gate, id, big, big + (_i ? sizeof(struct mvw_heap) : 0),
                     _i ? sizeof(struct mvw_heap) : 1, &m);
        /* measured with the result freed: no 300000 bytes more than after the small one */
        rest = late_answer(&m, _i, big, &small_h);
        ck_assert_int_eq(rest[0], 'b');
        ck_assert_int_eq(rest[big - 1], 'b');
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
    close(gate[1]);
}
END_TEST

/*
 * A task of 128 KiB or more: its answer, however small, ends when the worker is back for its
 * next task, once the library gave back the buffers that carried the task in (memvisor reads
 * the worker's memory then). _i = 1: its heap figures go at its end, measured then: no task
 * bytes more than after a small task.
 */
START_TEST(test_big_task_answer_ends_when_the_worker_is_back)
{
    uint32_t mode = _i ? MVW_GO_HEAP | MVW_GO_HEAP_LATE : 0;
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 1, MVW_MODE_BATCH | mode};
    const size_t pad = 300000;
    struct mvw_heap small_h = {0, 0};
    const uint8_t *kind, *rest;
    char *task = malloc(pad + 16);
    size_t kl, rl, n;
    struct mvw_msg m;
    struct sup s;
    uint8_t one;
    int gate[2];

    ck_assert_ptr_nonnull(task);
    n = (size_t)snprintf(task, 16, "big 100 ");
    memset(task + n, 'x', pad);
    ck_assert_int_eq(pipe2(gate, O_CLOEXEC), 0);
    sup_start(&s, gated_worker, gate);
    close(gate[0]);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "big 100", 7);
    ck_assert_int_eq(write(gate[1], "g", 1), 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &small_h), _i);
    for (uint64_t id = 2; id <= 3; id++) {
        sup_send(&s, MVW_MSG_TASK, 0, id, task, n + pad);
        usleep(100 * 1000); /* time to answer, were it to answer at once (a delay, no timing) */
        ck_assert_msg(recv(s.fd, &one, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN,
                      "a big task's answer came before the worker was back");
        ck_assert_int_eq(write(gate[1], "g", 1), 1);
        sup_expect(&s, &m, MVW_MSG_DONE, id);
        late_answer(&m, _i, 100, &small_h);
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
    close(gate[1]);
    free(task);
}
END_TEST

/* A memvisor that speaks version 1: no figures; and version 1 knows no request bits. */
static int old_go_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    if (arg) {
        CHILD_EQ(mvw_open(&w), -EBADMSG);
        return 0;
    }
    CHILD_EQ(mvw_open(&w), 0);
    while (mvw_next(w, &t) > 0)
        CHILD_EQ(mvw_done(w, "ok", 2), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_version_1_conversation)
{
    struct mvw_go go = {1, 1, 1, MVW_MODE_BATCH}, bad = {1, 1, 1, MVW_MODE_BATCH | MVW_GO_HEAP};
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, old_go_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "x", 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_uint_eq(m.h.flags, 0);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
    sup_start(&s, old_go_worker, (void *)1);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_GO, 0, 0, &bad, sizeof bad);
    sup_finish(&s);
}
END_TEST

static int early_stop_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_stop_requested(w), 1);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_stop_before_go)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, early_stop_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Service mode, STOP in the same read as GO: mvw_open has already seen it. */
static int stop_with_go_worker(void *arg)
{
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_is_service(w), 1);
    CHILD_EQ(mvw_stop_requested(w), 1);
    CHILD_EQ(mvw_poll(w), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_stop_with_go)
{
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 1, MVW_MODE_SERVICE};
    uint8_t both[64];
    size_t len = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, stop_with_go_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    len += enc(both + len, MVW_MSG_GO, 0, 0, &go, sizeof go);
    len += enc(both + len, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_send_raw(&s, both, len);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

static int prefix_worker(void *arg)
{
    char out[64];
    mvw_task_t t;
    mvw_t *w;
    int rc;

    CHILD_EQ(mvw_open(&w), 0);
    while ((rc = mvw_next(w, &t)) > 0) {
        CHILD_EQ(strlen(t.data), t.len);
        CHILD_EQ(mvw_done(w, out, (size_t)snprintf(out, sizeof out, "r:%s", (char *)t.data)), 0);
    }
    CHILD_EQ(rc, 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_lockstep)
{
    char task[32], want[40];
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, prefix_worker, NULL);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    /* One task out, one answer back: the answer must come without more input. */
    for (unsigned i = 1; i <= 50; i++) {
        int n = snprintf(task, sizeof task, "task %u", i);
        sup_send(&s, MVW_MSG_TASK, 0, i, task, (size_t)n);
        sup_expect(&s, &m, MVW_MSG_DONE, i);
        snprintf(want, sizeof want, "r:%s", task);
        ck_assert_str_eq((const char *)m.payload, want);
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

START_TEST(test_prefetch_batch)
{
    uint8_t *batch = malloc(100 * 64);
    size_t len = 0;
    char task[32], want[40];
    struct mvw_msg m;
    struct sup s;

    ck_assert_ptr_nonnull(batch);
    sup_start(&s, prefix_worker, NULL);
    sup_handshake(&s, 1, 100, MVW_MODE_BATCH);
    for (unsigned i = 1; i <= 100; i++) {
        int n = snprintf(task, sizeof task, "task %u", i);
        len += enc(batch + len, MVW_MSG_TASK, 0, i, task, (size_t)n);
    }
    sup_send_raw(&s, batch, len);
    for (unsigned i = 1; i <= 100; i++) {
        sup_expect(&s, &m, MVW_MSG_DONE, i);
        snprintf(want, sizeof want, "r:task %u", i);
        ck_assert_str_eq((const char *)m.payload, want);
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
    free(batch);
}
END_TEST

/* Takes task 1, lets the test queue tasks 2 and 3 and a STOP behind it, answers task 1:
 * the next call must return 0 without starting task 2. */
static int stop_worker(void *arg)
{
    struct sup *s = arg;
    struct pollfd p;
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(t.id, 1);
    child_signal(s);
    p = (struct pollfd){.fd = mvw_fd(w), .events = POLLIN};
    CHILD_EQ(poll(&p, 1, -1), 1);
    CHILD_EQ(mvw_done(w, "one", 3), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    CHILD_EQ(mvw_stop_requested(w), 1);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_stop_abandons_buffered)
{
    uint8_t batch[128];
    size_t len = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, stop_worker, &s);
    sup_handshake(&s, 1, 3, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "t1", 2);
    sup_wait_signal(&s);
    len += enc(batch + len, MVW_MSG_TASK, 0, 2, "t2", 2);
    len += enc(batch + len, MVW_MSG_TASK, 0, 3, "t3", 2);
    len += enc(batch + len, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_send_raw(&s, batch, len); /* one send: the worker reads it all at once */
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_str_eq((const char *)m.payload, "one");
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* mvw_poll notices STOP while a task is in hand; that task is still answered. */
static int poll_stop_worker(void *arg)
{
    struct sup *s = arg;
    struct pollfd p;
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    child_signal(s);
    for (int i = 0; i < 100 && !mvw_stop_requested(w); i++) {
        p = (struct pollfd){.fd = mvw_fd(w), .events = POLLIN};
        CHILD_EQ(poll(&p, 1, 5000), 1);
        CHILD_EQ(mvw_poll(w), 0);
    }
    CHILD_EQ(mvw_stop_requested(w), 1);
    CHILD_EQ(mvw_done(w, "finished", 8), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_poll_sees_stop)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, poll_stop_worker, &s);
    sup_handshake(&s, 1, 2, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "t1", 2);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_str_eq((const char *)m.payload, "finished");
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

static int kind_worker(void *arg)
{
    char k256[257], k255[256];
    mvw_task_t t;
    mvw_t *w;

    memset(k256, 'k', 256);
    k256[256] = '\0';
    memset(k255, 'k', 255);
    k255[255] = '\0';
    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_set_kind(w, "early"), -EINVAL); /* no task in hand */
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(mvw_set_kind(w, NULL), -EINVAL);
    CHILD_EQ(mvw_set_kind(w, ""), -EINVAL);
    CHILD_EQ(mvw_set_kind(w, k256), -EINVAL);
    CHILD_EQ(mvw_set_kind(w, k255), 0);
    CHILD_EQ(mvw_set_kind(w, "resize"), 0); /* the last one wins */
    CHILD_EQ(mvw_done(w, "r", 1), 0);
    CHILD_EQ(mvw_set_kind(w, "late"), -EINVAL);
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(mvw_done(w, "plain", 5), 0); /* kinds do not carry over */
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(mvw_set_kind(w, k255), 0);
    CHILD_EQ(mvw_fail(w, "bad", 3), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(mvw_fail(w, NULL, 0), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_kind_and_fail)
{
    const uint8_t *kind, *rest;
    size_t kl, rl;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, kind_worker, NULL);
    sup_handshake(&s, 1, 4, MVW_MODE_BATCH);
    for (unsigned i = 1; i <= 4; i++)
        sup_send(&s, MVW_MSG_TASK, 0, i, "t", 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_uint_eq(m.h.flags, MVW_F_KIND);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 6);
    ck_assert_mem_eq(kind, "resize", 6);
    ck_assert_uint_eq(rl, 1);
    ck_assert_mem_eq(rest, "r", 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 2);
    ck_assert_uint_eq(m.h.flags, 0);
    ck_assert_str_eq((const char *)m.payload, "plain");
    sup_expect(&s, &m, MVW_MSG_FAIL, 3);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 255);
    ck_assert_uint_eq(rl, 3);
    ck_assert_mem_eq(rest, "bad", 3);
    sup_expect(&s, &m, MVW_MSG_FAIL, 4);
    ck_assert_uint_eq(m.h.length, 0);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Checks that `json` has "key":<digits>. */
static void expect_number(const char *json, const char *key)
{
    char pat[32];
    const char *p;

    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(json, pat);
    ck_assert_msg(p != NULL, "%s missing from %s", key, json);
    p += strlen(pat);
    ck_assert_msg(*p >= '0' && *p <= '9', "%s is not a number in %s", key, json);
}

START_TEST(test_snapshot_default)
{
    const char *keys[] = {"arena",    "ordblks",  "hblks",   "hblkhd",
                          "uordblks", "fordblks", "keepcost"};
    const char *j;
    size_t quotes = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, echo_worker, NULL);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_SNAPSHOT, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_SNAPSHOT, 0);
    j = (const char *)m.payload;
    ck_assert_uint_eq(strlen(j), m.h.length);
    ck_assert_int_eq(j[0], '{');
    ck_assert_int_eq(j[m.h.length - 1], '}');
    ck_assert_ptr_null(strchr(j, '\n'));
    for (const char *p = j; *p; p++)
        quotes += *p == '"';
    ck_assert_uint_eq(quotes % 2, 0);
    ck_assert_ptr_nonnull(strstr(j, "\"allocator\":\"glibc\""));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        expect_number(j, keys[i]);
    /* the worker goes on as before */
    sup_send(&s, MVW_MSG_TASK, 0, 1, "after", 5);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* A snapshot callback that wants a large buffer (so the library retries), then one that
 * fails (so the library reports the failure as JSON). */
static long big_snapshot(void *arg, char *buf, size_t cap)
{
    size_t want = 150000;
    int *calls = arg;

    (*calls)++;
    if (*calls > 3)
        return -EIO;
    if (cap < want)
        return -ENOBUFS;
    memset(buf, ' ', want);
    memcpy(buf, "{\"pad\":\"", 8);
    memcpy(buf + want - 2, "\"}", 2);
    return (long)want;
}

static int snapshot_cb_worker(void *arg)
{
    int calls = 0;
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    mvw_set_snapshot(w, big_snapshot, &calls);
    child_signal(arg); /* a request that came with GO would get the default answer */
    CHILD_EQ(mvw_next(w, &t), 0);
    CHILD_EQ(calls, 4); /* 64 KiB, 128 KiB, 256 KiB, then the failing one */
    mvw_close(w);
    return 0;
}

START_TEST(test_snapshot_callback)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, snapshot_cb_worker, &s);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_SNAPSHOT, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_SNAPSHOT, 0);
    ck_assert_uint_eq(m.h.length, 150000);
    ck_assert_mem_eq(m.payload, "{\"pad\":\"", 8);
    sup_send(&s, MVW_MSG_SNAPSHOT, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_SNAPSHOT, 0);
    ck_assert_str_eq((const char *)m.payload,
                     "{\"error\":\"snapshot callback failed\",\"errno\":5}");
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* What an error test expects, and the test (to signal once mvw_open returned). */
struct want {
    int rc;
    struct sup *s;
};

/* mvw_next returns `want` (twice: errors stick) for what the test sends after GO. */
static int error_worker(void *arg)
{
    const struct want *want = arg;
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    child_signal(want->s);
    CHILD_EQ(mvw_next(w, &t), want->rc);
    CHILD_EQ(mvw_next(w, &t), want->rc);
    mvw_close(w);
    return 0;
}

START_TEST(test_eof_is_epipe)
{
    struct want want = {-EPIPE, NULL};
    struct sup s;

    want.s = &s;
    sup_start(&s, error_worker, &want);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    close(s.fd);
    s.fd = -1;
    sup_finish(&s);
}
END_TEST

static int open_epipe_worker(void *arg)
{
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), -EPIPE);
    return 0;
}

START_TEST(test_eof_during_handshake)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, open_epipe_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    close(s.fd);
    s.fd = -1;
    sup_finish(&s);
}
END_TEST

START_TEST(test_garbage_is_ebadmsg)
{
    struct want want = {-EBADMSG, NULL};
    uint8_t junk[32];
    struct sup s;

    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    junk[4] = junk[5] = 0xff;
    want.s = &s;
    sup_start(&s, error_worker, &want);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    sup_send_raw(&s, junk, sizeof junk);
    sup_finish(&s);
}
END_TEST

START_TEST(test_wrong_messages_from_supervisor)
{
    struct want want = {-EBADMSG, NULL};
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 1, MVW_MODE_BATCH};
    struct sup s;

    /* a worker's message type */
    want.s = &s;
    sup_start(&s, error_worker, &want);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_DONE, 0, 1, "x", 1);
    sup_finish(&s);
    /* a second GO */
    want.s = &s;
    sup_start(&s, error_worker, &want);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_GO, 0, 0, &go, sizeof go);
    sup_finish(&s);
}
END_TEST

START_TEST(test_oversize_is_emsgsize)
{
    struct want want = {-EMSGSIZE, NULL};
    uint8_t h[MVW_HEADER_SIZE];
    struct sup s;

    want.s = &s;
    sup_start(&s, error_worker, &want);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_wait_signal(&s);
    mvw_put_header(h, MVW_MSG_TASK, 0, 1, 0x7fffffffu);
    sup_send_raw(&s, h, sizeof h);
    sup_finish(&s);
}
END_TEST

/* mvw_open's checks of $MEMVISOR_FD, in the test process itself. */
START_TEST(test_env_fd)
{
    const char *bad[] = {"", "abc", "3x", "-1", " 3", "+3", "3 ", "99999999999", "0x3"};
    char num[16];
    int p[2], dg;
    mvw_t *w = (mvw_t *)&w;

    unsetenv(MVW_ENV_FD);
    ck_assert_int_eq(mvw_open(&w), -ENOENT);
    ck_assert_ptr_null(w);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(MVW_ENV_FD, bad[i], 1);
        ck_assert_msg(mvw_open(&w) == -EBADF, "MEMVISOR_FD='%s'", bad[i]);
    }
    setenv(MVW_ENV_FD, "1000", 1);
    close(1000);
    ck_assert_int_eq(mvw_open(&w), -EBADF);
    ck_assert_int_eq(pipe(p), 0);
    snprintf(num, sizeof num, "%d", p[0]);
    setenv(MVW_ENV_FD, num, 1);
    ck_assert_int_eq(mvw_open(&w), -ENOTSOCK);
    dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    snprintf(num, sizeof num, "%d", dg);
    setenv(MVW_ENV_FD, num, 1);
    ck_assert_int_eq(mvw_open(&w), -ESOCKTNOSUPPORT);
    close(p[0]);
    close(p[1]);
    close(dg);
    unsetenv(MVW_ENV_FD);
    for (int e = 1; e < 140; e++) {
        ck_assert_ptr_nonnull(mvw_strerror(-e));
        ck_assert_uint_gt(strlen(mvw_strerror(-e)), 0);
    }
    ck_assert_str_eq(mvw_strerror(-ENOENT), "not started by memvisor (MEMVISOR_FD is not set)");
}
END_TEST

static int service_worker(void *arg)
{
    struct sup *s = arg;
    char k256[257];
    struct pollfd p;
    mvw_task_t t;
    mvw_t *w;

    memset(k256, 'k', 256);
    k256[256] = '\0';
    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_is_service(w), 1);
    CHILD_EQ(mvw_next(w, &t), -EOPNOTSUPP);
    CHILD_EQ(mvw_done(w, "x", 1), -EINVAL);
    CHILD_EQ(mvw_end(w, 0), -EINVAL);
    CHILD_EQ(mvw_begin(w, k256), -EINVAL);
    CHILD_EQ(mvw_begin(w, ""), -EINVAL);
    CHILD_EQ(mvw_begin(w, "req"), 0);
    CHILD_EQ(mvw_begin(w, "req"), -EINPROGRESS);
    CHILD_EQ(mvw_end(w, 0), 0);
    CHILD_EQ(mvw_end(w, 0), -EINVAL);
    CHILD_EQ(mvw_begin(w, NULL), 0);
    CHILD_EQ(mvw_end(w, 7), 0);
    CHILD_EQ(mvw_poll(w), 0); /* nothing there: does not block */
    child_signal(s);
    for (int i = 0; i < 100 && !mvw_stop_requested(w); i++) {
        p = (struct pollfd){.fd = mvw_fd(w), .events = POLLIN};
        CHILD_EQ(poll(&p, 1, 5000), 1);
        CHILD_EQ(mvw_poll(w), 0);
    }
    CHILD_EQ(mvw_stop_requested(w), 1);
    mvw_close(w);
    return 0;
}

START_TEST(test_service)
{
    const uint8_t *kind, *rest;
    size_t kl, rl;
    uint32_t status;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, service_worker, &s);
    sup_handshake(&s, 2, 1, MVW_MODE_SERVICE);
    sup_expect(&s, &m, MVW_MSG_BEGIN, 1);
    ck_assert_uint_eq(m.h.flags, MVW_F_KIND);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 3);
    ck_assert_mem_eq(kind, "req", 3);
    sup_expect(&s, &m, MVW_MSG_END, 1);
    memcpy(&status, m.payload, 4);
    ck_assert_uint_eq(status, 0);
    sup_expect(&s, &m, MVW_MSG_BEGIN, 2);
    ck_assert_uint_eq(m.h.flags, 0);
    ck_assert_uint_eq(m.h.length, 0);
    sup_expect(&s, &m, MVW_MSG_END, 2);
    memcpy(&status, m.payload, 4);
    ck_assert_uint_eq(status, 7);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_SNAPSHOT, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_SNAPSHOT, 0);
    ck_assert_int_eq(m.payload[0], '{');
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

static int service_task_worker(void *arg)
{
    struct pollfd p;
    mvw_t *w;
    int rc = 0;

    CHILD_EQ(mvw_open(&w), 0);
    child_signal(arg);
    for (int i = 0; i < 100 && rc == 0; i++) {
        p = (struct pollfd){.fd = mvw_fd(w), .events = POLLIN};
        CHILD_EQ(poll(&p, 1, 5000), 1);
        rc = mvw_poll(w);
    }
    CHILD_EQ(rc, -EBADMSG);
    CHILD_EQ(mvw_poll(w), -EBADMSG);
    mvw_close(w);
    return 0;
}

START_TEST(test_service_task_is_error)
{
    struct sup s;

    sup_start(&s, service_task_worker, &s);
    sup_handshake(&s, 1, 1, MVW_MODE_SERVICE);
    sup_wait_signal(&s);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "t", 1);
    sup_finish(&s);
}
END_TEST

static int inprogress_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    CHILD_EQ(mvw_next(w, &t), -EINPROGRESS);
    CHILD_EQ(mvw_begin(w, NULL), -EOPNOTSUPP);
    CHILD_EQ(mvw_done(w, "a", 1), 0);
    CHILD_EQ(mvw_done(w, "b", 1), -EINVAL); /* answered already */
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_in_progress)
{
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, inprogress_worker, NULL);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    sup_send(&s, MVW_MSG_TASK, 0, 1, "t", 1);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    ck_assert_str_eq((const char *)m.payload, "a");
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* A slow task (>= 50 us) is answered at once even though the next task is buffered: the
 * worker then waits for the test without calling mvw_next. */
static int slow_worker(void *arg)
{
    struct timespec ts = {0, 2000000};
    struct pollfd p;
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    nanosleep(&ts, NULL);
    CHILD_EQ(mvw_done(w, "slow", 4), 0);
    CHILD_EQ(mvw_next(w, &t), 1);
    p = (struct pollfd){.fd = mvw_fd(w), .events = POLLIN};
    CHILD_EQ(poll(&p, 1, -1), 1);
    CHILD_EQ(mvw_done(w, "second", 6), 0);
    CHILD_EQ(mvw_next(w, &t), 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_slow_task_flushes)
{
    uint8_t batch[64];
    size_t len = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, slow_worker, NULL);
    sup_handshake(&s, 1, 2, MVW_MODE_BATCH);
    len += enc(batch + len, MVW_MSG_TASK, 0, 1, "t1", 2);
    len += enc(batch + len, MVW_MSG_TASK, 0, 2, "t2", 2);
    sup_send_raw(&s, batch, len);
    sup_expect(&s, &m, MVW_MSG_DONE, 1);
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect(&s, &m, MVW_MSG_DONE, 2);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Answers and closes without asking for more: mvw_close sends what is buffered. */
static int close_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;

    CHILD_EQ(mvw_open(&w), 0);
    for (int i = 0; i < 3; i++) {
        CHILD_EQ(mvw_next(w, &t), 1);
        CHILD_EQ(mvw_done(w, t.data, t.len), 0);
    }
    mvw_close(w);
    return 0;
}

START_TEST(test_close_flushes)
{
    uint8_t batch[128];
    size_t len = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, close_worker, NULL);
    sup_handshake(&s, 1, 3, MVW_MODE_BATCH);
    for (unsigned i = 1; i <= 3; i++)
        len += enc(batch + len, MVW_MSG_TASK, 0, i, "x", 1);
    sup_send_raw(&s, batch, len);
    for (unsigned i = 1; i <= 3; i++)
        sup_expect(&s, &m, MVW_MSG_DONE, i);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Large tasks and answers: the input buffer grows, large answers go out without a copy. */
static int big_worker(void *arg)
{
    mvw_task_t t;
    mvw_t *w;
    int rc;

    CHILD_EQ(mvw_open(&w), 0);
    while ((rc = mvw_next(w, &t)) > 0) {
        const uint8_t *d = t.data;
        for (size_t i = 0; i < t.len; i++)
            CHILD_EQ(d[i], (uint8_t)(i * 7 + t.id));
        CHILD_EQ(d[t.len], 0);
        CHILD_EQ(mvw_set_kind(w, "big"), 0);
        CHILD_EQ(mvw_done(w, t.data, t.len), 0);
    }
    CHILD_EQ(rc, 0);
    mvw_close(w);
    return 0;
}

START_TEST(test_big_messages)
{
    const size_t sizes[] = {1 << 20, 10, 100000, 3 << 20, 0, 65535, 65536};
    const uint8_t *kind, *rest;
    size_t kl, rl;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, big_worker, NULL);
    sup_handshake(&s, 1, 1, MVW_MODE_BATCH);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint8_t *p = malloc(sizes[k] + 1);
        ck_assert_ptr_nonnull(p);
        for (size_t i = 0; i < sizes[k]; i++)
            p[i] = (uint8_t)(i * 7 + k + 1);
        sup_send(&s, MVW_MSG_TASK, 0, k + 1, p, sizes[k]);
        sup_expect(&s, &m, MVW_MSG_DONE, k + 1);
        ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
        ck_assert_uint_eq(kl, 3);
        ck_assert_uint_eq(rl, sizes[k]);
        ck_assert_int_eq(memcmp(rest, p, sizes[k]), 0);
        free(p);
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

/* Every message from memvisor arrives one byte at a time. */
START_TEST(test_byte_by_byte)
{
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 3, MVW_MODE_BATCH};
    uint8_t stream[256];
    size_t len = 0;
    struct mvw_msg m;
    struct sup s;

    sup_start(&s, echo_worker, NULL);
    sup_expect(&s, &m, MVW_MSG_HELLO, 0);
    len += enc(stream + len, MVW_MSG_GO, 0, 0, &go, sizeof go);
    len += enc(stream + len, MVW_MSG_TASK, 0, 1, "first", 5);
    len += enc(stream + len, MVW_MSG_SNAPSHOT, 0, 0, NULL, 0);
    len += enc(stream + len, MVW_MSG_TASK, 0, 2, "second", 6);
    len += enc(stream + len, MVW_MSG_TASK, 0, 3, "", 0);
    for (size_t i = 0; i < len; i++) {
        struct timespec ts = {0, 100000};
        sup_send_raw(&s, stream + i, 1);
        nanosleep(&ts, NULL);
    }
    /* DONEs in task order; the SNAPSHOT reply may come anywhere among them. */
    for (uint64_t next = 1, snaps = 0; next <= 3 || snaps == 0;) {
        ck_assert(sup_recv(&s, &m));
        if (m.h.type == MVW_MSG_SNAPSHOT) {
            ck_assert_uint_eq(snaps++, 0);
            continue;
        }
        ck_assert_uint_eq(m.h.type, MVW_MSG_DONE);
        ck_assert_uint_eq(m.h.task, next);
        ck_assert_str_eq((const char *)m.payload, next == 1 ? "first" : next == 2 ? "second" : "");
        next++;
    }
    sup_send(&s, MVW_MSG_STOP, 0, 0, NULL, 0);
    sup_expect_eof(&s);
    sup_finish(&s);
}
END_TEST

Suite *worker_api_suite(void)
{
    Suite *s = suite_create("worker_api");
    TCase *tc = tcase_create("socketpair");

    tcase_add_checked_fixture(tc, NULL, wapi_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_handshake);
    tcase_add_test(tc, test_version_mismatch);
    tcase_add_test(tc, test_heap_figures_on_request);
    tcase_add_test(tc, test_buffers_made_before_hello);
    tcase_add_loop_test(tc, test_big_answer_ends_when_the_worker_is_back, 0, 2);
    tcase_add_loop_test(tc, test_big_task_answer_ends_when_the_worker_is_back, 0, 2);
    tcase_add_test(tc, test_version_1_conversation);
    tcase_add_test(tc, test_stop_before_go);
    tcase_add_test(tc, test_stop_with_go);
    tcase_add_test(tc, test_lockstep);
    tcase_add_test(tc, test_prefetch_batch);
    tcase_add_test(tc, test_stop_abandons_buffered);
    tcase_add_test(tc, test_poll_sees_stop);
    tcase_add_test(tc, test_kind_and_fail);
    tcase_add_test(tc, test_snapshot_default);
    tcase_add_test(tc, test_snapshot_callback);
    tcase_add_test(tc, test_eof_is_epipe);
    tcase_add_test(tc, test_eof_during_handshake);
    tcase_add_test(tc, test_garbage_is_ebadmsg);
    tcase_add_test(tc, test_wrong_messages_from_supervisor);
    tcase_add_test(tc, test_oversize_is_emsgsize);
    tcase_add_test(tc, test_env_fd);
    tcase_add_test(tc, test_service);
    tcase_add_test(tc, test_service_task_is_error);
    tcase_add_test(tc, test_in_progress);
    tcase_add_test(tc, test_slow_task_flushes);
    tcase_add_test(tc, test_close_flushes);
    tcase_add_test(tc, test_big_messages);
    tcase_add_test(tc, test_byte_by_byte);
    suite_add_tcase(s, tc);
    return s;
}
