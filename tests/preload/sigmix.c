/* The rest of the malloc family in a signal handler that may interrupt the
 * interposer's bookkeeping (then its table work is queued: a realloc there
 * is malloc, copy and a queued free): every 200 us a SIGALRM handler
 * reallocs a block up and down, and calls calloc, posix_memalign,
 * aligned_alloc, reallocarray, realloc(p, 0), memalign and valloc,
 * keeping two blocks of every 8th signal and freeing the rest, while the
 * main loop cycles malloc, realloc, calloc and posix_memalign over 64
 * slots, keeping one block in 1000. Run on tests/preload/libs/sigsafe.c,
 * whose realloc(p, 0) returns a block (glibc's frees p): the interposer's
 * queued realloc(p, 0) frees p as glibc does, so a NULL there tells that
 * the handler interrupted the bookkeeping. Prints its own totals (blocks,
 * bytes, allocations that returned a block) for the test to compare with
 * the program's sites in the report. argv[1]: loop iterations. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "alarm_every.h"

#define KEEP_MAX 100000

static void *kept[KEEP_MAX];
static volatile long n_handler, n_kept, kept_bytes, allocs, queued;

static void on_alarm(int sig)
{
    (void)sig;
    void *a = malloc(24);
    if (!a)
        abort();
    memset(a, 1, 24);
    a = realloc(a, 100);
    if (!a)
        abort();
    memset(a, 2, 100);
    a = realloc(a, 10);
    void *b = calloc(3, 7);
    void *c = NULL;
    if (posix_memalign(&c, 64, 50) != 0)
        abort();
    void *d = aligned_alloc(32, 64);
    void *e = reallocarray(NULL, 5, 6);
    void *f = memalign(128, 33);
    void *g = valloc(20);
    if (!a || !b || !d || !e || !f || !g)
        abort();
    allocs += 9;
    e = realloc(e, 0);
    if (e)
        allocs++;           /* sigsafe's own answer: a new block */
    else
        queued++;
    free(e);
    if (n_handler % 8 == 0 && n_kept + 2 <= KEEP_MAX) {
        kept[n_kept++] = a;
        kept[n_kept++] = c;
        kept_bytes += 60;
    } else {
        free(a);
        free(c);
    }
    free(b);
    free(d);
    free(f);
    free(g);
    n_handler++;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 300000;
    alarm_every(on_alarm, 200);

    static void *ring[64];
    long m_blocks = 0, m_bytes = 0, m_allocs = 0;
    for (long i = 0; i < iters; i++) {
        void **slot = &ring[i & 63];
        size_t size = 16 + (size_t)(i & 255);
        switch (i % 4) {
        case 0:
            free(*slot);
            *slot = malloc(size);
            break;
        case 1:
            *slot = realloc(*slot, size);     /* of a live block */
            break;
        case 2:
            free(*slot);
            *slot = calloc(1, size);
            break;
        default:
            free(*slot);
            *slot = NULL;
            if (posix_memalign(slot, 32, size) != 0)
                abort();
        }
        if (!*slot)
            abort();
        m_allocs++;
        if (i % 1000 == 999) {
            m_blocks++;
            m_bytes += (long)size;
            *slot = NULL;   /* kept */
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    for (int i = 0; i < 64; i++)
        free(ring[i]);
    printf("handler %ld queued %ld blocks %ld bytes %ld allocs %ld\n", (long)n_handler,
           (long)queued, (long)n_kept + m_blocks, (long)kept_bytes + m_bytes,
           (long)allocs + m_allocs);
    return 0;
}
