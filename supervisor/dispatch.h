/*
 * dispatch: tasks to workers, answers to results.
 *
 *   - once per loop iteration when kicked (a libuv check handle), one task per worker that takes
 *     tasks, round after round, so tasks spread over workers; then one write per worker;
 *     nothing new starts while the results writer is backlogged or a pause reason holds it
 *     (the host's memory: mv_dispatch_pause); a lock-step worker that answered is sent its
 *     next task at once (mv_dispatch_eager) rather than waiting for the pass;
 *   - an answer becomes a result line with its memory figures and times (one written
 *     definition each: docs/run-files.md; `started` is stamped here as a task is sent,
 *     `ended` as its answer arrives) and attempt record;
 *   - the tasks of a worker that is gone are settled: the ones it had not started back at
 *     the front, the one it worked on charged with an attempt (mv_policy_charge) and retried
 *     behind the tasks queued (tasks.h), escalated to run again on a
 *     worker of its own with more memory when it was killed for memory (escalate.h), or
 *     quarantined after max_attempts; in service mode a request cannot be replayed, so an
 *     open one is lost.
 *
 * Workers are attached when they become ready and detached when they are gone; dispatch
 * keeps no other state of theirs.
 */
#ifndef MV_DISPATCH_H
#define MV_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "results.h"
#include "tasks.h"
#include "worker.h"

typedef struct mv_dispatch mv_dispatch_t;

/* Why dispatch may be paused besides a backlogged results writer (a bit each): running tasks
 * go on, no new one is handed out. */
enum { MV_PAUSE_HOST_MEMORY = 1u << 0 }; /* [supervisor] pause_below (hostmem.h) */

typedef struct mv_dispatch_events {
    /* A task reached its final status (w: the worker it ended on, NULL when it never ran or
     * was settled after its worker died; t and r are valid during the call). */
    void (*on_result)(void *arg, mv_worker_t *w, const mv_task_t *t, const mv_result_t *r);
    /* ...and it counts as ended now (the batch may be complete). */
    void (*on_progress)(void *arg);
    /* A task needs a worker of its own with raised limits (escalate.h; t->limit): the owner
     * runs one for it and hands it over with mv_dispatch_reserve, or puts it back in the queue
     * (mv_tasks_requeue) when the run is stopping. The task is the owner's from here on. */
    void (*on_escalate)(void *arg, mv_task_t *t);
} mv_dispatch_events_t;

/* Which tasks a worker may take (experiment.h): a predicate dispatch asks, per worker. A
 * worker with a filter takes the first queued task it may take (others keep their order);
 * one with none takes the head, as always. */
typedef struct mv_dispatch_filter {
    bool (*active)(void *arg, const mv_worker_t *w); /* w has a filter */
    bool (*may_take)(void *arg, const mv_worker_t *w, const mv_task_t *t);
    /* A free worker with a filter found no task it may take; `source_done`: no more tasks
     * will come from the source (requeued ones aside). Returns true when that changed the
     * filters (an experiment ended, or the next one began): dispatch looks again. */
    bool (*starved)(void *arg, mv_worker_t *w, bool source_done);
    /* A pass ended with tasks queued, a worker free, nothing handed out, and no serving
     * worker that may take any queued task. Whoever set the filters relaxes them (returns
     * true: dispatch passes again) unless a worker that will take them is on its way. */
    bool (*stuck)(void *arg);
    /* A look through the queue for worker w begins (may_take is then asked in queue order,
     * from the head); NULL = none wanted. */
    void (*scan)(void *arg, const mv_worker_t *w);
    void *arg;
} mv_dispatch_filter_t;

/* What settling a gone worker's tasks did. */
typedef struct mv_settled {
    unsigned requeued;    /* charged an attempt and queued again */
    unsigned escalated;   /* killed for memory: to run again with more (on_escalate) */
    unsigned quarantined; /* used up their attempts */
    unsigned lost;        /* service requests that cannot be replayed */
} mv_settled_t;

struct mv_dispatch {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_config_t *cfg;
    mv_tasks_t *tasks;
    mv_results_t *results;
    bool service;
    const mv_dispatch_events_t *ev;
    void *arg;

    uv_check_t check; /* after I/O: hands tasks out */
    bool open;
    void (*closed)(void *arg);
    void *closed_arg;
    bool pending;     /* kicked: a pass is due at the end of this loop iteration */
    bool refilter;    /* in a pass: a starved() changed the filters (look again) */
    bool accepting;   /* tasks may be handed out */
    unsigned paused;  /* MV_PAUSE_* reasons holding new tasks back */
    mv_worker_t **ws; /* workers that may take tasks */
    int nws, capws;
    uint64_t requeued;  /* tasks that lost an attempt and ran again */
    uint64_t escalated; /* ...of them, to run with more memory (escalate.h) */
    /* Escalated tasks reserved for the workers made for them (those take no other task). */
    mv_worker_t **rw;
    mv_task_t **rt;
    int nr, capr;
    const mv_dispatch_filter_t *filter; /* NULL: every worker takes any task */
};

int mv_dispatch_init(mv_dispatch_t *d, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                     mv_tasks_t *tasks, mv_results_t *results, bool service,
                     const mv_dispatch_events_t *ev, void *arg);
/* A worker became ready / is gone. */
int mv_dispatch_attach(mv_dispatch_t *d, mv_worker_t *w);
void mv_dispatch_detach(mv_dispatch_t *d, mv_worker_t *w);
/* Workers may take only what `f` allows from now on (NULL: anything). */
void mv_dispatch_set_filter(mv_dispatch_t *d, const mv_dispatch_filter_t *f);
/* Asks for a pass at the end of this loop iteration. */
void mv_dispatch_kick(mv_dispatch_t *d);
/* No task is handed out from now on. */
void mv_dispatch_stop(mv_dispatch_t *d);
/* Sets or clears a pause reason (MV_PAUSE_*); clearing the last one hands tasks out again. */
void mv_dispatch_pause(mv_dispatch_t *d, unsigned reason, bool on);

/* A worker's answer (batch) or the end of a request (service): its result line. */
void mv_dispatch_answer(mv_dispatch_t *d, mv_worker_t *w, const mv_answer_t *a);
/* A lock-step worker that answered (and was judged: it may be leaving) is sent its next task
 * now, as the pass would, instead of after the other answers of this loop iteration are
 * handled and measured (docs/accounting.md). Workers with prefetch, or under a filter, wait
 * for the pass, which writes their tasks together. */
void mv_dispatch_eager(mv_dispatch_t *d, mv_worker_t *w);
/* Service mode: a worker began a request (t NULL: it could not be recorded). */
void mv_dispatch_begin(mv_dispatch_t *d, mv_worker_t *w, mv_task_t *t);
/* The tasks of a worker that is gone. */
mv_settled_t mv_dispatch_settle(mv_dispatch_t *d, mv_worker_t *w, const mv_gone_t *g);
/* Escalation (escalate.h): `w`, a ready worker made for task `t` (and not attached), gets it
 * at the next pass that hands tasks out; `t` is dispatch's until then. 0 or -ENOMEM. */
int mv_dispatch_reserve(mv_dispatch_t *d, mv_worker_t *w, mv_task_t *t);
/* A reserved worker is gone before it got its task: the task back (the caller's), or NULL. */
mv_task_t *mv_dispatch_unreserve(mv_dispatch_t *d, mv_worker_t *w);
/* An escalated task whose escalation workers kept failing before they took it (t->esc_lost
 * of them; `w` and `g`, the last): quarantined with why (pool_esc.c). */
void mv_dispatch_esc_lost(mv_dispatch_t *d, mv_task_t *t, const mv_worker_t *w, const mv_gone_t *g);

/* Closes its check handle; cb(arg) once it is closed. */
void mv_dispatch_close(mv_dispatch_t *d, void (*cb)(void *arg), void *arg);
void mv_dispatch_free(mv_dispatch_t *d);

#endif
