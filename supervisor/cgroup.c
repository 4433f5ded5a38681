/*
 * cgroup: which cgroup version to use, the run directory, each worker's cgroup, and undoing
 * it all at the end. The one file that knows v1 from v2.
 *
 * libcgroup 2.0.2 is used where it is correct (CGROUP-FACTS.md §2): v1 discovery (the
 * memory mount and memvisor's own path) and v1 creation. Everything else is plain file I/O,
 * each place saying which libcgroup bug it avoids. On v2 libcgroup is not used at all: 2.0.2
 * cannot find our own v2 path (its "%d:%[^:]:%s" parse fails on "0::/") and its create
 * writes +controller into every ancestor's subtree_control, above the delegated cgroup.
 */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libcgroup.h>
#include <uv.h>

#include "lean.h"
#include "runlock.h"
#include "stale.h"
#include "util.h"

static uv_mutex_t cg_mutex;
static uv_once_t cg_once = UV_ONCE_INIT;

static void cg_mutex_init(void)
{
    uv_mutex_init(&cg_mutex);
}

static void cg_lock(void)
{
    uv_once(&cg_once, cg_mutex_init);
    uv_mutex_lock(&cg_mutex);
}

static void cg_unlock(void)
{
    uv_mutex_unlock(&cg_mutex);
}

/* ---- small file helpers ---- */

static ssize_t pread_text(int fd, char *buf, size_t n);
static char *join(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *join(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

static ssize_t read_file(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return -errno;
    r = pread_text(fd, buf, n);
    close(fd);
    return r;
}

static int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t len = strlen(value);
    ssize_t w;

    if (fd < 0)
        return -errno;
    w = write(fd, value, len);
    if (w < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    close(fd);
    return (size_t)w == len ? 0 : -EIO;
}

static ssize_t pread_text(int fd, char *buf, size_t n)
{
    ssize_t r = pread(fd, buf, n - 1, 0);

    if (r < 0)
        return -errno;
    buf[r] = '\0';
    return r;
}

static int pread_int(int fd, int64_t *out)
{
    char buf[64], *end;
    ssize_t r = pread_text(fd, buf, sizeof buf);
    long long v;

    if (r < 0)
        return (int)r;
    if (strncmp(buf, "max", 3) == 0) {
        *out = INT64_MAX;
        return 0;
    }
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (end == buf || errno)
        return -EINVAL;
    *out = v;
    return 0;
}

/* ---- libcgroup ---- */

const char *mv_cg_strerror(int code)
{
    /* 2.0.2's cgroup_strerror indexes its table with code - ECGROUPNOTCOMPILED, but the
     * table has no entry for 50022, so from ECGEOF on every message is off by one, and
     * ECGNONEMPTY reads past the end (a crash). Only trust it below 50022. */
    if (code == ECGOTHER)
        return strerror(cgroup_get_last_errno());
    if (code >= ECGROUPNOTCOMPILED && code < ECGMOUNTFAIL + 1)
        return cgroup_strerror(code);
    switch (code) {
    case ECGEOF: return "end of file or iterator";
    case ECGCONFIGPARSEFAIL: return "failed to parse the configuration file";
    case ECGNAMESPACEPATHS: return "bad namespace paths";
    case ECGNAMESPACECONTROLLER: return "namespace for this controller is already set";
    case ECGMOUNTNAMESPACE: return "a mount namespace is used";
    case ECGROUPUNSUPP: return "operation not supported";
    case ECGCANTSETVALUE: return "cannot set the value";
    case ECGNONEMPTY: return "cgroup is not empty";
    default: return "unknown libcgroup error";
    }
}

/* A libcgroup code as -errno: ECGOTHER carries the real errno. */
static int cg_errno(int code)
{
    if (code == ECGOTHER && cgroup_get_last_errno())
        return -cgroup_get_last_errno();
    if (code == ECGROUPNOTOWNER || code == ECGROUPNOTALLOWED)
        return -EACCES;
    if (code == ECGROUPNOTEXIST)
        return -ENOENT;
    return -EIO;
}

static int v1_create(const char *rel, int64_t limit, char *why, size_t n)
{
    struct cgroup *cg;
    struct cgroup_controller *mem;
    int r = 0;

    cg_lock();
    cg = cgroup_new_cgroup(rel);
    mem = cg ? cgroup_add_controller(cg, "memory") : NULL;
    if (!mem)
        r = ECGFAIL;
    if (r == 0 && limit > 0)
        r = cgroup_add_value_int64(mem, "memory.limit_in_bytes", limit);
    /* A fresh struct holding only what must be written: get->modify rewrites every file. */
    if (r == 0)
        r = cgroup_create_cgroup(cg, 0);
    if (r != 0) {
        snprintf(why, n, "libcgroup cgroup_create_cgroup(%s): %s", rel, mv_cg_strerror(r));
        r = cg_errno(r);
    }
    if (cg)
        cgroup_free(&cg);
    cg_unlock();
    return r;
}

/* ---- discovery ---- */

int mv_cg_parse_proc_cgroup(const char *text, mv_cg_version_t v, char **path)
{
    const char *line = text;

    /* Lines are "ID:CONTROLLERS:PATH"; v1 memory has "memory" among the controllers, v2 is
     * the "0::PATH" line. */
    while (line && *line) {
        const char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        const char *eol = strchr(line, '\n');
        size_t plen;

        if (!c2 || (eol && c2 > eol))
            return -EINVAL;
        plen = (size_t)((eol ? eol : line + strlen(line)) - (c2 + 1));
        if (v == MV_CG_V2 ? (c1 - line == 1 && line[0] == '0' && c2 == c1 + 1)
                          : memmem(c1 + 1, (size_t)(c2 - c1 - 1), "memory", 6) != NULL) {
            *path = strndup(c2 + 1, plen);
            return *path ? 0 : -ENOMEM;
        }
        line = eol ? eol + 1 : NULL;
    }
    return -ENOENT;
}

/* The mount point of the v2 hierarchy (and the root it shows), from mountinfo. */
static int find_v2_mount(const char *mountinfo, char **mount, char **root)
{
    FILE *f = fopen(mountinfo, "re");
    char *line = NULL;
    size_t cap = 0;
    int r = -ENOENT;

    if (!f)
        return -errno;
    while (getline(&line, &cap, f) > 0 && r == -ENOENT) {
        char mroot[4096], point[4096];
        const char *sep = strstr(line, " - ");
        /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS" */
        if (sep && strncmp(sep + 3, "cgroup2 ", 8) == 0 &&
            sscanf(line, "%*s %*s %*s %4095s %4095s", mroot, point) == 2) {
            *mount = strdup(point);
            *root = strdup(mroot);
            r = *mount && *root ? 0 : -ENOMEM;
        }
    }
    free(line);
    fclose(f);
    return r;
}

/* Whether `name` is a word of the space-separated list in file `path`. */
static bool file_has_word(const char *path, const char *name)
{
    char buf[1024];
    size_t n = strlen(name);

    if (read_file(path, buf, sizeof buf) < 0)
        return false;
    for (char *p = buf; (p = strstr(p, name)); p += n)
        if ((p == buf || p[-1] == ' ' || p[-1] == '+') &&
            (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* ---- setup ---- */

static int v1_discover(mv_cg_t *cg, const mv_cg_opts_t *o, const char *own, char *why, size_t n)
{
    char *mnt = NULL, *cur = NULL;
    int r;

    /* libcgroup for v1 discovery (it is correct there); the fixture-free real system only. */
    cg_lock();
    r = cgroup_init();
    if (r == 0) /* its init dirties an 800 KiB table, mostly zeros (lean.h) */
        mv_lean_zero_bss((const void *)cgroup_init);
    if (r == 0)
        r = cgroup_get_subsys_mount_point("memory", &mnt);
    if (r == 0 && !o->proc_cgroup)
        r = cgroup_get_current_controller_path(o->pid ? o->pid : getpid(), "memory", &cur);
    cg_unlock();
    if (r != 0) {
        snprintf(why, n, "libcgroup cannot find the memory hierarchy: %s", mv_cg_strerror(r));
        free(mnt);
        free(cur);
        return -ENOENT;
    }
    cg->mount = mnt;
    cg->v1_libcgroup = true;
    if (*o->parent)
        cg->base = join("%s/%s", mnt, o->parent + (o->parent[0] == '/'));
    else
        cg->base = join("%s%s", mnt, cur ? cur : own);
    free(cur);
    return cg->base ? 0 : -ENOMEM;
}

static int v2_discover(mv_cg_t *cg, const mv_cg_opts_t *o, const char *own, char *why, size_t n)
{
    char *root = NULL, *ctl;
    const char *rel = own;
    int r = find_v2_mount(o->mountinfo ? o->mountinfo : "/proc/self/mountinfo", &cg->mount, &root);

    if (r < 0) {
        snprintf(why, n, "no cgroup2 mount in mountinfo");
        return r;
    }
    /* Inside a cgroup namespace or a bind mount, the mount shows a subtree: strip it. */
    if (strcmp(root, "/") != 0 && strncmp(own, root, strlen(root)) == 0)
        rel = own + strlen(root);
    if (*o->parent)
        cg->base = join("%s/%s", cg->mount, o->parent + (o->parent[0] == '/'));
    else
        cg->base = join("%s%s", cg->mount, strcmp(rel, "/") == 0 ? "" : rel);
    free(root);
    if (!cg->base)
        return -ENOMEM;
    ctl = join("%s/cgroup.controllers", cg->base);
    r = ctl && file_has_word(ctl, "memory") ? 0 : -ENOTSUP;
    if (r < 0)
        snprintf(why, n, "the memory controller is not available in %s", cg->base);
    free(ctl);
    return r;
}

/* v2 "no internal processes": memvisor moves into <base>/supervisor, then +memory is
 * enabled for <base>'s children. Only when base is memvisor's own cgroup. */
static int v2_vacate(mv_cg_t *cg, const char *own_abs, char *why, size_t n)
{
    char *sup = NULL, *procs = NULL, *ctl = join("%s/cgroup.subtree_control", cg->base);
    int r = 0;

    if (!ctl)
        return -ENOMEM;
    if (strcmp(own_abs, cg->base) == 0) {
        sup = join("%s/supervisor", cg->base);
        procs = join("%s/supervisor/cgroup.procs", cg->base);
        if (!sup || !procs)
            r = -ENOMEM;
        else if (mkdir(sup, 0755) < 0 && errno != EEXIST)
            r = -errno;
        else
            r = write_file(procs, "0"); /* "0": this process, every thread */
        if (r < 0)
            snprintf(why, n, "cannot move memvisor into %s: %s", sup ? sup : "?", strerror(-r));
        else
            cg->vacated = strdup(cg->base);
    }
    if (r == 0 && !file_has_word(ctl, "memory")) {
        r = write_file(ctl, "+memory");
        if (r < 0)
            snprintf(why, n, "cannot enable +memory in %s: %s%s", ctl, strerror(-r),
                     r == -EBUSY ? " (other processes live in that cgroup)" : "");
        else
            cg->enabled = true;
    }
    free(sup);
    free(procs);
    free(ctl);
    return r;
}

/* Makes one candidate run directory (v1 through libcgroup); one that exists is fine. */
static int create_run_dir(mv_cg_t *cg, char *why, size_t n)
{
    int r;

    if (cg->version == MV_CG_V1) {
        free(cg->v1_rel);
        cg->v1_rel = join("%s", cg->run + strlen(cg->mount));
        return cg->v1_rel ? v1_create(cg->v1_rel, 0, why, n) : -ENOMEM;
    }
    if (mkdir(cg->run, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(why, n, "mkdir %s: %s", cg->run, strerror(errno));
        return r;
    }
    return 0;
}

/* Whether fd still is the directory at `path` (a stale-run cleaner may have removed the
 * directory between its mkdir and our lock: it was empty and unlocked then). */
static bool same_dir(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

/* Makes the run directory and holds its lock (runlock.h) for the run: that lock is what
 * tells other memvisors sharing the base that this run is alive. memvisor-<pid>, or
 * memvisor-<pid>-<k> when a live run of another pid namespace holds that name. (An unlocked
 * one that is still there is a dead run's that stale.c could not remove: it is taken
 * over, as before locks.) */
static int make_run_dir(mv_cg_t *cg, pid_t pid, char *why, size_t n)
{
    char *ctl;
    int r = -EEXIST, k = 0;

    for (int tries = 0; tries < 100 && r < 0; tries++) {
        free(cg->run);
        cg->run = k ? join("%s/memvisor-%d-%d", cg->base, (int)pid, k)
                    : join("%s/memvisor-%d", cg->base, (int)pid);
        if (!cg->run)
            return -ENOMEM;
        r = create_run_dir(cg, why, n);
        if (r < 0)
            return r;
        r = mv_lock_path(cg->run, 0); /* held: a live run of another pid namespace */
        if (r == -EWOULDBLOCK) {
            k++; /* a live run holds this name */
        } else if (r >= 0 && !same_dir(r, cg->run)) {
            close(r); /* removed by a cleaner before we locked it: make it again */
            r = -ENOENT;
        } else if (r < 0 && r != -ENOENT) {
            snprintf(why, n, "cannot lock %s: %s", cg->run, strerror(-r));
            return r;
        }
    }
    if (r < 0) {
        snprintf(why, n, "no free run directory name under %s", cg->base);
        return -EEXIST;
    }
    cg->run_fd = r;
    if (cg->version == MV_CG_V1)
        return 0;
    ctl = join("%s/cgroup.subtree_control", cg->run);
    r = ctl ? write_file(ctl, "+memory") : -ENOMEM;
    if (r < 0)
        snprintf(why, n, "cannot enable +memory in %s: %s", ctl ? ctl : "?", strerror(-r));
    free(ctl);
    return r;
}

static void reset(mv_cg_t *cg)
{
    if (cg->run_fd >= 0)
        close(cg->run_fd); /* after the rmdir: the run is over */
    free(cg->mount);
    free(cg->base);
    free(cg->run);
    free(cg->vacated);
    free(cg->v1_rel);
    memset(cg, 0, sizeof *cg);
    cg->run_fd = -1;
}

/* Tries one version; 0 when the run directory exists and workers can be made. */
static int try_version(mv_cg_t *cg, mv_cg_version_t v, const mv_cg_opts_t *o, const char *text,
                       char *why, size_t n)
{
    pid_t pid = o->pid ? o->pid : getpid();
    char *own = NULL, *own_abs = NULL;
    char stale[256] = "";
    int r;

    reset(cg);
    cg->version = v;
    r = mv_cg_parse_proc_cgroup(text, v, &own);
    if (r < 0) {
        snprintf(why, n, "no %s memory cgroup in /proc/self/cgroup", v == MV_CG_V1 ? "v1" : "v2");
        return r;
    }
    r = v == MV_CG_V1 ? v1_discover(cg, o, own, why, n) : v2_discover(cg, o, own, why, n);
    if (r == 0 && v == MV_CG_V2) {
        own_abs = join("%s%s", cg->mount, strcmp(own, "/") == 0 ? "" : own);
        r = own_abs ? v2_vacate(cg, own_abs, why, n) : -ENOMEM;
    }
    if (r == 0) {
        int base_fd = mv_cg_lock_base(cg->base);
        mv_cg_remove_stale(cg, o->log, stale, sizeof stale);
        r = make_run_dir(cg, pid, why, n);
        if (base_fd >= 0)
            close(base_fd);
    }
    /* On success `why` says only what the caller should hear: a stale run left in place
     * (not the reason an earlier version was passed over). */
    if (r == 0)
        snprintf(why, n, "%s", stale);
    free(own);
    free(own_abs);
    if (r < 0) {
        char tmp[8];
        mv_cg_teardown(cg, tmp, sizeof tmp);
    }
    return r;
}

int mv_cg_setup(mv_cg_t *cg, const mv_cg_opts_t *o, char *why, size_t n)
{
    char text[8192];
    ssize_t len;
    int r = -ENOENT;

    memset(cg, 0, sizeof *cg);
    cg->run_fd = -1;
    why[0] = '\0';
    cg->soft = o->soft;
    cg->hard = o->hard;
    cg->enforce = o->enforce;
    snprintf(cg->desc, sizeof cg->desc, "no cgroup: sampling /proc");
    if (o->mode == MV_CGMODE_OFF) {
        snprintf(why, n, "[supervisor] cgroup = off");
        return 0;
    }
    len = read_file(o->proc_cgroup ? o->proc_cgroup : "/proc/self/cgroup", text, sizeof text);
    if (len < 0) {
        snprintf(why, n, "cannot read /proc/self/cgroup: %s", strerror((int)-len));
        return o->mode == MV_CGMODE_AUTO ? 0 : (int)len;
    }
    /* auto: v2 where it has the memory controller (most systems), else v1 (hybrid). */
    if (o->mode == MV_CGMODE_AUTO || o->mode == MV_CGMODE_V2)
        r = try_version(cg, MV_CG_V2, o, text, why, n);
    if (r < 0 && (o->mode == MV_CGMODE_AUTO || o->mode == MV_CGMODE_V1))
        r = try_version(cg, MV_CG_V1, o, text, why, n);
    if (r < 0)
        reset(cg); /* nothing half-made remains, and version is OFF */
    cg->soft = o->soft;
    cg->hard = o->hard;
    cg->enforce = o->enforce;
    if (r < 0) {
        snprintf(cg->desc, sizeof cg->desc, "no cgroup: sampling /proc");
        return o->mode == MV_CGMODE_AUTO ? 0 : r;
    }
    snprintf(cg->desc, sizeof cg->desc, "cgroup %s %s", cg->version == MV_CG_V1 ? "v1" : "v2",
             cg->run);
    return 0;
}

int mv_cg_teardown(mv_cg_t *cg, char *why, size_t n)
{
    int r = 0;

    why[0] = '\0';
    /* Plain rmdir: libcgroup's delete would move live tasks to the parent, or with
     * CGFLAG_DELETE_EMPTY_ONLY report success without deleting (CGROUP-FACTS §2.2). */
    for (int i = 0; cg->run && i < 50 && rmdir(cg->run) < 0 && errno == EBUSY; i++)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    if (cg->run && access(cg->run, F_OK) == 0) {
        r = -EBUSY;
        snprintf(why, n, "cannot remove %s: %s", cg->run, strerror(EBUSY));
    }
    if (cg->version == MV_CG_V2 && cg->vacated) {
        char *ctl = join("%s/cgroup.subtree_control", cg->base);
        char *procs = join("%s/cgroup.procs", cg->vacated);
        char *sup = join("%s/supervisor", cg->base);
        /* Undo in reverse: stop offering memory to children, move back, remove our leaf. */
        if (cg->enabled && ctl)
            write_file(ctl, "-memory");
        if (procs && write_file(procs, "0") == 0 && sup)
            rmdir(sup);
        free(ctl);
        free(procs);
        free(sup);
    } else if (cg->version == MV_CG_V2 && cg->enabled) {
        char *ctl = join("%s/cgroup.subtree_control", cg->base);
        if (ctl)
            write_file(ctl, "-memory");
        free(ctl);
    }
    reset(cg);
    return r;
}

/* ---- one worker's cgroup ---- */

/*
 * One worker's cgroup: making it with its limits, reading it on the hot path,
 * its notifications, and removing it.
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
    return write_file(path, value);
}

static void init_fds(mv_cgw_t *w)
{
    w->procs_fd = w->usage_fd = w->stat_fd = w->peak_fd = w->events_fd = w->notify_fd = -1;
    w->high_fd = -1;
}

void mv_cg_forget(mv_cgw_t *w)
{
    memset(w, 0, sizeof *w);
    init_fds(w);
    w->inherited = -1;
}

void mv_cg_close(mv_cgw_t *w)
{
    int *fds[] = {&w->procs_fd, &w->usage_fd, &w->stat_fd, &w->peak_fd, &w->events_fd, &w->high_fd};

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
    int64_t hard = cg->enforce ? cg->hard : 0; /* observe-only: measure, never limit */
    int r = v1_create(rel, hard, why, n);

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

int mv_cg_create(const mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, char *why, size_t n)
{
    char rel[4096];
    int r;

    memset(w, 0, sizeof *w);
    init_fds(w);
    w->life_peak = w->peak_base = INT64_MAX;
    w->inherited = -1;
    w->version = cg->version;
    /* Observe-only: no kernel limit, so the hard limit is checked on readings of usage. */
    w->usage_gate = !cg->enforce && cg->hard > 0 ? cg->hard : INT64_MAX;
    w->path = join("%s/w%d.%u", cg->run, slot, gen);
    if (!w->path)
        return -ENOMEM;
    if (cg->version == MV_CG_V1) {
        snprintf(rel, sizeof rel, "%s/w%d.%u", cg->v1_rel, slot, gen);
        r = create_v1(cg, rel, w, why, n);
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

bool mv_cg_reusable(const mv_cg_t *cg, const mv_cgw_t *w)
{
    int64_t hard = cg->enforce && cg->hard > 0 ? cg->hard : 0;

    return cg->version == MV_CG_V1 && w->version == MV_CG_V1 && w->path && w->usage_fd >= 0 &&
           w->made_hard == hard && w->made_soft == (cg->soft > 0 ? cg->soft : 0);
}

/* Whether a cgroup holds no process (cgroup.procs reads empty); `name` is relative to `at`. */
static int holds_nothing(int at, const char *name)
{
    char buf[64], path[4096];
    ssize_t r;
    int fd;

    snprintf(path, sizeof path, "%s/cgroup.procs", name);
    if ((fd = openat(at, path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    r = pread_text(fd, buf, sizeof buf);
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
    char *path;

    if (!mv_cg_reusable(cg, w)) {
        snprintf(why, n, "%s was made with other limits", w->path ? w->path : "?");
        return -EINVAL;
    }
    from = in_run(cg, w->path, &at);
    if ((r = holds_nothing(at, from)) < 0) {
        snprintf(why, n, "%s %s", w->path,
                 r == -EBUSY ? "still holds a process" : "cannot be read");
        return r;
    }
    /* Its peak restarts from what is left (a new cgroup's starts from 0): the peak of the
     * worker before must not be anyone's figure. */
    if (w->peak_fd >= 0 && pwrite(w->peak_fd, "0", 1, 0) < 0) {
        snprintf(why, n, "cannot reset the peak of %s: %s", w->path, strerror(errno));
        return -errno;
    }
    if ((r = pread_int(w->usage_fd, &left)) < 0) {
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
    path = join("%s/w%d.%u", cg->run, slot, gen);
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
    if (w->peak_kernel && pread_int(w->peak_fd, &r->peak) < 0)
        r->peak = -1;
    if (usage_can_wait(w, anon_from, r->peak, now)) {
        r->usage = w->usage_read;
        r->usage_fresh = false;
        w->peak_is_usage = false;
        if (w->high_lifted && r->peak < w->soft) /* usage <= peak: under the soft limit */
            rearm_high(w);
        return 0;
    }
    if ((rc = pread_int(w->usage_fd, &r->usage)) < 0)
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
            if (pread_text(w->stat_fd, buf, sizeof buf) < 0 ||
                mv_cg_parse_stat(buf, w->version == MV_CG_V1 ? "rss" : "anon", &w->last_anon) < 0)
                return -EIO;
            w->last_usage = r->usage;
            w->have_anon = true;
        }
        r->anon = w->last_anon;
    }
    if (!w->peak_kernel && w->peak_fd >= 0 && pread_int(w->peak_fd, &w->life_peak) == 0 &&
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
    if (pread_text(w->events_fd, buf, sizeof buf) < 0)
        return -errno;
    mv_cg_parse_stat(buf, "high", &high);
    mv_cg_parse_stat(buf, "oom_kill", &ooms);
    if ((uint64_t)high != w->high_events) {
        w->high_events = (uint64_t)high;
        /* Raising memory.high above usage reclaims nothing: the write returns at once. */
        if (w->high_fd >= 0 && !w->high_lifted && pread_int(w->usage_fd, &usage) == 0 &&
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
    if (pread_int(w->usage_fd, &usage) < 0)
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

int mv_cg_oom_kills(mv_cgw_t *w, uint64_t *n)
{
    char buf[512];
    int64_t v = 0;

    if (w->events_fd < 0 || pread_text(w->events_fd, buf, sizeof buf) < 0)
        return -EIO;
    /* v1 memory.oom_control and v2 memory.events both say "oom_kill N" (v1 since 4.13). */
    if (mv_cg_parse_stat(buf, "oom_kill", &v) < 0)
        return -ENOENT;
    *n = (uint64_t)v > w->oom_base ? (uint64_t)v - w->oom_base : 0;
    return 0;
}

/* Kills every process left in a cgroup (a worker's own children that outlived it, or the
 * workers of a dead run); returns how many there were, their pids appended to `pids`. */
static int kill_leftovers(mv_cg_version_t v, const char *path, char *pids, size_t pn)
{
    char buf[4096], file[4096];
    char *p, *end;
    int count = 0;
    bool killed_all;

    snprintf(file, sizeof file, "%s/cgroup.procs", path);
    if (read_file(file, buf, sizeof buf) <= 0)
        buf[0] = '\0';
    snprintf(file, sizeof file, "%s/cgroup.kill", path);
    killed_all = v == MV_CG_V2 && write_file(file, "1") == 0; /* >= 5.14: the kernel kills all */
    for (p = buf; *p; p = end) {
        long pid = strtol(p, &end, 10);
        size_t used = strlen(pids);
        if (end == p)
            break;
        if (pid > 0) {
            if (!killed_all)
                kill((pid_t)pid, SIGKILL);
            count++;
            if (pn > used + 24)
                snprintf(pids + used, pn - used, "%s%ld", used ? "," : "", pid);
        }
        while (*end == '\n')
            end++;
    }
    return count;
}

/* rmdir, retried every ms while it is busy: for `patient_ms` with the processes left alone,
 * then once they are killed, for 200 ms more. */
static int remove_after(mv_cg_version_t v, const char *path, int patient_ms, int *killed,
                        char *pids, size_t pn, char *why, size_t n)
{
    /* Plain rmdir, not libcgroup: its delete moves live tasks to the parent instead of
     * failing, and with CGFLAG_DELETE_EMPTY_ONLY returns 0 without deleting (2.0.2). */
    int e = 0;

    for (int i = 0; i < patient_ms + 200; i++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        e = errno;
        if (e != EBUSY)
            break;
        if (i == patient_ms)
            *killed += kill_leftovers(v, path, pids, pn);
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* thread pool: sleeping is fine */
    }
    snprintf(why, n, "rmdir %s: %s", path, strerror(e));
    return -e;
}

int mv_cg_remove_counted(mv_cg_version_t v, const char *path, int *killed, char *pids, size_t pn,
                         char *why, size_t n)
{
    return remove_after(v, path, 0, killed, pids, pn, why, n);
}

int mv_cg_remove_patient(mv_cg_version_t v, const char *path, int patient_ms, char *why, size_t n)
{
    char pids[8];
    int killed = 0;

    pids[0] = '\0';
    return remove_after(v, path, patient_ms > 0 ? patient_ms : 0, &killed, pids, sizeof pids, why,
                        n);
}

int mv_cg_remove(mv_cg_version_t v, const char *path, char *why, size_t n)
{
    return mv_cg_remove_patient(v, path, 0, why, n);
}
