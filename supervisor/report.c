/*
 * report: `memvisor report PATH` reads what a run left on disk (docs/run-files.md: run.json,
 * events.jsonl, the snapshot files, the results file) and prints a summary for a person.
 *
 * Everything is read first, then printed, so bad input gives one error naming the file (and
 * line) and no half-printed report. Every file is untrusted: a field that is absent or null is
 * unknown (older or still-running runs leave fields out); a field present with the wrong type
 * or an absurd value is an error, because guessing would print wrong advice. A snapshot that
 * cannot be read only costs its evidence lines: it is evidence, not the run's record.
 */
#include "report.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "supervisor.h"
#include "util.h"

#define MIB       (INT64_C(1) << 20)
#define MAX_BYTES (INT64_C(1) << 56) /* 64 PiB: every sum and x1.25 below stays in int64 */
#define MAX_COUNT (INT64_C(1) << 53)
#define MAX_TASKS INT64_C(1000000000000) /* the config's bound on [limits] max_tasks */
#define MAX_SHOWN 20                     /* kinds listed in the distributions */
#define OOM(r)    fail(r, -ENOMEM, "out of memory")

static const char *const rule_name[] = {"trend", "task_growth", "fd_trend", "other"};

/* A field a file must give the right type: absent or null is always accepted. */
typedef struct spec {
    const char *key;
    char type; /* i integer, n number, s string (or KEY_base64), a array of strings (or
                * KEY_base64), b boolean, o object */
    int64_t lo, hi;
} spec_t;

/* A checked field. set: 0 absent or null, 1 present, 2 present as KEY_base64. */
typedef struct val {
    int set;
    int64_t i;
    double n;
    const char *s;
} val_t;

/* Where a value comes from, for error messages: FILE[:LINE]: [OBJ.]KEY. */
typedef struct src {
    const char *file;
    long line;
    const char *obj;
} src_t;

typedef mv_report_vec_t vec_t;
typedef mv_report_kind_t kind_t;
typedef mv_report_t rep_t;

typedef int (*line_cb)(rep_t *r, const src_t *s, json_t *o);

/* clang-format off */
#define STR(k)         {k, 's', 0, 0}
#define INT(k, lo, hi) {k, 'i', lo, hi}
#define NUM(k, hi)     {k, 'n', 0, hi}
static const spec_t run_spec[] = {
    STR("run"), STR("started"), STR("ended"), STR("config"), STR("results"), STR("cgroup"),
    {"command", 'a', 0, 0}, INT("workers", 0, 1 << 20), INT("exit", 0, 65535),
    {"limits", 'o', 0, 0}, {"tasks", 'o', 0, 0}};
enum { RUN_ENDED = 2, RUN_RESULTS = 4 };
static const spec_t limits_spec[] = {
    INT("memory_soft", 0, MAX_BYTES), INT("memory_hard", 0, MAX_BYTES),
    INT("max_tasks", 0, MAX_COUNT), STR("metric"), {"enforce", 'b', 0, 0}};
static const spec_t tasks_spec[] = {
    INT("ok", 0, MAX_COUNT), INT("failed", 0, MAX_COUNT), INT("quarantined", 0, MAX_COUNT)};
static const spec_t result_spec[] = {
    STR("status"), STR("kind"), INT("mem_before", 0, MAX_BYTES), INT("mem_after", 0, MAX_BYTES),
    INT("mem_peak", 0, MAX_BYTES), INT("retained", -MAX_BYTES, MAX_BYTES),
    NUM("duration_ms", MAX_COUNT), INT("worker", 0, INT32_MAX), INT("pid", 0, INT32_MAX)};
enum { R_STATUS, R_KIND, R_BEFORE, R_AFTER, R_PEAK, R_RETAINED, R_DUR, R_SLOT, R_PID, R_N };
static const spec_t suspect_spec[] = {
    STR("kind"), NUM("per_task", MAX_BYTES), NUM("fds_per_task", MAX_COUNT), NUM("confidence", 1),
    STR("rule"), INT("worker", 0, INT32_MAX), INT("pid", 0, INT32_MAX), STR("snapshot")};
enum { S_KIND, S_PER, S_FDS, S_CONF, S_RULE, S_SLOT, S_PID, S_SNAP, S_N };
static const spec_t event_spec[] = {STR("event"), STR("reason")};
/* clang-format on */

/* Fills `why` and returns err: the one way every error leaves this file. */
__attribute__((format(printf, 3, 4))) static int fail(rep_t *r, int err, const char *fmt, ...)
{
    va_list ap;

    if (r->why && r->nwhy) {
        va_start(ap, fmt);
        vsnprintf(r->why, r->nwhy, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* Why json value j does not fit spec sp; NULL when it does (values go to v). */
static const char *check(json_t *j, const spec_t *sp, val_t *v)
{
    size_t i;

    switch (sp->type) {
    case 'i':
        if (!json_is_integer(j))
            return "expected an integer";
        v->i = json_integer_value(j);
        return v->i < sp->lo || v->i > sp->hi ? "out of range" : NULL;
    case 'n':
        if (!json_is_number(j))
            return "expected a number";
        v->n = json_number_value(j);
        return v->n >= (double)sp->lo && v->n <= (double)sp->hi ? NULL : "out of range";
    case 's': v->s = json_string_value(j); return v->s ? NULL : "expected a string";
    case 'a':
        for (i = 0; i < json_array_size(j); i++) /* plain loops: cppcheck knows no foreach */
            if (!json_is_string(json_array_get(j, i)))
                return "expected strings";
        return json_is_array(j) ? NULL : "expected an array of strings";
    case 'b': v->i = json_is_true(j); return json_is_boolean(j) ? NULL : "expected true or false";
    default: return json_is_object(j) ? NULL : "expected an object";
    }
}

/* Checks the fields sp[0..n) of object o into v[0..n). 0, or -EINVAL naming
 * FILE[:LINE]: [OBJ.]KEY and what is wrong with it. */
static int get_all(rep_t *r, const src_t *s, json_t *o, const spec_t *sp, size_t n, val_t *v)
{
    char k64[64], at[32] = "";

    for (size_t i = 0; i < n; i++) {
        json_t *j = json_object_get(o, sp[i].key);
        const char *why;

        memset(&v[i], 0, sizeof v[i]);
        snprintf(k64, sizeof k64, "%s_base64", sp[i].key);
        v[i].set = j && !json_is_null(j) ? 1 : 0;
        if (!v[i].set && (sp[i].type == 's' || sp[i].type == 'a') &&
            (j = json_object_get(o, k64)) && !json_is_null(j))
            v[i].set = 2;
        if (!v[i].set || !(why = check(j, &sp[i], &v[i])))
            continue;
        if (s->line)
            snprintf(at, sizeof at, ":%ld", s->line);
        return fail(r, -EINVAL, "%s%s: %s%s%s: %s", s->file, at, s->obj ? s->obj : "",
                    s->obj ? "." : "", v[i].set == 2 ? k64 : sp[i].key, why);
    }
    return 0;
}

/* Appends x; the capacity doubles at each power of two (from 8). 0 or -ENOMEM. */
static int vec_push(vec_t *a, int64_t x)
{
    int64_t *v = a->v;

    if ((a->n == 0 || (a->n >= 8 && (a->n & (a->n - 1)) == 0)) &&
        !(v = realloc(v, MV_MAX(2 * a->n, 8) * sizeof *v)))
        return -ENOMEM;
    a->v = v;
    a->v[a->n++] = x;
    return 0;
}

/* qsort order of int64_t values, ascending. */
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Sorts a vector ascending, ready for mv_percentile (qsort wants a non-null base). */
static void vec_sort(vec_t *a)
{
    if (a->n > 1)
        qsort(a->v, a->n, sizeof *a->v, cmp_i64);
}

/* Nearest rank, in integers, so the same data always gives the same exact figure. */
int64_t mv_percentile(const int64_t *sorted, size_t n, unsigned pct)
{
    size_t rank;

    if (n == 0)
        return 0;
    if (pct > 100)
        pct = 100;
    /* ceil(n * pct / 100) with no overflow and no floating point (0.95 * 20 > 19). */
    rank = n / 100 * pct + (n % 100 * pct + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

/* Bytes clamped to 0..MAX_BYTES, so the advice's arithmetic cannot overflow. */
static int64_t clamp(int64_t v)
{
    return v < 0 ? 0 : v > MAX_BYTES ? MAX_BYTES : v;
}

/* Rounds bytes up to a whole MiB (limits are pasted as whole MiB). */
static int64_t mib_up(int64_t v)
{
    return (v + MIB - 1) / MIB * MIB;
}

/* The rules of mv_advice_t, in integers; print_advice prints them as reasoning. */
void mv_advise(const mv_advice_in_t *in, mv_advice_t *a)
{
    int64_t peak = clamp(in->peak_max), tr = clamp(in->transient_max);
    int64_t after = clamp(in->after_p95), leak = clamp(in->leak);

    memset(a, 0, sizeof *a);
    /* x1.25 and x1.1 in integers, rounded up: peak + ceil(peak / 4), after + ceil(after / 10). */
    a->hard = MV_MAX(mib_up(peak + (peak + 3) / 4), MIB);
    a->floor = mib_up(after + (after + 9) / 10);
    a->soft = MV_MAX((a->hard - MV_MIN(tr, a->hard)) / MIB * MIB, MIB);
    if (a->soft < a->floor) {
        /* A soft limit below what most tasks leave a worker at recycles after every task. A
         * worker just under soft must still fit its biggest transient under hard: as soft was
         * hard - transient, a higher soft always means a higher hard (not only when the floor
         * is above hard itself). */
        a->soft = a->floor;
        a->hard = MV_MAX(a->hard, mib_up(a->floor + tr));
        a->floored = true;
    }
    if (leak == 0) {
        a->max_tasks = 0;
    } else if (in->fresh_p50 < 0) {
        a->max_tasks = -1;
    } else if (in->fresh_p50 >= a->soft) {
        a->max_tasks = 1;
        a->baseline_over = true;
    } else {
        a->max_tasks = MV_MIN(MV_MAX((a->soft - in->fresh_p50) / leak, 1), MAX_TASKS);
    }
}

/* Reads and checks run.json; notes where the results are and whether the run is over. */
static int load_run(rep_t *r, const char *path)
{
    src_t s = {path, 0, NULL};
    val_t v[MV_ARRAY_LEN(run_spec)], w[MV_ARRAY_LEN(limits_spec)];
    json_error_t je;
    FILE *f = fopen(path, "r");
    int e;

    if (!f)
        return fail(r, -errno, "%s: %s", path, strerror(errno));
    r->run = json_loadf(f, 0, &je);
    fclose(f);
    if (!r->run)
        return fail(r, -EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(r->run))
        return fail(r, -EINVAL, "%s: not a JSON object", path);
    if ((e = get_all(r, &s, r->run, run_spec, MV_ARRAY_LEN(run_spec), v)) < 0 ||
        (e = get_all(r, &(src_t){path, 0, "limits"}, json_object_get(r->run, "limits"), limits_spec,
                     MV_ARRAY_LEN(limits_spec), w)) < 0 ||
        (e = get_all(r, &(src_t){path, 0, "tasks"}, json_object_get(r->run, "tasks"), tasks_spec,
                     MV_ARRAY_LEN(tasks_spec), w)) < 0)
        return e;
    r->running = !v[RUN_ENDED].set;
    r->results_b64 = v[RUN_RESULTS].set == 2;
    if (v[RUN_RESULTS].set == 1 && !(r->results = strdup(v[RUN_RESULTS].s)))
        return OOM(r);
    return 0;
}

/* Calls cb for each JSON object line of `path` (blank lines skipped). A last line with no
 * newline that does not parse is skipped when the run is still running (the supervisor may be
 * writing it); anywhere else a bad line is an error naming it. Returns lines read or -errno. */
static long read_lines(rep_t *r, const char *path, line_cb cb, bool *tail)
{
    src_t s = {path, 0, NULL};
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int e = 0;

    if (!f)
        return fail(r, -errno, "%s: %s", path, strerror(errno));
    while (e == 0 && (len = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *o;

        s.line++;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        o = json_loadb(line, (size_t)len, 0, &je);
        if (!o && line[len - 1] != '\n' && r->dir && r->running) {
            *tail = true;
            s.line--;
            break;
        }
        if (!o)
            e = fail(r, -EINVAL, "%s:%ld: invalid JSON: %s", path, s.line, je.text);
        else if (!json_is_object(o))
            e = fail(r, -EINVAL, "%s:%ld: not a JSON object", path, s.line);
        else
            e = cb(r, &s, o);
        json_decref(o);
    }
    if (e == 0 && ferror(f))
        e = fail(r, -EIO, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return e < 0 ? e : s.line;
}

/* The kind named by a checked "kind" field (dflt when absent), made on first sight; a name
 * that was not UTF-8 keeps its base64 with a prefix. NULL on ENOMEM. */
static kind_t *kind_of(rep_t *r, const val_t *v, const char *dflt)
{
    char *name = NULL;
    json_t *ix;
    kind_t *k;

    if (v->set == 2 && asprintf(&name, "base64:%s", v->s) < 0)
        return NULL;
    if (!name && !(name = strdup(v->set ? v->s : dflt)))
        return NULL;
    if ((ix = json_object_get(r->kind_index, name))) {
        free(name);
        return &r->kinds[json_integer_value(ix)];
    }
    /* Capacity doubles at each power of two: many kinds must not cost a realloc each. */
    k = r->kinds;
    if ((r->nkinds & (r->nkinds - 1)) == 0 &&
        (k = realloc(k, MV_MAX(2 * r->nkinds, 1) * sizeof *k)))
        r->kinds = k;
    if (!k || json_object_set_new(r->kind_index, name, json_integer((json_int_t)r->nkinds)) < 0) {
        free(name);
        return NULL;
    }
    k = &r->kinds[r->nkinds++];
    memset(k, 0, sizeof *k);
    k->name = name;
    return k;
}

/* One leak_suspect event, folded into its kind. */
static int on_suspect(rep_t *r, const src_t *s, json_t *o)
{
    val_t v[S_N];
    unsigned bit = 3; /* "other" */
    char key[48];
    kind_t *k;
    int e;

    if ((e = get_all(r, s, o, suspect_spec, S_N, v)) < 0)
        return e;
    if (!(k = kind_of(r, &v[S_KIND], "(unknown)")))
        return OOM(r);
    if (!k->workers && !(k->workers = json_object()))
        return OOM(r);
    r->nsus += k->events++ == 0;
    k->per_task = MV_MAX(k->per_task, v[S_PER].n);
    k->fds = MV_MAX(k->fds, v[S_FDS].n);
    k->confidence = MV_MAX(k->confidence, v[S_CONF].n);
    for (unsigned i = 0; v[S_RULE].set == 1 && i < 3; i++)
        bit = strcmp(v[S_RULE].s, rule_name[i]) == 0 ? i : bit;
    k->rules |= v[S_RULE].set ? 1u << bit : 0;
    snprintf(key, sizeof key, "%lld/%lld", (long long)v[S_SLOT].i, (long long)v[S_PID].i);
    if ((v[S_SLOT].set || v[S_PID].set) && json_object_set_new(k->workers, key, json_true()) < 0)
        return OOM(r);
    if (v[S_SNAP].set == 1) {
        free(k->snapshot);
        if (!(k->snapshot = strdup(v[S_SNAP].s)))
            return OOM(r);
    }
    return 0;
}

/* One events.jsonl line: counts what the report shows; other events are ignored. */
static int on_event(rep_t *r, const src_t *s, json_t *o)
{
    val_t v[2];
    json_t *counts = NULL;
    const char *ev, *why;
    int e;

    if ((e = get_all(r, s, o, event_spec, 1, v)) < 0 || v[0].set != 1)
        return e;
    ev = v[0].s;
    if (strcmp(ev, "leak_suspect") == 0)
        return on_suspect(r, s, o);
    r->ooms += strcmp(ev, "kernel_oom") == 0;
    r->requeues += strcmp(ev, "requeue") == 0;
    r->quarantines += strcmp(ev, "quarantine") == 0;
    if (strcmp(ev, "recycle") == 0)
        counts = r->recycles;
    else if (strcmp(ev, "would_recycle") == 0)
        counts = r->would;
    else if (strcmp(ev, "exit") == 0)
        counts = r->exits;
    if (!counts)
        return 0;
    if ((e = get_all(r, s, o, event_spec, 2, v)) < 0)
        return e;
    why = v[1].set == 1 ? v[1].s : "(no reason)";
    e = json_object_set_new(counts, why,
                            json_integer(json_integer_value(json_object_get(counts, why)) + 1));
    return e < 0 ? OOM(r) : 0;
}

/* Adds one measured task's figures to a kind. 0 or -ENOMEM. */
static int kind_add(kind_t *k, const val_t *v)
{
    if (vec_push(&k->peak, v[R_PEAK].i) < 0 || vec_push(&k->retained, v[R_RETAINED].i) < 0)
        return -ENOMEM;
    return v[R_DUR].set ? vec_push(&k->dur_us, (int64_t)(v[R_DUR].n * 1000.0 + 0.5)) : 0;
}

/* One result line. Measured = mem_before, mem_after and mem_peak all known; those feed the
 * kind, (all), and the advice: largest transient, mem_after, each worker's first task. */
static int on_result(rep_t *r, const src_t *s, json_t *o)
{
    static const char *const st[] = {"ok", "failed", "quarantined"};
    val_t v[R_N];
    char key[48];
    kind_t *k;
    int e;

    if ((e = get_all(r, s, o, result_spec, R_N, v)) < 0)
        return e;
    for (size_t i = 0; v[R_STATUS].set == 1 && i < MV_ARRAY_LEN(st); i++)
        r->st[i] += strcmp(v[R_STATUS].s, st[i]) == 0;
    if (!(k = kind_of(r, &v[R_KIND], "(no kind)")))
        return OOM(r);
    k->tasks++;
    r->all.tasks++;
    if (!v[R_BEFORE].set || !v[R_AFTER].set || !v[R_PEAK].set) {
        k->unmeasured++;
        r->all.unmeasured++;
        return 0;
    }
    if (!v[R_RETAINED].set)
        v[R_RETAINED].i = v[R_AFTER].i - v[R_BEFORE].i;
    if (kind_add(k, v) < 0 || kind_add(&r->all, v) < 0 || vec_push(&r->after, v[R_AFTER].i) < 0)
        return OOM(r);
    r->transient_max = MV_MAX(r->transient_max, v[R_PEAK].i - v[R_BEFORE].i);
    snprintf(key, sizeof key, "%lld/%lld", (long long)v[R_SLOT].i, (long long)v[R_PID].i);
    if (!v[R_PID].i || json_object_get(r->fresh_seen, key))
        return 0;
    if (json_object_set_new(r->fresh_seen, key, json_true()) < 0 ||
        vec_push(&r->fresh, v[R_BEFORE].i) < 0)
        return OOM(r);
    return 0;
}

/* Decides what PATH is: a run directory, a state directory (its latest), or a results file. */
static int resolve(rep_t *r, const char *path)
{
    char p[PATH_MAX + 16];
    struct stat st;

    if (stat(path, &st) < 0)
        return fail(r, -errno, "%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode))
        return (r->results = strdup(path)) ? 0 : OOM(r);
    if (!S_ISDIR(st.st_mode))
        return fail(r, -EINVAL, "%s: not a directory or a regular file", path);
    snprintf(p, sizeof p, "%s/run.json", path);
    if (stat(p, &st) == 0 || errno != ENOENT)
        return (r->dir = strdup(path)) ? 0 : OOM(r);
    snprintf(p, sizeof p, "%s/latest", path);
    if (lstat(p, &st) == 0)
        return (r->dir = strdup(p)) ? 0 : OOM(r);
    return fail(r, -ENOENT,
                "%s: not a run directory (no run.json) nor a state directory (no latest)", path);
}

/* A run whose results went to a pipe or FIFO (memvisor.Pool reads them as they come) left
 * nothing to re-read there (and opening a FIFO would wait for a writer): its reader may keep
 * a copy as results.jsonl in the run directory, read instead. A regular file is read as is. */
static int stream_results(rep_t *r)
{
    char copy[PATH_MAX + 16];
    struct stat st;
    bool exists = stat(r->results, &st) == 0;

    if (exists && S_ISREG(st.st_mode))
        return 0;
    snprintf(copy, sizeof copy, "%s/results.jsonl", r->dir);
    if (stat(copy, &st) == 0 && S_ISREG(st.st_mode)) {
        free(r->results);
        return (r->results = strdup(copy)) ? 0 : OOM(r);
    }
    if (exists) { /* a pipe, FIFO, device or socket, with no copy */
        r->stream = r->results;
        r->results = NULL;
    }
    return 0; /* a missing file stays an error, said when it is read */
}

/* Reads everything the report needs: run.json, events.jsonl, the results. */
static int load(rep_t *r, const char *path)
{
    char run[PATH_MAX + 16], events[PATH_MAX + 16];
    long n = 0;
    int e;

    if ((e = resolve(r, path)) < 0)
        return e;
    if (r->dir) {
        snprintf(run, sizeof run, "%s/run.json", r->dir);
        snprintf(events, sizeof events, "%s/events.jsonl", r->dir);
        if ((e = load_run(r, run)) < 0 || (r->results && (e = stream_results(r)) < 0) ||
            (n = read_lines(r, events, on_event, &r->events_tail)) < 0)
            return e < 0 ? e : (int)n;
        r->event_lines = n;
    }
    if (!r->results)
        return 0;
    if ((n = read_lines(r, r->results, on_result, &r->results_tail)) < 0)
        return (int)n;
    r->result_lines = n;
    if (!r->dir && r->all.tasks == 0)
        return fail(r, -ENODATA, "%s: no result lines", r->results);
    return 0;
}

/* qsort order of kinds: suspects first, most bytes retained per task first; then the others,
 * most tasks first; then by name. */
static int cmp_kind(const void *a, const void *b)
{
    const kind_t *x = a, *y = b;

    if ((x->events > 0) != (y->events > 0))
        return y->events > 0 ? 1 : -1;
    if (x->per_task != y->per_task)
        return (x->per_task < y->per_task) - (x->per_task > y->per_task);
    if (x->tasks != y->tasks)
        return (x->tasks < y->tasks) - (x->tasks > y->tasks);
    return strcmp(x->name, y->name);
}

/* Sorts what the report ranks, once, after loading (kind_index is stale from here on): every
 * vector, for percentiles, each on its own; the kinds, so the first nsus are the suspects. */
static void rank(rep_t *r)
{
    mv_report_vec_t *all[] = {&r->all.peak, &r->all.retained, &r->all.dur_us, &r->after, &r->fresh};

    for (size_t i = 0; i < MV_ARRAY_LEN(all); i++)
        vec_sort(all[i]);
    for (size_t i = 0; i < r->nkinds; i++) {
        vec_sort(&r->kinds[i].peak);
        vec_sort(&r->kinds[i].retained);
        vec_sort(&r->kinds[i].dur_us);
    }
    if (r->nkinds > 1)
        qsort(r->kinds, r->nkinds, sizeof *r->kinds, cmp_kind);
}

/* A string field of a checked object, or dflt. */
static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : dflt;
}

/* An integer field of a checked object as text, "?" when absent; with bytes, as a size and
 * "off" for 0 (buf holds 24). */
static const char *int_or(json_t *o, const char *key, bool bytes, char *buf)
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
    char a[24], b[24], c[24], d[24];
    const char *mt = int_or(lim, "max_tasks", false, d);
    size_t i;

    if (!json_is_array(cmd) && (cmd = json_object_get(r->run, "command_base64")))
        pre = "base64:";
    fprintf(out, "memvisor report: run %s\n", str_or(r->run, "run", "?"));
    fprintf(out, "  directory  %s\n  command   ", r->dir);
    for (i = 0; i < json_array_size(cmd); i++)
        fprintf(out, " %s%s", pre, json_string_value(json_array_get(cmd, i)));
    fprintf(out, "%s\n", json_array_size(cmd) ? "" : " ?");
    fprintf(out, "  config     %s\n  started    %s\n  ended      %s\n  exit       %s\n",
            str_or(r->run, "config", "(built-in defaults)"), str_or(r->run, "started", "?"),
            str_or(r->run, "ended", "(still running, or it ended without saying so)"),
            int_or(r->run, "exit", false, a));
    fprintf(out, "  tasks      %s ok, %s failed, %s quarantined\n", int_or(t, "ok", false, a),
            int_or(t, "failed", false, b), int_or(t, "quarantined", false, c));
    fprintf(out, "  workers    %s; memory: %s\n", int_or(r->run, "workers", false, a),
            str_or(r->run, "cgroup", "sampled from /proc, no cgroup"));
    fprintf(out, "  limits     soft %s, hard %s, max_tasks %s, enforce %s, metric %s\n",
            int_or(lim, "memory_soft", true, a), int_or(lim, "memory_hard", true, b),
            strcmp(mt, "0") ? mt : "0 (off)",
            json_is_true(en)    ? "yes"
            : json_is_false(en) ? "no (observe only)"
                                : "?",
            str_or(lim, "metric", "?"));
    fprintf(out, "  events     %ld lines%s\n", r->event_lines,
            r->events_tail ? " (an incomplete last line, still being written, skipped)" : "");
    if (r->results)
        fprintf(out, "  results    %s (%ld lines%s)\n", r->results, r->result_lines,
                r->results_tail ? ", an incomplete last line skipped" : "");
    else if (r->stream)
        fprintf(out, "  results    %s (a pipe or FIFO, read as the run went; no copy kept)\n",
                r->stream);
    else
        fprintf(out, "  results    %s\n",
                r->results_b64 ? "(a path that is not UTF-8: not read)" : "none");
}

/* The evidence of one snapshot (a relative path is under the run directory): the top
 * allocation site, the top growing type, the top growing mapping. */
static void print_snapshot(const rep_t *r, FILE *out, const char *path)
{
    char where[2 * PATH_MAX], sz[24], fr[24];
    json_error_t je;
    json_t *j, *heap, *top, *ty, *map;

    snprintf(where, sizeof where, "%s%s%s", path[0] == '/' ? "" : r->dir, path[0] == '/' ? "" : "/",
             path);
    j = json_load_file(where, 0, &je);
    fprintf(out, "    snapshot   %s\n", where);
    if (!json_is_object(j)) {
        fprintf(out, "               unreadable: %s\n", j ? "not a JSON object" : je.text);
        json_decref(j);
        return;
    }
    heap = json_object_get(j, "heap");
    top = json_array_get(json_object_get(json_object_get(heap, "tracemalloc"), "top"), 0);
    ty = json_array_get(json_object_get(heap, "types"), 0);
    map = json_array_get(json_object_get(j, "mappings_growth"), 0);
    mv_fmt_bytes(json_integer_value(json_object_get(top, "size_diff")), sz);
    if (json_is_string(json_object_get(top, "where")))
        fprintf(out, "               tracemalloc  %s grew %s\n", str_or(top, "where", ""), sz);
    if (json_is_string(json_object_get(ty, "type")))
        fprintf(out, "               type         %s +%lld (%lld now)\n", str_or(ty, "type", ""),
                (long long)json_integer_value(json_object_get(ty, "diff")),
                (long long)json_integer_value(json_object_get(ty, "count")));
    mv_fmt_bytes(json_integer_value(json_object_get(map, "growth")), sz);
    if (json_is_string(json_object_get(map, "mapping")))
        fprintf(out, "               mapping      %s grew %s\n", str_or(map, "mapping", ""), sz);
    mv_fmt_bytes(json_integer_value(json_object_get(heap, "uordblks")), sz);
    mv_fmt_bytes(json_integer_value(json_object_get(heap, "fordblks")), fr);
    if (json_is_string(json_object_get(heap, "allocator")))
        fprintf(out, "               heap         %s allocator: %s in use, %s free\n",
                str_or(heap, "allocator", ""), sz, fr);
    if (!json_is_object(heap))
        fprintf(out, "               heap         no view from the worker (%s)\n",
                str_or(j, "heap_status", "no heap_status"));
    json_decref(j);
}

/* Leak suspects, the biggest bytes retained per task first, each with its evidence. */
static void print_suspects(const rep_t *r, FILE *out)
{
    char sz[24];

    fprintf(out, "\nLeak suspects, biggest retained per task first\n");
    if (!r->dir)
        fprintf(out, "  unknown: suspects are events (events.jsonl); a results file has none\n");
    else if (r->nsus == 0)
        fprintf(out, "  No leak suspected\n");
    for (size_t i = 0; i < r->nsus; i++) {
        const kind_t *k = &r->kinds[i];
        size_t nw = json_object_size(k->workers);

        mv_fmt_bytes((int64_t)k->per_task, sz);
        fprintf(out, "  %-12s %10s/task  confidence %.2f  rule", k->name, sz, k->confidence);
        for (unsigned b = 0, first = 1; b < 4; b++)
            if (k->rules & (1u << b)) {
                fprintf(out, "%s%s", first ? " " : ",", rule_name[b]);
                first = 0;
            }
        fprintf(out, "%s  %lld event%s", k->rules ? "" : " ?", (long long)k->events,
                k->events == 1 ? "" : "s");
        if (k->fds > 0)
            fprintf(out, "  %.2f fds/task", k->fds);
        mv_fmt_bytes(mv_percentile(k->retained.v, k->retained.n, 50), sz);
        if (k->retained.n)
            fprintf(out, "\n    evidence   retained p50 %s over %zu tasks of this kind", sz,
                    k->retained.n);
        else
            fprintf(out, "\n    evidence   no measured task of this kind in the results");
        fprintf(out, "; seen on %zu worker%s\n", nw, nw == 1 ? "" : "s");
        if (k->snapshot)
            print_snapshot(r, out, k->snapshot);
        else
            fprintf(out, "    snapshot   none\n");
    }
}

/* Prints counts by reason, in the order first seen, with `suffix` after each. */
static void print_counts(json_t *counts, const char *suffix, FILE *out)
{
    for (void *it = json_object_iter(counts); it; it = json_object_iter_next(counts, it))
        fprintf(out, "  %-20s %6lld%s\n", json_object_iter_key(it),
                (long long)json_integer_value(json_object_iter_value(it)), suffix);
}

/* Recycles and would-be recycles by reason, kernel OOM kills, exits by reason. */
static void print_recycles(const rep_t *r, FILE *out)
{
    fprintf(out, "\nRecycles by reason\n");
    if (!r->dir) {
        fprintf(out, "  unknown: recycles are events (events.jsonl); a results file has none\n");
        return;
    }
    if (json_object_size(r->recycles) + json_object_size(r->would) == 0)
        fprintf(out, "  none\n");
    print_counts(r->recycles, "", out);
    print_counts(r->would, "  would have recycled (observe-only)", out);
    fprintf(out, "  %-20s %6lld\n", "kernel_oom", (long long)r->ooms);
    fprintf(out, "Exits by reason\n");
    if (json_object_size(r->exits) == 0)
        fprintf(out, "  none\n");
    print_counts(r->exits, "", out);
    fprintf(out, "Requeued tasks %lld, quarantined tasks %lld\n", (long long)r->requeues,
            (long long)r->quarantines);
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

/* Per kind, after all tasks: the task count, then mem_peak, retained and duration rows. */
static void print_kinds(const rep_t *r, FILE *out)
{
    size_t n = 0;

    fprintf(out, "\nPer kind (nearest-rank percentiles over the tasks with memory figures)\n");
    if (!r->results)
        fprintf(out, "  no results file: no per-task figures\n");
    for (size_t i = 0; r->results && i <= r->nkinds; i++) {
        const kind_t *k = i ? &r->kinds[i - 1] : &r->all;

        if (i && (!k->tasks || n++ >= MAX_SHOWN))
            continue;
        fprintf(out, "  %s: %lld task%s", i ? k->name : "(all)", (long long)k->tasks,
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
                (long long)a->max_tasks, s, b, l, r->kinds[0].name);
}

/* Suggested [limits], each with its reasoning on one line, then as INI lines to paste. */
static void print_advice(const rep_t *r, FILE *out)
{
    mv_advice_in_t in = {0, r->transient_max, 0, -1, 0};
    json_t *lim = json_object_get(r->run, "limits");
    char h[24], s[24], p[24], t[24], f[24], b[24], l[24], now[24];
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
    mv_advise(&in, &a);
    mv_fmt_bytes(a.hard, h), mv_fmt_bytes(a.soft, s), mv_fmt_bytes(in.peak_max, p);
    mv_fmt_bytes(in.transient_max, t), mv_fmt_bytes(a.floor, f);
    mv_fmt_bytes(in.fresh_p50, b), mv_fmt_bytes(in.leak, l);
    fprintf(out, "  memory_hard  %10s  ", h);
    if (!a.floored)
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

/* Frees everything a report read. */
static void rep_free(rep_t *r)
{
    for (size_t i = 0; i <= r->nkinds; i++) {
        kind_t *k = i < r->nkinds ? &r->kinds[i] : &r->all;
        free(k->name), free(k->peak.v), free(k->retained.v), free(k->dur_us.v), free(k->snapshot);
        json_decref(k->workers);
    }
    free(r->kinds), free(r->after.v), free(r->fresh.v), free(r->dir), free(r->results),
        free(r->stream);
    json_decref(r->recycles), json_decref(r->would), json_decref(r->exits);
    json_decref(r->kind_index), json_decref(r->fresh_seen), json_decref(r->run);
}

/* Loads, ranks, prints, in that order: an error leaves nothing half-printed. */
int mv_report(const char *path, FILE *out, char *why, size_t n)
{
    rep_t r;
    int e;

    memset(&r, 0, sizeof r);
    r.why = why;
    r.nwhy = n;
    r.recycles = json_object(), r.would = json_object(), r.exits = json_object();
    r.kind_index = json_object(), r.fresh_seen = json_object();
    if (!r.recycles || !r.would || !r.exits || !r.kind_index || !r.fresh_seen)
        e = OOM(&r);
    else if ((e = load(&r, path)) == 0)
        rank(&r);
    if (e == 0) {
        if (r.dir) {
            print_header(&r, out);
        } else {
            fprintf(out,
                    "memvisor report: results file %s (%ld lines)\n  a results file alone: no "
                    "run.json or events.jsonl, so no leak suspects, recycles or limits in force\n"
                    "  tasks      %lld ok, %lld failed, %lld quarantined\n",
                    r.results, r.result_lines, (long long)r.st[0], (long long)r.st[1],
                    (long long)r.st[2]);
        }
        print_suspects(&r, out);
        print_recycles(&r, out);
        print_kinds(&r, out);
        print_advice(&r, out);
        if (fflush(out) != 0 || ferror(out))
            e = fail(&r, -EIO, "cannot write the report: %s", strerror(errno));
    }
    rep_free(&r);
    return e;
}

/* The subcommand: argument checks, the report on stdout, the error on stderr. */
int mv_report_main(int argc, char **argv)
{
    static const char usage[] = "usage: memvisor report PATH (a run directory, a state "
                                "directory for its latest run, or a results file)\n";
    char why[1024];

    if (argc == 3 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0))
        return fputs(usage, stdout), MV_EXIT_OK;
    if (argc != 3 || !argv[2][0] || (argv[2][0] == '-' && argv[2][1])) {
        fprintf(stderr, "memvisor report: %s\n%s", argc < 3 ? "missing PATH" : "bad arguments",
                usage);
        return MV_EXIT_USAGE;
    }
    if (mv_report(argv[2], stdout, why, sizeof why) < 0) {
        fprintf(stderr, "memvisor report: %s\n", why);
        return MV_EXIT_CANT_RUN;
    }
    return MV_EXIT_OK;
}
