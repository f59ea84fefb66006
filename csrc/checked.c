/* checked.c -- the registry behind RP_POOL_CHECKED.
 *
 * Checked pools keep, in a process-wide side table keyed by payload address,
 * a copy of every block's origin, size word (flags included) and raw
 * pointer, and a record of recently retired blocks (freed, or dropped by a
 * destroy or reset), so that misuse is recognised without reading memory
 * the library did not hand out:
 *   - a pointer unknown to the registry is foreign when no unchecked pool is
 *     alive (otherwise it may be an unchecked block and takes the fast path);
 *   - a retired pointer is a double free or a use after destroy;
 *   - a header, or the raw pointer or big-block record below it, that
 *     disagrees with its copy was overwritten (underflow), and the block is
 *     left where it is.
 * Checked blocks are on no ring: the pool's live records are their list
 * (walks, checks, reports, destroy and reset go by them), and the header's
 * two link words hold a guard instead, the address of the block's record,
 * compared like the rest of the header and never followed.
 *
 * Cost. The table is a chained hash table of intrusive records (no
 * tombstones, so a long quarantine never slows a lookup down), with a
 * one-record cache for the lookups of one call (validate, then free). Each
 * checked pool has its own part, a "cpool": the list of its live records in
 * allocation order (walks, checks, reports, destroy, reset and the live
 * totals visit the pool's own records only), and the count of all its
 * records.
 * Records come from slabs and are reused; the slabs go when the library is
 * unloaded. The common allocation and free (rpi_checked_alloc/_free) do
 * their whole work in one pass under the registry's lock, with the record's
 * lookup, the header's comparison and the retirement inline;
 * whatever they do not handle goes to the general path unchanged.
 *
 * Quarantine. The memory of a retired block is not given back while its
 * record exists: a freed malloc-backed or big block is kept by its record,
 * and the chunks of a destroyed checked arena pool are kept by its cpool
 * until the pool's last record goes (the cpool outlives the pool for that).
 * So no other pool, checked or not, can be handed an address that still
 * has a retired record, and a valid free of an unchecked block is never
 * mistaken for a double free. Records are retired into a FIFO of the last
 * RETIRED_CAP retirements (a ring of record pointers: one store in, one
 * out; a record leaving early leaves a hole) and at most RETIRED_BYTES
 * bytes of kept memory; the oldest go first, and their memory with them (small malloc-backed blocks to the
 * reuse lists below, for the next checked allocations, keeping their
 * records until then: a stale pointer there is still a double free, and
 * the allocation takes the record over). The record of a small block
 * freed by an arena pool's fast path, whose memory is back on the pool's
 * free list at once, is parked instead (retired, on no list, counted by
 * its cpool, at most PARK_CAP): the free list leads to it, and destroy and
 * reset hand it to the quarantine (rpi_registry_unpark). The usual
 * allocation finds the record of the block on top of its class's list in
 * a hint beside the list (top_rec, reuse_rec), trusted only when the
 * record's payload is that block's (a record leaving the table clears its
 * payload). Every operation is O(1) but destroy and reset, which are
 * O(the pool's live blocks and parked records).
 *
 * The registry is consulted (rpi_checked_gate != 0) while a checked pool is
 * alive or any record is left, so a stale pointer is still recognised after
 * the last checked pool is gone. One global lock serialises checked pools
 * (they are for debugging), and it is also each checked pool's own lock
 * (rpi_pool_lock, internal.h): a checked call takes one lock, not the
 * registry's and then the pool's.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* GCC's straight-line vectoriser packs the counter and record updates of
   the fast paths into SSE shuffles that take more instructions than the
   plain stores (callgrind: -N per pair) */
#pragma GCC optimize("no-tree-slp-vectorize")
#endif
#include "internal.h"
#include "memprof.h"
#include "poolstack.h"

#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>

#define RETIRED_CAP   65536
#define RETIRED_BYTES ((size_t)64 << 20)
#define MIN_BUCKETS   256
#define FULL_BUCKETS  ((size_t)2 * RETIRED_CAP)
#define SLAB_ENTRIES  255
#define SLAB_ENTRIES_MORE 4095
#define REUSE_BYTES   ((size_t)1 << 20)
#define PARK_CAP      65536
#define CARVE_SPAN    ((size_t)64 << 20)

typedef struct entry {
    void         *payload;
    rp_pool      *pool;
    rpi_tag      *origin;
    uint64_t      word;
    void         *raw;
    size_t        kept;        /* retired: bytes of raw kept (freed with the record) */
    int           state;
    struct rpi_cpool *cp;      /* the pool's part (outlives the pool) */
    struct entry *hnext;       /* hash chain */
    /* live: its pool's live records in allocation order (with the places
       of walks in progress, state MARK) */
    struct entry *prev, *next;
    /* retired: its slot in the quarantine (NULL: not there; then it is
       parked when it is an arena block's, else its memory waits on a
       reuse list; either way still tied to its pool's part) */
    struct entry **qslot;
} entry;

struct rpi_cpool {
    entry             live;    /* sentinel of the live records */
    /* Tag pointers and the record of the content last seen there:
       seen_key[s] == tag implies that tag_seen[tag] == seen_rec[s] (no tag,
       NULL: the untagged record; seen_rec[s] NULL: none yet), slots as the
       pointer cache's. The fast allocation takes its record from here,
       with one strcmp of the content (none for a literal of the program),
       no map lookup. */
    const char       *seen_key[RPI_TAG_CACHE];
    rpi_tag          *seen_rec[RPI_TAG_CACHE];
    /* fixed_key[s] == seen_key[s] when that tag is a literal of the
       program (read-only memory: its content needs no comparison), else
       NOT_FIXED, which no tag is: the fast allocation compares the tag
       pointer with fixed_key[s] alone */
    const char       *fixed_key[RPI_TAG_CACHE];
    /* Arena: the record of the block on top of each class's free list, as
       the fast free left it (a hint: used only when its payload is that
       block's; never NULL, no_rec when unknown) */
    struct entry     *top_rec[RPI_NCLASSES];
    /* Arena: records of blocks freed by the fast path and waiting on the
       pool's free lists, parked (retired, on no list) instead of entering
       the quarantine's FIFO; at most PARK_CAP; the free lists lead to
       them at destroy and reset (rpi_registry_unpark). Counted as the
       room left, PARK_CAP - parked: the free parks with one subtraction
       and a branch on its borrow (park_take) */
    size_t            park_room;
    rp_pool          *pool;    /* NULL once the pool is destroyed */
    rpi_arena        *held;    /* destroyed arena pool: its chunks */
    size_t            refs;    /* records with cp == this */
    struct rpi_cpool *prev, *next;   /* every cpool (for fini) */
};
typedef struct rpi_cpool cpool;
/* cpool.fixed_key's "no literal tag here": an address no caller has */
static const char not_fixed[1];
#define NOT_FIXED (&not_fixed[0])
/* the state of a walk's place in a pool's live records (never hashed) */
#define STATE_MARK 4

/* A checked block's header guard: both link words hold the address of the
   block's record (written at allocation and at a move, compared at every
   validation, never followed). */
static inline void guard_set(rpi_hdr *h, const entry *e)
{
    h->prev = h->next = (rpi_hdr *)(uintptr_t)e;
}

static inline bool guard_ok(const rpi_hdr *h, const entry *e)
{
    return h->prev == (const rpi_hdr *)e && h->next == (const rpi_hdr *)e;
}

atomic_int rpi_checked_gate;
atomic_int rpi_unchecked_pools;

static rpi_lock reg_lock;
static entry **buckets;
static size_t nbuckets;        /* power of two, or 0 */
/* Records come from slabs (the first of SLAB_ENTRIES, then of
   SLAB_ENTRIES_MORE), kept until the library is unloaded; free records
   wait on a list (linked through hnext), and the newest slab's records
   never used yet are taken in turn from slab_cur (entry_new). */
typedef struct slab { struct slab *next; } slab;
static slab *slabs;
static entry *free_entries;
static entry *slab_cur, *slab_end;
/* A record's payload is non-NULL exactly while the record is in the table
   (evict_record clears it), so a hint pointing at a record is trusted only
   when the record's payload is the block's: no_rec matches none. */
static entry no_rec;
/* the record looked up last, or no_rec (never NULL: the free's lookup
   compares its payload without testing it first) */
static entry *last = &no_rec;
static cpool cpools = {.prev = &cpools, .next = &cpools};
static size_t nretired, nentries, kept_bytes;
/* The quarantine: the last RETIRED_CAP retirements in order, a ring of
   record pointers. Position q (counting every retirement) is slot
   q % RETIRED_CAP, valid for q in [qhead - RETIRED_CAP, qhead); a record
   that leaves early (its memory reused, a move) leaves a hole (NULL), so
   leaving costs no relinking, and a retirement into a full ring pushes
   out the record in its slot, the oldest. qtail: no record below it. */
static entry *qring[RETIRED_CAP];
static size_t qhead, qtail;
static bool gate_on;

/* Memory that has left the quarantine, for the next checked allocations of
   its class (malloc backing, blocks of up to RPI_RECYCLE_MAX bytes, rounded
   to their class as the pools' own recycle lists are): a checked pair then
   costs no malloc and free once the quarantine is full. At most
   REUSE_BYTES in all; off where pools do not recycle (ASan builds,
   valgrind's memcheck, RINGPOOL_RECYCLE=0), so memory checkers see every
   block freed when it leaves the quarantine. */
static rpi_hdr *reuse[RPI_RECYCLE_CLASSES];
static size_t reuse_bytes;
/* the reuse lists' bound: REUSE_BYTES, 0 while they are off (one test
   for both) */
static size_t reuse_cap;

/* Memory no block has had yet, for the checked allocations of the reuse
   lists' classes (malloc backing): carved in turn from one region of
   CARVE_SPAN bytes reserved at the first malloc-backed checked pool,
   instead of a malloc each (a filling quarantine needs new memory for
   every allocation). Carved memory never goes back to the system one block at a
   time: when its record leaves the quarantine it goes to its class's reuse
   list whatever the lists' bound (with its record while the lists are
   within REUSE_BYTES, else without), and the region is unmapped with the
   registry (rpi_registry_fini). A carved block is told apart by its
   address (carved()); resize moves it to malloc'd memory unless its class
   stays the same (rpi_registry_realloc). Off, as the reuse lists are,
   where memory checkers must see every block (carve_cur == carve_lim);
   once the region is used up, blocks are malloc'd as before. */
static uintptr_t carve_base, carve_span;   /* the region (span 0: none) */
static char *carve_cur, *carve_lim;        /* carved up to cur; may carve to lim */
static bool carve_failed;                  /* the reservation failed: not again */

static inline bool carved(const void *raw)
{
    return (uintptr_t)raw - carve_base < carve_span;
}

/* The region reserved (first checked malloc-backed pool: reserve), and
   carving on or off with the reuse lists. */
static void carve_setup(bool reserve)
{
    if (reserve && reuse_cap && !carve_span && !carve_failed) {
        void *m = mmap(NULL, CARVE_SPAN, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            carve_failed = true;
            return;
        }
        carve_base = (uintptr_t)m;
        carve_span = CARVE_SPAN;
        carve_cur = m;
    }
    carve_lim = reuse_cap && carve_span ? (char *)(carve_base + carve_span) : carve_cur;
}

/* the record of the block on top of each reuse list (a hint, as top_rec) */
static entry *reuse_rec[RPI_RECYCLE_CLASSES];
static bool hints_set;

static void hints_reset(void)
{
    for (size_t c = 0; c < RPI_RECYCLE_CLASSES; c++) reuse_rec[c] = &no_rec;
    hints_set = true;
}

/* Puts h, kept bytes of a reuse list's class, on top of that list, with rec
   its record (&no_rec: none). */
static inline __attribute__((always_inline)) void reuse_push(rpi_hdr *h, size_t kept, entry *rec)
{
    size_t c = (kept - RPI_HDR) >> 4;
    h->next = reuse[c];
    reuse[c] = h;
    reuse_rec[c] = rec;
    reuse_bytes += kept;
}

static entry *lookup(const void *key);
static void evict_record(entry *e);
static void gate_update(void);

/* The reuse lists' memory goes to the system, and the records that wait
   with it leave the table (no address the system may hand out again keeps
   a record). */
static void reuse_release(void)
{
    /* carved memory cannot go back one block at a time: it stays on its
       list, without a record (the region goes at rpi_registry_fini) */
    reuse_bytes = 0;
    for (size_t c = 0; c < RPI_RECYCLE_CLASSES; c++) {
        rpi_hdr *keep = NULL;
        for (rpi_hdr *h = reuse[c], *n; h; h = n) {
            n = h->next;
            entry *e = lookup(rpi_payload(h));
            if (e) evict_record(e);
            if (carved(h)) {
                h->next = keep;
                keep = h;
                reuse_bytes += RPI_HDR + 16 * c;
            } else {
                rpi_sys_free(h);
            }
        }
        reuse[c] = keep;
    }
    gate_update();   /* the table may be empty now */
}

/* The carved region goes (no record is left: rpi_registry_fini), and the
   reuse lists' carved memory with it. */
static void carve_drop(void)
{
    if (!carve_span) return;
    for (size_t c = 0; c < RPI_RECYCLE_CLASSES; c++) reuse[c] = NULL;
    reuse_bytes = 0;
    munmap((void *)carve_base, carve_span);
    carve_base = carve_span = 0;
    carve_cur = carve_lim = NULL;
}

/* The registry's lock let go on the common paths: a sleeper is woken out
   of line, so the test of the sleepers' word reads it at its own address
   (no register kept for the lock's address across the release). */
static __attribute__((noinline, cold)) void reg_wake(void) { rpi_lock_wake(&reg_lock); }
static __attribute__((noinline, cold)) void *reg_wake_ret(void *ret)
{
    return rpi_lock_wake_ret(&reg_lock, ret);
}
static inline __attribute__((always_inline)) void reg_release(void)
{
    atomic_store_explicit(&reg_lock.held, 0, memory_order_release);
    if (RPI_LOCK_SLEEPERS(&reg_lock)) reg_wake();
}
static inline __attribute__((always_inline)) void *reg_release_ret(void *ret)
{
    atomic_store_explicit(&reg_lock.held, 0, memory_order_release);
    if (RPI_LOCK_SLEEPERS(&reg_lock)) return reg_wake_ret(ret);
    return ret;
}

void rpi_registry_lock(void) { rpi_lock_acquire(&reg_lock); }
rpi_lock *rpi_registry_lockp(void) { return &reg_lock; }
void rpi_registry_unlock(void) { reg_release(); }
bool rpi_registry_lock_for_exit(void) { return rpi_lock_try_for(&reg_lock); }

static void gate_update(void)
{
    bool on = nentries > 0;
    if (on == gate_on) return;
    gate_on = on;
    atomic_fetch_add(&rpi_checked_gate, on ? 1 : -1);
    rpi_slow_sync();   /* rp_free's one test (internal.h) */
}

/* ---------------------------------------------------------- the table */
/* Fibonacci hashing: the top log2(n) bits of the address times 2^64/phi
   (every bit of the address reaches them; payloads are 16-byte aligned). */
static inline size_t bucket_of(const void *key, size_t n)
{
    unsigned shift = (unsigned)__builtin_clzll((unsigned long long)n) + 1u;   /* 64 - log2 n */
    return (size_t)(((uint64_t)(uintptr_t)key * UINT64_C(0x9e3779b97f4a7c15)) >> shift);
}

/* lookup of a key known not to be NULL (last may be no_rec, whose
   payload is NULL) */
static inline __attribute__((always_inline)) entry *lookup_nonnull(const void *key)
{
    if (last->payload == key) return last;
    if (!nbuckets) return NULL;
    for (entry *e = buckets[bucket_of(key, nbuckets)]; e; e = e->hnext)
        if (e->payload == key) return last = e;
    return NULL;
}

static inline entry *lookup(const void *key)   /* (declared above) */
{
    return key ? lookup_nonnull(key) : NULL;   /* (no record has a NULL payload) */
}

static void hash_add(entry *e)   /* room reserved */
{
    size_t b = bucket_of(e->payload, nbuckets);
    e->hnext = buckets[b];
    buckets[b] = e;
}

static void hash_del(entry *e)
{
    entry **pe = &buckets[bucket_of(e->payload, nbuckets)];
    while (*pe != e) pe = &(*pe)->hnext;
    *pe = e->hnext;
    if (last == e) last = &no_rec;
}

static int grow(size_t need)
{
    if (need <= nbuckets) return 0;
    /* MIN_BUCKETS first; past it, straight to room for a full quarantine
       and as many live blocks (FULL_BUCKETS): a program that frees that
       many blocks gets there anyway, and the records of a filling
       quarantine are then rehashed once (256), not at each step up to
       it (~87,000 moves). Then four times larger at each step (load
       between 1/4 and 1). */
    size_t n = !nbuckets ? MIN_BUCKETS : nbuckets < FULL_BUCKETS ? FULL_BUCKETS : nbuckets * 4;
    while (n < need) n *= 2;
    entry **nb = rpi_sys_calloc(n, sizeof *nb);
    if (!nb) return RP_ENOMEM;
    for (size_t i = 0; i < nbuckets; i++) {
        for (entry *e = buckets[i], *next; e; e = next) {
            next = e->hnext;
            size_t b = bucket_of(e->payload, n);
            e->hnext = nb[b];
            nb[b] = e;
        }
    }
    rpi_sys_free(buckets);
    buckets = nb;
    nbuckets = n;
    return 0;
}

/* ---------------------------------------------------------- cpools */
static cpool *cpool_of(rp_pool *pool)
{
    return pool->checked;
}

__attribute__((noinline)) static void cpool_free(cpool *cp)
{
    cp->prev->next = cp->next;
    cp->next->prev = cp->prev;
    if (cp->held) {
        kept_bytes -= cp->held->nchunks * cp->held->chunk_size;
        rpi_arena_free_chunks(cp->held);
    }
    rpi_sys_free(cp);
}

static inline void cpool_unref(cpool *cp)
{
    if (--cp->refs == 0 && !cp->pool) cpool_free(cp);
}

int rpi_registry_reserve(rp_pool *pool)
{
    if (!pool->checked) {
        cpool *cp = rpi_sys_malloc(sizeof *cp);
        if (!cp) return RP_ENOMEM;
        memset(cp, 0, sizeof *cp);
        cp->live.prev = cp->live.next = &cp->live;
        for (size_t c = 0; c < RPI_NCLASSES; c++) cp->top_rec[c] = &no_rec;
        for (size_t s = 0; s < RPI_TAG_CACHE; s++) cp->fixed_key[s] = NOT_FIXED;
        cp->park_room = PARK_CAP;
        if (!hints_set) hints_reset();
        cp->pool = pool;
        reuse_cap = rpi_recycle_allowed() ? REUSE_BYTES : 0;
        if (!reuse_cap) reuse_release();
        carve_setup(!(pool->flags & RP_POOL_ARENA));
        cp->next = &cpools;
        cp->prev = cpools.prev;
        cpools.prev->next = cp;
        cpools.prev = cp;
        pool->checked = cp;
    }
    if (!free_entries && slab_cur == slab_end) {
        size_t n = slabs ? SLAB_ENTRIES_MORE : SLAB_ENTRIES;
        slab *sl = rpi_sys_malloc(sizeof(entry) * (n + 1));
        if (!sl) return RP_ENOMEM;
        sl->next = slabs;
        slabs = sl;
        slab_cur = (entry *)sl + 1;
        slab_end = slab_cur + n;
    }
    return nentries + 1 > nbuckets ? grow(nentries + 1) : 0;
}

/* ---------------------------------------------------------- records */
/* A free record (qslot NULL, the rest to be written), or NULL when there is
   none (rpi_registry_reserve makes one). */
static inline __attribute__((always_inline)) entry *entry_new(void)
{
    entry *e = free_entries;
    if (RPI_LIKELY(e != NULL)) {
        free_entries = e->hnext;
        return e;
    }
    if (RPI_UNLIKELY(slab_cur == slab_end)) return NULL;
    e = slab_cur++;
    e->qslot = NULL;
    return e;
}

static inline void list_unlink(entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

/* A retired record leaves the quarantine early (it is there: e->qslot). */
static inline __attribute__((always_inline)) void fifo_leave(entry *e)
{
    *e->qslot = NULL;
    e->qslot = NULL;
    nretired--;
}

/* e enters the quarantine as its newest record; the record it pushed out
   of a full ring (the oldest), off the quarantine but still to be evicted
   by the caller, or NULL. */
static inline __attribute__((always_inline)) entry *fifo_push(entry *e)
{
    size_t q = qhead++;
    entry **slot = &qring[q % RETIRED_CAP];
    entry *o = *slot;
    *slot = e;
    e->qslot = slot;
    if (o) {
        o->qslot = NULL;
        return o;
    }
    nretired++;
    return NULL;
}

/* The oldest record of the quarantine, taken out (nretired > 0). */
static entry *fifo_pop(void)
{
    if (qtail + RETIRED_CAP < qhead) qtail = qhead - RETIRED_CAP;
    while (!qring[qtail % RETIRED_CAP]) qtail++;
    entry *e = qring[qtail % RETIRED_CAP];
    fifo_leave(e);
    return e;
}

/* e leaves the list it is on (live), the quarantine, or its pool's
   parked records. A retired record out of the quarantine is parked when
   it is an arena block's, else its memory waits on a reuse list. */
static inline __attribute__((always_inline)) void detach(entry *e)
{
    if (e->state == RPI_LIVE) {
        list_unlink(e);
    } else if (e->qslot) {
        fifo_leave(e);
    } else if (e->word & RPI_F_ARENA) {
        e->cp->park_room++;
    }
}

/* The memory a retired record kept goes: to the reuse lists (true) or the
   system. */
static inline __attribute__((always_inline)) bool release_kept_in(entry *e)
{
    bool reused = false;
    kept_bytes -= e->kept;
    if (e->kept <= RPI_HDR + RPI_RECYCLE_MAX &&
        !(e->word & (RPI_F_ARENA | RPI_F_BIG | RPI_F_ALIGNED)) &&
        reuse_bytes + e->kept <= reuse_cap) {
        reuse_push(e->raw, e->kept, e);
        reused = true;
    } else if (RPI_UNLIKELY(carved(e->raw))) {
        /* over the lists' bound: carved memory waits there without its
           record (a plain malloc block of its class: carved() is only
           true of those) */
        reuse_push(e->raw, e->kept, &no_rec);
    } else {
        rpi_sys_free(e->raw);
    }
    e->kept = 0;
    return reused;
}

__attribute__((noinline)) static bool release_kept(entry *e) { return release_kept_in(e); }


/* A record leaves the table, with what it keeps. */
static void evict_record(entry *e)
{
    hash_del(e);
    e->payload = NULL;   /* no hint leads to it any more */
    cpool *cp = e->cp;
    nentries--;
    e->hnext = free_entries;
    free_entries = e;
    if (cp) cpool_unref(cp);
}

/* A retired record leaves the quarantine, with what it keeps. Memory that
   goes to a reuse list keeps its record (retired, off the quarantine, still
   tied to its pool's part, which it keeps) until a checked allocation
   takes the memory and the record with it (claim_entry, claim_fast, which
   move it to the allocating pool's part): a stale pointer to it is still recognised,
   and the next allocation there finds its record instead of hashing one in.
   reuse_release drops such records when their memory goes to the system. */
static inline __attribute__((always_inline)) void evict_out(entry *e);
static inline __attribute__((always_inline)) void evict_in(entry *e)
{
    detach(e);
    evict_out(e);
}

/* evict_in for a record already out of the quarantine (fifo_push's). */
static inline __attribute__((always_inline)) void evict_out(entry *e)
{
    if (RPI_UNLIKELY(e->kept != 0) && release_kept_in(e)) {
        /* still tied to its pool's part (which it keeps: the next
           allocation there, by the same pool as a rule, then changes no
           count) */
        last = e;   /* its memory is the next to go out of its class's list */
        return;
    }
    evict_record(e);
}

static void evict(entry *e) { evict_in(e); }
static __attribute__((noinline)) void evict_pushed(entry *e) { evict_out(e); }

/* e into the quarantine, the record it pushed out evicted. */
static void fifo_append(entry *e)
{
    entry *o = fifo_push(e);
    if (o) evict_pushed(o);
}

static void fill(entry *e, rpi_hdr *h, void *raw)
{
    e->payload = rpi_payload(h);
    e->pool = h->origin->pool;
    e->origin = h->origin;
    e->word = h->word;
    e->raw = raw;
    e->kept = 0;
    e->state = RPI_LIVE;
}

/* The record of payload, a new block of cp's pool: a retired record of the
   same address (reused by its own pool) is taken over, else a free one is
   hashed in (room reserved by the caller). */
static inline __attribute__((always_inline)) entry *claim_entry(cpool *cp, void *payload)
{
    entry *e = lookup(payload);
    if (RPI_UNLIKELY(e != NULL)) {
        detach(e);   /* off its list (live: not expected) */
        if (RPI_UNLIKELY(e->kept != 0)) release_kept(e);
        if (e->cp != cp) {
            cp->refs++;
            if (e->cp) cpool_unref(e->cp);
        }
    } else {
        e = entry_new();   /* (reserved) */
        e->payload = payload;
        hash_add(e);
        cp->refs++;
        if (nentries++ == 0) gate_update();
    }
    e->cp = cp;
    return e;
}

/* e at the tail of cp's live list (the ring order: a new block is inserted
   at the ring's tail), and the record looked up last. */
static inline __attribute__((always_inline)) void live_append(cpool *cp, entry *e)
{
    e->next = &cp->live;
    e->prev = cp->live.prev;
    cp->live.prev->next = e;
    cp->live.prev = e;
    last = e;
}

void rpi_registry_insert(rpi_hdr *h, void *raw)
{
    cpool *cp = cpool_of(h->origin->pool);
    entry *e = claim_entry(cp, rpi_payload(h));
    fill(e, h, raw);
    guard_set(h, e);
    live_append(cp, e);
}

void rpi_registry_update(rpi_hdr *h)
{
    entry *e = lookup(rpi_payload(h));
    if (e && e->state == RPI_LIVE) e->word = h->word;
}

/* The quarantine back within its bounds: the oldest records leave. */
__attribute__((noinline)) static void trim_slow(void)
{
    while (kept_bytes > RETIRED_BYTES && nretired > 0) evict_out(fifo_pop());
    gate_update();   /* the table may be empty now */
}

/* Whether the quarantine is over its bound of kept bytes (the ring bounds
   the records). */
static inline bool over_bounds(void)
{
    return kept_bytes > RETIRED_BYTES;
}

static inline void trim(void)
{
    if (RPI_UNLIKELY(over_bounds())) trim_slow();
}

/* A live record retires to the quarantine as its newest record; the one
   it pushed out of a full ring, to be evicted by the caller, or NULL. */
static inline __attribute__((always_inline)) entry *retire_push(entry *e, int state, size_t kept)
{
    list_unlink(e);
    e->state = state;
    if (kept) {
        e->kept = kept;
        kept_bytes += kept;
    }
    return fifo_push(e);
}

static inline void retire(entry *e, int state, size_t kept)
{
    entry *o = retire_push(e, state, kept);
    if (o) evict_pushed(o);
}

/* Bytes a retired block's raw memory takes (malloc and big blocks). */
static size_t raw_bytes(uint64_t word)
{
    size_t size = (size_t)(word & RPI_SIZE_MASK);
    if (word & RPI_F_ARENA) return 0;
    size_t align = (size_t)1 << ((word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT);
    if (word & RPI_F_BIG) return rpi_big_total(align, size);
    if (word & RPI_F_ALIGNED) return RPI_HDR + sizeof(void *) + (align - 1) + size;
    return rpi_malloc_size(size);
}

void rpi_registry_retire(const void *payload, int state)
{
    entry *e = lookup(payload);
    if (!e || e->state != RPI_LIVE) return;
    retire(e, state, raw_bytes(e->word));
    trim();
}

void rpi_registry_move(rpi_hdr *old_h, rpi_hdr *new_h, void *raw)
{
    entry *e = lookup(rpi_payload(old_h));
    if (!e) return;
    if (old_h != new_h) {
        hash_del(e);
        entry *stale = lookup(rpi_payload(new_h));
        if (stale) evict(stale);   /* a retired record at the new address */
        e->payload = rpi_payload(new_h);
        hash_add(e);            /* reuses the slot it left: room reserved */
    }
    fill(e, new_h, raw);        /* keeps its place in the live list */
    guard_set(new_h, e);
    last = e;
}

void *rpi_registry_realloc(rpi_hdr *h, size_t n)
{
    if (RPI_LIKELY(!carved(h))) return rpi_sys_realloc(h, n);
    /* carved: in place within its class, else moved to malloc'd memory and
       the old memory onto its class's reuse list (without a record: the
       block's record moves with it, rpi_registry_move) */
    size_t have = rpi_malloc_size(rpi_size(h));
    if (n == have) return h;
    rpi_hdr *nh = rpi_sys_malloc(n);
    if (!nh) return NULL;
    memcpy(nh, h, have < n ? have : n);
    reuse_push(h, have, &no_rec);
    return nh;
}

/* The caller's copy of a record's fields. */
static inline void view_of(const entry *e, rpi_entry_view *out)
{
    out->state = e->state;
    out->pool = e->pool;
    out->origin = e->origin;
    out->word = e->word;
    out->raw = e->raw;
}

int rpi_registry_find(const void *payload, rpi_entry_view *out)
{
    entry *e = lookup(payload);
    if (!e) return RPI_UNKNOWN;
    view_of(e, out);
    return e->state;
}

static entry *live_in(rp_pool *pool, const void *payload)
{
    entry *e = lookup(payload);
    return e && e->state == RPI_LIVE && e->pool == pool ? e : NULL;
}

/* The big-block record at b may be followed: the pool's list sentinel or
   the record of a live big block of the pool. */
static bool big_neighbour_ok(rp_pool *pool, rpi_big *b)
{
    if (pool->arena && b == &pool->arena->bigs) return true;
    entry *e = live_in(pool, (char *)(b + 1) + RPI_HDR);
    return e && (e->word & RPI_F_BIG);
}

/* Everything below and in the header that free, resize and walks trust
   agrees with the registry's copy, and the header's guard is the record's.
   Registry lock held. */
static bool intact(entry *e, rpi_hdr *h, char *why, size_t cap)
{
    rp_pool *pool = e->pool;
    const char *what = NULL;
    if (h->origin != e->origin || ((h->word ^ e->word) & ~RPI_WORD_FREE_BITS) != 0) {
        what = "header";
    } else if (!guard_ok(h, e)) {
        what = "guard (the header's first 16 bytes)";
    } else if (RPI_UNLIKELY(e->word & RPI_F_BIG)) {
        rpi_big *b = (rpi_big *)h - 1;
        size_t align = (size_t)1 << ((e->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT);
        if (b->raw != e->raw || (size_t)(uintptr_t)b->pad != rpi_big_total(align, rpi_size(h)) ||
            !big_neighbour_ok(pool, b->prev) || !big_neighbour_ok(pool, b->next) ||
            b->prev->next != b || b->next->prev != b)
            what = "big-block record below the header";
    } else if (RPI_UNLIKELY(e->word & RPI_F_ALIGNED)) {
        if (((void **)h)[-1] != e->raw) what = "raw pointer below the header";
    }
    if (RPI_LIKELY(!what)) return true;
    if (why)
        snprintf(why, cap, "%s of block %p (tag %s, %zu bytes) was overwritten", what,
                 e->payload, e->origin->name, (size_t)(e->word & RPI_SIZE_MASK));
    return false;
}

/* The misuse a failed validation found, reported after the lock is let go:
   0 when the pointer may be an unchecked pool's block. */
__attribute__((noinline, cold)) static int validate_failed(entry *e, const void *payload,
                                                          rp_pool *expected, const char *op)
{
    char msg[400];
    int err;
    if (!e) {
        if (atomic_load(&rpi_unchecked_pools) > 0) {
            rpi_registry_unlock();
            return 0;
        }
        err = RP_EFOREIGN;
        snprintf(msg, sizeof msg, "%s: %p was not allocated by any ringpool pool", op, payload);
    } else if (e->state == RPI_FREED) {
        err = RP_EDOUBLEFREE;
        snprintf(msg, sizeof msg, "%s: block %p was already freed (double free)", op,
                 payload);
    } else if (e->state == RPI_DESTROYED) {
        err = RP_EDESTROYED;
        snprintf(msg, sizeof msg, "%s: block %p belonged to a pool that was destroyed or reset",
                 op, payload);
    } else if (expected && e->pool != expected) {
        err = RP_EWRONGPOOL;
        snprintf(msg, sizeof msg, "%s: block %p belongs to pool '%s', not '%s'", op, payload,
                 e->pool->name, expected->name);
    } else {
        char why[300];
        (void)intact(e, rpi_hdr_of(payload), why, sizeof why);
        err = RP_ECORRUPT;
        snprintf(msg, sizeof msg, "%s: pool '%s': %s", op, e->pool->name, why);
    }
    rpi_registry_unlock();
    rpi_report_error(err, payload, "%s", msg);
    return -1;
}

int rpi_checked_validate(const void *payload, rp_pool *expected, const char *op,
                         rpi_entry_view *out)
{
    rpi_registry_lock();
    entry *e = lookup(payload);
    if (RPI_UNLIKELY(!e || e->state != RPI_LIVE || (expected && e->pool != expected) ||
                     !intact(e, rpi_hdr_of(payload), NULL, 0)))
        return validate_failed(e, payload, expected, op);
    if (out)
        view_of(e, out);
    rpi_registry_unlock();
    return 1;
}

/* ------------------------------------------------- the fast paths
   The common checked allocation and free in one pass under the registry's
   lock (the pool's too), with no call but the backing's and strcmp: a
   block of default alignment, a tag in the pointer cache whose content is
   the one remembered, room for a record; a free of a live, intact block
   with nothing else attached (destructor, stack, sampler, alignment or big
   record). Anything else, misuse included, returns to the general path
   having changed nothing, and the general path decides and reports. */

/* What intact() finds on its common path, without the walk marks and the
   records below the header (such blocks take the general path). */
static inline bool intact_fast(const entry *e, const rpi_hdr *h)
{
    return h->origin == e->origin && ((h->word ^ e->word) & ~RPI_WORD_FREE_BITS) == 0 &&
           guard_ok(h, e);
}

/* The main program's read-only segments (text, constants): a tag there
   is a literal whose content cannot change, so the fast allocation need
   not compare it again once it was seen (found from the auxiliary vector:
   no loader lock, so it is safe under the registry lock). */
#define RO_MAX 4
static uintptr_t ro_lo[RO_MAX], ro_hi[RO_MAX];
static int ro_n = -1;

static void ro_init(void)
{
    ro_n = 0;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    size_t n = (size_t)getauxval(AT_PHNUM);
    if (!ph) return;
    uintptr_t bias = 0;
    bool known = false;
    for (size_t i = 0; i < n; i++) {
        if (ph[i].p_type == PT_PHDR) {
            bias = (uintptr_t)ph - (uintptr_t)ph[i].p_vaddr;
            known = true;
        }
    }
    if (!known) return;   /* no PT_PHDR: the load address is unknown, compare always */
    for (size_t i = 0; i < n && ro_n < RO_MAX; i++) {
        if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_W)) continue;
        ro_lo[ro_n] = bias + (uintptr_t)ph[i].p_vaddr;
        ro_hi[ro_n] = ro_lo[ro_n] + (uintptr_t)ph[i].p_memsz;
        ro_n++;
    }
}

/* Whether the len bytes at p lie in one read-only segment of the program. */
static bool read_only(const char *p, size_t len)
{
    if (ro_n < 0) ro_init();
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < ro_n; i++)
        if (a >= ro_lo[i] && a < ro_hi[i] && len <= ro_hi[i] - a) return true;
    return false;
}

void rpi_checked_saw_tag(rp_pool *pool, const char *tag, rpi_tag *t)
{
    cpool *cp = cpool_of(pool);
    size_t s = rpi_tag_slot(tag);
    cp->seen_key[s] = tag;
    cp->seen_rec[s] = t;
    /* t->name is the content seen at tag (the caller compared them); no
       tag (NULL) has no content to change */
    cp->fixed_key[s] = !tag || read_only(tag, strlen(t->name) + 1) ? tag : NOT_FIXED;
}

/* A free record for a new block at payload of cp's pool, hashed in at the
   head of its bucket b (no record of payload is in the table). NULL,
   having changed nothing, when no record is free. */
static inline __attribute__((always_inline)) entry *hash_in(cpool *cp, entry **b, void *payload)
{
    entry *e = entry_new();
    if (RPI_UNLIKELY(!e)) return NULL;
    e->payload = payload;
    e->hnext = *b;
    *b = e;
    nentries++;
    cp->refs++;
    e->cp = cp;
    return e;
}

/* The record for a new block at payload of cp's pool: a retired record of
   that address taken over, or a free one hashed in (one hash for the
   lookup and the insert). NULL, having changed nothing, when the general
   path must do it (no room reserved, the table's first record, a record
   still keeping memory or tied to another pool). fresh (a constant): the
   memory was just carved or malloc'd, so the record looked up last is not
   its own (one is, rarely, in the table) and is not tried. */
static inline __attribute__((always_inline)) entry *claim_fast(cpool *cp, void *payload,
                                                               bool fresh)
{
    entry *e = fresh ? NULL : last;
    if (fresh || RPI_UNLIKELY(e->payload != payload)) {
        if (RPI_UNLIKELY(!nbuckets)) return NULL;
        entry **b = &buckets[bucket_of(payload, nbuckets)];
        for (e = *b; e; e = e->hnext)
            if (e->payload == payload) break;
        if (!e) {
            if (RPI_UNLIKELY(nentries == 0 || nentries >= nbuckets))
                return NULL;
            return hash_in(cp, b, payload);
        }
    }
    /* (another pool's record: reuse_take_over, or the general path) */
    if (RPI_UNLIKELY(e->state == RPI_LIVE || e->kept != 0 || e->cp != cp)) return NULL;
    if (e->qslot) {   /* in the quarantine */
        fifo_leave(e);
    } else if (e->word & RPI_F_ARENA) {   /* parked (else memory from a reuse list) */
        cp->park_room++;
    }
    return e;
}

/* The record for memory just carved from the region (carve_cur), which no
   block has had since the region was reserved, so no record can be at its
   address: a free record hashed in with no lookup. NULL, having changed
   nothing, as claim_fast. */
static inline __attribute__((always_inline)) entry *claim_carved(cpool *cp, void *payload)
{
    if (RPI_UNLIKELY(nentries == 0 || nentries >= nbuckets)) return NULL;
    return hash_in(cp, &buckets[bucket_of(payload, nbuckets)], payload);
}

/* The tail of a fast allocation: h (carved, header not written) gets its
   header, guard, record e and counts; the lock is let go. */
#define KNOWN_KEPT 1
#define KNOWN_POOL 2
static inline __attribute__((always_inline)) void *alloc_finish(rp_pool *pool, cpool *cp,
                                                                entry *e, rpi_hdr *h,
                                                                uint64_t word, rpi_tag *t,
                                                                size_t size, int known)
{
    rpi_asan_arena_live(h, 0, word);   /* before the header's writes (asan.h) */
    h->word = word;
    h->origin = t;
    guard_set(h, e);
    /* known: what the caller saw of e (KNOWN_KEPT: kept is 0; KNOWN_POOL:
       e->cp was cp already, so e->pool is pool) */
    if (!(known & KNOWN_POOL)) e->pool = pool;
    e->origin = t;
    e->word = word;
    e->raw = h;
    if (!(known & KNOWN_KEPT)) e->kept = 0;
    e->state = RPI_LIVE;
    live_append(cp, e);
    if (rpi_memprof_count(pool, t, size)) return rpi_memprof_slow(pool, h, size, true);
    return reg_release_ret(rpi_payload(h));
}

static __attribute__((noinline)) void *alloc_general_unlock(rp_pool *pool, size_t size,
                                                            const char *tag, bool plain)
{
    rpi_registry_unlock();
    return rpi_alloc_general(pool, size, tag, plain);
}

/* malloc_take's block on top of reuse list c whose record is another
   pool's (it freed the memory): the record moves to this pool's part;
   anything else goes to the general path. Out of line, so that the usual
   claim (claim_fast) makes no call. */
static __attribute__((noinline)) void *reuse_take_over(rp_pool *pool, cpool *cp, rpi_tag *t,
                                                       size_t size, const char *tag, bool plain,
                                                       size_t c)
{
    rpi_hdr *h = reuse[c];
    entry *e = lookup(rpi_payload(h));
    if (!e || e->state == RPI_LIVE || e->kept != 0 || e->qslot || (e->word & RPI_F_ARENA) ||
        e->cp == cp)
        return alloc_general_unlock(pool, size, tag, plain);
    cp->refs++;
    if (e->cp) cpool_unref(e->cp);   /* a destroyed pool's part may go with it */
    e->cp = cp;
    reuse[c] = h->next;
    reuse_bytes -= RPI_HDR + 16 * c;
    return alloc_finish(pool, cp, e, h, RPI_F_CHECKED | size, t, size, 0);
}

/* The fast allocations are call-free on their common path (no register to
   save on the way in): waiting for the lock, comparing a tag's content,
   the general path, the sampler and waking a sleeper are all tail calls. */

/* Lock held, the tag's content known to be the remembered one: the block
   from a class's free list, else the current chunk (else the general path
   takes a new one); the record is claimed before the block is taken. */
static inline __attribute__((always_inline)) void *arena_take(rp_pool *pool, cpool *cp,
                                                              rpi_tag *t, size_t size,
                                                              const char *tag, bool plain,
                                                              rpi_arena *a, size_t c);
static inline __attribute__((always_inline)) void *arena_locked(rp_pool *pool, cpool *cp,
                                                                rpi_tag *t, size_t size,
                                                                const char *tag, bool plain)
{
    rpi_arena *a = pool->arena;
    if (RPI_UNLIKELY(!a || size > RPI_BIG_LIMIT - RPI_HDR))
        return alloc_general_unlock(pool, size, tag, plain);
    return arena_take(pool, cp, t, size, tag, plain, a, rpi_class_of(RPI_HDR + size));
}

/* arena_locked past its class: c, of a's, for size */
static inline __attribute__((always_inline)) void *arena_take(rp_pool *pool, cpool *cp,
                                                              rpi_tag *t, size_t size,
                                                              const char *tag, bool plain,
                                                              rpi_arena *a, size_t c)
{
    rpi_hdr *h = a->free[c];
    entry *e;
    if (RPI_LIKELY(h != NULL)) {
        if (RPI_UNLIKELY(!(e = claim_fast(cp, rpi_payload(h), false)))) goto general;
        a->free[c] = h->next;
    } else {
        size_t cs = rpi_class_size((unsigned)c);
        if (RPI_UNLIKELY((size_t)(a->end - a->cur) < cs)) goto general;
        h = (rpi_hdr *)a->cur;
        if (RPI_UNLIKELY(!(e = claim_fast(cp, rpi_payload(h), true)))) goto general;
        a->cur += cs;
    }
    return alloc_finish(pool, cp, e, h, a->hword[c] | size, t, size, 0);
general:
    return alloc_general_unlock(pool, size, tag, plain);
}

static inline __attribute__((always_inline)) void *malloc_take(rp_pool *pool, cpool *cp,
                                                               rpi_tag *t, size_t size,
                                                               const char *tag, bool plain,
                                                               size_t c);
static inline __attribute__((always_inline)) void *malloc_locked(rp_pool *pool, cpool *cp,
                                                                 rpi_tag *t, size_t size,
                                                                 const char *tag, bool plain)
{
    if (RPI_UNLIKELY(pool->arena != NULL)) return alloc_general_unlock(pool, size, tag, plain);
    return malloc_take(pool, cp, t, size, tag, plain, (size + 15) >> 4);
}

/* malloc_locked past its checks: c is size's reuse class if it has one */
static inline __attribute__((always_inline)) void *malloc_take(rp_pool *pool, cpool *cp,
                                                               rpi_tag *t, size_t size,
                                                               const char *tag, bool plain,
                                                               size_t c)
{
    rpi_hdr *h;
    entry *e;
    if (size <= RPI_RECYCLE_MAX && (h = reuse[c]) != NULL) {
        if (RPI_UNLIKELY(!(e = claim_fast(cp, rpi_payload(h), false))))
            return reuse_take_over(pool, cp, t, size, tag, plain, c);
        reuse[c] = h->next;
        reuse_bytes -= RPI_HDR + 16 * c;
    } else if (size <= RPI_RECYCLE_MAX && (size_t)(carve_lim - carve_cur) >= RPI_HDR + 16 * c) {
        /* memory no block has had (no record can be there) */
        h = (rpi_hdr *)carve_cur;
        if (RPI_UNLIKELY(!(e = claim_carved(cp, rpi_payload(h))))) goto general;
        carve_cur += RPI_HDR + 16 * c;
    } else {
        if (RPI_UNLIKELY(size > RP_MAX_SIZE) || !(h = rpi_sys_malloc(rpi_malloc_size(size))))
            goto general;
        if (RPI_UNLIKELY(!(e = claim_fast(cp, rpi_payload(h), true)))) {
            rpi_sys_free(h);
            goto general;
        }
    }
    return alloc_finish(pool, cp, e, h, RPI_F_CHECKED | size, t, size, 0);
general:
    return alloc_general_unlock(pool, size, tag, plain);
}

/* The fast allocations past their usual case (alloc_in), out of line. */
#define ARENA_SLOW(name, plain)                                                        \
    static __attribute__((noinline)) void *name(rp_pool *pool, cpool *cp, rpi_tag *t,   \
                                                size_t size, const char *tag, size_t c) \
    {                                                                                   \
        return arena_take(pool, cp, t, size, tag, plain, pool->arena, c);               \
    }
ARENA_SLOW(arena_slow_plain, true)
ARENA_SLOW(arena_slow_noexc, false)

#define MALLOC_SLOW(name, plain)                                                       \
    static __attribute__((noinline)) void *name(rp_pool *pool, cpool *cp, rpi_tag *t,   \
                                                size_t size, const char *tag, size_t c) \
    {                                                                                   \
        return malloc_take(pool, cp, t, size, tag, plain, c);                           \
    }
MALLOC_SLOW(malloc_slow_plain, true)
MALLOC_SLOW(malloc_slow_noexc, false)

/* The usual allocation when its class's reuse list is empty (a filling
   quarantine): memory carved from the region with a free record, else
   malloc_take. Out of line and call-free but for tail calls, so that it
   saves no register. */
#define MALLOC_CARVE(name, plain, slow)                                                \
    static __attribute__((noinline)) void *name(rp_pool *pool, cpool *cp, rpi_tag *t,   \
                                                size_t size, const char *tag, size_t c) \
    {                                                                                   \
        size_t need = RPI_HDR + 16 * c;                                                 \
        rpi_hdr *h = (rpi_hdr *)carve_cur;                                              \
        entry *e;                                                                       \
        if (RPI_UNLIKELY((size_t)(carve_lim - carve_cur) < need) ||                     \
            RPI_UNLIKELY(!(e = claim_carved(cp, rpi_payload(h)))))                      \
            return slow(pool, cp, t, size, tag, c);                                     \
        carve_cur += need;                                                              \
        return alloc_finish(pool, cp, e, h, RPI_F_CHECKED | size, t, size, 0);          \
    }
MALLOC_CARVE(malloc_carve_plain, true, malloc_slow_plain)
MALLOC_CARVE(malloc_carve_noexc, false, malloc_slow_noexc)

/* A tag pointer that is not a literal remembered in its slot: its content
   compared with the record remembered for it, if any. */
static __attribute__((noinline)) void *alloc_compare(rp_pool *pool, size_t size, const char *tag,
                                                     bool plain)
{
    cpool *cp = cpool_of(pool);
    size_t s = rpi_tag_slot(tag);
    rpi_tag *t = cp->seen_rec[s];
    if (RPI_UNLIKELY(cp->seen_key[s] != tag || !t || strcmp(t->name, tag) != 0))
        return alloc_general_unlock(pool, size, tag, plain);
    if (pool->arena) return arena_locked(pool, cp, t, size, tag, plain);
    return malloc_locked(pool, cp, t, size, tag, plain);
}

/* h's payload, computed where the compiler cannot see that it is (on
   x86-64): for a comparison, so that the payload returned later is
   computed again from h (one lea) rather than kept from the comparison in
   a register that the function must then save and restore. */
static inline __attribute__((always_inline)) void *opaque_payload(rpi_hdr *h)
{
#if defined(__x86_64__)
    void *p;
    __asm__("lea %c2(%1), %0" : "=r"(p) : "r"(h), "i"(RPI_HDR));
    return p;
#else
    return rpi_payload(h);
#endif
}

/* Lock held: the tag's pointer cached and its content the one remembered
   (a literal of the program, or compared by alloc_compare). */
static inline __attribute__((always_inline)) void *alloc_in(rp_pool *pool, size_t size,
                                                            const char *tag, bool plain,
                                                            bool arena)
{
    cpool *cp = cpool_of(pool);
    if (RPI_UNLIKELY(!cp)) goto general;
    size_t s = rpi_tag_slot(tag);
    /* the record remembered for this tag pointer, a literal (the pointer
       cache's own slot need not hold it: records live as long as the
       pool); any other tag's content is compared first */
    if (RPI_UNLIKELY(cp->fixed_key[s] != tag)) return alloc_compare(pool, size, tag, plain);
    /* The usual case: the block on top of its class's list has its record
       in the hint beside the list (the block this pool freed there last,
       or whose memory the quarantine's turnover put there): no table
       lookup, and no register to save (anything else is a tail call). */
    if (arena) {
        /* Only s is kept from here: the record is read when the hint
           holds, and the slower paths read the tag pointer back from
           seen_key[s] (fixed_key[s] == tag implies seen_key[s] == tag),
           so that the hint's checks leave a register free. */
        /* (never NULL here: a checked arena pool loses its arena and its
           part, cp, together, at destroy: rpi_registry_drop_pool) */
        rpi_arena *a = pool->arena;
        size_t c;
        if (RPI_UNLIKELY(!rpi_arena_class(size, RPI_HDR, &c)))
            return alloc_general_unlock(pool, size, cp->seen_key[s], plain);
        rpi_hdr *h = a->free[c];
        entry *e;
        if (RPI_LIKELY(h != NULL) && (e = cp->top_rec[c])->payload == opaque_payload(h) &&
            RPI_LIKELY(e->cp == cp && e->state != RPI_LIVE && e->kept == 0)) {
            if (RPI_UNLIKELY(e->qslot != NULL)) {   /* in the quarantine */
                fifo_leave(e);
            } else {   /* parked */
                cp->park_room++;
            }
            a->free[c] = h->next;
            /* a->hword[c]: RPI_F_ARENA | RPI_F_CHECKED | the class */
            return alloc_finish(pool, cp, e, h, a->hword[c] | size, cp->seen_rec[s], size,
                                KNOWN_KEPT | KNOWN_POOL);
        }
        return plain ? arena_slow_plain(pool, cp, cp->seen_rec[s], size, cp->seen_key[s], c)
                     : arena_slow_noexc(pool, cp, cp->seen_rec[s], size, cp->seen_key[s], c);
    }
    rpi_tag *t = cp->seen_rec[s];
    if (RPI_UNLIKELY(pool->arena != NULL)) return alloc_general_unlock(pool, size, tag, plain);
    size_t c = (size + 15) >> 4;
    if (RPI_LIKELY(size <= RPI_RECYCLE_MAX)) {
        rpi_hdr *h = reuse[c];
        entry *e;
        if (RPI_LIKELY(h != NULL) && (e = reuse_rec[c])->payload == rpi_payload(h) &&
            RPI_LIKELY(e->cp == cp && e->state != RPI_LIVE && e->kept == 0)) {
            /* this pool's record (another's: claim_fast moves it) */
            if (e->qslot) fifo_leave(e);   /* in the quarantine (else waiting with its memory) */
            reuse[c] = h->next;
            reuse_bytes -= RPI_HDR + 16 * c;
            return alloc_finish(pool, cp, e, h, RPI_F_CHECKED | size, t, size,
                                KNOWN_KEPT | KNOWN_POOL);
        }
        if (h == NULL)
            return plain ? malloc_carve_plain(pool, cp, t, size, tag, c)
                         : malloc_carve_noexc(pool, cp, t, size, tag, c);
    }
    return plain ? malloc_slow_plain(pool, cp, t, size, tag, c)
                 : malloc_slow_noexc(pool, cp, t, size, tag, c);
general:
    return alloc_general_unlock(pool, size, tag, plain);
}

/* The lock waited for, then the allocation. */
static __attribute__((noinline)) void *alloc_wait(rp_pool *pool, size_t size, const char *tag,
                                                  bool plain)
{
    rpi_lock_slow(&reg_lock);
    return alloc_in(pool, size, tag, plain, (pool->flags & RP_POOL_ARENA) != 0);
}

/* One entry per backing and per plain/noexc (plain a constant: one
   register fewer on the way through); rpi_checked_alloc (internal.h)
   chooses among them inline. */
#define ALLOC_ENTRY(name, arena, plain)                                              \
    void *name(rp_pool *pool, size_t size, const char *tag)                          \
    {                                                                                 \
        if (RPI_UNLIKELY(!rpi_lock_try(&reg_lock))) return alloc_wait(pool, size, tag, plain); \
        return alloc_in(pool, size, tag, plain, arena);                               \
    }
ALLOC_ENTRY(rpi_checked_alloc_arena_plain, true, true)
ALLOC_ENTRY(rpi_checked_alloc_arena_noexc, true, false)
ALLOC_ENTRY(rpi_checked_alloc_malloc_plain, false, true)
ALLOC_ENTRY(rpi_checked_alloc_malloc_noexc, false, false)

static __attribute__((noinline)) void free_general_unlock(void *block)
{
    rpi_registry_unlock();
    rpi_free_general(block);
}

/* After a free: o, pushed out of the full quarantine, if any, is evicted
   (the table keeps the record just retired, so it cannot become empty and
   the gate stays), and the bytes' bound kept; the lock is let go. */
static __attribute__((noinline)) void trim_unlock(entry *o)
{
    if (o) evict_out(o);
    if (RPI_LIKELY(!over_bounds())) {
        reg_release();
        return;
    }
    trim_slow();
    rpi_registry_unlock();
}

/* A place among cp's parked records taken: false when PARK_CAP are. */
static inline __attribute__((always_inline)) bool park_take(cpool *cp)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
    /* one read-modify-write and a branch on its borrow (compilers emit a
       load, a compare, a branch, an add and a store for the C below) */
    __asm__ goto("subq $1, %0\n\tjb %l[full]" : "+m"(cp->park_room) : : "cc" : full);
    return true;
full:
    cp->park_room = 0;   /* (it went below 0) */
    return false;
#else
    if (RPI_UNLIKELY(cp->park_room == 0)) return false;
    cp->park_room--;
    return true;
#endif
}

/* Lock held (the registry's, which is the block's checked pool's too). */
static inline __attribute__((always_inline)) void free_in(void *block)
{
    entry *e = lookup_nonnull(block);   /* (rp_free returned on NULL) */
    if (RPI_UNLIKELY(!e || e->state != RPI_LIVE)) return free_general_unlock(block);
    rp_pool *pool = e->pool;
    rpi_hdr *h = rpi_hdr_of(block);
    uint64_t w = h->word;
    /* intact_fast: the header's word is the record's but for the free
       bits, so one test of it covers both */
    if (RPI_UNLIKELY(!intact_fast(e, h) ||
                     (w & (RPI_F_DTOR | RPI_F_ALIGNED | RPI_F_BIG | RPI_F_SAMPLED | RPI_F_STACK)) ||
                     atomic_load_explicit(&rpi_memprof_entries, memory_order_relaxed)))
        return free_general_unlock(block);
    size_t size = (size_t)(w & RPI_SIZE_MASK);
    rpi_counters_sub_in(pool, e->origin, size);
    entry *o;
    if (w & RPI_F_ARENA) {   /* back on its class list */
        size_t c = (size_t)((w & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
        h->next = pool->arena->free[c];
        pool->arena->free[c] = h;
        rpi_asan_arena_freed(h, 0);
        cpool *cp = e->cp;
        cp->top_rec[c] = e;
        if (RPI_LIKELY(park_take(cp))) {
            /* parked: the free list leads to it (no quarantine step) */
            list_unlink(e);
            e->state = RPI_FREED;
            reg_release();
            return;
        }
        o = retire_push(e, RPI_FREED, 0);
    } else {
        /* the memory stays with the record: its bytes, rounded up to 16
           whatever the size (rpi_malloc_size rounds blocks of up to 4 KiB
           only, where the count decides a reuse class; a larger block's
           count is at most 15 bytes over, for the quarantine's bound) */
        o = retire_push(e, RPI_FREED, RPI_HDR + ((size + 15) & ~(size_t)15));
    }
    if (RPI_UNLIKELY(o != NULL || over_bounds())) return trim_unlock(o);
    reg_release();
}

static __attribute__((noinline)) void free_wait(void *block)
{
    rpi_lock_slow(&reg_lock);
    free_in(block);
}

void rpi_checked_free(void *block)
{
    if (RPI_UNLIKELY(!rpi_lock_try(&reg_lock))) return free_wait(block);
    free_in(block);
}

void rpi_registry_live_totals(rp_pool *pool, size_t *blocks, size_t *bytes)
{
    size_t n = 0, b = 0;
    cpool *cp = cpool_of(pool);
    if (cp) {
        for (entry *e = cp->live.next; e != &cp->live; e = e->next) {
            if (e->state == STATE_MARK) continue;
            n++;
            b += (size_t)(e->word & RPI_SIZE_MASK);
        }
    }
    *blocks = n;
    *bytes = b;
}

/* ------------------------------------------- walks, checks, reports
   A checked pool's blocks are found through its live records, in
   allocation order; a block is handed out only once its header (and what
   lies below it) agrees with its record. */

/* The live record after e in cp's list (marks skipped), or NULL. */
static entry *live_after(cpool *cp, entry *e)
{
    for (e = e->next; e != &cp->live; e = e->next)
        if (e->state != STATE_MARK) return e;
    return NULL;
}

rpi_hdr *rpi_registry_next(rp_pool *pool, void **cur, bool *ok, char *why, size_t cap)
{
    cpool *cp = cpool_of(pool);
    entry *e = cp ? live_after(cp, *cur ? (entry *)*cur : &cp->live) : NULL;
    *cur = e;
    if (!e) return NULL;
    rpi_hdr *h = rpi_hdr_of(e->payload);
    *ok = intact(e, h, why, cap);
    return h;
}

int rpi_registry_walk(rp_pool *pool, rp_visit_fn visit, void *arg, char *why, size_t cap)
{
    cpool *cp = cpool_of(pool);
    if (!cp) return 0;
    /* the walk's place: a mark just after the record being visited, so
       that blocks freed or allocated while the visitor runs unlocked are
       handled (the pool cannot be destroyed or reset meanwhile) */
    entry mark;
    memset(&mark, 0, sizeof mark);
    mark.state = STATE_MARK;
    mark.prev = &cp->live;
    mark.next = cp->live.next;
    cp->live.next->prev = &mark;
    cp->live.next = &mark;
    int rc = 0;
    for (entry *e; (e = live_after(cp, &mark)) != NULL;) {
        if (!intact(e, rpi_hdr_of(e->payload), why, cap)) {
            rc = RP_ECORRUPT;
            break;
        }
        list_unlink(&mark);
        mark.prev = e;
        mark.next = e->next;
        e->next->prev = &mark;
        e->next = &mark;
        void *payload = e->payload;
        size_t size = (size_t)(e->word & RPI_SIZE_MASK);
        const char *tag = e->origin->name;
        rpi_registry_unlock();
        rc = visit(payload, size, tag, arg);
        rpi_registry_lock();
        if (rc) break;
    }
    list_unlink(&mark);
    return rc;
}

/* A parked record joins the quarantine's tail. */
static void unpark(cpool *cp, entry *e)
{
    cp->park_room++;
    fifo_append(e);
}

void rpi_registry_unpark(rp_pool *pool)
{
    /* The pool's free lists lead to its parked records; a link is followed
       only from a block the table knows as a retired block of this pool
       (memory the pool still holds). A list whose link the records do not
       vouch for (overwritten) is not followed further, and the table is
       searched for what is left: O(the table), only then. */
    cpool *cp = cpool_of(pool);
    rpi_arena *a = pool->arena;
    if (!cp || cp->park_room == PARK_CAP) return;
    for (size_t c = 0; a && c < RPI_NCLASSES && cp->park_room != PARK_CAP; c++) {
        for (rpi_hdr *h = a->free[c]; h && cp->park_room != PARK_CAP; h = h->next) {
            entry *e = lookup(rpi_payload(h));
            if (!e || e->cp != cp || e->state == RPI_LIVE) break;
            if (!e->qslot) unpark(cp, e);
        }
    }
    for (size_t i = 0; i < nbuckets && cp->park_room != PARK_CAP; i++)
        for (entry *e = buckets[i]; e; e = e->hnext)
            if (e->cp == cp && e->state != RPI_LIVE && !e->qslot && (e->word & RPI_F_ARENA))
                unpark(cp, e);
    trim();
}

void rpi_registry_drop_pool(rp_pool *pool, bool destroy)
{
    /* The pool's live records hold the truth for every checked block (a
       corrupt header is not read). The memory of malloc-backed and big
       blocks stays with their records. */
    cpool *cp = cpool_of(pool);
    if (cp) {
        /* (no walk's mark among them: destroy and reset refuse while a
           walk is in progress) */
        while (cp->live.next != &cp->live) {
            entry *e = cp->live.next;
            retire(e, RPI_DESTROYED, raw_bytes(e->word));
        }
    }
    if (destroy) {
        rpi_arena *a = pool->arena;
        pool->arena = NULL;
        pool->checked = NULL;
        if (cp) cp->pool = NULL;
        if (a && cp && cp->refs > 0) {
            /* its chunks stay until the pool's last record goes */
            cp->held = a;
            kept_bytes += a->nchunks * a->chunk_size;
        } else if (a) {
            rpi_arena_free_chunks(a);
        }
        if (cp && cp->refs == 0) cpool_free(cp);
    }
    trim();
}

void rpi_registry_fini(void)
{
    /* A checked pool that still holds blocks keeps the registry as it is:
       its blocks are on no ring, so their records are what leads to them
       (leak checkers at exit see them reachable, as the blocks of other
       pools are through their pools). */
    for (cpool *cp = cpools.next; cp != &cpools; cp = cp->next)
        if (cp->pool && cp->live.next != &cp->live) return;
    reuse_cap = 0;
    for (size_t i = 0; i < nbuckets; i++) {
        for (entry *e = buckets[i], *next; e; e = next) {
            next = e->hnext;
            if (e->kept) release_kept(e);
        }
    }
    rpi_sys_free(buckets);
    buckets = NULL;
    nbuckets = 0;
    last = &no_rec;
    for (slab *sl = slabs, *next; sl; sl = next) {
        next = sl->next;
        rpi_sys_free(sl);
    }
    slabs = NULL;
    free_entries = NULL;
    slab_cur = slab_end = NULL;
    for (cpool *cp = cpools.next, *next; cp != &cpools; cp = next) {
        next = cp->next;
        cp->refs = 0;
        cp->live.prev = cp->live.next = &cp->live;
        for (size_t c = 0; c < RPI_NCLASSES; c++) cp->top_rec[c] = &no_rec;
        cp->park_room = PARK_CAP;
        if (!cp->pool) cpool_free(cp);   /* a live pool keeps its (now empty) part */
    }
    reuse_release();
    carve_drop();
    hints_reset();
    memset(qring, 0, (qhead < RETIRED_CAP ? qhead : RETIRED_CAP) * sizeof *qring);
    qhead = qtail = 0;
    nretired = nentries = 0;
    gate_update();
}
