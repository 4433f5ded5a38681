/* Every Check suite of memvisor; tests/check_main.c runs them all (CK_RUN_SUITE picks one). */
#ifndef MV_TEST_SUITES_H
#define MV_TEST_SUITES_H

#include <check.h>

Suite *config_suite(void);
Suite *protocol_suite(void);
Suite *worker_api_suite(void);
Suite *fsm_suite(void);
Suite *policy_suite(void);
Suite *tasks_suite(void);
Suite *e2e_suite(void);
Suite *faults_suite(void);
Suite *cgroup_suite(void);
Suite *leak_suite(void);
Suite *isolate_suite(void);
Suite *heapwire_suite(void);
Suite *experiment_suite(void);
Suite *leak_e2e_suite(void);
Suite *cgroup_e2e_suite(void);
Suite *cgroup_v2_suite(void);
Suite *truth_suite(void);
Suite *report_suite(void);
Suite *python_suite(void);
Suite *service_suite(void);
Suite *notify_suite(void);
Suite *control_suite(void);
Suite *channel_suite(void);
Suite *worker_suite(void);
Suite *pool_suite(void);
Suite *log_suite(void);
Suite *control_e2e_suite(void);
Suite *checkout_suite(void);
Suite *heap_suite(void);
Suite *leak_suite_suite(void);
Suite *resume_suite(void);
Suite *results_suite(void);
Suite *orphans_suite(void);
Suite *kind_suite(void);
Suite *ops_suite(void);
Suite *timeline_suite(void);
Suite *metrics_suite(void);
Suite *report_html_suite(void);
Suite *recycle_suite(void);
Suite *config_ext_suite(void);
Suite *privdrop_suite(void);
Suite *exitcode_suite(void);
Suite *reaper_suite(void);
Suite *hostmem_suite(void);
Suite *escalate_suite(void);
Suite *redis_suite(void);
Suite *rentry_suite(void);
Suite *tpolicy_suite(void);
Suite *template_suite(void);
Suite *progress_suite(void);

#endif
