/* test_hierarchy.c -- child pools, cleanups (order, removal, allocation from
   inside), per-block destructors, reset, reserved bytes and arena chunk reuse. */
#include "testutil.h"
#include <pthread.h>
#include <stdint.h>

/* ------------------------------------------------------------ event log */
static char events[64][48];
static int nevents;

static void log_event(const char *fmt, const char *s)
{
    if (nevents < 64)
        snprintf(events[nevents], sizeof events[0], fmt, s);
    nevents++;
}

static void check_events(const char *const *want, int n)
{
    int i;
    if (nevents != n) {
        for (i = 0; i < nevents && i < 64; i++)
            fprintf(stderr, "  event %d: %s\n", i, events[i]);
        tu_fail(__FILE__, __LINE__, "%d events, expected %d", nevents, n);
    }
    for (i = 0; i < n; i++)
        CHECK_STR(events[i], want[i]);
    nevents = 0;
}

static void cleanup_log(void *arg) { log_event("cleanup %s", (const char *)arg); }

static void destructor_log(void *block) { log_event("dtor %s", (const char *)block); }

/* ---------------------------------------------------------------- tests */
static void test_children(void)
{
    rp_pool *parent = tu_pool("parent");
    rp_pool *child = rp_pool_create_child(parent, "child");
    rp_pool *grand, *other;
    rp_pool_info info;
    rp_pool_options o;
    CHECK(child != NULL);
    CHECK(rp_pool_parent(child) == parent);
    CHECK_STR(rp_pool_name(child), "child");
    memset(&o, 0, sizeof o);
    o.flags = RP_POOL_CHECKED | (tu_backing ^ RP_POOL_ARENA); /* the other backing */
    grand = rp_pool_create_child_ex(child, "grand", &o);
    CHECK(grand != NULL);
    CHECK(rp_pool_parent(grand) == child);
    other = rp_pool_create_child(parent, "other");
    (void)rp_alloc(child, 10, "c");
    (void)rp_strdup(grand, "in grandchild", "g");
    (void)rp_alloc(other, 1000, "o");
    info = tu_info(parent);
    CHECK_EQ(info.children, 2);
    CHECK_EQ(info.blocks, 0); /* counters are per pool */
    CHECK_INT(rp_pool_get_info(grand, &info), 0);
    CHECK_EQ(info.flags & (RP_POOL_CHECKED | RP_POOL_ARENA), o.flags);
    /* destroying a child explicitly detaches it from its parent */
    rp_pool_destroy(other);
    CHECK_INT(rp_pool_get_info(parent, &info), 0);
    CHECK_EQ(info.children, 1);
    /* a NULL parent is a bad argument */
    {
        rp_error_handler prev = rp_set_error_handler(tu_record_error);
        tu_errors_reset();
        CHECK(rp_pool_create_child(NULL, "orphan") == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        CHECK(rp_pool_create_child_ex(NULL, "orphan", &o) == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
        rp_set_error_handler(prev);
    }
    /* the parent's reset destroys child and grandchild with their blocks
       (valgrind and ASan prove they are gone) */
    CHECK_INT(rp_pool_reset(parent), 0);
    CHECK_INT(rp_pool_get_info(parent, &info), 0);
    CHECK_EQ(info.children, 0);
    tu_end_pool(parent);
}

static void test_destroy_order(void)
{
    static const char *const want[] = {
        "cleanup p3", "cleanup p1", /* the parent's, last registered first */
        "cleanup c1",               /* then the children, with their own */
        "dtor child-block",
        "dtor parent-block",        /* then the parent's blocks */
    };
    rp_pool *parent = tu_pool("order");
    rp_pool *child = rp_pool_create_child(parent, "child");
    char *pb, *cb;
    nevents = 0;
    CHECK_INT(rp_pool_add_cleanup(parent, cleanup_log, "p1"), 0);
    CHECK_INT(rp_pool_add_cleanup(parent, cleanup_log, "p2"), 0);
    CHECK_INT(rp_pool_add_cleanup(parent, cleanup_log, "p3"), 0);
    CHECK_INT(rp_pool_remove_cleanup(parent, cleanup_log, "p2"), 0);
    CHECK_INT(rp_pool_remove_cleanup(parent, cleanup_log, "p2"), RP_ENOTFOUND);
    CHECK_INT(rp_pool_remove_cleanup(parent, cleanup_log, "nope"), RP_ENOTFOUND);
    CHECK_INT(rp_pool_add_cleanup(child, cleanup_log, "c1"), 0);
    pb = rp_strdup(parent, "parent-block", "pb");
    cb = rp_strdup(child, "child-block", "cb");
    CHECK_INT(rp_set_destructor(pb, destructor_log), 0);
    CHECK_INT(rp_set_destructor(cb, destructor_log), 0);
    tu_watched = NULL;
    rp_pool_destroy(parent);
    check_events(want, 5);
}

/* A cleanup runs while the pool's blocks and children still exist, and may
   allocate from and free to its own pool. */
typedef struct cleanup_ctx {
    rp_pool *pool, *child;
    char *block, *child_block;
    int ran;
} cleanup_ctx;

static void cleanup_uses_pool(void *arg)
{
    cleanup_ctx *c = arg;
    char *tmp;
    CHECK_STR(c->block, "still here");
    CHECK_STR(c->child_block, "child too");
    CHECK_EQ(rp_pool_outstanding(c->child, NULL), 1);
    tmp = rp_strconcat(c->pool, "cleanup", 2, c->block, "!");
    CHECK_STR(tmp, "still here!");
    rp_free(tmp);
    (void)rp_alloc(c->pool, 77, "left by cleanup"); /* freed with the rest */
    c->ran++;
}

static void test_cleanup_uses_pool(void)
{
    cleanup_ctx c;
    memset(&c, 0, sizeof c);
    c.pool = tu_pool("cleanup-uses");
    c.child = rp_pool_create_child(c.pool, "kid");
    c.block = rp_strdup(c.pool, "still here", "b");
    c.child_block = rp_strdup(c.child, "child too", "b");
    CHECK_INT(rp_pool_add_cleanup(c.pool, cleanup_uses_pool, &c), 0);
    tu_watched = NULL;
    rp_pool_destroy(c.pool);
    CHECK_INT(c.ran, 1);
}

static void test_destructors(void)
{
    static const char *const on_free[] = {"dtor one"};
    static const char *const on_reset[] = {"dtor three"};
    rp_pool *pool = tu_pool("dtors");
    char *one = rp_strdup(pool, "one", "d");
    char *two = rp_strdup(pool, "two", "d");
    char *three = rp_strdup(pool, "three", "d");
    nevents = 0;
    CHECK_INT(rp_set_destructor(one, destructor_log), 0);
    CHECK_INT(rp_set_destructor(two, destructor_log), 0);
    CHECK_INT(rp_set_destructor(three, destructor_log), 0);
    CHECK_INT(rp_set_destructor(two, NULL), 0); /* removed */
    /* a resized block keeps its destructor */
    three = rp_resize(pool, three, 200);
    CHECK_STR(three, "three");
    rp_free(one);
    check_events(on_free, 1);
    rp_free(two);
    check_events(NULL, 0);
    CHECK_INT(rp_pool_reset(pool), 0);
    check_events(on_reset, 1);
    {
        rp_error_handler prev = rp_set_error_handler(tu_record_error);
        tu_errors_reset();
        CHECK(rp_set_destructor(NULL, destructor_log) < 0);
        rp_set_error_handler(prev);
    }
    tu_end_pool(pool);
}

/* A destructor that leaves work for its pool's destroy: a child of the
   block's pool (with a cleanup and a block with a destructor) and a
   cleanup on the pool itself. */
static void dtor_leaves_work(void *block)
{
    rp_pool *pool = rp_block_pool(block);
    log_event("dtor %s", (const char *)block);
    rp_pool *late = rp_pool_create_child(pool, "late");
    CHECK(late != NULL);
    CHECK_INT(rp_pool_add_cleanup(late, cleanup_log, "late"), 0);
    char *b = rp_strdup(late, "late block", "d");
    CHECK_INT(rp_set_destructor(b, destructor_log), 0);
    CHECK_INT(rp_pool_add_cleanup(pool, cleanup_log, "left"), 0);
}

static void test_destructor_leaves_work(void)
{
    /* the destroy runs what the destructor left, before the pool goes (the
       child was left behind with its parent freed, the cleanup never ran) */
    static const char *const want[] = {"dtor block", "cleanup left", "cleanup late",
                                       "dtor late block"};
    for (int how = 0; how < 4; how++) {
        rp_pool *root = tu_pool("root");
        /* 0: the pool destroyed; 1, 2: a child of the pool destroyed or
           reset; 3: the pool reset, which keeps what the destructor made */
        rp_pool *pool = how == 0 || how == 3 ? root : rp_pool_create_child(root, "mid");
        char *b = rp_strdup(pool, "block", "d");
        nevents = 0;
        CHECK_INT(rp_set_destructor(b, dtor_leaves_work), 0);
        if (how == 0 || how == 1) {
            rp_pool_destroy(root);
            check_events(want, 4);
            continue;
        }
        CHECK_INT(rp_pool_reset(root), 0);
        if (how == 2) {
            check_events(want, 4);
            CHECK_EQ(tu_info(root).children, 0);
        } else {
            check_events(want, 1);
            CHECK_EQ(tu_info(root).children, 1);
        }
        rp_pool_destroy(root);
        if (how == 3) check_events(want + 1, 3);
    }
}

static void test_reset(void)
{
    static const char *const want[] = {"cleanup r2", "cleanup r1"};
    rp_pool *pool = tu_pool("reset");
    rp_tag_stat st[4];
    rp_pool_info info;
    int i;
    nevents = 0;
    for (i = 0; i < 100; i++)
        (void)rp_alloc(pool, 100, "r");
    (void)rp_pool_create_child(pool, "goes");
    CHECK_INT(rp_pool_add_cleanup(pool, cleanup_log, "r1"), 0);
    CHECK_INT(rp_pool_add_cleanup(pool, cleanup_log, "r2"), 0);
    CHECK_INT(rp_pool_reset(pool), 0);
    check_events(want, 2);
    CHECK_COUNTS(pool, 0, 0);
    /* totals and peaks survive the reset */
    CHECK_EQ(rp_pool_stats(pool, st, 4), 1);
    CHECK_EQ(st[0].allocs, 100);
    CHECK_EQ(st[0].peak_bytes, 10000);
    CHECK_EQ(st[0].blocks, 0);
    info = tu_info(pool);
    CHECK_EQ(info.children, 0);
    CHECK_EQ(info.allocs, 100);
    /* usable again; cleanups were consumed */
    {
        void *b = rp_alloc(pool, 5, "r");
        rp_free(b);
    }
    CHECK_INT(rp_pool_reset(pool), 0);
    check_events(NULL, 0);
    CHECK_INT(rp_pool_check(pool), 0);
    tu_end_pool(pool);
    check_events(NULL, 0);
}

static rp_pool *arena_pool(const char *name, size_t chunk, size_t keep)
{
    rp_pool_options o;
    rp_pool *p;
    memset(&o, 0, sizeof o);
    o.flags = RP_POOL_ARENA;
    o.chunk_size = chunk;
    o.keep_bytes = keep;
    p = rp_pool_create_ex(name, &o);
    CHECK(p != NULL);
    tu_watched = p;
    return p;
}

static void get_info(rp_pool *p, rp_pool_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    CHECK_INT(rp_pool_get_info(p, info), 0);
}

/* Arena: freed blocks are reused; reset keeps chunks up to keep_bytes. */
static void test_arena_reuse(void)
{
    enum { N = 4000 };
    static void *b[N];
    rp_pool *pool;
    rp_pool_info i0, i1, i2;
    size_t i, total = 0;
    if (tu_backing != RP_POOL_ARENA) {
        /* with malloc backing the figures are per block */
        pool = tu_pool("malloc-reserved");
        get_info(pool, &i0);
        b[0] = rp_alloc(pool, 1000, "x");
        get_info(pool, &i1);
        CHECK(i1.reserved_bytes >= i0.reserved_bytes + 1000 + 32);
        CHECK_EQ(i1.chunks, 0);
        rp_free(b[0]);
        get_info(pool, &i2);
        /* the freed block either went back to the system or waits on the
           pool's recycle list (header + size rounded to 16), until reset */
        CHECK(i2.reserved_bytes == i0.reserved_bytes ||
              i2.reserved_bytes == i0.reserved_bytes + 32 + 1008);
        b[1] = rp_alloc(pool, 1000, "x");
        if (i2.reserved_bytes != i0.reserved_bytes)
            CHECK(b[1] == b[0]); /* recycled: the same block again */
        get_info(pool, &i2);
        CHECK_EQ(i2.reserved_bytes, i1.reserved_bytes);
        rp_free(b[1]);
        CHECK_INT(rp_pool_reset(pool), 0);
        get_info(pool, &i2);
        CHECK_EQ(i2.reserved_bytes, i0.reserved_bytes);
        tu_end_pool(pool);
        return;
    }
    pool = arena_pool("arena-reuse", 64 * 1024, 128 * 1024);
    for (i = 0; i < N; i++) {
        b[i] = rp_alloc(pool, 16 + (i % 8) * 16, "a");
        total += 16 + (i % 8) * 16;
    }
    get_info(pool, &i0);
    CHECK(i0.chunks >= 4);
    CHECK(i0.reserved_bytes >= total + N * 16);   /* at least the 16-byte arena header each */
    /* free everything, allocate the same again: no new chunks */
    for (i = 0; i < N; i++)
        rp_free(b[N - 1 - i]);
    for (i = 0; i < N; i++)
        b[i] = rp_alloc(pool, 16 + (i % 8) * 16, "a");
    get_info(pool, &i1);
    CHECK_EQ(i1.chunks, i0.chunks);
    CHECK_EQ(i1.reserved_bytes, i0.reserved_bytes);
    /* a block above the big threshold gets its own allocation */
    b[0] = rp_resize(pool, b[0], 4u << 20);
    get_info(pool, &i2);
    CHECK(i2.reserved_bytes >= i1.reserved_bytes + (4u << 20));
    /* reset keeps at most keep_bytes of chunks */
    CHECK_INT(rp_pool_reset(pool), 0);
    get_info(pool, &i2);
    CHECK(i2.chunks * 64 * 1024 <= 128 * 1024);
    CHECK(i2.reserved_bytes <= 128 * 1024 + 16 * 1024);
    CHECK_COUNTS(pool, 0, 0);
    tu_end_pool(pool);

    /* keep_bytes = SIZE_MAX: every chunk kept and reused after reset */
    pool = arena_pool("arena-keep-all", 64 * 1024, SIZE_MAX);
    for (i = 0; i < N; i++)
        (void)rp_alloc(pool, 100, "k");
    get_info(pool, &i0);
    CHECK_INT(rp_pool_reset(pool), 0);
    get_info(pool, &i1);
    CHECK_EQ(i1.chunks, i0.chunks);
    for (i = 0; i < N; i++)
        b[i] = rp_alloc(pool, 100, "k");
    get_info(pool, &i2);
    CHECK_EQ(i2.chunks, i0.chunks);
    for (i = 0; i < N; i++)
        rp_free(b[i]);
    tu_end_pool(pool);
}

/* Reports nest children when asked. */
static void test_report_children(void)
{
    rp_pool *parent = tu_pool("rparent");
    rp_pool *child = rp_pool_create_child(parent, "rchild");
    char path[256], buf[4096];
    FILE *f;
    size_t n;
    void *a = rp_alloc(child, 12, "kid-tag"), *p = rp_alloc(parent, 3, "mom-tag");
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/rp-children-%ld.json", base ? base : "/tmp",
             (long)getpid());
    CHECK_INT(rp_pool_write_report_ex(parent, path, RP_REPORT_CHILDREN), 0);
    f = fopen(path, "r");
    CHECK(f != NULL);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    CHECK(strstr(buf, "\"children\"") != NULL);
    CHECK(strstr(buf, "\"rchild\"") > strstr(buf, "\"children\""));
    CHECK(strstr(buf, "\"kid-tag\"") != NULL);
    CHECK(strstr(buf, "\"mom-tag\"") != NULL);
    rp_free(a);
    rp_free(p);
    rp_pool_destroy(child);
    tu_end_pool(parent);
}

/* A chain of child pools far deeper than any real program's: reports of the
   innermost (its parents, outermost first) and of the root with every child
   nested, a reset and a destroy of the root, all on a thread with a 256 KiB
   stack. Destroy and the children report once recursed a C frame per level
   (a chain of 10^5 overflowed even the main thread's 8 MiB). */
static long deep_n;
static int deep_order[4], deep_nevents;

static void deep_cleanup(void *arg) { if (deep_nevents < 4) deep_order[deep_nevents++] = (int)(intptr_t)arg; }
static void deep_dtor(void *block) { if (deep_nevents < 4) deep_order[deep_nevents++] = *(int *)block; }

static void *deep_chain_thread(void *unused)
{
    (void)unused;
    const char *base = getenv("TMPDIR");
    char path[256], name[32];
    snprintf(path, sizeof path, "%s/rp-deep-%ld.json", base ? base : "/tmp", (long)getpid());
    rp_pool *root = tu_pool("deep-root");
    for (int round = 0; round < 2; round++) {
        rp_pool *p = root, *mid = NULL;
        for (long i = 0; i < deep_n; i++) {
            snprintf(name, sizeof name, "d%ld", i);
            p = rp_pool_create_child(p, name);
            CHECK(p != NULL);
            if (i == deep_n / 2) mid = p;
        }
        /* the middle pool's cleanup runs before, its destructor after, the
           innermost's */
        CHECK_INT(rp_pool_add_cleanup(mid, deep_cleanup, (void *)(intptr_t)1), 0);
        CHECK_INT(rp_pool_add_cleanup(p, deep_cleanup, (void *)(intptr_t)2), 0);
        int *bm = rp_alloc(mid, sizeof *bm, "mid"), *bp = rp_alloc(p, sizeof *bp, "inner");
        *bm = 4;
        *bp = 3;
        CHECK_INT(rp_set_destructor(bm, deep_dtor), 0);
        CHECK_INT(rp_set_destructor(bp, deep_dtor), 0);

        CHECK_INT(rp_pool_write_report(p, path), 0);
        char *doc = tu_slurp(path);
        char *par = strstr(doc, "\"parents\": [\"deep-root\", \"d0\", \"d1\", ");
        CHECK(par != NULL);
        snprintf(name, sizeof name, ", \"d%ld\"]", deep_n - 2);
        CHECK(strstr(par, name) != NULL);
        free(doc);

        CHECK_INT(rp_pool_write_report_ex(root, path, RP_REPORT_CHILDREN), 0);
        doc = tu_slurp(path);
        long nested = 0, depth = 0, deepest = 0;
        static const char key[] = "\"children\": [";
        /* one pass (a strstr per match reads to the end under ASan: quadratic) */
        for (char *q = doc; *q; q++) {   /* no brace in a name here */
            if (*q == '"' && strncmp(q, key, sizeof key - 1) == 0) nested++;
            depth += *q == '{' ? 1 : *q == '}' ? -1 : 0;
            CHECK(depth >= 0);
            if (depth > deepest) deepest = depth;
        }
        CHECK_EQ(nested, deep_n);
        CHECK_EQ(depth, 0);
        CHECK_EQ(deepest, deep_n + 2);   /* the root's document, n pools, a totals */
        snprintf(name, sizeof name, "\"pool\": \"d%ld\"", deep_n - 1);
        CHECK(strstr(doc, name) != NULL);
        CHECK(strstr(doc, "\"inner\"") != NULL);
        free(doc);
        unlink(path);

        deep_nevents = 0;
        if (round == 0) CHECK_INT(rp_pool_reset(root), 0);
        else rp_pool_destroy(root);
        CHECK_INT(deep_nevents, 4);
        CHECK_INT(deep_order[0], 1);
        CHECK_INT(deep_order[1], 2);
        CHECK_INT(deep_order[2], 3);
        CHECK_INT(deep_order[3], 4);
        if (round == 0) CHECK_EQ(tu_info(root).children, 0);
    }
    return NULL;
}

static void test_deep_chain(void)
{
    deep_n = tu_quick() ? 20000 : 100000;
    pthread_attr_t attr;
    pthread_t t;
    CHECK_INT(pthread_attr_init(&attr), 0);
    CHECK_INT(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    CHECK_INT(pthread_create(&t, &attr, deep_chain_thread, NULL), 0);
    CHECK_INT(pthread_join(t, NULL), 0);
    pthread_attr_destroy(&attr);
}

/* From the visitor of a walk of a child: destroying the child or its parent
   is RP_EBUSY through the error handler, naming rp_pool_destroy; resetting
   either returns RP_EBUSY without a report (docs/contract.md). A reset of
   the parent used to report an error too, naming rp_pool_destroy. */
typedef struct busy_walk { rp_pool *parent, *child; int visits, reset_rc[2], errs[4]; } busy_walk;

static int busy_visit(void *block, size_t size, const char *tag, void *arg)
{
    busy_walk *w = arg;
    (void)block; (void)size; (void)tag;
    if (w->visits++) return 0;
    tu_errors_reset();
    w->reset_rc[0] = rp_pool_reset(w->child);
    w->errs[0] = tu_err_count;
    tu_errors_reset();
    w->reset_rc[1] = rp_pool_reset(w->parent);
    w->errs[1] = tu_err_count;
    tu_errors_reset();
    rp_pool_destroy(w->child);
    w->errs[2] = tu_err_count == 1 && tu_err_code[0] == RP_EBUSY &&
                 strncmp(tu_err_msg[0], "rp_pool_destroy: ", 17) == 0;
    tu_errors_reset();
    rp_pool_destroy(w->parent);
    w->errs[3] = tu_err_count == 1 && tu_err_code[0] == RP_EBUSY &&
                 strncmp(tu_err_msg[0], "rp_pool_destroy: ", 17) == 0;
    tu_errors_reset();
    return 0;
}

static void test_busy_from_walk(void)
{
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    busy_walk w = {0};
    w.parent = tu_pool("parent");
    w.child = rp_pool_create_child(w.parent, "walked");
    CHECK(w.child != NULL);
    void *a = rp_alloc(w.child, 24, "a"), *b = rp_alloc(w.child, 40, "b");
    CHECK(a && b);
    CHECK_INT(rp_pool_walk(w.child, busy_visit, &w), 0);
    rp_set_error_handler(prev);
    CHECK_INT(w.visits, 2);
    CHECK_INT(w.reset_rc[0], RP_EBUSY);
    CHECK_INT(w.errs[0], 0);
    CHECK_INT(w.reset_rc[1], RP_EBUSY);
    CHECK_INT(w.errs[1], 0);
    CHECK_INT(w.errs[2], 1);
    CHECK_INT(w.errs[3], 1);
    /* nothing changed */
    CHECK_EQ(rp_pool_outstanding(w.child, NULL), (size_t)2);
    CHECK(rp_pool_parent(w.child) == w.parent);
    CHECK_INT(rp_pool_check(w.child), 0);
    tu_end_pool(w.parent);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"children", test_children},
        {"destroy_order", test_destroy_order},
        {"cleanup_uses_pool", test_cleanup_uses_pool},
        {"destructors", test_destructors},
        {"destructor_leaves_work", test_destructor_leaves_work},
        {"reset", test_reset},
        {"arena_reuse", test_arena_reuse},
        {"report_children", test_report_children},
        {"deep_chain", test_deep_chain},
        {"busy_from_walk", test_busy_from_walk},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
