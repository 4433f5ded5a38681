/*
 * The one Check runner: every module's suite, run with srunner_run_all(sr, CK_ENV).
 * CK_RUN_SUITE=name / CK_RUN_CASE=name select; CK_FORK=no helps under gdb.
 */
#include <stdio.h>
#include <stdlib.h>

#include "suites.h"

int main(void)
{
    /* One suite per line: a new one is one added line. */
    /* clang-format off */
    Suite *(*const all[])(void) = {
        config_suite,
        protocol_suite,
        worker_api_suite,
        fsm_suite,
        policy_suite,
        gather_suite,
        tasks_suite,
        cgroup_suite,
        cgahead_suite,
        leak_suite,
        isolate_suite,
        heapwire_suite,
        experiment_suite,
        e2e_suite,
        faults_suite,
        cgroup_e2e_suite,
        leak_e2e_suite,
        report_suite,
        python_suite,
        service_suite,
        notify_suite,
        control_suite,
        log_suite,
        control_e2e_suite,
        layout_suite,
        scale_suite,
        checkout_suite,
        channel_suite,
        worker_suite,
        pool_suite,
        heap_suite,
        leak_suite_suite,
        resume_suite,
        results_suite,
        orphans_suite,
        kind_suite,
        ops_suite,
        timeline_suite,
        metrics_suite,
        report_html_suite,
        recycle_suite,
        config_ext_suite,
        privdrop_suite,
        exitcode_suite,
        reaper_suite,
        hostmem_suite,
        escalate_suite,
        redis_suite,
        rentry_suite,
        progress_suite,
        cgroup_v2_suite,
        truth_suite,
        tpolicy_suite,
        template_suite,
        handoff_suite,
        succ_suite,
        startgate_suite,
    };
    /* clang-format on */
    SRunner *sr = srunner_create(NULL);
    int failed;

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        srunner_add_suite(sr, all[i]());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
