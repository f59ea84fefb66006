/* A plugin reloaded after a rebuild: argv[2] is copied to argv[1], opened,
 * leaks 3 blocks of 100 bytes and is closed; argv[3] then replaces it at
 * the same path (a new file renamed over it, as a build does), is opened
 * from that path and leaks 5 blocks of 7 bytes; closed too when argv[4] is
 * "close". Two modules of one path with two build ids: plugin_a.c and
 * plugin_b.c are the same code at the same offsets but for their names. */
#include <string.h>

#include "swap_common.h"

static void copy(const char *from, const char *to)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.new", to) >= sizeof tmp)
        exit(5);
    FILE *in = fopen(from, "rb"), *out = fopen(tmp, "wb");
    if (!in || !out)
        exit(5);
    char buf[1 << 14];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            exit(5);
    if (fclose(in) != 0 || fclose(out) != 0 || rename(tmp, to) != 0)
        exit(5);
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 1;
    copy(argv[2], argv[1]);
    void *h = open_lib(argv[1]);
    void *(*leak_a)(size_t) = (void *(*)(size_t))sym(h, "plugin_a_leak");
    for (int i = 0; i < 3; i++)
        leak_a(100);
    if (dlclose(h) != 0)
        return 4;
    copy(argv[3], argv[1]);
    h = open_lib(argv[1]);
    void *(*leak_b)(size_t) = (void *(*)(size_t))sym(h, "plugin_b_leak");
    for (int i = 0; i < 5; i++)
        leak_b(7);
    if (strcmp(argv[4], "close") == 0 && dlclose(h) != 0)
        return 4;
    return 0;
}
