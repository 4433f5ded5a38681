/*
 * rundir: a run's directory on disk. Writes here are small and happen at start, at the end,
 * and in the thread pool (snapshots); events.jsonl lines go through the log.
 */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runlock.h"

/* mkdir -p for the state directory (it may be relative, e.g. the default ".memvisor"). */
static int make_dirs(const char *path)
{
    char tmp[PATH_MAX];

    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Claims the state directory for this run. A file system without flock (some network
 * ones: ENOLCK, EOPNOTSUPP) leaves the run unlocked rather than refused. */
static int lock_state_dir(mv_rundir_t *r, const char *real, char *why, size_t n)
{
    char latest[PATH_MAX + 16], id[256], who[256];
    ssize_t len;
    int fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
        return 0;
    rc = mv_lock_take(fd, MV_LOCK_GRACE_MS);
    if (rc == 0) {
        r->lock_fd = fd;
        return 0;
    }
    if (rc == -EWOULDBLOCK) {
        mv_lock_describe(mv_lock_holder(fd), who, sizeof who);
        snprintf(latest, sizeof latest, "%s/latest", real);
        len = readlink(latest, id, sizeof id - 1);
        id[len > 0 ? len : 0] = '\0';
        /* "... in use by run 20261121T160000Z-4242, pid 4242 (memvisor run ...)" */
        snprintf(why, n,
                 "state directory %s is in use by %s%s%s%s: give this run its own "
                 "[supervisor] state_dir",
                 real, len > 0 ? "run " : "", id, len > 0 ? ", " : "", who);
        rc = -EBUSY;
    } else {
        rc = 0; /* no locks here: go on without */
    }
    close(fd);
    return rc;
}

int mv_rundir_running(const char *state_dir, pid_t *pid)
{
    int fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    *pid = 0;
    if (fd < 0)
        return -errno;
    /* A shared lock is enough to see whether a run holds the exclusive one, and two
     * lookers never block each other. */
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? 1 : -errno;
        if (rc == 1)
            *pid = mv_lock_holder(fd);
    }
    close(fd);
    return rc;
}

int mv_rundir_open(mv_rundir_t *r, const char *state_dir, pid_t pid, char *why, size_t n)
{
    char stamp[32], real[PATH_MAX], path[PATH_MAX + 64], link[PATH_MAX + 16];
    struct tm tm;
    time_t now = time(NULL);
    int rc;

    memset(r, 0, sizeof *r);
    r->events_fd = r->lock_fd = -1;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    rc = make_dirs(state_dir);
    if (rc == 0 && !realpath(state_dir, real))
        rc = -errno;
    if (rc < 0) {
        snprintf(why, n, "cannot make the state directory %s: %s", state_dir, strerror(-rc));
        return rc;
    }
    rc = lock_state_dir(r, real, why, n);
    if (rc < 0)
        return rc;
    if (asprintf(&r->id, "%s-%d", stamp, (int)pid) < 0 ||
        asprintf(&r->dir, "%s/%s", real, r->id) < 0)
        return -ENOMEM;
    snprintf(path, sizeof path, "%s/snapshots", r->dir);
    if (mkdir(r->dir, 0755) < 0 || mkdir(path, 0755) < 0) {
        rc = -errno;
        snprintf(why, n, "cannot make %s: %s", path, strerror(errno));
        return rc;
    }
    snprintf(path, sizeof path, "%s/events.jsonl", r->dir);
    r->events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (r->events_fd < 0) {
        rc = -errno;
        snprintf(why, n, "cannot open %s: %s", path, strerror(errno));
        return rc;
    }
    /* latest -> this run, replaced atomically (symlink to a temporary name, then rename). */
    snprintf(link, sizeof link, "%s/latest.new", real);
    unlink(link);
    if (symlink(r->id, link) == 0) {
        snprintf(path, sizeof path, "%s/latest", real);
        rename(link, path);
    }
    return 0;
}

char *mv_rundir_snapshot_path(mv_rundir_t *r, const char *reason, const char *kind, int slot)
{
    char safe[48], *path = NULL;
    size_t k = 0;

    if (!r->dir)
        return NULL;
    /* A kind comes from task lines: keep what is safe in a file name. */
    for (const char *p = kind ? kind : "none"; *p && k < sizeof safe - 1; p++)
        safe[k++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                            (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
                        ? *p
                        : '_';
    safe[k] = '\0';
    if (asprintf(&path, "%s/snapshots/%04u-%s-%s-w%d.json", r->dir, ++r->snaps, reason, safe,
                 slot) < 0)
        return NULL;
    return path;
}

int mv_json_write_atomic(const char *path, json_t *doc)
{
    char tmp[PATH_MAX + 8];
    int rc = 0;

    if (snprintf(tmp, sizeof tmp, "%s.new", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    if (json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) < 0)
        rc = -EIO;
    else if (rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

void mv_rundir_close(mv_rundir_t *r)
{
    if (r->events_fd >= 0)
        close(r->events_fd);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* the state directory is free for the next run */
    free(r->dir);
    free(r->id);
    memset(r, 0, sizeof *r);
    r->events_fd = r->lock_fd = -1;
}
