/*
 * libdlsym_alloc.so: a dlsym that allocates, as glibc's did before 2.34 (its dlerror state
 * was calloc'd on first use) and as other libcs may. Preloaded after libmemvisor-heap.so
 * (LD_PRELOAD=heap:this), it is the dlsym the heap library calls while it looks up the real
 * allocator, so those allocations re-enter the heap library before it knows the real malloc:
 * tests/check_heap.c checks that its bootstrap arena serves them (without it: endless
 * recursion).
 */
#include <dlfcn.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT void *dlsym(void *handle, const char *name);

EXPORT void *dlsym(void *handle, const char *name)
{
    static void *(*real)(void *, const char *);
    char *p = calloc(1, 40), *q = malloc(24);

    /* RTLD_NEXT from here is the library after this one: libc, where the real dlsym is. */
    if (!real)
        real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!real)
        real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    q = realloc(q, 200);
    free(q);
    free(p);
    return real ? real(handle, name) : NULL;
}
