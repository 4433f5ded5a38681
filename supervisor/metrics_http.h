/*
 * metrics_http: `[metrics] listen = HOST:PORT` serves GET /metrics over HTTP/1.x from the
 * supervisor's loop, for Prometheus to scrape.
 *
 * A tiny fixed responder rather than an HTTP library: the one request it answers is
 * `GET /metrics` (HEAD too), with no body, no keep-alive, no TLS and no auth (bind it to
 * loopback or a private interface); an HTTP library (libmicrohttpd, h2o) would bring its own
 * threads or event loop, parsing we do not need, and a larger attack surface for one line.
 * What it does:
 *   - reads at most MV_METRICS_HTTP_MAX_REQUEST bytes of request head; longer: 431 and close;
 *   - GET|HEAD /metrics (any query string) -> 200 with the text the callback makes;
 *     another path -> 404; another method -> 405 (Allow: GET, HEAD); not HTTP -> 400;
 *   - every response says `Connection: close` and the connection closes once it is written;
 *   - a client that has not sent its whole request head within `timeout_ms` of connecting
 *     (a slow or idle one) gets 408 and is closed: the time is not reset by each byte;
 *   - at most `max_conns` connections at once; one more is answered 503 and closed;
 *   - every read, write and close is libuv's: it never blocks the loop.
 */
#ifndef MV_METRICS_HTTP_H
#define MV_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "log.h"
#include "util.h"

#define MV_METRICS_HTTP_MAX_REQUEST 8192  /* request head bytes */
#define MV_METRICS_HTTP_MAX_CONNS   16    /* connections at once */
#define MV_METRICS_HTTP_TIMEOUT_MS  10000 /* from accept to the end of the request head */

/* Appends the exposition text to out. 0, or -errno: the response is then 500. */
typedef int (*mv_metrics_fn)(void *arg, mv_buf_t *out);

struct mv_metrics_conn;

typedef struct mv_metrics_http {
    uv_loop_t *loop;
    mv_log_t *log; /* may be NULL */
    mv_metrics_fn fn;
    void *arg;
    uv_tcp_t server;
    char addr[80]; /* as bound: 127.0.0.1:9464, [::1]:9464 (the port when 0 was asked) */
    struct mv_metrics_conn *conns;
    int nconns;
    int max_conns;            /* MV_METRICS_HTTP_MAX_CONNS; tests may lower it after open */
    uint64_t timeout_ms;      /* MV_METRICS_HTTP_TIMEOUT_MS; tests may lower it after open */
    uint64_t served, refused; /* 200 responses; connections refused over max_conns */
    bool listening, closing;
    void (*close_cb)(void *);
    void *close_arg;
} mv_metrics_http_t;

/* Checks a `[metrics] listen` value: "" (off), IPV4:PORT or [IPV6]:PORT, numeric, port
 * 0..65535. 0, or -EINVAL with `why` filled. */
int mv_metrics_http_check(const char *spec, char *why, size_t n);

/* Binds spec and listens in loop; logs `event=metrics_listen addr=...`. 0, or -errno with
 * `why` filled (nothing left open, but run the loop before freeing h when a close began). */
int mv_metrics_http_open(mv_metrics_http_t *h, uv_loop_t *loop, mv_log_t *log, const char *spec,
                         mv_metrics_fn fn, void *arg, char *why, size_t n);

/* Closes the server and every connection; cb (may be NULL) runs once all are closed, at once
 * when nothing was open. h must live until then. */
void mv_metrics_http_close(mv_metrics_http_t *h, void (*cb)(void *), void *arg);

#endif
