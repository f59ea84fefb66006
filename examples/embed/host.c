/* A C host that starts and stops an embedded CPython N times in one process:
 * Py_InitializeEx -> a script -> Py_FinalizeEx, and measures what each cycle
 * leaves on the C heap (glibc's mallinfo2: bytes in use), the residue a
 * runtime that is shut down and started again must not have.
 *
 *   host SCRIPT N [EVERY]
 *
 * prints one line per EVERY cycles (default N/10): cycle, heap bytes in use,
 * and the growth per cycle since cycle 1 (cycle 1 pays one-time costs: the
 * C library's own buffers, the loader's, lazily made tables).  Exit status 0,
 * or 1 with a message when the arguments are wrong or a cycle fails.
 * Run it under `ringpool-audit run --preload` to see the residue by call site.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_count(const char *text, const char *what, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || end == text || v < 1 || v > 100000000) {
        fprintf(stderr, "host: %s must be an integer from 1 to 100000000, not '%s'\n", what, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int run_cycle(const char *script)
{
    FILE *f = fopen(script, "r");
    if (f == NULL) {
        fprintf(stderr, "host: %s: %s\n", script, strerror(errno));
        return -1;
    }
    Py_InitializeEx(0);                 /* no signal handlers: the host owns them */
    int rc = PyRun_SimpleFileExFlags(f, script, 1, NULL);   /* closes f */
    if (Py_FinalizeEx() < 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "host: %s failed\n", script);
    return rc;
}

int main(int argc, char **argv)
{
    long n, every;
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: host SCRIPT N [EVERY]\n");
        return 1;
    }
    if (parse_count(argv[2], "N", &n) < 0)
        return 1;
    every = n >= 10 ? n / 10 : 1;
    if (argc == 4 && parse_count(argv[3], "EVERY", &every) < 0)
        return 1;
    size_t first = 0;
    printf("%10s %16s %18s\n", "cycle", "heap in use", "bytes/cycle since 1");
    for (long i = 1; i <= n; i++) {
        if (run_cycle(argv[1]) != 0)
            return 1;
        struct mallinfo2 mi = mallinfo2();
        if (i == 1)
            first = mi.uordblks;
        if (i == 1 || i % every == 0 || i == n) {
            double per = i > 1 ? ((double)mi.uordblks - (double)first) / (double)(i - 1) : 0.0;
            printf("%10ld %16zu %18.1f\n", i, mi.uordblks, per);
            fflush(stdout);
        }
    }
    return 0;
}
