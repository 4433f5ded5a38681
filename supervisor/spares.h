/*
 * spares: hot spares ([recycle] spares = N). Workers started ahead of need, each in its own
 * cgroup with the run's limits and notifications set, its process moved in and its start-up
 * done, waiting to take a slot the moment one needs a worker (a recycle, a kill, a crash);
 * the pool then adopts it (mv_worker_adopt) in the same loop pass, and a new spare starts.
 *
 * What a spare is until it takes a slot:
 *   - api: it said HELLO and waits in mvw_open() for GO, which it gets (with its slot
 *     number) when it takes one; lines: started, waiting on its stdin; none: started (a none
 *     worker has no conversation to hold it back: with [service] listen sockets it accepts
 *     connections as soon as it runs);
 *   - it counts against nothing: not a slot, not max_concurrent, not the live count, not
 *     the slots' peaks; its max_lifetime starts when it takes a slot; but one that fails
 *     before it is ready is a failed start of the pool's command, counted toward
 *     crash_limit (on_failed);
 *   - its cgroup is <run>/w0.<n> (n counts spares), MEMVISOR_SLOT is 0, logs say worker=0
 *     gen=n; the timeline has no points of it until it takes a slot (then a spawn mark);
 *     status lists it under "spares" with its memory, metrics count it
 *     (memvisor_spares, memvisor_spares_usage_bytes);
 *   - one that dies or cannot start is replaced, after the crash backoff while spares keep
 *     dying young (mv_policy_spare_delay); while the command's starts keep failing (a slot's
 *     or a spare's, none ready since: failing), one at a time, after at least the slots'
 *     backoff for that many failures, so spares never try a broken command faster than one
 *     more slot would; one that
 *     crosses the soft limit while it waits (or is found over it when a slot would take it)
 *     is stopped and replaced the same way, with the backoff only when its start-up memory
 *     was already at the limit (mv_policy_premature): a `none` spare serving the shared
 *     sockets grows like the slots' workers, and that is no failure.
 *   - an escalation worker (pool_esc.c) never takes a spare: it needs the task's raised limits.
 * A reload retires every spare (they run the old configuration and command) and starts new
 * ones; a stop retires them with the workers.
 */
#ifndef MV_SPARES_H
#define MV_SPARES_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "worker.h"

typedef struct mv_spares mv_spares_t;

typedef struct mv_spare {
    mv_spares_t *s;
    mv_worker_t *w;
    struct mv_spare *next;
    bool ready;  /* it can take a slot */
    bool retire; /* asked to leave (reload, stop, soft limit) */
    bool near;   /* its usage is over the soft limit, the limit's figure not yet: recheck */
} mv_spare_t;

typedef struct mv_spares_events {
    void (*on_closed)(void *arg); /* a spare's handles are all closed (the pool may be done) */
    /* A spare failed: it died or could not start unasked, or its start-up did not fit the
     * limits (g: how it went). Before it was ready, a failed start of the pool's command:
     * crash_limit's. */
    void (*on_failed)(void *arg, mv_worker_t *w, const mv_gone_t *g);
    /* A spare became ready: the command starts. */
    void (*on_ready)(void *arg);
    /* The pool's failed starts of the command in a row, none ready since (0: it starts);
     * while there are some, spares start one at a time, after the slots' backoff for that
     * count. NULL: always 0. */
    int (*failing)(void *arg);
} mv_spares_events_t;

struct mv_spares {
    mv_worker_opts_t wo; /* what new spares are started with (its pointers outlive them) */
    const mv_spares_events_t *ev;
    void *arg;
    int want;         /* [recycle] spares */
    mv_spare_t *list; /* every spare whose handles are open */
    uint32_t seq;     /* spares started: the generation of the next one (cgroup w0.<seq>) */
    int streak;       /* spares in a row that died young (the backoff) */
    uv_timer_t backoff;
    uv_timer_t recheck; /* every 5 ms while a spare is near its soft limit */
    int closing;        /* timers not closed yet (mv_spares_close) */
    bool stopping;
    void (*closed)(void *arg);
    void *closed_arg;
    uint64_t started, taken, lost;
};

/* No spare yet (mv_spares_fill starts them); wo is copied. */
void mv_spares_init(mv_spares_t *s, const mv_worker_opts_t *wo, int want,
                    const mv_spares_events_t *ev, void *arg);
/* Starts spares until `want` are alive (not leaving), unless a backoff holds them; while
 * the command's starts fail (failing), only one. */
void mv_spares_fill(mv_spares_t *s);
/* A ready spare, no longer the module's (adopt it now: mv_worker_adopt), or NULL; a new
 * spare is started in its place. */
mv_worker_t *mv_spares_take(mv_spares_t *s);
/* Whether mv_spares_take would give a spare now (one at its soft limit is retired instead). */
bool mv_spares_ready(mv_spares_t *s);
/* A reload: every spare is retired, new ones start with wo and `want`. */
void mv_spares_reconfigure(mv_spares_t *s, const mv_worker_opts_t *wo, int want);
/* No more spares: the ones there leave (STOP, or SIGKILL when not graceful). */
void mv_spares_stop(mv_spares_t *s, bool graceful);
/* Whether every spare is gone and closed (after mv_spares_stop). */
bool mv_spares_done(const mv_spares_t *s);
/* Closes its timer (once done); cb(arg) follows. */
void mv_spares_close(mv_spares_t *s, void (*cb)(void *arg), void *arg);
/* Spares alive (ready or starting, not leaving), and ready ones. */
int mv_spares_alive(const mv_spares_t *s, int *ready);

#endif
