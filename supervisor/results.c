/*
 * results: JSON Lines results, encoded and written by thread-pool jobs.
 *
 * Threads: the loop owns `pending`, the counts and the handles; a job owns `batch`, `lines`
 * and the file position fields while it runs. The two meet only in after_job (on the loop),
 * when the job is done, so no lock is needed.
 */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "runlock.h"

/* Small batches: at a modest rate the buffers stay small (bench/footprint); at a high one
 * results pile up while a job runs, so the batches grow by themselves. A batch is handed to a
 * job before a record would take it past FLUSH_BYTES, so with no job running it stays at
 * that (it doubled to 32 KiB at each flush, and kept 64 KiB after a burst: bench/footprint). */
#define FLUSH_BYTES    (16 * 1024)
#define FLUSH_EVERY_MS 100
#define BACKLOG_MAX    (1024 * 1024)
#define RETRY_EVERY_MS 500
#define SYNC_EVERY_MS  1000
#define READ_CHUNK     (1024 * 1024)
/* A job writes its batch's lines once they hold this much: a line is ~2.5 times its record,
 * and a burst's batch (records that piled up while a job ran) made a text of a megabyte.
 * Half of FLUSH_BYTES: with lines shorter than 8 KiB the text's buffer stays at 16 KiB (a
 * 16 KiB slice went past it, and the buffer doubled to 32 KiB). */
#define SLICE_BYTES (8 * 1024)

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

/*
 * Encoding. A batch of a leaky Python run is 60,000 results whose lines all have the same keys
 * in the same order; a new jansson object for each (a malloc per key and per value, a hash
 * table grown three times) was a quarter of the ~6 us of thread-pool CPU a line costs, and on
 * a 2-core host every microsecond of it is taken from the workers (issue 13; the rest is
 * jansson's dump). So a job keeps one object and
 * overwrites its values in place, walking its keys in order: a line gets the keys (and the
 * order) that a fresh object would have, because the same calls below name them in the same
 * order; the first key that differs (another shape: not measured, heap figures, an error, a
 * retry...) clears the object and builds it anew from that result. Either way the text is
 * what json_dump_callback makes of the same keys and values.
 */
typedef struct put {
    json_t *o;
    void *iter; /* updating: the next key of o; NULL when building */
    bool update, differs;
} put_t;

/* Puts v (a new reference) under key, as a new key or over the value there. v NULL (out of
 * memory, text jansson refused, a NaN) leaves the key out, as json_object_set_new does. */
static void put(put_t *p, const char *key, json_t *v)
{
    if (!p->update) {
        json_object_set_new_nocheck(p->o, key, v);
        return;
    }
    if (!v || p->differs || !p->iter || strcmp(json_object_iter_key(p->iter), key) != 0) {
        p->differs = true;
        json_decref(v);
        return;
    }
    json_object_iter_set_new(p->o, p->iter, v);
    p->iter = json_object_iter_next(p->o, p->iter);
}

/* The value to overwrite in place for key, or NULL: building, another key (the shape
 * differs), or a value of another type (then put() replaces it). Moves past the key when it
 * returns one. */
static json_t *in_place(put_t *p, const char *key, json_type type)
{
    json_t *cur;

    if (!p->update || p->differs || !p->iter)
        return NULL;
    if (strcmp(json_object_iter_key(p->iter), key) != 0) {
        p->differs = true;
        return NULL;
    }
    cur = json_object_iter_value(p->iter);
    if (json_typeof(cur) != type)
        return NULL;
    p->iter = json_object_iter_next(p->o, p->iter);
    return cur;
}

/* An overwrite that jansson refused (text that is not UTF-8, a NaN): a fresh object would
 * leave the key out, so this one is built anew. */
static void set_or_differ(put_t *p, int rc)
{
    if (rc < 0)
        p->differs = true;
}

static void put_int(put_t *p, const char *key, json_int_t n)
{
    json_t *cur = in_place(p, key, JSON_INTEGER);

    if (cur)
        json_integer_set(cur, n);
    else if (!p->differs)
        put(p, key, json_integer(n));
}

/* An integer when `have`, else null. */
static void put_int_if(put_t *p, const char *key, bool have, json_int_t n)
{
    if (have)
        put_int(p, key, n);
    else if (!in_place(p, key, JSON_NULL) && !p->differs)
        put(p, key, json_null());
}

/* Text jansson checks (UTF-8): left out when it is not, or NULL. */
static void put_text(put_t *p, const char *key, const char *s)
{
    json_t *cur = s ? in_place(p, key, JSON_STRING) : NULL;

    if (cur)
        set_or_differ(p, json_string_set(cur, s));
    else if (!p->differs)
        put(p, key, json_string(s));
}

/* Text checked already (mv_utf8_valid is as strict as jansson), or base64: jansson's own
 * check would read a large answer once more (7% of memvisor's time on 90-KB answers). */
static void put_checked(put_t *p, const char *key, const char *s, size_t n)
{
    json_t *cur = in_place(p, key, JSON_STRING);

    if (cur)
        set_or_differ(p, json_string_setn_nocheck(cur, s, n));
    else if (!p->differs)
        put(p, key, json_stringn_nocheck(s, n));
}

/* Sets key (text) or key_base64 (any other bytes) so that every payload survives. */
static int put_bytes(put_t *p, const char *key, const void *b, size_t n)
{
    char k64[32];
    char *b64;

    if (mv_utf8_valid(b, n)) {
        put_checked(p, key, b ? b : "", n);
        return 0;
    }
    b64 = mv_base64(b, n);
    if (!b64)
        return -1;
    snprintf(k64, sizeof k64, "%s_base64", key);
    put_checked(p, k64, b64, strlen(b64));
    free(b64);
    return 0;
}

/* The heap figures of a task (docs/run-files.md): only when it has some. */
static void heap_json(put_t *p, const mv_heap_task_t *h)
{
    put_text(p, "heap_source", h->source);
    put_int(p, "heap_before", h->before);
    put_int(p, "heap_after", h->after);
    put_int(p, "heap_retained", h->after - h->before);
    put_int_if(p, "heap_blocks", h->blocks != INT64_MIN, h->blocks);
    put_int_if(p, "heap_allocs", h->allocs >= 0, h->allocs);
    put_int_if(p, "heap_frees", h->frees >= 0, h->frees);
}

/* A wall-clock time as ISO 8601 UTC with microseconds; 0 = null (never happened). */
static void put_time(put_t *p, const char *key, int64_t us)
{
    char iso[48];
    json_t *cur;

    if (!us) {
        put_int_if(p, key, false, 0);
        return;
    }
    mv_iso_time_us(us, iso);
    /* ASCII digits and punctuation: nothing to check */
    if ((cur = in_place(p, key, JSON_STRING)))
        json_string_set_nocheck(cur, iso);
    else if (!p->differs)
        put(p, key, json_string_nocheck(iso));
}

/* Every key of a result line, in order. -ENOMEM for a payload that cannot be encoded. */
static int put_result(put_t *p, const mv_result_t *res, const char *host, const char *consumer)
{
    json_t *cur;
    int r = 0;

    put_int(p, "task", (json_int_t)res->task);
    put_text(p, "status", mv_status_name(res->status));
    put_int(p, "attempts", res->attempts);
    put_int_if(p, "worker", res->slot, res->slot);
    put_int_if(p, "gen", res->gen, res->gen);
    put_int_if(p, "pid", res->pid, res->pid);
    if (res->kind)
        put_text(p, "kind", res->kind);
    else
        put_int_if(p, "kind", false, 0);
    put_time(p, "started", res->started_us);
    put_time(p, "ended", res->ended_us);
    put_int_if(p, "mem_before", res->measured, res->mem_before);
    put_int_if(p, "mem_after", res->measured, res->mem_after);
    put_int_if(p, "mem_peak", res->measured, res->mem_peak);
    put_int_if(p, "retained", res->measured, res->retained);
    if (res->measured) {
        put_text(p, "peak_source", res->peak_source);
        put_int_if(p, "fds_before", res->fds_before >= 0, res->fds_before);
        put_int_if(p, "fds_after", res->fds_after >= 0, res->fds_after);
        if (res->heap.measured)
            heap_json(p, &res->heap);
    }
    if (isnan(res->duration_ms)) /* no answer came (quarantined, lost, written off) */
        put_int_if(p, "duration_ms", false, 0);
    else if ((cur = in_place(p, "duration_ms", JSON_REAL)))
        set_or_differ(p, json_real_set(cur, res->duration_ms));
    else if (!p->differs)
        put(p, "duration_ms", json_real(res->duration_ms));
    put_int_if(p, "mem_limit", res->mem_limit > 0, res->mem_limit);
    if (res->escalations > 0)
        put_int(p, "escalations", res->escalations);
    if (put_bytes(p, res->status == MV_ST_OK ? "result" : "error", res->payload, res->len) < 0)
        r = -ENOMEM;
    if (res->nhist > 0)
        put(p, "attempt_errors", mv_attempts_json(res->hist, res->nhist, host));
    if (host)
        put_text(p, "host", host);
    if (consumer)
        put_text(p, "consumer", consumer);
    return r;
}

/* jansson calls this for every token: the common case (room left) stays a memcpy. */
static int append_cb(const char *buffer, size_t size, void *data)
{
    mv_buf_t *b = data;

    if (b->cap - b->len >= size) {
        memcpy(b->data + b->len, buffer, size);
        b->len += size;
        return 0;
    }
    return mv_buf_append(b, buffer, size) < 0 ? -1 : 0;
}

int mv_results_encode(const mv_result_t *res, mv_buf_t *out)
{
    return mv_results_encode_at(res, NULL, NULL, out);
}

int mv_results_encode_at(const mv_result_t *res, const char *host, const char *consumer,
                         mv_buf_t *out)
{
    return mv_results_encode_into(NULL, res, host, consumer, out);
}

int mv_results_encode_into(json_t **keep, const mv_result_t *res, const char *host,
                           const char *consumer, mv_buf_t *out)
{
    put_t p = {.o = keep ? *keep : NULL};
    size_t mark = out->len;
    int r;

    if (p.o) {
        p.update = true;
        p.iter = json_object_iter(p.o);
        r = put_result(&p, res, host, consumer);
        if (p.differs || p.iter) { /* another shape: built anew */
            json_object_clear(p.o);
            p = (put_t){.o = p.o};
            r = put_result(&p, res, host, consumer);
        }
    } else {
        if (!(p.o = json_object()))
            return -ENOMEM;
        r = put_result(&p, res, host, consumer);
    }
    /* One pass straight into the buffer. */
    if (r == 0 &&
        json_dump_callback(p.o, append_cb, out,
                           JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) < 0) {
        out->len = mark;
        r = -ENOMEM;
    }
    if (keep)
        *keep = p.o;
    else
        json_decref(p.o);
    return r;
}

/* ---- the job (thread pool) ---- */

/* Newlines in lines.data[from, to). (An empty batch has no data at all: NULL.) */
static uint64_t count_lines(const mv_buf_t *b, size_t from, size_t to)
{
    const uint8_t *p, *e;
    uint64_t k = 0;

    if (from >= to)
        return 0;
    for (p = b->data + from, e = b->data + to; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        k++;
    return k;
}

/* Encodes the batch's next records, from batch_off, into `lines` until it holds SLICE_BYTES.
 * 0 or -ENOMEM. */
static int encode_slice(mv_results_t *r)
{
    const uint8_t *p = mv_buf_head(&r->batch) + r->batch_off,
                  *end = mv_buf_head(&r->batch) + mv_buf_unread(&r->batch);

    mv_buf_reset(&r->lines);
    while (p < end && r->lines.len < SLICE_BYTES) {
        const record_t *rec = (const record_t *)p;
        mv_result_t res = rec->res;

        res.hist = (const mv_attempt_t *)(rec + 1);
        res.payload = (const uint8_t *)res.hist + rec->nhist * sizeof(mv_attempt_t);
        res.kind = rec->kind_len ? (const char *)res.payload + res.len : NULL;
        if (mv_results_encode_into(&r->enc, &res, NULL, NULL, &r->lines) < 0 ||
            mv_buf_append(&r->lines, "\n", 1) < 0)
            return -ENOMEM;
        p += rec->size;
    }
    r->batch_off = (size_t)(p - mv_buf_head(&r->batch));
    r->encoded = true;
    r->lines_kept = r->lines_off = 0;
    return 0;
}

/* A write failed after lines_off bytes: keep the whole lines among them and cut the file
 * back to the last one, so it never ends in a torn line. The rest is written again by the
 * retry. A pipe or device cannot be cut: there the retry goes on where the write stopped. */
static void keep_whole_lines(mv_results_t *r)
{
    size_t keep = r->lines_kept;

    for (size_t i = r->lines_off; i > r->lines_kept; i--)
        if (r->lines.data[i - 1] == '\n') {
            keep = i;
            break;
        }
    r->job_lines += count_lines(&r->lines, r->lines_kept, keep);
    r->size += keep - r->lines_kept;
    r->lines_kept = keep;
    if (r->regular) {
        r->lines_off = keep;
        if (ftruncate(r->fd, (off_t)r->size) < 0)
            r->job_fatal = true; /* the torn bytes stay: nothing more may be appended */
    }
}

/* Encodes the batch a slice at a time (a retry writes the slice a failed write left, then
 * goes on), writes what is not in the file yet, and syncs at most once a second and after
 * the last batch. */
static void job_cb(uv_work_t *req)
{
    mv_results_t *r = req->data;
    struct stat st;
    uint64_t now;

    r->job_error = 0;
    r->job_lines = 0;
    /* The first job: every check passed and the run is committed to the file. A torn line
     * left by the run this one resumes is cut before anything is appended (size is the end
     * of its last whole line). */
    if (!r->started && r->torn && ftruncate(r->fd, (off_t)r->size) < 0) {
        r->job_error = -errno;
        return;
    }
    r->started = true;
    r->torn = 0;
    /* The file was removed under the run: what is appended would go with it. */
    if (r->regular && fstat(r->fd, &st) == 0 && st.st_nlink == 0) {
        r->job_error = -ENOENT;
        r->job_fatal = true;
        return;
    }
    /* Slice by slice: a burst's batch is not held twice over, as records and as its text. */
    while (r->encoded || r->batch_off < mv_buf_unread(&r->batch)) {
        if (!r->encoded && encode_slice(r) < 0) {
            r->job_error = -ENOMEM;
            r->job_fatal = true;
            return;
        }
        while (r->lines_off < r->lines.len) {
            ssize_t n = write(r->fd, r->lines.data + r->lines_off, r->lines.len - r->lines_off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r->job_error = n < 0 ? -errno : -EIO;
                keep_whole_lines(r);
                return;
            }
            r->lines_off += (size_t)n;
        }
        r->job_lines += count_lines(&r->lines, r->lines_kept, r->lines.len);
        r->size += r->lines.len - r->lines_kept;
        r->lines_kept = r->lines_off;
        r->encoded = false;
    }
    now = mv_now_ms();
    if (r->final || r->sync_each || now - r->synced_ms >= SYNC_EVERY_MS) {
        /* fdatasync: the size is part of the data it makes durable. A failed sync is not
         * retried: after one, Linux may have dropped the dirty pages it could not write, and
         * a second sync would report success for data that is gone. EINVAL: a pipe. */
        if (fdatasync(r->fd) < 0 && errno != EINVAL) {
            r->job_error = -errno;
            r->job_fatal = true;
        }
        r->synced_ms = now;
    }
}

static void start_job(mv_results_t *r);

/* Logs what a writer that gave up did not write (once, at close). */
static void report_unwritten(mv_results_t *r)
{
    if (!r->log || r->added <= r->written)
        return;
    mv_error(
        r->log, "results_incomplete", MV_S("file", r->path), MV_I("written", (long long)r->written),
        MV_I("unwritten", (long long)(r->added - r->written)), MV_S("error", uv_strerror(r->error)),
        MV_S("msg", r->regular ? "the file ends with whole lines; tasks without a line run "
                                 "again with --resume once the file can be written"
                               : "results after the failure are missing"));
}

static void finish_close(mv_results_t *r)
{
    mv_results_cb cb = r->on_closed;

    if (r->error)
        report_unwritten(r);
    if (r->on_written)
        r->on_written(r->written_arg, r->written, true);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->retry_open) {
        r->retry_open = false;
        uv_close((uv_handle_t *)&r->retry, NULL);
    }
    r->on_closed = NULL;
    if (cb)
        cb(r->arg);
}

/* Errors a full or failing disk gives, which freeing space or a transient fault can end. */
static bool retryable(int err)
{
    return err == -ENOSPC || err == -EDQUOT || err == -EIO || err == -EAGAIN;
}

static void queue_job(mv_results_t *r);

static void retry_cb(uv_timer_t *t)
{
    mv_results_t *r = t->data;

    if (r->stalled && !r->working)
        queue_job(r); /* the same batch, from where it stopped */
}

/* A job failed with `err`: stall and retry, or give up. */
static void job_failed(mv_results_t *r, int err, bool was_final)
{
    uint64_t now = mv_now_ms();

    if (!r->job_fatal && retryable(err) && r->retry_ms > 0 &&
        (!r->stalled || now - r->stall_since < (uint64_t)r->retry_ms)) {
        if (!r->stalled) {
            r->stalled = true;
            r->stall_since = now;
            if (r->log)
                mv_warn(r->log, "results_write_stalled", MV_S("file", r->path),
                        MV_S("error", uv_strerror(err)), MV_I("retry_ms", r->retry_ms),
                        MV_S("msg", "no new task starts; results of running tasks wait in "
                                    "memory while the write is retried"));
        }
        if (!r->retry_open) {
            uv_timer_init(r->loop, &r->retry);
            r->retry.data = r;
            r->retry_open = true;
        }
        uv_timer_start(&r->retry, retry_cb, RETRY_EVERY_MS, 0);
        return;
    }
    r->stalled = false;
    r->error = err;
    if (r->on_error)
        r->on_error(r->arg);
    if (was_final || r->closing)
        finish_close(r);
}

static void after_job_cb(uv_work_t *req, int status)
{
    mv_results_t *r = req->data;
    bool was_final = r->final;
    int err = r->job_error ? r->job_error : status;

    r->working = false;
    r->written += r->job_lines;
    if (err) {
        job_failed(r, err, was_final);
        return;
    }
    mv_buf_reset(&r->batch);
    r->batch_off = 0;
    /* What a burst grew is given back: a steady rate keeps its batches at FLUSH_BYTES. */
    mv_buf_shrink(&r->batch, FLUSH_BYTES);
    if (!r->encoded) { /* written: its text is not needed for a retry */
        mv_buf_reset(&r->lines);
        mv_buf_shrink(&r->lines, FLUSH_BYTES);
    }
    if (r->stalled) {
        r->stalled = false;
        if (r->log)
            mv_info(r->log, "results_write_recovered", MV_S("file", r->path),
                    MV_I("stalled_ms", (long long)(mv_now_ms() - r->stall_since)));
    }
    if (r->on_written && !was_final)
        r->on_written(r->written_arg, r->written, false);
    if (was_final) {
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
    return r->stalled || (r->working && mv_buf_unread(&r->pending) >= BACKLOG_MAX);
}

/* Runs a job on `batch` (new, or the one a failed write left); the last one, when closing
 * and nothing else waits, also syncs. */
static void queue_job(mv_results_t *r)
{
    int rc;

    r->final = r->closing && mv_buf_unread(&r->pending) == 0;
    r->job_fatal = false;
    r->work.data = r;
    rc = uv_queue_work(r->loop, &r->work, job_cb, after_job_cb);
    if (rc < 0) {
        r->stalled = false;
        r->error = rc;
        if (r->on_error)
            r->on_error(r->arg);
        if (r->closing)
            finish_close(r);
        return;
    }
    r->working = true;
}

/* Hands the pending records to a job. */
static void start_job(mv_results_t *r)
{
    mv_buf_t tmp;

    /* While stalled, the failed batch goes first: retry_cb runs it. */
    if (r->working || r->fd < 0 || r->error || r->stalled)
        return;
    if (mv_buf_unread(&r->pending) == 0 && !r->closing)
        return;
    tmp = r->batch;
    r->batch = r->pending;
    r->pending = tmp;
    mv_buf_reset(&r->pending);
    r->encoded = false;
    r->batch_off = 0;
    queue_job(r);
}

static void timer_cb(uv_timer_t *t)
{
    start_job(t->data);
}

/* ---- opening: check, claim, read back ---- */

/* Reads the file from the start into a scan. 0 or -errno. */
static int read_back(int fd, mv_resume_scan_t *scan)
{
    char *buf = malloc(READ_CHUNK);
    off_t off = 0;
    ssize_t n;
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    mv_resume_begin(scan);
    while ((n = pread(fd, buf, READ_CHUNK, off)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        off += n;
        rc = mv_resume_feed(scan, buf, (size_t)n);
        if (rc < 0)
            break;
    }
    free(buf);
    if (rc == 0 || rc == -EINVAL)
        rc = mv_resume_end(scan);
    return rc;
}

/* Resume: the ids the file has lines for, the counts, and where appending starts. */
static int resume_from(mv_results_t *r, const mv_results_opts_t *o, char *why, size_t n)
{
    mv_resume_scan_t scan;
    int rc = read_back(r->fd, &scan);

    if (rc == -EINVAL)
        snprintf(why, n,
                 "cannot resume %s: line %llu is not a result (%s); is it a memvisor "
                 "results file?",
                 r->path, (unsigned long long)scan.bad_line, scan.why);
    else if (rc < 0)
        snprintf(why, n, "cannot read %s back: %s", r->path, strerror(-rc));
    if (rc < 0) {
        mv_resume_free(&scan);
        return rc;
    }
    r->done = scan.done;
    scan.done = (mv_idset_t){0};
    for (int k = 0; k < MV_ST_COUNT; k++)
        r->count[k] = scan.count[k];
    r->resumed = scan.lines;
    r->size = scan.valid;
    r->torn = scan.torn;
    if (o->tasks)
        o->tasks->skip = &r->done;
    if (o->log)
        mv_info(o->log, "resume", MV_S("file", r->path), MV_I("done", (long long)scan.lines),
                MV_I("ok", (long long)scan.count[0]), MV_I("failed", (long long)scan.count[1]),
                MV_I("quarantined", (long long)scan.count[2]),
                MV_I("duplicates", (long long)scan.dups), MV_I("torn_bytes", (long long)scan.torn));
    mv_resume_free(&scan);
    return 0;
}

/* The verdicts shared by mv_results_check and mv_results_open, on an open fd of the file. */
static int judge(const char *path, int fd, const struct stat *st, bool resume, bool *unlocked,
                 char *why, size_t n)
{
    char who[256];
    int rc = mv_lock_take(fd, MV_LOCK_GRACE_MS, true);

    if (rc == -EWOULDBLOCK) {
        mv_lock_describe(mv_lock_holder(fd), who, sizeof who);
        snprintf(why, n, "results file %s is in use by another memvisor run: %s", path, who);
        return -EBUSY;
    }
    /* A file system without flock (some network ones): the run goes on unprotected. */
    if (rc < 0 && rc != -ENOLCK && rc != -EOPNOTSUPP) {
        snprintf(why, n, "cannot lock %s: %s", path, strerror(-rc));
        return rc;
    }
    if (rc < 0)
        *unlocked = true;
    if (st->st_size > 0 && !resume) {
        snprintf(why, n,
                 "results file %s already holds %lld bytes of results: give --resume "
                 "to continue that batch (tasks with a result line are skipped, the others run "
                 "and are appended), or move the file away; memvisor never truncates results",
                 path, (long long)st->st_size);
        return -EEXIST;
    }
    return 0;
}

static int not_regular(const char *path, char *why, size_t n)
{
    snprintf(why, n, "--resume reads the results back: %s is not a regular file", path);
    return -EINVAL;
}

int mv_results_check(const char *path, bool resume, char *why, size_t n)
{
    struct stat st;
    bool unlocked = false;
    int fd, rc;

    why[0] = '\0';
    if (!path || !*path)
        return 0;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISREG(st.st_mode))
        return resume ? not_regular(path, why, n) : 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    rc = judge(path, fd, &st, resume, &unlocked, why, n);
    close(fd); /* lets the lock go: this was only a look */
    return rc;
}

/* Opens a regular file (making it when it is missing) without truncating it. */
static int open_regular(mv_results_t *r, bool resume)
{
    int flags = (resume ? O_RDWR : O_WRONLY) | O_APPEND | O_CLOEXEC | O_NOCTTY;

    for (int i = 0; i < 2; i++) {
        r->fd = open(r->path, flags | O_CREAT | O_EXCL, 0644);
        if (r->fd >= 0) {
            r->created = true;
            return 0;
        }
        if (errno != EEXIST)
            return -errno;
        r->fd = open(r->path, flags);
        if (r->fd >= 0 || errno != ENOENT)
            return r->fd >= 0 ? 0 : -errno;
        /* Removed between the two opens: make it, once more. */
    }
    return -ENOENT;
}

int mv_results_open(mv_results_t *r, uv_loop_t *loop, const mv_results_opts_t *o, char *why,
                    size_t n)
{
    struct stat st;
    bool unlocked = false;
    int rc;

    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->fd = -1;
    r->path = o->path;
    r->log = o->log;
    r->retry_ms = o->retry_ms;
    r->on_error = o->on_error;
    r->arg = o->arg;
    why[0] = '\0';
    if (!o->path || !*o->path)
        return 0;
    if (stat(o->path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A pipe, a terminal, /dev/null: written as it is, never locked or read back. */
        if (o->resume)
            return not_regular(o->path, why, n);
        r->fd = open(o->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
        rc = r->fd < 0 ? -errno : 0;
        r->stream = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
    } else {
        rc = open_regular(r, o->resume);
        if (rc == 0 && fstat(r->fd, &st) < 0)
            rc = -errno;
        r->regular = rc == 0 && S_ISREG(st.st_mode);
        if (r->regular)
            rc = judge(o->path, r->fd, &st, o->resume, &unlocked, why, n);
        if (rc == 0 && unlocked && o->log)
            mv_warn(o->log, "results_unlocked", MV_S("file", o->path),
                    MV_S("msg", "this file system has no flock: a second memvisor on this file "
                                "would not be refused"));
        if (rc == 0 && r->regular)
            r->size = (uint64_t)st.st_size;
        if (rc == 0 && o->resume && r->regular)
            rc = resume_from(r, o, why, n);
    }
    if (rc < 0 && !*why)
        snprintf(why, n, "cannot open %s: %s", o->path, strerror(-rc));
    if (rc < 0 && r->fd >= 0) {
        /* Only a file this run made and locked is removed: a busy one is the holder's. */
        if (r->created && rc != -EBUSY)
            unlink(o->path);
        close(r->fd);
        r->fd = -1;
        r->created = false;
    }
    return rc;
}

int mv_results_add(mv_results_t *r, const mv_result_t *res)
{
    size_t hist = (size_t)res->nhist * sizeof(mv_attempt_t);
    size_t kind = res->kind ? strlen(res->kind) + 1 : 0;
    size_t size = (sizeof(record_t) + hist + res->len + kind + 7) & ~(size_t)7;
    record_t *rec;
    int rc;

    /* Resumed: a task whose line the file holds ran again only for a Redis results stream
     * (memvisor died before the result reached it): its line and count are there already. */
    if (mv_idset_has(&r->done, res->task))
        return 0;
    r->count[res->status]++;
    r->added++;
    if (r->fd < 0 || r->error)
        return 0;
    if (!r->timer_open && !r->closing) {
        /* The flush timer starts with the first result. It alone must not keep the loop
         * alive. */
        uv_timer_init(r->loop, &r->timer);
        r->timer.data = r;
        r->timer_open = true;
        /* A stream's timer is armed per result instead (below). */
        if (!r->stream)
            uv_timer_start(&r->timer, timer_cb, FLUSH_EVERY_MS, FLUSH_EVERY_MS);
        uv_unref((uv_handle_t *)&r->timer);
    }
    /* Full: handed to a job first (when none runs), rather than grown. */
    if (mv_buf_unread(&r->pending) + size > FLUSH_BYTES)
        start_job(r);
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
    /* The final job: remaining records, then a sync (after any job in flight; while stalled,
     * after the retried batch). */
    start_job(r);
}

void mv_results_free(mv_results_t *r)
{
    /* A run that never wrote (refused, or it ended before its loop ran) leaves no file it
     * made itself. */
    if (r->fd >= 0 && r->created && !r->started && r->path)
        unlink(r->path);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    mv_idset_free(&r->done);
    mv_buf_free(&r->pending);
    mv_buf_free(&r->batch);
    mv_buf_free(&r->lines);
    json_decref(r->enc);
    r->enc = NULL;
}
