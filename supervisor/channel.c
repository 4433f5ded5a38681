/*
 * channel: bytes to and from one worker (see channel.h).
 *
 * Every callback into the owner may close the channel: the loops below re-check chan_open
 * and broken after each one, and the buffers live until the last handle has closed.
 */
#include "channel.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memvisor/protocol.h>

#define READ_CHUNK      (64 * 1024)
#define OUTPUT_LINE_MAX (16 * 1024) /* longer output lines are logged in pieces */

static bool lines(const mv_chan_t *c)
{
    return c->o.protocol == MV_PROTO_LINES;
}

static uv_stream_t *input_of(mv_chan_t *c)
{
    return lines(c) ? (uv_stream_t *)&c->in : (uv_stream_t *)&c->chan;
}

static bool input_open(const mv_chan_t *c)
{
    return lines(c) ? c->in_open : c->chan_open;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* One read buffer lent to every channel in turn. libuv calls alloc_cb then the read callback
 * for one stream at a time, and a read is handled before its callback returns, so a channel
 * needs storage of its own only for what a read leaves unhandled (a partial message or line),
 * copied there. Before, each channel kept 64 KiB for each of its two streams: 8 MiB of heap
 * for 64 workers, about 1 MiB of it resident (bench/footprint, docs/recycling.md). The
 * supervisor has one loop thread. While a read is handled, the buffer it landed in (c->lent)
 * points at this one; whatever must add to it meanwhile (a drain called back from the
 * handling) first gives it back its own storage (unlend). */
static uint8_t scratch[READ_CHUNK];
static bool scratch_lent;

/* The lent buffer gets its own storage back, with what the handling left unread copied in.
 * 0 or -ENOMEM (then what was unread is lost: the caller fails the channel). */
static int unlend(mv_chan_t *c)
{
    mv_buf_t *b = c->lent, own = c->stash;
    int r = 0;

    if (!b)
        return 0;
    own.off = own.len = 0;
    if (mv_buf_unread(b) > 0)
        r = mv_buf_append(&own, mv_buf_head(b), mv_buf_unread(b));
    *b = own;
    c->lent = NULL;
    memset(&c->stash, 0, sizeof c->stash);
    scratch_lent = false;
    return r;
}

static void free_buffers(mv_chan_t *c)
{
    unlend(c); /* never free the shared buffer */
    mv_buf_free(&c->rbuf);
    mv_buf_free(&c->wbuf);
    mv_buf_free(&c->wflight);
    mv_buf_free(&c->outline);
}

void mv_chan_init(mv_chan_t *c, uv_loop_t *loop, const mv_chan_opts_t *o,
                  const mv_chan_events_t *ev, void *owner)
{
    memset(c, 0, sizeof *c);
    c->o = *o;
    c->ev = ev;
    c->owner = owner;
    c->loop = loop;
    c->fd_out[0] = c->fd_out[1] = c->fd_sock[0] = c->fd_sock[1] = -1;
    c->fd_in[0] = c->fd_in[1] = -1;
}

/* The protocol was broken: said once, and nothing more the worker says counts. */
void mv_chan_fail(mv_chan_t *c, const char *what)
{
    if (c->broken)
        return;
    c->broken = true;
    if (c->chan_open)
        uv_read_stop((uv_stream_t *)&c->chan);
    c->ev->on_error(c->owner, what);
}

/* ---- api ---- */

static void api_message(mv_chan_t *c, const struct mvw_msg *m)
{
    const uint8_t *kind, *rest;
    size_t kind_len, rest_len;
    struct mvw_hello hello;
    uint32_t status;

    switch (m->h.type) {
    case MVW_MSG_HELLO:
        if (c->hello)
            return mv_chan_fail(c, "second HELLO");
        c->hello = true;
        memcpy(&hello, m->payload, sizeof hello);
        c->version = hello.version;
        c->hello_flags = hello.flags;
        c->ev->on_hello(c->owner, hello.version);
        return;
    case MVW_MSG_DONE:
    case MVW_MSG_FAIL:
        if (!c->hello)
            return mv_chan_fail(c, "answer before HELLO");
        if (mvw_split_kind(m, &kind, &kind_len, &rest, &rest_len) < 0)
            return mv_chan_fail(c, "bad kind prefix");
        /* The worker's own heap figures (v2), for the owner to take during on_answer. */
        c->heap_fresh = mvw_split_heap(m, &rest, &rest_len, &c->heap);
        if (c->heap_fresh < 0 || (c->heap_fresh && c->version < 2) ||
            ((m->h.flags & MVW_F_HEAP_LATE) && !c->heap_late))
            return mv_chan_fail(c, "bad heap figures");
        c->ev->on_answer(c->owner, m->h.task, m->h.type == MVW_MSG_DONE, kind, kind_len, rest,
                         rest_len);
        return;
    case MVW_MSG_BEGIN:
    case MVW_MSG_END:
        if (!c->hello || !c->o.service)
            return mv_chan_fail(c, "BEGIN/END outside service mode");
        /* The worker's heap figures as the request began or ended (v2, when GO asked). */
        if (mvw_split_kind(m, &kind, &kind_len, &rest, &rest_len) < 0)
            return mv_chan_fail(c, "bad kind prefix");
        c->heap_fresh = mvw_split_heap(m, &rest, &rest_len, &c->heap);
        if (c->heap_fresh < 0 || (c->heap_fresh && c->version < 2))
            return mv_chan_fail(c, "bad heap figures");
        if (m->h.type == MVW_MSG_END) {
            memcpy(&status, rest, sizeof status); /* mvw_decode: exactly the status is left */
            c->ev->on_end(c->owner, m->h.task, status);
        } else {
            c->ev->on_begin(c->owner, m->h.task, kind, kind_len);
        }
        return;
    case MVW_MSG_SNAPSHOT:
        /* Answers to requests memvisor sent; a late one (after its deadline) is the owner's
         * to drop. */
        if (c->snap_asked == 0)
            return mv_chan_fail(c, "SNAPSHOT reply that was not asked for");
        c->snap_asked--;
        c->ev->on_snapshot(c->owner, m->payload, m->h.length);
        return;
    default: mv_chan_fail(c, "unexpected message type"); return;
    }
}

/* ---- answers over max_message ----
 *
 * An answer longer than [worker] max_message, but one the protocol allows (the worker cannot
 * know the setting), is not a broken worker: its bytes are dropped as they come and its task
 * fails with an error that says why. Breaking the channel killed the worker, and the task was
 * retried, to fail the same way, until it was quarantined. */

static void long_answer_failed(mv_chan_t *c, uint64_t id)
{
    char why[200];
    int n = snprintf(why, sizeof why,
                     "its answer was %" PRIu64 " bytes, over [worker] max_message (%" PRIu32
                     " bytes), and was not kept: raise max_message or answer less",
                     c->drop_len, c->o.max_message);

    c->dropping = false;
    c->drop_left = c->drop_len = 0;
    c->heap_fresh = 0;
    c->ev->on_answer(c->owner, id, false, NULL, 0, why, (size_t)n);
}

/* api: whether rbuf starts with the header of an answer the protocol allows but max_message
 * does not (mvw_decode said -EMSGSIZE); if so it is dropped from here on. */
static bool drop_long(mv_chan_t *c)
{
    const uint8_t *p = mv_buf_head(&c->rbuf);
    uint32_t length;
    uint16_t type;

    memcpy(&length, p, 4);
    memcpy(&type, p + 4, 2);
    if (!c->hello || (type != MVW_MSG_DONE && type != MVW_MSG_FAIL) || length > MVW_MAX_PAYLOAD)
        return false;
    memcpy(&c->drop_task, p + 8, 8);
    c->drop_len = length;
    c->drop_left = (uint64_t)MVW_HEADER_SIZE + length;
    return true;
}

/* api: drops what rbuf holds of the answer being dropped; true once it is all gone. */
static bool dropped(mv_chan_t *c)
{
    size_t n = mv_buf_unread(&c->rbuf);

    if (n > c->drop_left)
        n = (size_t)c->drop_left;
    mv_buf_consume(&c->rbuf, n);
    c->drop_left -= n;
    if (c->drop_left > 0)
        return false;
    long_answer_failed(c, c->drop_task);
    return true;
}

/* Decodes and handles every whole message in rbuf. Stops at the first protocol error. */
static void api_process(mv_chan_t *c)
{
    struct mvw_msg m;
    long used;

    while (!c->broken && !c->closing) {
        if (c->drop_left > 0) {
            if (!dropped(c))
                break;
            continue; /* its failure was handed on: the owner may have closed the channel */
        }
        used = mvw_decode(mv_buf_head(&c->rbuf), mv_buf_unread(&c->rbuf), c->o.max_message,
                          MVW_FROM_WORKER, &m);
        if (used == 0)
            break;
        if (used == -EMSGSIZE && drop_long(c))
            continue;
        if (used < 0) {
            mv_buf_reset(&c->rbuf);
            mv_chan_fail(c, used == -EMSGSIZE ? "message longer than max_message"
                                              : "malformed message");
            return;
        }
        /* Consumed first: the handler may re-enter (drain) and must not see it again. The
         * bytes stay valid until the next append, which only a read does. */
        mv_buf_consume(&c->rbuf, (size_t)used);
        api_message(c, &m);
    }
}

/* ---- lines ---- */

static void lines_process(mv_chan_t *c, bool eof)
{
    size_t plen = strlen(c->o.fail_prefix);
    uint8_t *p, *nl;
    size_t n, skip;

    while (!c->broken && !c->closing && mv_buf_unread(&c->rbuf) > 0) {
        p = mv_buf_head(&c->rbuf);
        n = mv_buf_unread(&c->rbuf);
        nl = memchr(p, '\n', n);
        if (c->dropping || (nl ? (size_t)(nl - p) : n) > c->o.max_message) {
            /* Over max_message: dropped up to its end, then its task fails (drop_long). */
            n = nl ? (size_t)(nl - p) : n;
            c->dropping = true;
            c->drop_len += n;
            mv_buf_consume(&c->rbuf, nl ? n + 1 : n);
            if (nl)
                long_answer_failed(c, 0);
            else if (eof)
                mv_chan_fail(c, "unterminated result line at end of output");
            continue;
        }
        if (!nl) {
            if (eof)
                mv_chan_fail(c, "unterminated result line at end of output");
            return;
        }
        n = (size_t)(nl - p);
        mv_buf_consume(&c->rbuf, n + 1);
        if (plen > 0 && n >= plen && memcmp(p, c->o.fail_prefix, plen) == 0) {
            for (skip = plen; skip < n && p[skip] == ' ';)
                skip++;
            c->ev->on_answer(c->owner, 0, false, NULL, 0, p + skip, n - skip);
        } else {
            c->ev->on_answer(c->owner, 0, true, NULL, 0, p, n);
        }
    }
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mv_chan_t *c = h->data;
    mv_buf_t *b = h == (uv_handle_t *)&c->out ? &c->outline : &c->rbuf;

    if (mv_buf_unread(b) == 0 && !scratch_lent) {
        scratch_lent = true;
        buf->base = (char *)scratch;
        buf->len = sizeof scratch;
        return;
    }
    /* On ENOMEM libuv calls the read callback with UV_ENOBUFS. */
    if (mv_buf_reserve(b, READ_CHUNK) < 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)b->data + b->len;
    buf->len = b->cap - b->len;
}

/* Handles what rbuf holds. */
static void process(mv_chan_t *c, bool eof)
{
    if (lines(c))
        lines_process(c, eof);
    else
        api_process(c);
}

/* A read is over: the scratch buffer (if it was lent for it) is free again. */
static void return_scratch(const uv_buf_t *buf)
{
    if (buf->base == (char *)scratch)
        scratch_lent = false;
}

/* Handles n bytes read into buf: in b's own tail, or in the scratch buffer, which b points at
 * while `handle` runs; what it leaves unread is then copied into b's own storage. */
static void handle_read(mv_chan_t *c, mv_buf_t *b, const uv_buf_t *buf, size_t n,
                        void (*handle)(mv_chan_t *c, bool eof))
{
    if (buf->base != (char *)scratch) {
        b->len += n; /* read in place: alloc_cb handed out b's tail */
        handle(c, false);
        return;
    }
    c->stash = *b;
    c->lent = b;
    *b = (mv_buf_t){.data = scratch, .len = n, .cap = sizeof scratch};
    handle(c, false);
    if (unlend(c) < 0 && b == &c->rbuf)
        mv_chan_fail(c, "out of memory for the worker's input");
}

void mv_chan_input(mv_chan_t *c, const void *p, size_t n, bool eof)
{
    if (c->closing)
        return; /* closed: nothing more is read */
    if (unlend(c) < 0)
        return mv_chan_fail(c, "out of memory for the worker's input");
    c->rx_ns = uv_hrtime();
    if (mv_buf_append(&c->rbuf, p, n) < 0)
        return mv_chan_fail(c, "out of memory for the worker's input");
    process(c, eof);
}

/* Reading is on (not paused, not over). */
static bool reading(const mv_chan_t *c)
{
    return c->chan_open && !c->eof && !c->broken && !c->closing && !c->paused;
}

static void chan_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mv_chan_t *c = s->data;

    if (n > 0) {
        c->rx_ns = uv_hrtime();
        handle_read(c, &c->rbuf, buf, (size_t)n, process);
        if (c->ev->on_read && reading(c))
            c->ev->on_read(c->owner);
        return;
    }
    return_scratch(buf);
    if (n == 0)
        return;
    if (lines(c))
        lines_process(c, true);
    /* EOF or an error: the worker closed its end. Its exit normally follows. */
    if (c->chan_open && !c->eof) {
        uv_read_stop(s);
        c->eof = true;
        c->ev->on_eof(c->owner);
    }
}

static void resume_cb(uv_timer_t *t)
{
    mv_chan_t *c = t->data;

    c->paused = false;
    if (reading(c) && uv_read_start((uv_stream_t *)&c->chan, alloc_cb, chan_read_cb) < 0)
        mv_chan_fail(c, "could not read the worker's answers again (uv_read_start)");
}

int mv_chan_pause(mv_chan_t *c, uint64_t ms)
{
    int r;

    if (!reading(c))
        return 0;
    if (!c->resume_open) {
        r = uv_timer_init(c->loop, &c->resume);
        if (r < 0)
            return r;
        c->resume.data = c;
        c->resume_open = true;
        c->open_handles++;
    }
    r = uv_read_stop((uv_stream_t *)&c->chan);
    if (r == 0)
        r = uv_timer_start(&c->resume, resume_cb, ms, 0);
    if (r < 0) {
        uv_read_start((uv_stream_t *)&c->chan, alloc_cb, chan_read_cb);
        return r;
    }
    c->paused = true;
    return 0;
}

/* Logs whole output lines; keeps a partial one for the next read. */
static void output_process(mv_chan_t *c, bool eof)
{
    const char *stream = lines(c) ? "stderr" : "output";
    uint8_t *p, *nl;
    size_t n;

    while (mv_buf_unread(&c->outline) > 0) {
        p = mv_buf_head(&c->outline);
        n = mv_buf_unread(&c->outline);
        nl = memchr(p, '\n', n);
        if (nl) {
            mv_buf_consume(&c->outline, (size_t)(nl - p) + 1);
            c->ev->on_output(c->owner, stream, p, (size_t)(nl - p));
        } else if (n >= OUTPUT_LINE_MAX || eof) {
            n = MV_MIN(n, OUTPUT_LINE_MAX);
            mv_buf_consume(&c->outline, n);
            c->ev->on_output(c->owner, stream, p, n);
        } else {
            break;
        }
    }
}

void mv_chan_output(mv_chan_t *c, const void *p, size_t n, bool eof)
{
    if (!c->closing && unlend(c) == 0 && mv_buf_append(&c->outline, p, n) == 0)
        output_process(c, eof);
}

static void out_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mv_chan_t *c = s->data;

    if (n > 0) {
        handle_read(c, &c->outline, buf, (size_t)n, output_process);
        return;
    }
    return_scratch(buf);
    if (n < 0) {
        output_process(c, true);
        uv_read_stop(s);
    }
}

/* Reads a non-blocking fd until it has nothing more, into b. 1 at EOF, 0 at EAGAIN. */
static int read_rest(int fd, mv_buf_t *b)
{
    for (;;) {
        /* 4 KiB at a time (the buffer doubles as it fills): what a worker leaves in its pipes
         * at its exit is little, and a pool that stops drains every worker at once. */
        if (mv_buf_reserve(b, 4096) < 0)
            return 0;
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
        if (n > 0) {
            b->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0;
    }
}

void mv_chan_drain(mv_chan_t *c)
{
    uv_os_fd_t fd;
    int eof;

    /* The process is gone, so everything it wrote is already in the pipes: answers that
     * arrived together with the exit must count before its tasks are settled. (Called back
     * while a read of this channel is handled, the buffer gets its own storage first.) */
    if (unlend(c) < 0)
        return mv_chan_fail(c, "out of memory for the worker's input");
    if (c->chan_open && !c->eof && !c->broken && uv_fileno((uv_handle_t *)&c->chan, &fd) == 0) {
        eof = read_rest(fd, &c->rbuf);
        c->rx_ns = uv_hrtime();
        process(c, eof);
    }
    if (c->out_open && uv_fileno((uv_handle_t *)&c->out, &fd) == 0) {
        eof = read_rest(fd, &c->outline);
        output_process(c, eof);
    }
}

/* ---- setting up ---- */

/* Closes every fd the channel holds that no handle owns yet. */
static void close_fds(mv_chan_t *c)
{
    close_fd(&c->fd_out[0]);
    close_fd(&c->fd_out[1]);
    close_fd(&c->fd_sock[0]);
    close_fd(&c->fd_sock[1]);
    close_fd(&c->fd_in[0]);
    close_fd(&c->fd_in[1]);
}

int mv_chan_prepare(mv_chan_t *c, mv_chan_stdio_t *io)
{
    int err = 0;

    memset(io, 0, sizeof *io);
    io->api_fd = -1;
    /* The output pipe is made here, not by libuv, so stdout and stderr can share it. */
    if (pipe2(c->fd_out, O_CLOEXEC) < 0)
        return -errno;
    io->st[0].flags = UV_IGNORE;
    io->st[1].flags = io->st[2].flags = UV_INHERIT_FD;
    io->st[1].data.fd = io->st[2].data.fd = c->fd_out[1];
    if (c->o.protocol == MV_PROTO_API) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fd_sock) < 0)
            err = -errno;
        io->api_fd = c->fd_sock[1];
    } else if (lines(c)) {
        /* Pipes, not the socketpairs libuv's UV_CREATE_PIPE makes: a line written to a pipe
         * costs the worker ~0.5 us against ~1.2 for a unix socket (an skb allocated and
         * charged to its memory cgroup per write), and reading it costs memvisor ~0.3 against
         * ~0.8 (docs/recycling.md); and FIONREAD on our end of its stdin then says what it has
         * not read (mv_chan_input_pending), which on a socket it never did. Blocking on the
         * child's side, as a program expects its stdio. */
        if (pipe2(c->fd_in, O_CLOEXEC) < 0 || pipe2(c->fd_sock, O_CLOEXEC) < 0)
            err = -errno;
        io->st[0].flags = UV_INHERIT_FD;
        io->st[0].data.fd = c->fd_in[0];
        io->st[1].data.fd = c->fd_sock[1];
    }
    if (err < 0)
        close_fds(c);
    return err;
}

void mv_chan_spawned(mv_chan_t *c)
{
    close_fd(&c->fd_out[1]);
    close_fd(&c->fd_sock[1]);
    close_fd(&c->fd_in[0]);
}

/* Opens a pipe end we made ourselves as a libuv stream. 0 or -errno (the fd is closed). */
static int open_pipe(mv_chan_t *c, uv_pipe_t *p, int *fd, bool *is_open)
{
    int r = uv_pipe_init(c->loop, p, 0);

    if (r < 0) {
        close_fd(fd);
        return r;
    }
    p->data = c;
    c->open_handles++;
    *is_open = true;
    r = uv_pipe_open(p, *fd);
    if (r < 0)
        close(*fd);
    *fd = -1;
    return r;
}

int mv_chan_start(mv_chan_t *c, const char **call)
{
    int r;

    *call = "uv_pipe_open";
    r = open_pipe(c, &c->out, &c->fd_out[0], &c->out_open);
    if (r == 0 && c->fd_sock[0] >= 0)
        r = open_pipe(c, &c->chan, &c->fd_sock[0], &c->chan_open);
    if (r == 0 && c->fd_in[1] >= 0)
        r = open_pipe(c, &c->in, &c->fd_in[1], &c->in_open);
    if (r < 0)
        return r;
    *call = "uv_read_start";
    r = uv_read_start((uv_stream_t *)&c->out, alloc_cb, out_read_cb);
    if (r == 0 && c->chan_open)
        r = uv_read_start((uv_stream_t *)&c->chan, alloc_cb, chan_read_cb);
    return r;
}

static void closed_cb(uv_handle_t *h)
{
    mv_chan_t *c = h->data;

    if (--c->open_handles == 0) {
        free_buffers(c);
        c->ev->on_closed(c->owner);
    }
}

static void close_one(mv_chan_t *c, uv_pipe_t *p, bool *is_open)
{
    if (!*is_open)
        return;
    *is_open = false;
    uv_close((uv_handle_t *)p, closed_cb);
}

void mv_chan_close(mv_chan_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    close_fds(c);
    if (c->open_handles == 0) {
        free_buffers(c);
        c->ev->on_closed(c->owner);
        return;
    }
    close_one(c, &c->chan, &c->chan_open);
    close_one(c, &c->in, &c->in_open);
    close_one(c, &c->out, &c->out_open);
    if (c->resume_open) {
        c->resume_open = false;
        uv_close((uv_handle_t *)&c->resume, closed_cb);
    }
}

/* ---- writing ---- */

static void write_cb(uv_write_t *req, int status)
{
    mv_chan_t *c = req->data;

    c->writing = false;
    mv_buf_reset(&c->wflight);
    /* A failed write means the worker is gone or closed its input; its exit settles its
     * tasks, so there is nothing to undo here. */
    if (status < 0) {
        mv_buf_reset(&c->wbuf);
        return;
    }
    mv_chan_flush(c);
}

void mv_chan_flush(mv_chan_t *c)
{
    uv_stream_t *s = input_of(c);
    mv_buf_t tmp;
    uv_buf_t b;
    int n;

    if (c->writing || mv_buf_unread(&c->wbuf) == 0)
        return;
    if (!input_open(c) || c->closing) {
        mv_buf_reset(&c->wbuf);
        return;
    }
    b = uv_buf_init((char *)mv_buf_head(&c->wbuf), (unsigned)mv_buf_unread(&c->wbuf));
    n = uv_try_write(s, &b, 1);
    if (n > 0)
        mv_buf_consume(&c->wbuf, (size_t)n);
    else if (n < 0 && n != UV_EAGAIN) {
        mv_buf_reset(&c->wbuf);
        return;
    }
    if (mv_buf_unread(&c->wbuf) == 0)
        return;
    /* The socket is full: hand the rest to libuv and collect new messages meanwhile. */
    tmp = c->wflight;
    c->wflight = c->wbuf;
    c->wbuf = tmp;
    mv_buf_reset(&c->wbuf);
    b = uv_buf_init((char *)mv_buf_head(&c->wflight), (unsigned)mv_buf_unread(&c->wflight));
    c->wreq.data = c;
    if (uv_write(&c->wreq, s, &b, 1, write_cb) == 0)
        c->writing = true;
    else
        mv_buf_reset(&c->wflight);
}

size_t mv_chan_input_pending(const mv_chan_t *c)
{
    uv_os_fd_t fd;
    int queued = 0;
    size_t n = mv_buf_unread(&c->wbuf) + (c->writing ? mv_buf_unread(&c->wflight) : 0);

    /* FIONREAD works on either end of a pipe: what is written and not yet read. */
    if (lines(c) && c->in_open && uv_fileno((const uv_handle_t *)&c->in, &fd) == 0 &&
        ioctl(fd, FIONREAD, &queued) == 0 && queued > 0)
        n += (size_t)queued;
    return n;
}

int mv_chan_send(mv_chan_t *c, uint16_t type, uint64_t id, const void *payload, size_t len)
{
    uint8_t hdr[MVW_HEADER_SIZE];
    int r;

    mvw_put_header(hdr, type, 0, id, (uint32_t)len);
    r = mv_buf_append(&c->wbuf, hdr, sizeof hdr);
    if (r == 0)
        r = mv_buf_append(&c->wbuf, payload, len);
    return r;
}

int mv_chan_send_task(mv_chan_t *c, uint64_t id, const void *data, size_t len)
{
    int r;

    uint8_t hdr[MVW_HEADER_SIZE];

    if (!lines(c)) {
        mvw_put_header(hdr, MVW_MSG_TASK, c->collect && c->version >= 2 ? MVW_F_COLLECT : 0, id,
                       (uint32_t)len);
        r = mv_buf_append(&c->wbuf, hdr, sizeof hdr);
        return r == 0 ? mv_buf_append(&c->wbuf, data, len) : r;
    }
    r = mv_buf_append(&c->wbuf, data, len);
    if (r == 0)
        r = mv_buf_append(&c->wbuf, "\n", 1);
    return r;
}

void mv_chan_send_stop(mv_chan_t *c)
{
    if (c->o.protocol != MV_PROTO_API || c->stop_sent || !c->chan_open || c->closing)
        return;
    c->stop_sent = true;
    mv_chan_send(c, MVW_MSG_STOP, 0, NULL, 0);
    mv_chan_flush(c);
}

void mv_chan_close_input(mv_chan_t *c)
{
    /* Pending writes are cancelled (write_cb with UV_ECANCELED). */
    if (c->in_open) {
        c->in_open = false;
        uv_close((uv_handle_t *)&c->in, closed_cb);
    }
}

bool mv_chan_can_snapshot(const mv_chan_t *c)
{
    return c->o.protocol == MV_PROTO_API && c->hello && c->chan_open && !c->broken && !c->closing;
}

int mv_chan_ask_snapshot(mv_chan_t *c)
{
    if (!mv_chan_can_snapshot(c))
        return -ENOTCONN;
    c->snap_asked++;
    mv_chan_send(c, MVW_MSG_SNAPSHOT, 0, NULL, 0);
    mv_chan_flush(c);
    return 0;
}
