/* An unmodified program (no libringpool) for `ringpool-audit run --preload`:
 * leaks 3 x 100 bytes from one line and 1 x 7 bytes from another, frees the
 * rest, and exits with status 3 (which run must pass on). The lines marked
 * SITE-* are looked up by the test. */
#include <stdlib.h>
#include <string.h>

static void *volatile keep[4];

__attribute__((noinline)) static void *make_entry(void)
{
    return malloc(100); /* SITE-ENTRY */
}

__attribute__((noinline)) static void *make_name(void)
{
    char *p = malloc(7); /* SITE-NAME */
    memcpy(p, "leaked", 7);
    return p;
}

int main(void)
{
    for (int i = 0; i < 3; i++)
        keep[i] = make_entry();
    keep[3] = make_name();
    for (int i = 0; i < 5; i++)
        free(malloc(5000));
    return 3;
}
