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
 *     left where it is; ring links are followed only once the block they
 *     lead to is known to be live in the same pool.
 *
 * Quarantine. The memory of a retired block is not given back while its
 * record exists: a freed malloc-backed or big block is kept by its record,
 * and the chunks of a destroyed checked arena pool are kept (their arena
 * struct becomes a "hold" counting the records inside it). So no other
 * pool, checked or not, can be handed an address that still has a retired
 * record, and a valid free of an unchecked block is never mistaken for a
 * double free. Records are retired into a FIFO of at most RETIRED_CAP
 * entries and RETIRED_BYTES bytes of kept memory; the oldest go first, and
 * their memory with them.
 *
 * The registry is consulted (rpi_checked_gate != 0) while a checked pool is
 * alive or any record is left, so a stale pointer is still recognised after
 * the last checked pool is gone. One global lock serialises checked pools:
 * they are for debugging.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define RETIRED_CAP   65536
#define RETIRED_BYTES ((size_t)64 << 20)

typedef struct entry {
    void         *payload;
    rp_pool      *pool;
    rpi_tag      *origin;
    uint64_t      word;
    void         *raw;
    size_t        kept;        /* retired: bytes of raw kept (freed with the record) */
    rpi_arena    *hold;        /* retired arena block of a destroyed pool */
    int           state;
    struct entry *qprev, *qnext;   /* retired FIFO */
} entry;

atomic_int rpi_checked_gate;
atomic_int rpi_unchecked_pools;

static rpi_lock reg_lock;
static rpi_ptrmap reg;
static entry *spare;
static entry retired = {.qprev = &retired, .qnext = &retired};
static size_t nretired, nentries, kept_bytes;
static bool gate_on;

void rpi_registry_lock(void) { rpi_lock_acquire(&reg_lock); }
void rpi_registry_unlock(void) { rpi_lock_release(&reg_lock); }
bool rpi_registry_lock_for_exit(void) { return rpi_lock_try_for(&reg_lock); }

static void gate_update(void)
{
    bool on = nentries > 0;
    if (on == gate_on) return;
    gate_on = on;
    atomic_fetch_add(&rpi_checked_gate, on ? 1 : -1);
}

int rpi_registry_reserve(void)
{
    if (!spare && !(spare = rpi_sys_malloc(sizeof *spare))) return RP_ENOMEM;
    return rpi_ptrmap_reserve(&reg, 1);
}

static void fifo_unlink(entry *e)
{
    e->qprev->qnext = e->qnext;
    e->qnext->qprev = e->qprev;
    e->qprev = e->qnext = NULL;
    nretired--;
}

static void hold_unref(rpi_arena *a)
{
    if (--a->hold_refs) return;
    kept_bytes -= a->nchunks * a->chunk_size;
    rpi_arena_free_chunks(a);
}

/* Gives back what a record keeps; the record itself stays. */
static void entry_release(entry *e)
{
    if (e->qnext) fifo_unlink(e);
    if (e->kept) {
        rpi_sys_free(e->raw);
        kept_bytes -= e->kept;
        e->kept = 0;
    }
    if (e->hold) {
        hold_unref(e->hold);
        e->hold = NULL;
    }
}

static void fill(entry *e, rpi_hdr *h, void *raw)
{
    e->payload = rpi_payload(h);
    e->pool = h->origin->pool;
    e->origin = h->origin;
    e->word = h->word;
    e->raw = raw;
    e->kept = 0;
    e->hold = NULL;
    e->state = RPI_LIVE;
}

void rpi_registry_insert(rpi_hdr *h, void *raw)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(h));
    if (e) {                    /* address reused by its own pool */
        entry_release(e);
    } else {
        e = spare;
        spare = NULL;
        e->qprev = e->qnext = NULL;
        rpi_ptrmap_put(&reg, rpi_payload(h), e);   /* room reserved */
        nentries++;
        gate_update();
    }
    fill(e, h, raw);
}

void rpi_registry_update(rpi_hdr *h)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(h));
    if (e && e->state == RPI_LIVE) e->word = h->word;
}

static void evict(entry *e)
{
    entry_release(e);
    rpi_ptrmap_del(&reg, e->payload);
    rpi_sys_free(e);
    nentries--;
}

static void trim(void)
{
    while (nretired > RETIRED_CAP || (kept_bytes > RETIRED_BYTES && nretired > 0))
        evict(retired.qnext);
    gate_update();
}

static void retire(entry *e, int state, size_t kept)
{
    e->state = state;
    if (kept) {
        e->kept = kept;
        kept_bytes += kept;
    }
    if (!e->qnext) {
        e->qprev = retired.qprev;
        e->qnext = &retired;
        retired.qprev->qnext = e;
        retired.qprev = e;
        nretired++;
    }
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
    entry *e = rpi_ptrmap_get(&reg, payload);
    if (!e) return;
    retire(e, state, raw_bytes(e->word));
    trim();
}

void rpi_registry_move(rpi_hdr *old_h, rpi_hdr *new_h, void *raw)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(old_h));
    if (!e) return;
    if (old_h != new_h) {
        rpi_ptrmap_del(&reg, rpi_payload(old_h));
        entry *stale = rpi_ptrmap_get(&reg, rpi_payload(new_h));
        if (stale) {            /* a retired record at the new address */
            entry_release(stale);
            rpi_sys_free(stale);
            nentries--;
        }
        rpi_ptrmap_put(&reg, rpi_payload(new_h), e);  /* reuses a slot: room reserved */
    }
    fill(e, new_h, raw);
}

int rpi_registry_find(const void *payload, rpi_entry_view *out)
{
    entry *e = rpi_ptrmap_get(&reg, payload);
    if (!e) return RPI_UNKNOWN;
    out->state = e->state;
    out->pool = e->pool;
    out->origin = e->origin;
    out->word = e->word;
    out->raw = e->raw;
    return e->state;
}

static entry *live_in(rp_pool *pool, const void *payload)
{
    entry *e = rpi_ptrmap_get(&reg, payload);
    return e && e->state == RPI_LIVE && e->pool == pool ? e : NULL;
}

/* n may be followed from a block of pool: the sentinel, a walk's mark, or
   a live block of the same pool. Reads nothing at n. */
static bool neighbour_ok(rp_pool *pool, rpi_hdr *n)
{
    return n == &pool->ring || rpi_is_mark(pool, n) || live_in(pool, rpi_payload(n)) != NULL;
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
   agrees with the registry's copy, and the links lead to blocks that are
   live in the same pool and link back. Registry lock held. */
static bool intact(entry *e, rpi_hdr *h, char *why, size_t cap)
{
    rp_pool *pool = e->pool;
    const char *what = NULL;
    if (h->origin != e->origin || ((h->word ^ e->word) & ~RPI_WORD_FREE_BITS) != 0) {
        what = "header";
    } else if (!neighbour_ok(pool, h->prev) || !neighbour_ok(pool, h->next) ||
               h->prev->next != h || h->next->prev != h) {
        what = "ring links";
    } else if (e->word & RPI_F_BIG) {
        rpi_big *b = (rpi_big *)h - 1;
        size_t align = (size_t)1 << ((e->word & RPI_ALIGN_MASK) >> RPI_ALIGN_SHIFT);
        if (b->raw != e->raw || (size_t)(uintptr_t)b->pad != rpi_big_total(align, rpi_size(h)) ||
            !big_neighbour_ok(pool, b->prev) || !big_neighbour_ok(pool, b->next) ||
            b->prev->next != b || b->next->prev != b)
            what = "big-block record below the header";
    } else if (e->word & RPI_F_ALIGNED) {
        if (((void **)h)[-1] != e->raw) what = "raw pointer below the header";
    }
    if (!what) return true;
    if (why)
        snprintf(why, cap, "%s of block %p (tag %s, %zu bytes) was overwritten", what,
                 e->payload, e->origin->name, (size_t)(e->word & RPI_SIZE_MASK));
    return false;
}

bool rpi_registry_block_ok(rp_pool *pool, rpi_hdr *h, char *why, size_t cap)
{
    entry *e = live_in(pool, rpi_payload(h));
    if (!e) {
        snprintf(why, cap, "ring link to %p, which is not a live block of the pool",
                 rpi_payload(h));
        return false;
    }
    return intact(e, h, why, cap);
}

int rpi_checked_validate(const void *payload, rp_pool *expected, const char *op,
                         rpi_entry_view *out)
{
    char msg[400];
    int err = 0;
    rpi_registry_lock();
    entry *e = rpi_ptrmap_get(&reg, payload);
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
        if (!intact(e, rpi_hdr_of(payload), why, sizeof why)) {
            err = RP_ECORRUPT;
            snprintf(msg, sizeof msg, "%s: pool '%s': %s", op, e->pool->name, why);
        } else if (out) {
            out->state = e->state;
            out->pool = e->pool;
            out->origin = e->origin;
            out->word = e->word;
            out->raw = e->raw;
        }
    }
    rpi_registry_unlock();
    if (!err) return 1;
    rpi_report_error(err, payload, "%s", msg);
    return -1;
}

void rpi_registry_live_totals(rp_pool *pool, size_t *blocks, size_t *bytes)
{
    size_t n = 0, b = 0;
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (!k || k == (void *)1) continue;
        entry *e = reg.vals[i];
        if (e->state != RPI_LIVE || e->pool != pool) continue;
        n++;
        b += (size_t)(e->word & RPI_SIZE_MASK);
    }
    *blocks = n;
    *bytes = b;
}

void rpi_registry_drop_pool(rp_pool *pool)
{
    /* Walks the table, not the ring: a header found corrupt may have broken
       links, and the table holds the truth for every checked block. The
       memory of malloc-backed and big blocks stays with their records. */
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (!k || k == (void *)1) continue;
        entry *e = reg.vals[i];
        if (e->state != RPI_LIVE || e->pool != pool) continue;
        retire(e, RPI_DESTROYED, raw_bytes(e->word));
    }
    trim();
}

void rpi_registry_hold_arena(rp_pool *pool)
{
    rpi_arena *a = pool->arena;
    pool->arena = NULL;
    a->hold_refs = 1;           /* ours, until the records are counted */
    kept_bytes += a->nchunks * a->chunk_size;
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (!k || k == (void *)1) continue;
        entry *e = reg.vals[i];
        if (e->pool != pool || !(e->word & RPI_F_ARENA) || e->hold || e->state == RPI_LIVE)
            continue;
        e->hold = a;
        a->hold_refs++;
    }
    hold_unref(a);
    trim();
}

void rpi_registry_fini(void)
{
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (k && k != (void *)1) {
            entry *e = reg.vals[i];
            entry_release(e);
            rpi_sys_free(e);
        }
    }
    rpi_ptrmap_free(&reg);
    rpi_sys_free(spare);
    spare = NULL;
    retired.qprev = retired.qnext = &retired;
    nretired = nentries = 0;
    gate_update();
}
