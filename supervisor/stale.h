/*
 * stale: the cgroup run directories (<base>/memvisor-<pid>[-<k>]) of memvisor runs that died.
 *
 * A run holds an flock on its run directory for as long as it lives (cgroup.c, runlock.h).
 * "Dead" means that lock is free, never "its pid is gone": a memvisor in another pid
 * namespace sharing the base has a pid that names nothing here, or something else, and must
 * keep its workers; pids are reused. What a dead run left (a worker's own children, or the
 * workers of a memvisor that had no parent-death signal) is killed, then its cgroups are
 * removed, and each removal is logged (event=stale_run_removed).
 *
 * Setup only (before the loop runs): the rmdir retries sleep.
 */
#ifndef MV_STALE_H
#define MV_STALE_H

#include <stddef.h>

#include "cgroup.h"
#include "log.h"

/* Serializes the starts of the runs sharing `base`: an flock on the base itself, held while
 * dead runs are removed and this run makes and locks its own run directory, so a cleaner
 * never meets a directory that another run has made but not locked yet. Bounded (10 s), after
 * which the caller goes on without it. The fd to close when done, or -1. */
int mv_cg_lock_base(const char *base);
/* Removes the run directories under cg->base whose lock is free, killing what is left in
 * them first. The first one that cannot be removed is said in `why`. `log` may be NULL. */
void mv_cg_remove_stale(const mv_cg_t *cg, mv_log_t *log, char *why, size_t n);

#endif
