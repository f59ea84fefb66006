/* Loads plugin variant 1 and 2 alternately, CYCLES times each, leaking one
   block from each load (11 bytes from variant 1, 22 from variant 2), and
   unloads them: every leak's stack must go through the plugin into
   load_and_leak and main.
   usage: dlcycle DIR (holding plugin1.so and plugin2.so) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define CYCLES 50

static void *keep[2 * CYCLES];

static void *load_and_leak(const char *dir, int variant)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/plugin%d.so", dir, variant);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlcycle: %s\n", dlerror());
        exit(1);
    }
    void *(*leak)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_leak");
    void *p = leak(variant == 1 ? 11 : 22);
    dlclose(h);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    for (int i = 0; i < CYCLES; i++) {
        keep[2 * i] = load_and_leak(argv[1], 1);
        keep[2 * i + 1] = load_and_leak(argv[1], 2);
    }
    printf("LEAK 1 %d %d\nLEAK 2 %d %d\n", CYCLES, CYCLES * 11, CYCLES, CYCLES * 22);
    return 0;
}
