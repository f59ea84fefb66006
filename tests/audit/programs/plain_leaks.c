/* An unmodified program (no libringpool) that leaks from two functions, for
 * `run --preload`: make_table leaks 4 x 100 bytes, make_name 2 x 10 bytes;
 * scratch frees what it allocates. */
#include <stdlib.h>
#include <string.h>

static void *volatile sink[8];

__attribute__((noinline)) static void *make_table(void) { return calloc(1, 100); }
__attribute__((noinline)) static void *make_name(void)
{
    char *p = malloc(10);
    memcpy(p, "123456789", 10);
    return p;
}
__attribute__((noinline)) static void scratch(void)
{
    void *p = malloc(5000);
    memset(p, 1, 5000);
    free(p);
}

int main(void)
{
    for (int i = 0; i < 4; i++)
        sink[i] = make_table();
    for (int i = 0; i < 2; i++)
        sink[4 + i] = make_name();
    for (int i = 0; i < 10; i++)
        scratch();
    return 0;
}
