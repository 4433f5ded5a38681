/*
 * policy: recycling verdicts from plain numbers, jitter draws, crash backoff.
 */
#include <errno.h>
#include <signal.h>

#include <check.h>

#include "config.h"
#include "policy.h"
#include "suites.h"

#define MiB (1024 * 1024)

static mv_wlimits_t lim(int64_t tasks, int64_t life, int64_t soft, int64_t hard)
{
    return (mv_wlimits_t){tasks, life, soft, hard};
}

static mv_wfacts_t facts(int64_t done, uint64_t age, int64_t soft_v, int64_t hard_v)
{
    return (mv_wfacts_t){done, age, soft_v, hard_v, false};
}

START_TEST(keep_when_under_everything)
{
    mv_wlimits_t l = lim(100, 60000, 256 * MiB, 512 * MiB);
    mv_wfacts_t f = facts(99, 59999, 256 * MiB - 1, 512 * MiB - 1);
    mv_verdict_t v = mv_policy_check(&l, &f);

    ck_assert_int_eq(v.kind, MV_VERDICT_KEEP);
    ck_assert_int_eq(v.reason, MV_R_NONE);
}
END_TEST

START_TEST(each_trigger)
{
    mv_wlimits_t l = lim(100, 60000, 256 * MiB, 512 * MiB);
    mv_wfacts_t f;
    mv_verdict_t v;

    f = facts(100, 0, 0, 0);
    v = mv_policy_check(&l, &f);
    ck_assert(v.kind == MV_VERDICT_RECYCLE && v.reason == MV_R_MAX_TASKS);
    f = facts(0, 60000, 0, 0);
    v = mv_policy_check(&l, &f);
    ck_assert(v.kind == MV_VERDICT_RECYCLE && v.reason == MV_R_MAX_LIFETIME);
    f = facts(0, 0, 256 * MiB, 0);
    v = mv_policy_check(&l, &f);
    ck_assert(v.kind == MV_VERDICT_RECYCLE && v.reason == MV_R_SOFT_LIMIT);
    f = facts(0, 0, 0, 512 * MiB);
    v = mv_policy_check(&l, &f);
    ck_assert(v.kind == MV_VERDICT_KILL && v.reason == MV_R_HARD_LIMIT);
}
END_TEST

START_TEST(kill_outranks_recycle_and_memory_outranks_counts)
{
    mv_wlimits_t l = lim(10, 1000, 100, 200);
    mv_wfacts_t f = facts(50, 5000, 300, 300);
    mv_verdict_t v = mv_policy_check(&l, &f);

    ck_assert(v.kind == MV_VERDICT_KILL && v.reason == MV_R_HARD_LIMIT);
    f.hard_value = 150;
    v = mv_policy_check(&l, &f);
    ck_assert(v.kind == MV_VERDICT_RECYCLE && v.reason == MV_R_SOFT_LIMIT);
}
END_TEST

START_TEST(zero_means_off_and_unknown_reading_never_triggers)
{
    mv_wlimits_t l = lim(0, 0, 0, 0);
    mv_wfacts_t f = facts(1000000, 1u << 30, 1LL << 40, 1LL << 40);
    mv_verdict_t v = mv_policy_check(&l, &f);

    ck_assert_int_eq(v.kind, MV_VERDICT_KEEP);
    l = lim(0, 0, 100, 200);
    f = facts(0, 0, -1, -1);
    v = mv_policy_check(&l, &f);
    ck_assert_int_eq(v.kind, MV_VERDICT_KEEP);
}
END_TEST

START_TEST(kernel_enforced_hard_limit_is_not_killed_on_a_reading)
{
    mv_wlimits_t l = lim(0, 0, 0, 200);
    mv_wfacts_t f = facts(0, 0, 0, 250);
    mv_verdict_t v;

    f.hard_by_kernel = true;
    v = mv_policy_check(&l, &f);
    ck_assert_int_eq(v.kind, MV_VERDICT_KEEP);
}
END_TEST

START_TEST(jitter_draws)
{
    mv_config_t c;
    mv_wlimits_t l;

    ck_assert_int_eq(mv_config_init(&c), 0);
    c.limits.max_tasks = 1000;
    c.limits.max_tasks_jitter = 100;
    c.limits.max_lifetime = 60000;
    c.limits.max_lifetime_jitter = 0;
    l = mv_policy_limits(&c, 0.0, 0.0);
    ck_assert_int_eq(l.max_tasks, 1000);
    ck_assert_int_eq(l.lifetime_ms, 60000);
    l = mv_policy_limits(&c, 0.999999, 0.999999);
    ck_assert_int_eq(l.max_tasks, 1100); /* jitter is inclusive: 0..N */
    ck_assert_int_eq(l.lifetime_ms, 60000);
    l = mv_policy_limits(&c, 0.5, 0.5);
    ck_assert(l.max_tasks > 1000 && l.max_tasks < 1100);
    c.limits.max_tasks = 0;
    l = mv_policy_limits(&c, 0.5, 0.5);
    ck_assert_int_eq(l.max_tasks, 0); /* off stays off whatever the jitter */
    ck_assert_int_eq(l.soft_bytes, c.limits.memory_soft);
    ck_assert_int_eq(l.hard_bytes, c.limits.memory_hard);
    mv_config_free(&c);
}
END_TEST

START_TEST(every_reason_that_applies)
{
    mv_wlimits_t l = lim(10, 1000, 100, 200);
    mv_wfacts_t f = facts(50, 5000, 300, 300);
    unsigned m = mv_policy_reasons(&l, &f);

    ck_assert_uint_eq(m, (1u << MV_R_HARD_LIMIT) | (1u << MV_R_SOFT_LIMIT) |
                             (1u << MV_R_MAX_TASKS) | (1u << MV_R_MAX_LIFETIME));
    f = facts(0, 0, 0, 0);
    ck_assert_uint_eq(mv_policy_reasons(&l, &f), 0);
    f.hard_by_kernel = true;
    f.hard_value = 300;
    ck_assert_uint_eq(mv_policy_reasons(&l, &f), 0);
}
END_TEST

/* Spares that die young back off like a crashing slot, without counting as crashes; one that
 * lived the longest backoff, or was asked to go, ends the streak. */
START_TEST(spare_delay_backs_off_and_resets)
{
    int streak = 0;

    ck_assert_uint_eq(mv_policy_spare_delay(&streak, true, 5, 100, 10000), 0); /* first: now */
    ck_assert_int_eq(streak, 1);
    ck_assert_uint_eq(mv_policy_spare_delay(&streak, true, 5, 100, 10000), 100);
    ck_assert_uint_eq(mv_policy_spare_delay(&streak, true, 5, 100, 10000), 200);
    ck_assert_int_eq(streak, 3);
    for (int i = 0; i < 20; i++)
        mv_policy_spare_delay(&streak, true, 5, 100, 10000);
    ck_assert_uint_eq(mv_policy_spare_delay(&streak, true, 5, 100, 10000), 10000); /* bound */
    /* Lived as long as the longest backoff: not a young death. */
    ck_assert_uint_eq(mv_policy_spare_delay(&streak, true, 10000, 100, 10000), 0);
    ck_assert_int_eq(streak, 0);
    mv_policy_spare_delay(&streak, true, 5, 100, 10000);
    mv_policy_spare_delay(&streak, true, 5, 100, 10000);
    /* Retired by memvisor (reload, stop): no failure at all. */
    ck_assert_uint_eq(mv_policy_spare_delay(&streak, false, 5, 100, 10000), 0);
    ck_assert_int_eq(streak, 0);
}
END_TEST

START_TEST(overshoot_is_learned_and_decays)
{
    int64_t o = mv_policy_overshoot(-1, 16 << 20);

    ck_assert_int_eq(o, 16 << 20);                                /* the first drain */
    ck_assert_int_eq(mv_policy_overshoot(o, 20 << 20), 20 << 20); /* a slower one: at once */
    ck_assert_int_eq(mv_policy_overshoot(o, 1 << 20), 15 << 20);  /* faster: decays */
    ck_assert_int_eq(mv_policy_overshoot(o, -5), 15 << 20);       /* it shrank: 0 */
    ck_assert_int_eq(mv_policy_overshoot(-1, -5), 0);
    for (int i = 0; i < 400; i++)
        o = mv_policy_overshoot(o, 0);
    ck_assert_int_lt(o, 16); /* fast drains bring it back down */
}
END_TEST

START_TEST(stop_lands_before_the_headroom)
{
    const int64_t soft = 128 << 20, head = 16 << 20;

    ck_assert_int_eq(mv_policy_stop_at(soft, head, -1), soft);       /* nothing learned yet */
    ck_assert_int_eq(mv_policy_stop_at(soft, head, 0), soft + head); /* instant drains */
    ck_assert_int_eq(mv_policy_stop_at(soft, head, 8 << 20), soft + (6 << 20)); /* 8M + 2M */
    ck_assert_int_eq(mv_policy_stop_at(soft, head, 13 << 20), soft); /* never below soft */
    ck_assert_int_eq(mv_policy_stop_at(soft, head, 1LL << 40), soft);
    ck_assert_int_eq(mv_policy_stop_at(soft, 0, 0), INT64_MAX); /* headroom off: no bound */
    ck_assert_int_eq(mv_policy_stop_at(0, head, 0), INT64_MAX); /* no soft limit */
}
END_TEST

START_TEST(backoff_grows_and_is_bounded)
{
    ck_assert_uint_eq(mv_policy_backoff(0, 100, 10000), 0);
    ck_assert_uint_eq(mv_policy_backoff(1, 100, 10000), 0); /* one crash costs nothing */
    ck_assert_uint_eq(mv_policy_backoff(2, 100, 10000), 100);
    ck_assert_uint_eq(mv_policy_backoff(3, 100, 10000), 200);
    ck_assert_uint_eq(mv_policy_backoff(4, 100, 10000), 400);
    ck_assert_uint_eq(mv_policy_backoff(9, 100, 10000), 10000);
    ck_assert_uint_eq(mv_policy_backoff(1000000, 100, 10000), 10000);
}
END_TEST

START_TEST(reason_names)
{
    ck_assert_str_eq(mv_reason_name(MV_R_SOFT_LIMIT), "soft_limit");
    ck_assert_str_eq(mv_reason_name(MV_R_HARD_LIMIT), "hard_limit");
    ck_assert_str_eq(mv_reason_name(MV_R_KERNEL_OOM), "kernel_oom");
    ck_assert_str_eq(mv_reason_name(MV_R_PROTOCOL_ERROR), "protocol_error");
    ck_assert_str_eq(mv_reason_name(MV_R_COUNT), "?");
    for (int r = 0; r < MV_R_COUNT; r++)
        ck_assert_str_ne(mv_reason_name(r), "?");
}
END_TEST

static mv_take_facts_t taker(unsigned in_flight, int64_t done, int64_t max_tasks)
{
    return (mv_take_facts_t){.serving = true,
                             .in_flight = in_flight,
                             .prefetch = 4,
                             .tasks_done = done,
                             .max_tasks = max_tasks,
                             .enforce = true};
}

START_TEST(takes_tasks)
{
    mv_take_facts_t f = taker(0, 0, 0);

    ck_assert(mv_policy_takes_tasks(&f));
    f.in_flight = 4; /* prefetch full */
    ck_assert(!mv_policy_takes_tasks(&f));
    f = taker(0, 0, 0);
    f.serving = false;
    ck_assert(!mv_policy_takes_tasks(&f));
    f = taker(0, 0, 0);
    f.leaving = true;
    ck_assert(!mv_policy_takes_tasks(&f));
    f = taker(0, 0, 0);
    f.broken = true;
    ck_assert(!mv_policy_takes_tasks(&f));
    f = taker(0, 0, 0);
    f.no_tasks = true;
    ck_assert(!mv_policy_takes_tasks(&f));
    /* max_tasks counts the tasks in flight: a worker never runs more than its limit. */
    f = taker(2, 7, 10);
    ck_assert(mv_policy_takes_tasks(&f));
    f = taker(3, 7, 10);
    ck_assert(!mv_policy_takes_tasks(&f));
    f.enforce = false; /* observe only: reported, not enforced */
    ck_assert(mv_policy_takes_tasks(&f));
}
END_TEST

START_TEST(last_task)
{
    mv_take_facts_t f = taker(1, 0, 1);

    ck_assert(mv_policy_last_task(&f)); /* a worker per task: its one task is its last */
    f = taker(1, 8, 10);
    ck_assert(!mv_policy_last_task(&f));
    f = taker(2, 8, 10); /* prefetch: the second in flight is the tenth */
    ck_assert(mv_policy_last_task(&f));
    f = taker(1, 9, 10); /* an answer came since: the same sum, said once at the send only */
    ck_assert(mv_policy_last_task(&f));
    f = taker(1, 0, 0); /* no count limit */
    ck_assert(!mv_policy_last_task(&f));
    f = taker(1, 0, 1);
    f.enforce = false; /* observe only: it will not be recycled */
    ck_assert(!mv_policy_last_task(&f));
    f = taker(1, 0, 1);
    f.no_tasks = true;
    ck_assert(!mv_policy_last_task(&f));
}
END_TEST

START_TEST(premature_and_failure)
{
    mv_start_facts_t starting = {false, 0, 100, false}, fits = {true, 99, 100, false},
                     too_big = {true, 100, 100, false}, no_soft = {true, 1000, 0, false},
                     served = {true, 100, 100, true}, served_starting = {false, 0, 100, true};

    ck_assert(mv_policy_premature(&starting)); /* stopped before it was ready */
    ck_assert(!mv_policy_premature(&fits));    /* it fit: any later memory stop is a recycle */
    ck_assert(mv_policy_premature(&too_big));  /* ready already at its soft limit */
    ck_assert(!mv_policy_premature(&no_soft));
    /* first seen serving: what it holds includes what it served, so it started */
    ck_assert(!mv_policy_premature(&served));
    ck_assert(mv_policy_premature(&served_starting));
    ck_assert(mv_policy_is_failure(MV_R_CRASH, false));
    ck_assert(mv_policy_is_failure(MV_R_READY_TIMEOUT, false));
    ck_assert(mv_policy_is_failure(MV_R_PROTOCOL_ERROR, false));
    ck_assert(mv_policy_is_failure(MV_R_FATAL, false));
    ck_assert(!mv_policy_is_failure(MV_R_SOFT_LIMIT, false));
    ck_assert(mv_policy_is_failure(MV_R_SOFT_LIMIT, true));
    ck_assert(mv_policy_is_failure(MV_R_KERNEL_OOM, true));
    ck_assert(!mv_policy_is_failure(MV_R_MAX_TASKS, true));
    ck_assert(!mv_policy_is_failure(MV_R_TASK_TIMEOUT, false));
    ck_assert(!mv_policy_is_failure(MV_R_REQUESTED, false));
    ck_assert(!mv_policy_is_failure(MV_R_SHUTDOWN, false));
}
END_TEST

START_TEST(exit_classification)
{
    mv_exit_facts_t f = {.asked = MV_R_NONE, .fatal_exit = 78};
    mv_exit_verdict_t v;

    v = mv_policy_exit(&f); /* exit 0 nobody asked for */
    ck_assert(v.reason == MV_R_CRASH && v.failure && !v.premature);
    f.exit_status = 78;
    v = mv_policy_exit(&f);
    ck_assert(v.reason == MV_R_FATAL && v.failure);
    f.exit_status = 0;
    f.term_signal = SIGKILL;
    f.cgroup_oom = true;
    v = mv_policy_exit(&f);
    ck_assert(v.reason == MV_R_KERNEL_OOM && !v.failure);
    f.premature = true;
    v = mv_policy_exit(&f);
    ck_assert(v.reason == MV_R_KERNEL_OOM && v.failure && v.premature);
    /* A soft-limit drain that the OOM killer ends counts as kernel_oom... */
    f.premature = false;
    f.asked = MV_R_SOFT_LIMIT;
    ck_assert_int_eq(mv_policy_exit(&f).reason, MV_R_KERNEL_OOM);
    /* ...but memvisor's own SIGKILL (hard limit, shutdown) is not the kernel's. */
    f.asked = MV_R_HARD_LIMIT;
    ck_assert_int_eq(mv_policy_exit(&f).reason, MV_R_HARD_LIMIT);
    f.asked = MV_R_SHUTDOWN;
    ck_assert_int_eq(mv_policy_exit(&f).reason, MV_R_SHUTDOWN);
    /* A signal other than SIGKILL is never the OOM killer. */
    f.asked = MV_R_NONE;
    f.term_signal = SIGSEGV;
    ck_assert_int_eq(mv_policy_exit(&f).reason, MV_R_CRASH);
    /* What it was asked for stands. */
    f = (mv_exit_facts_t){.asked = MV_R_MAX_TASKS, .fatal_exit = 78};
    v = mv_policy_exit(&f);
    ck_assert(v.reason == MV_R_MAX_TASKS && !v.failure);
}
END_TEST

START_TEST(charge)
{
    ck_assert_int_eq(mv_policy_charge(MV_R_NONE), MV_R_CRASH);
    ck_assert_int_eq(mv_policy_charge(MV_R_MAX_TASKS), MV_R_CRASH);
    ck_assert_int_eq(mv_policy_charge(MV_R_MAX_LIFETIME), MV_R_CRASH);
    ck_assert_int_eq(mv_policy_charge(MV_R_SOFT_LIMIT), MV_R_CRASH);
    ck_assert_int_eq(mv_policy_charge(MV_R_REQUESTED), MV_R_CRASH);
    ck_assert_int_eq(mv_policy_charge(MV_R_HARD_LIMIT), MV_R_HARD_LIMIT);
    ck_assert_int_eq(mv_policy_charge(MV_R_KERNEL_OOM), MV_R_KERNEL_OOM);
    ck_assert_int_eq(mv_policy_charge(MV_R_TASK_TIMEOUT), MV_R_TASK_TIMEOUT);
    ck_assert_int_eq(mv_policy_charge(MV_R_PROTOCOL_ERROR), MV_R_PROTOCOL_ERROR);
    ck_assert_int_eq(mv_policy_charge(MV_R_SHUTDOWN), MV_R_SHUTDOWN);
}
END_TEST

START_TEST(recycle_gate)
{
    mv_gate_t g;

    g = mv_policy_gate(0, 1, 5000, 0, 0);
    ck_assert(g.go);
    g = mv_policy_gate(1, 1, 5000, 4000, 0); /* the cap: wait for a recycle to end */
    ck_assert(!g.go && g.wait_ms == 0);
    g = mv_policy_gate(1, 2, 5000, 4000, 0);
    ck_assert(g.go);
    g = mv_policy_gate(0, 2, 5000, 4800, 1000); /* spacing: 800 ms to go */
    ck_assert(!g.go && g.wait_ms == 800);
    g = mv_policy_gate(0, 2, 5800, 4800, 1000);
    ck_assert(g.go);
    g = mv_policy_gate(0, 2, 100, 0, 1000); /* no recycle yet: no spacing */
    ck_assert(g.go);
}
END_TEST

START_TEST(spawn_hopeless)
{
    ck_assert(mv_policy_spawn_hopeless(-ENOENT));
    ck_assert(mv_policy_spawn_hopeless(-EACCES));
    ck_assert(mv_policy_spawn_hopeless(-ENOTDIR));
    ck_assert(!mv_policy_spawn_hopeless(-ENOMEM));
    ck_assert(!mv_policy_spawn_hopeless(-EAGAIN));
    ck_assert(!mv_policy_spawn_hopeless(-EMFILE));
}
END_TEST

Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("verdicts");

    tcase_add_test(tc, keep_when_under_everything);
    tcase_add_test(tc, each_trigger);
    tcase_add_test(tc, kill_outranks_recycle_and_memory_outranks_counts);
    tcase_add_test(tc, zero_means_off_and_unknown_reading_never_triggers);
    tcase_add_test(tc, kernel_enforced_hard_limit_is_not_killed_on_a_reading);
    tcase_add_test(tc, jitter_draws);
    tcase_add_test(tc, every_reason_that_applies);
    tcase_add_test(tc, backoff_grows_and_is_bounded);
    tcase_add_test(tc, spare_delay_backs_off_and_resets);
    tcase_add_test(tc, reason_names);
    tcase_add_test(tc, takes_tasks);
    tcase_add_test(tc, last_task);
    tcase_add_test(tc, premature_and_failure);
    tcase_add_test(tc, exit_classification);
    tcase_add_test(tc, charge);
    tcase_add_test(tc, recycle_gate);
    tcase_add_test(tc, overshoot_is_learned_and_decays);
    tcase_add_test(tc, stop_lands_before_the_headroom);
    tcase_add_test(tc, spawn_hopeless);
    suite_add_tcase(s, tc);
    return s;
}
