/*
 * control: the control socket's server side, in the supervisor's loop.
 *
 * The socket is made by hand rather than by uv_pipe_bind so that its mode is 0600 before it
 * has a name: on Linux, bind(2) creates the socket inode's file with the mode of the socket
 * (net/unix/af_unix.c, unix_bind: S_IFSOCK | (SOCK_INODE(sock)->i_mode & ~umask)), so an
 * fchmod(fd, 0600) before bind leaves no window where the file is wider. umask is
 * process-wide and threads write files, so it is not touched.
 *
 * A connection is two handles (the pipe, its idle timer) and a read buffer; it is freed when
 * both handles are closed. Write callbacks (UV_ECANCELED ones too) run before the pipe's close
 * callback, so a write never outlives its connection. Replies that must go out before a
 * close (errors that end a connection, the reply to a request whose handler closed the
 * server) set `close_after_write`: reading stops and the close waits for the last write.
 *
 * SIGPIPE must be ignored by the process (memvisor's main does): a peer that goes away
 * mid-reply is then an EPIPE in the write callback, which closes the connection.
 *
 * Bounds (control.h): "reply bytes waiting" is libuv's write queue, what the kernel's socket
 * buffer could not take, so a client that reads its replies never has any and only one that
 * does not read is paused, timed out or evicted. The drill that motivated them: 32 clients
 * pipelining `metrics` without reading held every slot for 55 s and grew the supervisor by
 * 88 MB, because the queue was checked only after a whole 16 KiB read had been answered.
 */
#include "control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runlock.h"
#include "util.h"

#define READ_CHUNK     16384
#define CLOSING_MS     1000 /* the last reply's time to drain once the server closes */
#define SUN_PATH_BYTES sizeof(((struct sockaddr_un *)0)->sun_path)

typedef struct mv_control_conn {
    uv_pipe_t pipe;
    uv_timer_t idle;
    mv_control_t *c;
    struct mv_control_conn *next, **pprev;
    mv_buf_t in;
    uint64_t since; /* loop time of the last request read or reply written: eviction order */
    int handles;    /* of pipe and idle, not closed yet */
    int writes;     /* uv_write requests not called back yet */
    bool closing;
    bool close_after_write; /* no more requests: close once the last reply is written */
    bool in_handler;
    bool paused;   /* requests wait (reading stopped) while too many reply bytes do */
    bool eof;      /* the peer sent everything; requests may still wait in `in` */
    bool stalling; /* the timer counts stall_ms for unread replies, not idle_ms */
    bool slot;     /* holds one of the max_conns slots */
    bool reserved; /* holds the reserved slot: answers one status or stop */
    bool waiting;  /* waits for a slot: not read yet */
    long long uid, pid;
} conn_t;

typedef struct wreq {
    uv_write_t req;
    conn_t *cn;
    char data[];
} wreq_t;

/* ---- paths ----------------------------------------------------------------------------- */

int mv_control_path(const mv_config_t *cfg, char *out, size_t cap)
{
    const char *sock = cfg->control.socket ? cfg->control.socket : "";
    const char *dir = cfg->supervisor.state_dir ? cfg->supervisor.state_dir : "";
    size_t dl = strlen(dir);
    int n;

    if (strcmp(sock, "none") == 0)
        return -ENOENT;
    if (*sock)
        n = snprintf(out, cap, "%s", sock);
    else if (dl == 0)
        n = snprintf(out, cap, "control.sock");
    else
        n = snprintf(out, cap, "%s%scontrol.sock", dir, dir[dl - 1] == '/' ? "" : "/");
    if (n < 0 || (size_t)n >= cap || (size_t)n >= SUN_PATH_BYTES)
        return -ENAMETOOLONG;
    return 0;
}

/* Makes room for a new socket at `path`: nothing there is fine; a socket nobody answers on
 * (ECONNREFUSED: its memvisor died) is removed; anything else is refused and left alone. */
int mv_control_probe(const char *path, char *why, size_t n)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ucred cred = {0};
    socklen_t clen = sizeof cred;
    char who[256];
    struct stat st;
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(why, n,
                 "control socket path %s is %zu bytes long; a Unix socket path holds at most %zu",
                 path, strlen(path), sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    if (lstat(path, &st) < 0) {
        r = -errno;
        if (r == -ENOENT)
            return 0;
        snprintf(why, n, "cannot check the control socket path %s: %s", path, strerror(-r));
        return r;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(why, n,
                 "%s exists and is not a socket; it is left alone (remove it or set "
                 "[control] socket)",
                 path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        snprintf(why, n, "socket() failed while probing the control socket %s: %s", path,
                 strerror(-r));
        return r;
    }
    /* Non-blocking: a listener with a full backlog answers EAGAIN, which still means alive.
     * A connected unix socket's peer credentials are the listener's: name it. */
    r = connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -errno;
    if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
        cred.pid = 0;
    close(fd);
    if (r == 0 || r == -EAGAIN) {
        if (cred.pid > 0)
            mv_lock_describe(cred.pid, who, sizeof who);
        else
            snprintf(who, sizeof who, "a running memvisor");
        snprintf(why, n,
                 "control socket %s is in use by %s: give this run its own [control] socket "
                 "(or none)",
                 path, who);
        return -EADDRINUSE;
    }
    if (r == -ENOENT)
        return 0;
    if (r != -ECONNREFUSED) {
        snprintf(why, n, "connect() failed while probing the control socket %s: %s", path,
                 strerror(-r));
        return r;
    }
    return 1;
}

static int clear_path(mv_control_t *c, const struct sockaddr_un *sa, char *why, size_t n)
{
    const char *path = sa->sun_path;
    int r = mv_control_probe(path, why, n);

    if (r <= 0)
        return r;
    if (unlink(path) < 0 && errno != ENOENT) {
        r = -errno;
        snprintf(why, n, "cannot remove the stale control socket %s: %s", path, strerror(-r));
        return r;
    }
    mv_info(c->log, "control_stale", MV_S("path", path));
    return 0;
}

/* ---- connections ----------------------------------------------------------------------- */

static void maybe_done(mv_control_t *c)
{
    void (*cb)(void *) = c->close_cb;

    if (!c->closing || c->listening || c->nconns > 0)
        return;
    c->close_cb = NULL;
    if (cb)
        cb(c->close_arg);
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn_t *cn = h->data;
    mv_control_t *c = cn->c;

    if (--cn->handles > 0)
        return;
    *cn->pprev = cn->next;
    if (cn->next)
        cn->next->pprev = cn->pprev;
    c->nconns--;
    mv_buf_free(&cn->in);
    free(cn);
    maybe_done(c);
}

static void promote(mv_control_t *c);

static void conn_close(conn_t *cn)
{
    mv_control_t *c = cn->c;
    bool freed = cn->slot || cn->reserved;

    if (cn->closing)
        return;
    cn->closing = true;
    if (cn->slot)
        c->used--;
    if (cn->reserved)
        c->reserved_busy = false;
    if (cn->waiting)
        c->waiting--;
    cn->slot = cn->reserved = cn->waiting = false;
    uv_close((uv_handle_t *)&cn->pipe, conn_closed_cb);
    uv_close((uv_handle_t *)&cn->idle, conn_closed_cb);
    if (freed && c->waiting > 0)
        promote(c);
}

/* No more requests on this connection: close it once every reply is written. */
static void conn_finish(conn_t *cn)
{
    cn->close_after_write = true;
    if (!cn->closing)
        uv_read_stop((uv_stream_t *)&cn->pipe);
    if (cn->writes == 0)
        conn_close(cn);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *cn = h->data;

    if (mv_buf_reserve(&cn->in, READ_CHUNK) < 0) {
        *buf = uv_buf_init(NULL, 0); /* the read callback gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)cn->in.data + cn->in.len, (unsigned)(cn->in.cap - cn->in.len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process(conn_t *cn);

/* Reply bytes waiting in memory: what the socket buffer could not take. */
static size_t queued(conn_t *cn)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&cn->pipe);
}

static void refuse(conn_t *cn, const char *reason, const char *msg);

static void idle_cb(uv_timer_t *t)
{
    conn_t *cn = t->data;
    char msg[80];

    if (cn->waiting) {
        /* Silent holders have had stall_ms to become evictable since this one came. */
        promote(cn->c);
        if (!cn->waiting)
            return;
        cn->waiting = false;
        cn->c->waiting--;
        snprintf(msg, sizeof msg, "too many control connections (limit %d)", cn->c->max_conns);
        refuse(cn, "connections", msg);
        return;
    }
    if (cn->stalling && !cn->c->closing)
        mv_warn(cn->c->log, "control_closed", MV_S("reason", "unread_replies"),
                MV_I("uid", cn->uid), MV_I("pid", cn->pid), MV_I("queued", (long long)queued(cn)));
    else
        mv_debug(cn->c->log, "control_idle", MV_I("pid", cn->pid));
    conn_close(cn);
}

/* The connection's one timer: while replies wait unread, stall_ms from the last reply
 * written; otherwise idle_ms from the last request (stall_ms on the reserved slot).
 * `progress`: a reply was written or a request read, so the count starts again. */
static void rearm(conn_t *cn, bool progress)
{
    mv_control_t *c = cn->c;
    bool pending = queued(cn) > 0;

    if (cn->closing || c->closing || cn->waiting || (pending == cn->stalling && !progress))
        return;
    if (progress)
        cn->since = uv_now(c->loop);
    uv_timer_start(&cn->idle, idle_cb, pending || cn->reserved ? c->stall_ms : c->idle_ms, 0);
    if (pending && !cn->stalling && cn->slot && c->waiting > 0) {
        cn->stalling = true;
        promote(c); /* someone waits for the slot this one no longer deserves */
        return;
    }
    cn->stalling = pending;
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *cn = w->cn;

    free(w);
    cn->writes--;
    if (status < 0) {
        /* EPIPE/ECONNRESET: the peer left before its reply; ECANCELED: we are closing. */
        if (status != UV_ECANCELED)
            mv_debug(cn->c->log, "control_write", MV_I("pid", cn->pid),
                     MV_S("error", uv_strerror(status)));
        conn_close(cn);
        return;
    }
    rearm(cn, true);
    if (cn->close_after_write) {
        if (cn->writes == 0)
            conn_close(cn);
        return;
    }
    /* Replies drain: answer the requests that waited, then read more. */
    if (cn->paused && !cn->closing && queued(cn) < cn->c->queue_pause) {
        cn->paused = false;
        process(cn);
        if (!cn->paused && !cn->closing && !cn->close_after_write && !cn->eof &&
            uv_read_start((uv_stream_t *)&cn->pipe, alloc_cb, read_cb) < 0)
            conn_close(cn);
    }
}

/* Queues one reply line. On failure, or when it would queue more than queue_max bytes
 * behind replies the peer has not read, the connection is closed. */
static void send_json(conn_t *cn, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0, q = queued(cn);
    wreq_t *w = s ? malloc(sizeof *w + n + 1) : NULL;
    uv_buf_t buf;
    int r;

    if (w && q > 0 && q + n + 1 > cn->c->queue_max) {
        mv_warn(cn->c->log, "control_closed", MV_S("reason", "reply_queue"), MV_I("uid", cn->uid),
                MV_I("pid", cn->pid), MV_I("queued", (long long)q));
        free(s);
        free(w);
        conn_close(cn);
        return;
    }
    if (!w) {
        free(s);
        mv_error(cn->c->log, "control_error", MV_S("call", "json_dumps"),
                 MV_S("error", strerror(ENOMEM)));
        conn_close(cn);
        return;
    }
    memcpy(w->data, s, n);
    w->data[n] = '\n';
    free(s);
    w->cn = cn;
    buf = uv_buf_init(w->data, (unsigned)(n + 1));
    r = uv_write(&w->req, (uv_stream_t *)&cn->pipe, &buf, 1, write_cb);
    if (r < 0) {
        free(w);
        mv_debug(cn->c->log, "control_write", MV_I("pid", cn->pid), MV_S("error", uv_strerror(r)));
        conn_close(cn);
        return;
    }
    cn->writes++;
    rearm(cn, false);
}

static void send_error(conn_t *cn, const char *msg)
{
    json_t *o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);

    if (!o) {
        conn_close(cn);
        return;
    }
    send_json(cn, o);
    json_decref(o);
}

/* Sends the handler's reply with "ok" and "cmd" first (the handler's values win). */
static void send_reply(conn_t *cn, const char *cmd, json_t *reply)
{
    json_t *o = json_pack("{s:b, s:s}", "ok", 1, "cmd", cmd);

    if (!o || json_object_update(o, reply) < 0) {
        json_decref(o);
        send_error(cn, "out of memory");
        return;
    }
    send_json(cn, o);
    json_decref(o);
}

/* One request line (newline excluded): parse, dispatch, reply. false for a blank line. */
static bool handle_line(conn_t *cn, const char *p, size_t len)
{
    mv_control_t *c = cn->c;
    json_t *req, *reply = NULL;
    json_error_t je;
    const char *cmd = NULL;
    char err[512] = "";
    size_t i;

    if (len > 0 && p[len - 1] == '\r')
        len--;
    for (i = 0; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    if (i == len)
        return false; /* a blank line (an interactive user's extra Enter) asks nothing */
    req = json_loadb(p, len, JSON_REJECT_DUPLICATES, &je);
    if (!req)
        snprintf(err, sizeof err, "request is not JSON: %s", je.text);
    else if (!json_is_object(req))
        snprintf(err, sizeof err, "request is not a JSON object");
    else if (!(cmd = json_string_value(json_object_get(req, "cmd"))))
        snprintf(err, sizeof err, "request has no string \"cmd\"");
    else if (cn->reserved && strcmp(cmd, "status") != 0 && strcmp(cmd, "stop") != 0) {
        snprintf(err, sizeof err,
                 "the control socket is at its limit of %d connections: this one may ask "
                 "status or stop only",
                 c->max_conns);
        cmd = NULL;
    }
    if (cmd) {
        mv_debug(c->log, "control", MV_S("cmd", cmd), MV_I("pid", cn->pid));
        cn->in_handler = true;
        reply = c->fn(c->arg, cmd, req, err, sizeof err);
        cn->in_handler = false;
        if (reply && !json_is_object(reply)) {
            json_decref(reply);
            reply = NULL;
            snprintf(err, sizeof err, "internal error: the reply to %s is not an object", cmd);
        } else if (!reply && !err[0]) {
            snprintf(err, sizeof err, "%s failed", cmd);
        }
    }
    if (reply)
        send_reply(cn, cmd, reply);
    else
        send_error(cn, err);
    json_decref(reply);
    json_decref(req);
    return true;
}

static void too_long(conn_t *cn)
{
    char msg[64];

    snprintf(msg, sizeof msg, "request too long (limit %d bytes)", MV_CONTROL_MAX_LINE);
    mv_warn(cn->c->log, "control_refused", MV_S("reason", "too_long"), MV_I("uid", cn->uid),
            MV_I("pid", cn->pid));
    send_error(cn, msg);
    conn_finish(cn);
}

/* Answers the complete lines in the buffer, in order, while the peer reads its replies; once
 * the peer has sent everything, an unterminated last line counts too. The reply queue is
 * checked before each line: requests already read wait in the buffer (and reading stops)
 * until the queue drains, so one read full of requests cannot queue more than one reply past
 * queue_pause. */
static void process(conn_t *cn)
{
    while (!cn->closing && !cn->close_after_write) {
        const char *p = (const char *)mv_buf_head(&cn->in);
        size_t n = mv_buf_unread(&cn->in);
        const char *nl = n ? memchr(p, '\n', n) : NULL;
        size_t len = nl ? (size_t)(nl - p) : n;

        if (len > MV_CONTROL_MAX_LINE) {
            too_long(cn);
            return;
        }
        if (!nl && (!cn->eof || n == 0))
            break;
        if (queued(cn) >= cn->c->queue_pause) {
            if (!cn->paused)
                uv_read_stop((uv_stream_t *)&cn->pipe);
            cn->paused = true;
            return;
        }
        if (handle_line(cn, p, len) && cn->reserved && !cn->closing)
            cn->close_after_write = true; /* the reserved slot answers one request */
        mv_buf_consume(&cn->in, nl ? len + 1 : len);
    }
    if (cn->closing)
        return;
    if (cn->close_after_write || cn->eof)
        conn_finish(cn); /* a handler closed the server, the reserved slot answered, or EOF */
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *cn = s->data;

    if (nread > 0) {
        cn->in.len += (size_t)nread;
        rearm(cn, !cn->stalling); /* requests do not excuse unread replies */
        process(cn);
    } else if (nread == UV_EOF) {
        cn->eof = true;
        uv_read_stop(s);
        process(cn);
    } else if (nread < 0) {
        if (nread != UV_ECONNRESET)
            mv_debug(cn->c->log, "control_read", MV_I("pid", cn->pid),
                     MV_S("error", uv_strerror((int)nread)));
        conn_close(cn);
    }
}

/* Whether the peer is root or our own uid (SO_PEERCRED: the credentials at connect time).
 * Fills cn's uid and pid; on refusal, `msg` says why. */
static bool peer_allowed(conn_t *cn, char *msg, size_t n)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    uv_os_fd_t fd;

    if (uv_fileno((uv_handle_t *)&cn->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        snprintf(msg, n, "permission denied: cannot identify the peer (%s)", strerror(errno));
        return false;
    }
    cn->uid = cr.uid;
    cn->pid = cr.pid;
    if (cr.uid == 0 || cr.uid == geteuid())
        return true;
    if (geteuid() == 0)
        snprintf(msg, n,
                 "permission denied: uid %u may not use this control socket (only uid 0 may)",
                 (unsigned)cr.uid);
    else
        snprintf(msg, n,
                 "permission denied: uid %u may not use this control socket (only uid 0 and "
                 "uid %u may)",
                 (unsigned)cr.uid, (unsigned)geteuid());
    return false;
}

/* How much a connection deserves to lose its slot: 2 when its replies wait unread, 1 when it
 * has been silent for stall_ms with nothing in flight, 0 otherwise. */
static int eviction_rank(conn_t *cn, uint64_t now)
{
    if (!cn->slot)
        return 0;
    if (queued(cn) > 0)
        return 2;
    return cn->writes == 0 && now - cn->since >= cn->c->stall_ms ? 1 : 0;
}

/* The connection to make room for at the cap: the highest rank, then the longest without
 * progress, then the oldest (the list is newest first); NULL if none deserves it. */
static conn_t *eviction_victim(mv_control_t *c)
{
    uint64_t now = uv_now(c->loop);
    conn_t *best = NULL;
    int best_rank = 0;

    for (conn_t *cn = c->conns; cn; cn = cn->next) {
        int rank = eviction_rank(cn, now);

        if (rank > best_rank || (rank > 0 && rank == best_rank && cn->since <= best->since)) {
            best = cn;
            best_rank = rank;
        }
    }
    return best;
}

/* The connection that has waited longest for a slot (the list is newest first). */
static conn_t *oldest_waiter(mv_control_t *c)
{
    conn_t *best = NULL;

    for (conn_t *cn = c->conns; cn; cn = cn->next)
        if (cn->waiting)
            best = cn;
    return best;
}

static void refuse(conn_t *cn, const char *reason, const char *msg)
{
    mv_warn(cn->c->log, "control_refused", MV_S("reason", reason), MV_I("uid", cn->uid),
            MV_I("pid", cn->pid));
    send_error(cn, msg);
    conn_finish(cn);
}

/* Gives waiting connections slots, oldest first: a free one, one taken from a client that
 * does not read its replies (or is silent), else the reserved one. Runs when a connection
 * comes, when a slot comes free, when a holder stops reading, and when a wait ends. */
static void promote(mv_control_t *c)
{
    conn_t *w, *v;

    if (c->promoting || c->closing)
        return;
    c->promoting = true; /* conn_close of a victim calls back here */
    while ((w = oldest_waiter(c))) {
        if (c->used >= c->max_conns && (v = eviction_victim(c))) {
            mv_warn(c->log, "control_evicted",
                    MV_S("reason", queued(v) ? "unread_replies" : "silent"), MV_I("uid", v->uid),
                    MV_I("pid", v->pid), MV_I("queued", (long long)queued(v)));
            conn_close(v);
        }
        if (c->used < c->max_conns) {
            w->slot = true;
            c->used++;
        } else if (!c->reserved_busy) {
            w->reserved = c->reserved_busy = true;
            mv_info(c->log, "control_reserved", MV_I("uid", w->uid), MV_I("pid", w->pid),
                    MV_S("msg", "at the connection limit: this connection may ask status or stop"));
        } else {
            break;
        }
        w->waiting = false;
        c->waiting--;
        w->since = uv_now(c->loop);
        uv_timer_start(&w->idle, idle_cb, w->reserved ? c->stall_ms : c->idle_ms, 0);
        if (uv_read_start((uv_stream_t *)&w->pipe, alloc_cb, read_cb) < 0) {
            mv_warn(c->log, "control_error", MV_S("call", "uv_read_start"), MV_I("pid", w->pid));
            conn_close(w);
        }
    }
    c->promoting = false;
}

static void on_connection(uv_stream_t *server, int status)
{
    mv_control_t *c = server->data;
    char msg[160];
    conn_t *cn;
    int r;

    if (status < 0) {
        mv_warn(c->log, "control_error", MV_S("call", "accept"),
                MV_S("error", uv_strerror(status)));
        return;
    }
    /* Without memory the connection stays in libuv's hands and the server stalls until
     * memory comes back; there is nothing better to do with it. */
    cn = calloc(1, sizeof *cn);
    if (!cn) {
        mv_error(c->log, "control_error", MV_S("call", "calloc"), MV_S("error", strerror(ENOMEM)));
        return;
    }
    cn->c = c;
    cn->uid = cn->pid = -1;
    uv_pipe_init(c->loop, &cn->pipe, 0);
    uv_timer_init(c->loop, &cn->idle);
    cn->pipe.data = cn->idle.data = cn;
    cn->handles = 2;
    cn->next = c->conns;
    cn->pprev = &c->conns;
    if (c->conns)
        c->conns->pprev = &cn->next;
    c->conns = cn;
    c->nconns++;
    if ((r = uv_accept(server, (uv_stream_t *)&cn->pipe)) < 0) {
        mv_warn(c->log, "control_error", MV_S("call", "uv_accept"), MV_S("error", uv_strerror(r)));
        conn_close(cn);
        return;
    }
    cn->since = uv_now(c->loop);
    if (!peer_allowed(cn, msg, sizeof msg)) {
        uv_timer_start(&cn->idle, idle_cb, c->stall_ms, 0);
        refuse(cn, "uid", msg);
        return;
    }
    /* Every connection waits for a slot, most for no time at all. */
    cn->waiting = true;
    c->waiting++;
    uv_timer_start(&cn->idle, idle_cb, c->wait_ms, 0);
    promote(c);
    if (cn->waiting && c->waiting > c->max_conns) {
        cn->waiting = false;
        c->waiting--;
        snprintf(msg, sizeof msg, "too many control connections (limit %d)", c->max_conns);
        refuse(cn, "connections", msg);
    }
}

/* ---- the server ------------------------------------------------------------------------ */

/* Removes the socket file if it is still the one we bound (an operator may have removed it
 * and another memvisor bound the same path since). */
static void unlink_ours(mv_control_t *c)
{
    struct stat st;

    if (!c->path)
        return;
    if (lstat(c->path, &st) == 0 && (uint64_t)st.st_dev == c->dev &&
        (uint64_t)st.st_ino == c->ino && unlink(c->path) < 0)
        mv_warn(c->log, "control_error", MV_S("call", "unlink"), MV_S("path", c->path),
                MV_S("error", strerror(errno)));
    free(c->path);
    c->path = NULL;
}

static void server_closed_cb(uv_handle_t *h)
{
    mv_control_t *c = h->data;

    c->listening = false;
    maybe_done(c);
}

int mv_control_open(mv_control_t *c, uv_loop_t *loop, mv_log_t *log, const char *path,
                    mv_control_fn fn, void *arg, char *why, size_t whylen)
{
    struct sockaddr_un sa;
    struct stat st;
    size_t len = strlen(path);
    int fd = -1, r;

    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->log = log;
    c->fn = fn;
    c->arg = arg;
    c->max_conns = MV_CONTROL_MAX_CONNS;
    c->idle_ms = MV_CONTROL_IDLE_MS;
    c->stall_ms = c->wait_ms = MV_CONTROL_STALL_MS;
    c->queue_pause = MV_CONTROL_QUEUE_PAUSE;
    c->queue_max = MV_CONTROL_QUEUE_MAX;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (len == 0) {
        snprintf(why, whylen, "the control socket path is empty");
        return -EINVAL;
    }
    if (len >= sizeof sa.sun_path) {
        snprintf(why, whylen,
                 "control socket path %s is %zu bytes long; a Unix socket path "
                 "holds at most %zu",
                 path, len, sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, len + 1);
    if ((r = clear_path(c, &sa, why, whylen)) < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        snprintf(why, whylen, "socket() failed for the control socket %s: %s", path, strerror(-r));
        return r;
    }
    if (fchmod(fd, 0600) < 0) {
        r = -errno;
        snprintf(why, whylen, "fchmod() failed for the control socket %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        r = -errno;
        snprintf(why, whylen, "cannot bind the control socket %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    r = lstat(path, &st) < 0 ? -errno : (c->path = strdup(path)) ? 0 : -ENOMEM;
    if (r < 0) {
        snprintf(why, whylen, "cannot keep the control socket %s: %s", path, strerror(-r));
        unlink(path);
        close(fd);
        return r;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    uv_pipe_init(loop, &c->server, 0);
    c->server.data = c;
    c->listening = true;
    if ((r = uv_pipe_open(&c->server, fd)) < 0) {
        close(fd); /* not the handle's yet */
        goto fail;
    }
    /* uv_listen calls listen(2) itself. */
    /* A burst of clients queues in the kernel rather than getting EAGAIN (unix sockets do
     * not wait for a full backlog). */
    if ((r = uv_listen((uv_stream_t *)&c->server, 128, on_connection)) < 0)
        goto fail;
    return 0;
fail:
    snprintf(why, whylen, "cannot listen on the control socket %s: %s", path, uv_strerror(r));
    c->closing = true;
    uv_close((uv_handle_t *)&c->server, server_closed_cb);
    unlink_ours(c);
    return r;
}

void mv_control_close(mv_control_t *c, void (*cb)(void *), void *arg)
{
    c->close_cb = cb;
    c->close_arg = arg;
    if (!c->closing) {
        c->closing = true;
        if (c->listening)
            uv_close((uv_handle_t *)&c->server, server_closed_cb);
        unlink_ours(c);
        for (conn_t *cn = c->conns; cn; cn = cn->next) {
            if (!cn->in_handler && cn->writes == 0) {
                conn_close(cn);
                continue;
            }
            /* A reply being written (a `stop` answered just before the pool stopped) or
             * about to be (the handler closes us) gets a moment to reach its reader. */
            cn->close_after_write = true;
            uv_read_stop((uv_stream_t *)&cn->pipe);
            uv_timer_start(&cn->idle, idle_cb, CLOSING_MS, 0);
        }
    }
    maybe_done(c);
}
