/*
 * config_ext: the keys of the hardening work (docs/hardening.md) whose values have a syntax
 * of their own or need the system to check them, kept out of config.c (which holds the
 * loader) so each rule is in one short place:
 *
 *   [worker] user, group        names or numeric ids, resolved once to uid and gid (the
 *                               passwd and group databases, through NSS); only root may
 *                               switch a worker's user, so anyone else is refused here, at
 *                               `memvisor check`, not at the first spawn
 *   [limits] escalate           off | Nx (a factor > 1) | SIZE (a step added per escalation)
 *   [limits] escalate_max       0 = 4 times memory_hard; never below memory_hard
 *   [supervisor] pause_below    0 | SIZE | N% (of MemTotal, 0 < N < 100)
 *
 * The value syntax is checked as each value is read (mv__config_check_ext: the mistake then
 * names its line, with all the others); the resolution and the cross-key rules run in
 * mv_config_finish (mv__config_finish_ext).
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h"

#define ESCALATE_MAX_FACTOR 100.0 /* "1000x" is a typo, not a plan */
#define ESCALATE_MAX_AUTO   4     /* escalate_max = 0: this many times memory_hard */

int mv_parse_escalate(const char *s, mv_escmode_t *mode, double *factor, int64_t *step,
                      const char **why)
{
    size_t n = strlen(s);
    char *end;
    double f;

    *mode = MV_ESC_OFF;
    *factor = 0;
    *step = 0;
    if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0)
        return 0;
    if (n > 1 && (s[n - 1] == 'x' || s[n - 1] == 'X')) {
        errno = 0;
        f = strtod(s, &end);
        if (end != s + n - 1 || errno || !isdigit((unsigned char)s[0])) {
            *why = "expected off, a factor such as 2x or 1.5x, or a size such as 256M";
            return -EINVAL;
        }
        if (!(f > 1.0) || f > ESCALATE_MAX_FACTOR) {
            *why = "the factor must be above 1x and at most 100x";
            return -ERANGE;
        }
        *mode = MV_ESC_FACTOR;
        *factor = f;
        return 0;
    }
    if (mv_parse_size(s, step, why) < 0) {
        *why = "expected off, a factor such as 2x or 1.5x, or a size such as 256M";
        return -EINVAL;
    }
    if (*step <= 0) {
        *why = "a step of 0 raises nothing: write off";
        return -ERANGE;
    }
    *mode = MV_ESC_STEP;
    return 0;
}

int mv_parse_pause(const char *s, int64_t *bytes, int *permille, const char **why)
{
    size_t n = strlen(s);
    char *end;
    double pct;

    *bytes = 0;
    *permille = 0;
    if (n > 1 && s[n - 1] == '%') {
        errno = 0;
        pct = strtod(s, &end);
        if (end != s + n - 1 || errno || !isdigit((unsigned char)s[0])) {
            *why = "expected 0, a size such as 512M, or a percentage such as 10%";
            return -EINVAL;
        }
        if (!(pct > 0.0) || pct >= 100.0 || pct * 10.0 < 1.0) {
            *why = "a percentage must be at least 0.1% and below 100%";
            return -ERANGE;
        }
        *permille = (int)(pct * 10.0 + 0.5);
        return 0;
    }
    if (mv_parse_size(s, bytes, why) < 0) {
        *why = "expected 0, a size such as 512M, or a percentage such as 10%";
        return -EINVAL;
    }
    return 0;
}

int mv__config_check_ext(const mv_option_t *o, const char *s, const char *q, char *why, size_t wlen)
{
    const char *r = NULL;
    mv_escmode_t mode;
    double f;
    int64_t v;
    int pm, rc = 0;

    if (o->offset == offsetof(mv_config_t, limits.escalate))
        rc = mv_parse_escalate(s, &mode, &f, &v, &r);
    else if (o->offset == offsetof(mv_config_t, supervisor.pause_below))
        rc = mv_parse_pause(s, &v, &pm, &r);
    if (rc < 0)
        snprintf(why, wlen, "%s: %s", q, r);
    return rc < 0 ? -EINVAL : 0;
}

/* A numeric id ("65534"): 0 and *id set; else -EINVAL (a name). */
static int numeric_id(const char *s, int64_t *id)
{
    char *end;
    unsigned long long v;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end || errno || v >= UINT32_MAX) /* (uid_t)-1 means "unchanged" to the kernel */
        return -EINVAL;
    *id = (int64_t)v;
    return 0;
}

/* The origin of a key, for its error line. */
static mv_origin_t origin_of(const mv_config_t *c, const char *section, const char *key)
{
    return c->origin[mv_config_find(section, key) - mv__options];
}

/* [worker] user and group to ids. Returns whether something was wrong (reported). */
static bool resolve_creds(mv_config_t *c, mv_errors_t *errs)
{
    const char *user = c->worker.user, *group = c->worker.group;
    struct passwd *pw = NULL;
    struct group *gr;
    char why[256];
    bool bad = false;

    if (!*user && !*group)
        return false;
    if (geteuid() != 0) {
        snprintf(why, sizeof why,
                 "\"%.40s\": only root can run workers as another user or group (memvisor runs "
                 "as uid %u): remove it, or start memvisor as root",
                 *user ? user : group, (unsigned)geteuid());
        mv__config_report(errs, origin_of(c, "worker", *user ? "user" : "group"), "worker",
                          *user ? "user" : "group", why);
        return true;
    }
    c->worker.uid = (int64_t)geteuid();
    c->worker.gid = (int64_t)getegid();
    if (*user) {
        if (numeric_id(user, &c->worker.uid) == 0)
            pw = getpwuid((uid_t)c->worker.uid);
        else if ((pw = getpwnam(user)))
            c->worker.uid = (int64_t)pw->pw_uid;
        if (pw)
            c->worker.gid = (int64_t)pw->pw_gid;
        if (!pw && numeric_id(user, &c->worker.uid) < 0) {
            snprintf(why, sizeof why, "\"%.40s\": no such user", user);
            mv__config_report(errs, origin_of(c, "worker", "user"), "worker", "user", why);
            bad = true;
        } else if (!pw && !*group) {
            snprintf(why, sizeof why,
                     "\"%.40s\": uid %s has no passwd entry, so no primary group: set [worker] "
                     "group too",
                     user, user);
            mv__config_report(errs, origin_of(c, "worker", "user"), "worker", "user", why);
            bad = true;
        }
    }
    if (*group) {
        if (numeric_id(group, &c->worker.gid) < 0) {
            if ((gr = getgrnam(group))) {
                c->worker.gid = (int64_t)gr->gr_gid;
            } else {
                snprintf(why, sizeof why, "\"%.40s\": no such group", group);
                mv__config_report(errs, origin_of(c, "worker", "group"), "worker", "group", why);
                bad = true;
            }
        }
    }
    return bad;
}

/* [limits] escalate and escalate_max. Returns whether something was wrong (reported). */
static bool resolve_escalate(mv_config_t *c, mv_errors_t *errs)
{
    mv_origin_t *at = &c->origin[mv_config_find("limits", "escalate_max") - mv__options];
    const char *r = NULL;
    char why[256], a[32], b[32];

    if (mv_parse_escalate(c->limits.escalate, &c->limits.escalate_mode, &c->limits.escalate_factor,
                          &c->limits.escalate_step, &r) < 0)
        return true; /* reported when the value was read */
    if (c->limits.escalate_mode == MV_ESC_OFF)
        return false;
    if (c->limits.memory_hard <= 0) {
        mv__config_report(errs, origin_of(c, "limits", "escalate"), "limits", "escalate",
                          "needs a hard limit to raise: memory_hard is 0 (off)");
        return true;
    }
    if (c->limits.escalate_max == 0) {
        c->limits.escalate_max = c->limits.memory_hard * ESCALATE_MAX_AUTO;
        at->via = "4 times memory_hard";
        return false;
    }
    if (c->limits.escalate_max <= c->limits.memory_hard) {
        mv_fmt_num(MV_OPT_SIZE, c->limits.escalate_max, a, sizeof a);
        mv_fmt_num(MV_OPT_SIZE, c->limits.memory_hard, b, sizeof b);
        snprintf(why, sizeof why,
                 "%s is not above memory_hard = %s: nothing to escalate to (raise it, or set "
                 "escalate = off)",
                 a, b);
        mv__config_report(errs, *at, "limits", "escalate_max", why);
        return true;
    }
    return false;
}

bool mv__config_finish_ext(mv_config_t *c, mv_errors_t *errs)
{
    const char *r = NULL;
    bool bad = false;

    bad |= resolve_creds(c, errs);
    bad |= resolve_escalate(c, errs);
    if (mv_parse_pause(c->supervisor.pause_below, &c->supervisor.pause_bytes,
                       &c->supervisor.pause_permille, &r) < 0)
        bad = true; /* reported when the value was read */
    return bad;
}
