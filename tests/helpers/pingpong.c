/*
 * pingpong: the dispatch baseline of DESIGN.md §9, measured in the same run as memvisor.
 *
 *     pingpong [--count N] [--size BYTES] [--prefetch P] [--api]
 *
 * Forks one child over a socketpair and sends it N TASK messages (protocol.h framing,
 * BYTES of payload), keeping P in flight (1 = lock-step). The child answers each with DONE:
 * by default with bare recv/send (the floor any supervisor pays), with --api through
 * libmemvisor (the library's own cost). Prints one line of key=value:
 *
 *     mode=raw count=100000 size=16 prefetch=1 seconds=0.812 rate=123152
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

struct conn {
    int fd;
    uint8_t *buf;
    size_t cap, pos, len;
};

static void die(const char *what)
{
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: pingpong [--count N] [--size BYTES] [--prefetch P] [--api]\n");
    exit(2);
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;
    ssize_t r;

    while (n > 0) {
        r = send(fd, c, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("send");
        c += r;
        n -= (size_t)r;
    }
}

/* Next whole message from `dir` into *m (payload points into c->buf until the next call).
 * Returns 0 at EOF. */
static int recv_msg(struct conn *c, enum mvw_dir dir, struct mvw_msg *m)
{
    long n;
    ssize_t r;

    for (;;) {
        n = mvw_decode(c->buf + c->pos, c->len - c->pos, MVW_MAX_PAYLOAD, dir, m);
        if (n < 0) {
            fprintf(stderr, "pingpong: bad message: %s\n", strerror((int)-n));
            exit(1);
        }
        if (n > 0) {
            c->pos += (size_t)n;
            return 1;
        }
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("recv");
        if (r == 0)
            return 0;
        c->len += (size_t)r;
    }
}

/* The bare child: echoes every TASK as a DONE, one send per read. */
static void raw_child(int fd, size_t size)
{
    struct conn c = {fd, malloc(1 << 20), 1 << 20, 0, 0};
    uint8_t *out = malloc(1 << 20);
    size_t olen = 0;
    struct mvw_msg m;

    if (!c.buf || !out)
        die("malloc");
    while (recv_msg(&c, MVW_FROM_SUPERVISOR, &m)) {
        if (m.h.type == MVW_MSG_STOP)
            break;
        mvw_put_header(out + olen, MVW_MSG_DONE, 0, m.h.task, m.h.length);
        memcpy(out + olen + MVW_HEADER_SIZE, m.payload, m.h.length);
        olen += MVW_HEADER_SIZE + m.h.length;
        /* Answer what this read brought before reading again, as a worker would. */
        if (c.pos == c.len || olen + MVW_HEADER_SIZE + size > (1u << 20)) {
            send_all(fd, out, olen);
            olen = 0;
        }
    }
    _exit(0);
}

/* The libmemvisor child: the batch loop of worker.h. */
static void api_child(int fd)
{
    char env[16];
    mvw_task_t t;
    mvw_t *w;
    int rc;

    snprintf(env, sizeof env, "%d", fd);
    setenv(MVW_ENV_FD, env, 1);
    rc = mvw_open(&w);
    if (rc < 0) {
        fprintf(stderr, "pingpong: mvw_open: %s\n", mvw_strerror(rc));
        _exit(1);
    }
    while ((rc = mvw_next(w, &t)) > 0)
        if ((rc = mvw_done(w, t.data, t.len)) < 0)
            break;
    mvw_close(w);
    _exit(rc < 0 ? 1 : 0);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    unsigned long count = 100000, size = 16, prefetch = 1, sent = 0, got = 0;
    int api = 0, sv[2], status;
    struct conn c;
    struct mvw_msg m;
    uint8_t *msg;
    double t0, dt;
    pid_t pid;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--prefetch") && i + 1 < argc)
            prefetch = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--api"))
            api = 1;
        else
            usage();
    }
    if (count == 0 || prefetch == 0 || size > (512u << 10))
        usage();
    /* Both sides block in send when the window outgrows the socket buffers. */
    if (prefetch * (MVW_HEADER_SIZE + size) > (128u << 10)) {
        fprintf(stderr, "pingpong: prefetch x (16 + size) must stay within 128 KiB\n");
        return 2;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        if (api)
            api_child(sv[1]);
        raw_child(sv[1], size);
    }
    close(sv[1]);
    c = (struct conn){sv[0], malloc(1 << 20), 1 << 20, 0, 0};
    msg = calloc(1, MVW_HEADER_SIZE + size);
    if (!c.buf || !msg)
        die("malloc");
    if (api) {
        struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, (uint32_t)prefetch, MVW_MODE_BATCH};
        uint8_t g[MVW_HEADER_SIZE + sizeof go];

        if (!recv_msg(&c, MVW_FROM_WORKER, &m) || m.h.type != MVW_MSG_HELLO) {
            fprintf(stderr, "pingpong: no HELLO from the worker\n");
            return 1;
        }
        mvw_put_header(g, MVW_MSG_GO, 0, 0, sizeof go);
        memcpy(g + MVW_HEADER_SIZE, &go, sizeof go);
        send_all(c.fd, g, sizeof g);
    }
    memset(msg + MVW_HEADER_SIZE, 'x', size);
    t0 = now_s();
    while (got < count) {
        while (sent < count && sent - got < prefetch) {
            mvw_put_header(msg, MVW_MSG_TASK, 0, ++sent, (uint32_t)size);
            send_all(c.fd, msg, MVW_HEADER_SIZE + size);
        }
        if (!recv_msg(&c, MVW_FROM_WORKER, &m) || m.h.type != MVW_MSG_DONE || m.h.task != got + 1) {
            fprintf(stderr, "pingpong: bad or missing answer after %lu\n", got);
            return 1;
        }
        got++;
    }
    dt = now_s() - t0;
    mvw_put_header(msg, MVW_MSG_STOP, 0, 0, 0);
    send_all(c.fd, msg, MVW_HEADER_SIZE);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    printf("mode=%s count=%lu size=%lu prefetch=%lu seconds=%.3f rate=%.0f\n", api ? "api" : "raw",
           count, size, prefetch, dt, (double)count / dt);
    free(c.buf);
    free(msg);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
