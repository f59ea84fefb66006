/* test_alloc.c -- allocation semantics: alignment, aligned blocks, size 0,
   resize, calloc overflow, the OOM handler, tags, macros, string helpers. */
#include <stdalign.h>
#include <stdint.h>

#include "testutil.h"

#define MAXA alignof(max_align_t)

static int is_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static void test_alignment(void)
{
    rp_pool *pool = tu_pool("alignment");
    void *b[300];
    size_t i, total = 0;
    for (i = 0; i < 300; i++) {
        size_t sz = i < 260 ? i : (size_t)1 << (i - 260 + 8) % 22;
        b[i] = rp_alloc(pool, sz, "align");
        CHECK(b[i] != NULL);
        CHECK(is_aligned(b[i], MAXA));
        CHECK_EQ(rp_block_size(b[i]), sz);
        CHECK(rp_block_pool(b[i]) == pool);
        memset(b[i], (int)(i & 0xff), sz);
        total += sz;
    }
    CHECK_COUNTS(pool, 300, total);
    /* every byte written survives its neighbours' writes */
    for (i = 0; i < 300; i++) {
        size_t sz = rp_block_size(b[i]);
        if (sz > 0)
            CHECK(((unsigned char *)b[i])[sz - 1] == (unsigned char)(i & 0xff));
    }
    for (i = 0; i < 300; i += 2)
        rp_free(b[i]);
    for (i = 1; i < 300; i += 2)
        rp_free(b[i]);
    /* every allocating call, not only rp_alloc */
    for (i = 1; i < 40; i++) {
        char *s = rp_strdup(pool, &"abcdefghijklmnopqrstuvwxyz0123456789abcd"[40 - i], "s");
        char *c = rp_strconcat(pool, "c", 2, s, "x");
        void *m = rp_memdup(pool, s, i, "m");
        void *z = rp_calloc(pool, i, 3, "z");
        void *r = rp_resize(pool, NULL, i);
        CHECK(is_aligned(s, MAXA) && is_aligned(c, MAXA) && is_aligned(m, MAXA));
        CHECK(is_aligned(z, MAXA) && is_aligned(r, MAXA));
        r = rp_resize(pool, r, i * 1000);
        CHECK(is_aligned(r, MAXA));
        rp_free(s); rp_free(c); rp_free(m); rp_free(z); rp_free(r);
    }
    tu_end_pool(pool);
}

static int find_block(void *block, size_t size, const char *tag, void *arg)
{
    (void)size; (void)tag;
    return block == arg;
}

static void test_aligned(void)
{
    rp_pool *pool = tu_pool("aligned");
    void *keep[21];
    size_t a;
    int s;
    for (s = 0; s <= 20; s++) {             /* 1 .. 1 MiB */
        a = (size_t)1 << s;
        keep[s] = rp_alloc_aligned(pool, a, 100, "al");
        CHECK(keep[s] != NULL);
        CHECK(is_aligned(keep[s], a));
        CHECK(is_aligned(keep[s], MAXA));
        CHECK_EQ(rp_block_size(keep[s]), 100);
        CHECK_STR(rp_block_tag(keep[s]), "al");
        memset(keep[s], 0x5a, 100);
        /* the _noexc twin, freed at once */
        {
            void *q = rp_alloc_aligned_noexc(pool, a, (size_t)s * 7, "al");
            CHECK(q != NULL);
            CHECK(is_aligned(q, a));
            rp_free(q);
        }
    }
    CHECK_COUNTS(pool, 21, 21 * 100);
    /* a resized aligned block keeps its alignment and contents */
    keep[12] = rp_resize(pool, keep[12], 10000);
    CHECK(is_aligned(keep[12], 4096));
    CHECK(((unsigned char *)keep[12])[99] == 0x5a);
    keep[12] = rp_resize(pool, keep[12], 100);
    CHECK(is_aligned(keep[12], 4096));
    for (s = 20; s >= 0; s--)
        rp_free(keep[s]);
    tu_end_pool(pool);
}

static void test_aligned_bad(void)
{
    static const size_t bad[] = {0, 3, 6, 24, 1000, 4097, (size_t)-1,
                                 RP_MAX_ALIGN * 2};
    rp_pool *pool = tu_pool("aligned-bad");
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_oom_handler prev_oom = rp_set_oom_handler(tu_oom_escape);
    void *live = rp_alloc(pool, 8, "live");
    size_t i;
    tu_errors_reset();
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(rp_alloc_aligned_noexc(pool, bad[i], 16, "x") == NULL);
        CHECK_ONE_ERROR(RP_EALIGN);
        CHECK(tu_err_block[0] == NULL);
        /* the plain form reports the same misuse, then returns NULL
           (it is not an out-of-memory condition) */
        tu_oom_hits = 0;
        CHECK(rp_alloc_aligned(pool, bad[i], 16, "x") == NULL);
        CHECK_ONE_ERROR(RP_EALIGN);
        CHECK_INT(tu_oom_hits, 0);
        CHECK_COUNTS(pool, 1, 8);
    }
    rp_set_oom_handler(prev_oom);
    rp_set_error_handler(prev);
    rp_free(live);
    tu_end_pool(pool);
}

static void test_size_zero(void)
{
    rp_pool *pool = tu_pool("zero");
    void *b[64];
    size_t i, j;
    for (i = 0; i < 64; i++) {
        switch (i % 4) {
        case 0: b[i] = rp_alloc(pool, 0, "z"); break;
        case 1: b[i] = rp_alloc_noexc(pool, 0, "z"); break;
        case 2: b[i] = rp_calloc(pool, 0, 16, "z"); break;
        default: b[i] = rp_calloc_noexc(pool, 16, 0, "z"); break;
        }
        CHECK(b[i] != NULL);
        CHECK(is_aligned(b[i], MAXA));
        CHECK_EQ(rp_block_size(b[i]), 0);
        for (j = 0; j < i; j++)
            CHECK(b[j] != b[i]);
    }
    CHECK_COUNTS(pool, 64, 0);
    for (i = 0; i < 64; i++)
        rp_free(b[i]);
    rp_free(NULL); /* no-op */
    tu_end_pool(pool);
}

static void test_resize(void)
{
    rp_pool *pool = tu_pool("resize");
    unsigned char *b;
    void *other = rp_alloc(pool, 40, "other");
    size_t i;
    /* NULL block: allocates an untagged block in pool */
    b = rp_resize(pool, NULL, 16);
    CHECK(b != NULL);
    CHECK_STR(rp_block_tag(b), "(untagged)");
    CHECK(rp_block_pool(b) == pool);
    CHECK_COUNTS(pool, 2, 56);
    for (i = 0; i < 16; i++)
        b[i] = (unsigned char)i;
    /* grow, then grow big: contents kept, tag kept */
    b = rp_resize(pool, b, 1000);
    CHECK_EQ(rp_block_size(b), 1000);
    for (i = 0; i < 16; i++)
        CHECK_EQ(b[i], i);
    memset(b + 16, 0xee, 984);
    b = rp_resize_noexc(NULL, b, 3u << 20); /* pool may be NULL */
    CHECK(b != NULL);
    CHECK(is_aligned(b, MAXA));
    CHECK_EQ(b[999], 0xee);
    CHECK_COUNTS(pool, 2, 40 + (3u << 20));
    /* shrink */
    b = rp_resize(pool, b, 8);
    for (i = 0; i < 8; i++)
        CHECK_EQ(b[i], i);
    CHECK_STR(rp_block_tag(b), "(untagged)");
    CHECK_COUNTS(pool, 2, 48);
    /* to 0: a valid zero-size block, still counted, never a silent free */
    b = rp_resize(pool, b, 0);
    CHECK(b != NULL);
    CHECK_EQ(rp_block_size(b), 0);
    CHECK_COUNTS(pool, 2, 40);
    CHECK_INT(rp_pool_check(pool), 0);
    b = rp_resize_noexc(pool, b, 0);
    CHECK(b != NULL);
    b = rp_resize(pool, b, 5);
    CHECK_EQ(rp_block_size(b), 5);
    /* resize keeps a real tag */
    other = rp_resize(pool, other, 4000);
    CHECK_STR(rp_block_tag(other), "other");
    {
        rp_tag_stat st[4];
        size_t n = rp_pool_stats(pool, st, 4), k;
        for (k = 0; k < n; k++)
            if (strcmp(st[k].tag, "other") == 0) {
                CHECK_EQ(st[k].bytes, 4000);
                CHECK_EQ(st[k].allocs, 1); /* resizes are not allocations */
            }
    }
    rp_free(b);
    rp_free(other);
    tu_end_pool(pool);
}

static void test_resize_failure(void)
{
    rp_pool *pool = tu_pool("resize-fail");
    unsigned char *b = rp_alloc(pool, 100, "keep"), *r;
    void *other = rp_alloc(pool, 10, "other");
    size_t i;
    for (i = 0; i < 100; i++)
        b[i] = (unsigned char)(i * 3);
    /* the next underlying allocation fails (and all after it) */
    rp_debug_fail_after(1, 1);
    r = rp_resize_noexc(pool, b, 8u << 20);
    rp_debug_fail_after(0, 0);
    CHECK(r == NULL);
    CHECK_EQ(rp_block_size(b), 100);
    CHECK_STR(rp_block_tag(b), "keep");
    for (i = 0; i < 100; i++)
        CHECK_EQ(b[i], (unsigned char)(i * 3));
    CHECK_COUNTS(pool, 2, 110);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(rp_pool_walk(pool, find_block, b), 1); /* still in the ring */
    /* beyond the largest block: no injection needed */
    CHECK(rp_resize_noexc(pool, b, RP_MAX_SIZE + 1) == NULL);
    CHECK(rp_resize_noexc(pool, b, SIZE_MAX) == NULL);
    CHECK(rp_resize_noexc(pool, b, SIZE_MAX - 16) == NULL);
    CHECK_COUNTS(pool, 2, 110);
    /* the plain form calls the OOM handler; the block survives the escape */
    EXPECT_OOM(rp_resize(pool, b, SIZE_MAX - 16));
    CHECK_STR(tu_oom_call, "rp_resize");
    CHECK_EQ(tu_oom_size, SIZE_MAX - 16);
    CHECK_STR(tu_oom_tag, "keep");
    CHECK_COUNTS(pool, 2, 110);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_EQ(b[99], (unsigned char)(99 * 3));
    /* and the pool still works, including its lock */
    b = rp_resize(pool, b, 200);
    CHECK_EQ(b[99], (unsigned char)(99 * 3));
    rp_free(b);
    rp_free(other);
    tu_end_pool(pool);
}

static void test_overflow(void)
{
    rp_pool *pool = tu_pool("overflow");
    size_t half = SIZE_MAX / 2 + 1;
    unsigned char *z;
    size_t i;
    CHECK(rp_calloc_noexc(pool, half, 2, "ovf") == NULL);
    CHECK(rp_calloc_noexc(pool, 2, half, "ovf") == NULL);
    CHECK(rp_calloc_noexc(pool, SIZE_MAX, SIZE_MAX, "ovf") == NULL);
    CHECK(rp_calloc_noexc(pool, (size_t)1 << 32, ((size_t)1 << 32) + 1, "ovf") == NULL);
    CHECK(rp_calloc_noexc(pool, 1, SIZE_MAX, "ovf") == NULL);
    CHECK(rp_alloc_noexc(pool, SIZE_MAX, "ovf") == NULL);
    CHECK(rp_alloc_noexc(pool, SIZE_MAX - 1, "ovf") == NULL);
    CHECK(rp_alloc_noexc(pool, SIZE_MAX - 64, "ovf") == NULL);
    CHECK(rp_alloc_noexc(pool, RP_MAX_SIZE + 1, "ovf") == NULL);
    CHECK(rp_alloc_aligned_noexc(pool, 4096, SIZE_MAX - 100, "ovf") == NULL);
    CHECK(rp_memdup_noexc(pool, "x", SIZE_MAX - 8, "ovf") == NULL);
    CHECK_COUNTS(pool, 0, 0);

    EXPECT_OOM(rp_calloc(pool, half, 2, "ovf-tag"));
    CHECK_STR(tu_oom_call, "rp_calloc");
    CHECK_STR(tu_oom_tag, "ovf-tag");
    EXPECT_OOM(rp_alloc(pool, SIZE_MAX - 8, "huge"));
    CHECK_STR(tu_oom_call, "rp_alloc");
    CHECK_EQ(tu_oom_size, SIZE_MAX - 8);
    CHECK_STR(tu_oom_tag, "huge");
    EXPECT_OOM(rp_alloc(pool, RP_MAX_SIZE + 1, NULL));
    CHECK_STR(tu_oom_call, "rp_alloc");
    CHECK_EQ(tu_oom_size, RP_MAX_SIZE + 1);
    EXPECT_OOM(rp_alloc_aligned(pool, 64, SIZE_MAX - 1, "hugea"));
    CHECK_STR(tu_oom_call, "rp_alloc_aligned");
    CHECK_STR(tu_oom_tag, "hugea");
    EXPECT_OOM(rp_memdup(pool, "x", SIZE_MAX - 1, "hugem"));
    CHECK_STR(tu_oom_call, "rp_memdup");
    CHECK_COUNTS(pool, 0, 0);
    CHECK_INT(rp_pool_check(pool), 0);

    /* calloc zeroes, also when the memory is reused */
    z = rp_alloc(pool, 256, "z");
    memset(z, 0xff, 256);
    rp_free(z);
    z = rp_calloc(pool, 32, 8, "z");
    for (i = 0; i < 256; i++)
        CHECK_EQ(z[i], 0);
    CHECK_EQ(rp_block_size(z), 256);
    rp_free(z);
    tu_end_pool(pool);
}

/* --- the default OOM handler prints one line and aborts (child process) */
static void child_default_oom(const char *arg)
{
    rp_pool *pool = tu_pool("doomed");
    (void)arg;
    (void)rp_alloc(pool, SIZE_MAX - 8, "bigtag");
    exit(3); /* not reached if the contract holds */
}

static void declining_handler(const char *call, size_t size, const char *tag)
{
    (void)call; (void)size; (void)tag; /* returns: declines to escape */
}

static void child_declining_oom(const char *arg)
{
    rp_pool *pool = tu_pool("doomed");
    (void)arg;
    rp_set_oom_handler(declining_handler);
    if (rp_calloc(pool, SIZE_MAX, 4, "t") == NULL)
        exit(4); /* a plain form returned NULL */
    exit(3);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_default_oom_aborts(void)
{
    tu_result r;
    char size[32];
    tu_spawn("default-oom", NULL, NULL, &r);
    CHECK(WIFSIGNALED(r.status));
    CHECK_INT(WTERMSIG(r.status), SIGABRT);
    snprintf(size, sizeof size, "%zu", (size_t)(SIZE_MAX - 8));
    CHECK(strstr(r.err, "rp_alloc") != NULL);
    CHECK(strstr(r.err, size) != NULL);
    CHECK(strstr(r.err, "bigtag") != NULL);
    CHECK_INT(count_lines(r.err), 1);

    tu_spawn("declining-oom", NULL, NULL, &r);
    CHECK(WIFSIGNALED(r.status));
    CHECK_INT(WTERMSIG(r.status), SIGABRT);
}

static void test_tags(void)
{
    rp_pool *pool = tu_pool("tags");
    char t1[] = "parser", t2[] = "parser"; /* equal content, two addresses */
    char dyn[32];
    const char *it, *it2, *it3;
    rp_tag_stat st[8];
    void *a, *b, *c, *d, *e;
    size_t n;
    CHECK(&t1[0] != &t2[0]);
    a = rp_alloc(pool, 10, t1);
    b = rp_alloc(pool, 20, t2);
    c = rp_alloc(pool, 30, NULL);
    CHECK_STR(rp_block_tag(c), "(untagged)");
    n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 2);
    CHECK_STR(st[0].tag, "parser");
    CHECK_EQ(st[0].blocks, 2);
    CHECK_EQ(st[0].bytes, 30);
    CHECK_STR(st[1].tag, "(untagged)");
    CHECK_EQ(st[1].blocks, 1);

    /* interned tags: a pool-owned copy, one per content */
    snprintf(dyn, sizeof dyn, "conn-%d", 7);
    it = rp_pool_intern_tag(pool, dyn);
    CHECK(it != NULL && it != dyn);
    CHECK_STR(it, "conn-7");
    it2 = rp_pool_intern_tag(pool, "conn-7");
    CHECK(it2 == it);
    snprintf(dyn, sizeof dyn, "conn-%d", 8);
    CHECK_STR(it, "conn-7"); /* not aliased to the caller's buffer */
    it3 = rp_pool_intern_tag(pool, dyn);
    CHECK(it3 != it);
    CHECK_STR(it3, "conn-8");
    d = rp_alloc(pool, 5, it);
    e = rp_alloc(pool, 6, it3);
    memset(dyn, 0, sizeof dyn);
    CHECK_STR(rp_block_tag(d), "conn-7");
    CHECK_STR(rp_block_tag(e), "conn-8");
    n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 4);
    CHECK_STR(st[2].tag, "conn-7");
    CHECK_STR(st[3].tag, "conn-8");
    /* interning does not allocate blocks */
    CHECK_COUNTS(pool, 5, 71);
    /* a bad argument */
    {
        rp_error_handler prev = rp_set_error_handler(tu_record_error);
        tu_errors_reset();
        CHECK(rp_pool_intern_tag(pool, NULL) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        rp_set_error_handler(prev);
    }
    rp_free(a); rp_free(b); rp_free(c); rp_free(d); rp_free(e);
    /* tags without blocks stay listed */
    CHECK_EQ(rp_pool_stats(pool, NULL, 0), 4);
    tu_end_pool(pool);
}

static void test_macros(void)
{
    rp_pool *pool = tu_pool("macros");
    char want[256];
    void *b[12];
    int line[12], k = 0, i;
    b[k] = RP_ALLOC(pool, 8); line[k++] = __LINE__;
    b[k] = RP_ALLOC_NOEXC(pool, 8); line[k++] = __LINE__;
    b[k] = RP_CALLOC(pool, 2, 8); line[k++] = __LINE__;
    b[k] = RP_CALLOC_NOEXC(pool, 2, 8); line[k++] = __LINE__;
    b[k] = RP_STRDUP(pool, "abc"); line[k++] = __LINE__;
    b[k] = RP_STRDUP_NOEXC(pool, "abc"); line[k++] = __LINE__;
    b[k] = RP_MEMDUP(pool, "abcd", 4); line[k++] = __LINE__;
    b[k] = RP_MEMDUP_NOEXC(pool, "abcd", 4); line[k++] = __LINE__;
    b[k] = RP_ALLOC_ALIGNED(pool, 256, 8); line[k++] = __LINE__;
    b[k] = RP_STRCONCAT(pool, 2, "ab", "cd"); line[k++] = __LINE__;
    for (i = 0; i < k; i++) {
        CHECK(b[i] != NULL);
        snprintf(want, sizeof want, "%s:%d", __FILE__, line[i]);
        CHECK_STR(rp_block_tag(b[i]), want);
    }
    CHECK_STR((char *)b[9], "abcd");
    CHECK_EQ(rp_pool_stats(pool, NULL, 0), (size_t)k);
    for (i = 0; i < k; i++)
        rp_free(b[i]);
    tu_end_pool(pool);
}

static void test_strings(void)
{
    rp_pool *pool = tu_pool("strings");
    char *s, *c, *c0, *c1, *sn, *cn;
    unsigned char *m, *mn, *m0;
    static const unsigned char bytes[5] = {0, 1, 2, 0, 255};
    s = rp_strdup(pool, "hello", "s");
    CHECK_STR(s, "hello");
    CHECK_EQ(rp_block_size(s), 6);
    CHECK_STR(rp_block_tag(s), "s");
    sn = rp_strdup_noexc(pool, "", "s");
    CHECK(sn != NULL && sn[0] == '\0');
    c = rp_strconcat(pool, "c", 4, "foo", "", "bar", "/baz");
    CHECK_STR(c, "foobar/baz");
    CHECK_EQ(rp_block_size(c), 11);
    CHECK_STR(rp_block_tag(c), "c");
    c0 = rp_strconcat(pool, "c", 0);
    CHECK(c0 != NULL && c0[0] == '\0');
    c1 = rp_strconcat(pool, NULL, 1, "one");
    CHECK_STR(c1, "one");
    CHECK_STR(rp_block_tag(c1), "(untagged)");
    cn = rp_strconcat_noexc(pool, "c", 2, "x", "y");
    CHECK_STR(cn, "xy");
    m = rp_memdup(pool, bytes, 5, "m");
    CHECK(memcmp(m, bytes, 5) == 0);
    CHECK_EQ(rp_block_size(m), 5);
    mn = rp_memdup_noexc(pool, bytes, 5, "m");
    CHECK(mn != NULL && memcmp(mn, bytes, 5) == 0 && mn != m);
    m0 = rp_memdup(pool, bytes, 0, "m");
    CHECK(m0 != NULL);
    CHECK_EQ(rp_block_size(m0), 0);
    CHECK_COUNTS(pool, 9, 6 + 1 + 11 + 1 + 4 + 3 + 5 + 5 + 0);
    rp_free(s); rp_free(sn); rp_free(c); rp_free(c0); rp_free(c1);
    rp_free(cn); rp_free(m); rp_free(mn); rp_free(m0);
    tu_end_pool(pool);
}

/* Bad arguments are misuse: the error handler, then NULL. */
static void test_bad_args(void)
{
    rp_pool *pool = tu_pool("bad-args");
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    CHECK(rp_alloc_noexc(NULL, 8, "x") == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK(rp_strdup_noexc(pool, NULL, "x") == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK(rp_strdup(pool, NULL, "x") == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK(rp_strconcat_noexc(pool, "x", -1) == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK(rp_memdup_noexc(pool, NULL, 4, "x") == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK(rp_resize_noexc(NULL, NULL, 8) == NULL);
    CHECK_ONE_ERROR(RP_EINVAL);
    CHECK_COUNTS(pool, 0, 0);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* rp_calloc's memory is zero however the block is found: a freed block of
   its class written all over (free-list hit), a freed headerless slot (its
   free-list words), a carved block, a big block, in unsynchronised and
   thread-safe pools; with the counters of an rp_alloc. Every size from 1 to
   80 bytes (the headerless slots' inline zeroing: 1, 2 or 4 stores,
   overlapping), then larger ones. */
static void test_calloc_reused(void)
{
    static const size_t big[] = {100, 1000, 1008, 1009, 5000, 32752, 32753, 40000, 300000};
    const size_t nbig = sizeof big / sizeof big[0];
    for (int unsync = 0; unsync < 2; unsync++) {
        rp_pool *pool = tu_pool_ex("calloc_reused", unsync ? RP_POOL_UNSYNC : 0);
        for (size_t k = 0; k < 80 + nbig; k++) {
            size_t n = k < 80 ? k + 1 : big[k - 80];
            for (int round = 0; round < 3; round++) {
                unsigned char *d[4];
                for (int i = 0; i < 4; i++) {
                    d[i] = rp_alloc(pool, n, "dirty");
                    memset(d[i], 0xa5, n);
                }
                for (int i = 0; i < 4; i++) rp_free(d[i]);
                unsigned char *z[5];
                for (int i = 0; i < 5; i++) {
                    z[i] = i & 1 ? rp_calloc_noexc(pool, n, 1, "zero")
                                 : rp_calloc(pool, 1, n, "zero");
                    CHECK(z[i] != NULL);
                    for (size_t j = 0; j < n; j++) CHECK(z[i][j] == 0);
                    CHECK_EQ(rp_block_size(z[i]), n);
                    CHECK_STR(rp_block_tag(z[i]), "zero");
                }
                rp_pool_info info = tu_info(pool);
                CHECK_EQ(info.bytes, 5 * n);
                for (int i = 0; i < 5; i++) rp_free(z[i]);
            }
        }
        tu_end_pool(pool);
    }
}

/* The tag of a pool's last allocation is found by one compare before the
   pointer cache: two tag pointers of one cache slot (512 bytes apart),
   another one, and a NULL tag, in runs and alternating, then a reset and
   again: every block counted under its own tag, in unsynchronised and
   thread-safe pools, both backings. */
static void test_tags_alternate(void)
{
    static char names[1024];
    char *ta = names, *tb = names + 512, *tc = names + 40;   /* ta, tb: one slot */
    const char *tags[4] = {ta, tb, tc, NULL};
    snprintf(ta, 16, "ta");
    snprintf(tb, 16, "tb");
    snprintf(tc, 16, "tc");
    for (int unsync = 0; unsync < 2; unsync++) {
        rp_pool *pool = tu_pool_ex("tags_alternate", unsync ? RP_POOL_UNSYNC : 0);
        for (int round = 0; round < 2; round++) {
            void *blk[64];
            size_t want_blocks[4] = {0}, want_bytes[4] = {0};
            for (int i = 0; i < 64; i++) {
                /* runs of 3, then alternating */
                int k = i < 24 ? (i / 3) % 4 : i % 4;
                size_t n = 1 + (size_t)i * 7;
                blk[i] = rp_alloc(pool, n, tags[k]);
                CHECK(blk[i] != NULL);
                CHECK_STR(rp_block_tag(blk[i]), k == 3 ? "(untagged)" : tags[k]);
                want_blocks[k]++;
                want_bytes[k] += n;
            }
            rp_tag_stat st[8];
            size_t n = rp_pool_stats(pool, st, 8);
            CHECK_EQ(n, 4);
            for (size_t j = 0; j < n; j++) {
                int k = 0;
                while (k < 3 && strcmp(st[j].tag, tags[k]) != 0) k++;
                CHECK_EQ(st[j].blocks, want_blocks[k]);
                CHECK_EQ(st[j].bytes, want_bytes[k]);
                CHECK_EQ(st[j].allocs, (uint64_t)want_blocks[k] * (uint64_t)(round + 1));
            }
            for (int i = 0; i < 64; i += 2) rp_free(blk[i]);
            if (round == 0) {
                CHECK_EQ(rp_pool_reset(pool), 0);
                n = rp_pool_stats(pool, st, 8);
                for (size_t j = 0; j < n; j++) CHECK_EQ(st[j].blocks, 0);
            } else {
                for (int i = 1; i < 64; i += 2) rp_free(blk[i]);
            }
        }
        tu_end_pool(pool);
    }
}

/* A freed block's slot is on its class's list until an allocation takes
   it again: walks see exactly the live blocks with their sizes and tags,
   whether a block was freed by rp_free's fast path, after a destructor
   (the general path) or by a resize that moved it, and when the slot is
   taken again for another size of its class. */
struct walk_acc { size_t n, bytes; int bad; void *const *live; size_t nlive; };
static void noop_dtor(void *block) { (void)block; }
static int walk_count(void *block, size_t size, const char *tag, void *arg)
{
    struct walk_acc *w = arg;
    size_t i = 0;
    while (i < w->nlive && w->live[i] != block) i++;
    if (i == w->nlive || rp_block_size(block) != size || strcmp(tag, "slots") != 0) w->bad++;
    w->n++;
    w->bytes += size;
    return 0;
}
static void test_walk_free_slots(void)
{
    for (int unsync = 0; unsync < 2; unsync++) {
        rp_pool *pool = tu_pool_ex("walk_free_slots", unsync ? RP_POOL_UNSYNC : 0);
        void *b[48];
        size_t want = 0;
        for (int i = 0; i < 48; i++) {
            b[i] = rp_alloc(pool, 17 + (size_t)(i % 6) * 40, "slots");
            CHECK(b[i] != NULL);
            if (i % 8 == 3) CHECK_EQ(rp_set_destructor(b[i], noop_dtor), 0);
        }
        for (int round = 0; round < 3; round++) {
            /* free every third block (the fast path; a destructor: the
               general one), move every fifth to a larger class */
            for (int i = round; i < 48; i += 3) {
                rp_free(b[i]);
                b[i] = NULL;
            }
            for (int i = 1; i < 48; i += 5)
                if (b[i]) {
                    b[i] = rp_resize(pool, b[i], rp_block_size(b[i]) + 64);
                    CHECK(b[i] != NULL);
                }
            /* the freed slots taken again, by sizes of their classes */
            for (int i = round; i < 48; i += 3) {
                b[i] = rp_alloc(pool, 18 + (size_t)(i % 6) * 40 - (size_t)round, "slots");
                CHECK(b[i] != NULL);
            }
            want = 0;
            for (int i = 0; i < 48; i++) want += rp_block_size(b[i]);
            struct walk_acc w = {0, 0, 0, b, 48};
            CHECK_EQ(rp_pool_walk(pool, walk_count, &w), 0);
            CHECK_EQ(w.n, 48);
            CHECK_EQ(w.bytes, want);
            CHECK_EQ(w.bad, 0);
            rp_pool_info info = tu_info(pool);
            CHECK_EQ(info.bytes, want);
            CHECK_EQ(info.blocks, 48);
        }
        for (int i = 0; i < 48; i++) rp_free(b[i]);
        struct walk_acc w = {0, 0, 0, b, 0};
        CHECK_EQ(rp_pool_walk(pool, walk_count, &w), 0);
        CHECK_EQ(w.n, 0);
        tu_end_pool(pool);
    }
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"alignment", test_alignment},
        {"aligned", test_aligned},
        {"aligned_bad", test_aligned_bad},
        {"size_zero", test_size_zero},
        {"resize", test_resize},
        {"resize_failure", test_resize_failure},
        {"overflow", test_overflow},
        {"calloc_reused", test_calloc_reused},
        {"default_oom_aborts", test_default_oom_aborts},
        {"tags", test_tags},
        {"tags_alternate", test_tags_alternate},
        {"walk_free_slots", test_walk_free_slots},
        {"macros", test_macros},
        {"strings", test_strings},
        {"bad_args", test_bad_args},
    };
    static const tu_child children[] = {
        {"default-oom", child_default_oom},
        {"declining-oom", child_declining_oom},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children,
                   TU_NCASES(children));
}
