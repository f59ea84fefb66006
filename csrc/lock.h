/*
 * lock.h -- the library's lock (internal, prefix rpi_lock).
 *
 * A word that is 0 (free) or 1 (held), and a count of the threads asleep on
 * it. Taking it is one exchange; giving it back is a plain store and a look
 * at the sleeper count, so an uncontended lock and unlock cost one atomic
 * read-modify-write between them, as a spin lock does.
 *
 * A thread that finds the lock held spins a little (the holder is most
 * likely running on another core and nearly done), then sleeps in the kernel
 * (Linux futex) instead of burning its core: the case where it matters is a
 * holder that was preempted, e.g. more threads than cores.
 *
 * Waking without a read-modify-write in the unlock: the releaser stores 0 and
 * then reads the sleeper count; a store followed by a load of another word
 * may be reordered by the CPU, so a thread about to sleep could be missed.
 * The sleeper makes both sides ordered for both (the asymmetric fence of
 * membarrier(2)): it counts itself, then has every running thread of the
 * process execute a full barrier (MEMBARRIER_CMD_PRIVATE_EXPEDITED), and only
 * then sleeps if the word is still 1. Any releaser then either published its
 * 0 before the barrier (the sleeper sees it and does not sleep) or reads the
 * count after it (and wakes the sleeper). Where membarrier is unavailable
 * (kernels before 4.14, some sandboxes) a sleep is bounded to 200 us, so a
 * missed wake-up costs at most that; with it, sleeps are still bounded (to
 * 50 ms) as a guard, never relied upon.
 */
#ifndef RP_LOCK_H
#define RP_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>

#ifndef RPI_HIDDEN
#define RPI_HIDDEN __attribute__((visibility("hidden")))
#endif

typedef struct rpi_lock {
    atomic_int held;        /* 0 free, 1 held */
    atomic_int sleepers;    /* threads asleep (or about to be) on held */
} rpi_lock;

RPI_HIDDEN void rpi_lock_slow(rpi_lock *l);
RPI_HIDDEN void rpi_lock_wake(rpi_lock *l);
/* Takes l unless it stays held for about a second (then false): for paths
   such as the at-exit report, which must never wait forever. */
RPI_HIDDEN bool rpi_lock_try_for(rpi_lock *l);
/* membarrier(2)'s expedited barrier: whether it works in this process, and
   one (false if it failed). */
RPI_HIDDEN bool rpi_lock_fence_ok(void);
RPI_HIDDEN bool rpi_lock_fence(void);
/* Step `step` (0, 1, 2, ...) of a wait for another thread's progress that
   no one will wake: a pause for the first steps, then a few yields, then
   sleeps of growing length (up to 1 ms), so a waiter never keeps the CPU
   from the thread it waits for (more threads than cores; valgrind, which
   runs one thread at a time). */
RPI_HIDDEN void rpi_lock_backoff(unsigned step);

/* After the store of 0 in an unlock: whether anyone sleeps on l. The read
   stays after the store in the compiled code (the CPU may still perform it
   early: see the membarrier note above). On x86-64 with GCC it is one
   compare with memory and one branch (an atomic load would add a move). */
static inline bool rpi_lock_sleepers_(rpi_lock *l)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    __asm__ goto("cmpl $0, %0\n\tjne %l[some]" : : "m"(l->sleepers) : "cc", "memory" : some);
    return false;
some:
    return true;
#else
    atomic_signal_fence(memory_order_seq_cst);
    return __builtin_expect(atomic_load_explicit(&l->sleepers, memory_order_relaxed) != 0, 0);
#endif
}
#define RPI_LOCK_SLEEPERS(l) __builtin_expect(rpi_lock_sleepers_(l), 0)

/* True when l was free and is now held by the caller. */
static inline bool rpi_lock_try(rpi_lock *l)
{
    return !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

static inline void rpi_lock_acquire(rpi_lock *l)
{
    if (__builtin_expect(rpi_lock_try(l), 1)) return;
    rpi_lock_slow(l);
}

static inline void rpi_lock_release(rpi_lock *l)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
    if (RPI_LOCK_SLEEPERS(l)) rpi_lock_wake(l);
}

/* Unlock, returning whether a sleeper must be woken (rpi_lock_wake): for
   paths that end in a tail call, which the wake-up would otherwise break. */
static inline bool rpi_lock_release_check(rpi_lock *l)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
    return RPI_LOCK_SLEEPERS(l);
}

/* rpi_lock_release for hot paths, returning ret: the wake-up is a tail call
   that hands ret back, so callers keep nothing alive across it (no register
   saved on the way in). */
RPI_HIDDEN void *rpi_lock_wake_ret(rpi_lock *l, void *ret);
static inline void *rpi_lock_release_ret(rpi_lock *l, void *ret)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
    if (RPI_LOCK_SLEEPERS(l)) return rpi_lock_wake_ret(l, ret);
    return ret;
}

#endif /* RP_LOCK_H */
