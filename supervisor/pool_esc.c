/*
 * pool_esc: the escalation workers of the pool (escalate.h, issue 14 #4).
 *
 * Design: an escalated task runs on a fresh worker of its own, spawned with the task's raised
 * hard limit (its cgroup's memory.limit_in_bytes / memory.max) and the soft limit raised in
 * proportion, which takes that one task and retires after it (max_tasks 1). A fresh worker
 * rather than raising a serving worker's limits: the task gets the whole raised budget, not
 * what a leaking worker's baseline leaves of it, and no limit is ever written under a running
 * process. It borrows a slot's number (round robin) for its logs and cgroup name, but is never
 * the slot's worker (mv_slots_take_extra): the slots keep their own workers, so the pool runs
 * at most one escalation worker per slot beside them.
 *
 * An escalated task waits here until such a worker is ready, then dispatch holds it for that
 * worker (mv_dispatch_reserve) and hands it over at its next pass (so a pause, or a results
 * backlog, holds it back like any task). A worker that goes before it got its task gives the
 * task back here; when that is its failure (it crashed, timed out getting ready, its cgroup
 * could not be made) the next one waits the crash backoff. Such failures are the task's, not
 * the pool's: a worker that cannot start at the raised limit is no sign that the worker
 * program is broken (the slots' workers serve on), so they count neither toward crash_limit
 * nor toward the borrowed slot's backoff; after crash_limit of them in a row for one task (0:
 * never) the task is quarantined with why, once. Before, they counted toward crash_limit,
 * whose streak a slot's worker that stays up resets: the run retried such a task forever
 * (every backoff_max), or, with nothing else running, ended at crash_limit with the task not
 * run. When the run stops, waiting tasks go back to the queue and count as not run.
 */
#include <stdlib.h>

#include "escalate.h"
#include "pool_int.h"

static void pump(mv_pool_t *p);

static void push_front(mv_pool_esc_t *e, mv_task_t *t)
{
    t->next = e->head;
    e->head = t;
    if (!e->tail)
        e->tail = t;
}

static void push_back(mv_pool_esc_t *e, mv_task_t *t)
{
    t->next = NULL;
    if (e->tail)
        e->tail->next = t;
    else
        e->head = t;
    e->tail = t;
}

static mv_task_t *pop(mv_pool_esc_t *e)
{
    mv_task_t *t = e->head;

    if (t) {
        e->head = t->next;
        if (!e->head)
            e->tail = NULL;
        t->next = NULL;
    }
    return t;
}

/* A task back from a worker that did not take it: first in line again, or (stopping) back in
 * the queue, where it counts as not run. */
static void give_back(mv_pool_t *p, mv_task_t *t)
{
    if (p->stopping || p->fatal)
        mv_tasks_requeue(p->o.tasks, t);
    else
        push_front(&p->esc, t);
}

static void timer_cb(uv_timer_t *h)
{
    mv_pool_t *p = h->data;

    p->esc.hold = false;
    p->esc.waited = true;
    pump(p);
}

/* Starts an escalation worker for each waiting task, while there is room. After a worker that
 * could not take its task, the next one waits the crash backoff first (one that can never
 * start at this limit must not be respawned in a loop), and only one goes until one is
 * ready. */
static void pump(mv_pool_t *p)
{
    mv_pool_esc_t *e = &p->esc;
    const mv_config_t *cfg = p->o.cfg;
    mv_wlimits_t base, lim;
    mv_task_t *t;
    int slot;

    while (e->head && !e->hold && !p->stopping && !p->fatal && e->live < p->slots.live) {
        if (e->failures > 0 && !e->waited) {
            e->hold = true;
            uv_timer_start(&e->timer, timer_cb,
                           mv_policy_backoff(e->failures + 1, cfg->worker.backoff_min,
                                             cfg->worker.backoff_max),
                           0);
            return;
        }
        e->waited = false;
        t = pop(e);
        base = mv_policy_limits(cfg, 0, 0); /* its own max_tasks and lifetime: no jitter */
        /* A limit raised on another host (a Redis source's) never gives less than this host
         * gives every task: its memory_hard, or none. */
        lim =
            mv_escalate_limits(&base, base.hard_bytes <= 0 ? 0 : MV_MAX(t->limit, base.hard_bytes));
        do /* a live slot's numbering (a scaled-down pool's retired slots are skipped) */
            slot = e->next_slot++ % p->nslots + 1;
        while (p->slots.slot[slot - 1].retired);
        if (mv__pool_spawn(p, slot, &lim, t)) {
            e->live++;
        } else {
            push_front(e, t);
            e->failures++;
        }
    }
}

void mv__pool_esc_init(mv_pool_t *p)
{
    uv_timer_init(p->o.loop, &p->esc.timer);
    p->esc.timer.data = p;
    p->esc.timer_open = true;
    uv_unref((uv_handle_t *)&p->esc.timer);
}

void mv__pool_esc_task(void *arg, mv_task_t *t)
{
    mv_pool_t *p = arg;

    if (p->stopping || p->fatal) {
        mv_tasks_requeue(p->o.tasks, t);
        return;
    }
    push_back(&p->esc, t);
    pump(p);
}

void mv__pool_esc_ready(mv_pool_t *p, mv_member_t *m)
{
    mv_task_t *t = m->esc_task;

    m->esc_task = NULL;
    p->esc.failures = 0;
    if (t)
        t->esc_lost = 0; /* it started at that limit */
    if (t && mv_dispatch_reserve(&p->dispatch, m->w, t) < 0) {
        mv_error(p->o.log, "escalate_failed", MV_I("task", (long long)t->id),
                 MV_S("error", "out of memory"));
        give_back(p, t);
        mv_worker_drain(m->w, MV_R_REQUESTED);
    }
    pump(p); /* the ones held back by a failure may go */
}

bool mv__pool_esc_gone(mv_pool_t *p, mv_member_t *m, const mv_gone_t *g)
{
    mv_task_t *t = m->esc_task ? m->esc_task : mv_dispatch_unreserve(&p->dispatch, m->w);
    int limit = p->o.cfg->worker.crash_limit;

    m->esc_task = NULL;
    if (!t)
        return false; /* it had its task: dispatch settled it */
    if (!g->verdict.failure || g->hopeless) {
        give_back(p, t);
        return false;
    }
    p->esc.failures++;
    if (t->esc_lost < UINT16_MAX)
        t->esc_lost++;
    if (limit > 0 && t->esc_lost >= limit && !p->stopping && !p->fatal)
        mv_dispatch_esc_lost(&p->dispatch, t, m->w, g);
    else
        give_back(p, t);
    return true;
}

void mv__pool_esc_closed(mv_pool_t *p, mv_member_t *m)
{
    if (m->esc_task) { /* dropped before it had a process (a stop while it was made) */
        give_back(p, m->esc_task);
        m->esc_task = NULL;
    }
    p->esc.live--;
    pump(p);
}

void mv__pool_esc_stop(mv_pool_t *p)
{
    mv_task_t *t;

    while ((t = pop(&p->esc)))
        mv_tasks_requeue(p->o.tasks, t);
    if (p->esc.timer_open)
        uv_timer_stop(&p->esc.timer);
    p->esc.hold = false;
}

/* A reload: an escalation worker not started yet would start with the command and settings
 * it replaced. It goes; its task, first in line again, gets a worker with what is current (it
 * had nothing to lose). One that has started keeps its task, as a slot's worker would. */
void mv__pool_esc_reconfigure(mv_pool_t *p)
{
    mv_member_t *m, *next;

    if (p->stopping || p->fatal)
        return;
    for (m = p->members; m; m = next) {
        next = m->next;
        if (m->esc && mv__pool_unstarted_stale(p, m->w))
            mv_worker_kill(m->w, MV_R_REQUESTED);
    }
}

void mv__pool_esc_close(mv_pool_t *p)
{
    if (!p->esc.timer_open)
        return;
    p->esc.timer_open = false;
    /* Not one of the pool's counted parts: it is stopped, and its close completes in the
     * loop's last turns like every other handle's. */
    uv_close((uv_handle_t *)&p->esc.timer, NULL);
}
