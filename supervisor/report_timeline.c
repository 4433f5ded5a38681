/*
 * report_timeline: reads a run's timeline.csv (docs/run-files.md) for the HTML report, and
 * downsamples it in C so the page stays light whatever the run's length: per slot, time is cut
 * into buckets and each generation keeps its lowest- and highest-usage point of each bucket
 * (the same min/max envelope the writer's decimation keeps), with the task in hand at each.
 * Marks are kept, up to a cap per slot (kills and OOMs first). It also counts task ends per
 * time bucket, the throughput a page shows when result lines carry no times.
 *
 * The file is untrusted like every input of the report: a row that does not parse is an
 * error naming file:line, except a torn last line (the run may still be writing it).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_int.h"
#include "timeline.h"
#include "util.h"

#define MARKS_PER_SLOT 400

typedef struct tpt {
    int64_t t, u, p, r, h;
    int64_t task;
    int slot;
    uint32_t gen;
} tpt_t;

typedef struct tmark {
    int64_t t, pid, soft, hard, task;
    int slot;
    uint32_t gen;
    char what[12], reason[32];
} tmark_t;

typedef struct tl {
    tpt_t *p;
    size_t np, capp;
    tmark_t *m;
    size_t nm, capm;
    int64_t epoch_ms, tmin, tmax;
    int nslots;
} tl_t;

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    void *x;

    if (n < *cap)
        return 0;
    if (!(x = realloc(*v, MV_MAX(*cap * 2, 1024) * size)))
        return -ENOMEM;
    *v = x;
    *cap = MV_MAX(*cap * 2, 1024);
    return 0;
}

/* Splits a row (after "X,") into fields; numbers go to v (-1 when empty), words stay in w. */
static int split(char *s, char **w, int max)
{
    int n = 0;

    while (s && n < max) {
        w[n++] = s;
        if ((s = strchr(s, ',')))
            *s++ = '\0';
    }
    return s ? -1 : n; /* more fields than the format has: not ours */
}

/* A field as a non-negative number; -1 when empty; -2 when it is not a number. */
static int64_t number(const char *s)
{
    char *end;
    long long v;

    if (!*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    return *end || errno || v < 0 ? -2 : v;
}

static bool word_ok(const char *s, size_t cap)
{
    return strlen(s) < cap && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s);
}

/* One row; 0, or -EINVAL when it is not a row of the format. */
static int row(tl_t *tl, char *line)
{
    char *w[10];
    int64_t v[10];
    int n;

    if (line[0] == '#')
        return 0;
    if ((line[0] != 'p' && line[0] != 'm') || line[1] != ',' ||
        (n = split(line + 2, w, 9)) != 8 + (line[0] == 'm'))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        v[i] = line[0] == 'm' && (i == 3 || i == 4) ? 0 : number(w[i]);
    for (int i = 0; i < n; i++)
        if (v[i] == -2 || (i < 3 && v[i] < 0) || (i == 1 && (v[1] == 0 || v[1] > 65536)))
            return -EINVAL;
    if (line[0] == 'p') {
        if (grow((void **)&tl->p, &tl->capp, tl->np, sizeof *tl->p) < 0)
            return -ENOMEM;
        tl->p[tl->np++] = (tpt_t){v[0], v[3], v[4], v[5], v[6], v[7], (int)v[1], (uint32_t)v[2]};
    } else {
        tmark_t *m;

        if (!word_ok(w[3], sizeof m->what) || !word_ok(w[4], sizeof m->reason))
            return -EINVAL;
        if (grow((void **)&tl->m, &tl->capm, tl->nm, sizeof *tl->m) < 0)
            return -ENOMEM;
        m = &tl->m[tl->nm++];
        *m = (tmark_t){v[0], v[5], v[6], v[7], v[8], (int)v[1], (uint32_t)v[2], "", ""};
        strcpy(m->what, w[3]);
        strcpy(m->reason, w[4]);
    }
    tl->tmin = MV_MIN(tl->tmin, v[0]);
    tl->tmax = MV_MAX(tl->tmax, v[0]);
    tl->nslots = MV_MAX(tl->nslots, (int)v[1]);
    return 0;
}

/* Reads the whole file. 0; -ENOENT when there is none; -EINVAL naming file:line. */
static int load(mv_report_t *r, const char *path, tl_t *tl)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    int e = 0;

    if (!f)
        return errno == ENOENT
                   ? -ENOENT
                   : (snprintf(r->why, r->nwhy, "%s: %s", path, strerror(errno)), -errno);
    tl->tmin = INT64_MAX;
    while (e == 0 && (len = getline(&line, &cap, f)) > 0) {
        bool torn = line[len - 1] != '\n';

        no++;
        line[len - (torn ? 0 : 1)] = '\0';
        if (no == 1 && sscanf(line, "#memvisor-timeline %*d epoch_ms=%" SCNd64, &tl->epoch_ms) != 1)
            e = -EINVAL;
        else if ((e = row(tl, line)) == -EINVAL && torn)
            e = 0; /* a last line still being written */
        if (e == -EINVAL)
            snprintf(r->why, r->nwhy, "%s:%ld: %s", path, no,
                     no == 1 ? "not a memvisor timeline (no \"#memvisor-timeline N epoch_ms=\" "
                               "header)"
                             : "not a timeline row");
    }
    if (e == 0 && no == 0) {
        e = -EINVAL;
        snprintf(r->why, r->nwhy, "%s: empty (no header)", path);
    }
    if (e == -ENOMEM)
        snprintf(r->why, r->nwhy, "out of memory");
    free(line);
    fclose(f);
    return e;
}

static int cmp_pt(const void *a, const void *b)
{
    const tpt_t *x = a, *y = b;

    if (x->slot != y->slot)
        return x->slot - y->slot;
    return (x->t > y->t) - (x->t < y->t);
}

static int cmp_mark(const void *a, const void *b)
{
    const tmark_t *x = a, *y = b;

    if (x->slot != y->slot)
        return x->slot - y->slot;
    return (x->t > y->t) - (x->t < y->t);
}

/* Sizes go to the page in KiB: the charts need no more, and the page gets smaller. */
static json_t *kib(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v / 1024);
}

/* Appends point i to a slot's arrays. */
static void emit(json_t *s, const tpt_t *x, int64_t tmin)
{
    json_array_append_new(json_object_get(s, "t"), json_integer(x->t - tmin));
    json_array_append_new(json_object_get(s, "g"), json_integer(x->gen));
    json_array_append_new(json_object_get(s, "u"), kib(x->u));
    json_array_append_new(json_object_get(s, "p"), kib(x->p));
    json_array_append_new(json_object_get(s, "r"), kib(x->r));
    json_array_append_new(json_object_get(s, "h"), kib(x->h));
    json_array_append_new(json_object_get(s, "k"), json_integer(x->task < 0 ? 0 : x->task));
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return (x > y) - (x < y);
}

/* The points of one slot (p[0..n), sorted by time), downsampled: per bucket and generation,
 * the min and max usage points, in time order. */
static void slot_points(json_t *s, const tpt_t *p, size_t n, int64_t tmin, int64_t span,
                        size_t buckets)
{
    size_t keep[64] = {0}, nk = 0;

    for (size_t i = 0; i < n;) {
        size_t b = (size_t)((p[i].t - tmin) * (int64_t)buckets / span), j = i;

        nk = 0;
        for (; j < n && (size_t)((p[j].t - tmin) * (int64_t)buckets / span) == b; j++) {
            size_t k;
            /* keep[] holds pairs (min, max) per generation seen in this bucket */
            for (k = 0; k < nk && p[keep[k]].gen != p[j].gen; k += 2)
                ;
            if (k >= nk && nk + 2 <= MV_ARRAY_LEN(keep)) {
                keep[nk++] = j;
                keep[nk++] = j;
            } else if (k < nk) {
                keep[k] = p[j].u < p[keep[k]].u ? j : keep[k];
                keep[k + 1] = p[j].u > p[keep[k + 1]].u ? j : keep[k + 1];
            }
        }
        qsort(keep, nk, sizeof *keep, cmp_size);
        for (size_t k = 0; k < nk; k++)
            if (k == 0 || keep[k] != keep[k - 1])
                emit(s, &p[keep[k]], tmin);
        i = j;
    }
}

/* Marks of one slot, at most MARKS_PER_SLOT: every kill and OOM first, then others evenly. */
static json_t *slot_marks(const tmark_t *m, size_t n, int64_t tmin, json_t *gens)
{
    json_t *a = json_array();
    size_t severe = 0, others, step;
    char g[16];

    for (size_t i = 0; i < n; i++) {
        severe += strcmp(m[i].what, "kill") == 0 || strcmp(m[i].what, "oom") == 0;
        if (strcmp(m[i].what, "spawn") == 0) {
            snprintf(g, sizeof g, "%" PRIu32, m[i].gen);
            json_object_set_new(gens, g,
                                json_pack("[I,I]", (json_int_t)m[i].soft, (json_int_t)m[i].hard));
        }
    }
    others = n - severe;
    step = others > MARKS_PER_SLOT - MV_MIN(severe, MARKS_PER_SLOT / 2)
               ? others / (MARKS_PER_SLOT - MV_MIN(severe, MARKS_PER_SLOT / 2)) + 1
               : 1;
    for (size_t i = 0, o = 0, s = 0; i < n; i++) {
        bool sev = strcmp(m[i].what, "kill") == 0 || strcmp(m[i].what, "oom") == 0;

        /* spawns are drawn only as the start of a segment: no need to mark them */
        if (strcmp(m[i].what, "spawn") == 0 || (sev ? s++ >= MARKS_PER_SLOT / 2 : o++ % step))
            continue;
        json_array_append_new(a, json_pack("[I,I,s,s,I]", (json_int_t)(m[i].t - tmin),
                                           (json_int_t)m[i].gen, m[i].what, m[i].reason,
                                           (json_int_t)m[i].task));
    }
    return a;
}

/* Task ends seen in the timeline (the task in hand changes), per time bucket. */
static json_t *ends(const tl_t *tl, int64_t span, size_t buckets)
{
    int64_t *c = calloc(buckets, sizeof *c);
    json_t *a = json_array();

    for (size_t i = 1; c && i < tl->np; i++) {
        const tpt_t *x = &tl->p[i - 1], *y = &tl->p[i];
        if (x->slot == y->slot && x->gen == y->gen && x->task > 0 && y->task != x->task)
            c[(size_t)((y->t - tl->tmin) * (int64_t)buckets / span)]++;
    }
    for (size_t b = 0; c && b < buckets; b++)
        json_array_append_new(a, json_integer(c[b]));
    free(c);
    return a;
}

/* The page's "timeline" object for run directory `dir`, `budget` points in all (at least 200
 * per slot). *out is NULL when the run has no timeline file. 0 or -errno with why. */
int mv__report_timeline(mv_report_t *r, size_t budget, json_t **out)
{
    char path[4096];
    tl_t tl = {0};
    json_t *slots, *o;
    int64_t span;
    size_t per, i = 0, j = 0;
    int e;

    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", r->dir, MV_TIMELINE_FILE);
    if ((e = load(r, path, &tl)) < 0) {
        free(tl.p), free(tl.m);
        return e == -ENOENT ? 0 : e;
    }
    if (tl.tmin == INT64_MAX)
        tl.tmin = tl.tmax = 0;
    span = tl.tmax - tl.tmin + 1;
    if (tl.np > 1) /* qsort wants a non-null base */
        qsort(tl.p, tl.np, sizeof *tl.p, cmp_pt);
    if (tl.nm > 1)
        qsort(tl.m, tl.nm, sizeof *tl.m, cmp_mark);
    per = MV_MAX(budget / (size_t)MV_MAX(tl.nslots, 1), 200);
    slots = json_array();
    for (int slot = 1; slot <= tl.nslots; slot++) {
        size_t i0 = i, j0 = j;
        json_t *s = json_pack("{s:i,s:[],s:[],s:[],s:[],s:[],s:[],s:[],s:{}}", "slot", slot, "t",
                              "g", "u", "p", "r", "h", "k", "gens");

        while (i < tl.np && tl.p[i].slot == slot)
            i++;
        while (j < tl.nm && tl.m[j].slot == slot)
            j++;
        slot_points(s, tl.p + i0, i - i0, tl.tmin, span, per / 2);
        json_object_set_new(s, "marks",
                            slot_marks(tl.m + j0, j - j0, tl.tmin, json_object_get(s, "gens")));
        json_object_set_new(s, "points", json_integer((json_int_t)(i - i0)));
        if (i > i0 || j > j0)
            json_array_append_new(slots, s);
        else
            json_decref(s);
    }
    o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:o}", "epoch_ms", (json_int_t)tl.epoch_ms, "t0",
                  (json_int_t)tl.tmin, "span", (json_int_t)span, "points", (json_int_t)tl.np,
                  "marks", (json_int_t)tl.nm, "slots", slots);
    json_object_set_new(o, "ends", ends(&tl, span, 300));
    free(tl.p), free(tl.m);
    if (!o) {
        snprintf(r->why, r->nwhy, "out of memory");
        return -ENOMEM;
    }
    *out = o;
    return 0;
}
