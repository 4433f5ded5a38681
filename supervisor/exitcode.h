/*
 * exitcode: what memvisor's exit status says (DESIGN §8). Every command (run, check, report,
 * the control CLI) uses these. A batch stopped before every task ended says so: 4 when
 * `memvisor stop` (the control socket) stopped it, 128+N when signal N did (the shell's
 * convention, so `make`, `xargs` and `set -e` scripts see an interruption). Whether every task
 * ended is judged at exit: a stop that came while the last tasks ran, and let them finish,
 * changed nothing (0 or 1 as usual).
 */
#ifndef MV_EXITCODE_H
#define MV_EXITCODE_H

enum {
    MV_EXIT_OK = 0,       /* every task ok */
    MV_EXIT_TASKS = 1,    /* some task failed or was quarantined */
    MV_EXIT_USAGE = 2,    /* usage or configuration error */
    MV_EXIT_CANT_RUN = 3, /* spawn, cgroup or I/O failure; workers crash-looped or asked to stop */
    MV_EXIT_STOPPED = 4,  /* a batch stopped by `memvisor stop` before every task ended */
    MV_EXIT_SIGNAL = 128, /* + N: a batch stopped by signal N before every task ended */
};

#endif
