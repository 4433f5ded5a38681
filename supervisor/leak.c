/*
 * leak: per-kind leak detection (see leak.h for the rules and why).
 */
#include "leak.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MV_MAX(a, b)  ((a) > (b) ? (a) : (b))
#define REPORT_CHANGE 2.0 /* an estimate doubled or halved since it was last reported is news */

typedef struct kind_state {
    char name[MV_LEAK_KIND_MAX + 1];
    double *mem;   /* ring: retained of the last `window` tasks */
    double *fds;   /* ring: fd deltas (0 when unknown) */
    double *all;   /* ring: every kind's growth so far (mv_leak.total) after each task */
    double *fdall; /* ring: every kind's fd deltas so far (mv_leak.fd_total) after each task */
    uint64_t *src; /* ring: the process each task ran in (mv_leak_obs_t.source) */
    int head, n;
    uint64_t seen;           /* tasks of the kind so far */
    uint64_t last_eval;      /* `seen` at the last trend evaluation */
    int every;               /* tasks between judgements: see next_every() */
    mv_leak_rule_t pending;  /* the previous judgement's rule: a suspect needs two */
    mv_leak_rule_t reported; /* what was last reported (NONE: nothing yet) */
    double reported_value;
    bool handoff_said; /* its growth was found freed by other kinds' tasks: said once */
} kind_state_t;

typedef struct source_sum {
    uint64_t src;
    double kept;
    int last; /* its latest task's place in the window */
} source_sum_t;

struct mv_leak {
    mv_leak_cfg_t cfg;
    kind_state_t **table; /* open addressing, power-of-two size */
    size_t cap, count;
    double *series;     /* scratch: the window in order */
    source_sum_t *sums; /* scratch: the window by source (top_source) */
    double total;       /* growth of every measured task in the rings so far, every kind */
    double fd_total;    /* the same for fd deltas */
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* ---- the estimator ---- */

/* The k-th smallest of v[0..n) (quickselect with a three-way partition; reorders v). */
static double select_kth(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* v[lo..hi) holds the k-th */

    while (hi - lo > 1) {
        double pivot = v[lo + (hi - lo) / 2], t;
        size_t lt = lo, i = lo, gt = hi; /* [lo,lt) < pivot, [lt,gt) == pivot, [gt,hi) > */
        while (i < gt) {
            if (v[i] < pivot) {
                t = v[lt], v[lt++] = v[i], v[i++] = t;
            } else if (v[i] > pivot) {
                t = v[--gt], v[gt] = v[i], v[i] = t;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return pivot;
    }
    return v[lo];
}

/* The same for v without NaN or -0.0 (then the k-th is one bit pattern), without a branch on
 * a comparison: the partitions of select_kth mispredict about every other element. Each
 * round splits [lo,hi) around a median of three in two passes, below the pivot | the rest,
 * then equal | above. */
static double select_kth_nb(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;

    while (hi - lo > 1) {
        double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1], pivot, t;
        size_t lt = lo, eq;
        pivot = fmax(fmin(a, b), fmin(fmax(a, b), c));
        for (size_t i = lo; i < hi; i++) {
            bool less = v[i] < pivot;
            t = v[i], v[i] = v[lt], v[lt] = t;
            lt += less;
        }
        if (k < lt) {
            hi = lt;
            continue;
        }
        eq = lt;
        for (size_t i = lt; i < hi; i++) {
            bool same = v[i] <= pivot;
            t = v[i], v[i] = v[eq], v[eq] = t;
            eq += same;
        }
        if (k < eq)
            return pivot;
        lo = eq;
    }
    return v[lo];
}

#define SAMPLE        64 /* values of the sample that brackets the k-th (mv_leak_select) */
#define SAMPLE_MARGIN 5  /* sample ranks either side of k's: a miss costs a full select */

double mv_leak_select(double *v, size_t n, size_t k, double *scratch)
{
    size_t ns = 0, step = n / SAMPLE, c, below = 0, within = 0;
    double lo, hi;

    if (n < 4 * SAMPLE)
        return select_kth_nb(v, n, k);
    /* Evenly spaced: the slopes come ordered by their first point, every gap in each run. */
    for (size_t i = step / 2; i < n && ns < SAMPLE; i += step)
        scratch[ns++] = v[i];
    c = k * ns / n;
    lo = select_kth_nb(scratch, ns, c > SAMPLE_MARGIN ? c - SAMPLE_MARGIN : 0);
    hi = select_kth_nb(scratch, ns, c + SAMPLE_MARGIN < ns ? c + SAMPLE_MARGIN : ns - 1);
    for (size_t i = 0; i < n; i++) { /* branch-free: a compare's outcome is a coin toss */
        below += v[i] < lo;
        within += (v[i] >= lo) & (v[i] <= hi);
    }
    if (k < below || k >= below + within)
        return select_kth_nb(v, n, k); /* the sample misled: rare, and still exact */
    within = 0;
    for (size_t i = 0; i < n; i++) {
        scratch[within] = v[i];
        within += (v[i] >= lo) & (v[i] <= hi);
    }
    return select_kth_nb(scratch, within, k - below);
}

/* Whether every increment is a whole number (bytes, fds): then no slope is NaN or -0.0 (a
 * difference of whole numbers is 0 or at least 1 in magnitude), so the k-th smallest slope
 * is one bit pattern however it is found, and mv_leak_select may find it. */
static bool whole_numbers(const double *inc, int n)
{
    for (int i = 0; i < n; i++)
        if (fabs(inc[i]) < 0x1p52 ? inc[i] != (double)(int64_t)inc[i] : !isfinite(inc[i]))
            return false;
    return true;
}

/* A robust spread of the increments (their noise): 1.4826 x MAD, which is 0 for increments
 * quantised in kernel batches (mostly zeros), so never below 1.2533 x their mean absolute
 * deviation (both estimate sigma for normal noise). */
static double noise_sigma(const double *inc, int n, double *scratch)
{
    double med, mad, mean_dev = 0;

    for (int i = 0; i < n; i++)
        scratch[i] = inc[i];
    med = select_kth(scratch, (size_t)n, (size_t)n / 2);
    for (int i = 0; i < n; i++) {
        scratch[i] = fabs(inc[i] - med);
        mean_dev += scratch[i];
    }
    mad = select_kth(scratch, (size_t)n, (size_t)n / 2);
    mean_dev /= n;
    return fmax(1.4826 * mad, 1.2533 * mean_dev);
}

double mv_leak_noise(const double *inc, int n)
{
    double *scratch = malloc((size_t)n * sizeof *scratch), sigma;

    if (!scratch || n < 2) {
        free(scratch);
        return 0;
    }
    sigma = noise_sigma(inc, n, scratch) / sqrt((double)n);
    free(scratch);
    return sigma;
}

double mv_leak_block_noise(const double *inc, int n)
{
    int nb = n / MV_LEAK_BLOCK;
    double mean = 0, var = 0, b;

    if (nb < 2)
        return 0;
    for (int i = 0; i < nb * MV_LEAK_BLOCK; i++)
        mean += inc[i];
    mean /= nb * MV_LEAK_BLOCK;
    for (int k = 0; k < nb; k++) {
        b = 0;
        for (int i = 0; i < MV_LEAK_BLOCK; i++)
            b += inc[k * MV_LEAK_BLOCK + i];
        b /= MV_LEAK_BLOCK;
        var += (b - mean) * (b - mean);
    }
    /* the standard error of the mean of nb block means */
    return sqrt(var / (nb - 1)) / sqrt((double)nb);
}

double mv_leak_trend(const double *inc, int n, double *confidence)
{
    size_t pairs = (size_t)n * (size_t)(n + 1) / 2, k = 0;
    double *cum, *slopes, slope;
    int good = 0, last_good = 0;

    *confidence = 0;
    if (n < 2 * MV_LEAK_SEGMENTS)
        return 0;
    /* One block: the cumulative series, the slopes, and mv_leak_select's scratch. */
    cum = malloc(((size_t)n + 1 + 2 * pairs) * sizeof *cum);
    if (!cum)
        return 0;
    slopes = cum + n + 1;
    cum[0] = 0;
    for (int i = 0; i < n; i++)
        cum[i + 1] = cum[i] + inc[i];
    /* Theil-Sen: the median of the slopes between every two points of the cumulative
     * series. Outliers (a batch of 256 KiB, a freed spike) move few of them. */
    for (int i = 0; i <= n; i++)
        for (int j = i + 1; j <= n; j++)
            slopes[k++] = (cum[j] - cum[i]) / (double)(j - i);
    slope = whole_numbers(inc, n) ? mv_leak_select(slopes, k, k / 2, slopes + pairs)
                                  : select_kth(slopes, k, k / 2);
    /* Consistency: growth in most segments, and in the latest one (a plateau is flat). */
    for (int s = 0; s < MV_LEAK_SEGMENTS; s++) {
        int a = s * n / MV_LEAK_SEGMENTS, b = (s + 1) * n / MV_LEAK_SEGMENTS;
        double growth = cum[b] - cum[a];
        if (slope > 0 && growth > 0 && growth >= 0.5 * slope * (b - a)) {
            good++;
            last_good = s == MV_LEAK_SEGMENTS - 1;
        }
    }
    *confidence = last_good ? (double)good / MV_LEAK_SEGMENTS : 0;
    free(cum);
    return slope;
}

/*
 * A saw-tooth whose troughs rise: a table swept every few calls that keeps some of what it
 * swept (sessions still "active", entries a bug never expires). Its drops break most of the
 * trend's segments and set its noise floor, so the trend does not see the drift. Here the
 * window's cumulative series is cut in thirds: the lowest point of each (a trough, or the
 * third's start when it only grows) must rise into the next by a leak's worth a task, and
 * the series must grow again from the last third's low to the end. A bounded saw-tooth comes
 * back to the same trough; a cache that filled and stopped is flat in its last third; a
 * one-off step rises into one third only. The floor: min_slope, or 5 standard errors from
 * the MAD of the increments alone (which a few drops do not move; noise does).
 * *per_task: the rise from the first third's trough to the last's, a task.
 */
bool mv_leak_troughs_rise(const double *inc, int n, double min_slope, double *per_task)
{
    double cum = 0, low[3], floor, med, mad, third = (double)(n + 1) / 3, *scratch;
    int at[3], b[4] = {0, (n + 1) / 3, 2 * (n + 1) / 3, n + 1};

    if (n < 3 * MV_LEAK_SEGMENTS || !(scratch = malloc((size_t)n * sizeof *scratch)))
        return false;
    for (int t = 0; t < 3; t++)
        low[t] = INFINITY, at[t] = b[t];
    for (int i = 0; i <= n; i++) {
        int t = i < b[1] ? 0 : i < b[2] ? 1 : 2;

        if (i > 0)
            cum += inc[i - 1];
        if (cum < low[t])
            low[t] = cum, at[t] = i;
    }
    for (int i = 0; i < n; i++)
        scratch[i] = inc[i];
    med = select_kth(scratch, (size_t)n, (size_t)n / 2);
    for (int i = 0; i < n; i++)
        scratch[i] = fabs(inc[i] - med);
    mad = select_kth(scratch, (size_t)n, (size_t)n / 2);
    free(scratch);
    floor = fmax(min_slope, MV_LEAK_Z * 1.4826 * mad / sqrt(third));
    *per_task = (low[2] - low[0]) / (double)MV_MAX(1, at[2] - at[0]);
    return low[1] - low[0] >= floor * third && low[2] - low[1] >= floor * third &&
           cum - low[2] >= floor * (double)(n - at[2]);
}

/* ---- the kinds ---- */

static kind_state_t *new_kind(const mv_leak_t *l, const char *name)
{
    kind_state_t *k = calloc(1, sizeof *k);

    if (!k)
        return NULL;
    k->mem = calloc((size_t)l->cfg.window, sizeof *k->mem);
    k->fds = calloc((size_t)l->cfg.window, sizeof *k->fds);
    k->all = calloc((size_t)l->cfg.window, sizeof *k->all);
    k->fdall = calloc((size_t)l->cfg.window, sizeof *k->fdall);
    k->src = calloc((size_t)l->cfg.window, sizeof *k->src);
    if (!k->mem || !k->fds || !k->all || !k->fdall || !k->src) {
        free(k->mem);
        free(k->fds);
        free(k->all);
        free(k->fdall);
        free(k->src);
        free(k);
        return NULL;
    }
    snprintf(k->name, sizeof k->name, "%s", name);
    return k;
}

/* The state of a kind, made on first sight; NULL on ENOMEM. */
static kind_state_t *find_kind(mv_leak_t *l, const char *name)
{
    char cut[MV_LEAK_KIND_MAX + 1];
    size_t i;

    snprintf(cut, sizeof cut, "%s", name && *name ? name : "(none)");
    for (i = hash(cut) & (l->cap - 1); l->table[i]; i = (i + 1) & (l->cap - 1))
        if (strcmp(l->table[i]->name, cut) == 0)
            return l->table[i];
    /* Unbounded kinds (the first word of arbitrary lines) must not grow memvisor: past the
     * cap they share "(other)", which is always allowed in (the table has room to spare). */
    if (l->count >= MV_LEAK_KINDS_MAX && strcmp(cut, "(other)") != 0)
        return find_kind(l, "(other)");
    l->table[i] = new_kind(l, cut);
    if (l->table[i])
        l->count++;
    return l->table[i];
}

mv_leak_t *mv_leak_new(const mv_leak_cfg_t *cfg)
{
    mv_leak_t *l = calloc(1, sizeof *l);

    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (l->cfg.window < 2 * MV_LEAK_SEGMENTS)
        l->cfg.window = 2 * MV_LEAK_SEGMENTS;
    l->cap = 2048; /* twice MV_LEAK_KINDS_MAX: probing stays short */
    l->table = calloc(l->cap, sizeof *l->table);
    l->series = calloc((size_t)l->cfg.window, sizeof *l->series);
    l->sums = calloc((size_t)l->cfg.window, sizeof *l->sums);
    if (!l->table || !l->series || !l->sums) {
        mv_leak_free(l);
        return NULL;
    }
    return l;
}

void mv_leak_free(mv_leak_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->table && i < l->cap; i++)
        if (l->table[i]) {
            free(l->table[i]->mem);
            free(l->table[i]->fds);
            free(l->table[i]->all);
            free(l->table[i]->fdall);
            free(l->table[i]->src);
            free(l->table[i]);
        }
    free(l->table);
    free(l->series);
    free(l->sums);
    free(l);
}

/* The ring `r` of kind `k`, oldest first, into l->series; its mean. */
static double in_order(mv_leak_t *l, const kind_state_t *k, const double *r)
{
    double sum = 0;

    for (int i = 0; i < k->n; i++) {
        l->series[i] = r[(k->head + i) % l->cfg.window];
        sum += l->series[i];
    }
    return sum / k->n;
}

/*
 * Whether the growth of kind k over its window was freed by other kinds' tasks: a producer
 * whose items a consumer kind frees, garbage a collector frees during whatever task runs.
 * Run alone (an isolation) such a kind grows, but the workers it runs in do not: it is not a
 * leak of the workload. Over the span of k's window (its oldest task to now), every kind's
 * tasks on every worker together kept under a quarter of what k's kept. Every kind's, not
 * the freeing kinds' alone: a free does not say whose memory it gave back, and a real leak
 * beside a producer and its consumer grows the workers by its own (then both are suspects).
 * A quarter: garbage made before the span and collected within it (a cyclic collector's
 * batch) takes up to a batch off the workers' growth.
 * The workers' growth is the Theil-Sen slope of every kind's total as it stood after each of
 * k's tasks, against k's own (`slope`): not the total's change between the span's two ends,
 * which another kind's memory held between its tasks decides (a working set of 16 MiB and
 * 1 MiB in turn, held until its next call: the span's ends fall on either, and a leak of
 * 1.2 MB over the window read as handed off). The median of the pairs' slopes is what
 * swings both ways leave alone. With too few tasks for it, the two ends.
 * The same holds for fds (`ring` k->fds, `all_ring` k->fdall): a file or socket dropped
 * inside a reference cycle is closed when the collector frees the cycle, mostly in other
 * kinds' tasks; a pool one kind fills and another drains.
 */
static bool handed_off(mv_leak_t *l, const kind_state_t *k, const double *ring,
                       const double *all_ring, double total, double slope)
{
    int w = l->cfg.window, oldest = k->head % w;
    double kept = 0, all, conf;

    if (k->n < 2)
        return false;
    for (int i = 0; i < k->n; i++)
        kept += ring[i];
    if (kept <= 0)
        return false;
    if (k->n - 1 >= 2 * MV_LEAK_SEGMENTS && slope > 0) {
        /* the total's steps from one of k's tasks to the next, oldest first */
        for (int i = 1; i < k->n; i++)
            l->series[i - 1] = all_ring[(k->head + i) % w] - all_ring[(k->head + i - 1) % w];
        return mv_leak_trend(l->series, k->n - 1, &conf) < 0.25 * slope;
    }
    /* every kind's growth since just before k's oldest task */
    all = total - (all_ring[oldest] - ring[oldest]);
    return all < 0.25 * kept;
}

/* The trend verdict of a kind with a full window (memory first, then fds). */
static mv_leak_verdict_t judge_trend(mv_leak_t *l, kind_state_t *k)
{
    mv_leak_verdict_t v = {.rule = MV_LEAK_NONE, .tasks = k->n};
    double conf, slope;

    /* Cheap gate: a kind that does not grow on average never pays for Theil-Sen. The slope
     * must then also stand out of the noise: the cumulative sum of pure noise is a random
     * walk, whose slope over a window is easily larger than min_slope. */
    if (in_order(l, k, k->mem) >= 0.5 * (double)l->cfg.min_slope) {
        double floor = fmax((double)l->cfg.min_slope, MV_LEAK_Z * mv_leak_noise(l->series, k->n));
        bool grows;

        slope = mv_leak_trend(l->series, k->n, &conf);
        grows = slope >= floor && conf >= 0.8;
        if (!grows && mv_leak_troughs_rise(l->series, k->n, (double)l->cfg.min_slope, &slope)) {
            grows = true;
            conf = 1; /* every third's trough rose */
        }
        if (grows) {
            if (handed_off(l, k, k->mem, k->all, l->total, slope)) {
                v.handed_off = !k->handoff_said;
                k->handoff_said = true;
                v.per_task = slope;
            } else {
                v.rule = MV_LEAK_TREND;
                v.per_task = slope;
                v.confidence = conf;
            }
        }
    }
    /* Handles: no allocator keeps fds for reuse, so steady growth is a leak down to
     * MV_LEAK_FD_SLOPE (an fd left open on an error path that one task in three or four
     * takes); it must show in both halves of the window, so that a pool that opened its
     * connections and stopped is not named; and the workers must keep them: fds another
     * kind's tasks close (a collector freeing files dropped in cycles) are handed off, as
     * memory is (not said: the event is memory's). */
    if (in_order(l, k, k->fds) >= 0.5 * MV_LEAK_FD_SLOPE) {
        double floor = fmax(MV_LEAK_FD_SLOPE, MV_LEAK_Z * mv_leak_noise(l->series, k->n));
        int half = k->n / 2;
        double first = 0, second = 0;

        for (int i = 0; i < k->n; i++)
            *(i < half ? &first : &second) += l->series[i];
        slope = mv_leak_trend(l->series, k->n, &conf);
        if (slope >= floor && conf >= 0.8 && first >= MV_LEAK_FD_SLOPE * half &&
            second >= MV_LEAK_FD_SLOPE * (k->n - half) &&
            !handed_off(l, k, k->fds, k->fdall, l->fd_total, slope)) {
            v.fds_per_task = slope;
            if (v.rule == MV_LEAK_NONE) {
                v.rule = MV_LEAK_FD_TREND;
                v.confidence = conf;
            }
        }
    }
    return v;
}

static int by_source(const void *a, const void *b)
{
    uint64_t x = ((const source_sum_t *)a)->src, y = ((const source_sum_t *)b)->src;

    return (x > y) - (x < y);
}

/* Of the window's tasks, the source whose tasks of `ring` (memory or fds) added up to the
 * most; the latest task's on a tie, 0 when none kept anything. Sorted by source: a window of
 * short-lived workers holds as many sources as tasks. */
static uint64_t top_source(mv_leak_t *l, const kind_state_t *k, const double *ring, int w)
{
    source_sum_t *t = l->sums, best = {0, 0, -1};
    int n = 0;

    for (int i = 0; i < k->n; i++)
        t[n++] = (source_sum_t){k->src[(k->head + i) % w], ring[(k->head + i) % w], i};
    qsort(t, (size_t)n, sizeof *t, by_source);
    for (int i = 0; i < n;) {
        source_sum_t sum = t[i];
        while (++i < n && t[i].src == sum.src) {
            sum.kept += t[i].kept;
            sum.last = t[i].last > sum.last ? t[i].last : sum.last;
        }
        if (sum.src != 0 && sum.kept > 0 &&
            (sum.kept > best.kept || (sum.kept == best.kept && sum.last > best.last)))
            best = sum;
    }
    return best.src;
}

/* Whether a verdict is news: the first of its kind, another rule, or a new estimate. */
static bool newsworthy(kind_state_t *k, const mv_leak_verdict_t *v)
{
    double now = v->rule == MV_LEAK_FD_TREND ? v->fds_per_task : v->per_task;

    if (k->reported == v->rule && now < k->reported_value * REPORT_CHANGE &&
        now > k->reported_value / REPORT_CHANGE)
        return false;
    k->reported = v->rule;
    k->reported_value = now;
    return true;
}

/*
 * Tasks until a kind's next judgement. A tenth of a window, except for a kind whose reported
 * leak the judgement just confirmed again (the same rule twice, an estimate that is no news):
 * then twice the last interval, up to a window. A leak of every task is judged for as long as
 * the run lasts, and at every tenth of a window the Theil-Sen slope over the window's ~1,300
 * pairs was ~14% of the supervisor's main thread on a leaky batch (W1, issue 13). What is
 * given up: a reported leak whose estimate changes is said up to a window later than at every
 * tenth (the window is still whole when it is judged); the first report, any report after a
 * change of rule and any kind not yet reported keep the tenth, and so does every judgement
 * after one that said something new.
 */
static int next_every(const mv_leak_t *l, const kind_state_t *k, const mv_leak_verdict_t *v)
{
    int w = l->cfg.window, tenth = MV_MAX(1, w / 10);

    /* A suspect that is no news is the reported rule again, within REPORT_CHANGE. */
    if (v->rule == MV_LEAK_NONE || v->report || k->every < tenth)
        return tenth;
    return 2 * k->every < w ? 2 * k->every : w;
}

mv_leak_verdict_t mv_leak_observe(mv_leak_t *l, const mv_leak_obs_t *o)
{
    mv_leak_verdict_t v = {.rule = MV_LEAK_NONE};
    kind_state_t *k = find_kind(l, o->kind);
    int w = l->cfg.window;

    if (!k)
        return v;
    v.kind = k->name;
    v.heap = o->heap;
    if (o->worker_age > 0 && !o->no_memory && o->retained > l->cfg.task_growth) {
        v.rule = MV_LEAK_TASK_GROWTH;
        v.per_task = (double)o->retained;
        v.confidence = 1;
        v.tasks = 1;
        v.source = o->source;
        v.report = newsworthy(k, &v);
        return v;
    }
    if (o->worker_age < l->cfg.warmup)
        return v; /* warm-up: not part of the trend */
    /* No memory figure (a worker that has heap figures, but not for this task): nothing, so
     * that a kernel delta never lands in a series of heap deltas. */
    k->mem[(k->head + k->n) % w] = o->no_memory ? 0 : (double)o->retained;
    k->fds[(k->head + k->n) % w] = o->fds_delta == INT32_MIN ? 0 : o->fds_delta;
    l->total += o->no_memory ? 0 : (double)o->retained;
    k->all[(k->head + k->n) % w] = l->total;
    l->fd_total += o->fds_delta == INT32_MIN ? 0 : o->fds_delta;
    k->fdall[(k->head + k->n) % w] = l->fd_total;
    k->src[(k->head + k->n) % w] = o->source;
    if (k->n < w)
        k->n++;
    else
        k->head = (k->head + 1) % w;
    k->seen++;
    if (k->n * 10 >= w * 8 &&
        (k->last_eval == 0 || k->seen - k->last_eval >= (uint64_t)MV_MAX(1, k->every))) {
        mv_leak_rule_t now;
        k->last_eval = k->seen;
        v = judge_trend(l, k);
        v.kind = k->name;
        v.heap = o->heap;
        /* Two judgements in a row: noise almost never passes twice. */
        now = v.rule;
        if (v.rule != k->pending)
            v.rule = MV_LEAK_NONE;
        k->pending = now;
        if (v.rule != MV_LEAK_NONE)
            v.report = newsworthy(k, &v);
        if (v.report)
            v.source = top_source(l, k, v.rule == MV_LEAK_FD_TREND ? k->fds : k->mem, w);
        k->every = next_every(l, k, &v);
    }
    return v;
}

const char *mv_leak_rule_name(mv_leak_rule_t r)
{
    static const char *const n[] = {"none", "trend", "task_growth", "fd_trend"};
    return (unsigned)r < sizeof n / sizeof n[0] ? n[r] : "?";
}

void mv_leak_forget(mv_leak_t *l, const char *kind)
{
    kind_state_t *k = find_kind(l, kind);

    if (!k)
        return;
    k->head = k->n = 0;
    k->seen = k->last_eval = 0;
    k->every = 0;
    k->pending = k->reported = MV_LEAK_NONE;
    k->reported_value = 0;
}

bool mv_leak_judged(mv_leak_t *l, const char *kind)
{
    kind_state_t *k = find_kind(l, kind);
    int w = l->cfg.window;

    return k && k->seen * 10 >= (uint64_t)(w * 8 + (w >= 10 ? w : 10));
}

const char *mv_leak_kind_name(mv_leak_t *l, const char *kind)
{
    kind_state_t *k = find_kind(l, kind);

    return k ? k->name : NULL;
}

bool mv_leak_grows(const mv_leak_cfg_t *cfg, const double *inc, int n, int kinds, double *per_task)
{
    double floor, conf, sum = 0;

    *per_task = 0;
    if (n < 2 * MV_LEAK_SEGMENTS)
        return false;
    for (int i = 0; i < n; i++)
        sum += inc[i];
    floor = (double)cfg->min_slope / (kinds > 1 ? kinds : 1);
    if (sum / n < 0.5 * floor) /* the cheap gate, as for a kind */
        return false;
    floor = fmax(floor, MV_LEAK_Z * mv_leak_block_noise(inc, n));
    *per_task = mv_leak_trend(inc, n, &conf);
    return *per_task >= floor && conf >= 0.8;
}
