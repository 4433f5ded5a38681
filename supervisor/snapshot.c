/*
 * snapshot: kernel views of a worker's memory, for the thread pool.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Reads a whole /proc or cgroup file (they are small, except smaps). NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    mv_buf_t b = {0};
    ssize_t n;

    if (fd < 0)
        return NULL;
    for (;;) {
        if (mv_buf_reserve(&b, 65536) < 0)
            break;
        n = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        b.len += (size_t)n;
    }
    close(fd);
    if (!b.data || b.len == 0) {
        mv_buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    if (len)
        *len = b.len;
    return (char *)b.data;
}

json_t *mv_snap_parse_kb(const char *text)
{
    json_t *o = json_object();
    char key[64];
    long long v;
    int used;

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        /* "VmRSS:	   1234 kB" -> bytes; "Threads:	3" -> a count. */
        if (sscanf(p, "%63[^:]: %lld%n", key, &v, &used) == 2) {
            const char *unit = p + used;
            while (*unit == ' ')
                unit++;
            json_object_set_new(o, key, json_integer(strncmp(unit, "kB", 2) == 0 ? v * 1024 : v));
        }
    }
    return o;
}

json_t *mv_snap_parse_kv(const char *text)
{
    json_t *o = json_object();
    char key[64];
    long long v;

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (sscanf(p, "%63s %lld", key, &v) == 2)
            json_object_set_new(o, key, json_integer(v));
    return o;
}

/* The name of a smaps mapping header line ("[heap]", a path, or "[anon]"); NULL if the line
 * is not a header. */
static const char *mapping_name(const char *line, char *name, size_t n)
{
    char range[64], perms[8];
    int used = 0;

    /* "55d0..-55d0.. rw-p 00000000 00:00 0      [heap]": 6 fields, the last one optional */
    if (sscanf(line, "%63s %7s %*s %*s %*s%n", range, perms, &used) != 2 || !strchr(range, '-'))
        return NULL;
    line += used;
    while (*line == ' ' || *line == '\t')
        line++;
    size_t len = strcspn(line, "\n");
    if (len == 0)
        snprintf(name, n, "[anon]");
    else
        snprintf(name, n, "%.*s", (int)len, line);
    return name;
}

json_t *mv_snap_mappings(int pid)
{
    char path[64], name[512] = "", *line = NULL;
    size_t cap = 0;
    bool any = false;
    long long kb;
    json_t *o;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    /* Line by line: a worker's smaps is 100-300 KiB of text, and a thread-pool thread that
     * read it whole for each worker's baseline (four at a time at a pool's start) kept that
     * much mapped each (bench/footprint). */
    f = fopen(path, "re");
    if (!f)
        return NULL;
    o = json_object();
    while (o && getline(&line, &cap, f) > 0) {
        any = true;
        if (sscanf(line, "Rss: %lld kB", &kb) == 1 && *name) {
            json_t *cur = json_object_get(o, name);
            json_object_set_new(o, name, json_integer(json_integer_value(cur) + kb * 1024));
        } else {
            mapping_name(line, name, sizeof name); /* a header line, or nothing */
        }
    }
    free(line);
    fclose(f);
    if (!any) { /* gone: an empty file, as a whole read found it */
        json_decref(o);
        o = NULL;
    }
    return o;
}

static int by_growth_desc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "growth"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "growth"));
    return (y > x) - (y < x);
}

json_t *mv_snap_growth(json_t *then, json_t *now, size_t top)
{
    json_t *all = json_array(), *out = json_array(), *v;
    const char *name;
    json_t **rows;
    size_t n = 0;

    json_object_foreach(now, name, v)
    {
        json_int_t before = json_integer_value(json_object_get(then, name));
        json_int_t after = json_integer_value(v);
        if (after > before)
            json_array_append_new(all,
                                  json_pack("{s:s, s:I, s:I, s:I}", "mapping", name, "rss_then",
                                            before, "rss_now", after, "growth", after - before));
    }
    rows = calloc(json_array_size(all) + 1, sizeof *rows);
    json_array_foreach(all, n, v) rows[n] = v;
    n = json_array_size(all);
    qsort(rows, n, sizeof *rows, by_growth_desc);
    for (size_t i = 0; i < n && i < top; i++)
        json_array_append(out, rows[i]);
    free(rows);
    json_decref(all);
    return out;
}

json_t *mv_snap_excerpt(const void *p, size_t n, size_t max, int *b64)
{
    const unsigned char *s = p;
    char *enc;
    json_t *j;

    if (n > max) {
        n = max;
        /* Cut on a character boundary: back off continuation bytes. */
        while (n > 0 && (s[n] & 0xc0) == 0x80)
            n--;
    }
    if (mv_utf8_valid(s, n)) {
        *b64 = 0;
        return json_stringn((const char *)s, n);
    }
    *b64 = 1;
    enc = mv_base64(s, n);
    j = json_string(enc ? enc : "");
    free(enc);
    return j;
}

/* Sets `key` to a parsed file, or null. */
static void put_file(json_t *doc, const char *key, const char *path, bool kb)
{
    char *text = slurp(path, NULL);

    json_object_set_new(doc, key,
                        !text ? json_null()
                        : kb  ? mv_snap_parse_kb(text)
                              : mv_snap_parse_kv(text));
    free(text);
}

int mv_snap_collect(json_t *doc, int pid, const char *cgroup_dir, json_t *baseline)
{
    char path[4200];
    struct stat st;
    json_t *status, *now;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    put_file(doc, "status", path, true);
    status = json_object_get(doc, "status");
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    if (json_is_object(status) && stat(path, &st) == 0)
        json_object_set_new(status, "fds", json_integer((json_int_t)st.st_size));
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    put_file(doc, "smaps_rollup", path, true);
    if (cgroup_dir) {
        snprintf(path, sizeof path, "%s/memory.stat", cgroup_dir);
        put_file(doc, "memory_stat", path, false);
    } else {
        json_object_set_new(doc, "memory_stat", json_null());
    }
    now = mv_snap_mappings(pid);
    json_object_set_new(doc, "mappings_growth",
                        now && baseline ? mv_snap_growth(baseline, now, 10) : json_null());
    json_decref(now);
    return json_is_object(status) ? 0 : -ESRCH;
}

char *mv_snap_pack(json_t *mappings)
{
    size_t size = sizeof(uint64_t), at = sizeof(uint64_t);
    uint64_t n = 0;
    const char *name;
    json_t *v;
    char *p;

    if (!json_is_object(mappings))
        return NULL;
    json_object_foreach(mappings, name, v) size += sizeof(int64_t) + strlen(name) + 1;
    if (!(p = malloc(size)))
        return NULL;
    json_object_foreach(mappings, name, v)
    {
        int64_t bytes = json_integer_value(v);
        size_t len = strlen(name) + 1;
        memcpy(p + at, &bytes, sizeof bytes);
        memcpy(p + at + sizeof bytes, name, len);
        at += sizeof bytes + len;
        n++;
    }
    memcpy(p, &n, sizeof n);
    return p;
}

json_t *mv_snap_unpack(const char *packed)
{
    size_t at = sizeof(uint64_t);
    uint64_t n;
    json_t *o;

    if (!packed || !(o = json_object()))
        return NULL;
    memcpy(&n, packed, sizeof n);
    for (uint64_t i = 0; i < n; i++) {
        int64_t bytes;
        const char *name = packed + at + sizeof bytes;
        memcpy(&bytes, packed + at, sizeof bytes);
        if (json_object_set_new(o, name, json_integer(bytes)) < 0) {
            json_decref(o);
            return NULL;
        }
        at += sizeof bytes + strlen(name) + 1;
    }
    return o;
}
