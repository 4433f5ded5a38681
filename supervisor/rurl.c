/*
 * rurl: Redis stream URLs and the results setting (rurl.h). Pure: no I/O.
 */
#include "rurl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool mv_rurl_is(const char *s)
{
    return s && strncmp(s, MV_RURL_PREFIX, strlen(MV_RURL_PREFIX)) == 0;
}

/* `s` for a message: a password in it shows as "***". */
static void masked(const char *s, char *out, size_t n)
{
    const char *p = mv_rurl_is(s) ? s + strlen(MV_RURL_PREFIX) : NULL;
    const char *path = p ? p + strcspn(p, "/") : NULL, *at = NULL, *colon;

    for (const char *c = p; c && c < path; c++)
        if (*c == '@')
            at = c;
    colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (!at)
        snprintf(out, n, "%s", s);
    else if (colon)
        snprintf(out, n, "%.*s:***%s", (int)(colon - s), s, at);
    else
        snprintf(out, n, "%.*s***%s", (int)(p - s), s, at);
}

static int bad(char *why, size_t n, const char *s, const char *what)
{
    char shown[1024];

    masked(s, shown, sizeof shown);
    snprintf(why, n, "%s: %s (expected redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM)", shown, what);
    return -EINVAL;
}

/* Copies p[0..len) into out[cap] if it fits. */
static bool copy(char *out, size_t cap, const char *p, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* USER:PASSWORD@ (either part may be empty), when there is an '@' before the path. */
static int parse_userinfo(const char **pp, const char *path, mv_rurl_t *u, const char *s, char *why,
                          size_t n)
{
    const char *p = *pp, *at = memchr(p, '@', (size_t)(path - p)), *colon;

    if (!at)
        return 0;
    /* The last '@' before the path: a password may hold '@'. */
    while (memchr(at + 1, '@', (size_t)(path - at - 1)))
        at = memchr(at + 1, '@', (size_t)(path - at - 1));
    colon = memchr(p, ':', (size_t)(at - p));
    if (!colon ? !copy(u->pass, sizeof u->pass, p, (size_t)(at - p))
               : !copy(u->user, sizeof u->user, p, (size_t)(colon - p)) ||
                     !copy(u->pass, sizeof u->pass, colon + 1, (size_t)(at - colon - 1)))
        return bad(why, n, s, "user name or password too long");
    *pp = at + 1;
    return 0;
}

/* HOST or [V6], then :PORT or nothing, up to `path`. */
static int parse_authority(const char *p, const char *path, mv_rurl_t *u, const char *s, char *why,
                           size_t n)
{
    const char *end, *port = NULL;
    char *stop;
    long v;

    if (*p == '[') {
        end = memchr(p, ']', (size_t)(path - p));
        if (!end)
            return bad(why, n, s, "'[' without ']' around the IPv6 address");
        if (!copy(u->host, sizeof u->host, p + 1, (size_t)(end - p - 1)) || end == p + 1)
            return bad(why, n, s, "bad IPv6 address");
        for (const char *c = p + 1; c < end; c++)
            if (!(host_char(*c) || *c == ':'))
                return bad(why, n, s, "bad IPv6 address");
        if (end + 1 < path && end[1] != ':')
            return bad(why, n, s, "text after ']' that is no :PORT");
        port = end + 1 < path ? end + 2 : NULL;
    } else {
        end = memchr(p, ':', (size_t)(path - p));
        if (!end)
            end = path;
        else
            port = end + 1;
        if (end == p)
            return bad(why, n, s, "no host");
        if (!copy(u->host, sizeof u->host, p, (size_t)(end - p)))
            return bad(why, n, s, "host name too long");
        for (const char *c = p; c < end; c++)
            if (!host_char(*c))
                return bad(why, n, s, "the host holds a character no host name has");
    }
    u->port = 6379;
    if (port) {
        if (port == path)
            return bad(why, n, s, "':' without a port");
        errno = 0;
        v = strtol(port, &stop, 10);
        if (stop != path || errno || v < 1 || v > 65535 || *port == '+' || *port == '-')
            return bad(why, n, s, "the port is not a number in 1..65535");
        u->port = (int)v;
    }
    return 0;
}

int mv_rurl_parse(const char *s, mv_rurl_t *u, char *why, size_t n)
{
    const char *p, *path, *stream;
    size_t len;
    int r;

    memset(u, 0, sizeof *u);
    if (!mv_rurl_is(s))
        return bad(why, n, s ? s : "(null)", "not a redis:// URL");
    p = s + strlen(MV_RURL_PREFIX);
    path = strchr(p, '/');
    if (!path)
        return bad(why, n, s, "no /STREAM after the host");
    if ((r = parse_userinfo(&p, path, u, s, why, n)) < 0 ||
        (r = parse_authority(p, path, u, s, why, n)) < 0)
        return r;
    stream = path + 1;
    len = strlen(stream);
    if (len == 0)
        return bad(why, n, s, "no stream name after '/'");
    if (len > MV_RURL_STREAM_MAX)
        return bad(why, n, s, "stream name longer than 200 bytes");
    for (const char *c = stream; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return bad(why, n, s, "the stream name holds a space or control character");
    memcpy(u->stream, stream, len + 1);
    return 0;
}

void mv_rurl_name(const mv_rurl_t *u, char *out, size_t n)
{
    bool v6 = strchr(u->host, ':') != NULL;

    snprintf(out, n, "redis://%s%s%s:%d/%s", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
             u->stream);
}

bool mv_rurl_same_server(const mv_rurl_t *a, const mv_rurl_t *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int mv_rurl_results_split(const char *spec, char *url, size_t un, const char **file)
{
    const char *sp;
    size_t len;

    url[0] = '\0';
    *file = spec ? spec : "";
    if (!mv_rurl_is(spec))
        return 0;
    sp = strchr(spec, ' ');
    len = sp ? (size_t)(sp - spec) : strlen(spec);
    if (len >= un)
        return -EINVAL;
    memcpy(url, spec, len);
    url[len] = '\0';
    *file = sp ? sp + strspn(sp, " ") : spec + len;
    return 0;
}

const char *mv_rurl_results_file(const char *spec)
{
    char url[1024];
    const char *file;

    return mv_rurl_results_split(spec, url, sizeof url, &file) < 0 ? "" : file;
}

int mv_rurl_results_join(const char *a, const char *b, char *out, size_t n)
{
    const char *url, *file;
    int k;

    a = a ? a : "";
    b = b ? b : "";
    if ((mv_rurl_is(a) && mv_rurl_is(b)) || (*a && *b && !mv_rurl_is(a) && !mv_rurl_is(b)))
        return -EINVAL;
    url = mv_rurl_is(a) ? a : b;
    file = url == a ? b : a;
    if (!mv_rurl_is(url))
        url = "";
    k = snprintf(out, n, "%s%s%s", url, *url && *file ? " " : "", file);
    return k < 0 || (size_t)k >= n ? -EINVAL : 0;
}

int mv_rurl_check_settings(const char *source, const char *results, char *why, size_t n)
{
    char url[1024], sname[512], rname[512];
    const char *file;
    mv_rurl_t s, r;
    int rc;

    if (mv_rurl_is(source) && (rc = mv_rurl_parse(source, &s, why, n)) < 0)
        return rc;
    if (mv_rurl_results_split(results, url, sizeof url, &file) < 0) {
        snprintf(why, n, "[tasks] results: the stream URL is too long");
        return -EINVAL;
    }
    if (!*url)
        return 0;
    if ((rc = mv_rurl_parse(url, &r, why, n)) < 0)
        return rc;
    mv_rurl_name(&r, rname, sizeof rname);
    if (!mv_rurl_is(source)) {
        snprintf(why, n,
                 "a results stream (%s) needs a Redis task source (--tasks redis://...); a task "
                 "file's results go to a file",
                 rname);
        return -EINVAL;
    }
    mv_rurl_name(&s, sname, sizeof sname);
    if (!mv_rurl_same_server(&s, &r)) {
        snprintf(why, n,
                 "the results stream %s must be on the task stream's Redis server (%s): a result "
                 "and its task's acknowledgement are written in one script",
                 rname, sname);
        return -EINVAL;
    }
    if (strcmp(s.stream, r.stream) == 0) {
        snprintf(why, n, "the results stream and the task stream are both %s", sname);
        return -EINVAL;
    }
    return 0;
}
