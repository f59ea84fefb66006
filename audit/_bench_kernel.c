/* _bench_kernel.c -- see bench_kernel.h. */
#include "bench_kernel.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringpool.h"
#include "geometric.h"
#include "peers.h"

struct rpb_work {
    size_t n;
    size_t *sizes;
    size_t *order;      /* free order: indices into blocks */
    void **blocks;
    size_t bytes;
    int strategy;       /* -1 when not filled */
    void *container;    /* rp_pool*, talloc parent, apr pool, mi heap */
    uint64_t fill_ns, release_ns;
    char error[256];
};

/* ---------------------------------------------------------------- peers */
typedef void *(*talloc_named_const_fn)(const void *ctx, size_t size, const char *name);
typedef int (*talloc_free_fn)(void *ptr, const char *location);
typedef int (*apr_initialize_fn)(void);
typedef int (*apr_pool_create_ex_fn)(void **newpool, void *parent, void *abortfn, void *allocator);
typedef void *(*apr_palloc_fn)(void *pool, size_t size);
typedef void (*apr_pool_destroy_fn)(void *pool);
typedef void *(*mi_heap_new_fn)(void);
typedef void *(*mi_heap_malloc_fn)(void *heap, size_t size);
typedef void (*mi_free_fn)(void *p);
typedef void (*mi_heap_destroy_fn)(void *heap);
typedef void (*mi_heap_delete_fn)(void *heap);

static struct {
    int tried;
    int ok;
    char why[200];
    void *handle;
} peer_talloc, peer_apr, peer_mi;

static struct {
    talloc_named_const_fn named_const;
    talloc_free_fn free_;
} talloc_api;
static struct {
    apr_pool_create_ex_fn create;
    apr_palloc_fn palloc;
    apr_pool_destroy_fn destroy;
} apr_api;
static struct {
    mi_heap_new_fn heap_new;
    mi_heap_malloc_fn heap_malloc;
    mi_free_fn free_;
    mi_heap_destroy_fn heap_destroy;
    mi_heap_delete_fn heap_delete;
} mi_api;

static int load_talloc(void)
{
    if (!peer_talloc.tried) {
        peer_talloc.tried = 1;
        const rpi_peer_sym syms[] = {{"talloc_named_const", &talloc_api.named_const},
                                     {"_talloc_free", &talloc_api.free_}};
        peer_talloc.handle = rpi_peer_open("libtalloc.so.2", syms, RPI_PEER_NSYMS(syms),
                                           peer_talloc.why, sizeof peer_talloc.why);
        peer_talloc.ok = peer_talloc.handle != NULL;
    }
    return peer_talloc.ok;
}

static int load_apr(void)
{
    if (!peer_apr.tried) {
        peer_apr.tried = 1;
        apr_initialize_fn init = NULL;
        const rpi_peer_sym syms[] = {{"apr_initialize", &init},
                                     {"apr_pool_create_ex", &apr_api.create},
                                     {"apr_palloc", &apr_api.palloc},
                                     {"apr_pool_destroy", &apr_api.destroy}};
        void *h = rpi_peer_open("libapr-1.so.0", syms, RPI_PEER_NSYMS(syms), peer_apr.why,
                                sizeof peer_apr.why);
        if (h != NULL) {
            if (init() != 0) {
                snprintf(peer_apr.why, sizeof peer_apr.why, "apr_initialize failed");
            } else {
                peer_apr.ok = 1;
                peer_apr.handle = h;
            }
        }
    }
    return peer_apr.ok;
}

static int load_mi(void)
{
    if (!peer_mi.tried) {
        peer_mi.tried = 1;
        const rpi_peer_sym syms[] = {{"mi_heap_new", &mi_api.heap_new},
                                     {"mi_heap_malloc", &mi_api.heap_malloc},
                                     {"mi_free", &mi_api.free_},
                                     {"mi_heap_destroy", &mi_api.heap_destroy},
                                     {"mi_heap_delete", &mi_api.heap_delete}};
        peer_mi.handle = rpi_peer_open("libmimalloc.so.2", syms, RPI_PEER_NSYMS(syms), peer_mi.why,
                                       sizeof peer_mi.why);
        peer_mi.ok = peer_mi.handle != NULL;
    }
    return peer_mi.ok;
}

int rpb_available(int strategy)
{
    switch (strategy) {
    case RPB_RP_FREE:
    case RPB_RP_DESTROY:
    case RPB_GLIBC_FREE:
        return 1;
    case RPB_TALLOC_FREE:
    case RPB_TALLOC_DESTROY:
        return load_talloc();
    case RPB_APR_DESTROY:
        return load_apr();
    case RPB_MI_FREE:
    case RPB_MI_DESTROY:
        return load_mi();
    default:
        return 0;
    }
}

const char *rpb_unavailable_reason(int strategy)
{
    if (strategy < 0 || strategy >= RPB_STRATEGIES)
        return "no such strategy";
    if (rpb_available(strategy))
        return "";
    if (strategy == RPB_TALLOC_FREE || strategy == RPB_TALLOC_DESTROY)
        return peer_talloc.why;
    if (strategy == RPB_APR_DESTROY)
        return peer_apr.why;
    return peer_mi.why;
}

/* ----------------------------------------------------------- work items */
/* Mixed: 70% small (8..64 bytes), 28% medium (65..512), 2% large (513..4096). */
static size_t mixed_size(uint64_t *state)
{
    uint64_t r = rpg_splitmix(state);
    unsigned bucket = (unsigned)(r % 100u);
    uint64_t v = r >> 32;
    if (bucket < 70)
        return 8 + (size_t)(v % 57u);
    if (bucket < 98)
        return 65 + (size_t)(v % 448u);
    return 513 + (size_t)(v % 3584u);
}

rpb_work *rpb_work_new(size_t n, size_t size, int order, uint64_t seed)
{
    if (n == 0 || n > ((size_t)1 << 30) || order < RPB_ORDER_RANDOM || order > RPB_ORDER_FIFO)
        return NULL;
    rpb_work *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->n = n;
    w->strategy = -1;
    w->sizes = malloc(n * sizeof *w->sizes);
    w->order = malloc(n * sizeof *w->order);
    w->blocks = calloc(n, sizeof *w->blocks);
    if (w->sizes == NULL || w->order == NULL || w->blocks == NULL) {
        rpb_work_delete(w);
        return NULL;
    }
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) {
        w->sizes[i] = size != 0 ? size : mixed_size(&state);
        w->bytes += w->sizes[i];
    }
    for (size_t i = 0; i < n; i++)
        w->order[i] = order == RPB_ORDER_LIFO ? n - 1 - i : i;
    if (order == RPB_ORDER_RANDOM) {
        uint64_t st = seed ^ 0x5bd1e995u;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(rpg_splitmix(&st) % (uint64_t)(i + 1));
            size_t t = w->order[i];
            w->order[i] = w->order[j];
            w->order[j] = t;
        }
    }
    return w;
}

void rpb_work_delete(rpb_work *w)
{
    if (w == NULL)
        return;
    if (w->strategy >= 0)
        (void)rpb_release(w);
    free(w->sizes);
    free(w->order);
    free(w->blocks);
    free(w);
}

size_t rpb_work_blocks(const rpb_work *w) { return w->n; }
size_t rpb_work_bytes(const rpb_work *w) { return w->bytes; }
size_t rpb_work_size_at(const rpb_work *w, size_t i) { return i < w->n ? w->sizes[i] : 0; }
size_t rpb_work_order_at(const rpb_work *w, size_t i) { return i < w->n ? w->order[i] : 0; }
int rpb_filled(const rpb_work *w) { return w->strategy >= 0; }
uint64_t rpb_fill_ns(const rpb_work *w) { return w->fill_ns; }
uint64_t rpb_release_ns(const rpb_work *w) { return w->release_ns; }
const char *rpb_last_error(const rpb_work *w) { return w->error; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fail(rpb_work *w, const char *msg)
{
    snprintf(w->error, sizeof w->error, "%s", msg);
    return -1;
}

/* Frees the blocks allocated so far after a failed fill. */
static void undo_partial(rpb_work *w, int strategy, size_t got)
{
    switch (strategy) {
    case RPB_RP_FREE:
    case RPB_RP_DESTROY:
        rp_pool_destroy(w->container);
        break;
    case RPB_GLIBC_FREE:
        for (size_t i = 0; i < got; i++)
            free(w->blocks[i]);
        break;
    case RPB_TALLOC_FREE:
    case RPB_TALLOC_DESTROY:
        talloc_api.free_(w->container, "bench");
        break;
    case RPB_APR_DESTROY:
        apr_api.destroy(w->container);
        break;
    default:
        mi_api.heap_destroy(w->container);
        break;
    }
    w->container = NULL;
    memset(w->blocks, 0, w->n * sizeof *w->blocks);
}

/* The fill loop of every strategy: blocks[i] = ALLOC (an expression of i)
   for i up to n, the first byte of each block written; stops at the first
   NULL, i then naming the block that failed. A macro, not a function taking
   the allocator, so the timed loop calls each allocator directly. */
#define FILL_BLOCKS(blocks, i, n, ALLOC)                                       \
    do {                                                                       \
        for (; (i) < (n); (i)++) {                                             \
            char *p_ = (ALLOC);                                                \
            if (p_ == NULL)                                                    \
                break;                                                         \
            p_[0] = (char)(i);                                                 \
            (blocks)[i] = p_;                                                  \
        }                                                                      \
    } while (0)

int rpb_fill(rpb_work *w, int strategy, unsigned pool_flags)
{
    if (w == NULL)
        return -1;
    w->error[0] = '\0';
    if (strategy < 0 || strategy >= RPB_STRATEGIES)
        return fail(w, "no such strategy");
    if (w->strategy >= 0)
        return fail(w, "work item is already filled");
    if (!rpb_available(strategy))
        return fail(w, rpb_unavailable_reason(strategy));
    if ((pool_flags & ~(unsigned)(RPB_POOL_UNSYNC | RPB_POOL_ARENA)) != 0)
        return fail(w, "unknown pool flags");

    const size_t n = w->n;
    void **blocks = w->blocks;
    const size_t *sizes = w->sizes;
    size_t i = 0;
    uint64_t t0 = now_ns();
    switch (strategy) {
    case RPB_RP_FREE:
    case RPB_RP_DESTROY: {
        rp_pool_options opts = {pool_flags, 0, 0};
        rp_pool *pool = rp_pool_create_ex("bench", &opts);
        if (pool == NULL)
            return fail(w, "rp_pool_create_ex failed");
        w->container = pool;
        FILL_BLOCKS(blocks, i, n, rp_alloc_noexc(pool, sizes[i], "bench"));
        break;
    }
    case RPB_GLIBC_FREE:
        FILL_BLOCKS(blocks, i, n, malloc(sizes[i]));
        break;
    case RPB_TALLOC_FREE:
    case RPB_TALLOC_DESTROY: {
        void *parent = talloc_api.named_const(NULL, 0, "bench");
        if (parent == NULL)
            return fail(w, "talloc_named_const failed");
        w->container = parent;
        FILL_BLOCKS(blocks, i, n, talloc_api.named_const(parent, sizes[i], "bench"));
        break;
    }
    case RPB_APR_DESTROY: {
        void *pool = NULL;
        if (apr_api.create(&pool, NULL, NULL, NULL) != 0 || pool == NULL)
            return fail(w, "apr_pool_create_ex failed");
        w->container = pool;
        FILL_BLOCKS(blocks, i, n, apr_api.palloc(pool, sizes[i]));
        break;
    }
    default: { /* mimalloc */
        void *heap = mi_api.heap_new();
        if (heap == NULL)
            return fail(w, "mi_heap_new failed");
        w->container = heap;
        FILL_BLOCKS(blocks, i, n, mi_api.heap_malloc(heap, sizes[i]));
        break;
    }
    }
    w->fill_ns = now_ns() - t0;
    if (i < n) {
        undo_partial(w, strategy, i);
        return fail(w, "out of memory while filling");
    }
    w->strategy = strategy;
    w->release_ns = 0;
    return 0;
}

size_t rpb_outstanding(const rpb_work *w)
{
    if (w == NULL || w->strategy < 0)
        return 0;
    if (w->strategy == RPB_RP_FREE || w->strategy == RPB_RP_DESTROY)
        return rp_pool_outstanding(w->container, NULL);
    return w->n;
}

int rpb_release(rpb_work *w)
{
    if (w == NULL || w->strategy < 0)
        return -1;
    const size_t n = w->n;
    void **blocks = w->blocks;
    const size_t *order = w->order;
    uint64_t t0 = now_ns();
    switch (w->strategy) {
    case RPB_RP_FREE:
        for (size_t i = 0; i < n; i++)
            rp_free(blocks[order[i]]);
        rp_pool_destroy(w->container);
        break;
    case RPB_RP_DESTROY:
        rp_pool_destroy(w->container);
        break;
    case RPB_GLIBC_FREE:
        for (size_t i = 0; i < n; i++)
            free(blocks[order[i]]);
        break;
    case RPB_TALLOC_FREE:
        for (size_t i = 0; i < n; i++)
            talloc_api.free_(blocks[order[i]], "bench");
        talloc_api.free_(w->container, "bench");
        break;
    case RPB_TALLOC_DESTROY:
        talloc_api.free_(w->container, "bench");
        break;
    case RPB_APR_DESTROY:
        apr_api.destroy(w->container);
        break;
    case RPB_MI_FREE:
        for (size_t i = 0; i < n; i++)
            mi_api.free_(blocks[order[i]]);
        mi_api.heap_delete(w->container);
        break;
    default:
        mi_api.heap_destroy(w->container);
        break;
    }
    w->release_ns = now_ns() - t0;
    w->container = NULL;
    w->strategy = -1; /* the next fill overwrites every entry of blocks */
    return 0;
}
