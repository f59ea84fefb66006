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
#define PATH_ROOM 4096      /* an absolute path, at most (PATH_MAX) */

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

/* What was mapped before a dlclose: every named object (a dlclose also
   unmaps the dependencies nothing else holds, which the handle does not
   name), described while it is still mapped, in an mmap'd block. */
typedef struct seen {
    rpp_unloaded m;             /* m.path: its file's path in the block (rpi_module_path) */
    const char *name;           /* the loader's name for it, in the block */
    int gone;
} seen;

typedef struct snapshot {
    seen *objs;
    size_t n, cap;
    char *names;
    size_t names_used, names_cap;
} snapshot;

static int count_named(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    snapshot *s = arg;
    if (info->dlpi_name && info->dlpi_name[0]) {
        s->cap++;
        s->names_cap += strlen(info->dlpi_name) + 1;
        if (info->dlpi_name[0] != '/')
            s->names_cap += PATH_ROOM;  /* its absolute path */
    }
    return 0;
}

static int take_named(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    snapshot *s = arg;
    if (!info->dlpi_name || !info->dlpi_name[0])
        return 0;
    size_t len = strlen(info->dlpi_name) + 1;
    size_t need = len + (info->dlpi_name[0] != '/' ? PATH_ROOM : 0);
    if (s->n == s->cap || need > s->names_cap - s->names_used)
        return 1;   /* loaded since it was counted: left out */
    seen *e = &s->objs[s->n++];
    rpi_module_describe(info, &e->m.obj);
    memcpy(s->names + s->names_used, info->dlpi_name, len);
    e->name = e->m.path = s->names + s->names_used;
    s->names_used += len;
    if (need > len) {
        /* a relative name: the absolute path of the file, while it is mapped */
        const char *p = rpi_module_path(info, 0, s->names + s->names_used, PATH_ROOM);
        if (p && p != info->dlpi_name) {
            e->m.path = p;
            s->names_used += strlen(p) + 1;
        }
    }
    e->gone = 1;
    return 0;
}

/* Marks the objects of s still mapped (the same path at the same bias). */
static int mark_kept(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    snapshot *s = arg;
    if (!info->dlpi_name || !info->dlpi_name[0])
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->objs[i].gone && s->objs[i].m.obj.base == info->dlpi_addr &&
            strcmp(s->objs[i].name, info->dlpi_name) == 0)
            s->objs[i].gone = 0;
    return 0;
}

static int snapshot_take(snapshot *s)
{
    memset(s, 0, sizeof *s);
    dl_iterate_phdr(count_named, s);
    /* room for a few objects loaded meanwhile by other threads */
    s->cap += 16;
    s->names_cap += 16 * 256;
    if (s->cap > SIZE_MAX / 2 / sizeof(seen) || s->names_cap > SIZE_MAX / 2)
        return 0;
    size_t bytes = s->cap * sizeof(seen) + s->names_cap;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 0;
    s->objs = p;
    s->names = (char *)p + s->cap * sizeof(seen);
    dl_iterate_phdr(take_named, s);
    return 1;
}

static void snapshot_drop(snapshot *s)
{
    munmap(s->objs, s->cap * sizeof(seen) + s->names_cap);
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

/* The objects of s that are gone, as unmapped in the current generation
   (all of them in the same one), then a new generation. Records made
   since `since` (another thread's dlclose, which may have unmapped one of
   them while this one ran) are not made twice. */
static void record_unloads(const snapshot *s, uint32_t since)
{
    lock();
    uint32_t n = atomic_load_explicit(&nrecords, memory_order_relaxed);
    uintptr_t gen = atomic_load(&rpp_gen_bits) >> RPP_GEN_SHIFT;
    int added = 0;
    for (size_t i = 0; i < s->n && records && paths && gen < RPP_GEN_MAX && n < RPP_GEN_MAX; i++) {
        const seen *e = &s->objs[i];
        if (!e->gone)
            continue;
        int twice = 0;
        for (uint32_t j = since; j < n && !twice; j++)
            twice = records[j].obj.base == e->m.obj.base && records[j].obj.lo == e->m.obj.lo &&
                    records[j].obj.hi == e->m.obj.hi && strcmp(records[j].path, e->m.path) == 0;
        size_t plen = strlen(e->m.path) + 1;
        if (twice || paths_used + plen > PATH_ARENA)
            continue;
        rpp_unloaded *r = &records[n];
        *r = e->m;
        memcpy(paths + paths_used, e->m.path, plen);
        r->path = paths + paths_used;
        paths_used += plen;
        r->gen_end = (uint32_t)gen;
        n++;
        added = 1;
    }
    if (added) {
        atomic_store_explicit(&nrecords, n, memory_order_release);
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
    /* Only a handle the loader knows can unmap anything: then everything
       mapped is described first (the handle's object and the dependencies
       that go with it are unmapped by the real dlclose). */
    struct link_map *lm = NULL;
    snapshot before;
    int taken = 0;
    uint32_t since = 0;
    void *volatile h = handle;   /* declared nonnull, but programs do pass NULL */
    if (h && dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm) {
        since = rpp_unloaded_count();
        taken = snapshot_take(&before);
    }
    if (taken) {
        /* mapped before the objects go, so it cannot take their place */
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
    if (taken) {
        if (rc == 0) {
            dl_iterate_phdr(mark_kept, &before);
            record_unloads(&before, since);
        }
        snapshot_drop(&before);
    }
    return rc;
}
