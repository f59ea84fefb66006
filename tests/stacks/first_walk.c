/* first_walk.c -- a thread's first stack walk, made by a signal handler
   that interrupted malloc while malloc held its arena's lock, must not
   call malloc (glibc's lock is not recursive: the thread would wait for
   itself forever).

   The walker is built as the copies without munmap hooks build it
   (RPI_STACK_NO_MAP_HOOKS: libringpool's, allocator._pystack's; here with
   _pystack's settings, whose walk buffers come from mmap:
   first_walk_walker.c): at a thread's
   first walk it looks up the thread's own stack bounds, which it used to
   ask glibc's pthread_getattr_np for. That allocates (the main thread's
   /proc/self/maps through stdio, every thread's cpuset with malloc).

   How the handler gets to run inside malloc's lock, every time: the
   program runs with glibc's per-thread cache off (GLIBC_TUNABLES
   glibc.malloc.tcache_count=0, set by re-executing itself), so that every
   malloc takes the arena's lock; malloc_stats() holds the main arena's
   lock while it prints to stderr, and stderr is a full pipe, so the main
   thread waits in write(2) with the lock held. A helper thread sees it
   there (/proc/self/task/TID/syscall: write on fd 2) and sends SIGUSR1;
   the handler captures a stack (this thread's first walk), then empties
   the pipe so that malloc_stats goes on. A watchdog (SIGALRM after 20 s)
   reports a deadlock and exits 3. Prints OK and exits 0 when the capture
   returned a stack with frames.

   `first_walk thread` does the same on a thread of its own (glibc's
   pthread_getattr_np allocates for every thread: its cpuset). That thread
   mallocs from an arena of its own, the newest, which malloc_stats prints
   second: the pipe (two pages) is left room for exactly what it prints of
   the main arena (69 bytes: three lines of fixed width), so the thread
   waits in the write of "Arena 1:" with its own arena's lock held. */
#include "stack.h"

#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int pipe_rd = -1;
static pid_t main_tid;
static pthread_t main_thread;
static volatile sig_atomic_t captured;
static volatile uint32_t captured_id;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void on_alarm(int sig)
{
    (void)sig;
    say("DEADLOCK: the handler's capture did not return\n");
    _exit(3);
}

static void on_usr1(int sig)
{
    (void)sig;
    captured_id = rpi_stack_capture(32, 0, 0);
    captured = 1;
    char buf[4096];
    while (read(pipe_rd, buf, sizeof buf) > 0) {
    }
}

/* Whether the thread tid waits in write(2) on fd 2 (no malloc, no stdio). */
static int in_write_to_stderr(pid_t tid)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return strncmp(buf, "1 0x2 ", 6) == 0;
}

static void *helper(void *arg)
{
    (void)arg;
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 15000; i++) {
        if (in_write_to_stderr(main_tid)) {
            pthread_kill(main_thread, SIGUSR1);
            return NULL;
        }
        nanosleep(&ms, NULL);
    }
    say("the main thread never waited in write(2)\n");
    _exit(4);
}

static int on_thread;

static int scenario(void);

static void *scenario_thread(void *arg)
{
    (void)arg;
    free(malloc(64));   /* this thread's arena: a new one, printed as "Arena 1" */
    return (void *)(intptr_t)scenario();
}

int main(int argc, char **argv)
{
    on_thread = argc > 1 && strcmp(argv[1], "thread") == 0;
    if (!getenv("FIRST_WALK_CHILD")) {
        /* every malloc to take the arena's lock: no per-thread cache */
        setenv("FIRST_WALK_CHILD", "1", 1);
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 2;
    }
    if (rpi_stack_init() != 0) {
        say("rpi_stack_init failed\n");
        return 2;
    }
    /* glibc's backtrace() loads libgcc_s at its first call (dlopen, which
       allocates): made here, so that only the walker's own lookups are
       tested in the handler */
    void *frames[4];
    (void)backtrace(frames, 4);
    if (!on_thread)
        return scenario();
    pthread_t t;
    void *rc;
    if (pthread_create(&t, NULL, scenario_thread, NULL) != 0 || pthread_join(t, &rc) != 0)
        return 2;
    return (int)(intptr_t)rc;
}

static int scenario(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_alarm;
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, NULL);

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return 2;
    pipe_rd = p[0];
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    /* fill the pipe (on a thread: all but the main arena's 69 bytes), then
       make its write end block again */
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    if (on_thread) {
        if (fcntl(p[1], F_SETPIPE_SZ, 8192) != 8192 || write(p[1], junk, 4096) != 4096 ||
            write(p[1], junk, 4096 - 69) != 4096 - 69)
            return 2;
    } else {
        while (write(p[1], junk, sizeof junk) > 0) {
        }
    }
    fcntl(p[1], F_SETFL, 0);
    int saved_err = dup(2);
    if (saved_err < 0 || dup2(p[1], 2) < 0)
        return 2;

    main_tid = (pid_t)syscall(SYS_gettid);
    main_thread = pthread_self();
    pthread_t t;
    if (pthread_create(&t, NULL, helper, NULL) != 0)
        return 2;
    alarm(20);
    malloc_stats();     /* the main arena's lock held while it writes to stderr */
    alarm(0);
    dup2(saved_err, 2);
    pthread_join(t, NULL);

    const uintptr_t *f;
    size_t n = captured ? rpi_stack_get(captured_id, &f) : 0;
    if (!captured || n < 2) {
        printf("FAIL: captured %d, %zu frames\n", (int)captured, n);
        return 1;
    }
    printf("OK: %zu frames\n", n);
    return 0;
}
