/*
 * heapmon: the supervisor's side of a worker's heap counters page (include/memvisor/heap.h,
 * filled by libmemvisor-heap.so preloaded into the worker). No libuv, no log: calls return 0
 * or -errno and the caller logs.
 *
 * Per worker process:
 *
 *     mv_heapmon_t hm;
 *     mv_heapmon_open(&hm);            before the spawn: a sealed memfd, mapped read-only here
 *     ...the child gets hm.fd at some fd number N (dup2 / libuv stdio: the memfd itself is
 *        O_CLOEXEC), MEMVISOR_HEAP_FD=N and LD_PRELOAD=<mv_heapmon_library()>...
 *     mv_heapmon_read(&hm, &r);        at each task boundary: ~20 loads, no system call
 *     mv_heapmon_close(&hm);           after the worker is gone
 *
 * A reading's live/mapped figures are deltas-safe only within one `generation` and one `pid`:
 * a worker that exec'd (same pid) starts again from zero with a new generation.
 */
#ifndef MV_HEAPMON_H
#define MV_HEAPMON_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memvisor/heap.h>
#include <memvisor/protocol.h>

typedef struct mv_heap_reading {
    int pid;             /* the process counting; 0: nothing attached yet */
    uint64_t generation; /* +1 at each attach */
    uint64_t flags;      /* MVH_F_* */
    int64_t live_bytes;  /* malloc family, usable sizes of live blocks */
    int64_t mmap_bytes;  /* anonymous mappings made directly */
    int64_t peak_bytes;  /* highest live + mmap since attach or the last reset */
    uint64_t allocs, frees, reallocs, mmaps, munmaps;
} mv_heap_reading_t;

typedef struct mv_heapmon {
    int fd;                          /* the memfd, O_CLOEXEC; -1 when closed */
    const volatile mvh_page_t *page; /* PROT_READ, MAP_SHARED */
} mv_heapmon_t;

/* Creates the page: memfd (sealed against shrinking and growing), header written, mapped
 * read-only. 0 or -errno; on error hm->fd is -1 and nothing is left open. */
int mv_heapmon_open(mv_heapmon_t *hm);

/* A consistent reading: two passes over the page agree (no call of the worker completed in
 * between; a call in progress at that instant may show half-applied, at most one call's
 * figures per worker thread). 0; -ENODATA nothing attached yet (r->pid == 0);
 * -EPROTO the page's header is not ours any more (the worker overwrote it); -EAGAIN the
 * figures kept moving (a busy multi-threaded worker): *r holds the last pass. */
int mv_heapmon_read(const mv_heapmon_t *hm, mv_heap_reading_t *r);

/* live + mmap: the figure per-task heap deltas are made of. */
static inline int64_t mv_heap_total(const mv_heap_reading_t *r)
{
    return r->live_bytes + r->mmap_bytes;
}

/* Starts a new peak window: peak = the current live + mmap. Written through the fd (the
 * mapping is read-only). A race with the worker can only lose the in-flight call's bytes
 * from the new peak; call it when the worker is between tasks. 0 or -errno. */
int mv_heapmon_reset_peak(mv_heapmon_t *hm);

/* Unmaps and closes; safe on a closed or zeroed-then-failed heapmon. */
void mv_heapmon_close(mv_heapmon_t *hm);

/* Whether `cmd` (a path, or a name looked up in $PATH) is a dynamically linked executable,
 * i.e. one LD_PRELOAD reaches: an ELF with a PT_INTERP program header. A script (#!) is
 * judged by its interpreter (through `env NAME`, too). 1 dynamic, 0 static (static-pie
 * included: no interpreter runs it), -ENOENT not found, -ENOEXEC neither ELF nor script,
 * -ELOOP scripts nested too deep, other -errno of open/read. Reads a few hundred bytes of
 * one to four files: call it once per configuration, not per spawn. */
int mv_heapmon_dynamic(const char *cmd);

/* Where libmemvisor-heap.so is for the memvisor binary at `exe` (NULL: this process): next to
 * it (the build tree), else in ../lib (an install). 0 and the path in buf, or -ENOENT. */
int mv_heapmon_library(const char *exe, char *buf, size_t cap);

/* mv_heapmon_dynamic, and the ELF that finally runs (the interpreter of a script, through
 * `env NAME` too) in elf[cap] when elf is not NULL. */
int mv_heapmon_probe(const char *cmd, char *elf, size_t cap);

/* Whether argv runs a CPython interpreter, as the plan judges it (the command after `env
 * [VAR=...]`, or a python* name on the way to the ELF that runs: a script's "#!", a pyenv
 * shim). Reads a few files: once per configuration. */
bool mv_heapmon_python(char *const *argv);

/* The worker module's directory of the source tree when `exe` (NULL: this process) runs from
 * its build tree: the parent of exe's directory holds worker-api/python/memvisor_worker.py
 * (build/memvisor in the tree; an installed bin/memvisor has no such sibling). Its physical
 * path in buf. 0, -ENOENT (none: installed), -ENAMETOOLONG, or -errno of /proc/self/exe. */
int mv_heapmon_source_python(const char *exe, char *buf, size_t cap);

/* ---- what a pool's workers get: [leak] heap, decided once per configuration ---- */

typedef enum { MV_HEAPMODE_OFF, MV_HEAPMODE_PRELOAD, MV_HEAPMODE_AUTO } mv_heapmode_t;
typedef enum { MV_HEAPPY_AUTO, MV_HEAPPY_YES, MV_HEAPPY_NO } mv_heappy_t;

typedef struct mv_heapplan {
    bool preload;           /* each worker gets a page, the library and MEMVISOR_HEAP_FD */
    bool python;            /* ...and PYTHONMALLOC=malloc (unless its environment sets one) */
    const char *why;        /* static: what decided it, for the log */
    char library[PATH_MAX]; /* the preload library, when preload */
} mv_heapplan_t;

/* The plan for workers running argv under `mode`: off; preload (unless the library cannot be
 * found or the command is statically linked: LD_PRELOAD would do nothing); auto = preload for
 * workers that get tasks (tasks = api or lines) when the command is dynamically linked.
 * Python: the command (after `env [VAR=...]`) or the ELF that finally runs is python*; or
 * `py` says yes/no. `self_exe` locates the library (NULL: this process). Always fills *plan;
 * reads a few files (mv_heapmon_probe): once per configuration, never per spawn. */
void mv_heapmon_plan(mv_heapmode_t mode, mv_heappy_t py, bool tasks, char *const *argv,
                     const char *self_exe, mv_heapplan_t *plan);

/* ---- one worker's heap figures per task window (worker.c) ---- */

/* Bytes per live block the detector counts for a worker that reports blocks its bytes do not
 * hold: Python's small objects under pymalloc (sys.getallocatedblocks()), which no cheap
 * call sizes. A typical small object; only a worker's own reports use it (the preload counts
 * every block's bytes). */
#define MV_HEAP_BLOCK_BYTES 64

/* What a task's window saw of the heap. */
typedef struct mv_heap_task {
    bool measured;
    const char *source;    /* "preload" (the page) or "worker" (its own figures, api v2) */
    int64_t before, after; /* live bytes */
    int64_t blocks;        /* live blocks it left (allocations - frees); INT64_MIN unknown */
    int64_t allocs, frees; /* blocks allocated and freed during it; -1 unknown */
} mv_heap_task_t;

typedef struct mv_heapwin {
    mv_heapmon_t hm; /* the page (fd -1: no preload) */
    mv_heap_reading_t open, closed;
    bool open_ok;       /* `open` holds the reading at the window's start */
    bool closed_ok;     /* `closed` holds the reading at the last window's end */
    struct mvh_report { /* the worker's own figures (api v2, no preload) */
        int64_t bytes, blocks;
        bool have;
    } prev; /* ...with its previous answer: the "before" of the next */
} mv_heapwin_t;

/* No page, nothing read (safe to mv_heapwin_end). */
void mv_heapwin_init(mv_heapwin_t *hw);
/* Before the spawn: makes the page (mv_heapmon_open). 0 or -errno. */
int mv_heapwin_start(mv_heapwin_t *hw);
/* A task's window opens: a fresh reading of the page (no page: nothing). */
void mv_heapwin_open(mv_heapwin_t *hw);
/* Its answer came: a fresh reading, and the task's figures in *out (measured false when the
 * page could not be read consistently at both ends, or changed owner in between). `rep`:
 * the figures the worker sent with this answer, or NULL; used when there is no page, with the
 * previous answer's as "before". */
void mv_heapwin_close(mv_heapwin_t *hw, const struct mvw_heap *rep, mv_heap_task_t *out);
/* Service mode, a request begins: `rep`, the figures the worker sent with its BEGIN (or
 * NULL), are its "before" when there is no page. */
void mv_heapwin_begin(mv_heapwin_t *hw, const struct mvw_heap *rep);
/* Service mode: the window that opens starts at the last window's end (requests are marked
 * after their work is done, so a reading now would already hold the request's memory). */
void mv_heapwin_since_close(mv_heapwin_t *hw);
/* Live heap bytes now (*now) and at the last window's end (*last), from the page: false
 * when there is none, or when either reading failed or the page changed owner in between. */
bool mv_heapwin_since_last(mv_heapwin_t *hw, int64_t *last, int64_t *now);
/* The worker is gone: the page is let go. */
void mv_heapwin_end(mv_heapwin_t *hw);

#endif
