/*
 * report_html: `memvisor report --html FILE PATH` writes one self-contained page: uPlot and
 * the page's own script and style are embedded in the binary (assets.S) and inlined, the data
 * is one JSON object (jansson, with every '<' written as \u003c so nothing in it can end its
 * element), so the page opens offline and loads nothing.
 *
 * The page must stay light for a run of a million tasks on 64 workers: everything is reduced
 * here, in C, before it is embedded: the timeline to ~60,000 points in all (per slot, per time
 * bucket and generation, the min and max usage points), throughput to 300 time buckets,
 * distributions to log2 histograms of the shown kinds, marks to 400 per slot. The data holds
 * only numbers and strings that the page sets as text (never as markup), so names that come
 * from task lines cannot inject anything.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "report.h"
#include "report_int.h"
#include "util.h"

#define BUDGET      60000 /* timeline points in the page, all slots together */
#define TP_BUCKETS  300   /* throughput buckets */
#define KINDS_SHOWN 12
#define TOP_N       5  /* rows of each snapshot highlight */
#define HIST_LO     10 /* histograms start at 1 KiB (2^10); less goes to the first bucket */

/* Embedded by assets.S, each NUL-terminated. */
extern const char mv_asset_uplot_js[], mv_asset_uplot_css[], mv_asset_page_js[],
    mv_asset_page_css[];

/* What the page is built from besides the report: each result's end (Unix ms x 2, + 1 when
 * the task did not end ok). */
typedef struct ctx {
    mv_report_t *r;
    int64_t *ends;
    size_t nends, cap;
} ctx_t;

/* The report's hook on each checked result line: keeps its end time, when it has one. */
static int on_result(void *arg, const char *file, long line, json_t *o)
{
    ctx_t *c = arg;
    json_t *j = json_object_get(o, "ended");
    const char *st = json_string_value(json_object_get(o, "status"));
    int64_t us;

    if (!j || json_is_null(j))
        return 0;
    if (!json_is_string(j) || (us = mv__report_iso_us(json_string_value(j))) < 0) {
        snprintf(c->r->why, c->r->nwhy, "%s:%ld: ended: expected an ISO 8601 UTC time", file, line);
        return -EINVAL;
    }
    if (c->nends == c->cap) {
        size_t cap = MV_MAX(c->cap * 2, 4096);
        int64_t *v = realloc(c->ends, cap * sizeof *v);

        if (!v)
            return snprintf(c->r->why, c->r->nwhy, "out of memory"), -ENOMEM;
        c->ends = v;
        c->cap = cap;
    }
    c->ends[c->nends++] = us / 1000 * 2 + (st && strcmp(st, "ok") != 0); /* ms, and failed */
    return 0;
}

/* Tasks ended per time bucket from the results' `ended`, else from the timeline. */
static json_t *throughput(const ctx_t *c, json_t *tl)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN, width;
    json_t *ok, *bad;
    int64_t *n;

    if (c->nends == 0) {
        if (!tl)
            return json_null();
        return json_pack(
            "{s:s,s:I,s:I,s:O,s:[]}", "source", "timeline", "t0_ms",
            json_integer_value(json_object_get(tl, "epoch_ms")) +
                json_integer_value(json_object_get(tl, "t0")),
            "bucket_ms",
            (json_int_t)(json_integer_value(json_object_get(tl, "span")) + TP_BUCKETS - 1) /
                TP_BUCKETS,
            "ok", json_object_get(tl, "ends"), "bad");
    }
    for (size_t i = 0; i < c->nends; i++) {
        lo = MV_MIN(lo, c->ends[i] / 2);
        hi = MV_MAX(hi, c->ends[i] / 2);
    }
    width = (hi - lo) / TP_BUCKETS + 1;
    if (!(n = calloc(2 * TP_BUCKETS, sizeof *n)))
        return NULL;
    for (size_t i = 0; i < c->nends; i++)
        n[2 * ((c->ends[i] / 2 - lo) / width) + (c->ends[i] & 1)]++;
    ok = json_array(), bad = json_array();
    for (size_t b = 0; b < TP_BUCKETS; b++) {
        json_array_append_new(ok, json_integer(n[2 * b]));
        json_array_append_new(bad, json_integer(n[2 * b + 1]));
    }
    free(n);
    return json_pack("{s:s,s:I,s:I,s:o,s:o}", "source", "results", "t0_ms", (json_int_t)lo,
                     "bucket_ms", (json_int_t)width, "ok", ok, "bad", bad);
}

/* floor(log2(v)) for v > 0. */
static int ilog2(int64_t v)
{
    int e = 0;

    while (v >>= 1)
        e++;
    return e;
}

/* A histogram of sorted values: [0] counts v <= 0, [1 + e - lo] counts 2^e <= v < 2^(e+1)
 * (values under 2^lo go to the first of those). */
static json_t *hist(const mv_report_vec_t *v, int lo, int hi)
{
    json_t *a = json_array();
    int64_t *n = calloc((size_t)(hi - lo + 2), sizeof *n);

    for (size_t i = 0; n && i < v->n; i++)
        n[v->v[i] <= 0 ? 0 : 1 + MV_MAX(ilog2(v->v[i]), lo) - lo]++;
    for (int b = 0; n && b < hi - lo + 2; b++)
        json_array_append_new(a, json_integer(n[b]));
    free(n);
    return a;
}

static json_t *pcts(const mv_report_vec_t *v)
{
    if (!v->n)
        return json_null();
    return json_pack("{s:I,s:I,s:I,s:I}", "p50", (json_int_t)mv_percentile(v->v, v->n, 50), "p95",
                     (json_int_t)mv_percentile(v->v, v->n, 95), "max", (json_int_t)v->v[v->n - 1],
                     "min", (json_int_t)v->v[0]);
}

/* The shown kinds (suspects first, as ranked) with percentiles and log2 histograms. */
static json_t *kinds(const mv_report_t *r)
{
    size_t shown = 0;
    int hi = HIST_LO;
    json_t *a = json_array();

    for (size_t i = 0; i < r->nkinds && shown < KINDS_SHOWN; i++, shown++) {
        const mv_report_kind_t *k = &r->kinds[i];
        if (k->peak.n)
            hi = MV_MAX(hi, ilog2(MV_MAX(k->peak.v[k->peak.n - 1], 1)));
        if (k->retained.n)
            hi = MV_MAX(hi, ilog2(MV_MAX(k->retained.v[k->retained.n - 1], 1)));
    }
    for (size_t i = 0; i < shown; i++) {
        const mv_report_kind_t *k = &r->kinds[i];
        json_array_append_new(
            a, json_pack("{s:s,s:I,s:I,s:b,s:o,s:o,s:o,s:o,s:o}", "name", k->name, "tasks",
                         (json_int_t)k->tasks, "unmeasured", (json_int_t)k->unmeasured, "suspect",
                         i < r->nsus, "peak", pcts(&k->peak), "retained", pcts(&k->retained),
                         "duration_us", pcts(&k->dur_us), "hist_peak", hist(&k->peak, HIST_LO, hi),
                         "hist_retained", hist(&k->retained, HIST_LO, hi)));
    }
    return json_pack("{s:i,s:i,s:o,s:I}", "lo", HIST_LO, "hi", hi, "kinds", a, "more",
                     (json_int_t)(r->nkinds - shown));
}

/* The first n entries of an array (a copy), or null. */
static json_t *top(json_t *a, size_t n)
{
    json_t *o;

    if (!json_is_array(a))
        return json_null();
    o = json_array();
    for (size_t i = 0; i < n && i < json_array_size(a); i++)
        json_array_append_new(o, json_deep_copy(json_array_get(a, i)));
    return o;
}

/* A snapshot's highlights: what the text report prints of it, and a little more. */
static json_t *snapshot(const mv_report_t *r, const char *path)
{
    char where[8192];
    json_error_t je;
    json_t *j, *heap, *o;

    snprintf(where, sizeof where, "%s%s%s", path[0] == '/' ? "" : r->dir, path[0] == '/' ? "" : "/",
             path);
    j = json_load_file(where, 0, &je);
    if (!j && access(where, F_OK) != 0 && errno == ENOENT)
        return json_pack("{s:s,s:s}", "path", where, "error",
                         "removed: a run keeps its newest [leak] snapshots_max");
    if (!json_is_object(j)) {
        json_decref(j);
        return json_pack("{s:s,s:s}", "path", where, "error", j ? "not a JSON object" : je.text);
    }
    heap = json_object_get(j, "heap");
    o = json_pack("{s:s,s:O?,s:O?,s:O?,s:o,s:o,s:o,s:O?}", "path", where, "reason",
                  json_object_get(j, "reason"), "written", json_object_get(j, "written"),
                  "heap_status", json_object_get(j, "heap_status"), "tracemalloc",
                  top(json_object_get(json_object_get(heap, "tracemalloc"), "top"), TOP_N), "types",
                  top(json_object_get(heap, "types"), TOP_N), "mappings",
                  top(json_object_get(j, "mappings_growth"), TOP_N), "worker",
                  json_object_get(j, "worker"));
    if (json_is_string(json_object_get(heap, "allocator")))
        json_object_set_new(o, "allocator",
                            json_pack("{s:O,s:O?,s:O?}", "name", json_object_get(heap, "allocator"),
                                      "in_use", json_object_get(heap, "uordblks"), "free",
                                      json_object_get(heap, "fordblks")));
    json_decref(j);
    return o;
}

static json_t *suspects(const mv_report_t *r)
{
    json_t *a = json_array();

    for (size_t i = 0; i < r->nsus; i++) {
        const mv_report_kind_t *k = &r->kinds[i];
        json_t *rules = json_array();

        for (unsigned b = 0; b < 4; b++)
            if (k->rules & (1u << b))
                json_array_append_new(rules, json_string(mv__report_rule_name[b]));
        json_array_append_new(a,
                              json_pack("{s:s,s:s?,s:f,s:f,s:f,s:o,s:I,s:I,s:I,s:I,s:o}", "kind",
                                        k->name, "evidence", k->evidence, "per_task", k->per_task,
                                        "fds_per_task", k->fds, "confidence", k->confidence,
                                        "rules", rules, "events", (json_int_t)k->events, "workers",
                                        (json_int_t)json_object_size(k->workers), "retained_p50",
                                        (json_int_t)mv_percentile(k->retained.v, k->retained.n, 50),
                                        "retained_n", (json_int_t)k->retained.n, "snapshot",
                                        k->snapshot ? snapshot(r, k->snapshot) : json_null()));
    }
    return a;
}

/* Kinds suspected and not confirmed, or cleared: [{kind, status, note}]. */
static json_t *not_confirmed(const mv_report_t *r)
{
    json_t *a = json_array();

    for (size_t i = 0; i < r->nkinds; i++) {
        const mv_report_kind_t *k = &r->kinds[i];
        if (k->status == MV_REPORT_SUSPECTED || k->status == MV_REPORT_CLEARED)
            json_array_append_new(
                a, json_pack("{s:s,s:s,s:s?}", "kind", k->name, "status",
                             k->status == MV_REPORT_CLEARED ? "cleared" : "suspected", "note",
                             k->note));
    }
    return a;
}

/* The advice section of the text report, as the text says it. */
static json_t *advice(const mv_report_t *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    json_t *s;
    mv_buf_t clean = {0};

    if (!f)
        return NULL;

    mv__report_print_advice(r, f);
    fclose(f);
    /* kind names in it came from valid JSON, but a page must never fail on one */
    s = mv_utf8_sanitize(text, len, &clean) == 0 ? json_stringn((char *)clean.data, clean.len)
                                                 : NULL;
    mv_buf_free(&clean);
    free(text);
    return s;
}

/* Everything the page shows, as one object (it takes tl, even on failure). NULL on ENOMEM. */
static json_t *page_data(const mv_report_t *r, const ctx_t *c, json_t *tl)
{
    char now[48];
    json_t *d;

    mv_iso_time(now);
    d = json_pack("{s:s,s:s?,s:s?,s:O?,s:I,s:I,s:O,s:O,s:O,s:I,s:I,s:I,s:[I,I,I],s:o,s:o,s:o,"
                  "s:o,s:o?}",
                  "generated", now, "dir", r->dir, "results", r->results, "run", r->run,
                  "event_lines", (json_int_t)r->event_lines, "result_lines",
                  (json_int_t)r->result_lines, "recycles", r->left, "would", r->would, "exits",
                  r->exits, "ooms", (json_int_t)r->ooms, "requeues", (json_int_t)r->requeues,
                  "quarantines", (json_int_t)r->quarantines, "status", (json_int_t)r->st[0],
                  (json_int_t)r->st[1], (json_int_t)r->st[2], "kinds", kinds(r), "suspects",
                  suspects(r), "advice", advice(r), "throughput", throughput(c, tl), "timeline",
                  tl);
    if (d) {
        json_object_set_new(d, "not_confirmed", not_confirmed(r));
        json_object_set_new(d, "died", json_boolean(r->died));
        json_object_set_new(d, "later_results", json_integer(r->later));
        json_object_set_new(d, "results_missing",
                            r->missing ? json_string(r->missing) : json_null());
    }
    if (d && !tl)
        json_object_set_new(d, "timeline_note",
                            json_string(r->dir ? "this run directory has no timeline.csv (a run "
                                                 "made before memvisor wrote one, or the file "
                                                 "could not be written)"
                                               : "a results file alone has no timeline"));
    return d;
}

/* Writes JSON text with every '<' as \u003c ('<' only occurs inside JSON strings): no
 * "</script" can end the element and no "<!--" can change how the browser reads it. */
static int emit_cb(const char *buf, size_t size, void *data)
{
    for (const char *lt; (lt = memchr(buf, '<', size));
         size -= (size_t)(lt - buf) + 1, buf = lt + 1)
        if (fwrite(buf, 1, (size_t)(lt - buf), data) != (size_t)(lt - buf) ||
            fputs("\\u003c", data) < 0)
            return -1;
    return fwrite(buf, 1, size, data) == size ? 0 : -1;
}

/* The page: the data and the embedded scripts and styles. An embedded file that could end its
 * own <script> or <style> element is refused (it cannot happen with the files we ship). */
static int write_page(FILE *f, json_t *data, const char *title)
{
    static const char *const assets[] = {mv_asset_uplot_css, mv_asset_page_css, mv_asset_uplot_js,
                                         mv_asset_page_js};
    mv_buf_t t = {0};

    for (size_t i = 0; i < MV_ARRAY_LEN(assets); i++)
        if (strstr(assets[i], "</script") || strstr(assets[i], "</style"))
            return -EINVAL;
    /* the title is data too: escape the few characters that matter in element text */
    for (const char *p = title; *p; p++) {
        const char *e = *p == '<' ? "&lt;" : *p == '&' ? "&amp;" : *p == '>' ? "&gt;" : NULL;
        if (e ? mv_buf_append(&t, e, strlen(e)) < 0 : mv_buf_append(&t, p, 1) < 0)
            return mv_buf_free(&t), -ENOMEM;
    }
    fprintf(f,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>memvisor report %.*s</title>\n"
            "<script>window.mvErrors=[];window.onerror=function(m,s,l,c,e){"
            "window.mvErrors.push(String(m)+' at '+l+':'+c);"
            "var x=document.getElementById('mv-errors');if(x){x.hidden=false;"
            "x.textContent=window.mvErrors.join('\\n');}};</script>\n"
            "<style>%s</style>\n<style>%s</style>\n</head><body>\n"
            "<pre id=\"mv-errors\" class=\"mv-errors\" hidden></pre>\n"
            "<main id=\"mv-root\"><noscript>This report draws its charts with JavaScript; the "
            "text report (memvisor report PATH) has the same figures.</noscript></main>\n"
            "<script type=\"application/json\" id=\"mv-data\">",
            (int)t.len, t.data ? (char *)t.data : "", mv_asset_uplot_css, mv_asset_page_css);
    mv_buf_free(&t);
    if (json_dump_callback(data, emit_cb, f, JSON_COMPACT | JSON_ESCAPE_SLASH) < 0)
        return -EIO;
    fprintf(f, "</script>\n<script>%s</script>\n<script>%s</script>\n</body></html>\n",
            mv_asset_uplot_js, mv_asset_page_js);
    return 0;
}

int mv_report_html(const char *path, const char *html, char *why, size_t n)
{
    mv_report_t r;
    ctx_t c = {0};
    json_t *tl = NULL, *data = NULL;
    char tmp[4096];
    FILE *f = NULL;
    int e;

    memset(&r, 0, sizeof r);
    r.why = why;
    r.nwhy = n;
    r.on_result = on_result;
    r.arg = &c;
    c.r = &r;
    if ((e = mv__report_load(&r, path)) < 0 ||
        (r.dir && (e = mv__report_timeline(&r, BUDGET, &tl)) < 0))
        goto out;
    data = page_data(&r, &c, tl);
    tl = NULL; /* page_data took it */
    if (!data) {
        e = -ENOMEM;
        snprintf(why, n, "out of memory");
        goto out;
    }
    snprintf(tmp, sizeof tmp, "%s.new", html);
    if (!(f = fopen(tmp, "w"))) {
        e = -errno;
        snprintf(why, n, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    e = write_page(f, data, r.dir ? mv__report_str_or(r.run, "run", r.dir) : r.results);
    if (fclose(f) != 0 && e == 0)
        e = -errno;
    if (e == 0 && rename(tmp, html) < 0)
        e = -errno;
    if (e < 0) {
        snprintf(why, n, "cannot write %s: %s", html, strerror(-e));
        unlink(tmp);
    }
out:
    json_decref(data);
    json_decref(tl);
    free(c.ends);
    mv__report_free(&r);
    return e;
}
