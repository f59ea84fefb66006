/* lock.c -- the slow paths of the library's lock: bounded spinning, then
   sleeping on a futex. See lock.h for the protocol. */
#include "lock.h"
#include "stack/rawmem.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPINS 100             /* polls of the word before yielding */
#define YIELD_NS 100000000L   /* then yields for up to 100 ms before sleeping */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* 1: membarrier's expedited barrier works here; -1: it does not; 0: not
   tried yet. */
static atomic_int fence_state;

static bool fence_ready(void)
{
    int s = atomic_load_explicit(&fence_state, memory_order_acquire);
    if (s == 0) {
        s = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
        atomic_store_explicit(&fence_state, s, memory_order_release);
    }
    return s == 1;
}

/* Orders this thread's earlier stores before every other running thread's
   later loads, and their earlier stores before our later loads. */
static bool heavy_fence(void)
{
    return fence_ready() && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

bool rpi_lock_fence_ok(void) { return fence_ready(); }
bool rpi_lock_fence(void) { return heavy_fence(); }

void rpi_lock_backoff(unsigned step) { rpi_raw_backoff(step); }

static bool try_take(rpi_lock *l)
{
    return atomic_load_explicit(&l->held, memory_order_relaxed) == 0 &&
           !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

/* One sleep while l is held, at most max_ns. */
static void sleep_on(rpi_lock *l, long max_ns)
{
    atomic_fetch_add_explicit(&l->sleepers, 1, memory_order_seq_cst);
    long ns = heavy_fence() ? max_ns : (max_ns < 200000 ? max_ns : 200000);
    if (atomic_load_explicit(&l->held, memory_order_relaxed) == 1) {
        struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
        syscall(SYS_futex, &l->held, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0);
    }
    atomic_fetch_sub_explicit(&l->sleepers, 1, memory_order_relaxed);
}

void rpi_lock_wake(rpi_lock *l)
{
    syscall(SYS_futex, &l->held, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void *rpi_lock_wake_ret(rpi_lock *l, void *ret)
{
    rpi_lock_wake(l);
    return ret;
}

static long elapsed_ns(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000000000L + (now.tv_nsec - t0->tv_nsec);
}

void rpi_lock_slow(rpi_lock *l)
{
    for (unsigned i = 0; i < SPINS; i++) {
        if (try_take(l)) return;
        cpu_relax();
    }
    /* a holder that is not running (more threads than cores): let it run;
       sleeping and being woken would cost more than it holds */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        sched_yield();
        if (try_take(l)) return;
    } while (elapsed_ns(&t0) < YIELD_NS);
    /* held for long (a report into a slow pipe, a holder descheduled): sleep
       until it is given back (each sleep bounded: see lock.h), then poll a
       little before sleeping again */
    for (;;) {
        sleep_on(l, 50000000L);
        for (unsigned i = 0; i < SPINS; i++) {
            if (try_take(l)) return;
            cpu_relax();
        }
    }
}


bool rpi_lock_try_for(rpi_lock *l)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (unsigned i = 0; i < SPINS; i++) {
            if (try_take(l)) return true;
            cpu_relax();
        }
        long left = 1000000000L - elapsed_ns(&t0);
        if (left <= 0) return false;
        sleep_on(l, left < 10000000L ? left : 10000000L);
    }
}
