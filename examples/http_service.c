/*
 * http_service: a small single-threaded HTTP/1.1 server that embeds libmemvisor, to watch
 * memvisor measure per-request memory and recycle a leaking service without losing requests.
 *
 *     memvisor run -c conf/service.ini           (2 workers on 127.0.0.1:8080)
 *     curl http://127.0.0.1:8080/leak?kb=256
 *
 *   GET /       a short index
 *   GET /ok     allocates, touches and frees --leak-kb KiB (?kb=N overrides): no leak
 *   GET /leak   allocates, touches and keeps --leak-kb KiB (?kb=N overrides): a leak
 *   ?ms=N       (both) holds the request N ms with the memory allocated: a slow request
 *
 * Sockets. It never binds on its own: memvisor binds `[service] listen` once and passes the
 * sockets to every worker by the systemd convention (LISTEN_PID, LISTEN_FDS, fds from 3,
 * LISTEN_FDNAMES), so the same binary runs under systemd-socket-activate or systemd too.
 * `--listen HOST:PORT` binds one socket itself, for running it by hand.
 *
 * Requests. They are handled one at a time (parse a complete request, mvw_begin with the
 * endpoint as the kind, handle it, mvw_end, queue the response), so memvisor's readings at
 * BEGIN and END belong to exactly one request. Outside memvisor (mvw_open says -ENOENT) it
 * serves the same, unsupervised. Each body names the process that served it, as in
 * `ok pid=123 requests=456 kb=64 leaked_kb=0`.
 *
 * Drain. When memvisor sends STOP (seen through mvw_fd/mvw_poll), on SIGTERM/SIGINT, or when
 * the channel dies, the server closes its copies of the listening sockets (memvisor keeps the
 * originals, so the other workers and the replacement go on accepting), answers requests
 * already arriving on open connections with `Connection: close`, closes keep-alive
 * connections that stay idle DRAIN_IDLE_MS (a request already on the wire is still served;
 * each such close is a line on stderr), and exits 0 once no connection is left (1 when the
 * channel failed).
 *
 * Prefork. With --children N it is a master, as gunicorn's arbiter is: it forks N servers
 * that share the listening sockets, and forks a new one whenever one exits. The master serves
 * nothing and does not talk to memvisor (run it as protocol none); a child that gets SIGTERM
 * drains as above. memvisor's `[recycle] target = child` tells the child that grew to stop,
 * and this master replaces it by a fork. SIGTERM or SIGINT to the master: passed on to the
 * children, which drain; the master exits 0 once they are gone.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

#define IN_CAP         16384       /* a whole request (headers and body) must fit */
#define HEAD_MAX       8192        /* request line and headers; more is a 431 */
#define OUT_HIGH       (64u << 10) /* unsent output above which pipelined requests wait */
#define MAX_LISTEN     16
#define ACCEPT_BURST   64
#define MAX_KB         65536 /* largest ?kb= (64 MiB per request) */
#define MAX_HOLD_MS    60000 /* largest ?ms= (how long a request holds its memory) */
#define DRAIN_IDLE_MS  200   /* drain: an idle connection is closed after this */
#define DRAIN_PART_MS  2000  /* drain: a half-received request gets this long */
#define LINGER_MS      1000  /* after the last response, input is read and dropped this long */
#define IDLE_MS        60000 /* any connection idle this long is closed */
#define ACCEPT_WAIT_MS 100   /* accept4 failed (out of fds): accepting pauses this long */

enum conn_state { C_OPEN, C_CLOSING, C_LINGER }; /* serving; last response queued; FIN sent */

struct conn {
    int fd;
    enum conn_state state;
    int peer_eof;      /* the client shut its side: answer what is buffered, then close */
    long long last_io; /* ms, last byte read or written */
    size_t in_pos, in_len;
    char *out;
    size_t out_pos, out_len, out_cap;
    char in[IN_CAP];
};

struct request {
    char head[HEAD_MAX + 1]; /* a NUL-terminated copy of the headers, cut into strings */
    const char *method, *target;
    int keep_alive;
    size_t length; /* bytes of input the request takes, body included */
};

struct leak {
    struct leak *next;
    char data[];
};

struct server {
    int lfd[MAX_LISTEN];
    int nlisten;
    struct conn **conns;
    size_t nconns, cap;
    struct pollfd *pfd;
    size_t pfd_cap;
    mvw_t *w;     /* NULL when unsupervised, or once the channel failed */
    int chan_err; /* the channel failed: exit 1 after the drain */
    int draining;
    long long drain_start, accept_after;
    char names[256];    /* LISTEN_FDNAMES, for the start message */
    size_t leak_kb;     /* --leak-kb */
    struct leak *leaks; /* never freed: the leak */
    size_t leaked_kb;
    unsigned long long requests;
};

static volatile sig_atomic_t got_signal;
static sigset_t stop_signals; /* SIGTERM and SIGINT, blocked outside ppoll */

static void on_signal(int sig)
{
    got_signal = sig;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Closes our copies of the listening sockets and stops taking new keep-alive requests. */
static void start_drain(struct server *s)
{
    if (s->draining)
        return;
    s->draining = 1;
    s->drain_start = now_ms();
    for (int i = 0; i < s->nlisten; i++)
        close(s->lfd[i]);
    s->nlisten = 0;
}

/* The channel is unusable (-EPIPE: memvisor is gone): stop reporting, drain, exit 1. */
static void channel_failed(struct server *s, int err)
{
    fprintf(stderr, "http_service: memvisor channel: %s; draining\n", mvw_strerror(err));
    mvw_close(s->w);
    s->w = NULL;
    s->chan_err = 1;
    start_drain(s);
}

/* ---- sockets ---------------------------------------------------------------------------- */

/* Non-blocking and close-on-exec, and it must be a listening socket. 0 or -1. */
static int prepare_listener(int fd)
{
    int on = 0, fl = fcntl(fd, F_GETFL);
    socklen_t len = sizeof on;

    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0 || !on) {
        fprintf(stderr, "http_service: fd %d is not a listening socket\n", fd);
        return -1;
    }
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        fprintf(stderr, "http_service: fcntl(%d): %s\n", fd, strerror(errno));
        return -1;
    }
    return 0;
}

/* sd_listen_fds(1): the sockets are ours when LISTEN_PID is our pid; the variables are unset
 * so that our own children would not take them. Returns the count, 0 when none, -1. */
static int listen_fds(struct server *s)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    char *end;
    long n;

    if (!pid || !fds || strtol(pid, &end, 10) != (long)getpid() || *end) {
        n = 0;
    } else {
        n = strtol(fds, &end, 10);
        if (*end || n < 1 || n > MAX_LISTEN) {
            fprintf(stderr, "http_service: bad LISTEN_FDS=%s (1..%d)\n", fds, MAX_LISTEN);
            return -1;
        }
        snprintf(s->names, sizeof s->names, "%s", names ? names : "");
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES"); /* names only label the sockets: all are served alike */
    for (int i = 0; i < n; i++) {
        if (prepare_listener(3 + i) < 0)
            return -1;
        s->lfd[s->nlisten++] = 3 + i;
    }
    return (int)n;
}

/* --listen HOST:PORT, for running by hand. 0 or -1. */
static int listen_on(struct server *s, const char *hostport)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *ai;
    const char *colon = strrchr(hostport, ':');
    char host[256];
    int fd, on = 1, rc;

    if (!colon || colon - hostport >= (long)sizeof host) {
        fprintf(stderr, "http_service: --listen wants HOST:PORT, not '%s'\n", hostport);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    rc = getaddrinfo(*host ? host : NULL, colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "http_service: %s: %s\n", hostport, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "http_service: listen on %s: %s\n", hostport, strerror(errno));
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    freeaddrinfo(ai);
    s->lfd[s->nlisten++] = fd;
    return prepare_listener(fd);
}

/* ---- HTTP ------------------------------------------------------------------------------- */

/* Whether the comma-separated header value `v` holds `token` (case-insensitive). */
static int has_token(const char *v, const char *token)
{
    size_t n = strlen(token);

    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        if (!strncasecmp(v, token, n) && strchr(" \t,", v[n]))
            return 1;
        v += strcspn(v, ",");
    }
    return 0;
}

/*
 * Parses the request at the start of buf[0..len). 1 with *rq filled, 0 when it is not all
 * there yet, or minus the HTTP status to answer before closing (400, 413, 431, 501).
 */
static int parse_request(const char *buf, size_t len, struct request *rq)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    char *line, *next, *v, *sp;
    int http10, close_tok = 0, keep_tok = 0;
    unsigned long long clen = 0;
    size_t hlen;

    if (!end)
        return len >= HEAD_MAX ? -431 : 0;
    hlen = (size_t)(end - buf) + 4;
    if (hlen > HEAD_MAX)
        return -431;
    memcpy(rq->head, buf, hlen - 4);
    rq->head[hlen - 4] = '\0';

    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    line = rq->head;
    next = strstr(line, "\r\n");
    if (next) {
        *next = '\0';
        next += 2;
    }
    rq->method = line;
    sp = strchr(line, ' ');
    if (!sp || sp == line)
        return -400;
    *sp = '\0';
    rq->target = sp + 1;
    sp = strchr(sp + 1, ' ');
    if (!sp || rq->target[0] != '/')
        return -400;
    *sp++ = '\0';
    if (strncmp(sp, "HTTP/1.", 7) || !isdigit((unsigned char)sp[7]) || sp[8])
        return -400;
    http10 = sp[7] == '0';

    for (line = next; line; line = next) {
        next = strstr(line, "\r\n");
        if (next) {
            *next = '\0';
            next += 2;
        }
        v = strchr(line, ':');
        if (!v || v == line || line[0] == ' ' || line[0] == '\t') /* obs-fold is refused */
            return -400;
        *v++ = '\0';
        v += strspn(v, " \t");
        if (!strcasecmp(line, "Connection")) {
            close_tok |= has_token(v, "close");
            keep_tok |= has_token(v, "keep-alive");
        } else if (!strcasecmp(line, "Content-Length")) {
            char *e;
            if (!isdigit((unsigned char)*v))
                return -400;
            clen = strtoull(v, &e, 10);
            if (*e && !strchr(" \t", *e))
                return -400;
        } else if (!strcasecmp(line, "Transfer-Encoding")) {
            return -501; /* no chunked bodies: nothing here takes a body */
        }
    }
    if (clen > IN_CAP - hlen)
        return -413;
    rq->length = hlen + (size_t)clen;
    if (rq->length > len)
        return 0;
    rq->keep_alive = http10 ? keep_tok && !close_tok : !close_tok;
    return 1;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    default: return "Internal Server Error";
    }
}

/* An origin server with a clock must send Date (RFC 9110 §6.6.1); formatted once a second. */
static const char *http_date(void)
{
    static char buf[40];
    static time_t last;
    time_t t = time(NULL);
    struct tm tm;

    if (t != last && gmtime_r(&t, &tm)) {
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = t;
    }
    return buf;
}

/* Appends bytes to the connection's output. 0 or -ENOMEM. */
static int out_add(struct conn *c, const char *p, size_t n)
{
    if (c->out_pos == c->out_len)
        c->out_pos = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *o;
        while (cap < c->out_len + n)
            cap *= 2;
        o = realloc(c->out, cap);
        if (!o)
            return -ENOMEM;
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* Queues one response. `keep` = 0 adds Connection: close (HTTP/1.0 clients get keep-alive
 * spelled out, harmless for 1.1 ones). HEAD gets the headers only. */
static int respond(struct conn *c, int status, int keep, int head, const char *body, int blen)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %d\r\n%s%s\r\n",
                     status, reason(status), http_date(), blen,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n");

    if (out_add(c, hdr, (size_t)n) < 0 || (!head && out_add(c, body, (size_t)blen) < 0))
        return -ENOMEM;
    return 0;
}

/* ---- endpoints -------------------------------------------------------------------------- */

/* NAME=N in the query (name given with its '='), else `dflt`. -1 when N is not a number in
 * 0..max. */
static long query_num(const char *query, const char *name, unsigned long max, long dflt)
{
    size_t len = strlen(name);
    const char *p = query;
    char *end;
    unsigned long v;

    while (p) {
        if (!strncmp(p, name, len)) {
            if (!isdigit((unsigned char)p[len]))
                return -1;
            v = strtoul(p + len, &end, 10);
            return (*end && *end != '&') || v > max ? -1 : (long)v;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return dflt;
}

/* Allocates, touches and keeps kb KiB, holding the request ms milliseconds with it. 0 or
 * -ENOMEM. */
static int do_leak(struct server *s, size_t kb, long ms)
{
    struct leak *l;

    if (!kb)
        return 0;
    l = malloc(sizeof *l + kb * 1024);
    if (!l)
        return -ENOMEM;
    memset(l->data, 0xa5, kb * 1024);
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
    l->next = s->leaks;
    s->leaks = l;
    s->leaked_kb += kb;
    return 0;
}

/* Allocates, touches and frees kb KiB, holding the request ms milliseconds with it. 0 or
 * -ENOMEM. */
static int do_churn(size_t kb, long ms)
{
    char *p;

    if (!kb)
        return 0;
    p = malloc(kb * 1024);
    if (!p)
        return -ENOMEM;
    memset(p, 0x5a, kb * 1024);
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
    __asm__ volatile("" : : "r"(p) : "memory"); /* really touched, really freed */
    free(p);
    return 0;
}

/* The kind memvisor attributes the request to: the endpoint. */
static const char *endpoint(const char *path)
{
    if (!strcmp(path, "/"))
        return "index";
    if (!strcmp(path, "/ok") || !strcmp(path, "/leak"))
        return path + 1;
    return "notfound";
}

/* Handles one parsed request between mvw_begin and mvw_end, and queues its response. */
static int handle(struct server *s, struct conn *c, struct request *rq, int keep)
{
    char path[HEAD_MAX], body[256];
    const char *query = strchr(rq->target, '?'), *kind;
    int head = !strcmp(rq->method, "HEAD"), status = 200, n, rc;
    long kb = 0, ms = 0;

    snprintf(path, sizeof path, "%.*s", query ? (int)(query - rq->target) : HEAD_MAX, rq->target);
    kind = endpoint(path);
    if (s->w && (rc = mvw_begin(s->w, kind)) < 0)
        channel_failed(s, rc);
    s->requests++;

    if (!head && strcmp(rq->method, "GET")) {
        status = 405;
        n = snprintf(body, sizeof body, "method not allowed\n");
    } else if (!strcmp(kind, "index")) {
        n = snprintf(body, sizeof body,
                     "http_service pid=%d requests=%llu\n"
                     "GET /ok[?kb=N]    allocate and free N KiB (default %zu)\n"
                     "GET /leak[?kb=N]  allocate and keep N KiB (default %zu)\n",
                     (int)getpid(), s->requests, s->leak_kb, s->leak_kb);
    } else if (!strcmp(kind, "notfound")) {
        status = 404;
        n = snprintf(body, sizeof body, "not found pid=%d\n", (int)getpid());
    } else if ((kb = query_num(query ? query + 1 : NULL, "kb=", MAX_KB, (long)s->leak_kb)) < 0 ||
               (ms = query_num(query ? query + 1 : NULL, "ms=", MAX_HOLD_MS, 0)) < 0) {
        status = 400;
        n = snprintf(body, sizeof body, "kb must be a number in 0..%d, ms in 0..%d\n", MAX_KB,
                     MAX_HOLD_MS);
    } else if ((kind[0] == 'l' ? do_leak(s, (size_t)kb, ms) : do_churn((size_t)kb, ms)) < 0) {
        status = 500;
        n = snprintf(body, sizeof body, "out of memory\n");
    } else {
        n = snprintf(body, sizeof body, "%s pid=%d requests=%llu kb=%ld leaked_kb=%zu\n", kind,
                     (int)getpid(), s->requests, kb, s->leaked_kb);
    }

    /* Client errors are the service working; only a server error fails the request. */
    if (s->w && (rc = mvw_end(s->w, status >= 500 ? status : 0)) < 0)
        channel_failed(s, rc);
    return respond(c, status, keep, head, body, n);
}

/* ---- connections ------------------------------------------------------------------------ */

/* Answers every complete request in the input, in order, while the output is not backed up.
 * Returns -1 on ENOMEM (close), 1 when it stopped on backed-up output, else 0. */
static int conn_process(struct server *s, struct conn *c)
{
    static struct request rq; /* 8 KiB: not on the stack of every call */
    int rc, keep;

    while (c->state == C_OPEN) {
        if (c->out_len - c->out_pos >= OUT_HIGH)
            return 1;
        while (c->in_len - c->in_pos >= 2 && !memcmp(c->in + c->in_pos, "\r\n", 2))
            c->in_pos += 2; /* RFC 9112 §2.2: blank lines before a request are ignored */
        rc = parse_request(c->in + c->in_pos, c->in_len - c->in_pos, &rq);
        if (rc == 0) {
            if (c->peer_eof) /* a half request can never complete */
                c->state = C_CLOSING;
            break;
        }
        if (rc < 0) {
            c->in_pos = c->in_len = 0;
            c->state = C_CLOSING;
            if (respond(c, -rc, 0, 0, reason(-rc), (int)strlen(reason(-rc))) < 0)
                return -1;
            break;
        }
        c->in_pos += rq.length;
        keep = rq.keep_alive && !s->draining && !c->peer_eof;
        if (!keep)
            c->state = C_CLOSING;
        if (handle(s, c, &rq, keep) < 0)
            return -1;
    }
    if (c->in_pos == c->in_len)
        c->in_pos = c->in_len = 0;
    return 0;
}

/* Sends what it can. After the last response: FIN, then linger. 0, or -1 to close. */
static int conn_flush(struct conn *c, long long now)
{
    ssize_t r;

    while (c->out_pos < c->out_len) {
        r = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        c->out_pos += (size_t)r;
        c->last_io = now;
    }
    if (c->state != C_CLOSING)
        return 0;
    if (c->peer_eof)
        return -1;
    /* Closing with unread input would send RST, which can destroy the response on its way
     * to the client: shut our side and read until the client closes (or LINGER_MS). */
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->last_io = now;
    return 0;
}

/* Processes and sends until neither makes progress. 0, or -1 to close. */
static int conn_run(struct server *s, struct conn *c, long long now)
{
    int rc;

    do {
        rc = conn_process(s, c);
        if (rc < 0 || conn_flush(c, now) < 0)
            return -1;
    } while (rc == 1 && c->out_len - c->out_pos < OUT_HIGH);
    return 0;
}

/* The socket is readable (or hung up). 0, or -1 to close. */
static int conn_read(struct server *s, struct conn *c, long long now)
{
    char junk[4096];
    ssize_t r;

    if (c->state == C_LINGER) {
        while ((r = recv(c->fd, junk, sizeof junk, 0)) > 0)
            ;
        return r < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    }
    if (c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    do
        r = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EAGAIN ? 0 : -1;
    if (r == 0)
        c->peer_eof = 1;
    c->in_len += (size_t)r;
    c->last_io = now;
    return conn_run(s, c, now);
}

static short conn_events(const struct conn *c)
{
    size_t pending = c->out_len - c->out_pos;
    short ev = pending ? POLLOUT : 0;

    if (c->state == C_LINGER || (c->state == C_OPEN && !c->peer_eof &&
                                 c->in_len - c->in_pos < IN_CAP && pending < OUT_HIGH))
        ev |= POLLIN;
    return ev;
}

/* Whether a connection has been idle long enough to close (see the top comment). */
static int conn_expired(const struct server *s, const struct conn *c, long long now)
{
    long long since = c->last_io > s->drain_start ? c->last_io : s->drain_start;

    if (c->state == C_LINGER)
        return now - c->last_io >= LINGER_MS;
    if (s->draining && c->state == C_OPEN && c->out_pos == c->out_len)
        return now - since >= (c->in_len > c->in_pos ? DRAIN_PART_MS : DRAIN_IDLE_MS);
    return now - c->last_io >= IDLE_MS;
}

static void conn_close(struct server *s, size_t i)
{
    close(s->conns[i]->fd);
    free(s->conns[i]->out);
    free(s->conns[i]);
    s->conns[i] = NULL;
}

/* Takes what connections are waiting on one listening socket. */
static void accept_some(struct server *s, int lfd, long long now)
{
    for (int k = 0; k < ACCEPT_BURST; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if (err != EAGAIN) { /* EMFILE and the like: let fds free up, do not spin */
                fprintf(stderr, "http_service: accept4: %s\n", strerror(err));
                s->accept_after = now + ACCEPT_WAIT_MS;
            }
            return; /* EAGAIN: another worker took it, or the queue is empty */
        }
        if (s->nconns == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 64;
            struct conn **a = realloc(s->conns, cap * sizeof *a);
            if (!a) {
                close(fd);
                return;
            }
            s->conns = a;
            s->cap = cap;
        }
        c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->last_io = now;
        s->conns[s->nconns++] = c;
    }
}

/* ---- main loop -------------------------------------------------------------------------- */

/* One poll round: memvisor's channel, then connections, then listening sockets. */
static int serve_once(struct server *s, const sigset_t *mask)
{
    size_t nfd = 0, base, nc = s->nconns, j = 0;
    int listening = !s->draining && now_ms() >= s->accept_after;
    struct timespec ts = {0, (s->draining ? 20 : 500) * 1000000L};
    long long now;

    if (s->pfd_cap < 1 + MAX_LISTEN + nc) {
        struct pollfd *p = realloc(s->pfd, (1 + MAX_LISTEN + nc) * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->pfd = p;
        s->pfd_cap = 1 + MAX_LISTEN + nc;
    }
    s->pfd[nfd++] = (struct pollfd){.fd = s->w ? mvw_fd(s->w) : -1, .events = POLLIN};
    base = nfd;
    for (size_t i = 0; i < nc; i++)
        s->pfd[nfd++] = (struct pollfd){.fd = s->conns[i]->fd, .events = conn_events(s->conns[i])};
    for (int i = 0; listening && i < s->nlisten; i++)
        s->pfd[nfd++] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};

    /* ppoll with the signals unblocked only while waiting. It delivers a pending signal only
     * when it waits: a server with a ready fd at every round (busy under constant load)
     * never saw SIGTERM, and served on with keep-alive -- a leaking worker memvisor stopped
     * grew on to its hard limit (1.2 GB in 2.5 s under wrk). A pending one is taken here. */
    if (ppoll(s->pfd, nfd, &ts, mask) < 0 && errno != EINTR)
        return -errno;
    now = now_ms();
    if (got_signal || sigtimedwait(&stop_signals, NULL, &(struct timespec){0, 0}) > 0)
        start_drain(s);
    if (s->w && s->pfd[0].revents) {
        int rc = mvw_poll(s->w);
        if (rc < 0)
            channel_failed(s, rc);
        else if (mvw_stop_requested(s->w))
            start_drain(s);
    }
    for (size_t i = 0; i < nc; i++) {
        struct conn *c = s->conns[i];
        short re = s->pfd[base + i].revents;
        int rc = 0;

        if (re & (POLLIN | POLLHUP | POLLERR))
            rc = conn_read(s, c, now);
        if (rc == 0 && (re & POLLOUT))
            rc = conn_run(s, c, now);
        if (rc == 0 && s->draining && c->state == C_OPEN && conn_expired(s, c, now)) {
            int unread = 0;
            if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0)
                continue; /* a request came since the poll: served next round */
            /* No request is lost, but a client about to reuse the connection finds it closed
             * (wrk counts a "read" error): said, so that a test can tell. */
            if (c->in_len == c->in_pos)
                fprintf(stderr,
                        "http_service: pid %d draining: closed an idle keep-alive connection\n",
                        (int)getpid());
        }
        if (rc < 0 || conn_expired(s, c, now))
            conn_close(s, i);
    }
    for (size_t i = 0; i < nc; i++) /* drop closed ones, keep the order */
        if (s->conns[i])
            s->conns[j++] = s->conns[i];
    s->nconns = j; /* accepting comes after: no connection was added this round yet */
    for (size_t k = base + nc; listening && k < nfd; k++)
        if (s->pfd[k].revents && !s->draining)
            accept_some(s, s->pfd[k].fd, now);
    return 0;
}

/* ---- prefork master ---------------------------------------------------------------------- */

#define MAX_CHILDREN   64
#define RESPAWN_MIN_MS 100 /* a child that died younger than this is replaced this much later */

/* Forks one server; 0 in the child, its pid or -1 in the master. */
static pid_t fork_child(const sigset_t *orig)
{
    pid_t pid = fork();

    if (pid == 0)
        sigprocmask(SIG_SETMASK, orig, NULL);
    return pid;
}

/* The master: returns in a child only (it goes on to serve); the master exits here. */
static void run_master(int n, const sigset_t *orig)
{
    pid_t kids[MAX_CHILDREN] = {0};
    long long born[MAX_CHILDREN] = {0}, wait_until = 0;
    int live = 0, stopping = 0, sig;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        struct timespec ts = {0, 20 * 1000000L};
        for (int i = 0; i < n && !stopping && now_ms() >= wait_until; i++) {
            if (kids[i])
                continue;
            if ((kids[i] = fork_child(orig)) == 0)
                return;
            if (kids[i] < 0) {
                kids[i] = 0;
                wait_until = now_ms() + RESPAWN_MIN_MS;
                continue;
            }
            born[i] = now_ms();
            live++;
        }
        if (stopping && live == 0)
            exit(0);
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            stopping = 1;
            for (int i = 0; i < n; i++)
                if (kids[i])
                    kill(kids[i], SIGTERM);
        }
        for (pid_t pid; (pid = waitpid(-1, NULL, WNOHANG)) > 0;)
            for (int i = 0; i < n; i++)
                if (kids[i] == pid) {
                    kids[i] = 0;
                    live--;
                    if (now_ms() - born[i] < RESPAWN_MIN_MS)
                        wait_until = now_ms() + RESPAWN_MIN_MS;
                }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: http_service [--leak-kb N] [--start-ms N] [--listen HOST:PORT] "
               "[--children N]\n"
               "  --leak-kb N         KiB per /leak and /ok request (default 64)\n"
               "  --start-ms N        busy N ms before serving, as an application's start-up\n"
               "                      (imports, configuration) would be (default 0)\n"
               "  --listen HOST:PORT  bind this socket when not given sockets by LISTEN_FDS\n"
               "  --children N        a prefork master: N servers, each replaced when it exits\n"
               "Run it as a memvisor service: memvisor run -c conf/service.ini\n");
}

int main(int argc, char **argv)
{
    struct server s = {.leak_kb = 64};
    struct sigaction sa = {.sa_handler = on_signal};
    char *listen_arg = NULL, *end;
    long start_ms = 0, children = 0;
    sigset_t orig;
    int rc, n;

    /* Buffers of 32 KiB and more are mmap'd and returned on free: otherwise /ok's freed
     * scratch buffer would be reused by the next /leak, and memory would grow during the
     * requests that do not leak (glibc's threshold also moves at run time). */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024);

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--leak-kb") && i + 1 < argc) {
            s.leak_kb = strtoul(argv[++i], &end, 10);
            if (!isdigit((unsigned char)*argv[i]) || *end || s.leak_kb > MAX_KB) {
                fprintf(stderr, "http_service: --leak-kb wants 0..%d\n", MAX_KB);
                return MVW_EXIT_FATAL;
            }
        } else if (!strcmp(argv[i], "--start-ms") && i + 1 < argc) {
            start_ms = strtol(argv[++i], &end, 10);
            if (!isdigit((unsigned char)*argv[i]) || *end || start_ms > 600000) {
                fprintf(stderr, "http_service: --start-ms wants 0..600000\n");
                return MVW_EXIT_FATAL;
            }
        } else if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
            listen_arg = argv[++i];
        } else if (!strcmp(argv[i], "--children") && i + 1 < argc) {
            children = strtol(argv[++i], &end, 10);
            if (!isdigit((unsigned char)*argv[i]) || *end || children > MAX_CHILDREN) {
                fprintf(stderr, "http_service: --children wants 0..%d\n", MAX_CHILDREN);
                return MVW_EXIT_FATAL;
            }
        } else {
            fprintf(stderr, "http_service: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return MVW_EXIT_FATAL; /* a bad command line: memvisor must not respawn it */
        }
    }
    /* A start-up that works (a sleep would look like a server waiting for requests). */
    for (long long until = now_ms() + start_ms; now_ms() < until;)
        ;
    n = listen_fds(&s);
    if (n == 0 && listen_arg)
        n = listen_on(&s, listen_arg) < 0 ? -1 : 1;
    if (n <= 0) {
        if (n == 0)
            fprintf(stderr, "http_service: no listening sockets: run it under memvisor "
                            "(memvisor run -c conf/service.ini), systemd-socket-activate, "
                            "or with --listen HOST:PORT\n");
        return MVW_EXIT_FATAL;
    }

    if (children > 0) {
        sigset_t orig_mask;
        sigprocmask(SIG_BLOCK, NULL, &orig_mask);
        run_master((int)children, &orig_mask); /* returns in a child: it serves */
    }
    /* A prefork child serves without a channel: its master is the worker memvisor knows. */
    rc = children > 0 ? -ENOENT : mvw_open(&s.w);
    if (rc == -ENOENT) {
        s.w = NULL;
        if (!children)
            fprintf(stderr, "http_service: pid %d serving %d socket(s) %s, not under memvisor\n",
                    (int)getpid(), n, s.names);
    } else if (rc < 0) {
        fprintf(stderr, "http_service: mvw_open: %s\n", mvw_strerror(rc));
        return MVW_EXIT_FATAL;
    } else if (mvw_stop_requested(s.w)) {
        mvw_close(s.w); /* STOP before GO: memvisor is shutting down; GO never said the mode */
        return 0;
    } else if (!mvw_is_service(s.w)) {
        fprintf(stderr, "http_service: memvisor runs me in batch mode; run it without --tasks\n");
        mvw_close(s.w);
        return MVW_EXIT_FATAL;
    }

    /* glibc raises its mmap threshold after an mmap'd block is freed; pinned, big /ok
     * buffers stay mmap'd and go back to the kernel on free, and do not look like a leak. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_signals, &orig);

    while (!s.draining || s.nconns > 0) {
        rc = serve_once(&s, &orig);
        if (rc < 0) {
            fprintf(stderr, "http_service: ppoll: %s\n", strerror(-rc));
            break;
        }
    }
    mvw_close(s.w);
    free(s.pfd);
    free(s.conns);
    return rc < 0 || s.chan_err ? 1 : 0;
}
