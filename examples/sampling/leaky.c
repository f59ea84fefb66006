/* leaky.c -- a workload for the sampling demo: three call sites keep what
   they allocate (many small blocks, some pages, a few large buffers) and a
   fourth allocates and frees 50 MB. Run it under the interposer counting
   every block, then sampling:
       ringpool-audit run --preload -- ./leaky
       ringpool-audit run --preload --sample-rate 1e-3 -- ./leaky
   and compare the estimates with the exact counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP_MAX 60000
static void *keep[KEEP_MAX];
static int nkeep;

__attribute__((noinline)) static char *make_name(int i)
{
    char *s = malloc(48);
    snprintf(s, 48, "session-%06d", i);
    return s;
}

__attribute__((noinline)) static void cache_sessions(void)
{
    for (int i = 0; i < 50000; i++)          /* 50,000 x 48 B = 2.4 MB */
        keep[nkeep++] = make_name(i);
}

__attribute__((noinline)) static void map_pages(void)
{
    for (int i = 0; i < 1000; i++) {          /* 1,000 x 4 KiB = 4.1 MB */
        char *p = malloc(4096);
        memset(p, i & 0xff, 4096);
        keep[nkeep++] = p;
    }
}

__attribute__((noinline)) static void big_buffers(void)
{
    for (int i = 0; i < 8; i++)               /* 8 x 1 MiB = 8.4 MB */
        keep[nkeep++] = calloc(1, 1 << 20);
}

__attribute__((noinline)) static void churn(void)
{
    for (int i = 0; i < 100000; i++) {        /* 50 MB allocated, all freed */
        char *p = malloc(500);
        p[0] = (char)i;
        free(p);
    }
}

int main(void)
{
    cache_sessions();
    map_pages();
    big_buffers();
    churn();
    printf("leaky: %d blocks kept\n", nkeep);
    return 0;
}
