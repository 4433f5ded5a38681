/*
 * worker: one worker process and everything it has of its own: its cgroup, its process, its
 * channel, its deadline timer, its tasks in flight and its memory readings. The only caller
 * of the lifecycle table (fsm.h) and the only writer of a worker's state.
 *
 * Commands come down as plain calls (start, send a task, hand over, drain, fault, freeze,
 * kill, read memory, ask for a snapshot, close); what happens comes back up through one const
 * mv_worker_events_t (ready, an answer, a service request, a snapshot reply, a cgroup event,
 * gone with a verdict, closed). It knows nothing of slots, queues or results: the pool above
 * decides, the worker carries out.
 *
 * Readiness: an api worker is ready at its HELLO; a lines worker when one of its threads
 * blocks reading its stdin, a none worker when it sits in a wait (waitprobe.h), so that its
 * start-up is not charged to its first task. What it holds then is its start-up memory.
 *
 * Per-task accounting (README "Per-task figures"): the task at the head of the in-flight list
 * is the one being worked on (workers answer in order). Its window opens when the worker is
 * ready for it and does not have it yet (a reading: mem_before; a kernel peak reset) and
 * closes when its answer has arrived (a reading: mem_after and the window's peak). A reading
 * is reused only when it was taken after the moment it stands for: the "after" of a task is
 * never a reading taken before its answer arrived, the "before" never one taken before the
 * worker was idle. In lock-step the "after" of one task is the "before" of the next (the
 * worker is idle in between). With prefetch > 1 a worker may begin the next task before its
 * answer to this one is seen: each window runs from the previous answer seen to this one.
 *
 * Lines workers in lock-step: an answer is held until the worker is back reading its stdin
 * with its task consumed; a second line for the same task, or a line before it read its
 * task, is a protocol error (the task runs again), never an answer to the wrong task.
 *
 * Ownership: the pool allocates nothing of a worker; mv_worker_new does, and the worker is
 * freed by the owner after on_closed (mv_worker_free).
 */
#ifndef MV_WORKER_H
#define MV_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cgahead.h"
#include "cgroup.h"
#include "channel.h"
#include "config.h"
#include "fsm.h"
#include "gather.h"
#include "heapmon.h"
#include "job.h"
#include "listen.h"
#include "log.h"
#include "meter.h"
#include "policy.h"
#include "proc.h"
#include "startgate.h"
#include "tasks.h"
#include "timeline.h"
#include "waitprobe.h"

typedef struct mv_worker mv_worker_t;

/* What an api worker that never said HELLO is told (exit event, no_hello). */
#define MV_NO_HELLO_HINT                                                                        \
    "it never said HELLO, so it does not speak the api protocol: a worker that reads tasks "    \
    "from stdin and writes one result line per task to stdout needs [worker] protocol = lines " \
    "(-o worker.protocol=lines)"

/* What every worker of a pool starts from; copied into each worker at its creation (a
 * reload changes what later workers get, never a running one). */
typedef struct mv_worker_opts {
    uv_loop_t *loop;
    mv_log_t *log;
    const mv_config_t *cfg;    /* the configuration it runs under (kept for its life) */
    char *const *argv;         /* the command (kept for its life) */
    char *const *env;          /* memvisor's environment minus its private variables */
    const char *self_exe;      /* this binary, for the exec shim */
    const mv_listen_t *listen; /* sockets every worker gets, or NULL */
    const mv_cg_t *cg;         /* per-worker cgroups; NULL or version OFF: /proc only */
    bool service;              /* no task source: workers make their requests */
    mv_timeline_t *timeline;   /* its fresh readings, its spawn and its exit; NULL: none */
    const mv_forker_t *forker; /* the warm template to fork it from; NULL: exec'd */
    const mv_heapplan_t *heap; /* [leak] heap: the preload plan (NULL: no preload) */
    const char *pythonpath;    /* "PYTHONPATH=..." in place of the environment's, or NULL */
    mv_startgate_t *gate;      /* [supervisor] max_starting (startgate.h); NULL: no cap */
    bool start_last;           /* a spare: its turn at the gate comes after every other's */
} mv_worker_opts_t;

/* A task's answer, with what the worker measured around it. */
typedef struct mv_answer {
    mv_task_t *task;
    bool ok;
    const uint8_t *kind; /* named by the worker, or NULL */
    size_t kind_len;
    const void *payload; /* the result (ok) or the error */
    size_t len;
    const mv_reading_t *before; /* at the start of its window; NULL: not measured */
    const mv_reading_t *after;  /* at its answer; NULL: not measured */
    int64_t peak;               /* mem_peak (docs/run-files.md), with after */
    const char *peak_source;    /* "kernel", "process" or "sampled" */
    double duration_ms;
    const mv_heap_task_t *heap; /* its heap figures (heapmon.h); NULL: none */
    /* Its window had no reading of its own: answers that came together (prefetch) share
     * one, the first shows their growth and the others none. False when the worker sent its
     * own heap figures with the answer (they are its own, task by task). */
    bool shared;
} mv_answer_t;

/* A worker is gone: why, and the tasks it had. */
typedef struct mv_gone {
    mv_exit_verdict_t verdict;
    mv_task_t **tasks; /* in flight, oldest first: the oldest is the one it worked on */
    unsigned ntasks;
    bool clean_stop; /* it exited 0 after STOP: it did not start the oldest one */
    int status;      /* exit status, or -signal; 0 when it never started */
    int64_t peak;    /* its cgroup's peak (or last usage): how far the last task got */
    /* Never started: which call failed and why; hopeless = it never will. */
    const char *spawn_call;
    const char *spawn_error;
    bool hopeless;
} mv_gone_t;

typedef struct mv_worker_events {
    void (*on_started)(mv_worker_t *w); /* its process runs */
    void (*on_ready)(mv_worker_t *w);
    void (*on_answer)(mv_worker_t *w, const mv_answer_t *a);
    /* Service mode: a request began (t is the worker's new task, NULL when it could not be
     * recorded) / ended (a->task). */
    void (*on_begin)(mv_worker_t *w, mv_task_t *t);
    void (*on_end)(mv_worker_t *w, const mv_answer_t *a);
    void (*on_snapshot)(mv_worker_t *w, const uint8_t *payload, size_t len);
    /* Its cgroup said something (soft limit crossed, OOM): worth a look now. */
    void (*on_notify)(mv_worker_t *w);
    /* Its ready (MV_DL_READY) or task (MV_DL_TASK) deadline passed: the owner decides. */
    void (*on_deadline)(mv_worker_t *w, mv_deadline_t what);
    /* It broke the protocol (said once): the owner decides (it is not trusted any more). */
    void (*on_error)(mv_worker_t *w, const char *what);
    /* It exited, or could never start; tasks are the owner's from here on. */
    void (*on_gone)(mv_worker_t *w, const mv_gone_t *g);
    /* Every handle is closed (after mv_worker_close): mv_worker_free may follow. */
    void (*on_closed)(mv_worker_t *w);
    /* Optional: it was just sent the last task its max_tasks allows (mv_policy_last_task),
     * in the dispatcher's pass: its slot's next worker may start (succ.h). */
    void (*on_last_task)(mv_worker_t *w);
} mv_worker_events_t;

/* Its memory, as last read. */
typedef struct mv_wmem {
    mv_meter_t meter;
    bool meter_ok;
    mv_reading_t last;
    bool have;
    uint64_t taken_ns;  /* when `last` was taken (uv_hrtime) */
    uint64_t seq;       /* readings taken so far: `last` is number seq */
    uint64_t reset_seq; /* the reading the kernel peak was last reset after */
    uint64_t hwm_seq;   /* the reading hwm was read with (answers that share it share it) */
    int64_t hwm;        /* the process's high-water mark then */
    int64_t peak;       /* highest usage seen over its life */
    uint64_t placed_ms; /* when its cgroup was last seen to hold it (mv_now_ms) */
} mv_wmem_t;

/* The window of the task being worked on (the head of the in-flight list). */
typedef struct mv_window {
    bool measured; /* `before` holds a reading */
    mv_reading_t before;
    uint64_t before_seq; /* which reading `before` is (mv_wmem_t.seq); 0: not one of them */
    int64_t peak_seen;   /* the highest usage sampled during it */
    bool hwm_reset;      /* the process's high-water mark was reset at its start */
    uint64_t started_ns;
} mv_window_t;

/* A lines answer held until the worker is back on its stdin (lock-step). */
typedef struct mv_held {
    bool held;
    bool ok;
    mv_buf_t payload;
    uint64_t at_ns;  /* when it arrived */
    long long count; /* answers held over its life (exit event: held)... */
    long long looks; /* ...looks at them (held_looks)... */
    long long slow;  /* ...of which at a millisecond or more old (held_slow) */
} mv_held_t;

struct mv_worker {
    /* identity, fixed at creation */
    int slot; /* 1-based */
    uint32_t gen;
    mv_wlimits_t lim;
    mv_worker_opts_t o;
    const mv_worker_events_t *ev;
    void *data; /* the owner's */

    /* lifecycle */
    mv_wstate_t state;
    mv_reason_t reason; /* why it was asked to leave; MV_R_NONE while it serves */
    uint64_t created_ms, spawned_ms, ready_ms;
    bool ready; /* it finished starting once */
    /* Attached to a dispatcher, which flushes its channel at the end of each pass: its GO
     * then waits there for its first task, and both go in one write (mv_dispatch_attach). */
    bool flush_at_dispatch;
    /* A successor (succ.h): its api HELLO gets no GO until mv_worker_adopt (a spare's is held
     * by its slot 0). */
    bool hold_go;
    int64_t startup;       /* its memory then (the soft limit's figure), -1 = unknown */
    bool ready_serving;    /* a none worker first seen serving, not waiting (policy.h) */
    int64_t startup_ms;    /* from its spawn to then (a spare's own, not its slot's) */
    bool first_unmeasured; /* readiness could not be seen: its first task has no figures */
    uint64_t idle_ns;      /* since when it has had nothing to do (uv_hrtime) */
    int64_t tasks_done;
    uv_timer_t timer; /* the state's deadline */
    mv_deadline_t armed;
    bool warned_timeout;    /* observe-only: task_timeout reported once */
    bool untracked;         /* service: the open request could not be recorded */
    const char *spawn_call; /* it could not be started: the call that failed... */
    char spawn_why[256];    /* ...and why */
    bool hopeless;          /* the command can never start */
    bool spawn_retry;       /* ...and that was not its failure (the template went away) */
    unsigned open;          /* handles and parts not yet closed */
    bool closing;

    mv_proc_t proc;
    mv_chan_t chan;
    mv_cgw_t cg;
    bool has_cg;
    mv_job_t *cg_job; /* its cgroup being made, or NULL */
    /* Its slot's cgroups made ahead: its own is offered back there when it is gone. */
    mv_cgahead_t *ahead;
    mv_gate_entry_t gate; /* its place at the start gate (startgate.h) */
    uv_poll_t notify;     /* the cgroup's notification fd (soft limit, OOM) */
    bool notify_open;

    mv_task_t **inflight; /* oldest first from head; the oldest is being worked on */
    unsigned head, count, cap;
    bool one_at_a_time; /* measured for a verdict: one task in flight whatever the prefetch */
    mv_window_t win;
    mv_wmem_t mem;
    /* lines and none: what it waits for (readiness; lines answers in lock-step) */
    mv_waitprobe_t probe;
    bool probe_ok;   /* its system calls can be looked at */
    uv_timer_t look; /* the next look */
    uv_poll_t fine;  /* ...or on `fine_fd`, a timerfd (microseconds: a held answer's looks) */
    int fine_fd;     /* -1 until its first held answer */
    unsigned looks;
    mv_held_t held;
    mv_reading_t end_reading; /* service: the reading at the latest END, the next "before" */
    bool have_end;
    mv_heapwin_t heap;  /* heap figures per task window (heap preload, or api v2 reports) */
    mv_gather_t gather; /* prefetch: when its answers are read in batches */
};

/* Variables of memvisor's environment a worker gets its own values of, or none. */
bool mv_worker_env_private(const char *entry);

/* The text of the variables mv_worker_env adds. */
typedef struct mv_worker_env {
    char fd[32], slot[32], fds[32], names[MV_LISTEN_MAX * MV_LISTEN_NAME + 16];
    char heap_fd[40], preload[PATH_MAX + 32];
    int heap_at; /* the child's fd number of the heap page, -1: none (set it) */
} mv_worker_env_t;
/* The environment of slot's worker (the warm template's: slot 0): the pool's, plus
 * its PYTHONPATH in place of the pool's when o->pythonpath (a build tree's worker module, pool.c),
 * MEMVISOR_SLOT, MEMVISOR_FD (api), PYTHONUNBUFFERED=1 (lines, unless set), the heap
 * preload's (heap_at >= 0) and, with listen sockets, LISTEN_FDS and LISTEN_FDNAMES
 * (LISTEN_PID: the exec shim, or the forked child). Free the array (not its strings); NULL on
 * ENOMEM. */
char **mv_worker_env(const mv_worker_opts_t *o, int slot, mv_worker_env_t *x);

/* A new worker for `slot` (not started). NULL on ENOMEM. */
mv_worker_t *mv_worker_new(const mv_worker_opts_t *o, int slot, uint32_t gen,
                           const mv_wlimits_t *lim, const mv_worker_events_t *ev, void *data);
/* Makes its cgroup (in the thread pool), then starts its process, once its turn at the start
 * gate comes when one is set and full (startgate.h: it waits PREPARING, its cgroup made). What
 * happens is reported by on_ready or on_gone (which may come before this returns, when it
 * cannot start). */
void mv_worker_start(mv_worker_t *w);

/* mv_worker_start with the cgroup made ahead for its slot and generation (cgahead.h): its
 * process starts at once when that cgroup is made, or when its job ends; without one it
 * makes its own. */
void mv_worker_start_ahead(mv_worker_t *w, mv_cgahead_t *ahead);
/* A spare (a worker made for slot 0: its api HELLO gets no GO, its MEMVISOR_SLOT is 0) or a
 * successor (hold_go) takes `slot` as generation `gen`: it gets its limits, its owner's events
 * and the run's timeline, and an api worker its GO (carrying the slot): a spare's now, a
 * successor's queued for the owner's dispatcher to write with the first task
 * (mv_dispatch_attach). A ready one is not reported
 * ready (the owner treats it as ready); a successor still starting reports on_started and
 * on_ready to its new owner when they come. */
void mv_worker_adopt(mv_worker_t *w, int slot, uint32_t gen, const mv_wlimits_t *lim,
                     const mv_worker_events_t *ev, void *data, mv_timeline_t *timeline);

/* Sends a task (queued: mv_worker_flush sends what a pass queued). */
void mv_worker_send_task(mv_worker_t *w, mv_task_t *t);
void mv_worker_flush(mv_worker_t *w);

/* Leaving. The first reason given stays (a shutdown outranks a fault); each is a no-op in a
 * state it does not apply to (fsm.h). */
void mv_worker_drain(mv_worker_t *w, mv_reason_t reason);    /* finish the task in hand */
void mv_worker_handover(mv_worker_t *w, mv_reason_t reason); /* serve until REPLACED */
void mv_worker_replaced(mv_worker_t *w);                     /* its replacement is ready */
void mv_worker_fault(mv_worker_t *w, mv_reason_t reason);    /* SIGTERM, then SIGKILL */
void mv_worker_freeze(mv_worker_t *w, mv_reason_t reason);   /* SIGSTOP until killed */
void mv_worker_kill(mv_worker_t *w, mv_reason_t reason);     /* SIGKILL now */
/* Lowers its cgroup's hard limit to `bytes` while it drains (mv_cg_cap): 0, -ENODEV without
 * a cgroup, -EBUSY when its usage is already within a MiB of it, or -errno. */
int mv_worker_cap(mv_worker_t *w, int64_t bytes);

/* A reading of its memory: fresh, or the one taken earlier in this loop pass. NULL when it
 * cannot be read (never could, or gone before any reading). */
const mv_reading_t *mv_worker_read(mv_worker_t *w, bool fresh);
/* Whether the kernel holds it to its hard limit: in its cgroup, and the cgroup not lost
 * (cgroup_lost: then its limits are checked on samples). */
bool mv_worker_kernel_limits(const mv_worker_t *w);
/* On samples, at most once a second: a worker someone moved out of its cgroup (the cgroup
 * left in place, so its figures would stop growing) is said (event=cgroup_lost) and read from
 * /proc from then on, its limits checked on samples. */
void mv_worker_check_placement(mv_worker_t *w);
/* Whether the tasks sent from now on are measured for a verdict: an api worker (v2) collects
 * its garbage before it answers (Python: gc.collect()), and every worker gets one task at a
 * time whatever the prefetch (tasks answered together share one reading: the first shows
 * their growth and the others none, a staircase that no per-task trend can read). */
void mv_worker_measure_exactly(mv_worker_t *w, bool on);
/* Asks an api worker for its own heap view (on_snapshot answers). 0 or -ENOTCONN. */
int mv_worker_ask_snapshot(mv_worker_t *w);
/* Sends a signal to its process while it is its own (SIGSTOP for a snapshot...). */
void mv_worker_signal(mv_worker_t *w, int sig);

/* Whether it may be sent one more task now (mv_policy_takes_tasks). */
bool mv_worker_takes_tasks(const mv_worker_t *w);
/* The task being worked on, or NULL. */
mv_task_t *mv_worker_current(const mv_worker_t *w);
/* Whether a recycle, fault, freeze or kill was decided for it. */
static inline bool mv_worker_leaving(const mv_worker_t *w)
{
    return w->reason != MV_R_NONE;
}

/* Closes every handle (once gone; or at once, dropping it); on_closed follows. */
void mv_worker_close(mv_worker_t *w);
void mv_worker_free(mv_worker_t *w);

#endif
