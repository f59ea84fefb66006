/* Whole stacks from threads and from a signal handler. Four threads each
   leak LEAKS_PER_THREAD blocks of 40 bytes from worker_leak (LEAK-THREAD)
   and free everything else; the main thread takes SIGALRM every 200 us, and
   the handler allocates and frees a block and, on its first run (while main
   spins without allocating), leaks one from on_alarm (LEAK-SIGNAL); then
   the main thread allocates in a loop while the alarms go on.
   Prints "LEAK <marker> <blocks> <bytes>" as the program counts them. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define THREADS 4
#define LEAKS_PER_THREAD 25

static void *leaked[THREADS * LEAKS_PER_THREAD + 1];
static volatile sig_atomic_t alarms;   /* volatile: read in a spin loop */
static void *volatile signal_leak;

static void on_alarm(int sig)
{
    (void)sig;
    free(malloc(24));
    if (!signal_leak)
        signal_leak = malloc(56); /* LEAK-SIGNAL */
    alarms++;
}

static void worker_leak(int t, int i)
{
    leaked[t * LEAKS_PER_THREAD + i] = malloc(40); /* LEAK-THREAD */
}

static void *worker(void *arg)
{
    int t = (int)(long)arg;
    for (int i = 0; i < 20000; i++) {
        char *p = malloc((size_t)(16 + i % 200));
        p[0] = (char)i;
        free(p);
        if (i % 800 == 0)
            worker_leak(t, i / 800);
    }
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    while (!alarms)         /* the first alarm (the leak) lands here: no malloc */
        ;
    /* The alarms go to the main thread alone: the workers start with
       SIGALRM blocked. A worker interrupted inside the C library's malloc
       (holding its arena's lock, on a size its thread cache did not hold)
       would deadlock in the handler's malloc; the main thread's malloc and
       the handler's sizes are served from its thread cache. */
    sigset_t alrm, was;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alrm, &was);
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    while (alarms < 50) {
        void *p = malloc(100);
        free(p);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    printf("LEAK LEAK-THREAD %d %d\n", THREADS * LEAKS_PER_THREAD, THREADS * LEAKS_PER_THREAD * 40);
    printf("LEAK LEAK-SIGNAL 1 56\n");
    return 0;
}
