/*
 * tasks (line splitter, queue, sources), results encoding, meter parsing, util.
 */
#include <check.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lean.h"
#include "meter.h"
#include "results.h"
#include "suites.h"
#include "tasks.h"
#include "util.h"

static void noop_cb(void *arg)
{
    (void)arg;
}

static mv_tasks_t *fresh(int64_t max_size)
{
    static mv_tasks_t t;

    memset(&t, 0, sizeof t);
    t.max_size = max_size;
    t.read_ahead = 1000000;
    t.kind = MV_SRC_NONE;
    t.on_input = noop_cb;
    return &t;
}

START_TEST(lines_become_tasks_with_line_numbers)
{
    mv_tasks_t *t = fresh(100);
    mv_task_t *x;

    /* Split across feeds at awkward places, with an empty line and no final newline. */
    mv_tasks_feed(t, "alpha\nbe", 8, false);
    mv_tasks_feed(t, "ta\n\ngam", 7, false);
    mv_tasks_feed(t, "ma", 2, false);
    ck_assert_uint_eq(t->queued, 2);
    mv_tasks_feed(t, NULL, 0, true);
    ck_assert_uint_eq(t->queued, 3);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->id, 1);
    ck_assert_str_eq(x->data, "alpha");
    mv_task_free(x);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->id, 2);
    ck_assert_str_eq(x->data, "beta");
    mv_task_free(x);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->id, 4); /* line 3 was empty: skipped, numbering kept */
    ck_assert_str_eq(x->data, "gamma");
    ck_assert_uint_eq(x->len, 5);
    mv_task_free(x);
    ck_assert_ptr_null(mv_tasks_pop(t));
    mv_tasks_free(t);
}
END_TEST

/* CR LF line ends (a file written on Windows) lose their CR; a CR elsewhere stays; a line of
 * CR LF alone is blank (no task) and counted as none. */
START_TEST(crlf_line_ends_lose_their_cr)
{
    mv_tasks_t *t = fresh(100);
    static const char in[] = "parse id=1\r\n\r\nrender\r\r\nmid\rdle\n\r\r\nlast\r";
    static const char *const want[] = {"parse id=1", "render\r", "mid\rdle", "\r", "last\r"};
    static const uint64_t ids[] = {1, 3, 4, 5, 6};
    bool in_line = false;
    mv_task_t *x;

    /* Split between a CR and its LF, too. */
    mv_tasks_feed(t, in, 11, false);
    mv_tasks_feed(t, in + 11, sizeof in - 1 - 11, true);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        x = mv_tasks_pop(t);
        ck_assert_ptr_nonnull(x);
        ck_assert_uint_eq(x->id, ids[i]);
        ck_assert_uint_eq(x->len, strlen(want[i]));
        ck_assert_mem_eq(x->data, want[i], x->len);
        mv_task_free(x);
    }
    ck_assert_ptr_null(mv_tasks_pop(t));
    mv_tasks_free(t);
    /* The unterminated last line is the caller's to count (in_line). */
    ck_assert_uint_eq(mv_tasks_count_lines(in, sizeof in - 1, &in_line), 4);
    ck_assert(in_line);
}
END_TEST

START_TEST(any_bytes_survive)
{
    mv_tasks_t *t = fresh(100);
    static const char in[] = "a\0b\r\xff\xfe\n";
    mv_task_t *x;

    mv_tasks_feed(t, in, sizeof in - 1, true);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->len, 6);
    ck_assert_mem_eq(x->data, "a\0b\r\xff\xfe", 6);
    ck_assert_int_eq(x->data[6], '\0');
    mv_task_free(x);
    mv_tasks_free(t);
}
END_TEST

START_TEST(too_long_lines_become_failed_tasks)
{
    mv_tasks_t *t = fresh(4);
    mv_task_t *x;

    mv_tasks_feed(t, "ok\ntoolong", 10, false);
    mv_tasks_feed(t, "ger\nfine\nxxxxx", 14, true);
    x = mv_tasks_pop(t);
    ck_assert_str_eq(x->data, "ok");
    ck_assert_ptr_null(x->bad);
    mv_task_free(x);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->id, 2);
    ck_assert_ptr_nonnull(x->bad);
    mv_task_free(x);
    x = mv_tasks_pop(t);
    ck_assert_uint_eq(x->id, 3);
    ck_assert_str_eq(x->data, "fine");
    mv_task_free(x);
    x = mv_tasks_pop(t); /* the last line, too long and unterminated */
    ck_assert_uint_eq(x->id, 4);
    ck_assert_ptr_nonnull(x->bad);
    mv_task_free(x);
    ck_assert_uint_eq(t->loaded, 4);
    mv_tasks_free(t);
}
END_TEST

/* A task that lost an attempt goes behind the tasks queued now, with its record; a task
 * sent ahead and not started goes back to the front. Before, both went to the front, so a
 * task that hangs its worker took one again before any fresh task. */
START_TEST(a_retry_goes_behind_the_queued_tasks)
{
    mv_tasks_t *t = fresh(100);
    mv_task_t *a, *b;

    mv_tasks_feed(t, "a\nb\nc\nd\n", 8, true);
    t->eof = true;
    a = mv_tasks_pop(t);
    b = mv_tasks_pop(t);
    ck_assert_int_eq(mv_task_note_attempt(a, MV_R_TASK_TIMEOUT, 1, 100, 15, -1), 0);
    mv_tasks_requeue(t, b); /* not started */
    mv_tasks_retry(t, a);
    ck_assert_ptr_eq(mv_tasks_pop(t), b);
    mv_tasks_end(t, b, NULL);
    for (uint64_t id = 3; id <= 4; id++) {
        mv_task_t *c = mv_tasks_pop(t);
        ck_assert_uint_eq(c->id, id);
        mv_tasks_end(t, c, NULL);
    }
    ck_assert_ptr_eq(mv_tasks_pop(t), a);
    ck_assert_uint_eq(a->nhist, 1);
    ck_assert_ptr_null(mv_tasks_pop(t));
    ck_assert_uint_eq(t->requeued, 2);
    /* Alone in the queue, it is both ends. */
    mv_tasks_retry(t, a);
    ck_assert_ptr_eq(mv_tasks_pop(t), a);
    ck_assert_ptr_null(mv_tasks_pop(t));
    mv_tasks_end(t, a, NULL);
    ck_assert(mv_tasks_all_ended(t));
    mv_tasks_free(t);
}
END_TEST

START_TEST(requeue_goes_first_and_attempts_are_recorded)
{
    mv_tasks_t *t = fresh(100);
    mv_task_t *a, *b;

    mv_tasks_feed(t, "a\nb\nc\n", 6, true);
    t->eof = true;
    a = mv_tasks_pop(t);
    b = mv_tasks_pop(t);
    ck_assert_int_eq(mv_task_note_attempt(a, MV_R_CRASH, 1, 100, -9, -1), 0);
    ck_assert_int_eq(mv_task_note_attempt(a, MV_R_HARD_LIMIT, 2, 200, -9, 1 << 20), 0);
    ck_assert_uint_eq(a->nhist, 2);
    ck_assert_int_eq(a->hist[1].reason, MV_R_HARD_LIMIT);
    mv_tasks_requeue(t, b);
    mv_tasks_requeue(t, a);
    ck_assert_ptr_eq(mv_tasks_pop(t), a);
    ck_assert_ptr_eq(mv_tasks_pop(t), b);
    ck_assert_uint_eq(t->requeued, 2);
    ck_assert(!mv_tasks_all_ended(t));
    mv_tasks_end(t, a, NULL);
    mv_tasks_end(t, b, NULL);
    mv_tasks_end(t, mv_tasks_pop(t), NULL);
    ck_assert(mv_tasks_all_ended(t));
    mv_tasks_free(t);
}
END_TEST

static bool starts_with(void *arg, const mv_task_t *task)
{
    return task->data[0] == *(const char *)arg;
}

/* A worker with a filter takes the first task it may take; the others keep their order. */
START_TEST(take_the_first_task_a_filter_accepts)
{
    mv_tasks_t *t = fresh(100);
    mv_task_t *x;
    char b = 'b', z = 'z';

    mv_tasks_feed(t, "a1\nb2\na3\nb4\n", 12, false);
    ck_assert_ptr_null(mv_tasks_find(t, starts_with, &z));
    ck_assert_ptr_null(mv_tasks_take_if(t, starts_with, &z));
    ck_assert_uint_eq(t->queued, 4);
    t->paused = true; /* the source holds dispatch back: nothing is taken, filtered or not */
    ck_assert_ptr_null(mv_tasks_find(t, starts_with, &b));
    ck_assert_ptr_null(mv_tasks_take_if(t, starts_with, &b));
    t->paused = false;
    ck_assert_uint_eq(mv_tasks_find(t, starts_with, &b)->id, 2);
    x = mv_tasks_take_if(t, starts_with, &b);
    ck_assert_uint_eq(x->id, 2);
    mv_tasks_end(t, x, NULL);
    x = mv_tasks_take_if(t, starts_with, &b); /* the tail itself */
    ck_assert_uint_eq(x->id, 4);
    mv_tasks_end(t, x, NULL);
    ck_assert_ptr_null(mv_tasks_take_if(t, starts_with, &b));
    ck_assert_uint_eq(t->queued, 2);
    mv_tasks_feed(t, "b5\n", 3, true); /* the tail moved back: appends still land last */
    ck_assert_uint_eq((x = mv_tasks_pop(t))->id, 1);
    mv_tasks_end(t, x, NULL);
    ck_assert_uint_eq((x = mv_tasks_pop(t))->id, 3);
    mv_tasks_end(t, x, NULL);
    ck_assert_uint_eq((x = mv_tasks_pop(t))->id, 5);
    mv_tasks_end(t, x, NULL);
    ck_assert_ptr_null(mv_tasks_pop(t));
    mv_tasks_free(t);
}
END_TEST

/* Reading a real file through the loop: lines longer than one 64 KiB read, many lines. */
static int inputs;

static void count_cb(void *arg)
{
    mv_tasks_pump(arg);
    inputs++;
}

/* A source that takes back the requeued tasks that lost an attempt (as a Redis source does)
 * and hears of every final result; pop holds back while it says so. */
typedef struct fake {
    int pumps, taken_back, ended, routed;
    mv_status_t last;
} fake_t;

static void fake_pump(mv_tasks_t *t)
{
    ((fake_t *)t->src_data)->pumps++;
}

/* Only limits up to 1000 have somewhere to go. */
static bool fake_route(mv_tasks_t *t, mv_task_t *task)
{
    fake_t *f = t->src_data;

    if (task->limit > 1000)
        return false;
    f->routed++;
    mv_task_free(task);
    return true;
}

static bool fake_requeue(mv_tasks_t *t, mv_task_t *task)
{
    fake_t *f = t->src_data;

    if (task->nhist == 0)
        return false; /* not started: queued here again */
    f->taken_back++;
    mv_task_free(task);
    return true;
}

static void fake_end(mv_tasks_t *t, mv_task_t *task, const struct mv_result *res)
{
    fake_t *f = t->src_data;

    f->ended++;
    f->last = res->status;
}

START_TEST(a_source_takes_back_what_lost_an_attempt_and_hears_each_end)
{
    static const mv_tasks_source_t src = {.kind = "fake",
                                          .pump = fake_pump,
                                          .requeue = fake_requeue,
                                          .end = fake_end,
                                          .route = fake_route};
    fake_t f = {0};
    mv_tasks_t t;
    mv_task_t *a = mv_task_new(1, "a", 1), *b = mv_task_new(2, "b", 1), *x;
    mv_result_t r = {.task = 2, .status = MV_ST_QUARANTINED};

    mv_tasks_init(&t, NULL, 100, 10, NULL, NULL);
    t.src = &src;
    t.src_data = &f;
    mv_tasks_add(&t, a);
    mv_tasks_add(&t, b);
    mv_tasks_pump(&t);
    ck_assert_int_eq(f.pumps, 1);
    t.paused = true; /* the source holds dispatch back */
    ck_assert_ptr_null(mv_tasks_pop(&t));
    t.paused = false;
    ck_assert_ptr_eq(mv_tasks_pop(&t), a);
    ck_assert_ptr_eq(mv_tasks_pop(&t), b);
    /* a lost an attempt: the source takes it; b was not started: it comes back here */
    ck_assert_int_eq(mv_task_note_attempt(a, MV_R_CRASH, 1, 10, -9, -1), 0);
    mv_tasks_requeue(&t, a);
    mv_tasks_requeue(&t, b);
    ck_assert_int_eq(f.taken_back, 1);
    ck_assert_uint_eq(t.returned, 1);
    ck_assert_uint_eq(t.requeued, 2);
    ck_assert_uint_eq(mv_tasks_outstanding(&t), 1);
    ck_assert_ptr_eq((x = mv_tasks_pop(&t)), b);
    t.eof = true;
    ck_assert(!mv_tasks_all_ended(&t));
    mv_tasks_end(&t, x, &r);
    ck_assert_int_eq(f.ended, 1);
    ck_assert_int_eq(f.last, MV_ST_QUARANTINED);
    ck_assert(mv_tasks_all_ended(&t)); /* one ended, one handed back */
    /* A task that needs more memory than this host gives: the source routes it (counted as
     * handed back), or has nowhere to (the caller keeps it); no source route: nowhere. */
    x = mv_task_new(3, "c", 1);
    x->limit = 5000;
    ck_assert(!mv_tasks_route(&t, x));
    ck_assert_int_eq(f.routed, 0);
    x->limit = 500;
    mv_tasks_add(&t, x);
    ck_assert_ptr_eq(mv_tasks_pop(&t), x);
    ck_assert(mv_tasks_route(&t, x));
    ck_assert_int_eq(f.routed, 1);
    ck_assert_uint_eq(t.returned, 2);
    ck_assert(mv_tasks_all_ended(&t));
    mv_tasks_free(&t);
}
END_TEST

START_TEST(file_source_streams_through_the_loop)
{
    char path[] = "/tmp/mv-tasks-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    uv_loop_t loop;
    mv_tasks_t t;
    uint64_t n = 0, bytes = 0;
    mv_task_t *x;

    for (int i = 1; i <= 5000; i++)
        fprintf(f, "task %d\n", i);
    for (int i = 0; i < 100000; i++)
        fputc('L', f); /* line 5001: 100000 bytes, spans two reads */
    fputc('\n', f);
    fclose(f);
    uv_loop_init(&loop);
    ck_assert_int_eq(mv_tasks_open(&t, &loop, path, 1 << 20, 1000000, count_cb, &t), 0);
    t.arg = &t;
    mv_tasks_pump(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert(t.eof);
    while ((x = mv_tasks_pop(&t))) {
        n++;
        bytes = x->len;
        ck_assert_uint_eq(x->id, n);
        mv_tasks_end(&t, x, NULL);
    }
    ck_assert_uint_eq(n, 5001);
    ck_assert_uint_eq(bytes, 100000);
    ck_assert(mv_tasks_all_ended(&t));
    ck_assert_int_gt(inputs, 1);
    mv_tasks_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mv_tasks_free(&t);
    unlink(path);
}
END_TEST

/* A regular file is queued only up to twice read_ahead a read (what a read brought beyond that
 * is read again later, from where the queue stopped): every line still becomes its task, once
 * and in order, a line longer than a read included. */
typedef struct sip {
    mv_tasks_t t;
    uint64_t next;  /* the id the next task must have */
    size_t most;    /* the longest queue seen */
    size_t longest; /* the longest task */
} sip_t;

static void sip_cb(void *arg)
{
    sip_t *s = arg;
    mv_task_t *x;

    s->most = MV_MAX(s->most, s->t.queued);
    for (int i = 0; i < 10 && (x = mv_tasks_pop(&s->t)); i++) {
        ck_assert_uint_eq(x->id, s->next);
        s->next += x->id == 1499 ? 2 : 1; /* line 1500 is empty: no task */
        s->longest = MV_MAX(s->longest, x->len);
        mv_tasks_end(&s->t, x, NULL);
    }
    mv_tasks_pump(&s->t);
}

START_TEST(a_file_is_queued_only_to_twice_read_ahead)
{
    char path[] = "/tmp/mv-tasks-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    static sip_t s;
    uv_loop_t loop;
    long size;

    for (int i = 1; i <= 3000; i++) {
        if (i == 1000)
            for (int k = 0; k < 100000; k++)
                fputc('L', f); /* line 1000: longer than a read */
        if (i != 1500)
            fprintf(f, "%d", i);
        fputc('\n', f);
    }
    size = ftell(f);
    fclose(f);
    s.next = 1;
    uv_loop_init(&loop);
    ck_assert_int_eq(mv_tasks_open(&s.t, &loop, path, 1 << 20, 8, sip_cb, &s), 0);
    mv_tasks_pump(&s.t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert(s.t.eof);
    ck_assert_uint_eq(s.next, 3001);
    ck_assert_uint_eq(s.longest, 100004);
    ck_assert_uint_le(s.most, 16);
    ck_assert_uint_eq(s.t.offset, (uint64_t)size);
    ck_assert(mv_tasks_all_ended(&s.t));
    mv_tasks_close(&s.t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mv_tasks_free(&s.t);
    unlink(path);
}
END_TEST

START_TEST(stdin_pipe_source_with_backpressure)
{
    uv_loop_t loop;
    mv_tasks_t t;
    int p[2];
    mv_task_t *x;
    uint64_t n = 0;

    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(write(p[1], "one\ntwo\nthree\nfour\n", 19), 19);
    close(p[1]);
    dup2(p[0], STDIN_FILENO); /* Check forks each test: our stdin is ours to replace */
    close(p[0]);
    uv_loop_init(&loop);
    ck_assert_int_eq(mv_tasks_open(&t, &loop, "-", 100, 2, noop_cb, NULL), 0);
    ck_assert_int_eq(t.kind, MV_SRC_STREAM);
    for (int round = 0; round < 10 && !t.eof; round++) {
        mv_tasks_pump(&t);
        uv_run(&loop, UV_RUN_ONCE);
        ck_assert_uint_le(t.queued, 4);
        while ((x = mv_tasks_pop(&t))) {
            n++;
            mv_tasks_end(&t, x, NULL);
        }
    }
    ck_assert(t.eof);
    ck_assert_uint_eq(n, 4);
    mv_tasks_close(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mv_tasks_free(&t);
}
END_TEST

START_TEST(missing_file_is_an_error)
{
    uv_loop_t loop;
    mv_tasks_t t;

    uv_loop_init(&loop);
    ck_assert_int_eq(mv_tasks_open(&t, &loop, "/nonexistent/tasks.txt", 100, 10, noop_cb, NULL),
                     -ENOENT);
    mv_tasks_free(&t);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* ---- results ---- */

static const char *jstr_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    ck_assert_msg(s != NULL, "no string %s", key);
    return s;
}

static json_t *encode(const mv_result_t *r)
{
    mv_buf_t b = {0};
    json_error_t e;
    json_t *j;

    ck_assert_int_eq(mv_results_encode(r, &b), 0);
    ck_assert_ptr_null(memchr(b.data, '\n', b.len)); /* one line */
    j = json_loadb((const char *)b.data, b.len, 0, &e);
    ck_assert_msg(j != NULL, "invalid JSON: %s", e.text);
    mv_buf_free(&b);
    return j;
}

/* A results job keeps one object from line to line and overwrites its values: every line
 * must be the text a fresh object makes of the same result, byte for byte, whatever came
 * before it (another shape, nulls where integers were, text jansson refuses, a NaN). */
START_TEST(a_kept_object_encodes_what_a_fresh_one_does)
{
    static const mv_attempt_t hist[1] = {
        {.reason = MV_R_CRASH, .slot = 1, .pid = 9, .status = -9, .peak = 100, .limit = 200}};
    static const uint8_t binary[] = {0xff, 0x00, 0xc3};
    mv_buf_t fresh = {0}, kept = {0};
    json_t *keep = NULL;
    int kinds_left_out = 0;

    for (int i = 0; i < 512; i++) {
        mv_result_t r = {.task = (uint64_t)i * 7919,
                         .status = i % 11 == 3 ? MV_ST_FAILED : MV_ST_OK,
                         .attempts = 1 + (i % 13 == 5),
                         .slot = i % 17 == 1 ? 0 : 1 + i % 2,
                         .gen = (uint32_t)(i % 19 == 2 ? 0 : i / 3),
                         .pid = i % 23 == 4 ? 0 : 1000 + i,
                         .measured = i % 7 != 6,
                         .mem_before = 1 << 20,
                         .mem_after = (1 << 20) + i * 65536LL,
                         .mem_peak = 1 << 22,
                         .retained = i * 65536LL - (i % 5 == 0 ? 1LL << 40 : 0),
                         .peak_source = i % 29 == 7 ? NULL
                                        : i % 2     ? "kernel"
                                                    : "sampled",
                         .fds_before = i % 31 == 8 ? -1 : 4,
                         .fds_after = 4 + i % 3,
                         .heap = {.measured = i % 3 != 0,
                                  .source = i % 37 == 9 ? "\xff" : "preload",
                                  .before = 1000,
                                  .after = 1000 + i,
                                  .blocks = i % 4 == 1 ? INT64_MIN : i,
                                  .allocs = i % 6 == 2 ? -1 : i,
                                  .frees = i % 8 == 3 ? -1 : i / 2},
                         .duration_ms = i % 41 == 10 ? NAN : i * 0.0137,
                         .started_us = i % 43 == 11 ? 0 : 1764900000000000LL + i,
                         .ended_us = 1764900000000123LL + i * 1000003LL,
                         .payload = i % 9 == 4 ? (const void *)binary : "a5\"\\\n\xc3\xa9",
                         .len = i % 9 == 4 ? sizeof binary : 7,
                         .hist = hist,
                         .nhist = i % 47 == 12,
                         .kind = i % 10 == 0    ? NULL
                                 : i % 53 == 13 ? "bad\xc3"
                                                : "parse",
                         .mem_limit = i % 2 ? 128 << 20 : 0,
                         .escalations = (unsigned)(i % 59 == 14)};
        const char *host = i % 61 == 15 ? "h1" : NULL, *consumer = i % 67 == 16 ? "c" : NULL;

        mv_buf_reset(&fresh);
        mv_buf_reset(&kept);
        ck_assert_int_eq(mv_results_encode_at(&r, host, consumer, &fresh), 0);
        ck_assert_int_eq(mv_results_encode_into(&keep, &r, host, consumer, &kept), 0);
        ck_assert_ptr_nonnull(keep);
        ck_assert_msg(fresh.len == kept.len && memcmp(fresh.data, kept.data, fresh.len) == 0,
                      "line %d differs:\n%.*s\n%.*s", i, (int)fresh.len, (const char *)fresh.data,
                      (int)kept.len, (const char *)kept.data);
        kinds_left_out += memmem(kept.data, kept.len, "\"kind\"", 6) == NULL;
    }
    /* the kind that is not UTF-8 is left out, as jansson leaves it */
    ck_assert_int_gt(kinds_left_out, 0);
    json_decref(keep);
    mv_buf_free(&fresh);
    mv_buf_free(&kept);
}
END_TEST

START_TEST(result_line_has_every_field)
{
    mv_result_t r = {.task = 7,
                     .status = MV_ST_OK,
                     .attempts = 1,
                     .slot = 2,
                     .pid = 1234,
                     .measured = true,
                     .mem_before = 1000,
                     .mem_after = 3000,
                     .mem_peak = 9000,
                     .retained = 2000,
                     .peak_source = "kernel",
                     .fds_before = 5,
                     .fds_after = 6,
                     .duration_ms = 1.5,
                     .payload = "hello",
                     .len = 5};
    json_t *j = encode(&r);

    ck_assert_int_eq(json_integer_value(json_object_get(j, "task")), 7);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "worker")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pid")), 1234);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mem_before")), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mem_after")), 3000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mem_peak")), 9000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "retained")), 2000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "fds_after")), 6);
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "duration_ms")), 1.5, 1e-9);
    ck_assert_str_eq(json_string_value(json_object_get(j, "result")), "hello");
    ck_assert_ptr_null(json_object_get(j, "error"));
    json_decref(j);
}
END_TEST

/* started/ended: the wall clock in ISO 8601 UTC with microseconds; gen: the worker's
 * generation; all three null for a task that never reached a worker. */
START_TEST(result_line_has_times_and_generation)
{
    /* 2026-11-21T16:00:00.000123Z, and the same time one second and 5 µs later. */
    mv_result_t r = {.task = 3,
                     .status = MV_ST_OK,
                     .attempts = 1,
                     .slot = 1,
                     .gen = 7,
                     .pid = 99,
                     .started_us = INT64_C(1795276800000123),
                     .ended_us = INT64_C(1795276801000128)};
    mv_result_t never = {.task = 4, .status = MV_ST_FAILED, .ended_us = INT64_C(1795276800000000)};
    json_t *j = encode(&r);
    char iso[48];

    ck_assert_str_eq(jstr_of(j, "started"), "2026-11-21T16:00:00.000123Z");
    ck_assert_str_eq(jstr_of(j, "ended"), "2026-11-21T16:00:01.000128Z");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "gen")), 7);
    json_decref(j);
    j = encode(&never);
    ck_assert(json_is_null(json_object_get(j, "started")));
    ck_assert(json_is_null(json_object_get(j, "gen")));
    ck_assert_str_eq(jstr_of(j, "ended"), "2026-11-21T16:00:00.000000Z");
    json_decref(j);
    /* The formatter alone: the epoch, and a time before it (floored, fraction positive). */
    mv_iso_time_us(0, iso);
    ck_assert_str_eq(iso, "1970-01-01T00:00:00.000000Z");
    mv_iso_time_us(-1, iso);
    ck_assert_str_eq(iso, "1969-12-31T23:59:59.999999Z");
    /* The same text as gmtime_r and strftime give, over centuries either side of 1970
     * (leap years, century rules, month ends), to the microsecond. */
    for (int64_t us = -INT64_C(2208988800000000); us < INT64_C(4102444800000000);
         us += INT64_C(86399999997) + us % 7) {
        time_t t = (time_t)(us / 1000000 - (us % 1000000 < 0));
        struct tm tm;
        char want[64];
        size_t n;

        ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
        n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof want - n, ".%06dZ", (int)(us - (int64_t)t * 1000000));
        mv_iso_time_us(us, iso);
        ck_assert_str_eq(iso, want);
    }
    /* The wall clock agrees with time(2) (same second or the next). */
    ck_assert_int_le(llabs(mv_wall_us() / 1000000 - (long long)time(NULL)), 1);
}
END_TEST

START_TEST(any_payload_bytes_survive_in_json)
{
    static const char bin[] = "ok\xff\xc0\x80\0tail\"\\\n";
    mv_result_t r = {.task = 1, .status = MV_ST_FAILED, .payload = bin, .len = sizeof bin - 1};
    json_t *j = encode(&r);
    const char *b64 = json_string_value(json_object_get(j, "error_base64"));
    char *want = mv_base64(bin, sizeof bin - 1);

    ck_assert_ptr_nonnull(b64);
    ck_assert_str_eq(b64, want);
    ck_assert(json_is_null(json_object_get(j, "worker"))); /* never ran */
    ck_assert(json_is_null(json_object_get(j, "mem_before")));
    free(want);
    json_decref(j);
}
END_TEST

START_TEST(a_megabyte_of_text_and_control_chars)
{
    size_t n = 1 << 20;
    char *big = malloc(n);
    mv_result_t r = {.task = 1, .status = MV_ST_OK};
    json_t *j;

    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i % 95 == 0 ? '\t' : ' ' + (char)(i % 95));
    r.payload = big;
    r.len = n;
    j = encode(&r);
    ck_assert_uint_eq(json_string_length(json_object_get(j, "result")), n);
    ck_assert_mem_eq(json_string_value(json_object_get(j, "result")), big, n);
    json_decref(j);
    free(big);
}
END_TEST

START_TEST(quarantine_lists_every_attempt)
{
    mv_attempt_t h[3] = {{MV_R_CRASH, 1, 10, -11, -1, 0, ""},
                         {MV_R_HARD_LIMIT, 2, 20, -9, 5 << 20, 4 << 20, ""},
                         {MV_R_CRASH, 1, 30, 3, -1, 0, ""}};
    mv_result_t r = {.task = 9,
                     .status = MV_ST_QUARANTINED,
                     .attempts = 3,
                     .hist = h,
                     .nhist = 3,
                     .payload = "quarantined",
                     .len = 11,
                     .mem_limit = 8 << 20,
                     .escalations = 1};
    json_t *j = encode(&r), *a;

    a = json_object_get(j, "attempt_errors");
    ck_assert_uint_eq(json_array_size(a), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "reason")),
                     "hard_limit");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "signal")), 11);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 2), "exit")), 3);
    /* the limit each attempt ran under, when it had one (an escalation raised it after) */
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 1), "mem_limit")),
                     4 << 20);
    ck_assert_ptr_null(json_object_get(json_array_get(a, 0), "mem_limit"));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mem_limit")), 8 << 20);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "escalations")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "quarantined");
    json_decref(j);
    /* never ran, never escalated: null, and no escalations field */
    r.mem_limit = 0;
    r.escalations = 0;
    j = encode(&r);
    ck_assert(json_is_null(json_object_get(j, "mem_limit")));
    ck_assert_ptr_null(json_object_get(j, "escalations"));
    json_decref(j);
}
END_TEST

static void keep_alive_cb(uv_timer_t *t)
{
    (void)t;
}

/* Results to a pipe (a reader that waits for each line, like memvisor.Pool): a result goes
 * out at the next loop iteration, not at the 100 ms flush; to a regular file, it waits. */
static void results_after_one_iteration(const char *path, int rfd, bool stream)
{
    mv_result_t res = {.task = 3, .status = MV_ST_OK, .payload = "x", .len = 1};
    uv_loop_t loop;
    uv_timer_t alive; /* the results' own timer does not keep a loop alive, as a worker does */
    mv_results_t r;
    char buf[512], why[256];
    ssize_t n;

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &alive);
    uv_timer_start(&alive, keep_alive_cb, 60000, 0);
    ck_assert_int_eq(
        mv_results_open(&r, &loop, &(mv_results_opts_t){.path = path}, why, sizeof why), 0);
    ck_assert(r.stream == stream);
    ck_assert_int_eq(mv_results_add(&r, &res), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (stream) {
        /* The job started in that iteration; it may even be done. Wait for it. */
        n = read(rfd, buf, sizeof buf - 1);
        ck_assert(r.working || n > 0);
        while (r.working)
            uv_run(&loop, UV_RUN_ONCE);
        if (n <= 0)
            n = read(rfd, buf, sizeof buf - 1);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        ck_assert_ptr_nonnull(strstr(buf, "{\"task\":3,\"status\":\"ok\""));
        ck_assert_int_eq(buf[n - 1], '\n');
    } else {
        ck_assert(!r.working);
    }
    mv_results_close(&r, NULL);
    uv_close((uv_handle_t *)&alive, NULL);
    while (uv_run(&loop, UV_RUN_ONCE))
        ;
    mv_results_free(&r);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

START_TEST(results_to_a_pipe_go_out_at_once)
{
    char path[64];
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    results_after_one_iteration(path, p[0], true);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(results_to_a_file_wait_for_the_flush)
{
    char path[] = "/tmp/mv-results-XXXXXX";
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    results_after_one_iteration(path, fd, false);
    close(fd);
    unlink(path);
}
END_TEST

/* A batch whose text is many slices (3,000 results added within one loop pass: they pile up
 * while the first job runs, then go as one batch): every line whole in the file, once, in
 * order. */
START_TEST(a_batch_of_many_slices_is_written_whole_and_in_order)
{
    enum { N = 3000 };
    char path[] = "/tmp/mv-results-XXXXXX", why[256], *line = NULL;
    int fd = mkstemp(path);
    uv_loop_t loop;
    mv_results_t r;
    size_t cap = 0;
    FILE *f;
    int n = 0;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(
        mv_results_open(&r, &loop, &(mv_results_opts_t){.path = path}, why, sizeof why), 0);
    for (int i = 1; i <= N; i++) {
        char payload[64];
        int len = snprintf(payload, sizeof payload, "result of task %d", i);
        mv_result_t res = {
            .task = (uint64_t)i, .status = MV_ST_OK, .payload = payload, .len = (size_t)len};
        ck_assert_int_eq(mv_results_add(&r, &res), 0);
    }
    mv_results_close(&r, NULL);
    while (uv_run(&loop, UV_RUN_ONCE))
        ;
    ck_assert_uint_eq(r.written, N);
    f = fopen(path, "r");
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        char want[64];
        n++;
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "task")), n);
        snprintf(want, sizeof want, "result of task %d", n);
        ck_assert_str_eq(json_string_value(json_object_get(j, "result")), want);
        json_decref(j);
    }
    ck_assert_int_eq(n, N);
    free(line);
    fclose(f);
    mv_results_free(&r);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    unlink(path);
}
END_TEST

/* The buffers' sizes (bench/footprint): results added one at a time, each job done before
 * the next, keep the batches and the text at 16 KiB (a batch used to double to 32 KiB at each
 * flush); a burst grows them and they are back to 16 KiB once it is written; every line is in
 * the file. */
START_TEST(results_buffers_stay_small_and_shrink_after_a_burst)
{
    enum { N = 2000 };
    char path[] = "/tmp/mv-results-XXXXXX", why[256];
    int fd = mkstemp(path);
    uv_loop_t loop;
    mv_results_t r;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(
        mv_results_open(&r, &loop, &(mv_results_opts_t){.path = path}, why, sizeof why), 0);
    for (int i = 1; i <= 2 * N; i++) {
        char payload[64];
        int len = snprintf(payload, sizeof payload, "result of task %d", i);
        mv_result_t res = {
            .task = (uint64_t)i, .status = MV_ST_OK, .payload = payload, .len = (size_t)len};
        ck_assert_int_eq(mv_results_add(&r, &res), 0);
        if (i > N) /* the second half is a burst: nothing is written until it is all in */
            continue;
        while (r.working)
            uv_run(&loop, UV_RUN_ONCE);
        ck_assert_uint_le(r.pending.cap, 16384);
        ck_assert_uint_le(r.batch.cap, 16384);
        ck_assert_uint_le(r.lines.cap, 16384);
    }
    ck_assert(r.working);
    ck_assert_uint_gt(r.pending.cap, 16384);
    while (r.working)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_uint_le(r.batch.cap, 16384);
    ck_assert_uint_le(r.lines.cap, 16384);
    mv_results_close(&r, NULL);
    while (uv_run(&loop, UV_RUN_ONCE))
        ;
    ck_assert_int_eq(r.error, 0);
    ck_assert_uint_eq(r.written, 2 * N);
    ck_assert_uint_le(r.pending.cap, 16384);
    ck_assert_uint_le(r.batch.cap, 16384);
    mv_results_free(&r);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    unlink(path);
}
END_TEST

/* ---- util and meter ---- */

START_TEST(utf8_rules)
{
    ck_assert(mv_utf8_valid("plain ascii", 11));
    ck_assert(mv_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    ck_assert(!mv_utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    ck_assert(!mv_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!mv_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!mv_utf8_valid("\xe2\x82", 2));         /* truncated */
    /* ASCII runs are read 8 bytes at a time: a bad byte (or a good sequence) anywhere after
     * or inside a run, at every offset, and the ragged end. */
    for (size_t len = 1; len <= 40; len++)
        for (size_t at = 0; at < len; at++) {
            char text[48];

            memset(text, 'a', len);
            text[at] = '\xff';
            ck_assert_msg(!mv_utf8_valid(text, len), "0xff at %zu of %zu", at, len);
            text[at] = 'b';
            ck_assert(mv_utf8_valid(text, len));
            if (at + 2 <= len) {
                memcpy(text + at, "\xc3\xa9", 2);
                ck_assert(mv_utf8_valid(text, len));
                ck_assert(!mv_utf8_valid(text, at + 1)); /* cut inside the sequence */
            }
        }
    mv_buf_t b = {0};
    ck_assert_int_eq(mv_utf8_sanitize("a\xffz", 3, &b), 0);
    ck_assert_uint_eq(b.len, 5);
    ck_assert_mem_eq(b.data, "a\xef\xbf\xbdz", 5);
    mv_buf_free(&b);
}
END_TEST

START_TEST(base64_vectors)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

    for (int i = 0; i < 7; i++) {
        char *s = mv_base64(in[i], strlen(in[i]));
        ck_assert_str_eq(s, out[i]);
        free(s);
    }
}
END_TEST

#ifndef __SANITIZE_ADDRESS__
/* This process's resident bytes, from /proc/self/statm. */
static long resident_bytes(void)
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &rss), 2);
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}
#endif

/* mv_lean_trim gives back the pages of free chunks inside the heap (below a live block, so
 * glibc's own trimming of the heap's top cannot): 4 MiB freed there stay resident until then.
 * AddressSanitizer has its own allocator, which malloc_trim does not reach. */
START_TEST(lean_trim_gives_free_heap_pages_back)
{
#ifndef __SANITIZE_ADDRESS__
    enum { N = 65, SIZE = 64 * 1024 };
    char *block[N];
    long before, after;

    for (int i = 0; i < N; i++) {
        block[i] = malloc(SIZE); /* below the mmap threshold: in the heap, one after another */
        ck_assert_ptr_nonnull(block[i]);
        memset(block[i], 1, SIZE);
    }
    /* The last one stays: the others are free chunks below it, not the heap's top. */
    for (int i = 0; i < N - 1; i++)
        free(block[i]);
    before = resident_bytes();
    mv_lean_trim();
    after = resident_bytes();
    ck_assert_msg(before - after >= 2 * 1024 * 1024, "resident %ld -> %ld", before, after);
    free(block[N - 1]);
#endif
}
END_TEST

START_TEST(statm_parsing_and_a_real_reading)
{
    int64_t rss, priv;
    mv_meter_t m;
    mv_reading_t r;

    ck_assert_int_eq(mv_meter_parse_statm("619 409 383 1 0 89 0\n", 4096, &rss, &priv), 0);
    ck_assert_int_eq(rss, 409 * 4096);
    ck_assert_int_eq(priv, 26 * 4096);
    ck_assert_int_eq(mv_meter_parse_statm("garbage", 4096, &rss, &priv), -EINVAL);
    ck_assert_int_eq(mv_meter_open(&m, getpid(), NULL, 0), 0);
    ck_assert_int_eq(mv_meter_read(&m, &r), 0);
    ck_assert_int_gt(r.rss, 0);
    ck_assert_int_gt(r.priv, 0);
    ck_assert_int_le(r.priv, r.rss);
    ck_assert_int_eq(r.peak, -1);
    int before = r.fds;
    int fd = open("/dev/null", O_RDONLY);
    ck_assert_int_eq(mv_meter_fds(&m), before + 1);
    close(fd);
    mv_meter_close(&m);
    ck_assert_int_eq(mv_meter_open(&m, 999999999, NULL, 0), -ENOENT);
}
END_TEST

/* The process's own peak: VmHWM parsed from status text, and reset by clear_refs to about
 * the current resident size once 32 MiB touched and freed raised it. */
START_TEST(the_process_high_water_mark_resets)
{
    const size_t big = 32u << 20;
    int64_t b = 0, high, low;
    mv_meter_t m;
    mv_reading_t r;
    char *p;

    ck_assert_int_eq(mv_meter_parse_hwm("Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t  1234 kB\n", &b), 0);
    ck_assert_int_eq(b, 1234 * 1024);
    ck_assert_int_eq(mv_meter_parse_hwm("Name:\tkthreadd\nState:\tS\n", &b), -EINVAL);
    ck_assert_int_eq(mv_meter_parse_hwm("Name:\tx\nVmHWM:\t  12 MB\n", &b), -EINVAL);
    ck_assert_int_eq(mv_meter_parse_hwm("Name:\tx\nVmHWM:\t\n", &b), -EINVAL);

    ck_assert_int_eq(mv_meter_open(&m, getpid(), NULL, 0), 0);
    p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    memset(p, 1, big);
    munmap(p, big);
    high = mv_meter_hwm(&m);
    ck_assert_int_eq(mv_meter_read(&m, &r), 0);
    ck_assert_int_ge(high, r.rss + (int64_t)big - (1 << 20));
    ck_assert_int_eq(mv_meter_reset_hwm(&m), 0);
    low = mv_meter_hwm(&m);
    ck_assert_int_lt(low, r.rss + (1 << 20));
    mv_meter_close(&m);
}
END_TEST

/* A zombie has no fds: "unknown" (-1), whether they are counted by st_size (>= 6.2) or by
 * listing the directory (older kernels: a 6.1 guest of make check-v2 found it said 0). */
START_TEST(a_zombie_has_no_fd_count)
{
    int go[2];
    char c, path[64], stat[256];
    mv_meter_t m;
    pid_t pid;

    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(go[1]);
        _exit(read(go[0], &c, 1) == 1 ? 0 : 1);
    }
    close(go[0]);
    ck_assert_int_eq(mv_meter_open(&m, pid, NULL, 0), 0);
    ck_assert_int_gt(mv_meter_fds(&m), 0);
    m.fd_count_by_stat = false;
    ck_assert_int_gt(mv_meter_fds(&m), 0);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    /* Not reaped: wait until it is a zombie. */
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(path, "r");
        char *p = f && fgets(stat, sizeof stat, f) ? strrchr(stat, ')') : NULL;
        if (f)
            fclose(f);
        if (p && p[2] == 'Z')
            break;
        usleep(1000);
    }
    ck_assert_int_eq(mv_meter_fds(&m), -1); /* by listing the directory */
    mv_meter_close(&m);
    ck_assert_int_eq(mv_meter_open(&m, pid, NULL, 0), 0);
    ck_assert_int_eq(mv_meter_fds(&m), -1);
    mv_meter_close(&m);
    close(go[1]);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

Suite *tasks_suite(void)
{
    Suite *s = suite_create("tasks");
    TCase *tc = tcase_create("splitter");
    TCase *src = tcase_create("sources");
    TCase *res = tcase_create("results");
    TCase *misc = tcase_create("util");

    tcase_add_test(tc, lines_become_tasks_with_line_numbers);
    tcase_add_test(tc, take_the_first_task_a_filter_accepts);
    tcase_add_test(tc, any_bytes_survive);
    tcase_add_test(tc, crlf_line_ends_lose_their_cr);
    tcase_add_test(tc, too_long_lines_become_failed_tasks);
    tcase_add_test(tc, requeue_goes_first_and_attempts_are_recorded);
    tcase_add_test(tc, a_retry_goes_behind_the_queued_tasks);
    tcase_set_timeout(src, 20);
    tcase_add_test(src, file_source_streams_through_the_loop);
    tcase_add_test(src, a_file_is_queued_only_to_twice_read_ahead);
    tcase_add_test(src, stdin_pipe_source_with_backpressure);
    tcase_add_test(src, missing_file_is_an_error);
    tcase_add_test(src, a_source_takes_back_what_lost_an_attempt_and_hears_each_end);
    tcase_set_timeout(res, 20); /* a hang guard: the clock check formats 73,000 days */
    tcase_add_test(res, result_line_has_every_field);
    tcase_add_test(res, a_kept_object_encodes_what_a_fresh_one_does);
    tcase_add_test(res, result_line_has_times_and_generation);
    tcase_add_test(res, any_payload_bytes_survive_in_json);
    tcase_add_test(res, a_megabyte_of_text_and_control_chars);
    tcase_add_test(res, quarantine_lists_every_attempt);
    tcase_add_test(res, results_to_a_pipe_go_out_at_once);
    tcase_add_test(res, results_to_a_file_wait_for_the_flush);
    tcase_add_test(res, a_batch_of_many_slices_is_written_whole_and_in_order);
    tcase_add_test(res, results_buffers_stay_small_and_shrink_after_a_burst);
    tcase_add_test(misc, utf8_rules);
    tcase_add_test(misc, base64_vectors);
    tcase_add_test(misc, statm_parsing_and_a_real_reading);
    tcase_add_test(misc, lean_trim_gives_free_heap_pages_back);
    tcase_add_test(misc, the_process_high_water_mark_resets);
    tcase_add_test(misc, a_zombie_has_no_fd_count);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, src);
    suite_add_tcase(s, res);
    suite_add_tcase(s, misc);
    return s;
}
