/*
 * experiment: leak experiments run on real workers ([leak] confirm = isolate; batch mode).
 * The decisions are isolate.h's (pure); this module carries them out:
 *
 *   - a memory suspect (suspect.c) is queued for an isolation; a worker that grows while no
 *     kind is suspected asks for a bisection; at most one experiment runs at a time;
 *   - an arm needs a fresh worker: it asks its owner (the pool) to recycle a slot's worker
 *     (on_fresh) and takes the next worker started in that slot (mv_experiment_attach);
 *   - an arm's worker takes only the arm's tasks: dispatch asks mv_experiment_filter()'s
 *     predicate "may worker W take task T" (the kind of T from its line, [leak] kind), and
 *     those workers' tasks ask to collect garbage before answering (api v2: gc.collect());
 *   - a suspected kind that waits for its isolation (another runs, or its snapshot is being
 *     taken) has its next tasks saved for it: the other workers leave the first ones queued
 *     (an isolation's warm-up and window of them, at most half the read-ahead each), so that a
 *     short batch does not run out of them before its turn; the rest run as usual;
 *   - it never holds tasks back for good: an arm with nothing left to run is judged on what
 *     it has; saved tasks that would leave a worker idle are released; when filters leave queued
 * tasks with no worker to take them, or the experiment runs past its timeout, it ends
 * (inconclusive) and every worker takes anything again;
 *   - each step is logged (event=leak_experiment) and the verdict goes up (on_verdict).
 *
 * Tasks are independent in batch mode: an experiment changes which worker runs a task,
 * never whether or how often it runs. Service mode has no experiments (its tasks are the
 * worker's own): mv_experiment_suspect answers MV_EXP_NOW there.
 */
#ifndef MV_EXPERIMENT_H
#define MV_EXPERIMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dispatch.h"
#include "isolate.h"
#include "leak.h"
#include "log.h"
#include "results.h"
#include "tasks.h"
#include "worker.h"

#define MV_EXP_SITE_MAX  192 /* "file.py:123", cut */
#define MV_EXP_SITES_MAX 512 /* sites linked to kinds; more are not remembered */
#define MV_EXP_SAVED_MAX 4   /* kinds whose tasks are saved for their isolations at once */

/* The figures a kind was suspected on: the detector's (bytes and fds kept per task, the
 * confidence, the rule), or none (all 0, rule NONE: queued on other evidence). */
typedef struct mv_exp_figures {
    double per_task, fds, confidence;
    mv_leak_rule_t rule;
} mv_exp_figures_t;

/* What an experiment decided about a kind. */
typedef struct mv_exp_verdict {
    const char *kind;
    mv_iso_verdict_t verdict; /* LEAK: confirmed; PLATEAU, CLEAN: cleared; INCONCLUSIVE */
    mv_iso_mode_t mode;       /* isolation or bisection */
    double per_task, confidence;
    int tasks;         /* measured tasks of the deciding arm */
    int rounds;        /* bisection rounds */
    bool heap;         /* the arm's figures were live heap bytes (else the kernel's) */
    bool suspected;    /* a suspect asked for it (else a bisection found it) */
    bool suspect_heap; /* ...and that suspect was made of heap bytes */
    /* ...and the figures of its latest suspicion, which an inconclusive verdict leaves
     * standing (none for a kind queued on a worker's growth or a demoted suspect's snapshot) */
    mv_exp_figures_t suspicion;
    const char *why; /* static */
    mv_worker_t *w;  /* the deciding arm's worker while it lives (a snapshot of it), or NULL */
    /* The deciding arm's worker, said even after it left (w NULL): slot, generation and pid
     * (slot 0 / pid 0: the arm never had a worker), the last snapshot taken of it (or NULL). */
    int slot;
    uint32_t gen;
    int pid;
    const char *snapshot;
    uint64_t task; /* the deciding arm's last task, 0 = none */
} mv_exp_verdict_t;

typedef struct mv_experiment_events {
    /* A fresh worker is wanted in `slot`: its worker is recycled (or, when it has not run a
     * task yet and holds none, given to mv_experiment_attach as it is; one busy with a task
     * it took before is recycled too: pool.c on_fresh). For an isolation in place
     * (mv_experiment_in_place), the slot's worker is attached as it is. */
    void (*on_fresh)(void *arg, int slot);
    void (*on_verdict)(void *arg, const mv_exp_verdict_t *v);
    /* Call mv_experiment_settle_due in `ms` ([leak] settle: an isolation's worker idles). */
    void (*settle)(void *arg, uint64_t ms);
    /* The idle is over, however it ended (its verdict went up): `w` may take tasks again
     * (NULL: it left). */
    void (*settled)(void *arg, mv_worker_t *w);
} mv_experiment_events_t;

/* What mv_experiment_suspect makes of a suspect. */
typedef enum {
    MV_EXP_NOW,     /* no experiment: the suspect stands on its own evidence */
    MV_EXP_QUEUED,  /* an isolation will confirm or clear it (said by on_verdict) */
    MV_EXP_KNOWN,   /* an isolation confirmed it already */
    MV_EXP_CLEARED, /* an isolation cleared it already (not tried again yet) */
} mv_exp_answer_t;

typedef struct mv_exp_kind {
    char name[MV_LEAK_KIND_MAX + 1];
    int state; /* mv_exp_answer_t: QUEUED while waiting or running, KNOWN, CLEARED */
    int tries;
    uint64_t cleared_at;        /* tasks ended when it was cleared */
    bool heap;                  /* the suspect's figures were heap bytes... */
    mv_exp_figures_t suspicion; /* ...and were these, its latest (mv_exp_verdict_t) */
    uint64_t line_ok;           /* its tasks whose line gives this kind ([leak] kind)... */
    uint64_t line_bad;          /* ...and those whose line gives another (the worker names it) */
    uint64_t judged;            /* its tasks past their worker's warm-up (the detector's) */
    bool held;                  /* its suspect's snapshot is being taken: its evidence may demote
                                 * the suspect, so the isolation waits for it (snapshot_timeout) */
    uint64_t held_at;           /* tasks ended when it was held (kinds queued after it wait) */
    bool saved;            /* waits for its isolation: its first queued tasks are kept for it */
    int in_place_slot;     /* >0: its next isolation binds this slot's worker as it is... */
    uint32_t in_place_gen; /* ...this generation of it (dropped when that one exits) */
    bool in_place_tried;   /* it had (or has) its isolation in place, or is aimed for one */
    bool first_in_place;   /* its aim is a first try (mv_experiment_suspect): it only confirms */
    bool kernel;           /* its next isolation judges on kernel figures: it was queued for a
                            * worker's growth outside its heap figures (mv_experiment_grows) */
    int seen;              /* its tasks met so far in the current look through the queue */
    /* The worker that grew with it when it was suspected, while it lives (grew_slot 0: none,
     * or gone), and the tasks it had run then: an isolation on a fresh worker that clears
     * the kind hands over to one in place on that worker when it was the older. */
    int grew_slot;
    uint32_t grew_gen;
    int64_t grew_tasks;
    uint64_t queued; /* when it was queued last (x->queued then): isolations go in that order;
                      * 0: to run in place, it goes first (queue) */
} mv_exp_kind_t;

typedef struct mv_experiment {
    mv_log_t *log;
    const mv_config_t *cfg;
    mv_tasks_t *tasks; /* its `ended` is the experiment's clock */
    const mv_experiment_events_t *ev;
    void *arg;
    bool enabled; /* confirm = isolate, batch mode, detection on */
    int slots;
    mv_iso_t iso;
    struct mv_exp_arm {
        int slot;       /* 0: none */
        mv_worker_t *w; /* its fresh worker, once attached */
        uint64_t last;  /* its last task */
        bool heap;      /* its figures were heap bytes */
        bool said;      /* its verdict was logged */
        /* Its own answers are its worker's from this one on (mv_worker_t.tasks_done when
         * it is counted; 0: all): those of the tasks it had when it bound (in place) were
         * sent before the arm's filter and its one task at a time, and with prefetch they
         * share readings. They are not observed. */
        int64_t own_from;
        uint64_t first_ms; /* when its first own answer came (mv_now_ms; 0: none yet) */
        /* Its worker, kept for the verdict after it left (w NULL): its generation, its pid
         * (0: none yet), and the last snapshot taken of it (owned; NULL: none). */
        uint32_t gen;
        int pid;
        char *snapshot;
        /* Its worker, let go alive when the arm was decided while the other ran on (it
         * takes other work then): the verdict still names it, and snapshots it while it
         * lives (NULL once it is gone: then as above). left_slot: its slot. */
        mv_worker_t *left;
        int left_slot;
    } arm[MV_ISO_ARMS];
    bool suspected; /* the running isolation was asked by a suspect */
    /* The running experiment judges its arms on the kernel's figures: it looks for growth
     * the heap figures do not count (mv_experiment_grows, off_heap). */
    bool kernel;
    int in_place;          /* >0: the running isolation's arm is this slot's worker as it is, not a
                            * fresh one (a kind cleared on a fresh worker, suspected again) */
    uint32_t in_place_gen; /* that worker's generation: no other binds */
    bool first_in_place;   /* and it is the kind's first try, which only confirms (conclude) */
    int spare_slot;        /* the suspect's worker: its snapshot is under way (0: none) */
    bool behind_held;      /* a kind waits for one queued before it to be let go (start_next) */
    mv_exp_kind_t *kinds;
    size_t nkinds, capkinds;
    uint32_t saved[MV_EXP_SAVED_MAX]; /* the saved kinds (positions in kinds) */
    int nsaved;
    uint32_t *index;       /* KIND_INDEX_CAP slots: a kind's position in kinds + 1, 0 = free */
    uint64_t bisect_after; /* no experiment for unexplained growth before this many tasks ended */
    uint64_t experiments;  /* started so far */
    uint64_t queued;       /* kinds queued so far */
    struct mv_exp_site {
        char site[MV_EXP_SITE_MAX];
        char kind[MV_LEAK_KIND_MAX + 1]; /* "" = more than one kind grows there */
    } * sites;
    size_t nsites, capsites;
    mv_dispatch_filter_t filter;
    /* An isolation that found a leak, its worker idling ([leak] settle) before the verdict
     * goes up: whether it idles, the verdict (its kind in settled_kind: the next experiment
     * may not reuse the isolation's), and what the run kept. */
    bool settling;
    mv_iso_result_t settled;
    char settled_kind[MV_LEAK_KIND_MAX + 1];
    double settled_kept;
} mv_experiment_t;

void mv_experiment_init(mv_experiment_t *x, mv_log_t *log, const mv_config_t *cfg,
                        mv_tasks_t *tasks, bool service, const mv_experiment_events_t *ev,
                        void *arg);
void mv_experiment_free(mv_experiment_t *x);

/* A memory suspect, the detector's verdict v (its kind; heap: made of heap bytes; its
 * figures, which an inconclusive experiment's verdict gives back): see mv_exp_answer_t. A
 * kind newly queued is held until mv_experiment_hold(x, kind, false): its suspect's snapshot
 * may demote it (mv_experiment_demote) before an isolation is spent on it. Kinds queued after
 * it wait meanwhile, for four windows of tasks at most.
 * `w`: the worker it was seen on, whose snapshot is being taken (NULL: none): the fresh
 * worker goes elsewhere when there is another slot. `in_place`: that worker is the one that
 * grew, and the kind may be tried on it as it is: first, on heap figures, when the kind is
 * suspected late and that worker is older than a fresh one gets (a try that can only
 * confirm); or after a fresh worker cleared it. */
mv_exp_answer_t mv_experiment_suspect(mv_experiment_t *x, const mv_leak_verdict_t *v,
                                      const mv_worker_t *w, bool in_place);
/* Whether `kind` is suspected and waits for, or is under, its experiment (no verdict yet). */
bool mv_experiment_queued(mv_experiment_t *x, const char *kind);
/* A worker (not an arm's) grows with no kind suspected: bisect the kinds it ran. off_heap:
 * its heap figures do not grow, its kernel figures do (memory no malloc-family call and no
 * mmap of its own made: a thread's stack, a raw system call), so the experiment's arms are
 * judged on the kernel's figures. */
void mv_experiment_grows(mv_experiment_t *x, const mv_worker_t *w, const char *const *kinds, int n,
                         bool off_heap);
/* Whether the arm wanted now takes its slot's worker as it is (on_fresh attaches it, busy
 * or not, instead of recycling it): an isolation in place. */
bool mv_experiment_in_place(const mv_experiment_t *x);
/* Whether the worker is an arm's (its growth is the experiment's to judge). */
bool mv_experiment_is_arm(const mv_experiment_t *x, const mv_worker_t *w);
/* Whether the answer w just gave (counted in its tasks_done) is one it owed when an arm bound
 * it in place: a task sent before, not the arm's (own_from); with prefetch such answers came
 * together, and share readings. */
bool mv_experiment_owes(const mv_experiment_t *x, const mv_worker_t *w);
/* Whether some kind explains a worker's growth: known to leak, or suspected (queued, under
 * experiment). */
bool mv_experiment_explains(const mv_experiment_t *x);
/* Whether a worker's growth would start an experiment now (mv_experiment_grows): enabled,
 * nothing running, nothing explaining it, and not within the pause after an experiment that
 * could not pin growth on a kind. */
bool mv_experiment_takes_growth(const mv_experiment_t *x);
/* Whether that holds for good (a kind is known to leak): no worker's growth can start an
 * experiment any more, so judging it is wasted. */
bool mv_experiment_settled(const mv_experiment_t *x);

/* A worker in a slot an arm waits for: a new one (before its process starts), the fresh
 * worker it waits for; or, in place, the one that grew, as it is (pool.c: on_fresh). */
void mv_experiment_attach(mv_experiment_t *x, mv_worker_t *w);
/* A task of w ended: growth `inc` (measured false: none) of `kind`; `kernel`: the kernel's
 * figure of it (what an experiment on kernel figures takes). */
void mv_experiment_observe(mv_experiment_t *x, mv_worker_t *w, const mv_task_t *t, const char *kind,
                           double inc, bool measured, bool heap, double kernel);
/* [leak] settle is over (events.settle): the isolation's verdict goes up, a plateau when its
 * idle worker gave back half its run's growth or more. */
void mv_experiment_settle_due(mv_experiment_t *x);
/* The worker of an isolation idling for [leak] settle, or NULL. */
mv_worker_t *mv_experiment_settling(const mv_experiment_t *x);
/* The worker is gone; `snapshot`: the last snapshot taken of it (NULL: none), said with a
 * verdict its arm decides (its slot, generation and pid are kept for that too). */
void mv_experiment_gone(mv_experiment_t *x, mv_worker_t *w, const char *snapshot);

/* The isolation of a queued `kind` waits for (held) or may go on after (not) its suspect's
 * snapshot. */
void mv_experiment_hold(mv_experiment_t *x, const char *kind, bool held);
/* Allocation sites from a snapshot of a worker that ran `kind` alone: that kind's. */
void mv_experiment_link_sites(mv_experiment_t *x, const char *kind, const char *const *sites,
                              int n);
/* The kind a site is linked to; NULL when none (or more than one). */
const char *mv_experiment_site_owner(const mv_experiment_t *x, const char *site);
/* A suspect's snapshot grows most at `site`, linked to `other`: the suspect is demoted (its
 * isolation dropped when it has not started; said once) and `other` examined. */
void mv_experiment_demote(mv_experiment_t *x, const char *kind, const char *other,
                          const char *site);

/* The dispatch predicate (dispatch.h) over this experiment. */
const mv_dispatch_filter_t *mv_experiment_filter(mv_experiment_t *x);
/* The pool's worker count is n now (scaled): experiments plan their arms for it, and one
 * under way with its arms in two slots runs them one after the other once n is 1. */
void mv_experiment_slots(mv_experiment_t *x, int n);
/* Whether an experiment under way has an arm in `slot` (the pool retires it last). */
bool mv_experiment_uses(const mv_experiment_t *x, int slot);
/* `slot` is retired (a scale down): an arm waiting for a fresh worker there, which will never
 * come, ends with what it has (as when its worker is gone). */
void mv_experiment_slot_retired(mv_experiment_t *x, int slot);

#endif
