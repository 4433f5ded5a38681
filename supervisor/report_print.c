/*
 * report_print: `memvisor report PATH` as text for a person: the run, leak suspects with
 * their evidence, recycles, per-kind distributions and suggested limits, from what
 * report_load.c read. Also the subcommand's arguments (`--html FILE` goes to report_html.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "report.h"
#include "report_int.h"
#include "exitcode.h"
#include "util.h"

#define MIB       (INT64_C(1) << 20)
#define MAX_SHOWN 20 /* kinds listed in the distributions */
#define rule_name mv__report_rule_name
#define str_or    mv__report_str_or
#define int_or    mv__report_int_or

typedef mv_report_vec_t vec_t;
typedef mv_report_kind_t kind_t;
typedef mv_report_t rep_t;

/* Text from the run's files (kinds, paths, reasons, a worker's type names and mappings, a
 * parser's excerpt of a bad line) as a terminal may show it: C0 controls (newline and tab
 * included), DEL and C1 controls (U+0080..U+009F) are written as \xNN, so no field can move
 * the cursor, retitle or clear the terminal, or start a line of its own in the report (a
 * forged [limits] block). s itself when it has none; else its escaped copy in buf (n bytes,
 * cut with "..." when it does not fit). */
const char *mv__report_text(const char *s, char *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    for (; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            break;
    if (!*p)
        return s;
    if (n < 16)
        return "?";
    /* Cut only at a character's first byte, with room for one escape, the rest of a UTF-8
     * sequence, "..." and the NUL. */
    for (p = (const unsigned char *)s; *p && ((*p & 0xc0) == 0x80 || o + 12 <= n); p++) {
        if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *p);
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", p[1]);
            p++;
        } else {
            buf[o++] = (char)*p;
        }
    }
    if (*p)
        memcpy(buf + o, "...", 3), o += 3;
    buf[o] = '\0';
    return buf;
}
#define tx(s, buf) mv__report_text((s), (buf), sizeof(buf))

/* A string field of a checked object, or dflt. */
const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : dflt;
}

/* An integer field of a checked object as text, "?" when absent; with bytes, as a size and
 * "off" for 0 (buf holds 24). */
const char *int_or(json_t *o, const char *key, bool bytes, char *buf)
{
    json_t *j = json_object_get(o, key);

    if (!json_is_integer(j))
        return "?";
    if (bytes && json_integer_value(j) == 0)
        return "off";
    if (bytes)
        mv_fmt_bytes(json_integer_value(j), buf);
    else
        snprintf(buf, 24, "%lld", (long long)json_integer_value(j));
    return buf;
}

/* The header: which run, what ran, when, how it ended, its limits, the files read. */
static void print_header(const rep_t *r, FILE *out)
{
    json_t *cmd = json_object_get(r->run, "command"), *t = json_object_get(r->run, "tasks");
    json_t *lim = json_object_get(r->run, "limits"), *en = json_object_get(lim, "enforce");
    const char *pre = "";
    char a[24], b[24], c[24], d[24], e1[PATH_MAX], e2[PATH_MAX], e3[1024];
    const char *mt = int_or(lim, "max_tasks", false, d);
    size_t i;

    if (!json_is_array(cmd) && (cmd = json_object_get(r->run, "command_base64")))
        pre = "base64:";
    fprintf(out, "memvisor report: run %s\n", tx(str_or(r->run, "run", "?"), e1));
    fprintf(out, "  directory  %s\n  command   ", tx(r->dir, e1));
    for (i = 0; i < json_array_size(cmd); i++)
        fprintf(out, " %s%s", pre, tx(json_string_value(json_array_get(cmd, i)), e1));
    fprintf(out, "%s\n", json_array_size(cmd) ? "" : " ?");
    fprintf(out, "  config     %s\n  started    %s\n  ended      %s\n  exit       %s\n",
            tx(str_or(r->run, "config", "(built-in defaults)"), e1),
            tx(str_or(r->run, "started", "?"), e2),
            tx(str_or(r->run, "ended",
                      r->died ? "never: memvisor died (killed or crashed) before it could say so; "
                                "no run holds its directory's lock"
                              : "(still running, or it ended without saying so)"),
               e3),
            int_or(r->run, "exit", false, a));
    if (r->results && !json_is_string(json_object_get(r->run, "ended")))
        /* run.json's counts are those of its start until the run ends (memvisor.Pool's
         * report() in its with block said 0 ok): a running run's are its results so far */
        fprintf(out, "  tasks      %lld ok, %lld failed, %lld quarantined %s\n",
                (long long)r->st[0], (long long)r->st[1], (long long)r->st[2],
                r->died ? "in its results (it died before it counted them)"
                        : "so far (its results)");
    else
        fprintf(out, "  tasks      %s ok, %s failed, %s quarantined\n", int_or(t, "ok", false, a),
                int_or(t, "failed", false, b), int_or(t, "quarantined", false, c));
    fprintf(out, "  workers    %s; memory: %s\n", int_or(r->run, "workers", false, a),
            tx(str_or(r->run, "cgroup", "sampled from /proc, no cgroup"), e1));
    fprintf(out, "  limits     soft %s, hard %s, max_tasks %s, enforce %s, metric %s\n",
            int_or(lim, "memory_soft", true, a), int_or(lim, "memory_hard", true, b),
            strcmp(mt, "0") ? mt : "0 (off)",
            json_is_true(en)    ? "yes"
            : json_is_false(en) ? "no (observe only)"
                                : "?",
            tx(str_or(lim, "metric", "?"), e1));
    fprintf(out, "  events     %ld lines%s%s\n", r->event_lines,
            !r->events_tail ? ""
            : r->died       ? " (an incomplete last line, cut when memvisor died, skipped)"
                            : " (an incomplete last line, still being written, skipped)",
            r->events_cut ? "; the oldest were rotated away ([log] events_max): the counts below "
                            "cover the last two files"
                          : "");
    if (r->results) {
        fprintf(out, "  results    %s (%ld lines%s)\n", tx(r->results, e1), r->result_lines,
                r->results_tail ? ", an incomplete last line skipped" : "");
        if (r->later)
            fprintf(out,
                    "             %ld of them ended after this run did: a later run's "
                    "(--resume), not counted here\n",
                    r->later);
    } else if (r->stream) {
        fprintf(out, "  results    %s (a pipe or FIFO, read as the run went; no copy kept)\n",
                tx(r->stream, e1));
    } else if (r->missing) {
        fprintf(out,
                "  results    %s (not found: moved or removed since the run; what follows is "
                "from its events)\n",
                tx(r->missing, e1));
    } else {
        fprintf(out, "  results    %s\n",
                r->results_b64 ? "(a path that is not UTF-8: not read)" : "none");
    }
}

/* The evidence of one snapshot (a relative path is under the run directory): the top
 * allocation site, the top growing type, the top growing mapping. */
static void print_snapshot(const rep_t *r, FILE *out, const char *path)
{
    char where[2 * PATH_MAX], sz[24], fr[24], e[PATH_MAX];
    json_error_t je;
    json_t *j, *heap, *top, *ty, *map;

    snprintf(where, sizeof where, "%s%s%s", path[0] == '/' ? "" : r->dir, path[0] == '/' ? "" : "/",
             path);
    j = json_load_file(where, 0, &je);
    fprintf(out, "    snapshot   %s\n", tx(where, e));
    if (!j && access(where, F_OK) != 0 && errno == ENOENT) {
        fprintf(out, "               removed: a run keeps its newest [leak] snapshots_max\n");
        return;
    }
    if (!json_is_object(j)) {
        fprintf(out, "               unreadable: %s\n", j ? "not a JSON object" : tx(je.text, e));
        json_decref(j);
        return;
    }
    heap = json_object_get(j, "heap");
    top = json_array_get(json_object_get(json_object_get(heap, "tracemalloc"), "top"), 0);
    ty = json_array_get(json_object_get(heap, "types"), 0);
    map = json_array_get(json_object_get(j, "mappings_growth"), 0);
    mv_fmt_bytes(json_integer_value(json_object_get(top, "size_diff")), sz);
    if (json_is_string(json_object_get(top, "where")))
        fprintf(out, "               tracemalloc  %s grew %s\n", tx(str_or(top, "where", ""), e),
                sz);
    if (json_is_string(json_object_get(ty, "type")))
        fprintf(out, "               type         %s +%lld (%lld now)\n",
                tx(str_or(ty, "type", ""), e),
                (long long)json_integer_value(json_object_get(ty, "diff")),
                (long long)json_integer_value(json_object_get(ty, "count")));
    mv_fmt_bytes(json_integer_value(json_object_get(map, "growth")), sz);
    if (json_is_string(json_object_get(map, "mapping")))
        fprintf(out, "               mapping      %s grew %s\n", tx(str_or(map, "mapping", ""), e),
                sz);
    mv_fmt_bytes(json_integer_value(json_object_get(heap, "uordblks")), sz);
    mv_fmt_bytes(json_integer_value(json_object_get(heap, "fordblks")), fr);
    if (json_is_string(json_object_get(heap, "allocator")))
        fprintf(out, "               heap         %s allocator: %s in use, %s free\n",
                tx(str_or(heap, "allocator", ""), e), sz, fr);
    if (!json_is_object(heap))
        fprintf(out, "               heap         no view from the worker (%s)\n",
                tx(str_or(j, "heap_status", "no heap_status"), e));
    json_decref(j);
}

static int64_t mean(const mv_report_vec_t *v)
{
    long double sum = 0;

    for (size_t i = 0; i < v->n; i++)
        sum += v->v[i];
    return v->n ? (int64_t)(sum / (long double)v->n) : 0;
}

/* Leak suspects, the biggest bytes retained per task first, each with its evidence. */
static void print_suspects(const rep_t *r, FILE *out)
{
    char sz[24], mn[24], e[1024];

    fprintf(out, "\nLeak suspects, biggest retained per task first\n");
    if (!r->dir)
        fprintf(out, "  unknown: suspects are events (events.jsonl); a results file has none\n");
    else if (r->nsus == 0)
        fprintf(out, "  No leak suspected\n");
    for (size_t i = 0; i < r->nsus; i++) {
        const kind_t *k = &r->kinds[i];
        size_t nw = json_object_size(k->workers);

        mv_fmt_bytes((int64_t)k->per_task, sz);
        fprintf(out, "  %-12s %10s/task  confidence %.2f  rule", tx(k->name, e), sz, k->confidence);
        for (unsigned b = 0, first = 1; b < 4; b++)
            if (k->rules & (1u << b)) {
                fprintf(out, "%s%s", first ? " " : ",", rule_name[b]);
                first = 0;
            }
        fprintf(out, "%s  %lld event%s", k->rules ? "" : " ?", (long long)k->events,
                k->events == 1 ? "" : "s");
        if (k->fds > 0)
            fprintf(out, "  %.2f fds/task", k->fds);
        if (k->evidence)
            fprintf(out, "\n    confirmed  by %s", tx(k->evidence, e));
        /* The mean with the p50: memory that grows by whole pages or arenas (a 16 KiB leak in
         * 256 KiB steps) keeps most tasks at 0 and the p50 with them. */
        mv_fmt_bytes(mean(&k->retained), mn);
        mv_fmt_bytes(mv_percentile(k->retained.v, k->retained.n, 50), sz);
        if (k->retained.n)
            fprintf(out, "\n    evidence   retained mean %s, p50 %s over %zu task%s of this kind",
                    mn, sz, k->retained.n, k->retained.n == 1 ? "" : "s");
        else
            fprintf(out, "\n    evidence   no measured task of this kind in the results");
        mv_fmt_bytes(mean(&k->heap), mn);
        mv_fmt_bytes(mv_percentile(k->heap.v, k->heap.n, 50), sz);
        if (k->heap.n)
            fprintf(out, " (live heap bytes mean %s, p50 %s over %zu)", mn, sz, k->heap.n);
        if (nw) /* none known: an older run's confirmation after its worker left */
            fprintf(out, "; seen on %zu worker%s", nw, nw == 1 ? "" : "s");
        fprintf(out, "\n");
        if (k->snapshot)
            print_snapshot(r, out, k->snapshot);
        else
            fprintf(out, "    snapshot   none\n");
    }
}

/* The kinds suspected and not confirmed, and those cleared: each with why. */
static void print_not_confirmed(const rep_t *r, FILE *out)
{
    static const struct {
        int status;
        const char *title;
    } part[] = {{MV_REPORT_SUSPECTED, "Suspected, not confirmed (no advice is built on them)"},
                {MV_REPORT_CLEARED, "Suspected, then cleared"}};

    char e1[1024], e2[2048];

    for (size_t p = 0; p < MV_ARRAY_LEN(part); p++) {
        bool any = false;
        for (size_t i = 0; i < r->nkinds; i++) {
            const kind_t *k = &r->kinds[i];
            if (k->status != part[p].status)
                continue;
            if (!any)
                fprintf(out, "\n%s\n", part[p].title);
            any = true;
            fprintf(out, "  %-12s %s\n", tx(k->name, e1), k->note ? tx(k->note, e2) : "");
        }
    }
}

/* Prints counts by reason, in the order first seen, with `suffix` after each. */
static void print_counts(json_t *counts, const char *suffix, FILE *out)
{
    char e[1024];

    for (void *it = json_object_iter(counts); it; it = json_object_iter_next(counts, it))
        fprintf(out, "  %-20s %6lld%s\n", tx(json_object_iter_key(it), e),
                (long long)json_integer_value(json_object_iter_value(it)), suffix);
}

/* One row of p50/p95/max: sizes, or milliseconds when ms. */
static void print_row(FILE *out, const char *what, const vec_t *v, bool ms)
{
    static const unsigned pct[] = {50, 95, 100};
    static const char *const label[] = {"p50", "p95", "max"};
    char s[24];

    fprintf(out, "    %-10s", what);
    for (size_t i = 0; i < 3 && v->n; i++) {
        int64_t x = mv_percentile(v->v, v->n, pct[i]);
        if (ms)
            snprintf(s, sizeof s, "%.2f ms", (double)x / 1000.0);
        else
            mv_fmt_bytes(x, s);
        fprintf(out, "  %s %11s", label[i], s);
    }
    fprintf(out, "%s\n", v->n ? "" : "  (none)");
}

/* Recycles and would-be recycles by reason, kernel OOM kills, exits by reason. */
static void print_recycles(const rep_t *r, FILE *out)
{
    fprintf(out, "\nRecycles by reason (workers that left, by why they finally did, as the "
                 "run's summary counts them)\n");
    if (!r->dir) {
        fprintf(out, "  unknown: recycles are events (events.jsonl); a results file has none\n");
        return;
    }
    if (json_object_size(r->left) + json_object_size(r->would) == 0)
        fprintf(out, "  none\n");
    print_counts(r->left, "", out);
    print_counts(r->would, "  would have recycled (observe-only)", out);
    /* what memvisor decided: a drain may still end in a kill, a crash is decided by no one */
    fprintf(out, "Recycles decided (drains and kills begun)\n");
    if (json_object_size(r->recycles) == 0)
        fprintf(out, "  none\n");
    print_counts(r->recycles, "", out);
    fprintf(out, "Kernel OOM kills %lld (of workers or of their children)\n", (long long)r->ooms);
    fprintf(out, "Exits by reason\n");
    if (json_object_size(r->exits) == 0)
        fprintf(out, "  none\n");
    print_counts(r->exits, "", out);
    fprintf(out, "Requeued tasks %lld, quarantined tasks %lld\n", (long long)r->requeues,
            (long long)r->quarantines);
    /* What each new worker costs before its first task: what a warm template saves. */
    fprintf(out, "Worker start-up (%zu workers that exited)\n", r->startup_mem.n);
    print_row(out, "memory", &r->startup_mem, false);
    print_row(out, "time", &r->startup_us, true);
}

/* Per kind, after all tasks: the task count, then mem_peak, retained and duration rows. */
static void print_kinds(const rep_t *r, FILE *out)
{
    char e[1024];
    size_t n = 0;

    fprintf(out, "\nPer kind (nearest-rank percentiles over the tasks with memory figures)\n");
    if (!r->results)
        fprintf(out, "  %s: no per-task figures\n",
                r->missing ? "the results file is gone" : "no results file");
    for (size_t i = 0; r->results && i <= r->nkinds; i++) {
        const kind_t *k = i ? &r->kinds[i - 1] : &r->all;

        if (i && (!k->tasks || n++ >= MAX_SHOWN))
            continue;
        fprintf(out, "  %s: %lld task%s", i ? tx(k->name, e) : "(all)", (long long)k->tasks,
                k->tasks == 1 ? "" : "s");
        if (k->unmeasured)
            fprintf(out, ", %lld without memory figures", (long long)k->unmeasured);
        fprintf(out, "\n");
        print_row(out, "mem_peak", &k->peak, false);
        print_row(out, "retained", &k->retained, false);
        print_row(out, "duration", &k->dur_us, true);
    }
    if (n > MAX_SHOWN)
        fprintf(out, "  (%zu more kinds not shown)\n", n - MAX_SHOWN);
}

/* The max_tasks line with its reasoning (s, b, l: soft, fresh baseline, leak, formatted). */
static void print_tasks_advice(const rep_t *r, const mv_advice_t *a, const char *s, const char *b,
                               const char *l, FILE *out)
{
    char e[1024];

    fprintf(out, "  max_tasks    ");
    if (!r->dir)
        fprintf(out, "(no suggestion): suspects are events; a results file alone has none\n");
    else if (r->nsus == 0 || a->max_tasks == 0)
        fprintf(out, "%10s  %s\n", "0 (off)",
                r->nsus ? "the suspects retain no bytes per task"
                        : "no leak suspected, memory limits are enough");
    else if (a->max_tasks < 0)
        fprintf(out, "(no suggestion): no worker's first task in the results (no pid)\n");
    else if (a->baseline_over)
        fprintf(out, "%10s  a fresh worker's first mem_before (p50 %s) is already at soft\n", "1",
                b);
    else
        fprintf(out,
                "%10lld  (soft %s - fresh worker baseline p50 %s) / %s per task (%s), rounded "
                "down: so that this leak alone never reaches the soft limit\n",
                (long long)a->max_tasks, s, b, l, tx(r->kinds[0].name, e));
}

/* Suggested [limits], each with its reasoning on one line, then as INI lines to paste. */
void mv__report_print_advice(const rep_t *r, FILE *out)
{
    mv_advice_in_t in = {0, r->transient_max, 0, -1, 0, 0};
    json_t *lim = json_object_get(r->run, "limits");
    char h[24], s[24], p[24], t[24], f[24], b[24], l[24], w[24], now[24];
    mv_advice_t a;

    fprintf(out, "\nSuggested limits (from %zu tasks with memory figures)\n", r->all.peak.n);
    if (r->all.peak.n == 0) {
        fprintf(out, "  no task with memory figures: no suggestion\n");
        return;
    }
    in.peak_max = r->all.peak.v[r->all.peak.n - 1];
    in.after_p95 = mv_percentile(r->after.v, r->after.n, 95);
    in.fresh_p50 = r->fresh.n ? mv_percentile(r->fresh.v, r->fresh.n, 50) : -1;
    in.leak = r->nsus ? (int64_t)r->kinds[0].per_task : 0;
    in.worker_peak = r->worker_peak;
    mv_advise(&in, &a);
    mv_fmt_bytes(a.hard, h), mv_fmt_bytes(a.soft, s), mv_fmt_bytes(in.peak_max, p);
    mv_fmt_bytes(in.transient_max, t), mv_fmt_bytes(a.floor, f);
    mv_fmt_bytes(in.fresh_p50, b), mv_fmt_bytes(in.leak, l), mv_fmt_bytes(r->worker_peak, w);
    fprintf(out, "  memory_hard  %10s  ", h);
    if (!a.floored && a.worker_over)
        fprintf(out,
                "largest worker peak %s x 1.25, rounded up to a MiB: above every task's (%s), "
                "from its start-up (or between tasks), which a worker must get through",
                w, p);
    else if (!a.floored)
        fprintf(out,
                "largest task peak %s x 1.25, rounded up to a MiB: a legitimate big task "
                "never hits it",
                p);
    else
        fprintf(out,
                "must grow: soft %s + largest single-task transient %s, so a worker just "
                "under soft can still run its biggest task",
                f, t);
    fprintf(out, " (now %s)\n  memory_soft  %10s  ", int_or(lim, "memory_hard", true, now), s);
    if (!a.floored)
        fprintf(out,
                "hard minus the largest single-task transient %s (mem_peak - mem_before), "
                "rounded down to a MiB; not below p95 mem_after x 1.1 = %s",
                t, f);
    else
        fprintf(out,
                "p95 mem_after x 1.1, rounded up to a MiB: hard minus the largest "
                "transient %s would recycle workers after most tasks",
                t);
    fprintf(out, " (now %s)\n", int_or(lim, "memory_soft", true, now));
    print_tasks_advice(r, &a, s, b, l, out);
    fprintf(out, "\n[limits]\nmemory_soft = %lldM\nmemory_hard = %lldM\n",
            (long long)(a.soft / MIB), (long long)(a.hard / MIB));
    if (r->dir && a.max_tasks >= 0)
        fprintf(out, "max_tasks = %lld\n", (long long)a.max_tasks);
}

/* Loads, ranks, prints, in that order: an error leaves nothing half-printed. */
int mv_report(const char *path, FILE *out, char *why, size_t n)
{
    char esc[PATH_MAX];
    rep_t r;
    int e;

    memset(&r, 0, sizeof r);
    r.why = why;
    r.nwhy = n;
    if ((e = mv__report_load(&r, path)) == 0) {
        if (r.dir) {
            print_header(&r, out);
        } else {
            fprintf(out,
                    "memvisor report: results file %s (%ld lines)\n  a results file alone: no "
                    "run.json or events.jsonl, so no leak suspects, recycles or limits in force\n"
                    "  tasks      %lld ok, %lld failed, %lld quarantined\n",
                    tx(r.results, esc), r.result_lines, (long long)r.st[0], (long long)r.st[1],
                    (long long)r.st[2]);
        }
        print_suspects(&r, out);
        print_not_confirmed(&r, out);
        print_recycles(&r, out);
        print_kinds(&r, out);
        mv__report_print_advice(&r, out);
        if (fflush(out) != 0 || ferror(out)) {
            e = -EIO;
            snprintf(why, n, "cannot write the report: %s", strerror(errno));
        }
    }
    mv__report_free(&r);
    return e;
}

/* The subcommand: argument checks, the report on stdout (or the page in a file), the error
 * on stderr. */
int mv_report_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: memvisor report [--html FILE] PATH\n"
        "  PATH   a run directory, a state directory for its latest run, or a results file\n"
        "  --html FILE   write one self-contained HTML page (charts, opens offline) to FILE\n";
    const char *html = NULL, *path = NULL;
    char why[1024], esc[1024];
    int e;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return fputs(usage, stdout), MV_EXIT_OK;
        if (strcmp(argv[i], "--html") == 0 && i + 1 < argc && argv[i + 1][0] && !html)
            html = argv[++i];
        else if (argv[i][0] && (argv[i][0] != '-' || !argv[i][1]) && !path)
            path = argv[i];
        else
            path = html = "", i = argc; /* bad arguments */
    }
    if (!path || !*path) {
        fprintf(stderr, "memvisor report: %s\n%s", argc < 3 ? "missing PATH" : "bad arguments",
                usage);
        return MV_EXIT_USAGE;
    }
    e = html ? mv_report_html(path, html, why, sizeof why)
             : mv_report(path, stdout, why, sizeof why);
    if (e < 0) {
        /* the error quotes file names and the parser's excerpt of a bad line */
        fprintf(stderr, "memvisor report: %s\n", tx(why, esc));
        return MV_EXIT_CANT_RUN;
    }
    return MV_EXIT_OK;
}
