/*
 * worker_look: what a lines or none worker waits for (waitprobe.h), part of the worker module
 * (worker.h): when it is ready, and, for a lines worker in lock-step, when its answer is
 * certain. Looks while it starts are taken on the worker's `look` timer: every millisecond
 * (every 10 ms after 200 looks). Looks at a held answer are taken at once, then on `fine`, a
 * timerfd: microseconds apart at first (mv_waitprobe_held_delay_ns), every millisecond once
 * the answer is MV_PROBE_HELD_FINE_NS old. A worker is back on its stdin tens of microseconds
 * after its answer, given a CPU: a millisecond timer capped lock-step at ~1,000 tasks a second.
 * The supervisor sleeps between looks rather than spin on the loop: a spin kept a worker that
 * shared its CPU off it until the spin gave up, so every task waited for the millisecond
 * timer (1 run in 7 of bench/w1 lines lock-step ran ~10x slower), and a CPU kept busy made
 * the scheduler put both workers on the other one.
 */
#include "worker_int.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>
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
    w->held.count++;
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
    mv_chan_fail(&w->chan, what);
}

#define LOOK_FAST_MS    1   /* between looks while it starts... */
#define LOOK_FAST_LOOKS 200 /* ...for the first looks, then: */
#define LOOK_SLOW_MS    10

static void look_cb(uv_timer_t *t);
static void fine_cb(uv_poll_t *h, int status, int events);
static void fine_closed_cb(uv_handle_t *h);

/* The `fine` timer, opened at the first held answer and polled from then on: it fires only
 * when armed, and a late firing (the answer went another way) is one look too many. 0 or
 * -errno (then the `look` timer). */
static int fine_open(mv_worker_t *w)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (uv_poll_init(w->o.loop, &w->fine, fd) < 0) {
        close(fd);
        return -ENOMEM;
    }
    w->fine.data = w;
    w->fine_fd = fd;
    w->open++;
    uv_poll_start(&w->fine, UV_READABLE, fine_cb);
    return 0;
}

/* The next look at a held answer, `ns` from now. 0 or -errno. */
static int fine_start(mv_worker_t *w, uint64_t ns)
{
    struct itimerspec at = {.it_value = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)}};

    if (w->fine_fd < 0 && fine_open(w) < 0)
        return -ENOTSUP;
    return timerfd_settime(w->fine_fd, 0, &at, NULL) < 0 ? -errno : 0;
}

void mv_wlook_close(mv_worker_t *w)
{
    if (w->fine_fd >= 0)
        uv_close((uv_handle_t *)&w->fine, fine_closed_cb);
}

void mv_wlook_later(mv_worker_t *w)
{
    uint64_t ns;

    w->looks++;
    if (!w->held.held) {
        uv_timer_start(&w->look, look_cb, w->looks <= LOOK_FAST_LOOKS ? LOOK_FAST_MS : LOOK_SLOW_MS,
                       0);
        return;
    }
    ns = mv_waitprobe_held_delay_ns(uv_hrtime() - w->held.at_ns);
    if (ns >= MV_PROBE_HELD_SLOW_NS || fine_start(w, ns) < 0)
        uv_timer_start(&w->look, look_cb, (ns + 999999) / 1000000, 0);
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

    w->held.looks++;
    w->held.slow += uv_hrtime() - w->held.at_ns >= MV_PROBE_HELD_SLOW_NS;
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

static void fine_closed_cb(uv_handle_t *h)
{
    mv_worker_t *w = h->data;

    close(w->fine_fd);
    w->fine_fd = -1;
    mv_worker_part_closed(w);
}

static void fine_cb(uv_poll_t *h, int status, int events)
{
    mv_worker_t *w = h->data;
    uint64_t expired;

    (void)status, (void)events;
    if (read(w->fine_fd, &expired, sizeof expired) < 0)
        return; /* re-armed since it fired */
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
