/*
 * table.c -- the interposer's side tables.
 *
 * Blocks: 64 shards chosen by a hash of the pointer, each an open-addressed
 * table (linear probing, backward-shift deletion, no tombstones) with its own
 * mutex, grown by doubling into a fresh mmap. A thread touches one shard per
 * malloc or free, so threads rarely meet on a lock.
 *
 * Sites: one mmap'd array of rpp_site (ids are indexes, records never move)
 * and a map from return address to id: 16 shards, open addressed, each with
 * its own lock. A per-thread direct-mapped cache in front of the map makes
 * the common case (a site seen before by this thread) lock-free.
 */
#include "rpp.h"
#include "rawmem.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>

rpp_stats rpp_stat;

#define PTR_SHARDS 64u
#define SITE_SHARDS 16u
#define PTR_INITIAL 64u
#define SITE_INITIAL 64u

/* The shards' locks: see rawmem.h (the critical sections here are a few dozen
   instructions and never call out). */
typedef struct spin {
    atomic_int held;
} spin;

static inline void spin_lock(spin *l) { rpi_spin_lock(&l->held); }
static inline void spin_unlock(spin *l) { rpi_spin_unlock(&l->held); }

/* 16 bytes, four to a cache line: the pointer, and the requested size (low
   40 bits) with the site id (high 24 bits). Blocks of 1 TiB or more do not
   fit and are left untracked (counted in rpp_stat.dropped). */
typedef struct ptr_slot {
    uintptr_t ptr;   /* 0 = empty */
    uint64_t meta;
} ptr_slot;

#define SIZE_BITS 40
#define SIZE_MASK ((UINT64_C(1) << SIZE_BITS) - 1)
_Static_assert(RPP_MAX_SITES <= (1u << (64 - SIZE_BITS)), "site ids must fit the slot");
_Static_assert(sizeof(ptr_slot) == 16, "slot is 16 bytes");

static inline uint64_t pack(size_t size, uint32_t site) { return (uint64_t)size | ((uint64_t)site << SIZE_BITS); }
static inline size_t slot_size(const ptr_slot *s) { return (size_t)(s->meta & SIZE_MASK); }
static inline uint32_t slot_site(const ptr_slot *s) { return (uint32_t)(s->meta >> SIZE_BITS); }

typedef struct ptr_shard {
    spin lock;
    ptr_slot *slots;
    size_t mask;     /* (capacity - 1) * sizeof(ptr_slot): a byte mask, see below */
    size_t count;
    size_t limit;    /* grow before count reaches it: capacity / 2 (0: no table yet) */
} __attribute__((aligned(64))) ptr_shard;

typedef struct site_slot {
    uintptr_t pc;    /* 0 = empty */
    uint32_t id;
} site_slot;

typedef struct site_shard {
    spin lock;
    site_slot *slots;
    size_t mask;
    size_t count;
} __attribute__((aligned(64))) site_shard;

static ptr_shard ptr_shards[PTR_SHARDS];
/* What a shard without a table of its own points at (limit 0, mask 0): a
   lookup finds the empty slot at once; an insertion grows the shard first.
   Never written. */
static ptr_slot no_slots[1];
static site_shard site_shards[SITE_SHARDS];
static rpp_site *sites;                 /* RPP_MAX_SITES records, reserved */
static _Atomic uint32_t nsites = 1;     /* id 0 = overflow */
static pthread_key_t counts_key;         /* hands a thread's counter block back */
static int counts_key_ok;
static void release_counts(void *arg);


static inline uint64_t mix(uintptr_t x) { return rpp_mix(x); }

/* The only calls out of this file are mmap/munmap, on growth: errno is kept
   across them so the hooks need not save it on the hot path. */

static void unmap(void *p, size_t bytes)
{
    int saved = errno;
    munmap(p, bytes);
    errno = saved;
}

int rpp_table_init(void)
{
    sites = rpi_map_zeroed((size_t)RPP_MAX_SITES * sizeof(rpp_site));
    if (!sites)
        return -1;
    counts_key_ok = pthread_key_create(&counts_key, release_counts) == 0;
    for (unsigned i = 0; i < PTR_SHARDS; i++)
        if (!ptr_shards[i].limit)
            ptr_shards[i].slots = no_slots;
    return 0;
}

/* ------------------------------------------------------------- sites */
static int site_grow(site_shard *s)
{
    size_t ncap = s->slots ? (s->mask + 1) * 2 : SITE_INITIAL;
    site_slot *n = rpi_map_zeroed(ncap * sizeof(site_slot));
    if (!n)
        return -1;
    if (s->slots) {
        for (size_t i = 0; i <= s->mask; i++) {
            if (!s->slots[i].pc)
                continue;
            size_t j = (mix(s->slots[i].pc) >> 20) & (ncap - 1);
            while (n[j].pc)
                j = (j + 1) & (ncap - 1);
            n[j] = s->slots[i];
        }
        unmap(s->slots, (s->mask + 1) * sizeof(site_slot));
    }
    s->slots = n;
    s->mask = ncap - 1;
    return 0;
}

static uint32_t site_lookup_locked(uintptr_t pc, uint64_t h)
{
    site_shard *s = &site_shards[h >> 60];
    uint32_t id = 0;
    spin_lock(&s->lock);
    if (s->slots) {
        for (size_t j = (h >> 20) & s->mask;; j = (j + 1) & s->mask) {
            if (s->slots[j].pc == pc) {
                id = s->slots[j].id;
                goto out;
            }
            if (!s->slots[j].pc)
                break;
        }
    }
    if ((!s->slots || (s->count + 1) * 10 > (s->mask + 1) * 7) && site_grow(s) != 0)
        goto out;
    id = atomic_fetch_add_explicit(&nsites, 1, memory_order_relaxed);
    if (id >= RPP_MAX_SITES) {
        atomic_store_explicit(&nsites, RPP_MAX_SITES, memory_order_relaxed);
        id = 0;
        goto out;
    }
    sites[id].pc = pc;
    size_t j = (h >> 20) & s->mask;
    while (s->slots[j].pc)
        j = (j + 1) & s->mask;
    s->slots[j].pc = pc;
    s->slots[j].id = id;
    s->count++;
out:
    spin_unlock(&s->lock);
    return id;
}

/* Out of line (rpp.h): the callers' fast path saves no registers for it. */
__attribute__((noinline)) uint32_t rpp_site_for_slow(uintptr_t pc, uint64_t h)
{
    rpp_cache_entry *c = &rpp_tls_cache[rpp_cache_slot(h)];
    uint32_t id = site_lookup_locked(pc, h);
    if (id) {
        c->pc = pc;
        c->id = id;
    }
    return id;
}

uint32_t rpp_site_count(void)
{
    uint32_t n = atomic_load_explicit(&nsites, memory_order_acquire);
    return n > RPP_MAX_SITES ? RPP_MAX_SITES : n;
}

/* --------------------------------------------------- site counters
 * Counting with atomic read-modify-writes on the shared site records cost
 * more than the rest of the bookkeeping together (five locked instructions
 * per malloc/free pair). So each thread keeps deltas for the sites it
 * touches in its own block: a direct-mapped array indexed by site id, updated
 * with plain loads and stores by the owner only. A slot taken over by another
 * site first adds its deltas to the shared record. Readers (the report) add
 * the shared record and every block's slot for that site.
 *
 * Only allocations are counted: a site's outstanding blocks and bytes are
 * the block table's entries that name it, counted when a report is taken
 * (rpp_outstanding_begin), so free and realloc count nothing.
 *
 * Blocks come from mmap, are linked into one list forever (lock-free push)
 * and are handed back when their thread exits (pthread key destructor) so the
 * next new thread reuses one, deltas included: a delta is just a count, it
 * does not belong to a thread. After the destructor the thread counts on the
 * shared records directly. In a fork child, every block but the forking
 * thread's is handed back the same way. */
#define DELTA_SLOTS 4096u

/* A thread's counts for one site, both only ever growing: an allocation
   adds to each (two additions per malloc). 32 bytes, so that a slot's
   offset is one shift of the site id. */
typedef struct delta {
    _Atomic uint32_t site;
    _Atomic uint64_t allocs, alloc_bytes;
} __attribute__((aligned(32))) delta;
_Static_assert(sizeof(delta) == 32, "a delta slot is 32 bytes");

typedef struct rpp_counts_block {
    struct rpp_counts_block *next;
    atomic_int in_use;
    delta slot[DELTA_SLOTS];
} counts_block;

static _Atomic(counts_block *) all_blocks;
#define tls_counts (rpp_tls.counts)
#define tls_counts_done (rpp_tls.counts_done)
static void release_counts(void *arg)
{
    counts_block *b = arg;
    unsigned st = rpp_tls_state & RPP_BUSY;
    rpp_enter(st);
    tls_counts = NULL;
    tls_counts_done = 1;
    if (b)
        atomic_store_explicit(&b->in_use, 0, memory_order_release);
    rpp_leave();
}

static __attribute__((noinline, cold)) counts_block *claim_counts(void)
{
    if (tls_counts_done || !counts_key_ok)
        return NULL;
    counts_block *b;
    for (b = atomic_load_explicit(&all_blocks, memory_order_acquire); b; b = b->next) {
        int idle = 0;
        if (atomic_load_explicit(&b->in_use, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&b->in_use, &idle, 1))
            break;
    }
    if (!b) {
        b = rpi_map_zeroed(sizeof *b);
        if (!b) {
            tls_counts_done = 1;      /* count on the shared records */
            return NULL;
        }
        b->in_use = 1;
        counts_block *head = atomic_load_explicit(&all_blocks, memory_order_relaxed);
        do
            b->next = head;
        while (!atomic_compare_exchange_weak(&all_blocks, &head, b));
    }
    tls_counts = b;
    pthread_setspecific(counts_key, b);
    return b;
}

/* The owner's addition; readers load atomically. On x86-64 one `add` to
   memory: only the owner writes, and an aligned 8-byte store is atomic, so
   a reader sees the old or the new value (a handler on the owner's thread
   never counts while the owner is inside the bookkeeping). The C11 form, a
   relaxed load and store, costs two more instructions (GCC does not fuse
   them), and is kept for other targets and ThreadSanitizer, which does not
   see inside an asm. */
static inline void add_relaxed(_Atomic uint64_t *v, uint64_t d)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    __asm__("addq %1, %0" : "+m"(*(uint64_t *)v) : "er"(d));
#else
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d,
                          memory_order_relaxed);
#endif
}

static inline void add_delta(delta *d, uint64_t size)
{
    add_relaxed(&d->allocs, 1);
    add_relaxed(&d->alloc_bytes, size);
}

/* Adds a delta's counts to its site's shared record and zeroes it. */
static void flush_delta(delta *d, uint32_t held)
{
    rpp_site *s = &sites[held];
    uint64_t a = atomic_load_explicit(&d->allocs, memory_order_relaxed);
    uint64_t ab = atomic_load_explicit(&d->alloc_bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->allocs, a, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->alloc_bytes, ab, memory_order_relaxed);
    atomic_store_explicit(&d->allocs, 0, memory_order_relaxed);
    atomic_store_explicit(&d->alloc_bytes, 0, memory_order_relaxed);
}

/* Off the hot path: the thread has no block yet, or the slot holds another
   site (its deltas go to that site's shared record first). */
static __attribute__((noinline)) void count_slow(uint32_t site, uint64_t size)
{
    counts_block *b = tls_counts;
    if (!b && !(b = claim_counts())) {
        rpp_site *s = &sites[site];
        atomic_fetch_add_explicit(&s->allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->alloc_bytes, size, memory_order_relaxed);
        return;
    }
    delta *d = &b->slot[site & (DELTA_SLOTS - 1)];
    uint32_t held = atomic_load_explicit(&d->site, memory_order_relaxed);
    if (held != site) {
        flush_delta(d, held);
        atomic_store_explicit(&d->site, site, memory_order_release);
    }
    add_delta(d, size);
}

static inline __attribute__((always_inline)) void count(uint32_t site, uint64_t size)
{
    counts_block *b = tls_counts;
    if (RPP_LIKELY(b != NULL)) {
        delta *d = &b->slot[site & (DELTA_SLOTS - 1)];
        if (RPP_LIKELY(atomic_load_explicit(&d->site, memory_order_relaxed) == site)) {
            add_delta(d, size);
            return;
        }
    }
    count_slow(site, size);
}

void rpp_count_alloc(uint32_t site, size_t size) { count(site, size); }

/* Outstanding blocks and bytes per site, counted off the block table by
   rpp_outstanding_begin for the report (one writer at a time). */
typedef struct outstanding {
    int64_t blocks, bytes;
} outstanding;
static outstanding *out_counts;
static uint32_t out_sites;

void rpp_site_read(uint32_t id, rpp_site_counts *out)
{
    rpp_site *s = &sites[id];
    out->pc = s->pc;
    out->blocks = 0;
    out->bytes = 0;
    if (out_counts && id < out_sites) {
        out->blocks = out_counts[id].blocks;
        out->bytes = out_counts[id].bytes;
    }
    out->allocs = atomic_load_explicit(&s->allocs, memory_order_relaxed);
    out->alloc_bytes = atomic_load_explicit(&s->alloc_bytes, memory_order_relaxed);
    for (counts_block *b = atomic_load_explicit(&all_blocks, memory_order_acquire); b; b = b->next) {
        delta *d = &b->slot[id & (DELTA_SLOTS - 1)];
        if (atomic_load_explicit(&d->site, memory_order_acquire) != id)
            continue;
        out->allocs += atomic_load_explicit(&d->allocs, memory_order_relaxed);
        out->alloc_bytes += atomic_load_explicit(&d->alloc_bytes, memory_order_relaxed);
    }
}

void rpp_counts_after_fork_child(void)
{
    for (counts_block *b = atomic_load_explicit(&all_blocks, memory_order_acquire); b; b = b->next)
        if (b != tls_counts)
            atomic_store_explicit(&b->in_use, 0, memory_order_release);
}

/* ------------------------------------------------------------ blocks
 * A block's hash is one multiplication (Fibonacci hashing): its top six
 * bits pick the shard, bits 20 and up the home slot. Both depend on every
 * address bit below them, and the home slot of an entry met during a
 * deletion costs three instructions to recompute.
 *
 * The writers hold the shard's lock; the report counts the entries without
 * it (rpp_outstanding_begin). So slots are written with atomic stores (the
 * pointer last, with release: a reader that sees it sees its size and site)
 * and read under the lock with plain loads; a shard's table and mask are
 * published with release, the table first, and a table that was replaced
 * is emptied (MADV_DONTNEED: its pages read as zeros) but stays mapped, so
 * a reader that loads the mask and then the table never reads past a
 * table's end nor touches an unmapped page. */
static inline uint64_t ptr_hash(uintptr_t p) { return (uint64_t)p * 0x9E3779B97F4A7C15ull; }
#define HOME_SHIFT 20
/* Slots are addressed by byte offset, and a shard's mask is a byte mask
   ((capacity - 1) * 16): the home slot's offset is the hash's bits from
   20 up shifted into place by one shift and one and, a step is an add and
   an and, and a slot is read at base + offset with no scaling (a probe
   costs three instructions fewer than with slot indexes). */
#define SLOT_SHIFT 4
_Static_assert(sizeof(ptr_slot) == (1u << SLOT_SHIFT), "slot offsets are index << SLOT_SHIFT");
static inline size_t home_of(uint64_t h, size_t mask)
{
    return (size_t)(h >> (HOME_SHIFT - SLOT_SHIFT)) & mask;
}
static inline size_t home(uintptr_t p, size_t mask) { return home_of(ptr_hash(p), mask); }
static inline size_t next_off(size_t off, size_t mask) { return (off + sizeof(ptr_slot)) & mask; }
static inline ptr_slot *slot_at(ptr_slot *slots, size_t off)
{
    return (ptr_slot *)((char *)slots + off);
}
/* The shard of hash h, as one pointer: the empty asm keeps GCC from
   splitting it back into the array's address and an index, two registers
   live across the probe loop instead of one. */
static inline ptr_shard *shard_of(uint64_t h)
{
    ptr_shard *s = &ptr_shards[h >> 58];
    __asm__("" : "+r"(s));
    return s;
}

static inline void slot_set(ptr_slot *e, uintptr_t key, uint64_t meta)
{
    __atomic_store_n(&e->meta, meta, __ATOMIC_RELAXED);
    __atomic_store_n(&e->ptr, key, __ATOMIC_RELEASE);
}

static __attribute__((noinline, cold)) int ptr_grow(ptr_shard *s)
{
    size_t cap = s->mask / sizeof(ptr_slot) + 1;
    size_t ncap = s->limit ? cap * 2 : PTR_INITIAL;
    size_t nmask = (ncap - 1) * sizeof(ptr_slot);
    ptr_slot *n = rpi_map_zeroed(ncap * sizeof(ptr_slot));
    if (!n)
        return -1;
    ptr_slot *old = s->slots;
    if (s->limit) {
        for (size_t i = 0; i < cap; i++) {
            if (!old[i].ptr)
                continue;
            size_t j = home(old[i].ptr, nmask);
            while (slot_at(n, j)->ptr)
                j = next_off(j, nmask);
            *slot_at(n, j) = old[i];
        }
    }
    __atomic_store_n(&s->slots, n, __ATOMIC_RELEASE);
    __atomic_store_n(&s->mask, nmask, __ATOMIC_RELEASE);
    s->limit = ncap / 2;
    if (old && old != no_slots) {
        /* emptied, not unmapped: a report may be reading it (see above) */
        int saved = errno;
        madvise(old, cap * sizeof(ptr_slot), MADV_DONTNEED);
        errno = saved;
    }
    return 0;
}

/* Under s's lock, with room for one more: p's slot set to (size, site). */
static inline void insert_locked(ptr_shard *s, uintptr_t key, uint64_t h, size_t size, uint32_t site)
{
    ptr_slot *slots = s->slots;
    size_t mask = s->mask;
    size_t j = home_of(h, mask);
    while (slot_at(slots, j)->ptr && slot_at(slots, j)->ptr != key)
        j = next_off(j, mask);
    ptr_slot *e = slot_at(slots, j);
    /* e->ptr == key: the real allocator handed out an address we still
       hold, a block freed behind our back (e.g. by a direct __libc_free);
       the entry is replaced, and the old block is outstanding no more */
    if (RPP_LIKELY(e->ptr != key))
        s->count++;
    slot_set(e, key, pack(size, site));
}

static __attribute__((noinline, cold)) int track_dropped(void)
{
    atomic_fetch_add_explicit(&rpp_stat.dropped, 1, memory_order_relaxed);
    return -1;
}

/* rpp_track's every case but the common one: the lock taken by another
   thread (locked 0), the shard must grow, or p is in it already (locked
   1: the lock is held). Out of line and called only in tail position, so
   that the common path saves no registers. */
static __attribute__((noinline, cold)) int track_slow(ptr_shard *s, uintptr_t key, uint64_t h,
                                                      size_t size, uint32_t site, int count,
                                                      int locked)
{
    if (!locked)
        rpi_spin_wait(&s->lock.held);
    if (s->count >= s->limit && ptr_grow(s) != 0) {
        spin_unlock(&s->lock);
        return track_dropped();
    }
    insert_locked(s, key, h, size, site);
    spin_unlock(&s->lock);
    if (count)
        rpp_count_alloc(site, size);
    return 0;
}

int rpp_track(void *p, size_t size, uint32_t site, int counted)
{
    uintptr_t key = (uintptr_t)p;
    if (RPP_UNLIKELY((uint64_t)size > SIZE_MASK))
        return track_dropped();
    uint64_t h = ptr_hash(key);
    ptr_shard *s = shard_of(h);
    if (RPP_UNLIKELY(!rpi_spin_try(&s->lock.held)))
        return track_slow(s, key, h, size, site, counted, 0);
    ptr_slot *slots = s->slots;
    size_t mask = s->mask;
    if (RPP_UNLIKELY(s->count >= s->limit))
        return track_slow(s, key, h, size, site, counted, 1);
    size_t j = home_of(h, mask);
    uintptr_t at;
    while ((at = slot_at(slots, j)->ptr) != 0) {
        if (RPP_UNLIKELY(at == key))
            return track_slow(s, key, h, size, site, counted, 1);
        j = next_off(j, mask);
    }
    s->count++;
    slot_set(slot_at(slots, j), key, pack(size, site));
    spin_unlock(&s->lock);
    if (counted)
        count(site, size);
    return 0;
}

/* The hooks' common case, with nothing to save around a call (rpp.h):
   1 when p is in the table now, 0 when nothing was done (the lock is taken,
   the shard must grow, p is there already, size does not fit): then
   rpp_track does all of it. */
int rpp_track_try(void *p, size_t size, uint32_t site)
{
    uintptr_t key = (uintptr_t)p;
    if (RPP_UNLIKELY((uint64_t)size > SIZE_MASK))
        return 0;
    uint64_t h = ptr_hash(key);
    ptr_shard *s = shard_of(h);
    if (RPP_UNLIKELY(!rpi_spin_try(&s->lock.held)))
        return 0;
    ptr_slot *slots = s->slots;
    size_t mask = s->mask;
    if (RPP_UNLIKELY(s->count >= s->limit))
        goto undo;
    size_t j = home_of(h, mask);
    uintptr_t at;
    while ((at = slot_at(slots, j)->ptr) != 0) {
        if (RPP_UNLIKELY(at == key))
            goto undo;
        j = next_off(j, mask);
    }
    s->count++;
    slot_set(slot_at(slots, j), key, pack(size, site));
    spin_unlock(&s->lock);
    return 1;
undo:
    spin_unlock(&s->lock);
    return 0;
}

int rpp_count_try(uint32_t site, size_t size)
{
    counts_block *b = tls_counts;
    if (RPP_LIKELY(b != NULL)) {
        delta *d = &b->slot[site & (DELTA_SLOTS - 1)];
        if (RPP_LIKELY(atomic_load_explicit(&d->site, memory_order_relaxed) == site)) {
            add_delta(d, size);
            return 1;
        }
    }
    return 0;
}

/* Under s's lock, the entry at offset i taken out: backward-shift
   deletion (a later member of the probe run moves into the hole when the
   hole is not before its home slot, i.e. its distance from home is at
   least the hole's distance; offsets and their differences are all
   multiples of the slot size); drops the lock. */
static inline __attribute__((always_inline)) void close_hole(ptr_shard *s, ptr_slot *slots,
                                                             size_t mask, size_t i)
{
    uintptr_t at;
    for (size_t j = next_off(i, mask); (at = slot_at(slots, j)->ptr) != 0; j = next_off(j, mask)) {
        if (((j - home(at, mask)) & mask) >= ((j - i) & mask)) {
            slot_set(slot_at(slots, i), at, slot_at(slots, j)->meta);
            i = j;
        }
    }
    __atomic_store_n(&slot_at(slots, i)->ptr, 0, __ATOMIC_RELAXED);
    s->count--;
    spin_unlock(&s->lock);
}

/* Under s's lock: the offset of key's slot in *at (1), or key is not in
   the table (0, the lock dropped). */
static inline __attribute__((always_inline)) int find_locked(ptr_shard *s, ptr_slot *slots,
                                                             size_t mask, uintptr_t key,
                                                             uint64_t h, size_t *at_off)
{
    size_t i = home_of(h, mask);
    uintptr_t at;
    while ((at = slot_at(slots, i)->ptr) != key) {
        if (!at) {
            spin_unlock(&s->lock);
            return 0;
        }
        i = next_off(i, mask);
    }
    *at_off = i;
    return 1;
}

/* Under s's lock: p taken out (1, its slot's meta in *meta unless meta is
   NULL) or not there (0); drops the lock. */
static inline __attribute__((always_inline)) int untrack_locked(ptr_shard *s, uintptr_t key,
                                                                uint64_t h, uint64_t *meta)
{
    ptr_slot *slots = s->slots;
    size_t mask = s->mask;
    size_t i;
    if (!find_locked(s, slots, mask, key, h, &i))
        return 0;
    if (meta)                /* a constant where this is inlined */
        *meta = slot_at(slots, i)->meta;
    close_hole(s, slots, mask, i);
    return 1;
}

/* rpp_untrack when another thread holds the shard's lock. */
static __attribute__((noinline, cold)) int untrack_slow(ptr_shard *s, uintptr_t key, uint64_t h,
                                                        uint64_t *meta)
{
    rpi_spin_wait(&s->lock.held);
    return untrack_locked(s, key, h, meta);
}

static inline __attribute__((always_inline)) int untrack(uintptr_t key, uint64_t *meta)
{
    uint64_t h = ptr_hash(key);
    ptr_shard *s = shard_of(h);
    if (RPP_UNLIKELY(!rpi_spin_try(&s->lock.held)))
        return untrack_slow(s, key, h, meta);
    return untrack_locked(s, key, h, meta);
}

int rpp_untrack(void *p, rpp_block *out)
{
    uint64_t meta;
    if (!untrack((uintptr_t)p, &meta))
        return 0;
    out->size = (size_t)(meta & SIZE_MASK);
    out->site = (uint32_t)(meta >> SIZE_BITS);
    return 1;
}

int rpp_forget(void *p)
{
    return untrack((uintptr_t)p, NULL);
}

int rpp_forget_try(void *p, size_t *hole)
{
    uintptr_t key = (uintptr_t)p;
    uint64_t h = ptr_hash(key);
    ptr_shard *s = shard_of(h);
    if (RPP_UNLIKELY(!rpi_spin_try(&s->lock.held)))
        return -1;
    ptr_slot *slots = s->slots;
    size_t mask = s->mask;
    size_t i;
    if (!find_locked(s, slots, mask, key, h, &i))
        return 0;
    if (RPP_UNLIKELY(slot_at(slots, next_off(i, mask))->ptr != 0)) {
        *hole = i;             /* the run goes on: rpp_forget_finish */
        return 2;
    }
    __atomic_store_n(&slot_at(slots, i)->ptr, 0, __ATOMIC_RELAXED);
    s->count--;
    spin_unlock(&s->lock);
    return 1;
}

void rpp_forget_finish(void *p, size_t hole)
{
    ptr_shard *s = shard_of(ptr_hash((uintptr_t)p));
    close_hole(s, s->slots, s->mask, hole);
}

int rpp_outstanding_begin(void)
{
    uint32_t ns = rpp_site_count();
    outstanding *c = rpi_map_zeroed((size_t)ns * sizeof *c);
    if (!c) {
        rpp_say("cannot map memory to count the blocks: ",
                "the report's outstanding blocks and bytes read 0", "");
        return -1;
    }
    for (unsigned k = 0; k < PTR_SHARDS; k++) {
        ptr_shard *s = &ptr_shards[k];
        /* the mask first: a table seen after it is at least that large */
        size_t mask = __atomic_load_n(&s->mask, __ATOMIC_ACQUIRE);
        ptr_slot *slots = __atomic_load_n(&s->slots, __ATOMIC_ACQUIRE);
        if (!slots)
            continue;
        for (size_t off = 0; off <= mask; off += sizeof(ptr_slot)) {
            ptr_slot *e = slot_at(slots, off);
            if (!__atomic_load_n(&e->ptr, __ATOMIC_ACQUIRE))
                continue;
            uint64_t meta = __atomic_load_n(&e->meta, __ATOMIC_RELAXED);
            uint32_t site = (uint32_t)(meta >> SIZE_BITS);
            if (site >= ns)      /* a site newer than the count: in flight */
                continue;
            c[site].blocks++;
            c[site].bytes += (int64_t)(meta & SIZE_MASK);
        }
    }
    out_sites = ns;
    out_counts = c;
    return 0;
}

void rpp_outstanding_end(void)
{
    if (out_counts)
        unmap(out_counts, (size_t)out_sites * sizeof *out_counts);
    out_counts = NULL;
    out_sites = 0;
}

void rpp_table_lock_all(void)
{
    for (unsigned i = 0; i < SITE_SHARDS; i++)
        spin_lock(&site_shards[i].lock);
    for (unsigned i = 0; i < PTR_SHARDS; i++)
        spin_lock(&ptr_shards[i].lock);
}

void rpp_table_unlock_all(void)
{
    for (unsigned i = PTR_SHARDS; i-- > 0;)
        spin_unlock(&ptr_shards[i].lock);
    for (unsigned i = SITE_SHARDS; i-- > 0;)
        spin_unlock(&site_shards[i].lock);
}
