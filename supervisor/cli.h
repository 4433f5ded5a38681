/*
 * cli: the one table of memvisor's commands and of each command's options. main.c
 * dispatches through it, the parsers in main.c and ctl.c accept only the options it lists,
 * and `memvisor --help`, `memvisor help COMMAND` and the tests read it, so a command or an
 * option cannot exist without its line of help.
 */
#ifndef MV_CLI_H
#define MV_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Every option any command takes; a command's table row lists the ones it takes. */
typedef enum {
    MV_CLI_CONFIG,   /* -c, --config FILE */
    MV_CLI_OVERRIDE, /* -o SECTION.KEY=VALUE */
    MV_CLI_TASKS,    /* --tasks FILE|- */
    MV_CLI_RESULTS,  /* --results FILE */
    MV_CLI_RESUME,   /* --resume */
    MV_CLI_SOCKET,   /* --socket PATH */
    MV_CLI_JSON,     /* --json */
    MV_CLI_HTML,     /* --html FILE */
    MV_CLI_TO,       /* --to URL */
    MV_CLI_HELP,     /* -h, --help */
    MV_CLI_NOPTIONS,
} mv_cli_opt_id_t;

typedef struct mv_cli_opt {
    mv_cli_opt_id_t id;
    const char *flag;  /* "-c" or "--tasks" */
    const char *alias; /* "--config", or NULL */
    const char *arg;   /* "FILE", or NULL for a flag without a value */
    bool repeat;       /* may be given more than once */
    const char *doc;   /* one line */
} mv_cli_opt_t;

typedef enum {
    MV_CMD_RUN,
    MV_CMD_CHECK,
    MV_CMD_REPORT,
    MV_CMD_STATUS,
    MV_CMD_RECYCLE,
    MV_CMD_RELOAD,
    MV_CMD_STOP,
    MV_CMD_WORKERS,
    MV_CMD_METRICS,
    MV_CMD_SUBMIT,
    MV_CMD_VERSION,
    MV_CMD_HELP,
    MV_CMD_EXEC_SHIM, /* internal: between fork and the worker's exec */
} mv_cmd_id_t;

#define MV_CLI_MAX_OPTS 8

typedef struct mv_cli_cmd {
    mv_cmd_id_t id;
    const char *name;
    const char *args;    /* positional arguments, for the synopsis ("SLOT|all"), or "" */
    const char *summary; /* what it does, one or two lines of plain text */
    mv_cli_opt_id_t opts[MV_CLI_MAX_OPTS]; /* the options it takes, MV_CLI_NOPTIONS-ended */
    const char *exit;                      /* its exit codes, one line each */
    bool hidden;                           /* not in --help (internal) */
} mv_cli_cmd_t;

/* The commands, in the order --help lists them. */
const mv_cli_cmd_t *mv_cli_commands(size_t *n);
/* The command called `name` (hidden ones too), or NULL. */
const mv_cli_cmd_t *mv_cli_find(const char *name);
/* The option of `cmd` that argument `arg` names (its flag or alias), or NULL. */
const mv_cli_opt_t *mv_cli_option(const mv_cli_cmd_t *cmd, const char *arg);
/* An option by id. */
const mv_cli_opt_t *mv_cli_opt(mv_cli_opt_id_t id);
/* The known command nearest a misspelling ("stauts"), or NULL. */
const char *mv_cli_closest(const char *name);

/* `memvisor --help`: every command with its synopsis and summary, every option, the exit
 * codes, and where to read more. */
void mv_cli_help(FILE *out);
/* `memvisor help COMMAND` and `memvisor COMMAND --help`: its synopsis, summary, every
 * option with its doc, its exit codes. */
void mv_cli_help_command(const mv_cli_cmd_t *cmd, FILE *out);
/* "memvisor: WHAT ARG" and the command's synopsis on stderr; returns the usage exit code. */
int mv_cli_usage_error(const mv_cli_cmd_t *cmd, const char *what, const char *arg);

#endif
