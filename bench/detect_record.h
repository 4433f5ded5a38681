/* The progress record bench/grow_worker shares with bench/detect (a MAP_SHARED file). */
#ifndef MV_DETECT_RECORD_H
#define MV_DETECT_RECORD_H

#include <stdint.h>

typedef struct detect_record {
    int64_t pid;      /* the worker that owns the record (the first one); others leave it */
    int64_t cross_ns; /* when the kept total first reached the mark (CLOCK_REALTIME) */
    int64_t stop_ns;  /* when STOP arrived; 0 if it never did (killed) */
    int64_t last_ns;  /* the latest allocation */
    int64_t total;    /* the worker's private memory at the latest allocation */
} detect_record_t;

#endif
