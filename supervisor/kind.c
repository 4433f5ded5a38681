/*
 * kind: task kinds from task lines (kind.h has the rules). Runs once per finished task on
 * the event loop: the word rules are a scan of the first word; a JSON line is parsed once
 * by jansson (O(line), like reading it).
 */
#include "kind.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* Fields `auto` looks in, in order, for a JSON object line. */
static const char *const auto_fields[] = {"kind", "type", "op", "action"};

int mv_kind_spec(const char *spec, mv_kind_mode_t *mode, const char **field, size_t *field_len,
                 const char **why)
{
    static const struct {
        const char *name;
        mv_kind_mode_t mode;
    } words[] = {{"auto", MV_KIND_AUTO}, {"word", MV_KIND_WORD}, {"none", MV_KIND_NONE}};
    const char *f;

    *field = NULL;
    *field_len = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(spec, words[i].name) == 0) {
            *mode = words[i].mode;
            return 0;
        }
    }
    if (strcasecmp(spec, "json") == 0) {
        *why = "json needs a field name: json:FIELD (e.g. json:op)";
        return -EINVAL;
    }
    if (strncasecmp(spec, "json:", 5) != 0) {
        *why = "not one of auto, word, none, json:FIELD";
        return -EINVAL;
    }
    f = spec + 5;
    if (!*f) {
        *why = "json: needs a field name (json:FIELD, e.g. json:op)";
        return -EINVAL;
    }
    if (strlen(f) > MV_KIND_FIELD_MAX) {
        *why = "json:FIELD: the field name is longer than 64 bytes";
        return -EINVAL;
    }
    for (const char *p = f; *p; p++) {
        if (iscntrl((unsigned char)*p)) {
            *why = "json:FIELD: the field name has a control character";
            return -EINVAL;
        }
    }
    *mode = MV_KIND_JSON;
    *field = f;
    *field_len = strlen(f);
    return 0;
}

/* ---- what is not a kind ---------------------------------------------------------------- */

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* 8-4-4-4-12 hex digits. */
static bool is_uuid(const char *s, size_t n)
{
    static const size_t dash[] = {8, 13, 18, 23};
    size_t d = 0;

    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* s starts with `shape`: 'd' a digit, any other byte itself. */
static bool shaped(const char *s, size_t n, const char *shape)
{
    size_t m = strlen(shape);

    if (n < m)
        return false;
    for (size_t i = 0; i < m; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    return true;
}

/* YYYY-MM-DD at the start: a date, or an ISO 8601 time (2026-12-01T10:00:00Z); or an ISO
 * 8601 time in its basic format (20261201T100000Z). */
static bool is_date(const char *s, size_t n)
{
    return shaped(s, n, "dddd-dd-dd") || shaped(s, n, "ddddddddTdddddd");
}

/* [+-] digits [. digits] [e [+-] digits], or the same starting with ".": a number that has
 * letters only in its exponent (no letter at all is caught before). */
static bool is_float(const char *s, size_t n)
{
    size_t i = 0, digits = 0;

    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && isdigit((unsigned char)s[i]); i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            digits++;
    if (!digits || i == n || (s[i] != 'e' && s[i] != 'E'))
        return false;
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i == n)
        return false;
    for (; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* WORD_LETTERS or more letters, then 1 to NUMBER_DIGITS digits, nothing else ("decade12",
 * "cafe0042"). A random 8-hex-digit id has this shape about once in 150 (6^k * 10^(8-k)
 * over 16^8, k = 4..7), one of 12 digits about once in 7,700: such an id gives a kind of
 * its own (kind.h). */
#define WORD_LETTERS  4
#define NUMBER_DIGITS 4
static bool word_and_number(const char *s, size_t n)
{
    size_t letters = 0;

    while (letters < n && isalpha((unsigned char)s[letters]))
        letters++;
    if (letters < WORD_LETTERS || n - letters > NUMBER_DIGITS || letters == n)
        return false;
    for (size_t i = letters; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

bool mv_kind_is_id(const char *s, size_t n)
{
    bool letter = false, digit = false;

    for (size_t i = 0; i < n; i++) {
        letter = letter || isalpha((unsigned char)s[i]);
        digit = digit || isdigit((unsigned char)s[i]);
    }
    if (!digit)
        return false; /* "resize", "-", "GET" */
    if (!letter)
        return true; /* 12345, -1.5, 2026-12-01, 10.0.0.1, 1.2.3 */
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && all_hex(s + 2, n - 2))
        return true;
    if (is_uuid(s, n) || is_float(s, n) || is_date(s, n))
        return true;
    /* A hash or an object id: has a digit, seen above; unless it reads as a word and a
     * number, as a kind's name does (decade12, cafe0042; stage1 has no hex shape at all). */
    return n >= 8 && all_hex(s, n) && !word_and_number(s, n);
}

/* Cuts a numeric suffix after a separator ("job-1234" -> "job"), again while one is left. */
static size_t cut_suffix(const char *s, size_t n)
{
    for (;;) {
        size_t i = n;

        while (i > 0 && isdigit((unsigned char)s[i - 1]))
            i--;
        if (i == n || i < 2 || !strchr("-_:#", s[i - 1]))
            return n;
        n = i - 1;
    }
}

/* ---- extraction ------------------------------------------------------------------------ */

const char *mv_kind_clean(const uint8_t *s, size_t n, char out[MV_LEAK_KIND_MAX + 1])
{
    if (n == 0)
        return NULL;
    if (n > MV_LEAK_KIND_MAX)
        n = MV_LEAK_KIND_MAX;
    /* A kind names files and JSON strings: bytes that are not plain text are replaced. */
    for (size_t i = 0; i < n; i++)
        out[i] = s[i] >= 0x21 && s[i] < 0x7f ? (char)s[i] : '?';
    out[n] = '\0';
    return out;
}

/* A token as a kind: no kind when it is an id, its numeric suffix cut. */
static const char *token_kind(const char *s, size_t n, char out[MV_LEAK_KIND_MAX + 1])
{
    if (n == 0 || mv_kind_is_id(s, n))
        return NULL;
    n = cut_suffix(s, n);
    if (mv_kind_is_id(s, n))
        return NULL; /* "a1b2c3d4e5-17" */
    return mv_kind_clean((const uint8_t *)s, n, out);
}

static bool blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static const char *first_word(const uint8_t *p, size_t len, char out[MV_LEAK_KIND_MAX + 1])
{
    size_t i = 0, n;

    while (i < len && blank(p[i]))
        i++;
    for (n = 0; i + n < len && !blank(p[i + n]); n++)
        ;
    return token_kind((const char *)p + i, n, out);
}

/* The kind a JSON string value gives, or NULL for any other value. */
static const char *value_kind(json_t *v, char out[MV_LEAK_KIND_MAX + 1])
{
    if (!json_is_string(v))
        return NULL; /* a number is not a kind; nor are true, null, objects, arrays */
    return token_kind(json_string_value(v), json_string_length(v), out);
}

/* The line as a JSON object, or NULL when it is not one. */
static json_t *json_object_line(const uint8_t *p, size_t len)
{
    size_t i = 0;
    json_t *doc;

    while (i < len && blank(p[i]))
        i++;
    if (i == len || p[i] != '{')
        return NULL;
    doc = json_loadb((const char *)p + i, len - i, JSON_ALLOW_NUL, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

const char *mv_kind_of_line(const mv_config_t *cfg, const uint8_t *line, size_t len,
                            char out[MV_LEAK_KIND_MAX + 1])
{
    mv_kind_mode_t mode = MV_KIND_AUTO;
    const char *field = NULL, *why, *kind = NULL;
    char name[MV_KIND_FIELD_MAX + 1];
    size_t flen = 0;
    json_t *doc;

    if (cfg && cfg->leak.kind && mv_kind_spec(cfg->leak.kind, &mode, &field, &flen, &why) < 0)
        mode = MV_KIND_AUTO; /* cannot happen: the configuration was checked */
    if (mode == MV_KIND_NONE || !line)
        return NULL;
    if (mode == MV_KIND_WORD)
        return first_word(line, len, out);
    doc = json_object_line(line, len);
    if (!doc)
        return mode == MV_KIND_AUTO ? first_word(line, len, out) : NULL;
    if (mode == MV_KIND_JSON) {
        memcpy(name, field, flen);
        name[flen] = '\0';
        kind = value_kind(json_object_get(doc, name), out);
    } else {
        for (size_t i = 0; !kind && i < sizeof auto_fields / sizeof auto_fields[0]; i++)
            kind = value_kind(json_object_get(doc, auto_fields[i]), out);
    }
    json_decref(doc);
    return kind;
}
