/*
 * submit: `memvisor submit FILE|- [--to redis://HOST:PORT/STREAM]`, the tasks of a file (one
 * per line, like a task file: empty lines skipped) added to a Redis stream that
 * `memvisor run --tasks redis://...` reads on any number of hosts.
 *
 * A command line tool, not the supervisor: it uses hiredis's blocking API, with timeouts.
 * Lines go in batches of up to 1000: one INCRBY on STREAM:ids reserves the batch's task ids
 * (so two submits to one stream never share an id), then the XADDs are pipelined.
 */
#include "submit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "exitcode.h"
#include "rurl.h"

#define BATCH       1000
#define BATCH_BYTES (4 * 1024 * 1024)

typedef struct sub {
    const char *input; /* the FILE argument, for messages */
    const char *url;
    mv_rurl_t u;
    char name[512];
    redisContext *c;
    char **lines;
    size_t *lens;
    size_t n, bytes;
    unsigned long long first, last, added; /* ids given so far */
} sub_t;

/* A reply that is an error, or none at all: said, with what was added before. */
static int failed(sub_t *s, const char *what, const redisReply *r)
{
    char before[96] = "nothing was added";

    if (s->added)
        snprintf(before, sizeof before, "%llu tasks were added before (ids %llu..%llu)", s->added,
                 s->first, s->last);
    fprintf(stderr, "memvisor submit: %s: %s: %s; %s\n", s->name, what,
            r                 ? r->str
            : s->c->errstr[0] ? s->c->errstr
                              : "no reply",
            before);
    return MV_EXIT_CANT_RUN;
}

/* The batch in hand goes in: ids from the counter, one XADD each. */
static int flush(sub_t *s)
{
    char key[MV_RURL_STREAM_MAX + 8], n[24], id[24];
    redisReply *r;
    long long last;
    int code = -1;

    if (s->n == 0)
        return -1;
    snprintf(key, sizeof key, "%s:ids", s->u.stream);
    snprintf(n, sizeof n, "%zu", s->n);
    r = redisCommandArgv(s->c, 3, (const char *[]){"INCRBY", key, n}, NULL);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        code = failed(s, "INCRBY", r && r->type == REDIS_REPLY_ERROR ? r : NULL);
        freeReplyObject(r);
        return code;
    }
    last = r->integer;
    freeReplyObject(r);
    for (size_t i = 0; i < s->n; i++) {
        snprintf(id, sizeof id, "%lld", last - (long long)s->n + 1 + (long long)i);
        redisAppendCommandArgv(
            s->c, 7, (const char *[]){"XADD", s->u.stream, "*", "id", id, "data", s->lines[i]},
            (const size_t[]){4, strlen(s->u.stream), 1, 2, strlen(id), 4, s->lens[i]});
    }
    for (size_t i = 0; i < s->n; i++) {
        if (redisGetReply(s->c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
            if (code < 0)
                code = failed(s, "XADD", r && r->type == REDIS_REPLY_ERROR ? r : NULL);
            if (!r)
                break;
        } else if (code < 0) {
            unsigned long long k = (unsigned long long)(last - (long long)s->n + 1) + i;
            s->first = s->added ? s->first : k;
            s->last = k;
            s->added++;
        }
        freeReplyObject(r);
    }
    for (size_t i = 0; i < s->n; i++)
        free(s->lines[i]);
    s->n = s->bytes = 0;
    return code;
}

/* Connects, with AUTH when the URL has a password. -1, or an exit code. */
static int connect_to(sub_t *s)
{
    struct timeval tv = {5, 0};
    redisReply *r;

    s->c = redisConnectWithTimeout(s->u.host, s->u.port, tv);
    if (!s->c || s->c->err) {
        fprintf(stderr, "memvisor submit: cannot connect to %s: %s\n", s->name,
                s->c ? s->c->errstr : "out of memory");
        return MV_EXIT_CANT_RUN;
    }
    tv.tv_sec = 30;
    redisSetTimeout(s->c, tv);
    if (!*s->u.pass)
        return -1;
    r = *s->u.user ? redisCommandArgv(s->c, 3, (const char *[]){"AUTH", s->u.user, s->u.pass}, NULL)
                   : redisCommandArgv(s->c, 2, (const char *[]){"AUTH", s->u.pass}, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        int code = failed(s, "AUTH", r);
        freeReplyObject(r);
        return code;
    }
    freeReplyObject(r);
    return -1;
}

/* Reads the input line by line into batches. -1 when all went in, else the exit code. */
static int feed(sub_t *s, FILE *in, int64_t max_size)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int code = -1;

    while (code < 0 && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n' && --len > 0 && line[len - 1] == '\r')
            len--; /* CR LF: the CR goes too, as in a task file (tasks.c) */
        if (len == 0)
            continue; /* an empty line is no task, as in a task file */
        if (len > max_size) {
            if ((code = flush(s)) >= 0)
                break;
            fprintf(stderr,
                    "memvisor submit: %s:%zu: a task line longer than [tasks] max_size (%lld "
                    "bytes): nothing from this line on was added; %llu tasks before it were\n",
                    s->input, lineno, (long long)max_size, s->added);
            code = MV_EXIT_USAGE;
            break;
        }
        if (!(s->lines[s->n] = malloc((size_t)len + 1))) {
            code = MV_EXIT_CANT_RUN;
            break;
        }
        memcpy(s->lines[s->n], line, (size_t)len);
        s->lines[s->n][len] = '\0';
        s->lens[s->n++] = (size_t)len;
        s->bytes += (size_t)len;
        if (s->n == BATCH || s->bytes >= BATCH_BYTES)
            code = flush(s);
    }
    if (code < 0 && ferror(in)) {
        fprintf(stderr, "memvisor submit: cannot read %s: %s\n", s->input, strerror(errno));
        code = MV_EXIT_CANT_RUN;
    }
    if (code < 0)
        code = flush(s);
    free(line);
    return code;
}

/* The arguments: FILE|-, --to URL, -c FILE, -o KEY=VALUE. -1, or an exit code. */
static int parse(const mv_cli_cmd_t *cmd, int argc, char **argv, const char **input,
                 const char **to, const char **config, const char **ovr, int *novr)
{
    const mv_cli_opt_t *o;

    for (int i = 2; i < argc; i++) {
        if (!(o = mv_cli_option(cmd, argv[i]))) {
            if (argv[i][0] == '-' && argv[i][1])
                return mv_cli_usage_error(cmd, "unknown option: ", argv[i]);
            if (*input)
                return mv_cli_usage_error(cmd, "one FILE only, not also ", argv[i]);
            *input = argv[i];
            continue;
        }
        if (o->id == MV_CLI_HELP) {
            mv_cli_help_command(cmd, stdout);
            return MV_EXIT_OK;
        }
        if (i + 1 >= argc)
            return mv_cli_usage_error(cmd, "missing value after ", argv[i]);
        if (o->id == MV_CLI_TO)
            *to = argv[++i];
        else if (o->id == MV_CLI_CONFIG)
            *config = argv[++i];
        else
            ovr[(*novr)++] = argv[++i];
    }
    if (!*input)
        return mv_cli_usage_error(cmd, "missing FILE (or - for stdin)", "");
    return -1;
}

int mv_submit_main(const mv_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *input = NULL, *to = NULL, *config = NULL, **ovr = calloc((size_t)argc, sizeof *ovr);
    sub_t s = {0};
    mv_config_t cfg = {0};
    char why[600];
    FILE *in = NULL;
    int novr = 0, code;

    if (!ovr)
        return MV_EXIT_CANT_RUN;
    if ((code = parse(cmd, argc, argv, &input, &to, &config, ovr, &novr)) >= 0)
        goto out;
    if ((code = mv_config_build_or_say(&cfg, config, ovr, novr, stderr)) < 0) {
        code = code == -ENOMEM ? MV_EXIT_CANT_RUN : MV_EXIT_USAGE;
        goto out;
    }
    s.input = strcmp(input, "-") == 0 ? "stdin" : input;
    s.url = to ? to : mv_rurl_is(cfg.tasks.source) ? cfg.tasks.source : NULL;
    if (!s.url) {
        fprintf(stderr, "memvisor submit: no stream to add to: give --to "
                        "redis://HOST:PORT/STREAM (or set [tasks] source to one)\n");
        code = MV_EXIT_USAGE;
        goto out;
    }
    if (mv_rurl_parse(s.url, &s.u, why, sizeof why) < 0) {
        fprintf(stderr, "memvisor submit: --to %s\n", why);
        code = MV_EXIT_USAGE;
        goto out;
    }
    mv_rurl_name(&s.u, s.name, sizeof s.name);
    in = strcmp(input, "-") == 0 ? stdin : fopen(input, "r");
    if (!in) {
        fprintf(stderr, "memvisor submit: cannot open %s: %s\n", input, strerror(errno));
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    s.lines = calloc(BATCH, sizeof *s.lines);
    s.lens = calloc(BATCH, sizeof *s.lens);
    if (!s.lines || !s.lens)
        code = MV_EXIT_CANT_RUN;
    else if ((code = connect_to(&s)) < 0)
        code = feed(&s, in, cfg.tasks.max_size);
    if (code < 0) {
        if (s.added)
            printf("memvisor submit: %llu tasks added to %s (ids %llu..%llu)\n", s.added, s.name,
                   s.first, s.last);
        else
            printf("memvisor submit: no task in %s: nothing added\n", s.input);
        code = MV_EXIT_OK;
    }
out:
    if (in && in != stdin)
        fclose(in);
    if (s.c)
        redisFree(s.c);
    for (size_t i = 0; i < s.n; i++)
        free(s.lines[i]);
    free(s.lines);
    free(s.lens);
    free(ovr);
    mv_config_free(&cfg);
    return code;
}
