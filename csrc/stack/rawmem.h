/*
 * rawmem.h -- the two primitives of the code that runs inside malloc (the
 * interposer's tables, the sampler's table, the stack table): memory straight
 * from the kernel, and a short spin lock. Neither calls malloc, and both are
 * safe to use from a signal handler that interrupted another thread.
 */
#ifndef RPI_RAWMEM_H
#define RPI_RAWMEM_H

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>
#include <time.h>

/* Zeroed anonymous memory, reserved without swap accounting (pages are
   touched lazily), or NULL; errno is left as the caller had it, because the
   caller is often malloc itself. */
static inline void *rpi_map_zeroed(size_t bytes)
{
    int saved = errno;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

/* One step of a wait for another thread's progress (a lock's holder, a
   first use another thread is finishing); step counts from 0. The first
   RPI_RAW_SPINS steps poll (the other thread most likely runs on another
   core and is nearly done), the next RPI_RAW_YIELDS yield (it may have been
   preempted on this core), and later ones sleep, from 1 us doubling up to
   1 ms: a waiter that only yielded would never let a holder of lower
   priority run (a real-time waiter, or a scheduler that hands the core
   straight back to a thread that never blocks, as valgrind's does).
   nanosleep neither allocates nor takes a lock, so this stays usable inside
   malloc and from a signal handler. */
#define RPI_RAW_SPINS 100u
#define RPI_RAW_YIELDS 16u
#define RPI_RAW_NAP_NS 1000L
#define RPI_RAW_NAP_DOUBLINGS 10u
static inline void rpi_raw_backoff(unsigned step)
{
    if (step < RPI_RAW_SPINS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
    } else if (step < RPI_RAW_SPINS + RPI_RAW_YIELDS) {
        sched_yield();
    } else {
        unsigned k = step - RPI_RAW_SPINS - RPI_RAW_YIELDS;
        struct timespec ts = {0, RPI_RAW_NAP_NS << (k < RPI_RAW_NAP_DOUBLINGS ? k : RPI_RAW_NAP_DOUBLINGS)};
        int saved = errno;
        nanosleep(&ts, NULL);
        errno = saved;
    }
}
/* The step after n, staying at the longest sleep once there. */
static inline unsigned rpi_raw_next(unsigned n)
{
    return n + (n < RPI_RAW_SPINS + RPI_RAW_YIELDS + RPI_RAW_NAP_DOUBLINGS);
}

/* Test-and-test-and-set: one atomic exchange to take, a plain release store
   to drop (a pthread mutex costs a second atomic and two PLT calls on paths
   that run for every malloc and free). Critical sections are a few dozen
   instructions and never call out, so spinning briefly is right; a waiter
   then backs off as rpi_raw_backoff says.

   A single-threaded process takes no lock: glibc clears the flag in
   pthread_create, which cannot run while this thread is inside a critical
   section, and never sets it again in a running process. The release is an
   unconditional store, so a lock taken while threads existed is always
   dropped. */
/* The contended case, out of line so that the callers' fast paths stay
   small (no registers to save for a loop that rarely runs). */
static __attribute__((noinline, cold, unused)) void rpi_spin_wait(atomic_int *held)
{
    for (unsigned n = 0;; n = rpi_raw_next(n)) {
        if (!atomic_load_explicit(held, memory_order_relaxed) &&
            !atomic_exchange_explicit(held, 1, memory_order_acquire))
            return;
        rpi_raw_backoff(n);
    }
}

/* 1 when the lock is now held (or not needed: one thread), 0 when
   another thread holds it (then wait with rpi_spin_wait). */
static inline int rpi_spin_try(atomic_int *held)
{
    return __libc_single_threaded ||
           (!atomic_load_explicit(held, memory_order_relaxed) &&
            !atomic_exchange_explicit(held, 1, memory_order_acquire));
}

static inline void rpi_spin_lock(atomic_int *held)
{
    if (__builtin_expect(!rpi_spin_try(held), 0))
        rpi_spin_wait(held);
}

static inline void rpi_spin_unlock(atomic_int *held)
{
    atomic_store_explicit(held, 0, memory_order_release);
}

#endif
