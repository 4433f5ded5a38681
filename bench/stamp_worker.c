/*
 * stamp_worker: the `api` worker of bench/recycle. A task line is a number of microseconds
 * to work (sleep); the answer is "PID SECONDS" with the wall-clock time (CLOCK_REALTIME, as
 * memvisor's log) at which it answered. Its first task is answered at once, whatever it asks:
 * the benchmark measures how long a replacement takes to answer, not the task.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

int main(void)
{
    mvw_t *w;
    mvw_task_t t;
    char out[64], line[32];
    int n, first = 1;

    if (mvw_open(&w) < 0)
        return MVW_EXIT_FATAL;
    while (mvw_next(w, &t) > 0) {
        struct timespec ts;
        long us;

        n = (int)(t.len < sizeof line - 1 ? t.len : sizeof line - 1);
        snprintf(line, sizeof line, "%.*s", n, (const char *)t.data);
        us = strtol(line, NULL, 10);
        if (!first && us > 0)
            usleep((useconds_t)us);
        first = 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = snprintf(out, sizeof out, "%d %lld.%09ld", (int)getpid(), (long long)ts.tv_sec,
                     ts.tv_nsec);
        if (mvw_done(w, out, (size_t)n) < 0)
            break;
    }
    mvw_close(w);
    return 0;
}
