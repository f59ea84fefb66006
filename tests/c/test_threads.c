/* test_threads.c -- a thread-safe pool hammered by 4 threads (alloc, resize,
   free, stats, walk-free reads), counters exact at the end; an unsynchronised
   pool handed from thread to thread; child pools created concurrently.
   Built and run in a TSan build too. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#define NTHREADS 4
#define SLOTS 64

typedef struct worker {
    rp_pool *pool;
    int id, iters;
    char tag[24];
    uint64_t rng;
    /* the thread's own model of its tag */
    size_t blocks, bytes;
    uint64_t allocs;
    void *slot[SLOTS];
    int shared_allocs;   /* blocks allocated under the shared tag */
} worker;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void *hammer(void *arg)
{
    worker *w = arg;
    int i;
    for (i = 0; i < w->iters; i++) {
        uint64_t r = next_rand(&w->rng);
        int k = (int)(r % SLOTS);
        size_t sz = (size_t)((r >> 8) % 512);
        int op = (int)((r >> 24) % 16);
        if (op == 15) {
            /* stats from any thread: consistent snapshot of at most 5 tags */
            rp_tag_stat st[8];
            size_t n = rp_pool_stats(w->pool, st, 8);
            CHECK(n <= NTHREADS + 1);
            (void)rp_pool_outstanding(w->pool, NULL);
            continue;
        }
        if (op == 14) {
            /* a block under the shared tag, freed at once */
            void *s = rp_alloc(w->pool, 32, "shared");
            memset(s, w->id, 32);
            rp_free(s);
            w->shared_allocs++;
            continue;
        }
        if (w->slot[k] == NULL) {
            w->slot[k] = op < 2 ? rp_calloc(w->pool, 1, sz, w->tag)
                                : rp_alloc(w->pool, sz, w->tag);
            memset(w->slot[k], w->id, sz);
            w->blocks++;
            w->bytes += sz;
            w->allocs++;
        } else if (op < 6) {
            size_t old = rp_block_size(w->slot[k]);
            if (old > 0)
                CHECK_EQ(((unsigned char *)w->slot[k])[old - 1], (unsigned)w->id);
            w->slot[k] = rp_resize(op < 3 ? w->pool : NULL, w->slot[k], sz);
            memset(w->slot[k], w->id, sz);
            w->bytes = w->bytes - old + sz;
        } else {
            w->bytes -= rp_block_size(w->slot[k]);
            w->blocks--;
            rp_free(w->slot[k]);
            w->slot[k] = NULL;
        }
    }
    return NULL;
}

static void run_hammer(unsigned flags)
{
    rp_pool *pool = tu_pool_ex("hammer", flags);
    pthread_t th[NTHREADS];
    worker w[NTHREADS];
    rp_tag_stat st[8];
    size_t n, i, blocks = 0, bytes = 0;
    int t, shared = 0, iters = tu_quick() ? 4000 : 100000;
    const char *tsan = getenv("RP_TEST_TSAN");
    if (tsan != NULL && *tsan == '1')
        iters = 20000;
    memset(w, 0, sizeof w);
    for (t = 0; t < NTHREADS; t++) {
        w[t].pool = pool;
        w[t].id = t + 1;
        w[t].iters = iters;
        w[t].rng = 0x1234567ull * (uint64_t)(t + 1);
        snprintf(w[t].tag, sizeof w[t].tag, "thread-%d", t);
        CHECK(pthread_create(&th[t], NULL, hammer, &w[t]) == 0);
    }
    for (t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    n = rp_pool_stats(pool, st, 8);
    CHECK(n == NTHREADS || n == NTHREADS + 1);
    for (t = 0; t < NTHREADS; t++) {
        for (i = 0; i < n; i++)
            if (strcmp(st[i].tag, w[t].tag) == 0)
                break;
        CHECK(i < n);
        CHECK_EQ(st[i].blocks, w[t].blocks);
        CHECK_EQ(st[i].bytes, w[t].bytes);
        CHECK_EQ(st[i].allocs, w[t].allocs);
        blocks += w[t].blocks;
        bytes += w[t].bytes;
        shared += w[t].shared_allocs;
    }
    for (i = 0; i < n; i++)
        if (strcmp(st[i].tag, "shared") == 0) {
            CHECK_EQ(st[i].blocks, 0);
            CHECK_EQ(st[i].allocs, (size_t)shared);
        }
    CHECK_COUNTS(pool, blocks, bytes);
    CHECK_INT(rp_pool_check(pool), 0);
    printf("     %d threads x %d ops: %zu blocks, %zu bytes outstanding at the end\n",
           NTHREADS, iters, blocks, bytes);
    /* blocks are freed from a thread other than the one that made them */
    for (t = 0; t < NTHREADS; t++)
        for (i = 0; i < SLOTS; i++)
            rp_free(w[t].slot[i]);
    tu_end_pool(pool);
}

static void test_hammer(void) { run_hammer(0); }
static void test_hammer_checked(void) { run_hammer(RP_POOL_CHECKED); }

/* An unsynchronised pool, used by one thread at a time: created here, used
   only by a worker, then checked and destroyed here after the join. */
static void *unsync_user(void *arg)
{
    worker *w = arg;
    hammer(w);
    return NULL;
}

static void test_unsync(void)
{
    rp_pool *pool = tu_pool_ex("unsync", RP_POOL_UNSYNC);
    worker w;
    pthread_t th;
    int round, i;
    rp_pool_info info;
    memset(&w, 0, sizeof w);
    w.pool = pool;
    w.id = 9;
    w.iters = tu_quick() ? 3000 : 50000;
    w.rng = 99;
    snprintf(w.tag, sizeof w.tag, "solo");
    for (round = 0; round < 2; round++) { /* two threads, one after another */
        CHECK(pthread_create(&th, NULL, unsync_user, &w) == 0);
        CHECK(pthread_join(th, NULL) == 0);
    }
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    CHECK(info.flags & RP_POOL_UNSYNC);
    CHECK_EQ(info.allocs, w.allocs + (uint64_t)w.shared_allocs);
    CHECK_COUNTS(pool, w.blocks, w.bytes);
    CHECK_INT(rp_pool_check(pool), 0);
    for (i = 0; i < SLOTS; i++)
        rp_free(w.slot[i]);
    tu_end_pool(pool);
}

/* Child pools of one thread-safe parent, created, used and destroyed by
   several threads at once; the parent is destroyed after the join. */
typedef struct kid_arg {
    rp_pool *parent;
    int iters;
    rp_pool *kept;
} kid_arg;

static atomic_int cleanups_run;
static void count_cleanup(void *arg)
{
    (void)arg;
    atomic_fetch_add(&cleanups_run, 1);
}

static void *kid_worker(void *arg)
{
    kid_arg *k = arg;
    int i;
    for (i = 0; i < k->iters; i++) {
        /* cleanups registered and removed from several threads at once */
        CHECK_INT(rp_pool_add_cleanup(k->parent, count_cleanup, &k->iters), 0);
        if (i % 2 == 0)
            CHECK_INT(rp_pool_remove_cleanup(k->parent, count_cleanup, &k->iters), 0);
        rp_pool *c = rp_pool_create_child(k->parent, "kid");
        void *b;
        CHECK(c != NULL);
        CHECK(rp_pool_parent(c) == k->parent);
        b = rp_alloc(c, 64, "kid-block");
        (void)rp_alloc(k->parent, 8, "from-kid");
        rp_free(b);
        rp_pool_destroy(c);
    }
    k->kept = rp_pool_create_child(k->parent, "kept");
    (void)rp_alloc(k->kept, 16, "left in child");
    return NULL;
}

static void test_children_threads(void)
{
    rp_pool *parent = tu_pool("parent");
    pthread_t th[NTHREADS];
    kid_arg k[NTHREADS];
    rp_pool_info info;
    int t, iters = tu_quick() ? 50 : 500;
    for (t = 0; t < NTHREADS; t++) {
        k[t].parent = parent;
        k[t].iters = iters;
        k[t].kept = NULL;
        CHECK(pthread_create(&th[t], NULL, kid_worker, &k[t]) == 0);
    }
    for (t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_INT(rp_pool_get_info(parent, &info), 0);
    CHECK_EQ(info.children, NTHREADS);
    CHECK_EQ(info.blocks, (size_t)NTHREADS * (size_t)iters);
    CHECK_INT(rp_pool_check(parent), 0);
    /* reset runs the cleanups left registered (once each), takes the kept
       children and every block; the pool stays */
    atomic_store(&cleanups_run, 0);
    CHECK_INT(rp_pool_reset(parent), 0);
    CHECK_INT(atomic_load(&cleanups_run), NTHREADS * (iters / 2));
    CHECK_INT(rp_pool_get_info(parent, &info), 0);
    CHECK_EQ(info.children, 0);
    tu_end_pool(parent);
}

/* Walks while other threads allocate and free: the visitor runs without
   the pool's lock, so it may itself allocate from and free to the pool, and
   every walk sees a consistent ring (each block once, no block twice). */
typedef struct walk_arg { rp_pool *pool; int visits; int bad; } walk_arg;

static int walk_visit(void *block, size_t size, const char *tag, void *arg)
{
    walk_arg *a = arg;
    void *extra = rp_alloc(a->pool, 16, "walker");   /* into the walked pool */
    a->visits++;
    /* other threads may free the block meanwhile: only what was passed is read */
    (void)block;
    if (tag == NULL || (strncmp(tag, "traffic-", 8) != 0 && strcmp(tag, "walker") != 0) ||
        size > 8 + SLOTS)
        a->bad++;
    rp_free(extra);
    return 0;
}

static atomic_int walking_done;

static void *traffic(void *arg)
{
    worker *w = arg;
    do {   /* at least one full round: every slot ends at 8 + i bytes */
        int i;
        for (i = 0; i < SLOTS; i++) {
            rp_free(w->slot[i]);
            w->slot[i] = rp_alloc(w->pool, (size_t)(8 + i), w->tag);
        }
    } while (!atomic_load(&walking_done));
    return NULL;
}

static void run_walk_during_traffic(unsigned flags)
{
    rp_pool *pool = tu_pool_ex("walked", flags);
    pthread_t th[NTHREADS - 1];
    worker w[NTHREADS - 1];
    walk_arg a;
    int t, i, walks = tu_quick() ? 20 : 200;
    memset(w, 0, sizeof w);
    for (t = 0; t < NTHREADS - 1; t++) {
        w[t].pool = pool;
        snprintf(w[t].tag, sizeof w[t].tag, "traffic-%d", t);
        for (i = 0; i < SLOTS; i++) w[t].slot[i] = rp_alloc(pool, 8, w[t].tag);
    }
    atomic_store(&walking_done, 0);
    for (t = 0; t < NTHREADS - 1; t++) CHECK(pthread_create(&th[t], NULL, traffic, &w[t]) == 0);
    memset(&a, 0, sizeof a);
    a.pool = pool;
    for (i = 0; i < walks; i++) CHECK_INT(rp_pool_walk(pool, walk_visit, &a), 0);
    atomic_store(&walking_done, 1);
    for (t = 0; t < NTHREADS - 1; t++) pthread_join(th[t], NULL);
    CHECK_INT(a.bad, 0);
    CHECK(a.visits > 0);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_COUNTS(pool, (size_t)((NTHREADS - 1) * SLOTS),
                 (size_t)((NTHREADS - 1) * (SLOTS * 8 + SLOTS * (SLOTS - 1) / 2)));
    for (t = 0; t < NTHREADS - 1; t++)
        for (i = 0; i < SLOTS; i++) rp_free(w[t].slot[i]);
    tu_end_pool(pool);
}

static void test_walk_during_traffic(void) { run_walk_during_traffic(0); }
static void test_walk_during_traffic_checked(void) { run_walk_during_traffic(RP_POOL_CHECKED); }

/* Threads busy in every process-wide lock of the library (the checked-mode
   registry, the live-pool list, the arena chunk cache, the shard bindings of
   a shared pool) while the main thread forks: each child creates pools of
   both backings, checked and not, allocates, frees and destroys, and must
   not wait on a lock a parent thread held at the fork. */
typedef struct {
    rp_pool *shared;
    atomic_int stop;
} fork_traffic;

static void *fork_traffic_body(void *arg)
{
    fork_traffic *f = arg;
    for (unsigned i = 0; !atomic_load(&f->stop); i++) {
        rp_free(rp_alloc_noexc(f->shared, 16 + i % 200, "shared"));
        rp_pool_options o = {.flags = (i & 1 ? RP_POOL_ARENA : 0) | (i & 2 ? RP_POOL_CHECKED : 0)};
        rp_pool *p = rp_pool_create_ex("churn", &o);
        if (p) {
            for (int k = 0; k < 8; k++) (void)rp_alloc_noexc(p, 4000, "churn");
            rp_pool_destroy(p);
        }
    }
    return NULL;
}

static void test_fork_while_threads_hold_process_locks(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return;   /* the sanitizers' own runtimes may hang in such a child */
#endif
    rp_pool_options co = {.flags = RP_POOL_CHECKED};
    rp_pool *keep = rp_pool_create_ex("keeps-the-registry-on", &co);
    CHECK(keep != NULL);
    fork_traffic f = {tu_pool("shared"), 0};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK(pthread_create(&th[t], NULL, fork_traffic_body, &f) == 0);
    int rounds = tu_quick() ? 10 : 100;
    for (int i = 0; i < rounds; i++) {
        int fd[2];
        pid_t pid = tu_fork_answering(fd);
        if (pid == 0) {
            char verdict = 'y';
            for (unsigned flags = 0; flags < 4; flags++) {
                rp_pool_options o = {.flags = (flags & 1 ? RP_POOL_ARENA : 0) |
                                              (flags & 2 ? RP_POOL_CHECKED : 0)};
                rp_pool *mine = rp_pool_create_ex("child", &o);
                void *b = mine ? rp_alloc_noexc(mine, 100000, "big") : NULL;
                void *s = mine ? rp_alloc_noexc(mine, 24, "small") : NULL;
                if (!b || !s) verdict = 'n';
                rp_free(s);
                rp_free(b);
                if (mine) rp_pool_destroy(mine);
            }
            tu_child_answer(fd[1], verdict);
        }
        int status;
        CHECK(tu_child_verdict(pid, fd[0], fd[1], i, &status) == 'y');
    }
    atomic_store(&f.stop, 1);
    for (int t = 0; t < 2; t++) CHECK(pthread_join(th[t], NULL) == 0);
    rp_pool_destroy(keep);
    tu_end_pool(f.shared);
}

/* Two threads, each with its own checked pool, hand blocks to each other
   through a queue and free the other's blocks, while each also reads the
   stats, totals and info of both pools and checks its own: checked pools
   share one lock (the registry's, which is also each checked pool's own),
   so this must stay exact and free of races (TSan build). An unsynchronised
   checked pool used by one thread only runs alongside. At the end each
   thread frees one block of the other's, handed over once both are done
   (so no other free can push its record out of the quarantine), and a
   second free of it is recognised as a double free. */
#define TRADE_Q 256
typedef struct trade {
    pthread_mutex_t mu;
    void *q[2][TRADE_Q];   /* q[t]: blocks for thread t to free */
    size_t n[2];
    rp_pool *pool[2];
    int iters;
    atomic_int done;
    pthread_barrier_t done_trading, handed_over;
    void *handoff[2];      /* handoff[t]: the other's block for thread t */
    void *last_freed[2];   /* the block each thread freed last */
} trade;

typedef struct trader {
    trade *tr;
    int id;
    rp_pool *own;   /* unsynchronised checked pool of this thread alone */
    size_t freed, bytes_freed;   /* of the other's blocks */
} trader;

static void *trade_body(void *arg)
{
    trader *me = arg;
    trade *tr = me->tr;
    int other = 1 - me->id;
    rp_pool *own = me->own;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(me->id + 1);
    for (int i = 0; i < tr->iters; i++) {
        size_t sz = (size_t)(next_rand(&rng) % 300) + 1;
        void *b = rp_alloc(tr->pool[me->id], sz, me->id ? "from-1" : "from-0");
        CHECK(b != NULL);
        memset(b, me->id + 1, sz);
        void *l = rp_alloc(own, sz, "local");
        rp_free(l);
        void *take[8];
        size_t k = 0;
        pthread_mutex_lock(&tr->mu);
        if (tr->n[other] < TRADE_Q) tr->q[other][tr->n[other]++] = b, b = NULL;
        while (k < 8 && tr->n[me->id] > 0) take[k++] = tr->q[me->id][--tr->n[me->id]];
        pthread_mutex_unlock(&tr->mu);
        if (b) rp_free(b);   /* the queue was full: freed by its own thread */
        for (size_t j = 0; j < k; j++) {
            size_t n = rp_block_size(take[j]);
            CHECK(n > 0);
            CHECK_EQ(((unsigned char *)take[j])[n - 1], (unsigned)(other + 1));
            CHECK(rp_block_pool(take[j]) == tr->pool[other]);
            me->freed++;
            me->bytes_freed += n;
            rp_free(take[j]);
        }
        if ((i & 63) == 0) {
            rp_tag_stat st[4];
            CHECK(rp_pool_stats(tr->pool[other], st, 4) <= 1);
            (void)rp_pool_outstanding(tr->pool[me->id], NULL);
            rp_pool_info info = {.struct_size = sizeof info};
            CHECK_INT(rp_pool_get_info(tr->pool[other], &info), 0);
            CHECK_INT(rp_pool_check(tr->pool[me->id]), 0);
            CHECK_INT(rp_pool_check(own), 0);
        }
    }
    pthread_barrier_wait(&tr->done_trading);
    tr->handoff[other] = rp_alloc(tr->pool[me->id], 40, me->id ? "from-1" : "from-0");
    CHECK(tr->handoff[other] != NULL);
    pthread_barrier_wait(&tr->handed_over);
    rp_free(tr->handoff[me->id]);
    tr->last_freed[me->id] = tr->handoff[me->id];
    atomic_fetch_add(&tr->done, 1);
    CHECK_EQ(rp_pool_outstanding(own, NULL), 0);
    return NULL;
}

static void test_checked_pools_trade_blocks(void)
{
    static trade tr;
    memset(&tr, 0, sizeof tr);
    pthread_mutex_init(&tr.mu, NULL);
    CHECK(pthread_barrier_init(&tr.done_trading, NULL, 2) == 0);
    CHECK(pthread_barrier_init(&tr.handed_over, NULL, 2) == 0);
    tr.iters = tu_quick() ? 3000 : 30000;
    const char *tsan = getenv("RP_TEST_TSAN");
    if (tsan != NULL && *tsan == '1') tr.iters = 5000;
    tr.pool[0] = tu_pool_ex("trade-0", RP_POOL_CHECKED);
    tr.pool[1] = tu_pool_ex("trade-1", RP_POOL_CHECKED);
    trader w[2] = {{.tr = &tr, .id = 0}, {.tr = &tr, .id = 1}};
    w[0].own = tu_pool_ex("trade-local-0", RP_POOL_CHECKED | RP_POOL_UNSYNC);
    w[1].own = tu_pool_ex("trade-local-1", RP_POOL_CHECKED | RP_POOL_UNSYNC);
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK(pthread_create(&th[t], NULL, trade_body, &w[t]) == 0);
    for (int t = 0; t < 2; t++) CHECK(pthread_join(th[t], NULL) == 0);
    CHECK_INT(atomic_load(&tr.done), 2);
    /* what each pool still holds is what sits in the other's queue */
    for (int t = 0; t < 2; t++) {
        size_t bytes = 0, n = tr.n[1 - t];
        for (size_t j = 0; j < n; j++) bytes += rp_block_size(tr.q[1 - t][j]);
        CHECK_COUNTS(tr.pool[t], n, bytes);
        CHECK_INT(rp_pool_check(tr.pool[t]), 0);
    }
    CHECK(w[0].freed + w[1].freed > 0);   /* the later thread takes the earlier's */
    /* a block the other thread freed is a double free now */
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    for (int t = 0; t < 2; t++) {
        rp_free(tr.last_freed[t]);
        CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    }
    rp_set_error_handler(prev);
    for (int t = 0; t < 2; t++) {
        while (tr.n[t] > 0) rp_free(tr.q[t][--tr.n[t]]);
    }
    for (int t = 0; t < 2; t++) tu_end_pool(tr.pool[t]);
    for (int t = 0; t < 2; t++) tu_end_pool(w[t].own);
    pthread_barrier_destroy(&tr.done_trading);
    pthread_barrier_destroy(&tr.handed_over);
    pthread_mutex_destroy(&tr.mu);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"walk_during_traffic", test_walk_during_traffic},
        {"walk_during_traffic_checked", test_walk_during_traffic_checked},
        {"hammer", test_hammer},
        {"hammer_checked", test_hammer_checked},
        {"checked_pools_trade_blocks", test_checked_pools_trade_blocks},
        {"unsync", test_unsync},
        {"children_threads", test_children_threads},
        {"fork_while_threads_hold_process_locks", test_fork_while_threads_hold_process_locks},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
