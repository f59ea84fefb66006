/*
 * dlopen_shared.c -- libringpool.so loaded with dlopen, as a plugin or an
 * interpreter's extension would load it, with glibc's default static TLS
 * surplus (run without GLIBC_TUNABLES).
 *
 *   dlopen_shared LIBRARY malloc|arena [outlive]
 *
 * The shared library reaches its per-thread record of a thread's shard in
 * the initial-exec TLS model, so a dlopen'ed copy must fit ALL its
 * thread-local data in the surplus glibc keeps for such objects. Checks:
 * dlopen succeeds; the object's thread-local data (PT_TLS) stays within
 * TLS_BUDGET bytes; threads other than a shared pool's creator allocate
 * and free through their shards with exact counts, also alternating
 * between two pools and after a destroy that frees their shards (a new
 * pool, possibly at the old one's address); and CYCLES rounds of dlopen,
 * use by a thread, dlclose leave dlopen working (the surplus is given back
 * when the library goes); with `outlive`, a thread that used a shared pool
 * and a pool recording stacks and outlives the library (dlclose) exits
 * without calling into it (its per-thread memory of the library is then
 * lost by design: not for valgrind's leak check); the cycles leave no
 * address space reserved behind (the arena's headerless region, 1 GiB or
 * 3 GiB, goes with the library: VmSize grows by less than 1 GiB over all
 * of them). Public API only, through dlsym.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringpool.h"

#define TLS_BUDGET 256
#define CYCLES 40
#define PAIRS 20000

static int failures;
#define CHECK(c)                                                                    \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "dlopen_shared.c:%d: check failed: %s\n", __LINE__, #c); \
            failures++;                                                             \
        }                                                                           \
    } while (0)

static struct {
    rp_pool *(*create_ex)(const char *, const rp_pool_options *);
    void (*destroy)(rp_pool *);
    void *(*alloc)(rp_pool *, size_t, const char *);
    void (*free)(void *);
    rp_pool *(*block_pool)(const void *);
    int (*info)(rp_pool *, rp_pool_info *);
    int (*check)(rp_pool *);
} rp;
static unsigned backing;

static void *load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen_shared: dlopen(%s): %s\n", path, dlerror());
        exit(1);
    }
    struct {
        const char *name;
        void **fn;
    } syms[] = {{"rp_pool_create_ex", (void **)&rp.create_ex}, {"rp_pool_destroy", (void **)&rp.destroy},
                {"rp_alloc", (void **)&rp.alloc},              {"rp_free", (void **)&rp.free},
                {"rp_block_pool", (void **)&rp.block_pool},    {"rp_pool_get_info", (void **)&rp.info},
                {"rp_pool_check", (void **)&rp.check}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].fn = dlsym(h, syms[i].name);
        if (!*syms[i].fn) {
            fprintf(stderr, "dlopen_shared: no %s in %s\n", syms[i].name, path);
            exit(1);
        }
    }
    return h;
}

/* The loaded object's PT_TLS size and whether it asks for static TLS. */
typedef struct {
    ElfW(Addr) base;
    int found;
    size_t tls;
    int static_tls;
} tls_info;

static int phdr_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    tls_info *t = arg;
    if (info->dlpi_addr != t->base) return 0;
    t->found = 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_TLS) t->tls = ph->p_memsz;
        if (ph->p_type == PT_DYNAMIC)
            for (const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
                 d->d_tag != DT_NULL; d++)
                if (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_STATIC_TLS)) t->static_tls = 1;
    }
    return 1;
}

static rp_pool *make_pool(const char *name)
{
    rp_pool_options o = {.flags = backing};
    rp_pool *p = rp.create_ex(name, &o);
    CHECK(p != NULL);
    if (!p) exit(1);
    return p;
}

static void counts(rp_pool *p, size_t blocks, uint64_t allocs)
{
    rp_pool_info i = {.struct_size = sizeof i};
    CHECK(rp.info(p, &i) == 0);
    CHECK(i.blocks == blocks);
    CHECK(i.allocs == allocs);
    CHECK(rp.check(p) == 0);
}

typedef struct {
    rp_pool *pool[2];
    int npools;
    void *kept[64];
} work;

/* PAIRS alloc+free pairs by turns over the pools, then 64 blocks kept. */
static void *worker(void *arg)
{
    work *w = arg;
    for (int i = 0; i < PAIRS; i++) {
        rp_pool *p = w->pool[i % w->npools];
        void *b = rp.alloc(p, 16 + (size_t)(i % 200), "pair");
        CHECK(b != NULL && rp.block_pool(b) == p);
        rp.free(b);
    }
    for (int i = 0; i < 64; i++) {
        w->kept[i] = rp.alloc(w->pool[i % w->npools], 64, "kept");
        CHECK(w->kept[i] != NULL);
    }
    return NULL;
}

static void run_threads(work *w, int n)
{
    pthread_t t[4];
    for (int i = 0; i < n; i++) CHECK(pthread_create(&t[i], NULL, worker, &w[i]) == 0);
    for (int i = 0; i < n; i++) CHECK(pthread_join(t[i], NULL) == 0);
}

/* A thread that allocated from a shared pool waits until the library is
   gone, then exits. */
static pthread_mutex_t gone_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gone_cv = PTHREAD_COND_INITIALIZER;
static int used, gone;

static void *use_then_outlive(void *arg)
{
    rp_pool **p = arg;   /* a shared pool, and one that records stacks */
    for (int k = 0; k < 2; k++) {
        void *b = rp.alloc(p[k], 64, "outlives");
        CHECK(b != NULL && rp.block_pool(b) == p[k]);
        rp.free(b);
    }
    pthread_mutex_lock(&gone_mu);
    used = 1;
    pthread_cond_broadcast(&gone_cv);
    while (!gone) pthread_cond_wait(&gone_cv, &gone_mu);
    pthread_mutex_unlock(&gone_mu);
    return NULL;
}

/* The process's address space (VmSize), in KiB; 0 if unknown. */
static size_t vm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmSize:", 7) == 0) kib = strtoul(line + 7, NULL, 10);
    fclose(f);
    return kib;
}

static void free_kept(work *w, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 64; k++) rp.free(w[i].kept[k]);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || (strcmp(argv[2], "malloc") && strcmp(argv[2], "arena")) ||
        (argc == 4 && strcmp(argv[3], "outlive"))) {
        fprintf(stderr, "usage: dlopen_shared LIBRARY malloc|arena [outlive]\n");
        return 2;
    }
    backing = strcmp(argv[2], "arena") ? 0 : RP_POOL_ARENA;
    void *h = load(argv[1]);

    struct link_map *lm = NULL;
    CHECK(dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL);
    tls_info t = {.base = lm ? lm->l_addr : 0};
    dl_iterate_phdr(phdr_visit, &t);
    CHECK(t.found);
    printf("dlopen_shared: %s: %zu bytes of thread-local data, %s\n", argv[1], t.tls,
           t.static_tls ? "static TLS (initial-exec)" : "no static TLS");
    CHECK(t.tls <= TLS_BUDGET);

    /* two threads on one shared pool, then two threads alternating pools */
    rp_pool *a = make_pool("shared");
    work w[2] = {{.pool = {a}, .npools = 1}, {.pool = {a}, .npools = 1}};
    run_threads(w, 2);
    counts(a, 2 * 64, 2 * (PAIRS + 64));
    free_kept(w, 2);
    counts(a, 0, 2 * (PAIRS + 64));
    rp_pool *b = make_pool("other");
    work alt[2] = {{.pool = {a, b}, .npools = 2}, {.pool = {b, a}, .npools = 2}};
    run_threads(alt, 2);
    counts(a, 64, 2 * (PAIRS + 64) + PAIRS + 64);
    counts(b, 64, PAIRS + 64);
    free_kept(alt, 2);

    /* the first pool goes with its shards; a new one (perhaps at the same
       address) gets new shards from the same threads' successors */
    rp.destroy(a);
    rp_pool *c = make_pool("after");
    work again[2] = {{.pool = {c, b}, .npools = 2}, {.pool = {c}, .npools = 1}};
    run_threads(again, 2);
    counts(c, 32 + 64, PAIRS / 2 + 32 + PAIRS + 64);
    free_kept(again, 2);
    counts(c, 0, PAIRS / 2 + 32 + PAIRS + 64);
    rp.destroy(c);
    rp.destroy(b);
    CHECK(dlclose(h) == 0);

    size_t vm0 = vm_kib();
    for (int i = 0; i < CYCLES; i++) {
        h = load(argv[1]);
        rp_pool *p = make_pool("cycle");
        work one = {.pool = {p}, .npools = 1};
        run_threads(&one, 1);
        counts(p, 64, PAIRS + 64);
        free_kept(&one, 1);
        for (int k = 0; k < 64; k++) CHECK(rp.alloc(p, 8, "small") != NULL);   /* left to the destroy */
        rp.destroy(p);
        CHECK(dlclose(h) == 0);
    }
    size_t vm1 = vm_kib();
    printf("dlopen_shared: %d load cycles: address space %zu KiB -> %zu KiB\n", CYCLES, vm0, vm1);
    CHECK(vm1 < vm0 + ((size_t)1 << 20));
    if (argc == 4) {
        h = load(argv[1]);
        rp_pool *p[2] = {make_pool("outlived"), NULL};
        rp_pool_options so = {.flags = backing | RP_POOL_STACKS};
        p[1] = rp.create_ex("outlived-stacks", &so);
        CHECK(p[1] != NULL);
        if (!p[1]) return 1;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, use_then_outlive, p) == 0);
        pthread_mutex_lock(&gone_mu);
        while (!used) pthread_cond_wait(&gone_cv, &gone_mu);
        pthread_mutex_unlock(&gone_mu);
        rp.destroy(p[0]);
        rp.destroy(p[1]);
        CHECK(dlclose(h) == 0);
        pthread_mutex_lock(&gone_mu);
        gone = 1;
        pthread_cond_broadcast(&gone_cv);
        pthread_mutex_unlock(&gone_mu);
        CHECK(pthread_join(th, NULL) == 0);
    }

    if (failures) {
        fprintf(stderr, "dlopen_shared: %d checks failed\n", failures);
        return 1;
    }
    printf("dlopen_shared: ok (%s, %d load/unload cycles)\n", argv[2], CYCLES);
    return 0;
}
