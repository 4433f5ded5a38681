/*
 * c_thread_stack: a C `api` worker of the leak suite's eighth held-out set (written to test
 * how the detector generalises; docs/leak-suite.md).
 *
 *   stack_keep    starts a helper thread per call that formats the request in a 48 KiB buffer
 *                 on its own stack and exits, and is never joined nor detached: glibc keeps a
 *                 joinable thread's stack (its pages touched) until someone joins it, so every
 *                 call keeps ~52 KiB of stack mapping that no malloc and no mmap of the
 *                 worker's own made (glibc maps stacks through its internal __mmap)
 *   thread_ok     the same thread, joined: its stack goes back to glibc's stack cache and is
 *                 reused by the next (clean)
 *   strdup_small  strdup's the request's 200-byte header into a list nobody frees: a 208-byte
 *                 leak a call, far under min_slope (16 KiB a task)
 *   trim_late     builds a 4 MiB index of 2 KiB blocks, frees it, but keeps one 2 KiB block it
 *                 made last (at the top of the heap) until its next call, so glibc cannot trim
 *                 the heap's top: its RSS stays up between calls, its live bytes do not (clean)
 *   tally         a small sum (clean)
 */
#include <pthread.h>
#include <stdint.h>

#include "c_worker.h"

#define STACK_WORK (48 * 1024)

static void *stack_work(void *arg)
{
    volatile unsigned char buf[STACK_WORK];
    long a = (long)(intptr_t)arg;

    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (unsigned char)(a + (long)i);
    return (void *)(intptr_t)buf[a % 64];
}

static long unjoined;

static int stack_keep(long n, long arg, char *out, size_t outcap)
{
    pthread_t t;

    /* the bug: the thread is neither joined nor detached */
    if (pthread_create(&t, NULL, stack_work, (void *)(intptr_t)arg) != 0)
        return -1;
    unjoined++;
    snprintf(out, outcap, "spawned %ld %ld", unjoined, n % 1000);
    return 0;
}

static int thread_ok(long n, long arg, char *out, size_t outcap)
{
    pthread_t t;
    void *r;

    if (pthread_create(&t, NULL, stack_work, (void *)(intptr_t)arg) != 0)
        return -1;
    pthread_join(t, &r);
    snprintf(out, outcap, "joined %ld %ld", (long)(intptr_t)r, n % 1000);
    return 0;
}

static char **headers;
static size_t nheaders, capheaders;

static int strdup_small(long n, long arg, char *out, size_t outcap)
{
    char hdr[201];

    memset(hdr, 'h', 200);
    hdr[200] = '\0';
    snprintf(hdr, 40, "x-request-id: %08ld-%06ld", arg % 100000000, n % 1000000);
    hdr[strlen(hdr)] = ';';
    if (leak_grow(&headers, &capheaders, nheaders) < 0 || !(headers[nheaders] = strdup(hdr)))
        return -1;
    nheaders++;
    snprintf(out, outcap, "headers %zu", nheaders);
    return 0;
}

#define TRIM_BLOCKS 2048
#define TRIM_BLOCK  2048

static void *top_block;

static int trim_late(long n, long arg, char *out, size_t outcap)
{
    static void *blocks[TRIM_BLOCKS];
    unsigned sum = 0;

    free(top_block); /* last call's pin on the heap's top */
    top_block = NULL;
    for (size_t k = 0; k < TRIM_BLOCKS; k++) {
        if (!(blocks[k] = malloc(TRIM_BLOCK)))
            return -1;
        sum += touch(blocks[k], TRIM_BLOCK);
    }
    top_block = malloc(TRIM_BLOCK); /* made last: above the index */
    if (!top_block)
        return -1;
    sum += touch(top_block, TRIM_BLOCK);
    for (size_t k = 0; k < TRIM_BLOCKS; k++)
        free(blocks[k]);
    snprintf(out, outcap, "index %u %ld", sum, arg % 7);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"stack_keep", stack_keep}, {"thread_ok", thread_ok}, {"strdup_small", strdup_small},
        {"trim_late", trim_late},   {"tally", leak_tally},
    };

    return leak_worker_main("c_thread_stack", kinds, sizeof kinds / sizeof kinds[0]);
}
