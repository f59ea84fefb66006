/*
 * stack.c -- whole call stacks: capture with libunwind, a table of distinct
 * stacks (see stack.h for the rules).
 *
 * Table: an open-addressed array of 64-bit slots (high half: the top 32 bits
 * of the stack's hash; low half: where its record is), linear probing, load
 * at most 1/2. Readers probe it without a lock; a miss takes the lock, probes
 * again and inserts. Growth publishes a new array twice the size and leaves
 * the old one mapped, so a reader still probing it stays safe (it can only
 * miss, and a miss is re-checked under the lock). Records (depth, id,
 * frames: the hash is computed again when the table grows) are carved one
 * after the other from 1 MiB mmap'd chunks. A
 * record's place is its chunk's number and its offset in the chunk, in 32
 * bits, so that the probe goes from the slot to the record through the small
 * array of chunks, which stays in the cache, rather than through the array
 * by id, which is read at random. That array, reserved for
 * RPI_STACK_MAX_STACKS ids and touched only as ids are handed out, holds the
 * records' addresses for the readers by id.
 */
#include "stack.h"
#include "rawmem.h"

#ifdef RPI_STACK_NO_LIBUNWIND
/* libringpool: glibc's backtrace (libgcc's unwinder) for the frames the
   cached walker does not follow, so the library links nothing new. */
#include <execinfo.h>
#define general_backtrace(buf, n) backtrace((void **)(buf), (n))
#else
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define general_backtrace(buf, n) unw_backtrace((void **)(buf), (n))
#endif

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>
#ifdef RPI_STACK_HEAP_STATE
#include <pthread.h>
#include <stdlib.h>
#endif

#define SKIP_WINDOW RPI_STACK_SKIP_WINDOW
#define CHUNK_BYTES ((size_t)1 << 20)
#define TABLE_INITIAL 4096u
/* A record's place: its chunk's number (from 1: a place is never 0, an
   empty slot) << UNIT_BITS | its offset in the chunk in UNIT_BYTES. Records
   are packed, not aligned to cache lines: aligned, the probe's first read
   of a record missed more often than the lines saved (gcc's cc1, by
   cachegrind: 0.28 million more last-level misses), stacks made one after
   the other being used together. */
#define UNIT_BYTES 8u
#define UNIT_BITS 17
_Static_assert(CHUNK_BYTES == (size_t)UNIT_BYTES << UNIT_BITS, "an offset fills UNIT_BITS");
/* Enough chunks for RPI_STACK_MAX_STACKS records of the largest size. */
#define MAX_CHUNKS (1u << 15)
_Static_assert((uint64_t)RPI_STACK_MAX_STACKS * (16 + 8 * RPI_STACK_MAX_DEPTH) <
                   (uint64_t)(MAX_CHUNKS - 1) * CHUNK_BYTES,
               "chunks for every record");
_Static_assert(((uint64_t)MAX_CHUNKS << UNIT_BITS) <= (uint64_t)UINT32_MAX + 1, "places fit 32 bits");

typedef struct record {
    uint32_t n;                         /* >= 1; 0: no more records in this chunk */
    uint32_t id;
    uintptr_t frame[];
} record;

typedef struct table {
    size_t mask;
    _Atomic uint64_t slot[];
} table;

static _Atomic(table *) current;
static _Atomic(record *) *records;      /* by id; reserved, touched lazily */
static _Atomic uint32_t next_id = 1;
static unsigned char *chunks[MAX_CHUNKS];   /* by number; each written before a place in
                                               it is published */
static uint32_t nchunks;                /* the last chunk's number (under the lock) */
static size_t chunk_used;               /* bytes of it used (under the lock) */

/* The place of the record at byte off of chunk c, and back. */
static inline uint32_t place_of(uint32_t c, size_t off)
{
    return c << UNIT_BITS | (uint32_t)(off / UNIT_BYTES);
}
static inline record *record_at(uint32_t place)
{
    return (record *)(void *)(chunks[place >> UNIT_BITS] +
                              (size_t)(place & ((1u << UNIT_BITS) - 1)) * UNIT_BYTES);
}
static atomic_int lock_held;
static int ready;
static int fast_unwinder = 1;
int rpi_stack_fast_ready;

__thread int rpi_stack_busy RPI_STACK_TLS;
#ifdef RPI_STACK_HEAP_STATE
/* This thread's heap blocks (stack.h), freed by the key's destructor at its
   exit (which clears them: a capture later in the exit makes them again). */
enum { HEAP_FRAMES, HEAP_WALK, HEAP_MEM, HEAP_N };
static __thread void *tls_heap[HEAP_N];
static pthread_key_t heap_key;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static int heap_key_ok;

static void heap_free(void *unused)
{
    (void)unused;
    for (int i = 0; i < HEAP_N; i++) {
        free(tls_heap[i]);
        tls_heap[i] = NULL;
    }
}

static void heap_key_make(void) { heap_key_ok = pthread_key_create(&heap_key, heap_free) == 0; }

/* The library goes (dlclose, or the process's exit): the calling thread's
   blocks go here (it runs no key destructor then), and the key goes, so
   that a thread outliving the library does not call into it at its exit
   (its blocks stay: memory of a library no longer there). */
__attribute__((destructor)) static void heap_at_exit(void)
{
    heap_free(NULL);
    if (heap_key_ok) {
        (void)pthread_key_delete(heap_key);
        heap_key_ok = 0;
    }
}

__attribute__((noinline)) static void *heap_make(int which, size_t n)
{
    pthread_once(&heap_once, heap_key_make);
    if (!heap_key_ok || pthread_setspecific(heap_key, tls_heap) != 0)
        return NULL;
    return tls_heap[which] = calloc(1, n);
}

/* This thread's zeroed block `which` of n bytes, or NULL. */
static inline void *heap_block(int which, size_t n)
{
    void *p = tls_heap[which];
    return __builtin_expect(p != NULL, 1) ? p : heap_make(which, n);
}
#define THREAD_FRAMES()                                                   \
    ((uintptr_t *)heap_block(HEAP_FRAMES, sizeof(uintptr_t) *             \
                                              (1 + RPI_STACK_MAX_DEPTH + SKIP_WINDOW)))
#else
static __thread uintptr_t tls_frames[1 + RPI_STACK_MAX_DEPTH + SKIP_WINDOW]
    RPI_STACK_TLS;
#define THREAD_FRAMES() tls_frames
#endif
/* The id derived from this thread's last walk by unwind.c (0: nothing to
   reuse); the walker itself knows whether the next walk would be the same. */
static __thread uint32_t tls_last_id RPI_STACK_TLS;

static void lock(void) { rpi_spin_lock(&lock_held); }
static void unlock(void) { rpi_spin_unlock(&lock_held); }

void rpi_stack_lock(void) { lock(); }
void rpi_stack_unlock(void) { unlock(); }

static table *table_new(size_t cap)
{
    table *t = rpi_map_zeroed(sizeof(table) + cap * sizeof(uint64_t));
    if (t)
        t->mask = cap - 1;
    return t;
}

int rpi_stack_init(void)
{
    if (ready)
        return 0;
    records = rpi_map_zeroed((size_t)RPI_STACK_MAX_STACKS * sizeof *records);
    table *t = table_new(TABLE_INITIAL);
    if (!records || !t)
        return -1;
    if (rpi_unwind_init() != 0)
        fast_unwinder = 0;
    atomic_store_explicit(&current, t, memory_order_release);
    ready = 1;
    rpi_stack_fast_ready = fast_unwinder;
    return 0;
}

static inline uint64_t hash_frames(const uintptr_t *f, size_t n)
{
    uint64_t h = RPI_STACK_HASH_SEED;
    for (size_t i = 0; i < n; i++)
        h = rpi_stack_hash_step(h, f[i]);
    return rpi_stack_hash_final(h, n);
}

static inline int same(const record *r, const uintptr_t *f, size_t n)
{
    return r->n == n && memcmp(r->frame, f, n * sizeof *f) == 0;
}

/* id of the stack in t, or 0. */
static inline uint32_t probe(const table *t, uint64_t h, const uintptr_t *f, size_t n)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint64_t v = atomic_load_explicit(&t->slot[i], memory_order_acquire);
        if (!v)
            return 0;
        if ((uint32_t)(v >> 32) == tag) {
            record *r = record_at((uint32_t)v);
            if (same(r, f, n))
                return r->id;
        }
    }
}

static void place(table *t, uint64_t h, uint32_t at)
{
    size_t i = (size_t)h & t->mask;
    while (atomic_load_explicit(&t->slot[i], memory_order_relaxed))
        i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slot[i], (h >> 32 << 32) | at, memory_order_release);
}

/* Under the lock: a bigger table holding every id, published. */
static table *grow(table *t)
{
    table *n = table_new((t->mask + 1) * 2);
    if (!n)
        return NULL;
    /* every record, chunk by chunk (a chunk's unused end is zeroed) */
    for (uint32_t c = 1; c <= nchunks; c++) {
        for (size_t off = 0; off + sizeof(record) <= CHUNK_BYTES;) {
            const record *r = (const record *)(const void *)(chunks[c] + off);
            if (!r->n)
                break;
            place(n, hash_frames(r->frame, r->n), place_of(c, off));
            off += sizeof(record) + r->n * sizeof(uintptr_t);
        }
    }
    atomic_store_explicit(&current, n, memory_order_release);
    return n;
}

static uint32_t insert_locked(uint64_t h, const uintptr_t *f, size_t n)
{
    table *t = atomic_load_explicit(&current, memory_order_acquire);
    uint32_t id = probe(t, h, f, n);
    if (id)
        return id;
    id = atomic_load_explicit(&next_id, memory_order_relaxed);
    if (id >= RPI_STACK_MAX_STACKS)
        return 0;
    if ((size_t)id * 2 > t->mask + 1 && !(t = grow(t)))
        return 0;
    size_t bytes = sizeof(record) + n * sizeof *f;   /* a multiple of UNIT_BYTES */
    if (!nchunks || bytes > CHUNK_BYTES - chunk_used) {
        if (nchunks + 1 >= MAX_CHUNKS)
            return 0;
        unsigned char *c = rpi_map_zeroed(CHUNK_BYTES);
        if (!c)
            return 0;
        chunks[++nchunks] = c;
        chunk_used = 0;
    }
    uint32_t at = place_of(nchunks, chunk_used);
    chunk_used += bytes;
    record *r = record_at(at);
    r->n = (uint32_t)n;
    r->id = id;
    memcpy(r->frame, f, n * sizeof *f);
    atomic_store_explicit(&records[id], r, memory_order_release);
    atomic_store_explicit(&next_id, id + 1, memory_order_release);
    place(t, h, at);
    return id;
}

/* A stack the table did not hold at the lock-free probe: added. */
static __attribute__((noinline, cold)) uint32_t insert(const uintptr_t *f, size_t n, uint64_t h)
{
    int saved = errno;
    lock();
    uint32_t id = insert_locked(h, f, n);
    unlock();
    errno = saved;
    return id;
}

/* The id of f[0..n) whose hash is h. */
static inline uint32_t intern_hashed(const uintptr_t *f, size_t n, uint64_t h)
{
    uint32_t id = probe(atomic_load_explicit(&current, memory_order_acquire), h, f, n);
    return id ? id : insert(f, n, h);
}

uint32_t rpi_stack_intern_hashed(const uintptr_t *f, size_t n, uint64_t h)
{
    return intern_hashed(f, n, h);
}

static uint32_t intern(const uintptr_t *f, size_t n)
{
    if (!ready || n < 1 || n > RPI_STACK_MAX_DEPTH)
        return 0;
    return intern_hashed(f, n, hash_frames(f, n));
}

uint32_t rpi_stack_intern(const uintptr_t *frames, size_t n)
{
    if (rpi_stack_busy)
        return 0;
    rpi_stack_busy = 1;
    uint32_t id = intern(frames, n);
    rpi_stack_busy = 0;
    return id;
}

#if defined(__x86_64__) && defined(__linux__) && !defined(RPI_STACK_HEAP_STATE)
/* The interposer runs the general unwinder on a stack of its own
   (rpi_unwind_side_stack): the thread's may be a small alternate signal
   stack (SIGSTKSZ, 8 KiB: a handler that allocates there overflowed it,
   libunwind needing some 5 KiB) or a thread's small stack.
   rpi_on_stack(fn, arg, top) calls fn(arg) with rsp at top (16-aligned).
   Its frame is an ordinary frame-pointer frame on the thread's stack
   (rbp-based CFA, rbp saved below the return address), so an unwinder
   started on the side stack comes back to the thread's through it. */
RPI_STACK_HIDDEN void rpi_on_stack(void (*fn)(void *), void *arg, void *top);
__asm__(".text\n"
        ".globl rpi_on_stack\n"
        ".hidden rpi_on_stack\n"
        ".type rpi_on_stack, @function\n"
        "rpi_on_stack:\n"
        ".cfi_startproc\n"
        "    pushq %rbp\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbp, -16\n"
        "    movq %rsp, %rbp\n"
        ".cfi_def_cfa_register %rbp\n"
        "    movq %rdx, %rsp\n"
        "    movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    call *%rax\n"
        "    movq %rbp, %rsp\n"
        "    popq %rbp\n"
        ".cfi_def_cfa %rsp, 8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size rpi_on_stack, .-rpi_on_stack\n");

typedef struct general_call {
    uintptr_t *buf;
    int n, got;
} general_call;

static void general_on_side(void *arg)
{
    general_call *c = arg;
    c->got = general_backtrace(c->buf, c->n);
}

static int general_frames(uintptr_t *buf, int n)
{
    void *top = rpi_unwind_side_stack();
    if (!top)
        return 0;   /* the caller records its one frame */
    general_call c = {buf, n, 0};
    rpi_on_stack(general_on_side, &c, top);
    return c.got;
}
#else
#define general_frames(buf, n) general_backtrace(buf, n)
#endif

/* The general unwinder's frames, into this thread's buffer (one spare slot
   before them). errno kept: libunwind may touch it. */
static int general_walk(uintptr_t *buf, int depth)
{
    int saved = errno;
    int got = general_frames(buf, depth + SKIP_WINDOW);
    errno = saved;
    return got < 0 ? 0 : got;
}

/* The stack below `from` out of frames buf[0..got) that do not show
   where it starts: `from`, then whatever lies below the frames in
   [self_lo, self_hi) (an unwinder that stopped early, or frames without
   unwind tables). buf[-1] must be writable. */
static uint32_t intern_from(uintptr_t *buf, int got, int depth, uintptr_t from, uintptr_t self_lo,
                            uintptr_t self_hi)
{
    for (int i = 0; i < got && i < SKIP_WINDOW; i++)
        if (buf[i] == from) {
            size_t n = (size_t)(got - i);
            return intern(buf + i, n > (size_t)depth ? (size_t)depth : n);
        }
    int i = 0;
    while (i < got && buf[i] >= self_lo && buf[i] < self_hi)
        i++;
    uintptr_t *f = buf + i - 1;
    size_t n = (size_t)(got - i) + 1;
    f[0] = from;
    return intern(f, n > (size_t)depth ? (size_t)depth : n);
}

/* The interposer's code (rpi_stack_set_self): its frames never start a
   stack. */
static uintptr_t self_lo, self_hi;

void rpi_stack_set_self(uintptr_t lo, uintptr_t hi)
{
    self_lo = lo;
    self_hi = hi;
}

/* Out of line (also under LTO): inlined into rpi_stack_here, its registers
   and frame would be set up on the memo's hits too. */
__attribute__((noinline)) uint32_t rpi_stack_walk_here(int depth, uintptr_t from, uintptr_t sp,
                                                       uintptr_t bp)
{
    if (depth < 1 || !ready) {
        rpi_stack_busy = 0;
        return 0;
    }
    if (depth > RPI_STACK_MAX_DEPTH)
        depth = RPI_STACK_MAX_DEPTH;
    tls_last_id = 0;    /* rpi_stack_capture's memo: the walk below replaces it */
    rpi_walk w;
    int r = fast_unwinder && sp ? rpi_unwind_from(&w, sp, bp, from, depth) : -1;
    if (r == 0 && w.start >= 0) {
        uint32_t id = intern_hashed(w.frames + w.start, (size_t)w.kept, w.hash);
        rpi_unwind_keep_id(id);
        rpi_stack_busy = 0;
        return id;
    }
    return rpi_stack_walk_rest(r, r == 0 ? w.frames : NULL, r == 0 ? w.n : 0, depth, from);
}

uint32_t rpi_stack_walk_rest(int r, const uintptr_t *frames, int n, int depth, uintptr_t from)
{
    /* per-thread, not on the C stack, which may be a small signal stack */
    uintptr_t *thread_frames = THREAD_FRAMES();
    if (!thread_frames) {
        rpi_stack_busy = 0;
        return 0;
    }
    uintptr_t *buf = thread_frames + 1;
    int got;
    if (r == 0) {
        got = n;
        memcpy(buf, frames, (size_t)got * sizeof *buf);
    } else {
        got = general_walk(buf, depth);
    }
    uint32_t id = intern_from(buf, got, depth, from, self_lo, self_hi);
    if (r == 0)
        rpi_unwind_keep_id(id);
    rpi_stack_busy = 0;
    return id;
}

uint32_t rpi_stack_capture(int depth, uintptr_t skip_lo, uintptr_t skip_hi)
{
    if (rpi_stack_busy || depth < 1 || !ready)
        return 0;
    rpi_stack_busy = 1;
    if (depth > RPI_STACK_MAX_DEPTH)
        depth = RPI_STACK_MAX_DEPTH;
    uint32_t id;
    rpi_walk w;
    int r = fast_unwinder ? rpi_unwind_fast(&w, 0, skip_lo, skip_hi, depth, tls_last_id != 0) : -1;
    if (r > 0) {
        id = tls_last_id;
    } else if (r == 0) {
        id = w.kept ? intern_hashed(w.frames + w.start, (size_t)w.kept, w.hash) : 0;
        tls_last_id = id;
    } else {
        uintptr_t *frames = THREAD_FRAMES();
        if (!frames) {
            rpi_stack_busy = 0;
            tls_last_id = 0;
            return 0;
        }
        uintptr_t *buf = frames + 1;
        int got = general_walk(buf, depth);
        int i = 0;
        while (i < got && i < SKIP_WINDOW && buf[i] >= skip_lo && buf[i] < skip_hi)
            i++;
        size_t n = (size_t)(got - i);
        if (n > (size_t)depth)
            n = (size_t)depth;
        id = n ? intern(buf + i, n) : 0;
        tls_last_id = 0;
    }
    rpi_stack_busy = 0;
    return id;
}

void rpi_stack_use_fast_unwinder(int on)
{
    fast_unwinder = on;
    rpi_stack_fast_ready = ready && on;
    rpi_unwind_forget_walks();
}

size_t rpi_stack_get(uint32_t id, const uintptr_t **frames)
{
    if (!ready || id == 0 || id >= atomic_load_explicit(&next_id, memory_order_acquire))
        return 0;
    record *r = atomic_load_explicit(&records[id], memory_order_acquire);
    *frames = r->frame;
    return r->n;
}

const uintptr_t *rpi_stack_frames_of(uint32_t id)
{
    return atomic_load_explicit(&records[id], memory_order_acquire)->frame;
}

uint32_t rpi_stack_count(void)
{
    return atomic_load_explicit(&next_id, memory_order_acquire);
}
