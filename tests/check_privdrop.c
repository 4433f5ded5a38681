/*
 * privdrop: [worker] user and group (issue 8 #7). memvisor runs as root and its workers as
 * nobody (65534): their ids, no supplementary group, the parent-death signal armed again after
 * the credential change, no write access to their own cgroup's limits, and the api socket, the
 * lines pipes and the listen sockets still work. Refusals: not root, and a command that user
 * cannot reach.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define HTTP mv_test_path("examples/http_service")

/* Whether the test can run: root, and a user nobody with uid 65534. */
static bool can_drop(const char *test)
{
    struct passwd *pw = getpwnam("nobody");

    if (geteuid() == 0 && pw && pw->pw_uid == 65534)
        return true;
    fprintf(stderr, "privdrop: skipped %s (needs root and nobody = 65534)\n", test);
    return false;
}

/* Whether memvisor gives its workers cgroups here. */
static bool cgroups_here(const mvrun_t *r)
{
    return strstr(r->log, "cgroup=/sys/fs/cgroup") != NULL;
}

START_TEST(api_workers_run_as_nobody)
{
    mvrun_t r;
    const char *args[] = {"run", "-o", "supervisor.workers=1", "-o", "worker.user=nobody", "--",
                          NULL,  NULL};

    if (!can_drop("api_workers_run_as_nobody"))
        return;
    run_init(&r, "whoami\ncgwrite\ncgroup\n");
    args[6] = run_reachable(&r, MVTEST);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    /* Its ids, no supplementary group (root has some), and SIGKILL on memvisor's death armed
     * again after setuid cleared it. */
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "uid=65534 gid=65534 groups=0 pdeathsig=9");
    if (cgroups_here(&r)) {
        /* In its own cgroup (moved as root, before the switch), whose limits it cannot touch. */
        ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "cgwrite=denied");
        ck_assert_ptr_nonnull(strstr(jstr(run_result(&r, 3), "result"), "/memvisor-"));
    }
    run_free(&r);

    /* The same worker as root: what the checks above would see without the switch. */
    args[4] = "worker.user=";
    run_init(&r, "whoami\ncgwrite\n");
    args[6] = MVTEST;
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_ptr_nonnull(strstr(jstr(run_result(&r, 1), "result"), "uid=0 gid=0 "));
    if (cgroups_here(&r))
        ck_assert_str_eq(jstr(run_result(&r, 2), "result"), "cgwrite=ok");
    run_free(&r);
}
END_TEST

START_TEST(lines_workers_run_as_numeric_ids)
{
    mvrun_t r;
    /* PR_GET_PDEATHSIG is 2. */
    const char *script =
        "import ctypes, os, sys\n"
        "v = ctypes.c_int()\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(v))\n"
        /* its memory cgroup's hard limit (v1, else v2), opened to write (nothing is) */
        "def cgwrite():\n"
        "    f = {}\n"
        "    for l in open('/proc/self/cgroup'):\n"
        "        _, c, p = l.rstrip('\\n').split(':', 2)\n"
        "        if 'memory' in c.split(','):\n"
        "            f[1] = '/sys/fs/cgroup/memory%s/memory.limit_in_bytes' % p\n"
        "        elif not c:\n"
        "            f[2] = '/sys/fs/cgroup%s/memory.max' % p\n"
        "    for k in (1, 2):\n"
        "        if k in f and os.path.exists(f[k]):\n"
        "            try:\n"
        "                os.close(os.open(f[k], os.O_WRONLY))\n"
        "                return 'ok'\n"
        "            except PermissionError:\n"
        "                return 'denied'\n"
        "    return 'none'\n"
        "for line in sys.stdin:\n"
        "    print('uid=%d gid=%d groups=%d pdeathsig=%d cgwrite=%s task=%s' % (os.getuid(),\n"
        "          os.getgid(), len(os.getgroups()), v.value, cgwrite(), line.strip()),\n"
        "          flush=True)\n";
    mvargs_t av;
    const char *const *args = run_argv(&av,
                                       RUN_OPTS("supervisor.workers=2", "worker.protocol=lines",
                                                "worker.user=65534", "worker.group=65534"),
                                       RUN_CMD("python3", "-c", script));

    if (!can_drop("lines_workers_run_as_numeric_ids"))
        return;
    run_init(&r, "a\nb\nc\nd\n");
    ck_assert_int_eq(chmod(r.dir, 0755), 0);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 4, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 3), "result"),
                     cgroups_here(&r)
                         ? "uid=65534 gid=65534 groups=0 pdeathsig=9 cgwrite=denied task=c"
                         : "uid=65534 gid=65534 groups=0 pdeathsig=9 cgwrite=none task=c");
    run_free(&r);
}
END_TEST

/* GET /ok on 127.0.0.1:port; the response's body (free it), or NULL. */
static char *http_get(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    const char *req = "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char buf[4096];
    size_t n = 0;
    ssize_t k;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return NULL;
    }
    while (n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    close(fd);
    buf[n] = '\0';
    return strdup(buf);
}

START_TEST(service_workers_as_nobody_accept_on_the_listen_socket)
{
    mvrun_t r;
    char sockopt[160], sock[128], cmd[512];
    const char *args[] = {"run",
                          "-o",
                          "supervisor.workers=2",
                          "-o",
                          "worker.user=nobody",
                          "-o",
                          "service.listen=127.0.0.1:0",
                          "-o",
                          sockopt,
                          "-o",
                          cmd,
                          NULL};
    char *line, *body;
    int port;

    if (!can_drop("service_workers_as_nobody_accept_on_the_listen_socket"))
        return;
    run_init(&r, NULL);
    r.service = true;
    snprintf(sock, sizeof sock, "%s/ctl.sock", r.dir);
    snprintf(sockopt, sizeof sockopt, "control.socket=%s", sock);
    snprintf(cmd, sizeof cmd, "worker.command=%s", run_reachable(&r, HTTP));
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=listen ");
    port = atoi(strstr(line, "addr=127.0.0.1:") + 15);
    free(line);
    free(run_wait_for(&r, "event=pool_ready")); /* both said HELLO on their api sockets */
    body = http_get(port);
    ck_assert_ptr_nonnull(body);
    ck_assert_msg(strstr(body, "200 OK") && strstr(body, "ok pid="), "response: %s", body);
    free(body);
    ck_assert_int_eq(run_ctl("stop", sock), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    ck_assert_int_eq(run_count(&r, "event=protocol_error"), 0);
    run_free(&r);
}
END_TEST

/* A reload cannot change the workers' user: [worker] user and group are kept until restart
 * (the reply names them in restart_needed), and so are the ids they resolved to. A reload
 * that dropped `user` started the next workers as root while saying it kept the old user. */
START_TEST(a_reload_keeps_the_workers_user)
{
    mvrun_t r;
    char conf[256], *line;
    const char *args[] = {"run", "-c", conf, "--", NULL, NULL};
    pid_t held;

    if (!can_drop("a_reload_keeps_the_workers_user"))
        return;
    run_init(&r, "whoami\nhold 0\nwhoami\n");
    snprintf(conf, sizeof conf, "%s",
             run_file(&r, "memvisor.ini",
                      "[supervisor]\nworkers = 1\n[worker]\nuser = nobody\n[limits]\n"
                      "max_tasks = 1\n"));
    args[4] = run_reachable(&r, MVTEST);
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "held pid=");
    held = (pid_t)atoi(strstr(line, "held pid=") + 9);
    free(line);
    run_file(&r, "memvisor.ini", "[supervisor]\nworkers = 1\n[limits]\nmax_tasks = 1\n");
    ck_assert_int_eq(kill(r.pid, SIGHUP), 0);
    line = run_wait_for(&r, "event=reload ");
    ck_assert_ptr_nonnull(strstr(line, "restart_needed=\"[\\\"worker.user\\\"]\""));
    free(line);
    ck_assert_int_eq(kill(held, SIGUSR1), 0);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 3, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 1), "result"), "uid=65534 gid=65534 groups=0 pdeathsig=9");
    ck_assert_str_eq(jstr(run_result(&r, 3), "result"), "uid=65534 gid=65534 groups=0 pdeathsig=9");
    run_free(&r);
}
END_TEST

/* Not root: refused at `memvisor check`, naming the key. */
START_TEST(refused_when_memvisor_is_not_root)
{
    mvrun_t r;
    const char *args[] = {"check", "-o", "worker.user=nobody", NULL};

    if (!can_drop("refused_when_memvisor_is_not_root"))
        return;
    run_init(&r, NULL);
    if (!run_as(&r, 65534, 65534)) {
        run_free(&r);
        return;
    }
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 2);
    ck_assert_ptr_nonnull(strstr(r.log, "-o:1: [worker] user: \"nobody\": only root can run "
                                        "workers as another user or group (memvisor runs as uid "
                                        "65534)"));
    run_free(&r);
}
END_TEST

/* A command the worker's user cannot reach fails at start, once, not as a crash loop. */
START_TEST(a_command_that_user_cannot_reach_is_refused)
{
    mvrun_t r;
    char priv[128];
    const char *args[] = {"run", "-o", "worker.user=nobody", "--", priv, NULL};

    if (!can_drop("a_command_that_user_cannot_reach_is_refused"))
        return;
    run_init(&r, "ok\n");
    snprintf(priv, sizeof priv, "%s/private", r.dir);
    ck_assert_int_eq(mkdir(priv, 0700), 0);
    strcat(priv, "/true");
    ck_assert_int_eq(symlink("/bin/true", priv), 0);
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 3);
    ck_assert_ptr_nonnull(
        strstr(r.log, "as [worker] user/group (given after --): Permission denied"));
    ck_assert_int_eq(run_count(&r, "event=spawn "), 0);
    run_free(&r);
}
END_TEST

Suite *privdrop_suite(void)
{
    Suite *s = suite_create("privdrop");
    TCase *tc = tcase_create("other_uid"); /* check_checkout runs it from a 0700 checkout */

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, api_workers_run_as_nobody);
    tcase_add_test(tc, lines_workers_run_as_numeric_ids);
    tcase_add_test(tc, service_workers_as_nobody_accept_on_the_listen_socket);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_reload_keeps_the_workers_user);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, refused_when_memvisor_is_not_root);
    tcase_add_test(tc, a_command_that_user_cannot_reach_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
