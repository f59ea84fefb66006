/*
 * internal.h -- cross-file internals of libringpool (prefix rpi_, hidden).
 *
 * The block header and the ring
 * -----------------------------
 * Every block is laid out as [rpi_hdr][payload]; the header sits immediately
 * before the payload, so rp_free(p) finds it at p - sizeof(rpi_hdr) and the
 * pool through hdr->origin->pool. The header is 32 bytes on LP64 and a
 * multiple of alignof(max_align_t), so a 16-aligned allocation gives a
 * 16-aligned payload (checked below at compile time).
 *
 * Small arena blocks of unchecked pools use only the last two fields of
 * the header (RPI_AHDR, below) and are not on the ring: walks find them in
 * their chunks. Blocks of 1 to 16 bytes there have no header at all (see
 * "Headerless blocks" below): rp_free and the others recognise them by
 * their address before reading anything. Blocks of checked pools are not
 * on the ring either: their pool's records in the registry (checked.c) are
 * their list, and their header's link words hold a guard. Everything else
 * is on the ring:
 *
 * Each pool owns a sentinel header (pool->ring). Live blocks form a circular,
 * doubly linked list through prev/next that starts and ends at the sentinel:
 * an empty pool has ring.next == ring.prev == &ring. Insertion is at the tail
 * (first-allocated blocks are visited first), unlink is O(1), and a walk from
 * the sentinel visits each outstanding block exactly once. The sentinel's
 * origin is NULL, which is how a walk recognises it.
 *
 * hdr->word holds the requested size in its low 48 bits and flags above:
 *   ARENA    carved from an arena chunk (size class in bits 52..58);
 *   BIG      own allocation, preceded by an rpi_big record (arena pools);
 *   ALIGNED  payload offset for alignment: raw pointer kept before the header;
 *   DTOR     has a destructor record in pool->dtors;
 *   CHECKED  belongs to a checked pool: the registry (checked.c) holds the truth;
 *   SAMPLED  (bit 51) tracked by the running or a stopped sampling profile;
 *   STACK    (bit 50) its allocation stack is in pool->stacks (poolstack.h).
 * bits 52..58 hold log2 of the alignment of aligned and big blocks, or the
 * size class of arena blocks.
 *
 * Counters: every tag record keeps bytes/peak/allocs/frees (its live blocks:
 * allocs - frees, rpi_tag_blocks) and the pool keeps the same totals, all
 * updated under the pool lock on each alloc, resize and free, so statistics
 * are O(tags) and never walk the ring.
 */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#include "ringpool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RPI_HIDDEN __attribute__((visibility("hidden")))
#include "lock.h"
#include "asan.h"
#define RPI_LIKELY(x)   __builtin_expect(!!(x), 1)
#define RPI_UNLIKELY(x) __builtin_expect(!!(x), 0)

_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8,
               "ringpool supports 64-bit targets only");

typedef struct rpi_tag rpi_tag;

typedef struct rpi_hdr {
    struct rpi_hdr *prev;   /* ring links; sentinel lives in the pool */
    struct rpi_hdr *next;
    union {
        rpi_tag        *origin; /* tag record: name, counters, pool */
        struct rpi_hdr *link;   /* a free compact arena slot: its class list */
    };
    uint64_t        word;   /* size (low 48 bits) | flags */
} rpi_hdr;

#define RPI_HDR sizeof(rpi_hdr)
_Static_assert(sizeof(rpi_hdr) == 32, "header is 32 bytes on 64-bit targets");
_Static_assert(sizeof(rpi_hdr) % _Alignof(max_align_t) == 0,
               "header keeps payloads aligned to max_align_t");

#define RPI_SIZE_MASK   ((UINT64_C(1) << 48) - 1)
#define RPI_F_ARENA     (UINT64_C(1) << 63)
#define RPI_F_BIG       (UINT64_C(1) << 62)
#define RPI_F_ALIGNED   (UINT64_C(1) << 61)
#define RPI_F_DTOR      (UINT64_C(1) << 60)
#define RPI_F_CHECKED   (UINT64_C(1) << 59)
#define RPI_F_SAMPLED   (UINT64_C(1) << 51)  /* tracked by the sampler (memprof.c) */
/* Bits 48..51 belong to other subsystems (the sampler) that may set them
   after an allocation: checked mode does not compare them. */
#define RPI_WORD_FREE_BITS (UINT64_C(15) << 48)
#define RPI_ALIGN_SHIFT 52   /* aligned and big blocks: log2 of the alignment */
#define RPI_ALIGN_MASK  (UINT64_C(63) << RPI_ALIGN_SHIFT)
#define RPI_CLASS_SHIFT 52   /* arena blocks: size class (the same bits) */
#define RPI_CLASS_MASK  (UINT64_C(127) << RPI_CLASS_SHIFT)

/* Small arena blocks of unchecked pools have a compact header: the last
   two fields {origin, word}, RPI_AHDR bytes. Their rpi_hdr still starts 32
   bytes before the payload, so h->origin and h->word are where they are for
   every block, but h->prev and h->next are the previous slot's last bytes:
   never read or written. Such blocks are not on the ring; walks go by the
   arena's chunks. A slot starts RPI_AOFF bytes after its rpi_hdr. */
#define RPI_AHDR 16u
#define RPI_AOFF (RPI_HDR - RPI_AHDR)
/* Whether the block is on its pool's ring: not a compact arena block, not
   a checked block (its record is on its pool's list of live records). */
static inline bool rpi_on_ring(uint64_t w)
{
    return !(w & (RPI_F_ARENA | RPI_F_CHECKED));
}
/* A free compact slot of an unsynchronised pool keeps its word's
   RPI_F_ARENA and class and has all ones in the low 32 bits, which no live
   block's size has (arena blocks are below RPI_BIG_LIMIT): its fast path's
   list hit then writes only the low 32 bits (the size). Other arenas
   (thread-safe pools', checked pools') clear RPI_F_ARENA instead, as
   before: their fast paths' counts are the checked pairs' yardstick (2x).
   Live, either way: rpi_slot_live. */
#define RPI_SLOT_FREE_LO UINT32_C(0xffffffff)
static inline bool rpi_slot_live(uint64_t w)
{
    return (w & RPI_F_ARENA) && (uint32_t)w != RPI_SLOT_FREE_LO;
}
/* The low 32 bits of a header word alone (a 4-byte store; the high half
   kept). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "a word's low half comes first");
static inline void rpi_word_lo_set(uint64_t *word, uint32_t lo)
{
    memcpy(word, &lo, sizeof lo);   /* little-endian: the low half first */
}
static inline rpi_hdr *rpi_hdr_of(const void *p) { return (rpi_hdr *)((char *)p - RPI_HDR); }
static inline void *rpi_payload(rpi_hdr *h) { return (char *)h + RPI_HDR; }
static inline size_t rpi_size(const rpi_hdr *h) { return (size_t)(h->word & RPI_SIZE_MASK); }

/* ---- lock.c: rpi_lock (lock.h) */
/* Underlying allocations, all through these so fault injection sees them. */
RPI_HIDDEN extern atomic_int rpi_fail_armed;
RPI_HIDDEN bool rpi_fail_now(void);
/* True when fault injection fails this underlying allocation: malloc's,
   calloc's and realloc's, and memory not had from malloc (the arena's
   headerless region: its reservation and each chunk's commit). */
static inline bool rpi_sys_fail(void)
{
    return RPI_UNLIKELY(atomic_load_explicit(&rpi_fail_armed, memory_order_relaxed)) && rpi_fail_now();
}
static inline void *rpi_sys_malloc(size_t n)
{
    if (rpi_sys_fail())
        return NULL;
    return malloc(n);
}
RPI_HIDDEN void *rpi_sys_calloc(size_t n, size_t size);
static inline void *rpi_sys_realloc(void *p, size_t n)
{
    if (rpi_sys_fail())
        return NULL;
    return realloc(p, n);
}
static inline void rpi_sys_free(void *p)
{
    free(p);
}

/* Error reporting: calls the installed handler (default prints and aborts). */
RPI_HIDDEN void rpi_report_error(int error, const void *block, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* OOM: calls the OOM handler, then aborts if it returns. */
RPI_HIDDEN _Noreturn void rpi_oom(const char *call, size_t size, const char *tag);

/* A small pointer-keyed hash map (open addressing, linear probing). */
typedef struct rpi_ptrmap {
    void  **keys;
    void  **vals;
    size_t  cap;    /* power of two, or 0 */
    size_t  count;
} rpi_ptrmap;
RPI_HIDDEN void  *rpi_ptrmap_get(const rpi_ptrmap *m, const void *key);
RPI_HIDDEN int    rpi_ptrmap_put(rpi_ptrmap *m, void *key, void *val); /* 0 or RP_ENOMEM */
RPI_HIDDEN int    rpi_ptrmap_reserve(rpi_ptrmap *m, size_t extra);      /* 0 or RP_ENOMEM */
RPI_HIDDEN void  *rpi_ptrmap_del(rpi_ptrmap *m, const void *key);
RPI_HIDDEN void   rpi_ptrmap_free(rpi_ptrmap *m);

/* ---- pool.c */
struct rpi_tag {
    const char *name;       /* never NULL */
    rp_pool    *pool;
    size_t      room, peak; /* bytes = peak - room (rpi_tag_bytes): an
                               allocation subtracts from room alone while
                               it stays >= 0 (rpi_room_grow) */
    uint64_t    allocs;     /* allocations, cumulative */
    uint64_t    frees;      /* blocks gone (freed, or dropped by a reset):
                               live blocks = allocs - frees (rpi_tag_blocks),
                               so an allocation counts one field, not two */
    rpi_tag    *hnext;      /* hash chain */
    rpi_tag    *lnext;      /* first-use order */
    uint32_t    hash;
    bool        owned;      /* name is a pool-owned copy */
    /* sharded pools (shard.c), valid during a fold only: the record whose
       entry this one's counters go to, and a master's folded counters */
    rpi_tag    *master;
    size_t      f_blocks, f_bytes, f_peak;
    uint64_t    f_allocs;
    uint32_t    hl_word;    /* a headerless block's slot word but its size:
                               the index in the pool's table of tags
                               (rp_pool.hl_tags) << RPI_HL_TAG_SHIFT |
                               RPI_HL_PLAIN; 0 for no index (yet) */
};

typedef struct rpi_cleanup {
    rp_cleanup_fn       fn;
    void               *arg;
    struct rpi_cleanup *next;
} rpi_cleanup;

typedef struct rpi_dtor {
    void            *block;
    rp_destructor_fn fn;
    uint64_t         seq;           /* registration order across a pool's shards */
    struct rpi_dtor *prev, *next;   /* registration order */
} rpi_dtor;

typedef struct rpi_big {            /* before the header of a big arena block */
    void           *raw;
    struct rpi_big *prev, *next;
    void           *pad;
} rpi_big;
_Static_assert(sizeof(rpi_big) % _Alignof(max_align_t) == 0, "big record keeps alignment");

#define RPI_NCLASSES 84
#define RPI_HL_CLASSES 4u   /* headerless slots of 16, 32, 48, 64 bytes (below) */
typedef struct rpi_chunk {
    struct rpi_chunk *next;
    size_t            size;
    char             *used;   /* end of the carved slots once no longer current
                                 (as an rpi_hdr address, like rpi_arena's cur) */
    void             *pad;
} rpi_chunk;
_Static_assert(sizeof(rpi_chunk) % _Alignof(max_align_t) == 0, "chunk header keeps alignment");

typedef struct rpi_arena {
    void      *free[RPI_NCLASSES];  /* per class free lists (compact blocks by
                                       their payload, rpi_list_ent; link in the header;
                                       classes 1 to hl_cmax also hold free
                                       headerless slots: rpi_hl_enc) */
    /* by class: a new compact block's header word but its size
       (RPI_F_ARENA | class << RPI_CLASS_SHIFT, | RPI_F_CHECKED in a
       checked pool: one load where the shift and bit set took two
       instructions), and the bytes a carve takes
       (rpi_carve_bytes: here, no address of a table of its own to form) */
    uint64_t   hword[RPI_NCLASSES];
    uint32_t   carve[RPI_NCLASSES];
    uint32_t   cbytes[RPI_NCLASSES];  /* rpi_class_bytes, for the resize paths */
    /* the class of a compact block past 1 KiB with its header, by (its
       total - 1) >> 8 (rpi_arena_class_a: one load where rpi_class_of's
       bsr and shifts took eight instructions; the classes there are 256
       bytes apart or more) */
    uint8_t    bigcls[128];          /* RPI_BIG_LIMIT >> 8 */
    char      *cur, *end;           /* bump region of the current chunk, as rpi_hdr
                                       addresses (a slot starts off bytes later) */
    rpi_chunk *chunks;              /* in use */
    rpi_chunk *spare;               /* kept by reset, not yet in use */
    rpi_big    bigs;                /* sentinel of big blocks */
    size_t     chunk_size;
    size_t     keep_bytes;
    size_t     nchunks;
    size_t     off;                 /* a slot starts off bytes after its rpi_hdr:
                                       RPI_AOFF (compact), 0 in checked pools */
    /* headerless blocks (below): by class, the current chunk's carved end
       and the end of its slots; the chunks, the size of the tag table (the
       table is the pool's: rp_pool.hl_tags; the free slots are on free[]) */
    struct {
        char     *cur, *end;    /* carved end, end of the slots */
        uint32_t *mcur;         /* the slot word of cur */
        size_t    step;         /* the slot's bytes */
    } hl[RPI_HL_CLASSES + 1];   /* by class (1 to 4: 16 * class bytes at
                                   most; [0] stays empty) */
    struct rpi_hlchunk *hl_chunks;
    size_t      hl_cmax;            /* classes 1 to hl_cmax have headerless
                                       slots: 1 (up to 16 bytes) or
                                       RPI_HL_CLASSES (up to RPI_HL_MAX;
                                       RINGPOOL_HEADERLESS=64) */
    uint32_t    hl_ntags, hl_tcap;
    uint8_t     hl_no;              /* by class, bit 1 << class: no new
                                       chunk of its headerless slots; all
                                       bits in a checked pool (none at all),
                                       else the classes of a part of the
                                       region (a slot size: rpi_hl_refill)
                                       of which none could be had (until a
                                       reset; its free slots and current
                                       chunks still serve) */
    uint8_t     big_zero;           /* RPI_BIG_ZERO_*: an unsynchronised pool's
                                       rp_calloc of a big block (calloc_impl) */
} rpi_arena;
/* rpi_arena.big_zero: 0, or WANTED (big_alloc takes the block from the
   system's calloc, and then sets DONE: the block is zero) */
#define RPI_BIG_ZERO_WANTED 1u
#define RPI_BIG_ZERO_DONE   2u

/* Headerless blocks. Unchecked arena pools give requests of 1 to 16 bytes
   (or, with RINGPOOL_HEADERLESS=64 in the environment, of 1 to RPI_HL_MAX
   bytes: rpi_arena.hl_cmax) a slot with no header, in classes by the
   request rounded up to 16 (1-16, 17-32, 33-48, 49-64 bytes) whose slots
   are 16, 32, 64 and 64 bytes (powers of two: a slot's word is found by a
   shift),
   in chunks of RPI_HL_CHUNK bytes (aligned to their size) carved from one
   reserved region of the address space, a part of it per slot size
   (RPI_HL_PART, below); a chunk holds slots of one class (rpi_hlchunk: its
   class, slot size, first slot's offset). A pointer is
   one of them when it lies in the region: one range test (rpi_hl_in), which
   rp_free and rp_resize make together with the test for a checked pool
   (rpi_slow_in). The chunk (the pointer with its low bits cleared) starts
   with its owner word (the owning pool with its kind in the low bits,
   RPI_HL_OWN_*; RPI_HL_OWN_NONE once no pool has it, 0 before any had it),
   its geometry, and a 32-bit word per slot:
   bits 0..6 the size (0: a free slot), bit 7 a destructor, bit 8
   RPI_HL_PLAIN (live without a destructor: all rp_free's fast path tests),
   bits 9..31 the slot's tag as an index into the arena's table
   (rp_pool.hl_tags). The region is reserved readable (PROT_READ, pages
   not committed read as zero: no owner), so any pointer into it can be
   checked; chunks are made writable as pools take them. When a part of the
   region is used up, requests of its slot size get compact-header blocks
   as before (rpi_arena.hl_no; the other sizes' parts still serve), and so
   do all of them with RINGPOOL_HEADERLESS=0. */
#define RPI_HL_MAX        64u
#define RPI_HL_CHUNK_LOG2 16
#define RPI_HL_CHUNK      ((size_t)1 << RPI_HL_CHUNK_LOG2)
#define RPI_HL_HDR        64u     /* the chunk's header: its slot words follow */
#define RPI_HL_SIZE       127u
#define RPI_HL_DTOR       128u
#define RPI_HL_PLAIN      256u
#define RPI_HL_TAG_SHIFT  9
#define RPI_HL_TAGS_MAX   (UINT32_C(1) << 23)
_Static_assert(RPI_HL_MAX <= RPI_HL_SIZE && RPI_HL_MAX == 16u * RPI_HL_CLASSES, "classes");
/* The low bits of a chunk's owner word: the pool's kind. An unsynchronised
   pool's is 0, so its word is the pool itself; a chunk never taken reads 0
   too (a pool NULL), but all its slot words are 0 (no live slot). */
#define RPI_HL_OWN_UNSYNC ((uintptr_t)0)   /* an unsynchronised pool */
#define RPI_HL_OWN_LOCKED ((uintptr_t)1)   /* a thread-safe pool without bias */
#define RPI_HL_OWN_BIASED ((uintptr_t)2)   /* a biased pool (shard.c) */
#define RPI_HL_OWN_NONE   ((uintptr_t)3)   /* given back: no pool has it */
#define RPI_HL_OWN_KIND   ((uintptr_t)3)
typedef struct rpi_hlchunk {
    _Atomic(uintptr_t)  owner;      /* pool | RPI_HL_OWN_* (above) */
    struct rpi_hlchunk *next;       /* the pool's chunks, or the region's spares */
    /* k = an offset in the chunk - first starts a slot when k rotated
       right by shift is below count (k a multiple of the slot: its low
       bits rotate in as 0, else the result is huge; k below the chunk's
       end: the slots end there); the result is the slot's index. A chunk
       never taken (or given back to the system) reads 0 throughout:
       count 0, nothing passes. */
    uintptr_t           count;      /* slots it holds: word i is slot i's */
    uintptr_t           first;      /* the first slot's offset */
    void              **list;       /* its class's list in its pool's
                                       arena: &free[cls] (while it has one) */
    uint32_t            shift;      /* log2 of the slot's bytes */
    uint32_t            slot;       /* the slot's bytes */
    uint32_t            cls;        /* its class, 1 to RPI_HL_CLASSES */
    char                pad[12];
    uint32_t            meta[];
} rpi_hlchunk;
_Static_assert(sizeof(rpi_hlchunk) == RPI_HL_HDR, "slot words after the header");
/* The region is cut in parts of RPI_HL_PART bytes, one per slot size: the
   16-byte slots' chunks in the first (the only one reserved unless
   RINGPOOL_HEADERLESS=64), the 32-byte slots' in the second, the 64-byte
   slots' (classes 3 and 4) in the third. A chunk's geometry is then known
   from its address alone: rp_free tests which part a pointer lies in
   (rpi_hl1_span, rpi_hl2_span, rpi_hl_span) and uses the part's constants,
   not the chunk's words: as many slots of 2^shift bytes as fit with their
   words after the header, ending at the chunk's end (hl_chunk_new's), the
   slot word at offset / 2^(shift - 2) plus a constant. */
#define RPI_HL_PART       ((size_t)1 << 30)
#define RPI_HL_PARTS      3u
#define RPI_HL_SLOTS_S(s) ((RPI_HL_CHUNK - RPI_HL_HDR) / ((1u << (s)) + 4u))
#define RPI_HL_FIRST_S(s) (RPI_HL_CHUNK - (1u << (s)) * RPI_HL_SLOTS_S(s))
_Static_assert(RPI_HL_FIRST_S(4) % 16 == 0 && RPI_HL_FIRST_S(5) % 32 == 0 &&
               RPI_HL_FIRST_S(6) % 64 == 0, "slot words by offset / (slot / 4)");
/* The region (base and span 0 until it is reserved) and rp_free's and
   rp_resize's one test: p - rpi_hl_base <= rpi_slow_lim, true in the
   region (rpi_slow_lim = its span - 1; 0 before it is reserved, and only
   NULL, which the callers leave out, passes), or everywhere while a checked
   pool exists (UINTPTR_MAX); rp_free hands the difference on (rpi_slow_d).
   Written with atomic stores under the chunk cache's lock, read with plain
   loads on the fast paths (one instruction each, folded into the compare),
   atomically in TSan builds. */
RPI_HIDDEN extern uintptr_t rpi_hl_base, rpi_hl_span, rpi_slow_lim;
/* The ends of the parts of the 16-byte and 32-byte slots (as offsets from
   rpi_hl_base, like rpi_hl_span, the end of the last part reserved): 0
   until the region is reserved; without RINGPOOL_HEADERLESS=64 all three
   are RPI_HL_PART. */
RPI_HIDDEN extern uintptr_t rpi_hl1_span, rpi_hl2_span;
RPI_HIDDEN void rpi_slow_sync(void);   /* after each change of rpi_checked_gate */
#if defined(__SANITIZE_THREAD__)
#define RPI_HL_READ(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
#else
#define RPI_HL_READ(v) (v)
#endif
static inline bool rpi_hl_in(const void *p)
{
    return (uintptr_t)p - RPI_HL_READ(rpi_hl_base) < RPI_HL_READ(rpi_hl_span);
}
static inline uintptr_t rpi_slow_d(const void *p)
{
    return (uintptr_t)p - RPI_HL_READ(rpi_hl_base);
}
static inline bool rpi_slow_in_d(uintptr_t d) { return d <= RPI_HL_READ(rpi_slow_lim); }
static inline bool rpi_slow_in(const void *p) { return rpi_slow_in_d(rpi_slow_d(p)); }
static inline rpi_hlchunk *rpi_hl_chunk(const void *p)
{
    return (rpi_hlchunk *)((uintptr_t)p & ~(uintptr_t)(RPI_HL_CHUNK - 1));
}
/* The slot word of the slot at offset first + k of chunk c. */
static inline uint32_t *rpi_hl_meta_k(rpi_hlchunk *c, uintptr_t k)
{
    return c->meta + (k >> c->shift);
}
/* The slot word of p (a slot's start in a chunk taken). */
static inline uint32_t *rpi_hl_meta(const void *p)
{
    rpi_hlchunk *c = rpi_hl_chunk(p);
    return rpi_hl_meta_k(c, ((uintptr_t)p & (RPI_HL_CHUNK - 1)) - c->first);
}
/* k = the offset of p in chunk c minus c->first (k wraps below the first
   slot): p's slot index when below c->count (p starts a slot), else not a
   slot (rpi_hlchunk.count). One rotation: (k >> shift) with k's low bits
   moved to the top. */
static inline uintptr_t rpi_hl_index(const rpi_hlchunk *c, uintptr_t k)
{
    unsigned s = c->shift;
    return (k >> s) | (k << (-s & 63u));
}
static inline bool rpi_hl_slot_ok(const rpi_hlchunk *c, uintptr_t k)
{
    return rpi_hl_index(c, k) < c->count;
}
/* The bytes of the slots of the chunk of p (a slot's start). */
static inline uint32_t rpi_hl_slot_bytes(const void *p) { return rpi_hl_chunk(p)->slot; }
/* A free slot is on its class's list in its pool's arena
   (rpi_arena.free[class]), which it shares with the class's blocks with a
   header (made when no slot could be had): a slot is there as its address
   inverted (rpi_hl_enc, a negative value: addresses are below 2^63), a
   block with a header as itself, so the sign of the head (or of the link
   that leads to it) tells which it is, in the test for NULL the list has
   anyway. A free slot holds the link to the next (as the head would hold
   it) and the address of its own slot word, which the allocation then need
   not compute. */
static inline void *rpi_hl_enc(void *p) { return (void *)~(uintptr_t)p; }
static inline char *rpi_hl_dec(void *h) { return (char *)~(uintptr_t)h; }
static inline bool rpi_hl_is_enc(const void *h) { return (intptr_t)h < 0; }
/* A list head (rpi_arena.free[]) that is a block with a header (not NULL,
   not a headerless slot). */
static inline bool rpi_list_hdr(const void *h) { return (intptr_t)h > 0; }
/* A compact block (an unchecked pool's arena: rpi_arena.off RPI_AOFF) is on
   its class's list as its payload's address, the link (the next entry, as
   the head holds it) in its header's origin field: rp_free pushes the
   pointer it was given and rp_alloc returns the one it pops, with no
   header arithmetic either way. A checked pool's arena (off 0) lists
   headers, linked through next. */
static inline void *rpi_list_ent(rpi_hdr *h) { return rpi_payload(h); }
static inline rpi_hdr *rpi_list_blk(void *e) { return rpi_hdr_of(e); }
static inline void *rpi_hl_link(void *p) { return ((void **)p)[0]; }
static inline uint32_t *rpi_hl_link_word(void *p) { return ((uint32_t **)p)[1]; }
static inline void rpi_hl_link_put(void *p, void *next, uint32_t *mp)
{
    ((void **)p)[0] = next;
    ((uint32_t **)p)[1] = mp;
}
/* The next slot of class k carved from the current chunk of its class (the
   caller has checked cur < end); *mp set to its slot word. */
static inline char *rpi_hl_carve(rpi_arena *a, size_t k, uint32_t **mp)
{
    char *p = a->hl[k].cur;
    a->hl[k].cur = p + a->hl[k].step;
    *mp = a->hl[k].mcur++;
    return p;
}
/* The free slot at the head h of class k's list (rpi_hl_is_enc(h)) taken
   off it; *mp set to its slot word (hl_put left its address there). */
static inline char *rpi_hl_pop(rpi_arena *a, size_t k, void *h, uint32_t **mp)
{
    char *p = rpi_hl_dec(h);
    rpi_asan_unpoison(p, 2 * sizeof(void *));   /* a free slot is poisoned (hl_put_at) */
    a->free[k] = rpi_hl_link(p);
    *mp = rpi_hl_link_word(p);
    return p;
}
/* p in the region and a slot's start: its chunk's owner word. */
static inline uintptr_t rpi_hl_own(const void *p)
{
    return atomic_load_explicit(&rpi_hl_chunk(p)->owner, memory_order_relaxed);
}
/* p in the region: p's pool if p is the start of a slot of a chunk in use,
   else NULL. No lock needed: a chunk changes owner only when its pool is
   reset or destroyed. */
static inline rp_pool *rpi_hl_pool_of(const void *p)
{
    const rpi_hlchunk *c = rpi_hl_chunk(p);
    uintptr_t k = ((uintptr_t)p & (RPI_HL_CHUNK - 1)) - c->first;
    if (!rpi_hl_slot_ok(c, k)) return NULL;
    return (rp_pool *)(rpi_hl_own(p) & ~RPI_HL_OWN_KIND);
}
/* p in the region: its pool (rpi_hl_pool_of; p the start of a slot of its
   chunk's class), else NULL and *why says what p is. */
RPI_HIDDEN rp_pool *rpi_hl_owner(const void *p, const char **why);
/* Gives t its index in a's table of tags (t->hl_word); false when it cannot
   (no memory, or the table full: indexes 1 to RPI_HL_TAGS_MAX - 1, the
   8,388,607 a slot word's 23 bits hold). */
RPI_HIDDEN bool rpi_hl_tag_index(rp_pool *pool, rpi_tag *t);
/* Lock held: a slot of class cls (1 to RPI_HL_CLASSES: blocks of up to 16 *
   cls bytes) for a block of t (t->hl_word given if needed), NULL when none
   can be had or a block with a header is on top of the class's list (the
   caller makes a compact block: rpi_arena_alloc takes that one). */
RPI_HIDDEN void *rpi_hl_refill(rp_pool *pool, rpi_tag *t, size_t cls);
/* The live headerless blocks of an arena, chunk by chunk (lock held at each
   call, which may be dropped between calls, as for rpi_arena_next_live). */
typedef struct rpi_hlslots { rpi_hlchunk *c; char *p; bool started; } rpi_hlslots;
RPI_HIDDEN void *rpi_hl_next_live(rpi_arena *a, rpi_hlslots *it);
static inline size_t rpi_big_total(size_t align, size_t size)  /* align >= 16 */
{
    return sizeof(rpi_big) + sizeof(rpi_hdr) + (align - _Alignof(max_align_t)) + size;
}
/* Payload bytes a big block's allocation holds (its size or more). */
static inline size_t rpi_big_cap(rpi_hdr *h)
{
    rpi_big *b = (rpi_big *)h - 1;
    return (size_t)(uintptr_t)b->pad - (size_t)((char *)(h + 1) - (char *)b->raw);
}

/* Malloc backing: freed blocks of up to RPI_RECYCLE_MAX bytes, up to
   RPI_RECYCLE_BYTES in all per pool, are kept on per-16-byte-class lists and
   handed out again (as glibc's own per-thread cache does), so an alloc after
   a free skips malloc and free. Such blocks are allocated rounded up to their
   class, so any block of a class fits any request of it. Off for checked
   pools, in ASan builds, under valgrind's memcheck and with
   RINGPOOL_RECYCLE=0; destroy and reset give the lists back to the system. */
#define RPI_RECYCLE_MAX     4096u
#define RPI_RECYCLE_CLASSES (RPI_RECYCLE_MAX / 16 + 1)
#define RPI_RECYCLE_BYTES   ((size_t)64 << 10)
/* A shard's bound (shard.c): a shard is its thread's cache of a shared
   pool, as glibc's per-thread cache is of the heap (up to 7 blocks in each
   of its 64 bins up to 1032 bytes: about 230 KiB). Mixed sizes use more
   classes than 64 KiB holds a block of: with bench.c's sizes (257 classes)
   8.5% of a shard's pairs went to malloc and free (docs/concurrency.md). */
#define RPI_SHARD_RECYCLE_BYTES ((size_t)256 << 10)
#define RPI_POOL_BIASED     (1u << 18)   /* internal flag: a pool or shard whose owner
                                            (creator / thread) takes no lock */
/* The pool's state bits (rp_pool.lflags), which change while it lives. */
#define RPI_POOL_UNLISTED   (1u << 17)   /* may hold unlisted tag records */
#define RPI_POOL_TORN       (1u << 19)   /* its destroy has written its report and
                                            run its destructors (what they left is
                                            torn down before the pool goes) */
static inline size_t rpi_malloc_size(size_t size)
{
    return RPI_HDR + (size <= RPI_RECYCLE_MAX ? (size + 15) & ~(size_t)15 : size);
}

/* A walk's place in the ring while its visitor runs without the lock: a
   header with no origin (like the sentinel), on the pool's list of marks so
   that checked mode recognises it as a legitimate neighbour. */
typedef struct rpi_mark {
    rpi_hdr          h;
    struct rpi_mark *next;
} rpi_mark;

/* The sampler's state in a pool, under the pool's lock (memprof.c): what the
   pool needs to draw and offer samples without the sampler's global lock. */
typedef struct rpi_memprof_pool {
    uint64_t           gen;       /* profile generation this state belongs to */
    uint64_t           rng;       /* the pool's random stream (splitmix64) */
    double             inv_log;   /* that profile's 1 / ln(1 - rate); 0 for rate 1 */
    rp_memprof        *profile;   /* that profile, NULL for none (compared, not read) */
    rp_memprof_tracker tracker;   /* its tracker and callstack size */
    size_t             stack;
    bool               real;      /* the next point is a sample, not a check point */
} rpi_memprof_pool;

#define RPI_TAG_CACHE 64
#define RPI_TSLOTS_LOG2 4   /* pool->tslot: 16 slots */
#define RPI_TSLOTS (1u << RPI_TSLOTS_LOG2)
#define RPI_NO_OWNER ((void *)1)       /* pool->owner matching no thread */
#define RPI_NO_TAG ((const char *)1)   /* key of an empty tag-cache slot */
/* How a fast path synchronises: not at all (unsynchronised pool), with the
   pool's lock, or as the owner of a biased shard (no lock: rpi_bias_enter). */
enum { RPI_SYNC_NONE = 0, RPI_SYNC_LOCK = 1, RPI_SYNC_BIASED = 2 };
/* rp_pool.fast_kind, which fast path rp_alloc and rp_calloc take: an
   unchecked arena pool, unsynchronised (its path needs nothing else) or
   thread-safe (its owner's, biased, or for a pool whose creator locks
   nobody's: alloc_other_arena); an unchecked malloc-backed pool, likewise;
   a checked or stack pool (their own paths), checked pools without stacks
   by backing (rp_alloc goes straight to their entry, where the flags took
   a load and two tests). */
enum {
    RPI_FAST_UNSYNC = 0,
    RPI_FAST_OWNED,
    RPI_FAST_MALLOC_UNSYNC,
    RPI_FAST_MALLOC_OWNED,
    RPI_FAST_OTHER,
    RPI_FAST_CHECKED_ARENA,
    RPI_FAST_CHECKED_MALLOC   /* the largest: RPI_FAST_CHECKED_KIND */
};
/* rp_pool.free_kind: the pool's kind as rp_free needs it, one compare of
   the byte telling four ways apart (RPI_FREE_KIND): an unsynchronised
   unchecked arena pool (every block rp_free's flag test lets through is a
   compact arena block: no test of RPI_F_ARENA), an unsynchronised
   unchecked malloc-backed pool (none is), a biased pool (its owner's fast
   section; the block's backing tested), the rest (a pool taking its lock;
   any other kind goes to the general path). */
enum {
    RPI_FREE_BIASED = -1,
    RPI_FREE_ARENA_UNSYNC = 0,
    RPI_FREE_MALLOC_UNSYNC = 1,
    RPI_FREE_LOCK = 2,
    RPI_FREE_OTHER = 3
};
/* Jumps to label a for RPI_FREE_ARENA_UNSYNC, b for RPI_FREE_BIASED, m
   for RPI_FREE_MALLOC_UNSYNC; on for RPI_FREE_LOCK and RPI_FREE_OTHER: one
   compare and three branches (unsigned below, signed less, equal). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
#define RPI_FREE_KIND(pool, a, b, m)                                         \
    __asm__ goto("cmpb %1, %0\n\tjb %l[" #a "]\n\tjl %l[" #b "]\n\tje %l[" #m "]" \
                 : : "m"((pool)->free_kind), "i"(RPI_FREE_MALLOC_UNSYNC)    \
                 : "cc" : a, b, m)
#else
#define RPI_FREE_KIND(pool, a, b, m)                                         \
    do {                                                                     \
        signed char fk_ = (pool)->free_kind;                                 \
        if (fk_ == RPI_FREE_ARENA_UNSYNC) goto a;                            \
        if (fk_ < 0) goto b;                                                 \
        if (fk_ == RPI_FREE_MALLOC_UNSYNC) goto m;                           \
    } while (0)
#endif
/* Jumps to label u when pool's fast_kind is RPI_FAST_UNSYNC: one compare
   of the byte in memory and a branch (an asm goto on x86-64 GCC, where the
   C gave a load, a test and a branch). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
#define RPI_FAST_UNSYNC_GOTO(pool, u) \
    __asm__ goto("cmpb $0, %0\n\tje %l[" #u "]" : : "m"((pool)->fast_kind) : "cc" : u)
/* To label u for RPI_FAST_UNSYNC, x for anything but RPI_FAST_OWNED, on
   for RPI_FAST_OWNED: one compare and two branches. */
#define RPI_FAST_ARENA_KIND(pool, u, x)                                      \
    __asm__ goto("cmpb %1, %0\n\tjb %l[" #u "]\n\tjne %l[" #x "]"        \
                 : : "m"((pool)->fast_kind), "i"(RPI_FAST_OWNED)            \
                 : "cc" : u, x)
/* A checked or stack pool (fast_kind RPI_FAST_OTHER or above): to label a
   for RPI_FAST_CHECKED_ARENA, m for RPI_FAST_CHECKED_MALLOC, on for
   RPI_FAST_OTHER; one compare and two branches. */
#define RPI_FAST_CHECKED_KIND(pool, a, m)                                    \
    __asm__ goto("cmpb %1, %0\n\tje %l[" #a "]\n\tja %l[" #m "]"         \
                 : : "m"((pool)->fast_kind), "i"(RPI_FAST_CHECKED_ARENA)   \
                 : "cc" : a, m)
/* Not an unchecked arena pool (fast_kind RPI_FAST_MALLOC_UNSYNC or above):
   to label u for RPI_FAST_MALLOC_UNSYNC, x for RPI_FAST_OTHER, on for
   RPI_FAST_MALLOC_OWNED; one compare and two branches. */
#define RPI_FAST_MALLOC_KIND(pool, u, x)                                     \
    __asm__ goto("cmpb %1, %0\n\tjb %l[" #u "]\n\tjne %l[" #x "]"        \
                 : : "m"((pool)->fast_kind), "i"(RPI_FAST_MALLOC_OWNED)    \
                 : "cc" : u, x)
#else
#define RPI_FAST_MALLOC_KIND(pool, u, x)                                     \
    do {                                                                     \
        if ((pool)->fast_kind == RPI_FAST_MALLOC_UNSYNC) goto u;             \
        if ((pool)->fast_kind != RPI_FAST_MALLOC_OWNED) goto x;              \
    } while (0)
#define RPI_FAST_UNSYNC_GOTO(pool, u) \
    do { if ((pool)->fast_kind == RPI_FAST_UNSYNC) goto u; } while (0)
#define RPI_FAST_ARENA_KIND(pool, u, x)                                      \
    do {                                                                     \
        if ((pool)->fast_kind == RPI_FAST_UNSYNC) goto u;                    \
        if ((pool)->fast_kind != RPI_FAST_OWNED) goto x;                     \
    } while (0)
#define RPI_FAST_CHECKED_KIND(pool, a, m)                                    \
    do {                                                                     \
        if ((pool)->fast_kind == RPI_FAST_CHECKED_ARENA) goto a;             \
        if ((pool)->fast_kind == RPI_FAST_CHECKED_MALLOC) goto m;            \
    } while (0)
#endif

struct rp_pool {
    rpi_hdr      ring;          /* sentinel; must stay first */
    rpi_lock     lock;
    /* a biased shard (RPI_POOL_BIASED, shard.c): its owner is in a fast
       section; beside the lock word, in the line the owner writes anyway */
    atomic_int   busy;
    _Atomic(void *) bias_owner; /* its owner's thread pointer (a pool's: its
                                   creator), NULL when none */
    const char  *tag_key[RPI_TAG_CACHE];   /* pointer cache of tag records: */
    rpi_tag     *tag_rec[RPI_TAG_CACHE];   /* key[i] == tag => rec[i] is its record */
    size_t       room, peak;    /* bytes = peak - room (rpi_pool_bytes), as a tag's */
    /* the tag an unsynchronised arena pool's fast allocation looked up
       last (rpi_tag_last_*): one compare with the caller's pointer before
       the pointer cache above, whose entry it copies (RPI_NO_TAG for none) */
    const char  *last_key;
    rpi_tag     *last_rec;
    int64_t      mp_left;       /* sampler: bytes before the next point (memprof.h),
                                   beside the counters the fast path updates */
    /* headerless blocks (internal.h, arena pools): the table of tags their
       words index ([0] unused: index 0 means none); here, not in the arena,
       so that a free reads it without going through rpi_arena */
    rpi_tag    **hl_tags;
    size_t       reserved;      /* arena: chunks + big blocks; malloc: alignment slack only */
    rpi_tag    **tag_buckets;
    size_t       tag_nbuckets, ntags;
    rpi_tag     *tag_first, *tag_last;
    char        *name;
    rp_pool     *parent, *first_child, *next_sibling, *prev_sibling;
    size_t       nchildren;
    rpi_cleanup *cleanups;
    rpi_dtor     dtors;         /* sentinel */
    rpi_ptrmap   dtor_map;      /* block -> rpi_dtor */
    rpi_arena   *arena;
    /* Read by every thread that allocates from the pool, written only when
       a thread binds to a shard: between pads, so that no field a call
       writes shares their cache line. */
    /* RPI_POOL_UNLISTED, RPI_POOL_TORN: read and written under the pool's
       lock.  Not in flags, which other threads read without it (allocations,
       rp_pool_create_child, rp_memprof_start over the live pools): a bit set
       there while the pool lived was a data race with every such read. */
    unsigned     lflags;
    char         rd_pad0[64];
    unsigned     flags;         /* here, not beside the ring sentinel and the
                                   busy mark its owner writes on every call:
                                   other threads' allocations read it */
    signed char  sync;          /* how its owner's fast paths synchronise, from
                                   flags (UNSYNC, RPI_POOL_BIASED: both fixed
                                   once the pool is made): 0 not at all, -1
                                   biased, 1 the lock (one test of the byte
                                   tells them apart: rp_free) */
    unsigned char fast_kind;    /* which call-free path rp_alloc and rp_calloc
                                   take, one compare of the byte picking it
                                   (RPI_FAST_*, from fast_arena and sync) */
    signed char free_kind;      /* which fast path rp_free takes for a block
                                   of the pool with no flag but its backing's
                                   (RPI_FREE_*, from fast_kind and sync) */
    rpi_arena   *fast_arena;    /* arena of an unchecked pool: the call-free path */
    void        *owner;         /* shardable pools: the thread (its thread pointer)
                                   whose calls use the pool itself without a
                                   lock (biased); others use their shard
                                   (shard.c). RPI_NO_OWNER where the creator
                                   locks (no fence): every thread then comes
                                   by alloc_other, which knows the creator by
                                   bias_owner */
    _Atomic(rp_pool *) tslot[RPI_TSLOTS];   /* shards by their thread (rpi_tslot_of) */
    char         rd_pad1[64];
    size_t       recycled;      /* bytes on the recycle lists */
    size_t       recycle_cap;   /* their bound: RPI_RECYCLE_BYTES (a shard's:
                                   RPI_SHARD_RECYCLE_BYTES) where recycling is on,
                                   0 where it is off (what says whether it is on;
                                   a free tests the bound alone) */
    rpi_hdr     *recycle[RPI_RECYCLE_CLASSES];  /* malloc backing: freed blocks by class */
    rp_pool     *live_prev, *live_next;
    rpi_memprof_pool mp;        /* sampler: the rest of its state (memprof.c) */
    rpi_mark    *marks;         /* walks in progress (their visitors run unlocked) */
    rpi_ptrmap   tag_seen;      /* checked pools: tag pointer -> record of its last content */
    struct rpi_cpool *checked;  /* checked pools: their part of the registry (checked.c) */
    struct rpi_poolstacks *stacks;  /* RP_POOL_STACKS: blocks' stacks (poolstack.h), or NULL */
    /* shards (shard.c) */
    rp_pool     *front;         /* a shard: the pool it belongs to; NULL for a pool */
    rp_pool     *shards;        /* a pool: its shards, newest first (added under
                                   its lock with a release store: shard.c reads
                                   the list without it) */
    rp_pool     *shard_next;    /* a shard: the next of its pool's shards (fixed) */
    struct rpi_sthread *shard_thread;   /* a shard: the thread using it, NULL once */
    rp_pool     *thr_prev, *thr_next;   /* that thread exited (shard.c's lock) */
    /* a biased shard (RPI_POOL_BIASED, shard.c): its owner's fast paths take
       no lock; anyone else takes the lock and waits out the owner (busy) */
    _Atomic(rpi_hdr *) remote;  /* blocks freed by other threads (link in the payload) */
    /* An unchecked arena pool's arena (pool->arena points here), in the
       same allocation: the fast paths reach it at a constant offset from
       the pool, where a load of pool->arena (or fast_arena) took an
       instruction. Checked pools (and malloc-backed ones) have none: a
       checked pool's arena may outlive the pool (checked.c). */
    rpi_arena    own_arena[];
};

RPI_HIDDEN void rpi_shard_exclude(rp_pool *s);
RPI_HIDDEN void rpi_registry_lock(void);
RPI_HIDDEN void rpi_registry_unlock(void);
/* The pool's lock, and for a biased pool or shard (RPI_POOL_BIASED) its
   owner waited out (unless the caller is the owner) and the blocks other
   threads freed taken in: after it, nothing touches the pool's state.
   A checked pool's lock is the registry's (checked.c), unsynchronised or
   not: its calls take that one lock, never two. */
static inline void rpi_pool_lock(rp_pool *p)
{
    if (p->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED)) {
        if (p->flags & RP_POOL_CHECKED) rpi_registry_lock();
        return;
    }
    rpi_lock_acquire(&p->lock);
    if (RPI_UNLIKELY(p->flags & RPI_POOL_BIASED)) rpi_shard_exclude(p);
}
/* The pool's lock taken by its owner (a biased pool's creator, a shard's
   thread), or for an unbiased or unsynchronised pool: nobody to wait out. */
static inline void rpi_pool_lock_owner(rp_pool *p)
{
    if (!(p->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED))) rpi_lock_acquire(&p->lock);
    else if (p->flags & RP_POOL_CHECKED) rpi_registry_lock();
}
static inline void rpi_pool_unlock(rp_pool *p)
{
    if (!(p->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED))) rpi_lock_release(&p->lock);
    else if (p->flags & RP_POOL_CHECKED) rpi_registry_unlock();
}
/* The locks for a block of pool and the registry when checked (a checked
   block: the registry's lock, which is also its checked pool's). */
static inline void rpi_lock_both(rp_pool *p, bool checked)
{
    if (checked && !(p->flags & RP_POOL_CHECKED)) rpi_registry_lock();
    rpi_pool_lock(p);
}
static inline void rpi_unlock_both(rp_pool *p, bool checked)
{
    rpi_pool_unlock(p);
    if (checked && !(p->flags & RP_POOL_CHECKED)) rpi_registry_unlock();
}

RPI_HIDDEN rpi_tag *rpi_tag_lookup_slow(rp_pool *pool, const char *tag); /* lock held; NULL on OOM */

static inline size_t rpi_tag_slot(const char *key)
{
    return (size_t)((uintptr_t)key >> 3) & (RPI_TAG_CACHE - 1);
}
/* The same slot as a byte offset into tag_key and tag_rec (rpi_tag_slot
   times 8: one AND, no shift) and the two entries there. */
static inline size_t rpi_tag_off(const char *key)
{
    return (size_t)((uintptr_t)key & ((RPI_TAG_CACHE - 1) * sizeof(void *)));
}
static inline const char *rpi_tag_key_at(const rp_pool *pool, size_t off)
{
    return *(const char *const *)(const void *)((const char *)pool->tag_key + off);
}
static inline rpi_tag *rpi_tag_rec_at(const rp_pool *pool, size_t off)
{
    return *(rpi_tag *const *)(const void *)((const char *)pool->tag_rec + off);
}

/* The tag of a headerless block of pool from its slot word m. */
static inline rpi_tag *rpi_hl_tag(rp_pool *pool, uint32_t m)
{
    return pool->hl_tags[m >> RPI_HL_TAG_SHIFT];
}

/* Tag record for tag (lock held): a pointer-cache hit, else a lookup by content. */
static inline rpi_tag *rpi_tag_lookup(rp_pool *pool, const char *tag)
{
    size_t off = rpi_tag_off(tag);
    if (RPI_LIKELY(rpi_tag_key_at(pool, off) == tag)) return rpi_tag_rec_at(pool, off);
    return rpi_tag_lookup_slow(pool, tag);
}

/* Counter updates (lock held). The pool keeps bytes and peak; its block and
   allocation totals are sums over the tags (rpi_pool_totals), O(tags).
   Bytes are kept as room below the peak (bytes = peak - room): a growth
   subtracts from room and only when that goes below 0 moves the peak up
   (room back to 0), one subtraction and a sign test where bytes and peak
   took a load, an add, a store, a compare and a branch. */
static inline size_t rpi_tag_bytes(const rpi_tag *t) { return t->peak - t->room; }
static inline size_t rpi_pool_bytes(const rp_pool *p) { return p->peak - p->room; }
/* Both counters to zero bytes, the peaks kept. */
static inline void rpi_tag_bytes_clear(rpi_tag *t) { t->room = t->peak; }
static inline void rpi_pool_bytes_clear(rp_pool *p) { p->room = p->peak; }
/* d more bytes (modulo 2^64: a negative d gives room back). */
static inline __attribute__((always_inline)) void rpi_room_grow(size_t *room, size_t *peak,
                                                                size_t d)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
    /* one read-modify-write and one branch (compilers emit load, copy,
       subtract, branch and a store for the C below); TSan builds keep the
       C, whose accesses it sees */
    __asm__ goto("subq %1, %0\n\tjs %l[over]" : "+m"(*room) : "r"(d) : "cc" : over);
    return;
over:
    *peak -= *room;   /* room < 0: the new bytes are peak - room */
    *room = 0;
#else
    size_t r = *room - d;
    if (RPI_UNLIKELY((int64_t)r < 0)) {
        *peak -= r;   /* the new bytes: peak + (d - room) */
        r = 0;
    }
    *room = r;
#endif
}
/* Live blocks under t. */
static inline size_t rpi_tag_blocks(const rpi_tag *t) { return (size_t)(t->allocs - t->frees); }
/* A new block of size bytes under t, in pool p (t->pool): an allocation. */
static inline void rpi_count_new(rp_pool *p, rpi_tag *t, size_t size)
{
    t->allocs++;
    rpi_room_grow(&t->room, &t->peak, size);
    rpi_room_grow(&p->room, &p->peak, size);
}
/* A block under t, in pool p (t->pool), from old to size bytes (resize:
   the same block, no count changes). */
static inline void rpi_counters_resize_in(rp_pool *p, rpi_tag *t, size_t old, size_t size)
{
    size_t d = size - old;   /* modulo 2^64: a shrink gives room back */
    rpi_room_grow(&t->room, &t->peak, d);
    rpi_room_grow(&p->room, &p->peak, d);
}
static inline void rpi_counters_resize(rpi_tag *t, size_t old, size_t size)
{
    rpi_counters_resize_in(t->pool, t, old, size);
}
/* A block of size bytes under t gone, in pool p (t->pool). */
static inline void rpi_counters_sub_in(rp_pool *p, rpi_tag *t, size_t size)
{
    t->frees++;
    t->room += size;
    p->room += size;
}
/* rpi_counters_sub_in as three read-modify-writes the compiler keeps where
   they are (on x86-64 GCC: it hoists the C's loads above a branch whose
   other way updates the same counters, and the stores then cost a load, an
   add and a store each). */
static inline __attribute__((always_inline)) void rpi_counters_sub_rmw(rp_pool *p, rpi_tag *t,
                                                                       size_t size)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
    __asm__("addq $1, %0" : "+m"(t->frees));
    __asm__("addq %1, %0" : "+m"(t->room) : "r"(size));
    __asm__("addq %1, %0" : "+m"(p->room) : "r"(size));
#else
    rpi_counters_sub_in(p, t, size);
#endif
}
static inline void rpi_counters_sub(rpi_tag *t, size_t size)
{
    rpi_counters_sub_in(t->pool, t, size);
}
RPI_HIDDEN size_t rpi_pool_totals(rp_pool *pool, uint64_t *allocs); /* lock held; blocks */
/* Bytes held from the system for the pool (lock held): rp_pool_info's
   reserved_bytes and the report's, one definition. */
RPI_HIDDEN size_t rpi_pool_reserved(rp_pool *pool);
/* Tag records never used by a successful allocation (interned only, or
   looked up by a call that then failed) are not listed anywhere. */
static inline bool rpi_tag_listed(const rpi_tag *t) { return t->allocs != 0; }

static inline void rpi_ring_insert(rp_pool *pool, rpi_hdr *h)
{
    rpi_hdr *s = &pool->ring;
    rpi_hdr *last = s->prev;
    h->next = s;
    h->prev = last;
    last->next = h;
    s->prev = h;
}

static inline void rpi_ring_unlink(rpi_hdr *h)
{
    rpi_hdr *p = h->prev, *n = h->next;
    p->next = n;
    n->prev = p;
}

static inline bool rpi_is_mark(const rp_pool *pool, const rpi_hdr *h)
{
    for (const rpi_mark *m = pool->marks; m; m = m->next)
        if (&m->h == h) return true;
    return false;
}

/* live-pool list (for at-exit reports) */
RPI_HIDDEN void rpi_live_lock(void);
RPI_HIDDEN rpi_lock *rpi_live_lockp(void);        /* for fork.c */
RPI_HIDDEN bool rpi_live_lock_for_exit(void);   /* bounded wait */
RPI_HIDDEN void rpi_live_unlock(void);
RPI_HIDDEN extern rp_pool *rpi_live_head;

/* ---- arena.c: size classes (header included) */
#define RPI_BIG_LIMIT 32768u
/* A resize grows an arena block in place up to this total (header included);
   past it the block moves to an allocation of its own (arena.c). */
#define RPI_GROW_LIMIT 4096u
#define RPI_MAX_CHUNK (RP_MAX_SIZE & ~(size_t)15)   /* largest arena chunk_size */
static inline unsigned rpi_class_of(size_t total)
{
    if (total <= 1024) return (unsigned)((total - 1) >> 4);
    size_t t = total - 1;
    unsigned lg = 63u - (unsigned)__builtin_clzll(t);
    return 64u + 4u * (lg - 10u) + (unsigned)((t >> (lg - 2u)) & 3u);
}
/* The arena class of a block of size bytes behind a header of hdr bytes,
   into *c; false past the arena's classes (RPI_BIG_LIMIT). Up to 1 KiB
   with the header the classes are 16 bytes apart: the fast paths' one
   compare, without rpi_class_of's general case. */
static inline __attribute__((always_inline)) bool rpi_arena_class(size_t size, size_t hdr,
                                                                   size_t *c)
{
    if (RPI_LIKELY(size <= 1024 - hdr))
        *c = (hdr + size - 1) >> 4;
    else if (size <= RPI_BIG_LIMIT - hdr)
        *c = rpi_class_of(hdr + size);
    else
        return false;
    return true;
}
_Static_assert(sizeof(((rpi_arena *)0)->bigcls) == RPI_BIG_LIMIT >> 8, "bigcls covers the classes");
/* rpi_arena_class for a compact block (RPI_AHDR) of arena a, the classes
   past 1 KiB from its table (rpi_arena.bigcls). */
static inline __attribute__((always_inline)) bool rpi_arena_class_a(const rpi_arena *a,
                                                                     size_t size, size_t *c)
{
    if (RPI_LIKELY(size <= 1024 - RPI_AHDR))
        *c = (RPI_AHDR + size - 1) >> 4;
    else if (size <= RPI_BIG_LIMIT - RPI_AHDR)
        *c = a->bigcls[(RPI_AHDR + size - 1) >> 8];
    else
        return false;
    return true;
}
/* A resize of an arena block to total bytes (its header included) that
   leaves its slot of cs bytes at least half empty: the block moves to the
   smaller class (the block carved last gives the rest back to its chunk
   instead), as a big block's allocation shrinks below half, so that a
   block made large and cut down to what it holds (a string built in a
   buffer of its largest possible length) takes no more than a block
   allocated at its size. Shrinks to more than half, and growths within
   the class, keep the block where it is. */
static inline bool rpi_arena_shrinks(size_t total, size_t cs) { return 2 * total <= cs; }
static inline size_t rpi_class_size(unsigned c)
{
    if (c < 64) return ((size_t)c + 1) << 4;
    unsigned k = c - 64, lg = 10 + k / 4;
    return ((size_t)1 << lg) + ((size_t)(k % 4 + 1) << (lg - 2));
}
RPI_HIDDEN rpi_hdr *rpi_arena_refill(rp_pool *pool, unsigned cls); /* lock held; new chunk */
/* The live small blocks of a compact arena, chunk by chunk (lock held at
   each call; between calls the lock may be dropped and the pool used: the
   block returned last is stepped over by its class at the next call). */
typedef struct rpi_slots { rpi_chunk *c; char *p; bool started; } rpi_slots;
RPI_HIDDEN rpi_hdr *rpi_arena_next_live(rpi_arena *a, rpi_slots *it);
/* rpi_class_size as a table, for paths where one load beats the arithmetic. */
RPI_HIDDEN extern const uint32_t rpi_class_bytes[RPI_NCLASSES];
/* The same, but UINT32_MAX for class 1 (alloc_arena_fast's carving: its
   sizes are headerless blocks). */
RPI_HIDDEN extern const uint32_t rpi_carve_bytes[RPI_NCLASSES];

RPI_HIDDEN int  rpi_arena_init(rp_pool *pool, const rp_pool_options *opts);
RPI_HIDDEN rpi_hdr *rpi_arena_alloc(rp_pool *pool, size_t size);  /* lock held */
RPI_HIDDEN rpi_hdr *rpi_arena_alloc_aligned(rp_pool *pool, size_t align, size_t size);
RPI_HIDDEN void rpi_arena_free(rp_pool *pool, rpi_hdr *h);          /* lock held, unlinked */
/* Lock held. An arena block resized without moving (a shrink, a size its
   class holds, or the last carved block grown into its chunk), or a big
   block within its allocation (not in checked pools): true, and the header
   word updated; false: nothing changed. */
RPI_HIDDEN bool rpi_arena_resize_in_place(rp_pool *pool, rpi_hdr *h, size_t new_size);
/* Payload bytes to ask for when a block holding cap bytes must grow to size
   (> cap): a growth by small steps gets a quarter more than it asks for, so
   the next steps stay in place; a jump of more than that (doubling) gets
   exactly its size. */
static inline size_t rpi_grow_want(size_t cap, size_t size)
{
    if (size - cap >= cap / 4) return size;
    size_t want = cap + cap / 4;     /* cap <= RP_MAX_SIZE + 48: no wrap */
    return want < RP_MAX_SIZE ? want : RP_MAX_SIZE;
}
/* Lock held. A big block (alignment max_align_t) resized by realloc of its
   raw allocation: the new header (relinked on the big list, not on the
   ring; size updated), or NULL with nothing changed. exact: no headroom
   (checked pools, whose registry knows each allocation by the block's
   size). Inline: the resize fast path (pool.c) calls it. */
static inline rpi_hdr *rpi_arena_big_resize(rp_pool *pool, rpi_hdr *h, size_t new_size, bool exact)
{
    rpi_big *b = (rpi_big *)h - 1;
    size_t off = (size_t)((char *)b - (char *)b->raw);
    size_t old_total = (size_t)(uintptr_t)b->pad;
    size_t cap = rpi_big_cap(h);
    size_t want = new_size > cap && !exact ? rpi_grow_want(cap, new_size) : new_size;
    /* malloc aligns to max_align_t, so the record keeps its offset in the
       raw allocation and realloc carries it along with the payload */
    size_t total = rpi_big_total(_Alignof(max_align_t), want);  /* <= RP_MAX_SIZE + 64 */
    char *raw = rpi_sys_realloc(b->raw, total);
    if (RPI_UNLIKELY(!raw) && want != new_size) {   /* no room for the headroom: exactly */
        total = rpi_big_total(_Alignof(max_align_t), new_size);
        raw = rpi_sys_realloc(b->raw, total);
    }
    if (RPI_UNLIKELY(!raw)) return NULL;
    b = (rpi_big *)(raw + off);
    b->raw = raw;
    b->pad = (void *)(uintptr_t)total;
    b->prev->next = b;
    b->next->prev = b;
    pool->reserved = pool->reserved - old_total + total;
    h = (rpi_hdr *)(b + 1);
    h->word = (h->word & ~RPI_SIZE_MASK) | new_size;
    rpi_asan_big_live(h);
    return h;
}
/* Lock held. Memory for a block that a resize moves from old to new_size
   bytes (full word set): a growth past RPI_GROW_LIMIT gets a big block
   (with headroom for a small step, except in checked pools), anything else
   what rpi_arena_alloc gives. NULL on OOM. */
RPI_HIDDEN rpi_hdr *rpi_arena_alloc_moved(rp_pool *pool, size_t old, size_t new_size);
RPI_HIDDEN void rpi_arena_release(rp_pool *pool, bool keep);       /* destroy/reset */
RPI_HIDDEN void rpi_arena_fini(rp_pool *pool);
RPI_HIDDEN void rpi_arena_free_chunks(rpi_arena *a);  /* every chunk, then a */
RPI_HIDDEN void rpi_arena_unlink_big(rp_pool *pool, rpi_hdr *h); /* checked free: memory kept */
RPI_HIDDEN void rpi_chunk_cache_fini(void);   /* frees the process chunk cache */

/* ---- checked.c: registry of blocks from checked pools (global lock) */
/* Non-zero while the registry must be consulted: live checked pools, plus
   one while it holds any record (a stale pointer stays recognisable). */
RPI_HIDDEN extern atomic_int rpi_checked_gate;
RPI_HIDDEN extern atomic_int rpi_unchecked_pools; /* live unchecked pools */
RPI_HIDDEN void rpi_registry_lock(void);
RPI_HIDDEN rpi_lock *rpi_registry_lockp(void);    /* for fork.c */
RPI_HIDDEN void rpi_registry_unlock(void);
RPI_HIDDEN bool rpi_registry_lock_for_exit(void);   /* bounded wait */
/* registry lock held for all below */
/* room for one insert of a block of pool; 0 or RP_ENOMEM */
RPI_HIDDEN int  rpi_registry_reserve(rp_pool *pool);
RPI_HIDDEN void rpi_registry_insert(rpi_hdr *h, void *raw);
RPI_HIDDEN void rpi_registry_update(rpi_hdr *h);  /* copies a live block's new word */
/* state: RPI_FREED; a malloc-backed or big block's memory is kept by the
   record (freed when the record goes): the caller does not free it. */
RPI_HIDDEN void rpi_registry_retire(const void *payload, int state);
RPI_HIDDEN void rpi_registry_move(rpi_hdr *old_h, rpi_hdr *new_h, void *raw);
/* realloc of a checked malloc-backed block's memory h to n bytes (the
   registry may have carved it: then moved unless its class stays); lock
   held. */
RPI_HIDDEN void *rpi_registry_realloc(rpi_hdr *h, size_t n);
enum { RPI_UNKNOWN = 0, RPI_LIVE = 1, RPI_FREED = 2, RPI_DESTROYED = 3 };
typedef struct rpi_entry_view {
    int state; rp_pool *pool; rpi_tag *origin; uint64_t word; void *raw;
} rpi_entry_view;
RPI_HIDDEN int  rpi_registry_find(const void *payload, rpi_entry_view *out);
/* A checked pool's blocks, which are on no ring, in allocation order:
   the block after *cur (NULL: the first; *cur is then that block's place),
   or NULL at the end. *ok says whether its header and what lies below it
   agree with its record (else why is filled, if given: do not read the
   block, and go no further). */
RPI_HIDDEN rpi_hdr *rpi_registry_next(rp_pool *pool, void **cur, bool *ok, char *why, size_t cap);
/* rp_pool_walk over a checked pool's blocks: visit runs with the lock let
   go; RP_ECORRUPT (why filled) at a block whose header disagrees with its
   record, else the first non-zero of visit, else 0. */
RPI_HIDDEN int rpi_registry_walk(rp_pool *pool, rp_visit_fn visit, void *arg, char *why,
                                 size_t cap);
/* Live blocks of pool and their bytes, from the table. */
RPI_HIDDEN void rpi_registry_live_totals(rp_pool *pool, size_t *blocks, size_t *bytes);
/* Validates a checked block for op (a call name); reports and returns the
   error if it is not a live, intact block of expected (NULL = any pool). */
RPI_HIDDEN int  rpi_checked_validate(const void *payload, rp_pool *expected, const char *op,
                                     rpi_entry_view *out);
/* Retires every live block of pool as destroyed (their memory stays with
   the records: malloc-backed and big blocks), O(its live blocks). With
   destroy, also forgets the pool and takes its arena, if any (pool->arena
   becomes NULL; the chunks, already released by rpi_arena_release, are
   freed when the pool's last record goes). */
/* Before a checked pool's destroy or reset empties its arena's free lists:
   the records parked beside them join the quarantine (registry lock held). */
RPI_HIDDEN void rpi_registry_unpark(rp_pool *pool);
RPI_HIDDEN void rpi_registry_drop_pool(rp_pool *pool, bool destroy);
RPI_HIDDEN void rpi_registry_fini(void);
/* The fast paths of checked pools (no lock held on entry; checked.c).
   rpi_checked_alloc is rp_alloc for a checked or stack pool: what it does
   not handle goes to rpi_alloc_general (pool.c), the general path of
   rp_alloc. rpi_checked_free is rp_free while the registry is consulted;
   it leaves what it does not handle to rpi_free_general, likewise. */
RPI_HIDDEN void *rpi_alloc_general(rp_pool *pool, size_t size, const char *tag, bool plain);
/* one entry per backing and per plain/noexc, chosen inline */
RPI_HIDDEN void *rpi_checked_alloc_arena_plain(rp_pool *pool, size_t size, const char *tag);
RPI_HIDDEN void *rpi_checked_alloc_arena_noexc(rp_pool *pool, size_t size, const char *tag);
RPI_HIDDEN void *rpi_checked_alloc_malloc_plain(rp_pool *pool, size_t size, const char *tag);
RPI_HIDDEN void *rpi_checked_alloc_malloc_noexc(rp_pool *pool, size_t size, const char *tag);
static inline __attribute__((always_inline)) void *rpi_checked_alloc(rp_pool *pool, size_t size,
                                                                     const char *tag, bool plain)
{
    /* the flags a pool is created with (ARENA, STACKS) never change */
    unsigned f = pool->flags;
    if (RPI_UNLIKELY(f & RP_POOL_STACKS)) return rpi_alloc_general(pool, size, tag, plain);
    if (f & RP_POOL_ARENA)
        return plain ? rpi_checked_alloc_arena_plain(pool, size, tag)
                     : rpi_checked_alloc_arena_noexc(pool, size, tag);
    return plain ? rpi_checked_alloc_malloc_plain(pool, size, tag)
                 : rpi_checked_alloc_malloc_noexc(pool, size, tag);
}
RPI_HIDDEN void  rpi_checked_free(void *block);
RPI_HIDDEN void  rpi_free_general(void *block);
/* Whether freed malloc memory may be kept for reuse (pool.c: not in ASan
   builds, under valgrind's memcheck, or with RINGPOOL_RECYCLE=0). */
RPI_HIDDEN bool rpi_recycle_allowed(void);
/* Registry and pool locks held: tag_seen[tag] is t now (after a successful
   checked allocation). */
RPI_HIDDEN void rpi_checked_saw_tag(rp_pool *pool, const char *tag, rpi_tag *t);

/* The owner word of pool's headerless chunks (RPI_HL_OWN_*): the pool and
   its kind, read from rp_pool.sync (0 not synchronised, 1 the lock, -1
   biased), the one field that holds it. */
_Static_assert(RPI_HL_OWN_UNSYNC == 0 && RPI_HL_OWN_LOCKED == 1,
               "rpi_hl_own_of: sync 0 and 1 are the kinds' own values");
static inline uintptr_t rpi_hl_own_of(const rp_pool *pool)
{
    return (uintptr_t)pool | (pool->sync < 0 ? RPI_HL_OWN_BIASED : (uintptr_t)pool->sync);
}

/* ---- shard.c: one shard per thread of a shared thread-safe pool */
/* Pools that threads other than their creator use through shards:
   thread-safe, unchecked, without stacks. */
#define RPI_SHARDABLE(flags) (!((flags) & (RP_POOL_UNSYNC | RP_POOL_CHECKED | RP_POOL_STACKS)))
static inline void *rpi_thread_self(void) { return __builtin_thread_pointer(); }
/* A pool's slot for a thread's shard (pool->tslot: a hint, the shard's
   bias_owner says whose it is). */
static inline size_t rpi_tslot_of(const void *tp)
{
    return (size_t)(((uintptr_t)tp * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - RPI_TSLOTS_LOG2));
}
/* A thread that has shards: its record (their list, and the exit hook). */
typedef struct rpi_sthread {
    rp_pool            *owned;          /* its shards (thr_next links) */
    struct rpi_sthread *prev, *next;    /* every record (shard.c's lock) */
    void               *tp;             /* its thread's thread pointer */
} rpi_sthread;
/* The calling thread's shard of pool when the pool's slot does not name it:
   found among the pool's shards, else made (or an unowned one taken over)
   and bound; pool itself when no shard can be made (out of memory). */
RPI_HIDDEN rp_pool *rpi_shard_bind(rp_pool *pool);
/* pool.c: a new, empty shard of front (front's lock held), NULL on OOM;
   everything a shard holds freed (no lock held, nobody uses it). */
RPI_HIDDEN rp_pool *rpi_shard_new(rp_pool *front);
RPI_HIDDEN void rpi_shard_free(rp_pool *shard);
RPI_HIDDEN rpi_lock *rpi_shard_bind_lockp(void);  /* for fork.c */
RPI_HIDDEN rpi_lock *rpi_memprof_lockp(void);     /* for fork.c */
RPI_HIDDEN rpi_lock *rpi_chunk_cache_lockp(void); /* for fork.c */
RPI_HIDDEN void rpi_shard_trim(rp_pool *shard);   /* gives back its recycle lists */
/* Front's lock held: takes every shard's lock (bounded: false if one stays
   held for about a second, with none taken), gives them back. */
RPI_HIDDEN void rpi_shards_lock(rp_pool *front);
RPI_HIDDEN bool rpi_shards_lock_bounded(rp_pool *front);
RPI_HIDDEN void rpi_shards_unlock(rp_pool *front);
/* Every lock held: the pool's counters summed over the pool and its shards.
   Tag records with the same name are folded into one master (the pool's own
   record when it has one), whose f_* fields hold the sums. */
typedef struct rpi_fold {
    size_t   blocks, bytes, peak, reserved, chunks, tags;
    uint64_t allocs;
} rpi_fold;
RPI_HIDDEN void rpi_shards_fold(rp_pool *front, rpi_fold *out);
/* Masters after a fold: the pool's records, then the shards' own masters. */
RPI_HIDDEN rpi_tag *rpi_fold_next(rp_pool *front, rpi_tag *t);   /* t NULL: first */
/* No lock held: the shards lose their threads (before the pool frees them). */
RPI_HIDDEN void rpi_shards_unbind(rp_pool *front);
/* pool.c: each thread remembers the last shard it allocated from (the pool,
   the shard, and the generation of bindings it saw). The generation moves
   when shards lose their threads (a pool's destroy); a thread forgets its
   shard when it exits. */
RPI_HIDDEN void rpi_shard_gen_bump(void);
RPI_HIDDEN void rpi_tcache_forget(void);
/* A biased shard's owner enters a fast section: false (and not entered)
   when someone holds the shard's lock (then the caller takes the general,
   locked path). The store of busy and the load of the lock word are ordered
   for the lock's holder by its membarrier (rpi_shard_exclude): no atomic
   read-modify-write here. Blocks other threads freed (pool->remote) are not
   looked at here: the owner takes them in when a free list it allocates
   from is empty (before carving or calling malloc), and every lock holder
   takes them in first, so counters read under the lock stay exact. */
static inline bool rpi_bias_enter(rp_pool *s)
{
    atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
    /* the acquire load as a compare with memory (a load is acquire on
       x86-64; the clobber keeps the compiler's accesses after it, as the
       C's order does): compilers emit a load, a test and a branch */
    __asm__ goto("cmpl $0, %0\n\tjne %l[held]" : : "m"(s->lock.held) : "cc", "memory" : held);
    return true;
held:
#else
    if (RPI_LIKELY(!atomic_load_explicit(&s->lock.held, memory_order_acquire))) return true;
#endif
    atomic_store_explicit(&s->busy, 0, memory_order_release);
    return false;
}
static inline void rpi_bias_exit(rp_pool *s)
{
    atomic_store_explicit(&s->busy, 0, memory_order_release);
}
/* A biased shard's lock just taken: waits until its owner (unless that is
   the caller) is out of any fast section, then takes in the blocks other
   threads freed. */
RPI_HIDDEN void rpi_shard_exclude(rp_pool *s);
RPI_HIDDEN void rpi_shard_wait_owner(rp_pool *s);   /* after a fence: the wait alone */
RPI_HIDDEN void rpi_shard_drain(rp_pool *s);        /* the taking in alone */

/* ---- report.c */
RPI_HIDDEN int  rpi_write_report(rp_pool *pool, const char *path, unsigned flags,
                                 const char *reason);
RPI_HIDDEN int  rpi_report_from_env(rp_pool *pool, const char *reason);
/* rp_pool_write_report_ex with, when it fails, why (outfile.h's reason or
   the write's failure; may be empty) in why: for the Python binding. */
/* Whether a destroy of pool is in its second round (teardown_again): the
   cleanups registered while its children went, which run after every pool
   that was below it is gone (Python binding: allocator/_pool.py _fence). */
RPI_HIDDEN int  rpi_pool_torn(rp_pool *pool);
RPI_HIDDEN int  rpi_write_report_why(rp_pool *pool, const char *path, unsigned flags, char *why,
                                     size_t cap);

#endif /* RP_INTERNAL_H */
