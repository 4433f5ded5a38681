/*
 * proto_util: codec shorthands shared by the protocol and worker_api suites
 * (tests/check_protocol.c, tests/check_worker_api.c). Header-only, static inline, so each
 * suite stays one file and neither links against the other.
 */
#ifndef MV_TEST_PROTO_UTIL_H
#define MV_TEST_PROTO_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <memvisor/protocol.h>

/* Encodes one message into out; returns its size. */
static inline size_t enc(uint8_t *out, uint16_t type, uint16_t flags, uint64_t task, const void *p,
                         size_t len)
{
    mvw_put_header(out, type, flags, task, (uint32_t)len);
    if (len)
        memcpy(out + MVW_HEADER_SIZE, p, len);
    return MVW_HEADER_SIZE + len;
}

/* Decodes one message with the largest payload the protocol allows. */
static inline long dec(const uint8_t *buf, size_t len, enum mvw_dir dir, struct mvw_msg *m)
{
    return mvw_decode(buf, len, MVW_MAX_PAYLOAD, dir, m);
}

#endif
