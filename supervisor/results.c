/*
 * results: JSON Lines results, encoded and written by thread-pool jobs.
 *
 * Threads: the loop owns `pending`, the counts and the handles; a job owns `batch` and
 * `lines` while it runs. The two meet only in after_job (on the loop), when the job is done,
 * so no lock is needed.
 */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define FLUSH_BYTES    (64 * 1024)
#define FLUSH_EVERY_MS 100
#define BACKLOG_MAX    (1024 * 1024)

/* A result as the loop hands it to a job: this header, then hist[nhist], then the payload. */
typedef struct record {
    uint32_t size; /* whole record, padded to 8 */
    uint32_t nhist;
    uint32_t kind_len; /* 0 = no kind */
    mv_result_t res;   /* payload, hist and kind pointers are rebuilt by the job */
} record_t;

const char *mv_status_name(mv_status_t s)
{
    static const char *const n[MV_ST_COUNT] = {"ok", "failed", "quarantined"};
    return (unsigned)s < MV_ST_COUNT ? n[s] : "?";
}

/* Sets key (text) or key_base64 (any other bytes) so that every payload survives. */
static int set_bytes(json_t *o, const char *key, const void *p, size_t n)
{
    char k64[32];
    char *b64;
    int r;

    if (mv_utf8_valid(p, n))
        return json_object_set_new(o, key, json_stringn(p ? p : "", n));
    b64 = mv_base64(p, n);
    if (!b64)
        return -1;
    snprintf(k64, sizeof k64, "%s_base64", key);
    r = json_object_set_new(o, k64, json_string(b64));
    free(b64);
    return r;
}

static json_t *attempts_json(const mv_attempt_t *h, int n)
{
    json_t *a = json_array();

    for (int i = 0; i < n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "reason", json_string(mv_reason_name(h[i].reason)));
        json_object_set_new(e, "worker", json_integer(h[i].slot));
        json_object_set_new(e, "pid", json_integer(h[i].pid));
        if (h[i].status < 0)
            json_object_set_new(e, "signal", json_integer(-h[i].status));
        else
            json_object_set_new(e, "exit", json_integer(h[i].status));
        if (h[i].peak >= 0)
            json_object_set_new(e, "mem_peak", json_integer(h[i].peak));
        json_array_append_new(a, e);
    }
    return a;
}

static int append_cb(const char *buffer, size_t size, void *data)
{
    return mv_buf_append(data, buffer, size) < 0 ? -1 : 0;
}

int mv_results_encode(const mv_result_t *res, mv_buf_t *out)
{
    json_t *o = json_object();
    size_t mark = out->len;
    int r = 0;

    if (!o)
        return -ENOMEM;
    json_object_set_new(o, "task", json_integer((json_int_t)res->task));
    json_object_set_new(o, "status", json_string(mv_status_name(res->status)));
    json_object_set_new(o, "attempts", json_integer(res->attempts));
    json_object_set_new(o, "worker", res->slot ? json_integer(res->slot) : json_null());
    json_object_set_new(o, "pid", res->pid ? json_integer(res->pid) : json_null());
    json_object_set_new(o, "kind", res->kind ? json_string(res->kind) : json_null());
    if (res->measured) {
        json_object_set_new(o, "mem_before", json_integer(res->mem_before));
        json_object_set_new(o, "mem_after", json_integer(res->mem_after));
        json_object_set_new(o, "mem_peak", json_integer(res->mem_peak));
        json_object_set_new(o, "retained", json_integer(res->retained));
        json_object_set_new(o, "peak_source", json_string(res->peak_source));
        json_object_set_new(o, "fds_before",
                            res->fds_before >= 0 ? json_integer(res->fds_before) : json_null());
        json_object_set_new(o, "fds_after",
                            res->fds_after >= 0 ? json_integer(res->fds_after) : json_null());
    } else {
        json_object_set_new(o, "mem_before", json_null());
        json_object_set_new(o, "mem_after", json_null());
        json_object_set_new(o, "mem_peak", json_null());
        json_object_set_new(o, "retained", json_null());
    }
    json_object_set_new(o, "duration_ms", json_real(res->duration_ms));
    if (set_bytes(o, res->status == MV_ST_OK ? "result" : "error", res->payload, res->len) < 0)
        r = -ENOMEM;
    if (res->nhist > 0)
        json_object_set_new(o, "attempt_errors", attempts_json(res->hist, res->nhist));
    /* One pass straight into the buffer. */
    if (r == 0 &&
        json_dump_callback(o, append_cb, out,
                           JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) < 0) {
        out->len = mark;
        r = -ENOMEM;
    }
    json_decref(o);
    return r;
}

/* ---- the job (thread pool) ---- */

/* Encodes every record of the batch and writes the lines; fsyncs after the last batch. */
static void job_cb(uv_work_t *req)
{
    mv_results_t *r = req->data;
    const uint8_t *p = mv_buf_head(&r->batch), *end = p + mv_buf_unread(&r->batch);
    size_t off = 0;

    r->job_error = 0;
    mv_buf_reset(&r->lines);
    while (p < end) {
        const record_t *rec = (const record_t *)p;
        mv_result_t res = rec->res;

        res.hist = (const mv_attempt_t *)(rec + 1);
        res.payload = (const uint8_t *)res.hist + rec->nhist * sizeof(mv_attempt_t);
        res.kind = rec->kind_len ? (const char *)res.payload + res.len : NULL;
        if (mv_results_encode(&res, &r->lines) < 0 || mv_buf_append(&r->lines, "\n", 1) < 0) {
            r->job_error = -ENOMEM;
            return;
        }
        p += rec->size;
    }
    while (off < r->lines.len) {
        ssize_t n = write(r->fd, r->lines.data + off, r->lines.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->job_error = n < 0 ? -errno : -EIO;
            return;
        }
        off += (size_t)n;
    }
    if (r->final && fsync(r->fd) < 0 && errno != EINVAL)
        r->job_error = -errno;
}

static void start_job(mv_results_t *r);

static void finish_close(mv_results_t *r)
{
    mv_results_cb cb = r->on_closed;

    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->on_closed = NULL;
    if (cb)
        cb(r->arg);
}

static void after_job_cb(uv_work_t *req, int status)
{
    mv_results_t *r = req->data;
    bool was_final = r->final;

    r->working = false;
    mv_buf_reset(&r->batch);
    if ((r->job_error || status < 0) && !r->error) {
        r->error = r->job_error ? r->job_error : status;
        if (r->on_error)
            r->on_error(r->arg);
    }
    if (was_final || (r->closing && r->error)) {
        finish_close(r);
        return;
    }
    /* A stream's reader waits for each line: what came in meanwhile goes out at once. */
    if (r->closing || mv_buf_unread(&r->pending) >= FLUSH_BYTES ||
        (r->stream && mv_buf_unread(&r->pending) > 0))
        start_job(r);
    if (r->on_drained && !mv_results_backlogged(r))
        r->on_drained(r->arg);
}

bool mv_results_backlogged(const mv_results_t *r)
{
    return r->working && mv_buf_unread(&r->pending) >= BACKLOG_MAX;
}

/* Hands the pending records to a job (the last one also fsyncs, when closing). */
static void start_job(mv_results_t *r)
{
    mv_buf_t tmp;
    int rc;

    if (r->working || r->fd < 0 || r->error)
        return;
    if (mv_buf_unread(&r->pending) == 0 && !r->closing)
        return;
    tmp = r->batch;
    r->batch = r->pending;
    r->pending = tmp;
    mv_buf_reset(&r->pending);
    r->final = r->closing;
    r->work.data = r;
    rc = uv_queue_work(r->loop, &r->work, job_cb, after_job_cb);
    if (rc < 0) {
        r->error = rc;
        if (r->on_error)
            r->on_error(r->arg);
        if (r->closing)
            finish_close(r);
        return;
    }
    r->working = true;
}

static void timer_cb(uv_timer_t *t)
{
    start_job(t->data);
}

int mv_results_open(mv_results_t *r, uv_loop_t *loop, const char *path, mv_results_cb on_error,
                    void *arg)
{
    struct stat st;
    int rc;

    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->fd = -1;
    r->on_error = on_error;
    r->arg = arg;
    r->path = path;
    if (!path || !*path)
        return 0;
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (r->fd < 0)
        return -errno;
    if (fstat(r->fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
        r->stream = true;
    rc = uv_timer_init(loop, &r->timer);
    if (rc < 0)
        return rc;
    r->timer.data = r;
    r->timer_open = true;
    /* A stream's timer is armed per result instead (mv_results_add). */
    if (!r->stream)
        uv_timer_start(&r->timer, timer_cb, FLUSH_EVERY_MS, FLUSH_EVERY_MS);
    /* The flush timer alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&r->timer);
    return 0;
}

int mv_results_add(mv_results_t *r, const mv_result_t *res)
{
    size_t hist = (size_t)res->nhist * sizeof(mv_attempt_t);
    size_t kind = res->kind ? strlen(res->kind) + 1 : 0;
    size_t size = (sizeof(record_t) + hist + res->len + kind + 7) & ~(size_t)7;
    record_t *rec;
    int rc;

    r->count[res->status]++;
    if (r->fd < 0 || r->error)
        return 0;
    rc = mv_buf_reserve(&r->pending, size);
    if (rc < 0)
        return rc;
    rec = (record_t *)(r->pending.data + r->pending.len);
    rec->size = (uint32_t)size;
    rec->nhist = (uint32_t)res->nhist;
    rec->kind_len = (uint32_t)kind;
    rec->res = *res;
    if (hist)
        memcpy(rec + 1, res->hist, hist);
    if (res->len)
        memcpy((uint8_t *)(rec + 1) + hist, res->payload, res->len);
    if (kind)
        memcpy((uint8_t *)(rec + 1) + hist + res->len, res->kind, kind);
    r->pending.len += size;
    if (mv_buf_unread(&r->pending) >= FLUSH_BYTES)
        start_job(r);
    else if (r->stream && !r->working && !uv_is_active((uv_handle_t *)&r->timer))
        /* Due at the next loop iteration: the results of this one go out together. */
        uv_timer_start(&r->timer, timer_cb, 0, 0);
    return 0;
}

void mv_results_close(mv_results_t *r, mv_results_cb on_closed)
{
    r->closing = true;
    r->on_closed = on_closed;
    if (r->timer_open) {
        r->timer_open = false;
        uv_close((uv_handle_t *)&r->timer, NULL);
    }
    if (r->fd < 0 || r->error) {
        if (!r->working)
            finish_close(r);
        return;
    }
    start_job(r); /* the final one: remaining records, then fsync (after any job in flight) */
}

void mv_results_free(mv_results_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    mv_buf_free(&r->pending);
    mv_buf_free(&r->batch);
    mv_buf_free(&r->lines);
}
