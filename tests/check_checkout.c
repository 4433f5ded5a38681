/*
 * checkout: the tests that run binaries as another user pass from a checkout under a
 * directory that user cannot enter (mode 0700, as `mktemp -d` and many home directories
 * are); before, they got exit 127 from execve.
 *
 * The repository is cloned into a fresh 0700 directory and this build's binaries are copied
 * into the clone's build/ (what such a checkout would hold after `make`): rebuilding them
 * there would cost half a minute and prove nothing more, since what matters is where the
 * binaries are, not how they were made. Then the copy of this test binary runs the
 * `other_uid` test cases with MV_BUILD pointing at the clone's build.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Runs argv (NULL-terminated) with stdout and stderr to `out`; its exit code. */
static int run(const char *const *argv, const char *out)
{
    pid_t pid = fork();
    int st;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Copies BUILD/rel to dir/rel, mode 0755. */
static void copy_built(const char *dir, const char *rel)
{
    char to[4200], sub[4200];
    const char *argv[] = {"cp", mv_test_path(rel), to, NULL};

    snprintf(to, sizeof to, "%s/%s", dir, rel);
    snprintf(sub, sizeof sub, "%s", to);
    *strrchr(sub, '/') = '\0';
    ck_assert_int_eq(run((const char *const[]){"mkdir", "-p", sub, NULL}, "/dev/null"), 0);
    ck_assert_int_eq(run(argv, "/dev/null"), 0);
}

START_TEST(other_uid_tests_pass_from_a_0700_checkout)
{
    char top[] = "/tmp/mv-checkout-XXXXXX", clone[96], build[128], test[160], out[96];
    char source[4200], env[4300];
    struct stat st;
    char *text;
    int code;

    if (geteuid() != 0 || !getpwnam("nobody")) {
        fprintf(stderr, "check_checkout: skipped (needs root and the user nobody)\n");
        return;
    }
    ck_assert_ptr_nonnull(mkdtemp(top));
    ck_assert_int_eq(stat(top, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0700);
    snprintf(clone, sizeof clone, "%s/memvisor", top);
    snprintf(out, sizeof out, "%s/out.txt", top);
    snprintf(source, sizeof source, "file://%s", SOURCE_DIR);
    /* A tarball has no history to clone: the build's copy alone then stands for the tree. */
    if (run((const char *const[]){"git", "clone", "-q", "--depth", "1", source, clone, NULL},
            out) != 0) {
        fprintf(stderr, "check_checkout: %s is not a git checkout; copying the build only\n",
                SOURCE_DIR);
        ck_assert_int_eq(mkdir(clone, 0755), 0);
    }
    snprintf(build, sizeof build, "%s/build", clone);
    copy_built(build, "memvisor");
    copy_built(build, "helpers/mvtest_worker");
    copy_built(build, "examples/http_service");
    copy_built(build, "tests/check_memvisor");
    snprintf(test, sizeof test, "%s/tests/check_memvisor", build);
    snprintf(env, sizeof env, "MV_BUILD=%s", build);
    code = run((const char *const[]){"env", "-u", "CK_RUN_SUITE", "-u", "CK_INCLUDE_TAGS", env,
                                     "CK_RUN_CASE=other_uid", test, NULL},
               out);
    text = read_text(out);
    ck_assert_msg(code == 0, "the other-uid tests failed from %s (exit %d):\n%s", clone, code,
                  text);
    /* cgroup_e2e's and service's, and privdrop's three (workers as nobody from a build they
     * cannot reach: the harness copies it) */
    ck_assert_msg(strstr(text, "100%: Checks: 5, Failures: 0, Errors: 0") != NULL,
                  "not the five other-uid tests:\n%s", text);
    ck_assert_msg(strstr(text, "skipped") == NULL, "a test was skipped:\n%s", text);
    free(text);
    nftw(top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

Suite *checkout_suite(void)
{
    Suite *s = suite_create("checkout");
    TCase *tc = tcase_create("clone_0700");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, other_uid_tests_pass_from_a_0700_checkout);
    suite_add_tcase(s, tc);
    return s;
}
