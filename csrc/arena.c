/* arena.c -- the arena backing (RP_POOL_ARENA).
 *
 * Blocks, header included, are carved from chunks (default 1 MiB) in size
 * classes: 16-byte steps up to 1 KiB, then four classes per power of two up to
 * RPI_BIG_LIMIT. In unchecked pools a small block's header is 16 bytes
 * {origin, word} (internal.h, RPI_AHDR): its slot starts a->off = 16 bytes
 * after its rpi_hdr (a->cur, a->end and chunk->used are rpi_hdr addresses,
 * slot - off, so carving and the carved-last tests are the same for both
 * layouts), slots lie end to end from the chunk's header to its carved end
 * (a->cur, or chunk->used once another chunk is current), and a
 * slot is live when its word has RPI_F_ARENA and a size (rpi_slot_live: an
 * unsynchronised pool's free slot has all ones in the low 32 bits, any
 * other's no RPI_F_ARENA); a free slot keeps its class bits, so a walk
 * steps from slot to slot (rpi_arena_next_live). Checked
 * pools keep the full header on the ring (a->off = 0). A freed block goes
 * onto its class's free list (the link is the header's origin field, or
 * next in checked pools) and is reused by the next allocation of that
 * class. Larger or over-aligned blocks get their own allocation, preceded by
 * an rpi_big record on a list of their own. Destroy frees the chunk list and
 * the big list and never touches a block: O(chunks + big blocks). A block's
 * class is kept in its header: a shrink keeps the class, and the block carved
 * last from the current chunk grows in place into the chunk's rest, up to
 * RPI_GROW_LIMIT; a block that a resize grows past that leaves the arena for
 * an allocation of its own, while it is small enough to copy cheaply. Big
 * blocks resize in place within their allocation (growth by small steps
 * leaves a quarter of headroom); otherwise those not over-aligned are
 * resized with realloc, which moves large allocations by remapping their
 * pages rather than copying them.
 *
 * Blocks of 1 to 16 bytes of unchecked pools (1 to 64 with
 * RINGPOOL_HEADERLESS=64) are headerless (internal.h): slots of 16, 32 or
 * 64 bytes in 64 KiB chunks of one reserved region (a part of it per slot
 * size, one slot size per chunk), a 32-bit word per slot after the chunk's
 * header, the free slots on their class's free list (beside the class's
 * blocks with a header: rpi_hl_enc) and a bump pointer per class (hl[]),
 * walked by rpi_hl_next_live; see the end of this file.
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>

#define DEFAULT_CHUNK   ((size_t)1 << 20)
#define MIN_CHUNK       ((size_t)64 << 10)
#define DEFAULT_KEEP    ((size_t)4 << 20)

/* Headerless classes (rpi_arena.hl_cmax): RINGPOOL_HEADERLESS=64 in the
   environment gives blocks up to 64 bytes headerless slots (less memory, a
   few more instructions per free: docs/contract.md); otherwise blocks up to
   16 bytes (none with RINGPOOL_HEADERLESS=0: hl_reserve). Read once; 1
   again when only the 16-byte slots' part of the region could be reserved
   (hl_reserve). */
static int hl_mode;   /* 0: not read yet */
static size_t hl_classes(void)
{
    int m = __atomic_load_n(&hl_mode, __ATOMIC_RELAXED);
    if (!m) {
        const char *e = getenv("RINGPOOL_HEADERLESS");
        m = e && strcmp(e, "64") == 0 ? (int)RPI_HL_CLASSES : 1;
        __atomic_store_n(&hl_mode, m, __ATOMIC_RELAXED);
    }
    return (size_t)m;
}

int rpi_arena_init(rp_pool *pool, const rp_pool_options *opts)
{
    /* A chunk larger than the largest block could never be allocated, and
       near SIZE_MAX rounding it up to 16 would wrap to 0. */
    if (opts && opts->chunk_size > RPI_MAX_CHUNK) return RP_EINVAL;
    /* an unchecked pool's arena follows the pool (rp_pool.own_arena) */
    rpi_arena *a = pool->flags & RP_POOL_CHECKED ? rpi_sys_malloc(sizeof *a) : pool->own_arena;
    if (!a) return RP_ENOMEM;
    memset(a, 0, sizeof *a);
    a->chunk_size = opts && opts->chunk_size ? opts->chunk_size : DEFAULT_CHUNK;
    if (a->chunk_size < MIN_CHUNK) a->chunk_size = MIN_CHUNK;
    a->chunk_size = (a->chunk_size + 15) & ~(size_t)15;
    a->keep_bytes = opts && opts->keep_bytes ? opts->keep_bytes : DEFAULT_KEEP;
    a->bigs.prev = a->bigs.next = &a->bigs;
    /* checked pools keep the full header: their registry checks the ring */
    a->off = pool->flags & RP_POOL_CHECKED ? 0 : RPI_AOFF;
    a->hl_no = a->off == 0 ? UINT8_MAX : 0;   /* checked pools: every block on the ring */
    a->hl_cmax = hl_classes();
    /* (a checked pool's blocks have RPI_F_CHECKED too: checked.c) */
    uint64_t checked = pool->flags & RP_POOL_CHECKED ? RPI_F_CHECKED : 0;
    for (size_t c = 0; c < RPI_NCLASSES; c++) {
        a->hword[c] = RPI_F_ARENA | checked | ((uint64_t)c << RPI_CLASS_SHIFT);
        a->carve[c] = rpi_carve_bytes[c];
        a->cbytes[c] = rpi_class_bytes[c];
    }
    /* past 1 KiB a class spans 256 bytes or more, aligned to 256: every
       total - 1 in [i << 8, (i << 8) + 255] has the class of (i << 8) + 1 */
    for (size_t i = 0; i < sizeof a->bigcls; i++)
        a->bigcls[i] = (uint8_t)rpi_class_of((i << 8) + 1);
    pool->arena = a;
    return 0;
}

/* ------------------------------------------------ process chunk cache
   Chunks given back by destroyed arena pools are kept, up to a cap, for the
   next arena pool: a new pool then starts on memory that is already mapped
   and touched (as APR's allocator and mimalloc's segment cache do), and the
   destroy pays no kernel work per page (unmapping or trimming 1 MiB chunks
   costs the kernel about 35 ns per 4 KiB page, and the next pool faults
   them in again). The cap adapts: it is the largest pool (in chunk bytes)
   among the last ADAPT_WINDOW destroyed arena pools, at least 16 MiB and at
   most ADAPT_MAX; when it shrinks, the excess is freed at that destroy. So
   a program that builds and drops big pools again and again keeps about one
   big pool's chunks, and one that drops a big pool and then only small
   ones gives the memory back ADAPT_WINDOW destroys later.
   $RINGPOOL_CHUNK_CACHE=N sets a fixed cap of N bytes instead (0 disables
   the cache), read once. Everything cached is freed when the library is
   unloaded or the process exits. */
#define DEFAULT_CACHE ((size_t)16 << 20)
#define ADAPT_WINDOW  8
#define ADAPT_MAX     ((size_t)1 << 30)
static rpi_lock cache_lock;
rpi_lock *rpi_chunk_cache_lockp(void) { return &cache_lock; }
static rpi_chunk *cache_head;
static size_t cache_bytes;
static size_t cache_cap = SIZE_MAX;   /* SIZE_MAX: not read yet */
static bool cache_fixed;              /* $RINGPOOL_CHUNK_CACHE given */
static size_t recent[ADAPT_WINDOW];   /* chunk bytes of the last destroyed pools */
static unsigned recent_next;

static size_t cache_limit(void)
{
    if (cache_cap == SIZE_MAX) {
        const char *e = getenv("RINGPOOL_CHUNK_CACHE");
        char *end;
        unsigned long long v = e && *e ? strtoull(e, &end, 10) : 0;
        cache_fixed = e && *e && *end == '\0';
        cache_cap = cache_fixed ? (size_t)v : DEFAULT_CACHE;
    }
    return cache_cap;
}

/* A pool holding bytes of chunks is being destroyed: the adaptive cap
   follows the window, and what the cache holds above a lowered cap goes
   back to the system (the caller frees the returned list, unlocked). */
static rpi_chunk *cache_adapt(size_t bytes)
{
    rpi_chunk *excess = NULL;
    rpi_lock_acquire(&cache_lock);
    (void)cache_limit();
    if (!cache_fixed) {
        recent[recent_next] = bytes < ADAPT_MAX ? bytes : ADAPT_MAX;
        recent_next = (recent_next + 1) % ADAPT_WINDOW;
        size_t cap = DEFAULT_CACHE;
        for (unsigned i = 0; i < ADAPT_WINDOW; i++)
            if (recent[i] > cap) cap = recent[i];
        cache_cap = cap;
        while (cache_bytes > cache_cap && cache_head) {
            rpi_chunk *c = cache_head;
            cache_head = c->next;
            cache_bytes -= c->size;
            c->next = excess;
            excess = c;
        }
    }
    rpi_lock_release(&cache_lock);
    return excess;
}

static rpi_chunk *cache_take(size_t size)
{
    rpi_chunk *got = NULL;
    rpi_lock_acquire(&cache_lock);
    for (rpi_chunk **pc = &cache_head; *pc; pc = &(*pc)->next) {
        if ((*pc)->size == size) {
            got = *pc;
            *pc = got->next;
            cache_bytes -= size;
            break;
        }
    }
    rpi_lock_release(&cache_lock);
    return got;
}

static bool cache_give(rpi_chunk *c)
{
    bool kept = false;
    rpi_lock_acquire(&cache_lock);
    if (cache_bytes + c->size <= cache_limit()) {
        c->next = cache_head;
        cache_head = c;
        cache_bytes += c->size;
        kept = true;
    }
    rpi_lock_release(&cache_lock);
    return kept;
}

static void hl_fini(void);

void rpi_chunk_cache_fini(void)
{
    rpi_lock_acquire(&cache_lock);
    for (rpi_chunk *c = cache_head, *n; c; c = n) {
        n = c->next;
        rpi_sys_free(c);
    }
    cache_head = NULL;
    cache_bytes = 0;
    hl_fini();
    rpi_lock_release(&cache_lock);
}

static bool new_chunk(rp_pool *pool, rpi_arena *a)
{
    rpi_chunk *c = a->spare;
    if (c) {
        a->spare = c->next;
    } else {
        c = cache_take(a->chunk_size);
        if (!c) c = rpi_sys_malloc(a->chunk_size);
        if (!c) return false;
        c->size = a->chunk_size;
        a->nchunks++;
        pool->reserved += a->chunk_size;
    }
    if (a->chunks) a->chunks->used = a->cur;   /* no longer current: for walks */
    c->next = a->chunks;
    a->chunks = c;
    /* ASan: the whole chunk uncarved (asan.h; a spare or cached chunk
       keeps what its last pool left) */
    rpi_asan_poison(c + 1, c->size - sizeof *c);
    /* cur and end are rpi_hdr addresses: a slot starts off bytes later */
    a->cur = (char *)(c + 1) - a->off;
    a->end = (char *)c + c->size - a->off;
    return true;
}

/* rpi_class_size(c) for every class, as constants. */
#define CLASS_BYTES(c) ((c) < 64 ? ((c) + 1) * 16u : CLASS_BYTES_BIG((c) < 64 ? 64 : (c)))
#define CLASS_BYTES_BIG(c) ((1u << (10 + ((c) - 64) / 4)) + ((((c) - 64) % 4 + 1) << (8 + ((c) - 64) / 4)))
#define CLASS_BYTES4(c) CLASS_BYTES(c), CLASS_BYTES(c + 1), CLASS_BYTES(c + 2), CLASS_BYTES(c + 3)
#define CLASS_BYTES16(c) CLASS_BYTES4(c), CLASS_BYTES4(c + 4), CLASS_BYTES4(c + 8), CLASS_BYTES4(c + 12)
const uint32_t rpi_class_bytes[RPI_NCLASSES] = {
    CLASS_BYTES16(0), CLASS_BYTES16(16), CLASS_BYTES16(32), CLASS_BYTES16(48), CLASS_BYTES16(64),
    CLASS_BYTES4(80),
};
_Static_assert(CLASS_BYTES(RPI_NCLASSES - 1) == RPI_BIG_LIMIT, "the last class is RPI_BIG_LIMIT");
/* The same for carving in alloc_arena_fast (pool.c), except class 1 (1 to
   16 bytes with the compact header): headerless blocks take those sizes, so
   carving one never fits and that path looks for a headerless slot (so do
   classes 2 to 4 with RINGPOOL_HEADERLESS=64, before they would carve). */
const uint32_t rpi_carve_bytes[RPI_NCLASSES] = {
    CLASS_BYTES(0), UINT32_MAX, CLASS_BYTES(2), CLASS_BYTES(3), CLASS_BYTES4(4), CLASS_BYTES4(8),
    CLASS_BYTES4(12), CLASS_BYTES16(16), CLASS_BYTES16(32), CLASS_BYTES16(48), CLASS_BYTES16(64),
    CLASS_BYTES4(80),
};

/* A big block whose allocation holds room payload bytes (word: RPI_F_BIG;
   the caller adds the alignment and size). */
static rpi_hdr *big_alloc(rp_pool *pool, size_t align, size_t room)
{
    rpi_arena *a = pool->arena;
    if (align < _Alignof(max_align_t)) align = _Alignof(max_align_t);
    size_t total = rpi_big_total(align, room);
    void *raw;
    if (a->big_zero == RPI_BIG_ZERO_WANTED) {   /* rp_calloc (calloc_impl) */
        raw = rpi_sys_calloc(1, total);
        if (raw) a->big_zero = RPI_BIG_ZERO_DONE;
    } else {
        raw = rpi_sys_malloc(total);
    }
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(rpi_big) + RPI_HDR + align - 1) & ~(uintptr_t)(align - 1);
    rpi_hdr *h = rpi_hdr_of((void *)p);
    rpi_big *b = (rpi_big *)h - 1;
    b->raw = raw;
    b->pad = (void *)(uintptr_t)total;
    b->next = &a->bigs;
    b->prev = a->bigs.prev;
    a->bigs.prev->next = b;
    a->bigs.prev = b;
    pool->reserved += total;
    h->word = RPI_F_BIG;
    return h;
}

rpi_hdr *rpi_arena_refill(rp_pool *pool, unsigned cls)
{
    rpi_arena *a = pool->arena;
    size_t cs = rpi_class_size(cls);
    if ((size_t)(a->end - a->cur) < cs && !new_chunk(pool, a)) return NULL;
    rpi_hdr *h = (rpi_hdr *)a->cur;
    a->cur += cs;
    return h;
}

rpi_hdr *rpi_arena_next_live(rpi_arena *a, rpi_slots *it)
{
    if (!it->started) {
        it->started = true;
        it->c = a->chunks;
        it->p = it->c ? (char *)(it->c + 1) - a->off : NULL;
    } else if (it->c) {
        rpi_hdr *last = (rpi_hdr *)it->p;
        it->p += rpi_class_bytes[(last->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT];
    }
    /* p, cur and used are rpi_hdr addresses (slot - off) */
    while (it->c) {
        char *lim = it->c == a->chunks ? a->cur : it->c->used;
        while (it->p < lim) {
            rpi_hdr *h = (rpi_hdr *)it->p;
            if (rpi_slot_live(h->word)) return h;
            it->p += rpi_class_bytes[(h->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT];
        }
        it->c = it->c->next;
        it->p = it->c ? (char *)(it->c + 1) - a->off : NULL;
    }
    return NULL;
}

rpi_hdr *rpi_arena_alloc(rp_pool *pool, size_t size)
{
    rpi_arena *a = pool->arena;
    size_t total = RPI_HDR - a->off + size;
    if (RPI_UNLIKELY(total > RPI_BIG_LIMIT)) return big_alloc(pool, 0, size);
    unsigned c = rpi_class_of(total);
    void *e = a->free[c];
    rpi_hdr *h;
    /* (a headerless slot at the head, rpi_hl_enc: this block needs a
       header, so it is carved) */
    if (RPI_LIKELY(rpi_list_hdr(e))) {
        if (a->off) {   /* compact: the payload listed (rpi_list_ent) */
            h = rpi_list_blk(e);
            a->free[c] = h->link;
        } else {
            h = e;
            a->free[c] = h->next;
        }
    } else if (!(h = rpi_arena_refill(pool, c))) {
        return NULL;
    }
    /* (before the header's first write: a carved slot was poisoned) */
    rpi_asan_slot((char *)h + a->off, RPI_HDR - a->off + size, rpi_class_bytes[c]);
    h->word = RPI_F_ARENA | ((uint64_t)c << RPI_CLASS_SHIFT);
    return h;
}

rpi_hdr *rpi_arena_alloc_aligned(rp_pool *pool, size_t align, size_t size)
{
    rpi_hdr *h = big_alloc(pool, align, size);
    return h;
}

void rpi_arena_free(rp_pool *pool, rpi_hdr *h)
{
    rpi_arena *a = pool->arena;
    if (h->word & RPI_F_BIG) {
        rpi_big *b = (rpi_big *)h - 1;
        b->prev->next = b->next;
        b->next->prev = b->prev;
        pool->reserved -= (size_t)(uintptr_t)b->pad;
        rpi_sys_free(b->raw);
        return;
    }
    unsigned c = (unsigned)((h->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    if ((char *)h + rpi_class_size(c) == a->cur && !pool->marks) {
        /* the block carved last (e.g. a buffer that outgrew the arena):
           the chunk takes its space back rather than its class list (not
           while a walk holds a place in the chunk) */
        a->cur = (char *)h;
        rpi_asan_poison((char *)h + a->off, rpi_class_size(c));
        return;
    }
    if (a->off) {
        /* compact: the link in the origin field, the class kept for walks;
           not live (rpi_slot_live): an unsynchronised pool's word keeps
           RPI_F_ARENA with its low half all ones, a thread-safe one's
           loses RPI_F_ARENA (as slot_free) */
        h->link = a->free[c];
        h->word = pool->sync == 0 ? (h->word & (RPI_F_ARENA | RPI_CLASS_MASK)) | RPI_SLOT_FREE_LO
                                  : h->word & RPI_CLASS_MASK;
        a->free[c] = rpi_list_ent(h);
    } else {
        h->next = a->free[c];
        a->free[c] = h;
    }
    rpi_asan_arena_freed(h, a->off);
}

bool rpi_arena_resize_in_place(rp_pool *pool, rpi_hdr *h, size_t new_size)
{
    if (h->word & RPI_F_BIG) {
        /* within its own allocation, unless that would keep more than twice
           what the block holds (then realloc gives the rest back); checked
           pools keep every big allocation at its block's exact size */
        if (pool->flags & RP_POOL_CHECKED) return false;
        size_t cap = rpi_big_cap(h);
        if (new_size > cap || new_size < cap / 2) return false;
        h->word = (h->word & ~RPI_SIZE_MASK) | new_size;
        rpi_asan_big_live(h);
        return true;
    }
    if (!(h->word & RPI_F_ARENA)) return false;
    unsigned c = (unsigned)((h->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT);
    size_t cs = rpi_class_size(c);
    rpi_arena *a = pool->arena;
    size_t total = RPI_HDR - a->off + new_size;     /* new_size <= RP_MAX_SIZE: no wrap */
    if (total > cs) {
        /* growth: only the block carved last from the current chunk, into
           the chunk's uncarved rest, only up to RPI_GROW_LIMIT, and only
           while no freed block of the new class waits for reuse (the move
           takes that one and gives this space back to the chunk) */
        if (total > RPI_GROW_LIMIT || (char *)h + cs != a->cur) return false;
        c = rpi_class_of(total);
        if (rpi_list_hdr(a->free[c])) return false;
        cs = rpi_class_size(c);
        if ((size_t)(a->end - (char *)h) < cs) return false;
        a->cur = (char *)h + cs;
    } else if (rpi_arena_shrinks(total, cs)) {
        /* a shrink to half the slot or less: the block carved last gives
           the rest back to the chunk (not while a walk holds a place in
           it), any other moves to the smaller class (the caller's move) */
        if ((char *)h + cs != a->cur || pool->marks) return false;
        c = rpi_class_of(total);
        a->cur = (char *)h + rpi_class_size(c);
    }
    /* a shrink to more than half keeps the class: free, walk and destroy go
       by the class bits */
    h->word = (h->word & ~(RPI_CLASS_MASK | RPI_SIZE_MASK)) | ((uint64_t)c << RPI_CLASS_SHIFT) | new_size;
    /* cs: the larger of the old and the new slot (a shrink that gave the
       rest back to the chunk poisons that too) */
    rpi_asan_slot((char *)h + a->off, RPI_HDR - a->off + new_size, cs);
    return true;
}

rpi_hdr *rpi_arena_alloc_moved(rp_pool *pool, size_t old, size_t new_size)
{
    rpi_hdr *h;
    if (new_size <= old || RPI_HDR - pool->arena->off + new_size <= RPI_GROW_LIMIT) {
        h = rpi_arena_alloc(pool, new_size);
    } else {
        size_t want = pool->flags & RP_POOL_CHECKED ? new_size : rpi_grow_want(old, new_size);
        h = big_alloc(pool, 0, want);
        if (!h && want != new_size) h = big_alloc(pool, 0, new_size);
    }
    if (!h) return NULL;
    if (h->word & RPI_F_BIG) h->word |= (uint64_t)4 << RPI_ALIGN_SHIFT;   /* log2(16) */
    h->word |= new_size;
    rpi_asan_big_live(h);
    return h;
}

void rpi_arena_unlink_big(rp_pool *pool, rpi_hdr *h)
{
    rpi_big *b = (rpi_big *)h - 1;
    b->prev->next = b->next;
    b->next->prev = b->prev;
    pool->reserved -= (size_t)(uintptr_t)b->pad;
}

/* Checked pools keep every chunk: retired records keep their addresses,
   reused only by this pool (reset) or held by the registry (destroy); their
   big blocks stay with their records. */
__attribute__((noinline)) static void checked_release(rp_pool *pool, rpi_arena *a)
{
    for (rpi_big *b = a->bigs.next; b != &a->bigs; b = b->next)
        pool->reserved -= (size_t)(uintptr_t)b->pad;
    a->bigs.prev = a->bigs.next = &a->bigs;
    if (a->chunks) {
        rpi_chunk *t = a->chunks;
        while (t->next) t = t->next;
        t->next = a->spare;
        a->spare = a->chunks;
    }
    a->chunks = NULL;
    a->cur = a->end = NULL;
    memset(a->free, 0, sizeof a->free);
}

static void hl_release(rp_pool *pool, rpi_arena *a);

void rpi_arena_release(rp_pool *pool, bool keep)
{
    rpi_arena *a = pool->arena;
    if (pool->flags & RP_POOL_CHECKED) {
        checked_release(pool, a);
        return;
    }
    hl_release(pool, a);   /* destroy and reset alike: to the region's spares */
    for (rpi_big *b = a->bigs.next, *n; b != &a->bigs; b = n) {
        n = b->next;
        pool->reserved -= (size_t)(uintptr_t)b->pad;
        rpi_sys_free(b->raw);
    }
    a->bigs.prev = a->bigs.next = &a->bigs;
    /* every chunk, in use or spare, is either kept (up to keep_bytes) or freed */
    rpi_chunk *all = a->chunks, *kept = NULL;
    if (a->spare) {
        rpi_chunk *t = a->spare;
        while (t->next) t = t->next;
        t->next = all;
        all = a->spare;
    }
    size_t kept_bytes = 0;
    if (!keep) {
        for (rpi_chunk *c = cache_adapt(a->nchunks * a->chunk_size), *n; c; c = n) {
            n = c->next;
            rpi_sys_free(c);
        }
    }
    for (rpi_chunk *c = all, *n; c; c = n) {
        n = c->next;
        if (keep && (a->keep_bytes == SIZE_MAX || kept_bytes + c->size <= a->keep_bytes)) {
            kept_bytes += c->size;
            c->next = kept;
            kept = c;
        } else {
            pool->reserved -= c->size;
            a->nchunks--;
            /* destroy hands chunks to the process cache; reset's excess goes back
               to the system */
            if (keep || !cache_give(c)) rpi_sys_free(c);
        }
    }
    a->chunks = NULL;
    a->spare = kept;
    a->cur = a->end = NULL;
    memset(a->free, 0, sizeof a->free);
    /* a pool that got no chunk of a part of the headerless region (used
       up, or a commit refused: hl_chunk_new) asks again after a reset: its
       own chunks are spares now, and a limit may have been raised */
    a->hl_no = 0;
}

void rpi_arena_free_chunks(rpi_arena *a)
{
    for (rpi_chunk *c = a->chunks, *n; c; c = n) {
        n = c->next;
        rpi_sys_free(c);
    }
    for (rpi_chunk *c = a->spare, *n; c; c = n) {
        n = c->next;
        rpi_sys_free(c);
    }
    rpi_sys_free(a);
}

void rpi_arena_fini(rp_pool *pool)
{
    rpi_sys_free(pool->hl_tags);
    pool->hl_tags = NULL;
    if (pool->arena != pool->own_arena) rpi_sys_free(pool->arena);
    pool->arena = NULL;
}

/* ------------------------------------------------- headerless blocks
   One region of the address space is reserved (read-only, nothing
   committed) the first time a pool wants a headerless chunk: a part of
   RPI_HL_PART bytes per slot size (internal.h; one part, the 16-byte
   slots', unless RINGPOOL_HEADERLESS=64). Chunks are made writable from
   the start of their part as pools need them, and a destroyed or reset
   pool's chunks go on their part's list of spares for the next. The
   region's bounds and the spares are under the chunk cache's lock (taken
   under pool locks; fork.c holds it across fork). */
uintptr_t rpi_hl_base, rpi_hl_span, rpi_hl1_span, rpi_hl2_span, rpi_slow_lim;
static int hl_state;              /* 0: not reserved yet, 1: reserved, -1: none */
static struct {
    char        *top, *lim;       /* next chunk to commit, the part's end */
    rpi_hlchunk *spares;
} hl_parts[RPI_HL_PARTS];
static size_t hl_spare_bytes;      /* of the spares, those counted resident */
#define HL_SPARES_KEPT ((size_t)16 << 20)

/* The part of class cls's chunks: 0 (16-byte slots), 1 (32), 2 (64). */
static unsigned hl_part(size_t cls) { return cls < 3 ? (unsigned)cls - 1 : 2; }
/* The classes whose chunks lie in class cls's part, as rpi_arena.hl_no's
   bits: the 64-byte slots' part holds classes 3 and 4. */
static uint8_t hl_part_classes(size_t cls)
{
    return cls < 3 ? (uint8_t)(1u << cls) : (uint8_t)(1u << 3 | 1u << 4);
}
_Static_assert(RPI_HL_CLASSES < 8, "a bit per class in rpi_arena.hl_no");

/* cache_lock held: rp_free's test follows the region and the gate. */
static void slow_set(void)
{
    bool gate = atomic_load(&rpi_checked_gate) != 0;
    __atomic_store_n(&rpi_slow_lim, gate ? UINTPTR_MAX : rpi_hl_span ? rpi_hl_span - 1 : 0,
                     __ATOMIC_RELAXED);
}

void rpi_slow_sync(void)
{
    rpi_lock_acquire(&cache_lock);
    slow_set();
    rpi_lock_release(&cache_lock);
}

static bool hl_reserve(void)
{
    if (hl_state) return hl_state > 0;
    const char *e = getenv("RINGPOOL_HEADERLESS");
    if (e && strcmp(e, "0") == 0) {
        hl_state = -1;
        return false;
    }
    /* an injected failure (rp_debug_fail_after) is a refusal of this
       reservation only: a later chunk tries again */
    if (rpi_sys_fail()) return false;
    hl_state = -1;
    unsigned parts = hl_classes() == 1 ? 1 : RPI_HL_PARTS;
    size_t region = parts * RPI_HL_PART, len = region + RPI_HL_CHUNK;
    /* readable: a chunk no pool took yet reads as zero (no owner), so a
       stray pointer into the region is told apart without a fault */
    char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED && parts > 1) {
        /* 3 GiB refused (an address-space limit: ulimit -v): the 16-byte
           slots' part alone, as without RINGPOOL_HEADERLESS=64; blocks of
           17 to 64 bytes get a header (pools made from now on: hl_classes;
           those made before, at their first such block: rpi_hl_refill) */
        parts = 1;
        region = RPI_HL_PART;
        len = region + RPI_HL_CHUNK;
        m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) __atomic_store_n(&hl_mode, 1, __ATOMIC_RELAXED);
    }
    if (m == MAP_FAILED) return false;
    uintptr_t b = ((uintptr_t)m + RPI_HL_CHUNK - 1) & ~(uintptr_t)(RPI_HL_CHUNK - 1);
    if (b > (uintptr_t)m) munmap(m, b - (uintptr_t)m);
    size_t tail = (size_t)((uintptr_t)m + len - (b + region));
    if (tail) munmap((char *)b + region, tail);
    /* a hook for tests only (tests/c/test_arena_layout.c): pools get no
       more than the first $RINGPOOL_TEST_HL_CHUNKS chunks of each part, so
       its exhaustion comes after a few thousand blocks */
    size_t part_len = RPI_HL_PART;
    const char *t = getenv("RINGPOOL_TEST_HL_CHUNKS");
    if (t && *t) {
        unsigned long n = strtoul(t, NULL, 10);
        if (n < RPI_HL_PART / RPI_HL_CHUNK) part_len = n * RPI_HL_CHUNK;
    }
    for (unsigned i = 0; i < parts; i++) {
        hl_parts[i].top = (char *)b + i * RPI_HL_PART;
        hl_parts[i].lim = hl_parts[i].top + part_len;
    }
    __atomic_store_n(&rpi_hl_base, b, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl_span, (uintptr_t)region, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl1_span, (uintptr_t)RPI_HL_PART, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl2_span, (uintptr_t)(parts > 1 ? 2 : 1) * RPI_HL_PART,
                     __ATOMIC_RELAXED);
    hl_state = 1;
    slow_set();
    return true;
}

/* cache_lock held, at unload (rpi_chunk_cache_fini): the region goes when
   no pool has a chunk of it (every chunk taken is a spare), as the checked
   registry's carved memory does; else it stays, with the blocks in it.
   Without this a library loaded and unloaded again and again (a plugin)
   left 1 GiB (3 GiB) of address space reserved per load. A pool made
   later reserves a region anew. */
static void hl_fini(void)
{
    if (hl_state <= 0) return;
    size_t taken = 0, spare = 0;
    for (unsigned i = 0; i < RPI_HL_PARTS; i++) {
        if (!hl_parts[i].top) continue;
        taken += (size_t)(hl_parts[i].top - ((char *)rpi_hl_base + i * RPI_HL_PART)) / RPI_HL_CHUNK;
        for (rpi_hlchunk *c = hl_parts[i].spares; c; c = c->next) spare++;
    }
    if (spare != taken) return;
    rpi_asan_unpoison((void *)rpi_hl_base, rpi_hl_span);   /* for the next mapping there */
    munmap((void *)rpi_hl_base, rpi_hl_span);
    memset(hl_parts, 0, sizeof hl_parts);
    hl_spare_bytes = 0;
    __atomic_store_n(&rpi_hl_span, (uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl1_span, (uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl2_span, (uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&rpi_hl_base, (uintptr_t)0, __ATOMIC_RELAXED);
    hl_state = 0;
    slow_set();
}

/* log2 of the slot's bytes by class (1: 1-16, 2: 17-32, 3: 33-48, 4: 49-64
   bytes) */
static const uint8_t hl_shift[RPI_HL_CLASSES + 1] = { 0, 4, 5, 6, 6 };

static rpi_hlchunk *hl_chunk_new(rp_pool *pool, size_t cls)
{
    rpi_hlchunk *c = NULL;
    bool fresh = false;
    unsigned part = hl_part(cls);
    /* fault injection (rp_debug_fail_after) counts every chunk a pool
       takes, a spare or a fresh commit, as an underlying allocation: a
       failure here is what a commit refused or a full part give */
    if (rpi_sys_fail()) return NULL;
    rpi_lock_acquire(&cache_lock);
    if (hl_reserve()) {
        if (hl_parts[part].spares) {
            c = hl_parts[part].spares;
            hl_parts[part].spares = c->next;
            /* a spare given back to the system (hl_release's madvise) reads
               0 but its link, and was not counted */
            if (c->slot) hl_spare_bytes -= RPI_HL_CHUNK;
        } else if (hl_parts[part].top < hl_parts[part].lim &&
                   mprotect(hl_parts[part].top, RPI_HL_CHUNK, PROT_READ | PROT_WRITE) == 0) {
            c = (rpi_hlchunk *)hl_parts[part].top;
            hl_parts[part].top += RPI_HL_CHUNK;
            fresh = true;
        }
    }
    rpi_lock_release(&cache_lock);
    if (!c) return NULL;
    c->next = NULL;
    c->cls = (uint32_t)cls;
    c->shift = hl_shift[cls];
    c->slot = 1u << c->shift;
    /* as many slots as fit with their words after the header, ending at
       the chunk's end (RPI_HL_SLOTS_S, RPI_HL_FIRST_S: rp_free's constants) */
    c->count = RPI_HL_SLOTS_S(c->shift);
    c->first = RPI_HL_FIRST_S(c->shift);
    c->list = &pool->arena->free[cls];
    if (!fresh) memset(c->meta, 0, c->count * 4);   /* no stale slot looks live */
    rpi_asan_poison((char *)c + c->first, RPI_HL_CHUNK - c->first);   /* uncarved (asan.h) */
    atomic_store_explicit(&c->owner, rpi_hl_own_of(pool), memory_order_relaxed);
    return c;
}

rp_pool *rpi_hl_owner(const void *p, const char **why)
{
    rp_pool *pool = rpi_hl_pool_of(p);
    if (pool) return pool;
    size_t off = (size_t)((uintptr_t)p & (RPI_HL_CHUNK - 1));
    if (!(rpi_hl_own(p) & ~RPI_HL_OWN_KIND))
        *why = "is not a block (no pool's memory)";
    else if (off < rpi_hl_chunk(p)->first) *why = "is not a block (a chunk's header)";
    else *why = "points inside a block, not at its start";
    return NULL;
}

bool rpi_hl_tag_index(rp_pool *pool, rpi_tag *t)
{
    rpi_arena *a = pool->arena;
    if (a->hl_ntags == 0) a->hl_ntags = 1;   /* index 0: none */
    if (a->hl_ntags >= RPI_HL_TAGS_MAX) return false;
    if (a->hl_ntags >= a->hl_tcap) {
        uint32_t cap = a->hl_tcap ? 2 * a->hl_tcap : 16;
        rpi_tag **n = rpi_sys_realloc(pool->hl_tags, (size_t)cap * sizeof *n);
        if (!n) return false;
        pool->hl_tags = n;
        a->hl_tcap = cap;
    }
    pool->hl_tags[a->hl_ntags] = t;
    t->hl_word = a->hl_ntags++ << RPI_HL_TAG_SHIFT | RPI_HL_PLAIN;
    return true;
}

void *rpi_hl_refill(rp_pool *pool, rpi_tag *t, size_t cls)
{
    rpi_arena *a = pool->arena;
    /* (a checked pool, off 0, has none) */
    if (!a->off || (!t->hl_word && !rpi_hl_tag_index(pool, t))) return NULL;
    void *h = a->free[cls];
    uint32_t *mp;
    /* a free slot, and the current chunk's rest, serve also once the pool
       can have no new chunk of the class (hl_no), as on the fast path: the
       block with a header the caller makes instead may need memory the
       system refuses */
    if (rpi_hl_is_enc(h)) return rpi_hl_pop(a, cls, h, &mp);
    /* a block with a header on top of the class's list: the caller's
       general path takes it (rpi_arena_alloc), so that the free slots below
       it are reached next, not left behind while new ones are carved */
    if (h) return NULL;
    if (a->hl[cls].cur >= a->hl[cls].end) {
        if (a->hl_no & (1u << cls)) return NULL;   /* no chunk to be had, until a reset */
        rpi_hlchunk *c = hl_chunk_new(pool, cls);
        if (!c) {
            if (cls > hl_classes()) {
                /* its part of the region is not reserved (hl_reserve got
                   the 16-byte slots' alone): the pool's blocks of 17 to 64
                   bytes get a header from now on (it has no slot of
                   theirs), its 16-byte slots go on */
                a->hl_cmax = hl_classes();
                return NULL;
            }
            /* the part of the region of this slot size used up, or a
               commit refused: compact blocks for the classes of that part
               from now on (until a reset: rpi_arena_release); the other
               slot sizes have parts of their own and go on taking chunks */
            a->hl_no |= hl_part_classes(cls);
            return NULL;
        }
        c->next = a->hl_chunks;
        a->hl_chunks = c;
        pool->reserved += RPI_HL_CHUNK;
        a->hl[cls].cur = (char *)c + c->first;
        a->hl[cls].end = (char *)c + RPI_HL_CHUNK;
        a->hl[cls].mcur = c->meta;
        a->hl[cls].step = c->slot;
    }
    return rpi_hl_carve(a, cls, &mp);
}

void *rpi_hl_next_live(rpi_arena *a, rpi_hlslots *it)
{
    if (!it->started) {
        it->started = true;
        it->c = a->hl_chunks;
        it->p = it->c ? (char *)it->c + it->c->first : NULL;
    } else if (it->c) {
        it->p += it->c->slot;
    }
    while (it->c) {
        /* the current chunk of its class is carved up to hl[cls].cur, the
           others fully */
        uint32_t slot = it->c->slot;
        char *lim = (char *)it->c + RPI_HL_CHUNK;
        if (a->hl[it->c->cls].end == lim) lim = a->hl[it->c->cls].cur;
        for (; it->p < lim; it->p += slot)
            if (*rpi_hl_meta(it->p) & RPI_HL_SIZE) return it->p;
        it->c = it->c->next;
        it->p = it->c ? (char *)it->c + it->c->first : NULL;
    }
    return NULL;
}

/* destroy/reset: a pool's headerless chunks go to the region's spares. */
static void hl_release(rp_pool *pool, rpi_arena *a)
{
    /* (the free slots' lists, rpi_arena.free, are cleared by the caller) */
    memset(a->hl, 0, sizeof a->hl);
    if (!a->hl_chunks) return;
    rpi_lock_acquire(&cache_lock);
    for (rpi_hlchunk *c = a->hl_chunks, *n; c; c = n) {
        n = c->next;
        atomic_store_explicit(&c->owner, RPI_HL_OWN_NONE, memory_order_relaxed);
        pool->reserved -= RPI_HL_CHUNK;
        /* up to HL_SPARES_KEPT bytes of spares stay resident; beyond it the
           pages go back to the system (a later use faults them in again) */
        unsigned part = hl_part(c->cls);   /* (before madvise clears it) */
        if (hl_spare_bytes >= HL_SPARES_KEPT)
            (void)madvise(c, RPI_HL_CHUNK, MADV_DONTNEED);
        else
            hl_spare_bytes += RPI_HL_CHUNK;
        c->next = hl_parts[part].spares;
        hl_parts[part].spares = c;
    }
    rpi_lock_release(&cache_lock);
    a->hl_chunks = NULL;
}
