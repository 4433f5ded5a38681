/*
 * pool_int: what pool.c, pool_esc.c, pool_kids.c and pool_view.c share and nobody else sees.
 * pool_esc.c holds the escalation workers (escalate.h) apart from the slots' own machinery, which
 * reaches it only through the hooks below, one line each in pool.c; pool_view.c only reads.
 */
#ifndef MV_POOL_INT_H
#define MV_POOL_INT_H

#include "pool.h"

/* pool.c: a new worker for `slot` with limits `lim`, started. With `esc`, a worker of its
 * own for that escalated task, beside the slot's (mv_slots_take_extra). The member, or NULL
 * when out of memory (logged; the slot's own worker is respawned later). */
mv_member_t *mv__pool_spawn(mv_pool_t *p, int slot, const mv_wlimits_t *lim, mv_task_t *esc);

/* pool.c: w has not started (its cgroup being made, or waiting its turn at the start gate)
 * and was made with the command or settings a reload replaced: it would start with them. */
bool mv__pool_unstarted_stale(const mv_pool_t *p, const mv_worker_t *w);

/* pool_esc.c, the hooks. */
void mv__pool_esc_init(mv_pool_t *p);                  /* mv_pool_start */
void mv__pool_esc_task(void *arg, mv_task_t *t);       /* dispatch's on_escalate */
void mv__pool_esc_ready(mv_pool_t *p, mv_member_t *m); /* an escalation worker is ready */
/* ...is gone: true when it failed before it took its task (not the worker program failing
 * at the pool's limits: it counts toward the task's end, not crash_limit). */
bool mv__pool_esc_gone(mv_pool_t *p, mv_member_t *m, const mv_gone_t *g);
void mv__pool_esc_closed(mv_pool_t *p, mv_member_t *m); /* ...is closed */
void mv__pool_esc_stop(mv_pool_t *p);                   /* mv_pool_stop */
void mv__pool_esc_reconfigure(mv_pool_t *p);            /* mv_pool_reconfigure */
void mv__pool_esc_close(mv_pool_t *p);                  /* the pool's handles close */

/* pool_kids.c: [recycle] target = child. A look at m with reading r and verdict v: whether
 * it took the look (a child of m's master told to stop, or still stopping); otherwise the
 * pool acts on v as for any worker (a whole-worker recycle). */
bool mv__pool_kids_check(mv_pool_t *p, mv_member_t *m, const mv_reading_t *r, mv_verdict_t v);
/* m's worker (the master) has exited for `why`: said when it follows a child's stop. */
void mv__pool_kids_exit(mv_pool_t *p, mv_member_t *m, mv_reason_t why);
/* m's record is going: forgets its stopping child. */
void mv__pool_kids_gone(mv_member_t *m);

#endif
