/*
 * rpp.h -- internals of libringpool-preload.so, the malloc interposer.
 *
 * Three parts, one file each:
 *   hooks.c   the interposed malloc family, bootstrap, configuration, fork
 *             and signal handling (the only exported symbols);
 *   table.c   the side tables: blocks by pointer and call sites by return
 *             address, both sharded, both stored in mmap'd memory;
 *   report.c  the JSON report, written with write(2) from a static buffer.
 *
 * Invariants:
 *   - nothing here calls malloc or stdio; every byte of bookkeeping comes
 *     from mmap, so the program's heap holds only the program's blocks;
 *   - a block is in the pointer table from just after the real allocator
 *     returned it until just before it is handed back to the real free (so
 *     an address can never be in the table twice, even when another thread
 *     gets the same address right after a free);
 *   - a site's outstanding blocks and bytes are the table's entries that
 *     name it, counted when a report is taken (rpp_outstanding_begin); only
 *     what the table cannot tell, the allocations ever made at a site and
 *     their bytes, is counted as blocks are recorded.
 *
 * Prefix: rpp_ for cross-file internals (hidden visibility), static for
 * file-local helpers.
 */
#ifndef RPP_H
#define RPP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "module.h"

#define RPP_HIDDEN __attribute__((visibility("hidden")))
#define RPP_LIKELY(x) __builtin_expect(!!(x), 1)
#define RPP_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------- per-thread state
 * One word per thread, changed only by that thread and by signal handlers
 * running on it:
 *   RPP_IN    the thread is inside the side-table bookkeeping (table.c);
 *   RPP_BUSY  the interposer itself is running code that may allocate (its
 *             constructor, the report writer): allocations pass through;
 *   RPP_RESOLVING  this thread is resolving the real functions (dlsym):
 *             allocations come from the bootstrap buffer;
 *   RPP_PEND  one unit per operation a signal handler deferred because it
 *             interrupted the bookkeeping (hooks.c queues them).
 * One word, so the hooks' fast path tests a single value for all of it.
 * A hook that finds IN or pending work does not touch the tables: it queues
 * the operation, and the interrupted code runs it when it leaves the
 * bookkeeping (rpp_leave), so a handler never waits for a lock its own
 * thread holds and never edits a table or a counter half-way through an
 * update. Pending units are added and IN is removed by single
 * read-modify-write instructions, which a signal cannot split. */
#define RPP_IN 1u
#define RPP_BUSY 2u
#define RPP_RESOLVING 4u
#define RPP_PEND 8u

#define rpp_tls_state (rpp_tls.state)
/* The thread's words the hooks read on every call, in one initial-exec
   TLS block: a shared object finds each TLS variable's offset in its GOT,
   so one block costs one GOT load per hook instead of one per variable.
   The fields are named by the macros beside their comments below. */
#define RPP_TLS_CACHE 256u
typedef struct rpp_cache_entry {
    uintptr_t pc;
    uint32_t id;
} rpp_cache_entry;
struct rpp_counts_block;
typedef struct rpp_thread {
    rpp_cache_entry cache[RPP_TLS_CACHE];   /* rpp_tls_cache (first: no offset to add) */
    unsigned state;                 /* rpp_tls_state */
    int counts_done;                /* table.c: counts on the shared records */
    void *origin;                   /* hooks.c: operator new's caller */
    uint64_t sample_left;           /* rpp_sample_left (sample.c) */
    struct rpp_counts_block *counts;   /* table.c: the counter deltas */
} rpp_thread;
RPP_HIDDEN extern __thread rpp_thread rpp_tls __attribute__((tls_model("initial-exec")));

/* Runs the operations handlers queued, then drops IN (hooks.c). */
RPP_HIDDEN void rpp_leave_slow(void);

/* Enter the bookkeeping; st is the state read at the hook's start (0 or
   RPP_BUSY: hooks defer when IN or pending units are set). */
static inline void rpp_enter(unsigned st)
{
    rpp_tls_state = st | RPP_IN;
    atomic_signal_fence(memory_order_seq_cst);
}

static inline void rpp_leave(void)
{
    atomic_signal_fence(memory_order_seq_cst);
#if defined(__x86_64__)
    /* one instruction: a handler's pending unit cannot slip in between the
       read and the write, as it could with a plain load and store */
    __asm__ goto("subl $1, %0\n\tjnz %l[slow]" : : "m"(rpp_tls_state) : "memory", "cc" : slow);
    return;
slow:
    rpp_leave_slow();
#else
    if (__atomic_sub_fetch(&rpp_tls_state, RPP_IN, __ATOMIC_RELAXED) != 0)
        rpp_leave_slow();
#endif
}

/* rpp_leave for a caller that runs the slow part itself, in tail position:
   drops IN and returns 1, or 0 when operations queued by signal handlers
   (or BUSY) are left, and then rpp_leave_slow must run (IN is dropped
   already, as rpp_leave_slow expects). */
static inline int rpp_leave_quick(void)
{
    atomic_signal_fence(memory_order_seq_cst);
#if defined(__x86_64__)
    __asm__ goto("subl $1, %0\n\tjnz %l[slow]" : : "m"(rpp_tls_state) : "memory", "cc" : slow);
    return 1;
slow:
    return 0;
#else
    return __atomic_sub_fetch(&rpp_tls_state, RPP_IN, __ATOMIC_RELAXED) == 0;
#endif
}

/* ------------------------------------------------------------ table.c */
/* A call site: the return address into the caller of malloc & co. Sites live
   in one mmap'd array and never move; site 0 collects allocations made once
   the array is full (reported as module "(overflow)"). The counters here are
   the shared part: threads keep pending deltas of their own (table.c), so
   read them with rpp_site_read. Outstanding blocks and bytes are not
   counters: they are read off the block table (rpp_outstanding_begin). */
typedef struct rpp_site {
    uintptr_t pc;
    _Atomic uint64_t allocs;  /* blocks ever allocated here (realloc included) */
    _Atomic uint64_t alloc_bytes;  /* their requested sizes, summed */
} rpp_site;

#define RPP_MAX_SITES (1u << 20)

typedef struct rpp_block {
    size_t size;
    uint32_t site;
} rpp_block;

/* Maps the tables; 0 or -1 when mmap fails. */
RPP_HIDDEN int rpp_table_init(void);
/* Site id for a return address (creates it): a per-thread direct-mapped
   cache, inline here, in front of the shared map (table.c). */
#define rpp_tls_cache (rpp_tls.cache)
RPP_HIDDEN uint32_t rpp_site_for_slow(uintptr_t pc, uint64_t h);

/* One multiplication (Fibonacci hashing): the cache slot is the top 8
   bits, the shared map uses the bits from 20 up (table.c). */
static inline uint64_t rpp_mix(uintptr_t x)
{
    return (uint64_t)x * 0x9E3779B97F4A7C15ull;
}
_Static_assert(RPP_TLS_CACHE == 256u, "the cache slot is the hash's top 8 bits");
static inline size_t rpp_cache_slot(uint64_t h) { return (size_t)(h >> 56); }

static inline uint32_t rpp_site_for(uintptr_t pc)
{
    uint64_t h = rpp_mix(pc);
    const rpp_cache_entry *c = &rpp_tls_cache[rpp_cache_slot(h)];
    if (RPP_LIKELY(c->pc == pc))
        return c->id;
    return rpp_site_for_slow(pc, h);
}
/* Records block p (size bytes) under site and, when count is non-zero,
   counts it among the site's allocations (0 puts back a block that a failed
   realloc took out). 0, or -1 when the table could not grow: then the block
   stays untracked, is not counted, and is added to rpp_stat.dropped. */
RPP_HIDDEN int rpp_track(void *p, size_t size, uint32_t site, int count);
/* Removes p; 1 and *out filled when it was tracked, 0 otherwise. */
RPP_HIDDEN int rpp_untrack(void *p, rpp_block *out);
RPP_HIDDEN void rpp_count_alloc(uint32_t site, size_t size);
/* Removes p: 1 when it was tracked. Nothing else to do: a block that left
   the table is no longer outstanding anywhere. */
RPP_HIDDEN int rpp_forget(void *p);
/* The hooks' common cases, each done whole or not at all, so that a hook
   calls the general function above only in tail position (then its fast
   path saves no registers): rpp_track_try inserts p (1) or changes
   nothing (0: the shard's lock is taken, it must grow, p is there, the
   size does not fit); rpp_count_try counts an allocation in the thread's
   delta slot (1) or not (0: no block yet, or the slot is another site's);
   rpp_forget_try is rpp_forget (1, 0) or -1 when another thread holds the
   shard's lock (nothing done), or 2 when p's entry is not the last of its
   probe run: then the shard's lock is held, and rpp_forget_finish(p, *hole)
   closes the hole (the backward shift, out of the common path, which then
   needs few registers). */
RPP_HIDDEN int rpp_track_try(void *p, size_t size, uint32_t site);
RPP_HIDDEN int rpp_count_try(uint32_t site, size_t size);
RPP_HIDDEN int rpp_forget_try(void *p, size_t *hole);
RPP_HIDDEN void rpp_forget_finish(void *p, size_t hole);
/* Number of site ids handed out (some may still be initialising). */
RPP_HIDDEN uint32_t rpp_site_count(void);
/* A site's counters: allocations from the shared record plus every
   thread's pending deltas, outstanding blocks and bytes from the count of
   the table's entries that rpp_outstanding_begin took (0 without one). */
typedef struct rpp_site_counts {
    uintptr_t pc;
    int64_t blocks, bytes;
    uint64_t allocs, alloc_bytes;
} rpp_site_counts;
RPP_HIDDEN void rpp_site_read(uint32_t id, rpp_site_counts *out);
/* Counts the block table's entries per site, for the rpp_site_read calls
   up to rpp_outstanding_end (the report writer; one at a time). Takes no
   lock and calls nothing but mmap, so it may run in a signal handler: the
   tables are read with atomic loads, and a table that grew is emptied but
   never unmapped. Exact once the other threads are quiet; a report taken
   while they allocate can be off by the calls in flight. 0, or -1 when the
   count's memory could not be mapped (then every site reads 0). */
RPP_HIDDEN int rpp_outstanding_begin(void);
RPP_HIDDEN void rpp_outstanding_end(void);
/* In a fork child: hand back the counter blocks of threads that are gone. */
RPP_HIDDEN void rpp_counts_after_fork_child(void);
/* Fork protection: take every table lock / release them. */
RPP_HIDDEN void rpp_table_lock_all(void);
RPP_HIDDEN void rpp_table_unlock_all(void);

/* Process-wide event counters (relaxed atomics). */
typedef struct rpp_stats {
    _Atomic uint64_t untracked_frees;  /* free/realloc of pointers never seen */
    _Atomic uint64_t dropped;          /* blocks not tracked: table mmap failed */
    _Atomic uint64_t bootstrap_bytes;  /* served from the static buffer */
} rpp_stats;
RPP_HIDDEN extern rpp_stats rpp_stat;

/* ------------------------------------------------------------ stacks.c */
/* Whole stacks (csrc/stack): sites keyed by a stack id carry this bit, which
   no user-space return address has. */
#define RPP_STACK_BIT ((uintptr_t)1 << 63)
#define RPP_STACK_KEY(id) (RPP_STACK_BIT | (uintptr_t)(id))
/* Frames recorded per block (RINGPOOL_PRELOAD_STACK_DEPTH); 1 = the caller only. */
#ifndef RPP_DEFAULT_STACK_DEPTH
#define RPP_DEFAULT_STACK_DEPTH 1
#endif
RPP_HIDDEN extern int rpp_stack_depth;
/* Reads RINGPOOL_PRELOAD_STACK_DEPTH and maps the stack table (on failure,
   one line on stderr and depth 1). */
RPP_HIDDEN void rpp_stacks_init(void);
/* Site key of the current stack starting at return address pc. */
RPP_HIDDEN uintptr_t rpp_stack_key(uintptr_t pc);
/* The site of the current stack from a hook whose frame pointer is fp
   (see stacks.c); the site of pc alone when no stack can be captured. */
RPP_HIDDEN uint32_t rpp_stack_site_at(uintptr_t pc, const uintptr_t *fp);
/* A site key's frames (leaf first): a stack key's stack, or the key itself. */
RPP_HIDDEN size_t rpp_site_frames(uintptr_t key, const uintptr_t **frames, uintptr_t *one);

/* ------------------------------------------------------------ sample.c */
/* Sampling mode (RINGPOOL_PRELOAD_SAMPLE_RATE): only blocks that receive at
   least one sample are tracked, in sample.c's own table. */
RPP_HIDDEN extern int rpp_sampling;          /* 0: exact mode */
RPP_HIDDEN extern double rpp_sample_rate;
/* The thread's countdown: bytes until (and including) its next sampled byte,
   >= 1 once the thread's stream is seeded; 0 before that, and always in the
   exact mode, so that every hook's countdown test fails there and the hook
   takes its general path. Changed only by the thread and its signal
   handlers. */
#define rpp_sample_left (rpp_tls.sample_left)
RPP_HIDDEN void rpp_sample_init(void);       /* reads the environment */
/* Makes the free filter live (sampling mode, at the end of the resolution):
   the granules of [boot_lo, boot_hi) stay marked for good, so the hooks'
   short paths never hand a bootstrap block to the real allocator. */
RPP_HIDDEN void rpp_sample_publish(const void *boot_lo, const void *boot_hi);
/* Charges a block of size bytes to the countdown when none of its bytes is
   sampled: 1 (charged), else 0 (nothing changed). One compare and branch:
   an unseeded thread (0) always gets 0. */
static inline int rpp_sample_skip(size_t size)
{
    uint64_t left = rpp_sample_left;
    if (RPP_LIKELY((uint64_t)size < left)) {
        rpp_sample_left = left - (uint64_t)size;
        return 1;
    }
    return 0;
}
/* The samples of a block of size bytes whose countdown test failed: seeds
   the thread's stream on first use, then draws. */
RPP_HIDDEN size_t rpp_sample_slow(size_t size);
/* Samples in a new block of size bytes (0 for most). */
static inline size_t rpp_sample_take(size_t size)
{
    if (RPP_LIKELY(rpp_sample_skip(size)))
        return 0;
    return rpp_sample_slow(size);
}
RPP_HIDDEN void rpp_sample_track(void *p, size_t size, size_t k, uint32_t site);
/* 1 when p was a sampled block (now forgotten), 0 otherwise. */
RPP_HIDDEN int rpp_sample_forget(const void *p);
/* The free filter: a counting filter of one byte per 16-byte granule of a
   16 MiB window (address bits 4..23), so a block's slot is its address's
   bits, no hash: 0 means p is certainly not a sampled block (glibc's blocks
   start on 16-byte boundaries, so two live blocks never share a granule;
   blocks 16 MiB apart share a slot, and a count that reached 255 stays).
   Until sampling is published, and always in the exact mode, the mask is 0
   and the filter a single byte that is not 0: every lookup says "maybe",
   and the hooks take their general paths. The mask is published with
   release after the array, so a reader that sees the mask sees the array
   (and the resolved functions, set before). */
#define RPP_SAMPLE_FILTER_BITS 20
#define RPP_SAMPLE_GRANULE_SHIFT 4
RPP_HIDDEN extern _Atomic uintptr_t rpp_sample_mask;
RPP_HIDDEN extern _Atomic(_Atomic uint8_t *) rpp_sample_filter;
static inline size_t rpp_sample_slot(const void *p, uintptr_t mask)
{
    return (size_t)(((uintptr_t)p >> RPP_SAMPLE_GRANULE_SHIFT) & mask);
}
/* A block whose bookkeeping a signal handler deferred (hooks.c) is marked
   (+1) until the deferred operation ran (-1): a free of it meanwhile must
   not take the short path, but queue behind its insertion. */
RPP_HIDDEN void rpp_sample_mark(const void *p, int delta);
/* 0 means p is certainly not a sampled block and the sampling mode is live. */
static inline int rpp_sample_maybe_tracked(const void *p)
{
    uintptr_t mask = atomic_load_explicit(&rpp_sample_mask, memory_order_acquire);
    _Atomic uint8_t *f = atomic_load_explicit(&rpp_sample_filter, memory_order_relaxed);
    return atomic_load_explicit(&f[rpp_sample_slot(p, mask)], memory_order_relaxed) != 0;
}
/* realloc: takes p out (1 and *out filled when it was sampled), and puts it
   back unchanged when the real call failed. */
typedef struct rpp_sample_block { uint64_t size, k; uint32_t site; } rpp_sample_block;
RPP_HIDDEN int rpp_sample_take_out(const void *p, rpp_sample_block *out);
RPP_HIDDEN void rpp_sample_put_back(void *p, const rpp_sample_block *b);
typedef struct rpp_sample_counts {
    int64_t sampled_blocks, samples;
    double est_blocks, est_bytes, est_allocs, est_alloc_bytes;
} rpp_sample_counts;
RPP_HIDDEN void rpp_sample_read(uint32_t site, rpp_sample_counts *out);
RPP_HIDDEN void rpp_sample_lock(void);       /* fork */
RPP_HIDDEN void rpp_sample_unlock(void);

/* ---------------------------------------------------------- modules.c */
/* Site keys carry the module-map generation they were recorded in: bits
   RPP_GEN_SHIFT..62 (user-space addresses stay below 2^47; bit 63 marks a
   stack key). An unloading dlclose starts a new generation. */
#define RPP_GEN_SHIFT 47
#define RPP_GEN_MAX 0xFFFFu
#define RPP_GEN_MASK ((uintptr_t)RPP_GEN_MAX << RPP_GEN_SHIFT)
RPP_HIDDEN extern _Atomic uintptr_t rpp_gen_bits;   /* generation << RPP_GEN_SHIFT */

/* A module dlclose unmapped: what the report needs to name its addresses. */
typedef struct rpp_unloaded {
    const char *path;
    rpi_module obj;         /* load bias, address range, build id */
    uint32_t gen_end;       /* the last generation in which it was mapped */
} rpp_unloaded;
RPP_HIDDEN uint32_t rpp_unloaded_count(void);
RPP_HIDDEN const rpp_unloaded *rpp_unloaded_get(uint32_t i);

/* ----------------------------------------------------------- report.c */
typedef struct rpp_config {
    char report_pattern[4096];   /* absolute; %p pid, %r reason, %% */
    int report_signal;           /* 0 = none */
    int all_sites;               /* list sites with nothing outstanding too */
    int enabled;                 /* 0: no report at exit */
    int fixed_name;              /* the pattern has no %p */
    long owner_pid;              /* with a fixed name: the process that owns it */
} rpp_config;
RPP_HIDDEN extern rpp_config rpp_cfg;

/* Writes the report now; reason "exit" or "signal". Uses no malloc, no stdio
   and none of the table locks (counters are read atomically), so it may run
   in a signal handler. 0 on success, -1 (message on stderr) on failure. */
RPP_HIDDEN int rpp_write_report(const char *reason);
/* Expands pattern into out (cap bytes); 0, or -1 when it does not fit. */
RPP_HIDDEN int rpp_expand_pattern(const char *pattern, const char *reason,
                                  char *out, size_t cap);
/* One line to stderr with write(2): "ringpool-preload: <a><b><c>\n". */
RPP_HIDDEN void rpp_say(const char *a, const char *b, const char *c);

#endif /* RPP_H */
