/* A C user of an installed ringpool, built by the CMake and Meson projects
 * beside it (and by hand against libringpool.a): one pool, blocks under two
 * tags, the by-tag counters checked, everything freed by the destroy. */
#include <stdio.h>
#include <string.h>

#include <ringpool.h>

int main(void)
{
    rp_pool *pool = rp_pool_create("consumer");
    size_t bytes = 0;
    for (int i = 0; i < 3; i++)
        memset(rp_alloc(pool, 64, "rows"), 0, 64);
    char *name = rp_strdup(pool, "consumer", "names");
    rp_free(name);
    size_t blocks = rp_pool_outstanding(pool, &bytes);
    rp_pool_destroy(pool);
    if (blocks != 3 || bytes != 192) {
        fprintf(stderr, "consumer: %zu blocks, %zu bytes outstanding; expected 3, 192\n", blocks, bytes);
        return 1;
    }
    printf("consumer: ringpool %d.%d.%d, 3 blocks, 192 bytes\n", RINGPOOL_VERSION_MAJOR,
           RINGPOOL_VERSION_MINOR, RINGPOOL_VERSION_PATCH);
    return 0;
}
