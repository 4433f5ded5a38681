/*
 * reason: the names of mv_reason_t.
 */
#include "reason.h"

#include <string.h>

const char *mv_reason_name(mv_reason_t r)
{
    static const char *const n[MV_R_COUNT] = {
        "none",        "max_tasks",      "max_lifetime", "soft_limit",
        "hard_limit",  "kernel_oom",     "task_timeout", "ready_timeout",
        "crash",       "protocol_error", "requested",    "shutdown",
        "fatal",       "no_hello",       "lost",         "leak_experiment",
        "scaled_down",
    };
    return (unsigned)r < MV_R_COUNT ? n[r] : "?";
}

bool mv_reason_recycles(mv_reason_t r)
{
    return r != MV_R_NONE && r != MV_R_SHUTDOWN && r != MV_R_SCALED && r != MV_R_LOST &&
           (unsigned)r < MV_R_COUNT;
}

mv_reason_t mv_reason_from_name(const char *name)
{
    for (int r = 0; name && r < MV_R_COUNT; r++)
        if (strcmp(mv_reason_name((mv_reason_t)r), name) == 0)
            return (mv_reason_t)r;
    return MV_R_NONE;
}
