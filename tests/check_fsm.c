/*
 * The worker lifecycle table: every state/event pair, stated here independently of fsm.c.
 */
#include <check.h>

#include "fsm.h"
#include "suites.h"

#define X MV_ACT_IMPOSSIBLE

typedef struct {
    mv_wstate_t next;
    mv_action_t act;
} want_t;

/* The expected table, written from DESIGN §5 and STYLE §4, not copied from fsm.c. */
static const want_t want[MV_W_NSTATES][MV_EV_NEVENTS] = {
    /* STARTED, READY, DISPATCH, IDLE, DRAIN, FAULT, KILL, TIMEOUT, EXIT */
    [MV_W_PREPARING] = {{MV_W_SPAWNING, MV_ACT_NONE},
                        {MV_W_PREPARING, X},
                        {MV_W_PREPARING, X},
                        {MV_W_PREPARING, X},
                        {MV_W_DEAD, MV_ACT_DISCARD},
                        {MV_W_DEAD, MV_ACT_DISCARD},
                        {MV_W_DEAD, MV_ACT_DISCARD},
                        {MV_W_PREPARING, X},
                        {MV_W_PREPARING, X}},
    [MV_W_SPAWNING] = {{MV_W_SPAWNING, X},
                       {MV_W_READY, MV_ACT_NONE},
                       {MV_W_SPAWNING, X},
                       {MV_W_SPAWNING, X},
                       {MV_W_STOPPING, MV_ACT_STOP},
                       {MV_W_STOPPING, MV_ACT_TERM},
                       {MV_W_KILLING, MV_ACT_KILL},
                       {MV_W_SPAWNING, X},
                       {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_READY] = {{MV_W_READY, X},
                    {MV_W_READY, X},
                    {MV_W_BUSY, MV_ACT_NONE},
                    {MV_W_READY, MV_ACT_NONE},
                    {MV_W_STOPPING, MV_ACT_STOP},
                    {MV_W_STOPPING, MV_ACT_TERM},
                    {MV_W_KILLING, MV_ACT_KILL},
                    {MV_W_READY, X},
                    {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_BUSY] = {{MV_W_BUSY, X},
                   {MV_W_BUSY, X},
                   {MV_W_BUSY, MV_ACT_NONE},
                   {MV_W_READY, MV_ACT_NONE},
                   {MV_W_DRAINING, MV_ACT_DRAIN},
                   {MV_W_STOPPING, MV_ACT_TERM},
                   {MV_W_KILLING, MV_ACT_KILL},
                   {MV_W_BUSY, X},
                   {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_DRAINING] = {{MV_W_DRAINING, X},
                       {MV_W_DRAINING, X},
                       {MV_W_DRAINING, X},
                       {MV_W_STOPPING, MV_ACT_STOP},
                       {MV_W_DRAINING, MV_ACT_NONE},
                       {MV_W_STOPPING, MV_ACT_TERM},
                       {MV_W_KILLING, MV_ACT_KILL},
                       {MV_W_DRAINING, X},
                       {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_STOPPING] = {{MV_W_STOPPING, X},
                       {MV_W_STOPPING, MV_ACT_NONE},
                       {MV_W_STOPPING, X},
                       {MV_W_STOPPING, MV_ACT_NONE},
                       {MV_W_STOPPING, MV_ACT_NONE},
                       {MV_W_STOPPING, MV_ACT_NONE},
                       {MV_W_KILLING, MV_ACT_KILL},
                       {MV_W_KILLING, MV_ACT_KILL},
                       {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_KILLING] = {{MV_W_KILLING, X},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_KILLING, X},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_KILLING, MV_ACT_NONE},
                      {MV_W_DEAD, MV_ACT_REAP}},
    [MV_W_DEAD] = {{MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X},
                   {MV_W_DEAD, X}},
};

/* One loop test per state/event pair (tcase_add_loop_test index = state * events + event). */
START_TEST(every_pair)
{
    mv_wstate_t s = (mv_wstate_t)(_i / MV_EV_NEVENTS);
    mv_wevent_t e = (mv_wevent_t)(_i % MV_EV_NEVENTS);
    mv_transition_t t = mv_fsm_step(s, e);

    ck_assert_msg(t.action == want[s][e].act, "%s + %s: action %s, want %s", mv_wstate_name(s),
                  mv_wevent_name(e), mv_action_name(t.action), mv_action_name(want[s][e].act));
    ck_assert_msg(t.next == want[s][e].next, "%s + %s: next %s, want %s", mv_wstate_name(s),
                  mv_wevent_name(e), mv_wstate_name(t.next), mv_wstate_name(want[s][e].next));
    /* An impossible pair never changes the state. */
    if (t.action == MV_ACT_IMPOSSIBLE)
        ck_assert_int_eq(t.next, s);
}
END_TEST

START_TEST(invariants)
{
    for (int s = 0; s < MV_W_NSTATES; s++) {
        for (int e = 0; e < MV_EV_NEVENTS; e++) {
            mv_transition_t t = mv_fsm_step(s, e);
            /* Only the exit leads a process to DEAD, and it always reaps; a worker that never
             * had a process is discarded instead. */
            if (t.next == MV_W_DEAD && s != MV_W_DEAD)
                ck_assert(s == MV_W_PREPARING ? t.action == MV_ACT_DISCARD
                                              : e == MV_EV_EXIT && t.action == MV_ACT_REAP);
            /* SIGKILL only for KILL, or after a kill_timeout that followed STOP/TERM. */
            if (t.action == MV_ACT_KILL)
                ck_assert(e == MV_EV_KILL || (e == MV_EV_TIMEOUT && s == MV_W_STOPPING));
            /* A worker asked to go never takes tasks again. */
            if (s >= MV_W_DRAINING)
                ck_assert(!mv_fsm_takes_tasks(t.next));
        }
        /* Every state with a process can be killed and can die. */
        if (s != MV_W_DEAD && s != MV_W_PREPARING) {
            ck_assert_int_eq(mv_fsm_step(s, MV_EV_EXIT).next, MV_W_DEAD);
            ck_assert_int_ne(mv_fsm_step(s, MV_EV_KILL).action, MV_ACT_IMPOSSIBLE);
        }
    }
}
END_TEST

START_TEST(out_of_range)
{
    mv_transition_t t = mv_fsm_step(MV_W_NSTATES, MV_EV_READY);

    ck_assert_int_eq(t.action, MV_ACT_IMPOSSIBLE);
    t = mv_fsm_step(MV_W_READY, (mv_wevent_t)-1);
    ck_assert_int_eq(t.action, MV_ACT_IMPOSSIBLE);
    ck_assert_int_eq(t.next, MV_W_READY);
    ck_assert_str_eq(mv_wstate_name(MV_W_NSTATES), "?");
    ck_assert_str_eq(mv_wevent_name(MV_EV_NEVENTS), "?");
}
END_TEST

/* A whole life: spawn, work, recycle with a task in hand, exit. */
START_TEST(a_life)
{
    static const struct {
        mv_wevent_t ev;
        mv_wstate_t state;
        mv_action_t act;
    } steps[] = {
        {MV_EV_READY, MV_W_READY, MV_ACT_NONE},     {MV_EV_DISPATCH, MV_W_BUSY, MV_ACT_NONE},
        {MV_EV_IDLE, MV_W_READY, MV_ACT_NONE},      {MV_EV_DISPATCH, MV_W_BUSY, MV_ACT_NONE},
        {MV_EV_DRAIN, MV_W_DRAINING, MV_ACT_DRAIN}, {MV_EV_IDLE, MV_W_STOPPING, MV_ACT_STOP},
        {MV_EV_TIMEOUT, MV_W_KILLING, MV_ACT_KILL}, {MV_EV_EXIT, MV_W_DEAD, MV_ACT_REAP},
    };
    mv_wstate_t s = MV_W_PREPARING;

    ck_assert_int_eq(mv_fsm_step(s, MV_EV_STARTED).next, MV_W_SPAWNING);
    s = MV_W_SPAWNING;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        mv_transition_t t = mv_fsm_step(s, steps[i].ev);
        ck_assert_int_eq(t.next, steps[i].state);
        ck_assert_int_eq(t.action, steps[i].act);
        s = t.next;
    }
}
END_TEST

Suite *fsm_suite(void)
{
    Suite *s = suite_create("fsm");
    TCase *tc = tcase_create("table");

    tcase_add_loop_test(tc, every_pair, 0, MV_W_NSTATES * MV_EV_NEVENTS);
    tcase_add_test(tc, invariants);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, a_life);
    suite_add_tcase(s, tc);
    return s;
}
