/*
 * libmemvisor: serving as the warm template (docs/templates.md, include/memvisor/protocol.h).
 *
 * After GO with MVW_MODE_TEMPLATE, this process has run the workers' start-up (everything
 * before mvw_open) and forks one worker per FORK request. Each child is made with
 * clone3(CLONE_PARENT): memvisor, the template's parent, becomes the child's parent. So
 * memvisor reaps every worker itself and gets its exact exit status (a code, a signal, an OOM
 * kill) from the kernel, a worker's parent-death signal points at memvisor as an exec'd
 * worker's does, and a worker does not depend on the template once it runs: a template that
 * is retired or dies leaves its workers alone.
 *
 * The cgroup: on v2 the child is born in its own (CLONE_INTO_CGROUP, no migration at all);
 * otherwise (v1, or a kernel before 5.7) it writes "0" to its cgroup.procs before anything
 * else. That write can wait for an RCU grace period: it blocks the new child, never the
 * template or memvisor.
 *
 * clone3 is not fork(): glibc's fork() keeps books a raw clone skips. Redone here: the thread
 * id glibc keeps for the calling thread (CLONE_CHILD_SETTID at the address glibc gives
 * debuggers, _thread_db_pthread_tid: without it, pthread calls that act on a thread id would
 * name the template's), stdio flushed before the clone (or buffered output would be printed
 * twice), the parent-death signal (fork clears it), a session of its own. Not redone: handlers
 * registered with pthread_atfork() do not run, and no lock is taken across the clone, which
 * is why a template must be single-threaded (the HELLO says it cannot be a template
 * otherwise: memvisor then starts every worker by exec).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memvisor/worker.h>

#include "mvw_int.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435 /* the same number on every architecture */
#endif

#define MAX_FDS ((int)(3 + MVW_FORK_MAX_FDS)) /* the output, nfds, the cgroup dir, cgroup.procs */

/* clone3's argument (linux/sched.h; `cgroup` since 5.7). Our own copy: that header clashes
 * with <sched.h>. */
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};
#define CLONE3_SIZE_VER0 64u /* the 5.3 layout: no set_tid, no cgroup */

/* One message from memvisor and the fds that came with it. */
typedef struct tmsg {
    uint8_t buf[MVW_HEADER_SIZE + 32];
    struct mvw_msg m;
    int fds[MAX_FDS];
    int nfds;
} tmsg_t;

static void close_fds(tmsg_t *t)
{
    for (int i = 0; i < t->nfds; i++)
        close(t->fds[i]);
    t->nfds = 0;
}

/* glibc's thread id field of the calling thread, where its fork() has the kernel write the
 * child's id; NULL when unknown (another libc, a static binary, a descriptor that does not
 * check out). The descriptor is {bits, count, offset} (glibc nptl_db). */
static pid_t *tid_field(void)
{
    const uint32_t *d = dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid");
    pid_t *p;

    if (!d || d[0] != 8 * sizeof(pid_t) || d[1] != 1 || d[2] > 65536)
        return NULL;
    p = (pid_t *)(void *)((char *)pthread_self() + d[2]);
    return *p == (pid_t)syscall(SYS_gettid) ? p : NULL;
}

/* Takes the fds of the SCM_RIGHTS messages in `mh`. -EBADMSG when some were lost. */
static int take_fds(struct msghdr *mh, tmsg_t *t)
{
    int bad = (mh->msg_flags & MSG_CTRUNC) ? -EBADMSG : 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t k;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
            if (t->nfds < MAX_FDS) {
                t->fds[t->nfds++] = fd;
            } else {
                close(fd);
                bad = -EBADMSG;
            }
        }
    }
    return bad;
}

/*
 * Reads exactly n bytes into t->buf + off: first what the handshake read ahead (no fds come
 * with it: memvisor sends FORK only after TEMPLATE), then from the socket, keeping the fds
 * that come along; it waits in poll(), not in recvmsg(), for the reason read_in (mvw.c) gives.
 * 0 or a negative errno.
 */
static int read_exact(mvw_t *w, tmsg_t *t, size_t off, size_t n)
{
    union {
        char b[CMSG_SPACE((size_t)MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } cm;
    size_t got = w->rlen - w->rpos < n ? w->rlen - w->rpos : n;
    int bad = 0, rc;

    if (got) {
        memcpy(t->buf + off, w->rbuf + w->rpos, got);
        w->rpos += got;
    }
    while (got < n) {
        struct iovec iov = {t->buf + off + got, n - got};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof cm.b};
        ssize_t r = recvmsg(w->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = mvw__wait_fd(w->fd, POLLIN);
            if (rc < 0)
                return mvw__fail(w, rc);
            continue;
        }
        if (r < 0)
            return mvw__fail(w, -errno);
        if (take_fds(&mh, t) < 0)
            bad = -EBADMSG;
        if (r == 0)
            return mvw__fail(w, -EPIPE);
        got += (size_t)r;
    }
    return bad ? mvw__fail(w, bad) : 0;
}

/* The next message, checked as any other, with its fds. 0 or a negative errno. */
static int read_msg(mvw_t *w, tmsg_t *t)
{
    uint32_t len;
    int rc;

    t->nfds = 0;
    rc = read_exact(w, t, 0, MVW_HEADER_SIZE);
    memcpy(&len, t->buf, 4);
    /* Only fixed-size messages come to a template: FORK, STOP, SNAPSHOT. */
    if (rc == 0 && len > sizeof t->buf - MVW_HEADER_SIZE)
        rc = mvw__fail(w, -EBADMSG);
    if (rc == 0)
        rc = read_exact(w, t, MVW_HEADER_SIZE, len);
    if (rc == 0 &&
        mvw_decode(t->buf, MVW_HEADER_SIZE + len, MVW_MAX_PAYLOAD, MVW_FROM_SUPERVISOR, &t->m) <= 0)
        rc = mvw__fail(w, -EBADMSG);
    if (rc < 0)
        close_fds(t);
    return rc;
}

/* clone3(CLONE_PARENT), into the cgroup `cgdir` when there is one and the kernel can. */
static long clone_child(int cgdir, pid_t *tid, uint32_t *flags)
{
    struct clone3_args a;
    long pid;

    memset(&a, 0, sizeof a);
    /* With CLONE_PARENT the exit signal must be 0: the child's is the template's (SIGCHLD). */
    a.flags = CLONE_PARENT;
    if (tid) {
        a.flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
        a.child_tid = (uint64_t)(uintptr_t)tid;
    }
    if (cgdir >= 0) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)cgdir;
        pid = syscall(SYS_clone3, &a, sizeof a);
        if (pid >= 0) {
            *flags |= MVW_FORKED_IN_CGROUP;
            return pid;
        }
        /* Before 5.7 (E2BIG: the cgroup field is unknown), a cgroup a process cannot be born
         * in, or a template that may not write the cgroups' common ancestor (it runs as
         * [worker] user: EACCES): the child joins it by writing the cgroup.procs memvisor
         * opened instead (v2 checks the opener's credentials there). */
        if (errno != E2BIG && errno != EINVAL && errno != EOPNOTSUPP && errno != EBUSY &&
            errno != EBADF && errno != EACCES && errno != EPERM)
            return -1;
        a.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        a.cgroup = 0;
    }
    return syscall(SYS_clone3, &a, CLONE3_SIZE_VER0);
}

static void __attribute__((noreturn)) child_fail(const char *what)
{
    char msg[160];
    int n = snprintf(msg, sizeof msg, "memvisor worker (forked): %s: %s\n", what, strerror(errno));

    if (n > 0 && write(2, msg, (size_t)n) < 0)
        _exit(125);
    _exit(125); /* as the exec shim: could not set up */
}

/*
 * In the new worker, before any code of its own: the parent-death signal (checked against a
 * memvisor that died before it was armed), its cgroup, a session of its own, its fds where an
 * exec'd worker has them (the output on 1 and 2, then 3, 4, ...: its channel lands on the fd
 * MEMVISOR_FD names, over the template's), its slot.
 */
static void child_setup(const struct mvw_fork *f, tmsg_t *t, int procs, pid_t parent)
{
    int n = (int)f->nfds + 1, moved[1 + MVW_FORK_MAX_FDS];
    char num[24];

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(125);
    if (procs >= 0 && write(procs, "0", 1) != 1)
        child_fail("cannot join its cgroup");
    setsid();
    /* Out of the way of the fd numbers they go to first. */
    for (int i = 0; i < n; i++)
        if ((moved[i] = fcntl(t->fds[i], F_DUPFD_CLOEXEC, 3 + n)) < 0)
            child_fail("fcntl(F_DUPFD)");
    close_fds(t);
    if (dup2(moved[0], 1) < 0 || dup2(moved[0], 2) < 0)
        child_fail("dup2");
    for (int i = 1; i < n; i++)
        if (dup2(moved[i], 3 + i - 1) < 0)
            child_fail("dup2");
    for (int i = 0; i < n; i++)
        close(moved[i]);
    snprintf(num, sizeof num, "%u", f->slot);
    setenv("MEMVISOR_SLOT", num, 1);
    /* Socket activation: the sockets are for this process now. */
    if (getenv("LISTEN_FDS")) {
        snprintf(num, sizeof num, "%d", (int)getpid());
        setenv("LISTEN_PID", num, 1);
    }
}

/* One FORK: 1 in the child, 0 in the template once FORKED is sent, or a negative errno. */
static int fork_one(mvw_t *w, tmsg_t *t, pid_t *tid)
{
    struct mvw_forked ans = {0};
    struct mvw_fork f;
    int k, cgdir = -1, procs = -1, err, rc;
    pid_t parent = getppid();
    long pid;

    memcpy(&f, t->m.payload, sizeof f);
    k = 1 + (int)f.nfds;
    if ((f.flags & ~MVW_FORK_FLAGS) || f.nfds > MVW_FORK_MAX_FDS ||
        t->nfds != k + !!(f.flags & MVW_FORK_CGROUP_DIR) + !!(f.flags & MVW_FORK_CGROUP_PROCS)) {
        close_fds(t);
        return mvw__fail(w, -EBADMSG);
    }
    if (f.flags & MVW_FORK_CGROUP_DIR)
        cgdir = t->fds[k++];
    if (f.flags & MVW_FORK_CGROUP_PROCS)
        procs = t->fds[k++];
    fflush(NULL); /* what stdio holds is the template's output, not the child's */
    pid = clone_child(cgdir, tid, &ans.flags);
    err = errno;
    if (pid == 0) {
        child_setup(&f, t, (ans.flags & MVW_FORKED_IN_CGROUP) ? -1 : procs, parent);
        return 1;
    }
    close_fds(t);
    ans.pid = pid > 0 ? (int32_t)pid : 0;
    ans.error = pid > 0 ? 0 : err;
    rc = mvw__queue(w, MVW_MSG_FORKED, t->m.h.task, NULL, 0, NULL, &ans, sizeof ans);
    return rc < 0 ? rc : mvw__flush(w);
}

int mvw__can_template(void)
{
    char buf[1024], *p;
    ssize_t n;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), field = 2;

    if (fd < 0)
        return 1; /* no /proc: nothing says otherwise */
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    /* num_threads is field 20; the command name (field 2) ends at the last ')'. */
    p = strrchr(buf, ')');
    if (!p)
        return 1;
    for (; *p && field < 20; p++)
        if (*p == ' ')
            field++;
    return field < 20 || atoi(p) <= 1;
}

int mvw__serve_template(mvw_t *w)
{
    struct mvw_template ready = {(uint32_t)getpid(), 0};
    pid_t *tid = tid_field();
    tmsg_t t;
    int rc;

    if (w->stopped)
        return 0; /* STOP came with GO */
    if (w->rpos < w->scan)
        return mvw__fail(w, -EBADMSG); /* a TASK for a template */
    if (tid)
        ready.features |= MVW_TEMPLATE_TID;
    rc = mvw__queue(w, MVW_MSG_TEMPLATE, 0, NULL, 0, NULL, &ready, sizeof ready);
    if (rc == 0)
        rc = mvw__flush(w);
    while (rc == 0) {
        rc = read_msg(w, &t);
        if (rc < 0)
            break;
        switch (t.m.h.type) {
        case MVW_MSG_FORK: rc = fork_one(w, &t, tid); break;
        case MVW_MSG_STOP:
            close_fds(&t);
            w->stopped = 1;
            return 0;
        case MVW_MSG_SNAPSHOT:
            close_fds(&t);
            rc = mvw__answer_snapshot(w);
            break;
        default: /* GO or TASK */
            close_fds(&t);
            rc = mvw__fail(w, -EBADMSG);
            break;
        }
    }
    return rc;
}
