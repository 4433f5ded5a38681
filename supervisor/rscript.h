/*
 * rscript: the Lua scripts a Redis task source runs, and the replies they (and XREADGROUP)
 * give. Pure: texts, formatting, parsing; no I/O.
 *
 * Each step that changes more than one key is one script, so Redis runs it atomically (and
 * writes it to its AOF as one MULTI/EXEC); each is idempotent, so that a script whose reply
 * was lost with the connection can be sent again without doing its work twice:
 *   finish   the result once per task id (HSETNX on STREAM:done; then XADD to the results
 *            stream, and to STREAM:quarantine for a quarantined task), then XACK + XDEL;
 *            1 written, 0 another consumer's was there, 2 this consumer's was (sent again)
 *   readd    a task that lost an attempt goes back with its attempts: only while this
 *            consumer still owns the entry, and not when the task has a result; XACK + XDEL
 *            of the old entry and XADD of the new one
 *   bad      an entry that is no task: to STREAM:quarantine with why, XACK + XDEL
 *   claim    XAUTOCLAIM of entries idle for claim_idle, with each one's delivery count and
 *            former owner (the attempts they cost: docs/many-hosts.md)
 *   mine     the entries this consumer owns (after a reconnect: replies lost on the way)
 *   refresh  XCLAIM ... JUSTID of the entries this consumer holds and still owns (their idle
 *            time restarts, so nobody claims them); says which it no longer owns
 *   stat     XLEN and the group's pending count, and the routed streams' count and total
 *            length; says this memvisor is alive, with its ceiling (STREAM:hosts)
 *   drop     XGROUP DELCONSUMER of this consumer, when it owns nothing; it leaves
 *            STREAM:hosts
 *   route    a task that needs a higher limit than its memvisor gives goes to the routed
 *            stream STREAM:need:LIMIT (named in the zset STREAM:need, scored by LIMIT): only
 *            while this consumer owns the entry, the task has no result, and a memvisor
 *            seen within claim_idle has a ceiling >= LIMIT (else {3, the highest}: the
 *            caller quarantines it)
 *   routed   from each routed stream this memvisor can serve (LIMIT <= its ceiling), or
 *            that no live memvisor can (orphans, to quarantine): entries idle for
 *            claim_idle (XCLAIM), then new ones, COUNT in all
 */
#ifndef MV_RSCRIPT_H
#define MV_RSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rentry.h"

struct redisReply;

typedef enum {
    MV_RS_FINISH,
    MV_RS_READD,
    MV_RS_BAD,
    MV_RS_CLAIM,
    MV_RS_MINE,
    MV_RS_REFRESH,
    MV_RS_STAT,
    MV_RS_DROP,
    MV_RS_ROUTE,
    MV_RS_ROUTED,
    MV_RS_COUNT
} mv_rscript_t;

const char *mv_rscript_text(mv_rscript_t s);
const char *mv_rscript_name(mv_rscript_t s);

/* Arguments of one command, grown as needed; values are borrowed (keep them alive until the
 * command is formatted). */
typedef struct mv_rargs {
    const char **v;
    size_t *len;
    int n, cap;
    int oom; /* an add failed */
} mv_rargs_t;

void mv_rargs_add(mv_rargs_t *a, const void *p, size_t len);
void mv_rargs_str(mv_rargs_t *a, const char *s);
void mv_rargs_free(mv_rargs_t *a);
/* "EVALSHA sha nkeys" then the keys: the start of a script call. */
void mv_rargs_evalsha(mv_rargs_t *a, const char *sha, int nkeys);
/* The command in the protocol (hiredis's redisFormatCommandArgv), malloc'd into *out. Its
 * length, or -ENOMEM. */
int mv_rargs_format(mv_rargs_t *a, char **out);

/* One entry of a reply: its id, fields, times delivered, and its owner before (claim). */
typedef struct mv_rgot {
    const char *eid;
    mv_rbytes_t fv[64]; /* name, value, ... (fields beyond 32 are not seen) */
    size_t nfv;
    long long deliveries;
    const char *owner;  /* "" = not known */
    const char *stream; /* a routed stream's name; NULL = the task stream */
    int64_t limit;      /* a routed stream's limit */
    bool orphan;        /* of a routed stream no live memvisor can serve: quarantine it */
} mv_rgot_t;

/* Calls cb for each entry of an XREADGROUP reply (nil = none) or of a claim or mine reply
 * (then *cursor, if not NULL, gets the next XAUTOCLAIM start). The number of entries, or
 * -EPROTO when the reply is not of that shape. */
typedef void (*mv_rgot_cb)(void *arg, const mv_rgot_t *g);
int mv_rscript_entries(const struct redisReply *r, bool claim, char *cursor, size_t cn,
                       mv_rgot_cb cb, void *arg);

/* Calls cb for each entry of a routed script's reply (each with its stream, limit and
 * orphan mark). The number of entries, or -EPROTO. */
int mv_rscript_routed(const struct redisReply *r, mv_rgot_cb cb, void *arg);

/* The host part of a consumer name HOST:PID:START ("" when it has no such shape). */
void mv_rscript_consumer_host(const char *consumer, char *host, size_t n);

#endif
