/*
 * libFuzzer target for the protocol decoder (include/memvisor/protocol.h), header-only.
 * `make fuzz` builds and runs it (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/protocol.
 *
 * The first input byte picks the direction and the caller's payload limit; the rest is a
 * byte stream decoded message after message, as the supervisor and the worker do. Every
 * answer is checked against the decoder's contract; the sanitizers catch any read outside
 * the input (libFuzzer hands over an exactly sized heap copy).
 */
#include <stdint.h>
#include <stdlib.h>

#include <memvisor/protocol.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() so libFuzzer records the input when the contract is broken. */
#define EXPECT(c)    \
    do {             \
        if (!(c))    \
            abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t maxes[] = {0, 8, 256, 65536, MVW_MAX_PAYLOAD, UINT32_MAX};
    enum mvw_dir dir;
    uint32_t max;
    size_t off = 1;
    volatile uint8_t sink = 0;

    if (size < 1)
        return 0;
    dir = data[0] & 1 ? MVW_FROM_WORKER : MVW_FROM_SUPERVISOR;
    max = maxes[(data[0] >> 1) % (sizeof maxes / sizeof maxes[0])];
    while (off <= size) {
        struct mvw_msg m;
        const uint8_t *kind, *rest;
        size_t kl, rl;
        long n = mvw_decode(data + off, size - off, max, dir, &m);

        if (n <= 0) {
            EXPECT(n == 0 || n == -EBADMSG || n == -EMSGSIZE);
            break;
        }
        EXPECT((size_t)n <= size - off);
        EXPECT((size_t)n == MVW_HEADER_SIZE + m.h.length);
        EXPECT(m.h.length <= max && m.h.length <= MVW_MAX_PAYLOAD);
        EXPECT(mvw_type_allowed(m.h.type, dir));
        EXPECT((m.h.flags & ~MVW_F_VALID) == 0);
        EXPECT(m.payload == data + off + MVW_HEADER_SIZE);
        /* END with MVW_F_HEAP: the figures, then its fixed status. */
        EXPECT(mvw_fixed_size(m.h.type) < 0 ||
               mvw_fixed_size(m.h.type) + (m.h.type == MVW_MSG_END && (m.h.flags & MVW_F_HEAP)
                                               ? (long)sizeof(struct mvw_heap)
                                               : 0) ==
                   (long)m.h.length);
        for (uint32_t i = 0; i < m.h.length; i++)
            sink ^= m.payload[i];
        if (mvw_split_kind(&m, &kind, &kl, &rest, &rl) == 0) {
            EXPECT(rest >= m.payload && rest + rl == m.payload + m.h.length);
            if (kind) {
                EXPECT(kl >= 1 && kl <= 255 && kind == m.payload + 1);
                if (kind + kl > rest)
                    abort();
                sink ^= kind[kl - 1];
            }
        } else {
            EXPECT(m.h.flags & MVW_F_KIND);
        }
        (void)mvw_type_name(m.h.type);
        off += (size_t)n;
    }
    (void)sink;
    return 0;
}
