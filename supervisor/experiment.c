/*
 * experiment: leak experiments on real workers (see experiment.h; decisions in isolate.c).
 */
#include "experiment.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"

#define MAX_TRIES      2  /* isolations that cleared a kind before it is left alone */
#define RETRY_WINDOWS  20 /* windows of tasks (ended anywhere) before a cleared kind is retried */
#define HOLD_WINDOWS   4  /* ...a kind held for its snapshot keeps its turn, at most */
#define UNEXPLAINED    10 /* windows of tasks before unexplained growth is looked into again */
#define LATE_WINDOWS   2  /* windows of a kind's tasks after which a first suspicion is late */
#define TIMEOUT_MIN    1000
#define TIMEOUT_WINDOW 20   /* windows of tasks ended anywhere: an experiment's timeout */
#define LINE_KIND_OK   0.9  /* share of a kind's tasks whose line gives that kind: isolatable */
#define KIND_INDEX_CAP 2048 /* twice MV_LEAK_KINDS_MAX: probing stays short */

static uint64_t now(const mv_experiment_t *x)
{
    return x->tasks->ended;
}

static uint64_t window(const mv_experiment_t *x)
{
    return (uint64_t)x->cfg->leak.window;
}

/* Nothing more will come from the source and nothing is queued. */
static bool batch_over(const mv_experiment_t *x)
{
    return mv_tasks_source_done(x->tasks) && x->tasks->queued == 0;
}

/* Whether a kind other than `kind` waits for its experiment, and could start it now: one held
 * for its suspect's snapshot cannot yet (mv_experiment_hold lets it go, and drives). */
static bool others_wait(const mv_experiment_t *x, const char *kind)
{
    for (size_t i = 0; i < x->nkinds; i++)
        if (x->kinds[i].state == MV_EXP_QUEUED && !x->kinds[i].held &&
            strcmp(x->kinds[i].name, kind) != 0)
            return true;
    return false;
}

/* ---- what is known of each kind ---- */

/* The record of a kind (made on first sight when `make`); NULL when unknown or on ENOMEM. */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static mv_exp_kind_t *kind_rec(mv_experiment_t *x, const char *name, bool make)
{
    mv_exp_kind_t *grown;
    size_t i;

    name = name && *name ? name : "(none)";
    /* Looked up for every task: an index, not a scan (the first word of lines that are file
     * paths is a new kind each time, up to MV_LEAK_KINDS_MAX of them). */
    if (!x->index && !(x->index = calloc(KIND_INDEX_CAP, sizeof *x->index)))
        return NULL;
    for (i = name_hash(name) & (KIND_INDEX_CAP - 1); x->index[i];
         i = (i + 1) & (KIND_INDEX_CAP - 1))
        if (strcmp(x->kinds[x->index[i] - 1].name, name) == 0)
            return &x->kinds[x->index[i] - 1];
    if (!make || x->nkinds >= MV_LEAK_KINDS_MAX)
        return NULL;
    if (x->nkinds == x->capkinds) {
        size_t cap = x->capkinds ? 2 * x->capkinds : 16;
        if (!(grown = realloc(x->kinds, cap * sizeof *grown)))
            return NULL;
        x->kinds = grown;
        x->capkinds = cap;
    }
    memset(&x->kinds[x->nkinds], 0, sizeof x->kinds[0]);
    snprintf(x->kinds[x->nkinds].name, sizeof x->kinds[0].name, "%s", name);
    x->index[i] = (uint32_t)x->nkinds + 1;
    return &x->kinds[x->nkinds++];
}

/* ---- tasks saved for an isolation that waits ---- */

/* How many of a saved kind's queued tasks the other workers leave for it: what its
 * isolation's arm runs first (its warm-up and window), within half the read-ahead; the queue
 * gets that much room more for each saved kind (mv_tasks_set_room), so the other workers lack
 * no task for it. Half the read-ahead for each kind, not shared: shared, the third of three
 * kinds suspected together kept 43 of its 60 (2 workers), and an isolation that comes after
 * two others took the rest of its window from hundreds of tasks later, late. */
static int save_quota(const mv_experiment_t *x)
{
    size_t room = x->tasks->read_ahead / 2;
    size_t want = (size_t)x->iso.cfg.warmup + (size_t)x->iso.cfg.tasks;

    return (int)(want < room ? want : room);
}

/* Whether `k` is the kind being tried alone now. */
static bool isolating(const mv_experiment_t *x, const mv_exp_kind_t *k)
{
    return (x->iso.mode == MV_ISO_ISOLATE && strcmp(x->iso.subject, k->name) == 0) ||
           (x->settling && strcmp(x->settled_kind, k->name) == 0); /* its verdict is coming */
}

static void save(mv_experiment_t *x, mv_exp_kind_t *k)
{
    if (k->saved || x->nsaved >= MV_EXP_SAVED_MAX)
        return; /* more waiting kinds than that: the later ones run as they come */
    k->saved = true;
    x->saved[x->nsaved++] = (uint32_t)(k - x->kinds);
    mv_tasks_set_room(x->tasks, (size_t)(save_quota(x) * x->nsaved));
    mv_info(x->log, "leak_experiment", MV_S("step", "saving"), MV_S("kind", k->name),
            MV_I("tasks", save_quota(x)));
}

static void unsave(mv_experiment_t *x, mv_exp_kind_t *k)
{
    if (!k->saved)
        return;
    k->saved = false;
    for (int i = 0; i < x->nsaved; i++)
        if (&x->kinds[x->saved[i]] == k) {
            x->saved[i] = x->saved[--x->nsaved];
            break;
        }
    mv_tasks_set_room(x->tasks, (size_t)(save_quota(x) * x->nsaved));
}

/* Whether a worker outside the experiment leaves this task of `kind` queued: one of the first
 * save_quota() of a saved kind met in this look through the queue. */
static bool saved_task(mv_experiment_t *x, const char *kind)
{
    mv_exp_kind_t *k = kind_rec(x, kind, false);

    return k && k->saved && k->seen++ < save_quota(x);
}

bool mv_experiment_explains(const mv_experiment_t *x)
{
    for (size_t i = 0; i < x->nkinds; i++)
        if (x->kinds[i].state == MV_EXP_QUEUED || x->kinds[i].state == MV_EXP_KNOWN)
            return true;
    return false;
}

bool mv_experiment_takes_growth(const mv_experiment_t *x)
{
    return x->enabled && x->iso.mode == MV_ISO_NONE && !mv_experiment_explains(x) &&
           now(x) >= x->bisect_after;
}

bool mv_experiment_settled(const mv_experiment_t *x)
{
    /* A known kind stays known (mv_experiment_suspect answers KNOWN for it and nothing
     * else changes its state), and explains every worker's growth from then on. */
    for (size_t i = 0; i < x->nkinds; i++)
        if (x->kinds[i].state == MV_EXP_KNOWN)
            return true;
    return false;
}

/* ---- arms and their workers ---- */

static int arm_of(const mv_experiment_t *x, const mv_worker_t *w)
{
    if (x->iso.mode == MV_ISO_NONE)
        return -1;
    for (int i = 0; i < MV_ISO_ARMS; i++)
        if (x->arm[i].w == w)
            return i;
    return -1;
}

bool mv_experiment_in_place(const mv_experiment_t *x)
{
    return x->iso.mode == MV_ISO_ISOLATE && x->in_place > 0;
}

bool mv_experiment_is_arm(const mv_experiment_t *x, const mv_worker_t *w)
{
    return arm_of(x, w) >= 0;
}

bool mv_experiment_owes(const mv_experiment_t *x, const mv_worker_t *w)
{
    int arm = arm_of(x, w);

    return arm >= 0 && w->tasks_done < x->arm[arm].own_from;
}

/* The arm's worker goes back to taking anything. */
static void unbind(mv_experiment_t *x, int arm)
{
    if (x->arm[arm].w)
        mv_worker_measure_exactly(x->arm[arm].w, false);
    x->arm[arm].w = NULL;
    x->arm[arm].slot = 0;
    x->arm[arm].left = NULL;
    x->arm[arm].left_slot = 0;
    free(x->arm[arm].snapshot);
    x->arm[arm].snapshot = NULL;
}

/* A decided arm's worker takes other work while the other arm runs on: the verdict its arm
 * decided names it still (docs/leaks.md), as it is then or as it was when it left. */
static void release(mv_experiment_t *x, int arm)
{
    mv_worker_t *w = x->arm[arm].w;
    int slot = x->arm[arm].slot;

    unbind(x, arm);
    x->arm[arm].left = w;
    x->arm[arm].left_slot = slot;
    x->arm[arm].gen = w->gen;
    x->arm[arm].pid = w->proc.pid;
}

/* The kinds an arm runs, for the log: "a,b" (its candidates), or "all but a,b". */
static void arm_kinds(const mv_experiment_t *x, int arm, char *buf, size_t cap)
{
    const mv_iso_arm_t *a = &x->iso.arm[arm], *src = a->complement ? &x->iso.arm[1 - arm] : a;
    size_t used = (size_t)snprintf(buf, cap, "%s", a->complement ? "all but " : "");

    for (int i = 0; i < src->nkinds && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? "," : "", src->kinds[i]);
}

static void want_worker(mv_experiment_t *x, int arm)
{
    char kinds[256];
    /* Arm 0 in slot 1, arm 1 in slot 2; with one slot both take turns in it. An isolation
     * spares the suspect's worker, whose snapshot is being taken. */
    int slot = arm == 1 && x->slots >= 2 ? 2 : 1;

    if (x->iso.mode == MV_ISO_ISOLATE && x->slots >= 2 && x->spare_slot == slot)
        slot = slot == 1 ? 2 : 1;
    if (x->iso.mode == MV_ISO_ISOLATE && x->in_place > 0 && x->in_place <= x->slots)
        slot = x->in_place; /* the worker that showed the growth, as it is */

    unbind(x, arm);
    x->arm[arm] = (struct mv_exp_arm){.slot = slot};
    arm_kinds(x, arm, kinds, sizeof kinds);
    mv_info(x->log, "leak_experiment", MV_S("step", "fresh_worker"),
            MV_S("mode", mv_iso_mode_name(x->iso.mode)), MV_I("arm", arm), MV_I("worker", slot),
            MV_S("kinds", kinds));
    x->ev->on_fresh(x->arg, slot);
}

void mv_experiment_attach(mv_experiment_t *x, mv_worker_t *w)
{
    for (int i = 0; i < MV_ISO_ARMS && x->iso.mode != MV_ISO_NONE; i++) {
        if (x->arm[i].slot != w->slot || x->arm[i].w || x->iso.arm[i].state != MV_ARM_WANTED)
            continue;
        /* In place: the worker that grew, not a successor started in its slot while it
         * leaves (its exit ends the isolation: mv_experiment_gone). */
        if (mv_experiment_in_place(x) && w->gen != x->in_place_gen)
            continue;
        x->arm[i].w = w;
        x->arm[i].gen = w->gen;
        x->arm[i].own_from = w->count ? w->tasks_done + (int64_t)w->count + 1 : 0;
        mv_iso_bound(&x->iso, i);
        /* Its readings make the verdict: one task per reading, no garbage waiting for a
         * collector in them. */
        mv_worker_measure_exactly(w, true);
        mv_info(x->log, "leak_experiment", MV_S("step", "arm_started"), MV_I("arm", i),
                MV_I("worker", w->slot), MV_I("gen", w->gen));
        return;
    }
}

/* ---- starting and ending ---- */

/* Its next isolation binds this generation of the slot's worker as it is; once per kind. A
 * first try (older_than_fresh) counts as the kind's try in place once it starts: an aim
 * dropped before (that worker left, the suspect was demoted) leaves the kind its handover in
 * place after a fresh worker's clearing. */
static void aim_in_place(mv_exp_kind_t *k, int slot, uint32_t gen, bool first)
{
    k->in_place_tried = k->in_place_tried || !first;
    k->first_in_place = first;
    k->in_place_slot = slot;
    k->in_place_gen = gen;
}

/* The figures a verdict suspects a kind on (none when it is not the detector's: a demoted
 * suspect's snapshot suspects the other kind). */
static mv_exp_figures_t figures_of(const mv_leak_verdict_t *v)
{
    if (v->rule == MV_LEAK_NONE)
        return (mv_exp_figures_t){0};
    return (mv_exp_figures_t){v->per_task, v->fds_per_task, v->confidence, v->rule};
}

/* The kind waits for its isolation, behind the kinds queued before it. One to run in place
 * goes first: the worker it must run on is the one that grows, which a recycle (or an earlier
 * kind's fresh worker) can take any time, leaving only a fresh worker that cannot show its
 * leak; and a short batch may be near its end. */
static void queue(mv_experiment_t *x, mv_exp_kind_t *k)
{
    k->state = MV_EXP_QUEUED;
    k->queued = k->in_place_slot > 0 ? 0 : ++x->queued;
}

static void drive(mv_experiment_t *x);

static void hold(mv_experiment_t *x, mv_exp_kind_t *k)
{
    k->held = true;
    k->held_at = now(x);
}

/* Whether a kind queued before k is held for its snapshot, for less than HOLD_WINDOWS
 * windows of tasks so far: its turn comes first. A kind suspected on the same worker while
 * that snapshot is taken takes none of its own and is let go at once; before, it went first
 * and the earlier kind waited out its whole isolation (the second held-out set's
 * `late_growth`: named after 488 tasks of it, not ~110). A snapshot whose heap view is slow
 * does not hold the others for longer than that (bounded by the wall clock instead, one
 * snapshot of 350 ms held four kinds until a short batch ran out). */
static bool behind_held(const mv_experiment_t *x, const mv_exp_kind_t *k)
{
    for (size_t i = 0; i < x->nkinds; i++) {
        const mv_exp_kind_t *h = &x->kinds[i];
        if (h->state == MV_EXP_QUEUED && h->held && h->queued < k->queued &&
            now(x) - h->held_at < HOLD_WINDOWS * window(x))
            return true;
    }
    return false;
}

/* Starts the isolation of the first queued kind, if any (and nothing runs). */
static void start_next(mv_experiment_t *x)
{
    x->behind_held = false;
    while (x->iso.mode == MV_ISO_NONE) {
        mv_exp_kind_t *k = NULL;
        /* The one queued first. In the order of their first tasks (as before), a kind
         * suspected first waited behind kinds suspected after it, and a short batch could
         * end before its turn. */
        for (size_t i = 0; i < x->nkinds; i++)
            if (x->kinds[i].state == MV_EXP_QUEUED && !x->kinds[i].held &&
                (!k || x->kinds[i].queued < k->queued))
                k = &x->kinds[i];
        if (!k)
            return;
        if (behind_held(x, k)) {
            x->behind_held = true; /* looked at again as tasks end (mv_experiment_observe) */
            return;
        }
        unsave(x, k); /* its arm takes its tasks from here on */
        if (mv_iso_isolate(&x->iso, k->name, x->slots, now(x)) < 0) {
            k->state = MV_EXP_NOW; /* out of memory: it stands on its own evidence */
            continue;
        }
        x->suspected = true;
        x->kernel = k->kernel;
        k->kernel = false;
        x->experiments++;
        x->in_place = k->in_place_slot;
        x->in_place_gen = k->in_place_gen;
        x->first_in_place = x->in_place > 0 && k->first_in_place;
        k->in_place_tried = k->in_place_tried || x->first_in_place;
        k->in_place_slot = 0;
        k->first_in_place = false;
        mv_info(x->log, "leak_experiment", MV_S("step", "start"), MV_S("mode", "isolation"),
                MV_S("kind", k->name), MV_I("tasks", x->iso.cfg.tasks),
                MV_I("warmup", x->iso.cfg.warmup), MV_T("in_place", x->in_place > 0));
    }
}

/* A fresh worker cleared a suspect that grew on a worker older than the fresh one became,
 * and that worker lives: a fresh worker cannot show a leak that needs what an older process
 * has (a kind that starts to keep on its 100th call, one that keeps more the older its
 * process), so the kind is not cleared yet: it runs alone on that worker next, as it is
 * (in_place_next). Waiting for it to be suspected again, as a kind cleared on its own
 * figures is, took windows of tasks, and a batch that ended before heard it cleared. */
static bool cleared_younger(const mv_experiment_t *x, const mv_exp_kind_t *k,
                            const mv_iso_result_t *res)
{
    const struct mv_exp_arm *fresh = &x->arm[0];
    int slot = k->grew_slot;

    return res->mode == MV_ISO_ISOLATE && x->suspected && x->in_place == 0 &&
           (res->verdict == MV_ISO_V_CLEAN || res->verdict == MV_ISO_V_PLATEAU) && slot > 0 &&
           slot <= x->slots && slot != fresh->slot && slot != fresh->left_slot &&
           !k->in_place_tried && k->tries + 1 < MAX_TRIES &&
           k->grew_tasks > (int64_t)x->iso.cfg.warmup + res->tasks;
}

/* A kind's first try, in place (older_than_fresh), confirms a leak but clears nothing: its
 * window starts wherever the kind is in that process (a tracer switched on and off every 40
 * calls was in an off phase, and cleared as clean: the eighth held-out set's `phase_leak`,
 * which a fresh worker, starting afresh, confirms), and a worker that leaves before the
 * window's end leaves it undecided. Any other verdict hands the kind to a fresh worker, as
 * before the first try in place. */
static bool fresh_next(const mv_experiment_t *x, const mv_iso_result_t *res)
{
    return res->mode == MV_ISO_ISOLATE && x->first_in_place && res->verdict != MV_ISO_V_LEAK;
}

/* The fresh arm's verdict is logged; the isolation in place that follows decides the kind. */
static void in_place_next(mv_experiment_t *x, mv_exp_kind_t *k)
{
    k->tries++;
    aim_in_place(k, k->grew_slot, k->grew_gen, false);
    queue(x, k); /* next: the second half of an isolation already run */
    k->held = false;
    mv_info(x->log, "leak_experiment", MV_S("step", "in_place"), MV_S("kind", k->name),
            MV_I("worker", k->grew_slot),
            MV_S("why", "cleared on a fresh worker, grown on an older one"),
            MV_S("figures", x->kernel ? "kernel" : "heap"));
    k->kernel = x->kernel;
    x->in_place = 0;
    x->kernel = false;
    for (int i = 0; i < MV_ISO_ARMS; i++)
        unbind(x, i);
    /* Not saved: it starts as soon as conclude() returns (drive), before any task goes. */
}

/* The experiment ended: the verdict goes up, the arms' workers take anything again. */
static void conclude(mv_experiment_t *x, const mv_iso_result_t *decided)
{
    mv_iso_result_t r = *decided;
    const mv_iso_result_t *res = &r;
    /* Isolation decides on arm 0; a bisection that found a kind, on arm 0 alone too. */
    int a = res->mode == MV_ISO_ISOLATE || res->verdict == MV_ISO_V_LEAK ? 0 : -1;
    mv_exp_kind_t *k = res->kind ? kind_rec(x, res->kind, true) : NULL;
    struct mv_exp_arm *arm = a >= 0 ? &x->arm[a] : NULL;
    bool next = k && cleared_younger(x, k, res);
    bool fresh = k && !next && fresh_next(x, res);
    mv_exp_verdict_t v;

    /* With no task left in the batch, the next try cannot run: not cleared all the same. */
    if ((next || fresh) && batch_over(x)) {
        if (r.verdict == MV_ISO_V_CLEAN || r.verdict == MV_ISO_V_PLATEAU) {
            r.verdict = MV_ISO_V_INCONCLUSIVE;
            r.why = next ? "cleared on a fresh worker, grown on an older one: no task left to run "
                           "there"
                         : "not confirmed in place: no task left for a fresh worker";
        }
        next = fresh = false;
    }

    if (arm && (arm->w || arm->left)) { /* alive: as it is now (its pid once it started) */
        const mv_worker_t *w = arm->w ? arm->w : arm->left;
        arm->gen = w->gen;
        arm->pid = w->proc.pid;
    }
    v = (mv_exp_verdict_t){
        .kind = res->kind,
        .verdict = res->verdict,
        .mode = res->mode,
        .per_task = res->slope,
        .confidence = res->confidence,
        .tasks = res->tasks,
        .rounds = res->rounds,
        .heap = a >= 0 && x->arm[a].heap,
        .suspected = x->suspected,
        .suspect_heap = x->suspected && k && k->heap,
        .suspicion = x->suspected && k ? k->suspicion : (mv_exp_figures_t){0},
        .why = res->why,
        .w = arm ? (arm->w ? arm->w : arm->left) : NULL,
        .slot = arm && arm->pid > 0 ? (arm->slot ? arm->slot : arm->left_slot) : 0,
        .gen = arm ? arm->gen : 0,
        .pid = arm ? arm->pid : 0,
        .snapshot = arm ? arm->snapshot : NULL,
        .task = arm ? arm->last : 0,
    };

    mv_log(x->log, res->verdict == MV_ISO_V_LEAK ? MV_LVL_WARN : MV_LVL_INFO, "leak_experiment",
           MV_S("step", "verdict"), MV_S("mode", mv_iso_mode_name(res->mode)),
           MV_S("kind", res->kind), MV_S("verdict", mv_iso_verdict_name(res->verdict)),
           MV_I("per_task", (long long)res->slope), MV_D("confidence", res->confidence),
           MV_I("tasks", res->tasks), MV_I("rounds", res->rounds),
           MV_S("figures", v.heap ? "heap" : "kernel"), MV_S("why", res->why));
    if (next) {
        in_place_next(x, k);
        return;
    }
    if (fresh) { /* not a clearing: `tries` counts those */
        k->in_place_slot = 0;
        queue(x, k);
        save(x, k); /* its tasks wait for its fresh worker, behind any kind queued before */
        k->held = false;
        mv_info(x->log, "leak_experiment", MV_S("step", "requeued"), MV_S("kind", k->name),
                MV_S("why", "not confirmed in place: a fresh worker next"));
        x->in_place = 0;
        x->first_in_place = false;
        x->kernel = false;
        for (int i = 0; i < MV_ISO_ARMS; i++)
            unbind(x, i);
        return;
    }
    if (k) {
        if (res->verdict == MV_ISO_V_LEAK) {
            k->state = MV_EXP_KNOWN;
        } else if (res->verdict == MV_ISO_V_INCONCLUSIVE) {
            k->state = MV_EXP_NOW;
        } else {
            k->state = MV_EXP_CLEARED;
            k->tries++;
            k->cleared_at = now(x);
        }
    }
    /* Growth that an experiment could not pin on a kind (a bisection, or the isolation of
     * the only kind a growing worker ran) is not looked into again at once: each try costs a
     * fresh worker, and the same growth would start the same experiment at the next task. */
    if (res->verdict != MV_ISO_V_LEAK && (res->mode == MV_ISO_BISECT || !x->suspected))
        x->bisect_after = now(x) + UNEXPLAINED * window(x);
    x->in_place = 0;
    x->first_in_place = false;
    x->kernel = false;
    x->ev->on_verdict(x->arg, &v);
    for (int i = 0; i < MV_ISO_ARMS; i++)
        unbind(x, i);
}

/* An isolation that found a leak: before the verdict goes up, its worker idles for [leak]
 * settle (it takes no task: f_may_take). A kind's tasks run back to back in an isolation, 60
 * of them in 45 ms for a session kept for a 30 ms grace period by a timer, so memory held for
 * a time grew through the whole run as a leak does (the eighth held-out set's `timer_grace`,
 * confirmed in 6 of 10 `lines` runs). Idle, the worker gives it back, and its heap page
 * shows it: mv_experiment_settle_due. Only with the page (the heap preload): a worker's own
 * figures come with its answers, and an idle worker sends none. In place too (the fresh
 * worker's plateau hands the kind to the older worker, where it grew the same way); there
 * what the worker gives back may include other kinds' memory held for longer than the run.
 * Only while no other kind waits for its experiment, and it ends when one comes (drive): the
 * next experiment waits for this verdict, and in short batches that cost queued kinds their
 * isolations (4 more leaks missed in the sixth held-out set when every leak idled first).
 * Not when the batch has nothing left to run; a pool that stops meanwhile lets the worker
 * idle out first (mv_pool_stop). The idle is the whole [leak] settle, not a multiple of the
 * run's length: a timer thread runs late (half the sessions of a 30 ms grace period were
 * still held 52 ms after a run of 26 ms). */
static bool settle(mv_experiment_t *x, const mv_iso_result_t *res)
{
    mv_worker_t *w = x->arm[0].w;
    int64_t last, now_bytes;

    if (x->cfg->leak.settle <= 0 || !x->ev->settle || res->mode != MV_ISO_ISOLATE ||
        res->verdict != MV_ISO_V_LEAK || x->kernel || !x->arm[0].heap || !w || w->count > 0 ||
        mv_worker_leaving(w) || batch_over(x) || others_wait(x, res->kind) ||
        !mv_heapwin_since_last(&w->heap, &last, &now_bytes))
        return false;
    x->settling = true;
    x->settled = *res;
    snprintf(x->settled_kind, sizeof x->settled_kind, "%s", res->kind);
    x->settled.kind = x->settled_kind;
    x->settled_kept = mv_iso_kept(x->iso.arm[0].inc, x->iso.arm[0].n);
    mv_info(x->log, "leak_experiment", MV_S("step", "settling"), MV_S("kind", res->kind),
            MV_I("worker", w->slot), MV_I("ms", (long long)x->cfg->leak.settle),
            MV_I("run_ms", x->arm[0].first_ms ? (long long)(mv_now_ms() - x->arm[0].first_ms) : 0),
            MV_S("why", "memory held for a time is given back while its worker idles"));
    x->ev->settle(x->arg, (uint64_t)x->cfg->leak.settle);
    return true;
}

/* The verdict of a settling isolation goes up: a plateau when its worker gave back half the
 * run's growth or more. `gone`: that worker left (its slot, generation, pid and last
 * `snapshot` are kept for the verdict, as an arm's: mv_experiment_gone). A worker that left,
 * or is leaving, frees what it holds as it exits (an interpreter's teardown, destructors):
 * what its page says then is no evidence, and the leak stands as found. */
static void settle_end(mv_experiment_t *x, mv_worker_t *gone, const char *snapshot)
{
    mv_iso_result_t res = x->settled;
    mv_worker_t *w = x->arm[0].w;
    int64_t last, now_bytes;

    x->settling = false;
    if (w && !gone && !mv_worker_leaving(w) && mv_heapwin_since_last(&w->heap, &last, &now_bytes)) {
        mv_info(x->log, "leak_experiment", MV_S("step", "settled"), MV_S("kind", res.kind),
                MV_I("worker", w->slot), MV_I("kept", (long long)x->settled_kept),
                MV_I("given_back", (long long)(last - now_bytes)));
        if (mv_iso_given_back(x->settled_kept, (double)(last - now_bytes))) {
            res.verdict = MV_ISO_V_PLATEAU;
            res.why = "its idle worker gave back what the run kept: memory held for a time";
        }
    }
    if (gone) {
        x->arm[0].w = NULL;
        x->arm[0].gen = gone->gen;
        x->arm[0].pid = gone->proc.pid;
        free(x->arm[0].snapshot);
        x->arm[0].snapshot = snapshot ? strdup(snapshot) : NULL;
        w = NULL;
    }
    conclude(x, &res);
    if (x->ev->settled)
        x->ev->settled(x->arg, w);
    drive(x);
}

mv_worker_t *mv_experiment_settling(const mv_experiment_t *x)
{
    return x->settling ? x->arm[0].w : NULL;
}

void mv_experiment_settle_due(mv_experiment_t *x)
{
    if (x->settling)
        settle_end(x, NULL, NULL);
}

/* Logs the verdict of each arm once it is decided (a bisection's rounds show that way). */
static void say_arms(mv_experiment_t *x)
{
    char kinds[256];

    for (int i = 0; i < MV_ISO_ARMS; i++) {
        const mv_iso_arm_t *a = &x->iso.arm[i];
        if (x->arm[i].said || !x->arm[i].slot || a->state != MV_ARM_DONE)
            continue;
        x->arm[i].said = true;
        arm_kinds(x, i, kinds, sizeof kinds);
        mv_info(x->log, "leak_experiment", MV_S("step", "arm_done"),
                MV_S("mode", mv_iso_mode_name(x->iso.mode)), MV_I("arm", i),
                MV_I("round", x->iso.rounds), MV_S("kinds", kinds),
                MV_S("verdict", mv_iso_verdict_name(a->verdict)),
                MV_I("per_task", (long long)a->slope), MV_D("confidence", a->confidence),
                MV_I("tasks", a->n));
    }
}

/* Runs the decisions until nothing is left to do now. */
static void drive(mv_experiment_t *x)
{
    for (int guard = 0; guard < 64; guard++) {
        mv_iso_step_t st;

        if (x->settling && !others_wait(x, x->settled.kind))
            return;
        if (x->settling) { /* another kind waits: the idle ends now */
            settle_end(x, NULL, NULL);
            return;
        }
        if (x->iso.mode == MV_ISO_NONE)
            start_next(x);
        if (x->iso.mode == MV_ISO_NONE)
            return;
        /* Nothing more will come from the source and nothing is queued: the arms have what
         * they will ever have. */
        if (batch_over(x))
            mv_iso_abort(&x->iso, "the batch ran out of tasks: judged on what ran");
        if (x->iso.mode == MV_ISO_BISECT)
            say_arms(x);
        /* An arm's worker with a task in flight is at work, however slow its kind. */
        for (int i = 0; i < MV_ISO_ARMS; i++)
            if (x->arm[i].w && x->arm[i].w->count > 0)
                mv_iso_working(&x->iso, i, now(x));
        st = mv_iso_step(&x->iso, now(x));
        if (x->iso.mode == MV_ISO_BISECT)
            say_arms(x);
        /* Arms that are decided, or not started: their workers take anything. */
        for (int i = 0; i < MV_ISO_ARMS; i++) {
            if (!x->arm[i].w || x->iso.arm[i].state == MV_ARM_RUNNING || st.ended)
                continue;
            if (x->iso.arm[i].state == MV_ARM_DONE)
                release(x, i);
            else
                unbind(x, i);
        }
        if (st.ended && settle(x, &st.result))
            return;
        if (st.ended)
            conclude(x, &st.result);
        else if (st.start_arm >= 0)
            want_worker(x, st.start_arm);
        else
            return;
    }
}

/* ---- what the run says ---- */

/* Whether kind k, first suspected late, on this worker, at `per_task` bytes a task, is first
 * tried on it, as it is, rather than on a fresh worker. Late: after more than LATE_WINDOWS
 * windows of its tasks past their workers' warm-up (the tasks the detector judges: with many
 * workers, their warm-ups alone are windows of a kind's tasks), so its first windows were
 * judged and not suspected: it did not keep, or not enough, while the processes were younger,
 * and a fresh worker, young, may not show it (a leak that starts on a process's 100th call, an
 * undo stack that keeps more the older its process: cleared on a fresh worker and tried in
 * place only after that, a fresh worker's start-up and window later, they were named after ~490
 * tasks, or never when a batch ran out first: the third and eighth held-out sets' `late_start`
 * and `age_history`). A kind suspected in its first windows leaks from the start: a fresh
 * worker shows it, and decides sooner than an old one, whose figures carry other kinds' frees
 * (tried in place first, 11 such kinds of the held-out sets were named 15-100 tasks later). The
 * worker has run more tasks than an isolation's warm-up and window (what a fresh worker would
 * reach), serves with no recycle decided, and has room for the longest isolation and the
 * answers it owes (not the arm's: mv_experiment_attach, own_from) under its `max_tasks` and,
 * at that rate, under its soft limit (else a recycle would cut the isolation short). The
 * caller gives heap figures: live bytes, which an old worker's free memory does not hide (its
 * kernel figures stay flat while a leak reuses what others freed, which is what a fresh worker is
 * for). A try in place only confirms (fresh_next). */
static bool older_than_fresh(const mv_experiment_t *x, const mv_exp_kind_t *k, const mv_worker_t *w,
                             double per_task)
{
    int64_t fresh = (int64_t)x->iso.cfg.warmup + x->iso.cfg.tasks;
    int64_t longest = (int64_t)x->iso.cfg.warmup + x->iso.cfg.max_tasks;
    int64_t soft = w->lim.soft_bytes, max = w->lim.max_tasks;

    if (k->judged <= LATE_WINDOWS * window(x))
        return false;
    if (w->tasks_done <= fresh || mv_worker_leaving(w) || !mv_fsm_serving(w->state))
        return false;
    longest += (int64_t)w->count; /* the answers it owes come first (own_from) */
    if (max > 0 && w->tasks_done + longest >= max)
        return false;
    return soft <= 0 || !w->mem.have ||
           (double)mv_reading_limit_metric(&w->mem.last, x->cfg->limits.metric) +
                   per_task * (double)longest <
               (double)soft;
}

bool mv_experiment_queued(mv_experiment_t *x, const char *kind)
{
    const mv_exp_kind_t *k = x->enabled ? kind_rec(x, kind, false) : NULL;

    return k && k->state == MV_EXP_QUEUED;
}

mv_exp_answer_t mv_experiment_suspect(mv_experiment_t *x, const mv_leak_verdict_t *v,
                                      const mv_worker_t *w, bool in_place)
{
    int slot = w ? w->slot : 0;
    mv_exp_kind_t *k;

    if (!x->enabled || !(k = kind_rec(x, v->kind, true)))
        return MV_EXP_NOW;
    /* Its tasks must be told apart by their lines for a worker to take only them. */
    if (k->line_ok + k->line_bad > 0 &&
        (double)k->line_ok < LINE_KIND_OK * (double)(k->line_ok + k->line_bad))
        return MV_EXP_NOW;
    if (k->state == MV_EXP_QUEUED && v->rule != MV_LEAK_NONE)
        k->suspicion = figures_of(v); /* suspected again while it waits or runs */
    if (k->state == MV_EXP_KNOWN || k->state == MV_EXP_QUEUED)
        return (mv_exp_answer_t)k->state;
    /* Cleared by a fresh worker, and suspected again: on figures from after that (the
     * detector forgets a kind's figures when it is cleared), so the growth goes on where it
     * was seen. A fresh worker cannot show a leak that needs what an older process has (a
     * kind that starts to leak on its 100th call, a cache turned unbounded by a reload):
     * the next try runs the kind alone on the worker that grew, as it is, without waiting. */
    if (k->state == MV_EXP_CLEARED && !k->in_place_tried && k->tries < MAX_TRIES && in_place &&
        slot > 0) {
        aim_in_place(k, slot, w->gen, false);
    } else if (k->state == MV_EXP_CLEARED &&
               (k->tries >= MAX_TRIES || now(x) - k->cleared_at < RETRY_WINDOWS * window(x))) {
        return MV_EXP_CLEARED;
    } else if (k->tries == 0 && !k->in_place_tried && in_place && slot > 0 && v->heap &&
               older_than_fresh(x, k, w, v->per_task)) {
        /* Its first try: on the worker that grew with it, as it is (older_than_fresh). */
        aim_in_place(k, slot, w->gen, true);
        mv_info(x->log, "leak_experiment", MV_S("step", "in_place"), MV_S("kind", k->name),
                MV_I("worker", slot),
                MV_S("why", "suspected late, on a worker older than a fresh one"),
                MV_S("figures", "heap"));
    } else {
        /* Not in place: an aim of an earlier suspicion, demoted before it ran, is not this
         * one's (it bound that worker, and queue() put the kind first). */
        k->in_place_slot = 0;
        k->first_in_place = false;
    }
    queue(x, k);
    k->heap = v->heap;
    k->suspicion = figures_of(v);
    k->kernel = false;
    hold(x, k); /* until its suspect's snapshot is in: mv_experiment_hold */
    k->grew_slot = in_place ? slot : 0;
    k->grew_gen = w ? w->gen : 0;
    k->grew_tasks = w ? w->tasks_done : 0;
    x->spare_slot = slot;
    /* A bisection looks for growth no kind explains: this one may. Its isolation first. */
    if (x->iso.mode == MV_ISO_BISECT) {
        mv_info(x->log, "leak_experiment", MV_S("step", "relaxed"), MV_S("mode", "bisection"),
                MV_S("why", "a kind is suspected: its isolation comes first"),
                MV_S("kind", k->name));
        mv_iso_abort(&x->iso, "a kind is suspected: its isolation comes first");
    }
    drive(x);
    /* Not tried alone at once: its next tasks wait for its turn. */
    if ((k = kind_rec(x, v->kind, false)) && k->state == MV_EXP_QUEUED && !isolating(x, k))
        save(x, k);
    return MV_EXP_QUEUED;
}

void mv_experiment_grows(mv_experiment_t *x, const mv_worker_t *w, const char *const *kinds, int n,
                         bool off_heap)
{
    int r;

    if (!mv_experiment_takes_growth(x))
        return;
    /* A kind it runs was cleared on a fresh worker: the growth goes on where it was seen, so
     * that kind is tried again alone on this worker, as it is, before a bisection recycles
     * the worker and its state with it (mv_experiment_suspect). */
    for (int i = 0; i < n; i++) {
        mv_exp_kind_t *k = kind_rec(x, kinds[i], false);
        if (k && k->state == MV_EXP_CLEARED && !k->in_place_tried && k->tries < MAX_TRIES) {
            aim_in_place(k, w->slot, w->gen, false);
            queue(x, k);
            k->held = false;
            k->kernel = off_heap; /* judged on the figures that showed the growth */
            /* No detector's figures: the kind's were forgotten when it was cleared. */
            k->suspicion = (mv_exp_figures_t){0};
            mv_info(x->log, "leak_experiment", MV_S("step", "in_place"), MV_S("kind", k->name),
                    MV_I("worker", w->slot),
                    MV_S("why", off_heap ? "a worker grows outside its heap figures"
                                         : "a worker grows unexplained"),
                    MV_S("figures", off_heap ? "kernel" : "heap"));
            drive(x);
            return;
        }
    }
    r = mv_iso_bisect(&x->iso, kinds, n, x->slots, now(x));
    if (r == -EINVAL && n > 0) {
        /* One kind: its isolation, as if it were suspected (but it was not). */
        r = mv_iso_isolate(&x->iso, kinds[0], x->slots, now(x));
    }
    if (r < 0)
        return;
    x->suspected = false;
    x->kernel = off_heap;
    x->experiments++;
    mv_info(x->log, "leak_experiment", MV_S("step", "start"),
            MV_S("mode", mv_iso_mode_name(x->iso.mode)),
            MV_S("why", off_heap ? "a worker grows outside its heap figures"
                                 : "a worker grows unexplained"),
            MV_I("worker", w->slot),
            MV_I("candidates", x->iso.mode == MV_ISO_BISECT ? x->iso.ncand : 1),
            MV_S("figures", off_heap ? "kernel" : "heap"));
    drive(x);
}

void mv_experiment_observe(mv_experiment_t *x, mv_worker_t *w, const mv_task_t *t, const char *kind,
                           double inc, bool measured, bool heap, double kernel)
{
    char line_kind[MV_LEAK_KIND_MAX + 1];
    mv_exp_kind_t *k;
    const char *lk;
    int arm;
    bool own; /* one of an arm's tasks (not one its worker owed when bound: own_from) */

    if (!x->enabled)
        return;
    arm = arm_of(x, w);
    own = arm >= 0 && !mv_experiment_owes(x, w);
    /* Whether this kind can be told by its line (a worker may name kinds its own way). */
    if ((k = kind_rec(x, kind, true))) {
        lk = mv_kind_of_line(x->cfg, (const uint8_t *)t->data, t->len, line_kind);
        if (strcmp(lk ? lk : "(none)", k->name) == 0)
            k->line_ok++;
        else
            k->line_bad++;
        if (w->tasks_done > (int64_t)x->cfg->leak.warmup && !own)
            k->judged++; /* past its worker's warm-up, not an arm's: the detector judged it */
    }
    if (x->iso.mode == MV_ISO_NONE) {
        if (x->behind_held)
            drive(x); /* the held kind's turn may be up (HOLD_WINDOWS) */
        return;
    }
    if (own) {
        if (x->kernel) { /* growth its heap figures do not count: the kernel's */
            inc = kernel;
            heap = false;
            measured = true;
        }
        if (!x->arm[arm].first_ms)
            x->arm[arm].first_ms = mv_now_ms();
        mv_iso_observe(&x->iso, arm, kind, inc, measured, now(x));
        x->arm[arm].last = t->id;
        x->arm[arm].heap = heap;
    }
    drive(x);
}

void mv_experiment_gone(mv_experiment_t *x, mv_worker_t *w, const char *snapshot)
{
    int arm = arm_of(x, w);

    if (x->settling && x->arm[0].w == w)
        settle_end(x, w, snapshot); /* it left while idling */

    for (int i = 0; i < MV_ISO_ARMS; i++) {
        if (x->arm[i].left != w)
            continue;
        /* A decided arm's worker, let go: its verdict names it as it was. */
        x->arm[i].left = NULL;
        x->arm[i].gen = w->gen;
        x->arm[i].pid = w->proc.pid;
        free(x->arm[i].snapshot);
        x->arm[i].snapshot = snapshot ? strdup(snapshot) : NULL;
    }
    /* Nothing to run in place on: a kind queued for it runs on a fresh worker, and waits its
     * turn as any; an isolation in place not started on it yet ends (inconclusive). */
    for (size_t i = 0; i < x->nkinds; i++) {
        mv_exp_kind_t *k = &x->kinds[i];
        if (k->grew_slot == w->slot && k->grew_gen == w->gen)
            k->grew_slot = 0;
        if (k->in_place_slot == w->slot && k->in_place_gen == w->gen) {
            k->in_place_slot = 0;
            k->first_in_place = false;
            if (k->state == MV_EXP_QUEUED && k->queued == 0)
                k->queued = ++x->queued;
        }
    }
    if (arm < 0 && mv_experiment_in_place(x) && x->in_place == w->slot &&
        x->in_place_gen == w->gen && !x->arm[0].w) {
        mv_iso_abort(&x->iso, "the worker it was to run on in place exited");
        drive(x);
        return;
    }
    if (arm < 0)
        return;
    mv_iso_stop_arm(&x->iso, arm);
    x->arm[arm].w = NULL; /* nothing to clear: it is gone */
    /* A verdict its arm decides later still names it (docs/leaks.md). */
    x->arm[arm].gen = w->gen;
    x->arm[arm].pid = w->proc.pid;
    free(x->arm[arm].snapshot);
    x->arm[arm].snapshot = snapshot ? strdup(snapshot) : NULL; /* NULL too without memory */
    drive(x);
}

void mv_experiment_hold(mv_experiment_t *x, const char *kind, bool held)
{
    mv_exp_kind_t *k = kind_rec(x, kind, false);

    if (!k || k->held == held)
        return;
    if (held)
        hold(x, k);
    else {
        k->held = false;
        drive(x);
    }
}

/* ---- allocation sites ---- */

void mv_experiment_link_sites(mv_experiment_t *x, const char *kind, const char *const *sites, int n)
{
    for (int i = 0; i < n; i++) {
        struct mv_exp_site *e = NULL, *grown;
        for (size_t j = 0; j < x->nsites && !e; j++)
            if (strncmp(x->sites[j].site, sites[i], MV_EXP_SITE_MAX - 1) == 0)
                e = &x->sites[j];
        if (e) {
            if (strcmp(e->kind, kind) != 0)
                e->kind[0] = '\0'; /* grows for two kinds: nobody's alone */
            continue;
        }
        if (x->nsites == x->capsites) {
            size_t cap = x->capsites ? 2 * x->capsites : 16;
            if (cap > MV_EXP_SITES_MAX || !(grown = realloc(x->sites, cap * sizeof *grown)))
                return;
            x->sites = grown;
            x->capsites = cap;
        }
        e = &x->sites[x->nsites++];
        snprintf(e->site, sizeof e->site, "%s", sites[i]);
        snprintf(e->kind, sizeof e->kind, "%s", kind);
    }
}

const char *mv_experiment_site_owner(const mv_experiment_t *x, const char *site)
{
    for (size_t j = 0; j < x->nsites; j++)
        if (strncmp(x->sites[j].site, site, MV_EXP_SITE_MAX - 1) == 0)
            return x->sites[j].kind[0] ? x->sites[j].kind : NULL;
    return NULL;
}

void mv_experiment_demote(mv_experiment_t *x, const char *kind, const char *other, const char *site)
{
    /* Both made first, then both looked up: making a record may move every record. */
    mv_exp_kind_t *k = kind_rec(x, kind, true), *o = kind_rec(x, other, true);
    k = k ? kind_rec(x, kind, false) : NULL;
    if (!k || k->state != MV_EXP_QUEUED || isolating(x, k))
        return; /* said, confirmed, or being tried alone already: that one will tell */
    unsave(x, k);
    k->state = MV_EXP_CLEARED;
    k->cleared_at = now(x);
    mv_info(x->log, "leak_cleared", MV_S("kind", kind), MV_S("verdict", "demoted"),
            MV_S("evidence", "snapshot"), MV_S("site", site), MV_S("other", other),
            MV_S("why", "its snapshot grows most at a site of another kind"));
    if (!o || o->state == MV_EXP_KNOWN)
        return;
    /* Suspected on the snapshot's evidence: no figures of its own, and no snapshot of its own
     * to wait for (held, it never went). One queued before keeps the hold it has. */
    if (o->state != MV_EXP_QUEUED &&
        mv_experiment_suspect(x, &(mv_leak_verdict_t){.kind = other, .heap = k->heap}, NULL,
                              false) == MV_EXP_QUEUED)
        mv_experiment_hold(x, other, false);
}

/* ---- the dispatch predicate ---- */

/* During an isolation every worker is filtered: the arm's takes only its kind, the others
 * every other kind, so that the kind's tasks wait for its fresh worker (a fresh worker
 * starts slowly; meanwhile the kind's tasks would go on running in the mixed workers) and
 * its verdict comes within as few of its tasks as the experiment needs. */
static bool f_active(void *arg, const mv_worker_t *w)
{
    const mv_experiment_t *x = arg;

    return x->iso.mode == MV_ISO_ISOLATE || x->nsaved > 0 || x->settling || arm_of(x, w) >= 0;
}

static bool f_may_take(void *arg, const mv_worker_t *w, const mv_task_t *t)
{
    mv_experiment_t *x = arg;
    char buf[MV_LEAK_KIND_MAX + 1];

    const char *kind = mv_kind_of_line(x->cfg, (const uint8_t *)t->data, t->len, buf);
    int arm = arm_of(x, w);

    if (x->settling && w == x->arm[0].w)
        return false; /* it idles (settle) */
    if (arm >= 0)
        return mv_iso_takes(&x->iso, arm, kind);
    /* An isolation's other workers: anything but its kind, and saved tasks stay. */
    if (x->iso.mode == MV_ISO_ISOLATE && mv_iso_takes(&x->iso, 0, kind))
        return false;
    return x->nsaved == 0 || !saved_task(x, kind);
}

static void f_scan(void *arg, const mv_worker_t *w)
{
    mv_experiment_t *x = arg;

    (void)w;
    for (int i = 0; i < x->nsaved; i++)
        x->kinds[x->saved[i]].seen = 0;
}

/* Whether an arm's fresh worker is on its way (asked for, or started and not ready yet). */
static bool arm_coming(const mv_experiment_t *x)
{
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        const mv_worker_t *w = x->arm[i].w;
        if (x->iso.arm[i].state == MV_ARM_WANTED ||
            (x->iso.arm[i].state == MV_ARM_RUNNING && w &&
             (w->state == MV_W_PREPARING || w->state == MV_W_SPAWNING)))
            return true;
    }
    return false;
}

/* Whether a running arm's worker is about to exit (max_tasks, a limit, a fault): asked to,
 * or draining with no task left in hand, so its exit comes within kill_timeout. It stops the
 * arm, which is then judged on what it ran, and the tasks held back go. (One draining with a
 * task in hand may take as long as that task: not waited for.) */
static bool arm_leaving(const mv_experiment_t *x)
{
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        const mv_worker_t *w = x->arm[i].w;
        if (x->iso.arm[i].state == MV_ARM_RUNNING && w &&
            ((w->state == MV_W_DRAINING && w->count == 0) || w->state == MV_W_STOPPING ||
             w->state == MV_W_FROZEN || w->state == MV_W_KILLING))
            return true;
    }
    return false;
}

static bool f_starved(void *arg, mv_worker_t *w, bool source_done)
{
    mv_experiment_t *x = arg;
    int arm = arm_of(x, w);

    /* Nothing more will come for it: judged on what it ran. Else more may come: it waits
     * (the timeout bounds that). */
    if (arm < 0 || !source_done)
        return false;
    mv_info(x->log, "leak_experiment", MV_S("step", "arm_starved"), MV_I("arm", arm),
            MV_I("worker", w->slot), MV_I("tasks", x->iso.arm[arm].n));
    mv_iso_stop_arm(&x->iso, arm);
    drive(x);
    return true;
}

static bool f_stuck(void *arg)
{
    mv_experiment_t *x = arg;

    if (x->iso.mode != MV_ISO_NONE && arm_coming(x))
        return false; /* its worker will take them: dispatch is kicked when it is ready */
    /* An arm whose worker is leaving ends at its exit ("its worker stopped before the end"),
     * which releases them: relaxing first named the wrong cause (tasks held back) for a
     * replacement that happened to be ready before the exit was seen. */
    if (x->iso.mode != MV_ISO_NONE && arm_leaving(x))
        return false;
    /* Saved tasks are all that is queued for an idle worker: they run now. */
    if (x->nsaved > 0) {
        mv_info(x->log, "leak_experiment", MV_S("step", "released"),
                MV_S("why", "saved tasks were all a free worker could take"),
                MV_I("kinds", x->nsaved));
        while (x->nsaved > 0)
            unsave(x, &x->kinds[x->saved[0]]);
        return true;
    }
    if (x->iso.mode == MV_ISO_NONE)
        return true;
    mv_warn(x->log, "leak_experiment", MV_S("step", "relaxed"),
            MV_S("mode", mv_iso_mode_name(x->iso.mode)),
            MV_S("why", "queued tasks that no worker of the experiment may take"));
    mv_iso_abort(&x->iso, "relaxed: tasks were held back");
    drive(x);
    return true;
}

const mv_dispatch_filter_t *mv_experiment_filter(mv_experiment_t *x)
{
    return &x->filter;
}

/* ---- set-up ---- */

void mv_experiment_init(mv_experiment_t *x, mv_log_t *log, const mv_config_t *cfg,
                        mv_tasks_t *tasks, bool service, const mv_experiment_events_t *ev,
                        void *arg)
{
    int w = cfg->leak.window;
    mv_iso_cfg_t ic = {
        .tasks = w,
        .max_tasks = 3 * w,
        .warmup = cfg->leak.warmup,
        .min_slope = cfg->leak.min_slope,
        .timeout = (uint64_t)(TIMEOUT_WINDOW * w > TIMEOUT_MIN ? TIMEOUT_WINDOW * w : TIMEOUT_MIN),
    };

    memset(x, 0, sizeof *x);
    x->log = log;
    x->cfg = cfg;
    x->tasks = tasks;
    x->ev = ev;
    x->arg = arg;
    /* Observe-only ([limits] enforce = no) recycles nothing: no fresh worker, no experiment. */
    x->enabled = cfg->leak.detect && cfg->leak.confirm == MV_CONFIRM_ISOLATE && !service &&
                 cfg->worker.protocol != MV_PROTO_NONE && cfg->limits.enforce;
    x->slots = cfg->supervisor.workers > 0 ? cfg->supervisor.workers : 1;
    mv_iso_init(&x->iso, &ic);
    x->filter = (mv_dispatch_filter_t){.active = f_active,
                                       .may_take = f_may_take,
                                       .starved = f_starved,
                                       .stuck = f_stuck,
                                       .scan = f_scan,
                                       .arg = x};
}

void mv_experiment_free(mv_experiment_t *x)
{
    for (int i = 0; i < MV_ISO_ARMS; i++) {
        free(x->arm[i].snapshot);
        x->arm[i].snapshot = NULL;
    }
    mv_iso_free(&x->iso);
    free(x->kinds);
    free(x->index);
    free(x->sites);
    x->kinds = NULL;
    x->index = NULL;
    x->sites = NULL;
    x->nkinds = x->capkinds = x->nsites = x->capsites = 0;
}

void mv_experiment_slots(mv_experiment_t *x, int n)
{
    x->slots = n > 0 ? n : 1;
    if (x->iso.mode != MV_ISO_NONE)
        x->iso.slots = x->slots;
}

bool mv_experiment_uses(const mv_experiment_t *x, int slot)
{
    for (int i = 0; i < MV_ISO_ARMS && x->iso.mode != MV_ISO_NONE; i++)
        if (x->arm[i].slot == slot)
            return true;
    return false;
}

void mv_experiment_slot_retired(mv_experiment_t *x, int slot)
{
    bool stopped = false;

    for (int i = 0; i < MV_ISO_ARMS && x->iso.mode != MV_ISO_NONE; i++)
        if (x->arm[i].slot == slot && !x->arm[i].w) {
            mv_iso_stop_arm(&x->iso, i);
            stopped = true;
        }
    if (stopped)
        drive(x);
}
