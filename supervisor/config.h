/*
 * config: INI file (inih) -> one immutable mv_config_t.
 *
 * Every key lives in one table (mv_config_options): section, name, type, default, bounds and
 * a line of doc. The parser, `-o section.key=value` overrides, `memvisor check` and the test
 * of conf/memvisor.ini all read that table, so a key exists in exactly one place.
 *
 * Mistakes are collected, not fatal one by one: each is one line
 *     FILE:LINE: [section] key: reason
 * (overrides use "-o:N" as FILE:LINE, N being the 1-based position of the -o flag).
 */
#ifndef MV_CONFIG_H
#define MV_CONFIG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { MV_PROTO_API, MV_PROTO_LINES, MV_PROTO_NONE } mv_protocol_t;
/* [recycle] target: what a memory recycle replaces (kids.h). */
typedef enum { MV_TARGET_WORKER, MV_TARGET_CHILD } mv_target_t;
/* [recycle] child_signal, in the order of options.c's choices. */
typedef enum {
    MV_CSIG_TERM,
    MV_CSIG_INT,
    MV_CSIG_QUIT,
    MV_CSIG_HUP,
    MV_CSIG_USR1,
    MV_CSIG_USR2
} mv_child_signal_t;
typedef enum { MV_METRIC_PRIVATE, MV_METRIC_RSS } mv_metric_t;
typedef enum { MV_LOGFMT_TEXT, MV_LOGFMT_JSON } mv_logfmt_t;
typedef enum { MV_LVL_DEBUG, MV_LVL_INFO, MV_LVL_WARN, MV_LVL_ERROR } mv_level_t;
typedef enum { MV_CGMODE_AUTO, MV_CGMODE_V1, MV_CGMODE_V2, MV_CGMODE_OFF } mv_cgmode_t;
typedef enum { MV_REAP_AUTO, MV_REAP_YES, MV_REAP_NO } mv_reapmode_t;
typedef enum { MV_ESC_OFF, MV_ESC_FACTOR, MV_ESC_STEP } mv_escmode_t;
typedef enum { MV_CONFIRM_ISOLATE, MV_CONFIRM_OFF } mv_confirm_t;
typedef enum { MV_PROGRESS_AUTO, MV_PROGRESS_ON, MV_PROGRESS_OFF } mv_progress_mode_t;

/* A size option's value while it is "auto", until mv_config_finish derives it. */
#define MV_CONFIG_AUTO (-1)

/* Where a value came from, for error messages that name the line and for `memvisor check`. */
typedef struct mv_origin {
    const char *file; /* points at mv_config_t.path, "-o", or NULL for the default */
    int line;
    const char *via; /* NULL, or how mv_config_finish made the value from what was written:
                      * "derived from memory_hard (3/4 of it)", "relative to ..." */
} mv_origin_t;

/* Sizes are bytes, durations milliseconds; 0 means "off" where the doc says so. */
typedef struct mv_config {
    struct {
        int workers;          /* 0 = one per online CPU (resolved by mv_config_finish) */
        int max_starting;     /* workers starting at once; 0 = twice the online CPUs (same) */
        int64_t grace_period; /* ms running tasks get to finish after SIGINT/SIGTERM */
        mv_cgmode_t cgroup;   /* auto|v1|v2|off */
        char *cgroup_parent;  /* "" = memvisor's own memory cgroup */
        char *state_dir;      /* snapshots and run state; absolute after mv_config_finish */
        int keep_runs;        /* run directories kept in state_dir; 0 = all */

        mv_reapmode_t subreaper; /* auto|yes|no: reap orphans reparented to memvisor */
        char *pause_below;       /* SIZE|N%|0: host MemAvailable under which dispatch pauses */
        /* resolved by mv_config_finish (config_ext.c) */
        int64_t pause_bytes; /* pause_below as bytes; 0 = off or a percentage */
        int pause_permille;  /* pause_below as thousandths of MemTotal; 0 = off or bytes */
    } supervisor;
    struct {
        char *command;          /* shell-like words; `memvisor run -- CMD...` overrides */
        mv_protocol_t protocol; /* api|lines|none */
        int prefetch;           /* tasks in flight per worker */
        int64_t ready_timeout;  /* ms from spawn to HELLO (api) */
        int64_t kill_timeout;   /* ms from STOP/SIGTERM to SIGKILL */
        int64_t max_message;    /* largest protocol payload or result line, bytes */
        int fatal_exit;         /* exit code that means "do not respawn" */
        int64_t backoff_min;    /* ms, first delay after a crash loop starts */
        int64_t backoff_max;    /* ms, bound of the exponential backoff */
        int crash_limit;   /* consecutive crashes with no task ending before giving up; 0 = never */
        char *fail_prefix; /* lines: a reply starting with this is a failure */
        char *user;        /* run workers as this user (name or id); "" = memvisor's */
        char *group;       /* ...and group (name or id); "" = the user's primary group */
        /* resolved by mv_config_finish (config_ext.c); used only when user or group is set:
         * the ids to switch to (gid: the user's primary group unless group is set) */
        int64_t uid, gid;
        int template; /* start workers by forking a warm template (api only) */
        int gather;   /* prefetch > 1: read a busy worker's answers in batches */
    } worker;
    struct {
        int64_t max_tasks;           /* recycle after this many tasks; 0 = off */
        int64_t max_tasks_jitter;    /* + uniform random [0, jitter] tasks per worker */
        int64_t max_lifetime;        /* ms; 0 = off */
        int64_t max_lifetime_jitter; /* ms */
        int64_t memory_soft;         /* bytes: finish the task, then recycle; 0 = off; auto (until
                                      * finish): 3/4 of memory_hard */
        int64_t memory_hard;         /* bytes: kill now; 0 = off; auto (until finish): 512M, or 4/3
                                      * of memory_soft when that is more */
        int64_t task_timeout;        /* ms; 0 = off */
        int64_t task_warn;           /* ms; 0 = off */
        mv_metric_t metric;          /* private|rss: what the soft limit compares */
        int64_t sample_interval;     /* ms between /proc or cgroup samples */
        int enforce;                 /* 0 = observe only: would_recycle, never recycle */
        char *escalate;              /* off|Nx|SIZE: a task killed for memory runs again higher */
        int64_t escalate_max;        /* bytes: the highest escalated hard limit; 0 = 4x memory_hard
                                      * (resolved by mv_config_finish) */
        /* resolved by mv_config_finish (config_ext.c) */
        mv_escmode_t escalate_mode;
        double escalate_factor; /* MV_ESC_FACTOR: > 1 */
        int64_t escalate_step;  /* MV_ESC_STEP: bytes added per step */
    } limits;
    struct {
        int max_concurrent;        /* workers recycling at once */
        int64_t spacing;           /* ms between the starts of two planned recycles */
        int64_t handover_headroom; /* bytes above memory_soft a recycled worker may serve on;
                                    * 0 = no bound */
        int spares;                /* workers kept started, ready to take a slot (spares.h) */
        int cgroup_ahead;   /* each slot's next cgroup made while its worker runs (cgahead.h) */
        int successor;      /* a slot's next worker started at its worker's last task (succ.h) */
        int drain_cap;      /* a service worker drains under soft + handover_headroom (pool.c) */
        mv_target_t target; /* worker|child: what a memory recycle replaces */
        mv_child_signal_t child_signal; /* what tells a master's child to stop */
    } recycle;
    struct {
        char *listen; /* addresses to bind and pass to workers, space-separated; "" = none */
        int backlog;  /* listen(2) backlog of those sockets */
    } service;
    struct {
        char *socket; /* control socket path; "" = STATE_DIR/control.sock; "none" = no socket;
                       * absolute after mv_config_finish */
    } control;
    struct {
        char *listen; /* HTTP address of GET /metrics, "" = off */
    } metrics;
    struct {
        char *source;          /* task file, "-" = stdin, redis://... (rurl.h), "" = none */
        char *results;         /* JSON Lines results file, a redis:// stream, or "URL FILE";
                                * "" = none */
        int max_attempts;      /* attempts before a task is quarantined */
        int64_t max_size;      /* longest task line, bytes */
        int accounting;        /* per-task memory and fd readings in the results */
        int resume;            /* continue the batch in an existing results file (--resume) */
        int64_t results_retry; /* ms a failing results write is retried before giving up */
        char *group;           /* Redis source: the consumer group of one batch */
        int64_t claim_idle;    /* ms a task's entry idles before another memvisor takes it */
        int follow;            /* Redis source: wait for new tasks once the stream is empty */
        int64_t redis_retry;   /* ms a lost Redis connection is retried before giving up */
    } tasks;
    struct {
        int detect;               /* leak suspects and snapshots */
        char *kind;               /* auto|word|none|json:FIELD (kind.h), when the worker names
                                   * no kind */
        int window;               /* tasks of a kind the trend is judged over */
        int warmup;               /* a worker's first tasks, left out of the trend */
        int64_t min_slope;        /* bytes retained per task that make a leak */
        int64_t task_growth;      /* bytes one task may retain before it is a suspect */
        int64_t snapshot_timeout; /* ms to wait for a worker's own heap view */
        int history;              /* the worker's last tasks in a snapshot */
        int snapshots_max;        /* snapshot files a run keeps, the newest; 0 = all */
        int heap;                 /* mv_heapmode_t: off|preload|auto (heapmon.h) */
        int python_malloc;        /* mv_heappy_t: auto|yes|no */
        int confirm;              /* mv_confirm_t: isolate|off */
        int64_t settle;           /* ms an isolation's worker idles before it confirms a leak:
                                   * memory held for a time is given back (0 = off) */
    } leak;
    struct {
        mv_logfmt_t format;          /* text|json */
        mv_level_t level;            /* debug|info|warn|error */
        char *file;                  /* "" = stderr */
        int64_t events_max;          /* bytes of events.jsonl before it rotates; 0 = no bound */
        mv_progress_mode_t progress; /* batch progress line on stderr: auto = if a terminal */
    } log;
    char *path;               /* the file loaded last (= files[nfiles - 1]), or NULL */
    struct mv_origin *origin; /* per option, indexed like the table */
    char **files;             /* every file loaded: origins of earlier loads point here */
    size_t nfiles;
} mv_config_t;

typedef enum {
    MV_OPT_INT,      /* plain integer */
    MV_OPT_SIZE,     /* bytes: N, NK, NM, NG, NT (also KiB..TiB, B); 1K = 1024 */
    MV_OPT_DURATION, /* ms: Nms, Ns, Nm, Nh, Nd (decimals allowed); 0 needs no unit */
    MV_OPT_BOOL,     /* yes/no, true/false, on/off, 1/0 */
    MV_OPT_STRING,
    MV_OPT_ENUM, /* one of `choices`, stored as int index */
} mv_opt_type_t;

typedef struct mv_option {
    const char *section;
    const char *name;
    mv_opt_type_t type;
    size_t offset;              /* into mv_config_t */
    const char *def;            /* default, as it would be written in the file */
    int64_t min, max;           /* bounds for INT/SIZE/DURATION (in bytes / ms) */
    const char *const *choices; /* ENUM: NULL-terminated */
    const char *doc;            /* one line */
    size_t size;                /* of the field: int or int64_t (INT), int64_t (SIZE,
                                 * DURATION), int (BOOL, ENUM), char * (STRING) */
    bool reload;                /* a reload applies it (to workers started from then on);
                                 * false: a running memvisor keeps it until restart */
} mv_option_t;

/* Collected mistakes: each entry is a full "FILE:LINE: [section] key: reason" line. */
typedef struct mv_errors {
    char **msg;
    size_t n, cap;
} mv_errors_t;

/* The table, and its size. */
const mv_option_t *mv_config_options(size_t *n);
/* Finds an option; NULL when unknown. */
const mv_option_t *mv_config_find(const char *section, const char *name);

/* Fills *c with every default. 0 or -ENOMEM. */
int mv_config_init(mv_config_t *c);
/* Parses an INI file over the current values. 0, or -EINVAL with errs filled, or -errno
 * when the file cannot be read (also reported in errs). */
int mv_config_load(mv_config_t *c, const char *path, mv_errors_t *errs);
/* Applies one "section.key=value" override (the Nth -o flag). 0 or -EINVAL (errs filled). */
int mv_config_override(mv_config_t *c, const char *spec, int nth, mv_errors_t *errs);
/* Cross-key checks (soft above hard, ...) and resolution of automatic values: workers = 0,
 * memory_soft/memory_hard = auto, relative state_dir and control socket (paths.h has the
 * rule: against the config file's directory, or the working directory). Call once after
 * load and overrides. 0 or -EINVAL (errs filled). */
int mv_config_finish(mv_config_t *c, mv_errors_t *errs);
/* Whether the control socket a run would bind ([control] socket, else STATE_DIR/control.sock)
 * fits in a sockaddr_un: 0, or -EINVAL with the mistake in errs, against the key that made
 * the path. For `run` and `check` (a report or a status needs no socket of its own): the run
 * refused it only at its start, "control socket path too long", naming neither. */
int mv_config_check_socket(const mv_config_t *c, mv_errors_t *errs);
/* Whether option `o` has the same value in both. */
bool mv_config_same(const mv_config_t *a, const mv_config_t *b, const mv_option_t *o);

/* The whole sequence: defaults, the file (path may be NULL), each -o override (numbered from
 * 1), the cross-key checks. 0, -EINVAL with every mistake in errs, or -ENOMEM. The caller
 * frees c either way. */
int mv_config_build(mv_config_t *c, const char *path, const char *const *overrides, int n,
                    mv_errors_t *errs);
/* mv_config_build for a reload, in the supervisor's loop: the file is opened without waiting
 * and must be a regular file. A FIFO at the path (which mv_config_build reads, blocking, at
 * the start) would hold the loop until some writer came; a reload of one fails instead,
 * "not a regular file", and nothing changes. */
int mv_config_rebuild(mv_config_t *c, const char *path, const char *const *overrides, int n,
                      mv_errors_t *errs);
/* mv_config_build, and every mistake (or the lack of memory) said on `out`. */
int mv_config_build_or_say(mv_config_t *c, const char *path, const char *const *overrides, int n,
                           FILE *out);
/* Writes the effective settings as an INI file: one "; doc (default X)" line above every
 * key, and after each value, as a comment, where it came from: FILE:LINE, -o N, default,
 * and how it was derived (e.g. "derived from memory_hard (3/4 of it)"). */
void mv_config_print(const mv_config_t *c, FILE *out);
/* Where a key's value came from (after load/override); {NULL,0} for defaults. */
mv_origin_t mv_config_origin(const mv_config_t *c, const char *section, const char *name);
void mv_config_free(mv_config_t *c);

/* The one of `choices` (NULL-terminated) nearest to a misspelling of it ("line" -> "lines",
 * case-insensitive, a quarter of the word's letters wrong at most), or NULL. */
const char *mv_closest_word(const char *word, const char *const *choices);

/* Value parsers, exposed for tests and for the CLI. 0 or -EINVAL/-ERANGE; *why gets a
 * static reason on failure. */
int mv_parse_size(const char *s, int64_t *out, const char **why);
int mv_parse_duration(const char *s, int64_t *out_ms, const char **why);
int mv_parse_bool(const char *s, int *out, const char **why);
/* [limits] escalate: off, a factor ("2x", "1.5x": > 1, at most 100) or a step (a size > 0). */
int mv_parse_escalate(const char *s, mv_escmode_t *mode, double *factor, int64_t *step,
                      const char **why);
/* [supervisor] pause_below: 0 (off), a size, or a percentage of MemTotal ("10%", "2.5%":
 * kept as thousandths, at least 0.1%, below 100%). */
int mv_parse_pause(const char *s, int64_t *bytes, int *permille, const char **why);
/* Splits a command line into argv (single/double quotes and backslash escapes, no
 * expansion). *argv is NULL-terminated and freed with mv_argv_free. 0, -EINVAL or -ENOMEM. */
int mv_split_words(const char *s, char ***argv, int *argc, const char **why);
void mv_argv_free(char **argv);

void mv_errors_add(mv_errors_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mv_errors_print(const mv_errors_t *e, FILE *out);
/* The errors, then "memvisor: configuration has N error(s)". */
void mv_errors_say(const mv_errors_t *errs, FILE *out);
void mv_errors_free(mv_errors_t *e);

#endif
