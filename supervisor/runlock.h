/*
 * runlock: a run's claim on what it owns (its results file, its state directory, its cgroup
 * run directory), held as an flock(2) on an open fd for as long as the run lives.
 *
 * Why flock and not a pid file: the kernel drops the lock when the last fd of the holder
 * closes, so a run killed by SIGKILL (or the OOM killer) frees its claim at once, and
 * "is that run dead?" becomes "is its lock free?". A pid cannot answer that: it is reused,
 * and in another pid namespace (a container sharing the cgroup base) a live memvisor's pid
 * names nothing, or something else. flock works on directories, cgroupfs ones included
 * (measured on this kernel, v1 memory hierarchy; kernfs on v2 is the same VFS code path).
 */
#ifndef MV_RUNLOCK_H
#define MV_RUNLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The supervisor's pid, set in its environment by `memvisor run` so that the exec shim can
 * tell whether the process that forked it is still its parent (proc.h, mv_exec_shim). */
#define MV_ENV_SUPERVISOR_PID "MEMVISOR_SUPERVISOR_PID"

/* How long a lock whose locker is gone may stay held (see mv_lock_take). */
#define MV_LOCK_GRACE_MS 2000

/* Takes an exclusive flock on fd without waiting. 0; -EWOULDBLOCK when another open file
 * holds it; or -errno. */
int mv_lock_try(int fd);
/* Takes fd's lock. While the process that took it is alive, -EWOULDBLOCK at once. While that
 * process is gone, waits up to wait_ms for the lock to go too: a child that memvisor forked
 * just before it died shares the open file, so the lock outlives memvisor until that child's
 * exec closes it (close-on-exec acts at exec, not at fork; measured: a rerun right after a
 * SIGKILL was refused). A holder this pid namespace cannot see (another namespace's live
 * run, or in a container a dead locker whose pid was freed when it was reaped: the kernel
 * names neither) is waited for the same way when wait_unseen (a claim: the results file, a
 * run directory, which a live holder refuses anyway, only later), else taken for alive at
 * once (a scan of other runs' directories, which must not wait on each live one). 0,
 * -EWOULDBLOCK or -errno. Before the loop runs only. */
int mv_lock_take(int fd, int wait_ms, bool wait_unseen);
/* Opens `path` read-only (a directory is fine) and takes its lock (mv_lock_take, an unseen
 * holder taken for alive): the fd (O_CLOEXEC, keep it open to keep the lock), -EWOULDBLOCK
 * when it is held, or -errno. */
int mv_lock_path(const char *path, int wait_ms);
/* The pid holding an flock on the file `fd` refers to, as this pid namespace sees it (from
 * /proc/locks): > 0, or 0 when unknown (not held, or by a process this namespace cannot see). */
pid_t mv_lock_holder(int fd);
/* Parser behind mv_lock_holder, for tests: the pid of the first FLOCK line of `text` (the
 * contents of /proc/locks) on device dev_major:dev_minor, inode ino; 0 if none. */
pid_t mv_lock_parse_holder(const char *text, unsigned dev_major, unsigned dev_minor,
                           unsigned long ino);
/* "pid 1234 (memvisor run --tasks t.txt ...)" into `out`, for messages that name the holder
 * of a lock; "a process in another pid namespace" when the pid is unknown. */
void mv_lock_describe(pid_t pid, char *out, size_t n);

#endif
