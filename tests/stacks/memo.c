/* Consecutive allocations whose stacks differ in one word only: the same
   function, at the same stack position, reached alternately through two
   callers with identical frames, and a recursion whose depth alternates.
   A walker that answers "same stack as last time" from what it read before
   must notice the one return address that changed. Prints, like the other
   test programs, "LEAK <marker> <blocks> <bytes>" per stack. Built -O0 -g
   so no call is inlined and every frame keeps its frame pointer. */
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 400
static void *keep[4 * ROUNDS];
static int nkeep;

void leaf(size_t n)
{
    keep[nkeep++] = malloc(n); /* LEAK-LEAF */
}

void via_a(void)
{
    leaf(24);
}

void via_b(void)
{
    leaf(24);
}

void down(int n)
{
    if (n > 0)
        down(n - 1);
    else
        leaf(40);
}

int main(void)
{
    for (int i = 0; i < ROUNDS; i++) {
        via_a();
        via_b();
        down(3 + (i & 1));
    }
    printf("LEAK via_a %d %d\n", ROUNDS, ROUNDS * 24);
    printf("LEAK via_b %d %d\n", ROUNDS, ROUNDS * 24);
    printf("LEAK down4 %d %d\n", ROUNDS / 2, ROUNDS / 2 * 40);
    printf("LEAK down5 %d %d\n", ROUNDS / 2, ROUNDS / 2 * 40);
    return 0;
}
