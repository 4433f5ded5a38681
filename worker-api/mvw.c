/*
 * libmemvisor: the worker side of the `api` protocol (include/memvisor/protocol.h).
 *
 * One mvw_t per worker, no global state. Input is read into a growable buffer and decoded
 * in place; a TASK's bytes are copied into a buffer of their own so that data[len] can be a
 * '\0' and so that later reads may move the input buffer. Answers are appended to a write
 * buffer and flushed in batches (see want_flush()), always before the worker would block.
 *
 * Invariant of the input buffer: rbuf[rpos .. scan) holds only complete TASK messages that
 * were already checked; rbuf[scan .. rlen) is not looked at yet. scan() moves `scan` forward
 * and takes STOP and SNAPSHOT out of the stream as soon as they are buffered, so a STOP that
 * arrives behind prefetched tasks abandons them (memvisor requeues what was not answered).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

#include "mvw_int.h"

#define MVW_API __attribute__((visibility("default")))

#define RBUF_INIT   (64u << 10) /* one read takes up to this much */
#define RBUF_KEEP   (1u << 20)  /* an empty input buffer above this is shrunk back */
#define WBUF_INIT   (4u << 10)
#define WBUF_DIRECT (64u << 10) /* answers this big bypass the write buffer */
/* An answer this big goes out but for its last byte, which follows when the worker is back
 * for its next task (see mvw__queue): glibc's default mmap threshold, the smallest block whose
 * free() gives memory back at once; below it a freed buffer stays in the arena anyway. */
#define SETTLE_BYTES   (128u << 10)
#define FLUSH_COUNT    64u
#define FLUSH_BYTES    (64u << 10)
#define FLUSH_AGE_NS   200000ull /* since the last flush */
#define FLUSH_SLOW_NS  50000ull  /* a task this slow is answered at once */
#define TBUF_INIT      256u
#define TBUF_KEEP      (1u << 20)
#define SNAP_CAP_FIRST (64u << 10)
#define SNAP_CAP_MAX   (16u << 20)

/* CLOCK_MONOTONIC in nanoseconds (vDSO: cheap enough to call per task). */
static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Parses $MEMVISOR_FD strictly: decimal digits only, no sign, no blanks, fits an int. */
static int parse_fd(const char *s)
{
    long v = 0;

    if (!*s)
        return -EBADF;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EBADF;
        v = v * 10 + (*s - '0');
        if (v > INT_MAX)
            return -EBADF;
    }
    return (int)v;
}

/* Waits until fd is ready for `events`; used when a blocking call meets a non-blocking fd
 * (the fd's O_NONBLOCK belongs to the open file description, which we do not change). */
int mvw__wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};

    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* Records a fatal channel error once and returns it. */
int mvw__fail(mvw_t *w, int err)
{
    if (!w->err)
        w->err = err;
    return w->err;
}

/* Sends every byte of iov[0..n) (partial sends loop; iov is consumed). MSG_NOSIGNAL: a dead
 * supervisor gives -EPIPE, never SIGPIPE. */
static int send_iov(mvw_t *w, struct iovec *iov, int n)
{
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t r;
    int rc;

    while (mh.msg_iovlen > 0) {
        if (mh.msg_iov->iov_len == 0) {
            mh.msg_iov++;
            mh.msg_iovlen--;
            continue;
        }
        r = sendmsg(w->fd, &mh, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rc = mvw__wait_fd(w->fd, POLLOUT);
                if (rc < 0)
                    return mvw__fail(w, rc);
                continue;
            }
            return mvw__fail(w, -errno);
        }
        while (r > 0) {
            size_t k = (size_t)r < mh.msg_iov->iov_len ? (size_t)r : mh.msg_iov->iov_len;
            mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + k;
            mh.msg_iov->iov_len -= k;
            r -= (ssize_t)k;
            if (mh.msg_iov->iov_len == 0) {
                mh.msg_iov++;
                mh.msg_iovlen--;
            }
        }
    }
    return 0;
}

static void heap_figures(struct mvw_heap *h);

const struct mvw_heap mvw__heap_late = {-1, -1};

/* Sends the write buffer. A big answer's late heap figures are measured now (mvw__queue). */
int mvw__flush(mvw_t *w)
{
    struct iovec iov;
    int rc;

    if (w->err)
        return w->err;
    if (w->settle == 2) {
        struct mvw_heap h;

        heap_figures(&h);
        memcpy(w->wbuf + w->settle_at, &h, sizeof h);
    }
    if (w->wlen == 0) {
        w->wcount = 0; /* answers that went out directly */
        return 0;
    }
    iov.iov_base = w->wbuf;
    iov.iov_len = w->wlen;
    rc = send_iov(w, &iov, 1);
    w->wlen = 0;
    w->wcount = 0;
    w->settle = 0;
    w->last_flush_ns = now_ns();
    return rc;
}

/* Makes room for `n` more bytes in the write buffer. */
static int wbuf_reserve(mvw_t *w, size_t n)
{
    size_t cap = w->wcap ? w->wcap : WBUF_INIT;
    uint8_t *p;

    if (w->wcap - w->wlen >= n)
        return 0;
    while (cap - w->wlen < n)
        cap *= 2;
    p = realloc(w->wbuf, cap);
    if (!p)
        return -ENOMEM;
    w->wbuf = p;
    w->wcap = cap;
    return 0;
}

/*
 * Queues one message: header, optional kind prefix (u8 n + n bytes), optional heap figures
 * (struct mvw_heap), then body. Large bodies go out at once, without a copy, after what is
 * already buffered.
 *
 * An answer (DONE, FAIL) of SETTLE_BYTES or more goes out but for its last byte, which is
 * kept in the write buffer (w->settle) and sent when the worker is back for its next task
 * (mvw_next), or by any flush before. memvisor reads the worker's memory (mem_after, the
 * heap preload's page) once an answer has arrived whole: by then the caller has freed the
 * result it answered with and the reading is what the task kept, not the answer's carrier
 * (docs/run-files.md, "Per-task figures"). The bytes on the wire are the same: memvisor of
 * any version reads the message as it always did.
 *
 * `heap` == &mvw__heap_late (a big answer, GO said MVW_GO_HEAP_LATE): the heap figures go at
 * the payload's end (MVW_F_HEAP | MVW_F_HEAP_LATE) and what is kept for mvw_next is them,
 * measured when they are sent, after the result is freed.
 */
int mvw__queue(mvw_t *w, uint16_t type, uint64_t task, const char *kind, size_t kind_len,
               const struct mvw_heap *heap, const void *body, size_t len)
{
    uint8_t hdr[MVW_HEADER_SIZE + 1];
    int late = heap == &mvw__heap_late;
    size_t pre = (kind_len ? 1 + kind_len : 0) + (heap ? sizeof *heap : 0);
    size_t hlen = MVW_HEADER_SIZE + (kind_len ? 1 : 0), hsize = heap && !late ? sizeof *heap : 0;
    uint16_t flags =
        (kind_len ? MVW_F_KIND : 0) | (heap ? MVW_F_HEAP : 0) | (late ? MVW_F_HEAP_LATE : 0);
    struct iovec iov[4];
    int rc;

    if (w->err)
        return w->err;
    if (len > MVW_MAX_PAYLOAD - pre)
        return -EMSGSIZE;
    if (late && len < SETTLE_BYTES && !w->task_big)
        return -EINVAL; /* answer() asks for it only then */
    mvw_put_header(hdr, type, flags, task, (uint32_t)(pre + len));
    hdr[MVW_HEADER_SIZE] = (uint8_t)kind_len;
    if (len >= WBUF_DIRECT) {
        /* 1: the last byte waits; 2: the late heap figures wait (the body goes whole). */
        int settle = late ? 2
                          : (len >= SETTLE_BYTES || w->task_big) &&
                                (type == MVW_MSG_DONE || type == MVW_MSG_FAIL);
        size_t keep = settle == 2 ? sizeof(struct mvw_heap) : (size_t)settle;

        rc = mvw__flush(w);
        if (rc < 0)
            return rc;
        if (settle && (rc = wbuf_reserve(w, keep)) < 0) /* before anything goes out */
            return rc;
        iov[0] = (struct iovec){hdr, hlen};
        iov[1] = (struct iovec){(void *)kind, kind_len};
        iov[2] = (struct iovec){(void *)heap, hsize};
        iov[3] = (struct iovec){(void *)body, len - (settle == 1)};
        rc = send_iov(w, iov, 4);
        w->last_flush_ns = now_ns();
        if (settle && rc == 0) {
            w->settle_at = w->wlen;
            if (settle == 1)
                w->wbuf[w->wlen] = ((const uint8_t *)body)[len - 1];
            else
                memset(w->wbuf + w->wlen, 0, keep); /* filled by mvw__flush */
            w->wlen += keep;
            w->settle = settle;
        }
        return rc;
    }
    rc = wbuf_reserve(w, hlen + kind_len + hsize + len + (late ? sizeof(struct mvw_heap) : 0));
    if (rc < 0)
        return rc;
    memcpy(w->wbuf + w->wlen, hdr, hlen);
    w->wlen += hlen;
    if (kind_len)
        memcpy(w->wbuf + w->wlen, kind, kind_len);
    w->wlen += kind_len;
    if (hsize)
        memcpy(w->wbuf + w->wlen, heap, hsize);
    w->wlen += hsize;
    if (len)
        memcpy(w->wbuf + w->wlen, body, len);
    w->wlen += len;
    if (late) { /* a big task's small answer: its figures are measured at the flush */
        w->settle_at = w->wlen;
        memset(w->wbuf + w->wlen, 0, sizeof(struct mvw_heap));
        w->wlen += sizeof(struct mvw_heap);
        w->settle = 2;
    }
    return 0;
}

/*
 * Before a big answer's last byte: the free memory at the top of glibc's heap, and its free
 * pages, given back (malloc_trim). free() unmaps a block of the mmap threshold or more at
 * once, but that threshold is dynamic: the first such block freed raises it to the block's
 * size (up to 32 MiB), so the next answer of that size comes from the heap, and its bytes,
 * freed, would stay there and read as kept by the task after it. Only after an answer of
 * SETTLE_BYTES or more, whose copy and send already cost far more.
 */
static void settle_heap(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* The heap figures sent with each answer when memvisor asks (MVW_GO_HEAP): glibc's
 * mallinfo2(), bytes in use in its arenas plus its mmap'd chunks. It walks the allocator's
 * free lists under the arena lock: a few microseconds per task (bench/heap_overhead). */
static void heap_figures(struct mvw_heap *h)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();

    /* All zero: malloc is not glibc's (a sanitizer's runtime, tcmalloc, jemalloc), and
     * mallinfo2 knows nothing of it: unknown, not "nothing live". */
    h->live_bytes = mi.arena || mi.hblkhd ? (int64_t)(mi.uordblks + mi.hblkhd) : -1;
#else
    h->live_bytes = -1;
#endif
    h->blocks = -1; /* glibc counts free chunks, not live ones */
}

/* The default heap view: glibc's mallinfo2() as a JSON object. */
static long default_snapshot(char *buf, size_t cap)
{
    int n;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();

    n = snprintf(buf, cap,
                 "{\"allocator\":\"glibc\",\"arena\":%zu,\"ordblks\":%zu,\"hblks\":%zu,"
                 "\"hblkhd\":%zu,\"uordblks\":%zu,\"fordblks\":%zu,\"keepcost\":%zu}",
                 mi.arena, mi.ordblks, mi.hblks, mi.hblkhd, mi.uordblks, mi.fordblks, mi.keepcost);
#else
    n = snprintf(buf, cap, "{\"allocator\":\"unknown\"}");
#endif
    return n < 0 || (size_t)n >= cap ? -ENOBUFS : n;
}

/* Answers a SNAPSHOT request at once (memvisor is waiting for it). A callback that fails is
 * reported as a JSON error object; -ENOBUFS from it doubles the buffer and retries. */
int mvw__answer_snapshot(mvw_t *w)
{
    size_t cap = SNAP_CAP_FIRST;
    char *buf = NULL, *p;
    long n;
    int rc;

    for (;;) {
        p = realloc(buf, cap);
        if (!p) {
            free(buf);
            return -ENOMEM;
        }
        buf = p;
        n = w->snap_fn ? w->snap_fn(w->snap_arg, buf, cap) : default_snapshot(buf, cap);
        if (n != -ENOBUFS || cap >= SNAP_CAP_MAX)
            break;
        cap *= 2;
    }
    if (n < 0 || (size_t)n > cap)
        n = snprintf(buf, cap, "{\"error\":\"snapshot callback failed\",\"errno\":%ld}",
                     n < 0 ? -n : (long)EOVERFLOW);
    rc = mvw__queue(w, MVW_MSG_SNAPSHOT, 0, NULL, 0, NULL, buf, (size_t)n);
    free(buf);
    return rc < 0 ? rc : mvw__flush(w);
}

/*
 * Checks the unscanned input: TASKs stay in place, SNAPSHOT requests are answered and cut out,
 * STOP ends the batch (everything buffered is dropped). A malformed message stops the scan;
 * it is reported when it reaches the front. Anything else from memvisor here is an error.
 */
int mvw__scan(mvw_t *w)
{
    struct mvw_msg m;
    long n;
    int rc;

    while (!w->stopped && w->scan < w->rlen) {
        n = mvw_decode(w->rbuf + w->scan, w->rlen - w->scan, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR,
                       &m);
        if (n <= 0)
            return 0;
        switch (m.h.type) {
        case MVW_MSG_TASK:
            if (w->mode == MVW_MODE_SERVICE)
                return mvw__fail(w, -EBADMSG);
            w->scan += (size_t)n;
            break;
        case MVW_MSG_STOP:
            w->stopped = 1;
            w->rpos = w->rlen = w->scan = 0;
            break;
        case MVW_MSG_SNAPSHOT:
            memmove(w->rbuf + w->scan, w->rbuf + w->scan + n, w->rlen - w->scan - (size_t)n);
            w->rlen -= (size_t)n;
            rc = mvw__answer_snapshot(w);
            if (rc < 0)
                return rc;
            break;
        default: /* a second GO */ return mvw__fail(w, -EBADMSG);
        }
    }
    return 0;
}

/* Makes room to read: compacts, grows to hold the whole message being received (its length
 * is checked first), and gives back a large buffer once it is empty again. */
static int rbuf_prepare(mvw_t *w)
{
    size_t avail = w->rlen - w->rpos, need = RBUF_INIT;
    uint32_t len;
    uint8_t *p;

    if (w->rpos > 0 && (avail <= 4096 || w->rcap - w->rlen < RBUF_INIT / 4)) {
        memmove(w->rbuf, w->rbuf + w->rpos, avail);
        w->scan -= w->rpos;
        w->rlen = avail;
        w->rpos = 0;
    }
    if (avail == 0 && w->rcap > RBUF_KEEP) {
        free(w->rbuf);
        w->rbuf = NULL;
        w->rcap = 0;
    }
    if (w->rlen - w->scan >= MVW_HEADER_SIZE) {
        memcpy(&len, w->rbuf + w->scan, 4);
        if (len <= MVW_MAX_PAYLOAD && w->scan + MVW_HEADER_SIZE + len > need)
            need = w->scan + MVW_HEADER_SIZE + len;
    }
    if (w->rcap > w->rlen && w->rcap >= need)
        return 0;
    if (need <= w->rlen) /* full of complete messages (mvw_poll with tasks buffered) */
        need = 2 * w->rlen;
    p = realloc(w->rbuf, need);
    if (!p)
        return -ENOMEM;
    w->rbuf = p;
    w->rcap = need;
    return 0;
}

/*
 * Reads what is there (dontwait) or blocks for at least one byte. Returns bytes read,
 * -EAGAIN (dontwait, nothing there) or a fatal error (EOF is -EPIPE).
 *
 * The wait is in poll(), never in a blocking recv(): a unix socket wakes whoever sleeps in
 * recv() on it each time memvisor reads what this worker sent (unix_write_space wakes the
 * socket's wait queue with no regard for what the sleeper waits for), while poll() is woken
 * only when there is something to read. A worker per task slept 2.75 times a task in recv
 * (HELLO and its answer each read by memvisor while it waited, then GO and STOP), its
 * template 1.6 times a fork in recvmsg; in poll the two sleep 2.7 times a task together
 * (sched_switch, bench/fork_per_task.py's C run, docs/benchmarks.md).
 */
static long read_in(mvw_t *w, int dontwait)
{
    ssize_t r;
    int rc;

    rc = rbuf_prepare(w);
    if (rc < 0)
        return rc;
    for (;;) {
        r = recv(w->fd, w->rbuf + w->rlen, w->rcap - w->rlen, MSG_DONTWAIT);
        if (r > 0) {
            w->rlen += (size_t)r;
            return r;
        }
        if (r == 0)
            return mvw__fail(w, -EPIPE);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (dontwait)
                return -EAGAIN;
            rc = mvw__wait_fd(w->fd, POLLIN);
            if (rc < 0)
                return mvw__fail(w, rc);
            continue;
        }
        return mvw__fail(w, -errno);
    }
}

/* Whether buffered answers should go out now: many or large, the oldest flush is 200 us ago,
 * or the task just answered was slow (then its answer is worth a syscall on its own). */
static int want_flush(mvw_t *w)
{
    uint64_t now;

    if (w->wcount >= FLUSH_COUNT || w->wlen >= FLUSH_BYTES)
        return 1;
    now = now_ns();
    return now - w->last_flush_ns >= FLUSH_AGE_NS || now - w->task_start_ns >= FLUSH_SLOW_NS;
}

static void free_mvw(mvw_t *w)
{
    free(w->rbuf);
    free(w->tbuf);
    free(w->wbuf);
    free(w);
}

/* Waits for GO (answering SNAPSHOT requests meanwhile); STOP first is a clean stop. */
static int handshake(mvw_t *w)
{
    struct mvw_go go;
    struct mvw_msg m;
    long n;

    for (;;) {
        n = mvw_decode(w->rbuf + w->rpos, w->rlen - w->rpos, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR,
                       &m);
        if (n < 0)
            return mvw__fail(w, (int)n);
        if (n == 0) {
            n = read_in(w, 0);
            if (n < 0)
                return (int)n;
            continue;
        }
        w->rpos += (size_t)n;
        w->scan = w->rpos;
        switch (m.h.type) {
        case MVW_MSG_GO:
            memcpy(&go, m.payload, sizeof go);
            if (go.version < MVW_PROTOCOL_MIN || go.version > MVW_PROTOCOL_VERSION)
                return mvw__fail(w, -EPROTONOSUPPORT);
            w->mode = go.mode & MVW_MODE_MASK;
            if ((w->mode != MVW_MODE_BATCH && w->mode != MVW_MODE_SERVICE &&
                 w->mode != MVW_MODE_TEMPLATE) ||
                (go.mode & ~(uint32_t)MVW_GO_VALID) || (go.version < 2 && go.mode != w->mode))
                return mvw__fail(w, -EBADMSG);
            w->slot = go.slot;
            w->prefetch = go.prefetch;
            w->version = go.version;
            /* Batch: with each answer; a service: with each BEGIN and END. */
            w->report_heap = (go.mode & MVW_GO_HEAP) &&
                             (w->mode == MVW_MODE_BATCH || w->mode == MVW_MODE_SERVICE);
            w->heap_late =
                w->report_heap && w->mode == MVW_MODE_BATCH && (go.mode & MVW_GO_HEAP_LATE);
            /* What came with GO is handled now: a service polls the fd, which will not
             * wake it for bytes already buffered here. */
            return mvw__scan(w);
        case MVW_MSG_STOP:
            w->stopped = 1;
            w->rpos = w->rlen = w->scan = 0;
            return 0;
        case MVW_MSG_SNAPSHOT: {
            int rc = mvw__answer_snapshot(w);
            if (rc < 0)
                return rc;
            break;
        }
        default: /* a TASK before GO */ return mvw__fail(w, -EBADMSG);
        }
    }
}

/* Opens the channel named by $MEMVISOR_FD, says HELLO and waits for GO. `forked`: this
 * process was just forked from the template. */
static int open_channel(mvw_t **out, int forked)
{
    const char *env = getenv(MVW_ENV_FD);
    /* A single-threaded process can serve as a template (template.c). A worker just forked
     * has one thread (the clone copies only the calling one): no /proc read to say so. */
    struct mvw_hello hello = {MVW_PROTOCOL_VERSION,
                              MVW_HELLO_HEAP_LATE |
                                  (forked || mvw__can_template() ? MVW_HELLO_TEMPLATE : 0)};
    int fd, flags, type, rc;
    socklen_t tl = sizeof type;
    mvw_t *w;

    *out = NULL;
    if (!env)
        return -ENOENT;
    fd = parse_fd(env);
    if (fd < 0)
        return fd;
    flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
        return -errno;
    if (type != SOCK_STREAM)
        return -ESOCKTNOSUPPORT;
    /* The worker's own children must not hold memvisor's channel open. */
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return -errno;
    w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->last_flush_ns = now_ns();
    /* Every buffer a conversation needs is made before HELLO: memvisor reads the first task's
     * starting memory once the worker has said HELLO, and a buffer made after it (the input
     * buffer when the first read waits, the task buffer when the first task is taken) would
     * count as the first task's, or not, by a race (64 KiB of heap_retained). */
    w->tbuf = malloc(TBUF_INIT);
    w->tcap = w->tbuf ? TBUF_INIT : 0;
    rc = w->tbuf ? rbuf_prepare(w) : -ENOMEM;
    if (rc == 0)
        rc = mvw__queue(w, MVW_MSG_HELLO, 0, NULL, 0, NULL, &hello, sizeof hello);
    if (rc == 0)
        rc = mvw__flush(w);
    if (rc == 0)
        rc = handshake(w);
    if (rc < 0) {
        free_mvw(w);
        return rc;
    }
    *out = w;
    return 0;
}

/*
 * Connects as open_channel does. When memvisor asks this process to be the template (GO with
 * MVW_MODE_TEMPLATE), everything before this call was the workers' start-up: the process now
 * forks a worker per FORK request, and each child comes back here and connects on its own
 * channel as a normal worker. A retired template returns 0 with mvw_stop_requested() true,
 * as a worker told STOP before GO does, so the caller ends as it would after STOP.
 */
MVW_API int mvw_open(mvw_t **out)
{
    mvw_t *w;
    int rc;

    *out = NULL;
    for (int forked = 0;; forked = 1) {
        rc = open_channel(&w, forked);
        if (rc < 0)
            return rc;
        if (w->mode != MVW_MODE_TEMPLATE)
            break;
        rc = mvw__serve_template(w);
        if (rc < 0) {
            free_mvw(w);
            return rc;
        }
        if (rc == 0) {
            w->mode = MVW_MODE_BATCH; /* retired: mvw_next() says STOP */
            break;
        }
        free_mvw(w); /* a new worker: its channel has the template's fd number */
    }
    *out = w;
    return 0;
}

MVW_API int mvw_fd(const mvw_t *w)
{
    return w->fd;
}

MVW_API unsigned mvw_slot(const mvw_t *w)
{
    return w->slot;
}

MVW_API int mvw_is_service(const mvw_t *w)
{
    return w->mode == MVW_MODE_SERVICE;
}

/* Copies the TASK at the front into tbuf (NUL-terminated) and hands it out. */
static int take_task(mvw_t *w, mvw_task_t *task)
{
    struct mvw_msg m;
    long n =
        mvw_decode(w->rbuf + w->rpos, w->rlen - w->rpos, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR, &m);
    size_t need, cap;
    uint8_t *p;

    if (n <= 0) /* cannot happen: scan() checked it */
        return mvw__fail(w, -EBADMSG);
    need = (size_t)m.h.length + 1;
    if (w->tcap < need || (w->tcap > TBUF_KEEP && need <= TBUF_KEEP / 4)) {
        cap = w->tcap < need ? w->tcap * 2 : need; /* grow geometrically, shrink to fit */
        if (cap < need)
            cap = need < TBUF_INIT ? TBUF_INIT : need;
        p = realloc(w->tbuf, cap);
        if (!p)
            return -ENOMEM;
        w->tbuf = p;
        w->tcap = cap;
    }
    memcpy(w->tbuf, m.payload, m.h.length);
    w->tbuf[m.h.length] = '\0';
    w->rpos += (size_t)n;
    w->in_task = 1;
    w->task_big = m.h.length >= SETTLE_BYTES;
    w->task_id = m.h.task;
    w->kind_len = 0;
    task->id = m.h.task;
    task->data = w->tbuf;
    task->len = m.h.length;
    w->task_start_ns = now_ns();
    return 1;
}

/*
 * Batch mode: the next task, 0 after STOP, or a negative errno. Before blocking for input it
 * sends every buffered answer; it first looks (without blocking) whether input is already
 * there, so that a worker with prefetched tasks keeps batching its answers.
 */
/*
 * A big task's input buffers, given back before its answer ends: the read buffer that held
 * its message (when nothing else is in it) and the task buffer that held its copy, both
 * back to their first size. memvisor reads the task's end once its answer has arrived whole;
 * a buffer kept from the task's bytes is the carrier, not what the task kept (12 MiB tasks
 * read +24 MiB retained, and the next task -24 MiB). The caller is back in mvw_next: the
 * task's data it was given is no longer its to read.
 */
static void release_input(mvw_t *w)
{
    uint8_t *p;

    w->task_big = 0;
    if (w->tcap > TBUF_INIT && (p = realloc(w->tbuf, TBUF_INIT))) {
        w->tbuf = p;
        w->tcap = TBUF_INIT;
    }
    if (w->rpos == w->rlen && w->rcap > RBUF_INIT && (p = realloc(w->rbuf, RBUF_INIT))) {
        w->rbuf = p;
        w->rcap = RBUF_INIT;
        w->rpos = w->rlen = w->scan = 0;
    }
}

MVW_API int mvw_next(mvw_t *w, mvw_task_t *task)
{
    struct mvw_msg m;
    long n;
    int rc;

    if (w->in_task)
        return -EINPROGRESS;
    if (w->mode != MVW_MODE_BATCH)
        return -EOPNOTSUPP;
    /* A big answer's last byte: the caller is back, its result freed (see mvw__queue). A big
     * task's answer: its input buffers go first. */
    if (w->settle || w->task_big) {
        if (w->task_big)
            release_input(w);
        settle_heap();
        rc = mvw__flush(w);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        if (w->err)
            return w->err;
        rc = mvw__scan(w);
        if (rc < 0)
            return rc;
        if (w->stopped)
            return mvw__flush(w);
        if (w->rpos < w->scan)
            return take_task(w, task);
        n = mvw_decode(w->rbuf + w->rpos, w->rlen - w->rpos, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR,
                       &m);
        if (n < 0)
            return mvw__fail(w, (int)n);
        n = w->wlen ? read_in(w, 1) : -EAGAIN;
        if (n == -EAGAIN) {
            rc = mvw__flush(w);
            if (rc < 0)
                return rc;
            n = read_in(w, 0);
        }
        if (n < 0)
            return (int)n;
    }
}

/* Answers the task in hand with DONE or FAIL (plus its kind) and flushes per the policy. */
static int answer(mvw_t *w, uint16_t type, const void *body, size_t len)
{
    struct mvw_heap heap;
    int rc;

    if (!w->in_task)
        return -EINVAL;
    if (!body && len)
        return -EINVAL;
    /* MVW_F_COLLECT asks for garbage to be collected first: C has none to collect. A big
     * answer's figures are measured once the caller has freed its result (mvw__queue). */
    if (w->report_heap && w->heap_late && (len >= SETTLE_BYTES || w->task_big))
        rc = mvw__queue(w, type, w->task_id, w->kind, w->kind_len, &mvw__heap_late, body, len);
    else {
        if (w->report_heap)
            heap_figures(&heap);
        rc = mvw__queue(w, type, w->task_id, w->kind, w->kind_len, w->report_heap ? &heap : NULL,
                        body, len);
    }
    if (rc == -EMSGSIZE || rc == -ENOMEM)
        return rc; /* still in hand: the caller may answer again, shorter */
    w->in_task = 0;
    w->wcount++;
    if (rc < 0)
        return rc;
    /* A big answer's last byte, and a big task's answer, wait for mvw_next (mvw__queue,
     * release_input). */
    return !w->settle && !w->task_big && want_flush(w) ? mvw__flush(w) : 0;
}

MVW_API int mvw_done(mvw_t *w, const void *result, size_t len)
{
    return answer(w, MVW_MSG_DONE, result, len);
}

MVW_API int mvw_fail(mvw_t *w, const void *error, size_t len)
{
    return answer(w, MVW_MSG_FAIL, error, len);
}

/* Checks a task kind: 1..255 bytes. Returns its length or -EINVAL. */
static int kind_length(const char *kind)
{
    size_t n;

    if (!kind)
        return -EINVAL;
    n = strnlen(kind, KIND_MAX + 1);
    return n == 0 || n > KIND_MAX ? -EINVAL : (int)n;
}

MVW_API int mvw_set_kind(mvw_t *w, const char *kind)
{
    int n = kind_length(kind);

    if (n < 0 || !w->in_task)
        return -EINVAL;
    memcpy(w->kind, kind, (size_t)n);
    w->kind_len = (uint8_t)n;
    return 0;
}

/* Service mode: a request begins; BEGIN goes out at once with the next task id. */
MVW_API int mvw_begin(mvw_t *w, const char *kind)
{
    struct mvw_heap heap;
    int n = 0, rc;

    if (w->mode != MVW_MODE_SERVICE)
        return -EOPNOTSUPP;
    if (w->svc_open)
        return -EINPROGRESS;
    if (kind) {
        n = kind_length(kind);
        if (n < 0)
            return n;
    }
    if (w->report_heap) /* the heap as the request begins: its "before" */
        heap_figures(&heap);
    rc = mvw__queue(w, MVW_MSG_BEGIN, w->svc_id + 1, kind, (size_t)n, w->report_heap ? &heap : NULL,
                    NULL, 0);
    if (rc < 0)
        return rc;
    w->svc_id++;
    w->svc_open = 1;
    return mvw__flush(w);
}

/* Service mode: the open request ends with `status` (0 = ok); END goes out at once. */
MVW_API int mvw_end(mvw_t *w, int status)
{
    uint32_t st = (uint32_t)status;
    struct mvw_heap heap;
    int rc;

    if (w->mode != MVW_MODE_SERVICE)
        return -EOPNOTSUPP;
    if (!w->svc_open)
        return -EINVAL;
    if (w->report_heap) /* ...and as it ends: the payload is the figures, then the status */
        heap_figures(&heap);
    rc = mvw__queue(w, MVW_MSG_END, w->svc_id, NULL, 0, w->report_heap ? &heap : NULL, &st,
                    sizeof st);
    if (rc < 0)
        return rc;
    w->svc_open = 0;
    return mvw__flush(w);
}

/* Non-blocking: reads what is there, handles STOP and SNAPSHOT, sends buffered answers. */
MVW_API int mvw_poll(mvw_t *w)
{
    struct mvw_msg m;
    long n;
    int rc;

    for (;;) {
        if (w->err)
            return w->err;
        rc = mvw__scan(w);
        if (rc < 0)
            return rc;
        if (w->stopped)
            break;
        /* scan() stops at a malformed message: report it now, not when a task is wanted. */
        if (w->scan < w->rlen) {
            n = mvw_decode(w->rbuf + w->scan, w->rlen - w->scan, MVW_MAX_PAYLOAD,
                           MVW_FROM_SUPERVISOR, &m);
            if (n < 0)
                return mvw__fail(w, (int)n);
        }
        n = read_in(w, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
    }
    return mvw__flush(w);
}

MVW_API int mvw_stop_requested(const mvw_t *w)
{
    return w->stopped;
}

MVW_API void mvw_set_snapshot(mvw_t *w, mvw_snapshot_fn fn, void *arg)
{
    w->snap_fn = fn;
    w->snap_arg = arg;
}

MVW_API int mvw_flush(mvw_t *w)
{
    return mvw__flush(w);
}

/* Sends what is buffered (best effort), closes the channel and frees everything. */
MVW_API void mvw_close(mvw_t *w)
{
    if (!w)
        return;
    mvw__flush(w);
    close(w->fd);
    free_mvw(w);
}

/* Static text for the errors this API returns; names what to do where that helps. */
MVW_API const char *mvw_strerror(int err)
{
    switch (-err) {
    case 0: return "success";
    case ENOENT: return "not started by memvisor (MEMVISOR_FD is not set)";
    case EBADF: return "MEMVISOR_FD does not name an open file descriptor";
    case ENOTSOCK: return "MEMVISOR_FD is not a socket";
    case ESOCKTNOSUPPORT: return "MEMVISOR_FD is not a stream socket";
    case EPIPE: return "memvisor closed the channel";
    case EBADMSG: return "malformed message from memvisor";
    case EMSGSIZE: return "message too large";
    case EPROTONOSUPPORT: return "memvisor speaks another protocol version";
    case EINPROGRESS: return "the previous task or request is not finished";
    case EINVAL: return "invalid argument, or no task or request in hand";
    case EOPNOTSUPP: return "not available in this worker mode (batch or service)";
    case ENOMEM: return "out of memory";
    default: break;
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    {
        const char *s = err < 0 ? strerrordesc_np(-err) : NULL;
        return s ? s : "unknown error";
    }
#else
    return "unknown error";
#endif
}
