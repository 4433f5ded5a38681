/*
 * config_int: what config.c and units.c share and nobody else sees. The units are defined
 * once here so that the parsers (units.c) and the option table (config.c) cannot disagree on
 * what "1K" or "1m" means: K = 1024 bytes, durations count milliseconds.
 */
#ifndef MV_CONFIG_INT_H
#define MV_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define KIB  (INT64_C(1) << 10)
#define MIB  (INT64_C(1) << 20)
#define GIB  (INT64_C(1) << 30)
#define TIB  (INT64_C(1) << 40)
#define PIB  (INT64_C(1) << 50)
#define SEC  INT64_C(1000)
#define MINU (60 * SEC)
#define HOUR (60 * MINU)
#define DAY  (24 * HOUR)

/* A plain decimal integer, sign allowed (the option's range then names the mistake).
 * 0, -EINVAL or -ERANGE; *why gets a static reason on failure. */
int mv_parse_int(const char *s, int64_t *out, const char **why);
/* The canonical text of a value of the given type, in its largest exact unit ("16M",
 * "30s"): what mv_config_print writes and error lines quote. */
void mv_fmt_num(mv_opt_type_t type, int64_t v, char *buf, size_t len);

/* options.c: the table, and its size. */
extern const mv_option_t mv__options[];
extern const size_t mv__noptions;
/* options.c: whether a section exists; the known section (key NULL) or key of `section`
 * nearest to a misspelling, or NULL; the section a key belongs in when it is unique. */
bool mv__config_section_known(const char *section);
const char *mv__config_closest(const char *section, const char *key);
const char *mv__config_home_section(const char *key);
/* options.c: memory_soft and memory_hard left at MV_CONFIG_AUTO made from each other (the
 * table's docs state the rule), with the origin's `via` saying so. */
void mv__config_derive_limits(mv_config_t *c);

/* config.c: adds "WHERE: [section] key: reason" to errs (what config.c reports with). */
void mv__config_report(mv_errors_t *e, mv_origin_t at, const char *section, const char *key,
                       const char *reason);
/* config_ext.c: the syntax of the values that have one of their own (escalate, pause_below),
 * as each is read (q: the value quoted for the message). 0 or -EINVAL with why filled. */
int mv__config_check_ext(const mv_option_t *o, const char *s, const char *q, char *why,
                         size_t wlen);
/* config_ext.c: in mv_config_finish: [worker] user/group to ids (root only), escalate and
 * escalate_max, pause_below. Returns whether a mistake was reported. */
bool mv__config_finish_ext(mv_config_t *c, mv_errors_t *errs);

#endif
