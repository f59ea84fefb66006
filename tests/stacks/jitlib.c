/* jitlib_call(fn, n): fn(n), called from this library's code (odd.c,
   jit-then-library: the program first covers the return address of that
   call with code of its own outside every module, unmaps it, and loads the
   library again at the same address). */
#include <stddef.h>

__attribute__((visibility("default"), noinline, optimize("no-optimize-sibling-calls")))
void *jitlib_call(void *(*fn)(size_t), size_t n)
{
    void *p = fn(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}
