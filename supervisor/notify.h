/*
 * notify: telling systemd how memvisor is doing, through sd_notify(3): READY=1 once every
 * worker slot is up, STATUS= lines, RELOADING=1 / READY=1 around a reload, STOPPING=1, and
 * WATCHDOG=1 pings from a libuv timer (so a stuck event loop stops the pings and systemd
 * restarts the service).
 *
 * Without NOTIFY_SOCKET (not under systemd, tests, batch runs) every call is a cheap no-op
 * and nothing is logged. Nothing here is ever fatal: a failed send is logged once at warn.
 *
 * The environment is left as it is (sd_notify's unset_environment = 0): workers get a copy
 * of memvisor's environment, so whoever builds it drops the entries mv_notify_env_private
 * names — a worker must not ping memvisor's watchdog or declare memvisor ready.
 */
#ifndef MV_NOTIFY_H
#define MV_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "log.h"

#define MV_NOTIFY_STATUS_MAX 256 /* longer STATUS= texts are cut */

typedef struct mv_notify {
    uv_timer_t watchdog; /* WATCHDOG=1 every watchdog_usec / 2; unref'd */
    mv_log_t *log;
    bool enabled;                      /* NOTIFY_SOCKET was set at open, and not closed since */
    bool timer_inited;                 /* `watchdog` must be closed */
    bool ready;                        /* READY=1 sent */
    bool reloading;                    /* RELOADING=1 sent, READY=1 not yet */
    bool stopping;                     /* STOPPING=1 sent */
    bool warned;                       /* a failed send was logged (only the first is) */
    uint64_t watchdog_usec;            /* WatchdogSec= for us; 0 = no watchdog */
    unsigned failures;                 /* failed sends, logged or not */
    char status[MV_NOTIFY_STATUS_MAX]; /* the last STATUS= sent */
    void *lib;                         /* libsystemd, loaded when NOTIFY_SOCKET is set */
    int (*sd_notify)(int unset_environment, const char *state);
    int (*sd_watchdog_enabled)(int unset_environment, uint64_t *usec);
} mv_notify_t;

/* Reads NOTIFY_SOCKET and the watchdog variables (WATCHDOG_USEC, honoured only when
 * WATCHDOG_PID is unset or ours) and starts the watchdog timer when there is one. Logs
 * `event=systemd notify=yes watchdog_ms=N` under systemd, nothing otherwise. A malformed
 * WATCHDOG_USEC is logged and ignored. 0, or a negative errno from libuv (the timer; then
 * every call is a no-op, and `n` lives until the loop has run, as after mv_notify_close). */
int mv_notify_open(mv_notify_t *n, uv_loop_t *loop, mv_log_t *log);

/* READY=1 with STATUS=status (NULL: none). Sent once, and once more after each
 * mv_notify_reloading (systemd expects READY=1 to end a reload); otherwise it only updates
 * the status, as mv_notify_status would. Nothing after mv_notify_stopping. */
void mv_notify_ready(mv_notify_t *n, const char *status);

/* STATUS=<printf text>, skipped when identical to the last one sent. Newlines become
 * spaces (a newline would start another assignment). */
void mv_notify_status(mv_notify_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* RELOADING=1 (with MONOTONIC_USEC=, which systemd >= 253 wants with it); end the reload
 * with mv_notify_ready. Only once ready, and not twice in a row. */
void mv_notify_reloading(mv_notify_t *n);

/* STOPPING=1, once. */
void mv_notify_stopping(mv_notify_t *n);

/* Stops the watchdog and uv_close()s its timer (`n` must live until the loop has run the
 * close); every call after this is a no-op. Safe when open was not under systemd. */
void mv_notify_close(mv_notify_t *n);

/* Whether an environment entry "NAME=value" is one of systemd's notify variables
 * (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID), never passed on to workers. */
bool mv_notify_env_private(const char *envvar);

#endif
