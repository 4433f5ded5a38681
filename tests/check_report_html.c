/*
 * report_html: what `memvisor report --html` embeds, read back from the page's JSON (the
 * browser test, make check-html, renders it): the timeline downsampled within its budget with
 * each generation's peak kept, marks and limits, throughput from `ended` or from the
 * timeline, names that try to end the script element, and bad inputs (a corrupt timeline
 * row, a torn last row of a running run, a malformed `ended`, an unwritable page).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "report.h"
#include "suites.h"

static char tmp[64], page[128];

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-rhtml-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(page, sizeof page, "%s/page.html", tmp);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void teardown(void)
{
    nftw(tmp, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *rel, const char *text)
{
    char p[256];
    FILE *f;

    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A run directory tmp/run with run.json (ended unless `running`) and events. */
static void run_dir(bool running)
{
    char p[128];

    snprintf(p, sizeof p, "%s/run", tmp);
    mkdir(p, 0755);
    put("run/run.json", running ? "{\"run\": \"R1\", \"workers\": 2}"
                                : "{\"run\": \"R1\", \"workers\": 2, \"ended\": \"x\"}");
    put("run/events.jsonl", "{\"event\": \"recycle\", \"reason\": \"soft_limit\"}\n");
}

/* Writes the page of tmp/run; returns its JSON data (the test frees it). */
static json_t *page_data(int *rc, char *why, size_t n)
{
    char path[128], *text, *a, *b;
    json_error_t je;
    json_t *j;

    snprintf(path, sizeof path, "%s/run", tmp);
    *rc = mv_report_html(path, page, why, n);
    if (*rc < 0)
        return NULL;
    text = read_text(page);
    ck_assert_ptr_nonnull(text);
    a = strstr(text, "<script type=\"application/json\" id=\"mv-data\">");
    ck_assert_ptr_nonnull(a);
    a = strchr(a, '>') + 1;
    b = strstr(a, "</script>");
    ck_assert_ptr_nonnull(b);
    j = json_loadb(a, (size_t)(b - a), 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);
    /* nothing is fetched: no URL-bearing attribute in the page */
    ck_assert_ptr_null(strstr(text, "src=\"http"));
    ck_assert_ptr_null(strstr(text, "href=\"http"));
    free(text);
    return j;
}

/* A big timeline: 2 slots x 40 generations x 2,000 points, each generation rising to a peak
 * of (gen * 1 MiB + 1999 KiB). */
START_TEST(test_timeline_downsampled)
{
    char path[128], why[512];
    FILE *f;
    json_t *d, *slots, *s, *v;
    size_t total = 0, i;
    long long ends = 0;
    int rc;
    long long t = 0;

    run_dir(false);
    snprintf(path, sizeof path, "%s/run/timeline.csv", tmp);
    f = fopen(path, "w");
    fprintf(f, "#memvisor-timeline 1 epoch_ms=1700000000000 epoch=x\n");
    for (int g = 1; g <= 40; g++)
        for (int slot = 1; slot <= 2; slot++) {
            fprintf(f, "m,%lld,%d,%d,spawn,,%d,%d,%d,\n", t, slot, g, 100 + g, 64 << 20, 128 << 20);
            for (int k = 0; k < 2000; k++)
                fprintf(f, "p,%lld,%d,%d,%lld,%lld,,,%d\n", t++, slot, g,
                        (long long)g * 1048576 + k * 1024LL, (long long)k * 1024, k + 1);
            fprintf(f, "m,%lld,%d,%d,recycle,soft_limit,%d,,,7\n", t, slot, g, 100 + g);
            fprintf(f, "m,%lld,%d,%d,kill,hard_limit,%d,,,8\n", t, slot, g, 100 + g);
        }
    fclose(f);
    d = page_data(&rc, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(d, "timeline"), "points")),
                     160000);
    slots = json_object_get(json_object_get(d, "timeline"), "slots");
    ck_assert_int_eq(json_array_size(slots), 2);
    json_array_foreach(slots, i, s)
    {
        json_t *u = json_object_get(s, "u"), *g = json_object_get(s, "g");
        size_t n = json_array_size(u);
        long long top[41] = {0};

        total += n;
        ck_assert_int_eq(json_array_size(json_object_get(s, "t")), n);
        ck_assert_int_eq(json_array_size(json_object_get(s, "k")), n);
        for (size_t k = 0; k < n; k++) {
            long long gen = json_integer_value(json_array_get(g, k));
            long long x = json_integer_value(json_array_get(u, k));
            top[gen] = x > top[gen] ? x : top[gen];
        }
        for (int gen = 1; gen <= 40; gen++) /* every generation's peak survives, in KiB */
            ck_assert_int_eq(top[gen], gen * 1024 + 1999);
        /* limits per generation; kills kept, one mark per recycle and kill */
        ck_assert_int_eq(
            json_integer_value(json_array_get(json_object_get(json_object_get(s, "gens"), "7"), 1)),
            128 << 20);
        ck_assert_int_eq(json_array_size(json_object_get(s, "marks")), 80);
    }
    ck_assert_int_le(total, 60000 + 2 * 40 * 4); /* the budget, plus generation edges */
    ck_assert_int_gt(total, 10000);
    /* throughput from the timeline (no results here): every change of the task in hand */
    s = json_object_get(d, "throughput");
    ck_assert_str_eq(json_string_value(json_object_get(s, "source")), "timeline");
    json_array_foreach(json_object_get(s, "ok"), i, v) ends += json_integer_value(v);
    ck_assert_int_eq(ends, 2 * 40 * 1999);
    json_decref(d);
}
END_TEST

/* Throughput from `ended`; a kind name that tries to close the script element stays data. */
START_TEST(test_results_times_and_escaping)
{
    char why[512], res[160], line[600], *text;
    json_t *d, *tp;
    long long sum = 0;
    size_t i;
    json_t *v;
    int rc;
    FILE *f;

    run_dir(false);
    snprintf(res, sizeof res, "%s/results.jsonl", tmp);
    snprintf(line, sizeof line, "{\"run\": \"R1\", \"ended\": \"x\", \"results\": \"%s\"}", res);
    put("run/run.json", line);
    f = fopen(res, "w");
    for (int k = 0; k < 100; k++)
        fprintf(f,
                "{\"task\": %d, \"status\": \"%s\", \"kind\": \"</script><script>alert(1)"
                "</script>\", \"mem_before\": 1, \"mem_after\": 2, \"mem_peak\": 3, \"worker\": "
                "1, \"pid\": 5, \"started\": \"2026-12-01T10:00:%02d.000000Z\", \"ended\": "
                "\"2026-12-01T10:00:%02d.500000Z\"}\n",
                k + 1, k % 10 ? "ok" : "failed", k / 2, k / 2);
    fclose(f);
    d = page_data(&rc, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    tp = json_object_get(d, "throughput");
    ck_assert_str_eq(json_string_value(json_object_get(tp, "source")), "results");
    ck_assert_int_eq(json_integer_value(json_object_get(tp, "t0_ms")), 1796119200500LL);
    json_array_foreach(json_object_get(tp, "ok"), i, v) sum += json_integer_value(v);
    ck_assert_int_eq(sum, 90);
    sum = 0;
    json_array_foreach(json_object_get(tp, "bad"), i, v) sum += json_integer_value(v);
    ck_assert_int_eq(sum, 10);
    ck_assert_str_eq(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(d, "kinds"), "kinds"), 0), "name")),
        "</script><script>alert(1)</script>");
    ck_assert(json_is_null(json_object_get(d, "timeline")));
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(d, "timeline_note")), "no timeline.csv"));
    json_decref(d);
    text = read_text(page);
    ck_assert_ptr_null(strstr(text, "<script>alert"));
    free(text);

    /* a malformed `ended`: an error naming the line, no page */
    unlink(page);
    f = fopen(res, "a");
    fputs("{\"task\": 101, \"status\": \"ok\", \"ended\": \"yesterday\"}\n", f);
    fclose(f);
    ck_assert_ptr_null(page_data(&rc, why, sizeof why));
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_msg(strstr(why, "results.jsonl:101: ended"), "%s", why);
    ck_assert_int_ne(access(page, F_OK), 0);
}
END_TEST

START_TEST(test_bad_timeline)
{
    char why[512];
    json_t *d;
    int rc;

    run_dir(false);
    put("run/timeline.csv",
        "#memvisor-timeline 1 epoch_ms=5 epoch=x\np,1,1,1,10,,,,\np,2,0,1,5,,,,\n");
    ck_assert_ptr_null(page_data(&rc, why, sizeof why));
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_msg(strstr(why, "timeline.csv:3: not a timeline row"), "%s", why);
    put("run/timeline.csv", "p,1,1,1,10,,,,\n");
    ck_assert_ptr_null(page_data(&rc, why, sizeof why));
    ck_assert_msg(strstr(why, "timeline.csv:1: not a memvisor timeline"), "%s", why);
    put("run/timeline.csv", "#memvisor-timeline 1 epoch_ms=5 epoch=x\nm,1,1,1,sp'awn,,,,,\n");
    ck_assert_ptr_null(page_data(&rc, why, sizeof why));
    ck_assert_msg(strstr(why, "timeline.csv:2:"), "%s", why);
    /* a torn last row (no newline) is the writer at work: skipped */
    put("run/timeline.csv", "#memvisor-timeline 1 epoch_ms=5 epoch=x\np,1,1,1,10,,,,\np,2,1,");
    d = page_data(&rc, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(d, "timeline"), "points")),
                     1);
    json_decref(d);
    /* the page cannot be written: said, nothing left behind */
    snprintf(page, sizeof page, "%s/no/such/dir/page.html", tmp);
    ck_assert_ptr_null(page_data(&rc, why, sizeof why));
    ck_assert_msg(strstr(why, "no/such/dir/page.html.new"), "%s", why);
}
END_TEST

/* The real binary: usage errors, and the text report unchanged by --html's arguments. */
/* The page says what the text says of a run that died (no end, its lock free) and of result
 * lines a later run appended (--resume): its header reads "died" and "later_results". */
START_TEST(test_died_and_later_results)
{
    char why[512], res[160], line[300], dir[128];
    json_t *d;
    int rc, fd;
    FILE *f;

    run_dir(true);
    snprintf(res, sizeof res, "%s/results.jsonl", tmp);
    snprintf(line, sizeof line,
             "{\"run\": \"R1\", \"started\": \"2026-12-01T10:00:00Z\", \"results\": \"%s\"}", res);
    put("run/run.json", line);
    f = fopen(res, "w");
    fputs("{\"task\": 1, \"status\": \"ok\", \"ended\": \"2026-12-01T10:00:01Z\"}\n"
          "{\"task\": 2, \"status\": \"ok\", \"ended\": \"2026-12-01T10:09:01Z\"}\n",
          f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/next", tmp);
    mkdir(dir, 0755);
    snprintf(line, sizeof line,
             "{\"run\": \"R2\", \"started\": \"2026-12-01T10:09:00Z\", \"results\": \"%s\"}", res);
    put("next/run.json", line);
    d = page_data(&rc, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert(json_is_true(json_object_get(d, "died")));
    ck_assert_int_eq(json_integer_value(json_object_get(d, "later_results")), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(d, "status"), 0)), 1);
    json_decref(d);
    /* held, as a live run holds it: not dead, and nothing after it is a later run's */
    snprintf(dir, sizeof dir, "%s/run", tmp);
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    d = page_data(&rc, why, sizeof why);
    close(fd);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert(json_is_false(json_object_get(d, "died")));
    ck_assert_int_eq(json_integer_value(json_object_get(d, "later_results")), 0);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(d, "status"), 0)), 2);
    json_decref(d);
}
END_TEST

START_TEST(test_cli)
{
    char cmd[512];

    run_dir(false);
    snprintf(cmd, sizeof cmd, "%s report --html >/dev/null 2>&1", MEMVISOR);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s report --html %s %s/run extra >/dev/null 2>&1", MEMVISOR, page,
             tmp);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s report %s/run --html %s >/dev/null 2>&1", MEMVISOR, tmp, page);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);
    ck_assert_int_eq(access(page, F_OK), 0);
    snprintf(cmd, sizeof cmd, "%s report --html %s %s/missing 2>/dev/null", MEMVISOR, page, tmp);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 3);
}
END_TEST

Suite *report_html_suite(void)
{
    Suite *s = suite_create("report_html");
    TCase *tc = tcase_create("report_html");

    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timeline_downsampled);
    tcase_add_test(tc, test_results_times_and_escaping);
    tcase_add_test(tc, test_bad_timeline);
    tcase_add_test(tc, test_died_and_later_results);
    tcase_add_test(tc, test_cli);
    suite_add_tcase(s, tc);
    return s;
}
