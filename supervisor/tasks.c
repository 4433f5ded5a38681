/*
 * tasks: the queue, attempt records, and the file/stdin source.
 *
 * A regular file is read with uv_fs_read (the thread pool), so a slow disk never stalls the
 * loop; a pipe or terminal on stdin is a libuv stream, read without any thread and paused
 * when the queue holds `read_ahead` tasks (backpressure on the producer).
 */
#include "tasks.h"

#include "job.h"
#include "kind.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 16 KiB of short lines is ~3,000 tasks, each ~100 bytes in memory where its line is a few: a
 * read of a regular file queues lines only up to twice read_ahead and leaves the rest in the
 * file, read again next time (bench/footprint). A pipe's bytes cannot be read again: all of
 * its chunk is queued. */
#define CHUNK (16 * 1024)
/* Counting reads 64 KiB at a time (a syscall per ~10,000 short lines): below the mmap
 * threshold, so the buffer comes and goes without touching the supervisor's footprint. */
#define COUNT_CHUNK (64 * 1024)

mv_task_t *mv_task_new(uint64_t id, const void *data, size_t len)
{
    mv_task_t *t;

    if (len > UINT32_MAX)
        return NULL;
    t = malloc(sizeof *t + len + 1);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->id = id;
    t->len = (uint32_t)len;
    if (len)
        memcpy(t->data, data, len);
    t->data[len] = '\0';
    return t;
}

void mv_task_free(mv_task_t *task)
{
    if (!task)
        return;
    free(task->hist);
    free(task);
}

int mv_task_note_attempt(mv_task_t *task, mv_reason_t reason, int slot, int pid, int status,
                         int64_t peak)
{
    mv_attempt_t *h = realloc(task->hist, (task->nhist + 1u) * sizeof *h);

    if (!h)
        return -ENOMEM;
    h[task->nhist++] = (mv_attempt_t){reason, slot, pid, status, peak, 0, ""};
    task->hist = h;
    return 0;
}

json_t *mv_attempts_json(const mv_attempt_t *h, int n, const char *here)
{
    json_t *a = json_array();

    for (int i = 0; i < n; i++) {
        json_t *e = json_object();
        const char *host = h[i].host[0] ? h[i].host : here;

        json_object_set_new(e, "reason", json_string(mv_reason_name(h[i].reason)));
        json_object_set_new(e, "worker", json_integer(h[i].slot));
        json_object_set_new(e, "pid", json_integer(h[i].pid));
        /* A lost attempt's end was not seen: its memvisor went silent. */
        if (h[i].reason != MV_R_LOST && h[i].status < 0)
            json_object_set_new(e, "signal", json_integer(-h[i].status));
        else if (h[i].reason != MV_R_LOST)
            json_object_set_new(e, "exit", json_integer(h[i].status));
        if (h[i].peak >= 0)
            json_object_set_new(e, "mem_peak", json_integer(h[i].peak));
        if (h[i].limit > 0)
            json_object_set_new(e, "mem_limit", json_integer(h[i].limit));
        if (host && *host)
            json_object_set_new(e, "host", json_string(host));
        json_array_append_new(a, e);
    }
    return a;
}

static void enqueue(mv_tasks_t *t, mv_task_t *task)
{
    task->next = NULL;
    if (t->tail)
        t->tail->next = task;
    else
        t->head = task;
    t->tail = task;
    t->queued++;
}

void mv_tasks_add(mv_tasks_t *t, mv_task_t *task)
{
    enqueue(t, task);
    t->loaded++;
}

mv_task_t *mv_tasks_pop(mv_tasks_t *t)
{
    return t->paused ? NULL : mv_tasks_take(t);
}

mv_task_t *mv_tasks_take(mv_tasks_t *t)
{
    mv_task_t *task = t->head;

    if (!task)
        return NULL;
    t->head = task->next;
    if (!t->head)
        t->tail = NULL;
    task->next = NULL;
    t->queued--;
    return task;
}

mv_task_t *mv_tasks_take_if(mv_tasks_t *t, bool (*ok)(void *arg, const mv_task_t *task), void *arg)
{
    mv_task_t **pp, *prev = NULL;

    if (t->paused)
        return NULL;
    for (pp = &t->head; *pp; prev = *pp, pp = &(*pp)->next) {
        mv_task_t *task = *pp;
        if (!ok(arg, task))
            continue;
        *pp = task->next;
        if (t->tail == task)
            t->tail = prev;
        task->next = NULL;
        t->queued--;
        return task;
    }
    return NULL;
}

const mv_task_t *mv_tasks_find(const mv_tasks_t *t, bool (*ok)(void *arg, const mv_task_t *task),
                               void *arg)
{
    if (t->paused)
        return NULL;
    for (const mv_task_t *task = t->head; task; task = task->next)
        if (ok(arg, task))
            return task;
    return NULL;
}

/* A task goes back: true when the source took it (it freed the task). */
static bool give_back(mv_tasks_t *t, mv_task_t *task)
{
    t->requeued++;
    if (t->src && t->src->requeue && t->src->requeue(t, task)) {
        t->returned++;
        return true;
    }
    return false;
}

void mv_tasks_requeue(mv_tasks_t *t, mv_task_t *task)
{
    if (give_back(t, task))
        return;
    task->next = t->head;
    t->head = task;
    if (!t->tail)
        t->tail = task;
    t->queued++;
}

void mv_tasks_retry(mv_tasks_t *t, mv_task_t *task)
{
    if (!give_back(t, task))
        enqueue(t, task);
}

bool mv_tasks_route(mv_tasks_t *t, mv_task_t *task)
{
    if (!t->src || !t->src->route || !t->src->route(t, task))
        return false;
    t->requeued++;
    t->returned++;
    return true;
}

void mv_tasks_escalated(mv_tasks_t *t, mv_task_t *task)
{
    if (t->src && t->src->escalated)
        t->src->escalated(t, task);
}

void mv_tasks_end(mv_tasks_t *t, mv_task_t *task, const struct mv_result *res)
{
    if (t->src && t->src->end)
        t->src->end(t, task, res);
    t->ended++;
    mv_task_free(task);
}

bool mv_tasks_all_ended(const mv_tasks_t *t)
{
    return (t->eof || t->error || t->kind == MV_SRC_NONE) && t->queued == 0 &&
           t->loaded == t->ended + t->returned;
}

/* Makes a task of line `lineno` (bytes p[0..n)) or of the error that replaces it. */
static void emit(mv_tasks_t *t, const char *p, size_t n, const char *bad)
{
    mv_task_t *task;

    if (n == 0 && !bad)
        return; /* empty line: not a task */
    if (t->skip && mv_idset_has(t->skip, t->lineno)) {
        t->skipped++; /* it has its result line already (resume) */
        return;
    }
    task = mv_task_new(t->lineno, bad ? NULL : p, bad ? 0 : n);
    if (!task) {
        /* Out of memory for one line: record it as an error rather than lose it. */
        if (t->error == 0)
            t->error = -ENOMEM;
        return;
    }
    task->bad = bad;
    mv_tasks_add(t, task);
}

/* The line in `t->line` (or the one being skipped) is complete: it becomes a task. A line
 * that ends in CR LF (a file written on Windows) loses its CR, as Python's universal newlines
 * and Go's and Rust's line readers drop it: a CR inside a line, or before the end of input
 * with no LF, is kept. */
static void end_line(mv_tasks_t *t, const char *too_long, bool lf)
{
    size_t n = mv_buf_unread(&t->line);
    const char *p = (const char *)mv_buf_head(&t->line);

    t->lineno++;
    if (lf && n > 0 && p[n - 1] == '\r')
        n--;
    if (t->skipping)
        emit(t, NULL, 0, too_long);
    else
        emit(t, p, n, NULL);
    mv_buf_reset(&t->line);
    t->skipping = false;
}

void mv_tasks_feed(mv_tasks_t *t, const char *p, size_t n, bool eof)
{
    static const char too_long[] = "task line longer than [tasks] max_size";
    const char *end = p + n, *nl;

    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl ? nl : end) - p);

        if (!t->skipping) {
            if ((int64_t)(mv_buf_unread(&t->line) + take) > t->max_size) {
                t->skipping = true;
                mv_buf_reset(&t->line);
            } else if (mv_buf_append(&t->line, p, take) < 0) {
                t->skipping = true; /* treat as too long: nothing better to do */
                mv_buf_reset(&t->line);
            }
        }
        if (!nl)
            break;
        end_line(t, too_long, true);
        p = nl + 1;
    }
    if (eof && (t->skipping || mv_buf_unread(&t->line) > 0))
        end_line(t, too_long, false);
}

/* The source ended: its total is what was read. */
static void reached_end(mv_tasks_t *t)
{
    if (!t->error)
        t->total = (int64_t)(t->loaded + t->skipped);
}

static void file_read_cb(uv_fs_t *req);
static void file_pump(mv_tasks_t *t);

/* The queued tasks reading stops at: the read-ahead, and the room a filter holds tasks in. */
static size_t ahead(const mv_tasks_t *t)
{
    return t->read_ahead + t->room;
}

void mv_tasks_set_room(mv_tasks_t *t, size_t room)
{
    t->room = room;
}

/* Feeds whole lines of p[0..n) until the queue holds twice read_ahead; returns the bytes fed
 * (all of them when a line is longer than what is left). */
static size_t feed_some(mv_tasks_t *t, const char *p, size_t n)
{
    size_t used = 0;

    while (used < n && t->queued < 2 * ahead(t)) {
        const char *nl = memchr(p + used, '\n', n - used);
        size_t take = nl ? (size_t)(nl - (p + used)) + 1 : n - used;
        mv_tasks_feed(t, p + used, take, false);
        used += take;
    }
    return used;
}

/* Fed n bytes of what the read brought (got): the file position goes back to the first byte
 * not fed, which the next read brings again. */
static void unread_rest(mv_tasks_t *t, size_t n, size_t got)
{
    t->offset += (uint64_t)n;
    if (n < got && lseek(t->fd, (off_t)n - (off_t)got, SEEK_CUR) < 0)
        t->error = -errno;
}

static void start_file_read(mv_tasks_t *t)
{
    uv_buf_t b = uv_buf_init(t->chunk, CHUNK);
    int r;

    t->reading = true;
    r = uv_fs_read(t->loop, &t->req, t->fd, &b, 1, -1, file_read_cb);
    if (r < 0) {
        t->reading = false;
        t->error = r;
        t->on_input(t->arg);
    }
}

static void file_read_cb(uv_fs_t *req)
{
    mv_tasks_t *t = req->data;
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    t->reading = false;
    if (t->closed) {
        /* Closed while this read was in flight: what it read is not wanted any more. */
        if (t->own_fd && t->fd >= 0)
            close(t->fd);
        t->fd = -1;
        return;
    }
    if (n < 0) {
        t->error = (int)n;
        mv_tasks_feed(t, NULL, 0, true);
    } else if (n == 0) {
        t->eof = true;
        mv_tasks_feed(t, NULL, 0, true);
        reached_end(t);
    } else if (t->seekable) {
        unread_rest(t, feed_some(t, t->chunk, (size_t)n), (size_t)n);
    } else {
        t->offset += (uint64_t)n;
        mv_tasks_feed(t, t->chunk, (size_t)n, false);
    }
    if (t->fd >= 0 && (t->eof || t->error) && t->own_fd) {
        close(t->fd);
        t->fd = -1;
    }
    t->on_input(t->arg);
    file_pump(t);
}

static void stream_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mv_tasks_t *t = h->data;

    buf->base = t->chunk;
    buf->len = CHUNK;
}

static void stream_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mv_tasks_t *t = s->data;

    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            t->error = (int)n;
        t->eof = true;
        uv_read_stop(s);
        t->reading = false;
        mv_tasks_feed(t, NULL, 0, true);
        reached_end(t);
    } else {
        mv_tasks_feed(t, buf->base, (size_t)n, false);
        if (t->queued >= ahead(t)) {
            uv_read_stop(s);
            t->reading = false;
        }
    }
    t->on_input(t->arg);
}

static void file_pump(mv_tasks_t *t)
{
    if (t->closed || t->reading || t->eof || t->error || t->queued >= ahead(t))
        return;
    if (t->kind == MV_SRC_FILE) {
        start_file_read(t);
    } else if (t->kind == MV_SRC_STREAM) {
        int r = uv_read_start((uv_stream_t *)&t->stream, stream_alloc_cb, stream_read_cb);
        if (r < 0) {
            t->error = r;
            t->on_input(t->arg);
            return;
        }
        t->reading = true;
    }
}

void mv_tasks_pump(mv_tasks_t *t)
{
    if (t->src && t->src->pump)
        t->src->pump(t);
}

static void file_close(mv_tasks_t *t);
static void file_free(mv_tasks_t *t);

static const mv_tasks_source_t file_source = {
    .kind = "file",
    .pump = file_pump,
    .close = file_close,
    .free = file_free,
};

void mv_tasks_init(mv_tasks_t *t, uv_loop_t *loop, int64_t max_size, size_t read_ahead,
                   mv_tasks_cb on_input, void *arg)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->fd = -1;
    t->total = -1;
    t->max_size = max_size;
    t->read_ahead = read_ahead ? read_ahead : 1;
    t->ready_slots = -1;
    t->on_input = on_input;
    t->arg = arg;
    t->req.data = t;
}

int mv_tasks_open(mv_tasks_t *t, uv_loop_t *loop, const char *path, int64_t max_size,
                  size_t read_ahead, mv_tasks_cb on_input, void *arg)
{
    struct stat st;
    int r;

    mv_tasks_init(t, loop, max_size, read_ahead, on_input, arg);
    if (!path || !*path) {
        t->kind = MV_SRC_NONE;
        return 0;
    }
    t->src = &file_source;
    t->chunk = malloc(CHUNK);
    if (!t->chunk)
        return -ENOMEM;
    if (strcmp(path, "-") == 0) {
        t->name = "stdin";
        t->fd = STDIN_FILENO;
    } else {
        t->name = path;
        t->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (t->fd < 0)
            return -errno;
        t->own_fd = true;
    }
    switch (uv_guess_handle(t->fd)) {
    case UV_FILE:
        t->kind = MV_SRC_FILE;
        t->seekable = fstat(t->fd, &st) == 0 && S_ISREG(st.st_mode); /* not a device */
        return 0;
    case UV_NAMED_PIPE:
        r = uv_pipe_init(loop, &t->stream.pipe, 0);
        if (r == 0)
            r = uv_pipe_open(&t->stream.pipe, t->fd);
        break;
    case UV_TTY: r = uv_tty_init(loop, &t->stream.tty, t->fd, 1); break;
    default: return -EINVAL;
    }
    if (r < 0)
        return r;
    t->stream.pipe.data = t;
    t->stream_open = true;
    t->kind = MV_SRC_STREAM;
    return 0;
}

int64_t mv_tasks_count_rest(const mv_tasks_t *t)
{
    bool open_line = t->skipping || mv_buf_unread(&t->line) > 0;
    uint64_t lineno = t->lineno, off = t->offset;
    int64_t n = 0;
    char buf[CHUNK];
    ssize_t got;
    int fd;

    if (t->kind == MV_SRC_NONE || t->eof)
        return 0;
    if (t->kind != MV_SRC_FILE || t->error)
        return -1;
    /* Its own description: the run's fd may be closed already, and its offset is the
     * run's. The rest is read on from where the run's reads stopped. */
    fd = open(t->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((got = pread(fd, buf, sizeof buf, (off_t)off)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            close(fd);
            return -1;
        }
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                open_line = true;
                continue;
            }
            lineno++;
            n += open_line && !(t->skip && mv_idset_has(t->skip, lineno));
            open_line = false;
        }
        off += (uint64_t)got;
    }
    close(fd);
    if (open_line && !(t->skip && mv_idset_has(t->skip, lineno + 1)))
        n++;
    return n;
}

static void stop_counting(mv_tasks_t *t);

void mv_tasks_close(mv_tasks_t *t)
{
    bool was = t->closed;

    t->closed = true;
    stop_counting(t);
    if (t->src && t->src->close && !was)
        t->src->close(t);
    t->eof = t->eof || t->kind == MV_SRC_NONE;
}

static void file_close(mv_tasks_t *t)
{
    if (t->kind == MV_SRC_STREAM && t->stream_open) {
        t->stream_open = false;
        /* A stream on stdin: closing the handle closes fd 0, which is what we want. */
        uv_close((uv_handle_t *)&t->stream, NULL);
        t->fd = -1;
    }
    if (t->kind == MV_SRC_FILE && !t->reading && t->own_fd && t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

void mv_tasks_free(mv_tasks_t *t)
{
    mv_task_t *task;

    stop_counting(t);
    while ((task = mv_tasks_take(t)))
        mv_task_free(task);
    if (t->src && t->src->free)
        t->src->free(t);
    t->src = NULL;
    mv_buf_free(&t->line); /* mv_tasks_feed's, whoever fed it (tests feed a bare queue) */
}

static void file_free(mv_tasks_t *t)
{
    if (t->kind == MV_SRC_FILE && t->own_fd && t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    free(t->chunk);
    t->chunk = NULL;
}

/* ---- counting ahead ---------------------------------------------------------------------- */

/* A count of the source's tasks, in the thread pool: its own fd (a dup: pread leaves the
 * reader's offset alone), from where the reader started. */
struct mv_count_job {
    mv_job_t job; /* first: job.c frees the whole struct */
    int fd;
    off_t from;
    atomic_bool stop; /* the source closed: give up at the next chunk */
    int64_t lines;    /* -1: failed or stopped */
};

uint64_t mv_tasks_count_lines(const char *p, size_t n, bool *in_line)
{
    const char *end = p + n, *nl;
    uint64_t k = 0;

    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            *in_line = true;
            break;
        }
        if ((nl > p && !(nl == p + 1 && *p == '\r')) || *in_line)
            k++; /* a blank line, CR LF ones too, is no task */
        *in_line = false;
        p = nl + 1;
    }
    return k;
}

/* Thread pool: reads the file to its end, chunk by chunk, counting. */
static void count_work(mv_job_t *j)
{
    struct mv_count_job *c = (struct mv_count_job *)j;
    char *buf = malloc(COUNT_CHUNK);
    off_t off = c->from;
    bool open_line = false;
    uint64_t k = 0;
    ssize_t n;

    c->lines = -1;
    if (!buf)
        goto out;
    while (!atomic_load(&c->stop)) {
        n = pread(c->fd, buf, COUNT_CHUNK, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0) {
            c->lines = (int64_t)(k + open_line);
            break;
        }
        k += mv_tasks_count_lines(buf, (size_t)n, &open_line);
        off += n;
    }
out:
    free(buf);
    close(c->fd);
}

/* Loop: the count is the total unless the reader got there first (or the source closed). */
static void count_done(mv_job_t *j, void *owner, int cancelled)
{
    struct mv_count_job *c = (struct mv_count_job *)j;
    mv_tasks_t *t = owner;

    if (cancelled)
        close(c->fd);
    if (!t)
        return;
    t->counting = NULL;
    if (!cancelled && c->lines >= 0 && t->total < 0)
        t->total = c->lines;
}

int mv_tasks_count(mv_tasks_t *t)
{
    struct mv_count_job *c;
    int r;

    if (t->kind != MV_SRC_FILE || t->counting || t->total >= 0 || t->fd < 0)
        return 0;
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    /* Where the reader starts (stdin may be a file opened at an offset), before any read. */
    c->from = lseek(t->fd, 0, SEEK_CUR);
    c->fd = fcntl(t->fd, F_DUPFD_CLOEXEC, 0);
    if (c->from < 0 || c->fd < 0) {
        r = -errno;
        if (c->fd >= 0)
            close(c->fd);
        free(c);
        return r;
    }
    atomic_init(&c->stop, false);
    r = mv_job_queue(t->loop, &c->job, count_work, count_done, t);
    if (r < 0) {
        close(c->fd);
        free(c);
        return r;
    }
    t->counting = c;
    return 0;
}

static void stop_counting(mv_tasks_t *t)
{
    if (!t->counting)
        return;
    atomic_store(&t->counting->stop, true);
    mv_job_detach(&t->counting->job);
    t->counting = NULL;
}

const char *mv_task_kind(const mv_config_t *cfg, const mv_task_t *t, const uint8_t *named,
                         size_t named_len, char out[MV_LEAK_KIND_MAX + 1])
{
    /* The worker's own name for it, else what [leak] kind makes of the line (kind.h). */
    if (named)
        return mv_kind_clean(named, named_len, out);
    return mv_kind_of_line(cfg, (const uint8_t *)t->data, t->len, out);
}
