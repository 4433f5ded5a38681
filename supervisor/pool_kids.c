/*
 * pool_kids: [recycle] target = child, memory recycles of a master's children (kids.h).
 *
 * Design: a protocol-none worker that is a master (gunicorn's arbiter and the like) holds
 * the listening sockets and forks the processes that serve; it forks a replacement when one
 * exits. When the worker's memory passes its soft limit, the pool looks at the master's
 * children: the one with the most private memory is told to stop ([recycle] child_signal,
 * gunicorn's graceful stop by default) and the master forks its replacement from its warm
 * state, in a millisecond or so, where replacing the whole worker means a cold start of the
 * master and the application (bench/w2: ~0.5 s of CPU per recycle). The worker stays; so do
 * its cgroup, its limits and its generation. It is a recycle all the same: an `event=recycle`
 * with `action=child` and the child's pid and memory, counted as one by the report, never a
 * failure and never toward crash_limit.
 *
 * While a child stops, the pool follows the worker (a look every 5 ms, watch.h): the child
 * gets kill_timeout to finish what it serves, then SIGKILL. Once it is gone, the next look
 * judges what is left: still over the soft limit, the next largest child is told (a master
 * of several children, each leaking); back under it, done. A master's other children serve
 * on meanwhile and may grow: past the stop point of a handover (soft + handover_headroom,
 * less the learned overshoot: pool.c) the largest of them is told too, so the headroom
 * bounds the worker's peak here as it does for a whole-worker recycle. The master itself is
 * never signalled here: when no child holds more private memory than the master (the master
 * grows, or it has no child), the look falls through to a whole-worker recycle, as with
 * target = worker. The kernel's hard limit and the hard-limit kill are unchanged: they apply
 * to the worker's cgroup, master and children together.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

#define KIDS_MAX     256 /* children looked at per master; more is not a worker's shape */
#define STOPPING_MAX 8   /* children of one worker told to stop and not gone yet */

static int signal_of(mv_child_signal_t s)
{
    static const int sig[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};

    return (unsigned)s < sizeof sig / sizeof sig[0] ? sig[s] : SIGTERM;
}

static void follow(mv_pool_t *p, mv_member_t *m, bool on)
{
    m->kid_follow = on;
    mv_watch_follow(&p->watch, &m->watch, on);
}

static int64_t metric(const mv_pool_t *p, const mv_reading_t *r)
{
    return r ? mv_reading_limit_metric(r, p->o.cfg->limits.metric) : -1;
}

/* The children still stopping: SIGKILL past kill_timeout; the gone ones forgotten. */
static int stopping(mv_pool_t *p, mv_member_t *m, const mv_reading_t *r)
{
    mv_worker_t *w = m->w;
    int left = 0;

    for (int i = 0; m->kids && i < STOPPING_MAX; i++) {
        mv_kidstop_t *k = &m->kids[i];
        uint64_t ms = mv_now_ms() - k->since_ms;
        if (k->pidfd < 0)
            continue;
        if (!mv_kidstop_gone(k)) {
            left++;
            if (!k->killed && ms >= (uint64_t)p->o.cfg->worker.kill_timeout) {
                int rc = mv_kidstop_kill(k);
                mv_warn(p->o.log, "kill_timeout", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
                        MV_I("child", k->pid), MV_I("ms", (long long)ms),
                        MV_S("msg", rc == 0 ? "the child did not stop: SIGKILL" : strerror(-rc)));
            }
            continue;
        }
        mv_info(p->o.log, "child_gone", MV_I("worker", w->slot), MV_I("gen", w->gen),
                MV_I("pid", w->proc.pid), MV_I("child", k->pid), MV_I("ms", (long long)ms),
                MV_I("usage", r ? r->usage : -1));
        mv_kidstop_end(k);
    }
    return left;
}

/* A free record for one more stopping child, or NULL (all in use, or out of memory). */
static mv_kidstop_t *free_stop(mv_member_t *m)
{
    if (!m->kids) {
        if (!(m->kids = malloc(STOPPING_MAX * sizeof *m->kids)))
            return NULL;
        for (int i = 0; i < STOPPING_MAX; i++)
            mv_kidstop_init(&m->kids[i]);
    }
    for (int i = 0; i < STOPPING_MAX; i++)
        if (m->kids[i].pidfd < 0)
            return &m->kids[i];
    return NULL;
}

static bool is_stopping(const mv_member_t *m, pid_t pid)
{
    for (int i = 0; m->kids && i < STOPPING_MAX; i++)
        if (m->kids[i].pidfd >= 0 && m->kids[i].pid == pid)
            return true;
    return false;
}

/* Tells the master's largest child not stopping yet to stop. Whether one was told (or has
 * just exited by itself); false: none can be, `why` says why. */
static bool stop_largest(mv_pool_t *p, mv_member_t *m, const mv_reading_t *r, int64_t *master,
                         int *n, const char **why)
{
    mv_worker_t *w = m->w;
    mv_kid_t kids[KIDS_MAX];
    mv_kidstop_t *k;
    int i, rc;

    *master = mv_kids_priv(w->proc.pid);
    *n = mv_kids_list(w->proc.pid, kids, KIDS_MAX);
    for (i = 0; i < *n; i++)
        if (is_stopping(m, kids[i].pid))
            kids[i].priv = -1; /* told already: not picked twice */
    if ((i = *n > 0 ? mv_kids_pick(kids, *n, *master) : -1) < 0) {
        *why = *n < 0    ? "the master is gone"
               : *n == 0 ? "the master has no child"
                         : "the master holds more memory than any child";
        return false;
    }
    if (!(k = free_stop(m))) {
        *why = "too many children stopping at once";
        return false;
    }
    rc = mv_kidstop_start(k, kids[i].pid, signal_of(p->o.cfg->recycle.child_signal));
    if (rc < 0 && rc != -ESRCH) {
        *why = strerror(-rc);
        return false;
    }
    if (rc == 0) {
        p->child_recycles++;
        m->kid_told_ms = mv_now_ms();
        if (p->o.timeline) /* a grey line on the worker's series, as any recycle */
            mv_timeline_mark(p->o.timeline,
                             &(mv_tl_mark_t){w->slot, w->gen, MV_TL_RECYCLE, "soft_limit_child",
                                             w->proc.pid, -1, -1, 0});
        mv_info(p->o.log, "recycle", MV_I("worker", w->slot), MV_I("gen", w->gen),
                MV_I("pid", w->proc.pid), MV_S("reason", mv_reason_name(MV_R_SOFT_LIMIT)),
                MV_S("action", "child"), MV_I("child", kids[i].pid),
                MV_I("child_mem", kids[i].priv), MV_I("master_mem", *master), MV_I("children", *n),
                MV_I("mem", metric(p, r)), MV_I("usage", r ? r->usage : -1));
    }
    follow(p, m, true); /* -ESRCH: it exited meanwhile, the next look sees what is left */
    return true;
}

bool mv__pool_kids_check(mv_pool_t *p, mv_member_t *m, const mv_reading_t *r, mv_verdict_t v)
{
    mv_worker_t *w = m->w;
    bool over = v.kind == MV_VERDICT_RECYCLE && v.reason == MV_R_SOFT_LIMIT && r;
    const char *why = NULL;
    int64_t master = -1;
    int left, n = 0;

    if (p->o.cfg->recycle.target != MV_TARGET_CHILD || mv_worker_leaving(w))
        return false;
    left = stopping(p, m, r);
    if (left > 0) {
        /* Its other children serve on meanwhile: past the stop point, the largest is told. */
        if (over &&
            metric(p, r) >= mv_policy_stop_at(w->lim.soft_bytes,
                                              p->o.cfg->recycle.handover_headroom, p->overshoot))
            stop_largest(p, m, r, &master, &n, &why);
        return true;
    }
    if (over) {
        if (stop_largest(p, m, r, &master, &n, &why))
            return true;
        mv_info(p->o.log, "child_recycle_skipped", MV_I("worker", w->slot),
                MV_I("pid", w->proc.pid), MV_I("children", n > 0 ? n : 0),
                MV_I("master_mem", master), MV_S("why", why),
                MV_S("msg", "the whole worker is recycled"));
        return false;
    }
    if (m->kid_follow)
        follow(p, m, false); /* back under the limit (or another verdict): done */
    return false;
}

/* A master replaces its children; a worker that exits right after one of its children was
 * told to stop most likely does not (a shell waiting on its command is no master): say so,
 * since the exit itself counts as any worker's would. */
void mv__pool_kids_exit(mv_pool_t *p, mv_member_t *m, mv_reason_t why)
{
    mv_worker_t *w = m->w;

    if (!m->kid_told_ms || why == MV_R_SHUTDOWN ||
        mv_now_ms() - m->kid_told_ms > (uint64_t)p->o.cfg->worker.kill_timeout + 1000)
        return;
    mv_warn(p->o.log, "master_exited", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_S("reason", mv_reason_name(why)),
            MV_I("ms", (long long)(mv_now_ms() - m->kid_told_ms)),
            MV_S("msg", "the worker exited after one of its children was told to stop: with "
                        "[recycle] target = child the worker command must be a master that "
                        "replaces its children (exec it from a shell script, do not wait on it)"));
}

void mv__pool_kids_gone(mv_member_t *m)
{
    for (int i = 0; m->kids && i < STOPPING_MAX; i++)
        mv_kidstop_end(&m->kids[i]);
    free(m->kids);
    m->kids = NULL;
}
