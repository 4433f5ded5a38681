/*
 * templates: the pool's warm template (docs/templates.md, [worker] template = yes). Decides
 * which template serves the fork requests and carries out tpolicy.h: a template that grows
 * past the soft limit is replaced (a new one starts; the old one serves until the new one is
 * ready, then retires, answering what it was sent), a reload starts one from the new command,
 * a crash is followed by a new template after a backoff, MV_TEMPLATE_CRASH_LIMIT failures in
 * a row (or a template that cannot work here) make workers exec'd from then on (warned once),
 * and a template's fatal exit ends the run.
 *
 * It is the forker the workers are started with (proc.h): a request waits in its queue until
 * a template is ready; one whose template goes before answering fails with `retry` (the slot
 * starts a worker again at once, by exec once templates are given up). A child that comes
 * for a request nobody waits for any more is killed and reaped here.
 */
#ifndef MV_TEMPLATES_H
#define MV_TEMPLATES_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "proc.h"
#include "template.h"
#include "worker.h"

typedef struct mv_templates_events {
    void (*on_fatal)(void *arg); /* a template's start-up said "do not retry": the run ends */
} mv_templates_events_t;

typedef struct mv_templates {
    mv_forker_t forker;
    mv_worker_opts_t o; /* what templates run: the pool's worker options */
    const mv_templates_events_t *ev;
    void *arg;
    mv_template_t *serving; /* takes the requests once ready; NULL: none (yet) */
    mv_template_t *next;    /* being started to replace `serving` */
    mv_template_t *all;     /* every template not closed yet */
    mv_freq_t *queue;       /* waiting for a ready template, oldest first */
    mv_freq_t *unanswered;  /* a gone template's, being handed back (a cancel finds them) */
    struct orphan *orphans; /* children nobody waits for, being killed and reaped */
    uint64_t next_id;
    uint32_t gen;
    int streak; /* failed templates in a row (tpolicy.h) */
    bool started, off, stopping, closing, said_big, said_observed;
    bool gave_up; /* off by a fallback (crash loop, refused forks): a reload tries again */
    uv_timer_t backoff;
    unsigned open; /* templates, orphans and the timer not closed yet */
    void (*closed_cb)(void *arg);
    void *closed_arg;
    uint64_t forks, replaced, failed;
} mv_templates_t;

/* The template as status and metrics show it. */
typedef struct mv_template_view {
    bool on;       /* [worker] template = yes */
    bool fallback; /* given up: workers are exec'd */
    int pid;       /* 0: none running */
    uint32_t gen;
    const char *state;
    double age_s;
    uint64_t forks, replaced, failed;
    int64_t mem, usage, priv, rss, peak; /* -1: not read */
} mv_template_view_t;

/* Starts the first template. 0 or -ENOMEM. */
int mv_templates_start(mv_templates_t *ts, const mv_worker_opts_t *o,
                       const mv_templates_events_t *ev, void *arg);
/* What a worker is started with: the forker, or NULL (off, given up, stopping). */
const mv_forker_t *mv_templates_forker(mv_templates_t *ts);
/* A reload: templates from now on run cfg and argv (a new one replaces the serving one).
 * Templates given up by a fallback get another start: the reload may have fixed them. */
void mv_templates_reconfigure(mv_templates_t *ts, const mv_config_t *cfg, char *const *argv);
/* No more forks: waiting requests fail, templates retire (graceful) or are killed. */
void mv_templates_stop(mv_templates_t *ts, bool graceful);
/* Kills what still runs and closes everything; cb(arg) once all is closed. */
void mv_templates_close(mv_templates_t *ts, void (*cb)(void *arg), void *arg);
void mv_templates_view(const mv_templates_t *ts, mv_template_view_t *v);
/* Whether pid is a child of ours it reaps (an orphan being killed), or may be: a fork is
 * under way, whose child may exit before its pid is known. */
bool mv_templates_keeps(const mv_templates_t *ts, int pid);

#endif
