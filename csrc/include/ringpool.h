/*
 * ringpool.h -- pooled allocation with origin tags and leak auditing.
 *
 * Every block handed out by a pool carries a 32-byte header (x86-64) placed
 * immediately before the payload:
 *
 *     prev, next   links in the pool's ring (circular, doubly linked, with a
 *                  sentinel in the pool): O(1) insert and unlink, and a walk
 *                  from the sentinel visits every outstanding block once;
 *     origin       the block's tag record: tag string, the tag's counters and
 *                  the owning pool (so rp_free needs no pool argument);
 *     size         the requested size (low 48 bits) and block flags
 *                  (backing, alignment, destructor, checked).
 *
 * Small blocks of arena pools that are not checked keep only origin and
 * size (16 bytes) and are found through their chunks instead of the ring;
 * those of 1 to 16 bytes have no header (a 32-bit word in their chunk).
 * Payloads are aligned to alignof(max_align_t).  The full contract -- size 0,
 * NULL, what a bulk destroy does to pointers still held, which calls are safe
 * from which threads -- is in docs/contract.md; this file is the index.
 *
 * Conventions:
 *   - plain allocating calls never return NULL: on failure they call the
 *     out-of-memory handler (rp_set_oom_handler); if it returns, they abort;
 *   - the _noexc twins return NULL and change nothing;
 *   - calls returning int return 0 on success and a negative rp_error code;
 *   - misuse (bad alignment, double free, foreign or corrupt blocks) goes to
 *     the error handler (rp_set_error_handler), never to the OOM handler.
 *   - a tag's content is copied once, and its pointer cached: pass literals
 *     (the RP_* macros do), strings that neither change nor die while the
 *     pool may see them, or rp_pool_intern_tag()'s pool-owned copy; checked
 *     pools report a tag buffer whose content changed (RP_EINVAL).
 */
#ifndef RINGPOOL_H
#define RINGPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RP_BUILDING) && defined(__GNUC__)
#define RP_API __attribute__((visibility("default")))
#elif defined(__GNUC__) && !defined(__clang__) && defined(__PIC__) && !defined(RP_PLT)
/* Position-independent callers (PIE programs, shared objects) call the
   library through their GOT, not a PLT stub: one jump less per call with
   libringpool.so; with libringpool.a the linker makes the calls direct.
   Define RP_PLT to keep the PLT (lazy binding of these functions). */
#define RP_API __attribute__((noplt))
#else
#define RP_API
#endif

/* The header's macros cast with static_cast in C++, so that programs built
   with -Wold-style-cast compile them cleanly. */
#ifdef __cplusplus
#define RP_CAST_(type, value) (static_cast<type>(value))
#else
#define RP_CAST_(type, value) ((type)(value))
#endif

#define RINGPOOL_VERSION_MAJOR 0
#define RINGPOOL_VERSION_MINOR 1
#define RINGPOOL_VERSION_PATCH 0

/* ---------------------------------------------------------------- Errors */
/* One table: the enum values (stable, negative) and their messages. */
#define RP_ERROR_MAP(X)                                                        \
    X(ENOMEM,     -1,  "out of memory")                                        \
    X(EINVAL,     -2,  "invalid argument")                                     \
    X(EALIGN,     -3,  "alignment is not a power of two or is too large")      \
    X(EOVERFLOW,  -4,  "size overflows the largest supported block")          \
    X(EDOUBLEFREE,-5,  "block was already freed")                              \
    X(EFOREIGN,   -6,  "pointer was not handed out by any ringpool pool")      \
    X(ECORRUPT,   -7,  "block header is corrupt (buffer underflow?)")          \
    X(EWRONGPOOL, -8,  "block belongs to a different pool")                    \
    X(EDESTROYED, -9,  "block's pool was destroyed")                           \
    X(EIO,        -10, "report could not be written")                          \
    X(ENOTFOUND,  -11, "no such cleanup or destructor")                        \
    X(EBUSY,      -12, "pool is busy (call from inside a walk or cleanup)")

typedef enum rp_error {
    RP_OK = 0,
#define RP_ERROR_ENUM_(name, value, msg) RP_##name = value,
    RP_ERROR_MAP(RP_ERROR_ENUM_)
#undef RP_ERROR_ENUM_
    RP_ERROR_MIN_ = -12
} rp_error;

/* Message for an rp_error code; "unknown error" for anything else. Never NULL. */
RP_API const char *rp_strerror(int error);
/* Symbolic name ("RP_EDOUBLEFREE"); "RP_OK" for 0, "RP_UNKNOWN" otherwise. */
RP_API const char *rp_error_name(int error);

/* Out-of-memory handler: called by the plain forms before they would return
   NULL. call is the API name ("rp_alloc"), size the bytes asked for, tag the
   block's tag (may be NULL). A handler that returns declines to escape: the
   plain call then aborts. Returns the previous handler; NULL restores the
   default, which prints one line to stderr and aborts. */
typedef void (*rp_oom_handler)(const char *call, size_t size, const char *tag);
RP_API rp_oom_handler rp_set_oom_handler(rp_oom_handler handler);

/* Misuse handler: error is an rp_error, message one line without newline
   (pool names and tags in it are escaped by the CLI's rule, docs/cli.md:
   a backslash as \\, newline, CR and tab as \n, \r, \t, other control
   characters as \xNN, bytes that are not UTF-8 as \udcNN),
   block the pointer concerned (never dereferenced by the handler's caller
   after a report). The default prints and aborts; a handler that returns
   makes the offending call a no-op (NULL where it returns a pointer). */
typedef void (*rp_error_handler)(int error, const char *message, const void *block);
RP_API rp_error_handler rp_set_error_handler(rp_error_handler handler);

/* -------------------------------------------------------- Pool lifecycle */
typedef struct rp_pool rp_pool;

enum {
    RP_POOL_UNSYNC  = 1u << 0,  /* no lock: one thread at a time (caller's duty) */
    RP_POOL_CHECKED = 1u << 1,  /* detect double free, foreign and corrupt blocks */
    RP_POOL_ARENA   = 1u << 2,  /* carve blocks from chunks; O(chunks) destroy */
    RP_POOL_STACKS  = 1u << 3   /* each block records its allocation stack; reports
                                   open every tag into the stacks that reached it
                                   ($RINGPOOL_POOL_STACKS sets it for every pool) */
};
/* With RP_POOL_STACKS: at most n frames per stack (1..256, larger is capped),
   or'ed into the flags. Without it the depth is the parent's (a child pool),
   else $RINGPOOL_POOL_STACKS's, else 64. */
#define RP_POOL_STACK_DEPTH(n)   ((RP_CAST_(unsigned, n) & 511u) << 20)
#define RP_POOL_STACK_DEPTH_MASK (511u << 20)

typedef struct rp_pool_options {
    unsigned flags;            /* RP_POOL_* */
    size_t   chunk_size;       /* arena: bytes per chunk; 0 = 1 MiB; above
                                  RP_MAX_SIZE & ~15: RP_EINVAL at creation */
    size_t   keep_bytes;       /* arena: chunk bytes kept by rp_pool_reset; 0 = 4 MiB,
                                  SIZE_MAX = keep all */
} rp_pool_options;

/* A new empty pool named name (copied; NULL = "(unnamed)"). NULL on OOM, or
   after an RP_EINVAL report for options that cannot work. */
RP_API rp_pool *rp_pool_create(const char *name);
RP_API rp_pool *rp_pool_create_ex(const char *name, const rp_pool_options *opts);
/* A pool destroyed or reset together with parent (children go first). */
RP_API rp_pool *rp_pool_create_child(rp_pool *parent, const char *name);
RP_API rp_pool *rp_pool_create_child_ex(rp_pool *parent, const char *name,
                                        const rp_pool_options *opts);
/* Runs cleanups (last registered first), destroys children, writes the report
   named by $RINGPOOL_REPORT if set, then frees every outstanding block and the
   pool. Every pointer into the pool is dangling afterwards. NULL is a no-op. */
RP_API void rp_pool_destroy(rp_pool *pool);
/* Like destroy, but the pool stays usable and empty; arena chunks are kept up
   to options.keep_bytes. Tag allocation totals and peaks are kept. */
RP_API int rp_pool_reset(rp_pool *pool);
RP_API const char *rp_pool_name(const rp_pool *pool);
RP_API rp_pool *rp_pool_parent(const rp_pool *pool);

/* Cleanups run last-registered-first, before children and blocks are freed,
   and are consumed by destroy and reset. A cleanup may allocate from and free
   to its own pool. remove returns RP_ENOTFOUND if (fn, arg) is not registered. */
typedef void (*rp_cleanup_fn)(void *arg);
RP_API int rp_pool_add_cleanup(rp_pool *pool, rp_cleanup_fn fn, void *arg);
RP_API int rp_pool_remove_cleanup(rp_pool *pool, rp_cleanup_fn fn, void *arg);

/* A destructor run with the block's payload just before its memory goes: on
   rp_free, on destroy and on reset. fn == NULL removes it. */
typedef void (*rp_destructor_fn)(void *block);
RP_API int rp_set_destructor(void *block, rp_destructor_fn fn);

/* ---------------------------------------------------------- Allocation */
/* Blocks are freed with rp_free whatever call made them. */
RP_API void *rp_alloc(rp_pool *pool, size_t size, const char *tag);
RP_API void *rp_calloc(rp_pool *pool, size_t n, size_t size, const char *tag);
/* realloc semantics; keeps the tag (and the alignment of aligned blocks).
   block == NULL allocates an "(untagged)" block in pool; otherwise pool is only
   checked (checked pools) and may be NULL. size 0 keeps a valid 0-byte block. */
RP_API void *rp_resize(rp_pool *pool, void *block, size_t size);
/* NULL is a no-op. The pool is found from the header. */
RP_API void  rp_free(void *block);
RP_API char *rp_strdup(rp_pool *pool, const char *s, const char *tag);
/* Concatenates n NUL-terminated strings given as the variadic arguments. */
RP_API char *rp_strconcat(rp_pool *pool, const char *tag, int n, ...);
RP_API void *rp_memdup(rp_pool *pool, const void *p, size_t size, const char *tag);
/* align: any power of two up to RP_MAX_ALIGN; anything else is RP_EALIGN
   (error handler, then NULL). */
RP_API void *rp_alloc_aligned(rp_pool *pool, size_t align, size_t size, const char *tag);

#define RP_MAX_ALIGN (RP_CAST_(size_t, 1) << 26)      /* 64 MiB */
#define RP_MAX_SIZE  ((RP_CAST_(size_t, 1) << 47) - 1) /* larger requests fail as OOM */

/* ------------------------------------------------------- _noexc twins */
/* Same as above, but NULL on failure, with nothing changed (a failed resize
   leaves the old block valid, linked and counted). */
RP_API void *rp_alloc_noexc(rp_pool *pool, size_t size, const char *tag);
RP_API void *rp_calloc_noexc(rp_pool *pool, size_t n, size_t size, const char *tag);
RP_API void *rp_resize_noexc(rp_pool *pool, void *block, size_t size);
RP_API char *rp_strdup_noexc(rp_pool *pool, const char *s, const char *tag);
RP_API char *rp_strconcat_noexc(rp_pool *pool, const char *tag, int n, ...);
RP_API void *rp_memdup_noexc(rp_pool *pool, const void *p, size_t size, const char *tag);
RP_API void *rp_alloc_aligned_noexc(rp_pool *pool, size_t align, size_t size, const char *tag);

/* Tagging macros: the tag is the call site, "file:line". */
#define RP_STR2_(x) #x
#define RP_STR_(x) RP_STR2_(x)
#define RP_LOCATION __FILE__ ":" RP_STR_(__LINE__)
#define RP_ALLOC(pool, size)             rp_alloc((pool), (size), RP_LOCATION)
#define RP_ALLOC_NOEXC(pool, size)       rp_alloc_noexc((pool), (size), RP_LOCATION)
#define RP_CALLOC(pool, n, size)         rp_calloc((pool), (n), (size), RP_LOCATION)
#define RP_CALLOC_NOEXC(pool, n, size)   rp_calloc_noexc((pool), (n), (size), RP_LOCATION)
#define RP_STRDUP(pool, s)               rp_strdup((pool), (s), RP_LOCATION)
#define RP_STRDUP_NOEXC(pool, s)         rp_strdup_noexc((pool), (s), RP_LOCATION)
#define RP_MEMDUP(pool, p, size)         rp_memdup((pool), (p), (size), RP_LOCATION)
#define RP_MEMDUP_NOEXC(pool, p, size)   rp_memdup_noexc((pool), (p), (size), RP_LOCATION)
#define RP_ALLOC_ALIGNED(pool, a, size)  rp_alloc_aligned((pool), (a), (size), RP_LOCATION)
/* (variadic: C99 and C++11 on; older dialects call rp_strconcat itself) */
#if (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L) || \
    (defined(__cplusplus) && __cplusplus >= 201103L)
#define RP_STRCONCAT(pool, n, ...)       rp_strconcat((pool), RP_LOCATION, (n), __VA_ARGS__)
#endif

/* ------------------------------------------------------- Default pool */
/* The caml_stat_* model. Before rp_stat_create_pool() these are plain
   malloc/free; afterwards blocks go to the default pool (tag "rp_stat"), and
   rp_stat_destroy_pool() frees everything it holds (reporting first if
   $RINGPOOL_REPORT is set). rp_stat_free/resize of a block allocated before
   rp_stat_create_pool() is undefined, as in OCaml. create twice is a no-op. */
RP_API void  rp_stat_create_pool(void);
RP_API void  rp_stat_destroy_pool(void);
RP_API rp_pool *rp_stat_pool(void);           /* NULL when there is none */
RP_API void *rp_stat_alloc(size_t size);
RP_API void *rp_stat_alloc_noexc(size_t size);
RP_API void *rp_stat_calloc(size_t n, size_t size);
RP_API void *rp_stat_calloc_noexc(size_t n, size_t size);
RP_API void *rp_stat_resize(void *b, size_t size);
RP_API void *rp_stat_resize_noexc(void *b, size_t size);
RP_API void  rp_stat_free(void *b);
RP_API char *rp_stat_strdup(const char *s);
RP_API char *rp_stat_strdup_noexc(const char *s);
RP_API char *rp_stat_strconcat(int n, ...);
RP_API char *rp_stat_strconcat_noexc(int n, ...);

/* --------------------------------------------------------------- Blocks */
RP_API size_t      rp_block_size(const void *block);  /* requested size */
RP_API const char *rp_block_tag(const void *block);   /* "(untagged)" for NULL tags */
RP_API rp_pool    *rp_block_pool(const void *block);

/* ---------------------------------------------------------------- Audit */
typedef struct rp_tag_stat {
    const char *tag;        /* valid while the pool lives */
    size_t      blocks;     /* outstanding */
    size_t      bytes;      /* outstanding, requested sizes */
    size_t      peak_bytes; /* highest value bytes ever reached */
    uint64_t    allocs;     /* blocks ever allocated under the tag (resizes not counted) */
} rp_tag_stat;

/* Fills up to cap entries (in first-use order); returns the number of tags.
   O(tags): never walks the blocks. */
RP_API size_t rp_pool_stats(rp_pool *pool, rp_tag_stat *out, size_t cap);
/* Pools that record stacks (RP_POOL_STACKS): one entry per (tag, stack)
   that allocated, in the order each first did; frames are return
   addresses, innermost first (the caller of rp_alloc first), valid for the
   life of the process; tag valid while the pool lives. Fills up to cap
   entries and returns their number (0 for a pool without stacks). O(entries). */
typedef struct rp_stack_stat {
    const char        *tag;
    const void *const *frames;   /* NULL when no stack could be taken */
    size_t             depth;    /* frames */
    size_t             blocks;   /* outstanding */
    size_t             bytes;    /* outstanding, requested sizes */
    uint64_t           allocs;   /* blocks ever allocated from this stack */
} rp_stack_stat;
RP_API size_t rp_pool_stack_stats(rp_pool *pool, rp_stack_stat *out, size_t cap);
/* Outstanding blocks; bytes (requested) if non-NULL. O(tags): the bytes
   are the pool's own count, the blocks a sum over its tag records; never
   walks the blocks. */
RP_API size_t rp_pool_outstanding(rp_pool *pool, size_t *bytes);

typedef struct rp_pool_info {
    size_t   struct_size;     /* set by the caller: sizeof(rp_pool_info) */
    unsigned version;         /* filled: 1 */
    unsigned flags;           /* the pool's RP_POOL_* flags */
    size_t   blocks, bytes, peak_bytes;
    uint64_t allocs;
    size_t   tags;
    size_t   children;
    size_t   reserved_bytes;  /* bytes obtained from the system: headers, chunks, slack */
    size_t   chunks;          /* arena chunks held (0 for malloc backing; the
                                 64 KiB chunks of headerless blocks count in
                                 reserved_bytes only) */
} rp_pool_info;
RP_API int rp_pool_get_info(rp_pool *pool, rp_pool_info *info);

/* Visits every outstanding block once; stops at the first non-zero return
   and returns it (0 after a full walk). The visitor runs without the pool's
   lock: it may allocate from and free to the pool (not destroy or reset it:
   RP_EBUSY), and may exit(). Checked pools: RP_ECORRUPT at a corrupt link. */
typedef int (*rp_visit_fn)(void *block, size_t size, const char *tag, void *arg);
RP_API int rp_pool_walk(rp_pool *pool, rp_visit_fn visit, void *arg);

/* JSON report (docs/report-format.md) to path ("-" = stdout). Blocks are
   listed when $RINGPOOL_REPORT_BLOCKS=1. 0 or RP_EIO/RP_ENOMEM. Devices and
   FIFOs (/dev/stderr too) are written straight in; a regular file is
   replaced atomically; a symbolic link to anything else is refused. */
RP_API int rp_pool_write_report(rp_pool *pool, const char *path);
/* Same, with "children" nested and blocks listed or not, explicitly. */
enum { RP_REPORT_BLOCKS = 1u << 0, RP_REPORT_CHILDREN = 1u << 1 };
RP_API int rp_pool_write_report_ex(rp_pool *pool, const char *path, unsigned report_flags);
/* Walks the ring (and an arena pool's chunks) and compares what it finds with
   the counters; 0 when consistent, else
   RP_ECORRUPT (each finding also goes to the error handler, called after the
   locks are released). Checked pools: never follows an unvalidated link. */
RP_API int rp_pool_check(rp_pool *pool);
/* A pool-owned copy of s (one per distinct content); NULL on OOM. */
RP_API const char *rp_pool_intern_tag(rp_pool *pool, const char *s);

/* Writes a report for every live pool now, as at exit ($RINGPOOL_REPORT
   pattern; nothing when unset). Returns the number of reports written. */
RP_API int rp_report_live_pools(void);

/* ---------------------------------------------------- Sampling (memprof) */
/* Statistical allocation profiling after OCaml's Gc.Memprof; the model, the
   estimator and the rules are in docs/memprof.md. Each allocated byte is
   sampled with probability rate; an allocation of n bytes receives
   k ~ Binomial(n, rate) samples, and those with k >= 1 are offered to the
   tracker; k / rate estimates the block's bytes without bias. One profile
   runs at a time, for every pool and every thread. */
typedef struct rp_memprof rp_memprof;

typedef struct rp_memprof_allocation {
    void        *block;          /* the payload handed to the caller */
    size_t       size;           /* requested bytes */
    size_t       samples;        /* k >= 1 */
    const char  *tag;            /* "(untagged)" for NULL tags */
    rp_pool     *pool;
    void *const *callstack;      /* return addresses, innermost first; valid
                                    during the callback only */
    size_t       callstack_len;  /* <= params.callstack_size */
} rp_memprof_allocation;

typedef struct rp_memprof_tracker {
    /* Runs on the allocating thread, under no ringpool lock, with sampling
       off on that thread; may allocate and free through ringpool. Returns the
       user value kept for the block, or NULL not to track it. */
    void *(*alloc)(const rp_memprof_allocation *allocation, void *data);
    /* A tracked block went: rp_free, a resize (a resize is a dealloc of the
       old block, then the new block is sampled as a fresh allocation),
       or the bulk free of its pool's destroy or reset. Also called once, at
       once, with the user value of a sample whose profile was stopped or
       replaced while its alloc callback ran (that sample is discarded).
       May be NULL. */
    void  (*dealloc)(void *user, void *data);
    void  *data;                 /* passed to both */
} rp_memprof_tracker;

typedef struct rp_memprof_params {
    double             rate;            /* per byte, 0 < rate <= 1 */
    size_t             callstack_size;  /* frames to capture, 0..RP_MEMPROF_MAX_STACK */
    uint64_t           seed;            /* 0: $RINGPOOL_MEMPROF_SEED, else random */
    rp_memprof_tracker tracker;
} rp_memprof_params;
#define RP_MEMPROF_MAX_STACK 256

/* Starts a profile: 0 and *out set, RP_EINVAL (bad rate, stack size or NULL
   argument), RP_EBUSY (a profile is running) or RP_ENOMEM. */
RP_API int rp_memprof_start(const rp_memprof_params *params, rp_memprof **out);
/* Stops the running profile: no new samples; its tracked blocks still get
   their dealloc calls until it is discarded. RP_ENOTFOUND if none runs. */
RP_API int rp_memprof_stop(void);
/* Forgets a stopped profile's tracked blocks without calling the tracker and
   frees it. RP_EBUSY if it is still running, RP_EINVAL for NULL. Its tracker
   may still be called after this returns, by other threads: with a sample
   drawn before the stop, or with the value of a block whose free took it from
   the table before the discard; keep the tracker's data valid. */
RP_API int rp_memprof_discard(rp_memprof *profile);
/* The running profile, or NULL. */
RP_API rp_memprof *rp_memprof_running(void);
/* Blocks a profile tracks now. */
RP_API size_t rp_memprof_tracked(const rp_memprof *profile);

/* ------------------------------------------------------------- Testing */
/* Fault injection: arms a countdown so that the nth underlying allocation
   from now (1 = the next one) fails, and, if sticky, every one after it.
   n <= 0 disarms. Costs one predictable branch per allocation while disarmed.
   Counted as underlying allocations: the library's malloc, calloc and
   realloc calls, and each chunk an arena pool takes for headerless blocks
   (and the first one's reservation of their address space); a refused
   chunk gives the pool blocks with a header until its reset. */
RP_API void rp_debug_fail_after(long n, int sticky);
/* Underlying allocations attempted since the last rp_debug_fail_after() that
   armed the countdown (counted only while armed: arm with a huge n to count). */
RP_API unsigned long rp_debug_alloc_count(void);
/* Non-zero once an armed countdown has made an allocation fail. */
RP_API int rp_debug_fail_fired(void);

#ifdef __cplusplus
}
#endif
#endif /* RINGPOOL_H */
