/* pool.c -- pools, the ring, tags and their counters, allocation, resize,
   free, hierarchy, cleanups and destructors. See internal.h for the header
   and ring invariants and docs/contract.md for the user-facing contract. */
/* Counter updates are two or three scalar adds: vectorising them costs more
   instructions than it saves on the hot paths. */
#pragma GCC optimize("no-tree-slp-vectorize")

#include "internal.h"
#include "poolstack.h"
#include "memprof.h"
#include "memcheck_glue.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char untagged[] = "(untagged)";

/* --------------------------------------------------------- live pools */
rp_pool *rpi_live_head;
static rpi_lock live_lock;
void rpi_live_lock(void) { rpi_lock_acquire(&live_lock); }
rpi_lock *rpi_live_lockp(void) { return &live_lock; }
void rpi_live_unlock(void) { rpi_lock_release(&live_lock); }
bool rpi_live_lock_for_exit(void) { return rpi_lock_try_for(&live_lock); }

/* ---------------------------------------------------------------- tags */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* A pool that can have headerless blocks: an unchecked arena pool. */
static bool hl_pool_kind(const rp_pool *pool)
{
    return pool->arena && pool->arena->off;
}

static rpi_tag *tag_find_or_add(rp_pool *pool, const char *name, bool copy)
{
    uint32_t h = hash_str(name);
    if (pool->tag_nbuckets) {
        for (rpi_tag *t = pool->tag_buckets[h & (pool->tag_nbuckets - 1)]; t; t = t->hnext)
            if (t->hash == h && strcmp(t->name, name) == 0) return t;
    }
    if (pool->ntags + 1 > pool->tag_nbuckets) {
        size_t nb = pool->tag_nbuckets ? pool->tag_nbuckets * 2 : 16;
        rpi_tag **b = rpi_sys_calloc(nb, sizeof *b);
        if (!b) return NULL;
        for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
            t->hnext = b[t->hash & (nb - 1)];
            b[t->hash & (nb - 1)] = t;
        }
        rpi_sys_free(pool->tag_buckets);
        pool->tag_buckets = b;
        pool->tag_nbuckets = nb;
    }
    size_t len = strlen(name);
    rpi_tag *t = rpi_sys_malloc(sizeof *t + (copy ? len + 1 : 0));
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    if (copy) {
        char *s = (char *)(t + 1);
        memcpy(s, name, len + 1);
        t->name = s;
        t->owned = true;
    } else {
        t->name = name;
    }
    t->pool = pool;
    t->hash = h;
    size_t b = h & (pool->tag_nbuckets - 1);
    t->hnext = pool->tag_buckets[b];
    pool->tag_buckets[b] = t;
    if (pool->tag_last) pool->tag_last->lnext = t; else pool->tag_first = t;
    pool->tag_last = t;
    pool->ntags++;
    /* unchecked arena pools: the tag's index for headerless slots now (none
       when the table cannot take it: rpi_tag_lookup_slow) */
    if (hl_pool_kind(pool)) (void)rpi_hl_tag_index(pool, t);
    return t;
}

rpi_tag *rpi_tag_lookup_slow(rp_pool *pool, const char *tag)
{
    const char *name = tag ? tag : untagged;
    /* The record keeps its own copy of the name (a tag may sit in a buffer
       that is reused or freed); the caller's pointer is cached, so later
       calls with it skip the lookup by content (see the contract: a tag
       must not change while the pool may see its pointer). */
    rpi_tag *t = tag_find_or_add(pool, name, tag != NULL);
    /* a record without its headerless index is not cached: alloc_arena_fast
       takes a slot for any cached record without looking at the index */
    if (t && (t->hl_word || !hl_pool_kind(pool))) {
        size_t s = rpi_tag_slot(tag);
        pool->tag_key[s] = tag;
        pool->tag_rec[s] = t;
    }
    return t;
}

const char *rp_pool_intern_tag(rp_pool *pool, const char *s)
{
    if (!pool || !s) {
        rpi_report_error(RP_EINVAL, NULL, "rp_pool_intern_tag: %s is NULL", pool ? "tag" : "pool");
        return NULL;
    }
    rpi_pool_lock(pool);
    rpi_tag *t = tag_find_or_add(pool, s, true);
    if (t && !t->allocs) pool->lflags |= RPI_POOL_UNLISTED;
    rpi_pool_unlock(pool);
    return t ? t->name : NULL;
}

size_t rpi_pool_totals(rp_pool *pool, uint64_t *allocs)
{
    size_t blocks = 0;
    uint64_t n = 0;
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
        blocks += rpi_tag_blocks(t);
        n += t->allocs;
    }
    if (allocs) *allocs = n;
    return blocks;
}

size_t rpi_pool_reserved(rp_pool *pool)
{
    if (pool->arena) return pool->reserved;
    /* malloc backing: headers and payloads of live blocks, alignment slack,
       and the freed blocks kept on the recycle lists */
    return rpi_pool_bytes(pool) + rpi_pool_totals(pool, NULL) * RPI_HDR + pool->reserved + pool->recycled;
}

static void tag_cache_clear(rp_pool *pool)
{
    for (size_t i = 0; i < RPI_TAG_CACHE; i++) {
        pool->tag_key[i] = RPI_NO_TAG;
        pool->tag_rec[i] = NULL;
    }
    pool->last_key = RPI_NO_TAG;
    pool->last_rec = NULL;
}

static void tags_free(rp_pool *pool)
{
    for (rpi_tag *t = pool->tag_first, *n; t; t = n) {
        n = t->lnext;
        rpi_sys_free(t);
    }
    rpi_sys_free(pool->tag_buckets);
    pool->tag_buckets = NULL;
    pool->tag_nbuckets = pool->ntags = 0;
    pool->tag_first = pool->tag_last = NULL;
    tag_cache_clear(pool);
}

static inline void lock_both(rp_pool *pool, bool checked)
{
    rpi_lock_both(pool, checked);   /* a biased pool's owner waited out */
}

static inline void unlock_both(rp_pool *pool, bool checked)
{
    rpi_unlock_both(pool, checked);
}

static void ring_reset(rp_pool *pool)
{
    pool->ring.prev = pool->ring.next = &pool->ring;
}

/* ---------------------------------------------------------- lifecycle */
/* Recycling hides freed blocks from memory checkers: off where one runs
   (ASan builds; valgrind's memcheck, recognised by its answer to a
   V-bits request, which other valgrind tools such as callgrind ignore). */
static bool recycle_allowed(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return false;
#else
#ifdef RPI_HAVE_MEMCHECK_H
    if (RUNNING_ON_VALGRIND) {
        char byte = 0, vbits = 0;
        if (VALGRIND_GET_VBITS(&byte, &vbits, 1) == 1) return false;
    }
#endif
    const char *e = getenv("RINGPOOL_RECYCLE");
    return !(e && strcmp(e, "0") == 0);
#endif
}

bool rpi_recycle_allowed(void) { return recycle_allowed(); }

/* Gives the recycled blocks back to the system (lock held). */
static void recycle_release(rp_pool *pool)
{
    for (unsigned c = 0; c < RPI_RECYCLE_CLASSES; c++) {
        for (rpi_hdr *h = pool->recycle[c], *n; h; h = n) {
            n = h->next;
            rpi_sys_free(h);
        }
        pool->recycle[c] = NULL;
    }
    pool->recycled = 0;
}

static bool shard_bias_allowed(void)
{
    const char *e = getenv("RINGPOOL_SHARD_BIAS");
    return !(e && strcmp(e, "0") == 0);
}
static bool bias_allowed(void) { return rpi_lock_fence_ok() && shard_bias_allowed(); }

/* rp_pool.sync from the pool's flags (set again when RPI_POOL_BIASED is). */
static signed char pool_sync(const rp_pool *pool)
{
    return pool->flags & RP_POOL_UNSYNC    ? 0
           : pool->flags & RPI_POOL_BIASED ? -1
                                           : 1;
}
/* pool->sync and pool->fast_kind from its flags and fast_arena. */
static void pool_set_sync(rp_pool *pool)
{
    pool->sync = pool_sync(pool);
    unsigned f = pool->flags;
    if (pool->fast_arena)
        pool->fast_kind = pool->sync == 0 ? RPI_FAST_UNSYNC : RPI_FAST_OWNED;
    else if (f & RP_POOL_STACKS)
        pool->fast_kind = RPI_FAST_OTHER;
    else if (f & RP_POOL_CHECKED)
        pool->fast_kind = f & RP_POOL_ARENA ? RPI_FAST_CHECKED_ARENA : RPI_FAST_CHECKED_MALLOC;
    else
        pool->fast_kind = pool->sync == 0 ? RPI_FAST_MALLOC_UNSYNC : RPI_FAST_MALLOC_OWNED;
    pool->free_kind = pool->fast_kind == RPI_FAST_UNSYNC          ? RPI_FREE_ARENA_UNSYNC
                      : pool->fast_kind == RPI_FAST_MALLOC_UNSYNC ? RPI_FREE_MALLOC_UNSYNC
                      : pool->sync < 0                            ? RPI_FREE_BIASED
                      : pool->sync > 0                            ? RPI_FREE_LOCK
                                                                  : RPI_FREE_OTHER;
}

static rp_pool *pool_new_in(rp_pool *parent, const char *name, const rp_pool_options *opts,
                            rp_pool *front)
{
    unsigned flags = opts ? opts->flags : 0;
    if (flags & ~(unsigned)(RP_POOL_UNSYNC | RP_POOL_CHECKED | RP_POOL_ARENA | RP_POOL_STACKS |
                            RP_POOL_STACK_DEPTH_MASK)) {
        rpi_report_error(RP_EINVAL, NULL, "rp_pool_create: unknown option flags 0x%x", flags);
        return NULL;
    }
    if (!name) name = "(unnamed)";
    /* an unchecked arena pool's arena follows it (rp_pool.own_arena) */
    rp_pool *pool = rpi_sys_malloc(sizeof *pool + ((flags & (RP_POOL_ARENA | RP_POOL_CHECKED)) ==
                                                           RP_POOL_ARENA
                                                       ? sizeof(rpi_arena)
                                                       : 0));
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    size_t nlen = strlen(name);
    pool->name = rpi_sys_malloc(nlen + 1);
    if (!pool->name) { rpi_sys_free(pool); return NULL; }
    memcpy(pool->name, name, nlen + 1);
    pool->flags = flags & ~RP_POOL_STACK_DEPTH_MASK;   /* the depth goes to poolstack.c */
    tag_cache_clear(pool);
    ring_reset(pool);
    pool->dtors.prev = pool->dtors.next = &pool->dtors;
    if (flags & RP_POOL_ARENA) {
        int rc = rpi_arena_init(pool, opts);
        if (rc != 0) {
            rpi_sys_free(pool->name);
            rpi_sys_free(pool);
            if (rc == RP_EINVAL)
                rpi_report_error(RP_EINVAL, NULL,
                                 "rp_pool_create: chunk_size %zu is larger than the largest "
                                 "block (%zu)", opts->chunk_size, (size_t)RPI_MAX_CHUNK);
            return NULL;
        }
    }
    if (!front && rpi_poolstack_setup(pool, opts, parent) != 0) {
        if (pool->arena) rpi_arena_fini(pool);
        rpi_sys_free(pool->name);
        rpi_sys_free(pool);
        return NULL;
    }
    /* checked and stack pools take the general paths */
    if (!(pool->flags & (RP_POOL_CHECKED | RP_POOL_STACKS))) pool->fast_arena = pool->arena;
    /* recycling on: a non-zero bound (a shard recycles where its pool does) */
    if (!(flags & (RP_POOL_CHECKED | RP_POOL_ARENA)) && (front ? front->recycle_cap != 0
                                                                : recycle_allowed()))
        pool->recycle_cap = front ? RPI_SHARD_RECYCLE_BYTES : RPI_RECYCLE_BYTES;
    pool_set_sync(pool);
    if (front) {
        pool->front = front;   /* used by front's other threads (shard.c) */
        return pool;
    }
    if (RPI_SHARDABLE(pool->flags)) {
        /* its creator allocates and frees without a lock, as a shard's
           owner does (biased), where the fence that orders that for the
           other threads works; else every call of the creator locks */
        void *self = rpi_thread_self();
        atomic_store_explicit(&pool->bias_owner, self, memory_order_relaxed);
        if (bias_allowed()) {
            pool->flags |= RPI_POOL_BIASED;
            pool_set_sync(pool);
            pool->owner = self;
        } else {
            pool->owner = RPI_NO_OWNER;
        }
    }
    if (parent) {
        rpi_pool_lock(parent);
        pool->parent = parent;
        pool->next_sibling = parent->first_child;
        if (parent->first_child) parent->first_child->prev_sibling = pool;
        parent->first_child = pool;
        parent->nchildren++;
        rpi_pool_unlock(parent);
    }
    atomic_fetch_add((flags & RP_POOL_CHECKED) ? &rpi_checked_gate : &rpi_unchecked_pools, 1);
    if (flags & RP_POOL_CHECKED) rpi_slow_sync();
    rpi_live_lock();
    pool->live_next = rpi_live_head;
    if (rpi_live_head) rpi_live_head->live_prev = pool;
    rpi_live_head = pool;
    rpi_live_unlock();
    return pool;
}

static rp_pool *pool_new(rp_pool *parent, const char *name, const rp_pool_options *opts)
{
    return pool_new_in(parent, name, opts, NULL);
}

rp_pool *rpi_shard_new(rp_pool *front)
{
    rp_pool_options o = {.flags = front->flags & RP_POOL_ARENA};
    if (front->arena) {
        o.chunk_size = front->arena->chunk_size;
        o.keep_bytes = front->arena->keep_bytes;
    }
    rp_pool *s = pool_new_in(NULL, front->name, &o, front);
    /* the owner's paths without an atomic instruction need the fence that
       orders them for everyone else (and memory checkers see the pool as
       it is: recycling off there means a checker runs) */
    if (s && bias_allowed()) {
        s->flags |= RPI_POOL_BIASED;
        pool_set_sync(s);
    }
    return s;
}

rp_pool *rp_pool_create(const char *name) { return pool_new(NULL, name, NULL); }
rp_pool *rp_pool_create_ex(const char *name, const rp_pool_options *opts)
{
    return pool_new(NULL, name, opts);
}
static bool check_parent(rp_pool *parent, const char *call)
{
    if (parent) return true;
    rpi_report_error(RP_EINVAL, NULL, "%s: parent pool is NULL", call);
    return false;
}

rp_pool *rp_pool_create_child(rp_pool *parent, const char *name)
{
    if (!check_parent(parent, "rp_pool_create_child")) return NULL;
    /* the child inherits the parent's options: thread rule, checks, backing */
    rp_pool_options o = {.flags = parent->flags & ~RPI_POOL_BIASED};
    if (parent->arena) {
        o.chunk_size = parent->arena->chunk_size;
        o.keep_bytes = parent->arena->keep_bytes;
    }
    return pool_new(parent, name, &o);
}
rp_pool *rp_pool_create_child_ex(rp_pool *parent, const char *name, const rp_pool_options *opts)
{
    if (!check_parent(parent, "rp_pool_create_child_ex")) return NULL;
    return pool_new(parent, name, opts);
}

const char *rp_pool_name(const rp_pool *pool) { return pool ? pool->name : NULL; }
rp_pool *rp_pool_parent(const rp_pool *pool) { return pool ? pool->parent : NULL; }

/* The pool's shards (read under its lock: the list only grows until the
   pool is destroyed, and a shard's link never changes). */
static rp_pool *shards_of(rp_pool *pool)
{
    if (pool->flags & RP_POOL_UNSYNC) return NULL;
    rpi_pool_lock(pool);
    rp_pool *s = pool->shards;
    rpi_pool_unlock(pool);
    return s;
}
static void pool_free_blocks(rp_pool *pool, bool keep_chunks);

/* block's destructor flag set (on) or cleared, the pool's lock held: in a
   headerless slot's word, else in the header (and a checked block's
   record). */
static void block_dtor_flag(void *block, bool checked, bool on)
{
    if (rpi_hl_in(block)) {
        uint32_t *mp = rpi_hl_meta(block);
        /* RPI_HL_PLAIN: live without a destructor */
        *mp = on ? (*mp | RPI_HL_DTOR) & ~RPI_HL_PLAIN : (*mp & ~RPI_HL_DTOR) | RPI_HL_PLAIN;
        return;
    }
    rpi_hdr *h = rpi_hdr_of(block);
    h->word = on ? h->word | RPI_F_DTOR : h->word & ~RPI_F_DTOR;
    if (checked) rpi_registry_update(h);
}

/* Runs a pool's cleanups (LIFO, consumed). Called without the pool lock:
   they may call back into the pool. */
static void run_cleanups(rp_pool *pool)
{
    for (;;) {
        rpi_pool_lock(pool);
        rpi_cleanup *c = pool->cleanups;
        if (c) pool->cleanups = c->next;
        rpi_pool_unlock(pool);
        if (!c) break;
        c->fn(c->arg);
        rpi_sys_free(c);
    }
}

static bool walk_in_progress(rp_pool *pool);
static void pool_teardown_rest(rp_pool *pool, const char *report_reason);
static void pool_release(rp_pool *pool);

/* A pool being destroyed whose destructors have run (its report written,
   RPI_POOL_TORN set): the cleanups they registered and the children they
   created, which the destroy takes on as it did the first ones (its
   cleanups run now, its children are destroyed, then its destructors run
   again) before the pool goes. false: none left, the pool can go. */
static bool teardown_again(rp_pool *pool)
{
    rpi_pool_lock(pool);
    pool->lflags |= RPI_POOL_TORN;
    bool left = pool->cleanups != NULL || pool->first_child != NULL;
    rpi_pool_unlock(pool);
    if (left) run_cleanups(pool);
    return left;
}

int rpi_pool_torn(rp_pool *pool)
{
    rpi_pool_lock(pool);
    int torn = (pool->lflags & RPI_POOL_TORN) != 0;
    rpi_pool_unlock(pool);
    return torn;
}

/* Destroys top's children and theirs, each as rp_pool_destroy would (its
   cleanups, its children, its report, its destructors, its memory), without
   recursion: a pool nested 10^5 deep took a C stack frame per level and
   overflowed the stack. false (nothing more done) when a pool below is being
   walked: its walk's visitor runs unlocked. That is RP_EBUSY through the
   error handler for a destroy (call "rp_pool_destroy"); a reset (call NULL)
   returns it, as it does when the reset pool itself is being walked. */
static bool destroy_children(rp_pool *top, const char *call)
{
    rp_pool *cur = top;
    for (;;) {
        rpi_pool_lock(cur);
        rp_pool *child = cur->first_child;
        rpi_pool_unlock(cur);
        if (child) {
            if (walk_in_progress(child)) {
                if (call)
                    rpi_report_error(RP_EBUSY, NULL, "%s: pool '%s' is being walked "
                                     "(call from a walk visitor?)", call, child->name);
                return false;
            }
            run_cleanups(child);
            cur = child;
            continue;
        }
        if (cur == top) return true;
        rp_pool *up = cur->parent;
        pool_teardown_rest(cur, rpi_pool_torn(cur) ? NULL : "destroy");
        if (teardown_again(cur)) continue;   /* its destructors' children */
        pool_release(cur);
        cur = up;
    }
}

/* Writes the report (if report_reason and $RINGPOOL_REPORT), runs block
   destructors (LIFO): the rest of a teardown once the cleanups have run and
   the children are gone. Called without the pool lock: destructors may call
   back into the pool. */
static void pool_teardown_rest(rp_pool *pool, const char *report_reason)
{
    /* What is still outstanding now is what leaked: report it before it goes. */
    if (report_reason) rpi_report_from_env(pool, report_reason);
    const bool checked = pool->flags & RP_POOL_CHECKED;
    for (;;) {
        lock_both(pool, checked);
        rpi_dtor *d = pool->dtors.prev;   /* last registered first */
        rp_pool *in = pool;
        if (pool->shards) {
            /* the last registered over the pool and its shards */
            rpi_shards_lock(pool);
            for (rp_pool *sh = pool->shards; sh; sh = sh->shard_next) {
                rpi_dtor *e = sh->dtors.prev;
                if (e != &sh->dtors && (d == &in->dtors || e->seq > d->seq)) {
                    d = e;
                    in = sh;
                }
            }
        }
        rp_destructor_fn fn = NULL;
        void *block = NULL;
        if (d != &in->dtors) {
            d->prev->next = d->next;
            d->next->prev = d->prev;
            rpi_ptrmap_del(&in->dtor_map, d->block);
            block_dtor_flag(d->block, checked, false);
            fn = d->fn;
            block = d->block;
            rpi_sys_free(d);
        }
        if (pool->shards) rpi_shards_unlock(pool);
        unlock_both(pool, checked);
        if (!fn) break;
        fn(block);
    }
    rpi_memprof_release_pool(pool);
    for (rp_pool *sh = shards_of(pool); sh; sh = sh->shard_next) rpi_memprof_release_pool(sh);
}

/* Gives back a shard's recycle lists (a thread that used it exited). */
void rpi_shard_trim(rp_pool *shard)
{
    rpi_lock_acquire(&shard->lock);
    if (shard->flags & RPI_POOL_BIASED) rpi_shard_drain(shard);   /* its owner is gone */
    recycle_release(shard);
    rpi_lock_release(&shard->lock);
}

/* Frees every block of a shard, then the shard (no lock held, nobody else
   uses it: its pool is being destroyed). */
void rpi_shard_free(rp_pool *shard)
{
    rpi_lock_acquire(&shard->lock);
    pool_free_blocks(shard, false);
    rpi_lock_release(&shard->lock);
    if (shard->arena) rpi_arena_fini(shard);
    rpi_ptrmap_free(&shard->dtor_map);
    tags_free(shard);
    rpi_sys_free(shard->name);
    rpi_sys_free(shard);
}

static void *raw_of(rpi_hdr *h);

/* Frees every block (lock held by caller or pool private). */
/* Frees every block; registry (checked pools) and pool locks held. */
static void pool_free_blocks(rp_pool *pool, bool keep_chunks)
{
    if (pool->flags & RP_POOL_CHECKED) {
        /* the blocks' memory stays with their retired records */
        rpi_registry_unpark(pool);   /* before the arena's free lists go */
        if (pool->arena) rpi_arena_release(pool, keep_chunks);
        rpi_registry_drop_pool(pool, !keep_chunks);
    } else if (pool->arena) {
        rpi_arena_release(pool, keep_chunks);
    } else {
        /* no walk is in progress (destroy and reset refuse then): no marks;
           malloc backing: no big blocks */
        for (rpi_hdr *h = pool->ring.next, *n; h != &pool->ring; h = n) {
            n = h->next;
            rpi_sys_free(h->word & RPI_F_ALIGNED ? ((void **)h)[-1] : (void *)h);
        }
    }
    if (!pool->arena) pool->reserved = 0;
    recycle_release(pool);
    ring_reset(pool);
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
        t->frees = t->allocs;
        rpi_tag_bytes_clear(t);
    }
    rpi_pool_bytes_clear(pool);
    rpi_poolstack_clear(pool);
}

/* A walk's visitor runs unlocked; destroying or resetting the pool it walks
   would pull the ring from under the walk. */
static bool walk_in_progress(rp_pool *pool)
{
    rpi_pool_lock(pool);
    bool busy = pool->marks != NULL;
    rp_pool *shards = pool->shards;
    rpi_pool_unlock(pool);
    for (rp_pool *sh = shards; sh && !busy; sh = sh->shard_next) {
        rpi_lock_acquire(&sh->lock);
        busy = sh->marks != NULL;
        rpi_lock_release(&sh->lock);
    }
    return busy;
}

void rp_pool_destroy(rp_pool *pool)
{
    if (!pool) return;
    if (walk_in_progress(pool)) {
        rpi_report_error(RP_EBUSY, NULL, "rp_pool_destroy: pool '%s' is being walked (call from "
                         "a walk visitor?)", pool->name);
        return;
    }
    run_cleanups(pool);
    if (!destroy_children(pool, "rp_pool_destroy")) return;
    pool_teardown_rest(pool, "destroy");
    while (teardown_again(pool)) {
        if (!destroy_children(pool, "rp_pool_destroy")) return;
        pool_teardown_rest(pool, NULL);
    }
    pool_release(pool);
}

/* Unlinks a torn-down pool from its parent and the live list, frees its
   blocks, shards and itself. */
static void pool_release(rp_pool *pool)
{
    if (pool->parent) {
        rp_pool *parent = pool->parent;
        rpi_pool_lock(parent);
        if (pool->prev_sibling) pool->prev_sibling->next_sibling = pool->next_sibling;
        else parent->first_child = pool->next_sibling;
        if (pool->next_sibling) pool->next_sibling->prev_sibling = pool->prev_sibling;
        parent->nchildren--;
        rpi_pool_unlock(parent);
    }
    rpi_live_lock();
    if (pool->live_prev) pool->live_prev->live_next = pool->live_next;
    else rpi_live_head = pool->live_next;
    if (pool->live_next) pool->live_next->live_prev = pool->live_prev;
    rpi_live_unlock();

    const bool checked = pool->flags & RP_POOL_CHECKED;
    lock_both(pool, checked);
    pool_free_blocks(pool, false);
    unlock_both(pool, checked);
    rp_pool *shards = shards_of(pool);
    if (shards) {
        rpi_shards_unbind(pool);
        for (rp_pool *sh = shards, *next; sh; sh = next) {
            next = sh->shard_next;
            rpi_shard_free(sh);
        }
        pool->shards = NULL;
    }
    if (pool->arena) rpi_arena_fini(pool);
    pool->fast_arena = NULL;
    rpi_ptrmap_free(&pool->dtor_map);
    rpi_ptrmap_free(&pool->tag_seen);
    rpi_poolstack_fini(pool);
    tags_free(pool);
    atomic_fetch_sub((pool->flags & RP_POOL_CHECKED) ? &rpi_checked_gate : &rpi_unchecked_pools, 1);
    if (pool->flags & RP_POOL_CHECKED) rpi_slow_sync();
    rpi_sys_free(pool->name);
    rpi_sys_free(pool);
}

int rp_pool_reset(rp_pool *pool)
{
    if (!pool) return RP_EINVAL;
    if (walk_in_progress(pool)) return RP_EBUSY;
    run_cleanups(pool);
    if (!destroy_children(pool, NULL)) return RP_EBUSY;
    pool_teardown_rest(pool, NULL);
    const bool checked = pool->flags & RP_POOL_CHECKED;
    lock_both(pool, checked);
    pool_free_blocks(pool, true);
    if (pool->shards) {
        rpi_shards_lock(pool);
        for (rp_pool *sh = pool->shards; sh; sh = sh->shard_next) pool_free_blocks(sh, true);
        rpi_shards_unlock(pool);
    }
    unlock_both(pool, checked);
    return 0;
}

int rp_pool_add_cleanup(rp_pool *pool, rp_cleanup_fn fn, void *arg)
{
    if (!pool || !fn) return RP_EINVAL;
    rpi_cleanup *c = rpi_sys_malloc(sizeof *c);
    if (!c) return RP_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    rpi_pool_lock(pool);
    c->next = pool->cleanups;
    pool->cleanups = c;
    rpi_pool_unlock(pool);
    return 0;
}

int rp_pool_remove_cleanup(rp_pool *pool, rp_cleanup_fn fn, void *arg)
{
    if (!pool || !fn) return RP_EINVAL;
    rpi_pool_lock(pool);
    for (rpi_cleanup **pc = &pool->cleanups; *pc; pc = &(*pc)->next) {
        rpi_cleanup *c = *pc;
        if (c->fn == fn && c->arg == arg) {
            *pc = c->next;
            rpi_pool_unlock(pool);
            rpi_sys_free(c);
            return 0;
        }
    }
    rpi_pool_unlock(pool);
    return RP_ENOTFOUND;
}

/* --------------------------------------------------------- allocation */

static bool is_pow2(size_t x) { return x && !(x & (x - 1)); }
static unsigned log2_of(size_t x) { return (unsigned)__builtin_ctzll(x); }

/* Memory for one unlinked block of the pool's backing (lock held): word holds
   the backing flags, alignment or class, and size. NULL on OOM. */
static rpi_hdr *raw_new(rp_pool *pool, size_t align, size_t size)
{
    rpi_hdr *h;
    if (pool->arena) {
        h = align > _Alignof(max_align_t) ? rpi_arena_alloc_aligned(pool, align, size)
                                          : rpi_arena_alloc(pool, size);
        if (!h) return NULL;
        if (h->word & RPI_F_BIG)
            h->word |= (uint64_t)log2_of(align > 16 ? align : 16) << RPI_ALIGN_SHIFT;
    } else if (align > _Alignof(max_align_t)) {
        size_t slack = sizeof(void *) + (align - 1);
        void *raw = rpi_sys_malloc(RPI_HDR + slack + size);
        if (!raw) return NULL;
        uintptr_t p = ((uintptr_t)raw + RPI_HDR + slack) & ~(uintptr_t)(align - 1);
        h = rpi_hdr_of((void *)p);
        ((void **)h)[-1] = raw;
        h->word = RPI_F_ALIGNED | ((uint64_t)log2_of(align) << RPI_ALIGN_SHIFT);
        pool->reserved += slack;
    } else {
        h = rpi_sys_malloc(rpi_malloc_size(size));
        if (!h) return NULL;
        h->word = 0;
    }
    h->word |= size;
    rpi_asan_big_live(h);
    return h;
}

static void *raw_of(rpi_hdr *h)
{
    if (h->word & RPI_F_ALIGNED) return ((void **)h)[-1];
    if (h->word & RPI_F_BIG) return ((rpi_big *)h - 1)->raw;
    return h;
}

/* Gives back the memory of an unlinked block (lock held). */
static void raw_release(rp_pool *pool, rpi_hdr *h)
{
    if (h->word & (RPI_F_ARENA | RPI_F_BIG)) {
        rpi_arena_free(pool, h);
        return;
    }
    if (h->word & RPI_F_ALIGNED) {
        size_t align = (size_t)1 << ((h->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT);
        pool->reserved -= sizeof(void *) + (align - 1);
    }
    rpi_sys_free(raw_of(h));
}

/* The general allocation path: any pool, any alignment. NULL on OOM. */
static void *alloc_impl(rp_pool *pool, size_t align, size_t size, const char *tag)
{
    const bool checked = pool->flags & RP_POOL_CHECKED;
    if (RPI_UNLIKELY(size > RP_MAX_SIZE)) return NULL;
    /* stack pools: the stack is taken before any lock */
    const bool stacks = pool->flags & RP_POOL_STACKS;
    uint32_t stack_id = stacks ? rpi_poolstack_capture(pool) : 0;
    rpi_srec *srec = NULL;
    lock_both(pool, checked);
    rpi_tag *t = rpi_tag_lookup(pool, tag);
    char changed[300];
    changed[0] = '\0';
    rpi_tag *seen = NULL;
    if (checked && t && tag) {
        /* the content this pointer had when the pool last saw it (whether
           or not the pointer cache still holds it) must be the content now;
           a change is reported, and the block counted under the content now */
        seen = rpi_ptrmap_get(&pool->tag_seen, tag);
        const char *was = seen ? seen->name : t->name;
        bool same = strcmp(t->name, tag) == 0;
        if (RPI_UNLIKELY(was == t->name ? !same : strcmp(was, tag) != 0))
            snprintf(changed, sizeof changed, "tag at %p changed from \"%.100s\" to \"%.100s\" "
                     "while the pool uses it (tags are not copied: use rp_pool_intern_tag)",
                     (const void *)tag, was, tag);
        if (RPI_UNLIKELY(!same)) {
            pool->tag_key[rpi_tag_slot(tag)] = RPI_NO_TAG;
            if (pool->last_key == tag) pool->last_key = RPI_NO_TAG;
            t = rpi_tag_lookup_slow(pool, tag);
        }
    }
    /* a headerless slot (internal.h) while the sampler's countdown is not
       due within it (a sampled block needs a header) */
    if (t && !checked && !stacks && pool->arena && align <= _Alignof(max_align_t) &&
        size - 1 < 16 * pool->arena->hl_cmax && pool->mp_left > (int64_t)size) {
        char *p = rpi_hl_refill(pool, t, (size + 15) >> 4);
        if (p) {
            rpi_asan_slot(p, size, rpi_hl_slot_bytes(p));
            *rpi_hl_meta(p) = t->hl_word | (uint32_t)size;
            rpi_count_new(pool, t, size);
            pool->mp_left -= (int64_t)size;
            unlock_both(pool, checked);
            return p;
        }
    }
    rpi_hdr *h = NULL;
    /* checked: room to remember the tag pointer's content (below) first */
    bool remember = checked && t && tag && seen != t;
    if (!t || (checked && rpi_registry_reserve(pool) != 0) ||
        (remember && rpi_ptrmap_reserve(&pool->tag_seen, 1) != 0) ||
        (stacks && !(srec = rpi_poolstack_prepare(pool, t, stack_id))) ||
        !(h = raw_new(pool, align, size))) {
        if (t && !t->allocs) pool->lflags |= RPI_POOL_UNLISTED;
        unlock_both(pool, checked);
        if (changed[0]) rpi_report_error(RP_EINVAL, NULL, "rp_alloc: %s", changed);
        return NULL;
    }
    h->origin = t;
    if (checked) h->word |= RPI_F_CHECKED;
    if (rpi_on_ring(h->word)) rpi_ring_insert(pool, h);   /* else by chunk, or by record */
    rpi_count_new(pool, t, size);
    if (srec) rpi_poolstack_link(pool, h, srec);
    if (checked) {
        rpi_registry_insert(h, raw_of(h));
        /* remembered for the comparison above (room reserved) */
        if (remember) (void)rpi_ptrmap_put(&pool->tag_seen, (void *)(uintptr_t)tag, t);
        if (t) rpi_checked_saw_tag(pool, tag, t);
    }
    void *p;
    if (rpi_memprof_due(pool, size)) {
        p = rpi_memprof_slow(pool, h, size, checked);   /* unlocks */
    } else {
        unlock_both(pool, checked);
        p = rpi_payload(h);
    }
    if (RPI_UNLIKELY(changed[0])) rpi_report_error(RP_EINVAL, NULL, "rp_alloc: %s", changed);
    return p;
}

static bool check_pool_arg(rp_pool *pool, const char *call)
{
    if (RPI_UNLIKELY(!pool)) {
        rpi_report_error(RP_EINVAL, NULL, "%s: pool is NULL", call);
        return false;
    }
    return true;
}

/* General path: everything the fast paths do not take. plain: OOM handler. */
__attribute__((noinline)) static void *alloc_general(rp_pool *pool, size_t size, const char *tag,
                                                     bool plain)
{
    if (!check_pool_arg(pool, plain ? "rp_alloc" : "rp_alloc_noexc")) return NULL;
    void *p = alloc_impl(pool, 0, size, tag);
    if (RPI_UNLIKELY(!p) && plain) rpi_oom("rp_alloc", size, tag);
    return p;
}

void *rpi_alloc_general(rp_pool *pool, size_t size, const char *tag, bool plain)
{
    return alloc_general(pool, size, tag, plain);
}

static inline void *link_new(rp_pool *pool, rpi_hdr *h, rpi_tag *t, size_t size)
{
    h->origin = t;
    rpi_ring_insert(pool, h);
    if (rpi_memprof_count(pool, t, size)) return rpi_memprof_slow(pool, h, size, false);
    if (pool->flags & RP_POOL_UNSYNC) return rpi_payload(h);
    return rpi_lock_release_ret(&pool->lock, rpi_payload(h));
}


/* A biased shard's allocation that is due for the sampler: the draw takes
   the lock (the owner needs no exclusion from itself). */
__attribute__((noinline)) static void *biased_memprof_slow(rp_pool *pool, rpi_hdr *h, size_t size)
{
    rpi_bias_exit(pool);
    rpi_lock_acquire(&pool->lock);
    return rpi_memprof_slow(pool, h, size, false);
}

/* Malloc backing, a biased pool's owner in its fast section (busy marked)
   whose recycle list of the size's class is empty, with the tag's record t:
   the block from malloc and linked without leaving the section (no lock, no
   second look at the owner or the tag; lock holders wait out the mark while
   malloc runs, as they wait out any fast section). */
__attribute__((noinline)) static void *alloc_malloc_biased(rp_pool *pool, size_t size,
                                                           rpi_tag *t, const char *tag, bool plain)
{
    rpi_hdr *h = rpi_sys_malloc(rpi_malloc_size(size));
    if (RPI_UNLIKELY(!h)) {
        rpi_bias_exit(pool);
        if (plain) rpi_oom("rp_alloc", size, tag);
        return NULL;
    }
    h->word = size;
    h->origin = t;
    rpi_ring_insert(pool, h);
    if (rpi_memprof_count(pool, t, size)) return biased_memprof_slow(pool, h, size);
    rpi_bias_exit(pool);
    return rpi_payload(h);
}

/* Cold exits of the fast paths after their lock is given back with a
   sleeper to wake: out of line, so the fast paths save no register for it. */
__attribute__((noinline)) static void *wake_then_general(rp_pool *pool, size_t size,
                                                        const char *tag, bool plain)
{
    rpi_lock_wake(&pool->lock);
    return alloc_general(pool, size, tag, plain);
}

/* Malloc backing: one malloc, then the bookkeeping under the lock. */
static inline __attribute__((always_inline)) void *alloc_other_thread(rp_pool *pool, size_t size,
                                                                      const char *tag, bool plain);
static inline __attribute__((always_inline)) void *alloc_other_arena(rp_pool *pool, size_t size,
                                                                     const char *tag, bool plain);
static inline __attribute__((always_inline)) void *alloc_other_recycled(rp_pool *pool,
                                                                        size_t size,
                                                                        const char *tag,
                                                                        bool plain);
__attribute__((noinline)) static void *alloc_malloc_fast(rp_pool *pool, size_t size,
                                                         const char *tag, bool plain)
{
    if (RPI_UNLIKELY(size > RP_MAX_SIZE)) return alloc_general(pool, size, tag, plain);
    /* another thread than the creator of a shardable pool: its shard
       (shards and unsynchronised pools have no owner) */
    void *owner = pool->owner;
    if (RPI_UNLIKELY(owner != rpi_thread_self())) {
        if (owner && !(owner == RPI_NO_OWNER && atomic_load_explicit(&pool->bias_owner,
                                                                     memory_order_relaxed) ==
                                                    rpi_thread_self()))
            return alloc_other_thread(pool, size, tag, plain);
        __asm__("" ::: "memory");   /* keeps the creator's test first: one compare */
    }
    rpi_hdr *h = rpi_sys_malloc(rpi_malloc_size(size));
    if (RPI_UNLIKELY(!h)) goto oom;
    h->word = size;
    rpi_pool_lock_owner(pool);   /* past the owner check: the pool's own thread */
    rpi_tag *t = rpi_tag_lookup(pool, tag);
    if (RPI_UNLIKELY(!t)) {
        rpi_pool_unlock(pool);
        rpi_sys_free(h);
        goto oom;
    }
    return link_new(pool, h, t, size);
oom:
    if (plain) rpi_oom("rp_alloc", size, tag);
    return NULL;
}

/* A headerless block (1 to RPI_HL_MAX bytes, internal.h) of an unchecked
   arena pool: alloc_arena_fast below, entered (locked as it says) with the
   tag's record, comes here when its class 1 list is empty. A free slot, or
   one carved from the current chunk; anything else (a new chunk or tag
   index: rpi_hl_refill) still under the lock; the general path when the
   sampler is due (a sampled block has a header). */
static inline __attribute__((always_inline)) void *alloc_hl_general(rp_pool *pool, size_t size,
                                                                    const char *tag, bool plain,
                                                                    const int locked)
{
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock)))
        return wake_then_general(pool, size, tag, plain);
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    return alloc_general(pool, size, tag, plain);
}
/* The slot p (its word *mp written: word, t->hl_word, with the size)
   counted, the pool left. */
static inline __attribute__((always_inline)) void *alloc_hl_done(rp_pool *pool, rpi_tag *t,
                                                                 char *p, uint32_t *mp,
                                                                 uint32_t word, size_t size,
                                                                 const int locked, const bool zero)
{
    *mp = word | (uint32_t)size;
    rpi_asan_unpoison(p, 16);   /* carved: poisoned (asan.h) */
    if (zero) {   /* rp_calloc: the slot's first 16 bytes (its free-list words) */
        ((uint64_t *)(void *)p)[0] = 0;
        ((uint64_t *)(void *)p)[1] = 0;
    }
    rpi_asan_slot(p, size, rpi_hl_slot_bytes(p));
    rpi_count_new(pool, t, size);
    if (locked == RPI_SYNC_LOCK) p = rpi_lock_release_ret(&pool->lock, (void *)p);
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    if (zero && size > 16) return memset(p, 0, size);   /* the rest: a tail call */
    return p;
}
/* No free slot and none left to carve (or no tag index yet): out of line,
   so that the common case saves no register. */
static inline __attribute__((always_inline)) void *alloc_hl_refill(rp_pool *pool, rpi_tag *t,
                                                                   size_t size, const char *tag,
                                                                   bool plain, const int locked)
{
    char *p;
    /* a biased shard's owner takes in the blocks other threads freed first
       (rpi_bias_enter) */
    if ((locked == RPI_SYNC_BIASED &&
         RPI_UNLIKELY(atomic_load_explicit(&pool->remote, memory_order_relaxed) != NULL)) ||
        !(p = rpi_hl_refill(pool, t, (size + 15) >> 4))) {
        pool->mp_left += (int64_t)size;   /* the general path counts it */
        return alloc_hl_general(pool, size, tag, plain, locked);
    }
    return alloc_hl_done(pool, t, p, rpi_hl_meta(p), t->hl_word, size, locked, false);
}
__attribute__((noinline)) static void *alloc_hl_refill_none(rp_pool *pool, rpi_tag *t, size_t size,
                                                            const char *tag, bool plain)
{
    return alloc_hl_refill(pool, t, size, tag, plain, RPI_SYNC_NONE);
}
__attribute__((noinline)) static void *alloc_hl_refill_lock(rp_pool *pool, rpi_tag *t, size_t size,
                                                            const char *tag, bool plain)
{
    return alloc_hl_refill(pool, t, size, tag, plain, RPI_SYNC_LOCK);
}
__attribute__((noinline)) static void *alloc_hl_refill_biased(rp_pool *pool, rpi_tag *t,
                                                              size_t size, const char *tag,
                                                              bool plain)
{
    return alloc_hl_refill(pool, t, size, tag, plain, RPI_SYNC_BIASED);
}
static inline __attribute__((always_inline)) void *alloc_hl(rp_pool *pool, rpi_arena *a,
                                                            rpi_tag *t, size_t size,
                                                            const char *tag, bool plain,
                                                            const int locked)
{
    if (rpi_memprof_due(pool, size)) {   /* a sampled block has a header */
        pool->mp_left += (int64_t)size;   /* the general path counts it */
        return alloc_hl_general(pool, size, tag, plain, locked);
    }
    /* size 0 (class 0, which alloc_arena_fast sends here when its list is
       empty): no headerless slot */
    if (RPI_UNLIKELY(size == 0)) return alloc_hl_general(pool, size, tag, plain, locked);
    size_t k = (size + 15) >> 4;   /* the class */
    void *h = a->free[k];
    char *p;
    uint32_t *mp;
    uint32_t word = t->hl_word;
    if (RPI_LIKELY(rpi_hl_is_enc(h) && word != 0)) {   /* a free slot */
        p = rpi_hl_pop(a, k, h, &mp);
    } else if (word != 0 && a->hl[k].cur < a->hl[k].end) {
        p = rpi_hl_carve(a, k, &mp);
    } else {
        return locked == RPI_SYNC_LOCK     ? alloc_hl_refill_lock(pool, t, size, tag, plain)
               : locked == RPI_SYNC_BIASED ? alloc_hl_refill_biased(pool, t, size, tag, plain)
                                           : alloc_hl_refill_none(pool, t, size, tag, plain);
    }
    return alloc_hl_done(pool, t, p, mp, word, size, locked, false);
}
/* (parameters in the order rp_alloc holds them: few moves before the call;
   the arena is the pool's own, rp_pool.own_arena: passed, its address took
   an instruction on the fast path's way to a free slot) */
__attribute__((noinline)) static void *alloc_hl_none(rp_pool *pool, size_t size, const char *tag,
                                                     bool plain, rpi_tag *t)
{
    return alloc_hl(pool, pool->own_arena, t, size, tag, plain, RPI_SYNC_NONE);
}
__attribute__((noinline)) static void *alloc_hl_lock(rp_pool *pool, size_t size, const char *tag,
                                                     bool plain, rpi_tag *t)
{
    return alloc_hl(pool, pool->own_arena, t, size, tag, plain, RPI_SYNC_LOCK);
}
__attribute__((noinline)) static void *alloc_hl_biased(rp_pool *pool, size_t size, const char *tag,
                                                       bool plain, rpi_tag *t)
{
    return alloc_hl(pool, pool->own_arena, t, size, tag, plain, RPI_SYNC_BIASED);
}

/* rp_calloc's exits from the arena's fast path (alloc_arena_fast_z with
   zero): the same allocation as their rp_alloc counterparts, then the
   memset; out of line, so that the fast path saves no register for them. */
static void *calloc_impl(rp_pool *pool, size_t n, size_t size, const char *tag, const char *call,
                         bool plain);
__attribute__((noinline)) static void *calloc_general(rp_pool *pool, size_t size, const char *tag,
                                                      bool plain)
{
    return calloc_impl(pool, 1, size, tag, plain ? "rp_calloc" : "rp_calloc_noexc", plain);
}
__attribute__((noinline)) static void *wake_then_calloc(rp_pool *pool, size_t size,
                                                        const char *tag, bool plain)
{
    rpi_lock_wake(&pool->lock);
    return calloc_general(pool, size, tag, plain);
}
__attribute__((noinline)) static void *calloc_memprof_slow(rp_pool *pool, rpi_hdr *h, size_t size,
                                                           bool biased)
{
    void *p = biased ? biased_memprof_slow(pool, h, size) : rpi_memprof_slow(pool, h, size, false);
    return memset(p, 0, size);
}
/* how: RPI_SYNC_* << 1 | plain, one argument (six in registers: the fast
   path's call is then a tail call, and rp_calloc keeps no frame) */
__attribute__((noinline)) static void *calloc_hl(rp_pool *pool, size_t size, const char *tag,
                                                 rpi_tag *t, int how)
{
    int locked = how >> 1;
    bool plain = how & 1;
    void *p = locked == RPI_SYNC_LOCK     ? alloc_hl_lock(pool, size, tag, false, t)
              : locked == RPI_SYNC_BIASED ? alloc_hl_biased(pool, size, tag, false, t)
                                          : alloc_hl_none(pool, size, tag, false, t);
    if (RPI_LIKELY(p != NULL)) return memset(p, 0, size);
    if (plain) rpi_oom("rp_calloc", size, tag);
    return NULL;
}

/* The hot path: an unchecked pool and default alignment. The arena case runs
   here without any call when the lock is free, the tag is in the pointer
   cache and the size class has a free block; anything else goes to the
   general path (same effect, slower). */
/* The arena case, specialised at compile time for locked and unsynchronised
   pools so that neither tests the flag again. */
static inline __attribute__((always_inline)) void *alloc_arena_fast_z(rp_pool *pool, rpi_arena *a,
                                                                      size_t size, const char *tag,
                                                                      bool plain, const int locked,
                                                                      const bool zero)
{
#define ARENA_GENERAL() \
    (zero ? calloc_general(pool, size, tag, plain) : alloc_general(pool, size, tag, plain))
    /* an unchecked pool: compact header (internal.h) */
    size_t c;   /* size_t, not unsigned: no zero extension before indexing */
    if (!rpi_arena_class_a(a, size, &c)) return ARENA_GENERAL();
    size_t toff = rpi_tag_off(tag);
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(!rpi_lock_try(&pool->lock)))
        return ARENA_GENERAL();
    if (locked == RPI_SYNC_BIASED && RPI_UNLIKELY(!rpi_bias_enter(pool)))
        return ARENA_GENERAL();
    rpi_tag *t;
    if (locked == RPI_SYNC_NONE && RPI_LIKELY(pool->last_key == tag)) {
        /* the tag of the pool's last allocation: one compare, no slot */
        t = pool->last_rec;
    } else {
        t = rpi_tag_rec_at(pool, toff);
        if (RPI_UNLIKELY(rpi_tag_key_at(pool, toff) != tag)) goto general_locked;
        if (locked == RPI_SYNC_NONE) {
            pool->last_key = tag;
            pool->last_rec = t;
        }
    }
    /* the new block's payload: its header's fields at negative offsets
       from it, the return value without arithmetic */
    char *pl = a->free[c];
    if (RPI_LIKELY(rpi_list_hdr(pl))) {
        a->free[c] = rpi_list_blk(pl)->link;   /* the payload listed (rpi_list_ent) */
        rpi_asan_slot(pl - RPI_AHDR, RPI_AHDR + size, a->cbytes[c]);
        /* an unsynchronised pool's free slot keeps RPI_F_ARENA and the
           class (slot_free): the size in the low half is all it needs */
        if (locked == RPI_SYNC_NONE) rpi_word_lo_set(&rpi_hdr_of(pl)->word, (uint32_t)size);
    } else if (pl != NULL) {
        /* a free headerless slot (rpi_hl_enc: classes 1 to hl_cmax only),
           taken without a call unless the sampler is due (a sampled block
           has a header: alloc_hl) */
        if (RPI_UNLIKELY(rpi_memprof_due(pool, size))) {
            pool->mp_left += (int64_t)size;   /* alloc_hl draws again */
            if (zero) return calloc_hl(pool, size, tag, t, locked << 1 | plain);
            return locked == RPI_SYNC_LOCK     ? alloc_hl_lock(pool, size, tag, plain, t)
                   : locked == RPI_SYNC_BIASED ? alloc_hl_biased(pool, size, tag, plain, t)
                                               : alloc_hl_none(pool, size, tag, plain, t);
        }
        uint32_t *mp;
        char *p = rpi_hl_pop(a, c, pl, &mp);
        return alloc_hl_done(pool, t, p, mp, t->hl_word, size, locked, zero);
    } else {
        if (c <= a->hl_cmax) {
            /* 1 to 16 (or RPI_HL_MAX) bytes: a headerless slot of class c
               (its list is empty: free slots and blocks with a header made
               when no slot could be had are taken above; class 0, size 0,
               finds nothing to carve, and alloc_hl sends it to the general
               path). A slot carved from its
               current chunk, without a call; the rest out of line: alloc_hl
               (the sampler, a new chunk; a pool that can get no new chunk
               of the class, rpi_arena.hl_no, still uses its free slots and the rest of
               its current chunk first, and when they are gone its refill
               fails over to the general path). A tag in the
               pointer cache has its index (rpi_tag_lookup_slow) whenever
               the pool has headerless slots. Other threads free a biased
               pool's headerless blocks under its lock, never through its
               list of remote frees: a biased owner looks at that list only
               before a new chunk (alloc_hl_refill). */
            /* the sampler's countdown before the chunk's bounds: after
               it, GCC formed the class's carve cursor's address and loaded
               the cursor a second time (4 instructions per carve); an
               exhausted chunk gives the bytes back (rare: once per chunk) */
            if (RPI_LIKELY(!rpi_memprof_due(pool, size))) {
                if (RPI_LIKELY(a->hl[c].cur < a->hl[c].end)) {
                    uint32_t *mp;
                    char *p = rpi_hl_carve(a, c, &mp);
                    return alloc_hl_done(pool, t, p, mp, t->hl_word, size, locked, zero);
                }
            }
            pool->mp_left += (int64_t)size;   /* alloc_hl draws again */
            if (zero) return calloc_hl(pool, size, tag, t, locked << 1 | plain);
            return locked == RPI_SYNC_LOCK     ? alloc_hl_lock(pool, size, tag, plain, t)
                   : locked == RPI_SYNC_BIASED ? alloc_hl_biased(pool, size, tag, plain, t)
                                               : alloc_hl_none(pool, size, tag, plain, t);
        }
        /* a biased shard's owner takes in the blocks other threads freed
           before it carves (rpi_bias_enter) */
        if (locked == RPI_SYNC_BIASED &&
            RPI_UNLIKELY(atomic_load_explicit(&pool->remote, memory_order_relaxed) != NULL))
            goto general_locked;
        /* carve from the current chunk (the class size only here: a free
           list hit does not compute it) */
        size_t cs = a->carve[c];
        char *h = a->cur;   /* an rpi_hdr address: the slot starts 16 bytes later */
        /* the new end compared as an integer (a pointer past the chunk's
           end is not one C may form; no overflow: cur and cs are far below
           2^63, and class 1's UINT32_MAX never fits) */
        uintptr_t next = (uintptr_t)h + cs;
        if (RPI_UNLIKELY(next > (uintptr_t)a->end)) goto general_locked;
        a->cur = (char *)next;
        pl = h + RPI_HDR;
        rpi_asan_slot(pl - RPI_AHDR, RPI_AHDR + size, cs);   /* before the header's writes */
        if (locked == RPI_SYNC_NONE) rpi_hdr_of(pl)->word = a->hword[c] | size;
    }
    /* a thread-safe pool's list hit and carve: the whole word (its free
       slots have no RPI_F_ARENA: slot_free) */
    if (locked != RPI_SYNC_NONE) rpi_hdr_of(pl)->word = a->hword[c] | size;   /* RPI_F_ARENA, the class */
    rpi_hdr_of(pl)->origin = t;   /* not on the ring: walks find it in its chunk */
    if (rpi_memprof_count(pool, t, size)) {
        /* the header's address formed here (the empty asm: GCC hoisted
           it onto the fast path, into a register of its own) */
        char *q = pl;
        __asm__("" : "+r"(q));
        rpi_hdr *h = rpi_hdr_of(q);
        if (zero) return calloc_memprof_slow(pool, h, size, locked == RPI_SYNC_BIASED);
        if (locked == RPI_SYNC_BIASED) return biased_memprof_slow(pool, h, size);
        return rpi_memprof_slow(pool, h, size, false);
    }
    if (zero) {
        /* rp_calloc: the memset a tail call */
        void *z = pl;
        if (locked == RPI_SYNC_LOCK) z = rpi_lock_release_ret(&pool->lock, z);
        if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
        return memset(z, 0, size);
    }
    if (locked == RPI_SYNC_LOCK) return rpi_lock_release_ret(&pool->lock, pl);
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    return pl;
general_locked:
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock)))
        return zero ? wake_then_calloc(pool, size, tag, plain)
                    : wake_then_general(pool, size, tag, plain);
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    return ARENA_GENERAL();
#undef ARENA_GENERAL
}
#define alloc_arena_fast(pool, a, size, tag, plain, locked) \
    alloc_arena_fast_z(pool, a, size, tag, plain, locked, false)

__attribute__((noinline)) static void *wake_then_malloc(rp_pool *pool, size_t size,
                                                       const char *tag, bool plain)
{
    rpi_lock_wake(&pool->lock);
    return alloc_malloc_fast(pool, size, tag, plain);
}

/* Malloc backing, a recycled block of the size's class (size <= RPI_RECYCLE_MAX),
   specialised like the arena case. */
static inline __attribute__((always_inline)) void *alloc_recycled_fast(rp_pool *pool, size_t size,
                                                                       const char *tag, bool plain,
                                                                       const int locked)
{
    size_t c = (size + 15) >> 4;
    size_t slot = rpi_tag_slot(tag);
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(!rpi_lock_try(&pool->lock)))
        return alloc_malloc_fast(pool, size, tag, plain);
    if (locked == RPI_SYNC_BIASED && RPI_UNLIKELY(!rpi_bias_enter(pool)))
        return alloc_general(pool, size, tag, plain);
    rpi_tag *t = pool->tag_rec[slot];
    rpi_hdr *h = pool->recycle[c];
    /* the tag's key tested once on every way: the class's list empty is
       malloc's, still in the section for a biased owner whose tag is in
       the cache with nothing freed by other threads to take in */
    if (RPI_UNLIKELY(!h)) {
        if (locked == RPI_SYNC_BIASED && pool->tag_key[slot] == tag &&
            RPI_LIKELY(atomic_load_explicit(&pool->remote, memory_order_relaxed) == NULL))
            return alloc_malloc_biased(pool, size, t, tag, plain);
        goto miss;
    }
    if (RPI_UNLIKELY(pool->tag_key[slot] != tag)) goto miss;
    pool->recycle[c] = h->next;
    pool->recycled -= RPI_HDR + 16 * (size_t)c;
    h->word = size;
    h->origin = t;
    rpi_ring_insert(pool, h);
    if (rpi_memprof_count(pool, t, size)) {
        if (locked == RPI_SYNC_BIASED) return biased_memprof_slow(pool, h, size);
        return rpi_memprof_slow(pool, h, size, false);
    }
    if (locked == RPI_SYNC_LOCK) return rpi_lock_release_ret(&pool->lock, rpi_payload(h));
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    return rpi_payload(h);
miss:
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock)))
        return wake_then_malloc(pool, size, tag, plain);
    if (locked == RPI_SYNC_BIASED) {
        rpi_bias_exit(pool);
        /* blocks other threads freed are taken in before a malloc */
        if (RPI_UNLIKELY(atomic_load_explicit(&pool->remote, memory_order_relaxed) != NULL))
            return alloc_general(pool, size, tag, plain);
    }
    return alloc_malloc_fast(pool, size, tag, plain);
}

/* mine: pool is the calling thread's own and locked (a shard without bias,
   or the pool for its creator where there is no bias); else a thread-safe
   pool is used directly, without a lock, only by the thread that created it
   (its owner, biased), and through their shards by the others (shard.c).
   Here not an unchecked arena pool (fast_arena NULL): the malloc backing's
   fast paths, or the checked ones. */
static inline __attribute__((always_inline)) void *alloc_fast_other(rp_pool *pool, size_t size,
                                                                    const char *tag, bool plain,
                                                                    const bool mine)
{
    if (!mine) {
        /* the kind byte (RPI_FAST_MALLOC_*), where the flags took a load
           and two tests */
        RPI_FAST_MALLOC_KIND(pool, unsync, other);
        if (pool->recycle_cap && size <= RPI_RECYCLE_MAX) {
            if (RPI_UNLIKELY(pool->owner != rpi_thread_self()))
                return alloc_other_recycled(pool, size, tag, plain);
            return alloc_recycled_fast(pool, size, tag, plain, RPI_SYNC_BIASED);
        }
        return alloc_malloc_fast(pool, size, tag, plain);   /* checks the owner */
    unsync:
        if (pool->recycle_cap && size <= RPI_RECYCLE_MAX)
            return alloc_recycled_fast(pool, size, tag, plain, RPI_SYNC_NONE);
        return alloc_malloc_fast(pool, size, tag, plain);
    other:
        RPI_FAST_CHECKED_KIND(pool, checked_arena, checked_malloc);
        return rpi_checked_alloc(pool, size, tag, plain);
    checked_arena:
        return plain ? rpi_checked_alloc_arena_plain(pool, size, tag)
                     : rpi_checked_alloc_arena_noexc(pool, size, tag);
    checked_malloc:
        return plain ? rpi_checked_alloc_malloc_plain(pool, size, tag)
                     : rpi_checked_alloc_malloc_noexc(pool, size, tag);
    }
    unsigned f = pool->flags;
    if (RPI_UNLIKELY(f & (RP_POOL_CHECKED | RP_POOL_STACKS)))
        return rpi_checked_alloc(pool, size, tag, plain);
    if (pool->recycle_cap && size <= RPI_RECYCLE_MAX) {
        if (f & RP_POOL_UNSYNC) return alloc_recycled_fast(pool, size, tag, plain, false);
        if (mine) return alloc_recycled_fast(pool, size, tag, plain, RPI_SYNC_LOCK);
        if (RPI_UNLIKELY(pool->owner != rpi_thread_self()))
            return alloc_other_recycled(pool, size, tag, plain);
        return alloc_recycled_fast(pool, size, tag, plain, RPI_SYNC_BIASED);
    }
    return alloc_malloc_fast(pool, size, tag, plain);   /* checks the owner */
}
static inline __attribute__((always_inline)) void *alloc_fast_in(rp_pool *pool, size_t size,
                                                                 const char *tag, bool plain,
                                                                 const bool mine)
{
    if (RPI_UNLIKELY(!pool)) return alloc_general(pool, size, tag, plain);
    if (!mine) {
        /* an unsynchronised arena pool by one compare of the kind byte,
           where the arena pointer took a load and a test and the sync
           byte a compare (a thread-safe one's path costs the same) */
        RPI_FAST_ARENA_KIND(pool, unsync, other);
        if (RPI_UNLIKELY(pool->owner != rpi_thread_self()))
            return alloc_other_arena(pool, size, tag, plain);
        return alloc_arena_fast(pool, pool->own_arena, size, tag, plain, RPI_SYNC_BIASED);
    unsync:
        return alloc_arena_fast(pool, pool->own_arena, size, tag, plain, RPI_SYNC_NONE);
    other:
        return alloc_fast_other(pool, size, tag, plain, false);
    }
    rpi_arena *a = pool->fast_arena;
    if (!a) return alloc_fast_other(pool, size, tag, plain, mine);
    /* the kind byte (rp_pool.sync, 0: unsynchronised): one compare where
       the flags took a load and a test */
    a = pool->own_arena;   /* fast_arena, at a constant offset */
    if (pool->sync == 0) return alloc_arena_fast(pool, a, size, tag, plain, false);
    if (mine) return alloc_arena_fast(pool, a, size, tag, plain, RPI_SYNC_LOCK);
    if (RPI_UNLIKELY(pool->owner != rpi_thread_self()))
        return alloc_other_arena(pool, size, tag, plain);
    return alloc_arena_fast(pool, a, size, tag, plain, RPI_SYNC_BIASED);
}

static inline __attribute__((always_inline)) void *alloc_fast(rp_pool *pool, size_t size,
                                                              const char *tag, bool plain)
{
    return alloc_fast_in(pool, size, tag, plain, false);
}

/* An allocation in the calling thread's own shard s: as its owner, without
   a lock when the shard is biased. */
static inline __attribute__((always_inline)) void *alloc_in_shard(rp_pool *s, size_t size,
                                                                  const char *tag, bool plain)
{
    if (RPI_LIKELY(s->flags & RPI_POOL_BIASED)) {
        /* its owner: no lock (internal.h, rpi_bias_enter) */
        if (s->fast_arena) return alloc_arena_fast(s, s->own_arena, size, tag, plain, RPI_SYNC_BIASED);
        if (s->recycle_cap && size <= RPI_RECYCLE_MAX)
            return alloc_recycled_fast(s, size, tag, plain, RPI_SYNC_BIASED);
    }
    return alloc_fast_in(s, size, tag, plain, true);
}

/* ----------------------------------------- the calling thread's last shard
   Every allocation by a thread other than a pool's creator needs that
   thread's shard. The pool's slots (pool->tslot) find it without a
   thread-local variable, but the slot's address comes from the thread
   pointer and the shard's from the slot: loads in a row before the
   allocation can start, which cost far more CPU time than their
   instructions (docs/concurrency.md). So each thread also remembers the
   last (pool, shard) it allocated from, in a thread-local record read
   %fs-relative: at a constant offset in a program (code built into it, or
   the static library, through a TLS descriptor the linker turns into that
   constant), at an offset read from the GOT in the shared library (the
   initial-exec model, which puts the library's thread-local data in the
   static TLS block, so it must stay a few words: csrc/stack/stack.h). The
   record is trusted while the
   generation it was made in is current: the generation moves whenever a
   pool's shards lose their threads (destroy), and a thread forgets its
   record when it exits (before its shards can go to other threads), so a
   remembered shard is always the thread's own. Built with
   RPI_NO_STATIC_TLS, the shared library keeps to the slots (and takes no
   static TLS: docs/concurrency.md). */
typedef struct rpi_tcache {
    rp_pool *front, *shard;
    uint64_t gen;
} rpi_tcache;
static _Atomic uint64_t shard_gen = 1;

void rpi_shard_gen_bump(void)
{
    atomic_fetch_add_explicit(&shard_gen, 1, memory_order_release);
}

/* RPI_TCACHE: 1 the compiler reaches the record (a program, or the shared
   library, built with RPI_INITIAL_EXEC: csrc/flags.mk), 2 a TLS descriptor
   (the static library on x86-64), 0 no record (the slots alone: other
   shared objects built from these files, such as the Python extension,
   whose own thread-local data is too big for static TLS). */
#if !defined(__PIC__)
#define RPI_TCACHE 1
#elif defined(RPI_STATIC_LIB) && defined(__x86_64__)
#define RPI_TCACHE 2
#elif defined(RPI_INITIAL_EXEC) && !defined(RPI_NO_STATIC_TLS) && !defined(RPI_STATIC_LIB)
#define RPI_TCACHE 1
#else
#define RPI_TCACHE 0
#endif

#if RPI_TCACHE
__attribute__((visibility("hidden"))) __thread rpi_tcache rpi_tcache_tls
#if defined(__PIC__) && RPI_TCACHE == 1
    __attribute__((tls_model("initial-exec")))
#endif
    ;

void rpi_tcache_forget(void)
{
    rpi_tcache_tls.front = NULL;
}
#endif

#if RPI_TCACHE == 1
/* The compiler's access: %fs-relative loads at a constant offset (a
   program) or at an offset loaded from the GOT (a shared object). Whether
   the calling thread remembers its shard of pool (then in *s). */
static inline __attribute__((always_inline)) bool tcache_shard(rp_pool *pool, rp_pool **s)
{
    if (RPI_LIKELY(rpi_tcache_tls.front == pool) &&
        RPI_LIKELY(rpi_tcache_tls.gen == atomic_load_explicit(&shard_gen, memory_order_relaxed))) {
        *s = rpi_tcache_tls.shard;
        return true;
    }
    return false;
}
/* s is the calling thread's shard of pool (its owner is the caller), found
   in generation gen (read before the lookup): remembered if it is biased
   (a flag a shard keeps for life). */
static void tcache_set(rp_pool *pool, rp_pool *s, uint64_t gen)
{
    if (!(s->flags & RPI_POOL_BIASED)) return;   /* see alloc_other_arena_in */
    rpi_tcache_tls.front = pool;
    rpi_tcache_tls.shard = s;
    rpi_tcache_tls.gen = gen;
}
#elif RPI_TCACHE == 2
/* The static library (position-independent code, which may also end up in
   a shared object): the record's offset from the thread pointer, by its TLS
   descriptor. Linked into a program, the linker makes it a constant (no
   call is left); in a shared object the descriptor's function returns it,
   changing no register but %rax, and may run C code (glibc's, the first
   time a thread of a dlopened object gets here): the call is made past this
   function's red zone on a 16-byte aligned stack (the old stack pointer
   waits in %r11, which the call keeps), with the vector registers declared
   clobbered (glibc before 2.40 does not keep them there). */
static inline __attribute__((always_inline)) uintptr_t tcache_off(void)
{
    uintptr_t off;
    __asm__("mov %%rsp, %%r11\n\t"
            "lea -128(%%rsp), %%rsp\n\t"
            "and $-16, %%rsp\n\t"
            "lea rpi_tcache_tls@TLSDESC(%%rip), %%rax\n\t"
            "call *rpi_tcache_tls@TLSCALL(%%rax)\n\t"
            "mov %%r11, %%rsp"
            : "=a"(off)
            :
            : "r11", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
              "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return off;
}
/* One word of the record, by a %fs-relative load: its address is known
   without loading the thread pointer first. */
static inline __attribute__((always_inline)) uintptr_t tcache_word(uintptr_t off,
                                                                   const size_t field)
{
    uintptr_t v;
    __asm__ volatile("mov %%fs:%c2(%1), %0" : "=r"(v) : "r"(off), "i"(field * 8));
    return v;
}
static inline __attribute__((always_inline)) bool tcache_shard(rp_pool *pool, rp_pool **s)
{
    uintptr_t off = tcache_off();
    if (RPI_LIKELY(tcache_word(off, 0) == (uintptr_t)pool) &&
        RPI_LIKELY(tcache_word(off, 2) == atomic_load_explicit(&shard_gen, memory_order_relaxed))) {
        *s = (rp_pool *)tcache_word(off, 1);
        return true;
    }
    return false;
}
static void tcache_set(rp_pool *pool, rp_pool *s, uint64_t gen)
{
    if (!(s->flags & RPI_POOL_BIASED)) return;   /* see alloc_other_arena_in */
    rpi_tcache *c = (rpi_tcache *)((char *)rpi_thread_self() + tcache_off());
    c->front = pool;
    c->shard = s;
    c->gen = gen;
}
#else
/* No record: the pool's slots alone. */
void rpi_tcache_forget(void) {}
static inline bool tcache_shard(rp_pool *pool, rp_pool **s)
{
    (void)pool, (void)s;
    return false;
}
static void tcache_set(rp_pool *pool, rp_pool *s, uint64_t gen)
{
    (void)pool, (void)s, (void)gen;
}
#endif

/* The pool's slot does not name the calling thread's shard: found or made
   (shard.c), or the pool itself if none can be made. */
__attribute__((noinline)) static void *alloc_bind(rp_pool *pool, size_t size, const char *tag,
                                                  bool plain)
{
    /* the creator of a pool without bias (pool->owner is RPI_NO_OWNER): the
       pool itself, locked */
    if (atomic_load_explicit(&pool->bias_owner, memory_order_relaxed) == rpi_thread_self())
        return alloc_fast_in(pool, size, tag, plain, true);
    uint64_t gen = atomic_load_explicit(&shard_gen, memory_order_acquire);
    rp_pool *shard = rpi_shard_bind(pool);
    if (RPI_UNLIKELY(shard == pool)) return alloc_general(pool, size, tag, plain);
    tcache_set(pool, shard, gen);
    return alloc_in_shard(shard, size, tag, plain);
}

/* The calling thread's (tp's) shard of pool as the pool's slot for tp
   names it, or NULL when the slot holds no shard of tp's. */
static inline __attribute__((always_inline)) rp_pool *slot_shard(rp_pool *pool, void *tp)
{
    rp_pool *s = atomic_load_explicit(&pool->tslot[rpi_tslot_of(tp)], memory_order_acquire);
    if (RPI_UNLIKELY(!s || atomic_load_explicit(&s->bias_owner, memory_order_relaxed) != tp))
        return NULL;
    return s;
}

/* For an always-inline body NAME_in(pool, size, tag, const bool plain):
   its two out-of-line specialisations, NAME_plain and NAME_noexc, and the
   always-inline DISPATCH(pool, size, tag, plain) that calls the one plain
   asks for (so that neither saves a register for the other's case). */
#define PLAIN_AND_NOEXC(name, dispatch)                                                      \
    __attribute__((noinline)) static void *name##_plain(rp_pool *pool, size_t size,          \
                                                        const char *tag)                     \
    {                                                                                        \
        return name##_in(pool, size, tag, true);                                             \
    }                                                                                        \
    __attribute__((noinline)) static void *name##_noexc(rp_pool *pool, size_t size,          \
                                                        const char *tag)                     \
    {                                                                                        \
        return name##_in(pool, size, tag, false);                                            \
    }                                                                                        \
    static inline __attribute__((always_inline)) void *dispatch(rp_pool *pool, size_t size,  \
                                                                const char *tag, bool plain) \
    {                                                                                        \
        return plain ? name##_plain(pool, size, tag) : name##_noexc(pool, size, tag);       \
    }

/* A thread other than the pool's creator: its shard, found through the
   pool's slot for the thread pointer and checked against the shard's owner
   (shard.c). No call and no thread-local variable on the way, so every exit
   is a return or a tail call; specialised for plain, so that it saves no
   register either. */
static inline __attribute__((always_inline)) void *alloc_other_in(rp_pool *pool, size_t size,
                                                                  const char *tag,
                                                                  const bool plain)
{
    rp_pool *s;
    if (RPI_LIKELY(tcache_shard(pool, &s))) return alloc_in_shard(s, size, tag, plain);
    uint64_t gen = atomic_load_explicit(&shard_gen, memory_order_acquire);
    s = slot_shard(pool, rpi_thread_self());
    if (RPI_UNLIKELY(!s)) return alloc_bind(pool, size, tag, plain);
    tcache_set(pool, s, gen);
    return alloc_in_shard(s, size, tag, plain);
}
PLAIN_AND_NOEXC(alloc_other, alloc_other_thread)

/* The same, specialised by what the pool's own dispatch already knows (its
   shards have the pool's backing and recycling), so that the shard's flags
   are tested once: the arena (a shard of an arena pool has a fast arena),
   and the malloc backing's recycled classes (size <= RPI_RECYCLE_MAX). The
   calling thread's record names biased shards only (tcache_set), so a
   shard found there goes straight to its owner's path; without a record,
   the pool's slot, and the shard's flags. */
static inline __attribute__((always_inline)) void *alloc_other_arena_in(rp_pool *pool, size_t size,
                                                                        const char *tag,
                                                                        const bool plain)
{
    rp_pool *s;
    if (RPI_TCACHE) {
        if (RPI_LIKELY(tcache_shard(pool, &s)))
            return alloc_arena_fast(s, s->own_arena, size, tag, plain, RPI_SYNC_BIASED);
        return alloc_other_thread(pool, size, tag, plain);
    }
    s = slot_shard(pool, rpi_thread_self());
    if (RPI_UNLIKELY(!s)) return alloc_other_thread(pool, size, tag, plain);
    if (RPI_LIKELY(s->flags & RPI_POOL_BIASED))
        return alloc_arena_fast(s, s->own_arena, size, tag, plain, RPI_SYNC_BIASED);
    return alloc_fast_in(s, size, tag, plain, true);
}
PLAIN_AND_NOEXC(alloc_other_arena, alloc_other_arena)
static inline __attribute__((always_inline)) void *alloc_other_recycled_in(rp_pool *pool,
                                                                           size_t size,
                                                                           const char *tag,
                                                                           const bool plain)
{
    rp_pool *s;
    if (RPI_TCACHE) {
        if (RPI_LIKELY(tcache_shard(pool, &s)))
            return alloc_recycled_fast(s, size, tag, plain, RPI_SYNC_BIASED);
        return alloc_other_thread(pool, size, tag, plain);
    }
    s = slot_shard(pool, rpi_thread_self());
    if (RPI_UNLIKELY(!s)) return alloc_other_thread(pool, size, tag, plain);
    if (RPI_LIKELY(s->flags & RPI_POOL_BIASED))
        return alloc_recycled_fast(s, size, tag, plain, RPI_SYNC_BIASED);
    return alloc_fast_in(s, size, tag, plain, true);
}
PLAIN_AND_NOEXC(alloc_other_recycled, alloc_other_recycled)

void *rp_alloc_noexc(rp_pool *pool, size_t size, const char *tag)
{
    return alloc_fast(pool, size, tag, false);
}

void *rp_alloc(rp_pool *pool, size_t size, const char *tag)
{
    return alloc_fast(pool, size, tag, true);
}

/* rp_alloc_noexc's fast paths, out of line for calloc_impl: inlined there
   they would be followed by the memset, so none of their exits could be a
   tail call and every calloc would save and restore five registers. */
__attribute__((noinline)) static void *alloc_for_calloc(rp_pool *pool, size_t size, const char *tag)
{
    return alloc_fast(pool, size, tag, false);
}

/* A big block of an unsynchronised unchecked arena pool: big_alloc takes
   it zeroed from the system's calloc (which clears only what is not fresh
   from the kernel) and says so (rpi_arena.big_zero); out of line, so that
   calloc_impl keeps no register for it. */
__attribute__((noinline)) static void *calloc_big(rp_pool *pool, rpi_arena *a, size_t total,
                                                  const char *tag, const char *call, bool plain)
{
    a->big_zero = RPI_BIG_ZERO_WANTED;
    void *p = alloc_for_calloc(pool, total, tag);
    bool zeroed = a->big_zero == RPI_BIG_ZERO_DONE;
    a->big_zero = 0;
    if (RPI_LIKELY(p != NULL)) return zeroed ? p : memset(p, 0, total);
    if (plain) rpi_oom(call, total, tag);
    return NULL;
}

static void *calloc_impl(rp_pool *pool, size_t n, size_t size, const char *tag, const char *call,
                         bool plain)
{
    if (!check_pool_arg(pool, call)) return NULL;
    size_t total;
    void *p = NULL;
    if (__builtin_mul_overflow(n, size, &total)) {
        total = SIZE_MAX;
    } else {
        if (RPI_UNLIKELY(total > RPI_BIG_LIMIT - RPI_HDR) &&
            (pool->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED)) == RP_POOL_UNSYNC &&
            pool->arena != NULL)
            return calloc_big(pool, pool->arena, total, tag, call, plain);
        p = alloc_for_calloc(pool, total, tag);
        if (RPI_LIKELY(p != NULL)) return memset(p, 0, total);   /* a tail call */
    }
    if (plain) rpi_oom(call, total, tag);
    return NULL;
}

/* An unchecked arena pool, unsynchronised or used by its owner: the arena's
   fast path with the memset as its tail call (alloc_arena_fast_z), no call
   before it; anything else through calloc_impl. */
static inline __attribute__((always_inline)) void *calloc_fast(rp_pool *pool, size_t n,
                                                               size_t size, const char *tag,
                                                               bool plain)
{
    size_t total;
    const char *call = plain ? "rp_calloc" : "rp_calloc_noexc";
    if (RPI_UNLIKELY(pool == NULL)) return calloc_impl(pool, n, size, tag, call, plain);
    /* neither n nor size is needed after the product (the exits below pass
       n * size as 1 x total, an overflow as SIZE_MAX x 2, which
       calloc_impl finds overflowing again): mul may overwrite size's
       register, and no register is copied around it */
    if (RPI_UNLIKELY(__builtin_mul_overflow(n, size, &total)))
        return calloc_impl(pool, SIZE_MAX, 2, tag, call, plain);
    /* the kind byte as in alloc_fast_in */
    RPI_FAST_UNSYNC_GOTO(pool, unsync);
    if (pool->fast_arena && RPI_LIKELY(pool->owner == rpi_thread_self()))
        return alloc_arena_fast_z(pool, pool->own_arena, total, tag, plain, RPI_SYNC_BIASED, true);
    return calloc_impl(pool, 1, total, tag, call, plain);
unsync:
    return alloc_arena_fast_z(pool, pool->own_arena, total, tag, plain, RPI_SYNC_NONE, true);
}

void *rp_calloc(rp_pool *pool, size_t n, size_t size, const char *tag)
{
    return calloc_fast(pool, n, size, tag, true);
}
void *rp_calloc_noexc(rp_pool *pool, size_t n, size_t size, const char *tag)
{
    return calloc_fast(pool, n, size, tag, false);
}

static void *aligned_impl(rp_pool *pool, size_t align, size_t size, const char *tag,
                          const char *call, bool plain)
{
    if (!check_pool_arg(pool, call)) return NULL;
    if (!is_pow2(align) || align > RP_MAX_ALIGN) {
        rpi_report_error(RP_EALIGN, NULL, "%s: alignment %zu is not a power of two up to %zu",
                         call, align, (size_t)RP_MAX_ALIGN);
        return NULL;
    }
    void *p = alloc_impl(pool, align, size, tag);
    if (!p && plain) rpi_oom(call, size, tag);
    return p;
}

void *rp_alloc_aligned(rp_pool *pool, size_t align, size_t size, const char *tag)
{
    return aligned_impl(pool, align, size, tag, "rp_alloc_aligned", true);
}
void *rp_alloc_aligned_noexc(rp_pool *pool, size_t align, size_t size, const char *tag)
{
    return aligned_impl(pool, align, size, tag, "rp_alloc_aligned_noexc", false);
}

static void *memdup_impl(rp_pool *pool, const void *src, size_t size, size_t extra,
                         const char *tag, const char *call, bool plain)
{
    if (!check_pool_arg(pool, call)) return NULL;
    if (!src && size) {
        rpi_report_error(RP_EINVAL, NULL, "%s: source is NULL", call);
        return NULL;
    }
    void *p = size + extra < size ? NULL : alloc_impl(pool, 0, size + extra, tag);
    if (!p) {
        if (plain) rpi_oom(call, size + extra, tag);
        return NULL;
    }
    if (size) memcpy(p, src, size);
    if (extra) ((char *)p)[size] = '\0';
    return p;
}

void *rp_memdup(rp_pool *pool, const void *p, size_t size, const char *tag)
{
    return memdup_impl(pool, p, size, 0, tag, "rp_memdup", true);
}
void *rp_memdup_noexc(rp_pool *pool, const void *p, size_t size, const char *tag)
{
    return memdup_impl(pool, p, size, 0, tag, "rp_memdup_noexc", false);
}

/* A NULL string is misuse (rp_strdup, rp_stat_strdup): RP_EINVAL through
   the error handler, never the OOM handler. */
static bool string_arg(const char *s, const char *call)
{
    if (s) return true;
    rpi_report_error(RP_EINVAL, NULL, "%s: string is NULL", call);
    return false;
}

static char *strdup_impl(rp_pool *pool, const char *s, const char *tag, const char *call, bool plain)
{
    if (!string_arg(s, call)) return NULL;
    return memdup_impl(pool, s, strlen(s), 1, tag, call, plain);
}

char *rp_strdup(rp_pool *pool, const char *s, const char *tag)
{
    return strdup_impl(pool, s, tag, "rp_strdup", true);
}
char *rp_strdup_noexc(rp_pool *pool, const char *s, const char *tag)
{
    return strdup_impl(pool, s, tag, "rp_strdup_noexc", false);
}

/* The arguments of rp_strconcat and rp_stat_strconcat (ap is left as it
   was): false after an RP_EINVAL report for a negative count or a NULL
   string (every argument is checked); else *total is the strings' length,
   SIZE_MAX when it would pass SIZE_MAX (the call then fails as out of
   memory: never a short block). */
static bool concat_measure(int n, va_list ap, const char *call, size_t *total)
{
    if (n < 0) {
        rpi_report_error(RP_EINVAL, NULL, "%s: negative string count %d", call, n);
        return false;
    }
    va_list ap2;
    va_copy(ap2, ap);
    size_t t = 0;
    bool over = false;
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap2, const char *);
        if (!s) {
            va_end(ap2);
            rpi_report_error(RP_EINVAL, NULL, "%s: string argument is NULL", call);
            return false;
        }
        if (!over && __builtin_add_overflow(t, strlen(s), &t)) over = true;
    }
    va_end(ap2);
    *total = over ? SIZE_MAX : t;
    return true;
}

/* The n strings of ap (measured by concat_measure) and a NUL into out. */
static char *concat_copy(char *out, int n, va_list ap)
{
    char *w = out;
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        size_t l = strlen(s);
        memcpy(w, s, l);
        w += l;
    }
    *w = '\0';
    return out;
}

static char *strconcat_v(rp_pool *pool, const char *tag, int n, va_list ap, const char *call,
                         bool plain)
{
    if (!check_pool_arg(pool, call)) return NULL;
    size_t total;
    if (!concat_measure(n, ap, call, &total)) return NULL;
    char *out = total == SIZE_MAX ? NULL : alloc_impl(pool, 0, total + 1, tag);
    if (!out) {
        if (plain) rpi_oom(call, total, tag);
        return NULL;
    }
    return concat_copy(out, n, ap);
}

char *rp_strconcat(rp_pool *pool, const char *tag, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    char *r = strconcat_v(pool, tag, n, ap, "rp_strconcat", true);
    va_end(ap);
    return r;
}

char *rp_strconcat_noexc(rp_pool *pool, const char *tag, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    char *r = strconcat_v(pool, tag, n, ap, "rp_strconcat_noexc", false);
    va_end(ap);
    return r;
}

/* --------------------------------------------------------------- free */
static void run_block_dtor(rp_pool *pool, void *block, bool checked)
{
    lock_both(pool, checked);
    rpi_dtor *d = rpi_ptrmap_del(&pool->dtor_map, block);
    if (d) {
        d->prev->next = d->next;
        d->next->prev = d->prev;
    }
    block_dtor_flag(block, checked, false);
    unlock_both(pool, checked);
    if (d) {
        d->fn(block);
        rpi_sys_free(d);
    }
}

/* Unlinks and frees a block whose header is trusted (checked: validated). */
static void free_trusted(rpi_hdr *h, bool checked)
{
    rp_pool *pool = h->origin->pool;
    void *block = rpi_payload(h);
    rpi_memprof_pending pend = { 0 };
    lock_both(pool, checked);
    if (checked) {
        /* validated before the lock: another thread may have freed it since */
        rpi_entry_view v;
        if (RPI_UNLIKELY(rpi_registry_find(block, &v) != RPI_LIVE)) {
            unlock_both(pool, checked);
            rpi_report_error(RP_EDOUBLEFREE, block,
                             "rp_free: block %p was already freed (double free)", block);
            return;
        }
    }
    if (RPI_UNLIKELY(h->word & RPI_F_SAMPLED) ||
        (checked && atomic_load_explicit(&rpi_memprof_entries, memory_order_relaxed)))
        pend = rpi_memprof_untrack(block);
    if (rpi_on_ring(h->word)) rpi_ring_unlink(h);
    rpi_counters_sub(h->origin, rpi_size(h));
    if (h->word & RPI_F_STACK) rpi_poolstack_unlink(pool, block, rpi_size(h));
    if (!checked) {
        raw_release(pool, h);
    } else {
        /* arena blocks go back to their class list; the memory of malloc and
           big blocks stays with the retired record (quarantine) */
        if (h->word & RPI_F_ARENA) {
            rpi_arena_free(pool, h);
        } else if (h->word & RPI_F_BIG) {
            rpi_arena_unlink_big(pool, h);
        } else if (h->word & RPI_F_ALIGNED) {
            size_t align = (size_t)1 << ((h->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT);
            pool->reserved -= sizeof(void *) + (align - 1);
        }
        rpi_registry_retire(block, RPI_FREED);
    }
    unlock_both(pool, checked);
    if (RPI_UNLIKELY(pend.dealloc)) rpi_memprof_run_pending(pend);
}

/* Checked path shared by free/resize/accessors: 1 = checked block validated,
   0 = not a checked block (use the header), -1 = misuse reported. */
static int resolve_checked(const void *block, rp_pool *expected, const char *op)
{
    if (RPI_LIKELY(atomic_load_explicit(&rpi_checked_gate, memory_order_relaxed) == 0))
        return 0;
    int rc = rpi_checked_validate(block, expected, op, NULL);
    if (rc == 1) return 1;
    if (rc == 0) return 0;
    return -1;
}

__attribute__((noinline)) static void free_general(void *block)
{
    int c = resolve_checked(block, NULL, "rp_free");
    if (RPI_UNLIKELY(c < 0)) return;
    rpi_hdr *h = rpi_hdr_of(block);
    if (RPI_UNLIKELY(h->word & RPI_F_DTOR)) {
        run_block_dtor(h->origin->pool, block, c == 1);
        /* the destructor is user code: a checked block is validated again */
        if (c == 1 && resolve_checked(block, NULL, "rp_free") != 1) return;
    }
    free_trusted(h, c == 1);
}

void rpi_free_general(void *block)
{
    free_general(block);
}

/* A live compact arena slot h (header word w: no flag in bits 48..62 but
   RPI_F_ARENA) goes onto its class's free list c (as its payload:
   rpi_list_ent), the link in the origin field, not live for walks
   (rpi_slot_live), the class kept so that a walk steps over it: in an
   unsynchronised pool the word's low half all ones (RPI_F_ARENA kept: the
   list hit writes only the size), in a thread-safe one the word without
   RPI_F_ARENA. (rpi_arena_free does the same.) */
static inline __attribute__((always_inline)) void slot_free(rpi_arena *a, rpi_hdr *h, size_t c,
                                                            uint64_t w, const int locked)
{
    h->link = a->free[c];
    if (locked == RPI_SYNC_NONE)
        rpi_word_lo_set(&h->word, RPI_SLOT_FREE_LO);
    else
        h->word = w ^ RPI_F_ARENA;
    a->free[c] = rpi_list_ent(h);
}

/* The trusted fast path of rp_free, specialised for locked and unsynchronised
   pools. */
/* back: what the caller knows of the block's backing (FREE_*) */
enum { FREE_TEST = 0, FREE_ARENA, FREE_MALLOC };
static inline __attribute__((always_inline)) void free_fast(void *block, rpi_hdr *h, uint64_t w,
                                                            rpi_tag *t, rp_pool *pool,
                                                            const int locked, const int back)
{
    /* RPI_SYNC_BIASED: the caller entered the owner's fast section */
    if (locked == RPI_SYNC_LOCK && RPI_UNLIKELY(!rpi_lock_try(&pool->lock))) {
        free_general(block);
        return;
    }
    if (back == FREE_ARENA || (back == FREE_TEST && (w & RPI_F_ARENA))) {
        /* an arena block's size is below RPI_BIG_LIMIT: its low 16 bits,
           one zero extension where the 48-bit mask took a constant and an
           and */
        _Static_assert(RPI_BIG_LIMIT <= 65536, "arena block sizes fit in 16 bits");
        rpi_counters_sub_rmw(pool, t, (uint16_t)w);   /* pool is t->pool */
        /* back onto its class's free list (compact: no checked pool exists;
           not on the ring; the class kept for walks). The class is the
           free slot's word (w without RPI_F_ARENA) shifted: rp_free sent
           every word with one of bits 59..62 set elsewhere (RPI_F_CHECKED
           too), so no AND; the empty asm keeps the compiler from taking
           it from w with one. */
        uint64_t fw = w ^ RPI_F_ARENA;
        __asm__("" : "+r"(fw));
        slot_free(pool->own_arena, h, (size_t)(fw >> RPI_CLASS_SHIFT), w, locked);
        rpi_asan_arena_freed(h, RPI_AOFF);
        if (locked == RPI_SYNC_LOCK) rpi_lock_release(&pool->lock);
        if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
        return;
    }
    /* the header's address formed here, not before the branch (the arena
       lists the payload: rpi_list_ent); the empty asm keeps GCC from
       hoisting it */
    char *b = block;
    __asm__("" : "+r"(b));
    h = rpi_hdr_of(b);
    size_t size = (size_t)(w & RPI_SIZE_MASK);
    rpi_counters_sub_in(pool, t, size);
    rpi_ring_unlink(h);
    if (size <= RPI_RECYCLE_MAX) {
        size_t c = (size + 15) >> 4;   /* size_t: no zero extension before indexing */
        size_t cap = RPI_HDR + 16 * c;
        /* the bound is 0 where recycling is off */
        if (pool->recycled + cap <= pool->recycle_cap) {
            h->next = pool->recycle[c];
            pool->recycle[c] = h;
            pool->recycled += cap;
            if (locked == RPI_SYNC_LOCK) rpi_lock_release(&pool->lock);
            if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
            return;
        }
    }
    if (locked == RPI_SYNC_LOCK) h = rpi_lock_release_ret(&pool->lock, h);
    if (locked == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    rpi_sys_free(h);
}

/* A block of a biased shard freed by another thread than its owner (or by
   the owner while someone holds the shard's lock): pushed on the shard's
   list of remote frees (the link in its payload: every block of size 1 or
   more has at least 16 bytes), taken in by the owner's next locked call or
   by anyone who takes the shard's lock. Until then it stays on the ring and
   in the counters, which only lock holders read, and they take it in first. */
__attribute__((noinline)) static void free_remote(void *block, uint64_t w, rp_pool *pool)
{
    if (RPI_UNLIKELY((w & RPI_SIZE_MASK) == 0) ||
        atomic_load_explicit(&pool->bias_owner, memory_order_relaxed) == rpi_thread_self()) {
        free_general(block);   /* no room for the link, or the owner: the lock */
        return;
    }
    rpi_hdr *h = rpi_hdr_of(block);
    /* (an arena block's slack is poisoned: asan.h; the drain's free
       poisons the payload again) */
    RPI_ASAN_DO(if (w & RPI_F_ARENA) rpi_asan_unpoison(block, sizeof(rpi_hdr *)));
    rpi_hdr *head = atomic_load_explicit(&pool->remote, memory_order_relaxed);
    do {
        *(rpi_hdr **)block = head;
    } while (!atomic_compare_exchange_weak_explicit(&pool->remote, &head, h,
                                                    memory_order_release, memory_order_relaxed));
}

/* Takes in the blocks other threads freed (the shard's lock held and its
   owner out of its fast sections). */
void rpi_shard_drain(rp_pool *s)
{
    if (!atomic_load_explicit(&s->remote, memory_order_relaxed)) return;
    rpi_hdr *h = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire);
    while (h) {
        rpi_hdr *next = *(rpi_hdr **)rpi_payload(h);
        if (rpi_on_ring(h->word)) rpi_ring_unlink(h);
        rpi_counters_sub(h->origin, rpi_size(h));
        raw_release(s, h);
        h = next;
    }
}

void rpi_shard_wait_owner(rp_pool *s)
{
    for (unsigned i = 0; atomic_load_explicit(&s->busy, memory_order_acquire); i++)
        rpi_lock_backoff(i);
}

void rpi_shard_exclude(rp_pool *s)
{
    if (atomic_load_explicit(&s->bias_owner, memory_order_relaxed) != rpi_thread_self()) {
        /* after it, the owner either sees the lock held and stays out, or
           its busy flag is visible here */
        (void)rpi_lock_fence();
        rpi_shard_wait_owner(s);
    }
    rpi_shard_drain(s);
}

/* The calling thread, if it is the biased pool's owner, enters its fast
   section (rpi_bias_enter): false when it is not the owner or someone holds
   the lock (then it takes the lock, or frees remotely). */
static inline __attribute__((always_inline)) bool bias_owner_enters(rp_pool *pool)
{
    return RPI_LIKELY(atomic_load_explicit(&pool->bias_owner, memory_order_relaxed) ==
                      rpi_thread_self()) && RPI_LIKELY(rpi_bias_enter(pool));
}

/* Headerless blocks (internal.h): the owner's calls on a biased pool take
   no lock, every other call on a thread-safe pool the pool's lock (which
   waits out the owner). hl_enter_nolock enters the pool of owner word own
   (a chunk's, internal.h: the pool and its RPI_HL_OWN_* bits; *pool set to
   the pool) without the lock where that is allowed: RPI_SYNC_NONE (an
   unsynchronised pool), RPI_SYNC_BIASED (the biased pool's owner, in its
   fast section), else RPI_SYNC_LOCK with nothing taken. */
static inline __attribute__((always_inline)) int hl_enter_nolock(uintptr_t own, rp_pool **pool)
{
    if (!(own & RPI_HL_OWN_KIND)) {
        /* NULL for a chunk never taken: its slot words are all 0, and the
           callers look at the slot's word first */
        *pool = (rp_pool *)own;
        return RPI_SYNC_NONE;
    }
    *pool = (rp_pool *)(own & ~RPI_HL_OWN_KIND);
    if (!(own & RPI_HL_OWN_LOCKED) && bias_owner_enters(*pool))   /* RPI_HL_OWN_BIASED */
        return RPI_SYNC_BIASED;
    return RPI_SYNC_LOCK;
}
/* The pool entered, its kind read from rp_pool.sync (the chunk's owner word
   holds the same: rpi_hl_own_of). */
static inline int hl_enter(rp_pool *pool)
{
    signed char sync = pool->sync;
    if (sync == 0) return RPI_SYNC_NONE;
    if (sync < 0 && bias_owner_enters(pool)) return RPI_SYNC_BIASED;
    rpi_pool_lock(pool);
    return RPI_SYNC_LOCK;
}
static inline void hl_exit(rp_pool *pool, int how)
{
    if (how == RPI_SYNC_BIASED) rpi_bias_exit(pool);
    else if (how == RPI_SYNC_LOCK) rpi_pool_unlock(pool);
}

/* The pool of a pointer into the headerless region, or NULL with the misuse
   reported (call: the public function's name). */
static rp_pool *hl_pool(const void *block, const char *call)
{
    const char *why = NULL;
    rp_pool *pool = rpi_hl_owner(block, &why);
    if (RPI_UNLIKELY(!pool))
        rpi_report_error(RP_EFOREIGN, block, "%s: %p %s", call, block, why);
    return pool;
}

/* A freed slot (the pool entered): its word *mp cleared, onto the free
   list head (its class's: rpi_hl_link_put, the word's address kept beside
   the link). */
static inline void hl_put_at(void *block, uint32_t *mp, void **head)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
    /* a store of the constant (GCC zeroed a register for it where one was
       free, the 64-byte slots' free: one instruction more); TSan builds
       keep the C */
    __asm__("movl $0, %0" : "=m"(*mp));
#else
    *mp = 0;
#endif
    rpi_asan_unpoison(block, 2 * sizeof(void *));
    rpi_hl_link_put(block, *head, mp);
    rpi_asan_poison(block, rpi_hl_slot_bytes(block));   /* the link too (rpi_hl_pop) */
    *head = rpi_hl_enc(block);
}
static inline void hl_put(void *block, uint32_t *mp)
{
    hl_put_at(block, mp, rpi_hl_chunk(block)->list);
}

/* rp_free of a headerless block, the general case: the pool's lock (or the
   owner's fast section), the slot checked under it, the destructor run. */
__attribute__((noinline)) static void hl_free(void *block)
{
    rp_pool *pool = hl_pool(block, "rp_free");
    if (!pool) return;
    uint32_t *mp = rpi_hl_meta(block);
    int how = hl_enter(pool);
    uint32_t m = *mp;
    if (RPI_UNLIKELY(m & RPI_HL_DTOR)) {
        hl_exit(pool, how);
        run_block_dtor(pool, block, false);
        how = hl_enter(pool);
        m = *mp;
    }
    if (RPI_UNLIKELY(!(m & RPI_HL_SIZE))) {
        hl_exit(pool, how);
        rpi_report_error(RP_EDOUBLEFREE, block,
                         "rp_free: block %p is not live (already freed: double free; "
                         "or never handed out)", block);
        return;
    }
    rpi_counters_sub_in(pool, rpi_hl_tag(pool, m), m & RPI_HL_SIZE);
    hl_put(block, mp);
    hl_exit(pool, how);
}

/* The pool entered as how says (not RPI_SYNC_LOCK): the block freed when its
   slot is live without a destructor (true), else nothing done (false); the
   pool left either way (its class's list: the chunk's). */
static inline __attribute__((always_inline)) bool hl_free_entered(rp_pool *pool, void *block,
                                                                  rpi_hlchunk *c, uint32_t *mp,
                                                                  const int how,
                                                                  const unsigned shift)
{
    uint32_t m = *mp;
    bool fast = m & RPI_HL_PLAIN;   /* live, no destructor */
    if (RPI_LIKELY(fast)) {
        /* the size: the word's low byte (RPI_HL_DTOR, bit 7, is clear in a
           plain slot's word: no AND) */
        _Static_assert(RPI_HL_SIZE == 127 && RPI_HL_DTOR == 128, "a plain slot's size is its low byte");
        rpi_counters_sub_in(pool, rpi_hl_tag(pool, m), (uint8_t)m);
        /* its class's list: the 16-byte and 32-byte slots' parts hold one
           class each (1 and 2), whose list is in the pool's own arena at a
           constant offset, where c->list took a load; the 64-byte slots'
           part holds classes 3 and 4 (the chunk's list) */
        if (shift == 4 || shift == 5)
            hl_put_at(block, mp, &pool->own_arena->free[shift - 3]);
        else
            hl_put_at(block, mp, c->list);
    }
    hl_exit(pool, how);
    return fast;
}

/* A headerless slot's free without a call, in the part of slots of
   2^shift bytes (d: block - rpi_hl_base; the part's geometry as constants,
   internal.h; a chunk never taken reads 0: every slot word 0, none live).
   True when done; false: hl_free has to (a misuse, a destructor, another
   thread). */
static inline __attribute__((always_inline)) bool hl_free_fast(void *block, uintptr_t d,
                                                               const unsigned shift)
{
    rpi_hlchunk *c = rpi_hl_chunk(block);
    /* a slot's start: below the chunk's end, a multiple of the slot from
       the first */
    uintptr_t k = (d & (RPI_HL_CHUNK - 1)) - RPI_HL_FIRST_S(shift);
    if (RPI_UNLIKELY(k & ~(uintptr_t)(RPI_HL_CHUNK - (1u << shift)))) return false;
    uint32_t *mp = (uint32_t *)((char *)c->meta + (k >> (shift - 2)));
    /* the chunk's owner word: the pool and its kind (a chunk no pool
       has: hl_free reports it) */
    rp_pool *pool;
    /* each kind of entry its own copy (no register to tell them apart) */
    int how = hl_enter_nolock(atomic_load_explicit(&c->owner, memory_order_relaxed), &pool);
    if (how == RPI_SYNC_NONE) return hl_free_entered(pool, block, c, mp, RPI_SYNC_NONE, shift);
    if (how == RPI_SYNC_BIASED) return hl_free_entered(pool, block, c, mp, RPI_SYNC_BIASED, shift);
    return false;
}

/* rp_free of a pointer in the headerless region, or of any pointer while a
   checked pool exists (rpi_slow_in; d = block - rpi_hl_base). A headerless
   block of an unsynchronised pool, or of a biased pool by its owner, is
   freed here without a call; anything else (a destructor, a misuse,
   another thread) goes to hl_free. Inline in rp_free: out of line, GCC
   reached it by a jump of its own after rp_free's branch (one instruction
   per headerless or checked free; the free with a header is the same
   code either way). */
static inline __attribute__((always_inline)) void free_slow(void *block, uintptr_t d)
{
    if (RPI_LIKELY(d < RPI_HL_READ(rpi_hl1_span))) {
        if (RPI_LIKELY(hl_free_fast(block, d, 4))) return;   /* 16-byte slots */
    } else if (RPI_LIKELY(d < RPI_HL_READ(rpi_hl2_span))) {
        if (RPI_LIKELY(hl_free_fast(block, d, 5))) return;   /* 32-byte slots */
    } else if (RPI_LIKELY(d < RPI_HL_READ(rpi_hl_span))) {
        if (RPI_LIKELY(hl_free_fast(block, d, 6))) return;   /* 64-byte slots */
    } else {
        /* not headerless: here because a checked pool exists (if the gate
           closed meanwhile, the registry finds no record and passes the
           block on to rpi_free_general) */
        rpi_checked_free(block);
        return;
    }
    hl_free(block);
}

void rp_free(void *block)
{
    if (RPI_UNLIKELY(!block)) return;
    /* one test: a headerless block, or a checked pool exists */
    uintptr_t d = rpi_slow_d(block);
    if (RPI_UNLIKELY(rpi_slow_in_d(d))) {
        free_slow(block, d);
        return;
    }
    /* No checked pool exists, so the header is trusted. */
    rpi_hdr *h = rpi_hdr_of(block);
    uint64_t w = h->word;
    rpi_tag *t = h->origin;
    rp_pool *pool = t->pool;
    /* RPI_F_CHECKED too (no such block exists while no checked pool does,
       but for a block freed after its checked pool: free_fast's class index
       relies on bits 59..62 being 0; one constant either way) */
    if (RPI_UNLIKELY(w & (RPI_F_DTOR | RPI_F_ALIGNED | RPI_F_BIG | RPI_F_CHECKED | RPI_F_SAMPLED |
                          RPI_F_STACK))) {
        free_general(block);
        return;
    }
    /* one compare of one byte tells the four ways apart (rp_pool.free_kind):
       an unsynchronised pool's block needs no test of its backing */
    RPI_FREE_KIND(pool, arena_unsync, biased, malloc_unsync);
    if (RPI_LIKELY(pool->free_kind == RPI_FREE_LOCK))
        free_fast(block, h, w, t, pool, RPI_SYNC_LOCK, FREE_TEST);
    else
        free_general(block);   /* an unsynchronised stack or checked pool */
    return;
arena_unsync:
    free_fast(block, h, w, t, pool, RPI_SYNC_NONE, FREE_ARENA);
    return;
malloc_unsync:
    free_fast(block, h, w, t, pool, RPI_SYNC_NONE, FREE_MALLOC);
    return;
biased:
    /* a biased shard's owner frees without a lock (rpi_bias_enter) */
    if (bias_owner_enters(pool))
        free_fast(block, h, w, t, pool, RPI_SYNC_BIASED, FREE_TEST);
    else
        free_remote(block, w, pool);
}

/* ------------------------------------------------------------- resize */
/* The end of a successful resize (locks held): a tracked old block is a
   dealloc for the sampler, and the new one is sampled as a fresh allocation
   of size bytes (docs/memprof.md). */
static void *resize_done(rp_pool *pool, void *old_block, rpi_hdr *h, size_t old, size_t size,
                         bool checked, bool sampled)
{
    if (h->word & RPI_F_STACK) rpi_poolstack_resized(pool, old_block, rpi_payload(h), old, size);
    rpi_memprof_pending pend = { 0 };
    if (RPI_UNLIKELY(sampled) ||
        (checked && atomic_load_explicit(&rpi_memprof_entries, memory_order_relaxed))) {
        pend = rpi_memprof_untrack(old_block);
        h->word &= ~RPI_F_SAMPLED;
    }
    rpi_memprof_sample sample = { 0 };
    if (rpi_memprof_due(pool, size)) rpi_memprof_draw(pool, &sample);
    unlock_both(pool, checked);
    if (RPI_UNLIKELY(pend.dealloc)) rpi_memprof_run_pending(pend);
    if (RPI_UNLIKELY(sample.k)) return rpi_memprof_offer(pool, rpi_payload(h), size, &sample);
    return rpi_payload(h);
}

/* A block with a destructor moved from block to n's payload: its entry
   re-keyed (the caller reserved room for it before the move, which cannot
   be undone). */
static void dtor_rekey_to(rp_pool *pool, void *block, void *to)
{
    rpi_dtor *d = rpi_ptrmap_del(&pool->dtor_map, block);
    d->block = to;
    rpi_ptrmap_put(&pool->dtor_map, d->block, d); /* room reserved */
}
static void dtor_rekey(rp_pool *pool, void *block, rpi_hdr *n)
{
    dtor_rekey_to(pool, block, rpi_payload(n));
}

/* A block that realloc moved from block's address to n: its ring neighbours
   point at it again (a checked block is on no ring: its record moves), and
   its destructor entry, if any, is re-keyed (dtor_rekey). */
static void relink_moved(rp_pool *pool, rpi_hdr *n, void *block)
{
    if (rpi_on_ring(n->word)) {
        n->prev->next = n;
        n->next->prev = n;
    }
    if (n->word & RPI_F_DTOR) dtor_rekey(pool, block, n);
}

/* A headerless block resized: in place within its slot (1 to its slot's
   bytes, unless the sampler is due: a sampled block has a header), else
   moved to a headerless slot of a larger class (up to RPI_HL_MAX bytes) or
   to a block with a header (as rpi_arena_alloc_moved gives). */
__attribute__((noinline)) static void *hl_resize(rp_pool *pool, void *block, size_t size,
                                                const char *call, bool plain)
{
    rp_pool *owner = hl_pool(block, call);
    if (!owner) return NULL;
    if (pool && pool != owner && pool != owner->front) {
        rpi_report_error(RP_EWRONGPOOL, block, "%s: block %p belongs to pool '%s', not '%s'",
                         call, block, owner->front ? owner->front->name : owner->name, pool->name);
        return NULL;
    }
    pool = owner;
    uint32_t *mp = rpi_hl_meta(block);
    lock_both(pool, false);
    uint32_t m = *mp;
    if (RPI_UNLIKELY(!(m & RPI_HL_SIZE))) {
        unlock_both(pool, false);
        rpi_report_error(RP_EDOUBLEFREE, block, "%s: block %p was freed", call, block);
        return NULL;
    }
    rpi_tag *t = rpi_hl_tag(pool, m);
    size_t old = m & RPI_HL_SIZE;
    if (size > RP_MAX_SIZE) goto fail_locked;
    if (size - 1 < 16 * pool->arena->hl_cmax && pool->mp_left > (int64_t)size) {
        void *r = block;
        if (size > rpi_hl_slot_bytes(block)) {
            /* a slot of the size's class; none: a block with a header */
            if ((m & RPI_HL_DTOR) && rpi_ptrmap_reserve(&pool->dtor_map, 1) != 0)
                goto fail_locked;
            if (!(r = rpi_hl_refill(pool, t, (size + 15) >> 4))) goto headed;
            rpi_asan_slot(r, size, rpi_hl_slot_bytes(r));
            memcpy(r, block, old);
            if (m & RPI_HL_DTOR) dtor_rekey_to(pool, block, r);
            hl_put(block, mp);
            mp = rpi_hl_meta(r);
        }
        pool->mp_left -= (int64_t)size;   /* the sampler's countdown, as resize_done */
        rpi_asan_slot(r, size, rpi_hl_slot_bytes(r));
        *mp = (m & ~RPI_HL_SIZE) | (uint32_t)size;
        rpi_counters_resize_in(pool, t, old, size);
        unlock_both(pool, false);
        return r;
    }
headed:
    if ((m & RPI_HL_DTOR) && rpi_ptrmap_reserve(&pool->dtor_map, 1) != 0) goto fail_locked;
    rpi_hdr *n = rpi_arena_alloc_moved(pool, old, size);
    if (!n) goto fail_locked;
    memcpy(rpi_payload(n), block, old < size ? old : size);
    n->origin = t;
    if (rpi_on_ring(n->word)) rpi_ring_insert(pool, n);
    if (m & RPI_HL_DTOR) {
        n->word |= RPI_F_DTOR;
        dtor_rekey(pool, block, n);
    }
    hl_put(block, mp);
    rpi_counters_resize_in(pool, t, old, size);
    return resize_done(pool, block, n, old, size, false, false);
fail_locked:
    unlock_both(pool, false);
    if (plain) rpi_oom(call, size, t->name);
    return NULL;
}

/* resize_impl's move of a small arena block h to a headerless slot
   (arena_move_hl, below); NULL, nothing changed, when there is none. */
static void *arena_move_hl_in(rp_pool *pool, rpi_hdr *h, size_t size);
/* Whether arena_move_hl_in may give arena block h a slot of size bytes:
   inline, so that the general path's other moves (the growths past
   RPI_GROW_LIMIT among them) make no call. */
static inline bool arena_hl_size(const rp_pool *pool, const rpi_hdr *h, size_t size)
{
    /* (an arena block: the pool has an arena) */
    return (h->word & RPI_F_ARENA) && size - 1 < 16 * pool->arena->hl_cmax;
}
/* resize_impl's shrink of arena block h (arena_hl_size) to half its slot or
   less (rpi_arena_shrinks): arena_move_hl_in, room for a destructor's entry
   first; NULL when it does not shrink so or gets no slot. */
static __attribute__((noinline)) void *arena_shrink_hl(rp_pool *pool, rpi_hdr *h, size_t size)
{
    unsigned c = (unsigned)((h->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    if (!rpi_arena_shrinks(RPI_HDR - pool->arena->off + size, rpi_class_bytes[c]) ||
        ((h->word & RPI_F_DTOR) && rpi_ptrmap_reserve(&pool->dtor_map, 1) != 0))
        return NULL;
    return arena_move_hl_in(pool, h, size);
}

/* Whether arena block h cannot stay in place at size bytes: it grows out
   of its class past RPI_GROW_LIMIT (rpi_arena_resize_in_place would say
   no; the test is inline so that such a growth skips the call). */
static inline bool arena_grows_out(const rp_pool *pool, const rpi_hdr *h, size_t size)
{
    if (!(h->word & RPI_F_ARENA)) return false;
    size_t total = RPI_HDR - pool->arena->off + size;   /* size <= RP_MAX_SIZE: no wrap */
    unsigned c = (unsigned)((h->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    return total > RPI_GROW_LIMIT && total > rpi_class_bytes[c];
}

static void *resize_impl(rp_pool *pool, void *block, size_t size, const char *call, bool plain)
{
    if (!block) {
        if (!check_pool_arg(pool, call)) return NULL;
        void *p = alloc_impl(pool, 0, size, NULL);
        if (!p && plain) rpi_oom(call, size, NULL);
        return p;
    }
    if (rpi_hl_in(block)) return hl_resize(pool, block, size, call, plain);
    int c = resolve_checked(block, pool, call);
    if (c < 0) return NULL;
    rpi_hdr *h = rpi_hdr_of(block);
    rp_pool *owner = h->origin->pool;
    if (pool && pool != owner && pool != owner->front) {
        rpi_report_error(RP_EWRONGPOOL, block, "%s: block %p belongs to pool '%s', not '%s'",
                         call, block, owner->name, pool->name);
        return NULL;
    }
    pool = owner;
    const bool checked = c == 1;
    size_t old = rpi_size(h);
    void *hl;
    if (size > RP_MAX_SIZE) goto fail;
    lock_both(pool, checked);
    if (checked && rpi_registry_reserve(pool) != 0) goto fail_locked;
    /* a stack block keeps its stack: room to re-key it first */
    if ((h->word & RPI_F_STACK) && rpi_poolstack_reserve(pool) != 0) goto fail_locked;
    if (!(h->word & (RPI_F_ALIGNED | RPI_F_BIG | RPI_F_ARENA))) {
        /* malloc backing: realloc header and payload together, relink. A
           moved block's destructor entry is re-keyed: room for it first, as
           realloc cannot be undone. */
        if ((h->word & RPI_F_DTOR) && rpi_ptrmap_reserve(&pool->dtor_map, 1) != 0) goto fail_locked;
        rpi_hdr *n = checked ? rpi_registry_realloc(h, rpi_malloc_size(size))
                             : rpi_sys_realloc(h, rpi_malloc_size(size));
        if (!n) goto fail_locked;
        if (n != h) relink_moved(pool, n, block);
        h = n;
        h->word = (h->word & ~RPI_SIZE_MASK) | size;
    } else if (!checked && arena_hl_size(pool, h, size) &&
               (hl = arena_shrink_hl(pool, h, size)) != NULL) {
        /* a shrink to half its slot or less into a headerless class: the
           slot a new block of its size would have, also for the block
           carved last (arena_move_hl left the pool) */
        return hl;
    } else if (!arena_grows_out(pool, h, size) && rpi_arena_resize_in_place(pool, h, size)) {
        /* same address; the word (class, size) is updated */
    } else if ((h->word & RPI_F_BIG) &&
               ((h->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT) <= 4 /* max_align_t */) {
        /* big block: realloc of its own allocation, relink (as above) */
        if ((h->word & RPI_F_DTOR) && rpi_ptrmap_reserve(&pool->dtor_map, 1) != 0) goto fail_locked;
        rpi_hdr *n = rpi_arena_big_resize(pool, h, size, checked);
        if (!n) goto fail_locked;
        if (n != h) relink_moved(pool, n, block);
        h = n;
    } else {
        /* Move: new memory of the same kind, the payload copied, and the new
           header takes the old one's place in the ring: one block throughout. */
        size_t align = !(h->word & RPI_F_ARENA) && (h->word & RPI_ALIGN_MASK)
            ? (size_t)1 << ((h->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT) : 0;
        rpi_hdr *n = NULL;
        if (!(h->word & RPI_F_DTOR) || rpi_ptrmap_reserve(&pool->dtor_map, 1) == 0) {
            /* an arena block moved to up to 16 (RPI_HL_MAX) bytes: the
               headerless slot a new block of its size would have */
            void *r;
            if (!align && !checked && arena_hl_size(pool, h, size) &&
                (r = arena_move_hl_in(pool, h, size)) != NULL)
                return r;
            n = align ? raw_new(pool, align, size) : rpi_arena_alloc_moved(pool, old, size);
        }
        if (!n) {
            /* an arena block's shrink to half its slot or less
               (rpi_arena_shrinks) that cannot have the smaller block, or
               room for its destructor's entry, stays where it is, in its
               class: a shrink does not fail for want of memory */
            if (size > old || !(h->word & RPI_F_ARENA)) goto fail_locked;
            h->word = (h->word & ~RPI_SIZE_MASK) | size;
            goto in_place;
        }
        memcpy(rpi_payload(n), block, old < size ? old : size);
        n->origin = h->origin;
        n->word |= h->word & (RPI_F_DTOR | RPI_F_CHECKED | RPI_F_STACK);
        /* the new block takes the old one's place in the ring; a compact
           arena block (small, unchecked) and a checked block are on none */
        if (rpi_on_ring(n->word)) {
            if (!rpi_on_ring(h->word)) {
                rpi_ring_insert(pool, n);
            } else {
                n->prev = h->prev;
                n->next = h->next;
                n->prev->next = n;
                n->next->prev = n;
            }
        } else if (rpi_on_ring(h->word)) {
            rpi_ring_unlink(h);
        }
        if (n->word & RPI_F_DTOR) dtor_rekey(pool, block, n);
        if (checked) rpi_registry_move(h, n, raw_of(n));
        bool sampled = (h->word & RPI_F_SAMPLED) != 0;
        raw_release(pool, h);
        rpi_counters_resize(n->origin, old, size);
        return resize_done(pool, block, n, old, size, checked, sampled);
    }
in_place:
    rpi_asan_arena_live(h, pool->arena->off, h->word);
    rpi_asan_big_live(h);
    rpi_counters_resize(h->origin, old, size);
    if (checked) rpi_registry_move(rpi_hdr_of(block), h, raw_of(h));
    return resize_done(pool, block, h, old, size, checked, (h->word & RPI_F_SAMPLED) != 0);
fail_locked:
    unlock_both(pool, checked);
fail:
    if (plain) rpi_oom(call, size, h->origin->name);
    return NULL;
}

/* A block of t's went from old to size bytes: the tag's and the pool's
   byte counts and peaks follow (modulo 2^64: the difference either way). */
static inline __attribute__((always_inline)) void counters_resize(rp_pool *pool, rpi_tag *t,
                                                                  size_t old, size_t size)
{
    rpi_room_grow(&t->room, &t->peak, size - old);
    rpi_room_grow(&pool->room, &pool->peak, size - old);
}

/* rp_resize of a headerless block by an unsynchronised pool or a biased
   pool's owner while the sampler is not due within size: in place within
   the slot (1 to its bytes), or moved to a free or carved slot of the
   size's class (up to RPI_HL_MAX bytes) or to a small block with a header.
   True and *out set when done; false, nothing changed, for hl_resize
   (anything else: misuse, another thread, a destructor, the sampler, a new
   chunk). */
static inline __attribute__((always_inline)) bool hl_resize_try(rp_pool *arg, void *block,
                                                                size_t size, void **out)
{
    rp_pool *pool = rpi_hl_pool_of(block);
    if (!pool || (arg && arg != pool && arg != pool->front) || size > RP_MAX_SIZE)
        return false;
    int how = hl_enter_nolock(rpi_hl_own(block), &pool);
    if (how == RPI_SYNC_LOCK) return false;
    bool biased = how == RPI_SYNC_BIASED;
    /* the sampler's countdown read once entered (another thread than a
       biased pool's owner must not read it: hl_resize takes the lock) */
    if (pool->mp_left <= (int64_t)size) goto no;
    uint32_t *mp = rpi_hl_meta(block);
    uint32_t m = *mp;
    if (!(m & RPI_HL_PLAIN)) goto no;   /* live without a destructor */
    rpi_arena *a = pool->arena;
    rpi_tag *t = rpi_hl_tag(pool, m);
    size_t old = m & RPI_HL_SIZE;
    void *r = block;
    if (size - 1 < rpi_hl_slot_bytes(block)) {
        *mp = (m & ~RPI_HL_SIZE) | (uint32_t)size;
        rpi_asan_slot(block, size, rpi_hl_slot_bytes(block));
    } else if (size - 1 < 16 * a->hl_cmax) {
        size_t k = (size + 15) >> 4;
        void *h = a->free[k];
        char *p;
        uint32_t *mp_new;
        if (rpi_hl_is_enc(h)) {   /* a free slot */
            p = rpi_hl_pop(a, k, h, &mp_new);
        } else {
            if (a->hl[k].cur >= a->hl[k].end) goto no;   /* a new chunk: hl_resize */
            p = rpi_hl_carve(a, k, &mp_new);
        }
        rpi_asan_slot(p, size, rpi_hl_slot_bytes(p));
        memcpy(p, block, old);
        *mp_new = (m & ~RPI_HL_SIZE) | (uint32_t)size;
        hl_put(block, mp);
        r = p;
    } else {
        /* a block with the compact header (up to 1 KiB here, as
           rpi_arena_alloc gives it: its class's list or carved); a biased
           owner takes in other threads' frees before it carves */
        if (size > 1024 - RPI_AHDR || size == 0) goto no;   /* 0: no room for the copy */
        size_t c = (RPI_AHDR + size - 1) >> 4;
        void *e = a->free[c];
        rpi_hdr *n;
        if (rpi_list_hdr(e)) {
            n = rpi_list_blk(e);
            a->free[c] = n->link;
        } else {
            size_t cs = (c + 1) << 4;
            if ((size_t)(a->end - a->cur) < cs ||
                (biased && atomic_load_explicit(&pool->remote, memory_order_relaxed) != NULL))
                goto no;
            n = (rpi_hdr *)a->cur;
            a->cur += cs;
        }
        rpi_asan_slot((char *)n + RPI_AOFF, RPI_AHDR + size, rpi_class_bytes[c]);
        n->word = RPI_F_ARENA | ((uint64_t)c << RPI_CLASS_SHIFT) | size;
        n->origin = t;
        memcpy(rpi_payload(n), block, old);
        hl_put(block, mp);
        r = rpi_payload(n);
    }
    pool->mp_left -= (int64_t)size;   /* not due: checked above */
    counters_resize(pool, t, old, size);
    if (biased) rpi_bias_exit(pool);
    *out = r;
    return true;
no:
    if (biased) rpi_bias_exit(pool);
    return false;
}

/* rp_resize when the block is headerless or a checked pool exists;
   specialised for rp_resize and rp_resize_noexc, so that only the pool, the
   block and the size stay live (no register saved on the way through). */
static inline __attribute__((always_inline)) void *resize_slow_in(rp_pool *pool, void *block,
                                                                  size_t size, bool plain)
{
    const char *call = plain ? "rp_resize" : "rp_resize_noexc";
    if (block && rpi_hl_in(block)) {
        void *r;
        if (hl_resize_try(pool, block, size, &r)) return r;
        return hl_resize(pool, block, size, call, plain);
    }
    return resize_impl(pool, block, size, call, plain);
}
__attribute__((noinline)) static void *resize_slow_plain(rp_pool *pool, void *block, size_t size)
{
    return resize_slow_in(pool, block, size, true);
}
__attribute__((noinline)) static void *resize_slow_noexc(rp_pool *pool, void *block, size_t size)
{
    return resize_slow_in(pool, block, size, false);
}

/* The fast paths of rp_resize: a block of an unchecked pool, not sampled,
   without a pool stack or over-alignment, that stays where it is (an arena
   block within its class or, carved last, the chunk's uncarved rest; a big
   block within its allocation) or is a big block realloc'd. The counters
   move by the difference and the sampler counts size new bytes, as in
   resize_done. Every exit is a return or a tail call, so the in-place path
   saves no register. */
static inline __attribute__((always_inline)) void *resize_counted(rp_pool *pool, rpi_hdr *h,
                                                                  rpi_tag *t, size_t old,
                                                                  size_t size, const bool locked)
{
    counters_resize(pool, t, old, size);
    if (rpi_memprof_due(pool, size)) return rpi_memprof_slow(pool, h, size, false);
    if (locked) return rpi_lock_release_ret(&pool->lock, rpi_payload(h));
    return rpi_payload(h);
}

/* A big block grown or shrunk by realloc of its own allocation (lock held;
   no destructor, alignment max_align_t). */
static inline __attribute__((always_inline)) void *resize_big(rp_pool *pool, rpi_hdr *h,
                                                              size_t size, const char *call,
                                                              bool plain, const bool locked)
{
    rpi_tag *t = h->origin;
    size_t old = rpi_size(h);
    rpi_hdr *n = rpi_arena_big_resize(pool, h, size, false);
    if (RPI_UNLIKELY(!n)) {
        if (locked) rpi_lock_release(&pool->lock);
        if (plain) rpi_oom(call, size, t->name);
        return NULL;
    }
    n->prev->next = n;                    /* the ring follows a moved header */
    n->next->prev = n;
    return resize_counted(pool, n, t, old, size, locked);
}

static __attribute__((noinline)) void *resize_big_unsync(rp_pool *pool, rpi_hdr *h, size_t size,
                                                         const char *call, bool plain)
{
    return resize_big(pool, h, size, call, plain, false);
}
static __attribute__((noinline)) void *resize_big_locked(rp_pool *pool, rpi_hdr *h, size_t size,
                                                         const char *call, bool plain)
{
    return resize_big(pool, h, size, call, plain, true);
}

static const char *resize_call(bool plain) { return plain ? "rp_resize" : "rp_resize_noexc"; }

/* Out of memory in resize_malloc: the block is unchanged. A growth by a
   small step asked realloc for headroom: exactly the new size is tried
   once more first (the block is intact, so the step test gives what it
   gave). NULL after the OOM handler; else the moved or grown header. */
static __attribute__((noinline, cold)) rpi_hdr *resize_malloc_failed(rpi_hdr *h, size_t size,
                                                                     bool plain, bool locked)
{
    size_t old = rpi_size(h);
    rp_pool *pool = h->origin->pool;
    if (size > old && size - old < old / 4 && pool->recycle_cap) {
        /* headroom was asked for */
        rpi_hdr *n = rpi_sys_realloc(h, rpi_malloc_size(size));
        if (n) return n;
    }
    const char *tag = h->origin->name;
    if (locked) rpi_lock_release(&pool->lock);
    if (plain) rpi_oom(resize_call(plain), size, tag);
    return NULL;
}

/* A size over RP_MAX_SIZE, found by resize_malloc (lock held): resize_impl
   refuses it. */
static __attribute__((noinline, cold)) void *resize_malloc_too_big(rp_pool *pool, rpi_hdr *h,
                                                                   size_t size, bool plain,
                                                                   bool locked)
{
    if (locked) rpi_lock_release(&pool->lock);
    return resize_impl(pool, rpi_payload(h), size, resize_call(plain), plain);
}

/* Malloc backing: realloc of header and payload together (lock held; no
   destructor, not aligned). Specialised for the twin and the lock. Only the
   header and size live across the realloc: the pool, tag and old size are
   read again from the header realloc copied. */
static inline __attribute__((always_inline)) void *resize_malloc(rp_pool *pool, rpi_hdr *h,
                                                                 size_t size, const bool plain,
                                                                 const bool locked)
{
    size_t old = rpi_size(h);
    rpi_hdr *n = h;
    /* the allocation holds rpi_malloc_size(old) bytes, which are
       rpi_malloc_size(size) when both are in one 16-byte class within
       RPI_RECYCLE_MAX (then old is within it too) or equal */
    bool moves;
    if (size <= RPI_RECYCLE_MAX) {
        moves = ((size + 15) ^ (old + 15)) > 15;
    } else {
        if (RPI_UNLIKELY(size > RP_MAX_SIZE)) return resize_malloc_too_big(pool, h, size, plain, locked);
        moves = size != old;
    }
    if (RPI_LIKELY(moves)) {
        size_t need = rpi_malloc_size(size);
        if (size - old - 1 < old / 4 && pool->recycle_cap) {
            /* growth by a small step (size > old: the wrap makes a shrink
               fail the test): within the headroom of an earlier one, or
               realloc with a quarter of headroom. Not where recycling is
               off (ASan, memcheck, checked pools): there every block ends
               where its size says. */
            if (malloc_usable_size(h) >= rpi_malloc_size(size)) goto counted;
            __asm__("" : "+r"(h));        /* read the size through h, kept anyway */
            need = rpi_malloc_size(rpi_grow_want(rpi_size(h), size));
        }
        n = rpi_sys_realloc(h, need);
        if (RPI_UNLIKELY(!n)) {
            n = resize_malloc_failed(h, size, plain, locked);
            if (!n) return NULL;
        }
        if (n != h) {
            n->prev->next = n;            /* the ring follows a moved header */
            n->next->prev = n;
        }
    }
counted:;
    uint64_t w = n->word;                 /* realloc copied the header */
    size_t was = (size_t)(w & RPI_SIZE_MASK);
    n->word = w + (size - was);           /* the size field: size (< 2^48) */
    rpi_tag *t = n->origin;
    return resize_counted(t->pool, n, t, was, size, locked);
}

/* Whether the calling thread owns the thread-safe pool or shard p (a
   biased pool's creator, a shard's thread): then the fast paths resize its
   block by taking p's lock alone (the owner has no fast section to wait
   for, and blocks other threads freed may wait on their list). Anyone else
   resizes a biased one's block on the general path, whose lock waits the
   owner out. Tested first: the owner's resize pays one compare. */
static inline bool resize_owner(rp_pool *p)
{
    return atomic_load_explicit(&p->bias_owner, memory_order_relaxed) == rpi_thread_self();
}

/* The malloc backing's whole fast path, out of line so that rp_resize
   saves no register for it; NULL: resize_impl. */
#define RESIZE_MALLOC(name, plain)                                                            \
    static __attribute__((noinline)) void *name(rp_pool *pool, void *block, size_t size)     \
    {                                                                                        \
        rpi_hdr *h = rpi_hdr_of(block);                                                      \
        rp_pool *owner = h->origin->pool;                                                    \
        /* a destructor's entry would need re-keying */                                      \
        if (RPI_UNLIKELY((h->word & (RPI_F_ALIGNED | RPI_F_SAMPLED | RPI_F_STACK | RPI_F_DTOR)) || \
                         (pool && pool != owner && pool != owner->front)))                   \
            return resize_impl(pool, block, size, resize_call(plain), (plain));              \
        if (!resize_owner(owner)) {                                                          \
            if (owner->flags & RP_POOL_UNSYNC)                                               \
                return resize_malloc(owner, h, size, (plain), false);                        \
            if (RPI_UNLIKELY(owner->flags & RPI_POOL_BIASED))                                \
                return resize_impl(pool, block, size, resize_call(plain), (plain));          \
        }                                                                                    \
        if (RPI_UNLIKELY(!rpi_lock_try(&owner->lock)))                                       \
            return resize_impl(pool, block, size, resize_call(plain), (plain));              \
        return resize_malloc(owner, h, size, (plain), true);                                 \
    }
RESIZE_MALLOC(resize_malloc_plain, true)
RESIZE_MALLOC(resize_malloc_noexc, false)

/* resize_arena_move's unsynchronised copy when the sampler is due: the copy,
   then the sampler's slow path (which may hand the block to a tracker). */
static __attribute__((noinline, cold)) void *resize_move_sampled(rp_pool *pool, rpi_hdr *n,
                                                                 rpi_hdr *h, size_t keep,
                                                                 size_t size)
{
    memcpy(rpi_payload(n), rpi_payload(h), keep);
    rpi_asan_arena_left(pool->own_arena, h);   /* freed before the copy */
    return rpi_memprof_slow(pool, n, size, false);
}

static void *resize_arena_move_hl_unsync(rp_pool *pool, rpi_hdr *h, size_t size, size_t c2,
                                         bool plain);
static void *resize_arena_move_hl_locked(rp_pool *pool, rpi_hdr *h, size_t size, size_t c2,
                                         bool plain);

/* An arena block whose growth needs another class (the new total within
   RPI_GROW_LIMIT), or that shrinks to half its slot or less
   (rpi_arena_shrinks; shrink) (lock held; no destructor): a block of the new class
   from its list or the current chunk, the payload copied, the new header
   in the old one's place in the ring, the old block back to its list (or to
   the chunk, if carved last), the counters by the difference. What
   resize_impl does for it, without its general checks; with no room in the
   current chunk it is resize_impl (which takes a new chunk). */
static inline __attribute__((always_inline)) void *resize_arena_move(rp_pool *pool, rpi_hdr *h,
                                                                     size_t size, size_t c2,
                                                                     bool plain, const bool locked,
                                                                     const bool shrink)
{
    rpi_arena *a = pool->own_arena;   /* compact: no checked pool exists */
    /* c2: the new class, rpi_class_of(RPI_AHDR + size) (unchecked: compact) */
    void *e = a->free[c2];
    rpi_hdr *n;
    if (rpi_list_hdr(e)) {   /* (not a headerless slot: rpi_hl_enc) */
        n = rpi_list_blk(e);
        a->free[c2] = n->link;
    } else {
        /* a headerless class (1 to hl_cmax; class 0, size 0, wraps): the
           slot a new block of its size would have, out of line */
        if (RPI_UNLIKELY(c2 - 1 < a->hl_cmax)) {
            if (locked) return resize_arena_move_hl_locked(pool, h, size, c2, plain);
            return resize_arena_move_hl_unsync(pool, h, size, c2, plain);
        }
        size_t cs2 = a->cbytes[c2];
        if (RPI_UNLIKELY((size_t)(a->end - a->cur) < cs2)) {
            if (locked && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock))) rpi_lock_wake(&pool->lock);
            return resize_impl(pool, rpi_payload(h), size, resize_call(plain), plain);
        }
        n = (rpi_hdr *)a->cur;
        a->cur += cs2;
    }
    rpi_asan_slot((char *)n + RPI_AOFF, RPI_AHDR + size, a->cbytes[c2]);
    uint64_t w = h->word;
    size_t old = (size_t)(w & RPI_SIZE_MASK);
    /* a growth copies old bytes, a shrink (rpi_arena_shrinks) size (a
       constant choice: the growths' copy stays a tail call to memcpy).
       Under the lock the copy comes first: once the old block is on its
       list, another thread may take it. */
    size_t keep = shrink ? size : old;
    if (locked) memcpy(rpi_payload(n), rpi_payload(h), keep);
    rpi_tag *t = h->origin;
    n->origin = t;
    n->word = a->hword[c2] | size;
    size_t c = (size_t)((w & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    if ((char *)h + a->cbytes[c] == a->cur && !pool->marks) {
        a->cur = (char *)h;               /* carved last: back to the chunk */
    } else {
        /* the link and the class go in the compact header: the payload,
           not yet copied when unsynchronised, stays as it is */
        slot_free(a, h, c, w, locked ? RPI_SYNC_LOCK : RPI_SYNC_NONE);
    }
    if (locked) {
        rpi_asan_arena_left(a, h);   /* copied above */
        return resize_counted(pool, n, t, old, size, locked);
    }
    /* Unsynchronised: nothing runs between here and the copy, so the copy
       ends the call (a tail call: memcpy returns n's payload) and nothing
       is kept across it. The sampler's slow path copies first. */
    counters_resize(pool, t, old, size);
    if (RPI_UNLIKELY(rpi_memprof_due(pool, size))) return resize_move_sampled(pool, n, h, keep, size);
#if RPI_ASAN
    memcpy(rpi_payload(n), rpi_payload(h), keep);
    rpi_asan_arena_left(a, h);   /* freed before the copy */
    return rpi_payload(n);
#endif
    return memcpy(rpi_payload(n), rpi_payload(h), keep);
}

/* The move of a small arena block h (with its header; lock held) to a
   headerless slot of class c2 (1 to hl_cmax: up to 16 * hl_cmax bytes): the
   slot a new block of size bytes would have. One implementation for the
   three ways in (how):
   - HL_MOVE_UNSYNC, HL_MOVE_LOCKED: resize_arena_move's new block and
     resize_arena_shrink's block carved last, on the fast paths (compact, no
     destructor, not sampled: their tests; the class's list has no block
     with a header on top): a free slot or one carved from the class's
     current chunk. A tag without an index yet, the sampler due within size,
     or a new chunk needed: resize_impl, which has them (HL_MOVE_GENERAL).
   - HL_MOVE_GENERAL: resize_impl's (both locks held, room for a
     destructor's entry reserved), for an unchecked pool without stacks
     while the sampler is not due within size, alloc_impl's test: a slot
     from rpi_hl_refill (a free slot, the current chunk's rest or a new
     chunk); a destructor's entry re-keyed to the slot and its flag in the
     slot word, a sampled old block untracked; the locks released. NULL,
     nothing changed, when there is none (the caller moves the block to one
     with a header, as before).
   Either way the payload copied, the slot's word and the sampler's
   countdown set, the old block back to its list (or to its chunk, carved
   last), the counters by the difference. Unsynchronised, the copy comes
   last (the old block's link and class go in its compact header, its
   payload stays as it is until the copy): a tail call to memcpy, nothing
   kept across a call. last: the caller found h to be the block carved
   last from the arena's current chunk (resize_arena_shrink, a shrink),
   so it goes back to the chunk untested and the copy is size bytes. */
enum { HL_MOVE_UNSYNC, HL_MOVE_LOCKED, HL_MOVE_GENERAL };
static inline __attribute__((always_inline)) void *arena_move_hl(rp_pool *pool, rpi_hdr *h,
                                                                 size_t size, size_t c2,
                                                                 bool plain, const int how,
                                                                 const bool last)
{
    rpi_tag *t = h->origin;
    uint64_t w = h->word;
    void *block = rpi_payload(h);
    char *p;
    uint32_t *mp;
    uint32_t m;
    if (how == HL_MOVE_GENERAL) {
        if ((w & (RPI_F_CHECKED | RPI_F_STACK)) ||
            (pool->flags & (RP_POOL_CHECKED | RP_POOL_STACKS)) || pool->mp_left <= (int64_t)size ||
            !(p = rpi_hl_refill(pool, t, c2)))
            return NULL;
        mp = rpi_hl_meta(p);
        m = t->hl_word;   /* (given by rpi_hl_refill if it had none) */
    } else {
        rpi_arena *a = pool->own_arena;   /* compact: no checked pool exists */
        void *e = a->free[c2];
        m = t->hl_word;
        if (m == 0 || pool->mp_left <= (int64_t)size) goto general;
        if (rpi_hl_is_enc(e))
            p = rpi_hl_pop(a, c2, e, &mp);
        else if (a->hl[c2].cur < a->hl[c2].end)
            p = rpi_hl_carve(a, c2, &mp);
        else
            goto general;
    }
    rpi_asan_slot(p, size, rpi_hl_slot_bytes(p));   /* free or carved: poisoned (asan.h) */
    size_t old = (size_t)(w & RPI_SIZE_MASK);
    size_t keep = last || old > size ? size : old;   /* (last: a shrink) */
    if (how == HL_MOVE_GENERAL && (w & RPI_F_DTOR))
        m = (m & ~RPI_HL_PLAIN) | RPI_HL_DTOR;   /* as block_dtor_flag sets it */
    *mp = m | (uint32_t)size;
    pool->mp_left -= (int64_t)size;   /* the sampler's countdown, as alloc_impl's (not due) */
    /* Under a lock, and with ASan (the old block is poisoned once copied),
       the copy comes first: once the old block is on its list, another
       thread may take it. */
    const bool copy_last = how == HL_MOVE_UNSYNC && !RPI_ASAN;
    if (!copy_last) memcpy(p, block, keep);
    if (how == HL_MOVE_GENERAL) {
        if (w & RPI_F_DTOR) dtor_rekey_to(pool, block, p);
        raw_release(pool, h);
    } else {
        rpi_arena *a = pool->own_arena;
        size_t c = (size_t)((w & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
        if (last || ((char *)h + a->cbytes[c] == a->cur && !pool->marks))
            a->cur = (char *)h;               /* carved last: back to the chunk */
        else
            slot_free(a, h, c, w, how == HL_MOVE_LOCKED ? RPI_SYNC_LOCK : RPI_SYNC_NONE);
        rpi_asan_arena_left(a, h);   /* copied above (with ASan) */
    }
    counters_resize(pool, t, old, size);
    if (how == HL_MOVE_GENERAL) {
        rpi_memprof_pending pend = { 0 };
        if (RPI_UNLIKELY(w & RPI_F_SAMPLED)) pend = rpi_memprof_untrack(block);   /* as resize_done */
        unlock_both(pool, false);
        if (RPI_UNLIKELY(pend.dealloc)) rpi_memprof_run_pending(pend);
    }
    if (how == HL_MOVE_LOCKED) return rpi_lock_release_ret(&pool->lock, p);
    if (copy_last) return memcpy(p, block, keep);   /* a tail call: memcpy returns p */
    return p;
general:
    if (how == HL_MOVE_LOCKED && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock)))
        rpi_lock_wake(&pool->lock);
    return resize_impl(pool, block, size, resize_call(plain), plain);
}
/* Out of line (and not cold: GCC would then copy with rep movsb), so that
   the moves with a header keep their registers. */
static __attribute__((noinline)) void *resize_arena_move_hl_unsync(rp_pool *pool, rpi_hdr *h,
                                                                  size_t size, size_t c2,
                                                                  bool plain)
{
    return arena_move_hl(pool, h, size, c2, plain, HL_MOVE_UNSYNC, false);
}
static __attribute__((noinline)) void *resize_arena_move_hl_locked(rp_pool *pool, rpi_hdr *h,
                                                                  size_t size, size_t c2,
                                                                  bool plain)
{
    return arena_move_hl(pool, h, size, c2, plain, HL_MOVE_LOCKED, false);
}
static __attribute__((noinline)) void *arena_move_hl_in(rp_pool *pool, rpi_hdr *h, size_t size)
{
    return arena_move_hl(pool, h, size, (size + 15) >> 4, false, HL_MOVE_GENERAL, false);
}

static __attribute__((noinline)) void *resize_arena_move_locked(rp_pool *pool, rpi_hdr *h,
                                                                size_t size, size_t c2, bool plain)
{
    return resize_arena_move(pool, h, size, c2, plain, true, false);
}

/* An arena block of an unsynchronised pool, or of a thread-safe one with
   its lock held, shrunk to half its slot or less (rpi_arena_shrinks; no
   alignment, not sampled, no pool stack: resize_fast_arena's tests): to a
   headerless class, a slot (arena_move_hl); else the block carved
   last gives the rest of its slot back to the chunk (the counters as in
   place), any other moves to the new class (resize_arena_move; a
   destructor's entry re-keyed by resize_impl). */
static inline __attribute__((always_inline)) void *resize_arena_shrink(rp_pool *pool, rpi_hdr *h,
                                                                       rpi_tag *t, size_t size,
                                                                       bool plain,
                                                                       const bool locked)
{
    rpi_arena *a = pool->own_arena;   /* compact: no checked pool exists */
    uint64_t w = h->word;
    size_t c = (size_t)((w & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    /* (size is below half a slot, so below RPI_BIG_LIMIT: a class) */
    size_t c2 = 0;
    (void)rpi_arena_class_a(a, size, &c2);
    if ((char *)h + a->cbytes[c] == a->cur && !pool->marks) {
        /* to a headerless class (1 to hl_cmax; class 0, size 0, wraps)
           whose list has no block with a header on top: the slot a new
           block of its size would have, and the whole slot back to the
           chunk (arena_move_hl; a destructor's entry is re-keyed by
           resize_impl); any other block takes it in resize_arena_move */
        if (RPI_UNLIKELY(c2 - 1 < a->hl_cmax) && !rpi_list_hdr(a->free[c2])) {
            if (w & RPI_F_DTOR) goto general;
            return arena_move_hl(pool, h, size, c2, plain,
                                 locked ? HL_MOVE_LOCKED : HL_MOVE_UNSYNC, true);
        }
        a->cur = (char *)h + a->cbytes[c2];
        /* the old slot's end: the rest given back poisoned too */
        rpi_asan_slot((char *)h + RPI_AOFF, RPI_AHDR + size, a->cbytes[c]);
        h->word = (w & ~(RPI_CLASS_MASK | RPI_SIZE_MASK)) | ((uint64_t)c2 << RPI_CLASS_SHIFT) | size;
        return resize_counted(pool, h, t, (size_t)(w & RPI_SIZE_MASK), size, locked);
    }
    if (w & RPI_F_DTOR) goto general;
    return resize_arena_move(pool, h, size, c2, plain, locked, true);
general:
    if (locked && rpi_lock_release_check(&pool->lock)) rpi_lock_wake(&pool->lock);
    return resize_impl(pool, rpi_payload(h), size, resize_call(plain), plain);
}
/* (not cold: GCC would then copy with rep movsb, a count per byte) */
static __attribute__((noinline)) void *resize_arena_shrink_unsync(rp_pool *pool, rpi_hdr *h,
                                                                 rpi_tag *t, size_t size,
                                                                 bool plain)
{
    return resize_arena_shrink(pool, h, t, size, plain, false);
}
static __attribute__((noinline)) void *resize_arena_shrink_locked(rp_pool *pool, rpi_hdr *h,
                                                                 rpi_tag *t, size_t size,
                                                                 bool plain)
{
    return resize_arena_shrink(pool, h, t, size, plain, true);
}

static __attribute__((noinline)) void *resize_wake_then_impl(rp_pool *pool, void *block,
                                                             size_t size, const char *call,
                                                             bool plain)
{
    rpi_lock_wake(&pool->lock);
    return resize_impl(pool, block, size, call, plain);
}

static inline __attribute__((always_inline)) void *resize_fast_in(rp_pool *pool, void *block,
                                                                  uint64_t w, rpi_tag *t,
                                                                  size_t size, const char *call,
                                                                  bool plain, const bool locked)
{
    if (locked && RPI_UNLIKELY(!rpi_lock_try(&pool->lock)))
        return resize_impl(pool, block, size, call, plain);
    rpi_hdr *h = rpi_hdr_of(block);
    size_t old = (size_t)(w & RPI_SIZE_MASK);
    if (RPI_LIKELY(w & RPI_F_ARENA)) {
        /* the pool's own arena (compact: no checked pool exists), its
           table of class bytes */
        rpi_arena *a = pool->own_arena;
        size_t c = (size_t)((w & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
        size_t cs = a->cbytes[c];
        size_t total = RPI_AHDR + size;     /* size <= RP_MAX_SIZE: no wrap; compact */
        if (total > cs) {
            if (RPI_UNLIKELY(total > RPI_GROW_LIMIT)) goto general;
            size_t c2 = rpi_class_of(total);
            if ((char *)h + cs == a->cur) {
                /* carved last: grows into the chunk's uncarved rest, unless
                   a freed block of the new class waits (then it moves there
                   and gives its space back to the chunk: growing in place
                   would leave that block unused, and a program that grows
                   a new block step by step again and again would fill
                   fresh memory while its freed ones pile up) */
                if (!rpi_list_hdr(a->free[c2])) {
                    cs = a->cbytes[c2];
                    if (RPI_UNLIKELY((size_t)(a->end - (char *)h) < cs)) goto general;
                    a->cur = (char *)h + cs;
                    w = (w & ~RPI_CLASS_MASK) | ((uint64_t)c2 << RPI_CLASS_SHIFT);
                    goto in_place;
                }
            }
            /* a move to the new class; a destructor's entry would need
               re-keying */
            if (RPI_UNLIKELY(w & RPI_F_DTOR)) goto general;
            if (locked) return resize_arena_move_locked(pool, h, size, c2, plain);
            /* unsynchronised: inline (no second call, nothing loaded or
               computed twice) */
            return resize_arena_move(pool, h, size, c2, plain, false, false);
        }
        if (RPI_UNLIKELY(rpi_arena_shrinks(total, cs))) {
            /* a shrink to half its slot or less: out of line, so that the
               paths above keep their registers */
            if (locked) return resize_arena_shrink_locked(pool, h, t, size, plain);
            return resize_arena_shrink_unsync(pool, h, t, size, plain);
        }
    } else {
        size_t cap = rpi_big_cap(h);
        if (size > cap || size < cap / 2) {
            /* realloc; a destructor's entry would need re-keying, and an
               over-aligned block a move */
            if ((w & (RPI_F_DTOR | RPI_ALIGN_MASK)) != ((uint64_t)4 << RPI_ALIGN_SHIFT)) goto general;
            if (locked) return resize_big_locked(pool, h, size, call, plain);
            return resize_big_unsync(pool, h, size, call, plain);
        }
    }
in_place:
    h->word = (w & ~RPI_SIZE_MASK) | size;
    rpi_asan_arena_live(h, RPI_AOFF, h->word);
    rpi_asan_big_live(h);
    return resize_counted(pool, h, t, old, size, locked);
general:
    if (locked && RPI_UNLIKELY(rpi_lock_release_check(&pool->lock)))
        return resize_wake_then_impl(pool, block, size, call, plain);
    return resize_impl(pool, block, size, call, plain);
}

/* The arena's (and big blocks') fast path, out of line like the malloc
   backing's so that rp_resize itself saves no register. */
static inline __attribute__((always_inline)) void *resize_fast_arena(rp_pool *pool, void *block,
                                                                     size_t size, const char *call,
                                                                     bool plain)
{
    uint64_t w = rpi_hdr_of(block)->word;
    rpi_tag *t = rpi_hdr_of(block)->origin;
    rp_pool *owner = t->pool;
    if (RPI_UNLIKELY(size > RP_MAX_SIZE || (w & (RPI_F_ALIGNED | RPI_F_SAMPLED | RPI_F_STACK)) ||
                     (pool && pool != owner && pool != owner->front)))
        return resize_impl(pool, block, size, call, plain);
    if (!resize_owner(owner)) {
        if (owner->flags & RP_POOL_UNSYNC)
            return resize_fast_in(owner, block, w, t, size, call, plain, false);
        if (RPI_UNLIKELY(owner->flags & RPI_POOL_BIASED))
            return resize_impl(pool, block, size, call, plain);
    }
    return resize_fast_in(owner, block, w, t, size, call, plain, true);
}
static __attribute__((noinline)) void *resize_arena_plain(rp_pool *pool, void *block, size_t size)
{
    return resize_fast_arena(pool, block, size, "rp_resize", true);
}
static __attribute__((noinline)) void *resize_arena_noexc(rp_pool *pool, void *block, size_t size)
{
    return resize_fast_arena(pool, block, size, "rp_resize_noexc", false);
}

static inline __attribute__((always_inline)) void *resize_fast(rp_pool *pool, void *block,
                                                               size_t size, bool plain)
{
    /* one test: a headerless block, or a checked pool exists */
    if (RPI_UNLIKELY(!block || rpi_slow_in(block)))
        return plain ? resize_slow_plain(pool, block, size) : resize_slow_noexc(pool, block, size);
    /* No checked pool exists, so the header is trusted. Sizes over
       RP_MAX_SIZE: each path sends them to resize_impl. */
    if (!(rpi_hdr_of(block)->word & (RPI_F_ARENA | RPI_F_BIG)))
        return plain ? resize_malloc_plain(pool, block, size) : resize_malloc_noexc(pool, block, size);
    return plain ? resize_arena_plain(pool, block, size) : resize_arena_noexc(pool, block, size);
}

void *rp_resize(rp_pool *pool, void *block, size_t size)
{
    return resize_fast(pool, block, size, true);
}
void *rp_resize_noexc(rp_pool *pool, void *block, size_t size)
{
    return resize_fast(pool, block, size, false);
}

/* ------------------------------------------------------------- blocks */
/* A headerless block's word for the queries below (the pool entered), 0
   with the misuse reported when block is not a live one. */
static uint32_t hl_word(const void *block, const char *call, rp_pool **pool, int *how)
{
    *pool = hl_pool(block, call);
    if (!*pool) return 0;
    *how = hl_enter(*pool);
    uint32_t m = *rpi_hl_meta(block);
    if (!(m & RPI_HL_SIZE)) {
        hl_exit(*pool, *how);
        rpi_report_error(RP_EDOUBLEFREE, block, "%s: block %p was freed", call, block);
    }
    return m;
}

size_t rp_block_size(const void *block)
{
    if (block && rpi_hl_in(block)) {
        rp_pool *pool;
        int how;
        uint32_t m = hl_word(block, "rp_block_size", &pool, &how);
        if (m) hl_exit(pool, how);
        return m & RPI_HL_SIZE;
    }
    if (!block || resolve_checked(block, NULL, "rp_block_size") < 0) return 0;
    return rpi_size(rpi_hdr_of(block));
}

const char *rp_block_tag(const void *block)
{
    if (block && rpi_hl_in(block)) {
        rp_pool *pool;
        int how;
        uint32_t m = hl_word(block, "rp_block_tag", &pool, &how);
        if (!m) return NULL;
        const char *name = rpi_hl_tag(pool, m)->name;
        hl_exit(pool, how);
        return name;
    }
    if (!block || resolve_checked(block, NULL, "rp_block_tag") < 0) return NULL;
    return rpi_hdr_of(block)->origin->name;
}

rp_pool *rp_block_pool(const void *block)
{
    if (block && rpi_hl_in(block)) {
        rp_pool *pool;
        int how;
        if (!hl_word(block, "rp_block_pool", &pool, &how)) return NULL;
        hl_exit(pool, how);
        return pool->front ? pool->front : pool;
    }
    if (!block || resolve_checked(block, NULL, "rp_block_pool") < 0) return NULL;
    rp_pool *pool = rpi_hdr_of(block)->origin->pool;
    return pool->front ? pool->front : pool;
}

static atomic_uint_fast64_t dtor_seq;   /* registration order of destructors */

int rp_set_destructor(void *block, rp_destructor_fn fn)
{
    if (!block) return RP_EINVAL;
    rp_pool *pool;
    if (rpi_hl_in(block)) {
        /* a headerless block (of an unchecked pool): its flag in the slot's
           word */
        if (!(pool = hl_pool(block, "rp_set_destructor"))) return RP_EINVAL;
        lock_both(pool, false);
        if (!(*rpi_hl_meta(block) & RPI_HL_SIZE)) {
            unlock_both(pool, false);
            rpi_report_error(RP_EDOUBLEFREE, block, "rp_set_destructor: block %p was freed",
                             block);
            return RP_EINVAL;
        }
    } else {
        if (resolve_checked(block, NULL, "rp_set_destructor") < 0) return RP_EINVAL;
        pool = rpi_hdr_of(block)->origin->pool;
        lock_both(pool, pool->flags & RP_POOL_CHECKED);
    }
    const bool checked = pool->flags & RP_POOL_CHECKED;
    rpi_dtor *d = rpi_ptrmap_get(&pool->dtor_map, block);
    if (!fn) {
        if (d) {
            rpi_ptrmap_del(&pool->dtor_map, block);
            d->prev->next = d->next;
            d->next->prev = d->prev;
            block_dtor_flag(block, checked, false);
        }
        unlock_both(pool, checked);
        rpi_sys_free(d);
        return d ? 0 : RP_ENOTFOUND;
    }
    if (d) {
        d->fn = fn;
        unlock_both(pool, checked);
        return 0;
    }
    d = rpi_sys_malloc(sizeof *d);
    if (!d || rpi_ptrmap_put(&pool->dtor_map, block, d) != 0) {
        unlock_both(pool, checked);
        rpi_sys_free(d);
        return RP_ENOMEM;
    }
    d->block = block;
    d->fn = fn;
    d->seq = atomic_fetch_add_explicit(&dtor_seq, 1, memory_order_relaxed);
    d->next = &pool->dtors;
    d->prev = pool->dtors.prev;
    pool->dtors.prev->next = d;
    pool->dtors.prev = d;
    block_dtor_flag(block, checked, true);
    unlock_both(pool, checked);
    return 0;
}

/* -------------------------------------------------------------- audit */
/* rp_pool_stats' entry i, when out has room for it. */
static inline void stat_put(rp_tag_stat *out, size_t cap, size_t i, const rpi_tag *t, size_t blocks,
                            size_t bytes, size_t peak, uint64_t allocs)
{
    if (i < cap && out) {
        out[i].tag = t->name;
        out[i].blocks = blocks;
        out[i].bytes = bytes;
        out[i].peak_bytes = peak;
        out[i].allocs = allocs;
    }
}

/* A pool with shards (its lock held): the folded tags. */
static size_t stats_folded(rp_pool *pool, rp_tag_stat *out, size_t cap)
{
    rpi_fold fo;
    rpi_shards_lock(pool);
    rpi_shards_fold(pool, &fo);
    size_t i = 0;
    for (rpi_tag *t = rpi_fold_next(pool, NULL); t; t = rpi_fold_next(pool, t)) {
        if (!t->f_allocs) continue;
        stat_put(out, cap, i++, t, t->f_blocks, t->f_bytes, t->f_peak, t->f_allocs);
    }
    rpi_shards_unlock(pool);
    return i;
}

size_t rp_pool_stats(rp_pool *pool, rp_tag_stat *out, size_t cap)
{
    if (!pool) return 0;
    rpi_pool_lock(pool);
    size_t i = 0;
    if (RPI_UNLIKELY(pool->shards != NULL)) {
        i = stats_folded(pool, out, cap);
    } else if (RPI_UNLIKELY(pool->lflags & RPI_POOL_UNLISTED)) {
        /* interned or failed-call records (allocs 0) are left out */
        size_t unlisted = 0;
        for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
            if (!rpi_tag_listed(t)) { unlisted++; continue; }
            stat_put(out, cap, i++, t, rpi_tag_blocks(t), rpi_tag_bytes(t), t->peak, t->allocs);
        }
        if (!unlisted) pool->lflags &= ~RPI_POOL_UNLISTED;
    } else {
        /* the entries out has room for, then the count of the rest (the
           tests of out and cap once per tag, not twice) */
        rpi_tag *t = pool->tag_first;
        if (out)
            for (; t && i < cap; t = t->lnext, i++)
                stat_put(out, cap, i, t, rpi_tag_blocks(t), rpi_tag_bytes(t), t->peak, t->allocs);
        for (; t; t = t->lnext) i++;
    }
    rpi_pool_unlock(pool);
    return i;
}

size_t rp_pool_outstanding(rp_pool *pool, size_t *bytes)
{
    if (!pool) { if (bytes) *bytes = 0; return 0; }
    rpi_pool_lock(pool);
    size_t n = rpi_pool_totals(pool, NULL);
    if (bytes) *bytes = rpi_pool_bytes(pool);
    if (pool->shards) {
        rpi_fold fo;
        rpi_shards_lock(pool);
        rpi_shards_fold(pool, &fo);
        rpi_shards_unlock(pool);
        n = fo.blocks;
        if (bytes) *bytes = fo.bytes;
    }
    rpi_pool_unlock(pool);
    return n;
}

int rp_pool_get_info(rp_pool *pool, rp_pool_info *info)
{
    if (!pool || !info || info->struct_size < sizeof(rp_pool_info)) return RP_EINVAL;
    rpi_pool_lock(pool);
    info->version = 1;
    info->flags = pool->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED | RP_POOL_ARENA | RP_POOL_STACKS);
    info->blocks = rpi_pool_totals(pool, &info->allocs);
    info->bytes = rpi_pool_bytes(pool);
    info->peak_bytes = pool->peak;
    info->tags = 0;
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) info->tags += rpi_tag_listed(t);
    info->children = pool->nchildren;
    info->reserved_bytes = rpi_pool_reserved(pool);
    info->chunks = pool->arena ? pool->arena->nchunks : 0;
    if (pool->shards) {
        rpi_fold fo;
        rpi_shards_lock(pool);
        rpi_shards_fold(pool, &fo);
        rpi_shards_unlock(pool);
        info->blocks = fo.blocks;
        info->allocs = fo.allocs;
        info->bytes = fo.bytes;
        info->peak_bytes = fo.peak;
        info->tags = fo.tags;
        info->reserved_bytes = fo.reserved;
        info->chunks = fo.chunks;
    }
    rpi_pool_unlock(pool);
    return 0;
}

/* The visitor runs without the pool's lock (it may exit, or use the pool):
   a mark kept in the ring just after the block being visited holds the
   walk's place, so blocks freed or allocated meanwhile are handled. */
static int walk_one(rp_pool *pool, rp_visit_fn visit, void *arg);

int rp_pool_walk(rp_pool *pool, rp_visit_fn visit, void *arg)
{
    if (!pool || !visit) return RP_EINVAL;
    int rc = walk_one(pool, visit, arg);
    /* then each shard's blocks (a block never changes shards) */
    for (rp_pool *sh = rc ? NULL : shards_of(pool); sh && !rc; sh = sh->shard_next)
        rc = walk_one(sh, visit, arg);
    return rc;
}

/* visit(h's payload, size, tag) with the pool's locks let go meanwhile
   (the visitor may call into the library), taken again after. */
static int visit_unlocked(rp_pool *pool, bool checked, rpi_hdr *h, rp_visit_fn visit, void *arg)
{
    void *payload = rpi_payload(h);
    size_t size = rpi_size(h);
    const char *tag = h->origin->name;
    unlock_both(pool, checked);
    int rc = visit(payload, size, tag, arg);
    lock_both(pool, checked);
    return rc;
}

/* The same for a headerless block p (unchecked pools). */
static int visit_hl(rp_pool *pool, void *p, rp_visit_fn visit, void *arg)
{
    uint32_t m = *rpi_hl_meta(p);
    const char *tag = rpi_hl_tag(pool, m)->name;
    unlock_both(pool, false);
    int rc = visit(p, m & RPI_HL_SIZE, tag, arg);
    lock_both(pool, false);
    return rc;
}

static int walk_one(rp_pool *pool, rp_visit_fn visit, void *arg)
{
    const bool checked = pool->flags & RP_POOL_CHECKED;
    rpi_mark m;
    memset(&m, 0, sizeof m);
    lock_both(pool, checked);
    m.next = pool->marks;
    pool->marks = &m;
    m.h.prev = &pool->ring;
    m.h.next = pool->ring.next;
    m.h.next->prev = &m.h;
    pool->ring.next = &m.h;
    int rc = 0;
    char why[256];
    why[0] = '\0';
    for (;;) {
        rpi_hdr *h = m.h.next;
        /* other walks' marks are not blocks */
        while (h != &pool->ring && rpi_is_mark(pool, h)) h = h->next;
        if (h == &pool->ring) break;
        rpi_ring_unlink(&m.h);
        m.h.prev = h;
        m.h.next = h->next;
        h->next->prev = &m.h;
        h->next = &m.h;
        if ((rc = visit_unlocked(pool, checked, h, visit, arg)) != 0) break;
    }
    /* a checked pool's blocks (on no ring): by their records */
    if (!rc && checked) rc = rpi_registry_walk(pool, visit, arg, why, sizeof why);
    /* then the compact blocks, chunk by chunk: the mark on pool->marks
       keeps every slot boundary in place meanwhile (no carve-back) */
    if (!rc && pool->arena && pool->arena->off) {
        rpi_slots it = { 0 };
        rpi_hdr *h;
        while ((h = rpi_arena_next_live(pool->arena, &it)) != NULL)
            if ((rc = visit_unlocked(pool, checked, h, visit, arg)) != 0) break;
    }
    /* then the headerless blocks, likewise */
    if (!rc && pool->arena && pool->arena->hl_chunks) {
        rpi_hlslots it = { 0 };
        void *p;
        while ((p = rpi_hl_next_live(pool->arena, &it)) != NULL)
            if ((rc = visit_hl(pool, p, visit, arg)) != 0) break;
    }
    rpi_ring_unlink(&m.h);
    for (rpi_mark **pm = &pool->marks; *pm; pm = &(*pm)->next)
        if (*pm == &m) { *pm = m.next; break; }
    unlock_both(pool, checked);
    if (rc == RP_ECORRUPT && why[0])
        rpi_report_error(RP_ECORRUPT, NULL, "rp_pool_walk: pool '%s': %s", pool->name, why);
    return rc;
}

/* Findings of a check, reported once the locks are released: the error
   handler is user code and may exit or call back into the library. */
#define CHECK_NOTES 8
typedef struct check_notes {
    int  n;
    char msg[CHECK_NOTES][300];
    const void *block[CHECK_NOTES];
} check_notes;

__attribute__((format(printf, 3, 4)))
static void note(check_notes *cn, const void *block, const char *fmt, ...)
{
    if (cn->n >= CHECK_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cn->msg[cn->n], sizeof cn->msg[0], fmt, ap);
    va_end(ap);
    cn->block[cn->n++] = block;
}

static int check_one(rp_pool *pool);

int rp_pool_check(rp_pool *pool)
{
    if (!pool) return RP_EINVAL;
    int rc = check_one(pool);
    /* each shard is a ring with counters of its own */
    for (rp_pool *sh = shards_of(pool); sh; sh = sh->shard_next)
        if (check_one(sh) != 0) rc = RP_ECORRUPT;
    return rc;
}

/* A block the check found (in the ring or a chunk, `where` says which):
   counted into *blocks and *bytes, or false with a note when there are more
   than the counters say or (origin) its tag record is not pool's. */
static bool check_counted(check_notes *cn, rp_pool *pool, rpi_hdr *h, const char *where,
                          size_t limit, bool origin, size_t *blocks, size_t *bytes)
{
    if (++*blocks > limit) {
        note(cn, NULL, "rp_pool_check: pool '%s': %s more blocks than counted (%zu)", pool->name,
             where, limit);
        return false;
    }
    if (origin && (h->origin == NULL || h->origin->pool != pool)) {
        note(cn, rpi_payload(h), "rp_pool_check: pool '%s': block %p has a foreign origin",
             pool->name, rpi_payload(h));
        return false;
    }
    *bytes += rpi_size(h);
    return true;
}

static int check_one(rp_pool *pool)
{
    const bool checked = pool->flags & RP_POOL_CHECKED;
    check_notes cn;
    cn.n = 0;
    lock_both(pool, checked);
    size_t blocks = 0, bytes = 0, limit = rpi_pool_totals(pool, NULL);
    /* Pool totals are compared with the ring and with the sum of the tags. */
    size_t tag_blocks = 0, tag_bytes = 0;
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
        tag_blocks += rpi_tag_blocks(t);
        tag_bytes += rpi_tag_bytes(t);
    }
    bool ring_whole = true;
    rpi_hdr *prev = &pool->ring;
    for (rpi_hdr *h = pool->ring.next; h != &pool->ring; prev = h, h = h->next) {
        if (h->prev != prev) {
            note(&cn, rpi_payload(h), "rp_pool_check: pool '%s': ring link broken at block %p",
                 pool->name, rpi_payload(h));
            ring_whole = false;
            break;
        }
        if (rpi_is_mark(pool, h)) continue;
        if (!check_counted(&cn, pool, h, "ring holds", limit, true, &blocks, &bytes)) {
            ring_whole = false;
            break;
        }
    }
    /* checked blocks (on no ring): by their records; a header that
       disagrees with its record ends the pass */
    if (checked && ring_whole) {
        char why[256];
        void *cur = NULL;
        bool ok;
        for (rpi_hdr *h; (h = rpi_registry_next(pool, &cur, &ok, why, sizeof why)) != NULL;) {
            if (!ok) {
                note(&cn, rpi_payload(h), "rp_pool_check: pool '%s': %s", pool->name, why);
                ring_whole = false;
                break;
            }
            if (!check_counted(&cn, pool, h, "records hold", limit, false, &blocks, &bytes)) {
                ring_whole = false;
                break;
            }
        }
    }
    /* compact arena blocks (unchecked pools): by chunk */
    if (ring_whole && pool->arena && pool->arena->off) {
        rpi_slots it = { 0 };
        for (rpi_hdr *h; (h = rpi_arena_next_live(pool->arena, &it)) != NULL;) {
            if (!check_counted(&cn, pool, h, "chunks hold", limit, true, &blocks, &bytes)) {
                ring_whole = false;
                break;
            }
        }
    }
    /* headerless blocks (unchecked pools): by chunk */
    if (ring_whole && pool->arena && pool->arena->hl_chunks) {
        rpi_arena *a = pool->arena;
        rpi_hlslots it = { 0 };
        for (void *p; (p = rpi_hl_next_live(a, &it)) != NULL;) {
            uint32_t m = *rpi_hl_meta(p), i = m >> RPI_HL_TAG_SHIFT;
            if (++blocks > limit) {
                note(&cn, NULL, "rp_pool_check: pool '%s': chunks hold more blocks than counted "
                     "(%zu)", pool->name, limit);
                ring_whole = false;
                break;
            }
            if (i == 0 || i >= a->hl_ntags || pool->hl_tags[i]->pool != pool) {
                note(&cn, p, "rp_pool_check: pool '%s': block %p has a foreign origin",
                     pool->name, p);
                ring_whole = false;
                break;
            }
            bytes += m & RPI_HL_SIZE;
        }
    }
    if (checked && !ring_whole) {
        /* the counters are still compared, with the table's truth */
        rpi_registry_live_totals(pool, &blocks, &bytes);
        ring_whole = true;
    }
    if (ring_whole && (blocks != limit || bytes != rpi_pool_bytes(pool) || tag_blocks != limit ||
                       tag_bytes != rpi_pool_bytes(pool) || (cn.n == 0 && pool->ring.prev->next != &pool->ring))) {
        note(&cn, NULL,
             "rp_pool_check: pool '%s': ring has %zu blocks/%zu bytes, counters say "
             "%zu/%zu (tags %zu/%zu)",
             pool->name, blocks, bytes, limit, rpi_pool_bytes(pool), tag_blocks, tag_bytes);
    }
    unlock_both(pool, checked);
    for (int i = 0; i < cn.n; i++) rpi_report_error(RP_ECORRUPT, cn.block[i], "%s", cn.msg[i]);
    return cn.n ? RP_ECORRUPT : 0;
}

/* ------------------------------------------------------- default pool */
static _Atomic(rp_pool *) stat_pool;
static const char stat_tag[] = "rp_stat";

void rp_stat_create_pool(void)
{
    if (atomic_load(&stat_pool)) return;
    rp_pool *p = rp_pool_create("rp_stat");
    if (!p) rpi_oom("rp_stat_create_pool", sizeof(rp_pool), NULL);
    rp_pool *expected = NULL;
    if (!atomic_compare_exchange_strong(&stat_pool, &expected, p)) rp_pool_destroy(p);
}

void rp_stat_destroy_pool(void)
{
    rp_pool *p = atomic_exchange(&stat_pool, NULL);
    rp_pool_destroy(p);
}

rp_pool *rp_stat_pool(void) { return atomic_load(&stat_pool); }

void *rp_stat_alloc_noexc(size_t size)
{
    rp_pool *p = atomic_load(&stat_pool);
    if (p) return rp_alloc_noexc(p, size, stat_tag);
    return rpi_sys_malloc(size ? size : 1);
}

void *rp_stat_alloc(size_t size)
{
    void *r = rp_stat_alloc_noexc(size);
    if (!r) rpi_oom("rp_stat_alloc", size, stat_tag);
    return r;
}

void *rp_stat_calloc_noexc(size_t n, size_t size)
{
    rp_pool *p = atomic_load(&stat_pool);
    if (p) return rp_calloc_noexc(p, n, size, stat_tag);
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) return NULL;
    return rpi_sys_calloc(total ? n : 1, total ? size : 1);
}

void *rp_stat_calloc(size_t n, size_t size)
{
    void *r = rp_stat_calloc_noexc(n, size);
    size_t total;
    /* an overflowing n * size is SIZE_MAX to the handler, as in rp_calloc */
    if (!r) rpi_oom("rp_stat_calloc", __builtin_mul_overflow(n, size, &total) ? SIZE_MAX : total,
                    stat_tag);
    return r;
}

void *rp_stat_resize_noexc(void *b, size_t size)
{
    rp_pool *p = atomic_load(&stat_pool);
    if (p) {
        if (!b) return rp_alloc_noexc(p, size, stat_tag);
        return rp_resize_noexc(NULL, b, size);
    }
    return rpi_sys_realloc(b, size ? size : 1);
}

void *rp_stat_resize(void *b, size_t size)
{
    void *r = rp_stat_resize_noexc(b, size);
    if (!r) rpi_oom("rp_stat_resize", size, stat_tag);
    return r;
}

void rp_stat_free(void *b)
{
    if (atomic_load(&stat_pool)) rp_free(b);
    else rpi_sys_free(b);
}

/* A NULL string, a negative count or a NULL argument is misuse, as in
   rp_strdup and rp_strconcat (string_arg, concat_measure): RP_EINVAL through
   the error handler and NULL, from both forms (the plain form's OOM handler
   is for memory only). */
static char *stat_strdup(const char *s, const char *call, bool plain)
{
    if (!string_arg(s, call)) return NULL;
    size_t l = strlen(s) + 1;
    char *r = rp_stat_alloc_noexc(l);
    if (r) memcpy(r, s, l);
    else if (plain) rpi_oom(call, l, stat_tag);
    return r;
}

char *rp_stat_strdup_noexc(const char *s) { return stat_strdup(s, "rp_stat_strdup_noexc", false); }
char *rp_stat_strdup(const char *s) { return stat_strdup(s, "rp_stat_strdup", true); }

static char *stat_strconcat_v(int n, va_list ap, const char *call, bool plain)
{
    size_t total;
    if (!concat_measure(n, ap, call, &total)) return NULL;
    char *out = total == SIZE_MAX ? NULL : rp_stat_alloc_noexc(total + 1);
    if (!out) {
        if (plain) rpi_oom(call, 0, stat_tag);
        return NULL;
    }
    return concat_copy(out, n, ap);
}

char *rp_stat_strconcat_noexc(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    char *r = stat_strconcat_v(n, ap, "rp_stat_strconcat_noexc", false);
    va_end(ap);
    return r;
}

char *rp_stat_strconcat(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    char *r = stat_strconcat_v(n, ap, "rp_stat_strconcat", true);
    va_end(ap);
    return r;
}
