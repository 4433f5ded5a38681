/*
 * hostmem: the pause tier ([supervisor] pause_below, issue 14 #4). The meminfo parser and the
 * pause decision with plain inputs; then a batch whose "host" is a fixture meminfo file
 * (MEMVISOR_TEST_MEMINFO: the real host cannot be driven short of memory safely): it starts
 * paused, stays paused inside the hysteresis margin, resumes above it, pauses again with a
 * task running (held until the test releases it: it finishes, no other starts), and
 * `memvisor status` says so throughout.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hostmem.h"
#include "suites.h"

#define MiB (INT64_C(1) << 20)
#define GiB (INT64_C(1) << 30)

START_TEST(parse_meminfo)
{
    static const char modern[] = "MemTotal:       16314372 kB\n"
                                 "MemFree:          812340 kB\n"
                                 "MemAvailable:    9123456 kB\n"
                                 "Buffers:          123456 kB\n"
                                 "Cached:          7000000 kB\n"
                                 "HugePages_Total:       0\n";
    static const char old[] =
        "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n";
    char *real = read_text("/proc/meminfo");
    int64_t t, a;

    ck_assert_int_eq(mv_hostmem_parse(modern, &t, &a), 0);
    ck_assert_int_eq(t, INT64_C(16314372) * 1024);
    ck_assert_int_eq(a, INT64_C(9123456) * 1024);
    /* Before 3.14 there is no MemAvailable: free + buffers + cached. */
    ck_assert_int_eq(mv_hostmem_parse(old, &t, &a), 0);
    ck_assert_int_eq(a, 420 * 1024);
    /* Never more available than there is. */
    ck_assert_int_eq(mv_hostmem_parse("MemTotal: 10 kB\nMemAvailable: 20 kB\n", &t, &a), 0);
    ck_assert_int_eq(a, 10 * 1024);
    /* Malformed: no total, a value without its unit, a number that is not one, nothing. */
    ck_assert_int_eq(mv_hostmem_parse("MemAvailable: 5 kB\n", &t, &a), -EINVAL);
    ck_assert_int_eq(mv_hostmem_parse("MemTotal: 5\nMemAvailable: 5 kB\n", &t, &a), -EINVAL);
    ck_assert_int_eq(mv_hostmem_parse("MemTotal: x kB\n", &t, &a), -EINVAL);
    ck_assert_int_eq(mv_hostmem_parse("MemTotal: 100 kB\nMemFree: 1 kB\n", &t, &a), -EINVAL);
    ck_assert_int_eq(mv_hostmem_parse("", &t, &a), -EINVAL);
    /* A key that only starts like one is not it. */
    ck_assert_int_eq(
        mv_hostmem_parse("MemTotalX: 9 kB\nMemTotal: 8 kB\nMemAvailable: 1 kB\n", &t, &a), 0);
    ck_assert_int_eq(t, 8 * 1024);
    /* This host's own file. */
    ck_assert_ptr_nonnull(real);
    ck_assert_int_eq(mv_hostmem_parse(real, &t, &a), 0);
    ck_assert(t > 0 && a > 0 && a <= t);
    free(real);
}
END_TEST

START_TEST(pause_decision)
{
    int64_t thr = 1 * GiB;

    ck_assert_int_eq(mv_hostmem_threshold(512 * MiB, 0, 16 * GiB), 512 * MiB);
    ck_assert_int_eq(mv_hostmem_threshold(0, 100, 16 * GiB), 16 * GiB / 10); /* 10% */
    ck_assert_int_eq(mv_hostmem_threshold(0, 25, 1000), 25);                 /* 2.5% */
    ck_assert_int_eq(mv_hostmem_resume_at(thr), thr + thr / 8);
    /* Not paused: pauses strictly under the threshold. */
    ck_assert(!mv_hostmem_paused(false, thr, thr));
    ck_assert(mv_hostmem_paused(false, thr - 1, thr));
    /* Paused: stays so up to the resume point (the hysteresis), resumes at it. */
    ck_assert(mv_hostmem_paused(true, thr, thr));
    ck_assert(mv_hostmem_paused(true, mv_hostmem_resume_at(thr) - 1, thr));
    ck_assert(!mv_hostmem_paused(true, mv_hostmem_resume_at(thr), thr));
    /* Off. */
    ck_assert(!mv_hostmem_paused(false, 0, 0));
    ck_assert(!mv_hostmem_paused(true, 0, 0));
}
END_TEST

/* The fixture "host": 16 GiB, `avail` available; replaced whole (rename), as the kernel's
 * file never shows half a write. */
static void host_has(mvrun_t *r, int64_t avail)
{
    char text[256], tmp[128], path[128];
    FILE *f;

    snprintf(text, sizeof text, "MemTotal: %lld kB\nMemFree: 1000 kB\nMemAvailable: %lld kB\n",
             (long long)(16 * GiB / 1024), (long long)(avail / 1024));
    snprintf(tmp, sizeof tmp, "%s/meminfo.new", r->dir);
    snprintf(path, sizeof path, "%s/meminfo", r->dir);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* `memvisor status --json`'s reply. */
static json_t *status(mvrun_t *r)
{
    char sock[128], *out = NULL;
    const char *argv[] = {MEMVISOR, "status", "--socket", sock, "--json", NULL};
    json_t *j;

    snprintf(sock, sizeof sock, "%s/state/control.sock", r->dir);
    run_drain(r);
    ck_assert_int_eq(run_capture(argv, &out), 0);
    j = json_loads(out, 0, NULL);
    ck_assert_msg(j != NULL, "status: %s", out);
    free(out);
    return j;
}

/* Polls the status until the host's available memory reads `avail` (the reader saw the
 * file), and returns it. */
static json_t *status_seeing(mvrun_t *r, int64_t avail)
{
    for (int i = 0; i < 500; i++) {
        json_t *s = status(r);
        json_t *d = json_object_get(s, "dispatch");

        if (json_integer_value(json_object_get(d, "host_available")) == avail)
            return s;
        json_decref(s);
        usleep(10000);
    }
    ck_abort_msg("the status never showed host_available=%lld", (long long)avail);
    return NULL;
}

static bool paused(json_t *s)
{
    return json_is_true(json_object_get(json_object_get(s, "dispatch"), "paused"));
}

static long long total(json_t *s, const char *key)
{
    return (long long)json_integer_value(json_object_get(json_object_get(s, "totals"), key));
}

START_TEST(dispatch_pauses_and_resumes_on_host_memory)
{
    mvrun_t r;
    char *rest = repeat_line("ok", 20), *tasks = malloc(strlen(rest) + 64), fixture[128];
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=1", "supervisor.pause_below=1G",
                                                "limits.sample_interval=20ms"),
                                       RUN_CMD(MVTEST));
    json_t *s;
    char *line;
    int held;

    sprintf(tasks, "hold 0\n%s", rest); /* task 1 runs until the test releases it */
    run_init(&r, tasks);
    snprintf(fixture, sizeof fixture, "%s/meminfo", r.dir);
    setenv("MEMVISOR_TEST_MEMINFO", fixture, 1);
    host_has(&r, 512 * MiB);
    run_start(&r, args, NULL);
    /* Short from the start: paused before the first task. */
    line = run_wait_for(&r, "event=pause reason=host_memory");
    ck_assert_ptr_nonnull(strstr(line, "available=536870912 threshold=1073741824"));
    free(line);
    s = status_seeing(&r, 512 * MiB);
    ck_assert(paused(s));
    ck_assert_str_eq(json_string_value(json_array_get(
                         json_object_get(json_object_get(s, "dispatch"), "reasons"), 0)),
                     "host_memory");
    ck_assert_int_eq(total(s, "tasks"), 0);
    ck_assert_int_eq(total(s, "in_flight"), 0);
    json_decref(s);
    /* Back above the threshold but under it plus an eighth: still paused. */
    host_has(&r, 1100 * MiB);
    s = status_seeing(&r, 1100 * MiB);
    ck_assert(paused(s));
    ck_assert_int_eq(total(s, "tasks"), 0);
    json_decref(s);
    /* Above the resume point: tasks run. */
    host_has(&r, 1200 * MiB);
    free(run_wait_for(&r, "event=resume reason=host_memory available=1258291200"));
    line = run_wait_for(&r, "held pid=");
    held = atoi(strstr(line, "held pid=") + 9);
    free(line);
    /* Short again while task 1 runs: it finishes, nothing else starts. */
    host_has(&r, 256 * MiB);
    free(run_wait_for(&r, "event=pause reason=host_memory available=268435456"));
    kill(held, SIGUSR1);
    for (;;) {
        s = status_seeing(&r, 256 * MiB);
        if (total(s, "in_flight") == 0)
            break;
        json_decref(s);
        usleep(20000);
    }
    ck_assert(paused(s));
    ck_assert_int_eq(total(s, "tasks"), 1);
    ck_assert_int_eq(total(s, "queue"), 20);
    json_decref(s);
    /* Plenty: the batch ends. */
    host_has(&r, 8 * GiB);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 21, NULL);
    ck_assert_int_eq(run_count(&r, "event=pause "), 2);
    ck_assert_int_eq(run_count(&r, "event=resume "), 2);
    unsetenv("MEMVISOR_TEST_MEMINFO");
    free(rest);
    free(tasks);
    run_free(&r);
}
END_TEST

/* An unreadable file pauses nothing and is said once. */
START_TEST(unreadable_meminfo_pauses_nothing)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.pause_below=50%", "--", MVTEST, NULL};

    setenv("MEMVISOR_TEST_MEMINFO", "/nonexistent/meminfo", 1);
    ck_assert_int_eq(run_batch(&r, "ok\nok\nok\n", args), 0);
    ck_assert_int_eq(run_count(&r, "event=host_memory_unreadable"), 1);
    ck_assert_int_eq(run_count(&r, "event=pause "), 0);
    run_free(&r);
    unsetenv("MEMVISOR_TEST_MEMINFO");
}
END_TEST

Suite *hostmem_suite(void)
{
    Suite *s = suite_create("hostmem");
    TCase *tc = tcase_create("unit");

    tcase_add_test(tc, parse_meminfo);
    tcase_add_test(tc, pause_decision);
    suite_add_tcase(s, tc);
    tc = tcase_create("pause");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, dispatch_pauses_and_resumes_on_host_memory);
    tcase_add_test(tc, unreadable_meminfo_pauses_nothing);
    suite_add_tcase(s, tc);
    return s;
}
