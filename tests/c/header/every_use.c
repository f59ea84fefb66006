/*
 * every_use.c -- a consumer of ringpool.h that uses every macro, type and
 * declaration, compiled as C (C99 to C2x) and as C++ (C++11 to C++20) with
 * the strictest warnings users turn on, errors on (tests/c/header/check.sh).
 * It is compiled and linked, and run once: a header that is only parsed can
 * hide a macro that expands wrongly.
 */
#include <ringpool.h>

#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
#define RP_NULL nullptr
#define RP_CAST(type, value) static_cast<type>(value)
#else
#define RP_NULL NULL
#define RP_CAST(type, value) ((type)(value))
#endif

static int count_block(void *block, size_t size, const char *tag, void *arg)
{
    size_t *n = RP_CAST(size_t *, arg);
    (void)block;
    (void)tag;
    *n += size;
    return 0;
}

static void on_oom(const char *call, size_t size, const char *tag)
{
    (void)call;
    (void)size;
    (void)tag;
}

static void on_error(int error, const char *message, const void *block)
{
    (void)error;
    (void)message;
    (void)block;
}

static void cleanup(void *arg)
{
    int *ran = RP_CAST(int *, arg);
    *ran = 1;
}

static void destructor(void *block)
{
    (void)block;
}

static void *track(const rp_memprof_allocation *allocation, void *data)
{
    (void)data;
    return allocation->block;
}

static void untrack(void *user, void *data)
{
    (void)user;
    (void)data;
}

int main(void)
{
    rp_pool_options opts;
    rp_pool_info info;
    rp_tag_stat tags[8];
    rp_stack_stat stacks[8];
    rp_memprof_params params;
    rp_memprof *profile = RP_NULL;
    rp_oom_handler old_oom;
    rp_error_handler old_error;
    rp_pool *pool;
    rp_pool *child;
    rp_pool *child_ex;
    size_t walked = 0;
    size_t bytes = 0;
    int ran = 0;
    int failures = 0;
    char *text;
    void *block;

    memset(&opts, 0, sizeof opts);
    opts.flags = RP_POOL_ARENA | RP_POOL_STACKS | RP_POOL_STACK_DEPTH(8);
    opts.chunk_size = 0;
    opts.keep_bytes = 0;
    if ((opts.flags & RP_POOL_STACK_DEPTH_MASK) != RP_POOL_STACK_DEPTH(8))
        failures++;

    old_oom = rp_set_oom_handler(on_oom);
    old_error = rp_set_error_handler(on_error);
    pool = rp_pool_create_ex("consumer", &opts);
    child = rp_pool_create_child(pool, "child");
    child_ex = rp_pool_create_child_ex(pool, "child_ex", &opts);
    if (pool == RP_NULL || child == RP_NULL || child_ex == RP_NULL)
        return 1;
    if (strcmp(rp_pool_name(pool), "consumer") != 0 || rp_pool_parent(child) != pool)
        failures++;

    block = RP_ALLOC(pool, 24);
    if (rp_block_size(block) != 24 || rp_block_pool(block) != pool)
        failures++;
    if (strstr(rp_block_tag(block), "every_use.c:") == RP_NULL)
        failures++;
    block = rp_resize(pool, block, 48);
    block = rp_resize_noexc(pool, block, 64);
    if (rp_set_destructor(block, destructor) != RP_OK)
        failures++;
    rp_free(block);
    rp_free(RP_ALLOC_NOEXC(pool, 8));
    rp_free(RP_CALLOC(pool, 2, 8));
    rp_free(RP_CALLOC_NOEXC(pool, 2, 8));
    rp_free(RP_STRDUP(pool, "a"));
    rp_free(RP_STRDUP_NOEXC(pool, "b"));
    rp_free(RP_MEMDUP(pool, "cd", 2));
    rp_free(RP_MEMDUP_NOEXC(pool, "ef", 2));
    rp_free(RP_ALLOC_ALIGNED(pool, 64, 10));
    text = RP_STRCONCAT(pool, 3, "x", "y", "z");
    if (strcmp(text, "xyz") != 0)
        failures++;
    rp_free(text);
    rp_free(rp_alloc(pool, 1, "tag"));
    rp_free(rp_alloc_noexc(pool, 1, "tag"));
    rp_free(rp_calloc(pool, 1, 1, "tag"));
    rp_free(rp_calloc_noexc(pool, 1, 1, "tag"));
    rp_free(rp_strdup(pool, "s", "tag"));
    rp_free(rp_strdup_noexc(pool, "s", "tag"));
    rp_free(rp_strconcat(pool, "tag", 2, "a", "b"));
    rp_free(rp_strconcat_noexc(pool, "tag", 2, "a", "b"));
    rp_free(rp_memdup(pool, "m", 1, "tag"));
    rp_free(rp_memdup_noexc(pool, "m", 1, "tag"));
    rp_free(rp_alloc_aligned(pool, 32, 1, "tag"));
    rp_free(rp_alloc_aligned_noexc(pool, 32, 1, "tag"));
    if (rp_alloc_noexc(pool, RP_MAX_SIZE + 1, "too big") != RP_NULL)
        failures++;
    if (rp_alloc_aligned_noexc(pool, RP_MAX_ALIGN * 2, 1, "too aligned") != RP_NULL)
        failures++;

    (void)RP_ALLOC(pool, 100);
    (void)RP_ALLOC(child, 100);
    if (rp_pool_walk(pool, count_block, &walked) != 0 || walked != 100)
        failures++;
    if (rp_pool_outstanding(pool, &bytes) != 1 || bytes != 100)
        failures++;
    if (rp_pool_stats(pool, tags, sizeof tags / sizeof tags[0]) < 1)
        failures++;
    (void)rp_pool_stack_stats(pool, stacks, sizeof stacks / sizeof stacks[0]);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (rp_pool_get_info(pool, &info) != RP_OK || info.version != 1 || info.blocks != 1)
        failures++;
    if (rp_pool_check(pool) != RP_OK)
        failures++;
    if (rp_pool_intern_tag(pool, "interned") == RP_NULL)
        failures++;
    if (rp_pool_add_cleanup(pool, cleanup, &ran) != RP_OK ||
        rp_pool_remove_cleanup(pool, cleanup, &ran) != RP_OK ||
        rp_pool_add_cleanup(pool, cleanup, &ran) != RP_OK)
        failures++;
    if (rp_pool_write_report_ex(pool, "/dev/null", RP_REPORT_BLOCKS | RP_REPORT_CHILDREN) != RP_OK ||
        rp_pool_write_report(pool, "/dev/null") != RP_OK)
        failures++;
    if (rp_report_live_pools() < 0)
        failures++;
    if (rp_pool_reset(pool) != RP_OK || ran != 1)
        failures++;

    memset(&params, 0, sizeof params);
    params.rate = 1.0;
    params.callstack_size = RP_MEMPROF_MAX_STACK;
    params.seed = 1;
    params.tracker.alloc = track;
    params.tracker.dealloc = untrack;
    params.tracker.data = RP_NULL;
    if (rp_memprof_start(&params, &profile) != RP_OK || rp_memprof_running() != profile)
        failures++;
    rp_free(RP_ALLOC(pool, 16));
    if (rp_memprof_tracked(profile) != 0 || rp_memprof_stop() != RP_OK ||
        rp_memprof_discard(profile) != RP_OK)
        failures++;

    rp_stat_create_pool();
    if (rp_stat_pool() == RP_NULL)
        failures++;
    rp_stat_free(rp_stat_alloc(1));
    rp_stat_free(rp_stat_alloc_noexc(1));
    rp_stat_free(rp_stat_calloc(1, 1));
    rp_stat_free(rp_stat_calloc_noexc(1, 1));
    rp_stat_free(rp_stat_resize(rp_stat_alloc(1), 2));
    rp_stat_free(rp_stat_resize_noexc(rp_stat_alloc(1), 2));
    rp_stat_free(rp_stat_strdup("s"));
    rp_stat_free(rp_stat_strdup_noexc("s"));
    rp_stat_free(rp_stat_strconcat(2, "a", "b"));
    rp_stat_free(rp_stat_strconcat_noexc(2, "a", "b"));
    rp_stat_destroy_pool();

    rp_debug_fail_after(1, 0);
    if (rp_alloc_noexc(pool, 1 << 20, "fails") != RP_NULL || !rp_debug_fail_fired() ||
        rp_debug_alloc_count() < 1)
        failures++;
    rp_debug_fail_after(0, 0);

    if (strcmp(rp_error_name(RP_EDOUBLEFREE), "RP_EDOUBLEFREE") != 0 ||
        strcmp(rp_strerror(RP_ENOMEM), "out of memory") != 0 ||
        RP_ERROR_MIN_ != RP_EBUSY || RP_EINVAL != -2 || RP_EALIGN != -3 ||
        RP_EOVERFLOW != -4 || RP_EFOREIGN != -6 || RP_ECORRUPT != -7 ||
        RP_EWRONGPOOL != -8 || RP_EDESTROYED != -9 || RP_EIO != -10 ||
        RP_ENOTFOUND != -11 || RP_POOL_UNSYNC == RP_POOL_CHECKED)
        failures++;

    rp_pool_destroy(pool);
    rp_pool_destroy(RP_NULL);
    (void)rp_set_oom_handler(old_oom);
    (void)rp_set_error_handler(old_error);
    if (failures != 0)
        fprintf(stderr, "every_use: %d checks failed\n", failures);
    return failures != 0;
}
