/*
 * modules.c -- which module a recorded address belonged to, after dlclose.
 *
 * A call site is recorded as a return address. When a library is unloaded
 * and another is mapped at the same addresses, the same return address
 * would name code of the new library, and the two libraries' sites would
 * merge. So every site key carries the module-map generation it was
 * recorded in (bits RPP_GEN_SHIFT.., see rpp.h), and dlclose, when it
 * really unmapped the object, records what was there (path, load bias,
 * address range, build id) with the last generation in which it was
 * mapped, then starts a new generation. The report resolves an address of
 * generation g to the unloaded module that covered it and was unloaded
 * first at or after g, else to the modules mapped now.
 *
 * Memory: one mmap'd array of records and one for their paths, reserved
 * up front (MAP_NORESERVE) for RPP_GEN_MAX unloads; past that the
 * generation stops advancing (docs/preload.md).
 */
#include "rpp.h"
#include "rawmem.h"
#include "stack.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>

#define RPP_EXPORT __attribute__((visibility("default")))
#define PATH_ARENA ((size_t)64 << 20)

_Atomic uintptr_t rpp_gen_bits;

static rpp_unloaded *records;
static char *paths;
static size_t paths_used;
static _Atomic uint32_t nrecords;
static atomic_int records_lock;

static void *reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

uint32_t rpp_unloaded_count(void)
{
    return atomic_load_explicit(&nrecords, memory_order_acquire);
}

const rpp_unloaded *rpp_unloaded_get(uint32_t i)
{
    return &records[i];
}

typedef struct finding {
    uintptr_t base;
    const char *name;
    int found;
    rpp_unloaded m;
} finding;

static int find_loaded(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    finding *f = arg;
    if (info->dlpi_addr != f->base || !info->dlpi_name || strcmp(info->dlpi_name, f->name) != 0)
        return 0;
    f->found = 1;
    rpi_module_describe(info, &f->m.obj);
    return 1;
}

static void lock(void)
{
    int expected = 0;
    for (unsigned n = 0; !atomic_compare_exchange_weak(&records_lock, &expected, 1);
         n = rpi_raw_next(n)) {
        expected = 0;
        rpi_raw_backoff(n);
    }
}

static void record_unload(const finding *before)
{
    lock();
    uint32_t n = atomic_load_explicit(&nrecords, memory_order_relaxed);
    size_t plen = strlen(before->name) + 1;
    uintptr_t gen = atomic_load(&rpp_gen_bits) >> RPP_GEN_SHIFT;
    if (records && paths && gen < RPP_GEN_MAX && n < RPP_GEN_MAX && paths_used + plen <= PATH_ARENA) {
        rpp_unloaded *r = &records[n];
        *r = before->m;
        memcpy(paths + paths_used, before->name, plen);
        r->path = paths + paths_used;
        paths_used += plen;
        r->gen_end = (uint32_t)gen;
        atomic_store_explicit(&nrecords, n + 1, memory_order_release);
        /* sites recorded from now on belong to the next generation */
        atomic_store(&rpp_gen_bits, (gen + 1) << RPP_GEN_SHIFT);
    }
    atomic_store(&records_lock, 0);
}

RPP_EXPORT int dlclose(void *handle)
{
    static int (*next)(void *);
    if (!next) {
        *(void **)&next = dlsym(RTLD_NEXT, "dlclose");
        if (!next)
            return -1;
    }
    struct link_map *lm = NULL;
    finding before;
    memset(&before, 0, sizeof before);
    void *volatile h = handle;   /* declared nonnull, but programs do pass NULL */
    if (h && dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0]) {
        before.base = lm->l_addr;
        before.name = lm->l_name;
        dl_iterate_phdr(find_loaded, &before);
    }
    /* the name belongs to the loader's record, which dlclose may free */
    char name[4096];
    if (before.found) {
        size_t n = strlen(before.name);
        if (n >= sizeof name)
            before.found = 0;
        else
            memcpy(name, before.name, n + 1);
        before.name = name;
    }
    if (before.found) {
        /* mapped before the object goes, so it cannot take its place */
        lock();
        if (!records) {
            records = reserve((size_t)RPP_GEN_MAX * sizeof *records);
            paths = reserve(PATH_ARENA);
        }
        atomic_store(&records_lock, 0);
    }
    int rc = next(handle);
    /* code mapped later at these addresses needs its own frame rules: the
       stack walker caches them by return address (csrc/stack/unwind.c) */
    if (rc == 0)
        rpi_unwind_forget_code();
    if (rc == 0 && before.found) {
        finding after;
        memset(&after, 0, sizeof after);
        after.base = before.base;
        after.name = name;
        dl_iterate_phdr(find_loaded, &after);
        if (!after.found)
            record_unload(&before);
    }
    return rc;
}
