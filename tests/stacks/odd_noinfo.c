/* Built without unwind tables and without frame pointers
   (tests/stacks/odd.c): a walk reaching these frames cannot go past them
   and must stop there, not read on. */
#include <stdlib.h>

__attribute__((noinline)) void *odd_noinfo_alloc(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *odd_noinfo_outer(int d, size_t n)
{
    char pad[200];
    __asm__ volatile("" : : "r"(pad) : "memory");
    void *p = d ? odd_noinfo_outer(d - 1, n) : odd_noinfo_alloc(n);
    __asm__ volatile("" : : "r"(pad) : "memory");
    return p;
}
