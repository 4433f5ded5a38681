/*
 * metrics: the exposition text of a view (exact lines, labels by slot, unknown figures left
 * out, hostile kind names escaped), read back by prometheus_client's own parser; the
 * `[metrics] listen` check; and the HTTP responder over real sockets: GET and HEAD /metrics,
 * 404, 405, 400, an oversized request (431), a slow client (408, while others are served),
 * the connection cap (503) and many connections in a row.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "harness.h"
#include "metrics.h"
#include "metrics_http.h"
#include "suites.h"

static const mv_metrics_slot_t slots[] = {
    {1, true, 3, 256 << 20, 512 << 20, 1000, 2000, 900, 3000, 4000, 12, 1.5},
    {2, false, 1, 256 << 20, 512 << 20, -1, -1, -1, -1, -1, -1, -1},
};
static const mv_metrics_count_t tasks[] = {{"ok", 10}, {"failed", 2}, {"quarantined", 0}};
static const mv_metrics_count_t recycles[] = {{"soft_limit", 4}, {"max_tasks", 0}};
/* a kind from a task line can hold anything: quotes, backslashes, newlines, bad UTF-8 */
static const mv_metrics_count_t suspects[] = {{"parse", 1}, {"a\"b\\c\nd\xff", 2}};

static const mv_metrics_template_t tmpl = {true, 2, 9 << 20, 10 << 20, 11 << 20, 40, 1};

static mv_metrics_view_t view(void)
{
    return (mv_metrics_view_t){.slots = slots,
                               .nslots = 2,
                               .tasks = tasks,
                               .ntasks = 3,
                               .recycles = recycles,
                               .nrecycles = 2,
                               .suspects = suspects,
                               .nsuspects = 2,
                               .spawned = 5,
                               .reloads = 1,
                               .workers = 1,
                               .queue = 7,
                               .in_flight = 1,
                               .uptime_s = 3.25,
                               .spares = 2,
                               .spares_usage = 8 << 20,
                               .successors = 1,
                               .successors_usage = 3 << 20,
                               .paused_host = true,
                               .paused_results = false,
                               .have_host = true,
                               .host_available = 1 << 30,
                               .host_threshold = 2LL << 30,
                               .orphans_reaped = 4,
                               .tmpl = &tmpl,
                               .child_recycles = 6};
}

static char *render(void)
{
    mv_buf_t b = {0};
    mv_metrics_view_t v = view();

    ck_assert_int_eq(mv_metrics_render(&v, &b), 0);
    ck_assert_int_eq(mv_buf_append(&b, "", 1), 0);
    return (char *)b.data;
}

START_TEST(test_render_lines)
{
    char *t = render();

    ck_assert_ptr_nonnull(strstr(t, "# TYPE memvisor_worker_memory_soft_limit_bytes gauge\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "memvisor_worker_memory_soft_limit_bytes{slot=\"1\"} 268435456\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "memvisor_worker_memory_hard_limit_bytes{slot=\"2\"} 536870912\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_worker_generation{slot=\"1\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_worker_up{slot=\"2\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_worker_usage_bytes{slot=\"1\"} 2000\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_worker_age_seconds{slot=\"1\"} 1.500\n"));
    /* a slot with no worker has no memory samples, and no label names a pid or a state */
    ck_assert_ptr_null(strstr(t, "memvisor_worker_usage_bytes{slot=\"2\"}"));
    ck_assert_ptr_null(strstr(t, "pid="));
    ck_assert_ptr_null(strstr(t, "state="));
    ck_assert_ptr_null(strstr(t, " -1\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_recycles_total{reason=\"max_tasks\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_tasks_total{status=\"failed\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_leak_suspects_total{kind=\"parse\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "memvisor_leak_suspects_total{kind=\"a\\\"b\\\\c\\nd\xef\xbf\xbd\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_workers_spawned_total 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_child_recycles_total 6\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_queue_depth 7\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_spares 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_spares_usage_bytes 8388608\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE memvisor_successors gauge\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_successors 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_successors_usage_bytes 3145728\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_dispatch_paused{reason=\"host_memory\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_dispatch_paused{reason=\"results_backlog\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_host_memory_available_bytes 1073741824\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_host_memory_pause_threshold_bytes 2147483648\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_orphans_reaped_total 4\n"));
    /* the warm template, as one more set of families */
    ck_assert_ptr_nonnull(strstr(t, "# TYPE memvisor_template_usage_bytes gauge\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_template_usage_bytes 10485760\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_template_generation 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE memvisor_template_forks_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "memvisor_template_forks_total 40\n"));
    free(t);
}
END_TEST

START_TEST(test_no_template_no_families)
{
    mv_buf_t b = {0};
    mv_metrics_view_t v = view();

    v.tmpl = NULL;
    ck_assert_int_eq(mv_metrics_render(&v, &b), 0);
    ck_assert_int_eq(mv_buf_append(&b, "", 1), 0);
    ck_assert_ptr_null(strstr((char *)b.data, "template"));
    mv_buf_free(&b);
}
END_TEST

/* prometheus_client's parser (Debian's python3-prometheus-client) reads it back whole. */
START_TEST(test_prometheus_parser)
{
    char path[] = "/tmp/mv-check-metrics-XXXXXX", cmd[512], *t = render(), *out;
    int fd = mkstemp(path);
    json_error_t je;
    json_t *j, *fam, *s;
    FILE *p;
    size_t i, n = 0, cap = 0;
    bool found = false;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    free(t);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/python/parse_metrics.py %s", SOURCE_DIR,
             path);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    out = NULL;
    ck_assert_int_ge(getdelim(&out, &cap, '\0', p), 0);
    n = strlen(out);
    ck_assert_msg(pclose(p) == 0, "the parser refused the text (is python3-prometheus-client "
                                  "installed? .ci/deps installs it)");
    unlink(path);
    j = json_loadb(out, n, 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);
    /* the parser names counters without _total */
    fam = json_object_get(j, "memvisor_recycles");
    ck_assert_str_eq(json_string_value(json_object_get(fam, "type")), "counter");
    ck_assert_int_eq(json_array_size(json_object_get(fam, "samples")), 2);
    fam = json_object_get(j, "memvisor_leak_suspects");
    json_array_foreach(json_object_get(fam, "samples"), i, s)
    {
        const char *kind = json_string_value(json_object_get(json_array_get(s, 1), "kind"));
        found |= kind && strcmp(kind, "a\"b\\c\nd\xef\xbf\xbd") == 0 &&
                 json_number_value(json_array_get(s, 2)) == 2.0;
    }
    ck_assert_msg(found, "the escaped kind did not come back as it was: %s", out);
    fam = json_object_get(j, "memvisor_worker_memory_hard_limit_bytes");
    ck_assert_str_eq(json_string_value(json_object_get(fam, "type")), "gauge");
    ck_assert_int_eq(json_array_size(json_object_get(fam, "samples")), 2);
    ck_assert_int_eq(json_array_size(json_object_get(
                         json_object_get(j, "memvisor_worker_usage_bytes"), "samples")),
                     1);
    json_decref(j);
    free(out);
}
END_TEST

START_TEST(test_listen_check)
{
    static const char *const bad[] = {"9464",        "127.0.0.1",      "127.0.0.1:99999",
                                      "127.0.0.1:x", "localhost:9464", "[::1]9464",
                                      "::1:9464",    ":9464",          "1.2.3.4.5:1"};
    char why[200];
    mv_config_t c;
    mv_errors_t e = {0};
    const char *o[] = {"metrics.listen=127.0.0.1"};

    ck_assert_int_eq(mv_metrics_http_check("", why, sizeof why), 0);
    ck_assert_int_eq(mv_metrics_http_check("127.0.0.1:9464", why, sizeof why), 0);
    ck_assert_int_eq(mv_metrics_http_check("[::1]:0", why, sizeof why), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(mv_metrics_http_check(bad[i], why, sizeof why) == -EINVAL, "%s", bad[i]);
    /* through the config: named by key */
    ck_assert_int_eq(mv_config_build(&c, NULL, o, 1, &e), -EINVAL);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_msg(strstr(e.msg[0], "[metrics] listen") && strstr(e.msg[0], "HOST:PORT"), "%s",
                  e.msg[0]);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* ---- the responder, with a client thread ---------------------------------------------- */

typedef struct world {
    uv_loop_t loop;
    uv_async_t done;
    mv_metrics_http_t h;
    int port;
    void (*client)(struct world *);
    int calls;      /* of the metrics callback (loop thread) */
    bool fail_once; /* the callback fails once: 500 */
} world_t;

static int produce(void *arg, mv_buf_t *out)
{
    world_t *w = arg;
    mv_metrics_view_t v = view();

    w->calls++;
    if (w->fail_once) {
        w->fail_once = false;
        return -ENOMEM;
    }
    return mv_metrics_render(&v, out);
}

static int dial(const world_t *w)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0) /* the server may answer and close before a long request is all sent */
            return;
        s += k;
        n -= (size_t)k;
    }
}

/* Reads until EOF; the response (free it). */
static char *read_all(int fd)
{
    char *buf = malloc(1 << 20);
    size_t len = 0;
    ssize_t k;

    while ((k = recv(fd, buf + len, (1 << 20) - 1 - len, 0)) > 0)
        len += (size_t)k;
    buf[len] = '\0';
    close(fd);
    return buf;
}

/* One request on a new connection; the whole response. */
static char *ask(const world_t *w, const char *req)
{
    int fd = dial(w);

    send_all(fd, req, strlen(req));
    return read_all(fd);
}

static void expect(const world_t *w, const char *req, const char *status, const char *also)
{
    char *r = ask(w, req);

    ck_assert_msg(strncmp(r, status, strlen(status)) == 0, "%s -> %s", req, r);
    ck_assert_msg(!also || strstr(r, also), "%s -> %s (no %s)", req, r, also);
    free(r);
}

static void *client_main(void *arg)
{
    world_t *w = arg;

    w->client(w);
    uv_async_send(&w->done);
    return NULL;
}

static void done_cb(uv_async_t *a)
{
    world_t *w = a->data;

    uv_close((uv_handle_t *)a, NULL);
    mv_metrics_http_close(&w->h, NULL, NULL);
}

/* Opens the responder on a free port, runs `client` in a thread against it, then closes
 * everything and checks the loop is empty. */
static void run_world(world_t *w, void (*client)(world_t *), int max_conns, uint64_t timeout)
{
    char why[200];
    pthread_t th;

    uv_loop_init(&w->loop);
    ck_assert_int_eq(
        mv_metrics_http_open(&w->h, &w->loop, NULL, "127.0.0.1:0", produce, w, why, sizeof why), 0);
    ck_assert_ptr_nonnull(strstr(w->h.addr, "127.0.0.1:"));
    w->port = atoi(strchr(w->h.addr, ':') + 1);
    ck_assert_int_gt(w->port, 0);
    w->h.max_conns = max_conns ? max_conns : w->h.max_conns;
    w->h.timeout_ms = timeout ? timeout : w->h.timeout_ms;
    w->client = client;
    uv_async_init(&w->loop, &w->done, done_cb);
    w->done.data = w;
    ck_assert_int_eq(pthread_create(&th, NULL, client_main, w), 0);
    ck_assert_int_eq(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(w->h.nconns, 0);
    ck_assert_int_eq(uv_loop_close(&w->loop), 0);
}

static void requests(world_t *w)
{
    char *r = ask(w, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), *body;
    char big[MV_METRICS_HTTP_MAX_REQUEST + 100];

    ck_assert_msg(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
    ck_assert_ptr_nonnull(strstr(r, "Content-Type: " MV_METRICS_CONTENT_TYPE "\r\n"));
    ck_assert_ptr_nonnull(strstr(r, "Connection: close\r\n"));
    body = strstr(r, "\r\n\r\n") + 4;
    ck_assert_int_eq(atoi(strstr(r, "Content-Length: ") + 16), (int)strlen(body));
    ck_assert_ptr_nonnull(strstr(body, "memvisor_worker_generation{slot=\"1\"} 3\n"));
    free(r);
    r = ask(w, "HEAD /metrics?x=1 HTTP/1.0\n\n"); /* bare LF, a query string */
    ck_assert_msg(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
    ck_assert_str_eq(strstr(r, "\r\n\r\n"), "\r\n\r\n"); /* no body */
    free(r);
    expect(w, "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ", NULL);
    expect(w, "GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ", NULL);
    expect(w, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 ",
           "Allow: GET, HEAD\r\n");
    expect(w, "hello\r\n\r\n", "HTTP/1.1 400 ", NULL);
    expect(w, "GET /metrics SMTP/1.0\r\n\r\n", "HTTP/1.1 400 ", NULL);
    expect(w, "\r\n\r\n", "HTTP/1.1 400 ", NULL);
    w->fail_once = true;
    expect(w, "GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 500 ", NULL);
    /* oversized: a head that never ends within the bound */
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    big[sizeof big - 1] = '\0';
    expect(w, big, "HTTP/1.1 431 ", NULL);
    /* a request line too long to be ours, in a head within the bound */
    memset(big, 'a', 1000);
    memcpy(big, "GET /", 5);
    strcpy(big + 1000, " HTTP/1.1\r\n\r\n");
    expect(w, big, "HTTP/1.1 414 ", NULL);
    /* a client that connects and goes away without a word costs nothing */
    close(dial(w));
}

START_TEST(test_http_requests)
{
    world_t w = {0};

    run_world(&w, requests, 0, 0);
    ck_assert_int_eq(w.h.served, 2);
    ck_assert_int_eq(w.calls, 3);
}
END_TEST

/* A client that sends half a request and stalls: the others are served meanwhile, and it gets
 * 408 once its time is up. */
static void slow(world_t *w)
{
    int fd = dial(w);
    char *r;

    send_all(fd, "GET /metr", 9);
    for (int i = 0; i < 20; i++)
        expect(w, "GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 ", NULL);
    r = read_all(fd); /* blocks until the server gives up on it */
    ck_assert_msg(strncmp(r, "HTTP/1.1 408 ", 13) == 0, "%s", r);
    free(r);
}

START_TEST(test_http_slow_client)
{
    world_t w = {0};

    run_world(&w, slow, 0, 300);
    ck_assert_int_eq(w.h.served, 20);
}
END_TEST

/* Connections past the cap are answered 503; once others close, new ones are served; many
 * connections in a row each get their answer. */
static void many(world_t *w)
{
    int idle[4];
    char *r;
    int ok = 0;

    for (int i = 0; i < 4; i++)
        idle[i] = dial(w);
    /* accepted in order: the first four hold the cap */
    expect(w, "GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", NULL);
    for (int i = 0; i < 4; i++) {
        send_all(idle[i], "GET /metrics HTTP/1.1\r\n\r\n", 25);
        r = read_all(idle[i]);
        ck_assert_msg(strncmp(r, "HTTP/1.1 200 ", 13) == 0, "%s", r);
        free(r);
    }
    /* the server frees a connection when its close completes: a new one may race that and
     * be refused, so each of these counts only once served */
    for (int i = 0; i < 300 && ok < 100; i++) {
        r = ask(w, "GET /metrics HTTP/1.1\r\n\r\n");
        ok += strncmp(r, "HTTP/1.1 200 ", 13) == 0;
        ck_assert_msg(strncmp(r, "HTTP/1.1 200 ", 13) == 0 || strncmp(r, "HTTP/1.1 503 ", 13) == 0,
                      "%s", r);
        free(r);
    }
    ck_assert_int_eq(ok, 100);
}

START_TEST(test_http_connection_cap)
{
    world_t w = {0};

    run_world(&w, many, 4, 0);
    ck_assert_int_ge(w.h.refused, 1);
    ck_assert_int_eq(w.h.served, 104);
}
END_TEST

START_TEST(test_http_open_fails)
{
    uv_loop_t loop;
    mv_metrics_http_t a, b;
    char why[200], spec[96];

    uv_loop_init(&loop);
    ck_assert_int_eq(
        mv_metrics_http_open(&a, &loop, NULL, "nonsense", produce, NULL, why, sizeof why), -EINVAL);
    ck_assert_int_eq(
        mv_metrics_http_open(&a, &loop, NULL, "127.0.0.1:0", produce, NULL, why, sizeof why), 0);
    snprintf(spec, sizeof spec, "%s", a.addr);
    /* the same port again: EADDRINUSE, said with the address */
    ck_assert_int_lt(mv_metrics_http_open(&b, &loop, NULL, spec, produce, NULL, why, sizeof why),
                     0);
    ck_assert_msg(strstr(why, spec) != NULL, "%s", why);
    mv_metrics_http_close(&a, NULL, NULL);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* GET /metrics from a running memvisor, parsed by prometheus_client: JSON of the families. */
static json_t *scrape(const char *addr)
{
    char cmd[512], *out = NULL;
    size_t cap = 0;
    json_error_t je;
    json_t *j;
    FILE *p;

    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 10 http://%s/metrics > /tmp/mv-scrape-%d.txt && "
             "/usr/bin/python3 %s/tests/python/parse_metrics.py /tmp/mv-scrape-%d.txt; "
             "rc=$?; rm -f /tmp/mv-scrape-%d.txt; exit $rc",
             addr, (int)getpid(), SOURCE_DIR, (int)getpid(), (int)getpid());
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_ge(getdelim(&out, &cap, '\0', p), 0);
    ck_assert_msg(pclose(p) == 0, "scrape or parse failed: %s", out);
    j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);
    free(out);
    return j;
}

/* The value of `family`'s sample labelled slot=S, or -1 when there is none. */
static double slot_value(json_t *j, const char *family, const char *slot, size_t *nsamples)
{
    json_t *s;
    size_t i;
    double v = -1;

    *nsamples = json_array_size(json_object_get(json_object_get(j, family), "samples"));
    json_array_foreach(json_object_get(json_object_get(j, family), "samples"), i, s)
    {
        json_t *labels = json_array_get(s, 1);
        ck_assert_ptr_null(json_object_get(labels, "pid"));   /* never a label that churns */
        ck_assert_ptr_null(json_object_get(labels, "state")); /* with every recycle */
        if (strcmp(json_string_value(json_object_get(labels, "slot")), slot) == 0)
            v = json_number_value(json_array_get(s, 2));
    }
    return v;
}

/* The real binary with [metrics] listen: Prometheus can scrape it, and a recycle moves a
 * slot's generation instead of starting new series. */
START_TEST(test_scrape_a_running_memvisor)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=2", "worker.protocol=none", "metrics.listen=127.0.0.1:0"),
        RUN_CMD("sleep", "60"));
    char addr[96], *line, *a;
    size_t n1, n2;
    json_t *j;

    run_init(&r, NULL);
    r.service = true;
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=metrics_listen ");
    a = strstr(line, "addr=");
    ck_assert_ptr_nonnull(a);
    sscanf(a + 5, "%95[^ \n]", addr);
    free(line);
    free(run_wait_for(&r, "event=pool_ready"));
    j = scrape(addr);
    ck_assert(slot_value(j, "memvisor_worker_generation", "1", &n1) == 1);
    ck_assert(slot_value(j, "memvisor_worker_memory_hard_limit_bytes", "2", &n2) > 0);
    ck_assert_uint_eq(n1, 2);
    json_decref(j);
    /* A reload replaces every worker: the same series, a new generation. */
    kill(r.pid, SIGHUP);
    free(run_wait_for(&r, "event=ready worker=")); /* both new workers, in either order */
    free(run_wait_for(&r, "event=ready worker="));
    /* 2, or 3 when the cgroup made ahead for 2 went with the old limits (cgahead.h) */
    ck_assert_int_eq(run_count(&r, "event=spawn worker=1 gen="), 2);
    j = scrape(addr);
    ck_assert(slot_value(j, "memvisor_worker_generation", "1", &n2) >= 2);
    ck_assert_uint_eq(n2, n1);
    json_decref(j);
    kill(r.pid, SIGTERM);
    ck_assert_int_eq(run_finish(&r), 0);
    run_free(&r);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_render_lines);
    tcase_add_test(tc, test_no_template_no_families);
    tcase_add_test(tc, test_prometheus_parser);
    tcase_add_test(tc, test_listen_check);
    tcase_add_test(tc, test_http_requests);
    tcase_add_test(tc, test_http_slow_client);
    tcase_add_test(tc, test_http_connection_cap);
    tcase_add_test(tc, test_http_open_fails);
    tcase_add_test(tc, test_scrape_a_running_memvisor);
    suite_add_tcase(s, tc);
    return s;
}
