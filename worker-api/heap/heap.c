/*
 * libmemvisor-heap.so: live heap bytes and allocation counts of any dynamically linked worker,
 * for attributing memory growth to task kinds (DESIGN §4: the kernel sees pages where they
 * are first touched, allocators reuse freed space, so page deltas misattribute a leak between
 * kinds that share a heap; live heap bytes per task do not).
 *
 * Loaded with LD_PRELOAD; libc only. With MEMVISOR_HEAP_FD naming an inherited memfd that
 * holds a heap page (include/memvisor/heap.h), every malloc-family call and every anonymous
 * mmap/munmap/mremap adds to the page's counters with relaxed atomic adds; without it the
 * library is inert: each call costs one predictable branch more than the real allocator.
 *
 * What "live bytes" is: the sum of malloc_usable_size() of the blocks the real allocator has
 * handed out and not had back. That figure is the same when a block is allocated and when it
 * is freed, so live bytes return exactly to where they were once a task has freed what it
 * allocated -- whatever the allocator does with the freed space, which is the point -- and it
 * needs no per-block bookkeeping (no header, no table, no lock). It over-counts the request
 * by the allocator's rounding (glibc: request + 8 rounded up to 16, at least 24; page rounding
 * for mmap'd chunks; alignment slack for memalign), and it does not count the allocator's own
 * overhead, fragmentation, or freed memory it keeps: those are the kernel figures' job.
 *
 * Anonymous mappings are what allocators and interpreters use beyond malloc (pymalloc's
 * arenas, jemalloc's extents, Go and JS heaps). glibc's own mmap'd chunks go through its
 * internal __mmap and are not seen here (they are in live bytes already). PROT_NONE
 * mappings are reservations, not memory, and are not counted (so memory a runtime commits
 * with mprotect inside a reservation is missed). munmap must know which ranges were counted:
 * a sorted table of tracked ranges under a mutex (mmap is a system call that takes the
 * kernel's mmap lock anyway), held across the system call so that an address the kernel
 * hands out again is never untracked by the call that released it.
 *
 * Bootstrap: dlsym() may itself call calloc/malloc before the real functions are known;
 * those calls are served from a static arena that free() ignores.
 *
 * fork: the child inherits the shared mapping, but its allocations are not its parent's. A
 * pthread_atfork child handler (the child has one thread then) copies the counters into a
 * private page and unmaps the shared one, so the child keeps exact figures of its own heap
 * (its parent's heap at the fork, plus its own calls) and the parent's page sees nothing of
 * it. A worker forked from a warm template moves onto a page of its own with
 * memvisor_heap_attach(fd). A child that execs loads the library afresh and finds the page
 * claimed by another pid: it counts nothing. Not covered: a child made by a raw clone()
 * without CLONE_VM that skips the atfork handlers (posix_spawn and vfork children share
 * memory and exec without allocating, which is harmless).
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memvisor/heap.h>

#define EXPORT    __attribute__((visibility("default")))
#define RELAXED   __ATOMIC_RELAXED
#define LIKELY(x) __builtin_expect(!!(x), 1)

_Static_assert(sizeof(mvh_page_t) <= MVH_PAGE_SIZE, "the heap page outgrew its page");

/* ---- the real functions, and the bootstrap arena ---- */

static struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t); /* optional: not every libc has it */
    size_t (*usable)(void *);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void *(*mremap)(void *, size_t, size_t, int, ...);
    int (*mprotect)(void *, size_t, int);
} real;

static int resolved; /* 0 not yet, 1 in progress (dlsym may call back into us), 2 done */

#define BOOT_SIZE (64 * 1024)
#define BOOT_HDR  16
static _Alignas(16) unsigned char boot[BOOT_SIZE];
static size_t boot_used;

/* Memory for calls made while dlsym runs: a bump allocator, zeroed (static), never reused. */
static void *boot_alloc(size_t n)
{
    size_t need = ((n + 15) & ~(size_t)15) + BOOT_HDR;
    size_t off;

    if (n > BOOT_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    off = __atomic_fetch_add(&boot_used, need, RELAXED);
    if (off + need > BOOT_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(boot + off, &n, sizeof n);
    return boot + off + BOOT_HDR;
}

static bool in_boot(const void *p)
{
    return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + BOOT_SIZE;
}

static void say(const char *a, const char *b, const char *c)
{
    /* write(2) only: stdio may allocate, and this runs inside the allocator. */
    ssize_t r = write(STDERR_FILENO, a, strlen(a));
    r = write(STDERR_FILENO, b, strlen(b));
    r = write(STDERR_FILENO, c, strlen(c));
    (void)r;
}

static void *must(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);

    if (!f) {
        say("memvisor-heap: no next definition of ", name, "; cannot run\n");
        abort();
    }
    return f;
}

static void resolve(void)
{
    int expected = 0;

    if (!__atomic_compare_exchange_n(&resolved, &expected, 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return; /* done, or being done (by this very thread, from inside dlsym) */
    real.malloc = must("malloc");
    real.free = must("free");
    real.calloc = must("calloc");
    real.realloc = must("realloc");
    real.posix_memalign = must("posix_memalign");
    real.aligned_alloc = must("aligned_alloc");
    real.memalign = must("memalign");
    real.valloc = must("valloc");
    real.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    real.usable = must("malloc_usable_size");
    real.mmap = must("mmap");
    real.munmap = must("munmap");
    real.mremap = must("mremap");
    real.mprotect = must("mprotect");
    __atomic_store_n(&resolved, 2, __ATOMIC_RELEASE);
}

static inline bool ready(void)
{
    if (LIKELY(__atomic_load_n(&resolved, __ATOMIC_ACQUIRE) == 2))
        return true;
    resolve();
    return __atomic_load_n(&resolved, __ATOMIC_ACQUIRE) == 2;
}

/* ---- counting ---- */

static mvh_page_t *page; /* where counts go; NULL: inert */
static int state;        /* MVH_STATE_* */
static size_t pagesz = 4096;

static inline mvh_page_t *counting(void)
{
    return __atomic_load_n(&page, __ATOMIC_ACQUIRE);
}

static void raise_peak(mvh_page_t *pg, int64_t now)
{
    int64_t old = __atomic_load_n(&pg->peak_bytes, RELAXED);

    while (now > old &&
           !__atomic_compare_exchange_n(&pg->peak_bytes, &old, now, true, RELAXED, RELAXED))
        ;
}

static void add_live(mvh_page_t *pg, int64_t n)
{
    int64_t now = __atomic_add_fetch(&pg->live_bytes, n, RELAXED);

    if (n > 0)
        raise_peak(pg, now + __atomic_load_n(&pg->mmap_bytes, RELAXED));
}

static void add_mmap(mvh_page_t *pg, int64_t n)
{
    int64_t now = __atomic_add_fetch(&pg->mmap_bytes, n, RELAXED);

    if (n > 0)
        raise_peak(pg, now + __atomic_load_n(&pg->live_bytes, RELAXED));
}

static inline void *counted(void *p)
{
    mvh_page_t *pg = counting();

    if (pg && p) {
        add_live(pg, (int64_t)real.usable(p));
        __atomic_fetch_add(&pg->allocs, 1, RELAXED);
    }
    return p;
}

/* ---- the malloc family ---- */

static void *alloc(size_t n)
{
    if (!ready())
        return boot_alloc(n);
    if (!counting())
        return real.malloc(n); /* inert: a tail call */
    return counted(real.malloc(n));
}

EXPORT void *malloc(size_t n)
{
    return alloc(n);
}

EXPORT void free(void *p)
{
    mvh_page_t *pg;

    if (!p || in_boot(p) || !ready())
        return; /* free(NULL) counts nothing; bootstrap memory is never reused */
    pg = counting();
    if (pg) {
        add_live(pg, -(int64_t)real.usable(p));
        __atomic_fetch_add(&pg->frees, 1, RELAXED);
    }
    real.free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;

    if (ready())
        return counted(real.calloc(n, size)); /* the real calloc checks for overflow */
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return boot_alloc(total);
}

/* realloc of a block from the bootstrap arena: a new block, the old one left behind. */
static void *boot_realloc(void *p, size_t n)
{
    size_t old = 0;
    void *q = ready() ? counted(real.malloc(n)) : boot_alloc(n);

    if (q && p) {
        memcpy(&old, (unsigned char *)p - BOOT_HDR, sizeof old);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

static void *resize(void *p, size_t n)
{
    mvh_page_t *pg;
    size_t old;
    void *q;

    if (!p || in_boot(p) || !ready())
        return p ? boot_realloc(p, n) : alloc(n);
    pg = counting();
    if (!pg)
        return real.realloc(p, n);
    old = real.usable(p);
    q = real.realloc(p, n);
    if (q) {
        add_live(pg, (int64_t)real.usable(q) - (int64_t)old);
        __atomic_fetch_add(&pg->reallocs, 1, RELAXED);
    } else if (n == 0) {
        /* glibc's realloc(p, 0) frees p and returns NULL; any other NULL leaves p alone. */
        add_live(pg, -(int64_t)old);
        __atomic_fetch_add(&pg->frees, 1, RELAXED);
    }
    return q;
}

EXPORT void *realloc(void *p, size_t n)
{
    return resize(p, n);
}

/* glibc's reallocarray is this: an overflow check in front of realloc. */
EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;

    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return resize(p, total);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    int r;

    if (!ready()) {
        if (align > 16)
            return ENOMEM;
        *out = boot_alloc(n);
        return *out ? 0 : ENOMEM;
    }
    r = real.posix_memalign(out, align, n);
    if (r == 0)
        counted(*out);
    return r;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (!ready())
        return align <= 16 ? boot_alloc(n) : NULL;
    return counted(real.aligned_alloc(align, n));
}

EXPORT void *memalign(size_t align, size_t n)
{
    if (!ready())
        return align <= 16 ? boot_alloc(n) : NULL;
    return counted(real.memalign(align, n));
}

EXPORT void *valloc(size_t n)
{
    if (!ready())
        return NULL;
    return counted(real.valloc(n));
}

EXPORT void *pvalloc(size_t n)
{
    size_t rounded;

    if (!ready())
        return NULL;
    if (real.pvalloc)
        return counted(real.pvalloc(n));
    rounded = n ? (n + pagesz - 1) & ~(pagesz - 1) : pagesz;
    if (rounded < n) {
        errno = ENOMEM;
        return NULL;
    }
    return counted(real.memalign(pagesz, rounded));
}

/* ---- anonymous mappings ---- */

#define MAPS_MAX 8192 /* tracked ranges; 128 KiB of bss, resident only as far as used */

typedef struct range {
    uintptr_t lo, hi;
} range_t;

/* Ranges, sorted and disjoint. A page is in one table at most: counted (anonymous and
 * accessible) or reserved (anonymous PROT_NONE: address space a runtime commits later with
 * mprotect, counted from then on). Both are changed with maps_lock held. */
typedef struct table {
    range_t r[MAPS_MAX];
    size_t n;
} table_t;

static table_t counted_maps, reserved;
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static uintptr_t round_up(uintptr_t n)
{
    return (n + pagesz - 1) & ~(uintptr_t)(pagesz - 1);
}

/* The first range of t that ends above `a`. */
static size_t first_above(const table_t *t, uintptr_t a)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->r[mid].hi <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void flag_untracked(void)
{
    mvh_page_t *pg = counting();

    if (pg)
        __atomic_fetch_or(&pg->flags, (uint64_t)MVH_F_UNTRACKED, RELAXED);
}

/* Removes [a, b) from the ranges of t; returns how many of its bytes it covered. Called
 * with maps_lock held. */
static int64_t untrack(table_t *t, uintptr_t a, uintptr_t b)
{
    size_t i = first_above(t, a);
    int64_t gone = 0;

    while (i < t->n && t->r[i].lo < b) {
        range_t *r = &t->r[i];
        uintptr_t lo = r->lo > a ? r->lo : a, hi = r->hi < b ? r->hi : b;

        gone += (int64_t)(hi - lo);
        if (lo == r->lo && hi == r->hi) {
            memmove(r, r + 1, (t->n - i - 1) * sizeof *r);
            t->n--;
        } else if (lo == r->lo) {
            r->lo = hi;
            i++;
        } else if (hi == r->hi) {
            r->hi = lo;
            i++;
        } else if (t->n == MAPS_MAX) {
            /* A hole in the middle and no room to split: drop the right part too, so the
             * figure errs low (never a phantom leak), and say the figures are incomplete. */
            gone += (int64_t)(r->hi - hi);
            r->hi = lo;
            flag_untracked();
            i++;
        } else {
            memmove(r + 2, r + 1, (t->n - i - 1) * sizeof *r);
            r[1].lo = hi;
            r[1].hi = r->hi;
            r->hi = lo;
            t->n++;
            i += 2;
        }
    }
    return gone;
}

/* Tracks [a, b) (untracked in t) in t; returns its bytes (0 when the table is full: for the
 * counted table, the figures are then incomplete). maps_lock held. */
static int64_t track(table_t *t, uintptr_t a, uintptr_t b)
{
    size_t i = first_above(t, a);

    if (t->n == MAPS_MAX) {
        if (t == &counted_maps)
            flag_untracked();
        return 0;
    }
    memmove(&t->r[i + 1], &t->r[i], (t->n - i) * sizeof t->r[0]);
    t->r[i].lo = a;
    t->r[i].hi = b;
    t->n++;
    return (int64_t)(b - a);
}

/* Joins [a, b) (in no range of t) to a neighbour in t, or tracks it; returns its bytes, 0
 * when t is full. maps_lock held. */
static int64_t join(table_t *t, uintptr_t a, uintptr_t b)
{
    size_t j = first_above(t, a);

    if (j > 0 && t->r[j - 1].hi == a) {
        t->r[j - 1].hi = b;
        if (j < t->n && t->r[j].lo == b) {
            t->r[j - 1].hi = t->r[j].hi;
            memmove(&t->r[j], &t->r[j + 1], (t->n - j - 1) * sizeof t->r[0]);
            t->n--;
        }
        return (int64_t)(b - a);
    }
    if (j < t->n && t->r[j].lo == b) {
        t->r[j].lo = a;
        return (int64_t)(b - a);
    }
    return track(t, a, b);
}

/* Moves the parts of [a, b) that are in `from` to `to`, each joined to a neighbour when it
 * has one (a runtime commits its reservation a piece at a time): a commit (reserved to
 * counted) or a decommit (the reverse). Returns the bytes it adds to the counted table, or
 * takes from it. maps_lock held. */
static int64_t move_ranges(table_t *from, table_t *to, uintptr_t a, uintptr_t b)
{
    int64_t counted = 0;

    for (;;) {
        size_t i = first_above(from, a);
        uintptr_t lo, hi;
        int64_t out, in;

        if (i == from->n || from->r[i].lo >= b)
            return counted;
        lo = from->r[i].lo > a ? from->r[i].lo : a;
        hi = from->r[i].hi < b ? from->r[i].hi : b;
        out = untrack(from, lo, hi); /* more than hi - lo only when from is full */
        in = join(to, lo, hi);
        counted += from == &counted_maps ? out : in;
        a = hi;
    }
}

static void account_maps(int64_t added, int64_t gone)
{
    mvh_page_t *pg = counting();

    if (!pg || added - gone == 0)
        return;
    add_mmap(pg, added - gone);
    if (added)
        __atomic_fetch_add(&pg->mmaps, 1, RELAXED);
    if (gone)
        __atomic_fetch_add(&pg->munmaps, 1, RELAXED);
}

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    bool anon = flags & MAP_ANONYMOUS;
    int64_t added = 0, gone = 0;
    void *r;

    if (!ready())
        return sys_mmap(addr, len, prot, flags, fd, off);
    if (!counting() || !(anon || (flags & MAP_FIXED)))
        return real.mmap(addr, len, prot, flags, fd, off);
    pthread_mutex_lock(&maps_lock);
    r = real.mmap(addr, len, prot, flags, fd, off);
    if (r != MAP_FAILED) {
        uintptr_t a = (uintptr_t)r, b = a + round_up(len);
        /* MAP_FIXED replaces whatever was there; a stale range (unmapped behind our back,
         * e.g. by a raw system call) is forgotten the same way. */
        gone = untrack(&counted_maps, a, b);
        untrack(&reserved, a, b);
        if (anon && prot != PROT_NONE)
            added = track(&counted_maps, a, b);
        else if (anon)
            track(&reserved, a, b); /* not memory until committed (mprotect, below) */
    }
    pthread_mutex_unlock(&maps_lock);
    account_maps(added, gone);
    return r;
}

#ifdef __LP64__
/* off_t is 64-bit here, so mmap64 is the same function under another name. */
EXPORT extern __typeof(mmap) mmap64 __attribute__((alias("mmap")));
#endif

EXPORT int munmap(void *addr, size_t len)
{
    int64_t gone = 0;
    int r;

    if (!ready())
        return (int)syscall(SYS_munmap, addr, len);
    if (!counting())
        return real.munmap(addr, len);
    pthread_mutex_lock(&maps_lock);
    r = real.munmap(addr, len);
    if (r == 0) {
        gone = untrack(&counted_maps, (uintptr_t)addr, (uintptr_t)addr + round_up(len));
        untrack(&reserved, (uintptr_t)addr, (uintptr_t)addr + round_up(len));
    }
    pthread_mutex_unlock(&maps_lock);
    account_maps(0, gone);
    return r;
}

EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
    void *to = NULL, *r;
    int64_t added = 0, gone = 0;
    va_list ap;

    if (flags & MREMAP_FIXED) {
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    if (!ready())
        return (void *)syscall(SYS_mremap, old, oldlen, newlen, flags, to);
    if (!counting())
        return real.mremap(old, oldlen, newlen, flags, to);
    pthread_mutex_lock(&maps_lock);
    r = real.mremap(old, oldlen, newlen, flags, to);
    if (r != MAP_FAILED) {
        uintptr_t a = (uintptr_t)r, b = a + round_up(newlen);
        int64_t was = untrack(&counted_maps, (uintptr_t)old, (uintptr_t)old + round_up(oldlen));
        gone = was + untrack(&counted_maps, a, b); /* MREMAP_FIXED replaced the target */
        /* a reservation moved or resized is forgotten: its commits after are not counted
         * (low, never a phantom leak) */
        untrack(&reserved, (uintptr_t)old, (uintptr_t)old + round_up(oldlen));
        untrack(&reserved, a, b);
        if (was > 0)
            added = track(&counted_maps, a, b); /* a counted mapping moved: still counted */
    }
    pthread_mutex_unlock(&maps_lock);
    account_maps(added, gone);
    return r;
}

/* Commits and decommits inside anonymous mappings: part of a reservation made accessible
 * (a runtime's or an arena allocator's heap growing in its PROT_NONE address space) is
 * counted from then on; part of a counted mapping made PROT_NONE is a reservation again (a
 * decommit, as mmap(MAP_FIXED, PROT_NONE) is). Other mappings (files, stacks, code) are in
 * neither table and are left alone. */
EXPORT int mprotect(void *addr, size_t len, int prot)
{
    uintptr_t a = (uintptr_t)addr, b = a + round_up(len);
    int64_t added = 0, gone = 0;
    int r;

    if (!ready())
        return (int)syscall(SYS_mprotect, addr, len, prot);
    if (!counting())
        return real.mprotect(addr, len, prot);
    pthread_mutex_lock(&maps_lock);
    r = real.mprotect(addr, len, prot);
    if (r == 0) {
        if (prot != PROT_NONE)
            added = move_ranges(&reserved, &counted_maps, a, b);
        else
            gone = move_ranges(&counted_maps, &reserved, a, b);
    }
    pthread_mutex_unlock(&maps_lock);
    account_maps(added, gone);
    return r;
}

/* ---- the page: attach at load, fork, attach from a template ---- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&maps_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&maps_lock);
}

/* The child of a fork has one thread: swapping the page here cannot race. */
static void atfork_child(void)
{
    mvh_page_t *shared = page, *priv;

    pthread_mutex_unlock(&maps_lock);
    if (state != MVH_STATE_SHARED)
        return; /* inert, or already private (copied with the rest of memory by fork) */
    priv =
        sys_mmap(NULL, MVH_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (priv == MAP_FAILED) {
        __atomic_store_n(&page, NULL, __ATOMIC_RELEASE); /* count nothing, rather than wrong */
        state = MVH_STATE_OFF;
    } else {
        memcpy(priv, shared, sizeof *priv);
        priv->pid = (int32_t)getpid();
        __atomic_store_n(&page, priv, __ATOMIC_RELEASE);
        state = MVH_STATE_PRIVATE;
    }
    syscall(SYS_munmap, shared, MVH_PAGE_SIZE);
}

/* Maps the heap page behind fd read-write; 0 or -errno (-EINVAL: not a heap page). */
static int map_page(int fd, mvh_page_t **out)
{
    struct stat st;
    mvh_page_t *pg;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < MVH_PAGE_SIZE)
        return -EINVAL;
    pg = sys_mmap(NULL, MVH_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (pg == MAP_FAILED)
        return -errno;
    if (pg->magic != MVH_MAGIC || pg->version != MVH_VERSION || pg->size < sizeof *pg) {
        syscall(SYS_munmap, pg, MVH_PAGE_SIZE);
        return -EINVAL;
    }
    *out = pg;
    return 0;
}

/* Claims a mapped page for this process, starting its counters at live/mapped bytes; 0 or
 * -EBUSY when another process owns it. */
static int claim(mvh_page_t *pg, int64_t live, int64_t mapped)
{
    int32_t me = (int32_t)getpid(), owner = 0;
    static bool atfork_done;

    if (!__atomic_compare_exchange_n(&pg->pid, &owner, me, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE) &&
        owner != me)
        return -EBUSY;
    __atomic_store_n(&pg->live_bytes, live, RELAXED);
    __atomic_store_n(&pg->mmap_bytes, mapped, RELAXED);
    __atomic_store_n(&pg->peak_bytes, live + mapped, RELAXED);
    __atomic_store_n(&pg->allocs, 0, RELAXED);
    __atomic_store_n(&pg->frees, 0, RELAXED);
    __atomic_store_n(&pg->reallocs, 0, RELAXED);
    __atomic_store_n(&pg->mmaps, 0, RELAXED);
    __atomic_store_n(&pg->munmaps, 0, RELAXED);
    __atomic_store_n(&pg->flags, 0, RELAXED);
    __atomic_fetch_add(&pg->generation, 1, __ATOMIC_RELEASE);
    if (!atfork_done) {
        atfork_done = true;
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    }
    __atomic_store_n(&page, pg, __ATOMIC_RELEASE);
    state = MVH_STATE_SHARED;
    return 0;
}

EXPORT int memvisor_heap_attach(int fd)
{
    mvh_page_t *pg, *cur = counting();
    int r;

    if (!ready())
        return -EAGAIN;
    r = map_page(fd, &pg);
    if (r < 0)
        return r;
    if (pg == cur)
        return 0;
    /* The heap this process has now is its own: a forked child starts from its parent's. */
    r = claim(pg, cur ? __atomic_load_n(&cur->live_bytes, RELAXED) : 0,
              cur ? __atomic_load_n(&cur->mmap_bytes, RELAXED) : 0);
    if (r < 0)
        syscall(SYS_munmap, pg, MVH_PAGE_SIZE);
    /* The previous page stays mapped: another thread may be adding to it right now. */
    return r;
}

EXPORT int memvisor_heap_state(void)
{
    return state;
}

__attribute__((constructor)) static void heap_init(void)
{
    const char *v = getenv(MVH_ENV_FD);
    mvh_page_t *pg;
    long ps = sysconf(_SC_PAGESIZE);
    char *end;
    long fd;
    int r;

    if (ps > 0)
        pagesz = (size_t)ps;
    if (!ready() || !v)
        return; /* no page: inert */
    errno = 0;
    fd = strtol(v, &end, 10);
    if (errno || end == v || *end || fd < 0 || fd > INT32_MAX) {
        say("memvisor-heap: " MVH_ENV_FD "=", v, ": not a file descriptor; not counting\n");
        return;
    }
    r = map_page((int)fd, &pg);
    if (r < 0) {
        say("memvisor-heap: " MVH_ENV_FD "=", v, ": not a memvisor heap page; not counting\n");
        return;
    }
    /* -EBUSY: a process the worker started, which inherited the fd: not ours to count. */
    if (claim(pg, 0, 0) < 0)
        syscall(SYS_munmap, pg, MVH_PAGE_SIZE);
}
