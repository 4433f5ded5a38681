/*
 * gather: when a busy worker's answers are read in batches (gather.h).
 */
#include "gather.h"

void mv_gather_read(mv_gather_t *g, uint64_t now_ns, uint64_t done, unsigned in_hand)
{
    uint64_t answers = done - g->done;

    if (answers == 0)
        return; /* part of a line: nothing to learn from, nothing to wait for */
    /* Only an interval the worker spent holding tasks says how fast it answers: one that began
     * with it idle (nothing in hand after the previous read) holds time it waited for tasks.
     * Weighted by the time, not by the read: a read of one answer after the worker lost the
     * CPU for 4 ms says less than one of 25 answers in 1.2 ms. */
    if (g->busy && g->at_ns > 0 && now_ns > g->at_ns) {
        uint64_t per = (now_ns - g->at_ns) / answers, rise = g->fast_ns + g->fast_ns / 16;

        g->busy_ns = g->busy_ns - g->busy_ns / 4 + (now_ns - g->at_ns);
        g->answers = g->answers - g->answers / 4 + answers * 256; /* 1/256ths: decays exactly */
        g->ns_per = g->busy_ns * 256 / g->answers;
        g->fast_ns = g->fast_ns && rise < per ? rise : per;
    }
    g->at_ns = now_ns;
    g->done = done;
    g->busy = in_hand > 0;
    g->due = true;
}

uint64_t mv_gather_pause(mv_gather_t *g, unsigned in_hand)
{
    uint64_t held, ms;

    if (!g->due)
        return 0;
    g->due = false;
    g->busy = in_hand > 0; /* refilled: it holds tasks from now on */
    if (g->ns_per == 0 || g->ns_per > MV_GATHER_BUSY_NS)
        return 0;
    held = (uint64_t)in_hand * g->ns_per;
    if (held < MV_GATHER_AHEAD_NS)
        return 0;
    /* How long: the work held at the fastest rate it answered lately, less the slack. */
    held = (uint64_t)in_hand * (g->fast_ns && g->fast_ns < g->ns_per ? g->fast_ns : g->ns_per);
    ms = held > MV_GATHER_SLACK_NS ? (held - MV_GATHER_SLACK_NS) / (1000ULL * 1000) : 0;
    return ms < MV_GATHER_MS ? MV_GATHER_MS : ms < MV_GATHER_MAX_MS ? ms : MV_GATHER_MAX_MS;
}
