/*
 * control: the control socket, a Unix stream socket in the supervisor's libuv loop, and the
 * `memvisor status|recycle|reload|stop|metrics` client that talks to it.
 *
 * Wire: JSON lines both ways, one object + '\n' each, answered in order, several per
 * connection. A request is {"cmd":NAME, ...}; a reply is {"ok":true,"cmd":NAME, ...} or
 * {"ok":false,"error":"..."}. Only uid 0 and the supervisor's own uid may talk to it: the
 * socket file is 0600 from the moment it exists and every peer's SO_PEERCRED is checked.
 *
 * The server never blocks the loop: reads, writes and closes are libuv's; a request is
 * handled by one synchronous callback that returns the reply object.
 *
 * Under abuse (a client that pipelines requests and never reads, or that holds connections
 * open) the server's memory stays bounded and an operator is never locked out:
 * - no request is handled while a connection has MV_CONTROL_QUEUE_PAUSE reply bytes waiting
 *   in memory (checked before each line, so one read full of requests cannot queue more);
 * - a reply that would queue past MV_CONTROL_QUEUE_MAX closes the connection instead;
 * - a connection whose replies wait unread for MV_CONTROL_STALL_MS is closed;
 * - at MV_CONTROL_MAX_CONNS, a new connection evicts the oldest one that is not reading its
 *   replies (or has been silent for MV_CONTROL_STALL_MS); with none to evict it gets the one
 *   reserved slot, which answers a single `status` or `stop`; with that slot taken too it
 *   waits (as many as MV_CONTROL_MAX_CONNS may) until a holder frees or stops reading, and
 *   is refused if none has after MV_CONTROL_STALL_MS.
 */
#ifndef MV_CONTROL_H
#define MV_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "log.h"

#define MV_CONTROL_MAX_LINE    65536   /* longest request, bytes, newline excluded */
#define MV_CONTROL_MAX_CONNS   32      /* connections at once, plus one reserved slot */
#define MV_CONTROL_IDLE_MS     60000   /* a connection with no request for this long is closed */
#define MV_CONTROL_STALL_MS    5000    /* ... and one whose replies wait unread this long */
#define MV_CONTROL_QUEUE_PAUSE 16384   /* reply bytes in memory that stop request handling */
#define MV_CONTROL_QUEUE_MAX   1048576 /* reply bytes in memory that close the connection */
#define MV_CONTROL_CTL_MS      10000   /* how long the client waits for its reply */

/* Handles one parsed request: `req` is a JSON object with a string "cmd" (borrowed). Returns
 * a new reply object (the module adds "ok": true unless the handler set "ok", and "cmd" when
 * absent), or NULL with `err` filled: the reply is then {"ok":false,"error":err}. An unknown
 * cmd is the handler's to refuse. The handler may call mv_control_close: the reply to this
 * request is still sent. */
typedef json_t *(*mv_control_fn)(void *arg, const char *cmd, json_t *req, char *err, size_t errlen);

struct mv_control_conn;

typedef struct mv_control {
    uv_loop_t *loop;
    mv_log_t *log;
    mv_control_fn fn;
    void *arg;
    uv_pipe_t server;
    char *path;                    /* bound, unlinked by mv_control_close; NULL when not open */
    uint64_t dev, ino;             /* of the socket file: close unlinks only that file */
    struct mv_control_conn *conns; /* every connection not yet freed, closing ones too */
    int nconns;
    int used;           /* of the max_conns slots (refused connections hold none) */
    int waiting;        /* connections waiting for a slot */
    bool reserved_busy; /* the reserved slot is in use */
    bool promoting;
    /* Bounds, MV_CONTROL_* by default; tests may lower them after open. */
    int max_conns;
    uint64_t idle_ms, stall_ms, wait_ms;
    size_t queue_pause, queue_max;
    bool listening; /* `server` is initialised and not closed */
    bool closing;
    void (*close_cb)(void *);
    void *close_arg;
} mv_control_t;

/* Where the control socket is: `[control] socket`, or STATE_DIR/control.sock when it is
 * empty. 0; -ENOENT when it is "none" (no socket); -ENAMETOOLONG when the path does not fit
 * in `cap` bytes or in a sockaddr_un (it could never be bound). */
int mv_control_path(const mv_config_t *cfg, char *out, size_t cap);

/* Whether a control socket may be made at PATH, touching nothing: 0 (nothing there), 1 (a
 * stale socket nobody answers on: mv_control_open replaces it), or -errno with `why` filled:
 * -EADDRINUSE when a memvisor answers there (`why` names its pid and command), -EEXIST when
 * something other than a socket is there. */
int mv_control_probe(const char *path, char *why, size_t n);

/* Binds PATH (0600) and listens in `loop`. A socket file already at PATH is replaced only
 * when nobody answers on it (a stale one); anything else there is refused and left alone.
 * 0, or -errno with `why` filled (a sentence naming the path); on failure nothing is left
 * open (a failing uv_listen leaves `server` closing: run the loop before freeing `c`). */
int mv_control_open(mv_control_t *c, uv_loop_t *loop, mv_log_t *log, const char *path,
                    mv_control_fn fn, void *arg, char *why, size_t whylen);

/* Closes the server and every connection and unlinks the path; `cb` (may be NULL) runs once
 * every handle is closed, at once when nothing was open. `c` must live until then. */
void mv_control_close(mv_control_t *c, void (*cb)(void *), void *arg);

/* ---- the client (ctl.c) ---------------------------------------------------------------- */

/* `memvisor status|recycle|reload|stop|metrics ...`, argv as main's (argv[1] is the command).
 * Returns the exit code: 0 ok, 1 error reply (printed as "memvisor: ERROR"), 2 usage or
 * config error (a configuration whose socket is "none" too), 3 cannot connect, timeout or a
 * reply that is not one (the message names the socket path). Sends with MSG_NOSIGNAL: it
 * needs no SIGPIPE disposition. */
int mv_ctl_main(int argc, char **argv);

/* Prints a successful reply to `cmd` for people (what mv_ctl_main prints without --json).
 * Fields the reply lacks are shown as "-". */
void mv_ctl_print(const char *cmd, json_t *reply, FILE *out);

#endif
