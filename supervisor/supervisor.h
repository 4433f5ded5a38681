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
#include "control.h"
#include "leak.h"
#include "listen.h"
#include "notify.h"
#include "pool.h"
#include "results.h"
#include "rundir.h"
#include "tasks.h"
#include "timeline.h"

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
    const char *config_path;      /* for the first log line; NULL = built-in defaults */
    const char *const *overrides; /* the -o settings, re-applied by a reload */
    int noverrides;
    char **argv;        /* the worker command */
    bool argv_from_cli; /* after `--`: a reload keeps it */
    mv_log_t log;
    mv_cg_t cg;
    mv_rundir_t run;     /* the run directory: events, snapshots, run.json */
    mv_leak_t *leak;     /* NULL when [leak] detect is off */
    char self_exe[4096]; /* this binary, for the exec shim */
    mv_tasks_t tasks;
    mv_results_t results;
    mv_timeline_t timeline; /* <run dir>/timeline.csv; path NULL when not open */
    mv_pool_t pool;
    mv_listen_t listen; /* [service] listen sockets, or socket activation's */
    mv_control_t control;
    bool control_open;
    mv_notify_t notify;
    bool announced;         /* READY=1 sent: every slot had a ready worker */
    mv_config_t **old_cfgs; /* configurations made by reloads, freed at the end */
    char ***old_argvs;      /* worker commands set by reloads (argv arrays) */
    int nold, nold_argv, reloads;
    uv_signal_t sig[3]; /* SIGINT, SIGTERM, SIGHUP */
    bool sig_open;
    int stop_signal; /* the first SIGINT/SIGTERM, 0 if none */
    bool stopping;
    bool cant_run; /* exit 3 */
    uint64_t started_ms;
    char started_iso[48];
} mv_t;

/* Runs a batch to its end, or a service until it is stopped. Returns the exit code; the log
 * says why. */
int mv_run(mv_t *mv);

/* ---- shared-private: supervisor.c and service.c ---- */

/* Stops the run: gracefully (running tasks finish within grace_period) or at once. */
void mv__stop(mv_t *mv, bool graceful);
/* service.c: the control socket's commands, and reload (also SIGHUP). */
json_t *mv__control(void *arg, const char *cmd, json_t *req, char *err, size_t errlen);
/* Re-reads the configuration and applies it by a rolling replacement; the reply, or NULL
 * with `err` (nothing changed). */
json_t *mv__reload(mv_t *mv, char *err, size_t errlen);
/* Frees what reloads replaced. */
void mv__reload_free(mv_t *mv);

#endif
