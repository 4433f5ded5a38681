/*
 * startgate: how many workers start at once (startgate.h).
 */
#include "startgate.h"

#include <stddef.h>

static void kick_cb(uv_timer_t *t);

static bool anyone_waits(const mv_startgate_t *g)
{
    return g->line[0].head || g->line[1].head;
}

/* A spare may take a place: none kept for the workers to serve on their way. */
static bool room_for_spare(const mv_startgate_t *g)
{
    return g->in + g->coming < g->cap;
}

static void kick_later(mv_startgate_t *g)
{
    if (!g->closed && anyone_waits(g) && g->in < g->cap && !uv_is_active((uv_handle_t *)&g->kick))
        uv_timer_start(&g->kick, kick_cb, 0, 0);
}

/* The first of the line, taken out of it. */
static mv_gate_entry_t *pop(mv_gate_line_t *l)
{
    mv_gate_entry_t *e = l->head;

    l->head = e->next;
    if (!l->head)
        l->tail = NULL;
    e->next = NULL;
    return e;
}

/* The waiting ones whose turn it is: the workers to serve first, then the spares, each first
 * come first. A start that fails at once gives its place back before go returns, and the next
 * one goes in the same pass. */
static void kick_cb(uv_timer_t *t)
{
    mv_startgate_t *g = t->data;
    mv_gate_entry_t *e;

    while (!g->closed && anyone_waits(g) && g->in < g->cap) {
        if (!g->line[0].head && !room_for_spare(g))
            break;
        e = pop(&g->line[g->line[0].head ? 0 : 1]);
        g->waiting--;
        e->state = MV_GATE_IN;
        g->in++;
        e->go(e);
    }
}

void mv_startgate_init(mv_startgate_t *g, uv_loop_t *loop, int cap)
{
    *g = (mv_startgate_t){.cap = cap < 1 ? 1 : cap};
    uv_timer_init(loop, &g->kick);
    g->kick.data = g;
}

void mv_startgate_set_cap(mv_startgate_t *g, int cap)
{
    g->cap = cap < 1 ? 1 : cap;
    kick_later(g);
}

void mv_startgate_expect(mv_startgate_t *g, mv_gate_entry_t *e)
{
    if (e->state != MV_GATE_OUT || e->last)
        return;
    e->state = MV_GATE_COMING;
    g->coming++;
}

bool mv_startgate_enter(mv_startgate_t *g, mv_gate_entry_t *e)
{
    mv_gate_line_t *l = &g->line[e->last];

    if (e->state == MV_GATE_COMING) {
        e->state = MV_GATE_OUT;
        g->coming--;
    }
    if (e->state != MV_GATE_OUT)
        return e->state == MV_GATE_IN;
    /* Behind the ones already waiting ahead of it, even with a place free: their kick is on
     * its way. A worker to serve passes waiting spares. */
    if (!g->line[0].head && g->in < g->cap &&
        (!e->last || (!g->line[1].head && room_for_spare(g)))) {
        e->state = MV_GATE_IN;
        g->in++;
        return true;
    }
    e->state = MV_GATE_WAITING;
    e->next = NULL;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    g->waiting++;
    kick_later(g);
    return false;
}

void mv_startgate_leave(mv_startgate_t *g, mv_gate_entry_t *e)
{
    mv_gate_line_t *l = &g->line[e->last];
    mv_gate_entry_t **pp, *prev = NULL;

    if (e->state == MV_GATE_IN) {
        g->in--;
        kick_later(g);
    } else if (e->state == MV_GATE_COMING) {
        g->coming--;
        kick_later(g); /* a spare may have the place kept for it */
    } else if (e->state == MV_GATE_WAITING) {
        for (pp = &l->head; *pp && *pp != e; pp = &(*pp)->next)
            prev = *pp;
        if (*pp) {
            *pp = e->next;
            if (l->tail == e)
                l->tail = prev;
            g->waiting--;
        }
    }
    e->state = MV_GATE_OUT;
    e->next = NULL;
}

static void closed_cb(uv_handle_t *h)
{
    mv_startgate_t *g = h->data;

    if (g->on_closed)
        g->on_closed(g->arg);
}

void mv_startgate_close(mv_startgate_t *g, void (*on_closed)(void *), void *arg)
{
    g->closed = true;
    g->on_closed = on_closed;
    g->arg = arg;
    uv_close((uv_handle_t *)&g->kick, closed_cb);
}
