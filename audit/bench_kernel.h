/* bench_kernel.h -- the timing kernel of `ringpool-audit bench` (audit._bench).
 *
 * A work item holds N block sizes (fixed, or a fixed-seed mixed distribution)
 * and a free order (random with a fixed seed, LIFO or FIFO). rpb_fill
 * allocates the N blocks with one strategy and rpb_release frees them the way
 * that strategy frees (one by one, or one bulk call); each is timed inside C
 * with clock_gettime(CLOCK_MONOTONIC). Peers are opened with dlopen. */
#ifndef RINGPOOL_BENCH_KERNEL_H
#define RINGPOOL_BENCH_KERNEL_H

#include <stddef.h>
#include <stdint.h>

enum {
    RPB_RP_FREE = 0,
    RPB_RP_DESTROY = 1,
    RPB_GLIBC_FREE = 2,
    RPB_TALLOC_FREE = 3,
    RPB_TALLOC_DESTROY = 4,
    RPB_APR_DESTROY = 5,
    RPB_MI_FREE = 6,
    RPB_MI_DESTROY = 7,
    RPB_STRATEGIES = 8
};
enum { RPB_ORDER_RANDOM = 0, RPB_ORDER_LIFO = 1, RPB_ORDER_FIFO = 2 };
enum { RPB_POOL_UNSYNC = 1, RPB_POOL_ARENA = 4 };

typedef struct rpb_work rpb_work;

/* size 0 = mixed distribution. NULL on bad arguments or out of memory. */
rpb_work *rpb_work_new(size_t n, size_t size, int order, uint64_t seed);
/* Releases whatever is still filled, then the work item. NULL is a no-op. */
void rpb_work_delete(rpb_work *w);
size_t rpb_work_blocks(const rpb_work *w);
size_t rpb_work_bytes(const rpb_work *w);
size_t rpb_work_size_at(const rpb_work *w, size_t i);
size_t rpb_work_order_at(const rpb_work *w, size_t i);

/* 1 when the strategy can run (its library could be opened), else 0. */
int rpb_available(int strategy);
/* Why a strategy is unavailable ("" when it is available). Never NULL. */
const char *rpb_unavailable_reason(int strategy);

/* 0 on success; -1 with rpb_last_error() set otherwise (bad strategy,
   already filled, unavailable peer, out of memory). */
int rpb_fill(rpb_work *w, int strategy, unsigned pool_flags);
/* 0 on success; -1 when nothing is filled. */
int rpb_release(rpb_work *w);
int rpb_filled(const rpb_work *w);
/* Blocks the filled container reports as outstanding (ringpool: from the
   pool's counters; others: the number allocated). 0 when not filled. */
size_t rpb_outstanding(const rpb_work *w);
uint64_t rpb_fill_ns(const rpb_work *w);
uint64_t rpb_release_ns(const rpb_work *w);
const char *rpb_last_error(const rpb_work *w);

#endif
