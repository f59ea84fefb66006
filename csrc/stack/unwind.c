/*
 * unwind.c -- a fast x86-64 stack walker with a cache keyed by return address.
 *
 * Each frame of a walk needs one rule: where the caller's stack pointer (the
 * CFA) is, relative to this frame's rsp or rbp, and where rbp was saved. The
 * rule for a return address never changes, so it is computed once, from the
 * module's .eh_frame (found with glibc's lock-free _dl_find_object, binary
 * search in .eh_frame_hdr, then the CIE and FDE call-frame programs run up to
 * the call), and kept in a table keyed by return address. A warm walk is then
 * a hash probe, two loads and an add per frame (about 20 instructions with
 * the bookkeeping: the frame and its CFA stored, the frame folded into the
 * stack's hash). Checks are paid when a rule is computed, not per frame: an
 * rsp-based CFA is cached only when it lies 8 bytes to 16 MiB above rsp, so
 * every step moves up the stack by a bounded amount without a test; only
 * rbp-based CFAs (rbp read lazily, from the nearest frame below that saved
 * it) are checked as they are walked.
 *
 * Anything this walker does not handle -- a CFA given by a DWARF expression
 * (PLT stubs, stack realignment), a signal frame, an unusual register rule --
 * is cached as such, and the walk returns -1 so the caller uses libunwind for
 * that capture. The walk stops at a frame whose return address is undefined
 * (_start, thread start) or lies outside every loaded module (JIT code, or
 * a word that is not a return address: reported without a module), and
 * before a word that lies in a loaded object but outside its executable
 * segments (a data pointer read where unwind tables that do not describe
 * the frame below put a return address): that word is not recorded.
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
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef RPI_STACK_NO_MAP_HOOKS
#include <sys/resource.h>
#endif
#include "../memcheck_glue.h"

#define RPI_LIKELY(x) __builtin_expect(!!(x), 1)
#define RPI_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* RULE_NONE: the address lies in a loaded object but outside its code (a
   word that is not a return address, read through unwind tables that do
   not describe the frame below it): not a frame, the walk ends before it,
   as at a 0 return address. */
enum { RULE_RSP = 1, RULE_RBP = 2, RULE_END = 3, RULE_OTHER = 4, RULE_NONE = 5 };

/* A rule is stored as two 32-bit words, so that the common frame -- a CFA
   at a fixed offset from rsp -- needs one load and one test:
     fast: CFA - rsp for an rsp-based rule (8 .. RPI_FRAME_MAX), FAST_END
           at the outermost frame, else 0;
     meta: kind (4 bits) | CFA - rbp for an rbp-based rule (12 bits)
           | where rbp was saved, CFA + rbp_off (16 bits, 0 = not saved). */
#define RPI_FRAME_MAX ((int32_t)1 << 24)
#define FAST_END (-1)
typedef struct rule {
    int32_t fast;
    uint32_t meta;
} rule;

static inline rule pack(unsigned kind, int32_t cfa_off, int16_t rbp_off)
{
    rule r = {kind == RULE_RSP ? cfa_off : kind == RULE_END ? FAST_END : 0,
              (uint32_t)kind | (kind == RULE_RBP ? (uint32_t)cfa_off << 4 : 0) |
                  ((uint32_t)(uint16_t)rbp_off << 16)};
    return r;
}
static inline unsigned rule_kind(rule r) { return r.meta & 0xf; }
static inline int16_t rule_rbp(rule r) { return (int16_t)(uint16_t)(r.meta >> 16); }
static inline int32_t rule_cfa(rule r)
{
    return rule_kind(r) == RULE_RSP ? r.fast : (int32_t)((r.meta >> 4) & 0xfff);
}

/* ------------------------------------------------------------ the cache */
typedef struct slot {
    _Atomic uintptr_t pc;   /* 0 empty, 1 being written */
    _Atomic int32_t fast;
    _Atomic uint32_t meta;
} slot;

typedef struct cache {
    size_t mask;
    _Atomic size_t used;
    slot s[];
} cache;

#define CACHE_INITIAL 4096u
static _Atomic(cache *) rules;
static atomic_int growing;
/* Bumped when code or memory may have been unmapped: memos of older walks
   are void, and so are the stack pages found readable (mapped_gen). */
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

/* A multiplier that fits an instruction's 32-bit immediate, so the walk
   keeps no 64-bit constant in a register. */
#define HOME_MUL 0x7feb352dull
static inline size_t home(uintptr_t pc, size_t mask)
{
    uint64_t h = (uint64_t)pc * HOME_MUL;
    return (size_t)(h >> 24) & mask;
}

static inline rule slot_rule(const slot *e)
{
    rule r = {atomic_load_explicit(&e->fast, memory_order_relaxed),
              atomic_load_explicit(&e->meta, memory_order_relaxed)};
    return r;
}

/* Slot 0 of every table stays empty (key, rule: all zero), so that the
   walk's inline probe of a 0 return address (home slot 0) finds "no rule"
   and leaves the loop through slow_step, which ends the walk there: the
   loop needs no test of its own for the 0 that ends a stack. Other keys
   whose home is slot 0 live from slot 1 on. */
static inline int lookup(const cache *c, uintptr_t pc, rule *out)
{
    for (size_t i = home(pc, c->mask), n = 0; n <= c->mask; i = (i + 1) & c->mask, n++) {
        if (i == 0)
            continue;
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_acquire);
        if (k == pc) {
            *out = slot_rule(&c->s[i]);
            return 1;
        }
        if (k == 0)
            return 0;
    }
    return 0;
}

static void put(cache *c, uintptr_t pc, rule r)
{
    for (size_t i = home(pc, c->mask), n = 0; n <= c->mask; i = (i + 1) & c->mask, n++) {
        if (i == 0)
            continue;   /* stays empty (lookup) */
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_acquire);
        if (k == pc)
            return;
        if (k != 0)
            continue;
        uintptr_t empty = 0;
        if (!atomic_compare_exchange_strong(&c->s[i].pc, &empty, 1))
            continue;   /* taken meanwhile: probe on */
        atomic_store_explicit(&c->s[i].fast, r.fast, memory_order_relaxed);
        atomic_store_explicit(&c->s[i].meta, r.meta, memory_order_relaxed);
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
                    put(n, k, slot_rule(&c->s[i]));
            }
            atomic_store_explicit(&rules, n, memory_order_release);
        }
    }
    atomic_store(&growing, 0);
}

/* The table is kept at most an eighth full: a walk probes two slots
   inline, and at that load nearly every rule is in one of them (a large
   program, gcc's cc1, has thousands of return addresses; kept at most a
   quarter full, 0.9% of cc1's frames went to the out-of-line probe). */
static void remember(uintptr_t pc, rule r)
{
    cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    if (!c)
        return;
    if ((atomic_load_explicit(&c->used, memory_order_relaxed) + 1) * 8 > c->mask + 1) {
        cache_grow(c);
        c = atomic_load_explicit(&rules, memory_order_acquire);
        if ((atomic_load_explicit(&c->used, memory_order_relaxed) + 1) * 8 > c->mask + 1)
            return;
    }
    put(c, pc, r);
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

/* The readers are inlined (also into the rule's computation, which is
   cold and otherwise optimised for size), so that run_program keeps its
   reader in registers. */
#define READER_INLINE static inline __attribute__((always_inline))

READER_INLINE uint64_t uleb(reader *r)
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

READER_INLINE int64_t sleb(reader *r)
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

READER_INLINE uint64_t fixed(reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)     /* little-endian; no call to memcpy (-fno-builtin) */
        v |= (uint64_t)r->p[i] << (8 * i);
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

/* Runs a call-frame program until the location passes target. The reader
   and the state are local copies, written back at the end, so that they
   stay in registers (the rule of a return address is computed once, but
   gcc's cc1 has some 6,000 of them, their programs run from the
   function's start). */
static void run_program(reader *r_out, uintptr_t loc, uintptr_t target, uint64_t code_align,
                        int64_t data_align, cfa_state *st_out, const cfa_state *initial)
{
    cfa_state saved[STATE_STACK];
    int depth = 0;
    reader rd = *r_out, *r = &rd;
    cfa_state cur = *st_out, *st = &cur;
    while (r->p < r->end && !r->bad && !st->other) {
        unsigned char op = *r->p++;
        /* The commonest ops first, in a loop of their own (neither sets bad
           or other): advance_loc and a one-byte def_cfa_offset, the pair a
           push or a pop leaves (cc1's 6,352 computations ran 937,000 ops,
           431,000 of each). */
        for (;;) {
            if ((op & 0xc0) == 0x40) {
                uint64_t delta = (op & 0x3f) * code_align;
                if (loc + delta > target)
                    goto out;
                loc += delta;
            } else if (op == 0x0e && r->p < r->end && *r->p < 0x80) {
                st->cfa_off = *r->p++;
            } else {
                break;
            }
            if (r->p >= r->end)
                goto ended;
            op = *r->p++;
        }
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
            goto out;
        loc += delta;
    }
ended:
    if (r->bad)
        st->other = 1;
out:
    *r_out = rd;
    *st_out = cur;
}

/* Whether address a of the object obj describes lies in one of its
   executable segments, read from the object's program headers (the ELF
   header at the start of its mapping; anything unexpected there counts as
   code, the walk's former answer). Called only for an address no FDE
   covers, once per return address. */
static int in_code(const struct dl_find_object *obj, uintptr_t a)
{
    uintptr_t lo = (uintptr_t)obj->dlfo_map_start, hi = (uintptr_t)obj->dlfo_map_end;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)lo;
    if (hi - lo < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff < sizeof *eh ||
        eh->e_phoff + (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr)) > 4096 ||
        eh->e_phoff + (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr)) > hi - lo)
        return 1;       /* the headers are not where the first page holds them */
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(lo + eh->e_phoff);
    uintptr_t bias = obj->dlfo_link_map->l_addr;
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) && a - bias >= ph[i].p_vaddr &&
            a - bias - ph[i].p_vaddr < ph[i].p_memsz)
            return 1;
    return 0;
}

/* The FDE covering target, its CIE read up to the initial instructions and
   the FDE up to its own: 0, or RULE_END / RULE_OTHER; RULE_NONE when no
   FDE covers target and target is not in the object's code. */
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
        return in_code(&obj, target) ? RULE_END : RULE_NONE;
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
        return r.bad || in_code(&obj, target) ? RULE_END : RULE_NONE;
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

/* The pages where an address outside every loaded object (code made at
   run time, or a word that is not a return address) got a cached rule
   that ends the stack, by a hash of the page: a module can be mapped
   there only once that memory is unmapped, and then the rules of its
   addresses are dropped (rpi_unwind_forget_memory). Bits are set, never
   cleared: a stale one costs a scan of the rules at an unmapping. */
#define OUT_PAGE_BITS 4096u
static _Atomic uint64_t out_pages[OUT_PAGE_BITS / 64];

static inline unsigned out_bit(uintptr_t page)
{
    return (unsigned)((uint64_t)page * HOME_MUL >> 7) & (OUT_PAGE_BITS - 1);
}

static void note_outside(uintptr_t a)
{
    unsigned bit = out_bit(a >> 12);
    atomic_fetch_or_explicit(&out_pages[bit / 64], (uint64_t)1 << (bit % 64), memory_order_relaxed);
}

static int outside_in(uintptr_t lo, uintptr_t hi)
{
    uintptr_t first = lo >> 12, last = (hi - 1) >> 12;
    if (last - first >= OUT_PAGE_BITS) {
        for (unsigned i = 0; i < OUT_PAGE_BITS / 64; i++)
            if (atomic_load_explicit(&out_pages[i], memory_order_relaxed))
                return 1;
        return 0;
    }
    for (uintptr_t p = first; p <= last; p++) {
        unsigned bit = out_bit(p);
        if (atomic_load_explicit(&out_pages[bit / 64], memory_order_relaxed) >> (bit % 64) & 1)
            return 1;
    }
    return 0;
}

/* The rule for return address pc (the call is at pc - 1). */
static rule compute_rule(uintptr_t pc)
{
    uintptr_t target = pc - 1;
    fde_loc f;
    unsigned kind = locate_fde(target, &f);
    if (kind == RULE_END) {
        struct dl_find_object obj;
        if (_dl_find_object((void *)target, &obj) != 0)
            note_outside(target);   /* before the rule is cached */
    }
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
    /* an rsp-based CFA at 8 .. RPI_FRAME_MAX from rsp (so the walk needs no
       check of its own for it), an rbp-based one within 12 bits of rbp */
    if ((st.cfa_reg != REG_RSP && st.cfa_reg != REG_RBP) || st.cfa_off < 8 ||
        st.cfa_off > (st.cfa_reg == REG_RSP ? RPI_FRAME_MAX : 0xfff) || (st.rbp_saved && (st.rbp_off >= 0 || st.rbp_off < INT16_MIN)))
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

static void mem_key_init(void);

int rpi_unwind_init(void)
{
    if (atomic_load_explicit(&rules, memory_order_acquire))
        return 0;
    mem_key_init();
    cache *c = cache_new(CACHE_INITIAL);
    if (!c)
        return -1;
    atomic_store_explicit(&rules, c, memory_order_release);
    return 0;
}

/* A return address the cache does not hold yet: its rule from the unwind
   tables, remembered. Out of line: the walk's loop stays small. */
static __attribute__((noinline, cold)) rule rule_miss(uintptr_t pc)
{
    rule r = compute_rule(pc);
    remember(pc, r);
    return r;
}

static __attribute__((noinline)) rule rule_of_probed(const cache *c, uintptr_t pc)
{
    rule r;
    if (lookup(c, pc, &r))
        return r;
    return rule_miss(pc);
}

/* The rule of pc: its home slot tested inline (where nearly every rule
   is), the rest of the probe and a miss out of line. */
static inline rule rule_of(uintptr_t pc)
{
    const cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    const slot *e = &c->s[home(pc, c->mask)];
    if (RPI_LIKELY(atomic_load_explicit(&e->pc, memory_order_acquire) == pc))
        return slot_rule(e);
    return rule_of_probed(c, pc);
}

/* This thread's walks: the frames and the CFA of each frame (the word at
   CFA - 8 is the next frame's return address), kept after the walk. A walk
   is a function of its arguments, its starting registers and the stack
   words it read (the rules depend only on the return addresses, which are
   among those words), so
     - when all of them are unchanged the frames are too: the memo answers
       "same stack as last time" by re-reading the words, a load and a
       compare each;
     - from a frame on, the same holds for the rest of the walk: when a walk
       reaches a CFA that the previous walk reached and reads the same
       return address there, the previous walk's frames above are taken
       over ("spliced") after their words are read again, instead of
       looking up a rule per frame. Hence two buffers: the previous walk
       stays readable while the next one is written.
   rbp is read lazily (only by a frame whose CFA is rbp-based), so saved
   rbp values that no frame uses do not spoil the comparison; each read is
   logged with the frame that used it and the frame that saved it, and a
   splice takes over only reads whose saving frame is at or above the
   splice point (the one below it is not the previous walk's). Per-thread
   storage, not the C stack, which may be a small signal stack. */
#define WALK_MAX (RPI_STACK_MAX_DEPTH + RPI_STACK_SKIP_WINDOW)
#define WALK_BP_READS 32
/* Splicing costs instructions on every frame walked before the splice
   point (following the previous walk's CFAs) and per splice, and saves
   part of a warm frame's cost (more for an rbp-based frame) on each frame
   taken over: it pays on deep stacks whose allocations share most of
   their callers (gcc's cc1, CPython) and not on stacks that share fewer
   (sqlite3's inserts: ~11 shared, ~9 not; git log -p: ~13 and ~7). A thread splices while the
   walks that tried gained by it on average (estimated in instructions
   with the weights below, from callgrind), and else waits SPLICE_SAMPLE
   - 1 walks before trying again. */
#define SPLICE_SAMPLE 16
#define SPLICE_SAVES 6          /* a frame taken over */
#define SPLICE_SAVES_BP 40      /* more for an rbp-based one (a rule lookup per frame below it) */
#define SPLICE_MERGE 7          /* a frame walked while following the previous walk's CFAs */
#define SPLICE_CALL 80          /* a splice */
#define SPLICE_EVERY 4          /* the estimate takes one walk in SPLICE_EVERY (a power of 2) */
typedef struct walk_buf {
    int ok;                              /* a whole walk of this walker, every rbp read logged */
    unsigned generation;                 /* code_generation of the walk */
    int n;                               /* frames walked */
    int ncfa;                            /* frames whose CFA is known: n when the walk ended
                                            reading a 0 return address (then frame[n] == 0),
                                            else n - 1 */
    int cut;                             /* ended at its frame limit (the last frame has a caller) */
    int bp0_user;                        /* the last frame that used the starting rbp, or -1 */
    int nbp;                             /* saved rbp values read, in walk order */
    int nbp_walked;                      /* of them, read by the walk itself (not taken over) */
    int16_t bp_user[WALK_BP_READS];      /* the frame whose CFA needed it */
    int16_t bp_saver[WALK_BP_READS];     /* the frame that saved it */
    uintptr_t bp_addr[WALK_BP_READS], bp_value[WALK_BP_READS];
    /* frame k at fc[k], its CFA at fc[CFA_AT + k] (and an end mark,
       UINTPTR_MAX, after the last while a walk follows them): one array,
       so that the return address read at a CFA lies at a fixed distance
       from it, at fc[k + 1] */
    uintptr_t fc[2 * (WALK_MAX + 1)];
#ifdef RPI_STACK_NO_MAP_HOOKS
    uintptr_t read_lo, read_hi;          /* a walk off the thread's own stack (or above its
                                            top): the pages it found readable, from its
                                            start's; read_hi 0: it read the own stack alone */
#endif
} walk_buf;
#define CFA_AT (WALK_MAX + 1)
#define RA_READ_AT(cfa_ptr) ((cfa_ptr)[1 - CFA_AT])
static const uintptr_t no_cfa = UINTPTR_MAX;

/* The walks of recent captures by where they started: a capture that
   starts where one of them did (return address, stack pointer), with the
   same arguments, and finds every word that walk read unchanged has the
   same stack, and takes its id without walking. The last walk alone (the
   memo above) misses whenever captures from two places alternate; these
   slots, in sets of MEMO_WAYS chosen by the starting return address and
   stack pointer, keep a walk per place, up to four for a place reached
   by several stacks in turn (replaying every capture of a run: sqlite3's
   inserts, whose allocations repeat from the same few dozen places per
   statement, would find 70% of their stacks here against 10% by the last
   walk alone; gcc's cc1 24% against 9%, but those are mostly walks that
   splice early and cost little, see below). A slot
   keeps the CFAs, not the frames: the return address read at CFA k is the
   stack's frame k + 1, which the table holds. Only walks whose kept frames
   start at the first one walked, with at most MEMO_CFAS CFAs and MEMO_BP
   saved rbp reads, are kept (copying more would cost more than it saves).
   Not in libringpool's copy (the heap mode): it captures with
   rpi_unwind_fast, which uses the last walk only. */
#ifdef RPI_STACK_HEAP_STATE
#define MEMO_SLOTS 0
#else
#define MEMO_SLOTS 64
#endif
/* Four ways a set, looked at in their order and replaced in turn (first
   in, first out): sqlite3's inserts, 20,000 at depth 64 by callgrind,
   1,137.9 million instructions direct-mapped, 1,100.5 million in 32 sets
   of two (the same 64 slots), 1,099.5 million in 64 sets of two;
   direct-mapped 128 and 256 slots saved 2.7 and 3.0 million. Since (the
   hooks changed meanwhile): 1,050.5 million in 32 sets of two, the way not
   used last replaced; 982.0 million in 16 sets of four (987.0 million with
   the way after a hit replaced next, 988.4 million with a hit way skipped
   by the replacement, 1,020.5 and 1,018.7 million looking at the newest
   or the oldest way first); 989.8 million in 32 sets of four, 1,071.3
   million in 8 sets of four, 1,023.7 million in 8 sets of eight: a place
   is reached by up to four stacks in turn. */
#define MEMO_WAYS 4
#define MEMO_CFAS 32
#define MEMO_BP 4
/* The slots are used only while the thread does
   not splice (splice_wait: splicing did not pay), when walks cost the most;
   and only while they pay: a hit saves a whole walk (about 600
   instructions on sqlite3's inserts), keeping a walk costs about 85, so a
   thread that found fewer than one stack in the slots for every
   SLOT_KEEPS_PER_HIT walks it kept, over its last SLOT_WINDOW kept walks,
   neither looks nor keeps for its next SLOT_PAUSE captures (gcc's cc1,
   whose walks mostly splice: one hit in ten kept walks; sqlite3's inserts:
   two hits a kept walk). */
#define SLOT_TAG(generation, depth) ((uint64_t)(generation) << 32 | (uint32_t)(depth))
#define SLOT_WINDOW 128
#define SLOT_KEEPS_PER_HIT 8
#define SLOT_PAUSE 16384
typedef struct memo_slot {
    uintptr_t pc, sp, bp;                /* where the walk started (bp: when need_bp);
                                            pc 0: empty */
    uint64_t tag;                        /* SLOT_TAG(code_generation of the walk, depth) */
    uint32_t id;
    struct {
        uint8_t nra;                     /* CFAs whose word is the next frame */
        uint8_t zero_end;                /* and one more, whose word is 0 */
        uint8_t need_bp;                 /* the walk used the starting rbp */
        uint8_t nbp;                     /* saved rbp values read */
    } shape;
    uintptr_t bp_addr[MEMO_BP], bp_value[MEMO_BP];
    uintptr_t cfa[MEMO_CFAS];
} memo_slot;

typedef struct walk_state {
    int valid;                           /* *last describes the last walk, made with
                                            the arguments below */
    walk_buf *last;                      /* the buffer of the last whole walk */
    walk_buf *next;                      /* the other one */
    int need_bp;                         /* the walk used the starting rbp */
    int start, kept;
    uint64_t hash;
    uintptr_t pc, sp, bp;                /* starting registers */
    uintptr_t from, lo, hi;
    int depth;
    int splice_gain;                     /* instructions splicing saved on the walks that
                                            tried it (estimated, a moving average); < 0: cost */
    int splice_wait;                     /* walks to make before trying again */
    unsigned splice_tick;                /* walks that followed the previous one */
    uint32_t id;                         /* the stack id rpi_stack_here derived from *last
                                            (0: none); cleared by every walk */
    uintptr_t mapped_lo, mapped_hi;      /* stack memory known readable (pages), around the
                                            last walk's start */
    unsigned mapped_gen;                 /* the code_generation in which they were checked */
#ifdef RPI_STACK_NO_MAP_HOOKS
    uintptr_t own_lo, own_hi;            /* the thread's own stack (own_hi rounded up to a
                                            page); both 0 until own_known, and when it has
                                            none that can be known */
    int own_known;                       /* own_lo and own_hi were looked up */
    int foreign;                         /* this walk started off the thread's own stack or
                                            climbed above its top: it is neither re-read nor
                                            taken over */
#endif
    struct walk_mem *mem;                /* the walk buffers and slots (NULL until the
                                            thread's first walk) */
    int mem_rounds;                      /* the key destructor's calls at the thread's exit */
    int mem_gone;                        /* the thread is exiting and gave them back */
#if MEMO_SLOTS
    int slot_keeps, slot_hits;           /* walks kept and found in the current window */
    int slot_wait;                       /* captures to let pass before looking again */
    unsigned char slot_victim[MEMO_SLOTS / MEMO_WAYS];   /* the way a set replaces next
                                                            (in turn) */
#endif
} walk_state;

/* A thread's big buffers (some 33 KiB), apart from walk_state: static TLS
   is carved out of every thread's stack (glibc refuses a stack smaller
   than it needs, and takes it from the size a program asks for), so the
   interposer's thread-locals stay a few KiB and these come from mmap at a
   thread's first walk. A thread gives them back when it exits (a key's
   destructor), for the next thread to take: blocks are never unmapped,
   each is in use by one thread at most, and every block ever made stays on
   one list (pushed, never removed: no ABA). */
#define SIDE_GUARD 4096u
#define SIDE_BYTES (60u * 1024u)
typedef struct walk_mem {
#ifndef RPI_STACK_HEAP_STATE
    /* the stack the general unwinder runs on (stack.c, general_walk): the
       thread's own may be a small signal stack or a thread's small stack,
       and libunwind needs some 5 KiB (its cursor, context and the lazy
       binding of its first calls); a guard page below it */
    unsigned char side_guard[SIDE_GUARD];
    unsigned char side[SIDE_BYTES];
#endif
    walk_buf buf[2];
#if MEMO_SLOTS
    memo_slot slot[MEMO_SLOTS];
#endif
    struct walk_mem *link;               /* the block made before this one */
    atomic_int in_use;
} walk_mem;

static walk_mem *mem_take(walk_state *m);

/* The thread's walk buffers, taken at its first capture: 0 when none can
   be had. */
static inline __attribute__((always_inline)) int mem_attach(walk_state *m)
{
    walk_mem *mem = mem_take(m);
    if (!mem)
        return 0;
    m->mem = mem;
    m->last = &mem->buf[0];
    m->next = &mem->buf[1];
    return 1;
}

#ifdef RPI_STACK_HEAP_STATE
#define THREAD_WALK() ((walk_state *)heap_block(HEAP_WALK, sizeof(walk_state)))   /* or NULL */
static walk_mem *mem_take(walk_state *m)
{
    (void)m;
    return heap_block(HEAP_MEM, sizeof(walk_mem));      /* freed with the thread's blocks */
}
static void mem_key_init(void) {}
void *rpi_unwind_side_stack(void) { return NULL; }
#else
static __thread walk_state tls_walk RPI_STACK_TLS;
#define THREAD_WALK() (&tls_walk)

static _Atomic(walk_mem *) mem_list;
static pthread_key_t mem_key;
static int mem_key_ok;

/* The exiting thread's block back to the list, at glibc's last round of
   key destructors (set again until then: the program's own destructors,
   which run after this one, may allocate); captures after that record
   one frame (mem_gone). Under ThreadSanitizer the last round is the
   runtime's: its key, made before any of the program's and so called
   first in each round, ends the thread's state in that round, and
   instrumented code the thread runs after it (this function's atomic
   store) crashes the runtime. There the block goes back a round earlier. */
#if defined(__SANITIZE_THREAD__)
#define MEM_ROUNDS (PTHREAD_DESTRUCTOR_ITERATIONS - 1)
#else
#define MEM_ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS
#endif
static void mem_give_back(void *p)
{
    walk_state *m = THREAD_WALK();
    if (++m->mem_rounds < MEM_ROUNDS && pthread_setspecific(mem_key, p) == 0)
        return;
    /* a handler that allocates meanwhile walks with the buffers while they
       are still attached, or finds them gone and records one frame */
    m->mem_gone = 1;
    m->valid = 0;
    m->id = 0;
    m->splice_wait = 0;
#if MEMO_SLOTS
    m->slot_wait = 0;
#endif
    atomic_signal_fence(memory_order_seq_cst);
    m->last = m->next = NULL;
    m->mem = NULL;
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&((walk_mem *)p)->in_use, 0, memory_order_release);
}

static void mem_key_init(void)
{
    mem_key_ok = pthread_key_create(&mem_key, mem_give_back) == 0;
}

#ifdef RPI_HAVE_MEMCHECK_H
/* Under memcheck: a block with MEM_APART bytes of unmapped address space
   reserved on either side (PROT_NONE, no memory), in place of p. valgrind
   takes a move of rsp by less than --max-stackframe (2 MiB by default)
   for frames pushed or popped, and memcheck marks the bytes between the
   two stack pointers: a side stack mapped near an alternate signal stack,
   a coroutine's or a thread's stack (all mappings too) made the move back
   from it mark what lies between unaddressable (the walk buffers above
   the side stack, a program's data) or undefined (the caller's frames).
   A move of more than --max-stackframe is a switch of stacks, which
   changes nothing. p itself is unmapped, or kept when no such room can be
   had. Once a block, and under memcheck alone (under callgrind the
   blocks lie where they lie natively): natively, only the client
   requests' instructions. */
#define MEM_APART ((size_t)4 << 20)
static __attribute__((noinline, cold)) void *mem_apart(void *p)
{
    size_t size = (sizeof(walk_mem) + 4095) & ~(size_t)4095;
    unsigned char *r = mmap(NULL, size + 2 * MEM_APART, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return p;
    void *q = mmap(r + MEM_APART, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (q == MAP_FAILED) {
        munmap(r, size + 2 * MEM_APART);
        return p;
    }
    munmap(p, sizeof(walk_mem));
    return q;
}
#endif

/* A block for this thread: one a thread gave back, else a new one; NULL
   when the thread is exiting or none can be made. */
static __attribute__((noinline, cold)) walk_mem *mem_take(walk_state *m)
{
    if (m->mem_gone || !mem_key_ok)
        return NULL;
    walk_mem *b;
    for (b = atomic_load_explicit(&mem_list, memory_order_acquire); b; b = b->link) {
        int idle = 0;
        if (!atomic_load_explicit(&b->in_use, memory_order_relaxed) &&
            atomic_compare_exchange_strong(&b->in_use, &idle, 1))
            break;
    }
    if (b) {
        /* nothing of the last owner's walks is followed */
        b->buf[0].ok = b->buf[1].ok = 0;
#if MEMO_SLOTS
        for (int i = 0; i < MEMO_SLOTS; i++)
            b->slot[i].pc = 0;
#endif
    } else {
        int saved = errno;
        void *p = mmap(NULL, sizeof(walk_mem), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
#ifdef RPI_HAVE_MEMCHECK_H
        if (p != MAP_FAILED && rpi_under_memcheck())
            p = mem_apart(p);
#endif
        if (p != MAP_FAILED)
            mprotect(p, SIDE_GUARD, PROT_NONE);
        errno = saved;
        if (p == MAP_FAILED)
            return NULL;
        b = p;
        atomic_store_explicit(&b->in_use, 1, memory_order_relaxed);
        walk_mem *head = atomic_load_explicit(&mem_list, memory_order_relaxed);
        do
            b->link = head;
        while (!atomic_compare_exchange_weak_explicit(&mem_list, &head, b, memory_order_release,
                                                      memory_order_relaxed));
    }
    if (pthread_setspecific(mem_key, b) != 0) {
        atomic_store_explicit(&b->in_use, 0, memory_order_release);
        return NULL;
    }
    return b;
}

void *rpi_unwind_side_stack(void)
{
    walk_state *m = THREAD_WALK();
    if (!m->last && !mem_attach(m))
        return NULL;
    return m->mem->side + SIDE_BYTES;
}
#endif

static inline void log_bp(walk_buf *b, int user, int saver, uintptr_t at, uintptr_t v)
{
    if (b->nbp < WALK_BP_READS) {
        b->bp_user[b->nbp] = (int16_t)user;
        b->bp_saver[b->nbp] = (int16_t)saver;
        b->bp_addr[b->nbp] = at;
        b->bp_value[b->nbp] = v;
    }
    b->nbp++;       /* past WALK_BP_READS: not a memo, not a splice source */
}

/* rbp as frame k ran: the value saved by the nearest frame below it that
   saved rbp, else the starting rbp. */
static uintptr_t rbp_in_frame(walk_state *m, walk_buf *b, int k)
{
    for (int j = k - 1; j >= 0; j--) {
        int16_t off = rule_rbp(rule_of(b->fc[j]));
        if (off) {
            uintptr_t at = b->fc[CFA_AT + j] + (uintptr_t)(intptr_t)off;
            uintptr_t v = *(const uintptr_t *)at;
            log_bp(b, k, j, at, v);
            b->nbp_walked++;
            return v;
        }
    }
    b->bp0_user = k;
    m->need_bp = 1;
    return m->bp;
}

/* The CFA of frame n - 1 (return address pc, stack pointer sp) when the
   inline probe did not give it: 0 and *cfa, 1 at the outermost frame, 2
   when pc is the 0 that ends a stack or a word that is not a return
   address (RULE_NONE; neither is a frame), -1 for the general
   unwinder. hit: the slot the inline probe found pc in (a rule that is
   not rsp-based; for pc 0, the empty slot 0), or NULL after a miss. */
static __attribute__((noinline)) int slow_step(walk_state *m, walk_buf *b, int n, uintptr_t pc,
                                               uintptr_t sp, uintptr_t *cfa, const slot *hit)
{
    if (RPI_UNLIKELY(pc == 0))
        return 2;
    int k = n - 1;
    rule r = hit ? slot_rule(hit) : rule_of(pc);
    switch (rule_kind(r)) {
    case RULE_RSP:
        *cfa = sp + (uintptr_t)(intptr_t)r.fast;
        return 0;
    case RULE_RBP: {
        uintptr_t c = rbp_in_frame(m, b, k) + (uintptr_t)(intptr_t)rule_cfa(r);
        if (c - sp - 1 >= (uintptr_t)RPI_FRAME_MAX)
            return -1;  /* not a plausible frame (cfa <= sp, or too far): let libunwind decide */
        *cfa = c;
        return 0;
    }
    case RULE_END:
        return 1;
    case RULE_NONE:
        return 2;   /* not a frame: unstored, as a 0 is */
    default:
        return -1;
    }
}

/* The words the last walk read, read again in its order: all unchanged?
   (frame[ncfa] is the 0 a walk ended at, or the last frame; two words a
   round by an index counting up to 0, an odd one first) */
static inline int same_reads(const walk_buf *b)
{
    const uintptr_t *end = b->fc + CFA_AT + b->ncfa;
    intptr_t i = -(intptr_t)b->ncfa;
    if (i & 1) {
        if (*(const uintptr_t *)(end[i] - 8) != RA_READ_AT(end + i))
            return 0;
        i++;
    }
    for (; i; i += 2) {
        if (*(const uintptr_t *)(end[i] - 8) != RA_READ_AT(end + i))
            return 0;
        if (*(const uintptr_t *)(end[i + 1] - 8) != RA_READ_AT(end + i + 1))
            return 0;
    }
    for (int i = 0; i < b->nbp; i++)
        if (*(const uintptr_t *)b->bp_addr[i] != b->bp_value[i])
            return 0;
    return 1;
}

#if MEMO_SLOTS
static inline size_t set_of(uintptr_t pc, uintptr_t sp)
{
    return ((pc + sp) * HOME_MUL >> 20) & (MEMO_SLOTS / MEMO_WAYS - 1);
}

/* The walk just made (buffer b, from the frame at sp whose return address
   is pc, kept frames from the first on: stack id), kept in its slot when
   it fits (1). */
static inline int slot_keep(walk_state *m, const walk_buf *b, uintptr_t pc, uintptr_t sp,
                            uintptr_t bp, int depth, uint32_t id)
{
    int ncfa = b->ncfa, nbp = b->nbp;
    if (ncfa > MEMO_CFAS || nbp > MEMO_BP)
        return 0;
    size_t set = set_of(pc, sp);
    unsigned v = m->slot_victim[set];
    memo_slot *e = &m->mem->slot[set * MEMO_WAYS + v];
    m->slot_victim[set] = (unsigned char)((v + 1) & (MEMO_WAYS - 1));
    int zero_end = ncfa == b->n;
    e->pc = pc;
    e->sp = sp;
    e->bp = bp;
    e->id = id;
    e->tag = SLOT_TAG(b->generation, depth);
    e->shape.nra = (uint8_t)(ncfa - zero_end);
    e->shape.zero_end = (uint8_t)zero_end;
    e->shape.need_bp = (uint8_t)m->need_bp;
    e->shape.nbp = (uint8_t)nbp;
    for (int i = 0; i < nbp; i++) {
        e->bp_addr[i] = b->bp_addr[i];
        e->bp_value[i] = b->bp_value[i];
    }
    memcpy(e->cfa, b->fc + CFA_AT, (size_t)ncfa * sizeof(uintptr_t));
    return 1;
}

/* The words slot e's walk read, read again in its order: all unchanged?
   (the return address at CFA k against frame k + 1 of its stack; four a
   round, counting an index up to 0, the odd one and pair first) */
static inline int slot_same(const memo_slot *e)
{
    intptr_t nra = e->shape.nra, i = -nra;
    const uintptr_t *f = rpi_stack_frames_of(e->id) + 1 + nra;
    const uintptr_t *c = e->cfa + nra;
    if (i & 1) {
        if (*(const uintptr_t *)(c[i] - 8) != f[i])
            return 0;
        i++;
    }
    if (i & 2) {
        if (*(const uintptr_t *)(c[i] - 8) != f[i])
            return 0;
        if (*(const uintptr_t *)(c[i + 1] - 8) != f[i + 1])
            return 0;
        i += 2;
    }
    for (; i; i += 4) {
        if (*(const uintptr_t *)(c[i] - 8) != f[i])
            return 0;
        if (*(const uintptr_t *)(c[i + 1] - 8) != f[i + 1])
            return 0;
        if (*(const uintptr_t *)(c[i + 2] - 8) != f[i + 2])
            return 0;
        if (*(const uintptr_t *)(c[i + 3] - 8) != f[i + 3])
            return 0;
    }
    if (e->shape.zero_end && *(const uintptr_t *)(*c - 8) != 0)
        return 0;
    for (int k = 0; k < e->shape.nbp; k++)
        if (*(const uintptr_t *)e->bp_addr[k] != e->bp_value[k])
            return 0;
    return 1;
}
#endif

/* Whether every page of [lo, hi) (page-aligned) can be read. The kernel
   reads the sigset for rt_sigprocmask before it looks at `how`: with an
   invalid `how` the call fails with EFAULT on a word it cannot read
   (unmapped, or a PROT_NONE guard page, which mincore would call mapped)
   and with EINVAL otherwise, and changes nothing either way. One word a
   page: protection is per page. Under valgrind's memcheck the probe's
   system call would be an error of its own (the word may be uninitialised
   stack), so there memcheck is asked instead: its view of a page that is
   unmapped or PROT_NONE is "unaddressable" too, and the V-bits request
   says so without reporting anything (3); other valgrind tools do not
   check system calls' memory, and answer the request with 0. */
#define RPI_PAGE ((uintptr_t)4096)
static int pages_readable(uintptr_t lo, uintptr_t hi)
{
    int saved = errno, ok = 1;
    for (; ok && lo < hi; lo += RPI_PAGE) {
#ifdef RPI_HAVE_MEMCHECK_H
        if (RUNNING_ON_VALGRIND) {
            unsigned char vbits;
            unsigned r = (unsigned)VALGRIND_GET_VBITS((void *)lo, &vbits, 1);
            if (r == 1 || r == 3) {   /* memcheck answered */
                ok = r == 1;
                /* memcheck calls a page addressable that was mapped
                   readable and later made PROT_NONE (it does not follow
                   mprotect); valgrind's own rt_sigprocmask fails with
                   EFAULT on it (it checks its map of the address space,
                   which does, before it looks at `how`), and the error
                   memcheck would report on the word is not reported */
                if (ok) {
                    VALGRIND_DISABLE_ERROR_REPORTING;
                    ok = !(syscall(SYS_rt_sigprocmask, -1, (void *)lo, NULL, (size_t)8) != 0 &&
                           errno == EFAULT);
                    VALGRIND_ENABLE_ERROR_REPORTING;
                }
                continue;
            }
        }
#endif
        ok = !(syscall(SYS_rt_sigprocmask, -1, (void *)lo, NULL, (size_t)8) != 0 && errno == EFAULT);
    }
    errno = saved;
    return ok;
}

/* The walk reads the stack only inside [mapped_lo, mapped_hi), pages it
   checked can be read: a frame whose CFA lies above them (unwind tables
   that do not describe how the code moved rsp, such as inline assembly
   that calls a function on a stack of its own, put it past the end of
   that stack) is checked here first. 1: [.., cfa) can be read; 0: it
   cannot, and the walk ends at this frame. Out of line: a walk pays one
   compare a frame. */
static __attribute__((noinline, cold)) int stack_mapped_to(walk_state *m, uintptr_t cfa)
{
    uintptr_t end = (cfa + RPI_PAGE - 1) & ~(RPI_PAGE - 1);
    if (end <= m->mapped_hi)
        return 1;
#ifdef RPI_STACK_NO_MAP_HOOKS
    m->foreign = 1;     /* a page outside the thread's own stack: checked for this walk only */
#endif
    if (!pages_readable(m->mapped_hi, end))
        return 0;
    m->mapped_hi = end;
    return 1;
}

/* The pages known readable for a walk starting at sp: the page of sp is
   (the capture read the word below it); the range the last walks checked
   is kept while the walks start inside it, or below it on pages that can
   be read down to sp, and while nothing may have been unmapped since it
   was checked: the generation of the walk, which the interposer advances
   at every munmap, mremap, mprotect without read access and fixed mmap
   (csrc/preload/maps.c) and at glibc's free and realloc of a block glibc
   mapped on its own (hooks.c). A page checked once may be gone later (the
   stack of a coroutine unmapped, made PROT_NONE, or replaced by a smaller
   mapping), and a walk that starts where an earlier one did can follow
   the same unwind tables past the end of the stack it is on (inline
   assembly that runs a function on a stack of its own) into it. Of the
   ways to notice that, the generation costs the walk nothing a frame and
   one compare a walk (it loads the generation anyway), and it also voids
   the memo, the kept walks and the splices, which re-read words earlier
   walks read with no page check at all; re-checking pages at every walk
   would cost a system call a page, and tying the range to sp's mapping
   would keep it across an unmapping above. After an unmapping each thread
   checks its pages again as its walks climb (a system call a page, once).
   The copies built without those hooks (libringpool's, the Python
   extension's: RPI_STACK_NO_MAP_HOOKS) keep no pages from one walk to the
   next: see below. */
#ifdef RPI_STACK_NO_MAP_HOOKS
/* Without hooks on munmap and the like, no page found readable by one walk
   may be trusted by the next, except on the thread's own stack: from a
   stack pointer on it up to its top everything stays mapped while the
   thread lives (those are its callers' frames; the kernel never shrinks
   the main thread's stack, and a thread's stack is freed after it ends).
   So a walk that starts there trusts [its page, the top) and checks
   nothing unless a frame's CFA lies above the top; one that starts
   elsewhere (a stack of the program's own, a coroutine's, a signal
   stack) checks every page it climbs to, each walk anew (a system call a
   page). Such a walk, and one that climbs above the top (`foreign`),
   records the pages it found readable (read_lo, read_hi), and no later
   walk re-reads its words before it checks those pages again: the memo (a
   capture from the same place) checks them first, a walk from a page of
   that range checks them at its start and may then splice, and the kept
   walks by place, which check nothing, never keep it. Those checks are
   one system call a page, at most RECHECK_MAX of them, where walking
   again would cost the same system calls and the whole walk (coroutines
   allocating from the same places: benches/c/coro.c). A foreign walk
   takes over nothing of a walk on the own stack (whose words lie on the
   thread's stack, but not necessarily on pages this walk checked). A
   walk on the thread's own stack costs no more than it did: a compare at
   its start, and no page check at all. The bounds are looked up at a
   thread's first walk outside them (once: a thread whose stack cannot be
   known checks every walk), without allocating (own_stack_find). */
#define RECHECK_MAX (16 * RPI_PAGE)   /* pages re-checked ahead of a walk, at most */

extern void *__libc_stack_end;        /* glibc (ld.so): the main thread's first frame */

/* The mapping of /proc/self/maps that holds addr ([*lo, *hi)) and the end
   of the one before it (*below, 0 when none), read with system calls into
   a buffer on this stack: 1 when found. No malloc, no stdio: a thread's
   first walk may run in a signal handler that interrupted malloc with its
   lock held (glibc's pthread_getattr_np allocates: the main thread's
   /proc/self/maps through stdio, every thread's cpuset and attribute
   extension with malloc and calloc). */
static int maps_find(uintptr_t addr, uintptr_t *lo, uintptr_t *hi, uintptr_t *below)
{
    /* open(2) with O_RDONLY | O_CLOEXEC (x86-64's values: <fcntl.h> would
       declare splice(2), a name this file uses) */
    int fd = (int)syscall(SYS_open, "/proc/self/maps", 0, 02000000);
    if (fd < 0)
        return 0;
    char buf[512];
    uintptr_t v[2] = {0, 0}, before = 0;
    int field = 0, digits = 0, found = 0;   /* field 0: start, 1: end, 2: the rest */
    ssize_t n;
    while (!found && (n = (ssize_t)syscall(SYS_read, fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            char c = buf[i];
            if (field < 2) {
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d >= 0 && digits < 16) {
                    v[field] = v[field] << 4 | (uintptr_t)d;
                    digits++;
                    continue;
                }
                if (field == 0 && c == '-' && digits) {
                    field = 1;
                    digits = 0;
                    continue;
                }
                if (field == 0 || !digits)
                    v[0] = v[1] = 0;    /* not a range: never matches */
                field = 2;
            }
            if (c != '\n') {
                /* the rest of the line: its permissions, file and path */
                const char *nl = memchr(buf + i, '\n', (size_t)(n - i));
                if (!nl)
                    break;
                i = nl - buf;
            }
            if (v[0] <= addr && addr < v[1]) {
                *lo = v[0];
                *hi = v[1];
                *below = before;
                found = 1;
                break;
            }
            if (v[1])
                before = v[1];
            v[0] = v[1] = 0;
            field = digits = 0;
        }
    }
    (void)syscall(SYS_close, fd);
    return found;
}

/* This thread's stack, without allocating (see maps_find). The main
   thread's as glibc's pthread_getattr_np computes it: the top is the page
   above __libc_stack_end, the size RLIMIT_STACK less what lies above the
   top in the stack's mapping, cut down to the end of the mapping below.
   Another thread's stack block is one mapping whose top holds the
   thread's descriptor (pthread_self(), for glibc's stacks and for stacks
   the program gave pthread_create alike; the guard page below is a
   mapping of its own): [start of that mapping, the descriptor's page
   end). A stack glibc did not set up this way is not found (its walks
   check every page) or taken smaller than it is; one the program gave in
   memory of a larger mapping (an array, a heap block) starts with that
   mapping. The same bounds as pthread_getattr_np's otherwise (the main
   thread, glibc's thread stacks with or without a guard page). */
static __attribute__((noinline, cold)) void own_stack_find(walk_state *m)
{
    int saved = errno;
    uintptr_t lo, hi, below;
    m->own_known = 1;
    if ((pid_t)syscall(SYS_gettid) == (pid_t)syscall(SYS_getpid)) {
        uintptr_t end = (uintptr_t)__libc_stack_end;
        struct rlimit rl;
        if (end && end <= UINTPTR_MAX - 2 * RPI_PAGE && maps_find(end, &lo, &hi, &below) &&
            getrlimit(RLIMIT_STACK, &rl) == 0) {
            uintptr_t top = (end & ~(RPI_PAGE - 1)) + RPI_PAGE;
            uintptr_t size = top - below;
            if (rl.rlim_cur != RLIM_INFINITY && hi >= top && rl.rlim_cur > hi - top &&
                ((rl.rlim_cur - (hi - top)) & ~(RPI_PAGE - 1)) < size)
                size = (rl.rlim_cur - (hi - top)) & ~(RPI_PAGE - 1);
            if (top > below && size) {
                m->own_lo = top - size;
                m->own_hi = top;
            }
        }
    } else {
        uintptr_t self = (uintptr_t)pthread_self();
        if (self && self <= UINTPTR_MAX - RPI_PAGE && maps_find(self, &lo, &hi, &below)) {
            m->own_lo = lo;
            m->own_hi = (self + RPI_PAGE) & ~(RPI_PAGE - 1);
        }
    }
    errno = saved;
}

/* The pages a walk recorded readable above `page` (the start of its range,
   or a page inside it), [page + RPI_PAGE, read_hi), checked again: 1 when
   they are at most RECHECK_MAX and all can still be read. The memo's
   check (LAST_PAGES_STILL) and a walk's start (stack_mapped_from). */
static inline __attribute__((always_inline)) int recorded_pages_still(const walk_buf *o, uintptr_t page)
{
    return o->read_hi - page <= RECHECK_MAX && pages_readable(page + RPI_PAGE, o->read_hi);
}

static inline void stack_mapped_from(walk_state *m, uintptr_t sp, unsigned generation)
{
    (void)generation;
    uintptr_t page = (sp - 8) & ~(RPI_PAGE - 1);
    m->mapped_lo = page;
    if (RPI_LIKELY(sp - 8 - m->own_lo < m->own_hi - m->own_lo)) {
        m->mapped_hi = m->own_hi;
        m->foreign = 0;
        return;
    }
    if (!m->own_known) {
        own_stack_find(m);
        if (sp - 8 - m->own_lo < m->own_hi - m->own_lo) {
            m->mapped_hi = m->own_hi;
            m->foreign = 0;
            return;
        }
    }
    m->mapped_hi = page + RPI_PAGE;
    m->foreign = 1;
    /* a walk from a page the previous walk (off the own stack too) found
       readable: the pages it found above, checked again now (in the rare
       case this walk climbs less far, it pays for pages it does not read),
       so that it may take over that walk's frames (splice) */
    const walk_buf *o = m->last;
    if (o->ok && o->read_lo <= page && o->read_hi > page + RPI_PAGE && recorded_pages_still(o, page))
        m->mapped_hi = o->read_hi;
}

/* The last walk, when it read pages off the thread's own stack, may be
   re-read (the memo: a capture from the same place) only after its pages
   above its start's are checked readable again, for this capture; and it
   gives no id to the captures that trust one without looking (the kept
   walks by place). On the own stack, or in the builds with the hooks,
   nothing is checked. */
#define LAST_TRUSTED(m) (!(m)->last->read_hi)
#define LAST_PAGES_STILL(m) (!(m)->last->read_hi || recorded_pages_still((m)->last, (m)->last->read_lo))
#else
#define LAST_TRUSTED(m) 1
#define LAST_PAGES_STILL(m) 1
static inline void stack_mapped_from(walk_state *m, uintptr_t sp, unsigned generation)
{
    uintptr_t page = (sp - 8) & ~(RPI_PAGE - 1);
    if (RPI_LIKELY(page >= m->mapped_lo && page < m->mapped_hi && m->mapped_gen == generation))
        return;
    if (m->mapped_gen != generation) {
        m->mapped_gen = generation;
        m->mapped_lo = m->mapped_hi = 0;
    }
    /* (the pages above sp's own: the probe reads a page's first word,
       which on sp's page lies below sp) */
    if (page < m->mapped_lo && m->mapped_lo - page <= 16 * RPI_PAGE &&
        pages_readable(page + RPI_PAGE, m->mapped_lo)) {
        m->mapped_lo = page;
        return;
    }
    m->mapped_lo = page;
    m->mapped_hi = page + RPI_PAGE;
}
#endif

/* One frame: frame[n - 1] = pc has been stored; its CFA from the cached
   rule (inline: one probe, one test), then the caller's return address.
   Leaves the loop for `ended_at_rule` at the outermost frame and for
   `zero_stored` when pc is the 0 that ends a stack (stored as frame n - 1:
   the loop does not test for it; the probe sends it to slow_step), returns
   -1 when the general unwinder must take over. */
#define WALK_STEP(ended_at_rule, zero_stored)                                                                \
    do {                                                                              \
        size_t i_ = ((uint64_t)pc * HOME_MUL >> (24 - 4)) & mask16;                   \
        const slot *e_ = (const slot *)(const void *)(s_bytes + i_);                  \
        uintptr_t k_ = atomic_load_explicit(&e_->pc, memory_order_acquire);           \
        if (RPI_UNLIKELY(k_ != pc)) {                                                 \
            /* linear probing: a displaced rule is most often next door */            \
            e_ = (const slot *)(const void *)(s_bytes + ((i_ + sizeof(slot)) & mask16)); \
            k_ = atomic_load_explicit(&e_->pc, memory_order_acquire);                 \
        }                                                                             \
        uintptr_t cfa_;                                                               \
        int32_t off_;                                                                 \
        int hit_ = k_ == pc;                                                          \
        if (RPI_LIKELY(hit_ && (off_ = atomic_load_explicit(&e_->fast, memory_order_relaxed)) > 0)) { \
            cfa_ = sp + (uintptr_t)(intptr_t)off_;                                    \
        } else if (hit_ && off_ == FAST_END) {                                        \
            goto ended_at_rule;                                                       \
        } else {                                                                      \
            int r_ = slow_step(m, b, (int)(f - frame), pc, sp, &cfa_, hit_ ? e_ : NULL); \
            if (r_ < 0)                                                               \
                goto failed;                                                          \
            if (r_ > 0) {                                                             \
                if (r_ > 1)                                                           \
                    goto zero_stored;                                                 \
                goto ended_at_rule;                                                   \
            }                                                                         \
            const cache *c_ = atomic_load_explicit(&rules, memory_order_acquire);     \
            s_bytes = (const char *)c_->s;                                            \
            mask16 = c_->mask << 4;                                                   \
        }                                                                             \
        if (RPI_UNLIKELY(cfa_ > mapped_hi)) {                                         \
            if (!stack_mapped_to(m, cfa_))                                            \
                goto ended_at_rule;                                                   \
            mapped_hi = m->mapped_hi;                                                 \
        }                                                                             \
        f[CFA_AT - 1] = cfa_;                                                         \
        pc = *(const uintptr_t *)(cfa_ - 8);                                          \
        sp = cfa_;                                                                    \
    } while (0)

/* A walk's state, handed to splice() and back. */
typedef struct walk_pos {
    uintptr_t pc, sp;
    uint64_t h;
    int n;
    const uintptr_t *op;        /* the previous walk's first CFA at or above sp worth matching */
} walk_pos;

enum { SPLICE_NEXT, SPLICE_STEP, SPLICE_LIMIT, SPLICE_END, SPLICE_ZERO };

/* Frame p->n - 1 has CFA p->sp == *p->op, the previous walk's CFA of its
   frame j, and p->pc, the return address read there, is the previous
   walk's frame j + 1: the previous walk's frames from j + 1 on are taken
   over (old frame k becomes frame k + d), each after the word it read is
   read again, as many as the limit allows. Every word is read in the
   order the walk itself would read it, and only after the words before it
   matched, so nothing is read that the walk would not read. What next: */
static inline __attribute__((always_inline)) int splice_body(walk_buf *b, const walk_buf *o, int limit,
                                                             walk_pos *p)
{
    uintptr_t *frame = b->fc, *cfas = b->fc + CFA_AT;
    const uintptr_t *ocfa = o->fc + CFA_AT;
    const int j = (int)(p->op - ocfa), o_last = o->n - 1, o_nbp = o->nbp;
    int n = p->n;
    const int d = n - 1 - j;
    if (o->bp0_user > j) {
        /* a frame above used the rbp the previous walk started with */
        p->op = ocfa + o->bp0_user;
        return SPLICE_NEXT;
    }
    uint64_t h = p->h;
    uintptr_t pc = p->pc;
    int k = j + 1, bi = 0, how;
    while (bi < o_nbp && o->bp_user[bi] <= j)
        bi++;
    frame[n++] = pc;
    h = rpi_stack_hash_step(h, pc);
    /* old frame k becomes frame k + d: the new CFAs and frames are the old
       arrays' at a fixed distance; the limit is reached at old frame kmax */
    uintptr_t *ncfa = cfas + d;
    const int kmax = limit - 1 - d;
    for (;;) {
        /* frames k + 1 .. stop: up to the previous walk's last frame,
           this walk's limit, the next frame whose CFA needs a saved rbp */
        int stop = bi < o_nbp ? o->bp_user[bi] : o_last;
        if (stop > kmax)
            stop = kmax;
        /* CFAs k .. stop - 1, two a round (one odd one first), by an index i
           counting up to 0 from both arrays' ends at stop (one register, no
           compare of its own: the add sets the flags); x is left at the CFA
           whose word differs, or at stop */
        const uintptr_t *oend = ocfa + stop;
        uintptr_t *nend = ncfa + stop;
        intptr_t i = (intptr_t)k - stop;
        int x;
#define TAKE_OVER(at, differs)                                                        \
        do {                                                                          \
            uintptr_t cfa_ = oend[at];                                                \
            nend[at] = cfa_;                                                          \
            pc = *(const uintptr_t *)(cfa_ - 8);                                      \
            if (pc != RA_READ_AT(oend + (at)))                                        \
                differs;                                                              \
            RA_READ_AT(nend + (at)) = pc;                                             \
            h = rpi_stack_hash_step(h, pc);                                           \
        } while (0)
        if (i & 1) {
            TAKE_OVER(i, goto differs_at_i);
            i++;
        }
        for (; i; i += 2) {
            TAKE_OVER(i, goto differs_at_i);
            TAKE_OVER(i + 1, { i++; goto differs_at_i; });
        }
#undef TAKE_OVER
    differs_at_i:
        x = stop + (int)i;
        n += x - k;
        k = x;
        if (x < stop) {
            /* a different caller: walk on from it */
            p->sp = ocfa[x];
            p->op = ocfa + x + 1;
            how = pc == 0 ? SPLICE_ZERO : SPLICE_NEXT;
            break;
        }
        /* the CFA of frame k - 1 (p->sp) is set where the splice stops */
        if (n == limit) {
            p->sp = ocfa[k - 1];
            how = SPLICE_LIMIT;
            break;
        }
        if (bi < o_nbp && o->bp_user[bi] == k) {
            /* frame k's CFA used rbp as saved by frame `saver`: the same
               slot (at or above the splice point, where frame j + 1 found
               it) holding the same value */
            int saver = o->bp_saver[bi];
            uintptr_t at = o->bp_addr[bi];
            if (saver < j ||
                (saver == j && at != ocfa[j] + (uintptr_t)(intptr_t)rule_rbp(rule_of(frame[j + d]))) ||
                *(const uintptr_t *)at != o->bp_value[bi]) {
                p->sp = ocfa[k - 1];
                p->op = ocfa + k;
                how = SPLICE_STEP;
                break;
            }
            log_bp(b, k + d, saver + d, at, o->bp_value[bi]);
            bi++;
            if (k < o_last)
                continue;
        }
        /* k is the previous walk's last frame */
        p->op = ocfa + o->ncfa;     /* the end mark */
        if (o->ncfa > o_last) {
            /* it ended reading a 0 return address */
            uintptr_t cfa = ocfa[k];
            cfas[n - 1] = cfa;
            p->sp = cfa;
            pc = *(const uintptr_t *)(cfa - 8);
            how = pc == 0 ? SPLICE_ZERO : SPLICE_NEXT;
        } else {
            /* its limit (walk on) or the outermost frame */
            p->sp = ocfa[k - 1];
            how = o->cut ? SPLICE_STEP : SPLICE_END;
        }
        break;
    }
    p->pc = pc;
    p->h = h;
    p->n = n;
    return how;
}

static __attribute__((noinline)) int splice(walk_buf *b, const walk_buf *o, int limit, walk_pos *p)
{
    return splice_body(b, o, limit, p);
}

/* The walk proper, from the starting registers, with m's arguments, into
   the buffer the last walk did not use. Inlined into two callers: walk_from
   (the walk alone) and walk_id (the walk and the stack's id); splice_inline
   (a constant) inlines the splice too, which walk_id does (cc1: 17 million
   instructions fewer, 0.23%; sqlite3's walks, which rarely splice, 1.9
   million more, 0.26%). */
static inline __attribute__((always_inline)) int walk_body(walk_state *m, rpi_walk *w, uintptr_t pc,
                                                           uintptr_t sp, uintptr_t bp,
                                                           unsigned generation, int splice_inline)
{
    /* m->id and m->valid are set at the end, or cleared where the walk
       fails (until then nothing reads them: the thread is busy) */
    uintptr_t from = m->from, skip_lo = m->lo, skip_hi = m->hi;
    int depth = m->depth;
    if (!splice_inline && (depth < 1 || depth > RPI_STACK_MAX_DEPTH))
        goto failed;    /* walk_id checked it */
    const cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    if (!c)
        goto failed;
    if (RPI_UNLIKELY(!m->last) && !mem_attach(m))
        goto failed;
    walk_buf *b = m->next;
    walk_buf *o = m->last;
    b->generation = generation;
    b->nbp = 0;
    b->nbp_walked = 0;
    b->bp0_user = -1;
    m->pc = pc;
    m->sp = sp;
    m->bp = bp;
    m->need_bp = 0;
    stack_mapped_from(m, sp, generation);
    uintptr_t mapped_hi = m->mapped_hi;
    _Static_assert(sizeof(slot) == 16, "slot index scaled by 16");
    const char *s_bytes = (const char *)c->s;
    size_t mask16 = c->mask << 4;
    uintptr_t *frame = b->fc;           /* CFAs at frame + CFA_AT */
    uintptr_t *f = frame;               /* frame[n]: the next frame */
    int n, start = -1, cut = 0, ncfa;
    /* the frames above the first one kept: the capture's and the hooks' */
    for (;;) {
        if (from ? pc == from : (pc < skip_lo || pc >= skip_hi)) {
            start = (int)(f - frame);
            break;
        }
        if (f == frame + RPI_STACK_SKIP_WINDOW) {
            if (!from)
                start = RPI_STACK_SKIP_WINDOW;
            break;
        }
        *f++ = pc;
        WALK_STEP(early_at_rule, early_zero_stored);
    }
    /* The frames kept, hashed as they are read; without a start, as many
       as the caller may want for its own choice. The previous walk's CFAs
       (increasing, then an end mark) are followed alongside: op points at
       the first at or above sp, or past the ones where splicing failed. */
    const uintptr_t *ocfa = o->fc + CFA_AT;
    int merge = !m->splice_wait;
    const uintptr_t *op = &no_cfa;
    if (!merge)
        m->splice_wait--;
#ifdef RPI_STACK_NO_MAP_HOOKS
    else if (o->ok && o->generation == generation && o->ncfa &&
             (o->read_hi ? o->read_hi <= m->mapped_hi : !m->foreign)) {
#else
    else if (o->ok && o->generation == generation && o->ncfa) {
#endif
        o->fc[CFA_AT + o->ncfa] = UINTPTR_MAX;     /* the end mark */
        op = ocfa;
    }
    int first_kept = (int)(f - frame), spliced = 0, splices = 0;
    uint64_t h = RPI_STACK_HASH_SEED;
    int limit = start >= 0 ? start + depth : RPI_STACK_SKIP_WINDOW + depth;
    const uintptr_t *flimit = frame + limit;
    if (op == &no_cfa)
        goto plain;
    for (;;) {
        *f++ = pc;
        h = rpi_stack_hash_step(h, pc);
        if (f == flimit)
            goto ended_at_limit;
    step:
        WALK_STEP(ended, zero_stored);
        if (RPI_LIKELY(sp < *op))
            continue;
        while (*op < sp)
            op++;
        if (*op == sp && pc && RA_READ_AT(op) == pc) {
            walk_pos p = {pc, sp, h, (int)(f - frame), op};
            int how = splice_inline ? splice_body(b, o, limit, &p) : splice(b, o, limit, &p);
            spliced += p.n - (int)(f - frame);
            splices++;
            pc = p.pc;
            sp = p.sp;
            h = p.h;
            f = frame + p.n;
            op = p.op;
            switch (how) {
            case SPLICE_NEXT: continue;
            case SPLICE_STEP: goto step;
            case SPLICE_LIMIT: goto ended_at_limit;
            case SPLICE_END: goto ended;
            default: goto ended_at_zero;
            }
        }
    }
plain:
    /* the same without splicing: nothing to follow */
    for (;;) {
        *f++ = pc;
        h = rpi_stack_hash_step(h, pc);
        if (f == flimit)
            goto ended_at_limit;
        WALK_STEP(ended, zero_stored);
    }
ended_at_limit:
    if (RPI_UNLIKELY(f[-1] == 0))
        goto zero_stored;
    cut = 1;
ended:
    n = (int)(f - frame);
    ncfa = n - 1;
    goto kept;
zero_stored:
    /* the 0 read last is not a frame: unstored, and out of the hash */
    f--;
    h *= RPI_STACK_HASH_MUL_INVERSE;   /* the step of the 0 undone */
ended_at_zero:
    n = (int)(f - frame);
    ncfa = n;
    frame[n] = 0;
kept:
    if (merge && !(++m->splice_tick & (SPLICE_EVERY - 1))) {
        int bp_taken = b->nbp - b->nbp_walked;     /* saved rbp reads taken over */
        m->splice_gain = (m->splice_gain + SPLICE_SAVES * spliced + SPLICE_SAVES_BP * bp_taken -
                          SPLICE_MERGE * (n - first_kept - spliced) - SPLICE_CALL * splices) / 2;
        if (m->splice_gain < 0)
            m->splice_wait = SPLICE_SAMPLE - 1;
    }
    m->start = start;
    m->kept = start >= 0 ? n - start : 0;
    m->hash = rpi_stack_hash_final(h, (size_t)m->kept);
    goto done;
early_at_rule:
    n = (int)(f - frame);
    ncfa = n - 1;
    goto early;
early_zero_stored:
    f--;
    n = (int)(f - frame);
    ncfa = n;
    frame[n] = 0;
early:
    /* the walk ended among the skipped frames: nothing kept */
    m->start = from ? -1 : n;
    m->kept = 0;
    m->hash = 0;
done:
    b->n = n;
    b->ncfa = ncfa;
    b->cut = cut;
#ifdef RPI_STACK_NO_MAP_HOOKS
    b->ok = b->nbp <= WALK_BP_READS;
    b->read_lo = m->foreign ? m->mapped_lo : 0;
    b->read_hi = m->foreign ? m->mapped_hi : 0;
#else
    b->ok = b->nbp <= WALK_BP_READS;
#endif
    m->next = m->last;
    m->last = b;
    m->valid = b->ok;
    w->frames = frame;
    w->n = n;
    w->start = m->start;
    w->kept = m->kept;
    w->hash = m->hash;
    return 0;
failed:
    m->id = 0;
    m->valid = 0;
    return -1;
}

static __attribute__((noinline)) int walk_from(walk_state *m, rpi_walk *w, uintptr_t pc,
                                               uintptr_t sp, uintptr_t bp, unsigned generation)
{
    m->id = 0;      /* the caller keeps its own id (rpi_unwind_keep_id) */
    return walk_body(m, w, pc, sp, bp, generation, 0);
}

/* rpi_stack_here's walk and the id of the stack it found, in one frame:
   the walk from the frame whose stack pointer (after its return) is sp,
   with rbp bp, interned when it reached `from`; anything else is
   stack.c's (rpi_stack_walk_here when the cached walker is off or the
   arguments are out of its range, rpi_stack_walk_rest after a walk that
   did not end at a kept frame). Entered with rpi_stack_busy set; clears
   it. (rpi_stack_capture's memo, tls_last_id in stack.c, needs no reset
   here: it is used only when this thread's last walk had its arguments,
   and a walk made here has from != 0, which it never has.) */
static __attribute__((noinline)) uint32_t walk_id(int depth, uintptr_t from, uintptr_t sp,
                                                  uintptr_t bp)
{
    if (RPI_UNLIKELY(!rpi_stack_fast_ready || !sp || depth < 1 || depth > RPI_STACK_MAX_DEPTH))
        return rpi_stack_walk_here(depth, from, sp, bp);
    walk_state *m = THREAD_WALK();
    if (RPI_UNLIKELY(!m))
        return rpi_stack_walk_here(depth, from, sp, bp);
    unsigned generation = atomic_load_explicit(&code_generation, memory_order_acquire);
    m->from = from;
    m->lo = 0;
    m->hi = 0;
    m->depth = depth;
    rpi_walk w;
#if MEMO_SLOTS
    int keep = m->splice_wait && !m->slot_wait;
#endif
    int r = walk_body(m, &w, ((const uintptr_t *)sp)[-1], sp, bp, generation, 1);
    if (RPI_LIKELY(r == 0 && w.start >= 0)) {
        uint32_t id = rpi_stack_intern_hashed(w.frames + w.start, (size_t)w.kept, w.hash);
        m->id = m->valid && LAST_TRUSTED(m) ? id : 0;
#if MEMO_SLOTS
        /* the walk's arguments and registers read back from m (as the walk
           stored them), not kept live across it */
        if (keep && m->id && w.start == 0 &&
            slot_keep(m, m->last, m->pc, m->sp, m->bp, m->depth, id) &&
            ++m->slot_keeps >= SLOT_WINDOW) {
            if (m->slot_hits * SLOT_KEEPS_PER_HIT < m->slot_keeps)
                m->slot_wait = SLOT_PAUSE;
            m->slot_keeps = 0;
            m->slot_hits = 0;
        }
#endif
        rpi_stack_busy = 0;
        return id;
    }
    return rpi_stack_walk_rest(r, r == 0 ? w.frames : NULL, r == 0 ? w.n : 0, m->depth, m->from);
}

/* Frame pointer kept so that this function's own frame is known: the walk
   starts at its caller with rsp = our CFA, rbp = the saved rbp. The memo's
   test runs here, with the walk out of line, so that a repeated stack
   costs no more than the test. */
__attribute__((noinline, optimize("no-omit-frame-pointer")))
int rpi_unwind_fast(rpi_walk *w, uintptr_t from, uintptr_t skip_lo, uintptr_t skip_hi, int depth,
                    int reuse)
{
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t pc = fp[1], sp = (uintptr_t)(fp + 2), bp = fp[0];
    walk_state *m = THREAD_WALK();
    if (RPI_UNLIKELY(!m))
        return -1;
    unsigned generation = atomic_load_explicit(&code_generation, memory_order_acquire);
    if (reuse && m->valid && m->pc == pc && m->sp == sp && m->from == from &&
        m->last->generation == generation && (!m->need_bp || m->bp == bp) &&
        m->lo == skip_lo && m->hi == skip_hi && m->depth == depth && LAST_PAGES_STILL(m) &&
        same_reads(m->last))
        return 1;
    m->from = from;
    m->lo = skip_lo;
    m->hi = skip_hi;
    m->depth = depth;
    return walk_from(m, w, pc, sp, bp, generation);
}

int rpi_unwind_from(rpi_walk *w, uintptr_t sp, uintptr_t bp, uintptr_t from, int depth)
{
    walk_state *m = THREAD_WALK();
    if (RPI_UNLIKELY(!m))
        return -1;
    unsigned generation = atomic_load_explicit(&code_generation, memory_order_acquire);
    m->from = from;
    m->lo = 0;
    m->hi = 0;
    m->depth = depth;
    return walk_from(m, w, ((const uintptr_t *)sp)[-1], sp, bp, generation);
}

void rpi_unwind_keep_id(uint32_t id)
{
    walk_state *m = THREAD_WALK();
    if (m)
        m->id = m->valid && LAST_TRUSTED(m) ? id : 0;
}

void rpi_unwind_forget_walks(void)
{
    atomic_fetch_add_explicit(&code_generation, 1, memory_order_release);
}

void rpi_unwind_forget_memory(uintptr_t lo, uintptr_t hi)
{
    atomic_fetch_add_explicit(&code_generation, 1, memory_order_release);
    if (lo >= hi || !outside_in(lo, hi))
        return;
    /* a rule cached for an address in [lo, hi) (outside every module when
       it was computed) goes; so may one being written right now, and one
       whose probe from its home passed a slot emptied here is computed and
       cached again */
    cache *c = atomic_load_explicit(&rules, memory_order_acquire);
    if (!c)
        return;
    for (size_t i = 0; i <= c->mask; i++) {
        uintptr_t k = atomic_load_explicit(&c->s[i].pc, memory_order_relaxed);
        if (k > 1 && k - 1 >= lo && k - 1 < hi && atomic_compare_exchange_strong(&c->s[i].pc, &k, 0))
            atomic_fetch_sub_explicit(&c->used, 1, memory_order_relaxed);
    }
}

#if MEMO_SLOTS
/* The id of the walk kept for this start (pc, sp; bp when that walk used
   it) with these arguments (tag) in one of its set's ways, when every word
   it read is unchanged; else 0. */
static inline __attribute__((always_inline)) uint32_t slot_find(walk_state *m, uint64_t tag, uintptr_t pc,
                                                    uintptr_t sp, uintptr_t bp)
{
    size_t set = set_of(pc, sp);
    const memo_slot *e = &m->mem->slot[set * MEMO_WAYS];
    for (unsigned w = 0; w < MEMO_WAYS; w++, e++) {
        if (e->sp == sp && e->pc == pc && e->tag == tag && (!e->shape.need_bp || e->bp == bp) &&
            slot_same(e)) {
            m->slot_hits++;
            return e->id;
        }
    }
    return 0;
}

/* The last walk did not start here, or its words changed: the slots'
   answer, else a walk (used as SLOT_WINDOW says). The start, depth and
   code generation are compared as three words (sqlite3's inserts, depth
   64 by callgrind: 7.3 million instructions fewer than five fields, cc1
   6.8 million fewer; keeping a pointer to the stack's frames in the slot
   as well saved sqlite3 2 million more but cost cc1 9.5 million; the look
   as a function of its own saved nothing, and called from the capture
   itself cost cc1 5.6 million). */
static __attribute__((noinline)) uint32_t slot_or_walk(walk_state *m, int depth, uintptr_t from,
                                                       uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    uint32_t id = from == pc ? slot_find(m, SLOT_TAG(atomic_load_explicit(&code_generation,
                                                                          memory_order_acquire),
                                                     depth), pc, sp, bp) : 0;
    if (id) {
        atomic_signal_fence(memory_order_seq_cst);
        rpi_stack_busy = 0;
        return id;
    }
    return walk_id(depth, from, sp, bp);
}
#endif

/* The memo's check with the id kept, for a walk that would start at pc
   with the given sp and bp (the caller's registers after its call
   returns): the id of a repeated stack, else the walk. Marks the thread
   busy for the walk (rpi_stack_walk_here clears it). */
static inline __attribute__((always_inline)) uint32_t memo_or_walk(int depth, uintptr_t from,
                                                                   uintptr_t pc, uintptr_t sp,
                                                                   uintptr_t bp)
{
    if (rpi_stack_busy)
        return 0;
    rpi_stack_busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    walk_state *m = THREAD_WALK();
    uint32_t id = m ? m->id : 0;
    if (id && m->sp == sp && m->pc == pc && m->from == from && m->depth == depth &&
        !m->lo && !m->hi &&
        m->last->generation == atomic_load_explicit(&code_generation, memory_order_acquire) &&
        (!m->need_bp || m->bp == bp) && same_reads(m->last)) {
        atomic_signal_fence(memory_order_seq_cst);
        rpi_stack_busy = 0;
        return id;
    }
#if MEMO_SLOTS
    if (m->splice_wait) {
        if (RPI_LIKELY(!m->slot_wait))
            return slot_or_walk(m, depth, from, pc, sp, bp);
        m->slot_wait--;
    }
#endif
    return walk_id(depth, from, sp, bp);
}

/* The memo's check with the id kept: a repeated stack costs the check and
   a return. The walk, on a miss, starts at this function's caller (pc, sp,
   bp as after the call returns), so its registers are known here from the
   frame pointer and passed on. */
__attribute__((noinline, optimize("no-omit-frame-pointer")))
uint32_t rpi_stack_here(int depth, uintptr_t from)
{
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t sp = (uintptr_t)(fp + 2), bp = fp[0];
    return memo_or_walk(depth, from, fp[1], sp, bp);
}

/* The same check and walk, started at the frame of `from` itself: sp is
   where the stack pointer is once `from`'s call has returned, bp rbp's
   value there (the caller's frame pointer knows both). The frames of the
   capture and of the hooks above `from` are neither walked nor checked.
   When the word below sp is not `from` (the hook was called, not jumped
   to; `from` is not the return address there), the capture walks from
   here as rpi_stack_here does. */
uint32_t rpi_stack_here_at(int depth, uintptr_t from, uintptr_t sp, uintptr_t bp)
{
    if (RPI_UNLIKELY(((const uintptr_t *)sp)[-1] != from))
        return rpi_stack_here(depth, from);
    return memo_or_walk(depth, from, from, sp, bp);
}

#else /* not x86-64 Linux: always the general unwinder */

int rpi_unwind_from(rpi_walk *w, uintptr_t sp, uintptr_t bp, uintptr_t from, int depth)
{
    (void)w;
    (void)sp;
    (void)bp;
    (void)from;
    (void)depth;
    return -1;
}
void rpi_unwind_keep_id(uint32_t id) { (void)id; }
void rpi_unwind_forget_walks(void) {}
void rpi_unwind_forget_memory(uintptr_t lo, uintptr_t hi)
{
    (void)lo;
    (void)hi;
}
uint32_t rpi_stack_here(int depth, uintptr_t from)
{
    if (rpi_stack_busy)
        return 0;
    rpi_stack_busy = 1;
    return rpi_stack_walk_here(depth, from, 0, 0);
}
uint32_t rpi_stack_here_at(int depth, uintptr_t from, uintptr_t sp, uintptr_t bp)
{
    (void)sp;
    (void)bp;
    return rpi_stack_here(depth, from);
}

int rpi_unwind_init(void) { return 0; }
void rpi_unwind_forget_code(void) {}
int rpi_unwind_function_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi)
{
    (void)pc;
    (void)lo;
    (void)hi;
    return -1;
}
int rpi_unwind_fast(rpi_walk *w, uintptr_t from, uintptr_t skip_lo, uintptr_t skip_hi, int depth,
                    int reuse)
{
    (void)w;
    (void)from;
    (void)skip_lo;
    (void)skip_hi;
    (void)depth;
    (void)reuse;
    return -1;
}

#endif
