/*
 * memvisor: command line. The commands and their options are the table in cli.c: this file
 * dispatches through it and parses only what it lists (`memvisor --help` prints it).
 *
 *   memvisor run|check|report|status|recycle|reload|stop|metrics|version|help ...
 *   memvisor exec-shim ...    (internal, first: between fork and the worker's exec)
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "lean.h"
#include "control.h"
#include "commands.h"
#include "paths.h"
#include "proc.h"
#include "report.h"
#include "runlock.h"
#include "rurl.h"
#include "submit.h"
#include "supervisor.h"

typedef struct cli {
    const mv_cli_cmd_t *cmd;
    const char *config;
    const char **overrides;
    int noverrides;
    const char *tasks;
    const char *results;    /* the last --results FILE */
    const char *results_to; /* the last --results redis://...: both are written */
    bool resume;
    char **argv; /* after "--" */
} cli_t;

/* Parses run's and check's arguments into c; returns -1 on success, an exit code otherwise. */
static int parse_cli(int argc, char **argv, cli_t *c)
{
    const mv_cli_opt_t *o;
    int i;

    for (i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0 && c->cmd->id == MV_CMD_RUN) {
            if (i + 1 < argc)
                c->argv = argv + i + 1;
            break;
        }
        if (!(o = mv_cli_option(c->cmd, a)))
            return mv_cli_usage_error(c->cmd,
                                      a[0] == '-' ? "unknown option: "
                                                  : "unexpected "
                                                    "argument: ",
                                      a);
        if (o->id == MV_CLI_HELP) {
            mv_cli_help_command(c->cmd, stdout);
            return MV_EXIT_OK;
        }
        if (o->arg && i + 1 >= argc)
            return mv_cli_usage_error(c->cmd, "missing value after ", a);
        switch (o->id) {
        case MV_CLI_CONFIG: c->config = argv[++i]; break;
        case MV_CLI_OVERRIDE: c->overrides[c->noverrides++] = argv[++i]; break;
        case MV_CLI_TASKS: c->tasks = argv[++i]; break;
        case MV_CLI_RESULTS:
            i++;
            *(mv_rurl_is(argv[i]) ? &c->results_to : &c->results) = argv[i];
            break;
        case MV_CLI_RESUME: c->resume = true; break;
        default: return mv_cli_usage_error(c->cmd, "unknown option: ", a);
        }
    }
    return -1;
}

/* Loads, overrides and checks the configuration; prints every mistake. */
static int load_config(const cli_t *c, mv_config_t *cfg)
{
    int r = mv_config_build_or_say(cfg, c->config, c->overrides, c->noverrides, stderr);
    mv_errors_t errs = {0};

    if (r == 0 && mv_config_check_socket(cfg, &errs) < 0) {
        mv_errors_say(&errs, stderr);
        r = -EINVAL;
    }
    mv_errors_free(&errs);
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

/* What the results file and --resume allow, said before anything starts: a non-empty
 * results file without --resume, or --resume without something to resume, is a usage error
 * (exit 2); a file another run holds, a run that cannot start (exit 3). The run checks again
 * when it claims the file (results.h): this is only for a clear message and exit code.
 * -1 when the run may go on. */
static int check_results(const mv_config_t *cfg)
{
    const char *file = mv_rurl_results_file(cfg->tasks.results);
    char why[1024];
    int r;

    if (mv_rurl_check_settings(cfg->tasks.source, cfg->tasks.results, why, sizeof why) < 0) {
        fprintf(stderr, "memvisor run: %s\n", why);
        return MV_EXIT_USAGE;
    }
    if (cfg->tasks.resume && !*file) {
        fprintf(stderr, "memvisor run: --resume continues a results file: give --results FILE "
                        "(or [tasks] results)\n");
        return MV_EXIT_USAGE;
    }
    if (cfg->tasks.resume && !*cfg->tasks.source) {
        fprintf(stderr, "memvisor run: --resume continues a batch: give its task source with "
                        "--tasks FILE|- (the same lines: ids are line numbers)\n");
        return MV_EXIT_USAGE;
    }
    r = mv_results_check(file, cfg->tasks.resume, why, sizeof why);
    if (r == -EBUSY || r == -EEXIST || r == -EINVAL)
        fprintf(stderr, "memvisor run: %s\n", why);
    return r == -EBUSY ? MV_EXIT_CANT_RUN : r == -EEXIST || r == -EINVAL ? MV_EXIT_USAGE : -1;
}

/* Where the worker command came from, for a message about it: the words after --, a -o, or
 * [worker] command at FILE:LINE, so that an operator knows what to edit. */
static void command_origin(const mv_config_t *cfg, bool after_dashes, char *buf, size_t n)
{
    mv_origin_t at = mv_config_origin(cfg, "worker", "command");

    if (after_dashes)
        snprintf(buf, n, "given after --");
    else if (at.file && strcmp(at.file, "-o") == 0)
        snprintf(buf, n, "-o worker.command");
    else if (at.file)
        snprintf(buf, n, "[worker] command at %s:%d", at.file, at.line);
    else
        snprintf(buf, n, "[worker] command");
}

static int cmd_run(const cli_t *c, mv_config_t *cfg)
{
    char **words = NULL, cwd[PATH_MAX], config_abs[PATH_MAX], pid[24];
    mv_t mv;
    const char *why = NULL;
    int n = 0, code;

    memset(&mv, 0, sizeof mv);
    /* --results FILE and --results redis://...: both ("URL FILE", rurl.h) */
    if (c->results_to && mv_rurl_results_join(c->results_to, c->results, cwd, sizeof cwd) < 0) {
        fprintf(stderr, "memvisor run: --results %s: too long\n", c->results_to);
        return MV_EXIT_USAGE;
    }
    if ((c->tasks && set_string(&cfg->tasks.source, c->tasks) < 0) ||
        ((c->results || c->results_to) &&
         set_string(&cfg->tasks.results, c->results_to ? cwd : c->results) < 0))
        return MV_EXIT_CANT_RUN;
    if (c->resume)
        cfg->tasks.resume = 1;
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
    /* As the worker's user, when it has one: a command that user cannot reach (a 0700
     * home) fails here, once, not as a crash loop. */
    if ((n = mv_proc_check_command_as(
             mv.argv[0], *cfg->worker.user || *cfg->worker.group ? cfg->worker.uid : -1,
             cfg->worker.gid)) < 0) {
        char from[PATH_MAX + 64];

        command_origin(cfg, c->argv != NULL, from, sizeof from);
        fprintf(stderr, "memvisor run: cannot run the worker command %s%s (%s): %s\n", mv.argv[0],
                *cfg->worker.user || *cfg->worker.group ? " as [worker] user/group" : "", from,
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
    if ((code = check_results(cfg)) >= 0)
        goto out;
    if (mv_log_open(&mv.log, cfg->log.format, cfg->log.level, cfg->log.file) < 0) {
        fprintf(stderr, "memvisor run: cannot open log file %s\n", cfg->log.file);
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    mv.cfg = cfg;
    mv.commands = &mv_commands;
    /* Absolute (not through symlinks: a reload reads what the path names then): the start
     * event shows where it is. */
    mv.config_path = c->config;
    if (c->config && getcwd(cwd, sizeof cwd) &&
        mv_path_resolve(cwd, c->config, config_abs, sizeof config_abs) == 0)
        mv.config_path = config_abs;
    mv.overrides = c->overrides;
    mv.noverrides = c->noverrides;
    mv.argv_from_cli = c->argv != NULL;
    mv.tasks_from_cli = c->tasks != NULL;
    mv.results_from_cli = c->results || c->results_to;
    mv.resume_from_cli = c->resume;
    /* For the exec shim's parent-death check (proc.h): the workers' parent is this process. */
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv(MV_ENV_SUPERVISOR_PID, pid, 1);
    code = mv_run(&mv);
    mv_log_close(&mv.log);
out:
    mv_argv_free(words);
    return code;
}

/* `memvisor report [PATH] [-c FILE] [-o ...]`: without PATH, the state directory's latest
 * run, the state directory being -c FILE's (or the working directory's .memvisor). Every
 * other argument goes to report.c as it is; an option of report.c's own that takes a value
 * must be in cli.c's table (with its `arg`), or its value would count as the PATH. */
static int cmd_report(const mv_cli_cmd_t *cmd, int argc, char **argv)
{
    char **av = calloc((size_t)argc + 2, sizeof *av), latest[PATH_MAX + 16], *dir = NULL;
    const char **ovr = calloc((size_t)argc, sizeof *ovr), *config = NULL;
    int n = 0, novr = 0, positional = 0, code = -1;
    const mv_cli_opt_t *o;
    mv_config_t cfg;

    if (!av || !ovr) {
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    av[n++] = argv[0];
    av[n++] = argv[1];
    for (int i = 2; i < argc && code < 0; i++) {
        if (!(o = mv_cli_option(cmd, argv[i]))) {
            positional++; /* PATH, or an option report.c will judge: no default then */
            av[n++] = argv[i];
        } else if (o->id == MV_CLI_HELP) {
            mv_cli_help_command(cmd, stdout);
            code = MV_EXIT_OK;
        } else if (o->arg && i + 1 >= argc) {
            code = mv_cli_usage_error(cmd, "missing value after ", argv[i]);
        } else if (o->id == MV_CLI_CONFIG) {
            config = argv[++i];
        } else if (o->id == MV_CLI_OVERRIDE) {
            ovr[novr++] = argv[++i];
        } else {
            av[n++] = argv[i];
            av[n++] = argv[++i]; /* an option of report.c's own, with its value */
        }
    }
    if (code < 0 && positional && (config || novr))
        code = mv_cli_usage_error(cmd, "give a PATH or -c FILE, not both", "");
    if (code >= 0 || positional)
        goto out;
    if ((code = mv_config_build_or_say(&cfg, config, ovr, novr, stderr)) == 0)
        dir = strdup(cfg.supervisor.state_dir);
    mv_config_free(&cfg);
    code = code == -ENOMEM || (code == 0 && !dir) ? MV_EXIT_CANT_RUN
           : code < 0                             ? MV_EXIT_USAGE
                                                  : -1;
    if (code < 0) {
        snprintf(latest, sizeof latest, "%s/latest", dir);
        if (access(latest, F_OK) < 0) {
            fprintf(stderr,
                    "memvisor report: no run in %s yet (no %s): give a run directory or a "
                    "results file, or the -c FILE the run used\n",
                    dir, latest);
            code = MV_EXIT_CANT_RUN;
        }
        av[n++] = dir;
    }
out:
    if (code < 0)
        code = mv_report_main(n, av);
    free(dir);
    free(av);
    free(ovr);
    return code;
}

/* `memvisor help [COMMAND]`. */
static int cmd_help(const mv_cli_cmd_t *help, int argc, char **argv)
{
    const mv_cli_cmd_t *cmd;
    const char *near;

    if (argc < 3 || mv_cli_option(help, argv[2])) {
        mv_cli_help(stdout);
        return MV_EXIT_OK;
    }
    if (argc > 3)
        return mv_cli_usage_error(help, "unexpected argument: ", argv[3]);
    cmd = mv_cli_find(argv[2]);
    if (!cmd) {
        near = mv_cli_closest(argv[2]);
        fprintf(stderr, "memvisor help: unknown command: %s%s%s%s\n", argv[2],
                near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
        return MV_EXIT_USAGE;
    }
    mv_cli_help_command(cmd, stdout);
    return MV_EXIT_OK;
}

static int cmd_version(const mv_cli_cmd_t *cmd, int argc, char **argv)
{
    if (argc > 2 && mv_cli_option(cmd, argv[2])) {
        mv_cli_help_command(cmd, stdout);
        return MV_EXIT_OK;
    }
    if (argc > 2)
        return mv_cli_usage_error(cmd, "unexpected argument: ", argv[2]);
    printf("memvisor %s\n", MV_VERSION);
    return MV_EXIT_OK;
}

/* `memvisor check`: a [worker] command that `run` would refuse (not found, not executable,
 * out of the worker user's reach) is said as a warning, with where it was set; the exit code
 * stays 0, since a configuration may be checked on a host without the worker. */
static void check_command(const mv_config_t *cfg)
{
    char **words = NULL, from[PATH_MAX + 64];
    const char *why = NULL;
    bool as_user = *cfg->worker.user || *cfg->worker.group;
    int n = 0, r;

    if (mv_split_words(cfg->worker.command, &words, &n, &why) < 0 || n == 0) {
        mv_argv_free(words);
        return;
    }
    r = mv_proc_check_command_as(words[0], as_user ? cfg->worker.uid : -1, cfg->worker.gid);
    if (r < 0) {
        command_origin(cfg, false, from, sizeof from);
        fprintf(stderr,
                "memvisor check: warning: the worker command %s%s (%s) cannot run here: %s "
                "(memvisor run refuses it with exit 3)\n",
                words[0], as_user ? " as [worker] user/group" : "", from, strerror(-r));
    }
    mv_argv_free(words);
}

/* `memvisor run|check ...`. */
static int cmd_config(const mv_cli_cmd_t *cmd, int argc, char **argv)
{
    cli_t c = {.cmd = cmd};
    mv_config_t cfg;
    int code;

    if (!(c.overrides = calloc((size_t)argc, sizeof *c.overrides)))
        return MV_EXIT_CANT_RUN;
    code = parse_cli(argc, argv, &c);
    if (code < 0)
        code = load_config(&c, &cfg);
    else
        memset(&cfg, 0, sizeof cfg);
    if (code < 0 && cmd->id == MV_CMD_CHECK) {
        mv_config_print(&cfg, stdout);
        check_command(&cfg);
        code = MV_EXIT_OK;
    } else if (code < 0) {
        code = cmd_run(&c, &cfg);
    }
    mv_config_free(&cfg);
    free(c.overrides);
    return code;
}

/* A SIGHUP (a reload: systemd's ExecReload, a deploy script) that comes while the run starts
 * (its configuration read, the checks, the results file's lock) waits for the handler:
 * start_signals() unblocks it once libuv handles it, and the reload is done then. Its default
 * action killed memvisor in those first milliseconds. SIGTERM and SIGINT keep theirs until
 * then: a stop asked before anything ran needs nothing undone, and a long --resume read-back
 * stays interruptible. */
static void hold_reloads(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

int main(int argc, char **argv)
{
    const mv_cli_cmd_t *cmd;
    const char *near;

    /* First, before anything: the exec shim runs between fork and the worker's exec. */
    if (argc >= 2 && strcmp(argv[1], "exec-shim") == 0)
        return mv_exec_shim(argc, argv);
    if (argc < 2)
        return mv_cli_usage_error(NULL, "missing command", "");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        argv[1] = "help";
    else if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        argv[1] = "version";
    if (!(cmd = mv_cli_find(argv[1]))) {
        near = mv_cli_closest(argv[1]);
        fprintf(stderr,
                "memvisor: unknown command: %s%s%s%s\n(memvisor --help lists every command)\n",
                argv[1], near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
        return MV_EXIT_USAGE;
    }
    /* Reads files and prints; SIGPIPE (| head) ends it quietly, like any filter. */
    if (cmd->id == MV_CMD_REPORT)
        return cmd_report(cmd, argc, argv);
    if (cmd->id == MV_CMD_HELP)
        return cmd_help(cmd, argc, argv);
    if (cmd->id == MV_CMD_VERSION)
        return cmd_version(cmd, argc, argv);
    /* A write to a worker that just died (or to a closed log pipe) must be an EPIPE error,
     * not a signal that kills the supervisor. Workers get SIG_DFL back from uv_spawn. */
    signal(SIGPIPE, SIG_IGN);
    switch (cmd->id) {
    case MV_CMD_STATUS:
    case MV_CMD_RECYCLE:
    case MV_CMD_RELOAD:
    case MV_CMD_STOP:
    case MV_CMD_WORKERS:
    case MV_CMD_METRICS: return mv_ctl_main(argc, argv);
    case MV_CMD_SUBMIT: return mv_submit_main(cmd, argc, argv);
    case MV_CMD_RUN:
        hold_reloads();
        mv_lean_malloc();
        return cmd_config(cmd, argc, argv);
    case MV_CMD_CHECK: return cmd_config(cmd, argc, argv);
    default: return mv_exec_shim(argc, argv); /* MV_CMD_EXEC_SHIM: handled above */
    }
}
