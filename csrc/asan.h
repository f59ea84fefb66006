/* asan.h -- AddressSanitizer's view of the arena (internal, included by
 * internal.h).
 *
 * The arena carves many blocks from one chunk, so ASan, which sees only the
 * chunk's malloc, would let an access past a block, into a freed block or
 * into a chunk's uncarved rest through. Built with ASan (gcc:
 * __SANITIZE_ADDRESS__, clang: __has_feature(address_sanitizer)) the
 * library marks them (docs/contract.md, "AddressSanitizer"):
 *   - a chunk's slots when it is made (new_chunk, hl_chunk_new) and a slot
 *     given back to its chunk: poisoned;
 *   - a live block: its header (the compact 16 bytes, a checked pool's 32)
 *     and its requested bytes addressable, the rest of its slot poisoned
 *     (rpi_asan_slot; shadow granules are 8 bytes, so a block's last
 *     granule is cut at its size, which ASan can do for a granule's tail);
 *   - a freed block: its payload poisoned, its header (the free-list link,
 *     the word walks read) left addressable; a free headerless slot (its
 *     link in its first 16 bytes) poisoned whole, the link words unpoisoned
 *     around the library's own accesses (rpi_hl_pop, hl_put_at).
 * Chunk headers and headerless slot words are never poisoned. Without ASan
 * every macro here is ((void)0) and its arguments are not evaluated: the
 * object code is the same as without this file.
 */
#ifndef RP_ASAN_H
#define RP_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define RPI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RPI_ASAN 1
#endif
#endif
#ifndef RPI_ASAN
#define RPI_ASAN 0
#endif

#if RPI_ASAN
#include <sanitizer/asan_interface.h>
#include <stddef.h>

#define rpi_asan_poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define rpi_asan_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
/* A statement for ASan builds only. */
#define RPI_ASAN_DO(...) do { __VA_ARGS__; } while (0)

/* A slot of bytes at s holding a live block: its first used bytes (header
   and requested size) addressable, the rest poisoned (the granule the
   block ends in keeps its first bytes: the unpoison sets the granule's
   count, the poison from inside it lowers it to the block's end). */
static inline void rpi_asan_slot_(void *s, size_t used, size_t bytes)
{
    ASAN_UNPOISON_MEMORY_REGION(s, used);
    if (bytes > used) ASAN_POISON_MEMORY_REGION((char *)s + used, bytes - used);
}
#define rpi_asan_slot(s, used, bytes) rpi_asan_slot_((void *)(s), (size_t)(used), (size_t)(bytes))
#else
#define rpi_asan_poison(p, n)         ((void)0)
#define rpi_asan_unpoison(p, n)       ((void)0)
#define RPI_ASAN_DO(...)              ((void)0)
#define rpi_asan_slot(s, used, bytes) ((void)0)
#endif

/* An arena block (h: its rpi_hdr address; off: its arena's rpi_arena.off,
   RPI_AOFF for a compact header, 0 in checked pools) live with the size and
   class in its word w: rpi_asan_slot over its slot. Nothing for other
   blocks (big, malloc'd: ASan sees their own allocations). */
#define rpi_asan_arena_live(h, off, w)                                                      \
    RPI_ASAN_DO(if ((w) & RPI_F_ARENA)                                                      \
                    rpi_asan_slot((char *)(h) + (off), RPI_HDR - (off) + ((w) & RPI_SIZE_MASK), \
                                  rpi_class_bytes[((w) & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT]))
/* An arena block h (word with its class) just freed (off as above): its
   payload poisoned, the header kept addressable (the free-list link, the
   word walks read). */
#define rpi_asan_arena_freed(h, off)                                                        \
    rpi_asan_poison((char *)(h) + RPI_HDR,                                                  \
                    (off) + rpi_class_bytes[((h)->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT] - \
                        RPI_HDR)
/* A big block h (its own allocation, its rpi_big record before the
   header) with its size in its word: the allocation's bytes past the block
   poisoned (the headroom a growth by small steps gets; ASan's malloc made
   the whole allocation addressable). Nothing for other blocks. */
#define rpi_asan_big_live(h)                                                                \
    RPI_ASAN_DO(if ((h)->word & RPI_F_BIG) {                                                \
        rpi_big *bb_ = (rpi_big *)(h) - 1;                                                  \
        char *pp_ = (char *)((h) + 1);                                                      \
        rpi_asan_slot(pp_, (h)->word & RPI_SIZE_MASK,                                       \
                      (char *)bb_->raw + (size_t)(uintptr_t)bb_->pad - pp_);                \
    })
/* A compact block h just freed by a resize that moved it (arena a): given
   back to its chunk (a->cur is h: carved last) its whole slot is poisoned,
   else its payload. */
#define rpi_asan_arena_left(a, h)                                                           \
    RPI_ASAN_DO(if ((char *)(h) == (a)->cur)                                                \
                    rpi_asan_poison((char *)(h) + RPI_AOFF,                                 \
                                    rpi_class_bytes[((h)->word & RPI_CLASS_MASK) >> RPI_CLASS_SHIFT]); \
                else rpi_asan_arena_freed(h, RPI_AOFF))

#endif
