/*
 * progress: a batch's figures as people watch them (the live line on a terminal, `memvisor
 * status`), the rate and the time left, and their one-line text. Pure: no clock and no I/O;
 * the caller samples (ticker.c) and prints.
 *
 *   1234/4000 31% 812/s eta 3s | ok 1230 failed 4 quarantined 0 | busy 2/2 recycles 10 |
 *   mem 301M #2 (soft 384M, hard 512M)
 *
 * (one line). "?" stands for what is not known: the total of a stream (until it ends) or of a
 * file not counted yet, the rate before two samples, the time left without both.
 */
#ifndef MV_PROGRESS_H
#define MV_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

/* What the line and the status command show. */
typedef struct mv_progress {
    uint64_t done;                    /* tasks with a result: ok + failed + quarantined */
    uint64_t ok, failed, quarantined; /* (a resumed batch counts its earlier lines too) */
    int64_t total;                    /* tasks in the source; -1 = not known */
    int64_t queue;                    /* tasks not sent to any worker yet; -1 = not known */
    uint64_t in_flight;               /* tasks sent to a worker and not ended */
    double rate;                      /* tasks ended per second lately; < 0 = not known */
    double eta_s;                     /* seconds left at that rate; < 0 = not known */
    int busy, workers;                /* workers with a task in hand / serving */
    uint64_t recycles;                /* workers replaced so far, whatever the reason */
    int top_slot;                     /* the worker using the most memory; 0 = none read */
    int64_t top_mem;                  /* its memory (what the soft limit compares), bytes */
    int64_t top_soft, top_hard;       /* its limits, bytes; 0 = off */
} mv_progress_t;

/* Tasks ended, sampled over time: the rate over the latest MV_RATE_WINDOW_MS. */
#define MV_RATE_SAMPLES   48
#define MV_RATE_WINDOW_MS 10000
typedef struct mv_rate {
    uint64_t t_ms[MV_RATE_SAMPLES]; /* a monotonic clock */
    uint64_t n[MV_RATE_SAMPLES];    /* tasks ended by then (a count that only grows) */
    unsigned head, count;           /* ring: the newest is at head - 1 */
} mv_rate_t;

/* Adds a sample (t_ms not before the previous one's; an older one is ignored). */
void mv_rate_add(mv_rate_t *r, uint64_t t_ms, uint64_t ended);
/* Tasks per second between the oldest sample within the window and the newest; -1 until
 * two samples at least 100 ms apart. */
double mv_rate_per_s(const mv_rate_t *r);

/* Seconds until `total` tasks are done at `rate`; -1 when not known (no total, no rate yet,
 * or nothing ended lately). 0 when done. */
double mv_progress_eta(uint64_t done, int64_t total, double rate);

/* Tasks not sent to a worker yet: total - done - in flight, or -1 without a total. */
int64_t mv_progress_queue(uint64_t done, int64_t total, uint64_t in_flight);

/* The line, NUL-terminated, cut to n - 1 bytes (a terminal's width + 1: a line that wraps
 * could not be redrawn in place). Printable ASCII only. Returns its length. */
size_t mv_progress_format(const mv_progress_t *p, char *out, size_t n);

/* Pieces of the line, exposed for tests: "301M", "1.5G", "900K", "12B" (powers of 1024;
 * one decimal under 10), "off" for 0 when `zero_off`; "42s", "3m05s", "2h03m", ">99h". */
void mv_progress_size(int64_t bytes, int zero_off, char out[16]);
void mv_progress_duration(double s, char out[16]);

#endif
