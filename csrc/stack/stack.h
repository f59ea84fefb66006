/*
 * stack.h -- whole call stacks: capture and a table of distinct stacks.
 *
 * Used by the malloc interposer (and meant for pools that record stacks, the
 * sampler and the Python hooks). Capture reads the unwind tables (.eh_frame),
 * so it works on binaries built without frame pointers: unwind.c keeps the
 * frame rule of each return address in a cache (a warm walk costs a few
 * instructions per frame) and hands the frames it cannot follow (signal
 * frames, DWARF-expression CFAs) to libunwind's unw_backtrace.
 *
 * The table stores each distinct stack once and names it by an id (1, 2, ...;
 * 0 means "none"). Ids never change and records never move, so a reader (the
 * report writer) may walk them while other threads add more.
 *
 * Safety rules, each kept by the code:
 *   - no malloc: every byte comes from mmap, so this can run inside malloc;
 *   - lookups are lock-free; an insertion takes one short spin lock, and the
 *     unwind itself always runs outside it;
 *   - re-entrancy: a capture interrupted on its own thread (a signal handler
 *     that allocates, or an allocation made by the unwinder itself) makes the
 *     inner call return 0 at once instead of unwinding or locking, and the
 *     caller falls back to its one-frame origin.
 */
#ifndef RPI_STACK_H
#define RPI_STACK_H

#include <stddef.h>
#include <stdint.h>

#define RPI_STACK_HIDDEN __attribute__((visibility("hidden")))

/* The per-thread state is initial-exec TLS in the interposer (no call, safe
   inside malloc); libringpool, which may be dlopen'ed (the Python extension)
   where static TLS is scarce, builds these files with RPI_STACK_TLS defined
   empty (csrc/poolstack.c). */
#ifndef RPI_STACK_TLS
#define RPI_STACK_TLS __attribute__((tls_model("initial-exec")))
#endif
/* RPI_STACK_HEAP_STATE (libringpool's copy, csrc/poolstack.c): the two big
   per-thread buffers (the frames and the walker's memo, about 12 KiB) live
   in heap blocks made at a thread's first capture and freed when it exits,
   reached through thread-local pointers, so that the library's thread-local
   data stays a few words: the library's code reaches one record of its own
   in the initial-exec model, and a dlopen'ed object that does so must fit
   ALL its thread-local data in glibc's small static TLS surplus
   (docs/concurrency.md). A capture whose block cannot be made gives 0. */

/* RPI_STACK_NO_MAP_HOOKS (libringpool's copy, the Python extension's): the
   build has no munmap, mremap or mprotect of its own calling
   rpi_unwind_forget_memory, so no walk trusts a stack page an earlier walk
   checked, except on the thread's own stack (unwind.c, stack_mapped_from). */

/* Most frames a stack may hold (--stack-depth is capped to this). */
#define RPI_STACK_MAX_DEPTH 256
/* Most distinct stacks; past it rpi_stack_here returns 0. */
#define RPI_STACK_MAX_STACKS (1u << 22)

/* Maps the table; 0, or -1 when mmap fails (then every call returns 0). */
RPI_STACK_HIDDEN int rpi_stack_init(void);

/* The id of the current thread's stack: at most depth frames, leaf first,
   starting at the frame whose return address is `from` (the caller of the
   allocating function; the frames of the capture itself and of the hooks
   above `from` are dropped). When `from` is not among the first frames the
   stack starts with `from` followed by the frames below the caller's own
   module's frames, [self_lo, self_hi) as given to rpi_stack_set_self (once,
   before the first capture). 0 when re-entered on this thread, when the
   table is full, or when depth < 1: the caller then records `from` alone. */
RPI_STACK_HIDDEN uint32_t rpi_stack_here(int depth, uintptr_t from);
/* The same, for a caller that knows the frame `from` returns into: sp is
   the stack pointer once that call has returned (the word below it holds
   `from`) and bp rbp's value there. The walk starts at that frame, so the
   capture's and the hooks' own frames cost nothing; when the word below
   sp is not `from`, this is rpi_stack_here. */
RPI_STACK_HIDDEN uint32_t rpi_stack_here_at(int depth, uintptr_t from, uintptr_t sp, uintptr_t bp);
RPI_STACK_HIDDEN void rpi_stack_set_self(uintptr_t self_lo, uintptr_t self_hi);

/* For pools that record stacks (csrc/poolstack.c): the id of the current
   thread's stack, at most depth frames, leaf first, starting at the first
   frame whose return address lies outside [skip_lo, skip_hi) (the
   library's own code). 0 as for rpi_stack_here. */
RPI_STACK_HIDDEN uint32_t rpi_stack_capture(int depth, uintptr_t skip_lo, uintptr_t skip_hi);

/* The id of frames[0..n) (n >= 1, n <= RPI_STACK_MAX_DEPTH), adding it when
   new; 0 when the table is full or n is out of range. */
RPI_STACK_HIDDEN uint32_t rpi_stack_intern(const uintptr_t *frames, size_t n);

/* Frames of stack id (leaf first): their number, 0 for an unknown id. */
RPI_STACK_HIDDEN size_t rpi_stack_get(uint32_t id, const uintptr_t **frames);

/* One past the largest id handed out (ids 1 .. count-1 are readable). */
RPI_STACK_HIDDEN uint32_t rpi_stack_count(void);

/* Which walker rpi_stack_here uses: 1 (default) the cached walker of
   unwind.c, falling back to libunwind for frames it does not handle; 0
   libunwind's unw_backtrace for every capture. */
RPI_STACK_HIDDEN void rpi_stack_use_fast_unwinder(int on);

/* Frames above the first kept one that may belong to the capture and the
   hooks (the caller's `from`, or the frames in its skip range). */
#define RPI_STACK_SKIP_WINDOW 16

/* The hash of a stack, folded one frame at a time (the walker hashes the
   frames it keeps as it reads them; the table hashes the same way). */
#define RPI_STACK_HASH_SEED 0x9E3779B97F4A7C15ull
#define RPI_STACK_HASH_MUL 0x5bd1e995ull   /* odd, a 32-bit immediate */
/* RPI_STACK_HASH_MUL's inverse modulo 2^64: a step taken with pc 0 is
   undone by multiplying with it. */
#define RPI_STACK_HASH_MUL_INVERSE 0x39c9eb52e59b19bdull
_Static_assert((uint64_t)(RPI_STACK_HASH_MUL * RPI_STACK_HASH_MUL_INVERSE) == 1,
               "the hash step's inverse");
static inline uint64_t rpi_stack_hash_step(uint64_t h, uintptr_t pc)
{
    return (h ^ (uint64_t)pc) * RPI_STACK_HASH_MUL;
}
/* The table's slot comes from the low bits, its tag from the high half:
   the steps' products carry every frame's bits up into the high half, so
   folding it onto the low one is mix enough. */
static inline uint64_t rpi_stack_hash_final(uint64_t h, size_t n)
{
    h ^= n;
    return h ^ (h >> 32);
}

/* What a walk of unwind.c found. */
typedef struct rpi_walk {
    const uintptr_t *frames;    /* every frame walked, leaf first (per-thread storage) */
    int n;                      /* their number */
    int start;                  /* the first frame kept; -1: `from` was not found */
    int kept;                   /* frames kept from start on (at most depth) */
    uint64_t hash;              /* rpi_stack_hash_final of the kept frames */
} rpi_walk;

/* unwind.c: the cached x86-64 walker, from its caller's caller down (leaf
   first). The frames kept start at the first one whose return address is
   `from` (from != 0), or outside [skip_lo, skip_hi) (from == 0), looked for
   among the first RPI_STACK_SKIP_WINDOW frames; at most depth (1 ..
   RPI_STACK_MAX_DEPTH) are kept, hashed as they are read. When `from` is
   not found the walk goes on to depth + RPI_STACK_SKIP_WINDOW frames,
   start is -1 and nothing is hashed. Returns 0 with *w filled; 1 when
   `reuse` is set and this thread's previous walk, made with the same
   arguments, would read exactly the same words (the caller reuses what it
   derived from that walk; *w is left alone); -1 when a frame needs the
   general unwinder (or on other architectures). rpi_unwind_init maps its
   cache (0, or -1). */
RPI_STACK_HIDDEN int rpi_unwind_init(void);
RPI_STACK_HIDDEN int rpi_unwind_fast(rpi_walk *w, uintptr_t from, uintptr_t skip_lo,
                                     uintptr_t skip_hi, int depth, int reuse);
/* rpi_stack_here's walk (stack.c), entered from unwind.c's memo check
   with the re-entrancy flag rpi_stack_busy set (it clears it): walks from
   the frame whose stack pointer (after the return) is sp and whose rbp is
   bp, i.e. rpi_stack_here's caller. */
RPI_STACK_HIDDEN uint32_t rpi_stack_walk_here(int depth, uintptr_t from, uintptr_t sp, uintptr_t bp);
/* stack.c, for unwind.c's capture (rpi_stack_here's walk when the cached
   walker may run): the id of a walk's kept frames f[0..n) whose hash is h,
   adding it when new (0: table full); and the rest of a capture whose walk
   did not end at a kept frame (r == 0: frames[0..n) walked, `from` not
   among them; r < 0: the general unwinder), which clears rpi_stack_busy.
   rpi_stack_fast_ready: the table is ready and the cached walker chosen. */
RPI_STACK_HIDDEN uint32_t rpi_stack_intern_hashed(const uintptr_t *f, size_t n, uint64_t h);
/* The frames of a stack id the table handed out (no check of the id). */
RPI_STACK_HIDDEN const uintptr_t *rpi_stack_frames_of(uint32_t id);
RPI_STACK_HIDDEN uint32_t rpi_stack_walk_rest(int r, const uintptr_t *frames, int n, int depth,
                                              uintptr_t from);
extern int rpi_stack_fast_ready RPI_STACK_HIDDEN;
/* Set while this thread captures (stack.c). */
extern __thread int rpi_stack_busy RPI_STACK_TLS RPI_STACK_HIDDEN;
/* The walk from the frame at sp (its return address at sp - 8) with rbp
   bp, keeping the frames from `from` on as rpi_unwind_fast does; no memo
   check. 0, or -1 for the general unwinder. */
RPI_STACK_HIDDEN int rpi_unwind_from(rpi_walk *w, uintptr_t sp, uintptr_t bp, uintptr_t from,
                                     int depth);
/* The stack id derived from this thread's walk just made by rpi_unwind_from:
   rpi_stack_here returns it while the memo holds (same arguments, same words
   read, same code generation), without walking. */
RPI_STACK_HIDDEN void rpi_unwind_keep_id(uint32_t id);
/* Every thread's memo void (the walker was switched). */
RPI_STACK_HIDDEN void rpi_unwind_forget_walks(void);
/* Memory may have been unmapped or made unreadable (munmap, mprotect, ...:
   csrc/preload/maps.c): every thread's memo void, and the stack pages its
   walks found readable checked again; [lo, hi) unmapped (or lo == hi: not
   known), so the cached rules of addresses in it that lay outside every
   module go (a module may be mapped there next). Async-signal-safe. */
RPI_STACK_HIDDEN void rpi_unwind_forget_memory(uintptr_t lo, uintptr_t hi);
/* Code may have been unmapped (dlclose): forget the cached frame rules,
   which are keyed by address, and every thread's memo. */
RPI_STACK_HIDDEN void rpi_unwind_forget_code(void);
/* The function (FDE) containing address pc: 0 and [*lo, *hi), or -1. */
RPI_STACK_HIDDEN int rpi_unwind_function_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi);

/* The top of this thread's stack for the general unwinder (unwind.c keeps
   it with the walk buffers), NULL when there is none (the thread is past
   its exit's key destructors, or mmap failed; libringpool's copy, which
   runs the general unwinder on the thread's own stack). */
RPI_STACK_HIDDEN void *rpi_unwind_side_stack(void);

/* Fork protection: hold the insertion lock across fork(). */
RPI_STACK_HIDDEN void rpi_stack_lock(void);
RPI_STACK_HIDDEN void rpi_stack_unlock(void);

#endif /* RPI_STACK_H */
