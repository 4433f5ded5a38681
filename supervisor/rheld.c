/*
 * rheld: the stream entries a Redis task source holds, from taken to let go (rtasks_int.h):
 * an entry becomes a task (or, when it is none, goes to the quarantine stream); a task that
 * lost an attempt is re-added; a task's final result is written once and its entry
 * acknowledged, at once or once the results file holds the line.
 */
#include "rtasks_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "rentry.h"

/* ---- held records ---- */

held_t *mv__rt_held_new(mv_rtasks_t *rt, const char *stream, const char *eid)
{
    held_t *h = calloc(1, sizeof *h);

    if (!h)
        return NULL;
    h->rt = rt;
    snprintf(h->eid, sizeof h->eid, "%s", eid);
    snprintf(h->stream, sizeof h->stream, "%s", stream ? stream : rt->url.stream);
    h->next = rt->held;
    if (rt->held)
        rt->held->prev = h;
    rt->held = h;
    rt->nheld++;
    return h;
}

void mv__rt_held_free(mv_rtasks_t *rt, held_t *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        rt->held = h->next;
    if (h->next)
        h->next->prev = h->prev;
    rt->nheld--;
    if (h->op == OP_ROUTE && h->task)
        mv_task_free(h->task); /* routed, or left pending in Redis: the stream keeps it */
    redisFreeCommand(h->cmd);
    free(h->msg);
    free(h);
}

held_t *mv__rt_held_find(mv_rtasks_t *rt, const char *stream, const char *eid)
{
    if (!stream)
        stream = rt->url.stream;
    for (held_t *h = rt->held; h; h = h->next)
        if (strcmp(h->eid, eid) == 0 && strcmp(h->stream, stream) == 0)
            return h;
    return NULL;
}

/* ---- taking entries ---- */

/* An entry that is no task: to STREAM:quarantine with why, acknowledged. */
static void bad_entry(mv_rtasks_t *rt, const mv_rgot_t *g, const char *why)
{
    mv_rargs_t a = {0};
    held_t *h;
    int n;

    mv_warn(rt->log, "redis_bad_entry", MV_S("stream", g->stream ? g->stream : rt->name),
            MV_S("entry", g->eid), MV_S("error", why),
            MV_S("msg", "moved to the quarantine stream"), MV_S("quarantine", rt->quar_key));
    if (mv__rt_held_find(rt, g->stream, g->eid) || !(h = mv__rt_held_new(rt, g->stream, g->eid)))
        return;
    mv_rargs_evalsha(&a, rt->sha[MV_RS_BAD], 3);
    mv_rargs_str(&a, h->stream);
    mv_rargs_str(&a, rt->quar_key);
    mv_rargs_str(&a, rt->esc_key);
    mv_rargs_str(&a, rt->group);
    mv_rargs_str(&a, g->eid);
    mv_rargs_str(&a, "entry");
    mv_rargs_str(&a, g->eid);
    mv_rargs_str(&a, "error");
    mv_rargs_str(&a, why);
    mv_rargs_str(&a, "host");
    mv_rargs_str(&a, rt->consumer);
    for (size_t i = 0; i < g->nfv; i++)
        mv_rargs_add(&a, g->fv[i].p, g->fv[i].n);
    n = mv_rargs_format(&a, &h->cmd);
    mv_rargs_free(&a);
    h->op = OP_BAD;
    if (n < 0) {
        mv__rt_held_free(rt, h); /* it stays pending: another memvisor takes it after claim_idle */
        return;
    }
    h->cmdlen = (size_t)n;
    mv__rt_send(rt, h);
}

/* Each time the entry was taken over (delivered more than once) cost an attempt: memvisor
 * cannot know whether the silent one had started it. */
static void charge(mv_rtasks_t *rt, held_t *h, mv_task_t *t, const mv_rgot_t *g)
{
    long long lost = g->deliveries - 1;
    char msg[160];

    for (long long i = 0; i < lost && t->attempts < UINT16_MAX; i++) {
        if (mv_task_note_attempt(t, MV_R_LOST, 0, 0, 0, -1) == 0 && i == lost - 1)
            mv_rscript_consumer_host(g->owner, t->hist[t->nhist - 1].host,
                                     sizeof t->hist[t->nhist - 1].host);
        t->attempts++;
    }
    if (lost > 0)
        mv_info(rt->log, "redis_claimed", MV_I("task", (long long)t->id), MV_S("entry", g->eid),
                MV_S("from", *g->owner ? g->owner : "?"), MV_I("attempts", t->attempts));
    /* Counted as mv_escalate_decide counts: an attempt that ended in an escalation is not. */
    if (t->bad || t->attempts - MV_MIN(t->escalations, t->attempts) < rt->max_attempts)
        return;
    snprintf(msg, sizeof msg, "quarantined after %u attempts; last: %s", t->attempts,
             mv_reason_name(t->nhist ? t->hist[t->nhist - 1].reason : MV_R_LOST));
    if (!(h->msg = strdup(msg)))
        return;
    t->bad = h->msg;
    t->quarantine = true;
}

static void send_route(mv_rtasks_t *rt, held_t *h, mv_task_t *t);

/* Quarantines a task (`bad` from h->msg) with why it needs more than any memvisor gives. */
static void too_big(held_t *h, mv_task_t *t, int64_t highest)
{
    char msg[200];

    if (highest >= 0)
        snprintf(msg, sizeof msg,
                 "quarantined after %u attempts: it needs a hard limit of %lld bytes, more than "
                 "any memvisor seen within claim_idle gives (the highest: %lld)",
                 t->attempts, (long long)t->limit, (long long)highest);
    else
        snprintf(msg, sizeof msg,
                 "quarantined after %u attempts: it needs a hard limit of %lld bytes, and no "
                 "memvisor seen within claim_idle gives that much",
                 t->attempts, (long long)t->limit);
    free(h->msg);
    h->msg = strdup(msg);
    t->bad = h->msg ? h->msg : "quarantined: it needs more memory than any memvisor gives";
    t->quarantine = true;
}

/* An entry of a routed stream no live memvisor can serve: quarantined here, once. */
static void orphan(mv_rtasks_t *rt, held_t *h, mv_task_t *t, const mv_rgot_t *g)
{
    if (t->limit < g->limit)
        t->limit = g->limit;
    mv_warn(rt->log, "redis_route_orphan", MV_I("task", (long long)t->id), MV_S("entry", g->eid),
            MV_S("stream", g->stream), MV_I("limit", g->limit),
            MV_S("msg", "no memvisor seen within claim_idle can give its limit: quarantined"));
    too_big(h, t, -1);
}

static int finish_call(mv_rtasks_t *rt, held_t *h, const mv_task_t *t, const mv_result_t *res);

/* Results to a file alone, resumed: a task whose line the file holds already (a run killed
 * after writing it, before acknowledging its entry) is acknowledged, not run again, so the
 * file keeps one line per task. Its status is not read back: a quarantined task's copy in
 * the quarantine stream is not written here. Whether it was taken care of (t freed). */
static bool in_file(mv_rtasks_t *rt, held_t *h, mv_task_t *t)
{
    mv_result_t res = {.status = MV_ST_OK};
    int n;

    if (!rt->wait_file || !rt->results || !mv_idset_has(&rt->results->done, t->id))
        return false;
    mv_info(rt->log, "redis_result_in_file", MV_I("task", (long long)t->id), MV_S("entry", h->eid),
            MV_S("file", rt->results->path),
            MV_S("msg", "the results file holds its line already: acknowledged, not run again"));
    t->ref = NULL;
    h->task = NULL;
    h->op = OP_FINISH;
    n = finish_call(rt, h, t, &res);
    mv_task_free(t);
    if (n < 0) {
        mv_error(rt->log, "redis_result_lost", MV_I("task", (long long)h->task_id),
                 MV_S("error", "out of memory"),
                 MV_S("msg", "its entry stays pending: another memvisor runs it again"));
        mv__rt_held_free(rt, h);
        return true;
    }
    h->cmdlen = (size_t)n;
    mv__rt_send(rt, h);
    return true;
}

/* An entry read, claimed or found pending here becomes a task in the queue. */
void mv__rt_take(mv_rtasks_t *rt, const mv_rgot_t *g)
{
    mv_task_t *t;
    held_t *h;
    char why[256];
    int rc;

    rc = mv_rentry_decode(g->fv, g->nfv, rt->t->max_size, &t, why, sizeof why);
    if (rc == -EINVAL) {
        bad_entry(rt, g, why);
        return;
    }
    if (rc < 0 || !(h = mv__rt_held_new(rt, g->stream, g->eid))) {
        /* Left pending: it idles out and is taken over (this memvisor included). */
        mv_error(rt->log, "redis_entry_dropped", MV_S("entry", g->eid),
                 MV_S("error", "out of memory"));
        if (rc == 0)
            mv_task_free(t);
        return;
    }
    charge(rt, h, t, g);
    h->task = t;
    h->task_id = t->id;
    h->nhist0 = t->nhist;
    t->ref = h;
    if (rt->closing) {
        mv__rt_readd(rt, h, t); /* arrived after the close: back to the stream at once */
        return;
    }
    rt->taken++;
    rt->claimed += g->deliveries > 1;
    rt->routed_in += g->stream != NULL;
    if (in_file(rt, h, t))
        return;
    if (!t->bad && g->orphan)
        orphan(rt, h, t, g);
    else if (!t->bad && t->limit > rt->ceiling) {
        /* Raised beyond this memvisor's ceiling elsewhere (and re-added at a stop): on to
         * a memvisor that can give it. */
        send_route(rt, h, t);
        return;
    }
    mv_tasks_add(rt->t, t);
}

/* ---- letting entries go: finish, readd, bad ---- */

/* Redis found no live memvisor with the ceiling the task needs: it is quarantined here (the
 * entry is still this memvisor's, unchanged), or at a stop handed back to the stream. */
static void route_none(mv_rtasks_t *rt, held_t *h, int64_t highest)
{
    mv_task_t *t = h->task;

    mv_warn(rt->log, "redis_route_none", MV_I("task", (long long)t->id), MV_S("entry", h->eid),
            MV_I("limit", t->limit), MV_I("highest", highest),
            MV_S("msg", "no memvisor seen within claim_idle can give its limit: quarantined"));
    redisFreeCommand(h->cmd);
    h->cmd = NULL;
    h->op = OP_NONE;
    h->state = H_TAKEN;
    h->nhist0 = t->nhist;
    t->ref = h;
    if (rt->closing) {
        mv__rt_readd(rt, h, t);
        return;
    }
    too_big(h, t, highest);
    mv_tasks_add(rt->t, t);
    rt->t->on_input(rt->t->arg);
}

static void held_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    held_t *h = priv;
    mv_rtasks_t *rt = h->rt;

    if (!r || mv__rt_is_error(r)) {
        h->state = H_SEND; /* sent again after the reconnect */
        if (!r && rt->gave_up)
            mv__rt_held_free(rt, h);
        else if (r)
            mv__rt_error(rt,
                         mv_rscript_name(h->op == OP_FINISH  ? MV_RS_FINISH
                                         : h->op == OP_READD ? MV_RS_READD
                                         : h->op == OP_ROUTE ? MV_RS_ROUTE
                                                             : MV_RS_BAD),
                         r);
        return;
    }
    if (h->op == OP_ROUTE && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        route_none(rt, h, strtoll(r->element[1]->str, NULL, 10));
        return;
    }
    if (h->op == OP_FINISH && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        rt->duplicates++;
        mv_info(rt->log, "redis_result_duplicate", MV_I("task", (long long)h->task_id),
                MV_S("entry", h->eid),
                MV_S("msg", "this task's result was written first by another memvisor, or "
                            "for another entry with the same id: this one is dropped"));
    } else if (h->op == OP_FINISH) { /* 1, or 2: its own, sent again after a lost reply */
        rt->finished++;
    }
    mv__rt_held_free(rt, h);
    if (rt->closing)
        mv__rt_maybe_close(rt);
    else if (rt->nheld == 0 && mv_tasks_outstanding(rt->t) == 0)
        mv__rt_stat(rt);
}

void mv__rt_send(mv_rtasks_t *rt, held_t *h)
{
    h->state = H_SEND;
    if (rt->ready && mv_rconn_formatted(&rt->conn, held_cb, h, h->cmd, h->cmdlen) == 0)
        h->state = H_SENT;
}

/* Sends h's script call: what `a` holds (the script, its keys, its first arguments), then
 * task t's entry fields. Frees `a`. Out of memory the record goes: its entry stays pending
 * as it was in Redis, and idles out to be claimed. */
static void send_with_entry(mv_rtasks_t *rt, held_t *h, mv_rargs_t *a, const mv_task_t *t)
{
    mv_rentry_t e;
    int n = -ENOMEM;

    if (mv_rentry_encode(t, rt->host, &e) == 0) {
        for (int i = 0; i < e.argc; i++)
            mv_rargs_add(a, e.argv[i], e.len[i]);
        n = mv_rargs_format(a, &h->cmd);
    }
    mv_rargs_free(a);
    mv_rentry_free(&e);
    if (n < 0) {
        mv__rt_held_free(rt, h);
        return;
    }
    h->cmdlen = (size_t)n;
    mv__rt_send(rt, h);
}

/* The task leaves this memvisor for the stream: a new entry with its attempts for the old
 * one (in one script). Frees the task. */
void mv__rt_readd(mv_rtasks_t *rt, held_t *h, mv_task_t *t)
{
    mv_rargs_t a = {0};
    char id[24];

    snprintf(id, sizeof id, "%llu", (unsigned long long)t->id);
    mv_rargs_evalsha(&a, rt->sha[MV_RS_READD], 3);
    mv_rargs_str(&a, h->stream);
    mv_rargs_str(&a, rt->done_key);
    mv_rargs_str(&a, rt->esc_key);
    mv_rargs_str(&a, rt->group);
    mv_rargs_str(&a, h->eid);
    mv_rargs_str(&a, rt->consumer);
    mv_rargs_str(&a, id);
    t->ref = NULL;
    h->task = NULL;
    h->op = OP_READD;
    send_with_entry(rt, h, &a, t);
    mv_task_free(t);
}

bool mv__rt_requeue(mv_tasks_t *t, mv_task_t *task)
{
    mv_rtasks_t *rt = t->src_data;
    held_t *h = task->ref;

    if (!h || task->nhist == h->nhist0)
        return false; /* not started: it stays here, at the front */
    mv_info(rt->log, "redis_readd", MV_I("task", (long long)task->id), MV_S("entry", h->eid),
            MV_I("attempts", task->attempts));
    rt->readded++;
    mv__rt_readd(rt, h, task);
    return true;
}

/* The task goes to the routed stream of its limit, for a memvisor that can give it (or,
 * when none can, comes back: route_none). The held record keeps the task until then. */
static void send_route(mv_rtasks_t *rt, held_t *h, mv_task_t *t)
{
    mv_rargs_t a = {0};
    char id[24], lim[24], idle[24], to[ROUTED_MAX + 1];

    snprintf(id, sizeof id, "%llu", (unsigned long long)t->id);
    snprintf(lim, sizeof lim, "%lld", (long long)t->limit);
    snprintf(idle, sizeof idle, "%lld", (long long)rt->claim_idle);
    snprintf(to, sizeof to, "%s:need:%lld", rt->url.stream, (long long)t->limit);
    mv_info(rt->log, "redis_route", MV_I("task", (long long)t->id), MV_S("entry", h->eid),
            MV_I("limit", t->limit), MV_I("ceiling", rt->ceiling), MV_S("to", to),
            MV_I("attempts", t->attempts));
    mv_rargs_evalsha(&a, rt->sha[MV_RS_ROUTE], 6);
    mv_rargs_str(&a, h->stream);
    mv_rargs_str(&a, rt->done_key);
    mv_rargs_str(&a, rt->need_key);
    mv_rargs_str(&a, rt->hosts_key);
    mv_rargs_str(&a, to);
    mv_rargs_str(&a, rt->esc_key);
    mv_rargs_str(&a, rt->group);
    mv_rargs_str(&a, h->eid);
    mv_rargs_str(&a, rt->consumer);
    mv_rargs_str(&a, id);
    mv_rargs_str(&a, lim);
    mv_rargs_str(&a, idle);
    t->ref = NULL;
    h->task = t;
    h->op = OP_ROUTE;
    rt->routed_out++;
    send_with_entry(rt, h, &a, t);
}

/* ---- an escalation kept for a take-over ---- */

static void escalated_cb(mv_rconn_t *c, redisReply *r, void *priv)
{
    mv_rtasks_t *rt = priv;

    (void)c;
    if (mv__rt_is_error(r))
        mv__rt_error(rt, "HSET escalated", r);
}

/* A task's hard limit was raised here while its entry stays held: if this memvisor dies, the
 * memvisor that takes the entry over (claim_idle) reads what it needs to go on at that limit
 * (its attempts, hist, limit and escalations, as a re-added entry would carry them) from the
 * escalated hash, which the claim scripts append to the entry's fields, rather than climbing
 * the ladder again from the stream's first limit. Letting the entry go (finish, readd, route,
 * bad) deletes it. */
void mv__rt_escalated(mv_tasks_t *t, mv_task_t *task)
{
    mv_rtasks_t *rt = t->src_data;
    held_t *h = task->ref;
    mv_rentry_t e;
    json_t *o = NULL;
    char field[ROUTED_MAX + 64], *v = NULL;
    int r = -ENOMEM;

    if (!h)
        return;
    if (mv_rentry_encode(task, rt->host, &e) == 0 && (o = json_object())) {
        r = 0;
        for (int i = 4; i + 1 < e.argc && r == 0; i += 2) /* past id and data */
            r = json_object_set_new(o, e.argv[i], json_stringn(e.argv[i + 1], e.len[i + 1]));
        v = r == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
    }
    json_decref(o);
    mv_rentry_free(&e);
    snprintf(field, sizeof field, "%s %s", h->stream, h->eid);
    r = v ? mv_rconn_command(&rt->conn, escalated_cb, rt, 4,
                             (const char *[]){"HSET", rt->esc_key, field, v}, NULL)
          : -ENOMEM;
    free(v);
    if (r < 0)
        mv_warn(rt->log, "redis_escalation_unsaved", MV_I("task", (long long)task->id),
                MV_S("entry", h->eid), MV_I("limit", task->limit),
                MV_S("error", r == -ENOMEM ? "out of memory" : "not connected"),
                MV_S("msg", "a memvisor that takes the task over runs it at its own limit"));
}

bool mv__rt_route(mv_tasks_t *t, mv_task_t *task)
{
    mv_rtasks_t *rt = t->src_data;
    held_t *h = task->ref;

    if (!h)
        return false;
    send_route(rt, h, task);
    return true;
}

/* The script call that writes a task's result once and acknowledges its entry. */
static int finish_call(mv_rtasks_t *rt, held_t *h, const mv_task_t *t, const mv_result_t *res)
{
    mv_buf_t json = {0};
    mv_rentry_t e = {0};
    mv_rargs_t a = {0};
    char id[24];
    bool q = res->status == MV_ST_QUARANTINED;
    int n = -ENOMEM;

    snprintf(id, sizeof id, "%llu", (unsigned long long)t->id);
    if (*rt->results_stream && (mv_results_encode_at(res, rt->host, rt->consumer, &json) < 0 ||
                                mv_buf_append(&json, "", 1) < 0))
        goto out;
    if (q && (mv_rentry_encode(t, rt->host, &e) < 0 ||
              mv_rentry_add(&e, "error", res->payload, res->len) < 0 ||
              mv_rentry_add(&e, "host", rt->consumer, strlen(rt->consumer)) < 0))
        goto out;
    mv_rargs_evalsha(&a, rt->sha[MV_RS_FINISH], 5);
    mv_rargs_str(&a, h->stream);
    mv_rargs_str(&a, rt->done_key);
    mv_rargs_str(&a, *rt->results_stream ? rt->results_stream : rt->done_key);
    mv_rargs_str(&a, rt->quar_key);
    mv_rargs_str(&a, rt->esc_key);
    mv_rargs_str(&a, rt->group);
    mv_rargs_str(&a, h->eid);
    mv_rargs_str(&a, id);
    mv_rargs_str(&a, json.len ? (const char *)json.data : "");
    mv_rargs_str(&a, rt->consumer);
    mv_rargs_str(&a, q ? "1" : "0");
    for (int i = 0; q && i < e.argc; i++)
        mv_rargs_add(&a, e.argv[i], e.len[i]);
    n = mv_rargs_format(&a, &h->cmd);
out:
    mv_rargs_free(&a);
    mv_rentry_free(&e);
    mv_buf_free(&json);
    return n;
}

void mv__rt_end(mv_tasks_t *t, mv_task_t *task, const mv_result_t *res)
{
    mv_rtasks_t *rt = t->src_data;
    held_t *h = task->ref;
    int n;

    if (!h)
        return;
    task->ref = NULL;
    h->task = NULL;
    h->op = OP_FINISH;
    h->quarantine = res->status == MV_ST_QUARANTINED;
    if ((n = finish_call(rt, h, task, res)) < 0) {
        mv_error(rt->log, "redis_result_lost", MV_I("task", (long long)task->id),
                 MV_S("error", "out of memory"),
                 MV_S("msg", "its entry stays pending: another memvisor runs it again"));
        mv__rt_held_free(rt, h);
        return;
    }
    h->cmdlen = (size_t)n;
    if (rt->wait_file) {
        h->seq = rt->results->added;
        h->state = H_WAIT_FILE;
        return;
    }
    mv__rt_send(rt, h);
}

/* Without a results stream: the lines up to `lines` are synced in the results file. */
void mv__rt_written(void *arg, uint64_t lines, bool closed)
{
    mv_rtasks_t *rt = arg;
    held_t *h, *next;
    uint64_t left = 0;

    for (h = rt->held; h; h = next) {
        next = h->next;
        if (h->state != H_WAIT_FILE)
            continue;
        if (h->seq <= lines)
            mv__rt_send(rt, h);
        else if (closed) {
            left++;
            mv__rt_held_free(rt, h);
        }
    }
    if (left)
        mv_warn(rt->log, "redis_results_unwritten", MV_I("tasks", (long long)left),
                MV_S("msg", "their lines are not in the results file: their entries stay "
                            "pending, and another memvisor runs them after claim_idle"));
    if (closed)
        mv__rt_maybe_close(rt);
}
