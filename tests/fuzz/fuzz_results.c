/*
 * fuzz_results: libFuzzer harness for the results reader used by --resume (supervisor/resume.c).
 *
 * Whatever the bytes, the reader must not crash or leak (ASan, UBSan), and its answers must
 * hold together: the same verdict for the whole buffer and for the buffer fed in chunks (sizes
 * from the first byte), whole lines then a torn tail with no newline in it, and every done id
 * positive. `make fuzz FUZZ_NAMES=results` runs it (seeds in tests/fuzz/corpus/results).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resume.h"

static void same(const mv_resume_scan_t *a, const mv_resume_scan_t *b, int ra, int rb)
{
    if (ra != rb || a->valid != b->valid || a->lines != b->lines || a->bad_line != b->bad_line)
        abort();
    if (ra == 0 && (a->torn != b->torn || a->dups != b->dups ||
                    mv_idset_count(&a->done) != mv_idset_count(&b->done)))
        abort();
    for (int k = 0; k < MV_RESUME_NSTATUS; k++)
        if (a->count[k] != b->count[k])
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const size_t chunks[8] = {1, 2, 3, 7, 16, 100, 4096, 1 << 20};
    mv_resume_scan_t whole, parts;
    size_t chunk = n ? chunks[d[0] & 7] : 1;
    int rw, rp = 0;

    rw = mv_resume_scan(&whole, d, n);
    if (rw == -ENOMEM)
        abort();
    mv_resume_begin(&parts);
    for (size_t off = 0; off < n && rp == 0; off += chunk)
        rp = mv_resume_feed(&parts, d + off, n - off < chunk ? n - off : chunk);
    rp = mv_resume_end(&parts) ? -EINVAL : rp;
    same(&whole, &parts, rw, rp);
    if (rw == 0) {
        /* whole lines, then a tail without a newline */
        if (whole.valid + whole.torn != n || (whole.valid && d[whole.valid - 1] != '\n') ||
            memchr(d + whole.valid, '\n', whole.torn))
            abort();
        if (mv_idset_count(&whole.done) != whole.count[0] + whole.count[1] + whole.count[2] ||
            whole.lines != mv_idset_count(&whole.done) + whole.dups)
            abort();
        for (size_t i = 0; i < whole.done.n; i++)
            if (whole.done.r[i].lo == 0 || whole.done.r[i].lo > whole.done.r[i].hi ||
                (i && whole.done.r[i].lo <= whole.done.r[i - 1].hi + 1))
                abort();
    } else if (whole.bad_line == 0 || whole.bad_line > whole.lines + 1 || !whole.why[0]) {
        abort();
    }
    mv_resume_free(&whole);
    mv_resume_free(&parts);
    return 0;
}
