/*
 * resume: the results reader and the done-id set.
 */
#include "resume.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- id set ---- */

int mv_idset_add(mv_idset_t *s, uint64_t id)
{
    mv_idrange_t *last = s->n ? &s->r[s->n - 1] : NULL;

    /* In-order ids (the common case) extend the last range; anything else is a new range,
     * merged by mv_idset_finish. */
    if (last && id >= last->lo && id <= last->hi)
        return 0;
    if (last && last->hi != UINT64_MAX && id == last->hi + 1) {
        last->hi = id;
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        mv_idrange_t *r = realloc(s->r, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        s->r = r;
        s->cap = cap;
    }
    s->r[s->n++] = (mv_idrange_t){id, id};
    s->sorted = false;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const mv_idrange_t *x = a, *y = b;

    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void mv_idset_finish(mv_idset_t *s)
{
    size_t k = 0;

    if (s->sorted || s->n == 0) {
        s->sorted = true;
        return;
    }
    qsort(s->r, s->n, sizeof *s->r, cmp_range);
    /* Merge overlapping and adjacent ranges, so lookups and counts see disjoint ones. */
    for (size_t i = 1; i < s->n; i++) {
        mv_idrange_t *cur = &s->r[k];
        if (s->r[i].lo <= cur->hi || (cur->hi != UINT64_MAX && s->r[i].lo == cur->hi + 1)) {
            if (s->r[i].hi > cur->hi)
                cur->hi = s->r[i].hi;
        } else {
            s->r[++k] = s->r[i];
        }
    }
    s->n = k + 1;
    s->sorted = true;
}

bool mv_idset_has(const mv_idset_t *s, uint64_t id)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (id < s->r[mid].lo)
            hi = mid;
        else if (id > s->r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

uint64_t mv_idset_count(const mv_idset_t *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->n; i++)
        n += s->r[i].hi - s->r[i].lo + 1;
    return n;
}

void mv_idset_free(mv_idset_t *s)
{
    free(s->r);
    memset(s, 0, sizeof *s);
}

/* ---- the reader ---- */

void mv_resume_begin(mv_resume_scan_t *s)
{
    memset(s, 0, sizeof *s);
}

/* Fails the scan at the current line (lines + 1). */
static int bad(mv_resume_scan_t *s, const char *what, const char *detail)
{
    s->bad_line = s->lines + 1;
    snprintf(s->why, sizeof s->why, "%.70s%s%.80s", what, detail ? ": " : "", detail ? detail : "");
    return -EINVAL;
}

/* One complete line (without its newline): a result object with a task id and a final
 * status. */
static int take_line(mv_resume_scan_t *s, const char *p, size_t n)
{
    static const char *const names[MV_RESUME_NSTATUS] = {"ok", "failed", "quarantined"};
    json_error_t e;
    json_t *o, *task, *status;
    const char *st;
    int k, r = 0;

    /* Results may hold NUL bytes in strings ("a\u0000b"): jansson refuses them unless told. */
    o = json_loadb(p, n, JSON_ALLOW_NUL, &e);
    if (!o)
        return bad(s, "not JSON", e.text);
    task = json_object_get(o, "task");
    status = json_object_get(o, "status");
    st = json_string_value(status);
    for (k = 0; st && k < MV_RESUME_NSTATUS && strcmp(st, names[k]) != 0; k++)
        ;
    if (!json_is_object(o))
        r = bad(s, "not a JSON object", NULL);
    else if (!json_is_integer(task) || json_integer_value(task) < 1)
        r = bad(s, "no task id (\"task\": a positive integer)", NULL);
    else if (!st || k == MV_RESUME_NSTATUS)
        r = bad(s, "no final status (\"status\": ok, failed or quarantined)", NULL);
    if (r == 0) {
        uint64_t id = (uint64_t)json_integer_value(task);
        /* A duplicate is counted, not refused: the id is done either way. In-order ids are
         * checked against the last range only; mv_resume_end finds the others by count. */
        r = mv_idset_add(&s->done, id);
        if (r == 0 && k == MV_RESUME_FAILED)
            r = mv_idset_add(&s->failed, id);
        else if (r == 0 && k == MV_RESUME_QUARANTINED)
            r = mv_idset_add(&s->quarantined, id);
        s->lines++;
    }
    json_decref(o);
    return r;
}

int mv_resume_feed(mv_resume_scan_t *s, const void *buf, size_t n)
{
    const char *p = buf, *end = p + n;
    int r;

    if (s->bad_line)
        return -EINVAL;
    s->fed += n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return mv_buf_append(&s->carry, p, (size_t)(end - p));
        if (mv_buf_unread(&s->carry)) {
            /* The line began in an earlier chunk. */
            if (mv_buf_append(&s->carry, p, (size_t)(nl - p)) < 0)
                return -ENOMEM;
            r = take_line(s, (const char *)mv_buf_head(&s->carry), mv_buf_unread(&s->carry));
            mv_buf_reset(&s->carry);
        } else {
            r = take_line(s, p, (size_t)(nl - p));
        }
        if (r < 0)
            return r;
        p = nl + 1;
        s->valid = s->fed - (uint64_t)(end - p);
    }
    return 0;
}

/* Ids in both finished sets. */
static uint64_t idset_common(const mv_idset_t *a, const mv_idset_t *b)
{
    uint64_t n = 0;

    for (size_t i = 0, j = 0; i < a->n && j < b->n;) {
        uint64_t lo = a->r[i].lo > b->r[j].lo ? a->r[i].lo : b->r[j].lo;
        uint64_t hi = a->r[i].hi < b->r[j].hi ? a->r[i].hi : b->r[j].hi;

        if (lo <= hi)
            n += hi - lo + 1;
        if (a->r[i].hi < b->r[j].hi)
            i++;
        else
            j++;
    }
    return n;
}

int mv_resume_end(mv_resume_scan_t *s)
{
    uint64_t tasks;

    s->torn = s->fed - s->valid;
    mv_buf_free(&s->carry);
    mv_idset_finish(&s->done);
    mv_idset_finish(&s->failed);
    mv_idset_finish(&s->quarantined);
    if (s->bad_line)
        return -EINVAL;
    tasks = mv_idset_count(&s->done);
    s->dups = s->lines - tasks;
    /* Each task once (a file with duplicate lines, concatenated or repaired, must not count
     * a task twice): quarantined over failed over ok. */
    s->count[MV_RESUME_QUARANTINED] = mv_idset_count(&s->quarantined);
    s->count[MV_RESUME_FAILED] =
        mv_idset_count(&s->failed) - idset_common(&s->failed, &s->quarantined);
    s->count[MV_RESUME_OK] = tasks - s->count[MV_RESUME_QUARANTINED] - s->count[MV_RESUME_FAILED];
    return 0;
}

int mv_resume_scan(mv_resume_scan_t *s, const void *p, size_t n)
{
    int r;

    mv_resume_begin(s);
    r = mv_resume_feed(s, p, n);
    if (r == -ENOMEM)
        return r;
    return mv_resume_end(s);
}

void mv_resume_free(mv_resume_scan_t *s)
{
    mv_idset_free(&s->done);
    mv_idset_free(&s->failed);
    mv_idset_free(&s->quarantined);
    mv_buf_free(&s->carry);
}
