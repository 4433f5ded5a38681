/*
 * proc: one child process. Starts it (through the exec shim, which arms the parent-death
 * signal and joins a cgroup before the command runs), signals it by pid only while that pid
 * is still its own, reports its exit, closes its handle. Knows nothing of workers, tasks or
 * protocols.
 *
 * Exits come from libuv's exit callback only (DESIGN §2: one mechanism; never waitpid(-1),
 * no SIGCHLD handler of ours). libuv reaps the child just before calling it, so from then on
 * the pid may belong to someone else: mv_proc_signal refuses.
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

typedef struct mv_proc_events {
    /* The process exited (status) or was killed (term_signal); reaped already. */
    void (*on_exit)(void *owner, int64_t status, int term_signal);
    /* Its handle is closed (after mv_proc_close). */
    void (*on_closed)(void *owner);
} mv_proc_events_t;

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
} mv_proc_spec_t;

typedef struct mv_proc {
    uv_process_t h;
    const mv_proc_events_t *ev;
    void *owner;
    bool inited;  /* uv_spawn was called: the handle must be closed */
    bool exited;  /* reaped: its pid is not ours any more */
    bool closing; /* mv_proc_close was called */
    int pid;      /* 0 until started */
    int64_t status;
    int term_signal;
} mv_proc_t;

/* Sets up a process that is not started yet; mv_proc_close must follow. */
void mv_proc_init(mv_proc_t *p, const mv_proc_events_t *ev, void *owner);
/* Starts the process (once). 0 or -errno. */
int mv_proc_spawn(mv_proc_t *p, uv_loop_t *loop, const mv_proc_spec_t *s);
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
