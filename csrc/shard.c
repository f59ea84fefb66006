/*
 * shard.c -- one shard per thread of a thread-safe pool shared by threads.
 *
 * A thread-safe pool (unchecked, without stacks) serves the thread that
 * created it from its own state, as it always did. Any other thread that
 * allocates from it gets a shard: an internal pool of the same backing with
 * its own lock, ring, tag records, free lists (arena) or recycle lists
 * (malloc backing), found through a small per-thread table. A block belongs
 * to the shard it was allocated from for its whole life: its header's tag
 * record names the shard, so rp_free and rp_resize from any thread lock that
 * shard, and a thread allocating and freeing its own blocks touches only its
 * own cache lines (no lock word, ring sentinel or counter moves between the
 * cores).
 *
 * Readers (stats, info, reports, walk, check) and destroy/reset hold the
 * pool's lock and then every shard's lock (that order everywhere; a shard's
 * lock is never held while taking its pool's), and fold the counters: blocks,
 * bytes and allocations are exact sums; peak bytes are summed too, which is
 * exact while only one thread has allocated from the pool and an upper bound
 * after that (docs/concurrency.md).
 *
 * Finding a thread's shard: pool.c first reads the thread's record of the
 * last (pool, shard) it used ("the calling thread's last shard"); on a miss,
 * the pool has a small table of shards indexed by a hash of the thread
 * pointer (pool->tslot), read without a lock and checked against the
 * shard's owner (bias_owner), which needs no thread-local variable. Two threads
 * whose slots collide find theirs in the pool's list of shards (read without
 * a lock: it only grows, by release stores), and only a thread without a
 * shard takes the pool's lock to make one (or to take over one left by a
 * thread that exited). Each thread with shards has a record listing them,
 * with an exit hook: a thread that exits leaves its shards to its pool
 * (blocks, counters, chunks stay), unowned, and gives back their recycle
 * lists; the next thread that needs a shard of that pool takes one over.
 * A destroyed pool's shards lose their threads first.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

static __thread rpi_sthread *tls_thread;   /* default model: the library may be dlopened */
static rpi_lock bind_lock;        /* records, their lists, shards' threads */
rpi_lock *rpi_shard_bind_lockp(void) { return &bind_lock; }
static rpi_sthread *threads;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool exit_key_ok;

static void owned_unlink(rpi_sthread *r, rp_pool *s)   /* bind_lock held */
{
    if (s->thr_prev) s->thr_prev->thr_next = s->thr_next;
    else r->owned = s->thr_next;
    if (s->thr_next) s->thr_next->thr_prev = s->thr_prev;
    s->thr_prev = s->thr_next = NULL;
    s->shard_thread = NULL;
    atomic_store_explicit(&s->bias_owner, NULL, memory_order_relaxed);   /* its slot: stale */
}

/* A thread's record goes: its shards stay with their pools, unowned. */
static void record_free(rpi_sthread *r)
{
    rpi_lock_acquire(&bind_lock);
    while (r->owned) {
        rp_pool *s = r->owned;
        owned_unlink(r, s);
        rpi_shard_trim(s);   /* takes s's lock: bind_lock -> shard lock */
    }
    if (r->prev) r->prev->next = r->next;
    else threads = r->next;
    if (r->next) r->next->prev = r->prev;
    rpi_lock_release(&bind_lock);
    rpi_sys_free(r);
}

/* A thread exits (its key's destructor). */
static void thread_exit(void *arg)
{
    rpi_tcache_forget();   /* before its shards can go to another thread */
    record_free(arg);
    tls_thread = NULL;
}

static void exit_key_make(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

static rpi_sthread *thread_record(void)
{
    rpi_sthread *r = tls_thread;
    if (r) return r;
    pthread_once(&exit_once, exit_key_make);
    if (!exit_key_ok) return NULL;
    r = rpi_sys_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->tp = rpi_thread_self();
    if (pthread_setspecific(exit_key, r) != 0) {
        rpi_sys_free(r);
        return NULL;
    }
    rpi_lock_acquire(&bind_lock);
    r->next = threads;
    if (threads) threads->prev = r;
    threads = r;
    rpi_lock_release(&bind_lock);
    tls_thread = r;
    return r;
}

/* The slot of tp in pool names shard s, unless it names another thread's
   shard (then that thread keeps it, and tp finds s by the list). */
static void slot_offer(rp_pool *pool, void *tp, rp_pool *s)
{
    _Atomic(rp_pool *) *slot = &pool->tslot[rpi_tslot_of(tp)];
    rp_pool *o = atomic_load_explicit(slot, memory_order_acquire);
    if (!o || !atomic_load_explicit(&o->bias_owner, memory_order_relaxed))
        atomic_store_explicit(slot, s, memory_order_release);
}

rp_pool *rpi_shard_bind(rp_pool *pool)
{
    void *tp = rpi_thread_self();
    for (rp_pool *s = __atomic_load_n(&pool->shards, __ATOMIC_ACQUIRE); s; s = s->shard_next) {
        if (atomic_load_explicit(&s->bias_owner, memory_order_relaxed) == tp) {
            slot_offer(pool, tp, s);
            return s;
        }
    }
    rpi_sthread *r = thread_record();
    if (!r) return pool;
    rpi_lock_acquire(&pool->lock);
    rpi_lock_acquire(&bind_lock);
    rp_pool *s;
    for (s = pool->shards; s; s = s->shard_next)
        if (s->shard_thread == r) break;
    if (!s)
        for (s = pool->shards; s; s = s->shard_next)
            if (!s->shard_thread) break;    /* left by a thread that exited */
    if (!s) {
        s = rpi_shard_new(pool);
        if (!s) {
            rpi_lock_release(&bind_lock);
            rpi_lock_release(&pool->lock);
            return pool;
        }
        s->shard_next = pool->shards;
        __atomic_store_n(&pool->shards, s, __ATOMIC_RELEASE);
    }
    if (s->shard_thread != r) {
        s->shard_thread = r;
        atomic_store_explicit(&s->bias_owner, tp, memory_order_relaxed);
        s->thr_prev = NULL;
        s->thr_next = r->owned;
        if (r->owned) r->owned->thr_prev = s;
        r->owned = s;
    }
    slot_offer(pool, tp, s);
    rpi_lock_release(&bind_lock);
    rpi_lock_release(&pool->lock);
    return s;
}

void rpi_shards_unbind(rp_pool *front)
{
    rpi_shard_gen_bump();   /* no thread uses a remembered shard of front again */
    rpi_lock_acquire(&bind_lock);
    for (rp_pool *s = front->shards; s; s = s->shard_next)
        if (s->shard_thread) owned_unlink(s->shard_thread, s);
    rpi_lock_release(&bind_lock);
}

/* ------------------------------------------------------------ readers */
/* Every shard's lock taken: one fence for all the biased ones whose owner
   is another thread, then each owner waited out and the remote frees taken
   in. */
static void shards_exclude(rp_pool *front)
{
    bool fence = false;
    void *self = rpi_thread_self();
    for (rp_pool *s = front->shards; s; s = s->shard_next)
        fence |= (s->flags & RPI_POOL_BIASED) &&
                 atomic_load_explicit(&s->bias_owner, memory_order_relaxed) != self;
    if (fence) (void)rpi_lock_fence();
    for (rp_pool *s = front->shards; s; s = s->shard_next) {
        if (!(s->flags & RPI_POOL_BIASED)) continue;
        if (atomic_load_explicit(&s->bias_owner, memory_order_relaxed) != self)
            rpi_shard_wait_owner(s);
        rpi_shard_drain(s);
    }
}

void rpi_shards_lock(rp_pool *front)
{
    for (rp_pool *s = front->shards; s; s = s->shard_next) rpi_lock_acquire(&s->lock);
    shards_exclude(front);
}

bool rpi_shards_lock_bounded(rp_pool *front)
{
    for (rp_pool *s = front->shards; s; s = s->shard_next) {
        if (!rpi_lock_try_for(&s->lock)) {
            for (rp_pool *u = front->shards; u != s; u = u->shard_next) rpi_lock_release(&u->lock);
            return false;
        }
    }
    shards_exclude(front);
    return true;
}

void rpi_shards_unlock(rp_pool *front)
{
    for (rp_pool *s = front->shards; s; s = s->shard_next) rpi_lock_release(&s->lock);
}

static rpi_tag *find_tag(rp_pool *pool, const rpi_tag *like)
{
    if (!pool->tag_nbuckets) return NULL;
    for (rpi_tag *t = pool->tag_buckets[like->hash & (pool->tag_nbuckets - 1)]; t; t = t->hnext)
        if (t->hash == like->hash && strcmp(t->name, like->name) == 0) return t;
    return NULL;
}

static void fold_add(rpi_tag *m, const rpi_tag *t)
{
    m->f_blocks += rpi_tag_blocks(t);
    m->f_bytes += rpi_tag_bytes(t);
    m->f_peak += t->peak;
    m->f_allocs += t->allocs;
}

void rpi_shards_fold(rp_pool *front, rpi_fold *out)
{
    memset(out, 0, sizeof *out);
    for (rpi_tag *t = front->tag_first; t; t = t->lnext) {
        t->master = t;
        t->f_blocks = t->f_bytes = t->f_peak = 0;
        t->f_allocs = 0;
    }
    for (rp_pool *s = front->shards; s; s = s->shard_next) {
        for (rpi_tag *t = s->tag_first; t; t = t->lnext) {
            /* the pool's record of that name, else the first shard's */
            rpi_tag *m = find_tag(front, t);
            for (rp_pool *e = front->shards; !m && e != s; e = e->shard_next) {
                rpi_tag *x = find_tag(e, t);
                if (x) m = x->master;
            }
            if (!m) {
                m = t;
                t->f_blocks = t->f_bytes = t->f_peak = 0;
                t->f_allocs = 0;
            }
            t->master = m;
        }
    }
    for (rp_pool *p = front; p; p = p == front ? front->shards : p->shard_next) {
        for (rpi_tag *t = p->tag_first; t; t = t->lnext) {
            fold_add(t->master, t);
            out->blocks += rpi_tag_blocks(t);
            out->allocs += t->allocs;
        }
        out->bytes += rpi_pool_bytes(p);
        out->peak += p->peak;
        out->reserved += rpi_pool_reserved(p);
        out->chunks += p->arena ? p->arena->nchunks : 0;
    }
    for (rpi_tag *t = rpi_fold_next(front, NULL); t; t = rpi_fold_next(front, t))
        out->tags += t->f_allocs != 0;
}

rpi_tag *rpi_fold_next(rp_pool *front, rpi_tag *t)
{
    rp_pool *p;
    if (!t) {
        p = front;
        t = front->tag_first;
    } else {
        p = t->pool;
        t = t->lnext;
    }
    for (;;) {
        for (; t; t = t->lnext)
            if (t->master == t) return t;
        p = p == front ? front->shards : p->shard_next;
        if (!p) return NULL;
        t = p->tag_first;
    }
}

/* At unload: the calling thread's record (other threads' records go when
   they exit), and the exit hook, which must not outlive the code. The
   record is found by thread pointer, not through the thread-local variable:
   touching the library's TLS at dlclose would make the loader allocate it
   then (and keep it). */
__attribute__((destructor)) static void shard_at_unload(void)
{
    void *self = rpi_thread_self();
    rpi_lock_acquire(&bind_lock);
    rpi_sthread *r = threads;
    while (r && r->tp != self) r = r->next;
    rpi_lock_release(&bind_lock);
    if (r) {
        (void)pthread_setspecific(exit_key, NULL);
        record_free(r);
    }
    if (exit_key_ok) {
        (void)pthread_key_delete(exit_key);
        exit_key_ok = false;
    }
}
