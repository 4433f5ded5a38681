/*
 * c_conn_parse: a C `api` worker of the leak suite whose leaking kind leaks file descriptors.
 *
 *   connect  opens a socket for a "connection" and parks it with a 256-byte connection record
 *            in a pool that never closes anything (the handle leak)
 *   parse    copies a 200 KiB request into a buffer and splits it into words with a growing
 *            array of pointers, then frees both
 *   render   a 1 MiB scratch buffer, touched and freed
 */
#include <sys/socket.h>
#include <unistd.h>

#include "c_worker.h"

struct conn {
    int fd;
    char peer[252];
};

static struct conn **pool;
static size_t nconn, cap;

static int connect_kind(long n, long arg, char *out, size_t outcap)
{
    struct conn *c = malloc(sizeof *c);

    if (!c)
        return -1;
    if (leak_grow(&pool, &cap, nconn) < 0) {
        free(c);
        return -1;
    }
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(c->peer, sizeof c->peer, "peer-%ld-%ld", n, arg);
    pool[nconn++] = c;
    snprintf(out, outcap, "connections %zu fd %d", nconn, c->fd);
    return 0;
}

static int parse(long n, long arg, char *out, size_t outcap)
{
    size_t len = 200 * 1024, nwords = 0, wcap = 256;
    char *req = malloc(len + 1), *save = NULL;
    char **words = malloc(wcap * sizeof *words);

    if (!req || !words) {
        free(req);
        free(words);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        req[i] = (i % 8 == 7) ? ' ' : (char)('a' + (i + (size_t)arg) % 26);
    req[len] = '\0';
    for (char *w = strtok_r(req, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (nwords == wcap) {
            char **p = realloc(words, wcap * 2 * sizeof *p);
            if (!p)
                break;
            words = p;
            wcap *= 2;
        }
        words[nwords++] = w;
    }
    snprintf(out, outcap, "words %zu", nwords);
    free(words);
    free(req);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"connect", connect_kind},
        {"parse", parse},
        {"render", leak_render},
    };

    return leak_worker_main("c_conn_parse", kinds, sizeof kinds / sizeof kinds[0]);
}
