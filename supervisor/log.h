/*
 * log: one line per event. Text (`ts level event=NAME key=value ...`) or JSON Lines
 * (`{"ts":..,"level":..,"event":..,key:value...}`, through jansson).
 *
 *     mv_log(lg, MV_LVL_INFO, "spawn", MV_I("worker", 1), MV_I("pid", pid));
 *
 * Each line goes out with one write(2) so lines from concurrent writers (O_APPEND) never
 * interleave. Worker output is arbitrary bytes: strings are made valid UTF-8 for JSON and
 * quoted/escaped in text.
 */
#ifndef MV_LOG_H
#define MV_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { MV_KV_END, MV_KV_INT, MV_KV_STR, MV_KV_BYTES, MV_KV_DBL } mv_kv_type_t;

typedef struct mv_kv {
    const char *key;
    mv_kv_type_t type;
    union {
        long long i;
        const char *s;
        double d;
    } v;
    size_t len; /* MV_KV_BYTES only */
} mv_kv_t;

#define MV_I(k, x)       ((mv_kv_t){(k), MV_KV_INT, {.i = (long long)(x)}, 0})
#define MV_S(k, x)       ((mv_kv_t){(k), MV_KV_STR, {.s = (x)}, 0})
#define MV_B(k, p, n)    ((mv_kv_t){(k), MV_KV_BYTES, {.s = (const char *)(p)}, (n)})
#define MV_D(k, x)       ((mv_kv_t){(k), MV_KV_DBL, {.d = (double)(x)}, 0})
#define MV_KV_END_MARKER ((mv_kv_t){NULL, MV_KV_END, {0}, 0})

typedef struct mv_log {
    mv_logfmt_t format;
    mv_level_t level;
    int fd;        /* where lines go */
    int own_fd;    /* whether mv_log_close closes fd */
    int events_fd; /* the run's events.jsonl: every event at info and up, as JSON,
                    * whatever the log's format and level, minus worker output; -1 = none */
} mv_log_t;

/* Opens the log: path "" = stderr. 0 or -errno. */
int mv_log_open(mv_log_t *lg, mv_logfmt_t format, mv_level_t level, const char *path);
void mv_log_close(mv_log_t *lg);

/* Writes one event line with the given fields (array ends with a MV_KV_END entry). */
void mv_log_kv(mv_log_t *lg, mv_level_t level, const char *event, const mv_kv_t *kv);

/* Every event carries at least one field (plain C11: no __VA_OPT__, which cppcheck 2.10
 * does not parse). */
#define mv_log(lg, level, event, ...) \
    mv_log_kv((lg), (level), (event), (const mv_kv_t[]){__VA_ARGS__, MV_KV_END_MARKER})

#define mv_debug(lg, ev, ...) mv_log((lg), MV_LVL_DEBUG, ev, __VA_ARGS__)
#define mv_info(lg, ev, ...)  mv_log((lg), MV_LVL_INFO, ev, __VA_ARGS__)
#define mv_warn(lg, ev, ...)  mv_log((lg), MV_LVL_WARN, ev, __VA_ARGS__)
#define mv_error(lg, ev, ...) mv_log((lg), MV_LVL_ERROR, ev, __VA_ARGS__)

/* Whether a line at `level` would be written (to skip building expensive fields). */
static inline int mv_log_on(const mv_log_t *lg, mv_level_t level)
{
    return level >= lg->level;
}

#endif
