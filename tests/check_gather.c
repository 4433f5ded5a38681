/*
 * gather: when a busy worker's answers are read in batches (prefetch > 1), from plain facts:
 * reads (when, answers so far, tasks still in hand) and the refill after each, the pause out.
 */
#include <check.h>

#include "gather.h"
#include "suites.h"

#define US 1000ULL
#define MS (1000 * US)

/* One read of `answers` answers at t, then the dispatch pass that leaves it `refilled` tasks. */
static uint64_t read_then_pass(mv_gather_t *g, uint64_t t, unsigned answers, unsigned left,
                               unsigned refilled)
{
    mv_gather_read(g, t, g->done + answers, left);
    return mv_gather_pause(g, refilled);
}

/* A worker answering every `per` ns, `batch` answers a read, refilled to `in_hand` tasks after
 * each: the pause after the last of `reads` reads. */
static uint64_t steady(mv_gather_t *g, uint64_t per, unsigned batch, unsigned in_hand, int reads)
{
    uint64_t t = g->at_ns ? g->at_ns : 1 * MS, ms = 0;

    for (int i = 0; i < reads; i++) {
        t += per * batch;
        ms = read_then_pass(g, t, batch, in_hand - batch, in_hand);
    }
    return ms;
}

START_TEST(a_fast_worker_holding_work_is_paused)
{
    mv_gather_t g = {0};

    /* W1's shape: an answer every ~70 us, refilled to 64 tasks (4.5 ms of work). */
    ck_assert_uint_eq(steady(&g, 70 * US, 2, 64, 1), 0); /* first read: rate unknown */
    ck_assert_uint_eq(steady(&g, 70 * US, 2, 64, 5), 2); /* 2 ms: within 3, 1.5 left */
    ck_assert_uint_eq(g.ns_per, 70 * US);
    /* Paused, its next read brings ~20 answers: the rate stays what it is. */
    ck_assert_uint_eq(steady(&g, 70 * US, 20, 64, 5), 2);
    ck_assert_uint_ge(g.ns_per, 69 * US); /* the decay's rounding */
    ck_assert_uint_le(g.ns_per, 70 * US);
}
END_TEST

START_TEST(the_decision_counts_the_refill)
{
    mv_gather_t g = {0};

    steady(&g, 70 * US, 2, 64, 6);
    /* 25 answers leave 39 (2.7 ms)... */
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 25 * 70 * US, 25, 39, 39), 1);
    /* ...20 left is 1.4 ms: a pause of up to 2 ms could leave it idle... */
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 44 * 70 * US, 44, 20, 20), 0);
    /* ...unless the pass refilled it. */
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 44 * 70 * US, 44, 20, 64), 2);
    /* Nothing in hand. */
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 70 * US, 1, 0, 0), 0);
}
END_TEST

START_TEST(one_pause_per_read_with_answers)
{
    mv_gather_t g = {0};

    ck_assert_uint_eq(steady(&g, 70 * US, 2, 64, 6), 2);
    /* Another pass without a read in between (a new task queued): no second pause. */
    ck_assert_uint_eq(mv_gather_pause(&g, 64), 0);
    /* Half a line: no answer, nothing learned, no pause. */
    mv_gather_t before = g;
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 10 * US, 0, 64, 64), 0);
    ck_assert_uint_eq(g.at_ns, before.at_ns);
    ck_assert_uint_eq(g.ns_per, before.ns_per);
}
END_TEST

START_TEST(slow_answers_are_read_as_they_come)
{
    mv_gather_t g = {0};

    /* An answer every 2 ms: few wake-ups anyway, and each answer would wait for little. */
    ck_assert_uint_eq(steady(&g, 2 * MS, 1, 64, 8), 0);
}
END_TEST

START_TEST(idle_time_is_not_taken_for_work)
{
    mv_gather_t g = {0};
    uint64_t per;

    ck_assert_uint_eq(steady(&g, 50 * US, 4, 64, 4), MV_GATHER_MS);
    per = g.ns_per;
    /* It answered everything and the pass had nothing to give it; tasks came 5 s later:
     * that wait says nothing of its speed. */
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 60 * 50 * US, 60, 0, 0), 0);
    ck_assert_uint_eq(g.ns_per, per);
    ck_assert_uint_eq(read_then_pass(&g, g.at_ns + 5000 * MS, 2, 62, 64), MV_GATHER_MS);
    ck_assert_uint_eq(g.ns_per, per);
}
END_TEST

START_TEST(a_stall_weighs_by_its_time_and_a_slowdown_is_followed)
{
    mv_gather_t g = {0};

    steady(&g, 70 * US, 25, 64, 6);
    /* It lost the CPU for 4 ms and answered once: one read among many, weighed by its time. */
    read_then_pass(&g, g.at_ns + 4 * MS, 1, 63, 64);
    ck_assert_uint_lt(g.ns_per, 250 * US);
    /* Its tasks now take 2 ms each: the rate follows within a few reads. */
    ck_assert_uint_eq(steady(&g, 2 * MS, 1, 64, 12), 0);
    ck_assert_uint_gt(g.ns_per, MV_GATHER_BUSY_NS);
}
END_TEST

START_TEST(the_pause_grows_with_the_work_held)
{
    mv_gather_t g = {0};
    static const struct {
        unsigned in_hand;
        uint64_t ms;
    } cases[] = {
        {35, 0},  /* 2.45 ms held: a pause (ends within 2 ms) could leave it idle */
        {36, 1},  /* 2.52 ms: MV_GATHER_MS */
        {51, 2},  /* 3.57 ms: 2 ms ends within 3, and 0.5 ms is left */
        {64, 2},  /* 4.48 ms (W1 at prefetch 64) */
        {65, 3},  /* 4.55 ms */
        {80, 4},  /* 5.6 ms */
        {400, 4}, /* 28 ms: MV_GATHER_MAX_MS, so that no answer waits much longer */
    };

    steady(&g, 70 * US, 2, 64, 6);
    ck_assert_uint_eq(g.ns_per, 70 * US);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = read_then_pass(&g, g.at_ns + 2 * 70 * US, 2, 62, cases[i].in_hand);
        ck_assert_uint_ge(g.ns_per, 69 * US); /* the decay's rounding */
        if (ms != cases[i].ms)
            ck_abort_msg("%u in hand: paused %llu ms, not %llu", cases[i].in_hand,
                         (unsigned long long)ms, (unsigned long long)cases[i].ms);
        /* never longer than the work held less the slack: it is not left idle */
        ck_assert_uint_le(ms * MS + MV_GATHER_SLACK_NS, cases[i].in_hand * g.ns_per);
    }
}
END_TEST

/* How long a pause lasts follows the fastest the worker answered lately: a read slowed by a
 * stall (the worker lost the CPU, or sat idle) raises the rate that decides whether to pause,
 * but a pause sized by it outlasted the work in hand. */
START_TEST(a_stall_does_not_lengthen_the_pause)
{
    mv_gather_t g = {0};
    uint64_t ms;

    ck_assert_uint_eq(steady(&g, 70 * US, 2, 64, 6), 2);
    /* 2 answers 1.5 ms after the last read: ns_per triples, the work held is still ~4.5 ms */
    ms = read_then_pass(&g, g.at_ns + 1500 * US, 2, 62, 64);
    ck_assert_uint_gt(g.ns_per, 200 * US);
    ck_assert_uint_le(ms * MS + MV_GATHER_SLACK_NS, 64 * 75 * US);
    ck_assert_uint_eq(ms, 3); /* sized by ns_per: 4 ms, more than 64 tasks of 70 us last */
    /* and again: the rate a pause is sized by rises by 1/16 a read at most */
    ms = read_then_pass(&g, g.at_ns + 1500 * US, 2, 62, 64);
    ck_assert_uint_le(ms, 3);
    ck_assert_uint_le(g.fast_ns, 70 * US * 17 / 16 * 17 / 16 + 1);
    /* it is fast again: back to its own rate at once */
    ck_assert_uint_eq(steady(&g, 70 * US, 2, 64, 1), 2);
    ck_assert_uint_eq(g.fast_ns, 70 * US);
}
END_TEST

Suite *gather_suite(void)
{
    Suite *s = suite_create("gather");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, a_fast_worker_holding_work_is_paused);
    tcase_add_test(tc, the_pause_grows_with_the_work_held);
    tcase_add_test(tc, a_stall_does_not_lengthen_the_pause);
    tcase_add_test(tc, the_decision_counts_the_refill);
    tcase_add_test(tc, one_pause_per_read_with_answers);
    tcase_add_test(tc, slow_answers_are_read_as_they_come);
    tcase_add_test(tc, idle_time_is_not_taken_for_work);
    tcase_add_test(tc, a_stall_weighs_by_its_time_and_a_slowdown_is_followed);
    suite_add_tcase(s, tc);
    return s;
}
