/*
 * channel: one worker's conversation, with no pool and no worker around it. The api cases
 * play the worker on the child's end of a real socketpair (and of the output pipe); the
 * lines cases start a real `cat`, which answers every task line with itself. Every event
 * the channel raises is recorded as one line of text, so each test reads as a transcript.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "channel.h"
#include "proto_util.h"
#include "suites.h"

typedef struct rec {
    mv_chan_t c;
    char log[8192]; /* one line per event */
    size_t len;
    int errors, eofs, closed, reads;
    bool close_on_answer; /* an owner that closes the channel from inside an event */
} rec_t;

static uv_loop_t loop;

static void note(rec_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(rec_t *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    r->len += (size_t)vsnprintf(r->log + r->len, sizeof r->log - r->len, fmt, ap);
    va_end(ap);
    ck_assert_uint_lt(r->len, sizeof r->log - 1);
}

static void ev_hello(void *o, uint32_t v)
{
    note(o, "hello %u\n", (unsigned)v);
}

static void ev_answer(void *o, uint64_t id, bool ok, const uint8_t *kind, size_t kl, const void *p,
                      size_t n)
{
    rec_t *r = o;

    note(r, "%s %llu [%.*s] %.*s\n", ok ? "done" : "fail", (unsigned long long)id,
         kind ? (int)kl : 1, kind ? (const char *)kind : "-", (int)n, (const char *)p);
    if (r->c.heap_fresh > 0)
        note(r, "heap %lld %lld\n", (long long)r->c.heap.live_bytes, (long long)r->c.heap.blocks);
    if (r->close_on_answer)
        mv_chan_close(&r->c);
}

static void ev_begin(void *o, uint64_t id, const uint8_t *kind, size_t kl)
{
    note(o, "begin %llu [%.*s]\n", (unsigned long long)id, (int)kl, (const char *)kind);
}

static void ev_end(void *o, uint64_t id, uint32_t status)
{
    note(o, "end %llu %u\n", (unsigned long long)id, (unsigned)status);
}

static void ev_snapshot(void *o, const uint8_t *p, size_t n)
{
    note(o, "snapshot %.*s\n", (int)n, (const char *)p);
}

static void ev_output(void *o, const char *stream, const void *line, size_t n)
{
    note(o, "%s %zu %.*s\n", stream, n, (int)MV_MIN(n, 20), (const char *)line);
}

static void ev_error(void *o, const char *what)
{
    rec_t *r = o;

    r->errors++;
    note(r, "error %s\n", what);
}

static void ev_eof(void *o)
{
    rec_t *r = o;

    r->eofs++;
    note(r, "eof\n");
}

static void ev_closed(void *o)
{
    ((rec_t *)o)->closed++;
}

/* A read of the conversation handled: counted, not noted (the transcripts stay the same). */
static void ev_read(void *o)
{
    ((rec_t *)o)->reads++;
}

static const mv_chan_events_t events = {ev_hello,  ev_answer, ev_begin, ev_end,    ev_snapshot,
                                        ev_output, ev_error,  ev_eof,   ev_closed, ev_read};

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* An api channel whose worker end (socket, output pipe) the test holds. */
static void api_open(rec_t *r, bool service, uint32_t max, int *sock, int *out)
{
    mv_chan_opts_t o = {MV_PROTO_API, max, "", service};
    mv_chan_stdio_t io;
    const char *call;

    memset(r, 0, sizeof *r);
    mv_chan_init(&r->c, &loop, &o, &events, r);
    ck_assert_int_eq(mv_chan_prepare(&r->c, &io), 0);
    ck_assert_int_ge(io.api_fd, 0);
    *sock = dup(io.api_fd);
    *out = dup(io.st[2].data.fd);
    mv_chan_spawned(&r->c);
    ck_assert_int_eq(mv_chan_start(&r->c, &call), 0);
}

/* Closes the channel and runs the loop until everything it (and a child) had is closed. */
static void finish(rec_t *r)
{
    mv_chan_close(&r->c);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r->closed, 1);
}

/* Runs the loop until the transcript holds `want` (the case's timeout ends a hang). */
static void until(rec_t *r, const char *want)
{
    while (!strstr(r->log, want))
        uv_run(&loop, UV_RUN_ONCE);
}

static void put(int fd, uint16_t type, uint16_t flags, uint64_t id, const void *p, size_t n)
{
    uint8_t buf[256];
    size_t len = enc(buf, type, flags, id, p, n);

    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
}

static void hello(int fd)
{
    struct mvw_hello h = {MVW_PROTOCOL_VERSION, 0};

    put(fd, MVW_MSG_HELLO, 0, 0, &h, sizeof h);
}

/* Reads what the channel sent to the worker's end; n bytes exactly. */
static void expect_sent(int fd, uint16_t type, uint64_t id, const char *payload)
{
    uint8_t buf[256];
    struct mvw_msg m;
    size_t got = 0;
    long used = 0;

    while ((used = mvw_decode(buf, got, 1024, MVW_FROM_SUPERVISOR, &m)) == 0) {
        ssize_t k;
        uv_run(&loop, UV_RUN_NOWAIT);
        k = read(fd, buf + got, sizeof buf - got);
        if (k > 0)
            got += (size_t)k;
    }
    ck_assert_int_gt(used, 0);
    ck_assert_uint_eq(m.h.type, type);
    ck_assert_uint_eq(m.h.task, id);
    ck_assert_uint_eq(m.h.length, strlen(payload));
    ck_assert_int_eq(memcmp(m.payload, payload, m.h.length), 0);
}

START_TEST(api_conversation)
{
    rec_t r;
    int sock, out;
    uint8_t kinded[16] = {5, 'p', 'a', 'r', 's', 'e', 'o', 'k'};

    api_open(&r, false, 1024, &sock, &out);
    hello(sock);
    until(&r, "hello 2\n");
    /* A task goes out as one TASK frame. */
    ck_assert_int_eq(mv_chan_send_task(&r.c, 7, "work 7", 6), 0);
    mv_chan_flush(&r.c);
    expect_sent(sock, MVW_MSG_TASK, 7, "work 7");
    put(sock, MVW_MSG_DONE, MVW_F_KIND, 7, kinded, 8);
    put(sock, MVW_MSG_FAIL, 0, 8, "bad", 3);
    until(&r, "fail 8");
    ck_assert_str_eq(r.log, "hello 2\ndone 7 [parse] ok\nfail 8 [-] bad\n");
    /* A snapshot request, and its answer. */
    ck_assert(mv_chan_can_snapshot(&r.c));
    ck_assert_int_eq(mv_chan_ask_snapshot(&r.c), 0);
    expect_sent(sock, MVW_MSG_SNAPSHOT, 0, "");
    put(sock, MVW_MSG_SNAPSHOT, 0, 0, "{}", 2);
    until(&r, "snapshot {}\n");
    /* STOP goes out once, however often it is asked for. */
    mv_chan_send_stop(&r.c);
    mv_chan_send_stop(&r.c);
    expect_sent(sock, MVW_MSG_STOP, 0, "");
    ck_assert_int_eq(mv_chan_send_task(&r.c, 9, "next", 4), 0);
    mv_chan_flush(&r.c);
    expect_sent(sock, MVW_MSG_TASK, 9, "next"); /* not a second STOP */
    /* Output lines, whatever the protocol, cut at newlines. */
    ck_assert_int_eq(write(out, "one\ntw", 6), 6);
    ck_assert_int_eq(write(out, "o\n", 2), 2);
    until(&r, "output 3 two\n");
    close(sock);
    until(&r, "eof\n");
    ck_assert_int_eq(r.errors, 0);
    close(out);
    finish(&r);
}
END_TEST

/* The flags of the next message the channel sent to the worker's end. */
static uint16_t sent_flags(int fd)
{
    uint8_t buf[256];
    struct mvw_msg m = {{0, 0, 0, 0}, NULL};
    size_t got = 0;

    while (mvw_decode(buf, got, 1024, MVW_FROM_SUPERVISOR, &m) == 0) {
        ssize_t k;
        uv_run(&loop, UV_RUN_NOWAIT);
        k = read(fd, buf + got, sizeof buf - got);
        if (k > 0)
            got += (size_t)k;
    }
    return m.h.flags;
}

/* Version 2: TASKs ask for a collection when the owner says so; answers carry the worker's
 * heap figures. A version-1 worker gets no such flag and may send no figures. */
/* A big answer's heap figures at its end (MVW_F_HEAP_LATE): taken from there once GO allowed
 * them (the worker's HELLO said it can: worker.c sets heap_late), a protocol error before. */
START_TEST(api_v2_late_heap_figures)
{
    struct mvw_hello late = {MVW_PROTOCOL_VERSION, MVW_HELLO_HEAP_LATE};
    struct mvw_heap h = {5000, 12};
    uint8_t p[64];
    rec_t r;
    int sock, out;

    p[0] = 1;
    p[1] = 'k';
    memcpy(p + 2, "ok", 2);
    memcpy(p + 4, &h, sizeof h);
    for (int allowed = 1; allowed >= 0; allowed--) {
        api_open(&r, false, 1024, &sock, &out);
        put(sock, MVW_MSG_HELLO, 0, 0, &late, sizeof late);
        until(&r, "hello 2\n");
        ck_assert_uint_eq(r.c.hello_flags, MVW_HELLO_HEAP_LATE);
        r.c.heap_late = allowed;
        ck_assert_int_eq(mv_chan_send_task(&r.c, 1, "a", 1), 0);
        mv_chan_flush(&r.c);
        put(sock, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP | MVW_F_HEAP_LATE, 1, p, 4 + sizeof h);
        if (allowed) {
            until(&r, "heap 5000 12");
            ck_assert_str_eq(r.log, "hello 2\ndone 1 [k] ok\nheap 5000 12\n");
        } else {
            until(&r, "error bad heap figures");
        }
        close(sock);
        close(out);
        finish(&r);
    }
}
END_TEST

START_TEST(api_v2_collect_and_heap_figures)
{
    struct mvw_hello v1 = {1, 0};
    uint8_t p[64];
    struct mvw_heap h = {5000, 12};
    rec_t r;
    int sock, out;

    api_open(&r, false, 1024, &sock, &out);
    hello(sock);
    until(&r, "hello 2\n");
    ck_assert_int_eq(mv_chan_send_task(&r.c, 1, "a", 1), 0);
    mv_chan_flush(&r.c);
    ck_assert_uint_eq(sent_flags(sock), 0);
    r.c.collect = true;
    ck_assert_int_eq(mv_chan_send_task(&r.c, 2, "b", 1), 0);
    mv_chan_flush(&r.c);
    ck_assert_uint_eq(sent_flags(sock), MVW_F_COLLECT);
    p[0] = 1;
    p[1] = 'k';
    memcpy(p + 2, &h, sizeof h);
    memcpy(p + 2 + sizeof h, "ok", 2);
    put(sock, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP, 1, p, 2 + sizeof h + 2);
    put(sock, MVW_MSG_DONE, 0, 2, "no", 2);
    until(&r, "done 2");
    ck_assert_str_eq(r.log, "hello 2\ndone 1 [k] ok\nheap 5000 12\ndone 2 [-] no\n");
    close(sock);
    close(out);
    finish(&r);

    /* version 1: no collect flag, and figures are a protocol error */
    api_open(&r, false, 1024, &sock, &out);
    put(sock, MVW_MSG_HELLO, 0, 0, &v1, sizeof v1);
    until(&r, "hello 1\n");
    r.c.collect = true;
    ck_assert_int_eq(mv_chan_send_task(&r.c, 1, "a", 1), 0);
    mv_chan_flush(&r.c);
    ck_assert_uint_eq(sent_flags(sock), 0);
    put(sock, MVW_MSG_DONE, MVW_F_HEAP, 1, &h, sizeof h);
    until(&r, "error bad heap figures");
    close(sock);
    close(out);
    finish(&r);
}
END_TEST

START_TEST(api_byte_by_byte)
{
    rec_t r;
    int sock, out;
    uint8_t buf[64];
    size_t n;

    api_open(&r, false, 1024, &sock, &out);
    hello(sock);
    n = enc(buf, MVW_MSG_DONE, 0, 3, "split", 5);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(write(sock, buf + i, 1), 1);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    until(&r, "done 3 [-] split\n");
    close(sock);
    close(out);
    finish(&r);
}
END_TEST

START_TEST(service_begin_end)
{
    rec_t r;
    int sock, out;
    uint8_t k[8] = {3, 'G', 'E', 'T'};
    uint32_t status = 500;

    api_open(&r, true, 1024, &sock, &out);
    hello(sock);
    put(sock, MVW_MSG_BEGIN, MVW_F_KIND, 41, k, 4);
    put(sock, MVW_MSG_END, 0, 41, &status, sizeof status);
    until(&r, "end 41 500\n");
    ck_assert_str_eq(r.log, "hello 2\nbegin 41 [GET]\nend 41 500\n");
    close(sock);
    close(out);
    finish(&r);
}
END_TEST

/* Each protocol mistake: one error, then nothing more counts. */
static void one_mistake(bool service, void (*send)(int), const char *what)
{
    rec_t r;
    int sock, out;

    api_open(&r, service, 64, &sock, &out);
    send(sock);
    until(&r, "error ");
    ck_assert_msg(strstr(r.log, what), "got: %s", r.log);
    put(sock, MVW_MSG_DONE, 0, 1, "late", 4); /* after the error: ignored */
    close(sock);
    close(out);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.errors, 1);
    ck_assert_ptr_null(strstr(r.log, "late"));
    ck_assert(r.c.broken);
    ck_assert(!mv_chan_can_snapshot(&r.c));
    finish(&r);
}

static void two_hellos(int fd)
{
    hello(fd);
    hello(fd);
}

static void answer_first(int fd)
{
    put(fd, MVW_MSG_DONE, 0, 1, "x", 1);
}

static void begin_in_batch(int fd)
{
    uint8_t k[2] = {1, 'a'};

    hello(fd);
    put(fd, MVW_MSG_BEGIN, MVW_F_KIND, 1, k, 2);
}

static void unasked_snapshot(int fd)
{
    hello(fd);
    put(fd, MVW_MSG_SNAPSHOT, 0, 0, "{}", 2);
}

/* A header claiming more than the protocol's own cap (max_message only lowers it). */
static void too_long(int fd)
{
    uint8_t h[MVW_HEADER_SIZE];

    hello(fd);
    mvw_put_header(h, MVW_MSG_DONE, 0, 1, MVW_MAX_PAYLOAD + 1);
    ck_assert_int_eq(write(fd, h, sizeof h), (ssize_t)sizeof h);
}

/* A snapshot reply over max_message: not an answer, so not a task's to fail. */
static void long_snapshot(int fd)
{
    uint8_t big[100] = {0};

    hello(fd);
    put(fd, MVW_MSG_SNAPSHOT, 0, 0, big, sizeof big);
}

static void garbage(int fd)
{
    uint8_t junk[16] = {1, 0, 0, 0, 0xee, 0xee, 0, 0};

    ck_assert_int_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
}

static void bad_kind(int fd)
{
    uint8_t k[3] = {9, 'a', 'b'};

    hello(fd);
    put(fd, MVW_MSG_DONE, MVW_F_KIND, 1, k, 3);
}

START_TEST(api_mistakes)
{
    one_mistake(false, two_hellos, "second HELLO");
    one_mistake(false, answer_first, "answer before HELLO");
    one_mistake(false, begin_in_batch, "BEGIN/END outside service mode");
    one_mistake(false, unasked_snapshot, "not asked for");
    one_mistake(false, too_long, "longer than max_message");
    one_mistake(false, long_snapshot, "longer than max_message");
    one_mistake(false, garbage, "malformed message");
    one_mistake(true, bad_kind, "bad kind prefix");
}
END_TEST

/* An answer over max_message that the protocol allows is no broken worker: its bytes are
 * dropped as they come (here in three writes) and its task fails saying why; the next answer
 * is read as usual. Before, the channel broke: the worker was killed and the task retried. */
START_TEST(an_answer_over_max_message_fails_its_task_only)
{
    uint8_t m[MVW_HEADER_SIZE + 100];
    rec_t r;
    int sock, out;

    api_open(&r, false, 64, &sock, &out);
    hello(sock);
    memset(m, 'z', sizeof m);
    mvw_put_header(m, MVW_MSG_DONE, 0, 1, 100);
    ck_assert_int_eq(write(sock, m, 20), 20);
    until(&r, "hello");
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(write(sock, m + 20, 50), 50);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_ptr_null(strstr(r.log, "fail 1"));
    ck_assert_int_eq(write(sock, m + 70, sizeof m - 70), (ssize_t)(sizeof m - 70));
    put(sock, MVW_MSG_DONE, 0, 2, "ok", 2);
    until(&r, "done 2");
    ck_assert_msg(strstr(r.log, "fail 1 [-] its answer was 100 bytes, over [worker] max_message "
                                "(64 bytes), and was not kept: raise max_message or answer less\n"
                                "done 2 [-] ok\n"),
                  "got: %s", r.log);
    ck_assert_int_eq(r.errors, 0);
    ck_assert(!r.c.broken);
    close(sock);
    close(out);
    finish(&r);
}
END_TEST

START_TEST(a_failure_found_above_breaks_it_too)
{
    rec_t r;
    int sock, out;

    api_open(&r, false, 1024, &sock, &out);
    hello(sock);
    until(&r, "hello");
    mv_chan_fail(&r.c, "answer for task 9, expected 8");
    mv_chan_fail(&r.c, "again"); /* said once */
    put(sock, MVW_MSG_DONE, 0, 8, "x", 1);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_str_eq(r.log, "hello 2\nerror answer for task 9, expected 8\n");
    close(sock);
    close(out);
    finish(&r);
}
END_TEST

START_TEST(drain_reads_what_a_dead_worker_left)
{
    rec_t r;
    int sock, out;

    api_open(&r, false, 1024, &sock, &out);
    hello(sock);
    put(sock, MVW_MSG_DONE, 0, 1, "last words", 10);
    ck_assert_int_eq(write(out, "bye\n", 4), 4);
    close(sock);
    close(out);
    /* No loop pass: the answers are read by the drain, as when the exit comes first. */
    mv_chan_drain(&r.c);
    ck_assert_str_eq(r.log, "hello 2\ndone 1 [-] last words\noutput 3 bye\n");
    finish(&r);
}
END_TEST

START_TEST(closing_from_inside_an_event)
{
    rec_t r;
    int sock, out;

    api_open(&r, false, 1024, &sock, &out);
    r.close_on_answer = true;
    hello(sock);
    put(sock, MVW_MSG_DONE, 0, 1, "a", 1);
    put(sock, MVW_MSG_DONE, 0, 2, "b", 1);
    until(&r, "done 1");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_ptr_null(strstr(r.log, "done 2")); /* nothing after the close */
    ck_assert_int_eq(r.closed, 1);
    close(sock);
    close(out);

    /* The same from the failure of an answer over max_message, the next one in the read. */
    uint8_t m[MVW_HEADER_SIZE + 100];

    api_open(&r, false, 64, &sock, &out);
    r.close_on_answer = true;
    hello(sock);
    memset(m, 'z', sizeof m);
    mvw_put_header(m, MVW_MSG_DONE, 0, 1, 100);
    ck_assert_int_eq(write(sock, m, sizeof m), (ssize_t)sizeof m);
    put(sock, MVW_MSG_DONE, 0, 2, "b", 1);
    until(&r, "fail 1");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_ptr_null(strstr(r.log, "done 2"));
    ck_assert_int_eq(r.closed, 1);
    close(sock);
    close(out);
}
END_TEST

START_TEST(output_lines_are_bounded)
{
    rec_t r;
    int sock, out;
    static char big[40000];

    memset(big, 'x', sizeof big);
    api_open(&r, false, 1024, &sock, &out);
    ck_assert_int_eq(write(out, big, sizeof big), (ssize_t)sizeof big);
    close(out);
    until(&r, "output 7232 ");
    ck_assert_int_eq(strstr(r.log, "output 16384") != NULL, 1);
    ck_assert_str_eq(r.log, "output 16384 xxxxxxxxxxxxxxxxxxxx\n"
                            "output 16384 xxxxxxxxxxxxxxxxxxxx\n"
                            "output 7232 xxxxxxxxxxxxxxxxxxxx\n");
    close(sock);
    finish(&r);
}
END_TEST

/* ---- lines, against a real `cat` ---- */

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    uv_close((uv_handle_t *)p, NULL);
}

static void lines_spawn(rec_t *r, uint32_t max, uv_process_t *proc, char **args)
{
    mv_chan_opts_t o = {MV_PROTO_LINES, max, "FAIL:", false};
    mv_chan_stdio_t io;
    uv_process_options_t po = {0};
    const char *call;

    memset(r, 0, sizeof *r);
    mv_chan_init(&r->c, &loop, &o, &events, r);
    ck_assert_int_eq(mv_chan_prepare(&r->c, &io), 0);
    ck_assert_int_eq(io.api_fd, -1);
    po.file = args[0];
    po.args = args;
    po.stdio = io.st;
    po.stdio_count = 3;
    po.exit_cb = exit_cb;
    ck_assert_int_eq(uv_spawn(&loop, proc, &po), 0);
    mv_chan_spawned(&r->c);
    ck_assert_int_eq(mv_chan_start(&r->c, &call), 0);
}

static void lines_open(rec_t *r, uint32_t max, uv_process_t *proc)
{
    char *args[] = {"cat", NULL};

    lines_spawn(r, max, proc, args);
}

/* A lines worker's stdin and stdout are pipes, and what it has not read yet of its stdin is
 * seen (FIONREAD on our end: on the socketpairs libuv makes it said 0 whatever was queued). */
START_TEST(lines_stdio_are_pipes_and_unread_input_is_seen)
{
    char *args[] = {"sleep", "30", NULL};
    char path[64];
    struct stat st;
    rec_t r;
    uv_process_t proc;

    lines_spawn(&r, 1024, &proc, args);
    for (int fd = 0; fd <= 1; fd++) {
        snprintf(path, sizeof path, "/proc/%d/fd/%d", proc.pid, fd);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_msg(S_ISFIFO(st.st_mode), "fd %d of the worker is no pipe", fd);
    }
    ck_assert_uint_eq(mv_chan_input_pending(&r.c), 0);
    mv_chan_send_task(&r.c, 1, "unread", 6);
    mv_chan_flush(&r.c);
    ck_assert_uint_eq(mv_chan_input_pending(&r.c), 7); /* in the pipe, not in our buffer */
    ck_assert_int_eq(uv_process_kill(&proc, SIGKILL), 0);
    until(&r, "eof\n");
    finish(&r);
}
END_TEST

START_TEST(lines_conversation)
{
    rec_t r;
    uv_process_t proc;

    lines_open(&r, 1024, &proc);
    mv_chan_send_task(&r.c, 1, "first", 5);
    mv_chan_send_task(&r.c, 2, "FAIL:   broken", 14);
    mv_chan_send_task(&r.c, 3, "a\rb\0c", 5);
    mv_chan_flush(&r.c);
    until(&r, "done 0 [-] a\rb");
    ck_assert_int_eq(memcmp(r.log, "done 0 [-] first\nfail 0 [-] broken\n", 35), 0);
    /* EOF on its stdin is the polite request to finish: cat exits, its stdout ends. */
    mv_chan_close_input(&r.c);
    until(&r, "eof\n");
    ck_assert_int_eq(r.errors, 0);
    finish(&r);
}
END_TEST

/* Runs the loop n passes without waiting. */
static void spin(int n)
{
    for (int i = 0; i < n; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

/* A lines channel to `cat` that answered one task ("one"). */
static void answered_once(rec_t *r, uv_process_t *proc)
{
    lines_open(r, 1024, proc);
    mv_chan_send_task(&r->c, 1, "one", 3);
    mv_chan_flush(&r->c);
    until(r, "done 0 [-] one\n");
}

/* Bytes waiting to be read from the worker's stdout. */
static int answers_waiting(rec_t *r)
{
    uv_os_fd_t fd;
    int n = 0;

    ck_assert_int_eq(uv_fileno((uv_handle_t *)&r->c.chan, &fd), 0);
    ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

/* A paused channel reads nothing (its answers wait in the pipe) until it reads on by itself;
 * then what waited comes in one read. A pause is not stacked, and not taken once reading is
 * over. */
START_TEST(a_pause_gathers_answers_into_one_read)
{
    rec_t r;
    uv_process_t proc;

    answered_once(&r, &proc);
    ck_assert_int_eq(r.reads, 1);
    ck_assert_int_eq(mv_chan_pause(&r.c, 1000), 0);
    ck_assert(r.c.paused);
    ck_assert_int_eq(mv_chan_pause(&r.c, 1), 0); /* paused already: the first pause stands */
    mv_chan_send_task(&r.c, 2, "two", 3);
    mv_chan_flush(&r.c);
    mv_chan_send_task(&r.c, 3, "three", 5);
    mv_chan_flush(&r.c);
    /* cat answers both; while paused they wait in the pipe, unread. */
    while (answers_waiting(&r) < 10)
        spin(1);
    spin(20);
    ck_assert_int_eq(r.reads, 1);
    ck_assert_str_eq(r.log, "done 0 [-] one\n");
    until(&r, "done 0 [-] three\n");
    ck_assert(!r.c.paused);
    ck_assert_int_eq(r.reads, 2); /* both in one read */
    ck_assert_str_eq(r.log, "done 0 [-] one\ndone 0 [-] two\ndone 0 [-] three\n");
    mv_chan_close_input(&r.c);
    until(&r, "eof\n");
    ck_assert_int_eq(mv_chan_pause(&r.c, 1000), 0); /* over: nothing to pause */
    ck_assert(!r.c.paused);
    ck_assert_int_eq(r.errors, 0);
    finish(&r);
}
END_TEST

/* Closing a paused channel closes its timer too (finish checks on_closed came once). */
START_TEST(closing_a_paused_channel)
{
    rec_t r;
    uv_process_t proc;

    answered_once(&r, &proc);
    ck_assert_int_eq(mv_chan_pause(&r.c, 60000), 0);
    mv_chan_close_input(&r.c);
    finish(&r);
}
END_TEST

START_TEST(lines_unterminated_and_over_max_message)
{
    rec_t r;
    uv_process_t proc;
    char big[200];

    lines_open(&r, 1024, &proc);
    /* cat echoes what it gets: a last line without its newline is an error at EOF. */
    ck_assert_int_eq(mv_chan_send(&r.c, 0, 0, NULL, 0), 0); /* 16 bytes, no newline */
    mv_chan_flush(&r.c);
    mv_chan_close_input(&r.c);
    until(&r, "error ");
    ck_assert_ptr_nonnull(strstr(r.log, "unterminated result line"));
    finish(&r);

    /* A line over max_message fails its task and the next one is read (it broke the
     * channel: the worker was killed, the task retried to fail again). */
    lines_open(&r, 100, &proc);
    memset(big, 'y', sizeof big);
    mv_chan_send_task(&r.c, 1, big, sizeof big);
    mv_chan_send_task(&r.c, 2, "next", 4);
    mv_chan_flush(&r.c);
    until(&r, "done 0 [-] next");
    ck_assert_msg(strstr(r.log, "fail 0 [-] its answer was 200 bytes, over [worker] max_message "
                                "(100 bytes)"),
                  "got: %s", r.log);
    ck_assert_int_eq(r.errors, 0);
    mv_chan_close_input(&r.c);
    finish(&r);
}
END_TEST

START_TEST(fed_input_without_a_process)
{
    rec_t r;
    mv_chan_opts_t o = {MV_PROTO_LINES, 64, "FAIL:", false};

    memset(&r, 0, sizeof r);
    mv_chan_init(&r.c, &loop, &o, &events, &r);
    mv_chan_input(&r.c, "x\ny", 3, false);
    mv_chan_input(&r.c, "z\n", 2, false);
    mv_chan_output(&r.c, "log", 3, true);
    ck_assert_str_eq(r.log, "done 0 [-] x\ndone 0 [-] yz\nstderr 3 log\n");
    mv_chan_close(&r.c); /* no handle was ever open: closed at once */
    ck_assert_int_eq(r.closed, 1);
    return;
}
END_TEST

Suite *channel_suite(void)
{
    Suite *s = suite_create("channel");
    TCase *tc = tcase_create("conversation");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, api_conversation);
    tcase_add_test(tc, api_byte_by_byte);
    tcase_add_test(tc, api_v2_collect_and_heap_figures);
    tcase_add_test(tc, api_v2_late_heap_figures);
    tcase_add_test(tc, service_begin_end);
    tcase_add_test(tc, api_mistakes);
    tcase_add_test(tc, an_answer_over_max_message_fails_its_task_only);
    tcase_add_test(tc, a_failure_found_above_breaks_it_too);
    tcase_add_test(tc, drain_reads_what_a_dead_worker_left);
    tcase_add_test(tc, closing_from_inside_an_event);
    tcase_add_test(tc, output_lines_are_bounded);
    tcase_add_test(tc, lines_conversation);
    tcase_add_test(tc, lines_stdio_are_pipes_and_unread_input_is_seen);
    tcase_add_test(tc, lines_unterminated_and_over_max_message);
    tcase_add_test(tc, a_pause_gathers_answers_into_one_read);
    tcase_add_test(tc, closing_a_paused_channel);
    tcase_add_test(tc, fed_input_without_a_process);
    suite_add_tcase(s, tc);
    return s;
}
