/* coro.c -- allocations from a pool that records stacks (RP_POOL_STACKS),
   made on a stack of the program's own (coroutines: makecontext/swapcontext
   on stacks from mmap) and, for comparison, on the thread's own stack.

   One iteration: the main loop switches to the next of NCORO coroutines,
   which calls DEPTH frames down, allocates a block, frees it and switches
   back (--on coro); or the main loop calls the same DEPTH frames down
   itself and makes the same switches to a coroutine that does nothing
   (--on own), so both run the same switches and differ only in where the
   allocation's stack walk starts. --stacks 0 makes the pool record no
   stacks: the difference is the walk's cost.

   usage: coro --on own|coro --depth D --count N [--stacks 0|1] [--rounds R] [--frame BYTES]
   (--frame 32|256: the bytes each of the D frames holds of its own, 32 by
   default: with 256 a walk of 64 frames climbs some 4 pages)
   Prints "ns/iteration median over R rounds" (wall; R = 0: none, for
   callgrind, which counts the function coro_measured alone:
     valgrind --tool=callgrind --toggle-collect=coro_measured coro ... --rounds 0).
   benches/c/coro.sh runs the table of docs/benchmarks.md. */
#define _GNU_SOURCE
#include <ringpool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define NCORO 4
#define CORO_STACK (64 * 1024)
#define PAIRS 16      /* allocations a switch */

static rp_pool *pool;
static int depth, on_coro;
static size_t pad_bytes = 32;   /* a frame's own bytes (--frame) */
static ucontext_t main_ctx, co_ctx[NCORO];
static int cur;

static void die(const char *what)
{
    fprintf(stderr, "coro: %s\n", what);
    exit(2);
}

/* d frames down, then a block allocated and freed: frames of 32 bytes of
   their own, or of 256 (fixed sizes: the unwind tables describe them from
   rsp, as in most optimised code) */
#define DOWN(name, bytes)                                    \
    __attribute__((noinline)) static void name(int d)        \
    {                                                        \
        volatile char pad[bytes];                            \
        pad[0] = (char)d;                                    \
        if (d == 0)                                          \
            rp_free(rp_alloc(pool, 40, "coro"));             \
        else                                                 \
            name(d - 1);                                     \
        pad[1] = pad[0];                                     \
    }
DOWN(down_32, 32)
DOWN(down_256, 256)
static void down(int d)
{
    if (pad_bytes == 256)
        down_256(d);
    else
        down_32(d);
}

static void co_body(void)
{
    for (;;) {
        if (on_coro)
            for (int k = 0; k < PAIRS; k++)
                down(depth);
        if (swapcontext(&co_ctx[cur], &main_ctx) != 0)
            die("swapcontext");
    }
}

/* each coroutine on a stack of its own with a guard page below it, as
   coroutine libraries make them (apart from main: getcontext returns twice) */
__attribute__((noinline)) static void make_coroutines(void)
{
    for (int c = 0; c < NCORO; c++) {
        char *m = mmap(NULL, CORO_STACK + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (m == MAP_FAILED || mprotect(m, 4096, PROT_NONE) != 0)
            die("mmap");
        if (getcontext(&co_ctx[c]) != 0)
            die("getcontext");
        co_ctx[c].uc_stack.ss_sp = m + 4096;
        co_ctx[c].uc_stack.ss_size = CORO_STACK;
        co_ctx[c].uc_link = &main_ctx;
        makecontext(&co_ctx[c], co_body, 0);
    }
}

__attribute__((noinline)) void coro_measured(long n);
__attribute__((noinline)) void coro_measured(long n)
{
    for (long i = 0; i < n; i++) {
        cur = (int)(i % NCORO);
        if (!on_coro)
            for (int k = 0; k < PAIRS; k++)
                down(depth);
        if (swapcontext(&main_ctx, &co_ctx[cur]) != 0)
            die("swapcontext");
    }
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long number(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        die("bad number");
    return v;
}

int main(int argc, char **argv)
{
    long count = 100000, rounds = 11;
    int stacks = 1;
    const char *on = NULL;
    depth = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--on")) on = argv[i + 1];
        else if (!strcmp(argv[i], "--depth")) depth = (int)number(argv[i + 1], 0, 100000);
        else if (!strcmp(argv[i], "--count")) count = number(argv[i + 1], 1, 1000000000);
        else if (!strcmp(argv[i], "--stacks")) stacks = (int)number(argv[i + 1], 0, 1);
        else if (!strcmp(argv[i], "--rounds")) rounds = number(argv[i + 1], 0, 1001);
        else if (!strcmp(argv[i], "--frame")) pad_bytes = (size_t)number(argv[i + 1], 32, 256);
        else die("unknown option");
    }
    if (argc % 2 != 1 || !on || depth < 0 || (strcmp(on, "own") && strcmp(on, "coro")) ||
        (pad_bytes != 32 && pad_bytes != 256))
        die("usage: coro --on own|coro --depth D --count N [--stacks 0|1] [--rounds R] [--frame BYTES]");
    on_coro = !strcmp(on, "coro");
    rp_pool_options o = {.flags = RP_POOL_UNSYNC | (stacks ? RP_POOL_STACKS | RP_POOL_STACK_DEPTH(64) : 0)};
    pool = rp_pool_create_ex("coro", &o);
    if (!pool)
        die("rp_pool_create_ex");
    make_coroutines();
    /* the thread's first walks (its buffers, its stack's bounds) and each
       coroutine's first switch, out of the measured part */
    coro_measured(4 * NCORO);
    if (rounds == 0) {
        coro_measured(count);
    } else {
        double *ns = calloc((size_t)rounds, sizeof *ns);
        if (!ns)
            die("calloc");
        for (long r = 0; r < rounds; r++) {
            double t0 = now_ns();
            coro_measured(count);
            ns[r] = (now_ns() - t0) / (double)count / PAIRS;
        }
        qsort(ns, (size_t)rounds, sizeof *ns, cmp_double);
        printf("%.1f\n", ns[rounds / 2]);
        free(ns);
    }
    rp_pool_destroy(pool);
    return 0;
}
