/*
 * meter: every memory reading of a worker goes through here, so the policy sees one kind of
 * figure whatever its source.
 *
 * Per-task figures need page accuracy: `priv` is always the worker process's own anonymous
 * memory from statm. (v1's memory.stat lags the charges by up to 64 pages a CPU, which moves
 * one task's growth into a later task's figures.)
 *
 * With a cgroup (cgroup.h): usage = what the kernel charges the worker's cgroup (all its
 * processes, page cache included: what the hard limit applies to), peak = the kernel's
 * per-task peak, and group_priv = the whole cgroup's anonymous memory (children included),
 * which the soft limit compares; memory.stat is read for it only once usage reaches the soft
 * limit, since anon <= usage, and only for the private metric (anon_from 0 at open: never).
 * usage itself is no per-task figure: while the kernel peak shows it below every limit it
 * is compared with, a reading carries the usage read < 10 ms before (usage_fresh false).
 *
 * Cost per reading on this machine (bench/accounting, docs/recycling.md): statm ~1.2 us,
 * usage ~0.9, peak ~0.8, fds ~0.5, and the peak reset at a task's start ~0.6.
 *
 * Source /proc (the fallback, and the only one without a writable cgroup): /proc/PID/statm
 * through a kept fd (~0.6 us): rss = resident pages, private = resident - shared, which is
 * exactly RssAnon (anonymous memory, no file pages). `usage` (what the hard limit and peaks
 * use) is the private figure, the closest to what a cgroup would charge an exec'd worker.
 * There is no per-task peak counter there.
 *
 * The process's own peak: where the cgroup has no peak counter that can be reset per task
 * (v2 before 6.12, or no cgroup), the worker's resident high-water mark (VmHWM in
 * /proc/PID/status) is reset at each task's start by writing "5" to /proc/PID/clear_refs
 * (Linux >= 4.0; it only takes the mm's lock, no page walk) and read at its end: how far
 * the task's resident memory rose above where it began.
 *
 * Open fds: fstat of a kept O_PATH fd of /proc/PID/fd gives the count in st_size since Linux
 * 6.2 (~0.25 us); older kernels report 0 there and we count the directory instead.
 */
#ifndef MV_METER_H
#define MV_METER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "config.h"

typedef struct mv_reading {
    int64_t rss;        /* resident bytes */
    int64_t priv;       /* private (anonymous) bytes */
    int64_t usage;      /* what a hard limit is compared with: cgroup usage, or private */
    int64_t peak;       /* peak usage since the last reset, -1 = none (sampled) */
    int64_t group_priv; /* the cgroup's anonymous memory (usage below soft: not read, the
                         * private figure capped by usage); -1 = no cgroup */
    int fds;            /* open fds, -1 = unknown */
    bool usage_fresh;   /* false: usage carried from a read < 10 ms old (mv_cg_read) */
} mv_reading_t;

typedef struct mv_meter {
    mv_cgw_t *cg;      /* the worker's cgroup, or NULL: /proc only */
    int64_t anon_from; /* usage from which the cgroup's anon is read (the soft limit) */
    pid_t pid;
    int statm_fd;
    long page_size;
    char fd_dir[32];
    int fd_dir_fd;         /* O_PATH fd of fd_dir */
    bool fd_count_by_stat; /* st_size works (>= 6.2) */
    int status_fd;         /* /proc/PID/status (VmHWM), -1 = the cgroup has a resettable peak */
    int clear_refs_fd;     /* /proc/PID/clear_refs, write-only, -1 likewise or not allowed */
} mv_meter_t;

/* Opens the kept fds for a worker's readings (cg may be NULL; anon_from: see group_priv, 0
 * or less = never). 0 or -errno (it is gone). */
int mv_meter_open(mv_meter_t *m, pid_t pid, mv_cgw_t *cg, int64_t anon_from);
/* Takes a reading. 0 or -errno. */
int mv_meter_read(mv_meter_t *m, mv_reading_t *r);
/* Counts the worker's open fds; -1 when unknown. */
int mv_meter_fds(mv_meter_t *m);
void mv_meter_close(mv_meter_t *m);
/* Resets the process's resident high-water mark to its current resident size. 0, or -errno
 * (-ENOTSUP: the cgroup's peak serves instead, or the process's is not ours to reset). */
int mv_meter_reset_hwm(mv_meter_t *m);
/* The process's resident high-water mark (bytes), -1 when it cannot be read. */
int64_t mv_meter_hwm(mv_meter_t *m);

/* The figure of a task's memory (mem_before/mem_after): the process's private memory, or
 * rss. */
static inline int64_t mv_reading_task_metric(const mv_reading_t *r, mv_metric_t metric)
{
    return metric == MV_METRIC_RSS ? r->rss : r->priv;
}

/* The figure the soft limit compares: private (the cgroup's; when not read, the process's
 * capped by the cgroup's usage, itself below the limit then) or rss. */
static inline int64_t mv_reading_limit_metric(const mv_reading_t *r, mv_metric_t metric)
{
    if (metric == MV_METRIC_RSS)
        return r->rss;
    return r->group_priv >= 0 ? r->group_priv : r->priv;
}

/* Parses /proc/PID/statm text. 0 or -EINVAL. */
int mv_meter_parse_statm(const char *text, long page_size, int64_t *rss, int64_t *priv);
/* The VmHWM line of /proc/PID/status text, in bytes. 0 or -EINVAL (absent: a kernel thread,
 * a zombie). */
int mv_meter_parse_hwm(const char *text, int64_t *bytes);

#endif
