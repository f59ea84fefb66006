/* report.c -- the JSON report (docs/report-format.md), the $RINGPOOL_REPORT
   pattern, and the reports written for pools still alive at exit/unload. */
#include "internal.h"
#include "poolstack.h"
#include "outfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ output
   Reports are written with write(2) from a buffer of their own, not stdio:
   exit() flushes every stdio stream, and must never block on a report that
   another thread is writing into a stalled pipe. */
typedef struct rpi_out {
    int    fd;
    bool   failed;
    int    err;          /* errno of the failure */
    size_t len;
    char   buf[8192];
} rpi_out;

static void out_flush(rpi_out *o)
{
    if (o->len && !o->failed && (o->err = rpi_outfile_write(o->fd, o->buf, o->len)) != 0)
        o->failed = true;
    o->len = 0;
}

static void out_write(rpi_out *o, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        if (o->len == sizeof o->buf) out_flush(o);
        size_t k = sizeof o->buf - o->len < n ? sizeof o->buf - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static void out_puts(rpi_out *o, const char *s) { out_write(o, s, strlen(s)); }
static void out_putc(rpi_out *o, char c) { out_write(o, &c, 1); }

__attribute__((format(printf, 2, 3))) static void out_printf(rpi_out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) out_write(o, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not valid;
   then *bad is the length of its maximal valid prefix (at least 1), which
   is replaced by one U+FFFD, as Python's decode(errors="replace") does. */
static int utf8_seq(const unsigned char *p, int *bad)
{
    unsigned char c = p[0];
    int n;
    unsigned char lo = 0x80, hi = 0xbf;    /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;          /* no overlong forms */
        if (c == 0xed) hi = 0x9f;          /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;          /* nothing above U+10FFFF */
    } else {
        *bad = 1;                          /* 80-C1, F5-FF: never a lead byte */
        return 0;
    }
    if (p[1] < lo || p[1] > hi) { *bad = 1; return 0; }
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) { *bad = i; return 0; }
    return n;
}

/* Writes s as a JSON string: escapes, and U+FFFD for invalid UTF-8. */
static void put_str(rpi_out *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    out_putc(f, '"');
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            out_putc(f, '\\');
            out_putc(f, c);
            p++;
        } else if (c < 0x20) {
            out_printf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            out_putc(f, c);
            p++;
        } else {
            int bad = 0, n = utf8_seq(p, &bad);
            if (n) {
                out_write(f, p, (size_t)n);
                p += n;
            } else {
                out_puts(f, "\xef\xbf\xbd");
                p += bad;
            }
        }
    }
    out_putc(f, '"');
}

static void json_raw(void *ctx, const char *s, size_t n) { out_write(ctx, s, n); }
static void json_str(void *ctx, const char *s) { put_str(ctx, s); }

/* Body of one pool's report (lock held by the caller). */
/* Pool locks for a report: at exit the wait is bounded (a lock still held
   after about a second is given up and the report not written). */
static bool report_lock(rp_pool *pool, bool at_exit)
{
    /* a checked pool's lock is the registry's: the caller holds it */
    if (pool->flags & (RP_POOL_UNSYNC | RP_POOL_CHECKED)) return true;
    if (at_exit) {
        if (!rpi_lock_try_for(&pool->lock)) return false;
    } else {
        rpi_lock_acquire(&pool->lock);
    }
    if (pool->flags & RPI_POOL_BIASED) rpi_shard_exclude(pool);   /* its creator, lock-free */
    return true;
}

static void report_unlock(rp_pool *pool)
{
    if (!(pool->flags & RP_POOL_CHECKED)) rpi_pool_unlock(pool);
}

/* One entry of a report's "blocks" list: the block at payload, its size and
   tag's name; stacks (NULL for a block without a stack) adds its stack. */
static void put_block(rpi_out *f, bool first, const void *payload, size_t size,
                      const char *tag, rpi_psreport *stacks, const rpi_json_out *jo)
{
    out_printf(f, "%s\n    {\"address\": \"%p\", \"size\": %zu, \"tag\": ",
               first ? "" : ",", payload, size);
    put_str(f, tag);
    if (stacks) rpi_poolstack_report_block(stacks, payload, jo);
    out_putc(f, '}');
}

/* put_block for a block with a header. */
static void put_hdr_block(rpi_out *f, bool first, rpi_hdr *h, rpi_psreport *stacks,
                          const rpi_json_out *jo)
{
    put_block(f, first, rpi_payload(h), rpi_size(h), h->origin->name,
              h->word & RPI_F_STACK ? stacks : NULL, jo);
}

/* A pool's report up to its children: name, totals, tags, blocks, stacks. */
static void put_pool_head(rpi_out *f, rp_pool *pool, unsigned flags, const char *reason,
                          bool at_exit)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);

    out_puts(f, "\"pool\": ");
    put_str(f, pool->name);
    out_printf(f, ", \"pid\": %ld, \"taken_at\": \"%s\", \"reason\": ", (long)getpid(), when);
    put_str(f, reason);
    out_printf(f, ", \"backing\": \"%s\",\n", pool->arena ? "arena" : "malloc");
    uint64_t allocs;
    size_t blocks = rpi_pool_totals(pool, &allocs);
    rpi_fold fo = {.blocks = blocks, .bytes = rpi_pool_bytes(pool), .peak = pool->peak, .allocs = allocs};
    /* a pool with shards (shard.c): every shard's lock, the counters folded
       (at exit, a shard held for over a second leaves the shards out) */
    bool folded = pool->shards && (at_exit ? rpi_shards_lock_bounded(pool)
                                           : (rpi_shards_lock(pool), true));
    if (folded) rpi_shards_fold(pool, &fo);
    else fo.reserved = rpi_pool_reserved(pool);
    out_printf(f, "  \"totals\": {\"blocks\": %zu, \"bytes\": %zu, \"peak_bytes\": %zu, "
               "\"allocs\": %llu, \"reserved_bytes\": %zu},\n",
            fo.blocks, fo.bytes, fo.peak, (unsigned long long)fo.allocs, fo.reserved);
    out_puts(f, "  \"tags\": [");
    /* stack pools: each tag's stacks, then the stack tables (poolstack.h) */
    rpi_psreport *stacks = rpi_poolstack_report_begin(pool);
    const rpi_json_out jo = {f, json_raw, json_str};
    bool any = false;
    for (rpi_tag *t = folded ? rpi_fold_next(pool, NULL) : pool->tag_first; t;
         t = folded ? rpi_fold_next(pool, t) : t->lnext) {
        if (folded ? !t->f_allocs : !rpi_tag_listed(t)) continue;
        out_puts(f, !any ? "\n    {\"tag\": " : ",\n    {\"tag\": ");
        any = true;
        put_str(f, t->name);
        if (folded)
            out_printf(f, ", \"blocks\": %zu, \"bytes\": %zu, \"peak_bytes\": %zu, "
                       "\"allocs\": %llu", t->f_blocks, t->f_bytes, t->f_peak,
                       (unsigned long long)t->f_allocs);
        else
            out_printf(f, ", \"blocks\": %zu, \"bytes\": %zu, \"peak_bytes\": %zu, "
                       "\"allocs\": %llu", rpi_tag_blocks(t), rpi_tag_bytes(t), t->peak,
                       (unsigned long long)t->allocs);
        rpi_poolstack_report_tag(stacks, t, &jo);
        out_putc(f, '}');
    }
    out_puts(f, any ? "\n  ]" : "]");
    if (flags & RP_REPORT_BLOCKS) {
        out_puts(f, ",\n  \"blocks\": [");
        bool first = true;
        const bool checked = pool->flags & RP_POOL_CHECKED;
        for (rp_pool *p = pool; p; p = !folded ? NULL : p == pool ? pool->shards : p->shard_next)
        for (rpi_hdr *h = p->ring.next; h != &p->ring; h = h->next) {
            if (rpi_is_mark(p, h)) continue;
            put_hdr_block(f, first, h, stacks, &jo);
            first = false;
        }
        /* a checked pool's blocks (on no ring), up to one whose header
           disagrees with its record */
        bool ok;
        for (void *cur = NULL; checked;) {
            rpi_hdr *h = rpi_registry_next(pool, &cur, &ok, NULL, 0);
            if (!h || !ok) break;
            put_hdr_block(f, first, h, stacks, &jo);
            first = false;
        }
        /* compact arena blocks (unchecked pools) are found by chunk */
        for (rp_pool *p = pool; p; p = !folded ? NULL : p == pool ? pool->shards : p->shard_next) {
            if (!p->arena || !p->arena->off) continue;
            rpi_slots it = { 0 };
            for (rpi_hdr *h; (h = rpi_arena_next_live(p->arena, &it)) != NULL;) {
                put_hdr_block(f, first, h, stacks, &jo);
                first = false;
            }
            /* headerless blocks (internal.h): their size and tag in the chunk */
            rpi_hlslots hs = { 0 };
            for (void *b; (b = rpi_hl_next_live(p->arena, &hs)) != NULL;) {
                uint32_t m = *rpi_hl_meta(b);
                put_block(f, first, b, m & RPI_HL_SIZE, rpi_hl_tag(p, m)->name, NULL, &jo);
                first = false;
            }
        }
        out_puts(f, first ? "]" : "\n  ]");
    }
    if (folded) rpi_shards_unlock(pool);
    rpi_poolstack_report_end(stacks, &jo);
}

/* The "parents" of a child pool's own report, outermost first. The chain is
   walked once into an array (a chain of 10^5 pools walked from the pool again
   for each name took seconds: quadratic); without memory for one, a segment
   at a time into a buffer on the stack. */
static void put_parents(rpi_out *f, rp_pool *pool)
{
    size_t n = 0;
    for (rp_pool *p = pool->parent; p; p = p->parent) n++;
    rp_pool *small[256];
    rp_pool **buf = n <= sizeof small / sizeof *small || n > SIZE_MAX / sizeof *buf
                    ? NULL : rpi_sys_malloc(n * sizeof *buf);
    size_t cap = buf ? n : sizeof small / sizeof *small;
    if (!buf) buf = small;
    out_puts(f, ",\n  \"parents\": [");
    /* ancestors 1 (the parent) .. n (the root), written n first */
    for (size_t hi = n; hi > 0;) {
        size_t lo = hi > cap ? hi - cap + 1 : 1;
        rp_pool *p = pool;
        for (size_t k = 0; k < lo; k++) p = p->parent;
        for (size_t k = lo; k <= hi; k++, p = p->parent) buf[k - lo] = p;
        for (size_t k = hi + 1; k > lo; k--) {
            if (k - 1 != n) out_puts(f, ", ");
            put_str(f, buf[k - 1 - lo]->name);
        }
        hi = lo - 1;
    }
    if (buf != small) rpi_sys_free(buf);
    out_putc(f, ']');
}

/* A pool's report (its lock held by the caller), with its children's nested
   in it (RP_REPORT_CHILDREN), each child's lock held while its own are
   written. The tree is walked without recursion: a chain of 10^5 child pools
   took a C stack frame per level and overflowed the stack. */
static void put_pool(rpi_out *f, rp_pool *pool, unsigned flags, const char *reason, bool at_exit)
{
    put_pool_head(f, pool, flags, reason, at_exit);
    rp_pool *cur = pool;                 /* whose children are being written */
    rp_pool *c = (flags & RP_REPORT_CHILDREN) ? pool->first_child : NULL;
    if (c) out_puts(f, ",\n  \"children\": [");
    while (c) {
        out_puts(f, c == cur->first_child ? "\n  {" : ",\n  {");
        if (report_lock(c, at_exit)) {
            put_pool_head(f, c, flags, reason, at_exit);
            if (c->first_child) {        /* down: c's children, c's lock held */
                out_puts(f, ",\n  \"children\": [");
                cur = c;
                c = c->first_child;
                continue;
            }
            report_unlock(c);
        } else {
            out_puts(f, "\"pool\": ");
            put_str(f, c->name);
            out_puts(f, ", \"error\": \"busy at exit\"");
        }
        out_putc(f, '}');
        /* the next sibling (cur's lock guards the links), else up */
        while (!c->next_sibling) {
            out_puts(f, "\n  ]");
            if (cur == pool) { c = NULL; break; }
            c = cur;
            cur = cur->parent;
            report_unlock(c);
            out_putc(f, '}');
        }
        if (c) c = c->next_sibling;
    }
    /* The report of a child pool of its own (at its destroy, at exit, on request)
       names the pools it lies in, outermost first: its name alone would not tell
       a child "b" of "a" from a pool "b", nor where a pool named "a/b" is. */
    if (pool->parent) put_parents(f, pool);
}

/* ------------------------------------------------------------ files
   Where a report may go, and how: the one rule of outfile.h, which the
   interposer and the Python hooks follow too; "-" is standard output. */
typedef struct sink {
    rpi_out     o;
    rpi_outfile f;
    char        tmp[4200];
} sink;

static int sink_open(const char *path, sink *k, char *why, size_t cap)
{
    k->o.fd = -1;
    k->o.failed = false;
    k->o.len = 0;
    if (strcmp(path, "-") == 0) path = "/dev/stdout";
    int std = rpi_outfile_own_fd(path);
    /* what the program wrote to its streams goes first */
    if (std >= 0) fflush(std == 1 ? stdout : std == 2 ? stderr : NULL);
    if (rpi_outfile_open(&k->f, path, k->tmp, sizeof k->tmp, why, cap) != 0) return RP_EIO;
    k->o.fd = k->f.fd;
    return 0;
}

/* Ends the report: flush, then for a regular file the umask's mode and the
   rename; or, with abandon, drops it (nothing renamed). */
static int sink_close(const char *path, sink *k, bool abandon, char *why, size_t cap)
{
    int rc = 0;
    if (!abandon) out_flush(&k->o);
    if (!abandon && k->o.failed) {
        snprintf(why, cap, "write failed: %s", strerror(k->o.err));
        rc = RP_EIO;
    }
    char late[512];
    if (rpi_outfile_finish(&k->f, path, !abandon && rc == 0, late, sizeof late) != 0 && rc == 0 &&
        !abandon) {
        snprintf(why, cap, "%s", late);
        rc = RP_EIO;
    }
    return rc;
}

static int write_report(rp_pool *pool, const char *path, unsigned flags, const char *reason,
                        bool at_exit, char *why, size_t cap)
{
    why[0] = '\0';
    if (!pool || !path || !*path) return RP_EINVAL;
    sink k;
    int rc = sink_open(path, &k, why, cap);
    if (rc != 0) return rc;
    /* the registry first (checked pools' links are validated), then the pool */
    const bool reg = atomic_load(&rpi_checked_gate) != 0;
    bool locked = false;
    if (reg) {
        if (at_exit) locked = rpi_registry_lock_for_exit();
        else { rpi_registry_lock(); locked = true; }
    }
    if ((!reg || locked) && report_lock(pool, at_exit)) {
        out_puts(&k.o, "{\"format\": \"ringpool-snapshot\", \"version\": 1,\n  ");
        put_pool(&k.o, pool, flags, reason, at_exit);
        out_puts(&k.o, "\n}\n");
        report_unlock(pool);
    } else {
        snprintf(why, cap, "the pool stayed locked by another thread for a second at exit; "
                 "report given up");
        rc = RP_EIO;
    }
    if (locked) rpi_registry_unlock();
    int rc2 = sink_close(path, &k, rc != 0, why, cap);
    return rc ? rc : rc2;
}

int rpi_write_report(rp_pool *pool, const char *path, unsigned flags, const char *reason)
{
    char why[512];
    return write_report(pool, path, flags, reason, false, why, sizeof why);
}

int rpi_write_report_why(rp_pool *pool, const char *path, unsigned flags, char *why, size_t cap)
{
    return write_report(pool, path, flags, "request", false, why, cap);
}

static unsigned env_flags(void)
{
    const char *b = getenv("RINGPOOL_REPORT_BLOCKS");
    return b && strcmp(b, "1") == 0 ? RP_REPORT_BLOCKS : 0;
}

int rp_pool_write_report(rp_pool *pool, const char *path)
{
    return rpi_write_report(pool, path, env_flags() | RP_REPORT_CHILDREN, "request");
}

int rp_pool_write_report_ex(rp_pool *pool, const char *path, unsigned report_flags)
{
    return rpi_write_report(pool, path, report_flags, "request");
}

/* Reports this process expanded a %u for: each gets the next number. */
static atomic_ulong report_serial;

/* Expands %p, %n, %u, %% of pattern into out; any other escape is refused
   (else two pools could silently share one file). 0, or -1 with why. */
static int expand(const char *pattern, const char *name, char *out, size_t cap, char *why,
                  size_t wcap)
{
    size_t o = 0;
    char num[32];
    unsigned long serial = 0;       /* this report's %u, taken at the first */
    for (const char *p = pattern; *p; p++) {
        const char *add = NULL;
        char one[2] = {0, 0};
        if (*p == '%' && p[1] == 'p') {
            snprintf(num, sizeof num, "%ld", (long)getpid());
            add = num;
            p++;
        } else if (*p == '%' && p[1] == 'u') {
            /* one number per report of the process: pools of one name
               (%n) never write the same file */
            if (serial == 0)
                serial = atomic_fetch_add_explicit(&report_serial, 1, memory_order_relaxed) + 1;
            snprintf(num, sizeof num, "%lu", serial);
            add = num;
            p++;
        } else if (*p == '%' && p[1] == 'n') {
            for (const char *s = name; *s; s++) {
                char c = *s;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                if (o + 1 >= cap) goto too_long;
                out[o++] = ok ? c : '_';
            }
            p++;
            continue;
        } else if (*p == '%' && p[1] == '%') {
            one[0] = '%';
            add = one;
            p++;
        } else if (*p == '%') {
            if (p[1] > ' ' && p[1] < 0x7f)
                snprintf(why, wcap, "unknown %%-escape '%%%c' (use %%p for the pid, %%n for the "
                         "pool name, %%u for a number of its own, %%%% for %%)", p[1]);
            else if (p[1])      /* a control character or a byte of a multibyte one: not raw */
                snprintf(why, wcap, "unknown %%-escape: '%%' before byte 0x%02x (use %%p for the pid, "
                         "%%n for the pool name, %%u for a number of its own, %%%% for %%)",
                         (unsigned)(unsigned char)p[1]);
            else
                snprintf(why, wcap, "a lone '%%' at the end (use %%%% for a literal %%)");
            return -1;
        } else {
            one[0] = *p;
            add = one;
        }
        size_t l = strlen(add);
        if (o + l >= cap) goto too_long;
        memcpy(out + o, add, l);
        o += l;
    }
    out[o] = '\0';
    return 0;
too_long:
    snprintf(why, wcap, "expands to a path longer than %zu bytes", cap - 1);
    return -1;
}

static int report_from_env(rp_pool *pool, const char *reason, bool at_exit)
{
    const char *pattern = getenv("RINGPOOL_REPORT");
    if (!pattern || !*pattern) return 0;
    char path[4096], why[512];
    int saved = errno;
    int rc;
    rpi_sigguard g;     /* the line below: stderr may be a pipe without a reader */
    rpi_sigguard_begin(&g);
    /* the pool's name (the program's: any bytes) and the paths, as the CLI names them:
       one line, nothing that drives the terminal */
    char shown_a[600], shown_b[1200];
    if (expand(pattern, pool->name, path, sizeof path, why, sizeof why) != 0) {
        rc = RP_EINVAL;
        fprintf(stderr, "ringpool: RINGPOOL_REPORT='%s': %s\n",
                rpi_outfile_printable(shown_b, sizeof shown_b, pattern), why);
    } else if ((rc = write_report(pool, path, env_flags(), reason, at_exit, why, sizeof why)) != 0) {
        fprintf(stderr, "ringpool: could not write the report of pool '%s' to '%s': %s%s%s\n",
                rpi_outfile_printable(shown_a, sizeof shown_a, pool->name),
                rpi_outfile_printable(shown_b, sizeof shown_b, path), rp_strerror(rc),
                why[0] ? ": " : "", why);
    }
    rpi_sigguard_end(&g);
    errno = saved;
    return rc;
}

int rpi_report_from_env(rp_pool *pool, const char *reason)
{
    return report_from_env(pool, reason, false);
}

static int report_live(bool at_exit)
{
    const char *pattern = getenv("RINGPOOL_REPORT");
    if (!pattern || !*pattern) return 0;
    int n = 0;
    if (at_exit) {
        if (!rpi_live_lock_for_exit()) return 0;
    } else {
        rpi_live_lock();
    }
    for (rp_pool *p = rpi_live_head; p; p = p->live_next)
        if (report_from_env(p, "exit", at_exit) == 0) n++;
    rpi_live_unlock();
    return n;
}

int rp_report_live_pools(void)
{
    return report_live(false);
}

/* At process exit and at dlclose: report what is still alive, then release
   the checked-mode registry and the chunk cache, so an unloaded library
   leaves nothing behind. No lock is waited for without bound here: exit()
   may be called from anywhere, and the library never calls user code with
   a lock held, but another thread may hold one. */
__attribute__((destructor)) static void rpi_at_unload(void)
{
    report_live(true);
    if (rpi_registry_lock_for_exit()) {
        rpi_registry_fini();
        rpi_registry_unlock();
    }
    rpi_chunk_cache_fini();
}

/* quick_exit runs no destructor: the pools still alive are reported by an
   at_quick_exit handler registered when the library is loaded, so it runs
   after the program's own (registered later). A dlclose of the library
   drops it (glibc's __cxa_finalize frees the object's quick_exit handlers). */
static void rpi_at_quick_exit(void)
{
    report_live(true);
}

__attribute__((constructor)) static void rpi_report_init(void)
{
    (void)at_quick_exit(rpi_at_quick_exit);
}
