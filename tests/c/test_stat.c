/* test_stat.c -- the default pool facade (rp_stat_*), the caml_stat_* model:
   plain malloc before rp_stat_create_pool(), tracked under "rp_stat" after,
   everything freed by rp_stat_destroy_pool(). */
#include "testutil.h"

static void test_before_create(void)
{
    char *s, *c;
    unsigned char *z;
    void *a;
    size_t i;
    CHECK(rp_stat_pool() == NULL);
    a = rp_stat_alloc(100);
    CHECK(a != NULL);
    memset(a, 1, 100);
    a = rp_stat_resize(a, 1000);
    CHECK(((unsigned char *)a)[99] == 1);
    z = rp_stat_calloc(10, 10);
    for (i = 0; i < 100; i++)
        CHECK_EQ(z[i], 0);
    s = rp_stat_strdup("plain");
    CHECK_STR(s, "plain");
    c = rp_stat_strconcat(3, "a", "b", "c");
    CHECK_STR(c, "abc");
    CHECK(rp_stat_calloc_noexc(SIZE_MAX / 2 + 1, 2) == NULL);
    EXPECT_OOM(rp_stat_calloc(SIZE_MAX / 2 + 1, 2));
    CHECK_EQ(tu_oom_size, SIZE_MAX);
    CHECK(rp_stat_alloc_noexc((size_t)1 << 62) == NULL);
    /* plain malloc blocks: the C library's free would do too */
    rp_stat_free(a);
    rp_stat_free(z);
    rp_stat_free(s);
    free(c);
    rp_stat_free(NULL);
    CHECK(rp_stat_pool() == NULL);
}

static void test_tracked(void)
{
    rp_pool *pool;
    void *a, *z;
    char *s, *c, *sn, *cn;
    rp_tag_stat st[4];
    rp_stat_create_pool();
    pool = rp_stat_pool();
    CHECK(pool != NULL);
    tu_watched = pool;
    rp_stat_create_pool(); /* twice: a no-op */
    CHECK(rp_stat_pool() == pool);
    a = rp_stat_alloc(100);
    CHECK(rp_block_pool(a) == pool);
    CHECK_STR(rp_block_tag(a), "rp_stat");
    z = rp_stat_calloc(4, 5);
    CHECK(z != NULL);
    CHECK(rp_stat_calloc_noexc(SIZE_MAX / 2 + 1, 2) == NULL);
    EXPECT_OOM(rp_stat_calloc(SIZE_MAX / 2 + 1, 2));
    /* the handler is told SIZE_MAX for an n * size that overflows, as by
       rp_calloc: it was told the wrapped product (here 0) */
    CHECK_EQ(tu_oom_size, SIZE_MAX);
    EXPECT_OOM(rp_calloc(pool, SIZE_MAX / 2 + 1, 2, "t"));
    CHECK_EQ(tu_oom_size, SIZE_MAX);
    CHECK(rp_stat_alloc_noexc(SIZE_MAX - 8) == NULL);
    EXPECT_OOM(rp_stat_alloc(SIZE_MAX - 8));
    s = rp_stat_strdup("tracked");
    sn = rp_stat_strdup_noexc("t2");
    c = rp_stat_strconcat(2, "x", "yz");
    cn = rp_stat_strconcat_noexc(2, "p", "q");
    CHECK_STR(s, "tracked");
    CHECK_STR(sn, "t2");
    CHECK_STR(c, "xyz");
    CHECK_STR(cn, "pq");
    CHECK_COUNTS(pool, 6, 100 + 20 + 8 + 3 + 4 + 3);
    a = rp_stat_resize(a, 300);
    CHECK(rp_stat_resize_noexc(a, SIZE_MAX - 8) == NULL);
    CHECK_EQ(rp_block_size(a), 300);
    a = rp_stat_resize_noexc(a, 200);
    CHECK(a != NULL);
    CHECK_STR(rp_block_tag(a), "rp_stat");
    CHECK_EQ(rp_pool_stats(pool, st, 4), 1);
    CHECK_STR(st[0].tag, "rp_stat");
    CHECK_EQ(st[0].blocks, 6);
    CHECK_EQ(st[0].bytes, 200 + 20 + 8 + 3 + 4 + 3);
    rp_stat_free(a);
    rp_stat_free(z);
    rp_stat_free(s);
    rp_stat_free(sn);
    rp_stat_free(c);
    rp_stat_free(cn);
    CHECK_EQ(rp_pool_outstanding(pool, NULL), 0);
    CHECK_INT(rp_pool_check(pool), 0);
    tu_watched = NULL;
    rp_stat_destroy_pool();
    CHECK(rp_stat_pool() == NULL);
}

/* What the default pool still holds goes with it (valgrind proves it), and
   afterwards the facade is plain malloc again. */
static void test_destroy_frees(void)
{
    int round;
    void *p;
    for (round = 0; round < 3; round++) {
        int i;
        rp_stat_create_pool();
        CHECK(rp_stat_pool() != NULL);
        for (i = 0; i < 500; i++) {
            (void)rp_stat_alloc((size_t)i);
            (void)rp_stat_strdup("leaked on purpose");
        }
        CHECK_EQ(rp_pool_outstanding(rp_stat_pool(), NULL), 1000);
        rp_stat_destroy_pool();
        CHECK(rp_stat_pool() == NULL);
    }
    rp_stat_destroy_pool(); /* without a pool: a no-op */
    p = rp_stat_alloc(10);
    CHECK(p != NULL);
    free(p);
}

/* A NULL string, a negative count or a NULL string argument is misuse, as
   for rp_strdup and rp_strconcat: one RP_EINVAL through the error handler
   and NULL, from the plain form and the _noexc twin, before the default
   pool exists and with it; never the OOM handler (the plain forms used to
   call it with size 0, and the twins returned NULL without a report). */
static void stat_misuse_calls(void)
{
    rp_error_handler prev_err = rp_set_error_handler(tu_record_error);
    rp_oom_handler prev_oom = rp_set_oom_handler(tu_oom_escape);
    const char *volatile at = "start";
    tu_errors_reset();
    tu_oom_hits = 0;
    if (setjmp(tu_oom_env) == 0) {
        at = "rp_stat_strdup(NULL)";
        CHECK(rp_stat_strdup(NULL) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "rp_stat_strdup_noexc(NULL)";
        CHECK(rp_stat_strdup_noexc(NULL) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "rp_stat_strconcat(-1)";
        CHECK(rp_stat_strconcat(-1) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "rp_stat_strconcat_noexc(-1)";
        CHECK(rp_stat_strconcat_noexc(-1) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "rp_stat_strconcat(3, \"a\", NULL, \"b\")";
        CHECK(rp_stat_strconcat(3, "a", (const char *)NULL, "b") == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "rp_stat_strconcat_noexc(3, \"a\", NULL, \"b\")";
        CHECK(rp_stat_strconcat_noexc(3, "a", (const char *)NULL, "b") == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        at = "done";
    }
    rp_set_oom_handler(prev_oom);
    rp_set_error_handler(prev_err);
    if (tu_oom_hits != 0)
        tu_fail(__FILE__, __LINE__, "%s called the OOM handler (%s, size %zu)", at,
                tu_oom_call, tu_oom_size);
    /* the strings that are there still work */
    char *s = rp_stat_strconcat(2, "ab", "");
    CHECK_STR(s, "ab");
    rp_stat_free(s);
}

static void test_misuse(void)
{
    CHECK(rp_stat_pool() == NULL);
    stat_misuse_calls();
    rp_stat_create_pool();
    stat_misuse_calls();
    CHECK_INT(rp_pool_outstanding(rp_stat_pool(), NULL), 0);
    rp_stat_destroy_pool();
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"before_create", test_before_create},
        {"tracked", test_tracked},
        {"destroy_frees", test_destroy_frees},
        {"misuse", test_misuse},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
