/*
 * handoff: a template handed over by whoever exec'd memvisor (see handoff.h).
 */
#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void mv_handoff_init(mv_handoff_t *h)
{
    h->pidfd = h->ctl = h->out = -1;
    h->pid = 0;
}

static int parse_fd(const char **p, char end)
{
    long v = 0;
    const char *s = *p;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (v > 1 << 20)
            return -1;
    }
    if (*s != end || v <= 2)
        return -1;
    *p = end ? s + 1 : s;
    return (int)v;
}

int mv_handoff_parse(const char *text, mv_handoff_t *h)
{
    const char *p = text;
    int a, b, c;

    mv_handoff_init(h);
    if (!text)
        return -EINVAL;
    a = parse_fd(&p, ',');
    b = a < 0 ? -1 : parse_fd(&p, ',');
    c = b < 0 ? -1 : parse_fd(&p, '\0');
    if (c < 0 || a == b || b == c || a == c)
        return -EINVAL;
    h->pidfd = a;
    h->ctl = b;
    h->out = c;
    return 0;
}

/* The pid a pidfd names, from its fdinfo ("Pid:\tN"); -errno. */
static int pidfd_pid(int fd)
{
    char path[64], line[128];
    int pid = -ENOENT;
    FILE *f;

    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    f = fopen(path, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Pid:", 4) == 0) {
            pid = atoi(line + 4);
            break;
        }
    fclose(f);
    return pid > 0 ? pid : -ESRCH; /* -1: it has exited and been reaped */
}

/* Its parent's pid, from /proc/PID/stat (the fourth field, after the command in parens). */
static int parent_of(int pid)
{
    char path[64], buf[512];
    const char *p;
    ssize_t n;
    int fd, ppid = -1;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return -EIO;
    return ppid;
}

/* Why the handed fds cannot be what they say; NULL when they can. */
static const char *check_fds(const mv_handoff_t *h)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof type;

    if (fcntl(h->pidfd, F_GETFD) < 0 || fcntl(h->ctl, F_GETFD) < 0 || fcntl(h->out, F_GETFD) < 0)
        return "an fd is not open";
    if (getsockopt(h->ctl, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return "CTL is not a stream socket";
    if (fstat(h->out, &st) < 0 || !S_ISFIFO(st.st_mode))
        return "OUT is not a pipe";
    return NULL;
}

int mv_handoff_take(mv_handoff_t *h, char *why, size_t n)
{
    const char *text = getenv(MV_HANDOFF_ENV), *bad;
    int pid;

    mv_handoff_init(h);
    if (!text)
        return 0;
    if (mv_handoff_parse(text, h) < 0) {
        snprintf(why, n, "%s=%s: not PIDFD,CTL,OUT (three fds above 2)", MV_HANDOFF_ENV, text);
        unsetenv(MV_HANDOFF_ENV);
        mv_handoff_init(h); /* fds we cannot trust to be ours: left alone */
        return -EINVAL;
    }
    unsetenv(MV_HANDOFF_ENV);
    pid = pidfd_pid(h->pidfd);
    if (pid > 0 && parent_of(pid) == getpid())
        h->pid = pid; /* ours: dropped (killed and reaped) if anything else is wrong */
    bad = check_fds(h);
    if (!bad && pid <= 0)
        bad = "PIDFD is not a pidfd of a live process";
    if (!bad && h->pid <= 0)
        bad = "the process is not memvisor's child";
    if (bad) {
        snprintf(why, n, "%s", bad);
        mv_handoff_drop(h);
        return -EINVAL;
    }
    (void)fcntl(h->pidfd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(h->ctl, F_SETFD, FD_CLOEXEC);
    (void)fcntl(h->out, F_SETFD, FD_CLOEXEC);
    return 1;
}

void mv_handoff_drop(mv_handoff_t *h)
{
    int *fds[] = {&h->pidfd, &h->ctl, &h->out};

    if (h->pid > 0) {
        /* Our child, which waits for a GO that will not come: it goes now (by its pid when the
         * pidfd cannot signal, as under valgrind: not reaped yet, the pid is still its own). */
        if (pidfd_send_signal(h->pidfd, SIGKILL, NULL, 0) < 0)
            (void)kill(h->pid, SIGKILL);
        (void)waitid(P_PIDFD, (id_t)h->pidfd, &(siginfo_t){0}, WEXITED);
    }
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    mv_handoff_init(h);
}
