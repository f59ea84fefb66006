/* A plugin for dlswap.c: leaks one block per call at a marked line, so a
 * test can tell which library's code made it. plugin_a.c and plugin_b.c
 * are the same but for their names, so the second is mapped where the
 * first was once it is unloaded. */
#include <stdlib.h>
#include <string.h>

static void *kept[64];
static int nkept;

void *plugin_a_leak(size_t n)
{
    void *p = malloc(n); /* LEAK-PLUGIN-A */
    if (p && nkept < 64) {
        memset(p, 0, n);
        kept[nkept++] = p;
    }
    return p;
}
