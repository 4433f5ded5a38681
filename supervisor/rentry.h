/*
 * rentry: a task as a Redis stream entry, and back (pure: no I/O).
 *
 * A task entry's fields (docs/many-hosts.md):
 *   id        the task id, a decimal integer in 1..2^63-1, unique in the stream (memvisor
 *             submit takes them from the counter STREAM:ids)
 *   data      the task's bytes (what a line of a task file holds)
 *   attempts  attempts that did not end it, so far, on any host (absent = 0)
 *   hist      why they ended: a JSON array like a result's attempt_errors, each with its
 *             "host" (absent = none)
 *   limit, escalations
 *             an escalated task's raised hard limit (bytes) and how many of its attempts
 *             ended in an escalation (escalate.h; absent = none)
 * Other fields are ignored, so a newer memvisor may add some.
 */
#ifndef MV_RENTRY_H
#define MV_RENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "tasks.h"

/* Bytes of one field name or value. */
typedef struct mv_rbytes {
    const char *p;
    size_t n;
} mv_rbytes_t;

#define MV_RENTRY_MAX_FIELDS 16

/* An entry's fields as XADD arguments: name, value, name, value... */
typedef struct mv_rentry {
    const char *argv[MV_RENTRY_MAX_FIELDS];
    size_t len[MV_RENTRY_MAX_FIELDS];
    int argc;
    char id[24], attempts[24], limit[24], escalations[24];
    char *hist; /* JSON, owned; NULL when there is none */
} mv_rentry_t;

/* The message of a task too long for [tasks] max_size (it ends as failed). */
extern const char mv_rentry_too_long[];

/* Makes a task of an entry's fields (fv[0..n): name, value, ...). A task whose data is longer
 * than max_size comes with `bad` set, and no data. 0, -ENOMEM, or -EINVAL with the reason in
 * `why` (no id, an id that is not a positive integer, no data, attempts, hist, limit or
 * escalations malformed). */
int mv_rentry_decode(const mv_rbytes_t *fv, size_t n, int64_t max_size, mv_task_t **out, char *why,
                     size_t wn);
/* A task's fields: id, data, then attempts and hist when it has attempts; `here` names the
 * host of the attempts made here. The pointers reach into t and e: keep both. 0 or -ENOMEM. */
int mv_rentry_encode(const mv_task_t *t, const char *here, mv_rentry_t *e);
/* Appends one more field (name and value must outlive e). -ENOSPC when there is no room. */
int mv_rentry_add(mv_rentry_t *e, const char *name, const void *value, size_t len);
void mv_rentry_free(mv_rentry_t *e);

#endif
