/* A stack repeated across fork(): the forking thread allocates from the
   same place just before and just after the fork, in the parent and in the
   child, so the child's first capture finds the parent's last walk (and the
   stack id derived from it) in its copy of the thread's state; then each
   process allocates from a second place and from the first again. Every
   allocation must be recorded with the stack libunwind walks. Prints, like
   the other test programs, "LEAK <marker> <blocks> <bytes>" per stack (the
   parent's counts). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 200
static void *keep[8 * ROUNDS];
static int nkeep;

void leaf(size_t n)
{
    keep[nkeep++] = malloc(n); /* LEAK-LEAF */
}

void same_place(void)
{
    leaf(24);
}

void other_place(void)
{
    leaf(40);
}

static void rounds(int n)
{
    for (int i = 0; i < n; i++)
        same_place();
    for (int i = 0; i < n; i++)
        other_place();
    for (int i = 0; i < n; i++)
        same_place();
}

int main(void)
{
    rounds(ROUNDS);
    for (int i = 0; i < ROUNDS; i++)
        same_place();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    for (int i = 0; i < ROUNDS; i++)
        same_place();
    rounds(ROUNDS);
    if (pid == 0)
        _exit(0);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;
    printf("LEAK same_place %d %d\n", 6 * ROUNDS, 6 * ROUNDS * 24);
    printf("LEAK other_place %d %d\n", 2 * ROUNDS, 2 * ROUNDS * 40);
    return 0;
}
