/*
 * cgroup: one memory cgroup per worker generation, for cgroup v1 and v2. The only file that
 * knows the two apart and the only user of libcgroup (CGROUP-FACTS.md, DESIGN §2 and §4).
 *
 * Layout:  <base>/memvisor-<pid>/w<slot>.<gen> (a template's: t.<gen>)
 *   base = [supervisor] cgroup_parent, or memvisor's own memory cgroup. On v2 memvisor first
 *   moves itself into <base>/supervisor (no internal processes) and enables +memory for the
 *   children of <base>; at the end it moves back and undoes exactly that.
 *   The run holds an flock on memvisor-<pid> (runlock.h): a run directory whose lock is free
 *   belongs to a run that died, and the next setup under that base kills what is left in it
 *   and removes it. A name taken by a live run of another pid namespace gets a suffix,
 *   memvisor-<pid>-<k>.
 *
 * Threads: mv_cg_setup and mv_cg_teardown run before/after the loop; mv_cg_create and
 * mv_cg_remove run in the thread pool (mkdir/rmdir take cgroup_mutex, which a concurrent
 * migration can hold for an RCU grace period, 5-16 ms); everything else is a read or write
 * on a kept-open fd, cheap enough for the loop.
 */
#ifndef MV_CGROUP_H
#define MV_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "log.h"

typedef enum { MV_CG_OFF, MV_CG_V1, MV_CG_V2 } mv_cg_version_t;

/* Where to look; tests point these at fixture trees. NULL = the real /proc files. */
typedef struct mv_cg_opts {
    mv_cgmode_t mode;        /* auto|v1|v2|off */
    const char *parent;      /* [supervisor] cgroup_parent; "" = own cgroup */
    int64_t soft, hard;      /* limits in bytes, 0 = off */
    bool enforce;            /* false: observe only, no kernel limit, no throttling */
    const char *proc_cgroup; /* /proc/self/cgroup */
    const char *mountinfo;   /* /proc/self/mountinfo */
    pid_t pid;               /* names the run directory; 0 = getpid() */
    mv_log_t *log;           /* event=stale_run_removed; NULL = not logged */
} mv_cg_opts_t;

typedef struct mv_cg {
    mv_cg_version_t version;
    char *mount;       /* the memory hierarchy's mount point */
    char *base;        /* absolute: the cgroup the run directory is made in */
    char *run;         /* absolute: <base>/memvisor-<pid>[-<k>] */
    int run_fd;        /* the run directory, flocked while the run lives (runlock.h) */
    char *vacated;     /* v2: the cgroup memvisor left for <base>/supervisor, or NULL */
    bool enabled;      /* v2: we added +memory to <base>/cgroup.subtree_control */
    bool v1_libcgroup; /* v1 discovery/creation through libcgroup worked */
    char *v1_rel;      /* v1: run dir relative to the mount, for libcgroup names */
    int64_t soft, hard;
    bool enforce;
    char desc[192]; /* "v1 /sys/fs/cgroup/memory/.../memvisor-123", for logs and status */
} mv_cg_t;

/* One worker's cgroup and its kept-open files. */
typedef struct mv_cgw {
    mv_cg_version_t version;
    char *path;         /* absolute directory */
    int procs_fd;       /* v1 tasks, v2 cgroup.procs (O_WRONLY): a new child writes "0" */
    int usage_fd;       /* v1 memory.usage_in_bytes / v2 memory.current */
    int stat_fd;        /* memory.stat */
    int peak_fd;        /* v1 memory.max_usage_in_bytes / v2 memory.peak (O_RDWR) */
    int events_fd;      /* v1 memory.oom_control / v2 memory.events */
    int notify_fd;      /* what to poll: v1 threshold eventfd; v2 = events_fd (POLLPRI) */
    int high_fd;        /* v2 memory.high (O_WRONLY), when it carries the soft limit */
    bool peak_kernel;   /* the peak can be reset per task (v1, v2 >= 6.12) */
    int64_t last_usage; /* usage when memory.stat was last read */
    int64_t last_anon;
    bool have_anon;
    bool peak_is_usage;   /* the last read found peak == usage: a reset would change nothing */
    uint64_t high_events; /* v2 memory.events "high" last seen */
    /* v2 before 6.12: memory.peak is the cgroup's high-water mark since creation. A task
     * that raises it has that mark as its exact peak; otherwise its peak is sampled. */
    int64_t life_peak;  /* the mark at the last read (INT64_MAX: not read yet) */
    int64_t peak_base;  /* the mark when the task's window began (INT64_MAX: none) */
    int64_t soft;       /* v2: the soft limit memory.high is armed at */
    int64_t usage_gate; /* a kernel peak below this (and the soft limit) may skip usage */
    int64_t usage_read; /* usage at its last read... */
    uint64_t usage_ns;  /* ...at this uv_hrtime (0: never) */
    bool high_lifted;   /* v2: memory.high was lifted to "max" after its event */
    /* v1: what it was made with, so that it is reused only under the same limits
     * (mv_cg_reuse), and what its earlier workers left (a reused one). */
    int64_t made_soft,
        made_hard; /* the threshold's and the kernel limit's bytes, 0 = none, -1 = capped since */
    uint64_t oom_base; /* oom_kill count when it was taken: only later ones count */
    /* v1, made by mv_cg_create_later: its cgroup.event_control (O_WRONLY), opened at the
     * mkdir, while its soft-limit threshold is still to be registered (mv_cg_register_soft;
     * notify_fd is its eventfd already); -1: nothing to register. */
    int soft_control_fd;
    int64_t inherited; /* reused: usage left when it was taken; -1 = made new */
} mv_cgw_t;

typedef struct mv_cg_reading {
    int64_t usage;    /* charged to the cgroup: anon + page cache + kernel */
    int64_t anon;     /* private (anonymous) memory of the whole cgroup; -1 = not read */
    int64_t peak;     /* peak usage since the last reset, -1 = not available */
    bool usage_fresh; /* false: usage was carried from a read < 10 ms ago, the peak being below
                       * every limit usage is compared with (mv_cg_read) */
} mv_cg_reading_t;

/* What a notification meant. */
enum { MV_CG_EV_SOFT = 1, MV_CG_EV_OOM = 2 };

/*
 * Picks the version, makes (and locks) the run directory, removes stale ones of dead memvisor
 * runs (logged as stale_run_removed with what was killed), and on v2 vacates <base>. With mode
 * auto, a cgroup that cannot be used gives version OFF and a reason in `why`; with v1/v2 it is an
 * error (-errno, reason in `why`).
 */
int mv_cg_setup(mv_cg_t *cg, const mv_cg_opts_t *o, char *why, size_t n);
/* Undoes mv_cg_setup: removes the run directory, moves memvisor back, restores
 * subtree_control. Reports what it could not undo in `why` (0 or -errno). */
int mv_cg_teardown(mv_cg_t *cg, char *why, size_t n);

/* The slot a template's cgroup is made for: <run>/t.<gen>. Spares are slot 0 (w0.<n>), and
 * each counts its own generations: a template's w0.<gen> was a spare's w0.<n> too, the spare
 * measured with the template, and the template killed when the spare's cgroup went. */
#define MV_CG_TEMPLATE_SLOT (-1)

/* Thread pool: makes <run>/w<slot>.<gen> (<run>/t.<gen>: MV_CG_TEMPLATE_SLOT) with its limits
 * and opens its files. */
int mv_cg_create(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n);
/* The same, but on v1 the soft-limit threshold is left to mv_cg_register_soft (its eventfd
 * made, soft_control_fd open): the registration waits for an RCU grace period in the kernel
 * (synchronize_rcu, 10-20 ms here), which a process need not wait for to start in the cgroup
 * -- the hard limit is the kernel's from the start. */
int mv_cg_create_later(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n);
/* Thread pool: registers a v1 soft-limit threshold of `soft` bytes through control_fd (the
 * cgroup's cgroup.event_control; notify_fd: its eventfd, usage_fd: its memory.usage_in_bytes),
 * then makes the eventfd readable once, so that its owner reads usage again: usage may have
 * crossed the limit before there was a threshold to say so. 0 or -errno (why says it; -ENOENT
 * or -ENODEV: the cgroup was removed meanwhile). */
int mv_cg_register_soft(int control_fd, int notify_fd, int usage_fd, int64_t soft, char *why,
                        size_t n);
/* Thread pool, v1: the cgroup of a gone worker (w, its files still open) becomes the
 * cgroup of <run>/w<slot>.<gen>, instead of a new one: renamed, its peak reset, its pending
 * threshold events drained, its OOM kills so far set aside (mv_cg_oom_kills counts from
 * here). Its soft-limit threshold stays registered: that registration is what a new v1
 * cgroup costs (cgroup.event_control waits for an RCU grace period, 5-15 ms here). Refused
 * (-EBUSY) while a process is left in it, (-E2BIG) when more than `max_left` bytes are still
 * charged to it (page cache its worker wrote), (-EINVAL) when it is not a v1 cgroup with the
 * run's limits now; `why` says which, and the cgroup keeps its name and files. */
int mv_cg_reuse(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, int64_t max_left, char *why,
                size_t n);
/* Whether a cgroup was made with the limits `cg` makes cgroups with now (v1 only). */
bool mv_cg_reusable(const mv_cg_t *cg, const mv_cgw_t *w);
/* Its files moved to another mv_cgw_t: w holds nothing now (nothing is closed). */
void mv_cg_forget(mv_cgw_t *w);
/* Closes a worker cgroup's files (on the loop, once the worker is reaped). */
void mv_cg_close(mv_cgw_t *w);
/* Thread pool: kills what is left in the cgroup (a worker's own children), then removes it,
 * retrying briefly while the kernel empties it. 0 or -errno (reason in `why`). */
int mv_cg_remove(mv_cg_version_t v, const char *path, char *why, size_t n);
/* mv_cg_remove that also counts the processes it killed into *killed and appends their pids
 * ("1,2,3") to `pids` (stale.c reports them). */
int mv_cg_remove_counted(mv_cg_version_t v, const char *path, int *killed, char *pids, size_t pn,
                         char *why, size_t n);
/* mv_cg_remove that first gives the processes in it up to `patient_ms` to leave by
 * themselves, and kills only what is left then: a template's cgroup, where a worker it forked
 * last may still be moving itself into its own cgroup (on v1 a write to cgroup.procs that can
 * wait ~10 ms in the kernel; killed, it was a worker lost at its birth). */
int mv_cg_remove_patient(mv_cg_version_t v, const char *path, int patient_ms, char *why, size_t n);

/* Reads usage and peak; anon too when usage is at least `anon_from` (memory.stat costs
 * ~6-12 us, lags the charges on v1, and anon <= usage: below that it cannot matter). With a
 * resettable kernel peak below anon_from and the observe-only hard limit, usage is carried
 * from a read < 10 ms old instead (usage_fresh false): it cannot matter either. On v2 a
 * lifted memory.high is armed at the soft limit again when usage is under it. */
int mv_cg_read(mv_cgw_t *w, int64_t anon_from, mv_cg_reading_t *r);
/* Starts a new peak window (a task begins). */
int mv_cg_reset_peak(mv_cgw_t *w);
/* Consumes a notification (notify_fd readable): MV_CG_EV_* bits, or -errno. On v2 a
 * "high" event lifts memory.high to "max" at once if usage is still at or over the soft
 * limit: it only had to say that the limit was crossed, and left in place it would throttle
 * the task the soft limit lets finish. (The caller then watches the worker while its usage
 * stays over the limit; the reading that finds it under arms memory.high again.) */
int mv_cg_notified(mv_cgw_t *w);
/* Lowers the hard limit (v1 memory.limit_in_bytes and memsw, v2 memory.max) to `bytes`:
 * for a worker that drains after a memory stop, so that the kernel, not a reading, bounds
 * how far it grows while it finishes. -EBUSY (nothing written) when usage is within a MiB of
 * it; 0 or -errno. */
int mv_cg_cap(mv_cgw_t *w, int64_t bytes);
/* How many times the kernel OOM-killed in this cgroup (since it was taken, when reused). */
int mv_cg_oom_kills(mv_cgw_t *w, uint64_t *n);
/* Whether process pid is in w or in a cgroup inside w (its /proc/PID/cgroup names one: a
 * worker may make cgroups in its own and move itself into one, as a v2 delegation asks,
 * and w's figures and limits still hold it): 1, or 0 when someone moved it out; -errno when
 * that cannot be told (the file unreadable, the process gone). */
int mv_cg_holds(const mv_cgw_t *w, pid_t pid);

/* Parsers, exposed for tests. */
/* Whether rel, a process's cgroup as /proc/PID/cgroup names it (relative to the reader's
 * cgroup namespace), is the cgroup at absolute path `path` or one inside it. */
bool mv_cg_path_holds(const char *path, const char *rel);
int mv_cg_parse_stat(const char *text, const char *key, int64_t *out);
/* The v1 memory (or the v2) path in /proc/self/cgroup text. 0, -ENOENT or -EINVAL. */
int mv_cg_parse_proc_cgroup(const char *text, mv_cg_version_t v, char **path);
/* libcgroup's message for an ECG* code, without its 2.0.2 bugs (off by one from 50022 on,
 * a crash on ECGNONEMPTY). */
const char *mv_cg_strerror(int code);

#endif
