/*
 * heapwire: the heap preload wired into memvisor ([leak] heap, docs/leaks.md): the plan made
 * once per configuration (dynamic or not, Python or not, library found or not), a worker's
 * per-task windows over its page or its own reports, the exec shim's LD_PRELOAD, and real
 * runs whose results carry heap figures -- or none, when the preload is off or cannot reach
 * the command.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "heapmon.h"
#include "proc.h"
#include "suites.h"

#define STATIC_TRUE MV_BUILD_DIR "/helpers/static_true"
#define MiB         (1024LL * 1024)

/* ---- the plan ---- */

START_TEST(plan_follows_the_mode_the_command_and_python)
{
    char *c_worker[] = {(char *)MVTEST, NULL};
    char *python[] = {"python3", "-u", "w.py", NULL};
    char *env_python[] = {"env", "A=1", "python3", "w.py", NULL};
    char *static_cmd[] = {(char *)STATIC_TRUE, NULL};
    char *missing[] = {"no-such-command-here", NULL};
    char script[256], cmd[512];
    char *script_cmd[] = {script, NULL};
    mv_heapplan_t p;
    mvrun_t r;
    FILE *f;

    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, c_worker, MEMVISOR, &p);
    ck_assert(p.preload);
    ck_assert(!p.python);
    ck_assert_ptr_nonnull(strstr(p.library, "libmemvisor-heap.so"));
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, python, MEMVISOR, &p);
    ck_assert(p.preload && p.python);
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, env_python, MEMVISOR, &p);
    ck_assert(p.preload && p.python);
    run_init(&r, NULL);
    snprintf(script, sizeof script, "%s",
             run_file(&r, "w.py", "#!/usr/bin/env python3\nprint('hi')\n"));
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, script_cmd, MEMVISOR, &p);
    ck_assert(p.preload && p.python); /* by the interpreter its #! line runs */
    /* A command built with a sanitizer: its runtime interposes malloc and must come first
     * (a preload would abort it at start). Compiled here when a compiler is at hand. */
    snprintf(cmd, sizeof cmd, "cc -fsanitize=address -x c - -o %s/asan_true 2>/dev/null", r.dir);
    snprintf(script, sizeof script, "%s/asan_true", r.dir);
    f = popen(cmd, "w");
    if (f && fputs("int main(void) { return 0; }\n", f) >= 0 && pclose(f) == 0) {
        mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, script_cmd, MEMVISOR, &p);
        ck_assert(!p.preload);
        ck_assert_ptr_nonnull(strstr(p.why, "sanitizer"));
    } else {
        fprintf(stderr, "check_heapwire: no cc -fsanitize=address here: sanitizer case skipped\n");
    }
    run_free(&r);
    /* python_malloc says otherwise */
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_NO, true, python, MEMVISOR, &p);
    ck_assert(p.preload && !p.python);
    mv_heapmon_plan(MV_HEAPMODE_PRELOAD, MV_HEAPPY_YES, true, c_worker, MEMVISOR, &p);
    ck_assert(p.preload && p.python);
    /* what keeps it off */
    mv_heapmon_plan(MV_HEAPMODE_OFF, MV_HEAPPY_AUTO, true, c_worker, MEMVISOR, &p);
    ck_assert(!p.preload);
    ck_assert_str_eq(p.why, "heap = off");
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, false, c_worker, MEMVISOR, &p);
    ck_assert(!p.preload); /* a service or protocol none: no batch tasks to attribute */
    ck_assert_str_eq(p.why, "no batch tasks to attribute (a service, or protocol none)");
    mv_heapmon_plan(MV_HEAPMODE_PRELOAD, MV_HEAPPY_AUTO, false, c_worker, MEMVISOR, &p);
    ck_assert(p.preload); /* asked for: the heap figures still show in snapshots */
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, static_cmd, MEMVISOR, &p);
    ck_assert(!p.preload);
    ck_assert_ptr_nonnull(strstr(p.why, "statically linked"));
    mv_heapmon_plan(MV_HEAPMODE_PRELOAD, MV_HEAPPY_AUTO, true, missing, MEMVISOR, &p);
    ck_assert(!p.preload);
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, c_worker, "/nonexistent/bin/memvisor",
                    &p);
    ck_assert(!p.preload);
    ck_assert_ptr_nonnull(strstr(p.why, "not found"));
    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, NULL, MEMVISOR, &p);
    ck_assert(!p.preload);
}
END_TEST

/* A dynamic ELF's first 4 KiB (its header and program headers: all the plan reads of it
 * but the sanitizer search) then zeros up to `size`, with `name` and its NUL at `at`. */
static void fake_elf(const char *path, off_t size, off_t at, const char *name)
{
    char head[4096];
    int in = open("/bin/true", O_RDONLY | O_CLOEXEC), out;

    ck_assert_int_ge(in, 0);
    ck_assert_int_eq(read(in, head, sizeof head), sizeof head);
    close(in);
    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    ck_assert_int_ge(out, 0);
    ck_assert_int_eq(write(out, head, sizeof head), sizeof head);
    ck_assert_int_eq(ftruncate(out, size), 0);
    ck_assert_int_eq(pwrite(out, name, strlen(name) + 1, at), (ssize_t)(strlen(name) + 1));
    close(out);
}

/* Whether the plan takes the ELF at path for a sanitizer's. */
static bool judged_sanitized(const char *path)
{
    char *cmd[] = {(char *)path, NULL};
    mv_heapplan_t p;

    mv_heapmon_plan(MV_HEAPMODE_AUTO, MV_HEAPPY_AUTO, true, cmd, MEMVISOR, &p);
    if (!p.preload)
        ck_assert_ptr_nonnull(strstr(p.why, "sanitizer"));
    return !p.preload;
}

/* The search for a sanitizer's init symbol reads the file's first 4 MiB a chunk at a time: a
 * name is found wherever it lies in them, across a chunk's end too, and only whole (its NUL
 * included), as when the 4 MiB were read at once. */
START_TEST(sanitizer_names_are_found_anywhere_in_the_first_4_mib)
{
    const off_t K64 = 64 << 10, M4 = 4 << 20;
    static const struct {
        off_t at;
        const char *name;
        bool found;
    } cases[] = {
        {0, "", false},                            /* the head alone */
        {(64 << 10) - 5, "__asan_init", true},     /* across the first chunk's end */
        {(128 << 10) - 13, "__hwasan_init", true}, /* its NUL alone in the next chunk */
        {(128 << 10) - 2, "__msan_init", true},    /* its tail alone in the next one */
        {(4 << 20) - 12, "__tsan_init", true},     /* its NUL the last byte searched */
        {(4 << 20) - 4, "__tsan_init", false},     /* past the 4 MiB */
        {100000, "__asan_initial", false},         /* a longer name */
        {100000, "x_hwasan_init", false},          /* not the prefix of any */
        {100000, "x__asan_init", true},            /* as memmem found it before */
    };
    mvrun_t r;
    char path[PATH_MAX];

    run_init(&r, NULL);
    snprintf(path, sizeof path, "%s/elf", r.dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_elf(path, M4 + K64, cases[i].at ? cases[i].at : 8192, cases[i].name);
        if (judged_sanitized(path) != cases[i].found)
            ck_abort_msg("case %zu (%s at %lld): found %d", i, cases[i].name,
                         (long long)cases[i].at, !cases[i].found);
    }
    run_free(&r);
}
END_TEST

/* ---- a worker's windows ---- */

/* Writes what the library would: the page's owner and counters (through the fd). */
static void page_set(const mv_heapwin_t *hw, int32_t pid, uint64_t gen, int64_t live,
                     uint64_t allocs, uint64_t frees)
{
    ck_assert_int_eq(pwrite(hw->hm.fd, &pid, sizeof pid, offsetof(mvh_page_t, pid)), sizeof pid);
    ck_assert_int_eq(pwrite(hw->hm.fd, &gen, sizeof gen, offsetof(mvh_page_t, generation)),
                     sizeof gen);
    ck_assert_int_eq(pwrite(hw->hm.fd, &live, sizeof live, offsetof(mvh_page_t, live_bytes)),
                     sizeof live);
    ck_assert_int_eq(pwrite(hw->hm.fd, &allocs, 8, offsetof(mvh_page_t, allocs)), 8);
    ck_assert_int_eq(pwrite(hw->hm.fd, &frees, 8, offsetof(mvh_page_t, frees)), 8);
}

START_TEST(windows_over_the_page)
{
    mv_heapwin_t hw;
    mv_heap_task_t t;

    mv_heapwin_init(&hw);
    ck_assert_int_eq(mv_heapwin_start(&hw), 0);
    /* nobody attached yet: not measured */
    mv_heapwin_open(&hw);
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(!t.measured);
    page_set(&hw, 1234, 1, 1000, 10, 4);
    mv_heapwin_open(&hw);
    page_set(&hw, 1234, 1, 5096, 15, 6);
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(t.measured);
    ck_assert_str_eq(t.source, "preload");
    ck_assert_int_eq(t.before, 1000);
    ck_assert_int_eq(t.after, 5096);
    ck_assert_int_eq(t.allocs, 5);
    ck_assert_int_eq(t.frees, 2);
    ck_assert_int_eq(t.blocks, 3);
    /* the worker exec'd (a new generation) or the page changed hands: no delta */
    mv_heapwin_open(&hw);
    page_set(&hw, 1234, 2, 10, 1, 0);
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(!t.measured);
    mv_heapwin_open(&hw);
    page_set(&hw, 999, 2, 10, 1, 0);
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(!t.measured);
    /* service mode: the next window starts where the last one ended */
    page_set(&hw, 999, 2, 100, 1, 0);
    mv_heapwin_open(&hw);
    page_set(&hw, 999, 2, 300, 2, 0);
    mv_heapwin_close(&hw, NULL, &t);
    page_set(&hw, 999, 2, 700, 3, 0); /* the request's work, before BEGIN came */
    mv_heapwin_since_close(&hw);
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(t.measured);
    ck_assert_int_eq(t.after - t.before, 400);
    mv_heapwin_end(&hw);
    ck_assert_int_eq(hw.hm.fd, -1);
    mv_heapwin_end(&hw); /* twice is harmless */
}
END_TEST

START_TEST(windows_over_the_workers_own_figures)
{
    mv_heapwin_t hw;
    mv_heap_task_t t;
    struct mvw_heap a = {1000, 10}, b = {1500, 25}, none = {-1, -1}, c = {2000, -1};

    mv_heapwin_init(&hw);
    /* no page: the first report is only the next task's "before" */
    mv_heapwin_close(&hw, &a, &t);
    ck_assert(!t.measured);
    mv_heapwin_close(&hw, &b, &t);
    ck_assert(t.measured);
    ck_assert_str_eq(t.source, "worker");
    ck_assert_int_eq(t.after - t.before, 500);
    ck_assert_int_eq(t.blocks, 15);
    ck_assert_int_eq(t.allocs, -1);
    /* an answer without figures (or unknown ones) breaks the chain */
    mv_heapwin_close(&hw, NULL, &t);
    ck_assert(!t.measured);
    mv_heapwin_close(&hw, &c, &t);
    ck_assert(!t.measured);
    mv_heapwin_close(&hw, &none, &t);
    ck_assert(!t.measured);
    mv_heapwin_close(&hw, &c, &t);
    ck_assert(!t.measured);
    mv_heapwin_close(&hw, &c, &t);
    ck_assert(t.measured);
    ck_assert_int_eq(t.blocks, INT64_MIN); /* blocks unknown */
    mv_heapwin_end(&hw);
}
END_TEST

/* ---- the exec shim ---- */

START_TEST(the_shim_preloads_the_command_only)
{
    const char *argv[] = {MEMVISOR, "exec-shim",
                          "-",      "sh",
                          "-c",     "echo \"$LD_PRELOAD|${" MV_PROC_ENV_PRELOAD "-unset}\"",
                          NULL};
    char lib[PATH_MAX + 64], *out;

    ck_assert_int_eq(mv_heapmon_library(MEMVISOR, lib, sizeof lib), 0);
    setenv(MV_PROC_ENV_PRELOAD, lib, 1);
    setenv("LD_PRELOAD", "", 1);
    ck_assert_int_eq(run_capture(argv, &out), 0);
    ck_assert_msg(strncmp(out, lib, strlen(lib)) == 0 && strstr(out, "|unset"), "%s", out);
    free(out);
    /* in front of what the user preloads (not in the sanitizer build: its own shim, run with
     * a library in front of its runtime, would refuse to start) */
#ifndef __SANITIZE_ADDRESS__
    setenv("LD_PRELOAD", lib, 1);
    ck_assert_int_eq(run_capture(argv, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, ":"));
    free(out);
#endif
    unsetenv(MV_PROC_ENV_PRELOAD);
    unsetenv("LD_PRELOAD");
    ck_assert_int_eq(run_capture(argv, &out), 0);
    ck_assert_str_eq(out, "|unset\n");
    free(out);
}
END_TEST

/* ---- real runs ---- */

/* Runs `tasks` with the -o options (NULL-terminated) on argv; returns the run. */
static void run_with(mvrun_t *r, const char *tasks, const char *const *opts,
                     const char *const *argv)
{
    mvargs_t av;

    ck_assert_int_eq(run_batch(r, tasks, run_argv(&av, opts, argv)), 0);
}

START_TEST(results_carry_the_heap_figures_of_each_task)
{
    const char *opts[] = {"supervisor.workers=1", NULL};
    const char *argv[] = {MVTEST, NULL};
    mvrun_t r;
    json_t *a, *f;

    run_with(&r, "alloc 1\nallocfree 4\nalloc 2\n", opts, argv);
    a = run_result(&r, 3);
    f = run_result(&r, 2);
    ck_assert_str_eq(jstr(a, "heap_source"), "preload");
    ck_assert_int_ge(jint(a, "heap_retained"), 2 * MiB);
    ck_assert_int_lt(jint(a, "heap_retained"), 2 * MiB + 64 * 1024);
    ck_assert_int_eq(jint(a, "heap_after") - jint(a, "heap_before"), jint(a, "heap_retained"));
    ck_assert_int_ge(jint(a, "heap_allocs"), 1);
    ck_assert_int_ge(jint(a, "heap_blocks"), 1);
    /* 4 MiB allocated and freed: nothing retained on the heap */
    ck_assert_int_lt(llabs(jint(f, "heap_retained")), 64 * 1024);
    ck_assert_ptr_nonnull(strstr(r.log, "event=heap preload="));
    run_free(&r);
}
END_TEST

START_TEST(no_heap_figures_when_off)
{
    const char *off[] = {"supervisor.workers=1", "leak.heap=off", "worker.protocol=lines", NULL};
    const char *lines[] = {"supervisor.workers=1", "worker.protocol=lines", NULL};
    const char *sh[] = {"sh", "-c", "while read l; do echo \"$LD_PRELOAD\"; done", NULL};
    mvrun_t r;

    run_with(&r, "a\nb\n", off, sh);
    ck_assert_ptr_null(json_object_get(run_result(&r, 2), "heap_source"));
    ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "");
    ck_assert_ptr_nonnull(strstr(r.log, "why=\"heap = off\""));
    run_free(&r);
    /* dynamically linked lines worker: the library reached it, the shim did not keep it */
    run_with(&r, "a\nb\n", lines, sh);
    ck_assert_ptr_nonnull(strstr(jstr(run_result(&r, 2), "result"), "libmemvisor-heap.so"));
    ck_assert_str_eq(jstr(run_result(&r, 2), "heap_source"), "preload");
    run_free(&r);
}
END_TEST

START_TEST(python_gets_pythonmalloc_unless_it_has_one)
{
    const char *opts[] = {"supervisor.workers=1", "worker.protocol=lines", NULL};
    const char *py[] = {"python3", "-c",
                        "import os, sys\n"
                        "for l in sys.stdin:\n"
                        "    print(os.environ.get('PYTHONMALLOC', '-'), flush=True)\n",
                        NULL};
    mvrun_t r;

    run_with(&r, "a\nb\n", opts, py);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "malloc");
    ck_assert_ptr_nonnull(strstr(r.log, "python_malloc=yes"));
    run_free(&r);
    setenv("PYTHONMALLOC", "pymalloc_debug", 1);
    run_with(&r, "a\n", opts, py);
    unsetenv("PYTHONMALLOC");
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "pymalloc_debug");
    run_free(&r);
}
END_TEST

START_TEST(without_the_preload_an_api_worker_reports_its_own)
{
    const char *opts[] = {"supervisor.workers=1", "leak.heap=off", NULL};
    const char *argv[] = {MVTEST, NULL};
    mvrun_t r;
    json_t *a;

    run_with(&r, "alloc 1\nalloc 3\n", opts, argv);
    ck_assert_ptr_null(json_object_get(run_result(&r, 1), "heap_source")); /* no "before" */
    a = run_result(&r, 2);
    ck_assert_str_eq(jstr(a, "heap_source"), "worker");
    ck_assert_int_ge(jint(a, "heap_retained"), 3 * MiB);
    ck_assert(json_is_null(json_object_get(a, "heap_allocs")));
    run_free(&r);
}
END_TEST

/* A hot spare hears GO when it takes a slot: with the heap flag too, so its tasks carry the
 * worker's own figures like any other worker's; and it was started with the preload. */
START_TEST(a_spare_that_takes_a_slot_has_heap_figures)
{
    const char *off[] = {"supervisor.workers=1", "recycle.spares=1", "limits.max_tasks=2",
                         "leak.heap=off", NULL};
    const char *on[] = {"supervisor.workers=1", "recycle.spares=1", "limits.max_tasks=2", NULL};
    const char *argv[] = {MVTEST, NULL};
    const char *tasks = "sleep 300\nalloc 1\nalloc 1\nalloc 3\n";
    mvrun_t r;

    run_with(&r, tasks, off, argv);
    ck_assert_ptr_nonnull(strstr(r.log, "event=spare_taken"));
    ck_assert_str_eq(jstr(run_result(&r, 4), "heap_source"), "worker");
    ck_assert_int_ge(jint(run_result(&r, 4), "heap_retained"), 3 * MiB);
    run_free(&r);
    run_with(&r, tasks, on, argv);
    ck_assert_ptr_nonnull(strstr(r.log, "event=spare_taken"));
    ck_assert_str_eq(jstr(run_result(&r, 4), "heap_source"), "preload");
    ck_assert_int_ge(jint(run_result(&r, 4), "heap_retained"), 3 * MiB);
    run_free(&r);
}
END_TEST

Suite *heapwire_suite(void)
{
    Suite *s = suite_create("heapwire");
    TCase *unit = tcase_create("unit");
    TCase *runs = tcase_create("runs");

    tcase_add_test(unit, plan_follows_the_mode_the_command_and_python);
    tcase_add_test(unit, sanitizer_names_are_found_anywhere_in_the_first_4_mib);
    tcase_add_test(unit, windows_over_the_page);
    tcase_add_test(unit, windows_over_the_workers_own_figures);
    tcase_add_test(unit, the_shim_preloads_the_command_only);
    tcase_set_timeout(runs, 30);
    tcase_add_test(runs, results_carry_the_heap_figures_of_each_task);
    tcase_add_test(runs, no_heap_figures_when_off);
    tcase_add_test(runs, python_gets_pythonmalloc_unless_it_has_one);
    tcase_add_test(runs, without_the_preload_an_api_worker_reports_its_own);
    tcase_add_test(runs, a_spare_that_takes_a_slot_has_heap_figures);
    suite_add_tcase(s, unit);
    suite_add_tcase(s, runs);
    return s;
}
