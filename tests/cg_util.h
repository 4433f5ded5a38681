/*
 * cg_util: v1 cgroup shorthands shared by the cgroup and cgahead suites
 * (tests/check_cgroup.c, tests/check_cgahead.c). Header-only, static inline, so each suite
 * stays one file.
 */
#ifndef MV_TEST_CG_UTIL_H
#define MV_TEST_CG_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"

#ifndef MiB
#define MiB (1024 * 1024)
#endif

/* Whether this machine gives us a writable v1 memory cgroup; says why not otherwise. */
static inline bool v1_here(mv_cg_t *cg, int64_t soft, int64_t hard)
{
    mv_cg_opts_t o = {
        .mode = MV_CGMODE_V1, .parent = "", .soft = soft, .hard = hard, .enforce = true};
    char why[512];

    if (mv_cg_setup(cg, &o, why, sizeof why) < 0) {
        fprintf(stderr, "check_cgroup: skipped, no writable v1 memory cgroup here: %s\n", why);
        return false;
    }
    return true;
}

/* A child that joins the cgroup, allocates `mib` and waits for a byte on `go`. */
static inline pid_t child_in(mv_cgw_t *w, int mib, int ready, int go)
{
    pid_t pid = fork();

    if (pid == 0) {
        char c;
        if (write(w->procs_fd, "0", 1) != 1)
            _exit(3);
        volatile char *p = malloc((size_t)mib * MiB);
        for (long i = 0; p && i < (long)mib * MiB; i += 4096)
            p[i] = 1;
        if (write(ready, "r", 1) != 1 || read(go, &c, 1) < 0)
            _exit(4);
        _exit(0);
    }
    return pid;
}

/* Lets a child_in go and reaps it. */
static inline void child_done(pid_t pid, int go)
{
    int st;

    ck_assert_int_eq(write(go, "g", 1), 1);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

#endif
