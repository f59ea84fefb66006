/* Ground truth for the sampling mode: three call sites leak 2 MB each in
   blocks of 100 B, 4 KiB and 100 kB; one site allocates and frees 40 MB.
   Each function is its own call site. */
#include <stdlib.h>
#include <string.h>

static void *keep[30000];
static int nkeep;

__attribute__((noinline)) static void leak_small(void)
{
    for (int i = 0; i < 20000; i++)
        keep[nkeep++] = malloc(100);          /* 2,000,000 bytes */
}

__attribute__((noinline)) static void leak_pages(void)
{
    for (int i = 0; i < 500; i++)
        keep[nkeep++] = malloc(4000);         /* 2,000,000 bytes */
}

__attribute__((noinline)) static void leak_large(void)
{
    for (int i = 0; i < 20; i++)
        keep[nkeep++] = malloc(100000);       /* 2,000,000 bytes */
}

__attribute__((noinline)) static void churn(void)
{
    for (int i = 0; i < 100000; i++) {
        char *p = malloc(400);                /* 40,000,000 bytes, all freed */
        p[0] = (char)i;
        free(p);
    }
}

int main(void)
{
    leak_small();
    leak_pages();
    leak_large();
    churn();
    return keep[0] == NULL;
}
