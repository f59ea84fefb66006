/*
 * old_dialects.c -- ringpool.h in C89/C90 and C++98, with -Wpedantic: the
 * header compiles there too; RP_STRCONCAT (a variadic macro) is the one name
 * it leaves out, and rp_strconcat is called directly instead.
 */
#include <ringpool.h>

#include <string.h>

int main(void)
{
    rp_pool *pool = rp_pool_create("old dialects");
    char *text;
    int failures = 0;

    if (pool == 0)
        return 1;
    text = rp_strconcat(pool, RP_LOCATION, 2, "a", "b");
    if (text == 0 || strcmp(text, "ab") != 0)
        failures++;
    rp_free(RP_ALLOC(pool, 4));
    if (rp_alloc_noexc(pool, RP_MAX_SIZE + 1, "too big") != 0)
        failures++;
    rp_pool_destroy(pool);
    return failures != 0;
}
