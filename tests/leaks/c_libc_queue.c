/*
 * c_libc_queue: a C `api` worker of the leak suite's sixth held-out set (written to test how
 * the detector generalises; docs/leak-suite.md).
 *
 *   memstream_keep  writes a 24 KiB report into an open_memstream stream and keeps the
 *                   stream open in a list (never fclose'd): libc grows the stream's buffer
 *                   by realloc inside stdio, and its FILE is libc's too (the leak)
 *   regex_keep      compiles a request's filter with regcomp and keeps the compiled regex
 *                   in a table (never regfree'd): libc's regex allocations (the leak)
 *   regex_ok        the same regcomp, regexec, regfree (clean)
 *   push            mallocs a 48 KiB message and queues it (a producer: the pop kind frees)
 *   pop             frees up to three queued messages (a consumer: frees another kind's
 *                   memory; with push and pop at one to one the queue stays short: clean)
 *   tally           a small sum (clean)
 */
#include <regex.h>

#include "c_worker.h"

#define REPORT (24 * 1024)
#define MSG    (48 * 1024)

static FILE **streams;
static size_t nstreams, capstreams;

static int memstream_keep(long n, long arg, char *out, size_t outcap)
{
    char *buf = NULL, line[64];
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);

    if (!f || leak_grow(&streams, &capstreams, nstreams) < 0)
        return -1;
    for (int k = 0; k < REPORT / 64; k++) {
        int len = snprintf(line, sizeof line, "%08ld %08ld report line of the request....\n",
                           arg % 100000000, (long)k);
        fwrite(line, 1, (size_t)len < 64 ? (size_t)len : 63, f);
        fputs(" ", f);
    }
    fflush(f); /* buf and size now say what the stream holds */
    streams[nstreams++] = f;
    snprintf(out, outcap, "streams %zu %zu", nstreams, size);
    return 0;
}

/* A filter as a user writes it: alternatives of words with the request's number in each. */
static void filter_pattern(long arg, char *pat, size_t cap)
{
    size_t len = 0;

    len += (size_t)snprintf(pat + len, cap - len, "^(");
    for (int k = 0; k < 24 && len < cap - 64; k++)
        len += (size_t)snprintf(pat + len, cap - len, "%suser%ld[a-z]{2,8}_%d[0-9]*", k ? "|" : "",
                                arg % 1000 + k, k);
    snprintf(pat + len, cap - len, ")$");
}

static regex_t **regexes;
static size_t nregexes, capregexes;

static int regex_keep(long n, long arg, char *out, size_t outcap)
{
    char pat[2048];
    regex_t *re = malloc(sizeof *re);

    if (!re || leak_grow(&regexes, &capregexes, nregexes) < 0) {
        free(re);
        return -1;
    }
    filter_pattern(arg, pat, sizeof pat);
    if (regcomp(re, pat, REG_EXTENDED | REG_NOSUB) != 0) {
        free(re);
        return -1;
    }
    regexes[nregexes++] = re;
    snprintf(out, outcap, "filters %zu %d", nregexes, regexec(re, "user7abc_1", 0, NULL, 0));
    return 0;
}

static int regex_ok(long n, long arg, char *out, size_t outcap)
{
    char pat[2048];
    regex_t re;
    int m;

    filter_pattern(arg, pat, sizeof pat);
    if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0)
        return -1;
    m = regexec(&re, "user7abc_1", 0, NULL, 0);
    regfree(&re);
    snprintf(out, outcap, "filtered %d", m);
    return 0;
}

typedef struct msg {
    struct msg *next;
    unsigned char data[];
} msg_t;

static msg_t *q_head, *q_tail;
static size_t q_len;

static int push(long n, long arg, char *out, size_t outcap)
{
    msg_t *m = malloc(sizeof *m + MSG);

    if (!m)
        return -1;
    touch(m->data, MSG);
    m->next = NULL;
    if (q_tail)
        q_tail->next = m;
    else
        q_head = m;
    q_tail = m;
    q_len++;
    snprintf(out, outcap, "queued %zu", q_len);
    return 0;
}

static int pop(long n, long arg, char *out, size_t outcap)
{
    unsigned sum = 0;

    for (int k = 0; k < 3 && q_head; k++) {
        msg_t *m = q_head;

        q_head = m->next;
        if (!q_head)
            q_tail = NULL;
        sum += m->data[arg % MSG];
        free(m);
        q_len--;
    }
    snprintf(out, outcap, "popped %u %zu", sum, q_len);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"memstream_keep", memstream_keep},
        {"regex_keep", regex_keep},
        {"regex_ok", regex_ok},
        {"push", push},
        {"pop", pop},
        {"tally", leak_tally},
    };

    return leak_worker_main("c_libc_queue", kinds, sizeof kinds / sizeof kinds[0]);
}
