/*
 * redis: many memvisors on one batch through Redis Streams (docs/many-hosts.md), end to end
 * (the URL parser, the entry codec and the replies with plain inputs: check_rentry.c). Each
 * test has its own redis-server on 127.0.0.1 on a free port (its data in the test's temp dir,
 * killed by pid at the end; PR_SET_PDEATHSIG kills it with a test that failed), and
 * two or three memvisors as separate "hosts": one killed -9 mid-batch, Redis restarted once,
 * a memvisor stopped for longer than claim_idle (slow, not dead), a task longer than
 * claim_idle; every task's result exactly once in the results stream.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "rscript.h"
#include "suites.h"

/* ---- a redis-server per test ---- */

typedef struct redis {
    pid_t pid;
    int port;
    char dir[64];
    bool aof;
    const char *pass; /* NULL = none */
    char url[128];    /* redis://[:pass@]127.0.0.1:PORT */
} redis_t;

static pid_t redis_pids[4];

/* A test that fails exits: its servers go with it (and PR_SET_PDEATHSIG if it is killed). */
static void kill_servers(void)
{
    for (size_t i = 0; i < sizeof redis_pids / sizeof redis_pids[0]; i++)
        if (redis_pids[i] > 0)
            kill(redis_pids[i], SIGKILL);
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static redisContext *cli(const redis_t *r)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *rep;

    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (r->pass) {
        rep = redisCommand(c, "AUTH %s", r->pass);
        freeReplyObject(rep);
    }
    return c;
}

/* Starts redis-server on r->port; false when it died (the port was taken). */
static bool spawn_server(redis_t *r)
{
    char port[16], dir[80];
    redisContext *c;
    int st;

    snprintf(port, sizeof port, "%d", r->port);
    snprintf(dir, sizeof dir, "%s/data", r->dir);
    r->pid = fork();
    ck_assert_int_ge(r->pid, 0);
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        /* appendfsync always: what Redis answered is on disk before a test kills it with -9.
         * With everysec a loaded host lost up to 2 s of it: a task delivered before the kill
         * came back as never delivered, so its lost attempt was not counted (attempts 1). */
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", r->aof ? "yes" : "no", "--appendfsync", "always", "--dir", dir,
               "--logfile", "redis.log", r->pass ? "--requirepass" : NULL, r->pass, (char *)NULL);
        _exit(127);
    }
    for (size_t i = 0; i < sizeof redis_pids / sizeof redis_pids[0]; i++)
        if (redis_pids[i] == 0) {
            redis_pids[i] = r->pid;
            break;
        }
    for (int i = 0; i < 250; i++) {
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            ck_assert_msg(!WIFEXITED(st) || WEXITSTATUS(st) != 127,
                          "redis-server is not installed: make deps (or apt-get install "
                          "redis-server)");
            r->pid = 0;
            return false;
        }
        if ((c = cli(r))) {
            redisReply *rep = redisCommand(c, "PING");
            bool up = rep && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            redisFree(c);
            if (up)
                return true;
        }
        nap_ms(20);
    }
    ck_abort_msg("redis-server on port %d did not answer within 5 s", r->port);
    return false;
}

/* The temp dir and a port; no server yet (spawn_server starts it). */
static void redis_prepare(redis_t *r, bool aof, const char *pass)
{
    char data[80];

    memset(r, 0, sizeof *r);
    memset(redis_pids, 0, sizeof redis_pids);
    atexit(kill_servers);
    r->aof = aof;
    r->pass = pass;
    strcpy(r->dir, "/tmp/mv-redis-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    snprintf(data, sizeof data, "%s/data", r->dir);
    ck_assert_int_eq(mkdir(data, 0700), 0);
    r->port = free_port();
}

static void set_url(redis_t *r)
{
    snprintf(r->url, sizeof r->url, "redis://%s%s%s127.0.0.1:%d", r->pass ? ":" : "",
             r->pass ? r->pass : "", r->pass ? "@" : "", r->port);
}

static void redis_start(redis_t *r, bool aof, const char *pass)
{
    redis_prepare(r, aof, pass);
    for (int tries = 0; tries < 5 && !spawn_server(r); tries++)
        r->port = free_port(); /* taken meanwhile: another */
    ck_assert_int_gt(r->pid, 0);
    set_url(r);
}

/* Kills the server (-9: its AOF is all it keeps) and waits for it. */
static void redis_kill(redis_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    for (size_t i = 0; i < sizeof redis_pids / sizeof redis_pids[0]; i++)
        if (redis_pids[i] == r->pid)
            redis_pids[i] = 0;
    r->pid = 0;
}

static void redis_stop(redis_t *r)
{
    char cmd[128];

    redis_kill(r);
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    ck_assert_int_eq(system(cmd), 0);
}

static long long integer(redisContext *c, const char **argv, int argc)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    long long v;

    ck_assert_ptr_nonnull(rep);
    ck_assert_msg(rep->type == REDIS_REPLY_INTEGER, "%s: %s", argv[0],
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "not an integer");
    v = rep->integer;
    freeReplyObject(rep);
    return v;
}

#define INT(c, ...)                             \
    integer((c), (const char *[]){__VA_ARGS__}, \
            (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* The "result" JSON of every entry of a stream, in order (a JSON array; decref it). */
static json_t *stream_results(redisContext *c, const char *key)
{
    redisReply *rep = redisCommand(c, "XRANGE %s - +", key);
    json_t *all = json_array();

    ck_assert_msg(rep && rep->type == REDIS_REPLY_ARRAY, "XRANGE %s", key);
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *f = rep->element[i]->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2)
            if (strcmp(f->element[k]->str, "result") == 0) {
                json_error_t e;
                json_t *o = json_loads(f->element[k + 1]->str, 0, &e);
                ck_assert_msg(o != NULL, "result entry is not JSON: %s", e.text);
                json_array_append_new(all, o);
            }
    }
    freeReplyObject(rep);
    return all;
}

/* Each task 1..n has exactly one result; returns how many are quarantined. */
static int assert_each_once(json_t *results, int n)
{
    int *seen = calloc((size_t)n + 1, sizeof *seen), quarantined = 0;
    size_t i;
    json_t *o;

    json_array_foreach(results, i, o)
    {
        long long id = jint(o, "task");
        ck_assert_msg(id >= 1 && id <= n, "a result for task %lld", id);
        ck_assert_msg(++seen[id] == 1, "task %lld has %d results", id, seen[id]);
        ck_assert_ptr_nonnull(jstr(o, "host"));
        quarantined += strcmp(jstr(o, "status"), "quarantined") == 0;
    }
    for (int k = 1; k <= n; k++)
        ck_assert_msg(seen[k] == 1, "task %d has no result", k);
    free(seen);
    return quarantined;
}

/* `memvisor submit` of `text` into the stream; returns its exit code. */
static int submit(const redis_t *r, const char *stream, const char *text, const char *const *more)
{
    mvrun_t s;
    char to[256];
    const char *args[16] = {"submit", "--to", to};
    int n = 3, code;

    snprintf(to, sizeof to, "%s/%s", r->url, stream);
    run_init(&s, text);
    for (; more && *more; more++)
        args[n++] = *more;
    args[n++] = s.tasks;
    args[n] = NULL;
    run_start(&s, args, NULL);
    code = run_finish(&s);
    if (code != 0)
        fprintf(stderr, "submit: %s", s.log ? s.log : "");
    run_free(&s);
    return code;
}

/* A memvisor "host" on the stream, its results to the results stream; the worker gets wargs. */
static void host_start_w(mvrun_t *m, const redis_t *r, const char *claim_idle, int workers,
                         const char *const *more, const char *const *wargs)
{
    static char tasks[4][256], results[4][256], idle[4][64], wk[4][64];
    static int k;
    const char *args[40] = {
        "run",     "-o",     idle[k],     "-o",      wk[k], "-o", "tasks.max_attempts=2",
        "--tasks", tasks[k], "--results", results[k]};
    int n = 11;

    snprintf(tasks[k], sizeof tasks[k], "%s/jobs", r->url);
    snprintf(results[k], sizeof results[k], "%s/results", r->url);
    snprintf(idle[k], sizeof idle[k], "tasks.claim_idle=%s", claim_idle);
    snprintf(wk[k], sizeof wk[k], "supervisor.workers=%d", workers);
    for (; more && *more; more++)
        args[n++] = *more;
    args[n++] = "--";
    args[n++] = MVTEST;
    for (; wargs && *wargs; wargs++)
        args[n++] = *wargs;
    args[n] = NULL;
    run_init(m, NULL);
    m->service = true; /* no --tasks FILE from the harness: ours */
    run_start(m, args, NULL);
    k = (k + 1) % 4;
}

static void host_start(mvrun_t *m, const redis_t *r, const char *claim_idle, int workers,
                       const char *const *more)
{
    host_start_w(m, r, claim_idle, workers, more, NULL);
}

/* Waits until the stream `key` has at least n entries. */
static void wait_len(const redis_t *r, const char *key, long long n, mvrun_t *const *drain)
{
    for (int i = 0; i < 1000; i++) {
        redisContext *c = cli(r);
        long long len = c ? INT(c, "XLEN", key) : -1;
        if (c)
            redisFree(c);
        if (len >= n)
            return;
        for (mvrun_t *const *d = drain; d && *d; d++)
            run_drain(*d);
        nap_ms(10);
    }
    ck_abort_msg("%s never had %lld entries", key, n);
}

/* ---- many hosts ---- */

/* Three hosts, one killed -9 while it runs two tasks, Redis killed -9 and restarted once
 * (appendonly: the streams survive): every task ends once in the results stream, the poison
 * ones quarantined once, and nothing stays pending. */
START_TEST(three_hosts_one_killed_and_a_redis_restart_give_each_result_once)
{
    enum { N = 48, POISON = 3 };
    char *text = calloc(1, 64 * (N + POISON));
    static const char *const three[] = {"-o", "tasks.max_attempts=3", NULL};
    redis_t r;
    mvrun_t h[3];
    redisContext *c;
    json_t *res, *q;
    redisReply *p;
    size_t i;

    redis_start(&r, true, NULL);
    for (int k = 1; k <= N + POISON; k++)
        strcat(text, k <= 2 ? "say go sleep 400\n" : k <= N ? "sleep 30\n" : "crash\n");
    ck_assert_int_eq(submit(&r, "jobs", text, NULL), 0);
    free(text);
    /* Host 1 takes the first two tasks: once it runs them, it dies. */
    /* claim_idle is longer than the restart below: a live host's task is not taken over
     * while it cannot refresh it (if it were, it would run twice, its result still once). */
    host_start(&h[0], &r, "2s", 2, three);
    free(run_wait_for(&h[0], "go pid="));
    free(run_wait_for(&h[0], "go pid="));
    /* at once: starting the others first took more than the tasks' 400 ms under ASan on a
     * loaded machine, and host 1 had finished one */
    kill(h[0].pid, SIGKILL);
    ck_assert_int_eq(run_finish(&h[0]), 128 + SIGKILL);
    host_start(&h[1], &r, "2s", 2, three);
    host_start(&h[2], &r, "2s", 2, three);
    free(run_wait_for(&h[1], "event=redis_connected"));
    free(run_wait_for(&h[2], "event=redis_connected"));
    wait_len(&r, "results", 12, (mvrun_t *const[]){&h[1], &h[2], NULL});
    redis_kill(&r);
    ck_assert(spawn_server(&r));
    /* Both survivors finish the batch, taking over host 1's tasks after claim_idle. */
    /* each exits 1 when a task it ended was quarantined (0 otherwise): some did */
    ck_assert_int_le(run_finish(&h[1]), 1);
    ck_assert_int_le(run_finish(&h[2]), 1);
    ck_assert_int_eq(h[1].code + h[2].code >= 1, 1);
    ck_assert_int_eq(run_count(&h[1], "event=redis_reconnected") +
                         run_count(&h[2], "event=redis_reconnected"),
                     2);
    ck_assert_int_ge(
        run_count(&h[1], "event=redis_claimed") + run_count(&h[2], "event=redis_claimed"), 2);
    c = cli(&r);
    ck_assert_ptr_nonnull(c);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, N + POISON), POISON);
    json_array_foreach(res, i, q)
    {
        long long id = jint(q, "task");
        if (id <= 2) { /* lost with host 1 (one attempt), then run */
            ck_assert_int_ge(jint(q, "attempts"), 2);
            ck_assert_str_eq(
                jstr(json_array_get(json_object_get(q, "attempt_errors"), 0), "reason"), "lost");
        }
        if (id > N) {
            ck_assert_str_eq(jstr(q, "status"), "quarantined");
            ck_assert_int_ge(json_array_size(json_object_get(q, "attempt_errors")), 3);
        }
    }
    json_decref(res);
    /* Poison tasks in the quarantine stream, once each, with their attempts. */
    ck_assert_int_eq(INT(c, "XLEN", "jobs:quarantine"), POISON);
    ck_assert_int_eq(INT(c, "HLEN", "jobs:done"), N + POISON);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0); /* acknowledged and deleted */
    p = redisCommand(c, "XPENDING jobs memvisor");
    ck_assert_int_eq(p->element[0]->integer, 0);
    freeReplyObject(p);
    redisFree(c);
    for (int k = 0; k < 3; k++)
        run_free(&h[k]);
    redis_stop(&r);
}
END_TEST

/* A memvisor stopped (SIGSTOP) longer than claim_idle looks dead: another takes its task
 * over and runs it. Once it goes on, its own run of the task ends too: the task ran twice,
 * its result is in the stream once. */
START_TEST(a_slow_host_and_its_taker_write_one_result)
{
    redis_t r;
    mvrun_t a, b;
    redisContext *c;
    json_t *res;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "say run sleep 300\nsleep 10\nsleep 10\nsleep 10\n", NULL),
                     0);
    host_start(&a, &r, "500ms", 1, NULL);
    free(run_wait_for(&a, "run pid="));
    kill(a.pid, SIGSTOP);
    host_start(&b, &r, "500ms", 1, NULL);
    free(run_wait_for(&b, "event=redis_claimed task=1"));
    free(run_wait_for(&b, "run pid="));
    ck_assert_int_eq(run_finish(&b), 0);
    kill(a.pid, SIGCONT);
    ck_assert_int_eq(run_finish(&a), 0);
    ck_assert_int_eq(run_count(&a, "event=redis_result_duplicate task=1"), 1);
    ck_assert_ptr_nonnull(strstr(run_summary(&b), "(1 taken over)"));
    ck_assert_ptr_nonnull(
        strstr(run_summary(&a), "0 results written here, 1 dropped as written already"));
    c = cli(&r);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 4), 0);
    json_decref(res);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
    redisFree(c);
    run_free(&a);
    run_free(&b);
    redis_stop(&r);
}
END_TEST

/* A memvisor started before its Redis says so once, waits (backoff), and runs the batch once
 * Redis is there. */
START_TEST(a_memvisor_started_before_redis_waits_for_it)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    json_t *res;

    redis_prepare(&r, false, NULL);
    set_url(&r);
    /* follow: an empty stream does not end it, whether it connects before the submit or not */
    host_start(&m, &r, "1s", 1, (const char *[]){"-o", "tasks.follow=yes", NULL});
    free(run_wait_for(&m, "event=redis_unreachable"));
    ck_assert(spawn_server(&r));
    ck_assert_int_eq(submit(&r, "jobs", "ok\nok\n", NULL), 0);
    wait_len(&r, "results", 2, (mvrun_t *const[]){&m, NULL});
    kill(m.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&m), 0);
    ck_assert_int_eq(run_count(&m, "event=redis_unreachable"), 1);
    ck_assert_int_eq(run_count(&m, "event=redis_connected"), 1);
    c = cli(&r);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 2), 0);
    json_decref(res);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* A host scaled up holds as many stream entries as it has workers now (workers x prefetch):
 * three workers, three tasks running at once (each holds its worker until let go); it held
 * one, the start's count, for good. */
START_TEST(a_host_scaled_up_reads_for_its_new_workers)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    json_t *res;
    const char *p;
    int held = 0;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "hold 0\nhold 0\nhold 0\nok\n", NULL), 0);
    host_start(&m, &r, "60s", 1, (const char *[]){"-o", "tasks.follow=yes", NULL});
    free(run_wait_for(&m, "held pid="));
    run_workers(&m, 3);
    run_wait_nth(&m, "held pid=", 2);
    for (p = m.log; (p = strstr(p, "held pid=")); p += 9, held++)
        ck_assert_int_eq(kill(atoi(p + 9), SIGUSR1), 0);
    ck_assert_int_eq(held, 3);
    wait_len(&r, "results", 4, (mvrun_t *const[]){&m, NULL});
    kill(m.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&m), 0);
    c = cli(&r);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 4), 0);
    json_decref(res);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* A host reads for the workers that are ready, not for those still starting: scaled up to 2
 * workers, the second of which never starts (it crashes at its start, again and again), it
 * holds one task, its running one, and the others wait in the stream for any host (it read
 * one for the worker that never came, and held it). */
START_TEST(a_host_reads_only_for_workers_that_are_ready)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    redisReply *p;
    json_t *res;
    const char *at;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "hold 0\nok\nok\n", NULL), 0);
    host_start_w(&m, &r, "60s", 1,
                 (const char *[]){"-o", "tasks.follow=yes", "-o", "worker.crash_limit=0", NULL},
                 (const char *[]){"--crash-at-start-slot", "2", NULL});
    free(run_wait_for(&m, "held pid="));
    run_workers(&m, 2);
    /* The read for the new slot went out with the scale, before its first worker crashed. */
    run_wait_nth(&m, "event=exit worker=2 ", 2);
    c = cli(&r);
    p = redisCommand(c, "XPENDING jobs memvisor");
    ck_assert_int_eq(p->element[0]->integer, 1);
    freeReplyObject(p);
    at = strstr(m.log, "held pid=");
    ck_assert_int_eq(kill(atoi(at + 9), SIGUSR1), 0);
    wait_len(&r, "results", 3, (mvrun_t *const[]){&m, NULL});
    kill(m.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&m), 0);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 3), 0);
    json_decref(res);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* A group set back in time (as a Redis restored from a snapshot would be) delivers again an
 * entry this memvisor holds: it is not run a second time. */
START_TEST(a_group_set_back_does_not_run_a_held_task_twice)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "say held sleep 1500\nok\n", NULL), 0);
    host_start(&m, &r, "1s", 2, NULL);
    free(run_wait_for(&m, "held pid="));
    c = cli(&r);
    for (int i = 0; i < 500 && INT(c, "XLEN", "results") < 1; i++) /* the "ok" is done */
        nap_ms(10);
    freeReplyObject(redisCommand(c, "XGROUP SETID jobs memvisor 0"));
    ck_assert_int_eq(run_finish(&m), 0);
    ck_assert_int_eq(run_count(&m, "held pid="), 1);
    ck_assert_int_eq(INT(c, "XLEN", "results"), 2);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* Memory escalation with a Redis source: a task killed at the hard limit runs again on its
 * own worker with twice the limit (its entry held meanwhile), and a task that comes from the
 * stream already escalated (its `limit` field: another host raised it) runs at that limit. */
START_TEST(escalated_tasks_keep_their_raised_limit_across_the_stream)
{
    static const char *const esc[] = {"-o", "limits.memory_hard=64M",   "-o", "limits.escalate=2x",
                                      "-o", "limits.escalate_max=256M", NULL};
    redis_t r;
    mvrun_t m;
    redisContext *c;
    json_t *res, *o;
    size_t i;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "alloc 100\nok\n", NULL), 0);
    c = cli(&r);
    freeReplyObject(
        redisCommand(c, "XADD jobs * id 3 data %s limit %d escalations 1", "alloc 100", 128 << 20));
    host_start(&m, &r, "1s", 2, esc);
    ck_assert_int_eq(run_finish(&m), 0);
    ck_assert_int_eq(run_count(&m, "event=escalate task=1 from=67108864 to=134217728"), 1);
    ck_assert_int_eq(run_count(&m, "event=escalate "), 1); /* task 3 came raised */
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 3), 0);
    json_array_foreach(res, i, o)
    {
        if (jint(o, "task") == 2)
            continue;
        ck_assert_str_eq(jstr(o, "status"), "ok");
        ck_assert_int_eq(jint(o, "mem_limit"), 128 << 20);
        ck_assert_int_eq(jint(o, "escalations"), 1);
    }
    json_decref(res);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* A host killed -9 while its task runs at a raised limit: the host that takes the entry over
 * goes on at that limit (STREAM:escalated), with the dead host's attempts, rather than at its
 * first limit (before: killed for memory again there, and raised again); the hash is emptied
 * when the entry is let go. */
START_TEST(a_task_taken_over_from_a_dead_host_keeps_its_raised_limit)
{
    static const char *const esc[] = {"-o", "limits.memory_hard=64M",   "-o", "limits.escalate=2x",
                                      "-o", "limits.escalate_max=256M", NULL};
    redis_t r;
    mvrun_t a, b;
    redisContext *c;
    json_t *res, *o, *errs;
    char *line;

    redis_start(&r, false, NULL);
    ck_assert_int_eq(submit(&r, "jobs", "hold 100\n", NULL), 0);
    host_start(&a, &r, "1s", 1, esc);
    free(run_wait_for(&a, "held pid=")); /* on its escalation worker, at 128M */
    c = cli(&r);
    ck_assert_int_eq(INT(c, "HLEN", "jobs:escalated"), 1);
    kill(a.pid, SIGKILL);
    ck_assert_int_eq(run_finish(&a), 128 + SIGKILL);
    host_start(&b, &r, "1s", 1, esc);
    line = run_wait_for(&b, "held pid=");
    ck_assert_int_eq(kill((pid_t)atoi(strstr(line, "held pid=") + 9), SIGUSR1), 0);
    free(line);
    wait_len(&r, "results", 1, (mvrun_t *const[]){&b, NULL});
    ck_assert_int_eq(run_finish(&b), 0);
    ck_assert_log(&b,
                  run_count(&b, "event=escalate ") == 0 && run_count(&b, "event=kernel_oom") == 0,
                  "b escalated or saw an OOM kill");
    ck_assert_int_eq(run_count(&b, "event=redis_claimed"), 1);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 1), 0);
    o = json_array_get(res, 0);
    ck_assert_str_eq(jstr(o, "status"), "ok");
    ck_assert_int_eq(jint(o, "mem_limit"), 128 << 20);
    ck_assert_int_eq(jint(o, "escalations"), 1);
    ck_assert_int_eq(jint(o, "attempts"), 3); /* killed at 64M, lost with host a, ran */
    errs = json_object_get(o, "attempt_errors");
    ck_assert_int_eq(json_array_size(errs), 2);
    ck_assert_str_ne(jstr(json_array_get(errs, 0), "reason"), "lost");
    ck_assert_str_eq(jstr(json_array_get(errs, 1), "reason"), "lost");
    json_decref(res);
    ck_assert_int_eq(INT(c, "HLEN", "jobs:escalated"), 0);
    redisFree(c);
    run_free(&a);
    run_free(&b);
    redis_stop(&r);
}
END_TEST

/* A task re-added with a limit another host raised it to runs at that limit only when it is
 * more than this host gives every task: a host with memory_hard 64M runs a task raised to
 * 32M elsewhere at 64M (it was quarantined at 32M, with escalate off), and a limit no worker
 * starts in (a page, from another producer) does not hold the batch up for ever (its
 * escalation worker was OOM-killed before its task, again and again). A host without
 * memory_hard gives no limit. */
START_TEST(a_raised_limit_never_gives_less_than_this_host_gives_every_task)
{
    static const char *const hard[] = {"-o", "limits.memory_hard=64M", NULL};
    static const char *const none[] = {"-o", "limits.memory_hard=0", NULL};
    const char *const *cfgs[] = {hard, none};
    redis_t r;
    mvrun_t m;
    redisContext *c;
    json_t *res, *o;
    size_t i;

    redis_start(&r, false, NULL);
    c = cli(&r);
    for (int k = 0; k < 2; k++) {
        freeReplyObject(redisCommand(c, "DEL jobs results jobs:done"));
        freeReplyObject(redisCommand(
            c, "XADD jobs * id 1 data %s limit %d escalations 1 attempts 1 hist %s", "alloc 40",
            32 << 20, "[{\"reason\":\"kernel_oom\",\"mem_limit\":16777216}]"));
        freeReplyObject(redisCommand(c, "XADD jobs * id 2 data ok limit 4096 escalations 1"));
        freeReplyObject(redisCommand(c, "XADD jobs * id 3 data ok"));
        host_start(&m, &r, "1s", 2, cfgs[k]);
        wait_len(&r, "results", 3, (mvrun_t *const[]){&m, NULL});
        ck_assert_int_eq(run_finish(&m), 0);
        res = stream_results(c, "results");
        ck_assert_int_eq(assert_each_once(res, 3), 0);
        json_array_foreach(res, i, o)
        {
            ck_assert_str_eq(jstr(o, "status"), "ok");
            ck_assert_int_eq(jint(o, "attempts"), jint(o, "task") == 1 ? 2 : 1);
            if (k == 0)
                ck_assert_int_eq(jint(o, "mem_limit"), 64 << 20);
            else
                ck_assert_msg(!json_integer_value(json_object_get(o, "mem_limit")),
                              "task %lld ran under a limit", jint(o, "task"));
        }
        json_decref(res);
        ck_assert_int_eq(run_count(&m, "event=kernel_oom"), 0);
        run_free(&m);
    }
    redisFree(c);
    redis_stop(&r);
}
END_TEST

/* Hosts of different sizes (issue 14 #4): a task killed at the small host's ceiling
 * (escalate_max 64M) goes to the routed stream of 128M, and the big host (256M) runs it there:
 * ok, once, with the small host's attempts. A task too big for both climbs to the big host's
 * ceiling and is quarantined once, since no live memvisor can give it more; so is a task
 * waiting in a routed stream no live memvisor can serve. An entry whose limit is no number
 * is set aside, named. */
START_TEST(a_task_too_big_for_its_host_runs_on_a_bigger_one)
{
    static const char *const small[] = {"-o", "limits.memory_hard=32M",  "-o", "limits.escalate=2x",
                                        "-o", "limits.escalate_max=64M", NULL};
    static const char *const big[] = {"-o", "limits.memory_hard=32M",   "-o", "limits.escalate=2x",
                                      "-o", "limits.escalate_max=256M", NULL};
    redis_t r;
    mvrun_t a, b;
    redisContext *c;
    json_t *res, *o, *errs;
    redisReply *rep;
    char *line, consumer[200];
    size_t i;

    redis_start(&r, false, NULL);
    /* The big host is busy with task 1 (one worker: it reads nothing else meanwhile), so the
     * small host takes tasks 2 and 3. */
    ck_assert_int_eq(submit(&r, "jobs", "say busy sleep 2500\n", NULL), 0);
    host_start(&b, &r, "1s", 1, big);
    line = run_wait_for(&b, "event=redis_connected");
    ck_assert_ptr_nonnull(strstr(line, "consumer="));
    sscanf(strstr(line, "consumer=") + 9, "%199s", consumer);
    free(line);
    free(run_wait_for(&b, "busy pid="));
    ck_assert_int_eq(submit(&r, "jobs", "alloc 100\nalloc 300\n", NULL), 0);
    c = cli(&r);
    freeReplyObject(redisCommand(c, "XADD jobs * id 9 data ok limit 12x"));
    /* Task 4 waits in a routed stream no live memvisor can serve (1 TiB): an orphan. */
    freeReplyObject(redisCommand(c, "ZADD jobs:need 1099511627776 jobs:need:1099511627776"));
    freeReplyObject(redisCommand(c, "XGROUP CREATE jobs:need:1099511627776 memvisor 0 MKSTREAM"));
    freeReplyObject(
        redisCommand(c, "XADD jobs:need:1099511627776 * id 4 data ok limit 1099511627776"));
    host_start(&a, &r, "1s", 1, small);
    free(run_wait_for(&a, "event=escalate task=2 from=33554432 to=67108864"));
    ck_assert_int_le(run_finish(&a), 1);
    ck_assert_int_le(run_finish(&b), 1);
    ck_assert_int_eq(a.code + b.code >= 1, 1); /* the quarantines of tasks 3 and 4 */
    ck_assert_int_eq(run_count(&a, "event=escalate_elsewhere task=2 from=67108864 need=134217728"),
                     1);
    ck_assert_int_eq(run_count(&a, "event=redis_route task=2 "), 1);
    ck_assert_int_eq(run_count(&b, "event=redis_route_none task=3 ") +
                         run_count(&a, "event=redis_route_none task=3 "),
                     1);
    ck_assert_int_eq(
        run_count(&a, "event=redis_bad_entry") + run_count(&b, "event=redis_bad_entry"), 1);
    ck_assert_ptr_nonnull(strstr(a.log, "the limit field is not a hard limit in bytes") ? a.log
                                                                                        : b.log);
    ck_assert_int_eq(run_count(&a, "event=redis_route_orphan task=4 ") +
                         run_count(&b, "event=redis_route_orphan task=4 "),
                     1);
    res = stream_results(c, "results");
    ck_assert_int_eq(assert_each_once(res, 4), 2);
    json_array_foreach(res, i, o)
    {
        long long id = jint(o, "task");
        errs = json_object_get(o, "attempt_errors");
        if (id == 4)
            ck_assert_ptr_nonnull(strstr(jstr(o, "error"), "needs a hard limit of 1099511627776"));
        if (id == 2) { /* two attempts on the small host, then ok at 128M on the big one */
            ck_assert_str_eq(jstr(o, "status"), "ok");
            ck_assert_str_eq(jstr(o, "consumer"), consumer);
            ck_assert_int_eq(jint(o, "mem_limit"), 128 << 20);
            ck_assert_int_eq(jint(o, "attempts"), 3);
            ck_assert_int_eq(json_array_size(errs), 2);
            ck_assert_int_eq(jint(json_array_get(errs, 0), "mem_limit"), 32 << 20);
            ck_assert_int_eq(jint(json_array_get(errs, 1), "mem_limit"), 64 << 20);
        }
        if (id == 3) { /* 32M, 64M here; 128M, 256M there; nobody gives 512M */
            ck_assert_str_eq(jstr(o, "status"), "quarantined");
            ck_assert_ptr_nonnull(strstr(jstr(o, "error"), "needs a hard limit of 536870912"));
            ck_assert_int_eq(json_array_size(errs), 4);
            ck_assert_int_eq(jint(json_array_get(errs, 3), "mem_limit"), 256 << 20);
        }
    }
    json_decref(res);
    /* The quarantine stream: tasks 3 and 4 once, and the bad entry. */
    ck_assert_int_eq(INT(c, "XLEN", "jobs:quarantine"), 3);
    ck_assert_int_eq(INT(c, "XLEN", "jobs:need:1099511627776"), 0);
    rep = redisCommand(c, "ZRANGE jobs:need 0 -1 WITHSCORES");
    ck_assert_int_eq(rep->elements, 4); /* 128M (tasks 2 and 3) and 1T; 512M was never made */
    ck_assert_str_eq(rep->element[0]->str, "jobs:need:134217728");
    freeReplyObject(rep);
    ck_assert_int_eq(INT(c, "XLEN", "jobs:need:134217728"), 0);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
    ck_assert_int_eq(INT(c, "HLEN", "jobs:hosts"), 0); /* both left */
    redisFree(c);
    run_free(&a);
    run_free(&b);
    redis_stop(&r);
}
END_TEST

/* A live memvisor's task that runs longer than claim_idle is refreshed (XCLAIM JUSTID): the
 * other memvisor, idle and claiming, never takes it. */
START_TEST(a_task_longer_than_claim_idle_is_not_taken_from_a_live_host)
{
    redis_t r;
    mvrun_t a, b;

    redis_start(&r, false, NULL);
    /* refreshed every 333 ms: taken only if its memvisor stalled for 667 ms */
    ck_assert_int_eq(submit(&r, "jobs", "say long sleep 2500\nsleep 10\nsleep 10\n", NULL), 0);
    host_start(&a, &r, "1s", 1, NULL);
    free(run_wait_for(&a, "long pid="));
    host_start(&b, &r, "1s", 1, NULL);
    ck_assert_int_eq(run_finish(&b), 0);
    ck_assert_int_eq(run_finish(&a), 0);
    ck_assert_int_eq(run_count(&a, "long pid=") + run_count(&b, "long pid="), 1);
    ck_assert_int_eq(run_count(&b, "event=redis_claimed"), 0);
    ck_assert_int_eq(run_count(&a, "event=redis_task_taken_over"), 0);
    run_free(&a);
    run_free(&b);
    redis_stop(&r);
}
END_TEST

/* ---- one host: a results file, status, bad entries ---- */

/* `memvisor status` output, by the run's control socket. */
static char *status_of(const mvrun_t *m)
{
    char sock[160], *out;

    snprintf(sock, sizeof sock, "%s/state/control.sock", m->dir);
    ck_assert_int_eq(
        run_capture((const char *[]){MEMVISOR, "status", "--socket", sock, NULL}, &out), 0);
    return out;
}

/* Without a results stream the results file is the record: a task is acknowledged once its
 * line is synced. A password travels in the URL. Status shows the stream. An entry that is
 * no task goes to the quarantine stream. */
START_TEST(results_to_a_file_status_shows_the_stream_and_a_bad_entry_is_set_aside)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    char src[256], *st;
    redisReply *rep;

    redis_start(&r, false, "s3cret");
    ck_assert_int_eq(submit(&r, "jobs", "say first sleep 200\nsleep 200\nsleep 200\n", NULL), 0);
    c = cli(&r);
    freeReplyObject(redisCommand(c, "XADD jobs * no id"));
    snprintf(src, sizeof src, "%s/jobs", r.url);
    run_init(&m, NULL);
    m.service = true;
    run_start(&m,
              (const char *[]){"run", "-o", "supervisor.workers=1", "-o", "tasks.follow=yes", "-o",
                               "tasks.claim_idle=1s", "--tasks", src, "--results", m.results, "--",
                               MVTEST, NULL},
              NULL);
    free(run_wait_for(&m, "first pid="));
    st = status_of(&m);
    ck_assert_msg(strstr(st, "stream: redis://127.0.0.1:") &&
                      strstr(st, "/jobs group memvisor: ") && strstr(st, "held here"),
                  "%s", st);
    ck_assert_ptr_null(strstr(st, "s3cret"));
    free(st);
    free(run_wait_for(&m, "event=redis_bad_entry"));
    /* follow = yes: it waits for more until stopped */
    for (int i = 0; i < 500 && INT(c, "HLEN", "jobs:done") < 3; i++)
        nap_ms(10);
    ck_assert_int_eq(INT(c, "HLEN", "jobs:done"), 3);
    kill(m.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&m), 0); /* a queue follower's normal end, like a service's */
    run_assert_once(&m, 3, (const size_t[]){0});
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
    ck_assert_int_eq(INT(c, "EXISTS", "results"), 0); /* no results stream was asked for */
    rep = redisCommand(c, "XRANGE jobs:quarantine - +");
    ck_assert_int_eq(rep->elements, 1);
    ck_assert_str_eq(rep->element[0]->element[1]->element[2]->str, "error");
    ck_assert_str_eq(rep->element[0]->element[1]->element[3]->str, "no id field");
    freeReplyObject(rep);
    redisFree(c);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* A task's line is in the results file, Redis dies before its entry is acknowledged, then
 * memvisor is SIGKILLed. The resumed run takes the entry over (claim_idle) and finds the
 * task's line in its file. With a file alone it acknowledges the entry and does not run the
 * task again; with a results stream too it runs it again (the stream is the record and has
 * no result yet) but does not append a second line. Either way the file keeps one line per
 * task. */
START_TEST(a_resumed_file_keeps_one_line_for_a_task_written_but_not_acknowledged)
{
    for (int stream = 0; stream < 2; stream++) {
        redis_t r;
        mvrun_t m;
        redisContext *c;
        char src[256], res[256];
        const char *args[20] = {
            "run", "-o", "supervisor.workers=1", "-o", "tasks.claim_idle=1s", "--tasks", src};
        int n = 7;

        redis_start(&r, true, NULL);
        ck_assert_int_eq(submit(&r, "jobs", "say one sleep 200\nok two\n", NULL), 0);
        snprintf(src, sizeof src, "%s/jobs", r.url);
        snprintf(res, sizeof res, "%s/results", r.url);
        run_init(&m, NULL);
        m.service = true;
        if (stream) {
            args[n++] = "--results";
            args[n++] = res;
        }
        args[n++] = "--results";
        args[n++] = m.results;
        args[n++] = "--";
        args[n++] = MVTEST;
        run_start(&m, args, NULL);
        free(run_wait_for(&m, "one pid="));
        redis_kill(&r); /* task 1 runs on: its line is written, its entry stays pending */
        for (int i = 0; i < 500 && file_lines(m.results) < 1; i++)
            nap_ms(10);
        ck_assert_uint_eq(file_lines(m.results), 1);
        kill(m.pid, SIGKILL);
        ck_assert_int_eq(run_finish(&m), 128 + SIGKILL);
        ck_assert(spawn_server(&r));
        run_again(&m);
        args[n - 2] = "--resume";
        args[n - 1] = "--";
        args[n++] = MVTEST;
        run_start(&m, args, NULL);
        ck_assert_int_eq(run_finish(&m), 0);
        /* Claimed from the dead run, or read anew (with appendfsync everysec, as these tests
         * ran Redis before, its kill -9 could lose the delivery on a loaded host). The file
         * keeps one line either way. */
        ck_assert_int_le(run_count(&m, "event=redis_claimed task=1"), 1);
        ck_assert_int_eq(run_count(&m, "event=redis_result_in_file task=1"), !stream);
        ck_assert_int_eq(run_count(&m, "one pid="), stream); /* run again for the stream only */
        run_assert_once(&m, 2, NULL);
        ck_assert_ptr_nonnull(strstr(run_summary(&m), "2 ok, 0 failed"));
        c = cli(&r);
        ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
        ck_assert_int_eq(INT(c, "HLEN", "jobs:done"), 2);
        if (stream) {
            json_t *all = stream_results(c, "results");
            ck_assert_int_eq(assert_each_once(all, 2), 0);
            json_decref(all);
        }
        redisFree(c);
        run_free(&m);
        redis_stop(&r);
    }
}
END_TEST

/* The finish script, sent again after its reply was lost with the connection (a Redis slower
 * than the reply timeout): it says the result is this call's own, written before, not another
 * memvisor's (measured: DEBUG SLEEP 20 mid-batch gave redis_result_duplicate for the two
 * results in flight, "1 by another first" in the summary then, though no other memvisor ran
 * them); nor is another entry's with the same id (a producer's mistake), which is dropped and
 * said (redis_result_duplicate), not counted as written here. */
START_TEST(a_finish_sent_again_is_told_apart_from_another_memvisors_result)
{
    redis_t r;
    redisContext *c;
    redisReply *rep;
    char eid[2][64];

    redis_start(&r, false, NULL);
    c = cli(&r);
    freeReplyObject(redisCommand(c, "XGROUP CREATE jobs memvisor 0 MKSTREAM"));
    freeReplyObject(redisCommand(c, "XADD jobs * id 1 data x"));
    freeReplyObject(redisCommand(c, "XADD jobs * id 1 data y")); /* the same id again */
    rep = redisCommand(c, "XREADGROUP GROUP memvisor me COUNT 2 STREAMS jobs >");
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    for (int i = 0; i < 2; i++)
        snprintf(eid[i], sizeof eid[i], "%s",
                 rep->element[0]->element[1]->element[i]->element[0]->str);
    freeReplyObject(rep);
    for (int i = 0; i < 4; i++) {
        /* 1: written; 2: the same call again; 0: another consumer's, dropped; 0: this
         * consumer's second entry with the same id (2 before: its result was dropped unsaid) */
        static const long long want[] = {1, 2, 0, 0};
        rep = redisCommand(
            c,
            "EVAL %s 5 jobs jobs:done results jobs:quarantine jobs:escalated memvisor %s 1 %s %s 0",
            mv_rscript_text(MV_RS_FINISH), eid[i == 3], "{\"task\":1}", i == 2 ? "other" : "me");
        ck_assert_msg(rep && rep->type == REDIS_REPLY_INTEGER, "%s",
                      rep && rep->str ? rep->str : "no reply");
        ck_assert_int_eq(rep->integer, want[i]);
        freeReplyObject(rep);
    }
    ck_assert_int_eq(INT(c, "XLEN", "results"), 1);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 0);
    redisFree(c);
    redis_stop(&r);
}
END_TEST

/* The claim script appends what STREAM:escalated keeps of an entry to its fields (the last of
 * a name wins when the entry is read); a value that is no JSON object is left out, and a key
 * of another type fails the script before it claims anything. */
START_TEST(the_claim_script_reads_what_a_dead_host_kept_of_an_escalation)
{
    static const char *const want[][2] = {{"id", "1"}, {"data", "x"}, {"limit", "134217728"}};
    static const char *const kept[] = {"not json", "{\"limit\":\"134217728\",\"other\":3}"};
    redis_t r;
    redisContext *c;
    redisReply *rep, *f;
    char eid[64], field[96];

    redis_start(&r, false, NULL);
    c = cli(&r);
    freeReplyObject(redisCommand(c, "XGROUP CREATE jobs memvisor 0 MKSTREAM"));
    freeReplyObject(redisCommand(c, "XADD jobs * id 1 data x"));
    rep = redisCommand(c, "XREADGROUP GROUP memvisor dead COUNT 1 STREAMS jobs >");
    snprintf(eid, sizeof eid, "%s", rep->element[0]->element[1]->element[0]->element[0]->str);
    freeReplyObject(rep);
    snprintf(field, sizeof field, "jobs %s", eid);
    for (int i = 0; i < 2; i++) {
        freeReplyObject(redisCommand(c, "HSET jobs:escalated %s %s", field, kept[i]));
        rep = redisCommand(c, "EVAL %s 2 jobs jobs:escalated memvisor me 0 0-0 10",
                           mv_rscript_text(MV_RS_CLAIM));
        ck_assert_msg(rep->type == REDIS_REPLY_ARRAY && rep->element[1]->elements == 1, "%s",
                      rep->str ? rep->str : "");
        f = rep->element[1]->element[0]->element[1];
        ck_assert_int_eq(f->elements, i == 0 ? 4 : 6); /* "not json" is left out */
        for (size_t k = 0; k < f->elements / 2; k++) {
            ck_assert_str_eq(f->element[2 * k]->str, want[k][0]);
            ck_assert_str_eq(f->element[2 * k + 1]->str, want[k][1]);
        }
        freeReplyObject(rep);
    }
    /* a key of another type: an error, and the entry is not claimed ("me" still owns it) */
    freeReplyObject(redisCommand(c, "DEL jobs:escalated"));
    freeReplyObject(redisCommand(c, "SET jobs:escalated x"));
    rep = redisCommand(c, "EVAL %s 2 jobs jobs:escalated memvisor other 0 0-0 10",
                       mv_rscript_text(MV_RS_CLAIM));
    ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
    ck_assert_ptr_nonnull(strstr(rep->str, "WRONGTYPE"));
    freeReplyObject(rep);
    rep = redisCommand(c, "XPENDING jobs memvisor - + 10 me");
    ck_assert_int_eq(rep->elements, 1);
    freeReplyObject(rep);
    redisFree(c);
    redis_stop(&r);
}
END_TEST

/* Mistakes are named before anything runs (exit 2); what Redis refuses ends the run with
 * the server's words and the stream's URL (exit 3). */
START_TEST(bad_urls_and_redis_errors_are_named)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    char src[256], other[256], wrong[256], nobody[256];
    int dead = free_port();

    redis_start(&r, false, NULL);
    snprintf(src, sizeof src, "%s/jobs", r.url);
    snprintf(other, sizeof other, "redis://127.0.0.2:%d/results", r.port);
    snprintf(wrong, sizeof wrong, "redis://:nope@127.0.0.1:%d/jobs", r.port);
    snprintf(nobody, sizeof nobody, "redis://127.0.0.1:%d/jobs", dead);
    /* the task source and results as given, and what the refusal says */
    const char *usage[][4] = {
        {"redis://127.0.0.1:99999/jobs", "a.jsonl", NULL, "the port is not a number"},
        {"FILE", other, NULL, "needs a Redis task source"},
        {src, other, NULL, "must be on the task stream's Redis server"},
        {src, src, NULL, "the results stream and the task stream are both"},
    };
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        run_init(&m, "x\n");
        m.service = true;
        run_start(&m,
                  (const char *[]){"run", "--tasks",
                                   strcmp(usage[i][0], "FILE") == 0 ? m.tasks : usage[i][0],
                                   "--results", usage[i][1], usage[i][2] ? "--results" : "--",
                                   usage[i][2] ? usage[i][2] : MVTEST, "--", MVTEST, NULL},
                  NULL);
        ck_assert_int_eq(run_finish(&m), 2);
        ck_assert_msg(strstr(m.log, usage[i][3]), "case %zu: %s", i, m.log);
        run_free(&m);
    }
    /* A key of another type where the stream should be; a wrong password; nobody there. */
    c = cli(&r);
    freeReplyObject(redisCommand(c, "SET jobs x"));
    redisFree(c);
    const char *urls[] = {src, wrong, nobody};
    const char *says[] = {"WRONGTYPE", "AUTH", "Connection refused"};
    for (int i = 0; i < 3; i++) {
        run_init(&m, NULL);
        m.service = true;
        run_start(&m,
                  (const char *[]){"run", "-o", "tasks.redis_retry=0", "--tasks", urls[i], "--",
                                   MVTEST, NULL},
                  NULL);
        ck_assert_int_eq(run_finish(&m), 3);
        ck_assert_msg(strstr(m.log, "event=redis_failed") && strstr(m.log, says[i]) &&
                          strstr(m.log, "source=redis://127.0.0.1:"),
                      "%s: %s", urls[i], m.log);
        run_free(&m);
    }
    /* A results key of another type: the run ends naming it, and nothing was written for
     * the task (no done mark without its result): it is still there to run. */
    c = cli(&r);
    freeReplyObject(redisCommand(c, "DEL jobs"));
    freeReplyObject(redisCommand(c, "SET results x"));
    redisFree(c);
    ck_assert_int_eq(submit(&r, "jobs", "ok\n", NULL), 0);
    host_start(&m, &r, "1s", 1, NULL);
    ck_assert_int_eq(run_finish(&m), 3);
    ck_assert_msg(strstr(m.log, "event=redis_failed") && strstr(m.log, "call=finish") &&
                      strstr(m.log, "WRONGTYPE results holds a string, not a stream"),
                  "%s", m.log);
    c = cli(&r);
    ck_assert_int_eq(INT(c, "EXISTS", "jobs:done"), 0);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 1);
    redisFree(c);
    run_free(&m);
    /* memvisor check names the key */
    run_init(&m, NULL);
    run_start(&m, (const char *[]){"check", "-o", "tasks.source=redis://h:0/x", NULL}, NULL);
    ck_assert_int_eq(run_finish(&m), 2);
    ck_assert_msg(strstr(m.log, "[tasks] source") && strstr(m.log, "port"), "%s", m.log);
    run_free(&m);
    redis_stop(&r);
}
END_TEST

/* `memvisor submit`: what it takes, and each way it refuses. */
START_TEST(submit_adds_numbered_tasks_and_refuses_bad_input)
{
    redis_t r;
    mvrun_t m;
    redisContext *c;
    redisReply *rep;
    char to[256], dead[256];

    redis_start(&r, false, NULL);
    snprintf(to, sizeof to, "%s/jobs", r.url);
    snprintf(dead, sizeof dead, "redis://127.0.0.1:%d/jobs", free_port());
    /* CR LF line ends lose their CR, as in a task file; a blank line is no task. */
    ck_assert_int_eq(submit(&r, "jobs", "a\r\n\r\nb\n", NULL), 0);
    ck_assert_int_eq(submit(&r, "jobs", "c", NULL), 0); /* a second batch: ids go on */
    c = cli(&r);
    rep = redisCommand(c, "XRANGE jobs - +");
    ck_assert_int_eq(rep->elements, 3);
    ck_assert_str_eq(rep->element[0]->element[1]->element[3]->str, "a");
    ck_assert_str_eq(rep->element[2]->element[1]->element[1]->str, "3");
    ck_assert_str_eq(rep->element[2]->element[1]->element[3]->str, "c");
    freeReplyObject(rep);
    static const struct {
        const char *args[6];
        int code;
        const char *says;
    } bad[] = {
        {{"submit", NULL}, 2, "missing FILE"},
        {{"submit", "--to", NULL}, 2, "missing value after --to"},
        {{"submit", "--bogus", "f", NULL}, 2, "unknown option: --bogus"},
        {{"submit", "a", "b", NULL}, 2, "one FILE only"},
        {{"submit", "/nonexistent/tasks", "--to", "redis://127.0.0.1:1/x", NULL},
         3,
         "cannot open /nonexistent/tasks"},
        {{"submit", "f", NULL}, 2, "no stream to add to"},
        {{"submit", "f", "--to", "redis://h/", NULL}, 2, "no stream name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_init(&m, NULL);
        run_start(&m, bad[i].args, NULL);
        ck_assert_int_eq(run_finish(&m), bad[i].code);
        ck_assert_msg(strstr(m.log, bad[i].says), "case %zu: %s", i, m.log);
        run_free(&m);
    }
    /* from stdin */
    run_init(&m, NULL);
    run_start(&m, (const char *[]){"submit", "--to", to, "-", NULL}, "d\n");
    ck_assert_int_eq(run_finish(&m), 0);
    ck_assert_ptr_nonnull(strstr(run_summary(&m), "1 tasks added to redis://127.0.0.1:"));
    run_free(&m);
    run_init(&m, "x\n");
    run_start(&m, (const char *[]){"submit", "--to", dead, m.tasks, NULL}, NULL);
    ck_assert_int_eq(run_finish(&m), 3);
    ck_assert_ptr_nonnull(strstr(m.log, "cannot connect to redis://127.0.0.1:"));
    run_free(&m);
    /* A line longer than max_size: the lines before it go in, it and the rest do not. */
    run_init(&m, "short\nthis line is too long\nafter\n");
    run_start(&m, (const char *[]){"submit", "-o", "tasks.max_size=8", "--to", to, m.tasks, NULL},
              NULL);
    ck_assert_int_eq(run_finish(&m), 2);
    ck_assert_msg(strstr(m.log, "tasks.txt:2: a task line longer than [tasks] max_size") &&
                      strstr(m.log, "1 tasks before it were"),
                  "%s", m.log);
    run_free(&m);
    ck_assert_int_eq(INT(c, "XLEN", "jobs"), 5);
    rep = redisCommand(c, "GET jobs:ids");
    ck_assert_str_eq(rep->str, "5"); /* the refused line took no id, the one before did */
    freeReplyObject(rep);
    redisFree(c);
    redis_stop(&r);
}
END_TEST

Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *e2e = tcase_create("e2e");

    tcase_set_timeout(e2e, 60);
    tcase_add_test(e2e, three_hosts_one_killed_and_a_redis_restart_give_each_result_once);
    tcase_add_test(e2e, a_slow_host_and_its_taker_write_one_result);
    tcase_add_test(e2e, a_host_scaled_up_reads_for_its_new_workers);
    tcase_add_test(e2e, a_host_reads_only_for_workers_that_are_ready);
    tcase_add_test(e2e, a_task_longer_than_claim_idle_is_not_taken_from_a_live_host);
    tcase_add_test(e2e, results_to_a_file_status_shows_the_stream_and_a_bad_entry_is_set_aside);
    tcase_add_test(e2e, bad_urls_and_redis_errors_are_named);
    tcase_add_test(e2e, a_finish_sent_again_is_told_apart_from_another_memvisors_result);
    tcase_add_test(e2e, the_claim_script_reads_what_a_dead_host_kept_of_an_escalation);
    tcase_add_test(e2e, a_resumed_file_keeps_one_line_for_a_task_written_but_not_acknowledged);
    tcase_add_test(e2e, a_memvisor_started_before_redis_waits_for_it);
    tcase_add_test(e2e, a_group_set_back_does_not_run_a_held_task_twice);
    tcase_add_test(e2e, escalated_tasks_keep_their_raised_limit_across_the_stream);
    tcase_add_test(e2e, a_task_taken_over_from_a_dead_host_keeps_its_raised_limit);
    tcase_add_test(e2e, a_task_too_big_for_its_host_runs_on_a_bigger_one);
    tcase_add_test(e2e, a_raised_limit_never_gives_less_than_this_host_gives_every_task);
    tcase_add_test(e2e, submit_adds_numbered_tasks_and_refuses_bad_input);
    suite_add_tcase(s, e2e);
    return s;
}
