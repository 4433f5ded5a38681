/*
 * startgate: how many workers start at once (startgate.h).
 */
#include "startgate.h"

#include <stddef.h>

static void kick_cb(uv_timer_t *t);

static void kick_later(mv_startgate_t *g)
{
    if (!g->closed && g->head && g->in < g->cap && !uv_is_active((uv_handle_t *)&g->kick))
        uv_timer_start(&g->kick, kick_cb, 0, 0);
}

/* The waiting ones whose turn it is, first come first. A start that fails at once gives its
 * place back before go returns, and the next one goes in the same pass. */
static void kick_cb(uv_timer_t *t)
{
    mv_startgate_t *g = t->data;
    mv_gate_entry_t *e;

    while (!g->closed && g->head && g->in < g->cap) {
        e = g->head;
        g->head = e->next;
        if (!g->head)
            g->tail = NULL;
        e->next = NULL;
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

bool mv_startgate_enter(mv_startgate_t *g, mv_gate_entry_t *e)
{
    if (e->state != MV_GATE_OUT)
        return e->state == MV_GATE_IN;
    /* Behind the ones already waiting, even with a place free: their kick is on its way. */
    if (!g->head && g->in < g->cap) {
        e->state = MV_GATE_IN;
        g->in++;
        return true;
    }
    e->state = MV_GATE_WAITING;
    e->next = NULL;
    if (g->tail)
        g->tail->next = e;
    else
        g->head = e;
    g->tail = e;
    g->waiting++;
    kick_later(g);
    return false;
}

void mv_startgate_leave(mv_startgate_t *g, mv_gate_entry_t *e)
{
    mv_gate_entry_t **pp, *prev = NULL;

    if (e->state == MV_GATE_IN) {
        g->in--;
        kick_later(g);
    } else if (e->state == MV_GATE_WAITING) {
        for (pp = &g->head; *pp && *pp != e; pp = &(*pp)->next)
            prev = *pp;
        if (*pp) {
            *pp = e->next;
            if (g->tail == e)
                g->tail = prev;
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
