/*
 * rentry: task entries of a Redis stream (rentry.h).
 */
#include "rentry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

const char mv_rentry_too_long[] = "task longer than [tasks] max_size";

static bool is(const mv_rbytes_t *b, const char *name)
{
    return b->n == strlen(name) && memcmp(b->p, name, b->n) == 0;
}

/* A decimal integer in 0..max, the whole of b. */
static bool number(const mv_rbytes_t *b, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;

    if (b->n == 0 || b->n > 20)
        return false;
    for (size_t i = 0; i < b->n; i++) {
        unsigned d = (unsigned)(b->p[i] - '0');
        if (d > 9 || x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return x <= max;
}

/* One attempt record of a hist array. */
static int attempt_of(json_t *e, mv_attempt_t *a)
{
    json_t *sig = json_object_get(e, "signal"), *ex = json_object_get(e, "exit"),
           *peak = json_object_get(e, "mem_peak"), *host = json_object_get(e, "host");
    const char *reason = json_string_value(json_object_get(e, "reason"));

    if (!json_is_object(e) || !reason)
        return -EINVAL;
    memset(a, 0, sizeof *a);
    a->reason = mv_reason_from_name(reason);
    a->slot = (int)json_integer_value(json_object_get(e, "worker"));
    a->pid = (int)json_integer_value(json_object_get(e, "pid"));
    a->status = sig ? -(int)json_integer_value(sig) : (int)json_integer_value(ex);
    a->peak = json_is_integer(peak) ? (int64_t)json_integer_value(peak) : -1;
    a->limit = (int64_t)json_integer_value(json_object_get(e, "mem_limit")); /* 0: none */
    if (json_is_string(host)) {
        /* Cut to fit, at a character boundary: it goes out again as JSON text. */
        size_t n = strnlen(json_string_value(host), sizeof a->host - 1);
        while (n > 0 && !mv_utf8_valid(json_string_value(host), n))
            n--;
        memcpy(a->host, json_string_value(host), n);
        a->host[n] = '\0';
    }
    return 0;
}

static int decode_hist(const mv_rbytes_t *b, mv_task_t *t, char *why, size_t wn)
{
    json_error_t err;
    json_t *a = json_loadb(b->p, b->n, 0, &err), *e;
    size_t i;

    if (!json_is_array(a) || json_array_size(a) > UINT16_MAX) {
        snprintf(why, wn, "hist is not a JSON array of attempts%s%s", a ? "" : ": ",
                 a ? "" : err.text);
        json_decref(a);
        return -EINVAL;
    }
    if (json_array_size(a) && !(t->hist = calloc(json_array_size(a), sizeof *t->hist))) {
        json_decref(a);
        return -ENOMEM;
    }
    json_array_foreach(a, i, e)
    {
        if (attempt_of(e, &t->hist[i]) < 0) {
            snprintf(why, wn, "hist entry %zu is not an attempt (an object with a reason)", i);
            json_decref(a);
            return -EINVAL;
        }
        t->nhist++;
    }
    json_decref(a);
    return 0;
}

int mv_rentry_decode(const mv_rbytes_t *fv, size_t n, int64_t max_size, mv_task_t **out, char *why,
                     size_t wn)
{
    const mv_rbytes_t *id = NULL, *data = NULL, *att = NULL, *hist = NULL, *lim = NULL, *esc = NULL;
    uint64_t idv = 0, attv = 0, limv = 0, escv = 0;
    bool too_long;
    mv_task_t *t;
    int r;

    *out = NULL;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const mv_rbytes_t *v = &fv[i + 1];
        if (is(&fv[i], "id"))
            id = v;
        else if (is(&fv[i], "data"))
            data = v;
        else if (is(&fv[i], "attempts"))
            att = v;
        else if (is(&fv[i], "hist"))
            hist = v;
        else if (is(&fv[i], "limit"))
            lim = v;
        else if (is(&fv[i], "escalations"))
            esc = v;
    }
    /* At most INT64_MAX: results and the done record carry it as a JSON integer (signed), and
     * `INCR STREAM:ids` never goes beyond it. */
    if (!id || !number(id, INT64_MAX, &idv) || idv == 0) {
        snprintf(why, wn, "%s",
                 id ? "the id field is not an integer in 1..9223372036854775807" : "no id field");
        return -EINVAL;
    }
    if (!data) {
        snprintf(why, wn, "no data field");
        return -EINVAL;
    }
    if (att && !number(att, UINT16_MAX, &attv)) {
        snprintf(why, wn, "the attempts field is not an integer in 0..65535");
        return -EINVAL;
    }
    if (lim && !number(lim, INT64_MAX, &limv)) {
        snprintf(why, wn, "the limit field is not a hard limit in bytes (a decimal integer)");
        return -EINVAL;
    }
    if (esc && !number(esc, UINT16_MAX, &escv)) {
        snprintf(why, wn, "the escalations field is not an integer in 0..65535");
        return -EINVAL;
    }
    too_long = (int64_t)data->n > max_size;
    if (!(t = mv_task_new(idv, too_long ? NULL : data->p, too_long ? 0 : data->n)))
        return -ENOMEM;
    t->bad = too_long ? mv_rentry_too_long : NULL;
    t->attempts = (uint16_t)attv;
    t->limit = (int64_t)limv;
    t->escalations = (uint16_t)escv;
    if (hist && (r = decode_hist(hist, t, why, wn)) < 0) {
        mv_task_free(t);
        return r;
    }
    *out = t;
    return 0;
}

int mv_rentry_add(mv_rentry_t *e, const char *name, const void *value, size_t len)
{
    if (e->argc + 2 > MV_RENTRY_MAX_FIELDS)
        return -ENOSPC;
    e->argv[e->argc] = name;
    e->len[e->argc++] = strlen(name);
    e->argv[e->argc] = value;
    e->len[e->argc++] = len;
    return 0;
}

int mv_rentry_encode(const mv_task_t *t, const char *here, mv_rentry_t *e)
{
    json_t *h;

    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%llu", (unsigned long long)t->id);
    mv_rentry_add(e, "id", e->id, strlen(e->id));
    mv_rentry_add(e, "data", t->data, t->len);
    if (t->attempts == 0 && t->nhist == 0 && t->limit <= 0)
        return 0; /* a fresh task: its id and data say it all */
    snprintf(e->attempts, sizeof e->attempts, "%u", (unsigned)t->attempts);
    mv_rentry_add(e, "attempts", e->attempts, strlen(e->attempts));
    h = mv_attempts_json(t->hist, t->nhist, here);
    e->hist = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (!e->hist)
        return -ENOMEM;
    mv_rentry_add(e, "hist", e->hist, strlen(e->hist));
    if (t->limit > 0) { /* an escalated task: the limit it needs goes with it (escalate.h) */
        snprintf(e->limit, sizeof e->limit, "%lld", (long long)t->limit);
        snprintf(e->escalations, sizeof e->escalations, "%u", (unsigned)t->escalations);
        mv_rentry_add(e, "limit", e->limit, strlen(e->limit));
        mv_rentry_add(e, "escalations", e->escalations, strlen(e->escalations));
    }
    return 0;
}

void mv_rentry_free(mv_rentry_t *e)
{
    free(e->hist);
    e->hist = NULL;
}
