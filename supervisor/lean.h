/*
 * lean: the supervisor's own footprint (DESIGN §9: RSS <= 4 MiB with 64 workers; measured by
 * bench/footprint, the figures are in docs/recycling.md).
 *
 *   mv_lean_malloc     one malloc arena for every thread: glibc gives each thread that
 *                      allocates an arena of its own (the thread pool's, the log writer's),
 *                      about 100 KiB resident each for a few small allocations
 *   mv_lean_trim       gives the heap's free pages back to the kernel (the ticker calls it
 *                      four times a second): bursts (results piling up while the thread pool is
 *                      busy, a pool's start-up) leave free chunks between live blocks that
 *                      glibc keeps resident, ~100 KiB with 64 workers
 *   mv_lean_zero_bss   gives back the pages of a library's bss that hold nothing but zeros
 *                      (libcgroup 2.0.2's cgroup_init memsets an 800 KiB mount table, 100
 *                      controllers of two 4 KiB paths, for the dozen a host has)
 */
#ifndef MV_LEAN_H
#define MV_LEAN_H

#include <stddef.h>

void mv_lean_malloc(void);
/* malloc_trim(0): free pages inside the heap are dropped (MADV_DONTNEED) and its top cut.
 * 22 us median, 0.3 ms at most, with a 1 MiB heap (bench/footprint); any thread. */
void mv_lean_trim(void);
/* The library holding `addr` (any of its functions): its bss pages that are all zeros are
 * dropped (MADV_DONTNEED on private anonymous memory: they read as zeros again, and cost
 * nothing until written). Only while no other thread uses that library. Returns the bytes
 * given back (0 when none, or when the library cannot be found). */
size_t mv_lean_zero_bss(const void *addr);

#endif
