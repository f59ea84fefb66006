/* test_arena_cache.c -- the process chunk cache between arena pools: a
   destroyed pool bigger than the default 16 MiB cap feeds the next pool
   without the system (the cap adapts to the pools being destroyed), and the
   memory goes back once only small pools have been destroyed for a while.
   Allocations from the system are counted with the fault-injection counter
   (armed with a countdown that never fires). */
#include <limits.h>

#include "testutil.h"

#define BLOCK 2000
#define MIB (1024 * 1024)

/* Fills pool with mib MiB of BLOCK-byte blocks; returns the system
   allocations it took (the first block, which creates the tag record, is
   allocated before counting). */
static unsigned long fill_counting(rp_pool *pool, size_t mib)
{
    size_t n = mib * MIB / BLOCK;
    CHECK(rp_alloc(pool, BLOCK, "fill") != NULL);
    rp_debug_fail_after(LONG_MAX, 0);
    for (size_t i = 1; i < n; i++) CHECK(rp_alloc(pool, BLOCK, "fill") != NULL);
    unsigned long got = rp_debug_alloc_count();
    rp_debug_fail_after(0, 0);
    return got;
}

static rp_pool *arena_pool(const char *name)
{
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = RP_POOL_ARENA;
    rp_pool *p = rp_pool_create_ex(name, &o);
    CHECK(p != NULL);
    return p;
}

static void test_big_pool_feeds_the_next_one(void)
{
    size_t mib = 40;   /* well above the default cap of 16 MiB */
    rp_pool *a = arena_pool("first");
    unsigned long first = fill_counting(a, mib);
    CHECK(first >= mib - 2);          /* one chunk per MiB, from the system */
    rp_pool_destroy(a);

    rp_pool *b = arena_pool("second");
    unsigned long second = fill_counting(b, mib);
    printf("     %zu MiB: %lu system allocations for the first pool, %lu for the next\n", mib,
           first, second);
    CHECK_EQ(second, 0);              /* every chunk from the cache */
    rp_pool_destroy(b);

    /* small pools only from now on: after 8 of them the cap is back at its
       floor and the big pool's chunks have gone back to the system */
    for (int i = 0; i < 8; i++) {
        rp_pool *s = arena_pool("small");
        CHECK(rp_alloc(s, 64, "s") != NULL);
        rp_pool_destroy(s);
    }
    rp_pool *c = arena_pool("third");
    unsigned long third = fill_counting(c, mib);
    printf("     after 8 small pools: %lu system allocations for the same fill\n", third);
    CHECK(third >= mib - 16 - 2);     /* at most 16 MiB came from the cache */
    rp_pool_destroy(c);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"big_pool_feeds_the_next_one", test_big_pool_feeds_the_next_one},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
