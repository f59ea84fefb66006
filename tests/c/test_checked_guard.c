/* test_checked_guard.c -- what checked mode must detect without reading
   foreign memory or following a link it has not validated, and what it must
   never report: a correct program mixing checked and unchecked pools. */
#include <stdint.h>

#include "testutil.h"

/* ---------------------------------------- checked and unchecked together */

/* Valid frees and resizes of unchecked blocks are never reported, even when
   a checked block once lived at the same address (freed, or dropped by a
   destroy); double frees of checked blocks are still detected. */
static void test_mixed_pools_no_false_positive(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *keeper = tu_pool_ex("keeper", RP_POOL_CHECKED);  /* a checked pool stays alive */
    rp_pool *plain = tu_pool("plain");
    int round, i;
    void *c[64], *u[64];
    tu_errors_reset();
    for (round = 0; round < 6; round++) {
        rp_pool *chk = tu_pool_ex("checked", RP_POOL_CHECKED);
        for (i = 0; i < 64; i++) c[i] = rp_alloc(chk, (size_t)(16 + (i % 4) * 48), "c");
        if (round % 2 == 0) {
            for (i = 0; i < 64; i++) rp_free(c[i]);
            /* still a double free */
            rp_free(c[5]);
            CHECK_ONE_ERROR(RP_EDOUBLEFREE);
            rp_pool_destroy(chk);
        } else {
            rp_pool_destroy(chk);   /* its blocks are dropped */
        }
        /* the unchecked pool takes memory of the same sizes now */
        for (i = 0; i < 64; i++) u[i] = rp_alloc(plain, (size_t)(16 + (i % 4) * 48), "u");
        for (i = 0; i < 64; i += 2) u[i] = rp_resize(plain, u[i], 40);
        CHECK_INT(tu_err_count, 0);
        for (i = 0; i < 64; i++) rp_free(u[i]);
        CHECK_INT(tu_err_count, 0);
        CHECK_COUNTS(plain, 0, 0);
    }
    /* a checked arena pool's chunks are not handed to an unchecked one
       while its records remain */
    {
        rp_pool_options o;
        rp_pool *chk, *un;
        memset(&o, 0, sizeof o);
        o.flags = RP_POOL_CHECKED | RP_POOL_ARENA;
        chk = rp_pool_create_ex("checked-arena", &o);
        for (i = 0; i < 64; i++) c[i] = rp_alloc(chk, 48, "c");
        rp_pool_destroy(chk);
        o.flags = RP_POOL_ARENA;
        un = rp_pool_create_ex("plain-arena", &o);
        for (i = 0; i < 64; i++) u[i] = rp_alloc(un, 48, "u");
        for (i = 0; i < 64; i++) rp_free(u[i]);
        CHECK_INT(tu_err_count, 0);
        /* the stale checked pointers are still recognised */
        rp_free(c[3]);
        CHECK_ONE_ERROR(RP_EDESTROYED);
        rp_pool_destroy(un);
    }
    rp_set_error_handler(prev);
    tu_end_pool(plain);
    tu_end_pool(keeper);
}

/* Use after destroy stays detected after the last checked pool is gone
   (no other pool alive, and with an unchecked one alive). */
static void test_stale_pointer_after_last_checked_pool(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    int with_plain;
    for (with_plain = 0; with_plain < 2; with_plain++) {
        rp_pool *plain = with_plain ? tu_pool("plain") : NULL;
        rp_pool *chk = tu_pool_ex("last-checked", RP_POOL_CHECKED);
        void *stale = rp_alloc(chk, 48, "stale");
        void *big = rp_alloc(chk, 100000, "big");
        void *freed = rp_alloc(chk, 24, "freed");
        rp_free(freed);
        tu_watched = plain;
        rp_pool_destroy(chk);
        tu_errors_reset();
        CHECK_EQ(rp_block_size(stale), 0);
        CHECK_ONE_ERROR(RP_EDESTROYED);
        rp_free(stale);
        CHECK_ONE_ERROR(RP_EDESTROYED);
        rp_free(big);
        CHECK_ONE_ERROR(RP_EDESTROYED);
        CHECK(rp_resize_noexc(NULL, stale, 10) == NULL);
        CHECK_ONE_ERROR(RP_EDESTROYED);
        rp_free(freed);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        if (plain) {
            void *b = rp_alloc(plain, 48, "b");
            rp_free(b);
            CHECK_INT(tu_err_count, 0);
            tu_end_pool(plain);
        }
    }
    rp_set_error_handler(prev);
}

/* ------------------------------------------------- corrupt links */

/* Underflow into the `next` link (bytes p[-24..-17]): the free is refused,
   and check, walk and the block listing never follow the corrupt link. */
static int count_visit(void *block, size_t size, const char *tag, void *arg)
{
    (void)block; (void)size; (void)tag;
    ++*(int *)arg;
    return 0;
}

static void test_corrupt_next_link_not_followed(void)
{
    rp_pool *pool = tu_pool_ex("next-link", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *a = rp_alloc(pool, 32, "a");
    unsigned char *b = rp_alloc(pool, 32, "b");
    unsigned char *c = rp_alloc(pool, 32, "c");
    unsigned char saved[8];
    static const unsigned char garbage[3][8] = {
        {0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41},   /* unmapped */
        {0x10, 0, 0, 0, 0, 0, 0, 0},                        /* NULL page */
        {0, 0, 0, 0, 0, 0, 0, 0},                           /* NULL */
    };
    int g, visited;
    char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/next-link-%d.json", tmp ? tmp : "/tmp", (int)getpid());
    memcpy(saved, b - 24, 8);
    for (g = 0; g < 3; g++) {
        memcpy(b - 24, garbage[g], 8);
        tu_errors_reset();
        rp_free(b);
        CHECK_ONE_ERROR(RP_ECORRUPT);
        CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
        CHECK(tu_err_count >= 1);
        CHECK_INT(tu_err_code[0], RP_ECORRUPT);
        tu_errors_reset();
        visited = 0;
        CHECK_INT(rp_pool_walk(pool, count_visit, &visited), RP_ECORRUPT);
        CHECK(visited <= 2);
        CHECK_ONE_ERROR(RP_ECORRUPT);
        CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
        CHECK_INT(tu_err_count, 0);
        /* the rest of the pool still works */
        {
            void *d = rp_alloc(pool, 32, "d");
            rp_free(d);
        }
        CHECK_INT(tu_err_count, 0);
    }
    memcpy(b - 24, saved, 8);
    CHECK_INT(rp_pool_check(pool), 0);
    visited = 0;
    CHECK_INT(rp_pool_walk(pool, count_visit, &visited), 0);
    CHECK_INT(visited, 3);
    rp_free(a);
    rp_free(b);
    rp_free(c);
    CHECK_INT(tu_err_count, 0);
    unlink(path);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* ---------------------------------------- what lies below the header */

/* An underflow reaching the raw pointer kept below the header of an aligned
   block (p[-40]), or the big-block record of an arena pool (p[-64..-33]),
   is detected: the block is left alone, nothing is freed through it. */
static void test_underflow_below_header_detected(void)
{
    rp_pool *pool = tu_pool_ex("below", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *al = rp_alloc_aligned(pool, 256, 100, "aligned");
    unsigned char *big = rp_alloc(pool, 40000, "big");
    unsigned char *big2 = rp_alloc(pool, 50000, "big2");
    unsigned char *victims[3];
    int v, off, detected = 0, tried = 0;
    victims[0] = al;
    victims[1] = big;
    victims[2] = big2;
    for (v = 0; v < 3; v++) {
        /* malloc backing: only aligned blocks keep something below the
           header (the raw pointer at p[-40]); arena backing: big and
           aligned blocks keep a 32-byte record at p[-64..-33] */
        int lo = tu_backing ? 64 : 40, hi = 33;
        if (!tu_backing && v > 0) continue;
        for (off = lo; off >= hi; off -= 8) {
            unsigned char keep = victims[v][-off];
            victims[v][-off] ^= 0x20;
            tu_errors_reset();
            rp_free(victims[v]);
            tried++;
            detected += tu_err_count == 1 && tu_err_code[0] == RP_ECORRUPT;
            CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
            tu_errors_reset();
            victims[v][-off] = keep;
        }
    }
    CHECK(tried > 0);
    CHECK_INT(detected, tried);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_free(al);
    rp_free(big);
    rp_free(big2);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* Flipping only the destructor flag (p[-1] ^= 0x10) is detected, in both
   directions; the destructor still runs exactly once. */
static int dtor_runs;
static void count_dtor(void *b)
{
    (void)b;
    dtor_runs++;
}

static void test_destructor_flag_flip_detected(void)
{
    rp_pool *pool = tu_pool_ex("dtor-flag", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *with = rp_alloc(pool, 40, "with");
    unsigned char *without = rp_alloc(pool, 40, "without");
    dtor_runs = 0;
    CHECK_INT(rp_set_destructor(with, count_dtor), 0);
    tu_errors_reset();
    with[-1] ^= 0x10;
    rp_free(with);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK_INT(dtor_runs, 0);
    CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
    tu_errors_reset();
    with[-1] ^= 0x10;
    without[-1] ^= 0x10;
    rp_free(without);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    without[-1] ^= 0x10;
    CHECK_INT(rp_pool_check(pool), 0);
    /* set and removed through the API, the flag is no finding */
    CHECK_INT(rp_set_destructor(without, count_dtor), 0);
    CHECK_INT(rp_set_destructor(without, NULL), 0);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_free(without);
    rp_free(with);
    CHECK_INT(dtor_runs, 1);
    CHECK_INT(tu_err_count, 0);
    /* and a destructor left for destroy runs once, on live memory */
    with = rp_alloc(pool, 40, "with");
    CHECK_INT(rp_set_destructor(with, count_dtor), 0);
    rp_free(with);
    CHECK_INT(dtor_runs, 2);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* ------------------------------------------------------------- tags */

/* A tag passed in a reused buffer: each record keeps its own copy of the
   content it was created with, so a count never changes name; a checked
   pool reports a content that changed under a pointer it has cached, and
   counts the block under the current content. */
static void test_tag_in_reused_buffer(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    int checked;
    for (checked = 0; checked < 2; checked++) {
        rp_pool *pool = tu_pool_ex("reused-tag", checked ? RP_POOL_CHECKED : 0);
        static const char *names[3] = {"first", "second", "third"};
        char buf[32];
        void *b[3];
        static rp_tag_stat st[160];
        size_t n, i, total = 0;
        int k;
        tu_errors_reset();
        for (k = 0; k < 3; k++) {
            snprintf(buf, sizeof buf, "%s", names[k]);
            b[k] = rp_alloc(pool, 8, buf);
            CHECK(b[k] != NULL);
            if (checked && k > 0) {
                CHECK_ONE_ERROR(RP_EINVAL);
                CHECK(strstr(tu_err_msg[0], names[k - 1]) != NULL);
                CHECK(strstr(tu_err_msg[0], names[k]) != NULL);
                CHECK_STR(rp_block_tag(b[k]), names[k]);
            }
        }
        CHECK_INT(tu_err_count, 0);
        /* also once the pointer cache has forgotten the buffer: 128 other
           tags (8 bytes apart) take every slot of it in between */
        {
            static char others[128][8];
            void *o[128];
            int j;
            for (j = 0; j < 128; j++) {
                snprintf(others[j], sizeof others[j], "o%u", (unsigned)j % 1000u);
                o[j] = rp_alloc(pool, 1, others[j]);
            }
            snprintf(buf, sizeof buf, "fourth");
            b[2] = rp_resize(pool, b[2], 8);   /* keeps b[2]; no tag involved */
            {
                void *x = rp_alloc(pool, 8, buf);
                if (checked) {
                    CHECK_ONE_ERROR(RP_EINVAL);
                    CHECK(strstr(tu_err_msg[0], "third") != NULL);
                    CHECK(strstr(tu_err_msg[0], "fourth") != NULL);
                    CHECK_STR(rp_block_tag(x), "fourth");
                }
                rp_free(x);
            }
            for (j = 0; j < 128; j++) rp_free(o[j]);
            CHECK_INT(tu_err_count, 0);
        }
        /* whatever was counted is counted under a name that was the
           buffer's content at the time, and that name does not change */
        snprintf(buf, sizeof buf, "clobbered");
        n = rp_pool_stats(pool, st, 160);
        CHECK(n <= 160);
        for (i = 0; i < n; i++) {
            if (st[i].tag[0] == 'o' || strcmp(st[i].tag, "fourth") == 0) continue;
            CHECK(strcmp(st[i].tag, "first") == 0 || strcmp(st[i].tag, "second") == 0 ||
                  strcmp(st[i].tag, "third") == 0);
            if (checked) CHECK_EQ(st[i].blocks, 1);
            total += st[i].blocks;
        }
        CHECK_EQ(total, 3);
        CHECK_STR(rp_block_tag(b[0]), "first");
        /* with distinct strings, or interned ones, every count is exact */
        {
            const char *t2 = rp_pool_intern_tag(pool, "second");
            void *x = rp_alloc(pool, 8, t2);
            void *y = rp_alloc(pool, 8, "third");
            CHECK_STR(rp_block_tag(x), "second");
            CHECK_STR(rp_block_tag(y), "third");
            rp_free(x);
            rp_free(y);
        }
        for (k = 0; k < 3; k++) rp_free(b[k]);
        CHECK_INT(tu_err_count, 0);
        tu_end_pool(pool);
    }
    rp_set_error_handler(prev);
}

/* A tag buffer whose content goes back and forth between allocations that
   take the checked fast path (the same pointer many times in a row): every
   change is reported, also the change back to a content seen before, and
   each block is counted under the content at its allocation. */
static void test_tag_buffer_changed_back_reported(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *pool = tu_pool_ex("tag-back", RP_POOL_CHECKED);
    static const char *names[4] = {"alpha", "beta", "alpha", "beta"};
    char buf[16];
    void *b[4][5];
    tu_errors_reset();
    for (int k = 0; k < 4; k++) {
        snprintf(buf, sizeof buf, "%s", names[k]);
        for (int i = 0; i < 5; i++) {
            b[k][i] = rp_alloc(pool, 8, buf);
            CHECK(b[k][i] != NULL);
            if (k > 0 && i == 0) {
                CHECK_ONE_ERROR(RP_EINVAL);
                CHECK(strstr(tu_err_msg[0], names[k - 1]) != NULL);
                CHECK(strstr(tu_err_msg[0], names[k]) != NULL);
            }
            CHECK_INT(tu_err_count, 0);
            CHECK_STR(rp_block_tag(b[k][i]), names[k]);
        }
    }
    rp_tag_stat st[8];
    size_t n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) CHECK_EQ(st[i].blocks, 10);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 5; i++) rp_free(b[k][i]);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* Checked pools skip comparing a tag that is a literal of the program
   (read-only memory, whose content cannot change). A tag in the program's
   writable data (an initialised static buffer, in the same executable as
   the literals) is not one: its changes are reported like a stack
   buffer's, on the fast path too. */
static char static_tag[16] = "alpha";

static void test_static_tag_buffer_changed_reported(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *pool = tu_pool_ex("static-tag", RP_POOL_CHECKED);
    static const char *names[3] = {"beta", "alpha", "gamma"};
    void *b[4][5];
    tu_errors_reset();
    for (int k = 0; k < 4; k++) {
        if (k > 0) snprintf(static_tag, sizeof static_tag, "%s", names[k - 1]);
        for (int i = 0; i < 5; i++) {
            b[k][i] = rp_alloc(pool, 8, static_tag);
            CHECK(b[k][i] != NULL);
            if (k > 0 && i == 0) {
                CHECK_ONE_ERROR(RP_EINVAL);
                CHECK(strstr(tu_err_msg[0], names[k - 1]) != NULL);
            }
            CHECK_INT(tu_err_count, 0);
            CHECK_STR(rp_block_tag(b[k][i]), k == 0 ? "alpha" : names[k - 1]);
        }
    }
    /* a literal: the same pointer many times, counted exactly, no report */
    void *lit[5];
    for (int i = 0; i < 5; i++) {
        lit[i] = rp_alloc(pool, 8, "literal");
        CHECK_STR(rp_block_tag(lit[i]), "literal");
    }
    CHECK_INT(tu_err_count, 0);
    rp_tag_stat st[8];
    size_t n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 4);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(st[i].blocks, strcmp(st[i].tag, "alpha") == 0 ? 10u : 5u);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 5; i++) rp_free(b[k][i]);
    for (int i = 0; i < 5; i++) rp_free(lit[i]);
    CHECK_INT(tu_err_count, 0);
    snprintf(static_tag, sizeof static_tag, "alpha");
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* A literal tag and a writable buffer whose pointers share a slot of the
   tag caches, taken in turns: the literal is never compared or reported,
   and each change of the buffer's content is reported at its next
   allocation, however the two alternate. */
static const char lit_slot0[16] __attribute__((aligned(512))) = "literal-zero";
static char buf_slot0[16] __attribute__((aligned(512))) = "buffer-zero";

static void test_literal_and_buffer_share_slot(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *pool = tu_pool_ex("shared-slot", RP_POOL_CHECKED);
    static const char *names[4] = {"buffer-zero", "one", "two", "three"};
    void *b[4][6];
    tu_errors_reset();
    for (int k = 0; k < 4; k++) {
        snprintf(buf_slot0, sizeof buf_slot0, "%s", names[k]);
        for (int i = 0; i < 6; i++) {
            /* literal, buffer, literal, literal, buffer, buffer */
            int lit = i == 0 || i == 2 || i == 3;
            b[k][i] = rp_alloc(pool, 40, lit ? lit_slot0 : buf_slot0);
            CHECK(b[k][i] != NULL);
            if (k > 0 && i == 1) {
                CHECK_ONE_ERROR(RP_EINVAL);
                CHECK(strstr(tu_err_msg[0], names[k]) != NULL);
            }
            CHECK_INT(tu_err_count, 0);
            CHECK_STR(rp_block_tag(b[k][i]), lit ? "literal-zero" : names[k]);
        }
    }
    rp_tag_stat st[8];
    size_t n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 5);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(st[i].blocks, strcmp(st[i].tag, "literal-zero") == 0 ? 12u : 3u);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 6; i++) rp_free(b[k][i]);
    CHECK_INT(tu_err_count, 0);
    snprintf(buf_slot0, sizeof buf_slot0, "buffer-zero");
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* Untagged blocks (tag NULL) in a checked pool, also after a tag whose
   pointer shares their cache slot was used: counted under "(untagged)",
   and every misuse of them reported like any checked block's. */
static void test_untagged_blocks_checked(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    rp_pool *pool = tu_pool_ex("untagged", RP_POOL_CHECKED);
    rp_pool *other = tu_pool_ex("other", RP_POOL_CHECKED);
    static char slot0[64] __attribute__((aligned(512))) = "slot-zero";
    void *b[40];
    tu_errors_reset();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 40; i++) {
            /* the NULL tag and slot0 take the same slot of the tag caches */
            b[i] = rp_alloc(pool, 24, i % 3 == 2 ? slot0 : NULL);
            CHECK(b[i] != NULL);
            CHECK_STR(rp_block_tag(b[i]), i % 3 == 2 ? "slot-zero" : "(untagged)");
        }
        rp_tag_stat st[4];
        size_t n = rp_pool_stats(pool, st, 4);
        CHECK_EQ(n, 2);
        for (size_t k = 0; k < n; k++)
            CHECK_EQ(st[k].blocks, strcmp(st[k].tag, "(untagged)") == 0 ? 27u : 13u);
        CHECK_INT(tu_err_count, 0);
        rp_free(b[0]);
        rp_free(b[0]);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
        CHECK(rp_resize(other, b[1], 48) == NULL);
        CHECK_ONE_ERROR(RP_EWRONGPOOL);
        CHECK_STR(rp_block_tag(b[1]), "(untagged)");
        for (int i = 1; i < 40; i++) rp_free(b[i]);
        CHECK_INT(tu_err_count, 0);
        CHECK_COUNTS(pool, 0, 0);
    }
    rp_pool_destroy(other);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* ------------------------------------------------- header guard, walks */

/* A checked block's header copied over another's of the same tag and size
   (origin and size word then agree) is still detected: the first 16 bytes
   of a checked header are a guard of that block alone. Free, resize,
   check and walk refuse it; restored, the block is whole again. */
static void test_header_copied_from_another_block_detected(void)
{
    rp_pool *pool = tu_pool_ex("copied-header", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *a = rp_alloc(pool, 48, "same");
    unsigned char *b = rp_alloc(pool, 48, "same");
    unsigned char *c = rp_alloc(pool, 48, "same");
    unsigned char saved[32];
    int visited = 0;
    memcpy(saved, b - 32, 32);
    CHECK(memcmp(b - 16, a - 16, 16) == 0);   /* origin and word agree */
    memcpy(b - 32, a - 32, 32);
    tu_errors_reset();
    rp_free(b);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK(rp_resize_noexc(pool, b, 100) == NULL);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
    CHECK(tu_err_count >= 1);
    CHECK(tu_err_block[0] == b);
    tu_errors_reset();
    CHECK_INT(rp_pool_walk(pool, count_visit, &visited), RP_ECORRUPT);
    CHECK_INT(visited, 1);   /* a, then b is refused */
    CHECK_ONE_ERROR(RP_ECORRUPT);
    /* a's own header is untouched: a is freed normally */
    rp_free(a);
    CHECK_INT(tu_err_count, 0);
    memcpy(b - 32, saved, 32);
    CHECK_INT(rp_pool_check(pool), 0);
    visited = 0;
    CHECK_INT(rp_pool_walk(pool, count_visit, &visited), 0);
    CHECK_INT(visited, 2);
    rp_free(b);
    rp_free(c);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

/* A walk of a checked pool whose visitor frees blocks (the one visited,
   one not yet visited), allocates new ones, checks the pool and walks it
   again: every block is visited once if it is live when the walk reaches
   it, never after it was freed, new blocks included; reset and destroy are
   refused meanwhile. */
#define WALK_N 40
typedef struct walk_state {
    rp_pool *pool;
    void *b[WALK_N + 12];
    int visits[WALK_N + 12];
    int nb, nvisits, freed_ahead, added, inner_rc, check_rc, busy_rc;
    size_t inner;
} walk_state;

static int inner_visit(void *block, size_t size, const char *tag, void *arg)
{
    (void)block; (void)size; (void)tag;
    ++*(size_t *)arg;
    return 0;
}

static int freeing_visit(void *block, size_t size, const char *tag, void *arg)
{
    walk_state *w = arg;
    int i;
    (void)tag;
    for (i = 0; i < w->nb && w->b[i] != block; i++) {}
    if (i == w->nb) return 1;   /* not a block of the pool (or freed) */
    if (w->nvisits > 2 * (WALK_N + 12)) return 2;   /* the walk lost its place */
    CHECK_EQ(size, (size_t)(16 + i));
    w->visits[i]++;
    w->nvisits++;
    if (w->nvisits == 1) {
        /* a walk inside the walk, and a check: the places of walks are
           not blocks */
        w->inner = 0;
        w->inner_rc = rp_pool_walk(w->pool, inner_visit, &w->inner);
        w->check_rc = rp_pool_check(w->pool);
        w->busy_rc = rp_pool_reset(w->pool);
    }
    if (i % 5 == 0 && i + 1 < WALK_N && w->b[i + 1]) {   /* one not yet visited */
        rp_free(w->b[i + 1]);
        w->b[i + 1] = NULL;
        w->freed_ahead++;
    }
    if (i % 2 == 0) {   /* the one visited */
        rp_free(block);
        w->b[i] = NULL;
    }
    if (w->added < 10) {   /* new blocks, after every one there */
        int k = WALK_N + w->added++;
        w->b[k] = rp_alloc(w->pool, (size_t)(16 + k), "new");
        w->nb = k + 1;
    }
    return 0;
}

static void test_walk_survives_visitor_changes(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    walk_state *w = calloc(1, sizeof *w);
    int i, live = 0;
    CHECK(w != NULL);
    w->pool = tu_pool_ex("walked", RP_POOL_CHECKED);
    for (i = 0; i < WALK_N; i++) w->b[i] = rp_alloc(w->pool, (size_t)(16 + i), "old");
    w->nb = WALK_N;
    tu_errors_reset();
    CHECK_INT(rp_pool_walk(w->pool, freeing_visit, w), 0);
    CHECK_INT(tu_err_count, 0);
    CHECK_INT(w->inner_rc, 0);
    CHECK_EQ(w->inner, (size_t)WALK_N);   /* every block, the walk's place not counted */
    CHECK_INT(w->check_rc, 0);
    CHECK_INT(w->busy_rc, RP_EBUSY);
    CHECK_INT(w->added, 10);
    CHECK(w->freed_ahead > 0);
    for (i = 0; i < w->nb; i++) {
        /* a block freed before the walk reached it was never visited */
        int freed_ahead = i < WALK_N && i % 5 == 1 && w->b[i] == NULL && w->visits[i] == 0;
        if (!freed_ahead) CHECK_INT(w->visits[i], 1);
        if (w->b[i]) live++;
    }
    CHECK_INT(w->nvisits, WALK_N + 10 - w->freed_ahead);
    CHECK_EQ(rp_pool_outstanding(w->pool, NULL), (size_t)live);
    CHECK_INT(rp_pool_check(w->pool), 0);
    for (i = 0; i < w->nb; i++) rp_free(w->b[i]);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(w->pool);
    free(w);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"mixed_pools_no_false_positive", test_mixed_pools_no_false_positive},
        {"stale_pointer_after_last_checked_pool", test_stale_pointer_after_last_checked_pool},
        {"corrupt_next_link_not_followed", test_corrupt_next_link_not_followed},
        {"underflow_below_header_detected", test_underflow_below_header_detected},
        {"destructor_flag_flip_detected", test_destructor_flag_flip_detected},
        {"tag_in_reused_buffer", test_tag_in_reused_buffer},
        {"tag_buffer_changed_back_reported", test_tag_buffer_changed_back_reported},
        {"static_tag_buffer_changed_reported", test_static_tag_buffer_changed_reported},
        {"literal_and_buffer_share_slot", test_literal_and_buffer_share_slot},
        {"untagged_blocks_checked", test_untagged_blocks_checked},
        {"header_copied_from_another_block_detected",
         test_header_copied_from_another_block_detected},
        {"walk_survives_visitor_changes", test_walk_survives_visitor_changes},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
