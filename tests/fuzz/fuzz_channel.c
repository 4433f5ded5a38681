/*
 * fuzz_channel: the channel decoder (supervisor/channel.c) on arbitrary worker bytes, as the
 * api protocol (framed messages) or the lines protocol (result lines), with the output pipe's
 * line cutting alongside. The bytes come in chunks of a size the input picks (1 byte to 1
 * MiB), as reads would deliver them; every event handler copies what it is handed (so ASan
 * checks each pointer and length), and an api input may ask for snapshots first.
 *
 * Input: byte 0 = flags (bit 0 lines, bit 1 service, bit 2 close the channel from inside an
 * answer, bits 3-5 chunk size, bits 6-7 snapshot requests outstanding), bytes 1-2 =
 * max_message, the rest = what the worker wrote.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

static void touch(const void *p, size_t n)
{
    void *c;

    if (!n)
        return;
    c = malloc(n);
    memcpy(c, p, n);
    free(c);
}

static bool close_in_answer;

static void ev_hello(void *o, uint32_t v)
{
}

static void ev_answer(void *o, uint64_t id, bool ok, const uint8_t *kind, size_t kl, const void *p,
                      size_t n)
{
    if (kind)
        touch(kind, kl);
    touch(p, n);
    if (close_in_answer)
        mv_chan_close(o);
}

static void ev_begin(void *o, uint64_t id, const uint8_t *kind, size_t kl)
{
    touch(kind, kl);
}

static void ev_end(void *o, uint64_t id, uint32_t status)
{
}

static void ev_snapshot(void *o, const uint8_t *p, size_t n)
{
    touch(p, n);
}

static void ev_output(void *o, const char *stream, const void *line, size_t n)
{
    touch(line, n);
    if (n > 16 * 1024)
        abort(); /* output lines are cut at 16 KiB */
}

static void ev_error(void *o, const char *what)
{
    touch(what, strlen(what));
}

static void ev_eof(void *o)
{
}

static void ev_closed(void *o)
{
}

static const mv_chan_events_t events = {ev_hello,  ev_answer, ev_begin, ev_end,   ev_snapshot,
                                        ev_output, ev_error,  ev_eof,   ev_closed};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const size_t chunks[8] = {1, 3, 16, 17, 100, 4096, 65536, 1 << 20};
    mv_chan_opts_t o;
    mv_chan_t c;
    size_t chunk;

    if (n < 3)
        return 0;
    o = (mv_chan_opts_t){(d[0] & 1) ? MV_PROTO_LINES : MV_PROTO_API,
                         1u + (uint32_t)(d[1] | (d[2] << 8)), "FAIL:", (d[0] & 2) != 0};
    close_in_answer = (d[0] & 4) != 0;
    chunk = chunks[(d[0] >> 3) & 7];
    mv_chan_init(&c, NULL, &o, &events, &c);
    c.snap_asked = d[0] >> 6;
    for (size_t off = 3; off < n && !c.closing;) {
        size_t k = n - off < chunk ? n - off : chunk;
        mv_chan_input(&c, d + off, k, off + k == n);
        mv_chan_output(&c, d + off, k, off + k == n);
        off += k;
    }
    mv_chan_close(&c); /* no handle was opened: frees the buffers at once */
    return 0;
}
