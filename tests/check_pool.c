/*
 * pool: the slots' decisions with fake workers (plain seats, no process, no loop): surge,
 * handover, the recycle queue (cap, spacing, urgency), respawn backoff, crash streaks and the
 * fatal code. pool.c only carries these out; the e2e suites cover that part.
 */
#include <check.h>

#include "policy.h"
#include "slots.h"
#include "suites.h"

static mv_slots_cfg_t cfg(int max_concurrent, int64_t spacing, int crash_limit, bool service)
{
    return (mv_slots_cfg_t){max_concurrent, spacing, 100, 1600, crash_limit, service};
}

/* Starts `n` slots with a fake worker each. */
static void start(mv_slots_t *s, mv_seat_t *w, int n, mv_slots_cfg_t c)
{
    ck_assert_int_eq(mv_slots_init(s, n, &c), 0);
    for (int i = 0; i < n; i++)
        ck_assert_uint_eq(mv_slots_take(s, &w[i], i + 1), 1);
}

START_TEST(surge_starts_the_replacement_before_the_old_one_leaves)
{
    mv_slots_t s;
    mv_seat_t w[2], repl;
    mv_recycle_plan_t p;
    mv_gone_plan_t g;

    start(&s, w, 2, cfg(1, 0, 10, false));
    p = mv_slots_recycle(&s, &w[0], MV_R_MAX_TASKS, false, 1000);
    ck_assert(p.go && p.replacement && !p.handover);
    ck_assert_ptr_null(s.slot[0].active); /* the slot is free for the replacement */
    ck_assert_uint_eq(mv_slots_take(&s, &repl, 1), 2);
    ck_assert_ptr_eq(s.slot[0].active, &repl);
    /* The old worker leaving later respawns nothing: its slot has a worker already. */
    g = mv_slots_gone(&s, &w[0], false, false);
    ck_assert(!g.respawn && !g.run_ends);
    ck_assert_int_eq(s.recycling, 0);
    mv_slots_free(&s);
}
END_TEST

/* With a ready spare to replace it at once, a memory recycle does not wait its turn behind
 * max_concurrent or the spacing (it still counts as a recycle under way); any other recycle,
 * a failure, or a worker that is no slot's active one (nothing to replace) still waits. */
START_TEST(a_memory_recycle_with_a_ready_spare_does_not_wait_its_turn)
{
    mv_slots_t s;
    mv_seat_t w[4], extra;
    mv_recycle_plan_t p;

    start(&s, w, 4, cfg(1, 60000, 10, true));
    p = mv_slots_recycle(&s, &w[0], MV_R_MAX_TASKS, false, 1000);
    ck_assert(p.go && p.replacement && p.handover);
    /* Held by max_concurrent and the spacing... */
    p = mv_slots_recycle(&s, &w[1], MV_R_SOFT_LIMIT, false, 1001);
    ck_assert(!p.go);
    ck_assert_int_eq(w[1].queued, MV_R_SOFT_LIMIT);
    /* ...unless a spare is ready: it goes now, off the queue, with its replacement. */
    p = mv_slots_recycle_spare(&s, &w[1], MV_R_SOFT_LIMIT, false, 1002);
    ck_assert(p.go && p.replacement && p.handover);
    ck_assert_int_eq(w[1].queued, MV_R_NONE);
    ck_assert_ptr_null(s.queue);
    ck_assert_int_eq(s.recycling, 2);
    /* Not for counts, nor for a failure (premature: no replacement to start). */
    ck_assert(!mv_slots_recycle_spare(&s, &w[2], MV_R_MAX_TASKS, false, 1003).go);
    ck_assert(!mv_slots_recycle_spare(&s, &w[3], MV_R_SOFT_LIMIT, true, 1004).go);
    /* Nor for a worker beside the slot's own (an escalated task's): no spare replaces it. */
    mv_slots_take_extra(&s, &extra, 1);
    ck_assert(!mv_slots_recycle_spare(&s, &extra, MV_R_SOFT_LIMIT, false, 1005).go);
    /* Nor once stopping: shutdowns take over. */
    mv_slots_stop(&s);
    ck_assert(!mv_slots_recycle_spare(&s, &w[3], MV_R_SOFT_LIMIT, false, 1006).go);
    mv_slots_free(&s);
}
END_TEST

/* A generation reserved for a worker started ahead is nobody else's: the slot's numbering
 * moves past it, taken by that worker or not. */
START_TEST(a_reserved_generation_is_given_once)
{
    mv_slots_t s;
    mv_seat_t w[1], succ, next;

    start(&s, w, 1, cfg(1, 0, 10, false));
    ck_assert_uint_eq(mv_slots_reserve(&s, 1), 2);
    mv_slots_take_reserved(&s, &succ, 1);
    ck_assert_ptr_eq(s.slot[0].active, &succ);
    ck_assert_int_eq(succ.slot, 1);
    ck_assert_uint_eq(mv_slots_reserve(&s, 1), 3);     /* this one dies unused... */
    ck_assert_uint_eq(mv_slots_take(&s, &next, 1), 4); /* ...and its number is not reused */
    ck_assert_ptr_eq(s.slot[0].active, &next);
    /* Generations whose cgroups are being removed (a reload) are passed over; passing one
     * already given, or a slot out of range, changes nothing */
    mv_slots_pass(&s, 1, 7);
    mv_slots_pass(&s, 1, 3);
    mv_slots_pass(&s, 2, 9);
    mv_slots_pass(&s, 0, 9);
    ck_assert_uint_eq(mv_slots_take(&s, &next, 1), 8);
    mv_slots_free(&s);
}
END_TEST

START_TEST(a_failure_gets_no_replacement_until_it_is_gone)
{
    mv_slots_t s;
    mv_seat_t w[1];
    mv_recycle_plan_t p;
    mv_gone_plan_t g;

    start(&s, w, 1, cfg(1, 0, 10, false));
    /* A premature memory stop (failure): no surge... */
    p = mv_slots_recycle(&s, &w[0], MV_R_SOFT_LIMIT, true, 1000);
    ck_assert(p.go && !p.replacement);
    ck_assert_ptr_eq(s.slot[0].active, &w[0]);
    /* ...its exit respawns the slot, the first failure at once. */
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert(g.respawn && g.delay_ms == 0 && !g.run_ends);
    /* A fault that is the worker's own (protocol error) gets no replacement either. */
    ck_assert_uint_eq(mv_slots_take(&s, &w[0], 1), 2);
    ck_assert(!mv_slots_replace_now(&s, &w[0], true));
    /* A task timeout (not its failure) does, once. */
    ck_assert(mv_slots_replace_now(&s, &w[0], false));
    ck_assert(!mv_slots_replace_now(&s, &w[0], false));
    mv_slots_free(&s);
}
END_TEST

START_TEST(the_queue_waits_for_the_cap_and_puts_memory_first)
{
    mv_slots_t s;
    mv_seat_t w[4], *next;
    mv_recycle_plan_t p;
    uint64_t retry;

    start(&s, w, 4, cfg(1, 0, 10, false));
    ck_assert(mv_slots_recycle(&s, &w[0], MV_R_REQUESTED, false, 1000).go);
    /* The cap is reached: the others wait, memory first, then in order of arrival. */
    p = mv_slots_recycle(&s, &w[1], MV_R_MAX_TASKS, false, 1001);
    ck_assert(!p.go && p.retry_ms == 0);
    ck_assert(!mv_slots_recycle(&s, &w[2], MV_R_REQUESTED, false, 1002).go);
    ck_assert(!mv_slots_recycle(&s, &w[3], MV_R_SOFT_LIMIT, false, 1003).go);
    ck_assert_ptr_null(mv_slots_next_queued(&s, 1004, &retry));
    /* A queued worker asked again for a more urgent reason moves up. */
    ck_assert(!mv_slots_recycle(&s, &w[2], MV_R_SOFT_LIMIT, false, 1005).go);
    ck_assert_ptr_eq(s.queue, &w[3]);
    ck_assert_ptr_eq(s.queue->qnext, &w[2]);
    ck_assert_ptr_eq(s.queue->qnext->qnext, &w[1]);
    /* The first recycle ends: the most urgent starts. */
    mv_slots_gone(&s, &w[0], false, false);
    next = mv_slots_next_queued(&s, 1006, &retry);
    ck_assert_ptr_eq(next, &w[3]);
    ck_assert(mv_slots_recycle(&s, next, next->queued, false, 1006).go);
    ck_assert_int_eq(w[3].queued, MV_R_NONE);
    ck_assert_ptr_null(mv_slots_next_queued(&s, 1007, &retry));
    /* A queued worker that dies leaves the queue. */
    mv_slots_gone(&s, &w[2], false, false);
    ck_assert_ptr_eq(s.queue, &w[1]);
    mv_slots_free(&s);
}
END_TEST

START_TEST(spacing_holds_planned_recycles_apart)
{
    mv_slots_t s;
    mv_seat_t w[2], *next;
    mv_recycle_plan_t p;
    uint64_t retry;

    start(&s, w, 2, cfg(4, 500, 10, false));
    ck_assert(mv_slots_recycle(&s, &w[0], MV_R_MAX_TASKS, false, 1000).go);
    p = mv_slots_recycle(&s, &w[1], MV_R_MAX_TASKS, false, 1200);
    ck_assert(!p.go && p.retry_ms == 300);
    ck_assert_ptr_null(mv_slots_next_queued(&s, 1400, &retry));
    ck_assert_uint_eq(retry, 100);
    next = mv_slots_next_queued(&s, 1500, &retry);
    ck_assert_ptr_eq(next, &w[1]);
    /* A shutdown never waits. */
    ck_assert(mv_slots_recycle(&s, &w[1], MV_R_SHUTDOWN, false, 1500).go);
    ck_assert_ptr_null(s.queue);
    mv_slots_free(&s);
}
END_TEST

START_TEST(handover_releases_the_old_worker_when_the_new_one_is_ready)
{
    mv_slots_t s;
    mv_seat_t w[1], repl, *out[4];
    mv_recycle_plan_t p;

    start(&s, w, 1, cfg(1, 0, 10, true));
    p = mv_slots_recycle(&s, &w[0], MV_R_SOFT_LIMIT, false, 1000);
    ck_assert(p.go && p.replacement && p.handover);
    ck_assert(w[0].handover);
    mv_slots_take(&s, &repl, 1);
    ck_assert_int_eq(mv_slots_ready(&s, &repl, out, 4), 1);
    ck_assert_ptr_eq(out[0], &w[0]);
    ck_assert(!w[0].handover);
    ck_assert_int_eq(mv_slots_ready(&s, &repl, out, 4), 0);
    mv_slots_gone(&s, &w[0], false, false);
    /* A shutdown of a worker in handover drains it now (no handover). */
    ck_assert(mv_slots_recycle(&s, &repl, MV_R_REQUESTED, false, 2000).go);
    ck_assert(repl.handover);
    ck_assert(mv_slots_recycle(&s, &repl, MV_R_SHUTDOWN, false, 2001).go);
    ck_assert(!repl.handover);
    ck_assert_ptr_null(s.slot[0].handing);
    mv_slots_free(&s);
}
END_TEST

START_TEST(backoff_grows_with_the_crash_streak_and_progress_ends_it)
{
    mv_slots_t s;
    mv_seat_t w[1];
    mv_gone_plan_t g;

    start(&s, w, 1, cfg(1, 0, 0, false));
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert(g.respawn && g.delay_ms == 0);
    mv_slots_take(&s, &w[0], 1);
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert(g.respawn && g.delay_ms == 100);
    mv_slots_take(&s, &w[0], 1);
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert_uint_eq(g.delay_ms, 200);
    mv_slots_take(&s, &w[0], 1);
    for (int i = 0; i < 10; i++) {
        g = mv_slots_gone(&s, &w[0], true, false);
        mv_slots_take(&s, &w[0], 1);
    }
    ck_assert_uint_eq(g.delay_ms, 1600); /* bounded by backoff_max */
    /* A task answered: the streak is over, the next crash costs nothing. */
    mv_slots_progress(&s, &w[0]);
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert_uint_eq(g.delay_ms, 0);
    /* A planned recycle's exit respawns at once and counts nothing. */
    mv_slots_take(&s, &w[0], 1);
    g = mv_slots_gone(&s, &w[0], false, false);
    ck_assert(g.respawn && g.delay_ms == 0);
    ck_assert_int_eq(s.slot[0].crashes, 1);
    mv_slots_free(&s);
}
END_TEST

START_TEST(crash_limit_and_the_fatal_code_end_the_run)
{
    mv_slots_t s;
    mv_seat_t w[2];
    mv_gone_plan_t g;

    start(&s, w, 2, cfg(1, 0, 3, false));
    g = mv_slots_gone(&s, &w[0], true, false);
    mv_slots_take(&s, &w[0], 1);
    g = mv_slots_gone(&s, &w[1], true, false);
    mv_slots_take(&s, &w[1], 2);
    ck_assert(!g.run_ends);
    /* The streak is pool-wide: the third failure in a row, whichever slot, gives up. */
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert(g.run_ends && g.crash_limit && !g.respawn);
    ck_assert(s.fatal);
    ck_assert(!mv_slots_may_spawn(&s, 1));
    mv_slots_free(&s);

    start(&s, w, 2, cfg(1, 0, 0, false));
    g = mv_slots_gone(&s, &w[0], true, true);
    ck_assert(g.run_ends && !g.crash_limit && !g.respawn);
    ck_assert(s.slot[0].fatal);
    mv_slots_free(&s);

    /* crash_limit 0: never gives up. */
    start(&s, w, 1, cfg(1, 0, 0, false));
    for (int i = 0; i < 100; i++) {
        g = mv_slots_gone(&s, &w[0], true, false);
        ck_assert(g.respawn && !g.run_ends);
        mv_slots_take(&s, &w[0], 1);
    }
    mv_slots_free(&s);
}
END_TEST

START_TEST(stopping_respawns_nothing_and_starts_no_queued_recycle)
{
    mv_slots_t s;
    mv_seat_t w[2];
    uint64_t retry;

    start(&s, w, 2, cfg(1, 0, 10, false));
    ck_assert(mv_slots_recycle(&s, &w[0], MV_R_MAX_TASKS, false, 1000).go);
    ck_assert(!mv_slots_recycle(&s, &w[1], MV_R_MAX_TASKS, false, 1000).go);
    mv_slots_stop(&s);
    ck_assert(!mv_slots_gone(&s, &w[0], false, false).respawn);
    ck_assert_ptr_null(mv_slots_next_queued(&s, 2000, &retry));
    ck_assert(!mv_slots_gone(&s, &w[1], true, false).respawn);
    mv_slots_free(&s);
}
END_TEST

/* Scaling down retires the slots whose workers lose least (rank), a tie to the highest
 * number, never slot 1; scaling up revives retired slots, lowest first, then numbers new
 * ones. A wanted count out of bounds or equal to the live one changes nothing. */
START_TEST(a_scale_plan_retires_the_idle_first_and_revives_the_lowest)
{
    mv_slots_t s;
    mv_seat_t w[5];
    int rank[6] = {0, 3, 0, 3, 1, 0}, out[16];
    bool up;

    start(&s, w, 5, cfg(1, 0, 10, false));
    ck_assert_int_eq(mv_slots_scale_plan(&s, 5, rank, out, &up), 0);
    ck_assert_int_eq(mv_slots_scale_plan(&s, 0, rank, out, &up), 0);
    /* 5 -> 2: slot 3 (rank 0), then 5 (1), then the busy 4 over the busy 2 (higher). */
    ck_assert_int_eq(mv_slots_scale_plan(&s, 2, rank, out, &up), 3);
    ck_assert(!up);
    ck_assert_int_eq(out[0], 3);
    ck_assert_int_eq(out[1], 5);
    ck_assert_int_eq(out[2], 4);
    /* 5 -> 1: slot 1, idle as it is, stays. */
    ck_assert_int_eq(mv_slots_scale_plan(&s, 1, rank, out, &up), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_ne(out[i], 1);
    ck_assert_ptr_eq(mv_slots_retire(&s, 3), &w[2]);
    ck_assert_ptr_eq(mv_slots_retire(&s, 5), &w[4]);
    ck_assert_ptr_eq(mv_slots_retire(&s, 4), &w[3]);
    ck_assert_int_eq(s.live, 2);
    ck_assert_ptr_null(mv_slots_retire(&s, 3)); /* once */
    ck_assert_int_eq(s.live, 2);
    /* 2 -> 6: 3, 4, 5 come back before a new 6. */
    ck_assert_int_eq(mv_slots_scale_plan(&s, 6, rank, out, &up), 4);
    ck_assert(up);
    ck_assert_int_eq(out[0], 3);
    ck_assert_int_eq(out[1], 4);
    ck_assert_int_eq(out[2], 5);
    ck_assert_int_eq(out[3], 6);
    ck_assert_int_eq(mv_slots_grow(&s, 6), 0);
    ck_assert_int_eq(s.n, 6);
    ck_assert(s.slot[5].retired); /* room only: revived by the caller */
    ck_assert_int_eq(s.live, 2);
    ck_assert(!mv_slots_may_spawn(&s, 6));
    mv_slots_revive(&s, 6);
    ck_assert_int_eq(s.live, 3);
    ck_assert(mv_slots_may_spawn(&s, 6));
    mv_slots_free(&s);
}
END_TEST

/* A retired slot's worker is not replaced: no surge when it recycles, no respawn when it
 * goes, its queued recycle dropped; revived, the slot may get a worker again. */
START_TEST(a_retired_slot_gets_no_replacement_until_revived)
{
    mv_slots_t s;
    mv_seat_t w[3], repl;
    mv_recycle_plan_t p;
    mv_gone_plan_t g;

    start(&s, w, 3, cfg(1, 60000, 10, false));
    p = mv_slots_recycle(&s, &w[0], MV_R_MAX_TASKS, false, 1000);
    ck_assert(p.go);
    ck_assert(!mv_slots_recycle(&s, &w[2], MV_R_MAX_TASKS, false, 1001).go); /* queued */
    ck_assert_ptr_eq(s.queue, &w[2]);
    ck_assert_ptr_eq(mv_slots_retire(&s, 3), &w[2]);
    ck_assert_ptr_null(s.queue);
    ck_assert_ptr_null(s.slot[2].active);
    ck_assert(!mv_slots_may_spawn(&s, 3));
    ck_assert(!mv_slots_replace_now(&s, &w[2], false));
    g = mv_slots_gone(&s, &w[2], false, false);
    ck_assert(!g.respawn && !g.run_ends);
    /* A crash of a retired slot's worker respawns nothing either. */
    ck_assert_ptr_eq(mv_slots_retire(&s, 2), &w[1]);
    g = mv_slots_gone(&s, &w[1], true, false);
    ck_assert(!g.respawn);
    ck_assert_int_eq(s.live, 1);
    mv_slots_revive(&s, 3);
    ck_assert(mv_slots_may_spawn(&s, 3));
    ck_assert_uint_eq(mv_slots_take(&s, &repl, 3), 2); /* its numbering goes on */
    ck_assert_int_eq(s.live, 2);
    mv_slots_free(&s);
}
END_TEST

/* The crash limit is reached once: the other workers failing as the run ends (a pool of many,
 * every one timing out together) do not report it again, one error line each. */
START_TEST(the_crash_limit_is_reported_once)
{
    mv_slots_t s;
    mv_seat_t w[4];
    mv_gone_plan_t g;

    start(&s, w, 4, cfg(1, 0, 2, false));
    g = mv_slots_gone(&s, &w[0], true, false);
    ck_assert(!g.crash_limit && !g.run_ends);
    g = mv_slots_gone(&s, &w[1], true, false);
    ck_assert(g.crash_limit && g.run_ends);
    g = mv_slots_gone(&s, &w[2], true, false);
    ck_assert(!g.crash_limit && !g.respawn);
    g = mv_slots_gone(&s, &w[3], true, false);
    ck_assert(!g.crash_limit && !g.respawn);
    ck_assert(s.fatal);
    mv_slots_free(&s);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("slots");

    tcase_add_test(tc, surge_starts_the_replacement_before_the_old_one_leaves);
    tcase_add_test(tc, a_failure_gets_no_replacement_until_it_is_gone);
    tcase_add_test(tc, a_reserved_generation_is_given_once);
    tcase_add_test(tc, a_memory_recycle_with_a_ready_spare_does_not_wait_its_turn);
    tcase_add_test(tc, the_queue_waits_for_the_cap_and_puts_memory_first);
    tcase_add_test(tc, spacing_holds_planned_recycles_apart);
    tcase_add_test(tc, handover_releases_the_old_worker_when_the_new_one_is_ready);
    tcase_add_test(tc, backoff_grows_with_the_crash_streak_and_progress_ends_it);
    tcase_add_test(tc, crash_limit_and_the_fatal_code_end_the_run);
    tcase_add_test(tc, the_crash_limit_is_reported_once);
    tcase_add_test(tc, stopping_respawns_nothing_and_starts_no_queued_recycle);
    tcase_add_test(tc, a_scale_plan_retires_the_idle_first_and_revives_the_lowest);
    tcase_add_test(tc, a_retired_slot_gets_no_replacement_until_revived);
    suite_add_tcase(s, tc);
    return s;
}
