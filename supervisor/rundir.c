/*
 * rundir: a run's directory on disk. Writes here are small and happen at start, at the end,
 * and in the thread pool (snapshots); events.jsonl lines go through the log. Pruning old
 * runs ([supervisor] keep_runs) happens once, at start, before the event loop runs.
 */
#include "rundir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
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

/* Claims the run directory `dir` (just made) for this run. Only a pruner that caught it
 * between its mkdir and this flock can hold it, briefly: mv_lock_take waits that out. A file
 * system without flock (some network ones: ENOLCK, EOPNOTSUPP) leaves the run unlocked. */
static int lock_run_dir(mv_rundir_t *r, char *why, size_t n)
{
    int fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0) {
        rc = -errno;
        snprintf(why, n, "cannot open %s: %s", r->dir, strerror(errno));
        return rc;
    }
    rc = mv_lock_take(fd, MV_LOCK_GRACE_MS, true);
    if (rc == 0) {
        r->lock_fd = fd;
        return 0;
    }
    close(fd);
    if (rc == -EWOULDBLOCK) {
        snprintf(why, n, "%s is locked by another process", r->dir);
        return -EBUSY;
    }
    return 0; /* no locks here: go on without */
}

int mv_rundir_running(const char *state_dir, pid_t *pid)
{
    char latest[PATH_MAX + 16];
    int fd, rc = 0;

    *pid = 0;
    if (snprintf(latest, sizeof latest, "%s/latest", state_dir) >= (int)sizeof latest)
        return -ENAMETOOLONG;
    fd = open(latest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
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
    if (asprintf(&r->id, "%s-%d", stamp, (int)pid) < 0 ||
        asprintf(&r->dir, "%s/%s", real, r->id) < 0)
        return -ENOMEM;
    snprintf(path, sizeof path, "%s/snapshots", r->dir);
    if (mkdir(r->dir, 0755) < 0) {
        rc = -errno;
        snprintf(why, n, "cannot make %s: %s", r->dir, strerror(errno));
        return rc;
    }
    if ((rc = lock_run_dir(r, why, n)) < 0)
        return rc;
    if (mkdir(path, 0755) < 0) {
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

char *mv_rundir_snapshot_path(mv_rundir_t *r, const char *reason, const char *kind, int slot,
                              unsigned *num)
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
    *num = r->snaps;
    return path;
}

/* The number of a snapshot file's name ("0042-leak_suspect-load-w1.json" -> 42), 0 when the
 * name is no snapshot's (numbers start at 1). */
static unsigned long snapshot_number(const char *name)
{
    size_t len = strlen(name);
    unsigned long n = 0;
    const char *p = name;

    if (len < 6 || strcmp(name + len - 5, ".json") != 0)
        return 0;
    for (; isdigit((unsigned char)*p) && n < UINT_MAX; p++)
        n = n * 10 + (unsigned long)(*p - '0');
    return p > name && *p == '-' ? n : 0;
}

int mv_rundir_trim_snapshots(const char *path, unsigned num, unsigned keep)
{
    char dir[PATH_MAX], file[PATH_MAX];
    const char *slash = strrchr(path, '/');
    struct dirent *de;
    int removed = 0;
    DIR *d;

    if (keep == 0 || num <= keep || !slash || (size_t)(slash - path) >= sizeof dir)
        return 0;
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (!(d = opendir(dir)))
        return -errno;
    while ((de = readdir(d))) {
        unsigned long n = snapshot_number(de->d_name);

        if (n == 0 || n > num - keep)
            continue;
        if (snprintf(file, sizeof file, "%s/%s", dir, de->d_name) < (int)sizeof file &&
            unlink(file) == 0)
            removed++;
    }
    closedir(d);
    return removed;
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
        close(r->lock_fd); /* the run has ended: a pruner may remove its directory */
    free(r->dir);
    free(r->id);
    memset(r, 0, sizeof *r);
    r->events_fd = r->lock_fd = -1;
}

/* ---- pruning old runs ------------------------------------------------------------------ */

bool mv_rundir_name(const char *name, pid_t *pid)
{
    static const char shape[] = "ddddddddTddddddZ-"; /* strftime's "%Y%m%dT%H%M%SZ", "-" */
    long long v = 0;
    size_t i;

    for (i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)name[i]) : name[i] != shape[i])
            return false;
    if (!name[i])
        return false;
    for (; name[i]; i++) {
        if (!isdigit((unsigned char)name[i]) || (v = v * 10 + (name[i] - '0')) > INT_MAX)
            return false;
    }
    *pid = (pid_t)v;
    return v > 0;
}

/* Newest first: the names start with the UTC start time; equal seconds order by pid. */
static int newest_first(const void *a, const void *b)
{
    return strverscmp(*(char *const *)b, *(char *const *)a);
}

/* Whether the run whose directory is open as dfd belongs to a memvisor that is (or may be)
 * alive. When it does not, its flock is taken, and held until dfd is closed, so that two
 * memvisors pruning at once do not both remove it. */
static bool in_use(int dfd, pid_t pid)
{
    int lfd;
    bool busy;

    if (flock(dfd, LOCK_EX | LOCK_NB) < 0)
        return true; /* EWOULDBLOCK: its memvisor holds it; any other error: leave it */
    /* A `lock` file inside, for a memvisor that locks that instead of the directory. */
    lfd = openat(dfd, "lock", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (lfd >= 0) {
        busy = flock(lfd, LOCK_EX | LOCK_NB) < 0;
        close(lfd);
        if (busy)
            return true;
    }
    /* A run from before runs were locked, or one caught between its mkdir and its flock. */
    return pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

/* nftw's callback cannot return an errno of its own: it is kept here (prune runs once, at
 * start, on the main thread). */
static int rm_errno;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT)
        return 0;
    rm_errno = errno;
    return -1;
}

/* Removes one old run unless it is in use. */
static void prune_one(const char *state_dir, const char *name, mv_prune_t *res, char *why, size_t n)
{
    char path[PATH_MAX];
    pid_t pid = 0;
    int dfd;

    mv_rundir_name(name, &pid);
    if (snprintf(path, sizeof path, "%s/%s", state_dir, name) >= (int)sizeof path)
        return;
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return; /* another memvisor removed it meanwhile */
    if (dfd >= 0 && in_use(dfd, pid)) {
        res->running++;
        close(dfd);
        return;
    }
    rm_errno = 0;
    if (dfd >= 0 && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0) {
        res->removed++;
    } else {
        if (res->failed++ == 0)
            snprintf(why, n, "cannot remove %s: %s", path,
                     strerror(dfd < 0    ? errno
                              : rm_errno ? rm_errno
                                         : EIO));
    }
    if (dfd >= 0)
        close(dfd);
}

/* The names of the run directories in state_dir (real directories only), newest first. */
static int list_runs(const char *state_dir, char ***out, size_t *count)
{
    char **names = NULL, **nn;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    struct stat st;
    pid_t pid;
    DIR *d = opendir(state_dir);
    int rc = 0;

    if (!d)
        return -errno;
    while (rc == 0 && (de = readdir(d))) {
        if (!mv_rundir_name(de->d_name, &pid) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            if (!(nn = realloc(names, cap * sizeof *nn))) {
                rc = -ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[cnt] = strdup(de->d_name)))
            rc = -ENOMEM;
        else
            cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(names, cnt, sizeof *names, newest_first);
    *out = names;
    *count = cnt;
    return rc;
}

int mv_rundir_prune(const char *state_dir, int keep, mv_prune_t *res, char *why, size_t n)
{
    char **names = NULL;
    size_t cnt = 0;
    int rc;

    memset(res, 0, sizeof *res);
    rc = list_runs(state_dir, &names, &cnt);
    if (rc == -ENOENT)
        rc = 0; /* no state directory yet: nothing to prune */
    else if (rc < 0)
        snprintf(why, n, "cannot read the state directory %s: %s", state_dir, strerror(-rc));
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        if (i < (size_t)(keep > 0 ? keep : 0))
            res->kept++;
        else
            prune_one(state_dir, names[i], res, why, n);
    }
    for (size_t i = 0; i < cnt; i++)
        free(names[i]);
    free(names);
    return rc;
}
