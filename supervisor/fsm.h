/*
 * fsm: the life of one worker process as one table, actions[state][event] (s6-supervise
 * style). Pure: the pool feeds events, the table answers with the next state and an action
 * the pool carries out. Pairs that cannot happen say so, and the pool logs "can't happen".
 *
 * Respawning, backoff and surge are slot-level decisions taken by the pool when a worker
 * reaches DEAD; they are not states of a process.
 */
#ifndef MV_FSM_H
#define MV_FSM_H

typedef enum {
    MV_W_PREPARING, /* its cgroup is being made in the thread pool; no process yet */
    MV_W_SPAWNING,  /* process started, not ready yet (api: waiting for HELLO) */
    MV_W_READY,     /* idle, takes tasks */
    MV_W_BUSY,      /* one or more tasks in flight, takes more up to prefetch */
    MV_W_DRAINING,  /* recycling: finishes the task in hand, takes no new one */
    MV_W_STOPPING,  /* asked to exit (STOP, EOF+SIGTERM, SIGTERM); kill timer armed */
    MV_W_KILLING,   /* SIGKILL sent, waiting for the exit */
    MV_W_DEAD,      /* exited and reaped */
    MV_W_NSTATES
} mv_wstate_t;

typedef enum {
    MV_EV_STARTED,  /* its process was started (uv_spawn succeeded) */
    MV_EV_READY,    /* the worker can take tasks (api: valid HELLO; lines/none: spawned) */
    MV_EV_DISPATCH, /* a task was sent to it */
    MV_EV_IDLE,     /* nothing it is working on is outstanding any more */
    MV_EV_DRAIN,    /* recycle gracefully: finish the task in hand, then exit */
    MV_EV_FAULT,    /* stuck or broken (ready/task deadline, protocol error): terminate it */
    MV_EV_KILL,     /* kill now: hard limit, second signal to memvisor */
    MV_EV_TIMEOUT,  /* kill_timeout passed since it was asked to exit */
    MV_EV_EXIT,     /* the process exited (libuv's exit callback) */
    MV_EV_NEVENTS
} mv_wevent_t;

typedef enum {
    MV_ACT_NONE,       /* nothing to do beyond the state change */
    MV_ACT_DRAIN,      /* api: send STOP, so the worker starts no other task (DRAINING itself
                        * already keeps new tasks away) */
    MV_ACT_STOP,       /* ask to exit: api STOP, lines EOF+SIGTERM, none SIGTERM; arm kill timer */
    MV_ACT_TERM,       /* SIGTERM whatever the protocol (stuck worker); arm kill timer */
    MV_ACT_KILL,       /* SIGKILL now */
    MV_ACT_REAP,       /* gone: settle its tasks, close its handles, let the slot respawn */
    MV_ACT_DISCARD,    /* it never had a process: drop it once its cgroup is made */
    MV_ACT_IMPOSSIBLE, /* the pair cannot happen: log it, change nothing */
} mv_action_t;

typedef struct mv_transition {
    mv_wstate_t next;
    mv_action_t action;
} mv_transition_t;

/* The table lookup. Out-of-range inputs answer MV_ACT_IMPOSSIBLE and keep the state. */
mv_transition_t mv_fsm_step(mv_wstate_t state, mv_wevent_t event);

/* Whether a worker in this state may be given tasks. */
static inline int mv_fsm_takes_tasks(mv_wstate_t s)
{
    return s == MV_W_READY || s == MV_W_BUSY;
}

/* Whether the process is (still) alive in this state. */
static inline int mv_fsm_alive(mv_wstate_t s)
{
    return s != MV_W_DEAD;
}

const char *mv_wstate_name(mv_wstate_t s);
const char *mv_wevent_name(mv_wevent_t e);
const char *mv_action_name(mv_action_t a);

#endif
