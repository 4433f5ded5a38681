/*
 * c_files_pool: a C `api` worker of the leak suite's fifth held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   fopen_keep  opens a log stream with fopen, writes a line and never fcloses it: an fd and
 *              the FILE with its buffer (~4.5 KiB) per task (an fd leak)
 *   tls_pool    hands the task to one of four pool threads (round robin), which appends a
 *              24 KiB record to its own thread-local list: 24 KiB kept per task, spread over
 *              four threads' malloc arenas (the leak)
 *   err_leak    parses a request into a 64 KiB buffer; when the parse fails (1 request in 3)
 *              it returns early without freeing it: ~21 KiB per task, on the error path only
 *   scratch     2 MiB malloc'd, touched and freed (clean)
 */
#include <pthread.h>

#include "c_worker.h"

#define POOL 4
#define REC  (24 * 1024)
#define BUF  (64 * 1024)

static int fopen_keep(long n, long arg, char *out, size_t outcap)
{
    FILE *f = fopen("/dev/null", "w");

    if (!f)
        return -1;
    fprintf(f, "request %ld %ld\n", n, arg);
    fflush(f);
    snprintf(out, outcap, "logged %ld", n); /* no fclose: the stream is kept */
    return 0;
}

struct rec {
    struct rec *next;
    unsigned char data[REC - sizeof(struct rec *)];
};

static __thread struct rec *kept; /* each pool thread's own list */

struct slot {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, done;
    long arg;
    unsigned sum;
};

static struct slot pool[POOL];
static int pool_up;

static void *pool_main(void *p)
{
    struct slot *s = p;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending)
            pthread_cond_wait(&s->cv, &s->mu);
        struct rec *r = malloc(sizeof *r);
        if (r) {
            r->next = kept;
            kept = r;
            s->sum = touch(r->data, sizeof r->data) + (unsigned)s->arg;
        }
        s->pending = 0;
        s->done = 1;
        pthread_cond_broadcast(&s->cv);
    }
    return NULL;
}

static int tls_pool(long n, long arg, char *out, size_t outcap)
{
    struct slot *s;

    if (!pool_up) {
        for (int k = 0; k < POOL; k++) {
            pthread_mutex_init(&pool[k].mu, NULL);
            pthread_cond_init(&pool[k].cv, NULL);
            if (pthread_create(&pool[k].tid, NULL, pool_main, &pool[k]) != 0)
                return -1;
        }
        pool_up = 1;
    }
    s = &pool[n % POOL];
    pthread_mutex_lock(&s->mu);
    s->arg = arg;
    s->done = 0;
    s->pending = 1;
    pthread_cond_broadcast(&s->cv);
    while (!s->done)
        pthread_cond_wait(&s->cv, &s->mu);
    snprintf(out, outcap, "pooled %u", s->sum);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int err_leak(long n, long arg, char *out, size_t outcap)
{
    unsigned char *buf = malloc(BUF);
    unsigned sum;

    if (!buf)
        return -1;
    sum = touch(buf, BUF);
    if (arg % 3 == 0) {
        snprintf(out, outcap, "bad request %ld", arg);
        return 0; /* the error path forgets buf */
    }
    free(buf);
    snprintf(out, outcap, "parsed %u", sum);
    return 0;
}

static int scratch(long n, long arg, char *out, size_t outcap)
{
    unsigned char *p = malloc(2u << 20);
    unsigned sum;

    if (!p)
        return -1;
    sum = touch(p, 2u << 20);
    free(p);
    snprintf(out, outcap, "scratch %u %ld", sum, arg % 3);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"fopen_keep", fopen_keep},
        {"tls_pool", tls_pool},
        {"err_leak", err_leak},
        {"scratch", scratch},
    };

    return leak_worker_main("c_files_pool", kinds, sizeof kinds / sizeof kinds[0]);
}
