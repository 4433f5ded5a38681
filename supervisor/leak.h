/*
 * leak: which task kind leaks, and how much per task (DESIGN §7). Pure: fed one
 * observation per finished task, it answers with a verdict; no I/O, no clock.
 *
 * Most of the work is knowing what is *not* a leak:
 *   - a cache that warms up and plateaus: its recent tasks retain nothing;
 *   - allocator noise, and the kernel's 256 KiB charge batches (a 64 KiB leak reads as
 *     +256 KiB every 4th task): handled by estimating on the cumulative series;
 *   - a task that allocates a lot and frees it: its retained is ~0;
 *   - a one-off step (a lazy import, a cache loaded once): growth in one place only.
 *
 * Trend rule, per kind: over the last `window` tasks of the kind (any worker), the growth
 * per task is the Theil-Sen slope of the cumulative retained series; it is a leak when the
 * slope is at least `min_slope`, stands out of the noise (at least 5 standard errors: the
 * cumulative sum of pure noise is a random walk with a slope of its own), and the growth is
 * consistent: the window is cut in 5 segments, at least 4 of them grow by at least half the
 * slope's share, the most recent one among them. A kind is judged from 80% of a window on,
 * every tenth of a window, and is a suspect only when two judgements in a row say so (so a
 * steady leak is named within `window` tasks, and noise very rarely twice). A reported leak
 * that each judgement confirms (same rule, same estimate within 2x) is judged less often, the
 * interval doubling up to a window; anything else brings back every tenth (leak.c:
 * next_every). The same on fd counts (fds_after - fds_before) finds handle leaks.
 * Task rule: one task retains more than `task_growth` (not a worker's first task).
 *
 * Warm-up: a worker's first `warmup` tasks stay out of the trend (imports, pools and small
 * caches fill there). A bounded cache still filling after warm-up plus a window looks like a
 * leak until it plateaus: such a kind needs a larger window.
 */
#ifndef MV_LEAK_H
#define MV_LEAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MV_LEAK_SEGMENTS  5
#define MV_LEAK_KIND_MAX  64   /* longer kinds are cut */
#define MV_LEAK_KINDS_MAX 1024 /* kinds tracked; later ones share "(other)" */
#define MV_LEAK_FD_SLOPE  0.2  /* fds per task that make a handle leak (0.5 before) */
#define MV_LEAK_Z         5.0  /* standard errors the slope must stand above the noise */

typedef struct mv_leak_cfg {
    int window;          /* tasks of a kind the trend is judged over */
    int warmup;          /* a worker's first tasks, left out of the trend */
    int64_t min_slope;   /* bytes per task */
    int64_t task_growth; /* bytes retained by one task */
} mv_leak_cfg_t;

/* One finished task. */
typedef struct mv_leak_obs {
    const char *kind;   /* NUL-terminated; NULL or "" = "(none)" */
    int64_t retained;   /* memory after - before: live heap bytes (heap) or the kernel's */
    int fds_delta;      /* fds after - before; INT32_MIN when unknown */
    int64_t worker_age; /* tasks the worker finished before this one */
    bool heap;          /* `retained` is live heap bytes (the preload, or the worker's own) */
    bool no_memory;     /* no memory figure for this task: only its fds count */
    uint64_t source;    /* the process that ran it, as the caller names processes (0: none) */
} mv_leak_obs_t;

typedef enum { MV_LEAK_NONE, MV_LEAK_TREND, MV_LEAK_TASK_GROWTH, MV_LEAK_FD_TREND } mv_leak_rule_t;

typedef struct mv_leak_verdict {
    mv_leak_rule_t rule; /* MV_LEAK_NONE: not a suspect */
    double per_task;     /* bytes retained per task (trend), or by the task (task rule) */
    double fds_per_task;
    double confidence; /* 0..1: the share of segments that grew */
    int tasks;         /* observations of the kind behind the verdict */
    bool report;       /* new, or changed materially since the last report: say it */
    bool heap;         /* a memory verdict made of live heap bytes (else kernel figures) */
    bool handed_off;   /* (rule NONE) the kind grew at a leak's rate, but other kinds' tasks
                        * freed it: all kinds together kept under a quarter of its growth
                        * over its window (a producer and its consumer, garbage collected in
                        * other tasks); set once per kind, per_task is its growth */
    const char *kind;  /* the kind as tracked (valid until the next observation) */
    /* The process it was seen on: of the window's tasks, the source whose tasks kept the most
     * (memory, or fds for a handle leak); the task's own for task_growth. A kind's window
     * mixes every worker's tasks of it, and the one whose task completed it may have kept
     * nothing (a leak that needs an older process grows only on the oldest). */
    uint64_t source;
} mv_leak_verdict_t;

typedef struct mv_leak mv_leak_t;

mv_leak_t *mv_leak_new(const mv_leak_cfg_t *cfg);
void mv_leak_free(mv_leak_t *l);
/* Records one task and judges its kind. */
mv_leak_verdict_t mv_leak_observe(mv_leak_t *l, const mv_leak_obs_t *o);

/*
 * The trend test on a series of per-task increments (oldest first): returns the growth per
 * task (Theil-Sen slope of the cumulative sum) and, in *confidence, the share of the 5
 * segments that grew by at least half their share of it (0 when the most recent did not).
 * Exposed for tests.
 */
double mv_leak_trend(const double *inc, int n, double *confidence);

/*
 * Whether the cumulative sum of inc[0..n) is a saw-tooth whose troughs rise: the lowest point
 * of each third rises into the next by min_slope a task (or 5 standard errors from the MAD of
 * the increments, if more), and the series grows again from the last third's low to its
 * end. *per_task: the rise from the first third's low to the last's, a task. See leak.c.
 */
bool mv_leak_troughs_rise(const double *inc, int n, double min_slope, double *per_task);

/*
 * The k-th smallest of v[0..n) (0-based), the value a plain quickselect finds, found faster
 * on a large v (the ~n^2/2 slopes of the trend): an evenly spaced sample brackets it, one pass
 * keeps the few values inside the bracket, and the k-th is selected among them. v must hold
 * no NaN and no -0.0 (else "the k-th" is not one bit pattern); v may be reordered; scratch has
 * room for n values. Exposed for tests.
 */
double mv_leak_select(double *v, size_t n, size_t k, double *scratch);

/* The standard error of the mean of the increments, from a robust spread (see leak.c). */
double mv_leak_noise(const double *inc, int n);

/* The same from the means of consecutive blocks of MV_LEAK_BLOCK increments: for a series
 * that mixes tasks (a worker's, an experiment's arm), where a leak of one kind among several
 * comes as sparse steps that a per-task spread would count as noise. 0 under two blocks. */
#define MV_LEAK_BLOCK 5
double mv_leak_block_noise(const double *inc, int n);

const char *mv_leak_rule_name(mv_leak_rule_t r);

/* Forgets a kind's figures and what was said of it (an isolation cleared it): a suspect of it
 * again stands on tasks after this, and is said again. */
void mv_leak_forget(mv_leak_t *l, const char *kind);

/* Whether the trend rule has judged `kind` twice (a suspect needs two judgements): before
 * that, "no suspect" says nothing about it. */
bool mv_leak_judged(mv_leak_t *l, const char *kind);
/* The detector's own copy of a kind's name (as verdicts name it: cut, "(none)" for none,
 * "(other)" past the kinds cap), valid as long as l; NULL on ENOMEM. */
const char *mv_leak_kind_name(mv_leak_t *l, const char *kind);

/*
 * Whether a worker grows: its growth per task inc[0..n) (oldest first) over tasks of `kinds`
 * distinct kinds, by the trend rule above with a floor of min_slope / kinds (one leaking kind
 * among k shows about 1/k of its leak per task of the worker). The slope in *per_task.
 */
bool mv_leak_grows(const mv_leak_cfg_t *cfg, const double *inc, int n, int kinds, double *per_task);

#endif
