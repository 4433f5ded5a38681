/*
 * startgate: how many workers start at once ([supervisor] max_starting).
 *
 * A worker holds a place from its process's start (spawned, or forked from the template)
 * until it is ready or gone. Past the cap a worker waits its turn, in the order it came, with
 * its cgroup made (taken from the ones made ahead, or made in the thread pool: empty, so it
 * costs no CPU) but no process and no ready_timeout running yet.
 * Hundreds of workers started at once on a few cores (a large `workers`, or `memvisor workers
 * N` scaling up) otherwise share the CPU so thinly that each takes longer than ready_timeout
 * to start: they are killed as stuck, their failures pass crash_limit, and the run ends
 * (docs/operations.md). Starts past the CPUs' count gain nothing when start-up is CPU work
 * (an interpreter, its imports); the default cap, twice the online CPUs, leaves room for
 * start-ups that wait on something else.
 *
 * Every worker of a pool goes through the gate: a slot's, a successor, a spare, an
 * escalation worker. Turns are first come, first served, except for spares (`last`): nobody
 * needs a spare until a recycle, while a slot without its worker runs nothing. A spare waits
 * behind every worker to serve that waits, and leaves the places those on their way (their
 * cgroups being made: mv_startgate_expect) will take: at a run's start, a spare whose cgroup
 * was made first took the only place before the slots' workers got there.
 *
 * A place is given back when the worker leaves its starting state (SPAWNING; PREPARING while
 * a template's fork is pending) for any other, or is dropped while it waits or is on its way.
 * The next waiting worker is started from the loop (a zero timer), never from inside another
 * worker's state change.
 */
#ifndef MV_STARTGATE_H
#define MV_STARTGATE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

typedef enum { MV_GATE_OUT, MV_GATE_COMING, MV_GATE_WAITING, MV_GATE_IN } mv_gate_state_t;

/* One worker's place at the gate (embedded in it). */
typedef struct mv_gate_entry {
    struct mv_gate_entry *next;
    void (*go)(struct mv_gate_entry *e); /* its turn: start now */
    mv_gate_state_t state;
    bool last; /* a spare: its turn comes when no other worker waits */
} mv_gate_entry_t;

/* The waiting of one rank, first come first. */
typedef struct mv_gate_line {
    mv_gate_entry_t *head, *tail;
} mv_gate_line_t;

typedef struct mv_startgate {
    uv_timer_t kick; /* starts the next waiting ones, from the loop */
    int cap;         /* places; >= 1 */
    int in;          /* workers starting */
    int waiting;
    int coming;             /* workers to serve on their way (mv_startgate_expect) */
    mv_gate_line_t line[2]; /* waiting: [0] workers to serve, [1] spares (entry.last) */
    bool closed;
    void (*on_closed)(void *arg);
    void *arg;
} mv_startgate_t;

void mv_startgate_init(mv_startgate_t *g, uv_loop_t *loop, int cap);
/* A new cap (a reload): a higher one lets more of the waiting start. */
void mv_startgate_set_cap(mv_startgate_t *g, int cap);
/* e, a worker to serve, will enter soon (its cgroup is being made): spares leave it a place.
 * Nothing for a spare, or an entry not OUT. */
void mv_startgate_expect(mv_startgate_t *g, mv_gate_entry_t *e);
/* Whether e may start now (it holds a place); otherwise it waits, and e->go is called, from
 * the loop, when its turn comes. */
bool mv_startgate_enter(mv_startgate_t *g, mv_gate_entry_t *e);
/* e is ready or gone (or dropped while it waited or was on its way): its place, its turn or
 * the place kept for it is given up. */
void mv_startgate_leave(mv_startgate_t *g, mv_gate_entry_t *e);
/* Closes the timer (on_closed(arg) when done); nothing waits then (the pool has stopped). */
void mv_startgate_close(mv_startgate_t *g, void (*on_closed)(void *), void *arg);

#endif
