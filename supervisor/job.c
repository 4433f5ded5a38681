/*
 * job: thread-pool work with a detachable owner.
 */
#include "job.h"

#include <errno.h>
#include <stdlib.h>

static void work_cb(uv_work_t *req)
{
    for (mv_job_t *j = req->data; j; j = j->next)
        j->work(j);
}

static void after_cb(uv_work_t *req, int status)
{
    mv_job_t *j = req->data, *next;

    for (; j; j = next) {
        next = j->next;
        j->done(j, j->owner, status == UV_ECANCELED);
        free(j);
    }
}

int mv_job_queue(uv_loop_t *loop, mv_job_t *j, mv_job_fn work, mv_job_done_fn done, void *owner)
{
    return mv_job_queue_all(loop, &j, 1, work, done, &owner);
}

int mv_job_queue_all(uv_loop_t *loop, mv_job_t *const *jobs, int n, mv_job_fn work,
                     mv_job_done_fn done, void *const *owners)
{
    if (n < 1)
        return -EINVAL;
    /* Linked before the queueing: a pool thread may run the chain at once. */
    for (int i = 0; i < n; i++) {
        jobs[i]->req.data = jobs[i];
        jobs[i]->work = work;
        jobs[i]->done = done;
        jobs[i]->owner = owners[i];
        jobs[i]->next = i + 1 < n ? jobs[i + 1] : NULL;
    }
    return uv_queue_work(loop, &jobs[0]->req, work_cb, after_cb);
}

void mv_job_detach(mv_job_t *j)
{
    j->owner = NULL;
}
