/*
 * stacks.c -- whole stacks for the interposer: configuration and the glue
 * between the hooks and the stack table (csrc/stack/stack.h).
 *
 * A site is keyed by a return address (one-frame mode) or by a stack id with
 * RPP_STACK_BIT set; both kinds may meet in one report (a signal handler's
 * allocation that interrupted a capture is recorded under its caller alone).
 */
#include "rpp.h"
#include "stack.h"
#include "rawmem.h"

#include <elf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

int rpp_stack_depth = RPP_DEFAULT_STACK_DEPTH;

/* The site of each stack id in the generation it was last seen in: the
   site map (a per-thread cache of 256 keys in front of a locked shared
   map) missed on most allocations of a program with thousands of stacks
   (gcc's cc1: 10,000). One word per id, ((generation + 1) << 32) | site,
   written whole (threads that race write the same value), 0 when unknown;
   reserved for every id, touched as ids are handed out. */
static _Atomic uint64_t *site_by_stack;

/* The interposer's own code, whose frames never start a stack. The linker
   defines __ehdr_start at this object's ELF header, so the range is read
   without calling the loader. */
extern const char __ehdr_start[] __attribute__((visibility("hidden")));
static uintptr_t self_lo, self_hi;

static void find_self(void)
{
    /* copied out: the linker gives the symbol no size of its own */
    ElfW(Ehdr) eh;
    memcpy(&eh, __ehdr_start, sizeof eh);
    uintptr_t base = (uintptr_t)__ehdr_start, lo = UINTPTR_MAX, hi = 0;
    uintptr_t first = UINTPTR_MAX;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < eh.e_phnum; i++) {
            ElfW(Phdr) ph;
            memcpy(&ph, __ehdr_start + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
            if (ph.p_type != PT_LOAD)
                continue;
            if (pass == 0) {
                if (ph.p_vaddr < first)
                    first = ph.p_vaddr;
                continue;
            }
            if (!(ph.p_flags & PF_X))
                continue;
            uintptr_t a = base + ph.p_vaddr - first;
            if (a < lo)
                lo = a;
            if (a + ph.p_memsz > hi)
                hi = a + ph.p_memsz;
        }
    }
    self_lo = lo;
    self_hi = hi;
}

void rpp_stacks_init(void)
{
    /* getenv may run before the C library set up the environment (the first
       malloc can come from another library's start-up): then the variable
       is read again from the interposer's constructor. */
    const char *v = getenv("RINGPOOL_PRELOAD_STACK_DEPTH");
    int depth = rpp_stack_depth;
    if (v && *v) {
        long n = 0;
        const char *c = v;
        for (; *c >= '0' && *c <= '9' && n <= RPI_STACK_MAX_DEPTH; c++)
            n = n * 10 + (*c - '0');
        if (*c || n < 1 || n > RPI_STACK_MAX_DEPTH) {
            rpp_say("RINGPOOL_PRELOAD_STACK_DEPTH=", v,
                    ": expected a number of frames from 1 to 256; recording 1 frame");
            depth = 1;
        } else {
            depth = (int)n;
        }
    }
    if (depth > 1 && !self_hi) {
        find_self();
        rpi_stack_set_self(self_lo, self_hi);
        site_by_stack = rpi_map_zeroed((size_t)RPI_STACK_MAX_STACKS * sizeof *site_by_stack);
        if (!site_by_stack || rpi_stack_init() != 0) {
            rpp_say("cannot map the stack table: ", "recording 1 frame per block", "");
            depth = 1;
        }
    }
    /* the cached walker unless RINGPOOL_PRELOAD_UNWINDER=libunwind */
    const char *u = getenv("RINGPOOL_PRELOAD_UNWINDER");
    if (u && *u) {
        if (strcmp(u, "libunwind") == 0)
            rpi_stack_use_fast_unwinder(0);
        else if (strcmp(u, "cached") == 0)
            rpi_stack_use_fast_unwinder(1);
        else
            rpp_say("RINGPOOL_PRELOAD_UNWINDER=", u, ": expected cached or libunwind; using cached");
    }
    rpp_stack_depth = depth;
}

/* Out of line: inlined, the capture's registers and frame would be saved
   and set up on every allocation, one-frame mode included. */
__attribute__((noinline)) uintptr_t rpp_stack_key(uintptr_t pc)
{
    uint32_t id = rpi_stack_here(rpp_stack_depth, pc);
    return id ? RPP_STACK_KEY(id) : pc;
}


/* The same from a hook that knows its own frame: fp is its frame pointer
   (fp[1] its return address, pc when the hook was jumped to from the
   exported function), so the walk starts at pc's frame. Returns the site
   id (rpp_site_for of the site key). */
__attribute__((noinline)) uint32_t rpp_stack_site_at(uintptr_t pc, const uintptr_t *fp)
{
    uint32_t id = rpi_stack_here_at(rpp_stack_depth, pc, (uintptr_t)(fp + 2), fp[0]);
    uintptr_t gen = atomic_load_explicit(&rpp_gen_bits, memory_order_relaxed);
    if (!id)
        return rpp_site_for(pc | gen);
    uint64_t gen1 = (uint64_t)(gen >> RPP_GEN_SHIFT) + 1;
    _Atomic uint64_t *e = &site_by_stack[id];
    uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
    if (RPP_LIKELY(v >> 32 == gen1))    /* the high half compared as it is */
        return (uint32_t)v;
    uint64_t tag = gen1 << 32;
    uint32_t site = rpp_site_for(RPP_STACK_KEY(id) | gen);
    if (site)
        atomic_store_explicit(e, tag | site, memory_order_relaxed);
    return site;
}

size_t rpp_site_frames(uintptr_t key, const uintptr_t **frames, uintptr_t *one)
{
    if (key & RPP_STACK_BIT) {
        size_t n = rpi_stack_get((uint32_t)(key & ~RPP_STACK_BIT), frames);
        if (n)
            return n;
    }
    *one = key;
    *frames = one;
    return 1;
}
