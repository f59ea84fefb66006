/* The parent leaks one block (LEAK-P) and forks; the child leaks two more
   (LEAK-K) and exits normally, so it writes its own report with its pid.
   Prints the child's pid so the test can find that report. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *keep[4];

int main(void)
{
    keep[0] = malloc(333); /* LEAK-P */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        keep[1] = malloc(77); /* LEAK-K */
        keep[2] = malloc(77); /* LEAK-K */
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 3;
    printf("child %ld\n", (long)pid);
    return 0;
}
