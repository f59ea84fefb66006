/* callgrind_bulk.c -- one fill and one release of the bench kernel, for
 * instruction counts: run under valgrind --tool=callgrind with
 * --toggle-collect=rpb_release (or rpb_fill) and divide by the block count.
 *
 *   callgrind_bulk STRATEGY BLOCKS [arena] [unsync]
 *   STRATEGY: rp-free | rp-destroy | glibc | talloc-free | talloc-destroy |
 *             apr-destroy | mi-free | mi-destroy
 * Sizes: the mixed distribution; order: random (the seed of the CLI bench). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernel.h"

static const char *const names[RPB_STRATEGIES] = {
    "rp-free", "rp-destroy", "glibc", "talloc-free", "talloc-destroy",
    "apr-destroy", "mi-free", "mi-destroy"};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s STRATEGY BLOCKS [arena] [unsync]\n", argv[0]);
        return 2;
    }
    int strategy = -1;
    for (int i = 0; i < RPB_STRATEGIES; i++)
        if (strcmp(argv[1], names[i]) == 0)
            strategy = i;
    char *end = NULL;
    double blocks = strtod(argv[2], &end);
    if (strategy < 0 || end == argv[2] || *end != '\0' || blocks < 1 || blocks > 1e8) {
        fprintf(stderr, "%s: bad strategy or block count\n", argv[0]);
        return 2;
    }
    unsigned flags = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "arena") == 0)
            flags |= RPB_POOL_ARENA;
        else if (strcmp(argv[i], "unsync") == 0)
            flags |= RPB_POOL_UNSYNC;
        else {
            fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[i]);
            return 2;
        }
    }
    if (!rpb_available(strategy)) {
        fprintf(stderr, "%s: %s\n", names[strategy], rpb_unavailable_reason(strategy));
        return 3;
    }
    rpb_work *w = rpb_work_new((size_t)blocks, 0, RPB_ORDER_RANDOM, 20261126u);
    if (w == NULL || rpb_fill(w, strategy, flags) != 0) {
        fprintf(stderr, "%s: %s\n", names[strategy], w ? rpb_last_error(w) : "out of memory");
        return 1;
    }
    rpb_release(w);
    printf("%s %zu blocks: fill %.1f ns/block, release %.2f ns/block\n", names[strategy],
           rpb_work_blocks(w), (double)rpb_fill_ns(w) / (double)rpb_work_blocks(w),
           (double)rpb_release_ns(w) / (double)rpb_work_blocks(w));
    rpb_work_delete(w);
    return 0;
}
