/*
 * succ: each slot's next worker, started ahead (see succ.h).
 */
#include "succ.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static mv_succ_rec_t *rec_of(const mv_worker_t *w)
{
    return w->data;
}

/* Asks a successor to leave; it is no longer its slot's. STOP while it waits (a clean exit),
 * SIGKILL when `now`; one with no process yet is dropped. */
static void retire(mv_succ_rec_t *r, mv_reason_t why, bool now)
{
    mv_succ_t *s = r->s;

    if (r->retire)
        return;
    r->retire = true;
    s->retired++;
    if (s->slot[r->slot - 1] == r)
        s->slot[r->slot - 1] = NULL;
    if (now || r->w->state == MV_W_PREPARING)
        mv_worker_kill(r->w, why);
    else
        mv_worker_drain(r->w, why);
}

/* ---- what a successor reports before it is adopted ---- */

static void sc_started(mv_worker_t *w)
{
    (void)w;
}

static void sc_ready(mv_worker_t *w)
{
    (void)w; /* its state says it (MV_W_READY): mv_succ_take reads that */
}

static void sc_answer(mv_worker_t *w, const mv_answer_t *a)
{
    (void)a; /* no task was sent: the channel refuses an answer with none in flight */
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sc_begin(mv_worker_t *w, mv_task_t *t)
{
    (void)t; /* its task goes with it (sc_gone) */
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sc_end(mv_worker_t *w, const mv_answer_t *a)
{
    mv_task_free(a->task);
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sc_snapshot(mv_worker_t *w, const uint8_t *payload, size_t len)
{
    (void)w, (void)payload, (void)len; /* never asked */
}

static void sc_notify(mv_worker_t *w)
{
    rec_of(w)->notified = true;
}

static void sc_deadline(mv_worker_t *w, mv_deadline_t what)
{
    if (what != MV_DL_READY)
        return;
    mv_warn(w->o.log, "ready_timeout", MV_I("worker", w->slot), MV_I("gen", w->gen),
            MV_I("pid", w->proc.pid), MV_I("after_ms", w->o.cfg->worker.ready_timeout),
            MV_S("successor", "yes"));
    mv_worker_fault(w, MV_R_READY_TIMEOUT);
}

static void sc_error(mv_worker_t *w, const char *what)
{
    mv_warn(w->o.log, "protocol_error", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_S("error", what), MV_S("successor", "yes"));
    mv_worker_fault(w, MV_R_PROTOCOL_ERROR);
}

static void sc_gone(mv_worker_t *w, const mv_gone_t *g)
{
    mv_succ_rec_t *r = rec_of(w);
    mv_succ_t *s = r->s;

    for (unsigned i = 0; i < g->ntasks; i++)
        mv_task_free(g->tasks[i]); /* requests it began: nobody else knows them */
    if (r->retire || s->stopping)
        return;
    /* Died, or could not start, while it waited: the slot's next worker starts the ordinary
     * way, which has the crash backoff and crash_limit (succ.h). */
    s->lost++;
    s->slot[r->slot - 1] = NULL;
    s->plain[r->slot - 1] = true;
    r->retire = true;
    mv_warn(w->o.log, "successor_gone", MV_I("worker", w->slot), MV_I("gen", w->gen),
            MV_I("pid", w->proc.pid), MV_I("status", g->status),
            MV_S("error", g->spawn_error ? g->spawn_error : mv_reason_name(g->verdict.reason)));
    if (g->verdict.failure && s->ev->on_failed)
        s->ev->on_failed(s->arg, w, g);
}

static void sc_closed(mv_worker_t *w)
{
    mv_succ_rec_t *r = rec_of(w);
    mv_succ_t *s = r->s;

    if (s->slot[r->slot - 1] == r) /* closed without being gone (dropped while PREPARING) */
        s->slot[r->slot - 1] = NULL;
    mv_worker_free(w);
    free(r);
    s->open--;
    s->ev->on_closed(s->arg);
}

static const mv_worker_events_t succ_events = {
    .on_started = sc_started,
    .on_ready = sc_ready,
    .on_answer = sc_answer,
    .on_begin = sc_begin,
    .on_end = sc_end,
    .on_snapshot = sc_snapshot,
    .on_notify = sc_notify,
    .on_deadline = sc_deadline,
    .on_error = sc_error,
    .on_gone = sc_gone,
    .on_closed = sc_closed,
};

/* ---- public ---- */

int mv_succ_init(mv_succ_t *s, const mv_worker_opts_t *wo, mv_cgahead_t *ahead, int nslots, bool on,
                 const mv_succ_events_t *ev, void *arg)
{
    memset(s, 0, sizeof *s);
    s->wo = *wo;
    s->wo.timeline = NULL; /* no points until it is adopted */
    s->ahead = ahead;
    s->ev = ev;
    s->arg = arg;
    s->on = on;
    s->n = nslots;
    s->slot = calloc((size_t)nslots, sizeof *s->slot);
    s->plain = calloc((size_t)nslots, sizeof *s->plain);
    if (!s->slot || !s->plain) {
        mv_succ_free(s);
        return -ENOMEM;
    }
    return 0;
}

void mv_succ_free(mv_succ_t *s)
{
    free(s->slot);
    free(s->plain);
    s->slot = NULL;
    s->plain = NULL;
    s->n = 0;
}

bool mv_succ_may_start(const mv_succ_t *s, int slot)
{
    return s->on && !s->stopping && slot >= 1 && slot <= s->n && !s->slot[slot - 1] &&
           !s->plain[slot - 1];
}

bool mv_succ_start(mv_succ_t *s, int slot, uint32_t gen, const mv_wlimits_t *lim)
{
    mv_succ_rec_t *r;

    if (!mv_succ_may_start(s, slot) || !(r = calloc(1, sizeof *r)))
        return false; /* the slot's next worker starts the ordinary way */
    r->s = s;
    r->slot = slot;
    r->w = mv_worker_new(&s->wo, slot, gen, lim, &succ_events, r);
    if (!r->w) {
        free(r);
        return false;
    }
    r->w->hold_go = true;
    s->slot[slot - 1] = r;
    s->open++;
    s->started++;
    mv_worker_start_ahead(r->w, s->ahead); /* it may be gone (sc_gone) before this returns */
    return s->slot[slot - 1] == r;
}

mv_succ_taken_t mv_succ_take(mv_succ_t *s, int slot)
{
    mv_succ_taken_t t = {0};
    mv_succ_rec_t *r;
    mv_worker_t *w;

    if (slot < 1 || slot > s->n)
        return t;
    r = s->slot[slot - 1];
    s->plain[slot - 1] = false; /* this start is the slot's ordinary one, or a successor's */
    if (!r)
        return t;
    w = r->w;
    if (mv_worker_leaving(w) ||
        (w->state != MV_W_PREPARING && w->state != MV_W_SPAWNING && w->state != MV_W_READY)) {
        retire(r, MV_R_REQUESTED, false);
        return t;
    }
    s->slot[slot - 1] = NULL;
    s->open--;
    s->taken++;
    t.w = w;
    t.ready = w->state == MV_W_READY;
    t.started = w->state != MV_W_PREPARING;
    t.notified = r->notified;
    free(r);
    return t;
}

void mv_succ_reconfigure(mv_succ_t *s, const mv_worker_opts_t *wo, bool on)
{
    s->wo = *wo;
    s->wo.timeline = NULL;
    s->on = on;
    for (int i = 0; i < s->n; i++) {
        s->plain[i] = false;
        if (s->slot[i])
            retire(s->slot[i], MV_R_REQUESTED, false);
    }
}

void mv_succ_stop(mv_succ_t *s, bool graceful)
{
    s->stopping = true;
    for (int i = 0; i < s->n; i++)
        if (s->slot[i])
            retire(s->slot[i], MV_R_SHUTDOWN, !graceful);
}

int mv_succ_grow(mv_succ_t *s, int n)
{
    mv_succ_rec_t **slot;
    bool *plain;

    if (n <= s->n)
        return 0;
    if (!(slot = calloc((size_t)n, sizeof *slot)) || !(plain = calloc((size_t)n, sizeof *plain))) {
        free(slot);
        return -ENOMEM;
    }
    memcpy(slot, s->slot, (size_t)s->n * sizeof *slot);
    memcpy(plain, s->plain, (size_t)s->n * sizeof *plain);
    free(s->slot);
    free(s->plain);
    s->slot = slot;
    s->plain = plain;
    s->n = n;
    return 0;
}

void mv_succ_retire_slot(mv_succ_t *s, int slot)
{
    if (slot < 1 || slot > s->n)
        return;
    s->plain[slot - 1] = false;
    if (s->slot[slot - 1])
        retire(s->slot[slot - 1], MV_R_REQUESTED, false);
}

bool mv_succ_done(const mv_succ_t *s)
{
    return s->open == 0;
}

int mv_succ_waiting(const mv_succ_t *s)
{
    int n = 0;

    for (int i = 0; i < s->n; i++)
        n += s->slot[i] != NULL;
    return n;
}
