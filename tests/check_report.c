/*
 * report: `memvisor report` over fixture run directories written here (run.json, events.jsonl,
 * a snapshot, results with kinds): the ranking of suspects and their evidence, recycle counts,
 * exact percentiles, the suggested limits and their reasoning, a state directory, a results
 * file alone, every kind of bad input, and the real binary's exit codes.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "report.h"
#include "report_int.h"
#include "suites.h"
#include "util.h"

#define KiB (INT64_C(1) << 10)
#define MiB (INT64_C(1) << 20)

static char tmp[64];

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-report-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmp, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* Writes `text` to base/rel (parent directories made): ' becomes " (JSON in C strings stays
 * readable) and @ becomes base. Returns the path (static until the next call). */
static const char *put_in(const char *base, const char *rel, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", base, rel);
    for (char *p = strchr(path + strlen(base) + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (const char *c = text; *c; c++)
        if (*c == '@')
            fputs(base, f);
        else
            fputc(*c == '\'' ? '"' : *c, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static const char *put(const char *rel, const char *text)
{
    return put_in(tmp, rel, text);
}

/* Holds tmp/rel's run lock as a live memvisor does (flock on the directory); close the fd. */
static int hold_run_lock(const char *rel)
{
    char path[256];
    int fd;

    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    fd = open(path, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    return fd;
}

/* mv_report of base/rel into a malloc'd string; the return code in *rc, the error in why. */
static char *report(const char *rel, int *rc, char why[512])
{
    char path[256], *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(out);
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    why[0] = '\0';
    *rc = mv_report(path, out, why, 512);
    fclose(out);
    return buf;
}

/* The report of base/rel, which must succeed. */
static char *report_ok(const char *rel)
{
    char why[512];
    int rc;
    char *s = report(rel, &rc, why);

    ck_assert_msg(rc == 0, "report failed (%d): %s", rc, why);
    return s;
}

/* Asserts that the report of base/rel fails with err and a message containing needle. */
static void report_fails(const char *rel, int err, const char *needle)
{
    char why[512];
    int rc;
    char *s = report(rel, &rc, why);

    ck_assert_msg(rc == err, "expected %d, got %d (%s)", err, rc, why);
    ck_assert_msg(strstr(why, needle), "\"%s\" not in \"%s\"", needle, why);
    ck_assert_msg(s[0] == '\0', "output on error: %s", s);
    free(s);
}

/* Check's messages are bounded: the needle is shown whole, the report around it cut. */
#define HAS(s, needle) \
    ck_assert_msg(strstr(s, needle), "missing \"%.1000s\" in:\n%.2500s", needle, s)
#define HASNT(s, needle) \
    ck_assert_msg(!strstr(s, needle), "unexpected \"%.1000s\" in:\n%.2500s", needle, s)

static const char run_json[] =
    "{'memvisor': '0.1.0', 'run': '20261121T160000Z-4242', 'pid': 4242,\n"
    " 'started': '2026-11-21T16:00:00.123456Z', 'ended': '2026-11-21T16:00:12.654321Z',\n"
    " 'command': ['python3', 'examples/python/mixed.py'], 'config': 'conf/memvisor.ini',\n"
    " 'results': '@/results.jsonl', 'cgroup': 'cgroup v1 /sys/fs/cgroup/memory/memvisor-4242',\n"
    " 'workers': 2,\n"
    " 'limits': {'memory_soft': 268435456, 'memory_hard': 536870912, 'max_tasks': 0,\n"
    "            'max_lifetime_ms': 0, 'metric': 'private', 'enforce': true},\n"
    " 'leak': {'window': 50, 'min_slope': 32768, 'task_growth': 33554432, 'kind': 'word'},\n"
    " 'exit': 1, 'tasks': {'ok': 8, 'failed': 1, 'quarantined': 1}}\n";

#define EV(name, rest) \
    "{'ts': '2026-11-21T16:00:01Z', 'level': 'info', 'event': '" name "'" rest "}\n"

/* clang-format off */
static const char events[] =
    EV("start", ", 'workers': 2")
    EV("leak_suspect", ", 'kind': 'render', 'per_task': 4096, 'fds_per_task': 0.5, "
                       "'confidence': 0.6, 'tasks': 50, 'rule': 'task_growth', 'worker': 1, "
                       "'pid': 4249, 'task': 5, 'snapshot': null")
    EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'fds_per_task': 0.0, "
                       "'confidence': 0.95, 'tasks': 50, 'rule': 'trend', 'worker': 2, "
                       "'pid': 4250, 'task': 6, "
                       "'snapshot': '@/run/snapshots/0001-leak_suspect-parse-w2.json'")
    EV("leak_suspect", ", 'kind': 'parse', 'per_task': 81920, 'fds_per_task': 0, "
                       "'confidence': 0.9, 'tasks': 50, 'rule': 'trend', 'worker': 1, "
                       "'pid': 4249, 'task': 7, 'snapshot': null")
    EV("recycle", ", 'worker': 1, 'reason': 'soft_limit', 'action': 'drain'")
    EV("recycle", ", 'worker': 2, 'reason': 'soft_limit', 'action': 'drain'")
    EV("recycle", ", 'worker': 1, 'reason': 'max_tasks', 'action': 'drain'")
    EV("recycle", ", 'worker': 2, 'reason': 'soft_limit', 'action': 'drain'")
    EV("would_recycle", ", 'worker': 1, 'reason': 'hard_limit', 'action': 'kill'")
    EV("would_recycle", ", 'worker': 2, 'reason': 'hard_limit', 'action': 'kill'")
    EV("kernel_oom", ", 'worker': 2, 'pid': 4251, 'limit': 536870912")
    EV("exit", ", 'worker': 1, 'reason': 'soft_limit', 'status': 0")
    EV("exit", ", 'worker': 2, 'reason': 'kernel_oom', 'signal': 9")
    EV("requeue", ", 'task': 8, 'attempts': 1, 'reason': 'kernel_oom'")
    EV("quarantine", ", 'task': 8, 'attempts': 3, 'reason': 'kernel_oom'");
/* clang-format on */

static const char snapshot[] =
    "{'memvisor': '0.1.0', 'reason': 'leak_suspect',\n"
    " 'suspect': {'kind': 'parse', 'per_task': 65536, 'rule': 'trend'},\n"
    " 'mappings_growth': [{'mapping': '[heap]', 'rss_then': 1, 'rss_now': 9, 'growth': 8388608},\n"
    "                     {'mapping': '[anon]', 'rss_then': 0, 'rss_now': 4, 'growth': 4}],\n"
    " 'heap': {'runtime': 'python', 'tracemalloc': {'frames': 1, 'top': [\n"
    "   {'where': 'examples/python/mixed.py:17', 'size': 9, 'count': 1, 'size_diff': 1048576,\n"
    "    'count_diff': 1}]},\n"
    "  'types': [{'type': 'dict', 'count': 1200, 'diff': 1000}]},\n"
    " 'heap_status': 'worker'}\n";

/* Lines with times and a generation (task 1) and without (older lines) mix. */
static const char results[] =
    "{'task': 1, 'status': 'ok', 'kind': 'parse', 'worker': 1, 'gen': 1, 'pid': 4249, "
    "'started': '2026-11-21T16:00:00.000100Z', 'ended': '2026-11-21T16:00:00.001200Z', "
    "'mem_before': 1048576, "
    "'mem_after': 1114112, 'mem_peak': 1572864, 'retained': 65536, 'duration_ms': 1.0}\n"
    "{'task': 2, 'status': 'ok', 'kind': 'render', 'worker': 2, 'pid': 4250, 'mem_before': "
    "2097152, "
    "'mem_after': 2097152, 'mem_peak': 3145728, 'retained': 0, 'duration_ms': 2.0}\n"
    "{'task': 3, 'status': 'ok', 'kind': 'parse', 'worker': 2, 'pid': 4250, 'mem_before': 2097152, "
    "'mem_after': 2162688, 'mem_peak': 2621440, 'retained': 65536, 'duration_ms': 1.5}\n"
    "{'task': 4, 'status': 'ok', 'kind': 'parse', 'worker': 1, 'pid': 4249, 'mem_before': 1114112, "
    "'mem_after': 1179648, 'mem_peak': 1638400, 'duration_ms': 1.2}\n"
    "{'task': 5, 'status': 'ok', 'kind': 'render', 'worker': 1, 'pid': 4249, 'mem_before': "
    "1179648, "
    "'mem_after': 1183744, 'mem_peak': 2228224, 'retained': 4096, 'duration_ms': 3.0}\n"
    "{'task': 6, 'status': 'ok', 'kind': 'parse', 'worker': 2, 'pid': 4250, 'mem_before': 2162688, "
    "'mem_after': 2293760, 'mem_peak': 2752512, 'retained': 131072, 'duration_ms': 0.8}\n"
    "{'task': 7, 'status': 'ok', 'kind': 'parse', 'worker': 1, 'pid': 4249, 'mem_before': 1183744, "
    "'mem_after': 1249280, 'mem_peak': 1740800, 'retained': 65536, 'duration_ms': 1.1}\n"
    "{'task': 8, 'status': 'quarantined', 'kind': 'parse', 'worker': null, 'pid': null, "
    "'mem_before': null, 'mem_after': null, 'mem_peak': null, 'retained': null, "
    "'duration_ms': null, 'error': 'killed'}\n"
    "{'task': 9, 'status': 'failed', 'kind': 'render', 'worker': 2, 'pid': 4250, 'mem_before': "
    "2293760, 'mem_after': 2297856, 'mem_peak': 8388608, 'retained': 4096, 'duration_ms': 10.0}\n"
    "{'task': 10, 'status': 'ok', 'worker': 1, 'pid': 4249, 'mem_before': 1249280, "
    "'mem_after': 1249280, 'mem_peak': 1331200, 'retained': 0, 'duration_ms': 0.5}\n";

/* The rich fixture: tmp/run (a run directory) and tmp/results.jsonl. */
static void rich_run(void)
{
    put("run/run.json", run_json);
    put("run/events.jsonl", events);
    put("run/snapshots/0001-leak_suspect-parse-w2.json", snapshot);
    put("results.jsonl", results);
}

START_TEST(percentile_nearest_rank)
{
    int64_t ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, twenty[20], one[] = {42};

    for (int i = 0; i < 20; i++)
        twenty[i] = i + 1;
    ck_assert_int_eq(mv_percentile(ten, 10, 50), 5);
    ck_assert_int_eq(mv_percentile(ten, 10, 90), 9);
    ck_assert_int_eq(mv_percentile(ten, 10, 95), 10);
    ck_assert_int_eq(mv_percentile(ten, 10, 0), 1);
    ck_assert_int_eq(mv_percentile(ten, 10, 100), 10);
    ck_assert_int_eq(mv_percentile(ten, 10, 1000), 10);
    ck_assert_int_eq(mv_percentile(ten, 10, 11), 2);
    /* 0.95 * 20 is 19.000000000000004 in floating point: the rank is 19, not 20. */
    ck_assert_int_eq(mv_percentile(twenty, 20, 95), 19);
    ck_assert_int_eq(mv_percentile(twenty, 20, 50), 10);
    ck_assert_int_eq(mv_percentile(one, 1, 50), 42);
    ck_assert_int_eq(mv_percentile(one, 1, 0), 42);
    ck_assert_int_eq(mv_percentile(NULL, 0, 50), 0);
}
END_TEST

START_TEST(sizes_for_people)
{
    char s[24];

    mv_fmt_bytes(64 * KiB, s);
    ck_assert_str_eq(s, "64.0 KiB");
    mv_fmt_bytes(12 * MiB + 512 * KiB, s);
    ck_assert_str_eq(s, "12.5 MiB");
    mv_fmt_bytes(512, s);
    ck_assert_str_eq(s, "512 B");
    mv_fmt_bytes(3 * 1024 * MiB, s);
    ck_assert_str_eq(s, "3.0 GiB");
}
END_TEST

START_TEST(advice_rules)
{
    mv_advice_in_t in = {8 * MiB, 5952 * KiB, 2244 * KiB, 1 * MiB, 80 * KiB, 0};
    mv_advice_t a;

    /* hard = 8 MiB x 1.25; soft = 10 MiB - 5.8 MiB rounded down; (4 MiB - 1 MiB) / 80 KiB. */
    mv_advise(&in, &a);
    ck_assert_int_eq(a.hard, 10 * MiB);
    ck_assert_int_eq(a.soft, 4 * MiB);
    ck_assert_int_eq(a.floor, 3 * MiB);
    ck_assert_int_eq(a.max_tasks, 38);
    ck_assert(!a.floored && !a.baseline_over);
    /* x1.25 rounds up to a whole MiB. */
    in = (mv_advice_in_t){100 * MiB + 1, 0, 0, -1, 0, 0};
    mv_advise(&in, &a);
    ck_assert_int_eq(a.hard, 126 * MiB);
    ck_assert_int_eq(a.max_tasks, 0);
    /* The soft limit never goes below p95 mem_after x 1.1; hard grows to floor + transient. */
    in = (mv_advice_in_t){100 * MiB, 90 * MiB, 80 * MiB, 10 * MiB, MiB, 0};
    mv_advise(&in, &a);
    ck_assert(a.floored);
    ck_assert_int_eq(a.floor, 88 * MiB);
    ck_assert_int_eq(a.soft, 88 * MiB);
    ck_assert_int_eq(a.hard, 178 * MiB);
    ck_assert_int_eq(a.max_tasks, 78);
    /* Raised soft (77 MiB) + transient (50 MiB) above 125 MiB: hard grows to 127 MiB, so a
     * worker just under soft can still run its biggest task. Unknown baseline: no max_tasks. */
    in = (mv_advice_in_t){100 * MiB, 50 * MiB, 70 * MiB, -1, MiB, 0};
    mv_advise(&in, &a);
    ck_assert(a.floored);
    ck_assert_int_eq(a.soft, 77 * MiB);
    ck_assert_int_eq(a.hard, 127 * MiB);
    ck_assert_int_eq(a.max_tasks, -1);
    /* A fresh worker already at soft; absurd figures are clamped, never overflow. */
    in = (mv_advice_in_t){10 * MiB, 0, 0, 64 * MiB, KiB, 0};
    mv_advise(&in, &a);
    ck_assert(a.baseline_over && a.max_tasks == 1);
    in = (mv_advice_in_t){INT64_MAX, INT64_MAX, INT64_MAX, 0, 1, 0};
    mv_advise(&in, &a);
    ck_assert(a.hard > 0 && a.soft > 0 && a.max_tasks >= 1 && a.max_tasks <= 1000000000000);
    in = (mv_advice_in_t){0, -5, -5, 0, -5, -5};
    mv_advise(&in, &a);
    ck_assert_int_eq(a.hard, MiB);
    ck_assert_int_eq(a.soft, MiB);
    ck_assert_int_eq(a.max_tasks, 0);
    ck_assert(!a.worker_over);
    /* A worker that peaked at 90 MiB starting up (tasks at 8 MiB): hard must let it start,
     * soft stays hard minus the transient. A worker peak under the tasks' changes nothing. */
    in = (mv_advice_in_t){8 * MiB, 512 * KiB, 7 * MiB, 7 * MiB, 0, 90 * MiB};
    mv_advise(&in, &a);
    ck_assert(a.worker_over && !a.floored);
    ck_assert_int_eq(a.hard, 113 * MiB);
    ck_assert_int_eq(a.soft, 112 * MiB);
    in.worker_peak = 8 * MiB;
    mv_advise(&in, &a);
    ck_assert(!a.worker_over);
    ck_assert_int_eq(a.hard, 10 * MiB);
}
END_TEST

START_TEST(rich_header_and_suspects)
{
    char *s;

    rich_run();
    s = report_ok("run");
    HAS(s, "memvisor report: run 20261121T160000Z-4242\n");
    HAS(s, "  command    python3 examples/python/mixed.py\n");
    HAS(s, "  ended      2026-11-21T16:00:12.654321Z\n");
    HAS(s, "  exit       1\n");
    HAS(s, "  tasks      8 ok, 1 failed, 1 quarantined\n");
    HAS(s, "  limits     soft 256.0 MiB, hard 512.0 MiB, max_tasks 0 (off), enforce yes, "
           "metric private\n");
    /* Ranked by bytes per task (the largest event of the kind), parse before render. */
    HAS(s, "  parse          80.0 KiB/task  confidence 0.95  rule trend  2 events\n");
    HAS(s, "  render          4.0 KiB/task  confidence 0.60  rule task_growth  1 event  "
           "0.50 fds/task\n");
    ck_assert(strstr(s, "  parse ") < strstr(s, "  render "));
    HAS(s,
        "    evidence   retained mean 76.8 KiB, p50 64.0 KiB over 5 tasks of this kind; seen on 2 "
        "workers\n");
    HAS(s, "               tracemalloc  examples/python/mixed.py:17 grew 1.0 MiB\n");
    HAS(s, "               type         dict +1000 (1200 now)\n");
    HAS(s, "               mapping      [heap] grew 8.0 MiB\n");
    HAS(s, "    evidence   retained mean 2.7 KiB, p50 4.0 KiB over 3 tasks of this kind; seen on 1 "
           "worker\n"
           "    snapshot   none\n");
    HASNT(s, "No leak suspected");
    free(s);
}
END_TEST

START_TEST(rich_recycles_and_exits)
{
    char *s;

    rich_run();
    s = report_ok("run");
    HAS(s, "Recycles by reason (workers that left, by why they finally did, as the run's "
           "summary counts them)\n"
           "  soft_limit                1\n"
           "  kernel_oom                1\n"
           "  hard_limit                2  would have recycled (observe-only)\n"
           "Recycles decided (drains and kills begun)\n"
           "  soft_limit                3\n"
           "  max_tasks                 1\n"
           "Kernel OOM kills 1 (of workers or of their children)\n"
           "Exits by reason\n"
           "  soft_limit                1\n"
           "  kernel_oom                1\n"
           "Requeued tasks 1, quarantined tasks 1\n");
    free(s);
}
END_TEST

/* A kernel_oom of a worker's other processes (cgroup v1: a master's child) counts its kills;
 * a worker's own, or a kills that is not a count, counts one. */
/* Workers that died on their own (a crash) or were killed after a drain are recycles as the
 * run's summary counts them ("recycles: crash 2"), by why they finally left; measured before:
 * the report said "Recycles by reason: none" for a run whose summary said "crash 2". */
START_TEST(recycles_count_as_the_summary_does)
{
    char *s;

    put("run/run.json", "{'run': 'r5', 'ended': '2026-11-21T16:00:12Z'}");
    put("run/events.jsonl", EV("exit", ", 'worker': 1, 'reason': 'crash', 'signal': 9")
                                EV("exit", ", 'worker': 2, 'reason': 'crash', 'signal': 9")
                                    EV("recycle", ", 'worker': 1, 'reason': 'soft_limit'")
                                        EV("exit", ", 'worker': 1, 'reason': 'kernel_oom'")
                                            EV("exit", ", 'worker': 1, 'reason': 'shutdown'"));
    s = report_ok("run");
    HAS(s, "summary counts them)\n"
           "  crash                     2\n"
           "  kernel_oom                1\n"
           "Recycles decided (drains and kills begun)\n"
           "  soft_limit                1\n");
    free(s);
}
END_TEST

START_TEST(kernel_oom_kills_of_children_are_counted)
{
    char *s;

    put("run/run.json", "{'run': 'r4', 'results': '@/results.jsonl', 'ended': null}");
    put("run/events.jsonl",
        EV("kernel_oom", ", 'worker': 1, 'pid': 10, 'process': 'child', 'kills': 3")
            EV("kernel_oom", ", 'worker': 1, 'pid': 10, 'process': 'child', 'kills': 'x'")
                EV("kernel_oom", ", 'worker': 2, 'pid': 11, 'limit': 536870912"));
    put("results.jsonl", results);
    s = report_ok("run");
    HAS(s, "Kernel OOM kills 5 (of workers or of their children)\n");
    free(s);
}
END_TEST

/* [log] events_max: events.1.jsonl, the older half, is read first and counted too; when it
 * begins with a rotation itself, older events are gone and the report says so. */
START_TEST(rotated_events_are_counted_and_a_cut_is_said)
{
    char *s;

    rich_run();
    put("run/events.1.jsonl", EV("recycle", ", 'worker': 1, 'reason': 'max_tasks'"));
    s = report_ok("run");
    HAS(s, "  max_tasks                 2\n");
    HASNT(s, "rotated away");
    free(s);
    put("run/events.1.jsonl", EV("events_rotated", ", 'previous': 'events.1.jsonl', 'max': 4096")
                                  EV("recycle", ", 'worker': 1, 'reason': 'max_tasks'"));
    s = report_ok("run");
    HAS(s, "  max_tasks                 2\n");
    HAS(s, "the oldest were rotated away ([log] events_max)");
    free(s);
}
END_TEST

START_TEST(rich_distributions)
{
    char *s;

    rich_run();
    s = report_ok("run");
    HAS(s, "  (all): 10 tasks, 1 without memory figures\n"
           "    mem_peak    p50     2.1 MiB  p95     8.0 MiB  max     8.0 MiB\n"
           "    retained    p50    64.0 KiB  p95   128.0 KiB  max   128.0 KiB\n"
           "    duration    p50     1.20 ms  p95    10.00 ms  max    10.00 ms\n");
    HAS(s, "  parse: 6 tasks, 1 without memory figures\n"
           "    mem_peak    p50     1.7 MiB  p95     2.6 MiB  max     2.6 MiB\n"
           "    retained    p50    64.0 KiB  p95   128.0 KiB  max   128.0 KiB\n"
           "    duration    p50     1.10 ms  p95     1.50 ms  max     1.50 ms\n");
    HAS(s, "  render: 3 tasks\n"
           "    mem_peak    p50     3.0 MiB  p95     8.0 MiB  max     8.0 MiB\n"
           "    retained    p50     4.0 KiB  p95     4.0 KiB  max     4.0 KiB\n"
           "    duration    p50     3.00 ms  p95    10.00 ms  max    10.00 ms\n");
    HAS(s, "  (no kind): 1 task\n");
    free(s);
}
END_TEST

START_TEST(rich_advice)
{
    char *s;

    rich_run();
    s = report_ok("run");
    HAS(s, "Suggested limits (from 9 tasks with memory figures)\n");
    HAS(s, "  memory_hard    10.0 MiB  largest task peak 8.0 MiB x 1.25, rounded up to a MiB: a "
           "legitimate big task never hits it (now 512.0 MiB)\n");
    HAS(s, "  memory_soft     4.0 MiB  hard minus the largest single-task transient 5.8 MiB "
           "(mem_peak - mem_before), rounded down to a MiB; not below p95 mem_after x 1.1 = "
           "3.0 MiB (now 256.0 MiB)\n");
    HAS(s, "  max_tasks            38  (soft 4.0 MiB - fresh worker baseline p50 1.0 MiB) / "
           "80.0 KiB per task (parse), rounded down: so that this leak alone never reaches the "
           "soft limit\n");
    HAS(s, "\n[limits]\nmemory_soft = 4M\nmemory_hard = 10M\nmax_tasks = 38\n");
    free(s);
}
END_TEST

START_TEST(state_dir_follows_latest)
{
    char path[128], *s;

    rich_run();
    snprintf(path, sizeof path, "%s/state", tmp);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/state/latest", tmp);
    ck_assert_int_eq(symlink("../run", path), 0);
    s = report_ok("state");
    HAS(s, "memvisor report: run 20261121T160000Z-4242\n");
    HAS(s, "/state/latest\n");
    HAS(s, "tracemalloc  examples/python/mixed.py:17");
    free(s);
    /* A latest that points nowhere names the file it could not read. */
    unlink(path);
    ck_assert_int_eq(symlink("gone", path), 0);
    report_fails("state", -ENOENT, "state/latest/run.json: No such file or directory");
}
END_TEST

START_TEST(results_file_alone)
{
    char *s;

    put("results.jsonl", results);
    s = report_ok("results.jsonl");
    HAS(s, "memvisor report: results file ");
    HAS(s, "(10 lines)\n  a results file alone: no run.json or events.jsonl");
    HAS(s, "  tasks      8 ok, 1 failed, 1 quarantined\n");
    HAS(s, "  unknown: suspects are events (events.jsonl); a results file has none\n");
    HAS(s, "  unknown: recycles are events");
    HAS(s, "  parse: 6 tasks, 1 without memory figures\n");
    HAS(s, "  memory_hard    10.0 MiB");
    HAS(s, "  max_tasks    (no suggestion): suspects are events; a results file alone has none\n");
    HAS(s, "[limits]\nmemory_soft = 4M\nmemory_hard = 10M\n");
    HASNT(s, "max_tasks =");
    free(s);
}
END_TEST

/* A result may hold a NUL byte: valid UTF-8, which memvisor writes as "\u0000" (memvisor.Pool's
 * answers are pickles read as Latin-1); the report reads it as resume does. */
START_TEST(a_result_with_a_nul_byte_reads)
{
    char *s;

    put("r.jsonl", "{'task': 1, 'status': 'ok', 'result': 'a\\u0000b', 'mem_peak': 1048576}\n");
    s = report_ok("r.jsonl");
    HAS(s, "(1 lines)");
    HAS(s, "  tasks      1 ok, 0 failed, 0 quarantined\n");
    free(s);
}
END_TEST

/* Suspects an experiment did not confirm, and kinds it cleared, are listed with why; the
 * advice is built on confirmed suspects only. */
START_TEST(unconfirmed_and_cleared_suspects)
{
    char *s;

    put("run/run.json", "{'run': 'r3', 'results': '@/results.jsonl', 'ended': null}");
    put("run/events.jsonl",
        EV("leak_suspect", ", 'kind': 'render', 'per_task': 900000, 'rule': 'trend', "
                           "'confirmed': false, 'evidence': 'heap', 'experiment': 'queued'")
            EV("leak_cleared", ", 'kind': 'render', 'verdict': 'plateau', 'evidence': "
                               "'isolation', 'why': 'the kind ran alone'")
                EV("leak_suspect", ", 'kind': 'tally', 'per_task': 800000, 'rule': 'trend', "
                                   "'confirmed': false, 'evidence': 'kernel-trend', 'experiment': "
                                   "'inconclusive', 'why': 'timed out'")
                    EV("leak_cleared",
                       ", 'kind': 'cache', 'verdict': 'demoted', 'evidence': 'snapshot', "
                       "'why': 'its snapshot grows most at a site of another kind', "
                       "'site': 'app.py:12', 'other': 'parse'"));
    put("results.jsonl", results);
    s = report_ok("run");
    HAS(s, "  No leak suspected\n");
    HAS(s,
        "Suspected, not confirmed (no advice is built on them)\n"
        "  tally        suspected on kernel-trend figures; experiment inconclusive: timed out\n");
    HAS(s, "Suspected, then cleared\n");
    HAS(s, "  render       plateau, by isolation: the kind ran alone\n");
    HAS(s, "  cache        demoted, by snapshot: its snapshot grows most at a site of another kind "
           "(app.py:12, kind parse)\n");
    HAS(s, "  max_tasks       0 (off)  no leak suspected, memory limits are enough\n");
    free(s);
    /* and once confirmed, a suspect says by what */
    put("run/events.jsonl",
        EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                           "'confirmed': false, 'evidence': 'heap', 'experiment': 'queued'")
            EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                               "'confirmed': true, 'evidence': 'heap,isolation', 'experiment': "
                               "'isolation'")
                EV("leak_suspect",
                   ", 'kind': 'render', 'per_task': 900000, 'rule': 'trend', "
                   "'confirmed': false, 'evidence': 'heap', 'experiment': 'queued'"));
    s = report_ok("run");
    HAS(s, "  parse          64.0 KiB/task  confidence 0.00  rule trend  1 event\n"
           "    confirmed  by heap,isolation\n");
    HASNT(s, "  render        878.9 KiB/task");
    HAS(s, "  render       suspected on heap figures; experiment queued\n");
    HAS(s, "/ 64.0 KiB per task (parse)");
    free(s);
    /* a wrong type is an error naming the field */
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': 'a', 'confirmed': 'yes'"));
    report_fails("run", -EINVAL, "confirmed");
}
END_TEST

/* The workers a confirmed kind was seen on: each named one once (slot and pid); none for an
 * older run's confirmation after its worker left (worker 0, pid 0), nor for a worker given
 * as null: the report says no count rather than count a worker that never was. */
START_TEST(a_confirmation_without_its_worker_counts_no_worker)
{
    char *s;

    put("run/run.json", "{'run': 'r4', 'results': '@/results.jsonl', 'ended': null}");
    put("results.jsonl", results);
    put("run/events.jsonl",
        EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                           "'confirmed': true, 'evidence': 'heap,isolation', 'experiment': "
                           "'isolation', 'worker': 0, 'pid': 0, 'snapshot': null"));
    s = report_ok("run");
    HAS(s, "    confirmed  by heap,isolation\n");
    HASNT(s, "seen on");
    free(s);
    put("run/events.jsonl",
        EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                           "'confirmed': true, 'evidence': 'heap', 'experiment': 'none', "
                           "'worker': 2, 'gen': 3, 'pid': 4250, 'snapshot': null")
            EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                               "'confirmed': true, 'evidence': 'heap,isolation', 'experiment': "
                               "'isolation', 'worker': 0, 'pid': 0, 'snapshot': null")
                EV("leak_suspect", ", 'kind': 'parse', 'per_task': 65536, 'rule': 'trend', "
                                   "'confirmed': true, 'evidence': 'heap,isolation', "
                                   "'experiment': 'isolation', 'worker': 1, 'gen': 4, 'pid': "
                                   "4251, 'snapshot': null, 'snapshot_reason': 'the worker "
                                   "exited before the verdict; no snapshot was taken of it'")
                    EV("leak_suspect", ", 'kind': 'parse', 'per_task': 0, 'rule': 'trend', "
                                       "'confirmed': false, 'experiment': 'inconclusive', "
                                       "'worker': null, 'gen': null, 'pid': null"));
    s = report_ok("run");
    HAS(s, "over 5 tasks of this kind; seen on 2 workers\n");
    free(s);
}
END_TEST

/* Every text the files hold (kinds, reasons, notes, paths, a worker's type names and mappings,
 * the command) may carry control characters: a crafted results or events file, a type or a
 * mapped file a worker named. None reaches the terminal: no escape sequence, no bell, no C1
 * control, no newline that would start a line of its own (a forged [limits] block). */
START_TEST(control_characters_never_reach_the_terminal)
{
    static const char esc_snapshot[] =
        "{'mappings_growth': [{'mapping': '/tmp/m\\u001b[2Jap', 'growth': 8388608}],\n"
        " 'heap': {'tracemalloc': {'top': [{'where': 'w\\u0007.py:1', 'size_diff': 1}]},\n"
        "  'types': [{'type': 'T\\u009b31m', 'count': 2, 'diff': 1}]}}\n";
    char *s;

    put("run/run.json", "{'run': 'r\\u001b]0;title\\u0007', 'command': ['w\\u001b[31m'], "
                        "'results': '@/results.jsonl', 'ended': '2026-11-21\\u0007T16:00:12Z', "
                        "'limits': {'max_tasks': 7}}");
    put("run/snapshots/s.json", esc_snapshot);
    put("run/events.jsonl",
        EV("leak_suspect", ", 'kind': 'k\\u001b[2J\\n[limits]\\nmemory_hard = 1G', "
                           "'per_task': 65536, 'rule': 'trend', 'evidence': 'heap\\u001b[0m', "
                           "'pid': 7, 'snapshot': 'snapshots/s.json'")
            EV("leak_cleared", ", 'kind': 'c\\u0085', 'verdict': 'plateau', 'why': 'a\\u001bb'")
                EV("recycle", ", 'reason': 'soft\\u001b[1A'"));
    put("results.jsonl",
        "{'task': 1, 'status': 'ok', 'kind': 'k\\u001b[2J\\n[limits]\\nmemory_hard = 1G', "
        "'worker': 1, 'pid': 7, 'mem_before': 1048576, 'mem_after': 1114112, "
        "'mem_peak': 1572864}\n");
    s = report_ok("run");
    for (const char *c = s; *c; c++)
        ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f
                          ? !((unsigned char)c[0] == 0xc2 && (unsigned char)c[1] >= 0x80 &&
                              (unsigned char)c[1] <= 0x9f)
                          : *c == '\n',
                      "control byte 0x%02x at %zu in:\n%.2500s", (unsigned char)*c, (size_t)(c - s),
                      s);
    HASNT(s, "\n[limits]\nmemory_hard = 1G");
    HAS(s, "memvisor report: run r\\x1b]0;title\\x07\n");
    HAS(s, "  command    w\\x1b[31m\n");
    HAS(s, "  ended      2026-11-21\\x07T16:00:12Z\n");
    HAS(s, ", max_tasks 7, enforce ?");
    HAS(s, "  k\\x1b[2J\\x0a[limits]\\x0amemory_hard = 1G   64.0 KiB/task");
    HAS(s, "    confirmed  by heap\\x1b[0m\n");
    HAS(s, "               tracemalloc  w\\x07.py:1 grew");
    HAS(s, "               type         T\\x9b31m +1 (2 now)\n");
    HAS(s, "               mapping      /tmp/m\\x1b[2Jap grew 8.0 MiB\n");
    HAS(s, "  c\\x85        plateau, by ?: a\\x1bb\n");
    HAS(s, "  soft\\x1b[1A               1\n");
    HAS(s, "  k\\x1b[2J\\x0a[limits]\\x0amemory_hard = 1G: 1 task\n");
    HAS(s, "per task (k\\x1b[2J\\x0a[limits]\\x0amemory_hard = 1G), rounded down");
    free(s);
}
END_TEST

/* The escaping itself: text without controls is returned as is; a long one is cut at a
 * character's first byte, never inside a UTF-8 sequence, and says so. */
START_TEST(report_text_escapes_and_cuts)
{
    char buf[32], big[64];

    ck_assert_str_eq(mv__report_text("plain \xc3\xa9t\xc3\xa9", buf, sizeof buf),
                     "plain \xc3\xa9t\xc3\xa9");
    ck_assert_str_eq(mv__report_text("a\tb\x7f\xc2\x9b", buf, sizeof buf), "a\\x09b\\x7f\\x9b");
    ck_assert_str_eq(mv__report_text("\x1b", buf, 8), "?");
    memset(big, 0, sizeof big);
    for (int i = 0; i < 20; i++)
        memcpy(big + 2 * i, "\xc3\xa9", 2);
    big[0] = '\x1b';
    mv__report_text(big, buf, sizeof buf);
    ck_assert_msg(strlen(buf) < sizeof buf && strcmp(buf + strlen(buf) - 3, "...") == 0, "%s", buf);
    ck_assert_msg(((unsigned char)buf[strlen(buf) - 4] & 0xc0) == 0x80, "cut inside: %s", buf);
}
END_TEST

START_TEST(no_leak_and_no_results)
{
    char *s;
    int fd;

    put("run/run.json", "{'run': 'r1', 'results': '@/results.jsonl', 'ended': null}");
    put("run/events.jsonl", EV("recycle", ", 'reason': 'max_tasks'"));
    put("results.jsonl", results);
    fd = hold_run_lock("run"); /* a live run */
    s = report_ok("run");
    close(fd);
    HAS(s, "  No leak suspected\n");
    HAS(s, "  ended      (still running, or it ended without saying so)\n");
    /* run.json's counts are its start's until the run ends: the results say them */
    HAS(s, "  tasks      8 ok, 1 failed, 1 quarantined so far (its results)\n");
    HAS(s, "  limits     soft ?, hard ?, max_tasks ?, enforce ?, metric ?\n");
    HAS(s, "  max_tasks       0 (off)  no leak suspected, memory limits are enough\n");
    HAS(s, "max_tasks = 0\n");
    free(s);
    /* No results file at all: the per-task sections say so. */
    put("run/run.json", "{'run': 'r2', 'results': null, 'ended': '2026-11-21T16:00:00Z'}");
    put("run/events.jsonl", "");
    s = report_ok("run");
    HAS(s, "  results    none\n");
    HAS(s, "  no results file: no per-task figures\n");
    HAS(s, "  no task with memory figures: no suggestion\n");
    HAS(s, "summary counts them)\n  none\nRecycles decided (drains and kills begun)\n  none\n");
    free(s);
    /* An empty results file in a run: a partial report. */
    put("run/run.json", "{'run': 'r3', 'results': '@/empty.jsonl'}");
    put("empty.jsonl", "");
    s = report_ok("run");
    HAS(s, "  (all): 0 tasks\n    mem_peak    (none)\n");
    HAS(s, "  no task with memory figures: no suggestion\n");
    free(s);
}
END_TEST

START_TEST(bad_paths)
{
    report_fails("nothing-here", -ENOENT, "nothing-here: No such file or directory");
    put("plain/readme", "x");
    report_fails("plain", -ENOENT, "not a run directory (no run.json) nor a state directory");
    put("run/run.json", run_json);
    report_fails("run", -ENOENT, "run/events.jsonl: No such file or directory");
    put("empty.jsonl", "");
    report_fails("empty.jsonl", -ENODATA, "empty.jsonl: no result lines");
    put("blank.jsonl", "\n  \n");
    report_fails("blank.jsonl", -ENODATA, "no result lines");
}
END_TEST

START_TEST(bad_run_json)
{
    put("run/events.jsonl", "");
    put("run/run.json", "{'run': 'x',\n 'pid': 4");
    report_fails("run", -EINVAL, "run/run.json:2:");
    put("run/run.json", "");
    report_fails("run", -EINVAL, "run/run.json:");
    put("run/run.json", "[1, 2]");
    report_fails("run", -EINVAL, "run.json: not a JSON object");
    put("run/run.json", "{'limits': {'memory_soft': '256M'}}");
    report_fails("run", -EINVAL, "run.json: limits.memory_soft: expected an integer");
    put("run/run.json", "{'limits': {'memory_hard': -1}}");
    report_fails("run", -EINVAL, "run.json: limits.memory_hard: out of range");
    put("run/run.json", "{'tasks': {'ok': 1.5}}");
    report_fails("run", -EINVAL, "run.json: tasks.ok: expected an integer");
    put("run/run.json", "{'command': 'python3 x.py'}");
    report_fails("run", -EINVAL, "run.json: command: expected an array of strings");
    put("run/run.json", "{'command': ['a', 1]}");
    report_fails("run", -EINVAL, "run.json: command: expected strings");
    put("run/run.json", "{'results': 7}");
    report_fails("run", -EINVAL, "run.json: results: expected a string");
    put("run/run.json", "{'limits': [1]}");
    report_fails("run", -EINVAL, "run.json: limits: expected an object");
    put("run/run.json", "{'limits': {'enforce': 'yes'}}");
    report_fails("run", -EINVAL, "run.json: limits.enforce: expected true or false");
    put("run/run.json", "{'exit': 99999999999999999999999}");
    report_fails("run", -EINVAL, "run.json:1:");
}
END_TEST

START_TEST(bad_events)
{
    put("run/run.json", "{'run': 'x', 'results': null, 'ended': '2026-11-21T16:00:00Z'}");
    put("run/events.jsonl", EV("start", "") EV("recycle", "") "{'event': 'recyc\n");
    report_fails("run", -EINVAL, "run/events.jsonl:3: invalid JSON");
    put("run/events.jsonl", EV("start", "") "[1]\n");
    report_fails("run", -EINVAL, "events.jsonl:2: not a JSON object");
    put("run/events.jsonl", EV("start", "") EV("recycle", ", 'reason': 5"));
    report_fails("run", -EINVAL, "events.jsonl:2: reason: expected a string");
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': 'a', 'per_task': 'big'"));
    report_fails("run", -EINVAL, "events.jsonl:1: per_task: expected a number");
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': 'a', 'confidence': 7"));
    report_fails("run", -EINVAL, "events.jsonl:1: confidence: out of range");
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': 'a', 'per_task': 1e300"));
    report_fails("run", -EINVAL, "events.jsonl:1: per_task: out of range");
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': ['a']"));
    report_fails("run", -EINVAL, "events.jsonl:1: kind: expected a string");
    put("run/events.jsonl", "{'event': 'x', 'bytes': '\\u0000'}\n");
    report_fails("run", -EINVAL, "events.jsonl:1: invalid JSON");
    /* A finished run's last line without a newline is corrupt too. */
    put("run/events.jsonl", EV("start", "") "{'event': 'rec");
    report_fails("run", -EINVAL, "events.jsonl:2: invalid JSON");
}
END_TEST

START_TEST(bad_results)
{
    put("r.jsonl", "{'task': 1, 'mem_peak': 1}\n{'task': 2, 'mem_peak': 'lots'}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:2: mem_peak: expected an integer");
    put("r.jsonl", "{'task': 1, 'mem_before': 100000000000000000000}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: invalid JSON");
    put("r.jsonl", "\n{'task': 1, 'mem_after': 9223372036854775807}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:2: mem_after: out of range");
    put("r.jsonl", "{'task': 1, 'mem_before': -4}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: mem_before: out of range");
    put("r.jsonl", "{'task': 1, 'duration_ms': 'slow'}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: duration_ms: expected a number");
    put("r.jsonl", "{'task': 1, 'kind': 3}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: kind: expected a string");
    put("r.jsonl", "{'task': 1, 'kind_base64': 3}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: kind_base64: expected a string");
    /* Times and the generation (result lines without them are fine: results_file_alone). */
    put("r.jsonl", "{'task': 1, 'started': '2026-11-21T16:00:00.000001Z', 'ended': 5}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: ended: expected a string");
    put("r.jsonl", "{'task': 1, 'started': 1795276800}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: started: expected a string");
    put("r.jsonl", "{'task': 1, 'gen': 0}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: gen: out of range");
    put("r.jsonl", "{'task': 1, 'gen': 'two'}\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: gen: expected an integer");
    put("r.jsonl", "{'task': 1}\n{'task': 2}\n{'task': 3, 'stat");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:3: invalid JSON");
    put("r.jsonl", "\"just a string\"\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: invalid JSON");
    put("r.jsonl", "{'task': 1}\n[{'task': 2}]\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:2: not a JSON object");
    put("r.jsonl", "\x01\xff\xfe garbage\n");
    report_fails("r.jsonl", -EINVAL, "r.jsonl:1: invalid JSON");
}
END_TEST

/* Results read from a pipe or FIFO as the run went (memvisor.Pool): the FIFO is never opened
 * (that would wait for a writer); the copy in the run directory is read when there is one. */
START_TEST(results_through_a_fifo)
{
    char fifo[128];
    char *s;

    snprintf(fifo, sizeof fifo, "%s/results.fifo", tmp);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    put("run/run.json", "{'run': 'r1', 'results': '@/results.fifo', 'ended': null}");
    put("run/events.jsonl", "");
    s = report_ok("run");
    HAS(s, "results.fifo (a pipe or FIFO, read as the run went; no copy kept)\n");
    HAS(s, "  no results file: no per-task figures\n");
    free(s);
    put("run/results.jsonl", results);
    s = report_ok("run");
    HAS(s, "/run/results.jsonl (10 lines)\n");
    HAS(s, "  parse: 6 tasks, 1 without memory figures\n");
    free(s);
    /* Gone (the reader's temporary directory was removed): the copy still serves. */
    ck_assert_int_eq(unlink(fifo), 0);
    s = report_ok("run");
    HAS(s, "/run/results.jsonl (10 lines)\n");
    free(s);
}
END_TEST

/* The run's results file moved or removed since: the report still says what the events say
 * (counts, suspects) and names the file as gone, rather than failing whole. A results file
 * named alone that is missing is still an error (bad_paths). */
START_TEST(a_results_file_gone_since_the_run)
{
    char *s;

    put("run/run.json", "{'run': 'r1', 'results': '@/gone.jsonl', 'ended': null}");
    put("run/events.jsonl", events);
    s = report_ok("run");
    HAS(s, "/gone.jsonl (not found: moved or removed since the run; what follows is from its "
           "events)\n");
    HAS(s, "  the results file is gone: no per-task figures\n");
    HAS(s, "parse");
    free(s);
}
END_TEST

START_TEST(partial_figures)
{
    char *s;

    /* Missing fields are unknown: a task without memory figures counts, but not in the
     * distributions; a kind that was not UTF-8 keeps its base64; no pid, no baseline. */
    put("r.jsonl", "{'task': 1, 'status': 'ok', 'kind_base64': '/w==', 'mem_before': 1048576, "
                   "'mem_after': 2097152, 'mem_peak': 3145728}\n"
                   "{'task': 2}\n{'task': 3, 'status': 'failed', 'mem_before': 1}\n");
    s = report_ok("r.jsonl");
    HAS(s, "  tasks      1 ok, 1 failed, 0 quarantined\n");
    HAS(s, "  (all): 3 tasks, 2 without memory figures\n");
    HAS(s, "  base64:/w==: 1 task\n    mem_peak    p50     3.0 MiB");
    HAS(s, "    retained    p50     1.0 MiB");
    HAS(s, "    duration    (none)\n");
    HAS(s, "  (no kind): 2 tasks, 2 without memory figures\n");
    free(s);
}
END_TEST

START_TEST(snapshot_problems_cost_only_evidence)
{
    char *s;

    rich_run();
    put("run/snapshots/0001-leak_suspect-parse-w2.json", "{'heap': ");
    s = report_ok("run");
    HAS(s, "    snapshot   ");
    HAS(s, "               unreadable: ");
    HAS(s, "Suggested limits");
    free(s);
    put("run/snapshots/0001-leak_suspect-parse-w2.json",
        "{'heap': null, 'heap_status': 'timeout', 'mappings_growth': 'no'}");
    s = report_ok("run");
    HAS(s, "               heap         no view from the worker (timeout)\n");
    HASNT(s, "tracemalloc  ");
    free(s);
    /* Gone: removed for [leak] snapshots_max by the run that wrote it. */
    unlink(put("run/snapshots/0001-leak_suspect-parse-w2.json", ""));
    s = report_ok("run");
    HAS(s, "    snapshot   ");
    HAS(s, "               removed: a run keeps its newest [leak] snapshots_max\n");
    HAS(s, "Suggested limits");
    free(s);
}
END_TEST

START_TEST(c_worker_heap_and_many_kinds)
{
    char line[160], *s;
    FILE *f;

    /* A relative snapshot path is under the run directory; a C worker's heap view is its
     * allocator's figures. */
    put("run/run.json", "{'run': 'c', 'results': '@/r.jsonl', 'ended': '2026-11-21T16:00:00Z'}");
    put("run/events.jsonl", EV("leak_suspect", ", 'kind': 'k7', 'per_task': 65536, "
                                               "'snapshot': 'snapshots/s.json'"));
    put("run/snapshots/s.json",
        "{'heap': {'allocator': 'glibc', 'uordblks': 2499488, 'fordblks': 68704},"
        " 'heap_status': 'worker', 'mappings_growth': [{'mapping': '[heap]', 'growth': 2359296}]}");
    put("r.jsonl", "");
    snprintf(line, sizeof line, "%s/r.jsonl", tmp);
    ck_assert_ptr_nonnull(f = fopen(line, "w"));
    for (int i = 0; i < 25; i++)
        fprintf(f,
                "{\"task\": %d, \"kind\": \"k%d\", \"worker\": 1, \"pid\": 9, "
                "\"mem_before\": %d, \"mem_after\": %d, \"mem_peak\": 4194304}\n",
                i + 1, i, 1048576 + i * 65536, 1048576 + (i + 1) * 65536);
    fclose(f);
    s = report_ok("run");
    HAS(s, "  k7             64.0 KiB/task  confidence 0.00  rule ?  1 event\n"
           "    evidence   retained mean 64.0 KiB, p50 64.0 KiB over 1 task of this kind\n");
    HAS(s, "run/snapshots/s.json\n               mapping      [heap] grew 2.2 MiB\n"
           "               heap         glibc allocator: 2.4 MiB in use, 67.1 KiB free\n");
    /* The suspect kind first, then 19 more; the other 5 are counted, not listed. */
    HAS(s, "  (all): 25 tasks\n");
    HAS(s, "  k7: 1 task\n");
    HAS(s, "  (5 more kinds not shown)\n");
    /* hard 5 MiB minus the 3 MiB transient is below p95 mem_after x 1.1 (2.75 MiB, rounded up
     * to 3): soft is raised to 3 MiB, and hard grows to 3 + 3 MiB. One worker: its first task
     * is the baseline (1 MiB); (3 - 1) MiB / 64 KiB = 32. */
    HAS(s, "  memory_hard     6.0 MiB  must grow: soft 3.0 MiB + largest single-task transient "
           "3.0 MiB, so a worker just under soft can still run its biggest task (now ?)\n");
    HAS(s, "  memory_soft     3.0 MiB  p95 mem_after x 1.1, rounded up to a MiB: hard minus the "
           "largest transient 3.0 MiB would recycle workers after most tasks (now ?)\n");
    HAS(s, "[limits]\nmemory_soft = 3M\nmemory_hard = 6M\nmax_tasks = 32\n");
    free(s);
}
END_TEST

START_TEST(running_run_tolerates_a_partial_last_line)
{
    char *s;

    int fd;

    put("run/run.json", "{'run': 'live', 'results': '@/results.jsonl', 'ended': null}");
    put("run/events.jsonl", EV("recycle", ", 'reason': 'soft_limit'") "{'event': 'rec");
    put("results.jsonl", "{'task': 1, 'mem_before': 1, 'mem_after': 2, 'mem_peak': 3}\n{'ta");
    fd = hold_run_lock("run");
    s = report_ok("run");
    close(fd);
    HAS(s, "  events     1 lines (an incomplete last line, still being written, skipped)\n");
    HAS(s, ".jsonl (1 lines, an incomplete last line skipped)\n");
    HAS(s, "  soft_limit                1\n");
    free(s);
    /* the same files, with no memvisor holding the lock: it died mid-write */
    s = report_ok("run");
    HAS(s, "  events     1 lines (an incomplete last line, cut when memvisor died, skipped)\n");
    HAS(s, "  ended      never: memvisor died (killed or crashed) before it could say so; no run "
           "holds its directory's lock\n");
    HAS(s, "  tasks      0 ok, 0 failed, 0 quarantined in its results (it died before it counted "
           "them)\n");
    free(s);
    /* A bad line that ends in a newline is corrupt even while running. */
    put("run/events.jsonl", "{'event': 'rec\n" EV("recycle", ""));
    report_fails("run", -EINVAL, "events.jsonl:1: invalid JSON");
}
END_TEST

/* A batch resumed (--resume) on one results file: each run's report covers the batch up to its
 * own end. A run that ended counts no line that ended after it; a run that died (no end, its
 * lock free) none that ended after the next run on that file began. The resumed run counts
 * the whole batch, earlier lines included. */
#define RLINE(n, ended)                                                                     \
    "{'task': " #n ", 'status': 'ok', 'kind': 'k', 'worker': 1, 'pid': 7, 'ended': '" ended \
    "', 'mem_before': 1048576, 'mem_after': 1048576, 'mem_peak': 2097152}\n"
START_TEST(a_resumed_batch_counts_each_run_up_to_its_end)
{
    static const char batch[] = RLINE(1, "2026-12-01T10:00:01.000000Z")
        RLINE(2, "2026-12-01T10:00:02.5Z") RLINE(3, "2026-12-01T10:00:03Z")
            RLINE(4, "2026-12-01T10:05:01.000001Z") RLINE(5, "2026-12-01T10:05:02.000000Z");
    char *s;

    put("results.jsonl", batch);
    put("state/20261201T100000Z-1/run.json",
        "{'run': 'a', 'started': '2026-12-01T10:00:00.000000Z', 'ended': null, "
        "'results': '@/results.jsonl'}");
    put("state/20261201T100000Z-1/events.jsonl", "");
    /* another batch's run in the same state directory: not this one's successor */
    put("state/20261201T100100Z-2/run.json",
        "{'run': 'x', 'started': '2026-12-01T10:01:00.000000Z', 'results': '@/other.jsonl'}");
    put("state/20261201T100500Z-3/run.json",
        "{'run': 'b', 'started': '2026-12-01T10:05:00.000000Z', 'ended': "
        "'2026-12-01T10:05:03.000000Z', 'results': '@/results.jsonl', "
        "'tasks': {'ok': 5, 'failed': 0, 'quarantined': 0}}");
    put("state/20261201T100500Z-3/events.jsonl", "");
    s = report_ok("state/20261201T100000Z-1");
    HAS(s, "  tasks      3 ok, 0 failed, 0 quarantined in its results (it died before it counted "
           "them)\n");
    HAS(s, "(5 lines)\n             2 of them ended after this run did: a later run's "
           "(--resume), not counted here\n");
    HAS(s, "  (all): 3 tasks\n");
    free(s);
    /* the resumed run: the whole batch */
    s = report_ok("state/20261201T100500Z-3");
    HAS(s, "  tasks      5 ok, 0 failed, 0 quarantined\n");
    HAS(s, "  (all): 5 tasks\n");
    HASNT(s, "not counted here");
    HASNT(s, "  results    none\n");
    free(s);
    /* a first run that ended (stopped, then resumed): its end bounds it */
    put("state/20261201T100000Z-1/run.json",
        "{'run': 'a', 'started': '2026-12-01T10:00:00.000000Z', 'ended': "
        "'2026-12-01T10:00:02.600000Z', 'results': '@/results.jsonl', "
        "'tasks': {'ok': 2, 'failed': 0, 'quarantined': 0}}");
    s = report_ok("state/20261201T100000Z-1");
    HAS(s, "  tasks      2 ok, 0 failed, 0 quarantined\n");
    HAS(s, "             3 of them ended after this run did");
    HAS(s, "  (all): 2 tasks\n");
    free(s);
}
END_TEST

/* A worker that needs more to start than any task's peak shows (an import-time spike): the
 * advice's hard limit is built on the workers' own peaks (exit events), or it would kill every
 * new worker before its first task (measured: 10 of 10 killed, the run gave up). */
START_TEST(advice_lets_a_worker_start)
{
    char *s;

    put("run/run.json",
        "{'run': 'r', 'results': '@/results.jsonl', 'ended': '2026-11-21T16:00:12Z'}");
    put("run/events.jsonl", EV("exit", ", 'worker': 1, 'reason': 'shutdown', 'peak': 91365376")
                                EV("exit", ", 'worker': 2, 'reason': 'shutdown', 'peak': 8000000"));
    put("results.jsonl",
        "{'task': 1, 'status': 'ok', 'worker': 1, 'pid': 7, 'mem_before': 7340032, "
        "'mem_after': 7340032, 'mem_peak': 7667712}\n");
    s = report_ok("run");
    HAS(s, "  memory_hard   109.0 MiB  largest worker peak 87.1 MiB x 1.25, rounded up to a MiB: "
           "above every task's (7.3 MiB), from its start-up (or between tasks), which a worker "
           "must get through (now ?)\n");
    HAS(s, "[limits]\nmemory_soft = 108M\nmemory_hard = 109M\n");
    free(s);
    /* a bad peak is an error naming it */
    put("run/events.jsonl", EV("exit", ", 'worker': 1, 'reason': 'shutdown', 'peak': 'big'"));
    report_fails("run", -EINVAL, "events.jsonl:1: peak: expected an integer");
}
END_TEST

/* Runs `memvisor report ARGS` (NULL-terminated, after "report"); returns the exit code. */
static int run_report(mvrun_t *r, const char *a1, const char *a2)
{
    const char *args[] = {"report", a1, a2, NULL};

    run_start(r, args, NULL);
    return run_finish(r);
}

START_TEST(binary_exit_codes)
{
    mvrun_t r;
    char dir[128];

    run_init(&r, NULL);
    put_in(r.dir, "run/run.json", run_json);
    put_in(r.dir, "run/events.jsonl", events);
    put_in(r.dir, "run/snapshots/0001-leak_suspect-parse-w2.json", snapshot);
    put_in(r.dir, "results.jsonl", results);
    snprintf(dir, sizeof dir, "%s/run", r.dir);
    ck_assert_int_eq(run_report(&r, dir, NULL), 0);
    HAS(run_summary(&r), "memvisor report: run 20261121T160000Z-4242\n");
    HAS(run_summary(&r), "[limits]\nmemory_soft = 4M\nmemory_hard = 10M\nmax_tasks = 38\n");
    ck_assert_int_eq(r.log_len, 0);
    run_free(&r);

    /* (without PATH: the state directory's latest run, tested in check_ops.c) */
    run_init(&r, NULL);
    ck_assert_int_eq(run_report(&r, "-c", NULL), 2);
    HAS(r.log, "memvisor: missing value after -c\nusage: memvisor report");
    run_free(&r);

    run_init(&r, NULL);
    ck_assert_int_eq(run_report(&r, "a", "b"), 2);
    run_free(&r);

    run_init(&r, NULL);
    ck_assert_int_eq(run_report(&r, "--json", NULL), 2);
    run_free(&r);

    run_init(&r, NULL);
    snprintf(dir, sizeof dir, "%s/missing", r.dir);
    ck_assert_int_eq(run_report(&r, dir, NULL), 3);
    HAS(r.log, "memvisor report: ");
    HAS(r.log, "/missing: No such file or directory\n");
    ck_assert_str_eq(run_summary(&r), "");
    run_free(&r);

    run_init(&r, NULL);
    put_in(r.dir, "bad.jsonl", "{'task': 1}\n{'task': \n");
    snprintf(dir, sizeof dir, "%s/bad.jsonl", r.dir);
    ck_assert_int_eq(run_report(&r, dir, NULL), 3);
    HAS(r.log, "bad.jsonl:2: invalid JSON");
    run_free(&r);

    /* the error names the file: a name with an escape sequence is written escaped */
    run_init(&r, NULL);
    put_in(r.dir, "b\033[2Jad.jsonl", "{'task': \n");
    snprintf(dir, sizeof dir, "%s/b\033[2Jad.jsonl", r.dir);
    ck_assert_int_eq(run_report(&r, dir, NULL), 3);
    HAS(r.log, "/b\\x1b[2Jad.jsonl:1: invalid JSON");
    HASNT(r.log, "\033");
    run_free(&r);
}
END_TEST

Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc;

    tc = tcase_create("pure");
    tcase_add_test(tc, percentile_nearest_rank);
    tcase_add_test(tc, sizes_for_people);
    tcase_add_test(tc, advice_rules);
    tcase_add_test(tc, report_text_escapes_and_cuts);
    suite_add_tcase(s, tc);

    tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, rich_header_and_suspects);
    tcase_add_test(tc, unconfirmed_and_cleared_suspects);
    tcase_add_test(tc, a_confirmation_without_its_worker_counts_no_worker);
    tcase_add_test(tc, rich_recycles_and_exits);
    tcase_add_test(tc, kernel_oom_kills_of_children_are_counted);
    tcase_add_test(tc, recycles_count_as_the_summary_does);
    tcase_add_test(tc, rotated_events_are_counted_and_a_cut_is_said);
    tcase_add_test(tc, rich_distributions);
    tcase_add_test(tc, rich_advice);
    tcase_add_test(tc, state_dir_follows_latest);
    tcase_add_test(tc, results_file_alone);
    tcase_add_test(tc, a_result_with_a_nul_byte_reads);
    tcase_add_test(tc, no_leak_and_no_results);
    tcase_add_test(tc, results_through_a_fifo);
    tcase_add_test(tc, a_results_file_gone_since_the_run);
    tcase_add_test(tc, partial_figures);
    tcase_add_test(tc, snapshot_problems_cost_only_evidence);
    tcase_add_test(tc, c_worker_heap_and_many_kinds);
    tcase_add_test(tc, running_run_tolerates_a_partial_last_line);
    tcase_add_test(tc, control_characters_never_reach_the_terminal);
    tcase_add_test(tc, a_resumed_batch_counts_each_run_up_to_its_end);
    tcase_add_test(tc, advice_lets_a_worker_start);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bad_paths);
    tcase_add_test(tc, bad_run_json);
    tcase_add_test(tc, bad_events);
    tcase_add_test(tc, bad_results);
    suite_add_tcase(s, tc);

    tc = tcase_create("binary");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, binary_exit_codes);
    suite_add_tcase(s, tc);
    return s;
}
