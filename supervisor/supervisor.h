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
#include "exitcode.h"
#include "hostmem.h"
#include "leak.h"
#include "listen.h"
#include "metrics_http.h"
#include "notify.h"
#include "pool.h"
#include "reaper.h"
#include "results.h"
#include "rtasks.h"
#include "rundir.h"
#include "rurl.h"
#include "tasks.h"
#include "ticker.h"
#include "timeline.h"

struct mv;

/* What the control socket and SIGHUP reach (commands.c, handed over by main.c). */
typedef struct mv_commands {
    /* A control request: the reply, or NULL with `err` (control.h's handler). */
    json_t *(*control)(void *mv, const char *cmd, json_t *req, char *err, size_t errlen);
    /* Re-reads the configuration and applies it by a rolling replacement; the reply, or NULL
     * with `err` (nothing changed). */
    json_t *(*reload)(struct mv *mv, char *err, size_t errlen);
    /* Frees what reloads kept (old configurations and commands). */
    void (*release)(struct mv *mv);
    /* The Prometheus exposition of the run now, appended to out. 0 or -ENOMEM. */
    int (*metrics)(struct mv *mv, mv_buf_t *out);
} mv_commands_t;

typedef struct mv {
    uv_loop_t loop;
    const mv_config_t *cfg;
    const char *config_path;      /* for the first log line; NULL = built-in defaults */
    const char *const *overrides; /* the -o settings, re-applied by a reload */
    int noverrides;
    char **argv;        /* the worker command */
    bool argv_from_cli; /* after `--`: a reload keeps it */
    /* --tasks, --results, --resume: they win over the file at a reload too */
    bool tasks_from_cli, results_from_cli, resume_from_cli;
    mv_log_t log;
    mv_cg_t cg;
    mv_rundir_t run;     /* the run directory: events, snapshots, run.json */
    mv_leak_t *leak;     /* NULL when [leak] detect is off */
    char self_exe[4096]; /* this binary, for the exec shim */
    mv_tasks_t tasks;
    mv_results_t results;
    mv_timeline_t timeline; /* <run dir>/timeline.csv; path NULL when not open */
    mv_pool_t pool;
    mv_ticker_t ticker; /* progress: the line on a terminal, the status figures */
    bool service;       /* no task source: workers make their own tasks (or none) */
    const mv_commands_t *commands;
    mv_listen_t listen; /* [service] listen sockets, or socket activation's */
    mv_control_t control;
    bool control_open;
    mv_metrics_http_t metrics; /* [metrics] listen */
    bool metrics_open;
    mv_notify_t notify;
    bool announced;         /* READY=1 sent: every slot had a ready worker */
    mv_config_t **old_cfgs; /* configurations made by reloads, freed at the end */
    char ***old_argvs;      /* worker commands set by reloads (argv arrays) */
    int nold, nold_argv, reloads;
    uv_signal_t sig[3]; /* SIGINT, SIGTERM, SIGHUP */
    bool sig_open;
    mv_reaper_t reaper;   /* [supervisor] subreaper: orphans reparented to memvisor */
    mv_hostmem_t hostmem; /* [supervisor] pause_below: the host's available memory */
    int stop_signal;      /* the first SIGINT/SIGTERM, 0 if none */
    bool stop_requested;  /* `memvisor stop` came first (before any signal) */
    int64_t not_run;      /* at exit: tasks that never got a final line (-1: unknown) */
    bool stopping;
    bool cant_run; /* exit 3 */
    uint64_t started_ms;
    char started_iso[48];
} mv_t;

/* Runs a batch to its end, or a service until it is stopped. Returns the exit code; the log
 * says why. */
int mv_run(mv_t *mv);

/* Stops the run: gracefully (running tasks finish within grace_period) or at once. */
void mv_stop(mv_t *mv, bool graceful);

#endif
