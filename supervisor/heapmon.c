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

static int judge(const char *path, int depth);

/* The interpreter of a "#!" line (NUL-terminated in line), through `env NAME` too. */
static int judge_script(char *line, int depth)
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
        return judge(interp, depth + 1);
    /* #!/usr/bin/env [-S] [-i] [VAR=value]... NAME [ARG]... */
    while ((arg = strtok_r(NULL, " \t\r\n", &save)) && (arg[0] == '-' || strchr(arg, '=')))
        ;
    if (!arg)
        return judge(interp, depth + 1); /* `env` alone: it runs nothing of a script */
    r = find_command(arg, found, sizeof found);
    return r < 0 ? r : judge(found, depth + 1);
}

static int judge(const char *path, int depth)
{
    unsigned char head[SHEBANG_MAX + 1];
    ssize_t n;
    int fd, r;

    if (depth > SCRIPT_DEPTH)
        return -ELOOP;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = pread(fd, head, SHEBANG_MAX, 0);
    if (n < 0)
        r = -errno;
    else if (n >= 2 && head[0] == '#' && head[1] == '!') {
        head[n] = '\0';
        r = judge_script((char *)head, depth);
    } else if ((size_t)n >= EI_NIDENT && memcmp(head, ELFMAG, SELFMAG) == 0)
        r = elf_has_interp(fd, head, (size_t)n);
    else
        r = -ENOEXEC;
    close(fd);
    return r;
}

int mv_heapmon_dynamic(const char *cmd)
{
    char path[PATH_MAX];
    int r = find_command(cmd, path, sizeof path);

    return r < 0 ? r : judge(path, 0);
}

int mv_heapmon_library(const char *exe, char *buf, size_t cap)
{
    static const char *const where[] = {"", "/../lib"};
    char self[PATH_MAX], dir[PATH_MAX], cand[PATH_MAX + 64], real[PATH_MAX];
    char *slash;
    ssize_t n;

    if (!exe) {
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return -errno;
        self[n] = '\0';
        exe = self;
    }
    if ((size_t)snprintf(dir, sizeof dir, "%s", exe) >= sizeof dir)
        return -ENAMETOOLONG;
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
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
