/*
 * rscript: the Redis task source's scripts and replies (rscript.h).
 *
 * KEYS are declared (never built inside a script), as Redis asks of scripts. Lua 5.1:
 * unpack(t, i) spreads t[i..]; a Redis nil inside a reply array becomes false.
 */
#include "rscript.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* Redis does not undo a script that fails half-way: the key types are checked before the
 * first write, so that a key of another type fails the script before it changed anything. */
#define TYPE_CHECK                                                                         \
    "local function wrong(k, want)\n"                                                      \
    "  local t = redis.call('TYPE', k)['ok']\n"                                            \
    "  if t ~= 'none' and t ~= want then\n"                                                \
    "    return redis.error_reply('WRONGTYPE ' .. k .. ' holds a ' .. t .. ', not a ' .. " \
    "want)\n"                                                                              \
    "  end\n"                                                                              \
    "end\n"

/* The highest ceiling of a memvisor seen within ARGV idle ms (the hosts hash: consumer ->
 * "CEILING SEEN_MS", written by stat), -1 when none; TIME is Redis's clock, the same for
 * every host. Effects replication (the default since Redis 7) makes TIME then a write
 * legal; 6.2 needs the call first. */
#define LIVE_CEILING                                                                   \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                \
    "local function now_ms()\n"                                                        \
    "  local t = redis.call('TIME')\n"                                                 \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"             \
    "end\n"                                                                            \
    "local function live_top(hosts, idle)\n"                                           \
    "  local now, top, h = now_ms(), -1, redis.call('HGETALL', hosts)\n"               \
    "  for i = 1, #h, 2 do\n"                                                          \
    "    local c, seen = string.match(h[i + 1], '^(%d+) (%d+)$')\n"                    \
    "    if c and now - tonumber(seen) <= tonumber(idle) and tonumber(c) > top then\n" \
    "      top = tonumber(c)\n"                                                        \
    "    end\n"                                                                        \
    "  end\n"                                                                          \
    "  return top\n"                                                                   \
    "end\n"

/* What a memvisor that raised an entry's hard limit kept for whoever takes the entry over
 * (rheld.c: the escalated hash, "STREAM ENTRY" -> a JSON object of the entry's attempts,
 * hist, limit and escalations, as strings): appended to the entry's fields, where the last
 * of a name wins. */
#define ESCALATED                                                              \
    "local function escalated(k, s, id, f)\n"                                  \
    "  local v = redis.call('HGET', k, s .. ' ' .. id)\n"                      \
    "  if not v then return f end\n"                                           \
    "  local ok, o = pcall(cjson.decode, v)\n"                                 \
    "  if not ok or type(o) ~= 'table' then return f end\n"                    \
    "  for _, n in ipairs({'attempts', 'hist', 'limit', 'escalations'}) do\n"  \
    "    if type(o[n]) == 'string' then f[#f + 1] = n; f[#f + 1] = o[n] end\n" \
    "  end\n"                                                                  \
    "  return f\n"                                                             \
    "end\n"

static const char finish_lua[] =
    "-- KEYS: tasks, done, results, quarantine, escalated\n"
    "-- ARGV: group, entry, task id, result JSON ('' = no results stream), consumer,\n"
    "--       quarantined ('1'), then the quarantine entry's fields\n" TYPE_CHECK
    "local e = wrong(KEYS[1], 'stream') or wrong(KEYS[2], 'hash')\n"
    "  or (ARGV[4] ~= '' and wrong(KEYS[3], 'stream'))\n"
    "  or (ARGV[6] == '1' and wrong(KEYS[4], 'stream')) or wrong(KEYS[5], 'hash')\n"
    "if e then return e end\n"
    "-- the record: this consumer and this entry (another entry with the same id, a\n"
    "-- producer's mistake, is a duplicate even when this consumer ran both)\n"
    "local mine = ARGV[5] .. ' ' .. ARGV[2]\n"
    "local fresh = redis.call('HSETNX', KEYS[2], ARGV[3], mine)\n"
    "if fresh == 1 then\n"
    "  if ARGV[4] ~= '' then\n"
    "    redis.call('XADD', KEYS[3], '*', 'task', ARGV[3], 'result', ARGV[4])\n"
    "  end\n"
    "  if ARGV[6] == '1' then redis.call('XADD', KEYS[4], '*', unpack(ARGV, 7)) end\n"
    "end\n"
    "-- 2: written before by this call (sent again: its reply was lost)\n"
    "if fresh == 0 and redis.call('HGET', KEYS[2], ARGV[3]) == mine then fresh = 2 end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[5], KEYS[1] .. ' ' .. ARGV[2])\n"
    "return fresh\n";

static const char readd_lua[] =
    "-- KEYS: tasks, done, escalated; ARGV: group, entry, consumer, task id, the new\n"
    "-- entry's fields (XPENDING fails on a tasks key of another type: before any "
    "write)\n" TYPE_CHECK "local e = wrong(KEYS[2], 'hash') or wrong(KEYS[3], 'hash')\n"
    "if e then return e end\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "local done = redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[3], KEYS[1] .. ' ' .. ARGV[2])\n"
    "if done then return 1 end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))\n"
    "return 2\n";

static const char route_lua[] =
    "-- KEYS: tasks (the entry's stream), done, need, hosts, the routed stream, escalated\n"
    "-- ARGV: group, entry, consumer, task id, limit, claim_idle ms, the new entry's "
    "fields\n" TYPE_CHECK LIVE_CEILING
    "local e = wrong(KEYS[2], 'hash') or wrong(KEYS[3], 'zset') or wrong(KEYS[4], 'hash')\n"
    "  or wrong(KEYS[5], 'stream') or wrong(KEYS[6], 'hash')\n"
    "if e then return e end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "local done = redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1\n"
    "local top = live_top(KEYS[4], ARGV[6])\n"
    "if not done and top < tonumber(ARGV[5]) then\n"
    "  return {3, string.format('%.0f', top)}\n"
    "end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[6], KEYS[1] .. ' ' .. ARGV[2])\n"
    "if done then return 1 end\n"
    "redis.call('ZADD', KEYS[3], ARGV[5], KEYS[5])\n"
    "redis.pcall('XGROUP', 'CREATE', KEYS[5], ARGV[1], '0', 'MKSTREAM')\n"
    "redis.call('XADD', KEYS[5], '*', unpack(ARGV, 7))\n"
    "return 2\n";

/* The routed streams are named by the need zset, not declared: Redis Cluster is not
 * supported anyway (docs/many-hosts.md). */
static const char routed_lua[] =
    "-- KEYS: need, hosts, escalated; ARGV: group, consumer, ceiling, claim_idle ms, "
    "count\n" TYPE_CHECK LIVE_CEILING ESCALATED "local e = wrong(KEYS[3], 'hash')\n"
    "if e then return e end\n"
    "local left, out, top = tonumber(ARGV[5]), {}, nil\n"
    "local z = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')\n"
    "for i = 1, #z, 2 do\n"
    "  local s, lim, orphan = z[i], tonumber(z[i + 1]), 0\n"
    "  if lim > tonumber(ARGV[3]) then\n"
    "    top = top or live_top(KEYS[2], ARGV[4])\n"
    "    orphan = top < lim and 1 or -1\n"
    "  end\n"
    "  if left > 0 and orphan >= 0 and redis.call('XLEN', s) > 0 then\n"
    "    local got, ids, owner = {}, {}, {}\n"
    "    for _, e in ipairs(redis.call('XPENDING', s, ARGV[1], 'IDLE', ARGV[4], '-', '+',\n"
    "                                  left)) do\n"
    "      ids[#ids + 1] = e[1]\n"
    "      owner[e[1]] = e[2]\n"
    "    end\n"
    "    if #ids > 0 then\n"
    "      for _, e in ipairs(redis.call('XCLAIM', s, ARGV[1], ARGV[2], ARGV[4],\n"
    "                                    unpack(ids))) do\n"
    "        if type(e) == 'table' and type(e[2]) == 'table' then\n"
    "          local d = redis.call('XPENDING', s, ARGV[1], e[1], e[1], 1)\n"
    "          got[#got + 1] = {e[1], escalated(KEYS[3], s, e[1], e[2]),\n"
    "                           d[1] and d[1][4] or 1, owner[e[1]] or ''}\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    if left - #got > 0 then\n"
    "      local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT',\n"
    "                           left - #got, 'STREAMS', s, '>')\n"
    "      if r then\n"
    "        for _, e in ipairs(r[1][2]) do got[#got + 1] = {e[1], e[2], 1, ''} end\n"
    "      end\n"
    "    end\n"
    "    left = left - #got\n"
    "    if #got > 0 then out[#out + 1] = {s, z[i + 1], orphan, got} end\n"
    "  end\n"
    "end\n"
    "return out\n";

static const char bad_lua[] =
    "-- KEYS: tasks, quarantine, escalated; ARGV: group, entry, the quarantine entry's\n"
    "-- fields\n" TYPE_CHECK "local e = wrong(KEYS[2], 'stream') or wrong(KEYS[3], 'hash')\n"
    "if e then return e end\n"
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then\n"
    "  redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "  redis.call('HDEL', KEYS[3], KEYS[1] .. ' ' .. ARGV[2])\n"
    "  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

static const char claim_lua[] =
    "-- KEYS: tasks, escalated; ARGV: group, consumer, min idle ms, cursor, count\n" TYPE_CHECK
        ESCALATED "local e = wrong(KEYS[2], 'hash')\n"
    "if e then return e end\n"
    "local owner = {}\n"
    "for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4],\n"
    "                              '+', ARGV[5])) do\n"
    "  owner[e[1]] = e[2]\n"
    "end\n"
    "local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],\n"
    "                     'COUNT', ARGV[5])\n"
    "local out = {}\n"
    "for _, e in ipairs(r[2]) do\n"
    "  if type(e) == 'table' and type(e[2]) == 'table' then\n"
    "    local d = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)\n"
    "    out[#out + 1] = {e[1], escalated(KEYS[2], KEYS[1], e[1], e[2]),\n"
    "                     d[1] and d[1][4] or 1, owner[e[1]] or ''}\n"
    "  end\n"
    "end\n"
    "return {r[1], out}\n";

static const char mine_lua[] =
    "-- KEYS: tasks; ARGV: group, consumer, count\n"
    "local out = {}\n"
    "for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3],\n"
    "                              ARGV[2])) do\n"
    "  local r = redis.call('XRANGE', KEYS[1], e[1], e[1])\n"
    "  if r[1] then out[#out + 1] = {e[1], r[1][2], e[4], ''}\n"
    "  else redis.call('XACK', KEYS[1], ARGV[1], e[1]) end\n"
    "end\n"
    "return {'0-0', out}\n";

static const char refresh_lua[] =
    "-- KEYS: tasks; ARGV: group, consumer, the entries it holds\n"
    "-- returns the stream, then the entries this consumer no longer owns\n"
    "local keep, gone = {KEYS[1], ARGV[1], ARGV[2], 0}, {KEYS[1]}\n"
    "local mine = {}\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000,\n"
    "                                ARGV[2])) do\n"
    "    mine[e[1]] = true\n"
    "  end\n"
    "end\n"
    "for i = 3, #ARGV do\n"
    "  if mine[ARGV[i]] then keep[#keep + 1] = ARGV[i] else gone[#gone + 1] = ARGV[i] end\n"
    "end\n"
    "if #keep > 4 then\n"
    "  keep[#keep + 1] = 'JUSTID'\n"
    "  redis.call('XCLAIM', unpack(keep))\n"
    "end\n"
    "return gone\n";

static const char stat_lua[] =
    "-- KEYS: tasks, need, hosts; ARGV: group, consumer, ceiling, claim_idle ms\n"
    "-- also says this memvisor is alive, with its ceiling (the hosts hash), and forgets\n"
    "-- memvisors silent for 10 claim_idle\n" TYPE_CHECK LIVE_CEILING
    "local e = wrong(KEYS[2], 'zset') or wrong(KEYS[3], 'hash')\n"
    "if e then return e end\n"
    "local n = redis.call('XLEN', KEYS[1])\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1])\n"
    "local now = now_ms()\n"
    "redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. ' ' .. now)\n"
    "local h = redis.call('HGETALL', KEYS[3])\n"
    "for i = 1, #h, 2 do\n"
    "  local seen = string.match(h[i + 1], ' (%d+)$')\n"
    "  if not seen or now - tonumber(seen) > 10 * tonumber(ARGV[4]) then\n"
    "    redis.call('HDEL', KEYS[3], h[i])\n"
    "  end\n"
    "end\n"
    "local z, routed = redis.call('ZRANGE', KEYS[2], 0, -1), 0\n"
    "for _, s in ipairs(z) do routed = routed + redis.call('XLEN', s) end\n"
    "return {n, p[1], #z, routed}\n";

static const char drop_lua[] =
    "-- KEYS: tasks, hosts; ARGV: group, consumer\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then\n"
    "  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\n"
    "end\n"
    "return -1\n";

static const struct {
    const char *name, *text;
} scripts[MV_RS_COUNT] = {
    {"finish", finish_lua}, {"readd", readd_lua},     {"bad", bad_lua},   {"claim", claim_lua},
    {"mine", mine_lua},     {"refresh", refresh_lua}, {"stat", stat_lua}, {"drop", drop_lua},
    {"route", route_lua},   {"routed", routed_lua},
};

const char *mv_rscript_text(mv_rscript_t s)
{
    return (unsigned)s < MV_RS_COUNT ? scripts[s].text : NULL;
}

const char *mv_rscript_name(mv_rscript_t s)
{
    return (unsigned)s < MV_RS_COUNT ? scripts[s].name : "?";
}

void mv_rargs_add(mv_rargs_t *a, const void *p, size_t len)
{
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        const char **v = realloc(a->v, (size_t)cap * sizeof *v);
        size_t *l = v ? realloc(a->len, (size_t)cap * sizeof *l) : NULL;

        if (v)
            a->v = v;
        if (!v || !l) {
            a->oom = 1;
            return;
        }
        a->len = l;
        a->cap = cap;
    }
    a->v[a->n] = p ? p : "";
    a->len[a->n++] = len;
}

void mv_rargs_str(mv_rargs_t *a, const char *s)
{
    mv_rargs_add(a, s, strlen(s));
}

void mv_rargs_free(mv_rargs_t *a)
{
    free(a->v);
    free(a->len);
    memset(a, 0, sizeof *a);
}

void mv_rargs_evalsha(mv_rargs_t *a, const char *sha, int nkeys)
{
    static const char digits[][2] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

    mv_rargs_str(a, "EVALSHA");
    mv_rargs_str(a, sha);
    mv_rargs_str(a, digits[nkeys % 10]);
}

int mv_rargs_format(mv_rargs_t *a, char **out)
{
    int n;

    *out = NULL;
    if (a->oom)
        return -ENOMEM;
    n = redisFormatCommandArgv(out, a->n, a->v, a->len);
    return n < 0 ? -ENOMEM : n;
}

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* One entry: [id, [f, v, ...]] (XREADGROUP), or [id, [f, v, ...], deliveries, owner]. */
static int one(const redisReply *e, bool claim, const mv_rgot_t *base, mv_rgot_cb cb, void *arg)
{
    const redisReply *f;
    mv_rgot_t g = *base;

    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < (claim ? 4u : 2u) ||
        !is_str(e->element[0]))
        return -EPROTO;
    f = e->element[1];
    g.eid = e->element[0]->str;
    if (f->type == REDIS_REPLY_NIL)
        return 0; /* deleted while pending (a history read): nothing to run */
    if (f->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    for (size_t i = 0; i < f->elements && g.nfv < sizeof g.fv / sizeof g.fv[0]; i++) {
        if (!is_str(f->element[i]))
            return -EPROTO;
        g.fv[g.nfv++] = (mv_rbytes_t){f->element[i]->str, (size_t)f->element[i]->len};
    }
    if (claim) {
        if (e->element[2]->type != REDIS_REPLY_INTEGER || !is_str(e->element[3]))
            return -EPROTO;
        g.deliveries = e->element[2]->integer;
        g.owner = e->element[3]->str;
    }
    cb(arg, &g);
    return 1;
}

int mv_rscript_entries(const redisReply *r, bool claim, char *cursor, size_t cn, mv_rgot_cb cb,
                       void *arg)
{
    const redisReply *list;
    mv_rgot_t base = {.deliveries = 1, .owner = ""};
    int n = 0, k;

    if (!r)
        return -EPROTO;
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    if (r->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    if (claim) {
        if (r->elements != 2 || !is_str(r->element[0]) || r->element[1]->type != REDIS_REPLY_ARRAY)
            return -EPROTO;
        if (cursor)
            snprintf(cursor, cn, "%s", r->element[0]->str);
        list = r->element[1];
    } else {
        /* [[stream, [entries]]]: one stream asked for. */
        if (r->elements != 1 || r->element[0]->type != REDIS_REPLY_ARRAY ||
            r->element[0]->elements != 2 || r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
            return -EPROTO;
        list = r->element[0]->element[1];
    }
    for (size_t i = 0; i < list->elements; i++) {
        if ((k = one(list->element[i], claim, &base, cb, arg)) < 0)
            return k;
        n += k;
    }
    return n;
}

/* [[stream, limit, orphan, [[id, fields, deliveries, owner]...]]...] */
int mv_rscript_routed(const redisReply *r, mv_rgot_cb cb, void *arg)
{
    int n = 0, k;

    if (!r || r->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *s = r->element[i];
        mv_rgot_t base = {.deliveries = 1, .owner = ""};
        char *end;

        if (s->type != REDIS_REPLY_ARRAY || s->elements != 4 || !is_str(s->element[0]) ||
            !is_str(s->element[1]) || s->element[2]->type != REDIS_REPLY_INTEGER ||
            s->element[3]->type != REDIS_REPLY_ARRAY)
            return -EPROTO;
        base.stream = s->element[0]->str;
        base.limit = strtoll(s->element[1]->str, &end, 10);
        base.orphan = s->element[2]->integer > 0;
        if (*end || base.limit <= 0)
            return -EPROTO;
        for (size_t j = 0; j < s->element[3]->elements; j++) {
            if ((k = one(s->element[3]->element[j], true, &base, cb, arg)) < 0)
                return k;
            n += k;
        }
    }
    return n;
}

void mv_rscript_consumer_host(const char *consumer, char *host, size_t n)
{
    const char *last = strrchr(consumer, ':'), *p = last;

    host[0] = '\0';
    if (!last)
        return;
    while (p > consumer && p[-1] != ':')
        p--;
    if (p == consumer || p - 1 == consumer)
        return; /* no HOST:PID:START */
    snprintf(host, n, "%.*s", (int)(p - 1 - consumer), consumer);
}
