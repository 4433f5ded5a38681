/*
 * job: thread-pool work with a detachable owner.
 */
#include "job.h"

#include <stdlib.h>

static void work_cb(uv_work_t *req)
{
    mv_job_t *j = req->data;

    j->work(j);
}

static void after_cb(uv_work_t *req, int status)
{
    mv_job_t *j = req->data;

    j->done(j, j->owner, status == UV_ECANCELED);
    free(j);
}

int mv_job_queue(uv_loop_t *loop, mv_job_t *j, mv_job_fn work, mv_job_done_fn done, void *owner)
{
    j->req.data = j;
    j->work = work;
    j->done = done;
    j->owner = owner;
    return uv_queue_work(loop, &j->req, work_cb, after_cb);
}

void mv_job_detach(mv_job_t *j)
{
    j->owner = NULL;
}
