/*
 * sample.c -- the interposer's sampling mode (RINGPOOL_PRELOAD_SAMPLE_RATE).
 *
 * Each allocated byte is sampled with probability r; an allocation of n bytes
 * receives k ~ Binomial(n, r) samples through a per-thread geometric
 * countdown (the derivation is in csrc/memprof.c and docs/memprof.md). Only
 * blocks with k >= 1 are tracked, here, in a table of their own; the exact
 * side tables (table.c) stay empty. A free first asks a counting filter,
 * indexed by the pointer's own address bits, whether the pointer may be
 * tracked, so freeing an unsampled block costs one load and one branch, not
 * a locked table lookup (rpp.h has both short paths).
 *
 * Estimates per site, all unbiased:
 *   bytes (outstanding, or ever allocated): sum of k / r;
 *   blocks (outstanding, or allocations):  sum of 1 / p(n) over the tracked
 *       (sampled) ones, p(n) = 1 - (1 - r)^n the probability that an n-byte
 *       block is sampled at all (Horvitz-Thompson).
 * Blocks of 0 bytes are never sampled (they hold no byte), so they are not
 * estimated.
 *
 * Like the rest of the interposer: no malloc, no stdio; memory from mmap.
 */
#include "rpp.h"
#include "rawmem.h"
#include "../geometric.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

double rpp_sample_rate;
int rpp_sampling;

static double inv_log;           /* 1 / ln(1 - r); 0 for r = 1 */
static double log1m;             /* ln(1 - r) */
static uint64_t seed;
static _Atomic uint64_t thread_serial;
static __thread uint64_t tls_rng[4] __attribute__((tls_model("initial-exec")));
static __thread int tls_seeded __attribute__((tls_model("initial-exec")));

/* ------------------------------------------------------------- numbers */
/* A double's bits and back (the library builds with -fno-builtin, where
   memcpy would be a call). */
static inline uint64_t bits_of(double d)
{
    union { double d; uint64_t u; } x = { .d = d };
    return x.u;
}
static inline double double_of(uint64_t u)
{
    union { double d; uint64_t u; } x = { .u = u };
    return x.d;
}

/* 1/k!, k = 0..18 */
static const double inv_fact[19] = {
    1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664, 0.008333333333333333,
    0.001388888888888889, 0.0001984126984126984, 2.48015873015873e-05,
    2.7557319223985893e-06, 2.755731922398589e-07, 2.505210838544172e-08,
    2.08767569878681e-09, 1.6059043836821613e-10, 1.1470745597729725e-11,
    7.647163731819816e-13, 4.779477332387385e-14, 2.8114572543455206e-15,
    1.5619206968586225e-16,
};

/* sum of y^k / k! for k = from..18, by Horner: for |y| <= ln 2 the terms
   left out are below 1e-20 of the result */
static double exp_tail(double y, int from)
{
    double s = inv_fact[18];
    for (int k = 17; k >= from; k--)
        s = s * y + inv_fact[k];
    return s;
}

static double exp_neg(double y)   /* e^y for y <= 0 */
{
    if (y < -745.0)
        return 0.0;
    /* y = -k ln 2 + r with r in (-ln 2, 0]: e^y = 2^-k e^r */
    int k = (int)(-y * 1.4426950408889634);
    double r = y + k * 0.6931471805599453;
    double e = exp_tail(r, 0);
    if (k > 1000) {
        e *= 0x1.0p-1000;
        k -= 1000;
    }
    return e * double_of((uint64_t)(1023 - k) << 52);
}

/* 1 - e^y for y <= 0, without cancellation for small |y|: -(y + y^2/2! +
   ...) for |y| < 1/2. */
static double one_minus_exp(double y)
{
    if (y > -0.5)
        return -y * exp_tail(y, 1);
    return 1.0 - exp_neg(y);
}

/* P(an n-byte block gets at least one sample) = 1 - (1 - r)^n */
static double p_sampled(size_t n)
{
    if (inv_log == 0.0)
        return 1.0;
    return one_minus_exp((double)n * log1m);
}

/* Distance (>= 1) to the next sampled byte: G = 1 + floor(ln U / ln(1 - r))
   with U uniform on (0, 1] from the thread's stream, as rpg_draw. */
static int64_t draw(void)
{
    if (inv_log == 0.0)
        return 1;
    double g = rpg_ln_unit((rpg_next(tls_rng) >> 11) + 1) * inv_log;   /* loop-free ln */
    if (!(g < (double)(INT64_MAX / 4)))
        return INT64_MAX / 4;
    return (int64_t)g + 1;
}

/* 1 / p(n), the weight of a sampled n-byte block, computed once per size
   for the sizes most blocks have (the series behind p(n) is a few hundred
   instructions). Entries hold the double's bits; 0 = not computed yet (a
   race computes the same value twice). */
#define INV_P_SIZES 16384u
static _Atomic uint64_t inv_p_memo[INV_P_SIZES];

static double inv_p_of(size_t n)
{
    if (n < INV_P_SIZES) {
        uint64_t bits = atomic_load_explicit(&inv_p_memo[n], memory_order_relaxed);
        if (bits)
            return double_of(bits);
    }
    double v = 1.0 / p_sampled(n);
    if (n < INV_P_SIZES)
        atomic_store_explicit(&inv_p_memo[n], bits_of(v), memory_order_relaxed);
    return v;
}

/* ------------------------------------------------------------ the table */
typedef struct entry {
    uintptr_t ptr;     /* 0 empty, 1 deleted */
    uint64_t size;
    uint64_t k;
    double inv_p;      /* 1 / p(size), the block's weight in est_blocks */
    uint32_t site;
} entry;

typedef struct site_est {
    int64_t blocks, samples;      /* outstanding tracked blocks, their samples */
    double est_blocks;            /* outstanding: sum of 1 / p(n) */
    uint64_t allocs, alloc_samples;
    double est_allocs;            /* all sampled allocations: sum of 1 / p(n) */
} site_est;

static atomic_int lock;
static entry *table;
static size_t cap, used, live;    /* used counts deleted slots too */
/* The free filter (rpp.h): until published, the mask is 0 and the filter
   this one byte, which says "maybe" for every pointer. */
static _Atomic uint8_t filter_unpublished = 255;
_Atomic(_Atomic uint8_t *) rpp_sample_filter = &filter_unpublished;
_Atomic uintptr_t rpp_sample_mask;
#define FILTER_MASK (((uintptr_t)1 << RPP_SAMPLE_FILTER_BITS) - 1)
static _Atomic uint8_t *filter;   /* the array, counts saturate at 255 */
static site_est *ests;            /* RPP_MAX_SITES, reserved */

static void lock_take(void) { rpi_spin_lock(&lock); }
static void lock_drop(void) { rpi_spin_unlock(&lock); }

/* The table's hash. */
static inline uint64_t mix(uintptr_t x)
{
    uint64_t h = (uint64_t)x * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}
static inline size_t filter_slot(const void *p)
{
    return rpp_sample_slot(p, FILTER_MASK);
}

/* Adds delta (+1 or -1) to p's filter count unless it reached 255, which
   stays. A compare-and-swap: besides the table (under its lock), a signal
   handler's deferred allocation marks its block here (rpp_sample_mark). */
static void filter_add(const void *p, int delta)
{
    _Atomic uint8_t *f = &filter[filter_slot(p)];
    uint8_t v = atomic_load_explicit(f, memory_order_relaxed);
    while (v != 255 && !atomic_compare_exchange_weak_explicit(
                           f, &v, (uint8_t)(v + delta), memory_order_relaxed,
                           memory_order_relaxed))
        ;
}

void rpp_sample_mark(const void *p, int delta)
{
    filter_add(p, delta);
}

static int grow(void)
{
    size_t ncap = cap ? cap * 2 : 1024;
    entry *n = rpi_map_zeroed(ncap * sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < cap; i++) {
        if (table[i].ptr <= 1)
            continue;
        size_t j = (size_t)mix(table[i].ptr) & (ncap - 1);
        while (n[j].ptr)
            j = (j + 1) & (ncap - 1);
        n[j] = table[i];
    }
    if (table) {
        int saved = errno;
        munmap(table, cap * sizeof *table);
        errno = saved;
    }
    table = n;
    cap = ncap;
    used = live;
    return 0;
}

size_t rpp_sample_slow(size_t size)
{
    if (!tls_seeded) {
        rpg_seed(tls_rng, seed, atomic_fetch_add(&thread_serial, 1));
        tls_seeded = 1;
        /* the thread's stream starts with this block: its first sampled
           byte is G bytes in */
        rpp_sample_left = (uint64_t)draw();
    }
    /* Read again: a signal handler's allocation may have drawn meanwhile
       (then there may be no point in this block any more). */
    uint64_t left = rpp_sample_left;
    if ((uint64_t)size < left) {
        rpp_sample_left = left - (uint64_t)size;
        return 0;
    }
    /* The first point is byte `left` of the block (1-based); rest = the
       bytes after it, where the next draws may put more. */
    uint64_t rest = (uint64_t)size - left;
    size_t k = 1;
    for (;;) {
        uint64_t g = (uint64_t)draw();
        if (g <= rest) {
            rest -= g;
            k++;
            continue;
        }
        rpp_sample_left = g - rest;
        return k;
    }
}

/* Inserts p (lock held); a new allocation also adds to the totals. */
static void insert(void *p, size_t size, size_t k, uint32_t site, int new_alloc)
{
    double inv_p = inv_p_of(size);
    if ((used + 1) * 4 > cap * 3 && grow() != 0) {
        atomic_fetch_add_explicit(&rpp_stat.dropped, 1, memory_order_relaxed);
        return;
    }
    size_t j = (size_t)mix((uintptr_t)p) & (cap - 1);
    while (table[j].ptr > 1)
        j = (j + 1) & (cap - 1);
    if (!table[j].ptr)
        used++;
    live++;
    table[j] = (entry){ (uintptr_t)p, size, k, inv_p, site };
    site_est *e = &ests[site];
    e->blocks++;
    e->samples += (int64_t)k;
    e->est_blocks += inv_p;
    if (new_alloc) {
        e->allocs++;
        e->alloc_samples += k;
        e->est_allocs += inv_p;
    }
    filter_add(p, 1);
}

/* Removes p (lock held); 1 and *out filled when it was there. */
static int remove_entry(const void *p, rpp_sample_block *out)
{
    if (!cap)
        return 0;
    size_t j = (size_t)mix((uintptr_t)p) & (cap - 1);
    for (;; j = (j + 1) & (cap - 1)) {
        if (!table[j].ptr)
            return 0;
        if (table[j].ptr == (uintptr_t)p)
            break;
    }
    entry e = table[j];
    table[j].ptr = 1;              /* deleted */
    live--;
    site_est *s = &ests[e.site];
    s->blocks--;
    s->samples -= (int64_t)e.k;
    s->est_blocks -= e.inv_p;
    if (s->blocks == 0)
        s->est_blocks = 0.0;       /* no drift left behind by rounding */
    filter_add(p, -1);
    *out = (rpp_sample_block){ e.size, e.k, e.site };
    return 1;
}

void rpp_sample_track(void *p, size_t size, size_t k, uint32_t site)
{
    lock_take();
    insert(p, size, k, site, 1);
    lock_drop();
}

int rpp_sample_take_out(const void *p, rpp_sample_block *out)
{
    if (!rpp_sample_maybe_tracked(p))
        return 0;
    lock_take();
    int had = remove_entry(p, out);
    lock_drop();
    return had;
}

int rpp_sample_forget(const void *p)
{
    rpp_sample_block b;
    return rpp_sample_take_out(p, &b);
}

void rpp_sample_put_back(void *p, const rpp_sample_block *b)
{
    lock_take();
    insert(p, (size_t)b->size, (size_t)b->k, b->site, 0);
    lock_drop();
}

/* ------------------------------------------------------------ reporting */
void rpp_sample_read(uint32_t site, rpp_sample_counts *out)
{
    /* Read without the lock (the report may run in a signal handler): a
       report taken while other threads allocate is a moment's view, as the
       exact counters are. */
    const site_est *e = &ests[site];
    double r = rpp_sample_rate;
    out->sampled_blocks = e->blocks;
    out->samples = e->samples;
    out->est_blocks = e->est_blocks;
    out->est_bytes = (double)e->samples / r;
    out->est_allocs = e->est_allocs;
    out->est_alloc_bytes = (double)e->alloc_samples / r;
}

/* ----------------------------------------------------------- fork, init */
void rpp_sample_lock(void)
{
    if (rpp_sampling)
        lock_take();
}
void rpp_sample_unlock(void)
{
    if (rpp_sampling)
        lock_drop();
}

static int parse_rate(const char *v, double *out)
{
    char *end;
    errno = 0;
    double r = strtod(v, &end);
    if (errno || end == v || *end || !(r > 0.0 && r <= 1.0))
        return -1;
    *out = r;
    return 0;
}

void rpp_sample_init(void)
{
    const char *v = getenv("RINGPOOL_PRELOAD_SAMPLE_RATE");
    if (!v || !*v)
        return;
    double r;
    if (parse_rate(v, &r) != 0) {
        rpp_say("RINGPOOL_PRELOAD_SAMPLE_RATE='", v,
                "': not a rate in (0, 1]; counting every block instead");
        return;
    }
    filter = rpi_map_zeroed(sizeof *filter << RPP_SAMPLE_FILTER_BITS);
    ests = rpi_map_zeroed(sizeof *ests * RPP_MAX_SITES);
    if (!filter || !ests) {
        rpp_say("cannot map the sampling tables: ", "counting every block instead", "");
        return;
    }
    /* Slot 0 says "maybe" for good: a reader that still sees the mask 0
       may already see this array (free(NULL) takes the general path). */
    atomic_store_explicit(&filter[0], 255, memory_order_relaxed);
    const char *s = getenv("RINGPOOL_PRELOAD_SAMPLE_SEED");
    if (s && *s) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 0);
        if (errno || *end)
            rpp_say("RINGPOOL_PRELOAD_SAMPLE_SEED='", s, "': not a number; using a random seed");
        else
            seed = x;
    }
    if (!seed) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        seed = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32) ^ ((uint64_t)getpid() << 16);
    }
    rpp_sample_rate = r;
    log1m = r >= 1.0 ? 0.0 : rpg_ln1m(r);
    inv_log = r >= 1.0 ? 0.0 : 1.0 / log1m;
    rpp_sampling = 1;
}

void rpp_sample_publish(const void *boot_lo, const void *boot_hi)
{
    if (!rpp_sampling)
        return;
    uintptr_t lo = (uintptr_t)boot_lo >> RPP_SAMPLE_GRANULE_SHIFT;
    uintptr_t hi = ((uintptr_t)boot_hi + ((uintptr_t)1 << RPP_SAMPLE_GRANULE_SHIFT) - 1) >>
                   RPP_SAMPLE_GRANULE_SHIFT;
    for (uintptr_t g = lo; g < hi && g - lo <= FILTER_MASK; g++)
        atomic_store_explicit(&filter[g & FILTER_MASK], 255, memory_order_relaxed);
    atomic_store_explicit(&rpp_sample_filter, filter, memory_order_relaxed);
    atomic_store_explicit(&rpp_sample_mask, FILTER_MASK, memory_order_release);
}
