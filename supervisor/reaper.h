/*
 * reaper: memvisor as a child subreaper (PR_SET_CHILD_SUBREAPER), or as PID 1 in a container,
 * reaping the orphans the kernel reparents to it: a worker's grandchild whose parent exited
 * (a double fork, a daemonizing tool, a shell pipeline) is memvisor's child from then on, and
 * without a wait it stays a zombie for the life of the run.
 *
 * Never a worker's status: libuv reaps the processes it spawned itself, each by its pid
 * (waitpid(pid), from its own SIGCHLD watcher; DESIGN §2: never waitpid(-1), which would take
 * their statuses from it). So on SIGCHLD (a uv_signal_t of our own, beside libuv's) the reaper
 * lists memvisor's children (/proc/self/task/PID/children: an orphan is reparented to the
 * first live thread of the process, its main thread; a scan of /proc for PPid when that file
 * is missing), leaves out every pid of a uv_process_t of the loop (uv_walk: libuv's own record of
 * what it spawned, nothing to keep in step), and waits for each other one with WNOHANG. One
 * loop thread runs both, so a pid libuv spawns is in the loop before any SIGCHLD of it is
 * handled. A child that is still running is left for a later SIGCHLD.
 *
 * Each reaped orphan is logged, `event=orphan_reaped pid= status=` (status: its exit code,
 * or -N for signal N), at most MV_REAPER_LOG_PER_S lines a second; the lines left out are
 * counted (`suppressed=` on the next line that is logged) and none of them is lost from the
 * count `reaped`.
 */
#ifndef MV_REAPER_H
#define MV_REAPER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "log.h"

#define MV_REAPER_LOG_PER_S 10

/* The rate limit of orphan_reaped lines (pure: tests drive it with plain times). */
typedef struct mv_ratelimit {
    uint64_t window_ms; /* start of the current second */
    unsigned in_window; /* lines logged in it */
    uint64_t suppressed;
} mv_ratelimit_t;

/* Children their owner reaps itself: workers forked by a warm template are memvisor's children
 * (clone3 CLONE_PARENT) but not libuv's; they are watched through their pidfds (proc.h), which
 * must get their statuses. Asked for each child that is not libuv's; true leaves it alone. */
typedef bool (*mv_reaper_keep_fn)(void *arg, int pid);

typedef struct mv_reaper {
    uv_loop_t *loop;
    mv_log_t *log;
    uv_signal_t sig;
    bool open;
    uint64_t reaped; /* orphans waited for */
    mv_ratelimit_t rl;
    const char *proc;       /* "/proc"; tests point it elsewhere */
    mv_reaper_keep_fn keep; /* NULL: every child that is not libuv's is an orphan */
    void *keep_arg;
} mv_reaper_t;

/* Makes memvisor a subreaper and starts watching SIGCHLD. 0 or -errno (`why` filled). */
int mv_reaper_open(mv_reaper_t *r, uv_loop_t *loop, mv_log_t *log, char *why, size_t n);
/* Sets who keeps which children (see mv_reaper_keep_fn). */
void mv_reaper_keep(mv_reaper_t *r, mv_reaper_keep_fn fn, void *arg);
/* Reaps every orphan that has exited now (what SIGCHLD runs). Returns how many. */
int mv_reaper_sweep(mv_reaper_t *r);
/* Stops watching (the signal handle closes; nothing else to wait for). */
void mv_reaper_close(mv_reaper_t *r);

/* Whether one more line may be logged at `now_ms`: true for the first MV_REAPER_LOG_PER_S of
 * each second, with *suppressed set to (and cleared of) the lines left out before it. */
bool mv_ratelimit_take(mv_ratelimit_t *rl, uint64_t now_ms, uint64_t *suppressed);

/* memvisor's children, from r->proc (its children file, or a scan of every PID/stat when
 * the kernel has none), up to max into out; returns how many. */
int mv_reaper_children(const mv_reaper_t *r, int *out, int max);
/* The pids in a /proc/PID/task/TID/children text ("12 34 "), up to max into out; returns
 * how many (pure, for tests). */
int mv_reaper_parse_children(const char *text, int *out, int max);

#endif
