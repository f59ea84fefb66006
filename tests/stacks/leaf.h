/* The allocation the stack tests repeat from many places (splice.c,
   slots.c): by malloc, calloc or realloc (grown once more), chosen by n;
   freed at once, the stack being recorded either way. Each hook starts
   its walk at its caller's frame, found from its own. */
#ifndef STACKS_TEST_LEAF_H
#define STACKS_TEST_LEAF_H

#include <stdlib.h>

static void *volatile sink;

__attribute__((noinline)) static void leaf(size_t n)
{
    char *p;
    switch (n % 3) {
    case 0:
        p = malloc(n);
        break;
    case 1:
        p = calloc(1, n);
        break;
    default:
        p = realloc(NULL, n);
        if (p)
            p = realloc(p, n + 8);
        break;
    }
    if (!p)
        abort();
    p[0] = (char)n;
    sink = p;
    free(p);
}

#endif
