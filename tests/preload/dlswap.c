/* dlopen a plugin, leak from it, dlclose it; dlopen another plugin (mapped
 * at the same address), leak from it. argv[1], argv[2]: the two plugins.
 * Prints both load addresses so the test can check the second library
 * really took the first one's place. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *open_sym(const char *path, const char *sym, void **handle)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    void *f = dlsym(h, sym);
    if (!f)
        exit(3);
    *handle = h;
    return f;
}

static void *base_of(void *f)
{
    Dl_info info;
    return dladdr(f, &info) ? info.dli_fbase : NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    /* Warm up the interposer's side tables (they grow with mmap, and a
       growth right after the unload could take the freed addresses). */
    static void *warm[20000];
    for (int i = 0; i < 20000; i++)
        warm[i] = malloc(16);
    for (int i = 0; i < 20000; i++)
        free(warm[i]);
    /* The kernel usually maps B where A was; when something else took part
       of the hole first, unload B and go round again (A leaks each time). */
    void *a = NULL, *b = NULL, *hb = NULL, *(*leak_b)(size_t) = NULL;
    int tries = 0;
    while (tries < 20) {
        void *ha;
        void *(*leak_a)(size_t) = (void *(*)(size_t))open_sym(argv[1], "plugin_a_leak", &ha);
        for (int i = 0; i < 3; i++)
            leak_a(100);
        a = base_of((void *)leak_a);
        if (dlclose(ha) != 0)
            return 4;
        tries++;
        leak_b = (void *(*)(size_t))open_sym(argv[2], "plugin_b_leak", &hb);
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
