/* A program that links libringpool and leaves blocks behind, for `run` tests.
 *
 *   leaky [status [fork|quick_exit]]
 *
 * Pool "app" (child "worker") allocates under four tags; "frames" and
 * "scratch" are freed, "cache" and "pending" leak. "worker" is destroyed with
 * its leak (reason "destroy"); "app" is still alive at exit (reason "exit").
 * With "fork", a child process allocates under "forked" and exits, writing
 * its own reports. With "quick_exit", the program leaves by quick_exit, which
 * runs no destructor. The exit status is the first argument (default 0). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ringpool.h"

int main(int argc, char **argv)
{
    int status = argc > 1 ? atoi(argv[1]) : 0;
    int do_fork = argc > 2 && strcmp(argv[2], "fork") == 0;
    int quick = argc > 2 && strcmp(argv[2], "quick_exit") == 0;

    rp_pool *app = rp_pool_create("app");
    rp_pool *worker = rp_pool_create_child(app, "worker");
    for (int i = 0; i < 10; i++) {
        char *frame = rp_alloc(app, 64, "frames");
        char *scratch = rp_alloc(worker, 100, "scratch");
        memset(frame, 0, 64);
        memset(scratch, 0, 100);
        rp_free(frame);
        rp_free(scratch);
    }
    for (int i = 0; i < 3; i++)
        memset(rp_alloc(app, 1000, "cache"), 0, 1000);  /* leak: still in "app" at exit */
    memset(rp_alloc(worker, 48, "pending"), 0, 48);      /* leak: freed by the destroy */
    rp_pool_destroy(worker);

    if (do_fork) {
        pid_t pid = fork();
        if (pid == 0) {
            rp_pool *forked = rp_pool_create("forked");
            memset(rp_alloc(forked, 7, "forked"), 0, 7);
            rp_pool_destroy(forked);
            _exit(0);
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
    }
    if (quick)
        quick_exit(status);
    return status;
}
