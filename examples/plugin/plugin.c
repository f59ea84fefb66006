/*
 * plugin.c -- a loadable module that allocates through the process-default
 * pool (rp_stat_*, the caml_stat_* model) and leaves nothing behind: each
 * session creates the default pool, leaks part of what it allocates, and
 * destroys the pool, which frees the rest in bulk.
 *
 *     cc -shared -fPIC plugin.c $(pkg-config --cflags --libs ringpool) -o plugin.so
 */
#include <string.h>

#include <ringpool.h>

#define PLUGIN_API __attribute__((visibility("default")))

/* One session of `rounds` rounds; returns a checksum the host compares
   between loads (the same on every load). */
PLUGIN_API long plugin_session(int rounds);

long plugin_session(int rounds)
{
    long sum = 0;
    rp_pool *own;
    int i;

    rp_stat_create_pool();
    own = rp_pool_create("plugin-private");
    for (i = 0; i < rounds; i++) {
        char num[12];
        char *name, *buf;
        int k = i % 10;
        num[0] = (char)('0' + k);
        num[1] = '\0';
        name = rp_stat_strconcat(3, "item-", num, ".dat");
        buf = rp_stat_alloc((size_t)(32 + 16 * k));
        memset(buf, k, (size_t)(32 + 16 * k));
        buf = rp_stat_resize(buf, (size_t)(64 + 16 * k));
        sum += (long)strlen(name) + buf[0];
        (void)rp_strdup(own, name, "private"); /* left for the bulk free */
        if (i % 3 != 0) { /* every third round leaks both blocks */
            rp_stat_free(name);
            rp_stat_free(buf);
        }
    }
    sum += (long)rp_pool_outstanding(rp_stat_pool(), NULL);
    rp_pool_destroy(own);
    rp_stat_destroy_pool();
    return sum;
}
