/* dlopen a library (argv[1], libdep_top.so) whose dependency leaks, dlclose
 * it (which unmaps the dependency too), then dlopen two others (argv[3],
 * a filler, then argv[2]) until argv[2] is mapped where the dependency was,
 * and leak from it. Prints both load addresses so the test can check the
 * second library really took the dependency's place. */
#include "swap_common.h"

int main(int argc, char **argv)
{
    if (argc < 4)
        return 1;
    warm_side_tables();
    /* the top library is mapped above its dependency: the filler takes its
       place, the other library the dependency's */
    void *helper = NULL, *other = NULL, *(*leak_other)(size_t) = NULL;
    int tries = 0;
    while (tries < 20) {
        void *ht = open_lib(argv[1]);
        void *(*leak_top)(size_t) = (void *(*)(size_t))sym(ht, "dep_top_leak");
        for (int i = 0; i < 3; i++)
            leak_top(100);
        helper = base_of(sym(ht, "dep_helper_leak"));
        if (dlclose(ht) != 0)
            return 4;
        tries++;
        void *hf = open_lib(argv[3]);
        void *ho = open_lib(argv[2]);
        leak_other = (void *(*)(size_t))sym(ho, "plugin_b_leak");
        other = base_of((void *)leak_other);
        if (other == helper)
            break;
        dlclose(ho);
        dlclose(hf);
    }
    for (int i = 0; i < 5; i++)
        leak_other(7);
    printf("helper %p other %p tries %d\n", helper, other, tries);
    return 0;
}
