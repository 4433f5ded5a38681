/*
 * exitcode: what memvisor's exit status says (DESIGN §8). Every command (run, check, report,
 * the control CLI) uses these; a run stopped by a signal before every task ended exits 128+N.
 */
#ifndef MV_EXITCODE_H
#define MV_EXITCODE_H

enum {
    MV_EXIT_OK = 0,       /* every task ok */
    MV_EXIT_TASKS = 1,    /* some task failed or was quarantined */
    MV_EXIT_USAGE = 2,    /* usage or configuration error */
    MV_EXIT_CANT_RUN = 3, /* spawn, cgroup or I/O failure; workers crash-looped or asked to stop */
};

#endif
