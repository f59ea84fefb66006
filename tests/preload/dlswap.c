/* dlopen a plugin, leak from it, dlclose it; dlopen another plugin (mapped
 * at the same address), leak from it. argv[1], argv[2]: the two plugins.
 * Prints both load addresses so the test can check the second library
 * really took the first one's place. */
#include "swap_common.h"

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    warm_side_tables();
    /* The kernel usually maps B where A was; when something else took part
       of the hole first, unload B and go round again (A leaks each time). */
    void *a = NULL, *b = NULL, *hb = NULL, *(*leak_b)(size_t) = NULL;
    int tries = 0;
    while (tries < 20) {
        void *ha = open_lib(argv[1]);
        void *(*leak_a)(size_t) = (void *(*)(size_t))sym(ha, "plugin_a_leak");
        for (int i = 0; i < 3; i++)
            leak_a(100);
        a = base_of((void *)leak_a);
        if (dlclose(ha) != 0)
            return 4;
        tries++;
        hb = open_lib(argv[2]);
        leak_b = (void *(*)(size_t))sym(hb, "plugin_b_leak");
        b = base_of((void *)leak_b);
        if (a == b)
            break;
        dlclose(hb);
    }
    for (int i = 0; i < 5; i++)
        leak_b(7);
    printf("a %p b %p tries %d\n", a, b, tries);
    return 0;
}
