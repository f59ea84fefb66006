/* test_asan_poison.c -- in an ASan build the arena's memory that no live
 * block owns is poisoned (csrc/asan.h, docs/contract.md "AddressSanitizer"):
 * a block's bytes past its requested size, a freed block's payload, a free
 * headerless slot, a chunk's uncarved rest. Death tests run a child that
 * makes one bad access and must be stopped by ASan; the other cases use
 * every API on arena pools of each kind and check the shadow after each step
 * (the requested bytes addressable, the slack not) and that nothing of the
 * library's own trips ASan. The pools are arena pools whatever the backing
 * argument. Without ASan (the plain and valgrind runs) the program says so
 * and passes: there is nothing to see.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdbool.h>

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

#ifndef TU_ASAN
int main(int argc, char **argv)
{
    (void)argc;
    printf("skip %s: not an AddressSanitizer build\n", argv[0]);
    return 0;
}
#else
#include <sanitizer/asan_interface.h>

static rp_pool *arena_pool(const char *name, unsigned flags)
{
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = flags | RP_POOL_ARENA;
    rp_pool *p = rp_pool_create_ex(name, &o);
    CHECK(p != NULL);
    tu_watched = p;
    return p;
}

static unsigned kind_flags(const char *kind)
{
    if (strcmp(kind, "unsync") == 0) return RP_POOL_UNSYNC;
    if (strcmp(kind, "locked") == 0) return 0;   /* thread-safe (its creator: biased) */
    if (strcmp(kind, "checked") == 0) return RP_POOL_CHECKED;
    tu_fail(__FILE__, __LINE__, "kind %s", kind);
}

/* The header of a small arena block: the compact 16 bytes, 32 in checked
   pools; a slot holds header and block rounded up to 16. */
static size_t hdr_bytes(unsigned flags) { return flags & RP_POOL_CHECKED ? 32 : 16; }
static size_t slot_bytes(unsigned flags, size_t size)
{
    return (hdr_bytes(flags) + size + 15) & ~(size_t)15;
}

/* ------------------------------------------------------------ shadow */
/* p's first size bytes addressable, and the next byte not when the slot has
   slack there (slack: bytes of the slot past the block). */
#define EXPECT_LIVE(p, size, slack)                                            \
    do {                                                                       \
        const char *lp_ = (const char *)(p);                                   \
        size_t ls_ = (size);                                                   \
        CHECK(__asan_region_is_poisoned((void *)lp_, ls_) == NULL);            \
        if (slack) CHECK(__asan_address_is_poisoned(lp_ + ls_));               \
    } while (0)
#define EXPECT_POISONED(p, n) CHECK(__asan_region_is_poisoned((void *)(p), (n)) == (void *)(p))

/* ------------------------------------------------------------ death tests */
/* One bad access of kind what in a pool of kind (arg "kind:what"); ASan
   must stop the child before it says "survived". */
static void child_bad(const char *arg)
{
    char kind[16] = "", what[32] = "";
    CHECK(sscanf(arg, "%15[^:]:%31s", kind, what) == 2);
    unsigned flags = kind_flags(kind);
    rp_pool *pool = arena_pool("bad", flags);
    volatile char *v;
    size_t sb = slot_bytes(flags, 32);
    if (strcmp(what, "slack") == 0) {
        /* 1 byte past a 20-byte block, in its slot's slack */
        v = rp_alloc(pool, 20, "t");
        v[20] = 1;
    } else if (strcmp(what, "slack_read") == 0) {
        v = rp_alloc(pool, 37, "t");
        (void)v[37];
    } else if (strcmp(what, "next_free") == 0) {
        /* past a block that fills its slot, into the next slot's block,
           freed */
        char *a = rp_alloc(pool, 32, "t"), *b = rp_alloc(pool, 32, "t");
        CHECK(b == a + sb);
        rp_free(b);
        v = a;
        (void)v[sb];
    } else if (strcmp(what, "next_tail") == 0) {
        /* past the block carved last into the chunk's uncarved rest */
        v = rp_alloc(pool, 32, "t");
        v[sb - hdr_bytes(flags)] = 1;
    } else if (strcmp(what, "tail_far") == 0) {
        v = rp_alloc(pool, 100, "t");
        v[4000] = 1;
    } else if (strcmp(what, "freed") == 0) {
        v = rp_alloc(pool, 40, "t");
        rp_free((void *)v);
        (void)v[0];
    } else if (strcmp(what, "freed_end") == 0) {
        v = rp_alloc(pool, 200, "t");
        (void)rp_alloc(pool, 200, "t");   /* v not carved last: on its list */
        rp_free((void *)v);
        (void)v[199];
    } else if (strcmp(what, "moved") == 0) {
        /* a resize that moved the block freed the old one */
        char *p = rp_alloc(pool, 40, "t");
        (void)rp_alloc(pool, 40, "t");
        char *q = rp_resize(pool, p, 400);
        CHECK(q != p);
        v = p;
        (void)v[0];
    } else if (strcmp(what, "shrunk") == 0) {
        /* a shrink in place: the old end is slack (or the chunk's again) */
        v = rp_alloc(pool, 500, "t");
        CHECK(rp_resize(pool, (void *)v, 100) == v);
        v[300] = 1;
    } else if (strcmp(what, "big_headroom") == 0) {
        /* a big block grown by a small step: a quarter of headroom, past
           its size */
        char *p = rp_alloc(pool, 40000, "t");
        v = rp_resize(pool, p, 40100);
        CHECK(v != NULL);
        v[40100] = 1;
    } else if (strcmp(what, "big_shrunk") == 0) {
        /* a big block shrunk within its allocation */
        v = rp_alloc(pool, 40000, "t");
        CHECK(rp_resize(pool, (void *)v, 30000) == v);
        (void)v[35000];
    } else if (strncmp(what, "hl", 2) == 0) {
        /* headerless slots: 16 bytes (1 to 16), 64 (49 to 64 bytes with
           RINGPOOL_HEADERLESS=64), carved end to end (a block with a header
           would not be: its slot is 16 bytes more); the tag's first block
           gets a header */
        int hl64 = strncmp(what, "hl64", 4) == 0;
        size_t size = hl64 ? 60 : 13, slot = hl64 ? 64 : 16;
        (void)rp_alloc(pool, size, "t");
        char *a = rp_alloc(pool, size, "t"), *b = rp_alloc(pool, size, "t");
        CHECK(b == a + slot);
        const char *w = what + (hl64 ? 4 : 2);
        if (strcmp(w, "_slack") == 0) {
            v = a;
            v[size] = 1;   /* 1 byte past it, in its slot */
        } else if (strcmp(w, "_freed") == 0) {
            rp_free(a);
            v = a;
            (void)v[size - 1];
        } else if (strcmp(w, "_link") == 0) {
            rp_free(a);
            v = a;
            (void)v[0];    /* the free list's link words */
        } else if (strcmp(w, "_next_free") == 0) {
            rp_free(b);
            v = a;
            (void)v[slot];
        } else if (strcmp(w, "_tail") == 0) {
            v = b;
            v[slot] = 1;   /* the chunk's uncarved rest */
        } else {
            tu_fail(__FILE__, __LINE__, "what %s", what);
        }
    } else {
        tu_fail(__FILE__, __LINE__, "what %s", what);
    }
    fprintf(stderr, "survived\n");
    exit(0);
}

static void expect_stopped(const char *arg, const char *env, const char *access)
{
    tu_result r;
    tu_spawn("bad", arg, env, &r);
    if ((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) || strstr(r.err, "survived") ||
        !(strstr(r.err, "AddressSanitizer: use-after-poison") ||
          /* a byte past the block in the granule it ends in, with a live
             neighbour in the next: ASan names the kind by the next
             granule's shadow, and says unknown-crash */
          strstr(r.err, "AddressSanitizer: unknown-crash")) ||
        !strstr(r.err, access))
        tu_fail(__FILE__, __LINE__, "%s (%s): not stopped by ASan (%s), stderr:\n%s", arg,
                env ? env : "", access, r.err);
}

/* A bad access (child_bad's what) and what ASan must say of it. */
typedef struct {
    const char *what, *access;
} bad_access;
#define WRITE1 "WRITE of size 1"
#define READ1 "READ of size 1"

/* The pool kinds: unsynchronised, thread-safe, checked; the first
   UNCHECKED_KINDS of them are the unchecked ones. */
static const char *const pool_kinds[] = { "unsync", "locked", "checked" };
enum { ALL_KINDS = 3, UNCHECKED_KINDS = 2 };

/* Each of the n accesses of w (child_bad's what: prefix, then w[i].what)
   in a pool of each of the first nkinds kinds, in a child with env set,
   stopped by ASan. */
static void expect_stopped_each(int nkinds, const char *env, const char *prefix,
                                const bad_access *w, size_t n)
{
    char arg[64];
    for (int k = 0; k < nkinds; k++) {
        for (size_t i = 0; i < n; i++) {
            snprintf(arg, sizeof arg, "%s:%s%s", pool_kinds[k], prefix, w[i].what);
            expect_stopped(arg, env, w[i].access);
        }
    }
}
#define EXPECT_STOPPED_EACH(nkinds, env, prefix, w) \
    expect_stopped_each((nkinds), (env), (prefix), (w), sizeof(w) / sizeof((w)[0]))

/* (a) a 1-byte overflow: into the slack, into the next slot's freed block,
   into the chunk's uncarved rest; each pool kind. */
static void test_overflow_stopped(void)
{
    static const bad_access w[] = {
        {"slack", WRITE1}, {"slack_read", READ1}, {"next_free", READ1}, {"shrunk", WRITE1},
    };
    EXPECT_STOPPED_EACH(ALL_KINDS, "RINGPOOL_HEADERLESS=16", "", w);
}

/* Big blocks (their own allocation): the headroom of a growth, the rest of
   an allocation a shrink keeps (not in checked pools, whose big blocks
   keep no headroom and move on a shrink: malloc's exact sizes). */
static void test_big_headroom_stopped(void)
{
    static const bad_access w[] = { {"big_headroom", WRITE1}, {"big_shrunk", READ1} };
    EXPECT_STOPPED_EACH(UNCHECKED_KINDS, NULL, "", w);
}

/* (b) a read of a freed block (on its class's free list; left by a move) */
static void test_use_after_free_stopped(void)
{
    static const bad_access w[] = { {"freed", READ1}, {"freed_end", READ1}, {"moved", READ1} };
    EXPECT_STOPPED_EACH(ALL_KINDS, "RINGPOOL_HEADERLESS=16", "", w);
}

/* (c) a write into a chunk's uncarved rest */
static void test_uncarved_stopped(void)
{
    static const bad_access w[] = { {"next_tail", WRITE1}, {"tail_far", WRITE1} };
    EXPECT_STOPPED_EACH(ALL_KINDS, "RINGPOOL_HEADERLESS=16", "", w);
}

/* (d) the same for headerless slots: 16-byte ones, and up to 64 bytes
   with RINGPOOL_HEADERLESS=64 */
static void test_headerless_stopped(void)
{
    static const bad_access w[] = {
        {"slack", WRITE1}, {"freed", READ1}, {"link", READ1}, {"next_free", READ1},
        {"tail", WRITE1},
    };
    EXPECT_STOPPED_EACH(UNCHECKED_KINDS, "RINGPOOL_HEADERLESS=16", "hl_", w);
    EXPECT_STOPPED_EACH(UNCHECKED_KINDS, "RINGPOOL_HEADERLESS=64", "hl64_", w);
}

/* ------------------------------------------------------------ clean use */
static int visit_reads(void *block, size_t size, const char *tag, void *arg)
{
    (void)tag;
    const volatile unsigned char *b = block;
    unsigned sum = 0;
    for (size_t i = 0; i < size; i++) sum += b[i];   /* every requested byte */
    *(unsigned *)arg += sum;
    return 0;
}

static int dtor_runs;
static void dtor_reads(void *block)
{
    const volatile char *b = block;
    dtor_runs += b[0] == 'd';
}

typedef struct remote_job {
    void **blocks;
    int n;
} remote_job;
static void *free_them(void *arg)
{
    remote_job *j = arg;
    for (int i = 0; i < j->n; i++) rp_free(j->blocks[i]);
    return NULL;
}

#define NB 300
/* Every API on an arena pool of these flags, the shadow checked after each
   step where the layout is known. */
static void exercise(unsigned flags)
{
    rp_pool *pool = arena_pool("clean", flags), *other = arena_pool("other", flags);
    void *b[NB];
    size_t sz[NB];
    bool big[NB];   /* ever too large for the arena's classes: its own malloc */
    /* sizes across headerless slots, compact classes, the classes past
       1 KiB, big blocks */
    for (int i = 0; i < NB; i++) {
        sz[i] = (size_t)(i * 37 % 1200) + (i % 7 == 0 ? 40000 : 0);
        big[i] = sz[i] >= 1000;
        b[i] = i % 3 == 1 ? rp_calloc(pool, 1, sz[i], "calloc") : rp_alloc(pool, sz[i], "alloc");
        CHECK(b[i] != NULL);
        if (i % 3 == 1)
            for (size_t k = 0; k < sz[i]; k++) CHECK(((unsigned char *)b[i])[k] == 0);
        tu_fill(b[i], sz[i], (unsigned)i);
        if (sz[i] % 16 && sz[i] < 1000) EXPECT_LIVE(b[i], sz[i], 1);
        else EXPECT_LIVE(b[i], sz[i], 0);
    }
    /* resizes: grow and shrink in place, shrink to half (the block carved
       last gives the rest back), moves within the arena and out of it */
    static const size_t to[] = { 1, 5, 17, 33, 70, 100, 300, 700, 1500, 5000, 50000, 3, 24, 0 };
    for (int i = 0; i < NB; i += 3) {
        size_t ns = to[(size_t)i % (sizeof to / sizeof to[0])];
        void *q = rp_resize(pool, b[i], ns);
        CHECK(q != NULL || ns == 0);
        size_t keep = sz[i] < ns ? sz[i] : ns;
        if (q) CHECK(tu_intact(q, keep, (unsigned)i));
        b[i] = q;
        sz[i] = ns;
        big[i] |= ns >= 1000;
        if (q) {
            tu_fill(q, ns, (unsigned)i);
            if (ns % 16 && ns < 1000) EXPECT_LIVE(q, ns, 1);
            else EXPECT_LIVE(q, ns, 0);
        }
    }
    /* the block carved last, grown step by step in place and shrunk */
    char *g = rp_alloc(pool, 10, "grow");
    for (size_t s = 20; s < 3000; s += 90) {
        char *n = rp_resize(pool, g, s);
        CHECK(n != NULL);
        g = n;
        memset(g, 'g', s);
        if (s % 16) EXPECT_LIVE(g, s, 1);
    }
    g = rp_resize(pool, g, 30);
    CHECK(g != NULL && g[29] == 'g');
    EXPECT_LIVE(g, 30, 1);
    /* aligned, strings, copies, a destructor */
    char *al = rp_alloc_aligned(pool, 64, 100, "aligned");
    CHECK(al != NULL && ((uintptr_t)al & 63) == 0);
    memset(al, 'a', 100);
    char *s1 = rp_strdup(pool, "a string of some length", "str");
    char *s2 = rp_strconcat(pool, "str", 3, "x", s1, "yz");
    CHECK(strcmp(s2, "xa string of some lengthyz") == 0);
    char *s3 = rp_strdup(pool, "", "str");
    EXPECT_LIVE(s3, 1, 1);
    char *md = rp_memdup(pool, s1, 5, "str");
    EXPECT_LIVE(md, 5, 1);
    char *d = rp_alloc(pool, 9, "dtor");
    d[0] = 'd';
    CHECK_INT(rp_set_destructor(d, dtor_reads), 0);
    /* walks, checks, statistics, reports read what they read without
       tripping over the poison */
    unsigned sum = 0;
    CHECK_INT(rp_pool_walk(pool, visit_reads, &sum), 0);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_tag_stat st[16];
    CHECK(rp_pool_stats(pool, st, 16) > 0);
    CHECK_INT(rp_pool_write_report_ex(pool, "/dev/null", RP_REPORT_BLOCKS | RP_REPORT_CHILDREN), 0);
    CHECK(rp_block_size(s1) == strlen(s1) + 1);
    CHECK(rp_block_pool(md) == pool);
    /* frees: every other block, the payload poisoned behind it (a big
       block's allocation is ASan's own: freed, or in a checked pool's
       quarantine) */
    for (int i = 0; i < NB; i += 2) {
        char *p = b[i];
        size_t s = sz[i];
        rp_free(p);
        if (p && s >= 1 && !big[i]) EXPECT_POISONED(p, s);
        b[i] = NULL;
    }
    rp_free(g);
    rp_free(s2);
    /* reuse of the freed blocks, then the check and the walk again */
    for (int i = 0; i < NB; i += 2) {
        sz[i] = (size_t)(i * 13 % 600);
        b[i] = rp_alloc(pool, sz[i], "again");
        tu_fill(b[i], sz[i], (unsigned)i + 1);
        if (sz[i] % 16) EXPECT_LIVE(b[i], sz[i], 1);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(rp_pool_walk(pool, visit_reads, &sum), 0);
    for (int i = 0; i < NB; i++)
        if (b[i]) CHECK(tu_intact(b[i], sz[i], (unsigned)i + (i % 2 == 0)));
    /* another thread frees blocks of a thread-safe pool (a biased pool's
       list of remote frees: the link in the block) */
    if (!(flags & RP_POOL_UNSYNC)) {
        void *mine[64];
        for (int i = 0; i < 64; i++) mine[i] = rp_alloc(other, (size_t)i % 40 + 1, "remote");
        remote_job j = { mine, 64 };
        pthread_t th;
        CHECK(pthread_create(&th, NULL, free_them, &j) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        for (int i = 0; i < 200; i++) {
            char *p = rp_alloc(other, (size_t)i % 40 + 1, "after");
            memset(p, 1, (size_t)i % 40 + 1);
        }
        CHECK_INT(rp_pool_check(other), 0);
    }
    /* reset: the pool's chunks kept; blocks carved from them again */
    dtor_runs = 0;
    CHECK_INT(rp_pool_reset(pool), 0);
    CHECK_INT(dtor_runs, 1);
    for (int i = 0; i < 100; i++) {
        char *p = rp_alloc(pool, (size_t)i * 11 + 1, "after reset");
        memset(p, 2, (size_t)i * 11 + 1);
        EXPECT_LIVE(p, (size_t)i * 11 + 1, 0);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(rp_pool_walk(pool, visit_reads, &sum), 0);
    rp_pool_destroy(pool);
    rp_pool_destroy(other);
    tu_watched = NULL;
    /* a new pool on the destroyed pools' cached chunks */
    rp_pool *again = arena_pool("again", flags);
    for (int i = 0; i < 500; i++) {
        char *p = rp_alloc(again, (size_t)i % 300 + 1, "cached");
        memset(p, 3, (size_t)i % 300 + 1);
    }
    CHECK_INT(rp_pool_check(again), 0);
    rp_pool_destroy(again);
}

static void child_clean(const char *arg)
{
    (void)arg;
    exercise(RP_POOL_UNSYNC);
    exercise(0);
    exercise(RP_POOL_CHECKED);
    exercise(RP_POOL_CHECKED | RP_POOL_UNSYNC);
    fprintf(stderr, "clean done\n");
    exit(0);
}

/* Normal use of every API stays ASan-clean, with 16-byte headerless slots
   and with RINGPOOL_HEADERLESS=64 (each in a process of its own: the
   setting is read once). */
static void test_every_api_clean(void)
{
    static const char *envs[] = { "RINGPOOL_HEADERLESS=16", "RINGPOOL_HEADERLESS=64",
                                  "RINGPOOL_HEADERLESS=0" };
    for (int e = 0; e < 3; e++) {
        tu_result r;
        tu_spawn("clean", "", envs[e], &r);
        if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0 || !strstr(r.err, "clean done") ||
            strstr(r.err, "AddressSanitizer"))
            tu_fail(__FILE__, __LINE__, "%s: status %d, stderr:\n%s", envs[e], r.status, r.err);
    }
}

/* The shadow of freed and carved memory, in this process. */
static void test_shadow(void)
{
    rp_pool *pool = arena_pool("shadow", RP_POOL_UNSYNC);
    char *y = rp_alloc(pool, 200, "t");
    rp_free(y);                            /* waits on its class's list */
    EXPECT_POISONED(y, 200);
    char *a = rp_alloc(pool, 100, "t");    /* compact: a 128-byte slot */
    char *b = rp_alloc(pool, 100, "t");
    CHECK(b == a + 128);
    EXPECT_LIVE(a, 100, 1);
    EXPECT_POISONED(a + 100, 12);          /* the slack up to the next header */
    CHECK(__asan_region_is_poisoned(b - 16, 16) == NULL);   /* the next header */
    EXPECT_POISONED(b + 112, 1000);        /* the chunk's uncarved rest */
    rp_free(a);
    EXPECT_POISONED(a, 112);               /* the payload, header kept */
    CHECK(__asan_region_is_poisoned(a - 16, 16) == NULL);
    rp_free(b);
    EXPECT_POISONED(b, 112);
    char *c = rp_alloc(pool, 100, "t");    /* b again, from its list */
    CHECK(c == b);
    EXPECT_LIVE(c, 100, 1);
    EXPECT_POISONED(c + 100, 12);
    /* a resize that moves the block carved last (to y: a block of the new
       class waits) gives its slot back to the chunk: poisoned whole, header
       included */
    char *d = rp_resize(pool, c, 200);
    CHECK(d == y);
    EXPECT_POISONED(c - 16, 128);
    EXPECT_LIVE(d, 200, 1);
    EXPECT_POISONED(d + 200, 8);
    rp_free(d);
    char *e = rp_alloc(pool, 100, "t");    /* a, from its list */
    CHECK(e == a);
    tu_end_pool((rp_free(e), pool));
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"shadow", test_shadow},
        {"overflow_stopped", test_overflow_stopped},
        {"use_after_free_stopped", test_use_after_free_stopped},
        {"uncarved_stopped", test_uncarved_stopped},
        {"headerless_stopped", test_headerless_stopped},
        {"big_headroom_stopped", test_big_headroom_stopped},
        {"every_api_clean", test_every_api_clean},
    };
    static const tu_child children[] = {
        {"bad", child_bad},
        {"clean", child_clean},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children, TU_NCASES(children));
}
#endif
