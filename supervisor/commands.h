/*
 * commands: what the control socket answers (status, metrics, recycle, reload, stop) and the
 * reload that SIGHUP also triggers. main.c hands them to the run (mv_t.commands), so the
 * supervisor never includes this header: the dependency points one way, from here to
 * supervisor.h.
 */
#ifndef MV_COMMANDS_H
#define MV_COMMANDS_H

#include "supervisor.h"

extern const mv_commands_t mv_commands;

#endif
