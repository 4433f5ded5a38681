/*
 * rundir: the directory a run leaves behind (docs/run-files.md): run.json, events.jsonl,
 * snapshots/, and <state_dir>/latest pointing at it. Every file appears atomically.
 *
 * One run at a time per state directory: the run holds an flock on the state directory for
 * its whole life (runlock.h), taken before anything in it is made or changed, so a second
 * memvisor on the same state directory is refused before it touches `latest`, the control
 * socket or anything else. A run whose run.json has no "ended" is still running only while
 * that lock is held; otherwise it died (mv_rundir_running).
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
    int lock_fd;    /* the state directory, flocked for the run; -1 when there is none */
    unsigned snaps; /* snapshots named so far */
} mv_rundir_t;

/* Locks the state directory, makes <state_dir>/<id>/ and snapshots/, opens events.jsonl,
 * points `latest` at it. 0 or -errno (reason in `why`); -EBUSY: another run holds the state
 * directory (`why` names it) and nothing was touched. */
int mv_rundir_open(mv_rundir_t *r, const char *state_dir, pid_t pid, char *why, size_t n);
/* Whether a memvisor run holds `state_dir` now (its `latest` run is alive): 1 (with its pid
 * in *pid when this pid namespace can see it, else 0), 0 (none: a run.json without "ended"
 * there is a run that died), or -errno. */
int mv_rundir_running(const char *state_dir, pid_t *pid);
/* The path of the next snapshot file ("NNNN-REASON-KIND-wSLOT.json"); malloc'd. */
char *mv_rundir_snapshot_path(mv_rundir_t *r, const char *reason, const char *kind, int slot);
/* Writes `doc` as <dir>/<name> through <name>.new + rename. 0 or -errno. Thread-safe. */
int mv_json_write_atomic(const char *path, json_t *doc);
void mv_rundir_close(mv_rundir_t *r);

#endif
