/*
 * fuzz_rentry: libFuzzer harness for what a Redis source takes from outside: a stream entry's
 * fields (supervisor/rentry.c: anyone who can XADD to the stream writes them) and the URLs of
 * the settings (supervisor/rurl.c).
 *
 * The input is split at NUL bytes into field names and values (the first byte picks
 * max_size). Whatever they hold, decoding must not crash or leak; a task that decodes must
 * encode and decode again to the same id, bytes, attempts and attempt reasons and hosts. The
 * input up to its first NUL is also a URL and a results setting: one that parses must name
 * itself back (mv_rurl_name) as a URL that parses to the same server and stream.
 * `make fuzz FUZZ_NAMES=rentry` runs it (seeds in tests/fuzz/corpus/rentry).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rentry.h"
#include "rurl.h"

static void same(const mv_task_t *a, const mv_task_t *b)
{
    if (a->id != b->id || a->len != b->len || memcmp(a->data, b->data, a->len) != 0 ||
        a->attempts != b->attempts || a->nhist != b->nhist ||
        (a->limit > 0 && (a->limit != b->limit || a->escalations != b->escalations)))
        abort();
    for (int i = 0; i < a->nhist; i++)
        if (a->hist[i].reason != b->hist[i].reason ||
            (a->hist[i].limit > 0 && a->hist[i].limit != b->hist[i].limit) ||
            strcmp(a->hist[i].host[0] ? a->hist[i].host : "here", b->hist[i].host) != 0)
            abort();
}

static void entry(const uint8_t *d, size_t n)
{
    mv_rbytes_t fv[MV_RENTRY_MAX_FIELDS + 4];
    size_t nfv = 0, start = 1;
    int64_t max_size = n ? (int64_t)(d[0] & 63) : 0;
    mv_rbytes_t again[MV_RENTRY_MAX_FIELDS];
    mv_task_t *t, *back;
    mv_rentry_t e;
    char why[256];
    int r;

    for (size_t i = 1; i <= n && nfv < sizeof fv / sizeof fv[0]; i++)
        if (i == n || d[i] == 0) {
            fv[nfv++] = (mv_rbytes_t){(const char *)d + start, i - start};
            start = i + 1;
        }
    r = mv_rentry_decode(fv, nfv, max_size, &t, why, sizeof why);
    if (r == -ENOMEM)
        abort();
    if (r < 0) {
        if (t || !why[0])
            abort();
        return;
    }
    if (t->id == 0 || (t->bad && t->len != 0) || (!t->bad && (int64_t)t->len > max_size))
        abort();
    if (!t->bad) {
        if (mv_rentry_encode(t, "here", &e) < 0)
            abort();
        for (int i = 0; i < e.argc; i++)
            again[i] = (mv_rbytes_t){e.argv[i], e.len[i]};
        if (mv_rentry_decode(again, (size_t)e.argc, max_size, &back, why, sizeof why) < 0)
            abort();
        same(t, back);
        mv_task_free(back);
        mv_rentry_free(&e);
    }
    mv_task_free(t);
}

static void url(const uint8_t *d, size_t n)
{
    char s[512], name[600], why[1200], u2[1024];
    const char *file;
    size_t len = strnlen((const char *)d, n < sizeof s - 1 ? n : sizeof s - 1);
    mv_rurl_t a, b;

    memcpy(s, d, len);
    s[len] = '\0';
    if (mv_rurl_parse(s, &a, why, sizeof why) == 0) {
        mv_rurl_name(&a, name, sizeof name);
        if (mv_rurl_parse(name, &b, why, sizeof why) != 0 || !mv_rurl_same_server(&a, &b) ||
            strcmp(a.stream, b.stream) != 0)
            abort();
    } else if (!why[0]) {
        abort();
    }
    if (mv_rurl_results_split(s, u2, sizeof u2, &file) == 0 && !*u2 && strcmp(file, s) != 0)
        abort(); /* no URL: all of it is the file */
    mv_rurl_check_settings(s, s, why, sizeof why);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    entry(d, n);
    url(d, n);
    return 0;
}
