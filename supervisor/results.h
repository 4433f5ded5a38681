/*
 * results: the JSON Lines results file, one object per task, written through jansson.
 *
 * The loop only copies each result into a flat record (a memcpy); a libuv thread-pool job
 * encodes a batch of records with jansson and writes it, so neither JSON encoding nor the
 * disk ever runs on the loop. A job starts at 64 KiB of records, every 100 ms, and on close;
 * one job at a time, so lines keep their order. A results file that is a pipe, FIFO or socket
 * (a program reading results as they come, e.g. memvisor.Pool) is written at the end of the
 * loop iteration a result arrived in, and again as soon as the job in flight is done: at most
 * one iteration of latency, batched as much as the writer is behind. The file is fsync'd once at
 * close. When workers answer faster than a job encodes, the records waiting are bounded (1 MiB):
 * the dispatcher stops handing out tasks until the job catches up.
 *
 * Payloads are arbitrary bytes: valid UTF-8 goes out as "result"/"error", anything else as
 * "result_base64"/"error_base64", so every byte survives.
 */
#ifndef MV_RESULTS_H
#define MV_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "tasks.h"
#include "util.h"

typedef enum { MV_ST_OK, MV_ST_FAILED, MV_ST_QUARANTINED, MV_ST_COUNT } mv_status_t;

/* Everything one result line says. */
typedef struct mv_result {
    uint64_t task;
    mv_status_t status;
    int attempts;
    int slot; /* 0 = never ran */
    int pid;
    bool measured; /* the memory fields below are valid */
    int64_t mem_before, mem_after, mem_peak, retained;
    const char *peak_source; /* "kernel" or "sampled" */
    int fds_before, fds_after;
    double duration_ms;
    const void *payload; /* result (ok) or error (failed/quarantined) */
    size_t len;
    const mv_attempt_t *hist;
    int nhist;
    const char *kind; /* NULL = no kind */
} mv_result_t;

typedef void (*mv_results_cb)(void *arg);

typedef struct mv_results {
    uv_loop_t *loop;
    const char *path;
    int fd;           /* -1 = no results file: lines are counted, not written */
    mv_buf_t pending; /* records not yet handed to a job (loop only) */
    mv_buf_t batch;   /* records the job in flight encodes (job only) */
    mv_buf_t lines;   /* the job's encoded lines (job only) */
    uv_work_t work;
    bool working;  /* a job is in flight */
    bool final;    /* the job in flight is the last one: it also fsyncs */
    bool stream;   /* the file is a pipe, FIFO or socket: someone reads each line live */
    int job_error; /* set by the job, read once it is done */
    uv_timer_t timer;
    bool timer_open;
    bool closing;
    int error; /* first write error, negative errno */
    uint64_t count[MV_ST_COUNT];
    mv_results_cb on_closed;  /* everything written and the file closed */
    mv_results_cb on_drained; /* the backlog fell below its bound: dispatch may resume */
    mv_results_cb on_error;   /* a write failed (once) */
    void *arg;
} mv_results_t;

/* Opens (truncates) the results file; path NULL or "" = none. 0 or -errno. */
int mv_results_open(mv_results_t *r, uv_loop_t *loop, const char *path, mv_results_cb on_error,
                    void *arg);
/* Queues one result line (counted at once, written soon). 0 or -ENOMEM. */
int mv_results_add(mv_results_t *r, const mv_result_t *res);
/* Encodes `res` as one JSON line into out (no newline). 0 or -ENOMEM. Exposed for tests. */
int mv_results_encode(const mv_result_t *res, mv_buf_t *out);
/* Whether so many results wait for the writer that no more tasks should be started: this
 * bounds memory when workers answer faster than jansson encodes (on_drained says when to
 * resume). */
bool mv_results_backlogged(const mv_results_t *r);
/* Writes what is left, closes the file and its timer, then calls on_closed. */
void mv_results_close(mv_results_t *r, mv_results_cb on_closed);
void mv_results_free(mv_results_t *r);

const char *mv_status_name(mv_status_t s);

#endif
