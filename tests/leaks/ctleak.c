/*
 * libctleak.so: the C library of the leak suite's ctypes scenario (tests/leaks/scenarios.py).
 * ct_process() mallocs a buffer, fills it and forgets it -- a leak inside C code, where
 * Python's tracemalloc cannot see -- and ct_process_free() does the same work and frees.
 */
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT long ct_process(long id, size_t n);
EXPORT long ct_process_free(long id, size_t n);

static long fill(char *p, long id, size_t n)
{
    memset(p, (int)(id & 0x7f), n);
    return (long)n + p[n / 2];
}

EXPORT long ct_process(long id, size_t n)
{
    char *p = malloc(n);

    return p ? fill(p, id, n) : -1; /* p is never freed: the leak */
}

EXPORT long ct_process_free(long id, size_t n)
{
    char *p = malloc(n);
    long r;

    if (!p)
        return -1;
    r = fill(p, id, n);
    free(p);
    return r;
}
