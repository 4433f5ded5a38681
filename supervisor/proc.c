/*
 * proc: starting, signalling and closing one child process (see proc.h).
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runlock.h"

/* ---- the processes of mv_proc_t, not reaped yet ---- */

static mv_proc_t *watched; /* loop thread only */

static void watch_link(mv_proc_t *p)
{
    p->wnext = watched;
    p->wprev = &watched;
    if (watched)
        watched->wprev = &p->wnext;
    watched = p;
}

static void watch_unlink(mv_proc_t *p)
{
    if (!p->wprev)
        return;
    *p->wprev = p->wnext;
    if (p->wnext)
        p->wnext->wprev = p->wprev;
    p->wnext = NULL;
    p->wprev = NULL;
}

bool mv_proc_known(int pid)
{
    for (const mv_proc_t *p = watched; p; p = p->wnext)
        if (p->pid == pid)
            return true;
    return false;
}

bool mv_proc_dying(int pid)
{
    char path[64], buf[1024], state = 0;
    unsigned long flags = 0, pending = 0;
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return true;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1,
                     " %c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
                     "%*u %*u %*d %*u %*u %*u %*u %*u %*u %lu",
                     &state, &flags, &pending) != 3)
        return true;
    return state == 'Z' || state == 'X' || (flags & 0x4) || (pending & (1ul << (SIGKILL - 1)));
}

static void exit_cb(uv_process_t *h, int64_t status, int term_signal)
{
    mv_proc_t *p = h->data;

    p->exited = true; /* libuv reaped it: from here on its pid is not ours to signal */
    watch_unlink(p);
    p->status = status;
    p->term_signal = term_signal;
    p->ev->on_exit(p->owner, status, term_signal);
}

static void closed_cb(uv_handle_t *h)
{
    mv_proc_t *p = h->data;

    watch_unlink(p);
    p->ev->on_closed(p->owner);
}

/* argv for uv_spawn: the shim (joining the cgroup at `shim_fd`, if any; switching to the
 * credentials, if any), then the command. NULL on ENOMEM. */
static char **spawn_argv(const mv_proc_spec_t *s, int shim_fd, char fd_text[16], char creds[48])
{
    size_t n = 0, k = 0;
    char **a;

    while (s->argv[n])
        n++;
    a = calloc(n + 6, sizeof *a);
    if (!a)
        return NULL;
    /* Always through the shim: it arms the parent-death signal (mv_exec_shim), which every
     * child needs, not only one with a cgroup or listen sockets (~1.8 ms per spawn). */
    if (shim_fd >= 0)
        snprintf(fd_text, 16, "%d", shim_fd);
    else
        snprintf(fd_text, 16, "-");
    a[k++] = (char *)s->self_exe;
    a[k++] = "exec-shim";
    if (s->set_creds) {
        snprintf(creds, 48, "%" PRId64 ":%" PRId64, s->uid, s->gid);
        a[k++] = "-u";
        a[k++] = creds;
    }
    a[k++] = fd_text;
    for (size_t i = 0; i < n; i++)
        a[k++] = s->argv[i];
    a[k] = NULL;
    return a;
}

void mv_proc_init(mv_proc_t *p, const mv_proc_events_t *ev, void *owner)
{
    memset(p, 0, sizeof *p);
    p->ev = ev;
    p->owner = owner;
    p->pidfd = -1;
}

/* ---- forked ---- */

/* Its pidfd is readable: it exited. Reaped here, by pidfd only. */
static void pidfd_cb(uv_poll_t *h, int status, int events)
{
    mv_proc_t *p = h->data;
    siginfo_t si;

    memset(&si, 0, sizeof si);
    if (p->exited)
        return;
    if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0) {
        if (errno != ECHILD)
            return;
        /* Reaped by someone else (nothing of ours should: reaper.h leaves forked workers
         * alone): it is gone, its status unknown (-1), rather than waited for for ever. */
        si.si_code = CLD_EXITED;
        si.si_status = -1;
    } else if (si.si_pid == 0) {
        return; /* not yet */
    }
    uv_poll_stop(h);
    watch_unlink(p); /* reaped: its pid is not ours any more */
    p->exited = true;
    if (si.si_code == CLD_EXITED) {
        p->status = si.si_status;
    } else {
        p->status = 0;
        p->term_signal = si.si_status; /* CLD_KILLED, CLD_DUMPED */
    }
    p->ev->on_exit(p->owner, p->status, p->term_signal);
}

/* Asks the forker for the process; the answer comes through mv_proc_forked. */
static int fork_spawn(mv_proc_t *p, const mv_proc_spec_t *s)
{
    mv_fork_spec_t f = {
        .slot = s->slot,
        .out_fd = s->stdio[1].data.fd,
        .fds = s->fds,
        .nfds = s->nfds,
        .cgroup_dir_fd = -1,
        .cgroup_procs_fd = s->cgroup_procs_fd,
    };
    int r;

    /* The directory is opened per start: one open, cheaper than a kept fd per worker. */
    if (s->cgroup_dir)
        f.cgroup_dir_fd = open(s->cgroup_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    r = s->forker->fork(s->forker->self, p, &f);
    if (f.cgroup_dir_fd >= 0)
        close(f.cgroup_dir_fd);
    if (r < 0)
        return r;
    p->forker = s->forker;
    p->pending = true;
    return 0;
}

/* 0 when the process of pidfd is memvisor's child, else -ECHILD: waitid on another
 * process's pidfd fails so. Nothing is waited for or reaped (WNOHANG, WNOWAIT). */
static int own_child(int pidfd)
{
    siginfo_t si;

    memset(&si, 0, sizeof si);
    return waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ? -errno : 0;
}

int mv_proc_forked(mv_proc_t *p, uv_loop_t *loop, int pid, int err, bool retry)
{
    int r = -ECHILD;

    p->pending = false;
    p->forker = NULL;
    if (pid > 0) {
        p->pidfd = pidfd_open(pid, 0);
        /* a new child: memvisor's, and none it has already (a template naming itself) */
        r = p->pidfd < 0 ? -errno : mv_proc_known(pid) ? -ECHILD : own_child(p->pidfd);
        if (r == 0)
            r = uv_poll_init(loop, &p->pidpoll, p->pidfd);
        if (r < 0) {
            /* Ours, and nothing can watch it: it goes now (and stays a zombie). A pid that
             * is not memvisor's child (the forker's word is all there is) is never signalled;
             * one that could not be looked at, neither: ours, it finds its channel closed. */
            if (p->pidfd >= 0 && r != -ECHILD)
                pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
            if (p->pidfd >= 0)
                close(p->pidfd);
            p->pidfd = -1;
            err = r;
        }
    }
    if (r < 0) {
        p->ev->on_failed(p->owner, err < 0 ? err : -ECHILD, retry);
        return r;
    }
    p->pidpoll.data = p;
    p->inited = p->forked = true;
    p->pid = pid;
    watch_link(p);
    uv_poll_start(&p->pidpoll, UV_READABLE, pidfd_cb);
    p->ev->on_started(p->owner);
    return 0;
}

int mv_proc_adopt(mv_proc_t *p, uv_loop_t *loop, int pid, int pidfd)
{
    int r;

    if (p->inited || p->closing || p->pending)
        return -EALREADY;
    r = uv_poll_init(loop, &p->pidpoll, pidfd);
    if (r < 0)
        return r;
    p->pidfd = pidfd;
    p->pidpoll.data = p;
    p->inited = p->forked = true;
    p->pid = pid;
    watch_link(p);
    uv_poll_start(&p->pidpoll, UV_READABLE, pidfd_cb);
    return 0;
}

/* ---- exec'd ---- */

int mv_proc_spawn(mv_proc_t *p, uv_loop_t *loop, const mv_proc_spec_t *s)
{
    uv_stdio_container_t st[MV_PROC_FIRST_FD + MV_PROC_MAX_FDS + 1];
    uv_process_options_t o;
    int count = MV_PROC_FIRST_FD, shim_fd = -1, r;
    char fd_text[16], creds[48];
    char **args;

    if (p->inited || p->closing || p->pending)
        return -EALREADY;
    if (s->nfds > MV_PROC_MAX_FDS)
        return -EMFILE;
    if (s->forker)
        return fork_spawn(p, s);
    memcpy(st, s->stdio, MV_PROC_FIRST_FD * sizeof *st);
    for (int i = 0; i < s->nfds; i++) {
        st[count].flags = UV_INHERIT_FD;
        st[count++].data.fd = s->fds[i];
    }
    if (s->cgroup_procs_fd >= 0) {
        /* The cgroup.procs fd goes to the next free child fd, for the shim. */
        shim_fd = count;
        st[count].flags = UV_INHERIT_FD;
        st[count++].data.fd = s->cgroup_procs_fd;
    }
    args = spawn_argv(s, shim_fd, fd_text, creds);
    if (!args)
        return -ENOMEM;
    memset(&o, 0, sizeof o);
    o.file = args[0];
    o.args = args;
    o.env = (char **)s->env;
    o.stdio = st;
    o.stdio_count = count;
    o.exit_cb = exit_cb;
    o.flags = s->own_session ? UV_PROCESS_DETACHED : 0;
    p->h.data = p;
    r = uv_spawn(loop, &p->h, &o);
    /* Unix uv_spawn initialises the handle before anything can fail: always close it. */
    p->inited = true;
    free(args);
    if (r == 0) {
        p->pid = p->h.pid;
        watch_link(p);
    }
    return r;
}

int mv_proc_signal(mv_proc_t *p, int sig)
{
    /* By pid, through the handle, and only before its exit was reported. */
    if (p->pid <= 0 || p->exited || p->closing)
        return -ESRCH;
    if (p->forked)
        return pidfd_send_signal(p->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
    return uv_process_kill(&p->h, sig);
}

static void pidpoll_closed_cb(uv_handle_t *h)
{
    mv_proc_t *p = h->data;

    watch_unlink(p); /* closed before its exit (memvisor stops): nothing watches it now */
    close(p->pidfd);
    p->pidfd = -1;
    p->ev->on_closed(p->owner);
}

void mv_proc_close(mv_proc_t *p)
{
    if (p->closing)
        return;
    p->closing = true;
    if (p->pending) {
        p->pending = false;
        p->forker->cancel(p->forker->self, p);
    }
    if (!p->inited) {
        p->ev->on_closed(p->owner);
        return;
    }
    if (p->forked)
        uv_close((uv_handle_t *)&p->pidpoll, pidpoll_closed_cb);
    else
        uv_close((uv_handle_t *)&p->h, closed_cb);
}

/* MV_PROC_ENV_PRELOAD goes in front of LD_PRELOAD, for the command only (proc.h). 0 or -1. */
static int preload_command(void)
{
    const char *lib = getenv(MV_PROC_ENV_PRELOAD), *had = getenv("LD_PRELOAD");
    char *both = NULL;
    int r;

    if (!lib || !*lib)
        return unsetenv(MV_PROC_ENV_PRELOAD);
    if (had && *had && asprintf(&both, "%s:%s", lib, had) < 0)
        return -1;
    r = setenv("LD_PRELOAD", both ? both : lib, 1);
    free(both);
    return r < 0 ? r : unsetenv(MV_PROC_ENV_PRELOAD);
}

/* Parent death (proc.h): armed, then checked against a parent that died before. 0, or the
 * shim's exit code. */
static int arm_parent_death(long parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        fprintf(stderr, "memvisor exec-shim: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
        return 125;
    }
    if (parent > 0 && parent != (long)getppid())
        return 125; /* memvisor died before the prctl: nobody to run for */
    return 0;
}

/* "UID:GID" -> both. 0 or -EINVAL. */
static int parse_creds(const char *s, uid_t *uid, gid_t *gid)
{
    char *end;
    unsigned long long u, g;

    errno = 0;
    u = strtoull(s, &end, 10);
    if (end == s || *end != ':' || errno || u >= UINT32_MAX)
        return -EINVAL;
    s = end + 1;
    g = strtoull(s, &end, 10);
    if (end == s || *end || errno || g >= UINT32_MAX)
        return -EINVAL;
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return 0;
}

/* The privilege drop (proc.h): groups, group, user, in that order. 0 or the exit code. */
static int drop_creds(uid_t uid, gid_t gid)
{
    const char *call = NULL;
    int err = 0;

    if (setgroups(0, NULL) < 0)
        call = "setgroups", err = errno;
    else if (setgid(gid) < 0)
        call = "setgid", err = errno;
    else if (setuid(uid) < 0)
        call = "setuid", err = errno;
    else if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid)
        call = "the id check";
    if (!call)
        return 0;
    fprintf(stderr, "memvisor exec-shim: cannot switch to uid %u gid %u: %s: %s\n", (unsigned)uid,
            (unsigned)gid, call, err ? strerror(err) : "the ids differ");
    return 125;
}

int mv_exec_shim(int argc, char **argv)
{
    const char *env = getenv(MV_ENV_SUPERVISOR_PID);
    long parent = env && *env ? strtol(env, NULL, 10) : 0;
    bool creds = argc >= 4 && strcmp(argv[2], "-u") == 0;
    uid_t uid = 0;
    gid_t gid = 0;
    char *end;
    char pid[24];
    long fd;
    int r;

    if (creds) { /* shift "-u UID:GID" off: the rest is as without it */
        if (parse_creds(argv[3], &uid, &gid) < 0) {
            fprintf(stderr, "memvisor exec-shim: bad -u %s (UID:GID)\n", argv[3]);
            return 125;
        }
        argv += 2;
        argc -= 2;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: memvisor exec-shim [-u UID:GID] FD|- COMMAND [ARG]...\n");
        return 125;
    }
    if ((r = arm_parent_death(parent)) != 0)
        return r;
    unsetenv(MV_ENV_SUPERVISOR_PID);
    if (strcmp(argv[2], "-") != 0) {
        fd = strtol(argv[2], &end, 10);
        if (*end || fd < 3) {
            fprintf(stderr, "memvisor exec-shim: bad fd %s\n", argv[2]);
            return 125;
        }
        if (write((int)fd, "0", 1) != 1) {
            fprintf(stderr, "memvisor exec-shim: cannot join the worker's cgroup: %s\n",
                    strerror(errno));
            return 125;
        }
        close((int)fd);
    }
    /* After the cgroup move; the credential change cleared the parent-death signal. */
    if (creds && ((r = drop_creds(uid, gid)) != 0 || (r = arm_parent_death(parent)) != 0))
        return r;
    if (preload_command() < 0) {
        fprintf(stderr, "memvisor exec-shim: cannot set LD_PRELOAD: %s\n", strerror(errno));
        return 125;
    }
    /* Socket activation: the sockets are for this process, which exec keeps. */
    if (getenv("LISTEN_FDS")) {
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
    }
    execvp(argv[3], argv + 3);
    fprintf(stderr, "memvisor exec-shim: cannot run %s: %s\n", argv[3], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

/* Whether the worker command can be executed, looked up like execvp does (the exec happens
 * later in the exec shim, where a failure would only look like a crash). 0 or -errno. */
int mv_proc_check_command(const char *cmd)
{
    const char *path = getenv("PATH");
    char buf[4096];
    int err = -ENOENT;

    if (strchr(cmd, '/'))
        return access(cmd, X_OK) == 0 ? 0 : -errno;
    for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)len, len ? p : ".", cmd);
        if (access(buf, X_OK) == 0)
            return 0;
        if (errno == EACCES)
            err = -EACCES;
        p += len + (colon != NULL);
    }
    return err;
}

int mv_proc_check_command_as(const char *cmd, int64_t uid, int64_t gid)
{
    pid_t pid;
    int st;

    if (uid < 0)
        return mv_proc_check_command(cmd);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* The exit code carries the errno: 0, or 1..255 (every errno the check returns). */
        if (setgroups(0, NULL) < 0 || setgid((gid_t)gid) < 0 || setuid((uid_t)uid) < 0)
            _exit(EPERM);
        _exit(-mv_proc_check_command(cmd) & 0xff);
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? -WEXITSTATUS(st) : -ECHILD;
}
