/*
 * metrics_http: the fixed HTTP responder of GET /metrics (see metrics_http.h).
 *
 * A connection is two handles (the TCP stream, its deadline timer) and a request buffer; it
 * is freed when both are closed. One response per connection: once the request head is in
 * (or is refused), reading stops, the response is written, and the connection closes when
 * the write is called back (UV_ECANCELED ones too, which libuv runs before the close
 * callback), so a write never outlives its connection.
 */
#include "metrics_http.h"

#include "addr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

typedef struct mv_metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    mv_metrics_http_t *h;
    struct mv_metrics_conn *next, **pprev;
    mv_buf_t in;
    int handles; /* of tcp and deadline, not closed yet */
    bool answered, closing;
} conn_t;

typedef struct wreq {
    uv_write_t req;
    conn_t *cn;
    mv_buf_t out;
} wreq_t;

/* ---- addresses ------------------------------------------------------------------------- */

int mv_metrics_http_check(const char *spec, char *why, size_t n)
{
    return !spec || !*spec || mv_addr_numeric(spec, NULL, why, n) == 0 ? 0 : -EINVAL;
}

/* ---- connections ----------------------------------------------------------------------- */

static void maybe_done(mv_metrics_http_t *h)
{
    void (*cb)(void *) = h->close_cb;

    if (!h->closing || h->listening || h->nconns > 0)
        return;
    h->close_cb = NULL;
    if (cb)
        cb(h->close_arg);
}

static void conn_closed_cb(uv_handle_t *hd)
{
    conn_t *cn = hd->data;
    mv_metrics_http_t *h = cn->h;

    if (--cn->handles > 0)
        return;
    *cn->pprev = cn->next;
    if (cn->next)
        cn->next->pprev = cn->pprev;
    h->nconns--;
    mv_buf_free(&cn->in);
    free(cn);
    maybe_done(h);
}

static void conn_close(conn_t *cn)
{
    if (cn->closing)
        return;
    cn->closing = true;
    uv_close((uv_handle_t *)&cn->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&cn->deadline, conn_closed_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *cn = w->cn;

    mv_buf_free(&w->out);
    free(w);
    conn_close(cn); /* one response per connection; a failed write (EPIPE) ends it too */
}

/* Sends one response and closes after it: status line, fixed headers, body (not for HEAD). */
static void respond(conn_t *cn, const char *status, const char *extra, const mv_buf_t *body,
                    bool head_only)
{
    wreq_t *w;
    char hdr[384];
    int n;
    uv_buf_t b;

    if (cn->answered || cn->closing)
        return;
    cn->answered = true;
    uv_read_stop((uv_stream_t *)&cn->tcp);
    uv_timer_stop(&cn->deadline);
    n = snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
                 "close\r\n\r\n",
                 status, body ? MV_METRICS_CONTENT_TYPE : "text/plain; charset=utf-8",
                 body ? body->len : strlen(status) + 1, extra ? extra : "");
    if (!(w = calloc(1, sizeof *w)) || mv_buf_append(&w->out, hdr, (size_t)n) < 0 ||
        (!head_only && (body ? mv_buf_append(&w->out, body->data, body->len)
                             : mv_buf_append(&w->out, status, strlen(status)) < 0 ||
                                   mv_buf_append(&w->out, "\n", 1)) < 0)) {
        if (w)
            mv_buf_free(&w->out);
        free(w);
        conn_close(cn);
        return;
    }
    w->cn = cn;
    b = uv_buf_init((char *)w->out.data, (unsigned)w->out.len);
    if (uv_write(&w->req, (uv_stream_t *)&cn->tcp, &b, 1, write_cb) < 0) {
        mv_buf_free(&w->out);
        free(w);
        conn_close(cn);
    }
}

/* The request head is complete: answer it. Only the request line matters. */
static void answer(conn_t *cn)
{
    mv_metrics_http_t *h = cn->h;
    const char *p = (const char *)cn->in.data, *eol = memchr(p, '\n', cn->in.len);
    char method[16], target[256], version[16];
    mv_buf_t body = {0};
    size_t len = eol ? (size_t)(eol - p) : cn->in.len;
    char line[300];
    bool head;

    if (len >= sizeof line || len == 0) {
        respond(cn, len ? "414 URI Too Long" : "400 Bad Request", NULL, NULL, false);
        return;
    }
    memcpy(line, p, len);
    line[len] = '\0';
    if (sscanf(line, "%15s %255s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        respond(cn, "400 Bad Request", NULL, NULL, false);
        return;
    }
    head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        respond(cn, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", NULL, false);
        return;
    }
    target[strcspn(target, "?")] = '\0';
    if (strcmp(target, "/metrics") != 0) {
        respond(cn, "404 Not Found", NULL, NULL, head);
        return;
    }
    if (h->fn(h->arg, &body) < 0) {
        mv_buf_free(&body);
        respond(cn, "500 Internal Server Error", NULL, NULL, head);
        return;
    }
    h->served++;
    respond(cn, "200 OK", NULL, &body, head);
    mv_buf_free(&body);
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    conn_t *cn = hd->data;
    size_t room = MV_METRICS_HTTP_MAX_REQUEST + 1 - cn->in.len; /* one more: to see "too long" */

    if (mv_buf_reserve(&cn->in, room) < 0) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)cn->in.data + cn->in.len, (unsigned)room);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *cn = s->data;

    if (nread < 0) { /* EOF before a whole request, or an error: nothing to answer */
        conn_close(cn);
        return;
    }
    cn->in.len += (size_t)nread;
    /* The head ends at an empty line; bare LF line ends are tolerated (RFC 9112 2.2). */
    if (memmem(cn->in.data, cn->in.len, "\r\n\r\n", 4) ||
        memmem(cn->in.data, cn->in.len, "\n\n", 2))
        answer(cn);
    else if (cn->in.len > MV_METRICS_HTTP_MAX_REQUEST)
        respond(cn, "431 Request Header Fields Too Large", NULL, NULL, false);
}

static void deadline_cb(uv_timer_t *t)
{
    respond(t->data, "408 Request Timeout", NULL, NULL, false);
}

static void on_connection(uv_stream_t *server, int status)
{
    mv_metrics_http_t *h = server->data;
    conn_t *cn;
    int r;

    if (status < 0 || !(cn = calloc(1, sizeof *cn))) {
        /* Without memory the connection waits in the kernel's backlog until memory returns. */
        if (h->log)
            mv_warn(h->log, "metrics_error", MV_S("call", status < 0 ? "accept" : "calloc"),
                    MV_S("error", status < 0 ? uv_strerror(status) : strerror(ENOMEM)));
        return;
    }
    cn->h = h;
    uv_tcp_init(h->loop, &cn->tcp);
    uv_timer_init(h->loop, &cn->deadline);
    cn->tcp.data = cn->deadline.data = cn;
    cn->handles = 2;
    cn->next = h->conns;
    cn->pprev = &h->conns;
    if (h->conns)
        h->conns->pprev = &cn->next;
    h->conns = cn;
    h->nconns++;
    if ((r = uv_accept(server, (uv_stream_t *)&cn->tcp)) < 0) {
        conn_close(cn);
        return;
    }
    if (h->nconns > h->max_conns) {
        h->refused++;
        respond(cn, "503 Service Unavailable", NULL, NULL, false);
        return;
    }
    uv_timer_start(&cn->deadline, deadline_cb, h->timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&cn->tcp, alloc_cb, read_cb) < 0)
        conn_close(cn);
}

/* ---- the server ------------------------------------------------------------------------ */

static void server_closed_cb(uv_handle_t *hd)
{
    mv_metrics_http_t *h = hd->data;

    h->listening = false;
    maybe_done(h);
}

/* The bound address as text (the port the kernel chose when 0 was asked). */
static void bound_addr(mv_metrics_http_t *h)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[64] = "?";
    int port = 0;

    if (uv_tcp_getsockname(&h->server, (struct sockaddr *)&sa, &len) < 0)
        return;
    if (sa.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        snprintf(h->addr, sizeof h->addr, "[%s]:%d", ip, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        snprintf(h->addr, sizeof h->addr, "%s:%d", ip, port);
    }
}

int mv_metrics_http_open(mv_metrics_http_t *h, uv_loop_t *loop, mv_log_t *log, const char *spec,
                         mv_metrics_fn fn, void *arg, char *why, size_t n)
{
    struct sockaddr_storage sa;
    int r;

    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->log = log;
    h->fn = fn;
    h->arg = arg;
    h->max_conns = MV_METRICS_HTTP_MAX_CONNS;
    h->timeout_ms = MV_METRICS_HTTP_TIMEOUT_MS;
    if ((r = mv_addr_numeric(spec, &sa, why, n) < 0 ? -EINVAL : 0) < 0)
        return r;
    if ((r = uv_tcp_init(loop, &h->server)) < 0)
        return snprintf(why, n, "metrics: uv_tcp_init: %s", uv_strerror(r)), r;
    h->server.data = h;
    h->listening = true;
    if ((r = uv_tcp_bind(&h->server, (struct sockaddr *)&sa, 0)) < 0 ||
        (r = uv_listen((uv_stream_t *)&h->server, 64, on_connection)) < 0) {
        snprintf(why, n, "metrics: cannot listen on %s: %s", spec, uv_strerror(r));
        h->closing = true;
        uv_close((uv_handle_t *)&h->server, server_closed_cb);
        return r;
    }
    bound_addr(h);
    if (log)
        mv_info(log, "metrics_listen", MV_S("addr", h->addr), MV_S("path", "/metrics"));
    return 0;
}

void mv_metrics_http_close(mv_metrics_http_t *h, void (*cb)(void *), void *arg)
{
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    if (h->listening && !uv_is_closing((uv_handle_t *)&h->server))
        uv_close((uv_handle_t *)&h->server, server_closed_cb);
    for (conn_t *cn = h->conns; cn; cn = cn->next)
        conn_close(cn);
    maybe_done(h);
}
