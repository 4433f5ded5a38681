/*
 * paths: resolving relative configuration paths (paths.h has the rule).
 */
#include "paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Appends component s[0..n) to out (length *len), with a slash before it. */
static int push(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + 1 + n + 1 > cap)
        return -ENAMETOOLONG;
    out[(*len)++] = '/';
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
    return 0;
}

/* Appends every component of `p` to out; `pop` allows a leading ".." to drop one of out's
 * components (the physical base), and stays on only while the components are "..". */
static int append(char *out, size_t cap, size_t *len, const char *p, int pop)
{
    int rc;

    while (*p) {
        const char *e = strchrnul(p, '/');
        size_t n = (size_t)(e - p);

        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing: "//" or "/./" */
        } else if (pop && n == 2 && p[0] == '.' && p[1] == '.') {
            char *slash = strrchr(out, '/');

            *len = slash ? (size_t)(slash - out) : 0; /* "/.." is "/" */
            out[*len] = '\0';
        } else {
            pop = 0;
            if ((rc = push(out, cap, len, p, n)) < 0)
                return rc;
        }
        p = *e ? e + 1 : e;
    }
    return 0;
}

int mv_path_resolve(const char *base, const char *path, char *out, size_t cap)
{
    size_t len = 0;
    int rc;

    if (!path || !*path || cap < 2)
        return -EINVAL;
    out[0] = '\0';
    if (path[0] != '/') {
        if (!base || base[0] != '/')
            return -EINVAL;
        if ((rc = append(out, cap, &len, base, 0)) < 0)
            return rc;
    }
    if ((rc = append(out, cap, &len, path, path[0] != '/')) < 0)
        return rc;
    if (len == 0) {
        out[0] = '/';
        out[1] = '\0';
    }
    return 0;
}

int mv_path_base_of(const char *config, char **out)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = config ? strrchr(config, '/') : NULL;

    *out = NULL;
    if (!config) {
        if (!getcwd(real, sizeof real))
            return -errno;
        return (*out = strdup(real)) ? 0 : -ENOMEM;
    }
    /* The directory as the path names it (a symlinked config file counts where the link
     * is, as the user named it), made physical. */
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == config)
        snprintf(dir, sizeof dir, "/");
    else if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - config), config) >= (int)sizeof dir)
        return -ENAMETOOLONG;
    if (!realpath(dir, real))
        return -errno;
    return (*out = strdup(real)) ? 0 : -ENOMEM;
}
