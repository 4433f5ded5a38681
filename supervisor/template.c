/*
 * template: one warm template process (see template.h).
 */
#include "template.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cgasync.h"

#define CTL_MAX_MESSAGE 4096 /* the template sends small fixed-size messages only */
/* How long a gone template's cgroup waits for its last children to leave it (a v1 join can
 * wait ~10 ms in the kernel, more on a busy host) before what is left is killed. */
#define JOIN_PATIENCE_MS 500

static void reap(mv_template_t *t);
static void arm(mv_template_t *t);

/* A template handed over to memvisor at its start, until a template adopts it. */
static mv_handoff_t offered = {-1, -1, -1, 0};

const char *mv_tstate_name(mv_tstate_t s)
{
    static const char *const names[] = {"preparing", "starting", "ready", "retiring", "dead"};

    return (unsigned)s < MV_ARRAY_LEN(names) ? names[s] : "?";
}

void mv_freq_free(mv_freq_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    free(r);
}

/* ---- handles ---- */

static void part_closed(mv_template_t *t)
{
    if (--t->open == 0)
        t->ev->on_closed(t);
}

static void handle_closed_cb(uv_handle_t *h)
{
    part_closed(h->data);
}

static void owner_closed(void *owner)
{
    part_closed(owner);
}

/* A handed-over template not adopted after all: killed and reaped in the thread pool (its
 * exit can take a while on a loaded host, and a copy of a big caller has much to unmap). */
typedef struct drop_job {
    mv_job_t job;
    mv_handoff_t h;
} drop_job_t;

static void drop_work(mv_job_t *j)
{
    mv_handoff_drop(&((drop_job_t *)j)->h);
}

static void drop_done(mv_job_t *j, void *owner, int cancelled)
{
    (void)owner;
    if (cancelled) /* the loop is closing: it goes here */
        mv_handoff_drop(&((drop_job_t *)j)->h);
}

static void drop_handoff(mv_template_t *t)
{
    drop_job_t *d = t->handoff.pid > 0 ? malloc(sizeof *d) : NULL;

    if (d) {
        d->h = t->handoff;
        if (mv_job_queue(t->o.loop, &d->job, drop_work, drop_done, NULL) == 0) {
            mv_handoff_init(&t->handoff);
            return;
        }
        free(d);
    }
    mv_handoff_drop(&t->handoff); /* no child to wait for (or no memory): here */
}

/* Closes every handle; on_closed follows. */
static void close_all(mv_template_t *t)
{
    if (t->closing)
        return;
    t->closing = true;
    if (t->cg_job) { /* dropped while its cgroup was being made: the job removes it */
        mv_job_detach(t->cg_job);
        t->cg_job = NULL;
    }
    drop_handoff(t); /* not adopted yet: nobody else will */
    if (t->has_cg) { /* dropped while the handed-over template moved in: reap() never ran */
        t->has_cg = false;
        mv_cg_remove_async_patient(t->o.loop, t->o.log, &t->cg, JOIN_PATIENCE_MS);
    }
    mv_chan_close(&t->out);
    mv_proc_close(&t->proc);
    if (t->ctl_open) { /* off epoll at once: the fd can close now */
        t->ctl_open = false;
        uv_close((uv_handle_t *)&t->ctlpoll, handle_closed_cb);
    }
    if (t->ctl[0] >= 0)
        close(t->ctl[0]);
    t->ctl[0] = -1;
    if (t->ctl[1] >= 0)
        close(t->ctl[1]);
    t->ctl[1] = -1;
    if (t->notify_open) {
        t->notify_open = false;
        uv_close((uv_handle_t *)&t->notify, handle_closed_cb);
    }
    uv_close((uv_handle_t *)&t->timer, handle_closed_cb);
}

void mv_template_free(mv_template_t *t)
{
    if (!t)
        return;
    mv_buf_free(&t->rbuf);
    mv_buf_free(&t->wbuf);
    free(t);
}

/* ---- memory ---- */

const mv_reading_t *mv_template_read(mv_template_t *t)
{
    mv_reading_t r;

    if (!t->meter_ok || mv_meter_read(&t->meter, &r) < 0)
        return t->have ? &t->last : NULL;
    if (r.priv < 0 && t->have) { /* gone, its cgroup not: its last own figures */
        r.priv = t->last.priv;
        r.rss = t->last.rss;
        r.fds = t->last.fds;
    }
    t->last = r;
    t->have = true;
    t->read_ns = uv_hrtime();
    t->peak = MV_MAX(t->peak, MV_MAX(r.usage, r.peak));
    return &t->last;
}

int64_t mv_template_mem(const mv_template_t *t)
{
    return t->have ? mv_reading_limit_metric(&t->last, t->o.cfg->limits.metric) : -1;
}

/* ---- the control channel: writing ---- */

/* Sends what is queued. A FORK's fds go with the sendmsg that starts at its first byte, and
 * that sendmsg stops before the next FORK's, so no read of the template's can take two
 * messages' fds at once. 0, or -errno (the channel is broken). */
static int ctl_flush(mv_template_t *t)
{
    while (mv_buf_unread(&t->wbuf) > 0) {
        mv_freq_t *a = t->attach, *next;
        bool with = a && a->at == t->wpos;
        uint64_t limit = t->wpos + mv_buf_unread(&t->wbuf);
        union {
            char b[CMSG_SPACE(sizeof a->fds)];
            struct cmsghdr align;
        } cm;
        struct iovec iov;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t r;

        next = with ? a->next : a;
        if (next && next->at < limit)
            limit = next->at;
        iov = (struct iovec){mv_buf_head(&t->wbuf), (size_t)(limit - t->wpos)};
        if (with) {
            struct cmsghdr *c;

            memset(&cm, 0, sizeof cm);
            mh.msg_control = cm.b;
            mh.msg_controllen = CMSG_SPACE((size_t)a->nfds * sizeof(int));
            c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN((size_t)a->nfds * sizeof(int));
            memcpy(CMSG_DATA(c), a->fds, (size_t)a->nfds * sizeof(int));
        }
        r = sendmsg(t->ctl[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r < 0)
            return -errno;
        mv_buf_consume(&t->wbuf, (size_t)r);
        t->wpos += (uint64_t)r;
        if (with) { /* in flight now: the kernel holds them */
            for (int i = 0; i < a->nfds; i++)
                close(a->fds[i]);
            a->nfds = 0;
            a->fds_sent = true;
            t->attach = a->next;
        }
    }
    t->ctl_writable = mv_buf_unread(&t->wbuf) > 0;
    return 0;
}

static void ctl_cb(uv_poll_t *h, int status, int events);

static void ctl_watch(mv_template_t *t)
{
    int events = UV_READABLE | (t->ctl_writable ? UV_WRITABLE : 0);

    /* uv_poll_start takes the fd off epoll and puts it back even for the same events: two
     * system calls at each FORK sent and each answer read, so only a change restarts it. */
    if (t->ctl_open && events != t->ctl_events) {
        uv_poll_start(&t->ctlpoll, events, ctl_cb);
        t->ctl_events = events;
    }
}

/* Something the template did or did not do that the protocol does not allow: killed. */
static void broken(mv_template_t *t, const char *what)
{
    mv_error(t->o.log, "template_protocol_error", MV_I("template", t->gen),
             MV_I("pid", t->proc.pid), MV_S("error", what));
    mv_template_kill(t);
}

/* Queues a message (and, for a FORK, notes where its fds go) and sends what it can. */
static void ctl_send(mv_template_t *t, uint16_t type, uint64_t id, const void *body, size_t len,
                     mv_freq_t *with)
{
    uint8_t hdr[MVW_HEADER_SIZE];
    int r;

    mvw_put_header(hdr, type, 0, id, (uint32_t)len);
    if (with) {
        with->at = t->wpos + mv_buf_unread(&t->wbuf);
        if (!t->attach)
            t->attach = with;
    }
    if (mv_buf_append(&t->wbuf, hdr, sizeof hdr) < 0 || mv_buf_append(&t->wbuf, body, len) < 0) {
        broken(t, "out of memory for the control channel");
        return;
    }
    r = ctl_flush(t);
    if (r < 0) {
        mv_error(t->o.log, "template_channel_failed", MV_I("template", t->gen),
                 MV_I("pid", t->proc.pid), MV_S("error", strerror(-r)));
        mv_template_kill(t);
        return;
    }
    ctl_watch(t);
}

void mv_template_send(mv_template_t *t, mv_freq_t *r)
{
    mv_freq_t **pp = &t->sent;

    while (*pp)
        pp = &(*pp)->next;
    r->next = NULL;
    *pp = r;
    r->asked_ms = mv_now_ms();
    ctl_send(t, MVW_MSG_FORK, r->id, &r->body, sizeof r->body, r);
    arm(t);
}

/*
 * A FORK sent at once with the caller's own fds: the kernel takes its references to them in
 * the sendmsg, so no copies are made (three fcntl and three close a worker). Only when
 * nothing waits to be sent before it (the stream stays in order) and the first byte goes now
 * (the fds go with it); the rest of a short write is queued as any message. false: nothing
 * was sent or queued, the fds are untouched, and the caller sends it the ordinary way.
 */
bool mv_template_send_now(mv_template_t *t, mv_freq_t *r, const int *fds, int nfds)
{
    uint8_t msg[MVW_HEADER_SIZE + sizeof r->body];
    union {
        char b[CMSG_SPACE(sizeof r->fds)];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {msg, sizeof msg};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b};
    struct cmsghdr *c;
    mv_freq_t **pp = &t->sent;
    ssize_t n;

    if (t->state != MV_T_READY || !t->ctl_open || t->closing || mv_buf_unread(&t->wbuf) > 0 ||
        t->attach || nfds < 1 || nfds > (int)MV_ARRAY_LEN(r->fds))
        return false;
    mvw_put_header(msg, MVW_MSG_FORK, 0, r->id, (uint32_t)sizeof r->body);
    memcpy(msg + MVW_HEADER_SIZE, &r->body, sizeof r->body);
    memset(&cm, 0, sizeof cm);
    mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    do
        n = sendmsg(t->ctl[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n <= 0) /* EAGAIN, or an error the ordinary way meets and reports */
        return false;
    if ((size_t)n < sizeof msg && mv_buf_append(&t->wbuf, msg + n, sizeof msg - (size_t)n) < 0) {
        broken(t, "out of memory for the control channel"); /* the stream is cut: it goes */
        t->wpos += (uint64_t)n;
    } else {
        t->wpos += (uint64_t)n;
        t->ctl_writable = mv_buf_unread(&t->wbuf) > 0;
        ctl_watch(t);
    }
    while (*pp)
        pp = &(*pp)->next;
    r->next = NULL;
    *pp = r;
    r->asked_ms = mv_now_ms();
    r->at = t->wpos - (uint64_t)n;
    r->nfds = 0;
    r->fds_sent = r->direct = true;
    arm(t);
    return true;
}

/* ---- the control channel: reading ---- */

static void on_hello(mv_template_t *t, const struct mvw_msg *m)
{
    struct mvw_hello hello;
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 0, 0, MVW_MODE_TEMPLATE};

    memcpy(&hello, m->payload, sizeof hello);
    t->hello = true;
    if (hello.version < 2 || !(hello.flags & MVW_HELLO_TEMPLATE)) {
        /* An older library, or a process with threads: its workers are exec'd instead. */
        mv_warn(t->o.log, "template_unsupported", MV_I("template", t->gen),
                MV_I("pid", t->proc.pid), MV_I("version", hello.version),
                MV_S("msg", hello.version < 2 ? "the worker's library speaks protocol 1: "
                                                "workers are started by exec"
                                              : "the worker cannot serve as a template (it has "
                                                "threads at mvw_open): workers are started by "
                                                "exec"));
        t->unsupported = true;
        mv_template_retire(t);
        return;
    }
    go.version = MV_MIN(hello.version, MVW_PROTOCOL_VERSION);
    ctl_send(t, MVW_MSG_GO, 0, &go, sizeof go, NULL);
}

static void on_ready(mv_template_t *t, const struct mvw_msg *m)
{
    struct mvw_template ready;
    const mv_reading_t *r;

    memcpy(&ready, m->payload, sizeof ready);
    t->features = ready.features;
    t->state = MV_T_READY;
    t->ready_ms = mv_now_ms();
    r = mv_template_read(t);
    t->at_ready = r ? mv_template_mem(t) : -1;
    mv_info(t->o.log, "template_ready", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
            MV_I("ms", (long long)(t->ready_ms - t->spawned_ms)), MV_I("mem", t->at_ready),
            MV_I("usage", r ? r->usage : -1),
            MV_S("thread_id", (ready.features & MVW_TEMPLATE_TID) ? "set" : "inherited"));
    arm(t);
    t->ev->on_ready(t);
}

static void on_forked(mv_template_t *t, const struct mvw_msg *m)
{
    mv_freq_t *r = t->sent;
    struct mvw_forked ans;

    if (!r || r->id != m->h.task || !r->fds_sent)
        return broken(t, "FORKED for no FORK in flight");
    memcpy(&ans, m->payload, sizeof ans);
    if ((ans.pid > 0) == (ans.error != 0) || ans.pid < 0)
        return broken(t, "FORKED with neither a pid nor an error");
    t->sent = r->next;
    if (ans.pid > 0)
        t->forks++;
    /* A fork leaves the template as it was, but for what its own code does before (a
     * template that grows): read at most every MV_TEMPLATE_READ_MS, not at each of hundreds of
     * forks a second (three reads); its cgroup's soft-limit notification comes at once. */
    if (!t->have || uv_hrtime() - t->read_ns >= MV_TEMPLATE_READ_MS * 1000000ull)
        mv_template_read(t);
    arm(t);
    t->ev->on_forked(t, r, ans.pid, ans.error, (ans.flags & MVW_FORKED_IN_CGROUP) != 0);
}

/* Handles every whole message received. */
static void ctl_process(mv_template_t *t)
{
    struct mvw_msg m;
    long used;

    while (!t->closing && t->state != MV_T_DEAD) {
        used = mvw_decode(mv_buf_head(&t->rbuf), mv_buf_unread(&t->rbuf), CTL_MAX_MESSAGE,
                          MVW_FROM_WORKER, &m);
        if (used == 0)
            return;
        if (used < 0) {
            mv_buf_reset(&t->rbuf);
            return broken(t, "malformed message");
        }
        mv_buf_consume(&t->rbuf, (size_t)used);
        if (m.h.type == MVW_MSG_HELLO && !t->hello && t->state == MV_T_STARTING)
            on_hello(t, &m);
        else if (m.h.type == MVW_MSG_TEMPLATE && t->hello && t->state == MV_T_STARTING)
            on_ready(t, &m);
        else if (m.h.type == MVW_MSG_FORKED && t->state >= MV_T_READY)
            on_forked(t, &m);
        else if (t->state != MV_T_RETIRING || t->unsupported)
            return broken(t, "unexpected message");
    }
}

/* Reads what is there. 1 at EOF or on an error, 0 otherwise. */
static int ctl_read(mv_template_t *t)
{
    for (;;) {
        ssize_t n;

        if (mv_buf_reserve(&t->rbuf, CTL_MAX_MESSAGE) < 0)
            return 1;
        n = recv(t->ctl[0], t->rbuf.data + t->rbuf.len, t->rbuf.cap - t->rbuf.len, MSG_DONTWAIT);
        if (n > 0) {
            t->rbuf.len += (size_t)n;
            ctl_process(t);
            if (t->closing || !t->ctl_open)
                return 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

static void ctl_cb(uv_poll_t *h, int status, int events)
{
    mv_template_t *t = h->data;

    if (status < 0 || ((events & UV_READABLE) && ctl_read(t))) {
        /* EOF: the template closed its end; its exit follows. */
        if (t->ctl_open)
            uv_poll_stop(&t->ctlpoll);
        t->ctl_events = 0;
        return;
    }
    if ((events & UV_WRITABLE) && ctl_flush(t) < 0) {
        mv_template_kill(t);
        return;
    }
    ctl_watch(t);
}

/* ---- deadlines ---- */

static void deadline_cb(uv_timer_t *h)
{
    mv_template_t *t = h->data;

    if (t->state == MV_T_RETIRING) {
        mv_warn(t->o.log, "kill_timeout", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
                MV_I("after_ms", t->o.cfg->worker.kill_timeout), MV_S("action", "SIGKILL"));
    } else {
        mv_warn(t->o.log, t->state == MV_T_STARTING ? "template_ready_timeout" : "template_stuck",
                MV_I("template", t->gen), MV_I("pid", t->proc.pid),
                MV_I("after_ms", t->o.cfg->worker.ready_timeout), MV_S("action", "SIGKILL"));
    }
    mv_template_kill(t);
}

/* The deadline of the state, or of the oldest unanswered request. */
static void arm(mv_template_t *t)
{
    const mv_config_t *cfg = t->o.cfg;
    uint64_t at = 0;

    if (t->closing)
        return;
    if (t->state == MV_T_STARTING)
        at = t->spawned_ms + (uint64_t)cfg->worker.ready_timeout;
    else if (t->state == MV_T_READY && t->sent)
        at = t->sent->asked_ms + (uint64_t)cfg->worker.ready_timeout;
    else if (t->state == MV_T_RETIRING && t->deadline_ms)
        at = t->deadline_ms;
    if (at == 0) {
        uv_timer_stop(&t->timer);
        return;
    }
    uv_timer_start(&t->timer, deadline_cb, at > mv_now_ms() ? at - mv_now_ms() : 0, 0);
}

/* ---- exit ---- */

static void proc_exit(void *owner, int64_t status, int term_signal)
{
    mv_template_t *t = owner;

    /* Answers and output written just before the exit are in the pipes: first those. */
    if (t->ctl_open)
        ctl_read(t);
    mv_chan_drain(&t->out);
    reap(t);
}

static const mv_proc_events_t proc_events = {proc_exit, owner_closed, NULL, NULL};

static void out_line(void *owner, const char *stream, const void *line, size_t n)
{
    mv_template_t *t = owner;

    mv_info(t->o.log, "output", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
            MV_S("stream", stream), MV_B("line", line, n));
}

static const mv_chan_events_t out_events = {.on_output = out_line, .on_closed = owner_closed};

/* Gone: what it did not answer goes back to the owner, then everything is let go. */
static void reap(mv_template_t *t)
{
    uint64_t ooms = 0;
    mv_tgone_t g = {
        .asked = t->asked,
        .ready = t->ready_ms != 0,
        .hopeless = t->hopeless,
        .unsupported = t->unsupported,
        .status = t->proc.term_signal ? -t->proc.term_signal : (int)t->proc.status,
    };
    bool oom = t->has_cg && mv_cg_oom_kills(&t->cg, &ooms) == 0 && ooms > 0;

    g.fatal_exit =
        !t->spawn_call && !t->proc.term_signal && t->proc.status == t->o.cfg->worker.fatal_exit;
    t->state = MV_T_DEAD;
    uv_timer_stop(&t->timer);
    if (t->meter_ok)
        mv_template_read(t);
    if (!t->spawn_call)
        mv_log(t->o.log, t->asked && !oom ? MV_LVL_INFO : MV_LVL_WARN, "template_exit",
               MV_I("template", t->gen), MV_I("pid", t->proc.pid),
               t->proc.term_signal ? MV_S("signal", strsignal(t->proc.term_signal))
                                   : MV_I("status", t->proc.status),
               MV_S("reason", oom        ? "kernel_oom"
                              : t->asked ? "retired"
                                         : "crash"),
               MV_I("forks", (long long)t->forks), MV_I("peak", t->peak),
               MV_I("age_ms", (long long)(t->spawned_ms ? mv_now_ms() - t->spawned_ms : 0)));
    for (mv_freq_t *r = t->sent; r; r = r->next) { /* the unsent ones' fds go now */
        for (int i = 0; i < r->nfds; i++)
            close(r->fds[i]);
        r->nfds = 0;
    }
    g.unanswered = t->sent;
    t->sent = t->attach = NULL;
    if (t->meter_ok)
        mv_meter_close(&t->meter);
    t->meter_ok = false;
    if (t->notify_open)
        uv_poll_stop(&t->notify);
    if (t->has_cg) {
        t->has_cg = false;
        /* A worker it forked last may still be writing itself into its own cgroup (v1): it
         * leaves this one by itself. Only what is left after that is killed. */
        mv_cg_remove_async_patient(t->o.loop, t->o.log, &t->cg, JOIN_PATIENCE_MS);
    }
    t->ev->on_gone(t, &g);
    close_all(t);
}

/* ---- starting ---- */

static void notify_cb(uv_poll_t *h, int status, int events)
{
    mv_template_t *t = h->data;

    if (status >= 0 && t->state != MV_T_DEAD && mv_cg_notified(&t->cg) > 0 && mv_template_read(t))
        t->ev->on_memory(t);
}

static void watch_cgroup(mv_template_t *t)
{
    if (!t->has_cg || t->cg.notify_fd < 0 ||
        uv_poll_init(t->o.loop, &t->notify, t->cg.notify_fd) < 0)
        return;
    t->notify.data = t;
    t->notify_open = true;
    t->open++;
    uv_poll_start(&t->notify, t->cg.version == MV_CG_V2 ? UV_PRIORITIZED : UV_READABLE, notify_cb);
}

static void spawn_failed(mv_template_t *t, const char *call, const char *error, bool hopeless)
{
    mv_error(t->o.log, "template_spawn_failed", MV_I("template", t->gen),
             MV_S("command", t->o.argv[0]), MV_S("call", call), MV_S("error", error));
    t->spawn_call = call;
    t->hopeless = hopeless;
    reap(t);
}

/* It runs: its control channel and its output are watched from now on. */
static int watch_channels(mv_template_t *t, const char **call)
{
    int r;

    t->spawned_ms = mv_now_ms();
    *call = "uv_poll_init";
    r = uv_poll_init(t->o.loop, &t->ctlpoll, t->ctl[0]);
    if (r < 0)
        return r;
    t->ctlpoll.data = t;
    t->ctl_open = true;
    t->open++;
    ctl_watch(t);
    return mv_chan_start(&t->out, call);
}

/* Its process, exec'd like a worker's (fds 3...: the listen sockets, then its channel). */
static int spawn(mv_template_t *t, const char **call)
{
    int fds[MV_LISTEN_MAX + 1], nfds = 0, nl = t->o.listen ? t->o.listen->n : 0, r;
    mv_chan_stdio_t io;
    mv_worker_env_t extra = {.heap_at = -1};
    char **env;

    *call = "socketpair";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t->ctl) < 0)
        return -errno;
    *call = "pipe";
    r = mv_chan_prepare(&t->out, &io);
    if (r < 0)
        return r;
    for (int i = 0; i < nl; i++)
        fds[nfds++] = t->o.listen->l[i].fd;
    fds[nfds++] = t->ctl[1];
    env = mv_worker_env(&t->o, 0, &extra);
    *call = "uv_spawn";
    r = !env ? -ENOMEM
             : mv_proc_spawn(&t->proc, t->o.loop,
                             &(mv_proc_spec_t){
                                 .argv = t->o.argv,
                                 .env = env,
                                 .self_exe = t->o.self_exe,
                                 .stdio = io.st,
                                 .fds = fds,
                                 .nfds = nfds,
                                 .cgroup_procs_fd = t->has_cg ? t->cg.procs_fd : -1,
                                 .listen_pid = nl > 0,
                                 .own_session = true,
                                 /* [worker] user/group: its workers are forked with them */
                                 .set_creds = *t->o.cfg->worker.user || *t->o.cfg->worker.group,
                                 .uid = t->o.cfg->worker.uid,
                                 .gid = t->o.cfg->worker.gid,
                             });
    free(env);
    mv_chan_spawned(&t->out);
    close(t->ctl[1]);
    t->ctl[1] = -1;
    if (r < 0)
        return r;
    return watch_channels(t, call);
}

/* The handed-over template becomes ours: its output and control channel are the ones it was
 * given, its pidfd watches it (handoff.h). Its cgroup was joined already. */
static int adopt(mv_template_t *t, const char **call)
{
    mv_chan_stdio_t io;
    int r;

    *call = "pipe";
    r = mv_chan_prepare(&t->out, &io);
    if (r < 0)
        return r;
    /* Our end of its output is the pipe it writes to already (the one made here goes). */
    *call = "dup3";
    r = dup3(t->handoff.out, t->out.fd_out[0], O_CLOEXEC) < 0 ? -errno : 0;
    mv_chan_spawned(&t->out);
    if (r < 0)
        return r;
    *call = "uv_poll_init";
    r = mv_proc_adopt(&t->proc, t->o.loop, t->handoff.pid, t->handoff.pidfd);
    if (r < 0)
        return r;
    t->ctl[0] = t->handoff.ctl;
    close(t->handoff.out);
    mv_handoff_init(&t->handoff); /* every part is t's now */
    mv_info(t->o.log, "template_adopted", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
            MV_S("cgroup", t->has_cg ? t->cg.path : "none"));
    return watch_channels(t, call);
}

static void start_process(mv_template_t *t)
{
    const char *call;
    int r = t->handoff.pid > 0 ? adopt(t, &call) : spawn(t, &call);

    if (r < 0 && t->proc.pid <= 0) {
        spawn_failed(t, call, uv_strerror(r), mv_policy_spawn_hopeless(r));
        return;
    }
    t->state = MV_T_STARTING;
    arm(t);
    if (r < 0) {
        mv_error(t->o.log, "template_spawn_failed", MV_I("template", t->gen),
                 MV_I("pid", t->proc.pid), MV_S("call", call), MV_S("error", uv_strerror(r)));
        mv_template_kill(t);
        return;
    }
    t->meter_ok = mv_meter_open(&t->meter, t->proc.pid, t->has_cg ? &t->cg : NULL,
                                t->o.cfg->limits.memory_soft) == 0;
    watch_cgroup(t);
    mv_info(t->o.log, "template_spawn", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
            MV_S("cgroup", t->has_cg ? t->cg.path : "none"));
}

/* Moving a handed-over template into its cgroup: a write to cgroup.procs may wait for an RCU
 * grace period (5-15 ms), so in the thread pool. */
typedef struct move_job {
    mv_job_t job;
    int procs, pid, err;
} move_job_t;

static void move_work(mv_job_t *j)
{
    move_job_t *m = (move_job_t *)j;
    char text[16];
    int n = snprintf(text, sizeof text, "%d", m->pid);

    m->err = write(m->procs, text, (size_t)n) == n ? 0 : -errno;
}

static void move_done(mv_job_t *j, void *owner, int cancelled)
{
    move_job_t *m = (move_job_t *)j;
    mv_template_t *t = owner;

    close(m->procs);
    if (!t)
        return; /* closed meanwhile: close_all dropped the handoff */
    t->cg_job = NULL;
    if (cancelled || m->err < 0) {
        /* Not in its cgroup, its figures would be wrong: a template is started instead. */
        mv_warn(t->o.log, "template_adopt_failed", MV_I("template", t->gen),
                MV_I("pid", t->handoff.pid), MV_S("call", "cgroup.procs"),
                MV_S("error", cancelled ? "cancelled" : strerror(-m->err)),
                MV_S("msg", "the handed-over template is killed; the command starts instead"));
        drop_handoff(t);
    }
    start_process(t);
}

static void move_into_cgroup(mv_template_t *t)
{
    move_job_t *m = calloc(1, sizeof *m);

    if (m)
        m->procs = fcntl(t->cg.procs_fd, F_DUPFD_CLOEXEC, 3);
    if (!m || m->procs < 0) {
        free(m);
        spawn_failed(t, "cgroup.procs", "cannot move the handed-over template", false);
        return;
    }
    m->pid = t->handoff.pid;
    if (mv_job_queue(t->o.loop, &m->job, move_work, move_done, t) < 0) {
        close(m->procs);
        free(m);
        spawn_failed(t, "uv_queue_work", "cannot queue the cgroup job", false);
        return;
    }
    t->cg_job = &m->job;
}

static void cg_created(void *owner, int result, mv_cgw_t *cg, const char *why)
{
    mv_template_t *t = owner;

    t->cg_job = NULL;
    if (result < 0) {
        spawn_failed(t, "cgroup", why, false);
        return;
    }
    t->cg = *cg;
    t->has_cg = true;
    if (t->handoff.pid > 0)
        move_into_cgroup(t);
    else
        start_process(t);
}

void mv_template_offer(mv_handoff_t *h)
{
    mv_handoff_drop(&offered);
    offered = *h;
    mv_handoff_init(h);
}

void mv_template_offer_drop(void)
{
    mv_handoff_drop(&offered);
}

void mv_template_start(mv_template_t *t)
{
    const mv_cg_t *cg = t->o.cg;

    if (offered.pid > 0) { /* the first template started: the one handed over */
        t->handoff = offered;
        mv_handoff_init(&offered);
    }

    if (!cg || cg->version == MV_CG_OFF) {
        start_process(t);
        return;
    }
    if (mv_cg_create_async(t->o.loop, t->o.log, cg, MV_CG_TEMPLATE_SLOT, t->gen, cg_created, t,
                           &t->cg_job) < 0)
        spawn_failed(t, "uv_queue_work", "cannot queue the cgroup job", false);
}

/* ---- commands ---- */

void mv_template_retire(mv_template_t *t)
{
    t->asked = true;
    if (t->state == MV_T_PREPARING) { /* nothing runs yet: dropped */
        t->state = MV_T_DEAD;
        t->ev->on_gone(t, &(mv_tgone_t){.asked = true});
        close_all(t);
        return;
    }
    if (t->state != MV_T_STARTING && t->state != MV_T_READY)
        return;
    t->state = MV_T_RETIRING;
    t->deadline_ms = mv_now_ms() + (uint64_t)t->o.cfg->worker.kill_timeout;
    ctl_send(t, MVW_MSG_STOP, 0, NULL, 0, NULL);
    arm(t);
}

void mv_template_kill(mv_template_t *t)
{
    int r;

    if (t->state == MV_T_DEAD || t->state == MV_T_PREPARING) {
        if (t->state == MV_T_PREPARING)
            mv_template_retire(t);
        return;
    }
    t->asked = t->asked || t->state == MV_T_RETIRING;
    t->state = MV_T_RETIRING;
    t->deadline_ms = 0;
    arm(t);
    r = mv_proc_signal(&t->proc, SIGKILL);
    if (r < 0 && r != -ESRCH)
        mv_error(t->o.log, "signal_failed", MV_I("template", t->gen), MV_I("pid", t->proc.pid),
                 MV_I("signal", SIGKILL), MV_S("error", uv_strerror(r)));
}

mv_template_t *mv_template_new(const mv_worker_opts_t *o, uint32_t gen,
                               const mv_template_events_t *ev, void *data)
{
    mv_template_t *t = calloc(1, sizeof *t);

    if (!t)
        return NULL;
    t->o = *o;
    t->o.forker = NULL;
    t->gen = gen;
    t->ev = ev;
    t->data = data;
    t->state = MV_T_PREPARING;
    t->ctl[0] = t->ctl[1] = -1;
    t->at_ready = -1;
    mv_handoff_init(&t->handoff);
    mv_meter_init(&t->meter);
    t->cg.procs_fd = t->cg.notify_fd = -1;
    uv_timer_init(o->loop, &t->timer);
    t->timer.data = t;
    mv_chan_init(&t->out, o->loop, &(mv_chan_opts_t){MV_PROTO_NONE, 16 * 1024, "", false},
                 &out_events, t);
    mv_proc_init(&t->proc, &proc_events, t);
    t->open = 3; /* the timer, the output and the process */
    return t;
}
