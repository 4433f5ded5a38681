/*
 * rentry: what a Redis task source parses, with plain inputs: the URLs and the results
 * setting (rurl), a task as a stream entry and back (rentry), the replies of reads and
 * claims as hiredis hands them over (rscript). End to end: check_redis.c.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rentry.h"
#include "rscript.h"
#include "rurl.h"
#include "suites.h"

/* ---- the URL ---- */

START_TEST(url_parser_takes_what_a_redis_url_holds)
{
    mv_rurl_t u;
    char why[512], name[512];

    ck_assert_int_eq(mv_rurl_parse("redis://h/s", &u, why, sizeof why), 0);
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_str_eq(u.stream, "s");
    ck_assert_str_eq(u.pass, "");
    ck_assert_int_eq(mv_rurl_parse("redis://10.0.0.5:7000/jobs:batch/1", &u, why, sizeof why), 0);
    ck_assert_str_eq(u.host, "10.0.0.5");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_str_eq(u.stream, "jobs:batch/1");
    ck_assert_int_eq(mv_rurl_parse("redis://[::1]:7001/q", &u, why, sizeof why), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 7001);
    mv_rurl_name(&u, name, sizeof name);
    ck_assert_str_eq(name, "redis://[::1]:7001/q");
    ck_assert_int_eq(mv_rurl_parse("redis://:p@ss@h:1/s", &u, why, sizeof why), 0);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.pass, "p@ss");
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(mv_rurl_parse("redis://app:secret@h/s", &u, why, sizeof why), 0);
    ck_assert_str_eq(u.user, "app");
    ck_assert_str_eq(u.pass, "secret");
    mv_rurl_name(&u, name, sizeof name);
    ck_assert_str_eq(name, "redis://h:6379/s"); /* never the password */
    ck_assert(mv_rurl_is("redis://x/y") && !mv_rurl_is("tasks.txt") && !mv_rurl_is(NULL));
    /* a message about a bad URL never shows its password */
    ck_assert_int_eq(mv_rurl_parse("redis://app:hush@h:0/s", &u, why, sizeof why), -EINVAL);
    ck_assert_msg(strstr(why, "redis://app:***@h:0/s") && !strstr(why, "hush"), "%s", why);
    ck_assert_int_eq(mv_rurl_parse("redis://hush@h/", &u, why, sizeof why), -EINVAL);
    ck_assert_msg(strstr(why, "redis://***@h/") && !strstr(why, "hush"), "%s", why);
}
END_TEST

START_TEST(url_parser_names_what_is_wrong)
{
    static const struct {
        const char *url, *says;
    } bad[] = {
        {"http://h/s", "not a redis:// URL"},
        {"redis://h", "no /STREAM"},
        {"redis://h/", "no stream name"},
        {"redis:///s", "no host"},
        {"redis://h:0/s", "port"},
        {"redis://h:70000/s", "port"},
        {"redis://h:x/s", "port"},
        {"redis://h:/s", "without a port"},
        {"redis://h:+1/s", "port"},
        {"redis://[::1/s", "']'"},
        {"redis://[]/s", "IPv6"},
        {"redis://[::1]x/s", "no :PORT"},
        {"redis://h%2f/s", "character"},
        {"redis://h/a b", "space"},
        {"redis://h/a\tb", "control"},
    };
    mv_rurl_t u;
    char why[512];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(mv_rurl_parse(bad[i].url, &u, why, sizeof why), -EINVAL);
        ck_assert_msg(strstr(why, bad[i].says) && strstr(why, "redis://[[USER]"), "%s: %s",
                      bad[i].url, why);
    }
}
END_TEST

START_TEST(results_setting_splits_into_a_stream_and_a_file)
{
    char url[256], out[256], why[512];
    const char *file;

    ck_assert_int_eq(mv_rurl_results_split("redis://h/r out dir/x.jsonl", url, sizeof url, &file),
                     0);
    ck_assert_str_eq(url, "redis://h/r");
    ck_assert_str_eq(file, "out dir/x.jsonl");
    ck_assert_int_eq(mv_rurl_results_split("out.jsonl", url, sizeof url, &file), 0);
    ck_assert_str_eq(url, "");
    ck_assert_str_eq(file, "out.jsonl");
    ck_assert_int_eq(mv_rurl_results_split("redis://h/r", url, sizeof url, &file), 0);
    ck_assert_str_eq(file, "");
    ck_assert_str_eq(mv_rurl_results_file("redis://h/r a.jsonl"), "a.jsonl");
    ck_assert_int_eq(mv_rurl_results_split("redis://h/rrrrrrrrrr", url, 8, &file), -EINVAL);
    /* --results twice: either order, never two of a kind */
    ck_assert_int_eq(mv_rurl_results_join("a.jsonl", "redis://h/r", out, sizeof out), 0);
    ck_assert_str_eq(out, "redis://h/r a.jsonl");
    ck_assert_int_eq(mv_rurl_results_join("redis://h/r", "a.jsonl", out, sizeof out), 0);
    ck_assert_str_eq(out, "redis://h/r a.jsonl");
    ck_assert_int_eq(mv_rurl_results_join("a.jsonl", "b.jsonl", out, sizeof out), -EINVAL);
    ck_assert_int_eq(mv_rurl_results_join("redis://h/r", "redis://h/q", out, sizeof out), -EINVAL);
    /* the source and the results together */
    ck_assert_int_eq(mv_rurl_check_settings("redis://h/t", "redis://h/r a.jsonl", why, sizeof why),
                     0);
    ck_assert_int_eq(mv_rurl_check_settings("t.txt", "a.jsonl", why, sizeof why), 0);
    ck_assert_int_eq(mv_rurl_check_settings("t.txt", "redis://h/r", why, sizeof why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "needs a Redis task source"));
    ck_assert_int_eq(mv_rurl_check_settings("redis://h/t", "redis://g/r", why, sizeof why),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "must be on the task stream's Redis server"));
    ck_assert_int_eq(mv_rurl_check_settings("redis://h/t", "redis://h/t", why, sizeof why),
                     -EINVAL);
    ck_assert_int_eq(mv_rurl_check_settings("redis://h:x/t", "", why, sizeof why), -EINVAL);
}
END_TEST

/* ---- the entry codec ---- */

/* The fields of an rentry as decode takes them. */
static size_t fields_of(const mv_rentry_t *e, mv_rbytes_t *fv)
{
    for (int i = 0; i < e->argc; i++)
        fv[i] = (mv_rbytes_t){e->argv[i], e->len[i]};
    return (size_t)e->argc;
}

START_TEST(entry_round_trip_keeps_bytes_attempts_and_hosts)
{
    static const char data[] = "job\0with a NUL\n";
    mv_task_t *t = mv_task_new(42, data, sizeof data - 1), *back;
    mv_rbytes_t fv[MV_RENTRY_MAX_FIELDS];
    mv_rentry_t e;
    char why[256];

    ck_assert_int_eq(mv_rentry_encode(t, "here", &e), 0);
    ck_assert_int_eq(e.argc, 4); /* no attempts yet: id and data only */
    mv_rentry_free(&e);
    /* A limit without attempts (an entry from outside) keeps its limit (found by fuzzing). */
    t->limit = 24;
    ck_assert_int_eq(mv_rentry_encode(t, "here", &e), 0);
    ck_assert_int_eq(mv_rentry_decode(fv, fields_of(&e, fv), 1 << 20, &back, why, sizeof why), 0);
    ck_assert_int_eq(back->limit, 24);
    mv_task_free(back);
    mv_rentry_free(&e);
    t->attempts = 2;
    ck_assert_int_eq(mv_task_note_attempt(t, MV_R_HARD_LIMIT, 3, 4001, -9, 600 << 20), 0);
    ck_assert_int_eq(mv_task_note_attempt(t, MV_R_LOST, 0, 0, 0, -1), 0);
    snprintf(t->hist[1].host, sizeof t->hist[1].host, "web7");
    t->hist[0].limit = 512 << 20;
    t->limit = 1 << 30; /* escalated: its raised limit travels with it */
    t->escalations = 1;
    ck_assert_int_eq(mv_rentry_encode(t, "here", &e), 0);
    ck_assert_int_eq(e.argc, 12);
    ck_assert_int_eq(mv_rentry_decode(fv, fields_of(&e, fv), 1 << 20, &back, why, sizeof why), 0);
    ck_assert_uint_eq(back->id, 42);
    ck_assert_uint_eq(back->len, sizeof data - 1);
    ck_assert(memcmp(back->data, data, sizeof data - 1) == 0);
    ck_assert_uint_eq(back->attempts, 2);
    ck_assert_uint_eq(back->nhist, 2);
    ck_assert_int_eq(back->hist[0].reason, MV_R_HARD_LIMIT);
    ck_assert_int_eq(back->hist[0].slot, 3);
    ck_assert_int_eq(back->hist[0].pid, 4001);
    ck_assert_int_eq(back->hist[0].status, -9);
    ck_assert_int_eq(back->hist[0].peak, 600 << 20);
    ck_assert_int_eq(back->hist[0].limit, 512 << 20);
    ck_assert_int_eq(back->limit, 1 << 30);
    ck_assert_uint_eq(back->escalations, 1);
    ck_assert_str_eq(back->hist[0].host, "here"); /* made here: named by the encoder */
    ck_assert_int_eq(back->hist[1].reason, MV_R_LOST);
    ck_assert_str_eq(back->hist[1].host, "web7");
    ck_assert_int_eq(back->hist[1].peak, -1);
    ck_assert_ptr_null(back->bad);
    mv_rentry_free(&e);
    mv_task_free(back);
    mv_task_free(t);
}
END_TEST

START_TEST(entry_decoder_refuses_what_is_no_task)
{
    static const struct {
        const char *f[8];
        const char *says;
    } bad[] = {
        {{"data", "x"}, "no id field"},
        {{"id", "0", "data", "x"}, "not an integer in 1.."},
        {{"id", "12a", "data", "x"}, "not an integer in 1.."},
        {{"id", "99999999999999999999", "data", "x"}, "not an integer in 1.."},
        {{"id", "18446744073709551615", "data", "x"}, "not an integer in 1.."},
        {{"id", "9223372036854775808", "data", "x"}, "not an integer in 1.."},
        {{"id", "", "data", "x"}, "not an integer in 1.."},
        {{"id", "7"}, "no data field"},
        {{"id", "7", "data", "x", "attempts", "x"}, "attempts"},
        {{"id", "7", "data", "x", "attempts", "70000"}, "attempts"},
        {{"id", "7", "data", "x", "hist", "{"}, "hist is not a JSON array"},
        {{"id", "7", "data", "x", "hist", "[{\"worker\":1}]"}, "hist entry 0"},
        {{"id", "7", "data", "x", "limit", "-1"}, "the limit field is not a hard limit in bytes"},
        {{"id", "7", "data", "x", "escalations", "x"}, "the escalations field is not an integer"},
        {{"id", "7", "data", "x", "limit", "64Mx"}, "the limit field is not a hard limit in bytes"},
        {{"id", "7", "data", "x", "limit", "99999999999999999999"}, "the limit field"},
    };
    mv_rbytes_t fv[8];
    mv_task_t *t;
    char why[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 0;
        while (n < 8 && bad[i].f[n]) {
            fv[n] = (mv_rbytes_t){bad[i].f[n], strlen(bad[i].f[n])};
            n++;
        }
        ck_assert_int_eq(mv_rentry_decode(fv, n, 100, &t, why, sizeof why), -EINVAL);
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(why, bad[i].says), "case %zu: %s", i, why);
    }
    /* Too long for max_size: a task that ends as failed, without its data. Unknown fields
     * are left alone. */
    fv[0] = (mv_rbytes_t){"id", 2};
    fv[1] = (mv_rbytes_t){"9223372036854775807", 19};
    fv[2] = (mv_rbytes_t){"data", 4};
    fv[3] = (mv_rbytes_t){"0123456789", 10};
    fv[4] = (mv_rbytes_t){"future", 6};
    fv[5] = (mv_rbytes_t){"x", 1};
    ck_assert_int_eq(mv_rentry_decode(fv, 6, 9, &t, why, sizeof why), 0);
    ck_assert_uint_eq(t->id, INT64_MAX);
    ck_assert_str_eq(t->bad, mv_rentry_too_long);
    ck_assert_uint_eq(t->len, 0);
    mv_task_free(t);
}
END_TEST

/* A reply parsed from the protocol's bytes, as hiredis would hand it over. */
static redisReply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;

    ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(rd, &r), REDIS_OK);
    redisReaderFree(rd);
    ck_assert_ptr_nonnull(r);
    return r;
}

typedef struct seen {
    char eid[8][48], owner[8][48], stream[8][48];
    long long deliveries[8], limit[8];
    bool orphan[8];
    size_t nfv[8];
    int n;
} seen_t;

static void seen_cb(void *arg, const mv_rgot_t *g)
{
    seen_t *s = arg;

    snprintf(s->eid[s->n], sizeof s->eid[0], "%s", g->eid);
    snprintf(s->owner[s->n], sizeof s->owner[0], "%s", g->owner);
    snprintf(s->stream[s->n], sizeof s->stream[0], "%s", g->stream ? g->stream : "");
    s->deliveries[s->n] = g->deliveries;
    s->limit[s->n] = g->limit;
    s->orphan[s->n] = g->orphan;
    s->nfv[s->n++] = g->nfv;
}

START_TEST(replies_of_reads_and_claims_are_parsed_or_refused)
{
    redisReply *r;
    seen_t s = {0};
    char cursor[64] = "";

    /* XREADGROUP: [[stream, [[id, [f, v, ...]], ...]]] */
    r = reply_of("*1\r\n*2\r\n$4\r\njobs\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$2\r\nid\r\n$1\r\n1\r\n"
                 "$4\r\ndata\r\n$1\r\nx\r\n*2\r\n$3\r\n2-0\r\n*0\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, false, NULL, 0, seen_cb, &s), 2);
    ck_assert_str_eq(s.eid[0], "1-0");
    ck_assert_uint_eq(s.nfv[0], 4);
    ck_assert_int_eq(s.deliveries[0], 1);
    freeReplyObject(r);
    /* nil: nothing new */
    r = reply_of("*-1\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, false, NULL, 0, seen_cb, &s), 0);
    freeReplyObject(r);
    /* claim: [cursor, [[id, [f, v], deliveries, owner]]] */
    memset(&s, 0, sizeof s);
    r = reply_of("*2\r\n$3\r\n9-0\r\n*1\r\n*4\r\n$3\r\n5-1\r\n*2\r\n$2\r\nid\r\n$1\r\n5\r\n"
                 ":3\r\n$11\r\nweb1:42:100\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, true, cursor, sizeof cursor, seen_cb, &s), 1);
    ck_assert_str_eq(cursor, "9-0");
    ck_assert_int_eq(s.deliveries[0], 3);
    ck_assert_str_eq(s.owner[0], "web1:42:100");
    freeReplyObject(r);
    /* shapes that are no such reply */
    r = reply_of(":1\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, false, NULL, 0, seen_cb, &s), -EPROTO);
    ck_assert_int_eq(mv_rscript_entries(r, true, cursor, sizeof cursor, seen_cb, &s), -EPROTO);
    freeReplyObject(r);
    r = reply_of("*1\r\n*2\r\n$4\r\njobs\r\n*1\r\n*2\r\n:5\r\n*0\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, false, NULL, 0, seen_cb, &s), -EPROTO);
    freeReplyObject(r);
    r = reply_of("*2\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*0\r\n");
    ck_assert_int_eq(mv_rscript_entries(r, true, cursor, sizeof cursor, seen_cb, &s), -EPROTO);
    freeReplyObject(r);
    /* routed: [[stream, limit, orphan, [[id, [f, v], deliveries, owner]...]]...] */
    memset(&s, 0, sizeof s);
    r = reply_of("*2\r\n*4\r\n$12\r\njobs:need:64\r\n$2\r\n64\r\n:0\r\n*1\r\n*4\r\n$3\r\n5-1\r\n"
                 "*2\r\n$2\r\nid\r\n$1\r\n5\r\n:1\r\n$0\r\n\r\n"
                 "*4\r\n$13\r\njobs:need:512\r\n$3\r\n512\r\n:1\r\n*1\r\n*4\r\n$3\r\n6-0\r\n"
                 "*2\r\n$2\r\nid\r\n$1\r\n6\r\n:2\r\n$5\r\na:1:2\r\n");
    ck_assert_int_eq(mv_rscript_routed(r, seen_cb, &s), 2);
    ck_assert_str_eq(s.stream[0], "jobs:need:64");
    ck_assert_int_eq(s.limit[0], 64);
    ck_assert(!s.orphan[0]);
    ck_assert_str_eq(s.stream[1], "jobs:need:512");
    ck_assert(s.orphan[1]);
    ck_assert_int_eq(s.deliveries[1], 2);
    freeReplyObject(r);
    /* a limit that is no number, a group of the wrong shape */
    r = reply_of("*1\r\n*4\r\n$1\r\nx\r\n$2\r\n6x\r\n:0\r\n*0\r\n");
    ck_assert_int_eq(mv_rscript_routed(r, seen_cb, &s), -EPROTO);
    freeReplyObject(r);
    r = reply_of("*1\r\n*2\r\n$1\r\nx\r\n$2\r\n64\r\n");
    ck_assert_int_eq(mv_rscript_routed(r, seen_cb, &s), -EPROTO);
    freeReplyObject(r);
    /* the host of a consumer name */
    mv_rscript_consumer_host("web1.example:42:1700", cursor, sizeof cursor);
    ck_assert_str_eq(cursor, "web1.example");
    mv_rscript_consumer_host("nocolons", cursor, sizeof cursor);
    ck_assert_str_eq(cursor, "");
}
END_TEST

Suite *rentry_suite(void)
{
    Suite *s = suite_create("rentry");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, url_parser_takes_what_a_redis_url_holds);
    tcase_add_test(tc, url_parser_names_what_is_wrong);
    tcase_add_test(tc, results_setting_splits_into_a_stream_and_a_file);
    tcase_add_test(tc, entry_round_trip_keeps_bytes_attempts_and_hosts);
    tcase_add_test(tc, entry_decoder_refuses_what_is_no_task);
    tcase_add_test(tc, replies_of_reads_and_claims_are_parsed_or_refused);
    suite_add_tcase(s, tc);
    return s;
}
