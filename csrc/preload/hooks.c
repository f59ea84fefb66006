/*
 * hooks.c -- the interposed malloc family of libringpool-preload.so.
 *
 * Each hook calls the next definition of the function (dlsym RTLD_NEXT,
 * normally glibc's), then records the block in the side table under its call
 * site, the return address into the hook's caller. Order matters for exact
 * counts under threads: a block is recorded after the real allocation
 * returned and removed before the real free runs (see rpp.h).
 *
 * Bootstrap: dlsym itself may call malloc/calloc before the real functions
 * are known; those calls, from the resolving thread, are served from a static
 * buffer and never freed. Recursion guard: a thread-local flag (initial-exec
 * TLS, so reading it never allocates) makes the hooks plain pass-throughs
 * while the interposer itself runs code that may allocate.
 */
#include "rpp.h"
#include "rawmem.h"
#include "stack.h"
#include "../outfile.h"
#include "../memcheck_glue.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RPP_EXPORT __attribute__((visibility("default")))

typedef struct real_fns {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*malloc_usable_size)(void *);
    void (*_exit)(int) __attribute__((noreturn));
    void (*_Exit)(int) __attribute__((noreturn));
} real_fns;

static real_fns real;
__thread rpp_thread rpp_tls __attribute__((tls_model("initial-exec")));
static _Atomic int resolve_state;     /* 0 not yet, 1 resolving, 2 done */
static int tracking;                  /* 0 until the tables are mapped */
/* 1 once the real functions are resolved, the tables mapped and the mode
   is exact: the hooks' common path tests this one flag (free's jumps
   through free_entry instead). */
static _Atomic int exact_live;
/* What free runs, one load and an indirect jump: free_start (which tests
   the mode as the other hooks do) until the real functions are resolved,
   then the mode's own path, set by resolve (the sampling mode's filter,
   the exact mode's free, with glibc's header test inline when the real
   free is glibc's); never changed again. */
typedef void free_fn(void *);
static free_fn free_start, free_exact, free_exact_glibc, free_filtered;
static free_fn *_Atomic free_entry = free_start;


/* ---------------------------------------------------------- bootstrap */
#define BOOT_BYTES (256u * 1024u)
static _Alignas(64) unsigned char boot_buf[BOOT_BYTES];
static _Atomic size_t boot_used;

static int in_boot(const void *p)
{
    return (const unsigned char *)p >= boot_buf &&
           (const unsigned char *)p < boot_buf + BOOT_BYTES;
}

/* 16 bytes of header (the size) before each payload; memory starts zeroed
   and is never reused, so calloc needs no memset. align: a power of two
   (boot_memalign); one larger than the buffer fails like a size that does
   not fit (ENOMEM), before any sum that could wrap. */
static void *boot_alloc(size_t size, size_t align)
{
    if (align < 16)
        align = 16;
    if (size > BOOT_BYTES || align > BOOT_BYTES) {
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        size_t used = atomic_load(&boot_used);
        /* aligned as an address, not as an offset: the buffer itself is
           only _Alignas(64), wherever the linker puts it */
        uintptr_t base = (uintptr_t)boot_buf;
        size_t start = (size_t)(((base + used + 16 + align - 1) & ~(uintptr_t)(align - 1)) - base);
        /* a block of 0 bytes at the very end would lie outside the
           buffer, where in_boot does not know it */
        if (start >= BOOT_BYTES || size > BOOT_BYTES - start) {
            errno = ENOMEM;
            return NULL;
        }
        if (atomic_compare_exchange_weak(&boot_used, &used, start + size)) {
            memcpy(boot_buf + start - sizeof(size_t), &size, sizeof(size_t));
            atomic_fetch_add_explicit(&rpp_stat.bootstrap_bytes, size, memory_order_relaxed);
            return boot_buf + start;
        }
    }
}

static size_t boot_size(const void *p)
{
    size_t size;
    memcpy(&size, (const unsigned char *)p - sizeof(size_t), sizeof(size_t));
    return size;
}

/* The bootstrap buffer's memalign and aligned_alloc answer as glibc's
   (2.36) do: an alignment above SIZE_MAX / 2 + 1 is EINVAL, any other is
   rounded up to a power of two; valloc's and pvalloc's blocks are
   page-aligned and pvalloc's size is rounded up to whole pages (ENOMEM
   when that overflows), so the caller may use every byte of them. */
static void *boot_memalign(size_t align, size_t size)
{
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    size_t a = 16;
    while (a < align)
        a <<= 1;
    return boot_alloc(size, a);
}

static void *boot_aligned_alloc(size_t align, size_t size)
{
    return boot_memalign(align, size);
}

static void *boot_valloc(size_t size)
{
    return boot_alloc(size, 4096);
}

static void *boot_pvalloc(size_t size)
{
    size_t pages;
    if (__builtin_add_overflow(size, 4095, &pages)) {
        errno = ENOMEM;
        return NULL;
    }
    return boot_alloc(pages & ~(size_t)4095, 4096);
}

static void die(const char *what)
{
    rpp_say("cannot resolve ", what, " (is glibc's malloc reachable with RTLD_NEXT?)");
    /* not _exit: that is our hook, and it may need what failed to resolve */
    syscall(SYS_exit_group, 127);
    __builtin_trap();
}

/* glibc's free and realloc, when they are the real ones: a block glibc
   made a mapping of its own (bigger than its mmap threshold, 128 KiB and
   up) is unmapped by free and shrunk or moved by realloc, with system
   calls glibc makes itself, not through the interposer's munmap and
   mremap (maps.c). Such a block may have been the stack of a coroutine
   (or of inline assembly that runs a function on it), which the stack
   walker may have read past the end of the stack it ran on and will not
   check again until told (csrc/stack/unwind.c, stack_mapped_from). The
   real free and realloc are these wrappers then: one load and test of
   the chunk's header a call (glibc's own free reads the same word). The
   exact mode's free makes that test inline (free_exact_glibc). */
static void (*glibc_free)(void *);
static void *(*glibc_realloc)(void *, size_t);
#define GLIBC_IS_MMAPPED 2u   /* bit 1 of the size word before a block */

static inline int glibc_mapped(const void *p)
{
    return ((const size_t *)p)[-1] & GLIBC_IS_MMAPPED;
}

/* The mapping of such a block: its chunk, from prev_size bytes before it
   (the alignment of memalign's) to the end of its size. */
static inline void glibc_mapping(const void *p, uintptr_t *lo, uintptr_t *hi)
{
    const size_t *h = (const size_t *)p - 2;
    *lo = (uintptr_t)h - h[0];
    *hi = (uintptr_t)h + (h[1] & ~(size_t)7);
}

static __attribute__((noinline, cold)) void free_mapped(void *p)
{
    uintptr_t lo, hi;
    glibc_mapping(p, &lo, &hi);
    glibc_free(p);
    rpi_unwind_forget_memory(lo, hi);
}

/* p is never NULL: every free returned on NULL before (free_general; the
   sampling mode's filter sends NULL there). */
static void free_noting(void *p)
{
    if (RPP_UNLIKELY(glibc_mapped(p))) {
        free_mapped(p);
        return;
    }
    glibc_free(p);
}

static __attribute__((noinline, cold)) void *realloc_mapped(void *p, size_t size)
{
    uintptr_t lo, hi;
    glibc_mapping(p, &lo, &hi);
    void *n = glibc_realloc(p, size);
    rpi_unwind_forget_memory(lo, hi);
    return n;
}

static void *realloc_noting(void *p, size_t size)
{
    if (RPP_UNLIKELY(p && glibc_mapped(p)))
        return realloc_mapped(p, size);
    return glibc_realloc(p, size);
}

/* Whether f is defined in the object loaded at base, glibc's (the object
   that defines gnu_get_libc_version: glibc_base), not in another allocator
   interposed after this one, whose blocks have no such header. */
static void *glibc_base(void)
{
    Dl_info info;
    void *g = dlsym(RTLD_NEXT, "gnu_get_libc_version");
    return g && dladdr(g, &info) ? info.dli_fbase : NULL;
}

static int in_object(void *f, void *base)
{
    Dl_info info;
    return f && base && dladdr(f, &info) && info.dli_fbase == base;
}

/* Whether glibc's malloc family is memcheck's. valgrind redirects calls,
   not symbols: dlsym still gives glibc's addresses, but under memcheck (run
   with --soname-synonyms=somalloc=nouserintercepts: without it memcheck
   replaces the interposer's own malloc, and nothing here runs) the blocks
   are memcheck's, with no glibc header before them (memcheck's redzone:
   reading it is an error) and never glibc's own mappings, so free and
   realloc must not test that header. Asked of memcheck alone, not of every
   valgrind tool: under callgrind, cachegrind and the like glibc's malloc is
   glibc's, and what runs there must be what runs natively (the
   instruction counts measured with callgrind); helgrind, drd, massif and
   dhat replace malloc too, but do not check that the word can be read. */
static int malloc_is_memchecks(void)
{
#ifdef RPI_HAVE_MEMCHECK_H
    return rpi_under_memcheck();
#else
    return 0;
#endif
}

#define RESOLVE(name)                                                   \
    do {                                                                \
        *(void **)&real.name = dlsym(RTLD_NEXT, #name);                 \
    } while (0)

static __attribute__((noinline, cold)) void resolve(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&resolve_state, &expected, 1)) {
        __atomic_fetch_or(&rpp_tls_state, RPP_RESOLVING, __ATOMIC_RELAXED);
        RESOLVE(malloc);
        RESOLVE(calloc);
        RESOLVE(realloc);
        RESOLVE(free);
        RESOLVE(posix_memalign);
        RESOLVE(aligned_alloc);
        RESOLVE(memalign);
        RESOLVE(valloc);
        RESOLVE(pvalloc);
        RESOLVE(malloc_usable_size);
        RESOLVE(_exit);
        RESOLVE(_Exit);
        if (!real.malloc || !real.calloc || !real.realloc || !real.free ||
            !real._exit || !real._Exit)
            die("malloc/calloc/realloc/free/_exit");
        void *glibc = glibc_base();
        if (in_object((void *)real.free, glibc) && in_object((void *)real.realloc, glibc) &&
            !malloc_is_memchecks()) {
            glibc_free = real.free;
            glibc_realloc = real.realloc;
            real.free = free_noting;
            real.realloc = realloc_noting;
        }
        tracking = rpp_table_init() == 0;
        if (!tracking)
            rpp_say("cannot map the side tables: ", "running without tracking", "");
        if (tracking) {
            rpp_stacks_init();
            rpp_sample_init();
            /* the last bootstrap block is behind us: the sampling mode's
               short paths may start (rpp.h); + 1 byte: a last block of
               0 bytes starts where the used part ends, and its free must
               not pass the filter as glibc's */
            rpp_sample_publish(boot_buf, boot_buf + atomic_load(&boot_used) + 1);
        }
        __atomic_fetch_and(&rpp_tls_state, ~RPP_RESOLVING, __ATOMIC_RELAXED);
        atomic_store_explicit(&exact_live, tracking && !rpp_sampling, memory_order_release);
        if (tracking)
            atomic_store_explicit(&free_entry,
                                  rpp_sampling ? free_filtered : glibc_free ? free_exact_glibc : free_exact,
                                  memory_order_release);
        atomic_store(&resolve_state, 2);
        return;
    }
    for (unsigned n = 0; atomic_load(&resolve_state) != 2; n = rpi_raw_next(n))
        rpi_raw_backoff(n);
}

/* 1 when the caller must not record (the interposer is busy on this thread
   or tracking is off); resolves the real functions on first use. */
#define ENSURE_READY() \
    (RPP_UNLIKELY(atomic_load_explicit(&resolve_state, memory_order_acquire) != 2) ? (resolve(), 0) : 0)

/* C++ operator new: the hooks below note their caller here before calling
   the real operator new, whose malloc then takes this origin instead of its
   own return address (inside libstdc++). Consumed by the first use. */
#define tls_origin (rpp_tls.origin)

static inline void *origin(void *ret)
{
    void *o = tls_origin;
    if (RPP_UNLIKELY(o != NULL)) {
        tls_origin = NULL;
        return o;
    }
    return ret;
}
#define ORIGIN() origin(__builtin_return_address(0))

/* ------------------------------------------------ deferred operations
 * A hook that runs in a signal handler which interrupted this thread's
 * bookkeeping (rpp_tls_state has IN or pending units) queues its table work
 * here instead of doing it: the interrupted code runs the queue, in order,
 * when it leaves the bookkeeping. A deferred free keeps the block allocated
 * until then, so its address cannot be handed to another thread while the
 * table still holds it. The queue is per thread, mmap'd on first use;
 * indexes only grow (a slot is claimed with one atomic add, so nested
 * handlers get distinct slots). More than DEFER_SLOTS operations queued at
 * once (one handler invocation doing thousands of allocations while it
 * interrupts the bookkeeping): the excess blocks are left untracked and
 * counted in totals.dropped; a free among them keeps its block. */
#define DEFER_SLOTS 4096u
enum { OP_TRACK = 1, OP_FREE = 2 };
typedef struct deferred {
    void *p;
    size_t size;
    void *pc;
    unsigned op;
} deferred;

static __thread deferred *tls_q __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_q_head __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_q_tail __attribute__((tls_model("initial-exec")));

static int defer(unsigned op, void *p, size_t size, void *pc)
{
    if (!tls_q) {
        int saved = errno;
        void *m = mmap(NULL, DEFER_SLOTS * sizeof(deferred), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        errno = saved;
        if (m == MAP_FAILED)
            return -1;
        deferred *none = NULL;
        /* a nested handler may have mapped one meanwhile */
        if (!__atomic_compare_exchange_n(&tls_q, &none, (deferred *)m, 0, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            munmap(m, DEFER_SLOTS * sizeof(deferred));
    }
    uint64_t i = __atomic_fetch_add(&tls_q_tail, 1, __ATOMIC_RELAXED);
    if (i - __atomic_load_n(&tls_q_head, __ATOMIC_RELAXED) >= DEFER_SLOTS) {
        __atomic_fetch_sub(&tls_q_tail, 1, __ATOMIC_RELAXED);  /* nested claims are gone by now */
        return -1;
    }
    deferred *d = &tls_q[i % DEFER_SLOTS];
    d->p = p;
    d->size = size;
    d->pc = pc;
    d->op = op;
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_fetch_add(&rpp_tls_state, RPP_PEND, __ATOMIC_RELAXED);
    return 0;
}

static void defer_track(void *p, size_t size, void *pc)
{
    /* sampling mode: whether p gets a sample is decided when the queue
       runs; until then the free filter must send a free of p to the queue
       too, behind this insertion, not straight to the real free */
    if (rpp_sampling)
        rpp_sample_mark(p, 1);
    if (defer(OP_TRACK, p, size, pc) != 0) {
        if (rpp_sampling)
            rpp_sample_mark(p, -1);
        atomic_fetch_add_explicit(&rpp_stat.dropped, 1, memory_order_relaxed);
    }
}

static inline void record(void *p, size_t size, void *pc, const uintptr_t *fp);
static inline int forget(void *p);

/* Runs with IN set: handlers that interrupt it queue behind. Out of line
   and calling the table out of line, so the hooks' inlining is unchanged. */
static __attribute__((noinline, cold)) void run_deferred(const deferred *d)
{
    if (d->op == OP_TRACK) {
        if (RPP_UNLIKELY(rpp_sampling)) {
            size_t k = rpp_sample_take(d->size);
            if (k)
                rpp_sample_track(d->p, d->size, k, rpp_site_for((uintptr_t)d->pc | atomic_load(&rpp_gen_bits)));
            rpp_sample_mark(d->p, -1);   /* defer_track's mark */
        } else {
            rpp_track(d->p, d->size, rpp_site_for((uintptr_t)d->pc | atomic_load(&rpp_gen_bits)), 1);
        }
    } else {
        if (!forget(d->p) && !rpp_sampling)
            atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
        real.free(d->p);
    }
}

void rpp_leave_slow(void)
{
    /* IN has just been dropped; what is left is BUSY and pending units */
    while (__atomic_load_n(&rpp_tls_state, __ATOMIC_RELAXED) >= RPP_PEND) {
        __atomic_fetch_add(&rpp_tls_state, RPP_IN, __ATOMIC_RELAXED);
        while (__atomic_load_n(&rpp_tls_state, __ATOMIC_RELAXED) >= RPP_PEND) {
            deferred d = tls_q[tls_q_head % DEFER_SLOTS];
            __atomic_fetch_add(&tls_q_head, 1, __ATOMIC_RELAXED);
            __atomic_fetch_sub(&rpp_tls_state, RPP_PEND, __ATOMIC_RELAXED);
            run_deferred(&d);
        }
        __atomic_fetch_sub(&rpp_tls_state, RPP_IN, __ATOMIC_RELAXED);
    }
}

/* 1 when the hook must queue its table work (see above). */
#define MUST_DEFER(st) RPP_UNLIKELY((st) & ~(RPP_BUSY | RPP_RESOLVING))

/* The table code calls nothing that allocates and keeps errno (see
   table.c), so no errno save is needed around it; both run with IN set.
   With RINGPOOL_PRELOAD_STACK_DEPTH > 1 a site is a whole stack
   (stack.h), keyed by RPP_STACK_KEY(id); a capture that cannot be made
   (table full) falls back to the one-frame site of pc. */
static inline uintptr_t site_key(void *pc)
{
    uintptr_t key = (uintptr_t)pc;
    if (rpp_stack_depth > 1)
        key = rpp_stack_key(key);
    return key | atomic_load_explicit(&rpp_gen_bits, memory_order_relaxed);
}

/* The site of pc (or of its stack) in a hook whose frame pointer is fp:
   when the hook was jumped to from the exported function, fp[1] is pc and
   the walk starts at the program's frame (rpi_stack_here_at). */
static inline uint32_t site_at(void *pc, const uintptr_t *fp)
{
    if (rpp_stack_depth > 1)
        return rpp_stack_site_at((uintptr_t)pc, fp);
    return rpp_site_for((uintptr_t)pc | atomic_load_explicit(&rpp_gen_bits, memory_order_relaxed));
}

/* The sampling mode's record, out of line: the exact mode's hooks inline
   everything they call (flatten) but this. */
static __attribute__((noinline)) void record_sampled(void *p, size_t size, void *pc)
{
    size_t k = rpp_sample_take(size);
    if (k)
        rpp_sample_track(p, size, k, rpp_site_for(site_key(pc)));
}

/* fp: the frame pointer of the hook the exported function jumped to (see
   site_at), or NULL. */
static inline void record(void *p, size_t size, void *pc, const uintptr_t *fp)
{
    if (RPP_UNLIKELY(rpp_sampling)) {
        record_sampled(p, size, pc);
        return;
    }
    rpp_track(p, size, fp ? site_at(pc, fp) : rpp_site_for(site_key(pc)), 1);
}

static __attribute__((noinline)) int forget_sampled(void *p)
{
    return rpp_sample_forget(p);
}

/* Removes p from the table and its site's counters; 0 when p was not ours. */
static inline int forget(void *p)
{
    if (RPP_UNLIKELY(rpp_sampling))
        return forget_sampled(p);
    return rpp_forget(p);
}

/* After the real allocator returned p: record it, or queue it when this
   call interrupted the bookkeeping. The interposer's own blocks (BUSY)
   stay out. */
static inline void after_alloc(void *p, size_t size, void *pc, const uintptr_t *fp)
{
    unsigned st = rpp_tls_state;
    if (RPP_LIKELY(st == 0)) {
        if (RPP_UNLIKELY(rpp_sampling) && rpp_sample_skip(size))
            return;
        rpp_enter(0);
        record(p, size, pc, fp);
        rpp_leave();
    } else if (MUST_DEFER(st)) {
        defer_track(p, size, pc);
    }
}

/* -------------------------------------------------------------- hooks */
/* Every case but the common one: bootstrap, the interposer busy, a
   handler that interrupted the bookkeeping. */
static __attribute__((noinline)) void *malloc_slow(size_t size, unsigned st, void *ret)
{
    if (st & RPP_RESOLVING)
        return boot_alloc(size, 16);
    ENSURE_READY();
    void *pc = origin(ret);
    void *p = real.malloc(size);
    if (p && tracking && MUST_DEFER(st))
        defer_track(p, size, pc);
    return p;
}

/* The exact mode's record of a block malloc got, in steps that are each
   tail-called from the one before (so that the common path is a chain of
   jumps that saves no registers: every call in it is in tail position).
   Each returns p. Entered from malloc_general, inside the bookkeeping
   (IN) but for malloc_record and malloc_record_stack. */
static __attribute__((noinline, cold)) void *malloc_leave_slow(void *p)
{
    rpp_leave_slow();
    return p;
}

/* The counters' slow path (the thread's first allocation, or the delta
   slot is another site's), then the rest. */
static __attribute__((noinline)) void *malloc_count_rest(void *p, size_t size, uint32_t site)
{
    rpp_count_alloc(site, size);
    rpp_leave();
    return p;
}

/* The table's and the counters' every case. */
static __attribute__((noinline)) void *malloc_track_rest(void *p, size_t size, uint32_t site)
{
    rpp_track(p, size, site, 1);
    rpp_leave();
    return p;
}

static inline __attribute__((always_inline)) void *malloc_track(void *p, size_t size, uint32_t site)
{
    if (RPP_UNLIKELY(!rpp_track_try(p, size, site)))
        return malloc_track_rest(p, size, site);
    if (RPP_UNLIKELY(!rpp_count_try(site, size)))
        return malloc_count_rest(p, size, site);
    if (RPP_UNLIKELY(!rpp_leave_quick()))
        return malloc_leave_slow(p);
    return p;
}

/* The site cache missed. */
static __attribute__((noinline, flatten)) void *malloc_site_rest(void *p, size_t size, uintptr_t key)
{
    return malloc_track(p, size, rpp_site_for(key));
}

/* Whole stacks: the walk starts at the program's frame. This function's
   frame is where malloc_general's was (each step was jumped to), so its
   return address is the program's, as rpp_stack_site_at wants (when it is
   not, e.g. in a build without sibling calls, the walk starts here and
   skips the interposer's frames). */
static __attribute__((noinline, flatten)) void *malloc_record_stack(void *p, size_t size, void *pc)
{
    rpp_enter(0);
    return malloc_track(p, size, rpp_stack_site_at((uintptr_t)pc, __builtin_frame_address(0)));
}

static __attribute__((noinline, flatten)) void *malloc_record(void *p, size_t size, void *pc)
{
    if (rpp_stack_depth > 1)
        return malloc_record_stack(p, size, pc);
    rpp_enter(0);
    uintptr_t key = (uintptr_t)pc | atomic_load_explicit(&rpp_gen_bits, memory_order_relaxed);
    const rpp_cache_entry *c = &rpp_tls_cache[rpp_cache_slot(rpp_mix(key))];
    if (RPP_UNLIKELY(c->pc != key))
        return malloc_site_rest(p, size, key);
    return malloc_track(p, size, c->id);
}

/* The exact mode's malloc with the thread outside the interposer: of
   its own, only size and the caller live across the real call. */
static __attribute__((noinline, flatten)) void *malloc_exact(size_t size, void *ret)
{
    void *pc = origin(ret);
    void *p = real.malloc(size);
    if (RPP_LIKELY(p != NULL))
        return malloc_record(p, size, pc);
    return p;
}

/* The exact mode's malloc, and the sampling mode's for blocks with a
   sample (or a thread whose countdown is not seeded yet). */
static __attribute__((noinline, flatten)) void *malloc_general(size_t size, void *ret)
{
    unsigned st = rpp_tls_state;
    if (RPP_LIKELY(st == 0) && RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire)))
        return malloc_exact(size, ret);
    if (RPP_UNLIKELY(st != 0))
        return malloc_slow(size, st, ret);
    ENSURE_READY();
    void *pc = origin(ret);   /* taken before the call: consumed even on failure */
    void *p = real.malloc(size);
    if (RPP_LIKELY(p != NULL) && tracking) {
        rpp_enter(0);
        record(p, size, pc, NULL);    /* sampling mode: draws the samples */
        rpp_leave();
    }
    return p;
}

/* The sampling mode's short paths (malloc, calloc, realloc, free) touch no
   per-thread state but the countdown and tail-call the real function: a
   block without a sampled byte needs no bookkeeping, whatever the thread is
   doing (inside the interposer, in a signal handler that interrupted it),
   so none of that is looked at. A block is charged to the countdown before
   the real call; when that call fails the bytes stay charged, which changes
   nothing (the distance to the next sampled byte is memoryless). The
   countdown is 0 in the exact mode and before a thread's first sampled
   allocation, so there the test fails and the general path runs; it is
   non-zero only on threads that already went through the general path
   after the real functions were resolved. */
RPP_EXPORT void *malloc(size_t size)
{
    if (RPP_LIKELY(rpp_sample_skip(size)))
        return real.malloc(size);
    /* the exact mode's common case is told apart here, in a function that
       saves no registers: GCC saves a function's registers on entry,
       whatever path then runs */
    if (RPP_LIKELY(rpp_tls_state == 0) &&
        RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire)))
        return malloc_exact(size, __builtin_return_address(0));
    return malloc_general(size, __builtin_return_address(0));
}

static __attribute__((noinline, flatten)) void *calloc_general(size_t n, size_t size, void *ret)
{
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING)) {
        size_t total;
        if (__builtin_mul_overflow(n, size, &total)) {
            errno = ENOMEM;
            return NULL;
        }
        return boot_alloc(total, 16);
    }
    ENSURE_READY();
    void *pc = origin(ret);
    void *p = real.calloc(n, size);
    if (RPP_LIKELY(p != NULL) && tracking)
        after_alloc(p, n * size, pc, __builtin_frame_address(0));
    return p;
}

/* The exact mode's calloc with the thread outside the interposer (see
   malloc_exact); n * size does not overflow. */
static __attribute__((noinline, flatten)) void *calloc_exact(size_t n, size_t size, void *ret)
{
    void *pc = origin(ret);
    void *p = real.calloc(n, size);
    if (RPP_LIKELY(p != NULL))
        return malloc_record(p, n * size, pc);
    return p;
}

RPP_EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    int overflow = __builtin_mul_overflow(n, size, &total);
    if (RPP_LIKELY(!overflow) && RPP_LIKELY(rpp_sample_skip(total)))
        return real.calloc(n, size);  /* sampling mode, no sample (see malloc) */
    if (RPP_LIKELY(!overflow) && RPP_LIKELY(rpp_tls_state == 0) &&
        RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire)))
        return calloc_exact(n, size, __builtin_return_address(0));
    return calloc_general(n, size, __builtin_return_address(0));
}

static __attribute__((noinline)) void free_slow(void *p, unsigned st)
{
    if ((st & RPP_RESOLVING) || in_boot(p))
        return;
    ENSURE_READY();
    if (tracking) {
        if (MUST_DEFER(st)) {
            /* the block stays allocated until the queue runs */
            if (defer(OP_FREE, p, 0, NULL) != 0)   /* cannot untrack now: keep it */
                atomic_fetch_add_explicit(&rpp_stat.dropped, 1, memory_order_relaxed);
            return;
        }
        /* the interposer is busy on this thread: forgetting never
           allocates, and a stale entry would outlive the block */
        rpp_enter(st);
        int had = forget(p);
        rpp_leave();
        if (!had && !rpp_sampling)
            atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
    }
    real.free(p);
}

/* The exact mode's free (and sampling mode's rarer cases). */
static __attribute__((noinline, flatten)) void free_general(void *p)
{
    if (!p)
        return;
    unsigned st = rpp_tls_state;
    if (RPP_LIKELY(st == 0) && RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire))) {
        rpp_enter(0);
        int had = rpp_forget(p);
        rpp_leave();
        if (RPP_UNLIKELY(!had)) {
            if (in_boot(p))           /* see below */
                return;
            atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
        }
        real.free(p);
        return;
    }
    if (RPP_UNLIKELY(st != 0)) {
        free_slow(p, st);
        return;
    }
    ENSURE_READY();
    if (RPP_LIKELY(tracking)) {
        rpp_enter(0);
        int had = forget(p);
        rpp_leave();
        if (RPP_UNLIKELY(!had)) {
            /* never tracked: the bootstrap buffer's blocks are among these,
               so the check costs nothing on the common path */
            if (in_boot(p))
                return;
            if (!rpp_sampling)
                atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
        }
    } else if (in_boot(p)) {
        return;
    }
    real.free(p);
}

/* The exact mode's free past free's test of the mode, whose common path,
   like malloc_record's, makes calls only in tail position: every case but
   a tracked block freed with the thread outside the interposer, the
   shard's lock free and no handler's work queued goes to free_general or
   free_rest. */
static __attribute__((noinline, cold)) void free_rest(void *p, int had)
{
    if (had < 0)
        had = rpp_forget(p);
    rpp_leave();
    if (!had) {
        if (in_boot(p))               /* see free_general */
            return;
        atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
    }
    real.free(p);
}

static __attribute__((noinline, cold)) void free_leave_slow(void *p)
{
    rpp_leave_slow();
    real.free(p);
}

/* The real free at the end of the exact mode's common path: glibc's,
   with the test of its header made here (glibc: 1, a constant where this
   is inlined), or real.free. */
static inline __attribute__((always_inline)) void free_real(void *p, int glibc)
{
    if (glibc)
        free_noting(p);
    else
        real.free(p);
}

/* The removal's backward shift, then the rest of free_exact. */
static inline __attribute__((always_inline)) void free_shift_body(void *p, size_t hole, int glibc)
{
    rpp_forget_finish(p, hole);
    if (RPP_UNLIKELY(!rpp_leave_quick())) {
        free_leave_slow(p);
        return;
    }
    free_real(p, glibc);
}

static __attribute__((noinline, flatten)) void free_shift(void *p, size_t hole)
{
    free_shift_body(p, hole, 0);
}

static __attribute__((noinline, flatten)) void free_shift_glibc(void *p, size_t hole)
{
    free_shift_body(p, hole, 1);
}

static inline __attribute__((always_inline)) void free_exact_body(void *p, int glibc)
{
    if (RPP_UNLIKELY(rpp_tls_state != 0) || RPP_UNLIKELY(p == NULL)) {
        free_general(p);
        return;
    }
    rpp_enter(0);
    size_t hole;
    int had = rpp_forget_try(p, &hole);
    if (had == 2) {
        if (glibc)
            free_shift_glibc(p, hole);
        else
            free_shift(p, hole);
        return;
    }
    if (RPP_UNLIKELY(had <= 0)) {
        free_rest(p, had);
        return;
    }
    if (RPP_UNLIKELY(!rpp_leave_quick())) {
        free_leave_slow(p);
        return;
    }
    free_real(p, glibc);
}

/* The exact mode's free: the real one is another allocator's (through
   real.free), or glibc's (free_exact_glibc: its blocks' headers are
   tested here, one jump fewer than through free_noting). */
static __attribute__((noinline, flatten)) void free_exact(void *p)
{
    free_exact_body(p, 0);
}

static __attribute__((noinline, flatten)) void free_exact_glibc(void *p)
{
    free_exact_body(p, 1);
}

/* The sampling mode's free (and any mode's until the real functions are
   resolved): certainly not a sampled block (nor NULL, nor a bootstrap
   block: the filter says "maybe" for those), or the general path. */
static __attribute__((noinline)) void free_filtered(void *p)
{
    if (RPP_LIKELY(!rpp_sample_maybe_tracked(p))) {
        real.free(p);
        return;
    }
    free_general(p);
}

/* free's entry until resolve sets the mode's own (free_entry): a thread
   may still run it after that, so it tests the mode. */
static __attribute__((noinline)) void free_start(void *p)
{
    /* acquire: exact_live is published after the real functions */
    if (RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire))) {
        free_exact(p);
        return;
    }
    free_filtered(p);
}

RPP_EXPORT void free(void *p)
{
    /* acquire: free_entry is set after the real functions and the mode */
    atomic_load_explicit(&free_entry, memory_order_acquire)(p);
}

/* realloc from a handler that interrupted the bookkeeping: the old block
   cannot leave the table now, so this is malloc + copy + deferred free. */
static __attribute__((noinline, cold)) void *deferred_realloc(void *p, size_t size, void *pc)
{
    if (!p) {
        void *n = real.malloc(size);
        if (n)
            defer_track(n, size, pc);
        return n;
    }
    if (size == 0) {            /* glibc: realloc(p, 0) frees p */
        free(p);
        return NULL;
    }
    void *n = real.malloc(size);
    if (!n)
        return NULL;
    size_t old = in_boot(p) ? boot_size(p)
               : real.malloc_usable_size ? real.malloc_usable_size(p) : size;
    memcpy(n, p, old < size ? old : size);
    defer_track(n, size, pc);
    free(p);
    return n;
}

/* The sampling mode's realloc (out of line: see record_sampled): the old
   block leaves the sample table before the call (after it, its address
   may be another thread's), and returns on failure. */
static __attribute__((noinline)) void *realloc_sampled(void *p, size_t size, void *pc, unsigned st)
{
    rpp_sample_block sb = {0, 0, 0};
    int had = 0;
    if (p) {
        rpp_enter(st);
        had = rpp_sample_take_out(p, &sb);
        rpp_leave();
    }
    void *n = real.realloc(p, size);
    int after = errno;
    rpp_enter(st);
    if (n) {
        if (!(st & RPP_BUSY))
            record(n, size, pc, NULL);
    } else if (had && size != 0) {
        rpp_sample_put_back(p, &sb);
    }
    rpp_leave();
    errno = after;
    return n;
}

/* A realloc that failed left p allocated: p's entry comes back (tracked,
   had) or the untracked free counted before the call is taken back
   (nothing was freed). Keeps the real call's errno. */
static __attribute__((noinline, cold)) void realloc_failed(void *p, int had, const rpp_block *old)
{
    if (had) {
        int saved = errno;
        rpp_enter(rpp_tls_state);   /* 0 or BUSY here */
        rpp_track(p, old->size, old->site, 0);   /* table full: dropped, counted */
        rpp_leave();
        errno = saved;
    } else {
        atomic_fetch_sub_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
    }
}

/* realloc and reallocarray: the old block leaves the table before the real
   call (after it, its address may already belong to another thread's block)
   and comes back if the call fails. The result is counted at this call site. */
static void *do_realloc(void *p, size_t size, void *pc, const uintptr_t *fp)
{
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING)) {
        if (p && size == 0)       /* glibc: frees p (a no-op here), NULL */
            return NULL;
        void *n = boot_alloc(size, 16);
        if (n && p)
            memcpy(n, p, boot_size(p) < size ? boot_size(p) : size);
        return n;
    }
    ENSURE_READY();
    if (p && in_boot(p)) {
        if (size == 0)            /* as above: p needs no freeing */
            return NULL;
        void *n = real.malloc(size);
        if (!n)
            return NULL;
        memcpy(n, p, boot_size(p) < size ? boot_size(p) : size);
        if (tracking)
            after_alloc(n, size, pc, fp);
        return n;
    }
    if (!tracking)
        return real.realloc(p, size);
    unsigned st = rpp_tls_state;
    if (MUST_DEFER(st))
        return deferred_realloc(p, size, pc);
    if (RPP_UNLIKELY(rpp_sampling))
        return realloc_sampled(p, size, pc, st);
    rpp_block old = {0, 0};
    int had = 0;
    if (p) {
        rpp_enter(st);
        had = rpp_untrack(p, &old);
        rpp_leave();
        if (!had)
            atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
    }
    void *n = real.realloc(p, size);
    if (!n) {
        if (p && size != 0)           /* failed: p is still valid, still p's */
            realloc_failed(p, had, &old);   /* (glibc: realloc(p, 0) frees p) */
        return NULL;
    }
    int after = errno;
    rpp_enter(st);
    if (!(st & RPP_BUSY))             /* the interposer's own blocks stay out */
        record(n, size, pc, fp);
    rpp_leave();
    errno = after;
    return n;
}

static __attribute__((noinline, flatten)) void *realloc_general(void *p, size_t size, void *ret)
{
    return do_realloc(p, size, origin(ret), __builtin_frame_address(0));
}

/* A bootstrap block's realloc, from realloc_exact (out of line: it
   inlines nothing of it). */
static __attribute__((noinline, cold)) void *realloc_boot(void *p, size_t size, void *pc)
{
    return do_realloc(p, size, pc, NULL);
}

/* The exact mode's realloc with the thread outside the interposer, told
   apart by realloc itself as malloc does: do_realloc's common case, with
   the new block recorded by malloc_record, jumped to (so that a whole
   stack starts at the program's frame). errno is as the real realloc left
   it: the bookkeeping keeps it (see malloc). */
static __attribute__((noinline, flatten)) void *realloc_exact(void *p, size_t size, void *ret)
{
    void *pc = origin(ret);
    rpp_block old = {0, 0};
    int had = 0;
    if (p) {
        if (RPP_UNLIKELY(in_boot(p)))
            return realloc_boot(p, size, pc);
        rpp_enter(0);
        had = rpp_untrack(p, &old);
        rpp_leave();
        if (RPP_UNLIKELY(!had))
            atomic_fetch_add_explicit(&rpp_stat.untracked_frees, 1, memory_order_relaxed);
    }
    void *n = real.realloc(p, size);
    if (RPP_LIKELY(n != NULL))
        return malloc_record(n, size, pc);
    if (p && size != 0)               /* failed: p is still valid, still p's */
        realloc_failed(p, had, &old); /* (glibc: realloc(p, 0) frees p) */
    return NULL;
}

/* The sampling mode's short path (see malloc): p is NULL or certainly not
   a sampled block (checked first: it changes nothing), and the new block
   gets no sample. glibc's realloc allocates and frees internally, not
   through these hooks. */
#define REALLOC_SHORT(p, size) \
    (((p) == NULL || !rpp_sample_maybe_tracked(p)) && rpp_sample_skip(size))
/* The exact mode's common case (see malloc). */
#define EXACT_COMMON() \
    (RPP_LIKELY(rpp_tls_state == 0) && \
     RPP_LIKELY(atomic_load_explicit(&exact_live, memory_order_acquire)))

RPP_EXPORT void *realloc(void *p, size_t size)
{
    if (RPP_LIKELY(REALLOC_SHORT(p, size)))
        return real.realloc(p, size);
    if (EXACT_COMMON())
        return realloc_exact(p, size, __builtin_return_address(0));
    return realloc_general(p, size, __builtin_return_address(0));
}

RPP_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (RPP_LIKELY(REALLOC_SHORT(p, total)))
        return real.realloc(p, total);
    if (EXACT_COMMON())
        return realloc_exact(p, total, __builtin_return_address(0));
    return realloc_general(p, total, __builtin_return_address(0));
}

static int bad_alignment(size_t align)
{
    return align == 0 || (align & (align - 1)) != 0;
}

RPP_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING)) {
        if (bad_alignment(align) || align % sizeof(void *) != 0)
            return EINVAL;
        void *p = boot_alloc(size, align);
        if (!p)
            return ENOMEM;
        *out = p;
        return 0;
    }
    ENSURE_READY();
    void *pc = ORIGIN();
    if (!real.posix_memalign)
        return ENOMEM;
    int rc = real.posix_memalign(out, align, size);
    if (rc == 0 && tracking)
        after_alloc(*out, size, pc, NULL);
    return rc;
}

#define ALIGNED_HOOK(name, params, args, size_expr)                          \
    RPP_EXPORT void *name params                                             \
    {                                                                        \
        if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING))                     \
            return boot_##name args;                                         \
        ENSURE_READY();                                                      \
        void *pc = ORIGIN();                                                 \
        if (!real.name) {                                                    \
            errno = ENOMEM;                                                  \
            return NULL;                                                     \
        }                                                                    \
        void *p = real.name args;                                            \
        if (p && tracking)                                                   \
            after_alloc(p, size_expr, pc, NULL);                             \
        return p;                                                            \
    }

ALIGNED_HOOK(aligned_alloc, (size_t align, size_t size), (align, size), size)
ALIGNED_HOOK(memalign, (size_t align, size_t size), (align, size), size)
ALIGNED_HOOK(valloc, (size_t size), (size), size)
ALIGNED_HOOK(pvalloc, (size_t size), (size), size)

/* A block not from the bootstrap buffer asked about by the resolving
   thread (dlsym's own code, a handler that interrupted it): ENSURE_READY
   would wait for the resolution this thread is running, so the real
   function is looked up here if it is not resolved yet. */
static __attribute__((noinline, cold)) size_t usable_resolving(void *p)
{
    size_t (*f)(void *) = real.malloc_usable_size;
    if (!f)
        *(void **)&f = dlsym(RTLD_NEXT, "malloc_usable_size");
    return f ? f(p) : 0;
}

RPP_EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (in_boot(p))
        return boot_size(p);
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING))
        return usable_resolving(p);
    ENSURE_READY();
    return real.malloc_usable_size ? real.malloc_usable_size(p) : 0;
}

/* ------------------------------------------------- C++ operator new
 * Interposed only to name the right caller: each hook records its return
 * address as the origin and calls the next definition (libstdc++'s), which
 * allocates through the hooked malloc/aligned_alloc. An enclosing hook's
 * origin wins (libstdc++'s new[] calls new through the PLT). Exceptions from
 * the real operator new pass through these frames (unwind tables are on by
 * default on x86-64). operator delete is not needed: it calls free. */
#define CXX_NEW(sym, params, args)                                              \
    RPP_EXPORT void *sym params                                                 \
    {                                                                           \
        static void *(*next) params;                                            \
        if (RPP_UNLIKELY(!next)) {                                              \
            ENSURE_READY();                                                     \
            *(void **)&next = dlsym(RTLD_NEXT, #sym);                           \
            if (!next)                                                          \
                die(#sym);                                                      \
        }                                                                       \
        int outer = tls_origin == NULL;                                         \
        if (outer)                                                              \
            tls_origin = __builtin_return_address(0);                           \
        void *p = next args;                                                    \
        if (outer)                                                              \
            tls_origin = NULL;                                                  \
        return p;                                                               \
    }

typedef struct cxx_nothrow cxx_nothrow;   /* std::nothrow_t, passed by reference */
CXX_NEW(_Znwm, (size_t n), (n))
CXX_NEW(_Znam, (size_t n), (n))
CXX_NEW(_ZnwmRKSt9nothrow_t, (size_t n, const cxx_nothrow *t), (n, t))
CXX_NEW(_ZnamRKSt9nothrow_t, (size_t n, const cxx_nothrow *t), (n, t))
CXX_NEW(_ZnwmSt11align_val_t, (size_t n, size_t a), (n, a))
CXX_NEW(_ZnamSt11align_val_t, (size_t n, size_t a), (n, a))
CXX_NEW(_ZnwmSt11align_val_tRKSt9nothrow_t, (size_t n, size_t a, const cxx_nothrow *t), (n, a, t))
CXX_NEW(_ZnamSt11align_val_tRKSt9nothrow_t, (size_t n, size_t a, const cxx_nothrow *t), (n, a, t))

/* -------------------------------------------------- configuration */
rpp_config rpp_cfg;

/* A bad RINGPOOL_PRELOAD_* value must not change what the program does: one
   line on stderr naming the variable, the value, what is wrong and what
   happens instead, and the program runs on. */
static void bad_config(const char *var, const char *value, const char *why,
                       const char *instead)
{
    char line[900], shown[210];
    size_t n = 0;
    /* the value as the CLI names it; a long one: its first 200 bytes are enough */
    if (strlen(rpi_outfile_printable(line, sizeof line, value)) > 200) {
        rpi_outfile_printable(shown, 201, value);
        strcat(shown, "...");
    } else {
        memcpy(shown, line, strlen(line) + 1);
    }
    const char *parts[] = {var, "=", shown, ": ", why, "; ", instead};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (const char *c = parts[i]; *c && n < sizeof line - 1; c++)
            line[n++] = *c;
    line[n] = '\0';
    rpp_say(line, "", "");
}

#define NO_REPORT "running without a report"

static const struct { const char *name; int sig; } signal_names[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
};

static int parse_signal(const char *v)
{
    const char *name = strncmp(v, "SIG", 3) == 0 ? v + 3 : v;
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
        if (strcmp(name, signal_names[i].name) == 0)
            return signal_names[i].sig;
    if (*v >= '0' && *v <= '9') {
        long n = 0;
        for (const char *c = v; *c; c++) {
            if (*c < '0' || *c > '9' || n > 1000)
                return -1;
            n = n * 10 + (*c - '0');
        }
        if (n >= 1 && n <= SIGRTMAX && n != SIGKILL && n != SIGSTOP)
            return (int)n;
    }
    return -1;
}

static int parse_flag(const char *var, int dflt)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return dflt;
    if (strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
        return 1;
    if (strcmp(v, "0") == 0 || strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
        return 0;
    bad_config(var, v, "expected 1/yes/true or 0/no/false",
               dflt ? "using the default, 1" : "using the default, 0");
    return dflt;
}

static void on_report_signal(int sig)
{
    (void)sig;
    if (!rpp_cfg.enabled)
        return;
    int saved = errno;
    unsigned busy = __atomic_fetch_or(&rpp_tls_state, RPP_BUSY, __ATOMIC_RELAXED) & RPP_BUSY;
    rpp_write_report("signal");
    if (!busy)
        __atomic_fetch_and(&rpp_tls_state, ~RPP_BUSY, __ATOMIC_RELAXED);
    errno = saved;
}

/* Makes exec'd children load the interposer by absolute path (or not at all,
   with RINGPOOL_PRELOAD_INHERIT=0), rewriting our entry in LD_PRELOAD. The
   path is the one we were loaded by when it is absolute: it may be a link
   whose target's path holds a space or a colon, which the loader splits
   LD_PRELOAD at (run --preload names such a library through a link). A
   relative name is made absolute, and left as it was when that path holds a
   space or a colon. */
static void fix_ld_preload(int inherit)
{
    Dl_info info;
    static char self[4096], rebuilt[8192];
    if (!dladdr((void *)&fix_ld_preload, &info) || !info.dli_fname)
        return;
    if (info.dli_fname[0] == '/') {
        size_t flen = strlen(info.dli_fname);
        if (flen >= sizeof self)
            return;
        memcpy(self, info.dli_fname, flen + 1);
    } else if (!realpath(info.dli_fname, self)) {
        return;
    }
    int splits = strpbrk(self, " :") != NULL;
    const char *lp = getenv("LD_PRELOAD");
    if (!lp)
        return;
    const char *base = strrchr(self, '/');
    base = base ? base + 1 : self;
    size_t n = 0;
    int changed = 0;
    for (const char *c = lp; *c;) {
        while (*c == ' ' || *c == ':')
            c++;
        const char *start = c;
        while (*c && *c != ' ' && *c != ':')
            c++;
        size_t len = (size_t)(c - start);
        if (!len)
            continue;
        const char *tail = start + len;
        while (tail > start && tail[-1] != '/')
            tail--;
        int is_self = (size_t)(start + len - tail) == strlen(base) &&
                      memcmp(tail, base, strlen(base)) == 0;
        const char *word = start;
        size_t wlen = len;
        if (is_self) {
            changed = 1;
            if (!inherit)
                continue;
            if (!splits) {
                word = self;
                wlen = strlen(self);
            }
        }
        if (n + wlen + 2 >= sizeof rebuilt)
            return;
        if (n)
            rebuilt[n++] = ':';
        memcpy(rebuilt + n, word, wlen);
        n += wlen;
    }
    rebuilt[n] = '\0';
    if (changed && strcmp(rebuilt, lp) != 0) {
        if (n)
            setenv("LD_PRELOAD", rebuilt, 1);
        else
            unsetenv("LD_PRELOAD");
    }
}

/* The forking thread holds every table lock across fork, inside the
   bookkeeping (IN), so its own signal handlers queue instead of waiting. */
static void before_fork(void)
{
    if (tracking) {
        rpp_enter(rpp_tls_state & RPP_BUSY);
        rpi_stack_lock();
        rpp_table_lock_all();
        rpp_sample_lock();
    }
}

static void after_fork_parent(void)
{
    if (tracking) {
        rpp_sample_unlock();
        rpp_table_unlock_all();
        rpi_stack_unlock();
        rpp_leave();
    }
}

/* The process whose memory this is: set at start-up and in a fork's
   child. A child of vfork shares its parent's memory and runs no fork
   handlers: when it calls _exit after a failed exec (the usual way to
   spawn with vfork), its pid is not this one, and the tables it
   would report are its parent's (report_at_exit). */
static _Atomic pid_t image_pid;

static void after_fork_child(void)
{
    atomic_store(&image_pid, getpid());
    if (tracking) {
        rpp_sample_unlock();
        rpp_table_unlock_all();
        rpi_stack_unlock();
        rpp_counts_after_fork_child();
        rpp_leave();
    }
}

/* Checks the report pattern and stores it, anchored, in rpp_cfg; 0 (with
   one line on stderr) when there will be no report. */
static int configure_report(const char *pattern)
{
    static const char var[] = "RINGPOOL_PRELOAD_REPORT";
    if (!*pattern) {
        bad_config(var, "", "empty report path", NO_REPORT);
        return 0;
    }
    for (const char *c = pattern; *c; c++) {
        if (*c != '%')
            continue;
        c++;
        if (*c != 'p' && *c != 'r' && *c != '%') {
            bad_config(var, pattern,
                       "unknown %-escape (use %p for the pid, %r for the reason, %% for %)",
                       NO_REPORT);
            return 0;
        }
    }
    /* Relative patterns are anchored at the starting directory: programs
       such as git chdir before they exit. */
    size_t n = 0;
    if (pattern[0] != '/') {
        if (!getcwd(rpp_cfg.report_pattern, sizeof rpp_cfg.report_pattern - 2)) {
            bad_config(var, pattern, "relative path and the working directory is unreadable",
                       NO_REPORT);
            return 0;
        }
        n = strlen(rpp_cfg.report_pattern);
        rpp_cfg.report_pattern[n++] = '/';
    }
    size_t plen = strlen(pattern);
    if (n + plen >= sizeof rpp_cfg.report_pattern) {
        bad_config(var, pattern, "path too long", NO_REPORT);
        return 0;
    }
    memcpy(rpp_cfg.report_pattern + n, pattern, plen + 1);
    char probe[4096];
    if (rpp_expand_pattern(rpp_cfg.report_pattern, "signal", probe, sizeof probe) != 0) {
        bad_config(var, pattern, "expanded path too long", NO_REPORT);
        return 0;
    }
    /* A fixed name: the first process of the run owns it (exec'd children
       learn its pid from the environment); the others write beside it. */
    int has_pid = 0;
    for (const char *c = pattern; *c; c++)
        if (*c == '%') {
            has_pid |= c[1] == 'p';
            c++;
        }
    if (!has_pid) {
        rpp_cfg.fixed_name = 1;
        const char *owner = getenv("RINGPOOL_PRELOAD_REPORT_OWNER");
        long v = 0;
        for (const char *c = owner; c && *c >= '0' && *c <= '9' && v < 100000000; c++)
            v = v * 10 + (*c - '0');
        if (v > 0) {
            rpp_cfg.owner_pid = v;
        } else {
            char num[24];
            size_t i = sizeof num - 1;
            unsigned long p = (unsigned long)getpid();
            num[i] = '\0';
            do {
                num[--i] = (char)('0' + p % 10);
                p /= 10;
            } while (p);
            rpp_cfg.owner_pid = (long)getpid();
            setenv("RINGPOOL_PRELOAD_REPORT_OWNER", num + i, 1);
        }
    }
    return 1;
}

static void report_at_exit(void);

__attribute__((constructor(101))) static void rpp_start(void)
{
    ENSURE_READY();
    atomic_store(&image_pid, getpid());
    /* allocations by the calls below are the interposer's */
    __atomic_fetch_or(&rpp_tls_state, RPP_BUSY, __ATOMIC_RELAXED);
    /* Default: beside the pool reports when $RINGPOOL_REPORT names a
       directory (so one report directory collects both), else the cwd. */
    static char dflt[4096];
    const char *pattern = getenv("RINGPOOL_PRELOAD_REPORT");
    const char *pools = getenv("RINGPOOL_REPORT");
    const char *slash = pools ? strrchr(pools, '/') : NULL;
    static const char base_name[] = "ringpool-preload.%p.json";
    if (!pattern && slash && (size_t)(slash - pools) + sizeof base_name < sizeof dflt) {
        size_t dl = (size_t)(slash - pools) + 1;
        memcpy(dflt, pools, dl);
        memcpy(dflt + dl, base_name, sizeof base_name);
        /* a literal % in the directory part would read as an escape */
        pattern = memchr(dflt, '%', dl) ? base_name : dflt;
    }
    if (!pattern)
        pattern = base_name;
    rpp_cfg.enabled = configure_report(pattern);

    const char *sig = getenv("RINGPOOL_PRELOAD_SIGNAL");
    if (sig && *sig) {
        int s = parse_signal(sig);
        if (s < 0) {
            bad_config("RINGPOOL_PRELOAD_SIGNAL", sig,
                       "unknown signal (use a name such as USR2 or a number; not KILL or STOP)",
                       "no report on demand");
        } else {
            rpp_cfg.report_signal = s;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_report_signal;
            sa.sa_flags = SA_RESTART;
            sigemptyset(&sa.sa_mask);
            sigaction(s, &sa, NULL);
        }
    }
    rpp_cfg.all_sites = parse_flag("RINGPOOL_PRELOAD_ALL_SITES", 0);
    rpp_stacks_init();
    int inherit = parse_flag("RINGPOOL_PRELOAD_INHERIT", 1);
    fix_ld_preload(inherit);
    /* exec'd children inherit the anchored pattern, not a relative one they
       would resolve against wherever they start */
    if (inherit && rpp_cfg.enabled && getenv("RINGPOOL_PRELOAD_REPORT") && pattern[0] != '/')
        setenv("RINGPOOL_PRELOAD_REPORT", rpp_cfg.report_pattern, 1);
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    /* quick_exit runs no destructor and ends in glibc's own _exit, not
       ours: the report is its last handler (registered first, run last,
       after the program's own) */
    at_quick_exit(report_at_exit);
    __atomic_fetch_and(&rpp_tls_state, ~RPP_BUSY, __ATOMIC_RELAXED);
}

/* The exit report, once per process: from our destructor on a normal exit,
   from _exit/_Exit, which shells and forked children call directly, or as
   the last at_quick_exit handler; none from a child of vfork (image_pid). */
static _Atomic pid_t reported_pid;

static void report_at_exit(void)
{
    if (!rpp_cfg.enabled || !tracking)
        return;
    pid_t self = getpid();
    pid_t image = atomic_load(&image_pid);
    if (image && self != image)
        return;     /* a vfork child: its parent's memory, its parent's report */
    if (atomic_exchange(&reported_pid, self) == self)
        return;
    int saved = errno;
    __atomic_fetch_or(&rpp_tls_state, RPP_BUSY, __ATOMIC_RELAXED);
    rpp_write_report("exit");
    __atomic_fetch_and(&rpp_tls_state, ~RPP_BUSY, __ATOMIC_RELAXED);
    errno = saved;
}

__attribute__((destructor(101))) static void rpp_stop(void)
{
    report_at_exit();
}

/* _exit or _Exit on the resolving thread (from dlsym's code, or a handler
   that interrupted it): nothing was recorded yet, so no report; and
   ENSURE_READY would wait for this thread's own resolution. */
static __attribute__((noreturn, cold)) void exit_resolving(int status)
{
    syscall(SYS_exit_group, status);
    __builtin_trap();
}

RPP_EXPORT void _exit(int status)
{
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING))
        exit_resolving(status);
    ENSURE_READY();
    report_at_exit();
    real._exit(status);
    __builtin_trap();
}

RPP_EXPORT void _Exit(int status)
{
    if (RPP_UNLIKELY(rpp_tls_state & RPP_RESOLVING))
        exit_resolving(status);
    ENSURE_READY();
    report_at_exit();
    real._Exit(status);
    __builtin_trap();
}
