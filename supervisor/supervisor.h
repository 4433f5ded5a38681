/*
 * supervisor: the root of a run. One struct with one sub-struct per module (STYLE §7), one
 * libuv loop, signals through uv_signal_t, and the exit code that says what happened.
 */
#ifndef MV_SUPERVISOR_H
#define MV_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cgroup.h"
#include "config.h"
#include "log.h"
#include "leak.h"
#include "pool.h"
#include "results.h"
#include "rundir.h"
#include "tasks.h"

/* Exit codes (DESIGN §8); a run stopped by a signal before every task ended exits 128+N. */
enum {
    MV_EXIT_OK = 0,       /* every task ok */
    MV_EXIT_TASKS = 1,    /* some task failed or was quarantined */
    MV_EXIT_USAGE = 2,    /* usage or configuration error */
    MV_EXIT_CANT_RUN = 3, /* spawn, cgroup or I/O failure; workers crash-looped or asked to stop */
};

typedef struct mv {
    uv_loop_t loop;
    const mv_config_t *cfg;
    const char *config_path; /* for the first log line; NULL = built-in defaults */
    char **argv;             /* the worker command */
    mv_log_t log;
    mv_cg_t cg;
    mv_rundir_t run;     /* the run directory: events, snapshots, run.json */
    mv_leak_t *leak;     /* NULL when [leak] detect is off */
    char self_exe[4096]; /* this binary, for the exec shim */
    mv_tasks_t tasks;
    mv_results_t results;
    mv_pool_t pool;
    uv_signal_t sig[3]; /* SIGINT, SIGTERM, SIGHUP */
    bool sig_open;
    int stop_signal; /* the first SIGINT/SIGTERM, 0 if none */
    bool stopping;
    bool cant_run; /* exit 3 */
    uint64_t started_ms;
    char started_iso[48];
} mv_t;

/* Runs a batch (or a `none` pool) to its end. Returns the exit code; the log says why. */
int mv_run(mv_t *mv);

#endif
