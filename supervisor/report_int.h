/*
 * report_int: what the report's files share (report_load.c reads, report_print.c prints
 * text, report_html.c writes the page). Not for other modules: they use report.h.
 */
#ifndef MV_REPORT_INT_H
#define MV_REPORT_INT_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "report.h"

/* Leak rule names by bit of mv_report_kind_t.rules. */
extern const char *const mv__report_rule_name[4];

/* Reads what PATH holds (a run directory, a state directory, a results file) into r (zeroed,
 * with why/nwhy and the optional on_result hook set), then ranks it. 0 or -errno with why
 * filled. Free r with mv__report_free either way. */
int mv__report_load(mv_report_t *r, const char *path);
void mv__report_free(mv_report_t *r);
/* "2026-11-21T16:00:00.123456Z" (the fraction optional) as microseconds since the epoch; -1
 * when s is NULL or not such a time (UTC, from 1970). */
int64_t mv__report_iso_us(const char *s);

/* s as a terminal may show it: control characters (C0, DEL, C1) as \xNN; s itself when it has
 * none, else its escaped copy in buf (n bytes, cut with "..." when it does not fit). */
const char *mv__report_text(const char *s, char *buf, size_t n);
/* A string field of a checked object, or dflt. */
const char *mv__report_str_or(json_t *o, const char *key, const char *dflt);
/* An integer field as text, "?" when absent; with bytes, as a size and "off" for 0 (buf
 * holds 24). */
const char *mv__report_int_or(json_t *o, const char *key, bool bytes, char *buf);
/* The "Suggested limits" section of the text report, with its reasoning. */
void mv__report_print_advice(const mv_report_t *r, FILE *out);

/* report_timeline.c: the page's "timeline" object of r->dir's timeline.csv, downsampled to
 * about `budget` points in all (at least 200 per slot): {epoch_ms, t0, span, points, marks,
 * slots: [{slot, t, g, u, p, r, h, k, gens, marks, points}], ends}. *out stays NULL when the
 * run has no timeline. 0 or -errno with r->why filled. */
int mv__report_timeline(mv_report_t *r, size_t budget, json_t **out);

#endif
