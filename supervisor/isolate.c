/*
 * isolate: the decisions of a leak experiment (see isolate.h for the why).
 */
#include "isolate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUNDS 12  /* bisection rounds: 64 kinds need 7, and a final isolation */
#define STEADY     0.8 /* share of segments that must grow (as leak.c's trend rule) */
#define SLOWING    0.5 /* second half's slope below this share of the first's: slowing down */
#define GREW       0.5 /* a plateau grew at this share of a leak's floor, at least, at first */
#define GIVEN_BACK 0.5 /* share of a run's growth its idle worker gives back: held for a time */

typedef char kind_t[MV_LEAK_KIND_MAX + 1];

static const char *kind_name(const char *kind)
{
    return kind && *kind ? kind : "(none)";
}

static bool in_set(const kind_t *set, int n, const char *kind)
{
    for (int i = 0; i < n; i++)
        if (strcmp(set[i], kind) == 0)
            return true;
    return false;
}

/* Adds kind to set[0..*n) (room for MV_ISO_KINDS_MAX) unless it is there or it is full. */
static void add_kind(kind_t *set, int *n, const char *kind)
{
    if (*n < MV_ISO_KINDS_MAX && !in_set(set, *n, kind))
        snprintf(set[(*n)++], sizeof set[0], "%s", kind);
}

/* ---- an arm's verdict ---- */

static double mean(const double *inc, int n)
{
    double sum = 0;

    for (int i = 0; i < n; i++)
        sum += inc[i];
    return n ? sum / n : 0;
}

/* Growth per task over inc[0..n): Theil-Sen on the cumulative series when there are enough
 * points for it (mv_leak_trend needs 10), else the mean. */
static double half_slope(const double *inc, int n)
{
    double conf;

    if (n >= 2 * MV_LEAK_SEGMENTS)
        return mv_leak_trend(inc, n, &conf);
    return mean(inc, n);
}

/* Whether inc[0..n) on its own is steady growth at `leak` a task or more: Theil-Sen over its
 * noise floor, growing in most segments and the last. Half a run has few blocks (5 in 25
 * tasks), whose spread alone comes out small by chance now and then: the floor is the
 * larger of the block noise and the per-task noise (leak.c's, from the MAD). */
static bool steady_on_its_own(const double *inc, int n, double leak)
{
    double conf, s, noise;

    if (n < 2 * MV_LEAK_SEGMENTS)
        return false;
    noise = fmax(mv_leak_block_noise(inc, n), mv_leak_noise(inc, n));
    s = mv_leak_trend(inc, n, &conf);
    return s >= fmax(leak, MV_LEAK_Z * noise) && conf >= STEADY;
}

/* Whether inc[0..n) kept `leak` a task on average and GREW * leak in each of its whole
 * windows of `w` tasks, with three windows at least. */
static bool kept_in_every_window(const double *inc, int n, int w, double leak)
{
    if (w < 1 || n / w < 3 || mean(inc, n) < leak)
        return false;
    for (int k = 0; k + w <= n; k += w)
        if (mean(inc + k, w) < GREW * leak)
            return false;
    return true;
}

mv_iso_verdict_t mv_iso_judge(const mv_iso_cfg_t *cfg, const double *inc, int n, int kinds,
                              bool final, double *slope, double *confidence)
{
    double leak = (double)cfg->min_slope / (kinds > 1 ? kinds : 1), floor, s1, s2, rise;
    int half = n / 2;
    bool short_run, troughs, started;

    *slope = *confidence = 0;
    if (n < MV_ISO_MIN_TASKS)
        return final ? MV_ISO_V_INCONCLUSIVE : MV_ISO_V_PENDING;
    if (!final && n < cfg->tasks)
        return MV_ISO_V_PENDING;
    /* Longer means a whole window longer: judged again at every task past the first window,
     * a kind near the line (a cache of 64 entries still filling at about a leak's rate)
     * was called a leak by the first task whose figures happened to cross it. */
    if (!final && n > cfg->tasks && n < cfg->max_tasks && n % cfg->tasks != 0)
        return MV_ISO_V_PENDING;
    short_run = n < cfg->tasks;
    /* A kind among k in an arm shows 1/k of its leak per task of the arm, about. */
    floor = fmax(leak, MV_LEAK_Z * mv_leak_block_noise(inc, n));
    *slope = mv_leak_trend(inc, n, confidence);
    s1 = half_slope(inc, half);
    s2 = half_slope(inc + half, n - half);
    if (*slope >= floor && *confidence >= STEADY) {
        if (s2 >= SLOWING * s1)
            return MV_ISO_V_LEAK;
        /* Slowing down: a cache filling up, or a leak with a noisy start. Longer tells. */
        if (!final && n < cfg->max_tasks)
            return MV_ISO_V_PENDING;
        return s2 >= floor ? MV_ISO_V_LEAK : MV_ISO_V_PLATEAU;
    }
    /* Clearing a kind takes a whole run: a short one (its worker lost, nothing left for it)
     * shows too little of the noise to say growth is not there. */
    if (short_run)
        return MV_ISO_V_INCONCLUSIVE;
    /* Grown at a leak's rate, and still growing so in the second half, just not in every
     * segment: growth in steps longer than a segment (pages come an arena or a heap
     * extension at a time). That is no evidence of a clean kind: longer tells, and at the
     * longest run it is not cleared. Nor is a kind whose halves each kept half a leak's
     * worth a task or more, however unsteady or noisy: a leak on one task in ten (256 KiB
     * at a time) or beside a dict's table doubling sits under the noise floor, and
     * Theil-Sen reads steps as less than their mean; clearing needs growth well under a
     * leak's in a half at least. */
    /* A saw-tooth whose troughs rise (a table swept every few tasks that keeps part of what
     * it swept): its drops set the block noise and can leave a half with little growth. */
    troughs = mv_leak_troughs_rise(inc, n, leak, &rise);
    /* Growth that started within the run: its second half alone is a steady leak (a kind
     * that leaks once a process has run it N times, N inside the run: a statement cache
     * that turns unbounded once the pool is warm). The mirror of a plateau: the latest
     * evidence is a leak's, and its flat start is no evidence of a clean kind. */
    started = steady_on_its_own(inc + half, n - half, leak);
    if ((*slope >= floor && s2 >= floor) || troughs || started ||
        (mean(inc, half) >= GREW * leak && mean(inc + half, n - half) >= GREW * leak)) {
        if (!final && n < cfg->max_tasks)
            return MV_ISO_V_PENDING;
        /* At the longest run: kept a leak's worth a task over the run and at least half of
         * one in every window of it, three windows or more. Steps of uneven size (a body
         * kept whose size follows the request, a failure path taken one task in three) keep
         * Theil-Sen and the noise floor from calling it steady for ever, but memory that
         * grows in every window for three is not a cache that filled (its last window would
         * be flat) nor a temporary (a window's growth is the heap's change over it). */
        if (kept_in_every_window(inc, n, cfg->tasks, leak)) {
            *slope = mean(inc, n);
            return MV_ISO_V_LEAK;
        }
        /* Or a saw-tooth whose troughs rose over the whole run, three windows or more: a
         * bounded one comes back to the same trough, a cache that filled is flat at its end. */
        if (troughs && cfg->tasks > 0 && n / cfg->tasks >= 3) {
            *slope = rise;
            *confidence = 1;
            return MV_ISO_V_LEAK;
        }
        return MV_ISO_V_INCONCLUSIVE;
    }
    /* Not steady: it grew at first and then flattened (a plateau), or it never grew. */
    if (s1 >= GREW * floor && s2 < SLOWING * s1 && s2 < floor)
        return MV_ISO_V_PLATEAU;
    return MV_ISO_V_CLEAN;
}

double mv_iso_kept(const double *inc, int n)
{
    return mean(inc, n) * n;
}

bool mv_iso_given_back(double kept, double given)
{
    return kept > 0 && given >= GIVEN_BACK * kept;
}

/* ---- set-up ---- */

static void arm_reset(mv_iso_arm_t *a)
{
    a->state = MV_ARM_IDLE;
    a->complement = false;
    a->nkinds = a->nran = a->n = a->seen = 0;
    a->since = 0;
    a->stopped = false;
    a->verdict = MV_ISO_V_PENDING;
    a->slope = a->confidence = 0;
}

void mv_iso_init(mv_iso_t *e, const mv_iso_cfg_t *cfg)
{
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    if (e->cfg.max_tasks < e->cfg.tasks)
        e->cfg.max_tasks = e->cfg.tasks;
    if (e->cfg.tasks < MV_ISO_MIN_TASKS)
        e->cfg.tasks = MV_ISO_MIN_TASKS;
}

void mv_iso_free(mv_iso_t *e)
{
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        free(e->arm[i].kinds);
        free(e->arm[i].ran);
        free(e->arm[i].inc);
        e->arm[i].kinds = e->arm[i].ran = NULL;
        e->arm[i].inc = NULL;
    }
    free(e->cand);
    e->cand = NULL;
    e->mode = MV_ISO_NONE;
}

/* The memory of both arms and the candidates, once. */
static int take_memory(mv_iso_t *e)
{
    int max = e->cfg.max_tasks > 0 ? e->cfg.max_tasks : e->cfg.tasks;

    for (int i = 0; i < MV_ISO_ARMS; i++) {
        mv_iso_arm_t *a = &e->arm[i];
        if (!a->kinds && !(a->kinds = calloc(MV_ISO_KINDS_MAX, sizeof *a->kinds)))
            return -ENOMEM;
        if (!a->ran && !(a->ran = calloc(MV_ISO_KINDS_MAX, sizeof *a->ran)))
            return -ENOMEM;
        if (!a->inc && !(a->inc = calloc((size_t)max, sizeof *a->inc)))
            return -ENOMEM;
    }
    if (!e->cand && !(e->cand = calloc(MV_ISO_KINDS_MAX, sizeof *e->cand)))
        return -ENOMEM;
    return 0;
}

static void begin(mv_iso_t *e, mv_iso_mode_t mode, int slots, uint64_t now)
{
    e->mode = mode;
    e->aborting = false;
    e->slots = slots > 0 ? slots : 1;
    e->started = now;
    e->rounds = 1;
    memset(&e->result, 0, sizeof e->result);
    arm_reset(&e->arm[0]);
    arm_reset(&e->arm[1]);
}

int mv_iso_isolate(mv_iso_t *e, const char *kind, int slots, uint64_t now)
{
    int r;

    if (e->mode != MV_ISO_NONE)
        return -EBUSY;
    if ((r = take_memory(e)) < 0)
        return r;
    begin(e, MV_ISO_ISOLATE, slots, now);
    snprintf(e->subject, sizeof e->subject, "%s", kind_name(kind));
    add_kind(e->arm[0].kinds, &e->arm[0].nkinds, e->subject);
    e->arm[1].state = MV_ARM_DONE; /* no second arm */
    return 0;
}

/* A bisection round over the candidates: arm 0 the first half, arm 1 the rest. */
static void split(mv_iso_t *e)
{
    int half = (e->ncand + 1) / 2;

    arm_reset(&e->arm[0]);
    arm_reset(&e->arm[1]);
    for (int i = 0; i < half; i++)
        add_kind(e->arm[0].kinds, &e->arm[0].nkinds, e->cand[i]);
    e->arm[1].complement = true;
}

int mv_iso_bisect(mv_iso_t *e, const char *const *kinds, int n, int slots, uint64_t now)
{
    int r;

    if (e->mode != MV_ISO_NONE)
        return -EBUSY;
    if ((r = take_memory(e)) < 0)
        return r;
    e->ncand = 0;
    for (int i = 0; i < n; i++)
        add_kind(e->cand, &e->ncand, kind_name(kinds[i]));
    if (e->ncand < 2)
        return -EINVAL;
    begin(e, MV_ISO_BISECT, slots, now);
    e->subject[0] = '\0';
    split(e);
    return 0;
}

/* ---- what the arms' workers do ---- */

bool mv_iso_takes(const mv_iso_t *e, int arm, const char *kind)
{
    const mv_iso_arm_t *a;

    if (e->mode == MV_ISO_NONE || arm < 0 || arm >= MV_ISO_ARMS)
        return true;
    a = &e->arm[arm];
    kind = kind_name(kind);
    if (a->complement)
        return !in_set(e->arm[1 - arm].kinds, e->arm[1 - arm].nkinds, kind);
    return in_set(a->kinds, a->nkinds, kind);
}

void mv_iso_bound(mv_iso_t *e, int arm)
{
    if (e->mode != MV_ISO_NONE && arm >= 0 && arm < MV_ISO_ARMS &&
        e->arm[arm].state == MV_ARM_WANTED)
        e->arm[arm].state = MV_ARM_RUNNING;
}

void mv_iso_observe(mv_iso_t *e, int arm, const char *kind, double inc, bool measured, uint64_t now)
{
    mv_iso_arm_t *a;
    int max = e->cfg.max_tasks;

    if (e->mode == MV_ISO_NONE || arm < 0 || arm >= MV_ISO_ARMS)
        return;
    a = &e->arm[arm];
    if (a->state != MV_ARM_RUNNING)
        return;
    a->since = now ? now : 1;
    if (a->seen++ < e->cfg.warmup || !measured || a->n >= max)
        return;
    a->inc[a->n++] = inc;
    add_kind(a->ran, &a->nran, kind_name(kind));
}

void mv_iso_working(mv_iso_t *e, int arm, uint64_t now)
{
    if (e->mode == MV_ISO_NONE || arm < 0 || arm >= MV_ISO_ARMS)
        return;
    /* since == 0: its first task is not done (a fresh worker starting is not timed). */
    if (e->arm[arm].state == MV_ARM_RUNNING && e->arm[arm].since)
        e->arm[arm].since = now ? now : 1;
}

/* Judges an arm (final: on what it has) and marks it done when decided. */
static void judge_arm(mv_iso_t *e, mv_iso_arm_t *a, bool final)
{
    a->verdict = mv_iso_judge(&e->cfg, a->inc, a->n, a->nran, final, &a->slope, &a->confidence);
    if (a->verdict != MV_ISO_V_PENDING)
        a->state = MV_ARM_DONE;
}

void mv_iso_stop_arm(mv_iso_t *e, int arm)
{
    mv_iso_arm_t *a;

    if (e->mode == MV_ISO_NONE || arm < 0 || arm >= MV_ISO_ARMS)
        return;
    a = &e->arm[arm];
    if (a->state == MV_ARM_RUNNING || a->state == MV_ARM_WANTED) {
        a->stopped = true;
        judge_arm(e, a, true);
    }
}

void mv_iso_abort(mv_iso_t *e, const char *why)
{
    if (e->mode == MV_ISO_NONE)
        return;
    if (!e->aborting)
        e->abort_why = why;
    e->aborting = true;
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        mv_iso_arm_t *a = &e->arm[i];
        if (a->state == MV_ARM_RUNNING || a->state == MV_ARM_WANTED)
            judge_arm(e, a, true);
        else if (a->state == MV_ARM_IDLE) {
            a->state = MV_ARM_DONE;
            a->verdict = MV_ISO_V_INCONCLUSIVE;
        }
    }
}

/* ---- what now ---- */

static mv_iso_step_t finish(mv_iso_t *e, mv_iso_verdict_t v, const mv_iso_arm_t *a,
                            const char *kind, const char *why)
{
    mv_iso_step_t st = {-1, true, {0}};

    if (kind && kind != e->subject)
        snprintf(e->subject, sizeof e->subject, "%s", kind);
    e->result = (mv_iso_result_t){e->mode,
                                  v,
                                  kind ? e->subject : NULL,
                                  a ? a->slope : 0,
                                  a ? a->confidence : 0,
                                  a ? a->n : 0,
                                  e->rounds,
                                  why};
    st.result = e->result;
    e->mode = MV_ISO_NONE;
    return st;
}

/* Both arms of a bisection round are decided: which half keeps the candidates. */
static mv_iso_step_t next_round(mv_iso_t *e, uint64_t now)
{
    mv_iso_arm_t *a0 = &e->arm[0], *a1 = &e->arm[1], *grew;
    bool g0 = a0->verdict == MV_ISO_V_LEAK, g1 = a1->verdict == MV_ISO_V_LEAK;
    int k = 0;

    if (!g0 && !g1) {
        bool unsure = a0->verdict == MV_ISO_V_INCONCLUSIVE || a1->verdict == MV_ISO_V_INCONCLUSIVE;
        return finish(e, unsure ? MV_ISO_V_INCONCLUSIVE : MV_ISO_V_CLEAN, NULL, NULL,
                      unsure ? "an arm could not run enough tasks" : "no half grows on its own");
    }
    grew = g0 && (!g1 || a0->slope >= a1->slope) ? a0 : a1;
    if (grew == a0 && a0->nkinds == 1)
        return finish(e, MV_ISO_V_LEAK, a0, a0->kinds[0], "the kind grows alone");
    if (grew == a0) {
        for (int i = 0; i < a0->nkinds; i++)
            snprintf(e->cand[i], sizeof e->cand[0], "%s", a0->kinds[i]);
        e->ncand = a0->nkinds;
    } else {
        for (int i = 0; i < e->ncand; i++)
            if (!in_set(a0->kinds, a0->nkinds, e->cand[i]))
                memmove(e->cand[k++], e->cand[i], sizeof e->cand[0]);
        e->ncand = k;
        if (k == 0)
            return finish(e, MV_ISO_V_CLEAN, a1, NULL, "growth outside the candidates");
    }
    if (e->aborting)
        return finish(e, MV_ISO_V_INCONCLUSIVE, grew, NULL, "relaxed before the end");
    if (++e->rounds > MAX_ROUNDS)
        return finish(e, MV_ISO_V_INCONCLUSIVE, grew, NULL, "too many rounds");
    e->started = now;
    split(e);
    return mv_iso_step(e, now);
}

mv_iso_step_t mv_iso_step(mv_iso_t *e, uint64_t now)
{
    mv_iso_step_t st = {-1, false, {0}};
    bool timed_out = false;

    if (e->mode == MV_ISO_NONE)
        return st;
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        mv_iso_arm_t *a = &e->arm[i];
        /* No progress for `timeout` tasks: no worker came, or its tasks stopped ending. */
        bool late = (a->state == MV_ARM_WANTED && now - e->started > e->cfg.timeout) ||
                    (a->state == MV_ARM_RUNNING && a->since && now - a->since > e->cfg.timeout);
        timed_out |= late;
        if (a->state == MV_ARM_RUNNING || late)
            judge_arm(e, a, late);
    }
    if (e->mode == MV_ISO_ISOLATE) {
        mv_iso_arm_t *a = &e->arm[0];
        if (a->state == MV_ARM_DONE)
            return finish(e, a->verdict, a, e->subject,
                          timed_out     ? "timed out"
                          : e->aborting ? e->abort_why
                          /* not "ran alone": it may have run none of its tasks */
                          : a->stopped ? "its worker stopped before the end: judged on what ran"
                                       : "the kind ran alone");
    } else if (e->arm[0].state == MV_ARM_DONE && e->arm[1].state == MV_ARM_DONE) {
        return next_round(e, now);
    }
    /* Arms start at once with two slots or more, else one after the other. */
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        if (e->arm[i].state != MV_ARM_IDLE)
            continue;
        if (i == 1 && e->slots < 2 && e->arm[0].state != MV_ARM_DONE)
            break;
        e->arm[i].state = MV_ARM_WANTED;
        st.start_arm = i;
        return st;
    }
    return st;
}

const char *mv_iso_verdict_name(mv_iso_verdict_t v)
{
    static const char *const n[] = {"pending", "leak", "plateau", "clean", "inconclusive"};
    return (unsigned)v < sizeof n / sizeof n[0] ? n[v] : "?";
}

const char *mv_iso_mode_name(mv_iso_mode_t m)
{
    static const char *const n[] = {"none", "isolation", "bisection"};
    return (unsigned)m < sizeof n / sizeof n[0] ? n[m] : "?";
}
