/*
 * reaper: orphans reparented to memvisor, reaped without touching libuv's children (see
 * reaper.h).
 */
#include "reaper.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define MAX_CHILDREN 4096 /* per sweep; a later SIGCHLD takes the rest */

bool mv_ratelimit_take(mv_ratelimit_t *rl, uint64_t now_ms, uint64_t *suppressed)
{
    if (now_ms >= rl->window_ms + 1000 || now_ms < rl->window_ms) {
        rl->window_ms = now_ms;
        rl->in_window = 0;
    }
    if (rl->in_window >= MV_REAPER_LOG_PER_S) {
        rl->suppressed++;
        return false;
    }
    rl->in_window++;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

int mv_reaper_parse_children(const char *text, int *out, int max)
{
    int n = 0;
    long v;
    char *end;

    while (*text && n < max) {
        while (*text == ' ' || *text == '\n')
            text++;
        if (!isdigit((unsigned char)*text))
            break;
        v = strtol(text, &end, 10);
        if (v > 0 && v <= INT32_MAX)
            out[n++] = (int)v;
        text = end;
    }
    return n;
}

/* Reads a small /proc file into buf (NUL-terminated). Bytes read, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* memvisor's children through its main thread's children file. How many, or -1 when the
 * kernel has no such file (CONFIG_PROC_CHILDREN off). The main thread's alone: an orphan is
 * reparented to the first live thread of the reaper's thread group (kernel/exit.c,
 * find_alive_thread), its leader while memvisor runs; libuv spawns from the loop thread,
 * which is the leader too. (Reading every thread's file cost ~50 us a sweep, ~8 this way.) */
static int children_by_task(const mv_reaper_t *r, int *out, int max)
{
    char path[128], buf[16384];

    snprintf(path, sizeof path, "%s/self/task/%d/children", r->proc, (int)getpid());
    if (read_small(path, buf, sizeof buf) < 0)
        return errno == ENOENT ? -1 : 0;
    return mv_reaper_parse_children(buf, out, max);
}

/* The same by a scan of every /proc/PID/stat for PPid == memvisor (slower: the fallback). */
static int children_by_scan(const mv_reaper_t *r, int *out, int max)
{
    char path[300], buf[1024];
    struct dirent *e;
    const char *p;
    int n = 0, self = (int)getpid();
    DIR *d = opendir(r->proc);

    if (!d)
        return 0;
    while ((e = readdir(d)) && n < max) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "%s/%s/stat", r->proc, e->d_name);
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, the last ')'
         * ends it. */
        if (read_small(path, buf, sizeof buf) < 0 || !(p = strrchr(buf, ')')))
            continue;
        if (strlen(p) > 4 && atoi(p + 4) == self)
            out[n++] = atoi(e->d_name);
    }
    closedir(d);
    return n;
}

int mv_reaper_children(const mv_reaper_t *r, int *out, int max)
{
    int n = children_by_task(r, out, max);

    return n >= 0 ? n : children_by_scan(r, out, max);
}

typedef struct pids {
    int *v;
    int n, cap;
} pids_t;

static void collect_cb(uv_handle_t *h, void *arg)
{
    pids_t *p = arg;

    if (h->type == UV_PROCESS && p->n < p->cap)
        p->v[p->n++] = ((uv_process_t *)h)->pid;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    return (x > y) - (x < y);
}

/* Waits for one orphan if it has exited. 1 when reaped. */
static int reap_one(mv_reaper_t *r, int pid)
{
    uint64_t suppressed;
    int st, status;
    pid_t got;

    do
        got = waitpid(pid, &st, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got != pid)
        return 0; /* still running (0), or gone already (ECHILD) */
    r->reaped++;
    status = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
    if (mv_ratelimit_take(&r->rl, mv_now_ms(), &suppressed))
        mv_info(r->log, "orphan_reaped", MV_I("pid", pid), MV_I("status", status),
                MV_I("reaped", (long long)r->reaped), MV_I("suppressed", (long long)suppressed));
    return 1;
}

int mv_reaper_sweep(mv_reaper_t *r)
{
    /* Scratch, on the loop thread only (32 KiB: not for the stack of a callback). */
    static int kids[MAX_CHILDREN], ours[MAX_CHILDREN];
    pids_t uv = {ours, 0, MAX_CHILDREN};
    int n, reaped = 0;

    n = mv_reaper_children(r, kids, MAX_CHILDREN);
    if (n == 0)
        return 0;
    /* libuv's children: it reaps them, by pid, and must get every status. */
    uv_walk(r->loop, collect_cb, &uv);
    qsort(ours, (size_t)uv.n, sizeof *ours, cmp_int);
    for (int i = 0; i < n; i++)
        if (!bsearch(&kids[i], ours, (size_t)uv.n, sizeof *ours, cmp_int) &&
            !(r->keep && r->keep(r->keep_arg, kids[i])))
            reaped += reap_one(r, kids[i]);
    return reaped;
}

void mv_reaper_keep(mv_reaper_t *r, mv_reaper_keep_fn fn, void *arg)
{
    r->keep = fn;
    r->keep_arg = arg;
}

static void sigchld_cb(uv_signal_t *h, int signum)
{
    mv_reaper_sweep(h->data);
}

int mv_reaper_open(mv_reaper_t *r, uv_loop_t *loop, mv_log_t *log, char *why, size_t n)
{
    int rc;

    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->log = log;
    r->proc = "/proc";
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        rc = -errno;
        snprintf(why, n, "prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(-rc));
        return rc;
    }
    uv_signal_init(loop, &r->sig);
    r->sig.data = r;
    rc = uv_signal_start(&r->sig, sigchld_cb, SIGCHLD);
    if (rc < 0) {
        snprintf(why, n, "uv_signal_start(SIGCHLD): %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&r->sig, NULL);
        return rc;
    }
    uv_unref((uv_handle_t *)&r->sig); /* it must not keep the loop alive */
    r->open = true;
    return 0;
}

void mv_reaper_close(mv_reaper_t *r)
{
    if (!r->open)
        return;
    r->open = false;
    mv_reaper_sweep(r); /* what exited meanwhile */
    uv_close((uv_handle_t *)&r->sig, NULL);
    /* The total, and the lines the rate limit left out since the last one. */
    if (r->reaped)
        mv_info(r->log, "orphans_reaped", MV_I("reaped", (long long)r->reaped),
                MV_I("suppressed", (long long)r->rl.suppressed));
}
