/*
 * submit: `memvisor submit FILE|- --to redis://HOST:PORT/STREAM`: a task file's lines added
 * to a Redis stream, for `memvisor run --tasks redis://...` on many hosts (docs/many-hosts.md).
 */
#ifndef MV_SUBMIT_H
#define MV_SUBMIT_H

#include "cli.h"

/* The command; returns its exit code (cli.c's table has them). */
int mv_submit_main(const mv_cli_cmd_t *cmd, int argc, char **argv);

#endif
