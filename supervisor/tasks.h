/*
 * tasks: the task source, the queue of tasks waiting for a worker, and each task's attempt
 * record.
 *
 * A source is one of two implementations of mv_tasks_source_t: the file/stdin reader here
 * (one task per line) and the Redis stream reader (rtasks.h: many memvisors on one batch).
 * Dispatch sees only the queue (pop, requeue, end); the source fills it, may take a requeued
 * task back (Redis: re-added to the stream with its attempts) and hears of every final
 * result (Redis: acknowledged once the result is written).
 *
 * The source is streamed with bounded read-ahead, so a file of millions of lines costs
 * only the queued part in memory. Task id = 1-based line number; empty lines are skipped
 * (ids stay line numbers). A line longer than [tasks] max_size becomes a task that already
 * carries its error, so it still ends in the results exactly once.
 *
 * A task that was sent ahead and not started (prefetch, a STOP, a shutdown) goes back to the
 * front of the queue, where it was taken from. A task that lost an attempt (its worker died
 * on it, was killed for its limits or its timeout) goes behind the tasks already queued
 * (mv_tasks_retry), as a Redis source re-adds it at its stream's end: a task that keeps
 * hanging or crashing its worker takes a worker again only after the fresh work queued
 * before it, instead of holding every worker for max_attempts x task_timeout.
 *
 * Resume (`--resume`): ids in `skip` (those with a final line in the results file already)
 * are read and counted, never queued; the others keep their line numbers as ids.
 */
#ifndef MV_TASKS_H
#define MV_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "leak.h"
#include "meter.h"
#include "reason.h"
#include "resume.h"
#include "util.h"

/* One attempt that did not end the task (the worker died, hung, misbehaved). */
typedef struct mv_attempt {
    mv_reason_t reason;
    int slot;
    int pid;
    int status;    /* exit status, or -signal */
    int64_t peak;  /* the worker's peak memory during the attempt, -1 = unknown */
    int64_t limit; /* the hard limit it ran under, 0 = none or unknown */
    char host[64]; /* where it ran when that was another memvisor (Redis source); "" = here */
} mv_attempt_t;

typedef struct mv_task {
    struct mv_task *next; /* queue link */
    uint64_t id;          /* line number */
    uint32_t len;         /* payload bytes; data[len] == '\0' */
    uint16_t attempts;    /* times it was handed to a worker that started it */
    uint16_t nhist;       /* entries in hist */
    uint16_t escalations; /* attempts that ended in a memory escalation (escalate.h) */
    uint16_t esc_lost;    /* its escalation workers in a row that failed before taking it */
    mv_attempt_t *hist;   /* why earlier attempts ended */
    const char *bad;      /* why the line could not become a task (static, or the source's) */
    bool quarantine;      /* with `bad`: it used up its attempts elsewhere (quarantined, not
                           * failed) */
    void *ref;            /* the source's handle of it (Redis: its stream entry); NULL = none */
    /* The hard limit it must run under, 0 = the pool's own: set by an escalation, and all a
     * task source that moves tasks between hosts needs to carry to route it (escalate.h). */
    int64_t limit;
    int64_t sent_us; /* wall clock (Unix µs) its latest attempt was sent to a worker (a
                      * service request: its BEGIN arrived); 0 = never */
    uint32_t gen;    /* the generation of the worker it was last sent to */
    char data[];
} mv_task_t;

typedef void (*mv_tasks_cb)(void *arg);

typedef struct mv_tasks mv_tasks_t;
struct mv_result;

/* What a source does; NULL members do nothing (requeue: the task is queued again here). */
typedef struct mv_tasks_source {
    const char *kind; /* "file", "redis" */
    /* Reads more when fewer than read_ahead tasks are queued; never blocks. */
    void (*pump)(mv_tasks_t *t);
    /* A task goes back (it lost an attempt, or was sent ahead and not started): true when
     * the source took it (it freed the task); false to queue it here again, at the front. */
    bool (*requeue)(mv_tasks_t *t, mv_task_t *task);
    /* A task reached its final status; `res` is its result (the task is freed after). */
    void (*end)(mv_tasks_t *t, mv_task_t *task, const struct mv_result *res);
    /* Stops reading; what the source holds it lets go of, from the loop. */
    void (*close)(mv_tasks_t *t);
    /* After the loop ended. */
    void (*free)(mv_tasks_t *t);
    /* A task needs a higher hard limit (task->limit) than this host gives: true when the
     * source took it to hand to a host that can (Redis: the routed streams; it frees the
     * task), false when it cannot (the task is then quarantined here). */
    bool (*route)(mv_tasks_t *t, mv_task_t *task);
    /* A task's hard limit was raised here (task->limit, task->escalations): a source whose
     * tasks another host may take over keeps what it needs to go on at that limit (Redis:
     * the escalated hash). */
    void (*escalated)(mv_tasks_t *t, mv_task_t *task);
} mv_tasks_source_t;

struct mv_tasks {
    uv_loop_t *loop;
    mv_task_t *head, *tail; /* waiting for a worker */
    size_t queued;
    size_t read_ahead; /* stop reading the source at this many queued tasks... */
    size_t room;       /* ...plus this many, held back by a dispatch filter */
    /* Tasks the workers ready now can hold (each its prefetch), set by dispatch; -1 before
     * it is: a shared source (Redis) reads no more, so that tasks wait where any host can
     * take them, not here for a worker still starting. */
    int64_t ready_slots;
    int64_t max_size; /* longest line */

    /* source */
    enum { MV_SRC_NONE, MV_SRC_FILE, MV_SRC_STREAM, MV_SRC_REDIS } kind;
    const mv_tasks_source_t *src; /* NULL: none */
    void *src_data;               /* the source's own state (Redis: mv_rtasks_t) */
    bool paused;                  /* the source holds dispatch back (Redis: disconnected) */
    const char *name;             /* for messages: the path, "stdin", or the stream's URL */
    /* the file/stdin source */
    int fd;
    bool own_fd;
    uv_fs_t req; /* MV_SRC_FILE: one read at a time */
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } stream; /* MV_SRC_STREAM */
    bool stream_open;
    char *chunk;     /* MV_SRC_FILE read buffer */
    bool seekable;   /* MV_SRC_FILE on a regular file: what a read did not queue is read again */
    bool reading;    /* a read is in progress (file) or started (stream) */
    bool eof;        /* the source has no more tasks (Redis: the stream is empty) */
    bool closed;     /* mv_tasks_close was called: read nothing more */
    int error;       /* first read error, negative errno */
    mv_buf_t line;   /* partial line carried between chunks */
    bool skipping;   /* inside a line that was too long */
    uint64_t lineno; /* lines seen so far */
    uint64_t offset; /* MV_SRC_FILE: bytes of the file fed so far (its position: the next read) */

    /* counts */
    uint64_t loaded; /* tasks made from the source */
    uint64_t ended;  /* tasks that reached a final status */
    uint64_t requeued;
    uint64_t returned; /* requeued tasks the source took back (Redis: to the stream) */
    uint64_t skipped;  /* lines whose id is in `skip` */

    /* Tasks in the source (its non-empty lines, resumed ones included): -1 until known, at
     * the source's end or counted ahead by mv_tasks_count. */
    int64_t total;
    struct mv_count_job *counting; /* mv_tasks_count in flight, or NULL */

    const mv_idset_t *skip; /* ids that ended in an earlier run (resume); NULL = none */
    mv_tasks_cb on_input;   /* new tasks queued, EOF reached, or a read error */
    void *arg;
};

/* Sets up an empty queue. `path` NULL or "" = no source, "-" = stdin. 0 or -errno (the
 * file cannot be opened). A redis:// source is opened by mv_rtasks_open instead. */
int mv_tasks_open(mv_tasks_t *t, uv_loop_t *loop, const char *path, int64_t max_size,
                  size_t read_ahead, mv_tasks_cb on_input, void *arg);
/* An empty queue with no source yet: what every source's open starts with. */
void mv_tasks_init(mv_tasks_t *t, uv_loop_t *loop, int64_t max_size, size_t read_ahead,
                   mv_tasks_cb on_input, void *arg);
/* A task the source made joins the queue (at the back) and counts as loaded. */
void mv_tasks_add(mv_tasks_t *t, mv_task_t *task);
/* Lets the queue hold `room` tasks more than its read-ahead: tasks a dispatch filter keeps
 * queued for later (experiment.h), which would otherwise stop the reading (the next
 * mv_tasks_pump reads on). */
void mv_tasks_set_room(mv_tasks_t *t, size_t room);
/* Starts or resumes reading when the queue is below its read-ahead. */
void mv_tasks_pump(mv_tasks_t *t);
/* Takes the next task (NULL when none is queued, or the source holds dispatch back). */
mv_task_t *mv_tasks_pop(mv_tasks_t *t);
/* Takes the next task even while paused (a source handing its queue back). */
mv_task_t *mv_tasks_take(mv_tasks_t *t);
/* Takes the first queued task `ok` accepts (NULL when none does, or the source holds
 * dispatch back); the others keep their order. The queue is bounded by the read-ahead: a few
 * hundred tasks at most. */
mv_task_t *mv_tasks_take_if(mv_tasks_t *t, bool (*ok)(void *arg, const mv_task_t *task), void *arg);
/* The same, without taking it. */
const mv_task_t *mv_tasks_find(const mv_tasks_t *t, bool (*ok)(void *arg, const mv_task_t *task),
                               void *arg);
/* Whether no more tasks will come from the source (requeued ones aside). */
static inline bool mv_tasks_source_done(const mv_tasks_t *t)
{
    return t->eof || t->error || t->kind == MV_SRC_NONE || t->closed;
}
/* Puts a task back: to the source when it takes it, else at the front. */
void mv_tasks_requeue(mv_tasks_t *t, mv_task_t *task);
/* Puts back a task that lost an attempt: to the source when it takes it, else behind the
 * tasks queued now. */
void mv_tasks_retry(mv_tasks_t *t, mv_task_t *task);
/* Adds a task made in memory (tests, service mode); id is the caller's. */
mv_task_t *mv_task_new(uint64_t id, const void *data, size_t len);
/* A task's attempt record as a JSON array (the results' attempt_errors, a Redis entry's
 * hist); `here` (may be NULL) names the host of attempts that have none. */
json_t *mv_attempts_json(const mv_attempt_t *h, int n, const char *here);
/* Appends an attempt to a task's record. 0 or -ENOMEM. */
int mv_task_note_attempt(mv_task_t *task, mv_reason_t reason, int slot, int pid, int status,
                         int64_t peak);
/* Hands a task that needs more memory than this host gives to the source (its `route`):
 * true when the source took it (counted as returned), false when it has nowhere to send it. */
bool mv_tasks_route(mv_tasks_t *t, mv_task_t *task);
/* Tells the source a task's hard limit was raised here (an escalation). */
void mv_tasks_escalated(mv_tasks_t *t, mv_task_t *task);
/* A task reached its final status (`res`: its result, which the source may forward): count
 * it and free it. */
void mv_tasks_end(mv_tasks_t *t, mv_task_t *task, const struct mv_result *res);
void mv_task_free(mv_task_t *task);
/* Whether every task of the source has ended (source exhausted, queue empty, none out). */
bool mv_tasks_all_ended(const mv_tasks_t *t);
/* Tasks loaded but not ended (queued + in flight), less those the source took back. */
static inline uint64_t mv_tasks_outstanding(const mv_tasks_t *t)
{
    return t->loaded - t->ended - t->returned;
}
/* The tasks the source still holds past what was read (a stop before the end): nonempty
 * lines, resume's skipped ones left out, the line being read counted once. Reads the rest of
 * a file source with plain blocking reads: only for the summary, after the loop has ended.
 * -1 when it cannot be known (stdin, a read error). */
int64_t mv_tasks_count_rest(const mv_tasks_t *t);
/* Counts the tasks of a file source in the thread pool, ahead of the reader, so that `total`
 * is known long before the reader gets to the end (progress, status). Nothing for a stream
 * (its total is known at its end) or no source. 0 or -errno (the total then waits for the
 * end). */
int mv_tasks_count(mv_tasks_t *t);
/* Non-empty lines in p[0..n) as mv_tasks_feed sees them: *in_line says a line is open at
 * the end of a chunk (0 at the start; a last line without its newline is one more). */
uint64_t mv_tasks_count_lines(const char *p, size_t n, bool *in_line);
/* Stops reading and closes the source (a read in flight finishes and is dropped). */
void mv_tasks_close(mv_tasks_t *t);
/* Frees every queued task (after the loop ended). */
void mv_tasks_free(mv_tasks_t *t);

/* A task's kind, for leak attribution and the results: the worker's name for it (`named`,
 * when it gave one), else what [leak] kind makes of its line (kind.h); at most
 * MV_LEAK_KIND_MAX bytes, bytes that are not printable ASCII replaced by '?'. NULL: no kind. */
const char *mv_task_kind(const mv_config_t *cfg, const mv_task_t *t, const uint8_t *named,
                         size_t named_len, char out[MV_LEAK_KIND_MAX + 1]);

/* The line splitter, exposed for tests: feeds bytes, queues tasks. eof = flush a last
 * unterminated line. */
void mv_tasks_feed(mv_tasks_t *t, const char *p, size_t n, bool eof);

#endif
