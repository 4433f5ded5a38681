/*
 * libmemvisor: the C worker API. libc only; link with -lmemvisor (pkg-config memvisor).
 *
 * A batch worker:
 *
 *     mvw_t *w;
 *     mvw_task_t t;
 *     if (mvw_open(&w) < 0) exit(MVW_EXIT_FATAL);
 *     while (mvw_next(w, &t) > 0)
 *         mvw_done(w, result, result_len);      // or mvw_fail(w, msg, len)
 *     mvw_close(w);                             // STOP received, or memvisor went away
 *
 * A service with its own event loop polls mvw_fd() for input and calls mvw_poll() when it is
 * readable; mvw_stop_requested() then tells whether memvisor asked it to drain. Requests are
 * marked with mvw_begin()/mvw_end(), which only write (no round trip).
 *
 * Every call returns 0 (or a count) on success and a negative errno on failure; -EPIPE means
 * memvisor is gone. Not thread-safe: use one mvw_t from one thread. Not async-signal-safe
 * either (they allocate, and may be in the middle of a message): never call them from a
 * signal handler; set a flag there and answer from the loop. An answer longer than memvisor's
 * [worker] max_message (16 MiB by default; the library only knows the protocol's 64 MiB cap)
 * fails its task with an error saying so, and the worker goes on.
 */
#ifndef MEMVISOR_WORKER_H
#define MEMVISOR_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <memvisor/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mvw mvw_t;

typedef struct mvw_task {
    uint64_t id;      /* the task id memvisor assigned (the line number in batch mode) */
    const void *data; /* the task bytes, not NUL-terminated... */
    size_t len;       /* ...but data[len] is a readable '\0' for convenience */
} mvw_task_t;

/*
 * Fills `buf` (capacity `cap`) with a JSON object describing the worker's heap and returns
 * the number of bytes written, or a negative errno. Called from mvw_next()/mvw_poll() when
 * memvisor asks for a snapshot.
 */
typedef long (*mvw_snapshot_fn)(void *arg, char *buf, size_t cap);

/* Connects to memvisor through $MEMVISOR_FD: sends HELLO, waits for GO, and marks the fd
 * close-on-exec so the worker's own children do not hold it. -ENOENT when the process was
 * not started by memvisor; -EBADF, -ENOTSOCK or -ESOCKTNOSUPPORT when MEMVISOR_FD does not
 * name a stream socket; -EPROTONOSUPPORT when memvisor speaks another version. A STOP before
 * GO is a clean stop: 0, and mvw_stop_requested() is true. */
int mvw_open(mvw_t **out);

/* The socket to poll for readability in a service's own event loop. */
int mvw_fd(const mvw_t *w);

/* The worker's slot number (1-based), as memvisor names it in logs and results. */
unsigned mvw_slot(const mvw_t *w);

/* Whether memvisor runs this worker in service mode (tasks made with mvw_begin). */
int mvw_is_service(const mvw_t *w);

/*
 * Batch mode: waits for the next task. Returns 1 with *task filled (valid until the next
 * mvw_next call), 0 when memvisor asked the worker to stop (exit 0 now; tasks received but
 * not started are abandoned, memvisor requeues them), or a negative errno: -EPIPE, -EBADMSG,
 * -EMSGSIZE mean the channel is dead (exit); -EINPROGRESS when the previous task was not
 * answered with mvw_done or mvw_fail; -EOPNOTSUPP in service mode. Answers are buffered and
 * always sent before this call would block.
 */
int mvw_next(mvw_t *w, mvw_task_t *task);

/* Answers the current task: success with a result, or failure with an error text. -EINVAL
 * without a task in hand. The answer goes out at once when the task took >= 50 us, else with
 * the next batch (64 answers, 64 KiB, 200 us, or before mvw_next blocks). An answer of 128 KiB
 * or more goes out at once but for its last byte, which the next mvw_next sends after
 * malloc_trim(0) (any flush sends it before): memvisor reads the worker's memory when the
 * answer is whole, once the caller has freed `result` (docs/protocols.md, "Big answers"). */
int mvw_done(mvw_t *w, const void *result, size_t len);
int mvw_fail(mvw_t *w, const void *error, size_t len);

/* Names the kind of the current task (batch) for leak attribution; sent with the answer.
 * 1..255 bytes; -EINVAL otherwise or without a task in hand. */
int mvw_set_kind(mvw_t *w, const char *kind);

/* Service mode: a request begins (kind may be NULL) / ends (status 0 = ok). No round trip:
 * each is sent at once. -EINPROGRESS from mvw_begin while a request is open, -EINVAL from
 * mvw_end without one, -EOPNOTSUPP in batch mode. */
int mvw_begin(mvw_t *w, const char *kind);
int mvw_end(mvw_t *w, int status);

/* Non-blocking: handles whatever memvisor sent (STOP, SNAPSHOT). 0 or a negative errno.
 * mvw_open already handled what arrived with GO, so waiting for mvw_fd() to be readable
 * before calling this is enough. */
int mvw_poll(mvw_t *w);

/* Whether memvisor asked this worker to stop (drain). */
int mvw_stop_requested(const mvw_t *w);

/* Registers the snapshot callback; without one, the allocator's statistics are sent. */
void mvw_set_snapshot(mvw_t *w, mvw_snapshot_fn fn, void *arg);

/* Writes buffered answers now. mvw_next and mvw_close do this on their own. */
int mvw_flush(mvw_t *w);

/* Flushes, closes the socket and frees `w`. */
void mvw_close(mvw_t *w);

/* A static description of a negative errno this API returned. */
const char *mvw_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
