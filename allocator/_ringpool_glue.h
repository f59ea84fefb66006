/* Binding glue compiled into allocator._ringpool (see _build.py).
 *
 * 1. An error record per thread.  The library reports misuse through one
 *    process-wide error handler whose default aborts; the bindings install
 *    rpy_error_hook instead, which records the report in the calling thread's
 *    record and returns (the library then makes the call a no-op).  Every
 *    rpy_ wrapper clears the record first, so after a call Python reads
 *    exactly what that call reported.  Allocation always goes through the
 *    _noexc twins: the plain forms abort when their OOM handler returns.
 *
 * 2. _BlockBuffer, the base type of allocator.Block: a buffer exporter over
 *    one pool block that counts its live exports.  Freeing or resizing a
 *    block with exports alive raises BlockInUse (a BufferError), so no
 *    memoryview ever outlives the memory it shows; a block that was freed
 *    refuses new exports.  (PEP 688's __buffer__ would do this in Python,
 *    but only from 3.12 on; the buffer slots are in the limited API of
 *    3.11.)  The errors are raised by the Python subclass, which knows the
 *    pool and the tag (_raise_freed, _raise_busy, _raise_in_use).  It also
 *    makes the bindings' hot path cheap: _alloc and _free call the library
 *    with the GIL held and build or retire the Block in C.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <structmember.h>
#include "ringpool.h"

/* ------------------------------------------------------------ errors */
#define RPY_ERROR_TEXT 4096

typedef struct rpy_error_record {
    int    code;      /* first error reported during the call, 0 if none */
    int    count;     /* reports during the call */
    size_t len;       /* bytes used in text */
    char   text[RPY_ERROR_TEXT];  /* the messages, one per line */
} rpy_error_record;

static _Thread_local rpy_error_record rpy_err;

static void rpy_clear_error(void)
{
    rpy_err.code = 0;
    rpy_err.count = 0;
    rpy_err.len = 0;
    rpy_err.text[0] = '\0';
}

static void rpy_error_hook(int error, const char *message, const void *block)
{
    (void)block;
    if (rpy_err.count == 0)
        rpy_err.code = error;
    rpy_err.count++;
    if (message == NULL)
        message = rp_strerror(error);
    size_t room = RPY_ERROR_TEXT - rpy_err.len;
    if (room > 1) {
        int n = snprintf(rpy_err.text + rpy_err.len, room, "%s%s",
                         rpy_err.len ? "\n" : "", message);
        if (n > 0)
            rpy_err.len += (size_t)n < room ? (size_t)n : room - 1;
    }
}

static void rpy_install_handlers(void)
{
    rp_set_error_handler(rpy_error_hook);
}

static int rpy_error_code(void) { return rpy_err.code; }
static int rpy_error_count(void) { return rpy_err.count; }

static size_t rpy_error_text(char *buf, size_t cap)
{
    if (cap == 0)
        return rpy_err.len;
    size_t n = rpy_err.len < cap - 1 ? rpy_err.len : cap - 1;
    memcpy(buf, rpy_err.text, n);
    buf[n] = '\0';
    return rpy_err.len;
}

/* -------------------------------------------------- checked wrappers */
/* Blocks cross the boundary as integers (uintptr_t, 0 = NULL): Python keeps
   addresses, and needs no pointer cast per call. */
#define RPY_ADDR(p) ((uintptr_t)(void *)(p))
#define RPY_PTR(a) ((void *)(a))

static uintptr_t rpy_alloc(rp_pool *pool, size_t size, const char *tag)
{
    rpy_clear_error();
    return RPY_ADDR(rp_alloc_noexc(pool, size, tag));
}

static uintptr_t rpy_calloc(rp_pool *pool, size_t n, size_t size, const char *tag)
{
    rpy_clear_error();
    return RPY_ADDR(rp_calloc_noexc(pool, n, size, tag));
}

static uintptr_t rpy_resize(rp_pool *pool, uintptr_t block, size_t size)
{
    rpy_clear_error();
    return RPY_ADDR(rp_resize_noexc(pool, RPY_PTR(block), size));
}

static uintptr_t rpy_strdup(rp_pool *pool, const char *s, const char *tag)
{
    rpy_clear_error();
    return RPY_ADDR(rp_strdup_noexc(pool, s, tag));
}

static uintptr_t rpy_memdup(rp_pool *pool, const void *p, size_t size, const char *tag)
{
    rpy_clear_error();
    return RPY_ADDR(rp_memdup_noexc(pool, p, size, tag));
}

static uintptr_t rpy_alloc_aligned(rp_pool *pool, size_t align, size_t size, const char *tag)
{
    rpy_clear_error();
    return RPY_ADDR(rp_alloc_aligned_noexc(pool, align, size, tag));
}

static int rpy_free(uintptr_t block)
{
    rpy_clear_error();
    rp_free(RPY_PTR(block));
    return rpy_err.code;
}

static rp_pool *rpy_pool_create(rp_pool *parent, const char *name,
                                const rp_pool_options *opts)
{
    rpy_clear_error();
    if (parent == NULL)
        return rp_pool_create_ex(name, opts);
    return rp_pool_create_child_ex(parent, name, opts);
}

static void rpy_pool_destroy(rp_pool *pool)
{
    rpy_clear_error();
    rp_pool_destroy(pool);
}

static int rpy_pool_reset(rp_pool *pool)
{
    rpy_clear_error();
    return rp_pool_reset(pool);
}

static int rpy_pool_check(rp_pool *pool)
{
    rpy_clear_error();
    return rp_pool_check(pool);
}

static int rpy_pool_get_info(rp_pool *pool, rp_pool_info *info)
{
    rpy_clear_error();
    info->struct_size = sizeof *info;
    return rp_pool_get_info(pool, info);
}

/* csrc/pool.c: a destroy of pool runs the cleanups registered while its
   children went (teardown_again); every pool that was below it is gone. */
int rpi_pool_torn(rp_pool *pool);

static int rpy_pool_torn(rp_pool *pool)
{
    return rpi_pool_torn(pool);
}

/* The library's internal twin of rp_pool_write_report_ex (csrc/report.c): a
   report not written records why (a directory, a FIFO without a reader...). */
int rpi_write_report_why(rp_pool *pool, const char *path, unsigned flags, char *why, size_t cap);

static int rpy_pool_write_report(rp_pool *pool, const char *path, unsigned report_flags)
{
    char why[512];
    rpy_clear_error();
    int rc = rpi_write_report_why(pool, path, report_flags, why, sizeof why);
    if (rc != 0 && why[0])
        rpy_error_hook(rc, why, NULL);
    return rc;
}

/* Generated by cffi from the extern "Python" declarations of the cdef. */
static int rpy_py_visit(void *block, size_t size, const char *tag, void *arg);
static void rpy_py_cleanup(void *arg);

static int rpy_pool_walk(rp_pool *pool, void *arg)
{
    rpy_clear_error();
    return rp_pool_walk(pool, rpy_py_visit, arg);
}

/* The C side of a Python cleanup's call (rpy_cleanup_call, below). */
static void rpy_cleanup_call(void *arg);

static int rpy_pool_add_cleanup(rp_pool *pool, void *arg)
{
    rpy_clear_error();
    return rp_pool_add_cleanup(pool, rpy_cleanup_call, arg);
}

static int rpy_pool_remove_cleanup(rp_pool *pool, void *arg)
{
    rpy_clear_error();
    return rp_pool_remove_cleanup(pool, rpy_cleanup_call, arg);
}

static uintptr_t rpy_stat_alloc(size_t size)
{
    rpy_clear_error();
    return RPY_ADDR(rp_stat_alloc_noexc(size));
}

static uintptr_t rpy_stat_calloc(size_t n, size_t size)
{
    rpy_clear_error();
    return RPY_ADDR(rp_stat_calloc_noexc(n, size));
}

static uintptr_t rpy_stat_resize(uintptr_t block, size_t size)
{
    rpy_clear_error();
    return RPY_ADDR(rp_stat_resize_noexc(RPY_PTR(block), size));
}

static uintptr_t rpy_stat_strdup(const char *s)
{
    rpy_clear_error();
    return RPY_ADDR(rp_stat_strdup_noexc(s));
}

static int rpy_stat_free(uintptr_t block)
{
    rpy_clear_error();
    rp_stat_free(RPY_PTR(block));
    return rpy_err.code;
}

static void rpy_stat_destroy_pool(void)
{
    rpy_clear_error();
    rp_stat_destroy_pool();
}

/* ------------------------------------------------------- _BlockBuffer */
/* RPY_BUSY: the library is freeing or resizing this very block, and may run
   Python meanwhile (a memprof tracker callback): no views, and no second
   free or resize, which would free the block under the first. */
enum { RPY_LIVE = 0, RPY_SEALED = 1, RPY_DEAD = 2, RPY_BUSY = 3 };

/* The whole Block lives here (the Python subclass adds methods only): the
   payload, its export count and state, and the Python fields _pool, _tag and
   _why.  _pool makes a cycle with the pool's table of blocks, so the type
   takes part in cyclic GC. */
typedef struct rpy_block {
    PyObject_HEAD
    char      *ptr;
    Py_ssize_t size;
    Py_ssize_t exports;   /* live Py_buffer views of this block */
    int        state;     /* RPY_LIVE, RPY_SEALED (no new exports), RPY_DEAD, RPY_BUSY */
    int        busy_from; /* the state RPY_BUSY replaced (restored on failure) */
    PyObject  *pool;      /* the allocator.Pool (owned reference) */
    PyObject  *tag;       /* the tag, a str (owned) */
    PyObject  *why;       /* why it died, a str or NULL */
    PyObject  *weakrefs;
    /* rpy_drop_dead: the dead Blocks taken out of the tables, held (with their
       keys) until every table is done */
    struct rpy_block *dropped_next;
    PyObject  *dropped_key;
} rpy_block;

static rpy_block *rpy_block_alloc(PyTypeObject *type, char *ptr, Py_ssize_t size,
                                  PyObject *pool, PyObject *tag)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    rpy_block *self = (rpy_block *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->ptr = ptr;
    self->size = size;
    self->exports = 0;
    self->state = RPY_LIVE;
    self->busy_from = RPY_LIVE;
    Py_XINCREF(pool);
    self->pool = pool;
    Py_XINCREF(tag);
    self->tag = tag;
    self->why = NULL;
    self->weakrefs = NULL;
    self->dropped_next = NULL;
    self->dropped_key = NULL;
    return self;
}

/* The token that _BlockBuffer(token, address, size) must be given, so that
   no Python code makes a Block over an address of its choosing by mistake:
   a made-up address would be read and written through its buffer, freed by
   its free().  It is made once per process, with the type, and handed out
   once per module object the type is registered on (_BlockBuffer._token(),
   which allocator._block takes at import): a second call raises.  A module
   object made anew (an import after sys.modules was purged, as pytester's
   inline runs and importlib.reload do) is registered anew, which arms one
   more hand-out of the same token, so the Pools of both imports keep making
   Blocks of the one process-wide type. */
static PyObject *rpy_token;
static int rpy_token_armed;
static PyObject *rpy_block_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *token;
    unsigned long long address;
    Py_ssize_t size;
    if (kwds != NULL && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "_BlockBuffer() takes no keywords");
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_ITEM(args, 0) != rpy_token || rpy_token == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "Blocks are made by a Pool (pool.alloc(), pool.calloc(), ...), "
                        "never over an address given from Python");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OKn", &token, &address, &size))
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be non-negative");
        return NULL;
    }
    return (PyObject *)rpy_block_alloc(type, (char *)(uintptr_t)address, size, NULL, NULL);
}

/* _BlockBuffer._token(): the token, once per registration; RuntimeError
   afterwards. */
static PyObject *rpy_block_token(PyObject *cls, PyObject *unused)
{
    (void)cls;
    (void)unused;
    if (rpy_token == NULL || !rpy_token_armed) {
        PyErr_SetString(PyExc_RuntimeError, "the Block token was already taken");
        return NULL;
    }
    rpy_token_armed = 0;
    Py_INCREF(rpy_token);
    return rpy_token;
}

static int rpy_block_traverse(PyObject *self, visitproc visit, void *arg)
{
    rpy_block *b = (rpy_block *)self;
    Py_VISIT(b->pool);
    Py_VISIT(b->tag);
    Py_VISIT(b->why);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int rpy_block_clear(PyObject *self)
{
    rpy_block *b = (rpy_block *)self;
    Py_CLEAR(b->pool);
    Py_CLEAR(b->tag);
    Py_CLEAR(b->why);
    return 0;
}

static void rpy_block_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (((rpy_block *)self)->weakrefs != NULL)
        PyObject_ClearWeakRefs(self);
    rpy_block_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

/* A dead block: let the Python subclass raise its own error (it knows the
   pool and the tag); fall back to ValueError. */
static void rpy_block_raise_dead(PyObject *self)
{
    PyObject *r = PyObject_CallMethod(self, "_raise_freed", NULL);
    Py_XDECREF(r);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "block was freed");
}

static int rpy_block_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    rpy_block *b = (rpy_block *)self;
    if (b->state == RPY_DEAD) {
        view->obj = NULL;
        rpy_block_raise_dead(self);
        return -1;
    }
    if (b->state == RPY_SEALED || b->state == RPY_BUSY) {
        view->obj = NULL;
        PyErr_SetString(PyExc_BufferError,
                        "block is being resized, freed or bulk-freed: no new buffer views");
        return -1;
    }
    if (PyBuffer_FillInfo(view, self, b->ptr, b->size, 0, flags) < 0)
        return -1;
    b->exports++;
    return 0;
}

static void rpy_block_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    ((rpy_block *)self)->exports--;
}

static int rpy_block_check_free(rpy_block *b)
{
    if (b->state == RPY_DEAD) {
        rpy_block_raise_dead((PyObject *)b);
        return -1;
    }
    if (b->state == RPY_BUSY) {   /* the Python subclass raises PoolBusy */
        PyObject *r = PyObject_CallMethod((PyObject *)b, "_raise_busy", NULL);
        Py_XDECREF(r);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_BufferError, "block is being freed or resized");
        return -1;
    }
    if (b->exports > 0) {         /* the Python subclass raises BlockInUse */
        PyObject *r = PyObject_CallMethod((PyObject *)b, "_raise_in_use", "n", b->exports);
        Py_XDECREF(r);
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_BufferError,
                         "block has %zd live buffer view(s) (memoryview, ...): release "
                         "them before freeing, resizing or destroying",
                         b->exports);
        return -1;
    }
    return 0;
}

/* _detach(): LIVE -> DEAD atomically (under the GIL).  Raises the freed
   error if already dead, BlockInUse while views are alive. */
static PyObject *rpy_block_detach(PyObject *self, PyObject *unused)
{
    (void)unused;
    rpy_block *b = (rpy_block *)self;
    if (rpy_block_check_free(b) < 0)
        return NULL;
    b->state = RPY_DEAD;
    Py_RETURN_NONE;
}

/* _begin_free(): the checks of _detach, then LIVE -> SEALED: no new views
   while the library works on the block without the GIL (resize, destroy,
   reset).  Finish with _kill() or undo with _abort_free(). */
static PyObject *rpy_block_begin_free(PyObject *self, PyObject *unused)
{
    (void)unused;
    rpy_block *b = (rpy_block *)self;
    if (rpy_block_check_free(b) < 0)
        return NULL;
    b->state = RPY_SEALED;
    Py_RETURN_NONE;
}

/* A free or resize that failed: back to the state rpy_block_enter_busy found. */
static void rpy_block_leave_busy(rpy_block *b)
{
    if (b->state == RPY_BUSY)
        b->state = b->busy_from;
}

static PyObject *rpy_block_abort_free(PyObject *self, PyObject *unused)
{
    (void)unused;
    rpy_block *b = (rpy_block *)self;
    if (b->state == RPY_SEALED)
        b->state = RPY_LIVE;
    else
        rpy_block_leave_busy(b);
    Py_RETURN_NONE;
}

/* The checks of _detach, then -> RPY_BUSY (the state before kept in
   busy_from): a free or resize of this block is under way and may run Python
   (memprof trackers) before it returns. 0, or -1 with the exception set. */
static int rpy_block_enter_busy(rpy_block *b)
{
    if (rpy_block_check_free(b) < 0)
        return -1;
    b->busy_from = b->state;
    b->state = RPY_BUSY;
    return 0;
}

/* _begin_busy(): rpy_block_enter_busy for the Python layer (a resize, the
   default pool's free). Finish with _kill() or undo with _abort_free() (back
   to the state before). */
static PyObject *rpy_block_begin_busy(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (rpy_block_enter_busy((rpy_block *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _kill(): DEAD whatever the state.  Never fails. */
static PyObject *rpy_block_kill(PyObject *self, PyObject *unused)
{
    (void)unused;
    ((rpy_block *)self)->state = RPY_DEAD;
    Py_RETURN_NONE;
}

/* The two calls of the bindings' hot path, made WITH the GIL held: an
   allocation or a free is a short critical section in the library that never
   waits for Python, so releasing and re-taking the GIL (what cffi does around
   every call) would cost more than the call.  Calls that may run Python
   (cleanups, walks), write files or take long (destroy, reset, reports) stay
   on the cffi path, which releases the GIL. */

/* Block._alloc(pool, pool_address, size, tag_address, tag) -> Block or None
   (None: the allocation failed; rpy_error_code() says why). */
static PyObject *rpy_block_fast_alloc(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_alloc(pool, pool_address, size, tag_address, tag)");
        return NULL;
    }
    void *pool = PyLong_AsVoidPtr(args[1]);
    size_t size = PyLong_AsSize_t(args[2]);
    void *tag = PyLong_AsVoidPtr(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (size > (size_t)PY_SSIZE_T_MAX) {
        rpy_clear_error();
        Py_RETURN_NONE;
    }
    rpy_clear_error();
    char *p = rp_alloc_noexc((rp_pool *)pool, size, (const char *)tag);
    if (p == NULL)
        Py_RETURN_NONE;
    rpy_block *b = rpy_block_alloc((PyTypeObject *)cls, p, (Py_ssize_t)size, args[0], args[4]);
    if (b == NULL) {            /* no Block: give the memory back at once */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        rp_free(p);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    return (PyObject *)b;
}

/* block._free() -> 0, or the rp_error code the library reported (the block
   then stays live, as the library leaves it).  BlockFreedError / BlockInUse
   as _detach. */
static PyObject *rpy_block_fast_free(PyObject *self, PyObject *unused)
{
    (void)unused;
    rpy_block *b = (rpy_block *)self;
    /* rp_free may call a memprof tracker (Python) that frees this block again */
    if (rpy_block_enter_busy(b) < 0)
        return NULL;
    rpy_clear_error();
    rp_free(b->ptr);
    if (rpy_err.code != 0) {
        rpy_block_leave_busy(b);
        return PyLong_FromLong(rpy_err.code);
    }
    b->state = RPY_DEAD;
    return PyLong_FromLong(0);
}

/* ------------------------------------------------------ bulk frees
   destroy(), reset() and a pool's finalizer change the state of every Block
   of a pool family around one library call that frees them all.  Those
   changes are made here, in C, each whole or not at all and without
   allocating: in Python, any statement may raise (a MemoryError from a
   bound method, a frame, an int; KeyboardInterrupt), and one raised halfway
   would leave Blocks live over freed memory, or sealed, or a pool refusing
   calls as "being destroyed" for ever.

   Tables of Blocks are the pools' dicts {address: Block}.  A table may hold
   a dead Block that a failed statement left there: it is skipped. */
static PyTypeObject *rpy_block_type;       /* _BlockBuffer, set at registration */
static PyObject *rpy_name_blocks, *rpy_name_state, *rpy_name_alive, *rpy_name_closing,
                *rpy_name_seal_new, *rpy_name_closing_list, *rpy_name_held,
                *rpy_name_children, *rpy_name_data;

static int rpy_is_block(PyObject *o)
{
    return rpy_block_type != NULL && PyObject_TypeCheck(o, rpy_block_type);
}

/* obj.name from the instance itself (never a __getattr__ or a property of
   a subclass; an instance-dict or slot hit allocates nothing), or NULL with
   no exception set. */
static PyObject *rpy_get(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GenericGetAttr(obj, name);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

/* obj.name = value the same way; an existing attribute is replaced without
   allocating.  A failure is ignored (the caller made the attribute first). */
static void rpy_set(PyObject *obj, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr(obj, name, value) != 0)
        PyErr_Clear();
}

static PyObject *rpy_pool_table(PyObject *pool)
{
    PyObject *t = rpy_get(pool, rpy_name_blocks);
    if (t != NULL && !PyDict_Check(t))
        Py_CLEAR(t);
    return t;
}

/* Every Block of tables (a list of dicts) in state from goes to state to. */
static void rpy_move_blocks(PyObject *tables, int from, int to)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tables); i++) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(PyList_GET_ITEM(tables, i), &pos, &k, &v))
            if (rpy_is_block(v) && ((rpy_block *)v)->state == from)
                ((rpy_block *)v)->state = to;
    }
}

/* Each pool of pools (a list): _closing and _seal_new = closing (a bool),
   _closing_list = registry (None when the family takes calls again). */
static void rpy_mark_closing(PyObject *pools, PyObject *closing, PyObject *registry)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++) {
        PyObject *pool = PyList_GET_ITEM(pools, i);
        rpy_set(pool, rpy_name_closing, closing);
        rpy_set(pool, rpy_name_seal_new, closing);
        rpy_set(pool, rpy_name_closing_list, registry);
    }
}

/* The pools a destroy or reset works on are HELD from the moment it seals
   them until the library's call returns (_PoolState.held: 1, or 2 for the
   pool a reset keeps; 0 otherwise): the library frees some of them during
   the call (a sibling's subtree before the next sibling's cleanups), and
   only the cleanup that runs may reach the pools it knows to be there (its
   pool's lineage, which its call opens: _BlockBuffer._fence below).  So a
   held pool is dead to Python (_PoolState.alive false) except within the
   cleanup's call that opened it; no Python code runs between the seal and
   the first cleanup, nor between a cleanup's last Python code and the
   library, and the gc, a __del__ or a weakref callback that runs anywhere
   else in the call (a memprof tracker, the cleanup's own trampoline) finds
   them dead.  Other threads wait for the family's lock.  Setting a slot of
   the state with a small int or a bool allocates nothing and runs no Python
   code. */
static void rpy_set_state(PyObject *pool, PyObject *alive, long held)
{
    PyObject *state = rpy_get(pool, rpy_name_state);
    if (state == NULL)
        return;
    rpy_set(state, rpy_name_alive, alive);
    if (held >= 0) {
        PyObject *h = PyLong_FromLong(held);    /* a small int: cached */
        if (h != NULL) {
            rpy_set(state, rpy_name_held, h);
            Py_DECREF(h);
        } else {
            PyErr_Clear();
        }
    }
    Py_DECREF(state);
}

/* Each pool of pools (a list) held (keep: 2, the others 1), dead to Python. */
static void rpy_hold(PyObject *pools, PyObject *keep)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++) {
        PyObject *pool = PyList_GET_ITEM(pools, i);
        rpy_set_state(pool, Py_False, pool == keep ? 2 : 1);
    }
}

/* Every pool of registry (a list: the pools of a call) that is alive (opened
   by the cleanup's call that ends, or made by it) is dead to Python again,
   and held (at least 1). */
static void rpy_park(PyObject *registry)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(registry); i++) {
        PyObject *pool = PyList_GET_ITEM(registry, i);
        PyObject *state = rpy_get(pool, rpy_name_state);
        if (state == NULL)
            continue;
        PyObject *alive = rpy_get(state, rpy_name_alive);
        PyObject *held = rpy_get(state, rpy_name_held);
        if (alive == Py_True) {
            long h = held != NULL && PyLong_Check(held) ? PyLong_AsLong(held) : 0;
            rpy_set_state(pool, Py_False, h > 0 ? -1 : 1);
        }
        Py_XDECREF(alive);
        Py_XDECREF(held);
        Py_DECREF(state);
    }
}

/* The cleanup calls open in this thread, innermost first: each records the
   pools of its call (the registry its Python side gives, _fence), parked
   again when the call returns, after its last Python code. */
typedef struct rpy_window {
    struct rpy_window *outer;
    PyObject *registry;     /* a list, or NULL */
} rpy_window;

static _Thread_local rpy_window *rpy_windows;

/* The function the library calls for every Python cleanup: the Python side
   (rpy_py_cleanup) runs inside a window that holds the GIL from before its
   first Python code to after its last one. */
static void rpy_cleanup_call(void *arg)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    rpy_window w = { rpy_windows, NULL };
    rpy_windows = &w;
    rpy_py_cleanup(arg);
    rpy_windows = w.outer;
    if (w.registry != NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        rpy_park(w.registry);
        Py_DECREF(w.registry);  /* the call's own list holds it: no Python code runs */
        PyErr_Restore(type, value, tb);
    }
    PyGILState_Release(gil);
}

/* _held_state(state) -> held * 2 + alive: the two slots of a _PoolState read
   together, with the GIL held and no Python code run in between (read one by
   one in Python, a destroy or reset of another thread may change both in
   between: Pool.destroyed).  A small int: nothing is allocated. */
static PyObject *rpy_held_state_py(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    (void)cls;
    PyObject *alive = nargs == 1 ? rpy_get(args[0], rpy_name_alive) : NULL;
    PyObject *held = nargs == 1 ? rpy_get(args[0], rpy_name_held) : NULL;
    long h = held != NULL && PyLong_CheckExact(held) ? PyLong_AsLong(held) : -1;
    int a = alive == Py_True;
    Py_XDECREF(alive);
    Py_XDECREF(held);
    if (h < 0 || h > 2) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "_held_state(state): a pool's state");
        return NULL;
    }
    return PyLong_FromLong(h * 2 + a);
}

/* _fence(registry) -> bool: the pools of registry (a list) are parked when the
   cleanup call this thread runs returns (False: no cleanup call runs here).
   Made before the cleanup's pools are opened, so that none stays open. */
static PyObject *rpy_fence_py(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    (void)cls;
    if (nargs != 1 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_fence(registry: list)");
        return NULL;
    }
    if (rpy_windows == NULL)
        Py_RETURN_FALSE;
    Py_INCREF(args[0]);
    PyObject *old = rpy_windows->registry;
    rpy_windows->registry = args[0];
    if (old != NULL) {
        rpy_park(old);
        Py_DECREF(old);
    }
    Py_RETURN_TRUE;
}

/* Every live Block of tables (a list of dicts) refuses new views (LIVE ->
   SEALED) and each pool of pools (a list) is marked closing: _closing and
   _seal_new true, _closing_list = registry (where a pool that a cleanup
   makes meanwhile adds itself).  All or nothing: -1 with BlockInUse while
   a Block has a live view, PoolBusy while one is being freed or resized,
   and then nothing changed. */
static int rpy_seal(PyObject *tables, PyObject *pools, PyObject *registry, PyObject *keep)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tables); i++) {
        PyObject *t = PyList_GET_ITEM(tables, i);
        if (!PyDict_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "tables must be dicts");
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(t, &pos, &k, &v)) {
            if (!rpy_is_block(v) || ((rpy_block *)v)->state == RPY_DEAD)
                continue;
            if (rpy_block_check_free((rpy_block *)v) < 0)
                return -1;      /* may have run Python: return before anything changed */
        }
    }
    rpy_move_blocks(tables, RPY_LIVE, RPY_SEALED);
    rpy_mark_closing(pools, Py_True, registry);
    rpy_hold(pools, keep);
    return 0;
}

/* What rpy_seal did, undone (the library freed nothing). */
static void rpy_unseal(PyObject *tables, PyObject *pools)
{
    rpy_move_blocks(tables, RPY_SEALED, RPY_LIVE);
    rpy_mark_closing(pools, Py_False, Py_None);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++)
        rpy_set_state(PyList_GET_ITEM(pools, i), Py_True, 0);
}

static void rpy_kill_table(PyObject *table, PyObject *why)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(table, &pos, &k, &v)) {
        if (!rpy_is_block(v))
            continue;
        rpy_block *b = (rpy_block *)v;
        b->state = RPY_DEAD;
        if (why != NULL && PyUnicode_Check(why)) {
            Py_INCREF(why);
            Py_XSETREF(b->why, why);    /* the old one is a str: no Python code runs */
        }
    }
}

/* Takes every dead Block out of table (a dict), keeping a reference to it and
   to its key on *held (a chain through the Blocks): no Block is deallocated
   here, so no Python code runs.  Only dead Blocks go: a live one that Python
   code put in the table meanwhile (a weakref callback or __del__ run by the
   release of an earlier table's Blocks allocating from the pool) stays; a
   PyDict_Clear of each table in turn dropped such a Block, left live over
   memory that the pool's next destroy freed without killing it.  Never fails:
   deleting a key allocates nothing. */
static void rpy_drop_dead(PyObject *table, rpy_block **held)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    rpy_block *found = NULL;
    while (PyDict_Next(table, &pos, &k, &v)) {
        if (!rpy_is_block(v) || ((rpy_block *)v)->state != RPY_DEAD)
            continue;
        rpy_block *b = (rpy_block *)v;
        if (b->dropped_key != NULL)     /* already held (a table listed twice) */
            continue;
        Py_INCREF(b);
        Py_INCREF(k);
        b->dropped_key = k;
        b->dropped_next = found;
        found = b;
    }
    /* the keys' deletion after the walk: the dict is not changed under it */
    while (found != NULL) {
        rpy_block *b = found;
        found = b->dropped_next;
        if (PyDict_GetItem(table, b->dropped_key) == (PyObject *)b &&
            PyDict_DelItem(table, b->dropped_key) != 0)
            PyErr_Clear();
        b->dropped_next = *held;
        *held = b;
    }
}

/* Releases what rpy_drop_dead held (Python code may run: deallocations). */
static void rpy_release_dropped(rpy_block *held)
{
    while (held != NULL) {
        rpy_block *b = held;
        held = b->dropped_next;
        b->dropped_next = NULL;
        PyObject *k = b->dropped_key;
        b->dropped_key = NULL;
        Py_DECREF(k);
        Py_DECREF(b);
    }
}

/* The library has freed the blocks of pools (a list) and of tables (a list
   of dicts): every Block there is dead (why: a str), every pool's state but
   keep's (the pool a reset keeps) is dead (_state.alive false), keep's alive,
   none held, every pool takes calls again (_closing and _seal_new false,
   _closing_list None);
   then the tables are emptied (the Blocks' deallocation may run weakref
   callbacks: by then the state is whole).  Never fails. */
/* The pool a reset keeps gets back the _seal_new and _closing_list it had
   (saved, new references or NULL): a pool that a cleanup made while an
   ancestor is being destroyed keeps sealing its Blocks from birth after its
   own reset (rpy_mark_closing cleared them, and a view of a Block allocated
   after that reset outlived the ancestor's destroy). */
static void rpy_restore_keep(PyObject *keep, PyObject *seal, PyObject *list)
{
    if (keep != NULL && keep != Py_None && seal != NULL && list != NULL) {
        rpy_set(keep, rpy_name_seal_new, seal);
        rpy_set(keep, rpy_name_closing_list, list);
    }
}

static void rpy_freed(PyObject *pools, PyObject *keep, PyObject *why, PyObject *tables,
                      PyObject *keep_seal, PyObject *keep_list)
{
    Py_INCREF(pools);
    Py_INCREF(tables);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++) {
        PyObject *pool = PyList_GET_ITEM(pools, i);
        rpy_set_state(pool, pool == keep ? Py_True : Py_False, 0);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++) {
        PyObject *t = rpy_pool_table(PyList_GET_ITEM(pools, i));
        if (t != NULL) {
            rpy_kill_table(t, why);
            Py_DECREF(t);
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tables); i++)
        if (PyDict_Check(PyList_GET_ITEM(tables, i)))
            rpy_kill_table(PyList_GET_ITEM(tables, i), why);
    rpy_mark_closing(pools, Py_False, Py_None);
    rpy_restore_keep(keep, keep_seal, keep_list);
    /* The dead Blocks leave the tables with no Python code run meanwhile
       (rpy_drop_dead), and are released after: Python code may run from
       there on (deallocations) */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    rpy_block *held = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pools); i++) {
        PyObject *t = rpy_pool_table(PyList_GET_ITEM(pools, i));
        if (t != NULL) {
            rpy_drop_dead(t, &held);
            Py_DECREF(t);
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tables); i++)
        if (PyDict_Check(PyList_GET_ITEM(tables, i)))
            rpy_drop_dead(PyList_GET_ITEM(tables, i), &held);
    rpy_release_dropped(held);
    PyErr_Restore(type, value, tb);
    Py_DECREF(pools);
    Py_DECREF(tables);
}

enum { RPY_BULK_DESTROY = 0, RPY_BULK_RESET = 1, RPY_BULK_STAT_DESTROY = 2 };

/* The object weakref ref refers to, as a new reference; NULL (no exception
   set) when it is dead or ref is no weakref.  Neither call runs Python code:
   a weakref's referent is read from the weakref itself. */
static PyObject *rpy_referent(PyObject *ref)
{
    if (!PyWeakref_Check(ref))
        return NULL;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(ref, &obj) < 0)
        PyErr_Clear();
    return obj;
#else
    PyObject *obj = PyWeakref_GetObject(ref);     /* borrowed; deprecated in 3.13 */
    if (obj == NULL || obj == Py_None) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(obj);
    return obj;
#endif
}

/* The pools a destroy or reset of root works on, listed with the gc off and
   no Python code run, so that none is born between the listing and the seal:
   family (root and the pools below it reached through live ones, parents
   first), tables (their _blocks dicts) and subtree (root and every pool below
   it, dead ones too: the registry of the call).  Listed in Python, the gc
   could run in between and a __del__ make a child of the pool, left out of
   the family: neither sealed nor held, a memprof tracker of the call reached
   it after the library had freed it.  Children are read from each pool's
   _children (a weakref.WeakSet: its data, a set of references), through
   the public iterator of an exact set: set_iter and its tp_iternext read the
   set's table and take a reference to each entry, calling no __hash__ or
   __eq__ (those run on insertion and lookup only) and no Python code; the
   iterator is a gc object, allocated with the gc off, and its deallocation
   only drops its reference to the set, which the WeakSet holds.  No weakref
   callback can remove an entry meanwhile: every reference dropped here is
   one more held elsewhere (the set's, or todo's), so nothing is collected.
   (_PySet_NextEntry did the same walk, but left the public headers in
   Python 3.13.)  The gc is off only while the GIL is held and no Python code
   runs: no other thread sees it.  0, or -1 with an exception set (nothing
   listed). */
static int rpy_list_family(PyObject *root, PyObject **family, PyObject **tables,
                           PyObject **subtree)
{
    int gc_was = PyGC_Disable();
    int rc = -1;
    PyObject *fam = PyList_New(0), *tab = PyList_New(0), *sub = PyList_New(0);
    PyObject *todo = PyList_New(0);     /* pool, reached through live pools: pairs */
    if (fam == NULL || tab == NULL || sub == NULL || todo == NULL ||
        PyList_Append(todo, root) < 0 || PyList_Append(todo, Py_True) < 0)
        goto out;
    while (PyList_GET_SIZE(todo) > 0) {
        Py_ssize_t n = PyList_GET_SIZE(todo);
        PyObject *pool = PyList_GET_ITEM(todo, n - 2), *live = PyList_GET_ITEM(todo, n - 1);
        Py_INCREF(pool);
        Py_INCREF(live);
        int err = PyList_SetSlice(todo, n - 2, n, NULL) < 0 || PyList_Append(sub, pool) < 0;
        if (!err && live == Py_True) {
            PyObject *t = rpy_pool_table(pool);
            if (t == NULL)
                PyErr_SetString(PyExc_TypeError, "a pool without its table of blocks");
            err = t == NULL || PyList_Append(fam, pool) < 0 || PyList_Append(tab, t) < 0;
            Py_XDECREF(t);
        }
        PyObject *kids = err ? NULL : rpy_get(pool, rpy_name_children);
        PyObject *refs = kids ? rpy_get(kids, rpy_name_data) : NULL;
        /* exactly a set: a subclass's __iter__ would be Python code */
        if (!err && (refs == NULL || !PyAnySet_CheckExact(refs))) {
            PyErr_SetString(PyExc_TypeError, "a pool without its set of children");
            err = 1;
        }
        PyObject *it = err ? NULL : PyObject_GetIter(refs);
        err = err || it == NULL;
        PyObject *ref;
        while (!err && (ref = PyIter_Next(it)) != NULL) {
            PyObject *kid = rpy_referent(ref);
            Py_DECREF(ref);     /* the set holds it */
            if (kid == NULL)
                continue;       /* collected: its finalizer sees to it */
            PyObject *state = rpy_get(kid, rpy_name_state);
            PyObject *alive = state ? rpy_get(state, rpy_name_alive) : NULL;
            PyObject *kid_live = live == Py_True && alive == Py_True ? Py_True : Py_False;
            Py_XDECREF(state);
            Py_XDECREF(alive);
            err = PyList_Append(todo, kid) < 0 || PyList_Append(todo, kid_live) < 0;
            Py_DECREF(kid);     /* alive, so held elsewhere as well: no finalizer */
        }
        err = err || PyErr_Occurred() != NULL;     /* the iterator's error */
        Py_XDECREF(it);
        Py_XDECREF(refs);
        Py_XDECREF(kids);
        Py_DECREF(pool);
        Py_DECREF(live);
        if (err)
            goto out;
    }
    *family = fam;
    *tables = tab;
    *subtree = sub;
    fam = tab = sub = NULL;
    rc = 0;
out:
    Py_XDECREF(fam);
    Py_XDECREF(tab);
    Py_XDECREF(sub);
    Py_XDECREF(todo);
    if (gc_was)
        PyGC_Enable();
    return rc;
}

/* _bulk_free(op, pool_address, tables, family, subtree, keep, why) -> rc:
   destroy() (op 0), reset() (1), the default pool's destroy (2) or a pool's
   finalizer (0, with tables only), in one call that nothing can stop
   halfway.  _bulk_free(op, pool_address, pool, keep, why): the same for
   destroy() and reset() of pool, whose tables, family and subtree are
   listed here (rpy_list_family).  First tables (the family's, a list of dicts) are sealed and
   family (a list of pools) marked closing and held (rpy_hold), all or
   nothing (BlockInUse, PoolBusy: nothing done); then the library's call,
   without the GIL (the cleanups take it, each in a window that opens its
   pool's lineage: rpy_cleanup_call); then, the call made (rc 0), every Block of subtree's
   pools (those the cleanups made meanwhile added) and of tables is dead,
   every state of subtree but keep's dead, and the pools take calls again.
   A reset the library refused (rc < 0: nothing freed) undoes the seal; the
   error is in the thread's record. */
static PyObject *rpy_bulk_free(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    (void)cls;
    if ((nargs != 7 || !PyList_Check(args[2]) || !PyList_Check(args[3]) ||
         !PyList_Check(args[4])) && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "_bulk_free(op, pool_address, tables: list, family: list, "
                        "subtree: list, keep, why) or _bulk_free(op, pool_address, pool, "
                        "keep, why)");
        return NULL;
    }
    long op = PyLong_AsLong(args[0]);
    void *pool = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (op < RPY_BULK_DESTROY || op > RPY_BULK_STAT_DESTROY || (pool == NULL && op != RPY_BULK_STAT_DESTROY)) {
        PyErr_SetString(PyExc_ValueError, "_bulk_free: bad operation or pool");
        return NULL;
    }
    PyObject *tables, *family, *subtree;
    if (nargs == 5) {
        /* listed with no Python code run until the seal */
        if (rpy_list_family(args[2], &family, &tables, &subtree) < 0)
            return NULL;
        args -= 2;      /* keep and why at 5 and 6, as in the long form */
    } else {
        tables = args[2];
        family = args[3];
        subtree = args[4];
        Py_INCREF(tables);
        Py_INCREF(family);
        Py_INCREF(subtree);
    }
    PyObject *res = NULL;
    PyObject *keep = args[5], *keep_seal = NULL, *keep_list = NULL;
    if (keep != Py_None) {
        keep_seal = rpy_get(keep, rpy_name_seal_new);
        keep_list = rpy_get(keep, rpy_name_closing_list);
    }
    if (rpy_seal(tables, family, subtree, keep) == 0) {
        int rc = 0;
        rpy_clear_error();
        Py_BEGIN_ALLOW_THREADS
        if (op == RPY_BULK_DESTROY)
            rp_pool_destroy((rp_pool *)pool);
        else if (op == RPY_BULK_RESET)
            rc = rp_pool_reset((rp_pool *)pool);
        else
            rp_stat_destroy_pool();
        Py_END_ALLOW_THREADS
        if (rc == 0) {
            rpy_freed(subtree, keep, args[6], tables, keep_seal, keep_list);
        } else {
            rpy_unseal(tables, family);
            rpy_restore_keep(keep, keep_seal, keep_list);
        }
        res = PyLong_FromLong(rc);      /* a small int: cached, never fails */
    }
    Py_XDECREF(keep_seal);
    Py_XDECREF(keep_list);
    Py_DECREF(tables);
    Py_DECREF(family);
    Py_DECREF(subtree);
    return res;
}

/* _kill_table(table, why): every Block of table (a dict) is dead, then the
   table is emptied (rpy_freed).  Never fails. */
static PyObject *rpy_kill_table_py(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    (void)cls;
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_kill_table(table: dict, why)");
        return NULL;
    }
    PyObject *table = args[0];
    Py_INCREF(table);
    rpy_kill_table(table, args[1]);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    rpy_block *held = NULL;
    rpy_drop_dead(table, &held);
    rpy_release_dropped(held);  /* deallocations: Python code may run */
    PyErr_Restore(type, value, tb);
    Py_DECREF(table);
    Py_RETURN_NONE;
}

/* block._resize(pool_address, size, stat) -> the new Block, or None (the
   resize failed: rpy_error_code() says why, and this block is as it was).
   The caller made this block busy (_begin_busy) and, on None, makes it
   live again (_abort_free).  The new Block is made before the library's
   call, so that nothing can fail after it: on success this block is dead
   and the new one live, with the same pool and tag; the caller updates the
   table.  stat: the default pool's facade (rp_stat_resize_noexc). */
static PyObject *rpy_block_fast_resize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    rpy_block *b = (rpy_block *)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_resize(pool_address, size, stat)");
        return NULL;
    }
    void *pool = PyLong_AsVoidPtr(args[0]);
    size_t size = PyLong_AsSize_t(args[1]);
    int stat = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (b->state != RPY_BUSY) {
        PyErr_SetString(PyExc_RuntimeError, "_resize: the block was not made busy");
        return NULL;
    }
    rpy_clear_error();
    if (size > (size_t)PY_SSIZE_T_MAX)
        Py_RETURN_NONE;
    rpy_block *nb = rpy_block_alloc(Py_TYPE(self), NULL, (Py_ssize_t)size, b->pool, b->tag);
    if (nb == NULL)
        return NULL;
    rpy_clear_error();
    char *p = stat ? rp_stat_resize_noexc(b->ptr, size)
                   : rp_resize_noexc((rp_pool *)pool, b->ptr, size);
    if (p == NULL) {
        Py_DECREF(nb);
        Py_RETURN_NONE;
    }
    nb->ptr = p;
    b->state = RPY_DEAD;
    return (PyObject *)nb;
}

static PyObject *rpy_block_get_exports(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(((rpy_block *)self)->exports);
}

static PyObject *rpy_block_get_alive(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((rpy_block *)self)->state != RPY_DEAD);
}

static PyObject *rpy_block_get_busy(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((rpy_block *)self)->state == RPY_BUSY);
}

static PyObject *rpy_block_get_addr(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)((rpy_block *)self)->ptr);
}

static PyObject *rpy_block_get_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(((rpy_block *)self)->size);
}

static PyObject *rpy_block_get_field(PyObject *field)
{
    if (field == NULL)
        return PyUnicode_FromString("");
    Py_INCREF(field);
    return field;
}

static PyObject *rpy_block_get_pool(PyObject *self, void *closure)
{
    (void)closure;
    PyObject *pool = ((rpy_block *)self)->pool;
    if (pool == NULL)
        Py_RETURN_NONE;
    Py_INCREF(pool);
    return pool;
}

static PyObject *rpy_block_get_tag(PyObject *self, void *closure)
{
    (void)closure;
    return rpy_block_get_field(((rpy_block *)self)->tag);
}

static PyObject *rpy_block_get_why(PyObject *self, void *closure)
{
    (void)closure;
    return rpy_block_get_field(((rpy_block *)self)->why);
}

static int rpy_block_set_str(PyObject **slot, PyObject *value, const char *name)
{
    if (value == NULL || !PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", name);
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

static int rpy_block_set_why(PyObject *self, PyObject *value, void *closure)
{
    (void)closure;
    return rpy_block_set_str(&((rpy_block *)self)->why, value, "_why");
}

static int rpy_block_set_tag(PyObject *self, PyObject *value, void *closure)
{
    (void)closure;
    return rpy_block_set_str(&((rpy_block *)self)->tag, value, "_tag");
}

static int rpy_block_set_pool(PyObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "_pool cannot be deleted");
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(((rpy_block *)self)->pool, value);
    return 0;
}

static PyMethodDef rpy_block_methods[] = {
    {"_detach", rpy_block_detach, METH_NOARGS, "Mark freed; BlockInUse while exported."},
    {"_begin_free", rpy_block_begin_free, METH_NOARGS, "Check as _detach, then refuse new views."},
    {"_abort_free", rpy_block_abort_free, METH_NOARGS, "Undo _begin_free or _begin_busy."},
    {"_begin_busy", rpy_block_begin_busy, METH_NOARGS,
     "Check as _detach, then refuse views, frees and resizes until _kill or _abort_free."},
    {"_kill", rpy_block_kill, METH_NOARGS, "Mark freed unconditionally."},
    {"_alloc", (PyCFunction)(void (*)(void))rpy_block_fast_alloc, METH_FASTCALL | METH_CLASS,
     "rp_alloc_noexc with the GIL held: a Block, or None on failure."},
    {"_free", rpy_block_fast_free, METH_NOARGS,
     "rp_free with the GIL held: 0, or the error the library reported."},
    {"_resize", (PyCFunction)(void (*)(void))rpy_block_fast_resize, METH_FASTCALL,
     "rp_resize_noexc with the GIL held on a busy block: the new Block, or None."},
    {"_token", rpy_block_token, METH_NOARGS | METH_STATIC,
     "The token of _BlockBuffer(token, address, size), handed out once per import."},
    {"_bulk_free", (PyCFunction)(void (*)(void))rpy_bulk_free, METH_FASTCALL | METH_STATIC,
     "Seal, destroy or reset, and kill every Block freed: in one call."},
    {"_kill_table", (PyCFunction)(void (*)(void))rpy_kill_table_py, METH_FASTCALL | METH_STATIC,
     "Every Block of the table dead, then the table emptied."},
    {"_fence", (PyCFunction)(void (*)(void))rpy_fence_py, METH_FASTCALL | METH_STATIC,
     "The pools of a call parked again when this thread's cleanup call returns."},
    {"_held_state", (PyCFunction)(void (*)(void))rpy_held_state_py, METH_FASTCALL | METH_STATIC,
     "held * 2 + alive of a pool's state, both read at once."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef rpy_block_getset[] = {
    {"_exports", rpy_block_get_exports, NULL, "live buffer views", NULL},
    {"_alive", rpy_block_get_alive, NULL, "not yet freed", NULL},
    {"_busy", rpy_block_get_busy, NULL, "a free or resize of it is under way", NULL},
    {"_addr", rpy_block_get_addr, NULL, "the payload's address", NULL},
    {"_size", rpy_block_get_size, NULL, "the requested size", NULL},
    {"_pool", rpy_block_get_pool, rpy_block_set_pool, "the owning Pool", NULL},
    {"_tag", rpy_block_get_tag, rpy_block_set_tag, "the origin tag", NULL},
    {"_why", rpy_block_get_why, rpy_block_set_why, "why the block died", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMemberDef rpy_block_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(rpy_block, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyType_Slot rpy_block_slots[] = {
    {Py_tp_new, (void *)rpy_block_new},
    {Py_tp_dealloc, (void *)rpy_block_dealloc},
    {Py_tp_traverse, (void *)rpy_block_traverse},
    {Py_tp_clear, (void *)rpy_block_clear},
    {Py_tp_methods, rpy_block_methods},
    {Py_tp_getset, rpy_block_getset},
    {Py_tp_members, rpy_block_members},
    {Py_bf_getbuffer, (void *)rpy_block_getbuffer},
    {Py_bf_releasebuffer, (void *)rpy_block_releasebuffer},
    {Py_tp_doc, (void *)"Buffer exporter over one pool block (base of allocator.Block)."},
    {0, NULL}
};

static PyType_Spec rpy_block_spec = {
    "allocator._ringpool._BlockBuffer",
    sizeof(rpy_block),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    rpy_block_slots
};

/* ------------------------------------------------------- _FamilyLock
   The lock of a pool family: _thread.RLock with an __exit__ that needs no
   memory.  RLock's own __exit__ takes its arguments as a tuple (METH_VARARGS):
   when that tuple could not be allocated, `with lock:` raised MemoryError
   and left the lock held, and the next destroy() of the family raised
   PoolBusy.  This one takes them as a vector (METH_FASTCALL) and calls the
   RLock's release (METH_NOARGS) the same way: nothing is allocated. */
static PyObject *rpy_name_release;

static PyObject *rpy_lock_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    PyObject *r = PyObject_VectorcallMethod(rpy_name_release, &self, 1, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyMethodDef rpy_lock_methods[] = {
    {"__exit__", (PyCFunction)(void (*)(void))rpy_lock_exit, METH_FASTCALL,
     "Release the lock (allocates nothing)."},
    {NULL, NULL, 0, NULL}
};

static PyType_Slot rpy_lock_slots[] = {
    {Py_tp_methods, rpy_lock_methods},
    {Py_tp_doc, (void *)"The lock of a pool family: an RLock whose __exit__ cannot fail."},
    {0, NULL}
};

static PyType_Spec rpy_lock_spec = {
    "allocator._ringpool._FamilyLock", 0, 0, Py_TPFLAGS_DEFAULT, rpy_lock_slots
};

/* The _FamilyLock type, a subclass of _thread.RLock, or NULL with the
   exception set. */
static PyObject *rpy_make_lock_type(void)
{
    rpy_name_release = PyUnicode_InternFromString("release");
    PyObject *thread = PyImport_ImportModule("_thread");
    PyObject *rlock = thread ? PyObject_GetAttrString(thread, "RLock") : NULL;
    Py_XDECREF(thread);
    if (rlock == NULL || rpy_name_release == NULL) {
        Py_XDECREF(rlock);
        return NULL;
    }
    PyObject *bases = PyTuple_Pack(1, rlock);
    Py_DECREF(rlock);
    if (bases == NULL)
        return NULL;
    PyObject *type = PyType_FromSpecWithBases(&rpy_lock_spec, bases);
    Py_DECREF(bases);
    return type;
}

/* The process-wide types and names, made on the first registration and kept
   for the life of the process: every Block of every import of the package
   is a _BlockBuffer of this one type (rpy_is_block), whichever module object
   it was made through.  0, or -1 with the exception set (nothing kept). */
static PyObject *rpy_lock_type;

static int rpy_make_types(void)
{
    if (rpy_block_type != NULL)
        return 0;
    PyObject *type = PyType_FromSpec(&rpy_block_spec);
    PyObject *lock = type ? rpy_make_lock_type() : NULL;
    rpy_name_blocks = PyUnicode_InternFromString("_blocks");
    rpy_name_state = PyUnicode_InternFromString("_state");
    rpy_name_alive = PyUnicode_InternFromString("alive");
    rpy_name_closing = PyUnicode_InternFromString("_closing");
    rpy_name_seal_new = PyUnicode_InternFromString("_seal_new");
    rpy_name_closing_list = PyUnicode_InternFromString("_closing_list");
    rpy_name_held = PyUnicode_InternFromString("held");
    rpy_name_children = PyUnicode_InternFromString("_children");
    rpy_name_data = PyUnicode_InternFromString("data");
    PyObject *token = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (!type || !lock || !rpy_name_blocks || !rpy_name_state || !rpy_name_alive ||
        !rpy_name_closing || !rpy_name_seal_new || !rpy_name_closing_list || !rpy_name_held ||
        !rpy_name_children || !rpy_name_data ||
        !token) {
        Py_XDECREF(type);
        Py_XDECREF(lock);
        Py_XDECREF(token);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    rpy_block_type = (PyTypeObject *)type;
    rpy_lock_type = lock;
    rpy_token = token;
    return 0;
}

/* Sets module._BlockBuffer and module._FamilyLock (the process-wide types,
   made on the first call) and arms one hand-out of the token.  A module that
   has its _BlockBuffer already is left as it is and arms nothing, so that
   registering again never gives the token out twice to one module object.
   Called from Python (through cffi, so without the GIL: take it), once per
   module object: an import after sys.modules was purged makes a new one.
   0 on success. */
static int rpy_register_block_type(const char *module)
{
    int rc = -1;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *mod = PyImport_ImportModule(module);
    if (mod != NULL && rpy_make_types() == 0) {
        int has = PyObject_HasAttrString(mod, "_BlockBuffer");
        if (has)
            rc = 0;
        else if (PyObject_SetAttrString(mod, "_FamilyLock", rpy_lock_type) == 0 &&
                 PyObject_SetAttrString(mod, "_BlockBuffer", (PyObject *)rpy_block_type) == 0) {
            rpy_token_armed = 1;
            rc = 0;
        }
    }
    Py_XDECREF(mod);
    if (rc != 0)
        PyErr_Print();
    PyGILState_Release(gil);
    return rc;
}
