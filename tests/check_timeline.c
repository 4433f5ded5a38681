/*
 * timeline: the module on its own, in a real loop with real thread-pool jobs and files:
 * points and marks come back as rows; the file stays within its bound on a long feed, with
 * every mark, the first point of each generation and the recent points kept; a backlog drops
 * points but never marks; the decimation rule on exact rows; bad inputs (no directory,
 * corrupt rows).
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "harness.h"
#include "suites.h"
#include "timeline.h"

static char tmp[64];
static char path[128];

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-timeline-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(path, sizeof path, "%s/" MV_TIMELINE_FILE, tmp);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void teardown(void)
{
    nftw(tmp, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static void closed_cb(void *arg)
{
    (*(int *)arg)++;
}

/* Closes the timeline, runs the loop until it is closed, checks the loop is empty. */
static void close_all(mv_timeline_t *tl, uv_loop_t *loop)
{
    int closed = 0;

    mv_timeline_close(tl, closed_cb, &closed);
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(closed, 1);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

static mv_tl_point_t pt(int slot, uint32_t gen, int64_t usage, uint64_t task)
{
    return (mv_tl_point_t){slot, gen, usage, usage / 2, usage + 100, -1, task};
}

/* The rows of the file of type c ('p' or 'm'), each as its text after "c,". */
static char **rows(char c, size_t *n)
{
    char *text = read_text(path), **out = NULL, *save = NULL;

    *n = 0;
    ck_assert_ptr_nonnull(text);
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] != c || l[1] != ',')
            continue;
        out = realloc(out, (*n + 1) * sizeof *out);
        out[(*n)++] = strdup(l + 2);
    }
    free(text);
    return out;
}

static void free_rows(char **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i]);
    free(r);
}

/* Field i (0 = t) of a row as a number; -1 when empty. */
static long long field(const char *row, int i)
{
    const char *p = row;

    for (int k = 0; k < i; k++) {
        p = strchr(p, ',');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    return *p == ',' || *p == '\0' ? -1 : strtoll(p, NULL, 10);
}

START_TEST(test_points_and_marks)
{
    uv_loop_t loop;
    mv_timeline_t tl;
    mv_tl_point_t p = {2, 7, 1000, 500, 1500, 4096, 42};
    size_t np, nm;
    char **pr, **mr, *text;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, NULL), 0);
    mv_timeline_mark(&tl, &(mv_tl_mark_t){2, 7, MV_TL_SPAWN, NULL, 4321, 256 << 20, 512 << 20, 0});
    mv_timeline_point(&tl, &p);
    mv_timeline_point(&tl, &(mv_tl_point_t){2, 7, -1, -1, -1, -1, 0});
    mv_timeline_mark(&tl, &(mv_tl_mark_t){2, 7, MV_TL_RECYCLE, "soft limit!", 4321, -1, -1, 42});
    mv_timeline_mark(&tl, &(mv_tl_mark_t){2, 7, MV_TL_EXIT, "soft_limit", 4321, -1, -1, 0});
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.points, 2);
    ck_assert_int_eq(tl.marks, 3);
    ck_assert_int_eq(tl.error, 0);

    text = read_text(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strncmp(text, "#memvisor-timeline 1 epoch_ms=", 30) == 0, "%s", text);
    ck_assert_ptr_nonnull(strstr(text, " epoch=20"));
    free(text);
    pr = rows('p', &np);
    mr = rows('m', &nm);
    ck_assert_uint_eq(np, 2);
    ck_assert_uint_eq(nm, 3);
    /* t_ms,slot,gen,usage,private,rss,heap,task; unknown figures are empty */
    ck_assert_msg(strstr(pr[0], ",2,7,1000,500,1500,4096,42") != NULL, "%s", pr[0]);
    ck_assert_msg(strstr(pr[1], ",2,7,,,,,") != NULL, "%s", pr[1]);
    /* t_ms,slot,gen,what,reason,pid,soft,hard,task; the reason keeps [a-z0-9_] only */
    ck_assert_msg(strstr(mr[0], ",2,7,spawn,,4321,268435456,536870912,") != NULL, "%s", mr[0]);
    ck_assert_msg(strstr(mr[1], ",2,7,recycle,softlimit,4321,,,42") != NULL, "%s", mr[1]);
    ck_assert_msg(strstr(mr[2], ",2,7,exit,soft_limit,4321,,,") != NULL, "%s", mr[2]);
    ck_assert_int_le(field(mr[0], 0), field(mr[2], 0));
    free_rows(pr, np);
    free_rows(mr, nm);
    mv_timeline_free(&tl);
}
END_TEST

/* Point rows are written digit by digit (a point per task): the text is what printf would
 * write, at the edges too; a figure below zero (unknown, or a bad one) is an empty field. */
START_TEST(test_point_rows_at_the_edges)
{
    uv_loop_t loop;
    mv_timeline_t tl;
    size_t np;
    char **pr;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, NULL), 0);
    mv_timeline_point(&tl, &(mv_tl_point_t){0, 0, 0, 0, 0, 0, 0});
    mv_timeline_point(&tl, &(mv_tl_point_t){64, UINT32_MAX, INT64_MAX, 9, 10, 123456789012LL,
                                            (uint64_t)INT64_MAX});
    mv_timeline_point(&tl, &(mv_tl_point_t){3, 1, -5, INT64_MIN, -1, -2, 1});
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.error, 0);
    pr = rows('p', &np);
    ck_assert_uint_eq(np, 3);
    ck_assert_msg(strstr(pr[0], ",0,0,0,0,0,0,") != NULL && field(pr[0], 0) >= 0, "%s", pr[0]);
    ck_assert_msg(strstr(pr[1], ",64,4294967295,9223372036854775807,9,10,123456789012,"
                                "9223372036854775807") != NULL,
                  "%s", pr[1]);
    ck_assert_msg(strstr(pr[2], ",3,1,,,,,1") != NULL, "%s", pr[2]);
    free_rows(pr, np);
    mv_timeline_free(&tl);
}
END_TEST

/* A long feed in small batches, the loop run between them: a small bound holds, nothing that
 * must stay is lost. */
START_TEST(test_bound_keeps_marks_first_and_recent)
{
    enum { SLOTS = 3, GENS = 20, PER_GEN = 300, BOUND = 32768 };
    uv_loop_t loop;
    mv_timeline_t tl;
    mv_timeline_opts_t o = {BOUND, 1};
    size_t np, nm, firsts = 0, recent = 0;
    char **pr, **mr;
    struct stat st;
    uint64_t task = 0;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, &o), 0);
    /* The flush timer is unref'd; ref'd here so UV_RUN_ONCE below waits for it. */
    uv_ref((uv_handle_t *)&tl.timer);
    for (uint32_t g = 1; g <= GENS; g++) {
        for (int s = 1; s <= SLOTS; s++)
            mv_timeline_mark(&tl, &(mv_tl_mark_t){s, g, MV_TL_SPAWN, NULL, 100 + s, 1000, 2000, 0});
        for (int i = 0; i < PER_GEN; i++) {
            for (int s = 1; s <= SLOTS; s++)
                mv_timeline_point(&tl, &(mv_tl_point_t){s, g, 1000 * g + i, 10, 20, -1, ++task});
            if (i % 50 == 0)
                uv_run(&loop, UV_RUN_NOWAIT);
        }
        for (int s = 1; s <= SLOTS; s++)
            mv_timeline_mark(&tl,
                             &(mv_tl_mark_t){s, g, MV_TL_EXIT, "max_tasks", 100 + s, -1, -1, 0});
        /* let the job catch up, so the bound is tested and not the backlog */
        while (!tl.error && (tl.working || mv_buf_unread(&tl.pending)))
            uv_run(&loop, UV_RUN_ONCE);
    }
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.error, 0);
    ck_assert_int_eq(tl.dropped, 0);
    ck_assert_int_gt(tl.rewrites, 2);
    ck_assert_int_eq(tl.cuts, 0); /* folding held the bound */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_le(st.st_size, BOUND);

    pr = rows('p', &np);
    mr = rows('m', &nm);
    ck_assert_uint_eq(nm, 2 * SLOTS * GENS); /* marks never dropped */
    ck_assert_uint_lt(np, SLOTS * GENS * PER_GEN / 10);
    for (size_t i = 0; i < np; i++) {
        long long usage = field(pr[i], 3), gen = field(pr[i], 2);
        firsts += usage == 1000 * gen; /* first point of a generation */
        recent += gen == GENS && usage >= 1000 * GENS + PER_GEN - 20; /* the newest */
    }
    ck_assert_uint_eq(firsts, SLOTS * GENS);
    ck_assert_uint_eq(recent, SLOTS * 20);
    /* decimated, a generation still spans its highest point (the sawtooth's top) */
    for (uint32_t g = 1; g <= GENS; g++) {
        long long top = 0;
        for (size_t i = 0; i < np; i++)
            if (field(pr[i], 1) == 1 && field(pr[i], 2) == g)
                top = field(pr[i], 3) > top ? field(pr[i], 3) : top;
        ck_assert_int_ge(top, 1000 * g + PER_GEN - 4);
    }
    free_rows(pr, np);
    free_rows(mr, nm);
    mv_timeline_free(&tl);
}
END_TEST

/* With a job in flight, points past the backlog bound are dropped and counted; marks queue. */
START_TEST(test_backlog_drops_points_not_marks)
{
    uv_loop_t loop;
    mv_timeline_t tl;
    size_t np, nm;
    char **pr, **mr;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, NULL), 0);
    /* the loop does not run: the first job never completes, so the backlog fills */
    for (int i = 0; i < 40000; i++) {
        {
            mv_tl_point_t x = pt(1, 1, i, (uint64_t)i + 1);
            mv_timeline_point(&tl, &x);
        }
        if (i % 1000 == 0)
            mv_timeline_mark(&tl, &(mv_tl_mark_t){1, 1, MV_TL_RECYCLE, "requested", 9, -1, -1, 0});
    }
    ck_assert(tl.working);
    ck_assert_int_gt(tl.dropped, 0);
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.error, 0);
    pr = rows('p', &np);
    mr = rows('m', &nm);
    ck_assert_uint_eq(nm, 40);
    ck_assert_uint_eq(np + tl.dropped, 40000);
    free_rows(pr, np);
    free_rows(mr, nm);
    mv_timeline_free(&tl);
}
END_TEST

/* The buffers' sizes (bench/footprint): a steady feed, each job done before the next point,
 * keeps the batches at 16 KiB and the text at 8 KiB (a batch used to double to 32 KiB at each
 * flush); a burst grows them, and once written they are back to that; no row is lost. */
START_TEST(test_buffers_stay_small_and_shrink_after_a_burst)
{
    uv_loop_t loop;
    mv_timeline_t tl;
    size_t np, nm;
    char **pr, **mr;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, NULL), 0);
    for (int i = 0; i < 3000; i++) {
        mv_tl_point_t x = pt(1, 1, i, (uint64_t)i + 1);
        mv_timeline_point(&tl, &x);
        while (tl.working)
            uv_run(&loop, UV_RUN_ONCE);
        ck_assert_uint_le(tl.pending.cap, 16384);
        ck_assert_uint_le(tl.batch.cap, 16384);
        ck_assert_uint_le(tl.text.cap, 8192);
    }
    ck_assert_int_eq(tl.error, 0);
    /* A burst: the loop does not run while 3000 points come */
    for (int i = 0; i < 3000; i++) {
        mv_tl_point_t x = pt(2, 1, i, (uint64_t)i + 1);
        mv_timeline_point(&tl, &x);
    }
    mv_timeline_mark(&tl, &(mv_tl_mark_t){2, 1, MV_TL_EXIT, "done", 9, -1, -1, 0});
    ck_assert(tl.working);
    ck_assert_uint_gt(tl.pending.cap, 16384);
    while (tl.working)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_uint_le(tl.batch.cap, 16384);
    ck_assert_uint_le(tl.text.cap, 8192);
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.error, 0);
    ck_assert_uint_le(tl.pending.cap, 16384);
    ck_assert_uint_le(tl.batch.cap, 16384);
    pr = rows('p', &np);
    mr = rows('m', &nm);
    ck_assert_uint_eq(np, 6000);
    ck_assert_uint_eq(nm, 1);
    ck_assert_int_eq(tl.dropped, 0);
    free_rows(pr, np);
    free_rows(mr, nm);
    mv_timeline_free(&tl);
}
END_TEST

static void put(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The rule on exact rows: first point kept; groups of 4 become min and max in time order;
 * a mark closes a group; points past keep_from are copied; corrupt rows are dropped. */
START_TEST(test_decimate_rule)
{
    char out[160], *text;
    int64_t bytes = 0;

    snprintf(out, sizeof out, "%s/out.csv", tmp);
    put(path, "#memvisor-timeline 1 epoch_ms=1 epoch=x\n"
              "p,1,1,1,10,,,,\n" /* first: kept */
              "p,2,1,1,50,,,,\n" /* group 1: 50 30 90 60 -> 30 (t3), 90 (t4) */
              "p,3,1,1,30,,,,\n"
              "p,4,1,1,90,,,,\n"
              "p,5,1,1,60,,,,\n"
              "p,6,1,1,70,,,,\n"   /* group 2, closed by the mark: kept as they are */
              "p,7,1,1,oops,,,,\n" /* corrupt: dropped */
              "m,8,1,1,exit,crash,5,,,\n"
              "p,9,2,1,5,,,,\n"    /* first of slot 2 */
              "p,10,2,1,8,,,,\n"   /* 8th point, a partial group flushed at the cut */
              "p,11,2,1,9,,,,\n"); /* past keep_from = 8: copied */
    ck_assert_int_eq(mv_timeline_decimate(path, out, 8, &bytes), 7);
    text = read_text(out);
    ck_assert_str_eq(text, "#memvisor-timeline 1 epoch_ms=1 epoch=x\n"
                           "p,1,1,1,10,,,,\n"
                           "p,3,1,1,30,,,,\n"
                           "p,4,1,1,90,,,,\n"
                           "p,6,1,1,70,,,,\n"
                           "m,8,1,1,exit,crash,5,,,\n"
                           "p,9,2,1,5,,,,\n"
                           "p,10,2,1,8,,,,\n"
                           "p,11,2,1,9,,,,\n");
    ck_assert_int_eq(bytes, (int64_t)strlen(text));
    free(text);
    /* min == max: one point for the group */
    put(path, "p,1,1,1,1,,,,\np,2,1,1,7,,,,\np,3,1,1,7,,,,\np,4,1,1,7,,,,\np,5,1,1,7,,,,\n");
    ck_assert_int_eq(mv_timeline_decimate(path, out, 100, NULL), 2);
    ck_assert_int_eq(mv_timeline_decimate("/nonexistent/x", out, 1, NULL), -ENOENT);
}
END_TEST

/* Constant recycling: generations of two points each, whose marks alone outgrow the bound.
 * Folding cannot hold it; the oldest rows are cut, the file stays bounded, the newest rows
 * are there. */
START_TEST(test_short_generations_are_cut_to_the_bound)
{
    enum { SLOTS = 4, GENS = 400, BOUND = 32768 };
    uv_loop_t loop;
    mv_timeline_t tl;
    mv_timeline_opts_t o = {BOUND, 1};
    size_t np, nm;
    char **pr, **mr, *text;
    struct stat st;
    uint64_t task = 0;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, tmp, &o), 0);
    uv_ref((uv_handle_t *)&tl.timer);
    for (uint32_t g = 1; g <= GENS; g++) {
        for (int s = 1; s <= SLOTS; s++) {
            mv_timeline_mark(&tl, &(mv_tl_mark_t){s, g, MV_TL_SPAWN, NULL, 100 + s, 1000, 2000, 0});
            mv_tl_point_t a = pt(s, g, 1000 * g, ++task), b = pt(s, g, 1000 * g + 1, ++task);
            mv_timeline_point(&tl, &a);
            mv_timeline_point(&tl, &b);
            mv_timeline_mark(&tl,
                             &(mv_tl_mark_t){s, g, MV_TL_EXIT, "soft_limit", 100 + s, -1, -1, 0});
        }
        while (!tl.error && (tl.working || mv_buf_unread(&tl.pending)))
            uv_run(&loop, UV_RUN_ONCE);
    }
    close_all(&tl, &loop);
    ck_assert_int_eq(tl.error, 0);
    ck_assert_int_gt(tl.cuts, 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_le(st.st_size, BOUND + 4096); /* the bound, and at most one batch past it */
    text = read_text(path);
    ck_assert_ptr_nonnull(strstr(text, "#memvisor-timeline 1 ")); /* the header stays */
    free(text);
    pr = rows('p', &np);
    mr = rows('m', &nm);
    ck_assert_uint_gt(np, 0);
    ck_assert_uint_lt(nm, 2 * SLOTS * GENS);      /* the oldest marks went */
    ck_assert_int_eq(field(pr[np - 1], 2), GENS); /* the newest are there */
    ck_assert_int_eq(field(mr[nm - 1], 2), GENS);
    free_rows(pr, np);
    free_rows(mr, nm);
    mv_timeline_free(&tl);
}
END_TEST

/* The cut on exact rows: header lines kept, whole rows dropped until `drop` bytes are. */
START_TEST(test_cut_rule)
{
    char out[160], *text;
    int64_t bytes = 0;

    snprintf(out, sizeof out, "%s/out.csv", tmp);
    put(path, "#memvisor-timeline 1 epoch_ms=1 epoch=x\n"
              "#p,t_ms,slot,gen,usage,private,rss,heap,task\n"
              "m,1,1,1,spawn,,5,,,\n" /* 20 bytes */
              "p,2,1,1,10,,,,\n"      /* 15: 35 >= 30, the last dropped */
              "p,3,1,1,20,,,,\n"
              "m,4,1,1,exit,crash,5,,,\n");
    ck_assert_int_eq(mv_timeline_cut(path, out, 30, &bytes), 1);
    text = read_text(out);
    ck_assert_str_eq(text, "#memvisor-timeline 1 epoch_ms=1 epoch=x\n"
                           "#p,t_ms,slot,gen,usage,private,rss,heap,task\n"
                           "p,3,1,1,20,,,,\n"
                           "m,4,1,1,exit,crash,5,,,\n");
    ck_assert_int_eq(bytes, (int64_t)strlen(text));
    free(text);
    ck_assert_int_eq(mv_timeline_cut(path, out, 0, NULL), 2); /* nothing to drop: a copy */
    ck_assert_int_eq(mv_timeline_cut("/nonexistent/x", out, 1, NULL), -ENOENT);
}
END_TEST

START_TEST(test_open_fails_cleanly)
{
    uv_loop_t loop;
    mv_timeline_t tl;
    char dir[160];

    snprintf(dir, sizeof dir, "%s/missing", tmp);
    uv_loop_init(&loop);
    ck_assert_int_eq(mv_timeline_open(&tl, &loop, dir, NULL), -ENOENT);
    mv_timeline_point(&tl, &(mv_tl_point_t){1, 1, 1, 1, 1, -1, 1});
    mv_timeline_mark(&tl, &(mv_tl_mark_t){1, 1, MV_TL_SPAWN, NULL, 1, 0, 0, 0});
    ck_assert_int_eq(tl.points + tl.marks, 0);
    close_all(&tl, &loop);
    mv_timeline_free(&tl);
    ck_assert_str_eq(mv_tl_what_name(MV_TL_OOM), "oom");
    ck_assert_str_eq(mv_tl_what_name(MV_TL_COUNT), "?");
}
END_TEST

Suite *timeline_suite(void)
{
    Suite *s = suite_create("timeline");
    TCase *tc = tcase_create("timeline");

    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_points_and_marks);
    tcase_add_test(tc, test_point_rows_at_the_edges);
    tcase_add_test(tc, test_bound_keeps_marks_first_and_recent);
    tcase_add_test(tc, test_backlog_drops_points_not_marks);
    tcase_add_test(tc, test_buffers_stay_small_and_shrink_after_a_burst);
    tcase_add_test(tc, test_decimate_rule);
    tcase_add_test(tc, test_short_generations_are_cut_to_the_bound);
    tcase_add_test(tc, test_cut_rule);
    tcase_add_test(tc, test_open_fails_cleanly);
    suite_add_tcase(s, tc);
    return s;
}
