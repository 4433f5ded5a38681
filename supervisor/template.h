/*
 * template: one warm template process (docs/templates.md). The worker command, started once
 * like a worker, runs its start-up; GO (mode template, protocol version 2) then makes it fork
 * a worker per FORK request instead of taking tasks. It has what a worker has of its own: a
 * cgroup (<run>/t.<gen>: the workers' limits, its notifications), its process (exec'd
 * through the shim: parent-death signal, cgroup before any of its code), its output in the
 * log, its memory readings. Workers do not depend on it once forked (the template clones them
 * with CLONE_PARENT: memvisor is their parent), so it can go at any time.
 *
 * The control channel: our end of a socketpair, watched with uv_poll. FORK carries its fds
 * (SCM_RIGHTS) on the first byte of its own message (the template reads exact sizes, so the
 * fds that come during a message's reads are that message's); nothing is sent after GO until
 * the template says TEMPLATE. Answers come in order. The queue of requests that wait for a
 * ready template is the owner's (templates.c); this module sends, matches the answers and
 * hands each request back with its answer, or unanswered with the template's exit.
 *
 * Deadlines (one timer): STARTING waits [worker] ready_timeout for TEMPLATE; the oldest
 * unanswered FORK waits ready_timeout too; RETIRING (STOP sent) waits kill_timeout. A missed
 * deadline, or anything the protocol does not allow, kills the template (SIGKILL): its exit
 * hands back what it did not answer.
 */
#ifndef MV_TEMPLATE_H
#define MV_TEMPLATE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include <memvisor/protocol.h>

#include "cgroup.h"
#include "channel.h"
#include "handoff.h"
#include "job.h"
#include "meter.h"
#include "proc.h"
#include "worker.h"

typedef struct mv_template mv_template_t;

/* How old the template's memory reading may be at a FORKED (a read is three system calls,
 * and a worker per task forks hundreds of times a second). */
#define MV_TEMPLATE_READ_MS 10

/* One fork request: for whom, and what to send. */
typedef struct mv_freq {
    mv_proc_t *p; /* the process that waits; NULL: cancelled (a child that comes is killed) */
    uint64_t id;
    struct mvw_fork body;
    int fds[3 + MVW_FORK_MAX_FDS]; /* our copies, sent with FORK, closed once sent */
    int nfds;
    uint64_t asked_ms;  /* sent to the template (the answer deadline counts from it) */
    uint64_t queued_ns; /* asked for (uv_hrtime): the fork's latency counts from it */
    uint64_t at;        /* template.c: where its FORK starts in the channel's byte stream */
    bool fds_sent;      /* template.c */
    bool direct;        /* sent at once with the caller's fds, no copies (mv_template_send_now) */
    struct mv_freq *next;
} mv_freq_t;

/* Closes its fds and frees it. */
void mv_freq_free(mv_freq_t *r);

typedef enum {
    MV_T_PREPARING, /* its cgroup is being made */
    MV_T_STARTING,  /* started: waiting for HELLO, then TEMPLATE */
    MV_T_READY,     /* takes FORK requests */
    MV_T_RETIRING,  /* STOP sent (or killed): answers what it was sent, then exits */
    MV_T_DEAD,      /* exited, or never started */
} mv_tstate_t;

const char *mv_tstate_name(mv_tstate_t s);

/* A template is gone: why, and what it did not answer. */
typedef struct mv_tgone {
    bool asked;            /* retired, stopped or killed by memvisor */
    bool ready;            /* it had become ready */
    bool fatal_exit;       /* it exited with [worker] fatal_exit */
    bool hopeless;         /* never started, and never will (the command cannot run) */
    bool unsupported;      /* its HELLO said it cannot be a template */
    int status;            /* exit code, or -signal; 0 when it never started */
    mv_freq_t *unanswered; /* sent and not answered, in order: the owner's */
} mv_tgone_t;

typedef struct mv_template_events {
    void (*on_ready)(mv_template_t *t);
    /* The answer to r (the owner's again): a pid (> 0) or err (an errno); in_cgroup: the child
     * was born in its cgroup. Its memory was read at most MV_TEMPLATE_READ_MS before. */
    void (*on_forked)(mv_template_t *t, mv_freq_t *r, int pid, int err, bool in_cgroup);
    /* Its cgroup said something (soft limit, OOM): its memory was read anew. */
    void (*on_memory)(mv_template_t *t);
    void (*on_gone)(mv_template_t *t, mv_tgone_t *g);
    /* Every handle is closed (after gone, or mv_template_close): free it. */
    void (*on_closed)(mv_template_t *t);
} mv_template_events_t;

struct mv_template {
    uint32_t gen;
    mv_worker_opts_t o; /* what the pool's workers are started with (forker unused) */
    const mv_template_events_t *ev;
    void *data;               /* the owner's */
    struct mv_template *link; /* the owner's list */

    mv_tstate_t state;
    bool asked, hello, unsupported, hopeless, closing;
    const char *spawn_call; /* it could not be started: the call that failed */
    uint64_t spawned_ms, ready_ms, deadline_ms;
    uint32_t features; /* from TEMPLATE */
    uint64_t forks;    /* answered with a pid */
    unsigned open;     /* handles not closed yet */

    mv_proc_t proc;
    mv_chan_t out; /* its output lines (protocol none: no conversation there) */
    int ctl[2];    /* the control socketpair: [0] ours, [1] the template's until spawned */
    uv_poll_t ctlpoll;
    bool ctl_open, ctl_writable;
    int ctl_events; /* what ctlpoll watches (UV_READABLE...), 0: stopped */
    mv_buf_t rbuf, wbuf;
    uint64_t wpos;     /* bytes of the stream sent so far */
    mv_freq_t *sent;   /* sent or being sent, unanswered, in order */
    mv_freq_t *attach; /* the first of them whose fds are not sent yet */
    uv_timer_t timer;

    mv_cgw_t cg;
    bool has_cg;
    mv_job_t *cg_job;
    uv_poll_t notify;
    bool notify_open;
    mv_meter_t meter;
    bool meter_ok, have;
    mv_reading_t last;
    uint64_t read_ns; /* when `last` was read (uv_hrtime) */
    int64_t peak;
    int64_t at_ready;     /* the soft limit's figure when it became ready; -1: not read */
    mv_handoff_t handoff; /* a template handed over, to adopt instead of starting one */
};

/* A template of generation `gen` (not started). NULL on ENOMEM. */
mv_template_t *mv_template_new(const mv_worker_opts_t *o, uint32_t gen,
                               const mv_template_events_t *ev, void *data);
/* Makes its cgroup, then starts it; on_ready or on_gone follows (maybe before this returns,
 * when it cannot start). */
void mv_template_start(mv_template_t *t);
/* A template handed over (handoff.h): the next template started adopts it (into its cgroup,
 * then as if it had just been started) instead of running the command. h is taken. */
void mv_template_offer(mv_handoff_t *h);
/* The offer nobody took (templates off, the run ended first): its child is killed and reaped. */
void mv_template_offer_drop(void);
/* Sends a request (READY only): its answer comes through on_forked, or with on_gone. */
void mv_template_send(mv_template_t *t, mv_freq_t *r);
/* Sends r's FORK now with `fds` (the caller's: out_fd, the fds, the cgroup's) when the
 * channel has nothing queued, without copying them; true when sent (as mv_template_send), false
 * when nothing was done. */
bool mv_template_send_now(mv_template_t *t, mv_freq_t *r, const int *fds, int nfds);
/* Retire: STOP (it answers what it was sent, then exits); SIGKILL after kill_timeout. A
 * template still being prepared is dropped. */
void mv_template_retire(mv_template_t *t);
/* SIGKILL now. */
void mv_template_kill(mv_template_t *t);
/* Its memory now (a fresh reading), or NULL when it cannot be read. */
const mv_reading_t *mv_template_read(mv_template_t *t);
/* The figure the soft limit compares, as last read; -1: none. */
int64_t mv_template_mem(const mv_template_t *t);
void mv_template_free(mv_template_t *t);

#endif
