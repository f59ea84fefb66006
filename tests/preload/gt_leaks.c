/* Ground truth for the interposer: three leaking call sites with known
   counts and sizes, plus allocations that are all freed correctly. Output
   uses write(2) only, so the C library keeps no stdio buffer at exit and the
   outstanding blocks are exactly the ones leaked below. The test finds each
   leaking line by its LEAK-x marker. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *keep[64];
static int nkeep;

static void leak_small(void)
{
    for (int i = 0; i < 7; i++)
        keep[nkeep++] = malloc(24); /* LEAK-A: 7 blocks x 24 bytes */
}

static void leak_table(void)
{
    for (int i = 0; i < 3; i++)
        keep[nkeep++] = calloc(5, 40); /* LEAK-B: 3 blocks x 200 bytes */
}

static void leak_grown(void)
{
    for (int i = 0; i < 2; i++) {
        char *p = malloc(10);
        memcpy(p, "abcdefghi", 10);
        p = realloc(p, 1000); /* LEAK-C: 2 blocks x 1000 bytes */
        keep[nkeep++] = p;
    }
}

static void churn(void)
{
    for (int i = 0; i < 1000; i++) {
        void *p = malloc((size_t)(i % 97) + 1);
        void *q = calloc(3, (size_t)i + 1);
        q = realloc(q, (size_t)(i % 13) * 100);
        free(p);
        free(q);
    }
    char *s = strdup("freed correctly");
    free(s);
    void *a = aligned_alloc(64, 128);
    free(a);
    void *b = NULL;
    if (posix_memalign(&b, 32, 96) == 0)
        free(b);
}

int main(void)
{
    churn();
    leak_small();
    leak_table();
    leak_grown();
    churn();
    static const char msg[] = "gt_leaks done\n";
    if (write(1, msg, sizeof msg - 1) < 0)
        return 1;
    return 0;
}
