/* A realloc or reallocarray that fails leaves its block allocated and
   changes nothing: a tracked block stays counted at its own site
   (LEAK-RF), and a block the interposer never saw (from __libc_malloc)
   is not counted as an untracked free. One such block is then realloc'd
   for real (LEAK-RS): one untracked free, and the new block counted.
   Exits non-zero, naming the check, when a call does not answer as
   glibc's does. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

static int failures;
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "realloc_fail: check failed line %d: %s\n", __LINE__, #cond); \
            failures++;                                                             \
        }                                                                           \
    } while (0)

static void *keep[2];

int main(void)
{
    volatile size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2, two = 2;
    void *volatile t = malloc(100); /* LEAK-RF; volatile: used after a failed realloc */
    memset(t, 0x11, 100);
    void *volatile u = __libc_malloc(50);
    memset(u, 0x22, 50);
    for (int round = 0; round < 3; round++) {
        errno = 0;
        CHECK(realloc(t, huge) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(reallocarray(t, huge, 1) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(reallocarray(t, half, two) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(realloc(u, huge) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(reallocarray(u, huge, 1) == NULL && errno == ENOMEM);
    }
    CHECK(((unsigned char *)t)[99] == 0x11 && ((unsigned char *)u)[49] == 0x22);
    keep[0] = t;
    keep[1] = realloc(u, 200); /* LEAK-RS */
    CHECK(keep[1] && ((unsigned char *)keep[1])[49] == 0x22);
    if (failures)
        return 1;
    puts("realloc_fail ok");
    return 0;
}
