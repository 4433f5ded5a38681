/*
 * libmemvisor internals shared by its files (mvw.c, template.c); not installed. Names with
 * `mvw__` are private to the library (hidden in the shared object by -fvisibility=hidden).
 */
#ifndef MVW_INT_H
#define MVW_INT_H

#include <stddef.h>
#include <stdint.h>

#include <memvisor/protocol.h>
#include <memvisor/worker.h>

#define KIND_MAX 255u

struct mvw {
    int fd;
    unsigned slot;
    uint32_t prefetch;
    uint32_t mode;
    uint32_t version; /* the conversation's (GO's) */
    int report_heap;  /* GO asked for heap figures with every answer (v2) */
    int err;          /* sticky: the channel is unusable (EOF, malformed input, I/O error) */
    int stopped;      /* STOP received */

    uint8_t *rbuf; /* input: see the invariant at the top */
    size_t rcap, rpos, rlen, scan;

    uint8_t *tbuf; /* the current task's bytes plus a '\0' */
    size_t tcap;
    int in_task; /* a task was handed out and is not answered yet */
    uint64_t task_id;
    uint64_t task_start_ns;
    uint8_t kind_len; /* 0: no kind set for the current task */
    char kind[KIND_MAX + 1];

    uint8_t *wbuf; /* output not sent yet */
    size_t wcap, wlen;
    unsigned wcount;  /* answers in wbuf */
    int task_big;     /* the task in hand, or the one just answered, came in SETTLE_BYTES or
                       * more: its answer ends once its input buffers are given back */
    int settle;       /* wbuf holds a big answer's end, for mvw_next (see mvw__queue): */
    size_t settle_at; /* its last byte (1), or where its late heap figures go (2) */
    int heap_late;    /* GO allowed MVW_F_HEAP_LATE (MVW_GO_HEAP_LATE) */
    uint64_t last_flush_ns;

    int svc_open; /* service mode: BEGIN sent, END not yet */
    uint64_t svc_id;

    mvw_snapshot_fn snap_fn;
    void *snap_arg;
};

/* Waits until fd is ready for `events`. 0 or -errno. */
int mvw__wait_fd(int fd, short events);
/* Records a fatal channel error once and returns it. */
int mvw__fail(mvw_t *w, int err);
/* Sends the write buffer. */
int mvw__flush(mvw_t *w);
/* mvw__queue's `heap` for a big answer whose heap figures go at its end, measured when it
 * is flushed (MVW_F_HEAP_LATE). */
extern const struct mvw_heap mvw__heap_late;
/* Queues one message (header, optional kind, optional heap figures, body). */
int mvw__queue(mvw_t *w, uint16_t type, uint64_t task, const char *kind, size_t kind_len,
               const struct mvw_heap *heap, const void *body, size_t len);
/* Answers a SNAPSHOT request at once. */
int mvw__answer_snapshot(mvw_t *w);
/* Handles the unscanned input (TASKs stay, STOP and SNAPSHOT are acted on). */
int mvw__scan(mvw_t *w);

/* template.c: whether this process can serve as a template now (it is single-threaded). */
int mvw__can_template(void);
/* template.c: serves FORK requests after GO said MVW_MODE_TEMPLATE. Returns 1 in a new worker
 * (a child whose channel now has the template's fd number: mvw_open starts over there), 0
 * when memvisor retired the template (w->stopped), or a negative errno. */
int mvw__serve_template(mvw_t *w);

#endif
