/*
 * cgroup: parsers, libcgroup error text, the v2 path on a fixture tree in the cgroup2 file
 * layout (this machine has no v2 memory controller), and the v1 path on the real kernel.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "cg_util.h"
#include "cgroup.h"
#include "stale.h"
#include "suites.h"

#define MiB (1024 * 1024)

/* ---- helpers ---- */

static void put(const char *dir, const char *name, const char *text)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "fixture %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static char *get(const char *dir, const char *name)
{
    static char buf[1024];
    char path[1024];
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "fixture %s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void mkdirs(const char *path)
{
    char tmp[1024];

    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* ---- parsers ---- */

START_TEST(proc_cgroup_lines)
{
    const char *hybrid = "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n";
    const char *v2 = "0::/system.slice/memvisor.service\n";
    char *p = NULL;

    ck_assert_int_eq(mv_cg_parse_proc_cgroup(hybrid, MV_CG_V1, &p), 0);
    ck_assert_str_eq(p, "/process_api/abc");
    free(p);
    ck_assert_int_eq(mv_cg_parse_proc_cgroup(hybrid, MV_CG_V2, &p), 0);
    ck_assert_str_eq(p, "/");
    free(p);
    ck_assert_int_eq(mv_cg_parse_proc_cgroup(v2, MV_CG_V2, &p), 0);
    ck_assert_str_eq(p, "/system.slice/memvisor.service");
    free(p);
    ck_assert_int_eq(mv_cg_parse_proc_cgroup(v2, MV_CG_V1, &p), -ENOENT);
    ck_assert_int_eq(mv_cg_parse_proc_cgroup("garbage", MV_CG_V1, &p), -EINVAL);
    ck_assert_int_eq(mv_cg_parse_proc_cgroup("3:cpu,memory:/a\n", MV_CG_V1, &p), 0);
    ck_assert_str_eq(p, "/a");
    free(p);
}
END_TEST

/* A worker's cgroup holds a process that /proc/PID/cgroup places in it or in a cgroup inside
 * it (seen from the root or from a cgroup namespace inside), not one moved beside, above or to
 * a cgroup whose name only begins like it. */
START_TEST(a_cgroup_holds_what_is_in_it_or_inside_it)
{
    const char *w = "/sys/fs/cgroup/memory/process_api/abc/memvisor-7/w1.2";

    ck_assert(mv_cg_path_holds(w, "/process_api/abc/memvisor-7/w1.2"));
    ck_assert(mv_cg_path_holds(w, "/memvisor-7/w1.2")); /* a namespace's view */
    ck_assert(mv_cg_path_holds(w, "/process_api/abc/memvisor-7/w1.2/self"));
    ck_assert(mv_cg_path_holds(w, "/process_api/abc/memvisor-7/w1.2/sub/inner"));
    ck_assert(!mv_cg_path_holds(w, "/process_api/abc/memvisor-7/w1.3"));
    ck_assert(!mv_cg_path_holds(w, "/process_api/abc/memvisor-7"));
    ck_assert(!mv_cg_path_holds(w, "/process_api/abc/memvisor-7/w1.23"));
    ck_assert(!mv_cg_path_holds(w, "/process_api/abc/memvisor-7/x/w1.2x"));
    ck_assert(!mv_cg_path_holds(w, "/elsewhere"));
    ck_assert(!mv_cg_path_holds(w, "/"));
    ck_assert(!mv_cg_path_holds(w, ""));
}
END_TEST

START_TEST(memory_stat_keys)
{
    const char *v1 = "cache 1933312\nrss 2347008\nrss_huge 0\ntotal_rss 9\n";
    int64_t v;

    ck_assert_int_eq(mv_cg_parse_stat(v1, "rss", &v), 0);
    ck_assert_int_eq(v, 2347008); /* not rss_huge, not total_rss */
    ck_assert_int_eq(mv_cg_parse_stat(v1, "rss_huge", &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(mv_cg_parse_stat("anon 12\nfile 3\n", "file", &v), 0);
    ck_assert_int_eq(v, 3);
    ck_assert_int_eq(mv_cg_parse_stat("anon x\n", "anon", &v), -EINVAL);
    ck_assert_int_eq(mv_cg_parse_stat("anon 1\n", "oom_kill", &v), -ENOENT);
}
END_TEST

START_TEST(libcgroup_errors_without_its_bugs)
{
    /* 2.0.2 crashes on ECGNONEMPTY (50030) and is off by one from 50022 on (ECGEOF is
     * 50023): both must be safe. Numbers, so that only cgroup.c includes libcgroup.h. */
    ck_assert_str_eq(mv_cg_strerror(50030), "cgroup is not empty");
    ck_assert_str_eq(mv_cg_strerror(50023), "end of file or iterator");
    ck_assert_ptr_nonnull(mv_cg_strerror(50002));
    ck_assert_ptr_nonnull(mv_cg_strerror(60000));
}
END_TEST

/* ---- v2 on a fixture tree ---- */

typedef struct fixture {
    char root[64];
    char svc[128], run[160], w11[192];
    char proc_cgroup[128], mountinfo[128];
} fixture_t;

/* A delegated v2 subtree: <root> is the cgroup2 mount, memvisor lives in /svc. */
static void make_v2(fixture_t *f, pid_t pid)
{
    char text[512];

    strcpy(f->root, "/tmp/mv-cgv2-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->root));
    snprintf(f->svc, sizeof f->svc, "%s/svc", f->root);
    snprintf(f->run, sizeof f->run, "%s/memvisor-%d", f->svc, (int)pid);
    snprintf(f->w11, sizeof f->w11, "%s/w1.1", f->run);
    snprintf(f->proc_cgroup, sizeof f->proc_cgroup, "%s/proc-cgroup", f->root);
    snprintf(f->mountinfo, sizeof f->mountinfo, "%s/mountinfo", f->root);
    mkdirs(f->w11);
    mkdirs(f->svc);
    put(f->root, "proc-cgroup", "0::/svc\n");
    snprintf(text, sizeof text,
             "24 30 0:22 / /proc rw - proc proc rw\n"
             "30 1 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
             f->root);
    put(f->root, "mountinfo", text);
    put(f->svc, "cgroup.controllers", "cpu io memory pids\n");
    put(f->svc, "cgroup.subtree_control", "");
    put(f->svc, "cgroup.procs", "");
    mkdir(f->run, 0755);
    put(f->run, "cgroup.subtree_control", "");
    /* What the kernel would make in the worker cgroup (written files start empty: a plain
     * file, unlike a kernel one, keeps what a shorter write did not overwrite). */
    put(f->w11, "cgroup.procs", "");
    put(f->w11, "memory.max", "");
    put(f->w11, "memory.high", "");
    put(f->w11, "memory.swap.max", "");
    put(f->w11, "memory.oom.group", "");
    put(f->w11, "memory.current", "1048576\n");
    put(f->w11, "memory.stat", "anon 524288\nfile 262144\nkernel 8192\n");
    put(f->w11, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    put(f->w11, "memory.peak", "2097152\n");
}

START_TEST(v2_setup_vacates_enables_and_restores)
{
    fixture_t f;
    mv_cg_t cg;
    mv_cg_opts_t o = {.mode = MV_CGMODE_V2,
                      .parent = "",
                      .soft = 16 * MiB,
                      .hard = 32 * MiB,
                      .enforce = true,
                      .pid = 4242};
    char why[512], sup[256];

    make_v2(&f, 4242);
    snprintf(sup, sizeof sup, "%s/supervisor", f.svc);
    mkdir(sup, 0755);
    put(sup, "cgroup.procs", "");
    o.proc_cgroup = f.proc_cgroup;
    o.mountinfo = f.mountinfo;
    ck_assert_msg(mv_cg_setup(&cg, &o, why, sizeof why) == 0, "setup: %s", why);
    ck_assert_int_eq(cg.version, MV_CG_V2);
    ck_assert_str_eq(cg.base, f.svc);
    ck_assert_str_eq(cg.run, f.run);
    /* memvisor moved itself to a leaf, then offered memory to the children of /svc. */
    ck_assert_str_eq(get(sup, "cgroup.procs"), "0");
    ck_assert_str_eq(get(f.svc, "cgroup.subtree_control"), "+memory");
    ck_assert_str_eq(get(f.run, "cgroup.subtree_control"), "+memory");
    ck_assert_ptr_nonnull(strstr(cg.desc, "cgroup v2"));

    /* Teardown undoes it in reverse. (A kernel cgroup directory can be removed with its
     * control files in it; a fixture one must be emptied first.) */
    nftw(f.run, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    unlink(strcat(strcpy(why, sup), "/cgroup.procs"));
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
    ck_assert_str_eq(get(f.svc, "cgroup.subtree_control"), "-memory");
    ck_assert_str_eq(get(f.svc, "cgroup.procs"), "0"); /* moved back */
    ck_assert_int_eq(access(sup, F_OK), -1);
    nftw(f.root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(v2_without_the_memory_controller)
{
    fixture_t f;
    mv_cg_t cg;
    mv_cg_opts_t o = {.mode = MV_CGMODE_V2, .parent = "", .pid = 4242};
    char why[512];

    make_v2(&f, 4242);
    put(f.svc, "cgroup.controllers", "cpu pids\n");
    o.proc_cgroup = f.proc_cgroup;
    o.mountinfo = f.mountinfo;
    ck_assert_int_lt(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_ptr_nonnull(strstr(why, "memory controller is not available"));
    /* auto falls back to sampling, with the reason. */
    o.mode = MV_CGMODE_AUTO;
    ck_assert_int_eq(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_int_eq(cg.version, MV_CG_OFF);
    ck_assert_ptr_nonnull(strstr(cg.desc, "sampling"));
    /* On a pure v2 host v1 has nothing to say but "no v1 memory cgroup": v2's reason is the
     * one the log must give (it said only v1's). */
    ck_assert_msg(strstr(why, "v2: the memory controller is not available") != NULL, "%s", why);
    ck_assert_msg(strstr(why, "v1: no v1 memory cgroup") != NULL, "%s", why);
    /* A cgroup_parent that does not exist is said to be missing (it was reported as a cgroup
     * without the memory controller). */
    o.mode = MV_CGMODE_V2;
    o.parent = "/no/such";
    ck_assert_int_eq(mv_cg_setup(&cg, &o, why, sizeof why), -ENOENT);
    ck_assert_msg(strstr(why, "/no/such is not a cgroup ([supervisor] cgroup_parent)") != NULL,
                  "%s", why);
    nftw(f.root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* make_v2, and options that read its /proc/self/cgroup and mountinfo. */
static void make_v2_opts(fixture_t *f, mv_cg_opts_t *o)
{
    make_v2(f, o->pid);
    o->proc_cgroup = f->proc_cgroup;
    o->mountinfo = f->mountinfo;
}

/* In a cgroup namespace that kept the host's cgroup2 mount, /proc/self/cgroup says "/" (the
 * namespace's root) and the mount's root reads "/..": memvisor's cgroup is somewhere below
 * the mount, not at its root. It took the mount's root for its own, moved itself into
 * <mount>/supervisor (out of its cgroup) and made its run there (the 6.12 guest). It now
 * refuses v2 and touches nothing. */
START_TEST(v2_a_mount_above_the_cgroup_namespace_is_refused)
{
    fixture_t f;
    mv_cg_t cg;
    mv_cg_opts_t o = {.mode = MV_CGMODE_V2, .parent = "", .pid = 4242};
    char why[512], text[512], sup[256];

    make_v2_opts(&f, &o);
    put(f.root, "proc-cgroup", "0::/\n");
    snprintf(text, sizeof text, "30 1 0:26 /.. %s rw,nosuid - cgroup2 cgroup2 rw\n", f.root);
    put(f.root, "mountinfo", text);
    /* What the old code needed to move into <mount>/supervisor and make its run there. */
    put(f.root, "cgroup.controllers", "memory\n");
    put(f.root, "cgroup.subtree_control", "");
    snprintf(sup, sizeof sup, "%s/supervisor", f.root);
    mkdir(sup, 0755);
    put(sup, "cgroup.procs", "");
    ck_assert_int_lt(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "is not under the cgroup2 mount") != NULL, "%s", why);
    ck_assert_str_eq(get(sup, "cgroup.procs"), "");
    ck_assert_str_eq(get(f.root, "cgroup.subtree_control"), "");
    /* A bind mount of a subtree that does not hold memvisor's cgroup: refused as well. */
    put(f.root, "proc-cgroup", "0::/svcx/a\n");
    snprintf(text, sizeof text, "30 1 0:26 /svc %s rw,nosuid - cgroup2 cgroup2 rw\n", f.root);
    put(f.root, "mountinfo", text);
    ck_assert_int_lt(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "is not under the cgroup2 mount") != NULL, "%s", why);
    /* One that does: memvisor's cgroup is found below the mount (/svc/x is <mount>/x). */
    put(f.root, "proc-cgroup", "0::/svc/x\n");
    ck_assert_int_lt(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "/x is not a cgroup") != NULL && strstr(why, "/svc/x") == NULL, "%s",
                  why);
    nftw(f.root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(v2_worker_cgroup_limits_readings_events)
{
    fixture_t f;
    mv_cg_t cg;
    mv_cgw_t w;
    mv_cg_reading_t r;
    mv_cg_opts_t o = {.mode = MV_CGMODE_V2,
                      .parent = "/svc",
                      .soft = 16 * MiB,
                      .hard = 32 * MiB,
                      .enforce = true,
                      .pid = 4242};
    char why[512];
    uint64_t ooms = 9;

    make_v2(&f, 4242);
    o.proc_cgroup = f.proc_cgroup;
    o.mountinfo = f.mountinfo;
    /* cgroup_parent names the base: memvisor does not move itself then. */
    put(f.root, "proc-cgroup", "0::/elsewhere\n");
    ck_assert_msg(mv_cg_setup(&cg, &o, why, sizeof why) == 0, "setup: %s", why);
    ck_assert_ptr_null(cg.vacated);
    ck_assert_msg(mv_cg_create(&cg, 1, 1, &w, why, sizeof why) == 0, "create: %s", why);
    ck_assert_str_eq(w.path, f.w11);
    ck_assert_str_eq(get(f.w11, "memory.max"), "33554432");
    ck_assert_str_eq(get(f.w11, "memory.high"), "16777216");
    ck_assert_str_eq(get(f.w11, "memory.swap.max"), "0");
    ck_assert_str_eq(get(f.w11, "memory.oom.group"), "1");
    ck_assert_int_ge(w.procs_fd, 0);
    ck_assert_int_eq(w.notify_fd, w.events_fd); /* v2 polls memory.events itself */
    ck_assert(w.peak_kernel);

    put(f.w11, "memory.peak", "3145728\n");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_eq(r.usage, 1048576);
    ck_assert_int_eq(r.anon, 524288);
    ck_assert_int_eq(r.peak, 3145728);
    /* usage unchanged: memory.stat is not read again (its new value is not seen yet). */
    put(f.w11, "memory.stat", "anon 999\n");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_eq(r.anon, 524288);
    put(f.w11, "memory.current", "2097152\n");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_eq(r.anon, 999);

    ck_assert_int_eq(mv_cg_notified(&w), 0);
    /* A "high" event while usage is under the soft limit again (the kernel reclaimed page
     * cache at memory.high): said, but memory.high stays armed for the next crossing. */
    put(f.w11, "memory.high", "");
    put(f.w11, "memory.events", "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    ck_assert_int_eq(mv_cg_notified(&w), 0); /* consumed */
    ck_assert_str_eq(get(f.w11, "memory.high"), "");
    /* Over it: lifted at once, so that the task is not throttled... */
    put(f.w11, "memory.current", "20971520\n");
    put(f.w11, "memory.events", "low 0\nhigh 4\nmax 0\noom 0\noom_kill 0\n");
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    ck_assert_str_eq(get(f.w11, "memory.high"), "max");
    put(f.w11, "memory.high", "");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_str_eq(get(f.w11, "memory.high"), ""); /* still over: stays lifted */
    /* ...and armed again by the first reading under it. */
    put(f.w11, "memory.current", "16777215\n");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_str_eq(get(f.w11, "memory.high"), "16777216");
    put(f.w11, "memory.high", "");
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_str_eq(get(f.w11, "memory.high"), ""); /* once */
    ck_assert_int_eq(mv_cg_oom_kills(&w, &ooms), 0);
    ck_assert_uint_eq(ooms, 0);
    put(f.w11, "memory.events", "low 0\nhigh 4\nmax 1\noom 1\noom_kill 1\n");
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_OOM);
    ck_assert_int_eq(mv_cg_oom_kills(&w, &ooms), 0);
    ck_assert_uint_eq(ooms, 1);
    mv_cg_close(&w);
    ck_assert_int_eq(w.usage_fd, -1);
    nftw(f.root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    mv_cg_teardown(&cg, why, sizeof why);
}
END_TEST

START_TEST(v2_read_only_peak_is_sampled)
{
    fixture_t f;
    mv_cg_t cg;
    mv_cgw_t w;
    mv_cg_opts_t o = {
        .mode = MV_CGMODE_V2, .parent = "/svc", .hard = 32 * MiB, .enforce = true, .pid = 4242};
    char why[512], peak[256];

    make_v2(&f, 4242);
    o.proc_cgroup = f.proc_cgroup;
    o.mountinfo = f.mountinfo;
    /* Before 5.19 there is no memory.peak, before 6.12 it cannot be reset: either way the
     * peak is tracked from samples. */
    snprintf(peak, sizeof peak, "%s/memory.peak", f.w11);
    unlink(peak);
    put(f.root, "proc-cgroup", "0::/elsewhere\n");
    ck_assert_int_eq(mv_cg_setup(&cg, &o, why, sizeof why), 0);
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    ck_assert(!w.peak_kernel);
    mv_cg_close(&w);
    nftw(f.root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    mv_cg_teardown(&cg, why, sizeof why);
}
END_TEST

/* ---- v1 on the real kernel ---- */

START_TEST(v1_worker_cgroup_on_the_kernel)
{
    mv_cg_t cg;
    mv_cgw_t w;
    mv_cg_reading_t r;
    int ready[2], go[2], st;
    char why[512], link[512], c;
    pid_t pid;
    struct pollfd pfd;

    if (!v1_here(&cg, 4 * MiB, 64 * MiB))
        return;
    ck_assert_int_eq(cg.version, MV_CG_V1);
    ck_assert_msg(mv_cg_create(&cg, 3, 7, &w, why, sizeof why) == 0, "create: %s", why);
    ck_assert_ptr_nonnull(strstr(w.path, "/w3.7"));
    ck_assert_int_ge(w.notify_fd, 0); /* the soft-limit threshold eventfd */
    /* A new child joins through "tasks": moving its one thread skips the lock whose write
     * side waits for an RCU grace period (cgroup.c); child_in below lands in the cgroup. */
    snprintf(why, sizeof why, "/proc/self/fd/%d", w.procs_fd);
    ssize_t len = readlink(why, link, sizeof link - 1);
    ck_assert_int_gt(len, 6);
    link[len] = '\0';
    ck_assert_str_eq(link + len - 6, "/tasks");
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 8, ready[1], go[0]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_ge(r.usage, 8 * MiB);
    ck_assert_int_ge(r.anon, 7 * MiB);
    ck_assert_int_ge(r.peak, 8 * MiB);
    /* Crossing the 4 MiB soft limit raised the threshold eventfd. */
    pfd = (struct pollfd){.fd = w.notify_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    /* A new peak window starts at the current usage. */
    ck_assert_int_eq(mv_cg_reset_peak(&w), 0);
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_le(r.peak, r.usage + 512 * 1024);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    waitpid(pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *path = strdup(w.path);
    mv_cg_close(&w);
    ck_assert_int_eq(mv_cg_remove(MV_CG_V1, path, why, sizeof why), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
    free(path);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
}
END_TEST

START_TEST(v1_oom_kill_is_counted_and_stays_inside)
{
    mv_cg_t cg;
    mv_cgw_t w;
    int ready[2], go[2], st;
    char why[512];
    uint64_t n = 0;
    pid_t pid;

    if (!v1_here(&cg, 0, 16 * MiB))
        return;
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 64, ready[1], go[0]); /* 64 MiB into a 16 MiB cgroup */
    waitpid(pid, &st, 0);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_int_eq(mv_cg_oom_kills(&w, &n), 0);
    ck_assert_uint_ge(n, 1);
    char *path = strdup(w.path);
    mv_cg_close(&w);
    ck_assert_int_eq(mv_cg_remove(MV_CG_V1, path, why, sizeof why), 0);
    free(path);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
}
END_TEST

START_TEST(v1_leftover_children_are_killed_on_removal)
{
    mv_cg_t cg;
    mv_cgw_t w;
    int ready[2], go[2];
    char why[512], c;
    pid_t pid;

    if (!v1_here(&cg, 0, 0))
        return;
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 1, ready[1], go[0]); /* stays, like a worker's forgotten child */
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    char *path = strdup(w.path);
    mv_cg_close(&w);
    ck_assert_int_eq(mv_cg_remove(MV_CG_V1, path, why, sizeof why), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
    waitpid(pid, NULL, 0);
    free(path);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
}
END_TEST

/* A patient removal (a template's cgroup) lets a process that is leaving by itself go: a
 * worker it forked last, still moving itself into its own cgroup. The plain one kills it
 * (above). */
START_TEST(v1_a_patient_removal_lets_a_leaving_process_go)
{
    mv_cg_t cg;
    mv_cgw_t w, next;
    int ready[2], go[2], st;
    char why[512], c, *path;
    pid_t pid;

    if (!v1_here(&cg, 0, 0))
        return;
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    ck_assert_int_eq(mv_cg_create(&cg, 2, 1, &next, why, sizeof why), 0);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    if (pid == 0) { /* born in w, it moves to `next` 50 ms later */
        if (write(w.procs_fd, "0", 1) != 1 || write(ready[1], "r", 1) != 1)
            _exit(3);
        usleep(50 * 1000);
        if (write(next.procs_fd, "0", 1) != 1 || read(go[0], &c, 1) < 0)
            _exit(4);
        _exit(0);
    }
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    path = strdup(w.path);
    mv_cg_close(&w);
    ck_assert_int_eq(mv_cg_remove_patient(MV_CG_V1, path, 1000, why, sizeof why), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(kill(pid, 0), 0); /* alive, in its own cgroup now */
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(path);
    path = strdup(next.path);
    mv_cg_close(&next);
    ck_assert_int_eq(mv_cg_remove(MV_CG_V1, path, why, sizeof why), 0);
    free(path);
    for (int i = 0; i < 4; i++)
        close(i < 2 ? ready[i] : go[i - 2]);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
}
END_TEST

/* Removes a worker cgroup and the run's (the end of a test). */
static void remove_all(mv_cg_t *cg, mv_cgw_t *w)
{
    char why[512], *path = strdup(w->path);

    mv_cg_close(w);
    ck_assert_int_eq(mv_cg_remove(MV_CG_V1, path, why, sizeof why), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
    free(path);
    ck_assert_int_eq(mv_cg_teardown(cg, why, sizeof why), 0);
}

/* mv_cg_reuse once the kernel has freed what it frees late after a worker's exit (slab
 * objects after an RCU grace period, per-CPU charge batches): on a loaded host the usage
 * left can be over the 512 KiB allowed for a moment (585,728 bytes once in CI). 0 or what
 * mv_cg_reuse said last. */
static int reuse_when_settled(mv_cg_t *cg, int slot, unsigned gen, mv_cgw_t *w, int64_t allow,
                              char *why, size_t n)
{
    int rc;

    for (int i = 0; i < 250 && (rc = mv_cg_reuse(cg, slot, gen, w, allow, why, n)) == -E2BIG; i++)
        usleep(20000);
    return rc;
}

/* The cgroup of a gone worker becomes the next generation's (cgahead.h): renamed, its peak
 * reset (the next worker's figures never show the last one's), the threshold events of the
 * last worker drained, and the threshold still registered. */
START_TEST(v1_a_gone_workers_cgroup_is_reused_with_fresh_figures)
{
    mv_cg_t cg;
    mv_cgw_t w;
    mv_cg_reading_t r;
    int ready[2], go[2];
    char why[512], c, *old;
    pid_t pid;
    struct pollfd pfd;

    if (!v1_here(&cg, 4 * MiB, 64 * MiB))
        return;
    ck_assert_msg(mv_cg_create(&cg, 2, 1, &w, why, sizeof why) == 0, "create: %s", why);
    ck_assert_int_eq(w.inherited, -1);
    ck_assert(mv_cg_reusable(&cg, &w));
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 16, ready[1], go[0]); /* over the soft limit: the threshold fires */
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    child_done(pid, go[1]);
    old = strdup(w.path);
    ck_assert_msg(reuse_when_settled(&cg, 2, 3, &w, 512 * 1024, why, sizeof why) == 0, "%s", why);
    ck_assert_ptr_nonnull(strstr(w.path, "/w2.3"));
    ck_assert_int_eq(access(old, F_OK), -1);
    ck_assert_int_eq(access(w.path, F_OK), 0);
    ck_assert_int_ge(w.inherited, 0);
    ck_assert_int_le(w.inherited, 512 * 1024);
    /* The 16 MiB peak of the worker before is gone; its threshold events too. */
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_lt(r.peak, 1 * MiB);
    ck_assert_int_eq(mv_cg_notified(&w), 0);
    /* The next worker joins through the same open files and crosses the same threshold. */
    pid = child_in(&w, 8, ready[1], go[0]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    pfd = (struct pollfd){.fd = w.notify_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    ck_assert_int_eq(mv_cg_read(&w, 0, &r), 0);
    ck_assert_int_ge(r.usage, 8 * MiB);
    ck_assert_int_lt(r.peak, 16 * MiB);
    child_done(pid, go[1]);
    free(old);
    remove_all(&cg, &w);
}
END_TEST

/* A reused cgroup counts only the OOM kills of its workers from then on: the worker after
 * one that the kernel killed is not taken for a kernel_oom. */
START_TEST(v1_a_reused_cgroup_counts_only_later_oom_kills)
{
    mv_cg_t cg;
    mv_cgw_t w;
    int ready[2], go[2], st, run_fd;
    char why[512];
    uint64_t n = 0;
    pid_t pid;

    if (!v1_here(&cg, 0, 16 * MiB))
        return;
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 64, ready[1], go[0]);
    waitpid(pid, &st, 0);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_int_eq(mv_cg_oom_kills(&w, &n), 0);
    ck_assert_uint_eq(n, 1);
    run_fd = cg.run_fd; /* without the run directory's fd: by absolute paths */
    cg.run_fd = -1;
    ck_assert_msg(reuse_when_settled(&cg, 1, 2, &w, 512 * 1024, why, sizeof why) == 0, "%s", why);
    cg.run_fd = run_fd;
    ck_assert_ptr_nonnull(strstr(w.path, "/w1.2"));
    ck_assert_int_eq(mv_cg_oom_kills(&w, &n), 0);
    ck_assert_uint_eq(n, 0);
    pid = child_in(&w, 64, ready[1], go[0]);
    waitpid(pid, &st, 0);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_int_eq(mv_cg_oom_kills(&w, &n), 0);
    ck_assert_uint_eq(n, 1);
    remove_all(&cg, &w);
}
END_TEST

/* A child that joins the cgroup, writes `kib` KiB to the shared-memory file `path` (its
 * pages stay charged to the cgroup after it exits, like page cache a worker wrote) and exits. */
static void child_writes(mv_cgw_t *w, const char *path, int kib)
{
    pid_t pid = fork();
    int st;

    if (pid == 0) {
        static char buf[1024];
        int fd;
        if (write(w->procs_fd, "0", 1) != 1)
            _exit(3);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        memset(buf, 'x', sizeof buf);
        for (int i = 0; fd >= 0 && i < kib; i++)
            if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
                _exit(4);
        _exit(fd >= 0 ? 0 : 5);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Reuse is refused where it could not be exact, and the cgroup is left as it was: a process
 * still in it, other limits than the run's now (a reload), more left charged to it than the
 * caller allows (files its worker wrote). */
START_TEST(v1_reuse_is_refused_where_it_would_not_be_exact)
{
    mv_cg_t cg;
    mv_cgw_t w;
    int ready[2], go[2];
    char why[512], c, shm[64], *path;
    pid_t pid;

    if (!v1_here(&cg, 4 * MiB, 64 * MiB))
        return;
    ck_assert_int_eq(mv_cg_create(&cg, 1, 1, &w, why, sizeof why), 0);
    path = strdup(w.path);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 1, ready[1], go[0]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    ck_assert_int_eq(mv_cg_reuse(&cg, 1, 2, &w, 512 * 1024, why, sizeof why), -EBUSY);
    ck_assert_ptr_nonnull(strstr(why, "still holds a process"));
    ck_assert_str_eq(w.path, path);
    child_done(pid, go[1]);
    cg.soft = 8 * MiB; /* a reload changed the soft limit */
    ck_assert(!mv_cg_reusable(&cg, &w));
    ck_assert_int_eq(mv_cg_reuse(&cg, 1, 2, &w, 512 * 1024, why, sizeof why), -EINVAL);
    cg.soft = 4 * MiB;
    snprintf(shm, sizeof shm, "/dev/shm/mvtest-reuse-%d", (int)getpid());
    child_writes(&w, shm, 2048);
    ck_assert_int_eq(mv_cg_reuse(&cg, 1, 2, &w, 512 * 1024, why, sizeof why), -E2BIG);
    ck_assert_ptr_nonnull(strstr(why, "still charged"));
    ck_assert_str_eq(w.path, path);
    ck_assert_int_eq(access(path, F_OK), 0);
    /* Its pages uncharged, the cgroup is as good as new again: what is left is under half
     * the file's 2 MiB (602,112 bytes stayed charged for 5 s once in CI, over 512 KiB: the
     * kernel's own objects of the exited writer, not the file). */
    unlink(shm);
    ck_assert_msg(reuse_when_settled(&cg, 1, 2, &w, 1024 * 1024, why, sizeof why) == 0, "%s", why);
    /* A drain's cap ([recycle] drain_cap) lowered its kernel limit: not for another worker. */
    ck_assert_int_eq(mv_cg_cap(&w, 32 * MiB), 0);
    ck_assert(!mv_cg_reusable(&cg, &w));
    ck_assert_int_eq(mv_cg_reuse(&cg, 1, 3, &w, 512 * 1024, why, sizeof why), -EINVAL);
    free(path);
    remove_all(&cg, &w);
}
END_TEST

START_TEST(v1_stale_runs_are_removed)
{
    mv_cg_t cg;
    char why[512], stale[512], worker[600];

    if (!v1_here(&cg, 0, 0))
        return;
    /* A run of a memvisor that no longer exists (pid max + 1 is never alive). */
    snprintf(stale, sizeof stale, "%s/memvisor-%d", cg.base, 4194305);
    snprintf(worker, sizeof worker, "%s/w2.9", stale);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
    ck_assert_int_eq(mkdir(stale, 0755), 0);
    ck_assert_int_eq(mkdir(worker, 0755), 0);
    ck_assert(v1_here(&cg, 0, 0));
    ck_assert_int_eq(access(stale, F_OK), -1);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
}
END_TEST

/* A run directory removed by its own run while a starting run waited for its lock: the lock
 * of a dead memvisor lives on in a child that shares its open file (a fork not yet exec'd),
 * and the scan waits for it (runlock.h); that child finishes the removal and goes. The scan
 * then holds the lock of a directory that is gone: nothing to remove, nothing to say. Before,
 * "stale cgroup ... left in place: No such file or directory" (seen once at a run's start
 * beside another run's end). */
START_TEST(v1_a_stale_run_gone_while_its_lock_is_waited_for_is_not_said)
{
    mv_cg_t cg, scan = {.version = MV_CG_V1};
    char why[512], stale[512], base[400], c;
    int ready[2], st;
    pid_t locker;

    if (!v1_here(&cg, 0, 0))
        return;
    snprintf(base, sizeof base, "%s", cg.base);
    snprintf(stale, sizeof stale, "%s/memvisor-%d", base, 4194306);
    ck_assert_int_eq(mv_cg_teardown(&cg, why, sizeof why), 0);
    scan.base = base; /* what a starting run scans */
    ck_assert_int_eq(mkdir(stale, 0755), 0);
    ck_assert_int_eq(pipe(ready), 0);
    locker = fork();
    ck_assert_int_ge(locker, 0);
    if (locker == 0) {
        /* The locker dies at once; its child keeps the lock, removes the directory and goes. */
        int fd = open(stale, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || flock(fd, LOCK_EX) < 0)
            _exit(3);
        if (fork() == 0) {
            if (write(ready[1], "r", 1) != 1)
                _exit(4);
            nanosleep(&(struct timespec){0, 300000000}, NULL);
            rmdir(stale);
            _exit(0);
        }
        _exit(0);
    }
    ck_assert_int_eq(waitpid(locker, &st, 0), locker);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    why[0] = '\0';
    mv_cg_remove_stale(&scan, NULL, why, sizeof why);
    ck_assert_msg(why[0] == '\0', "%s", why);
    ck_assert_int_eq(access(stale, F_OK), -1);
}
END_TEST

Suite *cgroup_suite(void)
{
    Suite *s = suite_create("cgroup");
    TCase *parse = tcase_create("parse");
    TCase *v2 = tcase_create("v2-fixture");
    TCase *v1 = tcase_create("v1-kernel");

    tcase_add_test(parse, proc_cgroup_lines);
    tcase_add_test(parse, a_cgroup_holds_what_is_in_it_or_inside_it);
    tcase_add_test(parse, memory_stat_keys);
    tcase_add_test(parse, libcgroup_errors_without_its_bugs);
    tcase_add_test(v2, v2_setup_vacates_enables_and_restores);
    tcase_add_test(v2, v2_without_the_memory_controller);
    tcase_add_test(v2, v2_a_mount_above_the_cgroup_namespace_is_refused);
    tcase_add_test(v2, v2_worker_cgroup_limits_readings_events);
    tcase_add_test(v2, v2_read_only_peak_is_sampled);
    tcase_set_timeout(v1, 30);
    tcase_add_test(v1, v1_worker_cgroup_on_the_kernel);
    tcase_add_test(v1, v1_oom_kill_is_counted_and_stays_inside);
    tcase_add_test(v1, v1_leftover_children_are_killed_on_removal);
    tcase_add_test(v1, v1_a_patient_removal_lets_a_leaving_process_go);
    tcase_add_test(v1, v1_stale_runs_are_removed);
    tcase_add_test(v1, v1_a_stale_run_gone_while_its_lock_is_waited_for_is_not_said);
    tcase_add_test(v1, v1_a_gone_workers_cgroup_is_reused_with_fresh_figures);
    tcase_add_test(v1, v1_a_reused_cgroup_counts_only_later_oom_kills);
    tcase_add_test(v1, v1_reuse_is_refused_where_it_would_not_be_exact);
    suite_add_tcase(s, parse);
    suite_add_tcase(s, v2);
    suite_add_tcase(s, v1);
    return s;
}
