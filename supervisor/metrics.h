/*
 * metrics: the Prometheus text exposition format (version 0.0.4) of a plain view of the
 * supervisor, a pure function so that its output can be checked with plain inputs (and with
 * prometheus_client's own parser in the tests).
 *
 * Series are labelled by what stays put across recycles: the slot (never the pid or the
 * state), the task status, the recycle reason, the task kind. So a recycle updates a slot's
 * series (its generation gauge goes up) instead of starting new ones, and a dashboard's
 * lines are one per slot. Unknown figures (-1) are left out rather than written as -1.
 *
 * Families (all prefixed memvisor_):
 *   worker_up, worker_generation, worker_memory_soft_limit_bytes,
 *   worker_memory_hard_limit_bytes (0 = off), worker_memory_bytes (what the soft limit
 *   compares), worker_usage_bytes, worker_private_bytes, worker_rss_bytes,
 *   worker_peak_bytes, worker_tasks, worker_age_seconds          gauges, {slot}
 *   tasks_total {status}, recycles_total {reason}, leak_suspects_total {kind},
 *   workers_spawned_total, reloads_total, child_recycles_total    counters
 *   workers, workers_target, queue_depth, tasks_in_flight, uptime_seconds  gauges
 *   dispatch_paused {reason}, host_memory_available_bytes,
 *   host_memory_pause_threshold_bytes                              gauges
 *   orphans_reaped_total                                           counter
 *   template_up, template_generation, template_memory_bytes, template_usage_bytes,
 *   template_peak_bytes                                            gauges
 *   template_forks_total, template_replaced_total                  counters
 *   (the template families only with [worker] template = yes)
 */
#ifndef MV_METRICS_H
#define MV_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* One worker slot, as its serving worker (the newest generation) stands. */
typedef struct mv_metrics_slot {
    int slot;           /* 1-based */
    bool up;            /* a worker serves the slot now */
    uint32_t gen;       /* its generation (0 = none yet) */
    int64_t soft, hard; /* its limits, bytes; 0 = off */
    int64_t mem;        /* the figure the soft limit compares ([limits] metric); -1 = unknown */
    int64_t usage, priv, rss, peak; /* bytes; -1 = unknown */
    int64_t tasks;                  /* tasks this generation finished; -1 = unknown */
    double age_s;                   /* since its spawn; < 0 = unknown */
} mv_metrics_slot_t;

/* A labelled counter value: status, reason or kind -> count. */
typedef struct mv_metrics_count {
    const char *label; /* any bytes: escaped, and made valid UTF-8 */
    uint64_t n;
} mv_metrics_count_t;

/* The warm template (docs/templates.md). */
typedef struct mv_metrics_template {
    bool up;                  /* a template serves forks now */
    uint32_t gen;             /* its generation */
    int64_t mem, usage, peak; /* bytes; -1 = unknown */
    uint64_t forks, replaced; /* workers forked; templates replaced (grown, reloaded) */
} mv_metrics_template_t;

/* Everything the exposition shows. Arrays are borrowed; n = 0 leaves a family empty (its
 * HELP and TYPE lines stay). List every reason and status, zeros too: a series that exists
 * from the start makes rate() right from the first recycle. */
typedef struct mv_metrics_view {
    const mv_metrics_slot_t *slots;
    size_t nslots;
    const mv_metrics_count_t *tasks; /* by status */
    size_t ntasks;
    const mv_metrics_count_t *recycles; /* by reason */
    size_t nrecycles;
    const mv_metrics_count_t *suspects; /* leak suspects by task kind */
    size_t nsuspects;
    uint64_t spawned, reloads;
    int64_t workers, queue, in_flight; /* -1 = unknown */
    int target; /* worker slots kept ([supervisor] workers, as scaled); 0 = not said */
    double uptime_s;
    int64_t spares, spares_usage;         /* spares (spares.h) ready or starting; their usage */
    int64_t successors, successors_usage; /* successors (succ.h) waiting; their usage */
    int64_t starting, waiting_to_start;   /* at the start gate ([supervisor] max_starting) */
    /* The pause tier ([supervisor] pause_below) and the subreaper. */
    bool paused_host, paused_results;       /* new tasks held back: host memory, results writer */
    bool have_host;                         /* the host's memory was read (else left out) */
    int64_t host_available, host_threshold; /* bytes */
    uint64_t orphans_reaped;
    const mv_metrics_template_t *tmpl; /* NULL: no template */
    uint64_t child_recycles;           /* [recycle] target = child: children told to stop */
} mv_metrics_view_t;

/* Appends the exposition text of v to out. 0 or -ENOMEM. */
int mv_metrics_render(const mv_metrics_view_t *v, mv_buf_t *out);

/* The Content-Type of that text. */
#define MV_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
