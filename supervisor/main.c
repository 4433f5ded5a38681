/*
 * memvisor: command line.
 *
 *   memvisor run [-c FILE] [-o SECTION.KEY=VALUE]... [--tasks FILE|-] [--results FILE]
 *                [-- COMMAND [ARG]...]
 *   memvisor check [-c FILE] [-o SECTION.KEY=VALUE]...
 *   memvisor report [--html FILE] PATH
 *   memvisor status|recycle|reload|stop|metrics [--socket PATH] [--json]   (ctl.c)
 *   memvisor version | help
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "pool.h"
#include "report.h"
#include "supervisor.h"

static const char usage_text[] =
    "usage: memvisor run [-c FILE] [-o SECTION.KEY=VALUE]... [--tasks FILE|-]\n"
    "                    [--results FILE] [-- COMMAND [ARG]...]\n"
    "       memvisor check [-c FILE] [-o SECTION.KEY=VALUE]...\n"
    "       memvisor report [--html FILE] PATH\n"
    "       memvisor version\n"
    "\n"
    "  run     run every task of the task source on a pool of recycled workers; without a\n"
    "          task source, run the workers as a service until stopped\n"
    "  check   validate the configuration and print the effective settings\n"
    "  report  summarise a run directory, a state directory's latest run, or a results file\n"
    "\n"
    "  -c, --config FILE    INI file (default: built-in defaults, see conf/memvisor.ini)\n"
    "  -o SECTION.KEY=VALUE override one setting (repeatable)\n"
    "  --tasks FILE|-       one task per line; - reads stdin ([tasks] source)\n"
    "  --results FILE       JSON Lines results, one per task ([tasks] results)\n"
    "  -- COMMAND...        the worker command ([worker] command)\n"
    "\n"
    "exit: 0 all tasks ok (a service: stopped cleanly), 1 some failed or quarantined,\n"
    "      2 usage or config error, 3 could not run, 128+N stopped by signal N before every\n"
    "      task ended\n";

typedef struct cli {
    const char *cmd;
    const char *config;
    const char **overrides;
    int noverrides;
    const char *tasks;
    const char *results;
    char **argv; /* after "--" */
} cli_t;

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "memvisor: %s%s\n%s", what, arg, usage_text);
    return MV_EXIT_USAGE;
}

/* Parses argv into cli; returns -1 on success, an exit code otherwise. */
static int parse_cli(int argc, char **argv, cli_t *c)
{
    int i;

    memset(c, 0, sizeof *c);
    if (argc < 2)
        return usage_error("missing command", "");
    c->cmd = argv[1];
    c->overrides = calloc((size_t)argc, sizeof *c->overrides);
    if (!c->overrides)
        return MV_EXIT_CANT_RUN;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;

        if (strcmp(a, "--") == 0) {
            if (i + 1 < argc)
                c->argv = argv + i + 1;
            break;
        }
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_next)
            c->config = argv[++i];
        else if (strcmp(a, "-o") == 0 && has_next)
            c->overrides[c->noverrides++] = argv[++i];
        else if (strcmp(a, "--tasks") == 0 && has_next)
            c->tasks = argv[++i];
        else if (strcmp(a, "--results") == 0 && has_next)
            c->results = argv[++i];
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return MV_EXIT_OK;
        } else
            return usage_error(
                has_next || a[0] != '-' ? "unknown argument: " : "missing value after ", a);
    }
    return -1;
}

/* Loads, overrides and checks the configuration; prints every mistake. */
static int load_config(const cli_t *c, mv_config_t *cfg)
{
    int r = mv_config_build_or_say(cfg, c->config, c->overrides, c->noverrides, stderr);

    return r == -ENOMEM ? MV_EXIT_CANT_RUN : r < 0 ? MV_EXIT_USAGE : -1;
}

/* Replaces a string setting (the CLI's --tasks/--results take precedence over the file). */
static int set_string(char **field, const char *value)
{
    char *s = strdup(value);

    if (!s)
        return -1;
    free(*field);
    *field = s;
    return 0;
}

/* Whether the worker command can be executed, looked up like execvp does (the exec happens
 * later in the exec shim, where a failure would only look like a crash). 0 or -errno. */
static int check_command(const char *cmd)
{
    const char *path = getenv("PATH");
    char buf[4096];
    int err = -ENOENT;

    if (strchr(cmd, '/'))
        return access(cmd, X_OK) == 0 ? 0 : -errno;
    for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)len, len ? p : ".", cmd);
        if (access(buf, X_OK) == 0)
            return 0;
        if (errno == EACCES)
            err = -EACCES;
        p += len + (colon != NULL);
    }
    return err;
}

static int cmd_run(const cli_t *c, mv_config_t *cfg)
{
    mv_t mv;
    char **words = NULL;
    const char *why = NULL;
    int n = 0, code;

    memset(&mv, 0, sizeof mv);
    if ((c->tasks && set_string(&cfg->tasks.source, c->tasks) < 0) ||
        (c->results && set_string(&cfg->tasks.results, c->results) < 0))
        return MV_EXIT_CANT_RUN;
    if (c->argv) {
        mv.argv = c->argv;
    } else if (mv_split_words(cfg->worker.command, &words, &n, &why) < 0 || n == 0) {
        fprintf(stderr, "memvisor run: no worker command: give one after -- or set [worker] "
                        "command\n");
        mv_argv_free(words);
        return MV_EXIT_USAGE;
    } else {
        mv.argv = words;
    }
    if ((n = check_command(mv.argv[0])) < 0) {
        fprintf(stderr, "memvisor run: cannot run the worker command %s: %s\n", mv.argv[0],
                strerror(-n));
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    if (cfg->worker.protocol == MV_PROTO_NONE && *cfg->tasks.source) {
        fprintf(stderr, "memvisor run: [worker] protocol = none takes no tasks (--tasks %s)\n",
                cfg->tasks.source);
        code = MV_EXIT_USAGE;
        goto out;
    }
    if (cfg->worker.protocol == MV_PROTO_LINES && !*cfg->tasks.source) {
        fprintf(stderr, "memvisor run: no tasks: the lines protocol needs --tasks FILE (or - for "
                        "stdin) or [tasks] source; without tasks memvisor runs a service of "
                        "api or none workers\n");
        code = MV_EXIT_USAGE;
        goto out;
    }
    if (mv_log_open(&mv.log, cfg->log.format, cfg->log.level, cfg->log.file) < 0) {
        fprintf(stderr, "memvisor run: cannot open log file %s\n", cfg->log.file);
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    mv.cfg = cfg;
    mv.config_path = c->config;
    mv.overrides = c->overrides;
    mv.noverrides = c->noverrides;
    mv.argv_from_cli = c->argv != NULL;
    code = mv_run(&mv);
    mv_log_close(&mv.log);
out:
    mv_argv_free(words);
    return code;
}

int main(int argc, char **argv)
{
    mv_config_t cfg;
    cli_t c;
    int code;

    /* First, before anything: the exec shim runs between fork and the worker's exec. */
    if (argc >= 2 && strcmp(argv[1], "exec-shim") == 0)
        return mv_exec_shim(argc, argv);
    /* Reads files and prints; SIGPIPE (| head) ends it quietly, like any filter. */
    if (argc >= 2 && strcmp(argv[1], "report") == 0)
        return mv_report_main(argc, argv);

    /* A write to a worker that just died (or to a closed log pipe) must be an EPIPE error,
     * not a signal that kills the supervisor. Workers get SIG_DFL back from uv_spawn. */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && (strcmp(argv[1], "status") == 0 || strcmp(argv[1], "recycle") == 0 ||
                      strcmp(argv[1], "reload") == 0 || strcmp(argv[1], "stop") == 0 ||
                      strcmp(argv[1], "metrics") == 0))
        return mv_ctl_main(argc, argv);
    code = parse_cli(argc, argv, &c);
    if (code >= 0) {
        free(c.overrides);
        return code;
    }
    if (strcmp(c.cmd, "version") == 0 || strcmp(c.cmd, "--version") == 0) {
        printf("memvisor %s\n", MV_VERSION);
        free(c.overrides);
        return MV_EXIT_OK;
    }
    if (strcmp(c.cmd, "help") == 0 || strcmp(c.cmd, "-h") == 0 || strcmp(c.cmd, "--help") == 0) {
        fputs(usage_text, stdout);
        fputs(mv_ctl_usage, stdout);
        free(c.overrides);
        return MV_EXIT_OK;
    }
    if (strcmp(c.cmd, "run") != 0 && strcmp(c.cmd, "check") != 0) {
        free(c.overrides);
        return usage_error("unknown command: ", c.cmd);
    }
    code = load_config(&c, &cfg);
    if (code < 0) {
        if (strcmp(c.cmd, "check") == 0) {
            mv_config_print(&cfg, stdout);
            code = MV_EXIT_OK;
        } else {
            code = cmd_run(&c, &cfg);
        }
    }
    mv_config_free(&cfg);
    free(c.overrides);
    return code;
}
