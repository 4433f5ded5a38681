/*
 * pool: the worker slots. Starts a worker per slot, acts on what the layers below report
 * (verdicts of watch, results of dispatch, snapshots of suspect, exits of workers), and
 * carries out the decisions of slots.h: surge, handover, the recycle queue, respawn with
 * backoff, crash streaks. Status, metrics, run.json and the summary all read one view of it
 * (mv_pool_view).
 *
 * Layering: pool includes worker, dispatch, watch, suspect and slots; none of them includes
 * pool. It defines the one table of worker events and fans each out.
 */
#ifndef MV_POOL_H
#define MV_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cgahead.h"
#include "cgroup.h"
#include "config.h"
#include "dispatch.h"
#include "kids.h"
#include "leak.h"
#include "listen.h"
#include "log.h"
#include "results.h"
#include "rundir.h"
#include "slots.h"
#include "spares.h"
#include "startgate.h"
#include "succ.h"
#include "suspect.h"
#include "tasks.h"
#include "templates.h"
#include "timeline.h"
#include "watch.h"
#include "worker.h"

/* The longest PYTHONPATH entry memvisor makes for workers run from a build tree. */
#define MV_POOL_PYTHONPATH_MAX 8192

/* [supervisor] workers' largest value (options.c), the bound of a live scale. */
#define MV_POOL_MAX_WORKERS 1024

/* The pool's record of one worker: each part written by its own module. */
typedef struct mv_member {
    struct mv_pool *pool;
    mv_worker_t *w;         /* worker.c */
    mv_seat_t seat;         /* slots.c */
    mv_watched_t watch;     /* watch.c */
    mv_suspected_t suspect; /* suspect.c */
    struct mv_member *next; /* pool.c: every worker whose handles are open */
    bool deferred_said;     /* pool.c: its queued recycle was logged */
    int64_t stop_mem;       /* pool.c: its [limits] metric when stopped for memory (0: not) */
    int64_t cap;            /* pool.c: the hard limit it drains under (0: its own) */
    bool esc;               /* pool_esc.c: a worker made for one escalated task */
    mv_task_t *esc_task;    /* pool_esc.c: that task, until it is reserved at ready */
    mv_kidstop_t *kids;     /* pool_kids.c: its children told to stop (target = child), or NULL */
    bool kid_follow;        /* pool_kids.c: followed since a child was told to stop */
    uint64_t kid_told_ms;   /* pool_kids.c: when a child was last told (mv_now_ms), 0 = never */
    uint64_t oom_seen;      /* pool.c: v1 OOM kills in its cgroup seen at oom_seen_ms, unsaid */
    uint64_t oom_seen_ms;   /* pool.c: when they were first seen (mv_now_ms), 0 = none */
} mv_member_t;

/* What a pool runs with; the pointers outlive it. */
typedef struct mv_pool_opts {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_config_t *cfg;
    mv_tasks_t *tasks;
    mv_results_t *results;
    mv_leak_t *leak;           /* NULL when [leak] detect is off */
    mv_rundir_t *run;          /* where snapshots go; run->dir NULL: nowhere */
    char *const *argv;         /* the worker command */
    char *const *env;          /* memvisor's environment */
    const char *self_exe;      /* this binary, for the exec shim */
    const mv_cg_t *cg;         /* cgroups (version MV_CG_OFF: /proc sampling only) */
    const mv_listen_t *listen; /* sockets every worker gets (NULL: none) */
    bool service;              /* no task source: workers make their own (BEGIN/END) */
    mv_timeline_t *timeline;   /* the run's memory timeline, or NULL */
} mv_pool_opts_t;

typedef struct mv_pool_events {
    void (*on_progress)(void *arg); /* a task ended, or tasks may be dispatchable again */
    void (*on_ready)(void *arg);    /* a worker became ready */
    void (*on_fatal)(void *arg);    /* the run cannot go on (already logged) */
    void (*on_stopped)(void *arg);  /* every worker is gone and every handle closed */
} mv_pool_events_t;

/* A slot's respawn timer, on the heap: the slots' table moves when the pool grows. */
typedef struct mv_backoff {
    uv_timer_t timer;
    struct mv_pool *pool;
    int slot;
} mv_backoff_t;

typedef struct mv_pool_slot {
    mv_backoff_t *backoff; /* its respawn timer once needed (closed with the pool), or NULL */
    bool backoff_armed;
    int64_t peak; /* highest usage of any of its workers */
} mv_pool_slot_t;

/* Escalated tasks waiting for a worker of their own (pool_esc.c). */
typedef struct mv_pool_esc {
    mv_task_t *head, *tail;
    int live;         /* escalation workers not closed yet (at most one per slot) */
    int next_slot;    /* the slot numbering the next one borrows (round robin) */
    int failures;     /* in a row that could not take their task: the next waits (backoff) */
    bool hold;        /* waiting for that backoff */
    bool waited;      /* ...and it is over: one may go */
    uv_timer_t timer; /* its end */
    bool timer_open;
} mv_pool_esc_t;

typedef struct mv_pool {
    mv_pool_opts_t o;
    const mv_pool_events_t *ev;
    void *arg;
    char **env; /* o.env minus memvisor's private variables */

    mv_slots_t slots;
    mv_pool_slot_t *slot;
    int nslots; /* slot numbers ever used; the live ones (the worker count) are slots.live */
    mv_member_t *members;
    mv_dispatch_t dispatch;
    mv_watch_t watch;
    mv_suspect_t suspect;
    mv_experiment_t exp;      /* leak experiments: fresh workers through recycle() */
    mv_spares_t spares;       /* spares.c: workers started ahead, taken by spawn_slot */
    mv_cgahead_t ahead;       /* cgahead.c: each slot's next cgroup */
    mv_succ_t succ;           /* succ.c: each slot's next worker, started at its last task */
    mv_templates_t tmpl;      /* [worker] template = yes (tmpl.started) */
    mv_startgate_t gate;      /* startgate.c: [supervisor] max_starting, every worker's start */
    uv_timer_t spacer;        /* [recycle] spacing: the queue may move then */
    uv_timer_t settle;        /* [leak] settle: an isolation's worker idles before its verdict */
    mv_worker_t *settle_idle; /* ...and mv_pool_stop left it idling: on_settled stops it */
    uv_timer_t grace;
    unsigned open; /* the pool's own handles and parts not yet closed */
    bool started, stopping, closing, fatal;
    uint64_t rng;

    mv_pool_esc_t esc;
    mv_heapplan_t heap; /* [leak] heap for the workers started from now on */
    /* "PYTHONPATH=..." for a Python api worker of memvisor run from its build tree: the
     * environment's PYTHONPATH, then the source tree's worker-api/python; "": none. */
    char pythonpath[MV_POOL_PYTHONPATH_MAX];

    uint64_t spawned;
    uint64_t recycles[MV_R_COUNT]; /* workers that left, by why they finally left */
    uint64_t child_recycles;       /* children of master workers told to stop (pool_kids.c) */
    uint64_t protocol_errors;
    int64_t overshoot; /* growth after a memory stop, learned (mv_policy_overshoot); -1: none */
} mv_pool_t;

/* One worker as status, metrics and the report see it. */
typedef struct mv_worker_view {
    int slot;
    uint32_t gen;
    int pid;
    const char *state;
    double age_s;
    int64_t tasks;
    unsigned in_flight;
    int64_t mem, usage, peak; /* -1 = not read yet */
    int64_t priv, rss;        /* -1 = not read yet */
    int64_t soft, hard;       /* its limits, bytes; 0 = off */
    int fds;
    bool active;        /* the worker serving its slot (not a retiring one) */
    bool recycling;     /* leaving, or waiting its turn to */
    const char *reason; /* why, when recycling */
    bool handover;      /* serving until its replacement is ready */
    uint64_t task;      /* the task it works on; 0 = none */
    double task_s;      /* how long it has run */
} mv_worker_view_t;

typedef struct mv_pool_view {
    int nslots;      /* slot numbers ever used (slot_peak's length) */
    int target;      /* slots serving: the worker count now ([supervisor] workers, scaled) */
    bool *slot_live; /* [nslots]: not retired by a scale down */
    int live;        /* serving now: ready or busy, not leaving */
    uint64_t spawned, requeued, protocol_errors, suspects, in_flight;
    uint64_t child_recycles; /* [recycle] target = child: children told to stop */
    uint64_t escalated;      /* requeued tasks that got more memory (escalate.h) */
    const mv_suspect_count_t *suspects_by_kind; /* [nkinds] */
    size_t nkinds;
    const uint64_t *recycles;  /* [MV_R_COUNT] */
    int64_t *slot_peak;        /* [nslots]: highest usage of any worker of each slot */
    mv_worker_view_t *workers; /* in slot order, a slot's retiring worker after its new one */
    int nworkers;
    int busy;          /* workers with a task in flight */
    uint64_t recycled; /* workers that left, for any reason but the run's end */
    int top;           /* the worker using the most memory (index in workers); -1 = none read */
    mv_worker_view_t *spares; /* slot 0, oldest first; `state` "spare" once ready */
    int nspares;
    uint64_t spares_started, spares_taken, spares_lost;
    mv_worker_view_t *successors; /* succ.h: slots' next workers, waiting; in slot order */
    int nsuccessors;
    mv_template_view_t tmpl;        /* the warm template (tmpl.on: there is one) */
    int starting, waiting_to_start; /* at the start gate (startgate.h): holding a place, and
                                     * waiting for one */
} mv_pool_view_t;

/* Sets up the pool and starts its workers. 0, or -errno before anything was started (no
 * callback ran); what happens to the workers is reported through the events. */
int mv_pool_start(mv_pool_t *p, const mv_pool_opts_t *o, const mv_pool_events_t *ev, void *arg);
/* Asks for a dispatch pass at the end of this loop iteration. */
void mv_pool_kick(mv_pool_t *p);
/* Stops every worker: graceful (finish tasks within grace_period) or at once (SIGKILL). */
void mv_pool_stop(mv_pool_t *p, bool graceful);
/* Recycles one slot's worker (1-based) or all (0) with a rolling replacement; returns how
 * many were asked (their slots in `slots`, room for nslots, may be NULL), or -EINVAL for a
 * slot that does not exist. */
int mv_pool_recycle(mv_pool_t *p, int slot, mv_reason_t reason, int *slots);
/* [supervisor] workers, live: n slots serve from now on (1 <= n <= 1024). Growing, retired
 * slots are revived (lowest first), then new ones numbered; each gets a worker through the
 * ordinary spawn path (a successor, a spare, a cgroup made ahead). Shrinking, slots are
 * retired, idle workers' first (then starting ones, then busy ones; a leak experiment's
 * last; slot 1 never): each one's worker finishes the tasks it holds and stops (reason
 * scaled_down), is not replaced, and its cgroup is removed. Logged as `scaled`. 0, -EINVAL
 * (n out of bounds), -ECANCELED (stopping) or -ENOMEM (nothing changed). */
int mv_pool_scale(mv_pool_t *p, int n, const char *from);
/* A new configuration and command for the workers started from now on (reload). */
void mv_pool_reconfigure(mv_pool_t *p, const mv_config_t *cfg, char *const *argv);
/* Whether pid is a child the pool reaps itself (a worker forked by its template, or one that
 * may be: a fork is under way), for the subreaper (reaper.h) to leave alone. */
bool mv_pool_keeps(const mv_pool_t *p, int pid);
/* Workers serving now (ready or busy, not leaving). */
int mv_pool_live(const mv_pool_t *p);
/* The view (free it with mv_pool_view_free). 0 or -ENOMEM. */
int mv_pool_view(const mv_pool_t *p, mv_pool_view_t *v);
void mv_pool_view_free(mv_pool_view_t *v);
/* Frees what is left after the loop ended. */
void mv_pool_free(mv_pool_t *p);

#endif
