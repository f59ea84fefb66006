/*
 * replay.c -- replays a recorded allocation trace (benches/c/trace/trace.h,
 * recorded by rptrace.so) against one allocator, and reports the cost.
 *
 *   replay --impl IMPL TRACE     replay once; prints one line of key=value:
 *                                ns per operation, peak RSS added by the
 *                                replay (and the chunks an arena pool held
 *                                at the end), and the trace's own figures
 *   replay --info TRACE          the trace's figures only
 *   replay --dump TRACE          the records as text, one per line
 *   replay --list-impls          the implementations that load here
 *
 * IMPL: glibc, rp-unsync, rp-locked (ringpool, malloc backing),
 * arena-unsync, arena-locked (RP_POOL_ARENA), mimalloc-heap (mi_heap_*,
 * dlopen), jemalloc (mallocx/rallocx/dallocx, dlopen; needs
 * GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384), talloc (dlopen;
 * traces with aligned allocations are refused).
 *
 * The whole trace is read and checked first (every id freed or resized must
 * be live, every id allocated must not be) into an array of fixed-size
 * operations; the replay is then one loop in rpr_measured(), so that
 *   valgrind --tool=callgrind --toggle-collect=rpr_measured replay --impl X T
 * counts the replay alone (benches/c/traces.sh drives it and leaves out what
 * callgrind attributes to this file: the loop, the id table, the writes).
 *
 * Every block is written to as a program would: one byte in each 4 KiB page
 * (the first byte, then every 4096th) and its last byte, with a value that
 * depends on the object id; before a free or resize the first and last byte
 * are checked (and calloc's are checked to be zero), so a replay also checks
 * the allocator. The memory figure is the process's peak resident set
 * during the replay minus the resident set just before it: VmHWM, reset
 * through /proc/self/clear_refs, minus VmRSS, the same measure for every
 * implementation. The replay's own tables are mapped and touched before the
 * baseline is read, and live in their own mappings, not in any allocator.
 * What is left live at the end of the trace is freed (or the pool or heap
 * destroyed) after the measurement.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringpool.h"
#include "../../csrc/peers.h"
#include "sizes.h"
#include "trace/trace.h"

#define NOINLINE __attribute__((noinline))
#define PAGE 4096u

static const char *const TAG = "trace";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("replay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* memory of the replay itself: straight from the kernel, touched */
static void *map(size_t bytes, const char *what)
{
    if (!bytes) bytes = 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED) die("cannot map %zu bytes for %s", bytes, what);
    return p;
}

/* ------------------------------------------------------------ the trace */
struct rop {
    uint32_t id;
    uint32_t size;
    uint8_t  op;
    uint8_t  lg;          /* log2(alignment) for RPTRACE_ALIGNED */
};

struct trace {
    struct rop *ops;
    size_t      n;
    uint32_t    max_id;
    size_t      counts[6];
    size_t      max_live, live_end;
    uint64_t    peak_bytes, bytes_end;
    /* floors: the largest total, over the trace, of the live blocks'
       sizes rounded up to 16 bytes (an allocator that aligns every block
       to 16 bytes, as malloc must on x86-64, cannot place them in less
       address space), and the same with a 16-byte header before each */
    uint64_t    peak_slot16, peak_hdr16;
};

static const char *const op_name[6] = { "?", "malloc", "calloc", "realloc", "free", "aligned" };

static int get_num(const unsigned char *b, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -1;
        unsigned char c = b[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return 0; }
    }
    return -1;
}

/* The least room a block of size bytes takes when blocks start on 16-byte
   boundaries: the next block cannot start before the next boundary past
   its end (a block of 0 bytes still has an address of its own). */
static uint64_t slot_floor(uint64_t size)
{
    return ((size ? size : 1) + 15) & ~(uint64_t)15;
}

static void load(const char *path, struct trace *t)
{
    memset(t, 0, sizeof *t);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open trace '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) die("'%s' is not a regular file", path);
    size_t len = (size_t)st.st_size;
    if (len < RPTRACE_MAGIC_LEN) die("'%s' is not an allocation trace (too short)", path);
    const unsigned char *b = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (b == MAP_FAILED) die("cannot map '%s': %s", path, strerror(errno));
    if (memcmp(b, RPTRACE_MAGIC, RPTRACE_MAGIC_LEN))
        die("'%s' is not an allocation trace (no %s header)", path, RPTRACE_MAGIC);

    /* pass 1: count the records and find the largest id */
    size_t pos = RPTRACE_MAGIC_LEN, n = 0;
    uint64_t max_id = 0;
    while (pos < len) {
        size_t at = pos;
        unsigned op = b[pos++];
        uint64_t id, size = 0;
        if (op < RPTRACE_MALLOC || op > RPTRACE_ALIGNED)
            die("%s: offset %zu: unknown record type %u", path, at, op);
        if (get_num(b, len, &pos, &id) || (op != RPTRACE_FREE && get_num(b, len, &pos, &size)) ||
            (op == RPTRACE_ALIGNED && pos++ >= len))
            die("%s: offset %zu: record cut short (truncated trace?)", path, at);
        if (id == 0 || id > 0x7fffffffu) die("%s: offset %zu: object id %llu out of range", path, at,
                                             (unsigned long long)id);
        if (size > 0xffffffffu) die("%s: offset %zu: size %llu over 4 GiB", path, at,
                                    (unsigned long long)size);
        if (op == RPTRACE_ALIGNED && (b[pos - 1] < 3 || b[pos - 1] > 24))
            die("%s: offset %zu: alignment 2^%u out of range (2^3..2^24)", path, at, b[pos - 1]);
        if (id > max_id) max_id = id;
        n++;
    }
    t->ops = map(n * sizeof *t->ops, "the operations");
    t->n = n;
    t->max_id = (uint32_t)max_id;

    /* pass 2: decode and check that every record fits the objects' lives */
    uint32_t *live = map(((size_t)max_id + 1) * sizeof *live, "the check");   /* size + 1, 0 = dead */
    pos = RPTRACE_MAGIC_LEN;
    uint64_t bytes = 0, slot16 = 0;
    size_t nlive = 0;
    for (size_t i = 0; i < n; i++) {
        size_t at = pos;
        struct rop *r = &t->ops[i];
        uint64_t id = 0, size = 0;
        r->op = b[pos++];
        get_num(b, len, &pos, &id);
        if (r->op != RPTRACE_FREE) get_num(b, len, &pos, &size);
        if (r->op == RPTRACE_ALIGNED) r->lg = b[pos++];
        r->id = (uint32_t)id;
        r->size = (uint32_t)size;
        int was = live[id] != 0;
        if ((r->op == RPTRACE_FREE || r->op == RPTRACE_REALLOC) && !was)
            die("%s: offset %zu: %s of object %u, which is not live", path, at, op_name[r->op], r->id);
        if (r->op != RPTRACE_FREE && r->op != RPTRACE_REALLOC && was)
            die("%s: offset %zu: %s of object %u, which is live already", path, at, op_name[r->op], r->id);
        if (was) {
            bytes -= live[id] - 1;
            slot16 -= slot_floor(live[id] - 1);
        }
        if (r->op == RPTRACE_FREE) { live[id] = 0; nlive--; }
        else {
            if (!was) nlive++;
            live[id] = (uint32_t)size + 1;
            if (size == 0xffffffffu) die("%s: offset %zu: size over 4 GiB - 2", path, at);
            bytes += size;
            slot16 += slot_floor(size);
        }
        t->counts[r->op]++;
        if (nlive > t->max_live) t->max_live = nlive;
        if (bytes > t->peak_bytes) t->peak_bytes = bytes;
        if (slot16 > t->peak_slot16) t->peak_slot16 = slot16;
        uint64_t hdr16 = slot16 + 16 * (uint64_t)nlive;   /* a 16-byte header on each */
        if (hdr16 > t->peak_hdr16) t->peak_hdr16 = hdr16;
    }
    t->live_end = nlive;
    t->bytes_end = bytes;
    munmap(live, ((size_t)max_id + 1) * sizeof *live);
    munmap((void *)b, len);
}

/* ------------------------------------------------------------ peers (dlopen) */
typedef struct mi_heap_s mi_heap_t;
static struct {
    mi_heap_t *(*mi_heap_new)(void);
    void      *(*mi_heap_malloc)(mi_heap_t *, size_t);
    void      *(*mi_heap_calloc)(mi_heap_t *, size_t, size_t);
    void      *(*mi_heap_realloc)(mi_heap_t *, void *, size_t);
    void      *(*mi_heap_malloc_aligned)(mi_heap_t *, size_t, size_t);
    void       (*mi_free)(void *);
    void       (*mi_heap_destroy)(mi_heap_t *);
    void      *(*mallocx)(size_t, int);
    void      *(*rallocx)(void *, size_t, int);
    void       (*dallocx)(void *, int);
    void      *(*talloc_named_const)(const void *, size_t, const char *);
    void      *(*talloc_zero)(const void *, size_t, const char *);
    void      *(*talloc_realloc)(const void *, void *, size_t, const char *);
    int        (*talloc_free)(void *, const char *);
} peer;

static int load_mimalloc(void)
{
    const rpi_peer_sym syms[] = {
        {"mi_heap_new", &peer.mi_heap_new}, {"mi_heap_malloc", &peer.mi_heap_malloc},
        {"mi_heap_calloc", &peer.mi_heap_calloc}, {"mi_heap_realloc", &peer.mi_heap_realloc},
        {"mi_heap_malloc_aligned", &peer.mi_heap_malloc_aligned}, {"mi_free", &peer.mi_free},
        {"mi_heap_destroy", &peer.mi_heap_destroy}};
    return rpi_peer_open("libmimalloc.so.2", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL;
}

static int load_jemalloc(void)
{
    const rpi_peer_sym syms[] = {
        {"mallocx", &peer.mallocx}, {"rallocx", &peer.rallocx}, {"dallocx", &peer.dallocx}};
    return rpi_peer_open("libjemalloc.so.2", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL;
}

static int load_talloc(void)
{
    const rpi_peer_sym syms[] = {
        {"talloc_named_const", &peer.talloc_named_const}, {"_talloc_zero", &peer.talloc_zero},
        {"_talloc_realloc", &peer.talloc_realloc}, {"_talloc_free", &peer.talloc_free}};
    return rpi_peer_open("libtalloc.so.2", syms, RPI_PEER_NSYMS(syms), NULL, 0) != NULL;
}

/* ------------------------------------------------------------ implementations */
enum impl { I_GLIBC, I_RP_UNSYNC, I_RP_LOCKED, I_ARENA_UNSYNC, I_ARENA_LOCKED, I_MIMALLOC,
            I_JEMALLOC, I_TALLOC, I_COUNT };
static const char *const impl_name[I_COUNT] = {
    "glibc", "rp-unsync", "rp-locked", "arena-unsync", "arena-locked", "mimalloc-heap",
    "jemalloc", "talloc"
};
static const unsigned impl_flags[I_COUNT] = {
    0, RP_POOL_UNSYNC, 0, RP_POOL_ARENA | RP_POOL_UNSYNC, RP_POOL_ARENA, 0, 0, 0
};

static int impl_load(enum impl i)
{
    switch (i) {
    case I_MIMALLOC: return load_mimalloc();
    case I_JEMALLOC: return load_jemalloc();
    case I_TALLOC:   return load_talloc();
    default:         return 1;
    }
}

typedef struct ctx {
    enum impl  impl;
    rp_pool   *pool;
    mi_heap_t *heap;
    void      *tctx;
} ctx;

/* the replay's per-object state: pointer and size, indexed by id */
struct objs {
    unsigned char **ptr;
    uint32_t       *size;
    size_t          bad;     /* blocks whose bytes were not as written */
};

static unsigned char stamp_of(uint32_t id) { return (unsigned char)(id * 0x9du + 1u); }

/* write one byte per page and the last byte */
static inline void touch(unsigned char *p, uint32_t n, unsigned char v)
{
    for (uint32_t off = 0; off < n; off += PAGE) p[off] = v;
    if (n) p[n - 1] = v;
}

static inline void check(struct objs *o, uint32_t id)
{
    uint32_t n = o->size[id];
    unsigned char v = stamp_of(id), *p = o->ptr[id];
    if (n && (p[0] != v || p[n - 1] != v)) o->bad++;
}

static inline void check_zero(struct objs *o, const unsigned char *p, uint32_t n)
{
    if (n && (p[0] || p[n - 1])) o->bad++;
}

static void oom(const struct rop *r)
{
    fprintf(stderr, "replay: %s of %u bytes failed\n", op_name[r->op], r->size);
    exit(1);
}

#define A_GLIBC(c, n)      malloc(n)
#define C_GLIBC(c, n)      calloc(1, (n))
#define R_GLIBC(c, p, n)   realloc((p), (n))
#define F_GLIBC(c, p)      free(p)
#define AL_GLIBC(c, a, n)  memalign((a), (n))
#define A_RP(c, n)         rp_alloc((c)->pool, (n), TAG)
#define C_RP(c, n)         rp_calloc((c)->pool, 1, (n), TAG)
#define R_RP(c, p, n)      rp_resize((c)->pool, (p), (n))
#define F_RP(c, p)         rp_free(p)
#define AL_RP(c, a, n)     rp_alloc_aligned((c)->pool, (a), (n), TAG)
#define A_MI(c, n)         peer.mi_heap_malloc((c)->heap, (n))
#define C_MI(c, n)         peer.mi_heap_calloc((c)->heap, 1, (n))
#define R_MI(c, p, n)      peer.mi_heap_realloc((c)->heap, (p), (n))
#define F_MI(c, p)         peer.mi_free(p)
#define AL_MI(c, a, n)     peer.mi_heap_malloc_aligned((c)->heap, (n), (a))
/* jemalloc: size 0 is undefined for mallocx, so it asks for 1 byte
   (MALLOCX_ZERO = 0x40; MALLOCX_LG_ALIGN(k) = k) */
#define A_JE(c, n)         peer.mallocx((n) ? (n) : 1, 0)
#define C_JE(c, n)         peer.mallocx((n) ? (n) : 1, 0x40)
#define R_JE(c, p, n)      peer.rallocx((p), (n), 0)
#define F_JE(c, p)         peer.dallocx((p), 0)
#define AL_JE(c, a, n)     peer.mallocx((n) ? (n) : 1, __builtin_ctzl(a))
#define A_TA(c, n)         peer.talloc_named_const((c)->tctx, (n), TAG)
#define C_TA(c, n)         peer.talloc_zero((c)->tctx, (n), TAG)
#define R_TA(c, p, n)      peer.talloc_realloc((c)->tctx, (p), (n), TAG)
#define F_TA(c, p)         peer.talloc_free((p), TAG)
#define AL_TA(c, a, n)     NULL   /* refused before the replay */

#define DEFINE_REPLAY(name, A, C, R, F, AL)                                    \
    static NOINLINE void replay_##name(ctx *c, const struct rop *ops, size_t n, \
                                       struct objs *o)                         \
    {                                                                          \
        (void)c;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            const struct rop *r = &ops[i];                                     \
            uint32_t id = r->id, sz = r->size;                                 \
            unsigned char *p;                                                  \
            switch (r->op) {                                                   \
            case RPTRACE_MALLOC:                                               \
                p = A(c, sz);                                                  \
                break;                                                         \
            case RPTRACE_CALLOC:                                               \
                p = C(c, sz);                                                  \
                if (p) check_zero(o, p, sz);                                   \
                break;                                                         \
            case RPTRACE_ALIGNED:                                              \
                p = AL(c, (size_t)1 << r->lg, sz);                             \
                if (((uintptr_t)p & (((uintptr_t)1 << r->lg) - 1))) o->bad++;  \
                break;                                                         \
            case RPTRACE_REALLOC: {                                            \
                uint32_t keep = o->size[id] < sz ? o->size[id] : sz;           \
                unsigned char v = stamp_of(id);                                \
                if (o->size[id] && o->ptr[id][0] != v) o->bad++;               \
                p = R(c, o->ptr[id], sz);                                      \
                if (p && keep && p[0] != v) o->bad++;                          \
                break;                                                         \
            }                                                                  \
            default:                                                           \
                check(o, id);                                                  \
                F(c, o->ptr[id]);                                              \
                o->ptr[id] = NULL;                                             \
                continue;                                                      \
            }                                                                  \
            if (!p) oom(r);                                                    \
            touch(p, sz, stamp_of(id));                                        \
            o->ptr[id] = p;                                                    \
            o->size[id] = sz;                                                  \
        }                                                                      \
    }

DEFINE_REPLAY(glibc, A_GLIBC, C_GLIBC, R_GLIBC, F_GLIBC, AL_GLIBC)
DEFINE_REPLAY(rp, A_RP, C_RP, R_RP, F_RP, AL_RP)
DEFINE_REPLAY(mi, A_MI, C_MI, R_MI, F_MI, AL_MI)
DEFINE_REPLAY(je, A_JE, C_JE, R_JE, F_JE, AL_JE)
DEFINE_REPLAY(ta, A_TA, C_TA, R_TA, F_TA, AL_TA)

struct job {
    ctx              *c;
    const struct rop *ops;
    size_t            n;
    struct objs      *o;
};

/* Everything callgrind should count happens in here, and nothing else. */
NOINLINE void rpr_measured(struct job *j);
NOINLINE void rpr_measured(struct job *j)
{
    switch (j->c->impl) {
    case I_GLIBC:    replay_glibc(j->c, j->ops, j->n, j->o); break;
    case I_MIMALLOC: replay_mi(j->c, j->ops, j->n, j->o); break;
    case I_JEMALLOC: replay_je(j->c, j->ops, j->n, j->o); break;
    case I_TALLOC:   replay_ta(j->c, j->ops, j->n, j->o); break;
    default:         replay_rp(j->c, j->ops, j->n, j->o); break;
    }
}

static void ctx_open(ctx *c, enum impl i)
{
    memset(c, 0, sizeof *c);
    c->impl = i;
    if (i >= I_RP_UNSYNC && i <= I_ARENA_LOCKED) {
        rp_pool_options opt = { .flags = impl_flags[i], .chunk_size = 0, .keep_bytes = 0 };
        c->pool = rp_pool_create_ex(impl_name[i], &opt);
        if (!c->pool) die("rp_pool_create_ex failed for %s", impl_name[i]);
    } else if (i == I_MIMALLOC) {
        c->heap = peer.mi_heap_new();
        if (!c->heap) die("mi_heap_new failed");
    } else if (i == I_TALLOC) {
        c->tctx = peer.talloc_named_const(NULL, 0, "replay");
        if (!c->tctx) die("talloc_named_const failed");
    }
}

/* frees what the trace left live: bulk where the implementation has it */
static void ctx_close(ctx *c, struct objs *o, uint32_t max_id)
{
    switch (c->impl) {
    case I_GLIBC:
        for (uint32_t id = 1; id <= max_id; id++) free(o->ptr[id]);
        break;
    case I_JEMALLOC:
        for (uint32_t id = 1; id <= max_id; id++) if (o->ptr[id]) peer.dallocx(o->ptr[id], 0);
        break;
    case I_MIMALLOC: peer.mi_heap_destroy(c->heap); break;
    case I_TALLOC:   peer.talloc_free(c->tctx, "replay"); break;
    default:         rp_pool_destroy(c->pool); break;
    }
}

/* ------------------------------------------------------------ memory */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') { v = strtol(line + k + 1, NULL, 10); break; }
    fclose(f);
    return v;
}

/* resets VmHWM to the current resident set; 0 on success */
static int reset_peak(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ main */
static void usage(FILE *f)
{
    fprintf(f,
"usage: replay --impl IMPL TRACE\n"
"       replay --info TRACE\n"
"       replay --dump TRACE\n"
"       replay --list-impls\n"
"IMPL: glibc rp-unsync rp-locked arena-unsync arena-locked mimalloc-heap jemalloc talloc\n"
"      (the peers when their libraries load; jemalloc needs\n"
"       GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384)\n");
}

static void print_info(const char *path, const struct trace *t)
{
    printf("trace=%s ops=%zu malloc=%zu calloc=%zu realloc=%zu free=%zu aligned=%zu "
           "max_live=%zu peak_live_bytes=%llu live_end=%zu live_end_bytes=%llu "
           "peak_slot16_bytes=%llu peak_hdr16_bytes=%llu",
           path, t->n, t->counts[RPTRACE_MALLOC], t->counts[RPTRACE_CALLOC],
           t->counts[RPTRACE_REALLOC], t->counts[RPTRACE_FREE], t->counts[RPTRACE_ALIGNED],
           t->max_live, (unsigned long long)t->peak_bytes, t->live_end,
           (unsigned long long)t->bytes_end, (unsigned long long)t->peak_slot16,
           (unsigned long long)t->peak_hdr16);
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *impl_s = NULL, *path = NULL;
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(k, "--list-impls") || !strcmp(k, "--info") || !strcmp(k, "--dump")) mode = k;
        else if (!strcmp(k, "--impl")) {
            if (++a >= argc) die("--impl needs a value");
            impl_s = argv[a];
            mode = "--impl";
        } else if (k[0] == '-' && k[1]) { usage(stderr); die("unknown option '%s'", k); }
        else if (path) die("one trace at a time ('%s' and '%s')", path, k);
        else path = k;
    }
    if (!mode) { usage(stderr); die("say --impl IMPL, --info, --dump or --list-impls"); }
    if (!strcmp(mode, "--list-impls")) {
        for (int i = 0; i < I_COUNT; i++)
            if (impl_load((enum impl)i)) printf("%s\n", impl_name[i]);
        return 0;
    }
    if (!path) die("%s needs a trace file", mode);
    int impl = -1;
    if (impl_s) {
        for (int i = 0; i < I_COUNT; i++) if (!strcmp(impl_s, impl_name[i])) impl = i;
        if (impl < 0) die("unknown implementation '%s' (see --list-impls)", impl_s);
        if (!impl_load((enum impl)impl)) {
            const char *why = dlerror();
            die("%s is not available here (library not installed, or for jemalloc "
                "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 missing)%s%s",
                impl_s, why ? ": " : "", why ? why : "");
        }
    }

    struct trace t;
    load(path, &t);
    if (!strcmp(mode, "--info")) { print_info(path, &t); putchar('\n'); return 0; }
    if (!strcmp(mode, "--dump")) {
        for (size_t i = 0; i < t.n; i++) {
            const struct rop *r = &t.ops[i];
            if (r->op == RPTRACE_FREE) printf("free %u\n", r->id);
            else if (r->op == RPTRACE_ALIGNED) printf("aligned %u %u %u\n", r->id, r->size, 1u << r->lg);
            else printf("%s %u %u\n", op_name[r->op], r->id, r->size);
        }
        return 0;
    }
    if (impl == I_TALLOC && t.counts[RPTRACE_ALIGNED])
        die("talloc has no aligned allocation; this trace has %zu", t.counts[RPTRACE_ALIGNED]);

    struct objs o = { 0 };
    o.ptr = map(((size_t)t.max_id + 1) * sizeof *o.ptr, "the id table");
    o.size = map(((size_t)t.max_id + 1) * sizeof *o.size, "the size table");
    ctx c;
    ctx_open(&c, (enum impl)impl);
    struct job j = { .c = &c, .ops = t.ops, .n = t.n, .o = &o };

    int have_peak = reset_peak() == 0;
    long base = status_kb("VmRSS");
    double t0 = rpb_now_ns();
    rpr_measured(&j);
    double ns = rpb_now_ns() - t0;
    long peak = have_peak ? status_kb("VmHWM") : -1;

    rp_pool_info pi = { .struct_size = sizeof pi };
    if (c.pool && rp_pool_get_info(c.pool, &pi) != 0) pi.reserved_bytes = 0;
    ctx_close(&c, &o, t.max_id);
    print_info(path, &t);
    printf(" impl=%s ns_per_op=%.2f peak_rss_kb=%ld", impl_name[impl],
           t.n ? ns / (double)t.n : 0.0, peak >= 0 && base >= 0 ? peak - base : -1L);
    if (c.impl != I_GLIBC && impl_flags[impl] & RP_POOL_ARENA)
        printf(" arena_chunks=%zu", pi.chunks);
    printf(" bad_blocks=%zu\n", o.bad);
    if (o.bad) {
        fprintf(stderr, "replay: %s: %zu blocks did not keep what was written to them\n",
                impl_name[impl], o.bad);
        return 1;
    }
    return 0;
}
