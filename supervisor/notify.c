/*
 * notify: sd_notify(3) messages and the watchdog timer, see notify.h.
 *
 * Blocking: sd_notify() opens a fresh AF_UNIX datagram socket, sendmsg()s one datagram to
 * NOTIFY_SOCKET and closes it; it waits for no answer (sd_notify_barrier would: never used
 * here). The socket is a blocking one, so the send could only wait if PID 1's receive queue
 * were full (net.unix.max_dgram_qlen datagrams), which systemd drains from its own event
 * loop — the trade every sd_notify user makes. We send a few datagrams a second at most, so
 * calling it on the loop is fine.
 */
#include "notify.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "util.h"

/* libsystemd is loaded only under systemd (NOTIFY_SOCKET set), not linked: linked, every
 * memvisor maps it and the six libraries it needs (libgcrypt, libgpg-error, liblzma,
 * libzstd, liblz4, libcap), ~400 KiB resident (bench/footprint), and every exec shim loads
 * them again before each worker starts. The prototypes still come from its header. */
_Static_assert(
    __builtin_types_compatible_p(__typeof__(&sd_notify),
                                 __typeof__(((mv_notify_t *)0)->sd_notify)) &&
        __builtin_types_compatible_p(__typeof__(&sd_watchdog_enabled),
                                     __typeof__(((mv_notify_t *)0)->sd_watchdog_enabled)),
    "libsystemd's prototypes");

static int load_libsystemd(mv_notify_t *n)
{
    n->lib = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        const char *e = dlerror();
        mv_warn(n->log, "notify_failed", MV_S("call", "dlopen"), MV_S("library", "libsystemd.so.0"),
                MV_S("error", e ? e : "?"));
        return -ENOENT;
    }
    *(void **)&n->sd_notify = dlsym(n->lib, "sd_notify");
    *(void **)&n->sd_watchdog_enabled = dlsym(n->lib, "sd_watchdog_enabled");
    if (!n->sd_notify || !n->sd_watchdog_enabled) {
        mv_warn(n->log, "notify_failed", MV_S("call", "dlsym"), MV_S("library", "libsystemd.so.0"),
                MV_S("error", "sd_notify or sd_watchdog_enabled missing"));
        dlclose(n->lib);
        n->lib = NULL;
        return -ENOENT;
    }
    return 0;
}

/* Sends one message; a failure is counted, and the first one logged. `what` names the
 * message in the log line. */
static void send_msg(mv_notify_t *n, const char *what, const char *msg)
{
    const char *sock;
    int r = n->sd_notify(0, msg);

    if (r > 0)
        return;
    n->failures++;
    if (n->warned)
        return;
    n->warned = true;
    sock = getenv("NOTIFY_SOCKET");
    mv_warn(n->log, "notify_failed", MV_S("call", "sd_notify"), MV_S("message", what),
            MV_S("socket", sock ? sock : ""),
            MV_S("error", r == 0 ? "NOTIFY_SOCKET unset" : strerror(-r)));
}

/* Copies a status text into out, cut to fit, with newlines made spaces. */
static void clean_status(char out[MV_NOTIFY_STATUS_MAX], const char *text)
{
    size_t i;

    for (i = 0; i < MV_NOTIFY_STATUS_MAX - 1 && text[i]; i++)
        out[i] = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
    out[i] = '\0';
}

static void watchdog_cb(uv_timer_t *t)
{
    mv_notify_t *n = t->data;

    send_msg(n, "WATCHDOG", "WATCHDOG=1");
}

/* Starts the watchdog pings at half of systemd's timeout, as sd_watchdog_enabled(3)
 * recommends. Unref'd: pings never keep the loop alive on their own. */
static int start_watchdog(mv_notify_t *n, uv_loop_t *loop)
{
    uint64_t every = MV_MAX(n->watchdog_usec / 2000, 1); /* ms */
    int r = uv_timer_init(loop, &n->watchdog);

    if (r < 0)
        return r;
    n->timer_inited = true;
    n->watchdog.data = n;
    uv_unref((uv_handle_t *)&n->watchdog);
    return uv_timer_start(&n->watchdog, watchdog_cb, every, every);
}

int mv_notify_open(mv_notify_t *n, uv_loop_t *loop, mv_log_t *log)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    uint64_t usec = 0;
    int r;

    memset(n, 0, sizeof *n);
    n->log = log;
    if (!sock || !*sock || load_libsystemd(n) < 0)
        return 0;
    /* 0 = no watchdog, or one meant for another process (WATCHDOG_PID). */
    r = n->sd_watchdog_enabled(0, &usec);
    if (r < 0) {
        const char *v = getenv("WATCHDOG_USEC");
        mv_warn(log, "notify_failed", MV_S("call", "sd_watchdog_enabled"),
                MV_S("WATCHDOG_USEC", v ? v : ""), MV_S("error", strerror(-r)));
    } else if (r > 0 && usec > 0) {
        n->watchdog_usec = usec;
        r = start_watchdog(n, loop);
        if (r < 0) {
            mv_warn(log, "notify_failed", MV_S("call", "uv_timer_start"),
                    MV_S("error", uv_strerror(r)));
            mv_notify_close(n);
            return r;
        }
    }
    n->enabled = true;
    mv_info(log, "systemd", MV_S("notify", "yes"), MV_I("watchdog_ms", n->watchdog_usec / 1000));
    return 0;
}

void mv_notify_ready(mv_notify_t *n, const char *status)
{
    char msg[MV_NOTIFY_STATUS_MAX + 32], text[MV_NOTIFY_STATUS_MAX];

    if (!n->enabled || n->stopping)
        return;
    if (n->ready && !n->reloading) {
        if (status)
            mv_notify_status(n, "%s", status);
        return;
    }
    if (status) {
        clean_status(text, status);
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", text);
    } else {
        snprintf(msg, sizeof msg, "READY=1");
    }
    send_msg(n, "READY", msg);
    /* Marked even when the send failed: systemd will time the start out, retrying is moot. */
    n->ready = true;
    n->reloading = false;
    if (status)
        memcpy(n->status, text, sizeof text);
}

void mv_notify_status(mv_notify_t *n, const char *fmt, ...)
{
    char raw[MV_NOTIFY_STATUS_MAX], text[MV_NOTIFY_STATUS_MAX], msg[MV_NOTIFY_STATUS_MAX + 8];
    va_list ap;
    int r;

    if (!n->enabled)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    clean_status(text, raw);
    if (strcmp(text, n->status) == 0)
        return;
    snprintf(msg, sizeof msg, "STATUS=%s", text);
    r = n->sd_notify(0, msg);
    if (r > 0) {
        memcpy(n->status, text, sizeof text);
        return;
    }
    /* Not remembered, so the next identical status is tried again; logged once. */
    send_msg(n, "STATUS", msg);
}

void mv_notify_reloading(mv_notify_t *n)
{
    char msg[64];
    struct timespec ts;

    if (!n->enabled || !n->ready || n->reloading || n->stopping)
        return;
    /* systemd >= 253 (Type=notify-reload) wants CLOCK_MONOTONIC in µs with RELOADING=1, to
     * tell this reload from an earlier one; older versions ignore the field. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    send_msg(n, "RELOADING", msg);
    n->reloading = true;
}

void mv_notify_stopping(mv_notify_t *n)
{
    if (!n->enabled || n->stopping)
        return;
    send_msg(n, "STOPPING", "STOPPING=1");
    n->stopping = true;
}

void mv_notify_close(mv_notify_t *n)
{
    if (n->timer_inited && !uv_is_closing((uv_handle_t *)&n->watchdog)) {
        uv_timer_stop(&n->watchdog);
        uv_close((uv_handle_t *)&n->watchdog, NULL);
    }
    n->timer_inited = false;
    n->enabled = false;
    if (n->lib)
        dlclose(n->lib);
    n->lib = NULL;
}

bool mv_notify_env_private(const char *envvar)
{
    static const char *const names[] = {"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="};

    for (size_t i = 0; i < MV_ARRAY_LEN(names); i++)
        if (strncmp(envvar, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}
