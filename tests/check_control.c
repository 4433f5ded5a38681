/*
 * control: the control socket against a real libuv loop in this process, and the CLI client.
 *
 * Clients are non-blocking sockets; every wait polls the client's socket together with the
 * loop's backend fd and runs the loop in between, so nothing sleeps and each wait ends as soon
 * as the socket or the loop has something to do (the test case's timeout guards a hang). The
 * CLI runs in a thread against the same loop (so LSan sees its leaks), the foreign-uid peer in
 * a forked child.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "harness.h"
#include "suites.h"
#include "util.h"

#define BIG_REPLY (256 * 1024)

static char tmp[64];
static char sock_path[100]; /* fits a sockaddr_un */
static char log_path[128];
static uv_loop_t loop;
static mv_log_t lg;
static mv_control_t ctl;
static bool ctl_open;
static int calls;        /* handler calls */
static json_t *last_req; /* a copy of the last request the handler saw */
static int closed;       /* mv_control_close callbacks */

static void close_cb(void *arg)
{
    (*(int *)arg)++;
}

/* The fake supervisor: status answers, boom fails, stop closes the server from inside. */
static json_t *fake_fn(void *arg, const char *cmd, json_t *req, char *err, size_t n)
{
    calls++;
    json_decref(last_req);
    last_req = json_deep_copy(req);
    if (strcmp(cmd, "status") == 0)
        return json_pack("{s:i, s:[]}", "calls", calls, "workers");
    if (strcmp(cmd, "boom") == 0) {
        snprintf(err, n, "it went boom");
        return NULL;
    }
    if (strcmp(cmd, "big") == 0) {
        char *s = malloc(BIG_REPLY + 1);
        json_t *o;

        memset(s, 'b', BIG_REPLY);
        s[BIG_REPLY] = '\0';
        o = json_pack("{s:s}", "blob", s);
        free(s);
        return o;
    }
    if (strcmp(cmd, "stop") == 0) {
        mv_control_close(&ctl, close_cb, &closed);
        return json_object();
    }
    if (strcmp(cmd, "recycle") == 0)
        return json_is_string(json_object_get(req, "slot"))
                   ? json_pack("{s:[i,i,i]}", "workers", 1, 2, 3)
                   : json_pack("{s:[O]}", "workers", json_object_get(req, "slot"));
    if (strcmp(cmd, "reload") == 0) {
        snprintf(err, n, "no configuration file to reload");
        return NULL;
    }
    if (strcmp(cmd, "metrics") == 0)
        return json_pack("{s:s}", "text", "# TYPE mv_workers gauge\nmv_workers 2\n");
    snprintf(err, n, "unknown command: %s", cmd);
    return NULL;
}

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-control-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(sock_path, sizeof sock_path, "%s/ctl.sock", tmp);
    snprintf(log_path, sizeof log_path, "%s/log", tmp);
    signal(SIGPIPE, SIG_IGN); /* as memvisor's main does */
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_DEBUG, log_path), 0);
    calls = closed = 0;
    last_req = NULL;
    ctl_open = false;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    if (ctl_open && !ctl.closing)
        mv_control_close(&ctl, close_cb, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    if (ctl_open)
        ck_assert_int_eq(closed, 1);
    json_decref(last_req);
    mv_log_close(&lg);
    nftw(tmp, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static void open_ctl(void)
{
    char why[512] = "";
    int r = mv_control_open(&ctl, &loop, &lg, sock_path, fake_fn, NULL, why, sizeof why);

    ck_assert_msg(r == 0, "mv_control_open: %d %s", r, why);
    ctl_open = true;
}

/* One turn of the loop, then a wait until it or `fd` (may be -1) has something to do. Returns
 * fd's revents. */
static short spin(int fd, short ev)
{
    struct pollfd p[2] = {{.fd = fd, .events = ev}, {.fd = uv_backend_fd(&loop), .events = POLLIN}};
    int t;

    uv_run(&loop, UV_RUN_NOWAIT);
    t = uv_backend_timeout(&loop);
    if (t < 0 || t > 1000)
        t = 1000;
    ck_assert_int_ge(poll(p, 2, t), 0);
    return p[0].revents;
}

static void pump(int fd, short ev)
{
    while (!spin(fd, ev))
        ;
}

static bool log_has(const char *needle)
{
    char *s;
    bool found;

    ck_assert_int_eq(mv_log_flush(&lg, 10000), 0); /* the log is written by its own thread */
    s = read_text(log_path);
    found = s && strstr(s, needle);

    free(s);
    return found;
}

/* ---- a non-blocking client --------------------------------------------------------------- */

typedef struct client {
    int fd;
    mv_buf_t in;
} client_t;

static int connect_path(const char *path, int flags)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);

    ck_assert_int_ge(fd, 0);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect %s: %s", path,
                  strerror(errno));
    return fd;
}

static client_t cl_open(void)
{
    client_t c = {connect_path(sock_path, SOCK_NONBLOCK), {0}};

    return c;
}

static void cl_close(client_t *c)
{
    close(c->fd);
    mv_buf_free(&c->in);
}

/* Sends everything, unless the server closes first. */
static void cl_send(client_t *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

        if (w > 0) {
            s += w;
            n -= (size_t)w;
        } else if (errno == EAGAIN) {
            pump(c->fd, POLLOUT);
        } else {
            ck_assert_msg(errno == EPIPE || errno == ECONNRESET, "send: %s", strerror(errno));
            return;
        }
    }
}

static void cl_sends(client_t *c, const char *s)
{
    cl_send(c, s, strlen(s));
}

/* The next line (malloc'd, newline dropped), or NULL at EOF / reset. */
static char *cl_line(client_t *c)
{
    for (;;) {
        char *h = (char *)mv_buf_head(&c->in);
        char *nl = h ? memchr(h, '\n', mv_buf_unread(&c->in)) : NULL;
        ssize_t got;

        if (nl) {
            char *line = strndup(h, (size_t)(nl - h));

            mv_buf_consume(&c->in, (size_t)(nl - h) + 1);
            return line;
        }
        ck_assert_int_eq(mv_buf_reserve(&c->in, 65536), 0);
        got = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (got > 0)
            c->in.len += (size_t)got;
        else if (got == 0 || errno == ECONNRESET)
            return NULL;
        else if (errno == EAGAIN)
            pump(c->fd, POLLIN);
        else
            ck_abort_msg("recv: %s", strerror(errno));
    }
}

static json_t *cl_reply(client_t *c)
{
    char *line = cl_line(c);
    json_t *o;

    ck_assert_msg(line != NULL, "no reply: the server closed the connection");
    o = json_loads(line, 0, NULL);
    ck_assert_msg(json_is_object(o), "reply is not an object: %s", line);
    free(line);
    return o;
}

/* Sends one line and returns the reply. */
static json_t *cl_ask(client_t *c, const char *line)
{
    cl_sends(c, line);
    return cl_reply(c);
}

static void cl_expect_eof(client_t *c)
{
    char *line = cl_line(c);

    ck_assert_msg(line == NULL, "expected EOF, got: %s", line);
}

/* Asserts an error reply containing `needle`, and frees it. */
static void assert_error(json_t *r, const char *needle)
{
    const char *e = jstr(r, "error");

    ck_assert(json_is_false(json_object_get(r, "ok")));
    ck_assert_msg(e && strstr(e, needle), "error \"%s\" lacks \"%s\"", e ? e : "(none)", needle);
    json_decref(r);
}

static void assert_ok(json_t *r, const char *cmd)
{
    ck_assert(json_is_true(json_object_get(r, "ok")));
    ck_assert_str_eq(jstr(r, "cmd"), cmd);
    json_decref(r);
}

/* ---- requests and replies ---------------------------------------------------------------- */

START_TEST(good_request)
{
    client_t c;
    json_t *r;

    open_ctl();
    c = cl_open();
    r = cl_ask(&c, "{\"cmd\":\"status\"}\n");
    ck_assert_int_eq(jint(r, "calls"), 1);
    ck_assert(json_is_array(json_object_get(r, "workers")));
    assert_ok(r, "status");
    ck_assert_int_eq(calls, 1);
    cl_close(&c);
    ck_assert(log_has("event=control"));
    ck_assert(log_has("cmd=status"));
}
END_TEST

START_TEST(two_requests_on_one_connection)
{
    client_t c;

    open_ctl();
    c = cl_open();
    /* Both in one write: answered in order. */
    cl_sends(&c, "{\"cmd\":\"status\"}\n{\"cmd\":\"boom\"}\n");
    assert_ok(cl_reply(&c), "status");
    assert_error(cl_reply(&c), "it went boom");
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\",\"extra\":[1,2]}\r\n"), "status");
    ck_assert_int_eq(calls, 3);
    cl_close(&c);
}
END_TEST

START_TEST(garbage_keeps_the_connection)
{
    client_t c;

    open_ctl();
    c = cl_open();
    assert_error(cl_ask(&c, "not json\n"), "request is not JSON");
    assert_error(cl_ask(&c, "[1,2]\n"), "not a JSON object");
    assert_error(cl_ask(&c, "{\"x\":1}\n"), "no string \"cmd\"");
    assert_error(cl_ask(&c, "{\"cmd\":5}\n"), "no string \"cmd\"");
    assert_error(cl_ask(&c, "{\"cmd\":\"a\",\"cmd\":\"b\"}\n"), "request is not JSON");
    assert_error(cl_ask(&c, "{\"cmd\":\"nope\"}\n"), "unknown command: nope");
    ck_assert_int_eq(calls, 1); /* only "nope" reached the handler */
    /* A blank line asks nothing: the next reply is the status's. */
    assert_ok(cl_ask(&c, "\n  \n{\"cmd\":\"status\"}\n"), "status");
    ck_assert_int_eq(calls, 2);
    cl_close(&c);
}
END_TEST

START_TEST(over_long_request_is_refused_and_closed)
{
    size_t n = MV_CONTROL_MAX_LINE + 4000;
    char *big = malloc(n + 1);
    client_t c;

    open_ctl();
    memset(big, 'x', n);
    /* No newline at all. */
    c = cl_open();
    cl_send(&c, big, n);
    assert_error(cl_reply(&c), "request too long (limit 65536 bytes)");
    cl_expect_eof(&c);
    cl_close(&c);
    /* A newline, but too late. */
    big[n - 1] = '\n';
    c = cl_open();
    cl_send(&c, big, n);
    assert_error(cl_reply(&c), "request too long (limit 65536 bytes)");
    cl_expect_eof(&c);
    cl_close(&c);
    ck_assert_int_eq(calls, 0);
    free(big);
    /* The server is fine. */
    c = cl_open();
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&c);
}
END_TEST

START_TEST(unterminated_last_request_at_eof)
{
    client_t c;

    open_ctl();
    c = cl_open();
    cl_sends(&c, "{\"cmd\":\"status\"}");
    shutdown(c.fd, SHUT_WR);
    assert_ok(cl_reply(&c), "status");
    cl_expect_eof(&c);
    cl_close(&c);
}
END_TEST

START_TEST(connection_cap)
{
    client_t a, b, x, y, z, w;

    open_ctl();
    ctl.max_conns = 2;
    /* All six wait in the backlog: the loop accepts them in order. a and b take the slots;
     * neither is evictable (not silent for long, no unread replies). */
    a = cl_open();
    b = cl_open();
    x = cl_open();
    y = cl_open();
    z = cl_open();
    w = cl_open();
    /* x gets the reserved slot, y and z wait (as many as max_conns), w is refused. */
    assert_error(cl_reply(&w), "too many control connections (limit 2)");
    cl_expect_eof(&w);
    cl_close(&w);
    /* The reserved slot answers status or stop, once; then the first in line has it. */
    assert_error(cl_ask(&x, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "may ask status or stop only");
    cl_expect_eof(&x);
    cl_close(&x);
    ck_assert_int_eq(calls, 0);
    assert_ok(cl_ask(&y, "{\"cmd\":\"status\"}\n"), "status");
    cl_expect_eof(&y);
    cl_close(&y);
    /* z, waiting, is next on the reserved slot; when a slot comes free, z has a real one. */
    assert_ok(cl_ask(&a, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&a);
    assert_ok(cl_ask(&z, "{\"cmd\":\"status\"}\n"), "status");
    cl_expect_eof(&z);
    cl_close(&z);
    z = cl_open();
    assert_ok(cl_ask(&z, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "recycle");
    assert_ok(cl_ask(&z, "{\"cmd\":\"status\"}\n"), "status");
    assert_ok(cl_ask(&b, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "recycle");
    cl_close(&b);
    cl_close(&z);
    ck_assert(log_has("reason=connections"));
    ck_assert(log_has("event=control_reserved"));
}
END_TEST

START_TEST(a_wait_for_a_slot_ends)
{
    client_t x, y;

    open_ctl();
    ctl.max_conns = 0; /* the reserved slot only */
    ctl.stall_ms = 60000;
    ctl.wait_ms = 20;
    x = cl_open();
    y = cl_open();
    /* x holds the reserved slot and says nothing; y waits, then is refused. */
    assert_error(cl_reply(&y), "too many control connections (limit 0)");
    cl_expect_eof(&y);
    cl_close(&y);
    assert_ok(cl_ask(&x, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&x);
}
END_TEST

START_TEST(a_waiter_gets_the_slot_of_a_client_that_stops_reading)
{
    client_t a, x, y;
    char *line;

    open_ctl();
    ctl.max_conns = 1;
    ctl.stall_ms = 60000;
    a = cl_open();
    assert_ok(cl_ask(&a, "{\"cmd\":\"status\"}\n"), "status");
    x = cl_open(); /* the reserved slot, silent */
    y = cl_open(); /* waits */
    while (ctl.nconns < 3)
        spin(-1, 0);
    /* a stops reading its replies: y takes its slot at once. */
    for (int i = 0; i < 10; i++)
        cl_sends(&a, "{\"cmd\":\"big\"}\n");
    assert_ok(cl_ask(&y, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "recycle");
    ck_assert(log_has("event=control_evicted reason=unread_replies"));
    while ((line = cl_line(&a)))
        free(line);
    assert_ok(cl_ask(&x, "{\"cmd\":\"stop\"}\n"), "stop");
    cl_close(&a);
    cl_close(&x);
    cl_close(&y);
}
END_TEST

/* The most "big" replies the server may have produced for a peer that reads none: what the
 * kernel's socket buffer takes, plus one reply past the pause. */
static int bound_of_unread_big_replies(void)
{
    FILE *f = fopen("/proc/sys/net/core/wmem_default", "r");
    long wmem = 0;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &wmem), 1);
    fclose(f);
    ck_assert_int_gt(wmem, 0);
    return (int)(wmem / BIG_REPLY) + 2;
}

START_TEST(requests_wait_while_replies_are_unread)
{
    client_t c;
    json_t *r;
    int bound = bound_of_unread_big_replies();

    open_ctl();
    /* 40 requests in one write, none of the 10 MiB of replies read: after the bound, each
     * further request waits in the server's buffer, however long the loop runs. */
    c = cl_open();
    for (int i = 0; i < 40; i++)
        cl_sends(&c, "{\"cmd\":\"big\"}\n");
    while (calls == 0)
        spin(-1, 0);
    for (int i = 0; i < 200; i++)
        uv_run(&loop, UV_RUN_NOWAIT); /* every turn that could answer one more */
    ck_assert_int_le(calls, bound);
    ck_assert_int_lt(calls, 40);
    /* Reading resumes the answers, in order, all of them. */
    for (int i = 0; i < 40; i++) {
        r = cl_reply(&c);
        ck_assert_uint_eq(strlen(jstr(r, "blob")), BIG_REPLY);
        assert_ok(r, "big");
    }
    ck_assert_int_eq(calls, 40);
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&c);
}
END_TEST

START_TEST(a_reply_past_the_queue_cap_closes_the_connection)
{
    client_t c;
    char *line;

    open_ctl();
    ctl.queue_pause = (size_t)1 << 40; /* never pause: only the cap stands */
    ctl.queue_max = 65536;
    c = cl_open();
    for (int i = 0; i < 5; i++)
        cl_sends(&c, "{\"cmd\":\"big\"}\n");
    /* The first reply is always sent; the second would queue past the cap behind it. */
    while (calls == 0 || ctl.nconns > 0)
        spin(-1, 0);
    ck_assert_int_eq(calls, 2);
    ck_assert(log_has("event=control_closed reason=reply_queue"));
    while ((line = cl_line(&c)))
        free(line);
    cl_close(&c);
}
END_TEST

START_TEST(unread_replies_time_out)
{
    client_t c, d;
    char *line;

    open_ctl();
    ctl.stall_ms = 20;
    c = cl_open();
    d = cl_open();
    for (int i = 0; i < 10; i++)
        cl_sends(&c, "{\"cmd\":\"big\"}\n");
    /* A reader is not timed out, however slow its requests. */
    assert_ok(cl_ask(&d, "{\"cmd\":\"status\"}\n"), "status");
    while (ctl.nconns > 1)
        spin(-1, 0);
    ck_assert(log_has("event=control_closed reason=unread_replies"));
    while ((line = cl_line(&c)))
        free(line);
    cl_close(&c);
    assert_ok(cl_ask(&d, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&d);
}
END_TEST

START_TEST(non_readers_are_evicted_at_the_cap)
{
    client_t a, b, x, y;
    char *line;

    open_ctl();
    ctl.max_conns = 2;
    a = cl_open();
    b = cl_open();
    for (int i = 0; i < 10; i++) {
        cl_sends(&a, "{\"cmd\":\"big\"}\n");
        cl_sends(&b, "{\"cmd\":\"big\"}\n");
    }
    while (calls < 2)
        spin(-1, 0);
    /* Both hold replies they do not read: a newcomer takes the slot of the older one. */
    x = cl_open();
    assert_ok(cl_ask(&x, "{\"cmd\":\"status\"}\n"), "status");
    y = cl_open();
    assert_ok(cl_ask(&y, "{\"cmd\":\"status\"}\n"), "status");
    assert_ok(cl_ask(&x, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "recycle"); /* a real slot */
    ck_assert(log_has("event=control_evicted reason=unread_replies"));
    while ((line = cl_line(&a)))
        free(line);
    while ((line = cl_line(&b)))
        free(line);
    cl_close(&a);
    cl_close(&b);
    cl_close(&x);
    cl_close(&y);
}
END_TEST

START_TEST(silent_connections_are_evicted_at_the_cap)
{
    client_t a, b, x;
    uint64_t t0;

    open_ctl();
    ctl.max_conns = 2;
    ctl.stall_ms = 1;
    a = cl_open();
    b = cl_open();
    while (ctl.nconns < 2)
        spin(-1, 0);
    /* Silent for a loop tick or more: evictable, the older first. */
    t0 = uv_now(&loop);
    while (uv_now(&loop) < t0 + 2)
        spin(-1, 0);
    x = cl_open();
    assert_ok(cl_ask(&x, "{\"cmd\":\"recycle\",\"slot\":1}\n"), "recycle");
    cl_expect_eof(&a);
    assert_ok(cl_ask(&b, "{\"cmd\":\"status\"}\n"), "status");
    ck_assert(log_has("event=control_evicted reason=silent"));
    cl_close(&a);
    cl_close(&b);
    cl_close(&x);
}
END_TEST

START_TEST(idle_connection_is_closed)
{
    client_t c;

    open_ctl();
    ctl.idle_ms = 1;
    c = cl_open();
    cl_expect_eof(&c);
    cl_close(&c);
    while (ctl.nconns > 0)
        spin(-1, 0);
    ck_assert(log_has("control_idle"));
}
END_TEST

START_TEST(peer_leaving_mid_reply)
{
    client_t c;
    json_t *r;

    open_ctl();
    /* A reply larger than the socket buffer, to a peer that is gone. */
    c = cl_open();
    cl_sends(&c, "{\"cmd\":\"big\"}\n");
    cl_close(&c);
    while (calls == 0 || ctl.nconns > 0)
        spin(-1, 0);
    /* Ten of them queued on one connection: reading pauses, then resumes. */
    c = cl_open();
    for (int i = 0; i < 10; i++)
        cl_sends(&c, "{\"cmd\":\"big\"}\n");
    for (int i = 0; i < 10; i++) {
        r = cl_reply(&c);
        ck_assert_uint_eq(strlen(jstr(r, "blob")), BIG_REPLY);
        assert_ok(r, "big");
    }
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&c);
}
END_TEST

/* ---- the socket file --------------------------------------------------------------------- */

START_TEST(socket_file_is_0600)
{
    mode_t old = umask(0); /* whatever the umask, the file is born 0600 */
    struct stat st;

    open_ctl();
    umask(old);
    ck_assert_int_eq(lstat(sock_path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
}
END_TEST

START_TEST(stale_socket_is_replaced)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    client_t c;

    /* A socket file nobody listens on: what a killed memvisor leaves. */
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    open_ctl();
    c = cl_open();
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&c);
    ck_assert(log_has("control_stale"));
}
END_TEST

START_TEST(live_socket_is_refused)
{
    mv_control_t other;
    char why[512] = "", pid_text[48];
    client_t c;
    int n = 0;

    open_ctl();
    ck_assert_int_eq(mv_control_open(&other, &loop, &lg, sock_path, fake_fn, NULL, why, sizeof why),
                     -EADDRINUSE);
    snprintf(pid_text, sizeof pid_text, "in use by pid %d", (int)getpid());
    ck_assert_msg(strstr(why, pid_text), "%s", why); /* the listener, by its credentials */
    ck_assert_ptr_nonnull(strstr(why, sock_path));
    mv_control_close(&other, close_cb, &n); /* nothing open: called back at once */
    ck_assert_int_eq(n, 1);
    /* The probe connection came and went; the first server still answers. */
    c = cl_open();
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    cl_close(&c);
}
END_TEST

START_TEST(regular_file_is_left_alone)
{
    char why[512] = "", *s;
    FILE *f = fopen(sock_path, "w");

    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(mv_control_open(&ctl, &loop, &lg, sock_path, fake_fn, NULL, why, sizeof why),
                     -EEXIST);
    ck_assert_ptr_nonnull(strstr(why, "not a socket"));
    ck_assert_ptr_nonnull(strstr(why, sock_path));
    s = read_text(sock_path);
    ck_assert_str_eq(s, "precious\n");
    free(s);
}
END_TEST

START_TEST(path_too_long_or_empty)
{
    char path[256], why[512] = "";

    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    ck_assert_int_eq(mv_control_open(&ctl, &loop, &lg, path, fake_fn, NULL, why, sizeof why),
                     -ENAMETOOLONG);
    ck_assert_ptr_nonnull(strstr(why, "255 bytes long"));
    ck_assert_int_eq(mv_control_open(&ctl, &loop, &lg, "", fake_fn, NULL, why, sizeof why),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "empty"));
}
END_TEST

START_TEST(close_unlinks_and_calls_back)
{
    client_t c;

    open_ctl();
    c = cl_open();
    assert_ok(cl_ask(&c, "{\"cmd\":\"status\"}\n"), "status");
    mv_control_close(&ctl, close_cb, &closed);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
    ck_assert_int_eq(errno, ENOENT);
    cl_expect_eof(&c);
    while (closed == 0)
        spin(-1, 0);
    ck_assert_int_eq(ctl.nconns, 0);
    cl_close(&c);
}
END_TEST

START_TEST(close_spares_a_file_that_is_not_ours)
{
    FILE *f;
    char *s;

    open_ctl();
    /* Someone removed our socket and put something else there. */
    ck_assert_int_eq(unlink(sock_path), 0);
    f = fopen(sock_path, "w");
    fputs("theirs\n", f);
    fclose(f);
    mv_control_close(&ctl, close_cb, &closed);
    s = read_text(sock_path);
    ck_assert_str_eq(s, "theirs\n");
    free(s);
}
END_TEST

START_TEST(stop_inside_the_handler_still_replies)
{
    client_t c;

    open_ctl();
    c = cl_open();
    /* What follows "stop" on the same connection is not handled. */
    cl_sends(&c, "{\"cmd\":\"stop\"}\n{\"cmd\":\"status\"}\n");
    assert_ok(cl_reply(&c), "stop");
    cl_expect_eof(&c);
    while (closed == 0)
        spin(-1, 0);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
    cl_close(&c);
}
END_TEST

/* The child's side of other_uid_is_refused: plain libc, exit code says what went wrong. */
static int foreign_peer(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[512];
    size_t got = 0;
    int fd;

    alarm(10);
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 10;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return 13;
    if (send(fd, "{\"cmd\":\"status\"}\n", 17, MSG_NOSIGNAL) < 0 && errno != EPIPE &&
        errno != ECONNRESET)
        return 11;
    while (got < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);

        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (!strstr(buf, "\"ok\":false") || !strstr(buf, "permission denied: uid 65534"))
        return 12;
    /* The server runs as root here: one uid is named, once. */
    if (!strstr(buf, "(only uid 0 may)"))
        return 14;
    return 0;
}

START_TEST(other_uid_is_refused)
{
    int done[2], status;
    pid_t pid;

    if (geteuid() != 0) {
        fprintf(stderr, "control: other_uid_is_refused skipped: needs root to setuid\n");
        return;
    }
    open_ctl();
    /* Let uid 65534 reach the socket, so that only the credential check stands in its way. */
    ck_assert_int_eq(chmod(tmp, 0711), 0);
    ck_assert_int_eq(chmod(sock_path, 0666), 0);
    ck_assert_int_eq(pipe2(done, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(done[0]);
        _exit(foreign_peer());
    }
    close(done[1]);
    pump(done[0], POLLIN); /* POLLHUP when the child exits */
    close(done[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    ck_assert_int_eq(calls, 0);
    while (ctl.nconns > 0)
        spin(-1, 0);
    ck_assert(log_has("control_refused"));
    ck_assert(log_has("uid=65534"));
}
END_TEST

/* ---- mv_control_path --------------------------------------------------------------------- */

/* mv_control_path over a configuration built from `-o` overrides. */
static int path_of(const char *o1, const char *o2, char *out, size_t cap)
{
    const char *ovr[2] = {o1, o2};
    mv_errors_t errs = {0};
    mv_config_t cfg;
    int r;

    ck_assert_int_eq(mv_config_build(&cfg, NULL, ovr, o2 ? 2 : o1 ? 1 : 0, &errs), 0);
    r = mv_control_path(&cfg, out, cap);
    mv_config_free(&cfg);
    mv_errors_free(&errs);
    return r;
}

START_TEST(path_resolution)
{
    char out[256], o[300];

    char cwd[200];

    /* relative: resolved against the working directory when there is no config file */
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(path_of(NULL, NULL, out, sizeof out), 0);
    snprintf(o, sizeof o, "%s/.memvisor/control.sock", strcmp(cwd, "/") ? cwd : "");
    ck_assert_str_eq(out, o);
    ck_assert_int_eq(path_of("supervisor.state_dir=/var/lib/mv/", NULL, out, sizeof out), 0);
    ck_assert_str_eq(out, "/var/lib/mv/control.sock");
    ck_assert_int_eq(
        path_of("supervisor.state_dir=/var/lib/mv", "control.socket=/run/m.sock", out, sizeof out),
        0);
    ck_assert_str_eq(out, "/run/m.sock");
    ck_assert_int_eq(path_of("control.socket=none", NULL, out, sizeof out), -ENOENT);
    /* Fits the buffer, not a sockaddr_un. */
    snprintf(o, sizeof o, "supervisor.state_dir=/%0150d", 0);
    ck_assert_int_eq(path_of(o, NULL, out, sizeof out), -ENAMETOOLONG);
    /* Fits a sockaddr_un, not the buffer. */
    ck_assert_int_eq(path_of("control.socket=/run/m.sock", NULL, out, 8), -ENAMETOOLONG);
}
END_TEST

/* ---- the CLI ----------------------------------------------------------------------------- */

typedef struct ctl_run {
    const char *args[16];
    int argc, code, done[2], saved[2];
    pthread_t th;
    char *out, *err;
} ctl_run_t;

static void *ctl_thread(void *p)
{
    ctl_run_t *r = p;

    r->code = mv_ctl_main(r->argc, (char **)r->args);
    fflush(stdout);
    fflush(stderr);
    close(r->done[1]);
    return NULL;
}

/* Starts `memvisor ARGS...` in a thread, its stdout and stderr into files. */
static void ctl_start(ctl_run_t *r, const char *const *args)
{
    char path[128];
    int fd;

    memset(r, 0, sizeof *r);
    r->args[r->argc++] = "memvisor";
    for (; *args; args++)
        r->args[r->argc++] = *args;
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/ctl.%d", tmp, i + 1);
        r->saved[i] = dup(i + 1);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        dup2(fd, i + 1);
        close(fd);
    }
    ck_assert_int_eq(pipe2(r->done, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&r->th, NULL, ctl_thread, r), 0);
}

/* Runs the loop until the CLI is done; returns its exit code, its output in r->out/err. */
static int ctl_finish(ctl_run_t *r)
{
    char path[128];

    pump(r->done[0], POLLIN);
    pthread_join(r->th, NULL);
    close(r->done[0]);
    for (int i = 0; i < 2; i++) {
        dup2(r->saved[i], i + 1);
        close(r->saved[i]);
    }
    snprintf(path, sizeof path, "%s/ctl.1", tmp);
    r->out = read_text(path);
    snprintf(path, sizeof path, "%s/ctl.2", tmp);
    r->err = read_text(path);
    ck_assert(r->out && r->err);
    return r->code;
}

static void ctl_free(ctl_run_t *r)
{
    free(r->out);
    free(r->err);
}

/* Runs the CLI to the end; asserts the exit code and that out (or err) contains `needle`. */
static void ctl_expect(const char *const *args, int code, const char *out, const char *err)
{
    ctl_run_t r;
    int got;

    ctl_start(&r, args);
    got = ctl_finish(&r);
    ck_assert_msg(got == code, "%s: exit %d, not %d; out: %s err: %s", args[0], got, code, r.out,
                  r.err);
    ck_assert_msg(!out || strstr(r.out, out), "%s: stdout lacks \"%s\": %s", args[0], out, r.out);
    ck_assert_msg(!err || strstr(r.err, err), "%s: stderr lacks \"%s\": %s", args[0], err, r.err);
    ctl_free(&r);
}

START_TEST(cli_against_the_server)
{
    char o[200];
    ctl_run_t r;
    json_t *j;

    open_ctl();
    ctl_expect((const char *[]){"status", "--socket", sock_path, NULL}, 0, "SLOT", "");
    ctl_expect((const char *[]){"status", "--socket", sock_path, NULL}, 0, "(no workers)", NULL);
    ctl_expect((const char *[]){"recycle", "2", "--socket", sock_path, NULL}, 0,
               "recycling workers 2\n", NULL);
    ck_assert_int_eq(jint(last_req, "slot"), 2);
    ctl_expect((const char *[]){"recycle", "--socket", sock_path, "all", NULL}, 0,
               "recycling workers 1 2 3\n", NULL);
    ck_assert_str_eq(jstr(last_req, "slot"), "all");
    ctl_expect((const char *[]){"metrics", "--socket", sock_path, NULL}, 0,
               "# TYPE mv_workers gauge\nmv_workers 2\n", NULL);
    ctl_expect((const char *[]){"reload", "--socket", sock_path, NULL}, 1, NULL,
               "memvisor: no configuration file to reload\n");
    /* The path from the configuration. */
    snprintf(o, sizeof o, "control.socket=%s", sock_path);
    ctl_expect((const char *[]){"status", "-o", o, NULL}, 0, "totals:", NULL);
    /* --json: the reply itself. */
    ctl_start(&r, (const char *[]){"status", "--json", "--socket", sock_path, NULL});
    ck_assert_int_eq(ctl_finish(&r), 0);
    j = json_loads(r.out, 0, NULL);
    ck_assert(json_is_true(json_object_get(j, "ok")));
    ck_assert_str_eq(jstr(j, "cmd"), "status");
    json_decref(j);
    ctl_free(&r);
    /* stop: the server closes from inside the handler and the reply still arrives. */
    ctl_expect((const char *[]){"stop", "--socket", sock_path, NULL}, 0, "stopping\n", NULL);
    while (closed == 0)
        spin(-1, 0);
    ctl_expect((const char *[]){"status", "--socket", sock_path, NULL}, 3, NULL, sock_path);
}
END_TEST

START_TEST(cli_usage_and_config_errors)
{
    char o[200];

    ctl_expect((const char *[]){"frobnicate", NULL}, 2, NULL, "unknown command");
    ctl_expect((const char *[]){"status", "extra", NULL}, 2, NULL, "unexpected argument: extra");
    ctl_expect((const char *[]){"status", "--bogus", "x", NULL}, 2, NULL, "unknown option");
    ctl_expect((const char *[]){"status", "--socket", NULL}, 2, NULL, "missing value");
    ctl_expect((const char *[]){"recycle", NULL}, 2, NULL, "needs a worker slot");
    ctl_expect((const char *[]){"recycle", "0", NULL}, 2, NULL, "SLOT is a worker number");
    ctl_expect((const char *[]){"recycle", "2x", NULL}, 2, NULL, "SLOT is a worker number");
    ctl_expect((const char *[]){"recycle", "1", "2", NULL}, 2, NULL, "unexpected argument: 2");
    ctl_expect((const char *[]){"status", "-o", "control.socket=none", NULL}, 2, NULL,
               "no control socket");
    ctl_expect((const char *[]){"status", "-o", "nosuch.key=1", NULL}, 2, NULL, "error");
    ctl_expect((const char *[]){"status", "--help", NULL}, 0,
               "usage: memvisor status [--socket PATH]", NULL);
    /* Nobody there: exit 3 naming the path the configuration gave. */
    snprintf(o, sizeof o, "supervisor.state_dir=%s", tmp);
    ctl_expect((const char *[]){"status", "-o", o, NULL}, 3, NULL, "/control.sock");
    ctl_expect((const char *[]){"status", "-o", o, NULL}, 3, NULL, tmp);
    /* Something that is not a socket is not "a stale socket" of a memvisor that died. */
    snprintf(o, sizeof o,
             "memvisor status: %s is not a socket: give the path of memvisor's control "
             "socket\n",
             tmp);
    ctl_expect((const char *[]){"status", "--socket", tmp, NULL}, 3, NULL, o);
    ctl_expect((const char *[]){"status", "--socket", "", NULL}, 3, NULL,
               "memvisor status: the control socket path is empty");
}
END_TEST

/* A raw server that reads the request and answers `answer` (NULL: hangs up). */
static void raw_exchange(int lfd, const char *answer)
{
    char buf[256];
    ssize_t n;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    ck_assert_int_ge(fd, 0);
    n = recv(fd, buf, sizeof buf - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, "{\"cmd\":\"status\"}\n");
    if (answer)
        ck_assert_int_eq(send(fd, answer, strlen(answer), MSG_NOSIGNAL), (ssize_t)strlen(answer));
    close(fd);
}

START_TEST(cli_bad_replies)
{
    static const struct {
        const char *answer, *why;
    } cases[] = {
        {"hello\n", "bad reply from"},
        {"[1]\n", "not an object with a boolean \"ok\""},
        {"{\"ok\":1}\n", "not an object with a boolean \"ok\""},
        {"{\"ok\":true}", "closed the connection without a reply"}, /* no newline */
        {NULL, "closed the connection without a reply"},
    };
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    for (size_t i = 0; i < MV_ARRAY_LEN(cases); i++) {
        ctl_run_t r;

        ctl_start(&r, (const char *[]){"status", "--socket", sock_path, NULL});
        raw_exchange(lfd, cases[i].answer);
        ck_assert_int_eq(ctl_finish(&r), 3);
        ck_assert_msg(strstr(r.err, cases[i].why) && strstr(r.err, sock_path), "case %zu: %s", i,
                      r.err);
        ctl_free(&r);
    }
    close(lfd);
}
END_TEST

/* ---- printing for people ----------------------------------------------------------------- */

static char *print_of(const char *cmd, const char *reply)
{
    json_t *j = json_loads(reply, 0, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(j);
    mv_ctl_print(cmd, j, f);
    fclose(f);
    json_decref(j);
    return buf;
}

START_TEST(status_for_people)
{
    char *s = print_of(
        "status",
        "{\"ok\":true,\"cmd\":\"status\",\"run\":{\"id\":\"20261121T1449-77\",\"pid\":77,"
        "\"mode\":\"service\",\"uptime_s\":192.4,\"cgroup\":\"v2\",\"config\":null,"
        "\"reloads\":1},\"limits\":{\"memory_soft\":268435456,\"memory_hard\":0,"
        "\"max_tasks\":1000,\"max_lifetime_ms\":3600000},\"workers\":[{\"slot\":1,\"gen\":3,"
        "\"pid\":1234,\"state\":\"busy\",\"age_s\":1.25,\"tasks\":120,\"mem\":12897484,"
        "\"usage\":20000000,\"peak\":20971520,\"recycling\":true,\"reason\":\"soft_limit\"},"
        "{\"slot\":2,\"gen\":1,\"pid\":1240,\"state\":\"ready\",\"age_s\":7300,\"tasks\":5,"
        "\"mem\":512,\"peak\":null,\"recycling\":false,\"reason\":null}],\"totals\":{\"workers\":"
        "2,\"tasks\":1000,\"recycles\":{\"max_tasks\":3,\"soft_limit\":1},\"suspects\":0,"
        "\"queue\":0,\"in_flight\":2}}");
    char *t;

    ck_assert_msg(strstr(s, "run 20261121T1449-77  pid 77  service  up 3m12s  cgroup v2"), "%s", s);
    ck_assert_msg(strstr(s, "memory_soft 256.0 MiB  memory_hard off  max_tasks 1000  "
                            "max_lifetime 1h00m"),
                  "%s", s);
    ck_assert_msg(strstr(s, "SLOT  GEN      PID  STATE"), "%s", s);
    ck_assert_msg(strstr(s, "draining(soft_limit)"), "%s", s);
    ck_assert_msg(strstr(s, "12.3 MiB"), "%s", s);
    ck_assert_msg(strstr(s, "20.0 MiB"), "%s", s);
    ck_assert_msg(strstr(s, "2h01m"), "%s", s);
    ck_assert_msg(strstr(s, "1.2s") || strstr(s, "1.3s"), "%s", s);
    ck_assert_msg(strstr(s, "totals: 2 workers, 1000 tasks, 4 recycles (max_tasks 3, "
                            "soft_limit 1), 0 suspects, queue 0, in flight 2"),
                  "%s", s);
    free(s);

    /* Nothing but ok: every figure is "-". */
    s = print_of("status", "{\"ok\":true,\"workers\":[{\"slot\":\"x\",\"mem\":-1}]}");
    ck_assert_msg(strstr(s, "run -  pid -  -  up -  cgroup -"), "%s", s);
    ck_assert_msg(strstr(s, "totals: - workers, - tasks, - recycles, - suspects"), "%s", s);
    t = strstr(s, "\n   x");
    ck_assert_msg(t != NULL, "%s", s);
    free(s);

    s = print_of("reload", "{\"ok\":true,\"message\":\"reloaded /etc/m.ini\",\"changed\":"
                           "[\"limits.max_tasks\"],\"restart_needed\":[]}");
    ck_assert_str_eq(s, "reloaded /etc/m.ini\nchanged: limits.max_tasks\nrestart needed: (none)\n");
    free(s);
    s = print_of("metrics", "{\"ok\":true,\"text\":\"a 1\"}");
    ck_assert_str_eq(s, "a 1\n");
    free(s);
}
END_TEST

Suite *control_suite(void)
{
    Suite *s = suite_create("control");
    TCase *tc;

    tc = tcase_create("pure");
    tcase_add_test(tc, status_for_people);
    tcase_add_test(tc, path_resolution);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, good_request);
    tcase_add_test(tc, two_requests_on_one_connection);
    tcase_add_test(tc, garbage_keeps_the_connection);
    tcase_add_test(tc, over_long_request_is_refused_and_closed);
    tcase_add_test(tc, unterminated_last_request_at_eof);
    tcase_add_test(tc, connection_cap);
    tcase_add_test(tc, a_wait_for_a_slot_ends);
    tcase_add_test(tc, a_waiter_gets_the_slot_of_a_client_that_stops_reading);
    tcase_add_test(tc, requests_wait_while_replies_are_unread);
    tcase_add_test(tc, a_reply_past_the_queue_cap_closes_the_connection);
    tcase_add_test(tc, unread_replies_time_out);
    tcase_add_test(tc, non_readers_are_evicted_at_the_cap);
    tcase_add_test(tc, silent_connections_are_evicted_at_the_cap);
    tcase_add_test(tc, idle_connection_is_closed);
    tcase_add_test(tc, peer_leaving_mid_reply);
    tcase_add_test(tc, other_uid_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("socket_file");
    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, socket_file_is_0600);
    tcase_add_test(tc, stale_socket_is_replaced);
    tcase_add_test(tc, live_socket_is_refused);
    tcase_add_test(tc, regular_file_is_left_alone);
    tcase_add_test(tc, path_too_long_or_empty);
    tcase_add_test(tc, close_unlinks_and_calls_back);
    tcase_add_test(tc, close_spares_a_file_that_is_not_ours);
    tcase_add_test(tc, stop_inside_the_handler_still_replies);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, cli_against_the_server);
    tcase_add_test(tc, cli_usage_and_config_errors);
    tcase_add_test(tc, cli_bad_replies);
    suite_add_tcase(s, tc);
    return s;
}
