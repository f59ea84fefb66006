/* Built by the install tests against the header and library that came with
 * the wheel (ringpool-audit config --cflags --libs). Writes two reports of
 * one pool to DIR: before.json (2 x 100 bytes under "cache") and after.json
 * (3 x 100 under "cache", 1 x 48 under "session", "scratch" freed). */
#include <stdio.h>
#include <string.h>

#include <ringpool.h>

static int write_report(rp_pool *pool, const char *dir, const char *name)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path || rp_pool_write_report(pool, path) != 0) {
        fprintf(stderr, "reports: cannot write %s/%s\n", dir, name);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: reports DIR\n");
        return 1;
    }
    rp_pool *pool = rp_pool_create("app");
    for (int i = 0; i < 2; i++)
        memset(rp_alloc(pool, 100, "cache"), 0, 100);
    if (write_report(pool, argv[1], "before.json"))
        return 1;
    memset(rp_alloc(pool, 100, "cache"), 0, 100);
    memset(rp_alloc(pool, 48, "session"), 0, 48);
    rp_free(rp_alloc(pool, 4000, "scratch"));
    if (write_report(pool, argv[1], "after.json"))
        return 1;
    rp_pool_destroy(pool);
    puts("reports written");
    return 0;
}
