/*
 * rundir: the directory a run leaves behind (docs/run-files.md): run.json, events.jsonl,
 * snapshots/, and <state_dir>/latest pointing at it. Every file appears atomically.
 *
 * Runs may share a state directory (two pools of one program, two batches with their own
 * results files and control sockets: what they could not share, the results file and the
 * control socket, are refused before the run directory is made). Each run holds an flock on
 * its own run directory for its whole life (runlock.h), so a run whose run.json has no
 * "ended" is still running only while that lock is held; otherwise it died, and pruning may
 * remove it (mv_rundir_running, mv_rundir_prune). `latest` names the newest run started.
 */
#ifndef MV_RUNDIR_H
#define MV_RUNDIR_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct mv_rundir {
    char *dir;      /* absolute path of the run directory; NULL when there is none */
    char *id;       /* "20261121T160000Z-4242" */
    int events_fd;  /* events.jsonl (O_APPEND), -1 when there is none */
    int lock_fd;    /* the run directory, flocked for the run; -1 when there is none */
    unsigned snaps; /* snapshots named so far */
} mv_rundir_t;

/* What mv_rundir_prune did. */
typedef struct mv_prune {
    int kept;    /* run directories among the newest `keep` */
    int running; /* older ones left alone: their memvisor is alive (or might be) */
    int removed; /* older ones removed */
    int failed;  /* older ones that could not be removed (the first reason is in `why`) */
} mv_prune_t;

/* Makes <state_dir>/<id>/ and locks it, makes snapshots/, opens events.jsonl, points
 * `latest` at it. 0 or -errno (reason in `why`). */
int mv_rundir_open(mv_rundir_t *r, const char *state_dir, pid_t pid, char *why, size_t n);
/* Whether the `latest` run of `state_dir` is alive (holds its lock): 1 (with its pid
 * in *pid when this pid namespace can see it, else 0), 0 (none: a run.json without "ended"
 * there is a run that died), or -errno. */
int mv_rundir_running(const char *state_dir, pid_t *pid);
/* The path of the next snapshot file ("NNNN-REASON-KIND-wSLOT.json"); malloc'd. Its number
 * NNNN (1, 2, ... in the order they are named) in *num. */
char *mv_rundir_snapshot_path(mv_rundir_t *r, const char *reason, const char *kind, int slot,
                              unsigned *num);
/* Keeps a run's newest snapshots ([leak] snapshots_max): removes the snapshot files of the
 * directory `path` is in numbered num - keep or lower (only "NNNN-....json" files: a
 * ".json.new" being written is left to its writer). The number of files removed, or -errno
 * when the directory cannot be read. Thread-safe (runs in the thread pool). */
int mv_rundir_trim_snapshots(const char *path, unsigned num, unsigned keep);
/* Writes `doc` as <dir>/<name> through <name>.new + rename. 0 or -errno. Thread-safe. */
int mv_json_write_atomic(const char *path, json_t *doc);
void mv_rundir_close(mv_rundir_t *r);

/* Whether `name` is a run directory's name ("20261121T160000Z-4242"); its pid in *pid. */
bool mv_rundir_name(const char *name, pid_t *pid);
/* Removes the run directories of `state_dir` beyond the newest `keep` (by name, i.e. start
 * time) whose memvisor is gone: not while anyone holds a flock on the
 * directory (or on a `lock` file in it), nor while the pid in its name is alive (a run from before
 * locks, or one between mkdir and flock; a reused pid only keeps a run longer). Only entries named
 * like runs, only real directories (never through a symlink), nothing else in state_dir.
 * A missing state_dir is fine (nothing to do). 0, or -errno when state_dir cannot be read
 * (why filled); removal failures are counted in res->failed, the first with its reason. */
int mv_rundir_prune(const char *state_dir, int keep, mv_prune_t *res, char *why, size_t n);

#endif
