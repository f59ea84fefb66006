/* A dlopen-able library built twice (-DVARIANT=1 and 2) with different
   frame layouts at similar addresses: plugin_leak allocates under frames of
   different sizes, so a frame rule cached for one variant would misread the
   other's stack after dlclose maps the other at the same address. */
#include <stdlib.h>

#if VARIANT == 1
static __attribute__((noinline)) void *inner(size_t n)
{
    return malloc(n);
}
#else
/* the same instructions up to the call, with a bigger frame: malloc's
   return address is at the same offset in both variants */
static __attribute__((noinline)) void *inner(size_t n)
{
    volatile char pad[100];
    void *p = malloc(n);
    pad[0] = (char)(size_t)p;
    return pad[0] == 1 ? (void *)((char *)p + 0) : p;
}
#endif

__attribute__((visibility("default"))) void *plugin_leak(size_t n)
{
    return inner(n);
}
