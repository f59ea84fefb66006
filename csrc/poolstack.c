/*
 * poolstack.c -- allocation stacks for the blocks of pools that ask for them
 * (see poolstack.h for the model, docs/contract.md for the rules).
 *
 * The capture and the table of distinct stacks are csrc/stack/'s, the same
 * code the interposer uses, compiled into the library here (one unit, so
 * that every build of libringpool -- the Makefile's, setup.py's, the Python
 * extension's, the sanitizer tests' -- picks them up with csrc/ *.c). Two
 * differences from the interposer's copy: the per-thread state uses the
 * default TLS model and its big buffers are on the heap (the library may be
 * dlopen'ed, and its static TLS must stay small: stack.h), and frames the
 * cached walker cannot follow go to glibc's backtrace(), not libunwind, so
 * the library links nothing new. And the library defines no munmap, mremap
 * or mprotect (it is an ordinary library): its walks trust no stack page
 * from one walk to the next, except on the thread's own stack
 * (RPI_STACK_NO_MAP_HOOKS, unwind.c).
 */
#define RPI_STACK_TLS
#define RPI_STACK_HEAP_STATE   /* the library's static TLS stays small (stack.h) */
#define RPI_STACK_NO_LIBUNWIND
#define RPI_STACK_NO_MAP_HOOKS  /* no munmap of its own: walks keep no pages (unwind.c) */
#include "stack/stack.c"
#include "stack/unwind.c"
#include "stack/module.h"

#include "memprof.h"
#include "poolstack.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DEPTH 64

struct rpi_srec {
    rpi_tag  *tag;
    uint32_t  id;
    size_t    blocks, bytes;
    uint64_t  allocs;
    rpi_srec *hnext;        /* hash chain */
    rpi_srec *lnext;        /* creation order */
};

typedef struct rpi_poolstacks {
    int        depth;
    rpi_ptrmap blocks;      /* payload -> rpi_srec */
    rpi_srec **buckets;
    size_t     nbuckets, nrecs;
    rpi_srec  *first, *last;
    rpi_srec  *recent;      /* the record used last: a loop allocates from one place */
} rpi_poolstacks;

static inline rpi_poolstacks *state(const rp_pool *pool) { return pool->stacks; }

/* --------------------------------------------------------- the setting */
/* $RINGPOOL_POOL_STACKS, read once: -1 not yet, 0 off (unset, empty, "0",
   or a bad value, which is reported once), else the depth. */
static atomic_int env_depth = -1;

static int parse_env(void)
{
    const char *v = getenv("RINGPOOL_POOL_STACKS");
    if (!v || !*v || strcmp(v, "0") == 0) return 0;
    if (strcmp(v, "on") == 0) return DEFAULT_DEPTH;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 1 || n > RPI_STACK_MAX_DEPTH || v[0] == '+' || v[0] == ' ') {
        fprintf(stderr, "ringpool: RINGPOOL_POOL_STACKS=\"%.40s\" is not a stack depth "
                "(1..%d), \"on\" or \"0\": no pool records stacks\n", v, RPI_STACK_MAX_DEPTH);
        return 0;
    }
    return (int)n;
}

static int env_stack_depth(void)
{
    int d = atomic_load_explicit(&env_depth, memory_order_acquire);
    if (d >= 0) return d;
    int saved = errno;
    d = parse_env();
    errno = saved;
    int expected = -1;
    /* a racing first reader parsed the same value; one message is enough */
    if (!atomic_compare_exchange_strong(&env_depth, &expected, d)) d = expected;
    return d;
}

/* The library's code: return addresses in it are the frames of the
   allocation call itself, dropped from the front of each stack. Its
   objects are linked together; these functions lie in the first and last
   of them, pool.c (the frames seen at capture) between. */
static uintptr_t skip_lo = UINTPTR_MAX, skip_hi;
static atomic_int skip_ready;

static void skip_add(uintptr_t fn)
{
    uintptr_t lo, hi;
    if (rpi_unwind_function_range(fn, &lo, &hi) != 0) { lo = fn; hi = fn + 1; }
    if (lo < skip_lo) skip_lo = lo;
    if (hi > skip_hi) skip_hi = hi;
}

static void skip_init(void)
{
    if (atomic_load_explicit(&skip_ready, memory_order_acquire)) return;
    rpi_live_lock();
    if (!atomic_load_explicit(&skip_ready, memory_order_relaxed)) {
        const uintptr_t fns[] = {
            (uintptr_t)rpi_arena_init, (uintptr_t)rpi_arena_alloc, (uintptr_t)rpi_arena_free,
            (uintptr_t)rpi_registry_reserve, (uintptr_t)rpi_registry_fini,
            (uintptr_t)rpi_memprof_draw, (uintptr_t)rpi_memprof_slow,
            (uintptr_t)rpi_tag_lookup_slow, (uintptr_t)rpi_pool_totals,
            (uintptr_t)rpi_pool_reserved, (uintptr_t)rpi_poolstack_capture,
            (uintptr_t)rpi_poolstack_setup, (uintptr_t)rpi_stack_capture,
            (uintptr_t)rpi_unwind_fast, (uintptr_t)rpi_write_report,
            (uintptr_t)rpi_report_from_env, (uintptr_t)rpi_report_error,
            (uintptr_t)rpi_ptrmap_get, (uintptr_t)rpi_ptrmap_free, (uintptr_t)rpi_lock_slow,
        };
        for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) skip_add(fns[i]);
        atomic_store_explicit(&skip_ready, 1, memory_order_release);
    }
    rpi_live_unlock();
}

int rpi_poolstack_setup(rp_pool *pool, const rp_pool_options *opts, rp_pool *parent)
{
    /* the flag: its depth (RP_POOL_STACK_DEPTH), else the parent's (a child made by
       rp_pool_create_child), else the variable's, else the default; no
       flag: the variable's (0: none) */
    int depth;
    if (opts && (opts->flags & RP_POOL_STACKS)) {
        unsigned asked = (opts->flags & RP_POOL_STACK_DEPTH_MASK) >> 20;
        depth = asked > RPI_STACK_MAX_DEPTH ? RPI_STACK_MAX_DEPTH : (int)asked;
        if (!depth && parent && parent->stacks) depth = state(parent)->depth;
        if (!depth) depth = env_stack_depth();
        if (!depth) depth = DEFAULT_DEPTH;
    } else {
        depth = env_stack_depth();
    }
    pool->stacks = NULL;
    pool->flags &= ~(unsigned)RP_POOL_STACKS;
    if (!depth) return 0;
    rpi_poolstacks *s = rpi_sys_calloc(1, sizeof *s);
    if (!s) return RP_ENOMEM;
    s->depth = depth;
    /* the stack table is mmap'd; when it cannot be, blocks get stack 0 */
    rpi_live_lock();
    (void)rpi_stack_init();
    rpi_live_unlock();
    skip_init();
    pool->stacks = s;
    pool->flags |= RP_POOL_STACKS;
    return 0;
}

uint32_t rpi_poolstack_capture(rp_pool *pool)
{
    return rpi_stack_capture(state(pool)->depth, skip_lo, skip_hi);
}

/* ------------------------------------------------------------ records */
static size_t bucket_of(const rpi_tag *t, uint32_t id, size_t nbuckets)
{
    uint64_t x = (uint64_t)(uintptr_t)t * UINT64_C(0x9E3779B97F4A7C15) ^ id;
    x ^= x >> 29;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    return (size_t)(x >> 32) & (nbuckets - 1);
}

static int grow_buckets(rpi_poolstacks *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 64;
    rpi_srec **b = rpi_sys_calloc(n, sizeof *b);
    if (!b) return RP_ENOMEM;
    for (rpi_srec *r = s->first; r; r = r->lnext) {
        size_t k = bucket_of(r->tag, r->id, n);
        r->hnext = b[k];
        b[k] = r;
    }
    rpi_sys_free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

rpi_srec *rpi_poolstack_prepare(rp_pool *pool, rpi_tag *t, uint32_t id)
{
    rpi_poolstacks *s = state(pool);
    if (rpi_ptrmap_reserve(&s->blocks, 1) != 0) return NULL;
    rpi_srec *recent = s->recent;
    if (recent && recent->tag == t && recent->id == id) return recent;
    if (s->nbuckets) {
        for (rpi_srec *r = s->buckets[bucket_of(t, id, s->nbuckets)]; r; r = r->hnext)
            if (r->tag == t && r->id == id) return s->recent = r;
    }
    if (s->nrecs >= s->nbuckets && grow_buckets(s) != 0) return NULL;
    rpi_srec *r = rpi_sys_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->tag = t;
    r->id = id;
    size_t k = bucket_of(t, id, s->nbuckets);
    r->hnext = s->buckets[k];
    s->buckets[k] = r;
    if (s->last) s->last->lnext = r; else s->first = r;
    s->last = r;
    s->nrecs++;
    return s->recent = r;
}

void rpi_poolstack_link(rp_pool *pool, rpi_hdr *h, rpi_srec *rec)
{
    rpi_poolstacks *s = state(pool);
    (void)rpi_ptrmap_put(&s->blocks, rpi_payload(h), rec);   /* room reserved */
    h->word |= RPI_F_STACK;
    rec->blocks++;
    rec->bytes += rpi_size(h);
    rec->allocs++;
}

void rpi_poolstack_unlink(rp_pool *pool, const void *payload, size_t size)
{
    rpi_srec *r = rpi_ptrmap_del(&state(pool)->blocks, payload);
    if (!r) return;
    r->blocks--;
    r->bytes -= size;
}

int rpi_poolstack_reserve(rp_pool *pool)
{
    return rpi_ptrmap_reserve(&state(pool)->blocks, 1);
}

void rpi_poolstack_resized(rp_pool *pool, const void *old_payload, void *new_payload,
                           size_t old_size, size_t new_size)
{
    rpi_poolstacks *s = state(pool);
    rpi_srec *r = old_payload == new_payload ? rpi_ptrmap_get(&s->blocks, old_payload)
                                             : rpi_ptrmap_del(&s->blocks, old_payload);
    if (!r) return;
    if (old_payload != new_payload) (void)rpi_ptrmap_put(&s->blocks, new_payload, r); /* reserved */
    r->bytes = r->bytes - old_size + new_size;
}

void rpi_poolstack_clear(rp_pool *pool)
{
    rpi_poolstacks *s = state(pool);
    if (!s) return;
    rpi_ptrmap_free(&s->blocks);
    for (rpi_srec *r = s->first; r; r = r->lnext) r->blocks = r->bytes = 0;
}

void rpi_poolstack_fini(rp_pool *pool)
{
    rpi_poolstacks *s = state(pool);
    if (!s) return;
    for (rpi_srec *r = s->first, *n; r; r = n) {
        n = r->lnext;
        rpi_sys_free(r);
    }
    rpi_ptrmap_free(&s->blocks);
    rpi_sys_free(s->buckets);
    rpi_sys_free(s);
    pool->stacks = NULL;
}

size_t rp_pool_stack_stats(rp_pool *pool, rp_stack_stat *out, size_t cap)
{
    if (!pool) return 0;
    rpi_pool_lock(pool);
    size_t n = 0;
    rpi_poolstacks *s = state(pool);
    for (rpi_srec *r = s ? s->first : NULL; r; r = r->lnext) {
        if (!r->allocs) continue;   /* prepared for an allocation that failed */
        if (out && n < cap) {
            const uintptr_t *f = NULL;
            size_t depth = rpi_stack_get(r->id, &f);
            out[n] = (rp_stack_stat){r->tag->name, depth ? (const void *const *)(const void *)f : NULL,
                                     depth, r->blocks, r->bytes, r->allocs};
        }
        n++;
    }
    rpi_pool_unlock(pool);
    return n;
}

/* ------------------------------------------------------------ reports */
typedef struct rpi_psrow {
    const rpi_tag *tag;
    size_t stack;             /* index in the report's stacks */
    size_t blocks, bytes;
    uint64_t allocs;
} rpi_psrow;

typedef struct psmodule {
    rpi_module obj;           /* load bias, address range, build id */
    char *path;
    bool used;
    size_t index;
} psmodule;

struct rpi_psreport {
    int depth;
    rpi_psrow *rows;
    size_t nrows, cur;
    uint32_t *ids;            /* stack index -> id */
    size_t nstacks;
    uintptr_t *frames;        /* frame index -> address */
    size_t *frame_module;     /* frame index -> module (SIZE_MAX: none) */
    size_t nframes;
    rpi_ptrmap findex;        /* address -> frame index + 1 */
    rpi_ptrmap sindex;        /* id key -> stack index + 1 */
    rpi_poolstacks *state;
    psmodule *mods;
    size_t nmods, nmods_cap;
    psmodule **used;          /* module index -> module */
    size_t nused;
    bool failed;
};

static inline void *id_key(uint32_t id) { return (void *)(((uintptr_t)id + 1) << 4); }

static int collect_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    rpi_psreport *r = arg;
    if (r->nmods == r->nmods_cap) {
        size_t cap = r->nmods_cap ? r->nmods_cap * 2 : 32;
        psmodule *m = rpi_sys_realloc(r->mods, cap * sizeof *m);
        if (!m) { r->failed = true; return 1; }
        r->mods = m;
        r->nmods_cap = cap;
    }
    psmodule *m = &r->mods[r->nmods];
    memset(m, 0, sizeof *m);
    rpi_module_describe(info, &m->obj);
    char exe[PATH_MAX];
    const char *name = rpi_module_path(info, r->nmods == 0, exe, sizeof exe);
    if (!name) return 0;
    size_t len = strlen(name);
    m->path = rpi_sys_malloc(len + 1);
    if (!m->path) { r->failed = true; return 1; }
    memcpy(m->path, name, len + 1);
    r->nmods++;
    return 0;
}

static void report_free(rpi_psreport *r)
{
    for (size_t i = 0; i < r->nmods; i++) rpi_sys_free(r->mods[i].path);
    rpi_sys_free(r->mods);
    rpi_sys_free(r->used);
    rpi_ptrmap_free(&r->findex);
    rpi_ptrmap_free(&r->sindex);
    rpi_sys_free(r->rows);
    rpi_sys_free(r->ids);
    rpi_sys_free(r->frames);
    rpi_sys_free(r->frame_module);
    rpi_sys_free(r);
}

/* The pool's (tag, stack) records as rows grouped by tag in the tags'
   first-use order (a counting sort by each tag's ordinal), in creation
   order within a tag; records of failed allocations (allocs 0) left out. */
static bool make_rows(rp_pool *pool, rpi_psreport *r, rpi_ptrmap *stack_index)
{
    rpi_poolstacks *s = state(pool);
    size_t ntags = 0;
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) ntags++;
    rpi_ptrmap ord = {0};
    size_t *pos = rpi_sys_calloc(ntags + 1, sizeof *pos);
    r->rows = rpi_sys_calloc(s->nrecs, sizeof *r->rows);
    r->ids = rpi_sys_calloc(s->nrecs, sizeof *r->ids);
    bool ok = pos && r->rows && r->ids && rpi_ptrmap_reserve(&ord, ntags) == 0 &&
              rpi_ptrmap_reserve(stack_index, s->nrecs) == 0;
    if (ok) {
        size_t k = 0;
        for (rpi_tag *t = pool->tag_first; t; t = t->lnext)
            (void)rpi_ptrmap_put(&ord, t, (void *)(uintptr_t)++k);   /* reserved */
        for (rpi_srec *q = s->first; q; q = q->lnext)
            if (q->allocs) pos[(uintptr_t)rpi_ptrmap_get(&ord, q->tag)]++;
        size_t sum = 0;
        for (size_t o = 1; o <= ntags; o++) {
            size_t c = pos[o];
            pos[o] = sum;
            sum += c;
        }
        for (rpi_srec *q = s->first; q; q = q->lnext) {
            size_t o = (size_t)(uintptr_t)rpi_ptrmap_get(&ord, q->tag);
            if (!q->allocs || !o) continue;
            void *v = rpi_ptrmap_get(stack_index, id_key(q->id));
            size_t idx;
            if (v) {
                idx = (size_t)(uintptr_t)v - 1;
            } else {
                idx = r->nstacks++;
                r->ids[idx] = q->id;
                (void)rpi_ptrmap_put(stack_index, id_key(q->id), (void *)(uintptr_t)(idx + 1));
            }
            r->rows[pos[o]++] = (rpi_psrow){q->tag, idx, q->blocks, q->bytes, q->allocs};
        }
        r->nrows = sum;
    }
    rpi_ptrmap_free(&ord);
    rpi_sys_free(pos);
    return ok;
}

/* Distinct frames of the stacks, each with its module. */
static bool make_frames(rpi_psreport *r)
{
    size_t total = 0;
    for (size_t i = 0; i < r->nstacks; i++) {
        const uintptr_t *f;
        total += rpi_stack_get(r->ids[i], &f);
    }
    rpi_ptrmap *index = &r->findex;
    r->frames = rpi_sys_calloc(total + 1, sizeof *r->frames);
    r->frame_module = rpi_sys_calloc(total + 1, sizeof *r->frame_module);
    if (!r->frames || !r->frame_module || rpi_ptrmap_reserve(index, total) != 0)
        return false;
    for (size_t i = 0; i < r->nstacks; i++) {
        const uintptr_t *f;
        size_t n = rpi_stack_get(r->ids[i], &f);
        for (size_t j = 0; j < n; j++) {
            if (f[j] < 16 || rpi_ptrmap_get(index, (void *)f[j])) continue;
            (void)rpi_ptrmap_put(index, (void *)f[j], (void *)(uintptr_t)(r->nframes + 1));
            r->frames[r->nframes++] = f[j];
        }
    }
    dl_iterate_phdr(collect_module, r);
    r->used = rpi_sys_calloc(r->nmods + 1, sizeof *r->used);
    if (r->failed || !r->used) return false;
    for (size_t i = 0; i < r->nframes; i++) {
        r->frame_module[i] = SIZE_MAX;
        /* a return address: the call lies just before it */
        uintptr_t a = r->frames[i] - 1;
        for (size_t k = 0; k < r->nmods; k++) {
            if (a >= r->mods[k].obj.lo && a < r->mods[k].obj.hi) {
                if (!r->mods[k].used) {
                    r->mods[k].used = true;
                    r->mods[k].index = r->nused;
                    r->used[r->nused++] = &r->mods[k];
                }
                r->frame_module[i] = r->mods[k].index;
                break;
            }
        }
    }
    return true;
}

rpi_psreport *rpi_poolstack_report_begin(rp_pool *pool)
{
    rpi_poolstacks *s = state(pool);
    if (!s) return NULL;
    rpi_psreport *r = rpi_sys_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->depth = s->depth;
    r->state = s;
    bool ok = !s->nrecs || make_rows(pool, r, &r->sindex);
    if (!ok || !make_frames(r)) {
        report_free(r);
        return NULL;
    }
    return r;
}

static void put_raw(const rpi_json_out *o, const char *s) { o->raw(o->ctx, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void put_fmt(const rpi_json_out *o, const char *fmt, ...)
{
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) o->raw(o->ctx, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void rpi_poolstack_report_tag(rpi_psreport *r, const rpi_tag *t, const rpi_json_out *o)
{
    if (!r) return;
    put_raw(o, ", \"stacks\": [");
    bool first = true;
    while (r->cur < r->nrows && r->rows[r->cur].tag == t) {
        const rpi_psrow *w = &r->rows[r->cur++];
        put_fmt(o, "%s{\"stack\": %zu, \"blocks\": %zu, \"bytes\": %zu, \"allocs\": %llu}",
                first ? "" : ", ", w->stack, w->blocks, w->bytes, (unsigned long long)w->allocs);
        first = false;
    }
    put_raw(o, "]");
}

void rpi_poolstack_report_block(rpi_psreport *r, const void *payload, const rpi_json_out *o)
{
    if (!r) return;
    rpi_srec *q = rpi_ptrmap_get(&r->state->blocks, payload);
    void *v = q ? rpi_ptrmap_get(&r->sindex, id_key(q->id)) : NULL;
    if (v) put_fmt(o, ", \"stack\": %zu", (size_t)(uintptr_t)v - 1);
}

void rpi_poolstack_report_end(rpi_psreport *r, const rpi_json_out *o)
{
    if (!r) return;
    put_fmt(o, ",\n  \"stack_depth\": %d,\n  \"modules\": [", r->depth);
    for (size_t i = 0; i < r->nused; i++) {
        const psmodule *m = r->used[i];
        put_raw(o, i ? ",\n    {\"path\": " : "\n    {\"path\": ");
        o->str(o->ctx, m->path);
        put_fmt(o, ", \"base\": \"0x%lx\"", (unsigned long)m->obj.base);
        char hex[2 * sizeof m->obj.build_id + 1];
        if (rpi_module_build_id_hex(&m->obj, hex)) {
            put_raw(o, ", \"build_id\": \"");
            put_raw(o, hex);
            put_raw(o, "\"");
        }
        put_raw(o, "}");
    }
    put_raw(o, r->nused ? "\n  ],\n  \"frames\": [" : "],\n  \"frames\": [");
    for (size_t i = 0; i < r->nframes; i++) {
        size_t mi = r->frame_module[i];
        /* offsets from the module's load bias, as the interposer's */
        uintptr_t off = r->frames[i] - (mi == SIZE_MAX ? 0 : r->used[mi]->obj.base);
        put_fmt(o, "%s[%ld, \"0x%lx\"]", i ? ", " : "", mi == SIZE_MAX ? -1L : (long)mi,
                (unsigned long)off);
    }
    put_raw(o, "],\n  \"stacks\": [");
    for (size_t i = 0; i < r->nstacks; i++) {
        const uintptr_t *f;
        size_t n = rpi_stack_get(r->ids[i], &f);
        put_raw(o, i ? ", [" : "[");
        bool first = true;
        for (size_t j = 0; j < n; j++) {
            void *v = rpi_ptrmap_get(&r->findex, (void *)f[j]);
            if (!v) continue;
            put_fmt(o, "%s%zu", first ? "" : ", ", (size_t)(uintptr_t)v - 1);
            first = false;
        }
        put_raw(o, "]");
    }
    put_raw(o, "]");
    report_free(r);
}
