/*
 * rundir: the directory a run leaves behind (docs/run-files.md): run.json, events.jsonl,
 * snapshots/, and <state_dir>/latest pointing at it. Every file appears atomically.
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
    unsigned snaps; /* snapshots named so far */
} mv_rundir_t;

/* Makes <state_dir>/<id>/ and snapshots/, opens events.jsonl, points `latest` at it.
 * 0 or -errno (reason in `why`). */
int mv_rundir_open(mv_rundir_t *r, const char *state_dir, pid_t pid, char *why, size_t n);
/* The path of the next snapshot file ("NNNN-REASON-KIND-wSLOT.json"); malloc'd. */
char *mv_rundir_snapshot_path(mv_rundir_t *r, const char *reason, const char *kind, int slot);
/* Writes `doc` as <dir>/<name> through <name>.new + rename. 0 or -errno. Thread-safe. */
int mv_json_write_atomic(const char *path, json_t *doc);
void mv_rundir_close(mv_rundir_t *r);

#endif
