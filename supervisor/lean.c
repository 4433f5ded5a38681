/*
 * lean: the supervisor's own footprint (see lean.h).
 */
#include "lean.h"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void mv_lean_malloc(void)
{
    mallopt(M_ARENA_MAX, 1);
    /* Fixed thresholds: glibc otherwise raises both whenever a large block (a 1 MiB read
     * buffer, a burst's results text) is freed, after which blocks up to that size come from
     * the heap and its top is kept: the heap grew from 1.0 to 1.8 MiB that way. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

void mv_lean_trim(void)
{
    malloc_trim(0);
}

typedef struct find {
    uintptr_t base;   /* the library's load address (dladdr) */
    uintptr_t lo, hi; /* its bss past the last file-backed page */
} find_t;

static int find_bss(struct dl_phdr_info *info, size_t size, void *arg)
{
    find_t *f = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

    (void)size;
    if ((uintptr_t)info->dlpi_addr != f->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        /* Only the anonymous part: a file-backed (.data) page dropped would read back the
         * file's bytes, not what the library wrote. */
        uintptr_t file_end = info->dlpi_addr + ph->p_vaddr + ph->p_filesz;
        uintptr_t end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W) || ph->p_memsz <= ph->p_filesz)
            continue;
        f->lo = (file_end + page - 1) & ~(page - 1);
        f->hi = end & ~(page - 1);
        return 1;
    }
    return 1;
}

static int all_zero(const unsigned char *p, size_t n)
{
    static const unsigned char z[256];

    for (size_t i = 0; i < n; i += sizeof z)
        if (memcmp(p + i, z, sizeof z) != 0)
            return 0;
    return 1;
}

size_t mv_lean_zero_bss(const void *addr)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), given = 0;
    find_t f = {0};
    Dl_info di;

    if (!dladdr(addr, &di) || !di.dli_fbase)
        return 0;
    f.base = (uintptr_t)di.dli_fbase;
    /* dli_fbase is where the object is mapped; dlpi_addr its load bias: the same for a shared
     * library (linked at 0). */
    dl_iterate_phdr(find_bss, &f);
    for (uintptr_t p = f.lo; p < f.hi; p += page) {
        uintptr_t run = p;
        /* A run of zero pages, dropped at once. */
        while (run < f.hi && all_zero((const unsigned char *)run, page))
            run += page;
        if (run > p && madvise((void *)p, run - p, MADV_DONTNEED) == 0)
            given += run - p;
        p = run;
    }
    return given;
}
