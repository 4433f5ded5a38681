/*
 * results: the JSON Lines results file, one object per task, written through jansson.
 *
 * The loop only copies each result into a flat record (a memcpy); a libuv thread-pool job
 * encodes a batch of records with jansson and writes it, so neither JSON encoding nor the
 * disk ever runs on the loop. A job starts at 64 KiB of records, every 100 ms, and on close;
 * one job at a time, so lines keep their order. A results file that is a pipe, FIFO or socket
 * (a program reading results as they come, e.g. memvisor.Pool) is written at the end of the
 * loop iteration a result arrived in, and again as soon as the job in flight is done: at most
 * one iteration of latency, batched as much as the writer is behind. When workers answer
 * faster than a job encodes, the records waiting are bounded (1 MiB): the dispatcher stops
 * handing out tasks until the job catches up.
 *
 * Results are sacred (docs/results.md):
 *  - Opening only checks and claims: a regular results file is locked (flock) for the run,
 *    and a second memvisor on it is refused, naming the holder. A non-empty file is refused
 *    unless the run resumes it; nothing is ever truncated. The file is written to only by the
 *    first job, which runs once the loop runs, after every check that can refuse the run.
 *  - Resume: the file is read back (resume.h); ids with a line are skipped by the task
 *    source, a torn last line is cut away by the first job, and new lines are appended.
 *  - Only whole lines stay in the file: a write that fails part-way is cut back (ftruncate)
 *    to the last complete line. ENOSPC, EDQUOT or EIO stall the writer: dispatch stops, the
 *    results of running tasks wait in memory, and the write is retried every 500 ms for
 *    [tasks] results_retry; then the run gives up (on_error: exit 3).
 *  - fdatasync at most once a second and at close. A crash of memvisor costs the results not
 *    yet written (at most 100 ms of them, or 64 KiB) and the tasks in flight; a crash of the
 *    host, the lines of the last second too. Either way those tasks have no line, so
 *    --resume runs them again: they are re-run, never lost.
 *
 * Payloads are arbitrary bytes: valid UTF-8 goes out as "result"/"error", anything else as
 * "result_base64"/"error_base64", so every byte survives.
 */
#ifndef MV_RESULTS_H
#define MV_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "heapmon.h"
#include "log.h"
#include "resume.h"
#include "tasks.h"
#include "util.h"

typedef enum { MV_ST_OK, MV_ST_FAILED, MV_ST_QUARANTINED, MV_ST_COUNT } mv_status_t;

/* Everything one result line says. */
typedef struct mv_result {
    uint64_t task;
    mv_status_t status;
    int attempts;
    int slot;     /* 0 = never ran */
    uint32_t gen; /* the worker's generation; 0 = never ran */
    int pid;
    bool measured; /* the memory fields below are valid */
    int64_t mem_before, mem_after, mem_peak, retained;
    const char *peak_source; /* "kernel", "process" or "sampled" */
    int fds_before, fds_after;
    mv_heap_task_t heap; /* heap figures: heap.measured says whether there are any */
    bool shared_reading; /* its figures are of a reading it shared (mv_answer_t.shared) */
    double duration_ms;
    int64_t started_us, ended_us; /* wall clock, Unix µs (docs/run-files.md); 0 = null */
    const void *payload;          /* result (ok) or error (failed/quarantined) */
    size_t len;
    const mv_attempt_t *hist;
    int nhist;
    const char *kind;     /* NULL = no kind */
    int64_t mem_limit;    /* the hard limit it last ran under; 0 = none, or it never ran */
    unsigned escalations; /* runs that ended in a memory escalation */
} mv_result_t;

typedef void (*mv_results_cb)(void *arg);
/* `lines` results of this run are whole in the file (synced, with sync_each); `closed`: the
 * file is closed and no more will be. */
typedef void (*mv_results_written_cb)(void *arg, uint64_t lines, bool closed);

typedef struct mv_results_opts {
    const char *path;       /* NULL or "" = no results file: lines are counted, not written */
    bool resume;            /* continue the batch the file holds: skip its ids, append */
    int64_t retry_ms;       /* how long a failing write is retried; 0 = give up at once */
    mv_tasks_t *tasks;      /* resume: the source told which ids to skip (may be NULL) */
    mv_log_t *log;          /* resume, stall and recovery events (may be NULL) */
    mv_results_cb on_error; /* the writer gave up (once) */
    void *arg;
} mv_results_opts_t;

typedef struct mv_results {
    uv_loop_t *loop;
    const char *path;
    mv_log_t *log;
    int fd;           /* -1 = no results file */
    bool regular;     /* a regular file: locked, cut back to whole lines on errors */
    bool created;     /* this run made the file: removed again if no job ever ran */
    mv_idset_t done;  /* resume: ids the file has a line for */
    mv_buf_t pending; /* records not yet handed to a job (loop only) */
    mv_buf_t batch;   /* records the job in flight encodes (job only) */
    mv_buf_t lines;   /* the job's encoded lines (job only) */
    json_t *enc;      /* the job's result object, kept from line to line (job only) */
    uv_work_t work;
    bool working;  /* a job is in flight */
    bool final;    /* the job in flight is the last one: it also syncs */
    bool stream;   /* the file is a pipe, FIFO or socket: someone reads each line live */
    int job_error; /* set by the job, read once it is done */
    bool job_fatal;
    /* Owned by the job while one runs, by the loop otherwise. */
    uint64_t size;      /* bytes of whole lines in the file: where the next line goes */
    uint64_t torn;      /* resume: bytes of a torn last line, cut by the first job */
    bool started;       /* a job ran: the run is committed to the file */
    bool encoded;       /* `lines` holds a slice of `batch` not all in the file yet */
    size_t batch_off;   /* bytes of `batch` encoded into lines so far */
    size_t lines_kept;  /* bytes of `lines` in the file as whole lines */
    size_t lines_off;   /* bytes of `lines` written */
    uint64_t job_lines; /* lines the job made whole in the file */
    uint64_t synced_ms; /* last fdatasync */
    /* Retrying a failed write (loop). */
    int64_t retry_ms;
    bool stalled;         /* a write failed and is being retried: dispatch waits */
    uint64_t stall_since; /* ms */
    uv_timer_t retry;
    bool retry_open;
    uv_timer_t timer; /* the 100 ms flush, started by the first result */
    bool timer_open;
    bool closing;
    int error;                   /* the writer gave up: negative errno */
    uint64_t count[MV_ST_COUNT]; /* results of the batch, resumed lines included */
    uint64_t resumed;            /* lines the file held when the run resumed it */
    uint64_t added;              /* results of this run */
    uint64_t written;            /* lines this run wrote */
    mv_results_cb on_closed;     /* everything written and the file closed */
    mv_results_cb on_drained;    /* the backlog fell below its bound: dispatch may resume */
    mv_results_cb on_error;      /* the writer gave up (once) */
    void *arg;
    /* Set after open by a task source that acknowledges tasks once their line is durable
     * (a Redis source without a results stream): every job then syncs, and says so. */
    bool sync_each;
    mv_results_written_cb on_written;
    void *written_arg;
} mv_results_t;

/* Checks and claims the results file, writing nothing: locks a regular file (-EBUSY when
 * another run holds it), refuses a non-empty one without resume (-EEXIST), and with resume
 * reads it back (-EINVAL at a line that is not a result) and tells o->tasks what to skip.
 * 0 or -errno, with the reason (file, holder, option to use) in `why`. */
int mv_results_open(mv_results_t *r, uv_loop_t *loop, const mv_results_opts_t *o, char *why,
                    size_t n);
/* The same verdicts as mv_results_open without claiming anything, for the command line's
 * early checks (they pick the exit code): 0, -EBUSY, -EEXIST, -EINVAL (resume of a file
 * that is not a regular file) or another -errno; reason in `why`. */
int mv_results_check(const char *path, bool resume, char *why, size_t n);
/* Queues one result line (counted at once, written soon). 0 or -ENOMEM. */
int mv_results_add(mv_results_t *r, const mv_result_t *res);
/* Encodes `res` as one JSON line into out (no newline). 0 or -ENOMEM. Exposed for tests. */
int mv_results_encode(const mv_result_t *res, mv_buf_t *out);
/* The same, plus "host" and "consumer" when not NULL (a results stream's entry); attempts
 * with no host of their own were made on `host`. */
int mv_results_encode_at(const mv_result_t *res, const char *host, const char *consumer,
                         mv_buf_t *out);
/* The same text, through an object kept in *keep between calls (NULL at first; the caller
 * json_decrefs it at the end): its values are overwritten in place while the keys stay the
 * same, which spares a malloc per key and value. keep NULL: a new object each time. */
int mv_results_encode_into(json_t **keep, const mv_result_t *res, const char *host,
                           const char *consumer, mv_buf_t *out);
/* Whether no more tasks should be started: results wait for the writer (the backlog bounds
 * memory when workers answer faster than jansson encodes), or a failed write is being
 * retried. on_drained says when to resume. */
bool mv_results_backlogged(const mv_results_t *r);
/* Writes what is left, syncs, closes the file and its timers, then calls on_closed. */
void mv_results_close(mv_results_t *r, mv_results_cb on_closed);
void mv_results_free(mv_results_t *r);

const char *mv_status_name(mv_status_t s);

#endif
