/*
 * report_load: what `memvisor report` reads (docs/run-files.md: run.json, events.jsonl, the
 * results file), checked and folded into one mv_report_t, which report_print.c prints as text
 * and report_html.c as a page.
 *
 * Everything is read first, then printed, so bad input gives one error naming the file (and
 * line) and no half-printed report. Every file is untrusted: a field that is absent or null is
 * unknown (older or still-running runs leave fields out); a field present with the wrong type
 * or an absurd value is an error, because guessing would print wrong advice. A snapshot that
 * cannot be read only costs its evidence lines: it is evidence, not the run's record.
 */
#include "report.h"
#include "report_int.h"
#include "reason.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

#define MIB       (INT64_C(1) << 20)
#define MAX_BYTES (INT64_C(1) << 56) /* 64 PiB: every sum and x1.25 below stays in int64 */
#define MAX_COUNT (INT64_C(1) << 53)
#define MAX_TASKS INT64_C(1000000000000) /* the config's bound on [limits] max_tasks */
#define OOM(r)    fail(r, -ENOMEM, "out of memory")

const char *const mv__report_rule_name[4] = {"trend", "task_growth", "fd_trend", "other"};
#define rule_name mv__report_rule_name

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
    NUM("duration_ms", MAX_COUNT), INT("worker", 0, INT32_MAX), INT("pid", 0, INT32_MAX),
    INT("heap_retained", -MAX_BYTES, MAX_BYTES), STR("started"), STR("ended"),
    INT("gen", 1, UINT32_MAX)};
enum { R_STATUS, R_KIND, R_BEFORE, R_AFTER, R_PEAK, R_RETAINED, R_DUR, R_SLOT, R_PID, R_HEAP,
       R_STARTED, R_ENDED, R_GEN, R_N };
static const spec_t suspect_spec[] = {
    STR("kind"), NUM("per_task", MAX_BYTES), NUM("fds_per_task", MAX_COUNT), NUM("confidence", 1),
    STR("rule"), INT("worker", 0, INT32_MAX), INT("pid", 0, INT32_MAX), STR("snapshot"),
    {"confirmed", 'b', 0, 0}, STR("evidence"), STR("experiment"), STR("why")};
enum { S_KIND, S_PER, S_FDS, S_CONF, S_RULE, S_SLOT, S_PID, S_SNAP, S_CONFIRMED, S_EVIDENCE,
       S_EXPERIMENT, S_WHY, S_N };
static const spec_t cleared_spec[] = {STR("kind"), STR("verdict"), STR("evidence"), STR("why"),
                                      STR("site"), STR("other")};
enum { C_KIND, C_VERDICT, C_EVIDENCE, C_WHY, C_SITE, C_OTHER, C_N };
static const spec_t event_spec[] = {STR("event"), STR("reason"),
                                    INT("startup_mem", -1, MAX_BYTES),
                                    INT("startup_ms", -1, MAX_COUNT), INT("peak", 0, MAX_BYTES)};
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
    /* A hard limit under what a worker needed to start kills every new worker before its
     * first task: no task's peak sees the start-up, a worker's own peak does. */
    if (clamp(in->worker_peak) > peak) {
        peak = clamp(in->worker_peak);
        a->worker_over = true;
    }
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

int64_t mv__report_iso_us(const char *s)
{
    struct tm tm = {0};
    int n = 0, digits = 0;
    char frac[8] = "";
    int64_t us = 0;

    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19)
        return -1;
    if (s[n] == '.' && sscanf(s + n + 1, "%6[0-9]%n", frac, &digits) == 1) {
        us = atoi(frac);
        for (int i = digits; i < 6; i++)
            us *= 10;
        n += 1 + digits;
    }
    if (strcmp(s + n, "Z") != 0 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000000 + us;
}

/* Whether the run of r->dir died: its run.json has no end, and no memvisor holds the lock a
 * run keeps on its directory for its life (a file system without flock: not known, false). */
static bool run_died(const rep_t *r)
{
    int fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool free_lock;

    if (fd < 0)
        return false;
    /* shared: a looker never stands in a live run's way */
    free_lock = flock(fd, LOCK_SH | LOCK_NB) == 0;
    close(fd);
    return free_lock;
}

/* A run that died wrote its results up to its death; a run that resumed the batch later
 * (--resume, the same results file) appended its own. The earliest such run's start, from the
 * run directories beside this one, bounds this run's lines; 0 when there is none. */
static int64_t next_run_start(const rep_t *r)
{
    char parent[PATH_MAX], p[PATH_MAX + 300];
    int64_t mine = mv__report_iso_us(json_string_value(json_object_get(r->run, "started"))),
            best = 0;
    struct dirent *de;
    char *slash;
    DIR *d;

    if (mine < 0 || !realpath(r->dir, parent) || !(slash = strrchr(parent, '/')))
        return 0;
    *slash = '\0';
    if (!(d = opendir(parent[0] ? parent : "/")))
        return 0;
    while ((de = readdir(d))) {
        json_t *o;
        int64_t t;

        if (de->d_name[0] == '.' || strcmp(de->d_name, slash + 1) == 0 ||
            strcmp(de->d_name, "latest") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s/run.json", parent, de->d_name);
        if (!(o = json_load_file(p, 0, NULL)))
            continue;
        t = mv__report_iso_us(json_string_value(json_object_get(o, "started")));
        if (t > mine && (best == 0 || t < best) && json_is_string(json_object_get(o, "results")) &&
            strcmp(json_string_value(json_object_get(o, "results")), r->results) == 0)
            best = t;
        json_decref(o);
    }
    closedir(d);
    return best;
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
    /* The batch up to this run's end: lines a later run appended (--resume) are not its. A run
     * that died has no end of its own: the next run on the same results file began after it. */
    if (v[RUN_ENDED].set == 1)
        r->until_us = MV_MAX(mv__report_iso_us(v[RUN_ENDED].s), 0);
    else if ((r->died = run_died(r)) && r->results)
        r->until_us = next_run_start(r);
    return 0;
}

/* Calls cb for each JSON object line of `path` (blank lines skipped). A last line with no
 * newline that does not parse is skipped when the run is still running (the supervisor may be
 * writing it); anywhere else a bad line is an error naming it. flags: jansson's (JSON_ALLOW_NUL
 * for results). Returns lines read or -errno. */
static long read_lines(rep_t *r, const char *path, size_t flags, line_cb cb, bool *tail)
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
        o = json_loadb(line, (size_t)len, flags, &je);
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

/* Replaces *dst with a copy of the text (NULL: no text). 0 or -ENOMEM. */
static int set_text(char **dst, const char *text)
{
    char *t = text ? strdup(text) : NULL;

    if (text && !t)
        return -ENOMEM;
    free(*dst);
    *dst = t;
    return 0;
}

/* A suspect that is not confirmed (yet): what it stands on, and what its experiment said. */
static int on_unconfirmed(rep_t *r, kind_t *k, const val_t *v)
{
    char note[256];

    k->per_task = MV_MAX(k->per_task, v[S_PER].n);
    if (k->status >= MV_REPORT_SUSPECTED)
        return 0;
    k->status = MV_REPORT_SUSPECTED;
    snprintf(note, sizeof note, "suspected on %s figures; experiment %s%s%s",
             v[S_EVIDENCE].set == 1 ? v[S_EVIDENCE].s : "?",
             v[S_EXPERIMENT].set == 1 ? v[S_EXPERIMENT].s : "?", v[S_WHY].set == 1 ? ": " : "",
             v[S_WHY].set == 1 ? v[S_WHY].s : "");
    return set_text(&k->note, note) < 0 ? OOM(r) : 0;
}

/* One leak_suspect event, folded into its kind: confirmed ones make the suspects (events
 * written before suspects could be unconfirmed say nothing: they are confirmed). */
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
    if (v[S_CONFIRMED].set && !v[S_CONFIRMED].i)
        return on_unconfirmed(r, k, v);
    k->status = MV_REPORT_CONFIRMED;
    if (v[S_EVIDENCE].set == 1 && set_text(&k->evidence, v[S_EVIDENCE].s) < 0)
        return OOM(r);
    r->nsus += k->events++ == 0;
    k->per_task = MV_MAX(k->per_task, v[S_PER].n);
    k->fds = MV_MAX(k->fds, v[S_FDS].n);
    k->confidence = MV_MAX(k->confidence, v[S_CONF].n);
    for (unsigned i = 0; v[S_RULE].set == 1 && i < 3; i++)
        bit = strcmp(v[S_RULE].s, rule_name[i]) == 0 ? i : bit;
    k->rules |= v[S_RULE].set ? 1u << bit : 0;
    /* The worker it was seen on; an older run's worker 0, pid 0 (a confirmation after its
     * worker left) named none. */
    snprintf(key, sizeof key, "%lld/%lld", (long long)v[S_SLOT].i, (long long)v[S_PID].i);
    if (v[S_SLOT].i > 0 && v[S_PID].i > 0 && json_object_set_new(k->workers, key, json_true()) < 0)
        return OOM(r);
    if (v[S_SNAP].set == 1) {
        free(k->snapshot);
        if (!(k->snapshot = strdup(v[S_SNAP].s)))
            return OOM(r);
    }
    return 0;
}

/* One leak_cleared event: the kind was suspected, then found not to leak, and why. */
static int on_cleared(rep_t *r, const src_t *s, json_t *o)
{
    char note[512];
    val_t v[C_N];
    kind_t *k;
    int e;

    if ((e = get_all(r, s, o, cleared_spec, C_N, v)) < 0)
        return e;
    if (!(k = kind_of(r, &v[C_KIND], "(unknown)")))
        return OOM(r);
    if (k->status == MV_REPORT_CONFIRMED)
        return 0;
    k->status = MV_REPORT_CLEARED;
    snprintf(note, sizeof note, "%s, by %s%s%s%s%s%s%s",
             v[C_VERDICT].set == 1 ? v[C_VERDICT].s : "cleared",
             v[C_EVIDENCE].set == 1 ? v[C_EVIDENCE].s : "?", v[C_WHY].set == 1 ? ": " : "",
             v[C_WHY].set == 1 ? v[C_WHY].s : "", v[C_SITE].set == 1 ? " (" : "",
             v[C_SITE].set == 1 ? v[C_SITE].s : "", v[C_OTHER].set == 1 ? ", kind " : "",
             v[C_OTHER].set == 1 ? v[C_OTHER].s : "");
    if (v[C_SITE].set == 1)
        strncat(note, ")", sizeof note - strlen(note) - 1);
    return set_text(&k->note, note) < 0 ? OOM(r) : 0;
}

/* One events.jsonl line: counts what the report shows; other events are ignored. */
static int on_event(rep_t *r, const src_t *s, json_t *o)
{
    val_t v[5];
    json_t *counts = NULL;
    const char *ev, *why;
    int e;

    if ((e = get_all(r, s, o, event_spec, 1, v)) < 0 || v[0].set != 1)
        return e;
    ev = v[0].s;
    if (strcmp(ev, "leak_suspect") == 0)
        return on_suspect(r, s, o);
    if (strcmp(ev, "leak_cleared") == 0)
        return on_cleared(r, s, o);
    if (strcmp(ev, "kernel_oom") == 0) { /* a worker's own, or kills=N of its other processes */
        json_t *k = json_object_get(o, "kills");
        r->ooms +=
            json_is_integer(k) && json_integer_value(k) > 0 && json_integer_value(k) <= MAX_COUNT
                ? json_integer_value(k)
                : 1;
    }
    r->rotations += strcmp(ev, "events_rotated") == 0;
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
    if ((e = get_all(r, s, o, event_spec, counts == r->exits ? 5 : 2, v)) < 0)
        return e;
    /* A worker's peak over its life: its start-up's too, which no task's window sees. */
    if (counts == r->exits && v[4].set == 1)
        r->worker_peak = MV_MAX(r->worker_peak, v[4].i);
    /* Each worker's start-up, as it said at its exit (-1: it never finished starting). */
    if (counts == r->exits && v[2].set == 1 && v[2].i >= 0 && v[3].set == 1 && v[3].i >= 0 &&
        (vec_push(&r->startup_mem, v[2].i) < 0 || vec_push(&r->startup_us, v[3].i * 1000) < 0))
        return OOM(r);
    why = v[1].set == 1 ? v[1].s : "(no reason)";
    e = json_object_set_new(counts, why,
                            json_integer(json_integer_value(json_object_get(counts, why)) + 1));
    /* A worker's recycle, as the run's summary and /metrics count it: once, by why it finally
     * left (a drain that ended in a kernel OOM kill is kernel_oom; a crash is one too); a
     * reason this memvisor does not know (a newer one's) counts. */
    if (e == 0 && counts == r->exits &&
        (mv_reason_from_name(why) == MV_R_NONE || mv_reason_recycles(mv_reason_from_name(why))))
        e = json_object_set_new(
            r->left, why, json_integer(json_integer_value(json_object_get(r->left, why)) + 1));
    return e < 0 ? OOM(r) : 0;
}

/* Adds one measured task's figures to a kind. 0 or -ENOMEM. */
static int kind_add(kind_t *k, const val_t *v)
{
    if (vec_push(&k->peak, v[R_PEAK].i) < 0 || vec_push(&k->retained, v[R_RETAINED].i) < 0 ||
        (v[R_HEAP].set && vec_push(&k->heap, v[R_HEAP].i) < 0))
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
    if (r->until_us > 0 && v[R_ENDED].set == 1 && mv__report_iso_us(v[R_ENDED].s) > r->until_us) {
        r->later++;
        return 0;
    }
    if (r->on_result && (e = r->on_result(r->arg, s->file, s->line, o)) < 0)
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
 * a copy as results.jsonl in the run directory, read instead. A regular file is read as is;
 * one that is gone is reported as gone, with what the events say. */
static int stream_results(rep_t *r)
{
    char copy[PATH_MAX + 16];
    struct stat st;
    bool exists = stat(r->results, &st) == 0;
    int why = exists ? 0 : errno;

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
    } else if (why == ENOENT) {
        /* Moved or removed since: the run's events still say the rest (suspects, recycles,
         * counts). Any other error (a permission) stays one, said when it is read. */
        r->missing = r->results;
        r->results = NULL;
    }
    return 0;
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
        if ((e = load_run(r, run)) < 0 || (r->results && (e = stream_results(r)) < 0))
            return e;
        /* The older half of a rotated events.jsonl ([log] events_max) first; when it was
         * itself rotated once, older events are gone (events_cut). */
        snprintf(events, sizeof events, "%s/events.1.jsonl", r->dir);
        if (access(events, F_OK) == 0) {
            if ((n = read_lines(r, events, 0, on_event, &r->events_tail)) < 0)
                return (int)n;
            r->event_lines = n;
            r->events_cut = r->rotations > 0;
        }
        snprintf(events, sizeof events, "%s/events.jsonl", r->dir);
        if ((n = read_lines(r, events, 0, on_event, &r->events_tail)) < 0)
            return (int)n;
        r->event_lines += n;
    }
    if (!r->results)
        return 0;
    /* A result may hold NUL bytes ("a\u0000b", valid UTF-8): resume reads them too. */
    if ((n = read_lines(r, r->results, JSON_ALLOW_NUL, on_result, &r->results_tail)) < 0)
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
    mv_report_vec_t *all[] = {&r->all.peak, &r->all.retained, &r->all.dur_us, &r->after,
                              &r->fresh,    &r->startup_mem,  &r->startup_us};

    for (size_t i = 0; i < MV_ARRAY_LEN(all); i++)
        vec_sort(all[i]);
    for (size_t i = 0; i < r->nkinds; i++) {
        vec_sort(&r->kinds[i].peak);
        vec_sort(&r->kinds[i].retained);
        vec_sort(&r->kinds[i].dur_us);
        vec_sort(&r->kinds[i].heap);
    }
    if (r->nkinds > 1)
        qsort(r->kinds, r->nkinds, sizeof *r->kinds, cmp_kind);
}

/* Frees everything a report read. */
void mv__report_free(rep_t *r)
{
    for (size_t i = 0; i <= r->nkinds; i++) {
        kind_t *k = i < r->nkinds ? &r->kinds[i] : &r->all;
        free(k->name), free(k->peak.v), free(k->retained.v), free(k->dur_us.v), free(k->snapshot);
        free(k->evidence), free(k->note), free(k->heap.v);
        json_decref(k->workers);
    }
    free(r->kinds), free(r->after.v), free(r->fresh.v), free(r->startup_mem.v),
        free(r->startup_us.v), free(r->dir), free(r->results), free(r->stream), free(r->missing);
    json_decref(r->recycles), json_decref(r->would), json_decref(r->exits), json_decref(r->left);
    json_decref(r->kind_index), json_decref(r->fresh_seen), json_decref(r->run);
}

/* Reads and ranks everything the report of PATH shows (see report_int.h). */
int mv__report_load(rep_t *r, const char *path)
{
    int e;

    r->recycles = json_object(), r->would = json_object(), r->exits = json_object();
    r->left = json_object();
    r->kind_index = json_object(), r->fresh_seen = json_object();
    if (!r->recycles || !r->would || !r->exits || !r->left || !r->kind_index || !r->fresh_seen)
        return OOM(r);
    if ((e = load(r, path)) == 0)
        rank(r);
    return e;
}
