/*
 * config: the option table, value parsers, file loading with file:line errors, -o
 * overrides, cross-key checks, printing (round trip), conf/memvisor.ini, word splitting.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confdiff.h"
#include "config.h"
#include "heapmon.h"
#include "suites.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/mv-check-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char p[PATH_MAX];

    if (!d)
        return;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Writes `text` to tmpdir/name; the path goes to out. */
static void write_file(const char *name, const char *text, char out[PATH_MAX])
{
    FILE *f;

    snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);
    f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* mv_config_init + load of `text` from tmpdir/t.ini; path in out. */
static int load_text(mv_config_t *c, mv_errors_t *e, const char *text, char out[PATH_MAX])
{
    write_file("t.ini", text, out);
    ck_assert_int_eq(mv_config_init(c), 0);
    return mv_config_load(c, out, e);
}

/* True when some error equals the formatted line. */
__attribute__((format(printf, 2, 3))) static int has(const mv_errors_t *e, const char *fmt, ...)
{
    char want[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->msg[i], want) == 0)
            return 1;
    fprintf(stderr, "missing error: %s\nhave %zu:\n", want, e->n);
    mv_errors_print(e, stderr);
    return 0;
}

/* Field equality through the table: bytes for numbers, text for strings. */
static int same_field(const mv_config_t *a, const mv_config_t *b, const mv_option_t *o)
{
    const char *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;
    const char *sa, *sb;

    if (o->type != MV_OPT_STRING)
        return memcmp(pa, pb, o->size) == 0;
    memcpy(&sa, pa, sizeof sa);
    memcpy(&sb, pb, sizeof sb);
    return strcmp(sa, sb) == 0;
}

/* ---- table and defaults ---------------------------------------------------------------- */

START_TEST(test_table_sane)
{
    size_t n, i, j;
    const mv_option_t *t = mv_config_options(&n);
    mv_config_t c;
    char *buf = NULL, *line, *save;
    size_t len = 0, k = 0;
    FILE *f;

    ck_assert_uint_eq(n, 79);
    for (i = 0; i < n; i++) {
        ck_assert_ptr_eq(mv_config_find(t[i].section, t[i].name), &t[i]);
        ck_assert(t[i].doc && t[i].doc[0] && !strchr(t[i].doc, '\n'));
        if (t[i].type == MV_OPT_INT)
            ck_assert(t[i].size == sizeof(int64_t) ||
                      (t[i].size == sizeof(int) && t[i].max <= INT_MAX));
        if (t[i].type == MV_OPT_SIZE || t[i].type == MV_OPT_DURATION)
            ck_assert_uint_eq(t[i].size, sizeof(int64_t));
        if (t[i].type == MV_OPT_ENUM) {
            ck_assert_uint_eq(t[i].size, sizeof(int));
            for (j = 0; t[i].choices[j]; j++)
                ck_assert_msg(strstr(t[i].doc, t[i].choices[j]), "%s: doc omits %s", t[i].name,
                              t[i].choices[j]);
        }
        if (t[i].type == MV_OPT_STRING)
            ck_assert_uint_eq(t[i].size, sizeof(char *));
        /* a section is one block of the table */
        for (j = i + 1; j < n; j++)
            if (strcmp(t[j].section, t[i].section) == 0)
                ck_assert_str_eq(t[j - 1].section, t[i].section);
    }
    ck_assert_ptr_null(mv_config_find("worker", "nope"));
    ck_assert_ptr_null(mv_config_find("nope", "prefetch"));
    /* What a reload applies, and what a running memvisor keeps until restart. */
    ck_assert(mv_config_find("limits", "memory_soft")->reload);
    ck_assert(mv_config_find("worker", "command")->reload);
    ck_assert(mv_config_find("supervisor", "workers")->reload); /* scaled live */
    ck_assert(!mv_config_find("supervisor", "cgroup")->reload);
    ck_assert(!mv_config_find("service", "listen")->reload);
    ck_assert(!mv_config_find("worker", "protocol")->reload);

    /* Every default is canonical: printing the defaults gives back the `def` strings. */
    ck_assert_int_eq(mv_config_init(&c), 0);
    f = open_memstream(&buf, &len);
    mv_config_print(&c, f);
    fclose(f);
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strstr(line, " =");

        if (line[0] == ';' || line[0] == '[')
            continue;
        ck_assert_ptr_nonnull(eq);
        ck_assert_uint_lt(k, n);
        ck_assert_int_eq(strncmp(line, t[k].name, (size_t)(eq - line)), 0);
        /* then the origin, as an inline comment after two blanks at least */
        ck_assert_ptr_nonnull(strstr(line, "  ; default"));
        *strstr(line, "  ; default") = '\0';
        while (line[strlen(line) - 1] == ' ')
            line[strlen(line) - 1] = '\0';
        ck_assert_str_eq(eq[2] ? eq + 3 : "", t[k].def);
        k++;
    }
    ck_assert_uint_eq(k, n);
    free(buf);
    mv_config_free(&c);
}
END_TEST

START_TEST(test_defaults)
{
    mv_config_t c;
    size_t n;
    const mv_option_t *t = mv_config_options(&n);

    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(c.supervisor.workers, 0);
    ck_assert_int_eq(c.supervisor.grace_period, 30000);
    ck_assert_int_eq(c.supervisor.cgroup, MV_CGMODE_AUTO);
    ck_assert_str_eq(c.supervisor.cgroup_parent, "");
    ck_assert_str_eq(c.supervisor.state_dir, ".memvisor");
    ck_assert_int_eq(c.supervisor.keep_runs, 20);
    ck_assert_str_eq(c.worker.command, "");
    ck_assert_int_eq(c.worker.protocol, MV_PROTO_API);
    ck_assert_int_eq(c.worker.prefetch, 1);
    ck_assert_int_eq(c.worker.ready_timeout, 10000);
    ck_assert_int_eq(c.worker.kill_timeout, 5000);
    ck_assert_int_eq(c.worker.max_message, 16 << 20);
    ck_assert_int_eq(c.worker.fatal_exit, 78);
    ck_assert_int_eq(c.worker.backoff_min, 100);
    ck_assert_int_eq(c.worker.backoff_max, 10000);
    ck_assert_int_eq(c.worker.crash_limit, 10);
    ck_assert_str_eq(c.worker.fail_prefix, "FAIL:");
    ck_assert_int_eq(c.limits.max_tasks, 0);
    ck_assert_int_eq(c.limits.max_tasks_jitter, 0);
    ck_assert_int_eq(c.limits.max_lifetime, 0);
    ck_assert_int_eq(c.limits.max_lifetime_jitter, 0);
    ck_assert_int_eq(c.limits.memory_soft, MV_CONFIG_AUTO);
    ck_assert_int_eq(c.limits.memory_hard, MV_CONFIG_AUTO);
    ck_assert_int_eq(c.limits.task_timeout, 0);
    ck_assert_int_eq(c.limits.metric, MV_METRIC_PRIVATE);
    ck_assert_int_eq(c.limits.sample_interval, 100);
    ck_assert_int_eq(c.recycle.max_concurrent, 1);
    ck_assert_str_eq(c.tasks.source, "");
    ck_assert_str_eq(c.tasks.results, "");
    ck_assert_int_eq(c.tasks.max_attempts, 3);
    ck_assert_int_eq(c.tasks.max_size, 4 << 20);
    ck_assert_int_eq(c.log.format, MV_LOGFMT_TEXT);
    ck_assert_int_eq(c.log.level, MV_LVL_INFO);
    ck_assert_str_eq(c.log.file, "");
    ck_assert_int_eq(c.log.events_max, 64LL << 20);
    ck_assert_str_eq(c.leak.kind, "auto");
    ck_assert_ptr_null(c.path);
    for (size_t i = 0; i < n; i++) {
        mv_origin_t o = mv_config_origin(&c, t[i].section, t[i].name);

        ck_assert_ptr_null(o.file);
        ck_assert_int_eq(o.line, 0);
    }
    mv_config_free(&c);
}
END_TEST

static const char *every_key_changed = "[supervisor]\n"
                                       "workers = 7\n"
                                       "grace_period = 1.5m\n"
                                       "cgroup = v1\n"
                                       "cgroup_parent = /memvisor.slice\n"
                                       "state_dir = /var/lib/memvisor\n"
                                       "keep_runs = 0\n"
                                       "subreaper = no\n"
                                       "pause_below = 2.5%\n"
                                       "[worker]\n"
                                       "command = python3 -u 'my worker.py' --flag\n"
                                       "protocol = lines\n"
                                       "prefetch = 64\n"
                                       "ready_timeout = 2500ms\n"
                                       "kill_timeout = 0\n"
                                       "max_message = 1.5M\n"
                                       "fatal_exit = 3\n"
                                       "backoff_min = 250ms\n"
                                       "backoff_max = 1h\n"
                                       "crash_limit = 0\n"
                                       "fail_prefix = ERR \"x\":\n"
                                       "user = 0\n"
                                       "group = 0\n"
                                       "template = yes\n"
                                       "gather = no\n"
                                       "[limits]\n"
                                       "max_tasks = 1000000000000\n"
                                       "max_tasks_jitter = 17\n"
                                       "max_lifetime = 2d\n"
                                       "max_lifetime_jitter = 90s\n"
                                       "memory_soft = 1000\n"
                                       "memory_hard = 1T\n"
                                       "task_timeout = 365d\n"
                                       "task_warn = 1h\n"
                                       "metric = rss\n"
                                       "enforce = no\n"
                                       "sample_interval = 1ms\n"
                                       "escalate = 1.5x\n"
                                       "escalate_max = 3T\n"
                                       "[recycle]\n"
                                       "max_concurrent = 1024\n"
                                       "spacing = 2s\n"
                                       "handover_headroom = 1G\n"
                                       "spares = 3\n"
                                       "cgroup_ahead = no\n"
                                       "successor = yes\n"
                                       "drain_cap = yes\n"
                                       "target = child\n"
                                       "child_signal = QUIT\n"
                                       "[service]\n"
                                       "listen = 127.0.0.1:8080 [::1]:8080 unix:/run/m.sock\n"
                                       "backlog = 16\n"
                                       "[control]\n"
                                       "socket = /run/memvisor.sock\n"
                                       "[metrics]\n"
                                       "listen = [::1]:9464\n"
                                       "[tasks]\n"
                                       "source = -\n"
                                       "results = out/results.jsonl\n"
                                       "max_attempts = 1000\n"
                                       "max_size = 1\n"
                                       "accounting = no\n"
                                       "resume = yes\n"
                                       "results_retry = 5s\n"
                                       "group = batch7\n"
                                       "claim_idle = 2m\n"
                                       "follow = yes\n"
                                       "redis_retry = 0\n"
                                       "[leak]\n"
                                       "detect = no\n"
                                       "kind = json:op\n"
                                       "window = 500\n"
                                       "warmup = 0\n"
                                       "min_slope = 1M\n"
                                       "task_growth = 1G\n"
                                       "snapshot_timeout = 250ms\n"
                                       "history = 3\n"
                                       "snapshots_max = 7\n"
                                       "heap = off\n"
                                       "python_malloc = no\n"
                                       "confirm = off\n"
                                       "settle = 1s\n"
                                       "[log]\n"
                                       "format = json\n"
                                       "level = debug\n"
                                       "file = /var/log/memvisor.log\n"
                                       "events_max = 1G\n"
                                       "progress = on\n";

START_TEST(test_roundtrip)
{
    mv_config_t c, d, def;
    mv_errors_t e = {0};
    char path[PATH_MAX], path2[PATH_MAX];
    size_t n;
    const mv_option_t *t = mv_config_options(&n);
    FILE *f;

    ck_assert_int_eq(load_text(&c, &e, every_key_changed, path), 0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_int_eq(c.supervisor.workers, 7);
    ck_assert_int_eq(c.supervisor.grace_period, 90000);
    ck_assert_int_eq(c.supervisor.cgroup, MV_CGMODE_V1);
    ck_assert_str_eq(c.supervisor.cgroup_parent, "/memvisor.slice");
    ck_assert_str_eq(c.supervisor.state_dir, "/var/lib/memvisor");
    ck_assert_int_eq(c.supervisor.keep_runs, 0);
    ck_assert_str_eq(c.worker.command, "python3 -u 'my worker.py' --flag");
    ck_assert_int_eq(c.worker.protocol, MV_PROTO_LINES);
    ck_assert_int_eq(c.worker.prefetch, 64);
    ck_assert_int_eq(c.worker.ready_timeout, 2500);
    ck_assert_int_eq(c.worker.kill_timeout, 0);
    ck_assert_int_eq(c.worker.max_message, 3 << 19);
    ck_assert_int_eq(c.worker.fatal_exit, 3);
    ck_assert_int_eq(c.worker.backoff_min, 250);
    ck_assert_int_eq(c.worker.backoff_max, 3600000);
    ck_assert_int_eq(c.worker.crash_limit, 0);
    ck_assert_str_eq(c.worker.fail_prefix, "ERR \"x\":");
    ck_assert_int_eq(c.worker.template, 1);
    ck_assert_int_eq(c.limits.max_tasks, INT64_C(1000000000000));
    ck_assert_int_eq(c.limits.max_tasks_jitter, 17);
    ck_assert_int_eq(c.limits.max_lifetime, 2 * 86400000);
    ck_assert_int_eq(c.limits.max_lifetime_jitter, 90000);
    ck_assert_int_eq(c.limits.memory_soft, 1000);
    ck_assert_int_eq(c.limits.memory_hard, INT64_C(1) << 40);
    ck_assert_int_eq(c.limits.task_timeout, INT64_C(365) * 86400000);
    ck_assert_int_eq(c.limits.metric, MV_METRIC_RSS);
    ck_assert_int_eq(c.limits.sample_interval, 1);
    ck_assert_int_eq(c.recycle.max_concurrent, 1024);
    ck_assert_int_eq(c.recycle.spacing, 2000);
    ck_assert_int_eq(c.recycle.spares, 3);
    ck_assert_int_eq(c.recycle.drain_cap, 1);
    ck_assert_int_eq(c.recycle.cgroup_ahead, 0);
    ck_assert_int_eq(c.recycle.successor, 1);
    ck_assert_int_eq(c.recycle.target, MV_TARGET_CHILD);
    ck_assert_int_eq(c.recycle.child_signal, MV_CSIG_QUIT);
    ck_assert_str_eq(c.service.listen, "127.0.0.1:8080 [::1]:8080 unix:/run/m.sock");
    ck_assert_int_eq(c.service.backlog, 16);
    ck_assert_str_eq(c.control.socket, "/run/memvisor.sock");
    ck_assert_str_eq(c.metrics.listen, "[::1]:9464");
    ck_assert_str_eq(c.tasks.source, "-");
    ck_assert_str_eq(c.tasks.results, "out/results.jsonl");
    ck_assert_int_eq(c.tasks.max_attempts, 1000);
    ck_assert_int_eq(c.tasks.max_size, 1);
    ck_assert_int_eq(c.tasks.accounting, 0);
    ck_assert_int_eq(c.tasks.resume, 1);
    ck_assert_int_eq(c.tasks.results_retry, 5000);
    ck_assert_str_eq(c.tasks.group, "batch7");
    ck_assert_int_eq(c.tasks.claim_idle, 120000);
    ck_assert_int_eq(c.tasks.follow, 1);
    ck_assert_int_eq(c.tasks.redis_retry, 0);
    ck_assert_int_eq(c.limits.enforce, 0);
    ck_assert_int_eq(c.leak.detect, 0);
    ck_assert_str_eq(c.leak.kind, "json:op");
    ck_assert_int_eq(c.leak.window, 500);
    ck_assert_int_eq(c.leak.warmup, 0);
    ck_assert_int_eq(c.leak.min_slope, 1 << 20);
    ck_assert_int_eq(c.leak.task_growth, 1 << 30);
    ck_assert_int_eq(c.leak.snapshot_timeout, 250);
    ck_assert_int_eq(c.leak.history, 3);
    ck_assert_int_eq(c.leak.snapshots_max, 7);
    ck_assert_int_eq(c.leak.heap, MV_HEAPMODE_OFF);
    ck_assert_int_eq(c.leak.python_malloc, MV_HEAPPY_NO);
    ck_assert_int_eq(c.leak.confirm, MV_CONFIRM_OFF);
    ck_assert_int_eq(c.leak.settle, 1000);
    ck_assert_int_eq(c.log.format, MV_LOGFMT_JSON);
    ck_assert_int_eq(c.log.level, MV_LVL_DEBUG);
    ck_assert_str_eq(c.log.file, "/var/log/memvisor.log");
    ck_assert_int_eq(c.log.events_max, 1LL << 30);
    ck_assert_int_eq(c.supervisor.subreaper, MV_REAP_NO);
    ck_assert_str_eq(c.supervisor.pause_below, "2.5%");
    ck_assert_str_eq(c.worker.user, "0");
    ck_assert_str_eq(c.worker.group, "0");
    ck_assert_str_eq(c.limits.escalate, "1.5x");
    ck_assert_int_eq(c.limits.escalate_max, INT64_C(3) << 40);
    ck_assert_int_eq(c.log.progress, MV_PROGRESS_ON);
    ck_assert_str_eq(c.path, path);
    /* Every key off its default includes a lines worker with a template, which cannot be
     * (the cross-key checks find it), a lines worker whose children are recycled, which
     * cannot be either, and, unless memvisor is root, a worker user. */
    ck_assert_int_eq(mv_config_finish(&c, &e), -EINVAL);
    ck_assert(has(&e,
                  "%s:24: [worker] template: only api workers can be templates (a lines "
                  "worker has no mvw_open to fork from): set protocol = api, or template = no",
                  path));
    ck_assert(has(&e,
                  "%s:48: [recycle] target: child needs protocol = none (a master such as "
                  "gunicorn that forks its own children): a lines worker is recycled whole",
                  path));
    if (geteuid() == 0) {
        ck_assert_uint_eq(e.n, 2);
        ck_assert_int_eq(c.worker.uid, 0);
        ck_assert_int_eq(c.worker.gid, 0);
    } else { /* only root may switch a worker's user */
        ck_assert_uint_eq(e.n, 3);
        ck_assert_ptr_nonnull(strstr(e.msg[0], "[worker] user: \"0\": only root can"));
    }
    mv_errors_free(&e);
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(c.supervisor.pause_permille, 25);
    ck_assert_int_eq(c.limits.escalate_mode, MV_ESC_FACTOR);
    ck_assert(c.limits.escalate_factor > 1.49 && c.limits.escalate_factor < 1.51);

    /* print -> load -> the same values; and every one differs from its default */
    snprintf(path2, sizeof path2, "%s/printed.ini", tmpdir);
    f = fopen(path2, "w");
    ck_assert_ptr_nonnull(f);
    mv_config_print(&c, f);
    fclose(f);
    ck_assert_int_eq(mv_config_init(&d), 0);
    ck_assert_int_eq(mv_config_init(&def), 0);
    ck_assert_int_eq(mv_config_load(&d, path2, &e), 0);
    ck_assert_uint_eq(e.n, 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(same_field(&c, &d, &t[i]), "%s changed in the round trip", t[i].name);
        ck_assert_msg(!same_field(&c, &def, &t[i]), "%s is its default", t[i].name);
        ck_assert_ptr_eq(mv_config_origin(&d, t[i].section, t[i].name).file, d.path);
    }
    mv_config_free(&c);
    mv_config_free(&d);
    mv_config_free(&def);
}
END_TEST

START_TEST(test_finish_workers)
{
    mv_config_t c;
    mv_errors_t e = {0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_int_eq(c.supervisor.workers, cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus);
    mv_config_free(&c);
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "supervisor.workers=3", 1, &e), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_int_eq(c.supervisor.workers, 3);
    ck_assert_uint_eq(e.n, 0);
    mv_config_free(&c);
}
END_TEST

/* [supervisor] max_starting: 0 is twice the online CPUs; a number stands; out of range is
 * refused where it was given. */
START_TEST(test_finish_max_starting)
{
    mv_config_t c;
    mv_errors_t e = {0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert(mv_config_find("supervisor", "max_starting")->reload);
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_int_eq(c.supervisor.max_starting, cpus < 1 ? 2 : cpus > 512 ? 1024 : 2 * cpus);
    mv_config_free(&c);
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "supervisor.max_starting=1", 1, &e), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_int_eq(c.supervisor.max_starting, 1);
    ck_assert_int_lt(mv_config_override(&c, "supervisor.max_starting=1025", 2, &e), 0);
    ck_assert_int_lt(mv_config_override(&c, "supervisor.max_starting=-1", 3, &e), 0);
    ck_assert_uint_eq(e.n, 2);
    ck_assert(has(&e, "-o:2: [supervisor] max_starting: \"1025\": out of range (0..1024)"));
    ck_assert(has(&e, "-o:3: [supervisor] max_starting: \"-1\": out of range (0..1024)"));
    ck_assert_int_eq(c.supervisor.max_starting, 1);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* ---- units ----------------------------------------------------------------------------- */

START_TEST(test_sizes)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"512B", 512},
        {"7b", 7},
        {"1K", 1024},
        {"1k", 1024},
        {"1KiB", 1024},
        {"2kib", 2048},
        {"2M", 2 << 20},
        {"2MiB", 2 << 20},
        {"3G", INT64_C(3) << 30},
        {"3GiB", INT64_C(3) << 30},
        {"3g", INT64_C(3) << 30},
        {"1T", INT64_C(1) << 40},
        {"1TiB", INT64_C(1) << 40},
        {"16 M", 16 << 20},
        {"1.5G", INT64_C(3) << 29},
        {"0.5K", 512},
        {"1.0005K", 1025}, /* 1024.512 rounds up */
        {"1.0004K", 1024}, /* 1024.4096 rounds down */
        {"1.5", 2},
        {"8388607T", INT64_C(8388607) << 40},
        {"9223372036854775807", INT64_MAX},
    };
    static const struct {
        const char *in;
        int rc;
        const char *why; /* a substring */
    } bad[] = {
        {"", -EINVAL, "not a number"},
        {"-1", -EINVAL, "negative"},
        {"-1K", -EINVAL, "negative"},
        {"abc", -EINVAL, "not a number"},
        {"1.", -EINVAL, "not a number"},
        {".5K", -EINVAL, "not a number"},
        {"16MB", -EINVAL, "K means 1024"},
        {"1KB", -EINVAL, "K means 1024"},
        {"1gb", -EINVAL, "K means 1024"},
        {"1TB", -EINVAL, "K means 1024"},
        {"1X", -EINVAL, "bad unit (use B, K, M, G, T or KiB, MiB, GiB, TiB; K = 1024)"},
        {"1PiB", -EINVAL, "bad unit"},
        {"1e3", -EINVAL, "unexpected text"},
        {"16M x", -EINVAL, "unexpected text after the number"},
        {"16M!", -EINVAL, "unexpected text"},
        {"1,5G", -EINVAL, "unexpected text"},
        {"0.1", -EINVAL, "rounds to 0 bytes, and 0 means off"}, /* never "off" by rounding */
        {"0.0001K", -EINVAL, "at least 1 byte"},
        {"8388608T", -ERANGE, "too large"},
        {"9223372036854775808", -ERANGE, "too large"},
        {"99999999999999999999K", -ERANGE, "too large"},
    };
    int64_t v;
    const char *why;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        why = NULL;
        ck_assert_msg(mv_parse_size(ok[i].in, &v, &why) == 0, "%s: %s", ok[i].in, why);
        ck_assert_msg(v == ok[i].want, "%s: %lld", ok[i].in, (long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        ck_assert_msg(mv_parse_size(bad[i].in, &v, &why) == bad[i].rc, "%s accepted", bad[i].in);
        ck_assert_msg(why && strstr(why, bad[i].why), "%s: %s", bad[i].in, why);
    }
}
END_TEST

START_TEST(test_durations)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"0.0", 0},
        {"0ms", 0},
        {"1ms", 1},
        {"100MS", 100},
        {"1s", 1000},
        {"1S", 1000},
        {"1m", 60000},
        {"1h", 3600000},
        {"1d", 86400000},
        {"0.5s", 500},
        {"1.5h", 5400000},
        {"2.5ms", 3},
        {"30 s", 30000},
        {"0.001s", 1}, /* the least above 0: 0.4ms is refused (below) */
        {"365d", INT64_C(365) * 86400000},
    };
    static const struct {
        const char *in;
        int rc;
        const char *why;
    } bad[] = {
        {"30", -EINVAL, "missing unit (use ms, s, m, h or d, e.g. 30s)"},
        {"0.5", -EINVAL, "missing unit"},
        {"1x", -EINVAL, "bad unit (use ms, s, m, h or d)"},
        {"1sec", -EINVAL, "bad unit"},
        {"1us", -EINVAL, "bad unit"},
        {"-1s", -EINVAL, "negative"},
        {"s", -EINVAL, "not a number"},
        {"1s2", -EINVAL, "unexpected text"},
        {"1h30m", -EINVAL, "unexpected text"},
        {"", -EINVAL, "not a number"},
        {"0.0004s", -EINVAL, "rounds to 0ms, and 0 means off"},
        {"0.4ms", -EINVAL, "at least 1ms"},
        {"999999999999999999d", -ERANGE, "too large"},
    };
    int64_t v;
    const char *why;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        why = NULL;
        ck_assert_msg(mv_parse_duration(ok[i].in, &v, &why) == 0, "%s: %s", ok[i].in, why);
        ck_assert_msg(v == ok[i].want, "%s: %lld", ok[i].in, (long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        ck_assert_msg(mv_parse_duration(bad[i].in, &v, &why) == bad[i].rc, "%s accepted",
                      bad[i].in);
        ck_assert_msg(why && strstr(why, bad[i].why), "%s: %s", bad[i].in, why);
    }
}
END_TEST

START_TEST(test_bools)
{
    const char *yes[] = {"yes", "YES", "true", "On", "1"}, *no[] = {"no", "False", "off", "0"};
    const char *why = NULL;
    int v;

    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(mv_parse_bool(yes[i], &v, &why), 0);
        ck_assert_int_eq(v, 1);
    }
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(mv_parse_bool(no[i], &v, &why), 0);
        ck_assert_int_eq(v, 0);
    }
    ck_assert_int_eq(mv_parse_bool("maybe", &v, &why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "yes/no"));
}
END_TEST

/* Value reasons as they appear in the file, with ranges in the key's own units. */
START_TEST(test_value_reasons)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX];

    ck_assert_int_eq(load_text(&c, &e,
                               "[supervisor]\n"
                               "workers = -5\n"      /* 2 */
                               "grace_period = 2d\n" /* 3 */
                               "cgroup = V2\n"       /* 4: enums ignore case */
                               "[worker]\n"
                               "prefetch = 1.5\n"                     /* 6 */
                               "fatal_exit = 0x10\n"                  /* 7 */
                               "ready_timeout = 0\n"                  /* 8 */
                               "max_message = 1K\n"                   /* 9 */
                               "protocol = http\n"                    /* 10 */
                               "crash_limit = 99999999999999999999\n" /* 11 */
                               "[limits]\n"
                               "memory_hard = 2048T\n" /* 13 */
                               "metric = pss\n"        /* 14 */
                               "[log]\n"
                               "level = trace\n" /* 16 */
                               "[leak]\n"
                               "settle = 2h\n", /* 18 */
                               p),
                     -EINVAL);
    ck_assert(has(&e, "%s:2: [supervisor] workers: \"-5\": out of range (0..1024)", p));
    ck_assert(has(&e, "%s:3: [supervisor] grace_period: \"2d\": out of range (0..1d)", p));
    ck_assert(has(&e, "%s:6: [worker] prefetch: \"1.5\": not an integer", p));
    ck_assert(has(&e, "%s:7: [worker] fatal_exit: \"0x10\": not an integer", p));
    ck_assert(has(&e, "%s:8: [worker] ready_timeout: \"0\": out of range (1ms..1h)", p));
    ck_assert(has(&e, "%s:9: [worker] max_message: \"1K\": out of range (4K..64M)", p));
    ck_assert(has(&e, "%s:10: [worker] protocol: \"http\": not one of api, lines, none", p));
    ck_assert(has(&e,
                  "%s:11: [worker] crash_limit: \"99999999999999999999\": out of range "
                  "(0..1000000)",
                  p));
    ck_assert(has(&e, "%s:13: [limits] memory_hard: \"2048T\": out of range (0..1024T)", p));
    ck_assert(has(
        &e, "%s:14: [limits] metric: \"pss\": not one of private, rss (did you mean \"rss\"?)", p));
    ck_assert(has(&e, "%s:16: [log] level: \"trace\": not one of debug, info, warn, error", p));
    ck_assert(has(&e, "%s:18: [leak] settle: \"2h\": out of range (0..1h)", p));
    ck_assert_uint_eq(e.n, 12);
    ck_assert_int_eq(c.supervisor.cgroup, MV_CGMODE_V2);
    ck_assert_int_eq(c.worker.prefetch, 1); /* bad values leave the previous one */
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* ---- mistakes in files ----------------------------------------------------------------- */

START_TEST(test_each_mistake)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX];

    ck_assert_int_eq(load_text(&c, &e,
                               "; a comment\n"            /* 1 */
                               "stray = 1\n"              /* 2: before any section */
                               "prefetch = 2\n"           /* 3: before, known key */
                               "[supervisor]\n"           /* 4 */
                               "workers = abc\n"          /* 5: not an integer */
                               "grace_period = 30\n"      /* 6: missing unit */
                               "this is junk\n"           /* 7: syntax */
                               "[wroker]\n"               /* 8: unknown section */
                               "prefetch = 2\n"           /* 9: ignored */
                               "[worker]\n"               /* 10 */
                               "perfetch = 3\n"           /* 11: did you mean */
                               "max_message = 16MB\n"     /* 12: bad unit */
                               "kill_timeout =\n"         /* 13: empty */
                               "[limits\n"                /* 14: syntax */
                               "memory_soft = 1G\n"       /* 15: wrong section */
                               "prefetch = 4\n"           /* 16 */
                               "prefetch = 5\n"           /* 17: twice */
                               "command = \"unbalanced\n" /* 18: quote */
                               "zzzzzz = 1\n"             /* 19: unknown, no hint */
                               "= 3\n"                    /* 20: no key name */
                               "[nothing_like_it]\n"      /* 21: unknown section */
                               "[worker]\n"               /* 22 */
                               "protocol = tcp\n",        /* 23: not a choice */
                               p),
                     -EINVAL);
    ck_assert(has(&e, "%s:2: stray: key before any [section]", p));
    ck_assert(has(&e, "%s:3: prefetch: key before any [section] (it belongs in [worker])", p));
    ck_assert(has(&e, "%s:5: [supervisor] workers: \"abc\": not an integer", p));
    ck_assert(has(&e,
                  "%s:6: [supervisor] grace_period: \"30\": missing unit (use ms, s, m, h or d, "
                  "e.g. 30s)",
                  p));
    ck_assert(has(&e, "%s:7: syntax error: expected \"key = value\" or \"[section]\"", p));
    ck_assert(has(&e, "%s:8: [wroker]: unknown section (did you mean [worker]?)", p));
    ck_assert(has(&e, "%s:11: [worker] perfetch: unknown key (did you mean \"prefetch\"?)", p));
    ck_assert(has(&e,
                  "%s:12: [worker] max_message: \"16MB\": KB, MB, GB and TB are not accepted: K "
                  "means 1024 here (write K or KiB, M or MiB, ...)",
                  p));
    ck_assert(has(&e,
                  "%s:13: [worker] kill_timeout: empty value: give one, or leave the key out for "
                  "its default (5s)",
                  p));
    ck_assert(has(&e, "%s:14: syntax error: \"[\" without \"]\"", p));
    ck_assert(has(&e, "%s:15: [worker] memory_soft: unknown key (it belongs in [limits])", p));
    ck_assert(has(&e, "%s:17: [worker] prefetch: set twice (first at line 16)", p));
    ck_assert(has(&e, "%s:18: [worker] command: \"\"unbalanced\": unterminated double quote", p));
    ck_assert(has(&e, "%s:19: [worker] zzzzzz: unknown key", p));
    ck_assert(has(&e, "%s:20: [worker]: missing key name before \"=\"", p));
    ck_assert(has(&e,
                  "%s:21: [nothing_like_it]: unknown section (sections: supervisor, worker, "
                  "limits, recycle, service, control, metrics, tasks, leak, log)",
                  p));
    ck_assert(has(&e, "%s:23: [worker] protocol: \"tcp\": not one of api, lines, none", p));
    ck_assert_uint_eq(e.n, 17);
    /* in line order */
    for (size_t i = 1; i < e.n; i++)
        ck_assert_int_lt(atoi(e.msg[i - 1] + strlen(p) + 1), atoi(e.msg[i] + strlen(p) + 1));
    ck_assert_int_eq(c.worker.prefetch, 4);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* A value far beyond inih's default 200-byte line is kept whole, and lines stay counted. */
START_TEST(test_long_value)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX], *text, *cmd, *note;
    size_t len = 5000;

    cmd = malloc(len + 1);
    note = malloc(len + 1);
    ck_assert(cmd && note);
    memcpy(cmd, "/bin/echo ", 10);
    for (size_t i = 10; i < len; i++)
        cmd[i] = i % 7 == 0 ? ' ' : (char)('a' + i % 26);
    cmd[len - 1] = 'z';
    cmd[len] = '\0';
    memset(note, 'x', len);
    note[0] = ';';
    note[len] = '\0';
    ck_assert_int_gt(asprintf(&text,
                              "[worker]\n"          /* 1 */
                              "command = %.1000s\n" /* 2: 1000 chars */
                              "prefetch = x\n"      /* 3 */
                              "%s\n"                /* 4: a 5000-char comment */
                              "[tasks]\n"           /* 5 */
                              "source = %s\n"       /* 6: 5000 chars */
                              "max_attempts = 0\n"  /* 7 */
                              "[log]\n"             /* 8 */
                              "level = loud\n",     /* 9 */
                              cmd, note, cmd),
                     0);
    ck_assert_int_eq(load_text(&c, &e, text, p), -EINVAL);
    ck_assert_uint_eq(strlen(c.worker.command), 1000);
    ck_assert_int_eq(strncmp(c.worker.command, cmd, 1000), 0);
    ck_assert_str_eq(c.tasks.source, cmd);
    ck_assert(has(&e, "%s:3: [worker] prefetch: \"x\": not an integer", p));
    ck_assert(has(&e, "%s:7: [tasks] max_attempts: \"0\": out of range (1..1000)", p));
    ck_assert(has(&e, "%s:9: [log] level: \"loud\": not one of debug, info, warn, error", p));
    ck_assert_uint_eq(e.n, 3);
    ck_assert_int_eq(mv_config_origin(&c, "tasks", "source").line, 6);
    free(text);
    free(cmd);
    free(note);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* A line past the 1 MiB line limit is one mistake, not several, and lines stay counted. */
START_TEST(test_huge_line)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX], *text;
    size_t len = (size_t)3 << 20;

    text = malloc(len + 64);
    ck_assert_ptr_nonnull(text);
    strcpy(text, "[worker]\ncommand = ");
    memset(text + strlen(text), 'a', len);
    strcpy(text + 19 + len, " = x\nprefetch = x\n");
    ck_assert_int_eq(load_text(&c, &e, text, p), -EINVAL);
    ck_assert(has(&e, "%s:2: line longer than 1 MiB", p));
    ck_assert(has(&e, "%s:3: [worker] prefetch: \"x\": not an integer", p));
    ck_assert_uint_eq(e.n, 2);
    ck_assert_str_eq(c.worker.command, "");
    free(text);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* inih quirks: ';' after a blank is a comment, '#' inside a line is not, blanks are stripped;
 * CRLF and a BOM are fine; several syntax errors are all reported. */
START_TEST(test_ini_quirks)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX];

    ck_assert_int_eq(load_text(&c, &e,
                               "\xEF\xBB\xBF; BOM first\r\n"
                               "# a hash comment\r\n"
                               "  [ worker ]  \r\n"
                               "fail_prefix = FAIL: ; the marker\r\n"
                               "command = a;b   \r\n"
                               "  prefetch   =   9  \r\n"
                               "[supervisor]\n"
                               "state_dir = a # b\n"
                               "cgroup_parent: /x\n",
                               p),
                     0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_str_eq(c.worker.fail_prefix, "FAIL:");
    ck_assert_str_eq(c.worker.command, "a;b");
    ck_assert_int_eq(c.worker.prefetch, 9);
    ck_assert_str_eq(c.supervisor.state_dir, "a # b");
    ck_assert_str_eq(c.supervisor.cgroup_parent, "/x");
    ck_assert_int_eq(mv_config_origin(&c, "worker", "prefetch").line, 6);
    mv_config_free(&c);

    ck_assert_int_eq(load_text(&c, &e, "junk\n[worker]\nmore junk\nprefetch = 2\nx ; = y\n", p),
                     -EINVAL);
    ck_assert(has(&e, "%s:1: syntax error: expected \"key = value\" or \"[section]\"", p));
    ck_assert(has(&e, "%s:3: syntax error: expected \"key = value\" or \"[section]\"", p));
    ck_assert(has(&e, "%s:5: syntax error: expected \"key = value\" or \"[section]\"", p));
    ck_assert_uint_eq(e.n, 3);
    ck_assert_int_eq(c.worker.prefetch, 2);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

START_TEST(test_unreadable)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX];

    ck_assert_int_eq(mv_config_init(&c), 0);
    snprintf(p, sizeof p, "%s/missing.ini", tmpdir);
    ck_assert_int_eq(mv_config_load(&c, p, &e), -ENOENT);
    ck_assert(has(&e, "%s: cannot read: %s", p, strerror(ENOENT)));
    ck_assert_int_eq(mv_config_load(&c, tmpdir, &e), -EISDIR);
    ck_assert(has(&e, "%s: cannot read: %s", tmpdir, strerror(EISDIR)));
    mv_config_free(&c);
    mv_errors_free(&e);

    write_file("nul.ini", "[worker]\nprefetch = 2\n", p);
    ck_assert_int_eq(truncate(p, 30), 0); /* NUL bytes from line 3 on */
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_load(&c, p, &e), -EINVAL);
    ck_assert(has(&e, "%s:3: NUL byte: not a text file", p));
    ck_assert_int_eq(c.worker.prefetch, 1);
    mv_config_free(&c);
    mv_errors_free(&e);

    /* A reload's read waits for nothing: a FIFO (no writer) is refused at once, a directory
     * as at the start, a regular file read. */
    snprintf(p, sizeof p, "%s/fifo.ini", tmpdir);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ck_assert_int_eq(mv_config_rebuild(&c, p, NULL, 0, &e), -EINVAL);
    ck_assert(has(&e,
                  "%s: cannot read: not a regular file (a FIFO, socket or device): a reload "
                  "reads only regular files, it must not wait for a writer",
                  p));
    mv_config_free(&c);
    mv_errors_free(&e);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(mv_config_rebuild(&c, tmpdir, NULL, 0, &e), -EINVAL);
    ck_assert(has(&e, "%s: cannot read: %s", tmpdir, strerror(EISDIR)));
    mv_config_free(&c);
    mv_errors_free(&e);
    write_file("regular.ini", "[worker]\nprefetch = 2\n", p);
    ck_assert_int_eq(mv_config_rebuild(&c, p, NULL, 0, &e), 0);
    ck_assert_int_eq(c.worker.prefetch, 2);
    mv_config_free(&c);
    mv_errors_free(&e);
}
END_TEST

/* Two files: the second wins, and origins from the first still name the first. */
START_TEST(test_two_files)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char a[PATH_MAX], b[PATH_MAX];
    mv_origin_t o;

    write_file("a.ini", "[worker]\nprefetch = 2\nfatal_exit = 9\n", a);
    write_file("b.ini", "\n[worker]\nprefetch = 3\n", b);
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_load(&c, a, &e), 0);
    ck_assert_int_eq(mv_config_load(&c, b, &e), 0);
    ck_assert_str_eq(c.path, b);
    ck_assert_int_eq(c.worker.prefetch, 3);
    ck_assert_int_eq(c.worker.fatal_exit, 9);
    o = mv_config_origin(&c, "worker", "fatal_exit");
    ck_assert_str_eq(o.file, a);
    ck_assert_int_eq(o.line, 3);
    o = mv_config_origin(&c, "worker", "prefetch");
    ck_assert_str_eq(o.file, b);
    ck_assert_int_eq(o.line, 3);
    ck_assert_uint_eq(e.n, 0);
    mv_config_free(&c);
}
END_TEST

/* ---- overrides ------------------------------------------------------------------------- */

START_TEST(test_overrides)
{
    mv_config_t c;
    mv_errors_t e = {0};
    mv_origin_t o;

    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "worker.prefetch=8", 1, &e), 0);
    ck_assert_int_eq(c.worker.prefetch, 8);
    o = mv_config_origin(&c, "worker", "prefetch");
    ck_assert_str_eq(o.file, "-o");
    ck_assert_int_eq(o.line, 1);
    ck_assert_int_eq(mv_config_override(&c, " limits.memory_soft = 1.5G ", 2, &e), 0);
    ck_assert_int_eq(c.limits.memory_soft, INT64_C(3) << 29);
    ck_assert_int_eq(mv_config_override(&c, "worker.command=env A=1 ./w 'x y'", 3, &e), 0);
    ck_assert_str_eq(c.worker.command, "env A=1 ./w 'x y'");
    ck_assert_int_eq(mv_config_override(&c, "log.file=", 4, &e), 0);
    ck_assert_str_eq(c.log.file, "");
    ck_assert_int_eq(mv_config_override(&c, "worker.prefetch=16", 5, &e), 0); /* last wins */
    ck_assert_int_eq(c.worker.prefetch, 16);
    ck_assert_uint_eq(e.n, 0);

    ck_assert_int_eq(mv_config_override(&c, "worker.prefetch=0", 6, &e), -EINVAL);
    ck_assert(has(&e, "-o:6: [worker] prefetch: \"0\": out of range (1..4096)"));
    ck_assert_int_eq(c.worker.prefetch, 16);
    ck_assert_int_eq(mv_config_origin(&c, "worker", "prefetch").line, 5);
    ck_assert_int_eq(mv_config_override(&c, "worker.prefetch=", 7, &e), -EINVAL);
    ck_assert(has(&e, "-o:7: [worker] prefetch: empty value: give one, or leave the key out "
                      "for its default (1)"));
    ck_assert_int_eq(mv_config_override(&c, "worker.perfetch=3", 8, &e), -EINVAL);
    ck_assert(has(&e, "-o:8: [worker] perfetch: unknown key (did you mean \"prefetch\"?)"));
    ck_assert_int_eq(mv_config_override(&c, "wroker.prefetch=3", 9, &e), -EINVAL);
    ck_assert(has(&e, "-o:9: [wroker] prefetch: unknown section (did you mean [worker]?)"));
    ck_assert_int_eq(mv_config_override(&c, "worker.max_tasks=3", 10, &e), -EINVAL);
    ck_assert(has(&e, "-o:10: [worker] max_tasks: unknown key (it belongs in [limits])"));
    ck_assert_int_eq(mv_config_override(&c, "tasks.source=a\nb", 11, &e), -EINVAL);
    ck_assert(has(&e, "-o:11: [tasks] source: \"a?b\": contains a line break"));
    ck_assert_uint_eq(e.n, 6);
    mv_errors_free(&e);

    {
        const char *malformed[] = {
            "worker.prefetch", "prefetch=3", ".prefetch=3", "worker.=3", "", "=3", " . =3"};

        for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
            ck_assert_int_eq(mv_config_override(&c, malformed[i], (int)i + 1, &e), -EINVAL);
            ck_assert(has(&e, "-o:%zu: \"%s\": expected SECTION.KEY=VALUE (e.g. worker.prefetch=4)",
                          i + 1, malformed[i]));
        }
        ck_assert_uint_eq(e.n, sizeof malformed / sizeof malformed[0]);
    }
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* ---- cross-key checks ------------------------------------------------------------------ */

START_TEST(test_cross_keys)
{
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX];

    ck_assert_int_eq(load_text(&c, &e,
                               "[limits]\n"
                               "max_tasks_jitter = 10\n"    /* 2 */
                               "memory_soft = 600M\n"       /* 3 */
                               "memory_hard = 512M\n"       /* 4 */
                               "max_lifetime_jitter = 1m\n" /* 5 */
                               "[worker]\n"
                               "backoff_max = 1s\n" /* 7 */
                               "backoff_min = 2s\n" /* 8 */
                               "max_message = 4K\n" /* 9 */
                               "[tasks]\n"
                               "max_size = 8K\n", /* 11 */
                               p),
                     0);
    ck_assert_int_eq(mv_config_finish(&c, &e), -EINVAL);
    ck_assert(has(&e,
                  "%s:3: [limits] memory_soft: 600M is above memory_hard = 512M (set at %s:4): "
                  "the soft limit must be the lower one (or leave one of them out, or set it to "
                  "auto: it then follows the other)",
                  p, p));
    ck_assert(has(&e,
                  "%s:2: [limits] max_tasks_jitter: 10 has no effect while max_tasks = 0 (off): "
                  "set max_tasks too, or remove it",
                  p));
    ck_assert(has(&e,
                  "%s:5: [limits] max_lifetime_jitter: 1m has no effect while max_lifetime = 0 "
                  "(off): set max_lifetime too, or remove it",
                  p));
    ck_assert(has(&e,
                  "%s:8: [worker] backoff_min: 2s is above backoff_max = 1s (set at %s:7): the "
                  "first delay cannot exceed the bound",
                  p, p));
    ck_assert(has(&e,
                  "%s:11: [tasks] max_size: 8K is above [worker] max_message = 4K (set at %s:9): "
                  "a task line must fit in one message",
                  p, p));
    ck_assert_uint_eq(e.n, 5);
    mv_errors_free(&e);
    mv_config_free(&c);

    /* from an override, where both were set: the error says how to get out of it */
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.memory_soft=1G", 1, &e), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.memory_hard=512M", 2, &e), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), -EINVAL);
    ck_assert(has(&e, "-o:1: [limits] memory_soft: 1G is above memory_hard = 512M (set at -o:2): "
                      "the soft limit must be the lower one (or leave one of them out, or set it "
                      "to auto: it then follows the other)"));
    mv_errors_free(&e);
    mv_config_free(&c);

    /* a limit of 0 (off) is never "below" the other */
    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.memory_soft=1G", 1, &e), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.memory_hard=0", 2, &e), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.max_tasks=100", 3, &e), 0);
    ck_assert_int_eq(mv_config_override(&c, "limits.max_tasks_jitter=10", 4, &e), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_uint_eq(e.n, 0);
    mv_config_free(&c);
}
END_TEST

/* memory_soft and memory_hard at auto: each follows the other, and says so. */
static void limits_of(const char *o1, const char *o2, int64_t soft, int64_t hard, const char *svia,
                      const char *hvia)
{
    const char *ovr[2] = {o1, o2};
    mv_errors_t e = {0};
    mv_config_t c;
    mv_origin_t so, ho;

    ck_assert_int_eq(mv_config_build(&c, NULL, ovr, o2 ? 2 : o1 ? 1 : 0, &e), 0);
    ck_assert_int_eq(c.limits.memory_soft, soft);
    ck_assert_int_eq(c.limits.memory_hard, hard);
    so = mv_config_origin(&c, "limits", "memory_soft");
    ho = mv_config_origin(&c, "limits", "memory_hard");
    if (svia)
        ck_assert_str_eq(so.via, svia);
    else
        ck_assert_ptr_null(so.via);
    if (hvia)
        ck_assert_str_eq(ho.via, hvia);
    else
        ck_assert_ptr_null(ho.via);
    mv_config_free(&c);
}

START_TEST(test_auto_limits)
{
    const char *from_hard = "derived from memory_hard (3/4 of it)";
    const char *from_soft = "derived from memory_soft (4/3 of it, rounded up to a MiB)";
    mv_config_t c;
    mv_errors_t e = {0};
    char p[PATH_MAX], *buf = NULL;
    size_t len = 0;
    FILE *f;

    limits_of(NULL, NULL, 384 << 20, 512 << 20, from_hard, NULL);
    /* only the hard limit, below the soft one's default: the newcomer's case */
    limits_of("limits.memory_hard=64M", NULL, 48 << 20, 64 << 20, from_hard, NULL);
    limits_of("limits.memory_hard=100M", NULL, 75 << 20, 100 << 20, from_hard, NULL);
    limits_of("limits.memory_hard=1M", NULL, 768 << 10, 1 << 20, from_hard, NULL);
    limits_of("limits.memory_hard=10K", NULL, 4096, 10 << 10, from_hard, NULL); /* pages */
    limits_of("limits.memory_hard=4K", NULL, 3072, 4096, from_hard, NULL);
    limits_of("limits.memory_hard=0", NULL, 384 << 20, 0, "3/4 of 512M (memory_hard is off)", NULL);
    /* only the soft limit: the hard one stays 512M unless that is too close */
    limits_of("limits.memory_soft=100M", NULL, 100 << 20, 512 << 20, NULL, NULL);
    limits_of("limits.memory_soft=384M", NULL, 384 << 20, 512 << 20, NULL, NULL);
    limits_of("limits.memory_soft=1G", NULL, 1 << 30, INT64_C(1366) << 20, NULL, from_soft);
    limits_of("limits.memory_soft=0", NULL, 0, 512 << 20, NULL, NULL);
    /* auto written out, in any case; both set: nothing derived */
    limits_of("limits.memory_soft=AUTO", "limits.memory_hard=2G", INT64_C(1536) << 20,
              INT64_C(2) << 30, from_hard, NULL);
    limits_of("limits.memory_soft=1M", "limits.memory_hard=2M", 1 << 20, 2 << 20, NULL, NULL);

    /* `memvisor check` says where each value came from */
    ck_assert_int_eq(load_text(&c, &e, "[limits]\nmemory_hard = 64M\nmemory_soft = auto\n", p), 0);
    ck_assert_int_eq(mv_config_override(&c, "supervisor.workers=3", 1, &e), 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    f = open_memstream(&buf, &len);
    mv_config_print(&c, f);
    fclose(f);
    ck_assert_msg(strstr(buf, "\nworkers = 3                     ; -o 1\n"), "%s", buf);
    ck_assert_msg(strstr(buf, "\ngrace_period = 30s              ; default\n"), "%s", buf);
    snprintf(p + strlen(p), 64, ":3, %s\n", from_hard);
    ck_assert_msg(strstr(buf, "\nmemory_soft = 48M               ; "), "%s", buf);
    ck_assert_msg(strstr(buf, p), "no %s in\n%s", p, buf);
    free(buf);
    mv_config_free(&c);
    mv_errors_free(&e);
}
END_TEST

/* Relative state_dir and socket: against the config file's directory, else the working
 * directory (paths.h); printed absolute. */
START_TEST(test_paths)
{
    char p[PATH_MAX], sub[PATH_MAX - 64], cwd[PATH_MAX], want[PATH_MAX + 64], *buf = NULL;
    const char *ovr[1];
    mv_errors_t e = {0};
    mv_config_t c;
    size_t len = 0;
    FILE *f;

    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    /* no file: the working directory */
    ck_assert_int_eq(mv_config_build(&c, NULL, NULL, 0, &e), 0);
    snprintf(want, sizeof want, "%s/.memvisor", strcmp(cwd, "/") ? cwd : "");
    ck_assert_str_eq(c.supervisor.state_dir, want);
    ck_assert_str_eq(mv_config_origin(&c, "supervisor", "state_dir").via,
                     "relative to the working directory");
    ck_assert_str_eq(c.control.socket, ""); /* empty: STATE_DIR/control.sock */
    mv_config_free(&c);

    /* a file: its directory, for the default and for what it says; -o: the working dir */
    snprintf(sub, sizeof sub, "%s/conf", tmpdir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_file("conf/a.ini", "[control]\nsocket = ./run/../x//c.sock\n", p);
    ck_assert_int_eq(mv_config_build(&c, p, NULL, 0, &e), 0);
    snprintf(want, sizeof want, "%s/.memvisor", sub);
    ck_assert_str_eq(c.supervisor.state_dir, want);
    ck_assert_str_eq(mv_config_origin(&c, "supervisor", "state_dir").via,
                     "relative to the config file's directory");
    snprintf(want, sizeof want, "%s/run/../x/c.sock", sub); /* ".." inside is the kernel's */
    ck_assert_str_eq(c.control.socket, want);
    /* check prints them absolute */
    f = open_memstream(&buf, &len);
    mv_config_print(&c, f);
    fclose(f);
    snprintf(want, sizeof want, "\nstate_dir = %s/.memvisor", sub);
    ck_assert_msg(strstr(buf, want), "%s", buf);
    free(buf);
    mv_config_free(&c);

    ovr[0] = "supervisor.state_dir=../st";
    write_file("conf/b.ini", "[supervisor]\nstate_dir = ../state\n", p);
    ck_assert_int_eq(mv_config_build(&c, p, NULL, 0, &e), 0);
    snprintf(want, sizeof want, "%s/state", tmpdir);
    ck_assert_str_eq(c.supervisor.state_dir, want);
    mv_config_free(&c);
    ck_assert_int_eq(mv_config_build(&c, p, ovr, 1, &e), 0);
    ck_assert_ptr_nonnull(strrchr(cwd, '/'));
    snprintf(want, sizeof want, "%.*s/st", (int)(strrchr(cwd, '/') - cwd), cwd);
    ck_assert_str_eq(c.supervisor.state_dir, strcmp(cwd, "/") ? want : "/st");
    ck_assert_str_eq(mv_config_origin(&c, "supervisor", "state_dir").via,
                     "relative to the working directory");
    mv_config_free(&c);

    /* absolute stays; none stays none; building twice gives the same */
    write_file("conf/c.ini", "[supervisor]\nstate_dir = /var/lib//mv/\n[control]\nsocket = none\n",
               p);
    ck_assert_int_eq(mv_config_build(&c, p, NULL, 0, &e), 0);
    ck_assert_str_eq(c.supervisor.state_dir, "/var/lib/mv");
    ck_assert_ptr_null(mv_config_origin(&c, "supervisor", "state_dir").via);
    ck_assert_str_eq(c.control.socket, "none");
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    ck_assert_str_eq(c.supervisor.state_dir, "/var/lib/mv");
    mv_config_free(&c);
    ck_assert_uint_eq(e.n, 0);
    unlink(p);
    snprintf(p, sizeof p, "%s/a.ini", sub);
    unlink(p);
    snprintf(p, sizeof p, "%s/b.ini", sub);
    unlink(p);
    rmdir(sub);
}
END_TEST

/* The control socket must fit in a Unix socket address (107 bytes): said by `memvisor check`,
 * naming the key that made the path; a run refused it only at its start, with neither. */
START_TEST(test_socket_path_fits)
{
    char sock[160], dir[160], spec[200], want[400];
    const char *ovr[2] = {spec, "control.socket=none"};
    mv_errors_t e = {0};
    mv_config_t c;

    memset(sock, 'a', sizeof sock);
    memcpy(sock, "/tmp/", 5);
    sock[108] = '\0'; /* 108 bytes: one too many */
    snprintf(spec, sizeof spec, "control.socket=%s", sock);
    ck_assert_int_eq(mv_config_build(&c, NULL, ovr, 1, &e), 0);
    ck_assert_int_eq(mv_config_check_socket(&c, &e), -EINVAL);
    snprintf(want, sizeof want,
             "-o:1: [control] socket: the control socket %s is 108 bytes long; a Unix "
             "socket path holds at most 107: set a shorter [control] socket, or none",
             sock);
    ck_assert_msg(has(&e, "%s", want), "%s", e.n ? e.msg[0] : "(none)");
    mv_config_free(&c);
    mv_errors_free(&e);
    sock[107] = '\0'; /* 107 fits */
    snprintf(spec, sizeof spec, "control.socket=%s", sock);
    ck_assert_int_eq(mv_config_build(&c, NULL, ovr, 1, &e), 0);
    ck_assert_int_eq(mv_config_check_socket(&c, &e), 0);
    mv_config_free(&c);

    /* STATE_DIR/control.sock: the state directory is the key to blame, unless socket = none */
    memcpy(dir, sock, 96);
    dir[96] = '\0'; /* + "/control.sock" = 109 */
    snprintf(spec, sizeof spec, "supervisor.state_dir=%s", dir);
    ck_assert_int_eq(mv_config_build(&c, NULL, ovr, 1, &e), 0);
    ck_assert_int_eq(mv_config_check_socket(&c, &e), -EINVAL);
    snprintf(want, sizeof want,
             "-o:1: [supervisor] state_dir: the control socket %s/control.sock is 109 bytes long",
             dir);
    ck_assert_msg(e.n == 1 && strncmp(e.msg[0], want, strlen(want)) == 0, "%s",
                  e.n ? e.msg[0] : "(none)");
    mv_config_free(&c);
    mv_errors_free(&e);
    ck_assert_int_eq(mv_config_build(&c, NULL, ovr, 2, &e), 0);
    ck_assert_int_eq(mv_config_check_socket(&c, &e), 0);
    mv_config_free(&c);
    ck_assert_uint_eq(e.n, 0);
}
END_TEST

START_TEST(test_kind_values)
{
    mv_config_t c;
    mv_errors_t e = {0};

    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=WORD", 1, &e), 0);
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=json:op", 2, &e), 0);
    ck_assert_str_eq(c.leak.kind, "json:op");
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=wrod", 3, &e), -EINVAL);
    ck_assert(has(&e, "-o:3: [leak] kind: \"wrod\": not one of auto, word, none, json:FIELD (did "
                      "you mean \"word\"?)"));
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=json:", 4, &e), -EINVAL);
    ck_assert(has(&e, "-o:4: [leak] kind: \"json:\": json: needs a field name (json:FIELD, e.g. "
                      "json:op)"));
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=json", 5, &e), -EINVAL);
    ck_assert(has(&e, "-o:5: [leak] kind: \"json\": json needs a field name: json:FIELD (e.g. "
                      "json:op)"));
    ck_assert_int_eq(mv_config_override(&c, "leak.kind=first", 6, &e), -EINVAL);
    ck_assert(has(&e, "-o:6: [leak] kind: \"first\": not one of auto, word, none, json:FIELD"));
    ck_assert_str_eq(c.leak.kind, "json:op");
    /* an enum's did-you-mean */
    ck_assert_int_eq(mv_config_override(&c, "worker.protocol=line", 7, &e), -EINVAL);
    ck_assert(has(&e, "-o:7: [worker] protocol: \"line\": not one of api, lines, none (did you "
                      "mean \"lines\"?)"));
    ck_assert_int_eq(mv_config_override(&c, "worker.protocol=http", 8, &e), -EINVAL);
    ck_assert(has(&e, "-o:8: [worker] protocol: \"http\": not one of api, lines, none"));
    ck_assert_uint_eq(e.n, 6);
    mv_errors_free(&e);
    mv_config_free(&c);
}
END_TEST

/* ---- conf/memvisor.ini ----------------------------------------------------------------- */

START_TEST(test_shipped_conf)
{
    const char *path = MV_SOURCE_DIR "/conf/memvisor.ini";
    mv_config_t c;
    mv_errors_t e = {0};
    size_t n, next = 0, lineno = 0;
    const mv_option_t *t = mv_config_options(&n);
    int *count = calloc(n, sizeof *count);
    char line[4096], prev[4096] = "", section[64] = "";
    FILE *f;

    ck_assert_int_eq(mv_config_init(&c), 0);
    ck_assert_int_eq(mv_config_load(&c, path, &e), 0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_int_eq(mv_config_finish(&c, &e), 0);
    mv_config_free(&c);

    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        char *eq, *k, *ke, *v;
        const mv_option_t *o;

        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '[') {
            ck_assert_int_eq(sscanf(line, "[%63[^]]]", section), 1);
        } else if (line[0] && line[0] != ';') {
            eq = strchr(line, '=');
            ck_assert_msg(eq != NULL, "line %zu: %s", lineno, line);
            for (k = line; *k == ' '; k++)
                ;
            for (ke = eq; ke > k && ke[-1] == ' '; ke--)
                ;
            *ke = '\0';
            for (v = eq + 1; *v == ' '; v++)
                ;
            o = mv_config_find(section, k);
            ck_assert_msg(o != NULL, "line %zu: [%s] %s is not in the table", lineno, section, k);
            ck_assert_msg(strcmp(v, o->def) == 0, "line %zu: %s = \"%s\", default \"%s\"", lineno,
                          k, v, o->def);
            ck_assert_msg(prev[0] == ';', "line %zu: %s has no ; doc line above it", lineno, k);
            ck_assert_msg(o == &t[next], "line %zu: %s is out of table order", lineno, k);
            next++;
            count[o - t]++;
        }
        snprintf(prev, sizeof prev, "%s", line);
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(count[i] == 1, "[%s] %s appears %d times", t[i].section, t[i].name, count[i]);
    free(count);
}
END_TEST

/* ---- words ----------------------------------------------------------------------------- */

/* Splits s and compares with the NULL-terminated list of expected words. */
static void words_are(const char *s, ...)
{
    char **argv;
    int argc, i = 0;
    const char *why = NULL, *w;
    va_list ap;

    ck_assert_msg(mv_split_words(s, &argv, &argc, &why) == 0, "%s: %s", s, why);
    va_start(ap, s);
    while ((w = va_arg(ap, const char *))) {
        ck_assert_msg(i < argc, "%s: too few words", s);
        ck_assert_str_eq(argv[i], w);
        i++;
    }
    va_end(ap);
    ck_assert_int_eq(argc, i);
    ck_assert_ptr_null(argv[argc]);
    mv_argv_free(argv);
}

/* docs/configuration.md's table has one row per key, exactly: its default, whether a reload
 * applies it, and its doc line from the table in options.c; and no row for a key that is
 * not one. So the page cannot drift from the code. */
START_TEST(test_configuration_table)
{
    FILE *f = fopen(MV_SOURCE_DIR "/docs/configuration.md", "r");
    static char text[1 << 17];
    size_t n, count, rows = 0;
    const mv_option_t *o = mv_config_options(&count);

    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    for (size_t i = 0; i < count; i++) {
        char row[512], def[80];

        if (*o[i].def)
            snprintf(def, sizeof def, "`%s`", o[i].def);
        else
            snprintf(def, sizeof def, "(empty)");
        snprintf(row, sizeof row, "\n| `[%s] %s` | %s | %s | %s |\n", o[i].section, o[i].name, def,
                 o[i].reload ? "yes" : "restart", o[i].doc);
        ck_assert_msg(strstr(text, row) != NULL, "docs/configuration.md has no row%s", row);
    }
    for (const char *p = text; (p = strstr(p, "\n| `[")); p++)
        rows++;
    ck_assert_uint_eq(rows, count);
}
END_TEST

START_TEST(test_reload_diff)
{
    mv_config_t old, nc;
    mv_config_diff_t d;
    mv_errors_t errs = {0};

    ck_assert_int_eq(mv_config_init(&old), 0);
    ck_assert_int_eq(mv_config_init(&nc), 0);
    ck_assert_int_eq(mv_config_override(&nc, "limits.memory_soft=100M", 1, &errs), 0);
    ck_assert_int_eq(mv_config_override(&nc, "supervisor.keep_runs=7", 2, &errs), 0);
    ck_assert_int_eq(mv_config_override(&nc, "supervisor.state_dir=/elsewhere", 3, &errs), 0);
    ck_assert_int_eq(mv_config_override(&nc, "supervisor.workers=7", 4, &errs), 0);
    ck_assert_int_eq(mv_config_diff(&nc, &old, &d), 0);
    ck_assert_uint_eq(d.nchanged, 2); /* workers changes live (mv_pool_scale) */
    ck_assert_str_eq(d.changed[0]->name, "workers");
    ck_assert_str_eq(d.changed[1]->name, "memory_soft");
    ck_assert_int_eq(nc.supervisor.workers, 7);
    ck_assert_uint_eq(d.nkept, 2);
    /* What is kept until restart is the old value again, strings included. */
    ck_assert_int_eq(nc.supervisor.keep_runs, old.supervisor.keep_runs);
    ck_assert_str_eq(nc.supervisor.state_dir, old.supervisor.state_dir);
    ck_assert_int_eq(nc.limits.memory_soft, 100 << 20);
    mv_config_diff_free(&d);
    /* What was resolved from kept keys is kept too: a reload that drops [worker] user (its
     * ids fall back to memvisor's own, root's) starts no worker as root. */
    free(old.worker.user);
    ck_assert_ptr_nonnull(old.worker.user = strdup("nobody"));
    old.worker.uid = old.worker.gid = 65534;
    old.supervisor.pause_permille = 100;
    nc.worker.uid = nc.worker.gid = 0;
    ck_assert_int_eq(mv_config_diff(&nc, &old, &d), 0);
    ck_assert_str_eq(nc.worker.user, "nobody");
    ck_assert_int_eq(nc.worker.uid, 65534);
    ck_assert_int_eq(nc.worker.gid, 65534);
    ck_assert_int_eq(nc.supervisor.pause_permille, 100);
    mv_config_diff_free(&d);
    /* The same configuration: nothing. */
    ck_assert_int_eq(mv_config_diff(&nc, &nc, &d), 0);
    ck_assert_uint_eq(d.nchanged + d.nkept, 0);
    mv_config_diff_free(&d);
    mv_errors_free(&errs);
    mv_config_free(&old);
    mv_config_free(&nc);
}
END_TEST

START_TEST(test_split_words)
{
    char **argv = (char **)1, big[1200];
    int argc = -1;
    const char *why = NULL;

    words_are("", NULL);
    words_are(" \t ", NULL);
    words_are("./worker", "./worker", NULL);
    words_are("  a  b\tc ", "a", "b", "c", NULL);
    words_are("'a b' c", "a b", "c", NULL);
    words_are("'a \\ \" $x'", "a \\ \" $x", NULL);
    words_are("\"a \\\"b\\\" \\\\ \\x \\$ 'q'\"", "a \"b\" \\ \\x $ 'q'", NULL);
    words_are("a\\ b c\\'d \\\\", "a b", "c'd", "\\", NULL);
    words_are("a'b'\"c\"d", "abcd", NULL);
    words_are("'' \"\" x", "", "", "x", NULL);
    words_are("$HOME ~ *.c `id` a;b #c", "$HOME", "~", "*.c", "`id`", "a;b", "#c", NULL);
    words_are("python3 -c 'import sys; print(sys.argv)' \"it's\"", "python3", "-c",
              "import sys; print(sys.argv)", "it's", NULL);

    big[0] = '\0';
    for (int i = 0; i < 300; i++)
        strcat(big, "ab ");
    ck_assert_int_eq(mv_split_words(big, &argv, &argc, &why), 0);
    ck_assert_int_eq(argc, 300);
    ck_assert_str_eq(argv[299], "ab");
    ck_assert_ptr_null(argv[300]);
    mv_argv_free(argv);

    ck_assert_int_eq(mv_split_words("a 'b", &argv, &argc, &why), -EINVAL);
    ck_assert_str_eq(why, "unterminated single quote");
    ck_assert_ptr_null(argv);
    ck_assert_int_eq(mv_split_words("a \"b\\\"", &argv, &argc, &why), -EINVAL);
    ck_assert_str_eq(why, "unterminated double quote");
    ck_assert_int_eq(mv_split_words("a b\\", &argv, &argc, &why), -EINVAL);
    ck_assert_str_eq(why, "backslash at the end");
    mv_argv_free(NULL);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = tcase_create("table");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_table_sane);
    tcase_add_test(tc, test_reload_diff);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_finish_workers);
    tcase_add_test(tc, test_finish_max_starting);
    tcase_add_test(tc, test_shipped_conf);
    tcase_add_test(tc, test_configuration_table);
    suite_add_tcase(s, tc);

    tc = tcase_create("units");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_bools);
    tcase_add_test(tc, test_value_reasons);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_each_mistake);
    tcase_add_test(tc, test_long_value);
    tcase_add_test(tc, test_huge_line);
    tcase_add_test(tc, test_ini_quirks);
    tcase_add_test(tc, test_unreadable);
    tcase_add_test(tc, test_two_files);
    suite_add_tcase(s, tc);

    tc = tcase_create("override");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_cross_keys);
    tcase_add_test(tc, test_auto_limits);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_socket_path_fits);
    tcase_add_test(tc, test_kind_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("words");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_split_words);
    suite_add_tcase(s, tc);
    return s;
}
