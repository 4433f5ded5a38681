/*
 * cgasync: a worker cgroup's creation and removal, off the loop. mkdir and rmdir take the
 * kernel's cgroup_mutex, which a concurrent migration can hold for an RCU grace period
 * (5-16 ms, CGROUP-FACTS §6), so both run in the thread pool (job.h).
 */
#ifndef MV_CGASYNC_H
#define MV_CGASYNC_H

#include <uv.h>

#include "cgroup.h"
#include "job.h"
#include "log.h"

/* The cgroup is made (result 0, *cg filled: the owner keeps it) or not (result -errno, why
 * says what failed). */
typedef void (*mv_cg_created_cb)(void *owner, int result, mv_cgw_t *cg, const char *why);

/* Makes <run>/w<slot>.<gen> with the run's settings as they are now. 0 (*job: detach it if
 * the owner goes first; the cgroup is then removed) or -errno (nothing queued). */
int mv_cg_create_async(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot, unsigned gen,
                       mv_cg_created_cb cb, void *owner, mv_job_t **job);
/* v1: more than this left charged to a gone worker's cgroup (page cache it wrote) and it is
 * not reused (mv_cg_reuse): two 256 KiB per-CPU charge batches, the grain a new cgroup's
 * figures move in on this 2-CPU machine anyway. */
#define MV_CG_REUSE_LEFT (512 * 1024)
/* At most this many cgroups reused in one thread-pool run (mv_cg_reuse_async). */
#define MV_CG_BATCH_MAX 8
/* mv_cg_create_async for n gone workers' cgroups kept[0..n-1] (mv_cg_reuse; the jobs take
 * them over: kept[] is cleared), reused as <run>/w<slot>.<gen + i>, all in one thread-pool
 * run (mv_job_queue_all: one wake-up of a pool thread and of the loop for n workers). Each
 * is its own job (jobs[i], owners[i]: detached or retargeted alone). When kept[0] cannot be
 * reused it is removed and a new one made: its callback then gets result 0 with `why`
 * saying why not (it is "" after a reuse); cg->inherited says which happened. Any other
 * that cannot be reused is removed and its callback gets -errno (why says why): its slot
 * makes that one when it needs it. 0 or -errno (nothing queued, kept[] untouched). */
int mv_cg_reuse_async(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot, unsigned gen,
                      mv_cgw_t *kept, int n, mv_cg_created_cb cb, void *const *owners,
                      mv_job_t **jobs);
/* Hands a creation job still under way to another owner and callback (a cgroup made ahead
 * for a worker that needs it now: cgahead.h). */
void mv_cg_create_retarget(mv_job_t *job, mv_cg_created_cb cb, void *owner);
/* Closes a worker cgroup's files now and removes its directory in the thread pool (killing
 * whatever its worker left in it); a failure is logged. */
void mv_cg_remove_async(uv_loop_t *loop, mv_log_t *log, mv_cgw_t *cg);
/* ...after giving what is in it `patient_ms` to leave by itself (mv_cg_remove_patient). */
void mv_cg_remove_async_patient(uv_loop_t *loop, mv_log_t *log, mv_cgw_t *cg, int patient_ms);

#endif
