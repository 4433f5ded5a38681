/*
 * units: the value parsers behind the config table, their inverse (the canonical text of a
 * size or duration) and the word splitter for worker.command. No inih here: these take one
 * NUL-terminated value and say why it is wrong.
 *
 * Rules, the same in files, -o overrides and the CLI:
 *   - sizes are bytes: N, NB, NK, NM, NG, NT or NKiB..NTiB, case-insensitive; K = 1024.
 *     KB/MB/GB/TB are refused with a hint rather than guessed as 1000 or 1024;
 *   - durations are milliseconds and need a unit: ms, s, m, h, d ("0" alone is fine);
 *   - both take one decimal fraction ("1.5G", "0.25s"), rounded half up to a whole byte or
 *     millisecond, blanks between number and unit, never a sign; past INT64_MAX is -ERANGE;
 *   - integers are plain decimal, a minus sign allowed so that the range check can name it;
 *   - printed back, a size or duration takes its largest exact unit: 16777216 is "16M";
 *   - bools are yes/no, true/false, on/off, 1/0, case-insensitive;
 *   - words split like a shell without expansion: blanks separate, '...' is literal, "..."
 *     honours \\ \" \$ \`, a backslash outside quotes escapes the next character.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "config_int.h"

/* ---- integers ------------------------------------------------------------------------ */

/* A plain decimal integer; a minus sign is accepted so that range errors can name it. */
int mv_parse_int(const char *s, int64_t *out, const char **why)
{
    bool neg = *s == '-';
    int64_t v = 0;

    if (neg)
        s++;
    if (!isdigit((unsigned char)*s)) {
        *why = "not an integer";
        return -EINVAL;
    }
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10) {
            *why = "too large";
            return -ERANGE;
        }
        v = v * 10 + (*s - '0');
    }
    if (*s) {
        *why = "not an integer";
        return -EINVAL;
    }
    *out = neg ? -v : v;
    return 0;
}

/* ---- numbers with a unit ------------------------------------------------------------- */

/* A non-negative decimal number "D[.D]": its integer part, and its fraction as frac/frac_den
 * (digits past the 18th are dropped). `*end` is the first character after the number. */
static int parse_scaled(const char *s, const char **end, int64_t *num_int, uint64_t *frac,
                        uint64_t *frac_den, const char **why)
{
    int64_t v = 0;
    uint64_t f = 0, den = 1;

    if (*s == '-') {
        *why = "negative";
        return -EINVAL;
    }
    if (!isdigit((unsigned char)*s)) {
        *why = "not a number";
        return -EINVAL;
    }
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10) {
            *why = "too large";
            return -ERANGE;
        }
        v = v * 10 + (*s - '0');
    }
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s)) {
            *why = "not a number";
            return -EINVAL;
        }
        for (; isdigit((unsigned char)*s); s++) {
            if (den < UINT64_C(1000000000000000000)) { /* 18 digits are plenty */
                f = f * 10 + (uint64_t)(*s - '0');
                den *= 10;
            }
        }
    }
    *end = s;
    *num_int = v;
    *frac = f;
    *frac_den = den;
    return 0;
}

/* int_part.frac * mult, rounded to the nearest unit; -ERANGE past INT64_MAX. A value above 0
 * that rounds to 0 is refused with `tiny` (-EINVAL): 0 means "off" for most keys, which a
 * setting of 0.1 bytes or 0.4 ms never meant. */
static int scale(int64_t v, uint64_t f, uint64_t den, int64_t mult, int64_t *out, const char **why,
                 const char *tiny)
{
    unsigned __int128 r = (unsigned __int128)v * (uint64_t)mult;

    r += ((unsigned __int128)f * (uint64_t)mult + den / 2) / den;
    if (r > INT64_MAX) {
        *why = "too large";
        return -ERANGE;
    }
    if (r == 0 && (v != 0 || f != 0)) {
        *why = tiny;
        return -EINVAL;
    }
    *out = (int64_t)r;
    return 0;
}

/* The unit after a number: letters, optionally after blanks; nothing may follow it. */
static int read_unit(const char *s, char unit[8], const char **why)
{
    size_t n = 0;

    while (*s == ' ' || *s == '\t')
        s++;
    while (isalpha((unsigned char)*s)) {
        if (n == 7) {
            *why = "bad unit";
            return -EINVAL;
        }
        unit[n++] = (char)tolower((unsigned char)*s++);
    }
    unit[n] = '\0';
    if (*s) {
        *why = "unexpected text after the number";
        return -EINVAL;
    }
    return 0;
}

/* Bytes: a number and an optional binary unit; decimal units are refused, not guessed. */
int mv_parse_size(const char *s, int64_t *out, const char **why)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {
        {"", 1},      {"b", 1},   {"k", KIB},   {"kib", KIB}, {"m", MIB},
        {"mib", MIB}, {"g", GIB}, {"gib", GIB}, {"t", TIB},   {"tib", TIB},
    };
    const char *end;
    int64_t v;
    uint64_t f, den;
    char unit[8];
    int rc;

    if ((rc = parse_scaled(s, &end, &v, &f, &den, why)) < 0)
        return rc;
    if ((rc = read_unit(end, unit, why)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].unit) == 0)
            return scale(v, f, den, units[i].mult, out, why,
                         "rounds to 0 bytes, and 0 means off: give at least 1 byte (or 0)");
    if (strcmp(unit, "kb") == 0 || strcmp(unit, "mb") == 0 || strcmp(unit, "gb") == 0 ||
        strcmp(unit, "tb") == 0)
        *why =
            "KB, MB, GB and TB are not accepted: K means 1024 here (write K or KiB, M or MiB, ...)";
    else
        *why = "bad unit (use B, K, M, G, T or KiB, MiB, GiB, TiB; K = 1024)";
    return -EINVAL;
}

/* Milliseconds: a number and a unit, which only 0 may omit ("30" is never seconds). */
int mv_parse_duration(const char *s, int64_t *out_ms, const char **why)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"ms", 1}, {"s", SEC}, {"m", MINU}, {"h", HOUR}, {"d", DAY}};
    const char *end;
    int64_t v;
    uint64_t f, den;
    char unit[8];
    int rc;

    if ((rc = parse_scaled(s, &end, &v, &f, &den, why)) < 0)
        return rc;
    if ((rc = read_unit(end, unit, why)) < 0)
        return rc;
    if (!unit[0]) {
        if (v == 0 && f == 0) {
            *out_ms = 0;
            return 0;
        }
        *why = "missing unit (use ms, s, m, h or d, e.g. 30s)";
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].unit) == 0)
            return scale(v, f, den, units[i].mult, out_ms, why,
                         "rounds to 0ms, and 0 means off: give at least 1ms (or 0)");
    *why = "bad unit (use ms, s, m, h or d)";
    return -EINVAL;
}

/* 1 or 0 from the four usual spellings of each, case-insensitive. */
int mv_parse_bool(const char *s, int *out, const char **why)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    *why = "not a boolean (use yes/no, true/false, on/off or 1/0)";
    return -EINVAL;
}

/* ---- and back ------------------------------------------------------------------------ */

/* Canonical text of a number of the option's type: the largest exact unit. */
void mv_fmt_num(mv_opt_type_t type, int64_t v, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } sizes[] = {{"T", TIB}, {"G", GIB}, {"M", MIB}, {"K", KIB}},
      times[] = {{"d", DAY}, {"h", HOUR}, {"m", MINU}, {"s", SEC}, {"ms", 1}};

    if (v != 0 && type == MV_OPT_SIZE) {
        for (size_t i = 0; i < 4; i++) {
            if (v % sizes[i].mult == 0) {
                snprintf(buf, len, "%lld%s", (long long)(v / sizes[i].mult), sizes[i].unit);
                return;
            }
        }
    }
    if (v != 0 && type == MV_OPT_DURATION) {
        for (size_t i = 0; i < 5; i++) {
            if (v % times[i].mult == 0) {
                snprintf(buf, len, "%lld%s", (long long)(v / times[i].mult), times[i].unit);
                return;
            }
        }
    }
    snprintf(buf, len, "%lld", (long long)v);
}

/* ---- words --------------------------------------------------------------------------- */

/* Frees a NULL-terminated argv from mv_split_words; NULL is fine. */
void mv_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

/* One word from *sp into w (a buffer as long as the input); *sp moves past it. */
static int one_word(const char **sp, char *w, size_t *wl, const char **why)
{
    const char *s = *sp;
    size_t n = 0;

    while (*s && !strchr(" \t\n\r\f\v", *s)) {
        if (*s == '\'') {
            const char *q = strchr(s + 1, '\'');

            if (!q) {
                *why = "unterminated single quote";
                return -EINVAL;
            }
            memcpy(w + n, s + 1, (size_t)(q - s - 1));
            n += (size_t)(q - s - 1);
            s = q + 1;
        } else if (*s == '"') {
            for (s++; *s != '"'; s++) {
                if (!*s) {
                    *why = "unterminated double quote";
                    return -EINVAL;
                }
                if (*s == '\\' && s[1] && strchr("\\\"$`", s[1]))
                    s++;
                w[n++] = *s;
            }
            s++;
        } else if (*s == '\\') {
            if (!s[1]) {
                *why = "backslash at the end";
                return -EINVAL;
            }
            w[n++] = s[1];
            s += 2;
        } else {
            w[n++] = *s++;
        }
    }
    *sp = s;
    *wl = n;
    return 0;
}

/* Splits s into a NULL-terminated argv, growing it as words come; on failure *argv stays
 * NULL and nothing leaks. */
int mv_split_words(const char *s, char ***argv, int *argc, const char **why)
{
    size_t n = 0, cap = 4, wl;
    char **v = calloc(cap, sizeof *v), *w = malloc(strlen(s) + 1);
    int rc = -ENOMEM;

    *argv = NULL;
    if (!v || !w)
        goto out;
    for (;;) {
        while (*s && strchr(" \t\n\r\f\v", *s))
            s++;
        if (!*s)
            break;
        if ((rc = one_word(&s, w, &wl, why)) < 0)
            goto out;
        rc = -ENOMEM;
        if (n + 2 > cap) {
            char **nv = realloc(v, 2 * cap * sizeof *nv);

            if (!nv)
                goto out;
            v = nv;
            cap *= 2;
        }
        if (!(v[n] = strndup(w, wl)))
            goto out;
        v[++n] = NULL;
    }
    *argv = v;
    v = NULL;
    if (argc)
        *argc = (int)n;
    rc = 0;
out:
    if (rc == -ENOMEM)
        *why = "out of memory";
    mv_argv_free(v);
    free(w);
    return rc;
}
