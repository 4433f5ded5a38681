/*
 * progress: the figures, rate, time left and line of a batch (progress.c, pure), the total
 * counted ahead of the reader (tasks.c), and end to end the live line on a real
 * pseudo-terminal (forkpty), on a pipe (auto: nothing; on: the line), and the same figures
 * from `memvisor status`.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "progress.h"
#include "suites.h"
#include "tasks.h"

/* ---- pure: the line and its pieces -------------------------------------------------------- */

static const mv_progress_t busy_run = {
    .done = 1234,
    .ok = 1230,
    .failed = 4,
    .quarantined = 0,
    .total = 4000,
    .queue = 2764,
    .in_flight = 2,
    .rate = 812.4,
    .eta_s = 3.4,
    .busy = 2,
    .workers = 2,
    .recycles = 10,
    .top_slot = 2,
    .top_mem = 301 << 20,
    .top_soft = 384 << 20,
    .top_hard = 512 << 20,
};

START_TEST(line_shows_every_figure)
{
    char line[512];
    size_t n = mv_progress_format(&busy_run, line, sizeof line);

    ck_assert_str_eq(line, "1234/4000 30% 812/s eta 4s | ok 1230 failed 4 quarantined 0 | busy 2/2 "
                           "recycles 10 | mem 301M #2 (soft 384M, hard 512M)");
    ck_assert_uint_eq(n, strlen(line));
}
END_TEST

START_TEST(line_says_what_is_not_known)
{
    mv_progress_t p = {.done = 7, .ok = 7, .total = -1, .queue = -1, .rate = -1, .eta_s = -1};
    char line[512];

    mv_progress_format(&p, line, sizeof line);
    ck_assert_str_eq(line,
                     "7/? ?/s eta ? | ok 7 failed 0 quarantined 0 | busy 0/0 recycles 0 | mem ?");
    /* Slow runs get a decimal; limits that are off say so. */
    p.rate = 2.25;
    p.total = 0; /* an empty source: done at once */
    p.top_slot = 1;
    p.top_mem = 9 << 20;
    mv_progress_format(&p, line, sizeof line);
    ck_assert_str_eq(line, "7/0 100% 2.2/s eta ? | ok 7 failed 0 quarantined 0 | busy 0/0 "
                           "recycles 0 | mem 9.0M #1 (soft off, hard off)");
}
END_TEST

/* Cut to the terminal's width (n - 1 bytes): a prefix of the whole line, never more. */
START_TEST(line_is_cut_to_the_width)
{
    char whole[512], cut[512];

    mv_progress_format(&busy_run, whole, sizeof whole);
    for (size_t n = 1; n < strlen(whole) + 3; n++) {
        size_t len = mv_progress_format(&busy_run, cut, n);

        ck_assert_uint_eq(len, strlen(cut));
        ck_assert_uint_eq(len, MV_MIN(n - 1, strlen(whole)));
        ck_assert_int_eq(strncmp(cut, whole, len), 0);
    }
    ck_assert_uint_eq(mv_progress_format(&busy_run, cut, 0), 0);
}
END_TEST

START_TEST(sizes_and_durations_for_a_line)
{
    static const struct {
        int64_t b;
        const char *s;
    } sizes[] = {{12, "12B"},
                 {900 << 10, "900K"},
                 {(1 << 20) - 1, "1.0M"},
                 {9 << 20, "9.0M"},
                 {(19 << 20) / 2, "9.5M"},
                 {301 << 20, "301M"},
                 {3LL << 29, "1.5G"},
                 {-1, "?"},
                 {1LL << 40, "1.0T"},
                 {1023LL << 20, "1023M"}};
    static const struct {
        double s;
        const char *t;
    } times[] = {{0, "0s"},       {0.2, "1s"},      {42, "42s"},
                 {59.2, "1m00s"}, {185, "3m05s"},   {3725, "1h02m"},
                 {-1, "?"},       {360000, ">99h"}, {99 * 3600.0, "99h00m"}};
    char out[16];

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mv_progress_size(sizes[i].b, 0, out);
        ck_assert_msg(strcmp(out, sizes[i].s) == 0, "%lld: %s, not %s", (long long)sizes[i].b, out,
                      sizes[i].s);
    }
    mv_progress_size(0, 1, out);
    ck_assert_str_eq(out, "off");
    mv_progress_size(0, 0, out);
    ck_assert_str_eq(out, "0B");
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        mv_progress_duration(times[i].s, out);
        ck_assert_msg(strcmp(out, times[i].t) == 0, "%g: %s, not %s", times[i].s, out, times[i].t);
    }
}
END_TEST

/* The rate is over the latest 10 s of samples, not since the start. */
START_TEST(rate_over_the_latest_window)
{
    mv_rate_t r = {0};

    ck_assert(mv_rate_per_s(&r) < 0);
    mv_rate_add(&r, 1000, 0);
    ck_assert(mv_rate_per_s(&r) < 0); /* one sample */
    mv_rate_add(&r, 1050, 5);
    ck_assert(mv_rate_per_s(&r) < 0); /* 50 ms: too short to say */
    /* 100 tasks a second for 20 s, sampled every 250 ms... */
    for (uint64_t t = 1250; t <= 21000; t += 250)
        mv_rate_add(&r, t, (t - 1000) / 10);
    ck_assert_double_eq_tol(mv_rate_per_s(&r), 100.0, 1e-9);
    /* ...then 10 a second for 10 s: the window forgets the fast start. */
    for (uint64_t t = 21250; t <= 31000; t += 250)
        mv_rate_add(&r, t, 2000 + (t - 21000) / 100);
    ck_assert_double_eq_tol(mv_rate_per_s(&r), 10.0, 1e-9);
    /* A sample from the past is ignored; nothing ending gives 0/s, not unknown. */
    mv_rate_add(&r, 500, 0);
    ck_assert_double_eq_tol(mv_rate_per_s(&r), 10.0, 1e-9);
    for (uint64_t t = 31250; t <= 42000; t += 250)
        mv_rate_add(&r, t, 2100);
    ck_assert_double_eq_tol(mv_rate_per_s(&r), 0.0, 1e-9);
}
END_TEST

START_TEST(time_left_and_tasks_not_started)
{
    ck_assert_double_eq_tol(mv_progress_eta(100, 1100, 50.0), 20.0, 1e-9);
    ck_assert_double_eq(mv_progress_eta(1100, 1100, 0), 0);
    ck_assert(mv_progress_eta(100, 1100, 0) < 0);  /* stalled: not known */
    ck_assert(mv_progress_eta(100, -1, 50.0) < 0); /* a stream */
    ck_assert(mv_progress_eta(100, 1100, -1) < 0); /* no rate yet */
    ck_assert_int_eq(mv_progress_queue(100, 1100, 8), 992);
    ck_assert_int_eq(mv_progress_queue(1096, 1100, 8), 0);
    ck_assert_int_eq(mv_progress_queue(5, -1, 8), -1);
}
END_TEST

/* ---- the total, counted ahead ------------------------------------------------------------ */

START_TEST(lines_counted_as_the_reader_makes_tasks)
{
    static const char text[] = "a\n\nbb\n\n\nccc\nlast";
    bool open_line = false;
    uint64_t whole = mv_tasks_count_lines(text, sizeof text - 1, &open_line);

    ck_assert_uint_eq(whole + open_line, 4);
    /* Every cut in two gives the same count, a line across the cut counted once. */
    for (size_t cut = 0; cut < sizeof text; cut++) {
        bool o = false;
        uint64_t k = mv_tasks_count_lines(text, cut, &o);

        k += mv_tasks_count_lines(text + cut, sizeof text - 1 - cut, &o);
        ck_assert_uint_eq(k + o, 4);
    }
}
END_TEST

static void count_input_cb(void *arg)
{
    (void)arg;
}

/* A file far longer than the read-ahead: its total is known before the reader gets there;
 * a file read to its end knows it from the reader. */
START_TEST(total_of_a_file_known_before_it_is_read)
{
    char path[] = "/tmp/mv-check-progress-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    uv_loop_t loop;
    mv_tasks_t t;

    ck_assert_ptr_nonnull(f);
    for (int i = 1; i <= 200000; i++)
        fprintf(f, i % 10 ? "task %d\n" : "\n", i); /* every tenth line empty: no task */
    fclose(f);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(mv_tasks_open(&t, &loop, path, 4096, 16, count_input_cb, NULL), 0);
    ck_assert_int_eq(t.total, -1);
    ck_assert_int_eq(mv_tasks_count(&t), 0);
    mv_tasks_pump(&t);
    while (t.counting)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(t.total, 180000);
    ck_assert_uint_lt(t.loaded, 180000); /* the reader is still near the start */
    mv_tasks_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    mv_tasks_free(&t);

    /* Read to the end by the reader alone (no count): the total is what it read. */
    ck_assert_int_eq(mv_tasks_open(&t, &loop, path, 4096, 1 << 20, count_input_cb, NULL), 0);
    while (!t.eof)
        mv_tasks_pump(&t), uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(t.total, 180000);
    ck_assert_int_eq(mv_tasks_count(&t), 0); /* nothing left to count */
    ck_assert_ptr_null(t.counting);
    mv_tasks_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    mv_tasks_free(&t);

    /* Closed while counting: the count is dropped, the loop still closes cleanly. */
    ck_assert_int_eq(mv_tasks_open(&t, &loop, path, 4096, 16, count_input_cb, NULL), 0);
    ck_assert_int_eq(mv_tasks_count(&t), 0);
    mv_tasks_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(t.total, -1);
    mv_tasks_free(&t);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    unlink(path);
}
END_TEST

/* ---- end to end ------------------------------------------------------------------------- */

/* `memvisor run` with stdout and stderr on a new pseudo-terminal of `cols` columns, tasks
 * and results in r's directory; returns everything the terminal showed (free it). */
static char *run_on_pty(mvrun_t *r, const char *const *extra, int cols, int *code)
{
    struct winsize ws = {.ws_row = 50, .ws_col = (unsigned short)cols};
    const char *argv[48];
    char state[160];
    mv_buf_t out = {0};
    int master, st, n = 0;
    pid_t pid;

    snprintf(state, sizeof state, "supervisor.state_dir=%s/state", r->dir);
    argv[n++] = MEMVISOR;
    argv[n++] = "run";
    argv[n++] = "-o";
    argv[n++] = state;
    argv[n++] = "--tasks";
    argv[n++] = r->tasks;
    argv[n++] = "--results";
    argv[n++] = r->results;
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid = forkpty(&master, NULL, NULL, &ws);
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (;;) {
        ssize_t k;

        ck_assert_int_eq(mv_buf_reserve(&out, 65536 + 1), 0);
        k = read(master, out.data + out.len, 65536);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) /* EIO: every holder of the terminal is gone */
            break;
        out.len += (size_t)k;
    }
    close(master);
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    out.data[out.len] = '\0';
    return (char *)out.data;
}

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    bool ok;

    ck_assert_int_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    ok = regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

/* On a terminal: the line is drawn and redrawn in place, with the total; every log line
 * begins on a clean line (the status line erased first) and arrives whole; the line is gone
 * before the summary; it fits the terminal's width. */
START_TEST(line_on_a_terminal_is_redrawn_and_never_cuts_a_log_line)
{
    char *tasks = repeat_line("sleep 4", 300), *out;
    const char *extra[] = {"-o", "supervisor.workers=2", "-o", "limits.max_tasks=25", "--", MVTEST,
                           NULL};
    long long last_done = -1;
    size_t bad, summary = 0, recycles = 0;
    screen_t sc;
    mvrun_t r;
    int code;

    run_init(&r, tasks);
    out = run_on_pty(&r, extra, 100, &code);
    ck_assert_int_eq(code, 0);
    ck_assert_msg(screen_parse(out, strlen(out), &sc, &bad), "cut at %zu: %.120s", bad, out + bad);
    ck_assert_uint_ge(sc.ndraws, 2);
    for (size_t i = 0; i < sc.ndraws; i++) {
        long long done = atoll(sc.draws[i]);

        ck_assert_msg(matches("^[0-9]+/(300 [0-9]+%|\\?) [0-9.?]+/s eta [0-9hms?>]+ \\| ok [0-9]+ "
                              "failed 0 quarantined 0 \\| busy [0-2]/[0-2] recycles [0-9]+ \\| mem",
                              sc.draws[i]),
                      "draw %zu: %s", i, sc.draws[i]);
        ck_assert_uint_le(strlen(sc.draws[i]), 99); /* one column short of 100 */
        ck_assert_int_ge(done, last_done);
        last_done = done;
    }
    ck_assert_ptr_nonnull(strstr(sc.draws[sc.ndraws - 1], "/300 "));
    for (size_t i = 0; i < sc.nlines; i++) {
        ck_assert_msg(!sc.shown[i], "line %zu began after the status line: %s", i, sc.lines[i]);
        if (strncmp(sc.lines[i], "memvisor: done", 14) == 0)
            summary = i;
        else if (!summary && *sc.lines[i])
            ck_assert_msg(
                matches("^[0-9T:.-]+Z (debug|info|warn|error) +event=[a-z_]+", sc.lines[i]),
                "not a whole log line: %s", sc.lines[i]);
        recycles += strstr(sc.lines[i], "event=recycle ") != NULL;
    }
    ck_assert_uint_gt(summary, 0);
    ck_assert_uint_ge(recycles, 4); /* log lines came while the line was up */
    ck_assert(sc.erased_last);
    screen_free(&sc);
    free(out);
    free(tasks);
    run_free(&r);
}
END_TEST

/* [log] progress = off: nothing drawn on a terminal either. */
START_TEST(progress_off_draws_nothing_on_a_terminal)
{
    char *tasks = repeat_line("sleep 5", 80), *out;
    const char *extra[] = {"-o", "supervisor.workers=1", "-o", "log.progress=off", "--", MVTEST,
                           NULL};
    mvrun_t r;
    int code;

    run_init(&r, tasks);
    out = run_on_pty(&r, extra, 120, &code);
    ck_assert_int_eq(code, 0);
    ck_assert_ptr_nonnull(strstr(out, "memvisor: done"));
    ck_assert_ptr_null(strstr(out, "\033[K"));
    ck_assert_ptr_null(strstr(out, "/80 "));
    free(out);
    free(tasks);
    run_free(&r);
}
END_TEST

/* stderr a pipe: nothing with auto (a log reader gets log lines only); the line with on. */
START_TEST(on_a_pipe_auto_draws_nothing_and_on_draws)
{
    char *tasks = repeat_line("sleep 5", 100);
    const char *autoargs[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    mvargs_t onargs_av;
    const char *const *onargs =
        run_argv(&onargs_av, RUN_OPTS("supervisor.workers=1", "log.progress=on"), RUN_CMD(MVTEST));
    screen_t sc;
    size_t bad;
    mvrun_t r;

    ck_assert_int_eq(run_batch(&r, tasks, autoargs), 0);
    ck_assert_ptr_null(strchr(r.log, '\r'));
    ck_assert_ptr_null(strchr(r.log, '\033'));
    run_free(&r);

    ck_assert_int_eq(run_batch(&r, tasks, onargs), 0);
    ck_assert_msg(screen_parse(r.log, strlen(r.log), &sc, &bad), "cut at %zu", bad);
    ck_assert_uint_ge(sc.ndraws, 1);
    ck_assert(matches("^[0-9]+/(100|\\?) ", sc.draws[0]));
    ck_assert(sc.erased_last);
    for (size_t i = 0; i < sc.nlines; i++)
        ck_assert_msg(!sc.shown[i], "line %zu began after the status line", i);
    screen_free(&sc);
    run_free(&r);
    free(tasks);
}
END_TEST

/* `memvisor status` during a batch: the same figures, "queue" = tasks not sent to a worker
 * yet, so done + queue + in flight = total in one reply. */
START_TEST(status_shows_the_same_figures)
{
    char *tasks = repeat_line("sleep 20", 120), sock[160];
    const char *args[] = {"run", "-o", "supervisor.workers=2", "--", MVTEST, NULL};
    const char *jargs[] = {"status", "--socket", sock, "--json", NULL};
    const char *targs[] = {"status", "--socket", sock, NULL};
    json_t *reply, *pg, *totals;
    mvrun_t r, c;

    run_init(&r, tasks);
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    run_start(&r, args, NULL);
    free(run_wait_for(&r, "event=pool_ready"));
    run_init(&c, NULL);
    run_start(&c, jargs, NULL);
    ck_assert_int_eq(run_finish(&c), 0);
    reply = json_loads(run_summary(&c), 0, NULL);
    ck_assert_ptr_nonnull(reply);
    run_free(&c);
    pg = json_object_get(reply, "progress");
    totals = json_object_get(reply, "totals");
    ck_assert_int_eq(jint(pg, "total"), 120);
    ck_assert_int_eq(jint(pg, "done") + jint(pg, "queue") + jint(pg, "in_flight"), 120);
    ck_assert_int_eq(jint(totals, "queue"), jint(pg, "queue"));
    ck_assert_int_eq(jint(pg, "done"), jint(pg, "ok"));
    ck_assert_int_eq(jint(pg, "workers"), 2);
    ck_assert_int_le(jint(pg, "busy"), 2);
    ck_assert_int_eq(jint(json_object_get(pg, "top"), "memory_hard"), 512LL << 20);
    json_decref(reply);

    run_init(&c, NULL);
    run_start(&c, targs, NULL);
    ck_assert_int_eq(run_finish(&c), 0);
    ck_assert_msg(matches("\nprogress: [0-9]+/120 [0-9]+% [0-9.?]+/s eta [0-9hms?]+ \\| ok [0-9]+ "
                          "failed 0 quarantined 0 \\| busy [0-2]/2 recycles 0 \\| mem ",
                          run_summary(&c)),
                  "%s", run_summary(&c));
    run_free(&c);
    ck_assert_int_eq(run_finish(&r), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

Suite *progress_suite(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, line_shows_every_figure);
    tcase_add_test(tc, line_says_what_is_not_known);
    tcase_add_test(tc, line_is_cut_to_the_width);
    tcase_add_test(tc, sizes_and_durations_for_a_line);
    tcase_add_test(tc, rate_over_the_latest_window);
    tcase_add_test(tc, time_left_and_tasks_not_started);
    tcase_add_test(tc, lines_counted_as_the_reader_makes_tasks);
    tcase_add_test(tc, total_of_a_file_known_before_it_is_read);
    suite_add_tcase(s, tc);

    tc = tcase_create("e2e");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, line_on_a_terminal_is_redrawn_and_never_cuts_a_log_line);
    tcase_add_test(tc, progress_off_draws_nothing_on_a_terminal);
    tcase_add_test(tc, on_a_pipe_auto_draws_nothing_and_on_draws);
    tcase_add_test(tc, status_shows_the_same_figures);
    suite_add_tcase(s, tc);
    return s;
}
