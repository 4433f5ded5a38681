/*
 * hostmem: /proc/meminfo on a timer, and the pause decision (see hostmem.h).
 */
#include "hostmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* The value of "Key:   N kB" in meminfo text, in bytes; -1 when absent or malformed. */
static int64_t field(const char *text, const char *key)
{
    size_t klen = strlen(key);
    const char *p = text;
    char *end;
    long long v;

    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
            errno = 0;
            v = strtoll(p + klen + 1, &end, 10);
            if (errno || v < 0 || end == p + klen + 1)
                return -1;
            while (*end == ' ')
                end++;
            /* Every size in meminfo is "kB" (KiB); a line without it is not one of them. */
            if (strncmp(end, "kB", 2) != 0 || v > INT64_MAX / 1024)
                return -1;
            return (int64_t)v * 1024;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

int mv_hostmem_parse(const char *text, int64_t *total, int64_t *available)
{
    int64_t t = field(text, "MemTotal"), a = field(text, "MemAvailable");
    int64_t fr, bu, ca;

    if (t <= 0)
        return -EINVAL;
    if (a < 0) { /* before 3.14: a rougher figure */
        fr = field(text, "MemFree");
        bu = field(text, "Buffers");
        ca = field(text, "Cached");
        if (fr < 0 || bu < 0 || ca < 0)
            return -EINVAL;
        a = fr + bu + ca;
    }
    *total = t;
    *available = a > t ? t : a;
    return 0;
}

int64_t mv_hostmem_threshold(int64_t bytes, int permille, int64_t total)
{
    if (permille > 0)
        return total / 1000 * permille + total % 1000 * permille / 1000;
    return bytes;
}

int64_t mv_hostmem_resume_at(int64_t threshold)
{
    return threshold + threshold / 8;
}

bool mv_hostmem_paused(bool paused, int64_t available, int64_t threshold)
{
    if (threshold <= 0)
        return false;
    if (!paused)
        return available < threshold;
    return available < mv_hostmem_resume_at(threshold);
}

/* The file, whole (meminfo is ~1.5 KiB). 0 or -errno. */
static int slurp(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), err;
    size_t n = 0;
    ssize_t r;

    if (fd < 0)
        return -errno;
    while (n < len - 1 && (r = read(fd, buf + n, len - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = -errno;
            close(fd);
            return err;
        }
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return 0;
}

void mv_hostmem_check(mv_hostmem_t *h)
{
    char buf[8192];
    int64_t total, avail;
    bool was = h->paused;
    int r;

    if ((r = slurp(h->path, buf, sizeof buf)) < 0 || mv_hostmem_parse(buf, &total, &avail) < 0) {
        if (!h->said_error)
            mv_warn(h->log, "host_memory_unreadable", MV_S("file", h->path),
                    MV_S("error", r < 0 ? strerror(-r) : "no MemTotal/MemAvailable"),
                    MV_S("msg", "the pause tier keeps its last state"));
        h->said_error = true;
        return;
    }
    h->have = true;
    h->total = total;
    h->available = avail;
    h->threshold = mv_hostmem_threshold(h->bytes, h->permille, total);
    h->paused = mv_hostmem_paused(was, avail, h->threshold);
    if (h->paused == was)
        return;
    if (h->paused) {
        h->pauses++;
        h->paused_ms = mv_now_ms();
        mv_warn(h->log, "pause", MV_S("reason", "host_memory"), MV_I("available", avail),
                MV_I("threshold", h->threshold),
                MV_S("msg", "no new task until the host has more memory; running tasks go on"));
    } else {
        mv_info(h->log, "resume", MV_S("reason", "host_memory"), MV_I("available", avail),
                MV_I("threshold", h->threshold),
                MV_I("resume_at", mv_hostmem_resume_at(h->threshold)),
                MV_I("paused_ms", (long long)(mv_now_ms() - h->paused_ms)));
    }
    h->on_change(h->arg, h->paused);
}

static void timer_cb(uv_timer_t *t)
{
    mv_hostmem_check(t->data);
}

int mv_hostmem_open(mv_hostmem_t *h, uv_loop_t *loop, mv_log_t *log, const char *path,
                    int64_t bytes, int permille, uint64_t interval_ms,
                    void (*on_change)(void *arg, bool paused), void *arg)
{
    int r;

    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->log = log;
    h->path = path;
    h->bytes = bytes;
    h->permille = permille;
    h->on_change = on_change;
    h->arg = arg;
    if ((r = uv_timer_init(loop, &h->timer)) < 0)
        return r;
    h->timer.data = h;
    h->open = true;
    uv_unref((uv_handle_t *)&h->timer); /* a batch ends when its tasks do, not this timer */
    mv_hostmem_check(h); /* before the first task: a host short of memory starts paused */
    return uv_timer_start(&h->timer, timer_cb, interval_ms, interval_ms);
}

void mv_hostmem_close(mv_hostmem_t *h)
{
    if (!h->open)
        return;
    h->open = false;
    uv_close((uv_handle_t *)&h->timer, NULL);
}
