/*
 * leak: the detector on synthetic series. Each test states a situation a user meets and what
 * memvisor must say about it.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "leak.h"
#include "snapshot.h"
#include "suites.h"

#define KiB 1024
#define MiB (1024 * 1024)

static const mv_leak_cfg_t cfg = {
    .window = 50, .warmup = 0, .min_slope = 16 * KiB, .task_growth = 32 * MiB};

/* Deterministic noise in [-amp, amp] (an LCG: tests must not depend on a seed). */
static int64_t noise(uint64_t *s, int64_t amp)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (int64_t)((*s >> 33) % (uint64_t)(2 * amp + 1)) - amp;
}

typedef struct {
    int first_flag;         /* task number of the first suspect (0 = never) */
    int reports;            /* verdicts with report set */
    mv_leak_verdict_t last; /* the last suspect verdict */
} run_t;

/* Feeds `n` tasks of `kind` whose retained is f(i); returns what the detector said. */
static run_t feed(mv_leak_t *l, const char *kind, int n, int64_t (*f)(int, uint64_t *),
                  int fds_per_task)
{
    run_t r = {0};
    uint64_t seed = 42;

    for (int i = 1; i <= n; i++) {
        mv_leak_obs_t o = {kind, f(i, &seed), fds_per_task, i - 1, false, false};
        mv_leak_verdict_t v = mv_leak_observe(l, &o);
        if (v.rule != MV_LEAK_NONE) {
            if (!r.first_flag)
                r.first_flag = i;
            r.last = v;
            r.reports += v.report;
        }
    }
    return r;
}

static int64_t linear64k(int i, uint64_t *s)
{
    return 64 * KiB;
}

/* A 64 KiB leak as the v1 kernel charges it: 256 KiB every 4th task, nothing between. */
static int64_t batched64k(int i, uint64_t *s)
{
    return i % 4 == 0 ? 256 * KiB : 0;
}

static int64_t step_once(int i, uint64_t *s)
{
    return i == 30 ? 8 * MiB : 0;
}

/* A bounded cache: 64 KiB for each of the first 30 tasks, then evicts as much as it adds. */
static int64_t plateau(int i, uint64_t *s)
{
    return i <= 30 ? 64 * KiB : noise(s, 4 * KiB);
}

static int64_t pure_noise(int i, uint64_t *s)
{
    return noise(s, 256 * KiB);
}

/* Allocated in one task, freed in the next: the cumulative series comes back. */
static int64_t spike_then_freed(int i, uint64_t *s)
{
    return i % 20 == 10 ? 20 * MiB : i % 20 == 11 ? -20 * MiB : noise(s, 32 * KiB);
}

/* 48 KiB a task under noise of +-128 KiB: invisible in any single reading. */
static int64_t slow_under_noise(int i, uint64_t *s)
{
    return 48 * KiB + noise(s, 128 * KiB);
}

static int64_t nothing(int i, uint64_t *s)
{
    return 0;
}

START_TEST(steady_leak_is_flagged_at_the_window)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "parse", 200, linear64k, 0);

    /* Named within the window (judged from 80% of it on, twice in a row). */
    ck_assert_int_ge(r.first_flag, cfg.window * 8 / 10);
    ck_assert_int_le(r.first_flag, cfg.window);
    ck_assert_int_eq(r.last.rule, MV_LEAK_TREND);
    ck_assert_double_eq_tol(r.last.per_task, 64 * KiB, 1);
    ck_assert_double_eq_tol(r.last.confidence, 1.0, 1e-9);
    ck_assert_str_eq(r.last.kind, "parse");
    ck_assert_int_eq(r.reports, 1); /* said once: the estimate does not change */
    mv_leak_free(l);
}
END_TEST

START_TEST(kernel_charge_batches_do_not_hide_a_leak)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "k", 200, batched64k, 0);

    /* A median of per-task retained would read 0 here; the cumulative slope reads 64 KiB. */
    ck_assert_int_le(r.first_flag, cfg.window);
    ck_assert_int_gt(r.first_flag, 0);
    ck_assert_double_eq_tol(r.last.per_task, 64 * KiB, 16 * KiB);
    mv_leak_free(l);
}
END_TEST

START_TEST(a_one_off_step_is_not_a_leak)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "k", 300, step_once, 0);

    ck_assert_int_eq(r.first_flag, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(a_cache_that_plateaus_is_not_a_leak)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "k", 1000, plateau, 0);

    ck_assert_int_eq(r.first_flag, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(allocator_noise_is_not_a_leak)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "k", 100000, pure_noise, 0);

    ck_assert_int_eq(r.first_flag, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(a_spike_freed_later_is_not_a_leak)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "k", 500, spike_then_freed, 0);

    ck_assert_int_eq(r.first_flag, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(slow_leak_under_noise_is_found_with_a_longer_window)
{
    mv_leak_cfg_t c = cfg;
    mv_leak_t *l;
    run_t r;

    c.window = 200;
    l = mv_leak_new(&c);
    r = feed(l, "k", 600, slow_under_noise, 0);
    ck_assert_int_gt(r.first_flag, 0);
    ck_assert_int_le(r.first_flag, 300);
    ck_assert_double_eq_tol(r.last.per_task, 48 * KiB, 12 * KiB);
    mv_leak_free(l);
}
END_TEST

START_TEST(mixed_kinds_are_told_apart)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    uint64_t seed = 7;
    int flagged_parse = 0, flagged_render = 0;

    /* One worker alternates kinds; only "parse" keeps memory. */
    for (int i = 1; i <= 400; i++) {
        bool parse = i % 3 != 0;
        mv_leak_obs_t o = {parse ? "parse" : "render",
                           parse ? 64 * KiB + noise(&seed, 16 * KiB) : noise(&seed, 64 * KiB),
                           0,
                           i - 1,
                           false,
                           false};
        mv_leak_verdict_t v = mv_leak_observe(l, &o);
        if (v.rule != MV_LEAK_NONE) {
            ck_assert_str_eq(v.kind, parse ? "parse" : "render");
            flagged_parse += parse;
            flagged_render += !parse;
        }
    }
    ck_assert_int_gt(flagged_parse, 0);
    ck_assert_int_eq(flagged_render, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(handle_leak_is_flagged)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    run_t r = feed(l, "open", 100, nothing, 1);

    ck_assert_int_le(r.first_flag, cfg.window);
    ck_assert_int_gt(r.first_flag, 0);
    ck_assert_int_eq(r.last.rule, MV_LEAK_FD_TREND);
    ck_assert_double_eq_tol(r.last.fds_per_task, 1.0, 1e-9);
    mv_leak_free(l);
}
END_TEST

START_TEST(one_task_retaining_too_much)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    mv_leak_obs_t first = {"load", 40 * MiB, 0, 0, false, false};
    mv_leak_obs_t later = {"load", 40 * MiB, 0, 1, false, false};
    mv_leak_verdict_t v;

    v = mv_leak_observe(l, &first); /* a worker's first task is warm-up */
    ck_assert_int_eq(v.rule, MV_LEAK_NONE);
    v = mv_leak_observe(l, &later);
    ck_assert_int_eq(v.rule, MV_LEAK_TASK_GROWTH);
    ck_assert_double_eq(v.per_task, 40 * MiB);
    ck_assert(v.report);
    v = mv_leak_observe(l, &later); /* the same news is not said twice */
    ck_assert(!v.report);
    later.retained = 100 * MiB;
    v = mv_leak_observe(l, &later);
    ck_assert(v.report); /* a material change is */
    mv_leak_free(l);
}
END_TEST

START_TEST(kinds_are_bounded)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    char name[32];
    mv_leak_verdict_t v = {0};

    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "kind-%d", i);
        mv_leak_obs_t o = {name, 0, 0, 1, false, false};
        v = mv_leak_observe(l, &o);
    }
    ck_assert_str_eq(v.kind, "(other)");
    mv_leak_obs_t none = {NULL, 0, 0, 1, false, false};
    ck_assert_str_eq(mv_leak_observe(l, &none).kind, "(other)");
    mv_leak_free(l);
}
END_TEST

START_TEST(warm_up_tasks_stay_out_of_the_trend)
{
    mv_leak_cfg_t c = cfg;
    mv_leak_t *l;
    int flagged = 0;

    /* Every worker fills a 40-entry cache in its first 40 tasks: with warm-up 40 that is
     * never judged, whatever the window. */
    c.warmup = 40;
    c.window = 20;
    l = mv_leak_new(&c);
    for (int worker = 0; worker < 5; worker++)
        for (int age = 0; age < 100; age++) {
            mv_leak_obs_t o = {"fill", age < 40 ? 64 * KiB : 0, 0, age, false, false};
            flagged += mv_leak_observe(l, &o).rule != MV_LEAK_NONE;
        }
    ck_assert_int_eq(flagged, 0);
    mv_leak_free(l);
}
END_TEST

START_TEST(the_estimator_itself)
{
    double up[50], down[50], conf;

    for (int i = 0; i < 50; i++) {
        up[i] = 1000;
        down[i] = -1000;
    }
    ck_assert_double_eq_tol(mv_leak_trend(up, 50, &conf), 1000, 1e-9);
    ck_assert_double_eq_tol(conf, 1.0, 1e-9);
    ck_assert_double_lt(mv_leak_trend(down, 50, &conf), 0);
    ck_assert_double_eq(conf, 0);
    ck_assert_double_eq(mv_leak_trend(up, 5, &conf), 0); /* too short to judge */
    ck_assert_double_eq(conf, 0);
    ck_assert_str_eq(mv_leak_rule_name(MV_LEAK_FD_TREND), "fd_trend");
}
END_TEST

/* A worker's growth: one kind in four leaking 32 KiB grows the worker by 8 KiB per task,
 * below one kind's min_slope but a leak for a worker of four kinds. */
START_TEST(a_worker_grows_by_its_share_of_a_leak)
{
    double inc[50], per;
    uint64_t seed = 5;

    for (int i = 0; i < 50; i++)
        inc[i] = (i % 4 == 0 ? 32 * KiB : 0) + (double)noise(&seed, 2 * KiB);
    ck_assert(mv_leak_grows(&cfg, inc, 50, 4, &per));
    ck_assert(per > 6 * KiB && per < 10 * KiB);
    ck_assert(!mv_leak_grows(&cfg, inc, 50, 1, &per)); /* as one kind: below min_slope */
    /* big temporaries freed, or a cache that stopped growing: no */
    for (int i = 0; i < 50; i++)
        inc[i] = (double)noise(&seed, 512 * KiB);
    ck_assert(!mv_leak_grows(&cfg, inc, 50, 4, &per));
    for (int i = 0; i < 50; i++)
        inc[i] = i < 30 ? 32 * KiB : 0;
    ck_assert(!mv_leak_grows(&cfg, inc, 50, 4, &per));
    ck_assert(!mv_leak_grows(&cfg, inc, 9, 4, &per)); /* too few tasks */
}
END_TEST

/* A kind is judged once the trend rule has looked at it twice; a task without a memory
 * figure adds nothing to its memory series (only its fds count). */
START_TEST(judged_kinds_and_tasks_without_figures)
{
    mv_leak_t *l = mv_leak_new(&cfg);
    mv_leak_obs_t o = {"k", 0, 0, 5, true, false};
    int i;

    ck_assert(!mv_leak_judged(l, "k"));
    for (i = 0; i < 44; i++)
        mv_leak_observe(l, &o);
    ck_assert(!mv_leak_judged(l, "k"));
    mv_leak_observe(l, &o);
    ck_assert(mv_leak_judged(l, "k"));
    /* Huge kernel deltas without a heap figure: never a memory suspect, not even by the
     * one-task rule; and the heap figures around them say nothing grows. */
    for (i = 0; i < 200; i++) {
        mv_leak_obs_t k = {"mixed", i % 2 ? 64 * MiB : 0, 0, 5, i % 2 == 0, i % 2 == 1};
        ck_assert_int_eq(mv_leak_observe(l, &k).rule, MV_LEAK_NONE);
    }
    /* a heap verdict says so */
    for (i = 0; i < 60; i++) {
        mv_leak_obs_t h = {"heapy", 24 * KiB, 0, 5, true, false};
        mv_leak_verdict_t v = mv_leak_observe(l, &h);
        if (v.rule != MV_LEAK_NONE) {
            ck_assert(v.heap);
            break;
        }
    }
    ck_assert_int_lt(i, 60);
    mv_leak_free(l);
}
END_TEST

/* A worker's baseline is kept packed: this process's own mappings come back from the block
 * as the same object (names and bytes), so a snapshot's growth against it is the same; an
 * empty object and no object too. */
START_TEST(a_packed_baseline_unpacks_to_the_same_mappings)
{
    json_t *m = mv_snap_mappings((int)getpid()), *back, *empty = json_object(), *g1, *g2;
    char *p, *q;

    ck_assert_ptr_nonnull(m);
    ck_assert_uint_gt(json_object_size(m), 3);
    json_object_set_new(m, "[a mapping with a long name, spaces and a [bracket]]",
                        json_integer(INT64_MAX));
    ck_assert_ptr_nonnull(p = mv_snap_pack(m));
    ck_assert_ptr_nonnull(back = mv_snap_unpack(p));
    ck_assert(json_equal(m, back));
    g1 = mv_snap_growth(empty, m, 100);
    g2 = mv_snap_growth(empty, back, 100);
    ck_assert(json_equal(g1, g2));
    ck_assert_ptr_nonnull(q = mv_snap_pack(empty));
    json_decref(back);
    ck_assert_ptr_nonnull(back = mv_snap_unpack(q));
    ck_assert_uint_eq(json_object_size(back), 0);
    ck_assert_ptr_null(mv_snap_pack(NULL));
    ck_assert_ptr_null(mv_snap_unpack(NULL));
    free(p);
    free(q);
    json_decref(back);
    json_decref(g1);
    json_decref(g2);
    json_decref(empty);
    json_decref(m);
}
END_TEST

Suite *leak_suite(void)
{
    Suite *s = suite_create("leak");
    TCase *tc = tcase_create("detector");

    tcase_add_test(tc, steady_leak_is_flagged_at_the_window);
    tcase_add_test(tc, kernel_charge_batches_do_not_hide_a_leak);
    tcase_add_test(tc, a_one_off_step_is_not_a_leak);
    tcase_add_test(tc, a_cache_that_plateaus_is_not_a_leak);
    tcase_add_test(tc, allocator_noise_is_not_a_leak);
    tcase_add_test(tc, a_spike_freed_later_is_not_a_leak);
    tcase_add_test(tc, slow_leak_under_noise_is_found_with_a_longer_window);
    tcase_add_test(tc, mixed_kinds_are_told_apart);
    tcase_add_test(tc, handle_leak_is_flagged);
    tcase_add_test(tc, one_task_retaining_too_much);
    tcase_add_test(tc, kinds_are_bounded);
    tcase_add_test(tc, warm_up_tasks_stay_out_of_the_trend);
    tcase_add_test(tc, the_estimator_itself);
    tcase_add_test(tc, a_worker_grows_by_its_share_of_a_leak);
    tcase_add_test(tc, judged_kinds_and_tasks_without_figures);
    tcase_add_test(tc, a_packed_baseline_unpacks_to_the_same_mappings);
    suite_add_tcase(s, tc);
    return s;
}
