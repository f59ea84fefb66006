/*
 * hello.c -- a first ringpool program: a pool, blocks under several tags,
 * one tag that leaks on purpose, and the by-tag report that catches it.
 *
 * Build against an installed ringpool:
 *     cc hello.c $(pkg-config --cflags --libs ringpool) -o hello
 * Run it with RINGPOOL_REPORT=leaks-%n.json to get the JSON report as well.
 */
#include <stdio.h>
#include <string.h>

#include <ringpool.h>

static void print_by_tag(rp_pool *pool)
{
    rp_tag_stat st[16];
    size_t bytes = 0;
    size_t blocks = rp_pool_outstanding(pool, &bytes);
    size_t n = rp_pool_stats(pool, st, 16), i;
    printf("pool '%s' contains %zu bytes in %zu blocks\n", rp_pool_name(pool), bytes,
           blocks);
    printf("  %-12s %8s %8s %10s %8s\n", "tag", "blocks", "bytes", "peak", "allocs");
    for (i = 0; i < n && i < 16; i++)
        printf("  %-12s %8zu %8zu %10zu %8llu%s\n", st[i].tag, st[i].blocks,
               st[i].bytes, st[i].peak_bytes, (unsigned long long)st[i].allocs,
               st[i].blocks ? "   <- outstanding" : "");
}

int main(void)
{
    rp_pool *pool = rp_pool_create("hello");
    char *words[8];
    int i;

    /* config: one string, kept until the end, then freed */
    char *greeting = rp_strconcat(pool, "config", 3, "hello", ", ", "ringpool");

    /* tokens: a batch of short strings, all freed */
    for (i = 0; i < 8; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "word-%d", i);
        words[i] = rp_strdup(pool, buf, "tokens");
    }

    /* cache: grows by resizing; two entries are forgotten on purpose */
    for (i = 0; i < 3; i++) {
        double *cache = rp_calloc(pool, 4, sizeof(double), "cache");
        cache = rp_resize(pool, cache, 64 * sizeof(double));
        cache[63] = i;
        if (i == 0)
            rp_free(cache); /* the other two leak */
    }

    puts(greeting);
    for (i = 0; i < 8; i++)
        rp_free(words[i]);
    rp_free(greeting);

    print_by_tag(pool);
    /* The report (if $RINGPOOL_REPORT is set) is written here, then every
       outstanding block -- the two leaked cache entries -- is freed in bulk. */
    rp_pool_destroy(pool);
    return 0;
}
