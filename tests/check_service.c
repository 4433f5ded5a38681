/*
 * Service mode end to end: the real memvisor binary running the example HTTP service
 * (examples/http_service.c) on a socket it binds once, a real HTTP client (wrk, curl) on
 * 127.0.0.1, and the control socket through the real CLI. Under load while workers recycle,
 * on `recycle all` and on `reload`, the client must see no error; bad control requests and
 * other users are refused; BEGIN/END misuse is a protocol error; socket activation and
 * sd_notify readiness work.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define HTTP mv_test_path("examples/http_service")

typedef struct svc {
    mvrun_t r;
    int port;
    char sock[128];   /* the control socket */
    char config[160]; /* the config file svc_config wrote, if any */
} svc_t;

static void svc_init(svc_t *s)
{
    memset(s, 0, sizeof *s);
    run_init(&s->r, NULL);
    s->r.service = true;
    snprintf(s->sock, sizeof s->sock, "%s/ctl.sock", s->r.dir);
}

/* (Re)writes the service's config file. */
static void svc_config(svc_t *s, const char *text)
{
    snprintf(s->config, sizeof s->config, "%s", run_file(&s->r, "service.ini", text));
}

/* Starts example HTTP workers (`worker_args`) on a free port, with the config file if one
 * was written and `extra` arguments (NULL-terminated, may be NULL); returns once every slot
 * is ready. */
static void svc_start(svc_t *s, const char *const *extra, const char *worker_args)
{
    const char *args[48] = {"run"};
    char *line, sockopt[192], cmd[256];
    int n = 1;

    snprintf(sockopt, sizeof sockopt, "control.socket=%s", s->sock);
    snprintf(cmd, sizeof cmd, "worker.command=%s %s", HTTP, worker_args);
    if (*s->config) {
        args[n++] = "-c";
        args[n++] = s->config;
    }
    args[n++] = "-o";
    args[n++] = "service.listen=127.0.0.1:0";
    args[n++] = "-o";
    args[n++] = sockopt;
    args[n++] = "-o";
    args[n++] = cmd;
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    run_start(&s->r, args, NULL);
    line = run_wait_for(&s->r, "event=listen ");
    s->port = atoi(strstr(line, "addr=127.0.0.1:") + 15);
    ck_assert_int_gt(s->port, 0);
    free(line);
    free(run_wait_for(&s->r, "event=pool_ready"));
}

#define CTL_SKIPPED (-1) /* that user cannot reach the run's directory */

/* `memvisor CMD [ARG] --socket S --json` as user `uid` (0 = us): the exit code; the reply in
 * *out (NULL when it printed none); CTL_SKIPPED. */
static int ctl_as(const svc_t *s, uid_t uid, const char *cmd, const char *arg, json_t **out)
{
    mvrun_t c;
    const char *args[] = {cmd, "--socket", s->sock, "--json", arg, NULL};
    const char *text;
    int code;

    run_init(&c, NULL);
    if (uid && !run_as(&c, uid, uid)) {
        run_free(&c);
        return CTL_SKIPPED;
    }
    run_start(&c, args, NULL);
    code = run_finish(&c);
    text = run_summary(&c);
    if (out)
        *out = json_loads(text, 0, NULL);
    if (code == 0)
        ck_assert_msg(!out || *out, "%s: not JSON: %s (stderr: %s)", cmd, text, c.log);
    run_free(&c);
    return code;
}

static int ctl(const svc_t *s, const char *cmd, const char *arg, json_t **out)
{
    return ctl_as(s, 0, cmd, arg, out);
}

/* Stops the service through the control socket: a clean exit, no lost request. */
static void svc_stop(svc_t *s)
{
    int code = ctl(s, "stop", NULL, NULL);

    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(run_finish(&s->r), 0);
    ck_assert_int_eq(run_count(&s->r, "event=request_lost"), 0);
    ck_assert_int_eq(run_count(&s->r, "event=protocol_error"), 0);
}

/* Whether a JSON array holds the string. */
static bool has_string(json_t *array, const char *want)
{
    size_t i;
    json_t *v;

    json_array_foreach(array, i, v) if (json_is_string(v) &&
                                        strcmp(json_string_value(v), want) == 0) return true;
    return false;
}

/* ---- wrk, as a child process: its report in a file ---- */

typedef struct load {
    pid_t pid;
    char out[160];
} load_t;

/* wrk on `path` for `secs`; with `script` (Lua, may be NULL), the requests it makes. */
static void load_start_with(load_t *l, svc_t *s, const char *path, const char *secs,
                            const char *script)
{
    char url[96], lua[192];

    snprintf(l->out, sizeof l->out, "%s/wrk.txt", s->r.dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    snprintf(lua, sizeof lua, "%s", script ? run_file(&s->r, "load.lua", script) : "");
    l->pid = fork();
    ck_assert_int_ge(l->pid, 0);
    if (l->pid == 0) {
        int fd = open(l->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (*lua)
            execlp("wrk", "wrk", "-t2", "-c8", "-d", secs, "--timeout", "5s", "-s", lua, url,
                   (char *)NULL);
        else
            execlp("wrk", "wrk", "-t2", "-c8", "-d", secs, "--timeout", "5s", url, (char *)NULL);
        _exit(127);
    }
}

static void load_start(load_t *l, svc_t *s, const char *path, const char *secs)
{
    load_start_with(l, s, path, secs, NULL);
}

/* Whether wrk still runs; meanwhile memvisor's log is read (up to 50 ms of waiting). */
static bool load_running(load_t *l, svc_t *s)
{
    siginfo_t si = {0};
    struct pollfd pfd = {.fd = s->r.log_fd, .events = POLLIN};

    ck_assert_int_eq(waitid(P_PID, (id_t)l->pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
    if (si.si_pid == l->pid)
        return false;
    poll(&pfd, 1, 50);
    run_drain(&s->r);
    return true;
}

/* Reads memvisor's log while wrk runs until it has `n` lines with `needle`: true then;
 * false when wrk ended first (it is left to load_finish to reap). The tests under load run
 * wrk for up to 40 s and stop it (load_stop) once what they wait for has happened, rather
 * than for a fixed time with a floor on what it served: a loaded machine serves less in a
 * given time, not differently. */
static bool load_until(load_t *l, svc_t *s, const char *needle, int n)
{
    while (run_count(&s->r, needle) < n)
        if (!load_running(l, s))
            return run_count(&s->r, needle) >= n;
    return true;
}

#define IDLE_CLOSE "closed an idle keep-alive connection"

/* Whether the draining workers' closes of idle keep-alive connections explain `n` "read"
 * errors of wrk: it counts finding a pooled connection closed as one, although it had sent
 * nothing on it; a client that was stalled through a drain's idle allowance (200 ms; wrk
 * under load, once in ~60 runs beside 5 busy loops: "read 4", its 4 idle connections
 * closed together) sees it. The example says each close on stderr, a moment after wrk may
 * have seen it: the log is read a little longer for them (bounded). */
static bool idle_closes_explain(svc_t *s, long n)
{
    for (int i = 0; i < 100 && run_count(&s->r, IDLE_CLOSE) < n; i++) {
        struct pollfd pfd = {.fd = s->r.log_fd, .events = POLLIN};
        poll(&pfd, 1, 20);
        run_drain(&s->r);
    }
    return run_count(&s->r, IDLE_CLOSE) >= n;
}

/* Waits for wrk; returns the requests it completed and asserts that none failed: no socket
 * error but the read errors of idle connections a drain closed (none lost a request). */
static long load_finish(load_t *l, svc_t *s)
{
    int status;
    char *text, *p;
    long requests, conn = -1, rd = -1, wr = -1, tmo = -1;

    /* Meanwhile memvisor's log keeps flowing (recycles): read it, or its pipe fills up. */
    while (waitpid(l->pid, &status, WNOHANG) == 0) {
        struct pollfd pfd = {.fd = s->r.log_fd, .events = POLLIN};
        poll(&pfd, 1, 50);
        run_drain(&s->r);
    }
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    text = read_text(l->out);
    ck_assert_ptr_nonnull(text);
    /* wrk prints these lines only when there were errors. */
    if ((p = strstr(text, "Socket errors: "))) {
        ck_assert_int_eq(sscanf(p, "Socket errors: connect %ld, read %ld, write %ld, timeout %ld",
                                &conn, &rd, &wr, &tmo),
                         4);
        ck_assert_log(&s->r, conn == 0 && wr == 0 && tmo == 0 && idle_closes_explain(s, rd),
                      "wrk saw socket errors (%d idle connections closed):\n%s",
                      run_count(&s->r, IDLE_CLOSE), text);
    }
    ck_assert_msg(!strstr(text, "Non-2xx"), "wrk saw failed responses:\n%s", text);
    p = strstr(text, " requests in ");
    ck_assert_msg(p != NULL, "no wrk summary:\n%s", text);
    while (p > text && p[-1] != '\n' && p[-1] != ' ')
        p--;
    requests = atol(p);
    free(text);
    return requests;
}

/* Interrupts wrk (it prints its summary then) and waits for it: load_finish. */
static long load_stop(load_t *l, svc_t *s)
{
    kill(l->pid, SIGINT);
    return load_finish(l, s);
}

/* ---- tests ---- */

START_TEST(recycling_under_load_loses_no_request)
{
    svc_t s;
    load_t l;
    const char *extra[] = {"-o", "supervisor.workers=2", "-o", "limits.max_tasks=300", NULL};

    bool three;

    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 0");
    load_start(&l, &s, "/ok", "40s");
    /* Every 300 requests of a worker, it is replaced: three replacements under wrk. wrk's
     * count when it is stopped trails what the workers answered (807 for 3 x 300 answered,
     * beside 5 busy loops): no floor on it, the recycles are the workers' own count. */
    three = load_until(&l, &s, "reason=max_tasks", 3);
    ck_assert_int_gt(load_stop(&l, &s), 0);
    ck_assert_msg(three, "%d recycles in wrk's 40 s", run_count(&s.r, "reason=max_tasks"));
    svc_stop(&s);
    run_free(&s.r);
}
END_TEST

/* A leaking service under load crosses its soft limit within a second of each start: each
 * time a recycle, never a failure (no premature_recycle, no crash_limit: the run would end
 * and close the listening socket), and no request fails. Its replacement takes 300 ms to
 * start: the old worker serves on only up to the handover headroom, then drains while the
 * kernel queues the connections for the replacement. wrk runs until memvisor has recycled
 * three times (40 s at most), then is interrupted (it prints its summary). Before, wrk ran 4 s
 * and the test wanted a recycle per 520 requests served (up to 3): a worker serves on until
 * memvisor reads its memory, and a memvisor that the machine's load kept off the CPU while
 * wrk and the worker ran read it late: 1 recycle for 3 x 520 requests or more, once at load
 * 8, and when memvisor was held (SIGSTOP) for the first 3 s of wrk's 4. */
START_TEST(a_leaking_service_under_load_is_recycled_not_failed)
{
    svc_t s;
    load_t l;
    /* The hard limit is far: the example leaks ~700 MB/s under wrk here, and a worker that
     * drains still answers what its connections have in flight; a kernel OOM kill then
     * resets them, which is not what this test is about. */
    const char *extra[] = {"-o", "supervisor.workers=1",         "-o", "worker.protocol=none",
                           "-o", "limits.memory_soft=24M",       "-o", "limits.memory_hard=2G",
                           "-o", "recycle.handover_headroom=8M", "-o", "worker.crash_limit=3",
                           NULL};
    bool three;

    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 64 --start-ms 300");
    load_start(&l, &s, "/leak", "40s");
    three = load_until(&l, &s, "event=recycle ", 3);
    ck_assert_int_gt(load_stop(&l, &s), 0); /* its count trails: see above */
    ck_assert_msg(three, "%d recycles in wrk's 40 s", run_count(&s.r, "event=recycle "));
    svc_stop(&s);
    ck_assert_int_ge(run_count(&s.r, "event=recycle "), 3);
    ck_assert_int_eq(run_count(&s.r, "event=premature_recycle"), 0);
    ck_assert_int_eq(run_count(&s.r, "event=crash_limit"), 0);
    ck_assert_int_ge(run_count(&s.r, "event=headroom_passed"), 1);
    run_free(&s.r);
}
END_TEST

/* [recycle] target = child: a prefork master (the example with --children 2, as gunicorn's
 * arbiter) leaking under load. Each memory recycle tells the largest child to stop, and the
 * master forks its replacement: the worker itself (the master) is never replaced, no
 * request fails, and status and the log count the child recycles. */
/* Mixed requests under load, one kind of three leaking 64 KiB each: each request's heap
 * figures are the worker's own at its BEGIN and END (memvisor reads the messages after the
 * fact, often several at once), so each leaking request retained its 64 KiB and the others
 * nothing, and the leak suspect is that kind alone. Before, page growth read late landed on
 * whichever requests were open then, and all three kinds were suspected. */
START_TEST(a_mixed_service_names_the_leaking_request_kind_alone)
{
    static const char lua[] = "local paths = {'/leak', '/ok', '/', '/ok'}\n"
                              "local i = 0\n"
                              "request = function()\n"
                              "  i = i + 1\n"
                              "  return wrk.format('GET', paths[(i % #paths) + 1])\n"
                              "end\n";
    svc_t s;
    load_t l;
    const char *extra[] = {"-o", "supervisor.workers=2",  "-o",        "limits.memory_soft=1G",
                           "-o", "limits.memory_hard=2G", "--results", NULL,
                           NULL};
    size_t leaks = 0, others = 0;

    svc_init(&s);
    extra[7] = s.r.results;
    svc_start(&s, extra, "--leak-kb 64");
    load_start_with(&l, &s, "/", "40s", lua);
    /* Until the leak is suspected and 1,200 requests have results: enough of each kind for
     * a wrong suspect to show. */
    while (
        (run_count(&s.r, "event=leak_suspect kind=leak ") < 1 || file_lines(s.r.results) < 1200) &&
        load_running(&l, &s))
        ;
    ck_assert_int_gt(load_stop(&l, &s), 0);
    svc_stop(&s);
    for (size_t i = 0; i < s.r.nres; i++) {
        json_t *j = s.r.res[i];
        const char *kind = jstr(j, "kind");
        long long kept = jint(j, "heap_retained");

        ck_assert_str_eq(jstr(j, "heap_source"), "worker");
        if (strcmp(kind, "leak") == 0) {
            /* 64 KiB and glibc's chunk header, rounded */
            ck_assert_msg(kept >= 65536 && kept <= 65536 + 32, "leak retained %lld", kept);
            leaks++;
        } else {
            ck_assert_msg(kept == 0, "%s retained %lld", kind, kept);
            others++;
        }
    }
    ck_assert_uint_gt(leaks, 100);
    ck_assert_uint_gt(others, 200);
    ck_assert_int_ge(run_count(&s.r, "event=leak_suspect kind=leak "), 1);
    ck_assert_int_eq(run_count(&s.r, "event=leak_suspect"),
                     run_count(&s.r, "event=leak_suspect kind=leak "));
    run_free(&s.r);
}
END_TEST

START_TEST(a_leaking_master_has_its_children_recycled_not_itself)
{
    svc_t s;
    load_t l;
    json_t *reply;
    const char *extra[] = {"-o", "supervisor.workers=1",   "-o", "worker.protocol=none",
                           "-o", "limits.memory_soft=24M", "-o", "limits.memory_hard=2G",
                           "-o", "recycle.target=child",   NULL};
    const char *p;
    long master, children = 0;

    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 64 --children 2");
    load_start(&l, &s, "/leak", "40s");
    load_until(&l, &s, "action=child ", 3);
    ck_assert_int_gt(load_stop(&l, &s), 0);
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    children = jint(json_object_get(reply, "totals"), "child_recycles");
    json_decref(reply);
    svc_stop(&s);
    ck_assert_int_ge(children, 3);
    ck_assert_int_ge(run_count(&s.r, "action=child "), children);
    ck_assert_int_eq(run_count(&s.r, "event=spawn "), 1); /* the master, once */
    ck_assert_int_eq(run_count(&s.r, "event=exit "), 1);  /* at the stop */
    ck_assert_int_eq(run_count(&s.r, "event=child_recycle_skipped"), 0);
    ck_assert_int_eq(run_count(&s.r, "event=crash_limit"), 0);
    /* Each stopped child is seen gone, but those still stopping when the run stopped. */
    ck_assert_int_ge(run_count(&s.r, "event=child_gone "), 1);
    ck_assert_int_le(run_count(&s.r, "event=child_gone "), run_count(&s.r, "action=child "));
    master = atol(strstr(strstr(s.r.log, "event=spawn "), " pid=") + 5);
    { /* each a recycle mark on the worker's memory timeline */
        char path[300], *tl;
        snprintf(path, sizeof path, "%s/state/latest/timeline.csv", s.r.dir);
        ck_assert_ptr_nonnull(tl = read_text(path));
        ck_assert_msg(strstr(tl, "soft_limit_child"), "%.400s", tl);
        free(tl);
    }
    for (p = s.r.log; (p = strstr(p, "action=child ")); p++) {
        const char *line = p;
        while (line > s.r.log && line[-1] != '\n')
            line--;
        ck_assert_int_eq(atol(strstr(line, " pid=") + 5), master);
        ck_assert_int_ne(atol(strstr(p, " child=") + 7), master);
        ck_assert_int_gt(atoll(strstr(p, " child_mem=") + 11), 0);
    }
    run_free(&s.r);
}
END_TEST

START_TEST(recycle_all_and_reload_under_load_lose_no_request)
{
    svc_t s;
    load_t l;
    json_t *reply;

    svc_init(&s);
    svc_config(&s, "[supervisor]\nworkers = 2\n[limits]\nmemory_soft = 64M\n");
    svc_start(&s, NULL, "--leak-kb 0");
    load_start(&l, &s, "/ok", "40s");
    ck_assert_int_eq(ctl(&s, "recycle", "all", &reply), 0);
    ck_assert_int_eq(json_array_size(json_object_get(reply, "workers")), 2);
    json_decref(reply);
    svc_config(&s, "[supervisor]\nworkers = 2\n[limits]\nmemory_soft = 48M\n"
                   "max_tasks = 5000\n[service]\nbacklog = 99\n");
    ck_assert_int_eq(ctl(&s, "reload", NULL, &reply), 0);
    ck_assert(has_string(json_object_get(reply, "changed"), "limits.memory_soft"));
    ck_assert(has_string(json_object_get(reply, "changed"), "limits.max_tasks"));
    ck_assert(has_string(json_object_get(reply, "restart_needed"), "service.backlog"));
    json_decref(reply);
    /* recycle all, then the reload's rolling replacement: each slot twice, under wrk. */
    ck_assert_msg(load_until(&l, &s, "reason=requested", 4), "%d replacements in wrk's 40 s",
                  run_count(&s.r, "reason=requested"));
    ck_assert_int_gt(load_stop(&l, &s), 0);
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    ck_assert_int_eq(jint(json_object_get(reply, "limits"), "memory_soft"), 48 << 20);
    ck_assert_int_eq(jint(json_object_get(reply, "run"), "reloads"), 1);
    json_decref(reply);
    svc_stop(&s);
    ck_assert_int_eq(run_count(&s.r, "event=reload "), 1);
    run_free(&s.r);
}
END_TEST

/* A service scaled under load, 2 -> 4 -> 1 (`memvisor workers N`): the new workers share the
 * listening socket and serve, the removed ones drain what their connections have in flight,
 * and no request fails; status counts the slots each time. */
START_TEST(scaling_a_service_under_load_loses_no_request)
{
    svc_t s;
    load_t l;
    json_t *reply;
    char *line;

    svc_init(&s);
    svc_start(&s, (const char *[]){"-o", "supervisor.workers=2", NULL}, "--leak-kb 0");
    load_start(&l, &s, "/ok", "40s");
    ck_assert_int_eq(ctl(&s, "workers", "4", &reply), 0);
    ck_assert_int_eq(jint(reply, "from"), 2);
    ck_assert_int_eq(jint(reply, "to"), 4);
    json_decref(reply);
    run_wait_nth(&s.r, "event=ready worker=", 2);
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    ck_assert_int_eq(jint(json_object_get(reply, "totals"), "slots"), 4);
    json_decref(reply);
    ck_assert_int_eq(ctl(&s, "workers", "1", NULL), 0);
    /* The three removed drain what their connections have in flight, under wrk. */
    ck_assert_msg(load_until(&l, &s, "event=exit ", 3), "%d exits in wrk's 40 s",
                  run_count(&s.r, "event=exit "));
    ck_assert_int_gt(load_stop(&l, &s), 0);
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    ck_assert_int_eq(jint(json_object_get(reply, "totals"), "slots"), 1);
    ck_assert_int_eq(jint(json_object_get(reply, "totals"), "workers"), 1);
    json_decref(reply);
    svc_stop(&s);
    line = strstr(s.r.log, "event=scaled from=4 to=1 ");
    ck_assert_log(&s.r, line, "no scaled from=4 to=1");
    ck_assert_int_eq(run_count(&s.r, "reason=scaled_down action=drain"), 3);
    run_free(&s.r);
}
END_TEST

START_TEST(an_invalid_reload_changes_nothing)
{
    svc_t s;
    json_t *before, *after;
    char *line;

    svc_init(&s);
    svc_config(&s, "[limits]\nmemory_soft = 64M\n");
    svc_start(&s, (const char *[]){"-o", "supervisor.workers=1", NULL}, "--leak-kb 0");
    ck_assert_int_eq(ctl(&s, "status", NULL, &before), 0);
    svc_config(&s, "[limits]\nmemory_soft = 48M\nmemory_sofft = 1M\n");
    ck_assert_int_eq(ctl(&s, "reload", NULL, NULL), 1);
    line = run_wait_for(&s.r, "event=reload_failed");
    ck_assert_ptr_nonnull(strstr(line, "service.ini:3: [limits] memory_sofft"));
    free(line);
    /* SIGHUP is the same reload. */
    kill(s.r.pid, SIGHUP);
    free(run_wait_for(&s.r, "event=reload_failed"));
    ck_assert_int_eq(ctl(&s, "status", NULL, &after), 0);
    ck_assert_int_eq(jint(json_object_get(after, "limits"), "memory_soft"), 64 << 20);
    ck_assert_int_eq(jint(json_object_get(after, "run"), "reloads"), 0);
    /* The same worker serves: nothing was recycled. */
    ck_assert_int_eq(jint(json_array_get(json_object_get(after, "workers"), 0), "pid"),
                     jint(json_array_get(json_object_get(before, "workers"), 0), "pid"));
    json_decref(before);
    json_decref(after);
    svc_stop(&s);
    run_free(&s.r);
}
END_TEST

/* The parent pid of a process, from /proc/PID/stat; -1 if gone. */
static int parent_of(int pid)
{
    char path[64], text[512], *p;
    int ppid = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f && fgets(text, sizeof text, f) && (p = strrchr(text, ')')))
        ppid = atoi(p + 4); /* ") S PPID" */
    if (f)
        fclose(f);
    return ppid;
}

START_TEST(status_shows_the_workers_that_exist)
{
    svc_t s;
    json_t *reply, *w;
    size_t i;
    const char *text;

    svc_init(&s);
    svc_start(&s, (const char *[]){"-o", "supervisor.workers=3", NULL}, "--leak-kb 0");
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    ck_assert_str_eq(jstr(json_object_get(reply, "run"), "mode"), "service");
    ck_assert_int_eq(jint(json_object_get(reply, "run"), "pid"), s.r.pid);
    ck_assert_int_eq(json_array_size(json_object_get(reply, "workers")), 3);
    ck_assert_int_eq(jint(json_object_get(reply, "totals"), "workers"), 3);
    json_array_foreach(json_object_get(reply, "workers"), i, w)
    {
        ck_assert_int_eq(jint(w, "slot"), (long long)i + 1); /* in slot order */
        ck_assert_int_eq(parent_of((int)jint(w, "pid")), s.r.pid);
        ck_assert_str_eq(jstr(w, "state"), "ready");
    }
    json_decref(reply);
    /* The table for people, and the metrics. */
    {
        mvrun_t c;
        run_init(&c, NULL);
        run_start(&c, (const char *[]){"status", "--socket", s.sock, NULL}, NULL);
        ck_assert_int_eq(run_finish(&c), 0);
        text = run_summary(&c);
        ck_assert_ptr_nonnull(strstr(text, "SLOT"));
        run_free(&c);
    }
    ck_assert_int_eq(ctl(&s, "metrics", NULL, &reply), 0);
    ck_assert_ptr_nonnull(strstr(jstr(reply, "text"), "memvisor_workers 3\n"));
    ck_assert_ptr_nonnull(strstr(jstr(reply, "text"), "# TYPE memvisor_recycles_total counter"));
    json_decref(reply);
    svc_stop(&s);
    run_free(&s.r);
}
END_TEST

START_TEST(control_requests_from_others_and_garbage_are_refused)
{
    svc_t s;
    json_t *reply;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char buf[512];
    ssize_t n;
    int fd, code;

    svc_init(&s);
    svc_start(&s, (const char *[]){"-o", "supervisor.workers=1", NULL}, "--leak-kb 0");
    /* 0600: another user cannot even connect; with the mode opened up, SO_PEERCRED says no. */
    code = ctl_as(&s, 65534, "status", NULL, NULL);
    if (code != CTL_SKIPPED) {
        ck_assert_int_eq(code, 3);
        ck_assert_int_eq(chmod(s.r.dir, 0755), 0);
        ck_assert_int_eq(chmod(s.sock, 0666), 0);
        ck_assert_int_eq(ctl_as(&s, 65534, "stop", NULL, &reply), 1);
        ck_assert_ptr_nonnull(strstr(jstr(reply, "error"), "permission denied"));
        ck_assert_ptr_nonnull(strstr(jstr(reply, "error"), "(only uid 0 may)"));
        json_decref(reply);
    }
    /* Garbage gets an error reply and changes nothing. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(un.sun_path, sizeof un.sun_path, "%.100s", s.sock);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    ck_assert_int_eq(write(fd, "\x01\xffgarbage\n", 10), 10);
    n = read(fd, buf, sizeof buf - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "\"ok\":false"));
    close(fd);
    ck_assert_int_eq(ctl(&s, "recycle", "9", NULL), 1);
    ck_assert_int_eq(ctl(&s, "status", NULL, &reply), 0);
    ck_assert_int_eq(jint(json_object_get(reply, "totals"), "workers"), 1);
    json_decref(reply);
    svc_stop(&s);
    ck_assert_int_ge(run_count(&s.r, "event=control_refused"), 1);
    ck_assert_int_eq(run_count(&s.r, "event=recycle "), 0);
    run_free(&s.r);
}
END_TEST

START_TEST(begin_end_misuse_is_a_protocol_error)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "control.socket=none", "worker.crash_limit=0"),
        RUN_CMD(MVTEST, "--service", "begin a; alloc 1; end 0; rawend 99"));

    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=protocol_error"));
    ck_assert_ptr_nonnull(strstr(r.log, "END 99 with no request open"));
    kill(r.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&r), 0);
    run_free(&r);
}
END_TEST

/* A free TCP port on 127.0.0.1 (bound, then released). */
static int free_port(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    port = ntohs(in.sin_port);
    close(fd);
    return port;
}

/* Waits until something listens on 127.0.0.1:port (read from /proc/net/tcp, so nothing
 * connects: a probe would itself trigger socket activation). */
static void wait_listening(int port)
{
    char want[32], line[256];

    snprintf(want, sizeof want, ":%04X 00000000:0000 0A", (unsigned)port);
    for (int tries = 0; tries < 1000; tries++) {
        FILE *f = fopen("/proc/net/tcp", "r");
        bool found = false;

        ck_assert_ptr_nonnull(f);
        while (!found && fgets(line, sizeof line, f))
            found = strstr(line, want) != NULL;
        fclose(f);
        if (found)
            return;
        usleep(10 * 1000);
    }
    ck_abort_msg("nothing listens on port %d", port);
}

/* `curl URL`: its exit code; the body in out. */
static int curl(const char *url, char *out, size_t cap)
{
    char cmd[256];
    FILE *f;
    size_t n;
    int status;

    snprintf(cmd, sizeof cmd, "curl -s --max-time 10 '%s'", url);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(socket_activation_sockets_are_passed_on)
{
    mvrun_t r;
    char listen[64], url[96], body[256];
    int port = free_port();
    const char *wrap[] = {"systemd-socket-activate", "-l", listen, "--fdname=web", NULL};
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=2", "control.socket=none", "service.listen=127.0.0.1:1"),
        RUN_CMD(HTTP));
    char *line;

    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    run_init(&r, NULL);
    r.service = true;
    r.wrap = wrap;
    run_start(&r, args, NULL);
    wait_listening(port);
    /* systemd-socket-activate starts memvisor at the first connection. */
    snprintf(url, sizeof url, "http://%s/ok", listen);
    ck_assert_int_eq(curl(url, body, sizeof body), 0);
    ck_assert_ptr_nonnull(strstr(body, "ok pid="));
    line = run_wait_for(&r, "event=listen ");
    ck_assert_ptr_nonnull(strstr(line, "from=\"socket activation\""));
    ck_assert_ptr_nonnull(strstr(line, "name=web"));
    free(line);
    kill(r.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&r), 0);
    /* The configured address (port 1, privileged anyway) was never bound. */
    ck_assert_int_eq(run_count(&r, "event=listen_ignored"), 1);
    run_free(&r);
}
END_TEST

START_TEST(systemd_hears_ready_once_every_slot_is_up)
{
    svc_t s;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = 20};
    char buf[512], path[128];
    bool ready = false;
    ssize_t n;
    int fd;

    svc_init(&s);
    snprintf(path, sizeof path, "%s/notify.sock", s.r.dir);
    snprintf(un.sun_path, sizeof un.sun_path, "%.100s", path);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", path, 1);
    svc_start(&s, (const char *[]){"-o", "supervisor.workers=2", NULL}, "");
    unsetenv("NOTIFY_SOCKET");
    /* Blocks until memvisor says it (the receive timeout only ends a broken test). */
    while (!ready && (n = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
        buf[n] = '\0';
        ready = strstr(buf, "READY=1") != NULL;
    }
    ck_assert_msg(ready, "no READY=1");
    ck_assert_ptr_nonnull(strstr(s.r.log, "event=systemd"));
    svc_stop(&s);
    close(fd);
    /* The workers did not inherit memvisor's NOTIFY_SOCKET: none of them spoke to it. */
    run_free(&s.r);
}
END_TEST

START_TEST(a_hard_limit_kill_is_the_only_lost_request_and_says_so)
{
    svc_t s;
    char url[96], body[256], results[160];
    json_t *lost, *ok;

    svc_init(&s);
    snprintf(results, sizeof results, "tasks.results=%s", s.r.results);
    svc_start(&s,
              (const char *[]){"-o", "supervisor.workers=1", "-o", "limits.memory_soft=0", "-o",
                               "limits.memory_hard=24M", "-o", "supervisor.cgroup=off", "-o",
                               "limits.sample_interval=5ms", "-o", results, NULL},
              "--leak-kb 0");
    /* One request that allocates far past the limit and holds it: the worker is killed in it
     * (a sample is due every 5 ms; the request would take 20 s). */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/leak?kb=65536&ms=20000", s.port);
    ck_assert_int_ne(curl(url, body, sizeof body), 0);
    free(run_wait_for(&s.r, "event=request_lost"));
    /* The replacement serves (the connection waits on the shared socket until it is up). */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", s.port);
    ck_assert_int_eq(curl(url, body, sizeof body), 0);
    ck_assert_int_eq(ctl(&s, "stop", NULL, NULL), 0);
    ck_assert_int_eq(run_finish(&s.r), 0);
    ck_assert_int_eq(run_count(&s.r, "event=request_lost"), 1);
    ck_assert_int_eq(run_count(&s.r, "reason=hard_limit action=kill"), 1);
    /* Request lines have times and a generation too: the lost one, of the killed worker (from
     * its BEGIN to the kill), and the one its replacement served. */
    ck_assert_uint_eq(s.r.nres, 2);
    lost = s.r.res[0], ok = s.r.res[1];
    ck_assert_str_eq(jstr(lost, "status"), "failed");
    ck_assert_int_eq(jint(lost, "gen"), 1);
    /* No END came: it has no duration (not 0 ms); the served one has its own. */
    ck_assert(json_is_null(json_object_get(lost, "duration_ms")));
    ck_assert(json_is_real(json_object_get(ok, "duration_ms")));
    ck_assert_str_eq(jstr(ok, "status"), "ok");
    ck_assert_int_eq(jint(ok, "gen"), 2);
    /* ISO 8601 UTC with microseconds sort as text: BEGIN <= END, and the lost one first. */
    ck_assert_int_le(strcmp(jstr(lost, "started"), jstr(lost, "ended")), 0);
    ck_assert_int_le(strcmp(jstr(lost, "ended"), jstr(ok, "started")), 0);
    ck_assert_int_le(strcmp(jstr(ok, "started"), jstr(ok, "ended")), 0);
    ck_assert_uint_eq(strlen(jstr(ok, "ended")), 27);
    run_free(&s.r);
}
END_TEST

/* cgroup v1: at the hard limit the kernel's OOM killer takes the largest process of the
 * worker's cgroup. A master's child taken while the master lives on (it forks another) lost
 * the request it served: said once as kernel_oom process=child kills=1 on the master, counted
 * in the report, and the master's own exit later is not taken for an OOM kill. */
START_TEST(a_kernel_oom_kill_of_a_masters_child_is_said)
{
    svc_t s;
    char url[96], body[256], path[300], *line, *out;
    const char *extra[] = {"-o", "supervisor.workers=1",       "-o", "worker.protocol=none",
                           "-o", "limits.memory_soft=0",       "-o", "limits.memory_hard=32M",
                           "-o", "limits.sample_interval=5ms", NULL};
    long master;

    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 0 --children 1");
    if (!strstr(s.r.log, "memory=\"cgroup v1 ")) { /* v2 kills the whole worker (oom.group) */
        fprintf(stderr, "a_kernel_oom_kill_of_a_masters_child_is_said: skipped, not cgroup v1\n");
        svc_stop(&s);
        run_free(&s.r);
        return;
    }
    master = atol(strstr(strstr(s.r.log, "event=spawn "), " pid=") + 5);
    /* The child touches 64 MiB under a 32 MiB limit: killed in the request. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok?kb=65536", s.port);
    ck_assert_int_ne(curl(url, body, sizeof body), 0);
    line = run_wait_for(&s.r, "event=kernel_oom ");
    ck_assert_msg(strstr(line, " process=child kills=1 "), "%s", line);
    ck_assert_int_eq(atol(strstr(line, " pid=") + 5), master);
    free(line);
    /* The master's next child serves. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", s.port);
    ck_assert_int_eq(curl(url, body, sizeof body), 0);
    svc_stop(&s);
    ck_assert_int_eq(run_count(&s.r, "event=kernel_oom "), 1);
    ck_assert_int_eq(run_count(&s.r, "event=spawn "), 1);
    ck_assert_int_eq(run_count(&s.r, "reason=shutdown status=0"), 1); /* not kernel_oom */
    snprintf(path, sizeof path, "%s/state/latest", s.r.dir);
    ck_assert_int_eq(run_capture((const char *[]){MEMVISOR, "report", path, NULL}, &out), 0);
    ck_assert_msg(strstr(out, "Kernel OOM kills 1 (of workers or of their children)\n"), "%s", out);
    free(out);
    run_free(&s.r);
}
END_TEST

/* Whether a connect to 127.0.0.1:port is refused (1) or taken (0, closed again). */
static int refused(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), r;

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r = connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno == ECONNREFUSED;
    close(fd);
    return r;
}

/* On stop, memvisor lets go of its listening sockets: once the draining worker has closed its
 * copy, a new client is refused while the drain goes on, never queued by the kernel until
 * memvisor exits and then reset. The drain is kept going by a connection with half a request
 * (the example gives one 2 s): the refusal must come while that connection is still open. */
START_TEST(a_stopping_service_refuses_new_clients_while_it_drains)
{
    svc_t s;
    struct sockaddr_in a = {.sin_family = AF_INET};
    char buf[512] = "";
    const char *extra[] = {"-o", "supervisor.workers=1", NULL};
    int fd, got = 0, tries;
    ssize_t n;
    struct pollfd pfd;

    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 0");
    a.sin_port = htons((uint16_t)s.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    /* A whole request first: the worker has accepted this connection. */
    ck_assert_int_gt(write(fd, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 29), 0);
    while (!strstr(buf, "\r\n\r\n") && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
        got += (int)n;
        buf[got] = '\0';
    }
    ck_assert_msg(strstr(buf, "200 OK"), "%s", buf);
    ck_assert_int_gt(write(fd, "GET /ok HTTP/1.1\r\n", 18), 0); /* half of the next one */
    ck_assert_int_eq(ctl(&s, "stop", NULL, NULL), 0);
    for (tries = 0; tries < 400 && !refused(s.port); tries++)
        usleep(5 * 1000);
    /* Refused, and the drain still holds our connection: no EOF on it yet. */
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    ck_assert_msg(tries < 400, "never refused");
    ck_assert_msg(poll(&pfd, 1, 0) == 0, "refused only once memvisor had ended its drain");
    close(fd);
    ck_assert_int_eq(run_finish(&s.r), 0);
    run_free(&s.r);
}
END_TEST

/* Occurrences of `needle` in buf[0..len). */
static int count_in(const char *buf, size_t len, const char *needle)
{
    size_t k = strlen(needle);
    int n = 0;

    for (const char *p = buf; (p = memmem(p, len - (size_t)(p - buf), needle, k)); p += k)
        n++;
    return n;
}

/* A worker busy at every round still drains on SIGTERM. The example waits in ppoll with the
 * signals unblocked, and ppoll delivers a pending signal only when it waits: with a ready fd
 * at every round (constant load) the worker never saw SIGTERM and served on with keep-alive
 * until its input ran dry -- under wrk for seconds: a leaking worker (protocol none) that
 * memvisor stopped grew to its hard limit, and its kernel OOM kill reset wrk's connections.
 * A client pipelines 100,000 requests from a child process and reads the answers; after the
 * first ones the worker gets SIGTERM: the next answer says Connection: close and is the last
 * (before, all were answered, kept alive: 20,000 in 3 runs of 3). 100,000 answers are more
 * than the socket buffers hold, so the worker cannot answer them all before the client
 * reads its first and sends the signal, however late the client runs. */
START_TEST(a_busy_worker_drains_on_sigterm)
{
    enum { N = 100000 };
    static const char req[] = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    const size_t rlen = sizeof req - 1, cap = 16u << 20;
    const char *extra[] = {"-o", "supervisor.workers=1", "-o", "worker.protocol=none", NULL};
    struct sockaddr_in a = {.sin_family = AF_INET};
    char *line, *in = malloc(cap);
    size_t got = 0;
    pid_t worker, writer;
    ssize_t n;
    svc_t s;
    int fd;

    ck_assert_ptr_nonnull(in);
    svc_init(&s);
    svc_start(&s, extra, "--leak-kb 0");
    line = strstr(s.r.log, "event=ready "); /* before pool_ready, which svc_start waited for */
    ck_assert_ptr_nonnull(line);
    worker = atoi(strstr(line, " pid=") + 5);
    ck_assert_int_gt(worker, 0);
    a.sin_port = htons((uint16_t)s.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    writer = fork();
    ck_assert_int_ge(writer, 0);
    if (writer == 0) {
        char *out = malloc(N * rlen);
        size_t done = 0;

        signal(SIGPIPE, SIG_IGN); /* the worker closes the connection on the rest */
        for (int i = 0; out && i < N; i++)
            memcpy(out + (size_t)i * rlen, req, rlen);
        while (out && done < N * rlen && (n = write(fd, out + done, N * rlen - done)) > 0)
            done += (size_t)n;
        _exit(0);
    }
    while (got < cap && (n = read(fd, in + got, cap - got)) > 0) {
        if (got == 0)
            ck_assert_int_eq(kill(worker, SIGTERM), 0);
        got += (size_t)n;
    }
    close(fd);
    ck_assert_int_eq(waitpid(writer, NULL, 0), writer);
    ck_assert_int_gt(count_in(in, got, "HTTP/1.1 200 OK"), 0);
    ck_assert_int_lt(count_in(in, got, "HTTP/1.1 200 OK"), N);
    ck_assert_int_eq(count_in(in, got, "Connection: close"), 1);
    /* ...in the last answer */
    ck_assert_int_eq(count_in(strstr(in, "Connection: close"),
                              got - (size_t)(strstr(in, "Connection: close") - in),
                              "HTTP/1.1 200 OK"),
                     0);
    free(in);
    svc_stop(&s);
    run_free(&s.r);
}
END_TEST

Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("http");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, recycling_under_load_loses_no_request);
    tcase_add_test(tc, a_leaking_service_under_load_is_recycled_not_failed);
    tcase_add_test(tc, a_leaking_master_has_its_children_recycled_not_itself);
    tcase_add_test(tc, recycle_all_and_reload_under_load_lose_no_request);
    tcase_add_test(tc, scaling_a_service_under_load_loses_no_request);
    tcase_add_test(tc, a_mixed_service_names_the_leaking_request_kind_alone);
    tcase_add_test(tc, an_invalid_reload_changes_nothing);
    tcase_add_test(tc, status_shows_the_workers_that_exist);
    tcase_add_test(tc, begin_end_misuse_is_a_protocol_error);
    tcase_add_test(tc, socket_activation_sockets_are_passed_on);
    tcase_add_test(tc, systemd_hears_ready_once_every_slot_is_up);
    tcase_add_test(tc, a_hard_limit_kill_is_the_only_lost_request_and_says_so);
    tcase_add_test(tc, a_kernel_oom_kill_of_a_masters_child_is_said);
    tcase_add_test(tc, a_stopping_service_refuses_new_clients_while_it_drains);
    tcase_add_test(tc, a_busy_worker_drains_on_sigterm);
    suite_add_tcase(s, tc);

    /* Runs binaries as another user (check_checkout runs this case from a 0700 checkout). */
    tc = tcase_create("other_uid");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, control_requests_from_others_and_garbage_are_refused);
    suite_add_tcase(s, tc);
    return s;
}
