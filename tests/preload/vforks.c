/* Children made while two threads allocate: vfork children whose exec
   fails and which call _exit (the usual way to spawn with vfork),
   posix_spawn of a program that exists and of one that does not, and fork
   children that leak one block each (LEAK-F) and call _exit. The parent's
   leaks: LEAK-W from the threads, LEAK-M from main.
   Prints "forked PID" for each fork child and "LEAK SIZE BLOCKS" for the
   parent's leaks. A child of vfork shares its parent's memory: it must not
   write a report of its own (it would be the parent's tables). */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define ROUNDS 20
#define FORKS 3

static volatile int stop;
static void *keep[40000];
static int nkeep, worker_leaks;

__attribute__((noinline)) static void down(int d, size_t n)
{
    if (d) {
        down(d - 1, n);
        return;
    }
    free(malloc(n + 1));
    void *p = malloc(n); /* LEAK-W */
    int k = __atomic_fetch_add(&nkeep, 1, __ATOMIC_RELAXED);
    if (k >= (int)(sizeof keep / sizeof keep[0]))
        abort();
    keep[k] = p;
}

static void *worker(void *arg)
{
    (void)arg;
    int n = 0;
    while (!stop && n < 10000)
        down(n++ % 13, 401);
    __atomic_fetch_add(&worker_leaks, n, __ATOMIC_RELAXED);
    return NULL;
}

int main(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            return 2;
    char *missing[] = {"/nonexistent/ringpool-vforks", NULL};
    char *truth[] = {"/bin/true", NULL};
    void *mine[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            execve(missing[0], missing, environ);
            _exit(127);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 127)
            return 3;
        if (posix_spawn(&pid, truth[0], NULL, NULL, truth, environ) == 0)
            waitpid(pid, NULL, 0);
        if (posix_spawn(&pid, missing[0], NULL, NULL, missing, environ) == 0)
            waitpid(pid, NULL, 0);
        mine[i] = malloc(403); /* LEAK-M */
    }
    fflush(stdout);
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            keep[0] = malloc(402); /* LEAK-F */
            _exit(0);
        }
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            return 4;
        printf("forked %ld\n", (long)pid);
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("LEAK 401 %d\nLEAK 403 %d\n", worker_leaks, ROUNDS);
    (void)mine;
    return 0;
}
