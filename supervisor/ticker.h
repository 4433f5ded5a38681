/*
 * ticker: a batch's progress, sampled four times a second from the pool's view, the results
 * and the task source: the live line on a terminal ([log] progress) and the figures the
 * status command shows, one source for both.
 *
 * The line is handed to the log's writer thread (mv_log_status), which alone writes to the
 * terminal: it clears the line before log lines and redraws it after, so the two never
 * interleave. Redrawn at most 4 times a second (the timer's period) and only when its text
 * changed; never when stderr is not a terminal (auto), nor for a service.
 */
#ifndef MV_TICKER_H
#define MV_TICKER_H

#include <stdbool.h>

#include <uv.h>

#include "progress.h"

#define MV_TICKER_MS 250
/* Every this many ticks the heap's free pages are given back (mv_lean_trim): each tick, as
 * a burst's free chunks stay resident until the next trim; ~25 us a time. */
#define MV_TICKER_TRIM 1

struct mv;

typedef struct mv_ticker {
    uv_timer_t timer;
    bool open;
    bool draw; /* the line is shown on stderr */
    int width; /* stderr's columns when the run started (0 = not a terminal) */
    unsigned ticks;
    mv_rate_t rate;
} mv_ticker_t;

/* Starts sampling (and drawing, per [log] progress). 0 or -errno (logged by the caller). */
int mv_ticker_start(struct mv *mv);
/* The figures now. 0 or -ENOMEM. */
int mv_ticker_figures(struct mv *mv, mv_progress_t *out);
/* Stops sampling and erases the line (the summary comes next); closes the timer. */
void mv_ticker_stop(struct mv *mv);

#endif
