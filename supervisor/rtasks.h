/*
 * rtasks: the Redis stream task source, so that many memvisors (on many hosts) run one batch
 * (docs/many-hosts.md has the guarantees and the design).
 *
 * Every memvisor joins one consumer group ([tasks] group) of the task stream, as a consumer
 * named HOST:PID:START_MS, and:
 *   - reads (XREADGROUP) only as many tasks as it has free slots (workers x prefetch, less
 *     the tasks it holds), polling every 50 ms..1 s while the stream has nothing new;
 *   - acknowledges a task (XACK, then XDEL) only when its final result is written: in the
 *     same script as the result's XADD to the results stream, or, without a results stream,
 *     once the results file holds the line and is synced;
 *   - re-adds a task whose worker died with its attempts and their reasons (a new entry for
 *     the old, in one script), so max_attempts holds across hosts; a quarantined task also
 *     goes to STREAM:quarantine;
 *   - takes over (XAUTOCLAIM) tasks idle for [tasks] claim_idle, a silent memvisor's, each
 *     takeover counting as an attempt (reason "lost"), and keeps its own from being taken
 *     (XCLAIM ... JUSTID every claim_idle / 3);
 *   - writes each task's result once (HSETNX STREAM:done in the result's script), however
 *     many memvisors ran it;
 *   - pauses dispatch while the connection is lost, keeps finished results in memory, and
 *     sends them again once it is back (every script is idempotent); gives up after
 *     [tasks] redis_retry;
 *   - without [tasks] follow, ends the batch once the stream is empty (XDEL of acknowledged
 *     entries makes its length the tasks not yet done, everyone's).
 *   - routes a task that needs a higher hard limit than its ceiling (escalate_max) gives to
 *     the stream STREAM:need:LIMIT, which only memvisors with a ceiling >= LIMIT read, while a
 *     live one exists (STREAM:hosts); else, or once none is left, quarantines it once.
 * All I/O is hiredis's async API on the loop (rconn.h).
 */
#ifndef MV_RTASKS_H
#define MV_RTASKS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "results.h"
#include "tasks.h"

typedef struct mv_rtasks_opts {
    uv_loop_t *loop;
    mv_log_t *log;
    const char *source;  /* redis://HOST:PORT/STREAM */
    const char *results; /* the [tasks] results setting: its stream part, if any, is used */
    const char *group;
    int64_t claim_idle; /* ms */
    int64_t retry_ms;   /* how long the connection may stay lost; 0 = not at all */
    bool follow;        /* wait for new tasks once the stream is empty */
    int capacity;       /* tasks run at once: workers x prefetch */
    int max_attempts;
    int64_t max_size;
    int64_t ceiling; /* the highest hard limit a task gets here (escalate.h); 0 = any */
    mv_tasks_cb on_input;
    void *arg;
} mv_rtasks_opts_t;

/* Opens a Redis source into t (connecting from the loop). 0, or -EINVAL with the reason in
 * `why` (a URL that does not parse, a results stream elsewhere), or -ENOMEM. */
int mv_rtasks_open(mv_tasks_t *t, const mv_rtasks_opts_t *o, char *why, size_t n);
/* Opens the source the configuration names: a Redis stream, a file or stdin (tasks.h), or
 * none. 0 or -errno, with the reason in why. */
int mv_rtasks_open_any(mv_tasks_t *t, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                       mv_tasks_cb on_input, void *arg, char *why, size_t n);
/* Once the results file is open: without a results stream, a task is acknowledged when its
 * line is synced in that file (results.h's on_written). Nothing for another source. */
void mv_rtasks_attach_results(mv_tasks_t *t, mv_results_t *r);
/* The pool runs `workers` now (scaled): a file's read-ahead, and a stream's tasks held at
 * once (workers x prefetch: exactly the free slots), follow it, as mv_rtasks_open_any sized
 * them for the start's. A stream holding more than that lets the excess go as its tasks end;
 * one holding fewer reads more at once. */
void mv_rtasks_capacity(mv_tasks_t *t, const mv_config_t *cfg, int workers);

/* What `memvisor status` shows of a Redis source. */
typedef struct mv_rtasks_view {
    const char *url; /* without the password */
    const char *group, *consumer;
    bool connected;
    int64_t length;  /* entries in the stream: waiting + pending, -1 = not known yet */
    int64_t pending; /* delivered to some memvisor, not acknowledged */
    double age_s;    /* of those two figures */
    uint64_t held;   /* entries this memvisor holds (running, queued, result unsent) */
    uint64_t taken, claimed, readded, duplicates;
} mv_rtasks_view_t;

/* -ENOENT when the source is not Redis. */
int mv_rtasks_view(const mv_tasks_t *t, mv_rtasks_view_t *v);
/* The run summary's line for a Redis source (nothing for another). */
void mv_rtasks_summary(const mv_tasks_t *t, FILE *out);

#endif
