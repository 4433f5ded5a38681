/*
 * cgroup_worker: one worker's cgroup: making it with its limits, reading it on the hot path,
 * its notifications, and removing it.
 *
 * v1 (CGROUP-FACTS §3): memory.limit_in_bytes is the hard limit (and memsw, where swap is
 * accounted, so swap cannot stretch it); the soft limit is a usage threshold on an eventfd
 * through cgroup.event_control (never memory.soft_limit_in_bytes: deprecated, and only a
 * reclaim priority); the per-task peak is memory.max_usage_in_bytes, reset by writing "0"
 * (it then restarts from the current usage, the right start for a task).
 * v2 (kernel docs, cgroup-v2.rst): memory.max hard, memory.high soft (it throttles instead of
 * killing, which buys the time to drain), memory.swap.max 0, memory.oom.group 1 (an OOM takes
 * the worker's children too), memory.events polled with POLLPRI, memory.peak reset per open
 * fd where the kernel allows it (>= 6.12), otherwise the peak is sampled.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_int.h"

int mv_cg_parse_stat(const char *text, const char *key, int64_t *out)
{
    size_t k = strlen(key);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, k) == 0 && p[k] == ' ') {
            char *end;
            long long v = strtoll(p + k + 1, &end, 10);
            if (end == p + k + 1)
                return -EINVAL;
            *out = v;
            return 0;
        }
    return -ENOENT;
}

/* Opens <dir>/<name> with `flags`; -1 when it cannot (the caller decides if that matters). */
static int open_in(const char *dir, const char *name, int flags)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, flags | O_CLOEXEC);
}

static int write_in(const char *dir, const char *name, const char *value)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return mv__cg_write_file(path, value);
}

static void init_fds(mv_cgw_t *w)
{
    w->procs_fd = w->usage_fd = w->stat_fd = w->peak_fd = w->events_fd = w->notify_fd = -1;
}

void mv_cg_close(mv_cgw_t *w)
{
    int *fds[] = {&w->procs_fd, &w->usage_fd, &w->stat_fd, &w->peak_fd, &w->events_fd};

    /* v2 polls events_fd itself: close it once. */
    if (w->notify_fd >= 0 && w->notify_fd != w->events_fd)
        close(w->notify_fd);
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    init_fds(w);
    free(w->path);
    w->path = NULL;
}

/* v1: limits, files, and the soft-limit threshold eventfd. */
static int create_v1(const mv_cg_t *cg, const char *rel, mv_cgw_t *w, char *why, size_t n)
{
    char value[64];
    int r = mv__cg_v1_create(rel, cg->hard, why, n);

    if (r < 0)
        return r;
    if (cg->hard > 0) {
        snprintf(value, sizeof value, "%lld", (long long)cg->hard);
        /* Only where swap is accounted; the file is absent otherwise. */
        write_in(w->path, "memory.memsw.limit_in_bytes", value);
    }
    w->usage_fd = open_in(w->path, "memory.usage_in_bytes", O_RDONLY);
    w->peak_fd = open_in(w->path, "memory.max_usage_in_bytes", O_RDWR);
    w->events_fd = open_in(w->path, "memory.oom_control", O_RDONLY);
    w->peak_kernel = w->peak_fd >= 0;
    if (cg->soft > 0 && w->usage_fd >= 0) {
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        snprintf(value, sizeof value, "%d %d %lld", w->notify_fd, w->usage_fd, (long long)cg->soft);
        if (w->notify_fd < 0 || write_in(w->path, "cgroup.event_control", value) < 0) {
            snprintf(why, n, "cannot register the soft limit threshold in %s: %s", w->path,
                     strerror(errno));
            return -errno;
        }
    }
    return 0;
}

/* v2: limits and files; memory.events is what gets polled. */
static int create_v2(const mv_cg_t *cg, mv_cgw_t *w, char *why, size_t n)
{
    char value[64];
    int r;

    if (mkdir(w->path, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(why, n, "mkdir %s: %s", w->path, strerror(errno));
        return r;
    }
    snprintf(value, sizeof value, "%lld", (long long)cg->hard);
    r = cg->hard > 0 ? write_in(w->path, "memory.max", value) : 0;
    if (r == 0 && cg->soft > 0) {
        snprintf(value, sizeof value, "%lld", (long long)cg->soft);
        r = write_in(w->path, "memory.high", value);
    }
    if (r < 0) {
        snprintf(why, n, "cannot set the memory limits of %s: %s", w->path, strerror(-r));
        return r;
    }
    write_in(w->path, "memory.swap.max", "0"); /* absent without swap accounting */
    write_in(w->path, "memory.oom.group", "1");
    w->usage_fd = open_in(w->path, "memory.current", O_RDONLY);
    w->events_fd = open_in(w->path, "memory.events", O_RDONLY);
    w->notify_fd = w->events_fd;
    w->peak_fd = open_in(w->path, "memory.peak", O_RDWR);
    /* Before 6.12 memory.peak is read-only: then the peak is tracked from samples. */
    w->peak_kernel = w->peak_fd >= 0 && pwrite(w->peak_fd, "0\n", 2, 0) == 2;
    return 0;
}

int mv_cg_create(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n)
{
    char rel[4096];
    int r;

    memset(w, 0, sizeof *w);
    init_fds(w);
    w->version = cg->version;
    w->path = mv__cg_join("%s/w%d.%u", cg->run, slot, gen);
    if (!w->path)
        return -ENOMEM;
    if (cg->version == MV_CG_V1) {
        snprintf(rel, sizeof rel, "%s/w%d.%u", cg->v1_rel, slot, gen);
        r = create_v1(cg, rel, w, why, n);
    } else {
        r = create_v2(cg, w, why, n);
    }
    if (r == 0) {
        w->procs_fd = open_in(w->path, "cgroup.procs", O_WRONLY);
        w->stat_fd = open_in(w->path, "memory.stat", O_RDONLY);
        if (w->procs_fd < 0 || w->usage_fd < 0 || w->stat_fd < 0) {
            r = -errno;
            snprintf(why, n, "cannot open the files of %s: %s", w->path, strerror(errno));
        }
    }
    if (r < 0) {
        char tmp[64], *path = w->path;
        w->path = NULL;
        mv_cg_close(w);
        if (path)
            mv_cg_remove(cg->version, path, tmp, sizeof tmp);
        free(path);
    }
    return r;
}

int mv_cg_read(mv_cgw_t *w, mv_cg_reading_t *r)
{
    char buf[2048];
    int rc = mv__cg_pread_int(w->usage_fd, &r->usage);

    if (rc < 0)
        return rc;
    /* memory.stat costs ~12 us to read and moves with the same charges as usage: read it
     * again only when usage moved. */
    if (!w->have_anon || r->usage != w->last_usage) {
        if (mv__cg_pread(w->stat_fd, buf, sizeof buf) < 0 ||
            mv_cg_parse_stat(buf, w->version == MV_CG_V1 ? "rss" : "anon", &w->last_anon) < 0)
            return -EIO;
        w->last_usage = r->usage;
        w->have_anon = true;
    }
    r->anon = w->last_anon;
    r->peak = -1;
    if (w->peak_kernel && mv__cg_pread_int(w->peak_fd, &r->peak) < 0)
        r->peak = -1;
    w->peak_is_usage = r->peak == r->usage;
    return 0;
}

int mv_cg_reset_peak(mv_cgw_t *w)
{
    /* v1: "0" resets to the current usage (global, we are its only writer); v2: any write
     * resets the peak seen through this fd. */
    if (!w->peak_kernel)
        return 0;
    /* A reset sets the peak to the current usage: when they were equal at the last read
     * (the worker has been idle since, between tasks) it would change nothing. */
    if (w->peak_is_usage)
        return 0;
    return pwrite(w->peak_fd, "0\n", 2, 0) < 0 ? -errno : 0;
}

int mv_cg_notified(mv_cgw_t *w)
{
    char buf[512];
    int64_t high = 0, ooms = 0;
    uint64_t count;

    if (w->version == MV_CG_V1) {
        /* A threshold fires crossing up and down; the caller re-reads to see which. */
        if (read(w->notify_fd, &count, sizeof count) != sizeof count)
            return errno == EAGAIN ? 0 : -errno;
        return MV_CG_EV_SOFT;
    }
    /* v2: re-reading memory.events at 0 both tells what changed and re-arms POLLPRI. */
    if (mv__cg_pread(w->events_fd, buf, sizeof buf) < 0)
        return -errno;
    mv_cg_parse_stat(buf, "high", &high);
    mv_cg_parse_stat(buf, "oom_kill", &ooms);
    if ((uint64_t)high != w->high_events) {
        w->high_events = (uint64_t)high;
        return MV_CG_EV_SOFT | (ooms > 0 ? MV_CG_EV_OOM : 0);
    }
    return ooms > 0 ? MV_CG_EV_OOM : 0;
}

int mv_cg_oom_kills(mv_cgw_t *w, uint64_t *n)
{
    char buf[512];
    int64_t v = 0;

    if (w->events_fd < 0 || mv__cg_pread(w->events_fd, buf, sizeof buf) < 0)
        return -EIO;
    /* v1 memory.oom_control and v2 memory.events both say "oom_kill N" (v1 since 4.13). */
    if (mv_cg_parse_stat(buf, "oom_kill", &v) < 0)
        return -ENOENT;
    *n = (uint64_t)v;
    return 0;
}

/* Kills every process left in a cgroup (a worker's own children that outlived it). */
static void kill_leftovers(mv_cg_version_t v, const char *path)
{
    char buf[4096], file[4096];
    char *p, *end;

    snprintf(file, sizeof file, "%s/cgroup.kill", path);
    if (v == MV_CG_V2 && mv__cg_write_file(file, "1") == 0)
        return; /* >= 5.14: the kernel kills the whole cgroup */
    snprintf(file, sizeof file, "%s/cgroup.procs", path);
    if (mv__cg_read_file(file, buf, sizeof buf) <= 0)
        return;
    for (p = buf; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0)
            kill((pid_t)pid, SIGKILL);
        while (*end == '\n')
            end++;
    }
}

int mv_cg_remove(mv_cg_version_t v, const char *path, char *why, size_t n)
{
    /* Plain rmdir, not libcgroup: its delete moves live tasks to the parent instead of
     * failing, and with CGFLAG_DELETE_EMPTY_ONLY returns 0 without deleting (2.0.2). */
    for (int i = 0; i < 200; i++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            break;
        if (i == 0)
            kill_leftovers(v, path);
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* thread pool: sleeping is fine */
    }
    snprintf(why, n, "rmdir %s: %s", path, strerror(errno));
    return -errno;
}
