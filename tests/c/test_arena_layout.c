/*
 * test_arena_layout.c -- what sees the blocks of a pool sees each live block
 * exactly once, whatever the layout: walks, reports, checks, destructors at
 * destroy, per tag, after churn (frees, resizes across classes, big and
 * aligned blocks), with visitors that use the pool, in stack and checked
 * pools, across threads (shards) and in a forked child. With the arena
 * backing, small blocks of unchecked pools have a 16-byte header and are
 * found by chunk, big and aligned ones on the ring: a walk that skipped a
 * chunk or a slot, or counted one twice, fails here. Run once per backing.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTAGS 5
static const char *const tags[NTAGS] = {"t0", "t1", "t2", "t3", "t4"};

static rp_pool *pool_with(const char *name, unsigned flags)
{
    return tu_pool_chunk(name, flags, (size_t)64 << 10);   /* many chunks */
}

/* The live blocks a test expects: address, size, tag index. */
typedef struct live { void *p; size_t size; int tag; } live;

/* What a walk saw. */
typedef struct seen {
    void  **p;
    size_t  n, cap;
    size_t  blocks[NTAGS], bytes[NTAGS];
    int     foreign;   /* tag not one of ours */
} seen;

static int tag_index(const char *tag)
{
    for (int i = 0; i < NTAGS; i++)
        if (strcmp(tag, tags[i]) == 0) return i;
    return -1;
}

static int note(void *block, size_t size, const char *tag, void *arg)
{
    seen *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->p = realloc(s->p, s->cap * sizeof *s->p);
        if (!s->p) abort();
    }
    s->p[s->n++] = block;
    int t = tag_index(tag);
    if (t < 0) {
        s->foreign++;
    } else {
        s->blocks[t]++;
        s->bytes[t] += size;
    }
    return 0;
}

/* The walk of pool saw exactly the n blocks of l, each once, and its per-tag
   sums are rp_pool_stats' figures. */
static void check_walk(rp_pool *pool, live *l, size_t n)
{
    seen s;
    memset(&s, 0, sizeof s);
    CHECK_INT(rp_pool_walk(pool, note, &s), 0);
    CHECK_EQ(s.foreign, 0);
    CHECK_EQ(s.n, n);
    if (s.n) qsort(s.p, s.n, sizeof *s.p, tu_cmp_ptr);
    for (size_t i = 1; i < s.n; i++) CHECK(s.p[i] != s.p[i - 1]);   /* none twice */
    void **want = malloc((n ? n : 1) * sizeof *want);
    CHECK(want != NULL);
    size_t blocks[NTAGS] = {0}, bytes[NTAGS] = {0};
    for (size_t i = 0; i < n; i++) {
        want[i] = l[i].p;
        blocks[l[i].tag]++;
        bytes[l[i].tag] += l[i].size;
    }
    if (n) qsort(want, n, sizeof *want, tu_cmp_ptr);
    for (size_t i = 0; i < n; i++) CHECK(s.p[i] == want[i]);        /* none skipped */
    rp_tag_stat st[NTAGS + 1];
    size_t nt = rp_pool_stats(pool, st, NTAGS + 1);
    CHECK(nt <= NTAGS);
    for (int t = 0; t < NTAGS; t++) {
        CHECK_EQ(s.blocks[t], blocks[t]);
        CHECK_EQ(s.bytes[t], bytes[t]);
        size_t sb = 0, sy = 0;
        for (size_t i = 0; i < nt; i++)
            if (strcmp(st[i].tag, tags[t]) == 0) { sb = st[i].blocks; sy = st[i].bytes; }
        CHECK_EQ(sb, blocks[t]);
        CHECK_EQ(sy, bytes[t]);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    free(want);
    free(s.p);
}

/* A report with blocks lists each live block once, with its size. */
static void check_report(rp_pool *pool, live *l, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "build/ctest/tmp/layout-%d-%s.json", (int)getpid(),
             tu_backing_name);
    CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
    char *text = tu_slurp(path);
    unlink(path);
    size_t listed = 0;
    for (const char *q = text; (q = strstr(q, "\"address\": ")) != NULL; q++) listed++;
    CHECK_EQ(listed, n);
    for (size_t i = 0; i < n; i++) {
        char want[128];
        snprintf(want, sizeof want, "\"address\": \"%p\", \"size\": %zu, \"tag\": \"%s\"", l[i].p,
                 l[i].size, tags[l[i].tag]);
        const char *at = strstr(text, want);
        CHECK(at != NULL);
        CHECK(strstr(at + 1, want) == NULL);
    }
    free(text);
}

/* Sizes that cover the 16-byte steps, the larger classes, zero, big blocks. */
static size_t size_of(unsigned i)
{
    switch (i % 11) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 16;
    case 3: return 17;
    case 4: return 100;
    case 5: return 1000;
    case 6: return 1008 + (i % 3) * 8;
    case 7: return 3000;
    case 8: return 20000;
    case 9: return 40000;   /* big */
    default: return 48;
    }
}

/* A pool after churn: allocations of every kind, a third freed, some
   resized across classes (both ways), some aligned. */
static size_t churn(rp_pool *pool, live *l, unsigned n)
{
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        int t = (int)(i % NTAGS);
        size_t size = size_of(i);
        void *p = i % 97 == 5 ? rp_alloc_aligned(pool, 256, size, tags[t]) : rp_alloc(pool, size, tags[t]);
        CHECK(p != NULL);
        memset(p, (int)(i & 0xff), size);
        l[k++] = (live){p, size, t};
    }
    /* free every third, newest first and oldest first alternately */
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        if (i % 3 == 1) { rp_free(l[i].p); continue; }
        l[m++] = l[i];
    }
    k = m;
    for (size_t i = 0; i < k; i += 4) {
        size_t to = i % 8 == 0 ? l[i].size * 2 + 40 : l[i].size / 3;
        void *r = rp_resize(pool, l[i].p, to);
        CHECK(r != NULL);
        l[i].p = r;
        l[i].size = to;
    }
    return k;
}

static void walk_report_check_after_churn(void)
{
    rp_pool *pool = pool_with("churn", 0);
    unsigned n = tu_quick() ? 600 : 3000;
    live *l = malloc(n * sizeof *l);
    CHECK(l != NULL);
    size_t k = churn(pool, l, n);
    check_walk(pool, l, k);
    check_report(pool, l, k);
    /* allocate again into the freed slots: still each once */
    for (size_t i = 0; i < 200; i++) {
        void *p = rp_alloc(pool, size_of((unsigned)i), tags[i % NTAGS]);
        CHECK(p != NULL);
        l[k++] = (live){p, size_of((unsigned)i), (int)(i % NTAGS)};
    }
    check_walk(pool, l, k);
    for (size_t i = 0; i < k; i++) rp_free(l[i].p);
    check_walk(pool, l, 0);
    free(l);
    tu_end_pool(pool);
}

/* A visitor that frees the block it is given and allocates another of a
   different size: the walk sees each block that was live when it began
   exactly once, and then ends. */
typedef struct churner { rp_pool *pool; seen s; void **fresh; size_t nfresh; } churner;
static int free_and_alloc(void *block, size_t size, const char *tag, void *arg)
{
    churner *c = arg;
    note(block, size, tag, &c->s);
    if (strcmp(tag, "fresh") == 0) return 0;   /* made during the walk: kept */
    rp_free(block);
    void *p = rp_alloc(c->pool, size + 32, "fresh");
    CHECK(p != NULL);
    c->fresh[c->nfresh++] = p;
    return 0;
}

static void visitor_frees_and_allocates(void)
{
    rp_pool *pool = pool_with("visit", 0);
    enum { N = 1500 };
    live l[N];
    for (unsigned i = 0; i < N; i++) {
        size_t size = size_of(i) % 2000;
        l[i] = (live){rp_alloc(pool, size, tags[i % NTAGS]), size, (int)(i % NTAGS)};
        CHECK(l[i].p != NULL);
    }
    churner c;
    memset(&c, 0, sizeof c);
    c.pool = pool;
    c.fresh = malloc(4 * N * sizeof *c.fresh);
    CHECK(c.fresh != NULL);
    CHECK_INT(rp_pool_walk(pool, free_and_alloc, &c), 0);
    /* every original once; blocks made during the walk may or may not be seen */
    CHECK((size_t)c.s.foreign <= c.nfresh);
    size_t originals = 0;
    for (int t = 0; t < NTAGS; t++) originals += c.s.blocks[t];
    CHECK_EQ(originals, N);
    CHECK(c.nfresh >= N && c.nfresh <= 4 * N);
    for (int t = 0; t < NTAGS; t++) {
        size_t want = 0;
        for (unsigned i = 0; i < N; i++) want += l[i].tag == t;
        CHECK_EQ(c.s.blocks[t], want);
    }
    CHECK_EQ(rp_pool_outstanding(pool, NULL), c.nfresh);
    CHECK_INT(rp_pool_check(pool), 0);
    for (size_t i = 0; i < c.nfresh; i++) rp_free(c.fresh[i]);
    free(c.fresh);
    free(c.s.p);
    tu_end_pool(pool);
}

/* Destroy runs the destructor of each live block that has one, once, also
   for blocks resized across classes and for big ones; none of freed ones. */
static void *dtor_seen[4096];
static size_t ndtor;
static void dtor(void *block)
{
    if (ndtor < 4096) dtor_seen[ndtor] = block;
    ndtor++;
}

static void destroy_runs_each_destructor_once(void)
{
    rp_pool *pool = pool_with("dtors", 0);
    enum { N = 1200 };
    void *b[N];
    void *want[N];
    size_t nwant = 0;
    for (unsigned i = 0; i < N; i++) {
        b[i] = rp_alloc(pool, size_of(i), tags[i % NTAGS]);
        CHECK(b[i] != NULL);
        CHECK_INT(rp_set_destructor(b[i], dtor), 0);
    }
    for (unsigned i = 0; i < N; i++) {
        if (i % 4 == 1) {
            rp_free(b[i]);   /* runs its destructor now */
            continue;
        }
        if (i % 4 == 2) b[i] = rp_resize(pool, b[i], size_of(i) + 200);
        CHECK(b[i] != NULL);
        want[nwant++] = b[i];
    }
    ndtor = 0;
    tu_watched = NULL;
    rp_pool_destroy(pool);
    CHECK_EQ(ndtor, nwant);
    qsort(dtor_seen, ndtor, sizeof *dtor_seen, tu_cmp_ptr);
    qsort(want, nwant, sizeof *want, tu_cmp_ptr);
    for (size_t i = 0; i < nwant; i++) CHECK(dtor_seen[i] == want[i]);
}

/* A block grown one class at a time between neighbours, then shrunk:
   contents, tag, counters and the walk follow at every step. */
static void resize_across_classes(void)
{
    rp_pool *pool = pool_with("classes", 0);
    live l[3];
    l[0] = (live){rp_alloc(pool, 24, "t0"), 24, 0};
    l[1] = (live){rp_alloc(pool, 1, "t1"), 1, 1};
    l[2] = (live){rp_alloc(pool, 24, "t2"), 24, 2};
    tu_fill(l[1].p, 1, 9);
    size_t n;
    for (n = 8; n <= 40000; n += n / 2 + 8) {
        void *r = rp_resize(pool, l[1].p, n);
        CHECK(r != NULL);
        CHECK(tu_intact(r, l[1].size, 9));
        tu_fill(r, n, 9);
        l[1].p = r;
        l[1].size = n;
        check_walk(pool, l, 3);
    }
    for (n = l[1].size / 3; n > 0; n /= 3) {
        void *r = rp_resize(pool, l[1].p, n);
        CHECK(r != NULL);
        CHECK(tu_intact(r, n, 9));
        l[1].p = r;
        l[1].size = n;
        check_walk(pool, l, 3);
    }
    for (int i = 0; i < 3; i++) rp_free(l[i].p);
    tu_end_pool(pool);
}

/* Every block size an arena class takes (each size up to 2 KiB, then
   both sides of every 256-byte boundary up to 32 KiB): two blocks of the
   size hold it without touching each other (a class too small for it
   makes the second overwrite the first); a block freed and asked for again
   at the same size comes back at the same address from its class's list
   (arena: the list holds it, LIFO), with its size and tag; the sizes of one class share a slot, a size of the next
   class does not; a walk, the check and the per-tag counters agree with
   the live blocks throughout, and with the pool's peak. */
static size_t next_size(size_t n)
{
    if (n < 2048) return n + 1;
    /* past 2 KiB: both sides of every 256-byte step of the totals with
       the header (n + 15 = 0 mod 256 starts one): a step's first two
       sizes, then its last two */
    size_t r = (n + 15) % 256;
    return r == 1 ? n + 253 : n + 1;
}
static void every_size_freed_and_reused(void)
{
    rp_pool *pool = pool_with("sizes", 0);
    live keep[64];
    size_t nkeep = 0, peak = 0, bytes = 0;
    for (size_t n = 1; n <= 32752; n = next_size(n)) {
        int tag = (int)(n % NTAGS);
        void *p = rp_alloc(pool, n, tags[tag]);
        void *p2 = rp_alloc(pool, n, tags[tag]);   /* its neighbour, when carved */
        CHECK(p != NULL && p2 != NULL);
        tu_fill(p, n, (unsigned)n);
        tu_fill(p2, n, (unsigned)n + 1);
        CHECK(tu_intact(p, n, (unsigned)n));       /* the slots hold n bytes */
        CHECK_EQ(rp_block_size(p), n);
        CHECK(strcmp(rp_block_tag(p), tags[tag]) == 0);
        bytes += 2 * n;
        if (bytes > peak) peak = bytes;
        rp_free(p2);
        rp_free(p);
        bytes -= 2 * n;
        void *q = rp_alloc(pool, n, tags[tag]);
        CHECK(q != NULL);
        if (tu_is_arena()) CHECK(q == p);   /* its class's list gave it back (LIFO) */
        tu_fill(q, n, (unsigned)n);
        CHECK_EQ(rp_block_size(q), n);
        CHECK(strcmp(rp_block_tag(q), tags[tag]) == 0);
        bytes += n;
        if (bytes > peak) peak = bytes;
        if (n % 97 == 0 && nkeep < 64) {
            keep[nkeep++] = (live){q, n, tag};
            check_walk(pool, keep, nkeep);
        } else {
            rp_free(q);
            bytes -= n;
        }
    }
    rp_pool_info info = {.struct_size = sizeof info};
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    CHECK_EQ(info.blocks, nkeep);
    CHECK_EQ(info.bytes, bytes);
    CHECK_EQ(info.peak_bytes, peak);
    check_walk(pool, keep, nkeep);
    if (tu_is_arena()) {
        /* two sizes of one class (1 KiB and past: 256-byte steps) share a
           slot, the next class's size does not */
        void *a = rp_alloc(pool, 3000, "t0");
        rp_free(a);
        void *b = rp_alloc(pool, 3001, "t0");
        CHECK(b == a);
        rp_free(b);
        void *c = rp_alloc(pool, 3600, "t0");
        CHECK(c != a);
        rp_free(c);
    }
    for (size_t i = 0; i < nkeep; i++) {
        CHECK(tu_intact(keep[i].p, keep[i].size, (unsigned)keep[i].size));
        rp_free(keep[i].p);
    }
    check_walk(pool, keep, 0);
    tu_end_pool(pool);
}

/* Stack pools and checked pools see every block too. */
static void stack_and_checked_pools(void)
{
    const unsigned kinds[] = {RP_POOL_STACKS, RP_POOL_CHECKED, RP_POOL_UNSYNC};
    for (size_t j = 0; j < sizeof kinds / sizeof kinds[0]; j++) {
        rp_pool *pool = pool_with("kinds", kinds[j]);
        live l[400];
        size_t k = churn(pool, l, 400);
        check_walk(pool, l, k);
        check_report(pool, l, k);
        for (size_t i = 0; i < k; i++) rp_free(l[i].p);
        tu_end_pool(pool);
    }
}

/* Threads allocating from one shared pool (each through its shard) and
   freeing each other's blocks: walks, stats and checks of the pool cover
   every shard, each block once. */
#define TH 4
#define PER 700
typedef struct thr { rp_pool *pool; int id; live l[PER]; } thr;
static void *thread_alloc(void *arg)
{
    thr *t = arg;
    for (unsigned i = 0; i < PER; i++) {
        size_t size = size_of(i + (unsigned)t->id);
        int tag = (t->id + (int)i) % NTAGS;
        t->l[i] = (live){rp_alloc(t->pool, size, tags[tag]), size, tag};
        if (!t->l[i].p) abort();
    }
    return NULL;
}
static void *thread_free_half(void *arg)
{
    thr *t = arg;   /* frees the even blocks of another thread */
    for (unsigned i = 0; i < PER; i += 2) rp_free(t->l[i].p);
    return NULL;
}

static void threads_share_a_pool(void)
{
    rp_pool *pool = pool_with("shared", 0);
    static thr t[TH];
    pthread_t id[TH];
    for (int i = 0; i < TH; i++) {
        t[i].pool = pool;
        t[i].id = i;
        CHECK_INT(pthread_create(&id[i], NULL, thread_alloc, &t[i]), 0);
    }
    for (int i = 0; i < TH; i++) CHECK_INT(pthread_join(id[i], NULL), 0);
    static live all[TH * PER];
    size_t k = 0;
    for (int i = 0; i < TH; i++)
        for (unsigned j = 0; j < PER; j++) all[k++] = t[i].l[j];
    check_walk(pool, all, k);
    for (int i = 0; i < TH; i++)
        CHECK_INT(pthread_create(&id[i], NULL, thread_free_half, &t[(i + 1) % TH]), 0);
    for (int i = 0; i < TH; i++) CHECK_INT(pthread_join(id[i], NULL), 0);
    k = 0;
    for (int i = 0; i < TH; i++)
        for (unsigned j = 1; j < PER; j += 2) all[k++] = t[i].l[j];
    check_walk(pool, all, k);
    check_report(pool, all, k);
    for (size_t i = 0; i < k; i++) rp_free(all[i].p);
    tu_end_pool(pool);
}

/* A forked child sees the parent's blocks, walks them and frees them. */
static void forked_child_walks(void)
{
    rp_pool *pool = pool_with("fork", 0);
    live l[300];
    size_t k = churn(pool, l, 300);
    int fd[2];
    pid_t pid = tu_fork_answering(fd);
    if (pid == 0) {
        check_walk(pool, l, k);
        for (size_t i = 0; i < k; i++) rp_free(l[i].p);
        tu_child_answer(fd[1], rp_pool_outstanding(pool, NULL) == 0 && rp_pool_check(pool) == 0
                                   ? 'y' : 'n');
    }
    int status;
    CHECK(tu_child_verdict(pid, fd[0], fd[1], 0, &status) == 'y');
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    check_walk(pool, l, k);   /* the parent's pool is untouched */
    for (size_t i = 0; i < k; i++) rp_free(l[i].p);
    tu_end_pool(pool);
}

/* Bytes held per 16-byte block: with the arena, a headerless 16-byte slot
   and its 4-byte word in the chunk, so at most 1.5x (24 bytes). */
static void bytes_per_small_block(void)
{
    if (!tu_is_arena()) return;
    rp_pool *pool = pool_with("small", RP_POOL_UNSYNC);
    enum { N = 100000 };
    void **b = malloc(N * sizeof *b);
    CHECK(b != NULL);
    for (unsigned i = 0; i < N; i++) CHECK((b[i] = rp_alloc(pool, 16, "s")) != NULL);
    rp_pool_info in = tu_info(pool);
    printf("     %u blocks of 16 bytes: %zu bytes reserved (%.2fx)\n", (unsigned)N,
           in.reserved_bytes, (double)in.reserved_bytes / (16.0 * N));
    CHECK(in.reserved_bytes <= (size_t)N * 16 * 150 / 100);
    for (unsigned i = 0; i < N; i++) CHECK(((uintptr_t)b[i] & 15) == 0);
    for (unsigned i = 0; i < N; i++) rp_free(b[i]);
    free(b);
    tu_end_pool(pool);
}

/* Headerless blocks (1 to 16 bytes in unchecked arena pools): size, tag,
   pool, counters and walks through resizes in place, to a block with a
   header and back, with a destructor, with thread-safe and unsynchronised
   pools, and while a checked pool exists (then rp_free and rp_resize take
   the registry's path first). */
static void headerless_blocks_resize_and_query(void)
{
    const unsigned kinds[] = {RP_POOL_UNSYNC, 0};
    for (size_t j = 0; j < 2; j++)
        for (int with_checked = 0; with_checked <= 1; with_checked++) {
            rp_pool *cp = NULL;
            if (with_checked) {
                rp_pool_options o;
                memset(&o, 0, sizeof o);
                o.flags = RP_POOL_CHECKED | tu_backing;
                cp = rp_pool_create_ex("checked-beside", &o);
                CHECK(cp != NULL);
            }
            rp_pool *pool = pool_with("hl", kinds[j]);
            live l[4];
            l[0] = (live){rp_alloc(pool, 1, "t0"), 1, 0};
            l[1] = (live){rp_alloc(pool, 16, "t1"), 16, 1};
            l[2] = (live){rp_calloc(pool, 2, 5, "t2"), 10, 2};
            l[3] = (live){rp_strdup(pool, "headerless", "t3"), 11, 3};
            for (int i = 0; i < 4; i++) {
                CHECK(l[i].p != NULL);
                CHECK(((uintptr_t)l[i].p & 15) == 0);
                CHECK_EQ(rp_block_size(l[i].p), l[i].size);
                CHECK_STR(rp_block_tag(l[i].p), tags[l[i].tag]);
                CHECK(rp_block_pool(l[i].p) == pool);
            }
            CHECK_STR((char *)l[3].p, "headerless");
            check_walk(pool, l, 4);
            /* in place within the slot, both ways */
            tu_fill(l[0].p, 1, 4);
            void *r = rp_resize(pool, l[0].p, 16);
            if (tu_is_arena()) CHECK(r == l[0].p);
            CHECK(tu_intact(r, 1, 4));
            l[0] = (live){r, 16, 0};
            CHECK_EQ(rp_block_size(r), 16);
            check_walk(pool, l, 4);
            /* out of the slot (a block with a header), then back to 5 bytes */
            tu_fill(r, 16, 4);
            r = rp_resize(pool, r, 100);
            CHECK(r != NULL);
            CHECK(tu_intact(r, 16, 4));
            l[0] = (live){r, 100, 0};
            check_walk(pool, l, 4);
            r = rp_resize(pool, r, 5);
            CHECK(tu_intact(r, 5, 4));
            l[0] = (live){r, 5, 0};
            check_walk(pool, l, 4);
            /* the wrong pool */
            rp_pool *other = pool_with("hl-other", 0);
            rp_error_handler prev = rp_set_error_handler(tu_record_error);
            tu_errors_reset();
            CHECK(rp_resize(other, l[1].p, 8) == NULL);
            CHECK_ONE_ERROR(RP_EWRONGPOOL);
            rp_set_error_handler(prev);
            rp_pool_destroy(other);
            tu_watched = pool;
            CHECK_EQ(rp_block_size(l[1].p), 16);
            /* a destructor runs at the free, the block still readable */
            ndtor = 0;
            CHECK_INT(rp_set_destructor(l[2].p, dtor), 0);
            rp_free(l[2].p);
            CHECK_EQ(ndtor, 1);
            CHECK(dtor_seen[0] == l[2].p);
            l[2] = l[3];
            check_walk(pool, l, 3);
            rp_tag_stat st[8];
            size_t nt = rp_pool_stats(pool, st, 8);
            CHECK_EQ(nt, 4);
            for (size_t i = 0; i < nt; i++) {
                if (strcmp(st[i].tag, "t2") == 0) {
                    CHECK_EQ(st[i].blocks, 0);
                    CHECK_EQ(st[i].allocs, 1);
                }
                if (strcmp(st[i].tag, "t1") == 0) CHECK_EQ(st[i].bytes, 16);
            }
            CHECK_INT(rp_pool_check(pool), 0);
            for (int i = 0; i < 3; i++) rp_free(l[i].p);
            CHECK_COUNTS(pool, 0, 0);
            tu_end_pool(pool);
            if (cp) rp_pool_destroy(cp);
        }
}

/* p, a block of pool's already freed: freeing it again, resizing it,
   asking for its pool and giving it a destructor each report one double
   free and change nothing (errors recorded by tu_record_error). */
static void check_freed_refused(rp_pool *pool, void *p)
{
    rp_free(p);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK(rp_resize(pool, p, 4) == NULL);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK(rp_block_pool(p) == NULL);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK_INT(rp_set_destructor(p, dtor), RP_EINVAL);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
}

/* Pointers a headerless block's neighbourhood offers: each is reported
   once with its code and changes nothing. */
static void headerless_bad_pointers(void)
{
    if (!tu_is_arena()) return;
    rp_pool *pool = pool_with("hl-bad", 0);
    /* a pool's first allocation is a check point of the sampler: a block
       with a header; the next small ones are headerless */
    void *first = rp_alloc(pool, 16, "t0");
    char *p = rp_alloc(pool, 16, "t0");
    char *q = rp_alloc(pool, 8, "t1");
    CHECK(p != NULL && q != NULL);
    uintptr_t chunk = (uintptr_t)p & ~(uintptr_t)0xffff;   /* 64 KiB chunks */
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    /* inside a live block */
    rp_free(p + 8);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK(rp_resize(pool, p + 1, 4) == NULL);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK_EQ(rp_block_size(q + 4), 0);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    /* the chunk's own words, and memory of the region no pool has */
    rp_free((void *)(chunk + 64));
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_free((void *)(chunk + ((size_t)256 << 20)));
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK(rp_block_tag((void *)(chunk + ((size_t)256 << 20))) == NULL);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    /* a slot's place in a chunk no pool took (past any first slot: rp_free
       reads its word, 0), and the last slot of this chunk (not carved) */
    rp_free((void *)(chunk + ((size_t)256 << 20) + 0x8000));
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_free((void *)(chunk + 0xfff0));
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    /* a slot not carved yet, then a double free */
    rp_free(q + 16 * 40);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK_COUNTS(pool, 3, 40);
    rp_free(q);
    CHECK_INT(tu_err_count, 0);
    check_freed_refused(pool, q);
    CHECK_COUNTS(pool, 2, 32);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_set_error_handler(prev);
    rp_free(p);
    rp_free(first);
    tu_end_pool(pool);
}

/* A reset empties the headerless chunks (given back to the region's spares,
   taken again by the next small blocks), a destroy gives them to the next
   pool; walks and counters start from nothing. */
static void headerless_reset_and_reuse(void)
{
    rp_pool *pool = pool_with("hl-reset", 0);
    enum { N = 10000 };
    static live l[N];
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < N; i++) {
            size_t size = 1 + i % 16;
            l[i] = (live){rp_alloc(pool, size, tags[i % NTAGS]), size, (int)(i % NTAGS)};
            CHECK(l[i].p != NULL);
            memset(l[i].p, (int)i, size);
        }
        check_walk(pool, l, N);
        CHECK_INT(rp_pool_check(pool), 0);
        CHECK_INT(rp_pool_reset(pool), 0);
        check_walk(pool, l, 0);
        CHECK_COUNTS(pool, 0, 0);
    }
    tu_end_pool(pool);
    pool = pool_with("hl-next", RP_POOL_UNSYNC);
    for (unsigned i = 0; i < N; i++) {
        l[i] = (live){rp_alloc(pool, 16, "t4"), 16, 4};
        CHECK(l[i].p != NULL);
    }
    check_walk(pool, l, N);
    for (unsigned i = 0; i < N; i += 2) rp_free(l[i].p);
    for (unsigned i = 0; i < N / 2; i++) l[i] = l[2 * i + 1];
    check_walk(pool, l, N / 2);
    for (unsigned i = 0; i < N / 2; i++) rp_free(l[i].p);
    tu_end_pool(pool);
}

/* Sampled allocations of 1 to 16 bytes while the pool has free headerless
   slots and a chunk to carve from (the allocation path takes those without
   a call, and hands a due sample to the general path: a block with a
   header): every block and byte is counted once, the tracker sees every
   sampled block go, and the free slots are taken again afterwards. */
static size_t smp_allocs, smp_deallocs;
static void *smp_alloc(const rp_memprof_allocation *a, void *data)
{
    (void)data;
    smp_allocs++;
    return a->block;
}
static void smp_dealloc(void *user, void *data)
{
    (void)user;
    (void)data;
    smp_deallocs++;
}
static void sampled_small_blocks_among_free_slots(void)
{
    rp_pool *pool = pool_with("hl-sampled", 0);
    enum { N = 3000 };
    static void *b[N];
    size_t bytes = 0;
    for (unsigned i = 0; i < N; i++) CHECK((b[i] = rp_alloc(pool, 1 + i % 16, "t0")) != NULL);
    for (unsigned i = 0; i < N; i += 2) rp_free(b[i]);   /* free slots, every other one */
    rp_memprof_params mp;
    memset(&mp, 0, sizeof mp);
    mp.rate = 1.0 / 64;
    mp.seed = 12345;
    mp.tracker.alloc = smp_alloc;
    mp.tracker.dealloc = smp_dealloc;
    rp_memprof *prof = NULL;
    smp_allocs = smp_deallocs = 0;
    CHECK_INT(rp_memprof_start(&mp, &prof), 0);
    /* as many again as were freed, then as many beyond (carved) */
    for (unsigned i = 0; i < N; i += 2) CHECK((b[i] = rp_alloc(pool, 1 + (i * 7) % 16, "t1")) != NULL);
    for (unsigned i = 0; i < N; i++) {
        size_t n = i % 2 ? 1 + i % 16 : 1 + (i * 7) % 16;
        CHECK_EQ(rp_block_size(b[i]), n);
        CHECK(strcmp(rp_block_tag(b[i]), i % 2 ? "t0" : "t1") == 0);
        memset(b[i], 0x5a, n);
        bytes += n;
    }
    CHECK(smp_allocs > 0 && smp_allocs < N / 2);   /* about 1 in 8 of 8-byte blocks */
    CHECK_COUNTS(pool, N, bytes);
    CHECK_INT(rp_pool_check(pool), 0);
    for (unsigned i = 0; i < N; i++) rp_free(b[i]);
    CHECK_COUNTS(pool, 0, 0);
    CHECK_EQ(smp_deallocs, smp_allocs);
    CHECK_INT(rp_memprof_stop(), 0);
    CHECK_INT(rp_memprof_discard(prof), 0);
    /* the slots come back without the sampler */
    for (unsigned i = 0; i < N; i++) CHECK((b[i] = rp_alloc(pool, 16, "t2")) != NULL);
    CHECK_COUNTS(pool, N, (size_t)N * 16);
    for (unsigned i = 0; i < N; i++) rp_free(b[i]);
    tu_end_pool(pool);
}

/* A destroyed pool's headerless chunks go to the region's spares with their
   slot words as they were: a pointer still held into one is reported as
   foreign (no pool has the chunk), for each kind of pool, and nothing
   breaks. */
static void stale_small_block_after_destroy(void)
{
    if (!tu_is_arena()) return;
    const unsigned kinds[] = {RP_POOL_UNSYNC, 0};
    for (size_t j = 0; j < 2; j++) {
        rp_pool *pool = pool_with("hl-stale", kinds[j]);
        void *first = rp_alloc(pool, 8, "t0");   /* the sampler's check point */
        char *p = rp_alloc(pool, 8, "t0");
        CHECK(first != NULL && p != NULL);
        CHECK(rp_block_pool(p) == pool);
        rp_free(first);
        tu_watched = NULL;
        rp_pool_destroy(pool);   /* p still live in it */
        rp_error_handler prev = rp_set_error_handler(tu_record_error);
        tu_errors_reset();
        rp_free(p);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK_EQ(rp_block_size(p), 0);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK(rp_block_tag(p) == NULL);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        rp_set_error_handler(prev);
    }
}

/* Per-tag counters of one tag. */
static void tag_counts(rp_pool *pool, const char *tag, size_t *blocks, size_t *bytes)
{
    rp_tag_stat st[32];
    size_t n = rp_pool_stats(pool, st, 32);
    *blocks = *bytes = SIZE_MAX;
    for (size_t i = 0; i < n && i < 32; i++)
        if (strcmp(st[i].tag, tag) == 0) {
            *blocks = st[i].blocks;
            *bytes = st[i].bytes;
        }
}

/* A tag whose record could not get its index for headerless blocks (the
   pool's table of tags could not grow: the 16th tag, an allocation made to
   fail) while the pool has free slots: its small blocks still carry its
   tag, size and counters exactly (the index is taken at the next small
   allocation). */
static void small_blocks_of_a_tag_without_index(void)
{
    if (!tu_is_arena()) return;
    static const char *const names[15] = {"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8",
                                          "n9", "n10", "n11", "n12", "n13", "n14", "n15"};
    const unsigned kinds[] = {RP_POOL_UNSYNC, 0};
    for (size_t j = 0; j < 2; j++) {
        int absorbed = 0;
        for (long n = 1; n <= 6; n++) {
            rp_pool *pool = pool_with("hl-noindex", kinds[j]);
            void *keep[15];
            for (int i = 0; i < 15; i++) CHECK((keep[i] = rp_alloc(pool, 8, names[i])) != NULL);
            /* a free slot waits, so the next small block needs no call */
            void *gap = rp_alloc(pool, 8, names[0]);
            CHECK(gap != NULL);
            rp_free(gap);
            rp_debug_fail_after(n, 0);
            void *big = rp_alloc_noexc(pool, 100, "late");   /* makes the tag's record */
            int fired = rp_debug_fail_fired();
            rp_debug_fail_after(0, 0);
            if (big && fired) {
                absorbed = 1;
                void *s = rp_alloc(pool, 8, "late");
                CHECK(s != NULL);
                CHECK_EQ(rp_block_size(s), 8);
                CHECK_STR(rp_block_tag(s), "late");
                size_t blocks, bytes;
                tag_counts(pool, "late", &blocks, &bytes);
                CHECK_EQ(blocks, 2);
                CHECK_EQ(bytes, 108);
                CHECK_INT(rp_pool_check(pool), 0);
                rp_free(s);
                tag_counts(pool, "late", &blocks, &bytes);
                CHECK_EQ(blocks, 1);
                CHECK_EQ(bytes, 100);
            }
            if (big) rp_free(big);
            for (int i = 0; i < 15; i++) rp_free(keep[i]);
            tu_end_pool(pool);
        }
        CHECK(absorbed);   /* one of the failed allocations was the table's */
    }
}

/* Child: 200 blocks of 16 bytes in an unsynchronised arena pool; arg "on"
   expects headerless slots (consecutive blocks 16 bytes apart), "off"
   (RINGPOOL_HEADERLESS=0) blocks with a header (never 16 apart); either way
   sizes, tags, walks and counters are exact. Exits 0 when all holds. */
static void child_small_blocks(const char *arg)
{
    int on = strcmp(arg, "on") == 0;
    rp_pool *pool = pool_with("hl-env", RP_POOL_UNSYNC);
    enum { N = 200 };
    static live l[N];
    size_t apart = 0;
    for (unsigned i = 0; i < N; i++) {
        l[i] = (live){rp_alloc(pool, 16, tags[i % NTAGS]), 16, (int)(i % NTAGS)};
        CHECK(l[i].p != NULL);
        memset(l[i].p, (int)i, 16);
        if (i > 0 && (char *)l[i].p - (char *)l[i - 1].p == 16) apart++;
    }
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(rp_block_size(l[i].p), 16);
        CHECK_STR(rp_block_tag(l[i].p), tags[i % NTAGS]);
    }
    check_walk(pool, l, N);
    CHECK_INT(rp_pool_check(pool), 0);
    if (on && apart < N / 2) tu_fail(__FILE__, __LINE__, "on: %zu of %d blocks 16 bytes apart", apart, N);
    if (!on && apart != 0) tu_fail(__FILE__, __LINE__, "off: %zu blocks 16 bytes apart", apart);
    for (unsigned i = 0; i < N; i++) rp_free(l[i].p);
    tu_end_pool(pool);
    exit(0);
}

/* Child `child` run with arg and env (either may be NULL) in a process of
   its own; the test fails unless it exits 0. */
static void expect_child(const char *child, const char *arg, const char *env)
{
    tu_result r;
    tu_spawn(child, arg, env, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        tu_fail(__FILE__, __LINE__, "child '%s %s' failed: %s", child, arg ? arg : "", r.err);
}

/* RINGPOOL_HEADERLESS=0 in the environment turns headerless blocks off (read
   once per process: each setting in a process of its own). */
static void headerless_can_be_turned_off(void)
{
    if (!tu_is_arena()) return;
    expect_child("small-blocks", "on", NULL);
    expect_child("small-blocks", "off", "RINGPOOL_HEADERLESS=0");
}

/* Child (RINGPOOL_HEADERLESS=64): blocks of 17 to 64 bytes are headerless
   slots of 32 and 64 bytes (a chunk per class, slots end to end), exact in
   sizes, tags, counters, walks and checks; every bad pointer into a larger
   slot is refused with its code and changes nothing; resizes across 16, 32,
   48, 64 and 65 bytes both ways keep the contents and move only when the
   slot is outgrown or, with a header, left half empty (a destructor moves
   with the block); reset and destroy
   free them in bulk. arg: "unsync" or "locked". Exits 0 when all holds. */
static void child_hl64(const char *arg)
{
    unsigned kind = strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC : 0;
    rp_pool *pool = pool_with("hl64", kind);
    /* a pool's first allocation is a check point of the sampler: a block
       with a header; the next small ones are headerless */
    void *first = rp_alloc(pool, 40, "t0");
    static const size_t sizes[] = {17, 24, 32, 33, 40, 48, 49, 60, 64};
    static const size_t slot[] = {32, 32, 32, 64, 64, 64, 64, 64, 64};
    enum { NS = sizeof sizes / sizeof sizes[0], NPER = 8 };
    static live l[NS * NPER + 1];
    size_t n = 0;
    for (size_t i = 0; i < NS; i++) {
        char *prev = NULL;
        for (int j = 0; j < NPER; j++) {
            char *p = rp_alloc(pool, sizes[i], tags[(i + (size_t)j) % NTAGS]);
            CHECK(p != NULL);
            CHECK(((uintptr_t)p & 15) == 0);
            memset(p, (int)(i * 16 + (size_t)j), sizes[i]);
            /* a class's slots lie end to end (33-48 and 49-64 have chunks
               of 64-byte slots each) */
            if (prev) CHECK_EQ((size_t)(p - prev), slot[i]);
            prev = p;
            CHECK_EQ(rp_block_size(p), sizes[i]);
            CHECK_STR(rp_block_tag(p), tags[(i + (size_t)j) % NTAGS]);
            CHECK(rp_block_pool(p) == pool);
            l[n++] = (live){p, sizes[i], (int)((i + (size_t)j) % NTAGS)};
        }
    }
    l[n++] = (live){first, 40, 0};
    check_walk(pool, l, n);
    CHECK_INT(rp_pool_check(pool), 0);
    for (size_t k = 0; k + 1 < n; k++) {
        size_t i = k / NPER, j = k % NPER;
        for (size_t b = 0; b < l[k].size; b++)
            CHECK(((unsigned char *)l[k].p)[b] == (unsigned char)(i * 16 + j));
    }

    /* bad pointers: inside a 64-byte slot (each later 16 bytes) and a
       32-byte one, a double free; each refused once, nothing changed */
    size_t blocks0 = n, bytes0 = 0;
    for (size_t k = 0; k < n; k++) bytes0 += l[k].size;
    char *s64 = l[NPER * 8].p, *s32 = l[0].p;   /* 64 and 17 bytes */
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    for (int off = 16; off < 64; off += 16) {
        rp_free(s64 + off);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK(rp_resize(pool, s64 + off, 8) == NULL);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK_EQ(rp_block_size(s64 + off), 0);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK(rp_block_tag(s64 + off) == NULL);
        CHECK_ONE_ERROR(RP_EFOREIGN);
        CHECK_INT(rp_set_destructor(s64 + off, dtor), RP_EINVAL);
        CHECK_ONE_ERROR(RP_EFOREIGN);
    }
    rp_free(s32 + 16);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_free(s32 + 8);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK_COUNTS(pool, blocks0, bytes0);
    /* a 64-byte slot freed, then freed again */
    char *gone = l[NPER * 7].p;   /* 60 bytes */
    rp_free(gone);
    CHECK_INT(tu_err_count, 0);
    check_freed_refused(pool, gone);
    CHECK_COUNTS(pool, blocks0 - 1, bytes0 - 60);
    rp_set_error_handler(prev);
    /* the freed slot is the next one of its class */
    char *again = rp_alloc(pool, 50, "t1");
    CHECK(again == gone);
    rp_free(again);

    /* resizes across the classes, up and down: 1 -> 16 -> 17 -> 32 -> 33
       -> 48 -> 49 -> 64 -> 65 -> 64 -> 48 -> 33 -> 32 -> 17 -> 16 -> 1 */
    static const size_t steps[] = {16, 17, 32, 33, 48, 49, 64, 65, 64, 48, 33, 32, 17, 16, 1};
    unsigned char *r = rp_alloc(pool, 1, "t3");
    r[0] = 0xa5;
    size_t had = 1;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t want = steps[i];
        unsigned char *q = rp_resize(pool, r, want);
        CHECK(q != NULL);
        size_t keep = had < want ? had : want;
        for (size_t b = 0; b < keep; b++) CHECK(q[b] == (unsigned char)(0xa5 + b));
        for (size_t b = 0; b < want; b++) q[b] = (unsigned char)(0xa5 + b);
        CHECK_EQ(rp_block_size(q), want);
        CHECK_STR(rp_block_tag(q), "t3");
        /* in place while the slot holds it: 16 -> 17 and 32 -> 33 move
           (16- and 32-byte slots), 33 -> 64 stays (a 64-byte slot), 64 ->
           65 moves to a block with a header; shrinking stays (the block
           with a header keeps its 96-byte slot down to 33 bytes) until 33
           -> 32, half its slot, which moves it to a 32-byte slot, where
           it stays down to 1 byte */
        if (want == 17 && had == 16) CHECK(q != r);
        if (want == 33 && had == 32) CHECK(q != r);
        if (had >= 33 && had < want && want <= 64) CHECK(q == r);
        if (want == 65) CHECK(q != r);
        if (want < had && had <= 64) CHECK(want == 32 ? q != r : q == r);
        r = q;
        had = want;
        CHECK_INT(rp_pool_check(pool), 0);
    }
    rp_tag_stat st[NTAGS + 2];
    size_t nt = rp_pool_stats(pool, st, NTAGS + 2);
    for (size_t i = 0; i < nt; i++)
        if (strcmp(st[i].tag, "t3") == 0) {
            size_t want_blocks = 1, want_bytes = 1;
            for (size_t k = 0; k + 1 < n; k++)
                if (l[k].tag == 3 && l[k].p != gone) {
                    want_blocks++;
                    want_bytes += l[k].size;
                }
            CHECK_EQ(st[i].blocks, want_blocks);
            CHECK_EQ(st[i].bytes, want_bytes);
        }
    rp_free(r);

    /* a destructor moves with its block (17 -> 40: a 64-byte slot) and
       runs once, at the free */
    ndtor = 0;
    char *d = rp_alloc(pool, 17, "t2");
    CHECK_INT(rp_set_destructor(d, dtor), 0);
    char *d2 = rp_resize(pool, d, 40);
    CHECK(d2 != NULL && d2 != d);
    CHECK_EQ(ndtor, 0);
    rp_free(d2);
    CHECK_EQ(ndtor, 1);
    CHECK(dtor_seen[0] == d2);
    /* and at destroy: one per block */
    ndtor = 0;
    for (size_t k = 0; k + 1 < n; k += 3)
        if (l[k].p != gone) CHECK_INT(rp_set_destructor(l[k].p, dtor), 0);
    size_t want_dtors = 0;
    for (size_t k = 0; k + 1 < n; k += 3) want_dtors += l[k].p != gone;

    /* reset: nothing left, the slots taken again */
    rp_pool *other = pool_with("hl64-reset", kind);
    for (int round = 0; round < 2; round++) {
        static live m[3000];
        for (size_t k = 0; k < 3000; k++) {
            size_t sz = 1 + k % 64;
            m[k] = (live){rp_alloc(other, sz, tags[k % NTAGS]), sz, (int)(k % NTAGS)};
            CHECK(m[k].p != NULL);
            memset(m[k].p, 7, sz);
        }
        for (size_t k = 0; k < 3000; k += 4) rp_free(m[k].p);
        size_t kept = 0;
        for (size_t k = 0; k < 3000; k++)
            if (k % 4) m[kept++] = m[k];
        check_walk(other, m, kept);
        CHECK_INT(rp_pool_check(other), 0);
        CHECK_INT(rp_pool_reset(other), 0);
        check_walk(other, m, 0);
        CHECK_COUNTS(other, 0, 0);
    }
    rp_pool_destroy(other);

    /* a class's free list holds free slots and blocks with a header alike:
       a block with a header (a pool's first allocation, the sampler's check
       point) of 40 bytes is freed on top of 40-byte slots; the next
       allocation takes it, also on the general path (a tag new to the
       pool), the next ones (the fast path) the slots, most recent first;
       a block with a header of 0 bytes that grows to 40 while the slots
       wait takes the slot freed last, as a new block of 40 bytes would
       (it used to move to a block with a header carved for it); all exact
       (the blocks of 2000 bytes keep each small one with a header from
       being the chunk's last carved) */
    rp_pool *mix = pool_with("hl64-mixed", kind);
    char *hd = rp_alloc(mix, 40, "t0");
    char *big1 = rp_alloc(mix, 2000, "t0");
    CHECK(hd != NULL && big1 != NULL);
    memset(hd, 0x5a, 40);
    char *sl[4];
    for (int i = 0; i < 4; i++) {
        sl[i] = rp_alloc(mix, 40, "t1");
        CHECK(sl[i] != NULL && sl[i] != hd);
    }
    CHECK_EQ((size_t)(sl[3] - sl[2]), 64);   /* headerless slots */
    CHECK((size_t)(sl[0] - hd) != 64 && (size_t)(hd - sl[0]) != 64);
    rp_free(sl[1]);
    rp_free(sl[3]);
    char *z = rp_alloc(mix, 0, "t3");
    char *big2 = rp_alloc(mix, 2000, "t0");
    CHECK(z != NULL && big2 != NULL);
    char *z2 = rp_resize(mix, z, 40);
    CHECK(z2 == sl[3]);
    CHECK_EQ(rp_block_size(z2), 40);
    CHECK_STR(rp_block_tag(z2), "t3");
    CHECK_COUNTS(mix, 6, 4160);
    CHECK_INT(rp_pool_check(mix), 0);
    rp_free(z2);
    for (int b = 0; b < 40; b++) CHECK(hd[b] == 0x5a);
    rp_free(hd);
    rp_free(big1);
    rp_free(big2);
    CHECK_COUNTS(mix, 2, 80);
    char *g1 = rp_alloc(mix, 33, "t2"), *g2 = rp_alloc(mix, 48, "t1"), *g3 = rp_alloc(mix, 40, "t1");
    CHECK(g1 == hd);
    CHECK(g2 == sl[3]);
    CHECK(g3 == sl[1]);
    CHECK_EQ(rp_block_size(g1), 33);
    CHECK_EQ(rp_block_size(g2), 48);
    CHECK_STR(rp_block_tag(g3), "t1");
    CHECK_COUNTS(mix, 5, 80 + 33 + 48 + 40);
    CHECK_STR(rp_block_tag(g1), "t2");
    live ml[5] = {{sl[0], 40, 1}, {sl[2], 40, 1}, {g1, 33, 2}, {g2, 48, 1}, {g3, 40, 1}};
    check_walk(mix, ml, 5);
    for (int i = 0; i < 5; i++) rp_free(ml[i].p);
    CHECK_COUNTS(mix, 0, 0);
    rp_pool_destroy(mix);
    tu_watched = NULL;
    rp_pool_destroy(pool);
    CHECK_EQ(ndtor, want_dtors);
    exit(0);
}

/* The headerless slot bytes of a block of size bytes (1 to 64). */
static size_t slot_of(size_t size) { return size <= 16 ? 16 : size <= 32 ? 32 : 64; }

/* A block with a header (150 bytes, a 176-byte slot), followed by another
   so that it is not the one carved last from the current chunk, its 150
   bytes filled by seed; *pad set to the other. */
static unsigned char *headed_block(rp_pool *pool, const char *tag, unsigned seed, void **pad)
{
    unsigned char *b = rp_alloc(pool, 150, tag);
    CHECK(b != NULL);
    *pad = rp_alloc(pool, 150, "t4");
    CHECK(*pad != NULL);
    tu_fill(b, 150, seed);
    return b;
}

/* A block with a header that a resize moves to size bytes (1 to 64, a
   headerless class of pool) takes the headerless slot a new block of size
   bytes would take: the slot freed last of its class, else the next one
   carved from the class's current chunk, also when it is the block carved
   last from its chunk (which takes its whole slot back); so does one that
   grows from 0 bytes, and one with a destructor (the general path), whose destructor
   then runs once, on the slot. Contents, sizes, tags, per-tag and pool
   counters, walks and checks exact throughout. (Before, each of them took a
   block with a header: 32 bytes for 1 to 16, 80 for 49 to 64.) */
static void moves_take_slots(rp_pool *pool, size_t size)
{
    void *first = rp_alloc(pool, 24, "t0");   /* the sampler's check point */
    size_t slot = slot_of(size);
    /* two slots of the class carved from its chunk, end to end */
    char *s1 = rp_alloc(pool, size, "t1"), *s2 = rp_alloc(pool, size, "t1");
    CHECK(s1 != NULL && s2 != NULL);
    CHECK_EQ((size_t)(s2 - s1), slot);
    live l[16];
    size_t n = 0;
    l[n++] = (live){first, 24, 0};
    l[n++] = (live){s2, size, 1};

    /* a shrink to size: the slot freed last */
    void *pad1, *pad2, *pad3, *pad4;
    unsigned char *b = headed_block(pool, "t2", 1, &pad1);
    rp_free(s1);
    unsigned char *r = rp_resize(pool, b, size);
    CHECK(r == (unsigned char *)s1);
    CHECK(tu_intact(r, size, 1));
    CHECK_EQ(rp_block_size(r), size);
    CHECK_STR(rp_block_tag(r), "t2");
    CHECK(rp_block_pool(r) == pool);
    l[n++] = (live){r, size, 2};
    l[n++] = (live){pad1, 150, 4};
    check_walk(pool, l, n);

    /* no free slot of the class: the next one carved */
    b = headed_block(pool, "t2", 2, &pad2);
    r = rp_resize(pool, b, size);
    CHECK(r == (unsigned char *)s2 + slot);
    CHECK(tu_intact(r, size, 2));
    CHECK_EQ(rp_block_size(r), size);
    l[n++] = (live){r, size, 2};
    l[n++] = (live){pad2, 150, 4};
    check_walk(pool, l, n);

    /* the block carved last from the current chunk: the slot too, and its
       whole slot back to the chunk (the next block of its class is carved
       where it was) */
    unsigned char *last = rp_alloc(pool, 400, "t2");   /* no 400-byte block freed: carved */
    CHECK(last != NULL);
    tu_fill(last, 400, 5);
    unsigned char *s5 = rp_alloc(pool, size, "t1");
    CHECK(s5 != NULL);
    rp_free(s5);
    r = rp_resize(pool, last, size);
    CHECK(r == s5);
    CHECK(tu_intact(r, size, 5));
    CHECK_EQ(rp_block_size(r), size);
    l[n++] = (live){r, size, 2};
    unsigned char *again = rp_alloc(pool, 400, "t4");
    CHECK(again == last);
    l[n++] = (live){again, 400, 4};
    check_walk(pool, l, n);

    /* a growth from 0 bytes (a block with a header, class 0) */
    unsigned char *z = rp_alloc(pool, 0, "t3");
    CHECK(z != NULL);
    pad3 = rp_alloc(pool, 300, "t4");   /* carved after z (no 300-byte block was freed) */
    unsigned char *s3 = rp_alloc(pool, size, "t1");
    CHECK(s3 != NULL);
    rp_free(s3);
    r = rp_resize(pool, z, size);
    CHECK(r == s3);
    CHECK_EQ(rp_block_size(r), size);
    CHECK_STR(rp_block_tag(r), "t3");
    tu_fill(r, size, 3);
    l[n++] = (live){r, size, 3};
    l[n++] = (live){pad3, 300, 4};
    check_walk(pool, l, n);
    CHECK_INT(rp_pool_check(pool), 0);

    /* with a destructor: the slot, the destructor moved with the block */
    b = headed_block(pool, "t1", 4, &pad4);
    CHECK_INT(rp_set_destructor(b, dtor), 0);
    unsigned char *s4 = rp_alloc(pool, size, "t1");
    CHECK(s4 != NULL);
    rp_free(s4);
    ndtor = 0;
    r = rp_resize(pool, b, size);
    CHECK(r == s4);
    CHECK(tu_intact(r, size, 4));
    CHECK_EQ(ndtor, 0);
    l[n++] = (live){pad4, 150, 4};
    l[n] = (live){r, size, 1};
    check_walk(pool, l, n + 1);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += l[i].size;
    CHECK_COUNTS(pool, n + 1, bytes + size);
    rp_free(r);
    CHECK_EQ(ndtor, 1);
    CHECK(dtor_seen[0] == r);
    CHECK_COUNTS(pool, n, bytes);
    check_walk(pool, l, n);
    CHECK_INT(rp_pool_check(pool), 0);
    for (size_t i = 0; i < n; i++) rp_free(l[i].p);
    CHECK_COUNTS(pool, 0, 0);
}

/* Blocks with a header moved by a resize to 1 to 16 bytes take headerless
   slots (moves_take_slots), unsynchronised and thread-safe pools. */
static void moves_to_small_blocks_take_slots(void)
{
    if (!tu_is_arena()) return;
    const unsigned kinds[] = {RP_POOL_UNSYNC, 0};
    static const size_t sizes[] = {1, 10, 16};
    for (size_t j = 0; j < 2; j++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            rp_pool *pool = pool_with("moves-hl", kinds[j]);
            moves_take_slots(pool, sizes[i]);
            tu_end_pool(pool);
        }
}

/* Child (RINGPOOL_HEADERLESS=64): moves_take_slots for sizes of each class
   up to 64 bytes. arg: "unsync" or "locked". */
static void child_hl_moves(const char *arg)
{
    unsigned kind = strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC : 0;
    static const size_t sizes[] = {8, 17, 32, 33, 48, 49, 56, 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rp_pool *pool = pool_with("hl64-moves", kind);
        moves_take_slots(pool, sizes[i]);
        tu_end_pool(pool);
    }
    exit(0);
}

/* RINGPOOL_HEADERLESS=64: headerless slots for blocks up to 64 bytes
   (child_hl64, in a process of its own: read once), thread-safe and
   unsynchronised pools. */
/* Child `child` run under RINGPOOL_HEADERLESS=64, with an unsynchronised
   and with a thread-safe pool, each in a process of its own; a failure of
   either fails the test. */
static void spawn_hl64_children(const char *child)
{
    expect_child(child, "unsync", "RINGPOOL_HEADERLESS=64");
    expect_child(child, "locked", "RINGPOOL_HEADERLESS=64");
}

static void headerless_up_to_64_bytes(void)
{
    if (!tu_is_arena()) return;
    spawn_hl64_children("hl64");
}

static void moves_to_blocks_up_to_64_bytes_take_slots(void)
{
    if (!tu_is_arena()) return;
    spawn_hl64_children("hl-moves");
}

/* A block with a header moved by a resize to each size of 1 to 64 bytes (a
   headerless slot where the size's class is headerless, else a block with a
   header) keeps its first size bytes: the block carved last from the
   current chunk shrunk (its slot back to the chunk), another block shrunk
   (its slot then on its class's list: the next block of 150 bytes takes it
   and is written over), a block with a destructor shrunk (the general
   path). Every moved block is checked again once all the moves are done and
   the old slots reused, the counters, the walk and rp_pool_check exact; the
   destructors run once each. (The unsynchronised move copies after giving
   the old block back: a copy that read what the free wrote, or a slot taken
   twice, shows here.) */
static void moves_keep_contents(unsigned kind)
{
    enum { MAXS = 64, PER_SIZE = 6 };   /* blocks kept per size */
    rp_pool *pool = pool_with("moves-copy", kind);
    static live l[PER_SIZE * MAXS];
    static unsigned seeds[PER_SIZE * MAXS];
    size_t n = 0, bytes = 0;
    /* each tag's index given first (a tag without one moves by the general
       path), so that the moves below take the fast paths */
    for (int i = 0; i < NTAGS; i++) rp_free(rp_alloc(pool, 1, tags[i]));
    for (size_t size = 1; size <= MAXS; size++) {
        unsigned seed = (unsigned)(16 * size);
        /* the block carved last (no 400-byte block is ever freed here) */
        unsigned char *b = rp_alloc(pool, 400, "t1");
        CHECK(b != NULL);
        tu_fill(b, 400, seed);
        unsigned char *r = rp_resize(pool, b, size);
        CHECK(r != NULL && tu_intact(r, size, seed));
        CHECK_EQ(rp_block_size(r), size);
        CHECK_STR(rp_block_tag(r), "t1");
        seeds[n] = seed;
        l[n++] = (live){r, size, 1};
        /* a block with one after it: its slot to its class's list */
        void *pad;
        b = headed_block(pool, "t2", seed + 1, &pad);
        r = rp_resize(pool, b, size);
        CHECK(r != NULL && tu_intact(r, size, seed + 1));
        CHECK_EQ(rp_block_size(r), size);
        seeds[n] = seed + 1;
        l[n++] = (live){r, size, 2};
        seeds[n] = 0;
        l[n++] = (live){pad, 150, 4};
        unsigned char *again = rp_alloc(pool, 150, "t3");
        CHECK(again != NULL);
        tu_fill(again, 150, seed + 2);
        CHECK(tu_intact(r, size, seed + 1));
        seeds[n] = seed + 2;
        l[n++] = (live){again, 150, 3};
        /* with a destructor: the general path */
        b = headed_block(pool, "t0", seed + 3, &pad);
        CHECK_INT(rp_set_destructor(b, dtor), 0);
        r = rp_resize(pool, b, size);
        CHECK(r != NULL && tu_intact(r, size, seed + 3));
        CHECK_EQ(rp_block_size(r), size);
        seeds[n] = seed + 3;
        l[n++] = (live){r, size, 0};
        seeds[n] = 0;
        l[n++] = (live){pad, 150, 4};
    }
    for (size_t i = 0; i < n; i++) {
        if (seeds[i]) CHECK(tu_intact(l[i].p, l[i].size, seeds[i]));
        bytes += l[i].size;
    }
    CHECK_COUNTS(pool, n, bytes);
    check_walk(pool, l, n);
    CHECK_INT(rp_pool_check(pool), 0);
    ndtor = 0;
    for (size_t i = 0; i < n; i++) rp_free(l[i].p);
    CHECK_EQ(ndtor, MAXS);
    CHECK_COUNTS(pool, 0, 0);
    tu_end_pool(pool);
}

/* moves_keep_contents with 16-byte slots (the default), unsynchronised and
   thread-safe pools. */
static void moves_keep_contents_at_every_size(void)
{
    if (!tu_is_arena()) return;
    moves_keep_contents(RP_POOL_UNSYNC);
    moves_keep_contents(0);
}

/* Child (RINGPOOL_HEADERLESS=64): moves_keep_contents. arg: "unsync" or
   "locked". */
static void child_hl_moves_copy(const char *arg)
{
    moves_keep_contents(strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC : 0);
    exit(0);
}

/* The same with slots up to 64 bytes. */
static void moves_keep_contents_up_to_64_bytes(void)
{
    if (!tu_is_arena()) return;
    spawn_hl64_children("hl-moves-copy");
}

/* Child (RINGPOOL_HEADERLESS=64, the region cut to 2 chunks per slot
   size by the library's test hook $RINGPOOL_TEST_HL_CHUNKS): blocks of 8, 24, 40 and 56
   bytes (the four classes) in turn until the region is used up; the blocks
   of each class are headerless slots end to end (16, 32, 64, 64 bytes
   apart) while a slot can be had, blocks with a header from then on (never
   a slot's bytes apart), each slot size until its own part of the region
   is used up (not the first part used up); all exact in sizes, tags, counters, walks and
   checks, through frees (the freed slots taken again), resizes (a
   headerless block that outgrows its slot moves to a block with a header)
   and a second pool that finds no chunk of 64-byte slots; once the first pool is
   destroyed its chunks serve a third. arg: "unsync" or "locked". */
static void child_hl_exhaust(const char *arg)
{
    setenv("RINGPOOL_TEST_HL_CHUNKS", "2", 1);   /* before the first slot */
    unsigned kind = strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC : 0;
    rp_pool *pool = pool_with("hl-exhaust", kind);
    /* the pool's first allocation has a header (the sampler's check point) */
    void *first = rp_alloc(pool, 24, "t0");
    static const size_t sizes[4] = {8, 24, 40, 56}, slot[4] = {16, 32, 64, 64};
    /* a chunk holds 3273, 1818, 962 or 962 slots of the four classes: the
       two chunks of 64-byte slots (one for 33-48 bytes, one for 49-64) run
       out first; the 16- and 32-byte slots have parts of their own, whose
       second chunks the pool still takes (it used to take none once any
       part was used up): the 32-byte slots' run out at 2 * 1818 blocks,
       the 16-byte slots' hold all EACH */
    static const size_t per_chunk[4] = {3273, 1818, 962, 962};
    enum { EACH = 4000, NB = 4 * EACH + 1, LATE = 500 };
    static live l[NB];
    size_t n = 0, bytes = 0, apart[4] = {0}, apart_late[4] = {0};
    char *prev[4] = {NULL, NULL, NULL, NULL};
    for (unsigned i = 0; i < 4 * EACH; i++) {
        unsigned c = i % 4;
        char *p = rp_alloc(pool, sizes[c], tags[i % NTAGS]);
        CHECK(p != NULL);
        memset(p, (int)(i & 0xff), sizes[c]);
        if (prev[c] && (size_t)(p - prev[c]) == slot[c]) {
            apart[c]++;
            if (i / 4 >= EACH - LATE) apart_late[c]++;
        }
        prev[c] = p;
        l[n++] = (live){p, sizes[c], (int)(i % NTAGS)};
        bytes += sizes[c];
    }
    l[n++] = (live){first, 24, 0};
    bytes += 24;
    for (unsigned c = 0; c < 4; c++) {
        /* headerless slots end to end (a chunk's worth at least); among
           the last LATE blocks of each class, slots end to end while its
           part's chunks last (a class of 64-byte slots has one chunk of
           the two: none by then), blocks with a header after */
        CHECK(apart[c] >= 900);
        size_t chunks = c < 2 ? 2 : 1, slots = chunks * per_chunk[c];
        size_t want = slots <= EACH - LATE ? 0 : slots >= EACH ? LATE : slots - (EACH - LATE);
        CHECK_EQ(apart_late[c], want);
    }
    for (size_t k = 0; k + 1 < n; k++) {
        CHECK_EQ(rp_block_size(l[k].p), l[k].size);
        CHECK_STR(rp_block_tag(l[k].p), tags[l[k].tag]);
        CHECK(rp_block_pool(l[k].p) == pool);
        for (size_t b = 0; b < l[k].size; b++)
            CHECK(((unsigned char *)l[k].p)[b] == (unsigned char)(k & 0xff));
    }
    CHECK_COUNTS(pool, n, bytes);
    check_walk(pool, l, n);

    /* every other block freed (headerless and headed), then as many
       allocated again: the freed slots are reused, counters stay exact */
    for (size_t k = 0; k + 1 < n; k += 2) {
        rp_free(l[k].p);
        bytes -= l[k].size;
        l[k].p = rp_alloc(pool, l[k].size, tags[l[k].tag]);
        CHECK(l[k].p != NULL);
        memset(l[k].p, (int)(k & 0xff), l[k].size);
        bytes += l[k].size;
    }
    CHECK_COUNTS(pool, n, bytes);
    check_walk(pool, l, n);

    /* resizes: the first 24-byte block (a 32-byte slot) to 56 bytes finds
       no 64-byte slot and moves to a block with a header; the block of 8
       bytes grows within nothing either; both shrink to 20 bytes, half the
       block's slot: the first takes the 32-byte slot it left (the one a
       new block of 20 bytes would take), the second finds none (no chunk
       of 32-byte slots left) and keeps a header */
    for (unsigned c = 0; c < 2; c++) {
        size_t k = c == 0 ? 1 : 0;   /* l[1]: 24 bytes, l[0]: 8 bytes */
        char *was = l[k].p;
        unsigned char *q = rp_resize(pool, l[k].p, 56);
        CHECK(q != NULL);
        for (size_t b = 0; b < l[k].size; b++) CHECK(q[b] == (unsigned char)(k & 0xff));
        memset(q, (int)(k & 0xff), 56);
        CHECK_EQ(rp_block_size(q), 56);
        bytes += 56 - l[k].size;
        l[k].p = q;
        l[k].size = 56;
        unsigned char *s2 = rp_resize(pool, q, 20);
        CHECK(s2 != NULL);
        if (c == 0) CHECK(s2 == (unsigned char *)was);
        for (size_t b = 0; b < 20; b++) CHECK(s2[b] == (unsigned char)(k & 0xff));
        CHECK_EQ(rp_block_size(s2), 20);
        bytes -= 56 - 20;
        l[k].p = s2;
        l[k].size = 20;
    }
    CHECK_COUNTS(pool, n, bytes);
    check_walk(pool, l, n);

    /* a second pool: no chunk of 64-byte slots left for it, its blocks of
       40 and 56 bytes have a header (never a slot's bytes apart), exact */
    rp_pool *other = pool_with("hl-exhaust-2", kind);
    {
        enum { M = 400 };
        static live m[M];
        size_t mb = 0;
        char *last[4] = {NULL, NULL, NULL, NULL};
        for (unsigned i = 0; i < M; i++) {
            unsigned c = i % 4;
            char *p = rp_alloc(other, sizes[c], tags[i % NTAGS]);
            CHECK(p != NULL);
            if (c >= 2 && last[c]) CHECK((size_t)(p - last[c]) != slot[c]);
            last[c] = p;
            m[i] = (live){p, sizes[c], (int)(i % NTAGS)};
            mb += sizes[c];
        }
        CHECK_COUNTS(other, M, mb);
        check_walk(other, m, M);
        for (unsigned i = 0; i < M; i++) rp_free(m[i].p);
        CHECK_COUNTS(other, 0, 0);
    }
    rp_pool_destroy(other);

    /* everything freed: nothing left, nothing refused */
    rp_error_handler prev_h = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    for (size_t k = 0; k < n; k++) rp_free(l[k].p);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev_h);
    CHECK_COUNTS(pool, 0, 0);
    check_walk(pool, l, 0);
    tu_watched = NULL;
    rp_pool_destroy(pool);

    /* the destroyed pool's chunks serve the next pool: headerless again */
    rp_pool *third = pool_with("hl-exhaust-3", kind);
    (void)rp_alloc(third, 24, "t0");   /* the sampler's check point */
    char *a = rp_alloc(third, 56, "t1"), *b = rp_alloc(third, 56, "t1");
    char *c1 = rp_alloc(third, 24, "t2"), *c2 = rp_alloc(third, 24, "t2");
    CHECK(a && b && c1 && c2);
    CHECK_EQ((size_t)(b - a), 64);
    CHECK_EQ((size_t)(c2 - c1), 32);
    rp_pool_destroy(third);
    exit(0);
}

/* The headerless region used up by the 32- and 64-byte classes
   (child_hl_exhaust, in a process of its own: the settings are read once),
   thread-safe and unsynchronised pools. */
static void headerless_region_exhausted(void)
{
    if (!tu_is_arena()) return;
    spawn_hl64_children("hl-exhaust");
}

/* n blocks of `size` bytes from pool, tag "t", each filled; how many of them
   lie `slot` bytes after the one before (headerless slots end to end). */
static int carve_apart(rp_pool *pool, char **p, int n, size_t size, size_t slot)
{
    int apart = 0;
    for (int i = 0; i < n; i++) {
        p[i] = rp_alloc(pool, size, "t");
        memset(p[i], i + 1, size);
        if (i && (size_t)(p[i] - p[i - 1]) == slot) apart++;
    }
    return apart;
}

/* The pool holds exactly the n blocks of p (plus `extra` blocks of `size`
   bytes: the first, the sampler's), intact, and checks clean. */
static void hl_exact(rp_pool *pool, char **p, int n, size_t size, int extra)
{
    CHECK_COUNTS(pool, (size_t)(n + extra), (size_t)(n + extra) * size);
    CHECK_INT(rp_pool_check(pool), 0);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(rp_block_size(p[i]), size);
        CHECK(rp_block_pool(p[i]) == pool);
        for (size_t b = 0; b < size; b++) CHECK(p[i][b] == (char)(i + 1));
    }
}

/* Child: the headerless region's failures by fault injection, which counts
   each headerless chunk a pool takes (a spare or a fresh commit) and the
   region's reservation as underlying allocations. A pool whose chunk or
   reservation is refused gives blocks with a header from then on (until a
   reset), exact and intact; a refused reservation is tried again by the
   next chunk; a _noexc call that can have neither returns NULL and changes
   nothing, a plain call reaches the OOM handler. Blocks of 8 bytes (16-byte
   slots), or 24 (32-byte slots) with RINGPOOL_HEADERLESS=64; with a header
   they are 32 or 48 bytes apart. arg: "unsync" or "locked". */
static void child_hl_inject(const char *arg)
{
    unsigned kind = strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC : 0;
    const char *e = getenv("RINGPOOL_HEADERLESS");
    const int hl64 = e && strcmp(e, "64") == 0;
    const size_t size = hl64 ? 24 : 8, slot = hl64 ? 32 : 16;
    enum { N = 64 };
    static char *p[N];

    /* the reservation refused: past the pool's first block (the sampler's
       check point, with a header, which gave its tag an index), the first
       headerless block needs a chunk (1) and the region (2) */
    rp_pool *a = pool_with("reserve", kind);
    rp_alloc(a, size, "t");
    rp_debug_fail_after(2, 0);
    CHECK_INT(carve_apart(a, p, N, size, slot), 0);
    CHECK(rp_debug_fail_fired());
    rp_debug_fail_after(0, 0);
    hl_exact(a, p, N, size, 1);

    /* the next pool reserves the region and has its slots */
    rp_pool *b = pool_with("after", kind);
    rp_alloc(b, size, "t");
    CHECK_INT(carve_apart(b, p, N, size, slot), N - 1);
    hl_exact(b, p, N, size, 1);

    /* a chunk refused (the region is reserved now): blocks with a header */
    rp_pool *c = pool_with("chunk", kind);
    rp_alloc(c, size, "t");
    rp_debug_fail_after(1, 0);
    CHECK_INT(carve_apart(c, p, N, size, slot), 0);
    CHECK(rp_debug_fail_fired());
    rp_debug_fail_after(0, 0);
    hl_exact(c, p, N, size, 1);
    for (int i = 0; i < N; i += 2) rp_free(p[i]);
    CHECK_COUNTS(c, (size_t)N / 2 + 1, (size_t)(N / 2 + 1) * size);
    CHECK_INT(rp_pool_check(c), 0);
    /* a reset gives it slots again */
    rp_pool_reset(c);
    CHECK_COUNTS(c, 0, 0);
    rp_alloc(c, size, "t");
    CHECK_INT(carve_apart(c, p, N, size, slot), N - 1);
    hl_exact(c, p, N, size, 1);

    /* every allocation failing: blocks with a header from the chunk the
       pool has, then, with that chunk full, neither a slot nor a block */
    rp_pool *d = pool_with("none", kind);
    void *first = rp_alloc(d, size, "t");
    enum { MAX = 8192 };
    static char *q[MAX];
    int n = 0, apart = 0;
    rp_debug_fail_after(1, 1);
    while (n < MAX && (q[n] = rp_alloc_noexc(d, size, "t")) != NULL) {
        memset(q[n], 7, size);
        if (n && (size_t)(q[n] - q[n - 1]) == slot) apart++;
        n++;
    }
    CHECK(n > 0 && n < MAX);
    CHECK_INT(apart, 0);
    CHECK_COUNTS(d, (size_t)n + 1, (size_t)(n + 1) * size);
    CHECK(rp_alloc_noexc(d, size, "u") == NULL);
    EXPECT_OOM(rp_alloc(d, size, "t"));
    CHECK_COUNTS(d, (size_t)n + 1, (size_t)(n + 1) * size);
    CHECK_INT(rp_pool_check(d), 0);
    rp_debug_fail_after(0, 0);
    /* memory again: blocks with a header still (until a reset) */
    CHECK_INT(carve_apart(d, p, N, size, slot), 0);
    CHECK_COUNTS(d, (size_t)(n + N) + 1, (size_t)(n + N + 1) * size);
    CHECK_INT(rp_pool_check(d), 0);
    rp_free(first);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < size; k++) CHECK(q[i][k] == 7);
        rp_free(q[i]);
    }
    for (int i = 0; i < N; i++) rp_free(p[i]);
    CHECK_COUNTS(d, 0, 0);
    CHECK_INT(rp_pool_check(d), 0);

    rp_pool_destroy(a);
    rp_pool_destroy(b);
    rp_pool_destroy(c);
    rp_pool_destroy(d);
    exit(0);
}

/* The headerless region's reservation and chunks refused by fault
   injection (child_hl_inject: the reservation is a process's first), with
   16-byte slots and with RINGPOOL_HEADERLESS=64. */
static void headerless_failures_injected(void)
{
    if (!tu_is_arena()) return;
    for (int k = 0; k < 2; k++) {
        const char *kind = k ? "locked" : "unsync";
        expect_child("hl-inject", kind, NULL);
        expect_child("hl-inject", kind, "RINGPOOL_HEADERLESS=64");
    }
}

/* The resident memory of this process, in KiB. */
static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    CHECK(fscanf(f, "%ld %ld", &pages, &resident) == 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* An unsynchronised arena pool holding `chunks` chunks' worth of 8-byte
   headerless blocks (3273 slots a chunk), each written; *first set to the
   first slot (the pool's first block is the sampler's check point, with a
   header). */
static rp_pool *fill_small_chunks(const char *name, long chunks, char **first)
{
    rp_pool *pool = pool_with(name, RP_POOL_UNSYNC);
    for (long i = 0; i <= chunks * 3273; i++) {
        char *b = rp_alloc(pool, 8, "t0");
        CHECK(b != NULL);
        b[0] = 1;
        if (i == 1) *first = b;
    }
    return pool;
}

/* Child: destroyed pools' headerless chunks stay resident up to 16 MiB (256
   chunks), the rest goes back to the system; those come first off the
   spares when a pool needs chunks again, and after their second release
   the resident spares are still within the bound (the spares taken back
   were counted as resident ones: 100 chunks, 6 MiB, stayed beyond it). A
   pointer into a chunk given back is refused as no pool's. */
static void child_spares_bound(const char *arg)
{
    (void)arg;
    char *first, *other;
    rp_pool *a = fill_small_chunks("spares-a", 356, &first);
    tu_watched = NULL;
    rp_pool_destroy(a);   /* its newest 256 chunks kept resident, the first 100 given back */
    long kept = rss_kib();
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    rp_free(first);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK_EQ(rp_block_size(first), 0);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK(rp_resize(NULL, first, 8) == NULL);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_set_error_handler(prev);
    rp_pool *b = fill_small_chunks("spares-b", 100, &other);   /* the 100 given back */
    tu_watched = NULL;
    rp_pool_destroy(b);
    long after = rss_kib();
    if (after - kept > 2048)
        tu_fail(__FILE__, __LINE__, "resident spares grew by %ld KiB past the bound", after - kept);
    exit(0);
}

static void headerless_spares_stay_bounded(void)
{
    if (!tu_is_arena()) return;
    expect_child("spares-bound", NULL, NULL);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"walk_report_check_after_churn", walk_report_check_after_churn},
        {"visitor_frees_and_allocates", visitor_frees_and_allocates},
        {"destroy_runs_each_destructor_once", destroy_runs_each_destructor_once},
        {"resize_across_classes", resize_across_classes},
        {"every_size_freed_and_reused", every_size_freed_and_reused},
        {"forked_child_walks", forked_child_walks},   /* before any checked pool: the
                                                         child leaves no quarantine */
        {"threads_share_a_pool", threads_share_a_pool},
        {"stack_and_checked_pools", stack_and_checked_pools},
        {"bytes_per_small_block", bytes_per_small_block},
        {"headerless_blocks_resize_and_query", headerless_blocks_resize_and_query},
        {"headerless_bad_pointers", headerless_bad_pointers},
        {"headerless_reset_and_reuse", headerless_reset_and_reuse},
        {"sampled_small_blocks_among_free_slots", sampled_small_blocks_among_free_slots},
        {"stale_small_block_after_destroy", stale_small_block_after_destroy},
        {"small_blocks_of_a_tag_without_index", small_blocks_of_a_tag_without_index},
        {"headerless_can_be_turned_off", headerless_can_be_turned_off},
        {"headerless_up_to_64_bytes", headerless_up_to_64_bytes},
        {"moves_to_small_blocks_take_slots", moves_to_small_blocks_take_slots},
        {"moves_to_blocks_up_to_64_bytes_take_slots", moves_to_blocks_up_to_64_bytes_take_slots},
        {"moves_keep_contents_at_every_size", moves_keep_contents_at_every_size},
        {"moves_keep_contents_up_to_64_bytes", moves_keep_contents_up_to_64_bytes},
        {"headerless_region_exhausted", headerless_region_exhausted},
        {"headerless_spares_stay_bounded", headerless_spares_stay_bounded},
        {"headerless_failures_injected", headerless_failures_injected},
    };
    static const tu_child children[] = {
        {"small-blocks", child_small_blocks},
        {"hl64", child_hl64},
        {"hl-moves", child_hl_moves},
        {"hl-moves-copy", child_hl_moves_copy},
        {"hl-exhaust", child_hl_exhaust},
        {"spares-bound", child_spares_bound},
        {"hl-inject", child_hl_inject},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children, TU_NCASES(children));
}
