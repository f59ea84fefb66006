/* test_resize_in_place.c -- resizes that keep the block where it is: growth
   within the size class, shrink, the class boundary, the block carved last
   growing up to its chunk's end, big blocks growing inside their headroom;
   a block that grows out of the arena leaves the chunk's rest to the next
   allocation; counters move by the difference only (peaks kept); an
   out-of-memory resize changes nothing; a resize of a sampled block (and of
   a block the running profile has not seen) reaches the tracker; checked
   pools keep big allocations exact. Most cases run on a thread-safe and an
   unsynchronised pool; the address checks only for the arena. */
#include "testutil.h"

#include <pthread.h>

/* The stats of the one tag named tag. */
static rp_tag_stat tag_stat(rp_pool *pool, const char *tag)
{
    rp_tag_stat st[16];
    size_t n = rp_pool_stats(pool, st, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(st[i].tag, tag) == 0)
            return st[i];
    tu_fail(__FILE__, __LINE__, "no tag '%s'", tag);
}

static rp_pool *pool_of_kind(const char *name, int unsync, size_t chunk)
{
    return tu_pool_chunk(name, unsync ? RP_POOL_UNSYNC : 0, chunk);
}

/* p (had bytes) filled with seed and resized to fits bytes, which its class
   holds: with the arena at the same address; the contents kept, then
   filled to fits. */
static unsigned char *grows_in_place(rp_pool *pool, unsigned char *p, size_t had, size_t fits,
                                     unsigned seed)
{
    tu_fill(p, had, seed);
    unsigned char *r = rp_resize(pool, p, fits);
    if (tu_is_arena())
        CHECK(r == p);
    CHECK(tu_intact(r, had, seed));
    tu_fill(r, fits, seed);
    CHECK_EQ(rp_block_size(r), fits);
    return r;
}

/* r (fits bytes, filled with seed) resized one byte past its class: with
   the arena it moves; the contents kept. */
static unsigned char *grows_out(rp_pool *pool, unsigned char *r, size_t fits, unsigned seed)
{
    unsigned char *m = rp_resize(pool, r, fits + 1);
    if (tu_is_arena())
        CHECK(m != r);
    CHECK(tu_intact(m, fits, seed));
    return m;
}

/* A 70-byte arena block sits in the 96-byte class (16-byte header): up to 80
   bytes it stays, one more moves it when another block follows it. The same
   at a larger class, (1024, 1280]. Counters follow, allocations do not.
   (Up to 64 bytes blocks are headerless slots: test_arena_layout.) */
static void growth_within_the_class_stays(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("class", unsync, 0);
        unsigned char *a = rp_alloc(pool, 70, "a");
        /* a is not carved last (over 64 bytes: a block with a header, in
           the same chunks as a) */
        void *after = rp_alloc(pool, 100, "after");
        unsigned char *r = grows_in_place(pool, a, 70, 80, 1);
        CHECK_COUNTS(pool, 2, 80 + 100);
        rp_tag_stat st = tag_stat(pool, "a");
        CHECK_EQ(st.blocks, 1);
        CHECK_EQ(st.bytes, 80);
        CHECK_EQ(st.peak_bytes, 80);
        CHECK_EQ(st.allocs, 1);                     /* a resize is not an allocation */
        unsigned char *m = grows_out(pool, r, 80, 1);
        CHECK_COUNTS(pool, 2, 81 + 100);

        unsigned char *b = rp_alloc(pool, 1100, "b");
        /* carved: no free slot of its class (over 64 bytes: a header) */
        void *after_b = rp_alloc(pool, 100, "after");
        /* 1280 with the arena's 16-byte header */
        unsigned char *rb = grows_in_place(pool, b, 1100, 1264, 2);
        unsigned char *mb = grows_out(pool, rb, 1264, 2);
        CHECK_COUNTS(pool, 4, 81 + 100 + 1265 + 100);
        /* a class over 4 KiB: growth within it stays too (6144 bytes with
           the header), growth past it moves */
        unsigned char *c = rp_alloc(pool, 6000, "c");
        void *after_c = rp_alloc(pool, 100, "after");
        unsigned char *rc = grows_in_place(pool, c, 6000, 6128, 3);
        unsigned char *mc = grows_out(pool, rc, 6128, 3);
        CHECK_COUNTS(pool, 6, 81 + 100 + 1265 + 100 + 6129 + 100);
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(mc);
        rp_free(after_c);
        CHECK_COUNTS(pool, 4, 81 + 100 + 1265 + 100);
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(m);
        rp_free(mb);
        rp_free(after);
        rp_free(after_b);
        tu_end_pool(pool);
    }
}

/* A block that is not carved last moves to its new class when it grows:
   with the malloc backing the moved block keeps its place in the ring
   (walks and reports list it where it was); small arena blocks are walked
   by chunk, each once; it keeps its contents and tag; its old place goes to its class's
   list, where the next allocation of that class finds it. */
static int dtor_calls;
static void *dtor_block;
static void dtor(void *block);
typedef struct order { const void *seen[8]; int n; } order;
static int note_block(void *block, size_t size, const char *tag, void *arg)
{
    (void)size; (void)tag;
    order *o = arg;
    if (o->n < 8) o->seen[o->n] = block;
    o->n++;
    return 0;
}

/* The walk saw x, y, z: in that order with the malloc backing (the ring);
   each exactly once with the arena, whose small blocks are walked by chunk,
   in address order, and whose big blocks are on the ring before them. */
static int walk_saw(const order *o, const void *x, const void *y, const void *z)
{
    if (o->n != 3) return 0;
    if (!tu_is_arena()) return o->seen[0] == x && o->seen[1] == y && o->seen[2] == z;
    int nx = 0, ny = 0, nz = 0;
    for (int i = 0; i < 3; i++) {
        nx += o->seen[i] == x;
        ny += o->seen[i] == y;
        nz += o->seen[i] == z;
    }
    return nx == 1 && ny == 1 && nz == 1;
}

static void growth_moves_keeping_the_ring_order(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("move", unsync, 0);
        unsigned char *a = rp_alloc(pool, 40, "a");
        unsigned char *b = rp_alloc(pool, 40, "b");
        unsigned char *c = rp_alloc(pool, 40, "c");
        tu_fill(b, 40, 4);
        unsigned char *b2 = rp_resize(pool, b, 600);
        CHECK(tu_intact(b2, 40, 4));
        tu_fill(b2, 600, 4);
        if (tu_is_arena())
            CHECK(b2 != b);
        CHECK_STR(rp_block_tag(b2), "b");
        CHECK_COUNTS(pool, 3, 40 + 600 + 40);
        order o = { { 0 }, 0 };
        CHECK_INT(rp_pool_walk(pool, note_block, &o), 0);
        CHECK_INT(o.n, 3);
        CHECK(walk_saw(&o, a, b2, c));
        unsigned char *d = rp_alloc(pool, 40, "d");
        if (tu_is_arena())
            CHECK(d == b);                          /* b's old place, from its class's list */
        /* with a destructor the block moves too (and keeps it) */
        CHECK_INT(rp_set_destructor(a, dtor), 0);
        unsigned char *a2 = rp_resize(pool, a, 700);
        dtor_calls = 0;
        rp_free(a2);
        CHECK_INT(dtor_calls, 1);
        CHECK(dtor_block == a2);
        CHECK(tu_intact(b2, 600, 4));
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(b2);
        rp_free(c);
        rp_free(d);
        tu_end_pool(pool);
    }
}

/* A shrink keeps the address, arena and big blocks alike: the arena's block
   carved last (down to 100 bytes it gives the rest of its slot back to the
   chunk; an inner block would move: test_arena_resize.c; down to 10 bytes,
   a headerless size, it moves to a headerless slot and gives its whole
   slot back: test_arena_layout.c), a big block down to half its
   allocation; the pool's bytes drop, the peaks stay. */
static void shrink_keeps_the_block(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("shrink", unsync, 0);
        unsigned char *a = rp_alloc(pool, 3000, "a");
        tu_fill(a, 3000, 3);
        unsigned char *r = rp_resize(pool, a, 100);
        if (tu_is_arena())
            CHECK(r == a);
        CHECK(tu_intact(r, 100, 3));
        r = rp_resize(pool, r, 10);
        if (tu_is_arena()) {
            CHECK(r != a);
            unsigned char *again = rp_alloc(pool, 100, "b");   /* carved where a was */
            CHECK(again == a);
            rp_free(again);
        }
        CHECK(tu_intact(r, 10, 3));
        rp_tag_stat st = tag_stat(pool, "a");
        CHECK_EQ(st.bytes, 10);
        CHECK_EQ(st.peak_bytes, 3000);
        r = rp_resize(pool, r, 0);                  /* a valid 0-byte block */
        CHECK(r != NULL);
        CHECK_EQ(rp_block_size(r), 0);
        CHECK_COUNTS(pool, 1, 0);

        unsigned char *big = rp_alloc(pool, 100000, "big");
        tu_fill(big, 100000, 4);
        size_t res0 = tu_info(pool).reserved_bytes;
        unsigned char *rb = rp_resize(pool, big, 60000);
        if (tu_is_arena()) {
            CHECK(rb == big);
            CHECK_EQ(tu_info(pool).reserved_bytes, res0);
        }
        CHECK(tu_intact(rb, 60000, 4));
        CHECK_COUNTS(pool, 2, 60000);
        /* far below half: the allocation shrinks with it */
        rb = rp_resize(pool, rb, 1000);
        CHECK(tu_intact(rb, 1000, 4));
        if (tu_is_arena())
            CHECK(tu_info(pool).reserved_bytes < res0 - 90000);
        st = tag_stat(pool, "big");
        CHECK_EQ(st.bytes, 1000);
        CHECK_EQ(st.peak_bytes, 100000);
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(r);
        rp_free(rb);
        tu_end_pool(pool);
    }
}

/* In a 64 KiB chunk, 15 blocks of 4096 bytes (header included) leave 4064
   bytes after the chunk's 32-byte header. A block carved there grows in
   place while its class fits the rest (up to the 3584-byte class) and moves
   at the next class (4096): never past the chunk's end. */
static void last_carved_grows_to_the_chunk_end(void)
{
    if (!tu_is_arena())
        return;
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("chunk-end", unsync, (size_t)64 << 10);
        unsigned char *fillers[15];
        for (int i = 0; i < 15; i++) {
            fillers[i] = rp_alloc(pool, 4064, "filler");
            tu_fill(fillers[i], 4064, (unsigned)i);
        }
        CHECK_EQ(tu_info(pool).chunks, 1);
        /* 80 bytes: a block with a header (up to 64 would be headerless) */
        unsigned char *p = rp_alloc(pool, 80, "buf");
        unsigned char *first = p;
        tu_fill(p, 80, 99);
        size_t n;
        for (n = 96; n <= 4064; n += 16) {
            p = rp_resize(pool, p, n);
            CHECK(tu_intact(p, n - 16, 99));
            tu_fill(p, n, 99);
            if (p != first)
                break;
        }
        CHECK_EQ(n, 3584 - 16 + 16);                /* the first size of the 4096 class
                                                       (16-byte arena header) */
        CHECK_EQ(tu_info(pool).chunks, 2);          /* it went to a new chunk */
        for (int i = 0; i < 15; i++)
            CHECK(tu_intact(fillers[i], 4064, (unsigned)i));
        /* its old place went to its class's list (3584 with the header) */
        unsigned char *q = rp_alloc(pool, 3552, "q");
        CHECK(q == first);
        tu_fill(q, 3552, 5);
        CHECK(tu_intact(p, n, 99));
        CHECK_INT(rp_pool_check(pool), 0);
        for (int i = 0; i < 15; i++)
            rp_free(fillers[i]);
        rp_free(p);
        rp_free(q);
        tu_end_pool(pool);
    }
}

/* Past 4 KiB (header included) a growing arena block gets an allocation of
   its own: the chunk takes its place back for the next allocation. Growing
   by small steps then stays mostly in place (a quarter of headroom per
   realloc), and the headroom is reserved bytes. */
static void big_block_growth_stays_in_place(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("big-grow", unsync, 0);
        unsigned char *p = rp_alloc(pool, 4000, "buf");
        unsigned char *first = p;
        tu_fill(p, 4000, 7);
        p = rp_resize(pool, p, 4100);
        CHECK(tu_intact(p, 4000, 7));
        tu_fill(p, 4100, 7);
        if (tu_is_arena()) {
            CHECK(p != first);
            unsigned char *q = rp_alloc(pool, 65, "q");   /* with a header */
            CHECK(q == first);                      /* the chunk's rest came back */
            rp_free(q);
        }
        unsigned moves = 0;
        for (size_t n = 4116; n <= 200004; n += 16) {
            unsigned char *r = rp_resize(pool, p, n);
            moves += r != p;
            p = r;
            CHECK(p[0] == tu_byte(0, 7) && p[n - 32] == tu_byte(n - 32, 7));
            p[n - 16] = tu_byte(n - 16, 7);
            for (size_t i = n - 15; i < n; i++) p[i] = tu_byte(i, 7);
            CHECK_EQ(rp_block_size(p), n);
        }
        CHECK(tu_intact(p, 200004, 7));
        CHECK_COUNTS(pool, 1, 200004);
        rp_tag_stat st = tag_stat(pool, "buf");
        CHECK_EQ(st.peak_bytes, 200004);
        CHECK_EQ(st.allocs, 1);
        if (tu_is_arena()) {
            /* 4100 -> 200004 by 1.25x steps: 18 reallocs at most, whatever moved */
            CHECK(moves <= 18);
            size_t res = tu_info(pool).reserved_bytes;
            CHECK(res >= 200004 + 64);
            CHECK(res <= tu_info(pool).chunks * ((size_t)1 << 20) + 200004 + 200004 / 4 + 64);
        }
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(p);
        tu_end_pool(pool);
    }
}

/* A destructor stays with a big block that realloc moves (and with one that
   stays). */
static void dtor(void *block)
{
    dtor_calls++;
    dtor_block = block;
}

static void destructor_follows_a_growing_big_block(void)
{
    rp_pool *pool = pool_of_kind("dtor", 0, 0);
    unsigned char *p = rp_alloc(pool, 40000, "buf");
    CHECK_INT(rp_set_destructor(p, dtor), 0);
    for (size_t n = 40016; n <= 400000; n = n < 100000 ? n + 16 : n * 2)
        p = rp_resize(pool, p, n);
    dtor_calls = 0;
    rp_free(p);
    CHECK_INT(dtor_calls, 1);
    CHECK(dtor_block == p);
    tu_end_pool(pool);
}

/* Out of memory during a resize (every underlying allocation failing): the
   _noexc twin returns NULL and the block keeps its address, contents and
   counters; the plain one calls the OOM handler with the call, size and
   tag. In the arena a single failure of the headroom realloc is retried
   at the exact size. */
static void expect_oom_resize(rp_pool *pool, void *block, size_t size)
{
    EXPECT_OOM(rp_resize(pool, block, size));
}

static void oom_during_resize_keeps_the_block(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("oom", unsync, 0);
        unsigned char *big = rp_alloc(pool, 40000, "big");
        unsigned char *small = rp_alloc(pool, 3000, "small");   /* grows past 4 KiB: leaves */
        tu_fill(big, 40000, 8);
        tu_fill(small, 3000, 9);
        size_t res0 = tu_info(pool).reserved_bytes;
        rp_debug_fail_after(1, 1);
        CHECK(rp_resize_noexc(pool, big, 40016) == NULL);
        CHECK(rp_resize_noexc(pool, big, 400000) == NULL);
        CHECK(rp_resize_noexc(pool, small, 5000) == NULL);
        rp_debug_fail_after(0, 0);
        CHECK(tu_intact(big, 40000, 8));
        CHECK(tu_intact(small, 3000, 9));
        CHECK_EQ(rp_block_size(big), 40000);
        CHECK_EQ(rp_block_size(small), 3000);
        CHECK_COUNTS(pool, 2, 43000);
        CHECK_EQ(tag_stat(pool, "big").peak_bytes, 40000);
        if (tu_is_arena())
            CHECK_EQ(tu_info(pool).reserved_bytes, res0);
        CHECK_INT(rp_pool_check(pool), 0);

        rp_debug_fail_after(1, 1);
        expect_oom_resize(pool, big, 40016);
        rp_debug_fail_after(0, 0);
        CHECK_STR(tu_oom_call, "rp_resize");
        CHECK_EQ(tu_oom_size, 40016);
        CHECK_STR(tu_oom_tag, "big");
        CHECK(tu_intact(big, 40000, 8));
        CHECK_COUNTS(pool, 2, 43000);

        /* arena: one failure, of the realloc with headroom; the exact one
           succeeds */
        if (tu_is_arena()) {
            rp_debug_fail_after(1, 0);
            big = rp_resize_noexc(pool, big, 40016);
            rp_debug_fail_after(0, 0);
            CHECK(big != NULL);
            CHECK(tu_intact(big, 40000, 8));
            CHECK_COUNTS(pool, 2, 43016);
            CHECK_INT(rp_pool_check(pool), 0);
        }
        rp_free(big);
        rp_free(small);
        tu_end_pool(pool);
    }
}

/* A buffer doubled from 16 B to 1 MiB between two neighbours (each
   resize a realloc that may move it): after every step a walk lists a,
   the buffer, c (in that order with the malloc backing), the contents, tag and size follow, and the
   counters and peaks are exact; halving it back keeps them. */
static void doubling_keeps_ring_counters_and_peaks(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("double", unsync, 0);
        unsigned char *a = rp_alloc(pool, 24, "a");
        unsigned char *p = rp_alloc(pool, 16, "buf");
        unsigned char *c = rp_alloc(pool, 24, "c");
        tu_fill(p, 16, 6);
        size_t n;
        for (n = 32; n <= ((size_t)1 << 20); n *= 2) {
            p = rp_resize(pool, p, n);
            CHECK(tu_intact(p, n / 2, 6));
            tu_fill(p, n, 6);
            CHECK_EQ(rp_block_size(p), n);
            CHECK_STR(rp_block_tag(p), "buf");
            CHECK_COUNTS(pool, 3, 48 + n);
            rp_tag_stat st = tag_stat(pool, "buf");
            CHECK_EQ(st.bytes, n);
            CHECK_EQ(st.peak_bytes, n);
            CHECK_EQ(st.allocs, 1);
            order o = { { 0 }, 0 };
            CHECK_INT(rp_pool_walk(pool, note_block, &o), 0);
            CHECK_INT(o.n, 3);
            CHECK(walk_saw(&o, a, p, c));
        }
        for (n = (size_t)1 << 19; n >= 16; n /= 2) {
            p = rp_resize(pool, p, n);
            CHECK(tu_intact(p, n, 6));
            CHECK_COUNTS(pool, 3, 48 + n);
        }
        CHECK_EQ(tag_stat(pool, "buf").peak_bytes, (size_t)1 << 20);
        CHECK_EQ(tu_info(pool).peak_bytes, 48 + ((size_t)1 << 20));
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(a);
        rp_free(p);
        rp_free(c);
        tu_end_pool(pool);
    }
}

/* Malloc backing: a growth by a small step asks realloc for a quarter of
   headroom where the pool recycles blocks; when that realloc fails the
   exact size is tried once more, so one failure costs nothing. Where the
   pool does not recycle (memcheck, ASan) the first realloc is the exact
   one and its failure leaves the block as it was. */
static int pool_recycles(rp_pool *pool)
{
    size_t r0 = tu_info(pool).reserved_bytes;
    void *x = rp_alloc(pool, 1000, "probe");
    rp_free(x);
    return tu_info(pool).reserved_bytes != r0;    /* kept on a recycle list */
}

static void failed_headroom_realloc_retried_exactly(void)
{
    if (tu_is_arena())
        return;                                     /* oom_during_resize_keeps_the_block */
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("step-oom", unsync, 0);
        int recycles = pool_recycles(pool);
        unsigned char *a = rp_alloc(pool, 24, "a");
        unsigned char *p = rp_alloc(pool, 40000, "buf");
        unsigned char *c = rp_alloc(pool, 24, "c");
        tu_fill(p, 40000, 3);
        size_t base = 48;
        rp_debug_fail_after(1, 0);                  /* the next allocation fails, once */
        unsigned char *r = rp_resize_noexc(pool, p, 40016);
        rp_debug_fail_after(0, 0);
        if (recycles) {
            CHECK(r != NULL);
            p = r;
            CHECK_EQ(rp_block_size(p), 40016);
            CHECK_COUNTS(pool, 3, base + 40016);
        } else {
            CHECK(r == NULL);
            CHECK_EQ(rp_block_size(p), 40000);
            CHECK_COUNTS(pool, 3, base + 40000);
        }
        CHECK(tu_intact(p, 40000, 3));
        order o = { { 0 }, 0 };
        CHECK_INT(rp_pool_walk(pool, note_block, &o), 0);
        CHECK(walk_saw(&o, a, p, c));
        /* both failing: the plain twin reports, the block stays */
        size_t was = rp_block_size(p);
        rp_debug_fail_after(1, 1);
        expect_oom_resize(pool, p, was + 16);
        rp_debug_fail_after(0, 0);
        CHECK_STR(tu_oom_call, "rp_resize");
        CHECK_EQ(tu_oom_size, was + 16);
        CHECK_STR(tu_oom_tag, "buf");
        CHECK_EQ(rp_block_size(p), was);
        CHECK(tu_intact(p, 40000, 3));
        CHECK_COUNTS(pool, 3, base + was);
        p = rp_resize(pool, p, was + 16);           /* the lock was released */
        CHECK_EQ(rp_block_size(p), was + 16);
        CHECK_INT(rp_pool_check(pool), 0);
        rp_free(a);
        rp_free(p);
        rp_free(c);
        tu_end_pool(pool);
    }
}

/* A size over RP_MAX_SIZE is refused for every kind of block (small,
   big) on both kinds of pool: the _noexc twin returns NULL, the plain one
   calls the OOM handler, and the block, the counters and the pool's lock
   are as they were. */
static void sizes_over_the_maximum_refused(void)
{
    const size_t bad[] = { RP_MAX_SIZE + 1, SIZE_MAX, SIZE_MAX - 16, SIZE_MAX - 31 };
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("too-big", unsync, 0);
        unsigned char *small = rp_alloc(pool, 5000, "small");   /* past RPI_RECYCLE_MAX */
        unsigned char *tiny = rp_alloc(pool, 24, "tiny");
        unsigned char *big = rp_alloc(pool, 70000, "big");
        tu_fill(small, 5000, 1);
        tu_fill(tiny, 24, 2);
        tu_fill(big, 70000, 3);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            CHECK(rp_resize_noexc(pool, small, bad[i]) == NULL);
            CHECK(rp_resize_noexc(pool, tiny, bad[i]) == NULL);
            CHECK(rp_resize_noexc(pool, big, bad[i]) == NULL);
            expect_oom_resize(pool, small, bad[i]);
            CHECK_STR(tu_oom_call, "rp_resize");
            CHECK_EQ(tu_oom_size, bad[i]);
            CHECK_STR(tu_oom_tag, "small");
            expect_oom_resize(pool, big, bad[i]);
            CHECK_STR(tu_oom_tag, "big");
        }
        CHECK(tu_intact(small, 5000, 1) && tu_intact(tiny, 24, 2) && tu_intact(big, 70000, 3));
        CHECK_COUNTS(pool, 3, 5000 + 24 + 70000);
        CHECK_INT(rp_pool_check(pool), 0);
        small = rp_resize(pool, small, 5016);       /* the lock was let go */
        big = rp_resize(pool, big, 140000);
        CHECK(tu_intact(small, 5000, 1) && tu_intact(big, 70000, 3));
        CHECK_COUNTS(pool, 3, 5016 + 24 + 140000);
        rp_free(small);
        rp_free(tiny);
        rp_free(big);
        tu_end_pool(pool);
    }
}

/* The tracker sees every resize as the model says: a sampled block's resize
   is a dealloc and a fresh sample of the new size, in place or not; a block
   allocated before the profile started is offered when a resize counts its
   new bytes (rate 1: every byte is sampled). */
typedef struct trk {
    int allocs, deallocs;
    void *last_block;
    size_t last_size;
} trk;

static void *trk_alloc(const rp_memprof_allocation *a, void *data)
{
    trk *t = data;
    t->allocs++;
    t->last_block = a->block;
    t->last_size = a->size;
    return t;
}

static void trk_dealloc(void *user, void *data)
{
    CHECK(user == data);
    ((trk *)data)->deallocs++;
}

static void sampled_block_resized(void)
{
    for (int unsync = 0; unsync <= 1; unsync++) {
        rp_pool *pool = pool_of_kind("sampled", unsync, 0);
        unsigned char *early = rp_alloc(pool, 20, "early");   /* before the profile */
        void *after = rp_alloc(pool, 8, "after");
        trk t = { 0, 0, NULL, 0 };
        rp_memprof_params prm = { .rate = 1.0, .seed = 11,
                                  .tracker = { trk_alloc, trk_dealloc, &t } };
        rp_memprof *prof = NULL;
        CHECK_INT(rp_memprof_start(&prm, &prof), 0);
        if (unsync) {
            /* an unsynchronised pool looks at the new profile within its
               idle check distance: allocate until it does */
            for (int i = 0; i < 100000 && t.allocs == 0; i++)
                rp_free(rp_alloc(pool, 4096, "warm"));
            CHECK(t.allocs > 0);
            t.allocs = t.deallocs = 0;
        }
        unsigned char *r = rp_resize(pool, early, 28);    /* in place, not tracked yet */
        if (tu_is_arena())
            CHECK(r == early);
        CHECK_INT(t.allocs, 1);
        CHECK_INT(t.deallocs, 0);
        CHECK(t.last_block == r);
        CHECK_EQ(t.last_size, 28);
        CHECK_EQ(rp_memprof_tracked(prof), 1);
        r = rp_resize(pool, r, 30);                        /* tracked, in place */
        CHECK_INT(t.allocs, 2);
        CHECK_INT(t.deallocs, 1);
        CHECK_EQ(t.last_size, 30);
        CHECK(t.last_block == r);
        r = rp_resize(pool, r, 50000);                     /* tracked, moves to a big block */
        CHECK_INT(t.allocs, 3);
        CHECK_INT(t.deallocs, 2);
        CHECK(t.last_block == r);
        r = rp_resize(pool, r, 50016);                     /* tracked big, headroom */
        CHECK_INT(t.allocs, 4);
        CHECK_INT(t.deallocs, 3);
        CHECK_EQ(rp_memprof_tracked(prof), 1);
        rp_free(r);
        CHECK_INT(t.deallocs, 4);
        CHECK_EQ(rp_memprof_tracked(prof), 0);
        CHECK_INT(rp_memprof_stop(), 0);
        CHECK_INT(rp_memprof_discard(prof), 0);
        rp_free(after);
        CHECK_COUNTS(pool, 0, 0);
        tu_end_pool(pool);
    }
}

/* Resizing through a pool that does not own the block is refused and
   changes nothing, on the in-place path too. */
static void wrong_pool_is_refused(void)
{
    rp_pool *a = pool_of_kind("owner", 0, 0);
    rp_pool *b = pool_of_kind("other", 1, 0);
    tu_watched = a;
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    unsigned char *p = rp_alloc(a, 20, "p");
    tu_fill(p, 20, 6);
    CHECK(rp_resize_noexc(b, p, 24) == NULL);
    CHECK_ONE_ERROR(RP_EWRONGPOOL);
    rp_set_error_handler(prev);
    CHECK_EQ(rp_block_size(p), 20);
    CHECK(tu_intact(p, 20, 6));
    CHECK_COUNTS(a, 1, 20);
    CHECK_COUNTS(b, 0, 0);
    rp_free(p);
    tu_end_pool(b);
    tu_end_pool(a);
}

/* Checked pools keep every big allocation at its block's size (their
   registry checks the record below the header against it): small steps,
   shrinks and an over-aligned block grown into its alignment slack leave a
   pool that rp_pool_check finds intact. */
static void checked_big_blocks_stay_exact(void)
{
    rp_pool *pool = tu_pool_ex("checked-big", RP_POOL_CHECKED);
    unsigned char *big = rp_alloc(pool, 40000, "big");
    tu_fill(big, 40000, 1);
    for (size_t n = 40016; n <= 41600; n += 16) {
        big = rp_resize(pool, big, n);
        CHECK_INT(rp_pool_check(pool), 0);
    }
    big = rp_resize(pool, big, 30000);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK(tu_intact(big, 30000, 1));
    unsigned char *al = rp_alloc_aligned(pool, 4096, 204, "aligned");
    tu_fill(al, 204, 2);
    al = rp_resize(pool, al, 61);
    CHECK_INT(rp_pool_check(pool), 0);
    al = rp_resize(pool, al, 429);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK((uintptr_t)al % 4096 == 0);
    CHECK(tu_intact(al, 61, 2));
    rp_free(big);
    rp_free(al);
    tu_end_pool(pool);
}

/* A thread-safe pool shared by threads: a block another thread allocated
   (it lives in that thread's part of the pool) is resized through the pool
   like any other, and the pool's counters follow. */
typedef struct xthread { rp_pool *pool; unsigned char *small, *big; } xthread;
static void *alloc_elsewhere(void *arg)
{
    xthread *x = arg;
    x->small = rp_alloc(x->pool, 20, "small");
    x->big = rp_alloc(x->pool, 50000, "big");
    tu_fill(x->small, 20, 3);
    tu_fill(x->big, 50000, 4);
    return NULL;
}

static void block_of_another_thread_resized(void)
{
    rp_pool *pool = pool_of_kind("shared", 0, 0);
    xthread x = { pool, NULL, NULL };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, alloc_elsewhere, &x) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(x.small != NULL && x.big != NULL);
    CHECK(rp_block_pool(x.small) == pool);
    unsigned char *s = rp_resize(pool, x.small, 28);
    unsigned char *b = rp_resize(pool, x.big, 50016);
    CHECK(s != NULL && b != NULL);
    CHECK(tu_intact(s, 20, 3));
    CHECK(tu_intact(b, 50000, 4));
    CHECK_COUNTS(pool, 2, 28 + 50016);
    s = rp_resize(pool, s, 3000);                    /* a move */
    CHECK(tu_intact(s, 20, 3));
    CHECK_COUNTS(pool, 2, 3000 + 50016);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_free(s);
    rp_free(b);
    tu_end_pool(pool);
}

static const tu_case cases[] = {
    { "block_of_another_thread_resized", block_of_another_thread_resized },
    { "checked_big_blocks_stay_exact", checked_big_blocks_stay_exact },
    { "growth_within_the_class_stays", growth_within_the_class_stays },
    { "growth_moves_keeping_the_ring_order", growth_moves_keeping_the_ring_order },
    { "shrink_keeps_the_block", shrink_keeps_the_block },
    { "last_carved_grows_to_the_chunk_end", last_carved_grows_to_the_chunk_end },
    { "big_block_growth_stays_in_place", big_block_growth_stays_in_place },
    { "destructor_follows_a_growing_big_block", destructor_follows_a_growing_big_block },
    { "oom_during_resize_keeps_the_block", oom_during_resize_keeps_the_block },
    { "doubling_keeps_ring_counters_and_peaks", doubling_keeps_ring_counters_and_peaks },
    { "failed_headroom_realloc_retried_exactly", failed_headroom_realloc_retried_exactly },
    { "sizes_over_the_maximum_refused", sizes_over_the_maximum_refused },
    { "sampled_block_resized", sampled_block_resized },
    { "wrong_pool_is_refused", wrong_pool_is_refused },
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
