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
 * limit, since anon <= usage.
 *
 * Source /proc (the fallback, and the only one without a writable cgroup): /proc/PID/statm
 * through a kept fd (~0.6 us): rss = resident pages, private = resident - shared, which is
 * exactly RssAnon (anonymous memory, no file pages). `usage` (what the hard limit and peaks
 * use) is the private figure, the closest to what a cgroup would charge an exec'd worker.
 * There is no per-task peak counter, so the peak is the highest sample seen ("sampled").
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
} mv_meter_t;

/* Opens the kept fds for a worker's readings (cg may be NULL; anon_from: see group_priv).
 * 0 or -errno (it is gone). */
int mv_meter_open(mv_meter_t *m, pid_t pid, mv_cgw_t *cg, int64_t anon_from);
/* Takes a reading. 0 or -errno. */
int mv_meter_read(mv_meter_t *m, mv_reading_t *r);
/* Counts the worker's open fds; -1 when unknown. */
int mv_meter_fds(mv_meter_t *m);
void mv_meter_close(mv_meter_t *m);

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

#endif
