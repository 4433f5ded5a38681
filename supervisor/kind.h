/*
 * kind: a task's kind, from its task line, for the leak detector ([leak] kind). Pure: no
 * I/O, no clock; jansson parses JSON lines.
 *
 * A worker may name its task's kind itself (C: mvw_set_kind, Python: task.kind); otherwise
 * `[leak] kind` says how the line gives it:
 *   auto        a JSON object line: the string value of its first field among "kind",
 *               "type", "op" and "action" that gives a kind; any other line: its first
 *               word (the default)
 *   word        the first word (blank-separated, leading blanks skipped)
 *   json:FIELD  the string value of FIELD (top level) of a JSON object line
 *   none        no kind: every task is judged together
 * and a task gets no kind (null in the results, "(none)" for the detector) when the line
 * gives none: not JSON for json:FIELD, a JSON object without the field, a number.
 *
 * Never one kind per task: a word or value that looks like a number or an id is not a
 * kind (the task gets no kind): a token with no letter (12345, -1.5, 2026-12-01,
 * 10.0.0.1), a number with an exponent (1e6), 0x1F, a UUID, a date-time
 * (2026-12-01T10:00:00Z, 20261201T100000Z), and 8 or more hex digits with a digit among them (a
 * hash, an object id), unless they read as a word of 4 or more letters and a number of 1 to 4
 * digits
 * ("decade12", "cafe0042" are kinds; "5f2b3c8e", "a1b2c3d4", "0042cafe" are not; about one
 * random 8-digit hex id in 150 has that shape and is a kind of its own; a kind that is a
 * word alone, "deadbeef", has no digit and was never an id). A kind with a numeric suffix
 * after a separator is cut there: "job-1234", "job_1234", "job:1234" and "job#1234" are
 * "job", so ids that carry a prefix still give one kind; without a separator it stays
 * ("stage1" and "stage2" are two kinds). A kind the worker names itself is taken as it is:
 * no rule here rewrites it (mv_kind_clean).
 *
 * Output contract (what suspect.c, results and file names rely on): a C string of at most
 * MV_LEAK_KIND_MAX bytes, longer kinds cut, every byte outside 0x21..0x7e replaced by '?'.
 */
#ifndef MV_KIND_H
#define MV_KIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "leak.h"

typedef enum { MV_KIND_AUTO, MV_KIND_WORD, MV_KIND_JSON, MV_KIND_NONE } mv_kind_mode_t;

#define MV_KIND_FIELD_MAX 64 /* longest FIELD of json:FIELD */

/* Parses a `[leak] kind` value (keywords in any case). 0, or -EINVAL with a static reason in
 * *why. For json:FIELD, *field and *field_len give FIELD inside `spec`. */
int mv_kind_spec(const char *spec, mv_kind_mode_t *mode, const char **field, size_t *field_len,
                 const char **why);

/* The kind of the task line[0..len) under cfg's `[leak] kind`: `out`, or NULL when the task
 * has no kind. */
const char *mv_kind_of_line(const mv_config_t *cfg, const uint8_t *line, size_t len,
                            char out[MV_LEAK_KIND_MAX + 1]);

/* Bytes s[0..n) as a kind under the output contract, with no id rule: for a kind the worker
 * named itself. `out`, or NULL for an empty one. */
const char *mv_kind_clean(const uint8_t *s, size_t n, char out[MV_LEAK_KIND_MAX + 1]);

/* Whether s[0..n) looks like a number or an id rather than a kind (the rules above). */
bool mv_kind_is_id(const char *s, size_t n);

#endif
