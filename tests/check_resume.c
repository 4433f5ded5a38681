/*
 * resume: the results reader (pure), the task source skipping done ids, and end to end:
 * memvisor SIGKILLed mid-batch at several points, recycles included, then `--resume`, until
 * every task has exactly one line.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "resume.h"
#include "suites.h"
#include "tasks.h"

#define LINE(id, st) "{\"task\":" #id ",\"status\":\"" st "\",\"attempts\":1,\"result\":\"x\"}\n"

/* ---- the id set ---- */

START_TEST(idset_merges_ranges_in_any_order)
{
    static const uint64_t ids[] = {5, 6, 7, 1, 2, 9, 3, 7, 100, 8, 4, 99, UINT64_MAX};
    mv_idset_t s = {0};

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ck_assert_int_eq(mv_idset_add(&s, ids[i]), 0);
    mv_idset_finish(&s);
    /* 1..9, 99..100, max: three ranges, 12 distinct ids (7 came twice) */
    ck_assert_uint_eq(s.n, 3);
    ck_assert_uint_eq(mv_idset_count(&s), 12);
    for (uint64_t id = 1; id <= 9; id++)
        ck_assert(mv_idset_has(&s, id));
    ck_assert(!mv_idset_has(&s, 0));
    ck_assert(!mv_idset_has(&s, 10));
    ck_assert(!mv_idset_has(&s, 98));
    ck_assert(mv_idset_has(&s, 99));
    ck_assert(mv_idset_has(&s, 100));
    ck_assert(!mv_idset_has(&s, 101));
    ck_assert(mv_idset_has(&s, UINT64_MAX));
    mv_idset_free(&s);
    mv_idset_finish(&s); /* empty: nothing to find */
    ck_assert(!mv_idset_has(&s, 1));
    ck_assert_uint_eq(mv_idset_count(&s), 0);
}
END_TEST

START_TEST(idset_of_in_order_ids_is_one_range)
{
    mv_idset_t s = {0};

    for (uint64_t id = 1; id <= 100000; id++)
        ck_assert_int_eq(mv_idset_add(&s, id), 0);
    mv_idset_finish(&s);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(mv_idset_count(&s), 100000);
    mv_idset_free(&s);
}
END_TEST

/* ---- the reader ---- */

START_TEST(reader_finds_ids_counts_and_a_torn_tail)
{
    static const char text[] = LINE(1, "ok") LINE(3, "failed")
        LINE(2, "quarantined") "{\"task\":4,\"status\":\"ok\",\"resu";
    mv_resume_scan_t s;

    ck_assert_int_eq(mv_resume_scan(&s, text, sizeof text - 1), 0);
    ck_assert_uint_eq(s.lines, 3);
    ck_assert_uint_eq(s.count[MV_RESUME_OK], 1);
    ck_assert_uint_eq(s.count[MV_RESUME_FAILED], 1);
    ck_assert_uint_eq(s.count[MV_RESUME_QUARANTINED], 1);
    ck_assert_uint_eq(s.valid, strlen(LINE(1, "ok") LINE(3, "failed") LINE(2, "quarantined")));
    ck_assert_uint_eq(s.torn, strlen("{\"task\":4,\"status\":\"ok\",\"resu"));
    ck_assert(mv_idset_has(&s.done, 1) && mv_idset_has(&s.done, 2) && mv_idset_has(&s.done, 3));
    ck_assert(!mv_idset_has(&s.done, 4)); /* torn: it runs again */
    ck_assert_uint_eq(s.dups, 0);
    mv_resume_free(&s);
}
END_TEST

/* The same answers whatever the chunks: byte by byte, and in two halves at every cut. */
START_TEST(reader_gives_the_same_answer_for_any_chunks)
{
    static const char text[] = LINE(10, "ok") LINE(11, "ok") LINE(12, "failed") "{\"ta";
    size_t n = sizeof text - 1;
    mv_resume_scan_t whole, s;

    ck_assert_int_eq(mv_resume_scan(&whole, text, n), 0);
    for (size_t cut = 0; cut <= n; cut++) {
        mv_resume_begin(&s);
        if (cut == 1) {
            for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(mv_resume_feed(&s, text + i, 1), 0);
        } else {
            ck_assert_int_eq(mv_resume_feed(&s, text, cut), 0);
            ck_assert_int_eq(mv_resume_feed(&s, text + cut, n - cut), 0);
        }
        ck_assert_int_eq(mv_resume_end(&s), 0);
        ck_assert_uint_eq(s.valid, whole.valid);
        ck_assert_uint_eq(s.torn, whole.torn);
        ck_assert_uint_eq(s.lines, whole.lines);
        ck_assert_uint_eq(mv_idset_count(&s.done), 3);
        ck_assert(mv_idset_has(&s.done, 12));
        mv_resume_free(&s);
    }
    mv_resume_free(&whole);
}
END_TEST

START_TEST(reader_counts_duplicates_and_keeps_any_payload)
{
    /* A NUL in a string is a valid result (a worker's binary-safe answer). */
    static const char text[] = LINE(1, "ok") LINE(1, "ok") "{\"task\":2,\"status\":\"ok\","
                                                           "\"result\":\"a\\u0000b\"}\n";
    mv_resume_scan_t s;

    ck_assert_int_eq(mv_resume_scan(&s, text, sizeof text - 1), 0);
    ck_assert_uint_eq(s.lines, 3);
    ck_assert_uint_eq(s.dups, 1);
    ck_assert_uint_eq(s.torn, 0);
    ck_assert_uint_eq(mv_idset_count(&s.done), 2);
    mv_resume_free(&s);
}
END_TEST

/* Duplicate lines (files concatenated, or a copy repaired by hand) count each task once, as
 * its worst status, so the summary never counts more tasks than the batch has. */
START_TEST(reader_counts_each_task_once_as_its_worst_status)
{
    static const char text[] =
        LINE(1, "ok") LINE(1, "failed") LINE(2, "quarantined") LINE(3, "failed") LINE(2, "failed")
            LINE(3, "failed") LINE(4, "ok") LINE(4, "ok") LINE(2, "ok");
    mv_resume_scan_t s;

    ck_assert_int_eq(mv_resume_scan(&s, text, sizeof text - 1), 0);
    ck_assert_uint_eq(s.lines, 9);
    ck_assert_uint_eq(s.dups, 5);
    ck_assert_uint_eq(mv_idset_count(&s.done), 4);
    ck_assert_uint_eq(s.count[MV_RESUME_OK], 1);          /* 4 */
    ck_assert_uint_eq(s.count[MV_RESUME_FAILED], 2);      /* 1, 3 */
    ck_assert_uint_eq(s.count[MV_RESUME_QUARANTINED], 1); /* 2 */
    mv_resume_free(&s);
}
END_TEST

/* Lines written before result lines had times and a generation, and lines with them, in one
 * file: both are results (a batch begun by an older memvisor resumes under a newer one). */
START_TEST(reader_reads_lines_with_and_without_times)
{
    static const char text[] =
        LINE(1, "ok") "{\"task\":2,\"status\":\"ok\",\"attempts\":1,\"worker\":1,\"gen\":3,"
                      "\"pid\":9,\"started\":\"2026-11-21T16:00:00.000123Z\","
                      "\"ended\":\"2026-11-21T16:00:00.000456Z\",\"result\":\"x\"}\n"
                      "{\"task\":3,\"status\":\"failed\",\"gen\":null,\"started\":null,"
                      "\"ended\":\"2026-11-21T16:00:01.000000Z\",\"error\":\"too long\"}\n";
    mv_resume_scan_t s;

    ck_assert_int_eq(mv_resume_scan(&s, text, sizeof text - 1), 0);
    ck_assert_uint_eq(s.lines, 3);
    ck_assert_uint_eq(s.count[MV_RESUME_OK], 2);
    ck_assert_uint_eq(s.count[MV_RESUME_FAILED], 1);
    ck_assert_uint_eq(mv_idset_count(&s.done), 3);
    ck_assert_uint_eq(s.torn, 0);
    mv_resume_free(&s);
}
END_TEST

START_TEST(reader_refuses_a_line_that_is_not_a_result)
{
    static const struct {
        const char *text;
        uint64_t line;
        const char *why;
    } cases[] = {
        {LINE(1, "ok") "garbage\n" LINE(2, "ok"), 2, "not JSON"},
        {LINE(1, "ok") "\n", 2, "not JSON"},
        {"[1,2]\n", 1, "not a JSON object"},
        {"{\"status\":\"ok\"}\n", 1, "no task id"},
        {"{\"task\":0,\"status\":\"ok\"}\n", 1, "no task id"},
        {"{\"task\":-3,\"status\":\"ok\"}\n", 1, "no task id"},
        {"{\"task\":\"7\",\"status\":\"ok\"}\n", 1, "no task id"},
        {"{\"task\":7}\n", 1, "no final status"},
        {LINE(1, "ok") LINE(2, "running"), 2, "no final status"},
        {"{\"task\":7,\"status\":null}\n", 1, "no final status"},
        {"{\"task\":1,\"status\":\"ok\"} {}\n", 1, "not JSON"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mv_resume_scan_t s;
        ck_assert_int_eq(mv_resume_scan(&s, cases[i].text, strlen(cases[i].text)), -EINVAL);
        ck_assert_msg(s.bad_line == cases[i].line, "case %zu: line %llu", i,
                      (unsigned long long)s.bad_line);
        ck_assert_msg(strstr(s.why, cases[i].why), "case %zu: %s", i, s.why);
        /* Feeding after an error changes nothing. */
        ck_assert_int_eq(mv_resume_feed(&s, LINE(9, "ok"), strlen(LINE(9, "ok"))), -EINVAL);
        mv_resume_free(&s);
    }
}
END_TEST

START_TEST(reader_of_nothing_or_only_a_torn_line)
{
    mv_resume_scan_t s;

    ck_assert_int_eq(mv_resume_scan(&s, "", 0), 0);
    ck_assert_uint_eq(s.lines + s.valid + s.torn, 0);
    mv_resume_free(&s);
    ck_assert_int_eq(mv_resume_scan(&s, "{\"task\":1,\"sta", 14), 0);
    ck_assert_uint_eq(s.valid, 0);
    ck_assert_uint_eq(s.torn, 14);
    ck_assert_uint_eq(mv_idset_count(&s.done), 0);
    mv_resume_free(&s);
}
END_TEST

/* ---- the task source ---- */

START_TEST(task_source_skips_done_ids_and_keeps_line_numbers)
{
    mv_tasks_t t;
    mv_idset_t done = {0};
    mv_task_t *task;
    uint64_t want[] = {1, 3, 6, 7};
    char text[256];
    size_t k = 0;

    memset(&t, 0, sizeof t);
    t.max_size = 100;
    t.read_ahead = 100;
    mv_idset_add(&done, 2);
    mv_idset_add(&done, 4);
    mv_idset_add(&done, 5);
    mv_idset_finish(&done);
    t.skip = &done;
    /* line 5 is too long: it is done already, so it is skipped, not failed again */
    snprintf(text, sizeof text, "a\nb\nc\nd\n%0150d\nf\ng", 0);
    mv_tasks_feed(&t, text, strlen(text), true);
    while ((task = mv_tasks_pop(&t))) {
        ck_assert_uint_lt(k, 4);
        ck_assert_uint_eq(task->id, want[k++]);
        mv_task_free(task);
    }
    ck_assert_uint_eq(k, 4);
    ck_assert_uint_eq(t.skipped, 3);
    ck_assert_uint_eq(t.loaded, 4);
    mv_tasks_free(&t);
    mv_idset_free(&done);
}
END_TEST

/* ---- end to end ---- */

/* Tasks "sleep 1" x n as a tasks text. */
static char *sleep_tasks(int n)
{
    return repeat_line("sleep 1", n);
}

/* The `done=` of the run's resume event. */
static long long resumed_done(mvrun_t *r)
{
    char *line = run_wait_for(r, "event=resume ");
    const char *p = strstr(line, " done=");
    long long n;

    ck_assert_ptr_nonnull(p);
    n = atoll(p + 6);
    free(line);
    return n;
}

/* SIGKILL memvisor at several points of a batch of frequent recycles (max_tasks 5): at a
 * recycle, as a worker exits, at once after resuming. Each run resumes the last; the last
 * one finishes. Every task ends with exactly one line, and each resume starts from every
 * line the file holds. */
START_TEST(sigkill_at_several_points_then_resume_runs_every_task_once)
{
    enum { N = 500 };
    static const struct {
        const char *needle; /* kill at this log line... */
        int nth;            /* ...its nth occurrence; 0 = run to the end */
    } plan[] = {
        {"event=recycle ", 12}, {"event=recycle ", 30}, {"event=resume ", 1},
        {"event=exit ", 9},     {"event=spawn ", 20},   {NULL, 0},
    };
    mvargs_t first_av;
    const char *const *first = run_argv(
        &first_av, RUN_OPTS("supervisor.workers=2", "limits.max_tasks=5"), RUN_CMD(MVTEST));
    const char *again[] = {"run", "--resume",           "-o", "supervisor.workers=2",
                           "-o",  "limits.max_tasks=5", "--", MVTEST,
                           NULL};
    char *tasks = sleep_tasks(N), dead[48] = "";
    mvrun_t r;

    run_init(&r, tasks);
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        size_t before = file_lines(r.results);

        run_start(&r, i == 0 ? first : again, NULL);
        if (i > 0)
            ck_assert_int_eq(resumed_done(&r), (long long)before);
        /* The killed run's cgroup was cleaned by this start (when there are cgroups). */
        if (*dead && strstr(r.log, "memory=\"cgroup"))
            ck_assert_log(&r, strstr(r.log, dead), "no stale_run_removed for %s", dead);
        snprintf(dead, sizeof dead, "/memvisor-%d workers=", (int)r.pid);
        if (plan[i].needle) {
            if (strcmp(plan[i].needle, "event=resume ") != 0)
                run_wait_nth(&r, plan[i].needle, plan[i].nth);
            ck_assert_int_eq(kill(r.pid, SIGKILL), 0);
            ck_assert_int_eq(run_finish(&r), 128 + SIGKILL);
            /* Killed before its cgroups were made (at "resume", say): nothing to clean. */
            if (!strstr(r.log, "event=start "))
                dead[0] = '\0';
            run_assert_at_most_once(&r, N);
            ck_assert_uint_ge(r.nres, before); /* nothing the file held is gone */
        } else {
            ck_assert_int_eq(run_finish(&r), 0);
            run_assert_once(&r, N, NULL);
        }
        run_again(&r);
    }
    free(tasks);
    run_free(&r);
}
END_TEST

/* A crash mid-write leaves a line without its newline: resume cuts it and runs that task. */
START_TEST(a_torn_last_line_is_cut_before_appending)
{
    static const char torn[] = "{\"task\":3,\"status\":\"ok\",\"attem";
    const char *args[] = {"run", "--resume", "--", MVTEST, NULL};
    char *text, want[32];
    mvrun_t r;
    FILE *f;

    run_init(&r, "ok one\nok two\nok three\nok four\n");
    f = fopen(r.results, "w");
    fputs(LINE(2, "ok") LINE(1, "failed"), f);
    fputs(torn, f);
    fclose(f);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1); /* task 1 failed in the earlier run */
    run_assert_once(&r, 4, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 3), "result"), "three");
    ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "x"); /* kept, not run again */
    snprintf(want, sizeof want, "torn_bytes=%zu", strlen(torn));
    ck_assert_int_eq(run_count(&r, want), 1);
    /* The torn bytes are gone: every line parsed (run_finish) and the kept lines come first. */
    ck_assert_uint_eq(file_lines(r.results), 4);
    text = read_text(r.results);
    ck_assert_int_eq(
        strncmp(text, LINE(2, "ok") LINE(1, "failed"), strlen(LINE(2, "ok") LINE(1, "failed"))), 0);
    free(text);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "3 ok, 1 failed"));
    run_free(&r);
}
END_TEST

/* Without --resume a results file with something in it is never written: exit 2, naming
 * the option, the file byte for byte as it was. */
START_TEST(non_empty_results_without_resume_is_refused_untouched)
{
    static const char old[] = LINE(1, "ok") "{\"partial";
    const char *args[] = {"run", "--", MVTEST, NULL};
    const char *to_old[] = {"run", "--results", NULL, "--", MVTEST, NULL};
    char *text, path[160];
    mvrun_t r;
    FILE *f;

    run_init(&r, "ok a\nok b\n");
    /* (The harness parses r.results: this run is pointed at another file.) */
    snprintf(path, sizeof path, "%s", run_file(&r, "old.jsonl", old));
    to_old[2] = path;
    run_start(&r, to_old, NULL);
    ck_assert_int_eq(run_finish(&r), 2);
    ck_assert_ptr_nonnull(strstr(r.log, "give --resume"));
    ck_assert_ptr_nonnull(strstr(r.log, path));
    text = read_text(path);
    ck_assert_str_eq(text, old);
    free(text);
    /* An empty file is fine, and so is a device: /dev/null, twice. */
    run_again(&r);
    f = fopen(r.results, "w");
    fclose(f);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 2, NULL);
    run_free(&r);
    {
        const char *null_args[] = {"run", "--results", "/dev/null", "--", MVTEST, NULL};
        for (int i = 0; i < 2; i++) {
            run_init(&r, "ok a\n");
            run_start(&r, null_args, NULL);
            ck_assert_int_eq(run_finish(&r), 0);
            run_free(&r);
        }
    }
}
END_TEST

START_TEST(resume_needs_a_results_file_a_task_source_and_a_results_file_it_can_read)
{
    const char *no_tasks[] = {"run", "--resume", "--tasks", "", "--", MVTEST, NULL};
    const char *devnull[] = {"run", "--resume", "--results", "/dev/null", "--", MVTEST, NULL};
    const char *plain[] = {"run", "--resume", "--", MVTEST, NULL};
    const char *to_bad[] = {"run", "--resume", "--results", NULL, "--", MVTEST, NULL};
    char *text, path[160];
    mvrun_t r;

    run_init(&r, "ok a\n");
    run_start(&r, no_tasks, NULL);
    ck_assert_int_eq(run_finish(&r), 2);
    ck_assert_ptr_nonnull(strstr(r.log, "--resume continues a batch"));
    run_free(&r);

    run_init(&r, "ok a\n");
    run_start(&r, devnull, NULL);
    ck_assert_int_eq(run_finish(&r), 2);
    ck_assert_ptr_nonnull(strstr(r.log, "/dev/null is not a regular file"));
    run_free(&r);

    /* Not a results file: refused (exit 3), naming the line, and left as it was. */
    run_init(&r, "ok a\nok b\n");
    snprintf(path, sizeof path, "%s", run_file(&r, "bad.jsonl", LINE(1, "ok") "hello world\n"));
    to_bad[3] = path;
    run_start(&r, to_bad, NULL);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_ptr_nonnull(strstr(r.log, "line 2 is not a result"));
    text = read_text(path);
    ck_assert_str_eq(text, LINE(1, "ok") "hello world\n");
    free(text);
    run_free(&r);

    /* A missing file resumes as an empty one: the whole batch runs. */
    run_init(&r, "ok a\nok b\n");
    run_start(&r, plain, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 2, NULL);
    ck_assert_int_eq(run_count(&r, "event=resume file="), 1);
    run_free(&r);
}
END_TEST

/* Resuming a batch that is complete runs nothing and says how the batch went. */
START_TEST(resuming_a_finished_batch_runs_nothing)
{
    const char *args[] = {"run", "--resume", "--", MVTEST, NULL};
    mvrun_t r;
    FILE *f;

    run_init(&r, "ok a\n\nok c\n");
    f = fopen(r.results, "w");
    fputs(LINE(3, "ok") LINE(1, "quarantined"), f);
    fclose(f);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1);
    ck_assert_uint_eq(r.nres, 2); /* no line added */
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "1 ok, 0 failed, 1 quarantined"));
    ck_assert_int_eq(run_count(&r, "event=resume_mismatch"), 0); /* its own source */
    run_free(&r);
}
END_TEST

/* A results file with lines for tasks the source does not have (an empty line's id, ids past
 * its end: it was written from another source) is resumed, with one warning naming how many. */
START_TEST(results_for_tasks_the_source_lacks_are_warned_of)
{
    const char *args[] = {"run", "--resume", "--", MVTEST, NULL};
    mvrun_t r;
    FILE *f;

    run_init(&r, "ok a\n\nok c\n");
    f = fopen(r.results, "w");
    fputs(LINE(1, "ok") LINE(2, "ok") LINE(5, "ok") LINE(6, "failed"), f);
    fclose(f);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1);
    ck_assert_uint_eq(r.nres, 5); /* task 3 ran */
    ck_assert_int_eq(run_count(&r, "event=resume_mismatch results_without_task=3 source_lines=3 "),
                     1);
    run_free(&r);
}
END_TEST

Suite *resume_suite(void)
{
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("reader");
    TCase *e2e = tcase_create("e2e");

    tcase_add_test(tc, idset_merges_ranges_in_any_order);
    tcase_add_test(tc, idset_of_in_order_ids_is_one_range);
    tcase_add_test(tc, reader_finds_ids_counts_and_a_torn_tail);
    tcase_add_test(tc, reader_gives_the_same_answer_for_any_chunks);
    tcase_add_test(tc, reader_counts_duplicates_and_keeps_any_payload);
    tcase_add_test(tc, reader_counts_each_task_once_as_its_worst_status);
    tcase_add_test(tc, reader_reads_lines_with_and_without_times);
    tcase_add_test(tc, reader_refuses_a_line_that_is_not_a_result);
    tcase_add_test(tc, reader_of_nothing_or_only_a_torn_line);
    tcase_add_test(tc, task_source_skips_done_ids_and_keeps_line_numbers);
    suite_add_tcase(s, tc);
    tcase_set_timeout(e2e, 60);
    tcase_add_test(e2e, sigkill_at_several_points_then_resume_runs_every_task_once);
    tcase_add_test(e2e, a_torn_last_line_is_cut_before_appending);
    tcase_add_test(e2e, non_empty_results_without_resume_is_refused_untouched);
    tcase_add_test(e2e, resume_needs_a_results_file_a_task_source_and_a_results_file_it_can_read);
    tcase_add_test(e2e, resuming_a_finished_batch_runs_nothing);
    tcase_add_test(e2e, results_for_tasks_the_source_lacks_are_warned_of);
    suite_add_tcase(s, e2e);
    return s;
}
