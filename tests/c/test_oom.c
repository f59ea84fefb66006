/* test_oom.c -- out-of-memory injection: for every N over a scenario, the
   Nth underlying allocation fails (once, or from then on); every _noexc call
   either succeeds or returns NULL with nothing changed, the pool stays
   consistent, and everything is freed (the valgrind/ASan runs check that). */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "testutil.h"

static char report_path[256];

/* Each step that fails must leave the pool exactly as it was. */
#define STEP(ptr, expr)                                                        \
    do {                                                                       \
        size_t b0_, y0_, y1_;                                                  \
        b0_ = rp_pool_outstanding(pool, &y0_);                                 \
        (ptr) = (expr);                                                        \
        if ((ptr) == NULL) {                                                   \
            CHECK_EQ(rp_pool_outstanding(pool, &y1_), b0_);                    \
            CHECK_EQ(y1_, y0_);                                                \
            failures++;                                                        \
        } else {                                                               \
            held[nheld++] = (ptr);                                             \
        }                                                                      \
    } while (0)

/* Runs the scenario; returns the number of calls that reported failure. */
static int scenario(void)
{
    rp_pool_options o;
    rp_pool *pool, *child = NULL;
    void *held[32];
    int nheld = 0, failures = 0, i;
    void *p;
    char *s;
    memset(&o, 0, sizeof o);
    o.flags = tu_backing | RP_POOL_CHECKED;
    o.chunk_size = 4096;
    pool = rp_pool_create_ex("oom", &o);
    if (pool == NULL)
        return 1;
    tu_watched = pool;
    STEP(p, rp_alloc_noexc(pool, 100, "a"));
    STEP(p, rp_calloc_noexc(pool, 10, 30, "c"));
    STEP(p, rp_alloc_noexc(pool, 10000, "big"));
    STEP(s, rp_strdup_noexc(pool, "duplicate me", "s"));
    STEP(s, rp_strconcat_noexc(pool, "cat", 3, "one", "two", "three"));
    STEP(p, rp_memdup_noexc(pool, "\x01\x02\x03", 3, "m"));
    STEP(p, rp_alloc_aligned_noexc(pool, 4096, 64, "al"));
    STEP(p, rp_resize_noexc(pool, NULL, 40));
    /* resizes: a failure keeps the old block valid, linked and counted */
    for (i = 0; i < nheld; i++) {
        size_t old = rp_block_size(held[i]);
        const char *tag = rp_block_tag(held[i]);
        void *r = rp_resize_noexc(pool, held[i], old * 3 + 5000);
        if (r == NULL) {
            failures++;
            CHECK_EQ(rp_block_size(held[i]), old);
            CHECK(rp_block_tag(held[i]) == tag);
        } else {
            held[i] = r;
        }
    }
    /* interning, stats and reports may allocate and may fail cleanly */
    {
        const char *t = rp_pool_intern_tag(pool, "interned");
        rp_tag_stat st[16];
        int rc;
        if (t == NULL)
            failures++;
        else
            STEP(p, rp_alloc_noexc(pool, 9, t));
        size_t nt = rp_pool_stats(pool, st, 16), k, blocks = 0;
        CHECK(nt <= 16);
        for (k = 0; k < nt; k++)
            blocks += st[k].blocks;
        CHECK_EQ(blocks, rp_pool_outstanding(pool, NULL));
        rc = rp_pool_write_report_ex(pool, report_path, RP_REPORT_BLOCKS);
        CHECK(rc == 0 || rc == RP_ENOMEM);
        failures += rc != 0;
    }
    /* a child pool: NULL or a working pool */
    child = rp_pool_create_child(pool, "child");
    if (child == NULL)
        failures++;
    else if (rp_alloc_noexc(child, 50, "in-child") == NULL)
        failures++;
    CHECK_INT(rp_pool_check(pool), 0);
    for (i = 0; i < nheld; i++)
        rp_free(held[i]);
    CHECK_EQ(rp_pool_outstanding(pool, NULL), 0);
    CHECK_INT(rp_pool_check(pool), 0);
    tu_watched = NULL;
    rp_pool_destroy(pool); /* the child, and its block, go too */
    return failures;
}

static void run_injection(int sticky)
{
    unsigned long before, total;
    long n;
    int failing_runs = 0, f, fired;
    /* armed far away, the hook counts without failing */
    rp_debug_fail_after(LONG_MAX, 0);
    before = rp_debug_alloc_count();
    CHECK_INT(scenario(), 0);
    total = rp_debug_alloc_count() - before;
    rp_debug_fail_after(0, 0);
    CHECK(total >= 8);
    for (n = 1; n <= (long)total + 1; n++) {
        rp_debug_fail_after(n, sticky);
        f = scenario();
        fired = rp_debug_alloc_count() >= (unsigned long)n;
        rp_debug_fail_after(0, 0);
        failing_runs += f > 0;
        /* (the count can vary from run to run: the checked registry is
           process-wide and keeps spare entries between runs) */
        if (fired && f == 0 && sticky)
            tu_fail(__FILE__, __LINE__, "sticky failure from allocation %ld of "
                    "%lu went unnoticed", n, total);
    }
    /* disarmed, nothing fails */
    CHECK_INT(scenario(), 0);
    printf("     %s injection: %lu underlying allocations, %d of %lu runs saw a failure\n",
           sticky ? "sticky" : "one-shot", total, failing_runs, total + 1);
    CHECK(failing_runs >= 1);
}

static void test_inject_once(void) { run_injection(0); }
static void test_inject_sticky(void) { run_injection(1); }

/* Pool creation itself under sticky failure: NULL, nothing leaked. */
static void test_create_fails(void)
{
    rp_pool_options o;
    rp_pool *p;
    memset(&o, 0, sizeof o);
    o.flags = tu_backing;
    rp_debug_fail_after(1, 1);
    p = rp_pool_create_ex("never", &o);
    rp_debug_fail_after(0, 0);
    CHECK(p == NULL);
    rp_debug_fail_after(1, 1);
    p = rp_pool_create("never");
    rp_debug_fail_after(0, 0);
    CHECK(p == NULL);
    /* and the plain allocating forms call the OOM handler */
    p = tu_pool("after");
    rp_debug_fail_after(1, 1);
    EXPECT_OOM(rp_alloc(p, 1u << 20, "t"));
    CHECK_STR(tu_oom_call, "rp_alloc");
    CHECK_EQ(tu_oom_size, 1u << 20);
    CHECK_STR(tu_oom_tag, "t");
    EXPECT_OOM(rp_strdup(p, "x", "sd"));
    CHECK_STR(tu_oom_call, "rp_strdup");
    CHECK_STR(tu_oom_tag, "sd");
    EXPECT_OOM(rp_strconcat(p, "sc", 2, "a", "b"));
    CHECK_STR(tu_oom_call, "rp_strconcat");
    rp_debug_fail_after(0, 0);
    tu_end_pool(p);
}

/* Another thread's snapshot of the pool: it takes the pool's lock and waits
   until the pool's own thread is out of its fast section. */
static void *outstanding_elsewhere(void *arg)
{
    return (void *)(uintptr_t)(rp_pool_outstanding(arg, NULL) + 1);
}

/* A thread-safe pool's creator allocates without a lock (its busy mark);
   where the malloc backing's list for the size is empty it calls malloc in
   that section. A failure there returns NULL (or calls the OOM handler)
   with nothing counted and the section left: another thread's snapshot
   returns, and the pool works on. */
static void test_owner_malloc_fails(void)
{
    rp_pool *p = tu_pool("owner");
    void *keep = rp_alloc(p, 48, "t");   /* the tag known, the 64 B list empty */
    rp_debug_fail_after(1, 1);
    void *q = rp_alloc_noexc(p, 64, "t");
    rp_debug_fail_after(0, 0);
    if (!tu_is_arena()) CHECK(q == NULL);   /* the malloc backing called malloc */
    if (q) rp_free(q);
    CHECK_EQ(rp_pool_outstanding(p, NULL), 1);
    if (!tu_is_arena()) {
        rp_debug_fail_after(1, 1);
        EXPECT_OOM(rp_alloc(p, 80, "t"));
        rp_debug_fail_after(0, 0);
        CHECK_STR(tu_oom_call, "rp_alloc");
        CHECK_EQ(tu_oom_size, 80);
    }
    pthread_t th;
    void *r;
    CHECK(pthread_create(&th, NULL, outstanding_elsewhere, p) == 0);
    CHECK(pthread_join(th, &r) == 0);
    CHECK_EQ((uintptr_t)r, 2);
    q = rp_alloc(p, 64, "t");
    CHECK_EQ(rp_pool_outstanding(p, NULL), 2);
    rp_free(q);
    rp_free(keep);
    tu_end_pool(p);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"inject_once", test_inject_once},
        {"inject_sticky", test_inject_sticky},
        {"create_fails", test_create_fails},
        {"owner_malloc_fails", test_owner_malloc_fails},
    };
    const char *base = getenv("TMPDIR");
    int rc;
    snprintf(report_path, sizeof report_path, "%s/rp-oom-%ld.json",
             base ? base : "/tmp", (long)getpid());
    rc = tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
    unlink(report_path);
    return rc;
}
