/*
 * templates: the pool's warm template (see templates.h).
 */
#include "templates.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "tpolicy.h"

static void start_template(mv_templates_t *ts);
static const mv_template_events_t template_events;

static void part_closed(mv_templates_t *ts)
{
    if (--ts->open == 0 && ts->closing && ts->closed_cb)
        ts->closed_cb(ts->closed_arg);
}

/* ---- children nobody waits for ---- */

typedef struct orphan {
    mv_proc_t p;
    mv_templates_t *ts;
    struct orphan *next;
} orphan_t;

static void orphan_exit(void *owner, int64_t status, int term_signal)
{
    orphan_t *o = owner;

    mv_proc_close(&o->p);
}

static void orphan_closed(void *owner)
{
    orphan_t *o = owner;
    mv_templates_t *ts = o->ts;

    for (orphan_t **pp = &ts->orphans; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    free(o);
    part_closed(ts);
}

static void orphan_started(void *owner)
{
    orphan_t *o = owner;

    mv_proc_signal(&o->p, SIGKILL);
}

static void orphan_failed(void *owner, int err, bool retry)
{
    orphan_closed(owner);
}

static const mv_proc_events_t orphan_events = {orphan_exit, orphan_closed, orphan_started,
                                               orphan_failed};

/* A child forked for a request that was cancelled meanwhile: killed, and reaped. 0, or
 * -ECHILD when the pid is not memvisor's child (refused, see mv_proc_forked). */
static int reap_orphan(mv_templates_t *ts, int pid)
{
    orphan_t *o = calloc(1, sizeof *o);

    mv_debug(ts->o.log, "template_orphan", MV_I("pid", pid), MV_S("action", "SIGKILL"));
    if (!o)
        return 0; /* ours, it finds its channel closed and exits; the reaper waits for it */
    o->ts = ts;
    o->next = ts->orphans;
    ts->orphans = o;
    ts->open++;
    mv_proc_init(&o->p, &orphan_events, o);
    return mv_proc_forked(&o->p, ts->o.loop, pid, 0, false);
}

/* ---- requests ---- */

/* The process of r learns it will not be forked (retry: start it again at once). */
static void fail_request(mv_templates_t *ts, mv_freq_t *r, int err, bool retry)
{
    mv_proc_t *p = r->p;

    mv_freq_free(r);
    if (p)
        mv_proc_forked(p, ts->o.loop, 0, err, retry);
}

/* Every queued request fails (templates are given up, or stopping). */
static void fail_queue(mv_templates_t *ts)
{
    mv_freq_t *r;

    while ((r = ts->queue)) {
        ts->queue = r->next;
        fail_request(ts, r, -ECANCELED, true);
    }
}

/* A FORK went to template t (debug: with `forked`, the request's two ends). */
static void asked(const mv_templates_t *ts, const mv_template_t *t, const mv_freq_t *r)
{
    mv_debug(ts->o.log, "fork_asked", MV_I("template", t->gen), MV_I("slot", r->body.slot));
}

/* Hands the queue to the serving template while it is ready. */
static void dispatch(mv_templates_t *ts)
{
    mv_freq_t *r;

    while ((r = ts->queue) && ts->serving && ts->serving->state == MV_T_READY) {
        ts->queue = r->next;
        asked(ts, ts->serving, r);
        mv_template_send(ts->serving, r);
    }
}

static int dup_in(mv_freq_t *r, int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);

    if (d < 0)
        return -errno;
    r->fds[r->nfds++] = d;
    return 0;
}

/* The request sent at once with the caller's fds (mv_template_send_now): nothing queued
 * before it, the template ready. The flags say which fds go, as for the copies below. */
static bool send_now(mv_template_t *t, mv_freq_t *r, const mv_fork_spec_t *s)
{
    int fds[MV_ARRAY_LEN(r->fds)], n = 0;
    uint32_t flags = 0;

    fds[n++] = s->out_fd;
    for (int i = 0; i < s->nfds; i++)
        fds[n++] = s->fds[i];
    if (s->cgroup_dir_fd >= 0) {
        flags |= MVW_FORK_CGROUP_DIR;
        fds[n++] = s->cgroup_dir_fd;
    }
    if (s->cgroup_procs_fd >= 0) {
        flags |= MVW_FORK_CGROUP_PROCS;
        fds[n++] = s->cgroup_procs_fd;
    }
    r->body.flags |= flags;
    if (mv_template_send_now(t, r, fds, n))
        return true;
    r->body.flags &= ~flags;
    return false;
}

static int t_fork(void *self, mv_proc_t *p, const mv_fork_spec_t *s)
{
    mv_templates_t *ts = self;
    mv_freq_t *r, **pp;
    int err = 0;

    if (ts->off || ts->stopping)
        return -ECANCELED;
    if (s->nfds < 0 || s->nfds > (int)MVW_FORK_MAX_FDS)
        return -EMFILE;
    r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->p = p;
    r->id = ++ts->next_id;
    r->body.slot = (uint32_t)s->slot;
    r->body.nfds = (uint32_t)s->nfds;
    r->queued_ns = uv_hrtime();
    if (!ts->queue && ts->serving && send_now(ts->serving, r, s)) {
        asked(ts, ts->serving, r);
        return 0;
    }
    err = dup_in(r, s->out_fd);
    for (int i = 0; err == 0 && i < s->nfds; i++)
        err = dup_in(r, s->fds[i]);
    if (err == 0 && s->cgroup_dir_fd >= 0) {
        r->body.flags |= MVW_FORK_CGROUP_DIR;
        err = dup_in(r, s->cgroup_dir_fd);
    }
    if (err == 0 && s->cgroup_procs_fd >= 0) {
        r->body.flags |= MVW_FORK_CGROUP_PROCS;
        err = dup_in(r, s->cgroup_procs_fd);
    }
    if (err < 0) {
        mv_freq_free(r);
        return err;
    }
    for (pp = &ts->queue; *pp;)
        pp = &(*pp)->next;
    *pp = r;
    dispatch(ts);
    return 0;
}

/* Takes p's request out of a list (not sent, or its template gone) and frees it. */
static bool drop_request(mv_freq_t **list, mv_proc_t *p)
{
    for (mv_freq_t **pp = list; *pp; pp = &(*pp)->next)
        if ((*pp)->p == p) {
            mv_freq_t *r = *pp;
            *pp = r->next;
            mv_freq_free(r);
            return true;
        }
    return false;
}

static void t_cancel(void *self, mv_proc_t *p)
{
    mv_templates_t *ts = self;

    if (drop_request(&ts->queue, p) || drop_request(&ts->unanswered, p))
        return;
    for (mv_template_t *t = ts->all; t; t = t->link)
        for (mv_freq_t *r = t->sent; r; r = r->next)
            if (r->p == p) {
                r->p = NULL; /* sent: a child that comes is killed */
                return;
            }
}

/* Given up after a crash loop (fall_back) is for good until a reload: workers whose options
 * were copied while templates served are exec'd from then on. A stop or a fatal exit is not
 * "given up": those starts are cancelled (t_fork), the run is ending. */
static bool t_usable(const void *self)
{
    const mv_templates_t *ts = self;

    return !ts->gave_up || ts->stopping;
}

const mv_forker_t *mv_templates_forker(mv_templates_t *ts)
{
    return ts->started && !ts->off && !ts->stopping ? &ts->forker : NULL;
}

/* ---- giving up ---- */

static void retire_all(mv_templates_t *ts)
{
    for (mv_template_t *t = ts->all, *next; t; t = next) {
        next = t->link;
        mv_template_retire(t);
    }
    ts->serving = ts->next = NULL;
}

static void fall_back(mv_templates_t *ts, const char *why)
{
    if (ts->off)
        return;
    ts->off = ts->gave_up = true;
    mv_warn(ts->o.log, "template_fallback", MV_S("reason", why),
            MV_S("msg", "templates given up: workers are started by exec from now on"));
    uv_timer_stop(&ts->backoff);
    retire_all(ts);
    fail_queue(ts);
}

/* ---- what a template reports ---- */

static void check_memory(mv_templates_t *ts, mv_template_t *t)
{
    const mv_config_t *cfg = ts->o.cfg;
    int64_t mem = mv_template_mem(t);

    if (t != ts->serving || ts->next || t->state != MV_T_READY || ts->stopping)
        return;
    switch (mv_tpolicy_memory(mem, t->at_ready, cfg->limits.memory_soft, cfg->limits.enforce)) {
    case MV_TMEM_OK: break;
    case MV_TMEM_RECYCLE:
        mv_info(ts->o.log, "template_recycle", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
                MV_S("reason", "soft_limit"), MV_I("mem", mem), MV_I("forks", (long long)t->forks));
        start_template(ts);
        break;
    case MV_TMEM_TOO_BIG:
        if (!ts->said_big)
            mv_warn(ts->o.log, "template_over_soft_limit", MV_I("template", t->gen),
                    MV_I("mem", mem), MV_I("soft", cfg->limits.memory_soft),
                    MV_S("msg", "the template is over the soft limit from its start: a new one "
                                "would be as big, so it is kept (its workers are charged only "
                                "what they touch themselves)"));
        ts->said_big = true;
        break;
    case MV_TMEM_OBSERVED:
        if (!ts->said_observed)
            mv_info(ts->o.log, "would_recycle", MV_I("template", t->gen), MV_I("mem", mem),
                    MV_S("reason", "soft_limit"));
        ts->said_observed = true;
        break;
    }
}

static void tm_ready(mv_template_t *t)
{
    mv_templates_t *ts = t->data;
    mv_template_t *old = ts->serving;

    if (t == ts->next) { /* the replacement: the old one retires (answering what it has) */
        ts->serving = t;
        ts->next = NULL;
        if (old) {
            ts->replaced++;
            mv_template_retire(old);
        }
    }
    dispatch(ts);
    check_memory(ts, t);
}

static void tm_forked(mv_template_t *t, mv_freq_t *r, int pid, int err, bool in_cgroup)
{
    mv_templates_t *ts = t->data;
    mv_proc_t *p = r->p;
    bool hopeless = pid <= 0 && mv_tpolicy_fork_hopeless(err), lied = false;

    mv_debug(ts->o.log, "forked", MV_I("template", t->gen), MV_I("slot", r->body.slot),
             MV_I("pid", pid), MV_I("us", (long long)((uv_hrtime() - r->queued_ns) / 1000)),
             MV_S("cgroup", in_cgroup ? "born_in" : "joins"),
             MV_S("fds", r->direct ? "direct" : "copied"));
    mv_freq_free(r);
    if (pid > 0) {
        ts->streak = 0;
        ts->forks++;
    } else {
        ts->failed++;
        mv_error(ts->o.log, "template_fork_failed", MV_I("template", t->gen),
                 MV_I("pid", t->proc.pid), MV_S("error", strerror(err)));
    }
    if (hopeless) /* before the answer: the slot's next start is an exec */
        fall_back(ts, "the template cannot fork here");
    if (!p && pid > 0)
        lied = reap_orphan(ts, pid) == -ECHILD;
    if (p) {
        p->in_cgroup = in_cgroup;
        lied =
            mv_proc_forked(p, ts->o.loop, pid, pid > 0 ? 0 : -err, hopeless) == -ECHILD && pid > 0;
    }
    if (lied) { /* refused, never signalled (proc.h): the template goes */
        mv_error(ts->o.log, "template_protocol_error", MV_I("template", t->gen),
                 MV_I("pid", t->proc.pid), MV_I("child", pid),
                 MV_S("error", "FORKED names a process that is not memvisor's child, or one it "
                               "has already"));
        mv_template_kill(t);
        return;
    }
    check_memory(ts, t);
}

static void tm_memory(mv_template_t *t)
{
    check_memory(t->data, t);
}

static void backoff_cb(uv_timer_t *h)
{
    mv_templates_t *ts = h->data;

    if (!ts->off && !ts->stopping && !ts->serving)
        start_template(ts);
}

static void tm_gone(mv_template_t *t, mv_tgone_t *g)
{
    mv_templates_t *ts = t->data;
    bool current = t == ts->serving || t == ts->next;
    mv_tgone_facts_t f = {g->asked || !current, g->fatal_exit, g->hopeless, g->unsupported,
                          ts->streak};
    mv_tplan_t plan =
        mv_tpolicy_gone(&f, ts->o.cfg->worker.backoff_min, ts->o.cfg->worker.backoff_max);
    mv_freq_t *r, **pp = &ts->unanswered;

    /* What it did not answer stays where a cancel finds it until it is handed back: the plan
     * below can stop the run (a fatal exit, a crash_limit), which lets go of those workers. */
    while (*pp)
        pp = &(*pp)->next;
    *pp = g->unanswered;
    g->unanswered = NULL;
    if (t == ts->serving) { /* its replacement, if one is starting, serves once ready */
        ts->serving = ts->next;
        ts->next = NULL;
    }
    if (t == ts->next)
        ts->next = NULL;
    if (ts->stopping)
        plan.kind = MV_TPLAN_NOTHING;
    else
        ts->streak = plan.streak;
    switch (plan.kind) {
    case MV_TPLAN_NOTHING: break;
    case MV_TPLAN_RESPAWN:
        if (ts->serving) /* its replacement was on its way already */
            break;
        if (plan.delay_ms == 0)
            start_template(ts);
        else
            uv_timer_start(&ts->backoff, backoff_cb, plan.delay_ms, 0);
        break;
    case MV_TPLAN_FALLBACK: fall_back(ts, g->unsupported ? "unsupported" : "crash_limit"); break;
    case MV_TPLAN_FATAL:
        mv_error(ts->o.log, g->hopeless ? "template_spawn_failed" : "fatal_exit",
                 MV_I("template", t->gen), MV_I("pid", t->proc.pid), MV_I("status", g->status),
                 MV_S("msg", g->hopeless ? "the worker command cannot be started: the run ends"
                                         : "the template exited with the fatal code: not "
                                           "respawned; the run ends"));
        ts->off = true;
        uv_timer_stop(&ts->backoff);
        fail_queue(ts);
        ts->ev->on_fatal(ts->arg);
        break;
    }
    /* What it did not answer: those workers start again at once (through the next
     * template, or by exec); a child it made meanwhile finds its channel closed. */
    while ((r = ts->unanswered)) {
        ts->unanswered = r->next;
        fail_request(ts, r, -ECONNRESET, true);
    }
}

static void tm_closed(mv_template_t *t)
{
    mv_templates_t *ts = t->data;

    for (mv_template_t **pp = &ts->all; *pp; pp = &(*pp)->link)
        if (*pp == t) {
            *pp = t->link;
            break;
        }
    mv_template_free(t);
    part_closed(ts);
}

static const mv_template_events_t template_events = {tm_ready, tm_forked, tm_memory, tm_gone,
                                                     tm_closed};

/* A new template: the serving one, or (while one serves) its replacement. */
static void start_template(mv_templates_t *ts)
{
    mv_template_t *t;

    if (ts->next) /* a replacement is on its way already */
        return;
    t = mv_template_new(&ts->o, ++ts->gen, &template_events, ts);
    if (!t) {
        fall_back(ts, "out of memory");
        return;
    }
    t->link = ts->all;
    ts->all = t;
    ts->open++;
    if (ts->serving)
        ts->next = t;
    else
        ts->serving = t;
    mv_template_start(t);
}

/* ---- public ---- */

/* Whether this kernel gives pidfds (Linux 5.3; valgrind 3.19 does not know the call either):
 * forked workers are watched through them. Without, templates are given up at once. */
static bool pidfds_work(mv_templates_t *ts)
{
    int fd = pidfd_open(getpid(), 0);

    if (fd >= 0) {
        close(fd);
        return true;
    }
    ts->off = true;
    mv_warn(ts->o.log, "template_unsupported", MV_S("error", strerror(errno)),
            MV_S("msg", "no pidfd_open (Linux 5.3) to watch forked workers: workers are "
                        "started by exec"));
    return false;
}

int mv_templates_start(mv_templates_t *ts, const mv_worker_opts_t *o,
                       const mv_templates_events_t *ev, void *arg)
{
    memset(ts, 0, sizeof *ts);
    ts->o = *o;
    ts->o.forker = NULL;
    ts->ev = ev;
    ts->arg = arg;
    ts->forker = (mv_forker_t){t_fork, t_cancel, t_usable, ts};
    uv_timer_init(o->loop, &ts->backoff);
    ts->backoff.data = ts;
    ts->open = 1; /* the timer */
    ts->started = true;
    if (!pidfds_work(ts))
        return 0;
    start_template(ts);
    return 0;
}

void mv_templates_reconfigure(mv_templates_t *ts, const mv_config_t *cfg, char *const *argv)
{
    ts->o.cfg = cfg;
    if (argv)
        ts->o.argv = argv;
    if (ts->gave_up && !ts->stopping) {
        mv_info(ts->o.log, "template_retry", MV_S("reason", "reload"),
                MV_S("msg", "templates given up before: trying again with the new configuration"));
        ts->off = ts->gave_up = false;
        ts->streak = 0;
        start_template(ts);
        return;
    }
    if (!ts->started || ts->off || ts->stopping)
        return;
    if (ts->serving)
        mv_info(ts->o.log, "template_recycle", MV_I("template", ts->serving->gen),
                MV_I("pid", ts->serving->proc.pid), MV_S("reason", "reload"));
    if (ts->next) /* started from the old configuration: replaced in turn */
        mv_template_retire(ts->next);
    ts->next = NULL;
    start_template(ts);
}

void mv_templates_stop(mv_templates_t *ts, bool graceful)
{
    if (!ts->started || ts->stopping)
        return;
    ts->stopping = true;
    uv_timer_stop(&ts->backoff);
    fail_queue(ts);
    for (mv_template_t *t = ts->all, *next; t; t = next) {
        next = t->link;
        if (graceful) {
            mv_template_retire(t);
        } else {
            t->asked = true;
            mv_template_kill(t);
        }
    }
    ts->serving = ts->next = NULL;
}

static void backoff_closed_cb(uv_handle_t *h)
{
    part_closed(h->data);
}

void mv_templates_close(mv_templates_t *ts, void (*cb)(void *arg), void *arg)
{
    mv_templates_stop(ts, false);
    ts->closing = true;
    ts->closed_cb = cb;
    ts->closed_arg = arg;
    for (mv_template_t *t = ts->all, *next; t; t = next) {
        next = t->link;
        t->asked = true;
        /* A retiring one with a fork in flight answers it before it exits: the child of a
         * request cancelled meanwhile (a slot's replacement asked for as the batch ended) is
         * then killed and reaped as the template's (reap_orphan), not left to find its cgroup
         * gone and the orphan reaper. Its retire deadline (kill_timeout) bounds the wait. */
        if (t->state == MV_T_RETIRING && t->sent && t->deadline_ms)
            continue;
        mv_template_kill(t); /* retiring ones that still run */
    }
    uv_close((uv_handle_t *)&ts->backoff, backoff_closed_cb);
}

bool mv_templates_keeps(const mv_templates_t *ts, int pid)
{
    for (const mv_template_t *t = ts->all; t; t = t->link)
        if (t->sent || (t->proc.forked && t->proc.pid == pid)) /* sent; or handed over */
            return true;
    for (const orphan_t *o = ts->orphans; o; o = o->next)
        if (o->p.pid == pid)
            return true;
    return false;
}

void mv_templates_view(const mv_templates_t *ts, mv_template_view_t *v)
{
    mv_template_t *t = ts->serving ? ts->serving : ts->next;
    const mv_reading_t *r = NULL;

    memset(v, 0, sizeof *v);
    v->on = ts->started;
    v->fallback = ts->off;
    v->forks = ts->forks;
    v->replaced = ts->replaced;
    v->failed = ts->failed;
    v->mem = v->usage = v->priv = v->rss = v->peak = -1;
    if (!t)
        return;
    if (t->state != MV_T_DEAD && t->state != MV_T_PREPARING)
        r = mv_template_read(t);
    v->pid = t->proc.pid;
    v->gen = t->gen;
    v->state = mv_tstate_name(t->state);
    v->age_s = t->spawned_ms ? (double)(mv_now_ms() - t->spawned_ms) / 1000.0 : 0.0;
    if (r) {
        v->mem = mv_template_mem(t);
        v->usage = r->usage;
        v->priv = r->priv;
        v->rss = r->rss;
        v->peak = t->peak;
    }
}
