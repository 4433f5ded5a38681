/*
 * cgasync: cgroup creation and removal in the thread pool.
 */
#include "cgasync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct create_job {
    mv_job_t job;
    mv_cg_t conf; /* the run's settings at the request; shares the run's strings */
    int slot;
    unsigned gen;
    mv_cgw_t cg; /* made, or (reuse) the kept one to take first */
    bool reuse;
    bool fallback; /* reuse: a new one made when the kept one cannot be reused */
    int result;
    char why[256];
    mv_cg_created_cb cb;
    uv_loop_t *loop;
    mv_log_t *log;
} create_job_t;

/* A new v1 cgroup's soft-limit threshold, registered after its owner took it (cgroup.h,
 * mv_cg_create_later): through its cgroup.event_control opened at the mkdir (a reuse may
 * rename the cgroup meanwhile), on copies of its eventfd and usage file, which the
 * registration keeps what it needs of. */
typedef struct soft_job {
    mv_job_t job;
    char *path; /* for the log */
    int control_fd, notify_fd, usage_fd;
    int64_t soft;
    int result;
    char why[256];
    mv_log_t *log;
} soft_job_t;

typedef struct remove_job {
    mv_job_t job;
    mv_cg_version_t version;
    char *path;
    int patient_ms; /* mv_cg_remove_patient */
    int result;
    char why[256];
    mv_log_t *log;
} remove_job_t;

static void create_work(mv_job_t *j)
{
    create_job_t *c = (create_job_t *)j;
    char tmp[64], *path;

    if (c->reuse) {
        c->result =
            mv_cg_reuse(&c->conf, c->slot, c->gen, &c->cg, MV_CG_REUSE_LEFT, c->why, sizeof c->why);
        if (c->result == 0)
            return;
        /* Not reusable: removed (what is left in it killed), and a new one made; `why`
         * keeps the reason for the log. */
        path = c->cg.path;
        c->cg.path = NULL;
        mv_cg_close(&c->cg);
        if (path)
            mv_cg_remove(c->conf.version, path, tmp, sizeof tmp);
        free(path);
        if (!c->fallback) /* a rider of a batch: the slot makes its own when it comes to it */
            return;
        c->result = mv_cg_create_later(&c->conf, c->slot, c->gen, &c->cg, tmp, sizeof tmp);
        if (c->result < 0)
            snprintf(c->why, sizeof c->why, "%s", tmp);
        return;
    }
    c->result = mv_cg_create_later(&c->conf, c->slot, c->gen, &c->cg, c->why, sizeof c->why);
}

static void soft_work(mv_job_t *j)
{
    soft_job_t *s = (soft_job_t *)j;

    s->result = mv_cg_register_soft(s->control_fd, s->notify_fd, s->usage_fd, s->soft, s->why,
                                    sizeof s->why);
}

static void soft_done(mv_job_t *j, void *owner, int cancelled)
{
    soft_job_t *s = (soft_job_t *)j;

    (void)owner;
    /* Removed meanwhile (its worker gone): nothing to say. */
    if ((s->result < 0 && s->result != -ENOENT && s->result != -ENODEV) || cancelled)
        mv_warn(s->log, "soft_threshold_failed", MV_S("cgroup", s->path),
                MV_S("error", cancelled ? "the registration was cancelled" : s->why),
                MV_S("msg", "its soft limit is checked on readings of its memory only"));
    close(s->control_fd);
    close(s->notify_fd);
    close(s->usage_fd);
    free(s->path);
}

/* Registers the soft-limit threshold of a cgroup just made, off its owner's way. */
static void register_soft(create_job_t *c)
{
    soft_job_t *s = calloc(1, sizeof *s);
    mv_cgw_t *cg = &c->cg;

    if (s) {
        s->control_fd = cg->soft_control_fd; /* the job's now */
        cg->soft_control_fd = -1;
        s->path = strdup(cg->path);
        s->notify_fd = fcntl(cg->notify_fd, F_DUPFD_CLOEXEC, 0);
        s->usage_fd = fcntl(cg->usage_fd, F_DUPFD_CLOEXEC, 0);
        s->soft = cg->made_soft;
        s->log = c->log;
    }
    if (s && s->path && s->notify_fd >= 0 && s->usage_fd >= 0 &&
        mv_job_queue(c->loop, &s->job, soft_work, soft_done, NULL) == 0)
        return;
    mv_warn(c->log, "soft_threshold_failed", MV_S("cgroup", cg->path),
            MV_S("error", "cannot queue the registration"),
            MV_S("msg", "its soft limit is checked on readings of its memory only"));
    if (!s) {
        close(cg->soft_control_fd);
        cg->soft_control_fd = -1;
    } else {
        close(s->control_fd);
        if (s->notify_fd >= 0)
            close(s->notify_fd);
        if (s->usage_fd >= 0)
            close(s->usage_fd);
        free(s->path);
        free(s);
    }
}

static void create_done(mv_job_t *j, void *owner, int cancelled)
{
    create_job_t *c = (create_job_t *)j;

    if (cancelled && c->result == 0) {
        c->result = -ECANCELED;
        snprintf(c->why, sizeof c->why, "the cgroup job was cancelled");
    }
    if (c->reuse && c->result == 0) /* whoever takes it (cgahead's callback, or a worker) */
        mv_debug(c->log, "cgroup_reuse", MV_I("worker", c->slot), MV_I("gen", c->gen),
                 MV_S("cgroup", c->cg.path), MV_I("inherited", c->cg.inherited),
                 MV_S("not_reused", *c->why ? c->why : "-"));
    if (c->result < 0 && c->cg.path) { /* a kept one the job never ran on (cancelled) */
        mv_cg_remove_async(c->loop, c->log, &c->cg);
    }
    if (!owner) { /* its worker went away meanwhile */
        if (c->result == 0)
            mv_cg_remove_async(c->loop, c->log, &c->cg);
        return;
    }
    if (c->result == 0 && c->cg.soft_control_fd >= 0)
        register_soft(c);
    c->cb(owner, c->result, &c->cg, c->why);
}

static create_job_t *new_create(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot,
                                unsigned gen, mv_cg_created_cb cb)
{
    create_job_t *c = calloc(1, sizeof *c);

    if (c) {
        c->conf = *cg;
        c->slot = slot;
        c->gen = gen;
        c->cg.procs_fd = c->cg.notify_fd = c->cg.soft_control_fd = -1;
        c->fallback = true;
        c->cb = cb;
        c->loop = loop;
        c->log = log;
    }
    return c;
}

/* Queues the making (kept NULL, n 1) or the reuse of n kept cgroups as gen, gen + 1, ...
 * in one thread-pool run; only the first falls back to a new cgroup. */
static int queue_create(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot, unsigned gen,
                        mv_cgw_t *kept, int n, mv_cg_created_cb cb, void *const *owners,
                        mv_job_t **jobs)
{
    create_job_t *c[MV_CG_BATCH_MAX];
    int r = n >= 1 && n <= MV_CG_BATCH_MAX ? 0 : -EINVAL;

    for (int i = 0; r == 0 && i < n; i++) {
        if (!(c[i] = new_create(loop, log, cg, slot, gen + (unsigned)i, cb))) {
            while (i-- > 0)
                free(c[i]);
            r = -ENOMEM;
        }
    }
    if (r < 0)
        return r;
    for (int i = 0; i < n; i++) {
        jobs[i] = &c[i]->job;
        if (kept) {
            c[i]->cg = kept[i];
            c[i]->reuse = true;
            c[i]->fallback = i == 0;
        }
    }
    r = mv_job_queue_all(loop, jobs, n, create_work, create_done, owners);
    if (r < 0) {
        for (int i = 0; i < n; i++) {
            free(c[i]);
            jobs[i] = NULL;
        }
        return r;
    }
    for (int i = 0; kept && i < n; i++) /* the jobs have them now */
        mv_cg_forget(&kept[i]);
    return 0;
}

int mv_cg_create_async(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot, unsigned gen,
                       mv_cg_created_cb cb, void *owner, mv_job_t **job)
{
    return queue_create(loop, log, cg, slot, gen, NULL, 1, cb, &owner, job);
}

int mv_cg_reuse_async(uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int slot, unsigned gen,
                      mv_cgw_t *kept, int n, mv_cg_created_cb cb, void *const *owners,
                      mv_job_t **jobs)
{
    return queue_create(loop, log, cg, slot, gen, kept, n, cb, owners, jobs);
}

void mv_cg_create_retarget(mv_job_t *job, mv_cg_created_cb cb, void *owner)
{
    create_job_t *c = (create_job_t *)job;

    c->cb = cb;
    job->owner = owner;
}

static void remove_work(mv_job_t *j)
{
    remove_job_t *r = (remove_job_t *)j;

    r->result = mv_cg_remove_patient(r->version, r->path, r->patient_ms, r->why, sizeof r->why);
}

static void remove_done(mv_job_t *j, void *owner, int cancelled)
{
    remove_job_t *r = (remove_job_t *)j;

    if (r->result < 0 || cancelled)
        mv_warn(r->log, "cgroup_remove_failed", MV_S("cgroup", r->path),
                MV_S("error", cancelled ? "the removal was cancelled" : r->why));
    free(r->path);
}

void mv_cg_remove_async(uv_loop_t *loop, mv_log_t *log, mv_cgw_t *cg)
{
    mv_cg_remove_async_patient(loop, log, cg, 0);
}

void mv_cg_remove_async_patient(uv_loop_t *loop, mv_log_t *log, mv_cgw_t *cg, int patient_ms)
{
    remove_job_t *r = calloc(1, sizeof *r);

    if (r) {
        r->patient_ms = patient_ms;
        r->version = cg->version;
        r->path = cg->path; /* the job owns the path now */
        r->log = log;
        cg->path = NULL;
        if (mv_job_queue(loop, &r->job, remove_work, remove_done, NULL) < 0) {
            mv_warn(log, "cgroup_remove_failed", MV_S("cgroup", r->path),
                    MV_S("error", "cannot queue the removal"));
            free(r->path);
            free(r);
        }
    }
    mv_cg_close(cg);
}
