/*
 * noop_worker: the cheapest possible `api` worker, for bench/dispatch: answers every task
 * with an empty result through libmemvisor.
 */
#include <stdlib.h>

#include <memvisor/worker.h>

int main(void)
{
    mvw_t *w;
    mvw_task_t t;

    if (mvw_open(&w) < 0)
        return MVW_EXIT_FATAL;
    while (mvw_next(w, &t) > 0)
        if (mvw_done(w, "", 0) < 0)
            break;
    mvw_close(w);
    return 0;
}
