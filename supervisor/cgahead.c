/*
 * cgahead: each slot's next worker cgroups, made ahead (see cgahead.h).
 */
#include "cgahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cgasync.h"

_Static_assert(MV_CGAHEAD_BATCH <= MV_CG_BATCH_MAX, "a batch is one mv_cg_reuse_async");

int mv_cgahead_init(mv_cgahead_t *a, uv_loop_t *loop, mv_log_t *log, const mv_cg_t *cg, int nslots,
                    bool on)
{
    memset(a, 0, sizeof *a);
    a->loop = loop;
    a->log = log;
    a->cg = cg;
    a->on = on && cg && cg->version != MV_CG_OFF;
    a->slot = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *a->slot);
    if (!a->slot)
        return -ENOMEM;
    a->n = nslots;
    for (int i = 0; i < nslots; i++) {
        a->slot[i].ahead = a;
        a->slot[i].first.x = &a->slot[i];
    }
    return 0;
}

static int slot_of(const mv_cgnext_t *x)
{
    return (int)(x - x->ahead->slot) + 1;
}

/* A slot's i-th entry, 0 <= i <= MV_CGAHEAD_BATCH; NULL when its room is not allocated. */
static mv_cgpre_t *entry(mv_cgnext_t *x, int i)
{
    return i == 0 ? &x->first : x->more ? &x->more[i - 1] : NULL;
}

static mv_cgpre_t *find(mv_cgnext_t *x, uint32_t gen)
{
    mv_cgpre_t *e;

    for (int i = 0; gen && i <= MV_CGAHEAD_BATCH && (e = entry(x, i)); i++)
        if (e->gen == gen)
            return e;
    return NULL;
}

static bool has(const mv_cgnext_t *x, uint32_t gen)
{
    if (x->first.gen == gen)
        return true;
    for (int i = 0; x->more && i < MV_CGAHEAD_BATCH; i++)
        if (x->more[i].gen == gen)
            return true;
    return false;
}

/* An unused entry (its room allocated when needed), or NULL. */
static mv_cgpre_t *unused(mv_cgnext_t *x)
{
    mv_cgpre_t *e;

    if (x->first.gen && !x->more && (x->more = calloc(MV_CGAHEAD_BATCH, sizeof *x->more)))
        for (int i = 0; i < MV_CGAHEAD_BATCH; i++)
            x->more[i].x = x;
    for (int i = 0; i <= MV_CGAHEAD_BATCH && (e = entry(x, i)); i++)
        if (!e->gen)
            return e;
    return NULL;
}

static bool keep(mv_cgnext_t *x, mv_cgw_t *cg);

/* Lets go of an entry: a made cgroup goes back to the kept ones (or is removed in the
 * thread pool), one being made is removed when its job ends (the job sees no owner). */
static void release(mv_cgpre_t *e)
{
    mv_cgahead_t *a = e->x->ahead;

    if (e->job) {
        /* Its name is passed all the same (mv_cgahead_last): said, as a made one is. */
        mv_debug(a->log, "cgroup_ahead_dropped", MV_I("worker", slot_of(e->x)), MV_I("gen", e->gen),
                 MV_S("msg", "dropped while being made: removed once made"));
        mv_job_detach(e->job);
        e->job = NULL;
    }
    if (e->ready) {
        e->ready = false;
        a->dropped++;
        if (!keep(e->x, &e->cg))
            mv_cg_remove_async(a->loop, a->log, &e->cg);
    }
    e->gen = 0;
}

/* Lets go of the entries for generations before `gen` (they went elsewhere). */
static void release_below(mv_cgnext_t *x, uint32_t gen)
{
    mv_cgpre_t *e;

    for (int i = 0; i <= MV_CGAHEAD_BATCH && (e = entry(x, i)); i++)
        if (e->gen && e->gen < gen)
            release(e);
}

static void pump(mv_cgahead_t *a);

static void made_cb(void *owner, int result, mv_cgw_t *cg, const char *why)
{
    mv_cgpre_t *e = owner;
    mv_cgahead_t *a = e->x->ahead;

    e->job = NULL;
    pump(a);
    if (result < 0) {
        /* The spawn path will make it again, and say what fails then. */
        mv_debug(a->log, "cgroup_ahead_failed", MV_I("worker", slot_of(e->x)), MV_I("gen", e->gen),
                 MV_S("error", why));
        e->gen = 0;
        return;
    }
    e->cg = *cg;
    e->ready = true;
    a->made++;
    a->reused += cg->inherited >= 0;
    /* inherited: what its earlier workers left charged to a reused one (-1: a new one;
     * `not_reused` says why a kept one was not). */
    mv_debug(a->log, "cgroup_ahead", MV_I("worker", slot_of(e->x)), MV_I("gen", e->gen),
             MV_S("cgroup", cg->path), MV_I("inherited", cg->inherited),
             MV_S("not_reused", why && *why ? why : "-"));
}

/* Reuses up to MV_CGAHEAD_BATCH kept cgroups as gen, gen + 1, ... in one run (stopping at a
 * generation that has one already); the number started, 0 when none could be. */
static int reuse(mv_cgahead_t *a, mv_cgnext_t *x, uint32_t gen)
{
    mv_cgpre_t *e[MV_CGAHEAD_BATCH];
    void *owners[MV_CGAHEAD_BATCH];
    mv_job_t *jobs[MV_CGAHEAD_BATCH];
    int n = 0;

    while (n < MV_CGAHEAD_BATCH && n < x->nkept && !find(x, gen + (uint32_t)n) &&
           (e[n] = unused(x))) {
        e[n]->gen = gen + (uint32_t)n; /* taken while the batch is put together */
        owners[n] = e[n];
        n++;
    }
    if (n > 0 && mv_cg_reuse_async(a->loop, a->log, a->cg, slot_of(x), gen, &x->kept[x->nkept - n],
                                   n, made_cb, owners, jobs) < 0)
        n = -n;
    for (int i = 0; i < (n < 0 ? -n : n); i++) {
        e[i]->job = n > 0 ? jobs[i] : NULL;
        e[i]->gen = n > 0 ? e[i]->gen : 0;
    }
    if (n <= 0)
        return 0;
    x->nkept -= n;
    a->runs++;
    return n;
}

/* Starts making a slot's requested cgroup(s): kept ones renamed, or a new one. In a slot
 * that recycles fast (MV_CGAHEAD_FAST_NS), a batch of fewer than MV_CGAHEAD_BATCH that took
 * every kept one also makes a new one after it, so that the slot's cgroups grow to a batch's
 * worth (each made once: its threshold registration is the cost, docs/recycling.md). */
static void make(mv_cgahead_t *a, mv_cgnext_t *x)
{
    uint32_t gen = x->queued;
    uint64_t now = uv_hrtime();
    bool fast = x->asked_ns && now - x->asked_ns < MV_CGAHEAD_FAST_NS;
    mv_cgpre_t *e;
    int n;

    x->queued = 0;
    x->asked_ns = now;
    n = reuse(a, x, gen);
    if (n == MV_CGAHEAD_BATCH || (n > 0 && (x->nkept > 0 || !fast)))
        return;
    if (find(x, gen + (uint32_t)n) || !(e = unused(x)))
        return;
    e->gen = gen + (uint32_t)n;
    if (mv_cg_create_async(a->loop, a->log, a->cg, slot_of(x), e->gen, made_cb, e, &e->job) < 0)
        e->gen = 0;
}

static bool busy(mv_cgnext_t *x)
{
    mv_cgpre_t *e;

    for (int i = 0; i <= MV_CGAHEAD_BATCH && (e = entry(x, i)); i++)
        if (e->job)
            return true;
    return false;
}

static int making(mv_cgahead_t *a)
{
    int n = 0;

    for (int i = 0; i < a->n; i++)
        n += busy(&a->slot[i]);
    return n;
}

/* Starts queued requests while fewer than MV_CGAHEAD_JOBS slots' are being made, in turn
 * from the slot after the last one started (a slot that recycles often does not keep the
 * others waiting). */
static void pump(mv_cgahead_t *a)
{
    int n = making(a);

    for (int k = 0; k < a->n && n < MV_CGAHEAD_JOBS; k++) {
        mv_cgnext_t *x = &a->slot[(a->turn + k) % a->n];
        if (!x->queued)
            continue;
        make(a, x);
        n += busy(x);
        a->turn = slot_of(x);
    }
}

void mv_cgahead_prepare(mv_cgahead_t *a, int slot, uint32_t gen)
{
    mv_cgnext_t *x;

    if (!a->on || slot < 1 || slot > a->n)
        return;
    x = &a->slot[slot - 1];
    if (x->retired)
        return;
    release_below(x, gen);
    if (x->queued == gen || find(x, gen))
        return;
    x->queued = gen;
    pump(a);
}

static bool keep(mv_cgnext_t *x, mv_cgw_t *cg)
{
    mv_cgahead_t *a = x->ahead;

    if (!a->on || x->retired || !mv_cg_reusable(a->cg, cg) || x->nkept >= MV_CGAHEAD_KEEP)
        return false;
    if (!x->kept && !(x->kept = calloc(MV_CGAHEAD_KEEP, sizeof *x->kept)))
        return false;
    x->kept[x->nkept++] = *cg;
    mv_cg_forget(cg);
    return true;
}

bool mv_cgahead_keep(mv_cgahead_t *a, int slot, mv_cgw_t *cg)
{
    return slot >= 1 && slot <= a->n && keep(&a->slot[slot - 1], cg);
}

int mv_cgahead_take(mv_cgahead_t *a, int slot, uint32_t gen, mv_cgw_t *out, mv_job_t **job)
{
    mv_cgnext_t *x;
    mv_cgpre_t *e;

    if (slot < 1 || slot > a->n)
        return MV_AHEAD_NONE;
    x = &a->slot[slot - 1];
    release_below(x, gen);
    if (x->queued == gen)
        x->queued = 0;
    if (!(e = find(x, gen)))
        return MV_AHEAD_NONE;
    e->gen = 0;
    a->used++;
    if (e->job) {
        *job = e->job;
        e->job = NULL;
        pump(a); /* the job is the caller's now */
        return MV_AHEAD_MAKING;
    }
    *out = e->cg;
    memset(&e->cg, 0, sizeof e->cg);
    e->ready = false;
    return MV_AHEAD_READY;
}

bool mv_cgahead_holds(const mv_cgahead_t *a, int slot, uint32_t gen)
{
    return slot >= 1 && slot <= a->n && gen != 0 &&
           (a->slot[slot - 1].queued == gen || has(&a->slot[slot - 1], gen));
}

uint32_t mv_cgahead_last(const mv_cgahead_t *a, int slot)
{
    const mv_cgnext_t *x;
    uint32_t last;

    if (slot < 1 || slot > a->n)
        return 0;
    x = &a->slot[slot - 1];
    last = x->queued > x->first.gen ? x->queued : x->first.gen;
    for (int i = 0; x->more && i < MV_CGAHEAD_BATCH; i++)
        last = x->more[i].gen > last ? x->more[i].gen : last;
    return last;
}

/* Lets go of everything of one slot (a->on false: nothing is kept). */
static void forget(mv_cgahead_t *a, mv_cgnext_t *x)
{
    mv_cgpre_t *e;

    x->queued = 0;
    for (int k = 0; k <= MV_CGAHEAD_BATCH && (e = entry(x, k)); k++)
        release(e);
    free(x->more);
    x->more = NULL;
    while (x->nkept > 0)
        mv_cg_remove_async(a->loop, a->log, &x->kept[--x->nkept]);
    free(x->kept);
    x->kept = NULL;
}

void mv_cgahead_drop(mv_cgahead_t *a, bool on)
{
    a->on = false; /* nothing released now is kept */
    for (int i = 0; i < a->n; i++)
        forget(a, &a->slot[i]);
    a->on = on && a->cg && a->cg->version != MV_CG_OFF;
}

void mv_cgahead_forget(mv_cgahead_t *a, int slot)
{
    bool on = a->on;

    if (slot < 1 || slot > a->n)
        return;
    a->on = false;
    forget(a, &a->slot[slot - 1]);
    a->slot[slot - 1].retired = true;
    a->on = on;
}

void mv_cgahead_revive(mv_cgahead_t *a, int slot)
{
    if (slot >= 1 && slot <= a->n)
        a->slot[slot - 1].retired = false;
}

int mv_cgahead_grow(mv_cgahead_t *a, int n)
{
    mv_cgnext_t *grown;

    if (n <= a->n)
        return 0;
    mv_cgahead_drop(a, a->on);
    if (!(grown = realloc(a->slot, (size_t)n * sizeof *grown)))
        return -ENOMEM;
    memset(grown + a->n, 0, (size_t)(n - a->n) * sizeof *grown);
    a->slot = grown;
    a->n = n;
    for (int i = 0; i < n; i++) {
        a->slot[i].ahead = a;
        a->slot[i].first.x = &a->slot[i];
    }
    return 0;
}

void mv_cgahead_free(mv_cgahead_t *a)
{
    if (!a->slot)
        return;
    if (a->made || a->runs) /* runs < reused: batches of several (cgahead.h) */
        mv_debug(a->log, "cgroup_ahead_total", MV_I("made", (long long)a->made),
                 MV_I("used", (long long)a->used), MV_I("reused", (long long)a->reused),
                 MV_I("dropped", (long long)a->dropped), MV_I("runs", (long long)a->runs));
    mv_cgahead_drop(a, false);
    free(a->slot);
    a->slot = NULL;
    a->n = 0;
}
