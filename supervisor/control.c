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
 */
#include "control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#define READ_CHUNK     16384
#define MAX_QUEUED     (1024 * 1024) /* reply bytes queued before reading pauses */
#define CLOSING_MS     1000          /* the last reply's time to drain once the server closes */
#define SUN_PATH_BYTES sizeof(((struct sockaddr_un *)0)->sun_path)

typedef struct mv_control_conn {
    uv_pipe_t pipe;
    uv_timer_t idle;
    mv_control_t *c;
    struct mv_control_conn *next, **pprev;
    mv_buf_t in;
    int handles; /* of pipe and idle, not closed yet */
    int writes;  /* uv_write requests not called back yet */
    bool closing;
    bool close_after_write; /* no more requests: close once the last reply is written */
    bool in_handler;
    bool paused; /* reading stopped while too many reply bytes are queued */
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
static int clear_path(mv_control_t *c, const struct sockaddr_un *sa, char *why, size_t n)
{
    const char *path = sa->sun_path;
    struct stat st;
    int fd, r;

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
    /* Non-blocking: a listener with a full backlog answers EAGAIN, which still means alive. */
    r = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : -errno;
    close(fd);
    if (r == 0 || r == -EAGAIN) {
        snprintf(why, n, "control socket %s is in use by a running memvisor", path);
        return -EADDRINUSE;
    }
    if (r == -ENOENT)
        return 0;
    if (r != -ECONNREFUSED) {
        snprintf(why, n, "connect() failed while probing the control socket %s: %s", path,
                 strerror(-r));
        return r;
    }
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

static void conn_close(conn_t *cn)
{
    if (cn->closing)
        return;
    cn->closing = true;
    uv_close((uv_handle_t *)&cn->pipe, conn_closed_cb);
    uv_close((uv_handle_t *)&cn->idle, conn_closed_cb);
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
    if (cn->close_after_write) {
        if (cn->writes == 0)
            conn_close(cn);
        return;
    }
    if (cn->paused && !cn->closing &&
        uv_stream_get_write_queue_size((uv_stream_t *)&cn->pipe) < MAX_QUEUED) {
        cn->paused = false;
        if (uv_read_start((uv_stream_t *)&cn->pipe, alloc_cb, read_cb) < 0)
            conn_close(cn);
    }
}

/* Queues one reply line. On failure the connection is closed. */
static void send_json(conn_t *cn, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    wreq_t *w = s ? malloc(sizeof *w + n + 1) : NULL;
    uv_buf_t buf;
    int r;

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

/* One request line (newline excluded): parse, dispatch, reply. */
static void handle_line(conn_t *cn, const char *p, size_t len)
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
        return; /* a blank line (an interactive user's extra Enter) asks nothing */
    req = json_loadb(p, len, JSON_REJECT_DUPLICATES, &je);
    if (!req)
        snprintf(err, sizeof err, "request is not JSON: %s", je.text);
    else if (!json_is_object(req))
        snprintf(err, sizeof err, "request is not a JSON object");
    else if (!(cmd = json_string_value(json_object_get(req, "cmd"))))
        snprintf(err, sizeof err, "request has no string \"cmd\"");
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

/* Answers every complete line in the buffer, in order; at EOF an unterminated last line
 * counts too. */
static void process(conn_t *cn, bool eof)
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
        if (!nl && (!eof || n == 0))
            break;
        handle_line(cn, p, len);
        mv_buf_consume(&cn->in, nl ? len + 1 : len);
    }
    if (cn->close_after_write && !cn->closing) {
        conn_finish(cn); /* the server closed while a handler ran */
        return;
    }
    if (eof) {
        conn_finish(cn);
        return;
    }
    /* A peer that sends requests without reading replies stops being read. */
    if (!cn->closing && uv_stream_get_write_queue_size((uv_stream_t *)&cn->pipe) >= MAX_QUEUED) {
        cn->paused = true;
        uv_read_stop((uv_stream_t *)&cn->pipe);
    }
}

static void idle_cb(uv_timer_t *t)
{
    conn_t *cn = t->data;

    mv_debug(cn->c->log, "control_idle", MV_I("pid", cn->pid));
    conn_close(cn);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *cn = s->data;

    if (nread > 0) {
        cn->in.len += (size_t)nread;
        uv_timer_start(&cn->idle, idle_cb, cn->c->idle_ms, 0);
        process(cn, false);
    } else if (nread == UV_EOF) {
        process(cn, true);
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
    snprintf(msg, n,
             "permission denied: uid %u may not use this control socket (only uid 0 and "
             "uid %u may)",
             (unsigned)cr.uid, (unsigned)geteuid());
    return false;
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
    uv_timer_start(&cn->idle, idle_cb, c->idle_ms, 0);
    if (!peer_allowed(cn, msg, sizeof msg)) {
        mv_warn(c->log, "control_refused", MV_S("reason", "uid"), MV_I("uid", cn->uid),
                MV_I("pid", cn->pid));
        send_error(cn, msg);
        conn_finish(cn);
        return;
    }
    if (c->nconns > c->max_conns) {
        snprintf(msg, sizeof msg, "too many control connections (limit %d)", c->max_conns);
        mv_warn(c->log, "control_refused", MV_S("reason", "connections"), MV_I("uid", cn->uid),
                MV_I("pid", cn->pid));
        send_error(cn, msg);
        conn_finish(cn);
        return;
    }
    if ((r = uv_read_start((uv_stream_t *)&cn->pipe, alloc_cb, read_cb)) < 0) {
        mv_warn(c->log, "control_error", MV_S("call", "uv_read_start"),
                MV_S("error", uv_strerror(r)));
        conn_close(cn);
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
    if ((r = uv_listen((uv_stream_t *)&c->server, 16, on_connection)) < 0)
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
