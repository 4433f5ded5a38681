/*
 * snapshot: what a worker's memory looks like, read from the kernel (docs/run-files.md).
 *
 * These reads walk page tables (smaps costs ~1 ms at 10 MiB, ~15 ms at 1 GiB: CGROUP-FACTS
 * §5), so they run in the thread pool, never on the loop. Every function here is
 * thread-safe and touches only its arguments.
 */
#ifndef MV_SNAPSHOT_H
#define MV_SNAPSHOT_H

#include <stddef.h>

#include <jansson.h>

/* Resident memory per mapping name, from /proc/PID/smaps: {"[heap]": bytes, "[anon]": bytes,
 * "/usr/lib/libc.so.6": bytes, ...} (anonymous mappings share "[anon]"). NULL if unreadable. */
json_t *mv_snap_mappings(int pid);

/*
 * Adds to `doc` what the kernel says now: "status" (/proc/PID/status), "smaps_rollup",
 * "memory_stat" (the cgroup's memory.stat; cgroup_dir may be NULL), and "mappings_growth"
 * (against `baseline`, from mv_snap_mappings at the worker's first task; may be NULL).
 * Fields that cannot be read are null. 0 or -errno when the process is already gone.
 */
int mv_snap_collect(json_t *doc, int pid, const char *cgroup_dir, json_t *baseline);

/* Parsers, exposed for tests: "Key:   123 kB" lines (status, smaps_rollup) into bytes, and
 * "key 123" lines (memory.stat). Only numeric fields are kept. */
json_t *mv_snap_parse_kb(const char *text);
json_t *mv_snap_parse_kv(const char *text);
/* The biggest growths of `now` over `then` (both from mv_snap_mappings), at most `top`. */
json_t *mv_snap_growth(json_t *then, json_t *now, size_t top);
/* mv_snap_mappings' object packed into one block, and a new object from one: how a worker's
 * baseline is kept between its first task and a snapshot (~2 KiB of jansson objects a worker
 * packed into ~0.7; bench/footprint). Free the block; NULL for NULL or on ENOMEM. */
char *mv_snap_pack(json_t *mappings);
json_t *mv_snap_unpack(const char *packed);

/* A JSON string of up to `max` bytes of p[0..n): valid UTF-8 is kept as text (cut on a
 * character boundary), anything else is base64. `*b64` says which. */
json_t *mv_snap_excerpt(const void *p, size_t n, size_t max, int *b64);

#endif
