/*
 * fsm: the whole life of one worker process as one table, actions[state][event]
 * (s6-supervise style). Pure: the worker module feeds events, the table answers with the
 * next state and an action the worker carries out. Pairs that cannot happen say so, and the
 * worker logs "can't happen".
 *
 * Each state names the one deadline its timer is armed for (mv_fsm_deadline), so which
 * deadline applies is never a matter of priority: entering STOPPING arms kill_timeout, and no
 * task or ready deadline can push it back, because no such state has one.
 *
 * Respawning, backoff, surge and the recycle queue are slot-level decisions of the pool; they
 * are not states of a process.
 */
#ifndef MV_FSM_H
#define MV_FSM_H

#include <stdbool.h>

typedef enum {
    MV_W_PREPARING, /* its cgroup is being made, or it waits its turn to start (startgate.h);
                     * no process yet */
    MV_W_SPAWNING,  /* process started, not ready yet (api: waiting for HELLO) */
    MV_W_READY,     /* idle, takes tasks */
    MV_W_BUSY,      /* one or more tasks in flight, takes more up to prefetch */
    MV_W_HANDOVER,  /* a recycle is decided: serves on until its replacement is ready */
    MV_W_DRAINING,  /* recycling: finishes the task in hand, takes no new one */
    MV_W_STOPPING,  /* asked to exit (STOP, EOF+SIGTERM, SIGTERM), or its channel closed */
    MV_W_FROZEN,    /* stopped (SIGSTOP) while a snapshot is read; killed next */
    MV_W_KILLING,   /* SIGKILL sent, waiting for the exit */
    MV_W_DEAD,      /* exited and reaped, or never started */
    MV_W_NSTATES
} mv_wstate_t;

typedef enum {
    MV_EV_STARTED,      /* its process was started */
    MV_EV_SPAWN_FAILED, /* its cgroup or process could not be made */
    MV_EV_READY,        /* the worker can take tasks (api: valid HELLO; lines/none: started) */
    MV_EV_DISPATCH,     /* a task was sent to it (service: a request began) */
    MV_EV_IDLE,         /* nothing it is working on is outstanding any more */
    MV_EV_HANDOVER,     /* recycle, but serve until the replacement is ready */
    MV_EV_REPLACED,     /* its replacement is ready */
    MV_EV_DRAIN,        /* recycle gracefully: finish the task in hand, then exit */
    MV_EV_FAULT,        /* broken (protocol error) or stuck: terminate it */
    MV_EV_FREEZE,       /* stop it where it is, for a snapshot before a kill */
    MV_EV_KILL,         /* kill now: hard limit, second signal to memvisor */
    MV_EV_CHAN_EOF,     /* it closed its end of the conversation */
    MV_EV_TIMEOUT,      /* the state's deadline passed */
    MV_EV_EXIT,         /* the process exited (libuv's exit callback) */
    MV_EV_NEVENTS
} mv_wevent_t;

typedef enum {
    MV_ACT_NONE,       /* nothing to do beyond the state change */
    MV_ACT_DRAIN,      /* api: send STOP, so the worker starts no other task (DRAINING itself
                        * already keeps new tasks away) */
    MV_ACT_STOP,       /* ask to exit: api STOP, lines EOF+SIGTERM, none SIGTERM */
    MV_ACT_TERM,       /* SIGTERM whatever the protocol (stuck or broken worker) */
    MV_ACT_FREEZE,     /* SIGSTOP */
    MV_ACT_KILL,       /* SIGKILL now */
    MV_ACT_REAP,       /* gone: report it, with its tasks, to whoever owns it */
    MV_ACT_DISCARD,    /* it never had a process: drop it once its cgroup is made */
    MV_ACT_IMPOSSIBLE, /* the pair cannot happen: log it, change nothing */
} mv_action_t;

/* What a state's timer is armed for. */
typedef enum {
    MV_DL_NONE,  /* nothing */
    MV_DL_READY, /* [worker] ready_timeout from the spawn */
    MV_DL_TASK,  /* [limits] task_timeout from the start of the task in hand (if any) */
    MV_DL_KILL,  /* [worker] kill_timeout, then SIGKILL */
} mv_deadline_t;

typedef struct mv_transition {
    mv_wstate_t next;
    mv_action_t action;
} mv_transition_t;

/* The table lookup. Out-of-range inputs answer MV_ACT_IMPOSSIBLE and keep the state. */
mv_transition_t mv_fsm_step(mv_wstate_t state, mv_wevent_t event);

/* The deadline a state arms. */
mv_deadline_t mv_fsm_deadline(mv_wstate_t s);

/* Whether a worker in this state may be given tasks (and, in service mode, serves). */
static inline bool mv_fsm_takes_tasks(mv_wstate_t s)
{
    return s == MV_W_READY || s == MV_W_BUSY || s == MV_W_HANDOVER;
}

/* Whether it serves now and will go on serving: ready or busy, no recycle decided. */
static inline bool mv_fsm_serving(mv_wstate_t s)
{
    return s == MV_W_READY || s == MV_W_BUSY;
}

/* Whether a process exists (started, not yet reaped). */
static inline bool mv_fsm_has_process(mv_wstate_t s)
{
    return s != MV_W_PREPARING && s != MV_W_DEAD;
}

/* Whether its memory is worth watching: it runs and is not being killed anyway. */
static inline bool mv_fsm_watched(mv_wstate_t s)
{
    return s == MV_W_READY || s == MV_W_BUSY || s == MV_W_HANDOVER || s == MV_W_DRAINING ||
           s == MV_W_STOPPING;
}

/* Whether it is on its way out (a drain, a stop, a freeze, a kill). */
static inline bool mv_fsm_leaving(mv_wstate_t s)
{
    return s == MV_W_HANDOVER || s == MV_W_DRAINING || s == MV_W_STOPPING || s == MV_W_FROZEN ||
           s == MV_W_KILLING;
}

const char *mv_wstate_name(mv_wstate_t s);
const char *mv_wevent_name(mv_wevent_t e);
const char *mv_action_name(mv_action_t a);

#endif
