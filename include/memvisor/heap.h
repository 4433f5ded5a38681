/*
 * memvisor/heap.h: the heap counters page shared by libmemvisor-heap.so (an LD_PRELOAD
 * library in the worker) and the supervisor (supervisor/heapmon.c). Declared once, here.
 *
 * The supervisor creates one page per worker process (a sealed memfd), writes the header
 * (magic, version, size) and passes the fd to the worker, whose number is in the environment
 * variable MEMVISOR_HEAP_FD, with LD_PRELOAD naming the library. The library maps the page
 * shared at load and, from then on, adds to its counters with relaxed atomic adds on every
 * malloc-family call and every anonymous mmap/munmap/mremap. The supervisor maps it
 * read-only and reads it at task boundaries: no message, no worker cooperation.
 *
 * Ownership: `pid` is 0 until a process claims the page (compare-and-swap 0 -> its pid). A
 * process whose pid is already there is the same process after an exec (exec keeps the pid:
 * memvisor's exec-shim, `env python3`): it re-claims the page, zeroes the counters (a new
 * image has an empty heap) and adds 1 to `generation`. Any other process (a child the worker
 * spawned, which inherited the fd and the environment) leaves the page alone and counts
 * nothing. A child the worker forks (no exec) keeps counting into a private copy, never into
 * the parent's page; memvisor_heap_attach() moves it onto a page of its own (see
 * worker-api/heap/heap.c and docs/heap.md).
 *
 * Every field is written by the worker, so the supervisor treats the page as untrusted input:
 * it checks magic, version and size, and uses the figures for attribution only, never for
 * enforcement (limits stay kernel-enforced). The memfd is sealed against shrinking, so a
 * worker cannot make the supervisor's mapping fault.
 */
#ifndef MEMVISOR_HEAP_H
#define MEMVISOR_HEAP_H

#include <stdint.h>

#define MVH_MAGIC     0x5048564dU /* "MVHP" in memory on little-endian machines */
#define MVH_VERSION   1U
#define MVH_PAGE_SIZE 4096
#define MVH_ENV_FD    "MEMVISOR_HEAP_FD"

/* flags */
#define MVH_F_UNTRACKED 1U /* some anonymous mappings could not be tracked (table full) */

typedef struct mvh_page {
    /* Header: written by the supervisor before the worker starts. */
    uint32_t magic;   /* MVH_MAGIC */
    uint32_t version; /* MVH_VERSION: a layout change bumps it */
    uint32_t size;    /* sizeof(mvh_page_t) the supervisor was built with */
    /* Written by the library at attach. */
    int32_t pid;         /* the process counting into this page; 0: none yet */
    uint64_t generation; /* +1 at each attach: a reading across a change is not a delta */
    uint64_t flags;      /* MVH_F_* */
    /* Counters: relaxed atomic adds by any thread of the worker. */
    int64_t live_bytes; /* malloc family: sum of malloc_usable_size of live blocks */
    int64_t mmap_bytes; /* anonymous mappings made directly (not PROT_NONE), page-rounded */
    int64_t peak_bytes; /* highest live_bytes + mmap_bytes seen (the supervisor may reset it) */
    uint64_t allocs;    /* blocks allocated (malloc, calloc, memalign..., realloc(NULL, n)) */
    uint64_t frees;     /* blocks freed (free, realloc(p, 0) when it frees) */
    uint64_t reallocs;  /* realloc/reallocarray of a live block that kept it live */
    uint64_t mmaps;     /* anonymous mappings counted */
    uint64_t munmaps;   /* munmap calls that released counted bytes */
} mvh_page_t;

/*
 * In the worker, exported by libmemvisor-heap.so (find them with dlsym(RTLD_DEFAULT, ...):
 * they exist only when the library is preloaded).
 *
 * int memvisor_heap_attach(int fd);
 *     Counts into the page behind `fd` from now on, starting from this process's current
 *     live figures: for a worker forked from a warm template (whose child counts into a
 *     private copy after fork). Call it before the child starts threads. 0, or -EINVAL (not
 *     a heap page), -EBUSY (claimed by another process), -errno of mmap.
 * int memvisor_heap_state(void);
 *     0: not counting (no page), 1: counting into a shared page, 2: counting into a private
 *     copy (a forked child that has not attached).
 */
#define MVH_STATE_OFF     0
#define MVH_STATE_SHARED  1
#define MVH_STATE_PRIVATE 2

int memvisor_heap_attach(int fd);
int memvisor_heap_state(void);

#endif
