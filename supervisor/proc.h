/*
 * proc: one child process. Starts it (through the exec shim, which arms the parent-death
 * signal and joins a cgroup before the command runs), signals it by pid only while that pid
 * is still its own, reports its exit, closes its handle. Knows nothing of workers, tasks or
 * protocols.
 *
 * Two ways to start one, behind the same calls:
 *   exec     uv_spawn of the exec shim; its exit comes from libuv's exit callback. libuv
 *            reaps the child just before calling it, so from then on the pid may belong to
 *            someone else: mv_proc_signal refuses.
 *   forked   a forker (the warm template, template.h) is asked for the process; its answer
 *            (mv_proc_forked) comes later and gives a pid. The template clones it with
 *            CLONE_PARENT, so it is our child all the same: we watch it through its pidfd
 *            (uv_poll, readable at its exit) and reap it with waitid(P_PIDFD), which gives
 *            the exact status. Signals go through the pidfd (pidfd_send_signal), which never
 *            names another process.
 * The two mechanisms never see each other's children (DESIGN §2: never waitpid(-1), no
 * SIGCHLD handler of ours): libuv reaps only the pids it spawned, waitid(P_PIDFD) only the
 * one its pidfd names. An unreaped child stays a zombie, so the pid behind a pidfd cannot be
 * reused before we reap it.
 *
 * The exec shim (`memvisor exec-shim FD|- COMMAND...`): with a cgroup, the child must be in
 * it before any of its own code runs (attaching after uv_spawn races, and early charges stay
 * in the wrong cgroup for good). libuv 1.44 has no pre-exec hook, so uv_spawn runs the shim
 * with the cgroup's cgroup.procs open on FD: it writes "0" (itself) there, closes it and
 * execs the command. The migration write can block for an RCU grace period (5-16 ms): it
 * blocks the new child, never the loop. The shim also sets LISTEN_PID, which only the child
 * knows (socket activation), and arms the parent-death signal: every child goes through it.
 */
#ifndef MV_PROC_H
#define MV_PROC_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#define MV_PROC_FIRST_FD 3 /* the first inherited fd after stdin, stdout, stderr */
/* A library the exec shim puts in front of LD_PRELOAD just before it execs the command, and
 * not before: memvisor itself (the shim) must not load it (an ASan build refuses any preload
 * that comes before its runtime; and the shim would claim the heap page for nothing). */
#define MV_PROC_ENV_PRELOAD "MEMVISOR_SHIM_PRELOAD"
#define MV_PROC_MAX_FDS     80

typedef struct mv_proc mv_proc_t;

typedef struct mv_proc_events {
    /* The process exited (status) or was killed (term_signal); reaped already. */
    void (*on_exit)(void *owner, int64_t status, int term_signal);
    /* Its handle is closed (after mv_proc_close). */
    void (*on_closed)(void *owner);
    /* Forked only (an exec'd process runs when mv_proc_spawn returns 0): it runs (its pid is
     * set), or it could not be started (-errno; retry: not the process's failure, e.g. the
     * template went away before answering). Exactly one of the two, never from inside
     * mv_proc_spawn, and never after mv_proc_close. NULL for processes that are never
     * forked. */
    void (*on_started)(void *owner);
    void (*on_failed)(void *owner, int err, bool retry);
} mv_proc_events_t;

/* What a forker is asked for: the child's fds (the forker dups what it keeps: the caller
 * closes its own when the call returns). */
typedef struct mv_fork_spec {
    int slot;
    int out_fd;     /* its stdout and stderr */
    const int *fds; /* inherited as fds 3, 4, ... */
    int nfds;
    int cgroup_dir_fd;   /* >= 0: a cgroup v2 directory to be born in (CLONE_INTO_CGROUP) */
    int cgroup_procs_fd; /* >= 0: its cgroup.procs, to join otherwise */
} mv_fork_spec_t;

/* Something that starts processes on request: the warm template (templates.h). */
typedef struct mv_forker {
    /* Asks for a child for p. 0: mv_proc_forked answers later (never from inside this call);
     * -errno: nothing was asked. */
    int (*fork)(void *self, mv_proc_t *p, const mv_fork_spec_t *s);
    /* p does not wait for the answer any more (it is being closed): a child that still
     * comes is the forker's to kill and reap. */
    void (*cancel)(void *self, mv_proc_t *p);
    /* Whether it forks at all now; false: it was given up (templates fell back to exec), and
     * a worker whose options still name it (a spare, a successor: their options are copied
     * at a start or reload) is exec'd instead. NULL: always. */
    bool (*usable)(const void *self);
    void *self;
} mv_forker_t;

/* How to start it. */
typedef struct mv_proc_spec {
    char *const *argv;                 /* the command, argv[0] looked up in PATH */
    char *const *env;                  /* its whole environment */
    const char *self_exe;              /* this binary, for the exec shim */
    const uv_stdio_container_t *stdio; /* its stdin, stdout, stderr */
    const int *fds;                    /* inherited as fds 3, 4, ... */
    int nfds;
    int cgroup_procs_fd; /* >= 0: the shim joins this cgroup.procs before exec */
    bool listen_pid;     /* the shim sets LISTEN_PID (socket activation) */
    bool own_session;    /* setsid: a Ctrl-C at memvisor's terminal stays memvisor's */
    bool set_creds;      /* the shim switches to uid:gid (after the cgroup move) */
    int64_t uid, gid;
    /* Forked instead of exec'd (NULL: exec): the child gets stdio[1] as its output (stdin
     * and the command are the template's), fds, and its cgroup (cgroup_dir: a cgroup v2
     * directory to be born in, else the procs fd is written by the child). */
    const mv_forker_t *forker;
    const char *cgroup_dir;
    int slot;
} mv_proc_spec_t;

struct mv_proc {
    uv_process_t h;
    const mv_proc_events_t *ev;
    void *owner;
    bool inited;  /* uv_spawn was called (or a forked pid is watched): must be closed */
    bool exited;  /* reaped: its pid is not ours any more */
    bool closing; /* mv_proc_close was called */
    int pid;      /* 0 until started */
    int64_t status;
    int term_signal;
    /* forked */
    const mv_forker_t *forker;
    bool pending;      /* the forker was asked and has not answered */
    bool forked;       /* its pid came from a forker */
    bool in_cgroup;    /* it was born in its cgroup (no migration) */
    int pidfd;         /* -1 until forked */
    uv_poll_t pidpoll; /* readable at its exit */
    /* while its process is ours (spawned, forked or adopted, not reaped): mv_proc_known */
    struct mv_proc *wnext, **wprev;
};

/* Sets up a process that is not started yet; mv_proc_close must follow. */
void mv_proc_init(mv_proc_t *p, const mv_proc_events_t *ev, void *owner);
/* Starts the process (once). 0 or -errno. */
int mv_proc_spawn(mv_proc_t *p, uv_loop_t *loop, const mv_proc_spec_t *s);
/* A forker's answer for p: its pid (> 0), or err (< 0) when it could not be started (retry:
 * not the process's failure). on_started or on_failed follows at once; a pid it cannot watch
 * is killed and the start fails. A pid that is not memvisor's child, or that is one of its
 * known processes already (mv_proc_known), is never signalled or watched: the start fails and
 * -ECHILD is returned (the forker lied). 0: it started. */
int mv_proc_forked(mv_proc_t *p, uv_loop_t *loop, int pid, int err, bool retry);
/* Adopts a running child that memvisor did not start (a template handed over: handoff.h),
 * watched and reaped through its pidfd as a forked one; the pidfd is p's from then on (closed
 * with it), on success only. 0 or -errno. */
int mv_proc_adopt(mv_proc_t *p, uv_loop_t *loop, int pid, int pidfd);
/* Whether pid is the process of an mv_proc_t, not reaped yet: spawned (libuv reaps it), or
 * forked or adopted (reaped through its pidfd, so nobody else may wait for it: the reaper,
 * reaper.h). Every one, whoever owns it: a slot's worker, a spare, a successor, a template,
 * a template's orphan. Loop thread only. */
bool mv_proc_known(int pid);
/* Whether process pid is on its way out: gone, a zombie, exiting (PF_EXITING), or with a
 * SIGKILL pending (the OOM killer's, not acted on yet), from /proc/PID/stat (state, the 9th
 * field flags, the 31st signal). An unreadable file counts as on its way out. */
bool mv_proc_dying(int pid);
/* Sends a signal while the pid is still its own. 0, -ESRCH (gone) or -errno. */
int mv_proc_signal(mv_proc_t *p, int sig);
/* Closes its handle (on_closed follows; at once when it was never started). */
void mv_proc_close(mv_proc_t *p);

/* Whether a command can be executed, looked up in PATH as execvp does (the exec happens later
 * in the exec shim, where a failure would only look like a crash). 0 or -errno. */
int mv_proc_check_command(const char *cmd);
/* The same check as uid:gid would make it (a forked child switches to them and looks; only
 * before the loop runs: it waits for the child). uid < 0: as memvisor, no fork. */
int mv_proc_check_command_as(const char *cmd, int64_t uid, int64_t gid);

/*
 * `memvisor exec-shim [-u UID:GID] FD|- COMMAND [ARG]...`: arms the parent-death signal, joins
 * the cgroup, switches to UID:GID if given, then execs. Exit codes as a shell's: 125 could not
 * set up, 126 cannot execute, 127 not found.
 *
 * Privilege drop ([worker] user/group): after the cgroup move (which needs memvisor's
 * credentials: the cgroup's files are root's and stay root's, so the worker cannot raise its
 * own limits), supplementary groups are dropped (setgroups(0)), then the group is set, then
 * the user (after setuid the process could not change its group any more). setgid/setuid as
 * root set the real, effective and saved ids, so nothing can switch back. The credential
 * change clears the parent-death signal (kernel/cred.c, commit_creds): it is armed again and
 * checked against the parent's death once more.
 *
 * Parent death: PR_SET_PDEATHSIG(SIGKILL), so a child dies with memvisor even when memvisor
 * is SIGKILLed (no STOP, no EOF needed: a busy worker and a `none` worker die too). It is
 * kept across execve, but not across a set-uid exec or a change of credentials: a privilege
 * drop must come before it, or arm it again. It fires when the *thread* that forked the
 * child exits: uv_spawn runs on memvisor's loop thread, its main thread, so that is
 * memvisor's exit. The race: memvisor may die between the fork and the prctl, and then the
 * signal never comes; so the shim compares getppid() with the pid memvisor put in its
 * environment (MV_ENV_SUPERVISOR_PID, runlock.h, set by `memvisor run`) and exits 125 when
 * they differ (it was orphaned already). The variable is removed before the exec. The
 * child's own children get no such signal: they stay in its cgroup, which the next memvisor
 * on that base empties (cgroup.c, stale runs).
 */
int mv_exec_shim(int argc, char **argv);

#endif
