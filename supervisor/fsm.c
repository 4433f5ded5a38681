/*
 * fsm: the worker lifecycle table.
 *
 * Stopping escalates against deadlines (DESIGN §5): DRAIN lets the task in hand finish, then
 * STOP asks the worker to exit and STOPPING's deadline (kill_timeout) sends SIGKILL. Only
 * KILL (the hard limit, a second signal to memvisor) skips straight to SIGKILL. A FAULT (a
 * protocol error) or a TIMEOUT while working (ready or task deadline) means the worker is
 * stuck or broken, so it gets SIGTERM and then the same kill_timeout, never a STOP message
 * it would not read. A closed channel (CHAN_EOF) means the exit is on its way: STOPPING
 * waits kill_timeout for it without a signal.
 *
 * HANDOVER keeps a recycled worker serving until its replacement is ready (REPLACED), then
 * it drains like any other. FROZEN holds a worker stopped while its snapshot is read before
 * a hard-limit kill; KILL ends it (or kill_timeout, should the snapshot never finish).
 */
#include "fsm.h"

#include "util.h"

#define T(n, a)              \
    {                        \
        MV_W_##n, MV_ACT_##a \
    }
#define SAME(s)               \
    {                         \
        MV_W_##s, MV_ACT_NONE \
    }
#define NO(s)                       \
    {                               \
        MV_W_##s, MV_ACT_IMPOSSIBLE \
    }

/* clang-format off */
static const mv_transition_t table[MV_W_NSTATES][MV_EV_NEVENTS] = {
    [MV_W_PREPARING] = {
        [MV_EV_STARTED] = T(SPAWNING, NONE),     [MV_EV_SPAWN_FAILED] = T(DEAD, REAP),
        [MV_EV_READY] = NO(PREPARING),           [MV_EV_DISPATCH] = NO(PREPARING),
        [MV_EV_IDLE] = NO(PREPARING),            [MV_EV_HANDOVER] = T(DEAD, DISCARD),
        [MV_EV_REPLACED] = NO(PREPARING),        [MV_EV_DRAIN] = T(DEAD, DISCARD),
        [MV_EV_FAULT] = T(DEAD, DISCARD),        [MV_EV_FREEZE] = T(DEAD, DISCARD),
        [MV_EV_KILL] = T(DEAD, DISCARD),         [MV_EV_CHAN_EOF] = NO(PREPARING),
        [MV_EV_TIMEOUT] = NO(PREPARING),         [MV_EV_EXIT] = NO(PREPARING),
    },
    [MV_W_SPAWNING] = {
        [MV_EV_STARTED] = NO(SPAWNING),          [MV_EV_SPAWN_FAILED] = T(KILLING, KILL),
        [MV_EV_READY] = T(READY, NONE),          [MV_EV_DISPATCH] = NO(SPAWNING),
        [MV_EV_IDLE] = NO(SPAWNING),             [MV_EV_HANDOVER] = T(STOPPING, STOP),
        [MV_EV_REPLACED] = NO(SPAWNING),         [MV_EV_DRAIN] = T(STOPPING, STOP),
        [MV_EV_FAULT] = T(STOPPING, TERM),       [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = T(STOPPING, NONE),
        [MV_EV_TIMEOUT] = T(STOPPING, TERM),     [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_READY] = {
        [MV_EV_STARTED] = NO(READY),             [MV_EV_SPAWN_FAILED] = NO(READY),
        [MV_EV_READY] = NO(READY),               [MV_EV_DISPATCH] = SAME(BUSY),
        [MV_EV_IDLE] = SAME(READY),              [MV_EV_HANDOVER] = SAME(HANDOVER),
        [MV_EV_REPLACED] = NO(READY),            [MV_EV_DRAIN] = T(STOPPING, STOP),
        [MV_EV_FAULT] = T(STOPPING, TERM),       [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = T(STOPPING, NONE),
        [MV_EV_TIMEOUT] = NO(READY),             [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_BUSY] = {
        [MV_EV_STARTED] = NO(BUSY),              [MV_EV_SPAWN_FAILED] = NO(BUSY),
        [MV_EV_READY] = NO(BUSY),                [MV_EV_DISPATCH] = SAME(BUSY),
        [MV_EV_IDLE] = SAME(READY),              [MV_EV_HANDOVER] = SAME(HANDOVER),
        [MV_EV_REPLACED] = NO(BUSY),             [MV_EV_DRAIN] = T(DRAINING, DRAIN),
        [MV_EV_FAULT] = T(STOPPING, TERM),       [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = T(STOPPING, NONE),
        [MV_EV_TIMEOUT] = T(STOPPING, TERM),     [MV_EV_EXIT] = T(DEAD, REAP),
    },
    /* Serving on, busy or idle: a drain or the replacement sends it on its way. */
    [MV_W_HANDOVER] = {
        [MV_EV_STARTED] = NO(HANDOVER),          [MV_EV_SPAWN_FAILED] = NO(HANDOVER),
        [MV_EV_READY] = NO(HANDOVER),            [MV_EV_DISPATCH] = SAME(HANDOVER),
        [MV_EV_IDLE] = SAME(HANDOVER),           [MV_EV_HANDOVER] = SAME(HANDOVER),
        [MV_EV_REPLACED] = T(DRAINING, DRAIN),   [MV_EV_DRAIN] = T(DRAINING, DRAIN),
        [MV_EV_FAULT] = T(STOPPING, TERM),       [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = T(STOPPING, NONE),
        [MV_EV_TIMEOUT] = T(STOPPING, TERM),     [MV_EV_EXIT] = T(DEAD, REAP),
    },
    /* A service's draining worker still finishes the requests of its open connections, so
     * DISPATCH (a request began) keeps it draining. */
    [MV_W_DRAINING] = {
        [MV_EV_STARTED] = NO(DRAINING),          [MV_EV_SPAWN_FAILED] = NO(DRAINING),
        [MV_EV_READY] = NO(DRAINING),            [MV_EV_DISPATCH] = SAME(DRAINING),
        [MV_EV_IDLE] = T(STOPPING, STOP),        [MV_EV_HANDOVER] = SAME(DRAINING),
        [MV_EV_REPLACED] = SAME(DRAINING),       [MV_EV_DRAIN] = SAME(DRAINING),
        [MV_EV_FAULT] = T(STOPPING, TERM),       [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = T(STOPPING, NONE),
        [MV_EV_TIMEOUT] = T(STOPPING, TERM),     [MV_EV_EXIT] = T(DEAD, REAP),
    },
    /* Late HELLOs and answers may still arrive once a worker was asked to go: ignore them.
     * A fault while stopping changes nothing: the kill deadline is already running. */
    [MV_W_STOPPING] = {
        [MV_EV_STARTED] = NO(STOPPING),          [MV_EV_SPAWN_FAILED] = NO(STOPPING),
        [MV_EV_READY] = SAME(STOPPING),          [MV_EV_DISPATCH] = SAME(STOPPING),
        [MV_EV_IDLE] = SAME(STOPPING),           [MV_EV_HANDOVER] = SAME(STOPPING),
        [MV_EV_REPLACED] = SAME(STOPPING),       [MV_EV_DRAIN] = SAME(STOPPING),
        [MV_EV_FAULT] = SAME(STOPPING),          [MV_EV_FREEZE] = T(FROZEN, FREEZE),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = SAME(STOPPING),
        [MV_EV_TIMEOUT] = T(KILLING, KILL),      [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_FROZEN] = {
        [MV_EV_STARTED] = NO(FROZEN),            [MV_EV_SPAWN_FAILED] = NO(FROZEN),
        [MV_EV_READY] = SAME(FROZEN),            [MV_EV_DISPATCH] = NO(FROZEN),
        [MV_EV_IDLE] = SAME(FROZEN),             [MV_EV_HANDOVER] = SAME(FROZEN),
        [MV_EV_REPLACED] = SAME(FROZEN),         [MV_EV_DRAIN] = SAME(FROZEN),
        [MV_EV_FAULT] = SAME(FROZEN),            [MV_EV_FREEZE] = SAME(FROZEN),
        [MV_EV_KILL] = T(KILLING, KILL),         [MV_EV_CHAN_EOF] = SAME(FROZEN),
        [MV_EV_TIMEOUT] = T(KILLING, KILL),      [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_KILLING] = {
        [MV_EV_STARTED] = NO(KILLING),           [MV_EV_SPAWN_FAILED] = NO(KILLING),
        [MV_EV_READY] = SAME(KILLING),           [MV_EV_DISPATCH] = NO(KILLING),
        [MV_EV_IDLE] = SAME(KILLING),            [MV_EV_HANDOVER] = SAME(KILLING),
        [MV_EV_REPLACED] = SAME(KILLING),        [MV_EV_DRAIN] = SAME(KILLING),
        [MV_EV_FAULT] = SAME(KILLING),           [MV_EV_FREEZE] = SAME(KILLING),
        [MV_EV_KILL] = SAME(KILLING),            [MV_EV_CHAN_EOF] = SAME(KILLING),
        [MV_EV_TIMEOUT] = SAME(KILLING),         [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_DEAD] = {
        [MV_EV_STARTED] = NO(DEAD),              [MV_EV_SPAWN_FAILED] = NO(DEAD),
        [MV_EV_READY] = NO(DEAD),                [MV_EV_DISPATCH] = NO(DEAD),
        [MV_EV_IDLE] = NO(DEAD),                 [MV_EV_HANDOVER] = NO(DEAD),
        [MV_EV_REPLACED] = NO(DEAD),             [MV_EV_DRAIN] = NO(DEAD),
        [MV_EV_FAULT] = NO(DEAD),                [MV_EV_FREEZE] = NO(DEAD),
        [MV_EV_KILL] = NO(DEAD),                 [MV_EV_CHAN_EOF] = NO(DEAD),
        [MV_EV_TIMEOUT] = NO(DEAD),              [MV_EV_EXIT] = NO(DEAD),
    },
};

static const mv_deadline_t deadlines[MV_W_NSTATES] = {
    [MV_W_PREPARING] = MV_DL_NONE,  [MV_W_SPAWNING] = MV_DL_READY, [MV_W_READY] = MV_DL_NONE,
    [MV_W_BUSY] = MV_DL_TASK,       [MV_W_HANDOVER] = MV_DL_TASK,  [MV_W_DRAINING] = MV_DL_TASK,
    [MV_W_STOPPING] = MV_DL_KILL,   [MV_W_FROZEN] = MV_DL_KILL,    [MV_W_KILLING] = MV_DL_NONE,
    [MV_W_DEAD] = MV_DL_NONE,
};
/* clang-format on */

mv_transition_t mv_fsm_step(mv_wstate_t state, mv_wevent_t event)
{
    if ((unsigned)state >= MV_W_NSTATES || (unsigned)event >= MV_EV_NEVENTS)
        return (mv_transition_t){state, MV_ACT_IMPOSSIBLE};
    return table[state][event];
}

mv_deadline_t mv_fsm_deadline(mv_wstate_t s)
{
    return (unsigned)s < MV_W_NSTATES ? deadlines[s] : MV_DL_NONE;
}

const char *mv_wstate_name(mv_wstate_t s)
{
    static const char *const n[MV_W_NSTATES] = {"preparing", "spawning", "ready",    "busy",
                                                "handover",  "draining", "stopping", "frozen",
                                                "killing",   "dead"};
    return (unsigned)s < MV_W_NSTATES ? n[s] : "?";
}

const char *mv_wevent_name(mv_wevent_t e)
{
    static const char *const n[MV_EV_NEVENTS] = {
        "started", "spawn_failed", "ready",  "dispatch", "idle",     "handover", "replaced",
        "drain",   "fault",        "freeze", "kill",     "chan_eof", "timeout",  "exit"};
    return (unsigned)e < MV_EV_NEVENTS ? n[e] : "?";
}

const char *mv_action_name(mv_action_t a)
{
    static const char *const n[] = {"none", "drain", "stop",    "term",      "freeze",
                                    "kill", "reap",  "discard", "impossible"};
    return (unsigned)a < MV_ARRAY_LEN(n) ? n[a] : "?";
}
