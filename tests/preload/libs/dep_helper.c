/* A library that only libdep_top.so needs (DT_NEEDED): dlclose of the
 * handle of libdep_top.so unmaps this one too, though no handle names it
 * (depswap.c). Leaks one block per call at a marked line. */
#include <stdlib.h>
#include <string.h>

static void *kept[64];
static int nkept;

void *dep_helper_leak(size_t n)
{
    void *p = malloc(n); /* LEAK-DEP-HELPER */
    if (p && nkept < 64) {
        memset(p, 0, n);
        kept[nkept++] = p;
    }
    return p;
}
