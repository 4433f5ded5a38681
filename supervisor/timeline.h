/*
 * timeline: the run's memory over time (docs/run-files.md, "timeline.csv"): per worker slot
 * and generation, points (usage, private, rss, live heap, the task in hand) and marks (spawn
 * with the generation's limits, recycle, kill, OOM, exit, each with its reason).
 *
 * The loop only copies a fixed-size record into a buffer (mv_timeline_point/_mark: a memcpy,
 * no syscall, no formatting). A libuv thread-pool job formats a batch as text lines and
 * appends them to the file, every 250 ms, at 64 KiB of records, and at close; one job at a
 * time, so lines keep their order.
 *
 * Bounded for long runs: once the file passes `max_bytes`, the job rewrites it (NAME.new +
 * rename) with the oldest three quarters of its points decimated: per generation, each run
 * of 4 consecutive points becomes its lowest- and highest-usage point (a min/max envelope,
 * so peaks and the sawtooth survive), the most recent quarter untouched. Repeated rewrites
 * make older periods coarser, the recent ones stay at full resolution; passes repeat until the
 * file is within 3/4 of the bound. Marks, and the first point of every generation, are
 * never folded. When folding cannot hold the bound (generations of a few points each, a
 * run that recycles constantly: their marks alone outgrow it), the oldest rows are cut
 * instead, down to half the bound: the file then starts later. Records waiting for the job
 * are bounded too (1 MiB): past that, points are dropped and counted (marks still queue).
 *
 * Threads: the loop owns `pending`, the counters and the handles; a job owns `batch`, `fd`
 * and the file while it runs; they meet only in the after-work callback (on the loop).
 */
#ifndef MV_TIMELINE_H
#define MV_TIMELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "util.h"

#define MV_TIMELINE_FILE    "timeline.csv"
#define MV_TIMELINE_VERSION 1
#define MV_TIMELINE_MAX     (32 * 1024 * 1024) /* default bound of the file, bytes */

/* One reading of one worker. Unknown figures are -1; task 0 = no task in hand. */
typedef struct mv_tl_point {
    int slot;     /* 1-based */
    uint32_t gen; /* generation within the slot */
    int64_t usage, priv, rss;
    int64_t heap; /* live heap bytes (preload or worker library); -1 = none */
    uint64_t task;
} mv_tl_point_t;

/* What a mark says happened to a generation. */
typedef enum {
    MV_TL_SPAWN,   /* started, with its limits */
    MV_TL_RECYCLE, /* a recycle was decided (drain, or stop): reason says why */
    MV_TL_KILL,    /* killed by memvisor (hard limit, timeout, shutdown...) */
    MV_TL_OOM,     /* killed by the kernel's OOM killer in its cgroup */
    MV_TL_EXIT,    /* the process is gone: reason as the exit event's */
    MV_TL_COUNT
} mv_tl_what_t;

typedef struct mv_tl_mark {
    int slot;
    uint32_t gen;
    mv_tl_what_t what;
    const char *reason; /* copied (up to 31 bytes, [a-z0-9_] kept); NULL = none */
    int pid;            /* 0 = unknown */
    int64_t soft, hard; /* the generation's limits in bytes, 0 = off, -1 = not said */
    uint64_t task;      /* the task in hand, 0 = none */
} mv_tl_mark_t;

typedef void (*mv_timeline_cb)(void *arg);

typedef struct mv_timeline_opts {
    int64_t max_bytes; /* bound of the file; 0 = MV_TIMELINE_MAX; at least 4096 */
    uint64_t flush_ms; /* period of the writer job; 0 = 250 */
} mv_timeline_opts_t;

typedef struct mv_timeline {
    uv_loop_t *loop;
    char *path;          /* <run dir>/timeline.csv; NULL when closed or never opened */
    int fd;              /* the job's (O_APPEND), -1 = none */
    uint64_t epoch_mono; /* mv_now_ms() at open: t = now - epoch_mono */
    int64_t max_bytes;
    mv_buf_t pending;                /* records not yet handed to a job (loop) */
    mv_buf_t batch;                  /* records of the job in flight (job) */
    mv_buf_t text;                   /* the job's formatted lines (job) */
    int64_t file_bytes, file_points; /* what the file holds (job) */
    int64_t rewrite_at;              /* file_bytes that start a rewrite (job) */
    uv_work_t work;
    uv_timer_t timer;
    bool timer_open, working, final, closing;
    int job_error, error;            /* the job's, and the first one kept (negative errno) */
    uint64_t points, marks, dropped; /* counted on the loop */
    uint64_t rewrites, cuts;         /* counted by the job: passes, and cuts of the oldest rows */
    mv_timeline_cb on_closed;
    void *arg;
} mv_timeline_t;

/* Creates <run_dir>/timeline.csv (truncating) with its header, and starts the flush timer
 * (unref'd: it never keeps the loop alive). opts may be NULL. 0 or -errno; on error nothing
 * is open and point/mark/close do nothing (as on a zeroed mv_timeline_t: open means `path`
 * is set). */
int mv_timeline_open(mv_timeline_t *tl, uv_loop_t *loop, const char *run_dir,
                     const mv_timeline_opts_t *opts);
/* Queues one point, stamped now. Cheap: a copy into a buffer. */
void mv_timeline_point(mv_timeline_t *tl, const mv_tl_point_t *p);
/* Queues one mark, stamped now; marks are never dropped (only lost to ENOMEM, then counted
 * in `error`). */
void mv_timeline_mark(mv_timeline_t *tl, const mv_tl_mark_t *m);
/* Writes what is queued, fsyncs, closes the file and the timer, then calls cb (may be NULL)
 * from the loop; at once when nothing was open. tl must live until then. */
void mv_timeline_close(mv_timeline_t *tl, mv_timeline_cb cb, void *arg);
/* Frees the buffers (after close's callback, or after a failed open). */
void mv_timeline_free(mv_timeline_t *tl);

/* The name of a mark kind in the file ("spawn", "recycle", "kill", "oom", "exit"); "?". */
const char *mv_tl_what_name(mv_tl_what_t w);

/* Rewrites the timeline file `in` into `out` as the bound asks (exposed for tests): the
 * first `keep_from` point rows decimated, the rest copied. Returns the point rows written,
 * or -errno. *bytes gets the bytes written. Pure file I/O, no loop. */
int64_t mv_timeline_decimate(const char *in, const char *out, int64_t keep_from, int64_t *bytes);
/* Rewrites `in` into `out` without its oldest rows: the header lines ('#') kept, then rows
 * skipped until at least `drop` bytes of them are, the rest copied. Returns the point rows
 * written, or -errno; *bytes gets the bytes written. */
int64_t mv_timeline_cut(const char *in, const char *out, int64_t drop, int64_t *bytes);

#endif
