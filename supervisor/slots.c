/*
 * slots: the pool's pure bookkeeping (see slots.h).
 */
#include "slots.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int mv_slots_init(mv_slots_t *s, int nslots, const mv_slots_cfg_t *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->slot = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *s->slot);
    if (!s->slot)
        return -ENOMEM;
    s->n = nslots;
    s->live = nslots;
    return 0;
}

void mv_slots_free(mv_slots_t *s)
{
    free(s->slot);
    s->slot = NULL;
    s->n = 0;
}

static mv_slot_t *slot_of(mv_slots_t *s, const mv_seat_t *w)
{
    return &s->slot[w->slot - 1];
}

uint32_t mv_slots_take(mv_slots_t *s, mv_seat_t *w, int slot)
{
    mv_slot_t *sl = &s->slot[slot - 1];

    memset(w, 0, sizeof *w);
    w->slot = slot;
    sl->active = w;
    return ++sl->gen;
}

uint32_t mv_slots_reserve(mv_slots_t *s, int slot)
{
    return ++s->slot[slot - 1].gen;
}

void mv_slots_pass(mv_slots_t *s, int slot, uint32_t gen)
{
    if (slot >= 1 && slot <= s->n && s->slot[slot - 1].gen < gen)
        s->slot[slot - 1].gen = gen;
}

void mv_slots_take_reserved(mv_slots_t *s, mv_seat_t *w, int slot)
{
    memset(w, 0, sizeof *w);
    w->slot = slot;
    s->slot[slot - 1].active = w;
}

uint32_t mv_slots_take_extra(mv_slots_t *s, mv_seat_t *w, int slot)
{
    memset(w, 0, sizeof *w);
    w->slot = slot;
    w->replaced = true;
    return ++s->slot[slot - 1].gen;
}

int mv_slots_urgency(mv_reason_t r)
{
    switch (r) {
    case MV_R_SOFT_LIMIT: return 3; /* it grows meanwhile: the hard limit is next */
    case MV_R_MAX_LIFETIME:
    case MV_R_MAX_TASKS: return 2;
    default: return 1; /* requested, reload */
    }
}

static void dequeue(mv_slots_t *s, mv_seat_t *w);

/* Queues a recycle, most urgent first, then in order of arrival. */
static void enqueue(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason)
{
    mv_seat_t **pp;

    if (w->queued != MV_R_NONE) {
        if (mv_slots_urgency(reason) <= mv_slots_urgency(w->queued))
            return;
        dequeue(s, w); /* a more urgent reason moves it up */
    }
    w->queued = reason;
    w->queued_seq = ++s->seq;
    for (pp = &s->queue; *pp && mv_slots_urgency((*pp)->queued) >= mv_slots_urgency(reason);
         pp = &(*pp)->qnext)
        ;
    w->qnext = *pp;
    *pp = w;
}

static void dequeue(mv_slots_t *s, mv_seat_t *w)
{
    for (mv_seat_t **pp = &s->queue; *pp; pp = &(*pp)->qnext)
        if (*pp == w) {
            *pp = w->qnext;
            break;
        }
    w->qnext = NULL;
    w->queued = MV_R_NONE;
}

static void unhand(mv_slots_t *s, mv_seat_t *w)
{
    mv_slot_t *sl = slot_of(s, w);

    for (mv_seat_t **pp = &sl->handing; *pp; pp = &(*pp)->hnext)
        if (*pp == w) {
            *pp = w->hnext;
            break;
        }
    w->hnext = NULL;
    w->handover = false;
}

/* Its slot gets a new worker now, unless it has one already, or the run is ending. */
static bool surge(mv_slots_t *s, mv_seat_t *w)
{
    mv_slot_t *sl = slot_of(s, w);

    if (w->replaced || s->stopping || s->fatal || sl->fatal || sl->retired)
        return false;
    w->replaced = true;
    if (sl->active != w)
        return false;
    sl->active = NULL;
    return true;
}

/* mv_slots_recycle and mv_slots_recycle_spare: `spare` = its replacement is ready at once. */
static mv_recycle_plan_t plan_recycle(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason, bool failure,
                                      uint64_t now, bool spare)
{
    mv_recycle_plan_t p = {0};
    mv_gate_t g;

    if (w->gone)
        return p;
    if (reason == MV_R_SHUTDOWN) { /* never waits, and no handover: it drains now */
        dequeue(s, w);
        if (w->handover)
            unhand(s, w);
        p.go = true;
        return p;
    }
    g = mv_policy_gate(s->recycling, s->cfg.max_concurrent, now, s->last_recycle_ms,
                       s->cfg.spacing);
    /* A memory recycle whose replacement is a ready spare does not wait its turn (slots.h). */
    if (spare && reason == MV_R_SOFT_LIMIT && !failure && !w->replaced && !s->stopping && !s->fatal)
        g.go = true;
    if (!g.go) {
        enqueue(s, w, reason);
        p.retry_ms = g.wait_ms;
        return p;
    }
    dequeue(s, w);
    p.go = true;
    w->recycling = true;
    s->recycling++;
    s->last_recycle_ms = now;
    if (!failure)
        p.replacement = surge(s, w);
    /* A service keeps its capacity: the old worker serves until the new one is ready. */
    if (s->cfg.service && w->replaced && !slot_of(s, w)->fatal) {
        p.handover = true;
        w->handover = true;
        w->hnext = slot_of(s, w)->handing;
        slot_of(s, w)->handing = w;
    }
    return p;
}

mv_recycle_plan_t mv_slots_recycle(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason, bool failure,
                                   uint64_t now)
{
    return plan_recycle(s, w, reason, failure, now, false);
}

mv_recycle_plan_t mv_slots_recycle_spare(mv_slots_t *s, mv_seat_t *w, mv_reason_t reason,
                                         bool failure, uint64_t now)
{
    return plan_recycle(s, w, reason, failure, now, true);
}

bool mv_slots_replace_now(mv_slots_t *s, mv_seat_t *w, bool failure)
{
    dequeue(s, w);
    return !failure && !w->gone && surge(s, w);
}

int mv_slots_ready(mv_slots_t *s, const mv_seat_t *w, mv_seat_t **out, int max)
{
    mv_slot_t *sl = slot_of(s, w);
    int n = 0;

    while (sl->handing && n < max) {
        mv_seat_t *old = sl->handing;
        unhand(s, old);
        out[n++] = old;
    }
    return n;
}

void mv_slots_handover_end(mv_slots_t *s, mv_seat_t *w)
{
    if (w->handover)
        unhand(s, w);
}

/* One more failure in the streak (and in the failed starts when it never became ready). */
static mv_gone_plan_t count_failure(mv_slots_t *s, bool started)
{
    mv_gone_plan_t p = {0};

    s->streak++;
    if (!started)
        s->unstarted++;
    /* Once: the run is ending already after the first (the others failing meanwhile,
     * e.g. many workers timing out together, say nothing new). */
    if (s->cfg.crash_limit > 0 && s->streak >= s->cfg.crash_limit && !s->fatal)
        s->fatal = p.run_ends = p.crash_limit = true;
    return p;
}

mv_gone_plan_t mv_slots_failed(mv_slots_t *s)
{
    return count_failure(s, false);
}

bool mv_slots_started(mv_slots_t *s, mv_seat_t *w)
{
    bool was = s->unstarted > 0;

    if (w)
        w->started = true;
    s->unstarted = 0;
    return was;
}

mv_gone_plan_t mv_slots_gone(mv_slots_t *s, mv_seat_t *w, bool failure, bool fatal)
{
    mv_slot_t *sl = slot_of(s, w);
    mv_gone_plan_t p = {0};

    w->gone = true;
    dequeue(s, w);
    if (w->handover)
        unhand(s, w);
    if (w->recycling) {
        w->recycling = false;
        s->recycling--;
    }
    if (fatal) {
        sl->fatal = true;
        s->fatal = p.run_ends = true;
    } else if (failure) {
        sl->crashes++;
        p = count_failure(s, w->started);
    }
    if (sl->active == w) {
        sl->active = NULL;
        p.respawn = !s->stopping && !s->fatal && !sl->fatal && !sl->retired;
        p.delay_ms =
            failure ? mv_policy_backoff(sl->crashes, s->cfg.backoff_min, s->cfg.backoff_max) : 0;
    }
    return p;
}

void mv_slots_progress(mv_slots_t *s, const mv_seat_t *w)
{
    s->streak = 0;
    if (w)
        slot_of(s, w)->crashes = 0;
}

void mv_slots_survived(mv_slots_t *s, const mv_seat_t *w)
{
    slot_of(s, w)->crashes = 0;
    s->streak = 0;
}

mv_seat_t *mv_slots_next_queued(mv_slots_t *s, uint64_t now, uint64_t *retry_ms)
{
    mv_gate_t g;

    *retry_ms = 0;
    if (!s->queue || s->stopping || s->fatal)
        return NULL;
    g = mv_policy_gate(s->recycling, s->cfg.max_concurrent, now, s->last_recycle_ms,
                       s->cfg.spacing);
    if (!g.go) {
        *retry_ms = g.wait_ms;
        return NULL;
    }
    return s->queue;
}

void mv_slots_unqueue(mv_slots_t *s, mv_seat_t *w)
{
    dequeue(s, w);
}

bool mv_slots_may_spawn(const mv_slots_t *s, int slot)
{
    return !s->stopping && !s->fatal && !s->slot[slot - 1].fatal && !s->slot[slot - 1].retired &&
           !s->slot[slot - 1].active;
}

void mv_slots_stop(mv_slots_t *s)
{
    s->stopping = true;
}

int mv_slots_scale_plan(const mv_slots_t *s, int want, const int *rank, int *out, bool *grow)
{
    int n = 0;

    *grow = want > s->live;
    if (want < 1 || want == s->live)
        return 0;
    if (*grow) {
        for (int i = 0; i < s->n && s->live + n < want; i++)
            if (s->slot[i].retired)
                out[n++] = i + 1;
        for (int slot = s->n + 1; s->live + n < want; slot++)
            out[n++] = slot;
        return n;
    }
    while (s->live - n > want) {
        int best = 0;
        for (int slot = s->n; slot >= 2; slot--) {
            bool taken = s->slot[slot - 1].retired;
            for (int k = 0; k < n && !taken; k++)
                taken = out[k] == slot;
            if (!taken && (!best || rank[slot - 1] < rank[best - 1]))
                best = slot;
        }
        if (!best)
            break;
        out[n++] = best;
    }
    return n;
}

int mv_slots_grow(mv_slots_t *s, int n)
{
    mv_slot_t *grown;

    if (n <= s->n)
        return 0;
    if (!(grown = realloc(s->slot, (size_t)n * sizeof *grown)))
        return -ENOMEM;
    memset(grown + s->n, 0, (size_t)(n - s->n) * sizeof *grown);
    for (int i = s->n; i < n; i++)
        grown[i].retired = true;
    s->slot = grown;
    s->n = n;
    return 0;
}

void mv_slots_revive(mv_slots_t *s, int slot)
{
    mv_slot_t *sl = &s->slot[slot - 1];

    if (!sl->retired)
        return;
    sl->retired = false;
    sl->crashes = 0;
    s->live++;
}

mv_seat_t *mv_slots_retire(mv_slots_t *s, int slot)
{
    mv_slot_t *sl = &s->slot[slot - 1];
    mv_seat_t *w = sl->active;

    if (sl->retired)
        return NULL;
    sl->retired = true;
    s->live--;
    sl->active = NULL;
    if (w) {
        w->replaced = true;
        dequeue(s, w);
    }
    return w;
}

void mv_slots_list(char *buf, size_t cap, const int *out, int k)
{
    size_t used = 0;
    char item[16];

    buf[0] = '\0';
    for (int i = 0; i < k; i++) {
        int len = snprintf(item, sizeof item, "%s%d", i ? "," : "", out[i]);
        /* room for this one, and for ",..." after it unless it is the last */
        if (used + (size_t)len + (i + 1 < k ? 4 : 0) >= cap) {
            snprintf(buf + used, cap - used, "%s...", i ? "," : "");
            return;
        }
        memcpy(buf + used, item, (size_t)len + 1);
        used += (size_t)len;
    }
}
