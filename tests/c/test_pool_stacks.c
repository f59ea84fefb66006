/* test_pool_stacks.c -- pools that record allocation stacks (RP_POOL_STACKS,
   $RINGPOOL_POOL_STACKS): the report opens each tag into the stacks that
   reached it, with blocks, bytes and allocations that follow frees,
   resizes, resets and threads; pools without the flag carry no stacks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "testutil.h"

/* ------------------------------------------------------------ reading reports */
#define MAXN 512
typedef struct row { size_t stack, blocks, bytes; unsigned long long allocs; } row;
typedef struct report {
    char *text;
    int depth;                         /* -1: no stack_depth field */
    size_t nmods;
    uintptr_t base[64];
    size_t nframes;
    uintptr_t frame[MAXN];             /* absolute return addresses */
    size_t nstacks;
    size_t stack_len[MAXN];
    size_t stack_frames[MAXN][8];      /* the first frames of each stack */
} report;

static void load(rp_pool *pool, report *r)
{
    char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/rp-pool-stacks-XXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT(rp_pool_write_report(pool, path), 0);
    memset(r, 0, sizeof *r);
    r->text = tu_slurp(path);
    unlink(path);
    r->depth = -1;
    const char *p = strstr(r->text, "\"stack_depth\": ");
    if (!p)
        return;
    r->depth = atoi(p + 15);
    p = strstr(p, "\"modules\": [");
    CHECK(p != NULL);
    const char *end = strstr(p, "\"frames\": [");
    CHECK(end != NULL);
    while ((p = strstr(p, "\"base\": \"0x")) != NULL && p < end) {
        CHECK(r->nmods < 64);
        r->base[r->nmods++] = (uintptr_t)strtoull(p + 11, NULL, 16);
        p += 11;
    }
    p = end + 11;
    long mod;
    unsigned long off;
    int used;
    while (sscanf(p, " [%ld, \"0x%lx\"]%n", &mod, &off, &used) == 2) {
        CHECK(r->nframes < MAXN);
        CHECK(mod >= -1 && mod < (long)r->nmods);
        r->frame[r->nframes++] = (mod >= 0 ? r->base[mod] : 0) + off;
        p += used;
        if (*p == ',')
            p++;
    }
    p = strstr(p, "\"stacks\": [");
    CHECK(p != NULL);
    p += 11;
    while (*p == '[' || *p == ',' || *p == ' ') {
        if (*p != '[') { p++; continue; }
        p++;
        CHECK(r->nstacks < MAXN);
        size_t s = r->nstacks++;
        while (*p != ']') {
            char *e;
            size_t idx = (size_t)strtoul(p, &e, 10);
            CHECK(e != p);
            CHECK(idx < r->nframes);
            if (r->stack_len[s] < 8)
                r->stack_frames[s][r->stack_len[s]] = idx;
            r->stack_len[s]++;
            p = e;
            while (*p == ',' || *p == ' ')
                p++;
        }
        p++;
    }
}

/* The stacks of tag: their number, the rows in out. */
static size_t tag_rows(const report *r, const char *tag, row *out, size_t cap)
{
    char key[256];
    snprintf(key, sizeof key, "{\"tag\": \"%s\"", tag);
    const char *p = strstr(r->text, key);
    CHECK(p != NULL);
    const char *stop = strchr(p, '\n');
    p = strstr(p, "\"stacks\": [");
    if (!p || (stop && p > stop))
        return 0;
    p += 11;
    size_t n = 0;
    row w;
    int used;
    while (sscanf(p, "{\"stack\": %zu, \"blocks\": %zu, \"bytes\": %zu, \"allocs\": %llu}%n",
                  &w.stack, &w.blocks, &w.bytes, &w.allocs, &used) == 4) {
        CHECK(w.stack < r->nstacks);
        if (n < cap)
            out[n] = w;
        n++;
        p += used;
        if (p[0] == ',' && p[1] == ' ')
            p += 2;
    }
    CHECK(*p == ']');
    return n;
}

/* ------------------------------------------------------------ callers */
__attribute__((noinline)) static void *alloc_in_parse(rp_pool *p, size_t n)
{
    void *b = rp_alloc(p, n, "node");
    __asm__ volatile("" ::: "memory");   /* not a tail call: this frame stays */
    return b;
}

__attribute__((noinline)) static void *alloc_in_eval(rp_pool *p, size_t n)
{
    void *b = rp_alloc(p, n, "node");
    __asm__ volatile("" ::: "memory");
    return b;
}

__attribute__((noinline)) static void *try_in_eval(rp_pool *p, size_t n)
{
    void *b = rp_alloc_noexc(p, n, "node");
    __asm__ volatile("" ::: "memory");
    return b;
}

__attribute__((noinline)) static void *parse_outer(rp_pool *p)
{
    void *b = alloc_in_parse(p, 24);
    __asm__ volatile("" ::: "memory");
    return b;
}

__attribute__((noinline)) static char *dup_in_name(rp_pool *p)
{
    char *s = rp_strdup(p, "name", "str");
    __asm__ volatile("" ::: "memory");
    return s;
}

__attribute__((noinline)) static void *zero_in_table(rp_pool *p)
{
    void *b = rp_calloc(p, 4, 8, "table");
    __asm__ volatile("" ::: "memory");
    return b;
}

/* A call made inside fn: fn's code ends where the next of the functions
   above begins (or 400 bytes on). */
static int in_function(uintptr_t a, void *fn)
{
    void *const fns[] = {(void *)alloc_in_parse, (void *)alloc_in_eval, (void *)parse_outer,
                         (void *)dup_in_name, (void *)zero_in_table, (void *)try_in_eval};
    uintptr_t lo = (uintptr_t)fn, hi = lo + 400;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if ((uintptr_t)fns[i] > lo && (uintptr_t)fns[i] < hi)
            hi = (uintptr_t)fns[i];
    return a >= lo && a < hi;
}

/* The stack's leaf (its first frame) is a call made inside fn. */
static int leaf_in(const report *r, size_t stack, void *fn)
{
    return r->stack_len[stack] > 0 && in_function(r->frame[r->stack_frames[stack][0]] - 1, fn);
}

static int frames_include(const report *r, size_t stack, void *fn)
{
    for (size_t i = 0; i < r->stack_len[stack] && i < 8; i++)
        if (in_function(r->frame[r->stack_frames[stack][i]] - 1, fn))
            return 1;
    return 0;
}

static const row *find_leaf(const report *r, const row *rows, size_t n, void *fn)
{
    for (size_t i = 0; i < n; i++)
        if (leaf_in(r, rows[i].stack, fn))
            return &rows[i];
    return NULL;
}

/* ------------------------------------------------------------ cases */
static void test_tags_open_into_stacks(void)
{
    rp_pool *pool = tu_pool_ex("stacks", RP_POOL_STACKS);
    rp_pool_info info = {.struct_size = sizeof info};
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    CHECK(info.flags & RP_POOL_STACKS);
    void *a[3], *b[2];
    volatile int three = 3, two = 2;   /* loops not unrolled: one call site each */
    for (int i = 0; i < three; i++) a[i] = alloc_in_parse(pool, 24);
    for (int i = 0; i < two; i++) b[i] = alloc_in_eval(pool, 100);
    char *s = dup_in_name(pool);
    void *z = zero_in_table(pool);
    void *outer = parse_outer(pool);

    report r;
    load(pool, &r);
    CHECK_INT(r.depth, 64);
    row rows[8];
    size_t n = tag_rows(&r, "node", rows, 8);
    CHECK_EQ(n, 3);
    const row *pa = find_leaf(&r, rows, n, (void *)alloc_in_parse);
    const row *pb = find_leaf(&r, rows, n, (void *)alloc_in_eval);
    CHECK(pa != NULL && pb != NULL);
    /* the three calls from one place share one stack; parse_outer's call
       reaches alloc_in_parse through another path: another stack */
    size_t from_parse = 0;
    for (size_t i = 0; i < n; i++)
        if (leaf_in(&r, rows[i].stack, (void *)alloc_in_parse)) {
            from_parse++;
            if (frames_include(&r, rows[i].stack, (void *)parse_outer)) {
                CHECK_EQ(rows[i].blocks, 1);
            } else {
                CHECK_EQ(rows[i].blocks, 3);
                CHECK_EQ(rows[i].bytes, 72);
                CHECK_EQ(rows[i].allocs, 3);
            }
        }
    CHECK_EQ(from_parse, 2);
    CHECK_EQ(pb->blocks, 2);
    CHECK_EQ(pb->bytes, 200);
    CHECK_EQ(tag_rows(&r, "str", rows, 8), 1);
    CHECK(leaf_in(&r, rows[0].stack, (void *)dup_in_name));
    CHECK_EQ(rows[0].bytes, 5);
    CHECK_EQ(tag_rows(&r, "table", rows, 8), 1);
    CHECK(leaf_in(&r, rows[0].stack, (void *)zero_in_table));
    free(r.text);

    /* frees count down per stack; a stack whose blocks all went stays
       listed with its allocations */
    for (int i = 0; i < 2; i++) rp_free(b[i]);
    load(pool, &r);
    n = tag_rows(&r, "node", rows, 8);
    CHECK_EQ(n, 3);
    pb = find_leaf(&r, rows, n, (void *)alloc_in_eval);
    CHECK(pb != NULL);
    CHECK_EQ(pb->blocks, 0);
    CHECK_EQ(pb->bytes, 0);
    CHECK_EQ(pb->allocs, 2);
    free(r.text);
    for (int i = 0; i < 3; i++) rp_free(a[i]);
    rp_free(s);
    rp_free(z);
    rp_free(outer);
    tu_end_pool(pool);
}

static void test_stack_stats_through_the_api(void)
{
    rp_pool *pool = tu_pool_ex("api", RP_POOL_STACKS);
    rp_stack_stat st[8];
    CHECK_EQ(rp_pool_stack_stats(pool, st, 8), 0);
    void *a = alloc_in_parse(pool, 10), *bc[2];
    volatile int two = 2;   /* one call site */
    for (int i = 0; i < two; i++) bc[i] = alloc_in_eval(pool, 20 + 10 * (size_t)i);
    rp_free(a);
    CHECK_EQ(rp_pool_stack_stats(pool, NULL, 0), 2);
    CHECK_EQ(rp_pool_stack_stats(pool, st, 1), 2);   /* fills only what fits */
    CHECK_EQ(rp_pool_stack_stats(pool, st, 8), 2);
    CHECK_STR(st[0].tag, "node");
    CHECK(st[0].depth >= 1 && st[0].frames != NULL);
    CHECK(in_function((uintptr_t)st[0].frames[0] - 1, (void *)alloc_in_parse));
    CHECK_EQ(st[0].blocks, 0);
    CHECK_EQ(st[0].allocs, 1);
    CHECK(in_function((uintptr_t)st[1].frames[0] - 1, (void *)alloc_in_eval));
    CHECK_EQ(st[1].blocks, 2);
    CHECK_EQ(st[1].bytes, 50);
    CHECK_EQ(st[1].allocs, 2);
    rp_free(bc[0]);
    rp_free(bc[1]);
    tu_end_pool(pool);
    /* a pool without stacks has none */
    rp_pool *plain = tu_pool("no-stacks");
    void *p = alloc_in_parse(plain, 1);
    CHECK_EQ(rp_pool_stack_stats(plain, st, 8), 0);
    CHECK_EQ(rp_pool_stack_stats(NULL, st, 8), 0);
    rp_free(p);
    tu_end_pool(plain);
}

static void test_resize_keeps_the_stack(void)
{
    rp_pool *pool = tu_pool_ex("resize", RP_POOL_STACKS);
    void *keep = alloc_in_eval(pool, 8);
    void *p = alloc_in_parse(pool, 16);
    /* grow far (moves), shrink (in place or moves), grow again */
    p = rp_resize(pool, p, 70000);
    CHECK(p != NULL);
    memset(p, 1, 70000);
    p = rp_resize(pool, p, 40);
    p = rp_resize_noexc(pool, p, 5000);
    CHECK(p != NULL);
    report r;
    load(pool, &r);
    row rows[8];
    size_t n = tag_rows(&r, "node", rows, 8);
    CHECK_EQ(n, 2);
    const row *w = find_leaf(&r, rows, n, (void *)alloc_in_parse);
    CHECK(w != NULL);
    CHECK_EQ(w->blocks, 1);
    CHECK_EQ(w->bytes, 5000);
    CHECK_EQ(w->allocs, 1);   /* resizes are not allocations */
    free(r.text);
    CHECK_COUNTS(pool, 2, 5008);
    rp_free(p);
    rp_free(keep);
    tu_end_pool(pool);
}

static void test_reset_keeps_allocation_totals(void)
{
    rp_pool *pool = tu_pool_ex("reset", RP_POOL_STACKS);
    volatile int ten = 10;
    for (int i = 0; i < ten; i++) (void)alloc_in_parse(pool, 32);
    void *q = rp_alloc_aligned(pool, 256, 64, "aligned");
    CHECK(((uintptr_t)q & 255) == 0);
    CHECK_INT(rp_pool_reset(pool), 0);
    report r;
    load(pool, &r);
    row rows[4];
    CHECK_EQ(tag_rows(&r, "node", rows, 4), 1);
    CHECK_EQ(rows[0].blocks, 0);
    CHECK_EQ(rows[0].bytes, 0);
    CHECK_EQ(rows[0].allocs, 10);
    free(r.text);
    /* the pool records stacks after the reset as before */
    void *p = alloc_in_parse(pool, 32);
    load(pool, &r);
    /* another call site: another stack, beside the emptied one */
    CHECK_EQ(tag_rows(&r, "node", rows, 4), 2);
    CHECK_EQ(rows[0].blocks, 0);
    CHECK_EQ(rows[0].allocs, 10);
    CHECK_EQ(rows[1].blocks, 1);
    CHECK_EQ(rows[1].allocs, 1);
    free(r.text);
    rp_free(p);
    tu_end_pool(pool);
}

static void test_pools_without_the_flag_record_nothing(void)
{
    rp_pool *pool = tu_pool("plain");
    rp_pool_info info = {.struct_size = sizeof info};
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    CHECK(!(info.flags & RP_POOL_STACKS));
    void *p = alloc_in_parse(pool, 10);
    report r;
    load(pool, &r);
    CHECK_INT(r.depth, -1);
    CHECK(strstr(r.text, "\"stacks\"") == NULL);
    CHECK(strstr(r.text, "\"frames\"") == NULL);
    free(r.text);
    rp_free(p);
    tu_end_pool(pool);
}

static void test_depth_and_children(void)
{
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = RP_POOL_STACKS | RP_POOL_STACK_DEPTH(2) | tu_backing;
    rp_pool *pool = rp_pool_create_ex("shallow", &o);
    CHECK(pool != NULL);
    rp_pool *child = rp_pool_create_child(pool, "child");
    void *p = parse_outer(child);
    report r;
    load(child, &r);
    CHECK_INT(r.depth, 2);   /* the parent's depth */
    row rows[2];
    CHECK_EQ(tag_rows(&r, "node", rows, 2), 1);
    CHECK_EQ(r.stack_len[rows[0].stack], 2);
    CHECK(leaf_in(&r, rows[0].stack, (void *)alloc_in_parse));
    CHECK(frames_include(&r, rows[0].stack, (void *)parse_outer));
    free(r.text);
    rp_free(p);
    tu_end_pool(child);
    /* a depth over the largest is capped */
    o.flags = RP_POOL_STACKS | RP_POOL_STACK_DEPTH(500) | tu_backing;
    rp_pool *deep = rp_pool_create_ex("deep", &o);
    CHECK(deep != NULL);
    p = alloc_in_eval(deep, 1);
    load(deep, &r);
    CHECK_INT(r.depth, 256);
    free(r.text);
    rp_free(p);
    tu_end_pool(deep);
    tu_end_pool(pool);
}

static void test_checked_pool_with_stacks(void)
{
    rp_pool *pool = tu_pool_ex("checked", RP_POOL_STACKS | RP_POOL_CHECKED);
    void *p = alloc_in_parse(pool, 48);
    p = rp_resize(pool, p, 4096);
    report r;
    load(pool, &r);
    row rows[2];
    CHECK_EQ(tag_rows(&r, "node", rows, 2), 1);
    CHECK_EQ(rows[0].bytes, 4096);
    free(r.text);
    rp_free(p);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    rp_free(p);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    rp_set_error_handler(prev);
    load(pool, &r);
    CHECK_EQ(tag_rows(&r, "node", rows, 2), 1);
    CHECK_EQ(rows[0].blocks, 0);
    free(r.text);
    tu_end_pool(pool);
}

static void test_out_of_memory_changes_nothing(void)
{
    rp_pool *pool = tu_pool_ex("oom", RP_POOL_STACKS);
    void *keep = alloc_in_parse(pool, 16);
    /* every underlying allocation from the first to the fifth fails in turn */
    for (long k = 1; k <= 5; k++) {
        rp_debug_fail_after(k, 1);
        void *p = try_in_eval(pool, 64);
        void *q = rp_resize_noexc(pool, keep, 100000);
        rp_debug_fail_after(0, 0);
        if (q) keep = q;
        if (p) rp_free(p);
    }
    report r;
    load(pool, &r);
    row rows[4];
    size_t n = tag_rows(&r, "node", rows, 4);
    const row *w = find_leaf(&r, rows, n, (void *)alloc_in_parse);
    CHECK(w != NULL);
    CHECK_EQ(w->blocks, 1);
    CHECK_EQ(w->bytes, rp_block_size(keep));
    const row *e = find_leaf(&r, rows, n, (void *)try_in_eval);
    if (e)
        CHECK_EQ(e->blocks, 0);
    free(r.text);
    CHECK_INT(rp_pool_check(pool), 0);
    rp_free(keep);
    tu_end_pool(pool);
}

#define NTHREADS 4
typedef struct work { rp_pool *pool; int n; } work;

static void *threads_body(void *arg)
{
    work *w = arg;
    void *keep[64];
    int kept = 0;
    for (int i = 0; i < w->n; i++) {
        void *p = (i & 1) ? alloc_in_parse(w->pool, 16) : alloc_in_eval(w->pool, 32);
        if (kept < 64 && i % 7 == 0)
            keep[kept++] = p;
        else
            rp_free(p);
    }
    for (int i = 0; i < kept; i++)
        rp_free(keep[i]);
    return NULL;
}

static void test_threads_share_a_stack_pool(void)
{
    rp_pool *pool = tu_pool_ex("threads", RP_POOL_STACKS);
    int n = tu_quick() ? 300 : 3000;
    pthread_t th[NTHREADS];
    work w[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        w[t] = (work){pool, n};
        CHECK(pthread_create(&th[t], NULL, threads_body, &w[t]) == 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    report r;
    load(pool, &r);
    row rows[16];
    size_t k = tag_rows(&r, "node", rows, 16);
    CHECK(k >= 2 && k <= 16);
    unsigned long long allocs = 0;
    for (size_t i = 0; i < k; i++) {
        CHECK_EQ(rows[i].blocks, 0);
        allocs += rows[i].allocs;
        CHECK(leaf_in(&r, rows[i].stack, (void *)alloc_in_parse) ||
              leaf_in(&r, rows[i].stack, (void *)alloc_in_eval));
    }
    CHECK_EQ(allocs, (unsigned long long)NTHREADS * (unsigned long long)n);
    free(r.text);
    tu_end_pool(pool);
}

/* Threads keep adding new stacks (recursion of varying depth) while the
   main thread forks: each child allocates with a new stack in a pool of
   its own and must neither hang (the stack table's lock is held across
   fork) nor crash. */
typedef struct forker { rp_pool *pool; atomic_int stop; } forker;

/* 2^16 distinct stacks: each level calls down through one of two sites */
__attribute__((noinline)) static void *pick(rp_pool *p, unsigned bits, int depth);
__attribute__((noinline)) static void *go_left(rp_pool *p, unsigned bits, int depth)
{
    void *b = pick(p, bits >> 1, depth - 1);
    __asm__ volatile("" ::: "memory");
    return b;
}
__attribute__((noinline)) static void *go_right(rp_pool *p, unsigned bits, int depth)
{
    void *b = pick(p, bits >> 1, depth - 1);
    __asm__ volatile("" ::: "memory");
    return b;
}
__attribute__((noinline)) static void *pick(rp_pool *p, unsigned bits, int depth)
{
    void *b = depth == 0 ? rp_alloc(p, 8, "deep")
                         : (bits & 1) ? go_left(p, bits, depth) : go_right(p, bits, depth);
    __asm__ volatile("" ::: "memory");
    return b;
}

static void *forker_body(void *arg)
{
    forker *f = arg;
    for (unsigned i = 0; !atomic_load(&f->stop); i++)
        rp_free(pick(f->pool, i * 2654435761u >> 16, 16));
    return NULL;
}

static void test_fork_while_threads_add_stacks(void)
{
    /* The sanitizers' runtimes (their allocators' locks) may themselves
       hang in the child of a fork of a multithreaded process: the plain and
       valgrind runs cover this case */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return;
#endif
    rp_pool *pool = tu_pool_ex("fork", RP_POOL_STACKS);
    forker f = {pool, 0};
    atomic_init(&f.stop, 0);
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CHECK(pthread_create(&th[t], NULL, forker_body, &f) == 0);
    int rounds = tu_quick() ? 5 : 40;
    for (int i = 0; i < rounds; i++) {
        int fd[2];
        pid_t pid = tu_fork_answering(fd);
        if (pid == 0) {
            /* a malloc-backed pool of its own: the parent's pool lock, or the
               arena chunk cache's, may have been held by another thread at
               the fork (no pool promises more) */
            rp_pool_options o = {.flags = RP_POOL_STACKS};
            rp_pool *mine = rp_pool_create_ex("child", &o);
            void *b = pick(mine, (unsigned)i, 16);
            char verdict = rp_pool_stack_stats(mine, NULL, 0) == 1 ? 'y' : 'n';
            rp_free(b);
            rp_pool_destroy(mine);
            tu_child_answer(fd[1], verdict);
        }
        int status;
        CHECK(tu_child_verdict(pid, fd[0], fd[1], i, &status) == 'y');
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    atomic_store(&f.stop, 1);
    for (int t = 0; t < 2; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    tu_end_pool(pool);
}

/* $RINGPOOL_POOL_STACKS is read once per process: each value in a child. */
static void child_env(const char *arg)
{
    rp_pool *pool = tu_pool("from-env");
    rp_pool_info info = {.struct_size = sizeof info};
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    void *p = alloc_in_parse(pool, 8);
    report r;
    load(pool, &r);
    CHECK_INT(r.depth, atoi(arg));
    CHECK_EQ((info.flags & RP_POOL_STACKS) != 0, atoi(arg) > 0);
    if (atoi(arg) > 0) {
        row rows[2];
        CHECK_EQ(tag_rows(&r, "node", rows, 2), 1);
        CHECK(leaf_in(&r, rows[0].stack, (void *)alloc_in_parse));
    }
    free(r.text);
    rp_free(p);
    tu_end_pool(pool);
    /* the flag wins over a variable that says no */
    pool = tu_pool_ex("flagged", RP_POOL_STACKS);
    p = alloc_in_parse(pool, 8);
    load(pool, &r);
    CHECK(r.depth > 0);
    free(r.text);
    rp_free(p);
    tu_end_pool(pool);
    exit(0);
}

static void expect_env(const char *value, const char *depth, int error_line)
{
    char env[128];
    tu_result res;
    snprintf(env, sizeof env, "RINGPOOL_POOL_STACKS=%s", value);
    tu_spawn("env", depth, env, &res);
    if (!WIFEXITED(res.status) || WEXITSTATUS(res.status) != 0)
        tu_fail(__FILE__, __LINE__, "child with %s failed: %s", env, res.err);
    if (error_line) {
        /* one clear line, naming the variable and the value */
        CHECK(strstr(res.err, "RINGPOOL_POOL_STACKS") != NULL);
        CHECK(strchr(res.err, '\n') == res.err + strlen(res.err) - 1);
    } else {
        CHECK_STR(res.err, "");
    }
}

static void test_environment_variable(void)
{
    expect_env("8", "8", 0);
    expect_env("on", "64", 0);
    expect_env("1", "1", 0);
    expect_env("0", "-1", 0);
    expect_env("", "-1", 0);
    expect_env("257", "-1", 1);
    expect_env("deep", "-1", 1);
    expect_env("-3", "-1", 1);
    expect_env("8x", "-1", 1);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"tags_open_into_stacks", test_tags_open_into_stacks},
        {"stack_stats_through_the_api", test_stack_stats_through_the_api},
        {"resize_keeps_the_stack", test_resize_keeps_the_stack},
        {"reset_keeps_allocation_totals", test_reset_keeps_allocation_totals},
        {"pools_without_the_flag_record_nothing", test_pools_without_the_flag_record_nothing},
        {"depth_and_children", test_depth_and_children},
        {"checked_pool_with_stacks", test_checked_pool_with_stacks},
        {"out_of_memory_changes_nothing", test_out_of_memory_changes_nothing},
        {"threads_share_a_stack_pool", test_threads_share_a_stack_pool},
        {"environment_variable", test_environment_variable},
        {"fork_while_threads_add_stacks", test_fork_while_threads_add_stacks},
    };
    static const tu_child children[] = {
        {"env", child_env},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children, TU_NCASES(children));
}
