/*
 * config_ext: the hardening keys' own syntax and resolution ([worker] user/group, [limits]
 * escalate/escalate_max, [supervisor] pause_below): values, and every mistake named with its
 * file:line and key.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "suites.h"

#define MiB (INT64_C(1) << 20)

/* Builds a config from `text` (a file) and the -o overrides; the errors in e. */
static int build(const char *text, mv_config_t *c, mv_errors_t *e, char path[64])
{
    FILE *f;

    strcpy(path, "/tmp/mv-cfgext-XXXXXX");
    ck_assert_int_ge(close(mkstemp(path)), 0);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return mv_config_build(c, path, NULL, 0, e);
}

/* Whether some error line is exactly "path:line: rest". */
static bool has(const mv_errors_t *e, const char *path, int line, const char *rest)
{
    char want[512];

    snprintf(want, sizeof want, "%s:%d: %s", path, line, rest);
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->msg[i], want) == 0)
            return true;
    fprintf(stderr, "missing: %s\nhave:\n", want);
    mv_errors_print(e, stderr);
    return false;
}

static void done(mv_config_t *c, mv_errors_t *e, const char *path)
{
    mv_config_free(c);
    mv_errors_free(e);
    unlink(path);
}

START_TEST(escalate_values)
{
    mv_escmode_t m;
    double f;
    int64_t step;
    const char *why = NULL;

    ck_assert_int_eq(mv_parse_escalate("off", &m, &f, &step, &why), 0);
    ck_assert_int_eq(m, MV_ESC_OFF);
    ck_assert_int_eq(mv_parse_escalate("2x", &m, &f, &step, &why), 0);
    ck_assert_int_eq(m, MV_ESC_FACTOR);
    ck_assert(f == 2.0);
    ck_assert_int_eq(mv_parse_escalate("1.5X", &m, &f, &step, &why), 0);
    ck_assert(f == 1.5);
    ck_assert_int_eq(mv_parse_escalate("256M", &m, &f, &step, &why), 0);
    ck_assert_int_eq(m, MV_ESC_STEP);
    ck_assert_int_eq(step, 256 * MiB);
    ck_assert_int_eq(mv_parse_escalate("1x", &m, &f, &step, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_escalate("101x", &m, &f, &step, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_escalate("0", &m, &f, &step, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_escalate("x", &m, &f, &step, &why), -EINVAL);
    ck_assert_int_eq(mv_parse_escalate("-2x", &m, &f, &step, &why), -EINVAL);
    ck_assert_int_eq(mv_parse_escalate("2xx", &m, &f, &step, &why), -EINVAL);
    ck_assert_int_eq(mv_parse_escalate("double", &m, &f, &step, &why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "a factor such as 2x"));
}
END_TEST

START_TEST(pause_values)
{
    int64_t b;
    int pm;
    const char *why = NULL;

    ck_assert_int_eq(mv_parse_pause("0", &b, &pm, &why), 0);
    ck_assert(b == 0 && pm == 0);
    ck_assert_int_eq(mv_parse_pause("512M", &b, &pm, &why), 0);
    ck_assert(b == 512 * MiB && pm == 0);
    ck_assert_int_eq(mv_parse_pause("10%", &b, &pm, &why), 0);
    ck_assert(b == 0 && pm == 100);
    ck_assert_int_eq(mv_parse_pause("2.5%", &b, &pm, &why), 0);
    ck_assert_int_eq(pm, 25);
    ck_assert_int_eq(mv_parse_pause("100%", &b, &pm, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_pause("0%", &b, &pm, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_pause("0.01%", &b, &pm, &why), -ERANGE);
    ck_assert_int_eq(mv_parse_pause("%", &b, &pm, &why), -EINVAL);
    ck_assert_int_eq(mv_parse_pause("lots", &b, &pm, &why), -EINVAL);
    ck_assert_int_eq(mv_parse_pause("10 %", &b, &pm, &why), -EINVAL);
}
END_TEST

/* Bad values are named with their line, with every other mistake of the file. */
START_TEST(bad_values_name_their_line)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char path[64];

    ck_assert_int_eq(build("[supervisor]\npause_below = lots\n[limits]\nescalate = 3y\n"
                           "escalate_max = 1G\n",
                           &c, &e, path),
                     -EINVAL);
    ck_assert(has(&e, path, 2,
                  "[supervisor] pause_below: \"lots\": expected 0, a size such as 512M, or a "
                  "percentage such as 10%"));
    ck_assert(has(&e, path, 4,
                  "[limits] escalate: \"3y\": expected off, a factor such as 2x or 1.5x, or a size "
                  "such as 256M"));
    ck_assert_uint_eq(e.n, 2);
    done(&c, &e, path);
}
END_TEST

START_TEST(escalate_cross_checks)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char path[64];

    /* No hard limit: nothing to raise. */
    ck_assert_int_eq(
        build("[limits]\nmemory_soft = 0\nmemory_hard = 0\nescalate = 2x\n", &c, &e, path),
        -EINVAL);
    ck_assert(
        has(&e, path, 4, "[limits] escalate: needs a hard limit to raise: memory_hard is 0 (off)"));
    done(&c, &e, path);
    /* A cap at or under the limit. */
    ck_assert_int_eq(
        build("[limits]\nmemory_hard = 64M\nescalate = 2x\nescalate_max = 64M\n", &c, &e, path),
        -EINVAL);
    ck_assert(has(&e, path, 4,
                  "[limits] escalate_max: 64M is not above memory_hard = 64M: nothing to escalate "
                  "to (raise it, or set escalate = off)"));
    done(&c, &e, path);
    /* 0: four times the hard limit, and `memvisor check` says so. */
    ck_assert_int_eq(build("[limits]\nmemory_hard = 64M\nescalate = 32M\n", &c, &e, path), 0);
    ck_assert_int_eq(c.limits.escalate_max, 256 * MiB);
    ck_assert_int_eq(c.limits.escalate_mode, MV_ESC_STEP);
    ck_assert_int_eq(c.limits.escalate_step, 32 * MiB);
    ck_assert_str_eq(mv_config_origin(&c, "limits", "escalate_max").via, "4 times memory_hard");
    done(&c, &e, path);
    /* off: escalate_max stays what it was written as. */
    ck_assert_int_eq(build("[limits]\nmemory_hard = 0\nmemory_soft = 0\n", &c, &e, path), 0);
    ck_assert_int_eq(c.limits.escalate_mode, MV_ESC_OFF);
    ck_assert_int_eq(c.limits.escalate_max, 0);
    done(&c, &e, path);
}
END_TEST

START_TEST(user_and_group_resolve)
{
    struct passwd *nobody = getpwnam("nobody");
    mv_config_t c;
    mv_errors_t e = {0};
    char path[64];

    if (geteuid() != 0 || !nobody) {
        fprintf(stderr, "config_ext: skipped user_and_group_resolve (needs root and nobody)\n");
        return;
    }
    ck_assert_int_eq(build("[worker]\nuser = nobody\n", &c, &e, path), 0);
    ck_assert_int_eq(c.worker.uid, nobody->pw_uid);
    ck_assert_int_eq(c.worker.gid, nobody->pw_gid);
    done(&c, &e, path);
    ck_assert_int_eq(build("[worker]\nuser = 65534\ngroup = 0\n", &c, &e, path), 0);
    ck_assert_int_eq(c.worker.uid, 65534);
    ck_assert_int_eq(c.worker.gid, 0);
    done(&c, &e, path);
    ck_assert_int_eq(build("[worker]\ngroup = root\n", &c, &e, path), 0);
    ck_assert_int_eq(c.worker.uid, 0);
    ck_assert_int_eq(c.worker.gid, 0);
    done(&c, &e, path);
    /* Unknown names, and an id with no passwd entry (no primary group to take). */
    ck_assert_int_eq(
        build("[worker]\nuser = no-such-user-mv\ngroup = no-such-group-mv\n", &c, &e, path),
        -EINVAL);
    ck_assert(has(&e, path, 2, "[worker] user: \"no-such-user-mv\": no such user"));
    ck_assert(has(&e, path, 3, "[worker] group: \"no-such-group-mv\": no such group"));
    done(&c, &e, path);
    ck_assert_int_eq(build("[worker]\nuser = 4000111\n", &c, &e, path), -EINVAL);
    ck_assert(has(&e, path, 2,
                  "[worker] user: \"4000111\": uid 4000111 has no passwd entry, so no primary "
                  "group: set [worker] group too"));
    done(&c, &e, path);
    ck_assert_int_eq(build("[worker]\nuser = 4000111\ngroup = 4000111\n", &c, &e, path), 0);
    ck_assert_int_eq(c.worker.uid, 4000111);
    done(&c, &e, path);
}
END_TEST

/* Not root: the option is refused at `memvisor check` time, naming the key and its line. */
START_TEST(only_root_may_switch_users)
{
    char path[64];
    pid_t pid;
    int st;

    if (geteuid() != 0) {
        fprintf(stderr, "config_ext: skipped only_root_may_switch_users (needs root to setuid)\n");
        return;
    }
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        mv_config_t c;
        mv_errors_t e = {0};
        bool ok;

        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(2);
        ok = build("[worker]\n\nuser = nobody\n", &c, &e, path) == -EINVAL && e.n == 1 &&
             has(&e, path, 3,
                 "[worker] user: \"nobody\": only root can run workers as another user or group "
                 "(memvisor runs as uid 65534): remove it, or start memvisor as root");
        done(&c, &e, path);
        _exit(ok ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
}
END_TEST

Suite *config_ext_suite(void)
{
    Suite *s = suite_create("config_ext");
    TCase *tc = tcase_create("keys");

    tcase_add_test(tc, escalate_values);
    tcase_add_test(tc, pause_values);
    tcase_add_test(tc, bad_values_name_their_line);
    tcase_add_test(tc, escalate_cross_checks);
    tcase_add_test(tc, user_and_group_resolve);
    tcase_add_test(tc, only_root_may_switch_users);
    suite_add_tcase(s, tc);
    return s;
}
