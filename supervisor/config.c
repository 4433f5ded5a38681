/*
 * config: the inih-driven loader, `-o` overrides, cross-key checks, the printer and the error
 * list. The only file that includes <ini.h>. The option table is in options.c, the value
 * parsers for sizes, durations and bools, and the word splitter, in units.c.
 *
 * inih quirks (Debian libinih 55, CGROUP-FACTS.md §1): its compile-time options are runtime
 * globals, set before every parse; the handler gets no line number, so the reader counts
 * lines; it reports only the first syntax error, so the reader classifies every line itself
 * the way inih does and reports them all.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "config_int.h"
#include "addr.h"
#include "kind.h"
#include "rurl.h"
#include "paths.h"

#define MAX_LINE      (1 << 20)          /* longest INI line we accept (ini_max_line) */
#define MAX_FILE      (16 * 1024 * 1024) /* a config file larger than this is a mistake */
#define SYNTAX_REASON "syntax error: expected \"key = value\" or \"[section]\""

/* ---- errors -------------------------------------------------------------------------- */

void mv_errors_add(mv_errors_t *e, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!msg)
        return; /* out of memory: the caller still sees the error return value */
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 8;
        char **m = realloc(e->msg, cap * sizeof *m);

        if (!m) {
            free(msg);
            return;
        }
        e->msg = m;
        e->cap = cap;
    }
    e->msg[e->n++] = msg;
}

void mv_errors_print(const mv_errors_t *e, FILE *out)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(out, "%s\n", e->msg[i]);
}

void mv_errors_free(mv_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    free(e->msg);
    e->msg = NULL;
    e->n = e->cap = 0;
}

/* Adds "WHERE: [section] key: reason"; section and key may be NULL. */
__attribute__((format(printf, 5, 6))) static void
report(mv_errors_t *e, mv_origin_t at, const char *section, const char *key, const char *fmt, ...)
{
    char where[64], *reason;
    const char *file = at.file ? at.file : "(default)";
    va_list ap;

    if (at.file)
        snprintf(where, sizeof where, ":%d", at.line);
    else
        where[0] = '\0';
    va_start(ap, fmt);
    if (vasprintf(&reason, fmt, ap) < 0)
        reason = NULL;
    va_end(ap);
    if (!reason)
        return;
    if (section && key)
        mv_errors_add(e, "%s%s: [%s] %s: %s", file, where, section, key, reason);
    else if (section)
        mv_errors_add(e, "%s%s: [%s]: %s", file, where, section, reason);
    else if (key)
        mv_errors_add(e, "%s%s: %s: %s", file, where, key, reason);
    else
        mv_errors_add(e, "%s%s: %s", file, where, reason);
    free(reason);
}

void mv__config_report(mv_errors_t *e, mv_origin_t at, const char *section, const char *key,
                       const char *reason)
{
    report(e, at, section, key, "%s", reason);
}

/* A value fit for an error line: at most 40 characters, control characters as '?'. */
static void quote(char out[64], const char *s)
{
    size_t n = 0, len = strlen(s);

    out[n++] = '"';
    for (size_t i = 0; i < len && i < 40; i++)
        out[n++] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
    if (len > 40) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* ---- typed access to fields ---------------------------------------------------------- */

static void *field(const mv_config_t *c, const mv_option_t *o)
{
    return (char *)c + o->offset;
}

static int64_t get_num(const mv_config_t *c, const mv_option_t *o)
{
    int64_t v64;
    int v;

    if (o->size == sizeof(int64_t)) {
        memcpy(&v64, field(c, o), sizeof v64);
        return v64;
    }
    memcpy(&v, field(c, o), sizeof v);
    return v;
}

static void set_num(mv_config_t *c, const mv_option_t *o, int64_t v64)
{
    int v = (int)v64;

    if (o->size == sizeof(int64_t))
        memcpy(field(c, o), &v64, sizeof v64);
    else
        memcpy(field(c, o), &v, sizeof v);
}

static char **str_field(const mv_config_t *c, const mv_option_t *o)
{
    return (char **)field(c, o);
}

bool mv_config_same(const mv_config_t *a, const mv_config_t *b, const mv_option_t *o)
{
    if (o->type == MV_OPT_STRING)
        return strcmp(*str_field(a, o), *str_field(b, o)) == 0;
    return get_num(a, o) == get_num(b, o);
}

/* The sizes that may be "auto" (derived by mv_config_finish from each other). */
static bool takes_auto(const mv_option_t *o)
{
    return o->offset == offsetof(mv_config_t, limits.memory_soft) ||
           o->offset == offsetof(mv_config_t, limits.memory_hard);
}

/* Checks the strings that have a syntax of their own. 0 or -EINVAL with why filled. */
static int check_string(const mv_option_t *o, const char *s, const char *q, char *why, size_t wlen)
{
    static const char *const kinds[] = {"auto", "word", "none", "json:", NULL};
    const char *r = NULL, *field, *near;
    mv_kind_mode_t mode;
    size_t flen;
    char **argv;
    int rc;

    if (o->offset == offsetof(mv_config_t, worker.command)) {
        if ((rc = mv_split_words(s, &argv, NULL, &r)) < 0) {
            snprintf(why, wlen, "%s: %s", q, r);
            return rc;
        }
        mv_argv_free(argv);
    } else if (o->offset == offsetof(mv_config_t, tasks.source) ||
               o->offset == offsetof(mv_config_t, tasks.results)) {
        char url[1024];
        const char *file;
        mv_rurl_t u;

        if (mv_rurl_results_split(s, url, sizeof url, &file) < 0 ||
            (*url && mv_rurl_parse(url, &u, why, wlen) < 0)) {
            if (!*url)
                snprintf(why, wlen, "%s: the redis:// URL is too long", q);
            return -EINVAL;
        }
        if (o->offset == offsetof(mv_config_t, tasks.source) && *url && *file) {
            snprintf(why, wlen, "%s: a task source is one stream or one file", q);
            return -EINVAL;
        }
    } else if (o->offset == offsetof(mv_config_t, leak.kind)) {
        if (mv_kind_spec(s, &mode, &field, &flen, &r) < 0) {
            near = strncmp(r, "not one of", 10) == 0 && !strchr(s, ':') ? mv_closest_word(s, kinds)
                                                                        : NULL;
            snprintf(why, wlen, "%s: %s%s%s%s", q, r, near ? " (did you mean \"" : "",
                     near ? near : "", near ? "\"?)" : "");
            return -EINVAL;
        }
    }
    return mv__config_check_ext(o, s, q, why, wlen);
}

/* ", " and the choices of an enum, then a did-you-mean when one is close to `s`. */
static void enum_reason(const mv_option_t *o, const char *s, const char *q, char *why, size_t wlen)
{
    const char *near = mv_closest_word(s, o->choices);
    size_t n = (size_t)snprintf(why, wlen, "%s: not one of", q);

    for (int i = 0; o->choices[i] && n < wlen; i++)
        n += (size_t)snprintf(why + n, wlen - n, "%s %s", i ? "," : "", o->choices[i]);
    if (near && n < wlen)
        snprintf(why + n, wlen - n, " (did you mean \"%s\"?)", near);
}

/* Parses `s` for option `o` into *num (numbers, enums, bools); strings are only checked.
 * On failure writes the reason (with the value quoted) into why. */
static int parse_value(const mv_option_t *o, const char *s, int64_t *num, char *why, size_t wlen)
{
    const char *r = NULL;
    char q[64], lo[32], hi[32];
    int rc = 0, b = 0;

    quote(q, s);
    if (strpbrk(s, "\n\r")) {
        snprintf(why, wlen, "%s: contains a line break", q);
        return -EINVAL;
    }
    if (o->type == MV_OPT_STRING)
        return check_string(o, s, q, why, wlen);
    if (!*s) {
        snprintf(why, wlen, "empty value: give one, or leave the key out for its default (%s)",
                 o->def);
        return -EINVAL;
    }
    if (takes_auto(o) && strcasecmp(s, "auto") == 0) {
        *num = MV_CONFIG_AUTO;
        return 0;
    }
    switch (o->type) {
    case MV_OPT_INT: rc = mv_parse_int(s, num, &r); break;
    case MV_OPT_SIZE: rc = mv_parse_size(s, num, &r); break;
    case MV_OPT_DURATION: rc = mv_parse_duration(s, num, &r); break;
    case MV_OPT_BOOL:
        rc = mv_parse_bool(s, &b, &r);
        *num = b;
        break;
    case MV_OPT_ENUM:
        for (int i = 0; o->choices[i]; i++) {
            if (strcasecmp(s, o->choices[i]) == 0) {
                *num = i;
                return 0;
            }
        }
        enum_reason(o, s, q, why, wlen);
        return -EINVAL;
    case MV_OPT_STRING: break;
    }
    if (rc == 0 && o->type != MV_OPT_BOOL && (*num < o->min || *num > o->max))
        rc = -ERANGE;
    if (rc == -ERANGE) /* overflow too: the range says more than "too large" */
        r = NULL;
    if (rc < 0 && r) {
        snprintf(why, wlen, "%s: %s", q, r);
    } else if (rc < 0) {
        mv_fmt_num(o->type, o->min, lo, sizeof lo);
        mv_fmt_num(o->type, o->max, hi, sizeof hi);
        snprintf(why, wlen, "%s: out of range (%s..%s)", q, lo, hi);
    }
    return rc;
}

/* Parses and stores one value; reports a mistake at `at`. */
static int apply(mv_config_t *c, const mv_option_t *o, const char *value, mv_origin_t at,
                 mv_errors_t *errs)
{
    char why[256];
    int64_t num = 0;
    char *dup;
    int rc;

    if ((rc = parse_value(o, value, &num, why, sizeof why)) < 0) {
        report(errs, at, o->section, o->name, "%s", why);
        return -EINVAL;
    }
    if (o->type == MV_OPT_STRING) {
        if (!(dup = strdup(value)))
            return -ENOMEM;
        free(*str_field(c, o));
        *str_field(c, o) = dup;
    } else {
        set_num(c, o, num);
    }
    c->origin[o - mv__options] = at;
    return 0;
}

/* ---- init / free --------------------------------------------------------------------- */

void mv_config_free(mv_config_t *c)
{
    for (size_t i = 0; i < mv__noptions; i++)
        if (mv__options[i].type == MV_OPT_STRING)
            free(*str_field(c, &mv__options[i]));
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    free(c->origin);
    memset(c, 0, sizeof *c);
}

int mv_config_init(mv_config_t *c)
{
    char why[256];
    int64_t num;

    memset(c, 0, sizeof *c);
    if (!(c->origin = calloc(mv__noptions, sizeof *c->origin)))
        return -ENOMEM;
    for (size_t i = 0; i < mv__noptions; i++) {
        const mv_option_t *o = &mv__options[i];

        if (parse_value(o, o->def, &num, why, sizeof why) < 0) {
            mv_config_free(c); /* a bad default is a bug in the table; the tests catch it */
            return -EINVAL;
        }
        if (o->type != MV_OPT_STRING) {
            set_num(c, o, num);
        } else if (!(*str_field(c, o) = strdup(o->def))) {
            mv_config_free(c);
            return -ENOMEM;
        }
    }
    return 0;
}

/* ---- loading a file ------------------------------------------------------------------ */

typedef struct load {
    mv_config_t *c;
    mv_errors_t *errs;
    const char *path; /* owned by c->files */
    const char *buf;  /* the whole file */
    size_t len, pos;
    int line;                /* line of the chunk handed to inih last */
    bool bol;                /* the next chunk starts a line */
    int skip_line;           /* an over-long line: inih's fragments of it are ignored */
    unsigned char *reported; /* per line: classify() reported it (syntax, section) */
    int *seen;               /* per option: the line that set it in this file, 0 = not yet */
    bool nomem;
} load_t;

static mv_origin_t here(const load_t *x)
{
    return (mv_origin_t){.file = x->path, .line = x->line};
}

/* inih's find_chars_or_comment(): the first of `chars`, or an inline ';' after a blank. */
static const char *find_or_comment(const char *s, const char *e, const char *chars)
{
    bool was_space = false;

    for (; s < e && !strchr(chars, *s) && !(was_space && *s == ';'); s++)
        was_space = isspace((unsigned char)*s);
    return s;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* "sections: supervisor, worker, ...": every section of the table, in its order (the table
 * keeps a section's keys together). A list written out by hand had lost four of them. */
static void section_list(char *out, size_t cap)
{
    size_t used = (size_t)snprintf(out, cap, "sections:");

    for (size_t i = 0; i < mv__noptions && used < cap; i++)
        if (i == 0 || strcmp(mv__options[i].section, mv__options[i - 1].section) != 0)
            used += (size_t)snprintf(out + used, cap - used, "%s %s", i ? "," : "",
                                     mv__options[i].section);
}

/* Judges line x->line (starting at x->pos) the way inih will, so that every syntax error
 * and unknown section is reported, not only the first. */
static void classify(load_t *x)
{
    const char *s = x->buf + x->pos, *nl = memchr(s, '\n', x->len - x->pos);
    const char *e = nl ? nl : x->buf + x->len, *end;
    char name[64], hint[160];
    const char *close;

    if ((size_t)(e - s) + 3 > MAX_LINE) {
        report(x->errs, here(x), NULL, NULL, "line longer than 1 MiB");
        x->reported[x->line] = 1;
        x->skip_line = x->line;
        return;
    }
    if (x->line == 1 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* UTF-8 BOM, skipped by inih too */
    trim(&s, &e);
    if (s == e || *s == ';' || *s == '#')
        return;
    if (*s != '[') {
        end = find_or_comment(s, e, "=:");
        if (end < e && (*end == '=' || *end == ':'))
            return;
        report(x->errs, here(x), NULL, NULL, SYNTAX_REASON);
        x->reported[x->line] = 1;
        return;
    }
    end = find_or_comment(s + 1, e, "]");
    if (end == e || *end != ']') {
        report(x->errs, here(x), NULL, NULL, "syntax error: \"[\" without \"]\"");
        x->reported[x->line] = 1;
        return;
    }
    s++;
    trim(&s, &end);
    snprintf(name, sizeof name, "%.*s", (int)(end - s), s);
    if (mv__config_section_known(name))
        return;
    if ((close = mv__config_closest(name, NULL)))
        snprintf(hint, sizeof hint, "did you mean [%s]?", close);
    else
        section_list(hint, sizeof hint);
    report(x->errs, here(x), name, NULL, "unknown section (%s)", hint);
    x->reported[x->line] = 1;
}

/* fgets() over the file in memory, counting lines. inih reads a long line in several
 * chunks (it reallocs in between); only a chunk after a '\n' starts a new line. */
static char *reader(char *str, int num, void *stream)
{
    load_t *x = stream;
    size_t n = 0;

    if (x->pos >= x->len || num < 2)
        return NULL;
    if (x->bol) {
        x->line++;
        classify(x);
    }
    while (n < (size_t)num - 1 && x->pos < x->len) {
        str[n] = x->buf[x->pos++];
        if (str[n++] == '\n')
            break;
    }
    str[n] = '\0';
    x->bol = str[n - 1] == '\n';
    return str;
}

static void unknown_key(load_t *x, const char *section, const char *name)
{
    const char *near = mv__config_closest(section, name), *home = mv__config_home_section(name);

    if (near)
        report(x->errs, here(x), section, name, "unknown key (did you mean \"%s\"?)", near);
    else if (home)
        report(x->errs, here(x), section, name, "unknown key (it belongs in [%s])", home);
    else
        report(x->errs, here(x), section, name, "unknown key");
}

/* Called by inih for every "key = value". Always returns 1: mistakes are reported here, so
 * inih's return value only ever names a syntax error it found itself. */
static int handler(void *user, const char *section, const char *name, const char *value)
{
    load_t *x = user;
    const char *s = section, *e = section + strlen(section), *home;
    const mv_option_t *o;
    char sec[64];
    size_t i;

    if (x->line == x->skip_line)
        return 1;
    trim(&s, &e);
    snprintf(sec, sizeof sec, "%.*s", (int)(e - s), s);
    if (!*name) {
        report(x->errs, here(x), sec[0] ? sec : NULL, NULL, "missing key name before \"=\"");
        return 1;
    }
    if (!sec[0]) {
        home = mv__config_home_section(name);
        if (home)
            report(x->errs, here(x), NULL, name, "key before any [section] (it belongs in [%s])",
                   home);
        else
            report(x->errs, here(x), NULL, name, "key before any [section]");
        return 1;
    }
    if (!mv__config_section_known(sec))
        return 1; /* reported once, at the section line */
    if (!(o = mv_config_find(sec, name))) {
        unknown_key(x, sec, name);
        return 1;
    }
    i = (size_t)(o - mv__options);
    if (x->seen[i]) {
        report(x->errs, here(x), sec, name, "set twice (first at line %d)", x->seen[i]);
        return 1;
    }
    x->seen[i] = x->line;
    if (apply(x->c, o, value, here(x), x->errs) == -ENOMEM)
        x->nomem = true;
    return 1;
}

/* The whole file, NUL-terminated. 0 or -errno. `nowait`: only a regular file, opened without
 * waiting (a FIFO opened for reading waits for a writer): -ESPIPE for anything else. */
static int slurp(const char *path, char **out, size_t *len, bool nowait)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (nowait ? O_NONBLOCK : 0));
    FILE *f;
    struct stat st;
    size_t n = 0, cap = 4096, r;
    char *buf = NULL, *nb;
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (nowait) {
        if (fstat(fd, &st) < 0)
            rc = -errno;
        else if (S_ISDIR(st.st_mode))
            rc = -EISDIR;
        else if (!S_ISREG(st.st_mode))
            rc = -ESPIPE;
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    if (!(f = fdopen(fd, "r"))) {
        rc = -errno;
        close(fd);
        return rc;
    }
    for (;;) {
        if (!buf || n == cap) {
            if (buf && cap >= MAX_FILE) {
                rc = -EFBIG;
                break;
            }
            cap = buf ? 2 * cap : cap;
            if (!(nb = realloc(buf, cap + 1))) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
        }
        errno = 0;
        if ((r = fread(buf + n, 1, cap - n, f)) == 0) {
            if (ferror(f))
                rc = errno ? -errno : -EIO;
            break;
        }
        n += r;
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Keeps `path` in c->files for the life of c: origins point at it. */
static const char *keep_path(mv_config_t *c, const char *path)
{
    char **nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);

    if (!nf)
        return NULL;
    c->files = nf;
    if (!(c->files[c->nfiles] = strdup(path)))
        return NULL;
    c->path = c->files[c->nfiles++];
    return c->path;
}

/* inih's knobs are globals in this build: a value longer than ~197 bytes is cut otherwise. */
static void ini_setup(void)
{
    ini_use_stack = 0;
    ini_allow_realloc = 1;
    ini_max_line = MAX_LINE;
    ini_allow_multiline = 0;
    ini_stop_on_first_error = 0;
}

static int load(mv_config_t *c, const char *path, mv_errors_t *errs, bool nowait)
{
    load_t x = {.c = c, .errs = errs, .bol = true};
    size_t n0 = errs->n, lines = 1;
    const char *nul;
    char *buf = NULL;
    int rc;

    if (!c->origin)
        return -EINVAL;
    if (!(x.path = keep_path(c, path)))
        return -ENOMEM;
    if ((rc = slurp(path, &buf, &x.len, nowait)) < 0) {
        mv_errors_add(errs, "%s: cannot read: %s", path,
                      rc == -EFBIG    ? "larger than 16 MiB"
                      : rc == -ESPIPE ? "not a regular file (a FIFO, socket or device): a reload "
                                        "reads only regular files, it must not wait for a writer"
                                      : strerror(-rc));
        return rc;
    }
    x.buf = buf;
    for (const char *p = buf; (p = memchr(p, '\n', x.len - (size_t)(p - buf))); p++)
        lines++;
    if ((nul = memchr(buf, '\0', x.len))) {
        int line = 1;

        for (const char *p = buf; p < nul; p++)
            line += *p == '\n';
        report(errs, (mv_origin_t){.file = x.path, .line = line}, NULL, NULL,
               "NUL byte: not a text file");
        free(buf);
        return -EINVAL;
    }
    x.reported = calloc(lines + 2, 1);
    x.seen = calloc(mv__noptions, sizeof *x.seen);
    rc = -ENOMEM;
    if (!x.reported || !x.seen)
        goto out;
    ini_setup();
    rc = ini_parse_stream(reader, &x, handler, &x);
    if (rc == -2 || x.nomem) {
        rc = -ENOMEM;
        goto out;
    }
    /* An over-long line shifts inih's line numbers: its own report is then unusable. */
    if (rc > 0 && (size_t)rc <= lines && !x.reported[rc] && !x.skip_line)
        report(errs, (mv_origin_t){.file = x.path, .line = rc}, NULL, NULL, SYNTAX_REASON);
    rc = errs->n > n0 ? -EINVAL : 0;
out:
    free(x.reported);
    free(x.seen);
    free(buf);
    return rc;
}

int mv_config_load(mv_config_t *c, const char *path, mv_errors_t *errs)
{
    return load(c, path, errs, false);
}

/* ---- overrides ----------------------------------------------------------------------- */

int mv_config_override(mv_config_t *c, const char *spec, int nth, mv_errors_t *errs)
{
    mv_origin_t at = {.file = "-o", .line = nth};
    const char *eq = strchr(spec, '='), *dot, *ks, *ke, *vs, *ve;
    char sec[64], key[64], q[64], *value;
    const mv_option_t *o;
    const char *near;
    int rc;

    if (!c->origin)
        return -EINVAL;
    dot = eq ? memchr(spec, '.', (size_t)(eq - spec)) : NULL;
    if (dot) {
        ks = spec;
        ke = dot;
        trim(&ks, &ke);
        snprintf(sec, sizeof sec, "%.*s", (int)(ke - ks), ks);
        ks = dot + 1;
        ke = eq;
        trim(&ks, &ke);
        snprintf(key, sizeof key, "%.*s", (int)(ke - ks), ks);
    }
    if (!dot || !sec[0] || !key[0]) {
        quote(q, spec);
        report(errs, at, NULL, NULL, "%s: expected SECTION.KEY=VALUE (e.g. worker.prefetch=4)", q);
        return -EINVAL;
    }
    if (!mv__config_section_known(sec)) {
        if ((near = mv__config_closest(sec, NULL)))
            report(errs, at, sec, key, "unknown section (did you mean [%s]?)", near);
        else
            report(errs, at, sec, key, "unknown section");
        return -EINVAL;
    }
    if (!(o = mv_config_find(sec, key))) {
        load_t x = {.errs = errs, .path = "-o", .line = nth};

        unknown_key(&x, sec, key);
        return -EINVAL;
    }
    vs = eq + 1;
    ve = vs + strlen(vs);
    trim(&vs, &ve);
    if (!(value = strndup(vs, (size_t)(ve - vs))))
        return -ENOMEM;
    rc = apply(c, o, value, at, errs);
    free(value);
    return rc;
}

/* ---- cross-key checks ---------------------------------------------------------------- */

/* " (set at FILE:LINE)" for a value that did not come from the default, else "". */
static void where_set(const mv_config_t *c, const mv_option_t *o, char *buf, size_t len)
{
    mv_origin_t at = c->origin[o - mv__options];

    if (at.file)
        snprintf(buf, len, " (set at %s:%d)", at.file, at.line);
    else
        buf[0] = '\0';
}

/* Reports `a > b` (both read through the table) at a's origin. */
static bool above(const mv_config_t *c, mv_errors_t *errs, const mv_option_t *a,
                  const mv_option_t *b, const char *why)
{
    int64_t va = get_num(c, a), vb = get_num(c, b);
    char ta[32], tb[32], w[96], other[96];

    if (va <= vb)
        return false;
    mv_fmt_num(a->type, va, ta, sizeof ta);
    mv_fmt_num(b->type, vb, tb, sizeof tb);
    where_set(c, b, w, sizeof w);
    if (strcmp(a->section, b->section) == 0)
        snprintf(other, sizeof other, "%s", b->name);
    else
        snprintf(other, sizeof other, "[%s] %s", b->section, b->name);
    report(errs, c->origin[a - mv__options], a->section, a->name, "%s is above %s = %s%s: %s", ta,
           other, tb, w, why);
    return true;
}

/* Reports a jitter that is set while the limit it spreads is off. */
static bool orphan_jitter(const mv_config_t *c, mv_errors_t *errs, const mv_option_t *jit,
                          const mv_option_t *lim)
{
    char tj[32];

    if (get_num(c, jit) == 0 || get_num(c, lim) != 0)
        return false;
    mv_fmt_num(jit->type, get_num(c, jit), tj, sizeof tj);
    report(errs, c->origin[jit - mv__options], jit->section, jit->name,
           "%s has no effect while %s = 0 (off): set %s too, or remove it", tj, lim->name,
           lim->name);
    return true;
}

/* ---- automatic values: paths (derived limits: options.c) --------------------------- */

/* Whether `file` is one of the config files loaded (not "-o"). */
static bool from_file(const mv_config_t *c, const char *file)
{
    for (size_t i = 0; file && i < c->nfiles; i++)
        if (file == c->files[i])
            return true;
    return false;
}

/* A relative state_dir or control socket made absolute, once (paths.h has the rule). */
static int resolve_path(mv_config_t *c, const mv_option_t *o, mv_errors_t *errs)
{
    char **v = str_field(c, o), *base = NULL, *abs, q[64];
    mv_origin_t *at = &c->origin[o - mv__options];
    const char *file = NULL;
    int rc;

    if (!**v || (o->offset == offsetof(mv_config_t, control.socket) && strcmp(*v, "none") == 0))
        return 0;
    if ((*v)[0] != '/') {
        file = from_file(c, at->file) ? at->file : !at->file ? c->path : NULL;
        if ((rc = mv_path_base_of(file, &base)) < 0) {
            quote(q, *v);
            report(errs, *at, o->section, o->name, "%s: cannot resolve against %s: %s", q,
                   file ? "the config file's directory" : "the working directory", strerror(-rc));
            return rc == -ENOMEM ? rc : -EINVAL;
        }
        at->via =
            file ? "relative to the config file's directory" : "relative to the working directory";
    }
    if (!(abs = malloc(PATH_MAX))) {
        free(base);
        return -ENOMEM;
    }
    if ((rc = mv_path_resolve(base, *v, abs, PATH_MAX)) < 0) {
        quote(q, *v);
        report(errs, *at, o->section, o->name, "%s: the absolute path is too long", q);
        free(abs);
        free(base);
        return -EINVAL;
    }
    free(base);
    free(*v);
    *v = abs;
    return 0;
}

int mv_config_check_socket(const mv_config_t *c, mv_errors_t *errs)
{
    const char *sock = c->control.socket, *dir = c->supervisor.state_dir;
    const mv_option_t *o =
        mv_config_find(*sock ? "control" : "supervisor", *sock ? "socket" : "state_dir");
    size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path), dl = strlen(dir), len;
    bool slash = dl == 0 || dir[dl - 1] == '/';

    if (strcmp(sock, "none") == 0)
        return 0;
    len = *sock ? strlen(sock) : dl + !slash + strlen("control.sock");
    if (len < cap)
        return 0;
    report(errs, c->origin[o - mv__options], o->section, o->name,
           "the control socket %s%s%s is %zu bytes long; a Unix socket path holds at most %zu: "
           "set a shorter [control] socket, or none",
           *sock ? sock : dir, *sock || slash ? "" : "/", *sock ? "" : "control.sock", len,
           cap - 1);
    return -EINVAL;
}

int mv_config_finish(mv_config_t *c, mv_errors_t *errs)
{
#define O(s, k) mv_config_find(#s, #k)
    bool bad = false;
    char why[160];
    long cpus;
    int rc;

    if (!c->origin)
        return -EINVAL;
    mv__config_derive_limits(c);
    if ((rc = resolve_path(c, O(supervisor, state_dir), errs)) == -ENOMEM ||
        (rc == 0 && (rc = resolve_path(c, O(control, socket), errs)) == -ENOMEM))
        return -ENOMEM;
    bad |= rc < 0;
    if (c->limits.memory_soft && c->limits.memory_hard)
        bad |= above(c, errs, O(limits, memory_soft), O(limits, memory_hard),
                     "the soft limit must be the lower one (or leave one of them out, or set "
                     "it to auto: it then follows the other)");
    bad |= orphan_jitter(c, errs, O(limits, max_tasks_jitter), O(limits, max_tasks));
    bad |= orphan_jitter(c, errs, O(limits, max_lifetime_jitter), O(limits, max_lifetime));
    bad |= above(c, errs, O(worker, backoff_min), O(worker, backoff_max),
                 "the first delay cannot exceed the bound");
    bad |= above(c, errs, O(tasks, max_size), O(worker, max_message),
                 "a task line must fit in one message");
    bad |= mv__config_finish_ext(c, errs);
    if (mv_addr_check(c->service.listen, MV_ADDR_MAX, why, sizeof why) < 0) {
        report(errs, c->origin[O(service, listen) - mv__options], "service", "listen", "%s", why);
        bad = true;
    }
    if (*c->metrics.listen && mv_addr_numeric(c->metrics.listen, NULL, why, sizeof why) < 0) {
        report(errs, c->origin[O(metrics, listen) - mv__options], "metrics", "listen", "%s", why);
        bad = true;
    }
    /* A template forks from mvw_open() or memvisor_worker's Worker(): only api workers have
     * one (docs/templates.md). */
    if (c->worker.template && c->worker.protocol != MV_PROTO_API) {
        report(errs, c->origin[O(worker, template) - mv__options], "worker", "template",
               "only api workers can be templates (a %s worker has no mvw_open to fork from): "
               "set protocol = api, or template = no",
               c->worker.protocol == MV_PROTO_LINES ? "lines" : "none");
        bad = true;
    }
    /* A child recycle stops a process the worker forked: api and lines workers run the tasks
     * themselves, and their children are theirs to manage (docs/service.md). */
    if (c->recycle.target == MV_TARGET_CHILD && c->worker.protocol != MV_PROTO_NONE) {
        report(errs, c->origin[O(recycle, target) - mv__options], "recycle", "target",
               "child needs protocol = none (a master such as gunicorn that forks its own "
               "children): a%s %s worker is recycled whole",
               c->worker.protocol == MV_PROTO_API ? "n" : "",
               c->worker.protocol == MV_PROTO_API ? "api" : "lines");
        bad = true;
    }
#undef O
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (c->supervisor.workers == 0)
        c->supervisor.workers = cpus > 1024 ? 1024 : (int)cpus;
    if (c->supervisor.max_starting == 0)
        c->supervisor.max_starting = cpus > 512 ? 1024 : 2 * (int)cpus;
    return bad ? -EINVAL : 0;
}

static int build(mv_config_t *c, const char *path, const char *const *overrides, int n,
                 mv_errors_t *errs, bool nowait)
{
    bool bad = false;

    if (mv_config_init(c) < 0)
        return -ENOMEM;
    if (path && load(c, path, errs, nowait) < 0)
        bad = true;
    for (int i = 0; i < n; i++)
        if (mv_config_override(c, overrides[i], i + 1, errs) < 0)
            bad = true;
    if (!bad && mv_config_finish(c, errs) < 0)
        bad = true;
    return bad ? -EINVAL : 0;
}

int mv_config_build(mv_config_t *c, const char *path, const char *const *overrides, int n,
                    mv_errors_t *errs)
{
    return build(c, path, overrides, n, errs, false);
}

int mv_config_rebuild(mv_config_t *c, const char *path, const char *const *overrides, int n,
                      mv_errors_t *errs)
{
    return build(c, path, overrides, n, errs, true);
}

void mv_errors_say(const mv_errors_t *errs, FILE *out)
{
    mv_errors_print(errs, out);
    fprintf(out, "memvisor: configuration has %zu error%s\n", errs->n, errs->n == 1 ? "" : "s");
}

int mv_config_build_or_say(mv_config_t *c, const char *path, const char *const *overrides, int n,
                           FILE *out)
{
    mv_errors_t errs = {0};
    int r = mv_config_build(c, path, overrides, n, &errs);

    if (r == -ENOMEM) {
        fprintf(out, "memvisor: out of memory\n");
    } else if (r < 0) {
        mv_errors_say(&errs, out);
    }
    mv_errors_free(&errs);
    return r;
}

/* ---- printing ------------------------------------------------------------------------ */

mv_origin_t mv_config_origin(const mv_config_t *c, const char *section, const char *name)
{
    const mv_option_t *o = mv_config_find(section, name);

    if (!o || !c->origin)
        return (mv_origin_t){.file = NULL, .line = 0};
    return c->origin[o - mv__options];
}

/* Where option i's value came from, for `memvisor check`: "FILE:LINE", "-o N" or
 * "default", and how it was derived, if it was. */
static void origin_text(const mv_config_t *c, size_t i, char *buf, size_t n)
{
    mv_origin_t at = c->origin[i];
    int k;

    if (!at.file)
        k = snprintf(buf, n, "default");
    else if (!from_file(c, at.file) && strcmp(at.file, "-o") == 0)
        k = snprintf(buf, n, "-o %d", at.line);
    else
        k = snprintf(buf, n, "%s:%d", at.file, at.line);
    if (at.via && k >= 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, ", %s", at.via);
}

void mv_config_print(const mv_config_t *c, FILE *out)
{
    const char *section = NULL, *val;
    char buf[32], from[PATH_MAX + 128];
    int width;

    for (size_t i = 0; i < mv__noptions; i++) {
        const mv_option_t *o = &mv__options[i];

        if (!section || strcmp(section, o->section) != 0) {
            fprintf(out, "%s[%s]\n", section ? "\n" : "", o->section);
            section = o->section;
        }
        switch (o->type) {
        case MV_OPT_STRING: val = *str_field(c, o) ? *str_field(c, o) : ""; break;
        case MV_OPT_ENUM: val = o->choices[get_num(c, o)]; break;
        case MV_OPT_BOOL: val = get_num(c, o) ? "yes" : "no"; break;
        default:
            if (takes_auto(o) && get_num(c, o) == MV_CONFIG_AUTO)
                snprintf(buf, sizeof buf, "auto"); /* before mv_config_finish */
            else
                mv_fmt_num(o->type, get_num(c, o), buf, sizeof buf);
            val = buf;
        }
        origin_text(c, i, from, sizeof from);
        fprintf(out, "; %s (default %s)\n", o->doc, o->def[0] ? o->def : "empty");
        /* The origin as an inline comment: inih drops it, so the output still loads. */
        width = fprintf(out, "%s =%s%s", o->name, val[0] ? " " : "", val);
        fprintf(out, "%*s; %s\n", width < 30 ? 32 - width : 2, "", from);
    }
}
