/*
 * reason: why a worker left (or was asked to), the machine-readable `reason=` of recycle,
 * exit, requeue and quarantine events. Pure; every layer may use it.
 */
#ifndef MV_REASON_H
#define MV_REASON_H

#include <stdbool.h>

typedef enum {
    MV_R_NONE,
    MV_R_MAX_TASKS,
    MV_R_MAX_LIFETIME,
    MV_R_SOFT_LIMIT,
    MV_R_HARD_LIMIT,
    MV_R_KERNEL_OOM,
    MV_R_TASK_TIMEOUT,
    MV_R_READY_TIMEOUT,
    MV_R_CRASH,
    MV_R_PROTOCOL_ERROR,
    MV_R_REQUESTED,
    MV_R_SHUTDOWN,
    MV_R_FATAL,
    MV_R_NO_HELLO,   /* an api worker that exited 0 without a HELLO: not an api worker */
    MV_R_LOST,       /* the memvisor holding the task went silent (Redis source): another took it */
    MV_R_EXPERIMENT, /* a leak experiment wants a fresh worker in its slot */
    MV_R_SCALED,     /* its slot was retired: the pool was scaled down ([supervisor] workers) */
    MV_R_COUNT
} mv_reason_t;

/* "soft_limit", "kernel_oom", ...; "?" out of range. */
const char *mv_reason_name(mv_reason_t r);
/* The reason of a name mv_reason_name gives; MV_R_NONE for any other (a newer memvisor's). */
mv_reason_t mv_reason_from_name(const char *name);
/* Whether a worker that left for r counts as a recycle (in the summary, status, /metrics and
 * the report): not at the run's end (shutdown), nor when its slot was retired (scaled_down),
 * nor for lost (a task's attempt on another host, never a worker's leaving). */
bool mv_reason_recycles(mv_reason_t r);

#endif
