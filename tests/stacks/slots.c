/* Allocations that come back to the same few places over and over, with
   other places in between, in the patterns the interposer's walker must
   tell apart when it answers from a walk it kept for the place a capture
   starts at (the same return address and stack pointer) instead of
   walking again (it re-reads every word that walk read):
     - a cycle of places, each a chain of distinct functions of its own
       length, so that consecutive stacks share only their outermost frames
       (the walker then does not splice, and keeps its walks by place);
     - one place reached, round after round, through one of two callers
       with identical frames: the same return address at the same stack
       address for the allocation, a different caller further out;
     - the same, one level further out, and chosen by a pattern that does
       not repeat with the cycle's length;
     - a place in a function with alloca (its CFA is rbp-based);
     - stacks deeper than recorded (the test records 9 frames too);
     - threads doing all of the above at once.
   Deterministic, so that the test can compare the stacks recorded with the
   cached walker and with libunwind one for one. Built -O2 without frame
   pointers (rsp-based CFAs, rbp-based where alloca). */
#include <alloca.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leaf.h"

#define NOINLINE __attribute__((noinline))
#define ROUNDS 400
#define THREADS 3

static volatile int knob;

/* leaf(): the allocation, by malloc, calloc or realloc (leaf.h) */

/* chains of distinct functions: place k calls leaf through k + 1 frames */
NOINLINE static void a1(size_t n) { leaf(n); knob++; }
NOINLINE static void b1(size_t n) { leaf(n + 1); knob++; }
NOINLINE static void b2(size_t n) { b1(n); knob++; }
NOINLINE static void c1(size_t n) { leaf(n + 2); knob++; }
NOINLINE static void c2(size_t n) { c1(n); knob++; }
NOINLINE static void c3(size_t n) { c2(n); knob++; }
NOINLINE static void d1(size_t n) { leaf(n + 3); knob++; }
NOINLINE static void d2(size_t n) { d1(n); knob++; }
NOINLINE static void d3(size_t n) { d2(n); knob++; }
NOINLINE static void d4(size_t n) { d3(n); knob++; }
NOINLINE static void d5(size_t n) { d4(n); knob++; }
NOINLINE static void d6(size_t n) { d5(n); knob++; }
NOINLINE static void d7(size_t n) { d6(n); knob++; }
NOINLINE static void d8(size_t n) { d7(n); knob++; }
NOINLINE static void d9(size_t n) { d8(n); knob++; }
NOINLINE static void d10(size_t n) { d9(n); knob++; }
NOINLINE static void d11(size_t n) { d10(n); knob++; }

/* an rbp-based frame on the way */
NOINLINE static void with_alloca(size_t n)
{
    char *buf = alloca(32 + n % 5);
    memset(buf, (int)n, 32);
    sink = buf;
    c2(n + buf[3] % 2);
    knob++;
}

/* one place, two callers with identical frames (the allocation's return
   address and stack pointer are the same through either) */
NOINLINE static void shared(size_t n) { d2(n); knob++; }
NOINLINE static void twin_a(size_t n) { shared(n); knob++; }
NOINLINE static void twin_b(size_t n) { shared(n); knob++; }
/* and the choice one level further out */
NOINLINE static void via_a(size_t n) { twin_a(n); knob++; }
NOINLINE static void via_b(size_t n) { twin_b(n); knob++; }
NOINLINE static void outer_a(size_t n) { via_a(n); knob++; }
NOINLINE static void outer_b(size_t n) { via_a(n); knob++; }

NOINLINE static void round_of_places(unsigned r)
{
    a1(8);
    (r % 2 ? twin_a : twin_b)(16);
    b2(24);
    c3(32);
    with_alloca(40 + r % 3);
    d11(48);
    ((r * 7) % 5 < 2 ? outer_a : outer_b)(56);
    (r % 3 ? via_a : via_b)(64);
    c3(72);
    d5(80);
}

static void *run(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    for (unsigned r = 0; r < ROUNDS; r++)
        round_of_places(r + seed);
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    run((void *)0);
    for (size_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, run, (void *)(i + 1)) != 0)
            return 1;
    for (size_t i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    puts("done");
    return 0;
}
