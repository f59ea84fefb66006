/* A program that runs a "cycle" N times in one process, with a known residue
 * per cycle, for `ringpool-audit run --cycles`:
 *
 *   cycles N          malloc: leak_twice() leaves 2 blocks of 48 bytes per cycle,
 *                     remember_once() 1000 bytes in the first cycle only, and
 *                     scratch() frees what it allocates
 *   cycles N pool     the same in a ringpool pool (not destroyed: its report is
 *                     written at exit): tag "residue" 1 block of 64 bytes per cycle,
 *                     tag "once" 500 bytes in cycle 1, tag "temp" freed
 *   cycles N fail     exits 3 after the cycles
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringpool.h"

struct node { struct node *next; char payload[40]; };
static struct node *kept;
static void *once;

__attribute__((noinline)) static void leak_twice(void)
{
    for (int i = 0; i < 2; i++) {
        struct node *n = malloc(sizeof *n);     /* 48 bytes */
        if (n == NULL)
            exit(1);
        n->next = kept;
        kept = n;
    }
}

__attribute__((noinline)) static void remember_once(void)
{
    if (once == NULL && (once = malloc(1000)) == NULL)
        exit(1);
}

__attribute__((noinline)) static void scratch(void)
{
    char *volatile p = malloc(300);
    if (p == NULL)
        exit(1);
    memset(p, 1, 300);
    free(p);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: cycles N [pool|fail]\n");
        return 1;
    }
    long n = strtol(argv[1], NULL, 10);
    int pool_mode = argc == 3 && strcmp(argv[2], "pool") == 0;
    rp_pool *pool = pool_mode ? rp_pool_create("cycles") : NULL;
    for (long i = 0; i < n; i++) {
        if (pool_mode) {
            if (rp_alloc(pool, 64, "residue") == NULL || (i == 0 && rp_alloc(pool, 500, "once") == NULL))
                return 1;
            rp_free(rp_alloc(pool, 32, "temp"));
        } else {
            remember_once();
            leak_twice();
            scratch();
        }
    }
    printf("%ld cycles\n", n);
    return argc == 3 && strcmp(argv[2], "fail") == 0 ? 3 : 0;
}
