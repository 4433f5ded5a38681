/*
 * log: text or JSON event lines, one write(2) each.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

static const char *const level_name[] = {"debug", "info", "warn", "error"};

int mv_log_open(mv_log_t *lg, mv_logfmt_t format, mv_level_t level, const char *path)
{
    memset(lg, 0, sizeof *lg);
    lg->events_fd = -1;
    lg->format = format;
    lg->level = level;
    lg->fd = STDERR_FILENO;
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        lg->fd = fd;
        lg->own_fd = 1;
    }
    return 0;
}

void mv_log_close(mv_log_t *lg)
{
    if (lg->own_fd && lg->fd >= 0)
        close(lg->fd);
    lg->fd = -1;
    lg->own_fd = 0;
}

/* Whether a text value must be quoted: empty, blanks, quotes, '=', or any non-printable. */
static int needs_quotes(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\' || s[i] == 0x7f)
            return 1;
    return 0;
}

/* Appends a text-format value: bare when safe, else "..." with C-style escapes. */
static void text_value(mv_buf_t *b, const void *p, size_t n)
{
    const uint8_t *s = p;
    char esc[8];

    if (!needs_quotes(s, n)) {
        mv_buf_append(b, s, n);
        return;
    }
    mv_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            mv_buf_append(b, esc, 2);
        } else if (c == '\n') {
            mv_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            mv_buf_append(b, "\\t", 2);
        } else if (c < ' ' || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            mv_buf_append(b, esc, 4);
        } else {
            mv_buf_append(b, &c, 1);
        }
    }
    mv_buf_append(b, "\"", 1);
}

static void format_text(mv_buf_t *b, const char *ts, mv_level_t level, const char *event,
                        const mv_kv_t *kv)
{
    char num[64];
    int n;

    n = snprintf(num, sizeof num, "%s %-5s event=", ts, level_name[level]);
    mv_buf_append(b, num, (size_t)n);
    mv_buf_append(b, event, strlen(event));
    for (; kv->type != MV_KV_END; kv++) {
        mv_buf_append(b, " ", 1);
        mv_buf_append(b, kv->key, strlen(kv->key));
        mv_buf_append(b, "=", 1);
        switch (kv->type) {
        case MV_KV_INT:
            n = snprintf(num, sizeof num, "%lld", kv->v.i);
            mv_buf_append(b, num, (size_t)n);
            break;
        case MV_KV_DBL:
            n = snprintf(num, sizeof num, "%.3f", kv->v.d);
            mv_buf_append(b, num, (size_t)n);
            break;
        case MV_KV_STR: text_value(b, kv->v.s ? kv->v.s : "", kv->v.s ? strlen(kv->v.s) : 0); break;
        case MV_KV_BYTES: text_value(b, kv->v.s, kv->len); break;
        case MV_KV_END: break;
        }
    }
    mv_buf_append(b, "\n", 1);
}

/* A jansson string from arbitrary bytes: invalid UTF-8 becomes U+FFFD (logs may be lossy). */
static json_t *json_bytes(const char *s, size_t n)
{
    mv_buf_t clean = {0};
    json_t *j;

    if (mv_utf8_valid(s, n))
        return json_stringn(s, n);
    if (mv_utf8_sanitize(s, n, &clean) < 0) {
        mv_buf_free(&clean);
        return json_string("(out of memory)");
    }
    j = json_stringn((const char *)clean.data, clean.len);
    mv_buf_free(&clean);
    return j;
}

static void format_json(mv_buf_t *b, const char *ts, mv_level_t level, const char *event,
                        const mv_kv_t *kv)
{
    json_t *o = json_object();
    char *s;

    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_name[level]));
    json_object_set_new(o, "event", json_string(event));
    for (; kv->type != MV_KV_END; kv++) {
        json_t *v = NULL;
        switch (kv->type) {
        case MV_KV_INT: v = json_integer(kv->v.i); break;
        case MV_KV_DBL: v = json_real(kv->v.d); break;
        case MV_KV_STR: v = kv->v.s ? json_bytes(kv->v.s, strlen(kv->v.s)) : json_null(); break;
        case MV_KV_BYTES: v = json_bytes(kv->v.s, kv->len); break;
        case MV_KV_END: break;
        }
        json_object_set_new(o, kv->key, v ? v : json_null());
    }
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) {
        mv_buf_append(b, s, strlen(s));
        free(s);
    }
    mv_buf_append(b, "\n", 1);
    json_decref(o);
}

/* One write per line; a log that cannot be written is not worth killing the run for. */
static void write_line(int fd, const mv_buf_t *b)
{
    size_t off = 0;

    while (off < b->len) {
        ssize_t w = write(fd, b->data + off, b->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void mv_log_kv(mv_log_t *lg, mv_level_t level, const char *event, const mv_kv_t *kv)
{
    bool to_log = level >= lg->level && lg->fd >= 0;
    bool to_events = lg->events_fd >= 0 && level >= MV_LVL_INFO && strcmp(event, "output") != 0;
    mv_buf_t b = {0};
    char ts[48];

    if (!to_log && !to_events)
        return;
    mv_iso_time(ts);
    if (to_events) {
        format_json(&b, ts, level, event, kv);
        write_line(lg->events_fd, &b);
        mv_buf_reset(&b);
    }
    if (to_log) {
        if (lg->format == MV_LOGFMT_JSON)
            format_json(&b, ts, level, event, kv);
        else
            format_text(&b, ts, level, event, kv);
        write_line(lg->fd, &b);
    }
    mv_buf_free(&b);
}
