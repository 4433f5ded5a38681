/*
 * kind: a task's kind from its line ([leak] kind = auto|word|json:FIELD|none), the rule that
 * numbers and ids are no kind, the output contract (printable ASCII, at most
 * MV_LEAK_KIND_MAX bytes), and JSON task lines through a real batch.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "harness.h"
#include "kind.h"
#include "kindpool.h"
#include "suites.h"

/* The kind of `line` under `[leak] kind = spec` (NULL: the default); "" for no kind. */
static const char *kind_of(const char *spec, const char *line)
{
    static char out[MV_LEAK_KIND_MAX + 1];
    mv_errors_t e = {0};
    mv_config_t c;
    const char *k;
    char o[128];

    ck_assert_int_eq(mv_config_init(&c), 0);
    if (spec) {
        snprintf(o, sizeof o, "leak.kind=%s", spec);
        ck_assert_int_eq(mv_config_override(&c, o, 1, &e), 0);
    }
    k = mv_kind_of_line(&c, (const uint8_t *)line, strlen(line), out);
    mv_config_free(&c);
    mv_errors_free(&e);
    ck_assert(!k || k == out);
    return k ? k : "";
}

START_TEST(ids_are_not_kinds)
{
    static const char *const ids[] = {
        "12345",
        "-1.5",
        "+7",
        "2026-12-01",
        "10.0.0.1",
        "1.2.3",
        "1e6",
        "6.02E23",
        ".5e-3",
        "0x1F",
        "0XdeadBEEF",
        "5f2b3c8e",
        "a1b2c3d4",
        "2026-12-01T10:00:00Z",
        "123e4567-e89b-12d3-a456-426614174000",
    };
    static const char *const kinds[] = {
        "resize", "GET",    "-",          "deadbeef",   "a1b2c3",
        "h264",   "sha256", "x86_64",     "e5",         "0xZZ",
        "1st",    "v2",     "/api/users", "thumb-nail", "123e4567-e89b-12d3-a456-42661417400g",
    };

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ck_assert_msg(mv_kind_is_id(ids[i], strlen(ids[i])), "%s should be an id", ids[i]);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        ck_assert_msg(!mv_kind_is_id(kinds[i], strlen(kinds[i])), "%s should be a kind", kinds[i]);
    /* a date is not a kind, nor a hash, whatever else follows */
    ck_assert_str_eq(kind_of(NULL, "12345 resize a.png"), "");
    ck_assert_str_eq(kind_of(NULL, "2026-12-01T10:00:00Z job"), "");
    ck_assert_str_eq(kind_of("word", "5f2b3c8e9a resize"), "");
    /* a numeric suffix after a separator is cut: one kind for every job-N */
    ck_assert_str_eq(kind_of(NULL, "job-1234 resize"), "job");
    ck_assert_str_eq(kind_of(NULL, "job_12_3"), "job");
    ck_assert_str_eq(kind_of(NULL, "job:7"), "job");
    ck_assert_str_eq(kind_of(NULL, "job#0042"), "job");
    ck_assert_str_eq(kind_of(NULL, "x86_64 build"), "x86");
    ck_assert_str_eq(kind_of(NULL, "a1b2c3d4e5-17"), ""); /* what is left is an id */
    ck_assert_str_eq(kind_of(NULL, "-17"), "");
    ck_assert_str_eq(kind_of(NULL, "job-v2"), "job-v2");
}
END_TEST

START_TEST(auto_reads_json_lines)
{
    ck_assert_str_eq(kind_of(NULL, "{\"op\": \"thumb\", \"id\": 7}"), "thumb");
    ck_assert_str_eq(kind_of("auto", "  {\"type\":\"x\"}  "), "x");
    /* the first of kind, type, op, action that gives a kind */
    ck_assert_str_eq(kind_of(NULL, "{\"op\":\"c\",\"type\":\"b\",\"kind\":\"a\"}"), "a");
    ck_assert_str_eq(kind_of(NULL, "{\"action\":\"d\",\"type\":\"b\"}"), "b");
    ck_assert_str_eq(kind_of(NULL, "{\"type\": 3, \"op\": \"resize\"}"), "resize");
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": \"12345\", \"op\": \"resize\"}"), "resize");
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": \"job-17\"}"), "job");
    /* a JSON object without one: no kind (not "{\"id\":") */
    ck_assert_str_eq(kind_of(NULL, "{\"id\": 7, \"url\": \"http://x\"}"), "");
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": null, \"type\": true, \"op\": [1]}"), "");
    /* not a JSON object: the first word */
    ck_assert_str_eq(kind_of(NULL, "{broken json"), "{broken");
    ck_assert_str_eq(kind_of(NULL, "[\"op\", 1]"), "[\"op\",");
    ck_assert_str_eq(kind_of(NULL, "{\"op\":\"x\"} trailing"), "{\"op\":\"x\"}");
    ck_assert_str_eq(kind_of(NULL, "resize a.png 200x200"), "resize");
    ck_assert_str_eq(kind_of(NULL, " \tresize\r"), "resize");
    ck_assert_str_eq(kind_of(NULL, ""), "");
    ck_assert_str_eq(kind_of(NULL, "   "), "");
    /* kinds keep to the output contract */
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": \"a b\\u00e9\"}"), "a?b??");
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": \"a\\u0000b\"}"), "a?b");
}
END_TEST

/* A kind's name that happens to be hex: a word of 4+ letters and a number of 1-4 digits
 * (decade12, cafe0042) is a kind in every mode that reads one from the line; random-looking
 * hex (letters and digits mixed, digits first, a short word, a long number), hashes, UUIDs
 * and timestamps stay ids; stage1 and stage2 stay two kinds. */
START_TEST(a_hex_word_and_number_is_a_kind)
{
    static const char *const kinds[] = {"decade12", "cafe0042", "DECADE12", "deadbeef",
                                        "facade1",  "beaded7",  "faded2024"};
    static const char *const ids[] = {"5f2b3c8e",
                                      "a1b2c3d4",
                                      "0042cafe",
                                      "abc12345",
                                      "decade12345",
                                      "dead12beef",

                                      "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                                      "1733500000",
                                      "20261206T190000Z",
                                      "2026-12-06T19:00:00Z",
                                      "123e4567-e89b-12d3-a456-426614174000"};

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        ck_assert_msg(!mv_kind_is_id(kinds[i], strlen(kinds[i])), "%s should be a kind", kinds[i]);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ck_assert_msg(mv_kind_is_id(ids[i], strlen(ids[i])), "%s should be an id", ids[i]);
    ck_assert_str_eq(kind_of(NULL, "decade12 a.png"), "decade12");
    ck_assert_str_eq(kind_of("word", "cafe0042 x"), "cafe0042");
    ck_assert_str_eq(kind_of("json:op", "{\"op\": \"decade12\", \"id\": 7}"), "decade12");
    ck_assert_str_eq(kind_of(NULL, "{\"kind\": \"cafe0042\"}"), "cafe0042");
    ck_assert_str_eq(kind_of(NULL, "decade12-77 x"), "decade12"); /* its id cut, as job-77 */
    ck_assert_str_eq(kind_of(NULL, "stage1 x"), "stage1");
    ck_assert_str_eq(kind_of(NULL, "stage2 x"), "stage2");
    ck_assert_str_eq(kind_of("word", "5f2b3c8e resize"), "");
    ck_assert_str_eq(kind_of(NULL, "{\"op\": \"a1b2c3d4\"}"), "");
}
END_TEST

/* A kind the worker names itself (api: mvw_set_kind) is taken as it is, whatever it looks
 * like: an id's shape, a hex word, digits. The line's kind is never put in its place. */
START_TEST(a_kind_the_worker_names_is_never_rewritten)
{
    static const char *const named[] = {"decade12", "5f2b3c8e", "12345",
                                        "123e4567-e89b-12d3-a456-426614174000", "job-1234"};
    const char *args[] = {"run", "-o", "supervisor.workers=1", "--", MVTEST, NULL};
    char tasks[512];
    size_t len = 0, n = sizeof named / sizeof named[0];
    mvrun_t r;

    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(tasks + len, sizeof tasks - len, "kind %s ok\n", named[i]);
    ck_assert_int_eq(run_batch(&r, tasks, args), 0);
    run_assert_once(&r, n, NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(jstr(run_result(&r, i + 1), "kind"), named[i]);
    run_free(&r);
}
END_TEST

START_TEST(word_json_and_none)
{
    ck_assert_str_eq(kind_of("word", "{\"op\": \"thumb\"}"), "{\"op\":");
    ck_assert_str_eq(kind_of("word", "resize a.png"), "resize");
    ck_assert_str_eq(kind_of("json:op", "{\"op\": \"thumb\", \"kind\": \"k\"}"), "thumb");
    ck_assert_str_eq(kind_of("JSON:op", "{\"op\": \"thumb\"}"), "thumb");
    ck_assert_str_eq(kind_of("json:my field", "{\"my field\": \"q\"}"), "q");
    ck_assert_str_eq(kind_of("json:op", "{\"kind\": \"k\"}"), "");
    ck_assert_str_eq(kind_of("json:op", "thumb a.png"), "");
    ck_assert_str_eq(kind_of("json:op", "{\"op\": 5}"), "");
    ck_assert_str_eq(kind_of("json:op", "{\"op\": {\"name\": \"x\"}}"), "");
    ck_assert_str_eq(kind_of("none", "resize a.png"), "");
    ck_assert_str_eq(kind_of("none", "{\"kind\": \"k\"}"), "");
}
END_TEST

START_TEST(spec_parsing)
{
    mv_kind_mode_t m;
    const char *f, *why = NULL;
    size_t n;
    char longf[80];

    ck_assert_int_eq(mv_kind_spec("Auto", &m, &f, &n, &why), 0);
    ck_assert_int_eq(m, MV_KIND_AUTO);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(mv_kind_spec("none", &m, &f, &n, &why), 0);
    ck_assert_int_eq(m, MV_KIND_NONE);
    ck_assert_int_eq(mv_kind_spec("json:a.b", &m, &f, &n, &why), 0);
    ck_assert_int_eq(m, MV_KIND_JSON);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(strncmp(f, "a.b", n), 0);
    ck_assert_int_eq(mv_kind_spec("json:", &m, &f, &n, &why), -EINVAL);
    ck_assert_int_eq(mv_kind_spec("json", &m, &f, &n, &why), -EINVAL);
    ck_assert_int_eq(mv_kind_spec("json:a\tb", &m, &f, &n, &why), -EINVAL);
    ck_assert_str_eq(why, "json:FIELD: the field name has a control character");
    snprintf(longf, sizeof longf, "json:%065d", 0);
    ck_assert_int_eq(mv_kind_spec(longf, &m, &f, &n, &why), -EINVAL);
    ck_assert_int_eq(mv_kind_spec("words", &m, &f, &n, &why), -EINVAL);
    ck_assert_str_eq(why, "not one of auto, word, none, json:FIELD");
}
END_TEST

/* Whatever the line, a kind is NULL or printable ASCII of at most MV_LEAK_KIND_MAX bytes. */
START_TEST(output_contract)
{
    static const char *const specs[] = {"auto", "word", "json:kind"};
    char out[MV_LEAK_KIND_MAX + 1], big[300];
    uint8_t line[200];
    unsigned seed = 7;
    mv_errors_t e = {0};
    mv_config_t c;
    const char *k;

    memset(big, 'k', sizeof big);
    memcpy(big, "{\"kind\":\"", 9);
    memcpy(big + sizeof big - 3, "\"}", 3);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        char o[64];

        ck_assert_int_eq(mv_config_init(&c), 0);
        snprintf(o, sizeof o, "leak.kind=%s", specs[s]);
        ck_assert_int_eq(mv_config_override(&c, o, 1, &e), 0);
        k = mv_kind_of_line(&c, (const uint8_t *)big, strlen(big), out);
        ck_assert_ptr_nonnull(k);
        ck_assert_uint_eq(strlen(k), MV_LEAK_KIND_MAX);
        for (int i = 0; i < 3000; i++) {
            size_t n = (size_t)rand_r(&seed) % sizeof line;

            for (size_t j = 0; j < n; j++)
                line[j] = (uint8_t)rand_r(&seed);
            if (n && i % 3 == 0)
                line[0] = '{';
            k = mv_kind_of_line(&c, line, n, out);
            if (!k)
                continue;
            ck_assert_uint_le(strlen(k), MV_LEAK_KIND_MAX);
            for (const char *p = k; *p; p++)
                ck_assert(*p >= 0x21 && *p <= 0x7e);
        }
        mv_config_free(&c);
    }
    ck_assert_ptr_null(mv_kind_clean((const uint8_t *)"", 0, out));
    ck_assert_str_eq(mv_kind_clean((const uint8_t *)"a\x00 \x7f\x80z", 6, out), "a????z");
    /* a worker's own kind is taken as it is, ids too */
    ck_assert_str_eq(mv_kind_clean((const uint8_t *)"12345", 5, out), "12345");
    ck_assert_ptr_null(mv_kind_of_line(NULL, NULL, 0, out));
    ck_assert_str_eq(mv_kind_of_line(NULL, (const uint8_t *)"{\"op\":\"x\"}", 10, out), "x");
    mv_errors_free(&e);
}
END_TEST

/* JSON task lines through a real batch: results carry each line's "op", ids give no kind,
 * and the leaking op is the suspect (a Python lines worker keeps 64 KiB per "thumb"). */
START_TEST(json_tasks_end_to_end)
{
    static const char worker[] = "import json, sys\n"
                                 "keep = []\n"
                                 "for line in sys.stdin:\n"
                                 "    t = json.loads(line)\n"
                                 "    if t.get('op') == 'thumb':\n"
                                 "        keep.append(b'x' * 65536)\n"
                                 "    print('ok', flush=True)\n";
    const char *args[] = {"run",
                          "-o",
                          "supervisor.workers=1",
                          "-o",
                          "worker.protocol=lines",
                          "-o",
                          "limits.memory_soft=0",
                          "-o",
                          "limits.memory_hard=0",
                          "--",
                          "python3",
                          NULL,
                          NULL};
    size_t n = 240, len = 0;
    char *tasks = malloc(n * 64), *line;
    mvrun_t r;

    ck_assert_ptr_nonnull(tasks);
    for (size_t i = 1; i <= n; i++)
        len += (size_t)sprintf(tasks + len, "{\"op\": \"%s\", \"id\": %zu}\n",
                               i % 2 ? "thumb" : "resize", i);
    run_init(&r, tasks);
    args[11] = run_file(&r, "w.py", worker);
    run_start(&r, args, NULL);
    line = run_wait_for(&r, "event=leak_suspect");
    ck_assert_msg(strstr(line, "kind=thumb "), "wrong kind: %s", line);
    free(line);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, n, NULL);
    ck_assert_str_eq(jstr(run_result(&r, 1), "kind"), "thumb");
    ck_assert_str_eq(jstr(run_result(&r, 2), "kind"), "resize");
    ck_assert_int_eq(run_count(&r, "kind=resize"), 0);
    ck_assert_int_eq(run_count(&r, "kind={"), 0);
    free(tasks);
    run_free(&r);
}
END_TEST

/* The pool: one copy per kind, shared by every reference, gone with the last one; kinds are
 * cut to the length asked for; many kinds (the table grows) all come back intact. */
START_TEST(kind_pool_keeps_one_copy_while_referred_to)
{
    mv_kindpool_t p = {0};
    const char *a = mv_kindpool_hold(&p, "resize", 64), *b = mv_kindpool_hold(&p, "resize", 64);
    const char *c = mv_kindpool_hold(&p, "resize-and-more", 6), *e = mv_kindpool_hold(&p, "", 64);
    const char *many[300];
    char name[32];

    ck_assert_str_eq(a, "resize");
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_eq(a, c); /* cut to 6 bytes: the same kind */
    ck_assert_str_eq(e, "");
    ck_assert_uint_eq(mv_kindpool_count(&p), 2);
    mv_kindpool_drop(&p, a);
    mv_kindpool_drop(&p, b);
    ck_assert_uint_eq(mv_kindpool_count(&p), 2);
    mv_kindpool_drop(&p, c); /* the last reference */
    ck_assert_uint_eq(mv_kindpool_count(&p), 1);
    a = mv_kindpool_hold(&p, "resizer", 64);
    ck_assert_str_eq(a, "resizer");
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "kind%d", i);
        many[i] = mv_kindpool_hold(&p, name, 64);
    }
    ck_assert_uint_eq(mv_kindpool_count(&p), 302);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "kind%d", i);
        ck_assert_str_eq(many[i], name);
        ck_assert_ptr_eq(mv_kindpool_hold(&p, name, 64), many[i]);
        mv_kindpool_drop(&p, many[i]);
        if (i % 2)
            mv_kindpool_drop(&p, many[i]);
    }
    ck_assert_uint_eq(mv_kindpool_count(&p), 152);
    mv_kindpool_drop(&p, e);
    mv_kindpool_drop(&p, a);
    ck_assert_uint_eq(mv_kindpool_count(&p), 150);
    mv_kindpool_free(&p); /* the 150 still held go too (ASan: no leak) */
    ck_assert_uint_eq(mv_kindpool_count(&p), 0);
}
END_TEST

Suite *kind_suite(void)
{
    Suite *s = suite_create("kind");
    TCase *tc = tcase_create("rules");

    tcase_add_test(tc, ids_are_not_kinds);
    tcase_add_test(tc, a_hex_word_and_number_is_a_kind);
    tcase_add_test(tc, auto_reads_json_lines);
    tcase_add_test(tc, word_json_and_none);
    tcase_add_test(tc, spec_parsing);
    tcase_add_test(tc, output_contract);
    tcase_add_test(tc, kind_pool_keeps_one_copy_while_referred_to);
    suite_add_tcase(s, tc);
    tc = tcase_create("batch");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, json_tasks_end_to_end);
    tcase_add_test(tc, a_kind_the_worker_names_is_never_rewritten);
    suite_add_tcase(s, tc);
    return s;
}
