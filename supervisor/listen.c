/*
 * listen: binding the service sockets (or taking socket activation's), see listen.h.
 *
 * Everything here runs before the loop starts (or in `memvisor check`): getaddrinfo may
 * block on a host name, which is acceptable at start-up and nowhere else.
 */
#include "listen.h"

#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SD_LISTEN_FDS_START 3

/* "host:port" of a bound inet socket, for the log and tests (port 0 becomes the real one). */
static void describe(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(out, cap, "?");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        snprintf(out, cap, "unix:%.107s", len > sizeof(sa_family_t) ? un->sun_path : "(unnamed)");
    } else {
        snprintf(out, cap, "family %d", ss.ss_family);
    }
}

/* A unix socket file left by an earlier run (nobody accepts on it) is replaced; anything
 * else at the path is an error. */
static int clear_unix_path(const char *path, char *why, size_t cap)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(why, cap, "%s exists and is not a socket", path);
        return -1;
    }
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, cap, "socket: %s", strerror(errno));
        return -1;
    }
    r = connect(fd, (struct sockaddr *)&un, sizeof un);
    close(fd);
    if (r == 0) {
        snprintf(why, cap, "%s is in use by a running server", path);
        return -1;
    }
    unlink(path);
    return 0;
}

typedef struct bind_ctx {
    mv_listen_t *ls;
    int backlog;
    char *why;
    size_t cap;
} bind_ctx_t;

static int bind_unix(const mv_addr_t *a, mv_listener_t *l, int backlog, char *why, size_t cap)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    if (clear_unix_path(a->path, why, cap) < 0)
        return -1;
    snprintf(un.sun_path, sizeof un.sun_path, "%s", a->path);
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&un, sizeof un) < 0 ||
        listen(l->fd, backlog) < 0) {
        snprintf(why, cap, "unix:%s: %s", a->path, strerror(errno));
        return -1;
    }
    l->unix_path = strdup(a->path);
    snprintf(l->addr, sizeof l->addr, "unix:%s", a->path);
    return 0;
}

static int bind_inet(const mv_addr_t *a, mv_listener_t *l, int backlog, char *why, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG},
                    *res = NULL;
    int one = 1, r;

    r = getaddrinfo(strcmp(a->host, "*") == 0 ? NULL : a->host, a->port, &hints, &res);
    if (r != 0) {
        snprintf(why, cap, "%s:%s: %s", a->host, a->port, gai_strerror(r));
        return -1;
    }
    l->fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(l->fd, res->ai_addr, res->ai_addrlen) < 0 || listen(l->fd, backlog) < 0) {
        snprintf(why, cap, "%s:%s: %s", a->host, a->port, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    describe(l->fd, l->addr, sizeof l->addr);
    return 0;
}

static int bind_word(const char *word, void *arg)
{
    bind_ctx_t *c = arg;
    mv_listener_t *l;
    mv_addr_t a;

    if (c->ls->n >= MV_LISTEN_MAX) {
        snprintf(c->why, c->cap, "at most %d addresses", MV_LISTEN_MAX);
        return -1;
    }
    if (mv_addr_parse(word, &a, c->why, c->cap) < 0)
        return -1;
    l = &c->ls->l[c->ls->n++];
    l->fd = -1;
    snprintf(l->name, sizeof l->name, "%s", a.name);
    return a.is_unix ? bind_unix(&a, l, c->backlog, c->why, c->cap)
                     : bind_inet(&a, l, c->backlog, c->why, c->cap);
}

/* The sockets systemd (or systemd-socket-activate) passed to memvisor. 0 = none, n, or -1. */
static int take_activated(mv_listen_t *ls, char *why, size_t cap)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    char *end;
    long n;

    if (!pid || !fds || strtol(pid, &end, 10) != (long)getpid() || *end)
        return 0;
    n = strtol(fds, &end, 10);
    if (*end || n < 0 || n > MV_LISTEN_MAX) {
        snprintf(why, cap, "LISTEN_FDS=%s: at most %d sockets", fds, MV_LISTEN_MAX);
        return -1;
    }
    for (int i = 0; i < (int)n; i++) {
        mv_listener_t *l = &ls->l[ls->n++];
        size_t len = names ? strcspn(names, ":") : 0;

        l->fd = SD_LISTEN_FDS_START + i;
        fcntl(l->fd, F_SETFD, FD_CLOEXEC); /* passed to workers explicitly, never by accident */
        snprintf(l->name, sizeof l->name, "%.*s", (int)(len ? len : 7), len ? names : "unknown");
        if (names)
            names = names[len] ? names + len + 1 : names + len;
        describe(l->fd, l->addr, sizeof l->addr);
    }
    ls->inherited = true;
    /* Ours, not our children's: each worker gets them with its own LISTEN_PID. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)n;
}

int mv_listen_open(mv_listen_t *ls, const char *spec, int backlog, mv_log_t *log, char *why,
                   size_t cap)
{
    bind_ctx_t c = {.ls = ls, .backlog = backlog, .why = why, .cap = cap};
    int r;

    memset(ls, 0, sizeof *ls);
    r = take_activated(ls, why, cap);
    if (r == 0 && mv_addr_each(spec, bind_word, &c) < 0)
        r = -1;
    if (r < 0) {
        mv_listen_close(ls);
        return -1;
    }
    if (ls->inherited && *spec)
        mv_info(log, "listen_ignored", MV_S("listen", spec),
                MV_S("msg", "started by socket activation: passing on its sockets instead"));
    for (int i = 0; i < ls->n; i++)
        mv_info(log, "listen", MV_S("name", ls->l[i].name), MV_S("addr", ls->l[i].addr),
                MV_I("fd", SD_LISTEN_FDS_START + i),
                MV_S("from", ls->inherited ? "socket activation" : "memvisor"));
    return 0;
}

void mv_listen_names(const mv_listen_t *ls, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; i < ls->n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? ":" : "", ls->l[i].name);
}

bool mv_listen_env_private(const char *entry)
{
    return strncmp(entry, "LISTEN_PID=", 11) == 0 || strncmp(entry, "LISTEN_FDS=", 11) == 0 ||
           strncmp(entry, "LISTEN_FDNAMES=", 15) == 0;
}

void mv_listen_close(mv_listen_t *ls)
{
    for (int i = 0; i < ls->n; i++) {
        mv_listener_t *l = &ls->l[i];
        if (l->fd >= 0)
            close(l->fd);
        if (l->unix_path) {
            unlink(l->unix_path);
            free(l->unix_path);
        }
        l->fd = -1;
        l->unix_path = NULL;
    }
    ls->n = 0;
}
