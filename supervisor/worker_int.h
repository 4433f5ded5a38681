/*
 * worker_int: what worker.c, worker_start.c and worker_look.c share (the worker module,
 * worker.h). Nothing else includes this.
 */
#ifndef MV_WORKER_INT_H
#define MV_WORKER_INT_H

#include "worker.h"

/* worker.c */

/* The lifecycle table's step: the only way a worker's state changes. */
void mv_worker_step(mv_worker_t *w, mv_wevent_t ev);
/* GO, with its slot and what this conversation asks of the worker (api), queued: the next
 * flush writes it (an adopted worker's: the dispatcher's pass, with its first task). */
void mv_worker_queue_go(mv_worker_t *w);

/* It has started: its start-up reading, READY, on_ready. */
void mv_worker_became_ready(mv_worker_t *w);
/* The task being worked on is answered; since_ns: when the answer was complete, so that no
 * reading from before then stands as its "after". */
void mv_worker_answered(mv_worker_t *w, bool ok, const uint8_t *kind, size_t kind_len,
                        const void *payload, size_t n, uint64_t since_ns);

/* One of its handles or parts is closed (mv_worker_close counts them down). */
void mv_worker_part_closed(mv_worker_t *w);

/* worker_start.c: the process module's events of a start (proc.h). */
void mv_worker_proc_started(void *owner);
void mv_worker_proc_failed(void *owner, int err, bool retry);

/* worker_look.c */

/* The next look at what it waits for (on the `look` timer). */
void mv_wlook_later(mv_worker_t *w);
/* It cannot be seen starting: taken as ready now (a lines worker's first task unmeasured). */
void mv_wlook_assume_ready(mv_worker_t *w, const char *why);
/* A lines answer in lock-step, held until the worker is back on its stdin. */
void mv_wlook_hold(mv_worker_t *w, bool ok, const void *payload, size_t n);
/* Releases a held answer (nothing more can come for it); a no-op when none is held. */
void mv_wlook_release(mv_worker_t *w, uint64_t since_ns);
/* Closes what looking took (mv_worker_close). */
void mv_wlook_close(mv_worker_t *w);
/* A line that is no answer: a protocol error that says what to do. */
void mv_wlook_stray(mv_worker_t *w, const char *when);

#endif
