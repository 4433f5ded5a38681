/*
 * cgahead suite: each slot's next worker cgroups made ahead, and kept ones reused together
 * in one thread-pool run (supervisor/cgahead.h, cgasync.h, job.h), on the real v1 kernel.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "cg_util.h"
#include "cgahead.h"
#include "cgasync.h"
#include "cgroup.h"
#include "job.h"
#include "suites.h"

static int ahead_making(const mv_cgahead_t *a, int *queued, int *ready)
{
    int n = 0;

    *queued = *ready = 0;
    for (int i = 0; i < a->n; i++) {
        n += a->slot[i].first.job != NULL;
        *queued += a->slot[i].queued != 0;
        *ready += a->slot[i].first.ready;
    }
    return n;
}

/* cgahead makes at most MV_CGAHEAD_JOBS cgroups at once (the rest of the thread pool stays
 * free for results and timeline jobs: bench/footprint); the others wait and are all made in
 * turn; a queued request taken by its worker is dropped (the worker makes its own) and never
 * made; a slot has room for gone workers' cgroups once it keeps one; everything goes at the
 * end. */
/* A run's cgroups, a debug log, a loop and a cgahead of n slots over them. */
typedef struct {
    mv_cg_t cg;
    mv_log_t lg;
    uv_loop_t loop;
    mv_cgahead_t a;
    char log_path[32];
} aheadfx_t;

static bool fx_open(aheadfx_t *f, int64_t soft, int64_t hard, int nslots)
{
    int fd;

    if (!v1_here(&f->cg, soft, hard))
        return false;
    snprintf(f->log_path, sizeof f->log_path, "/tmp/mv-cgahead-log-XXXXXX");
    fd = mkstemp(f->log_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mv_log_open(&f->lg, MV_LOGFMT_TEXT, MV_LVL_DEBUG, f->log_path), 0);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    ck_assert_int_eq(mv_cgahead_init(&f->a, &f->loop, &f->lg, &f->cg, nslots, true), 0);
    ck_assert(f->a.on);
    return true;
}

/* Frees the cgahead, waits for its removals, and removes the run's cgroup. */
static void fx_close(aheadfx_t *f)
{
    char why[512];

    mv_cgahead_free(&f->a);
    while (uv_run(&f->loop, UV_RUN_ONCE)) /* the removals */
        ;
    ck_assert_int_eq(uv_loop_close(&f->loop), 0);
    mv_log_close(&f->lg);
    unlink(f->log_path);
    ck_assert_msg(mv_cg_teardown(&f->cg, why, sizeof why) == 0, "%s", why);
}

START_TEST(v1_cgroups_made_ahead_a_few_at_a_time)
{
    enum { N = 6 };
    aheadfx_t f;
    mv_cgahead_t *a = &f.a;
    mv_cgw_t out;
    mv_job_t *job = NULL;
    int queued, ready;

    if (!fx_open(&f, 0, 64 * MiB, N))
        return;
    for (int slot = 1; slot <= N; slot++)
        mv_cgahead_prepare(a, slot, 2);
    ck_assert_int_eq(ahead_making(a, &queued, &ready), MV_CGAHEAD_JOBS);
    ck_assert_int_eq(queued, N - MV_CGAHEAD_JOBS);
    ck_assert(mv_cgahead_holds(a, N, 2)); /* queued: asked for, its name taken */
    /* The last slot's worker comes before its turn: nothing for it, and nothing made later */
    ck_assert_int_eq(mv_cgahead_take(a, N, 2, &out, &job), MV_AHEAD_NONE);
    ck_assert(!mv_cgahead_holds(a, N, 2));
    while (ahead_making(a, &queued, &ready) > 0 || queued > 0) {
        ck_assert_int_le(ahead_making(a, &queued, &ready), MV_CGAHEAD_JOBS);
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(ready, N - 1);
    ck_assert(!a->slot[N - 1].first.ready);
    ck_assert_uint_eq(a->made, N - 1);
    /* Room for gone workers' cgroups only once one is kept */
    ck_assert_ptr_null(a->slot[0].kept);
    ck_assert_int_eq(mv_cgahead_take(a, 1, 2, &out, &job), MV_AHEAD_READY);
    ck_assert(mv_cgahead_keep(a, 1, &out));
    ck_assert_ptr_nonnull(a->slot[0].kept);
    ck_assert_int_eq(a->slot[0].nkept, 1);
    ck_assert_ptr_null(out.path); /* the slot's now */
    fx_close(&f);
}
END_TEST

/* Jobs queued together (mv_job_queue_all) run in one pool thread in order, and each gets
 * its own done callback with its own owner: one detached meanwhile sees none. */
typedef struct {
    mv_job_t job;
    int i;
    int *order;
    uv_thread_t *thread;
} tjob_t;
static int tjob_ran, tjob_done;
static void *tjob_owner[3];

static void tjob_work(mv_job_t *j)
{
    tjob_t *t = (tjob_t *)j;

    t->order[tjob_ran++] = t->i;
    t->thread[t->i] = uv_thread_self();
}

static void tjob_done_cb(mv_job_t *j, void *owner, int cancelled)
{
    ck_assert(!cancelled);
    tjob_owner[((tjob_t *)j)->i] = owner;
    tjob_done++;
}

START_TEST(jobs_queued_together_run_once_in_order_each_with_its_owner)
{
    uv_loop_t loop;
    mv_job_t *jobs[3];
    void *owners[3] = {&loop, &tjob_ran, &tjob_done};
    int order[3];
    uv_thread_t thread[3];

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(mv_job_queue_all(&loop, jobs, 0, tjob_work, tjob_done_cb, owners), -EINVAL);
    for (int i = 0; i < 3; i++) {
        tjob_t *t = calloc(1, sizeof *t);
        ck_assert_ptr_nonnull(t);
        *t = (tjob_t){.i = i, .order = order, .thread = thread};
        jobs[i] = &t->job;
    }
    ck_assert_int_eq(mv_job_queue_all(&loop, jobs, 3, tjob_work, tjob_done_cb, owners), 0);
    mv_job_detach(jobs[1]);
    while (uv_run(&loop, UV_RUN_ONCE))
        ;
    ck_assert_int_eq(tjob_ran, 3);
    ck_assert_int_eq(tjob_done, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert(uv_thread_equal(&thread[0], &thread[1]) && uv_thread_equal(&thread[1], &thread[2]));
    ck_assert_ptr_eq(tjob_owner[0], &loop);
    ck_assert_ptr_null(tjob_owner[1]);
    ck_assert_ptr_eq(tjob_owner[2], &tjob_done);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* A slot's kept cgroups are reused for its next generations in one thread-pool run
 * (cgahead.h): each renamed for its generation; one a process is still in is removed (the
 * process killed) and its generation gets none; a batch that took every kept one makes one
 * new after them when the slot recycles fast, none when it does not; a generation passed
 * over gives its cgroup back to the kept ones. */
START_TEST(v1_kept_cgroups_are_reused_together)
{
    char path[512], c, name[16];
    int ready[2], go[2], st;
    mv_cgw_t w[3], out;
    mv_job_t *job = NULL;
    aheadfx_t f;
    mv_cgahead_t *a = &f.a;
    mv_cgnext_t *x;
    pid_t pid;

    if (!fx_open(&f, 4 * MiB, 64 * MiB, 1))
        return;
    x = &a->slot[0];
    for (unsigned gen = 1; gen <= 3; gen++)
        ck_assert_int_eq(mv_cg_create(&f.cg, 1, gen, &w[gen - 1], path, sizeof path), 0);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w[1], 1, ready[1], go[0]); /* a worker's child left in w1.2 */
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    for (int i = 0; i < 3; i++)
        ck_assert(mv_cgahead_keep(a, 1, &w[i]));
    x->asked_ns = uv_hrtime(); /* as a slot that asked a moment ago: it recycles fast */
    mv_cgahead_prepare(a, 1, 4);
    ck_assert_uint_eq(a->runs, 1);
    ck_assert_int_eq(x->nkept, 0);
    for (uint32_t gen = 4; gen <= 7; gen++) /* 4-6 reused, 7 new */
        ck_assert(mv_cgahead_holds(a, 1, gen));
    ck_assert_uint_eq(mv_cgahead_last(a, 1), 7); /* what a reload's slots pass over */
    ck_assert_uint_eq(mv_cgahead_last(a, 2), 0);
    while (x->first.job || x->more[0].job || x->more[1].job || x->more[2].job)
        uv_run(&f.loop, UV_RUN_ONCE);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_int_eq(mv_cgahead_take(a, 1, 4, &out, &job), MV_AHEAD_READY);
    ck_assert_ptr_nonnull(strstr(out.path, "/w1.4"));
    ck_assert_int_ge(out.inherited, 0);
    ck_assert(mv_cgahead_keep(a, 1, &out));
    ck_assert_int_eq(mv_cgahead_take(a, 1, 5, &out, &job), MV_AHEAD_NONE);
    snprintf(path, sizeof path, "%s/w1.2", f.cg.run);
    ck_assert_int_eq(access(path, F_OK), -1);
    /* 6 was never taken: its cgroup is kept again when 7 is */
    ck_assert_int_eq(mv_cgahead_take(a, 1, 7, &out, &job), MV_AHEAD_READY);
    ck_assert_int_eq(out.inherited, -1);
    ck_assert_int_eq(x->nkept, 2);
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "/w1.%d", i == 0 ? 4 : 6);
        ck_assert_ptr_nonnull(strstr(x->kept[i].path, name));
    }
    ck_assert(!mv_cgahead_holds(a, 1, 6));
    /* A slot that asked long ago reuses what it keeps and makes no new one after them */
    x->asked_ns = 1;
    mv_cgahead_prepare(a, 1, 8);
    ck_assert_uint_eq(a->runs, 2);
    ck_assert(mv_cgahead_holds(a, 1, 8) && mv_cgahead_holds(a, 1, 9));
    ck_assert(!mv_cgahead_holds(a, 1, 10));
    mv_cg_remove_async(&f.loop, &f.lg, &out);
    fx_close(&f);
}
END_TEST

/* The owner of a cgroup made in the thread pool: takes it. */
static void taken(void *owner, int result, mv_cgw_t *cg, const char *why)
{
    ck_assert_msg(result == 0, "%s", why);
    *(mv_cgw_t *)owner = *cg;
}

/* Whether fd becomes readable within 10 s. */
static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 10000) == 1;
}

/* A new v1 cgroup goes to its owner before its soft-limit threshold is registered (the write
 * to cgroup.event_control waits for an RCU grace period in the kernel, which a process need
 * not wait for to start in it: cgroup.h, mv_cg_create_later). The registration follows in
 * the thread pool and then makes the eventfd readable once, so that the owner reads usage
 * again (it may have crossed the limit before there was a threshold to say so); after it, a
 * crossing fires as ever. Before, the cgroup came with its threshold, and its eventfd said
 * nothing until a crossing. */
START_TEST(v1_soft_threshold_registered_after_the_cgroup_is_handed_over)
{
    aheadfx_t f;
    mv_cgw_t w = {.notify_fd = -1};
    mv_job_t *job = NULL;
    int ready[2], go[2], null, control;
    char c, why[512], path[600];
    pid_t pid;

    if (!fx_open(&f, 4 * MiB, 64 * MiB, 1))
        return;
    ck_assert_int_eq(mv_cg_create_async(&f.loop, &f.lg, &f.cg, 1, 1, taken, &w, &job), 0);
    while (!w.path)
        ck_assert(uv_run(&f.loop, UV_RUN_ONCE) || w.path);
    ck_assert_int_eq(w.soft_control_fd, -1); /* the registration's */
    ck_assert_int_ge(w.notify_fd, 0);
    /* Registered: readable once, with nothing in the cgroup. */
    ck_assert_msg(readable(w.notify_fd), "the registration never said it was done");
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    ck_assert_int_eq(mv_cg_notified(&w), 0);
    /* A process in it past 4 MiB: the threshold fires. */
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = child_in(&w, 8, ready[1], go[0]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    ck_assert_msg(readable(w.notify_fd), "no threshold event past the soft limit");
    ck_assert_int_eq(mv_cg_notified(&w), MV_CG_EV_SOFT);
    child_done(pid, go[1]);
    for (int i = 0; i < 2; i++) {
        close(ready[i]);
        close(go[i]);
    }
    /* A file that is not the cgroup's usage: refused, and said (cgasync logs it then). */
    ck_assert_int_ge(null = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
    snprintf(path, sizeof path, "%s/cgroup.event_control", w.path);
    ck_assert_int_ge(control = open(path, O_WRONLY | O_CLOEXEC), 0);
    ck_assert_int_lt(mv_cg_register_soft(control, w.notify_fd, null, 4 * MiB, why, sizeof why), 0);
    close(control);
    ck_assert_msg(strstr(why, "cannot register the soft limit threshold"), "%s", why);
    close(null);
    mv_cg_remove_async(&f.loop, &f.lg, &w);
    fx_close(&f);
}
END_TEST

Suite *cgahead_suite(void)
{
    Suite *s = suite_create("cgahead");
    TCase *job = tcase_create("job");
    TCase *v1 = tcase_create("v1-kernel");

    tcase_add_test(job, jobs_queued_together_run_once_in_order_each_with_its_owner);
    tcase_set_timeout(v1, 30);
    tcase_add_test(v1, v1_cgroups_made_ahead_a_few_at_a_time);
    tcase_add_test(v1, v1_kept_cgroups_are_reused_together);
    tcase_add_test(v1, v1_soft_threshold_registered_after_the_cgroup_is_handed_over);
    suite_add_tcase(s, job);
    suite_add_tcase(s, v1);
    return s;
}
