/*
 * spawn: starting a worker process, signalling it, closing its handles.
 *
 * Workers are started with uv_spawn and their exits come from libuv's exit callback only
 * (DESIGN §2: one mechanism; never waitpid(-1), no SIGCHLD handler of ours).
 *
 * File descriptors of a worker:
 *   api    0 /dev/null, 1+2 output pipe (to the log), then the socketpair (MEMVISOR_FD)
 *   lines  0 task pipe, 1 result pipe, 2 output pipe (to the log)
 *   none   0 /dev/null, 1+2 output pipe (to the log)
 * With [service] listen sockets, those come first from fd 3 (systemd's LISTEN_FDS
 * convention), so MEMVISOR_FD is 3 + their number. The output pipe is made here, not by
 * libuv, so stdout and stderr can share one pipe.
 *
 * With a cgroup, the worker must be inside it before any of its own code runs (DESIGN §2;
 * attaching after uv_spawn races, and early charges stay in the wrong cgroup for good). libuv
 * 1.44 has no pre-exec hook, so uv_spawn runs `memvisor exec-shim FD COMMAND...` with the
 * worker cgroup's cgroup.procs open on FD: the shim writes "0" (itself) there, closes it and
 * execs the worker. The migration write can block for an RCU grace period (5-16 ms): it
 * blocks the new child, never the loop. The shim also sets LISTEN_PID, which only the child
 * knows; with listen sockets and no cgroup it runs as `exec-shim - COMMAND...`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "notify.h"
#include "pool.h"

#define FIRST_CHILD_FD 3
/* stdin/out/err, the listen sockets, the api socketpair, the shim's cgroup.procs fd */
#define MAX_STDIO (FIRST_CHILD_FD + MV_LISTEN_MAX + 2)

static void exit_cb(uv_process_t *proc, int64_t status, int term_signal)
{
    mv__on_exit(proc->data, status, term_signal);
}

void mv__handle_closed_cb(uv_handle_t *h)
{
    mv_worker_t *w = h->data;

    if (--w->open_handles == 0)
        mv__on_closed(w);
}

static int nlisten(const mv_pool_t *p)
{
    return p->listen ? p->listen->n : 0;
}

/* Variables of memvisor's environment a worker gets its own values of, or none. */
static bool env_private(const char *entry)
{
    return strncmp(entry, MVW_ENV_FD "=", sizeof MVW_ENV_FD) == 0 ||
           strncmp(entry, "MEMVISOR_SLOT=", 14) == 0 || mv_listen_env_private(entry) ||
           mv_notify_env_private(entry);
}

/* The variables worker_env adds; their text lives here. */
typedef struct env_extra {
    char fd[32], slot[32], fds[32], names[MV_LISTEN_MAX * MV_LISTEN_NAME + 16];
} env_extra_t;

/* The worker's environment: memvisor's own, plus MEMVISOR_FD (api), MEMVISOR_SLOT and, with
 * listen sockets, LISTEN_FDS and LISTEN_FDNAMES (LISTEN_PID: the shim). */
static char **worker_env(mv_pool_t *p, mv_worker_t *w, env_extra_t *x)
{
    size_t n = 0, k = 0;
    char **env;

    while (p->env && p->env[n])
        n++;
    env = calloc(n + 5, sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!env_private(p->env[i]))
            env[k++] = p->env[i];
    snprintf(x->slot, sizeof x->slot, "MEMVISOR_SLOT=%d", w->slot);
    env[k++] = x->slot;
    if (p->cfg->worker.protocol == MV_PROTO_API) {
        snprintf(x->fd, sizeof x->fd, MVW_ENV_FD "=%d", FIRST_CHILD_FD + nlisten(p));
        env[k++] = x->fd;
    }
    if (nlisten(p) > 0) {
        size_t used = (size_t)snprintf(x->names, sizeof x->names, "LISTEN_FDNAMES=");
        mv_listen_names(p->listen, x->names + used, sizeof x->names - used);
        snprintf(x->fds, sizeof x->fds, "LISTEN_FDS=%d", nlisten(p));
        env[k++] = x->fds;
        env[k++] = x->names;
    }
    env[k] = NULL;
    return env;
}

int mv_exec_shim(int argc, char **argv)
{
    char *end;
    char pid[24];
    long fd;

    /* memvisor exec-shim FD|- COMMAND [ARG]... ; exit codes as a shell's: 125 could not set
     * up, 126 cannot execute, 127 not found. */
    if (argc < 4) {
        fprintf(stderr, "usage: memvisor exec-shim FD|- COMMAND [ARG]...\n");
        return 125;
    }
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
    /* Socket activation: the sockets are for this process, which exec keeps. */
    if (getenv("LISTEN_FDS")) {
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
    }
    execvp(argv[3], argv + 3);
    fprintf(stderr, "memvisor exec-shim: cannot run %s: %s\n", argv[3], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

/* argv for uv_spawn: the command, or the shim in front of it (for a cgroup to join at
 * `shim_fd`, or for LISTEN_PID). NULL on ENOMEM. */
static char **spawn_argv(mv_pool_t *p, int shim_fd, char *fd_text)
{
    size_t n = 0, k = 0;
    char **a;

    while (p->argv[n])
        n++;
    a = calloc(n + 4, sizeof *a);
    if (!a)
        return NULL;
    if (shim_fd >= 0 || nlisten(p) > 0) {
        if (shim_fd >= 0)
            snprintf(fd_text, 16, "%d", shim_fd);
        else
            snprintf(fd_text, 16, "-");
        a[k++] = (char *)p->self_exe;
        a[k++] = "exec-shim";
        a[k++] = fd_text;
    }
    for (size_t i = 0; i < n; i++)
        a[k++] = p->argv[i];
    a[k] = NULL;
    return a;
}

/* The fds a worker is started with (see the top of this file): the channel's stdio, the
 * listen sockets, the api socket, the cgroup's procs fd for the shim. 0 or -errno. */
static int setup_stdio(mv_pool_t *p, mv_worker_t *w, uv_stdio_container_t st[MAX_STDIO], int *count)
{
    mv_chan_stdio_t io;
    int r = mv_chan_prepare(&w->chan, &io);

    if (r < 0)
        return r;
    memcpy(st, io.st, sizeof io.st);
    *count = FIRST_CHILD_FD;
    for (int i = 0; i < nlisten(p); i++) {
        st[*count].flags = UV_INHERIT_FD;
        st[*count].data.fd = p->listen->l[i].fd;
        (*count)++;
    }
    if (io.api_fd >= 0) {
        st[*count].flags = UV_INHERIT_FD;
        st[*count].data.fd = io.api_fd;
        (*count)++;
    }
    if (w->has_cg) {
        /* The cgroup.procs fd goes to the next free child fd, for the shim. */
        st[*count].flags = UV_INHERIT_FD;
        st[*count].data.fd = w->cg.procs_fd;
        (*count)++;
    }
    return 0;
}

int mv__spawn(mv_pool_t *p, mv_worker_t *w, const char **call)
{
    uv_process_options_t o;
    uv_stdio_container_t st[MAX_STDIO];
    int count = 0, r;
    env_extra_t extra;
    char shim_fd[16];
    char **env = NULL, **args = NULL;

    memset(&o, 0, sizeof o);
    memset(st, 0, sizeof st);
    *call = "pipe";
    r = setup_stdio(p, w, st, &count);
    env = worker_env(p, w, &extra);
    args = spawn_argv(p, w->has_cg ? count - 1 : -1, shim_fd);
    if (r == 0 && (!env || !args))
        r = -ENOMEM;
    if (r == 0) {
        o.file = args[0];
        o.args = args;
        o.env = env;
        o.stdio = st;
        o.stdio_count = count;
        o.exit_cb = exit_cb;
        /* Its own session: a Ctrl-C at memvisor's terminal is memvisor's to handle (grace
         * period first), not a SIGINT to every worker. */
        o.flags = UV_PROCESS_DETACHED;
        w->proc.data = w;
        *call = "uv_spawn";
        r = uv_spawn(p->loop, &w->proc, &o);
        /* Unix uv_spawn initialises the handle before anything can fail: always close it. */
        w->open_handles++;
    }
    free(env);
    free(args);
    mv_chan_spawned(&w->chan); /* the child's ends are the child's now (or nobody's) */
    if (r < 0)
        return r;
    w->pid = w->proc.pid;
    w->spawned_ms = mv_now_ms();
    r = mv_chan_start(&w->chan, call);
    if (r < 0)
        uv_process_kill(&w->proc, SIGKILL); /* it runs, but we cannot talk to it */
    return r;
}

void mv__signal(mv_worker_t *w, int sig)
{
    int r;

    if (w->state == MV_W_DEAD || w->pid <= 0 || w->exited)
        return;
    /* By pid, through the handle, and only before its exit was reported: libuv reaps the
     * child just before calling the exit callback, after which the pid may be reused. */
    r = uv_process_kill(&w->proc, sig);
    if (r < 0 && r != UV_ESRCH)
        mv_error(w->pool->log, "signal_failed", MV_I("worker", w->slot), MV_I("pid", w->pid),
                 MV_I("signal", sig), MV_S("error", uv_strerror(r)));
}

/* Closes one handle if it is open, counting it down in handle_closed_cb. */
static void close_one(uv_handle_t *h, bool *is_open)
{
    if (is_open && !*is_open)
        return;
    if (is_open)
        *is_open = false;
    if (!uv_is_closing(h))
        uv_close(h, mv__handle_closed_cb);
}

void mv__close_handles(mv_worker_t *w)
{
    mv_chan_close(&w->chan);
    close_one((uv_handle_t *)&w->timer, NULL);
    close_one((uv_handle_t *)&w->notify, &w->notify_open);
    if (w->proc.type == UV_PROCESS)
        close_one((uv_handle_t *)&w->proc, NULL);
}
