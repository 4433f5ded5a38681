/*
 * util: byte buffer, UTF-8, base64, time formatting.
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

int mv_buf_reserve(mv_buf_t *b, size_t n)
{
    size_t need, cap;
    uint8_t *p;

    /* Compact first: moving the unread tail is cheaper than growing for long-lived buffers. */
    if (b->off > 0 && b->cap - b->len < n) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= n)
        return 0;
    need = b->len + n;
    if (need < b->len)
        return -ENOMEM;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int mv_buf_append(mv_buf_t *b, const void *p, size_t n)
{
    int r = mv_buf_reserve(b, n);

    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void mv_buf_consume(mv_buf_t *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void mv_buf_reset(mv_buf_t *b)
{
    b->off = b->len = 0;
}

void mv_buf_free(mv_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void mv_buf_shrink(mv_buf_t *b, size_t keep)
{
    if (mv_buf_unread(b) == 0 && b->cap > keep)
        mv_buf_free(b);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is invalid. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool mv_utf8_valid(const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t i = 0, k;

    while (i < n) {
        /* Fast path for ASCII runs, 8 bytes at a time (answers of 100 KB are common). */
        if (s[i] < 0x80) {
            uint64_t w;

            while (i + 8 <= n && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ull) == 0))
                i += 8;
            if (i < n && s[i] < 0x80)
                i++;
            continue;
        }
        k = utf8_seq(s + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

int mv_utf8_sanitize(const void *p, size_t n, mv_buf_t *out)
{
    static const uint8_t repl[3] = {0xef, 0xbf, 0xbd};
    const uint8_t *s = p;
    size_t i = 0, k;
    int r = 0;

    while (i < n && r == 0) {
        k = utf8_seq(s + i, n - i);
        if (k) {
            r = mv_buf_append(out, s + i, k);
            i += k;
        } else {
            r = mv_buf_append(out, repl, sizeof repl);
            i++;
        }
    }
    return r;
}

char *mv_base64(const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = p;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    size_t i;

    if (!out)
        return NULL;
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = tab[s[i] >> 2];
        *o++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = tab[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        *o++ = tab[s[i + 2] & 63];
    }
    if (i < n) {
        *o++ = tab[s[i] >> 2];
        if (i + 1 < n) {
            *o++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
            *o++ = tab[(s[i + 1] & 15) << 2];
        } else {
            *o++ = tab[(s[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

uint64_t mv_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

int64_t mv_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes v as `n` digits, zero-padded, and returns the end. */
static char *digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

void mv_iso_time_us(int64_t us, char out[48])
{
    /* Floor divisions, so that a time before 1970 keeps a positive fraction. */
    int64_t sec = us / 1000000 - (us % 1000000 < 0), frac = us - sec * 1000000;
    int64_t days = sec / 86400 - (sec % 86400 < 0), tod = sec - days * 86400;
    /* The civil date of a day count (H. Hinnant's days_from_civil, inverted): plain
     * arithmetic where gmtime_r would take glibc's time zone lock for every result line. */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char *p = out;

    if (y < 0 || y > 9999) { /* no clock here says so: the general (slower) path */
        time_t t = (time_t)sec;
        struct tm tm;
        size_t n;

        if (!gmtime_r(&t, &tm) || !(n = strftime(out, 48, "%Y-%m-%dT%H:%M:%S", &tm)))
            n = (size_t)snprintf(out, 48, "%lld", (long long)sec);
        snprintf(out + n, 48 - n, ".%06dZ", (int)frac);
        return;
    }
    p = digits(p, y, 4);
    *p++ = '-';
    p = digits(p, m, 2);
    *p++ = '-';
    p = digits(p, d, 2);
    *p++ = 'T';
    p = digits(p, tod / 3600, 2);
    *p++ = ':';
    p = digits(p, tod / 60 % 60, 2);
    *p++ = ':';
    p = digits(p, tod % 60, 2);
    *p++ = '.';
    /* Microseconds: reactions measured in the log (bench/detect) are well under 1 ms. */
    p = digits(p, frac, 6);
    *p++ = 'Z';
    *p = '\0';
}

void mv_iso_time(char out[48])
{
    mv_iso_time_us(mv_wall_us(), out);
}

void mv_fmt_bytes(int64_t bytes, char out[24])
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    size_t u = 0;

    while ((v >= 1024.0 || v <= -1024.0) && u + 1 < MV_ARRAY_LEN(unit)) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, 24, "%lld B", (long long)bytes);
    else
        snprintf(out, 24, "%.1f %s", v, unit[u]);
}
