/* Consecutive allocations whose stacks share their outer frames and differ
   below them, in the patterns that the interposer's walker must tell apart
   when it takes frames over from its previous walk instead of unwinding
   them again (it re-reads every word those frames came from):
     - a recursion whose depth changes from one allocation to the next (the
       shared frames sit at other positions of the stack);
     - two callers with identical frames reaching the same function, which
       returns and is called again at the same stack address;
     - functions with alloca (their CFA is rbp-based) above, below and at the
       point where two stacks meet, with allocas of varying size;
     - a depth beyond the recorded one;
     - stacks alike in their first frames that take frames over from the
       same previous stack at different points;
     - allocating signal handlers, on the thread's stack and on an
       alternate signal stack, raised at varying depths;
     - threads doing all of the above at once;
     - by malloc, calloc and realloc.
   Deterministic (no timers), so that the test can compare the stacks
   recorded with the cached walker and with libunwind one for one. Built
   twice: -O0 with frame pointers (every CFA rbp-based) and -O2 without. */
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leaf.h"

#define NOINLINE __attribute__((noinline))
#define ROUNDS 300
#define THREADS 3

NOINLINE static void mid(size_t n)
{
    leaf(n);
    sink = NULL;
}

/* identical bodies, different return addresses into them */
NOINLINE static void twin_a(size_t n)
{
    mid(n);
    sink = NULL;
}

NOINLINE static void twin_b(size_t n)
{
    mid(n);
    sink = NULL;
}

NOINLINE static void recurse(int depth, size_t n)
{
    if (depth > 0)
        recurse(depth - 1, n);
    else
        mid(n);
    sink = NULL;
}

/* alloca: the CFA of these frames is rbp-based even at -O2 */
NOINLINE static void framed_leaf(size_t pad, size_t n)
{
    char *buf = alloca(pad + 16);
    memset(buf, 0, pad + 16);
    sink = buf;
    leaf(n);
    sink = NULL;
}

NOINLINE static void framed_leaf_b(size_t pad, size_t n)
{
    char *buf = alloca(pad + 32);
    memset(buf, 1, pad + 32);
    sink = buf;
    leaf(n + 1);
    sink = NULL;
}

/* one call site for both callees: the return address into it is the same */
NOINLINE static void through(void (*fn)(size_t, size_t), size_t pad, size_t n)
{
    fn(pad, n);
    sink = NULL;
}

NOINLINE static void framed_top(int round, size_t n)
{
    char *buf = alloca((size_t)(round % 5) * 24 + 8);
    memset(buf, 2, 8);
    sink = buf;
    through(round & 1 ? framed_leaf : framed_leaf_b, (size_t)(round % 7) * 40, n);
    if (round % 3 == 0)
        recurse(round % 4, n);
    sink = NULL;
}

/* A chain of two functions, chosen level by level by the bits of a
   pattern; at levels 0 and 1 (both fa) the chain below is walked twice
   from one call site, with an allocation from that level in between, so
   that two stacks that start alike (leaf < mid < fa) follow the same
   previous stack (the chain's bottom) and take its frames over from two
   different points: as many frames of it when the depth recorded cuts
   them, other frames. */
static volatile int twice = 2;
NOINLINE static void fb(int level, unsigned bits, size_t n);
NOINLINE static void fa(int level, unsigned bits, size_t n)
{
    int marked = level <= 1;
    for (int r = 0; r < (marked ? twice : 1); r++) {
        if (level == 0)
            leaf(n);
        else if (bits & 1)
            fa(level - 1, bits >> 1, n);
        else
            fb(level - 1, bits >> 1, n);
        if (marked && r == 0)
            mid(n + 8);
    }
    sink = NULL;
}

NOINLINE static void fb(int level, unsigned bits, size_t n)
{
    if (level == 0)
        leaf(n + 16);
    else if (bits & 1)
        fa(level - 1, bits >> 1, n);
    else
        fb(level - 1, bits >> 1, n);
    sink = NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    mid(72);
    twin_a(80);
}

NOINLINE static void raise_at(int depth)
{
    if (depth > 0) {
        raise_at(depth - 1);
        sink = NULL;
        return;
    }
    raise(SIGUSR1);
    raise(SIGUSR2);
}

static void rounds(int salt)
{
    for (int i = 0; i < ROUNDS; i++) {
        int r = i + salt;
        twin_a(24);
        twin_b(24);
        recurse((r * 7) % 23, 40);
        recurse((r * 5) % 90, 48);         /* past the recorded 64 frames now and then */
        framed_top(r, 56);
        mid(64);
        fa(10, 0x3C9, 96);
        if (r % 37 == 0)
            recurse(r % 3, 88);
    }
}

static void *worker(void *arg)
{
    rounds((int)(long)arg);
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return 1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);

    rounds(0);
    for (int i = 0; i < 40; i++) {
        raise_at(i % 9);
        twin_b(24);
        recurse(i % 5, 40);
    }
    pthread_t t[THREADS];
    for (long k = 0; k < THREADS; k++)
        if (pthread_create(&t[k], NULL, worker, (void *)(k * 11 + 1)) != 0)
            return 1;
    rounds(5);
    for (int k = 0; k < THREADS; k++)
        pthread_join(t[k], NULL);
    printf("done\n");
    return 0;
}
