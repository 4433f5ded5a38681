/*
 * memvisor wire protocol (`[worker] protocol = api`), declared once for both sides.
 *
 * A worker talks to memvisor over one SOCK_STREAM socketpair whose fd number is in the
 * environment variable MEMVISOR_FD. Every message is a fixed 16-byte header followed by
 * `length` bytes of payload:
 *
 *     offset 0   u32 length   payload bytes that follow the header
 *     offset 4   u16 type     enum mvw_msg_type
 *     offset 6   u16 flags    MVW_F_* bits; unknown bits are a protocol error
 *     offset 8   u64 task     task id (TASK, DONE, FAIL, BEGIN, END), 0 otherwise
 *
 * Integers are in host byte order: the socketpair never leaves the machine.
 *
 * Conversation:
 *     worker -> HELLO {version}            first message, once
 *     memvisor -> GO {version, slot, prefetch, mode}
 *     memvisor -> TASK id payload          up to `prefetch` outstanding
 *     worker -> DONE id result | FAIL id error, in the order the tasks arrived
 *     memvisor -> STOP                     finish the task in hand, start no other, exit 0
 *     memvisor -> SNAPSHOT / worker -> SNAPSHOT {json}     heap view on request
 *     worker -> BEGIN id kind / END id status              service mode: worker-made tasks
 *
 * Versions. memvisor speaks every version from MVW_PROTOCOL_MIN to MVW_PROTOCOL_VERSION and
 * answers HELLO with a GO of the version the worker said: that is the conversation's version.
 * Version 2 adds, for leak attribution (docs/leaks.md):
 *   - GO's mode may carry MVW_GO_HEAP: the worker answers every task with its own heap
 *     figures (MVW_F_HEAP on DONE/FAIL, struct mvw_heap after the kind). memvisor asks only
 *     when it has no better figures (no heap preload) and counts them for attribution only.
 *     In service mode the figures go with BEGIN (after the kind) and END (before the status),
 *     measured as the request begins and ends: memvisor reads a request's messages after
 *     the fact, so only the worker can say what its heap was at both ends;
 *   - TASK may carry MVW_F_COLLECT: the worker collects garbage (Python: gc.collect()) after
 *     the task and before it answers, so that the reading at the answer holds no garbage
 *     waiting for a collector. Sent for the tasks whose readings a verdict is made from.
 *   - the warm template (a worker whose start-up runs once and which forks new workers on
 *     request, docs/templates.md):
 *     worker -> HELLO {version 2, flags MVW_HELLO_TEMPLATE}   it can serve as a template
 *     memvisor -> GO {mode MVW_MODE_TEMPLATE}          serve as the template
 *     worker -> TEMPLATE {pid, features}               ready: nothing is sent before it
 *     memvisor -> FORK id {slot, ...} + fds            (SCM_RIGHTS, see struct mvw_fork)
 *     worker -> FORKED id {pid | error}                in the order of the FORKs
 *     memvisor -> STOP                                 retire: answer what was asked, exit 0
 *   Every message memvisor sends a template after GO carries its fds on its own first byte,
 *   so the template reads them with exact-size recvmsg calls (the header, then the payload)
 *   and the fds that come during those reads belong to that message. TEMPLATE is what allows
 *   memvisor to send FORK at all: the template's handshake reads ahead with plain recv(),
 *   which would drop the fds of a FORK it read along with GO.
 *   - a big answer's heap figures at its end: a worker whose HELLO carries
 *     MVW_HELLO_HEAP_LATE, asked for heap figures (MVW_GO_HEAP), gets MVW_GO_HEAP_LATE too and
 *     may then send DONE/FAIL with MVW_F_HEAP | MVW_F_HEAP_LATE: the struct mvw_heap is the
 *     payload's last bytes, measured once the answer's result is freed (the library sends
 *     the rest first and them when the worker is back for its next task). A HELLO flag and a
 *     GO bit, not a version: memvisor ignores HELLO flags it does not know, and sends the bit
 *     only to a worker that said it understands it (docs/protocols.md, "Big answers").
 * A version-1 worker gets none of these.
 *
 * The decoder below checks the length against the caller's limit before anything is copied,
 * and checks type, flags, direction and fixed payload sizes. Short reads are normal: the
 * decoder returns 0 ("need more bytes") until a whole message is buffered.
 *
 * This header needs libc only and has no link-time dependency.
 */
#ifndef MEMVISOR_PROTOCOL_H
#define MEMVISOR_PROTOCOL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MVW_PROTOCOL_VERSION 2u
#define MVW_PROTOCOL_MIN     1u /* the oldest version memvisor still speaks */
#define MVW_HEADER_SIZE      16u
/* Hard cap of one payload; `[worker] max_message` can only lower it. */
#define MVW_MAX_PAYLOAD (64u << 20)
/* Environment variable that carries the socketpair fd number. */
#define MVW_ENV_FD "MEMVISOR_FD"
/* A worker that exits with this code is not respawned (sysexits' EX_CONFIG). */
#define MVW_EXIT_FATAL 78

enum mvw_msg_type {
    MVW_MSG_HELLO = 1, /* w->s  payload: struct mvw_hello */
    MVW_MSG_GO,        /* s->w  payload: struct mvw_go */
    MVW_MSG_TASK,      /* s->w  task id, payload: the task line (any bytes) */
    MVW_MSG_DONE,      /* w->s  task id, payload: the result (any bytes) */
    MVW_MSG_FAIL,      /* w->s  task id, payload: the error (any bytes) */
    MVW_MSG_STOP,      /* s->w  no payload: finish the current task, start no other, exit 0 */
    MVW_MSG_BEGIN,     /* w->s  service mode: a task begins; task id chosen by the worker */
    MVW_MSG_END,       /* w->s  service mode: that task ended; payload: u32 status (0 = ok) */
    MVW_MSG_SNAPSHOT,  /* s->w request (no payload); w->s reply (payload: JSON text) */
    MVW_MSG_FORK,      /* s->w template: start a worker; payload struct mvw_fork, fds */
    MVW_MSG_FORKED,    /* w->s template: FORK's answer (same id); payload struct mvw_forked */
    MVW_MSG_TEMPLATE,  /* w->s template: ready for FORK; payload struct mvw_template */
    MVW_MSG_TYPE_MAX
};

/* Flags. DONE/FAIL/BEGIN with MVW_F_KIND: payload starts with u8 n, then n bytes of task
 * kind, then the result/error (BEGIN: nothing else). DONE/FAIL with MVW_F_HEAP (v2): a
 * struct mvw_heap follows the kind (or starts the payload), then the result/error; with
 * MVW_F_HEAP_LATE too (after MVW_GO_HEAP_LATE), the struct is the payload's last bytes
 * instead. TASK with MVW_F_COLLECT (v2): collect garbage before answering. */
#define MVW_F_KIND      0x0001u
#define MVW_F_HEAP      0x0002u
#define MVW_F_COLLECT   0x0004u
#define MVW_F_HEAP_LATE 0x0008u
#define MVW_F_VALID     0x000fu

/* GO modes: the low byte; higher bits are requests (v2). */
#define MVW_MODE_BATCH    0u      /* memvisor sends TASKs */
#define MVW_MODE_SERVICE  1u      /* the worker makes its own tasks with BEGIN/END */
#define MVW_MODE_TEMPLATE 2u      /* version 2: fork workers on FORK (see above) */
#define MVW_MODE_MASK     0x00ffu /* the mode itself */
#define MVW_GO_HEAP       0x0100u /* answer every task with MVW_F_HEAP (batch mode) */
#define MVW_GO_HEAP_LATE  0x0200u /* with MVW_GO_HEAP: MVW_F_HEAP_LATE allowed (HELLO said so) */
#define MVW_GO_VALID      (MVW_MODE_MASK | MVW_GO_HEAP | MVW_GO_HEAP_LATE)

/* HELLO flags. memvisor ignores the ones it does not know. */
#define MVW_HELLO_TEMPLATE  0x1u /* version 2: this worker can serve as a template */
#define MVW_HELLO_HEAP_LATE 0x2u /* version 2: it can send MVW_F_HEAP_LATE answers */

struct mvw_hello {
    uint32_t version; /* MVW_PROTOCOL_VERSION the worker speaks */
    uint32_t flags;   /* reserved, 0 */
};

struct mvw_go {
    uint32_t version;  /* the conversation's version: the worker's, when memvisor speaks it */
    uint32_t slot;     /* worker slot number, 1-based */
    uint32_t prefetch; /* most TASKs memvisor keeps outstanding on this worker */
    uint32_t mode;     /* MVW_MODE_*, plus MVW_GO_HEAP (v2) */
};

/* A worker's own heap figures, sent with an answer (MVW_F_HEAP), as the worker's allocator
 * sees them just before it answers: C, glibc's mallinfo2() (bytes in use in its arenas plus
 * its mmap'd chunks); Python, the same through ctypes plus sys.getallocatedblocks(). -1 =
 * unknown. memvisor makes per-task deltas of consecutive answers. */
struct mvw_heap {
    int64_t live_bytes; /* bytes the allocator has handed out and not had back */
    int64_t blocks;     /* live blocks (Python: pymalloc's allocated blocks) */
};

/*
 * FORK: start a worker from the template. The fds come with the message (SCM_RIGHTS), in
 * this order: the output pipe (the child's stdout and stderr), then `nfds` fds the child gets
 * as fds 3, 4, ... (as an exec'd worker inherits them: the listen sockets, then its channel,
 * at the number MEMVISOR_FD already names), then the cgroup directory (MVW_FORK_CGROUP_DIR,
 * cgroup v2: clone3(CLONE_INTO_CGROUP), so the child is born in it), then its cgroup.procs
 * (MVW_FORK_CGROUP_PROCS: the child writes "0" to it before anything else when it was not
 * born there: cgroup v1, or a kernel without CLONE_INTO_CGROUP).
 */
#define MVW_FORK_CGROUP_DIR   0x1u
#define MVW_FORK_CGROUP_PROCS 0x2u
#define MVW_FORK_FLAGS        0x3u
#define MVW_FORK_MAX_FDS      64u /* nfds limit: well under the kernel's SCM_MAX_FD (253) */
struct mvw_fork {
    uint32_t slot;  /* the worker's slot (its MEMVISOR_SLOT) */
    uint32_t nfds;  /* fds for 3, 4, ... */
    uint32_t flags; /* MVW_FORK_* */
    uint32_t reserved;
};

/* FORKED: the child's pid, or the errno of the failed start (pid 0). */
#define MVW_FORKED_IN_CGROUP 0x1u /* born in its cgroup (CLONE_INTO_CGROUP) */
struct mvw_forked {
    int32_t pid;
    int32_t error;
    uint32_t flags; /* MVW_FORKED_* */
    uint32_t reserved;
};

/* TEMPLATE: the template is ready. */
#define MVW_TEMPLATE_TID 0x1u /* its children's thread ids are set as fork() sets them */
struct mvw_template {
    uint32_t pid;      /* the template's own pid */
    uint32_t features; /* MVW_TEMPLATE_* */
};

struct mvw_header {
    uint32_t length;
    uint16_t type;
    uint16_t flags;
    uint64_t task;
};

/* One decoded message; `payload` points into the caller's buffer. */
struct mvw_msg {
    struct mvw_header h;
    const uint8_t *payload;
};

/* Who sent a message: a decoder accepts only the other side's types. */
enum mvw_dir { MVW_FROM_WORKER, MVW_FROM_SUPERVISOR };

/* Writes the header for a message into out[MVW_HEADER_SIZE]. */
static inline void mvw_put_header(uint8_t *out, uint16_t type, uint16_t flags, uint64_t task,
                                  uint32_t length)
{
    struct mvw_header h = {length, type, flags, task};
    memcpy(out, &h.length, 4);
    memcpy(out + 4, &h.type, 2);
    memcpy(out + 6, &h.flags, 2);
    memcpy(out + 8, &h.task, 8);
}

/* Fixed payload size of a type, or -1 when the payload is variable. */
static inline long mvw_fixed_size(uint16_t type)
{
    switch (type) {
    case MVW_MSG_HELLO: return (long)sizeof(struct mvw_hello);
    case MVW_MSG_GO: return (long)sizeof(struct mvw_go);
    case MVW_MSG_STOP: return 0;
    case MVW_MSG_END: return 4;
    case MVW_MSG_FORK: return (long)sizeof(struct mvw_fork);
    case MVW_MSG_FORKED: return (long)sizeof(struct mvw_forked);
    case MVW_MSG_TEMPLATE: return (long)sizeof(struct mvw_template);
    default: return -1;
    }
}

/* Whether `type` may travel in direction `dir`. */
static inline int mvw_type_allowed(uint16_t type, enum mvw_dir dir)
{
    switch (type) {
    case MVW_MSG_HELLO:
    case MVW_MSG_DONE:
    case MVW_MSG_FAIL:
    case MVW_MSG_BEGIN:
    case MVW_MSG_END:
    case MVW_MSG_FORKED:
    case MVW_MSG_TEMPLATE: return dir == MVW_FROM_WORKER;
    case MVW_MSG_GO:
    case MVW_MSG_TASK:
    case MVW_MSG_STOP:
    case MVW_MSG_FORK: return dir == MVW_FROM_SUPERVISOR;
    case MVW_MSG_SNAPSHOT: return 1;
    default: return 0;
    }
}

/*
 * Decodes one message from buf[0..len).
 * Returns the number of bytes it used (> 0), 0 when more bytes are needed, or
 *   -EMSGSIZE  payload longer than `max_payload` (checked before anything is copied)
 *   -EBADMSG   unknown type, wrong direction, unknown flag, or wrong fixed payload size
 *              (including a non-empty SNAPSHOT request or BEGIN without MVW_F_KIND)
 */
static inline long mvw_decode(const uint8_t *buf, size_t len, uint32_t max_payload,
                              enum mvw_dir dir, struct mvw_msg *out)
{
    struct mvw_header h;
    long fixed;

    if (len < MVW_HEADER_SIZE)
        return 0;
    memcpy(&h.length, buf, 4);
    memcpy(&h.type, buf + 4, 2);
    memcpy(&h.flags, buf + 6, 2);
    memcpy(&h.task, buf + 8, 8);
    if (!mvw_type_allowed(h.type, dir) || (h.flags & ~MVW_F_VALID))
        return -EBADMSG;
    if (h.length > max_payload || h.length > MVW_MAX_PAYLOAD)
        return -EMSGSIZE;
    fixed = mvw_fixed_size(h.type);
    if ((h.flags & MVW_F_KIND) && h.type != MVW_MSG_DONE && h.type != MVW_MSG_FAIL &&
        h.type != MVW_MSG_BEGIN)
        return -EBADMSG;
    /* MVW_F_HEAP on answers, BEGIN and END; MVW_F_HEAP_LATE on answers only (mvw_split_heap
     * refuses a late one without F_HEAP). END's fixed status grows by the figures. */
    if ((h.flags & MVW_F_HEAP_LATE) && h.type != MVW_MSG_DONE && h.type != MVW_MSG_FAIL)
        return -EBADMSG;
    if ((h.flags & MVW_F_HEAP) && h.type != MVW_MSG_DONE && h.type != MVW_MSG_FAIL &&
        h.type != MVW_MSG_BEGIN && h.type != MVW_MSG_END)
        return -EBADMSG;
    if (h.type == MVW_MSG_END && (h.flags & MVW_F_HEAP))
        fixed += (long)sizeof(struct mvw_heap);
    if (fixed >= 0 && (long)h.length != fixed)
        return -EBADMSG;
    if ((h.flags & MVW_F_COLLECT) && h.type != MVW_MSG_TASK)
        return -EBADMSG;
    /* Payloads the conversation says are empty: a SNAPSHOT request, a BEGIN without kind
     * (or with heap figures only: exactly them). */
    if (h.length != 0 && h.type == MVW_MSG_SNAPSHOT && dir == MVW_FROM_SUPERVISOR)
        return -EBADMSG;
    if (h.type == MVW_MSG_BEGIN && !(h.flags & MVW_F_KIND) &&
        h.length != ((h.flags & MVW_F_HEAP) ? sizeof(struct mvw_heap) : 0))
        return -EBADMSG;
    if (len - MVW_HEADER_SIZE < h.length)
        return 0;
    out->h = h;
    out->payload = buf + MVW_HEADER_SIZE;
    return (long)(MVW_HEADER_SIZE + h.length);
}

/* Splits a payload with MVW_F_KIND into kind and rest. Returns 0 or -EBADMSG. */
static inline int mvw_split_kind(const struct mvw_msg *m, const uint8_t **kind, size_t *kind_len,
                                 const uint8_t **rest, size_t *rest_len)
{
    size_t n;

    if (!(m->h.flags & MVW_F_KIND)) {
        *kind = NULL;
        *kind_len = 0;
        *rest = m->payload;
        *rest_len = m->h.length;
        return 0;
    }
    if (m->h.length < 1)
        return -EBADMSG;
    n = m->payload[0];
    if (n == 0 || n > m->h.length - 1)
        return -EBADMSG;
    /* BEGIN carries the kind and nothing else (but its heap figures). */
    if (m->h.type == MVW_MSG_BEGIN &&
        m->h.length != 1 + n + ((m->h.flags & MVW_F_HEAP) ? sizeof(struct mvw_heap) : 0))
        return -EBADMSG;
    *kind = m->payload + 1;
    *kind_len = n;
    *rest = m->payload + 1 + n;
    *rest_len = m->h.length - 1 - n;
    return 0;
}

/* After mvw_split_kind: takes the struct mvw_heap of a DONE/FAIL/BEGIN/END with MVW_F_HEAP
 * off the front of rest[0..*rest_len) (with MVW_F_HEAP_LATE, off its end) into *heap. 1 when there
 * was one, 0 when the message has none (*heap untouched), -EBADMSG when it is cut short or
 * has MVW_F_HEAP_LATE without MVW_F_HEAP. */
static inline int mvw_split_heap(const struct mvw_msg *m, const uint8_t **rest, size_t *rest_len,
                                 struct mvw_heap *heap)
{
    if (!(m->h.flags & MVW_F_HEAP))
        return m->h.flags & MVW_F_HEAP_LATE ? -EBADMSG : 0;
    if (*rest_len < sizeof *heap)
        return -EBADMSG;
    *rest_len -= sizeof *heap;
    if (m->h.flags & MVW_F_HEAP_LATE) {
        memcpy(heap, *rest + *rest_len, sizeof *heap);
        return 1;
    }
    memcpy(heap, *rest, sizeof *heap);
    *rest += sizeof *heap;
    return 1;
}

/* A short, stable name for a type, for logs. */
static inline const char *mvw_type_name(uint16_t type)
{
    static const char *const names[MVW_MSG_TYPE_MAX] = {
        "?",     "HELLO", "GO",       "TASK", "DONE",   "FAIL",     "STOP",
        "BEGIN", "END",   "SNAPSHOT", "FORK", "FORKED", "TEMPLATE",
    };
    return type < MVW_MSG_TYPE_MAX ? names[type] : "?";
}

#endif
