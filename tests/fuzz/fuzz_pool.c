/*
 * fuzz_pool.c -- a model-checked operation fuzzer for libringpool.
 *
 * The input is decoded into a sequence of operations over up to NPOOLS pools
 * of every option combination (malloc and arena backings, checked,
 * unsynchronised, children, odd chunk sizes and keep caps): allocation with
 * every call of the family and both twins, resize (moving, in place, NULL,
 * to 0, through the wrong pool), free, destructors, cleanups, reset, destroy
 * (with the $RINGPOOL_REPORT report), reports, interned tags and misuse that
 * checked pools must report.  After every step the library is compared with
 * a model kept here through the public API only: per-tag blocks, bytes, peak
 * and allocation counts (rp_pool_stats), pool totals (rp_pool_outstanding,
 * rp_pool_get_info), the order of cleanups and destructors, and, at check
 * steps, every block's contents, alignment, the ring (rp_pool_walk,
 * rp_pool_check) and that no two live blocks overlap.  Walks whose visitor
 * resizes, frees or allocates in the walked pool.  Also: bursts of
 * small blocks of one class in unchecked arena pools (headerless slots and
 * blocks with a header on one class's free list), misuse of the headerless
 * region (pointers inside slots, slots just freed, places no block is at,
 * blocks of a destroyed or reset pool: each must report its one error even
 * in unchecked pools), and a sampling profile (rp_memprof_*) whose tracked
 * blocks must stay within the live ones.  Destructors that create pools,
 * destroy other pools or add cleanups; big callocs; one operation at a time
 * on a second thread (shards of thread-safe pools); per input (its first
 * byte) no checked pool, locked creators, no recycling, stack pools.
 * $FUZZ_UNCHECKED=1: no input of the process makes a checked pool.
 *
 * One source, three programs (mk/fuzz.mk builds them):
 *   - a libFuzzer target (clang, -DFUZZ_LIBFUZZER, -fsanitize=fuzzer,...);
 *   - a deterministic driver (any C11 compiler):
 *       fuzz_pool --runs N [--seed S] [--max-len L]  N random inputs
 *       fuzz_pool --oom malloc|arena [--seed S] [--len L]
 *                 out-of-memory injection: a fixed scenario run once to
 *                 count its allocations, then once per k with exactly the
 *                 kth underlying allocation failing, then again with every
 *                 allocation from the kth on failing;
 *       fuzz_pool --oom malloc|arena --scenario FILE [--scenario FILE]...
 *                 the same for scenario files, one after the other in one
 *                 process (those whose input makes no checked pool first);
 *       fuzz_pool FILE...                            replay inputs
 *     $FUZZ_TRACE=1 prints each operation; $FUZZ_ARTIFACTS=DIR saves a
 *     failing generated input there (replay it with the file argument).
 *
 * Known defects of the library not yet fixed are avoided by compile-time
 * switches FUZZ_SKIP_<NAME> (mk/fuzz.mk lists the ones in force); each
 * removes one operation or check:
 *   CHUNK_OVERFLOW      arena chunk_size whose rounding overflows (must be
 *                       refused with RP_EINVAL);
 *   DTOR_RESIZE_OOM     under injection, moving resize of a malloc block that
 *                       has a destructor (the destructor must survive);
 *   CHECKED_MIX         checked and unchecked pools alive together (each
 *                       input then uses one kind only);
 *   STALE_LAST_CHECKED  use of a destroyed checked pool's block when no
 *                       checked pool is left (must be RP_EDESTROYED);
 *   REPORT_UTF8         reports must be valid UTF-8 whatever the tag bytes;
 *   TAG_BUFFER          a tag in a reused buffer (checked pools report the
 *                       change and count under the content);
 *   RESERVED_MISMATCH   the report's reserved_bytes equals rp_pool_get_info's;
 *   NOEXC_TAG           a failed call lists no new tag (tolerated when set);
 *   INFO_FLAGS          rp_pool_get_info().flags holds only RP_POOL_* bits;
 *   TAG_EVICTED         a checked pool reports a changed tag buffer even after
 *                       another tag pointer took the buffer's cache slot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringpool.h"

#ifdef FUZZ_COVERAGE
/* make fuzz-coverage: clang's profile runtime writes the counters from an
   atexit handler, which runs before the destructors, so the library's
   at-exit and unload paths (csrc/report.c rpi_at_unload: the at-exit
   report, the registry's, chunk cache's and headerless region's release;
   the shard and memprof unload hooks) ran unmeasured. A handler registered
   before the runtime's (this constructor runs first) runs after its write
   and zeroes the counters; the destructor that runs last (the lowest
   priority) writes what ran since, which the raw profile's online merge
   adds to the first write. */
int __llvm_profile_write_file(void);
void __llvm_profile_reset_counters(void);
static void coverage_written(void) { __llvm_profile_reset_counters(); }
__attribute__((constructor(101))) static void coverage_defer(void) { atexit(coverage_written); }
__attribute__((destructor(101))) static void coverage_write(void) { (void)__llvm_profile_write_file(); }
#endif

#define NPOOLS   8
#define NBLOCKS  384
#define NTAGS    40
#define NCLEAN   32
#define NEVENTS  256
#define MAXSTAT  64
#define LIVE_BYTES_CAP ((size_t)4 << 20)   /* keeps one input's memory bounded */

/* ---------------------------------------------------------------- input */
static const uint8_t *in_data;
static size_t in_len, in_pos;

static unsigned u8(void) { return in_pos < in_len ? in_data[in_pos++] : 0; }
static unsigned u16(void) { unsigned lo = u8(); return lo | (u8() << 8); }
static bool more(void) { return in_pos < in_len; }

/* ---------------------------------------------------------------- failure */
static bool tracing;
static unsigned long step_no;
static const char *step_name = "start";
static const char *artifact_dir;
static const uint8_t *saved_input;
static size_t saved_len;
static bool save_on_fail;

#define TRACE(...)                                                             \
    do {                                                                       \
        if (tracing) {                                                         \
            fprintf(stderr, "  [%lu] ", step_no);                              \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static void save_artifact(void)
{
    char path[4096];
    FILE *f;
    if (!save_on_fail || !artifact_dir || !saved_input) return;
    snprintf(path, sizeof path, "%s/fuzz-failure-%ld.bin", artifact_dir, (long)getpid());
    f = fopen(path, "wb");
    if (!f) return;
    fwrite(saved_input, 1, saved_len, f);
    fclose(f);
    fprintf(stderr, "fuzz_pool: failing input saved to %s (replay: fuzz_pool %s)\n", path, path);
}

static int stderr_saved = -1;   /* the real stderr while a destroy's is captured */

static _Noreturn void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    if (stderr_saved >= 0) {            /* the message goes where it is seen */
        fflush(stderr);
        dup2(stderr_saved, 2);
    }
    fprintf(stderr, "fuzz_pool.c:%d: step %lu (%s): invariant broken: ", line, step_no,
            step_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    save_artifact();
    fflush(NULL);
    abort();
}
#define FAIL(...) fail_at(__LINE__, __VA_ARGS__)
#define ENSURE(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) FAIL(__VA_ARGS__);                                        \
    } while (0)

/* ---------------------------------------------------------------- model */
typedef struct mtag {
    char     name[48];
    size_t   blocks, bytes, peak;
    uint64_t allocs;
} mtag;

typedef struct mpool {
    rp_pool    *p;           /* NULL: slot free */
    int         parent;      /* -1 for a root */
    unsigned    flags;       /* RP_POOL_* given at creation */
    bool        may_oom;     /* options under which allocations may fail */
    uint64_t    seq;         /* creation order */
    char        name[32];
    mtag        tags[NTAGS];
    int         ntags;
    size_t      bytes, peak;
    size_t      nchildren;
    const char *interned[8];
    int         ninterned;
    bool        order_unsure;  /* a failed call may have made a tag record */
    bool        survives;      /* made by a destructor of its parent during
                                  the parent's reset: kept */
    bool        threads;       /* used by another thread than its creator
                                  (thread-safe pools get shards): peaks are
                                  upper bounds, tags and walks in no set
                                  order (docs/contract.md, Threads) */
    char        buf_seen[16];  /* content last passed in the reused buffer */
    bool        buf_unsure;    /* ... by a call that failed */
} mpool;

typedef struct mblock {
    bool     live;
    void    *p;
    size_t   size, align;
    int      pool, tag;
    uint32_t seed;
    int      dtor;           /* 0 none, 1 dtor_a, 2 dtor_b, 3 dtor_c */
    unsigned dtor_arg;       /* what dtor_c does (dtor_action) */
    uint64_t dtor_seq;       /* registration order */
    uint64_t seq;            /* allocation order = ring order */
    uint64_t walked;         /* the last walk that visited it */
} mblock;

typedef struct mclean {
    bool     registered;
    int      pool;
    int      action;         /* what the cleanup does when it runs */
    uint64_t seq;
    bool     survives;       /* registered on a pool by its destructor
                                during its reset: kept */
} mclean;

static mpool  pools[NPOOLS];
static mblock blocks[NBLOCKS];
static mclean cleans[NCLEAN];
static uint64_t seq_counter, pool_counter;
static size_t live_bytes;
static char tmpdir[4096];

/* The headerless region of small arena blocks (the library's internals seen
   from outside, for the misuse that must be reported there: probe_region):
   its start and span (0: none found), the largest size given a slot, and
   what the inputs reached in it (printed by the driver). */
#define HL_PART  ((uintptr_t)1 << 30)
static uintptr_t hl_lo, hl_span;
static size_t hl_max;
static unsigned long hl_seen[3], hl_moves[4], hl_misuse;   /* slots of 16/32/64 bytes */
static bool is_hl(const void *p) { return (uintptr_t)p - hl_lo < hl_span; }
static void mp_gone(const void *p);
/* A block handed out (new or moved from old, NULL for a new one): counted
   by slot size, and a move by kind (0 slot to slot of another size, 1 slot
   to a block with a header, 2 header to slot, 3 within its slot). */
static void hl_note(const void *old, const void *p)
{
    if (!hl_span) return;
    if (is_hl(p)) hl_seen[((uintptr_t)p - hl_lo) / HL_PART]++;
    if (!old || (!is_hl(old) && !is_hl(p))) return;
    if (is_hl(old) && is_hl(p))
        hl_moves[old == p ? 3 : 0]++;
    else hl_moves[is_hl(old) ? 1 : 2]++;
}

/* events recorded by the callbacks, compared with what the model expects */
typedef struct event { int kind; const void *what; int fn; } event;
enum { EV_CLEANUP = 1, EV_DTOR = 2 };
static event events[NEVENTS], expected[NEVENTS];
static int nevents, nexpected;

/* errors reported through the error handler */
static int err_count, err_codes[8];

/* out-of-memory handler escape */
static jmp_buf oom_env;
static int oom_armed, oom_hits;

/* out-of-memory injection */
static bool inj_active, inj_sticky;
static int inj_fired0;
static unsigned long inj_count0;
static int force_backing = -1;      /* -1, 0 (malloc) or RP_POOL_ARENA */
static bool oom_scenario;           /* decoding of generated injection scenarios */

/* ---------------------------------------------------------------- handlers */
static void on_error(int error, const char *message, const void *block)
{
    (void)block;
    if (tracing) fprintf(stderr, "    error handler: %s: %s\n", rp_error_name(error), message);
    ENSURE(message && *message && !strchr(message, '\n'), "error message is not one line");
    ENSURE(error < 0 && strcmp(rp_error_name(error), "RP_UNKNOWN") != 0 &&
               strcmp(rp_strerror(error), "unknown error") != 0,
           "error %d has no name or message", error);
    if (err_count < 8) err_codes[err_count] = error;
    err_count++;
}

static void on_oom(const char *call, size_t size, const char *tag)
{
    (void)tag;
    if (tracing) fprintf(stderr, "    oom handler: %s(%zu)\n", call, size);
    ENSURE(oom_armed, "OOM handler called outside a plain call (%s, %zu)", call, size);
    oom_hits++;
    longjmp(oom_env, 1);
}

/* Runs a plain allocating call: res is its result, or NULL with oomed set
   when the OOM handler was called (it escapes with longjmp). */
#define PLAIN(res, oomed, expr)                                                \
    do {                                                                       \
        oom_hits = 0;                                                          \
        oom_armed = 1;                                                         \
        if (setjmp(oom_env) == 0) {                                            \
            (res) = (expr);                                                    \
            (oomed) = false;                                                   \
        } else {                                                               \
            (res) = NULL;                                                      \
            (oomed) = true;                                                    \
        }                                                                      \
        oom_armed = 0;                                                         \
    } while (0)

static void errors_reset(void) { err_count = 0; oom_hits = 0; }

/* Exactly the expected error (0: none) was reported since errors_reset(). */
static void expect_error(int code)
{
    if (code == 0) {
        ENSURE(err_count == 0, "unexpected %s reported for a correct call",
               rp_error_name(err_codes[0]));
    } else {
        ENSURE(err_count == 1, "%d errors reported, expected one %s", err_count,
               rp_error_name(code));
        ENSURE(err_codes[0] == code, "%s reported, expected %s", rp_error_name(err_codes[0]),
               rp_error_name(code));
    }
    err_count = 0;
}

/* ---------------------------------------------------------------- injection */
static void inj_begin(void)
{
    inj_fired0 = rp_debug_fail_fired();
    inj_count0 = rp_debug_alloc_count();
}

/* May the call made since inj_begin() fail for lack of memory? */
static bool inj_allowed(void)
{
    if (!inj_active) return false;
    if (inj_sticky) return rp_debug_fail_fired() && rp_debug_alloc_count() > inj_count0;
    return !inj_fired0 && rp_debug_fail_fired();
}

/* ---------------------------------------------------------------- contents */
/* Each block holds a stretch of one pattern, starting at an offset given by
   its seed; fill and check go by memcpy/memcmp in PERIOD-byte pieces (byte
   loops in the harness would dominate a coverage-instrumented build). */
#define PERIOD 4096u
static uint8_t pattern[PERIOD + 256];

static void pattern_init(void)
{
    for (size_t j = 0; j < sizeof pattern; j++)
        pattern[j] = (uint8_t)((j * 131u) ^ (j >> 5) ^ 0x5au);
}

static inline const uint8_t *pat_at(uint32_t seed, size_t i)
{
    return pattern + (seed & 255u) + i % PERIOD;
}

static void fill(mblock *b)
{
    uint8_t *p = b->p;
    for (size_t i = 0; i < b->size; i += PERIOD) {
        size_t n = b->size - i < PERIOD ? b->size - i : PERIOD;
        memcpy(p + i, pat_at(b->seed, i), n);
    }
}

static void verify_prefix(const mblock *b, const void *p, size_t n, const char *what)
{
    const uint8_t *q = p;
    for (size_t i = 0; i < n; i += PERIOD) {
        size_t m = n - i < PERIOD ? n - i : PERIOD;
        if (memcmp(q + i, pat_at(b->seed, i), m) == 0) continue;
        for (size_t k = i; k < i + m; k++)
            if (q[k] != *pat_at(b->seed, k))
                FAIL("%s: byte %zu of a %zu-byte block (tag %s) changed", what, k, b->size,
                     pools[b->pool].tags[b->tag].name);
    }
}

/* ---------------------------------------------------------------- model ops */
static int pool_live(int i) { return i >= 0 && i < NPOOLS && pools[i].p != NULL; }

static int count_live_pools(void)
{
    int n = 0;
    for (int i = 0; i < NPOOLS; i++) n += pools[i].p != NULL;
    return n;
}

static bool any_pool(bool checked)
{
    for (int i = 0; i < NPOOLS; i++)
        if (pools[i].p && ((pools[i].flags & RP_POOL_CHECKED) != 0) == checked) return true;
    return false;
}

/* A live pool chosen by the next byte; -1 when there is none. */
static int pick_pool(void)
{
    int n = count_live_pools(), k;
    if (n == 0) return -1;
    k = (int)(u8() % (unsigned)n);
    for (int i = 0; i < NPOOLS; i++)
        if (pools[i].p && k-- == 0) return i;
    return -1;
}

/* A live block (of pool, or any when pool < 0) chosen by the next byte. */
static int pick_block(int pool, bool without_dtor)
{
    int n = 0, k;
    for (int i = 0; i < NBLOCKS; i++)
        if (blocks[i].live && (pool < 0 || blocks[i].pool == pool) &&
            !(without_dtor && blocks[i].dtor))
            n++;
    if (n == 0) return -1;
    k = (int)(u16() % (unsigned)n);
    for (int i = 0; i < NBLOCKS; i++)
        if (blocks[i].live && (pool < 0 || blocks[i].pool == pool) &&
            !(without_dtor && blocks[i].dtor) && k-- == 0)
            return i;
    return -1;
}

static int free_block_slot(void)
{
    for (int i = 0; i < NBLOCKS; i++)
        if (!blocks[i].live) return i;
    return -1;
}

static int find_block(const void *p)
{
    for (int i = 0; i < NBLOCKS; i++)
        if (blocks[i].live && blocks[i].p == p) return i;
    return -1;
}

static int tag_index(mpool *m, const char *name, bool create)
{
    for (int i = 0; i < m->ntags; i++)
        if (strcmp(m->tags[i].name, name) == 0) return i;
    if (!create) return -1;
    ENSURE(m->ntags < NTAGS, "harness: too many tags");
    ENSURE(strlen(name) < sizeof m->tags[0].name, "harness: tag too long");
    mtag *t = &m->tags[m->ntags];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    return m->ntags++;
}

static void counters_add(int pool, int tag, size_t size, bool is_new)
{
    mpool *m = &pools[pool];
    mtag *t = &m->tags[tag];
    if (is_new) { t->allocs++; t->blocks++; }
    t->bytes += size;
    if (t->bytes > t->peak) t->peak = t->bytes;
    m->bytes += size;
    if (m->bytes > m->peak) m->peak = m->bytes;
    live_bytes += size;
}

static void counters_sub(int pool, int tag, size_t size, bool gone)
{
    mpool *m = &pools[pool];
    mtag *t = &m->tags[tag];
    if (gone) t->blocks--;
    t->bytes -= size;
    m->bytes -= size;
    live_bytes -= size;
}

static int teardown_root = -1;   /* pool whose destroy or reset is running */
static int outer_root = -1;      /* ... and the one around it (nested_destroy) */
static uint64_t teardown_seq0;   /* pool_counter when it started */
static void model_drop_block(int i);

/* Is pool a, or one of its ancestors, pool b? */
static bool in_subtree(int a, int b)
{
    for (; a >= 0; a = pools[a].parent)
        if (a == b) return true;
    return false;
}

/* A new block p of size bytes under tag name in pool: checks its address and
   alignment, records it and fills it with its pattern. */
static int model_new_block(int pool, void *p, size_t size, size_t align, const char *name)
{
    int s = free_block_slot();
    uintptr_t a = (uintptr_t)p;
    if (s < 0) {
        /* the model is full (NBLOCKS live blocks): the block goes at once,
           as if never made (its pool counted it and uncounts it) */
        TRACE("  model full: rp_free(%p)", p);
        int t = tag_index(&pools[pool], name, true);
        counters_add(pool, t, size, true);
        rp_free(p);
        mp_gone(p);
        counters_sub(pool, t, size, true);
        return -1;
    }
    ENSURE(a % 16 == 0, "block %p is not aligned to max_align_t", p);
    ENSURE(align == 0 || a % align == 0, "block %p is not aligned to %zu", p, align);
    int old = find_block(p);
    if (old >= 0 && !in_subtree(pool, blocks[old].pool) &&
        ((teardown_root >= 0 && in_subtree(blocks[old].pool, teardown_root)) ||
         (outer_root >= 0 && in_subtree(blocks[old].pool, outer_root)))) {
        /* a cleanup's block may take the place of one of a pool the same
           destroy has already freed (the model drops those afterwards) */
        model_drop_block(old);
        old = -1;
    }
    ENSURE(old < 0, "block %p handed out while still live", p);
    mblock *b = &blocks[s];
    memset(b, 0, sizeof *b);
    b->live = true;
    b->p = p;
    b->size = size;
    b->align = align;
    b->pool = pool;
    b->tag = tag_index(&pools[pool], name, true);
    b->seed = (uint32_t)(seq_counter * 2654435761u);
    b->seq = ++seq_counter;
    counters_add(pool, b->tag, size, true);
    fill(b);
    hl_note(NULL, p);
    return s;
}

static void model_drop_block(int i)
{
    mblock *b = &blocks[i];
    counters_sub(b->pool, b->tag, b->size, true);
    b->live = false;
}

/* ---------------------------------------------------------------- checks */
/* Is model tag t listed by rp_pool_stats?  Records never used by a
   successful allocation are not (interned only, or made by a failed call). */
static bool listed(const mtag *t)
{
#ifdef FUZZ_SKIP_NOEXC_TAG
    (void)t;
    return true;
#else
    return t->allocs > 0;
#endif
}

static void check_counters(int i)
{
    mpool *m = &pools[i];
    rp_tag_stat st[MAXSTAT];
    size_t n = rp_pool_stats(m->p, st, MAXSTAT), bl = 0, by = 0, nlisted = 0;
    uint64_t allocs = 0;
    ENSURE(n <= MAXSTAT, "pool %s: %zu tags", m->name, n);
    ENSURE(rp_pool_parent(m->p) == (m->parent >= 0 ? pools[m->parent].p : NULL),
           "pool %s: rp_pool_parent is not its parent", m->name);
    for (int k = 0; k < m->ntags; k++) {
        mtag *t = &m->tags[k];
        bl += t->blocks;
        allocs += t->allocs;
        if (!listed(t)) {
            ENSURE(t->blocks == 0, "harness: unlisted tag with blocks");
            continue;
        }
        /* first-use order, unless a failed call may have made a record early */
        size_t at = nlisted++;
        if (m->order_unsure || m->threads)
            for (at = 0; at < n && strcmp(st[at].tag, t->name) != 0; at++) {
            }
        ENSURE(at < n && st[at].tag && strcmp(st[at].tag, t->name) == 0,
               "pool %s: tag \"%s\" not listed (at %zu: \"%s\")", m->name, t->name, at,
               at < n && st[at].tag ? st[at].tag : "(none)");
        ENSURE(st[at].blocks == t->blocks && st[at].bytes == t->bytes &&
                   (m->threads ? st[at].peak_bytes >= t->peak : st[at].peak_bytes == t->peak) &&
                   st[at].allocs == t->allocs,
               "pool %s tag \"%s\": blocks/bytes/peak/allocs %zu/%zu/%zu/%llu, model "
               "%zu/%zu/%zu/%llu",
               m->name, t->name, st[at].blocks, st[at].bytes, st[at].peak_bytes,
               (unsigned long long)st[at].allocs, t->blocks, t->bytes, t->peak,
               (unsigned long long)t->allocs);
    }
    ENSURE(n == nlisted, "pool %s: %zu tags listed, model %zu", m->name, n, nlisted);
    size_t ob = rp_pool_outstanding(m->p, &by);
    ENSURE(ob == bl && by == m->bytes, "pool %s: outstanding %zu/%zu, model %zu/%zu", m->name,
           ob, by, bl, m->bytes);
    rp_pool_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ENSURE(rp_pool_get_info(m->p, &info) == 0, "rp_pool_get_info failed");
#ifdef FUZZ_SKIP_INFO_FLAGS
    info.flags &= RP_POOL_UNSYNC | RP_POOL_CHECKED | RP_POOL_ARENA;
#endif
    ENSURE(info.version == 1 && info.flags == m->flags && info.blocks == bl &&
               info.bytes == m->bytes && (m->threads ? info.peak_bytes >= m->peak : info.peak_bytes == m->peak) && info.allocs == allocs &&
               info.tags == nlisted && info.children == m->nchildren,
           "pool %s: info flags %#x blocks %zu bytes %zu peak %zu allocs %llu tags %zu "
           "children %zu; model %#x %zu %zu %zu %llu %d %zu",
           m->name, info.flags, info.blocks, info.bytes, info.peak_bytes,
           (unsigned long long)info.allocs, info.tags, info.children, m->flags, bl, m->bytes,
           m->peak, (unsigned long long)allocs, (int)nlisted, m->nchildren);
    /* headers: 32 bytes; in unchecked arena pools 16 for small blocks, and
       blocks of 1 to 16 bytes have none: a 16-byte slot and a 4-byte word
       (so at least 4 bytes beyond each block's size) */
    size_t hdr = (m->flags & (RP_POOL_ARENA | RP_POOL_CHECKED)) == RP_POOL_ARENA ? 4 : 32;
    ENSURE(info.reserved_bytes >= info.bytes + hdr * info.blocks,
           "pool %s: reserved_bytes %zu below bytes + headers (%zu + %zu * %zu)", m->name,
           info.reserved_bytes, info.bytes, hdr, info.blocks);
    ENSURE((m->flags & RP_POOL_ARENA) || info.chunks == 0, "malloc pool %s has %zu chunks",
           m->name, info.chunks);
}

static void check_all_counters(void)
{
    for (int i = 0; i < NPOOLS; i++)
        if (pools[i].p) check_counters(i);
}

/* ordered: the ring (malloc backing) or the pool's records (checked pools)
   hold every block, so a walk goes in allocation order; unchecked arena pools walk their small
   blocks by chunk: each once, in no set order. */
typedef struct walk_ctx { int pool; size_t seen; uint64_t last_seq; bool ordered; uint64_t gen; } walk_ctx;

/* From the visitor of a walk of pool i: destroying or resetting it is
   refused (RP_EBUSY: through the error handler for a destroy, returned by a
   reset) and changes nothing. So is destroying or resetting its parent when
   the walked pool is the first thing that teardown reaches: the parent has
   no cleanup and the walked pool is its newest child (docs/contract.md,
   Threads: pools reached before the walked one would stay torn down). */
static void walk_busy_probe(int i)
{
    TRACE("from a walk of %s: destroy and reset it (RP_EBUSY)", pools[i].name);
    rp_pool_destroy(pools[i].p);
    expect_error(RP_EBUSY);
    ENSURE(rp_pool_reset(pools[i].p) == RP_EBUSY, "reset of a pool being walked");
    expect_error(0);
    int up = pools[i].parent;
    if (up < 0) return;
    for (int c = 0; c < NCLEAN; c++)
        if (cleans[c].registered && cleans[c].pool == up) return;
    for (int k = 0; k < NPOOLS; k++)
        if (pools[k].p && pools[k].parent == up && pools[k].seq > pools[i].seq) return;
    TRACE("from a walk of %s: destroy and reset its parent %s (RP_EBUSY)", pools[i].name,
          pools[up].name);
    rp_pool_destroy(pools[up].p);
    expect_error(RP_EBUSY);
    ENSURE(rp_pool_reset(pools[up].p) == RP_EBUSY, "reset of a walked pool's parent");
    expect_error(0);
}

static int visit(void *block, size_t size, const char *tag, void *arg)
{
    walk_ctx *w = arg;
    if (w->seen == 0) walk_busy_probe(w->pool);
    int k = find_block(block);
    ENSURE(k >= 0 && blocks[k].pool == w->pool, "walk of pool %s visits unknown block %p",
           pools[w->pool].name, block);
    ENSURE(blocks[k].size == size, "walk: block %p has size %zu, model %zu", block, size,
           blocks[k].size);
    ENSURE(tag && strcmp(tag, pools[w->pool].tags[blocks[k].tag].name) == 0,
           "walk: block %p has tag \"%s\", model \"%s\"", block, tag ? tag : "(null)",
           pools[w->pool].tags[blocks[k].tag].name);
    if (w->ordered)
        ENSURE(blocks[k].seq > w->last_seq, "walk: blocks out of allocation order");
    ENSURE(blocks[k].walked != w->gen, "walk: block %p visited twice", block);
    blocks[k].walked = w->gen;
    w->last_seq = blocks[k].seq;
    w->seen++;
    return 0;
}

static int cmp_block_addr(const void *a, const void *b)
{
    const mblock *x = &blocks[*(const int *)a], *y = &blocks[*(const int *)b];
    return (uintptr_t)x->p < (uintptr_t)y->p ? -1 : (uintptr_t)x->p > (uintptr_t)y->p;
}

/* Everything: counters, the ring, every block's contents and placement. */
/* ---------------------------------------------------------------- sampling */
/* A profile (rp_memprof_start) whose tracker keeps each sampled block's
   address as its user value: the set of tracked blocks must stay a subset
   of the live ones (a block that goes, by free, a moving resize, reset or
   destroy, has its dealloc call first), until the profile is discarded. */
#define NTRACKED (2 * NBLOCKS)
static rp_memprof *mp_profile;      /* started (running or stopped), not discarded */
static bool mp_running;
static void *mp_tracked[NTRACKED];
static int mp_ntracked;
static unsigned long mp_samples;

static int mp_find(const void *p)
{
    for (int i = 0; i < mp_ntracked; i++)
        if (mp_tracked[i] == p) return i;
    return -1;
}

static void *mp_alloc_cb(const rp_memprof_allocation *a, void *data)
{
    ENSURE(data == &mp_profile, "tracker called with foreign data");
    ENSURE(a->block && a->samples >= 1 && a->pool && a->tag, "a sample without its block");
    ENSURE(mp_find(a->block) < 0, "block %p sampled while still tracked", a->block);
    mp_samples++;
    if (mp_ntracked == NTRACKED || (a->samples & 3) == 3) return NULL;   /* not tracked */
    mp_tracked[mp_ntracked++] = a->block;
    return a->block;
}

static void mp_dealloc_cb(void *user, void *data)
{
    ENSURE(data == &mp_profile, "tracker called with foreign data");
    int i = mp_find(user);
    ENSURE(i >= 0, "dealloc of %p, which is not tracked", user);
    mp_tracked[i] = mp_tracked[--mp_ntracked];
}

/* After block p went (freed or moved away from): no longer tracked. */
static void mp_gone(const void *p)
{
    ENSURE(mp_find(p) < 0, "block %p went without its dealloc call", p);
}

static void mp_check_live(void)
{
    for (int i = 0; i < mp_ntracked; i++)
        ENSURE(find_block(mp_tracked[i]) >= 0, "tracked block %p is not live", mp_tracked[i]);
}

static void op_memprof(void)
{
    unsigned how = u8();
    if (!mp_profile) {
        static const double rates[] = {1.0 / 64, 1.0 / 512, 1.0 / 4096, 1.0};
        rp_memprof_params pr;
        memset(&pr, 0, sizeof pr);
        pr.rate = rates[how % 4];
        pr.callstack_size = (how >> 2) % 3;
        pr.seed = 1 + (how >> 4);
        pr.tracker.alloc = mp_alloc_cb;
        pr.tracker.dealloc = mp_dealloc_cb;
        pr.tracker.data = &mp_profile;
        inj_begin();
        int rc = rp_memprof_start(&pr, &mp_profile);
        TRACE("rp_memprof_start(rate %g) -> %d", pr.rate, rc);
        if (rc == RP_ENOMEM) {
            ENSURE(inj_allowed(), "rp_memprof_start failed without cause");
            mp_profile = NULL;
            return;
        }
        ENSURE(rc == 0, "rp_memprof_start returned %d", rc);
        ENSURE(rp_memprof_running() == mp_profile, "rp_memprof_running is not the profile");
        mp_running = true;
    } else if (mp_running) {
        TRACE("rp_memprof_stop");
        ENSURE(rp_memprof_stop() == 0, "rp_memprof_stop failed");
        mp_running = false;
        ENSURE(rp_memprof_running() == NULL, "a profile runs after its stop");
    } else {
        ENSURE(rp_memprof_tracked(mp_profile) == (size_t)mp_ntracked,
               "rp_memprof_tracked %zu, tracker %d", rp_memprof_tracked(mp_profile), mp_ntracked);
        TRACE("rp_memprof_discard (%d tracked)", mp_ntracked);
        ENSURE(rp_memprof_discard(mp_profile) == 0, "rp_memprof_discard failed");
        mp_profile = NULL;
        mp_ntracked = 0;
    }
}

/* The end of an input: no block is left, so nothing is tracked; the
   profile stopped and discarded for the next input. */
static void mp_end(void)
{
    ENSURE(mp_ntracked == 0, "%d blocks tracked after the last destroy", mp_ntracked);
    if (mp_running) ENSURE(rp_memprof_stop() == 0, "rp_memprof_stop failed");
    if (mp_profile) ENSURE(rp_memprof_discard(mp_profile) == 0, "rp_memprof_discard failed");
    mp_profile = NULL;
    mp_running = false;
}

static void check_everything(void)
{
    mp_check_live();
    int order[NBLOCKS], n = 0;
    check_all_counters();
    for (int i = 0; i < NPOOLS; i++) {
        if (!pools[i].p) continue;
        static uint64_t walks;
        bool ordered = (pools[i].flags & (RP_POOL_ARENA | RP_POOL_CHECKED)) != RP_POOL_ARENA &&
                       !pools[i].threads;
        walk_ctx w = {i, 0, 0, ordered, ++walks};
        size_t bl = rp_pool_outstanding(pools[i].p, NULL);
        ENSURE(rp_pool_walk(pools[i].p, visit, &w) == 0, "rp_pool_walk failed");
        ENSURE(w.seen == bl, "walk of pool %s visits %zu blocks, %zu outstanding",
               pools[i].name, w.seen, bl);
        ENSURE(rp_pool_check(pools[i].p) == 0, "rp_pool_check(%s) found a problem",
               pools[i].name);
    }
    expect_error(0);
    for (int i = 0; i < NBLOCKS; i++) {
        mblock *b = &blocks[i];
        if (!b->live) continue;
        verify_prefix(b, b->p, b->size, "contents");
        ENSURE(rp_block_size(b->p) == b->size, "rp_block_size(%p) = %zu, model %zu", b->p,
               rp_block_size(b->p), b->size);
        ENSURE(rp_block_pool(b->p) == pools[b->pool].p, "rp_block_pool(%p) is wrong", b->p);
        const char *t = rp_block_tag(b->p);
        ENSURE(t && strcmp(t, pools[b->pool].tags[b->tag].name) == 0,
               "rp_block_tag(%p) = \"%s\", model \"%s\"", b->p, t ? t : "(null)",
               pools[b->pool].tags[b->tag].name);
        order[n++] = i;
    }
    expect_error(0);
    qsort(order, (size_t)n, sizeof order[0], cmp_block_addr);
    for (int k = 1; k < n; k++) {
        const mblock *a = &blocks[order[k - 1]], *b = &blocks[order[k]];
        ENSURE((uintptr_t)a->p + a->size <= (uintptr_t)b->p && a->p != b->p,
               "live blocks overlap: %p (%zu bytes) and %p (%zu bytes)", a->p, a->size, b->p,
               b->size);
    }
}

/* ---------------------------------------------------------------- callbacks */
static void record_event(int kind, const void *what, int fn)
{
    ENSURE(nevents < NEVENTS, "harness: too many events");
    events[nevents].kind = kind;
    events[nevents].what = what;
    events[nevents].fn = fn;
    nevents++;
}

static void dtor_common(void *block, int fn)
{
    int k = find_block(block);
    ENSURE(k >= 0, "destructor %d ran on %p, which is not a live block", fn, block);
    ENSURE(blocks[k].dtor == fn, "destructor %d ran on %p, model has %d", fn, block,
           blocks[k].dtor);
    verify_prefix(&blocks[k], block, blocks[k].size, "contents seen by the destructor");
    record_event(EV_DTOR, block, fn);
    blocks[k].dtor = 0;
}
static void dtor_a(void *block) { dtor_common(block, 1); }
static void dtor_b(void *block) { dtor_common(block, 2); }
static void dtor_action(int owner, unsigned arg);
/* A destructor that also (by the block's dtor_arg % 4, dtor_action):
   0 destroys another pool (a sibling the same teardown would reach later,
   or any pool that is neither the block's pool nor one of its ancestors);
   1 makes a sibling of the block's pool (a child of its parent, or a root)
   with a block in it; 2 the same as a child of the block's pool; 3 adds a
   cleanup to the block's pool (what a destroy must still run). */
static void dtor_c(void *block)
{
    int k = find_block(block);
    int owner = k >= 0 ? blocks[k].pool : -1;
    unsigned arg = k >= 0 ? blocks[k].dtor_arg : 0;
    dtor_common(block, 3);
    dtor_action(owner, arg);
}

static const char *const TAGS[] = {"alpha", "beta", "gamma", "x.c:12", "x.c:13", "",
                                   "(untagged)", "\xce\xbb-utf8"};
#define NSTATIC (sizeof TAGS / sizeof TAGS[0])

static int add_pool_slot(void);
static void empty_tmpdir(void);
static void tolerate_zero_tag(int pool);
static void misuse_one(void *q, int code, int owner);
static void model_add_pool(int slot, rp_pool *p, int parent, unsigned flags, bool may_oom);

/* A cleanup: records that it ran, then does what its record says, on its own
   pool (cleanups may allocate from and free to their pool). */
static void cleanup_fn(void *arg)
{
    mclean *c = arg;
    int pool = c->pool;
    ENSURE(c->registered, "cleanup ran twice or after removal");
    ENSURE(pool_live(pool), "cleanup ran for a pool that is gone");
    record_event(EV_CLEANUP, c, 0);
    c->registered = false;
    TRACE("cleanup #%d of %s runs: action %d", (int)(c - cleans), pools[pool].name, c->action);
    int fired0 = inj_fired0;
    unsigned long count0 = inj_count0;
    inj_begin();
    switch (c->action) {
    case 1: {                                   /* allocate in the pool */
        size_t size = (size_t)(c->seq % 200);
        void *p = rp_alloc_noexc(pools[pool].p, size, "cleanup");
        TRACE("  rp_alloc_noexc(%s, %zu, \"cleanup\") -> %p", pools[pool].name, size, p);
        if (p) model_new_block(pool, p, size, 0, "cleanup");
        else ENSURE(inj_allowed() || pools[pool].may_oom, "rp_alloc_noexc failed in a cleanup");
        if (!p) tolerate_zero_tag(pool);
        break;
    }
    case 2: {                                   /* free a block of the pool */
        int b = -1;
        for (int i = 0; i < NBLOCKS; i++)
            if (blocks[i].live && blocks[i].pool == pool && !blocks[i].dtor) { b = i; break; }
        if (b >= 0) {
            verify_prefix(&blocks[b], blocks[b].p, blocks[b].size, "contents before free");
            rp_free(blocks[b].p);
            mp_gone(blocks[b].p);
            model_drop_block(b);
        }
        break;
    }
    case 3: {                                   /* a child pool, and a block in it */
        int s = add_pool_slot();
        if (s < 0) break;
        char name[32];
        snprintf(name, sizeof name, "fzc%llu", (unsigned long long)pool_counter + 1);
        rp_pool *ch = rp_pool_create_child(pools[pool].p, name);
        if (!ch) {
            ENSURE(inj_allowed(), "rp_pool_create_child failed in a cleanup");
            break;
        }
        model_add_pool(s, ch, pool, pools[pool].flags, pools[pool].may_oom);
        void *p = rp_alloc_noexc(ch, 24, "cleanup");
        if (p) model_new_block(s, p, 24, 0, "cleanup");
        else ENSURE(inj_allowed() || pools[s].may_oom, "rp_alloc_noexc failed in a cleanup");
        if (!p) tolerate_zero_tag(s);
        break;
    }
    default:
        break;
    }
    inj_fired0 = fired0;
    inj_count0 = count0;
}

/* ---------------------------------------------------------------- pools */
static int add_pool_slot(void)
{
    for (int i = 0; i < NPOOLS; i++)
        if (!pools[i].p) return i;
    return -1;
}

static void model_add_pool(int slot, rp_pool *p, int parent, unsigned flags, bool may_oom)
{
    mpool *m = &pools[slot];
    memset(m, 0, sizeof *m);
    m->p = p;
    m->parent = parent;
    m->flags = flags;
    m->may_oom = may_oom;
    m->seq = ++pool_counter;
    snprintf(m->name, sizeof m->name, "%s", rp_pool_name(p));
    if (parent >= 0) pools[parent].nchildren++;
}

/* The expected events of destroying or resetting pool i: its cleanups (last
   registered first), its children's teardowns (newest first), then its
   blocks' destructors (last registered first). */
static void expect_teardown(int i, bool with_dtors)
{
    for (;;) {                                  /* cleanups, newest first */
        int best = -1;
        for (int c = 0; c < NCLEAN; c++)
            if (cleans[c].registered && cleans[c].pool == i &&
                (best < 0 || cleans[c].seq > cleans[best].seq)) {
                bool taken = false;
                for (int e = 0; e < nexpected; e++)
                    if (expected[e].what == &cleans[c]) taken = true;
                if (!taken) best = c;
            }
        if (best < 0) break;
        ENSURE(nexpected < NEVENTS, "harness: too many expected events");
        expected[nexpected++] = (event){EV_CLEANUP, &cleans[best], 0};
    }
    uint64_t below = UINT64_MAX;
    for (;;) {                                  /* children, newest first */
        int best = -1;
        for (int c = 0; c < NPOOLS; c++)
            if (pools[c].p && pools[c].parent == i && pools[c].seq < below &&
                (best < 0 || pools[c].seq > pools[best].seq))
                best = c;
        if (best < 0) break;
        below = pools[best].seq;
        expect_teardown(best, true);
    }
    if (!with_dtors) return;
    below = UINT64_MAX;
    for (;;) {                                  /* destructors, newest first */
        int best = -1;
        for (int b = 0; b < NBLOCKS; b++)
            if (blocks[b].live && blocks[b].pool == i && blocks[b].dtor &&
                blocks[b].dtor_seq < below &&
                (best < 0 || blocks[b].dtor_seq > blocks[best].dtor_seq))
                best = b;
        if (best < 0) break;
        below = blocks[best].dtor_seq;
        ENSURE(nexpected < NEVENTS, "harness: too many expected events");
        expected[nexpected++] = (event){EV_DTOR, blocks[best].p, blocks[best].dtor};
    }
}

static void compare_events(const char *what)
{
    ENSURE(nevents == nexpected, "%s: %d callbacks ran, expected %d", what, nevents, nexpected);
    for (int k = 0; k < nevents; k++)
        ENSURE(events[k].kind == expected[k].kind && events[k].what == expected[k].what &&
                   events[k].fn == expected[k].fn,
               "%s: callback %d is %s %p, expected %s %p", what, k,
               events[k].kind == EV_DTOR ? "destructor of" : "cleanup",
               events[k].what, expected[k].kind == EV_DTOR ? "destructor of" : "cleanup",
               expected[k].what);
    nevents = nexpected = 0;
}

/* Removes pool i's blocks (and, unless keep, the pool with its children)
   from the model after a destroy or reset. */
static void model_teardown(int i, bool keep)
{
    mpool *m = &pools[i];
    for (int c = 0; c < NPOOLS; c++) {
        if (!pools[c].p || pools[c].parent != i) continue;
        if (!(keep && pools[c].survives)) model_teardown(c, false);
        pools[c].survives = false;
    }
    m->nchildren = 0;
    for (int c = 0; c < NPOOLS; c++) m->nchildren += pools[c].p && pools[c].parent == i;
    for (int b = 0; b < NBLOCKS; b++)
        if (blocks[b].live && blocks[b].pool == i) model_drop_block(b);
    for (int c = 0; c < NCLEAN; c++) {
        if (cleans[c].pool == i && !(keep && cleans[c].survives)) cleans[c].registered = false;
        if (cleans[c].pool == i) cleans[c].survives = false;
    }
    if (keep) return;
    if (m->parent >= 0) pools[m->parent].nchildren--;
    m->p = NULL;
}

static void subtree_names(int i, char names[][32], int *n)
{
    snprintf(names[(*n)++], 32, "%s", pools[i].name);
    for (int c = 0; c < NPOOLS; c++)
        if (pools[c].p && pools[c].parent == i) subtree_names(c, names, n);
}

/* ---------------------------------------------------------------- reports */
static __attribute__((unused)) bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 3; cp = c & 0x07; }
        else return false;
        for (size_t k = 1; k <= len; k++) {
            if (i + k >= n || (s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((len == 2 && cp < 0x800) || (len == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len + 1;
    }
    return true;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

static size_t json_number_after(const char *s, const char *key)
{
    const char *k = strstr(s, key);
    ENSURE(k, "report has no %s", key);
    return (size_t)strtoull(k + strlen(key), NULL, 10);
}

/* Checks a report file of pool i written with flags (reason given). */
static void check_report_file(const char *path, int i, unsigned flags, const char *reason,
                              bool totals)
{
    size_t len = 0;
    char *s = read_file(path, &len);
    ENSURE(s, "report %s was not written", path);
    ENSURE(strncmp(s, "{\"format\": \"ringpool-snapshot\", \"version\": 1,", 45) == 0,
           "report %s does not start with the format header", path);
#ifndef FUZZ_SKIP_REPORT_UTF8
    ENSURE(valid_utf8((const unsigned char *)s, len), "report %s is not valid UTF-8", path);
#endif
    char want[96];
    snprintf(want, sizeof want, "\"reason\": \"%s\"", reason);
    ENSURE(strstr(s, want), "report %s lacks %s", path, want);
    snprintf(want, sizeof want, "\"pool\": \"%s\"", pools[i].name);
    ENSURE(strstr(s, want), "report %s lacks %s", path, want);
    if (totals) {
        const char *t = strstr(s, "\"totals\"");
        ENSURE(t, "report has no totals");
        size_t bl = json_number_after(t, "\"blocks\": ");
        size_t by = json_number_after(t, "\"bytes\": ");
        size_t mb = rp_pool_outstanding(pools[i].p, NULL);
        ENSURE(bl == mb && by == pools[i].bytes, "report totals %zu/%zu, model %zu/%zu", bl,
               by, mb, pools[i].bytes);
#ifndef FUZZ_SKIP_RESERVED_MISMATCH
        rp_pool_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        rp_pool_get_info(pools[i].p, &info);
        size_t rs = json_number_after(t, "\"reserved_bytes\": ");
        ENSURE(rs == info.reserved_bytes, "report reserved_bytes %zu, rp_pool_get_info %zu", rs,
               info.reserved_bytes);
#endif
        if ((flags & RP_REPORT_BLOCKS) && !(flags & RP_REPORT_CHILDREN)) {
            size_t n = 0;
            for (const char *q = s; (q = strstr(q, "\"address\": ")) != NULL; q++) n++;
            ENSURE(n == mb, "report lists %zu blocks, %zu outstanding", n, mb);
        }
    }
    free(s);
}

/* ---------------------------------------------------------------- sizes */
static size_t pick_size(void)
{
    unsigned b = u8();
    size_t s;
    if (b < 140) s = u8() % 65;
    else if (b < 210) s = u16() % 1100;
    else if (b < 240) s = u16() % 5000;
    else if (b < 252) s = 30000 + u16() % 12000;
    else s = 100000 + (size_t)u16() * 4;
    if (live_bytes + s > LIVE_BYTES_CAP) s %= 64;
    return s;
}

/* A size no pool can give: fails like an out-of-memory. */
static size_t impossible_size(void)
{
    return u8() & 1 ? SIZE_MAX - (u8() & 7) : (size_t)RP_MAX_SIZE + 1 + u8();
}

static const char *pick_tag(int pool)
{
    unsigned b = u8();
    if (b < 200) return TAGS[b % NSTATIC];
    if (b < 225) return NULL;
    if (pools[pool].ninterned) return pools[pool].interned[b % pools[pool].ninterned];
    return TAGS[b % NSTATIC];
}

static const char *tag_name(const char *tag) { return tag ? tag : "(untagged)"; }


/* After a failed call: FUZZ_SKIP_NOEXC_TAG tolerates the known defect of a
   failed call leaving its new tag behind with zero counts. */
static void tolerate_zero_tag(int pool)
{
#ifdef FUZZ_SKIP_NOEXC_TAG
    if (pool >= 0) {
        rp_tag_stat st[MAXSTAT];
        size_t n = rp_pool_stats(pools[pool].p, st, MAXSTAT);
        if (n == (size_t)pools[pool].ntags + 1 && n <= MAXSTAT && st[n - 1].blocks == 0)
            tag_index(&pools[pool], st[n - 1].tag, true);
    }
#else
    if (pool >= 0) pools[pool].order_unsure = true;
#endif
}

/* What an allocating call did, against what it was allowed to do. */
static bool took(void *r, bool oomed, bool plain, bool must_fail, int pool, const char *call)
{
    bool may_fail = must_fail || inj_allowed() || (pool >= 0 && pools[pool].may_oom);
    if (r) {
        ENSURE(!must_fail, "%s succeeded where it must fail", call);
        ENSURE(!oomed, "%s", call);
        return true;
    }
    if (plain) ENSURE(oomed, "%s returned NULL instead of calling the OOM handler", call);
    else ENSURE(oom_hits == 0, "%s called the OOM handler", call);
    ENSURE(may_fail, "%s failed without cause", call);
    tolerate_zero_tag(pool);
    return false;
}

/* ---------------------------------------------------------------- operations */
static unsigned pool_flags(unsigned b)
{
    unsigned f = 0;
    if (b & 1) f |= RP_POOL_UNSYNC;
    if (b & 2) f |= RP_POOL_CHECKED;
    if (b & 4) f |= RP_POOL_ARENA;
    if (force_backing >= 0) f = (f & ~(unsigned)RP_POOL_ARENA) | (unsigned)force_backing;
    return f;
}

static bool mode_checked;   /* FUZZ_SKIP_CHECKED_MIX: this input's one kind */
/* The input's first byte also says (bit 1) that no pool is checked, so
   rp_free and rp_resize take their unchecked paths (any checked pool sends
   every block through the registry), and sets for the pools it makes
   RINGPOOL_SHARD_BIAS=0 (bit 2: a thread-safe pool's creator takes its
   lock) and RINGPOOL_RECYCLE=0 (bit 3: malloc-backed pools keep no freed
   blocks); with bit 4, pools may record stacks (RP_POOL_STACKS). */
static bool mode_unchecked, mode_stacks;
/* $FUZZ_UNCHECKED=1: every input without checked pools.  A process that
   ever had a checked pool keeps rp_free's slow test on (the registry
   keeps the records of freed checked blocks, to recognise them), so the
   unchecked fast paths are reached only in a process that never made one. */
static bool all_unchecked;
static const char *env_bias0, *env_recycle0;   /* as the driver was started */

static void env_restore(const char *name, const char *value)
{
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}

static void input_env(unsigned mode)
{
    env_restore("RINGPOOL_SHARD_BIAS", mode & 4 ? "0" : env_bias0);
    env_restore("RINGPOOL_RECYCLE", mode & 8 ? "0" : env_recycle0);
}

static void op_create(int parent_mode)
{
    int s = add_pool_slot();
    unsigned b = u8(), c = u8();
    if (s < 0) return;
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = pool_flags(b);
#ifdef FUZZ_SKIP_CHECKED_MIX
    o.flags = (o.flags & ~(unsigned)RP_POOL_CHECKED) | (mode_checked ? RP_POOL_CHECKED : 0);
#endif
    if (mode_unchecked) o.flags &= ~(unsigned)RP_POOL_CHECKED;
    if (mode_stacks && (b & 8) && (b >> 3) != 31) o.flags |= RP_POOL_STACKS;
    static const size_t chunks[] = {0, 1, 4096, 65536, 65544, 100000, 1 << 20, 1 << 22};
    static const size_t keeps[] = {0, 1, 65536, SIZE_MAX};
    o.chunk_size = chunks[c % 8];
    o.keep_bytes = keeps[(c >> 3) % 4];
    bool may_oom = false, bad_flags = false, huge_chunk = false;
#ifndef FUZZ_SKIP_CHUNK_OVERFLOW
    if ((c >> 5) == 7) {                        /* chunk sizes whose rounding overflows */
        static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - 15, (size_t)1 << 63};
        o.chunk_size = huge[b >> 6];
        huge_chunk = (o.flags & RP_POOL_ARENA) != 0;
    }
#endif
    if ((b >> 3) == 31) {                       /* an unknown option flag */
        o.flags |= 1u << 9;
        bad_flags = true;
    }
    char name[32];
    snprintf(name, sizeof name, "fz%llu", (unsigned long long)pool_counter + 1);
    int parent = -1;
    rp_pool *p;
    if (parent_mode == 0) {
        p = rp_pool_create_ex(name, &o);
    } else {
        parent = pick_pool();
        if (parent < 0) return;
        if (parent_mode == 1) {
            /* inherits the parent's options */
            o.flags = pools[parent].flags;
            may_oom = pools[parent].may_oom;
            bad_flags = false;
            p = rp_pool_create_child(pools[parent].p, name);
        } else {
            p = rp_pool_create_child_ex(pools[parent].p, name, &o);
        }
    }
    TRACE("create %s flags %#x chunk %zu keep %zu parent %d -> %p", name, o.flags, o.chunk_size,
          o.keep_bytes, parent, (void *)p);
    if (bad_flags) {
        ENSURE(!p, "a pool with unknown flags was created");
        expect_error(RP_EINVAL);
        return;
    }
    if (huge_chunk && parent_mode != 1) {
        /* a chunk size that cannot be rounded or allocated is refused */
        ENSURE(!p, "a pool with chunk_size %zu was created", o.chunk_size);
        if (err_count || !inj_allowed()) expect_error(RP_EINVAL);
        return;
    }
    if (!p) {
        ENSURE(inj_allowed() || may_oom, "pool creation failed without cause");
        return;
    }
    model_add_pool(s, p, parent, o.flags, may_oom);
}

/* The default pool (rp_stat_*): its model slot, or -1. */
static int stat_slot = -1;

static void destroy_pool(int i)
{
    if (i == stat_slot) {
        ENSURE(rp_stat_pool() == pools[i].p, "rp_stat_pool() is not the default pool");
        rp_stat_destroy_pool();
        ENSURE(rp_stat_pool() == NULL, "the default pool is still there after its destroy");
        stat_slot = -1;
    } else {
        rp_pool_destroy(pools[i].p);
    }
}

static int dtor_nesting;   /* a destructor's action is running */
static bool resetting;     /* teardown_root is being reset */

/* Destroys pool s from a destructor: its callbacks are checked on their
   own, and the teardown running around them no longer expects those of
   s's pools. */
static void nested_destroy(int s)
{
    static event outer_ev[NEVENTS], outer_ex[NEVENTS];
    int nev = nevents, nex = 0, root = teardown_root;
    uint64_t seq0 = teardown_seq0;
    memcpy(outer_ev, events, sizeof events[0] * (size_t)nevents);
    for (int e = 0; e < nexpected; e++) {
        int pool = -1;
        if (expected[e].kind == EV_CLEANUP) {
            pool = ((const mclean *)expected[e].what)->pool;
        } else {
            int k = find_block(expected[e].what);
            pool = k >= 0 ? blocks[k].pool : -1;
        }
        if (pool >= 0 && in_subtree(pool, s)) continue;
        outer_ex[nex++] = expected[e];
    }
    nevents = nexpected = 0;
    expect_teardown(s, true);
    TRACE("a destructor destroys %s (%d callbacks expected)", pools[s].name, nexpected);
    bool was_resetting = resetting;
    teardown_root = s;
    outer_root = root;
    resetting = false;
    teardown_seq0 = pool_counter;
    destroy_pool(s);
    resetting = was_resetting;
    outer_root = -1;
    teardown_root = root;
    teardown_seq0 = seq0;
    compare_events("destroy in a destructor");
    model_teardown(s, false);
    memcpy(events, outer_ev, sizeof events[0] * (size_t)nev);
    memcpy(expected, outer_ex, sizeof expected[0] * (size_t)nex);
    nevents = nev;
    nexpected = nex;
}

/* May a destructor of a block of pool owner destroy pool c?  Not owner nor
   one of its ancestors; in a teardown around owner, not a pool the library
   already destroyed: owner's descendants, and the branches off owner's
   path that are newer than the path (children go newest first) or made
   during the teardown (cleanups and destructors make such: the newest). */
static bool destroyable(int c, int owner)
{
    if (!pools[c].p || in_subtree(owner, c)) return false;
    int r = teardown_root;
    if (r < 0 || !in_subtree(owner, r)) return true;
    if (in_subtree(c, owner)) return false;
    if (!in_subtree(c, r)) return !in_subtree(r, c);
    int d = c, pc = owner;
    while (!in_subtree(owner, pools[d].parent)) d = pools[d].parent;
    while (pools[pc].parent != pools[d].parent) pc = pools[pc].parent;
    return pools[d].seq < pools[pc].seq && pools[d].seq <= teardown_seq0;
}

static void dtor_action(int owner, unsigned arg)
{
    if (owner < 0 || !pools[owner].p || dtor_nesting > 0) return;
    dtor_nesting++;
    int fired0 = inj_fired0;
    unsigned long count0 = inj_count0;
    inj_begin();
    /* during the reset of owner itself what it makes is kept */
    bool keeps = teardown_root == owner && resetting;
    if ((arg & 3) == 3) {                       /* a cleanup on its own pool */
        int c = -1;
        for (int k = 0; k < NCLEAN; k++)
            if (!cleans[k].registered) { c = k; break; }
        int rc = c < 0 ? 0 : rp_pool_add_cleanup(pools[owner].p, cleanup_fn, &cleans[c]);
        TRACE("a destructor of %s adds cleanup #%d -> %d", pools[owner].name, c, rc);
        if (c < 0) {
            /* the model has no room for one more */
        } else if (rc == RP_ENOMEM) {
            ENSURE(inj_allowed(), "rp_pool_add_cleanup failed without cause");
        } else {
            ENSURE(rc == 0, "rp_pool_add_cleanup returned %d", rc);
            cleans[c] = (mclean){true, owner, (int)((arg >> 2) % 4), ++seq_counter, keeps};
            if (teardown_root >= 0 && !keeps) {
                /* the destroy runs it once the pool's destructors are done:
                   after the pool's destructors still expected, before the
                   cleanups its other destructors registered (last first) */
                int at = nevents;
                while (at < nexpected && expected[at].kind == EV_DTOR) {
                    int k = find_block(expected[at].what);
                    if (k < 0 || blocks[k].pool != owner) break;
                    at++;
                }
                ENSURE(nexpected < NEVENTS, "harness: too many expected events");
                memmove(&expected[at + 1], &expected[at], sizeof expected[0] * (size_t)(nexpected - at));
                expected[at] = (event){EV_CLEANUP, &cleans[c], 0};
                nexpected++;
            }
        }
    } else if ((arg & 3) != 0) {                /* a pool, and a block in it */
        /* 2: a child of its own pool, 1: a sibling */
        int s = add_pool_slot(), parent = (arg & 3) == 2 ? owner : pools[owner].parent;
        if (s >= 0) {
            char name[32];
            snprintf(name, sizeof name, "fzd%llu", (unsigned long long)pool_counter + 1);
            rp_pool *np;
            unsigned flags = parent >= 0 ? pools[parent].flags : pools[owner].flags;
            if (parent >= 0) {
                np = rp_pool_create_child(pools[parent].p, name);
            } else {
                rp_pool_options o;
                memset(&o, 0, sizeof o);
                o.flags = flags;
                np = rp_pool_create_ex(name, &o);
            }
            TRACE("a destructor of %s creates %s under %s -> %p", pools[owner].name, name,
                  parent >= 0 ? pools[parent].name : "(root)", (void *)np);
            if (!np) {
                ENSURE(inj_allowed(), "pool creation failed in a destructor");
            } else {
                model_add_pool(s, np, parent, flags, pools[owner].may_oom);
                pools[s].survives = parent == owner && keeps;
                size_t size = 1 + (arg >> 2) % 96;
                void *q = rp_alloc_noexc(np, size, "dtor");
                TRACE("  rp_alloc_noexc(%s, %zu, \"dtor\") -> %p", name, size, q);
                if (q) model_new_block(s, q, size, 0, "dtor");
                else {
                    ENSURE(inj_allowed() || pools[s].may_oom, "rp_alloc_noexc failed in a destructor");
                    tolerate_zero_tag(s);
                }
            }
        }
    } else {                                    /* another pool destroyed */
        int cand[NPOOLS], nc = 0;
        for (int c = 0; c < NPOOLS; c++)
            if (destroyable(c, owner)) cand[nc++] = c;
        if (nc) nested_destroy(cand[(arg >> 2) % (unsigned)nc]);
    }
    inj_fired0 = fired0;
    inj_count0 = count0;
    dtor_nesting--;
}

/* What a destroy with $RINGPOOL_REPORT=DIR/%n.%q wrote to stderr: one line
   per report it refused (at least one per pool of the tree), each naming
   the unknown escape. */
static void refused_reports(const char *capture, int npools)
{
    size_t len = 0;
    char *s = read_file(capture, &len);
    ENSURE(s, "harness: cannot read %s", capture);
    int lines = 0;
    for (char *line = s, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        ENSURE(nl, "stderr: an unfinished line");
        *nl = '\0';
        ENSURE(strncmp(line, "ringpool: RINGPOOL_REPORT='", 27) == 0 &&
                   strstr(line, "unknown %-escape '%q'"),
               "stderr: \"%s\", expected the refusal of the pattern", line);
        lines++;
    }
    ENSURE(lines >= npools, "%d refusals for %d pools", lines, npools);
    free(s);
    unlink(capture);
}

static void op_destroy(bool reset)
{
    int i = pick_pool();
    unsigned b = u8();
    if (i < 0) return;
    bool report = !reset && (b & 1);
    int stale = -1;
    void *stale_p = NULL;
    /* a block of a checked pool, to be used after the destroy */
    if (!reset && (b & 6) == 6 && (pools[i].flags & RP_POOL_CHECKED)) {
        stale = pick_block(i, false);
        if (stale >= 0) stale_p = blocks[stale].p;
    }
    /* a headerless block, to be used after the destroy or reset: its
       chunk no pool's until a pool takes it again (so not with cleanups
       registered, which may allocate during the teardown) */
    void *stale_hl = NULL;
    if ((b & 8) && hl_span) {
        bool cleanups = false;
        for (int c = 0; c < NCLEAN; c++) cleanups |= cleans[c].registered;
        for (int k = 0; k < NBLOCKS; k++) cleanups |= blocks[k].live && blocks[k].dtor == 3;
        int k = cleanups ? -1 : pick_block(i, false);
        if (k >= 0 && is_hl(blocks[k].p)) stale_hl = blocks[k].p;
    }
    char names[NPOOLS][32];
    int nnames = 0;
    subtree_names(i, names, &nnames);
    nevents = nexpected = 0;
    expect_teardown(i, true);
    TRACE("%s %s (%d callbacks expected)%s", reset ? "reset" : "destroy", pools[i].name,
          nexpected, report ? " with report" : "");
    /* the $RINGPOOL_REPORT pattern: mostly %n.json; %p and %% expanded; an
       unknown escape refused (one stderr line per report, none written) */
    static const char *const styles[] = {"%n.json", "%n.json", "%n.json", "%n.json",
                                         "%n.%p.json", "%n%%.json", "%n.json", "%n.%q"};
    unsigned style = report ? (b >> 4) % 8 : 0;
    char capture[4200];
    snprintf(capture, sizeof capture, "%s/stderr.txt", tmpdir);
    if (report) {
        char pattern[4200];
        snprintf(pattern, sizeof pattern, "%s/%s", tmpdir, styles[style]);
        setenv("RINGPOOL_REPORT", pattern, 1);
        if (style == 7 && !tracing) {           /* the refusals, read back below */
            fflush(stderr);
            int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ENSURE(fd >= 0 && (stderr_saved = dup(2)) >= 0 && dup2(fd, 2) == 2,
                   "harness: cannot capture stderr");
            close(fd);
        }
    }
    teardown_root = i;
    teardown_seq0 = pool_counter;
    resetting = reset;
    if (reset) {
        ENSURE(rp_pool_reset(pools[i].p) == 0, "rp_pool_reset failed");
    } else {
        destroy_pool(i);
    }
    teardown_root = -1;
    resetting = false;
    if (report) unsetenv("RINGPOOL_REPORT");
    if (stderr_saved >= 0) {
        fflush(stderr);
        dup2(stderr_saved, 2);
        close(stderr_saved);
        stderr_saved = -1;
    }
    compare_events(reset ? "reset" : "destroy");
    if (report && style == 7) {
        if (!tracing) refused_reports(capture, nnames);
        DIR *d = opendir(tmpdir);
        ENSURE(d, "harness: opendir %s", tmpdir);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            size_t l = strlen(e->d_name);
            ENSURE(l < 5 || strcmp(e->d_name + l - 5, ".json") != 0,
                   "a report (%s) was written for a refused pattern", e->d_name);
        }
        closedir(d);
        empty_tmpdir();
    } else if (report) {
        for (int k = 0; k < nnames; k++) {
            char path[4400];
            if (style == 4)
                snprintf(path, sizeof path, "%s/%s.%ld.json", tmpdir, names[k], (long)getpid());
            else if (style == 5)
                snprintf(path, sizeof path, "%s/%s%%.json", tmpdir, names[k]);
            else
                snprintf(path, sizeof path, "%s/%s.json", tmpdir, names[k]);
            int slot = -1;
            for (int c = 0; c < NPOOLS; c++)
                if (pools[c].p && strcmp(pools[c].name, names[k]) == 0) slot = c;
            if (slot < 0) {             /* destroyed by a destructor meanwhile */
                ENSURE(access(path, F_OK) == 0, "report %s was not written", path);
                unlink(path);
                continue;
            }
            check_report_file(path, slot, 0, "destroy", false);
            unlink(path);
        }
        empty_tmpdir();     /* pools made by cleanups reported too */
    }
    /* a cleanup may have freed the block meant for the probe */
    if (stale >= 0 && !(blocks[stale].live && blocks[stale].p == stale_p)) stale_p = NULL;
    model_teardown(i, reset);
    mp_check_live();
    if (reset) {
        for (int t = 0; t < pools[i].ntags; t++) pools[i].tags[t].blocks = pools[i].tags[t].bytes = 0;
        pools[i].bytes = 0;
    }
    expect_error(0);
    if (stale_hl) misuse_one(stale_hl, RP_EFOREIGN, -1);
    if (stale_p) {
        bool other_checked = any_pool(true);
        (void)other_checked;
#ifdef FUZZ_SKIP_STALE_LAST_CHECKED
        if (!other_checked) return;
#endif
#ifdef FUZZ_SKIP_CHECKED_MIX
        if (any_pool(false)) return;
#endif
        TRACE("rp_block_size of %p after its pool's destroy", stale_p);
        ENSURE(rp_block_size(stale_p) == 0, "rp_block_size of a destroyed block is not 0");
        expect_error(RP_EDESTROYED);
    }
}

static void op_alloc(void)
{
    int i = pick_pool();
    unsigned how = u8();
    if (i < 0) return;
    const char *tag = pick_tag(i);
    bool plain = how & 1, must_fail = (how >> 1) % 29 == 0;
    size_t size = must_fail ? impossible_size() : pick_size();
    char name[48];
    snprintf(name, sizeof name, "%s", tag_name(tag));
    void *r;
    bool oomed;
    inj_begin();
    if (plain) PLAIN(r, oomed, rp_alloc(pools[i].p, size, tag));
    else { r = rp_alloc_noexc(pools[i].p, size, tag); oomed = false; }
    TRACE("%s(%s, %zu, \"%s\") -> %p", plain ? "rp_alloc" : "rp_alloc_noexc", pools[i].name,
          size, name, r);
    if (took(r, oomed, plain, must_fail, i, "rp_alloc")) model_new_block(i, r, size, 0, name);
}

/* A burst of small blocks of one size class in an unchecked arena pool
   (where they are headerless slots, or blocks with a header once the
   region is used up), then some freed: free slots and blocks with a header
   on the same class's list, reused by the allocations that follow. */
static void op_burst(void)
{
    int cand[NPOOLS], nc = 0;
    for (int i = 0; i < NPOOLS; i++)
        if (pools[i].p && (pools[i].flags & (RP_POOL_ARENA | RP_POOL_CHECKED)) == RP_POOL_ARENA)
            cand[nc++] = i;
    unsigned how = u8(), frees = u8();
    if (nc == 0) return;
    int i = cand[how % (unsigned)nc];
    size_t cls = (how >> 3) % 4, n = 1 + u8() % 24;
    const char *tag = pick_tag(i);
    char name[48];
    snprintf(name, sizeof name, "%s", tag_name(tag));
    int made[24];
    size_t nmade = 0;
    size_t live = 0;   /* room left in the model for the other operations */
    for (int k = 0; k < NBLOCKS; k++) live += blocks[k].live;
    for (size_t k = 0; k < n && live + k < NBLOCKS / 2; k++) {
        size_t size = 16 * cls + 1 + (u8() & 15);
        inj_begin();
        void *r = rp_alloc_noexc(pools[i].p, size, tag);
        TRACE("burst rp_alloc_noexc(%s, %zu, \"%s\") -> %p", pools[i].name, size, name, r);
        if (!took(r, false, false, false, i, "rp_alloc_noexc")) break;
        int m = model_new_block(i, r, size, 0, name);
        if (m >= 0) made[nmade++] = m;
    }
    for (size_t k = 0; k < nmade; k++) {
        if (!((frees >> (k % 8)) & 1)) continue;
        mblock *b = &blocks[made[k]];
        verify_prefix(b, b->p, b->size, "contents before free");
        TRACE("burst rp_free(%p [%zu])", b->p, b->size);
        rp_free(b->p);
        mp_gone(b->p);
        model_drop_block(made[k]);
    }
}

static void op_calloc(void)
{
    int i = pick_pool();
    unsigned how = u8();
    if (i < 0) return;
    const char *tag = pick_tag(i);
    bool plain = how & 1, overflow = (how >> 1) % 9 == 0;
    size_t n, size;
    unsigned nb = overflow ? 0 : u8();
    if (overflow) {
        n = ((size_t)1 << 33) + u8();
        size = ((size_t)1 << 31) + u8();
    } else if (nb >= 232) {
        /* a big block (the arena's past 32 KiB: unsynchronised unchecked
           pools take it zeroed from the system's calloc), as 1, 2, 4 or 8
           elements; totals about the arena's largest class too */
        unsigned r = u8();
        size_t total = r & 1 ? 32 * 1024 - 48 + u8() % 96
                             : 32 * 1024 + (((size_t)u16() * 4) >> ((r >> 5) & 3));
        int k = -1;
        for (int j = 0; (r & 0x18) == 0x18 && j < NBLOCKS; j++)
            if (blocks[j].live && blocks[j].pool == i && !blocks[j].dtor &&
                blocks[j].size > 32 * 1024 - 64)
                k = j;
        if (k >= 0) {
            /* a big block of the pool, dirty (its pattern), freed first:
               the system's allocator hands the same memory back */
            mblock *b = &blocks[k];
            verify_prefix(b, b->p, b->size, "contents before free");
            TRACE("rp_free(%p [%zu]) before a calloc of its size", b->p, b->size);
            total = b->size;
            rp_free(b->p);
            mp_gone(b->p);
            model_drop_block(k);
        }
        n = (size_t)1 << ((r >> 1) & 3);
        size = total / n;
        if (live_bytes + n * size > LIVE_BYTES_CAP) n = 1, size %= 64;
    } else {
        n = nb % 40;
        size = u8() % 70;
    }
    char name[48];
    snprintf(name, sizeof name, "%s", tag_name(tag));
    void *r;
    bool oomed;
    inj_begin();
    if (plain) PLAIN(r, oomed, rp_calloc(pools[i].p, n, size, tag));
    else { r = rp_calloc_noexc(pools[i].p, n, size, tag); oomed = false; }
    TRACE("%s(%s, %zu, %zu) -> %p", plain ? "rp_calloc" : "rp_calloc_noexc", pools[i].name, n,
          size, r);
    if (took(r, oomed, plain, overflow, i, "rp_calloc")) {
        static const uint8_t zero[PERIOD];
        const uint8_t *q = r;
        for (size_t k = 0; k < n * size; k += PERIOD) {
            size_t m = n * size - k < PERIOD ? n * size - k : PERIOD;
            if (memcmp(q + k, zero, m) == 0) continue;
            for (size_t j = k; j < k + m; j++)
                ENSURE(q[j] == 0, "calloc byte %zu of %zu is not 0", j, n * size);
        }
        model_new_block(i, r, n * size, 0, name);
    }
}

static void op_aligned(void)
{
    int i = pick_pool();
    unsigned how = u8(), a = u8();
    if (i < 0) return;
    const char *tag = pick_tag(i);
    bool plain = how & 1, bad = (a % 23) == 0;
    size_t align;
    if (bad) {
        static const size_t bads[] = {0, 3, 24, 1000, (size_t)RP_MAX_ALIGN << 1, SIZE_MAX};
        align = bads[a % 6];
    } else if (a < 250) {
        align = (size_t)1 << (a % 13);
    } else {
        align = (size_t)1 << (13 + a % 9);
    }
    size_t size = pick_size();
    char name[48];
    snprintf(name, sizeof name, "%s", tag_name(tag));
    void *r;
    bool oomed;
    inj_begin();
    if (plain) PLAIN(r, oomed, rp_alloc_aligned(pools[i].p, align, size, tag));
    else { r = rp_alloc_aligned_noexc(pools[i].p, align, size, tag); oomed = false; }
    TRACE("%s(%s, %zu, %zu) -> %p", plain ? "rp_alloc_aligned" : "rp_alloc_aligned_noexc",
          pools[i].name, align, size, r);
    if (bad) {
        ENSURE(!r && !oomed, "bad alignment %zu accepted", align);
        expect_error(RP_EALIGN);
        return;
    }
    if (took(r, oomed, plain, false, i, "rp_alloc_aligned"))
        model_new_block(i, r, size, align, name);
}

/* A walk whose visitor changes the walked pool (docs/contract.md, Threads:
   the visitor may allocate from and free to it, the block it is given
   included): for the first blocks visited, chosen by the input, a resize of
   the visited block (any size: a headerless class, one with a header, 0;
   the walk's mark keeps a block carved last from giving its slot back to
   the chunk), its free, a new block, or the free of another block of the
   pool. Each visited block must be live in the model with its size and
   tag; one resized to another place may be visited again. */
typedef struct mwalk_ctx { int pool; unsigned left; size_t seen; } mwalk_ctx;

static int visit_mutate(void *block, size_t size, const char *tag, void *arg)
{
    mwalk_ctx *w = arg;
    int i = w->pool, k = find_block(block);
    ENSURE(k >= 0 && blocks[k].pool == i, "changing walk of pool %s visits unknown block %p",
           pools[i].name, block);
    mblock *b = &blocks[k];
    ENSURE(b->size == size, "changing walk: block %p has size %zu, model %zu", block, size,
           b->size);
    ENSURE(tag && strcmp(tag, pools[i].tags[b->tag].name) == 0,
           "changing walk: block %p has tag \"%s\", model \"%s\"", block, tag ? tag : "(null)",
           pools[i].tags[b->tag].name);
    ENSURE(++w->seen <= 4 * NBLOCKS, "changing walk of pool %s does not end", pools[i].name);
    if (w->left == 0 || !more()) return 0;
    w->left--;
    unsigned how = u8();
    switch (how & 3) {
    case 0: {                                   /* resize the visited block */
        size_t ns = how & 0x80 ? 0 : (how & 0x40) ? u8() % 80 : pick_size();
        if (ns > b->size && live_bytes + ns - b->size > LIVE_BYTES_CAP) ns = b->size;
        inj_begin();
        void *r = rp_resize_noexc(pools[i].p, block, ns);
        TRACE("from a walk of %s: rp_resize_noexc(%p [%zu], %zu) -> %p", pools[i].name, block,
              b->size, ns, r);
        if (!took(r, false, false, false, i, "rp_resize_noexc from a walk")) {
            verify_prefix(b, block, b->size, "contents after a failed resize from a walk");
            break;
        }
        ENSURE(b->align == 0 || (uintptr_t)r % b->align == 0,
               "resized block %p lost its alignment %zu", r, b->align);
        verify_prefix(b, r, ns < b->size ? ns : b->size, "contents kept by a resize from a walk");
        hl_note(block, r);
        if (r != block) mp_gone(block);
        b->p = r;
        counters_sub(i, b->tag, b->size, false);
        counters_add(i, b->tag, ns, false);
        b->size = ns;
        fill(b);
        break;
    }
    case 1:                                     /* free the visited block */
    case 3: {                                   /* ... or another one of the pool */
        int f = (how & 3) == 1 ? k : pick_block(i, true);
        if (f < 0 || blocks[f].dtor) break;
        mblock *d = &blocks[f];
        verify_prefix(d, d->p, d->size, "contents before a free from a walk");
        TRACE("from a walk of %s: rp_free(%p [%zu])", pools[i].name, d->p, d->size);
        void *p = d->p;
        rp_free(p);
        mp_gone(p);
        model_drop_block(f);
        break;
    }
    case 2: {                                   /* a new block */
        const char *t = pick_tag(i);
        size_t ns = (how & 0x40) ? u8() % 80 : pick_size();
        char name[48];
        snprintf(name, sizeof name, "%s", tag_name(t));
        inj_begin();
        void *r = rp_alloc_noexc(pools[i].p, ns, t);
        TRACE("from a walk of %s: rp_alloc_noexc(%zu, \"%s\") -> %p", pools[i].name, ns, name, r);
        if (took(r, false, false, false, i, "rp_alloc_noexc from a walk"))
            model_new_block(i, r, ns, 0, name);
        break;
    }
    }
    expect_error(0);
    return 0;
}

static void op_walk_mutate(void)
{
    int i = pick_pool();
    unsigned n = u8();
    if (i < 0) return;
    mwalk_ctx w = {i, 1 + n % 12, 0};
    TRACE("rp_pool_walk(%s) changing up to %u blocks", pools[i].name, w.left);
    ENSURE(rp_pool_walk(pools[i].p, visit_mutate, &w) == 0, "rp_pool_walk failed");
    expect_error(0);
}

static void op_resize(void)
{
    unsigned how = u8();
    bool plain = how & 1;
    void *r;
    bool oomed;
    if ((how >> 1) % 11 == 0) {                 /* NULL block: an untagged allocation */
        int i = pick_pool();
        if (i < 0) return;
        size_t size = pick_size();
        inj_begin();
        if (plain) PLAIN(r, oomed, rp_resize(pools[i].p, NULL, size));
        else { r = rp_resize_noexc(pools[i].p, NULL, size); oomed = false; }
        TRACE("resize(%s, NULL, %zu) -> %p", pools[i].name, size, r);
        if (took(r, oomed, plain, false, i, "rp_resize(NULL)"))
            model_new_block(i, r, size, 0, "(untagged)");
        return;
    }
    int k = pick_block(-1, false);
    if (k < 0) return;
    mblock *b = &blocks[k];
    int owner = b->pool;
    unsigned via = u8() % 8;
    rp_pool *volatile arg = via < 4 ? NULL : pools[owner].p;
    volatile int wrong = -1;
    if (via == 7) {                             /* through a pool that does not own it */
        wrong = pick_pool();
        if (wrong == owner) wrong = -1;
        else arg = pools[wrong].p;
    }
    bool must_fail = (how >> 1) % 31 == 1;
    volatile size_t size = must_fail ? impossible_size() : (how & 0x80) ? 0 : pick_size();
    if (!must_fail && size > b->size && live_bytes + size - b->size > LIVE_BYTES_CAP)
        size = b->size;
#ifdef FUZZ_SKIP_DTOR_RESIZE_OOM
    if (inj_active && b->dtor && !(pools[owner].flags & RP_POOL_ARENA) && !b->align) return;
#endif
    void *old = b->p;
    inj_begin();
    if (plain) PLAIN(r, oomed, rp_resize(arg, old, size));
    else { r = rp_resize_noexc(arg, old, size); oomed = false; }
    TRACE("%s(%s, %p [%zu, %s], %zu) -> %p", plain ? "rp_resize" : "rp_resize_noexc",
          arg ? rp_pool_name(arg) : "NULL", old, b->size, pools[owner].name, size, r);
    if (wrong >= 0) {
        ENSURE(!r && !oomed, "resize through the wrong pool succeeded");
        expect_error(RP_EWRONGPOOL);
        verify_prefix(b, old, b->size, "contents after a refused resize");
        return;
    }
    if (!took(r, oomed, plain, must_fail, owner, "rp_resize")) {
        verify_prefix(b, old, b->size, "contents after a failed resize");
        return;
    }
    ENSURE((uintptr_t)r % 16 == 0, "resized block %p is not aligned", r);
    ENSURE(b->align == 0 || (uintptr_t)r % b->align == 0,
           "resized block %p lost its alignment %zu", r, b->align);
    verify_prefix(b, r, size < b->size ? size : b->size, "contents kept by resize");
    hl_note(old, r);
    if (r != old) mp_gone(old);
    b->p = r;
    counters_sub(owner, b->tag, b->size, false);
    counters_add(owner, b->tag, size, false);
    b->size = size;
    fill(b);
}

static void op_free(void)
{
    int k = pick_block(-1, false);
    unsigned how = u8();
    if (k < 0 || how % 17 == 0) {
        rp_free(NULL);
        return;
    }
    mblock *b = &blocks[k];
    verify_prefix(b, b->p, b->size, "contents before free");
    nevents = nexpected = 0;
    if (b->dtor) expected[nexpected++] = (event){EV_DTOR, b->p, b->dtor};
    bool twice = (how & 6) == 6 && (pools[b->pool].flags & RP_POOL_CHECKED);
#ifdef FUZZ_SKIP_CHECKED_MIX
    if (any_pool(false)) twice = false;
#endif
    void *p = b->p;
    TRACE("rp_free(%p [%zu, %s])%s", p, b->size, pools[b->pool].name, twice ? " twice" : "");
    rp_free(p);
    compare_events("rp_free");
    mp_gone(p);
    model_drop_block(k);
    expect_error(0);
    if (twice) {
        rp_free(p);
        expect_error(RP_EDOUBLEFREE);
    }
}

static void op_strings(void)
{
    int i = pick_pool();
    unsigned how = u8();
    if (i < 0) return;
    const char *tag = pick_tag(i);
    bool plain = how & 1;
    char parts[4][24], want[100];
    int n = (int)(u8() % 5);
    memset(parts, 0, sizeof parts);
    want[0] = '\0';
    for (int k = 0; k < 4; k++) {
        int len = (int)(u8() % 20);
        for (int j = 0; j < len; j++) parts[k][j] = (char)(1 + u8() % 255);
        parts[k][len] = '\0';
        if (k < n) strcat(want, parts[k]);
    }
    char name[48];
    snprintf(name, sizeof name, "%s", tag_name(tag));
    void *r;
    bool oomed;
    volatile size_t size;
    const char *call;
    inj_begin();
    switch ((how >> 1) % 3) {
    case 0:
        call = plain ? "rp_strdup" : "rp_strdup_noexc";
        if (plain) PLAIN(r, oomed, rp_strdup(pools[i].p, parts[0], tag));
        else { r = rp_strdup_noexc(pools[i].p, parts[0], tag); oomed = false; }
        strcpy(want, parts[0]);
        size = strlen(want) + 1;
        break;
    case 1:
        call = plain ? "rp_strconcat" : "rp_strconcat_noexc";
        if (plain) PLAIN(r, oomed, rp_strconcat(pools[i].p, tag, n, parts[0], parts[1], parts[2], parts[3]));
        else { r = rp_strconcat_noexc(pools[i].p, tag, n, parts[0], parts[1], parts[2], parts[3]); oomed = false; }
        size = strlen(want) + 1;
        break;
    default:
        call = plain ? "rp_memdup" : "rp_memdup_noexc";
        size = (size_t)n * 5;
        memcpy(want, parts, sizeof parts < sizeof want ? sizeof parts : sizeof want);
        if (plain) PLAIN(r, oomed, rp_memdup(pools[i].p, size ? (const void *)want : NULL, size, tag));
        else { r = rp_memdup_noexc(pools[i].p, size ? (const void *)want : NULL, size, tag); oomed = false; }
        break;
    }
    TRACE("%s(%s, %zu bytes) -> %p", call, pools[i].name, size, r);
    if (!took(r, oomed, plain, false, i, call)) return;
    ENSURE(memcmp(r, want, size) == 0, "%s: contents differ", call);
    ENSURE(rp_block_size(r) == size, "%s: block size %zu, expected %zu", call, rp_block_size(r),
           size);
    model_new_block(i, r, size, 0, name);
}

static void op_destructor(void)
{
    int k = pick_block(-1, false);
    unsigned v = u8(), how = v < 240 ? v % 3 : 3;
    if (k < 0) return;
    mblock *b = &blocks[k];
    rp_destructor_fn fn = how == 0 ? NULL : how == 1 ? dtor_a : how == 2 ? dtor_b : dtor_c;
    inj_begin();
    int rc = rp_set_destructor(b->p, fn);
    TRACE("rp_set_destructor(%p, %u) -> %d", b->p, how, rc);
    if (!fn) {
        ENSURE(rc == (b->dtor ? 0 : RP_ENOTFOUND), "removing a destructor returned %d", rc);
        b->dtor = 0;
        return;
    }
    if (rc == RP_ENOMEM) {
        ENSURE(inj_allowed() && !b->dtor, "rp_set_destructor failed without cause");
        return;
    }
    ENSURE(rc == 0, "rp_set_destructor returned %d", rc);
    if (!b->dtor) b->dtor_seq = ++seq_counter;
    b->dtor = (int)how;
    if (how == 3) b->dtor_arg = u8();
}

static void op_cleanup(void)
{
    int i = pick_pool();
    unsigned how = u8();
    if (i < 0) return;
    if (how & 1) {                              /* remove one (or one never added) */
        int c = (int)((how >> 1) % NCLEAN);
        bool reg = cleans[c].registered && cleans[c].pool == i;
        int rc = rp_pool_remove_cleanup(pools[i].p, cleanup_fn, &cleans[c]);
        TRACE("rp_pool_remove_cleanup(%s, #%d) -> %d", pools[i].name, c, rc);
        ENSURE(rc == (reg ? 0 : RP_ENOTFOUND), "rp_pool_remove_cleanup returned %d", rc);
        if (reg) cleans[c].registered = false;
        return;
    }
    int c = -1;
    for (int k = 0; k < NCLEAN; k++)
        if (!cleans[k].registered) { c = k; break; }
    if (c < 0) return;
    inj_begin();
    int rc = rp_pool_add_cleanup(pools[i].p, cleanup_fn, &cleans[c]);
    TRACE("rp_pool_add_cleanup(%s, #%d) -> %d", pools[i].name, c, rc);
    if (rc == RP_ENOMEM) {
        ENSURE(inj_allowed(), "rp_pool_add_cleanup failed without cause");
        return;
    }
    ENSURE(rc == 0, "rp_pool_add_cleanup returned %d", rc);
    cleans[c] = (mclean){true, i, (int)((how >> 1) % 4), ++seq_counter, false};
}

static void op_report(void)
{
    int i = pick_pool();
    unsigned how = u8();
    if (i < 0) return;
    unsigned flags = how & (RP_REPORT_BLOCKS | RP_REPORT_CHILDREN);
    char path[4200];
    snprintf(path, sizeof path, "%s/request.json", tmpdir);
    inj_begin();
    int rc = rp_pool_write_report_ex(pools[i].p, path, flags);
    TRACE("rp_pool_write_report_ex(%s, %#x) -> %d", pools[i].name, flags, rc);
    if (rc == RP_ENOMEM) {
        ENSURE(inj_allowed(), "report failed without cause");
        return;
    }
    ENSURE(rc == 0, "rp_pool_write_report_ex returned %d", rc);
    check_report_file(path, i, flags, "request", true);
    unlink(path);
}

static void op_intern(void)
{
    int i = pick_pool();
    if (i < 0) return;
    char s[16];
    int len = (int)(u8() % 13);
    for (int k = 0; k < len; k++) s[k] = (char)(1 + u8() % 255);
    s[len] = '\0';
    if (pools[i].ntags >= NTAGS - 14) return;
    inj_begin();
    const char *t = rp_pool_intern_tag(pools[i].p, s);
    TRACE("rp_pool_intern_tag(%s, %d bytes) -> %p", pools[i].name, len, (const void *)t);
    if (!t) {
        ENSURE(inj_allowed(), "rp_pool_intern_tag failed without cause");
        return;
    }
    ENSURE(strcmp(t, s) == 0, "interned tag differs from its source");
    tag_index(&pools[i], s, true);
    if (pools[i].ninterned < 8) pools[i].interned[pools[i].ninterned++] = t;
}

/* One call that misuses pointer q; exactly error code must be reported
   and nothing handed out (which: the next byte). */
static void misuse_one(void *q, int code, int owner)
{
    unsigned which = u8() % 6;
    rp_pool *arg = owner >= 0 && (which & 1) ? pools[owner].p : NULL;
    TRACE("misuse %u of %p (expects %s)", which, q, rp_error_name(code));
    hl_misuse++;
    switch (which) {
    case 0: rp_free(q); break;
    case 1: case 2:
        ENSURE(rp_resize_noexc(arg, q, u8() % 80) == NULL, "resize of %p succeeded", q);
        break;
    case 3: ENSURE(rp_block_size(q) == 0, "rp_block_size of %p is not 0", q); break;
    case 4: ENSURE(rp_block_pool(q) == NULL, "rp_block_pool of %p is not NULL", q); break;
    default:
        ENSURE(rp_set_destructor(q, dtor_a) == RP_EINVAL, "rp_set_destructor of %p", q);
        break;
    }
    expect_error(code);
}

/* Misuse of the headerless region (unchecked pools too: a slot is checked
   there): a pointer inside a live slot, a slot just freed, and places of
   the region no block is at, each reported with its code, nothing changed. */
static void op_hostile(unsigned how)
{
    if (!hl_span) return;
    switch ((how >> 1) % 3) {
    case 0: {                                   /* inside a live slot */
        int k = pick_block(-1, false);
        if (k < 0 || !is_hl(blocks[k].p)) return;
        mblock *b = &blocks[k];
        size_t n16 = (b->size + 15) / 16;       /* its slot has at least n16 * 16 bytes */
        unsigned r = u8();
        size_t off = n16 > 1 && (r & 1) ? 16 * (1 + (r >> 1) % (n16 - 1)) : 1 + (r >> 1) % 15;
        misuse_one((char *)b->p + off, RP_EFOREIGN, b->pool);
        verify_prefix(b, b->p, b->size, "contents after a misuse inside the block");
        break;
    }
    case 1: {                                   /* a slot just freed */
        int k = pick_block(-1, true);
        if (k < 0 || !is_hl(blocks[k].p)) return;
        void *p = blocks[k].p;
        int owner = blocks[k].pool;
        TRACE("rp_free(%p [%zu, %s]) before its misuse", p, blocks[k].size, pools[owner].name);
        rp_free(p);
        mp_gone(p);
        model_drop_block(k);
        expect_error(0);
        misuse_one(p, RP_EDOUBLEFREE, owner);
        break;
    }
    default: {                                  /* where no block is */
        unsigned r = u8();
        uintptr_t part = hl_span / HL_PART, at;
        switch (r % 4) {
        case 0: at = hl_lo + hl_span - 16 * (1 + (r >> 2) % 4); break;   /* the last chunk */
        case 1: at = hl_lo + (r >> 2) % part * HL_PART + 16 * (r >> 4 & 3); break;   /* a header */
        case 2: at = hl_lo + (1 + (r >> 2) % part) * HL_PART - 0x10000 + 0x8000; break;
        default: at = hl_lo + (r >> 2) % part * HL_PART + 0x100000 * (1 + u8()); break;
        }
        misuse_one((void *)at, RP_EFOREIGN, -1);
        break;
    }
    }
}

/* expr, an allocating call given a NULL argument, returns NULL after one
   RP_EINVAL, plain form or twin: an argument error is not out of memory, so
   no OOM handler (which would longjmp: oomed), and nothing else happens. */
#define NULL_ARG_CALL(expr)                                                    \
    do {                                                                       \
        void *volatile r_ = NULL;                                              \
        bool o_;                                                               \
        PLAIN(r_, o_, (void *)(expr));                                         \
        TRACE("%s -> %p", #expr, r_);                                          \
        ENSURE(!r_ && !o_, "%s: %s", #expr, o_ ? "OOM handler" : "not NULL"); \
        expect_error(RP_EINVAL);                                               \
    } while (0)

static void misuse_null_args(void)
{
    static const char *const none = NULL;
    NULL_ARG_CALL(rp_alloc(NULL, 8, "x"));
    NULL_ARG_CALL(rp_alloc_noexc(NULL, 8, "x"));
    NULL_ARG_CALL(rp_calloc(NULL, 2, 8, "x"));
    NULL_ARG_CALL(rp_calloc_noexc(NULL, 2, 8, "x"));
    NULL_ARG_CALL(rp_alloc_aligned(NULL, 64, 8, "x"));
    NULL_ARG_CALL(rp_alloc_aligned_noexc(NULL, 64, 8, "x"));
    NULL_ARG_CALL(rp_memdup(NULL, "ab", 2, "x"));
    NULL_ARG_CALL(rp_memdup_noexc(NULL, "ab", 2, "x"));
    NULL_ARG_CALL(rp_strdup(NULL, "ab", "x"));
    NULL_ARG_CALL(rp_strdup_noexc(NULL, "ab", "x"));
    NULL_ARG_CALL(rp_strconcat(NULL, "x", 2, "a", "b"));
    NULL_ARG_CALL(rp_strconcat_noexc(NULL, "x", 2, "a", "b"));
    NULL_ARG_CALL(rp_resize(NULL, NULL, 8));
    NULL_ARG_CALL(rp_resize_noexc(NULL, NULL, 8));
    NULL_ARG_CALL(rp_pool_intern_tag(NULL, "x"));
    NULL_ARG_CALL(rp_pool_create_child(NULL, "orphan"));
    NULL_ARG_CALL(rp_pool_create_child_ex(NULL, "orphan", NULL));
    ENSURE(rp_pool_add_cleanup(NULL, cleanup_fn, NULL) == RP_EINVAL, "cleanup on NULL pool");
    /* the default pool's strings, made or not: as rp_strdup and rp_strconcat */
    NULL_ARG_CALL(rp_stat_strdup(none));
    NULL_ARG_CALL(rp_stat_strdup_noexc(none));
    NULL_ARG_CALL(rp_stat_strconcat(-1));
    NULL_ARG_CALL(rp_stat_strconcat_noexc(-1));
    NULL_ARG_CALL(rp_stat_strconcat(3, "a", none, "b"));
    NULL_ARG_CALL(rp_stat_strconcat_noexc(3, "a", none, "b"));
    for (int i = 0; i < NPOOLS; i++) {          /* the first live pool: no input byte */
        rp_pool *p = pools[i].p;
        if (!p) continue;
        NULL_ARG_CALL(rp_memdup(p, none, 4, "x"));
        NULL_ARG_CALL(rp_memdup_noexc(p, none, 4, "x"));
        NULL_ARG_CALL(rp_strdup(p, none, "x"));
        NULL_ARG_CALL(rp_strdup_noexc(p, none, "x"));
        NULL_ARG_CALL(rp_strconcat(p, "x", 3, "a", none, "b"));
        NULL_ARG_CALL(rp_strconcat_noexc(p, "x", 3, "a", none, "b"));
        NULL_ARG_CALL(rp_pool_intern_tag(p, none));
        break;
    }
}

/* A checked block whose header, or what lies below it, a buffer underflow
   overwrote (one byte flipped, then put back): rp_free and rp_resize report
   exactly one RP_ECORRUPT and do nothing, rp_pool_check reports it; with the
   byte back the block is whole again (docs/contract.md, Checked pools).
   what: 0 the size word (p[-8]), 1 the origin (p[-16]), 2 the guard
   (p[-32]); below the header where the layout is sure: 3 an aligned
   block's raw pointer (p[-40], malloc backing, alignment above 16), 4 an
   arena pool's big-block record (p[-64]: alignment above 16 or 40000 bytes
   and more). */
static void corrupt_probe(int k, unsigned what)
{
    mblock *b = &blocks[k];
    int i = b->pool;
    bool arena = pools[i].flags & RP_POOL_ARENA;
    static const int at[] = {-8, -16, -32, -40, -64};
    what %= 8;
    if (what > 4) return;
    if (what == 3 && (arena || b->align <= 16)) what = 0;
    if (what == 4 && (!arena || (b->align <= 16 && b->size < 40000))) what = 1;
    volatile unsigned char *byte = (unsigned char *)b->p + at[what];
    TRACE("corrupt p[%d] of %p [%zu, align %zu, %s]", at[what], b->p, b->size, b->align,
          pools[i].name);
    errors_reset();
    *byte ^= 0x5a;
    rp_free(b->p);
    expect_error(RP_ECORRUPT);
    void *r = rp_resize_noexc(NULL, b->p, b->size + 8);
    ENSURE(!r, "resize of a corrupt block gave %p", r);
    expect_error(RP_ECORRUPT);
    ENSURE(rp_pool_check(pools[i].p) == RP_ECORRUPT, "rp_pool_check of a corrupt pool");
    ENSURE(err_count >= 1, "rp_pool_check reported nothing");
    for (int e = 0; e < err_count && e < 8; e++)
        ENSURE(err_codes[e] == RP_ECORRUPT, "rp_pool_check reported %s", rp_error_name(err_codes[e]));
    err_count = 0;
    *byte ^= 0x5a;
    ENSURE(rp_pool_check(pools[i].p) == 0, "rp_pool_check after the byte was put back");
    verify_prefix(b, b->p, b->size, "contents of a block whose header was put back");
    expect_error(0);
}

static void op_misuse(void)
{
    unsigned how = u8();
    if (how & 0x80) {
        op_hostile(how);
        return;
    }
    switch (how % 4) {
    case 0:                                     /* NULL pool, string, source, parent */
        misuse_null_args();
        break;
    case 1: {                                   /* negative string count */
        int i = pick_pool();
        if (i < 0) return;
        void *r = rp_strconcat_noexc(pools[i].p, "x", -1);
        ENSURE(!r, "strconcat with n < 0 succeeded");
        expect_error(RP_EINVAL);
        break;
    }
    case 2: {                                   /* a pointer no pool handed out */
        if (!any_pool(true) || any_pool(false)) return;
        char *m = malloc(96);
        ENSURE(m, "harness: malloc");
        memset(m, 0x5a, 96);
        TRACE("rp_free(foreign %p)", (void *)(m + 32));
        rp_free(m + 32);
        ENSURE(err_count == 1 && (err_codes[0] == RP_EFOREIGN || err_codes[0] == RP_EDOUBLEFREE ||
                                  err_codes[0] == RP_EDESTROYED),
               "free of a foreign pointer: %d errors (%s)", err_count,
               rp_error_name(err_codes[0]));
        err_count = 0;
        free(m);
        break;
    }
    default: {                                  /* accessors on a live block */
        int k = pick_block(-1, false);
        if (k < 0) return;
        ENSURE(rp_block_size(blocks[k].p) == blocks[k].size, "rp_block_size is wrong");
        ENSURE(rp_block_pool(blocks[k].p) == pools[blocks[k].pool].p, "rp_block_pool is wrong");
        if (pools[blocks[k].pool].flags & RP_POOL_CHECKED) corrupt_probe(k, how >> 2);
        break;
    }
    }
}

#ifndef FUZZ_SKIP_TAG_BUFFER
/* A tag in a buffer the caller reuses, in a checked pool: the block is
   counted under the buffer's content at the call, and a content that changed
   under a pointer the pool has seen is reported (RP_EINVAL; the call still
   succeeds).  Unchecked pools leave this undefined, so it is not tried. */
static char dyn_tag[16];

#ifdef FUZZ_SKIP_TAG_EVICTED
/* Known: a change is missed once another tag pointer took the buffer's slot
   in the pool's pointer cache; the block must still count under the content. */
static void tolerate_buffer_block(int i, void *r, const char *name)
{
    model_new_block(i, r, 8, 0, name);
    snprintf(dyn_tag, sizeof dyn_tag, "gone%u", 0u);
}
#endif

static void op_buffer_tag(void)
{
    int i = pick_pool();
    unsigned v = u8();
    if (i < 0 || !(pools[i].flags & RP_POOL_CHECKED)) return;
    snprintf(dyn_tag, sizeof dyn_tag, "buf%u", v % 5);
    char name[16];
    strcpy(name, dyn_tag);
    bool changed = pools[i].buf_seen[0] && strcmp(pools[i].buf_seen, name) != 0;
    inj_begin();
    void *r = rp_alloc_noexc(pools[i].p, 8, dyn_tag);
    TRACE("rp_alloc_noexc(%s, 8, buffer \"%s\") -> %p%s", pools[i].name, name, r,
          changed ? " (content changed)" : "");
    strcpy(pools[i].buf_seen, name);
    if (r && changed && !pools[i].buf_unsure) {
#ifdef FUZZ_SKIP_TAG_EVICTED
        if (err_count == 0) return tolerate_buffer_block(i, r, name);
#endif
        expect_error(RP_EINVAL);
    }
    else if (!r || pools[i].buf_unsure) err_count = 0;   /* reported or not */
    pools[i].buf_unsure = !r;
    if (took(r, false, false, false, i, "rp_alloc_noexc")) model_new_block(i, r, 8, 0, name);
    /* the caller reuses its buffer at once */
    snprintf(dyn_tag, sizeof dyn_tag, "gone%u", v % 3);
}
#endif

/* The caml_stat_* facade: plain malloc before the default pool exists (each
   block freed within the step, as blocks from before the pool must not meet
   it), the default pool's blocks afterwards, and its destroy. */
static void op_stat(void)
{
    unsigned how = u8();
    size_t size = pick_size();
    void *r;
    bool oomed;
#ifdef FUZZ_SKIP_CHECKED_MIX
    if (mode_checked) return;   /* the default pool is unchecked */
#endif
    if (stat_slot < 0) {
        size %= 4096;
        ENSURE(rp_stat_pool() == NULL, "a default pool nobody created");
        inj_begin();
        char *a = rp_stat_alloc_noexc(size);
        char *b = rp_stat_strconcat_noexc(2, "ab", "cd");
        char *c = rp_stat_calloc_noexc(3, size);
        ENSURE((a && b && c) || inj_allowed(), "rp_stat_* failed before the default pool");
        if (a) memset(a, 0x3c, size);
        if (b) ENSURE(strcmp(b, "abcd") == 0, "rp_stat_strconcat_noexc: wrong string");
        for (size_t k = 0; c && k < 3 * size; k++) ENSURE(c[k] == 0, "rp_stat_calloc: not zero");
        char *a2 = a ? rp_stat_resize_noexc(a, size * 2 + 1) : NULL;
        if (a2) {
            for (size_t k = 0; k < size; k++) ENSURE(a2[k] == 0x3c, "rp_stat_resize lost bytes");
            a = a2;
        }
        rp_stat_free(a);
        rp_stat_free(b);
        rp_stat_free(c);
        if (how & 1) return;
        int s = add_pool_slot();
        if (s < 0) return;
        inj_begin();
        rp_pool *volatile made = NULL;
        PLAIN(made, oomed, (rp_stat_create_pool(), rp_stat_pool()));
        TRACE("rp_stat_create_pool() -> %p", (void *)made);
        if (!made) {
            ENSURE(oomed && inj_allowed(), "rp_stat_create_pool failed without cause");
            return;
        }
        model_add_pool(s, made, -1, 0, false);
        stat_slot = s;
        rp_stat_create_pool();                  /* twice is a no-op */
        ENSURE(rp_stat_pool() == made, "rp_stat_create_pool twice made another pool");
        return;
    }
    int i = stat_slot;
    bool plain = how & 1;
    const char *volatile call;
    inj_begin();
    switch ((how >> 1) % 5) {
    case 0:
        call = "rp_stat_alloc";
        if (plain) PLAIN(r, oomed, rp_stat_alloc(size));
        else { r = rp_stat_alloc_noexc(size); oomed = false; }
        break;
    case 1:
        call = "rp_stat_calloc";
        size = size % 64;
        if (plain) PLAIN(r, oomed, rp_stat_calloc(2, size));
        else { r = rp_stat_calloc_noexc(2, size); oomed = false; }
        size *= 2;
        break;
    case 2:
        call = "rp_stat_strdup";
        if (plain) PLAIN(r, oomed, rp_stat_strdup("default"));
        else { r = rp_stat_strdup_noexc("default"); oomed = false; }
        size = 8;
        break;
    case 3:
        call = "rp_stat_strconcat";
        if (plain) PLAIN(r, oomed, rp_stat_strconcat(3, "de", "fa", "ult"));
        else { r = rp_stat_strconcat_noexc(3, "de", "fa", "ult"); oomed = false; }
        size = 8;
        break;
    default: {                                  /* resize or free a default-pool block */
        int k = pick_block(i, false);
        if (k < 0) return;
        mblock *b = &blocks[k];
        if (how & 0x40) {
            verify_prefix(b, b->p, b->size, "contents before rp_stat_free");
            nevents = nexpected = 0;
            if (b->dtor) expected[nexpected++] = (event){EV_DTOR, b->p, b->dtor};
            rp_stat_free(b->p);
            compare_events("rp_stat_free");
            model_drop_block(k);
            return;
        }
        if (plain) PLAIN(r, oomed, rp_stat_resize(b->p, size));
        else { r = rp_stat_resize_noexc(b->p, size); oomed = false; }
        TRACE("rp_stat_resize(%p [%zu], %zu) -> %p", b->p, b->size, size, r);
        if (!took(r, oomed, plain, false, i, "rp_stat_resize")) return;
        verify_prefix(b, r, size < b->size ? size : b->size, "contents kept by rp_stat_resize");
        ENSURE(b->align == 0 || (uintptr_t)r % b->align == 0, "alignment lost");
        b->p = r;
        counters_sub(i, b->tag, b->size, false);
        counters_add(i, b->tag, size, false);
        b->size = size;
        fill(b);
        return;
    }
    }
    TRACE("%s%s -> %p", call, plain ? "" : "_noexc", r);
    if (!took(r, oomed, plain, false, i, call)) return;
    if ((how >> 1) % 5 == 1)
        for (size_t k = 0; k < size; k++) ENSURE(((uint8_t *)r)[k] == 0, "calloc: not zero");
    if ((how >> 1) % 5 >= 2) ENSURE(strcmp(r, "default") == 0, "%s: wrong string", call);
    ENSURE(rp_block_pool(r) == pools[i].p, "%s: block outside the default pool", call);
    model_new_block(i, r, size, 0, "rp_stat");
}

/* ---------------------------------------------------------------- threads */
/* One operation run by a thread of its own, while this one waits for it:
   the model stays sequential, and the library sees a thread other than a
   pool's creator (a shard of a thread-safe pool; a block freed or resized
   away from its shard; a pool whose creating thread has exited) and a
   thread's exit (its shards left to the pool, taken over by the next). */
static void op_create_root(void) { op_create(0); }
static void op_create_child(void) { op_create(1 + (int)(u8() & 1)); }
static void op_destroy_only(void) { op_destroy(false); }
static void op_reset_only(void) { op_destroy(true); }
/* The other thread: started at an input's first such operation, it runs
   one operation at a time while this thread waits; it exits when an
   operation says so (about one in eight) and at the end of the input. */
static pthread_mutex_t thread_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thread_cv = PTHREAD_COND_INITIALIZER;
static void (*thread_fn)(void);    /* the operation handed over, NULL: none */
static bool thread_quit, thread_up;
static pthread_t thread_id;

static void *thread_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&thread_mu);
    for (;;) {
        while (!thread_fn && !thread_quit) pthread_cond_wait(&thread_cv, &thread_mu);
        if (thread_fn) {
            void (*fn)(void) = thread_fn;
            pthread_mutex_unlock(&thread_mu);
            fn();
            pthread_mutex_lock(&thread_mu);
            thread_fn = NULL;
            pthread_cond_broadcast(&thread_cv);
        }
        if (thread_quit) break;
    }
    pthread_mutex_unlock(&thread_mu);
    return NULL;
}

/* Runs fn on the other thread (started if needed), then, if quit, ends it. */
static void thread_run(void (*fn)(void), bool quit)
{
    if (!thread_up) {
        thread_quit = false;
        if (fn && pthread_create(&thread_id, NULL, thread_main, NULL) != 0) {
            fn();                               /* no thread to be had */
            return;
        }
        thread_up = fn != NULL;
    }
    if (!thread_up) return;
    pthread_mutex_lock(&thread_mu);
    thread_fn = fn;
    thread_quit = quit;
    pthread_cond_broadcast(&thread_cv);
    while (thread_fn) pthread_cond_wait(&thread_cv, &thread_mu);
    pthread_mutex_unlock(&thread_mu);
    if (quit) {
        pthread_join(thread_id, NULL);
        thread_up = false;
    }
}

static void op_thread(void)
{
    static void (*const ops[])(void) = {
        op_alloc, op_alloc, op_free, op_free, op_resize, op_calloc, op_aligned, op_strings,
        op_burst, op_destructor, op_create_root, op_create_child, op_destroy_only,
        op_reset_only, op_report, check_everything,
    };
    unsigned how = u8();
    TRACE("on the other thread%s:", how >= 224 ? ", which then exits" : "");
    thread_run(ops[how % (sizeof ops / sizeof ops[0])], how >= 224);
    for (int i = 0; i < NPOOLS; i++)
        if (pools[i].p) pools[i].threads = true;
}

/* ---------------------------------------------------------------- one input */
static void destroy_all(void)
{
    /* again from the start: a destructor may make a root pool */
    for (int i = 0; i < NPOOLS; i++) {
        if (!pools[i].p || pools[i].parent >= 0) continue;
        nevents = nexpected = 0;
        expect_teardown(i, true);
        TRACE("final destroy of %s", pools[i].name);
        teardown_root = i;
        teardown_seq0 = pool_counter;
        destroy_pool(i);
        teardown_root = -1;
        compare_events("final destroy");
        model_teardown(i, false);
        i = -1;
    }
    expect_error(0);
    ENSURE(count_live_pools() == 0, "pools left after the final destroy");
    for (int b = 0; b < NBLOCKS; b++) ENSURE(!blocks[b].live, "blocks left in the model");
}

static void run_input(const uint8_t *data, size_t len)
{
    in_data = data;
    in_len = len;
    in_pos = 0;
    memset(pools, 0, sizeof pools);
    memset(blocks, 0, sizeof blocks);
    memset(cleans, 0, sizeof cleans);
    live_bytes = 0;
    nevents = nexpected = 0;
    err_count = 0;
    step_no = 0;
    unsigned mode = u8();
    mode_checked = mode & 1;
    mode_unchecked = (mode & 2) || all_unchecked;
    mode_stacks = mode & 16;
    input_env(mode);
    dtor_nesting = 0;
    stat_slot = -1;
    while (more()) {
        unsigned op = u8();
        /* injection scenarios: more destructors and resizes, whose
           bookkeeping allocates and must survive a failure */
        if (oom_scenario && op % 5 == 0) op = op & 8 ? 202 + op % 10 : 120 + op % 30;
        step_no++;
        inj_begin();
        errors_reset();
        if (op < 20) { step_name = "create"; op_create(0); }
        else if (op < 28) { step_name = "create_child"; op_create(1); }
        else if (op < 34) { step_name = "create_child_ex"; op_create(2); }
        else if (op < 40) { step_name = "destroy"; op_destroy(false); }
        else if (op < 45) { step_name = "reset"; op_destroy(true); }
        else if (op < 99) { step_name = "alloc"; op_alloc(); }
        else if (op == 99) { step_name = "thread"; op_thread(); }
        else if (op < 110) { step_name = "calloc"; op_calloc(); }
        else if (op < 120) { step_name = "aligned"; op_aligned(); }
        else if (op < 150) { step_name = "resize"; op_resize(); }
        else if (op < 190) { step_name = "free"; op_free(); }
        else if (op < 202) { step_name = "strings"; op_strings(); }
        else if (op < 212) { step_name = "destructor"; op_destructor(); }
        else if (op < 222) { step_name = "cleanup"; op_cleanup(); }
        else if (op < 227) { step_name = "check"; check_everything(); }
        else if (op == 227) { step_name = "walk_mutate"; op_walk_mutate(); }
        else if (op < 233) { step_name = "report"; op_report(); }
        else if (op < 239) { step_name = "intern"; op_intern(); }
        else if (op < 246) { step_name = "misuse"; op_misuse(); }
#ifndef FUZZ_SKIP_TAG_BUFFER
        else if (op < 252) { step_name = "buffer_tag"; op_buffer_tag(); }
#endif
        else if (op == 252) { step_name = "memprof"; op_memprof(); }
        else if (op == 253) { step_name = "burst"; op_burst(); }
        else if (op >= 254) { step_name = "stat"; op_stat(); }
        else { step_name = "alloc"; op_alloc(); }
        expect_error(0);
        check_all_counters();
    }
    step_no++;
    step_name = "final check";
    check_everything();
    step_name = "final destroy";
    thread_run(NULL, true);
    destroy_all();
    mp_end();
    input_env(0);
}

/* Finds the headerless region: an unsynchronised arena pool's small blocks
   16 bytes apart are slots, and the first chunk any pool takes starts the
   region (its parts of 1 GiB: one, or three with RINGPOOL_HEADERLESS=64).
   Runs before any other pool exists. */
static void probe_region(void)
{
    rp_pool_options o;
    memset(&o, 0, sizeof o);
    o.flags = RP_POOL_UNSYNC | RP_POOL_ARENA;
    rp_pool *p = rp_pool_create_ex("fuzz-probe", &o);
    if (!p) return;
    char *b[4];
    for (int i = 0; i < 4; i++) b[i] = rp_alloc_noexc(p, 8, "probe");
    if (b[1] && b[2] && b[3] && b[2] - b[1] == 16 && b[3] - b[2] == 16) {
        const char *e = getenv("RINGPOOL_HEADERLESS");
        bool wide = e && strcmp(e, "64") == 0;
        hl_lo = (uintptr_t)b[1] & ~(uintptr_t)0xffff;
        hl_span = (wide ? 3 : 1) * HL_PART;
        hl_max = wide ? 64 : 16;
    }
    rp_pool_destroy(p);
}

/* What the inputs reached in the headerless region. */
static __attribute__((unused)) void print_hl_reach(void)
{
    if (!hl_span) {
        printf("fuzz_pool: no headerless region found\n");
        return;
    }
    printf("fuzz_pool: headerless slots (1-%zu bytes) handed out: %lu of 16 bytes, %lu of 32, "
           "%lu of 64; resizes: %lu slot to slot, %lu slot to header, %lu header to slot, "
           "%lu within the slot; %lu misuses of the region; %lu blocks sampled\n", hl_max,
           hl_seen[0], hl_seen[1], hl_seen[2], hl_moves[0], hl_moves[1], hl_moves[2],
           hl_moves[3], hl_misuse, mp_samples);
}

static void setup_once(void)
{
    static bool done;
    if (done) return;
    done = true;
    rp_set_error_handler(on_error);
    rp_set_oom_handler(on_oom);
    pattern_init();
    probe_region();
    const char *t = getenv("FUZZ_TRACE");
    tracing = t && *t && strcmp(t, "0") != 0;
    artifact_dir = getenv("FUZZ_ARTIFACTS");
    unsetenv("RINGPOOL_REPORT");
    unsetenv("RINGPOOL_REPORT_BLOCKS");
    const char *u = getenv("FUZZ_UNCHECKED");
    all_unchecked = u && *u && strcmp(u, "0") != 0;
    env_bias0 = getenv("RINGPOOL_SHARD_BIAS");
    env_recycle0 = getenv("RINGPOOL_RECYCLE");
    if (env_bias0) env_bias0 = strdup(env_bias0);
    if (env_recycle0) env_recycle0 = strdup(env_recycle0);
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ringpool-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "fuzz_pool: cannot create a directory under %s: %s\n",
                base && *base ? base : "/tmp", strerror(errno));
        exit(2);
    }
}

/* Removes the report files left in tmpdir (by pools made inside cleanups). */
static void empty_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        char path[4400];
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void cleanup_tmpdir(void)
{
    if (!tmpdir[0]) return;
    empty_tmpdir();
    rmdir(tmpdir);
}

#ifdef FUZZ_LIBFUZZER
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup_once();
    atexit(cleanup_tmpdir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    return 0;
}
#else
/* ---------------------------------------------------------------- driver */
static uint64_t rng_state;
static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static void gen_input(uint8_t *buf, size_t len, uint64_t seed)
{
    rng_state = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
    for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)(rng() >> 56);
}

static int replay(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        size_t len = 0;
        char *s = read_file(argv[a], &len);
        if (!s) {
            fprintf(stderr, "fuzz_pool: cannot read %s: %s\n", argv[a], strerror(errno));
            return 2;
        }
        if (tracing) fprintf(stderr, "input %s (%zu bytes)\n", argv[a], len);
        run_input((const uint8_t *)s, len);
        free(s);
    }
    printf("fuzz_pool: %d inputs replayed, no invariant broken\n", argc - 1);
    return 0;
}

static int random_runs(unsigned long runs, uint64_t seed, size_t max_len)
{
    uint8_t *buf = malloc(max_len);
    if (!buf) return 2;
    unsigned long steps = 0;
    for (unsigned long r = 0; r < runs; r++) {
        rng_state = (seed + r) * UINT64_C(0x2545f4914f6cdd1d) + 7;
        size_t len = 1 + (size_t)(rng() % max_len);
        gen_input(buf, len, seed * 1000003u + r);
        saved_input = buf;
        saved_len = len;
        save_on_fail = true;
        if (tracing) fprintf(stderr, "input %lu (seed %llu, %zu bytes)\n", r,
                             (unsigned long long)seed, len);
        run_input(buf, len);
        steps += step_no;
    }
    free(buf);
    printf("fuzz_pool: %lu random inputs (seed %llu, up to %zu bytes), %lu operations, "
           "no invariant broken\n", runs, (unsigned long long)seed, max_len, steps);
    print_hl_reach();
    return 0;
}

/* Out-of-memory injection over one fixed scenario and one backing. */
static int oom_runs(int backing, uint64_t seed, size_t len, const char *file)
{
    uint8_t *buf;
    if (file) {
        buf = (uint8_t *)read_file(file, &len);
        if (!buf || len == 0) {
            fprintf(stderr, "fuzz_pool: cannot read %s\n", file);
            return 2;
        }
    } else {
        buf = malloc(len);
        if (!buf) return 2;
        gen_input(buf, len, seed);
    }
    saved_input = buf;
    saved_len = len;
    save_on_fail = true;
    force_backing = backing;
    oom_scenario = file == NULL;
    inj_active = false;
    rp_debug_fail_after(LONG_MAX, 0);          /* counts without failing */
    run_input(buf, len);
    unsigned long count = rp_debug_alloc_count();
    ENSURE(!rp_debug_fail_fired(), "harness: the counting run failed an allocation");
    unsigned long runs = 0, fired = 0;
    for (int sticky = 0; sticky <= 1; sticky++) {
        for (long k = 1;; k++) {
            inj_active = true;
            inj_sticky = sticky;
            rp_debug_fail_after(k, sticky);
            if (tracing) fprintf(stderr, "injection: allocation %ld fails%s\n", k,
                                 sticky ? ", and every one after it" : "");
            run_input(buf, len);
            runs++;
            int f = rp_debug_fail_fired();
            rp_debug_fail_after(0, 0);
            inj_active = false;
            fired += f != 0;
            if (!f) break;                      /* the scenario has fewer allocations */
            ENSURE((unsigned long)k <= 4 * count + 64, "harness: injection does not end");
        }
    }
    free(buf);
    force_backing = -1;
    oom_scenario = false;
    char what[64];
    snprintf(what, sizeof what, "seed %llu", (unsigned long long)seed);
    printf("fuzz_pool: OOM injection, %s backing, scenario %s (%zu bytes, %lu "
           "allocations): %lu runs, %lu with a failed allocation, no invariant broken\n",
           backing ? "arena" : "malloc", file ? file : what, len, count, runs, fired);
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: fuzz_pool --runs N [--seed S] [--max-len L]\n"
            "       fuzz_pool --oom malloc|arena [--seed S] [--len L] [--scenario FILE]...\n"
            "       fuzz_pool FILE...\n");
    return 2;
}

int main(int argc, char **argv)
{
    unsigned long runs = 0;
    uint64_t seed = 1;
    size_t max_len = 1024, len = 600;
    int oom = -1;
    const char *scenarios[64];
    int nscen = 0;
    setup_once();
    atexit(cleanup_tmpdir);
    if (argc < 2) return usage();
    if (argv[1][0] != '-') return replay(argc, argv);
    for (int a = 1; a < argc; a += 2) {   /* each option takes one value */
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v) return usage();
        if (strcmp(argv[a], "--runs") == 0) runs = strtoul(v, NULL, 10);
        else if (strcmp(argv[a], "--seed") == 0) seed = strtoull(v, NULL, 10);
        else if (strcmp(argv[a], "--max-len") == 0) max_len = strtoul(v, NULL, 10);
        else if (strcmp(argv[a], "--len") == 0) len = strtoul(v, NULL, 10);
        else if (strcmp(argv[a], "--scenario") == 0) {
            if (nscen == 64) return usage();
            scenarios[nscen++] = v;
        }
        else if (strcmp(argv[a], "--oom") == 0) {
            if (strcmp(v, "malloc") == 0) oom = 0;
            else if (strcmp(v, "arena") == 0) oom = RP_POOL_ARENA;
            else return usage();
        } else return usage();
    }
    if (max_len == 0 || len == 0) return usage();
    if (oom >= 0 && nscen == 0) return oom_runs(oom, seed, len, NULL);
    if (oom >= 0) {
        /* several scenarios, one process (valgrind starts once): those that
           make no checked pool first, so that they still reach the fast
           paths of a process that never had one */
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < nscen; k++) {
                size_t n = 0;
                char *d = read_file(scenarios[k], &n);
                bool unchecked = d && n && (d[0] & 2);
                free(d);
                if (unchecked == (pass == 1)) continue;
                int rc = oom_runs(oom, seed, len, scenarios[k]);
                if (rc) return rc;
            }
        return 0;
    }
    if (runs == 0) return usage();
    return random_runs(runs, seed, max_len);
}
#endif
