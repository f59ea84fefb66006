/*
 * memprof.h -- the sampler's fast path (internal, prefix rpi_memprof).
 *
 * Each pool keeps `mp_left` (under its lock, beside its other counters): the
 * bytes it may still hand out before the next point of interest. A point is
 * either a sampled byte of the running profile or, when the next sampled byte
 * is far away (or no profile runs), a check point where the pool looks at the
 * global profile again. The fast path is one subtraction and one branch on
 * that counter; everything else (drawing the next point, counting samples,
 * callbacks) is in memprof.c.
 */
#ifndef RP_MEMPROF_H
#define RP_MEMPROF_H

#include "internal.h"

typedef struct rpi_memprof_thread {
    bool busy;              /* inside a tracker callback: no sampling */
} rpi_memprof_thread;

/* Default TLS model: the library is also loaded with dlopen (plugins, the
   Python extension), where static TLS may be exhausted; only slow paths read it. */
RPI_HIDDEN extern _Thread_local rpi_memprof_thread rpi_memprof_tls;

/* Counts size bytes of a block just linked and counted in pool (lock held).
   True when a point falls inside them: the caller then hands over to
   rpi_memprof_slow, which releases the locks (the registry's too when
   checked) and returns the payload. */
static inline __attribute__((always_inline)) bool rpi_memprof_due(rp_pool *pool, size_t size)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    /* One read-modify-write and one branch (compilers emit load, subtract,
       store, test, branch for the C below). */
    __asm__ goto("subq %1, %0\n\tjle %l[due]" : "+m"(pool->mp_left) : "r"(size) : "cc" : due);
    return false;
due:
    return true;
#else
    return RPI_UNLIKELY((pool->mp_left -= (int64_t)size) <= 0);
#endif
}
/* rpi_count_new and rpi_memprof_due in one: the countdown first, while size
   is still in a register (after the counters it would cost a copy). */
static inline __attribute__((always_inline)) bool rpi_memprof_count(rp_pool *pool, rpi_tag *t,
                                                                    size_t size)
{
    if (rpi_memprof_due(pool, size)) {
        rpi_count_new(pool, t, size);
        return true;
    }
    rpi_count_new(pool, t, size);
    return false;
}
RPI_HIDDEN void *rpi_memprof_slow(rp_pool *pool, rpi_hdr *h, size_t size, bool checked);

/* The two halves of rpi_memprof_slow, for callers with more to do between
   them: draw (pool lock held) fills *s (k = 0: nothing to offer); offer runs
   the tracker (no lock held) and returns block. */
typedef struct rpi_memprof_sample {
    size_t             k;
    uint64_t           gen;
    rp_memprof        *profile;
    size_t             stack;
    rp_memprof_tracker tracker;
} rpi_memprof_sample;
RPI_HIDDEN void  rpi_memprof_draw(rp_pool *pool, rpi_memprof_sample *s);
RPI_HIDDEN void *rpi_memprof_offer(rp_pool *pool, void *block, size_t size,
                                   const rpi_memprof_sample *s);

/* Blocks tracked by any profile (checked pools carry no header flag). */
RPI_HIDDEN extern atomic_size_t rpi_memprof_entries;

/* A tracked block is going (pool lock held): removes its entry and returns
   the pending dealloc to run after the locks are released. */
typedef struct rpi_memprof_pending {
    void (*dealloc)(void *user, void *data);
    void  *user, *data;
} rpi_memprof_pending;
RPI_HIDDEN rpi_memprof_pending rpi_memprof_untrack(const void *block);
RPI_HIDDEN void rpi_memprof_run_pending(rpi_memprof_pending pend);
/* Destroy/reset of pool (no lock held): dealloc for every tracked block of
   pool, O(tracked blocks). */
RPI_HIDDEN void rpi_memprof_release_pool(rp_pool *pool);

#endif /* RP_MEMPROF_H */
