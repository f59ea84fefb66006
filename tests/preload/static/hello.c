/* Linked statically (and as static-pie): the interposer cannot reach it, and
 * `ringpool-audit run --preload` must say so before running it. Creates the
 * file named by argv[1], so a test can tell whether it ran. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc > 1) {
        FILE *f = fopen(argv[1], "w");
        if (f)
            fclose(f);
    }
    free(malloc(10));
    puts("static hello");
    return 0;
}
