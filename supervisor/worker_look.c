/*
 * worker_look: what a lines or none worker waits for (waitprobe.h), part of the worker module
 * (worker.h): when it is ready, and, for a lines worker in lock-step, when its answer is
 * certain. Looks are taken on the worker's `look` timer: every millisecond while it starts
 * (every 10 ms after 200 looks); while an answer is held, on every pass of the loop (the
 * `spin` idle handle) for the first LOOK_SPIN_NS after it came (a worker is back on its stdin
 * microseconds after it wrote its answer: a millisecond's wait would cap lock-step at ~1,000 tasks
 * a second), then every millisecond.
 */
#include "worker_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void settle(mv_worker_t *w);

/* A lines answer in lock-step is held until the worker is back on its stdin: then every line
 * it wrote for the task is here, and one line for one task is certain. */
void mv_wlook_hold(mv_worker_t *w, bool ok, const void *payload, size_t n)
{
    mv_buf_reset(&w->held.payload);
    if (mv_buf_append(&w->held.payload, payload, n) < 0)
        return mv_chan_fail(&w->chan, "out of memory holding an answer");
    w->held.held = true;
    w->held.ok = ok;
    w->held.at_ns = w->chan.rx_ns;
    w->looks = 0;
    settle(w);
}

/* Releases the held answer (the worker is back on its stdin, or gone). */
void mv_wlook_release(mv_worker_t *w, uint64_t since_ns)
{
    if (!w->held.held)
        return;
    w->held.held = false;
    uv_timer_stop(&w->look);
    uv_idle_stop(&w->spin);
    mv_worker_answered(w, w->held.ok, NULL, 0, mv_buf_head(&w->held.payload),
                       mv_buf_unread(&w->held.payload), since_ns);
}

void mv_wlook_stray(mv_worker_t *w, const char *when)
{
    char what[320];

    snprintf(what, sizeof what,
             "the worker wrote a line to stdout %s: only one line per task may go to stdout, in "
             "answer to it; debug output belongs on stderr (Python: print(..., file=sys.stderr))",
             when);
    w->held.held = false;
    uv_timer_stop(&w->look);
    uv_idle_stop(&w->spin);
    mv_chan_fail(&w->chan, what);
}

#define LOOK_FAST_MS    1   /* between looks while it starts... */
#define LOOK_FAST_LOOKS 200 /* ...for the first looks, then: */
#define LOOK_SLOW_MS    10
#define LOOK_SPIN_NS    300000 /* a held answer: looked at on every loop pass this long */

static void look_cb(uv_timer_t *t);
static void spin_cb(uv_idle_t *h);

void mv_wlook_later(mv_worker_t *w)
{
    uint64_t ms = w->held.held                 ? LOOK_FAST_MS
                  : w->looks < LOOK_FAST_LOOKS ? LOOK_FAST_MS
                                               : LOOK_SLOW_MS;

    w->looks++;
    /* An idle handle runs once per pass of the loop, which then polls without blocking. Not
     * a 0 ms timer: libuv before 1.48 runs a timer restarted from its own callback again in
     * the same pass, against the same clock (libuv#4245), and no I/O would be read. */
    if (w->held.held && uv_hrtime() - w->held.at_ns < LOOK_SPIN_NS) {
        uv_idle_start(&w->spin, spin_cb);
        return;
    }
    uv_timer_start(&w->look, look_cb, ms, 0);
}

/* It cannot be seen starting: taken as ready now. A lines worker's first task then has no
 * figures (its "before" would hold start-up memory). */
void mv_wlook_assume_ready(mv_worker_t *w, const char *why)
{
    uv_timer_stop(&w->look);
    w->first_unmeasured = w->o.cfg->worker.protocol == MV_PROTO_LINES;
    mv_info(w->o.log, "ready_assumed", MV_I("worker", w->slot), MV_I("pid", w->proc.pid),
            MV_S("why", why),
            MV_S("msg", w->first_unmeasured ? "its first task is not measured" : ""));
    mv_worker_became_ready(w);
}

/* A none worker holding a socket it did not inherit (its listen sockets come first from fd 3)
 * has accepted a connection: it serves. */
static bool serving(mv_worker_t *w)
{
    return w->o.cfg->worker.protocol == MV_PROTO_NONE &&
           mv_waitprobe_has_socket(&w->probe,
                                   MV_PROC_FIRST_FD + (w->o.listen ? w->o.listen->n : 0));
}

static void look_for_ready(mv_worker_t *w)
{
    int r = mv_waitprobe_look(&w->probe);

    /* Seen serving rather than waiting: its memory now is no start-up figure (policy.h). */
    w->ready_serving = r >= 0 && r != MV_WAIT_STDIN && r != MV_WAIT_IDLE && serving(w);
    if (r == MV_WAIT_STDIN || r == MV_WAIT_IDLE || w->ready_serving)
        mv_worker_became_ready(w);
    else if (r == -ESRCH)
        return; /* gone: its exit follows */
    else if (r < 0)
        mv_wlook_assume_ready(w, strerror(-r));
    else
        mv_wlook_later(w);
}

/* Looks whether the worker is back on its stdin with its task read: then whatever it wrote
 * for the task is in the pipe (a second line is a stray) and the held answer goes. */
static void settle(mv_worker_t *w)
{
    int r = mv_waitprobe_back_on_stdin(&w->probe);

    if (r == 1 && mv_chan_input_pending(&w->chan) == 0) {
        mv_chan_drain(&w->chan);
        mv_wlook_release(w, uv_hrtime()); /* unless drain found a stray line */
    } else if (r < 0) {
        if (r != -ESRCH) /* cannot look any more: as without looking */
            mv_wlook_release(w, w->held.at_ns);
    } else {
        mv_wlook_later(w);
    }
}

static void spin_cb(uv_idle_t *h)
{
    mv_worker_t *w = h->data;

    uv_idle_stop(h);
    if (w->held.held)
        settle(w);
}

static void look_cb(uv_timer_t *t)
{
    mv_worker_t *w = t->data;

    if (w->held.held)
        settle(w);
    else if (w->state == MV_W_SPAWNING)
        look_for_ready(w);
}
