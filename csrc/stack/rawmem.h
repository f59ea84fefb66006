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

/* Test-and-test-and-set: one atomic exchange to take, a plain release store
   to drop (a pthread mutex costs a second atomic and two PLT calls on paths
   that run for every malloc and free). Critical sections are a few dozen
   instructions and never call out, so spinning briefly is right; after 100
   tries the waiter yields.

   A single-threaded process takes no lock: glibc clears the flag in
   pthread_create, which cannot run while this thread is inside a critical
   section, and never sets it again in a running process. The release is an
   unconditional store, so a lock taken while threads existed is always
   dropped. */
/* The contended case, out of line so that the callers' fast paths stay
   small (no registers to save for a loop that rarely runs). */
static __attribute__((noinline, cold, unused)) void rpi_spin_wait(atomic_int *held)
{
    for (unsigned n = 0;; n++) {
        if (!atomic_load_explicit(held, memory_order_relaxed) &&
            !atomic_exchange_explicit(held, 1, memory_order_acquire))
            return;
        if (n >= 100)
            sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else
            __builtin_ia32_pause();
#endif
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
