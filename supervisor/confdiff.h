/*
 * confdiff: what a reload changes, as a pure function of two configurations and the option
 * table's reload column: options a running memvisor applies (to the workers it starts from
 * then on) and options it keeps until restart (their old values are copied back into the new
 * configuration, so nothing reads a value that is not in force).
 */
#ifndef MV_CONFDIFF_H
#define MV_CONFDIFF_H

#include <stddef.h>

#include "config.h"

typedef struct mv_config_diff {
    const mv_option_t **changed; /* reloadable options whose value changed */
    size_t nchanged;
    const mv_option_t **kept; /* options that changed but are kept until restart */
    size_t nkept;
} mv_config_diff_t;

/* Compares `nc` with `old` and copies the kept values back into `nc`, with what
 * mv_config_finish resolved from them (the workers' uid and gid, pause_below's bytes or
 * permille). 0 or -ENOMEM (nc may
 * then hold some of the old values). Free d with mv_config_diff_free. */
int mv_config_diff(mv_config_t *nc, const mv_config_t *old, mv_config_diff_t *d);
void mv_config_diff_free(mv_config_diff_t *d);

#endif
