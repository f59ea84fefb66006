/* hostile.c -- a program that makes its own process environment hostile to
 * report writing (limits, closed streams, signal masks), then exits with
 * status 3: under the interposer it must still exit 3. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* the program's own fchmod, which the interposer's report calls too:
   with "intrude", a line to descriptor 2 first */
#include "../c/fchmod_intrude.h"

static void *keep[64];

int main(int argc, char **argv)
{
    for (int i = 0; i < 64; i++)
        keep[i] = malloc(100 + (size_t)i);          /* leaks: a report of some size */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "fsize") == 0 && i + 1 < argc) {         /* RLIMIT_FSIZE, bytes */
            struct rlimit r;
            getrlimit(RLIMIT_FSIZE, &r);
            r.rlim_cur = (rlim_t)atol(argv[++i]);
            if (setrlimit(RLIMIT_FSIZE, &r) != 0)
                return 90;
        } else if (strcmp(a, "nofile") == 0) {                  /* no descriptor at all */
            struct rlimit r;
            getrlimit(RLIMIT_NOFILE, &r);
            r.rlim_cur = 0;
            if (setrlimit(RLIMIT_NOFILE, &r) != 0)
                return 91;
        } else if (strcmp(a, "one-fd-left") == 0) {           /* every descriptor but one in use */
            int fd, last = -1;
            struct rlimit r;
            getrlimit(RLIMIT_NOFILE, &r);
            if (r.rlim_cur > 64) {
                r.rlim_cur = 64;
                setrlimit(RLIMIT_NOFILE, &r);
            }
            while ((fd = open("/dev/null", O_RDONLY)) >= 0)
                last = fd;
            if (last < 0)
                return 92;
            close(last);
        } else if (strcmp(a, "fill-stdout") == 0) {
            /* stdout (a pipe) made non-blocking and filled up: the
               report's first write finds it full; "full" on stderr tells
               the reader it may start reading */
            static const char x[512] = {0};
            fcntl(1, F_SETPIPE_SZ, 4096);
            fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
            while (write(1, x, sizeof x) > 0) {}
            if (errno != EAGAIN)
                return 93;
            ssize_t w = write(2, "full\n", 5);
            (void)w;
        } else if (strcmp(a, "umask077") == 0) {
            umask(077);
        } else if (strcmp(a, "close2") == 0) {
            close(2);
        } else if (strcmp(a, "intrude") == 0) {
            intrude = 1;
        } else if (strcmp(a, "sigpipe-dfl") == 0) {
            signal(SIGPIPE, SIG_DFL);
        } else if (strcmp(a, "blockall") == 0) {
            sigset_t s;
            sigfillset(&s);
            sigprocmask(SIG_BLOCK, &s, NULL);
        } else if (strcmp(a, "raise") == 0 && i + 1 < argc) {
            /* a report on demand: the program's mask, pending set and
               errno must be as they were before the signal */
            int sig = atoi(argv[++i]);
            sigset_t before, after, pending;
            sigprocmask(SIG_SETMASK, NULL, &before);
            errno = 1234;
            raise(sig);
            int err = errno;
            sigprocmask(SIG_SETMASK, NULL, &after);
            sigpending(&pending);
            int same = 1, any = 0;
            for (int s = 1; s < NSIG; s++) {
                if (s == 32 || s == 33)
                    continue;           /* glibc's own */
                same &= sigismember(&before, s) == sigismember(&after, s);
                any |= sigismember(&pending, s) == 1;
            }
            printf("errno %d mask %s pending %s\n", err, same ? "same" : "changed",
                   any ? "some" : "none");
            fflush(stdout);
        }
    }
    return 3;
}
