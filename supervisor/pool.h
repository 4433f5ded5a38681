/*
 * pool: the worker slots. Spawns workers, carries out the lifecycle table (fsm.h), hands
 * out tasks, reads memory, asks the policy, recycles with surge and a concurrency cap,
 * respawns with backoff, and settles the tasks of workers that die.
 *
 * Process mechanics live in spawn.c, message framing and I/O in channel.c; both work on
 * mv_worker_t and report back through the mv__ functions at the end of this header
 * (shared-private, as libuv's uv__).
 */
#ifndef MV_POOL_H
#define MV_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include <memvisor/protocol.h>

#include "cgroup.h"
#include "config.h"
#include "fsm.h"
#include "leak.h"
#include "log.h"
#include "meter.h"
#include "policy.h"
#include "results.h"
#include "rundir.h"
#include "tasks.h"
#include "timeline.h"
#include "util.h"

struct mv_pool;
struct mv_snapjob;
struct mv_basejob;

/* One finished task, as a worker's history keeps it for snapshots. */
typedef struct mv_taskrec {
    uint64_t id;
    char kind[MV_LEAK_KIND_MAX + 1];
    int64_t mem_after, retained, mem_peak;
    int fds_after;
} mv_taskrec_t;

typedef struct mv_worker {
    struct mv_pool *pool;
    struct mv_worker *next; /* the pool's list of workers whose handles are open */
    int slot;               /* 1-based */
    uint32_t gen;           /* generation within the slot */
    mv_wstate_t state;
    int pid;
    uint64_t spawned_ms;
    mv_wlimits_t lim;

    /* handles (spawn.c); the worker is freed once all of them are closed */
    uv_process_t proc;
    uv_pipe_t chan;   /* api: our end of the socketpair; lines: the worker's stdout */
    uv_pipe_t in;     /* lines: the worker's stdin */
    uv_pipe_t out;    /* output for the log: stdout+stderr (api, none), stderr (lines) */
    uv_timer_t timer; /* the current state's deadline */
    int deadline;     /* what the timer is armed for: MV_DL_* */
    unsigned open_handles;
    bool chan_open, in_open, out_open;

    /* channel (channel.c) */
    mv_buf_t rbuf;    /* received, not yet decoded */
    mv_buf_t wbuf;    /* to send */
    mv_buf_t wflight; /* being sent by uv_write */
    uv_write_t wreq;
    bool writing;
    mv_buf_t outline; /* partial output line */
    bool hello;       /* api: HELLO seen */
    bool stop_sent;   /* api: STOP sent */
    bool chan_eof;    /* the worker closed its end of the channel */
    bool broken;      /* it broke the protocol: nothing more it says counts */

    /* tasks in flight, oldest first; the oldest is the one being worked on */
    mv_task_t **inflight;
    unsigned head, count, cap;
    int64_t tasks_done;

    /* cgroup (cgroup.h): made by a thread-pool job while PREPARING */
    mv_cgw_t cg;
    bool has_cg;
    mv_cg_t cg_conf; /* the run's cgroup settings at its spawn, for the job (a reload may
                        change the run's limits meanwhile); shares the run's strings */
    uv_work_t cg_job;
    int cg_result;
    char cg_why[256];
    uv_poll_t notify; /* the cgroup's notification fd (soft limit, OOM) */
    bool notify_open;
    bool near_soft; /* usage is above the soft limit, the metric not yet: recheck */

    /* memory */
    mv_meter_t meter;
    bool meter_ok;
    mv_reading_t last; /* latest reading */
    bool have_reading;
    uint64_t last_tick;       /* pool tick of `last` */
    uint64_t peak_reset_tick; /* last_tick + 1 when the kernel peak was last reset */
    int64_t peak;             /* highest usage seen over its life */

    /* leak suspects and snapshots (suspect.c) */
    mv_taskrec_t *history; /* ring of the last [leak] history tasks */
    unsigned hist_head, hist_n;
    json_t *baseline; /* resident memory per mapping after its first task */
    struct mv_basejob *basejob;
    struct mv_snapjob *snap; /* its snapshot in progress, or NULL */
    unsigned snap_asked;     /* SNAPSHOT requests sent and not answered yet */
    char *last_snapshot;     /* path of its latest snapshot (kernel_oom events name it) */
    bool near_hard_done;     /* one near-hard-limit snapshot per worker */
    bool kill_snapshot_done; /* the snapshot before a hard-limit kill is taken */
    unsigned would;          /* observe-only: reasons already logged as would_recycle */

    /* leaving */
    mv_reason_t reason;       /* why it is being stopped; MV_R_NONE while it serves */
    mv_reason_t wanted;       /* a recycle waiting for a free recycle slot */
    bool replaced;            /* its slot already has a replacement */
    bool recycling;           /* counts against [recycle] max_concurrent */
    bool drain_pending;       /* service: drains once its replacement is ready */
    bool untracked;           /* service: the open request could not be recorded (no memory) */
    mv_reading_t end_reading; /* service: the reading at the latest END, the next "before" */
    bool have_end;
    bool exited; /* its exit was reported: never signal its pid again */
    int64_t exit_status;
    int term_signal;
} mv_worker_t;

/* What a worker's timer is armed for. */
enum { MV_DL_NONE, MV_DL_READY, MV_DL_TASK, MV_DL_KILL, MV_DL_CHANNEL };

typedef struct mv_slot {
    struct mv_pool *pool;
    uint32_t gen;
    int crashes;         /* consecutive crashes */
    mv_worker_t *active; /* the worker serving this slot (not a retiring one) */
    uv_timer_t backoff;
    bool backoff_open, backoff_armed;
    bool fatal;   /* its worker asked not to be respawned */
    int64_t peak; /* highest usage of any of its workers */
} mv_slot_t;

typedef struct mv_pool_stats {
    uint64_t spawned;
    uint64_t recycles[MV_R_COUNT];
    uint64_t requeued;
    uint64_t protocol_errors;
    uint64_t suspects; /* leak_suspect events */
} mv_pool_stats_t;

typedef void (*mv_pool_cb)(struct mv_pool *p);

typedef struct mv_pool {
    uv_loop_t *loop;
    const mv_config_t *cfg;
    mv_log_t *log;
    mv_tasks_t *tasks;
    mv_results_t *results;
    mv_leak_t *leak;                /* NULL when [leak] detect is off */
    mv_rundir_t *run;               /* where snapshots go; run->dir NULL: nowhere */
    char **argv;                    /* the worker command */
    char **env;                     /* environment template for workers */
    const char *self_exe;           /* this binary, for the exec shim */
    const mv_cg_t *cg;              /* cgroups (version MV_CG_OFF: /proc sampling only) */
    const struct mv_listen *listen; /* sockets every worker gets (NULL: none) */
    struct mv_timeline *timeline;   /* memory timeline (timeline.h); NULL: none */
    bool service;                   /* no task source: workers make their own (BEGIN/END) */

    mv_slot_t *slots;
    int nslots;
    mv_worker_t *workers; /* every worker with open handles */
    int recycling;
    bool accepting;          /* tasks may be handed out */
    bool stopping;           /* no respawns; every worker is being stopped */
    bool fatal;              /* the run ends: fatal exit, crash limit, spawn impossible */
    int consecutive_crashes; /* pool-wide, reset by any answered task */
    uint64_t tick;           /* dispatch passes, to reuse readings taken in the same pass */
    uint64_t rng;

    uv_check_t dispatcher;
    bool dispatch_pending;
    uv_timer_t sampler;
    uv_timer_t recheck; /* fast re-reads of workers whose usage is near the soft limit */
    bool rechecking;
    uv_timer_t grace;
    uv_timer_t spacer;        /* [recycle] spacing: the next planned recycle may start then */
    uint64_t last_recycle_ms; /* start of the latest planned recycle */
    unsigned open_handles;    /* the pool's own handles (dispatcher, sampler, grace, backoffs) */
    bool closing;

    mv_pool_stats_t stats;
    mv_pool_cb on_progress; /* a task ended, or tasks may be dispatchable again */
    mv_pool_cb on_stopped;  /* every worker is gone and every handle closed */
    mv_pool_cb on_fatal;    /* the run cannot go on (already logged) */
    mv_pool_cb on_ready;    /* a worker became ready */
    void *data;
} mv_pool_t;

/* Sets up the pool and starts its workers. 0 or a negative errno (already logged). */
int mv_pool_start(mv_pool_t *p);
/* Asks for a dispatch pass at the end of this loop iteration. */
void mv_pool_kick(mv_pool_t *p);
/* Stops every worker: graceful (finish tasks within grace_period) or at once (SIGKILL). */
void mv_pool_stop(mv_pool_t *p, bool graceful);
/* Recycles one slot's worker (1-based) or all (0) with a rolling replacement; returns how
 * many were asked (their slots in `slots`, room for nslots, may be NULL), or -EINVAL for a
 * slot that does not exist. */
int mv_pool_recycle(mv_pool_t *p, int slot, mv_reason_t reason, int *slots);
/* Workers serving now (ready or busy, not leaving). */
int mv_pool_live(const mv_pool_t *p);
/* Frees what is left after the loop ended. */
void mv_pool_free(mv_pool_t *p);

/* ---- shared-private: spawn.c, channel.c and pool.c ---- */

/* spawn.c */
/* Starts the worker's process. 0, or -errno with *call naming what failed; when the process
 * already runs (w->pid > 0) it has been sent SIGKILL. */
int mv__spawn(mv_pool_t *p, mv_worker_t *w, const char **call);
/* The exec shim (`memvisor exec-shim FD COMMAND...`): joins the cgroup, then execs. */
int mv_exec_shim(int argc, char **argv);
void mv__handle_closed_cb(uv_handle_t *h);
void mv__signal(mv_worker_t *w, int sig);
void mv__close_handles(mv_worker_t *w);

/* channel.c */
int mv__chan_start(mv_worker_t *w);
int mv__chan_send(mv_worker_t *w, uint16_t type, uint64_t task, const void *payload, size_t len);
int mv__chan_send_task(mv_worker_t *w, const mv_task_t *t);
void mv__chan_flush(mv_worker_t *w);
void mv__chan_close_input(mv_worker_t *w);
/* Reads whatever a dead worker left in its pipes (non-blocking), handling every message. */
void mv__chan_drain(mv_worker_t *w);

/* pool.c: lifecycle, for dispatch.c */
/* The worker became ready: in service mode, the worker it replaces may now drain. */
void mv__on_ready(mv_worker_t *w);
void mv__arm(mv_worker_t *w, int deadline, int64_t ms);
void mv__disarm(mv_worker_t *w);
void mv__recycle(mv_worker_t *w, mv_reason_t reason);
void mv__fault(mv_worker_t *w, mv_reason_t reason);
void mv__kill(mv_worker_t *w, mv_reason_t reason);
mv_slot_t *mv__slot(mv_worker_t *w);

/* dispatch.c: tasks and memory, for pool.c */
int mv__dispatch_init(mv_pool_t *p);
const mv_reading_t *mv__reading(mv_worker_t *w, bool fresh);
void mv__settle_tasks(mv_worker_t *w);
void mv__check_policy(mv_worker_t *w, const mv_reading_t *r);
/* Starts watching the worker's cgroup notifications (soft limit, OOM). */
void mv__watch(mv_worker_t *w);

/* suspect.c: kinds, history, leak verdicts, snapshots */
const char *mv__task_kind(const mv_config_t *cfg, const mv_task_t *t, const uint8_t *named,
                          size_t named_len, char out[MV_LEAK_KIND_MAX + 1]);
void mv__observe_task(mv_worker_t *w, const mv_task_t *t, const char *kind, const mv_result_t *res);
void mv__near_limit(mv_worker_t *w, const mv_reading_t *r);
/* Snapshot before a hard-limit kill: stops the worker and kills it once written. Returns
 * whether it took over the kill. */
bool mv__snapshot_then_kill(mv_worker_t *w, mv_reason_t reason);
void mv__on_snapshot_reply(mv_worker_t *w, const uint8_t *p, size_t n);
/* The worker is gone: its pending snapshot goes ahead without it, its history is freed. */
void mv__suspect_release(mv_worker_t *w);

/* what the channel reports (hello and answers in dispatch.c, the rest in pool.c) */
void mv__on_hello(mv_worker_t *w, uint32_t version);
void mv__on_answer(mv_worker_t *w, uint64_t id, bool ok, const uint8_t *kind, size_t kind_len,
                   const void *p, size_t n);
void mv__on_output(mv_worker_t *w, const char *stream, const void *line, size_t n);
void mv__on_protocol_error(mv_worker_t *w, const char *what);
/* Service mode: the worker began a request (its own id; kind may be empty) / ended it. */
void mv__on_begin(mv_worker_t *w, uint64_t id, const uint8_t *kind, size_t kind_len);
void mv__on_end(mv_worker_t *w, uint64_t id, uint32_t status);
void mv__on_chan_eof(mv_worker_t *w);
void mv__fsm(mv_worker_t *w, mv_wevent_t ev);
void mv__on_exit(mv_worker_t *w, int64_t status, int term_signal);
void mv__on_closed(mv_worker_t *w);

#endif
