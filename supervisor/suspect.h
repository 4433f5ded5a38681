/*
 * suspect: each worker's recent tasks, the leak verdicts the detector (leak.h, pure) gives on
 * them, and the snapshots those verdicts and the limits trigger (DESIGN §7). The kernel
 * reads run in the thread pool (snapshot.h, job.h); this module ties them to workers.
 *
 * A snapshot is written for the first suspect of a kind and when its estimate changes
 * materially (the detector's `report`), when a worker nears its hard limit (90%: the kernel
 * would kill it without warning), and before memvisor kills one for its hard limit (the pool
 * freezes the worker while it is read and kills it when on_kill_ready says so). For a leak
 * suspect an `api` worker is first asked for its own heap view; its answer (or [leak]
 * snapshot_timeout) lets the snapshot go ahead.
 */
#ifndef MV_SUSPECT_H
#define MV_SUSPECT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "experiment.h"
#include "job.h"
#include "kindpool.h"
#include "leak.h"
#include "log.h"
#include "results.h"
#include "rundir.h"
#include "tasks.h"
#include "worker.h"

struct mv_snapjob;

/* One finished task, as a worker's history keeps it for snapshots. */
typedef struct mv_taskrec {
    uint64_t id;
    const char *kind; /* a reference to the module's copy (kindpool.h); "" for none */
    int64_t mem_after, retained, mem_peak;
    int fds_after;
} mv_taskrec_t;

/* What suspect keeps of one worker (embedded in the pool's record of it). */
typedef struct mv_suspected {
    mv_worker_t *w;
    mv_taskrec_t *history; /* ring of the last [leak] history tasks */
    unsigned hist_cap, hist_head, hist_n;
    char *baseline;           /* resident memory per mapping after its first task (packed) */
    mv_job_t *basejob;        /* the baseline being read, or NULL */
    struct mv_snapjob *snap;  /* its snapshot in progress, or NULL */
    char *last_snapshot;      /* path of its latest snapshot (kernel_oom events name it) */
    bool near_hard_done;      /* one near-hard-limit snapshot per worker */
    bool kill_snapshot_done;  /* the snapshot before a hard-limit kill is written */
    bool kill_snapshot_next;  /* ...is due once the snapshot in progress is written */
    bool stop_after_snapshot; /* the pool stops it once the snapshot in progress is written */
    bool heap_seen;           /* a task of it had heap figures: tasks without have no figure */
    /* Its growth per task over its last [leak] window tasks, and their kinds: a worker that
     * grows while no kind is suspected asks for a bisection (experiment.h). */
    double *grow;
    /* ...and the growth its heap figures do not count: the kernel's figure of each task
     * less its heap figure (0 for a worker without heap figures) */
    double *grow_off;
    const char **grow_kind; /* references to the module's copies (kindpool.h) */
    unsigned grow_head, grow_n, grow_cap, grow_since;
    bool grow_pending; /* the previous judgement said it grows: a bisection needs two */
    bool off_pending;  /* the same, of its growth outside its heap figures */
    /* Answers that shared one reading (prefetch), kept until the next reading shows where
     * they end: the detector gets their growth spread over them (suspect.c). */
    struct {
        const char **kind; /* each task's kind, the detector's copy */
        int32_t *fds;      /* each task's fd delta (INT32_MIN: unknown) */
        unsigned n, cap;
        int64_t growth; /* the first task's figure: the growth of all of them */
        int64_t off;    /* and its growth outside the heap figures (suspect.c: off_heap) */
        uint64_t age;   /* the first task's worker age */
        bool heap, known;
    } group;
} mv_suspected_t;

/* Leak suspects reported for one kind (confirmed ones), and what the latest one said. */
typedef struct mv_suspect_count {
    char kind[MV_LEAK_KIND_MAX + 1];
    uint64_t n;
    int64_t per_task;     /* bytes kept per task (0: a handle leak) */
    double fds_per_task;  /* fds kept per task */
    const char *evidence; /* what it stood on, as the event says it (a static string) */
} mv_suspect_count_t;

typedef struct mv_suspect_events {
    /* The snapshot taken before a hard-limit kill is written: the worker may be killed. */
    void (*on_kill_ready)(void *arg, mv_suspected_t *sw);
    /* The worker in `slot` if it is still generation `gen` and not leaving, else NULL: the
     * one a leak verdict was seen on, when its task is not the one that completed it. */
    mv_suspected_t *(*find)(void *arg, int slot, uint32_t gen);
    /* The snapshot in progress is written, and stop_after_snapshot was set. */
    void (*on_snapshot_done)(void *arg, mv_suspected_t *sw);
} mv_suspect_events_t;

typedef struct mv_suspect {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_config_t *cfg;
    mv_leak_t *leak;  /* NULL when [leak] detect is off */
    mv_rundir_t *run; /* where snapshots go; run->dir NULL: nowhere */
    const mv_suspect_events_t *ev;
    void *arg;
    mv_experiment_t *exp;        /* leak experiments ([leak] confirm), or NULL */
    uint64_t suspects;           /* leak_suspect events that say confirmed */
    mv_suspect_count_t *by_kind; /* ...per kind (metrics), at most MV_LEAK_KINDS_MAX */
    size_t nkinds, capkinds;
    mv_kindpool_t kinds; /* the kinds the workers' rings refer to */
} mv_suspect_t;

void mv_suspect_init(mv_suspect_t *s, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                     mv_leak_t *leak, mv_rundir_t *run, const mv_suspect_events_t *ev, void *arg);
void mv_suspect_attach(mv_suspect_t *s, mv_suspected_t *sw, mv_worker_t *w);
/* A task of w ended with these figures: its history, the detector, maybe a snapshot. */
void mv_suspect_observe(mv_suspect_t *s, mv_suspected_t *sw, const mv_task_t *t,
                        const mv_result_t *res);
/* Whether w's answers that share a reading are kept as a group and their growth spread over
 * them (prefetch > 1, and the answers an experiment's worker owed when bound in place), or
 * each is its own (an experiment's worker's tasks, one at a time). */
bool mv_suspect_in_groups(const mv_suspect_t *s, const mv_suspected_t *sw);
/* An experiment's verdict on a kind (sw: the deciding arm's worker, NULL when gone). */
void mv_suspect_verdict(mv_suspect_t *s, mv_suspected_t *sw, const mv_exp_verdict_t *v);
/* A reading of w: one snapshot when it comes near its hard limit. */
void mv_suspect_near_limit(mv_suspect_t *s, mv_suspected_t *sw, const mv_reading_t *r);
/* A hard-limit kill is decided: whether a snapshot is started first (then freeze the worker
 * and kill it at on_kill_ready). */
bool mv_suspect_before_kill(mv_suspect_t *s, mv_suspected_t *sw);
/* The path of its latest snapshot: the one being written (the kernel may kill the worker
 * before a busy thread pool writes it), else the last one written; NULL when none. */
const char *mv_suspect_last_snapshot(const mv_suspected_t *sw);
/* The worker's reply to a SNAPSHOT request. */
void mv_suspect_reply(mv_suspect_t *s, mv_suspected_t *sw, const uint8_t *p, size_t n);
/* The worker is gone: its pending snapshot goes ahead without it, its history is freed. */
void mv_suspect_release(mv_suspect_t *s, mv_suspected_t *sw);
/* Frees the module's own memory (after the loop). */
void mv_suspect_free(mv_suspect_t *s);

#endif
