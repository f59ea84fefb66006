/* The library depswap.c opens: its leak is made by its dependency,
 * libdep_helper.so, which goes when this one is closed. */
#include <stddef.h>

void *dep_helper_leak(size_t n);

void *dep_top_leak(size_t n)
{
    void *p = dep_helper_leak(n);
    __asm__ volatile("" : : "r"(p) : "memory");    /* a call, not a tail call */
    return p;
}
