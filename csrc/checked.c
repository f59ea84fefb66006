/* checked.c -- the registry behind RP_POOL_CHECKED.
 *
 * Checked pools keep, in a process-wide side table keyed by payload address,
 * a copy of every block's origin, size word and raw pointer, and a record of
 * recently retired blocks (freed, or dropped by a destroy or reset), so that
 * misuse is recognised without reading memory the library did not hand out:
 *   - a pointer unknown to the registry is foreign when no unchecked pool is
 *     alive (otherwise it may be an unchecked block and takes the fast path);
 *   - a retired pointer is a double free or a use after destroy;
 *   - a header that disagrees with its copy was overwritten (underflow), and
 *     the block is left where it is.
 * One global lock serialises checked pools: they are for debugging. Retired
 * records are kept in a FIFO of at most RETIRED_CAP entries.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define RETIRED_CAP 65536

typedef struct entry {
    void         *payload;
    rp_pool      *pool;
    rpi_tag      *origin;
    uint64_t      word;
    void         *raw;
    int           state;
    struct entry *qprev, *qnext;   /* retired FIFO */
} entry;

atomic_int rpi_checked_pools;
atomic_int rpi_unchecked_pools;

static rpi_lock reg_lock;
static rpi_ptrmap reg;
static entry *spare;
static entry retired = {.qprev = &retired, .qnext = &retired};
static size_t nretired;

void rpi_registry_lock(void) { rpi_lock_acquire(&reg_lock); }
void rpi_registry_unlock(void) { rpi_lock_release(&reg_lock); }

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

static void fill(entry *e, rpi_hdr *h, void *raw)
{
    e->payload = rpi_payload(h);
    e->pool = h->origin->pool;
    e->origin = h->origin;
    e->word = h->word & ~RPI_F_DTOR;
    e->raw = raw;
    e->state = RPI_LIVE;
}

void rpi_registry_insert(rpi_hdr *h, void *raw)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(h));
    if (e) {                    /* address reused after a retirement */
        if (e->qnext) fifo_unlink(e);
    } else {
        e = spare;
        spare = NULL;
        e->qprev = e->qnext = NULL;
        rpi_ptrmap_put(&reg, rpi_payload(h), e);   /* room reserved */
    }
    fill(e, h, raw);
}

void rpi_registry_retire(rpi_hdr *h, int state)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(h));
    if (!e) return;
    e->state = state;
    if (!e->qnext) {
        e->qprev = retired.qprev;
        e->qnext = &retired;
        retired.qprev->qnext = e;
        retired.qprev = e;
        nretired++;
    }
    while (nretired > RETIRED_CAP) {
        entry *old = retired.qnext;
        fifo_unlink(old);
        rpi_ptrmap_del(&reg, old->payload);
        rpi_sys_free(old);
    }
}

void rpi_registry_move(rpi_hdr *old_h, rpi_hdr *new_h, void *raw)
{
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(old_h));
    if (!e) return;
    if (old_h != new_h) {
        rpi_ptrmap_del(&reg, rpi_payload(old_h));
        entry *stale = rpi_ptrmap_get(&reg, rpi_payload(new_h));
        if (stale) {            /* a retired record at the new address */
            if (stale->qnext) fifo_unlink(stale);
            rpi_sys_free(stale);
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

static bool neighbour_ok(rp_pool *pool, rpi_hdr *n)
{
    if (n == &pool->ring) return true;
    entry *e = rpi_ptrmap_get(&reg, rpi_payload(n));
    return e && e->state == RPI_LIVE && e->pool == pool;
}

int rpi_checked_validate(const void *payload, rp_pool *expected, const char *op,
                         rpi_entry_view *out)
{
    char msg[256];
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
        rpi_hdr *h = rpi_hdr_of(payload);
        bool intact = h->origin == e->origin && (h->word & ~RPI_F_DTOR) == e->word &&
                      neighbour_ok(e->pool, h->prev) && neighbour_ok(e->pool, h->next) &&
                      h->prev->next == h && h->next->prev == h;
        if (!intact) {
            err = RP_ECORRUPT;
            snprintf(msg, sizeof msg,
                     "%s: header of block %p (pool '%s', tag %s, %zu bytes) was overwritten",
                     op, payload, e->pool->name, e->origin->name,
                     (size_t)(e->word & RPI_SIZE_MASK));
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

void rpi_registry_drop_pool(rp_pool *pool, bool free_blocks)
{
    /* Walks the table, not the ring: a header found corrupt may have broken
       links, and the table holds the truth for every checked block. */
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (!k || k == (void *)1) continue;
        entry *e = reg.vals[i];
        if (e->state != RPI_LIVE || e->pool != pool) continue;
        if (free_blocks) rpi_sys_free(e->raw);
        rpi_registry_retire(rpi_hdr_of(e->payload), RPI_DESTROYED);
    }
}

void rpi_registry_fini(void)
{
    rpi_registry_lock();
    for (size_t i = 0; i < reg.cap; i++) {
        void *k = reg.keys[i];
        if (k && k != (void *)1) rpi_sys_free(reg.vals[i]);
    }
    rpi_ptrmap_free(&reg);
    rpi_sys_free(spare);
    spare = NULL;
    retired.qprev = retired.qnext = &retired;
    nretired = 0;
    rpi_registry_unlock();
}
