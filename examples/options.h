/*
 * options.h: the small option parsers the C examples share ("64K", "10ms") and a sleep
 * that survives signals. Header-only so each example stays one file plus this.
 */
#ifndef MV_EXAMPLE_OPTIONS_H
#define MV_EXAMPLE_OPTIONS_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "64K" -> 65536; K/M/G are powers of 1024. -1 on a malformed size. */
static inline long long parse_size(const char *s)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    default: break;
    }
    if (*end || v > (1ull << (62 - shift)))
        return -1;
    return (long long)(v << shift);
}

/* "10ms" -> 10000000 ns; units us, ms, s, m; a bare number is seconds. -1 when malformed. */
static inline long long parse_duration(const char *s)
{
    char *end;
    double v;
    double mult;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno)
        return -1;
    if (!strcmp(end, "us"))
        mult = 1e3;
    else if (!strcmp(end, "ms"))
        mult = 1e6;
    else if (!strcmp(end, "s") || !*end)
        mult = 1e9;
    else if (!strcmp(end, "m"))
        mult = 60e9;
    else
        return -1;
    if (v * mult > 86400e9)
        return -1;
    return (long long)(v * mult);
}

static inline void sleep_ns(long long ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};

    while (ns > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

#endif
