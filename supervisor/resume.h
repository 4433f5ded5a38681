/*
 * resume: reading a results file back, to continue its batch (`memvisor run --resume`).
 *
 * The reader is pure: bytes in (in chunks of any size, or one buffer), and out come the ids
 * that already have a final line (ok, failed or quarantined: every line memvisor writes is
 * final), the counts per status, and where the last complete line ends. Whatever follows it
 * (a line without its newline: the file was cut by a crash or a full disk mid-write) is a
 * torn line: it is reported, never parsed, and the writer truncates it away before it
 * appends. A complete line that is not a result is an error naming its line number: the
 * file is not a memvisor results file, or it was damaged, and guessing would lose or repeat
 * tasks. No I/O and no libuv, so it can be unit-tested and fuzzed (tests/fuzz/).
 *
 * The done ids are kept as sorted ranges: results arrive nearly in task order, so a batch of
 * millions of tasks costs a few ranges, not an entry per task.
 */
#ifndef MV_RESUME_H
#define MV_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A set of task ids, as sorted, disjoint, non-adjacent ranges once finished. */
typedef struct mv_idrange {
    uint64_t lo, hi; /* inclusive */
} mv_idrange_t;

typedef struct mv_idset {
    mv_idrange_t *r;
    size_t n, cap;
    bool sorted; /* mv_idset_finish ran since the last add */
} mv_idset_t;

/* Adds one id (any order). 0 or -ENOMEM. */
int mv_idset_add(mv_idset_t *s, uint64_t id);
/* Sorts and merges the ranges; needed before mv_idset_has. */
void mv_idset_finish(mv_idset_t *s);
/* Whether `id` is in a finished set. O(log ranges). */
bool mv_idset_has(const mv_idset_t *s, uint64_t id);
/* Distinct ids in a finished set. */
uint64_t mv_idset_count(const mv_idset_t *s);
void mv_idset_free(mv_idset_t *s);

/* Final statuses, in the order of results.h's mv_status_t. */
enum { MV_RESUME_OK, MV_RESUME_FAILED, MV_RESUME_QUARANTINED, MV_RESUME_NSTATUS };

typedef struct mv_resume_scan {
    mv_idset_t done;                   /* ids with a final line (finished by mv_resume_end) */
    uint64_t count[MV_RESUME_NSTATUS]; /* tasks per status (by mv_resume_end): a task with
                                          several lines counts once, as its worst status */
    uint64_t lines;                    /* complete result lines */
    uint64_t dups;                     /* lines whose id had a line already */
    uint64_t valid;                    /* bytes up to the end of the last complete line */
    uint64_t torn;                     /* bytes after it: a line without its newline */
    uint64_t bad_line;                 /* the first line that is not a result; 0 = none */
    char why[160];                     /* what is wrong with it */
    mv_idset_t failed, quarantined;    /* ids with a line of that status */
    mv_buf_t carry;                    /* the current incomplete line */
    uint64_t fed;                      /* bytes seen */
} mv_resume_scan_t;

/* Starts a scan (zeroes it). */
void mv_resume_begin(mv_resume_scan_t *s);
/* Feeds the next `n` bytes of the file. 0; -EINVAL at the first line that is not a result
 * (bad_line, why; feeding more does nothing); -ENOMEM. */
int mv_resume_feed(mv_resume_scan_t *s, const void *p, size_t n);
/* The file ended: what is left unterminated is the torn line; finishes `done`. 0 or the
 * error of the scan. */
int mv_resume_end(mv_resume_scan_t *s);
/* A whole file in one buffer: begin, feed, end. */
int mv_resume_scan(mv_resume_scan_t *s, const void *p, size_t n);
void mv_resume_free(mv_resume_scan_t *s);

#endif
