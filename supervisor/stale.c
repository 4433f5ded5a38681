/*
 * stale: the cgroup run directories of memvisor runs that died (see stale.h).
 */
#include "stale.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "runlock.h"

static char *asprintf_or_null(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *asprintf_or_null(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

/* Whether `name` is a run directory: memvisor-<pid>, or memvisor-<pid>-<k> when that name
 * was taken by a run of another pid namespace. */
static bool run_dir_name(const char *name)
{
    const char *p = name + 9;

    if (strncmp(name, "memvisor-", 9) != 0 || !isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '-' && isdigit((unsigned char)p[1]))
        for (p++; isdigit((unsigned char)*p);)
            p++;
    return *p == '\0';
}

/* Removes one dead run's directory (its lock is ours): kills what is left in its worker
 * cgroups, removes them and it, and logs what it did. */
static void remove_run(const mv_cg_t *cg, const char *dir, mv_log_t *log, char *why, size_t n)
{
    DIR *sub = opendir(dir);
    struct dirent *w;
    char pids[256] = "", tmp[160];
    int killed = 0, workers = 0;

    while (sub && (w = readdir(sub))) {
        char *wd;
        int r;

        /* A worker's cgroup (w<slot>.<gen>) or a template's (t.<gen>, cgroup.h). */
        if (w->d_type != DT_DIR || (w->d_name[0] != 'w' && w->d_name[0] != 't'))
            continue;
        wd = asprintf_or_null("%s/%s", dir, w->d_name);
        workers++;
        r = wd ? mv_cg_remove_counted(cg->version, wd, &killed, pids, sizeof pids, tmp, sizeof tmp)
               : -ENOMEM;
        if (r < 0 && !*why)
            snprintf(why, n, "stale cgroup %s left in place: %s", wd ? wd : dir,
                     wd ? tmp : strerror(ENOMEM));
        free(wd);
    }
    if (sub)
        closedir(sub);
    if (rmdir(dir) < 0) {
        /* ENOENT: gone already -- its own run removed it between our open and its lock's
         * release (a finishing run's, or a dead locker's child's that outlived it). */
        if (errno != ENOENT && !*why)
            snprintf(why, n, "stale cgroup %s left in place: %s", dir, strerror(errno));
        return;
    }
    /* A warning when it killed something: those processes outlived their memvisor. */
    if (log)
        mv_log(log, killed ? MV_LVL_WARN : MV_LVL_INFO, "stale_run_removed", MV_S("cgroup", dir),
               MV_I("workers", workers), MV_I("killed", killed),
               MV_S("pids", *pids ? pids : "none"),
               MV_S("msg", killed ? "a memvisor run that died left processes here: killed"
                                  : "a memvisor run that died left this cgroup"));
}

/* Serializes the starts of the runs that share a base: cleaning stale run directories and
 * making (then locking) this run's one happen under an flock on the base itself, so a
 * cleaner never meets a run directory that another run has made but not locked yet
 * (libcgroup's create writes files after its mkdir: a cleaner removing the empty directory
 * meanwhile made that create fail, measured with four concurrent starts). Held for the
 * setup only; bounded (10 s), after which the run goes on without it. -1 when not taken. */
int mv_cg_lock_base(const char *base)
{
    int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = -EWOULDBLOCK;

    for (int i = 0; fd >= 0 && i < 1000 && (r = mv_lock_try(fd)) == -EWOULDBLOCK; i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL); /* before the loop runs */
    if (fd >= 0 && r < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Removes the run directories of memvisor runs that are gone. "Gone" means its lock is free
 * (runlock.h), never "its pid is gone": a memvisor in another pid namespace sharing this
 * base has a pid that names nothing here, or something else, and must keep its workers. A
 * run directory whose lock we take is dead; its leftovers (a worker's children, a worker of
 * a memvisor without parent-death signals) are killed first. What cannot be removed is said
 * in `why` (the first one). */
void mv_cg_remove_stale(const mv_cg_t *cg, mv_log_t *log, char *why, size_t n)
{
    DIR *d = opendir(cg->base);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char *dir;
        int fd;

        if (!run_dir_name(de->d_name))
            continue;
        dir = asprintf_or_null("%s/%s", cg->base, de->d_name);
        fd = dir ? mv_lock_path(dir, MV_LOCK_GRACE_MS) : -ENOMEM;
        /* Held (a live run), gone meanwhile, or not ours to open: leave it. */
        if (fd >= 0) {
            remove_run(cg, dir, log, why, n);
            close(fd);
        }
        free(dir);
    }
    closedir(d);
}
