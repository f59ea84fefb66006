/* test_arena_resize.c -- resizing blocks: contents survive every path; in the
   arena a shrink stays in place unless it leaves half the slot or more
   empty (then an inner block moves to the smaller class, the block carved
   last gives the rest back to its chunk), the block carved last grows in place up to
   4 KiB, big blocks are resized with realloc; a failed _noexc resize leaves the old block valid
   and counted; checked pools and destructors follow the block. Runs for both
   backings (the address checks only for the arena). */
#include "testutil.h"

static void contents_survive_step_growth(void)
{
    rp_pool *pool = tu_pool("step");
    unsigned char *p = rp_alloc(pool, 16, "buf");
    tu_fill(p, 16, 7);
    for (size_t n = 32; n <= 65536; n += 16) {
        p = rp_resize(pool, p, n);
        CHECK(tu_intact(p, n - 16, 7));
        tu_fill(p, n, 7);
        CHECK_COUNTS(pool, 1, n);
        CHECK_EQ(rp_block_size(p), n);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    for (size_t n = 65536; n >= 16; n /= 2) {
        p = rp_resize(pool, p, n);
        CHECK(tu_intact(p, n, 7));
        CHECK_COUNTS(pool, 1, n);
    }
    rp_free(p);
    tu_end_pool(pool);
}

static void last_carved_block_grows_in_place(void)
{
    rp_pool *pool = tu_pool("grow");
    void *keep = rp_alloc(pool, 100, "keep");
    /* 65 bytes or more: a block with a header (up to 64, a headerless
       slot, which moves to grow out of it) */
    unsigned char *p = rp_alloc(pool, 80, "buf");
    unsigned char *first = p;
    size_t r0 = tu_info(pool).reserved_bytes;
    tu_fill(p, 80, 3);
    /* up to the growth limit, 4 KiB with the 32-byte header: the default
       chunk (1 MiB) has room for all */
    for (size_t n = 96; n <= 4096 - 32; n += 16) {
        p = rp_resize(pool, p, n);
        if (tu_is_arena())
            CHECK(p == first);
        CHECK(tu_intact(p, n - 16, 3));
        tu_fill(p, n, 3);
    }
    if (tu_is_arena())
        CHECK_EQ(tu_info(pool).reserved_bytes, r0);
    CHECK_COUNTS(pool, 2, 100 + 4064);
    CHECK_INT(rp_pool_check(pool), 0);
    /* the next allocation is carved after the grown block, not inside it */
    unsigned char *q = rp_alloc(pool, 100, "after");
    tu_fill(q, 100, 9);
    CHECK(q + 100 <= p || q >= p + 4064);
    CHECK(tu_intact(p, 4064, 3));
    /* past the limit the block has an allocation of its own */
    for (size_t n = 4080; n <= 32000; n += 16) {
        p = rp_resize(pool, p, n);
        CHECK(tu_intact(p, n - 16, 3));
        tu_fill(p, n, 3);
    }
    CHECK_COUNTS(pool, 3, 100 + 100 + 32000);
    CHECK(tu_intact(q, 100, 9));
    CHECK(tu_intact(p, 32000, 3));
    rp_free(q);
    rp_free(p);
    rp_free(keep);
    tu_end_pool(pool);
}

/* A growth whose new class has a freed block waiting takes that block,
   even for the block carved last: a program that grows each new block step
   by step and frees it (a string builder) then keeps reusing the same
   memory instead of growing into fresh chunk memory each time. */
static void growth_reuses_a_freed_block_of_the_new_class(void)
{
    rp_pool *pool = tu_pool("regrow");
    unsigned char *old = rp_alloc(pool, 136, "old");
    unsigned char *p = rp_alloc(pool, 72, "buf");   /* carved last */
    tu_fill(p, 72, 5);
    rp_free(old);
    unsigned char *q = rp_resize(pool, p, 136);
    if (tu_is_arena())
        CHECK(q == old);
    CHECK(tu_intact(q, 72, 5));
    CHECK_COUNTS(pool, 1, 136);
    rp_free(q);
    size_t r0 = tu_info(pool).reserved_bytes;
    size_t rounds = tu_quick() ? 2000 : 20000;   /* 20000 x 176 B: more than a chunk */
    for (size_t i = 0; i < rounds; i++) {
        unsigned char *b = rp_alloc(pool, 72, "buf");
        tu_fill(b, 72, (unsigned)i);
        b = rp_resize(pool, b, 136);
        CHECK(tu_intact(b, 72, (unsigned)i));
        tu_fill(b, 136, (unsigned)i);
        b = rp_resize(pool, b, 600);
        CHECK(tu_intact(b, 136, (unsigned)i));
        CHECK_COUNTS(pool, 1, 600);
        rp_free(b);
    }
    if (tu_is_arena())
        CHECK_EQ(tu_info(pool).reserved_bytes, r0);
    tu_end_pool(pool);
}

static void growth_of_an_inner_block_moves(void)
{
    rp_pool *pool = tu_pool("inner");
    /* over 64 bytes: blocks with a header (up to 64, headerless slots) */
    unsigned char *a = rp_alloc(pool, 80, "a");
    unsigned char *b = rp_alloc(pool, 80, "b");
    tu_fill(a, 80, 1);
    tu_fill(b, 80, 2);
    unsigned char *a2 = rp_resize(pool, a, 400);
    if (tu_is_arena())
        CHECK(a2 != a);     /* b follows a: no room */
    CHECK(tu_intact(a2, 80, 1));
    CHECK(tu_intact(b, 80, 2));
    CHECK_COUNTS(pool, 2, 480);
    /* the freed slot is reused by its class */
    unsigned char *c = rp_alloc(pool, 80, "c");
    if (tu_is_arena())
        CHECK(c == a);
    rp_free(c);
    rp_free(b);
    rp_free(a2);
    tu_end_pool(pool);
}

/* A shrink to more than half of an arena block's slot keeps the block; to
   half or less (rpi_arena_shrinks) an inner block moves to the smaller class
   (contents, size, tag and counters exact; its old slot serves the next
   block of its class), and the block carved last stays and gives the rest
   of its slot back to the chunk (the next block is carved right after its
   new class). For each pool kind: unsynchronised and thread-safe (the fast
   paths), checked (the general path); the malloc backing checks contents
   and counters only. */
static void shrink_to_half_or_less_moves(void)
{
    for (int kind = 0; kind < 3; kind++) {
        unsigned flags = kind == 0 ? RP_POOL_UNSYNC : kind == 1 ? 0 : RP_POOL_CHECKED;
        /* the header before a slot: 16 bytes, 32 in a checked pool */
        size_t hdr = kind == 2 ? 32 : 16;
        rp_pool *pool = tu_pool_ex("shrink", flags);
        unsigned char *p = rp_alloc(pool, 4000, "buf");
        /* over 64 bytes: a block with a header after p (p is not the last) */
        void *after = rp_alloc(pool, 200, "after");
        tu_fill(p, 4000, 5);
        /* 4000 bytes with the header: a slot of 4096. Down to 2048 - hdr + 1
           it stays */
        unsigned char *s = rp_resize(pool, p, 2049 - hdr);
        if (tu_is_arena())
            CHECK(s == p);
        CHECK(tu_intact(s, 2049 - hdr, 5));
        CHECK_COUNTS(pool, 2, 2049 - hdr + 200);
        /* to half the slot: it moves, and its slot serves the next block
           of 4000 */
        unsigned char *m = rp_resize(pool, s, 2048 - hdr);
        if (tu_is_arena())
            CHECK(m != p);
        CHECK(tu_intact(m, 2048 - hdr, 5));
        CHECK_EQ(rp_block_size(m), 2048 - hdr);
        CHECK_STR(rp_block_tag(m), "buf");
        CHECK_COUNTS(pool, 2, 2048 - hdr + 200);
        rp_tag_stat st[4];
        size_t nt = rp_pool_stats(pool, st, 4);
        for (size_t i = 0; i < nt; i++)
            if (strcmp(st[i].tag, "buf") == 0) {
                CHECK_EQ(st[i].blocks, 1);
                CHECK_EQ(st[i].bytes, 2048 - hdr);
                CHECK_EQ(st[i].peak_bytes, 4000);
                CHECK_EQ(st[i].allocs, 1);
            }
        CHECK_INT(rp_pool_check(pool), 0);
        unsigned char *n = rp_alloc(pool, 4000, "again");
        if (tu_is_arena() && kind != 2)   /* (checked pools quarantine it) */
            CHECK(n == p);
        tu_fill(n, 4000, 6);
        /* far down, to 10 bytes: a block with a header of 32 bytes (of
           the class of 1 to 16 bytes; only an allocation makes a
           headerless block) */
        unsigned char *t = rp_resize(pool, m, 10);
        CHECK(tu_intact(t, 10, 5));
        CHECK_EQ(rp_block_size(t), 10);
        CHECK_COUNTS(pool, 3, 10 + 200 + 4000);
        /* and to 0 bytes: a valid 0-byte block */
        t = rp_resize(pool, t, 0);
        CHECK(t != NULL);
        CHECK_EQ(rp_block_size(t), 0);
        /* grown back: the contents that were kept */
        t = rp_resize(pool, t, 3000);
        tu_fill(t, 3000, 7);
        CHECK_COUNTS(pool, 3, 3000 + 200 + 4000);
        CHECK(tu_intact(n, 4000, 6));
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(t);
        rp_free(n);
        rp_free(after);

        /* the block carved last shrinks where it is: 1000 bytes (a slot of
           1024) to 400 (a slot of 400 + hdr rounded up to 16), and the
           next block is carved right after that */
        unsigned char *c = rp_alloc(pool, 1000, "last");
        tu_fill(c, 1000, 8);
        unsigned char *c2 = rp_resize(pool, c, 400);
        if (tu_is_arena())
            CHECK(c2 == c);
        CHECK(tu_intact(c2, 400, 8));
        CHECK_EQ(rp_block_size(c2), 400);
        unsigned char *d = rp_alloc(pool, 1000, "next");
        if (tu_is_arena() && kind != 2)
            CHECK(d == c + ((400 + hdr + 15) / 16 * 16));
        tu_fill(d, 1000, 9);
        /* its class is the new one: it grows out of it as a 400-byte
           block would, and a walk reads both */
        CHECK_INT(rp_pool_check(pool), 0);
        CHECK_COUNTS(pool, 2, 400 + 1000);
        c2 = rp_resize(pool, c2, 1000);
        CHECK(tu_intact(c2, 400, 8));
        CHECK(tu_intact(d, 1000, 9));
        CHECK_COUNTS(pool, 2, 2000);
        rp_free(c2);
        rp_free(d);
        tu_end_pool(pool);
    }
}

/* A block with a destructor that shrinks to half its slot or less moves by
   the general path: the destructor runs once, with the new address. */
static int dtor_calls;
static void *dtor_last;
static void dtor(void *block)
{
    dtor_calls++;
    dtor_last = block;
}
static void shrink_moves_with_its_destructor(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = tu_pool_ex("shrink-dtor", unsync ? RP_POOL_UNSYNC : 0);
        unsigned char *p = rp_alloc(pool, 900, "d");
        void *after = rp_alloc(pool, 300, "after");
        tu_fill(p, 900, 3);
        CHECK_INT(rp_set_destructor(p, dtor), 0);
        dtor_calls = 0;
        unsigned char *q = rp_resize(pool, p, 100);
        if (tu_is_arena())
            CHECK(q != p);
        CHECK(tu_intact(q, 100, 3));
        CHECK_EQ(dtor_calls, 0);
        rp_free(q);
        CHECK_EQ(dtor_calls, 1);
        CHECK(dtor_last == q);
        /* and the block carved last (a new class: none waits on its
           list) keeps its address */
        p = rp_alloc(pool, 2000, "d");
        tu_fill(p, 2000, 4);
        CHECK_INT(rp_set_destructor(p, dtor), 0);
        q = rp_resize(pool, p, 100);
        if (tu_is_arena())
            CHECK(q == p);
        CHECK(tu_intact(q, 100, 4));
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(after);
        rp_free(q);
        CHECK_EQ(dtor_calls, 2);
        CHECK(dtor_last == q);
        tu_end_pool(pool);
    }
    dtor_calls = 0;
    dtor_last = NULL;
}

/* A shrink that would move an arena block to its smaller class and cannot
   have the memory (every underlying allocation failing: no new chunk, no
   room for a destructor's entry) keeps the block where it is, in its
   class, at the new size: a shrink does not fail for want of memory. */
static void shrink_never_fails_for_memory(void)
{
    if (!tu_is_arena())
        return;   /* the malloc backing shrinks with realloc */
    enum { N = 1200 };   /* 1200 slots of 64 bytes: more than a 64 KiB chunk holds */
    static unsigned char *b[N];
    const unsigned kinds[] = { 0, RP_POOL_UNSYNC, RP_POOL_CHECKED };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (int with_dtor = 0; with_dtor <= 1; with_dtor++) {
            rp_pool *pool = tu_pool_chunk("shrink-oom", kinds[k], 64 << 10);
            for (unsigned i = 0; i < N; i++) {
                b[i] = rp_alloc(pool, 480, "s");
                tu_fill(b[i], 480, i);
                if (with_dtor)
                    CHECK_INT(rp_set_destructor(b[i], dtor), 0);
            }
            void *after = rp_alloc(pool, 480, "after");   /* none is carved last */
            rp_debug_fail_after(1, 1);
            for (unsigned i = 0; i < N; i++) {
                unsigned char *r = rp_resize_noexc(pool, b[i], 40);
                CHECK(r != NULL);
                if (r == NULL)
                    break;
                CHECK(tu_intact(r, 40, i));
                CHECK_EQ(rp_block_size(r), 40);
                b[i] = r;
            }
            rp_debug_fail_after(0, 0);
            size_t bytes;
            CHECK_EQ(rp_pool_outstanding(pool, &bytes), N + 1);
            CHECK_EQ(bytes, (size_t)N * 40 + 480);
            CHECK_INT(rp_pool_check(pool), 0);
            dtor_calls = 0;
            for (unsigned i = 0; i < N; i++)
                rp_free(b[i]);
            CHECK_EQ(dtor_calls, with_dtor ? N : 0);
            rp_free(after);
            tu_end_pool(pool);
        }
    }
    dtor_calls = 0;
    dtor_last = NULL;
}

static void big_blocks_resize(void)
{
    rp_pool *pool = tu_pool("big");
    unsigned char *b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = rp_alloc(pool, 40000, "big");
        tu_fill(b[i], 40000, (unsigned)i);
    }
    size_t sizes[] = { 80000, 1 << 20, 4 << 20, 50000, 33000, 100, 0, 300000 };
    size_t prev = 40000;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *r = rp_resize(pool, b[1], n);
        CHECK(r != NULL);
        CHECK(tu_intact(r, prev < n ? prev : n, 1));
        tu_fill(r, n, 1);
        b[1] = r;
        prev = n;
        CHECK_COUNTS(pool, 3, 80000 + n);
        CHECK(tu_info(pool).reserved_bytes >= (tu_is_arena() ? 80000 + n : 0));
        CHECK_INT(rp_pool_check(pool), 0);
        CHECK(tu_intact(b[0], 40000, 0));
        CHECK(tu_intact(b[2], 40000, 2));
    }
    /* walk order and tags follow the block */
    CHECK_STR(rp_block_tag(b[1]), "big");
    rp_free(b[0]);
    rp_free(b[2]);
    size_t r1 = tu_info(pool).reserved_bytes;
    b[1] = rp_resize(pool, b[1], 2 << 20);
    if (tu_is_arena())
        CHECK_EQ(tu_info(pool).reserved_bytes, r1 - 300000 + (2 << 20));
    rp_free(b[1]);
    tu_end_pool(pool);
}

static void over_aligned_blocks_resize(void)
{
    rp_pool *pool = tu_pool("aligned");
    unsigned char *p = rp_alloc_aligned(pool, 256, 1000, "al");
    tu_fill(p, 1000, 4);
    for (size_t n = 2000; n <= 200000; n *= 3) {
        p = rp_resize(pool, p, n);
        CHECK(((uintptr_t)p & 255) == 0);
        CHECK(tu_intact(p, 1000, 4));
    }
    rp_free(p);
    tu_end_pool(pool);
}


static void destructors_follow_the_block(void)
{
    rp_pool *pool = tu_pool("dtor");
    void *keep = rp_alloc(pool, 8, "keep");
    /* in place, move (an inner block), big, big realloc, shrink */
    size_t steps[] = { 48, 64, 900, 40000, 2 << 20, 70000, 20 };
    void *p = rp_alloc(pool, 32, "d");
    CHECK_INT(rp_set_destructor(p, dtor), 0);
    void *inner = rp_alloc(pool, 8, "inner");
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        p = rp_resize(pool, p, steps[k]);
        CHECK_INT(dtor_calls, 0);
    }
    dtor_calls = 0;
    rp_free(p);
    CHECK_INT(dtor_calls, 1);
    CHECK(dtor_last == p);
    rp_free(inner);
    rp_free(keep);
    tu_end_pool(pool);
}

static void checked_pools_resize(void)
{
    rp_pool *pool = tu_pool_ex("checked", RP_POOL_CHECKED);
    unsigned char *p = rp_alloc(pool, 16, "buf");
    tu_fill(p, 16, 8);
    for (size_t n = 32; n <= 2048; n += 16) {       /* in place */
        p = rp_resize(pool, p, n);
        CHECK(tu_intact(p, n - 16, 8));
        tu_fill(p, n, 8);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    p = rp_resize(pool, p, 100);                    /* shrink */
    CHECK(tu_intact(p, 100, 8));
    void *other = rp_alloc(pool, 16, "other");
    p = rp_resize(pool, p, 5000);                   /* grows past its class: moves */
    CHECK(tu_intact(p, 100, 8));
    CHECK_INT(rp_set_destructor(p, dtor), 0);
    tu_fill(p, 5000, 8);
    p = rp_resize(pool, p, 40000);                  /* becomes big */
    CHECK(tu_intact(p, 5000, 8));
    tu_fill(p, 40000, 8);
    for (size_t n = 80000; n <= (4u << 20); n *= 2) {   /* big realloc */
        p = rp_resize(pool, p, n);
        CHECK(tu_intact(p, 40000, 8));
        CHECK_INT(rp_pool_check(pool), 0);
    }
    p = rp_resize(pool, p, 1000);                   /* big shrink */
    CHECK(tu_intact(p, 1000, 8));
    CHECK_COUNTS(pool, 2, 1016);
    CHECK_INT(rp_pool_check(pool), 0);
    dtor_calls = 0;
    rp_free(p);
    CHECK_INT(dtor_calls, 1);
    rp_free(other);
    tu_end_pool(pool);
}

/* One resize with the nth underlying allocation failing (sticky or not):
   it succeeds, or returns NULL with the old block intact and counted. */
static void resize_under_oom(rp_pool *pool, unsigned char **pp, size_t n, unsigned seed,
                             int *failed)
{
    size_t old = rp_block_size(*pp), by0, by1;
    size_t bl0 = rp_pool_outstanding(pool, &by0);
    for (long k = 1; k <= 4; k++) {
        for (int sticky = 0; sticky <= 1; sticky++) {
            rp_debug_fail_after(k, sticky);
            unsigned char *r = rp_resize_noexc(pool, *pp, n);
            rp_debug_fail_after(0, 0);
            if (r == NULL) {
                (*failed)++;
                CHECK_EQ(rp_block_size(*pp), old);
                CHECK(tu_intact(*pp, old, seed));
                CHECK_EQ(rp_pool_outstanding(pool, &by1), bl0);
                CHECK_EQ(by1, by0);
                CHECK_INT(rp_pool_check(pool), 0);
                continue;
            }
            CHECK(tu_intact(r, old < n ? old : n, seed));
            /* back to the old size (without injection) for the next round */
            r = rp_resize(pool, r, old);
            CHECK(tu_intact(r, old < n ? old : n, seed));
            tu_fill(r, old, seed);
            *pp = r;
        }
    }
}

static void failed_resize_changes_nothing(void)
{
    for (int checked = 0; checked <= 1; checked++) {
        rp_pool *pool = tu_pool_ex("oom", checked ? RP_POOL_CHECKED : 0);
        int failed = 0;
        unsigned char *inner = rp_alloc(pool, 40, "inner");
        void *after = rp_alloc(pool, 8, "after");
        unsigned char *big = rp_alloc(pool, 50000, "big");
        unsigned char *last = rp_alloc(pool, 40, "last");
        tu_fill(inner, 40, 1);
        tu_fill(big, 50000, 2);
        tu_fill(last, 40, 3);
        CHECK_INT(rp_set_destructor(big, dtor), 0);
        resize_under_oom(pool, &inner, 3000, 1, &failed);   /* move */
        resize_under_oom(pool, &inner, 20, 1, &failed);     /* shrink */
        resize_under_oom(pool, &big, 2 << 20, 2, &failed);  /* big realloc */
        resize_under_oom(pool, &big, 40000, 2, &failed);
        resize_under_oom(pool, &last, 500, 3, &failed);     /* in place */
        CHECK(failed > 0);
        dtor_calls = 0;
        rp_free(big);
        CHECK_INT(dtor_calls, 1);
        rp_free(inner);
        rp_free(after);
        rp_free(last);
        tu_end_pool(pool);
    }
}

static const tu_case cases[] = {
    { "contents_survive_step_growth", contents_survive_step_growth },
    { "last_carved_block_grows_in_place", last_carved_block_grows_in_place },
    { "growth_reuses_a_freed_block_of_the_new_class",
      growth_reuses_a_freed_block_of_the_new_class },
    { "growth_of_an_inner_block_moves", growth_of_an_inner_block_moves },
    { "shrink_to_half_or_less_moves", shrink_to_half_or_less_moves },
    { "shrink_moves_with_its_destructor", shrink_moves_with_its_destructor },
    { "shrink_never_fails_for_memory", shrink_never_fails_for_memory },
    { "big_blocks_resize", big_blocks_resize },
    { "over_aligned_blocks_resize", over_aligned_blocks_resize },
    { "destructors_follow_the_block", destructors_follow_the_block },
    { "checked_pools_resize", checked_pools_resize },
    { "failed_resize_changes_nothing", failed_resize_changes_nothing },
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
