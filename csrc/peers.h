/*
 * peers.h -- the peer allocators of the benchmarks (mimalloc, jemalloc,
 * talloc, APR), opened at run time with dlopen: the comparisons need none
 * of their headers, and run without a peer that is not installed.
 *
 * For the benchmarks only, not part of the library: benches/c/bench.c,
 * contention.c and replay.c, and the kernel of `ringpool-audit bench`
 * (audit/_bench_kernel.c, built into the wheel, which carries csrc/ but not
 * benches/) include it.
 */
#ifndef RPI_PEERS_H
#define RPI_PEERS_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A symbol to look up, and the function pointer that receives it. */
typedef struct rpi_peer_sym {
    const char *name;
    void *slot;                 /* the address of a function pointer */
} rpi_peer_sym;

#define RPI_PEER_NSYMS(syms) (sizeof(syms) / sizeof((syms)[0]))

/* Opens soname (RTLD_NOW | RTLD_LOCAL; it stays loaded) and stores the
   address of each of the n symbols in its slot. The handle; NULL when the
   object cannot be opened or a symbol is missing, and then why (when not
   NULL) says which, in at most whysize bytes (when NULL, dlerror() still
   tells). */
static inline void *rpi_peer_open(const char *soname, const rpi_peer_sym *syms, size_t n,
                                  char *why, size_t whysize)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        if (why != NULL) {
            const char *e = dlerror();
            snprintf(why, whysize, "%s: %s", soname, e ? e : "cannot be opened");
        }
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        void *p = dlsym(h, syms[i].name);
        if (p == NULL) {
            if (why != NULL)
                snprintf(why, whysize, "symbol %s not found", syms[i].name);
            return NULL;
        }
        /* ISO C has no cast between object and function pointers: the
           address is copied (POSIX makes their representations the same) */
        memcpy(syms[i].slot, &p, sizeof p);
    }
    return h;
}

#endif /* RPI_PEERS_H */
