/*
 * rurl: where a Redis stream is, as the settings name it (pure).
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM
 *
 * HOST is a name, an IPv4 address or [an IPv6 address]; PORT defaults to 6379; STREAM is the
 * rest of the path (any bytes but spaces and control characters, '/' and ':' included; no
 * percent-decoding). USER and PASSWORD, when given, are sent with AUTH on every connection.
 *
 * The results setting may name a stream, a file, or both: "redis://HOST:PORT/STREAM FILE"
 * (the URL first, one space, then the file path, which may itself hold spaces).
 */
#ifndef MV_RURL_H
#define MV_RURL_H

#include <stdbool.h>
#include <stddef.h>

#define MV_RURL_PREFIX     "redis://"
#define MV_RURL_STREAM_MAX 200

typedef struct mv_rurl {
    char host[256]; /* without the brackets of an IPv6 address */
    int port;
    char stream[MV_RURL_STREAM_MAX + 1];
    char user[128]; /* "" = none (AUTH PASSWORD) */
    char pass[256]; /* "" = no AUTH */
} mv_rurl_t;

/* Whether a setting names a Redis stream (starts with redis://). */
bool mv_rurl_is(const char *s);
/* Parses `s` into u. 0, or -EINVAL with the reason in `why` (naming the part that is wrong). */
int mv_rurl_parse(const char *s, mv_rurl_t *u, char *why, size_t n);
/* "redis://HOST:PORT/STREAM", the password left out: for logs and messages. */
void mv_rurl_name(const mv_rurl_t *u, char *out, size_t n);
/* Same server: same host (as written) and port. */
bool mv_rurl_same_server(const mv_rurl_t *a, const mv_rurl_t *b);

/* The results setting split: the file part (never NULL: "" when there is none; it points into
 * `spec`) and the stream URL (copied into url, "" when there is none). 0, or -EINVAL (the URL
 * does not fit in url). */
int mv_rurl_results_split(const char *spec, char *url, size_t un, const char **file);
/* The file part of the results setting ("" when it names a stream only). */
const char *mv_rurl_results_file(const char *spec);
/* The results setting made of a stream URL and a file, either possibly empty or NULL: what
 * --results given twice means. Into out; -EINVAL when both are URLs or both files, or out is
 * too small. */
int mv_rurl_results_join(const char *a, const char *b, char *out, size_t n);

/* The task source and results settings together: a results stream needs a Redis task source
 * on the same server, and every URL must parse. 0, or -EINVAL with the reason in `why`. */
int mv_rurl_check_settings(const char *source, const char *results, char *why, size_t n);

#endif
