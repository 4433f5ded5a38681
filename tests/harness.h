/*
 * harness: end-to-end tests drive the real build/memvisor binary.
 *
 * A run gets a private temp directory with its tasks file, results file and config. The
 * log (memvisor's stderr) comes back through a pipe, so a test can block until an event
 * appears in it (run_wait_for) instead of sleeping; the summary (stdout) goes to a file.
 * memvisor is started with PR_SET_PDEATHSIG, so a test that dies takes it along.
 */
#ifndef MV_TEST_HARNESS_H
#define MV_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* The build tree's binaries: under $MV_BUILD when it is set (a copy of the build elsewhere:
 * check_checkout runs the other-uid tests from a 0700 directory), else under the build this
 * test binary belongs to. */
const char *mv_test_path(const char *rel);
#define MEMVISOR   mv_test_path("memvisor")
#define MVTEST     mv_test_path("helpers/mvtest_worker")
#define LEAKY      mv_test_path("examples/leaky_worker")
#define SOURCE_DIR MV_SOURCE_DIR

typedef struct mvrun {
    char dir[64];
    char tasks[96];
    char results[96];
    char summary_path[96];
    char state_opt[128]; /* -o supervisor.state_dir=<dir>/state */
    pid_t pid;
    int log_fd; /* read end of memvisor's stderr */
    char *log;  /* everything read so far, NUL-terminated */
    size_t log_len, log_off, log_cap;
    int code;     /* exit code, or 128 + signal */
    json_t **res; /* parsed result lines */
    size_t nres;
    uid_t uid; /* set by run_as: run memvisor as this user (and its group) */
    gid_t gid;
    char *copies[8]; /* binaries copied where that user can run them */
    int ncopies;
    bool own_group;          /* set before run_start: memvisor leads its own process group */
    bool service;            /* set before run_start: no --tasks/--results (a service run) */
    const char *const *wrap; /* set before run_start: a command memvisor runs under (argv) */
    int log_pipe_size;       /* set before run_start: F_SETPIPE_SZ of the stderr pipe (0 = the
                              * default); with a small pipe, a test that does not read the log
                              * stalls memvisor's log writer at once */
    const char *cgroup;      /* set before run_start: a cgroup directory memvisor starts in
                                (joined as root, before any uid change: as systemd does) */
} mvrun_t;

/* Makes the temp dir; writes `tasks` (may be NULL: no tasks file). */
void run_init(mvrun_t *r, const char *tasks);
/* Before run_start: run memvisor as uid:gid. memvisor, and any argument naming a file of the
 * build tree, are copied into the run's directory first: the build tree may sit under a
 * directory that user cannot enter (a 0700 home, mktemp -d). false, with a message on stderr,
 * when that user cannot reach the run's directory either (the test should skip). */
bool run_as(mvrun_t *r, uid_t uid, gid_t gid);
/* `path` as another user can run it, for workers that run as [worker] user while memvisor
 * runs as root: a file of the build tree is copied into the run's directory, which is made
 * enterable by anyone; any other path is returned as it is. */
const char *run_reachable(mvrun_t *r, const char *path);
/* Writes a file in the run's dir and returns its path (static until the next call). */
const char *run_file(mvrun_t *r, const char *name, const char *text);
/* Starts `memvisor SUBCOMMAND --tasks T --results R ARGS...` (args NULL-terminated).
 * With stdin_text, the tasks come from a pipe on stdin (--tasks -). */
void run_start(mvrun_t *r, const char *const *args, const char *stdin_text);
/* Blocks until a log line containing `needle` arrives after the previous match; returns a
 * copy of that line (free it). Fails the test at EOF. */
char *run_wait_for(mvrun_t *r, const char *needle);
/* Reads whatever log memvisor has written so far, without blocking: a test that waits on
 * something else meanwhile keeps memvisor's stderr pipe from filling up. */
void run_drain(mvrun_t *r);
/* Reads the rest of the log, reaps memvisor, parses the results; returns the exit code. */
int run_finish(mvrun_t *r);
/* `memvisor CMD --socket SOCK` (status, stop...): its exit code; its output is printed when
 * it is not 0. */
int run_ctl(const char *cmd, const char *sock);
/* The output of `memvisor CMD [--json] --socket <the run's control socket>` asked of the
 * running r, which must answer (exit 0). Free it. */
char *run_ask(const mvrun_t *r, const char *cmd, bool json);
/* `memvisor workers N` to r's control socket: asserts it succeeded. */
void run_workers(const mvrun_t *r, int n);
/* The `status --json` reply of the running r (json_decref it). */
json_t *run_status(const mvrun_t *r);
/* The argv of `memvisor run -o OPTS... -- CMD...` (both NULL-terminated, e.g. RUN_OPTS and
 * RUN_CMD), built in a. */
typedef struct mvargs {
    const char *v[64];
} mvargs_t;
const char *const *run_argv(mvargs_t *a, const char *const *opts, const char *const *cmd);
#define RUN_OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define RUN_CMD(...)  ((const char *const[]){__VA_ARGS__, NULL})
/* Shorthand: init, start, finish. */
int run_batch(mvrun_t *r, const char *tasks, const char *const *args);
/* Counts log lines containing `needle`. */
int run_count(const mvrun_t *r, const char *needle);
/* Writes the run's whole log to stderr, between two marker lines. */
void run_print_log(const mvrun_t *r);
/* ck_assert_msg for a test of a run's log: when `cond` fails, the whole log goes to stderr
 * first. A Check message is cut at 8 KiB and one longer than 4 KiB fails as "Message string
 * too long": a log does not belong in it. */
#define ck_assert_log(r, cond, ...)      \
    do {                                 \
        bool ok_ = (cond);               \
        if (!ok_)                        \
            run_print_log(r);            \
        ck_assert_msg(ok_, __VA_ARGS__); \
    } while (0)
/* The summary memvisor printed. */
char *run_summary(mvrun_t *r);
/* Asserts that tasks 1..n (minus lines listed in `skip`, 0-terminated) each have exactly one
 * result line, and no other task has any. */
void run_assert_once(const mvrun_t *r, size_t n, const size_t *skip);
/* Asserts that no task has two result lines and every line names a task in 1..n. */
void run_assert_at_most_once(const mvrun_t *r, size_t n);
/* The result line of task `id` (NULL if none). */
json_t *run_result(const mvrun_t *r, size_t id);
/* Removes the temp dir and frees everything. */
void run_free(mvrun_t *r);
/* Forgets what the last run left (log, parsed results, exit code) but keeps the dir and its
 * files, so that memvisor can run again on them (resume). */
void run_again(mvrun_t *r);
/* Waits for the n-th log line containing `needle` after the previous match. */
void run_wait_nth(mvrun_t *r, const char *needle, int n);
/* Lines of a file (0 if it cannot be read). */
size_t file_lines(const char *path);

/* How many result lines each worker pid produced: the largest count, and (distinct) how
 * many pids there were. */
long long run_max_per_pid(const mvrun_t *r, int *distinct);
/* A whole file as a NUL-terminated string (free it); NULL if unreadable. */
char *read_text(const char *path);
/* A tasks text of `n` copies of `line`. */
char *repeat_line(const char *line, int n);
/* Integer field of a result, or -1. */
long long jint(json_t *o, const char *key);
const char *jstr(json_t *o, const char *key);
/* Runs argv in the source tree; its stdout and stderr land in *out (free it). Returns the
 * exit code, or 128 + signal. */
int run_capture(const char *const *argv, char **out);
/* Whether a process exists. */
bool pid_alive(pid_t pid);
/* The moved-out drill (check_cgroup_e2e on v1, check_cgroup_v2): memvisor, started in
 * `cgroup` (NULL: the test's own), with one worker and a 24 MiB hard limit; the worker of a
 * `hold` task is written into `procs` (another cgroup's cgroup.procs, as another tool would),
 * its cgroup left in place, and then leaks 4 MiB a task. Asserts that memvisor says so once,
 * gives the task in hand no figures and the later ones their own, and kills it past its hard
 * limit. */
void run_moved_out_drill(mvrun_t *r, const char *cgroup, const char *procs);
/* A worker that makes a cgroup inside its own and moves itself into it (as a v2 delegation
 * asks of a process that gives cgroups to children) is still in its cgroup: no cgroup_lost,
 * its figures the kernel's (the grow task's peak and ~6 MiB retained: ~1.8 s, so samples
 * look at its placement after the move). It was taken for moved out (cgroup_lost, then its
 * figures read from /proc: peak_source "sampled"). Under `cgroup` as run_moved_out_drill. */
void run_inside_own_drill(mvrun_t *r, const char *cgroup);

/* A terminal's byte stream with a status line on it (log.h): draws ("\r" TEXT "\033[K"),
 * erasures ("\r\033[K") and whole lines (ending in "\n", or "\r\n" from a pty). */
typedef struct screen {
    char **lines; /* the lines, in order, without their end (free with screen_free) */
    bool *shown;  /* per line: a status line was on screen where it began (not erased) */
    size_t nlines;
    char **draws; /* the status line's texts, in order */
    size_t ndraws;
    size_t erasures;
    bool erased_last;     /* nothing was drawn after the last erasure */
    bool line_since_draw; /* (parsing) a line ended after the last draw: the cursor moved on */
} screen_t;
/* Parses buf[0..n) into s. false, with the offset in *bad, where a "\r" or an escape sits
 * inside a line: something was drawn into it (a line that does not end is bad too). */
bool screen_parse(const char *buf, size_t n, screen_t *s, size_t *bad);
void screen_free(screen_t *s);

#endif
