/*
 * cgroup: which cgroup version to use, the run directory, and undoing it all at the end;
 * removing a cgroup. With cgroup_worker.c (each worker's cgroup), the one place that knows v1
 * from v2.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libcgroup.h>
#include <uv.h>

#include "cgroup_int.h"
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

char *mv_cg_join(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

ssize_t mv_cg_read_file(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return -errno;
    r = mv_cg_pread_text(fd, buf, n);
    close(fd);
    return r;
}

int mv_cg_write_file(const char *path, const char *value)
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

ssize_t mv_cg_pread_text(int fd, char *buf, size_t n)
{
    ssize_t r = pread(fd, buf, n - 1, 0);

    if (r < 0)
        return -errno;
    buf[r] = '\0';
    return r;
}

int mv_cg_pread_int(int fd, int64_t *out)
{
    char buf[64], *end;
    ssize_t r = mv_cg_pread_text(fd, buf, sizeof buf);
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

int mv_cg_v1_create(const char *rel, int64_t limit, char *why, size_t n)
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

    if (mv_cg_read_file(path, buf, sizeof buf) < 0)
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
        cg->base = mv_cg_join("%s/%s", mnt, o->parent + (o->parent[0] == '/'));
    else
        cg->base = mv_cg_join("%s%s", mnt, cur ? cur : own);
    free(cur);
    return cg->base ? 0 : -ENOMEM;
}

static int v2_discover(mv_cg_t *cg, const mv_cg_opts_t *o, const char *own, char **own_abs,
                       char *why, size_t n)
{
    char *root = NULL, *ctl;
    const char *rel = own;
    int r = find_v2_mount(o->mountinfo ? o->mountinfo : "/proc/self/mountinfo", &cg->mount, &root);

    if (r < 0) {
        snprintf(why, n, "no cgroup2 mount in mountinfo");
        return r;
    }
    /* Inside a cgroup namespace or a bind mount, the mount shows a subtree: strip it. A
     * mount whose root is not above memvisor's cgroup ("/.." in a cgroup namespace that
     * kept the host's mount, where /proc/self/cgroup is relative to the namespace's root,
     * not the mount's) gives no path to it: the mount's root would be taken for it, and
     * memvisor would leave its own cgroup for a child of the mount's root (seen in the 6.12
     * guest, docs/cgroup-v2-tests.md). */
    if (strcmp(root, "/") != 0) {
        size_t k = strlen(root);
        if (strncmp(root, "/..", 3) == 0 || strncmp(own, root, k) != 0 ||
            (own[k] != '/' && own[k] != '\0')) {
            snprintf(why, n,
                     "memvisor's cgroup %s is not under the cgroup2 mount %s (its root: %s; in "
                     "a cgroup namespace, mount cgroup2 inside it)",
                     own, cg->mount, root);
            free(root);
            return -ENOTSUP;
        }
        rel = own + k;
        if (!*rel)
            rel = "/";
    }
    /* memvisor's own cgroup as a path: the mount plus its path below the mount's root. */
    *own_abs = mv_cg_join("%s%s", cg->mount, strcmp(rel, "/") == 0 ? "" : rel);
    if (*o->parent)
        cg->base = mv_cg_join("%s/%s", cg->mount, o->parent + (o->parent[0] == '/'));
    else
        cg->base = mv_cg_join("%s%s", cg->mount, strcmp(rel, "/") == 0 ? "" : rel);
    free(root);
    if (!cg->base || !*own_abs)
        return -ENOMEM;
    ctl = mv_cg_join("%s/cgroup.controllers", cg->base);
    if (ctl && access(ctl, F_OK) < 0 && errno == ENOENT) {
        r = *o->parent ? -ENOENT : -ENOTSUP;
        snprintf(why, n, "%s is not a cgroup%s", cg->base,
                 *o->parent ? " ([supervisor] cgroup_parent)" : "");
        free(ctl);
        return r;
    }
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
    char *sup = NULL, *procs = NULL, *ctl = mv_cg_join("%s/cgroup.subtree_control", cg->base);
    int r = 0;

    if (!ctl)
        return -ENOMEM;
    if (strcmp(own_abs, cg->base) == 0) {
        sup = mv_cg_join("%s/supervisor", cg->base);
        procs = mv_cg_join("%s/supervisor/cgroup.procs", cg->base);
        if (!sup || !procs)
            r = -ENOMEM;
        else if (mkdir(sup, 0755) < 0 && errno != EEXIST)
            r = -errno;
        else
            r = mv_cg_write_file(procs, "0"); /* "0": this process, every thread */
        if (r < 0)
            snprintf(why, n, "cannot move memvisor into %s: %s", sup ? sup : "?", strerror(-r));
        else
            cg->vacated = strdup(cg->base);
    }
    if (r == 0 && !file_has_word(ctl, "memory")) {
        r = mv_cg_write_file(ctl, "+memory");
        if (r < 0)
            snprintf(why, n, "cannot enable +memory in %s: %s%s", ctl, strerror(-r),
                     r == -EBUSY ? " (other processes live in that cgroup: start memvisor in a "
                                   "cgroup of its own, e.g. a unit or scope with Delegate=yes, "
                                   "or set [supervisor] cgroup_parent to one)"
                                 : "");
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
        cg->v1_rel = mv_cg_join("%s", cg->run + strlen(cg->mount));
        return cg->v1_rel ? mv_cg_v1_create(cg->v1_rel, 0, why, n) : -ENOMEM;
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
        cg->run = k ? mv_cg_join("%s/memvisor-%d-%d", cg->base, (int)pid, k)
                    : mv_cg_join("%s/memvisor-%d", cg->base, (int)pid);
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
    ctl = mv_cg_join("%s/cgroup.subtree_control", cg->run);
    r = ctl ? mv_cg_write_file(ctl, "+memory") : -ENOMEM;
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
    r = v == MV_CG_V1 ? v1_discover(cg, o, own, why, n) : v2_discover(cg, o, own, &own_abs, why, n);
    if (r == 0 && v == MV_CG_V2)
        r = v2_vacate(cg, own_abs, why, n);
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
    len = mv_cg_read_file(o->proc_cgroup ? o->proc_cgroup : "/proc/self/cgroup", text, sizeof text);
    if (len < 0) {
        snprintf(why, n, "cannot read /proc/self/cgroup: %s", strerror((int)-len));
        return o->mode == MV_CGMODE_AUTO ? 0 : (int)len;
    }
    /* auto: v2 where it has the memory controller (most systems), else v1 (hybrid). */
    if (o->mode == MV_CGMODE_AUTO || o->mode == MV_CGMODE_V2)
        r = try_version(cg, MV_CG_V2, o, text, why, n);
    if (r < 0 && (o->mode == MV_CGMODE_AUTO || o->mode == MV_CGMODE_V1)) {
        /* auto: when v1 fails too, both reasons are said (on a pure v2 host v1's is only
         * "no v1 memory cgroup", and v2's is the one to act on). */
        char v2why[512];
        snprintf(v2why, sizeof v2why, "%s", o->mode == MV_CGMODE_AUTO ? why : "");
        r = try_version(cg, MV_CG_V1, o, text, why, n);
        if (r < 0 && *v2why) {
            char v1why[512];
            snprintf(v1why, sizeof v1why, "%s", why);
            snprintf(why, n, "v2: %s; v1: %s", v2why, v1why);
        }
    }
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
        char *ctl = mv_cg_join("%s/cgroup.subtree_control", cg->base);
        char *procs = mv_cg_join("%s/cgroup.procs", cg->vacated);
        char *sup = mv_cg_join("%s/supervisor", cg->base);
        /* Undo in reverse: stop offering memory to children, move back, remove our leaf. */
        if (cg->enabled && ctl)
            mv_cg_write_file(ctl, "-memory");
        if (procs && mv_cg_write_file(procs, "0") == 0 && sup)
            rmdir(sup);
        free(ctl);
        free(procs);
        free(sup);
    } else if (cg->version == MV_CG_V2 && cg->enabled) {
        char *ctl = mv_cg_join("%s/cgroup.subtree_control", cg->base);
        if (ctl)
            mv_cg_write_file(ctl, "-memory");
        free(ctl);
    }
    reset(cg);
    return r;
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
    if (mv_cg_read_file(file, buf, sizeof buf) <= 0)
        buf[0] = '\0';
    snprintf(file, sizeof file, "%s/cgroup.kill", path);
    killed_all =
        v == MV_CG_V2 && mv_cg_write_file(file, "1") == 0; /* >= 5.14: the kernel kills all */
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

/* Removes the cgroups a worker made inside its own (a memvisor.Pool made in a Pool's task
 * runs a memvisor whose run cgroup lands there; a worker may mkdir one itself), deepest
 * first, their processes killed: while one is there, the worker's cgroup cannot be removed
 * (rmdir says EBUSY) and was left in place, and the run's with it. */
static void remove_children(mv_cg_version_t v, const char *path, int depth, int *killed, char *pids,
                            size_t pn)
{
    char sub[4096];
    struct dirent *e;
    DIR *d;

    if (depth > 32 || !(d = opendir(path)))
        return;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
            continue;
        remove_children(v, sub, depth + 1, killed, pids, pn);
        *killed += kill_leftovers(v, sub, pids, pn);
        for (int i = 0; i < 200 && rmdir(sub) < 0 && errno == EBUSY; i++)
            nanosleep(&(struct timespec){0, 1000000}, NULL); /* thread pool: as below */
    }
    closedir(d);
}

/* rmdir, retried every ms while it is busy: for `patient_ms` with the processes left alone,
 * then once they are killed (and the cgroups made inside it removed), for 200 ms more. */
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
        if (i == patient_ms) {
            remove_children(v, path, 0, killed, pids, pn);
            *killed += kill_leftovers(v, path, pids, pn);
        }
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
