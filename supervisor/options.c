/*
 * options: the one table of every configuration key (section, name, type, default, bounds,
 * one line of doc), and looking keys up in it, with "did you mean" for mistakes. The parser,
 * `-o`, `memvisor check`, conf/memvisor.ini, the man page and docs/configuration.md all follow
 * this table (the tests check the last three against it).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "config.h"
#include "config_int.h"

static const char *const cgroup_choices[] = {"auto", "v1", "v2", "off", NULL};
static const char *const protocol_choices[] = {"api", "lines", "none", NULL};
static const char *const metric_choices[] = {"private", "rss", NULL};
static const char *const format_choices[] = {"text", "json", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const reap_choices[] = {"auto", "yes", "no", NULL};
/* In the order of mv_heapmode_t, mv_heappy_t (heapmon.h) and mv_confirm_t (config.h). */
static const char *const heap_choices[] = {"off", "preload", "auto", NULL};
static const char *const python_malloc_choices[] = {"auto", "yes", "no", NULL};
static const char *const confirm_choices[] = {"isolate", "off", NULL};
static const char *const progress_choices[] = {"auto", "on", "off", NULL};
static const char *const target_choices[] = {"worker", "child", NULL};
/* The order of mv_child_signal_t. */
static const char *const csig_choices[] = {"TERM", "INT", "QUIT", "HUP", "USR1", "USR2", NULL};

/* Section and key are the field's path in mv_config_t, so a key and its field cannot drift.
 * OPT keys take effect on reload; FIXED keys (sockets, the pool's shape, the detector's
 * state) are kept by a running memvisor until it restarts. */
#define OPTION(sec, key, typ, dflt, lo, hi, ch, text, reloadable)                             \
    {                                                                                         \
        .section = #sec, .name = #key, .type = typ, .offset = offsetof(mv_config_t, sec.key), \
        .def = dflt, .min = lo, .max = hi, .choices = ch, .doc = text,                        \
        .size = sizeof(((mv_config_t *)0)->sec.key), .reload = reloadable,                    \
    }
#define OPT(sec, key, typ, dflt, lo, hi, ch, text) \
    OPTION(sec, key, typ, dflt, lo, hi, ch, text, true)
#define FIXED(sec, key, typ, dflt, lo, hi, ch, text) \
    OPTION(sec, key, typ, dflt, lo, hi, ch, text, false)

const mv_option_t mv__options[] = {
    OPT(supervisor, workers, MV_OPT_INT, "0", 0, 1024, NULL,
        "worker processes; 0 = one per online CPU; a reload applies it live (so does "
        "`memvisor workers N`, until the next reload)"),
    OPT(supervisor, max_starting, MV_OPT_INT, "0", 0, 1024, NULL,
        "workers starting at once (from spawn to ready); the others wait their turn with no "
        "ready_timeout running; 0 = twice the online CPUs"),
    OPT(supervisor, grace_period, MV_OPT_DURATION, "30s", 0, DAY, NULL,
        "after SIGINT/SIGTERM, time running tasks get to finish before workers are stopped"),
    FIXED(supervisor, cgroup, MV_OPT_ENUM, "auto", 0, 0, cgroup_choices,
          "per-worker memory cgroup: auto (v2, else v1, else off), v1, v2, off (sample /proc)"),
    FIXED(supervisor, cgroup_parent, MV_OPT_STRING, "", 0, 0, NULL,
          "cgroup under which worker cgroups are made; empty = memvisor's own memory cgroup"),
    FIXED(supervisor, state_dir, MV_OPT_STRING, ".memvisor", 0, 0, NULL,
          "directory for run directories and the control socket; relative: to the config "
          "file's directory (the working directory without one, or from -o)"),
    FIXED(supervisor, keep_runs, MV_OPT_INT, "20", 0, 1000000, NULL,
          "run directories kept in state_dir: older ones whose memvisor is gone are removed at "
          "start; 0 = keep all"),
    FIXED(supervisor, subreaper, MV_OPT_ENUM, "auto", 0, 0, reap_choices,
          "reap orphaned grandchildren of workers (PR_SET_CHILD_SUBREAPER): auto = yes when "
          "memvisor is PID 1 (a container), yes, no"),
    FIXED(supervisor, pause_below, MV_OPT_STRING, "0", 0, 0, NULL,
          "hand out no new task while the host's MemAvailable is under this size or percentage "
          "of MemTotal (running tasks go on); resume above it plus an eighth; 0 = off"),

    OPT(worker, command, MV_OPT_STRING, "", 0, 0, NULL,
        "worker command (shell-style quoting, no expansion); words after -- override it"),
    FIXED(worker, protocol, MV_OPT_ENUM, "api", 0, 0, protocol_choices,
          "how workers get tasks: api (libmemvisor socket), lines (stdin/stdout) or none"),
    FIXED(worker, prefetch, MV_OPT_INT, "1", 1, 4096, NULL,
          "tasks in flight per worker; 1 = lock-step"),
    OPT(worker, ready_timeout, MV_OPT_DURATION, "10s", 1, HOUR, NULL,
        "from spawn to the worker's HELLO (api protocol) before it is killed"),
    OPT(worker, kill_timeout, MV_OPT_DURATION, "5s", 0, HOUR, NULL, "from STOP/SIGTERM to SIGKILL"),
    OPT(worker, max_message, MV_OPT_SIZE, "16M", 4 * KIB, 64 * MIB, NULL,
        "largest protocol payload, result line or output line; a longer answer fails its task"),
    OPT(worker, fatal_exit, MV_OPT_INT, "78", 1, 255, NULL,
        "exit code by which a worker says \"do not respawn me\"; the run then ends"),
    OPT(worker, backoff_min, MV_OPT_DURATION, "100ms", 1, HOUR, NULL,
        "first respawn delay once a slot crash-loops"),
    OPT(worker, backoff_max, MV_OPT_DURATION, "10s", 1, DAY, NULL,
        "bound of the exponential respawn backoff"),
    OPT(worker, crash_limit, MV_OPT_INT, "10", 0, 1000000, NULL,
        "crashes in a row with no task ending (done or quarantined): give up; every start "
        "of the command counts, a spare's or a successor's that fails before it is ready "
        "too; an escalated task whose escalation workers fail this many times in a row "
        "before taking it: quarantined; 0 = never"),
    OPT(worker, fail_prefix, MV_OPT_STRING, "FAIL:", 0, 0, NULL,
        "lines protocol: a reply line starting with this marks the task failed"),
    FIXED(worker, user, MV_OPT_STRING, "", 0, 0, NULL,
          "run workers as this user (name or numeric id; memvisor must run as root); empty = "
          "memvisor's own"),
    FIXED(worker, group, MV_OPT_STRING, "", 0, 0, NULL,
          "run workers with this group (name or numeric id); empty = the user's primary group; "
          "supplementary groups are always dropped"),
    FIXED(worker, template, MV_OPT_BOOL, "no", 0, 1, NULL,
          "yes = run the command once as a template (its start-up before mvw_open) and fork "
          "each worker from it (api only; docs/templates.md)"),
    OPT(worker, gather, MV_OPT_BOOL, "yes", 0, 1, NULL,
        "prefetch > 1: a worker holding a few ms of work has its answers read together every "
        "1-4 ms (as long as that work lasts), not each as it comes (fewer wake-ups; "
        "docs/recycling.md)"),

    OPT(limits, max_tasks, MV_OPT_INT, "0", 0, INT64_C(1000000000000), NULL,
        "recycle a worker after this many tasks; 0 = off"),
    OPT(limits, max_tasks_jitter, MV_OPT_INT, "0", 0, INT64_C(1000000000000), NULL,
        "add a random 0..N tasks per worker so workers do not recycle together"),
    OPT(limits, max_lifetime, MV_OPT_DURATION, "0", 0, 365 * DAY, NULL,
        "recycle a worker after this long; 0 = off"),
    OPT(limits, max_lifetime_jitter, MV_OPT_DURATION, "0", 0, 365 * DAY, NULL,
        "add a random 0..N to max_lifetime per worker so workers do not recycle together"),
    OPT(limits, memory_soft, MV_OPT_SIZE, "auto", 0, PIB, NULL,
        "worker memory above which it finishes the current task, then recycles; 0 = off; "
        "auto = 3/4 of memory_hard (384M when that is 0)"),
    OPT(limits, memory_hard, MV_OPT_SIZE, "auto", 0, PIB, NULL,
        "worker memory at which it is killed at once (by the kernel, with cgroups); 0 = off; "
        "auto = 512M, or 4/3 of memory_soft when that is more"),
    OPT(limits, task_timeout, MV_OPT_DURATION, "0", 0, 365 * DAY, NULL,
        "stop a worker whose task runs longer; 0 = off"),
    OPT(limits, task_warn, MV_OPT_DURATION, "30s", 0, 365 * DAY, NULL,
        "log task_slow when a task has run this long, and again at each doubling; 0 = off"),
    OPT(limits, metric, MV_OPT_ENUM, "private", 0, 0, metric_choices,
        "memory compared with the soft limit: private (anonymous) memory or rss"),
    OPT(limits, enforce, MV_OPT_BOOL, "yes", 0, 1, NULL,
        "no = observe only: measure and report, recycle nothing (would_recycle events)"),
    OPT(limits, sample_interval, MV_OPT_DURATION, "100ms", 1, HOUR, NULL,
        "period of memory samples for what has no kernel event"),
    OPT(limits, escalate, MV_OPT_STRING, "off", 0, 0, NULL,
        "a task whose worker hit memory_hard (or was OOM-killed) runs again on a fresh worker "
        "with a raised limit: Nx (times the last limit, e.g. 2x) or SIZE (added); off = no"),
    OPT(limits, escalate_max, MV_OPT_SIZE, "0", 0, PIB, NULL,
        "highest hard limit an escalated task gets; a task killed at it is quarantined; 0 = 4 "
        "times memory_hard"),

    OPT(recycle, max_concurrent, MV_OPT_INT, "1", 1, 1024, NULL, "workers recycling at once"),
    OPT(recycle, spacing, MV_OPT_DURATION, "0", 0, HOUR, NULL,
        "least time between the starts of two planned recycles (not kills); 0 = none"),
    OPT(recycle, handover_headroom, MV_OPT_SIZE, "16M", 0, PIB, NULL,
        "how far over the soft limit a worker recycled for memory may peak: it serves on (in "
        "handover until its replacement is ready; waiting its turn under max_concurrent) until "
        "it is that far over, less what drains were seen to grow after their stop, then drains; "
        "0 = no bound"),
    OPT(recycle, spares, MV_OPT_INT, "0", 0, 1024, NULL,
        "workers kept started, in their own cgroups, to take a slot the moment one recycles; "
        "they count against nothing until then"),
    OPT(recycle, drain_cap, MV_OPT_BOOL, "no", 0, 1, NULL,
        "a service worker recycled for memory drains under a hard limit of soft + "
        "handover_headroom: the kernel stops one that grows past it, and the requests it had in "
        "flight are lost; no = kill_timeout and memory_hard bound its drain"),
    OPT(recycle, successor, MV_OPT_BOOL, "no", 0, 1, NULL,
        "start a slot's next worker when its worker is sent the last task max_tasks allows, "
        "so that it is ready (forked, in its cgroup, started) when that task's answer "
        "recycles the worker; it waits for that answer and takes no task before (what it "
        "gains and costs: docs/recycling.md)"),
    OPT(recycle, cgroup_ahead, MV_OPT_BOOL, "yes", 0, 1, NULL,
        "make each slot's next cgroup (limits, notifications) while its worker runs, so a "
        "replacement only starts its process"),
    OPT(recycle, target, MV_OPT_ENUM, "worker", 0, 0, target_choices,
        "what a memory recycle replaces: worker = the whole worker; child = a protocol-none "
        "worker that is a master forking its own children (gunicorn and the like): its "
        "largest child is told to stop and the master forks the replacement (docs/service.md)"),
    OPT(recycle, child_signal, MV_OPT_ENUM, "TERM", 0, 0, csig_choices,
        "with target = child, the signal that tells a child to finish what it serves and exit: "
        "TERM, INT, QUIT, HUP, USR1 or USR2 (gunicorn's workers: TERM, a graceful stop; see "
        "your master's docs); SIGKILL after kill_timeout"),

    FIXED(service, listen, MV_OPT_STRING, "", 0, 0, NULL,
          "sockets bound once and passed to every worker (LISTEN_FDS): host:port [v6]:port "
          "unix:/path, space-separated"),
    FIXED(service, backlog, MV_OPT_INT, "1024", 1, 65535, NULL,
          "listen(2) backlog of those sockets"),

    FIXED(
        control, socket, MV_OPT_STRING, "", 0, 0, NULL,
        "control socket (status, recycle, reload, stop, metrics); empty = STATE_DIR/control.sock, "
        "none = no socket; relative: like state_dir"),

    FIXED(metrics, listen, MV_OPT_STRING, "", 0, 0, NULL,
          "serve GET /metrics (Prometheus text) over HTTP at IPV4:PORT or [IPV6]:PORT, e.g. "
          "127.0.0.1:9464; empty = off"),

    FIXED(tasks, source, MV_OPT_STRING, "", 0, 0, NULL,
          "task file, one task per line; \"-\" = stdin; redis://HOST:PORT/STREAM = a stream "
          "many memvisors share (docs/many-hosts.md); --tasks takes precedence"),
    FIXED(tasks, results, MV_OPT_STRING, "", 0, 0, NULL,
          "results file (JSON Lines), or redis://HOST:PORT/STREAM (a results stream, with a "
          "Redis source), or both: the URL, a space, the file; --results takes precedence"),
    OPT(tasks, max_attempts, MV_OPT_INT, "3", 1, 1000, NULL,
        "attempts before a task is quarantined"),
    FIXED(tasks, max_size, MV_OPT_SIZE, "4M", 1, 64 * MIB, NULL, "longest task line"),
    OPT(tasks, accounting, MV_OPT_BOOL, "yes", 0, 1, NULL,
        "per-task memory and fd figures in the results; no = fewer syscalls, same limits"),
    FIXED(tasks, resume, MV_OPT_BOOL, "no", 0, 1, NULL,
          "continue the batch in an existing results file: skip tasks with a line, append; "
          "--resume sets it"),
    FIXED(tasks, results_retry, MV_OPT_DURATION, "1m", 0, DAY, NULL,
          "how long a failing results write (full disk) is retried, dispatch paused; 0 = give "
          "up at once"),
    FIXED(tasks, group, MV_OPT_STRING, "memvisor", 0, 0, NULL,
          "Redis source: the consumer group that the memvisors of one batch join"),
    FIXED(tasks, claim_idle, MV_OPT_DURATION, "30s", 100, DAY, NULL,
          "Redis source: a task silent this long (its memvisor died) is taken over by another; "
          "live ones refresh theirs every claim_idle/3"),
    FIXED(tasks, follow, MV_OPT_BOOL, "no", 0, 1, NULL,
          "Redis source: keep waiting for new tasks once the stream is empty; no = the run "
          "ends when no task is waiting or running anywhere"),
    FIXED(tasks, redis_retry, MV_OPT_DURATION, "5m", 0, 365 * DAY, NULL,
          "how long a lost Redis connection is retried (backoff 100ms..5s, dispatch paused) "
          "before the run gives up; 0 = give up at once"),

    FIXED(leak, detect, MV_OPT_BOOL, "yes", 0, 1, NULL,
          "find the task kinds that leak, and write snapshots of their workers"),
    FIXED(leak, kind, MV_OPT_STRING, "auto", 0, 0, NULL,
          "task kind unless the worker names it: auto (a JSON line's kind/type/op/action field, "
          "else the first word), word, json:FIELD or none (one kind); numbers and ids are no kind"),
    FIXED(leak, window, MV_OPT_INT, "50", 10, 100000, NULL,
          "tasks of a kind whose retained memory the leak trend is judged over"),
    FIXED(leak, warmup, MV_OPT_INT, "10", 0, 100000, NULL,
          "a worker's first tasks, left out of the leak trend (imports, pools, small caches)"),
    FIXED(leak, min_slope, MV_OPT_SIZE, "16K", 1, GIB, NULL,
          "memory retained per task, steadily, that makes a kind a leak suspect"),
    FIXED(leak, task_growth, MV_OPT_SIZE, "32M", 1, PIB, NULL,
          "memory one task may retain before it alone is a leak suspect"),
    OPT(leak, snapshot_timeout, MV_OPT_DURATION, "2s", 0, HOUR, NULL,
        "how long a snapshot waits for the worker's own heap view"),
    OPT(leak, history, MV_OPT_INT, "20", 0, 1000, NULL,
        "the worker's last tasks recorded in a snapshot"),
    OPT(leak, snapshots_max, MV_OPT_INT, "100", 0, 1000000, NULL,
        "snapshot files a run keeps: past it the oldest are removed (0 = keep all)"),
    OPT(leak, heap, MV_OPT_ENUM, "auto", 0, 0, heap_choices,
        "live heap bytes per task from the libmemvisor-heap.so preload: off, preload, or auto "
        "(api and lines workers whose command is dynamically linked)"),
    OPT(leak, python_malloc, MV_OPT_ENUM, "auto", 0, 0, python_malloc_choices,
        "with the heap preload, PYTHONMALLOC=malloc so Python's small objects are counted too: "
        "auto (when the command is python), yes, no"),
    FIXED(leak, confirm, MV_OPT_ENUM, "isolate", 0, 0, confirm_choices,
          "batch mode: confirm a leak suspect by running its kind alone on a fresh worker "
          "(and bisect kinds when a worker grows unexplained): isolate, or off"),
    FIXED(leak, settle, MV_OPT_DURATION, "250ms", 0, HOUR, NULL,
          "before an isolation confirms a leak, its worker idles this long while no other kind "
          "waits: a kind whose growth it gives back (memory held for a time) is a plateau; "
          "0 = off"),

    FIXED(log, format, MV_OPT_ENUM, "text", 0, 0, format_choices,
          "log line format: text for key=value fields, json for one JSON object per line"),
    OPT(log, level, MV_OPT_ENUM, "info", 0, 0, level_choices,
        "least severe level logged: debug, info, warn or error"),
    FIXED(log, file, MV_OPT_STRING, "", 0, 0, NULL, "log file (appended); empty = stderr"),
    FIXED(log, events_max, MV_OPT_SIZE, "64M", 0, PIB, NULL,
          "the run's events.jsonl is at most this big: past it, it becomes events.1.jsonl "
          "(replacing the one before) and a new one starts; 0 = no bound"),
    FIXED(log, progress, MV_OPT_ENUM, "auto", 0, 0, progress_choices,
          "a batch's live progress line on stderr: auto (when stderr is a terminal), on or off"),
};

const size_t mv__noptions = sizeof mv__options / sizeof mv__options[0];

/* ---- automatic values: the rule the docs of memory_soft and memory_hard state --------- */

#define HARD_AUTO (512 * MIB) /* memory_hard = auto, unless memory_soft asks for more */

/* memory_soft and memory_hard left at "auto" follow the other one, so that setting either
 * alone never clashes with a default the user did not write (config.h has the rule). */
void mv__config_derive_limits(mv_config_t *c)
{
    mv_origin_t *sat = &c->origin[mv_config_find("limits", "memory_soft") - mv__options];
    mv_origin_t *hat = &c->origin[mv_config_find("limits", "memory_hard") - mv__options];
    int64_t *soft = &c->limits.memory_soft, *hard = &c->limits.memory_hard, base, v;

    if (*hard == MV_CONFIG_AUTO) {
        *hard = HARD_AUTO;
        v = *soft > 0 ? (*soft / 3 * 4 + MIB - 1) / MIB * MIB : 0; /* >= 4/3, a whole MiB */
        if (v > HARD_AUTO) {
            *hard = v;
            hat->via = "derived from memory_soft (4/3 of it, rounded up to a MiB)";
        }
    }
    if (*soft == MV_CONFIG_AUTO) {
        base = *hard > 0 ? *hard : HARD_AUTO;
        v = base - base / 4;
        *soft = v >= 4 * KIB ? v / (4 * KIB) * (4 * KIB) : v; /* whole pages */
        sat->via =
            *hard > 0 ? "derived from memory_hard (3/4 of it)" : "3/4 of 512M (memory_hard is off)";
    }
}

/* ---- table --------------------------------------------------------------------------- */

const mv_option_t *mv_config_options(size_t *n)
{
    if (n)
        *n = mv__noptions;
    return mv__options;
}

const mv_option_t *mv_config_find(const char *section, const char *name)
{
    for (size_t i = 0; i < mv__noptions; i++)
        if (strcmp(mv__options[i].section, section) == 0 && strcmp(mv__options[i].name, name) == 0)
            return &mv__options[i];
    return NULL;
}

bool mv__config_section_known(const char *section)
{
    for (size_t i = 0; i < mv__noptions; i++)
        if (strcmp(mv__options[i].section, section) == 0)
            return true;
    return false;
}

/* Optimal string alignment distance, case-insensitive: "perfetch" is 1 from "prefetch". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d[33][33];

    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t v = d[i - 1][j] + 1;

            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 &&
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* Whether a candidate at distance d from `word` is close enough to be what was meant:
 * within a quarter of the word's length (at least 1, at most 3). */
static bool near_enough(const char *word, size_t d)
{
    size_t limit = 1 + strlen(word) / 4;

    return d <= (limit > 3 ? 3 : limit);
}

const char *mv_closest_word(const char *word, const char *const *choices)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX, d;

    for (size_t i = 0; choices[i]; i++)
        if ((d = distance(word, choices[i])) < bestd) {
            bestd = d;
            best = choices[i];
        }
    return best && near_enough(word, bestd) ? best : NULL;
}

/* The closest known key of `section` (or closest section when key is NULL), if close enough. */
const char *mv__config_closest(const char *section, const char *key)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX;
    const char *word = key ? key : section;

    for (size_t i = 0; i < mv__noptions; i++) {
        const char *cand = key ? mv__options[i].name : mv__options[i].section;
        size_t d;

        if (key && strcmp(mv__options[i].section, section) != 0)
            continue;
        d = distance(word, cand);
        if (d < bestd) {
            bestd = d;
            best = cand;
        }
    }
    return best && near_enough(word, bestd) ? best : NULL;
}

/* The one section holding a key of this exact name, or NULL. */
const char *mv__config_home_section(const char *key)
{
    const char *home = NULL;

    for (size_t i = 0; i < mv__noptions; i++) {
        if (strcmp(mv__options[i].name, key) != 0)
            continue;
        if (home)
            return NULL;
        home = mv__options[i].section;
    }
    return home;
}
