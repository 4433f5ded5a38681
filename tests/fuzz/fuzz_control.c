/*
 * libFuzzer target for the control socket's server (supervisor/control.c): the real code, a
 * real Unix socket and a real libuv loop; a stub handler mimics the supervisor's commands.
 *
 * Input: an optional options byte (any byte below 0x20 other than \t \n \r), then up to four
 * clients' byte streams separated by "\n\x02\n". Options: bits 0-1 the connection cap (0-3;
 * default 32), bit 2 clients read nothing until every client has sent everything, bit 3 tiny
 * reply-queue bounds. Each client sends its bytes, then EOF. A `stop` closes the server from
 * inside the handler, as the supervisor does; it is opened again for the next input.
 *
 * Contract checked: every connection ends (the server closes it: after EOF, an unread-reply
 * stall, a refusal, a wait that ends, or the server's close), and every connection is freed
 * once the clients are gone. Slow inputs are bounded by short stall and wait timers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "control.h"
#include "log.h"

#define MAX_CLIENTS 4

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static uv_loop_t loop;
static mv_control_t ctl;
static mv_log_t lg;
static char path[108];
static int closed; /* mv_control_close callbacks */

static void closed_cb(void *arg)
{
    (void)arg;
    closed = 1;
}

static json_t *handler(void *arg, const char *cmd, json_t *req, char *err, size_t errlen)
{
    json_t *slot = json_object_get(req, "slot");

    (void)arg;
    if (strcmp(cmd, "status") == 0)
        return json_pack("{s:i, s:[]}", "workers", 2, "slots");
    if (strcmp(cmd, "metrics") == 0)
        return json_pack("{s:s}", "text", "# TYPE mv_workers gauge\nmv_workers 2\n");
    if (strcmp(cmd, "recycle") == 0) {
        if (json_is_string(slot) && strcmp(json_string_value(slot), "all") == 0)
            return json_object();
        if (json_is_integer(slot) && json_integer_value(slot) >= 1 && json_integer_value(slot) <= 4)
            return json_pack("{s:[I]}", "workers", json_integer_value(slot));
        snprintf(err, errlen, "recycle takes \"slot\": a number or \"all\"");
        return NULL;
    }
    if (strcmp(cmd, "stop") == 0) {
        mv_control_close(&ctl, closed_cb, NULL);
        return json_object();
    }
    if (strcmp(cmd, "bad") == 0)
        return json_array(); /* a handler bug the module must survive */
    snprintf(err, errlen, "unknown command \"%.40s\"", cmd);
    return NULL;
}

static void open_server(void)
{
    char why[256];

    if (mv_control_open(&ctl, &loop, &lg, path, handler, NULL, why, sizeof why) < 0) {
        fprintf(stderr, "fuzz_control: %s\n", why);
        abort();
    }
}

static void remove_socket(void)
{
    unlink(path);
}

static void init_once(void)
{
    if (uv_loop_init(&loop) < 0 || mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_DEBUG, "/dev/null") < 0)
        abort();
    snprintf(path, sizeof path, "/tmp/fuzz-control-%d.sock", (int)getpid());
    unlink(path);
    atexit(remove_socket); /* libFuzzer ends with exit(), crashes included */
    open_server();
}

typedef struct client {
    int fd;
    const uint8_t *data;
    size_t len, off;
    bool shut, eof;
} client_t;

/* Runs the loop once, then waits (at most 10 ms) for it or a client. */
static void turn(client_t *cl, int ncl)
{
    struct pollfd p[MAX_CLIENTS + 1];
    int t;

    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < ncl; i++)
        p[i] = (struct pollfd){.fd = cl[i].eof ? -1 : cl[i].fd, .events = POLLIN};
    p[ncl] = (struct pollfd){.fd = uv_backend_fd(&loop), .events = POLLIN};
    t = uv_backend_timeout(&loop);
    poll(p, (nfds_t)ncl + 1, t < 0 || t > 10 ? 10 : t);
}

/* Sends what the socket takes; EOF once everything is sent (or the server left). */
static void client_send(client_t *c)
{
    while (!c->shut && c->off < c->len) {
        ssize_t w = send(c->fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w > 0)
            c->off += (size_t)w;
        else if (errno == EAGAIN)
            return;
        else
            c->off = c->len; /* EPIPE, ECONNRESET: the server closed us */
    }
    if (!c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = true;
    }
}

static void client_read(client_t *c)
{
    char buf[65536];

    while (!c->eof) {
        ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);

        if (r > 0)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        c->eof = true; /* EOF, or ECONNRESET */
    }
}

static int split(const uint8_t *d, size_t n, client_t *cl)
{
    int k = 0;

    while (k < MAX_CLIENTS) {
        const uint8_t *sep = k < MAX_CLIENTS - 1 ? memmem(d, n, "\n\x02\n", 3) : NULL;
        size_t len = sep ? (size_t)(sep - d) + 1 : n;

        cl[k++] = (client_t){.fd = -1, .data = d, .len = len};
        if (!sep)
            break;
        d += len + 2;
        n -= len + 2;
    }
    return k;
}

/* The server's bounds for this input: the defaults, or what the options byte says. Stall and
 * wait timers are short either way, so stalled inputs end quickly. */
static void set_options(int o)
{
    ctl.max_conns = o < 0 ? MV_CONTROL_MAX_CONNS : o & 3;
    ctl.stall_ms = ctl.wait_ms = 5;
    ctl.queue_pause = o >= 0 && (o & 8) ? 64 : MV_CONTROL_QUEUE_PAUSE;
    ctl.queue_max = o >= 0 && (o & 8) ? 4096 : MV_CONTROL_QUEUE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int init;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    client_t cl[MAX_CLIENTS];
    bool lazy = false, done;
    struct timespec t0, now;
    int ncl;

    if (!init) {
        init = 1;
        init_once();
    }
    set_options(-1);
    if (n > 0 && d[0] < 0x20 && d[0] != '\t' && d[0] != '\n' && d[0] != '\r') {
        set_options(d[0]);
        lazy = (d[0] & 4) != 0;
        d++;
        n--;
    }
    ncl = split(d, n, cl);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < ncl; i++) {
        cl[i].fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (cl[i].fd < 0 || connect(cl[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            abort();
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        bool sent = true;

        for (int i = 0; i < ncl; i++) {
            client_send(&cl[i]);
            sent &= cl[i].shut;
        }
        turn(cl, ncl);
        done = true;
        for (int i = 0; i < ncl; i++) {
            if (!lazy || sent)
                client_read(&cl[i]);
            done &= cl[i].eof;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 10)
            abort(); /* a connection the server never ended */
    } while (!done);
    for (int i = 0; i < ncl; i++)
        close(cl[i].fd);
    for (int i = 0; i < 1000 && ctl.nconns > 0; i++)
        turn(cl, 0);
    if (ctl.nconns != 0)
        abort(); /* a connection was never freed */
    if (ctl.closing) {
        for (int i = 0; i < 1000 && !closed; i++)
            turn(cl, 0);
        if (!closed)
            abort(); /* the close callback never ran */
        closed = 0;
        open_server();
    }
    return 0;
}
