/*
 * addr: socket addresses as the configuration writes them (see addr.h).
 */
#include "addr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

int mv_addr_parse(const char *word, mv_addr_t *a, char *why, size_t cap)
{
    const char *eq = strchr(word, '='), *colon, *rest = word;
    char *end;
    long port;

    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "listen");
    if (eq && (!strchr(word, ':') || eq < strchr(word, ':'))) {
        size_t n = (size_t)(eq - word);
        if (n == 0 || n >= sizeof a->name || memchr(word, ':', n)) {
            snprintf(why, cap, "\"%s\": a name is 1-%zu characters, no ':'", word,
                     sizeof a->name - 1);
            return -1;
        }
        memcpy(a->name, word, n);
        a->name[n] = '\0';
        rest = eq + 1;
    }
    if (strncmp(rest, "unix:", 5) == 0) {
        a->is_unix = true;
        if (rest[5] != '/' || strlen(rest + 5) >= sizeof a->path) {
            snprintf(why, cap, "\"%s\": unix: takes an absolute path shorter than %zu bytes", word,
                     sizeof a->path);
            return -1;
        }
        snprintf(a->path, sizeof a->path, "%s", rest + 5);
        return 0;
    }
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (!close || close[1] != ':' || (size_t)(close - rest - 1) >= sizeof a->host) {
            snprintf(why, cap, "\"%s\": an IPv6 address is [ADDRESS]:PORT", word);
            return -1;
        }
        memcpy(a->host, rest + 1, (size_t)(close - rest - 1));
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon || colon == rest || (size_t)(colon - rest) >= sizeof a->host ||
            memchr(rest, ':', (size_t)(colon - rest))) {
            snprintf(why, cap, "\"%s\": expected HOST:PORT, [V6]:PORT or unix:/PATH", word);
            return -1;
        }
        memcpy(a->host, rest, (size_t)(colon - rest));
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 0 || port > 65535) {
        snprintf(why, cap, "\"%s\": the port is a number from 0 to 65535", word);
        return -1;
    }
    snprintf(a->port, sizeof a->port, "%ld", port);
    return 0;
}

int mv_addr_each(const char *spec, int (*fn)(const char *word, void *arg), void *arg)
{
    char word[512];

    for (const char *p = spec; *p;) {
        size_t n;
        p += strspn(p, " \t");
        n = strcspn(p, " \t");
        if (n == 0)
            break;
        if (n >= sizeof word)
            n = sizeof word - 1; /* parse_one then complains about the cut word */
        memcpy(word, p, n);
        word[n] = '\0';
        if (fn(word, arg) < 0)
            return -1;
        p += n;
    }
    return 0;
}

typedef struct check_ctx {
    int n, max;
    char *why;
    size_t cap;
} check_ctx_t;

static int check_word(const char *word, void *arg)
{
    check_ctx_t *c = arg;
    mv_addr_t a;

    if (++c->n > c->max) {
        snprintf(c->why, c->cap, "at most %d addresses", c->max);
        return -1;
    }
    return mv_addr_parse(word, &a, c->why, c->cap);
}

int mv_addr_check(const char *spec, int max, char *why, size_t cap)
{
    check_ctx_t c = {.max = max, .why = why, .cap = cap};

    return mv_addr_each(spec, check_word, &c);
}

int mv_addr_numeric(const char *word, struct sockaddr_storage *sa, char *why, size_t cap)
{
    struct sockaddr_storage tmp;
    struct sockaddr_in *in4;
    struct sockaddr_in6 *in6;
    mv_addr_t a;

    if (!sa)
        sa = &tmp;
    memset(sa, 0, sizeof *sa);
    if (strchr(word, '=') || mv_addr_parse(word, &a, why, cap) < 0)
        return strchr(word, '=') ? snprintf(why, cap, "\"%s\": no name here", word), -1 : -1;
    in4 = (struct sockaddr_in *)sa;
    in6 = (struct sockaddr_in6 *)sa;
    if (!a.is_unix && inet_pton(AF_INET, a.host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)atoi(a.port));
        return 0;
    }
    if (!a.is_unix && inet_pton(AF_INET6, a.host, &in6->sin6_addr) == 1 && word[0] == '[') {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)atoi(a.port));
        return 0;
    }
    snprintf(why, cap,
             "\"%s\": not a numeric address (IPV4:PORT or [IPV6]:PORT, e.g. "
             "127.0.0.1:9464)",
             word);
    return -1;
}
