/*
 * fork.c -- the library's process-wide locks across fork(2).
 *
 * After fork() the child has one thread, but it inherits every lock as it
 * was: a lock another thread of the parent held at that moment stays held
 * in the child for ever, and the child's first rp_free (which may ask the
 * checked-mode registry), pool creation (the live-pool list), first
 * allocation from another thread's pool (the shard bindings), profile
 * start (the sampler's table), arena chunk (the chunk cache) or recorded
 * stack (the stack table) would wait on it. glibc's malloc solves the same
 * problem the same way: before the fork the forking thread takes each of
 * these locks, so no other thread is inside the state they guard; after it
 * the parent releases them and the child starts them afresh (their count of
 * sleeping threads names threads the child does not have).
 *
 * The order is the order in which the library nests them: the live-pool
 * list, then the registry (a report of every live pool takes it for each
 * checked pool), then the shard bindings (taken under a pool's lock), the
 * sampler's table (under a pool's lock), the chunk cache (under any of the
 * above) and last the stack table (a leaf: held only to insert a stack).
 * Pool locks are not taken: a pool another thread was using at the fork is
 * not promised to the child (docs/contract.md, "Threads and fork").
 */
#include "internal.h"
#include "stack/stack.h"

#include <pthread.h>

static rpi_lock *const *locks(size_t *n)
{
    static rpi_lock *all[5];
    all[0] = rpi_live_lockp();
    all[1] = rpi_registry_lockp();
    all[2] = rpi_shard_bind_lockp();
    all[3] = rpi_memprof_lockp();
    all[4] = rpi_chunk_cache_lockp();
    *n = sizeof all / sizeof all[0];
    return all;
}

static void before_fork(void)
{
    size_t n;
    rpi_lock *const *l = locks(&n);
    for (size_t i = 0; i < n; i++) rpi_lock_acquire(l[i]);
    rpi_stack_lock();
}

static void after_fork_parent(void)
{
    size_t n;
    rpi_lock *const *l = locks(&n);
    rpi_stack_unlock();
    for (size_t i = n; i-- > 0;) rpi_lock_release(l[i]);
}

static void after_fork_child(void)
{
    size_t n;
    rpi_lock *const *l = locks(&n);
    rpi_stack_unlock();
    for (size_t i = n; i-- > 0;) {
        atomic_store_explicit(&l[i]->sleepers, 0, memory_order_relaxed);
        atomic_store_explicit(&l[i]->held, 0, memory_order_release);
    }
}

__attribute__((constructor)) static void rpi_fork_init(void)
{
    (void)pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}
