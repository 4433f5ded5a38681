/*
 * ticker: the progress of a batch, sampled on a timer (see ticker.h).
 */
#include "ticker.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lean.h"
#include "supervisor.h"

/* stderr's width in columns now; 0 when it is not a terminal. */
static int term_width(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
        return 0;
    return ws.ws_col;
}

int mv_ticker_figures(mv_t *mv, mv_progress_t *p)
{
    const uint64_t *c = mv->results.count;
    mv_pool_view_t v;

    memset(p, 0, sizeof *p);
    if (mv_pool_view(&mv->pool, &v) < 0)
        return -ENOMEM;
    p->ok = c[MV_ST_OK];
    p->failed = c[MV_ST_FAILED];
    p->quarantined = c[MV_ST_QUARANTINED];
    p->done = p->ok + p->failed + p->quarantined;
    p->in_flight = v.in_flight;
    /* A service's requests have no total and wait in no queue of ours. */
    p->total = mv->service ? -1 : mv->tasks.total;
    p->queue = mv->service ? -1 : mv_progress_queue(p->done, p->total, p->in_flight);
    p->rate = mv_rate_per_s(&mv->ticker.rate);
    p->eta_s = mv->service ? -1 : mv_progress_eta(p->done, p->total, p->rate);
    p->busy = v.busy;
    p->workers = v.live;
    p->recycles = v.recycled;
    if (v.top >= 0) {
        p->top_slot = v.workers[v.top].slot;
        p->top_mem = v.workers[v.top].mem;
        p->top_soft = v.workers[v.top].soft;
        p->top_hard = v.workers[v.top].hard;
    }
    mv_pool_view_free(&v);
    return 0;
}

static void tick_cb(uv_timer_t *h)
{
    mv_t *mv = h->data;
    mv_ticker_t *tk = &mv->ticker;
    const uint64_t *c = mv->results.count;
    char line[MV_LOG_STATUS_MAX + 1];
    mv_progress_t p;
    int width;

    mv_rate_add(&tk->rate, mv_now_ms(), c[MV_ST_OK] + c[MV_ST_FAILED] + c[MV_ST_QUARANTINED]);
    /* The supervisor's own footprint (DESIGN §9): what a burst left free in the heap goes
     * back to the kernel rather than staying resident until the next burst. */
    if (++tk->ticks % MV_TICKER_TRIM == 0)
        mv_lean_trim();
    if (!tk->draw || mv_ticker_figures(mv, &p) < 0)
        return;
    /* One column short of the width: a line that reaches the last column wraps on some
     * terminals, and a wrapped line cannot be redrawn in place. */
    width = tk->width ? term_width() : 0;
    if (width <= 1 || width > MV_LOG_STATUS_MAX)
        width = MV_LOG_STATUS_MAX + 1;
    mv_progress_format(&p, line, (size_t)width);
    mv_log_status(&mv->log, line);
}

int mv_ticker_start(mv_t *mv)
{
    mv_ticker_t *tk = &mv->ticker;
    mv_progress_mode_t mode = mv->cfg->log.progress;
    int r;

    memset(tk, 0, sizeof *tk);
    /* The total, counted ahead of the reader (else known at the source's end). */
    if (!mv->service && (r = mv_tasks_count(&mv->tasks)) < 0)
        mv_debug(&mv->log, "tasks_count_failed", MV_S("error", strerror(-r)));
    tk->width = term_width();
    tk->draw = !mv->service &&
               (mode == MV_PROGRESS_ON || (mode == MV_PROGRESS_AUTO && isatty(STDERR_FILENO)));
    if (tk->draw)
        mv_log_status_open(&mv->log, STDERR_FILENO);
    r = uv_timer_init(&mv->loop, &tk->timer);
    if (r < 0)
        return r;
    tk->timer.data = mv;
    tk->open = true;
    /* The first sample, so the first line already has a rate. */
    mv_rate_add(&tk->rate, mv_now_ms(),
                mv->results.count[MV_ST_OK] + mv->results.count[MV_ST_FAILED] +
                    mv->results.count[MV_ST_QUARANTINED]);
    uv_unref((uv_handle_t *)&tk->timer); /* it never keeps a finished run alive */
    return uv_timer_start(&tk->timer, tick_cb, MV_TICKER_MS, MV_TICKER_MS);
}

void mv_ticker_stop(mv_t *mv)
{
    mv_ticker_t *tk = &mv->ticker;

    if (!tk->open)
        return;
    tk->open = false;
    uv_close((uv_handle_t *)&tk->timer, NULL);
    if (tk->draw)
        mv_log_status(&mv->log, NULL);
}
