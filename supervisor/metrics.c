/*
 * metrics: the exposition text of a view (see metrics.h). Written with a growable buffer and
 * snprintf; label values are the only untrusted text (task kinds come from task lines), so
 * they alone are sanitized and escaped.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct out {
    mv_buf_t *b;
    int err;
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        o->err = o->err ? o->err : -EINVAL; /* every format here is short: cannot happen */
    else if (!o->err && mv_buf_append(o->b, line, (size_t)n) < 0)
        o->err = -ENOMEM;
}

static void family(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP memvisor_%s %s\n# TYPE memvisor_%s %s\n", name, help, name, type);
}

/* A label value: valid UTF-8 (invalid sequences become U+FFFD), with \, " and newline
 * escaped as the format says. */
static void label(out_t *o, const char *s)
{
    mv_buf_t clean = {0};

    if (o->err)
        return;
    if (mv_utf8_sanitize(s ? s : "", s ? strlen(s) : 0, &clean) < 0) {
        o->err = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < clean.len && !o->err; i++) {
        const char *esc = clean.data[i] == '\\'   ? "\\\\"
                          : clean.data[i] == '"'  ? "\\\""
                          : clean.data[i] == '\n' ? "\\n"
                                                  : NULL;
        if (esc ? mv_buf_append(o->b, esc, 2) < 0 : mv_buf_append(o->b, &clean.data[i], 1) < 0)
            o->err = -ENOMEM;
    }
    mv_buf_free(&clean);
}

/* A counter family with one label: NAME{KEY="label"} n per entry. */
static void counters(out_t *o, const char *name, const char *key, const char *help,
                     const mv_metrics_count_t *c, size_t n)
{
    family(o, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        put(o, "memvisor_%s{%s=\"", name, key);
        label(o, c[i].label);
        put(o, "\"} %" PRIu64 "\n", c[i].n);
    }
}

/* What each per-slot gauge shows; -1 (or a negative age) leaves the sample out. */
enum { G_UP, G_GEN, G_SOFT, G_HARD, G_MEM, G_USAGE, G_PRIV, G_RSS, G_PEAK, G_TASKS, G_AGE, G_N };

static const struct {
    const char *name, *help;
} gauge[G_N] = {
    {"worker_up", "1 when a worker serves the slot."},
    {"worker_generation", "Generation of the slot's worker: goes up at each recycle."},
    {"worker_memory_soft_limit_bytes", "Soft memory limit of the slot's worker; 0 = off."},
    {"worker_memory_hard_limit_bytes", "Hard memory limit of the slot's worker; 0 = off."},
    {"worker_memory_bytes", "Memory the soft limit compares ([limits] metric)."},
    {"worker_usage_bytes", "Memory the hard limit compares (cgroup charge, or sampled)."},
    {"worker_private_bytes", "Private (anonymous) memory of the worker."},
    {"worker_rss_bytes", "Resident memory of the worker."},
    {"worker_peak_bytes", "Highest usage of the slot's worker so far."},
    {"worker_tasks", "Tasks the slot's worker finished since it started."},
    {"worker_age_seconds", "Time since the slot's worker started."},
};

static void slot_gauges(out_t *o, const mv_metrics_slot_t *s, size_t n)
{
    for (int g = 0; g < G_N; g++) {
        family(o, gauge[g].name, "gauge", gauge[g].help);
        for (size_t i = 0; i < n; i++) {
            const mv_metrics_slot_t *x = &s[i];
            int64_t v = g == G_UP      ? x->up
                        : g == G_GEN   ? (int64_t)x->gen
                        : g == G_SOFT  ? x->soft
                        : g == G_HARD  ? x->hard
                        : g == G_MEM   ? x->mem
                        : g == G_USAGE ? x->usage
                        : g == G_PRIV  ? x->priv
                        : g == G_RSS   ? x->rss
                        : g == G_PEAK  ? x->peak
                                       : x->tasks;

            if (g == G_AGE && x->up && x->age_s >= 0)
                put(o, "memvisor_%s{slot=\"%d\"} %.3f\n", gauge[g].name, x->slot, x->age_s);
            else if (g != G_AGE && v >= 0 && (x->up || g <= G_HARD))
                put(o, "memvisor_%s{slot=\"%d\"} %" PRId64 "\n", gauge[g].name, x->slot, v);
        }
    }
}

/* One unlabelled sample, left out when unknown (< 0). */
static void sample(out_t *o, const char *name, const char *type, const char *help, int64_t v)
{
    family(o, name, type, help);
    if (v >= 0)
        put(o, "memvisor_%s %" PRId64 "\n", name, v);
}

static void template_families(out_t *o, const mv_metrics_template_t *t)
{
    sample(o, "template_up", "gauge", "1 when the warm template serves forks.", t->up);
    sample(o, "template_generation", "gauge", "Generation of the template: goes up when replaced.",
           (int64_t)t->gen);
    sample(o, "template_memory_bytes", "gauge", "Memory of the template the soft limit compares.",
           t->mem);
    sample(o, "template_usage_bytes", "gauge",
           "Memory charged to the template's cgroup (pages its workers share).", t->usage);
    sample(o, "template_peak_bytes", "gauge", "Highest usage of the template so far.", t->peak);
    sample(o, "template_forks_total", "counter", "Workers forked from templates.",
           (int64_t)t->forks);
    sample(o, "template_replaced_total", "counter", "Templates replaced (grown, reloaded).",
           (int64_t)t->replaced);
}

int mv_metrics_render(const mv_metrics_view_t *v, mv_buf_t *out)
{
    out_t o = {out, 0};
    size_t mark = out->len;

    slot_gauges(&o, v->slots, v->nslots);
    counters(&o, "tasks_total", "status", "Tasks (requests) ended, by status.", v->tasks,
             v->ntasks);
    counters(&o, "recycles_total", "reason", "Workers that left, by reason.", v->recycles,
             v->nrecycles);
    counters(&o, "leak_suspects_total", "kind", "Leak suspects reported, by task kind.",
             v->suspects, v->nsuspects);
    family(&o, "workers_spawned_total", "counter", "Workers started.");
    put(&o, "memvisor_workers_spawned_total %" PRIu64 "\n", v->spawned);
    family(&o, "child_recycles_total", "counter",
           "Children of master workers told to stop for memory ([recycle] target = child).");
    put(&o, "memvisor_child_recycles_total %" PRIu64 "\n", v->child_recycles);
    family(&o, "reloads_total", "counter", "Configuration reloads applied.");
    put(&o, "memvisor_reloads_total %" PRIu64 "\n", v->reloads);
    family(&o, "workers", "gauge", "Workers serving now (ready or busy, not leaving).");
    if (v->workers >= 0)
        put(&o, "memvisor_workers %" PRId64 "\n", v->workers);
    sample(&o, "workers_target", "gauge",
           "Worker slots the pool keeps ([supervisor] workers, as last scaled).",
           v->target > 0 ? v->target : -1);
    family(&o, "spares", "gauge", "Spare workers, started and waiting for a slot.");
    put(&o, "memvisor_spares %" PRId64 "\n", v->spares);
    family(&o, "spares_usage_bytes", "gauge", "Memory charged to the spares' cgroups, together.");
    put(&o, "memvisor_spares_usage_bytes %" PRId64 "\n", v->spares_usage);
    family(&o, "successors", "gauge",
           "Successors, started at their slot's last task and waiting for its answer.");
    put(&o, "memvisor_successors %" PRId64 "\n", v->successors);
    family(&o, "successors_usage_bytes", "gauge",
           "Memory charged to the successors' cgroups, together.");
    put(&o, "memvisor_successors_usage_bytes %" PRId64 "\n", v->successors_usage);
    family(&o, "workers_starting", "gauge",
           "Workers starting: from their cgroup to ready ([supervisor] max_starting at most).");
    put(&o, "memvisor_workers_starting %" PRId64 "\n", v->starting);
    family(&o, "workers_waiting_to_start", "gauge",
           "Workers waiting their turn to start ([supervisor] max_starting).");
    put(&o, "memvisor_workers_waiting_to_start %" PRId64 "\n", v->waiting_to_start);
    family(&o, "queue_depth", "gauge", "Tasks not sent to a worker yet.");
    if (v->queue >= 0)
        put(&o, "memvisor_queue_depth %" PRId64 "\n", v->queue);
    family(&o, "tasks_in_flight", "gauge", "Tasks (requests) being worked on.");
    if (v->in_flight >= 0)
        put(&o, "memvisor_tasks_in_flight %" PRId64 "\n", v->in_flight);
    family(&o, "uptime_seconds", "gauge", "Time since memvisor started.");
    put(&o, "memvisor_uptime_seconds %.3f\n", v->uptime_s);
    family(&o, "dispatch_paused", "gauge", "1 while new tasks are held back, by reason.");
    put(&o, "memvisor_dispatch_paused{reason=\"host_memory\"} %d\n", v->paused_host);
    put(&o, "memvisor_dispatch_paused{reason=\"results_backlog\"} %d\n", v->paused_results);
    family(&o, "host_memory_available_bytes", "gauge", "The host's MemAvailable (pause_below).");
    if (v->have_host)
        put(&o, "memvisor_host_memory_available_bytes %" PRId64 "\n", v->host_available);
    family(&o, "host_memory_pause_threshold_bytes", "gauge",
           "MemAvailable under which dispatch pauses (pause_below).");
    if (v->have_host)
        put(&o, "memvisor_host_memory_pause_threshold_bytes %" PRId64 "\n", v->host_threshold);
    family(&o, "orphans_reaped_total", "counter", "Orphaned processes reaped (subreaper).");
    put(&o, "memvisor_orphans_reaped_total %" PRIu64 "\n", v->orphans_reaped);
    if (v->tmpl)
        template_families(&o, v->tmpl);
    if (o.err)
        out->len = mark;
    return o.err;
}
