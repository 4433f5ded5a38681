/*
 * waitprobe: what a process is waiting for (see waitprobe.h).
 */
#include "waitprobe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

int mv_syscall_parse(const char *text, mv_syscall_t *out)
{
    unsigned long long v[9];
    char *end;
    int n = 0;

    memset(out, 0, sizeof *out);
    if (strncmp(text, "running", 7) == 0) {
        out->state = MV_SC_RUNNING;
        return 0;
    }
    errno = 0;
    out->nr = strtol(text, &end, 10);
    if (end == text || errno)
        return -EINVAL;
    /* "NR ARG0..ARG5 SP PC", or "-1 SP PC" outside a system call. */
    for (text = end; n < 9; text = end) {
        v[n] = strtoull(text, &end, 0);
        if (end == text)
            break;
        n++;
    }
    if (out->nr < 0) {
        if (n != 2)
            return -EINVAL;
        out->state = MV_SC_NONE;
        out->pc = v[1];
        return 0;
    }
    if (n != 8)
        return -EINVAL;
    out->state = MV_SC_BLOCKED;
    out->arg0 = v[0];
    out->pc = v[7];
    return 0;
}

static bool reads(long nr)
{
    return nr == SYS_read || nr == SYS_readv || nr == SYS_pread64 || nr == SYS_preadv
#ifdef SYS_preadv2
           || nr == SYS_preadv2
#endif
        ;
}

/* System calls that wait for something outside the process rather than do work. */
static bool waits(long nr)
{
    switch (nr) {
#ifdef SYS_poll
    case SYS_poll:
#endif
#ifdef SYS_select
    case SYS_select:
#endif
#ifdef SYS_epoll_wait
    case SYS_epoll_wait:
#endif
#ifdef SYS_pause
    case SYS_pause:
#endif
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
    case SYS_ppoll:
    case SYS_pselect6:
    case SYS_epoll_pwait:
    case SYS_accept:
    case SYS_accept4:
    case SYS_recvfrom:
    case SYS_recvmsg:
    case SYS_nanosleep:
    case SYS_clock_nanosleep:
    case SYS_futex:
    case SYS_rt_sigsuspend:
    case SYS_rt_sigtimedwait: return true;
    default: return false;
    }
}

mv_wait_t mv_wait_classify(const mv_syscall_t *sc)
{
    if (sc->state != MV_SC_BLOCKED)
        return MV_WAIT_BUSY;
    if (reads(sc->nr) && sc->arg0 == 0)
        return MV_WAIT_STDIN;
    if (sc->nr == SYS_wait4 || sc->nr == SYS_waitid)
        return MV_WAIT_CHILD;
    /* A read of another fd is a wrapper waiting for its child's output (a shell's $(...),
     * pyenv's shims): still starting. */
    return waits(sc->nr) ? MV_WAIT_IDLE : MV_WAIT_BUSY;
}

void mv_waitprobe_init(mv_waitprobe_t *p)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < MV_PROBE_THREADS; i++)
        p->fds[i] = -1;
    p->stdin_at = -1;
    p->task_fd = -1;
    p->idle_looks = MV_PROBE_IDLE_LOOKS;
}

static int open_thread(mv_waitprobe_t *p, pid_t tid)
{
    char path[64];
    int fd;

    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)p->pid, (int)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    p->fds[p->n] = fd;
    p->tids[p->n++] = tid;
    return 0;
}

static void close_threads(mv_waitprobe_t *p)
{
    for (int i = 0; i < p->n; i++)
        close(p->fds[i]);
    if (p->task_fd >= 0)
        close(p->task_fd);
    p->task_fd = -1;
    p->listed = 0;
    p->unlisted = 0;
    p->n = 0;
    p->stdin_at = -1;
    p->same = 0;
}

/* Looks at `pid` from now on. 0 or -errno. */
static int follow(mv_waitprobe_t *p, pid_t pid, int depth)
{
    char path[48];

    close_threads(p);
    p->pid = pid;
    p->depth = depth;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    p->task_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* -1: listed every look */
    return open_thread(p, pid);                                  /* the main thread first */
}

int mv_waitprobe_open(mv_waitprobe_t *p, pid_t pid)
{
    mv_waitprobe_init(p);
    p->root = pid;
    return follow(p, pid, 0);
}

/* The only child of the process looked at, or 0 (none, several, or no children file). */
static pid_t only_child(const mv_waitprobe_t *p)
{
    char path[64], buf[64], *end;
    long a, b;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)p->pid, (int)p->pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    a = strtol(buf, &end, 10);
    b = strtol(end, NULL, 10);
    return a > 0 && b == 0 ? (pid_t)a : 0;
}

/* Picks up threads started since the last look (up to MV_PROBE_THREADS). The threads are
 * listed only when the directory's link count (2 + its threads: proc_task_getattr) moved
 * since the last listing, or MV_PROBE_RELIST looks went by (a thread that ended and another
 * that started between two looks leave it where it was): a listing (open, getdents, close)
 * was most of a look's cost, and a worker is looked at every millisecond while it starts
 * (W1 at 32 MiB: ~10 % of the loop thread). */
static void add_threads(mv_waitprobe_t *p)
{
    char path[48];
    struct dirent *de;
    struct stat st;
    DIR *d;

    if (p->task_fd >= 0 && fstat(p->task_fd, &st) == 0) {
        if ((unsigned long)st.st_nlink == p->listed && ++p->unlisted < MV_PROBE_RELIST)
            return;
        p->listed = (unsigned long)st.st_nlink;
    }
    p->unlisted = 0;

    snprintf(path, sizeof path, "/proc/%d/task", (int)p->pid);
    d = opendir(path);
    while (d && p->n < MV_PROBE_THREADS && (de = readdir(d))) {
        pid_t tid = (pid_t)atoi(de->d_name);
        bool known = tid <= 0;

        for (int i = 0; i < p->n && !known; i++)
            known = p->tids[i] == tid;
        if (!known)
            open_thread(p, tid);
    }
    if (d)
        closedir(d);
}

/* Thread i's system call. 0 or -errno. */
static int look_at(const mv_waitprobe_t *p, int i, mv_syscall_t *sc)
{
    char buf[256];
    ssize_t n = pread(p->fds[i], buf, sizeof buf - 1, 0);

    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return mv_syscall_parse(buf, sc);
}

int mv_waitprobe_look(mv_waitprobe_t *p)
{
    mv_syscall_t sc, main_sc = {0};
    int r;

    if (p->n == 0)
        return -EBADF;
    add_threads(p);
    for (int i = 0; i < p->n; i++) {
        r = look_at(p, i, &sc);
        if (r < 0 && i == 0 && p->pid != p->root)
            return follow(p, p->root, 0) < 0 ? -ESRCH : MV_WAIT_BUSY; /* the child ended */
        if (r < 0) {
            if (i == 0)
                return r; /* the process is gone (or never could be read) */
            continue;     /* a thread that ended */
        }
        if (i == 0)
            main_sc = sc;
        if (mv_wait_classify(&sc) == MV_WAIT_STDIN) {
            p->stdin_at = i;
            return MV_WAIT_STDIN;
        }
    }
    if (mv_wait_classify(&main_sc) == MV_WAIT_CHILD && p->depth < MV_PROBE_DEPTH) {
        pid_t child = only_child(p);

        if (child > 0 && follow(p, child, p->depth + 1) < 0)
            follow(p, p->root, 0);
        return MV_WAIT_BUSY;
    }
    /* The same wait, look after look; looks that find it running do not count against it (a
     * server under load is in its poll between requests), another wait starts over. */
    if (mv_wait_classify(&main_sc) == MV_WAIT_IDLE) {
        if (p->same > 0 && main_sc.nr == p->last.nr && main_sc.arg0 == p->last.arg0 &&
            main_sc.pc == p->last.pc)
            p->same++;
        else
            p->same = 1;
        p->last = main_sc;
    }
    return p->same >= p->idle_looks ? MV_WAIT_IDLE : MV_WAIT_BUSY;
}

bool mv_waitprobe_has_socket(const mv_waitprobe_t *p, int first_fd)
{
    char path[48], link[32];
    struct dirent *de;
    bool found = false;
    ssize_t n;
    DIR *d;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)p->pid);
    d = opendir(path);
    while (d && !found && (de = readdir(d))) {
        if (atoi(de->d_name) < first_fd)
            continue;
        n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
        found = n > 7 && memcmp(link, "socket:", 7) == 0;
    }
    if (d)
        closedir(d);
    return found;
}

int mv_waitprobe_back_on_stdin(mv_waitprobe_t *p)
{
    mv_syscall_t sc;
    int r;

    if (p->stdin_at < 0) {
        r = mv_waitprobe_look(p);
        return r < 0 ? r : r == MV_WAIT_STDIN;
    }
    r = look_at(p, p->stdin_at, &sc);
    if (r < 0)
        return r;
    if (mv_wait_classify(&sc) == MV_WAIT_STDIN)
        return 1;
    /* Another thread may read it now. */
    r = mv_waitprobe_look(p);
    return r < 0 ? r : r == MV_WAIT_STDIN;
}

void mv_waitprobe_close(mv_waitprobe_t *p)
{
    close_threads(p);
    mv_waitprobe_init(p);
}

uint64_t mv_waitprobe_held_delay_ns(uint64_t age_ns)
{
    if (age_ns >= MV_PROBE_HELD_FINE_NS)
        return MV_PROBE_HELD_SLOW_NS;
    return age_ns / 2 > MV_PROBE_HELD_STEP_NS ? age_ns / 2 : MV_PROBE_HELD_STEP_NS;
}
