/* allocator._pystack: the native stacks of run --python --native.
 *
 * The project's unwinder and table of distinct stacks (csrc/stack/),
 * compiled into an extension module of their own, as csrc/poolstack.c
 * compiles them into libringpool, with the same two differences from the
 * interposer's copy: the per-thread state uses the default TLS model, and
 * frames the cached walker cannot follow go to glibc's backtrace(), not
 * libunwind, so nothing new is linked.  A module of its own because of the
 * TLS: allocator._pyhooks keeps its few hot per-thread words in the
 * initial-exec model, and a dlopen'ed object that uses that model must fit
 * ALL its thread-local data in the small static TLS surplus, which the
 * unwinder's per-thread frame buffers do not.  _pyhooks gets the functions
 * through a capsule (CAPSULE_NAME) when a run asks for native stacks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define RPI_STACK_TLS
#define RPI_STACK_NO_LIBUNWIND
#define RPI_STACK_NO_MAP_HOOKS  /* no munmap of its own: walks keep no pages (unwind.c) */
#include "../csrc/stack/stack.c"
#include "../csrc/stack/unwind.c"

#include "_pystack.h"

static const rp_pystack_api api = {
    RP_PYSTACK_API_VERSION,
    rpi_stack_init,
    rpi_stack_capture,
    rpi_stack_get,
    rpi_unwind_function_range,
    rpi_stack_lock,
    rpi_stack_unlock,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "allocator._pystack",
    "Native call stacks for allocator._pyhooks (csrc/stack/ in an extension module).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pystack(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    PyObject *capsule = PyCapsule_New((void *)&api, RP_PYSTACK_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(m, "_api", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
