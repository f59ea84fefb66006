/*
 * contention.c -- several threads doing alloc+free pairs on ONE shared
 * thread-safe pool, side by side with glibc malloc, mimalloc (mi_malloc) and
 * jemalloc (mallocx), and with a pool per thread.
 *
 *   contention [--threads T]... [--pairs N] [--repeats R] [--size BYTES|mixed]
 *              [--only IMPL]... [--quick] [--no-peers]
 *
 * Each thread runs N pairs { p = alloc(size); free(p); } (sizes from the same
 * fixed-seed mixed distribution as bench.c, or one size), all threads
 * released together by a barrier; the throughput is all threads' pairs over
 * the wall time from the release to the last join, in millions of pairs per
 * second (Mops/s). Every implementation runs once per round, in the same
 * order, rounds interleaved, and the table shows the median of the rounds
 * (and the lowest and highest), with the ratio of medians to glibc's. A
 * second table gives, for the same runs, the threads' CPU time per pair
 * (their CPU clocks over the loop): what a pair costs while its thread
 * runs, which a busy machine disturbs far less than the wall time.
 *
 * Rows:
 *   glibc, mimalloc, jemalloc   the process allocators (per-thread caches)
 *   rp-locked, arena-locked     one shared thread-safe pool (malloc / arena
 *                               backing) made by the main thread, every
 *                               thread allocating from it
 *   rp-locked/creator, arena-locked/creator
 *                               the same, but the pool is made by the first
 *                               thread, which allocates from it too (its
 *                               creator's calls and the others' meet in it)
 *   rp-locked/thread, arena-locked/thread
 *                               one thread-safe pool per thread, made by it
 *   rp-unsync/thread, arena-unsync/thread
 *                               one unsynchronised pool per thread, made by
 *                               it: the cost of a pool without any
 *                               synchronisation
 * After each ringpool run the pool must hold no block and count exactly
 * T*N allocations: a run that lost blocks would measure nothing.
 *
 * jemalloc is loaded with dlopen; its initial-exec TLS needs
 * GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 (make bench-c sets it).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringpool.h"
#include "sizes.h"
#include "../../csrc/peers.h"

#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static const char *const TAG = "contention";

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "contention: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

/* ------------------------------------------------------------ peers */
static struct {
    int   mi_ok, je_ok;
    void *(*mi_malloc)(size_t);
    void  (*mi_free)(void *);
    void *(*je_mallocx)(size_t, int);
    void  (*je_dallocx)(void *, int);
} peer;

static void load_peers(void)
{
    const rpi_peer_sym mi[] = {{"mi_malloc", &peer.mi_malloc}, {"mi_free", &peer.mi_free}};
    peer.mi_ok = rpi_peer_open("libmimalloc.so.2", mi, RPI_PEER_NSYMS(mi), NULL, 0) != NULL;
    const rpi_peer_sym je[] = {{"mallocx", &peer.je_mallocx}, {"dallocx", &peer.je_dallocx}};
    peer.je_ok = rpi_peer_open("libjemalloc.so.2", je, RPI_PEER_NSYMS(je), NULL, 0) != NULL;
    if (!peer.je_ok)
        fprintf(stderr, "contention: jemalloc not loaded (%s); for it run with "
                "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384\n", dlerror());
}

/* ------------------------------------------------------------ implementations */
enum impl { C_GLIBC, C_MI, C_JE, C_RP, C_ARENA, C_RP_CREATOR, C_ARENA_CREATOR, C_RP_EACH,
            C_ARENA_EACH, C_RP_UNSYNC_EACH, C_ARENA_UNSYNC_EACH, C_COUNT };
static const char *const impl_name[C_COUNT] = {
    "glibc", "mimalloc", "jemalloc", "rp-locked", "arena-locked", "rp-locked/creator",
    "arena-locked/creator", "rp-locked/thread", "arena-locked/thread", "rp-unsync/thread", "arena-unsync/thread"
};
static const char *const impl_what[C_COUNT] = {
    "malloc/free", "mi_malloc/mi_free", "mallocx/dallocx", "one shared pool",
    "one shared pool", "one shared pool, made by thread 1", "one shared pool, made by thread 1",
    "a pool per thread", "a pool per thread",
    "an unsynchronised pool per thread", "an unsynchronised pool per thread"
};
static int is_rp(enum impl i) { return i >= C_RP; }
static int per_thread(enum impl i) { return i >= C_RP_EACH; }
static int by_worker(enum impl i) { return i == C_RP_CREATOR || i == C_ARENA_CREATOR; }
static unsigned rp_flags(enum impl i)
{
    unsigned f = (i == C_ARENA || i == C_ARENA_CREATOR || i == C_ARENA_EACH ||
                  i == C_ARENA_UNSYNC_EACH) ? RP_POOL_ARENA : 0;
    return f | ((i == C_RP_UNSYNC_EACH || i == C_ARENA_UNSYNC_EACH) ? RP_POOL_UNSYNC : 0);
}
/* A pool of implementation i, made by the calling thread. */
static rp_pool *make_pool(enum impl i)
{
    rp_pool_options o = { .flags = rp_flags(i), .chunk_size = 0, .keep_bytes = 0 };
    rp_pool *p = rp_pool_create_ex(impl_name[i], &o);
    if (!p) die("rp_pool_create_ex failed for %s", impl_name[i]);
    return p;
}
static unsigned only;   /* --only: bit per impl; 0 = all */
static int available(enum impl i)
{
    if (only && !(only & (1u << i))) return 0;
    return i == C_MI ? peer.mi_ok : i == C_JE ? peer.je_ok : 1;
}

/* ------------------------------------------------------------ inputs */
#define SIZES_LEN ((size_t)1 << 16)
#define SIZES_MASK (SIZES_LEN - 1)

/* size 0: mixed, the distribution of bench.c (40% 8..32, 30% 33..128,
   20% 129..512, 8% 513..2048, 2% 2049..4096 bytes) */
static size_t *make_sizes(size_t size)
{
    size_t *s = malloc(SIZES_LEN * sizeof *s);
    if (!s) die("%s", "out of memory for the size table");
    uint64_t rng_state = RPB_SEED;
    for (size_t i = 0; i < SIZES_LEN; i++)
        s[i] = size ? size : rpb_mixed_size(&rng_state);
    return s;
}

/* ------------------------------------------------------------ one run */
typedef struct worker {
    pthread_t  tid;
    enum impl  impl;
    rp_pool   *pool;
    rp_pool  **made;     /* by_worker: where the first thread puts the pool */
    int        first;    /* the first thread */
    const size_t *sizes;
    size_t     offset;   /* where in the size table this thread starts */
    size_t     n;
    pthread_barrier_t *start;
    double     cpu_ns;   /* the thread's CPU time in its loop */
} worker;

#define LOOP(ALLOC, FREE)                                                      \
    for (size_t k = 0; k < n; k++) {                                           \
        void *p = ALLOC(sz[(k + off) & SIZES_MASK]);                           \
        ESCAPE(p);                                                             \
        FREE(p);                                                               \
    }
#define A_GLIBC(s) malloc(s)
#define A_MI(s)    peer.mi_malloc(s)
#define F_MI(p)    peer.mi_free(p)
#define A_JE(s)    peer.je_mallocx((s), 0)
#define F_JE(p)    peer.je_dallocx((p), 0)
#define A_RP(s)    rp_alloc(pool, (s), TAG)

static double cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *work(void *arg)
{
    worker *w = arg;
    const size_t *sz = w->sizes;
    size_t n = w->n, off = w->offset;
    if (per_thread(w->impl)) {
        /* a pool per thread, created by that thread (the pool's own
           thread takes its fast paths; a shared pool's other threads take
           their shards') */
        w->pool = make_pool(w->impl);
    }
    if (by_worker(w->impl) && w->first) {
        *w->made = make_pool(w->impl);
    }
    pthread_barrier_wait(w->start);
    if (by_worker(w->impl)) w->pool = *w->made;   /* made before the barrier */
    rp_pool *pool = w->pool;
    double c0 = cpu_now_ns();
    switch (w->impl) {
    case C_GLIBC: LOOP(A_GLIBC, free); break;
    case C_MI:    LOOP(A_MI, F_MI); break;
    case C_JE:    LOOP(A_JE, F_JE); break;
    default:      LOOP(A_RP, rp_free); break;
    }
    w->cpu_ns = cpu_now_ns() - c0;
    return NULL;
}

/* A pool after a run: empty, and exactly want allocations counted. */
static void expect_exact(rp_pool *pool, uint64_t want, const char *impl)
{
    rp_pool_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (rp_pool_get_info(pool, &info) != 0 || info.blocks != 0 || info.bytes != 0 ||
        info.allocs != want) {
        fprintf(stderr, "contention: %s: pool holds %zu blocks / %zu bytes and counts %llu "
                "allocations, expected 0 / 0 / %llu\n", impl, info.blocks, info.bytes,
                (unsigned long long)info.allocs, (unsigned long long)want);
        exit(1);
    }
}

/* Mops/s of one run of impl with t threads, n pairs each; *cpu: the
   threads' CPU time per pair, in ns. */
static double run(enum impl impl, int t, size_t n, const size_t *sizes, double *cpu)
{
    worker w[64];
    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, (unsigned)t + 1) != 0) die("%s", "pthread_barrier_init");
    rp_pool *shared = NULL;
    if (is_rp(impl) && !per_thread(impl) && !by_worker(impl)) {
        shared = make_pool(impl);
    }
    for (int i = 0; i < t; i++) {
        w[i].impl = impl;
        w[i].sizes = sizes;
        w[i].offset = (size_t)i * 4099;
        w[i].n = n;
        w[i].start = &start;
        w[i].pool = shared;   /* per-thread pools: made by their thread */
        w[i].made = &shared;
        w[i].first = i == 0;
        if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) die("%s", "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = rpb_now_ns();
    for (int i = 0; i < t; i++) pthread_join(w[i].tid, NULL);
    double dt = rpb_now_ns() - t0;
    pthread_barrier_destroy(&start);
    double cpu_sum = 0;
    for (int i = 0; i < t; i++) cpu_sum += w[i].cpu_ns;
    *cpu = cpu_sum / ((double)t * (double)n);
    if (shared) {
        expect_exact(shared, (uint64_t)t * n, impl_name[impl]);
        rp_pool_destroy(shared);
    }
    if (per_thread(impl)) {
        for (int i = 0; i < t; i++) {
            expect_exact(w[i].pool, n, impl_name[impl]);
            rp_pool_destroy(w[i].pool);
        }
    }
    return (double)t * (double)n / dt * 1e3;   /* pairs per us = Mops/s */
}

/* ------------------------------------------------------------ options */
static size_t parse_count(const char *opt, const char *s, size_t min, size_t max)
{
    if (!s) die("%s needs a value", opt);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v || v < (double)min || v > (double)max ||
        v != (double)(size_t)v) {
        fprintf(stderr, "contention: %s: '%s' is not a whole number in [%zu, %zu]\n", opt, s,
                min, max);
        exit(2);
    }
    return (size_t)v;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: contention [--threads T]... [--pairs N] [--repeats R]\n"
               "                  [--size BYTES|mixed] [--only IMPL]... [--quick] [--no-peers]\n"
               "IMPL: glibc mimalloc jemalloc rp-locked arena-locked rp-locked/creator\n"
               "      arena-locked/creator rp-locked/thread arena-locked/thread\n"
               "      rp-unsync/thread arena-unsync/thread\n"
               "      (glibc always runs: ratios are to it)\n"
               "defaults: --threads 2 --threads 4 --pairs 2000000 --repeats 7 --size 64\n");
}

int main(int argc, char **argv)
{
    int threads[8], nthreads = 0, repeats = 7, peers = 1, quick = 0;
    size_t pairs = 2000000, size = 64;
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(k, "--quick")) { quick = 1; continue; }
        if (!strcmp(k, "--no-peers")) { peers = 0; continue; }
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        a++;
        if (!strcmp(k, "--threads")) {
            if (nthreads == 8) die("%s", "at most 8 --threads options");
            threads[nthreads++] = (int)parse_count(k, v, 1, 64);
        } else if (!strcmp(k, "--pairs")) {
            pairs = parse_count(k, v, 1, (size_t)1 << 36);
        } else if (!strcmp(k, "--repeats")) {
            repeats = (int)parse_count(k, v, 1, 101);
        } else if (!strcmp(k, "--only")) {
            int f = -1;
            for (int i = 0; i < C_COUNT; i++)
                if (v && !strcmp(v, impl_name[i])) f = i;
            if (f < 0) die("--only: unknown implementation '%s'", v ? v : "");
            only |= 1u << f;
        } else if (!strcmp(k, "--size")) {
            size = v && !strcmp(v, "mixed") ? 0 : parse_count(k, v, 1, (size_t)1 << 20);
        } else {
            usage(stderr);
            die("unknown option '%s'", k);
        }
    }
    if (!nthreads) { threads[0] = 2; threads[1] = 4; nthreads = 2; }
    if (only) only |= 1u << C_GLIBC;
    if (quick) { pairs = pairs < 20000 ? pairs : 20000; repeats = repeats < 3 ? repeats : 3; }
    if (peers) load_peers();
    size_t *sizes = make_sizes(size);

    size_t nres = (size_t)C_COUNT * (size_t)nthreads * (size_t)repeats;
    double *res = calloc(nres, sizeof *res), *cpu = calloc(nres, sizeof *cpu);
    if (!res || !cpu) die("%s", "out of memory");
#define AT(i, ti, r) (((size_t)(i) * (size_t)nthreads + (size_t)(ti)) * (size_t)repeats + (size_t)(r))
    for (int r = 0; r < repeats; r++)
        for (int ti = 0; ti < nthreads; ti++)
            for (int i = 0; i < C_COUNT; i++)
                if (available((enum impl)i))
                    res[AT(i, ti, r)] = run((enum impl)i, threads[ti], pairs, sizes, &cpu[AT(i, ti, r)]);

    char sizestr[32];
    if (size) snprintf(sizestr, sizeof sizestr, "%zu B", size);
    else snprintf(sizestr, sizeof sizestr, "mixed sizes");
    /* two tables: throughput (wall), and CPU time per pair (the threads'
       own CPU clocks: what a pair costs when its thread runs, which a busy
       machine disturbs much less than the wall time) */
    for (int table = 0; table < 2; table++) {
        double *tab = table ? cpu : res;
        if (table == 0)
            printf("\n### contention: T threads x %zu alloc+free pairs (%s), Mops/s, median of %d "
                   "interleaved rounds [lowest..highest], ratio of medians to glibc\n\n",
                   pairs, sizestr, repeats);
        else
            printf("\n### the same runs: CPU time per pair in ns (threads' CPU clocks), median "
                   "[lowest..highest], glibc's median over this one (above 1: cheaper)\n\n");
        printf("| impl | what |");
        for (int ti = 0; ti < nthreads; ti++) printf(" %d threads | vs glibc |", threads[ti]);
        printf("\n|---|---|");
        for (int ti = 0; ti < nthreads; ti++) printf("---:|---:|");
        printf("\n");
        double g[8];
        for (int ti = 0; ti < nthreads; ti++) {
            double *v = &tab[AT(C_GLIBC, ti, 0)];
            double *tmp = malloc((size_t)repeats * sizeof *tmp);
            if (!tmp) die("%s", "out of memory");
            memcpy(tmp, v, (size_t)repeats * sizeof *tmp);
            g[ti] = rpb_median(tmp, (size_t)repeats);
            free(tmp);
        }
        for (int i = 0; i < C_COUNT; i++) {
            if (!available((enum impl)i)) continue;
            printf("| %s | %s |", impl_name[i], impl_what[i]);
            for (int ti = 0; ti < nthreads; ti++) {
                double *v = &tab[AT(i, ti, 0)];
                double m = rpb_median(v, (size_t)repeats);   /* sorts v */
                printf(table ? " %.2f [%.2f..%.2f] | %.2fx |" : " %.1f [%.1f..%.1f] | %.2fx |", m,
                       v[0], v[repeats - 1], table ? g[ti] / m : m / g[ti]);
            }
            printf("\n");
        }
    }
    free(cpu);
    free(res);
    free(sizes);
    return 0;
}
