/*
 * host.c -- loads a plugin, runs one session, unloads it; in a loop.
 *
 *     host PLUGIN.so CYCLES [MAX_RSS_GROWTH_KIB]
 *
 * Checks that every session returns the same checksum, that dlclose really
 * unloads the plugin and libringpool with it, and (when a limit is given)
 * that the resident set grows by less than the limit between the end of a
 * warm-up (a tenth of the cycles, at most 100) and the last cycle.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &pages, &resident) != 2) {
        fprintf(stderr, "host: cannot read /proc/self/statm\n");
        exit(1);
    }
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv)
{
    long cycles, limit = -1, warm, i, expect = 0, base = 0, end;
    char *endp;
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s PLUGIN.so CYCLES [MAX_RSS_GROWTH_KIB]\n", argv[0]);
        return 2;
    }
    cycles = strtol(argv[2], &endp, 10);
    if (*endp != '\0' || cycles < 1) {
        fprintf(stderr, "%s: CYCLES must be a positive integer, not '%s'\n", argv[0],
                argv[2]);
        return 2;
    }
    if (argc == 4) {
        limit = strtol(argv[3], &endp, 10);
        if (*endp != '\0' || limit < 0) {
            fprintf(stderr, "%s: MAX_RSS_GROWTH_KIB must be >= 0, not '%s'\n",
                    argv[0], argv[3]);
            return 2;
        }
    }
    warm = cycles / 10 < 100 ? cycles / 10 : 100;
    for (i = 0; i < cycles; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        long (*session)(int);
        long got;
        if (h == NULL) {
            fprintf(stderr, "%s: dlopen: %s\n", argv[0], dlerror());
            return 1;
        }
        *(void **)&session = dlsym(h, "plugin_session");
        if (session == NULL) {
            fprintf(stderr, "%s: dlsym(plugin_session): %s\n", argv[0], dlerror());
            return 1;
        }
        got = session(50);
        if (i == 0)
            expect = got;
        else if (got != expect) {
            fprintf(stderr, "%s: cycle %ld: checksum %ld, first cycle gave %ld\n",
                    argv[0], i, got, expect);
            return 1;
        }
        if (dlclose(h) != 0) {
            fprintf(stderr, "%s: dlclose: %s\n", argv[0], dlerror());
            return 1;
        }
        /* nothing of the plugin or the library may stay mapped */
        if (dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != NULL ||
            dlopen("libringpool.so.0", RTLD_NOW | RTLD_NOLOAD) != NULL) {
            fprintf(stderr, "%s: cycle %ld: still loaded after dlclose\n", argv[0], i);
            return 1;
        }
        if (i + 1 == warm)
            base = rss_kib();
    }
    end = rss_kib();
    printf("host: %ld load/use/unload cycles, checksum %ld, RSS %ld KiB after %ld "
           "warm-up cycles, %ld KiB at the end (growth %ld KiB)\n",
           cycles, expect, base, warm, end, end - base);
    if (limit >= 0 && warm > 0 && end - base >= limit) {
        fprintf(stderr, "%s: RSS grew by %ld KiB (limit %ld KiB)\n", argv[0],
                end - base, limit);
        return 1;
    }
    return 0;
}
