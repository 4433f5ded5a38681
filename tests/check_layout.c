/*
 * layout: memvisor's binary keeps the code a running supervisor does not use -- the client
 * commands, the reports, the Redis mode with hiredis, the metrics endpoint, the reload diff --
 * in sections of their own (supervisor/layout.ld), so that the kernel's fault-around, which
 * maps 64 KiB of a file around each page touched, leaves them out of memory during a run
 * (bench/footprint; docs/recycling.md, "cold code").
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

typedef struct {
    uint64_t addr, size;
} span_t;

/* A section of memvisor's binary, from `readelf -SW`; its size is 0 when there is none. */
static span_t section(const char *name)
{
    const char *argv[] = {"readelf", "-SW", MEMVISOR, NULL};
    char *out = NULL, *line, *save = NULL;
    span_t s = {0, 0};

    ck_assert_int_eq(run_capture(argv, &out), 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char sec[64], type[32];
        unsigned long long addr, off, size;
        const char *p = strchr(line, ']');

        if (p && sscanf(p + 1, "%63s %31s %llx %llx %llx", sec, type, &addr, &off, &size) == 5 &&
            !strcmp(sec, name)) {
            s = (span_t){addr, size};
            break;
        }
    }
    free(out);
    return s;
}

/* The address of a function of memvisor's binary, from `nm`; 0 when it has none. */
static uint64_t symbol(const char *name)
{
    const char *argv[] = {"nm", "--defined-only", MEMVISOR, NULL};
    char *out = NULL, *line, *save = NULL;
    uint64_t at = 0;

    ck_assert_int_eq(run_capture(argv, &out), 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned long long addr;
        char type, sym[128];

        if (sscanf(line, "%llx %c %127s", &addr, &type, sym) == 3 && !strcmp(sym, name)) {
            at = addr;
            break;
        }
    }
    free(out);
    return at;
}

static bool in(span_t s, uint64_t addr)
{
    return addr >= s.addr && addr < s.addr + s.size;
}

/* One function of each part kept apart, and of the parts a run uses. The static libraries'
 * (hiredis, libuv, jansson) are not in a `make STATIC_LIBS=no` build: theirs may be absent. */
typedef struct {
    const char *name;
    bool library;
} fn_t;

static const fn_t cold[] = {
    {"mv_ctl_main", false},     {"mv_report", false},         {"mv_report_html", false},
    {"mv__report_load", false}, {"mv_metrics_render", false}, {"mv_config_diff", false},
    {"mv_rconn_open", false},   {"redisConnect", true},       {NULL, false}};
static const fn_t hot[] = {{"mv_run", false},
                           {"mv_results_encode_into", false},
                           {"uv_run", true},
                           {"json_loads", true},
                           {NULL, false}};

START_TEST(the_code_a_run_does_not_use_is_linked_apart)
{
    span_t text = section("mv_cold_text"), ro = section("mv_cold_rodata");

    ck_assert_msg(text.size > 0 && ro.size > 0, "no mv_cold_text / mv_cold_rodata section");
    /* From a fault-around window's start: none of the running code shares its windows. */
    ck_assert_uint_eq(text.addr % 65536, 0);
    ck_assert_uint_eq(ro.addr % 65536, 0);
    for (int i = 0; cold[i].name; i++) {
        uint64_t at = symbol(cold[i].name);

        ck_assert_msg(at != 0 || cold[i].library, "%s is not in memvisor", cold[i].name);
        ck_assert_msg(at == 0 || in(text, at), "%s at %#llx is outside mv_cold_text", cold[i].name,
                      (unsigned long long)at);
    }
    for (int i = 0; hot[i].name; i++) {
        uint64_t at = symbol(hot[i].name);

        ck_assert_msg(at != 0 || hot[i].library, "%s is not in memvisor", hot[i].name);
        ck_assert_msg(at == 0 || !in(text, at), "%s, which every run uses, is in mv_cold_text",
                      hot[i].name);
    }
}
END_TEST

/* How many pages of [from, from + size) of memvisor's binary, as mapped in process `pid`, are
 * resident (/proc/PID/pagemap's present bit). */
static int resident_pages(pid_t pid, span_t s)
{
    char path[64], line[512], exe[4096];
    uint64_t base = 0;
    ssize_t n;
    FILE *maps;
    int pm, count = 0;

    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ck_assert_int_gt(n = readlink(path, exe, sizeof exe - 1), 0);
    exe[n] = '\0';
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    ck_assert_ptr_nonnull(maps = fopen(path, "r"));
    while (!base && fgets(line, sizeof line, maps)) {
        unsigned long long lo, off;
        char file[4096];

        /* The binary's first mapping (offset 0) is where the addresses of its ELF start. */
        if (sscanf(line, "%llx-%*x %*s %llx %*s %*s %4095s", &lo, &off, file) == 3 && off == 0 &&
            !strcmp(file, exe))
            base = lo;
    }
    fclose(maps);
    ck_assert_msg(base != 0, "memvisor's binary %s is not in its maps", exe);
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    ck_assert_int_ge(pm = open(path, O_RDONLY | O_CLOEXEC), 0);
    for (uint64_t va = base + s.addr; va < base + s.addr + s.size; va += 4096) {
        uint64_t e = 0;

        ck_assert_int_eq(pread(pm, &e, sizeof e, (off_t)(va / 4096 * 8)), (ssize_t)sizeof e);
        count += (int)(e >> 63);
    }
    close(pm);
    return count;
}

START_TEST(a_running_batch_keeps_that_code_out_of_memory)
{
    mvrun_t r;
    mvargs_t av;
    char sock[128];
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=2", "limits.max_tasks=5", "supervisor.grace_period=0",
                          "worker.kill_timeout=100ms"),
                 RUN_CMD(MVTEST));
    span_t text = section("mv_cold_text"), ro = section("mv_cold_rodata");
    int text_pages, ro_pages;

    /* Tasks flowing, results written, workers recycled, an operator asking for the status; a
     * last task keeps the run up until the test has looked. */
    run_init(&r, "alloc 1\nok\nok\nok\nok\nok\nok\nok\nok\nok\nok\nok\nok\nok\nok\nhang\n");
    ck_assert_msg(text.size > 0 && ro.size > 0, "no mv_cold_text / mv_cold_rodata section");
    run_start(&r, args, NULL);
    run_wait_nth(&r, "event=recycle ", 2);
    snprintf(sock, sizeof sock, "%s/state/control.sock", r.dir);
    ck_assert_int_eq(run_ctl("status", sock), 0);
    run_drain(&r);
    text_pages = resident_pages(r.pid, text);
    ro_pages = resident_pages(r.pid, ro);
#ifndef __SANITIZE_ADDRESS__
    /* ASan's build runs a constructor in every object at start-up (registering its globals),
     * the cold ones too: only the plain build is held to it. */
    ck_assert_int_eq(text_pages, 0);
    ck_assert_int_eq(ro_pages, 0);
#else
    (void)text_pages;
    (void)ro_pages;
#endif
    ck_assert_int_eq(run_ctl("stop", sock), 0);
    run_finish(&r);
    run_free(&r);
}
END_TEST

Suite *layout_suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("cold");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, the_code_a_run_does_not_use_is_linked_apart);
    tcase_add_test(tc, a_running_batch_keeps_that_code_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}
