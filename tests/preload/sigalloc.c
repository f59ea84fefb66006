/* A SIGALRM handler that allocates, every 200 us, while the main thread
 * allocates and frees in a loop: the interposer must neither hang nor lose
 * a block. argv[1]: "single" (one thread) or "threads" (a second, idle
 * thread, so the side table takes its locks); argv[2]: loop iterations.
 *
 * Both allocate through one function, so they share a call site (LEAK-X)
 * and its counters: the handler makes 16 allocations per signal and keeps
 * the first of every 8th signal; the main loop keeps every 1000th block.
 * The program prints its own counts, which the test compares with the
 * report. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include "alarm_every.h"

#define KEEP_MAX 100000

static void *kept_h[KEEP_MAX];
static volatile sig_atomic_t n_handler, n_kept_h;

static __attribute__((noinline)) void *xalloc(size_t n)
{
    void *p = malloc(n); /* LEAK-X */
    if (!p)
        abort();
    return p;
}

#define PER_SIGNAL 16

static void on_alarm(int sig)
{
    (void)sig;
    void *p[PER_SIGNAL];
    for (int i = 0; i < PER_SIGNAL; i++) {
        p[i] = xalloc(40 + (size_t)i * 8);
        memset(p[i], 1, 40);
    }
    int keep = n_handler % 8 == 0 && n_kept_h < KEEP_MAX;
    if (keep)
        kept_h[n_kept_h++] = p[0];
    for (int i = keep; i < PER_SIGNAL; i++)
        free(p[i]);
    n_handler++;
}

static void *idle(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 && strcmp(argv[1], "threads") == 0;
    long iters = argc > 2 ? atol(argv[2]) : 200000;
    if (threads) {
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);  /* the idle thread takes no signals */
        if (pthread_create(&t, NULL, idle, NULL) != 0)
            return 2;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_detach(t);
    }
    alarm_every(on_alarm, 200);

    static void *ring[64];
    long kept_m = 0;
    for (long i = 0; i < iters; i++) {
        void **slot = &ring[i & 63];
        free(*slot);
        *slot = xalloc(16 + (size_t)(i & 255));
        if (i % 1000 == 999) {
            *slot = NULL;   /* kept: one leak per 1000 */
            kept_m++;
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    for (int i = 0; i < 64; i++)
        if (ring[i]) {
            free(ring[i]);
            ring[i] = NULL;
        }
    printf("handler %ld kept_h %ld kept_m %ld iters %ld\n", (long)n_handler, (long)n_kept_h,
           kept_m, iters);
    return 0;
}
