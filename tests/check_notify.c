/*
 * notify: sd_notify messages to a real AF_UNIX datagram socket standing in for systemd's
 * NOTIFY_SOCKET, and the watchdog timer on a real libuv loop.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "log.h"
#include "notify.h"
#include "suites.h"

/* The stand-in for systemd: a bound datagram socket in a fresh directory, a log file, a loop. */
static struct {
    char dir[64];
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char log_path[128];
    int fd;
    mv_log_t log;
    uv_loop_t loop;
} fx;

static void setup(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};

    snprintf(fx.dir, sizeof fx.dir, "/tmp/mv-notify-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(fx.dir));
    snprintf(fx.sock_path, sizeof fx.sock_path, "%s/notify.sock", fx.dir);
    snprintf(fx.log_path, sizeof fx.log_path, "%s/log", fx.dir);
    fx.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(fx.fd, 0);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", fx.sock_path);
    ck_assert_int_eq(bind(fx.fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(mv_log_open(&fx.log, MV_LOGFMT_TEXT, MV_LVL_DEBUG, fx.log_path), 0);
    ck_assert_int_eq(uv_loop_init(&fx.loop), 0);
}

static void teardown(void)
{
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(fx.fd);
    mv_log_close(&fx.log);
    unlink(fx.sock_path);
    unlink(fx.log_path);
    rmdir(fx.dir);
}

/* Under "systemd": NOTIFY_SOCKET names our socket. */
static void under_systemd(void)
{
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", fx.sock_path, 1), 0);
}

static void watchdog_env(const char *usec, pid_t pid)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%ld", (long)pid);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", usec, 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_PID", buf, 1), 0);
}

/* The next datagram, which sd_notify has already queued when it returned. */
static void next_dgram(char *buf, size_t cap)
{
    ssize_t r = recv(fx.fd, buf, cap - 1, MSG_DONTWAIT);

    ck_assert_msg(r > 0, "expected a datagram: %s", r < 0 ? strerror(errno) : "empty");
    buf[r] = '\0';
}

static void assert_no_dgram(void)
{
    char buf[512];
    ssize_t r = recv(fx.fd, buf, sizeof buf - 1, MSG_DONTWAIT);

    if (r >= 0)
        buf[r] = '\0';
    ck_assert_msg(r < 0 && errno == EAGAIN, "unexpected datagram \"%s\"", r >= 0 ? buf : "");
}

/* The log file's text, in a static buffer. */
static const char *log_text(void)
{
    static char buf[8192];
    int fd;
    ssize_t r;

    ck_assert_int_eq(mv_log_flush(&fx.log, 10000), 0); /* the log is written by its own thread */
    fd = open(fx.log_path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    r = read(fd, buf, sizeof buf - 1);
    close(fd);
    ck_assert_int_ge(r, 0);
    buf[r] = '\0';
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int k = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        k++;
    return k;
}

/* Closes the module and proves nothing was left on the loop. */
static void finish(mv_notify_t *n)
{
    mv_notify_close(n);
    ck_assert_int_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&fx.loop), 0);
}

START_TEST(ready_sends_ready_and_status_once)
{
    mv_notify_t n;
    char d[512];

    under_systemd();
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    ck_assert(n.enabled);
    ck_assert_ptr_nonnull(strstr(log_text(), "event=systemd notify=yes watchdog_ms=0"));
    mv_notify_ready(&n, "2 workers");
    next_dgram(d, sizeof d);
    ck_assert_ptr_nonnull(strstr(d, "READY=1"));
    ck_assert_ptr_nonnull(strstr(d, "STATUS=2 workers"));
    assert_no_dgram();
    /* Once ready, ready only updates the status, and an identical one is skipped. */
    mv_notify_ready(&n, "2 workers");
    assert_no_dgram();
    mv_notify_ready(&n, "3 workers");
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STATUS=3 workers");
    assert_no_dgram();
    finish(&n);
}
END_TEST

START_TEST(status_skips_repeats_and_newlines)
{
    mv_notify_t n;
    char d[512], big[600];

    under_systemd();
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    mv_notify_status(&n, "%d workers, %d tasks", 2, 10);
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STATUS=2 workers, 10 tasks");
    mv_notify_status(&n, "%d workers, %d tasks", 2, 10);
    assert_no_dgram();
    mv_notify_status(&n, "%d workers, %d tasks", 2, 11);
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STATUS=2 workers, 11 tasks");
    /* A newline would start another assignment (READY=1 here): it becomes a space. */
    mv_notify_status(&n, "%s", "x\nREADY=1");
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STATUS=x READY=1");
    /* Long texts are cut, not dropped. */
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mv_notify_status(&n, "%s", big);
    next_dgram(d, sizeof d);
    ck_assert_uint_eq(strlen(d), strlen("STATUS=") + MV_NOTIFY_STATUS_MAX - 1);
    assert_no_dgram();
    ck_assert_int_eq(count(log_text(), "notify_failed"), 0);
    finish(&n);
}
END_TEST

START_TEST(reloading_then_ready_again)
{
    mv_notify_t n;
    char d[512];

    under_systemd();
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    mv_notify_reloading(&n); /* not ready yet: nothing to reload */
    assert_no_dgram();
    mv_notify_ready(&n, "up");
    next_dgram(d, sizeof d);
    ck_assert_ptr_nonnull(strstr(d, "READY=1"));
    mv_notify_reloading(&n);
    next_dgram(d, sizeof d);
    ck_assert_ptr_nonnull(strstr(d, "RELOADING=1"));
    ck_assert_ptr_nonnull(strstr(d, "MONOTONIC_USEC="));
    mv_notify_reloading(&n);
    assert_no_dgram();
    /* READY=1 again ends the reload, even with the same status. */
    mv_notify_ready(&n, "up");
    next_dgram(d, sizeof d);
    ck_assert_ptr_nonnull(strstr(d, "READY=1"));
    ck_assert_ptr_nonnull(strstr(d, "STATUS=up"));
    mv_notify_ready(&n, "up");
    assert_no_dgram();
    /* Without a status, READY=1 alone. */
    mv_notify_reloading(&n);
    next_dgram(d, sizeof d);
    mv_notify_ready(&n, NULL);
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "READY=1");
    finish(&n);
}
END_TEST

START_TEST(stopping_once_then_no_ready)
{
    mv_notify_t n;
    char d[512];

    under_systemd();
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    mv_notify_ready(&n, "up");
    next_dgram(d, sizeof d);
    mv_notify_stopping(&n);
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STOPPING=1");
    mv_notify_stopping(&n);
    mv_notify_reloading(&n);
    mv_notify_ready(&n, "up again");
    assert_no_dgram();
    /* The status still tells how the stop goes. */
    mv_notify_status(&n, "stopping: %d tasks running", 3);
    next_dgram(d, sizeof d);
    ck_assert_str_eq(d, "STATUS=stopping: 3 tasks running");
    finish(&n);
}
END_TEST

typedef struct wd_test {
    uv_poll_t poll;
    int pings, others;
} wd_test_t;

/* Our "systemd" socket is readable: count what came; stop at the first ping. */
static void wd_readable_cb(uv_poll_t *p, int status, int events)
{
    wd_test_t *w = p->data;
    char d[512];
    ssize_t r;

    ck_assert_int_eq(status, 0);
    while ((r = recv(fx.fd, d, sizeof d - 1, MSG_DONTWAIT)) > 0) {
        d[r] = '\0';
        if (strcmp(d, "WATCHDOG=1") == 0)
            w->pings++;
        else
            w->others++;
    }
    if (w->pings > 0)
        uv_poll_stop(p); /* the loop's last referenced handle: uv_run returns */
}

START_TEST(watchdog_pings_on_the_loop)
{
    mv_notify_t n;
    wd_test_t w = {.pings = 0};

    under_systemd();
    watchdog_env("20000", getpid());
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    ck_assert_uint_eq(n.watchdog_usec, 20000);
    ck_assert_ptr_nonnull(strstr(log_text(), "event=systemd notify=yes watchdog_ms=20"));
    /* The timer alone must not keep the loop alive. */
    ck_assert_int_eq(uv_loop_alive(&fx.loop), 0);
    ck_assert_int_eq(uv_poll_init(&fx.loop, &w.poll, fx.fd), 0);
    w.poll.data = &w;
    ck_assert_int_eq(uv_poll_start(&w.poll, UV_READABLE, wd_readable_cb), 0);
    ck_assert_int_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_ge(w.pings, 1);
    ck_assert_int_eq(w.others, 0);
    /* uv_run returned while the (unref'd) watchdog was still running. */
    ck_assert(uv_is_active((uv_handle_t *)&n.watchdog));
    uv_close((uv_handle_t *)&w.poll, NULL);
    finish(&n);
}
END_TEST

START_TEST(watchdog_for_another_pid_is_ignored)
{
    mv_notify_t n;

    under_systemd();
    watchdog_env("20000", getpid() + 1);
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    ck_assert(n.enabled);
    ck_assert_uint_eq(n.watchdog_usec, 0);
    ck_assert(!n.timer_inited);
    ck_assert_ptr_nonnull(strstr(log_text(), "event=systemd notify=yes watchdog_ms=0"));
    finish(&n);
}
END_TEST

START_TEST(bad_watchdog_usec_is_logged_not_fatal)
{
    mv_notify_t n;
    const char *t;

    under_systemd();
    watchdog_env("soon", getpid());
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    ck_assert(n.enabled);
    ck_assert(!n.timer_inited);
    t = log_text();
    ck_assert_ptr_nonnull(strstr(t, "event=notify_failed call=sd_watchdog_enabled"));
    ck_assert_ptr_nonnull(strstr(t, "watchdog_ms=0"));
    finish(&n);
}
END_TEST

START_TEST(without_notify_socket_nothing_happens)
{
    mv_notify_t n;

    /* Even with watchdog variables for us: no NOTIFY_SOCKET, no systemd. */
    unsetenv("NOTIFY_SOCKET");
    watchdog_env("20000", getpid());
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    ck_assert(!n.enabled);
    ck_assert(!n.timer_inited);
    mv_notify_ready(&n, "2 workers");
    mv_notify_status(&n, "%d workers", 3);
    mv_notify_reloading(&n);
    mv_notify_ready(&n, NULL);
    mv_notify_stopping(&n);
    assert_no_dgram();
    ck_assert_str_eq(log_text(), "");
    ck_assert_int_eq(uv_loop_alive(&fx.loop), 0);
    finish(&n);
    mv_notify_close(&n); /* twice is harmless */
}
END_TEST

START_TEST(send_failure_is_logged_once)
{
    mv_notify_t n;
    char missing[160];
    const char *t;

    snprintf(missing, sizeof missing, "%s/missing.sock", fx.dir);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", missing, 1), 0);
    ck_assert_int_eq(mv_notify_open(&n, &fx.loop, &fx.log), 0);
    mv_notify_ready(&n, "2 workers");
    mv_notify_status(&n, "%d workers", 3);
    mv_notify_stopping(&n);
    ck_assert_uint_eq(n.failures, 3);
    t = log_text();
    ck_assert_int_eq(count(t, "event=notify_failed"), 1);
    ck_assert_ptr_nonnull(strstr(t, "warn"));
    ck_assert_ptr_nonnull(strstr(t, "call=sd_notify message=READY"));
    finish(&n);
}
END_TEST

START_TEST(env_private_names_the_notify_variables)
{
    ck_assert(mv_notify_env_private("NOTIFY_SOCKET=/run/systemd/notify"));
    ck_assert(mv_notify_env_private("NOTIFY_SOCKET=@/org/freedesktop/systemd1/notify"));
    ck_assert(mv_notify_env_private("WATCHDOG_USEC=30000000"));
    ck_assert(mv_notify_env_private("WATCHDOG_PID=1"));
    ck_assert(mv_notify_env_private("WATCHDOG_PID="));
    ck_assert(!mv_notify_env_private("NOTIFY_SOCKETS=x"));
    ck_assert(!mv_notify_env_private("NOTIFY_SOCKET"));
    ck_assert(!mv_notify_env_private("MY_NOTIFY_SOCKET=x"));
    ck_assert(!mv_notify_env_private("WATCHDOG=1"));
    ck_assert(!mv_notify_env_private("LISTEN_FDS=2"));
    ck_assert(!mv_notify_env_private("PATH=/usr/bin"));
    ck_assert(!mv_notify_env_private(""));
}
END_TEST

Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *msg = tcase_create("messages");
    TCase *wd = tcase_create("watchdog");
    TCase *env = tcase_create("env");

    tcase_add_checked_fixture(msg, setup, teardown);
    tcase_add_test(msg, ready_sends_ready_and_status_once);
    tcase_add_test(msg, status_skips_repeats_and_newlines);
    tcase_add_test(msg, reloading_then_ready_again);
    tcase_add_test(msg, stopping_once_then_no_ready);
    tcase_add_test(msg, without_notify_socket_nothing_happens);
    tcase_add_test(msg, send_failure_is_logged_once);
    suite_add_tcase(s, msg);

    tcase_add_checked_fixture(wd, setup, teardown);
    tcase_set_timeout(wd, 10);
    tcase_add_test(wd, watchdog_pings_on_the_loop);
    tcase_add_test(wd, watchdog_for_another_pid_is_ignored);
    tcase_add_test(wd, bad_watchdog_usec_is_logged_not_fatal);
    suite_add_tcase(s, wd);

    tcase_add_test(env, env_private_names_the_notify_variables);
    suite_add_tcase(s, env);
    return s;
}
