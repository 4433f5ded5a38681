/*
 * The worker lifecycle table: every state/event pair, stated here independently of fsm.c.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fsm.h"
#include "suites.h"

/*
 * The expected table, written from DESIGN §5 and STYLE §4, not copied from fsm.c: one row per
 * state, one "next/action" per event in mv_wevent_t order ("x" = cannot happen, state kept).
 *   started spawn_failed ready dispatch idle handover replaced drain fault freeze kill
 *   chan_eof timeout exit
 */
static const char *const want[MV_W_NSTATES] = {
    [MV_W_PREPARING] = "spawning/none dead/reap x x x dead/discard x dead/discard dead/discard "
                       "dead/discard dead/discard x x x",
    [MV_W_SPAWNING] = "x killing/kill ready/none x x stopping/stop x stopping/stop stopping/term "
                      "frozen/freeze killing/kill stopping/none stopping/term dead/reap",
    [MV_W_READY] = "x x x busy/none ready/none handover/none x stopping/stop stopping/term "
                   "frozen/freeze killing/kill stopping/none x dead/reap",
    [MV_W_BUSY] = "x x x busy/none ready/none handover/none x draining/drain stopping/term "
                  "frozen/freeze killing/kill stopping/none stopping/term dead/reap",
    [MV_W_HANDOVER] = "x x x handover/none handover/none handover/none draining/drain "
                      "draining/drain stopping/term frozen/freeze killing/kill stopping/none "
                      "stopping/term dead/reap",
    [MV_W_DRAINING] = "x x x draining/none stopping/stop draining/none draining/none "
                      "draining/none stopping/term frozen/freeze killing/kill stopping/none "
                      "stopping/term dead/reap",
    [MV_W_STOPPING] = "x x stopping/none stopping/none stopping/none stopping/none stopping/none "
                      "stopping/none stopping/none frozen/freeze killing/kill stopping/none "
                      "killing/kill dead/reap",
    [MV_W_FROZEN] = "x x frozen/none x frozen/none frozen/none frozen/none frozen/none "
                    "frozen/none frozen/none killing/kill frozen/none killing/kill dead/reap",
    [MV_W_KILLING] = "x x killing/none x killing/none killing/none killing/none killing/none "
                     "killing/none killing/none killing/none killing/none killing/none dead/reap",
    [MV_W_DEAD] = "x x x x x x x x x x x x x x",
};

/* The expected transition of state s on event e, parsed from `want`. */
static mv_transition_t expected(mv_wstate_t s, mv_wevent_t e)
{
    char row[512], *save, *tok = NULL, *slash;
    mv_transition_t t = {s, MV_ACT_IMPOSSIBLE};

    snprintf(row, sizeof row, "%s", want[s]);
    tok = strtok_r(row, " ", &save);
    for (int i = 0; i < (int)e && tok; i++)
        tok = strtok_r(NULL, " ", &save);
    ck_assert_msg(tok, "row %s is short", mv_wstate_name(s));
    if (strcmp(tok, "x") == 0)
        return t;
    slash = strchr(tok, '/');
    ck_assert_ptr_nonnull(slash);
    *slash = '\0';
    for (int n = 0; n < MV_W_NSTATES; n++)
        if (strcmp(mv_wstate_name(n), tok) == 0)
            t.next = n;
    for (int a = 0; a <= MV_ACT_IMPOSSIBLE; a++)
        if (strcmp(mv_action_name(a), slash + 1) == 0)
            t.action = a;
    ck_assert_msg(strcmp(mv_wstate_name(t.next), tok) == 0, "unknown state %s", tok);
    ck_assert_msg(strcmp(mv_action_name(t.action), slash + 1) == 0, "unknown action %s", slash + 1);
    return t;
}

/* One loop test per state/event pair (tcase_add_loop_test index = state * events + event). */
START_TEST(every_pair)
{
    mv_wstate_t s = (mv_wstate_t)(_i / MV_EV_NEVENTS);
    mv_wevent_t e = (mv_wevent_t)(_i % MV_EV_NEVENTS);
    mv_transition_t t = mv_fsm_step(s, e), w = expected(s, e);

    ck_assert_msg(t.action == w.action, "%s + %s: action %s, want %s", mv_wstate_name(s),
                  mv_wevent_name(e), mv_action_name(t.action), mv_action_name(w.action));
    ck_assert_msg(t.next == w.next, "%s + %s: next %s, want %s", mv_wstate_name(s),
                  mv_wevent_name(e), mv_wstate_name(t.next), mv_wstate_name(w.next));
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
            /* A process reaches DEAD by its exit only, and is reaped; a worker that never had
             * one is reaped when it could not be made, else discarded. */
            if (t.next == MV_W_DEAD && s != MV_W_DEAD)
                ck_assert(s == MV_W_PREPARING
                              ? t.action == (e == MV_EV_SPAWN_FAILED ? MV_ACT_REAP : MV_ACT_DISCARD)
                              : e == MV_EV_EXIT && t.action == MV_ACT_REAP);
            /* SIGKILL only for KILL, a process that cannot be wired up, or after a
             * kill_timeout that followed STOP/TERM/FREEZE. */
            if (t.action == MV_ACT_KILL)
                ck_assert(e == MV_EV_KILL || e == MV_EV_SPAWN_FAILED ||
                          (e == MV_EV_TIMEOUT && (s == MV_W_STOPPING || s == MV_W_FROZEN)));
            /* A worker on its way out never takes tasks again, and never comes back. */
            if (s >= MV_W_DRAINING && s != MV_W_DEAD)
                ck_assert(!mv_fsm_takes_tasks(t.next) &&
                          mv_fsm_leaving(t.next) == (t.next != MV_W_DEAD));
            /* A handover only ever moves further out. */
            if (s == MV_W_HANDOVER)
                ck_assert(t.next == MV_W_HANDOVER || t.next >= MV_W_DRAINING);
            /* A deadline fires only in a state that arms one. */
            if (e == MV_EV_TIMEOUT && mv_fsm_deadline(s) == MV_DL_NONE)
                ck_assert(t.action == MV_ACT_IMPOSSIBLE || ((int)t.next == s && s == MV_W_KILLING));
        }
        /* Every state with a process can be killed and can die. */
        if (mv_fsm_has_process(s)) {
            ck_assert_int_eq(mv_fsm_step(s, MV_EV_EXIT).next, MV_W_DEAD);
            ck_assert_int_ne(mv_fsm_step(s, MV_EV_KILL).action, MV_ACT_IMPOSSIBLE);
        }
    }
}
END_TEST

START_TEST(deadlines)
{
    ck_assert_int_eq(mv_fsm_deadline(MV_W_PREPARING), MV_DL_NONE);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_SPAWNING), MV_DL_READY);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_READY), MV_DL_NONE);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_BUSY), MV_DL_TASK);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_HANDOVER), MV_DL_TASK);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_DRAINING), MV_DL_TASK);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_STOPPING), MV_DL_KILL);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_FROZEN), MV_DL_KILL);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_KILLING), MV_DL_NONE);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_DEAD), MV_DL_NONE);
    ck_assert_int_eq(mv_fsm_deadline(MV_W_NSTATES), MV_DL_NONE);
}
END_TEST

START_TEST(predicates)
{
    for (int s = 0; s < MV_W_NSTATES; s++) {
        /* Serving means taking tasks with no recycle decided. */
        ck_assert(!mv_fsm_serving(s) || mv_fsm_takes_tasks(s));
        ck_assert(!mv_fsm_serving(s) || !mv_fsm_leaving(s));
        /* Only a running process is watched. */
        ck_assert(!mv_fsm_watched(s) || mv_fsm_has_process(s));
    }
    ck_assert(mv_fsm_takes_tasks(MV_W_HANDOVER) && !mv_fsm_serving(MV_W_HANDOVER));
    ck_assert(!mv_fsm_watched(MV_W_FROZEN) && !mv_fsm_watched(MV_W_KILLING));
    ck_assert(!mv_fsm_watched(MV_W_SPAWNING));
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

/* Whole lives: spawn, work, recycle with a task in hand, exit; a service's handover; a
 * snapshot before a hard-limit kill. */
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
    static const struct {
        mv_wevent_t ev;
        mv_wstate_t state;
        mv_action_t act;
    } handover[] =
        {
            {MV_EV_READY, MV_W_READY, MV_ACT_NONE},
            {MV_EV_HANDOVER, MV_W_HANDOVER, MV_ACT_NONE},
            {MV_EV_DISPATCH, MV_W_HANDOVER, MV_ACT_NONE},
            {MV_EV_REPLACED, MV_W_DRAINING, MV_ACT_DRAIN},
            {MV_EV_IDLE, MV_W_STOPPING, MV_ACT_STOP},
            {MV_EV_EXIT, MV_W_DEAD, MV_ACT_REAP},
        },
      frozen[] = {
          {MV_EV_READY, MV_W_READY, MV_ACT_NONE},     {MV_EV_DISPATCH, MV_W_BUSY, MV_ACT_NONE},
          {MV_EV_FREEZE, MV_W_FROZEN, MV_ACT_FREEZE}, {MV_EV_IDLE, MV_W_FROZEN, MV_ACT_NONE},
          {MV_EV_KILL, MV_W_KILLING, MV_ACT_KILL},    {MV_EV_EXIT, MV_W_DEAD, MV_ACT_REAP},
      };
    mv_wstate_t s = MV_W_PREPARING;

    for (size_t i = 0; i < sizeof handover / sizeof handover[0]; i++) {
        mv_transition_t t = mv_fsm_step(i ? s : MV_W_SPAWNING, handover[i].ev);
        ck_assert_int_eq(t.next, handover[i].state);
        ck_assert_int_eq(t.action, handover[i].act);
        s = t.next;
    }
    for (size_t i = 0; i < sizeof frozen / sizeof frozen[0]; i++) {
        mv_transition_t t = mv_fsm_step(i ? s : MV_W_SPAWNING, frozen[i].ev);
        ck_assert_int_eq(t.next, frozen[i].state);
        ck_assert_int_eq(t.action, frozen[i].act);
        s = t.next;
    }
    s = MV_W_PREPARING;
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
    tcase_add_test(tc, deadlines);
    tcase_add_test(tc, predicates);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, a_life);
    suite_add_tcase(s, tc);
    return s;
}
