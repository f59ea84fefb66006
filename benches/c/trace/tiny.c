/*
 * tiny.c -- a small program with a known sequence of heap calls, for the
 * recorder's smoke test (benches/c/trace/smoke.sh): every entry point the
 * recorder handles, then two threads allocating at once. Writes nothing
 * through stdio, so that the trace holds only its own calls.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USED(p) __asm__ volatile("" : : "r"(p) : "memory")

static void *worker(void *arg)
{
    void *keep[64] = { 0 };
    size_t base = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < 20000; i++) {
        size_t k = (i * 7 + base) % 64;
        free(keep[k]);
        keep[k] = malloc(16 + (i + base) % 200);
        if (!keep[k]) abort();
        memset(keep[k], 1, 16);
    }
    for (size_t k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    (void)argv;
    char *a = malloc(24);                    /* malloc 1 24 */
    char *b = calloc(3, 8);                  /* calloc 2 24 */
    USED(b);
    a = realloc(a, 4000);                    /* realloc 1 4000 */
    void *c = NULL;
    if (posix_memalign(&c, 64, 100)) abort(); /* aligned 3 100 64 */
    void *d = aligned_alloc(32, 64);         /* aligned 4 64 32 */
    void *e = memalign(4096, 10);            /* aligned 5 10 4096 */
    free(NULL);                              /* nothing */
    char *f = realloc(NULL, 10);             /* malloc 6 10 */
    f = realloc(f, 0);                       /* free 6 (glibc frees, returns NULL) */
    free(b);                                 /* free 2 */
    char *g = malloc(0);                     /* malloc 2 0 (the id freed last comes first) */
    int *h = reallocarray(NULL, 5, sizeof(int)); /* malloc 6 20 */
    USED(a); USED(c); USED(d); USED(e); USED(f); USED(g); USED(h);
    free(a); free(c); free(d); free(e); free(g); free(h); /* free 1, 3, 4, 5, 2, 6 */
    if (argc > 1) {                          /* two threads at once */
        pthread_t t[2];
        for (uintptr_t i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, worker, (void *)i)) abort();
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    }
    static const char done[] = "tiny: done\n";
    if (write(1, done, sizeof done - 1) < 0) return 1;
    return 0;
}
