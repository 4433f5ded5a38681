/*
 * pool_view: the pool's one read-only view (pool.h: mv_pool_view), for status, metrics,
 * run.json and the summary; part of the pool module, apart from the machinery it reads.
 */
#include "pool_int.h"

#include <stdlib.h>
#include <string.h>

/* In slot order, a slot's retiring worker after its new one. */
static int cmp_view(const void *a, const void *b)
{
    const mv_worker_view_t *x = a, *y = b;

    if (x->slot != y->slot)
        return x->slot - y->slot;
    return x->recycling - y->recycling;
}

/* What the view shows of any worker: who it is and its memory as read (r NULL: not read). */
static mv_worker_view_t view_of(const mv_pool_t *p, const mv_worker_t *w, const mv_reading_t *r,
                                uint64_t now)
{
    return (mv_worker_view_t){
        .slot = w->slot,
        .gen = w->gen,
        .pid = w->proc.pid,
        .state = w->gate.state == MV_GATE_WAITING ? "waiting_to_start" : mv_wstate_name(w->state),
        .age_s = w->spawned_ms ? (double)(now - w->spawned_ms) / 1000.0 : 0.0,
        .mem = r ? mv_reading_limit_metric(r, p->o.cfg->limits.metric) : -1,
        .usage = r ? r->usage : -1,
        .peak = w->mem.peak,
        .priv = r ? r->priv : -1,
        .rss = r ? r->rss : -1,
        .soft = w->lim.soft_bytes,
        .hard = w->lim.hard_bytes,
        .fds = r ? r->fds : -1,
    };
}

/* A worker that waits for a slot (a spare or a successor) into out[*n]: nothing samples it
 * (it is not watched), so it is read for the view; `waiting` names its state once ready. */
static void view_waiting(const mv_pool_t *p, mv_worker_t *w, bool ready, bool retire,
                         const char *waiting, uint64_t now, mv_worker_view_t *out, int *n)
{
    const mv_reading_t *r;

    if (w->state == MV_W_DEAD)
        return;
    r = mv_fsm_has_process(w->state) ? mv_worker_read(w, false) : NULL;
    out[*n] = view_of(p, w, r, now);
    if (ready && !retire)
        out[*n].state = waiting;
    out[(*n)++].recycling = retire;
}

/* The spares (slot 0) and the successors (their slots'): what they hold while they wait.
 * 0 or -ENOMEM. */
static int view_standby(const mv_pool_t *p, mv_pool_view_t *v, uint64_t now)
{
    const mv_succ_t *s = &p->succ;
    int n = 0;

    v->spares_started = p->spares.started;
    v->starting = p->gate.in;
    v->waiting_to_start = p->gate.waiting;
    v->spares_taken = p->spares.taken;
    v->spares_lost = p->spares.lost;
    for (const mv_spare_t *sp = p->spares.list; sp; sp = sp->next)
        n++;
    if (n && !(v->spares = calloc((size_t)n, sizeof *v->spares)))
        goto nomem;
    for (const mv_spare_t *sp = p->spares.list; sp; sp = sp->next)
        view_waiting(p, sp->w, sp->ready, sp->retire, "spare", now, v->spares, &v->nspares);
    if ((n = s->n) && !(v->successors = calloc((size_t)n, sizeof *v->successors)))
        goto nomem;
    for (int i = 0; i < s->n; i++)
        if (s->slot[i])
            view_waiting(p, s->slot[i]->w, s->slot[i]->w->state == MV_W_READY, s->slot[i]->retire,
                         "successor", now, v->successors, &v->nsuccessors);
    return 0;
nomem:
    mv_pool_view_free(v);
    return -ENOMEM;
}

int mv_pool_view(const mv_pool_t *p, mv_pool_view_t *v)
{
    uint64_t now = mv_now_ms();
    int n = 0;

    memset(v, 0, sizeof *v);
    for (const mv_member_t *m = p->members; m; m = m->next)
        n++;
    v->workers = calloc((size_t)(n ? n : 1), sizeof *v->workers);
    v->slot_peak = calloc((size_t)(p->nslots ? p->nslots : 1), sizeof *v->slot_peak);
    v->slot_live = calloc((size_t)(p->nslots ? p->nslots : 1), sizeof *v->slot_live);
    if (!v->workers || !v->slot_peak || !v->slot_live) {
        mv_pool_view_free(v);
        return -ENOMEM;
    }
    for (int i = 0; i < p->nslots; i++) {
        v->slot_peak[i] = p->slot[i].peak;
        v->slot_live[i] = !p->slots.slot[i].retired;
    }
    v->nslots = p->nslots;
    v->target = p->slots.live;
    v->live = mv_pool_live(p);
    v->spawned = p->spawned;
    v->child_recycles = p->child_recycles;
    v->requeued = p->dispatch.requeued;
    v->escalated = p->dispatch.escalated;
    v->protocol_errors = p->protocol_errors;
    v->suspects = p->suspect.suspects;
    v->suspects_by_kind = p->suspect.by_kind;
    v->nkinds = p->suspect.nkinds;
    v->recycles = p->recycles;
    mv_templates_view(&p->tmpl, &v->tmpl);
    for (const mv_member_t *m = p->members; m; m = m->next) {
        const mv_worker_t *w = m->w;
        const mv_reading_t *r = w->mem.have ? &w->mem.last : NULL;
        mv_worker_view_t *wv;
        mv_reason_t why = w->reason != MV_R_NONE ? w->reason : m->seat.queued;

        v->slot_peak[w->slot - 1] = MV_MAX(v->slot_peak[w->slot - 1], w->mem.peak);
        if (w->state == MV_W_DEAD)
            continue;
        wv = &v->workers[v->nworkers++];
        v->in_flight += w->count;
        *wv = view_of(p, w, r, now);
        wv->tasks = w->tasks_done;
        wv->in_flight = w->count;
        wv->active = p->slots.slot[w->slot - 1].active == &m->seat;
        wv->recycling = why != MV_R_NONE;
        wv->reason = why != MV_R_NONE ? mv_reason_name(why) : NULL;
        wv->handover = m->seat.handover;
        wv->task = w->count ? mv_worker_current(w)->id : 0;
        wv->task_s = w->count ? (double)(uv_hrtime() - w->win.started_ns) / 1e9 : 0.0;
    }
    qsort(v->workers, (size_t)v->nworkers, sizeof *v->workers, cmp_view);
    /* The figures a progress line shows (ticker.c). */
    v->top = -1;
    for (int i = 0; i < v->nworkers; i++) {
        v->busy += v->workers[i].in_flight > 0;
        if (v->workers[i].mem >= 0 && (v->top < 0 || v->workers[i].mem > v->workers[v->top].mem))
            v->top = i;
    }
    for (int r = 1; r < MV_R_COUNT; r++)
        v->recycled += mv_reason_recycles((mv_reason_t)r) ? p->recycles[r] : 0;
    return view_standby(p, v, now);
}

void mv_pool_view_free(mv_pool_view_t *v)
{
    free(v->workers);
    free(v->slot_peak);
    free(v->slot_live);
    free(v->spares);
    free(v->successors);
    v->successors = NULL;
    v->workers = NULL;
    v->slot_peak = NULL;
    v->slot_live = NULL;
    v->spares = NULL;
}
