/*
 * channel: bytes to and from a worker.
 *
 * api: framed messages (include/memvisor/protocol.h) on the socketpair. Every length is
 * checked by mvw_decode before anything is copied; a malformed, oversized or unexpected
 * message is a protocol error of that worker only.
 * lines: one task line to stdin, one result line back on stdout, in order.
 * output: the worker's stdout/stderr lines (for the log), whatever the protocol.
 *
 * Writes are batched: messages are appended to wbuf during a dispatch pass and sent with one
 * write (uv_try_write, then uv_write for what the socket did not take).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

#define READ_CHUNK      (64 * 1024)
#define OUTPUT_LINE_MAX (16 * 1024) /* longer output lines are logged in pieces */

static uv_stream_t *input_of(mv_worker_t *w)
{
    return w->pool->cfg->worker.protocol == MV_PROTO_LINES ? (uv_stream_t *)&w->in
                                                           : (uv_stream_t *)&w->chan;
}

static bool input_open(const mv_worker_t *w)
{
    return w->pool->cfg->worker.protocol == MV_PROTO_LINES ? w->in_open : w->chan_open;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mv_worker_t *w = h->data;
    mv_buf_t *b = h == (uv_handle_t *)&w->out ? &w->outline : &w->rbuf;

    /* On ENOMEM libuv calls the read callback with UV_ENOBUFS. */
    if (mv_buf_reserve(b, READ_CHUNK) < 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)b->data + b->len;
    buf->len = b->cap - b->len;
}

/* ---- api ---- */

static void api_message(mv_worker_t *w, const struct mvw_msg *m)
{
    const uint8_t *kind, *rest;
    size_t kind_len, rest_len;
    struct mvw_hello hello;

    switch (m->h.type) {
    case MVW_MSG_HELLO:
        if (w->hello) {
            mv__on_protocol_error(w, "second HELLO");
            return;
        }
        w->hello = true;
        memcpy(&hello, m->payload, sizeof hello);
        mv__on_hello(w, hello.version);
        return;
    case MVW_MSG_DONE:
    case MVW_MSG_FAIL:
        if (!w->hello) {
            mv__on_protocol_error(w, "answer before HELLO");
            return;
        }
        if (mvw_split_kind(m, &kind, &kind_len, &rest, &rest_len) < 0) {
            mv__on_protocol_error(w, "bad kind prefix");
            return;
        }
        mv__on_answer(w, m->h.task, m->h.type == MVW_MSG_DONE, kind, kind_len, rest, rest_len);
        return;
    case MVW_MSG_BEGIN:
    case MVW_MSG_END:
        if (!w->hello || !w->pool->service) {
            mv__on_protocol_error(w, "BEGIN/END outside service mode");
            return;
        }
        if (m->h.type == MVW_MSG_END) {
            uint32_t status;
            memcpy(&status, m->payload, sizeof status);
            mv__on_end(w, m->h.task, status);
        } else if (mvw_split_kind(m, &kind, &kind_len, &rest, &rest_len) < 0) {
            mv__on_protocol_error(w, "bad kind prefix");
        } else {
            mv__on_begin(w, m->h.task, kind, kind_len);
        }
        return;
    case MVW_MSG_SNAPSHOT:
        /* Answers to requests memvisor sent; a late one (after its deadline) is dropped. */
        if (w->snap_asked == 0) {
            mv__on_protocol_error(w, "SNAPSHOT reply that was not asked for");
            return;
        }
        w->snap_asked--;
        mv__on_snapshot_reply(w, m->payload, m->h.length);
        return;
    default: mv__on_protocol_error(w, "unexpected message type"); return;
    }
}

/* Decodes and handles every whole message in rbuf. Stops at the first protocol error. */
static void api_process(mv_worker_t *w)
{
    uint32_t max = (uint32_t)w->pool->cfg->worker.max_message;
    struct mvw_msg m;
    long used;

    while (w->chan_open && !w->broken) {
        used = mvw_decode(mv_buf_head(&w->rbuf), mv_buf_unread(&w->rbuf), max, MVW_FROM_WORKER, &m);
        if (used == 0)
            break;
        if (used < 0) {
            mv__on_protocol_error(w, used == -EMSGSIZE ? "message longer than max_message"
                                                       : "malformed message");
            mv_buf_reset(&w->rbuf);
            return;
        }
        api_message(w, &m);
        mv_buf_consume(&w->rbuf, (size_t)used);
    }
}

/* ---- lines ---- */

static void lines_process(mv_worker_t *w, bool eof)
{
    const mv_config_t *cfg = w->pool->cfg;
    size_t plen = strlen(cfg->worker.fail_prefix);
    uint8_t *p, *nl;
    size_t n;

    while (w->chan_open && !w->broken && mv_buf_unread(&w->rbuf) > 0) {
        p = mv_buf_head(&w->rbuf);
        n = mv_buf_unread(&w->rbuf);
        nl = memchr(p, '\n', n);
        if (!nl) {
            if ((int64_t)n > cfg->worker.max_message)
                mv__on_protocol_error(w, "result line longer than max_message");
            else if (eof)
                mv__on_protocol_error(w, "unterminated result line at end of output");
            return;
        }
        n = (size_t)(nl - p);
        if (plen > 0 && n >= plen && memcmp(p, cfg->worker.fail_prefix, plen) == 0) {
            size_t skip = plen;
            while (skip < n && p[skip] == ' ')
                skip++;
            mv__on_answer(w, 0, false, NULL, 0, p + skip, n - skip);
        } else {
            mv__on_answer(w, 0, true, NULL, 0, p, n);
        }
        mv_buf_consume(&w->rbuf, n + 1);
    }
}

/* ---- reading ---- */

static void chan_eof(mv_worker_t *w)
{
    if (!w->chan_open)
        return;
    uv_read_stop((uv_stream_t *)&w->chan);
    w->chan_eof = true;
}

static void chan_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mv_worker_t *w = s->data;
    bool lines = w->pool->cfg->worker.protocol == MV_PROTO_LINES;

    if (n > 0) {
        w->rbuf.len += (size_t)n;
        /* A reading taken earlier in this loop iteration (a sample, a recheck) may predate
         * these answers: their "after" must be read now (mv__reading's per-tick reuse). */
        w->last_tick = w->pool->tick - 1;
        if (lines)
            lines_process(w, false);
        else
            api_process(w);
        return;
    }
    if (n == 0)
        return;
    if (lines)
        lines_process(w, true);
    /* EOF or error: the worker closed its end. Its exit normally follows; if it does not,
     * the pool's channel deadline terminates it. */
    chan_eof(w);
    mv__on_chan_eof(w);
}

/* Logs whole output lines; keeps a partial one for the next read. */
static void output_process(mv_worker_t *w, bool eof)
{
    const char *stream = w->pool->cfg->worker.protocol == MV_PROTO_LINES ? "stderr" : "output";
    uint8_t *p, *nl;
    size_t n;

    while (mv_buf_unread(&w->outline) > 0) {
        p = mv_buf_head(&w->outline);
        n = mv_buf_unread(&w->outline);
        nl = memchr(p, '\n', n);
        if (nl) {
            mv__on_output(w, stream, p, (size_t)(nl - p));
            mv_buf_consume(&w->outline, (size_t)(nl - p) + 1);
        } else if (n >= OUTPUT_LINE_MAX || eof) {
            n = MV_MIN(n, OUTPUT_LINE_MAX);
            mv__on_output(w, stream, p, n);
            mv_buf_consume(&w->outline, n);
        } else {
            break;
        }
    }
}

static void out_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mv_worker_t *w = s->data;

    if (n > 0) {
        w->outline.len += (size_t)n;
        output_process(w, false);
    } else if (n < 0) {
        output_process(w, true);
        uv_read_stop(s);
    }
}

int mv__chan_start(mv_worker_t *w)
{
    int r = 0;

    if (w->out_open)
        r = uv_read_start((uv_stream_t *)&w->out, alloc_cb, out_read_cb);
    if (r == 0 && w->chan_open)
        r = uv_read_start((uv_stream_t *)&w->chan, alloc_cb, chan_read_cb);
    return r;
}

/* Reads a non-blocking fd until it has nothing more, into b. 1 at EOF, 0 at EAGAIN. */
static int read_rest(int fd, mv_buf_t *b)
{
    for (;;) {
        if (mv_buf_reserve(b, READ_CHUNK) < 0)
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

void mv__chan_drain(mv_worker_t *w)
{
    uv_os_fd_t fd;
    int eof;

    /* The process is gone, so everything it wrote is already in the pipes: answers that
     * arrived together with the exit must count before its tasks are settled. */
    if (w->chan_open && !w->chan_eof && uv_fileno((uv_handle_t *)&w->chan, &fd) == 0) {
        eof = read_rest(fd, &w->rbuf);
        if (w->pool->cfg->worker.protocol == MV_PROTO_LINES)
            lines_process(w, eof);
        else
            api_process(w);
    }
    if (w->out_open && uv_fileno((uv_handle_t *)&w->out, &fd) == 0) {
        eof = read_rest(fd, &w->outline);
        output_process(w, eof);
    }
}

/* ---- writing ---- */

static void write_cb(uv_write_t *req, int status)
{
    mv_worker_t *w = req->data;

    w->writing = false;
    mv_buf_reset(&w->wflight);
    /* A failed write means the worker is gone or closed its input; its exit settles its
     * tasks, so there is nothing to undo here. */
    if (status < 0) {
        mv_buf_reset(&w->wbuf);
        return;
    }
    mv__chan_flush(w);
}

void mv__chan_flush(mv_worker_t *w)
{
    uv_stream_t *s = input_of(w);
    mv_buf_t tmp;
    uv_buf_t b;
    int n, r;

    if (w->writing || mv_buf_unread(&w->wbuf) == 0)
        return;
    if (!input_open(w)) {
        mv_buf_reset(&w->wbuf);
        return;
    }
    b = uv_buf_init((char *)mv_buf_head(&w->wbuf), (unsigned)mv_buf_unread(&w->wbuf));
    n = uv_try_write(s, &b, 1);
    if (n > 0)
        mv_buf_consume(&w->wbuf, (size_t)n);
    else if (n < 0 && n != UV_EAGAIN) {
        mv_buf_reset(&w->wbuf);
        return;
    }
    if (mv_buf_unread(&w->wbuf) == 0)
        return;
    /* The socket is full: hand the rest to libuv and collect new messages meanwhile. */
    tmp = w->wflight;
    w->wflight = w->wbuf;
    w->wbuf = tmp;
    mv_buf_reset(&w->wbuf);
    b = uv_buf_init((char *)mv_buf_head(&w->wflight), (unsigned)mv_buf_unread(&w->wflight));
    w->wreq.data = w;
    r = uv_write(&w->wreq, s, &b, 1, write_cb);
    if (r == 0)
        w->writing = true;
    else
        mv_buf_reset(&w->wflight);
}

int mv__chan_send(mv_worker_t *w, uint16_t type, uint64_t task, const void *payload, size_t len)
{
    uint8_t hdr[MVW_HEADER_SIZE];
    int r;

    mvw_put_header(hdr, type, 0, task, (uint32_t)len);
    r = mv_buf_append(&w->wbuf, hdr, sizeof hdr);
    if (r == 0)
        r = mv_buf_append(&w->wbuf, payload, len);
    return r;
}

int mv__chan_send_task(mv_worker_t *w, const mv_task_t *t)
{
    int r;

    if (w->pool->cfg->worker.protocol != MV_PROTO_LINES)
        return mv__chan_send(w, MVW_MSG_TASK, t->id, t->data, t->len);
    r = mv_buf_append(&w->wbuf, t->data, t->len);
    if (r == 0)
        r = mv_buf_append(&w->wbuf, "\n", 1);
    return r;
}

void mv__chan_close_input(mv_worker_t *w)
{
    /* lines: EOF on the worker's stdin is its polite request to finish. Pending writes are
     * cancelled (write_cb with UV_ECANCELED). */
    if (w->in_open) {
        w->in_open = false;
        uv_close((uv_handle_t *)&w->in, mv__handle_closed_cb);
    }
}
