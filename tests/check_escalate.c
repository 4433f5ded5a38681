/*
 * escalate: memory escalation before quarantine (issue 14 #4). The pure decisions (the next
 * limit, what an ended attempt means, an escalation worker's limits, its seat), then real
 * batches: a task the kernel OOM-kills at memory_hard runs again on a fresh worker with twice
 * the limit and succeeds, its escalations not counted toward max_attempts; one that needs more
 * than escalate_max climbs the ladder and is quarantined at its top.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "escalate.h"
#include "harness.h"
#include "slots.h"
#include "suites.h"

#define MiB (INT64_C(1) << 20)

START_TEST(next_limit)
{
    mv_esc_cfg_t f = {MV_ESC_FACTOR, 2.0, 0, 256 * MiB};
    mv_esc_cfg_t s = {MV_ESC_STEP, 0, 48 * MiB, 200 * MiB};
    mv_esc_cfg_t off = {MV_ESC_OFF, 0, 0, 256 * MiB};
    mv_esc_cfg_t tiny = {MV_ESC_FACTOR, 1.000001, 0, 256 * MiB};

    ck_assert_int_eq(mv_escalate_next(&f, 64 * MiB), 128 * MiB);
    ck_assert_int_eq(mv_escalate_next(&f, 128 * MiB), 256 * MiB);
    ck_assert_int_eq(mv_escalate_next(&f, 200 * MiB), 256 * MiB); /* capped */
    ck_assert_int_eq(mv_escalate_next(&f, 256 * MiB), 256 * MiB); /* at the top */
    ck_assert_int_eq(mv_escalate_next(&f, 1000001), 2002944);     /* whole pages */
    ck_assert_int_eq(mv_escalate_next(&s, 64 * MiB), 112 * MiB);
    ck_assert_int_eq(mv_escalate_next(&s, 160 * MiB), 200 * MiB);
    ck_assert_int_eq(mv_escalate_next(&off, 64 * MiB), 64 * MiB);
    ck_assert_int_eq(mv_escalate_next(&tiny, 64 * MiB), 64 * MiB + 4096); /* still moves */
    ck_assert_int_eq(mv_escalate_next(&f, 0), 0);
}
END_TEST

/* What a task killed at this host's ceiling asks of a bigger host, and the ceiling itself. */
START_TEST(beyond_and_ceiling)
{
    mv_esc_cfg_t f = {MV_ESC_FACTOR, 2.0, 0, 256 * MiB};
    mv_esc_cfg_t s = {MV_ESC_STEP, 0, 48 * MiB, 200 * MiB};
    mv_esc_cfg_t off = {MV_ESC_OFF, 0, 0, 256 * MiB};

    ck_assert_int_eq(mv_escalate_beyond(&f, 256 * MiB), 512 * MiB); /* past escalate_max */
    ck_assert_int_eq(mv_escalate_beyond(&s, 200 * MiB), 248 * MiB);
    ck_assert_int_eq(mv_escalate_beyond(&f, 1000001), 2002944);
    ck_assert_int_eq(mv_escalate_beyond(&off, 64 * MiB), 64 * MiB);
    ck_assert_int_eq(mv_escalate_beyond(&f, 0), 0);
    ck_assert_int_eq(mv_escalate_beyond(&f, INT64_MAX), INT64_MAX); /* no overflow */
    ck_assert_int_eq(mv_escalate_ceiling(&f, 64 * MiB), 256 * MiB);
    ck_assert_int_eq(mv_escalate_ceiling(&off, 64 * MiB), 64 * MiB);
    ck_assert_int_eq(mv_escalate_ceiling(&off, 0), INT64_MAX);
}
END_TEST

START_TEST(decide)
{
    mv_esc_cfg_t c = {MV_ESC_FACTOR, 2.0, 0, 256 * MiB};
    mv_esc_cfg_t off = {MV_ESC_OFF, 0, 0, 0};
    mv_esc_verdict_t v;

    /* Killed for memory under the top: escalated, whatever max_attempts says. */
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_KERNEL_OOM, 64 * MiB, 1, 0, 1});
    ck_assert_int_eq(v.action, MV_ESC_RAISE);
    ck_assert_int_eq(v.limit, 128 * MiB);
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_HARD_LIMIT, 128 * MiB, 5, 4, 1});
    ck_assert_int_eq(v.action, MV_ESC_RAISE);
    ck_assert_int_eq(v.limit, 256 * MiB);
    /* ...at the top: quarantined at once, even with attempts to spare. */
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_KERNEL_OOM, 256 * MiB, 3, 2, 10});
    ck_assert_int_eq(v.action, MV_ESC_QUARANTINE);
    ck_assert(v.at_max);
    /* Anything else counts as usual, escalations left out of the count. */
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_CRASH, 128 * MiB, 2, 1, 2});
    ck_assert_int_eq(v.action, MV_ESC_REQUEUE);
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_CRASH, 128 * MiB, 3, 1, 2});
    ck_assert_int_eq(v.action, MV_ESC_QUARANTINE);
    ck_assert(!v.at_max);
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_TASK_TIMEOUT, 64 * MiB, 1, 0, 3});
    ck_assert_int_eq(v.action, MV_ESC_REQUEUE);
    /* Off, or no hard limit it ran under: memory kills count like any end. */
    v = mv_escalate_decide(&off, &(mv_esc_facts_t){MV_R_KERNEL_OOM, 64 * MiB, 1, 0, 2});
    ck_assert_int_eq(v.action, MV_ESC_REQUEUE);
    v = mv_escalate_decide(&off, &(mv_esc_facts_t){MV_R_KERNEL_OOM, 64 * MiB, 2, 0, 2});
    ck_assert_int_eq(v.action, MV_ESC_QUARANTINE);
    ck_assert(!v.at_max);
    v = mv_escalate_decide(&c, &(mv_esc_facts_t){MV_R_HARD_LIMIT, 0, 1, 0, 1});
    ck_assert_int_eq(v.action, MV_ESC_QUARANTINE);
    ck_assert(mv_escalate_for_memory(MV_R_KERNEL_OOM) && mv_escalate_for_memory(MV_R_HARD_LIMIT));
    ck_assert(!mv_escalate_for_memory(MV_R_SOFT_LIMIT) && !mv_escalate_for_memory(MV_R_CRASH));
}
END_TEST

START_TEST(worker_limits)
{
    mv_wlimits_t base = {100, 60000, 48 * MiB, 64 * MiB}, l;

    l = mv_escalate_limits(&base, 128 * MiB);
    ck_assert_int_eq(l.hard_bytes, 128 * MiB);
    ck_assert_int_eq(l.soft_bytes, 96 * MiB); /* the same 3/4 */
    ck_assert_int_eq(l.max_tasks, 1);         /* it retires after its task */
    ck_assert_int_eq(l.lifetime_ms, 0);
    base.soft_bytes = 0; /* off stays off */
    l = mv_escalate_limits(&base, 128 * MiB);
    ck_assert_int_eq(l.soft_bytes, 0);
    base.soft_bytes = 7 * MiB; /* a huge limit: no overflow, whole pages */
    base.hard_bytes = 8 * MiB;
    l = mv_escalate_limits(&base, INT64_C(1) << 50);
    ck_assert_int_eq(l.soft_bytes, (INT64_C(7) << 50) / 8);
}
END_TEST

/* The seat of an escalation worker: beside its slot's worker, never replacing it. */
START_TEST(extra_seat)
{
    mv_slots_cfg_t cfg = {1, 0, 100, 1000, 3, false};
    mv_slots_t s;
    mv_seat_t a, x;
    mv_recycle_plan_t rp;
    mv_gone_plan_t gp;

    ck_assert_int_eq(mv_slots_init(&s, 2, &cfg), 0);
    ck_assert_uint_eq(mv_slots_take(&s, &a, 1), 1);
    ck_assert_uint_eq(mv_slots_take_extra(&s, &x, 1), 2); /* the slot's numbering */
    ck_assert_ptr_eq(s.slot[0].active, &a);               /* the slot keeps its worker */
    rp = mv_slots_recycle(&s, &x, MV_R_MAX_TASKS, false, 1000);
    ck_assert(rp.go && !rp.replacement); /* its own recycle brings nobody */
    gp = mv_slots_gone(&s, &x, false, false);
    ck_assert(!gp.respawn);
    ck_assert_int_eq(s.recycling, 0);
    ck_assert_ptr_eq(s.slot[0].active, &a);
    /* Its failure counts like any worker's. */
    ck_assert_uint_eq(mv_slots_take_extra(&s, &x, 2), 1);
    gp = mv_slots_gone(&s, &x, true, false);
    ck_assert(!gp.respawn);
    ck_assert_int_eq(s.streak, 1);
    ck_assert(!mv_slots_replace_now(&s, &x, false));
    mv_slots_free(&s);
}
END_TEST

/* Whether this host gives workers cgroups with a kernel limit (else memvisor's sampling
 * enforces it: the reason is hard_limit instead of kernel_oom). */
static const char *memory_reason(const mvrun_t *r)
{
    return strstr(r->log, "cgroup=/sys/fs/cgroup") ? "kernel_oom" : "hard_limit";
}

START_TEST(an_oom_killed_task_runs_again_with_twice_the_limit)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=2", "limits.memory_hard=64M", "limits.escalate=2x",
                          "limits.escalate_max=256M", "tasks.max_attempts=1"),
                 RUN_CMD(MVTEST));
    json_t *t1, *e;
    char want[160];

    run_init(&r, "alloc 100\nok\nok\nalloc 8\nok\n");
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 0);
    run_assert_once(&r, 5, NULL);
    snprintf(want, sizeof want, "event=escalate task=1 from=67108864 to=134217728 reason=%s ",
             memory_reason(&r));
    ck_assert_int_eq(run_count(&r, want), 1);
    ck_assert_int_eq(run_count(&r, "event=escalate "), 1);
    /* It ran twice, once per limit; max_attempts = 1 did not stop the escalation. */
    t1 = run_result(&r, 1);
    ck_assert_str_eq(jstr(t1, "status"), "ok");
    ck_assert_str_eq(jstr(t1, "result"), "allocated=100");
    ck_assert_int_eq(jint(t1, "attempts"), 2);
    ck_assert_int_eq(jint(t1, "escalations"), 1);
    ck_assert_int_eq(jint(t1, "mem_limit"), 128 * MiB);
    ck_assert_int_ge(jint(t1, "mem_peak"), 100 * MiB); /* above the pool's limit: it was raised */
    e = json_array_get(json_object_get(t1, "attempt_errors"), 0);
    ck_assert_str_eq(jstr(e, "reason"), memory_reason(&r));
    ck_assert_int_eq(jint(e, "mem_limit"), 64 * MiB);
    /* The others ran under the pool's limit, on the slots' own workers. */
    ck_assert_int_eq(jint(run_result(&r, 4), "mem_limit"), 64 * MiB);
    ck_assert_ptr_null(json_object_get(run_result(&r, 4), "escalations"));
    run_free(&r);
}
END_TEST

START_TEST(a_task_killed_at_escalate_max_is_quarantined)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args =
        run_argv(&av,
                 RUN_OPTS("supervisor.workers=1", "limits.memory_hard=64M", "limits.escalate=32M",
                          "limits.escalate_max=128M", "tasks.max_attempts=1"),
                 RUN_CMD(MVTEST));
    json_t *q, *a;

    run_init(&r, "alloc 300\nok\n");
    run_start(&r, args, NULL);
    ck_assert_int_eq(run_finish(&r), 1);
    run_assert_once(&r, 2, NULL);
    /* The ladder: 64M, 96M, 128M (the top), then quarantined. */
    ck_assert_int_eq(run_count(&r, "event=escalate task=1 from=67108864 to=100663296 "), 1);
    ck_assert_int_eq(run_count(&r, "event=escalate task=1 from=100663296 to=134217728 "), 1);
    ck_assert_int_eq(run_count(&r, "event=escalate "), 2);
    ck_assert_int_eq(run_count(&r, "event=quarantine task=1 attempts=3 "), 1);
    q = run_result(&r, 1);
    ck_assert_str_eq(jstr(q, "status"), "quarantined");
    ck_assert_int_eq(jint(q, "attempts"), 3);
    ck_assert_int_eq(jint(q, "escalations"), 2);
    ck_assert_ptr_nonnull(strstr(jstr(q, "error"), "at escalate_max (134217728 bytes)"));
    a = json_object_get(q, "attempt_errors");
    ck_assert_uint_eq(json_array_size(a), 3);
    ck_assert_int_eq(jint(json_array_get(a, 0), "mem_limit"), 64 * MiB);
    ck_assert_int_eq(jint(json_array_get(a, 1), "mem_limit"), 96 * MiB);
    ck_assert_int_eq(jint(json_array_get(a, 2), "mem_limit"), 128 * MiB);
    ck_assert_str_eq(jstr(run_result(&r, 2), "status"), "ok");
    run_free(&r);
}
END_TEST

/* A worker program that will not start under a hard limit above 64 MiB (as a runtime that
 * sizes itself from its cgroup's limit and fails can): its cgroup's limit, v1 or v2, read at
 * start. The pool's own workers (64M) serve; escalation workers (128M) exit 1 before HELLO. */
static const char refuses_above_64m[] =
    "#!/bin/sh\n"
    "v1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)\n"
    "v2=$(awk -F: '$1 == \"0\" {print $3}' /proc/self/cgroup)\n"
    "if [ -n \"$v1\" ]; then lim=$(cat /sys/fs/cgroup/memory$v1/memory.limit_in_bytes)\n"
    "else lim=$(cat /sys/fs/cgroup$v2/memory.max); fi\n"
    "if [ \"$lim\" != max ] && [ \"$lim\" -gt 67108864 ]; then\n"
    "    echo \"will not start under a limit of $lim\" >&2; exit 1\n"
    "fi\n"
    "exec \"$1\"\n";

/* Its escalation workers fail before they take the task: after crash_limit of them the task
 * ends once, quarantined with why, and the run ends as any run with a quarantined task (1),
 * not at crash_limit (3), nor retried for ever while the slot's worker stays up. */
START_TEST(an_escalation_that_cannot_start_quarantines_its_task_not_the_run)
{
    mvrun_t r;
    mvargs_t av;
    const char *const *args = NULL;
    const char *script;
    json_t *q;
    int code;

    run_init(&r, "alloc 100\nok\nok\n");
    script = run_file(&r, "w.sh", refuses_above_64m);
    ck_assert_int_eq(chmod(script, 0755), 0);
    args = run_argv(&av,
                    RUN_OPTS("supervisor.workers=1", "limits.memory_hard=64M", "limits.escalate=2x",
                             "limits.escalate_max=256M", "worker.crash_limit=3",
                             "worker.backoff_min=10ms", "worker.backoff_max=100ms"),
                    RUN_CMD("/bin/sh", script, MVTEST));
    run_start(&r, args, NULL);
    code = run_finish(&r);
    if (!strstr(r.log, "cgroup=/sys/fs/cgroup")) {
        /* No cgroups: the script sees no limit, the escalation worker starts; nothing here. */
        run_free(&r);
        return;
    }
    ck_assert_log(&r, code == 1, "memvisor exited %d", code);
    run_assert_once(&r, 3, NULL);
    ck_assert_int_eq(run_count(&r, "event=escalate task=1 from=67108864 to=134217728 "), 1);
    ck_assert_int_eq(run_count(&r, "event=crash_limit"), 0);
    ck_assert_int_eq(run_count(&r, "will not start under a limit of 134217728"), 3);
    ck_assert_int_eq(run_count(&r, "event=quarantine task=1 attempts=1 "
                                   "reason=escalation_not_started "),
                     1);
    q = run_result(&r, 1);
    ck_assert_str_eq(jstr(q, "status"), "quarantined");
    ck_assert_int_eq(jint(q, "escalations"), 1);
    ck_assert_msg(strstr(jstr(q, "error"), "its escalation workers (hard limit 134217728 bytes) "
                                           "failed 3 times in a row before taking it") &&
                      strstr(jstr(q, "error"), "last: crash, status 1"),
                  "%s", jstr(q, "error"));
    ck_assert_str_eq(jstr(run_result(&r, 2), "status"), "ok");
    ck_assert_str_eq(jstr(run_result(&r, 3), "status"), "ok");
    run_free(&r);
}
END_TEST

Suite *escalate_suite(void)
{
    Suite *s = suite_create("escalate");
    TCase *tc = tcase_create("unit");

    tcase_add_test(tc, next_limit);
    tcase_add_test(tc, beyond_and_ceiling);
    tcase_add_test(tc, decide);
    tcase_add_test(tc, worker_limits);
    tcase_add_test(tc, extra_seat);
    suite_add_tcase(s, tc);
    tc = tcase_create("oom");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, an_oom_killed_task_runs_again_with_twice_the_limit);
    tcase_add_test(tc, a_task_killed_at_escalate_max_is_quarantined);
    tcase_add_test(tc, an_escalation_that_cannot_start_quarantines_its_task_not_the_run);
    suite_add_tcase(s, tc);
    return s;
}
