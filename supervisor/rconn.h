/*
 * rconn: one connection to a Redis server, on the loop, that comes back when it is lost.
 *
 * hiredis (a kept library: the protocol parser every Redis client in C uses, with an async
 * API and a libuv adapter, hiredis/adapters/libuv.h) does the protocol; this file adds what
 * hiredis 0.14 leaves to its user, each of which would block or hang the loop otherwise:
 *   - the host name is resolved with uv_getaddrinfo (the thread pool), and hiredis is given
 *     the numeric address, so its own getaddrinfo never blocks the loop on DNS;
 *   - a connect that gets no answer is given up after 5 s (hiredis's async connect has no
 *     timeout of its own);
 *   - commands that get no reply for 15 s drop the connection (a server that hangs);
 *   - a lost or failed connection is tried again after a backoff (100 ms doubling to 5 s),
 *     forever: the owner decides when to give up (on_down says each failure).
 * Every command's callback runs exactly once: with its reply, or with NULL when the
 * connection was lost before the reply came (the command may or may not have run).
 */
#ifndef MV_RCONN_H
#define MV_RCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "rurl.h"

struct redisAsyncContext;
struct redisReply;
typedef struct mv_rconn mv_rconn_t;

/* A command's reply (NULL: the connection was lost first). */
typedef void (*mv_rconn_reply_cb)(mv_rconn_t *c, struct redisReply *r, void *priv);

typedef struct mv_rconn_events {
    void (*on_up)(void *arg);                    /* connected: commands may be sent */
    void (*on_down)(void *arg, const char *why); /* a connect failed, or the connection was
                                                  * lost (commands in flight had their NULL) */
    void (*on_closed)(void *arg);                /* after mv_rconn_close, all handles closed */
} mv_rconn_events_t;

struct mv_rconn {
    uv_loop_t *loop;
    mv_rurl_t url;
    const mv_rconn_events_t *ev;
    void *arg;
    struct redisAsyncContext *ac;
    enum { MV_RC_DOWN, MV_RC_RESOLVING, MV_RC_CONNECTING, MV_RC_UP } state;
    uv_getaddrinfo_t gai;
    bool gai_busy;
    uv_timer_t timer; /* backoff, connect timeout, reply watchdog */
    bool timer_open;
    uv_idle_t flush; /* writes the commands queued, before the loop next polls */
    bool flush_open;
    bool want_write; /* commands wait for the flush */
    bool flushing;
    int64_t backoff_ms; /* the next wait before a new attempt */
    unsigned inflight;  /* commands sent, reply not yet in */
    uint64_t last_io;   /* ms: the last reply (or the first command after a quiet time) */
    unsigned gen;       /* connections made so far */
    bool closing;
    bool closed_said;
    char addr[64]; /* the numeric address of the last attempt */
    char why[512]; /* the last failure */
};

/* Sets up; connects at once. 0 or -errno. */
int mv_rconn_open(mv_rconn_t *c, uv_loop_t *loop, const mv_rurl_t *url, const mv_rconn_events_t *ev,
                  void *arg);
/* Sends a command (argv/len like redisAsyncCommandArgv). -ENOTCONN when not up, -EIO when
 * hiredis refused it; the callback runs only when 0 was returned. */
int mv_rconn_command(mv_rconn_t *c, mv_rconn_reply_cb cb, void *priv, int argc, const char **argv,
                     const size_t *len);
/* Sends a command formatted before (redisFormatCommandArgv): the same. */
int mv_rconn_formatted(mv_rconn_t *c, mv_rconn_reply_cb cb, void *priv, const char *cmd,
                       size_t len);
/* Drops the connection (a protocol error): every command in flight gets NULL, on_down runs,
 * and a new connection is tried after the backoff. */
void mv_rconn_drop(mv_rconn_t *c, const char *why);
/* Whether commands may be sent. */
static inline bool mv_rconn_up(const mv_rconn_t *c)
{
    return c->state == MV_RC_UP && !c->closing;
}
/* Disconnects once the replies in flight are in (or at once when down), then closes its
 * handles and calls on_closed. */
void mv_rconn_close(mv_rconn_t *c);

#endif
