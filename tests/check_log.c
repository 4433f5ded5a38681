/*
 * log: the bounded, non-blocking log writer (log.c), against real pipes and files, and the
 * real memvisor with a stderr pipe the test does not read.
 *
 * A stalled reader is a pipe shrunk to one page that nobody reads: any mv_log_kv that waited
 * for it would hang the test (the case's timeout is then the failure), so no test measures
 * time. A reader that comes back is the test reading the pipe.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "suites.h"
#include "util.h"

static char tmp[64];
static int pipefd[2] = {-1, -1};
static mv_log_t lg;
static bool lg_open;

static void setup(void)
{
    strcpy(tmp, "/tmp/mv-check-log-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    signal(SIGPIPE, SIG_IGN); /* as memvisor's main does */
    lg_open = false;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    if (lg_open)
        mv_log_close(&lg);
    for (int i = 0; i < 2; i++)
        if (pipefd[i] >= 0)
            close(pipefd[i]);
    pipefd[0] = pipefd[1] = -1;
    nftw(tmp, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* A log whose sink is a one-page pipe nobody reads yet (pipefd[0] is the reader). */
static void open_stalled(mv_logfmt_t format, size_t buffer)
{
    char path[64];

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    ck_assert_int_ge(fcntl(pipefd[0], F_SETPIPE_SZ, 4096), 4096);
    /* A description of its own, as a log file path would be. */
    snprintf(path, sizeof path, "/proc/self/fd/%d", pipefd[1]);
    ck_assert_int_eq(mv_log_open(&lg, format, MV_LVL_INFO, path), 0);
    ck_assert_ptr_nonnull(lg.writer);
    mv_log_set_limits(&lg, buffer, 10000);
    lg_open = true;
}

static void log_output(int i)
{
    char line[96];
    int n = snprintf(line, sizeof line, "worker line %d, some text to make it longer", i);

    mv_info(&lg, "output", MV_I("worker", 1), MV_I("pid", 42), MV_S("stream", "output"),
            MV_B("line", line, (size_t)n));
}

/* Reads the pipe until a line holding `needle` has arrived; returns everything read. */
static char *read_until(const char *needle)
{
    mv_buf_t b = {0};
    char *s;

    for (;;) {
        ssize_t n;

        ck_assert_int_eq(mv_buf_reserve(&b, 65536 + 1), 0);
        n = read(pipefd[0], b.data + b.len, 65536);
        ck_assert_msg(n > 0, "the log ended before \"%s\"", needle);
        b.len += (size_t)n;
        b.data[b.len] = '\0';
        s = strstr((char *)b.data, needle);
        if (s && strchr(s, '\n'))
            return (char *)b.data;
    }
}

static long long field(const char *line, const char *key)
{
    const char *p = strstr(line, key);

    ck_assert_msg(p != NULL, "no %s in %s", key, line);
    return strtoll(p + strlen(key), NULL, 10);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- unit: the writer -------------------------------------------------------------------- */

START_TEST(lines_reach_a_file_whole_and_in_order)
{
    char path[96], want[64], *text, *p;

    snprintf(path, sizeof path, "%s/log", tmp);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, path), 0);
    lg_open = true;
    for (int i = 0; i < 3000; i++)
        mv_info(&lg, "tick", MV_I("n", i));
    mv_debug(&lg, "hidden", MV_I("n", 0)); /* below the level: never queued */
    ck_assert_int_eq(mv_log_flush(&lg, 10000), 0);
    text = read_text(path);
    p = text;
    for (int i = 0; i < 3000; i++) {
        snprintf(want, sizeof want, "event=tick n=%d\n", i);
        p = strstr(p, want);
        ck_assert_msg(p != NULL, "line %d missing or out of order", i);
    }
    ck_assert_int_eq(count(text, "\n"), 3000);
    ck_assert_ptr_null(strstr(text, "hidden"));
    free(text);
}
END_TEST

/* A worker's output line reaches a terminal through the text log: control characters are
 * escaped, C1 controls in UTF-8 too (U+009B is CSI to a terminal, as ESC [ is); other UTF-8
 * stays as it is. */
START_TEST(text_log_escapes_c1_controls)
{
    char path[96], *text;

    snprintf(path, sizeof path, "%s/log", tmp);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, path), 0);
    lg_open = true;
    mv_info(&lg, "output",
            MV_S("line", "a\xc2\x9b"
                         "31mb\x1b[0m \xc3\xa9 \xc2\xa0"),
            MV_S("bare", "x\xc2\x85y"));
    ck_assert_int_eq(mv_log_flush(&lg, 10000), 0);
    text = read_text(path);
    ck_assert_msg(strstr(text, "line=\"a\\xc2\\x9b31mb\\x1b[0m \xc3\xa9 \xc2\xa0\""), "%s", text);
    ck_assert_msg(strstr(text, " bare=\"x\\xc2\\x85y\"\n"), "%s", text);
    ck_assert_ptr_null(strstr(text, "\xc2\x9b"));
    ck_assert_ptr_null(strstr(text, "\xc2\x85"));
    free(text);
}
END_TEST

/* The loop wakes the writer only when it sleeps with nothing queued, and the writer gathers
 * what follows for MV_LOG_GATHER_MS (log.c): lines logged one at a time, and a burst logged
 * while it gathers, all reach the reader without a flush, whole and in order (a writer
 * nobody woke would leave them queued: read_until would wait for ever, the case's timeout). */
START_TEST(lines_reach_a_reader_without_a_flush_one_by_one_and_in_bursts)
{
    char want[64], *text, *p;

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    snprintf(want, sizeof want, "/proc/self/fd/%d", pipefd[1]);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, want), 0);
    lg_open = true;
    for (int i = 0; i < 3; i++) { /* each after the writer went back to sleep */
        snprintf(want, sizeof want, "event=single n=%d\n", i);
        mv_info(&lg, "single", MV_I("n", i));
        free(read_until(want));
    }
    for (int i = 0; i < 200; i++)
        mv_info(&lg, "burst", MV_I("n", i));
    text = read_until("event=burst n=199\n");
    p = text;
    for (int i = 0; i < 200; i++) {
        snprintf(want, sizeof want, "event=burst n=%d\n", i);
        p = strstr(p, want);
        ck_assert_msg(p != NULL, "burst line %d missing or out of order", i);
    }
    free(text);
}
END_TEST

START_TEST(a_stalled_reader_costs_worker_output_first)
{
    mv_log_counts_t c;
    char *text, *line;
    long long dropped;

    open_stalled(MV_LOGFMT_TEXT, 16384);
    /* 64 times what the pipe and the queue hold; memvisor's own events in between. */
    for (int i = 0; i < 8000; i++) {
        log_output(i);
        if (i % 400 == 0)
            mv_warn(&lg, "own_event", MV_I("n", i / 400));
    }
    mv_log_counts(&lg, &c);
    ck_assert_uint_gt(c.output, 7000);
    ck_assert_uint_eq(c.events, 0);
    ck_assert_uint_le(c.queued, 16384);
    /* The reader comes back: one line says what was lost. */
    text = read_until("event=log_dropped");
    line = strstr(text, "event=log_dropped");
    dropped = field(line, "output=");
    ck_assert_int_eq(field(line, "count="), dropped);
    ck_assert_int_eq(field(line, "events="), 0);
    ck_assert_int_eq((long long)c.output, dropped); /* nothing was logged after counting */
    ck_assert_int_eq(count(text, "event=log_dropped"), 1);
    /* Every own event logged before the line is there, and every output line that is not
     * counted as dropped. */
    ck_assert_int_eq(count(text, "event=own_event"), 20);
    ck_assert_int_eq(count(text, "event=output"), 8000 - dropped);
    free(text);
    mv_log_counts(&lg, &c);
    ck_assert_uint_eq(c.output + c.events, 0);
    ck_assert_uint_eq(c.total, (uint64_t)dropped);
}
END_TEST

START_TEST(own_events_are_dropped_last_and_counted)
{
    mv_log_counts_t c;
    char *text, *line;
    json_t *o;

    open_stalled(MV_LOGFMT_JSON, 16384);
    for (int i = 0; i < 2000; i++) {
        log_output(i);
        mv_warn(&lg, "own_event", MV_I("n", i), MV_S("why", "a longer field to fill the queue"));
    }
    mv_log_counts(&lg, &c);
    ck_assert_uint_gt(c.events, 0);
    ck_assert_uint_gt(c.output, c.events); /* output went first */
    text = read_until("\"event\":\"log_dropped\"");
    line = strstr(text, "\"event\":\"log_dropped\"");
    while (line > text && line[-1] != '\n')
        line--;
    *strchr(line, '\n') = '\0';
    o = json_loads(line, 0, NULL);
    ck_assert_msg(o != NULL, "not JSON: %s", line);
    ck_assert_str_eq(jstr(o, "level"), "warn");
    ck_assert_int_eq(jint(o, "events"), (long long)c.events);
    ck_assert_int_eq(jint(o, "output"), (long long)c.output);
    ck_assert_int_eq(jint(o, "count"), (long long)(c.output + c.events));
    json_decref(o);
    free(text);
}
END_TEST

START_TEST(events_file_gets_every_event_while_the_log_stalls)
{
    char path[96], *text;
    mv_log_counts_t c;

    open_stalled(MV_LOGFMT_TEXT, 8192);
    snprintf(path, sizeof path, "%s/events.jsonl", tmp);
    lg.events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_int_ge(lg.events_fd, 0);
    for (int i = 0; i < 3000; i++) {
        mv_info(&lg, "tick", MV_I("n", i));
        log_output(i); /* never in the events file */
    }
    mv_log_counts(&lg, &c);
    ck_assert_uint_gt(c.events, 0); /* the log itself lost some */
    close(lg.events_fd);
    lg.events_fd = -1;
    text = read_text(path);
    ck_assert_int_eq(count(text, "\"event\":\"tick\""), 3000);
    ck_assert_int_eq(count(text, "\n"), 3000);
    ck_assert_ptr_null(strstr(text, "output"));
    free(text);
}
END_TEST

/* Writes 1000 "tick" events (n = 0..999) to events.jsonl at `path`, bounded at 4 KiB, and
 * closes it (lg.events_path stays set: the caller frees it). */
static void write_ticks(const char *path)
{
    lg.events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_int_ge(lg.events_fd, 0);
    lg.events_path = strdup(path);
    lg.events_max = 4096;
    for (int i = 0; i < 1000; i++)
        mv_info(&lg, "tick", MV_I("n", i));
    close(lg.events_fd);
    lg.events_fd = -1;
}

/* [log] events_max: past the bound, events.jsonl becomes events.1.jsonl (replacing the one
 * before) and a new file starts with an events_rotated line; no event of the last two files
 * is lost, and neither file grows past the bound by more than one line. */
START_TEST(events_file_rotates_at_its_bound)
{
    char path[96], old[96], *now, *before;
    const char *p;
    int first, last, n = 0;

    open_stalled(MV_LOGFMT_TEXT, 1 << 20);
    snprintf(path, sizeof path, "%s/events.jsonl", tmp);
    snprintf(old, sizeof old, "%s/events.1.jsonl", tmp);
    write_ticks(path);
    free(lg.events_path);
    lg.events_path = NULL;
    now = read_text(path);
    before = read_text(old);
    ck_assert_ptr_nonnull(now);
    ck_assert_ptr_nonnull(before);
    ck_assert_uint_le(strlen(now), 4096 + 128);
    ck_assert_uint_le(strlen(before), 4096 + 128);
    ck_assert_msg(strncmp(strstr(now, "\"event\""), "\"event\":\"events_rotated\"", 24) == 0,
                  "%.200s", now);
    ck_assert_msg(strstr(before, "\"event\":\"events_rotated\""), "%.200s", before);
    /* The ticks of the two files run on without a gap, up to the last one. */
    first = atoi(strstr(before, "\"n\":") + 4);
    last = first - 1;
    for (int f = 0; f < 2; f++)
        for (p = f ? now : before; (p = strstr(p, "\"n\":")); p += 4, n++) {
            ck_assert_int_eq(atoi(p + 4), last + 1);
            last = atoi(p + 4);
        }
    ck_assert_int_eq(last, 999);
    ck_assert_int_eq(n, 1000 - first);
    ck_assert_int_gt(first, 0); /* it rotated more than once: the oldest are gone */
    free(now);
    free(before);
}
END_TEST

/* Writes 1000 ticks with events.jsonl at `name` bounded at 4 KiB, where events.1.jsonl cannot
 * be made (a directory holds its name); checks that none is lost, in order, in one file that
 * grew past the bound, said once by events_rotate_failed with `call`; and the log says it. */
static void rotation_fails(const char *name, const char *call)
{
    char path[96], old[96], sub[128], want[64], *text;
    const char *p;
    int n = 0;

    open_stalled(MV_LOGFMT_TEXT, 1 << 20);
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    snprintf(old, sizeof old, "%s/events.1.jsonl", tmp);
    snprintf(sub, sizeof sub, "%s/kept", old);
    ck_assert_int_eq(mkdir(old, 0755), 0);
    close(open(sub, O_WRONLY | O_CREAT, 0644)); /* not empty: rename cannot replace it */
    write_ticks(path);
    text = read_text(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_gt(strlen(text), 4096 * 4);
    for (p = text; (p = strstr(p, "\"n\":")); p += 4, n++)
        ck_assert_int_eq(atoi(p + 4), n);
    ck_assert_int_eq(n, 1000);
    ck_assert_int_eq(count(text, "\"event\":\"events_rotate_failed\""), 1);
    snprintf(want, sizeof want, "\"call\":\"%s\"", call);
    ck_assert_msg(strstr(text, want), "%.300s", strstr(text, "events_rotate_failed"));
    ck_assert_int_eq(count(text, "events_rotated"), 0);
    free(text);
    /* The log says it too (its own copy of the event). */
    free(read_until("event=events_rotate_failed"));
    ck_assert_int_eq(access(sub, F_OK), 0); /* what was there is untouched */
    free(lg.events_path);
    lg.events_path = NULL;
}

/* A rename that fails (events.1.jsonl's name taken by a directory), or a file name the
 * rotation cannot derive events.1.jsonl from: the bound is given up, every event is kept in
 * the one file, and a warning says so. */
START_TEST(events_file_that_cannot_rotate_keeps_every_event_and_says_so)
{
    rotation_fails("events.jsonl", "rename");
}
END_TEST

START_TEST(events_file_without_a_jsonl_name_is_not_rotated_and_says_so)
{
    rotation_fails("events.log", "name");
}
END_TEST

START_TEST(close_gives_up_on_a_reader_that_never_comes_back)
{
    char buf[4096];
    ssize_t n;

    open_stalled(MV_LOGFMT_TEXT, 65536);
    mv_log_set_limits(&lg, 65536, 50);
    for (int i = 0; i < 2000; i++)
        mv_warn(&lg, "own_event", MV_I("n", i));
    /* The writer is blocked in write(2) on the full pipe: close cancels it. */
    mv_log_close(&lg);
    lg_open = false;
    /* Its end of the pipe is closed: with ours closed too, the reader sees EOF. */
    close(pipefd[1]);
    pipefd[1] = -1;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
        ;
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(a_reader_that_leaves_costs_nothing)
{
    mv_log_counts_t c;

    open_stalled(MV_LOGFMT_TEXT, 65536);
    close(pipefd[0]);
    pipefd[0] = -1;
    for (int i = 0; i < 5000; i++)
        mv_warn(&lg, "own_event", MV_I("n", i)); /* EPIPE, not SIGPIPE, and no wait */
    ck_assert_int_eq(mv_log_flush(&lg, 10000), 0);
    mv_log_counts(&lg, &c);
    ck_assert_uint_eq(c.queued, 0);
}
END_TEST

/* ---- end to end: memvisor with a stderr pipe nobody reads -------------------------------- */

/* Lines in the results file so far. */
static int results_so_far(const mvrun_t *r)
{
    char *s = read_text(r->results);
    int n = s ? count(s, "\n") : 0;

    free(s);
    return n;
}

START_TEST(a_log_reader_that_stalls_stalls_nothing_else)
{
    mvrun_t r;
    char sock[128], *tasks = repeat_line("spew 400", 20), *all, *line;
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("supervisor.workers=2", "supervisor.grace_period=0", "worker.kill_timeout=100ms"),
        RUN_CMD(MVTEST));
    int unread = 0;

    all = malloc(strlen(tasks) + 8);
    sprintf(all, "%shang\n", tasks); /* keeps memvisor up until the test is done */
    run_init(&r, all);
    r.log_pipe_size = 4096;
    run_start(&r, args, NULL);
    /* 8000 output lines (~900 KiB of log) against a 4 KiB pipe the test does not read: the
     * tasks still end. */
    while (results_so_far(&r) < 20)
        usleep(20000);
    ck_assert_int_eq(ioctl(r.log_fd, FIONREAD, &unread), 0);
    ck_assert_int_gt(unread, 0);
    /* The control socket answers. */
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    ck_assert_int_eq(run_ctl("status", sock), 0);
    /* The reader comes back: what was lost is said once. */
    line = run_wait_for(&r, "event=log_dropped");
    ck_assert_int_gt(field(line, "output="), 0);
    ck_assert_int_eq(field(line, "events="), 0);
    free(line);
    ck_assert_int_eq(run_ctl("stop", sock), 0);
    run_finish(&r);
    ck_assert_int_eq(run_count(&r, "event=log_dropped"), 1);
    run_assert_at_most_once(&r, 21);
    ck_assert_uint_eq(r.nres, 20); /* the hung task was stopped, every other one is ok */
    free(tasks);
    free(all);
    run_free(&r);
}
END_TEST

/* ---- unit: the status line ------------------------------------------------------------- */

/* A log on a pipe the test reads, with the status line on the same fd (a terminal would be). */
static void open_piped_status(void)
{
    char path[64];

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", pipefd[1]);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, path), 0);
    ck_assert_ptr_nonnull(lg.writer);
    mv_log_status_open(&lg, lg.fd);
    lg_open = true;
}

/* What the pipe holds now (the writer has flushed): appended to b, NUL-terminated. */
static void read_now(mv_buf_t *b)
{
    ck_assert_int_eq(mv_log_flush(&lg, 5000), 0);
    for (;;) {
        int avail = 0;
        ssize_t n;

        ck_assert_int_eq(ioctl(pipefd[0], FIONREAD, &avail), 0);
        if (avail == 0)
            break;
        ck_assert_int_eq(mv_buf_reserve(b, (size_t)avail + 1), 0);
        n = read(pipefd[0], b->data + b->len, (size_t)avail);
        ck_assert_int_gt(n, 0);
        b->len += (size_t)n;
    }
    ck_assert_int_eq(mv_buf_reserve(b, 1), 0);
    b->data[b->len] = '\0';
}

/* Drawn, erased before a log line, redrawn after it; erased when cleared. */
START_TEST(status_line_is_erased_for_log_lines_and_redrawn)
{
    mv_buf_t b = {0};
    screen_t sc;
    size_t bad;

    open_piped_status();
    mv_log_status(&lg, "3/10 30%");
    read_now(&b);
    ck_assert_str_eq((char *)b.data, "\r3/10 30%\033[K");
    mv_info(&lg, "recycle", MV_I("worker", 1));
    read_now(&b);
    ck_assert_msg(screen_parse((char *)b.data, b.len, &sc, &bad), "cut at %zu: %s", bad, b.data);
    ck_assert_uint_eq(sc.nlines, 1);
    ck_assert_ptr_nonnull(strstr(sc.lines[0], "info  event=recycle worker=1"));
    ck_assert_uint_eq(sc.ndraws, 2);
    ck_assert_str_eq(sc.draws[1], "3/10 30%");
    ck_assert_uint_eq(sc.erasures, 1);
    ck_assert(!sc.erased_last);
    screen_free(&sc);
    /* The same text again draws nothing; control bytes never reach the terminal. */
    b.len = 0;
    mv_log_status(&lg, "3/10 30%");
    read_now(&b);
    ck_assert_uint_eq(b.len, 0);
    mv_log_status(&lg, "a\nb\033c\r");
    read_now(&b);
    ck_assert_str_eq((char *)b.data, "\ra?b?c?\033[K");
    /* Cleared: erased, and nothing is drawn for log lines that follow. */
    b.len = 0;
    mv_log_status(&lg, NULL);
    mv_info(&lg, "exit", MV_I("worker", 1));
    read_now(&b);
    ck_assert_msg(screen_parse((char *)b.data, b.len, &sc, &bad), "cut at %zu", bad);
    ck_assert_uint_eq(sc.ndraws, 0);
    ck_assert_uint_eq(sc.erasures, 1);
    ck_assert_uint_eq(sc.nlines, 1);
    screen_free(&sc);
    mv_buf_free(&b);
}
END_TEST

/* Log lines and status updates as fast as they come, for a while: every log line arrives
 * whole and in order, and the line is drawn at most every MV_LOG_STATUS_EVERY_MS. */
START_TEST(status_line_never_cuts_a_log_line_and_is_drawn_four_times_a_second_at_most)
{
    char path[96], text[64];
    uint64_t t0, elapsed;
    screen_t sc;
    size_t bad;
    char *out;
    int i;

    snprintf(path, sizeof path, "%s/terminal", tmp);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, path), 0);
    lg_open = true;
    mv_log_status_open(&lg, lg.fd); /* a file stands for the terminal: it keeps every byte */
    t0 = mv_now_ms();
    for (i = 0; mv_now_ms() - t0 < 700; i++) {
        snprintf(text, sizeof text, "%d/? %d.0/s", i, i * 3);
        mv_log_status(&lg, text);
        mv_info(&lg, "line", MV_I("i", i), MV_S("text", "some words to make it longer"));
        usleep(500);
    }
    ck_assert_int_eq(mv_log_flush(&lg, 5000), 0); /* the last line is drawn again */
    elapsed = mv_now_ms() - t0;
    mv_log_close(&lg);
    lg_open = false;
    out = read_text(path);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(screen_parse(out, strlen(out), &sc, &bad), "cut at %zu: %.80s", bad, out + bad);
    ck_assert_uint_eq(sc.nlines, (size_t)i);
    for (size_t k = 0; k < sc.nlines; k++) {
        char want[48];

        snprintf(want, sizeof want, " info  event=line i=%zu text=", k);
        ck_assert_msg(strstr(sc.lines[k], want) != NULL, "line %zu: %s", k, sc.lines[k]);
    }
    ck_assert_uint_ge(sc.ndraws, 2);
    ck_assert_msg(sc.ndraws <= elapsed / MV_LOG_STATUS_EVERY_MS + 1, "%zu draws in %llu ms",
                  sc.ndraws, (unsigned long long)elapsed);
    ck_assert(sc.erased_last); /* close erased it */
    screen_free(&sc);
    free(out);
}
END_TEST

/* Log to a file, status line on a terminal of its own: log lines are never touched. */
START_TEST(status_line_on_another_fd_leaves_the_log_alone)
{
    char path[96];
    mv_buf_t b = {0};
    char *log;

    snprintf(path, sizeof path, "%s/log", tmp);
    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    ck_assert_int_eq(mv_log_open(&lg, MV_LOGFMT_TEXT, MV_LVL_INFO, path), 0);
    lg_open = true;
    mv_log_status_open(&lg, pipefd[1]);
    mv_log_status(&lg, "1/2");
    mv_info(&lg, "spawn", MV_I("worker", 1));
    read_now(&b);
    ck_assert_str_eq((char *)b.data, "\r1/2\033[K");
    mv_log_close(&lg);
    lg_open = false;
    log = read_text(path);
    ck_assert_ptr_nonnull(strstr(log, "event=spawn worker=1\n"));
    ck_assert_ptr_null(strchr(log, '\r'));
    ck_assert_ptr_null(strchr(log, '\033'));
    free(log);
    /* Closing the log erased the line on its terminal. */
    b.len = 0;
    for (;;) {
        ssize_t n;

        ck_assert_int_eq(mv_buf_reserve(&b, 64), 0);
        n = read(pipefd[0], b.data + b.len, 63);
        if (n <= 0)
            break;
        b.len += (size_t)n;
        if (b.len >= 4)
            break;
    }
    b.data[b.len] = '\0';
    ck_assert_str_eq((char *)b.data, "\r\033[K");
    mv_buf_free(&b);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("writer");

    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lines_reach_a_file_whole_and_in_order);
    tcase_add_test(tc, text_log_escapes_c1_controls);
    tcase_add_test(tc, lines_reach_a_reader_without_a_flush_one_by_one_and_in_bursts);
    tcase_add_test(tc, a_stalled_reader_costs_worker_output_first);
    tcase_add_test(tc, own_events_are_dropped_last_and_counted);
    tcase_add_test(tc, events_file_gets_every_event_while_the_log_stalls);
    tcase_add_test(tc, events_file_rotates_at_its_bound);
    tcase_add_test(tc, events_file_that_cannot_rotate_keeps_every_event_and_says_so);
    tcase_add_test(tc, events_file_without_a_jsonl_name_is_not_rotated_and_says_so);
    tcase_add_test(tc, close_gives_up_on_a_reader_that_never_comes_back);
    tcase_add_test(tc, a_reader_that_leaves_costs_nothing);
    tcase_add_test(tc, status_line_is_erased_for_log_lines_and_redrawn);
    tcase_add_test(tc, status_line_never_cuts_a_log_line_and_is_drawn_four_times_a_second_at_most);
    tcase_add_test(tc, status_line_on_another_fd_leaves_the_log_alone);
    suite_add_tcase(s, tc);

    tc = tcase_create("e2e");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_log_reader_that_stalls_stalls_nothing_else);
    suite_add_tcase(s, tc);
    return s;
}
