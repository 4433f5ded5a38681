/*
 * kids: the child processes of a worker that is itself a master ([recycle] target = child).
 *
 * gunicorn, uWSGI, php-fpm and the like run a master process that forks the processes doing
 * the work and forks a replacement, warm, whenever one exits. A leak grows in those children;
 * replacing the whole worker (master included) costs a cold start per recycle, where telling
 * the child that grew to stop costs a fork. This module only finds and stops children; the
 * pool decides when (pool_kids.c).
 *
 * Children are the master's direct children, read from /proc/PID/task/TID/children for each
 * of its threads (CONFIG_PROC_CHILDREN, which Debian's and most kernels have), each weighed
 * by its private memory (statm resident less shared, as the meter's per-process figure).
 * A stopped child is named by a pidfd from then on: the signal, the escalation to SIGKILL
 * and the test for its exit (the pidfd is readable once it has exited, zombie or reaped)
 * never reach a process that reused its pid. It is the master's child, not ours: its exit
 * status is the master's to read.
 */
#ifndef MV_KIDS_H
#define MV_KIDS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct mv_kid {
    pid_t pid;
    int64_t priv; /* private memory, bytes; -1 when it could not be read (gone) */
} mv_kid_t;

/* The direct children of `master` (any of its threads), at most `max` of them, with their
 * private memory. Their count (0: none), or -errno (the master is gone). */
int mv_kids_list(pid_t master, mv_kid_t *out, int max);

/* Which child to stop: the index of the one with the most private memory, or -1 when there
 * is none, or when the master itself holds at least as much as the largest (the master
 * grows: only a whole-worker recycle frees that). Pure. */
int mv_kids_pick(const mv_kid_t *kids, int n, int64_t master_priv);

/* The private memory of one process (statm), -1 when it cannot be read. */
int64_t mv_kids_priv(pid_t pid);

/* A child told to stop. */
typedef struct mv_kidstop {
    int pidfd; /* -1: none */
    pid_t pid;
    uint64_t since_ms; /* when it was told (mv_now_ms) */
    bool killed;       /* SIGKILL was sent */
} mv_kidstop_t;

/* Nothing stopping. */
void mv_kidstop_init(mv_kidstop_t *ks);
/* Tells child `pid` to stop with `sig`. 0 or -errno (gone already: -ESRCH). */
int mv_kidstop_start(mv_kidstop_t *ks, pid_t pid, int sig);
/* Whether it has exited (or can no longer be watched). */
bool mv_kidstop_gone(const mv_kidstop_t *ks);
/* SIGKILL (once). 0 or -errno. */
int mv_kidstop_kill(mv_kidstop_t *ks);
/* Forgets it (closes the pidfd). */
void mv_kidstop_end(mv_kidstop_t *ks);

#endif
