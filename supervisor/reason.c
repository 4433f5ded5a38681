/*
 * reason: the names of mv_reason_t.
 */
#include "reason.h"

const char *mv_reason_name(mv_reason_t r)
{
    static const char *const n[MV_R_COUNT] = {
        "none",       "max_tasks",    "max_lifetime",  "soft_limit", "hard_limit",
        "kernel_oom", "task_timeout", "ready_timeout", "crash",      "protocol_error",
        "requested",  "shutdown",     "fatal",         "no_hello",   "leak_experiment",
    };
    return (unsigned)r < MV_R_COUNT ? n[r] : "?";
}
