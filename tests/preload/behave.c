/* Behaviour a program must keep under the interposer: its own output, its
   exit status (from argv[1]), and, with argv[2] = "signal", an on-demand
   report when it raises the configured signal. With argv[2] = "exec", it
   execs `sh -c 'echo $LD_PRELOAD'` so the test can see what children get.
   With argv[2] = "quick_exit", it leaves by quick_exit(status) after an
   at_quick_exit handler of its own that allocates (LEAK-Q). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *keep[4];

static void at_quick(void)
{
    keep[2] = malloc(6000); /* LEAK-Q */
}

int main(int argc, char **argv)
{
    int status = argc > 1 ? atoi(argv[1]) : 0;
    keep[0] = malloc(4000); /* LEAK-S */
    printf("stdout line %d\n", status);
    fprintf(stderr, "stderr line\n");
    if (argc > 2 && strcmp(argv[2], "signal") == 0) {
        fflush(stdout);
        raise(SIGUSR2);
        keep[1] = malloc(5000); /* after the signal report */
    }
    if (argc > 2 && strcmp(argv[2], "exec") == 0) {
        fflush(stdout);
        if (chdir("/") != 0)
            return 99;
        execl("/bin/sh", "sh", "-c", "echo \"child LD_PRELOAD=$LD_PRELOAD\"", (char *)NULL);
        return 98;
    }
    if (argc > 2 && strcmp(argv[2], "quick_exit") == 0) {
        fflush(stdout);
        if (at_quick_exit(at_quick) != 0)
            return 97;
        quick_exit(status);
    }
    return status;
}
