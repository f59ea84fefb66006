/* What Python may call in allocator._ringpool: the part of ringpool.h the
   bindings use, plus the glue of _ringpool_glue.h (prefix rpy_).  Read by
   _build.py; keep in step with csrc/include/ringpool.h. */

/* ---- version (the one source of the package's version) */
#define RINGPOOL_VERSION_MAJOR ...
#define RINGPOOL_VERSION_MINOR ...
#define RINGPOOL_VERSION_PATCH ...

/* ---- errors */
#define RP_ERROR_MIN_ ...
const char *rp_strerror(int error);
const char *rp_error_name(int error);
typedef void (*rp_oom_handler)(const char *call, size_t size, const char *tag);
rp_oom_handler rp_set_oom_handler(rp_oom_handler handler);
typedef void (*rp_error_handler)(int error, const char *message, const void *block);
rp_error_handler rp_set_error_handler(rp_error_handler handler);

/* ---- pools */
typedef struct rp_pool rp_pool;
#define RP_POOL_UNSYNC ...
#define RP_POOL_CHECKED ...
#define RP_POOL_ARENA ...
#define RP_POOL_STACKS ...
#define RP_POOL_STACK_DEPTH_MASK ...
#define RP_MAX_ALIGN ...
#define RP_MAX_SIZE ...
#define RP_REPORT_BLOCKS ...
#define RP_REPORT_CHILDREN ...
typedef struct rp_pool_options {
    unsigned flags;
    size_t   chunk_size;
    size_t   keep_bytes;
} rp_pool_options;
rp_pool *rp_pool_create_ex(const char *name, const rp_pool_options *opts);
rp_pool *rp_pool_create_child_ex(rp_pool *parent, const char *name,
                                 const rp_pool_options *opts);
void rp_pool_destroy(rp_pool *pool);
const char *rp_pool_name(const rp_pool *pool);
rp_pool *rp_pool_parent(const rp_pool *pool);
typedef void (*rp_cleanup_fn)(void *arg);
int rp_pool_remove_cleanup(rp_pool *pool, rp_cleanup_fn fn, void *arg);
const char *rp_pool_intern_tag(rp_pool *pool, const char *s);

/* ---- blocks */
void rp_free(void *block);
size_t rp_block_size(const void *block);
const char *rp_block_tag(const void *block);
rp_pool *rp_block_pool(const void *block);

/* ---- string concatenation (variadic: n char * arguments) */
char *rp_strconcat_noexc(rp_pool *pool, const char *tag, int n, ...);
char *rp_stat_strconcat_noexc(int n, ...);

/* ---- default pool */
void rp_stat_create_pool(void);
rp_pool *rp_stat_pool(void);

/* ---- audit */
typedef struct rp_tag_stat {
    const char *tag;
    size_t      blocks;
    size_t      bytes;
    size_t      peak_bytes;
    uint64_t    allocs;
} rp_tag_stat;
size_t rp_pool_stats(rp_pool *pool, rp_tag_stat *out, size_t cap);
size_t rp_pool_outstanding(rp_pool *pool, size_t *bytes);
typedef struct rp_pool_info {
    size_t   struct_size;
    unsigned version;
    unsigned flags;
    size_t   blocks, bytes, peak_bytes;
    uint64_t allocs;
    size_t   tags;
    size_t   children;
    size_t   reserved_bytes;
    size_t   chunks;
} rp_pool_info;
typedef int (*rp_visit_fn)(void *block, size_t size, const char *tag, void *arg);

/* ---- sampling (memprof) */
typedef struct rp_memprof rp_memprof;
typedef struct rp_memprof_allocation {
    void        *block;
    size_t       size;
    size_t       samples;
    const char  *tag;
    rp_pool     *pool;
    void *const *callstack;
    size_t       callstack_len;
} rp_memprof_allocation;
typedef struct rp_memprof_tracker {
    void *(*alloc)(const rp_memprof_allocation *allocation, void *data);
    void  (*dealloc)(void *user, void *data);
    void  *data;
} rp_memprof_tracker;
typedef struct rp_memprof_params {
    double             rate;
    size_t             callstack_size;
    uint64_t           seed;
    rp_memprof_tracker tracker;
} rp_memprof_params;
#define RP_MEMPROF_MAX_STACK ...
int rp_memprof_start(const rp_memprof_params *params, rp_memprof **out);
int rp_memprof_stop(void);
int rp_memprof_discard(rp_memprof *profile);
rp_memprof *rp_memprof_running(void);
size_t rp_memprof_tracked(const rp_memprof *profile);
extern "Python" void *rpy_py_memprof_alloc(const rp_memprof_allocation *allocation, void *data);
extern "Python" void rpy_py_memprof_dealloc(void *user, void *data);

/* ---- testing */
void rp_debug_fail_after(long n, int sticky);
unsigned long rp_debug_alloc_count(void);

/* ---- glue (_ringpool_glue.h).  Every rpy_ call first clears the calling
   thread's error record; the record collects what the error handler saw
   during the call, and rpy_error_* read it afterwards. */
void rpy_install_handlers(void);
void rpy_clear_error(void);
int rpy_error_code(void);
int rpy_error_count(void);
size_t rpy_error_text(char *buf, size_t cap);
int rpy_register_block_type(const char *module);

/* Blocks as integer addresses (0 = NULL). */
uintptr_t rpy_alloc(rp_pool *pool, size_t size, const char *tag);
uintptr_t rpy_calloc(rp_pool *pool, size_t n, size_t size, const char *tag);
uintptr_t rpy_resize(rp_pool *pool, uintptr_t block, size_t size);
uintptr_t rpy_strdup(rp_pool *pool, const char *s, const char *tag);
uintptr_t rpy_memdup(rp_pool *pool, const void *p, size_t size, const char *tag);
uintptr_t rpy_alloc_aligned(rp_pool *pool, size_t align, size_t size, const char *tag);
int rpy_free(uintptr_t block);
rp_pool *rpy_pool_create(rp_pool *parent, const char *name, const rp_pool_options *opts);
void rpy_pool_destroy(rp_pool *pool);
int rpy_pool_reset(rp_pool *pool);
int rpy_pool_check(rp_pool *pool);
int rpy_pool_get_info(rp_pool *pool, rp_pool_info *info);
int rpy_pool_torn(rp_pool *pool);
int rpy_pool_write_report(rp_pool *pool, const char *path, unsigned report_flags);
int rpy_pool_walk(rp_pool *pool, void *arg);
int rpy_pool_add_cleanup(rp_pool *pool, void *arg);
int rpy_pool_remove_cleanup(rp_pool *pool, void *arg);

uintptr_t rpy_stat_alloc(size_t size);
uintptr_t rpy_stat_calloc(size_t n, size_t size);
uintptr_t rpy_stat_resize(uintptr_t block, size_t size);
uintptr_t rpy_stat_strdup(const char *s);
int rpy_stat_free(uintptr_t block);
void rpy_stat_destroy_pool(void);

/* Callbacks into Python (the walk visitor and pool cleanups). */
extern "Python" int rpy_py_visit(void *block, size_t size, const char *tag, void *arg);
extern "Python" void rpy_py_cleanup(void *arg);
