/* deep_pools.c -- a chain of N child pools (root, d0, d1, ...): the report of
   the innermost (its "parents", outermost first) to FILE, then a destroy of
   the root. Measured with callgrind on rp_pool_write_report alone:
     cc -O2 benches/c/deep_pools.c -Icsrc/include -Lbuild -Wl,-rpath,$PWD/build -lringpool -o /tmp/deep_pools
     valgrind --tool=callgrind --toggle-collect=rp_pool_write_report /tmp/deep_pools 10000 /tmp/deep.json */
#include <ringpool.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s N FILE\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    rp_pool *root = rp_pool_create("root"), *p = root;
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "d%ld", i);
        p = rp_pool_create_child(p, name);
    }
    int rc = rp_pool_write_report(p, argv[2]);
    rp_pool_destroy(root);
    return rc == 0 ? 0 : 1;
}
