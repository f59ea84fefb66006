/* allocator._pyhooks: CPython's allocator domains routed through ringpool's
 * accounting, each allocation tagged by the Python frame that made it.
 *
 * Design (after CPython's Modules/_tracemalloc.c, written anew):
 *  - PyMem_SetAllocator wrappers for the MEM and OBJ domains (and RAW, which
 *    may be called without the GIL).  The memory itself always comes from the
 *    previous allocator (pymalloc, or glibc): the program's heap layout does
 *    not change, only the accounting is added.
 *  - A per-thread re-entrancy guard: allocations made while this module is at
 *    work (building a location, a report, a Python object for a caller) go
 *    straight to the previous allocator and are not recorded.
 *  - Frames are read from the thread state only for recorded allocations, and
 *    only when the thread holds the GIL: RAW calls made without it are
 *    recorded under the site "(no Python frame)", like every allocation made
 *    while no Python code runs (interpreter start-up and finalization).
 *  - Tables, all allocated from libc (never from a Python domain):
 *      traces     pointer -> (size, site); open addressing, backward-shift
 *                 deletion, so no tombstones;
 *      code cache (code object, instruction offset) -> location; the key is
 *                 checked against the code's file name, qualified name, first
 *                 line and line table's hash, so a code object freed and
 *                 another one made at the same address is not confused with
 *                 the first (see "code identity");
 *      locations  (file, function, line), each distinct one once;
 *      sites      a stack of N locations (innermost first), each once, with
 *                 its counters: outstanding blocks and bytes, peak bytes,
 *                 allocations ever.  The counters are updated at every
 *                 allocation and free, so a report costs O(sites) and never
 *                 walks the blocks.
 *    One spin lock guards them; Python code is never called while it is held
 *    (a free made from inside such a call would take it again).
 *  - fork: the child resets the lock and keeps the tables (its heap is a copy
 *    of the parent's); reports are named by the pid at the time of writing.
 *  - Finalization: a report written before Py_FinalizeEx (from an atexit
 *    callback) keeps its counters; a libc atexit handler, which runs after
 *    Py_FinalizeEx returned, rewrites the file with what finalization left.
 *
 *  - Native stacks (start(native=N), run --python --native): the recording
 *    path also takes the native call stack (csrc/stack/, in the module
 *    allocator._pystack) and the Python frames its eval-loop frames ran; a
 *    site is then the pair.  See "native stacks" below.
 *
 * Only CPython 3.11 is supported: the running frame is read from the 3.11
 * frame layout, as tracemalloc does; other versions are refused at import.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000 || defined(Py_LIMITED_API)
/* Another interpreter: the package still builds and installs; importing the
 * hooks says why they are not available. */
PyMODINIT_FUNC PyInit__pyhooks(void)
{
    PyErr_Format(PyExc_ImportError,
                 "allocator._pyhooks reads CPython 3.11's frame layout; this is Python %d.%d",
                 PY_MAJOR_VERSION, PY_MINOR_VERSION);
    return NULL;
}
#else

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
/* The thread state of the GIL holder is read inline (_PyThreadState_GET), not
 * through a call; pycore_gc.h redefines the public alias objimpl.h made. */
#undef _PyGC_FINALIZED
#include "internal/pycore_pystate.h"
#undef Py_BUILD_CORE

/* The sampler's arithmetic (xoshiro256** stream, geometric draw), shared with
 * the library's and the interposer's samplers. */
#include "../csrc/geometric.h"
/* Where a report file may be written, and how (csrc/outfile.c, compiled in). */
#include "../csrc/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The native stacks of run --python --native: csrc/stack/'s unwinder and
 * stack table, in the extension module allocator._pystack (_pystack.c says
 * why it is a module of its own), reached through its capsule. */
#include "../csrc/stack/stack.h"
#include "../csrc/stack/module.h"
#include "_pystack.h"
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MAX_DEPTH 64
#define NO_FRAME_SITE 0u
#define NONE32 UINT32_MAX

/* ------------------------------------------------------------------ lock */
static atomic_flag tables_lock = ATOMIC_FLAG_INIT;

static inline void lock_tables(void)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&tables_lock, memory_order_acquire)) {
        if (++spins > 64) {
            sched_yield();
            spins = 0;
        }
    }
}

static inline void unlock_tables(void)
{
    atomic_flag_clear_explicit(&tables_lock, memory_order_release);
}

/* Thread-local state, initial-exec: a plain %fs-relative access, no
 * __tls_get_addr call per allocation (a few dozen bytes of the static TLS
 * surplus that the loader keeps for dlopen'ed modules). */
#define TLS __thread __attribute__((tls_model("initial-exec")))

/* The per-thread state of the hot paths, in one block (one address load):
 * the re-entrancy guard, and the sampler's countdown: the bytes before the
 * next sampled byte (an allocation of n bytes holds a sampled byte when it
 * takes the countdown below zero: the subtraction's sign flag, no compare). */
static TLS struct {
    int in_hook;
    int64_t left;
} tls_hot;
#define in_hook (tls_hot.in_hook)
#define tls_left (tls_hot.left)

/* --------------------------------------------------------------- strings */
typedef struct {
    char **text;        /* owned copies, UTF-8 */
    uint32_t len, cap;
    uint32_t *slots;    /* hash -> index + 1, 0 empty */
    uint32_t nslots;    /* power of two */
} strtab;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;            /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* ------------------------------------------------------------- the tables */
typedef struct {
    uintptr_t ptr;      /* 0: empty slot */
    size_t size;
    uint32_t site;
    uint32_t k;         /* sampled mode: the block's samples; 0 in exact mode */
} trace_t;

typedef struct {
    const void *code;   /* NULL: empty slot */
    uintptr_t serial;   /* the code object's serial (code_serial), never 0 */
    int lasti;
    uint32_t loc;
} ccache_t;

typedef struct {
    uint32_t file, func;
    int line;
    uint32_t site1;     /* the depth-1 site of this location, or NONE32 */
} loc_t;

typedef struct {
    uint64_t hash;
    uint32_t nframes;
    uint32_t frames_off;    /* into site_frames */
    uint32_t native;        /* run --native: the native stack's id (csrc/stack), 0: none */
    /* exact mode: outstanding blocks and bytes, peak bytes, allocations ever;
     * sampled mode: the same of the sampled blocks (not the program's) */
    uint64_t blocks, bytes, peak, allocs;
    /* sampled mode: outstanding samples and their peak, samples ever; the
     * Horvitz-Thompson sums (1 / P(an n-byte block is sampled)) of the
     * outstanding sampled blocks and of every sampled allocation */
    uint64_t samples, peak_samples, alloc_samples;
    double est_blocks, est_allocs;
} site_t;

static struct {
    trace_t *traces;
    size_t traces_cap, traces_len;      /* cap: power of two */
    size_t traces_limit;                /* grow beyond this many (load factor 0.7) */
    ccache_t *cc;
    size_t cc_cap, cc_len;
    loc_t *locs;
    uint32_t locs_len, locs_cap;
    uint32_t *loc_slots;                /* (file, func, line) -> loc + 1 */
    uint32_t loc_nslots;
    site_t *sites;
    uint32_t sites_len, sites_cap;
    uint32_t *site_slots;               /* frames -> site + 1 */
    uint32_t site_nslots;
    uint32_t *site_frames;
    size_t site_frames_len, site_frames_cap;
    strtab strings;
    uint64_t bytes, peak, untracked;    /* blocks and allocs: the sites' sums */
    uint64_t samples, peak_samples;     /* sampled mode */
} T;

typedef struct {
    PyMemAllocatorDomain domain;
    const char *name;
    PyMemAllocatorEx prev;
    PyMemAllocatorEx mine;      /* the hooks installed (exact or sampled) */
    bool installed;
} domain_t;

static domain_t domains[3] = {
    {PYMEM_DOMAIN_RAW, "raw", {0}, {0}, false},
    {PYMEM_DOMAIN_MEM, "mem", {0}, {0}, false},
    {PYMEM_DOMAIN_OBJ, "obj", {0}, {0}, false},
};

static bool tracing;
static int depth = 1;

/* ---------------------------------------------------------------- sampling
 * The model of the library's sampler (docs/memprof.md): each allocated byte
 * is sampled with probability rate; an allocation of n bytes receives
 * k ~ Binomial(n, rate) samples through a per-thread geometric countdown of
 * the bytes to the next sampled one.  Only blocks with k >= 1 are recorded
 * (frames read, site counted, pointer table); the others cost a subtraction
 * and a branch.  Estimates: bytes k / rate; blocks and allocations 1 / p(n)
 * per sampled block, p(n) = 1 - (1 - rate)^n (Horvitz-Thompson), so both are
 * unbiased.  A free asks a counting filter of the sampled blocks' addresses
 * first: freeing an unsampled block costs a shift, a load and a branch (a
 * false positive takes the locked table lookup; there are no false
 * negatives, as every tracked block holds its slot's count up). */
static double sample_rate;      /* 0: exact mode */
static double inv_log1m;        /* 1 / ln(1 - rate); 0 for rate = 1 */
static double log1m_rate;       /* ln(1 - rate) */
static uint64_t sample_seed;
static uint64_t stream_salt;    /* a forked child's streams differ from its parent's */
static _Atomic uint64_t stream_serial;
static _Atomic uint32_t sample_generation;  /* bumped by every start() */
static _Atomic unsigned long start_calls;   /* starts(): bumped by every start() */
static TLS uint64_t tls_rng[4];
static TLS uint32_t tls_generation;         /* 0: this thread has not drawn yet */

#define FILTER_BITS 18
#define SMALL_LIMIT 512     /* pymalloc's largest small request (3.11) */
static _Atomic uint8_t sample_filter[(size_t)1 << FILTER_BITS];   /* counts, saturate at 255 */

static inline size_t filter_slot(const void *p)
{
    /* blocks are 16-byte aligned; nearby blocks get nearby counters (a shift
     * and a mask: the free of an unsampled block is one more load) */
    return (size_t)((uintptr_t)p >> 4) & (((size_t)1 << FILTER_BITS) - 1);
}

static inline bool maybe_sampled(const void *p)
{
    return atomic_load_explicit(&sample_filter[filter_slot(p)], memory_order_relaxed) != 0;
}

static void filter_add(const void *p)          /* lock held */
{
    _Atomic uint8_t *c = &sample_filter[filter_slot(p)];
    uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
    if (v < 255)
        atomic_store_explicit(c, (uint8_t)(v + 1), memory_order_relaxed);
}

static void filter_remove(const void *p)       /* lock held */
{
    _Atomic uint8_t *c = &sample_filter[filter_slot(p)];
    uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
    if (v != 0 && v < 255)                      /* a saturated count stays (false positives) */
        atomic_store_explicit(c, (uint8_t)(v - 1), memory_order_relaxed);
}

/* 1 / P(an n-byte block receives at least one sample) */
static double inv_p_of(size_t n)
{
    if (inv_log1m == 0.0)
        return 1.0;
    double p = -expm1((double)n * log1m_rate);
    return p > 0.0 ? 1.0 / p : 0.0;
}

/* inv_p_of for the small sizes, filled at start: most sampled blocks are
 * small, and an expm1 at each one's record and forget costs more cycles than
 * the rest of the arithmetic */
static double inv_p_small[SMALL_LIMIT + 1];

static inline double inv_p_sampled(size_t n)
{
    return n <= SMALL_LIMIT ? inv_p_small[n] : inv_p_of(n);
}

static inline uint64_t round_est(double x)
{
    return x <= 0.0 ? 0 : x >= 1.8e19 ? UINT64_MAX : (uint64_t)(x + 0.5);
}

/* Grows an array of elem-size items to hold at least need; false on overflow or OOM. */
static bool grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return false;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / elem)
        return false;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool grow_array32(void **arr, uint32_t *cap, size_t need, size_t elem)
{
    size_t c = *cap;
    if (need > UINT32_MAX - 1)
        return false;
    if (!grow_array(arr, &c, need, elem))
        return false;
    *cap = c > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)c;
    return true;
}

/* Index slots (uint32 index + 1) of an open-addressing table, sized for one
 * more member than count; rehashes members 0..count-1 with key(i). */
static bool rehash_slots(uint32_t **slots, uint32_t *nslots, uint32_t count,
                         uint64_t (*key)(uint32_t))
{
    uint32_t n = *nslots ? *nslots : 256;
    while (((uint64_t)count + 1) * 2 >= n) {
        if (n > (UINT32_MAX >> 1))
            return false;
        n *= 2;
    }
    if (n == *nslots)
        return true;
    uint32_t *fresh = calloc(n, sizeof *fresh);
    if (fresh == NULL)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t j = (uint32_t)key(i) & (n - 1);
        while (fresh[j] != 0)
            j = (j + 1) & (n - 1);
        fresh[j] = i + 1;
    }
    free(*slots);
    *slots = fresh;
    *nslots = n;
    return true;
}

/* --- strings */
static uint64_t string_key(uint32_t i)
{
    const char *s = T.strings.text[i];
    return hash_bytes(s, strlen(s));
}

/* Index of text (n bytes) in the string table, adding a copy; NONE32 on OOM. */
static uint32_t intern_string(const char *text, size_t n)
{
    strtab *st = &T.strings;
    if (!rehash_slots(&st->slots, &st->nslots, st->len, string_key))
        return NONE32;
    uint64_t h = hash_bytes(text, n);
    uint32_t j = (uint32_t)h & (st->nslots - 1);
    while (st->slots[j] != 0) {
        const char *s = st->text[st->slots[j] - 1];
        if (strlen(s) == n && memcmp(s, text, n) == 0)
            return st->slots[j] - 1;
        j = (j + 1) & (st->nslots - 1);
    }
    if (!grow_array32((void **)&st->text, &st->cap, (size_t)st->len + 1, sizeof(char *)))
        return NONE32;
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NONE32;
    memcpy(copy, text, n);
    copy[n] = '\0';
    st->text[st->len] = copy;
    st->slots[j] = st->len + 1;
    return st->len++;
}

/* --- locations */
static uint64_t loc_hash(uint32_t file, uint32_t func, int line)
{
    return mix64(((uint64_t)file << 32 | func) ^ ((uint64_t)(uint32_t)line * 0x9E3779B97F4A7C15ull));
}

static uint64_t loc_key(uint32_t i)
{
    return loc_hash(T.locs[i].file, T.locs[i].func, T.locs[i].line);
}

static uint32_t intern_loc(uint32_t file, uint32_t func, int line)
{
    if (!rehash_slots(&T.loc_slots, &T.loc_nslots, T.locs_len, loc_key))
        return NONE32;
    uint32_t mask = T.loc_nslots - 1;
    uint32_t j = (uint32_t)loc_hash(file, func, line) & mask;
    while (T.loc_slots[j] != 0) {
        loc_t *l = &T.locs[T.loc_slots[j] - 1];
        if (l->file == file && l->func == func && l->line == line)
            return T.loc_slots[j] - 1;
        j = (j + 1) & mask;
    }
    if (!grow_array32((void **)&T.locs, &T.locs_cap, (size_t)T.locs_len + 1, sizeof(loc_t)))
        return NONE32;
    T.locs[T.locs_len] = (loc_t){file, func, line, NONE32};
    T.loc_slots[j] = T.locs_len + 1;
    return T.locs_len++;
}

/* --- sites */
static uint64_t frames_hash(const uint32_t *locs, uint32_t n)
{
    uint64_t h = 0x84222325cbf29ce4ull ^ n;
    for (uint32_t i = 0; i < n; i++)
        h = mix64(h ^ locs[i]) + i;
    return h;
}

static uint64_t site_key(uint32_t i)
{
    return T.sites[i].hash;
}

/* The site of Python locations locs[0..n) (innermost first; in native mode
 * a location may carry ENTRY_LOC) and native stack id native (0: none). */
static uint32_t intern_site_native(const uint32_t *locs, uint32_t n, uint32_t native)
{
    if (!rehash_slots(&T.site_slots, &T.site_nslots, T.sites_len, site_key))
        return NONE32;
    uint64_t h = frames_hash(locs, n);
    if (native != 0)
        h = mix64(h ^ ((uint64_t)native << 32 | 0x9E3779B9u));
    uint32_t mask = T.site_nslots - 1;
    uint32_t j = (uint32_t)h & mask;
    while (T.site_slots[j] != 0) {
        site_t *s = &T.sites[T.site_slots[j] - 1];
        if (s->hash == h && s->nframes == n && s->native == native &&
            memcmp(&T.site_frames[s->frames_off], locs, n * sizeof *locs) == 0)
            return T.site_slots[j] - 1;
        j = (j + 1) & mask;
    }
    if (!grow_array32((void **)&T.sites, &T.sites_cap, (size_t)T.sites_len + 1, sizeof(site_t)))
        return NONE32;
    if (!grow_array((void **)&T.site_frames, &T.site_frames_cap, T.site_frames_len + n + 1,
                    sizeof(uint32_t)))
        return NONE32;
    if (T.site_frames_len > UINT32_MAX - n - 1)
        return NONE32;
    memcpy(&T.site_frames[T.site_frames_len], locs, n * sizeof *locs);
    T.sites[T.sites_len] = (site_t){.hash = h, .nframes = n,
                                      .frames_off = (uint32_t)T.site_frames_len,
                                      .native = native};
    T.site_frames_len += n;
    T.site_slots[j] = T.sites_len + 1;
    return T.sites_len++;
}

static uint32_t intern_site(const uint32_t *locs, uint32_t n)
{
    return intern_site_native(locs, n, 0);
}

/* --- code identity
 * A code object is known by its address and a serial number the hooks give
 * it, kept in its co_extra slot (_PyCode_SetExtra, an index of the main
 * interpreter's own).  Its address alone is not enough: one freed and
 * another made at the same address (exec'd or compiled code) may put its
 * instructions on other lines or in another file.  Nor are the addresses of
 * its file name and qualified name objects: those are freed with it, and a
 * new code object compiled from the same source under another name of the
 * same length found the old one's addresses again (a loop of exec(compile(
 * src, name)) credited every file's lines to the first).  A serial is never
 * given twice and dies with its code object (a fresh one has no co_extra),
 * and reading it is four loads, no call.  Serials are odd: a slot of another
 * interpreter's index that holds another extension's pointer never matches. */
typedef struct {
    Py_ssize_t ce_size;         /* CPython 3.11's _PyCodeObjectExtra (Objects/codeobject.c) */
    void *ce_extras[1];
} code_extra_t;

static Py_ssize_t serial_index = -1;            /* -1: no index, nothing is cached */
static _Atomic uintptr_t next_serial = 1;

static inline uintptr_t code_serial(const PyCodeObject *code)
{
    const code_extra_t *x = code->co_extra;
    if (x == NULL || serial_index < 0 || serial_index >= x->ce_size)
        return 0;
    uintptr_t v = (uintptr_t)x->ce_extras[serial_index];
    return (v & 1u) ? v : 0;
}

/* code's serial, given now if it has none; 0 when it cannot have one (no
 * index, another interpreter's code, out of memory).  Called with the GIL and
 * without the tables' lock (_PyCode_SetExtra allocates through the hooks). */
static uintptr_t code_serial_given(PyCodeObject *code)
{
    uintptr_t v = code_serial(code);
    if (v != 0 || serial_index < 0)
        return v;
    PyThreadState *ts = _PyThreadState_GET();
    if (ts == NULL || ts->interp != PyInterpreterState_Main())
        return 0;
    v = atomic_fetch_add_explicit(&next_serial, 2, memory_order_relaxed);
    if (_PyCode_SetExtra((PyObject *)code, serial_index, (void *)v) != 0) {
        PyErr_Clear();
        return 0;
    }
    return v;
}

/* --- code cache */
static inline size_t cc_index(const void *code, int lasti, size_t cap)
{
    return (size_t)(mix64((uint64_t)(uintptr_t)code ^ ((uint64_t)(uint32_t)lasti << 40))) & (cap - 1);
}

static bool cc_grow(void)
{
    if (T.cc_len * 2 < T.cc_cap)
        return true;
    size_t ncap = T.cc_cap ? T.cc_cap * 2 : 4096;
    if (ncap > SIZE_MAX / sizeof(ccache_t))
        return false;
    ccache_t *fresh = calloc(ncap, sizeof *fresh);
    if (fresh == NULL)
        return false;
    for (size_t i = 0; i < T.cc_cap; i++) {
        ccache_t *e = &T.cc[i];
        if (e->code == NULL)
            continue;
        size_t j = cc_index(e->code, e->lasti, ncap);
        while (fresh[j].code != NULL)
            j = (j + 1) & (ncap - 1);
        fresh[j] = *e;
    }
    free(T.cc);
    T.cc = fresh;
    T.cc_cap = ncap;
    return true;
}

/* Looks the frame up; returns its slot when present and current, else NULL. */
static inline ccache_t *cc_find(PyCodeObject *code, int lasti)
{
    if (T.cc_cap == 0)
        return NULL;
    size_t mask = T.cc_cap - 1;
    size_t j = cc_index(code, lasti, T.cc_cap);
    for (;;) {
        ccache_t *e = &T.cc[j];
        if (e->code == NULL)
            return NULL;
        if (e->code == code && e->lasti == lasti)
            return e->serial == code_serial(code) ? e : NULL;
        j = (j + 1) & mask;
    }
}

static void cc_store(PyCodeObject *code, int lasti, uintptr_t serial, uint32_t loc)
{
    if (!cc_grow())
        return;
    size_t mask = T.cc_cap - 1;
    size_t j = cc_index(code, lasti, T.cc_cap);
    while (T.cc[j].code != NULL && !(T.cc[j].code == code && T.cc[j].lasti == lasti))
        j = (j + 1) & mask;
    if (T.cc[j].code == NULL)
        T.cc_len++;
    T.cc[j] = (ccache_t){code, serial, lasti, loc};
}

/* --- traces */
static inline size_t ptr_index(uintptr_t p, size_t cap)
{
    return (size_t)(((uint64_t)p * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static bool traces_grow(void)
{
    size_t ncap = T.traces_cap ? T.traces_cap * 2 : (size_t)1 << (sample_rate > 0.0 ? 10 : 16);
    if (ncap > SIZE_MAX / sizeof(trace_t))
        return false;
    trace_t *fresh = calloc(ncap, sizeof *fresh);
    if (fresh == NULL)
        return false;
    for (size_t i = 0; i < T.traces_cap; i++) {
        trace_t *e = &T.traces[i];
        if (e->ptr == 0)
            continue;
        size_t j = ptr_index(e->ptr, ncap);
        while (fresh[j].ptr != 0)
            j = (j + 1) & (ncap - 1);
        fresh[j] = *e;
    }
    free(T.traces);
    T.traces = fresh;
    T.traces_cap = ncap;
    T.traces_limit = ncap / 10 * 7;
    return true;
}

/* Room for one more trace (load factor below 0.7). */
static inline bool traces_room(void)
{
    return T.traces_len < T.traces_limit || traces_grow();
}

#define HOT static inline __attribute__((always_inline))

HOT void uncount(const trace_t *t)
{
    site_t *s = &T.sites[t->site];
    s->blocks--;
    s->bytes -= t->size;
    T.bytes -= t->size;
    if (t->k != 0) {
        s->samples -= t->k;
        T.samples -= t->k;
        s->est_blocks = s->blocks ? s->est_blocks - inv_p_sampled(t->size) : 0.0;
        filter_remove((const void *)t->ptr);
    }
}

/* Removes p's trace (if any) into *out; true when found. */
HOT bool trace_remove(uintptr_t p, trace_t *out)
{
    if (T.traces_cap == 0)
        return false;
    size_t mask = T.traces_cap - 1;
    size_t j = ptr_index(p, T.traces_cap);
    for (;;) {
        if (T.traces[j].ptr == 0)
            return false;
        if (T.traces[j].ptr == p)
            break;
        j = (j + 1) & mask;
    }
    if (out)
        *out = T.traces[j];
    uncount(&T.traces[j]);
    /* backward-shift deletion: move later members of the cluster into the hole */
    size_t hole = j;
    size_t k = (j + 1) & mask;
    while (T.traces[k].ptr != 0) {
        size_t home = ptr_index(T.traces[k].ptr, T.traces_cap);
        /* k may move into hole when home is not cyclically within (hole, k] */
        bool stays = (hole <= k) ? (hole < home && home <= k) : (hole < home || home <= k);
        if (!stays) {
            T.traces[hole] = T.traces[k];
            hole = k;
        }
        k = (k + 1) & mask;
    }
    T.traces[hole].ptr = 0;
    T.traces_len--;
    return true;
}

/* Records p (size bytes, k samples: 0 in exact mode) for site.  A fresh
 * allocation also counts in the allocations ever; a block put back (a failed
 * realloc) does not. */
HOT void trace_add(uintptr_t p, size_t size, uint32_t site, uint32_t k, bool fresh_alloc)
{
    if (!traces_room()) {
        T.untracked++;
        return;
    }
    size_t mask = T.traces_cap - 1;
    size_t j = ptr_index(p, T.traces_cap);
    while (T.traces[j].ptr != 0) {
        if (T.traces[j].ptr == p) {     /* a stale record (freed behind our back) */
            uncount(&T.traces[j]);
            T.traces_len--;
            break;
        }
        j = (j + 1) & mask;
    }
    T.traces[j] = (trace_t){p, size, site, k};
    T.traces_len++;
    site_t *s = &T.sites[site];
    s->blocks++;
    s->bytes += size;
    T.bytes += size;
    if (fresh_alloc)
        s->allocs++;
    if (k == 0) {
        if (s->bytes > s->peak)
            s->peak = s->bytes;
        if (T.bytes > T.peak)
            T.peak = T.bytes;
        return;
    }
    double w = inv_p_sampled(size);
    filter_add((const void *)p);
    s->samples += k;
    s->est_blocks += w;
    if (s->samples > s->peak_samples)
        s->peak_samples = s->samples;
    T.samples += k;
    if (T.samples > T.peak_samples)
        T.peak_samples = T.samples;
    if (fresh_alloc) {
        s->alloc_samples += k;
        s->est_allocs += w;
    }
}

/* ------------------------------------------------------------ frame walk */
typedef struct {
    PyCodeObject *code;
    int lasti;
} rawframe;

/* The UTF-8 of a str that has none (it holds lone surrogates: a file name
 * Python decoded with surrogateescape, a name code made up) or holds a NUL,
 * in a buffer from malloc, each surrogate and each NUL as U+FFFD (as the
 * library writes the bytes of a tag that are not UTF-8: the tables keep
 * NUL-terminated strings, which cut "a\0b" to "a" and made "a\0b" and
 * "a\0c" one name). NULL when out of memory. */
static char *utf8_lossy(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_IS_READY(s))
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if ((size_t)len > (SIZE_MAX - 1) / 4)      /* at most 4 bytes a character */
        return NULL;
    char *out = malloc((size_t)len * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if ((c >= 0xD800 && c <= 0xDFFF) || c == 0)
            c = 0xFFFD;
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    *n = (Py_ssize_t)o;
    return out;
}

/* The UTF-8 of a code object's name or file name without allocating through
 * a Python domain: an ASCII str's own characters, else the UTF-8 the str
 * already keeps (either without a NUL), else utf8_lossy's (lone surrogates
 * and NULs as U+FFFD), kept in
 * *owned for the caller to free, else "<unknown>".  PyUnicode_AsUTF8AndSize
 * was asked before: it allocates the str's UTF-8 through the OBJ domain,
 * whose top may be a hook above ours that holds its lock (tracemalloc, when
 * its own RAW allocation reached ours), and it added a cache to the
 * program's strings. */
static const char *name_utf8(PyObject *s, Py_ssize_t *n, char **owned)
{
    if (PyUnicode_Check(s) && PyUnicode_IS_READY(s)) {
        if (PyUnicode_IS_COMPACT_ASCII(s)) {
            *n = PyUnicode_GET_LENGTH(s);
            if (memchr(PyUnicode_DATA(s), 0, (size_t)*n) == NULL)
                return (const char *)PyUnicode_DATA(s);
        } else {
            const PyCompactUnicodeObject *c = (const PyCompactUnicodeObject *)s;
            if (c->utf8 != NULL && memchr(c->utf8, 0, (size_t)c->utf8_length) == NULL) {
                *n = c->utf8_length;
                return c->utf8;
            }
        }
        *owned = utf8_lossy(s, n);
        if (*owned != NULL)
            return *owned;
    }
    *n = 9;
    return "<unknown>";
}

/* Builds the location of one frame: calls into Python, so the lock is NOT held.
 * *own_file and *own_func, when set, are buffers the caller frees. */
static bool describe_frame(const rawframe *f, const char **file, Py_ssize_t *nfile,
                           const char **func, Py_ssize_t *nfunc, int *line,
                           char **own_file, char **own_func)
{
    *line = PyCode_Addr2Line(f->code, f->lasti * (int)sizeof(_Py_CODEUNIT));
    if (*line < 0)
        *line = 0;
    if (PyErr_Occurred())
        PyErr_Clear();
    *file = name_utf8(f->code->co_filename, nfile, own_file);
    *func = name_utf8(f->code->co_qualname, nfunc, own_func);
    return true;
}

/* Location of a frame, interned; called with the lock held, returns with it held. */
HOT uint32_t frame_loc(const rawframe *f, bool raw)
{
    ccache_t *e = cc_find(f->code, f->lasti);
    if (e != NULL)
        return e->loc;
    unlock_tables();
    const char *file, *func;
    Py_ssize_t nfile = 0, nfunc = 0;
    int line;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    /* No Python code runs here: nothing is hashed, compared or converted
     * through a slot a subclass may override (a line table of a bytes
     * subclass with a __hash__ in Python, once hashed here, ran that code in
     * the middle of an allocation). */
    /* A RAW-domain call may come from inside another hook installed above
     * ours while it holds its lock (tracemalloc allocates its tables from the
     * RAW domain): nothing is allocated through the Python domains then,
     * whose top is that hook (it deadlocked on its own lock).  The code gets
     * its serial at its first MEM or OBJ allocation instead. */
    uintptr_t serial = raw ? code_serial(f->code) : code_serial_given(f->code);
    char *own_file = NULL, *own_func = NULL;
    describe_frame(f, &file, &nfile, &func, &nfunc, &line, &own_file, &own_func);
    PyErr_Restore(exc_type, exc_value, exc_tb);
    lock_tables();
    uint32_t fi = intern_string(file, (size_t)nfile);
    uint32_t fu = intern_string(func, (size_t)nfunc);
    free(own_file);
    free(own_func);
    if (fi == NONE32 || fu == NONE32)
        return NONE32;
    uint32_t loc = intern_loc(fi, fu, line);
    if (loc != NONE32 && serial != 0)
        cc_store(f->code, f->lasti, serial, loc);
    return loc;
}

/* The innermost Python frame of the thread making d's call, or NULL.  MEM
 * and OBJ are called with the GIL held (the C API's rule), so the thread
 * state is the one CPython keeps for the GIL holder; RAW may be called
 * without the GIL: its frames are read only when this thread holds it. */
static inline _PyInterpreterFrame *current_frame(const domain_t *d)
{
    PyThreadState *ts = _PyThreadState_GET();
    if (ts == NULL || ts->cframe == NULL)
        return NULL;
    if (d->domain == PYMEM_DOMAIN_RAW && PyGILState_GetThisThreadState() != ts)
        return NULL;
    return ts->cframe->current_frame;
}

/* Collects up to depth frames from fr outwards. */
static int collect_frames(_PyInterpreterFrame *fr, rawframe *out)
{
    int n = 0;
    for (; fr != NULL && n < depth; fr = fr->previous) {
        out[n].code = fr->f_code;
        out[n].lasti = _PyInterpreterFrame_LASTI(fr);
        n++;
    }
    return n;
}

/* Site for the given frames; lock held on entry and exit. */
static uint32_t site_for(const rawframe *frames, int n, bool raw)
{
    if (n == 0)
        return NO_FRAME_SITE;
    if (n == 1) {
        uint32_t loc = frame_loc(&frames[0], raw);
        if (loc == NONE32)
            return NO_FRAME_SITE;
        if (T.locs[loc].site1 == NONE32)
            T.locs[loc].site1 = intern_site(&loc, 1);
        return T.locs[loc].site1 == NONE32 ? NO_FRAME_SITE : T.locs[loc].site1;
    }
    uint32_t locs[MAX_DEPTH];
    for (int i = 0; i < n; i++) {
        locs[i] = frame_loc(&frames[i], raw);
        if (locs[i] == NONE32)
            return NO_FRAME_SITE;
    }
    uint32_t s = intern_site(locs, (uint32_t)n);
    return s == NONE32 ? NO_FRAME_SITE : s;
}

/* This thread's last one-frame site: consecutive allocations mostly come from
 * the same instruction (a C call that allocates several times), and then the
 * site is found with five compares, without the code cache's hash.  The key
 * is checked as the code cache checks it; sites are never removed, so an
 * entry stays valid across stop() and start(). */
static TLS struct {
    const PyCodeObject *code;
    uintptr_t serial;
    int lasti;
    uint32_t site;
} tls_last;

/* The site of frames from fr outwards (fr may be NULL), without this
 * thread's last-site entry: takes the lock and returns with it held. */
static __attribute__((noinline)) uint32_t site_slow(_PyInterpreterFrame *fr, bool raw)
{
    rawframe frames[MAX_DEPTH];
    int n = collect_frames(fr, frames);
    lock_tables();
    uint32_t site = site_for(frames, n, raw);
    uintptr_t serial;
    if (n == 1 && depth == 1 && site != NO_FRAME_SITE && (serial = code_serial(frames[0].code)) != 0) {
        tls_last.code = frames[0].code;
        tls_last.serial = serial;
        tls_last.lasti = frames[0].lasti;
        tls_last.site = site;
    }
    return site;
}

/* Records p (size bytes, k samples; 0: exact mode) under its Python site. */
HOT void record(const domain_t *d, void *p, size_t size, uint32_t k)
{
    _PyInterpreterFrame *fr = current_frame(d);
    uint32_t site;
    PyCodeObject *code;
    if (fr != NULL && depth == 1 && tls_last.code == (code = fr->f_code) &&
        tls_last.lasti == _PyInterpreterFrame_LASTI(fr) && tls_last.serial == code_serial(code)) {
        site = tls_last.site;
        lock_tables();
    } else {
        site = site_slow(fr, d->domain == PYMEM_DOMAIN_RAW);
    }
    trace_add((uintptr_t)p, size, site, k, true);
    unlock_tables();
}

/* ------------------------------------------------------- native stacks
 * run --python --native: each recorded allocation also records its native
 * call stack (csrc/stack/'s cached walker and table of distinct stacks: the
 * site holds the stack's id), and the Python frames that the stack's
 * evaluation-loop frames were running.  In CPython 3.11 one C call of
 * _PyEval_EvalFrameDefault runs a chain of _PyInterpreterFrames: Python
 * calls Python without a new C frame, and the chain's outermost frame, the
 * one the C call started with, has is_entry set.  So the Python frames from
 * the running one outwards split into chains, each ending at an entry frame,
 * one chain per eval frame of the native stack, innermost first; the report
 * marks the entry frames and the eval frames, and the reader puts each
 * chain in place of its eval frame (audit/pyreport.py).  Only as many
 * Python frames are read as the captured native stack has eval frames.
 * Everything here runs on the recording path (exact mode: every
 * allocation; sampled mode: the sampled ones); the hooks of a run without
 * native stacks are the ones above, unchanged. */
#define ENTRY_LOC 0x80000000u           /* a site's location: the frame is an entry frame */
#define LOC_MASK 0x7fffffffu

/* Frames of our own a capture may start with (record_native, a hook, the
 * sampler's slow path): captured beyond the depth asked, then dropped. */
#define SELF_FRAMES 4

static const rp_pystack_api *stk;       /* allocator._pystack's calls */
static int native_depth;                /* 0: no native stacks */
static uintptr_t self_lo, self_hi;      /* this extension's code */
static uintptr_t stk_lo, stk_hi;        /* allocator._pystack's code */
static uintptr_t eval_lo, eval_hi;      /* _PyEval_EvalFrameDefault (its FDE) */
/* eval frames per stack id: 0 not counted yet, else count + 1 (mmap'd,
 * touched as ids are handed out) */
static _Atomic uint8_t *eval_counts;

static inline bool is_eval_frame(uintptr_t ret)
{
    /* a return address: the call lies just before it */
    return ret - 1 >= eval_lo && ret - 1 < eval_hi;
}

/* The frames of stack id that the report shows: without the leading
 * frames of this extension, at most native_depth. */
static size_t native_frames(uint32_t id, const uintptr_t **frames)
{
    const uintptr_t *f;
    size_t n = stk->get(id, &f);
    size_t i = 0;
    while (i < n && i < SELF_FRAMES && f[i] >= self_lo && f[i] < self_hi)
        i++;
    n -= i;
    *frames = f + i;
    return n > (size_t)native_depth ? (size_t)native_depth : n;
}

static uint32_t eval_frames_of(uint32_t id)
{
    if (id == 0 || id >= RPI_STACK_MAX_STACKS)
        return 0;
    uint8_t c = atomic_load_explicit(&eval_counts[id], memory_order_relaxed);
    if (c != 0)
        return c - 1u;
    const uintptr_t *f;
    size_t n = native_frames(id, &f);
    uint32_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += is_eval_frame(f[i]);
    if (count > 254)
        count = 254;
    atomic_store_explicit(&eval_counts[id], (uint8_t)(count + 1), memory_order_relaxed);
    return count;
}

typedef struct {
    PyCodeObject *code;
    int lasti;
    bool entry;
} nframe_t;

/* This thread's last native site: the stack id and the Python frames it
 * was found for.  Consecutive allocations mostly come from one place, and
 * then the site is found by comparing the frames, without the code cache's
 * hash per frame and the site table's hash of the stack.  Each frame is
 * checked as tls_last checks its one (code object, instruction offset, and
 * the code's file name, qualified name and first line, so a code object
 * freed and another made at its address is not taken for it); sites are
 * never removed.  Allocated from libc per thread (the thread-local words of
 * this module must stay few: they live in the static TLS reserve), freed
 * at thread exit. */
typedef struct {
    const PyCodeObject *code;
    uintptr_t serial;           /* code_serial; 0: never matches */
    int lasti;
    bool entry;
} memo_frame;

typedef struct {
    uint32_t id, site, seen;
    int n;
    memo_frame f[MAX_DEPTH];
    uint32_t loc[MAX_DEPTH];    /* each frame's location (with ENTRY_LOC) */
} native_memo;

static TLS native_memo *tls_memo;
static pthread_key_t memo_key;

static void memo_free(void *m)
{
    /* runs in the exiting thread: an allocation it still makes takes a new one */
    tls_memo = NULL;
    free(m);
}

static native_memo *memo_get(void)
{
    native_memo *m = tls_memo;
    if (m != NULL)
        return m;
    m = calloc(1, sizeof *m);
    if (m != NULL && pthread_setspecific(memo_key, m) != 0) {
        free(m);
        m = NULL;
    }
    tls_memo = m;
    return m;
}

static inline bool memo_frame_is(const memo_frame *e, const _PyInterpreterFrame *fr)
{
    const PyCodeObject *code = fr->f_code;
    return e->code == code && e->lasti == _PyInterpreterFrame_LASTI(fr) &&
           e->entry == fr->is_entry && e->serial != 0 && e->serial == code_serial(code);
}

/* True when the frames from fr outwards are the memo's (for the same id):
 * the same n frames, and the walk would stop after them as it did. */
static bool memo_matches(const native_memo *m, const _PyInterpreterFrame *fr, uint32_t chains)
{
    for (int i = 0; i < m->n; i++, fr = fr->previous)
        if (fr == NULL || !memo_frame_is(&m->f[i], fr))
            return false;
    return m->seen >= chains || m->n >= MAX_DEPTH || fr == NULL;
}

/* The site of the native stack id and the Python frames from fr outwards
 * that its eval frames ran (all of depth frames when id is 0: no native
 * stack could be taken).  Takes the lock and returns with it held. */
static uint32_t site_native(_PyInterpreterFrame *fr, uint32_t id, bool raw_call)
{
    native_memo *m = id ? memo_get() : NULL;
    if (m != NULL && m->id == id && memo_matches(m, fr, eval_frames_of(id))) {
        lock_tables();
        return m->site;
    }
    nframe_t frames[MAX_DEPTH];
    int n = 0;
    uint32_t chains = id ? eval_frames_of(id) : 0, seen = 0;
    int limit = id ? MAX_DEPTH : depth;
    for (; fr != NULL && n < limit && (id == 0 || seen < chains); fr = fr->previous) {
        frames[n].code = fr->f_code;
        frames[n].lasti = _PyInterpreterFrame_LASTI(fr);
        frames[n].entry = id != 0 && fr->is_entry;
        seen += frames[n].entry;
        n++;
    }
    lock_tables();
    uint32_t locs[MAX_DEPTH + 1];
    for (int i = 0; i < n; i++) {
        /* the outer frames mostly are the memo's (counted from the outer end:
         * a deeper or shallower call moves the inner ones) */
        int j = m != NULL && m->id != 0 ? m->n - n + i : -1;
        if (j >= 0 && j < m->n && m->f[j].code == frames[i].code &&
            m->f[j].lasti == frames[i].lasti && m->f[j].entry == frames[i].entry &&
            m->f[j].serial != 0 && m->f[j].serial == code_serial(frames[i].code)) {
            locs[i] = m->loc[j];
            continue;
        }
        rawframe raw = {frames[i].code, frames[i].lasti};
        uint32_t loc = frame_loc(&raw, raw_call);
        if (loc == NONE32)
            return NO_FRAME_SITE;
        locs[i] = loc | (frames[i].entry ? ENTRY_LOC : 0u);
    }
    if (n == 0 && id == 0)
        return NO_FRAME_SITE;
    uint32_t site = intern_site_native(locs, (uint32_t)n, id);
    if (site == NONE32)
        return NO_FRAME_SITE;
    if (m != NULL) {
        for (int i = 0; i < n; i++) {
            PyCodeObject *code = frames[i].code;
            m->f[i] = (memo_frame){code, code_serial(code), frames[i].lasti, frames[i].entry};
            m->loc[i] = locs[i];
        }
        m->n = n;
        m->seen = seen;
        m->id = id;
        m->site = site;
    }
    return site;
}

/* record() with the native stack: the capture runs before the lock. */
static __attribute__((noinline)) void record_native(const domain_t *d, void *p, size_t size,
                                                    uint32_t k)
{
    uint32_t id = stk->capture(native_depth + SELF_FRAMES, stk_lo, stk_hi);
    uint32_t site = site_native(current_frame(d), id, d->domain == PYMEM_DOMAIN_RAW);
    trace_add((uintptr_t)p, size, site, k, true);
    unlock_tables();
}

/* The code range of the loaded object that contains want (its PT_LOAD
 * segments), for dl_iterate_phdr. */
typedef struct {
    uintptr_t want, lo, hi;
} range_query;

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    range_query *q = arg;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    bool has = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        if (a < lo)
            lo = a;
        if (a + ph->p_memsz > hi)
            hi = a + ph->p_memsz;
        if (q->want >= a && q->want - a < ph->p_memsz)
            has = true;
    }
    if (!has)
        return 0;
    q->lo = lo;
    q->hi = hi;
    return 1;
}

/* Loads allocator._pystack (from sys.modules when the launcher loaded it
 * there), maps the stack table and finds the code ranges; -1 with an
 * exception set when it cannot. */
static int native_init(void)
{
    static bool done;
    if (done)
        return 0;
    PyObject *name = PyUnicode_FromString("allocator._pystack");
    if (name == NULL)
        return -1;
    PyObject *mod = PyImport_GetModule(name);
    if (mod == NULL && !PyErr_Occurred())
        mod = PyImport_Import(name);
    Py_DECREF(name);
    if (mod == NULL)
        return -1;
    PyObject *capsule = PyObject_GetAttrString(mod, "_api");
    Py_DECREF(mod);                     /* sys.modules keeps it (and its code) */
    if (capsule == NULL)
        return -1;
    const rp_pystack_api *api = PyCapsule_GetPointer(capsule, RP_PYSTACK_CAPSULE);
    Py_DECREF(capsule);
    if (api == NULL)
        return -1;
    if (api->version != RP_PYSTACK_API_VERSION) {
        PyErr_Format(PyExc_ImportError, "allocator._pystack is version %d, the hooks need %d "
                     "(rebuild the package)", api->version, RP_PYSTACK_API_VERSION);
        return -1;
    }
    if (api->init() != 0) {
        PyErr_SetString(PyExc_OSError, "native stacks: cannot map the stack table");
        return -1;
    }
    eval_counts = mmap(NULL, RPI_STACK_MAX_STACKS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (eval_counts == MAP_FAILED) {
        eval_counts = NULL;
        PyErr_SetString(PyExc_OSError, "native stacks: cannot map the stack table");
        return -1;
    }
    range_query self = {(uintptr_t)&record_native, 0, 0};
    range_query other = {(uintptr_t)api->capture, 0, 0};
    if (dl_iterate_phdr(find_object, &self) == 0 || dl_iterate_phdr(find_object, &other) == 0) {
        PyErr_SetString(PyExc_OSError, "native stacks: cannot find the extensions' code");
        return -1;
    }
    self_lo = self.lo;
    self_hi = self.hi;
    stk_lo = other.lo;
    stk_hi = other.hi;
    uintptr_t eval = (uintptr_t)&_PyEval_EvalFrameDefault;
    if (api->function_range(eval, &eval_lo, &eval_hi) != 0) {
        /* no unwind entry: the eval frames cannot be told apart; the stacks
         * keep them as native frames */
        eval_lo = eval_hi = 0;
    }
    if (pthread_key_create(&memo_key, memo_free) != 0) {
        PyErr_SetString(PyExc_OSError, "native stacks: pthread_key_create failed");
        return -1;
    }
    /* a fork never copies the stack table's lock held by another thread */
    if (pthread_atfork(api->lock, api->unlock, api->unlock) != 0) {
        PyErr_SetString(PyExc_OSError, "native stacks: pthread_atfork failed");
        return -1;
    }
    stk = api;
    done = true;
    return 0;
}

/* ----------------------------------------------------------- exact hooks */
/* One body per call for both kinds of exact run, inlined into each hook with
 * its recorder: record (Python frames) or record_native (the native stack
 * too), a constant there, so each hook calls or inlines its own directly. */
typedef void recorder(const domain_t *d, void *p, size_t size, uint32_t k);

HOT void *exact_malloc(void *ctx, size_t size, recorder *rec)
{
    domain_t *d = ctx;
    if (in_hook)
        return d->prev.malloc(d->prev.ctx, size);
    in_hook = 1;
    void *p = d->prev.malloc(d->prev.ctx, size);
    if (p != NULL)
        rec(d, p, size, 0);
    in_hook = 0;
    return p;
}

HOT void *exact_calloc(void *ctx, size_t nelem, size_t elsize, recorder *rec)
{
    domain_t *d = ctx;
    if (in_hook)
        return d->prev.calloc(d->prev.ctx, nelem, elsize);
    in_hook = 1;
    void *p = d->prev.calloc(d->prev.ctx, nelem, elsize);
    size_t size;
    if (p != NULL && !__builtin_mul_overflow(nelem, elsize, &size))
        rec(d, p, size, 0);
    in_hook = 0;
    return p;
}

/* Forgets ptr's trace (if any) before the block can be freed and reused by
 * another thread; true (and the trace in *old) when it had one. */
static inline bool forget(void *ptr, trace_t *old)
{
    lock_tables();
    bool had = trace_remove((uintptr_t)ptr, old);
    unlock_tables();
    return had;
}

/* A failed realloc: the old block is still valid, its trace goes back. */
static void put_back(void *ptr, const trace_t *old)
{
    lock_tables();
    trace_add((uintptr_t)ptr, old->size, old->site, old->k, false);
    unlock_tables();
}

HOT void *exact_realloc(void *ctx, void *ptr, size_t size, recorder *rec)
{
    domain_t *d = ctx;
    trace_t old;
    bool had = ptr != NULL && forget(ptr, &old);
    /* the flag is raised around the call, as tracemalloc does: pymalloc
     * moves a block of more than 512 bytes to and from the RAW domain as it
     * resizes it, and that domain's hook must not count the block a second
     * time (under the debug allocator the raw block's address is not the
     * one returned here, so both stayed recorded) */
    in_hook++;
    void *p = d->prev.realloc(d->prev.ctx, ptr, size);
    in_hook--;
    if (p == NULL) {
        if (had)
            put_back(ptr, &old);
        return NULL;
    }
    if (in_hook)
        return p;
    in_hook = 1;
    rec(d, p, size, 0);
    in_hook = 0;
    return p;
}

static void *hook_malloc(void *ctx, size_t size) { return exact_malloc(ctx, size, record); }
static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    return exact_calloc(ctx, nelem, elsize, record);
}
static void *hook_realloc(void *ctx, void *ptr, size_t size)
{
    return exact_realloc(ctx, ptr, size, record);
}

static void hook_free(void *ctx, void *ptr)
{
    domain_t *d = ctx;
    if (ptr != NULL) {
        lock_tables();
        trace_remove((uintptr_t)ptr, NULL);
        unlock_tables();
    }
    d->prev.free(d->prev.ctx, ptr);
}

/* The exact hooks of a run with native stacks (the free is hook_free). */
static void *hook_malloc_n(void *ctx, size_t size) { return exact_malloc(ctx, size, record_native); }
static void *hook_calloc_n(void *ctx, size_t nelem, size_t elsize)
{
    return exact_calloc(ctx, nelem, elsize, record_native);
}
static void *hook_realloc_n(void *ctx, void *ptr, size_t size)
{
    return exact_realloc(ctx, ptr, size, record_native);
}

/* The RAW domain's exact hooks.  Threads call that domain without the GIL
 * (a thread's state is made and freed so), and CPython reads the domain's
 * allocator, a struct of a context and four functions, field by field, while
 * PyMem_SetAllocator copies a new one over it: a thread could take the free
 * of one allocator with the context of another (tests/pyhooks/test_hostile.py
 * "test_threads_tracers_and_restarts_from_another_thread": PYTHONMALLOC=debug's
 * free given this module's domain as its context aborted the process, this
 * module's free given the debug allocator's context crashed it).  So every
 * allocator this module puts on the RAW domain (these hooks, the sampled
 * ones, the probe, and the previous one put back by stop()) carries the
 * previous allocator's context, and the hooks find their domain without it:
 * whichever fields a thread reads, the context suits the function. */
static void *hook_malloc_raw(void *ctx, size_t size)
{
    (void)ctx;
    return exact_malloc(&domains[PYMEM_DOMAIN_RAW], size, record);
}
static void *hook_calloc_raw(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return exact_calloc(&domains[PYMEM_DOMAIN_RAW], nelem, elsize, record);
}
static void *hook_realloc_raw(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    return exact_realloc(&domains[PYMEM_DOMAIN_RAW], ptr, size, record);
}
static void *hook_malloc_raw_n(void *ctx, size_t size)
{
    (void)ctx;
    return exact_malloc(&domains[PYMEM_DOMAIN_RAW], size, record_native);
}
static void *hook_calloc_raw_n(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return exact_calloc(&domains[PYMEM_DOMAIN_RAW], nelem, elsize, record_native);
}
static void *hook_realloc_raw_n(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    return exact_realloc(&domains[PYMEM_DOMAIN_RAW], ptr, size, record_native);
}
static void hook_free_raw(void *ctx, void *ptr)
{
    (void)ctx;
    hook_free(&domains[PYMEM_DOMAIN_RAW], ptr);
}

/* --------------------------------------------------------- sampled hooks */
/* The countdown crossed zero in an allocation of size bytes (p, or NULL when
 * it failed): counts its samples, draws the next distance, and records p. */
static __attribute__((noinline)) void sample_slow(const domain_t *d, void *p, size_t size)
{
    uint32_t gen = atomic_load_explicit(&sample_generation, memory_order_relaxed);
    if (tls_generation != gen) {
        /* this thread's first draw (of this profile): its stream starts here,
         * the first sampled byte G bytes into this block */
        rpg_seed(tls_rng, sample_seed ^ stream_salt,
                 atomic_fetch_add_explicit(&stream_serial, 1, memory_order_relaxed));
        tls_generation = gen;
        tls_left = rpg_draw(tls_rng, inv_log1m) - 1 - (int64_t)size;
        if (tls_left >= 0)
            return;
    }
    uint64_t k;
    if (inv_log1m == 0.0) {             /* rate 1: every byte */
        k = size;
        tls_left = 0;
    } else {
        /* the sampled byte is at size + tls_left + 1 (1-based); count those after it */
        int64_t rest = -tls_left - 1;
        k = 1;
        for (;;) {
            int64_t g = rpg_draw(tls_rng, inv_log1m);
            if (g <= rest) {
                rest -= g;
                k++;
                continue;
            }
            tls_left = g - rest - 1;
            break;
        }
    }
    /* a failed allocation, or one the hooks made for themselves (they run
     * with in_hook set; their bytes consumed a stretch of this thread's
     * stream, which leaves the program's bytes sampled with probability rate:
     * the law is memoryless) */
    if (p == NULL || k == 0 || in_hook)
        return;
    in_hook = 1;
    if (native_depth != 0)
        record_native(d, p, size, k > UINT32_MAX ? UINT32_MAX : (uint32_t)k);
    else
        record(d, p, size, k > UINT32_MAX ? UINT32_MAX : (uint32_t)k);
    in_hook = 0;
}

/* A free whose block may be sampled: forget it, then free it. */
static __attribute__((noinline)) void free_maybe_sampled(const domain_t *d, void *ptr)
{
    if (ptr != NULL)
        forget(ptr, NULL);
    d->prev.free(d->prev.ctx, ptr);
}

/* A resize whose block may be sampled (ptr may be NULL): its trace is taken
 * out before the call (the block may be freed and reused by another thread
 * at once), and put back if the resize fails. */
static void *resized_small_sampled(const domain_t *d, void *p, size_t size);
static __attribute__((noinline)) void *realloc_maybe_sampled(const domain_t *d, void *ptr, size_t size,
                                                             bool small_raw)
{
    trace_t old;
    bool had = ptr != NULL && forget(ptr, &old);
    in_hook++;
    void *p = d->prev.realloc(d->prev.ctx, ptr, size);
    in_hook--;
    if (p == NULL) {
        if (had)
            put_back(ptr, &old);
        return NULL;
    }
    if (__builtin_expect((tls_left -= (int64_t)size) < 0, 0)) {
        if (small_raw)
            return resized_small_sampled(d, p, size);
        sample_slow(d, p, size);
    }
    return p;
}

/* The sampled hooks are specialised per domain (D: its index in domains[])
 * and installed with the previous allocator's own ctx: the previous
 * functions are read from the global domains[D], so an unsampled call passes
 * its arguments on untouched and ends in a tail call through one global
 * pointer (no ctx to load, no stack frame).
 *
 * In the sampled hooks, in_hook also marks the previous allocator's own
 * calls: pymalloc hands requests above 512 bytes to the RAW domain, whose
 * hook must not count their bytes a second time.  MEM and OBJ are never
 * called from inside each other's allocator, so only the RAW hooks look at
 * the flag (the hooks' own allocations, made with it set, are skipped the
 * same way).  The flag is raised and lowered by one, not set and cleared: the
 * hooks' own code (a report, sites()) calls them with it already raised, and
 * must find it raised when they return.  Freeing an unsampled block costs one filter probe before the
 * previous allocator's free. */
#define SAMPLED_HOOKS(SUFFIX, D, NESTED_CHECK)                                          \
static void *hook_malloc_##SUFFIX(void *ctx, size_t size)                               \
{                                                                                       \
    const domain_t *d = &domains[D];                                                    \
    NESTED_CHECK(d->prev.malloc(ctx, size));                                            \
    in_hook++;                                                                          \
    void *p = d->prev.malloc(ctx, size);                                                \
    in_hook--;                                                                          \
    /* the API refuses sizes above PY_SSIZE_T_MAX before calling a hook */              \
    if (__builtin_expect((tls_left -= (int64_t)size) < 0, 0))                          \
        sample_slow(d, p, size);                                                        \
    return p;                                                                           \
}                                                                                       \
                                                                                        \
static void *hook_calloc_##SUFFIX(void *ctx, size_t nelem, size_t elsize)               \
{                                                                                       \
    const domain_t *d = &domains[D];                                                    \
    NESTED_CHECK(d->prev.calloc(ctx, nelem, elsize));                                   \
    in_hook++;                                                                          \
    void *p = d->prev.calloc(ctx, nelem, elsize);                                       \
    in_hook--;                                                                          \
    size_t size;                                                                        \
    if (p != NULL && !__builtin_mul_overflow(nelem, elsize, &size) &&                   \
        __builtin_expect((tls_left -= (int64_t)size) < 0, 0))                          \
        sample_slow(d, p, size);                                                        \
    return p;                                                                           \
}                                                                                       \
                                                                                        \
static void *hook_realloc_##SUFFIX(void *ctx, void *ptr, size_t size)                   \
{                                                                                       \
    const domain_t *d = &domains[D];                                                    \
    NESTED_CHECK(d->prev.realloc(ctx, ptr, size)); /* the outer call forgot ptr */      \
    if (__builtin_expect(maybe_sampled(ptr), 0))                                        \
        return realloc_maybe_sampled(d, ptr, size, false);                              \
    in_hook++;                                                                          \
    void *p = d->prev.realloc(ctx, ptr, size);                                          \
    in_hook--;                                                                          \
    /* a resize is a fresh allocation of its new size (the sampler's rule) */           \
    if (p != NULL && __builtin_expect((tls_left -= (int64_t)size) < 0, 0))              \
        sample_slow(d, p, size);                                                        \
    return p;                                                                           \
}                                                                                       \
                                                                                        \
static void hook_free_##SUFFIX(void *ctx, void *ptr)                                    \
{                                                                                       \
    if (__builtin_expect(maybe_sampled(ptr), 0)) {                                      \
        free_maybe_sampled(&domains[D], ptr);                                           \
        return;                                                                         \
    }                                                                                   \
    domains[D].prev.free(ctx, ptr);                                                     \
}

#define NESTED_RETURN(call) do { if (in_hook) return call; } while (0)
#define NOT_NESTED(call) do { } while (0)
SAMPLED_HOOKS(raw_s, 0, NESTED_RETURN)
SAMPLED_HOOKS(mem_s, 1, NOT_NESTED)
SAMPLED_HOOKS(obj_s, 2, NOT_NESTED)

/* MEM and OBJ over pymalloc (checked at start: pymalloc_forwards): requests
 * above 512 bytes reach the RAW hook, which counts them, so these count the
 * small ones only and need no flag around the call.  (Resizes keep the flag:
 * pymalloc moves a large block to the RAW domain whatever its new size.)
 *
 * Every sampled block is a raw block: a small one is asked of pymalloc at 0
 * bytes (pymalloc hands it to the RAW domain and counts it among its raw
 * blocks, as sys.getallocatedblocks() reports) and resized to its size by the
 * RAW domain's allocator.  pymalloc's free hands a block that is not its own
 * to the RAW domain's free, whose hook forgets the sampled ones: so the MEM
 * and OBJ domains keep pymalloc's own free, with no hook at all, and freeing
 * a block costs what it costs without the hooks. */
static bool pymalloc_forwards;

/* A raw block of size bytes (zeroed when zero), as pymalloc makes them: a
 * request of 0 bytes, which pymalloc hands to the RAW domain (a 1-byte block)
 * and counts among its raw blocks, resized by the RAW domain's allocator
 * (two calls that glibc serves from its per-thread caches); NULL when out of
 * memory. */
static void *small_as_raw(const domain_t *d, size_t size, bool zero)
{
    in_hook++;          /* the RAW hook lets the request pass, uncounted */
    void *p = d->prev.malloc(d->prev.ctx, 0);
    in_hook--;
    if (p == NULL || size <= 1) {
        if (p != NULL && zero)
            memset(p, 0, 1);
        return p;
    }
    const domain_t *raw = &domains[PYMEM_DOMAIN_RAW];
    void *q = raw->prev.realloc(raw->prev.ctx, p, size);
    if (q == NULL) {
        d->prev.free(d->prev.ctx, p);
        return NULL;
    }
    if (zero)
        memset(q, 0, size);
    return q;
}

/* The countdown crossed zero on a small request: make it a raw block, then
 * count the samples (the hooks' own requests, made with the flag raised, are
 * never recorded: they stay pymalloc's). */
static __attribute__((noinline)) void *small_sampled(const domain_t *d, size_t size, bool zero)
{
    void *p;
    if (in_hook)
        p = zero ? d->prev.calloc(d->prev.ctx, 1, size) : d->prev.malloc(d->prev.ctx, size);
    else
        p = small_as_raw(d, size, zero);
    sample_slow(d, p, size);
    return p;
}

/* A resize to size bytes (p, not NULL) took the countdown below zero: a small
 * result may be pymalloc's own block, whose free no hook sees, so a sampled
 * one moves to a raw block (only when it is to be recorded). */
static __attribute__((noinline)) void *resized_small_sampled(const domain_t *d, void *p, size_t size)
{
    if (size <= SMALL_LIMIT && !in_hook) {
        void *q = small_as_raw(d, size, false);
        if (q == NULL) {
            sample_slow(d, NULL, size);     /* out of memory: its samples go unrecorded */
            return p;
        }
        memcpy(q, p, size);
        d->prev.free(d->prev.ctx, p);
        p = q;
    }
    sample_slow(d, p, size);
    return p;
}

/* The countdown is taken before the call (a failed allocation still spends
 * its bytes of the stream, which leaves the law of the others unchanged), so
 * the unsampled path is a compare, a subtraction, a branch and a tail call. */
#define SMALL_HOOKS(SUFFIX, D)                                                          \
static void *hook_malloc_small_##SUFFIX(void *ctx, size_t size)                         \
{                                                                                       \
    if (size <= SMALL_LIMIT && __builtin_expect((tls_left -= (int64_t)size) < 0, 0))   \
        return small_sampled(&domains[D], size, false);                                 \
    return domains[D].prev.malloc(ctx, size);                                           \
}                                                                                       \
                                                                                        \
static void *hook_calloc_small_##SUFFIX(void *ctx, size_t nelem, size_t elsize)         \
{                                                                                       \
    size_t size;                                                                        \
    if (!__builtin_mul_overflow(nelem, elsize, &size) && size <= SMALL_LIMIT &&         \
        __builtin_expect((tls_left -= (int64_t)size) < 0, 0))                           \
        return small_sampled(&domains[D], size, true);                                  \
    return domains[D].prev.calloc(ctx, nelem, elsize);                                  \
}                                                                                       \
                                                                                        \
static void *hook_realloc_small_##SUFFIX(void *ctx, void *ptr, size_t size)             \
{                                                                                       \
    const domain_t *d = &domains[D];                                                    \
    if (__builtin_expect(maybe_sampled(ptr), 0))                                        \
        return realloc_maybe_sampled(d, ptr, size, true);                               \
    in_hook++;                                                                          \
    void *p = d->prev.realloc(ctx, ptr, size);                                          \
    in_hook--;                                                                          \
    if (p != NULL && __builtin_expect((tls_left -= (int64_t)size) < 0, 0))              \
        return resized_small_sampled(d, p, size);                                       \
    return p;                                                                           \
}

SMALL_HOOKS(mem_s, 1)
SMALL_HOOKS(obj_s, 2)

/* The sampled hooks of each domain (ctx: set to the previous allocator's at
 * installation); SMALL_SAMPLED when pymalloc_forwards, whose free is
 * pymalloc's own (set at installation). */
static const PyMemAllocatorEx SAMPLED[3] = {
    {NULL, hook_malloc_raw_s, hook_calloc_raw_s, hook_realloc_raw_s, hook_free_raw_s},
    {NULL, hook_malloc_mem_s, hook_calloc_mem_s, hook_realloc_mem_s, hook_free_mem_s},
    {NULL, hook_malloc_obj_s, hook_calloc_obj_s, hook_realloc_obj_s, hook_free_obj_s},
};
static const PyMemAllocatorEx SMALL_SAMPLED[3] = {
    {NULL, hook_malloc_raw_s, hook_calloc_raw_s, hook_realloc_raw_s, hook_free_raw_s},
    {NULL, hook_malloc_small_mem_s, hook_calloc_small_mem_s, hook_realloc_small_mem_s, NULL},
    {NULL, hook_malloc_small_obj_s, hook_calloc_small_obj_s, hook_realloc_small_obj_s, NULL},
};

/* True when the previous OBJ allocator hands requests above SMALL_LIMIT and
 * of 0 bytes, and only those, to the RAW domain, and the free of a block it
 * did not make too
 * (pymalloc does; PYTHONMALLOC=malloc or the debug hooks do not): probed with
 * the RAW hooks installed. */
static TLS int probe_seen;
static TLS void *probe_freed;
/* Installed on the RAW domain with the previous allocator's context, as
 * every allocator this module puts there ("The RAW domain's exact hooks"). */
static void *probe_malloc(void *ctx, size_t size)
{
    probe_seen = 1;
    return domains[PYMEM_DOMAIN_RAW].prev.malloc(ctx, size);
}

static void probe_free(void *ctx, void *p)
{
    probe_freed = p;
    domains[PYMEM_DOMAIN_RAW].prev.free(ctx, p);
}

static bool probe_pymalloc(domain_t *raw, domain_t *obj)
{
    PyMemAllocatorEx saved;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &saved);
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &raw->prev);
    PyMemAllocatorEx probe = {raw->prev.ctx, probe_malloc, raw->prev.calloc, raw->prev.realloc,
                              probe_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &probe);
    bool ok = true;
    size_t sizes[3] = {SMALL_LIMIT, SMALL_LIMIT + 1, 0};
    for (int i = 0; i < 3 && ok; i++) {
        probe_seen = 0;
        void *p = obj->prev.malloc(obj->prev.ctx, sizes[i]);
        ok = p != NULL && probe_seen == (sizes[i] != SMALL_LIMIT);
        if (p != NULL)
            obj->prev.free(obj->prev.ctx, p);
    }
    /* a block of the RAW domain's, freed through this domain */
    void *q = ok ? raw->prev.malloc(raw->prev.ctx, 64) : NULL;
    if (q != NULL) {
        probe_freed = NULL;
        obj->prev.free(obj->prev.ctx, q);
        ok = probe_freed == q;      /* freed either way */
    } else {
        ok = false;
    }
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &saved);
    return ok;
}

/* --------------------------------------------------------------- reports */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void iso_now(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Expands %p (pid) and %% in pattern; false when it does not fit. */
static bool expand_path(const char *pattern, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = pattern; *p; p++) {
        char tmp[32];
        const char *add = tmp;
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(tmp, sizeof tmp, "%ld", (long)getpid());
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            tmp[0] = '%';
            tmp[1] = '\0';
            p++;
        } else {
            tmp[0] = *p;
            tmp[1] = '\0';
        }
        size_t k = strlen(add);
        if (o + k + 1 > n)
            return false;
        memcpy(out + o, add, k);
        o += k;
    }
    out[o] = '\0';
    return true;
}

/* The totals of a report section. */
typedef struct {
    uint64_t blocks, bytes, peak, allocs, untracked, peak_samples;
} totals_t;

/* Counters of the report taken before finalization, kept for the final rewrite. */
static struct {
    bool saved;
    char taken_at[32];
    char reason[16];
    totals_t totals;
    uint32_t nsites;
    site_t *sites;              /* a copy of the site table's counters */
} before;

static char *final_pattern;     /* report path pattern for the after-finalization rewrite */
static char *program_name;
static char python_version[32];

/* Where a report may go, and how: the one rule of csrc/outfile.h, which the
 * library's reports and the interposer's follow too (an existing character
 * device or FIFO is written straight in; a regular file, or nothing, is
 * replaced atomically through a temporary file created exclusively, without
 * following a link; anything else is refused and left alone).  The report is
 * formatted into memory from libc (open_memstream) while the tables' lock is
 * held, and written out only after the lock is released, by rpi_outfile_write,
 * the one routine that writes report bytes to a descriptor: it retries after
 * EINTR and waits (poll) while a descriptor the program made non-blocking is
 * full.  Writing with the lock held deadlocked a program whose own thread
 * reads the pipe or FIFO the report goes to: that thread's first allocation
 * waited for the lock, the writer for the reader. */
static int deliver_report(const char *pattern, const char *buf, size_t len, char *why,
                          size_t whycap)
{
    char path[4096], tmp[4200];
    rpi_outfile of;
    why[0] = '\0';
    if (!expand_path(pattern, path, sizeof path))
        return ENAMETOOLONG;
    int err = rpi_outfile_open(&of, path, tmp, sizeof tmp, why, whycap);
    if (err != 0)
        return err;
    err = rpi_outfile_write(of.fd, buf, len);
    if (err != 0) {
        rpi_outfile_finish(&of, path, 0, why, whycap);
        why[0] = '\0';
        return err;
    }
    return rpi_outfile_finish(&of, path, 1, why, whycap);
}

static void write_frames(FILE *f, const site_t *s)
{
    fputs("\"frames\": [", f);
    for (uint32_t i = 0; i < s->nframes; i++) {
        uint32_t raw = T.site_frames[s->frames_off + i];
        loc_t *l = &T.locs[raw & LOC_MASK];
        fputs(i ? ", {\"file\": " : "{\"file\": ", f);
        json_string(f, T.strings.text[l->file]);
        fprintf(f, ", \"line\": %d, \"function\": ", l->line);
        json_string(f, T.strings.text[l->func]);
        if (raw & ENTRY_LOC)
            fputs(", \"entry\": true", f);
        fputc('}', f);
    }
    fputc(']', f);
}

/* The native stacks of a report (run --native): the stack table of the
 * sites written, with the tables of the interposer's and the pools'
 * reports (docs/report-format.md): "modules" (path, load bias, build id),
 * "frames" ([module index, offset from the module's load bias]) and
 * "stacks" (frame indexes, innermost first); "eval_frames" lists the frames
 * that lie in CPython's evaluation loop.  Built with the lock held, from
 * libc memory. */
typedef struct {
    rpi_module obj;             /* load bias, address range, build id */
    char *path;
    long index;                 /* in the report's modules; -1: no frame in it */
} nmodule_t;

typedef struct {
    bool on, failed;
    uint32_t *ids;              /* stack index -> id */
    size_t nids, ids_cap;
    uint32_t *id_slots;         /* id -> stack index + 1 (open addressing) */
    size_t id_nslots;
    uintptr_t *frames;          /* frame index -> return address */
    long *frame_module;         /* frame index -> report module index, -1: none */
    size_t nframes, frames_cap;
    size_t *frame_slots;        /* address -> frame index + 1 */
    size_t frame_nslots;
    nmodule_t *mods;
    size_t nmods, mods_cap;
    nmodule_t **used;           /* report module index -> module */
    size_t nused;
} nreport_t;

static inline size_t nr_hash(uint64_t x, size_t nslots)
{
    return (size_t)mix64(x) & (nslots - 1);
}

/* Adds the native stacks of the sites with outstanding blocks. */
static void nreport_add_sites(nreport_t *r, uint32_t nsites, const site_t *sites)
{
    for (uint32_t i = 0; i < nsites && !r->failed; i++) {
        uint32_t id = sites[i].native;
        if (id == 0 || sites[i].blocks == 0)
            continue;
        if ((r->nids + 1) * 2 > r->id_nslots) {
            size_t ns = r->id_nslots ? r->id_nslots * 2 : 256;
            uint32_t *fresh = calloc(ns, sizeof *fresh);
            if (fresh == NULL) {
                r->failed = true;
                return;
            }
            for (size_t k = 0; k < r->nids; k++) {
                size_t j = nr_hash(r->ids[k], ns);
                while (fresh[j] != 0)
                    j = (j + 1) & (ns - 1);
                fresh[j] = (uint32_t)k + 1;
            }
            free(r->id_slots);
            r->id_slots = fresh;
            r->id_nslots = ns;
        }
        size_t j = nr_hash(id, r->id_nslots);
        while (r->id_slots[j] != 0 && r->ids[r->id_slots[j] - 1] != id)
            j = (j + 1) & (r->id_nslots - 1);
        if (r->id_slots[j] != 0)
            continue;
        if (!grow_array((void **)&r->ids, &r->ids_cap, r->nids + 1, sizeof *r->ids)) {
            r->failed = true;
            return;
        }
        r->ids[r->nids] = id;
        r->id_slots[j] = (uint32_t)++r->nids;
    }
}

/* The stack index of id in the report, or -1. */
static long nreport_stack(const nreport_t *r, uint32_t id)
{
    if (!r->on || r->failed || id == 0 || r->id_nslots == 0)
        return -1;
    size_t j = nr_hash(id, r->id_nslots);
    while (r->id_slots[j] != 0) {
        if (r->ids[r->id_slots[j] - 1] == id)
            return (long)r->id_slots[j] - 1;
        j = (j + 1) & (r->id_nslots - 1);
    }
    return -1;
}

static long nreport_frame(const nreport_t *r, uintptr_t a)
{
    size_t j = nr_hash(a, r->frame_nslots);
    while (r->frame_slots[j] != 0) {
        if (r->frames[r->frame_slots[j] - 1] == a)
            return (long)r->frame_slots[j] - 1;
        j = (j + 1) & (r->frame_nslots - 1);
    }
    return -1;
}

static int nmodule_collect(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    nreport_t *r = arg;
    if (!grow_array((void **)&r->mods, &r->mods_cap, r->nmods + 1, sizeof *r->mods)) {
        r->failed = true;
        return 1;
    }
    nmodule_t *m = &r->mods[r->nmods];
    memset(m, 0, sizeof *m);
    m->index = -1;
    rpi_module_describe(info, &m->obj);
    char exe[PATH_MAX];
    const char *name = rpi_module_path(info, r->nmods == 0, exe, sizeof exe);
    if (name == NULL)
        return 0;
    m->path = strdup(name);
    if (m->path == NULL) {
        r->failed = true;
        return 1;
    }
    r->nmods++;
    return 0;
}

/* The frames of the stacks, each once, with its module. */
static void nreport_finish(nreport_t *r)
{
    if (r->failed)
        return;
    size_t total = 0;
    for (size_t i = 0; i < r->nids; i++) {
        const uintptr_t *f;
        total += native_frames(r->ids[i], &f);
    }
    size_t ns = 256;
    while (ns < total * 2 + 2)
        ns *= 2;
    r->frames = calloc(total + 1, sizeof *r->frames);
    r->frame_module = calloc(total + 1, sizeof *r->frame_module);
    r->frame_slots = calloc(ns, sizeof *r->frame_slots);
    if (r->frames == NULL || r->frame_module == NULL || r->frame_slots == NULL) {
        r->failed = true;
        return;
    }
    r->frame_nslots = ns;
    for (size_t i = 0; i < r->nids; i++) {
        const uintptr_t *f;
        size_t n = native_frames(r->ids[i], &f);
        for (size_t k = 0; k < n; k++) {
            size_t j = nr_hash(f[k], ns);
            while (r->frame_slots[j] != 0 && r->frames[r->frame_slots[j] - 1] != f[k])
                j = (j + 1) & (ns - 1);
            if (r->frame_slots[j] != 0)
                continue;
            r->frames[r->nframes] = f[k];
            r->frame_slots[j] = ++r->nframes;
        }
    }
    dl_iterate_phdr(nmodule_collect, r);
    r->used = calloc(r->nmods + 1, sizeof *r->used);
    if (r->failed || r->used == NULL) {
        r->failed = true;
        return;
    }
    for (size_t i = 0; i < r->nframes; i++) {
        r->frame_module[i] = -1;
        uintptr_t a = r->frames[i] - 1;
        for (size_t k = 0; k < r->nmods; k++) {
            nmodule_t *m = &r->mods[k];
            if (a >= m->obj.lo && a < m->obj.hi) {
                if (m->index < 0) {
                    m->index = (long)r->nused;
                    r->used[r->nused++] = m;
                }
                r->frame_module[i] = m->index;
                break;
            }
        }
    }
}

static void nreport_write(FILE *f, const nreport_t *r)
{
    if (!r->on)
        return;
    if (r->failed) {
        /* the sites were written without "native"; the report says why */
        fputs(",\n  \"native_error\": \"out of memory building the native stack table\"", f);
        return;
    }
    fputs(",\n  \"modules\": [", f);
    for (size_t i = 0; i < r->nused; i++) {
        const nmodule_t *m = r->used[i];
        fputs(i ? ",\n    {\"path\": " : "\n    {\"path\": ", f);
        json_string(f, m->path);
        fprintf(f, ", \"base\": \"0x%" PRIxPTR "\"", m->obj.base);
        char hex[2 * sizeof m->obj.build_id + 1];
        if (rpi_module_build_id_hex(&m->obj, hex))
            fprintf(f, ", \"build_id\": \"%s\"", hex);
        fputc('}', f);
    }
    fputs(r->nused ? "\n  ],\n  \"frames\": [" : "],\n  \"frames\": [", f);
    for (size_t i = 0; i < r->nframes; i++) {
        long mi = r->frame_module[i];
        uintptr_t off = r->frames[i] - (mi < 0 ? 0 : r->used[mi]->obj.base);
        fprintf(f, "%s[%ld, \"0x%" PRIxPTR "\"]", i ? ", " : "", mi, off);
    }
    fputs("],\n  \"eval_frames\": [", f);
    bool first = true;
    for (size_t i = 0; i < r->nframes; i++) {
        if (!is_eval_frame(r->frames[i]))
            continue;
        fprintf(f, "%s%zu", first ? "" : ", ", i);
        first = false;
    }
    fputs("],\n  \"stacks\": [", f);
    for (size_t i = 0; i < r->nids; i++) {
        const uintptr_t *fr;
        size_t n = native_frames(r->ids[i], &fr);
        fputs(i ? ", [" : "[", f);
        for (size_t k = 0; k < n; k++)
            fprintf(f, "%s%ld", k ? ", " : "", nreport_frame(r, fr[k]));
        fputc(']', f);
    }
    fputc(']', f);
}

static void nreport_free(nreport_t *r)
{
    for (size_t i = 0; i < r->nmods; i++)
        free(r->mods[i].path);
    free(r->mods);
    free(r->used);
    free(r->ids);
    free(r->id_slots);
    free(r->frames);
    free(r->frame_module);
    free(r->frame_slots);
}


/* Sampled mode: the site's estimates, rounded as the report's integer fields
 * carry them (the interposer's sampled reports do the same). */
static inline uint64_t est_blocks_of(const site_t *s) { return round_est(s->est_blocks); }
static inline uint64_t est_bytes_of(const site_t *s) { return round_est((double)s->samples / sample_rate); }
static inline uint64_t est_allocs_of(const site_t *s) { return round_est(s->est_allocs); }

/* The section's totals: the live ones in exact mode; in sampled mode, the sums
 * of the rounded estimates of the sites (so that they add up as a report's
 * totals must). */
static totals_t section_totals(uint32_t n, const site_t *sites, const totals_t *live)
{
    totals_t t = *live;
    if (sample_rate <= 0.0)
        return t;
    t.blocks = t.bytes = t.allocs = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (sites[i].blocks != 0) {
            t.blocks += est_blocks_of(&sites[i]);
            t.bytes += est_bytes_of(&sites[i]);
        }
        t.allocs += est_allocs_of(&sites[i]);
    }
    t.peak = round_est((double)live->peak_samples / sample_rate);
    return t;
}

/* A double as JSON has it: no inf or nan, which a rate too small to invert
 * (a subnormal one: 1 / 5e-324 is inf) would write. */
static double json_double(double v)
{
    if (v != v)
        return 0.0;
    return v > DBL_MAX ? DBL_MAX : v < -DBL_MAX ? -DBL_MAX : v;
}

static void write_est(FILE *f, const char *name, double v)
{
    fprintf(f, ", \"%s\": %.17g", name, json_double(v));
}

/* Writes the sites section from the given per-site counters (lock held). */
static void write_sites(FILE *f, uint32_t nsites, const site_t *sites, bool with_peak,
                        const nreport_t *nr)
{
    fputs("[", f);
    bool first = true;
    for (uint32_t i = 0; i < nsites; i++) {
        const site_t *s = &sites[i];
        if (s->blocks == 0)
            continue;
        fputs(first ? "\n    {" : ",\n    {", f);
        first = false;
        write_frames(f, s);
        long stack = nreport_stack(nr, s->native);
        if (stack >= 0)
            fprintf(f, ", \"native\": %ld", stack);
        if (sample_rate > 0.0) {
            fprintf(f, ", \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64, est_blocks_of(s),
                    est_bytes_of(s));
            if (with_peak)
                fprintf(f, ", \"peak_bytes\": %" PRIu64,
                        round_est((double)s->peak_samples / sample_rate));
            fprintf(f, ", \"allocs\": %" PRIu64 ", \"sampled_blocks\": %" PRIu64
                       ", \"samples\": %" PRIu64, est_allocs_of(s), s->blocks, s->samples);
            write_est(f, "est_blocks", s->est_blocks);
            write_est(f, "est_bytes", (double)s->samples / sample_rate);
            write_est(f, "est_allocs", s->est_allocs);
            write_est(f, "est_alloc_bytes", (double)s->alloc_samples / sample_rate);
        } else {
            fprintf(f, ", \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64, s->blocks, s->bytes);
            if (with_peak)
                fprintf(f, ", \"peak_bytes\": %" PRIu64, s->peak);
            fprintf(f, ", \"allocs\": %" PRIu64, s->allocs);
        }
        fputc('}', f);
    }
    fputs(first ? "]" : "\n  ]", f);
}

/* A copy of the site table (lock held); NULL on OOM. */
static site_t *copy_sites(uint32_t n)
{
    site_t *c = malloc((size_t)(n ? n : 1) * sizeof *c);
    if (c != NULL && n != 0)
        memcpy(c, T.sites, (size_t)n * sizeof *c);
    return c;
}

static totals_t live_totals(void)
{
    /* blocks and allocations are summed from the sites: the hot path updates
     * only the totals that have a peak */
    totals_t t = {0, T.bytes, T.peak, 0, T.untracked, T.peak_samples};
    for (uint32_t i = 0; i < T.sites_len; i++) {
        t.blocks += T.sites[i].blocks;
        t.allocs += T.sites[i].allocs;
    }
    return t;
}

/* Writes a report to the expanded pattern (via a temporary file and rename).
 * With final set, the saved before-finalization counters are the main section
 * and the current counters are "after_finalization".  Lock held.
 * Returns 0, or an errno value. */
/* The report's text, in *buf (from malloc: the caller frees it) of *len
 * bytes; called with the tables' lock held.  0 or ENOMEM. */
static int format_report_locked(const char *reason, bool final, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    uint32_t n = T.sites_len;
    site_t *now_sites = copy_sites(n);
    if (now_sites == NULL)
        return ENOMEM;
    FILE *f = open_memstream(buf, len);
    if (f == NULL) {
        free(now_sites);
        return ENOMEM;
    }
    char now[32];
    iso_now(now, sizeof now);
    bool use_before = final && before.saved;
    totals_t live = live_totals();
    fputs("{\n  \"format\": \"ringpool-python\",\n  \"version\": 1,\n", f);
    fprintf(f, "  \"pid\": %ld,\n  \"program\": ", (long)getpid());
    json_string(f, program_name ? program_name : "");
    fputs(",\n  \"python\": ", f);
    json_string(f, python_version);
    fprintf(f, ",\n  \"taken_at\": \"%s\",\n  \"reason\": ", use_before ? before.taken_at : now);
    json_string(f, use_before ? before.reason : reason);
    /* with native stacks, the Python frames are those the native stack's
     * eval frames ran, up to MAX_DEPTH */
    fprintf(f, ",\n  \"depth\": %d,\n  \"domains\": [", native_depth ? MAX_DEPTH : depth);
    bool firstd = true;
    for (int i = 0; i < 3; i++) {
        if (!domains[i].installed)
            continue;
        fprintf(f, "%s\"%s\"", firstd ? "" : ", ", domains[i].name);
        firstd = false;
    }
    fputs("],\n", f);
    if (sample_rate > 0.0)
        fprintf(f, "  \"sample_rate\": %.17g,\n  \"sample_period\": %.17g,\n", sample_rate,
                json_double(1.0 / sample_rate));
    const site_t *main_sites = use_before ? before.sites : now_sites;
    uint32_t main_n = use_before ? before.nsites : n;
    nreport_t nr = {.on = native_depth != 0};
    if (nr.on) {
        fprintf(f, "  \"native_depth\": %d,\n", native_depth);
        nreport_add_sites(&nr, main_n, main_sites);
        if (use_before)
            nreport_add_sites(&nr, n, now_sites);
        nreport_finish(&nr);
    }
    totals_t t = section_totals(main_n, main_sites, use_before ? &before.totals : &live);
    fprintf(f, "  \"totals\": {\"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"peak_bytes\": %" PRIu64 ", \"allocs\": %" PRIu64
               ", \"untracked\": %" PRIu64 "},\n  \"sites\": ",
            t.blocks, t.bytes, t.peak, t.allocs, t.untracked);
    write_sites(f, main_n, main_sites, true, &nr);
    if (use_before) {
        totals_t after = section_totals(n, now_sites, &live);
        fprintf(f, ",\n  \"after_finalization\": {\"taken_at\": \"%s\", \"totals\": {\"blocks\": %"
                   PRIu64 ", \"bytes\": %" PRIu64 "}, ", now, after.blocks, after.bytes);
        /* A domain whose allocator is no longer the hooks' was taken out of them during
         * finalization: by tracemalloc, started before the hooks (-X tracemalloc,
         * PYTHONTRACEMALLOC), whose stop in Py_FinalizeEx (_PyTraceMalloc_Fini, after the
         * modules are gone) puts back the allocators it found.  The blocks freed after that
         * were not seen going: the section says which domains, and the CLI does not call
         * them left.  PyMem_GetAllocator only copies a static struct: safe after
         * finalization. */
        bool first_unhooked = true;
        for (int i = 0; i < 3; i++) {
            if (!domains[i].installed)
                continue;
            PyMemAllocatorEx cur;
            PyMem_GetAllocator(domains[i].domain, &cur);
            if (cur.malloc == domains[i].mine.malloc && cur.free == domains[i].mine.free)
                continue;
            fprintf(f, "%s\"%s\"", first_unhooked ? "\"unhooked\": [" : ", ", domains[i].name);
            first_unhooked = false;
        }
        if (!first_unhooked)
            fputs("], ", f);
        fputs("\"sites\": ", f);
        write_sites(f, n, now_sites, false, &nr);
        fputs("}", f);
    }
    nreport_write(f, &nr);
    nreport_free(&nr);
    free(now_sites);
    fputs("\n}\n", f);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(*buf);
        *buf = NULL;
        *len = 0;
        return ENOMEM;
    }
    return 0;
}

/* Formats the report with the tables' lock held, releases the lock, writes
 * the report to pattern's path, and takes the lock again. */
static int write_report_locked(const char *pattern, const char *reason, bool final, char *why,
                               size_t whycap)
{
    char *buf;
    size_t len;
    why[0] = '\0';
    int err = format_report_locked(reason, final, &buf, &len);
    if (err != 0)
        return err;
    unlock_tables();
    err = deliver_report(pattern, buf, len, why, whycap);
    free(buf);
    lock_tables();
    return err;
}

static void save_before_locked(const char *reason)
{
    free(before.sites);
    before.saved = false;
    before.sites = copy_sites(T.sites_len);
    if (before.sites == NULL)
        return;
    before.nsites = T.sites_len;
    before.totals = live_totals();
    iso_now(before.taken_at, sizeof before.taken_at);
    snprintf(before.reason, sizeof before.reason, "%s", reason);
    before.saved = true;
}

/* libc atexit: runs after Py_FinalizeEx has returned. */
static void final_report_atexit(void)
{
    if (final_pattern == NULL || !before.saved || !tracing)
        return;
    in_hook = 1;
    lock_tables();
    char why[512];
    int err = write_report_locked(final_pattern, "exit", true, why, sizeof why);
    unlock_tables();
    in_hook = 0;
    if (err != 0) {
        char shown[1200];       /* the path as the CLI names it: one line */
        fprintf(stderr, "ringpool: cannot write the Python report %s: %s\n",
                rpi_outfile_printable(shown, sizeof shown, final_pattern), why[0] ? why : strerror(err));
    }
}

static void atfork_child(void)
{
    atomic_flag_clear(&tables_lock);
    /* The child's one thread draws from a stream of its own from now on. */
    stream_salt = rpg_splitmix(&(uint64_t){stream_salt ^ (uint64_t)getpid()});
    if (sample_rate > 0.0 && tls_generation != 0) {
        rpg_seed(tls_rng, sample_seed ^ stream_salt,
                 atomic_fetch_add_explicit(&stream_serial, 1, memory_order_relaxed));
        tls_left = rpg_draw(tls_rng, inv_log1m) - 1;
    }
}

/* ------------------------------------------------------- Python interface */
static bool in_main_interpreter(void)
{
    return PyInterpreterState_Get() == PyInterpreterState_Main();
}

static PyObject *refuse_subinterpreter(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "ringpool Python hooks: subinterpreters are not supported; "
                    "start and query the hooks from the main interpreter");
    return NULL;
}

static bool tables_init(void)
{
    if (T.sites_len > 0)
        return true;
    static const uint32_t none = 0;
    /* site 0: allocations with no Python frame */
    return intern_site(&none, 0) == NO_FRAME_SITE;
}

static uint64_t random_seed(void)
{
    uint64_t x = 0;
    if (getentropy(&x, sizeof x) != 0 || x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^
            (uint64_t)(uintptr_t)&x;
    }
    return x;
}

static PyObject *py_start(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"depth", "raw", "sample_rate", "seed", "native", NULL};
    int d = 1, raw = 1, native = 0;
    double rate = 0.0;
    PyObject *seed_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ipdOi:start", kwlist, &d, &raw, &rate, &seed_obj,
                                     &native))
        return NULL;
    if (!in_main_interpreter())
        return refuse_subinterpreter();
    if (d < 1 || d > MAX_DEPTH)
        return PyErr_Format(PyExc_ValueError, "depth must be between 1 and %d, not %d", MAX_DEPTH, d);
    if (!(rate >= 0.0 && rate <= 1.0))
        return PyErr_Format(PyExc_ValueError,
                            "sample_rate must be in (0, 1] (0: exact, every allocation), not %R",
                            PyTuple_GET_SIZE(args) > 2 ? PyTuple_GET_ITEM(args, 2)
                                                       : PyDict_GetItemString(kw, "sample_rate"));
    uint64_t seed = 0;
    if (seed_obj != Py_None) {
        if (!PyLong_Check(seed_obj))
            return PyErr_Format(PyExc_TypeError, "seed must be an int or None, not %.100s",
                                Py_TYPE(seed_obj)->tp_name);
        seed = PyLong_AsUnsignedLongLong(seed_obj);
        if (seed == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return PyErr_Format(PyExc_ValueError, "seed must be an integer from 0 to 2**64 - 1");
        }
        if (rate == 0.0)
            return PyErr_Format(PyExc_ValueError, "seed applies to sampling (give sample_rate)");
    } else if (rate > 0.0) {
        seed = random_seed();
    }
    if (native < 0 || native > RPI_STACK_MAX_DEPTH)
        return PyErr_Format(PyExc_ValueError,
                            "native must be a number of native frames from 1 to %d (0: none), not %d",
                            RPI_STACK_MAX_DEPTH, native);
    if (tracing)
        return PyErr_Format(PyExc_RuntimeError, "the Python allocator hooks are already running");
    if (serial_index < 0) {
        /* once per process (a forked child keeps its parent's); none left
         * (CPython has 255): no location is cached, every one is read again */
        serial_index = _PyEval_RequestCodeExtraIndex(NULL);
        if (serial_index < 0)
            PyErr_Clear();
    }
    if (native != 0 && native_init() < 0)
        return NULL;
    native_depth = native;
    /* the mode is set before the tables are sized (the sampled table starts small) */
    sample_rate = rate;
    log1m_rate = rate > 0.0 && rate < 1.0 ? log1p(-rate) : 0.0;
    inv_log1m = rate > 0.0 && rate < 1.0 ? 1.0 / log1m_rate : 0.0;
    for (size_t n = 0; n <= SMALL_LIMIT; n++)
        inv_p_small[n] = inv_p_of(n);
    sample_seed = seed;
    atomic_store(&stream_serial, 0);
    atomic_fetch_add(&start_calls, 1);
    /* generation 0 means "never drew": skip it when the counter wraps */
    if (atomic_fetch_add(&sample_generation, 1) + 1 == 0)
        atomic_fetch_add(&sample_generation, 1);
    lock_tables();
    bool ok = tables_init() && traces_room() && cc_grow();
    unlock_tables();
    if (!ok)
        return PyErr_NoMemory();
    depth = d;
    static bool atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(NULL, NULL, atfork_child) != 0)
            return PyErr_Format(PyExc_OSError, "pthread_atfork failed");
        if (atexit(final_report_atexit) != 0)
            return PyErr_Format(PyExc_OSError, "atexit registration failed");
        atfork_done = true;
    }
    if (rate > 0.0 && raw) {
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &domains[1].prev);
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &domains[2].prev);
        pymalloc_forwards = probe_pymalloc(&domains[0], &domains[2]) &&
                            probe_pymalloc(&domains[0], &domains[1]);
    } else {
        pymalloc_forwards = false;
    }
    for (int i = 0; i < 3; i++) {
        domain_t *dm = &domains[i];
        if (dm->domain == PYMEM_DOMAIN_RAW && !raw)
            continue;
        PyMem_GetAllocator(dm->domain, &dm->prev);
        if (rate > 0.0) {
            dm->mine = pymalloc_forwards ? SMALL_SAMPLED[i] : SAMPLED[i];
            dm->mine.ctx = dm->prev.ctx;
            if (dm->mine.free == NULL)
                dm->mine.free = dm->prev.free;
        } else if (dm->domain == PYMEM_DOMAIN_RAW) {
            /* the previous allocator's context: "The RAW domain's exact hooks" */
            dm->mine = native != 0 ? (PyMemAllocatorEx){dm->prev.ctx, hook_malloc_raw_n,
                                                        hook_calloc_raw_n, hook_realloc_raw_n,
                                                        hook_free_raw}
                                   : (PyMemAllocatorEx){dm->prev.ctx, hook_malloc_raw,
                                                        hook_calloc_raw, hook_realloc_raw,
                                                        hook_free_raw};
        } else if (native != 0) {
            dm->mine = (PyMemAllocatorEx){dm, hook_malloc_n, hook_calloc_n, hook_realloc_n, hook_free};
        } else {
            dm->mine = (PyMemAllocatorEx){dm, hook_malloc, hook_calloc, hook_realloc, hook_free};
        }
        PyMem_SetAllocator(dm->domain, &dm->mine);
        dm->installed = true;
    }
    tracing = true;
    Py_RETURN_NONE;
}

static void clear_tables_locked(void)
{
    free(T.traces);
    T.traces = NULL;
    T.traces_cap = T.traces_len = T.traces_limit = 0;
    for (uint32_t i = 0; i < T.sites_len; i++) {
        site_t *s = &T.sites[i];
        s->blocks = s->bytes = s->peak = s->allocs = 0;
        s->samples = s->peak_samples = s->alloc_samples = 0;
        s->est_blocks = s->est_allocs = 0.0;
    }
    T.bytes = T.peak = T.untracked = 0;
    T.samples = T.peak_samples = 0;
    /* one relaxed store per counter, not memset: a thread may still be in a
     * RAW free hook, reading its counter without the lock or the GIL (a
     * thread ending frees its start-up state so); memset over the atomics
     * was a data race (ThreadSanitizer, stop() while threads end) */
    if (sample_rate > 0.0)
        for (size_t i = 0; i < sizeof sample_filter / sizeof sample_filter[0]; i++)
            atomic_store_explicit(&sample_filter[i], 0, memory_order_relaxed);
}

static PyObject *py_stop(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    if (!in_main_interpreter())
        return refuse_subinterpreter();
    if (!tracing)
        Py_RETURN_NONE;
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx cur;
        if (!domains[i].installed)
            continue;
        PyMem_GetAllocator(domains[i].domain, &cur);
        if (cur.malloc != domains[i].mine.malloc || cur.ctx != domains[i].mine.ctx)
            return PyErr_Format(PyExc_RuntimeError,
                                "another allocator hook (tracemalloc?) was installed on the %s "
                                "domain after ringpool's; stop it first", domains[i].name);
    }
    for (int i = 2; i >= 0; i--) {
        domain_t *dm = &domains[i];
        if (!dm->installed)
            continue;
        PyMem_SetAllocator(dm->domain, &dm->prev);
        dm->installed = false;
    }
    tracing = false;
    lock_tables();
    clear_tables_locked();
    before.saved = false;
    unlock_tables();
    Py_RETURN_NONE;
}

/* starts(): the start() calls that went past their checks so far: a mark()
 * or totals() taken under one start() means nothing under the next, whose
 * counters began at zero (a measurement across a stop() and start() of the
 * hooks compared the new counters with the old ones). */
static PyObject *py_starts(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromUnsignedLong((unsigned long)atomic_load(&start_calls));
}

static PyObject *py_is_tracing(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyBool_FromLong(tracing);
}

static PyObject *py_totals(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    lock_tables();
    totals_t live = live_totals();
    totals_t t = section_totals(T.sites_len, T.sites, &live);   /* sampled: estimates */
    uint64_t v[5] = {t.blocks, t.bytes, t.peak, t.allocs, t.untracked};
    unlock_tables();
    in_hook++;
    PyObject *r = Py_BuildValue("(KKKKK)", (unsigned long long)v[0], (unsigned long long)v[1],
                                (unsigned long long)v[2], (unsigned long long)v[3],
                                (unsigned long long)v[4]);
    in_hook--;
    return r;
}

static PyObject *py_sample_rate(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyFloat_FromDouble(sample_rate);
}

static PyObject *py_reset_peak(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    lock_tables();
    T.peak = T.bytes;
    T.peak_samples = T.samples;
    for (uint32_t i = 0; i < T.sites_len; i++) {
        T.sites[i].peak = T.sites[i].bytes;
        T.sites[i].peak_samples = T.sites[i].samples;
    }
    unlock_tables();
    Py_RETURN_NONE;
}

/* frames tuple of a site: ((file, line, function), ...); lock NOT held, but the
 * location and string tables only grow, and are read under the lock. */
static PyObject *frames_tuple(uint32_t site)
{
    lock_tables();
    uint32_t n = T.sites[site].nframes, off = T.sites[site].frames_off;
    uint32_t locs[MAX_DEPTH];
    const char *files[MAX_DEPTH], *funcs[MAX_DEPTH];
    int lines[MAX_DEPTH];
    for (uint32_t i = 0; i < n && i < MAX_DEPTH; i++) {
        locs[i] = T.site_frames[off + i] & LOC_MASK;
        files[i] = T.strings.text[T.locs[locs[i]].file];
        funcs[i] = T.strings.text[T.locs[locs[i]].func];
        lines[i] = T.locs[locs[i]].line;
    }
    unlock_tables();
    /* the strings are never freed while the module is loaded */
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *fr = Py_BuildValue("(NiN)",
                                     PyUnicode_DecodeUTF8(files[i], (Py_ssize_t)strlen(files[i]), "replace"),
                                     lines[i],
                                     PyUnicode_DecodeUTF8(funcs[i], (Py_ssize_t)strlen(funcs[i]), "replace"));
        if (fr == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, fr);
    }
    return t;
}

/* sites(): [(frames, blocks, bytes, peak_bytes, allocs)] for sites with
 * outstanding blocks (sampled mode: the rounded estimates). */
static PyObject *py_sites(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    in_hook++;
    lock_tables();
    uint32_t n = T.sites_len;
    site_t *c = copy_sites(n);
    unlock_tables();
    PyObject *list = NULL;
    if (c == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    bool sampled = sample_rate > 0.0;
    list = PyList_New(0);
    for (uint32_t i = 0; list != NULL && i < n; i++) {
        const site_t *s = &c[i];
        if (s->blocks == 0)
            continue;
        uint64_t v[4] = {s->blocks, s->bytes, s->peak, s->allocs};
        if (sampled) {
            v[0] = est_blocks_of(s);
            v[1] = est_bytes_of(s);
            v[2] = round_est((double)s->peak_samples / sample_rate);
            v[3] = est_allocs_of(s);
        }
        PyObject *fr = frames_tuple(i);
        PyObject *row = fr ? Py_BuildValue("(NKKKK)", fr, (unsigned long long)v[0],
                                           (unsigned long long)v[1], (unsigned long long)v[2],
                                           (unsigned long long)v[3]) : NULL;
        if (row == NULL || PyList_Append(list, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(row);
    }
    free(c);
out:
    in_hook--;
    return list;
}

/* mark(): an opaque bytes object holding every site's (blocks, bytes) now. */
static PyObject *py_mark(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    in_hook++;
    lock_tables();
    uint32_t n = T.sites_len;
    size_t sz = (size_t)n * 2 * sizeof(uint64_t);
    uint64_t *buf = malloc(sz ? sz : 1);
    if (buf != NULL)
        for (uint32_t i = 0; i < n; i++) {
            buf[2 * i] = T.sites[i].blocks;
            buf[2 * i + 1] = T.sites[i].bytes;
        }
    unlock_tables();
    PyObject *r = buf ? PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)sz) : PyErr_NoMemory();
    free(buf);
    in_hook--;
    return r;
}

/* Growth per site since a mark: outstanding bytes (or, with peak, the site's
 * peak since reset_peak) above the bytes at the mark. */
static PyObject *growth_since(PyObject *arg, bool peak)
{
    if (!PyBytes_Check(arg) || PyBytes_GET_SIZE(arg) % (2 * (Py_ssize_t)sizeof(uint64_t)) != 0)
        return PyErr_Format(PyExc_TypeError, "since() takes a value returned by mark()");
    const uint64_t *old = (const uint64_t *)PyBytes_AS_STRING(arg);
    uint32_t nold = (uint32_t)(PyBytes_GET_SIZE(arg) / (Py_ssize_t)(2 * sizeof(uint64_t)));
    in_hook++;
    PyObject *list = PyList_New(0);
    lock_tables();
    uint32_t n = T.sites_len;
    unlock_tables();
    for (uint32_t i = 0; list != NULL && i < n; i++) {
        lock_tables();
        uint64_t blocks = T.sites[i].blocks, bytes = peak ? T.sites[i].peak : T.sites[i].bytes;
        unlock_tables();
        uint64_t ob = i < nold ? old[2 * i] : 0, oby = i < nold ? old[2 * i + 1] : 0;
        if (bytes <= oby && blocks <= ob)
            continue;
        long long db = (long long)(blocks - ob), dby = (long long)(bytes - oby);
        PyObject *fr = frames_tuple(i);
        PyObject *row = fr ? Py_BuildValue("(NLL)", fr, db, dby) : NULL;
        if (row == NULL || PyList_Append(list, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(row);
    }
    in_hook--;
    return list;
}

/* since(mark): [(frames, blocks, bytes)] for sites whose outstanding bytes or
 * blocks grew since the mark (counts are the growth). */
static PyObject *py_since(PyObject *self, PyObject *arg)
{
    (void)self;
    return growth_since(arg, false);
}

/* peaks_since(mark): [(frames, blocks, bytes)]: per site, its peak since
 * reset_peak() above its bytes at the mark (blocks: the growth now). */
static PyObject *py_peaks_since(PyObject *self, PyObject *arg)
{
    (void)self;
    return growth_since(arg, true);
}

/* OSError(err, why or strerror(err), path) for a report not written. */
/* The OSError of a report that could not be written; its filename is the path
 * as Python names files (bytes that are not UTF-8 as lone surrogates). */
static PyObject *report_error(int err, const char *why, const char *path)
{
    if (why[0] == '\0') {
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO&", err, why, PyUnicode_DecodeFSDefault, path);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *py_write_report(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"path", "reason", NULL};
    PyObject *bytes = NULL;
    const char *reason = "request";
    /* a path as os.fsencode takes it: str (surrogateescape), bytes, os.PathLike */
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|s:write_report", kwlist, PyUnicode_FSConverter,
                                     &bytes, &reason))
        return NULL;
    const char *path = PyBytes_AS_STRING(bytes);
    PyObject *result = NULL;
    if (!in_main_interpreter()) {
        result = refuse_subinterpreter();
    } else if (!tracing) {
        PyErr_SetString(PyExc_RuntimeError, "the Python allocator hooks are not running");
    } else {
        in_hook++;
        int err;
        char why[512];
        Py_BEGIN_ALLOW_THREADS
        lock_tables();
        err = write_report_locked(path, reason, false, why, sizeof why);
        unlock_tables();
        Py_END_ALLOW_THREADS
        in_hook--;
        result = err != 0 ? report_error(err, why, path) : Py_NewRef(Py_None);
    }
    Py_DECREF(bytes);
    return result;
}

/* exit_report(path, program): writes the before-finalization report now and
 * arranges for the rewrite with what finalization leaves. */
static PyObject *py_exit_report(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bytes = NULL;
    const char *program, *reason = "exit";
    if (!PyArg_ParseTuple(args, "O&s|s:exit_report", PyUnicode_FSConverter, &bytes, &program, &reason))
        return NULL;
    if (!tracing) {
        Py_DECREF(bytes);
        return PyErr_Format(PyExc_RuntimeError, "the Python allocator hooks are not running");
    }
    const char *path = PyBytes_AS_STRING(bytes);
    char *p = strdup(path), *g = strdup(program);
    if (p == NULL || g == NULL) {
        free(p);
        free(g);
        Py_DECREF(bytes);
        return PyErr_NoMemory();
    }
    in_hook++;
    int err;
    char why[512];
    /* without the GIL, as write_report: a thread of the program may be the
     * reader of the pipe or FIFO the report goes to */
    Py_BEGIN_ALLOW_THREADS
    lock_tables();
    free(final_pattern);
    free(program_name);
    final_pattern = p;
    program_name = g;
    save_before_locked(reason);
    err = write_report_locked(path, reason, false, why, sizeof why);
    unlock_tables();
    Py_END_ALLOW_THREADS
    in_hook--;
    PyObject *result = err != 0 ? report_error(err, why, path) : Py_NewRef(Py_None);
    Py_DECREF(bytes);
    return result;
}

/* compile_source(source, filename): the code of a module's source (bytes:
 * the coding cookie applies; str), as compile(source, filename, "exec",
 * dont_inherit=True) makes it, through the C compiler entry point: the
 * builtin compile() first initializes the ast module's classes (about 9 M
 * instructions) that a program run by `python app.py` never pays for.
 * Sources holding a NUL byte go to the builtin, which refuses them. */
static PyObject *py_compile_source(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *source, *filename;
    if (!PyArg_ParseTuple(args, "OU:compile_source", &source, &filename))
        return NULL;
    const char *text;
    Py_ssize_t n;
    PyCompilerFlags flags = _PyCompilerFlags_INIT;
    if (PyBytes_Check(source)) {
        text = PyBytes_AS_STRING(source);
        n = PyBytes_GET_SIZE(source);
    } else if (PyUnicode_Check(source)) {
        text = PyUnicode_AsUTF8AndSize(source, &n);
        if (text == NULL)
            return NULL;
        flags.cf_flags |= PyCF_IGNORE_COOKIE;
    } else {
        return PyErr_Format(PyExc_TypeError, "compile_source() takes bytes or str, not %.100s",
                            Py_TYPE(source)->tp_name);
    }
    if (memchr(text, '\0', (size_t)n) != NULL) {
        PyObject *builtins = PyEval_GetBuiltins();
        PyObject *compile = builtins ? PyDict_GetItemString(builtins, "compile") : NULL;
        if (compile == NULL)
            return PyErr_Format(PyExc_RuntimeError, "no builtin compile()");
        return PyObject_CallFunction(compile, "OOsii", source, filename, "exec", 0, 1);
    }
    return Py_CompileStringObject(text, filename, Py_file_input, &flags, -1);
}

/* Py_AtExit: runs at the end of Py_FinalizeEx, for a process that will not reach the C
 * library's atexit handlers: CPython kills itself with SIGINT after finalization when a
 * KeyboardInterrupt ended the program (Modules/main.c exit_sigint). */
static void final_report_py_atexit(void)
{
    final_report_atexit();
}

/* finalize_before_signal(): the launcher's word that the program ends by a signal CPython
 * raises after finalization (an uncaught KeyboardInterrupt): the after-finalization rewrite
 * then runs at the end of Py_FinalizeEx, not from the C library's atexit. */
static PyObject *py_finalize_before_signal(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    static bool registered;
    if (!registered) {
        if (Py_AtExit(final_report_py_atexit) != 0)
            return PyErr_Format(PyExc_RuntimeError, "Py_AtExit has no room left");
        registered = true;
    }
    Py_RETURN_NONE;
}

static PyObject *py_set_program(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *s = PyUnicode_AsUTF8(arg);
    if (s == NULL)
        return NULL;
    char *g = strdup(s);
    if (g == NULL)
        return PyErr_NoMemory();
    lock_tables();
    free(program_name);
    program_name = g;
    unlock_tables();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))py_start, METH_VARARGS | METH_KEYWORDS,
     "start(depth=1, raw=True, sample_rate=0.0, seed=None, native=0): route the allocator "
     "domains through the hooks; a sample_rate in (0, 1] records only sampled allocations "
     "(each byte sampled with that probability) and reports estimates; native=N also records "
     "N frames of native stack per recorded allocation, with the Python frames its "
     "evaluation-loop frames ran."},
    {"sample_rate", py_sample_rate, METH_NOARGS,
     "sample_rate() -> float: the rate of the running (or last) sampled run; 0.0: exact."},
    {"stop", py_stop, METH_NOARGS, "stop(): restore the previous allocators and clear the tables."},
    {"is_tracing", py_is_tracing, METH_NOARGS, "is_tracing() -> bool"},
    {"starts", py_starts, METH_NOARGS,
     "starts() -> int: start() calls so far; marks and totals of one mean nothing under the next."},
    {"totals", py_totals, METH_NOARGS,
     "totals() -> (blocks, bytes, peak_bytes, allocs, untracked) of recorded allocations."},
    {"reset_peak", py_reset_peak, METH_NOARGS, "reset_peak(): peaks restart from the current bytes."},
    {"sites", py_sites, METH_NOARGS,
     "sites() -> [(frames, blocks, bytes, peak_bytes, allocs)], sites with outstanding blocks."},
    {"mark", py_mark, METH_NOARGS, "mark() -> bytes: the outstanding counters of every site."},
    {"since", py_since, METH_O, "since(mark) -> [(frames, blocks, bytes)]: growth per site."},
    {"peaks_since", py_peaks_since, METH_O,
     "peaks_since(mark) -> [(frames, blocks, bytes)]: per site, its peak above its bytes at the mark."},
    {"write_report", (PyCFunction)(void (*)(void))py_write_report, METH_VARARGS | METH_KEYWORDS,
     "write_report(path, reason='request'): write a ringpool-python report (%p is the pid)."},
    {"exit_report", py_exit_report, METH_VARARGS,
     "exit_report(path, program, reason='exit'): report before finalization; rewritten after it."},
    {"set_program", py_set_program, METH_O, "set_program(name): the program named in reports."},
    {"finalize_before_signal", py_finalize_before_signal, METH_NOARGS,
     "finalize_before_signal(): the program ends by a signal raised after finalization "
     "(KeyboardInterrupt): rewrite the report at the end of Py_FinalizeEx."},
    {"compile_source", py_compile_source, METH_VARARGS,
     "compile_source(source, filename) -> code: compile(source, filename, 'exec', dont_inherit=True) "
     "without initializing the ast module."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "allocator._pyhooks",
    "CPython allocator hooks attributing allocations to Python frames.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pyhooks(void)
{
    if (!in_main_interpreter()) {
        PyErr_SetString(PyExc_ImportError,
                        "allocator._pyhooks: subinterpreters are not supported; "
                        "import it from the main interpreter");
        return NULL;
    }
    snprintf(python_version, sizeof python_version, "%d.%d.%d", PY_MAJOR_VERSION,
             PY_MINOR_VERSION, PY_MICRO_VERSION);
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_NATIVE_DEPTH", RPI_STACK_MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#endif /* CPython 3.11 */
