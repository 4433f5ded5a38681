/*
 * leak_suite: the labelled leak suite (tests/leaks/, docs/leak-suite.md) in `make check`:
 * the scoring's own unit tests, and the fast subset of workloads through the real memvisor.
 *
 * The fast subset checks that its runs work (every task ok exactly once, in both modes) and,
 * while the marker file tests/leaks/ENFORCE exists (it does since issue 12's detector), that
 * every kind of it is named right: leaks within 300 tasks, and nothing else.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "suites.h"

/* Runs argv from the source tree; fails the test with its whole output on a non-zero exit. */
static void must_pass(const char *const *argv, const char *what)
{
    char *out;
    int code;

    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    code = run_capture(argv, &out);
    if (code != 0) {
        fprintf(stderr, "%s exited %d:\n%s\n", what, code, out);
        ck_abort_msg("%s exited %d; its output is on stderr", what, code);
    }
    free(out);
}

START_TEST(scoring_unittests_pass)
{
    const char *argv[] = {"python3", "-m", "unittest", "tests/leaks/test_run.py", NULL};

    must_pass(argv, "python3 -m unittest tests/leaks/test_run.py");
}
END_TEST

START_TEST(fast_subset_runs)
{
    const char *argv[] = {"python3", "tests/leaks/run.py", "--fast", "--verbose",
                          "--build", MV_BUILD_DIR,         NULL};

    must_pass(argv, "tests/leaks/run.py --fast");
}
END_TEST

Suite *leak_suite_suite(void)
{
    Suite *s = suite_create("leak_suite");
    TCase *tc = tcase_create("leak_suite");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, scoring_unittests_pass);
    tcase_add_test(tc, fast_subset_runs);
    suite_add_tcase(s, tc);
    return s;
}
