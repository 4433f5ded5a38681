/*
 * paths: where a relative path in the configuration points (docs/operations.md, "Paths").
 *
 * A relative `[supervisor] state_dir` or `[control] socket` is resolved once, when the
 * configuration is built, against a base directory:
 *   - written in a config file, or left at its default while a config file is given: the
 *     directory of that file, so every command given the same `-c FILE` (run, status,
 *     stop, report, ...) finds the same state, from any working directory;
 *   - given with `-o`, or no config file at all: the working directory, like any path
 *     typed on a command line.
 * mv_path_resolve is the pure part (no I/O); the caller supplies the base.
 */
#ifndef MV_PATHS_H
#define MV_PATHS_H

#include <stddef.h>

/* `path` made absolute against the absolute directory `base`, tidied: empty and "."
 * components and repeated slashes dropped, and each ".." at the start of a relative
 * `path` takes one component off `base` (which should be a physical path, as getcwd and
 * realpath return: then this is exact). A ".." further in is left for the kernel. An
 * absolute `path` ignores `base` and is only tidied. A trailing slash is dropped.
 * 0, -EINVAL (empty path, or a relative path with a base that is not absolute) or
 * -ENAMETOOLONG (does not fit in `cap` bytes). */
int mv_path_resolve(const char *base, const char *path, char *out, size_t cap);

/* The physical directory a config file is in, as its path names it (realpath of the path's
 * directory part: a symlinked file counts where the link is), or, for `config` NULL, the
 * working directory. Malloc'd in *out. 0 or -errno. */
int mv_path_base_of(const char *config, char **out);

#endif
