/* test_checked_scale.c -- checked pools with many records in the process:
   what one pool's destroy, reset, check and frees cost does not grow with
   the records of other pools, and every detection still holds with many
   records and after the oldest have left the quarantine. */
#include "testutil.h"

/* Seconds for `cycles` rounds of: create a checked pool, allocate and free a
   block, allocate another, destroy the pool (which drops the live one). */
static double small_pool_cycles(int cycles)
{
    double t0 = tu_now();
    for (int i = 0; i < cycles; i++) {
        rp_pool_options o = {.flags = RP_POOL_CHECKED | tu_backing};
        rp_pool *p = rp_pool_create_ex("small", &o);
        CHECK(p != NULL);
        void *a = rp_alloc(p, 40, "a");
        rp_free(a);
        (void)rp_alloc(p, 40, "b");
        rp_pool_destroy(p);
    }
    return tu_now() - t0;
}

/* A checked pool's destroy visits its own records, not the whole table:
   with 60,000 live and retired checked blocks elsewhere, create + destroy
   of a one-block pool costs what it costs with none (it walked every record
   of the process before, thousands of times slower). */
static void test_destroy_visits_own_blocks_only(void)
{
    int cycles = tu_quick() ? 50 : 300;
    size_t n = tu_quick() ? 20000 : 60000;
    double best_alone = 1e9, best_crowded = 1e9;
    for (int round = 0; round < 3; round++) {
        double t = small_pool_cycles(cycles);
        if (t < best_alone) best_alone = t;
    }
    rp_pool *big = tu_pool_ex("big", RP_POOL_CHECKED);   /* watched from here */
    void **b = malloc(n * sizeof *b);
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) b[i] = rp_alloc(big, 16 + i % 200, "many");
    for (size_t i = 0; i < n; i += 2) rp_free(b[i]);   /* retired records too */
    for (int round = 0; round < 3; round++) {
        double t = small_pool_cycles(cycles);
        if (t < best_crowded) best_crowded = t;
    }
    printf("     %d small checked pools: %.3f ms alone, %.3f ms beside %zu records\n", cycles,
           best_alone * 1e3, best_crowded * 1e3, n);
    CHECK(best_crowded < 10 * best_alone + 0.005);
    for (size_t i = 1; i < n; i += 2) rp_free(b[i]);
    free(b);
    tu_end_pool(big);
}

/* Detection with a crowded table: double free, use after destroy, a
   corrupt header and a corrupt ring link are each reported once, for
   blocks in the middle of a pool of thousands, then the pool still works. */
static void test_detection_among_many_records(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    size_t n = tu_quick() ? 3000 : 20000;
    rp_pool *p = tu_pool_ex("crowded", RP_POOL_CHECKED);
    void **b = malloc(n * sizeof *b);
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) b[i] = rp_alloc(p, 24 + i % 100, "c");
    tu_errors_reset();

    size_t mid = n / 2;
    rp_free(b[mid]);
    CHECK_INT(tu_err_count, 0);
    rp_free(b[mid]);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);

    /* the ring link of a block points at another live block of the same
       pool (not its neighbour): refused, the block stays */
    size_t victim = mid + 10;
    void **links = (void **)((char *)b[victim] - 32);
    void *saved = links[1];
    links[1] = (char *)b[victim + 5] - 32;
    rp_free(b[victim]);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK(rp_pool_check(p) == RP_ECORRUPT);
    tu_errors_reset();
    links[1] = saved;
    CHECK(rp_pool_check(p) == 0);
    CHECK_INT(tu_err_count, 0);

    /* a header's size overwritten */
    uint64_t *word = (uint64_t *)((char *)b[victim] - 8);
    uint64_t w = *word;
    *word = w + 1;
    rp_free(b[victim]);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    *word = w;

    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == mid) continue;
        if (i % 3 == 0) { rp_free(b[i]); b[i] = NULL; } else live++;
    }
    CHECK_EQ(rp_pool_outstanding(p, NULL), live);
    CHECK(rp_pool_check(p) == 0);
    void *stale = b[1];
    CHECK(rp_pool_reset(p) == 0);
    CHECK_EQ(rp_pool_outstanding(p, NULL), 0);
    CHECK_EQ(rp_block_size(stale), 0);
    CHECK_ONE_ERROR(RP_EDESTROYED);
    void *again = rp_alloc(p, 24, "after-reset");
    CHECK(again != NULL);
    rp_free(again);
    CHECK_INT(tu_err_count, 0);
    free(b);
    rp_set_error_handler(prev);
    tu_end_pool(p);
}

/* More retirements than the quarantine holds: the oldest records (and the
   destroyed arena pools' chunks they hold) leave, the newest are still
   recognised, and a pool destroyed long ago never confuses a new one. */
static void test_quarantine_turns_over(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    int pools = tu_quick() ? 4 : 12;
    size_t per = 10000;   /* 12 x 10,000 > 65,536 retired records */
    void *first_stale = NULL, *last_stale = NULL, *last_freed = NULL;
    for (int k = 0; k < pools; k++) {
        rp_pool_options o = {.flags = RP_POOL_CHECKED | tu_backing};
        rp_pool *p = rp_pool_create_ex("turnover", &o);
        CHECK(p != NULL);
        void *keep = NULL;
        for (size_t i = 0; i < per; i++) {
            void *x = rp_alloc(p, 32 + i % 64, "t");
            if (i % 2) rp_free(x);
            else keep = x;
            if (i % 2) last_freed = x;
        }
        if (!first_stale) first_stale = keep;
        last_stale = keep;
        rp_pool_destroy(p);
    }
    tu_errors_reset();
    rp_free(last_stale);
    CHECK_ONE_ERROR(RP_EDESTROYED);
    rp_free(last_freed);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    (void)first_stale;   /* may have left the quarantine: its use is undefined */
    rp_pool *fresh = tu_pool_ex("fresh", RP_POOL_CHECKED);
    for (int i = 0; i < 1000; i++) {
        void *x = rp_alloc(fresh, 48, "f");
        rp_free(x);
    }
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(fresh);
}

/* Memory that has left the quarantine is handed out again (to checked
   pools only, once its record is gone): over three times the quarantine's
   65,536 records of churn, blocks kept live meanwhile keep every byte, each
   fresh block is a distinct live block, and a double free of a block just
   freed, in reused memory, is still reported. */
static void test_reuse_after_quarantine_keeps_live_blocks(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *p = tu_pool_ex("reuse", RP_POOL_CHECKED);
    rp_pool *plain = tu_pool_ex("plain", 0);
    size_t rounds = tu_quick() ? 20000 : 220000;
    enum { LIVE = 64 };
    unsigned char *live[LIVE];
    for (int i = 0; i < LIVE; i++) {
        live[i] = rp_alloc(p, 48 + (size_t)i, "live");
        memset(live[i], 0xA0 + i % 16, 48 + (size_t)i);
    }
    tu_errors_reset();
    for (size_t i = 0; i < rounds; i++) {
        size_t n = 16 + (i * 7) % 200;
        unsigned char *x = rp_alloc(p, n, "churn");
        unsigned char *y = rp_alloc(plain, n, "churn");
        CHECK(x != NULL && y != NULL);
        memset(x, 0x5C, n);
        if (i % 4096 == 0) {
            /* a slot of the live set is replaced: its old block retires */
            int k = (int)(i / 4096) % LIVE;
            rp_free(live[k]);
            live[k] = rp_alloc(p, 48 + (size_t)k, "live");
            memset(live[k], 0xA0 + k % 16, 48 + (size_t)k);
        }
        rp_free(y);
        rp_free(x);
        if (i % 50000 == 49999) {
            rp_free(x);
            CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        }
    }
    CHECK_INT(tu_err_count, 0);
    for (int i = 0; i < LIVE; i++) {
        for (size_t j = 0; j < 48 + (size_t)i; j++) CHECK_INT(live[i][j], 0xA0 + i % 16);
        CHECK_EQ(rp_block_size(live[i]), 48 + (size_t)i);
        rp_free(live[i]);
    }
    CHECK_COUNTS(p, 0, 0);
    CHECK_INT(rp_pool_check(p), 0);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(plain);
    tu_end_pool(p);
}

/* Whether this build and environment keep freed malloc-backed blocks on
   recycle lists (off under ASan, memcheck and RINGPOOL_RECYCLE=0): a
   block freed into an unchecked pool stays in its reserved bytes. */
static int recycling_on(void)
{
    rp_pool_options uo = {.flags = 0};
    rp_pool *probe = rp_pool_create_ex("probe", &uo);
    CHECK(probe != NULL);
    size_t r0 = tu_info(probe).reserved_bytes;
    rp_free(rp_alloc(probe, 1000, "probe"));
    int recycles = tu_info(probe).reserved_bytes != r0;
    rp_pool_destroy(probe);
    return recycles;
}

/* Memory that left the quarantine for a reuse list (where pools recycle:
   not under memcheck or ASan) keeps its record until a checked allocation
   takes it: freeing the stale pointer then is a double free (it was an
   unknown, "foreign" pointer, and with an unchecked pool alive it would
   have been trusted). The next allocation of that size, by another
   checked pool, gets the memory and the record; when recycling is turned
   off the lists go to the system and their records with them. Malloc
   backing whatever the run's backing (arena blocks keep no memory). */
static void test_stale_pointer_in_reused_memory_recognised(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    int recycles = recycling_on();
    rp_pool_options co = {.flags = RP_POOL_CHECKED};
    rp_pool *p = rp_pool_create_ex("stale", &co);
    rp_pool *q = rp_pool_create_ex("next", &co);
    CHECK(p != NULL && q != NULL);
    tu_watched = p;
    rp_free(rp_alloc(q, 40, "y"));                /* q's part and tag, for its fast path */
    unsigned char *x = rp_alloc(p, 3000, "x");    /* a class the churn never uses */
    memset(x, 0x3C, 3000);
    rp_free(x);
    tu_errors_reset();
    for (size_t i = 0; i < 70000; i++)            /* > 65,536 retirements: x leaves */
        rp_free(rp_alloc(p, 40, "churn"));
    CHECK_INT(tu_err_count, 0);
    if (recycles) {
        rp_free(x);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        unsigned char *y = rp_alloc(q, 3000, "y");   /* the reuse list's block */
        CHECK(y == x);
        memset(y, 0x7E, 3000);
        CHECK_EQ(rp_block_size(y), 3000);
        CHECK_INT(rp_pool_check(q), 0);
        rp_free(y);
        CHECK_INT(tu_err_count, 0);
        rp_free(y);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        /* recycling off: the next checked pool sends the lists to the
           system, and the records of their memory go */
        unsigned char *z = rp_alloc(p, 3000, "z");
        rp_free(z);
        for (size_t i = 0; i < 70000; i++)
            rp_free(rp_alloc(p, 40, "churn"));
        CHECK_INT(tu_err_count, 0);
        setenv("RINGPOOL_RECYCLE", "0", 1);
        rp_pool *off = rp_pool_create_ex("off", &co);
        CHECK(off != NULL);
        rp_free(rp_alloc(off, 40, "a"));          /* its part: the lists go */
        unsetenv("RINGPOOL_RECYCLE");
        rp_free(z);                                /* no record left: foreign */
        CHECK_ONE_ERROR(RP_EFOREIGN);
        rp_pool_destroy(off);
    }
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(q);
    tu_end_pool(p);
}

/* The quarantine holds the last 65,536 retirements: a block freed, then
   65,535 other checked frees (which, in the malloc backing, push the
   oldest records out one by one), is still a double free. */
static void test_quarantine_holds_last_65536(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *p = tu_pool_ex("last-65536", RP_POOL_CHECKED);
    for (size_t i = 0; i < 70000; i++)            /* a full quarantine first */
        rp_free(rp_alloc(p, 40, "fill"));
    void *x = rp_alloc(p, 3000, "x");             /* a class the churn never uses */
    CHECK(x != NULL);
    rp_free(x);
    tu_errors_reset();
    for (size_t i = 0; i < 65535; i++)
        rp_free(rp_alloc(p, 40 + 16 * (i % 4), "churn"));
    CHECK_INT(tu_err_count, 0);
    rp_free(x);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_set_error_handler(prev);
    tu_end_pool(p);
}

/* A block freed, then more than the quarantine's 65,536 retirements of
   other blocks (its record leaves the table, and the record object is
   reused or waits to be): the next allocation of its class, which gets
   the same memory back, has a record of its own, so its free is valid and
   a second free of it a double free. */
static void test_record_left_quarantine_then_block_reused(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *p = tu_pool_ex("turnover-reuse", RP_POOL_CHECKED);
    rp_pool_options mo = {.flags = RP_POOL_CHECKED};   /* malloc backing */
    rp_pool *churn = rp_pool_create_ex("churn", &mo);
    CHECK(churn != NULL);
    tu_watched = p;
    size_t n = 70000;
    void **many = malloc(n * sizeof *many);
    CHECK(many != NULL);
    tu_errors_reset();
    /* an arena pool parks the records of up to 65,536 freed blocks beside
       its free lists; past that they enter the quarantine */
    for (size_t i = 0; i < n; i++) many[i] = rp_alloc(p, 48, "many");
    for (size_t i = 0; i < n; i++) rp_free(many[i]);
    for (size_t i = 0; i < n; i++) many[i] = rp_alloc(churn, 40, "churn");
    void *x = rp_alloc(p, 3000, "x");
    CHECK(x != NULL);
    rp_free(x);
    /* x's record leaves (and, nothing being allocated meanwhile, its
       record object waits unused) */
    for (size_t i = 0; i < n; i++) rp_free(many[i]);
    CHECK_INT(tu_err_count, 0);
    for (int round = 0; round < 3; round++) {
        void *y = rp_alloc(p, 3000, "x");   /* a tag seen: the fast path */
        CHECK(y != NULL);
        rp_free(rp_alloc(p, 48, "z"));   /* y's record is not the one looked up last */
        CHECK_EQ(rp_block_size(y), 3000);
        CHECK_STR(rp_block_tag(y), "x");
        CHECK_COUNTS(p, 1, 3000);
        CHECK_INT(rp_pool_check(p), 0);
        rp_free(y);
        CHECK_INT(tu_err_count, 0);
        rp_free(y);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    }
    CHECK_COUNTS(p, 0, 0);
    free(many);
    rp_pool_destroy(churn);
    rp_set_error_handler(prev);
    tu_end_pool(p);
}

/* Freed blocks of an arena pool keep their records beside the pool's free
   lists (parked, out of the quarantine's FIFO) until their memory is
   allocated again or the pool is reset or destroyed, when they join the
   quarantine: misuse of them is reported the same all along. */
static void test_parked_records_outlive_reset_and_destroy(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *p = tu_pool_ex("parked", RP_POOL_CHECKED);
    enum { N = 300 };
    void *b[N], *c[N];
    tu_errors_reset();
    for (int i = 0; i < N; i++) b[i] = rp_alloc(p, (size_t)(16 + (i * 37) % 400), "b");
    for (int i = 0; i < N; i += 2) rp_free(b[i]);
    CHECK_INT(tu_err_count, 0);
    CHECK_INT(rp_pool_check(p), 0);
    rp_free(b[10]);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK_INT(rp_pool_reset(p), 0);
    rp_free(b[20]);                       /* freed before the reset */
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_free(b[21]);                       /* live at the reset */
    CHECK_ONE_ERROR(RP_EDESTROYED);
    /* the memory again (an arena pool reuses its chunks): new records */
    for (int i = 0; i < N; i++) c[i] = rp_alloc(p, (size_t)(16 + (i * 37) % 400), "c");
    for (int i = 0; i < N; i += 3) rp_free(c[i]);
    CHECK_INT(tu_err_count, 0);
    size_t live = 0;
    for (int i = 0; i < N; i++)
        if (i % 3) live += (size_t)(16 + (i * 37) % 400);
    CHECK_COUNTS(p, (size_t)(N - (N + 2) / 3), live);
    CHECK_INT(rp_pool_check(p), 0);
    rp_free(c[3]);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_pool_destroy(p);
    rp_free(c[6]);                        /* freed before the destroy */
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_free(c[7]);                        /* live at the destroy */
    CHECK_ONE_ERROR(RP_EDESTROYED);
    CHECK(rp_block_size(c[9]) == 0);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    /* they joined the quarantine at the destroy, so they leave it too
       (arena: with the memory; malloc backing: a record may then wait with
       its memory on a reuse list, as in the test above) */
    if (tu_is_arena()) {
        rp_pool_options mo = {.flags = RP_POOL_CHECKED};
        rp_pool *churn = rp_pool_create_ex("churn", &mo);
        CHECK(churn != NULL);
        for (size_t i = 0; i < 70000; i++) rp_free(rp_alloc(churn, 40, "churn"));
        CHECK_INT(tu_err_count, 0);
        rp_free(c[6]);                    /* no record left: foreign */
        CHECK_ONE_ERROR(RP_EFOREIGN);
        rp_pool_destroy(churn);
    }
    rp_set_error_handler(prev);
}

/* A free list's link overwritten (an underflow into a freed block's
   header): destroying the pool does not follow it, and the records the
   list no longer leads to still join the quarantine (found in the table),
   so they leave it in turn like any other. */
static void test_corrupt_free_list_link_not_followed(void)
{
    if (!tu_is_arena()) return;   /* the malloc backing has no free lists */
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *p = tu_pool_ex("free-list", RP_POOL_CHECKED);
    rp_pool_options mo = {.flags = RP_POOL_CHECKED};
    rp_pool *churn = rp_pool_create_ex("churn", &mo);
    CHECK(churn != NULL);
    tu_watched = p;
    void *keep = rp_alloc(p, 40, "keep");   /* the pool is not empty */
    void *a = rp_alloc(p, 40, "a"), *b = rp_alloc(p, 40, "b");
    tu_errors_reset();
    rp_free(b);
    rp_free(a);                             /* the list: a, then b */
    ((void **)a)[-3] = (void *)(uintptr_t)0x1000;   /* a's header: its list link */
    rp_pool_destroy(p);
    CHECK_INT(tu_err_count, 0);
    rp_free(a);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_free(b);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_free(keep);
    CHECK_ONE_ERROR(RP_EDESTROYED);
    for (size_t i = 0; i < 70000; i++)      /* > 65,536 retirements: a and b leave */
        rp_free(rp_alloc(churn, 40, "churn"));
    CHECK_INT(tu_err_count, 0);
    rp_free(b);                              /* no record left: foreign */
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_pool_destroy(churn);
    rp_set_error_handler(prev);
}

/* The table of records grows from its first size straight to room for a
   full quarantine, then four times at a step: every record is found again
   after each step (more live blocks than that room, so at least one step
   happens whatever the process held before): each freed block is a double
   free when freed again, each live one has its size and frees cleanly. */
static void test_records_found_after_table_growth(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    size_t n = tu_quick() ? 3000 : 140000;
    rp_pool *p = tu_pool_ex("growth", RP_POOL_CHECKED);
    void **b = malloc(n * sizeof *b);
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) {
        b[i] = rp_alloc(p, 8 + i % 200, "g");
        CHECK(b[i] != NULL);
    }
    tu_errors_reset();
    size_t freed = 0;
    for (size_t i = 0; i < n; i += 3) {   /* fewer than the quarantine holds */
        rp_free(b[i]);
        freed++;
    }
    CHECK_INT(tu_err_count, 0);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 0) {
            rp_free(b[i]);
        } else {
            CHECK_EQ(rp_block_size(b[i]), 8 + i % 200);
        }
    }
    CHECK_EQ((size_t)tu_err_count, freed);
    for (int k = 0; k < TU_MAX_ERRORS; k++) CHECK_INT(tu_err_code[k], RP_EDOUBLEFREE);
    tu_errors_reset();
    for (size_t i = 0; i < n; i++)
        if (i % 3 != 0) rp_free(b[i]);
    CHECK_INT(tu_err_count, 0);
    CHECK_EQ(rp_pool_outstanding(p, NULL), 0);
    free(b);
    rp_set_error_handler(prev);
    tu_end_pool(p);
}

/* Memory on a reuse list keeps its record tied to the pool that freed
   it, also once that pool is destroyed; the next checked pool to allocate
   there takes the record over: its blocks, counts, walk and check are
   its own, a second free is a double free and a free after its destroy
   a use after destroy (malloc backing: only it keeps memory; where pools
   recycle, not under memcheck or ASan, the reuse lists are used). */
static void test_reuse_list_record_moves_to_next_pool(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool_options co = {.flags = RP_POOL_CHECKED};
    enum { N = 512 };
    for (int round = 0; round < 3; round++) {
        rp_pool *a = rp_pool_create_ex("first", &co);
        CHECK(a != NULL);
        tu_errors_reset();
        for (size_t i = 0; i < (tu_quick() ? 2000u : 70000u); i++)   /* the oldest leave for the reuse lists */
            rp_free(rp_alloc(a, 24 + 16 * (i % 3), "churn"));
        rp_pool_destroy(a);
        rp_pool *b = rp_pool_create_ex("next", &co);
        CHECK(b != NULL);
        void *blk[N];
        for (int i = 0; i < N; i++) {
            blk[i] = rp_alloc(b, 24 + 16 * (size_t)(i % 3), "taken");
            CHECK(blk[i] != NULL);
            memset(blk[i], 0x42, 24);
        }
        CHECK_INT(tu_err_count, 0);
        CHECK_EQ(rp_pool_outstanding(b, NULL), N);
        CHECK_INT(rp_pool_check(b), 0);
        for (int i = 0; i < N; i++) CHECK_EQ(rp_block_size(blk[i]), 24 + 16 * (size_t)(i % 3));
        for (int i = 0; i < N; i += 2) rp_free(blk[i]);
        CHECK_INT(tu_err_count, 0);
        rp_free(blk[0]);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        CHECK_EQ(rp_pool_outstanding(b, NULL), N / 2);
        rp_pool_destroy(b);
        rp_free(blk[1]);
        CHECK_ONE_ERROR(RP_EDESTROYED);
    }
    rp_set_error_handler(prev);
}

/* Blocks of a checked malloc-backed pool's usual allocation may be carved
   from the registry's own region (where pools recycle). A resize of such a
   block within its 16-byte class stays in place; to another class it
   moves to new memory with its content, tag and record: the new block's
   free is valid and a second one a double free (a realloc of carved
   memory would abort in the system allocator). */
static void test_carved_block_resized(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    int recycles = recycling_on();   /* so carving is on too */
    rp_pool_options co = {.flags = RP_POOL_CHECKED};
    rp_pool *p = rp_pool_create_ex("carved-resize", &co);
    CHECK(p != NULL);
    tu_watched = p;
    tu_errors_reset();
    rp_free(rp_alloc(p, 40, "r"));   /* the tag seen: the fast path from here */
    enum { N = 64 };
    unsigned char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = rp_alloc(p, 40, "r");
        CHECK(b[i] != NULL);
        tu_fill(b[i], 40, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        size_t to = i % 4 == 0 ? 44 : i % 4 == 1 ? 300 : i % 4 == 2 ? 20 : 5000;
        unsigned char *n = rp_resize(p, b[i], to);
        CHECK(n != NULL);
        if (i % 4 == 0 && recycles) CHECK(n == b[i]);   /* same class (48): in place */
        size_t keep = to < 40 ? to : 40;
        CHECK(tu_intact(n, keep, (unsigned)i));
        CHECK_EQ(rp_block_size(n), to);
        CHECK_STR(rp_block_tag(n), "r");
        tu_fill(n, to, (unsigned)i + 100);
        b[i] = n;
    }
    CHECK_EQ(rp_pool_outstanding(p, NULL), N);
    CHECK_INT(rp_pool_check(p), 0);
    CHECK_INT(tu_err_count, 0);
    /* the memory they left is handed out again, once each */
    unsigned char *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = rp_alloc(p, 40, "r");
        CHECK(c[i] != NULL);
        tu_fill(c[i], 40, (unsigned)i + 200);
    }
    for (int i = 0; i < N; i++) {
        size_t to = i % 4 == 0 ? 44 : i % 4 == 1 ? 300 : i % 4 == 2 ? 20 : 5000;
        CHECK(tu_intact(b[i], to, (unsigned)i + 100));
        CHECK(tu_intact(c[i], 40, (unsigned)i + 200));
        rp_free(b[i]);
        rp_free(c[i]);
    }
    CHECK_INT(tu_err_count, 0);
    rp_free(b[1]);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK_COUNTS(p, 0, 0);
    rp_set_error_handler(prev);
    tu_end_pool(p);
}

/* More freed checked blocks than the quarantine and the reuse lists'
   bound hold: carved memory past the bound waits on its list without a
   record and is handed out again, each block once (all live at once,
   patterns intact), while the quarantine's last retirements are still
   double frees and a destroyed pool's blocks uses after destroy. */
static void test_carved_memory_past_reuse_bound(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool_options co = {.flags = RP_POOL_CHECKED};
    size_t n = tu_quick() ? 20000 : 120000;
    unsigned char **b = malloc(n * sizeof *b);
    CHECK(b != NULL);
    for (int round = 0; round < 2; round++) {
        rp_pool *p = rp_pool_create_ex("carved-bound", &co);
        CHECK(p != NULL);
        tu_watched = p;
        tu_errors_reset();
        for (size_t i = 0; i < n; i++) {
            b[i] = rp_alloc(p, 24 + 16 * (i % 3), "many");
            CHECK(b[i] != NULL);
            tu_fill(b[i], 24, (unsigned)i);
        }
        for (size_t i = 0; i < n; i++) {
            CHECK(tu_intact(b[i], 24, (unsigned)i));
            rp_free(b[i]);
        }
        CHECK_INT(tu_err_count, 0);
        rp_free(b[n - 1]);   /* in the quarantine */
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        for (size_t i = 0; i < n; i++) {
            b[i] = rp_alloc(p, 24 + 16 * (i % 3), "again");
            CHECK(b[i] != NULL);
            tu_fill(b[i], 24, (unsigned)i + 7);
        }
        for (size_t i = 0; i < n; i++) CHECK(tu_intact(b[i], 24, (unsigned)i + 7));
        CHECK_EQ(rp_pool_outstanding(p, NULL), n);
        CHECK_INT(rp_pool_check(p), 0);
        CHECK_INT(tu_err_count, 0);
        rp_pool_destroy(p);
        rp_free(b[n - 1]);
        CHECK_ONE_ERROR(RP_EDESTROYED);
    }
    free(b);
    rp_set_error_handler(prev);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"destroy_visits_own_blocks_only", test_destroy_visits_own_blocks_only},
        {"detection_among_many_records", test_detection_among_many_records},
        {"quarantine_turns_over", test_quarantine_turns_over},
        {"reuse_after_quarantine_keeps_live_blocks", test_reuse_after_quarantine_keeps_live_blocks},
        {"stale_pointer_in_reused_memory_recognised", test_stale_pointer_in_reused_memory_recognised},
        {"quarantine_holds_last_65536", test_quarantine_holds_last_65536},
        {"record_left_quarantine_then_block_reused", test_record_left_quarantine_then_block_reused},
        {"parked_records_outlive_reset_and_destroy", test_parked_records_outlive_reset_and_destroy},
        {"corrupt_free_list_link_not_followed", test_corrupt_free_list_link_not_followed},
        {"records_found_after_table_growth", test_records_found_after_table_growth},
        {"reuse_list_record_moves_to_next_pool", test_reuse_list_record_moves_to_next_pool},
        {"carved_block_resized", test_carved_block_resized},
        {"carved_memory_past_reuse_bound", test_carved_memory_past_reuse_bound},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
