/*
 * timeline: the memory timeline, written by thread-pool jobs (see timeline.h).
 *
 * Why CSV-like text rather than JSON Lines: a point is 9 numbers, and a run of a million
 * tasks on 64 workers makes millions of them; "p,T,SLOT,GEN,USAGE,PRIV,RSS,HEAP,TASK" is about
 * 50 bytes where the same JSON object is about 110, it appends and decimates line by line,
 * and it still reads with `grep`, `awk` or a spreadsheet. Only numbers and [a-z0-9_] words
 * appear in it, so it needs no quoting (reasons are filtered to that set when queued).
 */
#include "timeline.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Small batches: at a modest rate the buffers stay small (bench/footprint); at a high one
 * records pile up while a job runs, so the batches grow by themselves. A batch is handed to a
 * job before a record would take it past FLUSH_BYTES, so with no job running it never grows
 * past that (it doubled to 32 KiB at each flush: bench/footprint). */
#define FLUSH_BYTES (16 * 1024)
/* A job writes its text once it holds this much (the longest row is 224 bytes): the text of
 * a 16 KiB batch is ~8 KiB, and of a burst's batch as much as the records; it is written in
 * pieces so that its buffer stays at TEXT_BYTES. */
#define TEXT_BYTES  (8 * 1024)
#define ROW_MAX     256
#define BACKLOG_MAX (1024 * 1024)
#define GROUP       4 /* points a decimation folds into two */
#define REASON_MAX  32

/* A queued record: a point or a mark, stamped on the loop. */
typedef struct rec {
    uint64_t t; /* ms since the timeline opened */
    char type;  /* 'p' or 'm' */
    union {
        mv_tl_point_t p;
        struct {
            mv_tl_mark_t m;
            char reason[REASON_MAX];
        };
    };
} rec_t;

const char *mv_tl_what_name(mv_tl_what_t w)
{
    static const char *const n[MV_TL_COUNT] = {"spawn", "recycle", "kill", "oom", "exit"};
    return (unsigned)w < MV_TL_COUNT ? n[w] : "?";
}

/* "" for -1 (unknown), else the number: unknown fields stay empty, which keeps rows short. */
static char *num(char *buf, size_t n, int64_t v)
{
    if (v < 0)
        buf[0] = '\0';
    else
        snprintf(buf, n, "%" PRId64, v);
    return buf;
}

/* Appends v in decimal at p (20 digits at most); returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* A field after its comma: empty for -1 (unknown), as num() writes it. */
static char *put_field(char *p, int64_t v)
{
    *p++ = ',';
    return v < 0 ? p : put_u64(p, (uint64_t)v);
}

/* One point row, newline included, into out. -ENOMEM or 0. With [tasks] accounting there is
 * a point per task, the job's commonest row: written digit by digit, the text snprintf would
 * make, in ~42 ns instead of ~290 (docs/accounting.md). At most ~150 bytes (ROW_MAX). */
static int format_point(mv_buf_t *out, uint64_t t, const mv_tl_point_t *p)
{
    char line[ROW_MAX], *e = line;

    *e++ = 'p';
    *e++ = ',';
    e = put_u64(e, t);
    *e++ = ',';
    e = put_u64(e, (uint64_t)(p->slot > 0 ? p->slot : 0)); /* 0: a spare, no slot yet */
    *e++ = ',';
    e = put_u64(e, p->gen);
    e = put_field(e, p->usage);
    e = put_field(e, p->priv);
    e = put_field(e, p->rss);
    e = put_field(e, p->heap);
    e = put_field(e, p->task ? (int64_t)p->task : -1);
    *e++ = '\n';
    return mv_buf_append(out, line, (size_t)(e - line));
}

static int format_mark(mv_buf_t *out, const rec_t *r)
{
    const mv_tl_mark_t *m = &r->m;
    char a[24], b[24], c[24], d[24], line[224];
    int n = snprintf(line, sizeof line, "m,%" PRIu64 ",%d,%" PRIu32 ",%s,%s,%s,%s,%s,%s\n", r->t,
                     m->slot, m->gen, mv_tl_what_name(m->what), r->reason,
                     m->pid > 0 ? num(a, sizeof a, m->pid) : "", num(b, sizeof b, m->soft),
                     num(c, sizeof c, m->hard), m->task ? num(d, sizeof d, (int64_t)m->task) : "");

    return mv_buf_append(out, line, (size_t)n);
}

/* ---- decimation (in the job, or a test) ------------------------------------------------ */

/* A point as read back from the file. */
typedef struct pt {
    uint64_t t;
    mv_tl_point_t p;
} pt_t;

/* The points of one generation waiting to be folded. */
typedef struct series {
    int slot;
    uint32_t gen;
    bool used;
    pt_t g[GROUP];
    int n;
} series_t;

typedef struct dec {
    FILE *out;
    series_t *s; /* open series, found by linear search: a few per slot */
    size_t ns, cap;
    int64_t written;
    int err;
} dec_t;

/* Parses up to `max` numeric fields of a row after its type letter (modifies s); -1 for an
 * empty field. Returns the count of fields, or -1 when one is not a number. */
static int fields(char *s, int64_t *v, int max)
{
    int n = 0;

    while (s && n < max) {
        char *comma = strchr(s, ','), *end;

        if (comma)
            *comma = '\0';
        if (*s == '\0') {
            v[n] = -1;
        } else {
            errno = 0;
            v[n] = strtoll(s, &end, 10);
            if (*end != '\0' || errno || v[n] < 0)
                return -1;
        }
        n++;
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

static void put_point(dec_t *d, const pt_t *x)
{
    mv_buf_t b = {0};

    if (d->err || format_point(&b, x->t, &x->p) < 0) {
        d->err = d->err ? d->err : -ENOMEM;
        mv_buf_free(&b);
        return;
    }
    if (fwrite(b.data, 1, b.len, d->out) != b.len)
        d->err = -EIO;
    d->written++;
    mv_buf_free(&b);
}

/* Writes what a series holds: a full group as its min and max usage points (in time
 * order), fewer points as they are. */
static void flush_series(dec_t *d, series_t *s)
{
    int lo = 0, hi = 0;

    if (s->n < GROUP) {
        for (int i = 0; i < s->n; i++)
            put_point(d, &s->g[i]);
        s->n = 0;
        return;
    }
    for (int i = 1; i < s->n; i++) {
        if (s->g[i].p.usage < s->g[lo].p.usage)
            lo = i;
        if (s->g[i].p.usage > s->g[hi].p.usage)
            hi = i;
    }
    put_point(d, &s->g[MV_MIN(lo, hi)]);
    if (lo != hi)
        put_point(d, &s->g[MV_MAX(lo, hi)]);
    s->n = 0;
}

/* The open series of (slot, gen); made on first sight (in the place of one whose generation
 * has ended, when there is one), then `*fresh` is set. */
static series_t *series_of(dec_t *d, int slot, uint32_t gen, bool *fresh)
{
    series_t *s, *free_one = NULL;

    *fresh = false;
    for (size_t i = 0; i < d->ns; i++) {
        if (d->s[i].used && d->s[i].slot == slot && d->s[i].gen == gen)
            return &d->s[i];
        if (!d->s[i].used && !free_one)
            free_one = &d->s[i];
    }
    if (free_one) {
        s = free_one;
    } else if (d->ns == d->cap) {
        size_t cap = MV_MAX(d->cap * 2, 16);
        series_t *n = realloc(d->s, cap * sizeof *n);

        if (!n)
            return NULL;
        d->s = n;
        d->cap = cap;
        s = &d->s[d->ns++];
    } else {
        s = &d->s[d->ns++];
    }
    memset(s, 0, sizeof *s);
    s->slot = slot;
    s->gen = gen;
    s->used = true;
    *fresh = true;
    return s;
}

/* One point row in the decimated part: the first of its generation passes, the others fold
 * in groups. */
static void dec_point(dec_t *d, const pt_t *x)
{
    bool fresh;
    series_t *s = series_of(d, x->p.slot, x->p.gen, &fresh);

    if (!s) {
        d->err = -ENOMEM;
        return;
    }
    if (fresh) {
        put_point(d, x);
        return;
    }
    s->g[s->n++] = *x;
    if (s->n == GROUP)
        flush_series(d, s);
}

/* A mark ends its generation's group, so points never move across a mark; an exit mark ends
 * the generation (no point of it comes after), and its series is free for another: the
 * series open stay those of live generations, not every one the file has seen (a long run
 * recycling constantly has tens of thousands). */
static void dec_mark(dec_t *d, int slot, uint32_t gen, bool ends)
{
    for (size_t i = 0; i < d->ns; i++)
        if (d->s[i].used && d->s[i].slot == slot && d->s[i].gen == gen) {
            flush_series(d, &d->s[i]);
            d->s[i].used = !ends;
        }
}

/* Whether a mark row ("m,t,slot,gen,what,...") is an exit. */
static bool exit_row(const char *line)
{
    const char *p = line;

    for (int i = 0; i < 4 && p; i++)
        p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
    return p && strncmp(p, "exit,", 5) == 0;
}

static void flush_all(dec_t *d)
{
    for (size_t i = 0; i < d->ns; i++)
        flush_series(d, &d->s[i]);
}

/* Parses a point row's text after "p,"; 0 or -EINVAL. */
static int parse_point(char *s, pt_t *x)
{
    int64_t v[8];

    if (fields(s, v, 8) != 8 || v[0] < 0 || v[1] <= 0 || v[2] < 0)
        return -EINVAL;
    x->t = (uint64_t)v[0];
    x->p = (mv_tl_point_t){
        (int)v[1], (uint32_t)v[2], v[3], v[4], v[5], v[6], v[7] < 0 ? 0 : (uint64_t)v[7]};
    return 0;
}

int64_t mv_timeline_decimate(const char *in, const char *out, int64_t keep_from, int64_t *bytes)
{
    dec_t d = {0};
    FILE *f = fopen(in, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t seen = 0;

    if (!f)
        return -errno;
    if (!(d.out = fopen(out, "w"))) {
        int e = -errno;
        fclose(f);
        return e;
    }
    while (!d.err && (len = getline(&line, &cap, f)) > 0) {
        pt_t x;

        char row[256]; /* fields() cuts the row it parses: it parses a copy */
        int64_t v[3];

        if ((size_t)len >= sizeof row || line[len - 1] != '\n')
            continue; /* a row this writer never makes (or a torn last one): not kept */
        memcpy(row, line + 2, (size_t)len - 3);
        row[len - 3] = '\0';
        if (line[0] == 'p' && line[1] == ',') {
            if (parse_point(row, &x) < 0)
                continue;
            if (seen++ == keep_from)
                flush_all(&d);
            if (seen <= keep_from) {
                dec_point(&d, &x);
                continue;
            }
            d.written++;
        } else if (line[0] == 'm' && line[1] == ',' && fields(row, v, 3) == 3 &&
                   seen <= keep_from) {
            dec_mark(&d, (int)v[1], (uint32_t)v[2], exit_row(line));
        }
        if (fwrite(line, 1, (size_t)len, d.out) != (size_t)len)
            d.err = -EIO;
    }
    flush_all(&d);
    if (!d.err && ferror(f))
        d.err = -EIO;
    /* Durable before the rename that puts it in place of the old file. */
    if (!d.err && (fflush(d.out) != 0 || fsync(fileno(d.out)) < 0))
        d.err = -errno;
    if (bytes)
        *bytes = ftell(d.out);
    if (fclose(d.out) != 0 && !d.err)
        d.err = -EIO;
    fclose(f);
    free(line);
    free(d.s);
    return d.err ? d.err : d.written;
}

int64_t mv_timeline_cut(const char *in, const char *out, int64_t drop, int64_t *bytes)
{
    FILE *f = fopen(in, "r"), *o;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t skipped = 0, written = 0;
    int err = 0;

    if (!f)
        return -errno;
    if (!(o = fopen(out, "w"))) {
        err = -errno;
        fclose(f);
        return err;
    }
    while (!err && (len = getline(&line, &cap, f)) > 0) {
        if (line[0] != '#' && skipped < drop) {
            skipped += len;
            continue;
        }
        written += line[0] == 'p' && line[1] == ',';
        if (fwrite(line, 1, (size_t)len, o) != (size_t)len)
            err = -EIO;
    }
    if (!err && ferror(f))
        err = -EIO;
    if (!err && (fflush(o) != 0 || fsync(fileno(o)) < 0))
        err = -errno;
    if (bytes)
        *bytes = ftell(o);
    if (fclose(o) != 0 && !err)
        err = -EIO;
    fclose(f);
    free(line);
    return err ? err : written;
}

/* ---- the job --------------------------------------------------------------------------- */

/* One pass: the file rewritten with its older points decimated (cut: the oldest `cut` bytes
 * of rows dropped instead), put in place. */
static int rewrite_once(mv_timeline_t *tl, int64_t cut)
{
    char tmp[4096];
    int64_t bytes = 0, n;
    int fd;

    snprintf(tmp, sizeof tmp, "%s.new", tl->path);
    n = cut > 0
            ? mv_timeline_cut(tl->path, tmp, cut, &bytes)
            : mv_timeline_decimate(tl->path, tmp, tl->file_points - tl->file_points / 4, &bytes);
    if (n < 0) {
        unlink(tmp);
        return (int)n;
    }
    if ((fd = open(tmp, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0 || rename(tmp, tl->path) < 0) {
        int e = -errno;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return e;
    }
    close(tl->fd);
    tl->fd = fd;
    tl->file_points = n;
    tl->file_bytes = bytes;
    tl->rewrites++;
    return 0;
}

/* Decimates until the file is within 3/4 of the bound (room for the next appends); one
 * batch can add more than a pass removes. A pass that cannot shrink the file by a tenth
 * stops it: its generations are too short to fold (a few points each, between marks that
 * are never folded: constant recycling). Then the oldest rows go, down to half the bound,
 * so that the file stays bounded and the next rewrite is half a bound of appends away. */
static int rewrite(mv_timeline_t *tl)
{
    int64_t before;
    int e;

    do {
        before = tl->file_bytes;
        if ((e = rewrite_once(tl, 0)) < 0)
            return e;
    } while (tl->file_bytes > tl->max_bytes / 4 * 3 && tl->file_bytes < before - before / 10);
    if (tl->file_bytes > tl->max_bytes / 4 * 3) {
        if ((e = rewrite_once(tl, tl->file_bytes - tl->max_bytes / 2)) < 0)
            return e;
        tl->cuts++;
    }
    tl->rewrite_at = tl->max_bytes;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void job_cb(uv_work_t *req)
{
    mv_timeline_t *tl = req->data;
    const rec_t *r = (const rec_t *)mv_buf_head(&tl->batch);
    size_t n = mv_buf_unread(&tl->batch) / sizeof *r;
    int e = 0;

    mv_buf_reset(&tl->text);
    for (size_t i = 0; i < n && e == 0; i++) {
        e = r[i].type == 'p' ? format_point(&tl->text, r[i].t, &r[i].p)
                             : format_mark(&tl->text, &r[i]);
        tl->file_points += r[i].type == 'p';
        if (e == 0 && (i + 1 == n || tl->text.len > TEXT_BYTES - ROW_MAX)) {
            e = write_all(tl->fd, tl->text.data, tl->text.len);
            tl->file_bytes += e == 0 ? (int64_t)tl->text.len : 0;
            mv_buf_reset(&tl->text);
        }
    }
    if (e == 0 && tl->file_bytes > tl->rewrite_at)
        e = rewrite(tl);
    if (e == 0 && tl->final && fsync(tl->fd) < 0 && errno != EINVAL)
        e = -errno;
    tl->job_error = e;
}

static void start_job(mv_timeline_t *tl);

static void finish_close(mv_timeline_t *tl)
{
    mv_timeline_cb cb = tl->on_closed;

    if (tl->path && tl->fd >= 0)
        close(tl->fd);
    tl->fd = -1;
    tl->on_closed = NULL;
    if (cb)
        cb(tl->arg);
}

static void after_job_cb(uv_work_t *req, int status)
{
    mv_timeline_t *tl = req->data;

    tl->working = false;
    mv_buf_reset(&tl->batch);
    /* What a burst grew is given back: a steady rate keeps its batches at FLUSH_BYTES. */
    mv_buf_shrink(&tl->batch, FLUSH_BYTES);
    mv_buf_reset(&tl->text); /* written (or the timeline failed): never needed again */
    mv_buf_shrink(&tl->text, TEXT_BYTES);
    if (!tl->error)
        tl->error = tl->job_error ? tl->job_error : status < 0 ? status : 0;
    if (tl->final || (tl->closing && tl->error)) {
        finish_close(tl);
        return;
    }
    if (tl->closing || mv_buf_unread(&tl->pending) >= FLUSH_BYTES)
        start_job(tl);
}

/* Hands the pending records to a job; when closing, the job is the last and fsyncs. */
static void start_job(mv_timeline_t *tl)
{
    mv_buf_t tmp;
    int rc;

    if (tl->working || tl->fd < 0 || tl->error)
        return;
    if (mv_buf_unread(&tl->pending) == 0 && !tl->closing)
        return;
    tmp = tl->batch;
    tl->batch = tl->pending;
    tl->pending = tmp;
    mv_buf_reset(&tl->pending);
    tl->final = tl->closing;
    tl->work.data = tl;
    if ((rc = uv_queue_work(tl->loop, &tl->work, job_cb, after_job_cb)) < 0) {
        tl->error = rc;
        if (tl->closing)
            finish_close(tl);
        return;
    }
    tl->working = true;
}

static void timer_cb(uv_timer_t *t)
{
    start_job(t->data);
}

/* ---- the loop's side ------------------------------------------------------------------- */

int mv_timeline_open(mv_timeline_t *tl, uv_loop_t *loop, const char *run_dir,
                     const mv_timeline_opts_t *opts)
{
    char head[256], iso[48];
    struct timespec now;
    uint64_t flush = opts && opts->flush_ms ? opts->flush_ms : 250;
    int n, e;

    memset(tl, 0, sizeof *tl);
    tl->loop = loop;
    tl->fd = -1;
    tl->max_bytes = opts && opts->max_bytes ? MV_MAX(opts->max_bytes, 4096) : MV_TIMELINE_MAX;
    tl->rewrite_at = tl->max_bytes;
    if (asprintf(&tl->path, "%s/%s", run_dir, MV_TIMELINE_FILE) < 0) {
        tl->path = NULL;
        return -ENOMEM;
    }
    tl->fd = open(tl->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (tl->fd < 0) {
        e = -errno;
        goto fail;
    }
    /* The wall clock of t = 0, so readers can join the timeline with result times. */
    tl->epoch_mono = mv_now_ms();
    clock_gettime(CLOCK_REALTIME, &now);
    mv_iso_time(iso);
    n = snprintf(head, sizeof head,
                 "#memvisor-timeline %d epoch_ms=%lld epoch=%s\n"
                 "#p,t_ms,slot,gen,usage,private,rss,heap,task\n"
                 "#m,t_ms,slot,gen,what,reason,pid,soft,hard,task\n",
                 MV_TIMELINE_VERSION, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, iso);
    if ((e = write_all(tl->fd, (const uint8_t *)head, (size_t)n)) < 0)
        goto fail;
    tl->file_bytes = n;
    if ((e = uv_timer_init(loop, &tl->timer)) < 0)
        goto fail;
    tl->timer.data = tl;
    tl->timer_open = true;
    uv_timer_start(&tl->timer, timer_cb, flush, flush);
    uv_unref((uv_handle_t *)&tl->timer);
    return 0;
fail:
    if (tl->fd >= 0)
        close(tl->fd);
    tl->fd = -1;
    free(tl->path);
    tl->path = NULL; /* not open: point, mark and close do nothing */
    return e;
}

/* A new record at the end of pending, stamped; NULL when the timeline is not writing. */
static rec_t *push(mv_timeline_t *tl, char type)
{
    rec_t *r;

    if (!tl->path || tl->fd < 0 || tl->closing || tl->error)
        return NULL;
    /* Full: handed to a job first (when none runs), rather than grown. */
    if (mv_buf_unread(&tl->pending) + sizeof *r > FLUSH_BYTES)
        start_job(tl);
    if (mv_buf_reserve(&tl->pending, sizeof *r) < 0) {
        tl->error = -ENOMEM;
        return NULL;
    }
    r = (rec_t *)(tl->pending.data + tl->pending.len);
    tl->pending.len += sizeof *r;
    memset(r, 0, sizeof *r);
    r->type = type;
    r->t = mv_now_ms() - tl->epoch_mono;
    return r;
}

void mv_timeline_point(mv_timeline_t *tl, const mv_tl_point_t *p)
{
    rec_t *r;

    if (tl->working && mv_buf_unread(&tl->pending) >= BACKLOG_MAX) {
        tl->dropped++;
        return;
    }
    if (!(r = push(tl, 'p')))
        return;
    r->p = *p;
    tl->points++;
    if (mv_buf_unread(&tl->pending) >= FLUSH_BYTES)
        start_job(tl);
}

void mv_timeline_mark(mv_timeline_t *tl, const mv_tl_mark_t *m)
{
    rec_t *r = push(tl, 'm');
    size_t j = 0;

    if (!r)
        return;
    r->m = *m;
    r->m.reason = NULL;
    /* Only [a-z0-9_] reach the file: it stays a format with no quoting. */
    for (const char *s = m->reason; s && *s && j < REASON_MAX - 1; s++)
        if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')
            r->reason[j++] = *s;
    tl->marks++;
    if (mv_buf_unread(&tl->pending) >= FLUSH_BYTES)
        start_job(tl);
}

void mv_timeline_close(mv_timeline_t *tl, mv_timeline_cb cb, void *arg)
{
    tl->closing = true;
    tl->on_closed = cb;
    tl->arg = arg;
    if (tl->timer_open) {
        tl->timer_open = false;
        uv_close((uv_handle_t *)&tl->timer, NULL);
    }
    if (!tl->path || tl->fd < 0 || tl->error) {
        if (!tl->working)
            finish_close(tl);
        return;
    }
    start_job(tl);
}

void mv_timeline_free(mv_timeline_t *tl)
{
    if (tl->path && tl->fd >= 0)
        close(tl->fd);
    tl->fd = -1;
    free(tl->path);
    tl->path = NULL;
    mv_buf_free(&tl->pending);
    mv_buf_free(&tl->batch);
    mv_buf_free(&tl->text);
}
