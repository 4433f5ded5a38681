/*
 * The pure-Python worker module (worker-api/python/memvisor_worker.py) and memvisor.Pool
 * (worker-api/python/memvisor/): their unittest suites (tests/python/), run by python3 from
 * the source tree (the Pool's with this build's memvisor as $MEMVISOR_BIN), and the Python
 * examples (examples/python/) as `api` workers of the real memvisor binary; and the README and
 * docs/ against the real binary (tests/python/test_docs.py).
 *
 * Python must not write __pycache__ into the source tree that other builds share:
 * PYTHONDONTWRITEBYTECODE is set for python3 and, through memvisor, for its workers.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define PY_EXAMPLES SOURCE_DIR "/examples/python/"

/* python3 -m unittest FILE, which must pass. */
static void unittests_pass(const char *file)
{
    const char *argv[] = {"python3", "-m", "unittest", "-v", file, NULL};
    char *out;
    int code;

    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    setenv("MEMVISOR_BIN", MEMVISOR, 1);
    code = run_capture(argv, &out);
    if (code != 0) {
        /* The whole report, where Check's message would truncate it. */
        fprintf(stderr, "python3 -m unittest %s exited %d:\n%s\n", file, code, out);
        ck_abort_msg("python3 -m unittest %s exited %d; its output is on stderr", file, code);
    }
    free(out);
}

START_TEST(module_unittests_pass)
{
    unittests_pass("tests/python/test_memvisor_worker.py");
}
END_TEST

START_TEST(pool_unittests_pass)
{
    unittests_pass("tests/python/test_pool.py");
}
END_TEST

/* The README and docs/ against the real binary and the source (tests/python/test_docs.py). */
START_TEST(docs_unittests_pass)
{
    unittests_pass("tests/python/test_docs.py");
}
END_TEST

/* The tasks file of an example: its text (free it) and its number of lines. */
static char *example_tasks(const char *name, size_t *lines)
{
    char path[256];
    FILE *f;
    char *text;
    long size;

    snprintf(path, sizeof path, PY_EXAMPLES "%s.tasks", name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    ck_assert_int_gt(size, 0);
    rewind(f);
    text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    *lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++)
        ++*lines;
    return text;
}

/* Runs examples/python/NAME.py on its tasks file under memvisor with `opts` (-o pairs,
 * NULL-terminated); checks that every task ended ok exactly once. Returns the task count. */
static size_t run_example(mvrun_t *r, const char *name, const char *const *opts)
{
    const char *args[32] = {"run", "-o", "supervisor.workers=2"};
    char script[256];
    size_t n, lines;
    char *tasks;
    int code;

    snprintf(script, sizeof script, PY_EXAMPLES "%s.py", name);
    n = 3;
    for (; opts && *opts; opts++) {
        ck_assert_uint_lt(n, 26);
        args[n++] = "-o";
        args[n++] = *opts;
    }
    args[n++] = "--";
    args[n++] = "python3";
    args[n++] = script;
    args[n] = NULL;
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    tasks = example_tasks(name, &lines);
    code = run_batch(r, tasks, args);
    ck_assert_log(r, code == 0, "%s exited %d", name, code);
    run_assert_once(r, lines, NULL);
    for (size_t i = 0; i < r->nres; i++)
        ck_assert_msg(strcmp(jstr(r->res[i], "status"), "ok") == 0, "%s: task %lld is %s: %s", name,
                      jint(r->res[i], "task"), jstr(r->res[i], "status"),
                      jstr(r->res[i], "error") ? jstr(r->res[i], "error") : "");
    free(tasks);
    return lines;
}

static const char *const examples[] = {"unbounded_cache", "lru_unbounded", "open_files",
                                       "bounded_lru", "mixed"};

START_TEST(example_runs_every_task_once)
{
    mvrun_t r;

    run_example(&r, examples[_i], NULL);
    run_free(&r);
}
END_TEST

/* The worker names each task's kind (MVW_F_KIND): the result says it, and it is the first
 * word of the line, as mixed.py sets it. */
static void assert_kinds_are_first_words(const mvrun_t *r, const char *tasks_name)
{
    size_t lines;
    char *tasks = example_tasks(tasks_name, &lines);
    char *line = tasks, *nl;

    for (size_t id = 1; id <= lines; id++, line = nl + 1) {
        const char *kind = jstr(run_result(r, id), "kind");
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(kind);
        ck_assert_msg(strncmp(line, kind, strlen(kind)) == 0 && line[strlen(kind)] == ' ',
                      "task %zu: kind \"%s\" for the line \"%.*s\"", id, kind, (int)(nl - line),
                      line);
    }
    free(tasks);
}

/* The mixed example with max_tasks 50 (and `extra`): no worker answers more than 50 tasks,
 * enough of them took turns, and every result has its kind. */
static void run_mixed_recycled(const char *extra)
{
    const char *opts[] = {"limits.max_tasks=50", extra, NULL};
    mvrun_t r;
    size_t n;
    int pids;

    n = run_example(&r, "mixed", opts);
    ck_assert_int_le(run_max_per_pid(&r, &pids), 50);
    ck_assert_int_ge(pids, (int)(n / 50));
    ck_assert_int_ge(run_count(&r, "reason=max_tasks"), (int)(n / 50) - 2);
    assert_kinds_are_first_words(&r, "mixed");
    run_free(&r);
}

START_TEST(mixed_recycles_by_task_count_and_loses_nothing)
{
    run_mixed_recycled(NULL);
}
END_TEST

START_TEST(mixed_with_prefetch_recycles_and_loses_nothing)
{
    /* STOP reaches workers with prefetched tasks buffered: they are requeued, not lost. */
    run_mixed_recycled("worker.prefetch=8");
}
END_TEST

/* A module worker through the real memvisor: a handler's exception fails its task with the
 * type, message and traceback (the raising line named); a dict or list result is written as
 * JSON; str as it is. */
START_TEST(module_worker_sends_tracebacks_and_json)
{
    static const char worker[] = "import sys\n"
                                 "sys.path.insert(0, '" SOURCE_DIR "/worker-api/python')\n"
                                 "import memvisor_worker\n"
                                 "\n"
                                 "def parse(text):\n"
                                 "    raise ValueError('no number in ' + text)\n"
                                 "\n"
                                 "def handle(task):\n"
                                 "    verb, _, rest = task.text.partition(' ')\n"
                                 "    if verb == 'parse':\n"
                                 "        return parse(rest)\n"
                                 "    if verb == 'dict':\n"
                                 "        return {'words': rest.split(), 'n': len(rest)}\n"
                                 "    if verb == 'list':\n"
                                 "        return [1, 'two', None]\n"
                                 "    return rest\n"
                                 "\n"
                                 "memvisor_worker.main(handle)\n";
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", "python3", NULL, NULL};
    const char *err;
    mvrun_t r;

    run_init(&r, "parse abc\ndict a b\nlist\nplain text\n");
    args[5] = run_file(&r, "w.py", worker);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1);
    run_assert_once(&r, 4, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 1), "status"), "failed");
    err = jstr(run_result(&r, 1), "error");
    ck_assert_msg(
        strncmp(err, "ValueError: no number in abc\nTraceback (most recent call last):", 62) == 0,
        "%s", err);
    ck_assert_msg(strstr(err, "line 6, in parse\n    raise ValueError('no number in ' + text)") &&
                      strstr(err, "in handle\n"),
                  "%s", err);
    ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "{\"words\":[\"a\",\"b\"],\"n\":3}");
    ck_assert_str_eq(jstr(run_result(&r, 3), "result"), "[1,\"two\",null]");
    ck_assert_str_eq(jstr(run_result(&r, 4), "result"), "text");
    run_free(&r);
}
END_TEST

/* One task through `args` (its script, `text`, at args[at]) in r, which must exit 0. */
static void run_one_script(mvrun_t *r, const char **args, int at, const char *text)
{
    int code;

    run_init(r, "a\n");
    args[at] = run_file(r, "w.py", text);
    run_start(r, args, NULL);
    code = run_finish(r);
    ck_assert_log(r, code == 0, "memvisor exited %d", code);
}

/* memvisor run from its build tree (this build's, not installed): a Python api worker that
 * imports memvisor_worker with no PYTHONPATH of its own says HELLO (it failed before, with the
 * no_hello hint to set PYTHONPATH); a PYTHONPATH given keeps its entries first; a lines worker,
 * which needs no module, gets none. Each worker answers with its PYTHONPATH and its module. */
START_TEST(module_worker_from_the_build_tree_needs_no_pythonpath)
{
    static const char api[] = "import os, memvisor_worker\n"
                              "memvisor_worker.main(lambda task: os.environ.get('PYTHONPATH', '-')"
                              " + ' ' + memvisor_worker.__file__)\n";
    static const char lines[] = "import os, sys\n"
                                "for line in sys.stdin:\n"
                                "    print(os.environ.get('PYTHONPATH', '-'), flush=True)\n";
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", "python3", NULL, NULL};
    const char *largs[] = {
        "run", "-o", "supervisor.workers=1", "-o", "worker.protocol=lines", "--", "python3",
        NULL,  NULL};
    char dir[PATH_MAX], want[2 * PATH_MAX + 64];
    mvrun_t r;

    ck_assert_ptr_nonnull(realpath(SOURCE_DIR "/worker-api/python", dir));
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    unsetenv("PYTHONPATH");
    run_one_script(&r, args, 5, api);
    run_assert_once(&r, 1, NULL);
    snprintf(want, sizeof want, "%s %s/memvisor_worker.py", dir, dir);
    ck_assert_str_eq(jstr(run_result(&r, 1), "status"), "ok");
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), want);
    ck_assert_ptr_nonnull(strstr(r.log, "event=python_path"));
    run_free(&r);

    /* The user's entries first (a module there would win); an empty one adds nothing. */
    setenv("PYTHONPATH", "/nonexistent/mine", 1);
    run_one_script(&r, args, 5, api);
    snprintf(want, sizeof want, "/nonexistent/mine:%s %s/memvisor_worker.py", dir, dir);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), want);
    run_free(&r);
    setenv("PYTHONPATH", "", 1);
    run_one_script(&r, args, 5, api);
    snprintf(want, sizeof want, "%s %s/memvisor_worker.py", dir, dir);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), want);
    run_free(&r);

    unsetenv("PYTHONPATH");
    run_one_script(&r, largs, 7, lines);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "-");
    ck_assert_ptr_null(strstr(r.log, "event=python_path"));
    run_free(&r);
}
END_TEST

/* A PYTHONPATH that, with the build tree's entry after it, would pass the 8 KiB memvisor
 * keeps for it: the entry is not added, and a warning says so (it was silent before). Its
 * first entry is the tree's worker-api/python, so the worker still starts. */
START_TEST(a_build_tree_pythonpath_too_long_is_said)
{
    static const char api[] =
        "import os, memvisor_worker\n"
        "memvisor_worker.main(lambda task: str(len(os.environ['PYTHONPATH'])))"
        "\n";
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", "python3", NULL, NULL};
    char dir[PATH_MAX], *pp, want[32];
    size_t len;
    mvrun_t r;

    ck_assert_ptr_nonnull(realpath(SOURCE_DIR "/worker-api/python", dir));
    len = strlen(dir) + 9000;
    ck_assert_ptr_nonnull(pp = malloc(len + 1));
    strcpy(pp, dir);
    for (size_t i = strlen(dir); i < len; i += 9)
        memcpy(pp + i, ":/nx/nx/", 9 < len - i ? 8 : len - i);
    for (size_t i = strlen(dir); i < len; i++)
        if (!pp[i])
            pp[i] = 'x';
    pp[len] = '\0';
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    setenv("PYTHONPATH", pp, 1);
    run_one_script(&r, args, 5, api);
    unsetenv("PYTHONPATH");
    snprintf(want, sizeof want, "%zu", len);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), want); /* the environment's, as it was */
    ck_assert_ptr_null(strstr(r.log, "event=python_path added"));
    ck_assert_log(&r, strstr(r.log, "warn  event=python_path_too_long dir="),
                  "no python_path_too_long");
    snprintf(want, sizeof want, " bytes=%zu max=8180 ", len + 1 + strlen(dir));
    ck_assert_log(&r, strstr(r.log, want), "no%s in the log", want);
    free(pp);
    run_free(&r);
}
END_TEST

Suite *python_suite(void)
{
    Suite *s = suite_create("python");
    TCase *unit = tcase_create("module");
    TCase *e2e = tcase_create("examples");

    tcase_set_timeout(unit, 300); /* whole unittest files: a hang guard, not a time limit */
    tcase_set_timeout(e2e, 60);
    tcase_add_test(unit, module_unittests_pass);
    tcase_add_test(unit, pool_unittests_pass);
    tcase_add_test(unit, docs_unittests_pass);
    tcase_add_loop_test(e2e, example_runs_every_task_once, 0,
                        (int)(sizeof examples / sizeof examples[0]));
    tcase_add_test(e2e, mixed_recycles_by_task_count_and_loses_nothing);
    tcase_add_test(e2e, mixed_with_prefetch_recycles_and_loses_nothing);
    tcase_add_test(e2e, module_worker_sends_tracebacks_and_json);
    tcase_add_test(e2e, module_worker_from_the_build_tree_needs_no_pythonpath);
    tcase_add_test(e2e, a_build_tree_pythonpath_too_long_is_said);
    suite_add_tcase(s, unit);
    suite_add_tcase(s, e2e);
    return s;
}
