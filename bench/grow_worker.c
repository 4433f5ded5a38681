/*
 * grow_worker: the growing worker of bench/detect. Every task keeps STEP MiB more, spread
 * evenly over the task so that the worker grows at RATE MiB/s; it records its progress in a
 * shared file that outlives it (a worker killed by the kernel cannot report anything):
 *
 *     grow_worker --record FILE --mark BYTES [--rate MIB_PER_S] [--step MIB] [--chunk KIB]
 *
 * The record holds wall-clock nanoseconds (CLOCK_REALTIME, comparable with memvisor's log):
 * when its private memory first reached MARK, when STOP arrived, and the latest figure. Only
 * the first worker writes it (a replacement leaves it alone).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <memvisor/worker.h>

#include "detect_record.h"

/* Private memory (resident - file-backed), the figure memvisor's limits compare. */
static int64_t private_bytes(int statm)
{
    char buf[128];
    long long size, res, shared;
    ssize_t n = pread(statm, buf, sizeof buf - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    if (sscanf(buf, "%lld %lld %lld", &size, &res, &shared) != 3)
        return 0;
    return (int64_t)(res - shared) * sysconf(_SC_PAGESIZE);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *record = NULL;
    int64_t mark = 0, rate = 64, step = 1, chunk = 256;
    detect_record_t *rec;
    mvw_task_t t;
    mvw_t *w;
    int fd;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--record"))
            record = argv[i + 1];
        else if (!strcmp(argv[i], "--mark"))
            mark = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--step"))
            step = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--chunk"))
            chunk = atoll(argv[i + 1]);
    }
    if (!record || mark <= 0 || rate <= 0 || step <= 0 || chunk <= 0 || chunk > 1024) {
        fprintf(stderr,
                "usage: grow_worker --record FILE --mark BYTES [--rate MIB/S] [--step MIB]\n");
        return MVW_EXIT_FATAL;
    }
    fd = open(record, O_RDWR);
    rec = fd < 0 ? MAP_FAILED : mmap(NULL, sizeof *rec, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int statm = open("/proc/self/statm", O_RDONLY);
    if (rec == MAP_FAILED || statm < 0 || mvw_open(&w) < 0)
        return MVW_EXIT_FATAL;
    int mine = __sync_bool_compare_and_swap(&rec->pid, 0, (int64_t)getpid());
    while (mvw_next(w, &t) > 0) {
        /* STEP MiB per task, in CHUNK KiB pieces spaced to grow at RATE MiB/s. */
        for (int64_t i = 0; i < step * 1024 / chunk; i++) {
            size_t size = (size_t)chunk << 10;
            volatile char *p = malloc(size);
            struct timespec pause = {0, (long)(1000000000 * chunk / 1024 / rate)};

            for (size_t k = 0; p && k < size; k += 4096)
                p[k] = 1;
            if (mine) {
                rec->total = private_bytes(statm);
                rec->last_ns = now_ns();
                if (rec->total >= mark && !rec->cross_ns)
                    rec->cross_ns = rec->last_ns;
            }
            nanosleep(&pause, NULL);
        }
        mvw_done(w, "", 0);
    }
    if (mine)
        rec->stop_ns = now_ns();
    mvw_close(w);
    return 0;
}
