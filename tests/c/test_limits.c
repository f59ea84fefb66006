/*
 * test_limits.c -- the arena's headerless region and a pool's table of tags
 * at their limits, reached for real in child processes of their own (the
 * limits and RINGPOOL_HEADERLESS are a process's):
 *   - the region's reservation refused: RLIMIT_AS (what `ulimit -v` sets)
 *     below the 1 GiB (3 GiB) it needs;
 *   - a chunk's commit refused: RLIMIT_DATA, past which Linux refuses to
 *     make a private mapping writable (mprotect: ENOMEM), as strict
 *     overcommit does;
 *   - glibc's malloc failing under the same limits while the library's own
 *     memory fails too: out-of-memory by the contract (NULL from _noexc,
 *     the OOM handler from the plain forms), nothing changed;
 *   - a pool's 8,388,608th tag and later ones, past what a headerless
 *     slot's word can index.
 * Every block stays exact throughout (sizes, tags, contents, counters,
 * walks, reports, checks, resizes, reset, destroy), and what is refused
 * comes back when the limit is raised. With the arena backing; the malloc
 * backing runs the out-of-memory part. Under ASan the limits are set above
 * its shadow memory, but out of memory cannot be reached (OOM_REACHABLE);
 * under valgrind the children run natively (tu_spawn execs them).
 */
#include "testutil.h"

#include <stdbool.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_ASAN 1
#endif
#endif
#ifndef TL_ASAN
#define TL_ASAN 0
#endif
/* Under ASan the region's reservation can be refused (RLIMIT_AS above its
   shadow's terabytes) and a chunk's commit too (RLIMIT_DATA), but its
   allocator serves malloc from address space it reserved at start, so out
   of memory is not reached that way, and a new thread needs mappings of
   its own: those parts run in the other builds. */
#define OOM_REACHABLE (!TL_ASAN)

#define NTAGS 5        /* the tags most blocks have */
#define NTAGS_ALL 69   /* and tags first seen when malloc has nothing left */
static const char *tags[NTAGS_ALL] = {"t0", "t1", "t2", "t3", "t4"};
static char new_names[NTAGS_ALL - NTAGS][16];

static void tags_init(void)
{
    for (int i = 0; i < NTAGS_ALL - NTAGS; i++) {
        snprintf(new_names[i], sizeof new_names[i], "new-%d", i);
        tags[NTAGS + i] = new_names[i];
    }
}
#define CHUNK ((size_t)1 << 20)   /* the pools' chunks: room for headed blocks */
#define HL_CHUNK ((size_t)64 << 10)

/* The test's own memory is static: under the limits its malloc fails too. */
typedef struct live { void *p; size_t size; int tag; unsigned seed; } live;
#define MAXLIVE (1u << 20)
static live L[MAXLIVE];
static size_t nl;
static void *walked[MAXLIVE];
static size_t nwalked;
static char text[8u << 20];

/* A child's pool kind: "unsync", "locked" (thread-safe, its creator
   biased), "nobias" (thread-safe, every call locked), "checked". */
static unsigned kind_of(const char *arg)
{
    if (strcmp(arg, "unsync") == 0) return RP_POOL_UNSYNC;
    if (strcmp(arg, "checked") == 0) return RP_POOL_CHECKED;
    if (strcmp(arg, "nobias") == 0) {
        /* thread-safe without the owner's bias: every call takes the lock */
        CHECK(setenv("RINGPOOL_SHARD_BIAS", "0", 1) == 0);
        return 0;
    }
    CHECK(strcmp(arg, "locked") == 0);
    return 0;
}

static rp_pool *pool_with(const char *name, unsigned flags)
{
    return tu_pool_chunk(name, flags, CHUNK);
}

/* A field of /proc/self/status ("VmSize", "VmData"), in bytes. */
static size_t status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t len = strlen(field), kib = 0;
    bool found = false;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kib = strtoul(line + len + 1, NULL, 10);
            found = true;
        }
    fclose(f);
    CHECK(found);
    return kib << 10;
}

/* The soft limit of resource set to bytes (RLIM_INFINITY: back to none). */
static void set_limit(int resource, rlim_t bytes)
{
    struct rlimit r;
    CHECK(getrlimit(resource, &r) == 0);
    r.rlim_cur = bytes;
    CHECK(setrlimit(resource, &r) == 0);
}

/* The bytes of headerless chunks a pool holds: what it reserved beyond its
   chunks (no big blocks where this is called). */
static size_t hl_bytes(rp_pool *pool)
{
    rp_pool_info info = tu_info(pool);
    if (!tu_is_arena()) return 0;
    return info.reserved_bytes - info.chunks * CHUNK;
}

static void fill(live *b)
{
    tu_fill(b->p, b->size, b->seed);
}

/* A block of size and tag t recorded in L (NULL not recorded). */
static void *take(rp_pool *pool, size_t size, int t, bool noexc)
{
    void *p = noexc ? rp_alloc_noexc(pool, size, tags[t]) : rp_alloc(pool, size, tags[t]);
    if (!p) return NULL;
    CHECK(nl < MAXLIVE);
    L[nl] = (live){p, size, t, (unsigned)nl * 7u + 3u};
    fill(&L[nl]);
    nl++;
    return p;
}

static int note(void *block, size_t size, const char *tag, void *arg)
{
    (void)size;
    (void)tag;
    (void)arg;
    CHECK(nwalked < MAXLIVE);
    walked[nwalked++] = block;
    return 0;
}

/* The stats entry of tag (none: 0 blocks, 0 bytes) says blocks and bytes. */
static void check_tag(const rp_tag_stat *st, size_t n, const char *tag, size_t blocks, size_t bytes)
{
    size_t sb = 0, sy = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].tag, tag) == 0) {
            sb = st[i].blocks;
            sy = st[i].bytes;
        }
    CHECK_EQ(sb, blocks);
    CHECK_EQ(sy, bytes);
}

/* The pool holds exactly the blocks of L: each intact, its size, tag and
   pool; the counters, per tag too; a walk sees each once; the check
   passes. Without a report (which needs memory of its own). */
static void check_exact(rp_pool *pool)
{
    size_t bytes = 0, tb[NTAGS_ALL] = {0}, ty[NTAGS_ALL] = {0};
    for (size_t i = 0; i < nl; i++) {
        CHECK(tu_intact(L[i].p, L[i].size, L[i].seed));
        CHECK_EQ(rp_block_size(L[i].p), L[i].size);
        CHECK_STR(rp_block_tag(L[i].p), tags[L[i].tag]);
        CHECK(rp_block_pool(L[i].p) == pool);
        bytes += L[i].size;
        tb[L[i].tag]++;
        ty[L[i].tag] += L[i].size;
    }
    CHECK_COUNTS(pool, nl, bytes);
    rp_tag_stat st[NTAGS_ALL + 8];
    size_t n = rp_pool_stats(pool, st, NTAGS_ALL + 8);
    CHECK(n <= NTAGS_ALL + 8);
    for (int t = 0; t < NTAGS_ALL; t++) check_tag(st, n, tags[t], tb[t], ty[t]);
    rp_pool_info info = tu_info(pool);
    CHECK_EQ(info.blocks, nl);
    CHECK_EQ(info.bytes, bytes);
    nwalked = 0;
    CHECK_INT(rp_pool_walk(pool, note, NULL), 0);
    CHECK_EQ(nwalked, nl);
    qsort(walked, nwalked, sizeof *walked, tu_cmp_ptr);
    for (size_t i = 1; i < nwalked; i++) CHECK(walked[i] != walked[i - 1]);
    for (size_t i = 0; i < nl; i++) {
        void *k = L[i].p;
        CHECK(bsearch(&k, walked, nwalked, sizeof *walked, tu_cmp_ptr) != NULL);
    }
    CHECK_INT(rp_pool_check(pool), 0);
}

/* A report with blocks lists each block of L once. */
static void check_report(rp_pool *pool)
{
    char path[256];
    snprintf(path, sizeof path, "%s/limits-%d.json", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t len = fread(text, 1, sizeof text - 1, f);
    CHECK(len < sizeof text - 1);
    text[len] = '\0';
    fclose(f);
    unlink(path);
    size_t listed = 0;
    for (const char *q = text; (q = strstr(q, "\"address\": ")) != NULL; q++) listed++;
    CHECK_EQ(listed, nl);
    for (size_t i = 0; i < nl; i += 7) {
        char want[128];
        snprintf(want, sizeof want, "\"address\": \"%p\", \"size\": %zu, \"tag\": \"%s\"", L[i].p,
                 L[i].size, tags[L[i].tag]);
        CHECK(strstr(text, want) != NULL);
    }
}

static void drop(size_t i)
{
    L[i] = L[--nl];
}

static void free_all(rp_pool *pool)
{
    while (nl) {
        rp_free(L[nl - 1].p);
        nl--;
    }
    CHECK_COUNTS(pool, 0, 0);
}

/* Sizes of every headerless class, either side of 16 and 64, and headed. */
static const size_t sizes[] = {1, 8, 16, 17, 24, 32, 33, 48, 49, 64, 65, 100, 1000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Blocks of every size (a sampler's check point first), then frees,
   allocations again, resizes across the classes both ways (contents kept),
   callocs, and a reset: exact at each step. expect_hl: whether small
   blocks are headerless (the pool holds chunks of the region). */
static void exercise(rp_pool *pool, bool expect_hl, bool report)
{
    CHECK_EQ(nl, 0);
    (void)take(pool, 24, 0, false);   /* the sampler's check point */
    for (unsigned r = 0; r < 40; r++)
        for (size_t s = 0; s < NSIZES; s++) CHECK(take(pool, sizes[s], (int)((r + s) % NTAGS), false));
    bool checked = tu_info(pool).flags & RP_POOL_CHECKED;
    CHECK_EQ(hl_bytes(pool) != 0, expect_hl && !checked);
    check_exact(pool);
    if (report) check_report(pool);
    /* every third block freed, as many again */
    for (size_t i = 0; i < nl; i += 3) {
        rp_free(L[i].p);
        drop(i);
    }
    for (unsigned r = 0; r < 10; r++)
        for (size_t s = 0; s < NSIZES; s++) CHECK(take(pool, sizes[s], (int)(s % NTAGS), false));
    check_exact(pool);
    /* resizes: each small block to another size within 1..80, some back */
    for (size_t i = 0; i < nl; i++) {
        if (L[i].size > 80) continue;
        size_t to = (L[i].size * 5 + i) % 80 + 1, keep = to < L[i].size ? to : L[i].size;
        unsigned char *q = rp_resize(pool, L[i].p, to);
        CHECK(q != NULL);
        CHECK(tu_intact(q, keep, L[i].seed));
        L[i].p = q;
        L[i].size = to;
        fill(&L[i]);
    }
    check_exact(pool);
    for (unsigned i = 0; i < 50; i++) {
        unsigned char *z = rp_calloc(pool, 1, sizes[i % NSIZES], tags[i % NTAGS]);
        CHECK(z != NULL);
        for (size_t b = 0; b < sizes[i % NSIZES]; b++) CHECK(z[b] == 0);
        L[nl] = (live){z, sizes[i % NSIZES], (int)(i % NTAGS), (unsigned)nl};
        fill(&L[nl]);
        nl++;
    }
    check_exact(pool);
    if (report) check_report(pool);
    CHECK_EQ(hl_bytes(pool) != 0, expect_hl && !checked);
    /* a reset drops every block; the pool serves again */
    CHECK_INT(rp_pool_reset(pool), 0);
    nl = 0;
    check_exact(pool);
    for (size_t s = 0; s < NSIZES; s++) CHECK(take(pool, sizes[s], (int)(s % NTAGS), false));
    check_exact(pool);
    free_all(pool);
    check_exact(pool);
}

/* Pool reset: whether its blocks of 8 bytes are headerless (16 bytes
   apart, the pool holding a chunk of the region) or have a header (32
   bytes apart, no chunk of the region). */
static void expect_small_kind(rp_pool *pool, bool headerless)
{
    CHECK_EQ(nl, 0);
    CHECK_INT(rp_pool_reset(pool), 0);
    (void)take(pool, 8, 0, false);   /* the sampler's check point: a header */
    char *a = take(pool, 8, 1, false), *b = take(pool, 8, 1, false);
    CHECK(a && b);
    /* (a checked pool's blocks have the full header; the malloc backing's
       are malloc's) */
    if (tu_is_arena() && !(tu_info(pool).flags & RP_POOL_CHECKED)) {
        CHECK_EQ((size_t)(b - a), headerless ? 16 : 32);
        CHECK_EQ(hl_bytes(pool), headerless ? HL_CHUNK : 0);
    }
    check_exact(pool);
    free_all(pool);
}

/* What malloc still has, taken (a chain), and given back; and 256 KiB
   set aside before a limit (reserve_take: malloc does not give it back to
   the system, M_TRIM_THRESHOLD), given to malloc when the test needs it to
   have memory again. */
static void *hog, *reserve;
static void reserve_take(void)
{
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    reserve = malloc((size_t)256 << 10);
    CHECK(reserve != NULL);
}
static void hog_all(void)
{
    for (size_t sz = 4096; sz >= 8; sz -= 8)
        for (void **m; (m = malloc(sz)) != NULL;) {
            *m = hog;
            hog = m;
        }
}
static void hog_free(void)
{
    while (hog) {
        void **m = hog;
        hog = *m;
        free(m);
    }
}

/* Out of memory for everything (the limit at what the process has): every
   _noexc call returns NULL with nothing changed, every plain one calls the
   OOM handler (with the call's name), blocks and counters stay exact, a
   report fails cleanly, reset and destroy work. The caller raises the
   limit afterwards. Returns the number of blocks the pool still got
   after the limit (from its chunks' room and the library's caches). */
static size_t exhaust(rp_pool *pool)
{
    volatile size_t got = 0;
    size_t b0, y0, b1, y1;
    for (;;) {
        b0 = rp_pool_outstanding(pool, &y0);
        size_t size = sizes[got % NSIZES];
        void *p = take(pool, size, (int)(got % NTAGS), true);
        if (!p) {
            b1 = rp_pool_outstanding(pool, &y1);
            CHECK_EQ(b1, b0);
            CHECK_EQ(y1, y0);
            /* a request of another size may still be served (a free slot
               or the chunk's room): all sizes must fail before we stop */
            bool any = false;
            for (size_t s = 0; s < NSIZES && !any; s++) any = take(pool, sizes[s], 0, true) != NULL;
            if (!any) break;
        }
        CHECK(++got < MAXLIVE / 2);
    }
    check_exact(pool);
    EXPECT_OOM(rp_alloc(pool, 1000, "t1"));
    CHECK_STR(tu_oom_call, "rp_alloc");
    CHECK_EQ(tu_oom_size, 1000);
    EXPECT_OOM(rp_calloc(pool, 10, 100, "t2"));
    CHECK_STR(tu_oom_call, "rp_calloc");
    CHECK(rp_calloc_noexc(pool, 10, 100, "t2") == NULL);
    /* a block of 100 bytes resized to 1000 (a size just refused) and to 64
       MiB: refused, the block unchanged */
    volatile size_t k = SIZE_MAX;
    for (size_t i = 0; i < nl && k == SIZE_MAX; i++)
        if (L[i].size == 100) k = i;
    CHECK(k != SIZE_MAX);
    CHECK(rp_resize_noexc(pool, L[k].p, 1000) == NULL);
    EXPECT_OOM(rp_resize(pool, L[k].p, 1000));
    CHECK_STR(tu_oom_call, "rp_resize");
    CHECK(rp_resize_noexc(pool, L[k].p, (size_t)64 << 20) == NULL);
    EXPECT_OOM(rp_resize(pool, L[k].p, (size_t)64 << 20));
    EXPECT_OOM(rp_alloc(pool, (size_t)64 << 20, "t4"));
    CHECK(rp_strdup_noexc(pool, "a string of some length, past 16 bytes", "t3") == NULL);
    check_exact(pool);
    /* blocks freed, and what 8-byte blocks the pool can give from them
       (a block shrunk after a move keeps its class: not all can serve)
       freed again: room; malloc drained of what it still had (kept in a
       chain): requests with tags the pool has not seen fail (no record can
       be made) with nothing changed; once malloc has memory again they
       get records (and for headerless slots their index) and the room */
    for (size_t i = 0, freed = 0; i < nl && freed < 20; i++)
        if (L[i].size <= 16) {
            rp_free(L[i].p);
            drop(i);
            freed++;
        }
    volatile size_t room = 0;
    while (take(pool, 8, 0, true)) room++;
    for (size_t i = 0; i < room; i++) rp_free(L[--nl].p);
    hog_all();
    for (int t = NTAGS; t < NTAGS + 8; t++) {
        b0 = rp_pool_outstanding(pool, &y0);
        CHECK(take(pool, 8, t, true) == NULL);
        b1 = rp_pool_outstanding(pool, &y1);
        CHECK_EQ(b1, b0);
        CHECK_EQ(y1, y0);
    }
    EXPECT_OOM(rp_alloc(pool, 8, tags[NTAGS]));
    CHECK_STR(tu_oom_call, "rp_alloc");
    check_exact(pool);
    hog_free();
    free(reserve);
    reserve = NULL;
    size_t with_new = 0;
    for (int t = NTAGS; t < NTAGS_ALL; t++) {
        b0 = rp_pool_outstanding(pool, &y0);
        if (take(pool, 8, t, true)) {
            with_new++;
        } else {
            b1 = rp_pool_outstanding(pool, &y1);
            CHECK_EQ(b1, b0);
            CHECK_EQ(y1, y0);
        }
    }
    /* (a checked pool's freed blocks wait in its quarantine: the room
       measured is not there again at once) */
    if (!(tu_info(pool).flags & RP_POOL_CHECKED))
        CHECK(with_new >= (room < NTAGS_ALL - NTAGS ? room : NTAGS_ALL - NTAGS));
    check_exact(pool);
    /* a report cannot be written without memory: an error code, no crash */
    char path[256];
    snprintf(path, sizeof path, "%s/limits-oom-%d.json",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    int r = rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS);
    CHECK(r == 0 || r == RP_EIO || r == RP_ENOMEM);
    unlink(path);
    check_exact(pool);
    return got;
}

/* A second thread of a thread-safe pool (its shard, or the pool itself
   when no shard can be made): started before a limit, it allocates when
   told (_noexc: under the limit a request may fail, with nothing changed),
   checks and frees half of what it got, and leaves the rest to the main
   thread. */
typedef struct worker {
    pthread_t       th;
    rp_pool        *pool;
    int             go;          /* 1: allocate; 2: done */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    size_t          got, failed;
    void           *left[2048];
    size_t          nleft, left_bytes;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    free(malloc(64));   /* its malloc arena made before the limit */
    pthread_mutex_lock(&w->mu);
    while (w->go != 1) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    static const size_t wsizes[] = {8, 24, 40, 56, 100};
    for (size_t i = 0; i < 4096; i++) {
        size_t size = wsizes[i % 5];
        unsigned char *p = rp_alloc_noexc(w->pool, size, tags[i % NTAGS]);
        if (!p) {
            w->failed++;
            continue;
        }
        w->got++;
        tu_fill(p, size, (unsigned)i);
        if (rp_block_size(p) != size || strcmp(rp_block_tag(p), tags[i % NTAGS]) != 0 ||
            rp_block_pool(p) != w->pool || !tu_intact(p, size, (unsigned)i)) {
            fprintf(stderr, "worker: block %p of %zu bytes is not what was asked for\n",
                    (void *)p, size);
            abort();
        }
        if (i % 2 == 0 && w->nleft < sizeof w->left / sizeof w->left[0]) {
            w->left[w->nleft++] = p;
            w->left_bytes += size;
        } else {
            rp_free(p);
        }
    }
    return NULL;
}

static void worker_start(worker *w, rp_pool *pool)
{
    memset(w, 0, sizeof *w);
    w->pool = pool;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    CHECK(pthread_create(&w->th, NULL, worker_main, w) == 0);
}

/* The worker allocates and ends; the pool holds its blocks left besides
   those of L. They are freed here (from this thread). */
static void worker_run(worker *w, rp_pool *pool)
{
    pthread_mutex_lock(&w->mu);
    w->go = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    CHECK(pthread_join(w->th, NULL) == 0);
    size_t bytes = 0;
    for (size_t i = 0; i < nl; i++) bytes += L[i].size;
    CHECK_COUNTS(pool, nl + w->nleft, bytes + w->left_bytes);
    CHECK_INT(rp_pool_check(pool), 0);
    for (size_t i = 0; i < w->nleft; i++) rp_free(w->left[i]);
    CHECK_COUNTS(pool, nl, bytes);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* ------------------------------------------------ the region refused */

/* Child (RLIMIT_AS 512 MiB above what the process maps: the region's 1 GiB,
   3 GiB with RINGPOOL_HEADERLESS=64, cannot be reserved): pools of the
   kind arg ("unsync", "locked", "checked") get blocks with a header only,
   exact through the whole exercise; then out of memory for everything;
   after the limit is raised the pool serves again (with headers: a region
   refused is not asked for again). */
static void child_no_region(const char *arg)
{
    unsigned kind = kind_of(arg);
    set_limit(RLIMIT_AS, (rlim_t)(status_bytes("VmSize") + ((size_t)512 << 20)));
    rp_pool *pool = pool_with("no-region", kind);
    exercise(pool, false, true);
    expect_small_kind(pool, false);
    rp_pool_destroy(pool);
    pool = pool_with("no-region-2", kind);
    expect_small_kind(pool, false);
    /* the default pool (malloc-backed) alongside */
    rp_stat_create_pool();
    char *s = rp_stat_alloc(8);
    CHECK(s != NULL);
    memset(s, 1, 8);
    /* a thread-safe pool: a second thread allocates too */
    bool threads = !(kind & RP_POOL_UNSYNC) && OOM_REACHABLE;
    static worker w;
    if (threads) worker_start(&w, pool);
    /* now nothing more can be mapped */
    (void)take(pool, 24, 0, false);
    if (OOM_REACHABLE) {
        reserve_take();
        set_limit(RLIMIT_AS, (rlim_t)status_bytes("VmSize"));
        size_t got = exhaust(pool);
        CHECK(rp_stat_alloc_noexc((size_t)64 << 20) == NULL);
        if (threads) worker_run(&w, pool);
        check_exact(pool);
        fprintf(stderr, "no-region %s: %zu blocks after the limit\n", arg, got);
    }
    set_limit(RLIMIT_AS, RLIM_INFINITY);
    for (size_t s2 = 0; s2 < NSIZES; s2++) CHECK(take(pool, sizes[s2], 4, false));
    check_exact(pool);
    if (threads) {
        worker_start(&w, pool);
        worker_run(&w, pool);
        CHECK_EQ(w.failed, 0);
        check_exact(pool);
    }
    char *s3 = rp_stat_resize(s, 100000);
    CHECK(s3 != NULL);
    rp_stat_free(s3);
    rp_stat_destroy_pool();
    free_all(pool);
    rp_pool_destroy(pool);
    pool = pool_with("no-region-3", kind);
    expect_small_kind(pool, false);
    tu_watched = NULL;
    rp_pool_destroy(pool);
    exit(0);
}

/* Child (RLIMIT_AS set at the process's size once the region is
   reserved and a pool has a chunk of it): nothing more can be mapped, but
   chunks of the region are still committed (mprotect maps nothing new), so
   small blocks stay headerless across many new chunks while larger ones
   run out of memory by the contract; exact throughout; a destroyed pool's
   chunks serve the next pool under the limit. arg: a kind (kind_of). */
static void child_region_kept(const char *arg)
{
    unsigned kind = kind_of(arg);
    rp_pool *pool = pool_with("region-kept", kind);
    (void)take(pool, 24, 0, false);   /* the sampler's check point */
    for (int i = 0; i < 10; i++) CHECK(take(pool, 8, 1, false));
    CHECK_EQ(hl_bytes(pool), HL_CHUNK);
    if (OOM_REACHABLE) reserve_take();
    set_limit(RLIMIT_AS, (rlim_t)status_bytes("VmSize"));
    /* 20,000 blocks of 8 bytes: six chunks more, all slots */
    char *prev = NULL;
    size_t apart = 0;
    for (int i = 0; i < 20000; i++) {
        char *p = take(pool, 8, i % NTAGS, false);
        CHECK(p != NULL);
        if (prev && p - prev == 16) apart++;
        prev = p;
    }
    CHECK(apart >= 19990);
    CHECK(hl_bytes(pool) >= 7 * HL_CHUNK);
    check_exact(pool);
    if (OOM_REACHABLE) {
        /* blocks of 1000 bytes until the pool's chunk and malloc are used */
        size_t got = 0, b0, y0, b1, y1;
        for (;;) {
            b0 = rp_pool_outstanding(pool, &y0);
            if (!take(pool, 1000, 2, true)) break;
            CHECK(++got < 100000);
        }
        b1 = rp_pool_outstanding(pool, &y1);
        CHECK_EQ(b1, b0);
        CHECK_EQ(y1, y0);
        EXPECT_OOM(rp_alloc(pool, 1000, "t2"));
        /* small ones still come, as slots */
        for (int i = 0; i < 5000; i++) CHECK(take(pool, 8, 3, false));
        check_exact(pool);
    }
    CHECK_INT(rp_pool_reset(pool), 0);
    nl = 0;
    check_exact(pool);
    rp_pool_destroy(pool);
    /* the next pool takes the spares, under the limit */
    pool = pool_with("region-kept-2", kind);
    (void)take(pool, 24, 0, false);
    char *a = take(pool, 8, 1, false), *b = take(pool, 8, 1, false);
    CHECK(a && b);
    CHECK_EQ((size_t)(b - a), 16);
    CHECK_EQ(hl_bytes(pool), HL_CHUNK);
    check_exact(pool);
    free_all(pool);
    tu_watched = NULL;
    rp_pool_destroy(pool);
    exit(0);
}

/* Child (RINGPOOL_HEADERLESS=64, RLIMIT_AS 2 GiB above what the process
   maps: the 3 GiB region cannot be reserved, its 16-byte slots' part of 1
   GiB can): blocks of 1 to 16 bytes are headerless, of 17 to 64 bytes have
   a header, in a pool made before the reservation and in one made after;
   each exact through the whole exercise. arg: "unsync" or "locked". */
static void child_one_part(const char *arg)
{
    unsigned kind = kind_of(arg);
    set_limit(RLIMIT_AS, (rlim_t)(status_bytes("VmSize") + ((size_t)2 << 30)));
    rp_pool *before = pool_with("one-part-a", kind);
    for (int round = 0; round < 2; round++) {
        rp_pool *pool = round == 0 ? before : pool_with("one-part-b", kind);
        (void)take(pool, 100, 0, false);   /* the sampler's check point */
        static const size_t sz[] = {8, 24, 56, 8}, slot[] = {16, 48, 80, 16};
        for (int i = 0; i < 4; i++) {
            char *x = take(pool, sz[i], 1, false), *y = take(pool, sz[i], 1, false);
            CHECK(x && y);
            if ((size_t)(y - x) != slot[i])
                tu_fail(__FILE__, __LINE__, "%s: blocks of %zu bytes %zu apart, not %zu",
                        rp_pool_name(pool), sz[i], (size_t)(y - x), slot[i]);
        }
        CHECK_EQ(hl_bytes(pool), HL_CHUNK);
        check_exact(pool);
        free_all(pool);
        CHECK_INT(rp_pool_reset(pool), 0);
        exercise(pool, true, true);
        CHECK_EQ(hl_bytes(pool), HL_CHUNK);
        tu_watched = NULL;
        rp_pool_destroy(pool);
    }
    exit(0);
}

/* ------------------------------------------------ the commit refused */

/* Child (RLIMIT_DATA at what the process has: no chunk of the region can
   be made writable, and malloc gets no new memory): the pools' small
   blocks get a header from the room of the chunk they have, exact through
   the whole exercise; a pool that had a chunk of the region keeps its
   slots, and its further blocks get a header; once that room is used up,
   out of memory by the contract. After the limit is raised, a pool that
   had not asked for a chunk gets headerless blocks, and one that had gets
   them after a reset. arg: a kind (kind_of). */
static void child_no_commit(const char *arg)
{
    unsigned kind = kind_of(arg);
    /* a: its first chunk (a block with a header: the sampler's check
       point) and its tags' records; b: a chunk of the region too, with a
       few slots; c: nothing yet */
    rp_pool *a = pool_with("no-commit-a", kind);
    (void)rp_alloc(a, 24, "t0");
    for (int t = 0; t < NTAGS; t++) CHECK(rp_pool_intern_tag(a, tags[t]) != NULL);
    rp_pool *b = pool_with("no-commit-b", kind);
    void *b0 = rp_alloc(b, 24, "t0");
    for (int t = 0; t < NTAGS; t++) CHECK(rp_pool_intern_tag(b, tags[t]) != NULL);
    void *bs[10];
    for (int i = 0; i < 10; i++) CHECK((bs[i] = rp_alloc(b, 8, "t1")) != NULL);
    CHECK_EQ(hl_bytes(b), HL_CHUNK);
    rp_pool *c = pool_with("no-commit-c", kind);
    (void)rp_alloc(c, 24, "t0");
    for (int t = 0; t < NTAGS; t++) CHECK(rp_pool_intern_tag(c, tags[t]) != NULL);
    /* d: a chunk of the region with 50 slots of "t1" */
    rp_pool *d = pool_with("no-commit-d", kind);
    void *d0 = rp_alloc(d, 24, "t0");
    static char *dslots[50];
    for (int i = 0; i < 50; i++) {
        CHECK((dslots[i] = rp_alloc(d, 8, "t1")) != NULL);
        if (i) CHECK_EQ((size_t)(dslots[i] - dslots[i - 1]), 16);
    }
    bool threads = !(kind & RP_POOL_UNSYNC) && OOM_REACHABLE;
    static worker w;
    if (threads) worker_start(&w, a);
    tu_watched = a;
    if (OOM_REACHABLE) reserve_take();
    set_limit(RLIMIT_DATA, (rlim_t)status_bytes("VmData"));
    /* a: small blocks with a header, from its chunk */
    rp_pool_reset(a);
    exercise(a, false, false);
    expect_small_kind(a, false);
    /* a second thread (its shard, if one can be made): out of memory or
       blocks, exact either way */
    if (threads) {
        worker_run(&w, a);
        check_exact(a);
        fprintf(stderr, "no-commit %s: the worker got %zu blocks, %zu refused\n", arg, w.got,
                w.failed);
    }
    /* b: its chunk's slots first, then blocks with a header */
    tu_watched = b;
    for (int i = 0; i < 10; i++) rp_free(bs[i]);
    rp_free(b0);
    size_t apart16 = 0, apart32 = 0;
    char *prev = NULL;
    for (unsigned i = 0; i < 4000; i++) {
        char *p = take(b, 8, (int)(i % NTAGS), false);
        CHECK(p != NULL);
        if (prev && p - prev == 16) apart16++;
        if (prev && p - prev == 32) apart32++;
        prev = p;
    }
    /* a chunk holds 3273 slots of 16 bytes */
    CHECK(apart16 >= 3000);
    CHECK(apart32 >= 600);
    CHECK_EQ(hl_bytes(b), HL_CHUNK);
    check_exact(b);
    /* slots resized to 40 bytes (RINGPOOL_HEADERLESS=64: a 64-byte slot,
       whose chunk cannot be had), 100 and back to 8: blocks with a header,
       contents kept */
    for (size_t i = 0; i < 300; i++) {
        static const size_t to[] = {40, 100, 8};
        for (size_t j = 0; j < 3; j++) {
            size_t keep = to[j] < L[i].size ? to[j] : L[i].size;
            unsigned char *q = rp_resize(b, L[i].p, to[j]);
            CHECK(q != NULL);
            CHECK(tu_intact(q, keep, L[i].seed));
            L[i].p = q;
            L[i].size = to[j];
            fill(&L[i]);
        }
    }
    CHECK_EQ(hl_bytes(b), HL_CHUNK);
    check_exact(b);
    for (size_t i = 0; i < nl; i += 2) {
        rp_free(L[i].p);
        drop(i);
    }
    for (unsigned i = 0; i < 1000; i++) CHECK(take(b, 8 + i % 50, (int)(i % NTAGS), false));
    check_exact(b);
    /* out of memory once the chunk's room is used */
    if (OOM_REACHABLE) {
        size_t got = exhaust(b);
        fprintf(stderr, "no-commit %s: %zu blocks more before out of memory\n", arg, got);
    }
    free_all(b);
    /* d: its chunk's slots used up, a new chunk refused, its 1 MiB chunk
       filled with blocks with a header, malloc refusing another: then
       slots freed serve requests of their class whatever the tag's
       pointer (a pointer the pool has not seen goes the general way,
       which took no free slot once the pool had no chunk to carve: out
       of memory with ten free slots) */
    if (OOM_REACHABLE) {
        tu_watched = d;
        for (;;) {
            void *p = rp_alloc_noexc(d, 8, "t2");
            if (!p) break;
            CHECK(nl < MAXLIVE);
            L[nl++] = (live){p, 8, 2, 0};
        }
        char *freed[10];
        for (int i = 0; i < 10; i++) rp_free(freed[i] = dslots[40 + i]);
        for (int i = 0; i < 10; i++) {
            char name[8];
            memcpy(name, "t1", 3);   /* the content of a tag the pool has */
            char *p = rp_alloc_noexc(d, 8, name);
            if (!p) tu_fail(__FILE__, __LINE__, "no block of 8 bytes with %d free slots", 10 - i);
            bool slot = false;
            for (int j = 0; j < 10; j++) slot |= p == freed[j];
            CHECK(slot);
            CHECK_STR(rp_block_tag(p), "t1");
            CHECK_EQ(rp_block_size(p), 8);
            rp_free(p);
            dslots[40 + i] = rp_alloc_noexc(d, 8, "t1");   /* (the fast way) */
            CHECK(dslots[40 + i] != NULL);
        }
        for (size_t i = 0; i < nl; i++) rp_free(L[i].p);
        nl = 0;
    }
    for (int i = 0; i < 50; i++) rp_free(dslots[i]);
    rp_free(d0);
    CHECK_COUNTS(d, 0, 0);
    CHECK_INT(rp_pool_check(d), 0);
    tu_watched = NULL;
    rp_pool_destroy(d);
    set_limit(RLIMIT_DATA, RLIM_INFINITY);
    /* c asks for its first chunk of the region now: headerless */
    tu_watched = c;
    rp_pool_reset(c);
    expect_small_kind(c, true);
    exercise(c, true, true);
    /* a and b: with a header until a reset, headerless after it */
    tu_watched = a;
    for (int i = 0; i < 100; i++) (void)take(a, 8, 0, false);
    CHECK_EQ(hl_bytes(a), 0);
    check_exact(a);
    if (threads) {
        worker_start(&w, a);
        worker_run(&w, a);
        CHECK_EQ(w.failed, 0);
        check_exact(a);
    }
    free_all(a);
    expect_small_kind(a, true);
    tu_watched = b;
    expect_small_kind(b, true);
    tu_watched = NULL;
    rp_pool_destroy(a);
    rp_pool_destroy(b);
    rp_pool_destroy(c);
    exit(0);
}

/* Child: a checked pool made under RLIMIT_DATA (8 MiB of malloc's memory
   set aside before, given back to it then): the malloc backing's carve
   region (a writable mapping) is refused, blocks are malloc'd; exact
   through the whole exercise, then out of memory by the contract. */
static void child_checked_data(const char *arg)
{
    unsigned kind = kind_of(arg);
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1);
    void *big = malloc((size_t)8 << 20);
    CHECK(big != NULL);
    set_limit(RLIMIT_DATA, (rlim_t)status_bytes("VmData"));
    free(big);
    rp_pool *pool = pool_with("checked-data", kind);
    exercise(pool, false, false);
    (void)take(pool, 24, 0, false);
    size_t got = exhaust(pool);
    fprintf(stderr, "checked-data %s: %zu blocks before out of memory\n", arg, got);
    set_limit(RLIMIT_DATA, RLIM_INFINITY);
    for (size_t s2 = 0; s2 < NSIZES; s2++) CHECK(take(pool, sizes[s2], 4, false));
    check_exact(pool);
    free_all(pool);
    tu_watched = NULL;
    rp_pool_destroy(pool);
    exit(0);
}

/* ------------------------------------------------ reports at the limit */

static void expect_child(const char *child, const char *arg, const char *env);

#define REP_DESTROYED 5000
#define REP_LIVE 300

/* The report file name of pool name for this backing, as the child's
   $RINGPOOL_REPORT gives it. */
static void report_path(char *buf, size_t n, const char *pool)
{
    snprintf(buf, n, "%s/limits-report-%s-%s.json", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             tu_backing_name, pool);
}

/* Child: $RINGPOOL_REPORT (with blocks) set; a pool destroyed and one left
   live at exit, both with small and larger blocks, while nothing more can
   be mapped and malloc has nothing left: the reports are written whole
   (the parent reads them). */
static void child_report_at_limit(const char *arg)
{
    (void)arg;
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s/limits-report-%s-%%n.json",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tu_backing_name);
    CHECK(setenv("RINGPOOL_REPORT", pattern, 1) == 0);
    CHECK(setenv("RINGPOOL_REPORT_BLOCKS", "1", 1) == 0);
    rp_pool *gone = pool_with("lim-destroyed", RP_POOL_UNSYNC);
    rp_pool *live = pool_with("lim-live", 0);
    for (int i = 0; i < REP_DESTROYED; i++) CHECK(rp_alloc(gone, i % 3 ? 8 : 100, tags[i % 2]));
    for (int i = 0; i < REP_LIVE; i++) CHECK(rp_alloc(live, i % 3 ? 40 : 1000, tags[i % 2]));
    set_limit(RLIMIT_AS, (rlim_t)status_bytes("VmSize"));
    if (OOM_REACHABLE) hog_all();
    tu_watched = NULL;
    rp_pool_destroy(gone);
    exit(0);
}

/* What the report of pool says: its blocks' total and the blocks listed. */
static void expect_report(const char *pool, size_t blocks)
{
    char path[256];
    report_path(path, sizeof path, pool);
    FILE *f = fopen(path, "r");
    if (!f) tu_fail(__FILE__, __LINE__, "no report at %s", path);
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    unlink(path);
    char want[64];
    snprintf(want, sizeof want, "\"totals\": {\"blocks\": %zu,", blocks);
    CHECK(strstr(text, want) != NULL);
    size_t listed = 0;
    for (const char *q = text; (q = strstr(q, "\"address\": ")) != NULL; q++) listed++;
    CHECK_EQ(listed, blocks);
    CHECK(strstr(text, "\n}\n") != NULL);   /* whole */
}

static void reports_at_the_limit(void)
{
    if (TL_ASAN) {
        /* (the leak check at exit maps a stack of its own: refused) */
        printf("  reports_at_the_limit: skipped under ASan (its leak check at exit needs a "
               "mapping the limit refuses)\n");
        return;
    }
    expect_child("report-at-limit", NULL, NULL);
    expect_report("lim-destroyed", REP_DESTROYED);
    expect_report("lim-live", REP_LIVE);
    if (!tu_is_arena()) return;
    expect_child("report-at-limit", NULL, "RINGPOOL_HEADERLESS=64");
    expect_report("lim-destroyed", REP_DESTROYED);
    expect_report("lim-live", REP_LIVE);
}

/* ------------------------------------------------ the tag table full */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A headerless slot's word holds its tag's index in the pool's table in 23
   bits: a pool's tags 1 to 8,388,607 (in the order the pool first saw them)
   can have headerless blocks, the later ones get blocks with a header. */
#define TAGS_INDEXED 8388607u
#define NKEEP 5u              /* the tags kept: TAGS_INDEXED - 1 to + 3 */
#define LAST_TAG (TAGS_INDEXED + 3u)

/* 8-byte blocks of tag are headerless: two in a row are a slot (16
   bytes) apart, else a block with its 16-byte header (32); 24-byte ones
   32 apart in slots (RINGPOOL_HEADERLESS=64), else 48. Both pairs
   recorded (tag index t in names). */
static const char *kept[NKEEP];

static void pair_apart(rp_pool *pool, unsigned k, size_t size, size_t slot, size_t headed,
                       bool indexed, live *out, size_t *n)
{
    char *a = rp_alloc(pool, size, kept[k]), *b = rp_alloc(pool, size, kept[k]);
    CHECK(a && b);
    size_t apart = (size_t)(b - a);
    if (apart != (indexed ? slot : headed))
        tu_fail(__FILE__, __LINE__, "tag %u: %zu-byte blocks %zu bytes apart, not %zu",
                TAGS_INDEXED - 1 + k, size, apart, indexed ? slot : headed);
    out[(*n)++] = (live){a, size, (int)k, 0};
    out[(*n)++] = (live){b, size, (int)k, 0};
}

/* The blocks of out exactly: contents, size, tag; when full, counters per
   tag, walk and check too (each of those goes over the pool's 8.4 million
   tag records: half a second). */
static void tags_exact(rp_pool *pool, live *out, size_t n, bool full)
{
    size_t bytes = 0, tb[NKEEP] = {0}, ty[NKEEP] = {0};
    for (size_t i = 0; i < n; i++) {
        CHECK(tu_intact(out[i].p, out[i].size, (unsigned)i));
        CHECK_EQ(rp_block_size(out[i].p), out[i].size);
        CHECK_STR(rp_block_tag(out[i].p), kept[out[i].tag]);
        CHECK(rp_block_pool(out[i].p) == pool);
        bytes += out[i].size;
        tb[out[i].tag]++;
        ty[out[i].tag] += out[i].size;
    }
    if (!full) return;
    CHECK_COUNTS(pool, n, bytes);
    rp_tag_stat st[16];
    size_t nt = rp_pool_stats(pool, st, 16);
    CHECK(nt <= 16);
    for (unsigned k = 0; k < NKEEP; k++) check_tag(st, nt, kept[k], tb[k], ty[k]);
    nwalked = 0;
    CHECK_INT(rp_pool_walk(pool, note, NULL), 0);
    CHECK_EQ(nwalked, n);
    CHECK_INT(rp_pool_check(pool), 0);
}

/* Child (RINGPOOL_HEADERLESS=64): a pool with 8,388,610 tags, made for real
   (rp_pool_intern_tag): blocks of its tags 8,388,606 and 8,388,607 are
   headerless, of 8,388,608 to 8,388,610 have a header; all exact (sizes,
   tags, contents, counters, walks, a report, checks) through resizes
   across the classes, frees and the slots taken again, callocs and a
   reset. arg: "unsync" or "locked". Prints its times. */
static void child_tag_limit(const char *arg)
{
    unsigned kind = kind_of(arg);
    double t0 = seconds();
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = kind | tu_backing;
    o.chunk_size = CHUNK;
    rp_pool *pool = rp_pool_create_ex("tag-limit", &o);
    CHECK(pool != NULL);
    /* tag 1: the sampler's check point; tags 2 to LAST_TAG interned */
    void *first = rp_alloc(pool, 24, "first");
    char name[32];
    for (uint32_t i = 2; i <= LAST_TAG; i++) {
        snprintf(name, sizeof name, "tag-%u", i);
        const char *s = rp_pool_intern_tag(pool, name);
        CHECK(s != NULL);
        if (i >= TAGS_INDEXED - 1) kept[i - (TAGS_INDEXED - 1)] = s;
    }
    double t1 = seconds();
    static live out[64];
    size_t n = 0;
    for (int round = 0; round < 2; round++) {
        for (unsigned k = 0; k < NKEEP; k++) {
            bool indexed = TAGS_INDEXED - 1 + k <= TAGS_INDEXED;
            pair_apart(pool, k, 8, 16, 32, indexed, out, &n);
            pair_apart(pool, k, 24, 32, 48, indexed, out, &n);
        }
        rp_free(first);   /* (the pairs are made: no check point among them) */
        for (size_t i = 0; i < n; i++) tu_fill(out[i].p, out[i].size, (unsigned)i);
        tags_exact(pool, out, n, round == 0);
        if (round == 0) {
            /* a report lists them (the interned tags without blocks are
               not listed) */
            char path[256];
            snprintf(path, sizeof path, "%s/limits-tags-%d.json",
                     getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
            CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
            FILE *f = fopen(path, "r");
            CHECK(f != NULL);
            size_t len = fread(text, 1, sizeof text - 1, f);
            text[len] = '\0';
            fclose(f);
            unlink(path);
            for (size_t i = 0; i < n; i++) {
                char want[128];
                snprintf(want, sizeof want, "\"address\": \"%p\", \"size\": %zu, \"tag\": \"%s\"",
                         out[i].p, out[i].size, kept[out[i].tag]);
                CHECK(strstr(text, want) != NULL);
            }
        }
        /* resizes across the classes and back (the slot of an indexed
           tag, a header past 64 bytes), contents kept */
        static const size_t to[] = {12, 40, 60, 100, 8, 24};
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < sizeof to / sizeof to[0]; j++) {
                size_t keep = to[j] < out[i].size ? to[j] : out[i].size;
                unsigned char *q = rp_resize(pool, out[i].p, to[j]);
                CHECK(q != NULL);
                CHECK(tu_intact(q, keep, (unsigned)i));
                out[i].p = q;
                out[i].size = to[j];
                tu_fill(q, to[j], (unsigned)i);
            }
        }
        tags_exact(pool, out, n, false);
        /* half freed, callocs of every kept tag take their place */
        for (size_t i = 0; i < n; i += 2) {
            rp_free(out[i].p);
            unsigned char *z = rp_calloc(pool, 1, 8 + i % 40, kept[out[i].tag]);
            CHECK(z != NULL);
            for (size_t b = 0; b < 8 + i % 40; b++) CHECK(z[b] == 0);
            out[i].p = z;
            out[i].size = 8 + i % 40;
            tu_fill(z, out[i].size, (unsigned)i);
        }
        tags_exact(pool, out, n, true);
        if (round == 0) {
            /* a reset: the tags stay, and their indexes (none past the
               table's end) */
            CHECK_INT(rp_pool_reset(pool), 0);
            n = 0;
            CHECK_COUNTS(pool, 0, 0);
            first = rp_alloc(pool, 24, "first");   /* a check point again */
        }
    }
    for (size_t i = 0; i < n; i++) rp_free(out[i].p);
    CHECK_COUNTS(pool, 0, 0);
    double t2 = seconds();
    rp_pool_destroy(pool);
    double t3 = seconds();
    printf("  tag-limit %s: %u tags interned in %.2f s, blocks %.2f s, destroy %.2f s\n", arg,
           LAST_TAG, t1 - t0, t2 - t1, t3 - t2);
    exit(0);
}

/* ------------------------------------------------ the cases */

static void expect_child(const char *child, const char *arg, const char *env)
{
    tu_result r;
    tu_spawn(child, arg, env, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        tu_fail(__FILE__, __LINE__, "child '%s %s' (%s) failed: %s", child, arg ? arg : "",
                env ? env : "default environment", r.err);
    /* the library prints nothing for a refused region, commit or memory
       (the out-of-memory handler the children install escapes first) */
    if (strstr(r.err, "ringpool"))
        tu_fail(__FILE__, __LINE__, "child '%s %s' (%s): the library printed: %s", child,
                arg ? arg : "", env ? env : "default environment", r.err);
}

/* Under ASan: what of the children runs. */
static void asan_note(const char *what)
{
    if (TL_ASAN)
        printf("  %s: under ASan the limits refuse the region and the commits, but out of "
               "memory and the second thread are skipped (its allocator serves malloc from "
               "address space it reserved at start)\n",
               what);
}

static void region_refused(void)
{
    asan_note("region_refused");
    static const char *const kinds[] = {"unsync", "locked", "nobias", "checked"};
    for (int k = 0; k < 4; k++) {
        expect_child("no-region", kinds[k], NULL);
        if (tu_is_arena()) expect_child("no-region", kinds[k], "RINGPOOL_HEADERLESS=64");
    }
}

static void region_kept(void)
{
    if (!tu_is_arena()) return;
    asan_note("region_kept");
    expect_child("region-kept", "unsync", NULL);
    expect_child("region-kept", "locked", "RINGPOOL_HEADERLESS=64");
    expect_child("region-kept", "nobias", NULL);
}

/* Checked pools when writable mappings are refused. */
static void checked_under_data_limit(void)
{
    if (!OOM_REACHABLE) {
        printf("  checked_under_data_limit: skipped under ASan (its allocator serves malloc "
               "from address space it reserved at start)\n");
        return;
    }
    expect_child("checked-data", "checked", NULL);
}

/* RINGPOOL_HEADERLESS=64's 3 GiB refused, its first 1 GiB not. */
static void region_in_part(void)
{
    if (!tu_is_arena()) return;
    expect_child("one-part", "unsync", "RINGPOOL_HEADERLESS=64");
    expect_child("one-part", "locked", "RINGPOOL_HEADERLESS=64");
}

static void commit_refused(void)
{
    if (!tu_is_arena()) return;
    asan_note("commit_refused");
    expect_child("no-commit", "unsync", NULL);
    expect_child("no-commit", "locked", NULL);
    expect_child("no-commit", "nobias", NULL);
    expect_child("no-commit", "unsync", "RINGPOOL_HEADERLESS=64");
    expect_child("no-commit", "locked", "RINGPOOL_HEADERLESS=64");
}

/* The tags past the table's end, made for real: about 1.5 GiB and several
   seconds in a child; once (arena backing), not in the memcheck suite's
   run (the child would run natively again) nor under ASan (its allocator
   would take minutes and twice the memory for 8.4 million records). */
static void tags_past_the_index(void)
{
    if (!tu_is_arena()) return;
    if (tu_quick() || TL_ASAN) {
        printf("  tags_past_the_index: skipped in %s (8.4 million tag records: run by the "
               "plain suite)\n", TL_ASAN ? "ASan builds" : "quick runs");
        return;
    }
    expect_child("tag-limit", "locked", "RINGPOOL_HEADERLESS=64");
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"region_refused", region_refused},
        {"region_kept", region_kept},
        {"region_in_part", region_in_part},
        {"commit_refused", commit_refused},
        {"checked_under_data_limit", checked_under_data_limit},
        {"reports_at_the_limit", reports_at_the_limit},
        {"tags_past_the_index", tags_past_the_index},
    };
    static const tu_child children[] = {
        {"no-region", child_no_region},
        {"region-kept", child_region_kept},
        {"one-part", child_one_part},
        {"no-commit", child_no_commit},
        {"checked-data", child_checked_data},
        {"tag-limit", child_tag_limit},
        {"report-at-limit", child_report_at_limit},
    };
    tags_init();
    return tu_main(argc, argv, cases, TU_NCASES(cases), children, TU_NCASES(children));
}
