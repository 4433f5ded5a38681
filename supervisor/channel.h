/*
 * channel: the bytes between memvisor and one worker process, and nothing else.
 *
 *   api    framed messages (include/memvisor/protocol.h) on a socketpair; every length is
 *          checked by mvw_decode before anything is copied
 *   lines  one task line to the worker's stdin, one result line back from its stdout
 *   none   no conversation
 * and, whatever the protocol, the worker's output (stdout+stderr, or stderr for lines) cut
 * into lines for the log.
 *
 * A channel owns its pipes, its buffers and the conversation's own state (HELLO seen, STOP
 * sent, EOF, broken, snapshot requests outstanding). It knows nothing of tasks or workers:
 * what it decodes goes up through one const events struct (libuv style), and a message that
 * breaks the protocol raises on_error once, after which nothing the worker says counts.
 *
 * Writes are batched: messages are appended during a dispatch pass and sent with one write
 * (uv_try_write, then uv_write for what the socket did not take).
 *
 * Life: mv_chan_init, mv_chan_prepare (the child's stdio), uv_spawn by the caller,
 * mv_chan_spawned (the child's ends close), mv_chan_start (reading starts), ...,
 * mv_chan_close (on_closed once every handle is closed).
 */
#ifndef MV_CHANNEL_H
#define MV_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <memvisor/protocol.h>

#include "config.h"
#include "util.h"

/* What the channel reports; `owner` is the pointer given to mv_chan_init. */
typedef struct mv_chan_events {
    void (*on_hello)(void *owner, uint32_t version);
    /* A task's answer: api (task id, ok = DONE) or lines (id 0, ok unless the fail prefix);
     * kind NULL when the worker named none. */
    void (*on_answer)(void *owner, uint64_t id, bool ok, const uint8_t *kind, size_t kind_len,
                      const void *payload, size_t len);
    /* Service mode: the worker began a request (its own id; kind may be empty) / ended it. */
    void (*on_begin)(void *owner, uint64_t id, const uint8_t *kind, size_t kind_len);
    void (*on_end)(void *owner, uint64_t id, uint32_t status);
    /* The reply to a SNAPSHOT request (JSON text, unchecked). */
    void (*on_snapshot)(void *owner, const uint8_t *payload, size_t len);
    /* One line of the worker's output ("output", or "stderr" for lines workers). */
    void (*on_output)(void *owner, const char *stream, const void *line, size_t len);
    /* The worker broke the protocol; raised once, reading stops. */
    void (*on_error)(void *owner, const char *what);
    /* The worker closed its end of the conversation (EOF or a read error). */
    void (*on_eof)(void *owner);
    /* Every handle of the channel is closed (after mv_chan_close). */
    void (*on_closed)(void *owner);
    /* Everything one read of the conversation brought is handled (NULL: not wanted). */
    void (*on_read)(void *owner);
} mv_chan_events_t;

typedef struct mv_chan_opts {
    mv_protocol_t protocol;
    uint32_t max_message;    /* largest payload or result line */
    const char *fail_prefix; /* lines: a reply starting with this is a failure ("" = none) */
    bool service;            /* BEGIN/END are allowed */
} mv_chan_opts_t;

/* What the child is started with: its stdin, stdout and stderr, and (api) its end of the
 * socketpair, which the caller places at the fd number it announces in MEMVISOR_FD. */
typedef struct mv_chan_stdio {
    uv_stdio_container_t st[3];
    int api_fd; /* -1: none */
} mv_chan_stdio_t;

typedef struct mv_chan {
    mv_chan_opts_t o;
    const mv_chan_events_t *ev;
    void *owner;
    uv_loop_t *loop;

    uv_pipe_t chan;    /* api: our end of the socketpair; lines: the worker's stdout */
    uv_pipe_t in;      /* lines: the worker's stdin */
    uv_pipe_t out;     /* output for the log: stdout+stderr (api, none), stderr (lines) */
    uv_timer_t resume; /* mv_chan_pause: reading the conversation starts again */
    bool chan_open, in_open, out_open, resume_open;
    bool paused; /* the conversation is not read until `resume` fires */
    unsigned open_handles;
    bool closing;
    int fd_out[2];  /* the output pipe until mv_chan_start: [0] ours, [1] the child's */
    int fd_sock[2]; /* until mv_chan_start, [0] ours, [1] the child's: the api socketpair,
                     * or the lines worker's stdout pipe */
    int fd_in[2];   /* lines: its stdin pipe until mv_chan_start: [0] the child's, [1] ours */

    mv_buf_t rbuf;    /* received, not yet decoded */
    mv_buf_t wbuf;    /* to send */
    mv_buf_t wflight; /* being sent by uv_write */
    uv_write_t wreq;
    bool writing;
    mv_buf_t outline; /* partial output line */
    mv_buf_t *lent;   /* rbuf or outline while it points at the shared read buffer (channel.c)... */
    mv_buf_t stash;   /* ...and its own storage meanwhile */

    uint64_t rx_ns;       /* when the bytes being handled were read (uv_hrtime) */
    bool hello;           /* api: HELLO seen */
    uint32_t version;     /* api: the version the worker's HELLO said */
    uint32_t hello_flags; /* api: its HELLO's flags (MVW_HELLO_*) */
    bool heap_late;       /* api v2: GO allowed MVW_F_HEAP_LATE answers (MVW_GO_HEAP_LATE) */
    bool collect;         /* api v2: TASKs ask the worker to collect garbage before answering */
    int heap_fresh;       /* api v2: the answer being handled came with `heap` (1) or not (0) */
    struct mvw_heap heap;
    bool stop_sent;      /* api: STOP sent */
    bool eof;            /* the worker closed its end */
    bool broken;         /* it broke the protocol: nothing more it says counts */
    unsigned snap_asked; /* SNAPSHOT requests sent and not answered yet */
    /* An answer over max_message (within the protocol's own cap), dropped as it arrives
     * and then answered for as a failure of its task (channel.c, drop_long). */
    bool dropping;      /* lines: up to the end of the current line */
    uint64_t drop_left; /* api: bytes of it still to come */
    uint64_t drop_len;  /* its length (lines: so far) */
    uint64_t drop_task; /* api: its task id */
} mv_chan_t;

void mv_chan_init(mv_chan_t *c, uv_loop_t *loop, const mv_chan_opts_t *o,
                  const mv_chan_events_t *ev, void *owner);
/* Makes the pipes (and socketpair) the child gets. 0 or -errno (nothing is left open). */
int mv_chan_prepare(mv_chan_t *c, mv_chan_stdio_t *io);
/* The child was started, or could not be: its ends are closed here. */
void mv_chan_spawned(mv_chan_t *c);
/* Our ends become libuv streams and reading starts. 0 or -errno, with *call naming the
 * libuv call that failed. */
int mv_chan_start(mv_chan_t *c, const char **call);
/* Closes every handle and fd; on_closed follows (at once when nothing was open). */
void mv_chan_close(mv_chan_t *c);

/* Queues a message (api); mv_chan_flush sends. 0 or -ENOMEM. */
int mv_chan_send(mv_chan_t *c, uint16_t type, uint64_t id, const void *payload, size_t len);
/* Queues a task: a TASK message (api) or the line and a newline (lines). 0 or -ENOMEM. */
int mv_chan_send_task(mv_chan_t *c, uint64_t id, const void *data, size_t len);
void mv_chan_flush(mv_chan_t *c);
/* lines: bytes of task input the worker has not read yet (queued here, or in its stdin pipe;
 * 0 for other protocols' pipes). */
size_t mv_chan_input_pending(const mv_chan_t *c);
/* api: STOP (finish the task in hand, start no other), sent once. */
void mv_chan_send_stop(mv_chan_t *c);
/* lines: EOF on the worker's stdin, its polite request to finish. Pending writes are
 * cancelled. */
void mv_chan_close_input(mv_chan_t *c);
/* A protocol error found above the channel (an answer nobody asked for, a wrong version):
 * the channel breaks as for its own errors (on_error, reading stops). */
void mv_chan_fail(mv_chan_t *c, const char *what);
/* Stops reading the conversation for `ms` (answers wait in the pipe, to be read together),
 * then reads on. Not while paused already. 0 or a negative libuv error (nothing paused). */
int mv_chan_pause(mv_chan_t *c, uint64_t ms);
/* Whether the worker can be asked for its own heap view (api, after HELLO, not broken). */
bool mv_chan_can_snapshot(const mv_chan_t *c);
/* Sends a SNAPSHOT request. 0, or -ENOTCONN when it cannot be asked. */
int mv_chan_ask_snapshot(mv_chan_t *c);
/* Reads whatever a dead worker left in its pipes (non-blocking) and handles all of it. */
void mv_chan_drain(mv_chan_t *c);

/* Feeds received bytes as if read from the worker's channel (eof: nothing follows) or its
 * output pipe. What reading does; exposed for tests and fuzzing. */
void mv_chan_input(mv_chan_t *c, const void *p, size_t n, bool eof);
void mv_chan_output(mv_chan_t *c, const void *p, size_t n, bool eof);

#endif
