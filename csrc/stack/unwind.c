/*
 * unwind.c -- a fast x86-64 stack walker with a cache keyed by return address.
 *
 * Each frame of a walk needs one rule: where the caller's stack pointer (the
 * CFA) is, relative to this frame's rsp or rbp, and where rbp was saved. The
 * rule for a return address never changes, so it is computed once, from the
 * module's .eh_frame (found with glibc's lock-free _dl_find_object, binary
 * search in .eh_frame_hdr, then the CIE and FDE call-frame programs run up to
 * the call), and kept in a table keyed by return address. A warm walk is then
 * a hash probe, two loads and an add per frame.
 *
 * Anything this walker does not handle -- a CFA given by a DWARF expression
 * (PLT stubs, stack realignment), a signal frame, an unusual register rule --
 * is cached as such, and the walk returns -1 so the caller uses libunwind for
 * that capture. The walk stops at a frame whose return address is undefined
 * (_start, thread start) or lies outside every loaded module.
 *
 * The cache follows stack.c's table: open addressing, lock-free readers,
 * entries written once (the rule is stored before the key is published),
 * growth into a fresh mmap published as a whole (the old table stays mapped
 * for readers still in it). A writer that finds the table busy or full just
 * does not cache.
 */
#include "stack.h"

#if defined(__x86_64__) && defined(__linux__)

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#define RPI_LIKELY(x) __builtin_expect(!!(x), 1)
#define RPI_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum { RULE_RSP = 1, RULE_RBP = 2, RULE_END = 3, RULE_OTHER = 4 };

/* kind (8 bits) | rbp saved at CFA+rbp_off (16 bits, 0 = not saved) | cfa_off (32) */
static inline uint64_t pack(unsigned kind, int32_t cfa_off, int16_t rbp_off)
{
    return (uint64_t)kind | ((uint64_t)(uint16_t)rbp_off << 8) | ((uint64_t)(uint32_t)cfa_off << 32);
}
static inline unsigned rule_kind(uint64_t r) { return (unsigned)(r & 0xff); }
static inline int16_t rule_rbp(uint64_t r) { return (int16_t)(uint16_t)(r >> 8); }
static inline int32_t rule_cfa(uint64_t r) { return (int32_t)(uint32_t)(r >> 32); }

/* ------------------------------------------------------------ the cache */
typedef struct slot {
    _Atomic uintptr_t pc;   /* 0 empty, 1 being written */
    _Atomic uint64_t rule;
} slot;

typedef struct cache {
    size_t mask;
    _Atomic size_t used;
    slot s[];
} cache;

#define CACHE_INITIAL 4096u
static _Atomic(cache *) rules;
static atomic_int growing;
/* Bumped when code may have been unmapped: memos of older walks are void. */
static _Atomic unsigned code_generation;

static cache *cache_new(size_t cap)
{
    int saved = errno;
    void *p = mmap(NULL, sizeof(cache) + cap * sizeof(slot), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    errno = saved;
    if (p == MAP_FAILED)
        return NULL;
    cache *c = p;
    c->mask = cap - 1;
    return c;
}

static inline size_t home(uintptr_t pc, size_t mask)
{
    uint64_t h = (uint64_t)pc * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 24) & mask;
}

static inline int lookup(const cache *c, uintptr_t pc, uint64_t *rule)
{
    for (size_t i = home(pc, c->mask), n = 0; n <= c->mask; i = (i + 1) & c->mask, n++) {
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_acquire);
        if (k == pc) {
            *rule = atomic_load_explicit(&c->s[i].rule, memory_order_relaxed);
            return 1;
        }
        if (k == 0)
            return 0;
    }
    return 0;
}

static void put(cache *c, uintptr_t pc, uint64_t rule)
{
    for (size_t i = home(pc, c->mask), n = 0; n <= c->mask; i = (i + 1) & c->mask, n++) {
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_acquire);
        if (k == pc)
            return;
        if (k != 0)
            continue;
        uintptr_t empty = 0;
        if (!atomic_compare_exchange_strong(&c->s[i].pc, &empty, 1))
            continue;   /* taken meanwhile: probe on */
        atomic_store_explicit(&c->s[i].rule, rule, memory_order_relaxed);
        atomic_store_explicit(&c->s[i].pc, pc, memory_order_release);
        atomic_fetch_add_explicit(&c->used, 1, memory_order_relaxed);
        return;
    }
}

/* A table twice the size with every finished entry of c; one grower at a
   time, the others skip caching meanwhile. */
static void cache_grow(cache *c)
{
    int idle = 0;
    if (!atomic_compare_exchange_strong(&growing, &idle, 1))
        return;
    if (atomic_load_explicit(&rules, memory_order_acquire) == c) {
        cache *n = cache_new((c->mask + 1) * 2);
        if (n) {
            for (size_t i = 0; i <= c->mask; i++) {
                uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_acquire);
                if (k > 1)
                    put(n, k, atomic_load_explicit(&c->s[i].rule, memory_order_relaxed));
            }
            atomic_store_explicit(&rules, n, memory_order_release);
        }
    }
    atomic_store(&growing, 0);
}

static void remember(uintptr_t pc, uint64_t rule)
{
    cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    if (!c)
        return;
    if ((atomic_load_explicit(&c->used, memory_order_relaxed) + 1) * 2 > c->mask + 1) {
        cache_grow(c);
        c = atomic_load_explicit(&rules, memory_order_acquire);
        if ((atomic_load_explicit(&c->used, memory_order_relaxed) + 1) * 2 > c->mask + 1)
            return;
    }
    put(c, pc, rule);
}

/* --------------------------------------------------- reading .eh_frame */
enum {
    PE_ABSPTR = 0x00, PE_ULEB = 0x01, PE_UDATA2 = 0x02, PE_UDATA4 = 0x03, PE_UDATA8 = 0x04,
    PE_SLEB = 0x09, PE_SDATA2 = 0x0a, PE_SDATA4 = 0x0b, PE_SDATA8 = 0x0c,
    PE_PCREL = 0x10, PE_DATAREL = 0x30, PE_INDIRECT = 0x80, PE_OMIT = 0xff,
};

typedef struct reader {
    const unsigned char *p, *end;
    int bad;
} reader;

static uint64_t uleb(reader *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

static int64_t sleb(reader *r)
{
    int64_t v = 0;
    unsigned shift = 0;
    for (; r->p < r->end && shift < 64;) {
        unsigned char b = *r->p++;
        v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
        shift += 7;
        if (!(b & 0x80)) {
            if (shift < 64 && (b & 0x40))
                v |= -((int64_t)1 << shift);
            return v;
        }
    }
    r->bad = 1;
    return 0;
}

static uint64_t fixed(reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, r->p, n);    /* little-endian */
    r->p += n;
    return v;
}

/* A pointer in encoding enc; datarel is the base for PE_DATAREL. */
static uintptr_t encoded(reader *r, unsigned enc, uintptr_t datarel)
{
    if (enc == PE_OMIT)
        return 0;
    uintptr_t at = (uintptr_t)r->p;
    uint64_t v;
    switch (enc & 0x0f) {
    case PE_ABSPTR: case PE_UDATA8: case PE_SDATA8: v = fixed(r, 8); break;
    case PE_ULEB: v = uleb(r); break;
    case PE_SLEB: v = (uint64_t)sleb(r); break;
    case PE_UDATA2: v = fixed(r, 2); break;
    case PE_SDATA2: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break;
    case PE_UDATA4: v = fixed(r, 4); break;
    case PE_SDATA4: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break;
    default: r->bad = 1; return 0;
    }
    switch (enc & 0x70) {
    case 0: break;
    case PE_PCREL: v += at; break;
    case PE_DATAREL: v += datarel; break;
    default: r->bad = 1; return 0;
    }
    if (enc & PE_INDIRECT)
        r->bad = 1;     /* not used for FDE addresses in practice */
    return (uintptr_t)v;
}

/* The FDE covering pc through .eh_frame_hdr's sorted table, or NULL. */
static const unsigned char *find_fde(const unsigned char *hdr, uintptr_t pc)
{
    if (!hdr || hdr[0] != 1)
        return NULL;
    unsigned ptr_enc = hdr[1], count_enc = hdr[2], table_enc = hdr[3];
    reader r = {hdr + 4, hdr + 4 + 16, 0};
    encoded(&r, ptr_enc, (uintptr_t)hdr);
    size_t count = (size_t)encoded(&r, count_enc, (uintptr_t)hdr);
    if (r.bad || table_enc != (PE_DATAREL | PE_SDATA4) || count == 0)
        return NULL;
    const int32_t *table = (const int32_t *)(const void *)r.p;
    size_t lo = 0, hi = count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)hdr + (intptr_t)table[2 * mid] <= pc)
            lo = mid;
        else
            hi = mid;
    }
    if ((uintptr_t)hdr + (intptr_t)table[2 * lo] > pc)
        return NULL;
    return (const unsigned char *)hdr + (intptr_t)table[2 * lo + 1];
}

enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };
#define STATE_STACK 8

typedef struct cfa_state {
    unsigned cfa_reg;
    int64_t cfa_off;
    int rbp_saved;          /* 1: at CFA + rbp_off */
    int64_t rbp_off;
    int ra_undefined;
    int other;              /* a rule this walker does not follow */
} cfa_state;

/* Runs a call-frame program until the location passes target. */
static void run_program(reader *r, uintptr_t loc, uintptr_t target, uint64_t code_align,
                        int64_t data_align, cfa_state *st, const cfa_state *initial)
{
    cfa_state saved[STATE_STACK];
    int depth = 0;
    while (r->p < r->end && !r->bad && !st->other) {
        unsigned char op = *r->p++;
        unsigned hi = op & 0xc0, low = op & 0x3f;
        uint64_t reg, delta = 0;
        int64_t off;
        if (hi == 0x40) {
            delta = low * code_align;
        } else if (hi == 0x80) {
            off = (int64_t)uleb(r) * data_align;
            if (low == REG_RBP) { st->rbp_saved = 1; st->rbp_off = off; }
            else if (low == REG_RA && off != -8) st->other = 1;
            continue;
        } else if (hi == 0xc0) {
            if (low == REG_RBP) { st->rbp_saved = initial->rbp_saved; st->rbp_off = initial->rbp_off; }
            continue;
        } else {
            switch (op) {
            case 0x00: continue;                                    /* nop */
            case 0x02: delta = fixed(r, 1) * code_align; break;     /* advance_loc1 */
            case 0x03: delta = fixed(r, 2) * code_align; break;
            case 0x04: delta = fixed(r, 4) * code_align; break;
            case 0x05: case 0x11:                                   /* offset_extended(_sf) */
                reg = uleb(r);
                off = (op == 0x05 ? (int64_t)uleb(r) : sleb(r)) * data_align;
                if (reg == REG_RBP) { st->rbp_saved = 1; st->rbp_off = off; }
                else if (reg == REG_RA && off != -8) st->other = 1;
                continue;
            case 0x06:                                              /* restore_extended */
                if (uleb(r) == REG_RBP) { st->rbp_saved = initial->rbp_saved; st->rbp_off = initial->rbp_off; }
                continue;
            case 0x07:                                              /* undefined */
                reg = uleb(r);
                if (reg == REG_RA) st->ra_undefined = 1;
                else if (reg == REG_RBP) st->rbp_saved = 0;
                continue;
            case 0x08:                                              /* same_value */
                if (uleb(r) == REG_RBP) st->rbp_saved = 0;
                continue;
            case 0x09:                                              /* register */
                reg = uleb(r);
                uleb(r);
                if (reg == REG_RBP || reg == REG_RA) st->other = 1;
                continue;
            case 0x0a:                                              /* remember_state */
                if (depth == STATE_STACK) { st->other = 1; continue; }
                saved[depth++] = *st;
                continue;
            case 0x0b:                                              /* restore_state */
                if (depth == 0) { st->other = 1; continue; }
                *st = saved[--depth];
                continue;
            case 0x0c:                                              /* def_cfa */
                st->cfa_reg = (unsigned)uleb(r);
                st->cfa_off = (int64_t)uleb(r);
                continue;
            case 0x12:                                              /* def_cfa_sf */
                st->cfa_reg = (unsigned)uleb(r);
                st->cfa_off = sleb(r) * data_align;
                continue;
            case 0x0d: st->cfa_reg = (unsigned)uleb(r); continue;   /* def_cfa_register */
            case 0x0e: st->cfa_off = (int64_t)uleb(r); continue;    /* def_cfa_offset */
            case 0x13: st->cfa_off = sleb(r) * data_align; continue;
            case 0x10: case 0x16:                                   /* (val_)expression */
                reg = uleb(r);
                off = (int64_t)uleb(r);
                if (off < 0 || off > r->end - r->p) { r->bad = 1; continue; }
                r->p += off;
                if (reg == REG_RBP || reg == REG_RA) st->other = 1;
                continue;
            case 0x14: case 0x15:                                   /* val_offset(_sf) */
                reg = uleb(r);
                if (op == 0x14) uleb(r); else sleb(r);
                if (reg == REG_RBP || reg == REG_RA) st->other = 1;
                continue;
            case 0x2e: uleb(r); continue;                           /* GNU_args_size */
            default: st->other = 1; continue;   /* def_cfa_expression, set_loc, ... */
            }
        }
        if (loc + delta > target)
            return;
        loc += delta;
    }
    if (r->bad)
        st->other = 1;
}

/* The FDE covering target, its CIE read up to the initial instructions and
   the FDE up to its own: 0, or RULE_END / RULE_OTHER. */
typedef struct fde_loc {
    reader c, r;                /* CIE and FDE instructions */
    uintptr_t start, range;     /* the function's code */
    uint64_t code_align;
    int64_t data_align;
} fde_loc;

static unsigned locate_fde(uintptr_t target, fde_loc *out)
{
    struct dl_find_object obj;
    if (_dl_find_object((void *)target, &obj) != 0)
        return RULE_END;
    const unsigned char *fde = find_fde(obj.dlfo_eh_frame, target);
    if (!fde)
        return RULE_END;
    reader r = {fde, fde + 8, 0};
    uint32_t len = (uint32_t)fixed(&r, 4);
    if (len == 0 || len == 0xffffffffu)
        return RULE_OTHER;
    const unsigned char *fde_end = fde + 4 + len;
    r.end = fde_end;
    const unsigned char *id_at = r.p;
    uint32_t cie_off = (uint32_t)fixed(&r, 4);
    const unsigned char *cie = id_at - cie_off;

    /* the CIE */
    reader c = {cie, cie + 4, 0};
    uint32_t clen = (uint32_t)fixed(&c, 4);
    if (clen == 0 || clen == 0xffffffffu)
        return RULE_OTHER;
    c.end = cie + 4 + clen;
    if (fixed(&c, 4) != 0)
        return RULE_OTHER;
    unsigned version = (unsigned)fixed(&c, 1);
    const char *aug = (const char *)c.p;
    size_t aug_len = strnlen(aug, (size_t)(c.end - c.p));
    c.p += aug_len + 1;
    uint64_t code_align = uleb(&c);
    int64_t data_align = sleb(&c);
    uint64_t ra_reg = version == 1 ? fixed(&c, 1) : uleb(&c);
    unsigned fde_enc = PE_ABSPTR;
    int has_z = aug[0] == 'z';
    if (has_z) {
        uint64_t alen = uleb(&c);
        const unsigned char *after = c.p + alen;
        for (size_t i = 1; i < aug_len && !c.bad; i++) {
            if (aug[i] == 'R') fde_enc = (unsigned)fixed(&c, 1);
            else if (aug[i] == 'L') fixed(&c, 1);
            else if (aug[i] == 'P') { unsigned e = (unsigned)fixed(&c, 1); encoded(&c, e & 0x7f, 0); }
            else return RULE_OTHER;     /* 'S' signal frame, 'B', ... */
        }
        c.p = after;
    } else if (aug_len) {
        return RULE_OTHER;
    }
    if (c.bad || ra_reg != REG_RA || c.p > c.end)
        return RULE_OTHER;

    /* the FDE's range */
    uintptr_t start = encoded(&r, fde_enc, 0);
    uintptr_t range = encoded(&r, fde_enc & 0x0f, 0);
    if (r.bad || target < start || target - start >= range)
        return RULE_END;
    if (has_z) {
        uint64_t alen = uleb(&r);
        if (alen > (uint64_t)(r.end - r.p))
            return RULE_OTHER;
        r.p += alen;
    }
    out->c = c;
    out->r = r;
    out->start = start;
    out->range = range;
    out->code_align = code_align;
    out->data_align = data_align;
    return 0;
}

int rpi_unwind_function_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi)
{
    fde_loc f;
    if (locate_fde(pc, &f) != 0)
        return -1;
    *lo = f.start;
    *hi = f.start + f.range;
    return 0;
}

/* The rule for return address pc (the call is at pc - 1). */
static uint64_t compute_rule(uintptr_t pc)
{
    uintptr_t target = pc - 1;
    fde_loc f;
    unsigned kind = locate_fde(target, &f);
    if (kind)
        return pack(kind, 0, 0);
    reader c = f.c, r = f.r;
    uintptr_t start = f.start;
    uint64_t code_align = f.code_align;
    int64_t data_align = f.data_align;
    cfa_state st = {REG_RSP, 8, 0, 0, 0, 0};
    run_program(&c, start, target, code_align, data_align, &st, &st);
    cfa_state initial = st;
    run_program(&r, start, target, code_align, data_align, &st, &initial);
    if (st.other)
        return pack(RULE_OTHER, 0, 0);
    if (st.ra_undefined)
        return pack(RULE_END, 0, 0);
    if ((st.cfa_reg != REG_RSP && st.cfa_reg != REG_RBP) || st.cfa_off < 8 ||
        st.cfa_off > INT32_MAX || (st.rbp_saved && (st.rbp_off >= 0 || st.rbp_off < INT16_MIN)))
        return pack(RULE_OTHER, 0, 0);
    return pack(st.cfa_reg == REG_RSP ? RULE_RSP : RULE_RBP, (int32_t)st.cfa_off,
                (int16_t)(st.rbp_saved ? st.rbp_off : 0));
}

void rpi_unwind_forget_code(void)
{
    atomic_fetch_add_explicit(&code_generation, 1, memory_order_release);
    cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    if (!c)
        return;
    /* Finished entries are emptied; one being written right now may keep a
       rule computed before the unload (a walk racing dlclose). */
    for (size_t i = 0; i <= c->mask; i++) {
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_relaxed);
        if (k > 1 && atomic_compare_exchange_strong(&c->s[i].pc, &k, 0))
            atomic_fetch_sub_explicit(&c->used, 1, memory_order_relaxed);
    }
}

int rpi_unwind_init(void)
{
    if (atomic_load_explicit(&rules, memory_order_acquire))
        return 0;
    cache *c = cache_new(CACHE_INITIAL);
    if (!c)
        return -1;
    atomic_store_explicit(&rules, c, memory_order_release);
    return 0;
}

/* The last walk of this thread, to answer "same stack as last time" without
   walking: a walk is a function of its starting registers and of the stack
   words it read (the rules depend only on the return addresses, which are
   among those words), so when the start and every word read are unchanged,
   the frames are too. Re-reading the words costs a load and a compare each,
   against a rule lookup and a dozen instructions per frame for a walk. rbp
   is read lazily (only by a frame whose CFA is rbp-based), so saved rbp
   values that no frame uses do not spoil the comparison. Per-thread
   storage, not the C stack, which may be a small signal stack. */
#define MEMO_FRAMES 64
typedef struct memo {
    int valid;
    unsigned generation;                 /* code_generation of the walk */
    int need_bp;                         /* the walk used the starting rbp */
    int n;                               /* frames the walk returned */
    int nreads;
    uintptr_t pc, sp, bp;                /* starting registers */
    uintptr_t addr[2 * MEMO_FRAMES];
    uintptr_t value[2 * MEMO_FRAMES];
} memo;
static __thread memo tls_memo RPI_STACK_TLS;

/* A return address the cache does not hold yet: its rule from the unwind
   tables, remembered. Out of line: the walk's loop stays small. */
static __attribute__((noinline, cold)) uint64_t rule_miss(uintptr_t pc)
{
    uint64_t rule = compute_rule(pc);
    remember(pc, rule);
    return rule;
}

static inline uint64_t rule_of(uintptr_t pc)
{
    const cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    size_t i = home(pc, c->mask);
    /* the first probe inline: nearly every lookup ends there */
    if (RPI_LIKELY(atomic_load_explicit(&c->s[i].pc, memory_order_acquire) == pc))
        return atomic_load_explicit(&c->s[i].rule, memory_order_relaxed);
    uint64_t rule;
    if (lookup(c, pc, &rule))
        return rule;
    return rule_miss(pc);
}

/* Frame pointer kept so that this function's own frame is known: the walk
   starts at its caller with rsp = our CFA, rbp = the saved rbp. */
__attribute__((noinline, optimize("no-omit-frame-pointer")))
int rpi_unwind_fast(uintptr_t *out, int max, int *same)
{
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t pc = fp[1], sp = (uintptr_t)(fp + 2), bp = fp[0];
    memo *m = &tls_memo;
    unsigned generation = atomic_load_explicit(&code_generation, memory_order_acquire);
    if (same) {
        *same = 0;
        if (m->valid && m->generation == generation && m->pc == pc && m->sp == sp && (!m->need_bp || m->bp == bp) && m->n <= max) {
            int i = 0;
            while (i < m->nreads && *(const uintptr_t *)m->addr[i] == m->value[i])
                i++;
            if (i == m->nreads) {
                *same = 1;
                return m->n;
            }
        }
    }
    m->valid = 0;
    m->generation = generation;
    m->pc = pc;
    m->sp = sp;
    m->bp = bp;
    m->need_bp = 0;
    if (!atomic_load_explicit(&rules, memory_order_acquire))
        return -1;
    /* Every word read is logged while the walk is within MEMO_FRAMES frames
       (at most two reads a frame, so the log cannot overflow there); a
       deeper walk is not memoized. */
    uintptr_t *log_addr = m->addr, *log_value = m->value;
    uintptr_t bp_at = 0;       /* where the caller's rbp is saved; 0: in bp */
    int bp_is_start = 1;
    int n = 0, logged = 1;
    while (n < max) {
        if (n == MEMO_FRAMES)
            logged = 0;
        out[n++] = pc;
        uint64_t rule = rule_of(pc);
        unsigned kind = rule_kind(rule);
        uintptr_t base = sp;
        if (RPI_UNLIKELY(kind != RULE_RSP)) {
            if (kind == RULE_END)
                break;
            if (kind != RULE_RBP)
                return -1;
            if (bp_at) {
                bp = *(const uintptr_t *)bp_at;
                if (logged) {
                    *log_addr++ = bp_at;
                    *log_value++ = bp;
                }
                bp_at = 0;
                bp_is_start = 0;
            } else if (bp_is_start) {
                m->need_bp = 1;
            }
            base = bp;
        }
        uintptr_t cfa = base + (uintptr_t)(intptr_t)rule_cfa(rule);
        if (cfa - sp - 1 >= ((uintptr_t)1 << 24))
            return -1;       /* not a plausible frame (cfa <= sp, or too far): let libunwind decide */
        int16_t rbp_off = rule_rbp(rule);
        if (rbp_off)
            bp_at = cfa + (uintptr_t)(intptr_t)rbp_off;
        pc = *(const uintptr_t *)(cfa - 8);
        if (logged) {
            *log_addr++ = cfa - 8;
            *log_value++ = pc;
        }
        sp = cfa;
        if (pc == 0)
            break;
    }
    m->n = n;
    m->nreads = (int)(log_addr - m->addr);
    m->valid = logged;
    return n;
}

#else /* not x86-64 Linux: always the general unwinder */

int rpi_unwind_init(void) { return 0; }
void rpi_unwind_forget_code(void) {}
int rpi_unwind_function_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi)
{
    (void)pc;
    (void)lo;
    (void)hi;
    return -1;
}
int rpi_unwind_fast(uintptr_t *out, int max, int *same)
{
    (void)out;
    (void)max;
    if (same)
        *same = 0;
    return -1;
}

#endif
