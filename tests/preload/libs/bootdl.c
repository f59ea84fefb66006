/* Allocations made while the interposer resolves the real functions.
 * Loaded ahead of it (LD_PRELOAD="this:interposer"), this library defines
 * dlsym, so the interposer's first dlsym call comes here with the
 * interposer resolving: every allocation made here is served by its
 * bootstrap buffer, as those of glibc's own dlsym would be. Then the real
 * dlsym answers (RTLD_NEXT is looked up in libc, which is where the
 * interposer's next definitions are). The blocks and what each call
 * returned are left in bootdl_out for tests/preload/boot.c. With
 * BOOTDL_FILL=0 the buffer is not filled: the last block is a malloc(0).
 * With BOOTDL_EXIT=N (or EN) it calls _exit(N) (or _Exit(N)) there. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bootdl_call {
    void *p;       /* what the call returned */
    int err;       /* errno after it (set to -1 before) */
    int rc;        /* posix_memalign's result */
} bootdl_call;

enum { BOOT_MALLOC, BOOT_CALLOC, BOOT_REALLOC_SRC, BOOT_REALLOC0, BOOT_PVALLOC,
       BOOT_MEMALIGN_HUGE, BOOT_ALIGNED_HUGE, BOOT_MEMALIGN_ODD, BOOT_ALIGNED_ODD,
       BOOT_PM_HUGE, BOOT_PVALLOC_HUGE, BOOT_CALLOC_AFTER, BOOT_TOO_BIG, BOOT_FOR_REALLOC0,
       BOOT_CALLS };
__attribute__((visibility("default"))) bootdl_call bootdl_out[BOOT_CALLS];
__attribute__((visibility("default"))) int bootdl_ran;
/* Last, the buffer is filled to its end: a 32-aligned block, then 1-byte
   blocks (32 bytes apart) until the buffer refuses one, then malloc(0),
   which then finds the buffer's end exactly (glibc never refuses, so
   BOOTDL_FILL bounds the loop; about a quarter of it fills the buffer). */
#define BOOTDL_FILL 32768
__attribute__((visibility("default"))) void *bootdl_fill[BOOTDL_FILL];
__attribute__((visibility("default"))) int bootdl_nfill;
__attribute__((visibility("default"))) void *bootdl_zero_when_full;

static void *(*real_dlsym)(void *, const char *);

static void note(int i, void *p)
{
    bootdl_out[i].p = p;
    bootdl_out[i].err = errno;
}

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
__attribute__((visibility("default"))) size_t bootdl_usable;   /* of a glibc block */

static void allocate(void)
{
    volatile size_t max = SIZE_MAX;
    const char *code = getenv("BOOTDL_EXIT");
    if (code && *code) {              /* _exit from inside the resolution */
        if (code[0] == 'E')
            _Exit(atoi(code + 1));
        _exit(atoi(code));
    }
    /* a block the interposer never saw, asked about while it resolves */
    void *g = __libc_malloc(10);
    bootdl_usable = malloc_usable_size(g);
    __libc_free(g);
    errno = -1;
    note(BOOT_MALLOC, malloc(100));
    memset(bootdl_out[BOOT_MALLOC].p, 0x5a, 100);
    errno = -1;
    note(BOOT_CALLOC, calloc(10, 10));
    errno = -1;
    note(BOOT_REALLOC_SRC, malloc(40));
    memset(bootdl_out[BOOT_REALLOC_SRC].p, 0x33, 40);
    errno = -1;
    note(BOOT_FOR_REALLOC0, malloc(24));
    errno = -1;
    note(BOOT_REALLOC0, realloc(bootdl_out[BOOT_FOR_REALLOC0].p, 0));
    errno = -1;
    note(BOOT_PVALLOC, pvalloc(10));
    if (bootdl_out[BOOT_PVALLOC].p)           /* pvalloc's block is whole pages */
        memset(bootdl_out[BOOT_PVALLOC].p, 0x77, 4096);
    errno = -1;
    note(BOOT_MEMALIGN_HUGE, memalign(max, 10));
    errno = -1;
    note(BOOT_ALIGNED_HUGE, aligned_alloc(max / 2 + 2, 10));
    errno = -1;
    note(BOOT_MEMALIGN_ODD, memalign(48, 10));
    errno = -1;
    note(BOOT_ALIGNED_ODD, aligned_alloc(200, 10));
    errno = -1;
    bootdl_out[BOOT_PM_HUGE].rc = posix_memalign(&bootdl_out[BOOT_PM_HUGE].p, max / 2 + 1, 10);
    bootdl_out[BOOT_PM_HUGE].err = errno;
    errno = -1;
    note(BOOT_PVALLOC_HUGE, pvalloc(max - 100));
    errno = -1;
    note(BOOT_TOO_BIG, malloc(1u << 20));
    errno = -1;
    note(BOOT_CALLOC_AFTER, calloc(1, 64));   /* zeroed, whatever came before */
    const char *fill = getenv("BOOTDL_FILL");
    if (fill && *fill == '0') {       /* the last bootstrap block: 0 bytes */
        bootdl_zero_when_full = malloc(0);
        return;
    }
    int n = 0;
    bootdl_fill[n++] = memalign(32, 1);
    while (n < BOOTDL_FILL && (bootdl_fill[n] = malloc(1)) != NULL)
        n++;
    bootdl_nfill = n;
    bootdl_zero_when_full = malloc(0);
}

__attribute__((visibility("default"))) void *dlsym(void *handle, const char *name)
{
    if (!real_dlsym) {
        *(void **)&real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
        if (!real_dlsym)
            *(void **)&real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
        if (!real_dlsym)
            abort();
    }
    static void *libc;
    if (!bootdl_ran) {
        bootdl_ran = 1;
        libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);   /* before the buffer is full */
        allocate();
    }
    if (handle == RTLD_NEXT)
        return libc ? real_dlsym(libc, name) : NULL;
    return real_dlsym(handle, name);
}
