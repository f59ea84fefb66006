/* Ground truth for the sampling mode's other entry points: calloc, realloc,
   reallocarray, blocks moved or freed by realloc, four threads, and a forked
   child. Each function that allocates is its own call site:
     keep_calloc        leaks 2,000,000 bytes (1,000 x calloc(25, 80));
     keep_array         leaks 2,000,000 bytes (1,000 x reallocarray(NULL, 20, 100));
     grow               leaks 2,000,000 bytes (1,000 blocks grown from 200 to
                        2,000 bytes by realloc) and moves 20,000 more that are
                        then freed;
     start              allocates 40,000 blocks of 400 bytes; each is moved by
                        grow or freed by realloc(p, 0): nothing outstanding;
     thread_keep        leaks 2,000,000 bytes from 4 threads (20,000 x calloc(1, 100));
     churn              allocates and frees 40 MB;
     child_keep         leaks 2,000,000 bytes (20,000 x malloc(100)) in a forked
                        child only, which writes its own report.
   usage: sample_paths [nofork] */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define PER_THREAD 5000

static void *keep[4000];
static int nkeep;
static void *kept_by_thread[THREADS][PER_THREAD];

__attribute__((noinline)) static void keep_calloc(void)
{
    for (int i = 0; i < 1000; i++)
        keep[nkeep++] = calloc(25, 80);
}

__attribute__((noinline)) static void keep_array(void)
{
    for (int i = 0; i < 1000; i++)
        keep[nkeep++] = reallocarray(NULL, 20, 100);
}

__attribute__((noinline)) static void *grow(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        abort();
    return q;
}

__attribute__((noinline)) static void *start(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    memset(p, 7, n);
    return p;
}

__attribute__((noinline)) static void keep_grown(void)
{
    for (int i = 0; i < 1000; i++) {
        void *p = NULL;
        for (size_t n = 200; n <= 2000; n += 200)
            p = grow(p, n);
        keep[nkeep++] = p;
    }
}

__attribute__((noinline)) static void moved_and_freed(void)
{
    for (int i = 0; i < 20000; i++) {
        void *p = grow(start(400), 800);
        free(p);
        /* glibc: realloc(p, 0) frees p and returns NULL */
        void *q = realloc(start(400), 0);
        free(q);
    }
}

__attribute__((noinline)) static void churn(void)
{
    for (int i = 0; i < 100000; i++) {
        char *p = malloc(400);
        if (!p)
            abort();
        p[0] = (char)i;
        free(p);
    }
}

__attribute__((noinline)) static void thread_keep(void **out)
{
    for (int i = 0; i < PER_THREAD; i++)
        out[i] = calloc(1, 100);
}

static void *worker(void *arg)
{
    thread_keep(kept_by_thread[(long)arg]);
    churn();
    return NULL;
}

__attribute__((noinline)) static void child_keep(void)
{
    for (int i = 0; i < 20000; i++)
        if (!malloc(100))
            abort();
}

int main(int argc, char **argv)
{
    int fork_child = !(argc > 1 && strcmp(argv[1], "nofork") == 0);
    keep_calloc();
    keep_array();
    keep_grown();
    moved_and_freed();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 2;
    churn();
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    if (fork_child) {
        pid_t pid = fork();
        if (pid < 0)
            return 2;
        if (pid == 0) {
            child_keep();
            exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 3;
    }
    for (int i = 0; i < nkeep; i++)
        if (!keep[i])
            return 1;
    return 0;
}
