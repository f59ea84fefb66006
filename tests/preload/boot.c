/* Blocks from the interposer's bootstrap buffer in the program's hands
   (made by tests/preload/libs/bootdl.c while the interposer resolved the
   real functions): what each call returned, then the program uses them as
   it would glibc's -- usable size, contents, realloc (larger than the
   buffer, to 0), free; last, the blocks bootdl.c made until the buffer
   was full, and a malloc(0) made then, are freed. Without the interposer the same calls reach glibc
   (made when this program calls dlsym), so the two outputs must be equal.
   One leak, LEAK-BR (the realloc of a bootstrap block), for the report.
   Exits 77 when libbootdl.so is not preloaded. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bootdl_call {
    void *p;
    int err;
    int rc;
} bootdl_call;

static const char *const names[] = {
    "malloc(100)", "calloc(10, 10)", "malloc(40)", "realloc(p, 0)", "pvalloc(10)",
    "memalign(SIZE_MAX, 10)", "aligned_alloc(SIZE_MAX/2+2, 10)", "memalign(48, 10)",
    "aligned_alloc(200, 10)", "posix_memalign(SIZE_MAX/2+1, 10)", "pvalloc(SIZE_MAX-100)",
    "calloc(1, 64)", "malloc(1 MiB)", "malloc(24)",
};
enum { N = sizeof names / sizeof names[0], CALLOC_AFTER = 11, TOO_BIG = 12 };
static void *keep;

static int all(const void *p, int byte, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != byte)
            return 0;
    return 1;
}

int main(void)
{
    bootdl_call *out = dlsym(RTLD_DEFAULT, "bootdl_out");
    if (!out)
        return 77;
    for (int i = 0; i < N; i++) {
        if (i == TOO_BIG)   /* the buffer's limit, not glibc's */
            continue;
        const bootdl_call *c = &out[i];
        printf("%s: %s errno=%d", names[i], c->p ? "block" : "NULL", c->err);
        if (i == 9)
            printf(" rc=%d", c->rc);
        if (c->p && i >= 5 && i <= 9)
            printf(" aligned=%d", (uintptr_t)c->p % (i == 5 || i == 6 ? 1 : i == 7 ? 64 : 256) == 0);
        printf("\n");
    }
    size_t *usable = dlsym(RTLD_DEFAULT, "bootdl_usable");
    printf("usable size of a glibc block: >= 10: %d\n", *usable >= 10);
    void *m = out[0].p, *cz = out[1].p, *src = out[2].p, *pv = out[4].p;
    printf("usable(malloc(100)) >= 100: %d, contents kept: %d\n",
           malloc_usable_size(m) >= 100, all(m, 0x5a, 100));
    printf("calloc zeroed: %d %d\n", all(cz, 0, 100), all(out[CALLOC_AFTER].p, 0, 64));
    if (pv)
        printf("pvalloc: usable >= 4096: %d, contents kept: %d\n",
               malloc_usable_size(pv) >= 4096, all(pv, 0x77, 4096));
    /* realloc larger than the whole bootstrap buffer: contents move */
    keep = realloc(src, 1 << 20); /* LEAK-BR */
    printf("realloc(boot, 1 MiB): %s, contents kept: %d\n", keep ? "block" : "NULL",
           keep && all(keep, 0x33, 40));
    errno = -1;
    void *z = realloc(m, 0);
    printf("realloc(boot, 0): %s errno=%d\n", z ? "block" : "NULL", errno);
    free(z);
    free(cz);
    free(pv);
    free(out[3].p);   /* realloc(p, 0) freed p: NULL, or a new block */
    for (int i = 5; i <= TOO_BIG; i++)
        if (i != 9)
            free(out[i].p);
    if (out[9].rc == 0)
        free(out[9].p);
    /* a full bootstrap buffer: what it still hands out is its own */
    int *nfill = dlsym(RTLD_DEFAULT, "bootdl_nfill");
    void **fill = dlsym(RTLD_DEFAULT, "bootdl_fill");
    void **zero = dlsym(RTLD_DEFAULT, "bootdl_zero_when_full");
    for (int i = 0; i < *nfill; i++)
        free(fill[i]);
    if (*zero)
        malloc_usable_size(*zero);
    free(*zero);
    puts("full buffer: blocks freed");
    puts("boot done");
    return 0;
}
