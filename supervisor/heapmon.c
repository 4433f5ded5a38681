/*
 * heapmon: create, read and close a worker's heap counters page; and the two questions the
 * `[leak] heap` setting needs answered before a spawn: can LD_PRELOAD reach this command, and
 * where is the preload library.
 *
 * The page is a memfd: no file system path to clean up, gone when the last fd and mapping
 * are. It is sealed against shrinking (a worker that truncated it would make the
 * supervisor's next read of the mapping fault with SIGBUS) and growing, and then against
 * further seals. The supervisor maps it read-only: it never writes through the mapping, and
 * the one write it makes (a peak reset) goes through the fd. The atomic loads below are plain
 * loads on x86-64 and arm64, so a read-only mapping is enough (a 32-bit x86 build would read
 * 64-bit fields with cmpxchg8b, which needs a writable mapping: not supported).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heapmon.h"
#include "util.h"

#define RELAXED       __ATOMIC_RELAXED
#define READ_TRIES    16
#define SCRIPT_DEPTH  4 /* the kernel's own limit on nested interpreters (BINPRM_MAX_RECURSION) */
#define SHEBANG_MAX   256
#define ELF_PHNUM_MAX 4096

int mv_heapmon_open(mv_heapmon_t *hm)
{
    mvh_page_t head = {.magic = MVH_MAGIC, .version = MVH_VERSION, .size = sizeof head};
    void *p;
    int r;

    hm->fd = memfd_create("memvisor-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    hm->page = NULL;
    if (hm->fd < 0)
        return -errno;
    if (ftruncate(hm->fd, MVH_PAGE_SIZE) < 0 ||
        pwrite(hm->fd, &head, sizeof head, 0) != (ssize_t)sizeof head ||
        fcntl(hm->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail;
    p = mmap(NULL, MVH_PAGE_SIZE, PROT_READ, MAP_SHARED, hm->fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    hm->page = p;
    return 0;
fail:
    r = errno ? -errno : -EIO;
    close(hm->fd);
    hm->fd = -1;
    return r;
}

/* One pass over the page, every field an atomic load. */
static void read_pass(const volatile mvh_page_t *p, mv_heap_reading_t *r)
{
    memset(r, 0, sizeof *r); /* padding too: passes are compared with memcmp */
    r->pid = __atomic_load_n(&p->pid, RELAXED);
    r->generation = __atomic_load_n(&p->generation, RELAXED);
    r->flags = __atomic_load_n(&p->flags, RELAXED);
    r->live_bytes = __atomic_load_n(&p->live_bytes, RELAXED);
    r->mmap_bytes = __atomic_load_n(&p->mmap_bytes, RELAXED);
    r->peak_bytes = __atomic_load_n(&p->peak_bytes, RELAXED);
    r->allocs = __atomic_load_n(&p->allocs, RELAXED);
    r->frees = __atomic_load_n(&p->frees, RELAXED);
    r->reallocs = __atomic_load_n(&p->reallocs, RELAXED);
    r->mmaps = __atomic_load_n(&p->mmaps, RELAXED);
    r->munmaps = __atomic_load_n(&p->munmaps, RELAXED);
}

int mv_heapmon_read(const mv_heapmon_t *hm, mv_heap_reading_t *r)
{
    const volatile mvh_page_t *p = hm->page;
    mv_heap_reading_t again;

    if (!p)
        return -EBADF;
    if (__atomic_load_n(&p->magic, RELAXED) != MVH_MAGIC ||
        __atomic_load_n(&p->version, RELAXED) != MVH_VERSION ||
        __atomic_load_n(&p->size, RELAXED) != sizeof(mvh_page_t))
        return -EPROTO;
    read_pass(p, r);
    if (r->pid == 0)
        return -ENODATA;
    for (int i = 0; i < READ_TRIES; i++) {
        read_pass(p, &again);
        if (memcmp(&again, r, sizeof again) == 0)
            return 0;
        *r = again;
    }
    return -EAGAIN;
}

int mv_heapmon_reset_peak(mv_heapmon_t *hm)
{
    const volatile mvh_page_t *p = hm->page;
    int64_t now;

    if (!p)
        return -EBADF;
    now = __atomic_load_n(&p->live_bytes, RELAXED) + __atomic_load_n(&p->mmap_bytes, RELAXED);
    if (pwrite(hm->fd, &now, sizeof now, offsetof(mvh_page_t, peak_bytes)) != (ssize_t)sizeof now)
        return errno ? -errno : -EIO;
    return 0;
}

void mv_heapmon_close(mv_heapmon_t *hm)
{
    if (hm->page)
        munmap((void *)hm->page, MVH_PAGE_SIZE);
    if (hm->fd >= 0)
        close(hm->fd);
    hm->page = NULL;
    hm->fd = -1;
}

/* ---- is a command dynamically linked ---- */

/* `cmd` as execvp would find it: a path as is, a bare name through $PATH. */
static int find_command(const char *cmd, char *out, size_t cap)
{
    const char *path = getenv("PATH"), *dir, *end;
    struct stat st;

    if (!*cmd)
        return -ENOENT;
    if (strchr(cmd, '/')) {
        if ((size_t)snprintf(out, cap, "%s", cmd) >= cap)
            return -ENAMETOOLONG;
        return access(out, F_OK) == 0 ? 0 : -errno;
    }
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (dir = path;; dir = end + 1) {
        int n;
        end = strchrnul(dir, ':');
        n = end == dir ? snprintf(out, cap, "%s", cmd) /* empty entry: the current dir */
                       : snprintf(out, cap, "%.*s/%s", (int)(end - dir), dir, cmd);
        if (n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
            access(out, X_OK) == 0)
            return 0;
        if (!*end)
            return -ENOENT;
    }
}

/* Whether an ELF has a PT_INTERP; `head` holds its first bytes. 1, 0 or -errno. */
static int elf_has_interp(int fd, const unsigned char *head, size_t n)
{
    const int native = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
    bool is64 = head[EI_CLASS] == ELFCLASS64;
    size_t ehsize = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    size_t phsize = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    unsigned long long phoff;
    unsigned phnum, phent;

    if ((head[EI_CLASS] != ELFCLASS64 && head[EI_CLASS] != ELFCLASS32) || head[EI_DATA] != native ||
        n < ehsize)
        return -ENOEXEC;
    if (is64) {
        const Elf64_Ehdr *eh = (const Elf64_Ehdr *)head;
        phoff = eh->e_phoff, phnum = eh->e_phnum, phent = eh->e_phentsize;
    } else {
        const Elf32_Ehdr *eh = (const Elf32_Ehdr *)head;
        phoff = eh->e_phoff, phnum = eh->e_phnum, phent = eh->e_phentsize;
    }
    if (phnum == 0 || phnum > ELF_PHNUM_MAX || phent != phsize)
        return -ENOEXEC;
    for (unsigned i = 0; i < phnum; i++) {
        union {
            Elf64_Phdr p64;
            Elf32_Phdr p32;
        } ph;
        ssize_t got = pread(fd, &ph, phsize, (off_t)(phoff + (unsigned long long)i * phsize));
        if (got < 0)
            return -errno;
        if ((size_t)got != phsize)
            return -ENOEXEC; /* truncated */
        if ((is64 ? ph.p64.p_type : ph.p32.p_type) == PT_INTERP)
            return 1;
    }
    return 0;
}

/* Whether an ELF carries a sanitizer's runtime (ASan, TSan, MSan, HWASan; linked in, or
 * gcc's shared one): that runtime interposes malloc itself and insists on coming first, so a
 * preloaded counter would abort the process at start. Its init symbol is in the dynamic
 * string table, which linkers place in the file's first pages: 4 MiB are searched. The
 * search is the pool's start's critical path (before any worker's cgroup is asked for): a
 * 64 KiB buffer read again and again, one memmem for the names' common tail, took 1.0 ms of
 * CPU on python3.11's 4 MiB against 3-5 ms for the whole 4 MiB read into a fresh buffer
 * (1,024 page faults) and searched once per name. Chunks overlap by SAN_KEEP bytes, so a name
 * across two chunks is seen whole in the second. */
#define SAN_SCAN  (4u << 20)
#define SAN_CHUNK (64u << 10)
#define SAN_KEEP  16 /* >= the longest name with its NUL ("__hwasan_init", 14) */

/* A whole name, NUL included, in b[0, len): "san_init\0" found, then what comes before it. */
static bool san_name_in(const char *b, size_t len)
{
    static const char *const marks[] = {"__asan_init", "__tsan_init", "__msan_init",
                                        "__hwasan_init"};
    static const char tail[] = "san_init"; /* sizeof: with its NUL */
    const char *p = b, *e = b + len;

    while ((p = memmem(p, (size_t)(e - p), tail, sizeof tail))) {
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
            size_t k = strlen(marks[i]) - (sizeof tail - 1);
            if ((size_t)(p - b) >= k && memcmp(p - k, marks[i], k) == 0)
                return true;
        }
        p++;
    }
    return false;
}

static bool sanitized(int fd)
{
    char *buf = malloc(SAN_KEEP + SAN_CHUNK);
    size_t keep = 0, off = 0;
    bool found = false;
    ssize_t n;

    if (!buf)
        return false;
    while (!found && off < SAN_SCAN &&
           (n = pread(fd, buf + keep, MV_MIN(SAN_CHUNK, SAN_SCAN - off), (off_t)off)) > 0) {
        size_t have = keep + (size_t)n;

        found = san_name_in(buf, have);
        keep = MV_MIN(have, (size_t)SAN_KEEP);
        memmove(buf, buf + have - keep, keep);
        off += (size_t)n;
    }
    free(buf);
    return found;
}

/* Where judge() says which ELF finally runs (NULL: nobody asked), whether a CPython
 * interpreter's name came up on the way (a pyenv shim is a bash script that runs python), and
 * whether that ELF carries a sanitizer's runtime. */
typedef struct judged {
    char *elf;
    size_t cap;
    bool python;
    bool sanitized;
} judged_t;

static bool python_name(const char *path);

static int judge(const char *path, int depth, judged_t *out);

/* The interpreter of a "#!" line (NUL-terminated in line), through `env NAME` too. */
static int judge_script(char *line, int depth, judged_t *out)
{
    char *save = NULL, *interp = strtok_r(line + 2, " \t\r\n", &save), *arg;
    const char *base;
    char found[PATH_MAX];
    int r;

    if (!interp)
        return -ENOEXEC;
    base = strrchr(interp, '/');
    base = base ? base + 1 : interp;
    if (strcmp(base, "env") != 0)
        return judge(interp, depth + 1, out);
    /* #!/usr/bin/env [-S] [-i] [VAR=value]... NAME [ARG]... */
    while ((arg = strtok_r(NULL, " \t\r\n", &save)) && (arg[0] == '-' || strchr(arg, '=')))
        ;
    if (!arg)
        return judge(interp, depth + 1, out); /* `env` alone: it runs nothing of a script */
    if (out && python_name(arg))
        out->python = true;
    r = find_command(arg, found, sizeof found);
    return r < 0 ? r : judge(found, depth + 1, out);
}

static int judge(const char *path, int depth, judged_t *out)
{
    unsigned char head[SHEBANG_MAX + 1];
    ssize_t n;
    int fd, r;

    if (depth > SCRIPT_DEPTH)
        return -ELOOP;
    if (out && python_name(path))
        out->python = true;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = pread(fd, head, SHEBANG_MAX, 0);
    if (n < 0)
        r = -errno;
    else if (n >= 2 && head[0] == '#' && head[1] == '!') {
        head[n] = '\0';
        r = judge_script((char *)head, depth, out);
    } else if ((size_t)n >= EI_NIDENT && memcmp(head, ELFMAG, SELFMAG) == 0) {
        r = elf_has_interp(fd, head, (size_t)n);
        if (r >= 0 && out && out->elf)
            snprintf(out->elf, out->cap, "%s", path);
        if (r > 0 && out)
            out->sanitized = sanitized(fd);
    } else
        r = -ENOEXEC;
    close(fd);
    return r;
}

/* mv_heapmon_probe, whether a python name came up on the way, and whether the ELF carries a
 * sanitizer's runtime. */
static int probe(const char *cmd, char *elf, size_t cap, bool *python, bool *san)
{
    char path[PATH_MAX];
    judged_t out = {elf, cap, false, false};
    int r = find_command(cmd, path, sizeof path);

    if (elf && cap)
        elf[0] = '\0';
    r = r < 0 ? r : judge(path, 0, &out);
    if (python)
        *python = out.python;
    if (san)
        *san = out.sanitized;
    return r;
}

int mv_heapmon_probe(const char *cmd, char *elf, size_t cap)
{
    return probe(cmd, elf, cap, NULL, NULL);
}

int mv_heapmon_dynamic(const char *cmd)
{
    return probe(cmd, NULL, 0, NULL, NULL);
}

/* The directory of the executable `exe` (NULL: this process's), in dir[PATH_MAX]. */
static int exe_dir(const char *exe, char *dir)
{
    char self[PATH_MAX], *slash;
    ssize_t n;

    if (!exe) {
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return -errno;
        self[n] = '\0';
        exe = self;
    }
    if ((size_t)snprintf(dir, PATH_MAX, "%s", exe) >= PATH_MAX)
        return -ENAMETOOLONG;
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    return 0;
}

int mv_heapmon_library(const char *exe, char *buf, size_t cap)
{
    static const char *const where[] = {"", "/../lib"};
    char dir[PATH_MAX], cand[PATH_MAX + 64], real[PATH_MAX];
    int rc = exe_dir(exe, dir);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        snprintf(cand, sizeof cand, "%s%s/libmemvisor-heap.so", dir, where[i]);
        if (access(cand, R_OK) == 0 && realpath(cand, real)) {
            if ((size_t)snprintf(buf, cap, "%s", real) >= cap)
                return -ENAMETOOLONG;
            return 0;
        }
    }
    return -ENOENT;
}

int mv_heapmon_source_python(const char *exe, char *buf, size_t cap)
{
    char dir[PATH_MAX], cand[PATH_MAX + 64], real[PATH_MAX];
    int rc = exe_dir(exe, dir);

    if (rc < 0)
        return rc;
    snprintf(cand, sizeof cand, "%s/../worker-api/python/memvisor_worker.py", dir);
    if (access(cand, R_OK) != 0)
        return -ENOENT;
    snprintf(cand, sizeof cand, "%s/../worker-api/python", dir);
    if (!realpath(cand, real))
        return -errno;
    if ((size_t)snprintf(buf, cap, "%s", real) >= cap)
        return -ENAMETOOLONG;
    return 0;
}

/* ---- the plan ---- */

/* Whether a file name is a CPython interpreter's: python, python3, python3.11, python3.11d. */
static bool python_name(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    if (strncmp(base, "python", 6) != 0)
        return false;
    for (base += 6; *base; base++)
        if (!strchr("0123456789.dmu", *base))
            return false;
    return true;
}

/* The command `env [-opt]... [VAR=value]... NAME ...` runs: NAME; anything else: argv[0]. */
static const char *command_run(char *const *argv)
{
    const char *base = strrchr(argv[0], '/');
    int i = 1;

    base = base ? base + 1 : argv[0];
    if (strcmp(base, "env") != 0)
        return argv[0];
    while (argv[i] && (argv[i][0] == '-' || strchr(argv[i], '=')))
        i++;
    return argv[i] ? argv[i] : argv[0];
}

bool mv_heapmon_python(char *const *argv)
{
    const char *cmd;
    bool python = false;

    if (!argv || !argv[0])
        return false;
    cmd = command_run(argv);
    if (python_name(cmd))
        return true;
    return probe(cmd, NULL, 0, &python, NULL) >= 0 && python;
}

void mv_heapmon_plan(mv_heapmode_t mode, mv_heappy_t py, bool tasks, char *const *argv,
                     const char *self_exe, mv_heapplan_t *plan)
{
    char elf[PATH_MAX];
    const char *cmd;
    bool python = false, san = false;
    int r;

    memset(plan, 0, sizeof *plan);
    if (mode == MV_HEAPMODE_OFF) {
        plan->why = "heap = off";
        return;
    }
    if (mode == MV_HEAPMODE_AUTO && !tasks) {
        plan->why = "no batch tasks to attribute (a service, or protocol none)";
        return;
    }
    if (!argv || !argv[0]) {
        plan->why = "no worker command";
        return;
    }
    cmd = command_run(argv);
    r = probe(cmd, elf, sizeof elf, &python, &san);
    if (r == 0) {
        plan->why = "statically linked: LD_PRELOAD cannot reach it";
        return;
    }
    if (r > 0 && san) {
        plan->why = "built with a sanitizer, whose runtime interposes malloc and must come first";
        return;
    }
    if (r < 0) {
        plan->why = "the command's executable could not be read";
        return;
    }
    if (mv_heapmon_library(self_exe, plan->library, sizeof plan->library) < 0) {
        plan->why = "libmemvisor-heap.so not found next to memvisor or in ../lib";
        return;
    }
    plan->preload = true;
    plan->python = py == MV_HEAPPY_YES || (py == MV_HEAPPY_AUTO && (python_name(cmd) || python));
    plan->why = mode == MV_HEAPMODE_AUTO ? "auto: a dynamically linked worker" : "heap = preload";
}

/* ---- a worker's windows ---- */

void mv_heapwin_init(mv_heapwin_t *hw)
{
    memset(hw, 0, sizeof *hw);
    hw->hm.fd = -1;
}

int mv_heapwin_start(mv_heapwin_t *hw)
{
    mv_heapwin_end(hw);
    return mv_heapmon_open(&hw->hm);
}

void mv_heapwin_open(mv_heapwin_t *hw)
{
    hw->open_ok = hw->hm.page && mv_heapmon_read(&hw->hm, &hw->open) == 0;
}

void mv_heapwin_close(mv_heapwin_t *hw, const struct mvw_heap *rep, mv_heap_task_t *out)
{
    mv_heap_reading_t now;

    memset(out, 0, sizeof *out);
    out->blocks = INT64_MIN;
    out->allocs = out->frees = -1;
    if (hw->hm.page) {
        /* A page that changed owner or generation (an exec) starts from zero: no delta. */
        hw->closed_ok = mv_heapmon_read(&hw->hm, &now) == 0;
        hw->closed = now;
        if (!hw->open_ok || !hw->closed_ok || now.pid != hw->open.pid ||
            now.generation != hw->open.generation)
            return;
        *out = (mv_heap_task_t){true,
                                "preload",
                                mv_heap_total(&hw->open),
                                mv_heap_total(&now),
                                (int64_t)(now.allocs - hw->open.allocs) -
                                    (int64_t)(now.frees - hw->open.frees),
                                (int64_t)(now.allocs - hw->open.allocs),
                                (int64_t)(now.frees - hw->open.frees)};
        return;
    }
    if (!rep || rep->live_bytes < 0) {
        hw->prev.have = false; /* the next answer has no "before" */
        return;
    }
    if (hw->prev.have) {
        out->measured = true;
        out->source = "worker";
        out->before = hw->prev.bytes;
        out->after = rep->live_bytes;
        if (rep->blocks >= 0 && hw->prev.blocks >= 0)
            out->blocks = rep->blocks - hw->prev.blocks;
    }
    hw->prev = (struct mvh_report){rep->live_bytes, rep->blocks, true};
}

void mv_heapwin_begin(mv_heapwin_t *hw, const struct mvw_heap *rep)
{
    if (hw->hm.page)
        return;
    hw->prev = rep && rep->live_bytes >= 0 ? (struct mvh_report){rep->live_bytes, rep->blocks, true}
                                           : (struct mvh_report){0, 0, false};
}

void mv_heapwin_since_close(mv_heapwin_t *hw)
{
    hw->open = hw->closed;
    hw->open_ok = hw->closed_ok;
}

bool mv_heapwin_since_last(mv_heapwin_t *hw, int64_t *last, int64_t *now)
{
    mv_heap_reading_t r;

    if (!hw->hm.page || !hw->closed_ok || mv_heapmon_read(&hw->hm, &r) != 0 ||
        r.pid != hw->closed.pid || r.generation != hw->closed.generation)
        return false;
    *last = mv_heap_total(&hw->closed);
    *now = mv_heap_total(&r);
    return true;
}

void mv_heapwin_end(mv_heapwin_t *hw)
{
    mv_heapmon_close(&hw->hm);
    hw->open_ok = hw->closed_ok = false;
    hw->prev.have = false;
}
