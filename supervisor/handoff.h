/*
 * handoff: a warm template started by whoever exec'd memvisor, handed over through the
 * environment (docs/templates.md, "A template handed over"). memvisor.Pool uses it: the
 * process that becomes memvisor first forks the template from the Python caller (everything
 * imported, as multiprocessing's fork start method), then execs `memvisor run`. exec keeps
 * children, so the template is memvisor's child, and memvisor adopts it as its first template
 * instead of starting one: into its cgroup, then HELLO, GO, forks, as any template.
 *
 * MEMVISOR_TEMPLATE_HANDOFF=PIDFD,CTL,OUT: three inherited fds: a pidfd of the template (the
 * pid comes from it: no pid can be reused under us), our end of its control socket (a stream
 * socket: the template speaks on its end as on the one memvisor would have given it), the read
 * end of its output pipe (its stdout and stderr). The variable is removed from memvisor's
 * environment when taken, so no worker sees it; the fds become close-on-exec.
 */
#ifndef MV_HANDOFF_H
#define MV_HANDOFF_H

#include <stddef.h>

#define MV_HANDOFF_ENV "MEMVISOR_TEMPLATE_HANDOFF"

typedef struct mv_handoff {
    int pidfd, ctl, out; /* -1: none */
    int pid;             /* from the pidfd; 0: none */
} mv_handoff_t;

/* No handoff. */
void mv_handoff_init(mv_handoff_t *h);
/* PIDFD,CTL,OUT (decimal fds, each > 2 and distinct) into h (pid stays 0). 0 or -EINVAL. */
int mv_handoff_parse(const char *text, mv_handoff_t *h);
/* Takes $MEMVISOR_TEMPLATE_HANDOFF (and unsets it): 0 none given; 1 taken (the fds checked, the
 * pid read and checked to be our child); -errno a bad one, with why (its fds are closed and the
 * child, when there is one, is killed and reaped). */
int mv_handoff_take(mv_handoff_t *h, char *why, size_t n);
/* Not adopted after all: kills and reaps the child, closes the fds. No-op when none. */
void mv_handoff_drop(mv_handoff_t *h);

#endif
