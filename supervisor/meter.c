/*
 * meter: memory readings of a worker.
 */
#include "meter.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int mv_meter_parse_statm(const char *text, long page_size, int64_t *rss, int64_t *priv)
{
    long long f[3];
    char *end;

    /* statm: size resident shared text lib data dt (pages). shared = RssFile + RssShmem.
     * strtoll, not sscanf: this runs once per task. */
    for (int i = 0; i < 3; i++) {
        errno = 0;
        f[i] = strtoll(text, &end, 10);
        if (end == text || errno || f[i] < 0 || (*end != ' ' && *end != '\n' && *end))
            return -EINVAL;
        text = end;
    }
    long long resident = f[1], shared = f[2];
    *rss = (int64_t)resident * page_size;
    *priv = (int64_t)(resident > shared ? resident - shared : 0) * page_size;
    return 0;
}

void mv_meter_init(mv_meter_t *m)
{
    memset(m, 0, sizeof *m);
    m->statm_fd = m->fd_dir_fd = m->status_fd = m->clear_refs_fd = -1;
}

int mv_meter_open(mv_meter_t *m, pid_t pid, mv_cgw_t *cg, int64_t anon_from)
{
    char path[48];
    struct stat st;

    mv_meter_init(m);
    m->cg = cg;
    m->anon_from = anon_from > 0 ? anon_from : INT64_MAX;
    m->pid = pid;
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    m->statm_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->statm_fd < 0)
        return -errno;
    m->page_size = sysconf(_SC_PAGESIZE);
    snprintf(m->fd_dir, sizeof m->fd_dir, "/proc/%d/fd", (int)pid);
    /* A kept O_PATH fd spares fstat the path walk of stat (0.24 vs 0.51 us). Every process has
     * stdin..stderr, so a working st_size is never 0 (the count needs Linux >= 6.2). */
    m->fd_dir_fd = open(m->fd_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    m->fd_count_by_stat = m->fd_dir_fd >= 0 && fstat(m->fd_dir_fd, &st) == 0 && st.st_size > 0;
    if (!cg || !cg->peak_kernel) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        m->status_fd = open(path, O_RDONLY | O_CLOEXEC);
        /* Owned by the process's user (root when it is not dumpable): not always ours. */
        snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
        m->clear_refs_fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    return 0;
}

int mv_meter_reset_hwm(mv_meter_t *m)
{
    if (m->clear_refs_fd < 0 || m->status_fd < 0)
        return -ENOTSUP;
    /* 5 = CLEAR_REFS_MM_HIWATER_RSS; the kept fd names the process, not a path. */
    return pwrite(m->clear_refs_fd, "5", 1, 0) == 1 ? 0 : -errno;
}

int mv_meter_parse_hwm(const char *text, int64_t *bytes)
{
    const char *p = strstr(text, "\nVmHWM:");
    char *end;
    long long kib;

    if (!p)
        return -EINVAL;
    errno = 0;
    kib = strtoll(p + 7, &end, 10);
    if (end == p + 7 || errno || kib < 0 || strncmp(end, " kB", 3) != 0)
        return -EINVAL;
    *bytes = (int64_t)kib * 1024;
    return 0;
}

int64_t mv_meter_hwm(mv_meter_t *m)
{
    char buf[4096];
    int64_t bytes;
    ssize_t n;

    if (m->status_fd < 0)
        return -1;
    /* VmHWM comes in the first ~1 KiB (before the signal masks and the cpu lists). */
    n = pread(m->status_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return mv_meter_parse_hwm(buf, &bytes) == 0 ? bytes : -1;
}

int mv_meter_fds(mv_meter_t *m)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int n = 0;

    /* 0 means a process that is gone (every worker holds at least its output pipe). */
    if (m->fd_count_by_stat)
        return fstat(m->fd_dir_fd, &st) == 0 && st.st_size > 0 ? (int)st.st_size : -1;
    d = opendir(m->fd_dir);
    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    /* A zombie's fd directory lists nothing (kernels < 6.2 take this path: measured in the
     * 6.1 guest of make check-v2): gone, as the st_size path says. */
    return n > 0 ? n : -1;
}

/* rss and private memory from statm. */
static int read_statm(mv_meter_t *m, int64_t *rss, int64_t *priv)
{
    char buf[128];
    ssize_t n;

    /* pread at 0 on a kept /proc fd re-generates the text: no reopen needed. */
    n = pread(m->statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return n < 0 ? -errno : -ESRCH; /* an exited process reads as empty */
    buf[n] = '\0';
    n = mv_meter_parse_statm(buf, m->page_size, rss, priv);
    /* A zombie (exited, not yet reaped) still has a statm, all zeros; a live process always
     * has resident pages. */
    return n < 0 ? (int)n : *rss == 0 ? -ESRCH : 0;
}

int mv_meter_read(mv_meter_t *m, mv_reading_t *r)
{
    mv_cg_reading_t c;
    int rc;

    if (m->statm_fd < 0)
        return -EBADF;
    rc = read_statm(m, &r->rss, &r->priv);
    if (m->cg) {
        /* The cgroup outlives its process: usage and peak can still be read after death.
         * A live process whose cgroup reads ENODEV: the cgroup was removed under it (moved
         * out by someone else, then rmdir), its files are dead. */
        int cr = mv_cg_read(m->cg, m->anon_from, &c);
        if (cr < 0)
            return rc < 0 ? rc : cr == -ENODEV ? -ENODEV : -EIO;
        r->usage = c.usage;
        r->usage_fresh = c.usage_fresh;
        r->peak = c.peak;
        r->group_priv = c.anon;
        if (rc < 0) {
            r->rss = r->priv = -1;
            r->fds = -1;
            return 0;
        }
        /* Not read (usage under the soft limit): the cgroup's anon is at most its usage. A
         * worker forked from a template maps the template's pages, charged to the template's
         * cgroup and counted in its own private memory: capped, they never count against
         * its soft limit (docs/templates.md). */
        if (c.anon < 0)
            r->group_priv = MV_MIN(r->priv, c.usage);
    } else {
        if (rc < 0)
            return rc;
        /* What a memory cgroup would charge an exec'd worker is its private memory, not RSS
         * (which counts shared library pages once per worker): limits and peaks use that. */
        r->usage = r->priv;
        r->usage_fresh = true;
        r->peak = -1;
        r->group_priv = -1;
    }
    r->fds = mv_meter_fds(m);
    return 0;
}

void mv_meter_close(mv_meter_t *m)
{
    if (m->statm_fd >= 0)
        close(m->statm_fd);
    if (m->fd_dir_fd >= 0)
        close(m->fd_dir_fd);
    if (m->status_fd >= 0)
        close(m->status_fd);
    if (m->clear_refs_fd >= 0)
        close(m->clear_refs_fd);
    m->statm_fd = m->fd_dir_fd = m->status_fd = m->clear_refs_fd = -1;
}
