/*
 * Leak suspects end to end: the example workers (kinds, churn, Python) under the real
 * memvisor binary; the suspect named within the window, no suspect for churn or a bounded
 * cache, snapshots taken before a kill, observe-only mode, hostile payloads, and
 * `memvisor report` over a real run.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define KINDS MV_BUILD_DIR "/examples/kinds_worker"
#define CHURN MV_BUILD_DIR "/examples/churn_worker"
#define MiB   (1024LL * 1024)

/* Every snapshot of the run (under the harness's state dir), checked for the documented
 * fields; returns how many there were. `reason` NULL = any. */
static int check_snapshots(const mvrun_t *r, const char *reason, json_t **first)
{
    char dir[256];
    struct dirent *de;
    DIR *d;
    int n = 0;

    snprintf(dir, sizeof dir, "%s/state/latest/snapshots", r->dir);
    d = opendir(dir);
    ck_assert_msg(d != NULL, "no snapshots directory %s", dir);
    while ((de = readdir(d))) {
        char path[600];
        json_error_t e;
        json_t *j;
        if (!strstr(de->d_name, ".json") || strstr(de->d_name, ".new"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        j = json_load_file(path, 0, &e);
        ck_assert_msg(j != NULL, "%s is not JSON: %s", path, e.text);
        if (reason && strcmp(jstr(j, "reason"), reason) != 0) {
            json_decref(j);
            continue;
        }
        static const char *const keys[] = {
            "memvisor",   "written",     "reason", "suspect",      "worker",          "task",
            "history",    "memory_stat", "status", "smaps_rollup", "mappings_growth", "heap",
            "heap_status"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            ck_assert_msg(json_object_get(j, keys[k]) != NULL, "%s has no %s", path, keys[k]);
        ck_assert(json_is_object(json_object_get(j, "worker")));
        n++;
        if (first && !*first)
            *first = j;
        else
            json_decref(j);
    }
    closedir(d);
    return n;
}

START_TEST(the_leaking_kind_is_named_within_the_window)
{
    mvrun_t r;
    char *tasks = read_text(SOURCE_DIR "/examples/kinds.tasks");
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", KINDS, NULL};
    json_t *snap = NULL, *heap;
    char *line;
    long task;

    run_init(&r, tasks);
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=leak_suspect");
    ck_assert_msg(strstr(line, "kind=load") != NULL, "wrong kind: %s", line);
    ck_assert_msg(strstr(line, "confirmed=false") != NULL, "not queued first: %s", line);
    ck_assert_msg(strstr(line, "evidence=heap") != NULL, "no heap figures: %s", line);
    task = atol(strstr(line, " task=") + 6);
    free(line);
    /* "load" is every third line: the suspect came within the window (50) of its tasks,
     * plus those left out as each worker's warm-up (10 tasks each, a third of them load). */
    ck_assert_int_le(task / 3, 50 + 2 * 10 / 3 + 1);
    /* Then confirmed by running "load" alone on a fresh worker: its warm-up (10) and the
     * window (50), or up to three windows while its growth slows down. */
    line = run_wait_for(&r, "event=leak_suspect");
    ck_assert_msg(strstr(line, "kind=load") && strstr(line, "confirmed=true") &&
                      strstr(line, "evidence=heap,isolation"),
                  "not confirmed by its isolation: %s", line);
    task = atol(strstr(line, " task=") + 6);
    free(line);
    ck_assert_int_le(task / 3, 50 + 2 * 10 / 3 + 1 + 10 + 3 * 50 + 2);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_int_eq(run_count(&r, "event=leak_suspect"), 2);
    ck_assert_int_eq(run_count(&r, "step=verdict"), 1);
    ck_assert_int_eq(run_count(&r, "kind=render"), 0);
    ck_assert_int_eq(run_count(&r, "kind=tally"), 0);
    /* The suspect's snapshot, and its confirmation's (the worker that ran it alone). */
    ck_assert_int_eq(check_snapshots(&r, "leak_suspect", &snap), 2);
    ck_assert_str_eq(jstr(json_object_get(snap, "suspect"), "kind"), "load");
    ck_assert_str_eq(jstr(snap, "heap_status"), "worker");
    heap = json_object_get(snap, "heap"); /* the worker's own snapshot callback */
    ck_assert_int_gt(jint(heap, "cache_blocks"), 0);
    ck_assert_str_eq(jstr(json_array_get(json_object_get(snap, "mappings_growth"), 0), "mapping"),
                     "[heap]");
    ck_assert_str_eq(jstr(run_result(&r, 3), "kind"), "load");
    json_decref(snap);
    /* The summary names it, with what it keeps a task and its evidence, and where to look. */
    line = run_summary(&r);
    ck_assert_msg(strstr(line, "\n  leaks     1 kind confirmed: load ") &&
                      strstr(line, " a task (heap,isolation)\n") &&
                      strstr(line, "their evidence and snapshots: memvisor report /"),
                  "%s", line);
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(churn_is_not_a_leak)
{
    mvrun_t r;
    char *tasks = read_text(SOURCE_DIR "/examples/churn.tasks");
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", CHURN, NULL};

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 400, NULL);
    ck_assert_int_eq(run_count(&r, "event=leak_suspect"), 0);
    ck_assert_ptr_nonnull(strstr(run_summary(&r), "\n  leaks     none confirmed\n"));
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(a_handle_leak_is_named)
{
    mvrun_t r;
    char *tasks = repeat_line("kind files fds 1", 80);
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    ck_assert_int_eq(run_count(&r, "rule=fd_trend"), 1);
    ck_assert_ptr_nonnull(strstr(r.log, "kind=files"));
    ck_assert_msg(strstr(run_summary(&r), "leaks     1 kind confirmed: files 1.0 fds a task ("),
                  "%s", run_summary(&r));
    free(tasks);
    run_free(&r);
}
END_TEST

START_TEST(observe_only_recycles_nothing)
{
    mvrun_t r;
    char *tasks = repeat_line("alloc 1", 60);
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.enforce=no", "limits.memory_soft=8M",
                          "limits.memory_hard=16M", "limits.max_tasks=10"),
                 RUN_CMD(MVTEST));

    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 60, NULL);
    ck_assert_int_eq(run_count(&r, "event=recycle "), 0);
    ck_assert_int_eq(run_count(&r, "event=spawn "), 1);
    ck_assert_int_eq(run_count(&r, "event=kernel_oom"), 0);
    /* Each reason said once for the worker, however many times it applied. */
    ck_assert_int_eq(run_count(&r, "event=would_recycle"), 3);
    ck_assert_int_eq(run_count(&r, "reason=max_tasks"), 1);
    ck_assert_int_eq(run_count(&r, "reason=soft_limit"), 1);
    ck_assert_int_eq(run_count(&r, "reason=hard_limit"), 1);
    /* It really grew past the "hard limit": nothing stopped it. */
    ck_assert_int_gt(jint(run_result(&r, 60), "mem_after"), 50 * MiB);
    free(tasks);
    run_free(&r);
    /* Leak detection off: the summary says nothing of leaks (it did not look). */
    tasks = repeat_line("alloc 1", 20);
    ck_assert_int_eq(run_batch(&r, tasks,
                               (const char *[]){"run", "-o", "supervisor.workers=1", "-o",
                                                "leak.detect=no", "--", MVTEST, NULL}),
                     0);
    ck_assert_ptr_null(strstr(run_summary(&r), "  leaks "));
    free(tasks);
    run_free(&r);
}
END_TEST

/* One worker without a cgroup, killed by memvisor at 24 MiB, no task retried. */
#define HARD_24M                                                              \
    "run", "-o", "supervisor.workers=1", "-o", "supervisor.cgroup=off", "-o", \
        "limits.memory_soft=0", "-o", "limits.memory_hard=24M", "-o",         \
        "limits.sample_interval=5ms", "-o", "tasks.max_attempts=1"

START_TEST(a_hard_limit_kill_leaves_a_snapshot_taken_before)
{
    mvrun_t r;
    const char *args[] = {HARD_24M, "--", MVTEST, NULL};
    json_t *snap = NULL, *status;

    ck_assert_int_eq(run_batch(&r, "ok\ngrow 200 2\n", args), 1);
    ck_assert_int_ge(check_snapshots(&r, "hard_limit", &snap), 1);
    /* Read while the worker was alive (stopped), at or over the limit. */
    status = json_object_get(snap, "status");
    ck_assert(json_is_object(status));
    ck_assert_int_ge(jint(status, "RssAnon"), 20 * MiB);
    ck_assert_int_eq(run_count(&r, "reason=hard_limit action=kill"), 1);
    json_decref(snap);
    run_free(&r);
}
END_TEST

/* [leak] snapshots_max: three hard-limit kills, a snapshot before each (and one near the
 * limit when a sample saw it coming); the run keeps the newest two. */
START_TEST(a_run_keeps_its_newest_snapshots)
{
    mvrun_t r;
    const char *args[] = {HARD_24M, "-o", "leak.snapshots_max=2", "--", MVTEST, NULL};
    char dir[512];
    struct dirent *de;
    int n;
    DIR *d;

    ck_assert_int_eq(run_batch(&r, "grow 200 2\ngrow 200 2\ngrow 200 2\n", args), 1);
    ck_assert_int_eq(run_count(&r, "reason=hard_limit action=kill"), 3);
    n = run_count(&r, "event=snapshot ");
    ck_assert_int_ge(n, 3);
    /* One at a time (one worker): each past the second removed exactly one. */
    ck_assert_int_eq(run_count(&r, "event=snapshots_trimmed removed=1 keep=2"), n - 2);
    ck_assert_int_eq(run_count(&r, "event=snapshots_trimmed"), n - 2);
    ck_assert_int_eq(check_snapshots(&r, NULL, NULL), 2);
    snprintf(dir, sizeof dir, "%s/state/latest/snapshots", r.dir);
    ck_assert((d = opendir(dir)) != NULL);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            ck_assert_msg(atoi(de->d_name) == n || atoi(de->d_name) == n - 1,
                          "%s is not one of the newest two of %d", de->d_name, n);
    closedir(d);
    run_free(&r);
}
END_TEST

START_TEST(near_the_kernel_limit_a_snapshot_comes_first)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.memory_soft=0", "limits.memory_hard=32M",
                          "limits.sample_interval=5ms", "tasks.max_attempts=1"),
                 RUN_CMD(MVTEST));
    json_t *snap = NULL;
    char *line;

    if (access("/sys/fs/cgroup/memory", W_OK) != 0)
        return; /* the kernel limit needs a cgroup */
    ck_assert_int_eq(run_batch(&r, "grow 200 3\n", args), 1);
    ck_assert_int_ge(check_snapshots(&r, "near_hard_limit", &snap), 1);
    json_decref(snap);
    r.log_off = 0;
    line = run_wait_for(&r, "event=kernel_oom");
    ck_assert_msg(strstr(line, "near_hard_limit") != NULL, "kernel_oom names no snapshot: %s",
                  line);
    free(line);
    run_free(&r);
}
END_TEST

START_TEST(hostile_payloads_keep_every_file_json)
{
    mvrun_t r;
    size_t big = 1 << 20;
    char *tasks = malloc(big + 4096), *p = tasks;
    mvargs_t av;
    const char *const *args =
        run_argv(&av, RUN_OPTS("supervisor.workers=1", "leak.window=10", "leak.min_slope=1K"),
                 RUN_CMD(MVTEST));
    json_t *snap = NULL;

    /* A leaking kind whose payloads are not UTF-8, then a 1 MiB line of text. */
    for (int i = 0; i < 30; i++)
        p += sprintf(p, "kind bad\xff\xfe alloc 1 \xc3\x28 %d\n", i);
    p += sprintf(p, "echo ");
    for (size_t i = 0; i < big; i++)
        *p++ = (char)('a' + i % 26);
    *p++ = '\n';
    *p = '\0';
    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, 31, NULL);
    ck_assert_uint_eq(strlen(jstr(run_result(&r, 31), "result")), big + 5);
    ck_assert_int_ge(check_snapshots(&r, "leak_suspect", &snap), 1);
    ck_assert_ptr_nonnull(jstr(json_object_get(snap, "task"), "payload_base64"));
    json_decref(snap);
    free(tasks);
    run_free(&r);
}
END_TEST

/* ---- Python workers (worker-api/python, examples/python) ---- */

#define PYEX(name) SOURCE_DIR "/examples/python/" name

/* Runs a Python example over its tasks file with tracemalloc on; the log is in r. */
static void run_python(mvrun_t *r, const char *name)
{
    char script[256], tasks_path[256];
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", "python3", script, NULL};
    char *tasks;

    snprintf(script, sizeof script, PYEX("%s.py"), name);
    snprintf(tasks_path, sizeof tasks_path, PYEX("%s.tasks"), name);
    tasks = read_text(tasks_path);
    ck_assert_ptr_nonnull(tasks);
    setenv("MEMVISOR_TRACEMALLOC", "1", 1);
    ck_assert_int_eq(run_batch(r, tasks, args), 0);
    unsetenv("MEMVISOR_TRACEMALLOC");
    free(tasks);
}

/* The line of `needle` in a file, 1-based; 0 if absent. */
static int line_of(const char *path, const char *needle)
{
    char *text = read_text(path), *p;
    int line = 1;

    ck_assert_ptr_nonnull(text);
    p = strstr(text, needle);
    for (char *c = text; p && c < p; c++)
        line += *c == '\n';
    free(text);
    return p ? line : 0;
}

START_TEST(python_mixed_names_the_kind_the_line_and_the_type)
{
    mvrun_t r;
    json_t *snap = NULL, *heap, *top;
    char where[64], report[512];
    char *tasks = read_text(PYEX("mixed.tasks")), *p = tasks;
    int line = line_of(PYEX("mixed.py"), "_SEEN.append("), parse_before = 0;
    long task;

    run_python(&r, "mixed");
    ck_assert_int_eq(run_count(&r, "confirmed=true"), 1);
    ck_assert_ptr_nonnull(strstr(r.log, "event=leak_suspect kind=parse"));
    /* Within the window (50): the parse tasks before the suspect are at most the window,
     * the second judgement that confirms it, each worker generation's warm-up (10 tasks of
     * any kind) and the task in flight on the other worker. */
    task = atol(strstr(strstr(r.log, "event=leak_suspect"), " task=") + 6);
    for (long id = 1; id < task && p; id++, p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        parse_before += strncmp(p, "parse", 5) == 0;
    ck_assert_int_le(parse_before, 50 + 1 + run_count(&r, "event=spawn ") * 10 + 1);
    ck_assert_int_eq(check_snapshots(&r, "leak_suspect", &snap), 2);
    heap = json_object_get(snap, "heap");
    ck_assert_str_eq(jstr(snap, "heap_status"), "worker");
    ck_assert_str_eq(jstr(heap, "runtime"), "python");
    top = json_array_get(json_object_get(json_object_get(heap, "tracemalloc"), "top"), 0);
    snprintf(where, sizeof where, "mixed.py:%d", line);
    ck_assert_msg(strstr(jstr(top, "where"), where) != NULL, "top site %s, want %s",
                  jstr(top, "where"), where);
    ck_assert_str_eq(jstr(json_array_get(json_object_get(heap, "types"), 0), "type"),
                     "ParsedRecord");
    json_decref(snap);

    /* memvisor report on this real run: the suspect, its evidence, and advice. */
    snprintf(report, sizeof report, "%s/state", r.dir);
    {
        mvrun_t rep;
        run_init(&rep, NULL);
        run_start(&rep, (const char *[]){"report", report, NULL}, NULL);
        ck_assert_int_eq(run_finish(&rep), 0);
        char *out = run_summary(&rep);
        ck_assert_ptr_nonnull(strstr(out, "parse"));
        ck_assert_ptr_nonnull(strstr(out, where));
        ck_assert_ptr_nonnull(strstr(out, "ParsedRecord"));
        ck_assert_ptr_nonnull(strstr(out, "memory_hard"));
        ck_assert_ptr_nonnull(strstr(out, "max_tasks"));
        run_free(&rep);
    }
    free(tasks);
    run_free(&r);
}
END_TEST

/* Runs a Python example: one suspect whose log line holds `needle`, or none (NULL). */
static void expect_suspect(const char *example, const char *needle)
{
    mvrun_t r;

    run_python(&r, example);
    ck_assert_int_eq(run_count(&r, "confirmed=true"), needle ? 1 : 0);
    if (needle)
        ck_assert_ptr_nonnull(strstr(r.log, needle));
    run_free(&r);
}

START_TEST(python_caches_that_never_forget_are_named)
{
    expect_suspect("unbounded_cache", "event=leak_suspect kind=report");
    expect_suspect("lru_unbounded", "event=leak_suspect kind=thumb");
}
END_TEST

START_TEST(python_unclosed_files_are_a_handle_leak)
{
    expect_suspect("open_files", "rule=fd_trend");
}
END_TEST

START_TEST(python_bounded_cache_is_not_a_leak)
{
    expect_suspect("bounded_lru", NULL);
}
END_TEST

Suite *leak_e2e_suite(void)
{
    Suite *s = suite_create("leak_e2e");
    TCase *tc = tcase_create("examples");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, the_leaking_kind_is_named_within_the_window);
    tcase_add_test(tc, churn_is_not_a_leak);
    tcase_add_test(tc, a_handle_leak_is_named);
    tcase_add_test(tc, observe_only_recycles_nothing);
    tcase_add_test(tc, a_hard_limit_kill_leaves_a_snapshot_taken_before);
    tcase_add_test(tc, a_run_keeps_its_newest_snapshots);
    tcase_add_test(tc, near_the_kernel_limit_a_snapshot_comes_first);
    tcase_add_test(tc, hostile_payloads_keep_every_file_json);
    tcase_add_test(tc, python_mixed_names_the_kind_the_line_and_the_type);
    tcase_add_test(tc, python_caches_that_never_forget_are_named);
    tcase_add_test(tc, python_unclosed_files_are_a_handle_leak);
    tcase_add_test(tc, python_bounded_cache_is_not_a_leak);
    suite_add_tcase(s, tc);
    return s;
}
