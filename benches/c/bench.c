/*
 * bench.c -- C microbenchmarks for ringpool, side by side with glibc malloc
 * (and, when their shared objects are installed, talloc, APR pools and
 * mimalloc heaps, loaded with dlopen so no peer header is needed).
 *
 * Two modes:
 *
 *   bench [options]            wall-time tables: median ns/op over several
 *                              repeats, every implementation in the same run,
 *                              ratios to glibc.
 *   bench --one WORKLOAD ...   runs exactly one workload once, with the
 *                              measured part inside rpb_measured(), so that
 *                              valgrind --tool=callgrind
 *                                  --toggle-collect=rpb_measured
 *                              counts only the instructions of that part
 *                              (benches/c/callgrind.sh drives it).
 *
 * Workloads (sizes are 16, 64, 256, 4096 or "mixed": a fixed-seed
 * distribution skewed to small blocks, see make_sizes()):
 *   pair       N x { p = alloc(size); free(p); }
 *   fill       N allocations into a fresh pool (setup: create the pool)
 *   free-each  free N outstanding blocks one by one in random order
 *   destroy    bulk-free N outstanding blocks (rp_pool_destroy,
 *              mi_heap_destroy, talloc_free of the parent, apr_pool_destroy)
 *   churn      a working set of W blocks, N random replacements
 *   stats      rp_pool_stats with N outstanding blocks (ringpool only)
 * Section "cold" (wall time only): each measurement in a fresh child process,
 * as a program that builds one big pool (or heap, or arena) and drops it:
 * fill N mixed blocks, destroy (ns per block), fill a new pool of the same
 * size (ns per block) and the process's resident memory after the destroy.
 * Section "bytes": memory per block. In a fresh child per implementation
 * and size, N blocks (16 B, 64 B, mixed) are allocated and kept; the
 * figure is the growth of the process's resident set (/proc/self/statm)
 * over the fill divided by N, beside the bytes asked for, and for ringpool
 * pools also rp_pool_get_info()'s reserved_bytes / N.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ringpool.h"
#include "sizes.h"
#include "../../csrc/peers.h"

/* Keeps the compiler from proving a block unused (and eliding malloc/free
   pairs) without adding an instruction. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
#define NOINLINE __attribute__((noinline))

static const char *const TAG = "bench";

/* ------------------------------------------------------------ peers (dlopen) */
typedef struct mi_heap_s mi_heap_t;
static struct {
    int        mi_ok, talloc_ok, apr_ok;
    mi_heap_t *(*mi_heap_new)(void);
    void      *(*mi_heap_malloc)(mi_heap_t *, size_t);
    void       (*mi_free)(void *);
    void       (*mi_heap_destroy)(mi_heap_t *);
    void      *(*talloc_named_const)(const void *, size_t, const char *);
    int        (*talloc_free)(void *, const char *);
    int        (*apr_initialize)(void);
    void       (*apr_terminate)(void);
    int        (*apr_pool_create_ex)(void **, void *, void *, void *);
    void      *(*apr_palloc)(void *, size_t);
    void       (*apr_pool_destroy)(void *);
} peer;

static void load_mimalloc(void)
{
    const rpi_peer_sym syms[] = {
        {"mi_heap_new", &peer.mi_heap_new}, {"mi_heap_malloc", &peer.mi_heap_malloc},
        {"mi_free", &peer.mi_free}, {"mi_heap_destroy", &peer.mi_heap_destroy}};
    peer.mi_ok = rpi_peer_open("libmimalloc.so.2", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL;
}

static void load_talloc(void)
{
    const rpi_peer_sym syms[] = {
        {"talloc_named_const", &peer.talloc_named_const}, {"_talloc_free", &peer.talloc_free}};
    peer.talloc_ok = rpi_peer_open("libtalloc.so.2", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL;
}

static void load_apr(void)
{
    const rpi_peer_sym syms[] = {
        {"apr_initialize", &peer.apr_initialize}, {"apr_terminate", &peer.apr_terminate},
        {"apr_pool_create_ex", &peer.apr_pool_create_ex}, {"apr_palloc", &peer.apr_palloc},
        {"apr_pool_destroy", &peer.apr_pool_destroy}};
    peer.apr_ok = rpi_peer_open("libapr-1.so.0", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL &&
                  peer.apr_initialize() == 0;
}

/* ------------------------------------------------------------ implementations */
/* The checked pools (RP_POOL_CHECKED) come last and run only in --one mode
   and in the checked section: once a checked pool has existed, every
   rp_free of the process consults the checked registry, so they must not
   share a process with the other tables' ringpool measurements. */
enum impl {
    I_GLIBC, I_RP_UNSYNC, I_RP_LOCKED, I_ARENA_UNSYNC, I_ARENA_LOCKED,
    I_MIMALLOC, I_TALLOC, I_APR, I_RP_CHECKED, I_ARENA_CHECKED, I_COUNT
};
#define I_TABLE_COUNT I_RP_CHECKED   /* implementations of the main tables */
static const char *const impl_name[I_COUNT] = {
    "glibc", "rp-unsync", "rp-locked", "arena-unsync", "arena-locked",
    "mimalloc-heap", "talloc", "apr-pool", "rp-checked", "arena-checked"
};
static const unsigned impl_flags[I_COUNT] = {
    0, RP_POOL_UNSYNC, 0, RP_POOL_ARENA | RP_POOL_UNSYNC, RP_POOL_ARENA, 0, 0, 0,
    RP_POOL_CHECKED, RP_POOL_CHECKED | RP_POOL_ARENA
};

static int is_rp(enum impl i)
{
    return (i >= I_RP_UNSYNC && i <= I_ARENA_LOCKED) || i == I_RP_CHECKED || i == I_ARENA_CHECKED;
}
static int can_free(enum impl i) { return i != I_APR; }
static int can_destroy(enum impl i) { return i != I_GLIBC; }

static int impl_available(enum impl i)
{
    switch (i) {
    case I_MIMALLOC: return peer.mi_ok;
    case I_TALLOC:   return peer.talloc_ok;
    case I_APR:      return peer.apr_ok;
    default:         return 1;
    }
}

typedef struct ctx {
    enum impl  impl;
    rp_pool   *pool;
    mi_heap_t *heap;
    void      *tctx;
    void      *apr;
} ctx;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void ctx_open(ctx *c, enum impl i)
{
    memset(c, 0, sizeof *c);
    c->impl = i;
    if (is_rp(i)) {
        rp_pool_options o = { .flags = impl_flags[i], .chunk_size = 0, .keep_bytes = 0 };
        c->pool = rp_pool_create_ex(impl_name[i], &o);
        if (!c->pool) die("rp_pool_create_ex failed for %s", impl_name[i]);
    } else if (i == I_MIMALLOC) {
        c->heap = peer.mi_heap_new();
        if (!c->heap) die("%s", "mi_heap_new failed");
    } else if (i == I_TALLOC) {
        c->tctx = peer.talloc_named_const(NULL, 0, "bench");
        if (!c->tctx) die("%s", "talloc_named_const failed");
    } else if (i == I_APR) {
        if (peer.apr_pool_create_ex(&c->apr, NULL, NULL, NULL) != 0)
            die("%s", "apr_pool_create_ex failed");
    }
}

/* Bulk free of whatever is outstanding; for glibc there is nothing to do. */
static void ctx_close(ctx *c)
{
    switch (c->impl) {
    case I_MIMALLOC: peer.mi_heap_destroy(c->heap); break;
    case I_TALLOC:   peer.talloc_free(c->tctx, "bench"); break;
    case I_APR:      peer.apr_pool_destroy(c->apr); break;
    case I_GLIBC:    break;
    default:         rp_pool_destroy(c->pool); break;
    }
    c->pool = NULL; c->heap = NULL; c->tctx = NULL; c->apr = NULL;
}

/* One loop per implementation with direct calls, so the counts hold the
   allocator's instructions plus the same few of loop overhead for all. */
#define A_GLIBC(c, s)  malloc(s)
#define F_GLIBC(c, p)  free(p)
#define A_RP(c, s)     rp_alloc((c)->pool, (s), TAG)
#define F_RP(c, p)     rp_free(p)
#define A_MI(c, s)     peer.mi_heap_malloc((c)->heap, (s))
#define F_MI(c, p)     peer.mi_free(p)
#define A_TA(c, s)     peer.talloc_named_const((c)->tctx, (s), TAG)
#define F_TA(c, p)     peer.talloc_free((p), TAG)
#define A_APR(c, s)    peer.apr_palloc((c)->apr, (s))
#define F_APR(c, p)    ((void)(c), (void)(p))

#define DEFINE_LOOPS(name, ALLOC, FREE)                                        \
    static NOINLINE void pair_##name(ctx *c, const size_t *sz, size_t mask,     \
                                     size_t n)                                 \
    {                                                                          \
        (void)c;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            void *p = ALLOC(c, sz[i & mask]);                                  \
            ESCAPE(p);                                                         \
            FREE(c, p);                                                        \
        }                                                                      \
    }                                                                          \
    static NOINLINE void fill_##name(ctx *c, void **b, const size_t *sz,       \
                                     size_t mask, size_t n)                    \
    {                                                                          \
        (void)c;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            b[i] = ALLOC(c, sz[i & mask]);                                     \
            ESCAPE(b[i]);                                                      \
        }                                                                      \
    }                                                                          \
    static NOINLINE void free_each_##name(ctx *c, void **b,                    \
                                          const uint32_t *perm, size_t n)      \
    {                                                                          \
        (void)c;                                                               \
        for (size_t i = 0; i < n; i++) FREE(c, b[perm[i]]);                    \
    }                                                                          \
    static NOINLINE void churn_##name(ctx *c, void **slot, const uint32_t *idx,\
                                      const size_t *sz, size_t mask, size_t n) \
    {                                                                          \
        (void)c;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            uint32_t k = idx[i & mask];                                        \
            FREE(c, slot[k]);                                                  \
            slot[k] = ALLOC(c, sz[(i * 7) & mask]);                            \
            ESCAPE(slot[k]);                                                   \
        }                                                                      \
    }

DEFINE_LOOPS(glibc, A_GLIBC, F_GLIBC)
DEFINE_LOOPS(rp, A_RP, F_RP)
DEFINE_LOOPS(mi, A_MI, F_MI)
DEFINE_LOOPS(ta, A_TA, F_TA)
DEFINE_LOOPS(apr, A_APR, F_APR)

#define DISPATCH(c, op, ...)                                                   \
    do {                                                                       \
        switch ((c)->impl) {                                                   \
        case I_GLIBC:    op##_glibc((c), __VA_ARGS__); break;                  \
        case I_MIMALLOC: op##_mi((c), __VA_ARGS__); break;                     \
        case I_TALLOC:   op##_ta((c), __VA_ARGS__); break;                     \
        case I_APR:      op##_apr((c), __VA_ARGS__); break;                    \
        default:         op##_rp((c), __VA_ARGS__); break;                     \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------ inputs */
static uint64_t rng_state = RPB_SEED;
static uint64_t rng(void) { return rpg_splitmix(&rng_state); }   /* fixed seed: same inputs every run */

#define SIZES_LEN ((size_t)1 << 16)
#define SIZES_MASK (SIZES_LEN - 1)

/* size == 0 means mixed: 40% 8..32, 30% 33..128, 20% 129..512,
   8% 513..2048, 2% 2049..4096 bytes (mean about 260 bytes). */
static size_t *make_sizes(size_t size)
{
    size_t *s = malloc(SIZES_LEN * sizeof *s);
    if (!s) die("%s", "out of memory for the size table");
    rng_state = RPB_SEED;
    for (size_t i = 0; i < SIZES_LEN; i++)
        s[i] = size ? size : rpb_mixed_size(&rng_state);
    return s;
}

static uint32_t *make_perm(size_t n)
{
    uint32_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) die("%s", "out of memory for the permutation");
    for (size_t i = 0; i < n; i++) p[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {   /* Fisher-Yates */
        size_t j = (size_t)(rng() % i);
        uint32_t t = p[i - 1]; p[i - 1] = p[j]; p[j] = t;
    }
    return p;
}

static uint32_t *make_indices(size_t len, size_t range)
{
    uint32_t *p = malloc(len * sizeof *p);
    if (!p) die("%s", "out of memory for the index table");
    for (size_t i = 0; i < len; i++) p[i] = (uint32_t)(rng() % range);
    return p;
}

/* Sanity checks outside the timed parts: a benchmark that silently lost its
   blocks would measure nothing. */
static void expect_outstanding(const ctx *c, size_t want, const char *when)
{
    if (!is_rp(c->impl)) return;
    size_t got = rp_pool_outstanding(c->pool, NULL);
    if (got != want) {
        fprintf(stderr, "bench: %s: %s: %zu blocks outstanding, expected %zu\n",
                impl_name[c->impl], when, got, want);
        exit(1);
    }
}

/* ------------------------------------------------------------ options */
typedef struct opts {
    int      quick;
    int      repeats;
    size_t   pair_count;
    size_t   max_blocks;
    size_t   churn_ws;
    size_t   churn_ops;
    size_t   cold_blocks;
    size_t   bytes_blocks;
    int      peers;
    unsigned sections;
    /* --one */
    const char *one;
    int      impl;
    const char *impl_str;
    size_t   count;
    size_t   size;      /* 0 = mixed */
} opts;

enum { S_PAIR = 1, S_BULK = 2, S_CHURN = 4, S_STATS = 8, S_REALLOC = 16, S_COLD = 32, S_BYTES = 64,
       S_ALL = 127 };

static void usage(FILE *f)
{
    fprintf(f,
"usage: bench [--quick] [--repeats R] [--pair-count N] [--max-blocks N]\n"
"             [--churn-ws W] [--churn-ops N] [--no-peers]\n"
"             [--section pair|bulk|churn|stats|realloc|cold|bytes]... [--cold-blocks N]\n"
"             [--bytes-blocks N]\n"
"       bench --one WORKLOAD --impl IMPL --count N [--size BYTES|mixed]\n"
"             [--churn-ws W]\n"
"       bench --list-impls\n"
"WORKLOAD: pair fill free-each destroy churn stats realloc-step realloc-double\n"
"          (realloc-*: --count is the number of rounds; IMPL may also be jemalloc)\n"
"IMPL: glibc rp-unsync rp-locked arena-unsync arena-locked\n"
"      mimalloc-heap talloc apr-pool (peers: when their libraries load)\n"
"      rp-checked arena-checked (RP_POOL_CHECKED; --one mode and the cold section)\n");
}

static size_t parse_count(const char *opt, const char *s, size_t min, size_t max)
{
    if (!s) die("%s needs a value", opt);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);         /* accepts 1e6 as well as 1000000 */
    if (errno || end == s || *end || v != v || v < (double)min || v > (double)max
        || v != (double)(size_t)v) {
        fprintf(stderr, "bench: %s: '%s' is not a whole number in [%zu, %zu]\n",
                opt, s, min, max);
        exit(2);
    }
    return (size_t)v;
}

static int parse_impl(const char *s)
{
    if (!s) die("%s", "--impl needs a value");
    for (int i = 0; i < I_COUNT; i++)
        if (strcmp(s, impl_name[i]) == 0) return i;
    die("unknown implementation '%s' (see --list-impls)", s);
    return -1;
}

static void parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->repeats = 5;
    o->pair_count = 2000000;
    o->max_blocks = 1000000;
    o->churn_ws = 100000;
    o->churn_ops = 2000000;
    o->cold_blocks = 100000;
    o->bytes_blocks = 1000000;
    o->peers = 1;
    o->impl = -1;
    o->count = 0;
    int size_given = 0;
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(k, "--quick")) { o->quick = 1; continue; }
        if (!strcmp(k, "--no-peers")) { o->peers = 0; continue; }
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(k, "--list-impls")) { o->one = "list"; continue; }
        a++;
        if (!strcmp(k, "--repeats")) o->repeats = (int)parse_count(k, v, 1, 1001);
        else if (!strcmp(k, "--pair-count")) o->pair_count = parse_count(k, v, 1, (size_t)1 << 40);
        else if (!strcmp(k, "--max-blocks")) o->max_blocks = parse_count(k, v, 10, (size_t)1 << 30);
        else if (!strcmp(k, "--churn-ws")) o->churn_ws = parse_count(k, v, 1, (size_t)1 << 28);
        else if (!strcmp(k, "--churn-ops")) o->churn_ops = parse_count(k, v, 1, (size_t)1 << 40);
        else if (!strcmp(k, "--cold-blocks")) o->cold_blocks = parse_count(k, v, 10, (size_t)1 << 26);
        else if (!strcmp(k, "--bytes-blocks")) o->bytes_blocks = parse_count(k, v, 10, (size_t)1 << 26);
        else if (!strcmp(k, "--count")) o->count = parse_count(k, v, 1, (size_t)1 << 31);
        else if (!strcmp(k, "--impl")) {
            o->impl_str = v;
            o->impl = v && !strcmp(v, "jemalloc") ? I_COUNT : parse_impl(v);
        }
        else if (!strcmp(k, "--one")) {
            if (!v) die("%s", "--one needs a workload");
            o->one = v;
        } else if (!strcmp(k, "--size")) {
            size_given = 1;
            if (v && !strcmp(v, "mixed")) o->size = 0;
            else o->size = parse_count(k, v, 1, (size_t)1 << 30);
        } else if (!strcmp(k, "--section")) {
            if (!v) die("%s", "--section needs a value");
            unsigned s = !strcmp(v, "pair") ? S_PAIR : !strcmp(v, "bulk") ? S_BULK
                       : !strcmp(v, "churn") ? S_CHURN : !strcmp(v, "stats") ? S_STATS
                       : !strcmp(v, "realloc") ? S_REALLOC : !strcmp(v, "cold") ? S_COLD
                       : !strcmp(v, "bytes") ? S_BYTES : 0;
            if (!s) die("unknown section '%s' (pair, bulk, churn, stats, realloc, cold, bytes)", v);
            o->sections |= s;
        } else {
            usage(stderr);
            die("unknown option '%s'", k);
        }
    }
    if (!o->sections) o->sections = S_ALL;
    if (o->one && strcmp(o->one, "list")) {
        if (o->impl < 0) die("%s", "--one needs --impl");
        if (!o->count) die("%s", "--one needs --count");
    } else if (o->impl >= 0 || o->count || size_given) {
        die("%s", "--impl, --count and --size go with --one");
    }
    if (o->quick) {
        o->repeats = o->repeats < 3 ? o->repeats : 3;
        o->pair_count = 20000;
        o->max_blocks = o->max_blocks < 10000 ? o->max_blocks : 10000;
        o->churn_ws = 1000;
        o->churn_ops = 20000;
        o->cold_blocks = o->cold_blocks < 10000 ? o->cold_blocks : 10000;
        o->bytes_blocks = o->bytes_blocks < 10000 ? o->bytes_blocks : 10000;
    }
}

/* ------------------------------------------------------------ --one mode */
struct job {
    ctx      *c;
    const char *workload;
    void    **blocks;
    uint32_t *perm;
    const size_t *sizes;
    size_t    n;
    rp_tag_stat *stats;
    size_t    ntags;
};

/* Everything callgrind should count happens in here, and nothing else. */
NOINLINE void rpb_measured(struct job *j);
NOINLINE void rpb_measured(struct job *j)
{
    const char *w = j->workload;
    if (!strcmp(w, "pair")) DISPATCH(j->c, pair, j->sizes, SIZES_MASK, j->n);
    else if (!strcmp(w, "fill")) DISPATCH(j->c, fill, j->blocks, j->sizes, SIZES_MASK, j->n);
    else if (!strcmp(w, "free-each")) DISPATCH(j->c, free_each, j->blocks, j->perm, j->n);
    else if (!strcmp(w, "destroy")) ctx_close(j->c);
    else if (!strcmp(w, "churn"))
        DISPATCH(j->c, churn, j->blocks, j->perm, j->sizes, SIZES_MASK, j->n);
    else if (!strcmp(w, "stats")) {
        size_t got = rp_pool_stats(j->c->pool, j->stats, j->ntags);
        ESCAPE(got);
        if (got != j->ntags) j->ntags = got;
    }
}

#define NTAGS 64
static char tag_names[NTAGS][16];
static const char *tag_of(size_t i) { return tag_names[i % NTAGS]; }

static void fill_tagged(ctx *c, void **b, const size_t *sz, size_t n)
{
    for (size_t i = 0; i < n; i++) b[i] = rp_alloc(c->pool, sz[i & SIZES_MASK], tag_of(i));
}

static int run_one(const opts *o)
{
    const char *w = o->one;
    enum impl i = (enum impl)o->impl;
    static const char *const known[] = { "pair", "fill", "free-each", "destroy", "churn", "stats" };
    int ok = 0;
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(w, known[k]);
    if (!ok) die("unknown workload '%s' (pair fill free-each destroy churn stats)", w);
    if (!impl_available(i)) die("%s is not available (library not installed?)", impl_name[i]);
    if (!strcmp(w, "free-each") && !can_free(i)) die("%s has no per-block free", impl_name[i]);
    if (!strcmp(w, "churn") && !can_free(i)) die("%s has no per-block free", impl_name[i]);
    if (!strcmp(w, "pair") && !can_free(i)) die("%s has no per-block free", impl_name[i]);
    if (!strcmp(w, "destroy") && !can_destroy(i)) die("%s has no bulk destroy", impl_name[i]);
    if (!strcmp(w, "stats") && !is_rp(i)) die("%s has no per-tag stats", impl_name[i]);

    size_t n = o->count;
    size_t *sizes = make_sizes(o->size);
    ctx c;
    struct job j = { .c = &c, .workload = w, .sizes = sizes, .n = n };
    ctx_open(&c, i);
    size_t nb = !strcmp(w, "churn") ? o->churn_ws : n;
    j.blocks = calloc(nb ? nb : 1, sizeof *j.blocks);
    if (!j.blocks) die("%s", "out of memory for the block table");

    if (!strcmp(w, "pair")) {
        DISPATCH(&c, pair, sizes, SIZES_MASK, n < 1000 ? n : 1000);   /* warm-up */
    } else if (!strcmp(w, "free-each") || !strcmp(w, "destroy")) {
        DISPATCH(&c, fill, j.blocks, sizes, SIZES_MASK, n);
        j.perm = make_perm(n);
        expect_outstanding(&c, n, "after fill");
    } else if (!strcmp(w, "churn")) {
        DISPATCH(&c, fill, j.blocks, sizes, SIZES_MASK, nb);
        j.perm = make_indices(SIZES_LEN, nb);
    } else if (!strcmp(w, "stats")) {
        fill_tagged(&c, j.blocks, sizes, n);
        j.stats = calloc(NTAGS, sizeof *j.stats);
        j.ntags = NTAGS;
        if (!j.stats) die("%s", "out of memory for the stats table");
    }

    rpb_measured(&j);

    if (!strcmp(w, "pair")) expect_outstanding(&c, 0, "after pairs");
    else if (!strcmp(w, "fill")) expect_outstanding(&c, n, "after fill");
    else if (!strcmp(w, "free-each")) expect_outstanding(&c, 0, "after free-each");
    else if (!strcmp(w, "churn")) expect_outstanding(&c, nb, "after churn");
    else if (!strcmp(w, "stats") && j.ntags != (n < NTAGS ? n : NTAGS)) {
        fprintf(stderr, "bench: rp_pool_stats returned %zu tags, expected %d\n",
                j.ntags, (int)(n < NTAGS ? n : NTAGS));
        return 1;
    }
    if (!strcmp(w, "free-each") && i == I_GLIBC) {
        /* nothing left to do */
    } else if (strcmp(w, "destroy")) {
        if (i == I_GLIBC && (!strcmp(w, "fill") || !strcmp(w, "churn")))
            for (size_t k = 0; k < nb; k++) free(j.blocks[k]);
        ctx_close(&c);
    }
    printf("%s %s n=%zu size=%s done\n", w, impl_name[i], n,
           o->size ? "fixed" : "mixed");
    free(j.blocks); free(j.perm); free(j.stats); free(sizes);
    return 0;
}

/* ------------------------------------------------------------ table mode */
static int enabled[I_COUNT];
static int nimpl;
static enum impl order[I_COUNT];

static void print_header(const char *first, const char *unit)
{
    printf("| %s |", first);
    for (int k = 0; k < nimpl; k++) printf(" %s |", impl_name[order[k]]);
    printf("\n|---|");
    for (int k = 0; k < nimpl; k++) printf("---:|");
    printf("\n");
    (void)unit;
}

static void print_cell(double v, double glibc, int have)
{
    if (!have) { printf(" n/a |"); return; }
    if (glibc > 0) printf(" %.1f (%.2fx) |", v, v / glibc);
    else printf(" %.1f |", v);
}

static void section_pair(const opts *o)
{
    static const size_t fixed[] = { 16, 64, 256, 4096, 0 };
    printf("\n### alloc+free pairs: median ns per pair (ratio to glibc), %zu pairs x %d repeats\n\n",
           o->pair_count, o->repeats);
    print_header("size", "ns");
    double *t = malloc((size_t)o->repeats * sizeof *t * I_COUNT);
    if (!t) die("%s", "out of memory");
    for (size_t s = 0; s < sizeof fixed / sizeof *fixed; s++) {
        size_t *sizes = make_sizes(fixed[s]);
        double med[I_COUNT] = { 0 };
        for (int r = 0; r < o->repeats; r++) {
            for (int k = 0; k < nimpl; k++) {
                enum impl i = order[k];
                if (!can_free(i)) continue;
                ctx c;
                ctx_open(&c, i);
                DISPATCH(&c, pair, sizes, SIZES_MASK, 1000);       /* warm-up */
                double t0 = rpb_now_ns();
                DISPATCH(&c, pair, sizes, SIZES_MASK, o->pair_count);
                t[(size_t)i * (size_t)o->repeats + (size_t)r] = (rpb_now_ns() - t0) / (double)o->pair_count;
                expect_outstanding(&c, 0, "after pairs");
                ctx_close(&c);
            }
        }
        for (int k = 0; k < nimpl; k++) {
            enum impl i = order[k];
            if (can_free(i)) med[i] = rpb_median(t + (size_t)i * (size_t)o->repeats, (size_t)o->repeats);
        }
        if (fixed[s]) printf("| %zu |", fixed[s]); else printf("| mixed |");
        for (int k = 0; k < nimpl; k++)
            print_cell(med[order[k]], order[k] == I_GLIBC ? 0 : med[I_GLIBC], can_free(order[k]));
        printf("\n");
        fflush(stdout);
        free(sizes);
    }
    free(t);
}

static void section_bulk(const opts *o)
{
    size_t *sizes = make_sizes(0);
    printf("\n### bulk: N mixed-size blocks, median ns per block over %d repeats\n"
           "alloc = filling the pool; free-each = one by one in random order;\n"
           "destroy = one bulk call; speedup = glibc free-each / destroy\n\n", o->repeats);
    printf("| N | impl | alloc | free-each | destroy | speedup vs glibc free-each |\n");
    printf("|---:|---|---:|---:|---:|---:|\n");
    void **b = malloc(o->max_blocks * sizeof *b);
    if (!b) die("%s", "out of memory for the block table");
    for (size_t n = 1000; n <= o->max_blocks; n *= 10) {
        uint32_t *perm = make_perm(n);
        size_t reps = n >= 1000000 ? 1 : 1000000 / n;
        if (o->quick) reps = 1;
        size_t nr = (size_t)o->repeats;
        double *ta = calloc(I_COUNT * nr, sizeof *ta);
        double *tf = calloc(I_COUNT * nr, sizeof *tf);
        double *td = calloc(I_COUNT * nr, sizeof *td);
        if (!ta || !tf || !td) die("%s", "out of memory");
        for (size_t r = 0; r < nr; r++) {
            for (int k = 0; k < nimpl; k++) {
                enum impl i = order[k];
                double sa = 0, sf = 0, sd = 0;
                for (size_t rep = 0; rep < reps; rep++) {
                    ctx c;
                    /* free-each (where the implementation has it) */
                    if (can_free(i)) {
                        ctx_open(&c, i);
                        double t0 = rpb_now_ns();
                        DISPATCH(&c, fill, b, sizes, SIZES_MASK, n);
                        double t1 = rpb_now_ns();
                        expect_outstanding(&c, n, "after fill");
                        DISPATCH(&c, free_each, b, perm, n);
                        double t2 = rpb_now_ns();
                        expect_outstanding(&c, 0, "after free-each");
                        ctx_close(&c);
                        sa += t1 - t0; sf += t2 - t1;
                    }
                    if (can_destroy(i)) {
                        ctx_open(&c, i);
                        double t0 = rpb_now_ns();
                        DISPATCH(&c, fill, b, sizes, SIZES_MASK, n);
                        double t1 = rpb_now_ns();
                        expect_outstanding(&c, n, "after fill");
                        double t2 = rpb_now_ns();
                        ctx_close(&c);
                        double t3 = rpb_now_ns();
                        if (!can_free(i)) sa += t1 - t0;
                        sd += t3 - t2;
                    }
                }
                double per = (double)n * (double)reps;
                ta[(size_t)i * nr + r] = sa / per;
                tf[(size_t)i * nr + r] = sf / per;
                td[(size_t)i * nr + r] = sd / per;
            }
        }
        double glibc_free = rpb_median(tf + (size_t)I_GLIBC * nr, nr);
        for (int k = 0; k < nimpl; k++) {
            enum impl i = order[k];
            double ma = rpb_median(ta + (size_t)i * nr, nr);
            double mf = rpb_median(tf + (size_t)i * nr, nr);
            double md = rpb_median(td + (size_t)i * nr, nr);
            printf("| %zu | %s | %.1f |", n, impl_name[i], ma);
            if (can_free(i)) printf(" %.1f |", mf); else printf(" n/a |");
            if (can_destroy(i)) printf(" %.2f | %.0fx |\n", md, md > 0 ? glibc_free / md : 0.0);
            else printf(" n/a | |\n");
        }
        fflush(stdout);
        free(ta); free(tf); free(td); free(perm);
    }
    free(b);
    free(sizes);
}

static void section_churn(const opts *o)
{
    size_t *sizes = make_sizes(0);
    size_t ws = o->churn_ws, nr = (size_t)o->repeats;
    uint32_t *idx = make_indices(SIZES_LEN, ws);
    void **slot = malloc(ws * sizeof *slot);
    double *t = calloc(I_COUNT * nr, sizeof *t);
    if (!slot || !t) die("%s", "out of memory");
    printf("\n### churn: working set of %zu mixed-size blocks, %zu random replacements,\n"
           "median ns per replacement (free + alloc) over %d repeats (ratio to glibc)\n\n",
           ws, o->churn_ops, o->repeats);
    print_header("working set", "ns");
    for (size_t r = 0; r < nr; r++) {
        for (int k = 0; k < nimpl; k++) {
            enum impl i = order[k];
            if (!can_free(i)) continue;
            ctx c;
            ctx_open(&c, i);
            DISPATCH(&c, fill, slot, sizes, SIZES_MASK, ws);
            double t0 = rpb_now_ns();
            DISPATCH(&c, churn, slot, idx, sizes, SIZES_MASK, o->churn_ops);
            t[(size_t)i * nr + r] = (rpb_now_ns() - t0) / (double)o->churn_ops;
            expect_outstanding(&c, ws, "after churn");
            if (i == I_GLIBC) for (size_t q = 0; q < ws; q++) free(slot[q]);
            ctx_close(&c);
        }
    }
    double med[I_COUNT] = { 0 };
    for (int k = 0; k < nimpl; k++)
        if (can_free(order[k])) med[order[k]] = rpb_median(t + (size_t)order[k] * nr, nr);
    printf("| %zu |", ws);
    for (int k = 0; k < nimpl; k++)
        print_cell(med[order[k]], order[k] == I_GLIBC ? 0 : med[I_GLIBC], can_free(order[k]));
    printf("\n");
    free(t); free(slot); free(idx); free(sizes);
}

static void section_stats(const opts *o)
{
    size_t n = o->max_blocks;
    size_t *sizes = make_sizes(0);
    void **b = malloc(n * sizeof *b);
    rp_tag_stat st[NTAGS];
    if (!b) die("%s", "out of memory");
    printf("\n### rp_pool_stats with %zu outstanding blocks under %d tags\n"
           "(median and worst of 101 calls; target < 1 ms = 1000 us)\n\n", n, NTAGS);
    printf("| pool | median us | worst us | target |\n|---|---:|---:|---|\n");
    for (int k = 0; k < nimpl; k++) {
        enum impl i = order[k];
        if (!is_rp(i)) continue;
        ctx c;
        ctx_open(&c, i);
        fill_tagged(&c, b, sizes, n);
        expect_outstanding(&c, n, "after fill");
        double t[101];
        for (int r = 0; r < 101; r++) {
            double t0 = rpb_now_ns();
            size_t got = rp_pool_stats(c.pool, st, NTAGS);
            t[r] = (rpb_now_ns() - t0) / 1e3;
            size_t sum = 0;
            for (size_t q = 0; q < got && q < NTAGS; q++) sum += st[q].blocks;
            if (got != NTAGS || sum != n) {
                fprintf(stderr, "bench: rp_pool_stats: %zu tags / %zu blocks, expected %d / %zu\n",
                        got, sum, NTAGS, n);
                exit(1);
            }
        }
        double med = rpb_median(t, 101), worst = t[100];
        printf("| %s | %.2f | %.2f | %s |\n", impl_name[i], med, worst,
               med < 1000 ? "met" : "MISSED");
        ctx_close(&c);
    }
    free(b); free(sizes);
}

/* ------------------------------------------------------------ realloc */
/* Growing one buffer, as string builders and growable arrays do:
     realloc-step    16 B, then +16 B per resize up to 64 KiB (4095 resizes)
     realloc-double  16 B, doubled per resize up to 1 MiB (16 resizes)
   One round allocates the buffer, resizes it all the way (writing its last
   byte after each resize) and frees it; times are per resize, the round's
   alloc and free included. Peers: glibc realloc, mi_heap_realloc, talloc's
   _talloc_realloc (the buffer a child of the round's context, as
   talloc_realloc_size makes it) and jemalloc's rallocx, when their
   libraries load. */
enum { RZ_GLIBC, RZ_RP_UNSYNC, RZ_RP_LOCKED, RZ_ARENA_UNSYNC, RZ_ARENA_LOCKED, RZ_MI, RZ_TA,
       RZ_JE, RZ_COUNT };
static const char *const rz_name[RZ_COUNT] = {
    "glibc", "rp-unsync", "rp-locked", "arena-unsync", "arena-locked", "mimalloc-heap",
    "talloc", "jemalloc"
};
static const enum impl rz_impl[RZ_COUNT] = {
    I_GLIBC, I_RP_UNSYNC, I_RP_LOCKED, I_ARENA_UNSYNC, I_ARENA_LOCKED, I_MIMALLOC, I_TALLOC, I_GLIBC
};
static struct {
    int    mi_ok, ta_ok, je_ok;
    void *(*mi_heap_realloc)(mi_heap_t *, void *, size_t);
    void *(*ta_realloc)(const void *, void *, size_t, const char *);
    void *(*je_mallocx)(size_t, int);
    void *(*je_rallocx)(void *, size_t, int);
    void  (*je_dallocx)(void *, int);
} rz;

static void load_realloc_peers(int note)
{
    load_mimalloc();
    const rpi_peer_sym mi[] = {{"mi_heap_realloc", &rz.mi_heap_realloc}};
    rz.mi_ok = peer.mi_ok &&
               rpi_peer_open("libmimalloc.so.2", mi, RPI_PEER_NSYMS(mi), NULL, 0) != NULL;
    load_talloc();
    const rpi_peer_sym ta[] = {{"_talloc_realloc", &rz.ta_realloc}};
    rz.ta_ok = peer.talloc_ok &&
               rpi_peer_open("libtalloc.so.2", ta, RPI_PEER_NSYMS(ta), NULL, 0) != NULL;
    const rpi_peer_sym je[] = {
        {"mallocx", &rz.je_mallocx}, {"rallocx", &rz.je_rallocx}, {"dallocx", &rz.je_dallocx}};
    rz.je_ok = rpi_peer_open("libjemalloc.so.2", je, RPI_PEER_NSYMS(je), NULL, 0) != NULL;
    if (!rz.je_ok && note)   /* its initial-exec TLS needs room that only a tunable gives */
        fprintf(stderr, "bench: jemalloc not loaded (%s); for it run with "
                "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384\n", dlerror());
}

static int rz_available(int k)
{
    return k == RZ_MI ? rz.mi_ok : k == RZ_TA ? rz.ta_ok : k == RZ_JE ? rz.je_ok : 1;
}

/* one round; returns the number of resizes */
#define RZ_ROUND(ALLOC, RESIZE, FREE, dbl)                                     \
    do {                                                                       \
        size_t lim = (dbl) ? (size_t)1 << 20 : (size_t)64 << 10;               \
        char *p = ALLOC(16);                                                   \
        for (size_t s = 32; s <= lim; s = (dbl) ? s * 2 : s + 16) {            \
            p = RESIZE(p, s);                                                  \
            p[s - 1] = (char)s;                                                \
            ESCAPE(p);                                                         \
        }                                                                      \
        FREE(p);                                                               \
    } while (0)
#define RZ_LOOP(name, ALLOC, RESIZE, FREE)                                     \
    static NOINLINE void rz_##name(ctx *c, int dbl, size_t rounds)             \
    {                                                                          \
        (void)c;                                                               \
        for (size_t r = 0; r < rounds; r++) RZ_ROUND(ALLOC, RESIZE, FREE, dbl); \
    }
#define RZ_A_GLIBC(s)    malloc(s)
#define RZ_R_GLIBC(p, s) realloc((p), (s))
#define RZ_A_RP(s)       rp_alloc(c->pool, (s), TAG)
#define RZ_R_RP(p, s)    rp_resize(c->pool, (p), (s))
#define RZ_A_MI(s)       peer.mi_heap_malloc(c->heap, (s))
#define RZ_R_MI(p, s)    rz.mi_heap_realloc(c->heap, (p), (s))
#define RZ_A_TA(s)       peer.talloc_named_const(c->tctx, (s), TAG)
#define RZ_R_TA(p, s)    rz.ta_realloc(c->tctx, (p), (s), TAG)
#define RZ_F_TA(p)       peer.talloc_free((p), TAG)
#define RZ_A_JE(s)       rz.je_mallocx((s), 0)
#define RZ_R_JE(p, s)    rz.je_rallocx((p), (s), 0)
#define RZ_F_JE(p)       rz.je_dallocx((p), 0)
RZ_LOOP(glibc, RZ_A_GLIBC, RZ_R_GLIBC, free)
RZ_LOOP(rp, RZ_A_RP, RZ_R_RP, rp_free)
RZ_LOOP(mi, RZ_A_MI, RZ_R_MI, peer.mi_free)
RZ_LOOP(ta, RZ_A_TA, RZ_R_TA, RZ_F_TA)
RZ_LOOP(je, RZ_A_JE, RZ_R_JE, RZ_F_JE)

static size_t rz_resizes(int dbl) { return dbl ? 16 : ((size_t)64 << 10) / 16 - 1; }

static void rz_run(int k, ctx *c, int dbl, size_t rounds)
{
    switch (k) {
    case RZ_GLIBC: rz_glibc(c, dbl, rounds); break;
    case RZ_MI:    rz_mi(c, dbl, rounds); break;
    case RZ_TA:    rz_ta(c, dbl, rounds); break;
    case RZ_JE:    rz_je(c, dbl, rounds); break;
    default:       rz_rp(c, dbl, rounds); break;
    }
}

static void section_realloc(const opts *o)
{
    static const char *const wl[2] = { "realloc-step", "realloc-double" };
    load_realloc_peers(1);
    printf("\n### realloc: ns per resize (median of %d interleaved repeats; ratio to glibc)\n",
           o->repeats);
    for (int dbl = 0; dbl < 2; dbl++) {
        size_t rounds = dbl ? (o->quick ? 200 : 20000) : (o->quick ? 5 : 300);
        double t[RZ_COUNT][1001];
        for (int r = 0; r < o->repeats; r++) {
            for (int k = 0; k < RZ_COUNT; k++) {
                if (!rz_available(k) || (rz_impl[k] == I_MIMALLOC && !peer.mi_ok)) continue;
                ctx c;
                ctx_open(&c, rz_impl[k]);
                double t0 = rpb_now_ns();
                rz_run(k, &c, dbl, rounds);
                t[k][r] = (rpb_now_ns() - t0) / (double)(rounds * rz_resizes(dbl));
                expect_outstanding(&c, 0, wl[dbl]);
                ctx_close(&c);
            }
        }
        printf("\n%s (%zu rounds)\n\n| impl | ns/resize | vs glibc |\n|---|---:|---:|\n",
               wl[dbl], rounds);
        double g = rpb_median(t[RZ_GLIBC], (size_t)o->repeats);
        for (int k = 0; k < RZ_COUNT; k++) {
            if (!rz_available(k)) continue;
            double m = rpb_median(t[k], (size_t)o->repeats);
            printf("| %s | %.1f | %.2fx |\n", rz_name[k], m, m / g);
        }
    }
}

/* --one realloc-step|realloc-double --impl NAME --count ROUNDS */
NOINLINE void rpb_measured_realloc(int k, ctx *c, int dbl, size_t rounds);
NOINLINE void rpb_measured_realloc(int k, ctx *c, int dbl, size_t rounds)
{
    rz_run(k, c, dbl, rounds);
}

static int run_realloc_one(const opts *o)
{
    int dbl = !strcmp(o->one, "realloc-double"), k = -1;
    load_realloc_peers(o->impl_str && !strcmp(o->impl_str, "jemalloc"));
    for (int i = 0; i < RZ_COUNT; i++)
        if (!strcmp(o->impl_str, rz_name[i])) k = i;
    if (k < 0) die("realloc workloads run glibc, rp-*, arena-*, mimalloc-heap, talloc, jemalloc; "
                   "not '%s'",
                   o->impl_str);
    if (!rz_available(k)) die("%s is not available (library not installed?)", rz_name[k]);
    ctx c;
    ctx_open(&c, rz_impl[k]);
    rpb_measured_realloc(k, &c, dbl, o->count);
    expect_outstanding(&c, 0, o->one);
    ctx_close(&c);
    printf("resizes %zu\n", o->count * rz_resizes(dbl));
    return 0;
}

/* ------------------------------------------------------------ cold destroy */
/* jemalloc's explicit arenas (mallctl "arenas.create" / "arena.<i>.destroy"),
   the counterpart of a pool or a heap; loaded in the child only. */
static struct {
    int   ok;
    int  (*mallctl)(const char *, void *, size_t *, void *, size_t);
    void *(*mallocx)(size_t, int);
} cj;

static void load_je_arenas(void)
{
    const rpi_peer_sym je[] = {{"mallctl", &cj.mallctl}, {"mallocx", &cj.mallocx}};
    cj.ok = rpi_peer_open("libjemalloc.so.2", je, RPI_PEER_NSYMS(je), NULL, 0) != NULL;
}

static size_t rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

enum { CD_ARENA_UNSYNC, CD_ARENA_LOCKED, CD_ARENA_CHECKED, CD_MI, CD_JE, CD_APR, CD_GLIBC, CD_COUNT };
static const char *const cd_name[CD_COUNT] = {
    "arena-unsync", "arena-locked", "arena-checked", "mimalloc-heap", "jemalloc-arena",
    "apr-pool", "glibc (free each)"
};

/* In a fresh child: fill n, destroy, fill n again; writes 3 doubles
   (destroy ns/block, second fill ns/block, RSS KiB after the destroy). */
/* Runs child(k, n, sizes, fd) in a fresh process, which writes three
   doubles to fd and exits 0; they land in got. Returns 0, or the child's
   wait status (-1 when it wrote fewer bytes). */
static int in_child(void (*child)(int, size_t, const size_t *, int), int k, size_t n,
                    const size_t *sizes, double got[3])
{
    int fd[2];
    if (pipe(fd) != 0) die("%s", "pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("%s", "fork failed");
    if (pid == 0) { close(fd[0]); child(k, n, sizes, fd[1]); _exit(0); }
    close(fd[1]);
    ssize_t m = read(fd[0], got, 3 * sizeof *got);
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return st ? st : -1;
    return m == (ssize_t)(3 * sizeof *got) ? 0 : -1;
}

static void cold_child(int k, size_t n, const size_t *sizes, int fd)
{
    double out[3] = { -1, -1, -1 };
    void **b = malloc(n * sizeof *b);
    if (!b) _exit(3);
    for (int round = 0; round < 2; round++) {
        double t0 = 0, t1 = 0;
        if (k == CD_MI || k == CD_APR || k == CD_GLIBC || k <= CD_ARENA_CHECKED) {
            static const enum impl im[CD_COUNT] = {
                I_ARENA_UNSYNC, I_ARENA_LOCKED, I_ARENA_CHECKED, I_MIMALLOC, I_GLIBC, I_APR, I_GLIBC
            };
            ctx c;
            ctx_open(&c, im[k]);
            t0 = rpb_now_ns();
            DISPATCH(&c, fill, b, sizes, SIZES_MASK, n);
            t1 = rpb_now_ns();
            if (round == 0) {
                double t2 = rpb_now_ns();
                if (k == CD_GLIBC) for (size_t i = 0; i < n; i++) free(b[i]);
                else ctx_close(&c);
                out[0] = (rpb_now_ns() - t2) / (double)n;
                out[2] = (double)rss_kib();
            }
        } else {   /* jemalloc arena */
            unsigned ind = 0;
            size_t sz = sizeof ind;
            if (cj.mallctl("arenas.create", &ind, &sz, NULL, 0) != 0) _exit(4);
            int flags = (int)(((ind + 1) << 20) | (1 << 8));  /* MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE */
            t0 = rpb_now_ns();
            for (size_t i = 0; i < n; i++) { b[i] = cj.mallocx(sizes[i & SIZES_MASK], flags); ESCAPE(b[i]); }
            t1 = rpb_now_ns();
            if (round == 0) {
                char name[64];
                snprintf(name, sizeof name, "arena.%u.destroy", ind);
                double t2 = rpb_now_ns();
                if (cj.mallctl(name, NULL, NULL, NULL, 0) != 0) _exit(5);
                out[0] = (rpb_now_ns() - t2) / (double)n;
                out[2] = (double)rss_kib();
            }
        }
        if (round == 1) out[1] = (t1 - t0) / (double)n;
    }
    if (write(fd, out, sizeof out) != (ssize_t)sizeof out) _exit(6);
    _exit(0);
}

static void section_cold(const opts *o)
{
    size_t n = o->cold_blocks, nr = (size_t)o->repeats;
    size_t *sizes = make_sizes(0);
    int avail[CD_COUNT];
    for (int k = 0; k < CD_COUNT; k++) avail[k] = 1;
    avail[CD_MI] = peer.mi_ok;
    avail[CD_APR] = peer.apr_ok;
    load_je_arenas();
    avail[CD_JE] = cj.ok;
    if (!cj.ok)
        fprintf(stderr, "bench: jemalloc not loaded for the cold section; for it run with "
                "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384\n");
    double (*t)[3] = calloc(CD_COUNT * nr, sizeof *t);
    if (!t) die("%s", "out of memory");
    printf("\n### cold destroy: %zu mixed-size blocks, each run in a fresh process\n"
           "(fill, destroy, fill a new pool; medians of %d interleaved repeats;\n"
           "RINGPOOL_CHUNK_CACHE=%s)\n\n", n, o->repeats,
           getenv("RINGPOOL_CHUNK_CACHE") ? getenv("RINGPOOL_CHUNK_CACHE") : "(unset)");
    printf("| impl | destroy ns/block | next fill ns/block | RSS after destroy MiB |\n"
           "|---|---:|---:|---:|\n");
    fflush(stdout);
    for (size_t r = 0; r < nr; r++) {
        for (int k = 0; k < CD_COUNT; k++) {
            if (!avail[k]) continue;
            double got[3];
            int st = in_child(cold_child, k, n, sizes, got);
            if (st != 0) {
                fprintf(stderr, "bench: cold %s failed (status %d)\n", cd_name[k], st);
                avail[k] = 0;
                continue;
            }
            memcpy(t[(size_t)k * nr + r], got, sizeof got);
        }
    }
    for (int k = 0; k < CD_COUNT; k++) {
        if (!avail[k]) continue;
        double v[3][1001];
        for (int c = 0; c < 3; c++)
            for (size_t r = 0; r < nr; r++) v[c][r] = t[(size_t)k * nr + r][c];
        printf("| %s | %.2f | %.1f | %.1f |\n", cd_name[k], rpb_median(v[0], nr), rpb_median(v[1], nr),
               rpb_median(v[2], nr) / 1024);
    }
    free(t);
    free(sizes);
}

/* ------------------------------------------------------------ bytes per block */
enum { BY_GLIBC, BY_RP_UNSYNC, BY_RP_LOCKED, BY_ARENA_UNSYNC, BY_ARENA_LOCKED, BY_MI, BY_JE,
       BY_COUNT };
static const char *const by_name[BY_COUNT] = {
    "glibc", "rp-unsync", "rp-locked", "arena-unsync", "arena-locked", "mimalloc-heap", "jemalloc"
};

/* In a fresh child: n blocks of sizes[] kept; writes 3 doubles: resident
   bytes per block, bytes asked for per block, reserved bytes per block
   (ringpool; -1 for peers). */
static void bytes_child(int k, size_t n, const size_t *sizes, int fd)
{
    double out[3] = { -1, -1, -1 };
    void **b = malloc(n * sizeof *b);
    if (!b) _exit(3);
    memset(b, 1, n * sizeof *b);          /* resident before the baseline (not 0: that
                                             may become a calloc, which touches nothing) */
    double asked = 0;
    for (size_t i = 0; i < n; i++) asked += (double)sizes[i & SIZES_MASK];
    ctx c;
    memset(&c, 0, sizeof c);
    static const enum impl im[BY_COUNT] = {
        I_GLIBC, I_RP_UNSYNC, I_RP_LOCKED, I_ARENA_UNSYNC, I_ARENA_LOCKED, I_MIMALLOC, I_GLIBC
    };
    if (k != BY_JE) ctx_open(&c, im[k]);
    size_t before = rss_kib();
    if (k == BY_JE) {
        for (size_t i = 0; i < n; i++) { b[i] = cj.mallocx(sizes[i & SIZES_MASK], 0); ESCAPE(b[i]); }
    } else {
        DISPATCH(&c, fill, b, sizes, SIZES_MASK, n);
    }
    for (size_t i = 0; i < n; i++) {   /* used, as a program uses its blocks */
        if (!b[i]) _exit(4);
        memset(b[i], 0x5a, sizes[i & SIZES_MASK]);
    }
    size_t after = rss_kib();
    out[0] = ((double)after - (double)before) * 1024.0 / (double)n;
    out[1] = asked / (double)n;
    if (c.pool) {
        rp_pool_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (rp_pool_get_info(c.pool, &info) != 0) _exit(5);
        out[2] = (double)info.reserved_bytes / (double)n;
    }
    if (write(fd, out, sizeof out) != (ssize_t)sizeof out) _exit(6);
    _exit(0);
}

static void section_bytes(const opts *o)
{
    size_t n = o->bytes_blocks;
    int nr = o->repeats < 3 ? o->repeats : 3;
    int avail[BY_COUNT];
    for (int k = 0; k < BY_COUNT; k++) avail[k] = 1;
    avail[BY_MI] = peer.mi_ok;
    load_je_arenas();
    avail[BY_JE] = cj.ok;
    static const size_t by_size[3] = { 16, 64, 0 };
    printf("\n### bytes per block: %zu blocks kept, each fill in a fresh process\n"
           "(resident set growth over the fill / blocks, from /proc/self/statm, median of %d;\n"
           "x: that over the bytes asked for; ringpool pools: reserved_bytes / blocks in brackets)\n\n"
           "| impl | 16 B | 64 B | mixed |\n|---|---:|---:|---:|\n", n, nr);
    fflush(stdout);
    for (int k = 0; k < BY_COUNT; k++) {
        if (!avail[k]) continue;
        printf("| %s |", by_name[k]);
        for (int z = 0; z < 3; z++) {
            size_t *sizes = make_sizes(by_size[z]);
            double v[3][3];
            int got_all = 1;
            for (int r = 0; r < nr && got_all; r++) {
                double got[3];
                if (in_child(bytes_child, k, n, sizes, got) != 0) {
                    got_all = 0;
                    break;
                }
                for (int c = 0; c < 3; c++) v[c][r] = got[c];
            }
            free(sizes);
            if (!got_all) { printf(" failed |"); continue; }
            double res = rpb_median(v[0], (size_t)nr), asked = v[1][0];
            printf(" %.1f (%.2fx)", res, res / asked);
            if (v[2][0] >= 0) printf(" [%.1f]", rpb_median(v[2], (size_t)nr));
            printf(" |");
        }
        printf("\n");
        fflush(stdout);
    }
}

static void arena_note(void)
{
    ctx c;
    ctx_open(&c, I_ARENA_UNSYNC);
    void *p = rp_alloc(c.pool, 64, TAG);
    rp_pool_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    int rc = rp_pool_get_info(c.pool, &info);
    rp_free(p);
    ctx_close(&c);
    if (rc != 0 || info.chunks == 0)
        printf("\nNote: RP_POOL_ARENA pools report 0 chunks: this core still serves them "
               "with malloc backing.\n");
}

/* $RPB_MEMPROF_RATE: a sampling profile runs during the whole run, with a
   tracker that counts its offers and tracks nothing (docs/memprof.md). */
static size_t memprof_offers;
static void *memprof_count(const rp_memprof_allocation *a, void *data)
{
    (void)a; (void)data;
    memprof_offers++;
    return NULL;
}

static void memprof_from_env(void)
{
    const char *r = getenv("RPB_MEMPROF_RATE");
    if (!r || !*r) return;
    char *end;
    rp_memprof_params p = { .rate = strtod(r, &end), .seed = 42,
                            .tracker = { memprof_count, NULL, NULL } };
    rp_memprof *prof;
    if (*end || rp_memprof_start(&p, &prof) != 0) die("RPB_MEMPROF_RATE: bad rate '%s'", r);
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(argc, argv, &o);
    memprof_from_env();
    for (int t = 0; t < NTAGS; t++) snprintf(tag_names[t], sizeof tag_names[t], "tag%02d", t);

    if (o.one && !strcmp(o.one, "list")) {
        load_mimalloc(); load_talloc(); load_apr();
        for (int i = 0; i < I_COUNT; i++)
            if (impl_available((enum impl)i)) printf("%s\n", impl_name[i]);
        return 0;
    }
    if (o.one && !strncmp(o.one, "realloc-", 8)) return run_realloc_one(&o);
    if (o.one) {
        if (o.impl == I_MIMALLOC) load_mimalloc();
        if (o.impl == I_TALLOC) load_talloc();
        if (o.impl == I_APR) load_apr();
        return run_one(&o);
    }
    if (o.peers) { load_mimalloc(); load_talloc(); load_apr(); }
    for (int i = 0; i < I_TABLE_COUNT; i++) {
        enabled[i] = impl_available((enum impl)i);
        if (enabled[i]) order[nimpl++] = (enum impl)i;
    }
    printf("## ringpool C microbenchmarks (%s)\n", o.quick ? "quick" : "full");
    printf("implementations: ");
    for (int k = 0; k < nimpl; k++) printf("%s%s", k ? ", " : "", impl_name[order[k]]);
    printf("\n");
    arena_note();
    if (o.sections & S_PAIR) section_pair(&o);
    if (o.sections & S_BULK) section_bulk(&o);
    if (o.sections & S_CHURN) section_churn(&o);
    if (o.sections & S_STATS) section_stats(&o);
    if (o.sections & S_REALLOC) section_realloc(&o);
    if (o.sections & S_COLD) section_cold(&o);
    if (o.sections & S_BYTES) section_bytes(&o);
    if (peer.apr_ok) peer.apr_terminate();
    return 0;
}
