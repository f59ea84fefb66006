/*
 * maps.c -- the calls that take memory away from the program, noted for
 * the stack walker.
 *
 * The walker (csrc/stack/unwind.c) remembers, per thread, which stack pages
 * it found readable, and re-reads the stack words its last walks read (its
 * memo, its kept walks by place, its splices): it never checks a page twice.
 * A page it checked may be unmapped or made unreadable later -- the stack
 * of a coroutine, or one a program switches to with inline assembly, whose
 * unwind tables put the caller past that stack's end -- and then a walk
 * from the same place would read it and fault (tests/stacks/odd.c,
 * stale-*). Every call below that can make a page unreadable starts a new
 * walk generation (rpi_unwind_forget_memory): a thread's next walk checks
 * its pages again, and no walk of an older generation is re-read; and
 * the unmapped range is named, so that the walker's cached rules of
 * addresses there that lay outside every module (code made at run time)
 * go before a library can be loaded there. The walker pays one compare a
 * walk for it (the generation it already loads), nothing a frame; the
 * calls pay an atomic add after their system call (and, for a range where
 * such rules were made, a scan of the rules).
 *
 * Each is the system call itself (syscall(2), as glibc's wrapper is on
 * x86-64), not the next definition found with dlsym: async-signal-safe,
 * callable before the interposer is set up, and from the interposer's own
 * mmap calls. Not seen here: glibc's own calls (free and realloc of a
 * block glibc mapped on its own, which hooks.c notes; the trimming of
 * malloc's heaps; the loader's) and system calls a program makes without
 * libc. x86-64 Linux only, where the walker runs (elsewhere every stack
 * comes from libunwind, and these system calls take other arguments).
 */
#include "rpp.h"
#include "stack.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__linux__)

#define RPP_EXPORT __attribute__((visibility("default")))

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102   /* Linux 6.13: reads of the range fault */
#endif

RPP_EXPORT int munmap(void *addr, size_t len)
{
    int r = (int)syscall(SYS_munmap, addr, len);
    rpi_unwind_forget_memory((uintptr_t)addr, (uintptr_t)addr + len);
    return r;
}

RPP_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *to = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    void *r = (void *)syscall(SYS_mremap, old, old_len, new_len, flags, to);
    rpi_unwind_forget_memory((uintptr_t)old, (uintptr_t)old + old_len);
    return r;
}

/* Only a protection without read access takes pages away. */
RPP_EXPORT int mprotect(void *addr, size_t len, int prot)
{
    int r = (int)syscall(SYS_mprotect, addr, len, prot);
    if (!(prot & PROT_READ))
        rpi_unwind_forget_memory(0, 0);
    return r;
}

#ifdef SYS_pkey_mprotect
RPP_EXPORT int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
{
    int r = (int)syscall(SYS_pkey_mprotect, addr, len, prot, pkey);
    rpi_unwind_forget_memory(0, 0);   /* the key may deny reads */
    return r;
}
#endif

/* A fixed mapping replaces what was there (with PROT_NONE, or a file
   shorter than the mapping: pages that fault); any other mapping takes
   only unmapped pages. */
RPP_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *r = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    if ((flags & MAP_FIXED) && r != MAP_FAILED)
        rpi_unwind_forget_memory((uintptr_t)addr, (uintptr_t)addr + len);
    return r;
}

RPP_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

RPP_EXPORT int madvise(void *addr, size_t len, int advice)
{
    int r = (int)syscall(SYS_madvise, addr, len, advice);
    if (advice == MADV_GUARD_INSTALL)
        rpi_unwind_forget_memory(0, 0);
    return r;
}

RPP_EXPORT int shmdt(const void *addr)
{
    int r = (int)syscall(SYS_shmdt, addr);
    rpi_unwind_forget_memory(0, 0);
    return r;
}

#endif
