/*
 * log: text or JSON event lines, queued for a writer thread.
 *
 * The loop never waits for the log's reader (reliability drill 4: a stderr pipe nobody read
 * froze dispatch, the control socket, task timeouts and the watchdog). A line is formatted on
 * the caller's thread and appended to a bounded queue; one thread owns the blocking write(2)s.
 *
 * Why a thread rather than O_NONBLOCK: O_NONBLOCK is a flag of the open file description, and
 * stderr's description is shared with whoever else holds it (the shell and the other programs
 * of a pipeline or a terminal session). dup(2) shares the description too, so setting the
 * flag on a dup'd fd would still make *their* writes fail with EAGAIN. Reopening
 * /proc/self/fd/2 gives a private description for pipes and ttys, but fails for sockets
 * (journald's stream: ENXIO) and, for a file opened without O_APPEND, makes a second offset
 * that overwrites the other writers' data. A thread doing plain blocking writes leaves the
 * description alone, works for every kind of fd (a slow disk included), and needs no handle
 * in the supervisor's loop (the log exists before the loop and outlives it).
 *
 * Bounds: at most `cap` bytes queued (MV_LOG_BUFFER). Worker output (event=output) may fill
 * only half of it, so with a slow reader output is dropped first and memvisor's own events
 * keep the other half; both are counted, and once the queue has drained to a quarter one
 * `event=log_dropped` line says how many were lost. At close, what is queued gets
 * MV_LOG_CLOSE_WAIT_MS to drain; a writer still blocked in write(2) then is cancelled (write
 * is a cancellation point; cancellation is enabled only around it, so it never acts while
 * the lock is held).
 *
 * Waking the writer costs the loop a futex call and a context switch (in a VM, a cross-CPU
 * interrupt): with a worker per task (`max_tasks = 1`, four lines a worker) the wake-ups were
 * ~15% of the loop's time (perf, bench/fork_per_task.py). So the loop wakes the writer only when it
 * sleeps with nothing queued, and the writer, once woken, gathers the lines of the next
 * MV_LOG_GATHER_MS before it writes (one write and one wake for a burst of lines). A flush, the
 * close or a queue a quarter full ends the gathering at once; a line's timestamp is taken when it
 * is logged.
 *
 * The run's events.jsonl (events_fd) is written by the caller, every event, never dropped: it
 * is a regular file in the state directory, so a write there waits for the disk only, never
 * for a reader; and the supervisor closes that fd itself, which a queued write could outlive.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

struct mv_log_writer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* lines queued, or closing */
    pthread_cond_t drained; /* the queue emptied */
    mv_buf_t in;            /* appended to by callers */
    mv_buf_t out;           /* the thread's: data[off..len) is still to write */
    size_t cap;
    int close_wait_ms;
    int fd;
    mv_logfmt_t format;
    bool closing;
    bool abandon; /* close gave up waiting: write nothing more */
    bool broken;  /* the sink failed for good (EPIPE, EBADF...): lines are discarded */
    bool idle;    /* the thread waits for lines with none queued: only then is it woken */
    int hurry;    /* callers waiting for the queue to drain: no gathering */
    struct timespec gather_until;      /* lines are gathered until then (tv_sec 0: not gathering) */
    uint64_t drop_output, drop_events; /* since the last log_dropped line */
    uint64_t drop_total;
    /* The status line (mv_log_status): its text, and whether the screen shows it. */
    int status_fd; /* -1 = none */
    char status[MV_LOG_STATUS_MAX + 1];
    size_t status_len;
    bool status_dirty;       /* the screen is not showing `status` yet */
    bool status_shown;       /* the screen shows a status line now */
    int64_t status_drawn_ns; /* CLOCK_MONOTONIC of the latest draw */
};

static const char *const level_name[] = {"debug", "info", "warn", "error"};

/* Whether a text value must be quoted: empty, blanks, quotes, '=', or any non-printable. */
/* A C1 control (U+0080..U+009F) in UTF-8 at s: a terminal may take U+009B as CSI, as ESC [. */
static bool is_c1(const uint8_t *s, size_t n)
{
    return n >= 2 && s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
}

static int needs_quotes(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\' || s[i] == 0x7f ||
            is_c1(s + i, n - i))
            return 1;
    return 0;
}

/* Appends a text-format value: bare when safe, else "..." with C-style escapes. */
static void text_value(mv_buf_t *b, const void *p, size_t n)
{
    const uint8_t *s = p;
    char esc[12];

    if (!needs_quotes(s, n)) {
        mv_buf_append(b, s, n);
        return;
    }
    mv_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            mv_buf_append(b, esc, 2);
        } else if (c == '\n') {
            mv_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            mv_buf_append(b, "\\t", 2);
        } else if (c < ' ' || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            mv_buf_append(b, esc, 4);
        } else if (is_c1(s + i, n - i)) { /* both bytes, as the bytes they are */
            snprintf(esc, sizeof esc, "\\xc2\\x%02x", s[i + 1]);
            mv_buf_append(b, esc, 8);
            i++;
        } else {
            mv_buf_append(b, &c, 1);
        }
    }
    mv_buf_append(b, "\"", 1);
}

static void format_text(mv_buf_t *b, const char *ts, mv_level_t level, const char *event,
                        const mv_kv_t *kv)
{
    char num[64];
    int n;

    n = snprintf(num, sizeof num, "%s %-5s event=", ts, level_name[level]);
    mv_buf_append(b, num, (size_t)n);
    mv_buf_append(b, event, strlen(event));
    for (; kv->type != MV_KV_END; kv++) {
        mv_buf_append(b, " ", 1);
        mv_buf_append(b, kv->key, strlen(kv->key));
        mv_buf_append(b, "=", 1);
        switch (kv->type) {
        case MV_KV_INT:
            n = snprintf(num, sizeof num, "%lld", kv->v.i);
            mv_buf_append(b, num, (size_t)n);
            break;
        case MV_KV_DBL:
            n = snprintf(num, sizeof num, "%.3f", kv->v.d);
            mv_buf_append(b, num, (size_t)n);
            break;
        case MV_KV_STR: text_value(b, kv->v.s ? kv->v.s : "", kv->v.s ? strlen(kv->v.s) : 0); break;
        case MV_KV_BYTES: text_value(b, kv->v.s, kv->len); break;
        case MV_KV_BOOL: mv_buf_append(b, kv->v.i ? "true" : "false", kv->v.i ? 4 : 5); break;
        case MV_KV_END: break;
        }
    }
    mv_buf_append(b, "\n", 1);
}

/* A jansson string from arbitrary bytes: invalid UTF-8 becomes U+FFFD (logs may be lossy). */
static json_t *json_bytes(const char *s, size_t n)
{
    mv_buf_t clean = {0};
    json_t *j;

    if (mv_utf8_valid(s, n))
        return json_stringn(s, n);
    if (mv_utf8_sanitize(s, n, &clean) < 0) {
        mv_buf_free(&clean);
        return json_string("(out of memory)");
    }
    j = json_stringn((const char *)clean.data, clean.len);
    mv_buf_free(&clean);
    return j;
}

static void format_json(mv_buf_t *b, const char *ts, mv_level_t level, const char *event,
                        const mv_kv_t *kv)
{
    json_t *o = json_object();
    char *s;

    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_name[level]));
    json_object_set_new(o, "event", json_string(event));
    for (; kv->type != MV_KV_END; kv++) {
        json_t *v = NULL;
        switch (kv->type) {
        case MV_KV_INT: v = json_integer(kv->v.i); break;
        case MV_KV_DBL: v = json_real(kv->v.d); break;
        case MV_KV_STR: v = kv->v.s ? json_bytes(kv->v.s, strlen(kv->v.s)) : json_null(); break;
        case MV_KV_BYTES: v = json_bytes(kv->v.s, kv->len); break;
        case MV_KV_BOOL: v = json_boolean(kv->v.i); break;
        case MV_KV_END: break;
        }
        json_object_set_new(o, kv->key, v ? v : json_null());
    }
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) {
        mv_buf_append(b, s, strlen(s));
        free(s);
    }
    mv_buf_append(b, "\n", 1);
    json_decref(o);
}

/* Writes all of b, for the paths that write directly (events.jsonl, no writer thread). */
static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        c += w;
        n -= (size_t)w;
    }
}

/* ---- the writer thread -------------------------------------------------------------------- */

static size_t queued(const struct mv_log_writer *w)
{
    return w->in.len + mv_buf_unread(&w->out);
}

/* Appends the log_dropped line to the queue (lock held). It is not counted against the cap:
 * it is one line, and it is the one line that must not be lost. */
static void report_drops(struct mv_log_writer *w)
{
    uint64_t out = w->drop_output, ev = w->drop_events;
    const mv_kv_t kv[] = {MV_I("count", out + ev), MV_I("output", out), MV_I("events", ev),
                          MV_KV_END_MARKER};
    char ts[48];

    w->drop_output = w->drop_events = 0;
    mv_iso_time(ts);
    if (w->format == MV_LOGFMT_JSON)
        format_json(&w->in, ts, MV_LVL_WARN, "log_dropped", kv);
    else
        format_text(&w->in, ts, MV_LVL_WARN, "log_dropped", kv);
}

/* The next write: whole lines up to PIPE_BUF bytes (atomic on a pipe, so lines never
 * interleave with another writer's), or one longer line. */
static size_t chunk_len(const mv_buf_t *b)
{
    const uint8_t *p = mv_buf_head(b), *nl;
    size_t n = mv_buf_unread(b);

    if (n <= PIPE_BUF)
        return n;
    nl = memrchr(p, '\n', PIPE_BUF);
    if (!nl)
        nl = memchr(p, '\n', n);
    return nl ? (size_t)(nl - p) + 1 : n;
}

/* One write(2), cancellable while it blocks: bytes written or -errno. Someone else may have
 * set O_NONBLOCK on the shared description: then EAGAIN waits in poll (also a cancellation
 * point). */
static ssize_t write_some(int fd, const void *p, size_t n)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    ssize_t r;

    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    r = write(fd, p, n);
    if (r < 0)
        r = -errno;
    if (r == -EAGAIN)
        poll(&pfd, 1, -1);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    return r;
}

/* Writes all of p[0..n) to the status line's terminal (lock held, released around the
 * writes); a terminal that fails for good gets no more status lines. */
static void status_write(struct mv_log_writer *w, const char *p, size_t n)
{
    int fd = w->status_fd;

    pthread_mutex_unlock(&w->mu);
    while (n > 0) {
        ssize_t r = write_some(fd, p, n);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
    pthread_mutex_lock(&w->mu);
    if (n > 0)
        w->status_fd = -1;
}

/* Erases the status line from the screen (lock held); it is drawn again once the log lines
 * queued now are written. */
static void clear_status(struct mv_log_writer *w)
{
    static const char erase[] = "\r\033[K"; /* back to the left margin, erase to the end */

    w->status_shown = false;
    w->status_dirty = w->status_len > 0;
    status_write(w, erase, sizeof erase - 1);
}

/* Whether the status line may be drawn now: at most once every MV_LOG_STATUS_EVERY_MS,
 * log lines or not (erasing it is always allowed); else when, in `at`. */
static bool status_due(const struct mv_log_writer *w, struct timespec *at)
{
    struct timespec now;
    int64_t next;

    if (w->status_len == 0 || w->status_fd < 0)
        return true;
    clock_gettime(CLOCK_MONOTONIC, &now);
    next = w->status_drawn_ns + (int64_t)MV_LOG_STATUS_EVERY_MS * 1000000;
    if ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec >= next)
        return true;
    at->tv_sec = (time_t)(next / 1000000000);
    at->tv_nsec = (long)(next % 1000000000);
    return false;
}

/* Draws the status line as it is now, or erases it when it is empty (lock held). */
static void draw_status(struct mv_log_writer *w)
{
    char line[MV_LOG_STATUS_MAX + 8];
    struct timespec now;
    size_t n = 0;

    w->status_dirty = false;
    if (w->status_fd < 0)
        return;
    if (w->status_len == 0) {
        if (w->status_shown)
            clear_status(w);
        w->status_dirty = false;
        return;
    }
    /* One write: the carriage return, the text, then erase what a longer line left. */
    line[n++] = '\r';
    memcpy(line + n, w->status, w->status_len);
    n += w->status_len;
    memcpy(line + n, "\033[K", 3);
    n += 3;
    w->status_shown = true;
    clock_gettime(CLOCK_MONOTONIC, &now);
    w->status_drawn_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    status_write(w, line, n);
}

/* Whether the writer should wait for more lines before writing (lock held): during the
 * MV_LOG_GATHER_MS after the first queued line, unless someone waits for the queue to drain,
 * it is closing, or the queue is a quarter full. Waits once (the caller loops). */
static bool gathering(struct mv_log_writer *w)
{
    struct timespec now;

    if (w->closing || w->hurry > 0 || w->abandon || queued(w) >= w->cap / 4) {
        w->gather_until.tv_sec = 0;
        return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (w->gather_until.tv_sec == 0) {
        w->gather_until = now;
        w->gather_until.tv_nsec += MV_LOG_GATHER_MS * 1000000L;
        if (w->gather_until.tv_nsec >= 1000000000L) {
            w->gather_until.tv_sec++;
            w->gather_until.tv_nsec -= 1000000000L;
        }
    }
    if (now.tv_sec > w->gather_until.tv_sec ||
        (now.tv_sec == w->gather_until.tv_sec && now.tv_nsec >= w->gather_until.tv_nsec)) {
        w->gather_until.tv_sec = 0;
        return false;
    }
    pthread_cond_timedwait(&w->wake, &w->mu, &w->gather_until);
    return true;
}

static void *writer_main(void *arg)
{
    struct mv_log_writer *w = arg;
    mv_buf_t t;
    size_t n;
    ssize_t r;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&w->mu);
    while (!w->abandon) {
        if (mv_buf_unread(&w->out) == 0) {
            if (w->drop_output + w->drop_events > 0 && w->in.len <= w->cap / 4 && !w->broken)
                report_drops(w);
            if (w->in.len == 0) {
                if (w->status_dirty) { /* idle: the status line goes back under the log */
                    struct timespec at;
                    if (status_due(w, &at) || w->closing)
                        draw_status(w);
                    else {
                        w->idle = true;
                        pthread_cond_timedwait(&w->wake, &w->mu, &at);
                        w->idle = false;
                    }
                    continue;
                }
                pthread_cond_broadcast(&w->drained);
                if (w->closing)
                    break;
                w->idle = true;
                pthread_cond_wait(&w->wake, &w->mu);
                w->idle = false;
                continue;
            }
            if (gathering(w))
                continue;
            t = w->out; /* callers append to `in` while the thread writes `out` */
            w->out = w->in;
            w->in = t;
            mv_buf_reset(&w->in);
            if (w->status_shown && w->status_fd == w->fd)
                clear_status(w); /* log lines start at the left margin, on a clean line */
        }
        n = chunk_len(&w->out);
        pthread_mutex_unlock(&w->mu);
        r = write_some(w->fd, mv_buf_head(&w->out), n);
        pthread_mutex_lock(&w->mu);
        if (r > 0) {
            mv_buf_consume(&w->out, (size_t)r);
        } else if (r == 0 || (r != -EINTR && r != -EAGAIN)) {
            /* The reader is gone (EPIPE) or the fd is unusable: nothing will ever be read. */
            w->broken = true;
            mv_buf_reset(&w->out);
            mv_buf_reset(&w->in);
        }
    }
    pthread_cond_broadcast(&w->drained);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts the writer; NULL when it cannot (the caller then writes directly). */
static struct mv_log_writer *writer_start(int fd, mv_logfmt_t format)
{
    struct mv_log_writer *w = calloc(1, sizeof *w);
    pthread_condattr_t ca;
    sigset_t all, old;
    int r;

    if (!w)
        return NULL;
    w->fd = fd;
    w->status_fd = -1;
    w->format = format;
    w->cap = MV_LOG_BUFFER;
    w->close_wait_ms = MV_LOG_CLOSE_WAIT_MS;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* flush deadlines ignore clock steps */
    pthread_cond_init(&w->wake, &ca);
    pthread_cond_init(&w->drained, &ca);
    pthread_condattr_destroy(&ca);
    /* Signals are the loop's (uv_signal): the thread starts with every one blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->drained);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

/* Waits (lock held) until the queue is empty or the sink broken, at most timeout_ms. */
static int wait_drained(struct mv_log_writer *w, int timeout_ms)
{
    struct timespec dl;

    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    w->hurry++; /* the writer stops gathering */
    while ((queued(w) > 0 && !w->broken) || (w->status_dirty && w->status_fd >= 0)) {
        pthread_cond_signal(&w->wake);
        if (pthread_cond_timedwait(&w->drained, &w->mu, &dl) == ETIMEDOUT) {
            w->hurry--;
            return (queued(w) > 0 && !w->broken) || (w->status_dirty && w->status_fd >= 0)
                       ? -ETIMEDOUT
                       : 0;
        }
    }
    w->hurry--;
    return 0;
}

/* ---- the API ------------------------------------------------------------------------------ */

int mv_log_open(mv_log_t *lg, mv_logfmt_t format, mv_level_t level, const char *path)
{
    memset(lg, 0, sizeof *lg);
    lg->events_fd = -1;
    lg->format = format;
    lg->level = level;
    lg->fd = STDERR_FILENO;
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        lg->fd = fd;
        lg->own_fd = 1;
    }
    lg->writer = writer_start(lg->fd, format);
    if (!lg->writer)
        mv_warn(lg, "log_unbuffered", MV_S("error", "cannot start the log's writer thread"),
                MV_S("msg", "log lines are written by the loop: a slow reader slows memvisor"));
    return 0;
}

void mv_log_close(mv_log_t *lg)
{
    struct mv_log_writer *w = lg->writer;

    if (w) {
        mv_log_status(lg, NULL); /* the terminal is left with no half-drawn line */
        pthread_mutex_lock(&w->mu);
        w->closing = true;
        if (wait_drained(w, w->close_wait_ms) < 0) {
            /* The reader stalled: its lines are lost, and the writer may be blocked in
             * write(2), which only cancellation ends. */
            w->abandon = true;
            pthread_cancel(w->thread);
        }
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        mv_buf_free(&w->in);
        mv_buf_free(&w->out);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->drained);
        pthread_mutex_destroy(&w->mu);
        free(w);
        lg->writer = NULL;
    }
    if (lg->own_fd && lg->fd >= 0)
        close(lg->fd);
    lg->fd = -1;
    lg->own_fd = 0;
}

int mv_log_flush(mv_log_t *lg, int timeout_ms)
{
    struct mv_log_writer *w = lg->writer;
    int r;

    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    r = wait_drained(w, timeout_ms);
    pthread_mutex_unlock(&w->mu);
    return r;
}

void mv_log_set_limits(mv_log_t *lg, size_t buffer, int close_wait_ms)
{
    struct mv_log_writer *w = lg->writer;

    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->cap = buffer;
    w->close_wait_ms = close_wait_ms;
    pthread_mutex_unlock(&w->mu);
}

void mv_log_counts(mv_log_t *lg, mv_log_counts_t *out)
{
    struct mv_log_writer *w = lg->writer;

    memset(out, 0, sizeof *out);
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    out->queued = queued(w);
    out->output = w->drop_output;
    out->events = w->drop_events;
    out->total = w->drop_total;
    pthread_mutex_unlock(&w->mu);
}

void mv_log_status_open(mv_log_t *lg, int fd)
{
    struct mv_log_writer *w = lg->writer;

    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->status_fd = fd;
    pthread_mutex_unlock(&w->mu);
}

void mv_log_status(mv_log_t *lg, const char *text)
{
    struct mv_log_writer *w = lg->writer;
    size_t n;

    if (!w)
        return;
    if (!text)
        text = "";
    n = strnlen(text, MV_LOG_STATUS_MAX);
    pthread_mutex_lock(&w->mu);
    if (w->status_fd >= 0 && (n != w->status_len || memcmp(text, w->status, n) != 0)) {
        /* One line of printable text: a control byte would move the cursor off it. */
        for (size_t i = 0; i < n; i++)
            w->status[i] = (unsigned char)text[i] < ' ' || text[i] == 0x7f ? '?' : text[i];
        w->status_len = n;
        w->status_dirty = true;
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->mu);
}

/* Queues one formatted line, or counts it dropped: output may fill half the queue, memvisor's
 * own events all of it. */
static void enqueue(struct mv_log_writer *w, const mv_buf_t *b, bool output)
{
    bool wake = false;

    pthread_mutex_lock(&w->mu);
    if (w->broken) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    if (queued(w) + b->len > (output ? w->cap / 2 : w->cap) ||
        mv_buf_append(&w->in, b->data, b->len) < 0) {
        if (output)
            w->drop_output++;
        else
            w->drop_events++;
        w->drop_total++;
    } else if (w->idle || queued(w) >= w->cap / 4) {
        /* Only a sleeping writer, or one gathering while the queue fills, is woken (see the
         * top); once: it is not idle any more. */
        w->idle = false;
        wake = true;
    }
    pthread_mutex_unlock(&w->mu);
    /* After the unlock: a writer woken while the lock is held would only block on it. */
    if (wake)
        pthread_cond_signal(&w->wake);
}

/* Whether an output line would surely be dropped: then it is not even formatted (a flood of
 * worker output against a stalled reader costs the loop a lock, not a JSON encoding). */
static bool output_full(struct mv_log_writer *w)
{
    bool full;

    pthread_mutex_lock(&w->mu);
    full = w->broken || queued(w) >= w->cap / 2;
    if (full && !w->broken) {
        w->drop_output++;
        w->drop_total++;
    }
    pthread_mutex_unlock(&w->mu);
    return full;
}

/* events.jsonl is full: it becomes events.1.jsonl (replacing the one before) and the same fd
 * number a new events.jsonl, whose first line says so. An event is never dropped for it:
 * when a step fails, writing goes on where it was, the bound is given up, and one warning
 * (events_rotate_failed, in the log and the file) says so: else the file's growth past its
 * bound would be a mystery. */
static void rotate_events(mv_log_t *lg, const char *ts)
{
    size_t n = strlen(lg->events_path);
    char *old = malloc(n + 8);
    mv_buf_t b = {0};
    const char *call = "malloc", *error = NULL;
    int fd = -1, err = ENOMEM;

    if (!old)
        goto give_up;
    call = "name";
    error = "not a .jsonl name";
    if (n < 6 || strcmp(lg->events_path + n - 6, ".jsonl") != 0)
        goto give_up;
    error = NULL;
    snprintf(old, n + 8, "%.*s.1.jsonl", (int)(n - 6), lg->events_path);
    call = "rename";
    if (rename(lg->events_path, old) < 0) {
        err = errno;
        goto give_up;
    }
    fd = open(lg->events_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    call = fd < 0 ? "open" : "dup3";
    if (fd < 0 || dup3(fd, lg->events_fd, O_CLOEXEC) < 0) {
        err = errno;
        rename(old, lg->events_path); /* the fd still writes to it: put it back */
        goto give_up;
    }
    close(fd);
    free(old);
    lg->events_bytes = 0;
    format_json(&b, ts, MV_LVL_INFO, "events_rotated",
                (const mv_kv_t[]){MV_S("previous", "events.1.jsonl"),
                                  MV_I("max", (long long)lg->events_max), MV_KV_END_MARKER});
    write_all(lg->events_fd, b.data, b.len);
    lg->events_bytes += (int64_t)b.len;
    mv_buf_free(&b);
    return;
give_up:
    if (fd >= 0)
        close(fd);
    free(old);
    /* No bound from here on: the warning below cannot come back here. */
    lg->events_max = 0;
    mv_warn(lg, "events_rotate_failed", MV_S("file", lg->events_path), MV_S("call", call),
            MV_S("error", error ? error : strerror(err)),
            MV_S("msg", "events.jsonl is not rotated: it grows past [log] events_max"));
}

void mv_log_kv(mv_log_t *lg, mv_level_t level, const char *event, const mv_kv_t *kv)
{
    bool output = strcmp(event, "output") == 0;
    bool to_log = level >= lg->level && lg->fd >= 0;
    bool to_events = lg->events_fd >= 0 && level >= MV_LVL_INFO && !output;
    mv_buf_t b = {0};
    char ts[48];

    if (to_log && output && lg->writer && output_full(lg->writer))
        to_log = false;
    if (!to_log && !to_events)
        return;
    mv_iso_time(ts);
    if (to_events) {
        format_json(&b, ts, level, event, kv);
        if (lg->events_max > 0 && lg->events_path && lg->events_bytes > 0 &&
            lg->events_bytes + (int64_t)b.len > lg->events_max)
            rotate_events(lg, ts);
        write_all(lg->events_fd, b.data, b.len);
        lg->events_bytes += (int64_t)b.len;
        mv_buf_reset(&b);
    }
    if (to_log) {
        if (lg->format == MV_LOGFMT_JSON)
            format_json(&b, ts, level, event, kv);
        else
            format_text(&b, ts, level, event, kv);
        if (lg->writer)
            enqueue(lg->writer, &b, output);
        else
            write_all(lg->fd, b.data, b.len);
    }
    mv_buf_free(&b);
}
