/* test_stats.c -- per-tag counters against a model, rp_pool_stats cost,
   rp_pool_walk, rp_pool_check, rp_pool_get_info, bulk destroy. */
#include "testutil.h"

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* ---------------------------------------------------------------- model */
#define NTAGS 6
static const char *const tag_names[NTAGS] = {"alpha", "beta", "gamma", "delta",
                                            NULL, "epsilon"};
typedef struct model_tag {
    const char *name;
    size_t blocks, bytes, peak;
    uint64_t allocs;
} model_tag;

static model_tag model[NTAGS + 1];
static size_t model_n;

static model_tag *model_get(const char *tag)
{
    const char *name = tag ? tag : "(untagged)";
    size_t i;
    for (i = 0; i < model_n; i++)
        if (strcmp(model[i].name, name) == 0)
            return &model[i];
    memset(&model[model_n], 0, sizeof model[0]);
    model[model_n].name = name;
    return &model[model_n++];
}

static void model_add(model_tag *m, size_t bytes)
{
    m->bytes += bytes;
    if (m->bytes > m->peak)
        m->peak = m->bytes;
}

static void check_model(rp_pool *pool)
{
    rp_tag_stat st[NTAGS + 2];
    size_t n = rp_pool_stats(pool, st, NTAGS + 2), i, blocks = 0, bytes = 0;
    uint64_t allocs = 0;
    rp_pool_info info;
    CHECK_EQ(n, model_n);
    for (i = 0; i < n; i++) {
        /* first-use order */
        CHECK_STR(st[i].tag, model[i].name);
        CHECK_EQ(st[i].blocks, model[i].blocks);
        CHECK_EQ(st[i].bytes, model[i].bytes);
        CHECK_EQ(st[i].peak_bytes, model[i].peak);
        CHECK_EQ(st[i].allocs, model[i].allocs);
        blocks += model[i].blocks;
        bytes += model[i].bytes;
        allocs += model[i].allocs;
    }
    CHECK_COUNTS(pool, blocks, bytes);
    info = tu_info(pool);
    CHECK_EQ(info.version, 1);
    CHECK_EQ(info.blocks, blocks);
    CHECK_EQ(info.bytes, bytes);
    CHECK_EQ(info.allocs, allocs);
    CHECK_EQ(info.tags, n);
    CHECK(info.peak_bytes >= bytes);
    CHECK(info.reserved_bytes >= bytes);
}

static void test_counters(void)
{
    rp_pool *pool = tu_pool("counters");
    enum { SLOTS = 128 };
    void *slot[SLOTS] = {0};
    int steps = tu_quick() ? 3000 : 30000, i;
    size_t peak_total = 0, total = 0;
    model_n = 0;
    for (i = 0; i < steps; i++) {
        uint64_t r = rng();
        size_t k = (size_t)(r % SLOTS);
        size_t sz = (size_t)((r >> 8) % 700);
        const char *tag = tag_names[(r >> 20) % NTAGS];
        int op = (int)((r >> 32) % 8);
        if (slot[k] == NULL) {
            model_tag *m;
            if (op == 0) { /* resize(NULL) allocates an untagged block */
                slot[k] = rp_resize(pool, NULL, sz);
                tag = NULL;
            } else if (op == 1) {
                slot[k] = rp_calloc(pool, 1, sz, tag);
            } else if (op == 2) {
                slot[k] = rp_alloc_aligned(pool, (size_t)64 << (r % 4), sz, tag);
            } else {
                slot[k] = rp_alloc(pool, sz, tag);
            }
            m = model_get(tag);
            m->blocks++;
            m->allocs++;
            model_add(m, sz);
            total += sz;
        } else if (op < 3) {
            model_tag *m = model_get(rp_block_tag(slot[k]));
            size_t old = rp_block_size(slot[k]);
            slot[k] = op == 0 ? rp_resize_noexc(pool, slot[k], sz)
                              : rp_resize(pool, slot[k], sz);
            CHECK(slot[k] != NULL);
            m->bytes -= old;
            model_add(m, sz);
            total = total - old + sz;
        } else {
            model_tag *m = model_get(rp_block_tag(slot[k]));
            m->blocks--;
            m->bytes -= rp_block_size(slot[k]);
            total -= rp_block_size(slot[k]);
            rp_free(slot[k]);
            slot[k] = NULL;
        }
        if (total > peak_total)
            peak_total = total;
        if (i % 997 == 0)
            check_model(pool);
    }
    check_model(pool);
    {
        rp_pool_info info;
        info = tu_info(pool);
        CHECK_EQ(info.peak_bytes, peak_total);
    }
    /* a short buffer: the count is the number of tags, cap entries filled */
    {
        rp_tag_stat two[3];
        memset(two, 0xcc, sizeof two);
        CHECK_EQ(rp_pool_stats(pool, two, 2), model_n);
        CHECK_STR(two[0].tag, model[0].name);
        CHECK_STR(two[1].tag, model[1].name);
        CHECK_EQ(((unsigned char *)&two[2])[0], 0xcc); /* untouched */
        CHECK_EQ(rp_pool_stats(pool, NULL, 0), model_n);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    for (i = 0; i < SLOTS; i++)
        if (slot[i] != NULL) {
            model_tag *m = model_get(rp_block_tag(slot[i]));
            m->blocks--;
            m->bytes -= rp_block_size(slot[i]);
            rp_free(slot[i]);
        }
    check_model(pool);
    tu_end_pool(pool);
}

/* rp_pool_stats costs O(tags): measured with 1e6 outstanding blocks. */
static void test_stats_cost(void)
{
    rp_pool *pool = tu_pool_ex("stats-cost", RP_POOL_UNSYNC);
    size_t n = tu_quick() ? 100000 : 1000000, i;
    void **b = malloc(n * sizeof *b);
    static const char *tags[8] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"};
    rp_tag_stat st[8];
    double best = 1e9, small_best = 1e9;
    int round;
    CHECK(b != NULL);
    /* baseline: a handful of blocks */
    for (i = 0; i < 8; i++)
        b[i] = rp_alloc(pool, 16, tags[i]);
    for (round = 0; round < 20; round++) {
        double t0 = tu_now();
        CHECK_EQ(rp_pool_stats(pool, st, 8), 8);
        t0 = tu_now() - t0;
        if (t0 < small_best)
            small_best = t0;
    }
    for (i = 8; i < n; i++)
        b[i] = rp_alloc(pool, 16 + (i & 15), tags[i & 7]);
    for (round = 0; round < 20; round++) {
        double t0 = tu_now();
        size_t k = rp_pool_stats(pool, st, 8);
        t0 = tu_now() - t0;
        CHECK_EQ(k, 8);
        if (t0 < best)
            best = t0;
    }
    {
        size_t blocks = 0;
        for (i = 0; i < 8; i++)
            blocks += st[i].blocks;
        CHECK_EQ(blocks, n);
    }
    printf("     rp_pool_stats: %zu blocks, 8 tags: best of 20 %.0f ns "
           "(8 blocks: %.0f ns)\n", n, best * 1e9, small_best * 1e9);
    CHECK(best < 5e-3);
    for (i = 0; i < n; i++)
        rp_free(b[n - 1 - i]);
    free(b);
    tu_end_pool(pool);
}

/* ----------------------------------------------------------------- walk */
typedef struct walk_state {
    void **blocks;
    char *seen;
    size_t n, visits, bytes;
    size_t stop_at;
} walk_state;

static int visitor(void *block, size_t size, const char *tag, void *arg)
{
    walk_state *w = arg;
    size_t i;
    w->visits++;
    w->bytes += size;
    for (i = 0; i < w->n; i++)
        if (w->blocks[i] == block)
            break;
    CHECK(i < w->n);               /* a block we own */
    CHECK(!w->seen[i]);            /* visited once */
    w->seen[i] = 1;
    CHECK_EQ(size, rp_block_size(block));
    CHECK_STR(tag, rp_block_tag(block));
    if (w->stop_at != 0 && w->visits == w->stop_at)
        return 7;
    return 0;
}

static void test_walk(void)
{
    rp_pool *pool = tu_pool("walk");
    enum { N = 200 };
    void *blocks[N];
    char seen[N];
    walk_state w;
    size_t i, bytes = 0;
    memset(&w, 0, sizeof w);
    w.blocks = blocks;
    w.seen = seen;
    w.n = N;
    CHECK_INT(rp_pool_walk(pool, visitor, &w), 0);
    CHECK_EQ(w.visits, 0);
    for (i = 0; i < N; i++) {
        blocks[i] = i % 3 == 0 ? rp_alloc_aligned(pool, 512, i, "w3")
                               : rp_alloc(pool, i * 5, i % 2 ? "odd" : NULL);
        bytes += rp_block_size(blocks[i]);
    }
    memset(seen, 0, sizeof seen);
    CHECK_INT(rp_pool_walk(pool, visitor, &w), 0);
    CHECK_EQ(w.visits, N);
    CHECK_EQ(w.bytes, bytes);
    /* stops at the first non-zero return and passes it back */
    memset(seen, 0, sizeof seen);
    w.visits = 0;
    w.stop_at = 10;
    CHECK_INT(rp_pool_walk(pool, visitor, &w), 7);
    CHECK_EQ(w.visits, 10);
    /* after freeing half, exactly the other half */
    for (i = 0; i < N; i += 2) {
        bytes -= rp_block_size(blocks[i]);
        rp_free(blocks[i]);
        blocks[i] = NULL;
    }
    memset(seen, 0, sizeof seen);
    w.visits = 0;
    w.bytes = 0;
    w.stop_at = 0;
    CHECK_INT(rp_pool_walk(pool, visitor, &w), 0);
    CHECK_EQ(w.visits, N / 2);
    CHECK_EQ(w.bytes, bytes);
    /* bad arguments: the error code is the answer */
    CHECK_INT(rp_pool_walk(pool, NULL, NULL), RP_EINVAL);
    CHECK_INT(rp_pool_walk(NULL, visitor, &w), RP_EINVAL);
    for (i = 1; i < N; i += 2)
        rp_free(blocks[i]);
    tu_end_pool(pool);
}

static void test_info(void)
{
    rp_pool *pool = tu_pool_ex("info", RP_POOL_CHECKED);
    rp_pool_info info;
    void *b[100];
    size_t i, reserved0;
    info = tu_info(pool);
    CHECK_EQ(info.version, 1);
    CHECK_EQ(info.flags & (RP_POOL_CHECKED | RP_POOL_ARENA), RP_POOL_CHECKED | tu_backing);
    CHECK_EQ(info.blocks, 0);
    CHECK_EQ(info.children, 0);
    reserved0 = info.reserved_bytes;
    for (i = 0; i < 100; i++)
        b[i] = rp_alloc(pool, 100, "x");
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    CHECK_EQ(info.blocks, 100);
    CHECK_EQ(info.bytes, 10000);
    /* every block costs at least its payload and a header */
    CHECK(info.reserved_bytes >= reserved0 + 100 * (100 + 32));
    if (tu_backing == RP_POOL_ARENA)
        CHECK(info.chunks >= 1);
    else
        CHECK_EQ(info.chunks, 0);
    CHECK_STR(rp_pool_name(pool), "info");
    CHECK(rp_pool_parent(pool) == NULL);
    {
        rp_error_handler prev = rp_set_error_handler(tu_record_error);
        rp_pool_info small;
        tu_errors_reset();
        CHECK_INT(rp_pool_get_info(pool, NULL), RP_EINVAL);
        CHECK_INT(rp_pool_get_info(NULL, &info), RP_EINVAL);
        CHECK_INT(rp_pool_check(NULL), RP_EINVAL);
        memset(&small, 0, sizeof small);
        small.struct_size = 0;
        CHECK_INT(rp_pool_get_info(pool, &small), RP_EINVAL);
        rp_set_error_handler(prev);
    }
    for (i = 0; i < 100; i++)
        rp_free(b[i]);
    {
        rp_pool *unnamed = rp_pool_create(NULL);
        CHECK(unnamed != NULL);
        CHECK_STR(rp_pool_name(unnamed), "(unnamed)");
        rp_pool_destroy(unnamed);
    }
    tu_end_pool(pool);
}

/* rp_pool_destroy frees every outstanding block in one call; the valgrind
   and ASan runs of this case prove nothing is left behind. */
static void test_destroy_frees_all(void)
{
    int round;
    for (round = 0; round < 3; round++) {
        rp_pool *pool = tu_pool_ex("bulk", round == 2 ? RP_POOL_CHECKED : 0);
        size_t i, n = tu_quick() ? 2000 : 20000;
        void *r = NULL;
        for (i = 0; i < n; i++) {
            switch (i % 6) {
            case 0: (void)rp_alloc(pool, i % 300, "a"); break;
            case 1: (void)rp_calloc(pool, 3, i % 50, "c"); break;
            case 2: (void)rp_strdup(pool, "some string", NULL); break;
            case 3: (void)rp_alloc_aligned(pool, 4096, 10, "al"); break;
            case 4: r = rp_resize(pool, r, i); break;
            default: (void)rp_alloc(pool, 70000, "big"); i += 50; break;
            }
        }
        CHECK(rp_pool_outstanding(pool, NULL) > 0);
        CHECK_INT(rp_pool_check(pool), 0);
        tu_watched = NULL;
        rp_pool_destroy(pool);
    }
    rp_pool_destroy(NULL); /* no-op */
}

/* Bytes and peaks through shrinks, growths back to the peak and past it,
   frees and a reset (bytes to 0, peaks kept), for the tag and the pool:
   the counters keep bytes as room below the peak. */
static void test_peaks(void)
{
    rp_pool *pool = tu_pool("peaks");
    rp_tag_stat st[2];
    rp_pool_info info;
#define PEAKS(b, pk) do { \
        CHECK_EQ(rp_pool_stats(pool, st, 2), 1); \
        CHECK_EQ(st[0].bytes, (b)); \
        CHECK_EQ(st[0].peak_bytes, (pk)); \
        info = tu_info(pool); \
        CHECK_EQ(info.bytes, (b)); \
        CHECK_EQ(info.peak_bytes, (pk)); \
    } while (0)
    void *p = rp_alloc(pool, 100, "a"), *q = rp_alloc(pool, 50, "a");
    PEAKS(150, 150);
    rp_free(p);
    PEAKS(50, 150);
    q = rp_resize(pool, q, 150);
    PEAKS(150, 150);
    q = rp_resize(pool, q, 8);
    PEAKS(8, 150);
    q = rp_resize(pool, q, 200);
    PEAKS(200, 200);
    p = rp_calloc(pool, 3, 7, "a");
    PEAKS(221, 221);
    rp_free(q);
    rp_free(p);
    PEAKS(0, 221);
    p = rp_alloc(pool, 5000, "a");
    PEAKS(5000, 5000);
    CHECK_INT(rp_pool_reset(pool), 0);
    info = tu_info(pool);
    CHECK_EQ(info.bytes, 0);
    CHECK_EQ(info.peak_bytes, 5000);
    p = rp_alloc(pool, 16, "a");
    PEAKS(16, 5000);
    p = rp_resize(pool, p, 5001);
    PEAKS(5001, 5001);
#undef PEAKS
    rp_pool_destroy(pool);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"counters", test_counters},
        {"peaks", test_peaks},
        {"stats_cost", test_stats_cost},
        {"walk", test_walk},
        {"info", test_info},
        {"destroy_frees_all", test_destroy_frees_all},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
