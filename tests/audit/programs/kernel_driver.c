/* Drives the bench kernel and the demo workload outside Python, so they can
 * run under ASan/UBSan and valgrind: every ringpool and glibc strategy, every
 * free order, mixed and fixed sizes, plus misuse, then the demo server. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_kernel.h"
#include "demo_workload.h"
#include "ringpool.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                          \
        }                                                                      \
    } while (0)

int main(int argc, char **argv)
{
    const char *report = argc > 1 ? argv[1] : "kernel-driver-report.json";
    const int strategies[] = {RPB_RP_FREE, RPB_RP_DESTROY, RPB_GLIBC_FREE};
    const unsigned flags[] = {0, RPB_POOL_ARENA, RPB_POOL_UNSYNC, RPB_POOL_ARENA | RPB_POOL_UNSYNC};
    const size_t sizes[] = {0, 16, 4096};
    for (int order = RPB_ORDER_RANDOM; order <= RPB_ORDER_FIFO; order++) {
        for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
            rpb_work *w = rpb_work_new(3000, sizes[z], order, 7);
            CHECK(w != NULL);
            for (size_t s = 0; s < sizeof strategies / sizeof *strategies; s++) {
                for (size_t f = 0; f < sizeof flags / sizeof *flags; f++) {
                    CHECK(rpb_fill(w, strategies[s], flags[f]) == 0);
                    CHECK(rpb_outstanding(w) == 3000);
                    CHECK(rpb_release(w) == 0);
                }
            }
            CHECK(rpb_fill(w, RPB_RP_DESTROY, 0) == 0); /* left filled: delete releases it */
            rpb_work_delete(w);
        }
    }
    rpb_work *w = rpb_work_new(10, 0, RPB_ORDER_LIFO, 1);
    CHECK(rpb_fill(w, -1, 0) == -1 && rpb_fill(w, RPB_STRATEGIES, 0) == -1);
    CHECK(rpb_fill(w, RPB_RP_FREE, 1u << 8) == -1);
    CHECK(rpb_release(w) == -1);
    rpb_work_delete(w);
    CHECK(rpb_work_new(0, 0, 0, 1) == NULL && rpb_work_new(1, 0, 3, 1) == NULL);
    rpb_work_delete(NULL);

    rpd_server *s = rpd_start();
    CHECK(s != NULL);
    CHECK(rpd_serve(s, 500) == 500);
    CHECK(rpd_snapshot(s, report) == 0);
    CHECK(rpd_serve(s, 0) == 500);
    rpd_shutdown(s);
    rpd_shutdown(NULL);
    puts("kernel driver: ok");
    return 0;
}
