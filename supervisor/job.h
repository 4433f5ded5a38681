/*
 * job: work for libuv's thread pool whose owner may go away before it is done (a worker that
 * dies while its cgroup is being made, its snapshot written or its mappings read). The owner
 * detaches; the job still finishes, and its done callback is told there is no owner any more
 * (and cleans up what its work made). Replaces four hand-made copies of that dance.
 *
 * A job is the first member of a larger struct the caller allocates with malloc; job.c frees
 * it after the done callback.
 */
#ifndef MV_JOB_H
#define MV_JOB_H

#include <uv.h>

typedef struct mv_job mv_job_t;

/* Runs in the thread pool: only the job's own data, no loop, no log. */
typedef void (*mv_job_fn)(mv_job_t *j);
/* Runs on the loop once the work is done (or was cancelled: `cancelled`); owner is NULL when
 * it detached. The job is freed right after. */
typedef void (*mv_job_done_fn)(mv_job_t *j, void *owner, int cancelled);

struct mv_job {
    uv_work_t req;
    mv_job_fn work;
    mv_job_done_fn done;
    void *owner;
    mv_job_t *next; /* riders: done in the same thread-pool run (mv_job_queue_all) */
};

/* Queues the job. 0, or -errno with nothing queued (the caller still owns and frees j). */
int mv_job_queue(uv_loop_t *loop, mv_job_t *j, mv_job_fn work, mv_job_done_fn done, void *owner);
/* Queues n jobs as one thread-pool run: the work of each in turn (jobs[0] first), then each
 * one's done callback with its own owner (each stays its own job: detached one by one). One
 * wake-up of a pool thread and one of the loop for all, where n jobs cost n of each (a
 * switch to another thread and back is a large part of a small job's CPU here). 0, or
 * -errno with nothing queued (the caller still owns and frees them). */
int mv_job_queue_all(uv_loop_t *loop, mv_job_t *const *jobs, int n, mv_job_fn work,
                     mv_job_done_fn done, void *const *owners);
/* The owner goes away: the done callback will see NULL. */
void mv_job_detach(mv_job_t *j);

#endif
