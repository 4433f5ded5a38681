/*
 * spawn: starting a worker process, signalling it, closing its handles.
 *
 * Workers are started with uv_spawn and their exits come from libuv's exit callback only
 * (DESIGN §2: one mechanism; never waitpid(-1), no SIGCHLD handler of ours).
 *
 * File descriptors of a worker:
 *   api    0 /dev/null, 1+2 output pipe (to the log), 3 socketpair (MEMVISOR_FD=3)
 *   lines  0 task pipe, 1 result pipe, 2 output pipe (to the log)
 *   none   0 /dev/null, 1+2 output pipe (to the log)
 * The output pipe is made here, not by libuv, so stdout and stderr can share one pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool.h"

#define CHILD_CHAN_FD 3

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

/* Opens a pipe end we made ourselves as a libuv stream of the worker. 0 or -errno. */
static int open_pipe(mv_worker_t *w, uv_pipe_t *p, int fd, bool *is_open)
{
    int r = uv_pipe_init(w->pool->loop, p, 0);

    if (r < 0) {
        close(fd);
        return r;
    }
    p->data = w;
    w->open_handles++;
    *is_open = true;
    r = uv_pipe_open(p, fd);
    if (r < 0)
        close(fd);
    return r;
}

/* The worker's environment: memvisor's own, plus MEMVISOR_FD (api) and MEMVISOR_SLOT. */
static char **worker_env(mv_pool_t *p, mv_worker_t *w, char *fd_var, char *slot_var)
{
    size_t n = 0, k = 0;
    char **env;

    while (p->env && p->env[n])
        n++;
    env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(p->env[i], MVW_ENV_FD "=", sizeof MVW_ENV_FD) != 0 &&
            strncmp(p->env[i], "MEMVISOR_SLOT=", 14) != 0)
            env[k++] = p->env[i];
    snprintf(slot_var, 32, "MEMVISOR_SLOT=%d", w->slot);
    env[k++] = slot_var;
    if (p->cfg->worker.protocol == MV_PROTO_API) {
        snprintf(fd_var, 32, MVW_ENV_FD "=%d", CHILD_CHAN_FD);
        env[k++] = fd_var;
    }
    env[k] = NULL;
    return env;
}

int mv__spawn(mv_pool_t *p, mv_worker_t *w)
{
    mv_protocol_t proto = p->cfg->worker.protocol;
    uv_process_options_t o;
    uv_stdio_container_t st[4];
    int sv[2] = {-1, -1}, op[2] = {-1, -1}, r;
    char fd_var[32], slot_var[32];
    char **env = NULL;

    memset(&o, 0, sizeof o);
    memset(st, 0, sizeof st);
    r = uv_timer_init(p->loop, &w->timer);
    if (r < 0)
        return r;
    w->timer.data = w;
    w->open_handles++;

    if (pipe2(op, O_CLOEXEC) < 0) {
        r = -errno;
        goto fail;
    }
    st[0].flags = UV_IGNORE;
    st[1].flags = st[2].flags = UV_INHERIT_FD;
    st[1].data.fd = st[2].data.fd = op[1];
    o.stdio_count = 3;
    if (proto == MV_PROTO_API) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            r = -errno;
            goto fail;
        }
        st[3].flags = UV_INHERIT_FD;
        st[3].data.fd = sv[1];
        o.stdio_count = 4;
    } else if (proto == MV_PROTO_LINES) {
        /* libuv makes these two pipes; the handles must exist before uv_spawn. */
        uv_pipe_init(p->loop, &w->in, 0);
        uv_pipe_init(p->loop, &w->chan, 0);
        w->in.data = w->chan.data = w;
        w->open_handles += 2;
        w->in_open = w->chan_open = true;
        st[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        st[0].data.stream = (uv_stream_t *)&w->in;
        st[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        st[1].data.stream = (uv_stream_t *)&w->chan;
    }

    env = worker_env(p, w, fd_var, slot_var);
    if (!env) {
        r = -ENOMEM;
        goto fail;
    }
    o.file = p->argv[0];
    o.args = p->argv;
    o.env = env;
    o.stdio = st;
    o.exit_cb = exit_cb;
    w->proc.data = w;
    r = uv_spawn(p->loop, &w->proc, &o);
    /* Unix uv_spawn initialises the handle before anything can fail: always close it. */
    w->open_handles++;
    free(env);
    env = NULL;
    close(op[1]);
    op[1] = -1;
    if (sv[1] >= 0) {
        close(sv[1]);
        sv[1] = -1;
    }
    if (r < 0)
        goto fail;
    w->pid = w->proc.pid;
    w->spawned_ms = mv_now_ms();

    r = open_pipe(w, &w->out, op[0], &w->out_open);
    op[0] = -1;
    if (r == 0 && proto == MV_PROTO_API) {
        r = open_pipe(w, &w->chan, sv[0], &w->chan_open);
        sv[0] = -1;
    }
    if (r < 0) {
        /* The process runs but we cannot talk to it: it must not outlive this failure. */
        uv_process_kill(&w->proc, SIGKILL);
        return r;
    }
    return mv__chan_start(w);

fail:
    free(env);
    for (int i = 0; i < 2; i++) {
        if (op[i] >= 0)
            close(op[i]);
        if (sv[i] >= 0)
            close(sv[i]);
    }
    return r;
}

void mv__signal(mv_worker_t *w, int sig)
{
    int r;

    if (w->state == MV_W_DEAD || w->pid <= 0)
        return;
    /* By pid, through the handle: libuv has not reaped it yet, so the pid is still ours. */
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
    if (w->open_handles == 0) {
        mv__on_closed(w);
        return;
    }
    close_one((uv_handle_t *)&w->chan, &w->chan_open);
    close_one((uv_handle_t *)&w->in, &w->in_open);
    close_one((uv_handle_t *)&w->out, &w->out_open);
    close_one((uv_handle_t *)&w->timer, NULL);
    if (w->proc.type == UV_PROCESS)
        close_one((uv_handle_t *)&w->proc, NULL);
}
