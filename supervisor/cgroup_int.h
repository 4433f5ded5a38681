/*
 * cgroup_int: what cgroup.c (setup, teardown) and cgroup_worker.c (per-worker cgroups)
 * share. Private to those two files.
 */
#ifndef MV_CGROUP_INT_H
#define MV_CGROUP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cgroup.h"

/* Reads a small file into buf (NUL-terminated). Bytes read, or -errno. */
ssize_t mv__cg_read_file(const char *path, char *buf, size_t n);
/* Writes a string to a cgroup file (no O_CREAT: the kernel makes them). 0 or -errno. */
int mv__cg_write_file(const char *path, const char *value);
/* pread at 0 of a kept fd into buf (NUL-terminated). Bytes read, or -errno. */
ssize_t mv__cg_pread(int fd, char *buf, size_t n);
/* Parses the first integer in a kept fd's text ("max" reads as INT64_MAX). 0 or -errno. */
int mv__cg_pread_int(int fd, int64_t *out);
/* asprintf that returns NULL on failure. */
char *mv__cg_join(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Serialises libcgroup calls made from thread-pool threads. */
void mv__cg_lock(void);
void mv__cg_unlock(void);
/* Creates a v1 cgroup through libcgroup (relative name), with an optional memory limit.
 * 0 or -errno; `why` gets libcgroup's reason. */
int mv__cg_v1_create(const char *rel, int64_t limit, char *why, size_t n);

#endif
