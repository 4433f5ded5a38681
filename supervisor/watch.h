/*
 * watch: when a worker's memory and counters are looked at, and what the policy says then.
 *
 *   - after every answer (the pool asks: mv_watch_check);
 *   - on a timer every [limits] sample_interval, for what has no kernel event (the /proc
 *     fallback, lifetimes, rss);
 *   - when the worker's cgroup says something (v1 threshold, v2 memory.events): the v1
 *     threshold is on usage, which counts page cache, and memory.stat lags the charge, so
 *     the private figure the soft limit compares may still be just below it and the
 *     threshold will not fire again; while usage stays above the limit and no decision was
 *     taken, the worker is re-read every 5 ms;
 *   - every 5 ms while the pool follows a worker (in handover, or waiting its turn to recycle
 *     for memory), whatever was decided for it.
 *
 * Each look reads the worker (mv_worker_read) and asks the pure policy (mv_policy_check); the
 * verdict goes up (on_check) and the pool acts on it. In observe-only mode ([limits] enforce
 * = no) every reason that applies is logged once per worker as would_recycle, and the
 * verdict going up is "keep".
 */
#ifndef MV_WATCH_H
#define MV_WATCH_H

#include <stdbool.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "policy.h"
#include "worker.h"

/* One watched worker (embedded in the pool's record of it). */
typedef struct mv_watched {
    mv_worker_t *w;
    struct mv_watched *next;
    bool near_soft;       /* usage is above the soft limit, the metric not yet: recheck */
    bool follow;          /* the pool follows it: recheck whatever was decided */
    unsigned would;       /* observe-only: reasons already logged as would_recycle */
    uint64_t slow_task;   /* [limits] task_warn: the task last said to be slow... */
    int64_t slow_next_ms; /* ...and the running time at which it is said again */
} mv_watched_t;

typedef struct mv_watch_events {
    /* A look at w: its reading (may be NULL) and the verdict. Returns whether a decision is
     * taken for it (recycling, queued, killed): then it is not rechecked. `sampled`: the
     * periodic sample (not an answer or a cgroup event). */
    bool (*on_check)(void *arg, mv_watched_t *ww, const mv_reading_t *r, mv_verdict_t v,
                     bool sampled);
} mv_watch_events_t;

typedef struct mv_watch {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_config_t *cfg;
    const mv_watch_events_t *ev;
    void *arg;
    mv_watched_t *list;
    uv_timer_t sampler, recheck;
    bool rechecking;
    unsigned open; /* handles not yet closed */
    void (*closed)(void *arg);
    void *closed_arg;
} mv_watch_t;

void mv_watch_init(mv_watch_t *wt, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                   const mv_watch_events_t *ev, void *arg);
/* Starts / stops watching a worker (from its start to its exit). */
void mv_watch_add(mv_watch_t *wt, mv_watched_t *ww, mv_worker_t *w);
void mv_watch_remove(mv_watch_t *wt, mv_watched_t *ww);
/* Looks at a worker now, with the reading taken at its answer (NULL when [tasks] accounting
 * is off: then the counts are checked, and memory waits for the sampler or the kernel). */
void mv_watch_check(mv_watch_t *wt, mv_watched_t *ww, const mv_reading_t *r);
/* Its cgroup said something: look now, and keep looking while it stays above the limit. */
void mv_watch_notified(mv_watch_t *wt, mv_watched_t *ww);
/* Follow it (on) or not: a followed worker is looked at every 5 ms while it serves, whatever
 * was decided for it (the pool bounds the memory of a worker in handover, or waiting its turn
 * to recycle, by [recycle] handover_headroom). */
void mv_watch_follow(mv_watch_t *wt, mv_watched_t *ww, bool on);
/* Observe-only: says once per worker and reason what would have happened. */
void mv_watch_would(mv_watch_t *wt, mv_watched_t *ww, mv_reason_t reason, const mv_reading_t *r);
/* A new configuration (reload): the sample interval and limits it reads. */
void mv_watch_reconfigure(mv_watch_t *wt, const mv_config_t *cfg);
/* Closes its timers; cb(arg) once both are closed. */
void mv_watch_close(mv_watch_t *wt, void (*cb)(void *arg), void *arg);

#endif
