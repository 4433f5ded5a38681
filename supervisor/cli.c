/*
 * cli: the command and option tables, and the help printed from them (cli.h). The man page
 * (docs/memvisor.1) is written by hand; a test checks that it names every command, option
 * and configuration key these tables and the option table hold.
 */
#include "cli.h"

#include <string.h>

#include "config.h"
#include "exitcode.h"
#include "util.h"

#define WIDTH 92 /* help lines wrap before this column */

static const mv_cli_opt_t options[MV_CLI_NOPTIONS] = {
    {MV_CLI_CONFIG, "-c", "--config", "FILE", false,
     "the INI file: run and check take their settings from it; the other commands find that "
     "memvisor's state directory and control socket through it"},
    {MV_CLI_OVERRIDE, "-o", NULL, "SECTION.KEY=VALUE", true,
     "override one setting of the file (repeatable); a relative path here is relative to the "
     "working directory"},
    {MV_CLI_TASKS, "--tasks", NULL, "FILE|-|URL", false,
     "the task source, one task per line; - reads stdin; redis://HOST:PORT/STREAM reads a "
     "stream that many memvisors share ([tasks] source)"},
    {MV_CLI_RESULTS, "--results", NULL, "FILE|URL", true,
     "the results, one JSON line per task ([tasks] results); an existing non-empty file is "
     "refused unless the run resumes it; with a Redis source, redis://HOST:PORT/STREAM writes "
     "them to a stream, and --results given for both writes both"},
    {MV_CLI_RESUME, "--resume", NULL, NULL, false,
     "continue the batch in the results file: tasks that have a line are skipped, the others "
     "run and are appended ([tasks] resume)"},
    {MV_CLI_SOCKET, "--socket", NULL, "PATH", false,
     "the control socket (default: [control] socket, or STATE_DIR/control.sock)"},
    {MV_CLI_JSON, "--json", NULL, NULL, false, "print memvisor's reply as JSON"},
    {MV_CLI_HTML, "--html", NULL, "FILE", false,
     "also write one self-contained HTML page to FILE: memory over time per worker, throughput, "
     "per-kind distributions, the suspects and the advice (opens offline)"},
    {MV_CLI_TO, "--to", NULL, "URL", false,
     "the stream to add to, redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM (default: [tasks] "
     "source, when it is one)"},
    {MV_CLI_HELP, "-h", "--help", NULL, false, "this command's help"},
};

#define END MV_CLI_NOPTIONS
#define CTL_OPTS                                                                     \
    {                                                                                \
        MV_CLI_SOCKET, MV_CLI_CONFIG, MV_CLI_OVERRIDE, MV_CLI_JSON, MV_CLI_HELP, END \
    }
#define CTL_EXIT                                                                              \
    "0 done; 1 memvisor answered with an error; 2 usage or configuration error; 3 no answer " \
    "(no socket, cannot connect, timeout, not a reply)"

static const mv_cli_cmd_t commands[] = {
    {MV_CMD_RUN,
     "run",
     "[-- COMMAND [ARG]...]",
     "run every task of the task source on a pool of recycled workers; without a task source, "
     "run the workers as a service until stopped",
     {MV_CLI_CONFIG, MV_CLI_OVERRIDE, MV_CLI_TASKS, MV_CLI_RESULTS, MV_CLI_RESUME, MV_CLI_HELP,
      END},
     "0 every task ok (a service: stopped cleanly); 1 some task failed or was quarantined; 2 "
     "usage or configuration error; 3 could not run; 128+N stopped by signal N before every "
     "task ended",
     false},
    {MV_CMD_CHECK,
     "check",
     "",
     "validate the configuration and print the effective settings, each with where it came "
     "from (FILE:LINE, -o N, default, or how it was derived)",
     {MV_CLI_CONFIG, MV_CLI_OVERRIDE, MV_CLI_HELP, END},
     "0 valid; 2 usage or configuration error (each mistake as FILE:LINE: [section] key: why)",
     false},
    {MV_CMD_REPORT,
     "report",
     "[PATH]",
     "summarise a run directory, a state directory's latest run, or a results file; without "
     "PATH, the latest run in the state directory of -c FILE (else ./.memvisor)",
     {MV_CLI_HTML, MV_CLI_CONFIG, MV_CLI_OVERRIDE, MV_CLI_HELP, END},
     "0 done; 2 usage error; 3 cannot read",
     false},
    {MV_CMD_STATUS, "status", "", "the running memvisor: its workers, their memory, the totals",
     CTL_OPTS, CTL_EXIT, false},
    {MV_CMD_RECYCLE, "recycle", "SLOT|all",
     "recycle worker SLOT (or all) gracefully: each finishes its task first", CTL_OPTS, CTL_EXIT,
     false},
    {MV_CMD_RELOAD, "reload", "",
     "re-read the configuration file and apply what can change live (like SIGHUP)", CTL_OPTS,
     CTL_EXIT, false},
    {MV_CMD_STOP, "stop", "", "stop gracefully, like SIGTERM", CTL_OPTS, CTL_EXIT, false},
    {MV_CMD_WORKERS, "workers", "N",
     "run N workers from now on (1 to 1024), without a restart: added ones start at once, "
     "removed ones finish their task first; the file's [supervisor] workers wins at the next "
     "reload",
     CTL_OPTS, CTL_EXIT, false},
    {MV_CMD_METRICS, "metrics", "", "the metrics, in Prometheus text format", CTL_OPTS, CTL_EXIT,
     false},
    {MV_CMD_SUBMIT,
     "submit",
     "FILE|-",
     "add the tasks of FILE (or stdin), one per line, to a Redis stream that `memvisor run "
     "--tasks redis://...` reads on any number of hosts; prints the task ids they got",
     {MV_CLI_TO, MV_CLI_CONFIG, MV_CLI_OVERRIDE, MV_CLI_HELP, END},
     "0 every task added; 2 usage or configuration error, or a line longer than [tasks] "
     "max_size (the lines before it were added); 3 cannot read FILE or write to Redis",
     false},
    {MV_CMD_VERSION,
     "version",
     "",
     "print the version (also: memvisor --version)",
     {MV_CLI_HELP, END},
     "0",
     false},
    {MV_CMD_HELP,
     "help",
     "[COMMAND]",
     "every command and option (also: memvisor --help), or one command's",
     {MV_CLI_HELP, END},
     "0; 2 unknown command",
     false},
    {MV_CMD_EXEC_SHIM,
     "exec-shim",
     "FD|- COMMAND [ARG]...",
     "internal: joins the worker's cgroup, then runs the worker",
     {END},
     "",
     true},
};

#undef END

const mv_cli_cmd_t *mv_cli_commands(size_t *n)
{
    *n = MV_ARRAY_LEN(commands);
    return commands;
}

const mv_cli_cmd_t *mv_cli_find(const char *name)
{
    for (size_t i = 0; name && i < MV_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

const mv_cli_opt_t *mv_cli_opt(mv_cli_opt_id_t id)
{
    return id < MV_CLI_NOPTIONS ? &options[id] : NULL;
}

const mv_cli_opt_t *mv_cli_option(const mv_cli_cmd_t *cmd, const char *arg)
{
    for (size_t i = 0; i < MV_CLI_MAX_OPTS && cmd->opts[i] != MV_CLI_NOPTIONS; i++) {
        const mv_cli_opt_t *o = &options[cmd->opts[i]];

        if (strcmp(arg, o->flag) == 0 || (o->alias && strcmp(arg, o->alias) == 0))
            return o;
    }
    return NULL;
}

const char *mv_cli_closest(const char *name)
{
    const char *names[MV_ARRAY_LEN(commands) + 1];
    size_t n = 0;

    for (size_t i = 0; i < MV_ARRAY_LEN(commands); i++)
        if (!commands[i].hidden)
            names[n++] = commands[i].name;
    names[n] = NULL;
    return mv_closest_word(name, names);
}

/* ---- printing -------------------------------------------------------------------------- */

/* Writes `text` word by word from column `col` (what the line holds already), going on at
 * column `indent` on the next lines, each ending before WIDTH. */
static void wrap(FILE *out, int col, int indent, const char *text)
{
    bool first = true;

    if (col < indent)
        col += fprintf(out, "%*s", indent - col, "");
    else if (col > indent)
        col += fprintf(out, " ");
    while (*text) {
        int n = (int)strcspn(text, " ");

        if (!first && col + 1 + n > WIDTH) {
            col = fprintf(out, "\n%*s", indent, "") - 1;
            first = true;
        }
        col += fprintf(out, "%s%.*s", first ? "" : " ", n, text);
        first = false;
        text += n;
        text += strspn(text, " ");
    }
    fputc('\n', out);
}

/* "memvisor NAME [-c FILE] [-o SECTION.KEY=VALUE]... ARGS", wrapped under the name. */
static void synopsis(FILE *out, const char *lead, const mv_cli_cmd_t *cmd)
{
    int col = fprintf(out, "%smemvisor %s", lead, cmd->name), indent = col + 1;
    char item[96];

    for (size_t i = 0; i <= MV_CLI_MAX_OPTS; i++) {
        const mv_cli_opt_t *o;

        if (i < MV_CLI_MAX_OPTS && cmd->opts[i] == MV_CLI_NOPTIONS)
            i = MV_CLI_MAX_OPTS; /* then the positional arguments */
        if (i < MV_CLI_MAX_OPTS) {
            o = &options[cmd->opts[i]];
            if (o->id == MV_CLI_HELP)
                continue;
            snprintf(item, sizeof item, "[%s%s%s]%s", o->flag, o->arg ? " " : "",
                     o->arg ? o->arg : "", o->repeat ? "..." : "");
        } else if (*cmd->args) {
            snprintf(item, sizeof item, "%s", cmd->args);
        } else {
            break;
        }
        if (col + 1 + (int)strlen(item) > WIDTH)
            col = fprintf(out, "\n%*s", indent - 1, "") - 1;
        col += fprintf(out, " %s", item);
    }
    fputc('\n', out);
}

/* "  -c, --config FILE       the doc, wrapped at column 26". */
static void option_line(FILE *out, const mv_cli_opt_t *o)
{
    int col = fprintf(out, "  %s%s%s%s%s", o->flag, o->alias ? ", " : "", o->alias ? o->alias : "",
                      o->arg ? " " : "", o->arg ? o->arg : "");

    if (col > 24)
        col = fprintf(out, "\n") - 1;
    wrap(out, col, 26, o->doc);
}

/* The exit codes, once per distinct text: "status, recycle, ...: 0 done; ...". */
static void exit_lines(FILE *out)
{
    for (size_t i = 0; i < MV_ARRAY_LEN(commands); i++) {
        bool seen = false;
        char lead[160];
        int n = 0;

        for (size_t j = 0; j < i; j++)
            seen = seen || strcmp(commands[j].exit, commands[i].exit) == 0;
        if (seen || commands[i].hidden || !*commands[i].exit)
            continue;
        for (size_t j = i; j < MV_ARRAY_LEN(commands); j++)
            if (strcmp(commands[j].exit, commands[i].exit) == 0 && n < (int)sizeof lead)
                n += snprintf(lead + n, sizeof lead - (size_t)n, "%s%s", n ? ", " : "",
                              commands[j].name);
        wrap(out, fprintf(out, "  %s:", lead), 4, commands[i].exit);
    }
}

void mv_cli_help(FILE *out)
{
    bool listed[MV_CLI_NOPTIONS] = {false};

    fputs("memvisor " MV_VERSION ": runs workers in per-worker memory cgroups, recycles them on "
          "memory and\ntask limits without losing tasks, and names the task kinds that leak.\n\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < MV_ARRAY_LEN(commands); i++) {
        if (commands[i].hidden)
            continue;
        synopsis(out, "  ", &commands[i]);
        wrap(out, 0, 6, commands[i].summary);
    }
    fputs("\noptions:\n", out);
    for (size_t i = 0; i < MV_ARRAY_LEN(commands); i++)
        for (size_t k = 0; k < MV_CLI_MAX_OPTS && commands[i].opts[k] != MV_CLI_NOPTIONS; k++)
            if (!commands[i].hidden && !listed[commands[i].opts[k]]) {
                listed[commands[i].opts[k]] = true;
                option_line(out, &options[commands[i].opts[k]]);
            }
    fputs("\nexit status:\n", out);
    exit_lines(out);
    fputs("\n`memvisor help COMMAND` shows one command; `man memvisor` has the configuration keys, "
          "files\nand examples; conf/memvisor.ini lists every key with its default.\n",
          out);
}

void mv_cli_help_command(const mv_cli_cmd_t *cmd, FILE *out)
{
    synopsis(out, "usage: ", cmd);
    fputc('\n', out);
    wrap(out, 0, 2, cmd->summary);
    if (cmd->opts[0] != MV_CLI_NOPTIONS)
        fputs("\noptions:\n", out);
    for (size_t k = 0; k < MV_CLI_MAX_OPTS && cmd->opts[k] != MV_CLI_NOPTIONS; k++)
        option_line(out, &options[cmd->opts[k]]);
    if (*cmd->exit)
        wrap(out, fprintf(out, "\nexit status:") - 1, 2, cmd->exit);
}

int mv_cli_usage_error(const mv_cli_cmd_t *cmd, const char *what, const char *arg)
{
    fprintf(stderr, "memvisor: %s%s\n", what, arg);
    if (cmd) {
        synopsis(stderr, "usage: ", cmd);
        fprintf(stderr, "(memvisor help %s for more)\n", cmd->name);
    } else {
        fputs("(memvisor --help lists every command)\n", stderr);
    }
    return MV_EXIT_USAGE;
}
