/* swap_common.h -- what the programs that load a library where an unloaded
 * one was (dlswap.c, depswap.c, dlreload.c) share, each function inline so
 * that a program using only some of them has no unused function: dlopen and
 * dlsym that end the program when they fail (exit status 2 and 3), the load address of
 * the object holding a function, and the warm-up of the interposer's side
 * tables (they grow with mmap, and a growth right after the unload could
 * take the freed addresses). */
#ifndef SWAP_COMMON_H
#define SWAP_COMMON_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static inline void *open_lib(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    return h;
}

static inline void *sym(void *h, const char *name)
{
    void *f = dlsym(h, name);
    if (!f)
        exit(3);
    return f;
}

static inline void *base_of(void *f)
{
    Dl_info info;
    return dladdr(f, &info) ? info.dli_fbase : NULL;
}

static inline void warm_side_tables(void)
{
    static void *warm[20000];
    for (int i = 0; i < 20000; i++)
        warm[i] = malloc(16);
    for (int i = 0; i < 20000; i++)
        free(warm[i]);
}

#endif
