/*
 * log: one line per event. Text (`ts level event=NAME key=value ...`) or JSON Lines
 * (`{"ts":..,"level":..,"event":..,key:value...}`, through jansson).
 *
 *     mv_log(lg, MV_LVL_INFO, "spawn", MV_I("worker", 1), MV_I("pid", pid));
 *
 * mv_log_kv never waits for the log's reader: lines are queued in a bounded buffer that a
 * writer thread drains (log.c says why a thread). When the reader is slow, worker output
 * (event=output) is dropped first, memvisor's own events last, both counted; one
 * `event=log_dropped count=N output=N events=N` line follows once the queue has drained.
 * Whole lines are written, at most PIPE_BUF bytes per write(2) when lines are short, so lines
 * from concurrent writers (O_APPEND, a shared pipe) do not interleave. The run's events.jsonl
 * (events_fd) gets every event, written by the caller, never dropped. Worker output is
 * arbitrary bytes: strings are made valid UTF-8 for JSON and quoted/escaped in text.
 *
 * The status line (a batch's progress on a terminal) belongs to the same writer thread, so
 * that nothing else ever writes to that terminal: before log lines go to it the thread
 * clears the line ("\r", erase to the end of line), writes them, then redraws it. A log line
 * is therefore never cut by a redraw, and the status line stays the last line on screen.
 */
#ifndef MV_LOG_H
#define MV_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { MV_KV_END, MV_KV_INT, MV_KV_STR, MV_KV_BYTES, MV_KV_DBL, MV_KV_BOOL } mv_kv_type_t;

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
#define MV_T(k, x)       ((mv_kv_t){(k), MV_KV_BOOL, {.i = !!(x)}, 0}) /* true / false */
#define MV_KV_END_MARKER ((mv_kv_t){NULL, MV_KV_END, {0}, 0})

#define MV_LOG_BUFFER          (256 * 1024) /* bytes queued for the log at most */
#define MV_LOG_CLOSE_WAIT_MS   2000         /* how long mv_log_close waits for a slow reader */
#define MV_LOG_STATUS_MAX      512          /* bytes of the status line kept */
#define MV_LOG_STATUS_EVERY_MS 250          /* the status line is drawn at most this often */
#define MV_LOG_GATHER_MS       2            /* lines gathered this long before a write */

struct mv_log_writer;

typedef struct mv_log {
    mv_logfmt_t format;
    mv_level_t level;
    int fd;     /* where lines go */
    int own_fd; /* whether mv_log_close closes fd */
    /* The run's events.jsonl: every event at info and up, as JSON, whatever the log's format
     * and level, minus worker output; -1 = none. */
    int events_fd;
    /* events.jsonl's bound: once events_bytes would pass events_max (0 = none), the file at
     * events_path becomes events.1.jsonl and events_fd (the same number) a new file. */
    char *events_path; /* owned; NULL = never rotated */
    int64_t events_max, events_bytes;
    /* The queue and its thread; NULL = plain writes (no thread could be started). */
    struct mv_log_writer *writer;
} mv_log_t;

/* What the queue holds and has dropped (mv_log_counts). */
typedef struct mv_log_counts {
    size_t queued;           /* bytes waiting for the reader */
    uint64_t output, events; /* lines dropped since the last log_dropped line */
    uint64_t total;          /* lines dropped over the log's life */
} mv_log_counts_t;

/* Opens the log: path "" = stderr; starts its writer thread. 0 or -errno. */
int mv_log_open(mv_log_t *lg, mv_logfmt_t format, mv_level_t level, const char *path);
/* Writes what is queued, waiting at most MV_LOG_CLOSE_WAIT_MS for the reader (lines still
 * queued then are lost), stops the thread and closes the file. */
void mv_log_close(mv_log_t *lg);
/* Waits until every line queued so far is written (and the status line drawn or cleared), at
 * most timeout_ms. 0 or -ETIMEDOUT. */
int mv_log_flush(mv_log_t *lg, int timeout_ms);
/* Replaces the bounds (tests lower them): the queue's size in bytes, close's wait. */
void mv_log_set_limits(mv_log_t *lg, size_t buffer, int close_wait_ms);
void mv_log_counts(mv_log_t *lg, mv_log_counts_t *out);

/* The status line: drawn on `fd` (a terminal; -1 = none), kept below the log lines when the
 * log goes to the same fd. Nothing is drawn without a writer thread. */
void mv_log_status_open(mv_log_t *lg, int fd);
/* Replaces the status line's text (one line, no newline; at most MV_LOG_STATUS_MAX bytes
 * kept): the writer draws it when it is next idle. NULL or "" clears it. Never waits. */
void mv_log_status(mv_log_t *lg, const char *text);

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
