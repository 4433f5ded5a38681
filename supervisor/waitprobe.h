/*
 * waitprobe: what a process is waiting for, from /proc/PID/task/TID/syscall.
 *
 * A `lines` or `none` worker says nothing when it has started: memvisor looks. A `lines`
 * worker is ready when one of its threads blocks reading its stdin (read, readv, pread on fd
 * 0): its start-up is over, and what it holds then is its start-up memory, not its first
 * task's. The same look after each answer in lock-step tells that the worker has finished
 * with its task (it is back reading stdin), so every line it wrote for that task has been
 * written: two lines for one task are caught, not paired with the next task.
 *
 * A wrapper (a shell script, pyenv's shims) that waits for its only child hands the look to
 * that child (up to MV_PROBE_DEPTH levels): the child is the worker.
 *
 * A worker that waits on its stdin through poll/epoll/select (asyncio, event loops) never
 * shows a read on fd 0; one found in the same such wait (same call, same place) on
 * MV_PROBE_IDLE_LOOKS looks counts as idle: ready. Looks that find it running do not count
 * against it (a server under load is back in its poll between requests); another wait starts
 * the count over.
 *
 * A `none` worker (a server) is ready when its main thread is found in a wait on
 * MV_PROBE_SERVER_LOOKS looks, or as soon as it holds a socket it did not inherit (it accepted
 * a connection: a server under load from its first instant is never seen waiting).
 *
 * The file is readable by memvisor for its own children (ptrace access mode attach: root, or
 * the same user; Yama's scope 1 allows descendants). A kernel without it, or a worker that
 * memvisor may not inspect, gives -EACCES/-ENOENT: callers fall back (README).
 *
 * No libuv, no log: 0/1 or -errno. One probe per worker; the caller decides when to look.
 */
#ifndef MV_WAITPROBE_H
#define MV_WAITPROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MV_PROBE_THREADS      8  /* threads of the worker looked at (the first ones: main first) */
#define MV_PROBE_IDLE_LOOKS   20 /* looks in the same wait that make a lines worker idle */
#define MV_PROBE_SERVER_LOOKS 3  /* ...and a none worker */
#define MV_PROBE_DEPTH        4  /* wrappers followed down to their child */
#define MV_PROBE_RELIST       16 /* looks between listings of its threads when none came */
/* A held answer (a lines worker in lock-step, worker_look.c) is looked at again this soon... */
#define MV_PROBE_HELD_STEP_NS 20000ULL
/* ...then half its age later, while it is younger than this; then every millisecond. */
#define MV_PROBE_HELD_FINE_NS 2000000ULL
#define MV_PROBE_HELD_SLOW_NS 1000000ULL

/* One thread's system call, parsed. */
typedef enum mv_sc_state {
    MV_SC_RUNNING, /* on a CPU, or runnable: "running" */
    MV_SC_BLOCKED, /* in system call `nr` */
    MV_SC_NONE,    /* stopped outside any system call ("-1 ...") */
} mv_sc_state_t;

typedef struct mv_syscall {
    mv_sc_state_t state;
    long nr;
    unsigned long long arg0;
    unsigned long long pc; /* where it waits: two equal looks are the same wait */
} mv_syscall_t;

/* What a thread waits for. */
typedef enum mv_wait {
    MV_WAIT_BUSY,  /* running, or in a system call that is work (I/O on files, mmap...) */
    MV_WAIT_IDLE,  /* blocked waiting for something outside it (poll, epoll, select, accept,
                    * recv, sleep, futex, a signal) */
    MV_WAIT_STDIN, /* blocked reading fd 0 */
    MV_WAIT_CHILD, /* blocked waiting for a child (a wrapper: the child is the worker) */
} mv_wait_t;

/* Parses the text of /proc/PID/syscall. 0 or -EINVAL. */
int mv_syscall_parse(const char *text, mv_syscall_t *out);
/* Classifies a parsed system call (this architecture's numbers). */
mv_wait_t mv_wait_classify(const mv_syscall_t *sc);

typedef struct mv_waitprobe {
    pid_t root;                /* the worker's process */
    pid_t pid;                 /* the one looked at: root, or the child a wrapper waits for */
    int depth;                 /* wrappers between them */
    int fds[MV_PROBE_THREADS]; /* task/TID/syscall, kept open; -1 = none */
    pid_t tids[MV_PROBE_THREADS];
    int n;
    int task_fd;          /* /proc/PID/task, kept open: its link count is 2 + its threads */
    unsigned long listed; /* that link count when its threads were last listed */
    int unlisted;         /* looks since then */
    int stdin_at;         /* index of the thread last seen reading stdin, or -1 */
    mv_syscall_t last;    /* the last wait the main thread was found in */
    int same;             /* looks that found it in that same wait */
    int idle_looks;       /* how many make it idle (MV_PROBE_IDLE_LOOKS by default) */
} mv_waitprobe_t;

void mv_waitprobe_init(mv_waitprobe_t *p);
/* Starts looking at `pid`. 0 or -errno (-EACCES, -ENOENT: it cannot be looked at). */
int mv_waitprobe_open(mv_waitprobe_t *p, pid_t pid);
/* One look: MV_WAIT_STDIN when a thread reads its stdin, MV_WAIT_IDLE when the main thread
 * has been found in the same idle wait on idle_looks looks, else MV_WAIT_BUSY; or -errno
 * (-ESRCH: it is gone). New threads are picked up. */
int mv_waitprobe_look(mv_waitprobe_t *p);
/* Whether the process looked at holds a socket at an fd >= first_fd (a connection it
 * accepted, when fds below are the sockets it inherited). */
bool mv_waitprobe_has_socket(const mv_waitprobe_t *p, int first_fd);
/* The quick look after an answer: whether the thread that read stdin before is reading it
 * again. 1, 0, or -errno. */
int mv_waitprobe_back_on_stdin(mv_waitprobe_t *p);
void mv_waitprobe_close(mv_waitprobe_t *p);

/* How long to wait before the next look at an answer held for `age_ns` until its worker is
 * back on its stdin: MV_PROBE_HELD_STEP_NS at first, then half its age (a worker that is not
 * back at once is busy: looks grow rarer), MV_PROBE_HELD_SLOW_NS from MV_PROBE_HELD_FINE_NS
 * on. The caller sleeps in between, never spins: a worker that shares the supervisor's CPU
 * gets back to its stdin only while the supervisor is off that CPU. */
uint64_t mv_waitprobe_held_delay_ns(uint64_t age_ns);

#endif
