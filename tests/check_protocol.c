/*
 * Tests of the wire protocol's codec (include/memvisor/protocol.h), with plain buffers and a
 * small deterministic fuzz loop against a guard page. The same protocol spoken by
 * libmemvisor over a real socket is tested in check_worker_api.c.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memvisor/protocol.h>

#include "proto_util.h"
#include "suites.h"

/* ---- codec helpers --------------------------------------------------------------------- */

/* Encodes a kind-prefixed payload (u8 n, kind, rest) into out; returns its size. */
static size_t kind_payload(uint8_t *out, const char *kind, const char *rest)
{
    size_t k = strlen(kind), r = strlen(rest);

    out[0] = (uint8_t)k;
    memcpy(out + 1, kind, k);
    memcpy(out + 1 + k, rest, r);
    return 1 + k + r;
}

/* A header alone, for checks the decoder makes before the payload is there. */
static long dec_header(uint16_t type, uint16_t flags, uint32_t length, enum mvw_dir dir)
{
    uint8_t h[MVW_HEADER_SIZE];
    struct mvw_msg m;

    mvw_put_header(h, type, flags, 7, length);
    return dec(h, sizeof h, dir, &m);
}

/* ---- protocol suite -------------------------------------------------------------------- */

START_TEST(test_roundtrip_all_types)
{
    struct mvw_hello hello = {MVW_PROTOCOL_VERSION, 0};
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 4, 16, MVW_MODE_SERVICE};
    uint32_t status = 3;
    uint8_t kp[64];
    size_t kl = kind_payload(kp, "resize", "");
    const struct {
        uint16_t type, flags;
        enum mvw_dir dir;
        uint64_t task;
        const void *p;
        size_t len;
    } cases[] = {
        {MVW_MSG_HELLO, 0, MVW_FROM_WORKER, 0, &hello, sizeof hello},
        {MVW_MSG_GO, 0, MVW_FROM_SUPERVISOR, 0, &go, sizeof go},
        {MVW_MSG_TASK, 0, MVW_FROM_SUPERVISOR, 42, "resize a.jpg", 12},
        {MVW_MSG_TASK, 0, MVW_FROM_SUPERVISOR, UINT64_MAX, "", 0},
        {MVW_MSG_DONE, 0, MVW_FROM_WORKER, 42, "ok\0bin\xff", 7},
        {MVW_MSG_DONE, MVW_F_KIND, MVW_FROM_WORKER, 42, "\x02kkresult", 9},
        {MVW_MSG_FAIL, 0, MVW_FROM_WORKER, 43, "boom", 4},
        {MVW_MSG_FAIL, MVW_F_KIND, MVW_FROM_WORKER, 43, "\x01kboom", 6},
        {MVW_MSG_STOP, 0, MVW_FROM_SUPERVISOR, 0, NULL, 0},
        {MVW_MSG_BEGIN, 0, MVW_FROM_WORKER, 1, NULL, 0},
        {MVW_MSG_BEGIN, MVW_F_KIND, MVW_FROM_WORKER, 2, kp, kl},
        {MVW_MSG_END, 0, MVW_FROM_WORKER, 2, &status, sizeof status},
        {MVW_MSG_SNAPSHOT, 0, MVW_FROM_SUPERVISOR, 0, NULL, 0},
        {MVW_MSG_SNAPSHOT, 0, MVW_FROM_WORKER, 0, "{\"a\":1}", 7},
    };
    uint8_t buf[256];
    struct mvw_msg m;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;

        mvw_put_header(buf, cases[i].type, cases[i].flags, cases[i].task, (uint32_t)cases[i].len);
        if (cases[i].len)
            memcpy(buf + MVW_HEADER_SIZE, cases[i].p, cases[i].len);
        n = MVW_HEADER_SIZE + cases[i].len;
        buf[n] = 0xee; /* a byte that belongs to the next message */
        ck_assert_int_eq(dec(buf, n + 1, cases[i].dir, &m), (long)n);
        ck_assert_uint_eq(m.h.type, cases[i].type);
        ck_assert_uint_eq(m.h.flags, cases[i].flags);
        ck_assert_uint_eq(m.h.task, cases[i].task);
        ck_assert_uint_eq(m.h.length, cases[i].len);
        ck_assert_ptr_eq(m.payload, buf + MVW_HEADER_SIZE);
        if (cases[i].len)
            ck_assert_mem_eq(m.payload, cases[i].p, cases[i].len);
    }
}
END_TEST

START_TEST(test_short_reads)
{
    uint8_t stream[256], acc[256];
    size_t total = 0, have = 0, got = 0, lens[3];
    struct mvw_go go = {MVW_PROTOCOL_VERSION, 1, 2, MVW_MODE_BATCH};
    struct mvw_msg m;

    lens[0] = enc(stream, MVW_MSG_GO, 0, 0, &go, sizeof go);
    lens[1] = enc(stream + lens[0], MVW_MSG_TASK, 0, 1, "first task", 10);
    lens[2] = enc(stream + lens[0] + lens[1], MVW_MSG_STOP, 0, 0, NULL, 0);
    total = lens[0] + lens[1] + lens[2];
    /* Every prefix of one message is "need more". */
    for (size_t k = 0; k < lens[1]; k++)
        ck_assert_int_eq(dec(stream + lens[0], k, MVW_FROM_SUPERVISOR, &m), 0);
    /* The stream fed one byte at a time yields the three messages, in order. */
    for (size_t i = 0; i < total; i++) {
        long n;

        acc[have++] = stream[i];
        n = dec(acc, have, MVW_FROM_SUPERVISOR, &m);
        ck_assert_int_ge(n, 0);
        if (n > 0) {
            ck_assert_uint_lt(got, 3);
            ck_assert_int_eq(n, (long)lens[got]);
            ck_assert_uint_eq(have, lens[got]);
            got++;
            have = 0;
        }
    }
    ck_assert_uint_eq(got, 3);
}
END_TEST

START_TEST(test_garbage)
{
    uint8_t zeros[32] = {0}, ones[32];
    const char text[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    struct mvw_msg m;

    memset(ones, 0xff, sizeof ones);
    ck_assert_int_eq(dec(zeros, sizeof zeros, MVW_FROM_WORKER, &m), -EBADMSG);
    ck_assert_int_eq(dec(zeros, sizeof zeros, MVW_FROM_SUPERVISOR, &m), -EBADMSG);
    ck_assert_int_eq(dec(ones, sizeof ones, MVW_FROM_WORKER, &m), -EBADMSG);
    ck_assert_int_eq(dec((const uint8_t *)text, sizeof text - 1, MVW_FROM_WORKER, &m), -EBADMSG);
    ck_assert_int_eq(dec((const uint8_t *)text, sizeof text - 1, MVW_FROM_SUPERVISOR, &m),
                     -EBADMSG);
}
END_TEST

START_TEST(test_oversize)
{
    uint8_t h[MVW_HEADER_SIZE];
    struct mvw_msg m;

    /* Only the header is there: the length is refused before any payload is awaited. */
    ck_assert_int_eq(dec_header(MVW_MSG_TASK, 0, 0x7fffffffu, MVW_FROM_SUPERVISOR), -EMSGSIZE);
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, 0, UINT32_MAX, MVW_FROM_WORKER), -EMSGSIZE);
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, 0, MVW_MAX_PAYLOAD + 1, MVW_FROM_WORKER), -EMSGSIZE);
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, 0, MVW_MAX_PAYLOAD, MVW_FROM_WORKER), 0);
    /* The caller's limit lowers the cap; the hard cap holds whatever the caller asks. */
    mvw_put_header(h, MVW_MSG_DONE, 0, 1, 101);
    ck_assert_int_eq(mvw_decode(h, sizeof h, 100, MVW_FROM_WORKER, &m), -EMSGSIZE);
    mvw_put_header(h, MVW_MSG_DONE, 0, 1, 100);
    ck_assert_int_eq(mvw_decode(h, sizeof h, 100, MVW_FROM_WORKER, &m), 0);
    mvw_put_header(h, MVW_MSG_DONE, 0, 1, MVW_MAX_PAYLOAD + 1);
    ck_assert_int_eq(mvw_decode(h, sizeof h, UINT32_MAX, MVW_FROM_WORKER, &m), -EMSGSIZE);
}
END_TEST

START_TEST(test_unknown_type)
{
    const uint16_t bad[] = {0, MVW_MSG_TYPE_MAX, MVW_MSG_TYPE_MAX + 1, 0x100, 0xffff};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(dec_header(bad[i], 0, 0, MVW_FROM_WORKER), -EBADMSG);
        ck_assert_int_eq(dec_header(bad[i], 0, 0, MVW_FROM_SUPERVISOR), -EBADMSG);
    }
}
END_TEST

START_TEST(test_wrong_direction)
{
    const uint16_t from_worker[] = {MVW_MSG_HELLO, MVW_MSG_DONE, MVW_MSG_FAIL, MVW_MSG_BEGIN,
                                    MVW_MSG_END};
    const uint16_t from_sup[] = {MVW_MSG_GO, MVW_MSG_TASK, MVW_MSG_STOP};

    for (size_t i = 0; i < sizeof from_worker / sizeof from_worker[0]; i++) {
        ck_assert_int_eq(dec_header(from_worker[i], 0, 0, MVW_FROM_SUPERVISOR), -EBADMSG);
        ck_assert(mvw_type_allowed(from_worker[i], MVW_FROM_WORKER));
    }
    for (size_t i = 0; i < sizeof from_sup / sizeof from_sup[0]; i++) {
        ck_assert_int_eq(dec_header(from_sup[i], 0, 0, MVW_FROM_WORKER), -EBADMSG);
        ck_assert(mvw_type_allowed(from_sup[i], MVW_FROM_SUPERVISOR));
    }
    ck_assert(mvw_type_allowed(MVW_MSG_SNAPSHOT, MVW_FROM_WORKER));
    ck_assert(mvw_type_allowed(MVW_MSG_SNAPSHOT, MVW_FROM_SUPERVISOR));
}
END_TEST

START_TEST(test_unknown_flags)
{
    const uint16_t no_kind[] = {MVW_MSG_HELLO, MVW_MSG_END};
    const uint16_t no_kind_sup[] = {MVW_MSG_GO, MVW_MSG_TASK, MVW_MSG_STOP, MVW_MSG_SNAPSHOT};

    for (unsigned bit = 4; bit < 16; bit++) {
        ck_assert_int_eq(dec_header(MVW_MSG_DONE, (uint16_t)(1u << bit), 0, MVW_FROM_WORKER),
                         -EBADMSG);
        ck_assert_int_eq(dec_header(MVW_MSG_TASK, (uint16_t)(1u << bit), 0, MVW_FROM_SUPERVISOR),
                         -EBADMSG);
    }
    /* v2: MVW_F_HEAP on answers, MVW_F_COLLECT on TASK only. */
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, MVW_F_HEAP, 16, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_FAIL, MVW_F_HEAP | MVW_F_KIND, 18, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_TASK, MVW_F_COLLECT, 3, MVW_FROM_SUPERVISOR), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, MVW_F_COLLECT, 3, MVW_FROM_WORKER), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_TASK, MVW_F_HEAP, 16, MVW_FROM_SUPERVISOR), -EBADMSG);
    /* ...and on a service's BEGIN (after its kind, or alone: exactly the figures) and END
     * (the figures, then the status: 4 + 16 bytes, no other size). */
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_HEAP | MVW_F_KIND, 18, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_HEAP, 16, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_HEAP, 15, MVW_FROM_WORKER), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_HEAP, 0, MVW_FROM_WORKER), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_END, MVW_F_HEAP, 20, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_END, MVW_F_HEAP, 4, MVW_FROM_WORKER), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_END, 0, 20, MVW_FROM_WORKER), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_HELLO, MVW_F_COLLECT, 8, MVW_FROM_WORKER), -EBADMSG);
    /* MVW_F_HEAP_LATE: with MVW_F_HEAP only, so on answers only. */
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, MVW_F_HEAP | MVW_F_HEAP_LATE, 16, MVW_FROM_WORKER),
                     0);
    ck_assert_int_eq(
        dec_header(MVW_MSG_FAIL, MVW_F_HEAP | MVW_F_HEAP_LATE | MVW_F_KIND, 18, MVW_FROM_WORKER),
        0);
    ck_assert_int_eq(dec_header(MVW_MSG_TASK, MVW_F_HEAP_LATE, 16, MVW_FROM_SUPERVISOR), -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_HEAP_LATE | MVW_F_KIND, 18, MVW_FROM_WORKER),
                     -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_END, MVW_F_HEAP | MVW_F_HEAP_LATE, 4, MVW_FROM_WORKER),
                     -EBADMSG);
    ck_assert_int_eq(
        dec_header(MVW_MSG_TASK, MVW_F_HEAP | MVW_F_HEAP_LATE, 16, MVW_FROM_SUPERVISOR), -EBADMSG);
    /* MVW_F_KIND is known, but only DONE, FAIL and BEGIN may carry it. */
    for (size_t i = 0; i < sizeof no_kind / sizeof no_kind[0]; i++)
        ck_assert_int_eq(dec_header(no_kind[i], MVW_F_KIND, (uint32_t)mvw_fixed_size(no_kind[i]),
                                    MVW_FROM_WORKER),
                         -EBADMSG);
    ck_assert_int_eq(dec_header(MVW_MSG_SNAPSHOT, MVW_F_KIND, 0, MVW_FROM_WORKER), -EBADMSG);
    for (size_t i = 0; i < sizeof no_kind_sup / sizeof no_kind_sup[0]; i++) {
        long fixed = mvw_fixed_size(no_kind_sup[i]);
        ck_assert_int_eq(dec_header(no_kind_sup[i], MVW_F_KIND, fixed > 0 ? (uint32_t)fixed : 0,
                                    MVW_FROM_SUPERVISOR),
                         -EBADMSG);
    }
    ck_assert_int_eq(dec_header(MVW_MSG_DONE, MVW_F_KIND, 5, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_FAIL, MVW_F_KIND, 5, MVW_FROM_WORKER), 0);
    ck_assert_int_eq(dec_header(MVW_MSG_BEGIN, MVW_F_KIND, 5, MVW_FROM_WORKER), 0);
}
END_TEST

START_TEST(test_fixed_sizes)
{
    const struct {
        uint16_t type;
        enum mvw_dir dir;
        uint32_t len;
    } bad[] = {
        {MVW_MSG_HELLO, MVW_FROM_WORKER, 0},        {MVW_MSG_HELLO, MVW_FROM_WORKER, 7},
        {MVW_MSG_HELLO, MVW_FROM_WORKER, 9},        {MVW_MSG_GO, MVW_FROM_SUPERVISOR, 15},
        {MVW_MSG_GO, MVW_FROM_SUPERVISOR, 17},      {MVW_MSG_GO, MVW_FROM_SUPERVISOR, 0},
        {MVW_MSG_STOP, MVW_FROM_SUPERVISOR, 1},     {MVW_MSG_END, MVW_FROM_WORKER, 0},
        {MVW_MSG_END, MVW_FROM_WORKER, 3},          {MVW_MSG_END, MVW_FROM_WORKER, 5},
        {MVW_MSG_SNAPSHOT, MVW_FROM_SUPERVISOR, 1}, {MVW_MSG_BEGIN, MVW_FROM_WORKER, 1},
    };

    /* Wrong sizes are refused from the header alone, without waiting for the payload. */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(dec_header(bad[i].type, 0, bad[i].len, bad[i].dir), -EBADMSG);
    ck_assert_int_eq(mvw_fixed_size(MVW_MSG_HELLO), 8);
    ck_assert_int_eq(mvw_fixed_size(MVW_MSG_GO), 16);
    ck_assert_int_eq(mvw_fixed_size(MVW_MSG_TASK), -1);
    ck_assert_int_eq(dec_header(MVW_MSG_SNAPSHOT, 0, 1000, MVW_FROM_WORKER), 0);
}
END_TEST

START_TEST(test_kind_split)
{
    uint8_t buf[512], p[300];
    const uint8_t *kind, *rest;
    size_t kl, rl, n;
    struct mvw_msg m;

    /* kind + result */
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND, 9, p, kind_payload(p, "resize", "w=10"));
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 6);
    ck_assert_mem_eq(kind, "resize", 6);
    ck_assert_uint_eq(rl, 4);
    ck_assert_mem_eq(rest, "w=10", 4);
    /* no flag: all payload is the result */
    n = enc(buf, MVW_MSG_DONE, 0, 9,
            "\x06"
            "resize",
            7);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_ptr_null(kind);
    ck_assert_uint_eq(kl, 0);
    ck_assert_uint_eq(rl, 7);
    /* the longest kind, and an empty error after it */
    memset(p + 1, 'k', 255);
    p[0] = 255;
    n = enc(buf, MVW_MSG_FAIL, MVW_F_KIND, 9, p, 256);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 255);
    ck_assert_uint_eq(rl, 0);
    /* bad kind lengths: 0, longer than the payload, no room for the length byte */
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND, 9, "\x00rest", 5);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), -EBADMSG);
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND, 9,
            "\x05"
            "abcd",
            5);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), -EBADMSG);
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND, 9, NULL, 0);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), -EBADMSG);
    /* BEGIN carries the kind and nothing else */
    n = enc(buf, MVW_MSG_BEGIN, MVW_F_KIND, 1, p, kind_payload(p, "http", ""));
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_uint_eq(kl, 4);
    n = enc(buf, MVW_MSG_BEGIN, MVW_F_KIND, 1, p, kind_payload(p, "http", "x"));
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), -EBADMSG);
}
END_TEST

/* v2: the worker's heap figures after the kind (or first), then the result. */
START_TEST(test_heap_split)
{
    uint8_t buf[512], p[300];
    struct mvw_heap h = {123456789, 42}, got = {-7, -7};
    const uint8_t *kind, *rest;
    size_t kl, rl, n, k;
    struct mvw_msg m;

    /* kind, figures, result */
    k = kind_payload(p, "parse", "");
    memcpy(p + k, &h, sizeof h);
    memcpy(p + k + sizeof h, "ok", 2);
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP, 9, p, k + sizeof h + 2);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_int_eq(got.live_bytes, 123456789);
    ck_assert_int_eq(got.blocks, 42);
    ck_assert_uint_eq(rl, 2);
    ck_assert_mem_eq(rest, "ok", 2);
    /* figures without a kind */
    memcpy(p, &h, sizeof h);
    n = enc(buf, MVW_MSG_FAIL, MVW_F_HEAP, 9, p, sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_uint_eq(rl, 0);
    /* no flag: nothing taken, the figures untouched */
    got.live_bytes = -7;
    n = enc(buf, MVW_MSG_DONE, 0, 9, p, sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 0);
    ck_assert_int_eq(got.live_bytes, -7);
    ck_assert_uint_eq(rl, sizeof h);
    /* cut short: a flag with fewer bytes than the figures */
    k = kind_payload(p, "parse", "1234567");
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP, 9, p, k);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), -EBADMSG);
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP | MVW_F_HEAP_LATE, 9, p, k);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), -EBADMSG);
    /* late (MVW_F_HEAP_LATE): kind, result, then the figures at the payload's end */
    got = (struct mvw_heap){-7, -7};
    k = kind_payload(p, "parse", "result");
    memcpy(p + k, &h, sizeof h);
    n = enc(buf, MVW_MSG_DONE, MVW_F_KIND | MVW_F_HEAP | MVW_F_HEAP_LATE, 9, p, k + sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_int_eq(got.live_bytes, 123456789);
    ck_assert_int_eq(got.blocks, 42);
    ck_assert_uint_eq(rl, 6);
    ck_assert_mem_eq(rest, "result", 6);
    /* late without MVW_F_HEAP: the decoder lets it by (an answer's flag), the split refuses */
    n = enc(buf, MVW_MSG_DONE, MVW_F_HEAP_LATE, 9, p, sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), -EBADMSG);
    /* a service's BEGIN: kind, then the figures; END: the figures, then the status */
    got = (struct mvw_heap){-7, -7};
    k = kind_payload(p, "http", "");
    memcpy(p + k, &h, sizeof h);
    n = enc(buf, MVW_MSG_BEGIN, MVW_F_KIND | MVW_F_HEAP, 3, p, k + sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_mem_eq(kind, "http", 4);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_int_eq(got.live_bytes, 123456789);
    ck_assert_uint_eq(rl, 0);
    n = enc(buf, MVW_MSG_BEGIN, MVW_F_KIND | MVW_F_HEAP, 3, p, k + sizeof h - 1); /* cut */
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), -EBADMSG);
    memcpy(p, &h, sizeof h);
    memcpy(p + sizeof h, "\x02\0\0\0", 4);
    n = enc(buf, MVW_MSG_END, MVW_F_HEAP, 3, p, sizeof h + 4);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_uint_eq(rl, 4);
    ck_assert_int_eq(rest[0], 2);
    /* late, no kind, nothing but the figures */
    memcpy(p, &h, sizeof h);
    n = enc(buf, MVW_MSG_FAIL, MVW_F_HEAP | MVW_F_HEAP_LATE, 9, p, sizeof h);
    ck_assert_int_eq(dec(buf, n, MVW_FROM_WORKER, &m), (long)n);
    ck_assert_int_eq(mvw_split_kind(&m, &kind, &kl, &rest, &rl), 0);
    ck_assert_int_eq(mvw_split_heap(&m, &rest, &rl, &got), 1);
    ck_assert_uint_eq(rl, 0);
}
END_TEST

START_TEST(test_type_names)
{
    for (uint16_t t = MVW_MSG_HELLO; t < MVW_MSG_TYPE_MAX; t++)
        ck_assert_str_ne(mvw_type_name(t), "?");
    ck_assert_str_eq(mvw_type_name(MVW_MSG_SNAPSHOT), "SNAPSHOT");
    ck_assert_str_eq(mvw_type_name(0), "?");
    ck_assert_str_eq(mvw_type_name(MVW_MSG_TYPE_MAX), "?");
    ck_assert_str_eq(mvw_type_name(0xffff), "?");
}
END_TEST

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Decodes buf[0..len) as a stream and checks every answer against the contract. */
static void fuzz_one(const uint8_t *buf, size_t len, enum mvw_dir dir, uint32_t max)
{
    size_t off = 0;
    volatile uint8_t sink = 0;

    while (off <= len) {
        struct mvw_msg m;
        const uint8_t *kind, *rest;
        size_t kl, rl;
        long n = mvw_decode(buf + off, len - off, max, dir, &m);

        if (n <= 0) {
            ck_assert(n == 0 || n == -EBADMSG || n == -EMSGSIZE);
            return;
        }
        ck_assert_int_ge(n, MVW_HEADER_SIZE);
        ck_assert_uint_le((size_t)n, len - off);
        ck_assert_uint_eq((size_t)n, MVW_HEADER_SIZE + m.h.length);
        ck_assert_uint_le(m.h.length, max);
        ck_assert(mvw_type_allowed(m.h.type, dir));
        ck_assert_uint_eq(m.h.flags & ~MVW_F_VALID, 0);
        ck_assert_ptr_eq(m.payload, buf + off + MVW_HEADER_SIZE);
        for (uint32_t i = 0; i < m.h.length; i++) /* faults on the guard page if wrong */
            sink ^= m.payload[i];
        if (mvw_split_kind(&m, &kind, &kl, &rest, &rl) == 0 && kind) {
            ck_assert(kind >= m.payload && kind + kl <= m.payload + m.h.length);
            ck_assert(rest + rl == m.payload + m.h.length);
        }
        off += (size_t)n;
    }
    (void)sink;
}

START_TEST(test_fuzz)
{
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *map, *end, seed_msgs[8][64], tmp[4096];
    size_t seed_len[8];
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    const uint32_t maxes[] = {0, 4, 64, 1024, MVW_MAX_PAYLOAD, UINT32_MAX};
    struct mvw_go go = {1, 1, 1, 0};
    struct mvw_hello hello = {1, 0};
    uint32_t st = 0;

    /* The buffer always ends where an inaccessible page begins: any read past it faults. */
    map = mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(map, MAP_FAILED);
    ck_assert_int_eq(mprotect(map + 2 * page, (size_t)page, PROT_NONE), 0);
    end = map + 2 * page;
    seed_len[0] = enc(seed_msgs[0], MVW_MSG_GO, 0, 0, &go, sizeof go);
    seed_len[1] = enc(seed_msgs[1], MVW_MSG_TASK, 0, 5, "task five", 9);
    seed_len[2] = enc(seed_msgs[2], MVW_MSG_STOP, 0, 0, NULL, 0);
    seed_len[3] = enc(seed_msgs[3], MVW_MSG_HELLO, 0, 0, &hello, sizeof hello);
    seed_len[4] = enc(seed_msgs[4], MVW_MSG_DONE, MVW_F_KIND, 5,
                      "\x03"
                      "abcok",
                      6);
    seed_len[5] = enc(seed_msgs[5], MVW_MSG_BEGIN, MVW_F_KIND, 5,
                      "\x02"
                      "ab",
                      3);
    seed_len[6] = enc(seed_msgs[6], MVW_MSG_END, 0, 5, &st, 4);
    seed_len[7] = enc(seed_msgs[7], MVW_MSG_SNAPSHOT, 0, 0, "{}", 2);
    for (int iter = 0; iter < 100000; iter++) {
        uint64_t r = xorshift(&rng);
        size_t len = 0;

        if (r % 3 == 0) { /* random bytes */
            len = (size_t)(xorshift(&rng) % 80);
            for (size_t i = 0; i < len; i++)
                tmp[i] = (uint8_t)xorshift(&rng);
        } else { /* valid messages, concatenated, mutated, truncated */
            int count = 1 + (int)(xorshift(&rng) % 3);
            for (int c = 0; c < count; c++) {
                int s = (int)(xorshift(&rng) % 8);
                memcpy(tmp + len, seed_msgs[s], seed_len[s]);
                len += seed_len[s];
            }
            for (int k = (int)(xorshift(&rng) % 4); k > 0; k--) {
                size_t at = (size_t)(xorshift(&rng) % len);
                if (xorshift(&rng) & 1)
                    tmp[at] ^= (uint8_t)(1u << (xorshift(&rng) % 8));
                else
                    tmp[at] = (uint8_t)xorshift(&rng);
            }
            if (xorshift(&rng) & 1)
                len -= (size_t)(xorshift(&rng) % (len + 1));
        }
        memcpy(end - len, tmp, len);
        fuzz_one(end - len, len, (r >> 8) & 1 ? MVW_FROM_WORKER : MVW_FROM_SUPERVISOR,
                 maxes[(r >> 16) % (sizeof maxes / sizeof maxes[0])]);
    }
    munmap(map, (size_t)page * 3);
}
END_TEST

Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("codec");
    TCase *fz = tcase_create("fuzz");

    tcase_add_test(tc, test_roundtrip_all_types);
    tcase_add_test(tc, test_short_reads);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_oversize);
    tcase_add_test(tc, test_unknown_type);
    tcase_add_test(tc, test_wrong_direction);
    tcase_add_test(tc, test_unknown_flags);
    tcase_add_test(tc, test_fixed_sizes);
    tcase_add_test(tc, test_kind_split);
    tcase_add_test(tc, test_heap_split);
    tcase_add_test(tc, test_type_names);
    suite_add_tcase(s, tc);
    tcase_set_timeout(fz, 60);
    tcase_add_test(fz, test_fuzz);
    suite_add_tcase(s, fz);
    return s;
}
