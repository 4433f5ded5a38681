/*
 * cgahead: each slot's next worker cgroup, made ahead (see cgahead.h).
 */
#include "cgahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cgasync.h"

int mv_cgahead_init(mv_cgahead_t *a, uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int nslots,
                    bool on)
{
    memset(a, 0, sizeof *a);
    a->loop = loop;
    a->log = log;
    a->cg = cg;
    a->on = on && cg && cg->version != MV_CG_OFF;
    a->slot = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *a->slot);
    if (!a->slot)
        return -ENOMEM;
    a->n = nslots;
    for (int i = 0; i < nslots; i++)
        a->slot[i].ahead = a;
    return 0;
}

/* Lets go of what a slot holds: a made cgroup is removed in the thread pool, one being made
 * is removed when its job ends (the job sees no owner). */
static void release(mv_cgnext_t *x)
{
    x->queued = false;
    if (x->job) {
        mv_job_detach(x->job);
        x->job = NULL;
    }
    if (x->ready) {
        x->ready = false;
        x->ahead->dropped++;
        mv_cg_remove_async(x->ahead->loop, x->ahead->log, &x->cg);
    }
    x->gen = 0;
}

static void pump(mv_cgahead_t *a);

static void made_cb(void *owner, int result, mv_cgw_t *cg, const char *why)
{
    mv_cgnext_t *x = owner;

    x->job = NULL;
    pump(x->ahead);
    if (result < 0) {
        /* The spawn path will make it again, and say what fails then. */
        mv_debug(x->ahead->log, "cgroup_ahead_failed",
                 MV_I("worker", (int)(x - x->ahead->slot) + 1), MV_I("gen", x->gen),
                 MV_S("error", why));
        x->gen = 0;
        return;
    }
    x->cg = *cg;
    x->ready = true;
    x->ahead->made++;
    x->ahead->reused += cg->inherited >= 0;
    /* inherited: what its earlier workers left charged to a reused one (-1: a new one;
     * `not_reused` says why a kept one was not). */
    mv_debug(x->ahead->log, "cgroup_ahead", MV_I("worker", (int)(x - x->ahead->slot) + 1),
             MV_I("gen", x->gen), MV_S("cgroup", cg->path), MV_I("inherited", cg->inherited),
             MV_S("not_reused", why && *why ? why : "-"));
}

/* Starts making a slot's requested cgroup: a kept one renamed, or a new one. */
static void make(mv_cgahead_t *a, mv_cgnext_t *x)
{
    int slot = (int)(x - a->slot) + 1;

    x->queued = false;
    if (x->nkept > 0) {
        if (mv_cg_reuse_async(a->loop, a->log, a->cg, slot, x->gen, &x->kept[x->nkept - 1], made_cb,
                              x, &x->job) == 0) {
            x->nkept--;
            return;
        }
    }
    if (mv_cg_create_async(a->loop, a->log, a->cg, slot, x->gen, made_cb, x, &x->job) < 0)
        x->gen = 0;
}

static int making(const mv_cgahead_t *a)
{
    int n = 0;

    for (int i = 0; i < a->n; i++)
        n += a->slot[i].job != NULL;
    return n;
}

/* Starts queued requests while fewer than MV_CGAHEAD_JOBS are being made, in turn from the
 * slot after the last one started (a slot that recycles often does not keep the others
 * waiting). */
static void pump(mv_cgahead_t *a)
{
    int busy = making(a);

    for (int k = 0; k < a->n && busy < MV_CGAHEAD_JOBS; k++) {
        mv_cgnext_t *x = &a->slot[(a->turn + k) % a->n];
        if (!x->queued)
            continue;
        make(a, x);
        busy += x->job != NULL;
        a->turn = (int)(x - a->slot) + 1;
    }
}

void mv_cgahead_prepare(mv_cgahead_t *a, int slot, uint32_t gen)
{
    mv_cgnext_t *x;

    if (!a->on || slot < 1 || slot > a->n)
        return;
    x = &a->slot[slot - 1];
    if (x->gen == gen)
        return;
    release(x);
    x->gen = gen;
    x->queued = true;
    pump(a);
}

bool mv_cgahead_keep(mv_cgahead_t *a, int slot, mv_cgw_t *cg)
{
    mv_cgnext_t *x;

    if (!a->on || slot < 1 || slot > a->n || !mv_cg_reusable(a->cg, cg))
        return false;
    x = &a->slot[slot - 1];
    if (x->nkept >= MV_CGAHEAD_KEEP)
        return false;
    if (!x->kept && !(x->kept = calloc(MV_CGAHEAD_KEEP, sizeof *x->kept)))
        return false;
    x->kept[x->nkept++] = *cg;
    mv_cg_forget(cg);
    return true;
}

int mv_cgahead_take(mv_cgahead_t *a, int slot, uint32_t gen, mv_cgw_t *out, mv_job_t **job)
{
    mv_cgnext_t *x;

    if (slot < 1 || slot > a->n)
        return MV_AHEAD_NONE;
    x = &a->slot[slot - 1];
    if (x->gen != gen) {
        release(x);
        return MV_AHEAD_NONE;
    }
    x->gen = 0;
    if (x->job) {
        *job = x->job;
        x->job = NULL;
        a->used++;
        pump(a); /* the job is the caller's now */
        return MV_AHEAD_MAKING;
    }
    x->queued = false;
    if (!x->ready)
        return MV_AHEAD_NONE;
    *out = x->cg;
    memset(&x->cg, 0, sizeof x->cg);
    x->ready = false;
    a->used++;
    return MV_AHEAD_READY;
}

bool mv_cgahead_holds(const mv_cgahead_t *a, int slot, uint32_t gen)
{
    return slot >= 1 && slot <= a->n && gen != 0 && a->slot[slot - 1].gen == gen;
}

void mv_cgahead_drop(mv_cgahead_t *a, bool on)
{
    for (int i = 0; i < a->n; i++) {
        mv_cgnext_t *x = &a->slot[i];
        release(x);
        while (x->nkept > 0)
            mv_cg_remove_async(a->loop, a->log, &x->kept[--x->nkept]);
        free(x->kept);
        x->kept = NULL;
    }
    a->on = on && a->cg && a->cg->version != MV_CG_OFF;
}

void mv_cgahead_free(mv_cgahead_t *a)
{
    if (!a->slot)
        return;
    mv_cgahead_drop(a, false);
    free(a->slot);
    a->slot = NULL;
    a->n = 0;
}
