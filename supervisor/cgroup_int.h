/*
 * cgroup_int: what cgroup.c (the run's cgroups) and cgroup_worker.c (one worker's) share:
 * small file helpers and libcgroup's v1 creation. Not for other files.
 */
#ifndef MV_CGROUP_INT_H
#define MV_CGROUP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* asprintf; NULL on ENOMEM. */
char *mv_cg_join(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A small file's text, NUL-terminated in buf (n bytes at most with the NUL): its length or
 * -errno. */
ssize_t mv_cg_read_file(const char *path, char *buf, size_t n);
ssize_t mv_cg_pread_text(int fd, char *buf, size_t n);
/* One write of `value`: 0 or -errno (-EIO when short). */
int mv_cg_write_file(const char *path, const char *value);
/* An integer file ("max" reads INT64_MAX): 0 or -errno. */
int mv_cg_pread_int(int fd, int64_t *out);
/* A v1 memory cgroup `rel` (relative to the memory mount) through libcgroup, with a hard
 * limit when limit > 0: 0 or -errno, why set. */
int mv_cg_v1_create(const char *rel, int64_t limit, char *why, size_t n);

#endif
