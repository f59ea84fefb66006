/*
 * memprof.c -- sampled allocation tracking with callbacks (OCaml Memprof's
 * model, for ringpool pools). docs/memprof.md states the contract.
 *
 * Sampling
 * --------
 * Every allocated byte is sampled independently with probability r (the
 * rate). Rather than a coin per byte, each pool draws the distance G to its
 * next sampled byte: P(G = g) = (1 - r)^(g-1) r, g >= 1, the geometric law of
 * the first success in Bernoulli(r) trials. With U uniform on (0, 1],
 *     G = 1 + floor(ln U / ln(1 - r))
 * has exactly that law: G > g  <=>  ln U / ln(1 - r) >= g  <=>  U <= (1 - r)^g,
 * which has probability (1 - r)^g. An allocation of n bytes that contains the
 * next sampled byte takes one sample there and draws again from the byte
 * after it; because the geometric law is memoryless, the number of samples k
 * that fall inside n bytes is Binomial(n, r), exactly as with a coin per byte,
 * and what happens in one allocation is independent of the others.
 *
 * Estimates: E[k] = n r, so k / r is an unbiased estimate of n for every n,
 * with variance n (1 - r) / r; summed over the blocks of a site, the estimate
 * of its bytes B has variance B (1 - r) / r (relative error about
 * 1 / sqrt(B r): 3% for 1 MB at r = 1e-3).
 *
 * Check points: a draw larger than RPI_MEMPROF_CHECK is cut at that many
 * bytes and marked "not real". Reaching a check point means only that the
 * bytes before it were not sampled; the pool then looks at the global
 * profile and draws again (memorylessness makes the cut invisible in the
 * law). With no profile running every point is a check point, spaced
 * RPI_MEMPROF_IDLE_CHECK bytes apart, so the cost of the idle sampler is one
 * short call per MiB a pool hands out. Starting a profile resets the
 * countdown of every thread-safe pool whose lock is free; the others join
 * within RPI_MEMPROF_IDLE_CHECK bytes.
 *
 * Why per pool and not per thread: a pool's allocations are already a
 * sequence (under its lock, or one thread at a time for unsynchronised
 * pools), the countdown sits beside the counters the fast path updates
 * anyway, and the sampling law is per byte whatever the stream: a byte is
 * sampled with probability r independently of every other byte, whichever
 * thread allocates it.
 *
 * No global lock per sample: when a pool first meets a profile (its
 * generation changed) it copies the rate and the tracker under the
 * sampler's lock and takes a random stream of its own (splitmix64, seeded
 * from the profile's seed and the number of pools that joined before it);
 * later draws and offers use that copy under the pool's lock only. The
 * sampler's lock is taken again only when a tracker keeps a block (the map
 * of tracked blocks), where the profile is checked to be still the same.
 *
 * Rules (from OCaml's experience): callbacks run on the allocating thread
 * with sampling off on that thread and no ringpool lock held; a sample whose
 * profile was stopped or replaced while its alloc callback ran is discarded;
 * threads started later join the running profile.
 */
#include "memprof.h"
#include "geometric.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RPI_MEMPROF_CHECK ((int64_t)64 << 10)
#define RPI_MEMPROF_IDLE_CHECK ((int64_t)1 << 20)   /* no profile running */
#define RPI_MEMPROF_IDLE  (INT64_MAX / 4)

_Thread_local rpi_memprof_thread rpi_memprof_tls;
atomic_size_t rpi_memprof_entries;

struct rp_memprof {
    rp_memprof_params params;
    uint64_t          gen;        /* generation while it runs */
    double            inv_log;    /* 1 / ln(1 - rate) (negative; -0.0 for rate 1) */
    uint64_t          seed;
    uint64_t          streams;    /* pools that joined it (mp_lock) */
    size_t            tracked;    /* entries (mp_lock) */
    bool              running;
};

typedef struct mp_entry {
    rp_memprof      *profile;
    rp_pool         *pool;
    void            *block;
    void            *user;
    void           (*dealloc)(void *user, void *data);
    void            *data;
    struct mp_entry *next;        /* collection lists */
} mp_entry;

static rpi_lock    mp_lock;
rpi_lock *rpi_memprof_lockp(void) { return &mp_lock; }
static rpi_ptrmap  mp_map;                 /* block -> mp_entry (mp_lock) */
static rp_memprof *mp_running;             /* mp_lock */
static atomic_uint_least64_t mp_gen = 1;   /* changes at every start and stop */
static atomic_bool mp_active;              /* a profile runs (a hint; mp_lock decides) */

static inline bool mp_running_hint(void)
{
    return atomic_load_explicit(&mp_active, memory_order_acquire);
}

/* ----------------------------------------------------------- the stack */
typedef struct own_object { const void *addr; uintptr_t lo, hi; bool main_program; } own_object;

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    own_object *o = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if ((uintptr_t)o->addr >= lo && (uintptr_t)o->addr < hi) {
            o->lo = lo;
            o->hi = hi;
            o->main_program = info->dlpi_name == NULL || info->dlpi_name[0] == '\0';
            return 1;
        }
    }
    return 0;
}

/* The caller's stack, innermost first, without ringpool's own frames: those
   inside the library's shared object, or in a static link (where the library
   is part of the program) the frames of this file and of the entry point. */
static size_t capture(void **out, size_t cap)
{
    void *buf[RP_MEMPROF_MAX_STACK + 8];
    int n = backtrace(buf, (int)(cap + 8));
    own_object own = { .addr = (const void *)rpi_memprof_slow };
    dl_iterate_phdr(find_object, &own);
    int first = 1;   /* buf[0] is capture()'s caller in this file */
    if (own.hi && !own.main_program) {
        while (first < n && (uintptr_t)buf[first] >= own.lo && (uintptr_t)buf[first] < own.hi)
            first++;
    } else {
        first = n > 3 ? 3 : n;   /* rpi_memprof_slow, the rp_ entry point */
    }
    size_t k = 0;
    for (int i = first; i < n && k < cap; i++) out[k++] = buf[i];
    return k;
}

/* ------------------------------------------------------------ slow path */
static void flag_sampled(void *p)
{
    rpi_hdr *h = rpi_hdr_of(p);
    if (!(h->word & RPI_F_CHECKED)) h->word |= RPI_F_SAMPLED;
}

/* The pool looks at the profile of generation gen (pool lock held): it
   copies what drawing and offering need, and takes a random stream of its
   own, so that its later draws need no global lock. */
static __attribute__((noinline)) void join(rp_pool *pool, uint64_t gen)
{
    rpi_memprof_pool *m = &pool->mp;
    m->real = false;
    if (!mp_running_hint()) {
        m->gen = gen;
        m->profile = NULL;
        return;
    }
    rpi_lock_acquire(&mp_lock);
    rp_memprof *p = mp_running;
    if (p && p->gen == gen) {
        m->gen = gen;
        m->profile = p;
        m->inv_log = p->inv_log;
        m->tracker = p->params.tracker;
        m->stack = p->params.callstack_size;
        /* streams in the order pools join: reproducible for a fixed seed */
        uint64_t x = p->seed ^ (UINT64_C(0x632BE59BD9B4E019) * ++p->streams);
        m->rng = rpg_splitmix(&x);
    } else {
        m->gen = 0;                 /* stopped or replaced meanwhile: look again */
        m->profile = NULL;
    }
    rpi_lock_release(&mp_lock);
}

void rpi_memprof_draw(rp_pool *pool, rpi_memprof_sample *s)
{
    /* mp_left <= 0: the point lies at byte size + mp_left (1-based) of the
       block just counted; for a pool that never synchronised (mp_left
       started at 0), before it. Bytes after the point: */
    int64_t rest = -pool->mp_left;
    uint64_t gen = atomic_load_explicit(&mp_gen, memory_order_acquire);
    rpi_memprof_pool *m = &pool->mp;
    size_t k = 0;
    s->k = 0;
    if (RPI_LIKELY(m->gen == gen)) {
        k = m->real;
    } else {
        /* another profile (or none) since the pool last looked: the point was
           a check point, and the pool's next draw belongs to the new state */
        join(pool, gen);
    }
    if (!m->profile) {
        m->real = false;
        pool->mp_left = m->gen ? RPI_MEMPROF_IDLE_CHECK : RPI_MEMPROF_CHECK;
        return;
    }
    for (;;) {
        int64_t g = rpg_draw1(&m->rng, m->inv_log);
        bool real = g <= RPI_MEMPROF_CHECK;
        int64_t step = real ? g : RPI_MEMPROF_CHECK;
        if (step <= rest) {
            rest -= step;
            k += real;
            continue;
        }
        pool->mp_left = step - rest;
        m->real = real;
        break;
    }
    if (k && !rpi_memprof_tls.busy) {        /* no samples inside callbacks */
        s->k = k;
        s->gen = gen;
        s->profile = m->profile;
        s->stack = m->stack;
        s->tracker = m->tracker;
    }
}

void *rpi_memprof_slow(rp_pool *pool, rpi_hdr *h, size_t size, bool checked)
{
    rpi_memprof_sample s;
    rpi_memprof_draw(pool, &s);
    rpi_unlock_both(pool, checked);
    if (RPI_LIKELY(!s.k)) return rpi_payload(h);
    return rpi_memprof_offer(pool, rpi_payload(h), size, &s);
}

/* The callback runs with sampling off on this thread. */
__attribute__((noinline)) void *rpi_memprof_offer(rp_pool *pool, void *p, size_t size,
                                                  const rpi_memprof_sample *s)
{
    rpi_memprof_thread *ts = &rpi_memprof_tls;
    ts->busy = true;
    void *stack[RP_MEMPROF_MAX_STACK];
    size_t depth = s->stack ? capture(stack, s->stack) : 0;
    rp_memprof_allocation a = {
        .block = p, .size = size, .samples = s->k,
        .tag = rpi_hdr_of(p)->origin->name, .pool = pool->front ? pool->front : pool,
        .callstack = stack, .callstack_len = depth,
    };
    void *user = s->tracker.alloc ? s->tracker.alloc(&a, s->tracker.data) : NULL;
    if (user) {
        mp_entry *e = rpi_sys_malloc(sizeof *e);
        bool kept = false;
        rpi_pool_lock(pool);
        rpi_lock_acquire(&mp_lock);
        if (e && mp_running == s->profile && s->profile->gen == s->gen &&
            rpi_ptrmap_put(&mp_map, p, e) == 0) {
            *e = (mp_entry){ .profile = s->profile, .pool = pool, .block = p, .user = user,
                             .dealloc = s->tracker.dealloc, .data = s->tracker.data };
            s->profile->tracked++;
            atomic_fetch_add_explicit(&rpi_memprof_entries, 1, memory_order_relaxed);
            flag_sampled(p);
            kept = true;
        }
        rpi_lock_release(&mp_lock);
        rpi_pool_unlock(pool);
        if (!kept) {                       /* profile changed meanwhile, or no memory */
            rpi_sys_free(e);
            if (s->tracker.dealloc) s->tracker.dealloc(user, s->tracker.data);
        }
    }
    ts->busy = false;
    return p;
}

/* -------------------------------------------------------- tracked blocks */
rpi_memprof_pending rpi_memprof_untrack(const void *block)
{
    rpi_memprof_pending pend = { 0 };
    rpi_lock_acquire(&mp_lock);
    mp_entry *e = rpi_ptrmap_del(&mp_map, block);
    if (e) {
        pend.dealloc = e->dealloc;
        pend.user = e->user;
        pend.data = e->data;
        e->profile->tracked--;
        atomic_fetch_sub_explicit(&rpi_memprof_entries, 1, memory_order_relaxed);
    }
    rpi_lock_release(&mp_lock);
    rpi_sys_free(e);
    return pend;
}

void rpi_memprof_run_pending(rpi_memprof_pending pend)
{
    if (!pend.dealloc) return;
    rpi_memprof_thread *ts = &rpi_memprof_tls;
    bool was_busy = ts->busy;
    ts->busy = true;
    pend.dealloc(pend.user, pend.data);
    ts->busy = was_busy;
}

/* Forgets the entries of pool or of profile (O(map size), that is
   O(tracked blocks)), then runs their deallocs if call. Two passes: gather,
   then delete (deleting during the scan of an open-addressing table would
   move entries under it). */
static void drop_entries(rp_pool *pool, rp_memprof *profile, bool call)
{
    if (atomic_load_explicit(&rpi_memprof_entries, memory_order_relaxed) == 0) return;
    rpi_lock_acquire(&mp_lock);
    mp_entry *list = NULL;
    for (size_t i = 0; i < mp_map.cap; i++) {
        mp_entry *e = mp_map.vals[i];
        if (mp_map.keys[i] && e && ((pool && e->pool == pool) || (profile && e->profile == profile))) {
            e->next = list;
            list = e;
        }
    }
    for (mp_entry *e = list; e; e = e->next) {
        rpi_ptrmap_del(&mp_map, e->block);
        e->profile->tracked--;
        atomic_fetch_sub_explicit(&rpi_memprof_entries, 1, memory_order_relaxed);
    }
    rpi_lock_release(&mp_lock);
    while (list) {
        mp_entry *e = list;
        list = e->next;
        if (call) rpi_memprof_run_pending((rpi_memprof_pending){ e->dealloc, e->user, e->data });
        rpi_sys_free(e);
    }
}

void rpi_memprof_release_pool(rp_pool *pool) { drop_entries(pool, NULL, true); }

/* ------------------------------------------------------------- the API */
int rp_memprof_start(const rp_memprof_params *params, rp_memprof **out)
{
    if (!params || !out) return RP_EINVAL;
    double r = params->rate;
    if (!(r > 0.0 && r <= 1.0) || params->callstack_size > RP_MEMPROF_MAX_STACK)
        return RP_EINVAL;
    rp_memprof *p = rpi_sys_calloc(1, sizeof *p);
    if (!p) return RP_ENOMEM;
    p->params = *params;
    p->inv_log = r >= 1.0 ? 0.0 : 1.0 / rpg_ln1m(r);
    uint64_t seed = params->seed;
    const char *env = seed ? NULL : getenv("RINGPOOL_MEMPROF_SEED");
    if (env && *env) {
        char *end;
        seed = strtoull(env, &end, 0);
        if (*end) seed = 0;
    }
    if (!seed) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        seed = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32) ^ (uintptr_t)p;
    }
    p->seed = seed;
    rpi_lock_acquire(&mp_lock);
    if (mp_running) {
        rpi_lock_release(&mp_lock);
        rpi_sys_free(p);
        return RP_EBUSY;
    }
    p->running = true;
    mp_running = p;
    /* the hint before the generation: a pool that sees the new generation
       (acquire) also sees the hint set, and joins */
    atomic_store_explicit(&mp_active, true, memory_order_release);
    p->gen = atomic_fetch_add_explicit(&mp_gen, 1, memory_order_acq_rel) + 1;
    rpi_lock_release(&mp_lock);
    /* Live thread-safe pools whose lock is free look at the new profile at
       their next allocation; the others within RPI_MEMPROF_IDLE_CHECK bytes. */
    rpi_live_lock();
    for (rp_pool *q = rpi_live_head; q; q = q->live_next) {
        if (q->flags & RP_POOL_UNSYNC) continue;
        /* a checked pool's lock is the registry's */
        rpi_lock *ql = (q->flags & RP_POOL_CHECKED) ? rpi_registry_lockp() : &q->lock;
        if (atomic_exchange_explicit(&ql->held, 1, memory_order_acquire)) continue;
        if (q->flags & RPI_POOL_BIASED) rpi_shard_exclude(q);   /* its creator, lock-free */
        q->mp_left = 0;
        q->mp.real = false;
        /* and its shards (shard.c) whose lock is free */
        for (rp_pool *sh = q->shards; sh; sh = sh->shard_next) {
            if (atomic_exchange_explicit(&sh->lock.held, 1, memory_order_acquire)) continue;
            if (sh->flags & RPI_POOL_BIASED) rpi_shard_exclude(sh);
            sh->mp_left = 0;
            sh->mp.real = false;
            rpi_lock_release(&sh->lock);
        }
        rpi_lock_release(ql);
    }
    rpi_live_unlock();
    *out = p;
    return 0;
}

int rp_memprof_stop(void)
{
    rpi_lock_acquire(&mp_lock);
    rp_memprof *p = mp_running;
    if (p) {
        p->running = false;
        mp_running = NULL;
        atomic_store_explicit(&mp_active, false, memory_order_release);
        atomic_fetch_add_explicit(&mp_gen, 1, memory_order_acq_rel);
    }
    rpi_lock_release(&mp_lock);
    return p ? 0 : RP_ENOTFOUND;
}

int rp_memprof_discard(rp_memprof *profile)
{
    if (!profile) return RP_EINVAL;
    rpi_lock_acquire(&mp_lock);
    bool running = profile->running;
    rpi_lock_release(&mp_lock);
    if (running) return RP_EBUSY;
    drop_entries(NULL, profile, false);
    rpi_sys_free(profile);
    return 0;
}

rp_memprof *rp_memprof_running(void)
{
    rpi_lock_acquire(&mp_lock);
    rp_memprof *p = mp_running;
    rpi_lock_release(&mp_lock);
    return p;
}

size_t rp_memprof_tracked(const rp_memprof *profile)
{
    if (!profile) return 0;
    rpi_lock_acquire(&mp_lock);
    size_t n = profile->tracked;
    rpi_lock_release(&mp_lock);
    return n;
}

/* At unload: the table's memory, once no profile tracks anything. */
__attribute__((destructor)) static void memprof_at_unload(void)
{
    rpi_lock_acquire(&mp_lock);
    if (atomic_load(&rpi_memprof_entries) == 0) rpi_ptrmap_free(&mp_map);
    rpi_lock_release(&mp_lock);
}
