/*
 * libFuzzer target for the configuration loader: a whole INI file (supervisor/config.c with
 * inih, units.c, options.c) and `-o SECTION.KEY=VALUE` overrides, through mv_config_build as
 * `memvisor run -c FILE -o ...` calls it, then mv_config_print as `memvisor check` does.
 *
 * Input: the INI text; after a "\n\x01\n" marker, one override per line (at most 16). The
 * file is a memfd, so the loader reads it with its own fopen like any path.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define MAX_OVERRIDES 16

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int fd = -1;
    static FILE *devnull;
    const uint8_t *mark = memmem(d, n, "\n\x01\n", 3);
    const char *ov[MAX_OVERRIDES];
    size_t ini_len = mark ? (size_t)(mark - d) + 1 : n;
    char path[64], *ovbuf = NULL;
    mv_config_t c;
    mv_errors_t errs;
    int nov = 0;

    if (fd < 0) {
        fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
        devnull = fopen("/dev/null", "w");
        if (fd < 0 || !devnull)
            abort();
    }
    if (mark) {
        size_t rest = n - ini_len - 2;

        ovbuf = malloc(rest + 1);
        memcpy(ovbuf, mark + 3, rest);
        ovbuf[rest] = '\0';
        for (char *s = ovbuf, *e; s && *s && nov < MAX_OVERRIDES; s = e) {
            e = strchr(s, '\n');
            if (e)
                *e++ = '\0';
            ov[nov++] = s;
        }
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, d, ini_len, 0) != (ssize_t)ini_len)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    memset(&c, 0, sizeof c);
    memset(&errs, 0, sizeof errs);
    if (mv_config_build(&c, path, ov, nov, &errs) == 0)
        mv_config_print(&c, devnull);
    else
        mv_errors_print(&errs, devnull);
    mv_config_free(&c);
    mv_errors_free(&errs);
    free(ovbuf);
    return 0;
}
