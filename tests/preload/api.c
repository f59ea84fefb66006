/* The rest of the malloc family under the interposer: errno preserved on
   success and set on failure, alignment honoured, malloc_usable_size still
   right, realloc(p, 0) and reallocarray overflow, and one leak per aligned
   call (LEAK-AL, LEAK-MA, LEAK-PM, LEAK-VA, LEAK-PV) for the test to check.
   Exits non-zero, naming the check, when something is wrong. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "api: check failed line %d: %s\n", __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static void *keep[8];

static int aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

int main(void)
{
    /* errno untouched by successful calls */
    errno = 4242;
    void *p = malloc(100);
    CHECK(p && errno == 4242);
    p = realloc(p, 5000);
    CHECK(p && errno == 4242);
    CHECK(malloc_usable_size(p) >= 5000);
    free(p);
    CHECK(errno == 4242);
    void *c = calloc(10, 10);
    CHECK(c && errno == 4242);
    for (int i = 0; i < 100; i++)
        CHECK(((unsigned char *)c)[i] == 0);
    free(c);

    /* failures set errno like glibc does */
    volatile size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2, four = 4;
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(half, four) == NULL && errno == ENOMEM);
    errno = 0;
    void *volatile r = malloc(16);
    CHECK(reallocarray(r, half, four) == NULL && errno == ENOMEM);
    free(r);              /* still valid after the failed reallocarray */
    void *q = NULL;
    CHECK(posix_memalign(&q, 24, 10) == EINVAL && q == NULL);

    /* realloc(p, 0) frees p in glibc; malloc(0) is a unique pointer */
    void *z = malloc(0);
    CHECK(z != NULL);
    free(z);
    void *f = malloc(50);
    f = realloc(f, 0);
    free(f);

    /* aligned family: alignment and usable size */
    keep[0] = aligned_alloc(64, 100); /* LEAK-AL */
    CHECK(keep[0] && aligned_to(keep[0], 64) && malloc_usable_size(keep[0]) >= 100);
    keep[1] = memalign(128, 50); /* LEAK-MA */
    CHECK(keep[1] && aligned_to(keep[1], 128));
    CHECK(posix_memalign(&keep[2], 256, 70) == 0); /* LEAK-PM */
    CHECK(aligned_to(keep[2], 256));
    keep[3] = valloc(33); /* LEAK-VA */
    CHECK(keep[3] && aligned_to(keep[3], 4096));
    keep[4] = pvalloc(10); /* LEAK-PV */
    CHECK(keep[4] && aligned_to(keep[4], 4096) && malloc_usable_size(keep[4]) >= 4096);
    void *big = aligned_alloc(4096, 1 << 20);
    CHECK(big && aligned_to(big, 4096));
    memset(big, 1, 1 << 20);
    free(big);

    if (failures)
        return 1;
    fputs("api ok\n", stdout);
    return 0;
}
