/* dlopen a plugin, leak from it, dlclose it; dlopen another plugin (mapped
 * at the same address), leak from it. argv[1], argv[2]: the two plugins.
 * Prints both load addresses so the test can check the second library
 * really took the first one's place. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *use(const char *path, const char *sym, size_t n, int times, int close_it)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    void *(*leak)(size_t) = (void *(*)(size_t))dlsym(h, sym);
    if (!leak)
        exit(3);
    for (int i = 0; i < times; i++)
        leak(n);
    Dl_info info;
    void *base = dladdr((void *)leak, &info) ? info.dli_fbase : NULL;
    if (close_it && dlclose(h) != 0)
        exit(4);
    return base;
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
    void *a = use(argv[1], "plugin_a_leak", 100, 3, 1);
    void *b = use(argv[2], "plugin_b_leak", 7, 5, 0);
    printf("a %p b %p\n", a, b);
    return 0;
}
