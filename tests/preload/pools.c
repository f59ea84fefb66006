/* A program that uses libringpool pools and plain malloc, run under the
   interposer: pool blocks (allocated by libringpool with malloc backing) must
   not be counted twice. Leaks 5 x 100 B under tag "tokens" in a pool that is
   never destroyed, and one plain malloc (LEAK-D). argv[1]: where to write
   the pool's own report. */
#include <ringpool.h>
#include <stdlib.h>

static void *keep;

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    rp_pool *pool = rp_pool_create("plugin");
    for (int i = 0; i < 5; i++)
        rp_alloc(pool, 100, "tokens");
    rp_free(rp_alloc(pool, 50, "scratch"));
    keep = malloc(64); /* LEAK-D */
    return rp_pool_write_report(pool, argv[1]) == 0 ? 0 : 1;
}
