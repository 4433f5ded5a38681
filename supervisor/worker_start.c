/*
 * worker_start: starting a worker, part of the worker module (worker.h): its cgroup (made
 * now in the thread pool, or ahead by cgahead), its environment, its process (exec'd through
 * the shim, or forked from a warm template), and a spare taking a slot.
 */
#include "worker_int.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memvisor/heap.h>
#include <memvisor/protocol.h>

#include "cgasync.h"

/* ---- starting ---- */

static void notify_cb(uv_poll_t *h, int status, int events)
{
    mv_worker_t *w = h->data;

    if (status >= 0 && mv_fsm_has_process(w->state) && mv_cg_notified(&w->cg) > 0)
        w->ev->on_notify(w);
}

/* Starts watching the cgroup's notifications (soft limit, OOM). */
static void watch_cgroup(mv_worker_t *w)
{
    int r;

    if (!w->has_cg || w->cg.notify_fd < 0)
        return;
    r = uv_poll_init(w->o.loop, &w->notify, w->cg.notify_fd);
    if (r < 0) {
        /* e.g. a fixture tree of plain files: the sampler still watches this worker. */
        mv_debug(w->o.log, "cgroup_poll_unavailable", MV_I("worker", w->slot),
                 MV_S("error", uv_strerror(r)));
        return;
    }
    w->notify.data = w;
    w->notify_open = true;
    w->open++;
    /* v2 signals memory.events changes as POLLPRI only; v1's eventfd is plain readable. */
    uv_poll_start(&w->notify, w->cg.version == MV_CG_V2 ? UV_PRIORITIZED : UV_READABLE, notify_cb);
}

/* Variables of memvisor's environment a worker gets its own values of, or none. */
bool mv_worker_env_private(const char *entry)
{
    return strncmp(entry, MVW_ENV_FD "=", sizeof MVW_ENV_FD) == 0 ||
           strncmp(entry, "MEMVISOR_SLOT=", 14) == 0 ||
           strncmp(entry, MVH_ENV_FD "=", sizeof MVH_ENV_FD) == 0 ||
           strncmp(entry, MV_PROC_ENV_PRELOAD "=", sizeof MV_PROC_ENV_PRELOAD) == 0 ||
           mv_listen_env_private(entry);
}

static int nlisten(const mv_worker_t *w)
{
    return w->o.listen ? w->o.listen->n : 0;
}

/* The heap preload's variables (up to 3, into out): the page's fd, the library for the exec
 * shim (MV_PROC_ENV_PRELOAD), PYTHONMALLOC=malloc for Python unless env[0..n) sets it. */
static size_t heap_env(const mv_worker_opts_t *o, mv_worker_env_t *x, char **out, char *const *env,
                       size_t n)
{
    static char pymalloc[] = "PYTHONMALLOC=malloc";
    size_t k = 0;

    if (x->heap_at < 0)
        return 0;
    snprintf(x->heap_fd, sizeof x->heap_fd, MVH_ENV_FD "=%d", x->heap_at);
    snprintf(x->preload, sizeof x->preload, MV_PROC_ENV_PRELOAD "=%s", o->heap->library);
    out[k++] = x->heap_fd;
    out[k++] = x->preload;
    for (size_t i = 0; o->heap->python && i <= n; i++)
        if (i == n)
            out[k++] = pymalloc;
        else if (strncmp(env[i], "PYTHONMALLOC=", 13) == 0)
            break;
    return k;
}

char **mv_worker_env(const mv_worker_opts_t *o, int slot, mv_worker_env_t *x)
{
    int nl = o->listen ? o->listen->n : 0;
    size_t n = 0, k = 0;
    bool unbuffered = false;
    char **env;

    while (o->env && o->env[n])
        unbuffered |= strncmp(o->env[n++], "PYTHONUNBUFFERED=", 17) == 0;
    env = calloc(n + 10, sizeof *env);
    if (!env)
        return NULL;
    /* A build tree's worker module (pool.c): its PYTHONPATH holds the environment's. */
    for (size_t i = 0; i < n; i++)
        if (!o->pythonpath || strncmp(o->env[i], "PYTHONPATH=", 11) != 0)
            env[k++] = o->env[i];
    if (o->pythonpath)
        env[k++] = (char *)o->pythonpath;
    n = k;
    k += heap_env(o, x, env + k, env, n);
    snprintf(x->slot, sizeof x->slot, "MEMVISOR_SLOT=%d", slot);
    env[k++] = x->slot;
    if (o->cfg->worker.protocol == MV_PROTO_API) {
        snprintf(x->fd, sizeof x->fd, MVW_ENV_FD "=%d", MV_PROC_FIRST_FD + nl);
        env[k++] = x->fd;
    }
    /* A Python lines worker whose print() is not flushed would hold its answers in its
     * buffer for ever: unbuffered, unless the user said otherwise. */
    if (o->cfg->worker.protocol == MV_PROTO_LINES && !unbuffered)
        env[k++] = "PYTHONUNBUFFERED=1";
    if (nl > 0) {
        size_t used = (size_t)snprintf(x->names, sizeof x->names, "LISTEN_FDNAMES=");
        mv_listen_names(o->listen, x->names + used, sizeof x->names - used);
        snprintf(x->fds, sizeof x->fds, "LISTEN_FDS=%d", nl);
        env[k++] = x->fds;
        env[k++] = x->names;
    }
    env[k] = NULL;
    return env;
}

/* Makes its heap page when the plan says so; without one it runs unmeasured (said once). */
static bool start_heap(mv_worker_t *w)
{
    int r;

    /* A forked worker runs the template's image, loaded without the preload: a page would
     * stay blank, and an api worker reports its own figures instead (mv_worker_queue_go). */
    if (!w->o.heap || !w->o.heap->preload || w->o.forker)
        return false;
    r = mv_heapwin_start(&w->heap);
    if (r < 0)
        mv_warn(w->o.log, "heap_unavailable", MV_I("worker", w->slot), MV_S("call", "memfd_create"),
                MV_S("error", strerror(-r)));
    return r == 0;
}

/* Starts its process. 0 or -errno with *call naming what failed. */
static int spawn(mv_worker_t *w, const char **call)
{
    int fds[MV_LISTEN_MAX + 2], nfds = 0, r;
    mv_chan_stdio_t io;
    mv_worker_env_t extra = {.heap_at = -1};
    char **env;

    /* Templates given up since its options were copied (a spare's, a successor's): exec'd,
     * like the slots' workers from then on, not cancelled at every start forever. */
    if (w->o.forker && w->o.forker->usable && !w->o.forker->usable(w->o.forker->self))
        w->o.forker = NULL;
    *call = "pipe";
    r = mv_chan_prepare(&w->chan, &io);
    if (r < 0)
        return r;
    for (int i = 0; i < nlisten(w); i++)
        fds[nfds++] = w->o.listen->l[i].fd;
    if (io.api_fd >= 0)
        fds[nfds++] = io.api_fd;
    if (start_heap(w)) {
        extra.heap_at = MV_PROC_FIRST_FD + nfds;
        fds[nfds++] = w->heap.hm.fd;
    }
    env = mv_worker_env(&w->o, w->slot, &extra);
    *call = "uv_spawn";
    r = !env ? -ENOMEM
             : mv_proc_spawn(
                   &w->proc, w->o.loop,
                   &(mv_proc_spec_t){
                       .argv = w->o.argv,
                       .env = env,
                       .self_exe = w->o.self_exe,
                       .stdio = io.st,
                       .fds = fds,
                       .nfds = nfds,
                       .cgroup_procs_fd = w->has_cg ? w->cg.procs_fd : -1,
                       .listen_pid = nlisten(w) > 0,
                       /* Its own session: a Ctrl-C at memvisor's terminal is
                        * memvisor's to handle (grace period first). */
                       .own_session = true,
                       /* [worker] user/group: the shim drops to them (proc.h); a forked
                        * worker has the template's, dropped the same way */
                       .set_creds = *w->o.cfg->worker.user || *w->o.cfg->worker.group,
                       .uid = w->o.cfg->worker.uid,
                       .gid = w->o.cfg->worker.gid,
                       .forker = w->o.forker,
                       .cgroup_dir = w->has_cg && w->cg.version == MV_CG_V2 ? w->cg.path : NULL,
                       .slot = w->slot,
                   });
    free(env);
    mv_chan_spawned(&w->chan); /* the child's ends are the child's now (or nobody's) */
    if (r < 0 || w->proc.pending)
        return r; /* forked: mv_worker_proc_started follows */
    w->spawned_ms = mv_now_ms();
    return mv_chan_start(&w->chan, call);
}

/* It could not be started: gone, with the failed call as its verdict. */
static void spawn_failed(mv_worker_t *w, const char *call, const char *error, bool hopeless)
{
    /* A start the template's going away cancelled is started again (not the worker's
     * failure, no crash counted): a warning. A template crash loop made one error line per
     * request in flight while no task failed. */
    mv_log(w->o.log, w->spawn_retry ? MV_LVL_WARN : MV_LVL_ERROR, "spawn_failed",
           MV_I("worker", w->slot), MV_S("command", w->o.argv[0]), MV_S("call", call),
           MV_S("error", error));
    w->spawn_call = call;
    snprintf(w->spawn_why, sizeof w->spawn_why, "%s", error);
    w->hopeless = hopeless;
    w->reason = MV_R_CRASH;
    mv_worker_step(w, MV_EV_SPAWN_FAILED);
}

static void running(mv_worker_t *w, int r, const char *call);

static void spawn_now(mv_worker_t *w)
{
    const char *call;
    int r = spawn(w, &call);

    if (r < 0 && w->proc.pid <= 0) {
        spawn_failed(w, call, uv_strerror(r), mv_policy_spawn_hopeless(r));
        return;
    }
    if (!w->proc.pending)
        running(w, r, call);
}

/* ---- the start gate (startgate.h) ---- */

static void gate_go(mv_gate_entry_t *e)
{
    spawn_now((mv_worker_t *)(void *)((char *)e - offsetof(mv_worker_t, gate)));
}

/* On its way to the start gate (its cgroup to be made first): spares leave it a place. */
static void expect_turn(mv_worker_t *w)
{
    if (!w->o.gate)
        return;
    w->gate.go = gate_go;
    w->gate.last = w->o.start_last;
    mv_startgate_expect(w->o.gate, &w->gate);
}

/* Its process starts now, or when its turn at the start gate comes (it waits PREPARING, its
 * cgroup made: a cgroup taken from the ones made ahead stays its own meanwhile). */
static void start_process(mv_worker_t *w)
{
    if (w->o.gate) {
        expect_turn(w); /* no cgroup: straight there */
        if (!mv_startgate_enter(w->o.gate, &w->gate)) {
            mv_debug(w->o.log, "start_waits", MV_I("worker", w->slot), MV_I("gen", w->gen),
                     MV_I("starting", w->o.gate->in), MV_I("waiting", w->o.gate->waiting));
            return;
        }
    }
    spawn_now(w);
}

/* A template forked it: its channel is read from now on (not before: its HELLO must find it
 * SPAWNING). */
void mv_worker_proc_started(void *owner)
{
    mv_worker_t *w = owner;
    const char *call;

    w->spawned_ms = mv_now_ms();
    running(w, mv_chan_start(&w->chan, &call), call);
}

void mv_worker_proc_failed(void *owner, int err, bool retry)
{
    mv_worker_t *w = owner;

    w->spawn_retry = retry;
    /* strerror: uv_strerror allocates (and never frees) the text of a code libuv does not
     * name, such as ECHILD (a pid the template named that is not memvisor's child). */
    spawn_failed(w, "template", strerror(-err), false);
}

/* Its process runs (r < 0: but its channel could not be opened, `call` says how). */
static void running(mv_worker_t *w, int r, const char *call)
{
    mv_worker_step(w, MV_EV_STARTED);
    w->ev->on_started(w);
    if (r < 0) {
        /* It runs but cannot be talked to: killed, and its exit reaped as a crash (with the
         * backoff and crash_limit of any failure). */
        mv_error(w->o.log, "spawn_failed", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                 MV_S("call", call), MV_S("error", uv_strerror(r)));
        w->reason = MV_R_CRASH;
        mv_worker_step(w, MV_EV_SPAWN_FAILED);
        return;
    }
    /* memory.stat only for the private metric (the rss one never needs the cgroup's anon). */
    w->mem.meter_ok =
        mv_meter_open(&w->mem.meter, w->proc.pid, w->has_cg ? &w->cg : NULL,
                      w->o.cfg->limits.metric == MV_METRIC_PRIVATE ? w->lim.soft_bytes : 0) == 0;
    watch_cgroup(w);
    mv_info(w->o.log, "spawn", MV_I("worker", w->slot), MV_I("gen", w->gen),
            MV_I("pid", w->proc.pid), MV_S("cgroup", w->has_cg ? w->cg.path : "none"),
            MV_S("start", !w->proc.forked     ? "exec"
                          : w->proc.in_cgroup ? "fork_in_cgroup"
                                              : "fork"));
    if (w->o.timeline)
        mv_timeline_mark(w->o.timeline,
                         &(mv_tl_mark_t){w->slot, w->gen, MV_TL_SPAWN, NULL, w->proc.pid,
                                         w->lim.soft_bytes, w->lim.hard_bytes, 0});
    if (w->o.cfg->worker.protocol == MV_PROTO_API)
        return; /* ready at its HELLO */
    r = mv_waitprobe_open(&w->probe, w->proc.pid);
    w->probe_ok = r == 0;
    if (w->o.cfg->worker.protocol == MV_PROTO_NONE)
        w->probe.idle_looks = MV_PROBE_SERVER_LOOKS;
    if (w->probe_ok)
        mv_wlook_later(w);
    else
        mv_wlook_assume_ready(w, strerror(-r));
}

static void cg_created(void *owner, int result, mv_cgw_t *cg, const char *why)
{
    mv_worker_t *w = owner;

    w->cg_job = NULL;
    if (result < 0) {
        spawn_failed(w, "cgroup", why, false);
        return;
    }
    w->cg = *cg;
    w->has_cg = true;
    start_process(w);
}

void mv_worker_start(mv_worker_t *w)
{
    const mv_cg_t *cg = w->o.cg;
    mv_cg_t own;
    int r;

    if (!cg || cg->version == MV_CG_OFF) {
        start_process(w);
        return;
    }
    expect_turn(w);
    /* Its cgroup gets its own limits: the run's, or an escalated task's raised ones. */
    own = *cg;
    own.soft = w->lim.soft_bytes;
    own.hard = w->lim.hard_bytes;
    r = mv_cg_create_async(w->o.loop, w->o.log, &own, w->slot, w->gen, cg_created, w, &w->cg_job);
    if (r < 0)
        spawn_failed(w, "uv_queue_work", "cannot queue the cgroup job", false);
}

/* ---- spares and cgroups made ahead (pool.h: spares.h, cgahead.h) ---- */

void mv_worker_start_ahead(mv_worker_t *w, mv_cgahead_t *ahead)
{
    mv_cgw_t cg;
    mv_job_t *job = NULL;

    w->ahead = ahead;
    expect_turn(w);
    switch (mv_cgahead_take(ahead, w->slot, w->gen, &cg, &job)) {
    case MV_AHEAD_READY: cg_created(w, 0, &cg, ""); break;
    case MV_AHEAD_MAKING: /* its job is ours now: closing the worker detaches it, as usual */
        w->cg_job = job;
        mv_cg_create_retarget(job, cg_created, w);
        break;
    default: mv_worker_start(w); break;
    }
}

void mv_worker_adopt(mv_worker_t *w, int slot, uint32_t gen, const mv_wlimits_t *lim,
                     const mv_worker_events_t *ev, void *data, mv_timeline_t *timeline)
{
    bool successor = w->hold_go;

    /* A successor is the slot's own next worker, started early: said at debug level (with a
     * worker per task, an info line a worker is CPU the loop spends per task). */
    mv_log(w->o.log, successor ? MV_LVL_DEBUG : MV_LVL_INFO,
           successor ? "successor_taken" : "spare_taken", MV_I("worker", slot), MV_I("gen", gen),
           MV_I("pid", w->proc.pid), MV_I(successor ? "ready" : "spare", w->ready ? w->gen : 0),
           MV_I("waited_ms", w->ready ? (long long)(mv_now_ms() - w->ready_ms) : -1));
    w->hold_go = false;
    w->slot = slot;
    w->gen = gen;
    w->lim = *lim;
    w->ev = ev;
    w->data = data;
    w->o.timeline = timeline;
    /* Its life in a slot starts now: max_lifetime counts from here, and its first task's
     * "before" is read now, not taken from its readiness (it may have waited long). One still
     * starting sets both again when it runs and when it is ready. */
    w->spawned_ms = mv_now_ms();
    w->idle_ns = uv_hrtime();
    /* A successor's GO goes with its first task, in the dispatcher's pass (batch only); a
     * spare's at once: a service worker starts serving at its GO, and a pass run from a timer
     * callback waits for the loop's next poll. */
    if (w->o.cfg->worker.protocol == MV_PROTO_API && w->chan.hello) {
        mv_worker_queue_go(w);
        if (!successor)
            mv_chan_flush(&w->chan);
    }
    /* One with no process yet is marked when it gets one (running). */
    if (timeline && w->state != MV_W_PREPARING)
        mv_timeline_mark(timeline,
                         &(mv_tl_mark_t){slot, gen, MV_TL_SPAWN, successor ? NULL : "spare",
                                         w->proc.pid, w->lim.soft_bytes, w->lim.hard_bytes, 0});
}
