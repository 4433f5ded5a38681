/*
 * report: `memvisor report PATH`, a summary for a person of what a run left on disk
 * (docs/run-files.md): the run, leak suspects with their evidence, recycles, per-kind memory
 * distributions and suggested limits, as text or (--html) as a page. Read-only; the pure pieces
 * (percentiles, the limit advice) are exported so they can be tested with plain numbers.
 */
#ifndef MV_REPORT_H
#define MV_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* Values of one figure (capacity: the next power of two from 8), sorted before use. */
typedef struct mv_report_vec {
    int64_t *v;
    size_t n;
} mv_report_vec_t;

/* What became of a kind's suspicion (mv_report_kind_t.status), weakest first. */
enum { MV_REPORT_NONE, MV_REPORT_CLEARED, MV_REPORT_SUSPECTED, MV_REPORT_CONFIRMED };

/* A task kind: its distributions from the results, its leak events folded. */
typedef struct mv_report_kind {
    char *name;
    int64_t tasks, unmeasured; /* only tasks with memory figures fill the vectors */
    mv_report_vec_t peak, retained, dur_us;
    mv_report_vec_t heap;             /* heap_retained of the tasks that have it */
    int64_t events;                   /* confirmed leak_suspect events of this kind */
    int status;                       /* MV_REPORT_* below: what became of its suspicion */
    char *evidence;                   /* what confirmed it ("heap,isolation"...), or NULL */
    char *note;                       /* suspected or cleared: why, as the events say */
    double per_task, fds, confidence; /* the largest seen */
    unsigned rules;                   /* bit i: trend, task_growth, fd_trend, another rule */
    json_t *workers;                  /* "slot/pid" -> true */
    char *snapshot;                   /* the latest snapshot path */
} mv_report_kind_t;

/* Everything one report read; what it prints is computed from this alone. Only report.c
 * touches it: it is here, like every module's state, so the module reads top-down. */
typedef struct mv_report {
    char *why; /* the error message buffer (nwhy bytes) */
    size_t nwhy;
    char *dir;     /* the run directory; NULL for a results file alone */
    char *results; /* the results file; NULL when none */
    char *stream;  /* a results pipe or FIFO the run wrote, with no copy to read; or NULL */
    char *missing; /* the run's results file, gone since (moved or removed); or NULL */
    json_t *run;   /* run.json, checked */
    bool running, results_b64;
    bool died;        /* no end in run.json and no one holds the run's lock: memvisor died */
    int64_t until_us; /* results ended after this are a later run's (--resume); 0: no bound */
    long later;       /* result lines skipped as a later run's */
    long event_lines, result_lines;
    bool events_tail, results_tail;   /* an incomplete last line of a running run was skipped */
    int64_t rotations;                /* events_rotated lines read ([log] events_max) */
    bool events_cut;                  /* events older than events.1.jsonl were rotated away */
    json_t *recycles, *would, *exits; /* reason -> count: recycle, would_recycle, exit events */
    json_t *left; /* reason -> workers that left but at shutdown (exits): the summary's recycles */
    int64_t ooms, requeues, quarantines, st[3], transient_max;
    mv_report_kind_t all;    /* every task */
    mv_report_kind_t *kinds; /* ranked once loaded: the nsus suspects first, by bytes per task */
    size_t nkinds, nsus;
    json_t *kind_index; /* name -> index in kinds, while loading (then kinds are ranked) */
    mv_report_vec_t after, fresh;            /* every mem_after; each worker's first mem_before */
    mv_report_vec_t startup_mem, startup_us; /* each worker's start-up (exit events) */
    int64_t worker_peak;                     /* the largest `peak` of an exit event */
    json_t *fresh_seen;                      /* "slot/pid" -> true */
    /* Set before loading, may be NULL: sees every result line once it is checked (report_html
     * takes its times from there). 0, or -errno with why filled: the load fails. */
    int (*on_result)(void *arg, const char *file, long line, json_t *o);
    void *arg;
} mv_report_t;

/* Nearest-rank percentile of sorted[0..n): the value at rank ceil(pct/100 * n), 1-based;
 * pct 0 gives the minimum, pct above 100 counts as 100. 0 when n == 0. */
int64_t mv_percentile(const int64_t *sorted, size_t n, unsigned pct);

/* What the limit suggestions are computed from (bytes; values are clamped to 0..64 PiB). */
typedef struct mv_advice_in {
    int64_t peak_max;      /* the largest mem_peak of one task */
    int64_t transient_max; /* the largest mem_peak - mem_before of one task */
    int64_t after_p95;     /* p95 of mem_after */
    int64_t fresh_p50;     /* p50 of each worker's first mem_before; -1 = unknown */
    int64_t leak;          /* the largest suspect's bytes retained per task; 0 = none */
    int64_t worker_peak;   /* the largest peak of a worker over its life (exit events: its
                            * start-up included, which no task's peak sees); 0 = unknown */
} mv_advice_in_t;

/* The suggestions, and which rule produced each (the report prints the reasoning). */
typedef struct mv_advice {
    int64_t hard;       /* memory_hard: the larger of peak_max and worker_peak x 1.25, rounded
                         * up to a MiB (>= 1 MiB) */
    int64_t soft;       /* memory_soft: hard - transient rounded down to a MiB, >= floor */
    int64_t floor;      /* after_p95 x 1.1 rounded up to a MiB */
    int64_t max_tasks;  /* 0 = off (no leak); -1 = no suggestion (baseline unknown) */
    bool floored;       /* soft was raised to the floor, and hard to floor + transient */
    bool baseline_over; /* the fresh baseline is at or above soft: max_tasks is 1 */
    bool worker_over;   /* a worker's own peak was above every task's: hard is built on it */
} mv_advice_t;

/* Computes the suggested [limits] from the figures in `in`. Pure. */
void mv_advise(const mv_advice_in_t *in, mv_advice_t *out);

/* Writes the report of PATH to `out`. PATH is a run directory (holds run.json), a state
 * directory (its `latest` run), or a results file (then only what the results allow).
 * 0, or -errno with `why` (n bytes) naming the file and line at fault; nothing is written to
 * `out` on error. */
int mv_report(const char *path, FILE *out, char *why, size_t n);

/* Writes the report of PATH as one self-contained HTML page to html (NAME.new, then renamed):
 * memory over time per worker slot, throughput, per-kind distributions, leak suspects with
 * their evidence, the limit advice. 0, or -errno with `why` filled; no page on error. */
int mv_report_html(const char *path, const char *html, char *why, size_t n);

/* `memvisor report [--html FILE] PATH`: argv as main's. Returns the exit code: 0, 2 usage, 3
 * unreadable. */
int mv_report_main(int argc, char **argv);

#endif
