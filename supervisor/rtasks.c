/*
 * rtasks: tasks from a Redis stream (rtasks.h): the connection and its setup, reading,
 * claiming, refreshing, the stream's figures, closing. The entries held are rheld.c's.
 */
#include "rtasks_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "escalate.h"

#define POLL_MIN_MS    50
#define POLL_MAX_MS    1000
#define CLOSE_WAIT_MS  10000 /* at most, at the end, for the connection to come back */
#define REFRESH_CHUNK  1000  /* entries per refresh call */
#define ROUTED_REFRESH 32    /* routed streams refreshed per tick */

static void pump(mv_tasks_t *t);

/* ---- errors ---- */

/* The run cannot go on with this source: said once, then the run stops (exit 3). */
void mv__rt_fatal(mv_rtasks_t *rt, const char *what, const char *err)
{
    if (rt->t->error)
        return;
    mv_error(rt->log, "redis_failed", MV_S("source", rt->name), MV_S("call", what),
             MV_S("error", err));
    rt->t->error = -EIO;
    rt->t->paused = true;
    rt->t->on_input(rt->t->arg);
}

/* Replies that a new connection may not get (a server loading its data, a busy script, a
 * group or script that vanished with a restart): reconnect. Others end the run. */
static bool transient(const char *err)
{
    static const char *const codes[] = {"LOADING",  "BUSY ",   "NOSCRIPT",   "MASTERDOWN",
                                        "TRYAGAIN", "NOGROUP", "CLUSTERDOWN"};

    for (size_t i = 0; i < MV_ARRAY_LEN(codes); i++)
        if (strncmp(err, codes[i], strlen(codes[i])) == 0)
            return true;
    return false;
}

void mv__rt_error(mv_rtasks_t *rt, const char *what, const redisReply *r)
{
    char why[600];

    snprintf(why, sizeof why, "%s: %s", what, r->str);
    if (transient(r->str)) {
        mv_warn(rt->log, "redis_retry", MV_S("source", rt->name), MV_S("error", why));
        mv_rconn_drop(&rt->conn, why);
        return;
    }
    mv__rt_fatal(rt, what, r->str);
}

bool mv__rt_is_error(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR;
}

/* An entry id "MS-SEQ" as a pair that orders like the stream. */
static void eid_of(const char *eid, uint64_t v[2])
{
    char *end;

    v[0] = strtoull(eid, &end, 10);
    v[1] = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

/* Claimed, or found pending for this consumer: it may be held here already (a reply that
 * was lost with the connection, or an entry whose refresh came late). */
static void take_claimed(void *arg, const mv_rgot_t *g)
{
    mv_rtasks_t *rt = arg;

    if (!mv__rt_held_find(rt, g->stream, g->eid))
        mv__rt_take(rt, g);
}

/* A new entry: the group hands them out in id order, so one not after the last is a group
 * that went back in time (a Redis restored from a snapshot, a replica that lagged), and may
 * be one held here already. */
static void take_read(void *arg, const mv_rgot_t *g)
{
    mv_rtasks_t *rt = arg;
    uint64_t v[2];

    eid_of(g->eid, v);
    if (v[0] < rt->last_eid[0] || (v[0] == rt->last_eid[0] && v[1] <= rt->last_eid[1])) {
        take_claimed(arg, g);
        return;
    }
    rt->last_eid[0] = v[0];
    rt->last_eid[1] = v[1];
    mv__rt_take(rt, g);
}

/* Tasks wanted now: free slots, less what is already asked for. Only the slots of workers
 * that are ready: one still starting (the start gate lets max_starting start at once) would
 * hold its task here while other hosts have workers free. */
static int64_t wanted(const mv_rtasks_t *rt)
{
    int64_t slots =
        rt->t->ready_slots < 0 ? rt->capacity : MV_MIN(rt->capacity, rt->t->ready_slots);

    return slots - (int64_t)mv_tasks_outstanding(rt->t) - rt->reading - rt->claiming - rt->routing;
}

static void poll_cb(uv_timer_t *tm)
{
    mv_rtasks_t *rt = tm->data;

    rt->poll_wait = false;
    pump(rt->t);
}

static void read_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;
    int n;

    rt->reading = 0;
    if (!r)
        return; /* lost: the reconnect reads again (and `mine` finds what was delivered) */
    if (mv__rt_is_error(r)) {
        mv__rt_error(rt, "XREADGROUP", r);
        return;
    }
    if ((n = mv_rscript_entries(r, false, NULL, 0, take_read, rt)) < 0) {
        mv__rt_fatal(rt, "XREADGROUP", "a reply that is no list of stream entries");
        return;
    }
    if (n == 0) {
        /* Nothing new: look again later, and see whether the batch is over. */
        rt->poll_ms = rt->poll_ms ? MV_MIN(rt->poll_ms * 2, POLL_MAX_MS) : POLL_MIN_MS;
        rt->poll_wait = true;
        uv_timer_start(&rt->poll, poll_cb, (uint64_t)rt->poll_ms, 0);
        mv__rt_stat(rt);
        return;
    }
    rt->poll_ms = 0;
    rt->t->on_input(rt->t->arg);
    pump(rt->t);
}

static void routed_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;
    int n;

    rt->routing = 0;
    if (!r)
        return;
    if (mv__rt_is_error(r)) {
        mv__rt_error(rt, "routed", r);
        return;
    }
    if ((n = mv_rscript_routed(r, take_claimed, rt)) < 0) {
        mv__rt_fatal(rt, "routed", "a reply that is no list of routed streams' entries");
        return;
    }
    rt->routed_fresh = true;
    if (n > 0)
        rt->t->on_input(rt->t->arg);
    pump(rt->t);
}

/* Tasks escalated beyond other memvisors' ceilings, from the routed streams this one can
 * serve (and orphans no live memvisor can, to quarantine): before each read of the task
 * stream while there are routed streams, so they do not wait behind it. */
static bool read_routed(mv_rtasks_t *rt, int64_t want)
{
    char count[24], idle[24];
    const char *argv[] = {
        "EVALSHA", rt->sha[MV_RS_ROUTED], "3",           rt->need_key, rt->hosts_key, rt->esc_key,
        rt->group, rt->consumer,          rt->ceiling_s, idle,         count};

    if (rt->routed <= 0 || rt->routed_fresh || rt->routing)
        return false;
    snprintf(count, sizeof count, "%lld", (long long)want);
    snprintf(idle, sizeof idle, "%lld", (long long)rt->claim_idle);
    if (mv_rconn_command(&rt->conn, routed_cb, rt, (int)MV_ARRAY_LEN(argv), argv, NULL) < 0)
        return false;
    rt->routing = want;
    return true;
}

static void pump(mv_tasks_t *t)
{
    mv_rtasks_t *rt = t->src_data;
    char count[24];
    int64_t want = wanted(rt);
    const char *argv[] = {"XREADGROUP", "GROUP",   rt->group,      rt->consumer, "COUNT",
                          count,        "STREAMS", rt->url.stream, ">"};

    if (!rt->ready || rt->closing || t->error || t->eof || rt->reading || rt->routing ||
        rt->poll_wait || want <= 0)
        return;
    if (read_routed(rt, want))
        return;
    rt->routed_fresh = false;
    snprintf(count, sizeof count, "%lld", (long long)want);
    if (mv_rconn_command(&rt->conn, read_cb, rt, (int)MV_ARRAY_LEN(argv), argv, NULL) == 0)
        rt->reading = want;
}

/* ---- the periodic calls: refresh, claim, stat ---- */

static void refresh_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;
    held_t *h;

    rt->refreshing--;
    if (!r)
        return;
    if (mv__rt_is_error(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        if (mv__rt_is_error(r))
            mv__rt_error(rt, "refresh", r);
        return;
    }
    /* [stream, the entries of it this consumer no longer owns...] */
    for (size_t i = 1; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            !(h = mv__rt_held_find(rt, r->element[0]->str, r->element[i]->str)))
            continue;
        if (!h->gone && h->state != H_SENT)
            mv_warn(rt->log, "redis_task_taken_over", MV_I("task", (long long)h->task_id),
                    MV_S("entry", h->eid),
                    MV_S("msg", "another memvisor took this task over (this one was silent for "
                                "claim_idle): both may run it, its result is written once"));
        h->gone = true;
    }
}

/* Refreshes the entries held of one stream. */
static void refresh_stream(mv_rtasks_t *rt, const char *stream)
{
    held_t *h = rt->held;

    while (h) {
        mv_rargs_t a = {0};
        int k = 0;

        mv_rargs_evalsha(&a, rt->sha[MV_RS_REFRESH], 1);
        mv_rargs_str(&a, stream);
        mv_rargs_str(&a, rt->group);
        mv_rargs_str(&a, rt->consumer);
        for (; h && k < REFRESH_CHUNK; h = h->next)
            if (!h->gone && strcmp(h->stream, stream) == 0) {
                mv_rargs_str(&a, h->eid);
                k++;
            }
        if (k && !a.oom && mv_rconn_command(&rt->conn, refresh_cb, rt, a.n, a.v, a.len) == 0)
            rt->refreshing++;
        mv_rargs_free(&a);
    }
}

/* The task stream's entries, then each routed stream's (few: one per limit tasks were
 * escalated to; beyond ROUTED_REFRESH of them at once, the rest wait for the next tick). */
static void refresh(mv_rtasks_t *rt)
{
    const char *routed[ROUTED_REFRESH];
    int n = 0, i;

    if (rt->refreshing)
        return;
    refresh_stream(rt, rt->url.stream);
    for (held_t *h = rt->held; h && n < ROUTED_REFRESH; h = h->next) {
        if (h->gone || strcmp(h->stream, rt->url.stream) == 0)
            continue;
        for (i = 0; i < n && strcmp(routed[i], h->stream) != 0; i++)
            ;
        if (i == n)
            routed[n++] = h->stream;
    }
    for (i = 0; i < n; i++)
        refresh_stream(rt, routed[i]);
}

static void claim_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;
    int n;

    rt->claiming = 0;
    if (!r)
        return;
    if (mv__rt_is_error(r)) {
        mv__rt_error(rt, "claim", r);
        return;
    }
    if ((n = mv_rscript_entries(r, true, rt->cursor, sizeof rt->cursor, take_claimed, rt)) < 0) {
        mv__rt_fatal(rt, "claim", "a reply that is no list of claimed entries");
        return;
    }
    if (n > 0)
        rt->t->on_input(rt->t->arg);
    pump(rt->t);
}

/* Takes over what others left idle for claim_idle, as many as there are free slots. */
static void claim(mv_rtasks_t *rt, mv_rscript_t which)
{
    char idle[24], count[24];
    int64_t want = which == MV_RS_MINE ? 100000 : wanted(rt);
    mv_rargs_t a = {0};

    if (rt->claiming || want <= 0 || rt->t->eof)
        return;
    snprintf(idle, sizeof idle, "%lld", (long long)rt->claim_idle);
    snprintf(count, sizeof count, "%lld", (long long)want);
    mv_rargs_evalsha(&a, rt->sha[which], which == MV_RS_CLAIM ? 2 : 1);
    mv_rargs_str(&a, rt->url.stream);
    if (which == MV_RS_CLAIM)
        mv_rargs_str(&a, rt->esc_key);
    mv_rargs_str(&a, rt->group);
    mv_rargs_str(&a, rt->consumer);
    if (which == MV_RS_CLAIM) {
        mv_rargs_str(&a, idle);
        mv_rargs_str(&a, rt->cursor);
    }
    mv_rargs_str(&a, count);
    if (!a.oom && mv_rconn_command(&rt->conn, claim_cb, rt, a.n, a.v, a.len) == 0)
        rt->claiming = which == MV_RS_MINE ? 1 : want;
    mv_rargs_free(&a);
}

static void stat_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;
    mv_tasks_t *t = rt->t;

    rt->stating = false;
    if (!r)
        return;
    if (mv__rt_is_error(r)) {
        mv__rt_error(rt, "stat", r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4)
        return;
    for (size_t i = 0; i < 4; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return;
    rt->length = r->element[0]->integer;
    rt->pending = r->element[1]->integer;
    rt->routed = r->element[2]->integer;
    rt->routed_len = r->element[3]->integer;
    rt->stat_ms = mv_now_ms();
    /* Acknowledged entries are deleted: an empty stream is a batch with nothing left to run,
     * here or anywhere (a task routed to a bigger memvisor included: this one stays until
     * it is done, or quarantines it once no live memvisor can take it). */
    if (!rt->follow && !t->eof && !rt->closing && rt->length == 0 && rt->routed_len == 0 &&
        rt->nheld == 0 && mv_tasks_outstanding(t) == 0 && !rt->reading && !rt->claiming &&
        !rt->routing) {
        mv_info(rt->log, "redis_drained", MV_S("stream", rt->name),
                MV_I("taken", (long long)rt->taken));
        t->eof = true;
        t->on_input(t->arg);
    }
}

void mv__rt_stat(mv_rtasks_t *rt)
{
    char idle[24];
    const char *argv[] = {
        "EVALSHA",     rt->sha[MV_RS_STAT], "3",          rt->url.stream, rt->need_key,
        rt->hosts_key, rt->group,           rt->consumer, rt->ceiling_s,  idle};

    snprintf(idle, sizeof idle, "%lld", (long long)rt->claim_idle);

    if (!rt->ready || rt->stating)
        return;
    if (mv_rconn_command(&rt->conn, stat_cb, rt, (int)MV_ARRAY_LEN(argv), argv, NULL) == 0)
        rt->stating = true;
}

static void tick_cb(uv_timer_t *tm)
{
    mv_rtasks_t *rt = tm->data;

    if (!rt->ready || rt->t->error)
        return;
    refresh(rt);
    if (!rt->closing)
        claim(rt, MV_RS_CLAIM);
    mv__rt_stat(rt);
}

/* ---- the connection ---- */

static void ready(mv_rtasks_t *rt)
{
    uint64_t down = rt->down_since ? mv_now_ms() - rt->down_since : 0;

    rt->ready = true;
    rt->t->paused = rt->t->error != 0;
    if (rt->ups++ == 0)
        mv_info(rt->log, "redis_connected", MV_S("source", rt->name), MV_S("group", rt->group),
                MV_S("consumer", rt->consumer),
                MV_S("results", *rt->results_stream ? rt->results_stream : "(file)"),
                MV_I("claim_idle_ms", rt->claim_idle));
    else
        mv_info(rt->log, "redis_reconnected", MV_S("source", rt->name),
                MV_I("down_ms", (long long)down), MV_I("held", (long long)rt->nheld));
    rt->down_since = 0;
    rt->down_said = false;
    for (held_t *h = rt->held; h; h = h->next)
        if (h->state == H_SEND)
            mv__rt_send(rt, h);
    if (rt->closing) {
        mv__rt_maybe_close(rt);
        return;
    }
    if (rt->ups > 1)
        claim(rt, MV_RS_MINE); /* what a lost reply delivered here */
    tick_cb(&rt->tick);
    uv_timer_start(&rt->tick, tick_cb, (uint64_t)MV_MAX(rt->claim_idle / 3, 20),
                   (uint64_t)MV_MAX(rt->claim_idle / 3, 20));
    pump(rt->t);
    rt->t->on_input(rt->t->arg);
}

static void setup_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    setup_slot_t *s = priv;
    mv_rtasks_t *rt = s->rt;

    if (!r)
        return;
    if (mv__rt_is_error(r)) {
        if (s->i == MV_RS_COUNT && strncmp(r->str, "BUSYGROUP", 9) == 0) {
            /* the group exists: fine */
        } else if (!rt->setup_failed) {
            rt->setup_failed = true;
            mv__rt_error(rt,
                         s->i == MV_RS_COUNT       ? "XGROUP CREATE"
                         : s->i == MV_RS_COUNT + 1 ? "AUTH"
                                                   : "SCRIPT LOAD",
                         r);
            return;
        }
    } else if (s->i < MV_RS_COUNT) {
        if (r->type != REDIS_REPLY_STRING) {
            mv__rt_fatal(rt, "SCRIPT LOAD", "a reply that is no script hash");
            return;
        }
        snprintf(rt->sha[s->i], sizeof rt->sha[s->i], "%s", r->str);
    }
    if (--rt->setup_left == 0 && !rt->setup_failed)
        ready(rt);
}

static void setup_send(mv_rtasks_t *rt, int i, int argc, const char **argv)
{
    rt->slots[i] = (setup_slot_t){rt, i};
    if (mv_rconn_command(&rt->conn, setup_cb, &rt->slots[i], argc, argv, NULL) == 0)
        rt->setup_left++;
    else
        rt->setup_failed = true;
}

/* Connected: AUTH, the scripts, the group (made at 0: tasks added before it are read). */
static void up_cb(void *arg)
{
    mv_rtasks_t *rt = arg;

    rt->setup_left = 0;
    rt->setup_failed = false;
    if (*rt->url.pass) {
        const char *auth[] = {"AUTH", rt->url.user, rt->url.pass};
        if (*rt->url.user)
            setup_send(rt, MV_RS_COUNT + 1, 3, auth);
        else
            setup_send(rt, MV_RS_COUNT + 1, 2, (const char *[]){"AUTH", rt->url.pass});
    }
    for (int i = 0; i < MV_RS_COUNT; i++)
        setup_send(rt, i, 3, (const char *[]){"SCRIPT", "LOAD", mv_rscript_text((mv_rscript_t)i)});
    setup_send(rt, MV_RS_COUNT, 6,
               (const char *[]){"XGROUP", "CREATE", rt->url.stream, rt->group, "0", "MKSTREAM"});
    if (rt->setup_failed)
        mv_rconn_drop(&rt->conn, "could not send the setup commands");
}

static void down_cb(void *arg, const char *why)
{
    mv_rtasks_t *rt = arg;
    uint64_t now = mv_now_ms();

    rt->ready = false;
    rt->t->paused = true;
    rt->reading = rt->claiming = rt->routing = 0;
    rt->refreshing = 0;
    rt->stating = false;
    for (held_t *h = rt->held; h; h = h->next)
        if (h->state == H_SENT)
            h->state = H_SEND;
    if (!rt->down_since)
        rt->down_since = now;
    if (!rt->down_said) {
        rt->down_said = true;
        mv_warn(rt->log, rt->ups ? "redis_disconnected" : "redis_unreachable",
                MV_S("source", rt->name), MV_S("error", why), MV_I("retry_ms", rt->retry_ms),
                MV_S("msg", "no new task starts until Redis answers; results wait in memory"));
    } else {
        mv_debug(rt->log, "redis_connect_failed", MV_S("source", rt->name), MV_S("error", why),
                 MV_I("down_ms", (long long)(now - rt->down_since)));
    }
    if (now - rt->down_since >= (uint64_t)rt->retry_ms && !rt->closing) {
        char msg[700];
        snprintf(msg, sizeof msg, "no connection for %.1f s ([tasks] redis_retry): %s",
                 (double)(now - rt->down_since) / 1000.0, why);
        mv__rt_fatal(rt, "connect", msg);
    }
    if (rt->closing)
        mv__rt_maybe_close(rt);
}

/* ---- closing ---- */

static void handle_closed_cb(uv_handle_t *hd)
{
    mv_rtasks_t *rt = hd->data;

    rt->handles--;
}

static void conn_closed_cb(void *arg)
{
    mv_rtasks_t *rt = arg;
    uv_timer_t *timers[] = {&rt->tick, &rt->poll, &rt->bound};

    for (size_t i = 0; i < MV_ARRAY_LEN(timers); i++)
        if (!uv_is_closing((uv_handle_t *)timers[i]))
            uv_close((uv_handle_t *)timers[i], handle_closed_cb);
}

static void give_up(mv_rtasks_t *rt, const char *why);

void mv__rt_maybe_close(mv_rtasks_t *rt)
{
    if (!rt->closing || rt->conn_closing)
        return;
    /* After a failure that ends the run, a script sent again would fail again: no waiting. */
    if (rt->nheld > 0 && !rt->gave_up && rt->t->error)
        give_up(rt, "the run ends on a Redis error: these entries stay pending; another "
                    "memvisor runs them after claim_idle, their results written once");
    if (rt->nheld > 0 && !rt->gave_up)
        return;
    rt->conn_closing = true;
    if (rt->ready && rt->nheld == 0) {
        /* Nothing of this consumer is left: forget its name (only if it owns nothing). */
        const char *argv[] = {"EVALSHA",     rt->sha[MV_RS_DROP], "2",         rt->url.stream,
                              rt->hosts_key, rt->group,           rt->consumer};
        mv_rconn_command(&rt->conn, NULL, NULL, (int)MV_ARRAY_LEN(argv), argv, NULL);
    }
    mv_rconn_close(&rt->conn);
}

/* What is held is let go without a word to Redis: it stays pending there, and others take
 * it over after claim_idle. Scripts in flight still get their reply (or NULL). */
static void give_up(mv_rtasks_t *rt, const char *why)
{
    held_t *h, *next;

    if (rt->nheld)
        mv_warn(rt->log, "redis_left_pending", MV_S("source", rt->name),
                MV_I("entries", (long long)rt->nheld), MV_S("msg", why));
    rt->gave_up = true;
    for (h = rt->held; h; h = next) {
        next = h->next;
        if (h->state != H_SENT)
            mv__rt_held_free(rt, h);
    }
}

/* The connection did not come back in time at the end. */
static void bound_cb(uv_timer_t *tm)
{
    mv_rtasks_t *rt = tm->data;

    give_up(rt, "no answer from Redis at the end: these entries stay pending; another "
                "memvisor runs them after claim_idle, their results written once");
    mv__rt_maybe_close(rt);
}

static void rt_close(mv_tasks_t *t)
{
    mv_rtasks_t *rt = t->src_data;
    mv_task_t *task;
    uint64_t released = 0;

    rt->closing = true;
    uv_timer_stop(&rt->poll); /* the tick goes on refreshing what is still held */
    /* A follower is stopped only on purpose: what it read but did not start is handed back
     * below, so it has no task left (its run ends like a service's). */
    if (rt->follow)
        t->eof = true;
    /* Tasks read but never started go back to the stream for the others, attempts as
     * they were. */
    while ((task = mv_tasks_take(t))) {
        held_t *h = task->ref;
        if (!h) {
            mv_task_free(task);
            continue;
        }
        mv__rt_readd(rt, h, task);
        t->returned++;
        released++;
    }
    rt->released += released;
    if (released)
        mv_info(rt->log, "redis_released", MV_I("tasks", (long long)released),
                MV_S("msg", "handed back to the stream"));
    uv_timer_start(&rt->bound, bound_cb, (uint64_t)MV_MIN(MV_MAX(rt->retry_ms, 1), CLOSE_WAIT_MS),
                   0);
    mv__rt_maybe_close(rt);
}

static void rt_free(mv_tasks_t *t)
{
    mv_rtasks_t *rt = t->src_data;

    if (!rt)
        return;
    while (rt->held)
        mv__rt_held_free(rt, rt->held);
    free(rt);
    t->src_data = NULL;
}

static const mv_tasks_source_t redis_source = {
    .kind = "redis",
    .pump = pump,
    .requeue = mv__rt_requeue,
    .route = mv__rt_route,
    .escalated = mv__rt_escalated,
    .end = mv__rt_end,
    .close = rt_close,
    .free = rt_free,
};

static const mv_rconn_events_t conn_events = {up_cb, down_cb, conn_closed_cb};

/* HOST:PID:START_MS: unique per memvisor, and says where it runs. */
static void name_consumer(mv_rtasks_t *rt)
{
    struct timespec now;

    if (gethostname(rt->host, sizeof rt->host) < 0 || !rt->host[0])
        snprintf(rt->host, sizeof rt->host, "localhost");
    rt->host[sizeof rt->host - 1] = '\0';
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(rt->consumer, sizeof rt->consumer, "%s:%d:%llu", rt->host, (int)getpid(),
             (unsigned long long)now.tv_sec * 1000ULL + (unsigned long long)now.tv_nsec / 1000000);
}

int mv_rtasks_open(mv_tasks_t *t, const mv_rtasks_opts_t *o, char *why, size_t n)
{
    char results_url[1024];
    const char *file;
    mv_rurl_t ru;
    mv_rtasks_t *rt;
    int r;

    mv_tasks_init(t, o->loop, o->max_size, (size_t)MV_MAX(o->capacity, 1), o->on_input, o->arg);
    if ((r = mv_rurl_check_settings(o->source, o->results, why, n)) < 0)
        return r;
    if (!(rt = calloc(1, sizeof *rt)))
        return -ENOMEM;
    mv_rurl_parse(o->source, &rt->url, why, n);
    mv_rurl_results_split(o->results, results_url, sizeof results_url, &file);
    if (*results_url && mv_rurl_parse(results_url, &ru, why, n) == 0)
        snprintf(rt->results_stream, sizeof rt->results_stream, "%s", ru.stream);
    mv_rurl_name(&rt->url, rt->name, sizeof rt->name);
    snprintf(rt->done_key, sizeof rt->done_key, "%s:done", rt->url.stream);
    snprintf(rt->quar_key, sizeof rt->quar_key, "%s:quarantine", rt->url.stream);
    snprintf(rt->need_key, sizeof rt->need_key, "%s:need", rt->url.stream);
    snprintf(rt->hosts_key, sizeof rt->hosts_key, "%s:hosts", rt->url.stream);
    snprintf(rt->esc_key, sizeof rt->esc_key, "%s:escalated", rt->url.stream);
    rt->ceiling = o->ceiling > 0 ? o->ceiling : INT64_MAX;
    snprintf(rt->ceiling_s, sizeof rt->ceiling_s, "%lld", (long long)rt->ceiling);
    snprintf(rt->group, sizeof rt->group, "%s", o->group);
    snprintf(rt->cursor, sizeof rt->cursor, "0-0");
    name_consumer(rt);
    rt->t = t;
    rt->loop = o->loop;
    rt->log = o->log;
    rt->claim_idle = MV_MAX(o->claim_idle, 1);
    rt->retry_ms = o->retry_ms;
    rt->follow = o->follow;
    rt->capacity = MV_MAX(o->capacity, 1);
    rt->max_attempts = o->max_attempts;
    rt->length = rt->pending = -1;
    rt->down_since = mv_now_ms(); /* not up yet: redis_retry counts from the start */
    t->kind = MV_SRC_REDIS;
    t->src = &redis_source;
    t->src_data = rt;
    t->name = rt->name;
    t->paused = true;
    uv_timer_t *timers[] = {&rt->tick, &rt->poll, &rt->bound};
    for (size_t i = 0; i < MV_ARRAY_LEN(timers); i++) {
        uv_timer_init(o->loop, timers[i]);
        timers[i]->data = rt;
        rt->handles++;
    }
    if ((r = mv_rconn_open(&rt->conn, o->loop, &rt->url, &conn_events, rt)) < 0) {
        snprintf(why, n, "%s: cannot set up a connection: %s", rt->name, strerror(-r));
        return r;
    }
    return 0;
}

int mv_rtasks_open_any(mv_tasks_t *t, uv_loop_t *loop, mv_log_t *log, const mv_config_t *cfg,
                       mv_tasks_cb on_input, void *arg, char *why, size_t n)
{
    /* Enough queued tasks to keep every worker's prefetch full twice over (a file); exactly
     * the free slots (a shared stream: what is not read here, another memvisor runs). */
    int capacity = cfg->supervisor.workers * cfg->worker.prefetch;
    mv_esc_cfg_t ec = mv_escalate_cfg(cfg);
    int64_t ceiling = mv_escalate_ceiling(&ec, cfg->limits.memory_hard);
    size_t read_ahead = (size_t)capacity * 2 + 256;
    int r;

    if (mv_rurl_is(cfg->tasks.source))
        return mv_rtasks_open(t,
                              &(mv_rtasks_opts_t){loop, log, cfg->tasks.source, cfg->tasks.results,
                                                  cfg->tasks.group, cfg->tasks.claim_idle,
                                                  cfg->tasks.redis_retry, cfg->tasks.follow,
                                                  capacity, cfg->tasks.max_attempts,
                                                  cfg->tasks.max_size, ceiling, on_input, arg},
                              why, n);
    r = mv_tasks_open(t, loop, cfg->tasks.source, cfg->tasks.max_size, read_ahead, on_input, arg);
    if (r < 0)
        snprintf(why, n, "%s", strerror(-r));
    return r;
}

void mv_rtasks_capacity(mv_tasks_t *t, const mv_config_t *cfg, int workers)
{
    mv_rtasks_t *rt = t->src_data;
    int capacity = MV_MAX(workers * cfg->worker.prefetch, 1);

    if (t->kind != MV_SRC_REDIS || !rt) {
        t->read_ahead = (size_t)capacity * 2 + 256; /* as mv_rtasks_open_any's */
        return;
    }
    rt->capacity = capacity;
    t->read_ahead = (size_t)capacity; /* as mv_tasks_init's in mv_rtasks_open */
    pump(t);
}

void mv_rtasks_attach_results(mv_tasks_t *t, mv_results_t *r)
{
    mv_rtasks_t *rt = t->src_data;

    if (t->kind != MV_SRC_REDIS || !rt)
        return;
    rt->results = r;
    if (*rt->results_stream || r->fd < 0)
        return; /* acknowledged with the result's XADD, or at once (no results at all) */
    rt->wait_file = true;
    r->sync_each = true;
    r->on_written = mv__rt_written;
    r->written_arg = rt;
}

int mv_rtasks_view(const mv_tasks_t *t, mv_rtasks_view_t *v)
{
    const mv_rtasks_t *rt = t->src_data;

    if (t->kind != MV_SRC_REDIS || !rt)
        return -ENOENT;
    *v = (mv_rtasks_view_t){
        .url = rt->name,
        .group = rt->group,
        .consumer = rt->consumer,
        .connected = rt->ready,
        .length = rt->length,
        .pending = rt->pending,
        .age_s = rt->stat_ms ? (double)(mv_now_ms() - rt->stat_ms) / 1000.0 : -1,
        .held = rt->nheld,
        .taken = rt->taken,
        .claimed = rt->claimed,
        .readded = rt->readded,
        .duplicates = rt->duplicates,
    };
    return 0;
}

void mv_rtasks_summary(const mv_tasks_t *t, FILE *out)
{
    const mv_rtasks_t *rt = t->src_data;

    if (t->kind != MV_SRC_REDIS || !rt)
        return;
    fprintf(out,
            "  stream    %s: %llu taken (%llu taken over), %llu re-added, %llu results written "
            "here, %llu dropped as written already%s%s\n",
            rt->name, (unsigned long long)rt->taken, (unsigned long long)rt->claimed,
            (unsigned long long)rt->readded, (unsigned long long)rt->finished,
            (unsigned long long)rt->duplicates, *rt->results_stream ? "; results to " : "",
            rt->results_stream);
}
