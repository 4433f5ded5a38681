/*
 * cgroup_worker: one worker's cgroup: making it with its limits (or reusing a gone worker's,
 * v1), reading it on the hot path, its notifications, its OOM kills. The run's cgroups (the
 * version, the run directory, removal) are cgroup.c's.
 *
 * v1 (CGROUP-FACTS §3): memory.limit_in_bytes is the hard limit (and memsw, where swap is
 * accounted, so swap cannot stretch it); the soft limit is a usage threshold on an eventfd
 * through cgroup.event_control (never memory.soft_limit_in_bytes: deprecated, and only a
 * reclaim priority); the per-task peak is memory.max_usage_in_bytes, reset by writing "0"
 * (it then restarts from the current usage, the right start for a task).
 * v2 (kernel docs, cgroup-v2.rst): memory.max hard, memory.swap.max 0, memory.oom.group 1 (an
 * OOM takes the worker's children too), memory.events polled with POLLPRI, memory.peak reset
 * per open fd where the kernel allows it (>= 6.12), otherwise its high-water mark is used for
 * the tasks that raise it and the rest are sampled.
 * The soft limit: v2 has no usage threshold, and memory.high is the only size-based event. It
 * is armed at the soft limit and lifted to "max" as soon as its "high" event is read. Left in
 * place it throttles: past memory.high every allocation batch pays direct reclaim and, from
 * ~1.5 % over, a sleep growing with the square of the excess up to 2 s, so a task that
 * legitimately grows past the soft limit (which is meant to let it finish, then recycle)
 * crawled for minutes in a guest (docs/cgroup-v2-tests.md). Lifted, it costs the task about
 * the loop's reaction time. The lift needs usage still at or over the limit when the event is
 * read: the kernel's reclaim at memory.high may have brought it back under (page cache), and
 * then the loop-side check, which watches a worker while its usage is over the limit, would
 * not watch it, and a lifted memory.high would give no further event. memory.high is armed
 * again by any reading that finds usage under the limit, the reading that ends that watch.
 */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "cgroup_int.h"
#include "util.h"

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
    return mv_cg_write_file(path, value);
}

static void init_fds(mv_cgw_t *w)
{
    w->procs_fd = w->usage_fd = w->stat_fd = w->peak_fd = w->events_fd = w->notify_fd = -1;
    w->high_fd = w->soft_control_fd = -1;
}

void mv_cg_forget(mv_cgw_t *w)
{
    memset(w, 0, sizeof *w);
    init_fds(w);
    w->inherited = -1;
}

void mv_cg_close(mv_cgw_t *w)
{
    int *fds[] = {&w->procs_fd,  &w->usage_fd, &w->stat_fd,        &w->peak_fd,
                  &w->events_fd, &w->high_fd,  &w->soft_control_fd};

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

int mv_cg_register_soft(int control_fd, int notify_fd, int usage_fd, int64_t soft, char *why,
                        size_t n)
{
    char value[64];
    uint64_t one = 1;
    int len = snprintf(value, sizeof value, "%d %d %lld", notify_fd, usage_fd, (long long)soft);

    if (write(control_fd, value, (size_t)len) != len) {
        int e = errno ? errno : EIO;
        snprintf(why, n, "cannot register the soft limit threshold: %s", strerror(e));
        return -e;
    }
    /* Its owner reads usage again. (A failed write can only be a full counter, which is
     * readable already.) */
    if (write(notify_fd, &one, sizeof one) < 0)
        errno = 0;
    return 0;
}

/* v1: limits, files, and the soft-limit threshold eventfd (registered now, or `later`). */
static int create_v1(const mv_cg_t *cg, const char *rel, mv_cgw_t *w, bool later, char *why,
                     size_t n)
{
    char value[64];
    int64_t hard = cg->enforce ? cg->hard : 0; /* observe-only: measure, never limit */
    int r = mv_cg_v1_create(rel, hard, why, n);

    if (r < 0)
        return r;
    if (hard > 0) {
        snprintf(value, sizeof value, "%lld", (long long)cg->hard);
        /* Only where swap is accounted; the file is absent otherwise. */
        write_in(w->path, "memory.memsw.limit_in_bytes", value);
    }
    w->usage_fd = open_in(w->path, "memory.usage_in_bytes", O_RDONLY);
    w->peak_fd = open_in(w->path, "memory.max_usage_in_bytes", O_RDWR);
    w->events_fd = open_in(w->path, "memory.oom_control", O_RDONLY);
    w->peak_kernel = w->peak_fd >= 0;
    w->made_hard = hard > 0 ? hard : 0;
    if (cg->soft > 0 && w->usage_fd >= 0) {
        w->made_soft = cg->soft;
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->notify_fd < 0) {
            snprintf(why, n, "cannot make the soft limit's eventfd for %s: %s", w->path,
                     strerror(errno));
            return -errno;
        }
        /* Opened now, while the path is the one just made (a reuse renames it later). */
        w->soft_control_fd = open_in(w->path, "cgroup.event_control", O_WRONLY);
        if (w->soft_control_fd < 0) {
            snprintf(why, n, "cannot open %s/cgroup.event_control: %s", w->path, strerror(errno));
            return -errno;
        }
        if (later)
            return 0;
        r = mv_cg_register_soft(w->soft_control_fd, w->notify_fd, w->usage_fd, cg->soft, why, n);
        close(w->soft_control_fd);
        w->soft_control_fd = -1;
        if (r < 0)
            return r;
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
    /* Observe-only: no limit and no throttling (the sampler reports would_recycle). */
    r = cg->hard > 0 && cg->enforce ? write_in(w->path, "memory.max", value) : 0;
    if (r == 0 && cg->soft > 0 && cg->enforce) {
        snprintf(value, sizeof value, "%lld", (long long)cg->soft);
        r = write_in(w->path, "memory.high", value);
        /* O_NONBLOCK: kernels >= 6.16 then skip the writer's reclaim (older ones ignore it). */
        w->high_fd = r == 0 ? open_in(w->path, "memory.high", O_WRONLY | O_NONBLOCK) : -1;
        w->soft = cg->soft;
        if (r == 0 && w->high_fd < 0)
            r = -errno; /* an event it could not lift would throttle the worker */
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
    w->peak_kernel = w->peak_fd >= 0 && pwrite(w->peak_fd, "0\n", 2, 0) == 2;
    /* 5.19-6.11: memory.peak is read-only (O_RDWR fails with EACCES), a high-water mark. */
    if (w->peak_fd < 0)
        w->peak_fd = open_in(w->path, "memory.peak", O_RDONLY);
    return 0;
}

/* A worker cgroup's name in the run: w<slot>.<gen>, or a template's t.<gen>. */
static void cg_name(char *buf, size_t n, int slot, unsigned gen)
{
    if (slot == MV_CG_TEMPLATE_SLOT)
        snprintf(buf, n, "t.%u", gen);
    else
        snprintf(buf, n, "w%d.%u", slot, gen);
}

static int create(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, bool later, char *why,
                  size_t n)
{
    char rel[4096], name[32];
    int r;

    memset(w, 0, sizeof *w);
    init_fds(w);
    w->life_peak = w->peak_base = INT64_MAX;
    w->inherited = -1;
    w->version = cg->version;
    /* Observe-only: no kernel limit, so the hard limit is checked on readings of usage. */
    w->usage_gate = !cg->enforce && cg->hard > 0 ? cg->hard : INT64_MAX;
    cg_name(name, sizeof name, slot, gen);
    w->path = mv_cg_join("%s/%s", cg->run, name);
    if (!w->path)
        return -ENOMEM;
    if (cg->version == MV_CG_V1) {
        snprintf(rel, sizeof rel, "%s/%s", cg->v1_rel, name);
        r = create_v1(cg, rel, w, later, why, n);
    } else {
        r = create_v2(cg, w, why, n);
    }
    if (r == 0) {
        /* v1: "tasks". Whoever writes "0" to it (the exec shim, a template's child) is a new
         * process with one thread, so moving that thread moves the process, and a thread
         * moving itself skips the write side of cgroup_threadgroup_rwsem (kernel >= 5.15,
         * "cgroup: Optimize single thread migration"): through cgroup.procs that waits for an
         * RCU grace period when no move came in the last one (CGROUP-FACTS §6), holding
         * cgroup_mutex, and a template's next fork waits behind it (docs/recycling.md has
         * the figures). v2 has no such file for a domain cgroup; its children are born in
         * their cgroup anyway. */
        w->procs_fd =
            open_in(w->path, cg->version == MV_CG_V1 ? "tasks" : "cgroup.procs", O_WRONLY);
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

int mv_cg_create(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n)
{
    return create(cg, slot, gen, w, false, why, n);
}

int mv_cg_create_later(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n)
{
    return create(cg, slot, gen, w, true, why, n);
}

bool mv_cg_reusable(const mv_cg_t *cg, const mv_cgw_t *w)
{
    int64_t hard = cg->enforce && cg->hard > 0 ? cg->hard : 0;

    return cg->version == MV_CG_V1 && w->version == MV_CG_V1 && w->path && w->usage_fd >= 0 &&
           w->made_hard == hard && w->made_soft == (cg->soft > 0 ? cg->soft : 0);
}

/* Whether a cgroup holds no process (cgroup.procs reads empty) and no cgroup (a worker may
 * make some in its own, with processes in them that cgroup.procs does not list: reused, they
 * lived on in the next worker's cgroup, their memory in its figures); `name` is relative to
 * `at`. A cgroup directory's link count is 2 + its subdirectories (kernfs). */
static int holds_nothing(int at, const char *name)
{
    char buf[64], path[4096];
    struct stat st;
    ssize_t r;
    int fd;

    if (fstatat(at, name, &st, 0) < 0)
        return -errno;
    if (st.st_nlink > 2)
        return -EBUSY;
    snprintf(path, sizeof path, "%s/cgroup.procs", name);
    if ((fd = openat(at, path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    r = mv_cg_pread_text(fd, buf, sizeof buf);
    close(fd);
    return r < 0 ? (int)r : r == 0 ? 0 : -EBUSY;
}

/* Where a worker cgroup's name is looked up from: the run directory's fd and the name in it
 * (a walk of one component where its absolute path walks eight here: the emptiness check and
 * the rename of a reuse took 10.4 us of CPU instead of 15.9, docs/recycling.md), or
 * AT_FDCWD and the path. */
static const char *in_run(const mv_cg_t *cg, const char *path, int *at)
{
    size_t n = cg->run ? strlen(cg->run) : 0;

    *at = AT_FDCWD;
    if (cg->run_fd < 0 || !n || strncmp(path, cg->run, n) != 0 || path[n] != '/')
        return path;
    *at = cg->run_fd;
    return path + n + 1;
}

int mv_cg_reuse(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, int64_t max_left, char *why,
                size_t n)
{
    uint64_t ooms = 0, count;
    const char *from, *to;
    int64_t left;
    int r, at, at_to;
    char *path, name[32];

    if (!mv_cg_reusable(cg, w)) {
        snprintf(why, n, "%s was made with other limits", w->path ? w->path : "?");
        return -EINVAL;
    }
    from = in_run(cg, w->path, &at);
    if ((r = holds_nothing(at, from)) < 0) {
        snprintf(why, n, "%s %s", w->path,
                 r == -EBUSY ? "still holds a process or a cgroup" : "cannot be read");
        return r;
    }
    /* Its peak restarts from what is left (a new cgroup's starts from 0): the peak of the
     * worker before must not be anyone's figure. */
    if (w->peak_fd >= 0 && pwrite(w->peak_fd, "0", 1, 0) < 0) {
        snprintf(why, n, "cannot reset the peak of %s: %s", w->path, strerror(errno));
        return -errno;
    }
    if ((r = mv_cg_pread_int(w->usage_fd, &left)) < 0) {
        snprintf(why, n, "cannot read the usage of %s: %s", w->path, strerror(-r));
        return r;
    }
    /* What its workers leave is kernel memory and the per-CPU charge stock (0-0.5 MiB here,
     * median 0.2: the 256 KiB per-CPU grain a new cgroup's figures move in anyway), and page
     * cache or shared memory they wrote, which stays charged: a new cgroup then, not figures
     * that start with someone else's files. */
    if (left > max_left) {
        snprintf(why, n, "%lld bytes are still charged to %s", (long long)left, w->path);
        return -E2BIG;
    }
    cg_name(name, sizeof name, slot, gen);
    path = mv_cg_join("%s/%s", cg->run, name);
    if (!path)
        return -ENOMEM;
    /* v1 renames a cgroup in place (cgroup1_rename); the open files stay valid. */
    to = in_run(cg, path, &at_to);
    if (renameat(at, from, at_to, to) < 0) {
        r = -errno;
        snprintf(why, n, "rename %s to %s: %s", w->path, path, strerror(errno));
        free(path);
        return r;
    }
    free(w->path);
    w->path = path;
    /* Events of the worker before (v1 thresholds fire on the way down too) say nothing now. */
    while (w->notify_fd >= 0 && read(w->notify_fd, &count, sizeof count) == sizeof count)
        ;
    mv_cg_oom_kills(w, &ooms);
    w->oom_base += ooms;
    w->inherited = left;
    w->last_usage = w->last_anon = w->usage_read = 0;
    w->have_anon = w->peak_is_usage = false;
    w->usage_ns = 0;
    return 0;
}

/* Arms memory.high at the soft limit again (usage was just read below it; were it over by
 * now, the write would reclaim in the loop, bounded, and the event would come at once). */
static void rearm_high(mv_cgw_t *w)
{
    char value[32];
    int len = snprintf(value, sizeof value, "%lld", (long long)w->soft);

    if (pwrite(w->high_fd, value, (size_t)len, 0) == len)
        w->high_lifted = false;
}

/* How old a usage a reading may carry when the kernel peak shows it cannot matter. */
#define USAGE_MAX_AGE_NS (10 * 1000 * 1000)

/* The window's kernel peak bounds the usage (usage <= peak): below every limit usage is
 * compared with (the soft limit's memory.stat threshold, and the hard limit when the kernel
 * does not enforce it), a reading need not read usage, and carries the one read at most
 * USAGE_MAX_AGE_NS ago (usage is no per-task figure: limits, status and the timeline use
 * it). That saves a read per task; a reset then always follows (peak == usage is unknown). */
static bool usage_can_wait(mv_cgw_t *w, int64_t anon_from, int64_t peak, uint64_t now)
{
    return peak >= 0 && peak < anon_from && peak < w->usage_gate && w->usage_ns > 0 &&
           now - w->usage_ns < USAGE_MAX_AGE_NS;
}

int mv_cg_read(mv_cgw_t *w, int64_t anon_from, mv_cg_reading_t *r)
{
    char buf[2048];
    uint64_t now = uv_hrtime();
    int rc;

    r->anon = r->peak = -1;
    r->usage_fresh = true;
    if (w->peak_kernel && mv_cg_pread_int(w->peak_fd, &r->peak) < 0)
        r->peak = -1;
    if (usage_can_wait(w, anon_from, r->peak, now)) {
        r->usage = w->usage_read;
        r->usage_fresh = false;
        w->peak_is_usage = false;
        if (w->high_lifted && r->peak < w->soft) /* usage <= peak: under the soft limit */
            rearm_high(w);
        return 0;
    }
    if ((rc = mv_cg_pread_int(w->usage_fd, &r->usage)) < 0)
        return rc;
    w->usage_read = r->usage;
    w->usage_ns = now;
    /* Read after the peak: charges in between belong to the same window. */
    if (r->peak >= 0)
        r->peak = MV_MAX(r->peak, r->usage);
    if (r->usage >= anon_from) {
        /* memory.stat costs ~6-12 us to read and moves with the same charges as usage:
         * read it again only when usage moved. */
        if (!w->have_anon || r->usage != w->last_usage) {
            if (mv_cg_pread_text(w->stat_fd, buf, sizeof buf) < 0 ||
                mv_cg_parse_stat(buf, w->version == MV_CG_V1 ? "rss" : "anon", &w->last_anon) < 0)
                return -EIO;
            w->last_usage = r->usage;
            w->have_anon = true;
        }
        r->anon = w->last_anon;
    }
    if (!w->peak_kernel && w->peak_fd >= 0 && mv_cg_pread_int(w->peak_fd, &w->life_peak) == 0 &&
        w->life_peak > w->peak_base)
        r->peak = w->life_peak; /* the mark rose during the window: it is the window's peak */
    w->peak_is_usage = r->peak == r->usage;
    if (w->high_lifted && r->usage < w->soft)
        rearm_high(w);
    return 0;
}

int mv_cg_reset_peak(mv_cgw_t *w)
{
    /* v1: "0" resets to the current usage (global, we are its only writer); v2: any write
     * resets the peak seen through this fd. v2 before 6.12: the window starts from the mark
     * at the reading that began it (taken just before, in the same loop iteration). */
    if (!w->peak_kernel) {
        w->peak_base = w->life_peak;
        return 0;
    }
    /* A reset sets the peak to the current usage: when they were equal at the last read
     * (the worker has been idle since, between tasks) it would change nothing. */
    if (w->peak_is_usage)
        return 0;
    return pwrite(w->peak_fd, "0\n", 2, 0) < 0 ? -errno : 0;
}

int mv_cg_notified(mv_cgw_t *w)
{
    char buf[512];
    int64_t high = 0, ooms = 0, usage;
    uint64_t count;

    if (w->version == MV_CG_V1) {
        /* A threshold fires crossing up and down; the caller re-reads to see which. */
        if (read(w->notify_fd, &count, sizeof count) != sizeof count)
            return errno == EAGAIN ? 0 : -errno;
        return MV_CG_EV_SOFT;
    }
    /* v2: re-reading memory.events at 0 both tells what changed and re-arms POLLPRI. */
    if (mv_cg_pread_text(w->events_fd, buf, sizeof buf) < 0)
        return -errno;
    mv_cg_parse_stat(buf, "high", &high);
    mv_cg_parse_stat(buf, "oom_kill", &ooms);
    if ((uint64_t)high != w->high_events) {
        w->high_events = (uint64_t)high;
        /* Raising memory.high above usage reclaims nothing: the write returns at once. */
        if (w->high_fd >= 0 && !w->high_lifted && mv_cg_pread_int(w->usage_fd, &usage) == 0 &&
            usage >= w->soft && pwrite(w->high_fd, "max", 3, 0) == 3)
            w->high_lifted = true;
        return MV_CG_EV_SOFT | (ooms > 0 ? MV_CG_EV_OOM : 0);
    }
    return ooms > 0 ? MV_CG_EV_OOM : 0;
}

int mv_cg_cap(mv_cgw_t *w, int64_t bytes)
{
    char value[32];
    int64_t usage;
    int fd, len, r = 0;

    /* Under usage the write would reclaim in the caller (the loop) and fail with EBUSY on
     * v1; a MiB below it, the window for the worker to reach it is a few milliseconds. */
    if (mv_cg_pread_int(w->usage_fd, &usage) < 0)
        return -EIO;
    if (usage + (1 << 20) > bytes)
        return -EBUSY;
    len = snprintf(value, sizeof value, "%lld", (long long)bytes);
    /* v2: O_NONBLOCK, so that kernels >= 6.16 skip the writer's reclaim. */
    fd = open_in(w->path, w->version == MV_CG_V1 ? "memory.limit_in_bytes" : "memory.max",
                 O_WRONLY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (write(fd, value, (size_t)len) != len)
        r = -errno;
    close(fd);
    /* v1 where swap is accounted: memsw must stay >= the limit, so it follows it down. */
    if (r == 0 && w->version == MV_CG_V1)
        write_in(w->path, "memory.memsw.limit_in_bytes", value);
    /* Its kernel limit is no longer the one it was made with: never reused for another
     * worker (which would run under the drain's cap). */
    if (r == 0)
        w->made_hard = -1;
    return r;
}

bool mv_cg_path_holds(const char *path, const char *rel)
{
    size_t lp = strlen(path), lr = strlen(rel);

    /* rel is relative to the reader's cgroup namespace: w's absolute path ends with it, or
     * with one of its ancestors when the process is in a cgroup inside w's ("/" alone is the
     * namespace's root, never a worker's cgroup). */
    while (lr > 1) {
        if (lr <= lp && strncmp(path + lp - lr, rel, lr) == 0)
            return true;
        while (lr > 0 && rel[lr - 1] != '/')
            lr--;
        if (lr > 0)
            lr--; /* the '/' before the last component */
    }
    return false;
}

int mv_cg_holds(const mv_cgw_t *w, pid_t pid)
{
    char file[64], text[4096], *rel = NULL;
    ssize_t n;
    int r;

    snprintf(file, sizeof file, "/proc/%d/cgroup", (int)pid);
    if ((n = mv_cg_read_file(file, text, sizeof text)) < 0)
        return (int)n;
    if ((r = mv_cg_parse_proc_cgroup(text, w->version, &rel)) < 0)
        return r;
    r = mv_cg_path_holds(w->path, rel);
    free(rel);
    return r;
}

int mv_cg_oom_kills(mv_cgw_t *w, uint64_t *n)
{
    char buf[512];
    int64_t v = 0;

    if (w->events_fd < 0 || mv_cg_pread_text(w->events_fd, buf, sizeof buf) < 0)
        return -EIO;
    /* v1 memory.oom_control and v2 memory.events both say "oom_kill N" (v1 since 4.13). */
    if (mv_cg_parse_stat(buf, "oom_kill", &v) < 0)
        return -ENOENT;
    *n = (uint64_t)v > w->oom_base ? (uint64_t)v - w->oom_base : 0;
    return 0;
}
