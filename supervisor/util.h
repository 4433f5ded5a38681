/*
 * util: small pieces every module uses: a growable byte buffer, UTF-8 validation, base64,
 * wall-clock formatting. No I/O, no libuv.
 */
#ifndef MV_UTIL_H
#define MV_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MV_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MV_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* A byte buffer: data[off .. len) is unread. Consume moves `off`; compaction is lazy. */
typedef struct mv_buf {
    uint8_t *data;
    size_t off, len, cap;
} mv_buf_t;

/* Makes room for `n` more bytes after `len`. 0 or -ENOMEM. */
int mv_buf_reserve(mv_buf_t *b, size_t n);
int mv_buf_append(mv_buf_t *b, const void *p, size_t n);
/* Drops `n` unread bytes from the front. */
void mv_buf_consume(mv_buf_t *b, size_t n);
static inline size_t mv_buf_unread(const mv_buf_t *b)
{
    return b->len - b->off;
}
static inline uint8_t *mv_buf_head(const mv_buf_t *b)
{
    return b->data + b->off;
}
void mv_buf_reset(mv_buf_t *b);
void mv_buf_free(mv_buf_t *b);
/* Frees an empty buffer's storage when it grew past `keep` bytes (a burst is over). */
void mv_buf_shrink(mv_buf_t *b, size_t keep);

/* Whether s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool mv_utf8_valid(const void *s, size_t n);
/* Copies s[0..n) into out with every invalid sequence replaced by U+FFFD. */
int mv_utf8_sanitize(const void *s, size_t n, mv_buf_t *out);
/* Standard base64 with padding into a NUL-terminated malloc'd string; NULL on ENOMEM. */
char *mv_base64(const void *s, size_t n);

/* Monotonic milliseconds (libuv's clock, so it agrees with timers). */
uint64_t mv_now_ms(void);
/* "2026-11-21T14:49:00.123456Z" into out[48]. */
void mv_iso_time(char out[48]);
/* The wall clock: microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t mv_wall_us(void);
/* A wall-clock time in microseconds as "2026-11-21T14:49:00.123456Z" (UTC) into out[48]. */
void mv_iso_time_us(int64_t us, char out[48]);
/* Human-readable bytes: "512.0 MiB" into out[24]. */
void mv_fmt_bytes(int64_t bytes, char out[24]);

#endif
