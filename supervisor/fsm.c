/*
 * fsm: the worker lifecycle table.
 *
 * Stopping escalates against deadlines (DESIGN §5): DRAIN lets the task in hand finish, then
 * STOP asks the worker to exit and arms kill_timeout, then TIMEOUT sends SIGKILL. Only KILL
 * (the hard limit, a second signal to memvisor) skips straight to SIGKILL. A FAULT (a ready
 * or task deadline passed, a protocol error) means the worker is stuck or broken, so it gets
 * SIGTERM (TERM) and then the same kill_timeout, never a STOP message it would not read.
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
        [MV_EV_STARTED] = T(SPAWNING, NONE), [MV_EV_READY] = NO(PREPARING),
        [MV_EV_DISPATCH] = NO(PREPARING),    [MV_EV_IDLE] = NO(PREPARING),
        [MV_EV_DRAIN] = T(DEAD, DISCARD),    [MV_EV_FAULT] = T(DEAD, DISCARD),
        [MV_EV_KILL] = T(DEAD, DISCARD),     [MV_EV_TIMEOUT] = NO(PREPARING),
        [MV_EV_EXIT] = NO(PREPARING),
    },
    [MV_W_SPAWNING] = {
        [MV_EV_STARTED] = NO(SPAWNING),
        [MV_EV_READY] = T(READY, NONE),      [MV_EV_DISPATCH] = NO(SPAWNING),
        [MV_EV_IDLE] = NO(SPAWNING),         [MV_EV_DRAIN] = T(STOPPING, STOP),
        [MV_EV_FAULT] = T(STOPPING, TERM),   [MV_EV_KILL] = T(KILLING, KILL),
        [MV_EV_TIMEOUT] = NO(SPAWNING),      [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_READY] = {
        [MV_EV_STARTED] = NO(READY),
        [MV_EV_READY] = NO(READY),           [MV_EV_DISPATCH] = SAME(BUSY),
        [MV_EV_IDLE] = SAME(READY),          [MV_EV_DRAIN] = T(STOPPING, STOP),
        [MV_EV_FAULT] = T(STOPPING, TERM),   [MV_EV_KILL] = T(KILLING, KILL),
        [MV_EV_TIMEOUT] = NO(READY),         [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_BUSY] = {
        [MV_EV_STARTED] = NO(BUSY),
        [MV_EV_READY] = NO(BUSY),            [MV_EV_DISPATCH] = SAME(BUSY),
        [MV_EV_IDLE] = SAME(READY),          [MV_EV_DRAIN] = T(DRAINING, DRAIN),
        [MV_EV_FAULT] = T(STOPPING, TERM),   [MV_EV_KILL] = T(KILLING, KILL),
        [MV_EV_TIMEOUT] = NO(BUSY),          [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_DRAINING] = {
        [MV_EV_STARTED] = NO(DRAINING),
        [MV_EV_READY] = NO(DRAINING),        [MV_EV_DISPATCH] = NO(DRAINING),
        [MV_EV_IDLE] = T(STOPPING, STOP),    [MV_EV_DRAIN] = SAME(DRAINING),
        [MV_EV_FAULT] = T(STOPPING, TERM),   [MV_EV_KILL] = T(KILLING, KILL),
        [MV_EV_TIMEOUT] = NO(DRAINING),      [MV_EV_EXIT] = T(DEAD, REAP),
    },
    /* Late HELLOs and answers may still arrive once a worker was asked to go: ignore them.
     * A fault while stopping changes nothing: the kill timer is already running. */
    [MV_W_STOPPING] = {
        [MV_EV_STARTED] = NO(STOPPING),
        [MV_EV_READY] = SAME(STOPPING),      [MV_EV_DISPATCH] = NO(STOPPING),
        [MV_EV_IDLE] = SAME(STOPPING),       [MV_EV_DRAIN] = SAME(STOPPING),
        [MV_EV_FAULT] = SAME(STOPPING),      [MV_EV_KILL] = T(KILLING, KILL),
        [MV_EV_TIMEOUT] = T(KILLING, KILL),  [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_KILLING] = {
        [MV_EV_STARTED] = NO(KILLING),
        [MV_EV_READY] = SAME(KILLING),       [MV_EV_DISPATCH] = NO(KILLING),
        [MV_EV_IDLE] = SAME(KILLING),        [MV_EV_DRAIN] = SAME(KILLING),
        [MV_EV_FAULT] = SAME(KILLING),       [MV_EV_KILL] = SAME(KILLING),
        [MV_EV_TIMEOUT] = SAME(KILLING),     [MV_EV_EXIT] = T(DEAD, REAP),
    },
    [MV_W_DEAD] = {
        [MV_EV_STARTED] = NO(DEAD),
        [MV_EV_READY] = NO(DEAD),            [MV_EV_DISPATCH] = NO(DEAD),
        [MV_EV_IDLE] = NO(DEAD),             [MV_EV_DRAIN] = NO(DEAD),
        [MV_EV_FAULT] = NO(DEAD),            [MV_EV_KILL] = NO(DEAD),
        [MV_EV_TIMEOUT] = NO(DEAD),          [MV_EV_EXIT] = NO(DEAD),
    },
};
/* clang-format on */

mv_transition_t mv_fsm_step(mv_wstate_t state, mv_wevent_t event)
{
    if ((unsigned)state >= MV_W_NSTATES || (unsigned)event >= MV_EV_NEVENTS)
        return (mv_transition_t){state, MV_ACT_IMPOSSIBLE};
    return table[state][event];
}

const char *mv_wstate_name(mv_wstate_t s)
{
    static const char *const n[MV_W_NSTATES] = {"preparing", "spawning", "ready",   "busy",
                                                "draining",  "stopping", "killing", "dead"};
    return (unsigned)s < MV_W_NSTATES ? n[s] : "?";
}

const char *mv_wevent_name(mv_wevent_t e)
{
    static const char *const n[MV_EV_NEVENTS] = {"started", "ready", "dispatch", "idle", "drain",
                                                 "fault",   "kill",  "timeout",  "exit"};
    return (unsigned)e < MV_EV_NEVENTS ? n[e] : "?";
}

const char *mv_action_name(mv_action_t a)
{
    static const char *const n[] = {"none", "drain", "stop",    "term",
                                    "kill", "reap",  "discard", "impossible"};
    return (unsigned)a < MV_ARRAY_LEN(n) ? n[a] : "?";
}
