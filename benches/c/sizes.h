/*
 * sizes.h -- the benchmarks' fixed seed of their random numbers (splitmix64:
 * rpg_splitmix of csrc/geometric.h, the sampler's) and their "mixed" block
 * sizes, shared by bench.c, contention.c and the churn workload, so
 * that every "mixed" figure means the same distribution: 40 % 8-32 B,
 * 30 % 33-128, 20 % 129-512, 8 % 513-2048, 2 % 2049-4096 (mean about 260 B);
 * and the clock and the median their tables report (replay.c's too).
 */
#ifndef RPB_SIZES_H
#define RPB_SIZES_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "../../csrc/geometric.h"

/* rpg_splitmix(&state) from this seed: the same sequence on every run */
#define RPB_SEED 0x9e3779b97f4a7c15ull

static inline size_t rpb_mixed_size(uint64_t *state)
{
    unsigned r = (unsigned)(rpg_splitmix(state) % 100);
    size_t lo, hi;
    if (r < 40)      { lo = 8;    hi = 32; }
    else if (r < 70) { lo = 33;   hi = 128; }
    else if (r < 90) { lo = 129;  hi = 512; }
    else if (r < 98) { lo = 513;  hi = 2048; }
    else             { lo = 2049; hi = 4096; }
    return lo + (size_t)(rpg_splitmix(state) % (hi - lo + 1));
}

/* CLOCK_MONOTONIC in nanoseconds */
static inline double rpb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int rpb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (n >= 1), which it sorts. */
static inline double rpb_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, rpb_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
