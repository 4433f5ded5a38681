/*
 * gather: when a busy worker's answers are read in batches (prefetch > 1), as pure functions
 * of plain facts (tests/check_gather.c); worker.c carries them out (mv_chan_pause).
 *
 * With prefetch a worker holds tasks ahead, and nothing needs its answers the moment each is
 * written: the tasks it holds keep it busy. Read as they come, every answer (one or two per
 * read at W1's ~70 us a task) costs memvisor a wake-up (epoll, a read, a reading of the worker,
 * a peak reset, a write of new tasks) and the worker the wake-up of memvisor, on two shared
 * cores. So once a dispatch pass has refilled a worker that holds at least
 * MV_GATHER_AHEAD_NS of work (at the rate its answers came), its answers are read again only
 * after a pause: many per read, one reading and one peak reset for them (the tasks of one
 * read share a reading: docs/run-files.md "With prefetch > 1"). The pause is as long as the
 * work it holds allows, MV_GATHER_MS to MV_GATHER_MAX_MS: a pause of N ms (a libuv timer)
 * ends within N + 1 ms, so N is the work held (at the fastest rate it answered lately) less
 * MV_GATHER_SLACK_NS (that 1 ms and 0.5 ms to spare), and the worker is not left without
 * work. W1 at prefetch 64 (4.5 ms held) is read every 2-3 ms rather than every 1-2 on a quiet
 * host (docs/benchmarks.md). A worker whose answers come slower than MV_GATHER_BUSY_NS apart
 * is read as they come: its answers would be held back for little. Docs: docs/recycling.md
 * "Gathered answers".
 */
#ifndef MV_GATHER_H
#define MV_GATHER_H

#include <stdbool.h>
#include <stdint.h>

#define MV_GATHER_MS       1                /* the shortest pause (a libuv timer: ~1-2 ms) */
#define MV_GATHER_MAX_MS   4                /* the longest: answers wait at most ~5 ms */
#define MV_GATHER_SLACK_NS (1500ULL * 1000) /* work held beyond the pause: 1 ms late, 0.5 spare */
#define MV_GATHER_AHEAD_NS (MV_GATHER_MS * 1000ULL * 1000 + MV_GATHER_SLACK_NS) /* to pause */
#define MV_GATHER_BUSY_NS  (1000ULL * 1000) /* answers at least this often */

typedef struct mv_gather {
    uint64_t at_ns; /* the previous read that brought answers */
    uint64_t done;  /* answers so far, at that read */
    bool busy;      /* it held tasks after that read: the time since is all work */
    bool due;       /* answers came: whether to pause is decided after the refill */
    /* Time it spent busy and the answers it gave meanwhile, over the recent reads (each read
     * counts for 3/4 of the one after): their ratio is its time per answer. */
    uint64_t busy_ns, answers; /* answers in 1/256ths */
    uint64_t ns_per;           /* time per answer; 0 = not known yet */
    /* The fastest it answered lately: the least time per answer of a read, rising by at most
     * 1/16 a read. How long a pause lasts is taken from it, not from ns_per: time the worker
     * lost the CPU, or sat with nothing left during a pause, counts in ns_per as work, and a
     * pause sized by it outlasted the work in hand (W1 on a loaded host). */
    uint64_t fast_ns;
} mv_gather_t;

/* A read at now_ns: `done` answers so far (all reads), `in_hand` tasks it still holds. Updates
 * the rate; a read that brought answers makes a pause due. */
void mv_gather_read(mv_gather_t *g, uint64_t now_ns, uint64_t done, unsigned in_hand);

/* After the dispatch pass that follows a read: how long to wait before reading the worker
 * again, in ms, now that it holds in_hand tasks (0: read its answers as they come). Once per
 * read that brought answers. */
uint64_t mv_gather_pause(mv_gather_t *g, unsigned in_hand);

#endif
