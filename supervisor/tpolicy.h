/*
 * tpolicy: the decisions about the warm template (docs/templates.md) as pure functions of
 * plain facts, tested with plain numbers (tests/check_tpolicy.c). templates.c carries them
 * out.
 *
 *   mv_tpolicy_gone     what a template's exit means: nothing, a new one (after a backoff),
 *                       workers started by exec from now on, or the end of the run
 *   mv_tpolicy_memory   whether a template's memory calls for a new one
 *   mv_tpolicy_fork_error  whether a failed fork means templates cannot work here
 */
#ifndef MV_TPOLICY_H
#define MV_TPOLICY_H

#include <stdbool.h>
#include <stdint.h>

/* Templates that fail in a row, none answering a fork in between, before memvisor starts
 * workers by exec instead. */
#define MV_TEMPLATE_CRASH_LIMIT 3

typedef struct mv_tgone_facts {
    bool asked;       /* memvisor retired or stopped it */
    bool fatal_exit;  /* it exited with [worker] fatal_exit (its start-up said: do not retry) */
    bool hopeless;    /* it could never start (the command cannot be executed) */
    bool unsupported; /* its HELLO said it cannot be a template (old library, threads) */
    int streak;       /* failed templates before it, no fork answered in between */
} mv_tgone_facts_t;

typedef enum {
    MV_TPLAN_NOTHING,  /* asked to go: its replacement, if any, is already there */
    MV_TPLAN_RESPAWN,  /* a new template after delay_ms */
    MV_TPLAN_FALLBACK, /* no more templates: workers are exec'd (warned once) */
    MV_TPLAN_FATAL,    /* the run ends, as for a worker's fatal exit */
} mv_tplan_kind_t;

typedef struct mv_tplan {
    mv_tplan_kind_t kind;
    int streak; /* the streak from now on */
    uint64_t delay_ms;
} mv_tplan_t;

mv_tplan_t mv_tpolicy_gone(const mv_tgone_facts_t *f, int64_t backoff_min, int64_t backoff_max);

typedef enum {
    MV_TMEM_OK,       /* under the soft limit (or no limit, or not read) */
    MV_TMEM_RECYCLE,  /* it grew past the soft limit: a new one, this one retires */
    MV_TMEM_TOO_BIG,  /* over the soft limit since its start: a new one would be as big */
    MV_TMEM_OBSERVED, /* it grew past it, but [limits] enforce = no: said, not acted on */
} mv_tmem_t;

/* mem: the figure the soft limit compares now; at_ready: the same when it became ready (-1:
 * not read); soft: the soft limit (0: off). */
mv_tmem_t mv_tpolicy_memory(int64_t mem, int64_t at_ready, int64_t soft, bool enforce);

/* Whether a fork that failed with errno `err` (the template's clone3) means this kernel or
 * sandbox forbids it (ENOSYS: no clone3; EPERM: a seccomp filter; EINVAL: CLONE_PARENT
 * refused), rather than a passing shortage (EAGAIN, ENOMEM). */
bool mv_tpolicy_fork_hopeless(int err);

#endif
