/* A C host that starts and stops an embedded CPython N times in one process:
 * Py_InitializeEx -> a script -> Py_FinalizeEx, and measures what each cycle
 * leaves on the C heap (glibc's mallinfo2: bytes in use), the residue a
 * runtime that is shut down and started again must not have.
 *
 *   host [--pool raw|all [--tag cycle|module] [--checked]] SCRIPT N [EVERY]
 *
 * prints one line per EVERY cycles (default N/10): cycle, heap bytes in use,
 * and the growth per cycle since cycle 1 (cycle 1 pays one-time costs: the
 * C library's own buffers, the loader's, lazily made tables).  The script
 * leaves its answer in a global named `result` (a str); the host checks that
 * every cycle gives the same one and prints it last, so two runs (plain and
 * under the interposer) can be compared line for line on it.
 *
 * --pool raw  routes CPython's RAW allocator domain (PyMem_RawMalloc: the
 *             interpreter's own C structures, and pymalloc's blocks of more
 *             than 512 bytes) into one ringpool pool named "cpython", made
 *             before the first Py_InitializeEx and kept across the cycles
 *             (a block left by cycle 3 may be freed or resized by cycle 7:
 *             one pool, not one per cycle).  Two more columns: the pool's
 *             outstanding blocks and bytes after each cycle.
 * --pool all  the same for the MEM and OBJ domains too (every Python object
 *             in the pool; pymalloc is not used).
 * --tag cycle each pool block is tagged by the cycle that allocated it
 *             ("cycle 000007"); the pool's report then lists the residue of
 *             every cycle (default).
 * --tag module  each pool block is tagged by the module being imported when
 *             it was allocated (innermost import; "(interpreter)" outside any
 *             import, "__main__" while the script body runs).
 *
 * --checked   the pool is a checked one (RP_POOL_CHECKED): a block it did not
 *             make, freed through a routed domain, is reported, not followed.
 *
 * With --pool the pool is destroyed after the last Py_FinalizeEx: one bulk
 * free of everything CPython left in it (its report is written then when
 * $RINGPOOL_REPORT is set).  Not before: the interpreter keeps pointers to
 * some of these blocks in static variables from one cycle to the next.
 * Exit status 0, or 1 with a message when the arguments are wrong or a cycle
 * fails.  Run it under `ringpool-audit run --preload` (and `--cycles`) to see
 * the residue by call site.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringpool.h"

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

/* ------------------------------------------------ CPython's allocator into a pool */
static rp_pool *pool;
static PyMemAllocatorEx pool_alloc;
static const char *cycle_tag = "(host)";        /* interned in the pool */

/* --tag module: a stack of the imports in progress, per thread. */
enum { TAG_DEPTH = 64 };
static int tag_by_module;
static _Thread_local const char *import_stack[TAG_DEPTH];
static _Thread_local int import_depth;

static const char *current_tag(void)
{
    if (!tag_by_module)
        return cycle_tag;
    int d = import_depth;
    if (d <= 0)
        return "(interpreter)";
    return import_stack[(d > TAG_DEPTH ? TAG_DEPTH : d) - 1];
}

static void *pool_malloc(void *ctx, size_t size)
{
    return rp_alloc_noexc(ctx, size, current_tag());
}

static void *pool_calloc(void *ctx, size_t n, size_t size)
{
    return rp_calloc_noexc(ctx, n, size, current_tag());
}

static void *pool_realloc(void *ctx, void *block, size_t size)
{
    if (block == NULL)
        return rp_alloc_noexc(ctx, size, current_tag());
    return rp_resize_noexc(ctx, block, size);          /* keeps the block's tag */
}

static void pool_free(void *ctx, void *block)
{
    (void)ctx;
    rp_free(block);
}

/* _ringpool_embed.push(name) / pop(): called around each module's loading by
 * the import hook that --tag module installs in every cycle. */
static PyObject *embed_push(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    const char *tag = rp_pool_intern_tag(pool, name);
    if (tag == NULL)
        return PyErr_NoMemory();
    if (import_depth < TAG_DEPTH)
        import_stack[import_depth] = tag;
    import_depth++;
    Py_RETURN_NONE;
}

static PyObject *embed_pop(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (import_depth > 0)
        import_depth--;
    Py_RETURN_NONE;
}

static PyMethodDef embed_methods[] = {
    {"push", embed_push, METH_O, "tag the blocks allocated from now on by this module name"},
    {"pop", embed_pop, METH_NOARGS, "back to the tag before the last push"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef embed_module = {
    PyModuleDef_HEAD_INIT, "_ringpool_embed", "tags for the embed host's pool", -1, embed_methods,
    NULL, NULL, NULL, NULL,
};

static PyObject *embed_init(void) { return PyModule_Create(&embed_module); }

/* Wraps importlib's _load_unlocked (the step that creates and executes a
 * module once it is found) so that what a module's import allocates carries
 * its name.  A private function of importlib: when it is missing the host says
 * so and the blocks keep the tag "(interpreter)". */
static const char import_hook[] =
    "import _frozen_importlib as _b, _ringpool_embed as _e\n"
    "if hasattr(_b, '_load_unlocked'):\n"
    "    def _tagged(spec, _load=_b._load_unlocked, _push=_e.push, _pop=_e.pop):\n"
    "        _push(spec.name)\n"
    "        try:\n"
    "            return _load(spec)\n"
    "        finally:\n"
    "            _pop()\n"
    "    _b._load_unlocked = _tagged\n"
    "else:\n"
    "    import sys\n"
    "    print('host: importlib has no _load_unlocked: blocks are not tagged by module', file=sys.stderr)\n"
    "del _b, _e\n";

static int same_allocator(PyMemAllocatorDomain domain)
{
    PyMemAllocatorEx now;
    PyMem_GetAllocator(domain, &now);
    return now.ctx == pool_alloc.ctx && now.malloc == pool_alloc.malloc &&
           now.free == pool_alloc.free;
}

static int pool_domains_intact(int all)
{
    if (!same_allocator(PYMEM_DOMAIN_RAW))
        return 0;
    return !all || (same_allocator(PYMEM_DOMAIN_MEM) && same_allocator(PYMEM_DOMAIN_OBJ));
}

/* ------------------------------------------------------------ one cycle */
static int run_cycle(const char *script, long cycle, int pool_all, char **result)
{
    FILE *f = fopen(script, "r");
    if (f == NULL) {
        fprintf(stderr, "host: %s: %s\n", script, strerror(errno));
        return -1;
    }
    if (pool != NULL) {
        char name[32];
        snprintf(name, sizeof name, "cycle %06ld", cycle);
        const char *tag = rp_pool_intern_tag(pool, name);
        if (tag == NULL) {
            fclose(f);
            fprintf(stderr, "host: out of memory\n");
            return -1;
        }
        cycle_tag = tag;
        import_depth = 0;
        if (tag_by_module && PyImport_AppendInittab("_ringpool_embed", embed_init) < 0) {
            fclose(f);
            fprintf(stderr, "host: cannot register the _ringpool_embed module\n");
            return -1;
        }
    }
    Py_InitializeEx(0);                 /* no signal handlers: the host owns them */
    if (pool != NULL && !pool_domains_intact(pool_all)) {
        /* PYTHONMALLOC or -X dev re-installed the allocators in Py_InitializeEx:
         * from now on blocks of the pool would be freed by another allocator */
        fprintf(stderr, "host: CPython replaced the pool allocator during Py_InitializeEx "
                        "(PYTHONMALLOC or PYTHONDEVMODE set?); --pool needs them unset\n");
        _exit(1);
    }
    int rc = 0;
    if (tag_by_module && PyRun_SimpleString(import_hook) != 0)
        rc = -1;
    if (rc == 0) {
        import_depth = tag_by_module ? 1 : 0;
        if (tag_by_module)
            import_stack[0] = "__main__";
        rc = PyRun_SimpleFileExFlags(f, script, 1, NULL);   /* closes f */
        import_depth = 0;
        f = NULL;
    }
    if (f != NULL)
        fclose(f);
    if (rc == 0) {
        PyObject *main = PyImport_AddModule("__main__");           /* borrowed */
        PyObject *value = main ? PyObject_GetAttrString(main, "result") : NULL;
        const char *text = value && PyUnicode_Check(value) ? PyUnicode_AsUTF8(value) : NULL;
        if (text == NULL) {
            fprintf(stderr, "host: %s left no str named 'result'\n", script);
            rc = -1;
        } else if (*result == NULL) {
            *result = strdup(text);
            if (*result == NULL)
                rc = -1;
        } else if (strcmp(*result, text) != 0) {
            fprintf(stderr, "host: cycle %ld: result '%s' differs from cycle 1's '%s'\n",
                    cycle, text, *result);
            rc = -1;
        }
        Py_XDECREF(value);
        PyErr_Clear();
    }
    if (Py_FinalizeEx() < 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "host: %s failed\n", script);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: host [--pool raw|all [--tag cycle|module] [--checked]] SCRIPT N [EVERY]\n");
}

int main(int argc, char **argv)
{
    long n, every;
    int use_pool = 0, pool_all = 0, tag_set = 0, checked = 0;
    PyMemAllocatorEx saved[3];
    int a = 1;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
        if (strcmp(argv[a], "--") == 0) {
            a++;
            break;
        }
        if (strcmp(argv[a], "--checked") == 0) {
            checked = 1;
            a--;                                    /* takes no value */
            continue;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "host: %s needs a value\n", argv[a]);
            return 1;
        }
        const char *v = argv[a + 1];
        if (strcmp(argv[a], "--pool") == 0 && (strcmp(v, "raw") == 0 || strcmp(v, "all") == 0)) {
            use_pool = 1;
            pool_all = strcmp(v, "all") == 0;
        } else if (strcmp(argv[a], "--tag") == 0 && (strcmp(v, "cycle") == 0 || strcmp(v, "module") == 0)) {
            tag_by_module = strcmp(v, "module") == 0;
            tag_set = 1;
        } else {
            fprintf(stderr, "host: unknown option or value: %s %s\n", argv[a], v);
            usage();
            return 1;
        }
    }
    if ((tag_set || checked) && !use_pool) {
        fprintf(stderr, "host: --tag and --checked apply to --pool only\n");
        return 1;
    }
    if (argc - a < 2 || argc - a > 3) {
        usage();
        return 1;
    }
    const char *script = argv[a];
    if (parse_count(argv[a + 1], "N", &n) < 0)
        return 1;
    every = n >= 10 ? n / 10 : 1;
    if (argc - a == 3 && parse_count(argv[a + 2], "EVERY", &every) < 0)
        return 1;

    if (use_pool) {
        if (getenv("PYTHONMALLOC") != NULL || getenv("PYTHONDEVMODE") != NULL) {
            fprintf(stderr, "host: --pool: unset PYTHONMALLOC and PYTHONDEVMODE (CPython would "
                            "install its own allocators over the pool's at every Py_InitializeEx)\n");
            return 1;
        }
        /* --checked: a block the pool did not make, given to PyMem_RawFree, is
         * reported instead of corrupting memory (the heap column then also
         * counts the checked pools' quarantine of freed blocks, up to 64 MiB) */
        rp_pool_options opts = {.flags = checked ? RP_POOL_CHECKED : 0, .chunk_size = 0, .keep_bytes = 0};
        pool = rp_pool_create_ex("cpython", &opts);
        if (pool == NULL) {
            fprintf(stderr, "host: cannot create the pool\n");
            return 1;
        }
        pool_alloc = (PyMemAllocatorEx){pool, pool_malloc, pool_calloc, pool_realloc, pool_free};
        /* before anything is allocated by the domains: blocks never cross allocators */
        PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &saved[0]);
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &saved[1]);
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &saved[2]);
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &pool_alloc);
        if (pool_all) {
            PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &pool_alloc);
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &pool_alloc);
        }
    }

    size_t first = 0, pool_first = 0;
    char *result = NULL;
    if (use_pool)
        printf("%10s %16s %18s %12s %14s %18s\n", "cycle", "heap in use", "bytes/cycle since 1",
               "pool blocks", "pool bytes", "pool bytes/cycle");
    else
        printf("%10s %16s %18s\n", "cycle", "heap in use", "bytes/cycle since 1");
    for (long i = 1; i <= n; i++) {
        if (run_cycle(script, i, pool_all, &result) != 0)
            return 1;
        struct mallinfo2 mi = mallinfo2();
        size_t pool_bytes = 0, pool_blocks = 0;
        if (use_pool)
            pool_blocks = rp_pool_outstanding(pool, &pool_bytes);
        if (i == 1) {
            first = mi.uordblks;
            pool_first = pool_bytes;
        }
        if (i == 1 || i % every == 0 || i == n) {
            double per = i > 1 ? ((double)mi.uordblks - (double)first) / (double)(i - 1) : 0.0;
            printf("%10ld %16zu %18.1f", i, mi.uordblks, per);
            if (use_pool) {
                double pper = i > 1 ? ((double)pool_bytes - (double)pool_first) / (double)(i - 1) : 0.0;
                printf(" %12zu %14zu %18.1f", pool_blocks, pool_bytes, pper);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    printf("result of every cycle: %s\n", result ? result : "");
    free(result);
    if (use_pool) {
        /* After the last Py_FinalizeEx nothing runs Python again: the bulk free
         * is safe here, and only here.  Put the default allocators back first,
         * so that nothing after main (libc's exit handlers do not call them,
         * but a library could) reaches a destroyed pool. */
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &saved[0]);
        if (pool_all) {
            PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &saved[1]);
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &saved[2]);
        }
        rp_pool *p = pool;
        pool = NULL;
        rp_pool_destroy(p);
    }
    return 0;
}
