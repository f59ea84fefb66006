/* test_pool_check.c -- rp_pool_check of an UNCHECKED pool whose memory was
   overwritten (docs/contract.md, Checked pools: it follows the ring as it
   finds it and stops at the first inconsistency it can see). Each case
   overwrites one field of one block's header as a stray write would, and
   expects exactly one RP_ECORRUPT finding through the error handler, naming
   what it saw (and the block, where there is one); rp_pool_check returns
   RP_ECORRUPT and changes nothing: with the bytes put back the pool checks
   clean, its counters are exact, and every block is freed normally.

   The header's layout is the library's (csrc/internal.h, rpi_hdr): a block
   with a header has its tag record at payload - 16 and its size word at
   payload - 8; a block on the pool's ring (the malloc backing) has its ring
   links at payload - 32 (prev) and payload - 24 (next). Arena blocks with a
   header (more than 16 bytes) are found by chunk, not by ring. */
#include <stdint.h>

#include "testutil.h"

typedef struct fake_hdr {
    struct fake_hdr *prev, *next;
    void            *origin;
    uint64_t         word;
} fake_hdr;

static fake_hdr *hdr(void *p) { return (fake_hdr *)((char *)p - sizeof(fake_hdr)); }

enum { NB = 5, SZ = 100 };

/* One finding, RP_ECORRUPT, whose message contains `what`, about block
   `block` (NULL: none named). */
static void expect_finding(rp_pool *pool, const char *what, const void *block)
{
    tu_errors_reset();
    CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
    CHECK_INT(tu_err_count, 1);
    CHECK_INT(tu_err_code[0], RP_ECORRUPT);
    if (strstr(tu_err_msg[0], what) == NULL)
        tu_fail(__FILE__, __LINE__, "finding '%s' does not say '%s'", tu_err_msg[0], what);
    CHECK(tu_err_block[0] == block);
    CHECK(strchr(tu_err_msg[0], '\n') == NULL);
    tu_errors_reset();
}

/* The pool checks clean and holds exactly its NB blocks of SZ bytes. */
static void expect_whole(rp_pool *pool, void **b)
{
    tu_errors_reset();
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(tu_err_count, 0);
    CHECK_COUNTS(pool, NB, (size_t)NB * SZ);
    for (int i = 0; i < NB; i++) {
        CHECK(rp_block_pool(b[i]) == pool);
        CHECK_EQ(rp_block_size(b[i]), SZ);
        CHECK(tu_intact(b[i], SZ, (unsigned)i));
    }
}

static void check_kind(unsigned kind)
{
    rp_pool *pool = tu_pool_ex("check", kind), *other = tu_pool_ex("other", kind);
    void *b[NB], *o = rp_alloc(other, SZ, "o");
    for (int i = 0; i < NB; i++) {
        b[i] = rp_alloc(pool, SZ, i % 2 ? "odd" : "even");
        tu_fill(b[i], SZ, (unsigned)i);
    }
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    expect_whole(pool, b);
    /* (the fields a block has: a compact arena header is origin and word
       alone, its first 16 bytes the slot before, poisoned in ASan builds) */
    fake_hdr *h = hdr(b[2]), saved = { 0 };
    saved.origin = h->origin;
    saved.word = h->word;
    if (!tu_is_arena()) saved.prev = h->prev;

    /* the size word: the walk's sum disagrees with the counters */
    h->word += 1;
    expect_finding(pool, "counters say", NULL);
    h->word = saved.word;
    expect_whole(pool, b);

    /* the tag record: another pool's */
    h->origin = hdr(o)->origin;
    expect_finding(pool, "foreign origin", b[2]);
    h->origin = saved.origin;
    expect_whole(pool, b);

    if (!tu_is_arena()) {
        /* no tag record at all */
        h->origin = NULL;
        expect_finding(pool, "foreign origin", b[2]);
        h->origin = saved.origin;
        expect_whole(pool, b);

        /* a ring link: prev no longer the block before it */
        h->prev = hdr(b[4]);
        expect_finding(pool, "ring link broken", b[2]);
        h->prev = saved.prev;
        expect_whole(pool, b);

        /* a header that is no block of the pool's, linked in after the
           ring's last block: more blocks than counted */
        fake_hdr *last = NULL, *sentinel = NULL, stray;
        for (int i = 0; i < NB; i++) {
            int on = 0;
            for (int j = 0; j < NB; j++) on |= hdr(b[i])->next == hdr(b[j]);
            if (!on) {
                last = hdr(b[i]);
                sentinel = last->next;
            }
        }
        CHECK(last != NULL);
        stray = *last;
        stray.prev = last;
        stray.next = sentinel;
        last->next = &stray;
        expect_finding(pool, "more blocks than counted", NULL);
        last->next = sentinel;
        expect_whole(pool, b);
    }
    rp_set_error_handler(prev);

    /* usable as before: more blocks, frees, a reset */
    void *more = rp_alloc(pool, 3 * SZ, "more");
    CHECK_COUNTS(pool, NB + 1, (size_t)NB * SZ + 3 * SZ);
    rp_free(more);
    for (int i = 0; i < NB; i += 2) rp_free(b[i]);
    CHECK_COUNTS(pool, NB / 2, (size_t)(NB / 2) * SZ);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_pool_reset(pool);
    CHECK_COUNTS(pool, 0, 0);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_pool_destroy(pool);
    rp_pool_destroy(other);
}

/* Each finding of an unsynchronised pool's check, one at a time. */
static void test_unsync_findings(void) { check_kind(RP_POOL_UNSYNC); }

/* The same in a thread-safe pool used by its creator alone. */
static void test_locked_findings(void) { check_kind(0); }

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"unsync_findings", test_unsync_findings},
        {"locked_findings", test_locked_findings},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
