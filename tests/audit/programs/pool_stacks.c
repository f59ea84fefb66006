/* A program whose pool records allocation stacks (RP_POOL_STACKS): the tag
 * "node" is reached from two paths (load_tree -> make_node, and
 * parse_expr -> make_node), "name" from one, in the child pool "strings".
 * Writes the pool's report (children included) to argv[1], then destroys. */
#include <stdio.h>

#include "ringpool.h"

static void *volatile sink[16];

__attribute__((noinline)) static void *make_node(rp_pool *p, size_t n)
{
    void *b = rp_alloc(p, n, "node");
    __asm__ volatile("" ::: "memory");
    return b;
}

__attribute__((noinline)) static void load_tree(rp_pool *p)
{
    for (volatile int i = 0; i < 3; i++)
        sink[i] = make_node(p, 100);
}

__attribute__((noinline)) static void parse_expr(rp_pool *p)
{
    sink[3] = make_node(p, 40);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void name_it(rp_pool *p)
{
    sink[4] = rp_strdup(p, "a name", "name");
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s REPORT\n", argv[0]);
        return 2;
    }
    rp_pool_options o = {.flags = RP_POOL_STACKS};
    rp_pool *pool = rp_pool_create_ex("app", &o);
    rp_pool *strings = rp_pool_create_child(pool, "strings");
    load_tree(pool);
    parse_expr(pool);
    name_it(strings);
    int rc = rp_pool_write_report_ex(pool, argv[1], RP_REPORT_CHILDREN);
    rp_pool_destroy(pool);
    return rc == 0 ? 0 : 1;
}
