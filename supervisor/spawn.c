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
#include "proc.h"

static void proc_exit(void *owner, int64_t status, int term_signal)
{
    mv__on_exit(owner, status, term_signal);
}

static void proc_closed(void *owner)
{
    mv_worker_t *w = owner;

    if (--w->open_handles == 0)
        mv__on_closed(w);
}

const mv_proc_events_t mv__proc_events = {proc_exit, proc_closed};

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
        snprintf(x->fd, sizeof x->fd, MVW_ENV_FD "=%d", MV_PROC_FIRST_FD + nlisten(p));
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

int mv__spawn(mv_pool_t *p, mv_worker_t *w, const char **call)
{
    int fds[MV_LISTEN_MAX + 1], nfds = 0, r;
    mv_chan_stdio_t io;
    env_extra_t extra;
    char **env;

    *call = "pipe";
    r = mv_chan_prepare(&w->chan, &io);
    if (r < 0)
        return r;
    for (int i = 0; i < nlisten(p); i++)
        fds[nfds++] = p->listen->l[i].fd;
    if (io.api_fd >= 0)
        fds[nfds++] = io.api_fd;
    env = worker_env(p, w, &extra);
    if (!env) {
        mv_chan_spawned(&w->chan);
        return -ENOMEM;
    }
    *call = "uv_spawn";
    r = mv_proc_spawn(&w->proc, p->loop,
                      &(mv_proc_spec_t){
                          .argv = p->argv,
                          .env = env,
                          .self_exe = p->self_exe,
                          .stdio = io.st,
                          .fds = fds,
                          .nfds = nfds,
                          .cgroup_procs_fd = w->has_cg ? w->cg.procs_fd : -1,
                          .listen_pid = nlisten(p) > 0,
                          .own_session = true,
                      });
    free(env);
    mv_chan_spawned(&w->chan); /* the child's ends are the child's now (or nobody's) */
    if (r < 0)
        return r;
    w->spawned_ms = mv_now_ms();
    r = mv_chan_start(&w->chan, call);
    if (r < 0)
        mv_proc_signal(&w->proc, SIGKILL); /* it runs, but we cannot talk to it */
    return r;
}

void mv__signal(mv_worker_t *w, int sig)
{
    int r = mv_proc_signal(&w->proc, sig);

    if (r < 0 && r != -ESRCH)
        mv_error(w->pool->log, "signal_failed", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
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
    mv_proc_close(&w->proc);
}
