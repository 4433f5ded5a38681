/*
 * tpolicy: the warm template's decisions from plain facts (what its exit means, when its
 * memory calls for a new one, which fork errors mean templates cannot work here).
 */
#include <errno.h>

#include <check.h>

#include "suites.h"
#include "tpolicy.h"

#define MiB (1024 * 1024)

static mv_tplan_t gone(bool asked, bool fatal, bool hopeless, bool unsupported, int streak)
{
    mv_tgone_facts_t f = {asked, fatal, hopeless, unsupported, streak};

    return mv_tpolicy_gone(&f, 100, 10000);
}

START_TEST(a_retired_template_needs_nothing)
{
    mv_tplan_t p = gone(true, false, false, false, 2);

    ck_assert_int_eq(p.kind, MV_TPLAN_NOTHING);
    ck_assert_int_eq(p.streak, 2); /* a retirement neither adds to nor clears the streak */
    /* Its exit code says nothing once it was asked to go (it may have been importing). */
    ck_assert_int_eq(gone(true, true, false, false, 0).kind, MV_TPLAN_NOTHING);
}
END_TEST

START_TEST(a_crash_respawns_after_a_backoff_then_falls_back)
{
    mv_tplan_t p = gone(false, false, false, false, 0);

    ck_assert_int_eq(p.kind, MV_TPLAN_RESPAWN);
    ck_assert_int_eq(p.streak, 1);
    ck_assert_uint_eq(p.delay_ms, 0); /* a one-off crash costs nothing */
    p = gone(false, false, false, false, 1);
    ck_assert_int_eq(p.kind, MV_TPLAN_RESPAWN);
    ck_assert_uint_eq(p.delay_ms, 100);
    p = gone(false, false, false, false, MV_TEMPLATE_CRASH_LIMIT - 1);
    ck_assert_int_eq(p.kind, MV_TPLAN_FALLBACK);
    ck_assert_int_eq(p.streak, MV_TEMPLATE_CRASH_LIMIT);
}
END_TEST

START_TEST(a_fatal_exit_or_a_command_that_cannot_run_ends_the_run)
{
    ck_assert_int_eq(gone(false, true, false, false, 0).kind, MV_TPLAN_FATAL);
    ck_assert_int_eq(gone(false, false, true, false, 0).kind, MV_TPLAN_FATAL);
}
END_TEST

START_TEST(an_unsupported_template_falls_back_at_once)
{
    /* memvisor retired it for it: asked, but no other template would do better. */
    ck_assert_int_eq(gone(true, false, false, true, 0).kind, MV_TPLAN_FALLBACK);
    ck_assert_int_eq(gone(false, false, false, true, 0).kind, MV_TPLAN_FALLBACK);
}
END_TEST

START_TEST(memory)
{
    /* under, off, or not read */
    ck_assert_int_eq(mv_tpolicy_memory(31 * MiB, 10 * MiB, 32 * MiB, true), MV_TMEM_OK);
    ck_assert_int_eq(mv_tpolicy_memory(99 * MiB, 10 * MiB, 0, true), MV_TMEM_OK);
    ck_assert_int_eq(mv_tpolicy_memory(-1, 10 * MiB, 32 * MiB, true), MV_TMEM_OK);
    /* grew past it */
    ck_assert_int_eq(mv_tpolicy_memory(32 * MiB, 10 * MiB, 32 * MiB, true), MV_TMEM_RECYCLE);
    ck_assert_int_eq(mv_tpolicy_memory(40 * MiB, -1, 32 * MiB, true), MV_TMEM_RECYCLE);
    ck_assert_int_eq(mv_tpolicy_memory(40 * MiB, 10 * MiB, 32 * MiB, false), MV_TMEM_OBSERVED);
    /* over it from its start: a new one would be as big */
    ck_assert_int_eq(mv_tpolicy_memory(40 * MiB, 33 * MiB, 32 * MiB, true), MV_TMEM_TOO_BIG);
}
END_TEST

START_TEST(fork_errors)
{
    ck_assert(mv_tpolicy_fork_hopeless(ENOSYS));
    ck_assert(mv_tpolicy_fork_hopeless(EPERM));
    ck_assert(mv_tpolicy_fork_hopeless(EINVAL));
    ck_assert(!mv_tpolicy_fork_hopeless(EAGAIN));
    ck_assert(!mv_tpolicy_fork_hopeless(ENOMEM));
}
END_TEST

Suite *tpolicy_suite(void)
{
    Suite *s = suite_create("tpolicy");
    TCase *tc = tcase_create("decisions");

    tcase_add_test(tc, a_retired_template_needs_nothing);
    tcase_add_test(tc, a_crash_respawns_after_a_backoff_then_falls_back);
    tcase_add_test(tc, a_fatal_exit_or_a_command_that_cannot_run_ends_the_run);
    tcase_add_test(tc, an_unsupported_template_falls_back_at_once);
    tcase_add_test(tc, memory);
    tcase_add_test(tc, fork_errors);
    suite_add_tcase(s, tc);
    return s;
}
