/*
 * isolate: the decisions of a leak experiment (DESIGN §4, docs/leaks.md). Pure: fed what the
 * experiment's workers did, it says what to do next and, in the end, what it found; no I/O,
 * no clock (time is counted in tasks that ended anywhere).
 *
 * Why: in a worker that mixes task kinds, the kernel sees memory where pages are first
 * touched and allocators reuse freed space, so the kind named by per-task deltas is often the
 * wrong one; and even live heap bytes per task can be deferred (garbage a cyclic collector
 * frees during another kind's task, a cache filling up). A kind run *alone* on a fresh worker
 * has nobody to share its growth with: batch tasks are independent, so choosing which worker
 * runs a task changes nothing else.
 *
 * Two experiments, one at a time:
 *   isolation  one arm: a fresh worker runs the suspect kind alone; after its own warm-up,
 *              `tasks` tasks say leak (steady growth), plateau (it grew, then flattened:
 *              a bounded cache filling up), or clean (no growth of its own);
 *   bisection  a worker grows while no kind is suspected: the candidate kinds are split in
 *              two; arm 0 runs the first half alone, arm 1 everything else, each on a fresh
 *              worker (at once with two slots or more, one after the other with one). The
 *              half that grows keeps its candidates; a half of one kind that grows alone is
 *              the leak. When neither half grows alone the growth is "unexplained" (kinds that
 *              leak only together, or growth that stopped).
 *
 * An arm's verdict: the trend of its growth per task (mv_leak_trend: Theil-Sen slope of the
 * cumulative series, five segments) against max(min_slope / kinds it ran, 5 standard errors
 * of the noise). Steady growth that slows down (second half below half the first's slope) is
 * run longer, up to `max_tasks`, to see whether it flattens: a plateau. Clean needs evidence:
 * growth that is not steady, or under the noise, but that kept half a leak's worth a task or
 * more in both halves (a leak on one task in ten, a cache turning unbounded) is run longer
 * too, and at the longest run it is inconclusive, never cleared. Longer is judged a whole
 * window (`tasks`) at a time, not at each task. A worker lost, nothing left for it to run,
 * or the timeout: judged on what it has when that is at least MV_ISO_MIN_TASKS tasks, else
 * inconclusive.
 */
#ifndef MV_ISOLATE_H
#define MV_ISOLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "leak.h"

#define MV_ISO_ARMS      2
#define MV_ISO_KINDS_MAX 64 /* candidates of one bisection; more kinds: the first 64 */
#define MV_ISO_MIN_TASKS 10 /* fewer measured tasks cannot make a verdict */

typedef enum { MV_ISO_NONE, MV_ISO_ISOLATE, MV_ISO_BISECT } mv_iso_mode_t;

typedef enum {
    MV_ISO_V_PENDING,      /* not decided yet */
    MV_ISO_V_LEAK,         /* grows steadily on its own */
    MV_ISO_V_PLATEAU,      /* grew, then flattened */
    MV_ISO_V_CLEAN,        /* does not grow on its own (bisection: no half does: unexplained) */
    MV_ISO_V_INCONCLUSIVE, /* too few tasks to say */
} mv_iso_verdict_t;

typedef struct mv_iso_cfg {
    int tasks;         /* measured tasks an arm needs after its warm-up */
    int max_tasks;     /* ...and at most, while its growth slows down */
    int warmup;        /* an arm worker's first tasks, not measured */
    int64_t min_slope; /* bytes per task of one kind: a leak */
    uint64_t timeout;  /* tasks ended anywhere while an arm makes no progress (no fresh worker
                        * for it, or no task of it ending) before it is given up; a fresh
                        * worker that is starting (its first task not done) is not timed:
                        * its own ready and task timeouts are */
} mv_iso_cfg_t;

typedef enum { MV_ARM_IDLE, MV_ARM_WANTED, MV_ARM_RUNNING, MV_ARM_DONE } mv_arm_state_t;

typedef struct mv_iso_arm {
    mv_arm_state_t state;
    bool complement;                     /* runs every kind the other arm does not */
    char (*kinds)[MV_LEAK_KIND_MAX + 1]; /* the kinds it runs (not complement) */
    int nkinds;
    char (*ran)[MV_LEAK_KIND_MAX + 1]; /* distinct kinds its worker ran (measured) */
    int nran;
    double *inc;    /* growth per measured task */
    int n, seen;    /* measured tasks; every task its worker finished */
    uint64_t since; /* tasks ended anywhere at its last task's end; 0: none yet */
    bool stopped;   /* mv_iso_stop_arm: its worker gone, or starved, before the end */
    mv_iso_verdict_t verdict;
    double slope, confidence;
} mv_iso_arm_t;

/* What an experiment found. */
typedef struct mv_iso_result {
    mv_iso_mode_t mode;
    mv_iso_verdict_t verdict; /* isolation: the kind's; bisection: LEAK (found), CLEAN
                               * (unexplained) or INCONCLUSIVE */
    const char *kind;         /* isolation: its kind; bisection: the kind found, or NULL */
    double slope, confidence; /* of the deciding arm */
    int tasks;                /* measured tasks of the deciding arm */
    int rounds;               /* bisection rounds */
    const char *why;          /* static: how it ended */
} mv_iso_result_t;

/* What to do now. */
typedef struct mv_iso_step {
    int start_arm; /* an arm that needs a fresh worker now, or -1 */
    bool ended;    /* the experiment is over: `result` says what it found */
    mv_iso_result_t result;
} mv_iso_step_t;

typedef struct mv_iso {
    mv_iso_cfg_t cfg;
    mv_iso_mode_t mode; /* NONE: no experiment */
    int slots;          /* worker slots: arms run at once with two or more */
    uint64_t started;   /* tasks ended anywhere when it (or its round) started */
    int rounds;
    bool aborting;         /* mv_iso_abort: no new arm or round... */
    const char *abort_why; /* ...and why (static) */
    mv_iso_arm_t arm[MV_ISO_ARMS];
    /* bisection: the kinds that may still explain the growth */
    char (*cand)[MV_LEAK_KIND_MAX + 1];
    int ncand;
    char subject[MV_LEAK_KIND_MAX + 1]; /* isolation: its kind; bisection: the kind found */
    mv_iso_result_t result;
} mv_iso_t;

/* Sets up an idle experiment (no memory yet); mv_iso_free frees what it took. */
void mv_iso_init(mv_iso_t *e, const mv_iso_cfg_t *cfg);
void mv_iso_free(mv_iso_t *e);

/* Starts an isolation of `kind` / a bisection of kinds[0..n) (duplicates dropped, at most
 * MV_ISO_KINDS_MAX) with `slots` worker slots; `now` = tasks ended so far. 0; -EBUSY while
 * another runs; -EINVAL for no kind (or a bisection of one kind: isolate it); -ENOMEM. */
int mv_iso_isolate(mv_iso_t *e, const char *kind, int slots, uint64_t now);
int mv_iso_bisect(mv_iso_t *e, const char *const *kinds, int n, int slots, uint64_t now);

/* Whether arm `arm`'s worker may run a task of `kind` (NULL or "": no kind). Workers outside
 * the arms run anything. */
bool mv_iso_takes(const mv_iso_t *e, int arm, const char *kind);

/* Arm `arm`'s worker was started (its fresh worker is there). */
void mv_iso_bound(mv_iso_t *e, int arm);
/* A task of `kind` ended on arm `arm`'s worker with growth `inc` (bytes; measured false: no
 * figure, the task still counts toward the warm-up), `now` tasks ended anywhere. */
void mv_iso_observe(mv_iso_t *e, int arm, const char *kind, double inc, bool measured,
                    uint64_t now);
/* Arm `arm`'s worker is at work on one of its tasks at `now`: progress, as a task that ends
 * is. The timeout counts tasks ended elsewhere, and a kind whose tasks are slow beside fast
 * ones (50 ms beside 20 us) sees thousands end during one of its own: without this it was
 * given up in the middle of its second task. A task that hangs is its own task timeout's. */
void mv_iso_working(mv_iso_t *e, int arm, uint64_t now);
/* Arm `arm`'s worker is gone, or will get no more tasks (nothing left for it): it is judged
 * on what it has. */
void mv_iso_stop_arm(mv_iso_t *e, int arm);

/* Ends the experiment at its next step: arms are judged on what they have, no arm or
 * bisection round starts any more (the filters must let go of the tasks: dispatch.h). `why`
 * (static) is an isolation's verdict's why. */
void mv_iso_abort(mv_iso_t *e, const char *why);

/* What now, `now` tasks ended anywhere: an arm to start, or the end and its result. Call
 * after each event above; a bisection round that is decided starts the next. */
mv_iso_step_t mv_iso_step(mv_iso_t *e, uint64_t now);

/* An arm's verdict on its growth per task inc[0..n) over `kinds` kinds (exposed for tests);
 * PENDING: run longer (it slows down, n < max_tasks). */
mv_iso_verdict_t mv_iso_judge(const mv_iso_cfg_t *cfg, const double *inc, int n, int kinds,
                              bool final, double *slope, double *confidence);

/* The bytes a run kept: the sum of its growth per task inc[0..n). */
double mv_iso_kept(const double *inc, int n);
/* Whether a run that kept `kept` bytes gave back `given` bytes once its worker idled
 * (experiment.c, [leak] settle): half of them or more, its growth was memory held for a time
 * (a grace period, a timer, a deferred free), not kept for good. */
bool mv_iso_given_back(double kept, double given);

const char *mv_iso_verdict_name(mv_iso_verdict_t v);
const char *mv_iso_mode_name(mv_iso_mode_t m);

#endif
