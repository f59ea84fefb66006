/* Leaks behind allocation wrappers, for whole-stack attribution: every leak
   is reached through a wrapper (xmalloc, xcalloc, xrealloc growth, xstrdup ->
   strdup, strdup itself), and each is credited to the line marked LEAK-...
   of the function that asked. Prints "LEAK <marker> <blocks> <bytes>" for
   each, the program's own count. Built -O0 -g so no call is inlined. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *keep[64];
static int nkeep;

void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n);
    if (!p)
        abort();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static void report(const char *marker, int blocks, size_t bytes)
{
    printf("LEAK %s %d %zu\n", marker, blocks, bytes);
}

void make_table(void)
{
    for (int i = 0; i < 3; i++)
        keep[nkeep++] = xmalloc(100); /* LEAK-TABLE */
    report("LEAK-TABLE", 3, 300);
}

void make_names(void)
{
    keep[nkeep++] = xstrdup("a name that leaks"); /* LEAK-NAMES */
    report("LEAK-NAMES", 1, sizeof "a name that leaks");
}

void make_copy(void)
{
    keep[nkeep++] = strdup("copied"); /* LEAK-COPY */
    report("LEAK-COPY", 1, sizeof "copied");
}

void make_zeroed(void)
{
    keep[nkeep++] = xcalloc(10, 24); /* LEAK-ZEROED */
    report("LEAK-ZEROED", 1, 240);
}

void make_growing(void)
{
    char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < 5; i++) {
        cap = cap ? cap * 2 : 16;
        buf = xrealloc(buf, cap); /* LEAK-GROWING */
    }
    keep[nkeep++] = buf;
    report("LEAK-GROWING", 1, cap);
}

static void inner(int depth)
{
    if (depth == 0) {
        keep[nkeep++] = xmalloc(48); /* LEAK-DEEP */
        return;
    }
    inner(depth - 1);
}

void make_deep(void)
{
    inner(5);
    report("LEAK-DEEP", 1, 48);
}

int main(void)
{
    for (int i = 0; i < 1000; i++)      /* freed: no row */
        free(xmalloc(32));
    make_table();
    make_names();
    make_copy();
    make_zeroed();
    make_growing();
    make_deep();
    return 0;
}
