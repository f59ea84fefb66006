/* test_contention.c -- one thread-safe pool shared by several threads under
   contention: blocks allocated by one thread and freed by another while a
   further thread takes snapshots, with every snapshot self-consistent and the
   counters exact at the end; and a thread waiting for a lock that is held for
   a long time sleeps instead of burning its core. Built and run in a TSan
   build too. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <sys/stat.h>

#include "testutil.h"

#define PRODUCERS 3
#define QLEN 256

/* A bounded queue of blocks from the producers to the consumers (a mutex
   and two condition variables: the pool is what is under test). */
typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t  not_full, not_empty;
    void           *item[QLEN];
    size_t          head, len;
    int             producers_left;
} queue;

static void q_put(queue *q, void *p)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == QLEN) pthread_cond_wait(&q->not_full, &q->mu);
    q->item[(q->head + q->len++) % QLEN] = p;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static void *q_get(queue *q)   /* NULL when every producer is done */
{
    void *p = NULL;
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && q->producers_left > 0) pthread_cond_wait(&q->not_empty, &q->mu);
    if (q->len) {
        p = q->item[q->head];
        q->head = (q->head + 1) % QLEN;
        q->len--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}

static void q_init(queue *q, int producers)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    q->producers_left = producers;
}

/* one producer is done: the consumers stop once every producer is and the
   queue is empty */
static void q_done(queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->producers_left--;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static void q_destroy(queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
}

typedef struct producer {
    rp_pool   *pool;
    queue     *q;
    int        id, iters;
    char       tag[24];
    uint64_t   allocs;     /* this thread's allocations under its tag */
    size_t     bytes;      /* bytes it handed to the consumers */
} producer;

static void *produce(void *arg)
{
    producer *w = arg;
    uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)w->id;
    for (int i = 0; i < w->iters; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t sz = (size_t)(r >> 33) % 300;
        /* a pair in this thread, then a block freed by a consumer */
        void *p = rp_alloc(w->pool, sz, w->tag);
        memset(p, w->id, sz);
        rp_free(p);
        unsigned char *b = rp_alloc(w->pool, sz + 1, w->tag);
        memset(b, w->id, sz + 1);
        w->allocs += 2;
        w->bytes += sz + 1;
        q_put(w->q, b);
    }
    q_done(w->q);
    return NULL;
}

typedef struct consumer {
    queue  *q;
    size_t  freed, bytes;
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    unsigned char *b;
    while ((b = q_get(c->q)) != NULL) {
        size_t sz = rp_block_size(b);
        CHECK(sz >= 1);
        /* the producer's bytes are intact: its writes happened before ours */
        CHECK_EQ(b[sz - 1], b[0]);
        c->bytes += sz;
        c->freed++;
        rp_free(b);
    }
    return NULL;
}

static atomic_int traffic_done;

/* Every snapshot taken during the traffic is consistent in itself: per tag
   blocks <= allocs and bytes <= peak, totals equal to the sum of the tags,
   allocation counts never going back. */
static void *snapshots(void *arg)
{
    rp_pool *pool = arg;
    uint64_t last_allocs = 0;
    long taken = 0;
    while (!atomic_load(&traffic_done) || taken < 10) {
        rp_tag_stat st[8];
        size_t n = rp_pool_stats(pool, st, 8), blocks = 0;
        CHECK(n <= PRODUCERS);
        uint64_t allocs = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK(st[i].blocks <= st[i].allocs);
            CHECK(st[i].bytes <= st[i].peak_bytes);
            blocks += st[i].blocks;
            allocs += st[i].allocs;
        }
        CHECK(allocs >= last_allocs);
        last_allocs = allocs;
        rp_pool_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK_INT(rp_pool_get_info(pool, &info), 0);
        CHECK(info.allocs >= allocs);
        CHECK(info.bytes <= info.peak_bytes);
        (void)blocks;
        taken++;
    }
    return NULL;
}

static void test_cross_thread_free_exact(void)
{
    rp_pool *pool = tu_pool("contention");
    int iters = tu_quick() ? 500 : 20000;
    const char *tsan = getenv("RP_TEST_TSAN");
    if (tsan != NULL && *tsan == '1') iters = 5000;
    queue q;
    q_init(&q, PRODUCERS);
    producer p[PRODUCERS];
    consumer c[2];
    pthread_t tp[PRODUCERS], tc[2], ts;
    memset(p, 0, sizeof p);
    memset(c, 0, sizeof c);
    atomic_store(&traffic_done, 0);
    CHECK(pthread_create(&ts, NULL, snapshots, pool) == 0);
    for (int i = 0; i < 2; i++) {
        c[i].q = &q;
        CHECK(pthread_create(&tc[i], NULL, consume, &c[i]) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        p[i].pool = pool;
        p[i].q = &q;
        p[i].id = i + 1;
        p[i].iters = iters;
        snprintf(p[i].tag, sizeof p[i].tag, "producer-%d", i);
        CHECK(pthread_create(&tp[i], NULL, produce, &p[i]) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) CHECK(pthread_join(tp[i], NULL) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(tc[i], NULL) == 0);
    atomic_store(&traffic_done, 1);
    CHECK(pthread_join(ts, NULL) == 0);

    /* exact: every block made was freed once, by someone, and counted */
    size_t handed = 0, handed_bytes = 0;
    for (int i = 0; i < PRODUCERS; i++) { handed += (size_t)p[i].iters; handed_bytes += p[i].bytes; }
    CHECK_EQ(c[0].freed + c[1].freed, handed);
    CHECK_EQ(c[0].bytes + c[1].bytes, handed_bytes);
    rp_tag_stat st[8];
    size_t n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, (size_t)PRODUCERS);
    for (int i = 0; i < PRODUCERS; i++) {
        size_t k = 0;
        while (k < n && strcmp(st[k].tag, p[i].tag) != 0) k++;
        CHECK(k < n);
        CHECK_EQ(st[k].blocks, 0);
        CHECK_EQ(st[k].bytes, 0);
        CHECK_EQ(st[k].allocs, p[i].allocs);
        CHECK(st[k].peak_bytes >= 300);
    }
    CHECK_COUNTS(pool, 0, 0);
    CHECK_INT(rp_pool_check(pool), 0);
    q_destroy(&q);
    tu_end_pool(pool);
}

/* ---------------------------------------------------------------------- */
/* A report written into a FIFO whose reader waits holds the pool's lock for
   that long; a thread that allocates meanwhile must wait without using its
   core for the whole time. */
typedef struct slow_reader {
    int         fd;
    int         delay_ms;
    size_t      got;
} slow_reader;

static void *read_slowly(void *arg)
{
    slow_reader *r = arg;
    int fd = r->fd;
    struct timespec d = { r->delay_ms / 1000, (long)(r->delay_ms % 1000) * 1000000L };
    nanosleep(&d, NULL);
    char buf[65536];
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf)) > 0) r->got += (size_t)k;
    close(fd);
    return NULL;
}

typedef struct report_job {
    rp_pool    *pool;
    const char *path;
    int         rc;
} report_job;

static void *write_report(void *arg)
{
    report_job *j = arg;
    j->rc = rp_pool_write_report_ex(j->pool, j->path, RP_REPORT_BLOCKS);
    return NULL;
}

static double ms_of(clockid_t clk)
{
    struct timespec t;
    clock_gettime(clk, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void test_waiter_sleeps_while_lock_held(void)
{
    if (tu_quick() || getenv("RP_TEST_TSAN")) {
        /* valgrind runs one thread at a time; TSan slows the report */
        printf("     (skipped in quick and TSan runs)\n");
        return;
    }
    rp_pool *pool = tu_pool("held");
    enum { N = 4000 };
    static void *b[N];
    for (int i = 0; i < N; i++) b[i] = rp_alloc(pool, 8, "a-rather-long-tag-name-for-a-bigger-report");
    char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/contention-fifo-%d", dir ? dir : "/tmp", (int)getpid());
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0);
    /* the report (several pipe buffers) fills the pipe and blocks with the
       pool's lock held until the reader starts reading, 1.5 s later */
    /* the read end is open before the report opens the write end */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
    slow_reader r = { fd, 1500, 0 };
    report_job j = { pool, path, -1 };
    pthread_t tr, tw;
    CHECK(pthread_create(&tr, NULL, read_slowly, &r) == 0);
    CHECK(pthread_create(&tw, NULL, write_report, &j) == 0);
    struct timespec d = { 0, 150000000L };
    nanosleep(&d, NULL);
    double w0 = ms_of(CLOCK_MONOTONIC), c0 = ms_of(CLOCK_THREAD_CPUTIME_ID);
    void *p = rp_alloc(pool, 16, "waiter");
    double cpu_ms = ms_of(CLOCK_THREAD_CPUTIME_ID) - c0, wall_ms = ms_of(CLOCK_MONOTONIC) - w0;
    rp_free(p);
    CHECK(pthread_join(tw, NULL) == 0);
    CHECK(pthread_join(tr, NULL) == 0);
    unlink(path);
    CHECK_INT(j.rc, 0);
    CHECK(r.got > 65536);
    printf("     waited %.0f ms for the lock, using %.1f ms of CPU\n", wall_ms, cpu_ms);
    /* when the report held the lock (the usual case), the waiter used a small
       part of the wait (it yields for up to 100 ms, then sleeps) */
    if (wall_ms > 600) CHECK(cpu_ms < wall_ms / 4);
    for (int i = 0; i < N; i++) rp_free(b[i]);
    tu_end_pool(pool);
}

/* ---------------------------------------------------------------------- */
/* Threads other than a pool's creator allocate from shards of it (per-thread
   state, docs/concurrency.md); what a user sees is one pool. */

static void in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fn, arg) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static size_t info_of(rp_pool *pool, rp_pool_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    CHECK_INT(rp_pool_get_info(pool, info), 0);
    return info->blocks;
}

typedef struct holder {
    rp_pool *pool;
    int      n;
    size_t   size;
    char     tag[24];
    void    *b[64];
} holder;

static void *hold_blocks(void *arg)
{
    holder *h = arg;
    for (int i = 0; i < h->n; i++) {
        h->b[i] = rp_alloc(h->pool, h->size, h->tag);
        memset(h->b[i], 0x5a, h->size);
    }
    return NULL;
}

static void *free_blocks(void *arg)
{
    holder *h = arg;
    for (int i = 0; i < h->n; i++) rp_free(h->b[i]);
    return NULL;
}

static void *hold_then_free(void *arg)
{
    hold_blocks(arg);
    return free_blocks(arg);
}

/* Blocks allocated by other threads are the pool's: counted in its stats
   under their tags (folded with the creator's), owned by it (rp_block_pool,
   rp_resize through it), visited by its walk and listed by its report, and
   freed by any thread. */
static int count_visit(void *p, size_t size, const char *tag, void *arg)
{
    (void)p; (void)size; (void)tag;
    (*(size_t *)arg)++;
    return 0;
}

static void test_other_threads_blocks_are_the_pools(void)
{
    rp_pool *pool = tu_pool("shared");
    holder a = {.pool = pool, .n = 10, .size = 40}, b = {.pool = pool, .n = 7, .size = 24};
    strcpy(a.tag, "same");
    strcpy(b.tag, "worker-b");
    void *mine = rp_alloc(pool, 100, "same");
    in_thread(hold_blocks, &a);
    in_thread(hold_blocks, &b);
    CHECK(rp_block_pool(a.b[0]) == pool);
    CHECK(rp_block_pool(b.b[3]) == pool);
    CHECK_COUNTS(pool, 18, 100 + 400 + 168);
    rp_tag_stat st[8];
    size_t n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 2);
    CHECK_STR(st[0].tag, "same");       /* one entry per tag, first use first */
    CHECK_EQ(st[0].blocks, 11);
    CHECK_EQ(st[0].bytes, 500);
    CHECK_EQ(st[0].allocs, 11);
    CHECK_STR(st[1].tag, "worker-b");
    CHECK_EQ(st[1].blocks, 7);
    CHECK_EQ(st[1].bytes, 168);
    rp_pool_info info;
    CHECK_EQ(info_of(pool, &info), 18);
    CHECK_EQ(info.bytes, 668);
    CHECK_EQ(info.allocs, 18);
    CHECK_EQ(info.tags, 2);
    CHECK(info.peak_bytes >= 668);
    CHECK(info.reserved_bytes >= 668 + 18 * 32);
    size_t seen = 0;
    CHECK_INT(rp_pool_walk(pool, count_visit, &seen), 0);
    CHECK_EQ(seen, 18);
    CHECK_INT(rp_pool_check(pool), 0);
    /* the report lists every block once */
    char path[256];
    snprintf(path, sizeof path, "%s/shards-%d.json", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[512];
    size_t listed = 0, tag_same = 0;
    while (fgets(line, sizeof line, f)) {
        listed += strstr(line, "\"address\"") != NULL;
        tag_same += strstr(line, "{\"tag\": \"same\", \"blocks\": 11, \"bytes\": 500") != NULL;
    }
    fclose(f);
    unlink(path);
    CHECK_EQ(listed, 18);
    CHECK_EQ(tag_same, 1);
    /* resize through the pool keeps the block in it; frees from here */
    a.b[0] = rp_resize(pool, a.b[0], 4000);
    CHECK_EQ(rp_block_size(a.b[0]), 4000);
    CHECK_COUNTS(pool, 18, 100 + 400 + 168 + 3960);
    for (int i = 0; i < a.n; i++) rp_free(a.b[i]);
    in_thread(free_blocks, &b);   /* b's blocks freed by yet another thread */
    rp_free(mine);
    CHECK_COUNTS(pool, 0, 0);
    n = rp_pool_stats(pool, st, 8);
    CHECK_EQ(n, 2);
    CHECK_EQ(st[0].allocs, 11);
    CHECK_EQ(st[1].allocs, 7);
    tu_end_pool(pool);
}

/* Reset frees the blocks of every thread; destroy frees them while the
   threads that allocated them are still alive (with their bindings), and a
   new pool, even one at the same address, starts empty. */
/* Two threads taking turns: each waits for the step the other sets. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             step;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->step = 0;
}

static void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

static void gate_wait(gate *g, int step)
{
    pthread_mutex_lock(&g->mu);
    while (g->step < step) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_set(gate *g, int step)
{
    pthread_mutex_lock(&g->mu);
    g->step = step;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

typedef struct sleeper {
    rp_pool *pool[2];
    void    *b[2];
    gate     g;
} sleeper;

static void *alloc_then_wait(void *arg)
{
    sleeper *s = arg;
    s->b[0] = rp_alloc(s->pool[0], 64, "worker");
    gate_set(&s->g, 1);
    gate_wait(&s->g, 2);          /* the pool is destroyed meanwhile */
    s->b[1] = rp_alloc(s->pool[1], 48, "worker");
    gate_set(&s->g, 3);
    gate_wait(&s->g, 4);
    rp_free(s->b[1]);
    return NULL;
}

static void test_destroy_while_threads_hold_shards(void)
{
    sleeper s;
    memset(&s, 0, sizeof s);
    gate_init(&s.g);
    s.pool[0] = tu_pool("first");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_then_wait, &s) == 0);
    gate_wait(&s.g, 1);
    CHECK_COUNTS(s.pool[0], 1, 64);
    rp_pool *gone = s.pool[0];
    rp_pool_destroy(gone);    /* the worker's block and shard go with it */
    /* a new pool, at the old one's address if the allocator gives it back */
    rp_pool *tries[32];
    int ntries = 0;
    rp_pool *p = NULL;
    while (ntries < 32) {
        p = tu_pool("second");
        if (p == gone) break;
        tries[ntries++] = p;
        p = NULL;
    }
    for (int i = 0; i < ntries - (p ? 0 : 1); i++) rp_pool_destroy(tries[i]);
    if (!p) p = tries[ntries - 1];
    s.pool[1] = p;
    gate_set(&s.g, 2);
    gate_wait(&s.g, 3);
    CHECK_COUNTS(p, 1, 48);
    rp_tag_stat st[4];
    CHECK_EQ(rp_pool_stats(p, st, 4), 1);
    CHECK_EQ(st[0].allocs, 1);
    /* reset takes the worker's block too; its thread may allocate again */
    CHECK_INT(rp_pool_reset(p), 0);
    CHECK_COUNTS(p, 0, 0);
    s.b[1] = NULL;
    gate_set(&s.g, 4);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_INT(rp_pool_check(p), 0);
    tu_end_pool(p);
    gate_destroy(&s.g);
}

/* A thread that exits leaves its blocks to the pool (they stay counted and
   may be freed by anyone); the next threads take its place over, so a pool
   used by many short-lived threads holds as many shards as threads ran at
   the same time, and the exited thread's cached free blocks are given back. */
static void test_thread_exit_returns_its_cache(void)
{
    rp_pool *pool = tu_pool("exits");
    holder h = {.pool = pool, .n = 40, .size = 100};
    strcpy(h.tag, "left");
    in_thread(hold_blocks, &h);
    CHECK_COUNTS(pool, 40, 4000);
    for (int i = 0; i < 40; i += 2) rp_free(h.b[i]);
    CHECK_COUNTS(pool, 20, 2000);
    for (int round = 0; round < 30; round++) {
        holder w = {.pool = pool, .n = 16, .size = 64 + (size_t)round};
        strcpy(w.tag, "short-lived");
        in_thread(hold_then_free, &w);
    }
    CHECK_COUNTS(pool, 20, 2000);
    rp_pool_info info;
    info_of(pool, &info);
    if (info.chunks) {
        /* arena: the threads ran one at a time, and so used one shard: the
           first worker's chunk (and the pool's, if it had one) */
        CHECK(info.chunks <= 2);
    } else {
        /* malloc backing: nothing waits on recycle lists of exited threads */
        CHECK_EQ(info.reserved_bytes, 2000 + 20 * 32);
    }
    rp_tag_stat st[4];
    CHECK_EQ(rp_pool_stats(pool, st, 4), 2);
    CHECK_EQ(st[1].allocs, 30 * 16);
    CHECK_EQ(st[1].blocks, 0);
    for (int i = 1; i < 40; i += 2) rp_free(h.b[i]);
    tu_end_pool(pool);
}

/* A thread's shard of a shared malloc-backed pool keeps more freed blocks
   for reuse than a pool of its own (256 KiB against 64 KiB: a shard is its
   thread's cache of the pool), and no more: every class up to 4 KiB
   allocated and freed, twice over, leaves at most 256 KiB waiting. */
typedef struct recycler { rp_pool *pool; size_t reserved; } recycler;
static void *recycle_every_class(void *arg)
{
    recycler *r = arg;
    enum { N = 2 * 257 };
    void **b = malloc(N * sizeof *b);
    CHECK(b != NULL);
    for (int i = 0; i < N; i++) b[i] = rp_alloc(r->pool, (size_t)(i % 257) * 16 + 1, "every");
    for (int i = 0; i < N; i++) rp_free(b[i]);
    free(b);
    rp_pool_info info;
    info_of(r->pool, &info);
    r->reserved = info.reserved_bytes;   /* before the exit gives them back */
    return NULL;
}
static void test_shard_keeps_more_for_reuse(void)
{
    if (tu_is_arena()) return;
    rp_pool *pool = tu_pool("recycling");
    recycler own = {.pool = pool};
    recycle_every_class(&own);   /* the creator: the pool's own lists */
    recycler r = {.pool = pool};
    in_thread(recycle_every_class, &r);
    if (own.reserved) {
        /* recycling on (not under memcheck or ASan) */
        CHECK(own.reserved <= ((size_t)64 << 10));
        CHECK(r.reserved - own.reserved > ((size_t)64 << 10));
        CHECK(r.reserved - own.reserved <= ((size_t)256 << 10));
    } else {
        CHECK_EQ(r.reserved, 0);
    }
    CHECK_COUNTS(pool, 0, 0);
    tu_end_pool(pool);
}

/* Destructors run last registered first, whichever thread allocated the
   blocks. */
static char dtor_order[8];
static int dtor_n;
static void dtor_note(void *p) { dtor_order[dtor_n++] = *(char *)p; }

typedef struct dtor_job { rp_pool *pool; char c; } dtor_job;
static void *alloc_with_dtor(void *arg)
{
    dtor_job *j = arg;
    char *p = rp_alloc(j->pool, 1, "d");
    *p = j->c;
    CHECK_INT(rp_set_destructor(p, dtor_note), 0);
    return NULL;
}

static void test_destructors_in_order_across_threads(void)
{
    rp_pool *pool = tu_pool("dtors");
    dtor_job j1 = {pool, 'a'}, j2 = {pool, 'b'}, j3 = {pool, 'c'}, j4 = {pool, 'd'};
    in_thread(alloc_with_dtor, &j1);
    alloc_with_dtor(&j2);
    in_thread(alloc_with_dtor, &j3);
    alloc_with_dtor(&j4);
    dtor_n = 0;
    rp_pool_destroy(pool);
    CHECK_EQ(dtor_n, 4);
    CHECK(memcmp(dtor_order, "dcba", 4) == 0);
}

/* Snapshots taken while threads allocate and free are exact at one instant:
   each worker keeps K blocks of its own size (K+1 while it swaps one), so
   every snapshot has per tag K or K+1 blocks and bytes = blocks * size, and
   the totals are the sums. */
#define SNAP_WORKERS 3
#define SNAP_K 4
static atomic_int snap_stop, snap_ready;

typedef struct swapper {
    rp_pool *pool;
    size_t   size;
    char     tag[24];
    long     swaps;
} swapper;

static void *swap_blocks(void *arg)
{
    swapper *w = arg;
    void *b[SNAP_K];
    for (int i = 0; i < SNAP_K; i++) b[i] = rp_alloc(w->pool, w->size, w->tag);
    atomic_fetch_add(&snap_ready, 1);
    for (long i = 0; !atomic_load_explicit(&snap_stop, memory_order_relaxed); i++) {
        void *n = rp_alloc(w->pool, w->size, w->tag);
        rp_free(b[i % SNAP_K]);
        b[i % SNAP_K] = n;
        w->swaps++;
    }
    for (int i = 0; i < SNAP_K; i++) rp_free(b[i]);
    return NULL;
}

static void test_snapshot_exact_while_threads_run(void)
{
    rp_pool *pool = tu_pool("snap");
    swapper w[SNAP_WORKERS];
    pthread_t t[SNAP_WORKERS];
    atomic_store(&snap_stop, 0);
    atomic_store(&snap_ready, 0);
    for (int i = 0; i < SNAP_WORKERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].pool = pool;
        w[i].size = 16 * (size_t)(i + 1) + 3;
        snprintf(w[i].tag, sizeof w[i].tag, "swap-%d", i);
        CHECK(pthread_create(&t[i], NULL, swap_blocks, &w[i]) == 0);
    }
    while (atomic_load(&snap_ready) < SNAP_WORKERS) sched_yield();
    int rounds = tu_quick() ? 50 : 400;
    for (int r = 0; r < rounds; r++) {
        rp_tag_stat st[8];
        size_t n = rp_pool_stats(pool, st, 8), blocks = 0, bytes = 0;
        CHECK_EQ(n, SNAP_WORKERS);
        for (size_t k = 0; k < n; k++) {
            int i = st[k].tag[5] - '0';
            CHECK(i >= 0 && i < SNAP_WORKERS);
            CHECK(st[k].blocks == SNAP_K || st[k].blocks == SNAP_K + 1);
            CHECK_EQ(st[k].bytes, st[k].blocks * w[i].size);
            blocks += st[k].blocks;
            bytes += st[k].bytes;
        }
        rp_pool_info info;
        info_of(pool, &info);
        CHECK(blocks >= n * SNAP_K && blocks <= n * (SNAP_K + 1));
        /* the info is another instant, with the same bounds */
        CHECK(info.blocks >= n * SNAP_K && info.blocks <= n * (SNAP_K + 1));
        CHECK_EQ(info.tags, SNAP_WORKERS);
        CHECK(info.bytes <= info.peak_bytes);
        size_t ob = 0, on = rp_pool_outstanding(pool, &ob);
        CHECK(on >= n * SNAP_K && on <= n * (SNAP_K + 1));
        (void)bytes;
        sched_yield();
    }
    atomic_store(&snap_stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < SNAP_WORKERS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        total += (uint64_t)w[i].swaps + SNAP_K;
    }
    rp_pool_info info;
    info_of(pool, &info);
    CHECK_EQ(info.allocs, total);
    CHECK_COUNTS(pool, 0, 0);
    tu_end_pool(pool);
}

/* Blocks freed by another thread than the one that allocated them (which is
   still running and allocating) leave the counters at once: the freeing
   thread's own next snapshot no longer counts them, zero-size blocks
   included. */
typedef struct owner_job {
    rp_pool *pool;
    void    *b[32];
    gate     g;
} owner_job;

static void *owner_body(void *arg)
{
    owner_job *j = arg;
    for (int i = 0; i < 32; i++) j->b[i] = rp_alloc(j->pool, (size_t)(i % 4) * 8, "owner");
    gate_set(&j->g, 1);
    gate_wait(&j->g, 2);    /* the main thread frees the even ones */
    for (int i = 0; i < 32; i += 2) j->b[i] = rp_alloc(j->pool, 24, "owner-again");
    gate_set(&j->g, 3);
    gate_wait(&j->g, 4);
    for (int i = 0; i < 32; i++) rp_free(j->b[i]);
    return NULL;
}

static void test_frees_from_other_threads_counted_at_once(void)
{
    rp_pool *pool = tu_pool("remote");
    owner_job j;
    memset(&j, 0, sizeof j);
    j.pool = pool;
    gate_init(&j.g);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, owner_body, &j) == 0);
    gate_wait(&j.g, 1);
    /* sizes 0, 8, 16, 24 repeating: 8 blocks of each, 384 bytes */
    CHECK_COUNTS(pool, 32, 384);
    size_t left = 32, bytes = 384;
    for (int i = 0; i < 32; i += 2) {
        rp_free(j.b[i]);
        left--;
        bytes -= (size_t)(i % 4) * 8;
        CHECK_COUNTS(pool, left, bytes);
    }
    CHECK_INT(rp_pool_check(pool), 0);
    gate_set(&j.g, 2);
    gate_wait(&j.g, 3);
    CHECK_COUNTS(pool, 32, bytes + 16 * 24);
    size_t seen = 0;
    CHECK_INT(rp_pool_walk(pool, count_visit, &seen), 0);
    CHECK_EQ(seen, 32);
    gate_set(&j.g, 4);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_COUNTS(pool, 0, 0);
    rp_tag_stat st[4];
    CHECK_EQ(rp_pool_stats(pool, st, 4), 2);
    CHECK_EQ(st[0].allocs, 32);
    CHECK_EQ(st[1].allocs, 16);
    gate_destroy(&j.g);
    tu_end_pool(pool);
}

/* More threads than the pool has slots for them (pool->tslot, found by a
   hash of the thread pointer): threads whose slots collide find their own
   shard in the pool's list, so each thread keeps exactly one shard however
   many calls it makes (with the arena, one chunk per shard: the count of
   chunks does not grow), and the counters stay exact. Under TSan, two
   threads sharing a shard's lock-free path would be reported. */
#define MANY 40
#define MANY_BLOCKS 50
typedef struct many_job {
    rp_pool           *pool;
    pthread_barrier_t *bar;
    char               tag[16];
    void              *b[MANY_BLOCKS];
} many_job;

static void *many_body(void *arg)
{
    many_job *j = arg;
    for (int i = 0; i < MANY_BLOCKS; i++) j->b[i] = rp_alloc(j->pool, 32, j->tag);
    pthread_barrier_wait(j->bar);   /* 1: all hold their blocks */
    pthread_barrier_wait(j->bar);   /* 2: counted */
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < MANY_BLOCKS; i++) rp_free(j->b[i]);
        for (int i = 0; i < MANY_BLOCKS; i++) j->b[i] = rp_alloc(j->pool, 32 + (size_t)round, j->tag);
    }
    pthread_barrier_wait(j->bar);   /* 3: counted again */
    pthread_barrier_wait(j->bar);   /* 4 */
    for (int i = 0; i < MANY_BLOCKS; i++) rp_free(j->b[i]);
    return NULL;
}

static void test_many_threads_each_keep_one_shard(void)
{
    rp_pool_options o = {.flags = tu_backing, .chunk_size = 64 << 10, .keep_bytes = 0};
    rp_pool *pool = rp_pool_create_ex("many", &o);
    CHECK(pool != NULL);
    pthread_barrier_t bar;
    CHECK(pthread_barrier_init(&bar, NULL, MANY + 1) == 0);
    static many_job jobs[MANY];
    pthread_t t[MANY];
    for (int i = 0; i < MANY; i++) {
        jobs[i].pool = pool;
        jobs[i].bar = &bar;
        snprintf(jobs[i].tag, sizeof jobs[i].tag, "t%d", i);
        CHECK(pthread_create(&t[i], NULL, many_body, &jobs[i]) == 0);
    }
    pthread_barrier_wait(&bar);
    rp_pool_info info;
    CHECK_EQ(info_of(pool, &info), (size_t)MANY * MANY_BLOCKS);
    CHECK_EQ(info.bytes, (size_t)MANY * MANY_BLOCKS * 32);
    CHECK_EQ(info.tags, MANY);
    size_t chunks = info.chunks;
    if (tu_backing) CHECK_EQ(chunks, MANY);   /* one shard, one chunk each */
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    CHECK_EQ(info_of(pool, &info), (size_t)MANY * MANY_BLOCKS);
    CHECK_EQ(info.bytes, (size_t)MANY * MANY_BLOCKS * (32 + 19));
    CHECK_EQ(info.allocs, (uint64_t)MANY * MANY_BLOCKS * 21);
    CHECK_EQ(info.chunks, chunks);
    rp_tag_stat st[MANY];
    CHECK_EQ(rp_pool_stats(pool, st, MANY), MANY);
    for (int i = 0; i < MANY; i++) {
        CHECK_EQ(st[i].blocks, MANY_BLOCKS);
        CHECK_EQ(st[i].allocs, (uint64_t)MANY_BLOCKS * 21);
    }
    pthread_barrier_wait(&bar);
    for (int i = 0; i < MANY; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK_COUNTS(pool, 0, 0);
    CHECK_INT(rp_pool_check(pool), 0);
    pthread_barrier_destroy(&bar);
    tu_end_pool(pool);
}

/* A thread that allocates blocks another thread frees (producer and
   consumer): the frees go on the producer's shard's list of remote frees,
   and the producer takes them in as soon as a free list it allocates from
   runs dry, before it carves new blocks or calls malloc: from the second
   round on, nearly every block it gets is one the consumer freed in the
   round before (same addresses), the arena's chunks do not grow, and the
   counters are exact at the end. */
typedef struct relay {
    rp_pool        *pool;
    void           *b[500], *prev[500];
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             made, freed;   /* rounds */
    int             fewest_reused; /* of the blocks of a round after the first */
} relay;

static void *relay_produce(void *arg)
{
    relay *r = arg;
    for (int round = 1; round <= 60; round++) {
        pthread_mutex_lock(&r->mu);
        while (r->freed < round - 1) pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
        for (int i = 0; i < 500; i++) r->b[i] = rp_alloc(r->pool, 64, "relay");
        if (round > 1) {
            int reused = 0;
            for (int i = 0; i < 500; i++)
                reused += bsearch(&r->b[i], r->prev, 500, sizeof r->prev[0], tu_cmp_ptr) != NULL;
            if (reused < r->fewest_reused) r->fewest_reused = reused;
        }
        memcpy(r->prev, r->b, sizeof r->b);
        qsort(r->prev, 500, sizeof r->prev[0], tu_cmp_ptr);
        pthread_mutex_lock(&r->mu);
        r->made = round;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

static void *relay_consume(void *arg)
{
    relay *r = arg;
    for (int round = 1; round <= 60; round++) {
        pthread_mutex_lock(&r->mu);
        while (r->made < round) pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
        for (int i = 0; i < 500; i++) rp_free(r->b[i]);
        pthread_mutex_lock(&r->mu);
        r->freed = round;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

static void test_producer_reuses_blocks_a_consumer_frees(void)
{
    rp_pool_options o = {.flags = tu_backing, .chunk_size = 64 << 10, .keep_bytes = 0};
    rp_pool *pool = rp_pool_create_ex("relay", &o);
    CHECK(pool != NULL);
    static relay r;
    memset(&r, 0, sizeof r);
    r.pool = pool;
    r.fewest_reused = 500;
    /* under memory checkers (valgrind's memcheck, ASan) and with
       RINGPOOL_RECYCLE=0 the malloc backing does not recycle: a freed block
       then leaves the pool's reserved bytes (that malloc hands the same
       address back says nothing: glibc does so by itself) */
    rp_pool_info i0, i1;
    info_of(pool, &i0);
    rp_free(rp_alloc(pool, 64, "probe"));
    info_of(pool, &i1);
    int reuses = i1.reserved_bytes != i0.reserved_bytes;
    rp_free(rp_alloc(pool, 64, "probe"));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    pthread_t p, c;
    CHECK(pthread_create(&p, NULL, relay_produce, &r) == 0);
    CHECK(pthread_create(&c, NULL, relay_consume, &r) == 0);
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    CHECK_COUNTS(pool, 0, 0);
    rp_pool_info info;
    CHECK_EQ(info_of(pool, &info), 0);
    CHECK_EQ(info.allocs, 60 * 500 + 2);
    if (tu_backing) CHECK(info.chunks <= 2);
    if (tu_backing || reuses) CHECK(r.fewest_reused >= 450);
    CHECK_INT(rp_pool_check(pool), 0);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    tu_end_pool(pool);
}

/* The pool's creator allocates and frees without a lock while other threads
   use their shards, free the creator's blocks (onto its list of remote
   frees), resize them (the general path, which waits the creator out) and
   take snapshots: every snapshot is consistent and the counters exact at the
   end. Run as is (the creator biased) and with RINGPOOL_SHARD_BIAS=0 (every
   call of the creator locks). */
#define CREATOR_GIFTS 64
typedef struct creator_job {
    rp_pool          *pool;
    void            **gifts;     /* the creator's blocks this thread frees */
    int               ngifts;
    pthread_barrier_t *bar;
    void             *kept[16];
} creator_job;

static void *creator_helper(void *arg)
{
    creator_job *j = arg;
    int pairs = tu_quick() ? 2000 : 20000;
    for (int i = 0; i < 16; i++) j->kept[i] = rp_alloc(j->pool, 48, "helper");
    pthread_barrier_wait(j->bar);
    for (int i = 0; i < pairs; i++) {
        void *p = rp_alloc(j->pool, (size_t)(i % 200) + 1, "helper");
        if (i < j->ngifts) {
            /* the first gifts resized here, then freed */
            if (i % 4 == 0) {
                j->gifts[i] = rp_resize(j->pool, j->gifts[i], 100);
                CHECK(j->gifts[i] != NULL);
                CHECK(rp_block_pool(j->gifts[i]) == j->pool);
            }
            rp_free(j->gifts[i]);
        }
        if (i % 1000 == 0) {
            size_t bytes = 0;
            size_t n = rp_pool_outstanding(j->pool, &bytes);
            CHECK(n >= 16 && bytes >= 16 * 48);
        }
        rp_free(p);
    }
    pthread_barrier_wait(j->bar);
    return NULL;
}

static void *free_kept(void *arg)
{
    creator_job *j = arg;
    for (int i = 0; i < 16; i++) rp_free(j->kept[i]);
    return NULL;
}

static void creator_shares_pool(void)
{
    rp_pool *pool = tu_pool("creator");
    void *gifts[3][CREATOR_GIFTS];
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < CREATOR_GIFTS; i++)
            /* 8 bytes: headerless slots (arena), which the helpers resize
               without entering the pool first (the sampler's countdown was
               read before: a data race under TSan) */
            gifts[t][i] = rp_alloc(pool, i % 2 ? 24 : 8, "gift");
    void *mine[32];
    for (int i = 0; i < 32; i++) mine[i] = rp_alloc(pool, 16, "mine");
    pthread_barrier_t bar;
    CHECK(pthread_barrier_init(&bar, NULL, 4) == 0);
    creator_job jobs[3];
    pthread_t th[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (creator_job){.pool = pool, .gifts = gifts[t], .ngifts = CREATOR_GIFTS, .bar = &bar};
        CHECK(pthread_create(&th[t], NULL, creator_helper, &jobs[t]) == 0);
    }
    pthread_barrier_wait(&bar);
    int pairs = tu_quick() ? 2000 : 20000;
    for (int i = 0; i < pairs; i++) {
        void *p = rp_alloc(pool, (size_t)(i % 300) + 1, "mine");
        if (i % 64 == 0) {
            mine[i / 64 % 32] = rp_resize(pool, mine[i / 64 % 32], (size_t)(i % 500) + 16);
            CHECK(mine[i / 64 % 32] != NULL);
        }
        rp_free(p);
    }
    pthread_barrier_wait(&bar);
    for (int t = 0; t < 3; t++) CHECK(pthread_join(th[t], NULL) == 0);
    pthread_barrier_destroy(&bar);
    size_t mine_bytes = 0;
    for (int i = 0; i < 32; i++) mine_bytes += rp_block_size(mine[i]);
    CHECK_COUNTS(pool, 32 + 3 * 16, mine_bytes + 3 * 16 * 48);
    rp_pool_info info;
    CHECK_EQ(info_of(pool, &info), 32 + 3 * 16);
    CHECK_EQ(info.allocs, (uint64_t)(3 * CREATOR_GIFTS + 32 + pairs) + 3 * (uint64_t)(16 + pairs));
    CHECK_INT(rp_pool_check(pool), 0);
    for (int t = 0; t < 3; t++) in_thread(free_kept, &jobs[t]);
    for (int i = 0; i < 32; i++) rp_free(mine[i]);
    CHECK_COUNTS(pool, 0, 0);
    tu_end_pool(pool);
}

static void test_creator_shares_pool_lock_free(void) { creator_shares_pool(); }

static void test_creator_shares_pool_without_bias(void)
{
    CHECK(setenv("RINGPOOL_SHARD_BIAS", "0", 1) == 0);
    creator_shares_pool();
    CHECK(unsetenv("RINGPOOL_SHARD_BIAS") == 0);
}

/* A thread that allocates from two shared pools by turns (so that the shard
   it remembered last is always the other pool's) puts every block in the
   pool it asked, sizes below and above the recycled classes included, and
   both pools count exactly what it did. */
typedef struct alternator {
    rp_pool *pool[2];
    void    *b[2][120];
} alternator;

static void *alternate(void *arg)
{
    alternator *a = arg;
    for (int i = 0; i < 120; i++) {
        for (int k = 0; k < 2; k++) {
            size_t size = (i % 3 == 2) ? 5000 + (size_t)i : 16 + (size_t)i;
            void *p = rp_alloc(a->pool[k], size, k ? "second" : "first");
            CHECK(p != NULL);
            CHECK(rp_block_pool(p) == a->pool[k]);
            a->b[k][i] = p;
        }
        if (i % 4 == 3) {   /* and frees, by turns too */
            rp_free(a->b[0][i - 1]);
            rp_free(a->b[1][i - 2]);
            a->b[0][i - 1] = a->b[1][i - 2] = NULL;
        }
    }
    return NULL;
}

static void test_thread_alternating_pools_keeps_each_shard(void)
{
    alternator a;
    memset(&a, 0, sizeof a);
    a.pool[0] = tu_pool("first");
    a.pool[1] = tu_pool("second");
    in_thread(alternate, &a);
    for (int k = 0; k < 2; k++) {
        size_t blocks = 0, bytes = 0;
        for (int i = 0; i < 120; i++) {
            if (!a.b[k][i]) continue;
            blocks++;
            bytes += rp_block_size(a.b[k][i]);
        }
        CHECK_EQ(blocks, 120 - 30);
        CHECK_COUNTS(a.pool[k], blocks, bytes);
        rp_tag_stat st[4];
        CHECK_EQ(rp_pool_stats(a.pool[k], st, 4), 1);
        CHECK_EQ(st[0].allocs, 120);
        CHECK_INT(rp_pool_check(a.pool[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 120; i++) rp_free(a.b[k][i]);
        CHECK_COUNTS(a.pool[k], 0, 0);
        tu_end_pool(a.pool[k]);
    }
}

/* The creator (a biased pool's owner, no lock) allocates small blocks of
   every headerless class while another thread checks, resizes (to another
   class, or within the slot) and frees them under the pool's lock, onto the
   owner's class lists, from which the owner takes them again at once: every
   block's contents intact, the counters exact. With RINGPOOL_HEADERLESS=64
   all four classes are slots (test-c-tsan runs it so too). */
typedef struct slot_relay {
    rp_pool *pool;
    queue    q;
    uint64_t resized;
} slot_relay;

static void relay_fill(unsigned char *p, size_t size, uint32_t seq)
{
    memcpy(p, &seq, sizeof seq);
    for (size_t i = sizeof seq; i < size; i++) p[i] = (unsigned char)(seq + i);
}

static void relay_check(const unsigned char *p, size_t size, uint32_t *seq)
{
    memcpy(seq, p, sizeof *seq);
    for (size_t i = sizeof *seq; i < size; i++) CHECK(p[i] == (unsigned char)(*seq + i));
}

static void *slot_relay_free(void *arg)
{
    slot_relay *r = arg;
    static const size_t to[] = {24, 40, 56, 8, 12, 30, 50, 64};
    void *p;
    while ((p = q_get(&r->q)) != NULL) {
        size_t size = rp_block_size(p);
        CHECK(size >= 8 && size <= 64);
        CHECK(rp_block_pool(p) == r->pool);
        uint32_t seq;
        relay_check(p, size, &seq);
        if (seq % 3 == 0) {
            size_t want = to[seq / 3 % 8];
            unsigned char *n = rp_resize(r->pool, p, want);
            CHECK(n != NULL);
            uint32_t again;
            relay_check(n, size < want ? size : want, &again);
            CHECK_EQ(again, seq);
            CHECK_EQ(rp_block_size(n), want);
            r->resized++;
            p = n;
        }
        rp_free(p);
    }
    return NULL;
}

static atomic_long relay_tracked, relay_samples;
static void *relay_sampled(const rp_memprof_allocation *a, void *data)
{
    (void)data;
    atomic_fetch_add(&relay_tracked, 1);
    atomic_fetch_add(&relay_samples, 1);
    return a->block;
}
static void relay_unsampled(void *user, void *data)
{
    (void)user;
    (void)data;
    atomic_fetch_sub(&relay_tracked, 1);
}

static void owner_reuses_slots(int sampled)
{
    static slot_relay r;
    memset(&r, 0, sizeof r);
    r.pool = tu_pool("slot-relay");
    q_init(&r.q, 1);
    /* sampled: some blocks get a header (the sampler's), which the other
       thread frees and resizes with their profile's calls */
    rp_memprof *prof = NULL;
    atomic_store(&relay_tracked, 0);
    if (sampled) {
        rp_memprof_params mp = {.rate = 1.0 / 512, .seed = 7};
        mp.tracker.alloc = relay_sampled;
        mp.tracker.dealloc = relay_unsampled;
        CHECK_INT(rp_memprof_start(&mp, &prof), 0);
    }
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slot_relay_free, &r) == 0);
    static const size_t sizes[] = {8, 24, 40, 56, 16, 32, 48, 64};
    uint32_t n = tu_quick() ? 20000 : 100000;
    void *mine[8] = {NULL};
    for (uint32_t seq = 0; seq < n; seq++) {
        size_t size = sizes[seq % 8];
        unsigned char *p = rp_alloc(r.pool, size, seq % 2 ? "relay-a" : "relay-b");
        CHECK(p != NULL);
        relay_fill(p, size, seq);
        if (seq % 16 == 5) {   /* some the owner keeps a while and frees itself */
            uint32_t old;
            if (mine[seq / 16 % 8]) {
                relay_check(mine[seq / 16 % 8], rp_block_size(mine[seq / 16 % 8]), &old);
                rp_free(mine[seq / 16 % 8]);
            }
            mine[seq / 16 % 8] = p;
            continue;
        }
        q_put(&r.q, p);
    }
    q_done(&r.q);
    CHECK(pthread_join(th, NULL) == 0);
    size_t kept = 0, kept_bytes = 0;
    for (int i = 0; i < 8; i++)
        if (mine[i]) {
            kept++;
            kept_bytes += rp_block_size(mine[i]);
        }
    CHECK_COUNTS(r.pool, kept, kept_bytes);
    rp_pool_info info;
    CHECK_EQ(info_of(r.pool, &info), kept);
    CHECK_EQ(info.allocs, n);
    CHECK(r.resized > 0);
    CHECK_INT(rp_pool_check(r.pool), 0);
    for (int i = 0; i < 8; i++) rp_free(mine[i]);
    CHECK_COUNTS(r.pool, 0, 0);
    if (sampled) {
        CHECK_INT(rp_memprof_stop(), 0);
        CHECK_EQ(rp_memprof_tracked(prof), 0);
        CHECK_EQ(atomic_load(&relay_tracked), 0);
        CHECK(atomic_load(&relay_samples) > 0);
        CHECK_INT(rp_memprof_discard(prof), 0);
    }
    q_destroy(&r.q);
    tu_end_pool(r.pool);
}

static void test_owner_reuses_slots_other_threads_free(void) { owner_reuses_slots(0); }
static void test_owner_reuses_slots_while_sampled(void) { owner_reuses_slots(1); }

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"cross_thread_free_exact", test_cross_thread_free_exact},
        {"waiter_sleeps_while_lock_held", test_waiter_sleeps_while_lock_held},
        {"other_threads_blocks_are_the_pools", test_other_threads_blocks_are_the_pools},
        {"destroy_while_threads_hold_shards", test_destroy_while_threads_hold_shards},
        {"thread_exit_returns_its_cache", test_thread_exit_returns_its_cache},
        {"shard_keeps_more_for_reuse", test_shard_keeps_more_for_reuse},
        {"destructors_in_order_across_threads", test_destructors_in_order_across_threads},
        {"snapshot_exact_while_threads_run", test_snapshot_exact_while_threads_run},
        {"frees_from_other_threads_counted_at_once", test_frees_from_other_threads_counted_at_once},
        {"many_threads_each_keep_one_shard", test_many_threads_each_keep_one_shard},
        {"producer_reuses_blocks_a_consumer_frees", test_producer_reuses_blocks_a_consumer_frees},
        {"creator_shares_pool_lock_free", test_creator_shares_pool_lock_free},
        {"creator_shares_pool_without_bias", test_creator_shares_pool_without_bias},
        {"thread_alternating_pools_keeps_each_shard", test_thread_alternating_pools_keeps_each_shard},
        {"owner_reuses_slots_other_threads_free", test_owner_reuses_slots_other_threads_free},
        {"owner_reuses_slots_while_sampled", test_owner_reuses_slots_while_sampled},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
