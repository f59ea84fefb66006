/* A workout for the interposer's block table and per-thread counters:
   THREADS threads each keep a large live set of blocks and replace random
   ones for ROUNDS rounds (mixed sizes, page-aligned blocks whose addresses
   share their low bits, calloc and realloc too), through SITES distinct
   call sites, each reached through a recursion 0 to VIA_MAX - 1 calls
   deep (with whole stacks, SITES * VIA_MAX distinct stacks: more than a
   thread's direct-mapped counter slots, so slots change hands). Every other block a thread frees was allocated by the
   next thread (frees from another thread). At the end each thread frees
   all but every seventh of its blocks.
   Prints, per function of this program that allocated, the exact counts
   the report must show:  NAME BLOCKS BYTES ALLOCS ALLOC_BYTES
   usage: table_churn [ROUNDS] [LIVE]
          table_churn foreign N   (N frees of blocks from __libc_malloc)
          table_churn behind N    (N blocks freed by __libc_free, then reused)
          table_churn realloc-fail
          table_churn grow-signal N REPORTS */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 2
#define SITES 192
#define VIA_MAX 32

typedef struct counts {
    long long blocks, bytes, allocs, alloc_bytes;
} counts;

/* One function per call site, so the report names each by its function. */
#define SITE(n)                                                                  \
    static __attribute__((noinline)) void *site_##n(int kind, void *old, size_t size) \
    {                                                                            \
        void *p = NULL;                                                          \
        if (kind == 0)                                                           \
            p = malloc(size);                                                    \
        else if (kind == 1)                                                      \
            p = calloc(1, size);                                                 \
        else if (kind == 2)                                                      \
            p = realloc(old, size);                                              \
        else if (posix_memalign(&p, 4096, size) != 0)                            \
            p = NULL;                                                            \
        return p;                                                                \
    }
#define SITE8(n) SITE(n##0) SITE(n##1) SITE(n##2) SITE(n##3) SITE(n##4) SITE(n##5) SITE(n##6) SITE(n##7)
SITE8(1) SITE8(2) SITE8(3) SITE8(4) SITE8(5) SITE8(6) SITE8(7) SITE8(8) SITE8(9)
SITE8(10) SITE8(11) SITE8(12) SITE8(13) SITE8(14) SITE8(15) SITE8(16) SITE8(17)
SITE8(18) SITE8(19) SITE8(20) SITE8(21) SITE8(22) SITE8(23) SITE8(24)

typedef void *(*site_fn)(int, void *, size_t);
#define REF(n) site_##n,
#define REF8(n) REF(n##0) REF(n##1) REF(n##2) REF(n##3) REF(n##4) REF(n##5) REF(n##6) REF(n##7)
static const site_fn site_fns[SITES] = {
    REF8(1) REF8(2) REF8(3) REF8(4) REF8(5) REF8(6) REF8(7) REF8(8) REF8(9)
    REF8(10) REF8(11) REF8(12) REF8(13) REF8(14) REF8(15) REF8(16) REF8(17)
    REF8(18) REF8(19) REF8(20) REF8(21) REF8(22) REF8(23) REF8(24)
};
static const int site_num[SITES] = {
#define NUM(n) n,
#define NUM8(n) NUM(n##0) NUM(n##1) NUM(n##2) NUM(n##3) NUM(n##4) NUM(n##5) NUM(n##6) NUM(n##7)
    NUM8(1) NUM8(2) NUM8(3) NUM8(4) NUM8(5) NUM8(6) NUM8(7) NUM8(8) NUM8(9)
    NUM8(10) NUM8(11) NUM8(12) NUM8(13) NUM8(14) NUM8(15) NUM8(16) NUM8(17)
    NUM8(18) NUM8(19) NUM8(20) NUM8(21) NUM8(22) NUM8(23) NUM8(24)
};

typedef struct block {
    void *p;
    size_t size;
    int site;
} block;

typedef struct worker {
    int id;
    long rounds, live;
    block *slot;
    counts site[SITES];
    pthread_mutex_t lock;       /* guards slot[] against the neighbour's frees */
} worker;

static worker workers[THREADS];
static pthread_barrier_t start;

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* The owner of a block is the worker whose table it is in; its counts
   follow the site it was allocated at, whoever frees it. */
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;
static counts totals[SITES];

static void note(int site, long long dblocks, long long dbytes, long long allocs, long long abytes)
{
    pthread_mutex_lock(&counts_lock);
    totals[site].blocks += dblocks;
    totals[site].bytes += dbytes;
    totals[site].allocs += allocs;
    totals[site].alloc_bytes += abytes;
    pthread_mutex_unlock(&counts_lock);
}

/* site_fns[site] called depth calls deep: another stack for each depth */
static __attribute__((noinline)) void *via(int depth, int site, int kind, void *old, size_t size)
{
    if (depth > 0) {
        void *p = via(depth - 1, site, kind, old, size);
        __asm__ volatile("" : : "r"(p) : "memory");   /* not a tail call */
        return p;
    }
    return site_fns[site](kind, old, size);
}

static void *run(void *arg)
{
    worker *w = arg;
    worker *other = &workers[(w->id + 1) % THREADS];
    uint32_t x = 2463534242u + 7919u * (uint32_t)w->id;
    pthread_barrier_wait(&start);
    for (long r = 0; r < w->rounds; r++) {
        uint32_t v = next_rand(&x);
        worker *from = (r & 1) ? other : w;   /* every other free: a neighbour's block */
        long k = (long)(next_rand(&x) % (uint32_t)from->live);
        pthread_mutex_lock(&from->lock);
        block b = from->slot[k];
        from->slot[k].p = NULL;
        pthread_mutex_unlock(&from->lock);
        int site = (int)(v % SITES);
        int depth = (int)(next_rand(&x) % VIA_MAX);
        int kind = (v >> 8) % 16 == 0 ? 3 : (int)((v >> 12) % 3);
        size_t size = (v >> 16) % 7 == 0 ? 1 + (v >> 20) % 9000 : 1 + (v >> 20) % 300;
        void *p;
        if (kind == 2 && b.p) {
            /* realloc: the old block's counts leave its site, the new
               block is counted at this site */
            p = via(depth, site, 2, b.p, size);
            if (!p)
                abort();
            note(b.site, -1, -(long long)b.size, 0, 0);
        } else {
            if (b.p) {
                free(b.p);
                note(b.site, -1, -(long long)b.size, 0, 0);
            }
            p = via(depth, site, kind == 2 ? 0 : kind, NULL, size);
            if (!p)
                abort();
        }
        ((unsigned char *)p)[0] = (unsigned char)r;
        note(site, 1, (long long)size, 1, (long long)size);
        pthread_mutex_lock(&from->lock);
        if (from->slot[k].p) {          /* the neighbour refilled it meanwhile */
            pthread_mutex_unlock(&from->lock);
            free(p);
            note(site, -1, -(long long)size, 0, 0);
            continue;
        }
        from->slot[k] = (block){p, size, site};
        pthread_mutex_unlock(&from->lock);
    }
    return NULL;
}

/* Blocks the interposer never saw (glibc's own entry point), freed through
   free before any other allocation: each lookup meets a shard that has no
   table yet or does not hold the address; each must be counted as an
   untracked free and still reach the real free. */
extern void *__libc_malloc(size_t);

static int foreign(long n)
{
    for (long i = 0; i < n; i++) {
        void *p = __libc_malloc((size_t)(16 + i % 200));
        if (!p)
            return 1;
        free(p);
    }
    printf("foreign %ld\n", n);
    return 0;
}

/* Blocks freed behind the interposer's back (glibc's own entry point):
   the table still holds each until the real allocator hands its address
   out again, here at once (same size, same thread), to the next malloc;
   that block replaces the stale entry, so behind_a ends with no block
   outstanding (the report counts the table's entries) and behind_b with
   all of them. Prints how many addresses came back. */
extern void __libc_free(void *);

static __attribute__((noinline)) void *behind_a(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static __attribute__((noinline)) void *behind_b(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static int behind(long n)
{
    long reused = 0;
    for (long i = 0; i < n; i++) {
        void *p = behind_a(48);
        if (!p)
            return 1;
        __libc_free(p);
        void *q = behind_b(48);
        if (!q)
            return 1;
        reused += q == p;     /* q stays allocated */
    }
    printf("behind %ld reused %ld\n", n, reused);
    return 0;
}

/* A realloc that fails leaves its block where it was: still outstanding
   at its first site, nothing counted at the realloc's. */
static __attribute__((noinline)) void *realloc_fails(void *p)
{
    void *q = realloc(p, (size_t)1 << 62);
    __asm__ volatile("" : : "r"(q) : "memory");
    return q;
}

static int realloc_fail(void)
{
    void *p = behind_a(64);
    if (!p || realloc_fails(p) != NULL)
        return 1;
    printf("realloc-fail\n");
    return 0;
}

/* Reports on demand (RINGPOOL_PRELOAD_SIGNAL=USR2, raised by the main
   thread) while another thread grows the block table by N blocks: the
   report counts the table's entries without its locks, so a table being
   replaced must stay readable. The blocks stay allocated. */
static void *grow_blocks(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++)
        if (!behind_b(24))
            abort();
    return NULL;
}

static int grow_signal(long n, int reports)
{
    pthread_t t;
    if (pthread_create(&t, NULL, grow_blocks, &n) != 0)
        return 1;
    for (int i = 0; i < reports; i++)
        raise(SIGUSR2);
    pthread_join(t, NULL);
    printf("grow-signal %ld\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "foreign") == 0)
        return foreign(atol(argv[2]));
    if (argc > 2 && strcmp(argv[1], "behind") == 0)
        return behind(atol(argv[2]));
    if (argc > 1 && strcmp(argv[1], "realloc-fail") == 0)
        return realloc_fail();
    if (argc > 3 && strcmp(argv[1], "grow-signal") == 0)
        return grow_signal(atol(argv[2]), atoi(argv[3]));
    long rounds = argc > 1 ? atol(argv[1]) : 200000;
    long live = argc > 2 ? atol(argv[2]) : 20000;
    if (rounds <= 0 || live <= 0) {
        fprintf(stderr, "table_churn: ROUNDS and LIVE must be positive\n");
        return 2;
    }
    pthread_barrier_init(&start, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        workers[t].id = t;
        workers[t].rounds = rounds;
        workers[t].live = live;
        workers[t].slot = calloc((size_t)live, sizeof(block));
        pthread_mutex_init(&workers[t].lock, NULL);
        if (!workers[t].slot)
            return 1;
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        if (pthread_create(&th[t], NULL, run, &workers[t]) != 0)
            return 1;
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        for (long k = 0; k < live; k++) {
            block b = workers[t].slot[k];
            if (!b.p || k % 7 == 0)
                continue;          /* every seventh stays: the leaks */
            free(b.p);
            note(b.site, -1, -(long long)b.size, 0, 0);
        }
    }
    for (int s = 0; s < SITES; s++)
        if (totals[s].allocs)
            printf("site_%d %lld %lld %lld %lld\n", site_num[s], totals[s].blocks, totals[s].bytes,
                   totals[s].allocs, totals[s].alloc_bytes);
    /* the slot arrays stay allocated too, counted at main's calloc */
    long long slots = (long long)THREADS * live * (long long)sizeof(block);
    printf("main %d %lld %d %lld\n", THREADS, slots, THREADS, slots);
    fflush(stdout);
    return 0;
}
