/*
 * confdiff: the reload diff.
 */
#include "confdiff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Copies one option's value from `from` into `to` (strings are duplicated). 0 or -ENOMEM. */
static int keep_value(mv_config_t *to, const mv_config_t *from, const mv_option_t *o)
{
    char **dst = (char **)((char *)to + o->offset);
    char *const *src = (char *const *)((const char *)from + o->offset);
    char *copy;

    if (o->type != MV_OPT_STRING) {
        memcpy((char *)to + o->offset, (const char *)from + o->offset, o->size);
        return 0;
    }
    copy = strdup(*src);
    if (!copy)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

/* What mv_config_finish resolves from keys a running memvisor keeps ([worker] user and
 * group, [supervisor] pause_below) is kept with them, whether or not the key's text changed:
 * the workers' ids are those of the user the run started with (a reload that dropped `user`
 * started the next workers as root while it named worker.user in restart_needed), and a
 * name that resolves to another id now changes nothing until restart either. */
static void keep_resolved(mv_config_t *nc, const mv_config_t *old)
{
    if (!mv_config_find("worker", "user")->reload || !mv_config_find("worker", "group")->reload) {
        nc->worker.uid = old->worker.uid;
        nc->worker.gid = old->worker.gid;
    }
    if (!mv_config_find("supervisor", "pause_below")->reload) {
        nc->supervisor.pause_bytes = old->supervisor.pause_bytes;
        nc->supervisor.pause_permille = old->supervisor.pause_permille;
    }
}

int mv_config_diff(mv_config_t *nc, const mv_config_t *old, mv_config_diff_t *d)
{
    size_t n;
    const mv_option_t *t = mv_config_options(&n);

    memset(d, 0, sizeof *d);
    d->changed = calloc(n, sizeof *d->changed);
    d->kept = calloc(n, sizeof *d->kept);
    if (!d->changed || !d->kept)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (mv_config_same(nc, old, &t[i]))
            continue;
        if (t[i].reload) {
            d->changed[d->nchanged++] = &t[i];
        } else {
            d->kept[d->nkept++] = &t[i];
            if (keep_value(nc, old, &t[i]) < 0)
                return -ENOMEM;
        }
    }
    keep_resolved(nc, old);
    return 0;
}

void mv_config_diff_free(mv_config_diff_t *d)
{
    free(d->changed);
    free(d->kept);
    memset(d, 0, sizeof *d);
}
