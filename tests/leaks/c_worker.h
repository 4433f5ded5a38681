/*
 * c_worker.h: the loop the leak suite's C workers share (tests/leaks/c_*.c): an `api` worker
 * whose task lines are "KIND N ARG" (tests/leaks/workloads.py); it names each task's kind
 * (mvw_set_kind) and runs that kind's function.
 */
#ifndef MV_LEAKS_C_WORKER_H
#define MV_LEAKS_C_WORKER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memvisor/worker.h>

typedef struct leak_kind {
    const char *name;
    /* Runs one task; writes a short result into out. 0, or -1 (the task fails). */
    int (*run)(long n, long arg, char *out, size_t cap);
} leak_kind_t;

static inline int leak_worker_main(const char *prog, const leak_kind_t *kinds, size_t nkinds)
{
    char line[128], out[128];
    mvw_task_t t;
    mvw_t *w;

    if (mvw_open(&w) < 0) {
        fprintf(stderr, "%s: run me under memvisor (see tests/leaks/run.py)\n", prog);
        return MVW_EXIT_FATAL;
    }
    while (mvw_next(w, &t) > 0) {
        char name[32];
        long n = 0, arg = 0;
        size_t k, len = t.len < sizeof line - 1 ? t.len : sizeof line - 1;

        memcpy(line, t.data, len);
        line[len] = '\0';
        if (sscanf(line, "%31s %ld %ld", name, &n, &arg) < 1)
            name[0] = '\0';
        for (k = 0; k < nkinds && strcmp(kinds[k].name, name) != 0; k++)
            ;
        if (k == nkinds) {
            mvw_fail(w, "unknown kind", 12);
            continue;
        }
        mvw_set_kind(w, kinds[k].name);
        if (kinds[k].run(n, arg, out, sizeof out) < 0)
            mvw_fail(w, "out of memory", 13);
        else
            mvw_done(w, out, strlen(out));
    }
    mvw_close(w);
    return 0;
}

/* Writes to and reads from a buffer so that the compiler keeps it and the kernel backs it. */
static inline unsigned touch(volatile unsigned char *p, size_t n)
{
    unsigned sum = 0;

    for (size_t i = 0; i < n; i += 512) {
        p[i] = (unsigned char)i;
        sum += p[i];
    }
    return sum;
}

/* A small sum: the quick clean kind of several C workloads. */
static inline int leak_tally(long n, long arg, char *out, size_t outcap)
{
    long sum = 0;

    (void)n;
    for (long k = 0; k < 1000; k++)
        sum += (arg + k) % 7;
    snprintf(out, outcap, "tally %ld", sum);
    return 0;
}

/* A 1 MiB scratch buffer, touched and freed: the big temporary of several workloads. */
static inline int leak_render(long n, long arg, char *out, size_t outcap)
{
    unsigned char *scratch = malloc(1 << 20);
    unsigned sum;

    if (!scratch)
        return -1;
    sum = touch(scratch, 1 << 20);
    free(scratch);
    snprintf(out, outcap, "rendered %u", sum);
    return 0;
}

/* Room for element n of a growing array of pointers (doubling). 0, or -1 (unchanged). */
static inline int leak_grow(void *arrp, size_t *cap, size_t n)
{
    void ***arr = arrp;
    void **p;

    if (n < *cap)
        return 0;
    p = realloc(*arr, (*cap ? *cap * 2 : 64) * sizeof *p);
    if (!p)
        return -1;
    *arr = p;
    *cap = *cap ? *cap * 2 : 64;
    return 0;
}

#endif
