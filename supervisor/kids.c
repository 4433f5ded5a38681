/*
 * kids: finding and stopping the children of a master worker (see kids.h).
 */
#include "kids.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "meter.h"
#include "util.h"

int64_t mv_kids_priv(pid_t pid)
{
    char path[40], buf[128];
    int64_t rss, priv;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (mv_meter_parse_statm(buf, sysconf(_SC_PAGESIZE), &rss, &priv) < 0 || rss == 0)
        return -1; /* a zombie's statm is all zeros */
    return priv;
}

/* Appends the pids listed in one thread's children file. */
static int read_children(const char *path, mv_kid_t *out, int n, int max)
{
    char buf[4096], *p, *end;
    ssize_t len;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return n; /* the thread is gone */
    len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        return n;
    buf[len] = '\0';
    for (p = buf; n < max; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p || pid <= 0)
            break;
        out[n++] = (mv_kid_t){(pid_t)pid, -1};
    }
    return n;
}

int mv_kids_list(pid_t master, mv_kid_t *out, int max)
{
    char path[64];
    struct dirent *de;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof path, "/proc/%d/task", (int)master);
    if (!(d = opendir(path)))
        return -errno;
    while ((de = readdir(d)) && n < max) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.16s/children", (int)master, de->d_name);
        n = read_children(path, out, n, max);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        out[i].priv = mv_kids_priv(out[i].pid);
    return n;
}

int mv_kids_pick(const mv_kid_t *kids, int n, int64_t master_priv)
{
    int best = -1;

    for (int i = 0; i < n; i++)
        if (kids[i].priv > 0 && (best < 0 || kids[i].priv > kids[best].priv))
            best = i;
    return best >= 0 && kids[best].priv > master_priv ? best : -1;
}

void mv_kidstop_init(mv_kidstop_t *ks)
{
    *ks = (mv_kidstop_t){.pidfd = -1};
}

int mv_kidstop_start(mv_kidstop_t *ks, pid_t pid, int sig)
{
    int fd = pidfd_open(pid, 0);

    if (fd < 0)
        return -errno;
    if (pidfd_send_signal(fd, sig, NULL, 0) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    mv_kidstop_end(ks);
    *ks = (mv_kidstop_t){.pidfd = fd, .pid = pid, .since_ms = mv_now_ms()};
    return 0;
}

bool mv_kidstop_gone(const mv_kidstop_t *ks)
{
    struct pollfd p = {.fd = ks->pidfd, .events = POLLIN};

    if (ks->pidfd < 0)
        return true;
    /* Readable once it has exited, whoever reaps it; an error means it cannot be told. */
    return poll(&p, 1, 0) != 0;
}

int mv_kidstop_kill(mv_kidstop_t *ks)
{
    if (ks->pidfd < 0 || ks->killed)
        return 0;
    ks->killed = true;
    return pidfd_send_signal(ks->pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
}

void mv_kidstop_end(mv_kidstop_t *ks)
{
    if (ks->pidfd >= 0)
        close(ks->pidfd);
    mv_kidstop_init(ks);
}
