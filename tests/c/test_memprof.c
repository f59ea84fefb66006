/* test_memprof.c -- the sampler: its arguments, the law of the number of
   samples per allocation, unbiased estimates, the callback rules, bulk frees
   and resizes of tracked blocks, and threads starting and stopping profiles. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

static int quick_div(void) { return tu_quick() ? 10 : 1; }

/* ------------------------------------------------------------ a tracker */
typedef struct rec {
    size_t   sampled_allocs;   /* alloc callbacks */
    uint64_t samples;          /* sum of k */
    size_t   deallocs;
    size_t   live;             /* tracked now (alloc returned non-NULL, no dealloc yet) */
    int      track;            /* return a user value? */
    size_t   hist[8];          /* k histogram, last bin ">= 7" */
    const char *want_tag;      /* count only this tag in by_tag */
    uint64_t by_tag_samples;
} rec;

static void *rec_alloc(const rp_memprof_allocation *a, void *data)
{
    rec *r = data;
    r->sampled_allocs++;
    r->samples += a->samples;
    r->hist[a->samples < 7 ? a->samples : 7]++;
    if (r->want_tag && strcmp(a->tag, r->want_tag) == 0) r->by_tag_samples += a->samples;
    if (!r->track) return NULL;
    r->live++;
    return r;   /* any non-NULL value */
}

static void rec_dealloc(void *user, void *data)
{
    rec *r = data;
    CHECK(user == r);
    r->deallocs++;
    r->live--;
}

static rp_memprof *start(double rate, uint64_t seed, rec *r, size_t stack)
{
    rp_memprof_params p = { .rate = rate, .callstack_size = stack, .seed = seed,
                            .tracker = { rec_alloc, rec_dealloc, r } };
    rp_memprof *prof = NULL;
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    CHECK(prof != NULL && rp_memprof_running() == prof);
    return prof;
}

static void finish(rp_memprof *prof)
{
    CHECK_INT(rp_memprof_stop(), 0);
    CHECK_INT(rp_memprof_discard(prof), 0);
    CHECK(rp_memprof_running() == NULL);
}

/* ------------------------------------------------------------ cases */
static void test_bad_arguments(void)
{
    rec r = { 0 };
    rp_memprof *prof = NULL;
    rp_memprof_params p = { .rate = 0.0, .tracker = { rec_alloc, rec_dealloc, &r } };
    const double bad[] = { 0.0, -0.5, 1.5, NAN, INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p.rate = bad[i];
        CHECK_INT(rp_memprof_start(&p, &prof), RP_EINVAL);
    }
    p.rate = 0.5;
    p.callstack_size = RP_MEMPROF_MAX_STACK + 1;
    CHECK_INT(rp_memprof_start(&p, &prof), RP_EINVAL);
    CHECK_INT(rp_memprof_start(NULL, &prof), RP_EINVAL);
    CHECK_INT(rp_memprof_start(&p, NULL), RP_EINVAL);
    CHECK(rp_memprof_running() == NULL);
    CHECK_INT(rp_memprof_stop(), RP_ENOTFOUND);
    CHECK_INT(rp_memprof_discard(NULL), RP_EINVAL);

    prof = start(0.5, 1, &r, 0);
    p.callstack_size = 0;
    rp_memprof *other = NULL;
    CHECK_INT(rp_memprof_start(&p, &other), RP_EBUSY);      /* one at a time */
    CHECK(other == NULL);
    CHECK_INT(rp_memprof_discard(prof), RP_EBUSY);          /* still running */
    finish(prof);
}

/* rate 1: every byte is a sample, so k = n exactly, every block is offered. */
static void test_rate_one_counts_every_byte(void)
{
    rp_pool *pool = tu_pool("rate1");
    rec r = { .track = 1 };
    rp_memprof *prof = start(1.0, 7, &r, 0);
    void *a = rp_alloc(pool, 5, "a");
    void *b = rp_calloc(pool, 3, 4, "b");
    char *s = rp_strdup(pool, "hello", "s");
    void *z = rp_alloc(pool, 0, "z");            /* no byte: never sampled */
    CHECK_EQ(r.sampled_allocs, 3);
    CHECK_EQ(r.samples, 5 + 12 + 6);
    CHECK_EQ(rp_memprof_tracked(prof), 3);
    rp_free(a);
    CHECK_EQ(r.deallocs, 1);
    rp_free(z);
    CHECK_EQ(r.deallocs, 1);
    CHECK_INT(rp_memprof_stop(), 0);
    rp_free(b);                                   /* stopped, not discarded: still tracked */
    CHECK_EQ(r.deallocs, 2);
    CHECK_INT(rp_memprof_discard(prof), 0);       /* s forgotten without a callback */
    rp_free(s);
    CHECK_EQ(r.deallocs, 2);
    tu_end_pool(pool);
}

/* The number of samples per allocation is Binomial(n, rate): chi-square. */
static double binom_pmf(unsigned n, double p, unsigned k)
{
    double v = 1.0;
    for (unsigned i = 0; i < n; i++) v *= 1.0 - p;          /* P(0) */
    for (unsigned i = 0; i < k; i++) v *= (double)(n - i) / (i + 1) * p / (1.0 - p);
    return v;
}

static double absd(double x) { return x < 0 ? -x : x; }

static void test_samples_per_allocation_are_binomial(void)
{
    const unsigned n = 1000;
    const double rate = 1e-3;
    const size_t allocs = 200000 / (size_t)quick_div();
    rp_pool *pool = tu_pool("chi2");
    rec r = { 0 };
    rp_memprof *prof = start(rate, 12345, &r, 0);
    for (size_t i = 0; i < allocs; i++) rp_free(rp_alloc(pool, n, "x"));
    finish(prof);
    size_t obs[5] = { allocs - r.sampled_allocs, r.hist[1], r.hist[2], r.hist[3], 0 };
    for (int k = 4; k < 8; k++) obs[4] += r.hist[k];
    double chi2 = 0, tail = 1.0;
    for (unsigned k = 0; k < 5; k++) {
        double p = k < 4 ? binom_pmf(n, rate, k) : tail;
        if (k < 4) tail -= p;
        double e = p * (double)allocs;
        chi2 += ((double)obs[k] - e) * ((double)obs[k] - e) / e;
    }
    /* 4 degrees of freedom: P(chi2 > 18.47) = 0.001 */
    if (!(chi2 < 18.47))
        tu_fail(__FILE__, __LINE__, "chi2 %.2f over bins %zu %zu %zu %zu %zu", chi2, obs[0],
                obs[1], obs[2], obs[3], obs[4]);
    tu_end_pool(pool);
}

/* Pools draw from streams of their own: allocations spread over three
   thread-safe pools (one of them checked) still get Binomial(n, rate) samples,
   and two pools given the same allocations sample independently of each
   other (equal streams would agree on every allocation). */
static rp_pool *pair_pool[3];
static unsigned char *pair_sampled[3];
static size_t pair_at[3];
static void *pools_alloc(const rp_memprof_allocation *a, void *data)
{
    rec *r = data;
    r->sampled_allocs++;
    r->hist[a->samples < 7 ? a->samples : 7]++;
    for (int i = 0; i < 3; i++)
        if (a->pool == pair_pool[i]) pair_sampled[i][pair_at[i]] = 1;
    return NULL;
}

static void test_pools_sample_independently(void)
{
    const unsigned n = 1000;
    const double rate = 1e-3;
    const size_t per_pool = 60000 / (size_t)quick_div();
    pair_pool[0] = tu_pool("streams-a");
    pair_pool[1] = tu_pool("streams-b");
    pair_pool[2] = tu_pool_ex("streams-checked", RP_POOL_CHECKED);
    for (int i = 0; i < 3; i++) {
        pair_sampled[i] = calloc(per_pool, 1);
        CHECK(pair_sampled[i] != NULL);
        pair_at[i] = 0;
    }
    rec r = { 0 };
    rp_memprof_params p = { .rate = rate, .seed = 424242,
                            .tracker = { pools_alloc, NULL, &r } };
    rp_memprof *prof = NULL;
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    for (size_t j = 0; j < per_pool; j++)
        for (int i = 0; i < 3; i++) {
            rp_free(rp_alloc(pair_pool[i], n, "x"));
            pair_at[i]++;
        }
    finish(prof);
    const size_t allocs = 3 * per_pool;
    size_t obs[5] = { allocs - r.sampled_allocs, r.hist[1], r.hist[2], r.hist[3], 0 };
    for (int k = 4; k < 8; k++) obs[4] += r.hist[k];
    double chi2 = 0, tail = 1.0;
    for (unsigned k = 0; k < 5; k++) {
        double pk = k < 4 ? binom_pmf(n, rate, k) : tail;
        if (k < 4) tail -= pk;
        double e = pk * (double)allocs;
        chi2 += ((double)obs[k] - e) * ((double)obs[k] - e) / e;
    }
    if (!(chi2 < 18.47))   /* 4 degrees of freedom, P = 0.001 */
        tu_fail(__FILE__, __LINE__, "chi2 %.2f over bins %zu %zu %zu %zu %zu", chi2, obs[0],
                obs[1], obs[2], obs[3], obs[4]);
    /* the same sampled-or-not for the j-th allocation of a and of b:
       probability q^2 + (1 - q)^2 when independent, q = P(k >= 1) */
    double q = 1.0 - binom_pmf(n, rate, 0), want = q * q + (1 - q) * (1 - q);
    for (int i = 1; i < 3; i++) {
        size_t same = 0;
        for (size_t j = 0; j < per_pool; j++) same += pair_sampled[0][j] == pair_sampled[i][j];
        double f = (double)same / (double)per_pool;
        double var = want * (1 - want) / (double)per_pool;
        if ((f - want) * (f - want) > 36 * var)   /* 6 standard deviations */
            tu_fail(__FILE__, __LINE__, "pools a and %d agree on %.4f of allocations, "
                    "independent streams: %.4f", i, f, want);
    }
    for (int i = 0; i < 3; i++) {
        free(pair_sampled[i]);
        tu_end_pool(pair_pool[i]);
    }
}

/* k / rate is unbiased per site: the mean over many seeds is within 2% of
   the truth, and single runs of sites of 8 MB are within 5%. */
static void test_estimates_are_unbiased(void)
{
    const double rate = 1e-3;
    static const struct { const char *tag; size_t size, count; } site[] = {
        { "small", 48, 8u << 20 >> 5 },     /* 48 B x 262144 = 12 MiB */
        { "medium", 1000, 8400 },           /* 8.4 MB */
        { "large", 100000, 84 },            /* 8.4 MB */
    };
    const int seeds = 200 / quick_div();
    double mean[3] = { 0 };
    rp_pool *pool = tu_pool("unbiased");
    for (int s = 1; s <= seeds; s++) {
        for (int i = 0; i < 3; i++) {
            rec r = { .want_tag = site[i].tag };
            rp_memprof *prof = start(rate, (uint64_t)s * 1000003u + (uint64_t)i, &r, 0);
            for (size_t j = 0; j < site[i].count / (size_t)(tu_quick() ? 4 : 1); j++)
                rp_free(rp_alloc(pool, site[i].size, site[i].tag));
            finish(prof);
            double truth = (double)site[i].size * (double)(site[i].count / (tu_quick() ? 4 : 1));
            double est = (double)r.by_tag_samples / rate;
            mean[i] += est / truth / seeds;
            if (!tu_quick() && absd(est / truth - 1) > 0.05)
                tu_fail(__FILE__, __LINE__, "seed %d site %s: estimate %.0f, truth %.0f", s,
                        site[i].tag, est, truth);
        }
    }
    for (int i = 0; i < 3; i++)
        if (absd(mean[i] - 1) > (tu_quick() ? 0.05 : 0.02))
            tu_fail(__FILE__, __LINE__, "site %s: mean estimate / truth = %.4f", site[i].tag, mean[i]);
    tu_end_pool(pool);
}

/* The same seed gives the same samples. */
static void test_fixed_seed_reproduces(void)
{
    rp_pool *pool = tu_pool("seed");
    uint64_t first = 0;
    for (int run = 0; run < 2; run++) {
        rec r = { 0 };
        rp_memprof *prof = start(1e-2, 99, &r, 0);
        for (size_t i = 0; i < 5000; i++) rp_free(rp_alloc(pool, 1 + i % 300, "x"));
        finish(prof);
        if (run == 0) first = r.samples;
        else CHECK_EQ(r.samples, first);
        CHECK(r.samples > 0);
    }
    tu_end_pool(pool);
}

/* ---- callbacks that allocate, stop, restart */
static rp_pool *cb_pool;
static rp_memprof *cb_restarted;
static int cb_mode;   /* 0 allocate inside, 1 stop inside, 2 stop and restart inside */
static rec cb_rec;

static void *cb_alloc(const rp_memprof_allocation *a, void *data)
{
    (void)a;
    rec *r = data;
    r->sampled_allocs++;
    /* sampling is off on this thread: these are not offered */
    void *inner = rp_alloc(cb_pool, 64, "inside");
    rp_free(rp_resize(cb_pool, inner, 128));
    if (cb_mode >= 1) CHECK_INT(rp_memprof_stop(), 0);
    if (cb_mode == 2) {
        rp_memprof_params p = { .rate = 1.0, .seed = 5,
                                .tracker = { rec_alloc, rec_dealloc, &cb_rec } };
        CHECK_INT(rp_memprof_start(&p, &cb_restarted), 0);
    }
    r->live++;
    return r;
}

static void test_callbacks_allocate_and_stop(void)
{
    cb_pool = tu_pool("callbacks");
    rec r = { 0 };
    rp_memprof_params p = { .rate = 1.0, .seed = 3, .tracker = { cb_alloc, rec_dealloc, &r } };
    rp_memprof *prof = NULL;

    cb_mode = 0;
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    void *a = rp_alloc(cb_pool, 10, "outer");
    CHECK_EQ(r.sampled_allocs, 1);              /* the inner allocations were not offered */
    CHECK_EQ(rp_memprof_tracked(prof), 1);
    rp_free(a);
    CHECK_EQ(r.deallocs, 1);
    finish(prof);

    /* stopped while the callback ran: the sample is discarded, its user
       value handed back to dealloc at once */
    cb_mode = 1;
    r = (rec){ 0 };
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    a = rp_alloc(cb_pool, 10, "outer");
    CHECK_EQ(r.sampled_allocs, 1);
    CHECK_EQ(r.deallocs, 1);
    CHECK_EQ(rp_memprof_tracked(prof), 0);
    rp_free(a);
    CHECK_EQ(r.deallocs, 1);
    CHECK_INT(rp_memprof_discard(prof), 0);

    /* stopped and restarted inside: the old profile's sample does not go
       into the new profile */
    cb_mode = 2;
    r = (rec){ 0 };
    cb_rec = (rec){ .track = 1 };
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    a = rp_alloc(cb_pool, 10, "outer");
    CHECK_EQ(r.deallocs, 1);
    CHECK_EQ(rp_memprof_tracked(prof), 0);
    CHECK_EQ(rp_memprof_tracked(cb_restarted), 0);
    CHECK_INT(rp_memprof_discard(prof), 0);
    void *b = rp_alloc(cb_pool, 4, "after");    /* the new profile samples */
    CHECK_EQ(cb_rec.sampled_allocs, 1);
    CHECK_EQ(rp_memprof_tracked(cb_restarted), 1);
    rp_free(a);
    rp_free(b);
    CHECK_EQ(cb_rec.deallocs, 1);
    finish(cb_restarted);
    tu_end_pool(cb_pool);
}

/* Destroy and reset call dealloc for the tracked blocks only. */
static void test_bulk_free_deallocs_tracked_blocks(void)
{
    rp_pool *pool = tu_pool("bulk");
    rp_pool *child = rp_pool_create_child_ex(pool, "child", &(rp_pool_options){ .flags = tu_backing });
    rec r = { .track = 1 };
    rp_memprof *prof = start(1.0, 11, &r, 0);
    for (int i = 0; i < 100; i++) {
        (void)rp_alloc(pool, 16 + (size_t)i, "p");
        (void)rp_alloc(child, 8, "c");
        (void)rp_alloc_aligned(pool, 256, 40, "aligned");
    }
    CHECK_EQ(r.live, 300);
    CHECK_INT(rp_pool_reset(pool), 0);           /* the child goes with it */
    CHECK_EQ(r.live, 0);
    CHECK_EQ(r.deallocs, 300);
    CHECK_EQ(rp_memprof_tracked(prof), 0);
    (void)rp_alloc(pool, 30, "again");
    CHECK_EQ(r.live, 1);
    finish(prof);
    rp_pool *other = tu_pool("after");
    prof = start(1.0, 12, &r, 0);
    (void)rp_alloc(other, 3, "x");
    CHECK_EQ(r.live, 2);
    rp_pool_destroy(other);
    CHECK_EQ(r.live, 1);
    finish(prof);
    CHECK_INT(rp_pool_reset(pool), 0);
    tu_end_pool(pool);
}

/* A resize of a tracked block is a dealloc, then a fresh sample. */
static void test_resize_is_dealloc_then_alloc(void)
{
    rp_pool *pool = tu_pool("resize");
    rec r = { .track = 1 };
    rp_memprof *prof = start(1.0, 13, &r, 0);
    char *p = rp_alloc(pool, 10, "grow");
    memset(p, 'x', 10);
    for (size_t n = 20; n < 5000; n *= 2) {
        p = rp_resize(pool, p, n);
        CHECK(p[0] == 'x' && p[9] == 'x');
    }
    CHECK_EQ(r.sampled_allocs, 9);           /* the alloc and 8 resizes */
    CHECK_EQ(r.deallocs, 8);
    CHECK_EQ(r.live, 1);
    CHECK_EQ(rp_memprof_tracked(prof), 1);
    CHECK(rp_resize_noexc(pool, p, RP_MAX_SIZE + 1) == NULL);   /* fails: nothing changes */
    CHECK_EQ(r.live, 1);
    rp_free(p);
    CHECK_EQ(r.live, 0);
    finish(prof);
    tu_end_pool(pool);
}

/* A block allocated before the profile started is not tracked; a growth
   that moves it to another class (the fast move of an unchecked pool, both
   with and without the lock) hands the sampler the moved block as a fresh
   allocation, its contents already copied. */
static void test_moved_untracked_block_is_sampled_with_its_contents(void)
{
    for (int unsync = 0; unsync < 2; unsync++) {
        rp_pool *pool = tu_pool_ex(unsync ? "move-unsync" : "move", unsync ? RP_POOL_UNSYNC : 0);
        unsigned char *p = rp_alloc(pool, 40, "grow");
        void *after = rp_alloc(pool, 40, "after");   /* p is not the block carved last */
        tu_fill(p, 40, 21);
        rec r = { .track = 1 };
        rp_memprof *prof = start(1.0, 14, &r, 0);
        /* an unsynchronised pool joins the profile within 1 MiB */
        rp_free(rp_alloc(pool, (size_t)1 << 20, "join"));
        CHECK_EQ(r.sampled_allocs, 1);
        p = rp_resize(pool, p, 200);
        CHECK(tu_intact(p, 40, 21));
        CHECK_EQ(r.sampled_allocs, 2);
        CHECK_EQ(r.deallocs, 1);
        CHECK_EQ(r.live, 1);
        CHECK_COUNTS(pool, 2, 240);
        rp_free(p);
        CHECK_EQ(r.live, 0);
        rp_free(after);
        finish(prof);
        tu_end_pool(pool);
    }
}

/* ---- call stacks */
static void *stack_top;

static void *stack_alloc(const rp_memprof_allocation *a, void *data)
{
    (void)data;
    CHECK(a->callstack_len >= 1 && a->callstack_len <= 8);
    stack_top = a->callstack[0];
    for (size_t i = 0; i < a->callstack_len && i < 4; i++)
        if ((uintptr_t)a->callstack[i] - (uintptr_t)data < 256) stack_top = a->callstack[i];
    return NULL;
}

__attribute__((noinline)) static void *allocate_here(rp_pool *pool)
{
    void *p = rp_alloc(pool, 100, "stack");
    __asm__ volatile("" ::: "memory");
    return p;
}

static void test_callstack_starts_at_the_caller(void)
{
    rp_pool *pool = tu_pool("stacks");
    rp_memprof_params p = { .rate = 1.0, .callstack_size = 8, .seed = 1,
                            .tracker = { stack_alloc, NULL, (void *)allocate_here } };
    rp_memprof *prof = NULL;
    CHECK_INT(rp_memprof_start(&p, &prof), 0);
    rp_free(allocate_here(pool));
    finish(prof);
    uintptr_t off = (uintptr_t)stack_top - (uintptr_t)allocate_here;
    CHECK(off < 256);                       /* a return address inside allocate_here */
    Dl_info info;
    if (dladdr((void *)rp_alloc, &info) && info.dli_fname && strstr(info.dli_fname, "libringpool")) {
        /* shared library: every ringpool frame is left out */
        rp_memprof_params q = p;
        q.tracker.alloc = stack_alloc;
        CHECK_INT(rp_memprof_start(&q, &prof), 0);
        stack_top = NULL;
        rp_free(allocate_here(pool));
        finish(prof);
        CHECK((uintptr_t)stack_top - (uintptr_t)allocate_here < 256);
    }
    tu_end_pool(pool);
}

/* ---- threads: allocators while another thread starts, stops, restarts */
static atomic_int stop_threads;
static atomic_size_t thread_offers, thread_deallocs;

static void *th_alloc(const rp_memprof_allocation *a, void *data)
{
    (void)data;
    void *inner = rp_alloc(a->pool, 8, "from-callback");
    rp_free(inner);
    atomic_fetch_add(&thread_offers, 1);
    return (void *)1;
}
static void th_dealloc(void *user, void *data)
{
    (void)data;
    CHECK(user == (void *)1);
    atomic_fetch_add(&thread_deallocs, 1);
}

static void *th_worker(void *arg)
{
    rp_pool *pool = arg;
    void *keep[64] = { 0 };
    for (unsigned i = 0; !atomic_load(&stop_threads); i++) {
        unsigned s = i % 64;
        rp_free(keep[s]);
        keep[s] = rp_alloc(pool, 16 + i % 500, "worker");
        if (i % 7 == 0) keep[s] = rp_resize(pool, keep[s], 600);
    }
    for (int s = 0; s < 64; s++) rp_free(keep[s]);
    return NULL;
}

static void test_threads_start_stop_restart(void)
{
    rp_pool *shared = tu_pool("shared");
    rp_pool *own[4];
    pthread_t th[4];
    atomic_store(&stop_threads, 0);
    for (int i = 0; i < 4; i++) {
        own[i] = rp_pool_create_ex("own", &(rp_pool_options){ .flags = tu_backing | (i % 2 ? RP_POOL_UNSYNC : 0) });
        CHECK(pthread_create(&th[i], NULL, th_worker, i % 2 ? own[i] : shared) == 0);
    }
    const int rounds = getenv("RP_TEST_TSAN") ? 40 : 300 / quick_div();
    /* on a loaded machine the workers may not run inside any of the short
       profiling windows: go on (up to 100 times as many rounds) until a
       sample has been offered */
    for (int r = 0; r < rounds || (atomic_load(&thread_offers) == 0 && r < 100 * rounds); r++) {
        rp_memprof_params p = { .rate = 1e-3, .callstack_size = r % 3 ? 0 : 4, .seed = (uint64_t)r + 1,
                                .tracker = { th_alloc, th_dealloc, NULL } };
        rp_memprof *prof = NULL;
        CHECK_INT(rp_memprof_start(&p, &prof), 0);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
        CHECK_INT(rp_memprof_stop(), 0);
        CHECK_INT(rp_memprof_discard(prof), 0);
    }
    atomic_store(&stop_threads, 1);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(th[i], NULL) == 0);
    for (int i = 0; i < 4; i++) {
        if (i % 2) {
            CHECK_EQ(rp_pool_outstanding(own[i], NULL), 0);
            rp_pool_destroy(own[i]);
        } else {
            rp_pool_destroy(own[i]);
        }
    }
    CHECK(atomic_load(&thread_offers) > 0);
    CHECK(atomic_load(&thread_deallocs) <= atomic_load(&thread_offers));
    tu_end_pool(shared);
}

/* ---- starts while another thread tags and destroys pools: rp_memprof_start
   reads the flags of every live pool without its lock, and a new tag
   (RPI_POOL_UNLISTED) or a destroy (RPI_POOL_TORN) set a bit of a pool's
   flags under its lock: a data race that TSan reported (test-c-tsan, and
   test-py-tsan through the bindings); those bits are apart now. */
static atomic_uint tag_rounds;

static void *tag_worker(void *arg)
{
    rp_pool **pools = arg;
    char tag[32];
    for (unsigned i = 0; !atomic_load(&stop_threads); i++) {
        atomic_store(&tag_rounds, i);
        snprintf(tag, sizeof tag, "tag-%u", i % 4096);
        CHECK(rp_pool_intern_tag(pools[i % 16], tag) != NULL);
        rp_pool *tmp = rp_pool_create_ex("tmp", &(rp_pool_options){ .flags = tu_backing });
        rp_free(rp_alloc(tmp, 8, "t"));
        rp_pool_destroy(tmp);
    }
    return NULL;
}

static void test_start_while_pools_are_tagged_and_destroyed(void)
{
    rp_pool *pools[16];
    for (int i = 0; i < 16; i++) pools[i] = tu_pool("tagged");
    pthread_t th;
    atomic_store(&stop_threads, 0);
    atomic_store(&tag_rounds, 0);
    CHECK(pthread_create(&th, NULL, tag_worker, pools) == 0);
    /* the starts overlap the worker's rounds, however the threads are run */
    for (int r = 0; r < 200 || atomic_load(&tag_rounds) < 2000; r++) {
        rp_memprof_params p = { .rate = 1e-3, .seed = (uint64_t)r + 1 };
        rp_memprof *prof = NULL;
        CHECK_INT(rp_memprof_start(&p, &prof), 0);
        CHECK_INT(rp_memprof_stop(), 0);
        CHECK_INT(rp_memprof_discard(prof), 0);
    }
    atomic_store(&stop_threads, 1);
    CHECK(pthread_join(th, NULL) == 0);
    for (int i = 0; i < 16; i++) tu_end_pool(pools[i]);
}

/* rp_calloc of sampled blocks (rate 1: every call a sample) in pools with
   dirty freed blocks of the size: zero, offered, and counted as an rp_alloc
   (headerless and header sizes, unsynchronised and thread-safe pools). */
static void test_sampled_calloc_is_zero(void)
{
    static const size_t sizes[] = {12, 100, 3000};
    for (int unsync = 0; unsync < 2; unsync++) {
        for (size_t k = 0; k < 3; k++) {
            size_t n = sizes[k];
            rp_pool *pool = tu_pool_ex("calloc1", unsync ? RP_POOL_UNSYNC : 0);
            rec r = { .track = 1 };
            rp_memprof *prof = start(1.0, 3, &r, 0);
            unsigned char *d = rp_alloc(pool, n, "d");
            memset(d, 0x5a, n);
            rp_free(d);
            unsigned char *z = rp_calloc(pool, n, 1, "d");   /* the tag cached: the fast path */
            CHECK(z != NULL);
            for (size_t j = 0; j < n; j++) CHECK(z[j] == 0);
            CHECK_EQ(r.sampled_allocs, 2);
            CHECK_EQ(r.samples, 2 * n);
            CHECK_EQ(tu_info(pool).bytes, n);
            rp_free(z);
            CHECK_EQ(r.deallocs, 2);
            finish(prof);
            tu_end_pool(pool);
        }
    }
}

/* The smallest rates: ln(1 - r) of the smallest subnormal rate (2^-1074)
   came out as +0.0 (-r / (2 - r) rounds to -0.0, and the series summed it
   into +0.0), so 1 / ln(1 - r) was +inf, every drawn distance -inf, cast to
   a negative count: the first allocation looped forever. Such a rate now
   samples nothing, as a rate that small should (an alarm makes a hang a
   failure). */
static void test_smallest_rates_sample_nothing(void)
{
    static const double rates[] = { 0x1p-1074, 0x3p-1074, 0x1p-1060, 0x1p-1022, 1e-300 };
    rp_pool *pool = tu_pool("tiny-rate");
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++) {
        rec r = { .track = 1 };
        rp_memprof *prof = start(rates[i], 7, &r, 0);
        alarm(60);
        for (int k = 0; k < 1000; k++) rp_free(rp_alloc(pool, (size_t)k * 64 + 1, "t"));
        void *big = rp_alloc(pool, (size_t)1 << 20, "big");
        rp_free(big);
        alarm(0);
        CHECK_EQ(r.sampled_allocs, 0);
        finish(prof);
    }
    tu_end_pool(pool);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"bad_arguments", test_bad_arguments},
        {"smallest_rates_sample_nothing", test_smallest_rates_sample_nothing},
        {"rate_one_counts_every_byte", test_rate_one_counts_every_byte},
        {"sampled_calloc_is_zero", test_sampled_calloc_is_zero},
        {"samples_per_allocation_are_binomial", test_samples_per_allocation_are_binomial},
        {"pools_sample_independently", test_pools_sample_independently},
        {"estimates_are_unbiased", test_estimates_are_unbiased},
        {"fixed_seed_reproduces", test_fixed_seed_reproduces},
        {"callbacks_allocate_and_stop", test_callbacks_allocate_and_stop},
        {"bulk_free_deallocs_tracked_blocks", test_bulk_free_deallocs_tracked_blocks},
        {"resize_is_dealloc_then_alloc", test_resize_is_dealloc_then_alloc},
        {"moved_untracked_block_is_sampled_with_its_contents",
         test_moved_untracked_block_is_sampled_with_its_contents},
        {"callstack_starts_at_the_caller", test_callstack_starts_at_the_caller},
        {"threads_start_stop_restart", test_threads_start_stop_restart},
        {"start_while_pools_are_tagged_and_destroyed",
         test_start_while_pools_are_tagged_and_destroyed},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
