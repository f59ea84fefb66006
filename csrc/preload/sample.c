/*
 * sample.c -- the interposer's sampling mode (RINGPOOL_PRELOAD_SAMPLE_RATE).
 *
 * Each allocated byte is sampled with probability r; an allocation of n bytes
 * receives k ~ Binomial(n, r) samples through a per-thread geometric
 * countdown (the derivation is in csrc/memprof.c and docs/memprof.md). Only
 * blocks with k >= 1 are tracked, here, in a table of their own; the exact
 * side tables (table.c) stay empty. A free first asks a counting filter
 * whether the pointer may be tracked, so freeing an unsampled block costs a
 * hash and one load, not a locked table lookup.
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
__thread int64_t rpp_sample_left __attribute__((tls_model("initial-exec")));

static double inv_log;           /* 1 / ln(1 - r); 0 for r = 1 */
static double log1m;             /* ln(1 - r) */
static uint64_t seed;
static _Atomic uint64_t thread_serial;
static __thread uint64_t tls_rng[4] __attribute__((tls_model("initial-exec")));
static __thread int tls_seeded __attribute__((tls_model("initial-exec")));

/* ------------------------------------------------------------- numbers */
static double exp_neg(double y)   /* e^y for y <= 0 */
{
    if (y < -745.0)
        return 0.0;
    /* y = -k ln 2 + r with r in (-ln 2, 0]: e^y = 2^-k e^r */
    int k = (int)(-y * 1.4426950408889634);
    double r = y + k * 0.6931471805599453;
    double term = 1.0, sum = 1.0;
    for (int i = 1; i < 18; i++) {
        term *= r / i;
        sum += term;
    }
    while (k >= 60) {
        sum *= 0x1.0p-60;
        k -= 60;
    }
    return sum / (double)((uint64_t)1 << k);
}

/* 1 - e^y for y <= 0, without cancellation for small |y|. */
static double one_minus_exp(double y)
{
    if (y > -0.01) {
        double term = -y, sum = 0.0;
        for (int i = 1; i < 12; i++) {     /* -y - y^2/2! - ... alternating */
            sum += term;
            term *= y / (i + 1);
        }
        return sum;
    }
    return 1.0 - exp_neg(y);
}

/* P(an n-byte block gets at least one sample) = 1 - (1 - r)^n */
static double p_sampled(size_t n)
{
    if (inv_log == 0.0)
        return 1.0;
    return one_minus_exp((double)n * log1m);
}

static int64_t draw(void)
{
    return rpg_draw(tls_rng, inv_log);
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
_Atomic uint8_t *rpp_sample_filter;   /* counting filter, saturates at 255 */
#define filter rpp_sample_filter
static site_est *ests;            /* RPP_MAX_SITES, reserved */

static void lock_take(void) { rpi_spin_lock(&lock); }
static void lock_drop(void) { rpi_spin_unlock(&lock); }

/* The same hash as rpp_sample_maybe_tracked's. */
static inline uint64_t mix(uintptr_t x)
{
    uint64_t h = (uint64_t)x * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}
static inline size_t filter_slot(const void *p)
{
    return (size_t)(mix((uintptr_t)p) >> (64 - RPP_SAMPLE_FILTER_BITS));
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
        rpp_sample_left = draw() - (int64_t)size;
        if (rpp_sample_left > 0)
            return 0;
    }
    /* left <= 0: the point is at byte size + left (1-based); bytes after it
       (a signal handler's allocation may have drawn meanwhile: then no point) */
    if (rpp_sample_left > 0)
        return 0;
    int64_t rest = -rpp_sample_left;
    size_t k = 1;
    for (;;) {
        int64_t g = draw();
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
    double inv_p = 1.0 / p_sampled(size);
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
    _Atomic uint8_t *f = &filter[filter_slot(p)];
    if (atomic_load_explicit(f, memory_order_relaxed) != 255)
        atomic_fetch_add_explicit(f, 1, memory_order_relaxed);
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
    _Atomic uint8_t *f = &filter[filter_slot(p)];
    if (atomic_load_explicit(f, memory_order_relaxed) != 255)
        atomic_fetch_sub_explicit(f, 1, memory_order_relaxed);
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
