/*
 * runlock: flocks that say a run is alive, and naming who holds one.
 */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

int mv_lock_try(int fd)
{
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
    }
    return 0;
}

/* Whether pid is a running process: not gone, and not a zombie (which holds no files: a lock
 * it took lives on in another holder of the open file, a child that has not exec'd yet). */
static bool running(pid_t pid)
{
    char path[48], buf[256], *p;
    ssize_t n;
    int fd;

    if (kill(pid, 0) < 0 && errno != EPERM)
        return false;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return true; /* no /proc: kill said it exists */
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    p = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold anything */
    return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

int mv_lock_take(int fd, int wait_ms, bool wait_unseen)
{
    int r = mv_lock_try(fd);

    for (int waited = 0; r == -EWOULDBLOCK && waited < wait_ms; waited += 10) {
        pid_t holder = mv_lock_holder(fd);
        /* No holder in /proc/locks may be a lock let go since the try: a dead locker's child
         * that exec'd meanwhile (the usual end of the wait below). Read as "a live run of
         * another namespace", it refused a rerun right after a SIGKILL; so it is tried again
         * first, and only a lock still held is looked up again. */
        if (holder <= 0) {
            r = mv_lock_try(fd);
            if (r != -EWOULDBLOCK)
                break;
            holder = mv_lock_holder(fd);
        }
        /* A live locker keeps its lock for good: no point waiting. One this pid namespace
         * cannot see (0) is a live run of another namespace or a dead locker of this one
         * (its pid freed once reaped: /proc/locks lists it no more, kernel 6.1 fs/locks.c
         * locks_show); only a claim waits to know which (see runlock.h). */
        if (holder > 0 ? running(holder) : !wait_unseen)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        r = mv_lock_try(fd);
    }
    return r;
}

int mv_lock_path(const char *path, int wait_ms)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), r;

    if (fd < 0)
        return -errno;
    r = mv_lock_take(fd, wait_ms, false);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

pid_t mv_lock_parse_holder(const char *text, unsigned dev_major, unsigned dev_minor,
                           unsigned long ino)
{
    /* "1: FLOCK  ADVISORY  WRITE 20981 00:20:54980 0 EOF"; a waiter's line reads
     * "1: -> FLOCK ...". The device numbers are hex (%02x), the inode decimal (fs/locks.c,
     * lock_get_status). */
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        char type[16], mode[16], rw[16];
        unsigned maj, min;
        unsigned long i;
        long pid;

        if (sscanf(p, "%*[0-9]: %15s %15s %15s %ld %x:%x:%lu", type, mode, rw, &pid, &maj, &min,
                   &i) != 7)
            continue;
        if (strcmp(type, "FLOCK") == 0 && maj == dev_major && min == dev_minor && i == ino)
            return pid > 0 ? (pid_t)pid : 0;
    }
    return 0;
}

pid_t mv_lock_holder(int fd)
{
    struct stat st;
    char *text = NULL;
    size_t cap = 0, len = 0;
    ssize_t n;
    pid_t pid = 0;
    int lf;

    if (fstat(fd, &st) < 0)
        return 0;
    lf = open("/proc/locks", O_RDONLY | O_CLOEXEC);
    if (lf < 0)
        return 0;
    /* /proc/locks is a seq_file: read it whole, however long it is. */
    for (;;) {
        if (cap - len < 4096) {
            char *t = realloc(text, cap + 65536);
            if (!t)
                break;
            text = t;
            cap += 65536;
        }
        n = read(lf, text + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(lf);
    if (text) {
        text[len] = '\0';
        pid = mv_lock_parse_holder(text, major(st.st_dev), minor(st.st_dev),
                                   (unsigned long)st.st_ino);
    }
    free(text);
    return pid;
}

void mv_lock_describe(pid_t pid, char *out, size_t n)
{
    char path[64], cmd[160];
    ssize_t len = 0;
    int fd;

    if (pid <= 0) {
        snprintf(out, n, "a process in another pid namespace");
        return;
    }
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        len = read(fd, cmd, sizeof cmd - 1);
        close(fd);
    }
    if (len <= 0) {
        snprintf(out, n, "pid %d", (int)pid);
        return;
    }
    /* argv is NUL-separated: spaces between words, "..." when it was cut. */
    for (ssize_t i = 0; i < len - 1; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[len] = '\0';
    snprintf(out, n, "pid %d (%s%s)", (int)pid, cmd, len == (ssize_t)sizeof cmd - 1 ? "..." : "");
}
