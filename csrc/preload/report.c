/*
 * report.c -- the "ringpool-preload" JSON report (docs/preload.md).
 *
 * Written with open/write/rename from a static buffer: no malloc, no stdio,
 * none of the table locks. Counters are read with atomic loads; a report
 * taken while other threads allocate (a signal report, or exit() with
 * threads still running) can be off by the operations in flight. Module
 * map from dl_iterate_phdr: each site's return address becomes module path +
 * offset from the module's load bias, the address addr2line expects.
 */
#include "rpp.h"
#include "../outfile.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void rpp_say(const char *a, const char *b, const char *c)
{
    char line[1024];    /* one buffer: this may run on a signal handler's stack */
    size_t n = 0;
    const char *parts[] = {"ringpool-preload: ", a, b, c, "\n"};
    for (size_t i = 0; i < 5; i++) {
        if (i == 2 && n < sizeof line) {
            /* b is what varies (a path, a variable's value): written as the CLI names it */
            n += strlen(rpi_outfile_printable(line + n, sizeof line - n, b));
            continue;
        }
        for (const char *p = parts[i]; *p && n < sizeof line; p++)
            line[n++] = *p;
    }
    rpi_sigguard g;     /* stderr may be a pipe without a reader, or a file past RLIMIT_FSIZE */
    rpi_sigguard_begin(&g);
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
    rpi_sigguard_end(&g);
}

/* ------------------------------------------------------------ output */
typedef struct out {
    int fd;
    int failed;
    int err;            /* errno of the failed write */
    size_t len;
    char buf[1 << 16];
} out;

static out o;

static void flush(out *w)
{
    if (w->len && !w->failed && (w->err = rpi_outfile_write(w->fd, w->buf, w->len)) != 0)
        w->failed = 1;
    w->len = 0;
}

static void put(out *w, const char *s, size_t n)
{
    while (n) {
        if (w->len == sizeof w->buf)
            flush(w);
        size_t room = sizeof w->buf - w->len;
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
    }
}

static void puts_(out *w, const char *s) { put(w, s, strlen(s)); }

/* v in decimal at the end of buf (DECIMAL_MAX bytes, no NUL): the index
   of its first digit. */
#define DECIMAL_MAX 24
static size_t decimal(char *buf, uint64_t v)
{
    size_t i = DECIMAL_MAX;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return i;
}

static void put_u64(out *w, uint64_t v)
{
    char tmp[DECIMAL_MAX];
    size_t i = decimal(tmp, v);
    put(w, tmp + i, sizeof tmp - i);
}

static void put_i64(out *w, int64_t v)
{
    if (v < 0) {
        put(w, "-", 1);
        put_u64(w, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(w, (uint64_t)v);
    }
}

/* A non-negative estimate, with three decimals (negatives from rounding
   drift are written as 0). */
static void put_est(out *w, double v)
{
    if (!(v > 0.0))
        v = 0.0;
    if (v >= 1.8e19)
        v = 1.8e19;
    uint64_t whole = (uint64_t)v;
    uint64_t milli = (uint64_t)((v - (double)whole) * 1000.0 + 0.5);
    if (milli >= 1000) {
        whole++;
        milli -= 1000;
    }
    put_u64(w, whole);
    char frac[4] = {'.', (char)('0' + milli / 100), (char)('0' + milli / 10 % 10),
                    (char)('0' + milli % 10)};
    put(w, frac, 4);
}

/* A rate in (0, 1] as d.ddddddddde-N (JSON; no stdio here). */
static void put_rate(out *w, double v)
{
    int e = 0;
    while (v < 1.0 && e > -300) {
        v *= 10.0;
        e--;
    }
    uint64_t m = (uint64_t)(v * 1e9 + 0.5);   /* 10 significant digits */
    if (m >= UINT64_C(10000000000)) {
        m /= 10;
        e++;
    }
    char d[12];
    d[0] = (char)('0' + m / UINT64_C(1000000000));
    d[1] = '.';
    uint64_t rest = m % UINT64_C(1000000000);
    for (int i = 10; i >= 2; i--) {
        d[i] = (char)('0' + rest % 10);
        rest /= 10;
    }
    put(w, d, 11);
    puts_(w, "e");
    if (e < 0) {
        puts_(w, "-");
        put_u64(w, (uint64_t)-e);
    } else {
        put_u64(w, (uint64_t)e);
    }
}

static uint64_t round_est(double v) { return v > 0.0 ? (uint64_t)(v + 0.5) : 0; }

/* A site's counters; in sampling mode the exact fields carry the rounded
   estimates (so every reader sees a count) and *sc the estimates. */
static void read_site(uint32_t i, rpp_site_counts *c, rpp_sample_counts *sc)
{
    rpp_site_read(i, c);
    if (!rpp_sampling)
        return;
    rpp_sample_read(i, sc);
    c->blocks = (int64_t)round_est(sc->est_blocks);
    c->bytes = (int64_t)round_est(sc->est_bytes);
    c->allocs = round_est(sc->est_allocs);
    c->alloc_bytes = round_est(sc->est_alloc_bytes);
    if (sc->sampled_blocks == 0) {      /* nothing sampled outstanding */
        c->blocks = 0;
        c->bytes = 0;
    }
}

static void put_hex(out *w, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    put(w, tmp + i, sizeof tmp - i);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

static void put_str(out *w, const char *s)
{
    put(w, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(w, e, 2);
            p++;
        } else if (*p < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[*p >> 4],
                         "0123456789abcdef"[*p & 15]};
            put(w, e, 6);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n) {
                put(w, (const char *)p, n);
                p += n;
            } else {
                puts_(w, "\\ufffd");
                p++;
            }
        }
    }
    put(w, "\"", 1);
}

static void put_key(out *w, const char *k)
{
    put_str(w, k);
    put(w, ": ", 2);
}

/* ISO-8601 UTC from the epoch without gmtime (which may read tz files). */
static void put_time(out *w, time_t t)
{
    int64_t secs = (int64_t)t, days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    /* civil-from-days, proleptic Gregorian */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    char b[21];
    int64_t f[6] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60};
    const char *sep = "--T::Z";
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        int width = i == 0 ? 4 : 2;
        for (int k = width - 1; k >= 0; k--) {
            int64_t v = f[i];
            for (int j = 0; j < k; j++)
                v /= 10;
            b[n++] = (char)('0' + v % 10);
        }
        b[n++] = sep[i];
    }
    put(w, "\"", 1);
    put(w, b, n);
    put(w, "\"", 1);
}

/* ----------------------------------------------------------- modules */
#define MAX_MODULES 2048
typedef struct module {
    const char *path;
    rpi_module obj;          /* load bias, address range, build id */
    int unloaded;            /* a dlclose'd module (modules.c) */
} module;

static module mods[MAX_MODULES];
static size_t nmods, nlive;
static char exe_path[4096];
/* the absolute paths of objects loaded by a relative name (rpi_module_path);
   past this room such a name is written as it is */
static char abs_paths[1 << 15];
static size_t abs_used;

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (nmods == MAX_MODULES)
        return 1;
    module *m = &mods[nmods];
    memset(m, 0, sizeof *m);
    m->path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : exe_path;
    if (m->path != exe_path && m->path[0] != '/' && sizeof abs_paths - abs_used > 1) {
        const char *p = rpi_module_path(info, 0, abs_paths + abs_used, sizeof abs_paths - abs_used);
        if (p && p != m->path) {
            m->path = p;
            abs_used += strlen(p) + 1;
        }
    }
    rpi_module_describe(info, &m->obj);
    if (m->obj.lo < m->obj.hi && m->path[0])   /* skip the vDSO-like entries without a file */
        nmods++;
    return 0;
}

/* Appends the dlclose'd modules after the live ones. */
static void add_unloaded(void)
{
    nlive = nmods;
    uint32_t n = rpp_unloaded_count();
    for (uint32_t i = 0; i < n && nmods < MAX_MODULES; i++) {
        const rpp_unloaded *r = rpp_unloaded_get(i);
        module *m = &mods[nmods++];
        m->path = r->path;
        m->obj = r->obj;
        m->unloaded = 1;
    }
}

/* The module that held pc when a site of generation gen was recorded: the
   unloaded module that covered pc and was unloaded first at or after gen,
   else a module mapped now. NULL: none (or an unloaded one past the list). */
static const module *module_of(uintptr_t pc, uint32_t gen)
{
    uint32_t n = rpp_unloaded_count();
    uint32_t best = n;
    for (uint32_t i = 0; i < n; i++) {
        const rpp_unloaded *r = rpp_unloaded_get(i);
        if (r->gen_end >= gen && pc >= r->obj.lo && pc < r->obj.hi &&
            (best == n || r->gen_end < rpp_unloaded_get(best)->gen_end))
            best = i;
    }
    if (best < n)
        return nlive + best < nmods ? &mods[nlive + best] : NULL;
    for (size_t i = 0; i < nlive; i++)
        if (pc >= mods[i].obj.lo && pc < mods[i].obj.hi)
            return &mods[i];
    return NULL;
}

static uint32_t gen_of(uintptr_t key) { return (uint32_t)((key & RPP_GEN_MASK) >> RPP_GEN_SHIFT); }

/* dladdr's name for return address pc, cached (direct-mapped, per report;
   the names belong to loaded objects, which stay while the report is
   written). */
#define SYMBOL_CACHE 4096
static struct { uintptr_t pc; const char *name; } symbol_cache[SYMBOL_CACHE];

static const char *symbol_of(uintptr_t pc)
{
    size_t slot = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 52) & (SYMBOL_CACHE - 1);
    if (symbol_cache[slot].pc == pc)
        return symbol_cache[slot].name;
    Dl_info info;
    const char *name = dladdr((void *)(pc - 1), &info) ? info.dli_sname : NULL;
    symbol_cache[slot].pc = pc;
    symbol_cache[slot].name = name;
    return name;
}

/* ------------------------------------------------------------ stacks
 * "stack_depth", then "stacks": the frames of each written site, leaf first,
 * as indexes into "frames": each distinct return address once, as [module
 * index, "0xoffset"] (-1 and the absolute address when no module holds it).
 * Scratch memory comes from mmap, so this may run in a signal handler. */
static void *map_scratch(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

typedef struct frame_slot {
    uintptr_t pc;      /* 0 = empty */
    size_t index;
} frame_slot;

static void put_stacks(out *w, const uintptr_t *keys, size_t nkeys)
{
    puts_(w, ",\n  \"stack_depth\": ");
    put_u64(w, (uint64_t)rpp_stack_depth);
    size_t total = 0;
    for (size_t k = 0; k < nkeys; k++) {
        const uintptr_t *f;
        uintptr_t one;
        total += rpp_site_frames(keys[k] & ~RPP_GEN_MASK, &f, &one);
    }
    size_t cap = 16;
    while (cap < 2 * total)
        cap *= 2;
    size_t map_bytes = cap * sizeof(frame_slot), order_bytes = total * sizeof(uintptr_t) + 1;
    frame_slot *map = map_scratch(map_bytes);
    uintptr_t *order = map_scratch(order_bytes);
    size_t nframes = 0;
    puts_(w, ",\n  \"stacks\": [");
    for (size_t k = 0; k < nkeys && map && order; k++) {
        const uintptr_t *f;
        uintptr_t one;
        size_t n = rpp_site_frames(keys[k] & ~RPP_GEN_MASK, &f, &one);
        uintptr_t gen = keys[k] & RPP_GEN_MASK;
        puts_(w, k ? ",\n    [" : "\n    [");
        for (size_t i = 0; i < n; i++) {
            /* a frame is an address in a generation; 0 marks an empty slot */
            uintptr_t pc = (f[i] | gen) ? (f[i] | gen) : 1;
            size_t j = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
            while (map[j].pc && map[j].pc != pc)
                j = (j + 1) & (cap - 1);
            if (!map[j].pc) {
                map[j].pc = pc;
                map[j].index = nframes;
                order[nframes++] = f[i] | gen;
            }
            if (i)
                put(w, ",", 1);
            put_u64(w, map[j].index);
        }
        put(w, "]", 1);
    }
    puts_(w, nkeys && map && order ? "\n  ],\n  \"frames\": [" : "],\n  \"frames\": [");
    for (size_t i = 0; i < nframes; i++) {
        uintptr_t pc = order[i] & ~RPP_GEN_MASK;
        const module *m = module_of(pc, gen_of(order[i]));
        puts_(w, i ? ",\n    [" : "\n    [");
        if (m)
            put_u64(w, (uint64_t)(m - mods));
        else
            puts_(w, "-1");
        puts_(w, ", \"");
        put_hex(w, m ? pc - m->obj.base : pc);
        puts_(w, "\"]");
    }
    puts_(w, nframes ? "\n  ]" : "]");
    if (map)
        munmap(map, map_bytes);
    if (order)
        munmap(order, order_bytes);
}

/* ------------------------------------------------------------ report */
int rpp_expand_pattern(const char *pattern, const char *reason, char *outp, size_t cap)
{
    size_t n = 0;
    char digits[DECIMAL_MAX];
    size_t at = decimal(digits, (unsigned long)getpid());
    const char *pid = digits + at;
    size_t pl = sizeof digits - at;
    for (const char *c = pattern; *c; c++) {
        const char *s = c;
        size_t len = 1;
        if (*c == '%' && c[1]) {
            c++;
            if (*c == 'p') { s = pid; len = pl; }
            else if (*c == 'r') { s = reason; len = strlen(reason); }
            else { s = c; len = 1; }
        }
        if (n + len + 1 > cap)
            return -1;
        memcpy(outp + n, s, len);
        n += len;
    }
    outp[n] = '\0';
    return 0;
}

static _Atomic int writing;

/* ------------------------------------------------------ report files
 * Where the report goes, and how: the one rule of csrc/outfile.h, which the
 * library's reports and the Python hooks' follow too. A refusal is one line
 * naming the path and saying why. */
static void say_not_written(const char *path, const char *why)
{
    char tail[600];
    rpi_outfile_say(tail, sizeof tail, 0, ": ", why, NULL);
    rpp_say("cannot write report to ", path, tail);
}

/* A fixed report name (no %p) in a process that is not its owner (a fork or
   an exec'd child): PATH becomes PATH with ".PID" before the extension, and
   one line says where the report went, so no process's report replaces
   another's silently. */
static void name_for_this_process(char *path, size_t cap)
{
    long self = (long)getpid();
    if (!rpp_cfg.fixed_name || self == rpp_cfg.owner_pid || rpi_outfile_is_stream(path))
        return;
    size_t pl = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t at = dot && dot != base ? (size_t)(dot - path) : pl;
    char pid[DECIMAL_MAX];
    size_t il = decimal(pid, (unsigned long)self);
    size_t add = 1 + sizeof pid - il;
    if (pl + add + 1 > cap)
        return;
    memmove(path + at + add, path + at, pl - at + 1);
    path[at] = '.';
    memcpy(path + at + 1, pid + il, sizeof pid - il);
    rpp_say("RINGPOOL_PRELOAD_REPORT has no %p and this process did not start the run: its report is ",
            path, "");
}

int rpp_write_report(const char *reason)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&writing, &expected, 1))
        return -1;
    static char path[4096], tmp[4200];
    int rc = -1;
    memset(symbol_cache, 0, sizeof symbol_cache);   /* modules may have changed */
    if (rpp_expand_pattern(rpp_cfg.report_pattern, reason, path, sizeof path) != 0) {
        rpp_say("report path too long: ", rpp_cfg.report_pattern, "");
        goto done;
    }
    name_for_this_process(path, sizeof path);
    static rpi_outfile dest;
    static char why[512];
    if (rpi_outfile_open(&dest, path, tmp, sizeof tmp, why, sizeof why) != 0) {
        say_not_written(path, why);
        goto done;
    }
    o.fd = dest.fd;
    o.failed = 0;
    o.err = 0;
    o.len = 0;

    ssize_t el = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[el > 0 ? el : 0] = '\0';
    nmods = 0;
    abs_used = 0;
    dl_iterate_phdr(add_module, NULL);
    add_unloaded();

    out *w = &o;
    puts_(w, "{\n  \"format\": \"ringpool-preload\",\n  \"version\": 1,\n  \"pid\": ");
    put_u64(w, (uint64_t)getpid());
    puts_(w, ",\n  ");
    put_key(w, "exe");
    put_str(w, exe_path);
    puts_(w, ",\n  ");
    put_key(w, "taken_at");
    put_time(w, time(NULL));
    puts_(w, ",\n  ");
    put_key(w, "reason");
    put_str(w, reason);
    if (rpp_sampling) {
        /* the rate, then its inverse (pprof's period) */
        puts_(w, ",\n  \"sample_rate\": ");
        put_rate(w, rpp_sample_rate);
        puts_(w, ",\n  \"sample_period\": ");
        put_est(w, 1.0 / rpp_sample_rate);
    }

    rpp_outstanding_begin();        /* the table's entries per site */
    uint32_t ns = rpp_site_count();
    int64_t blocks = 0, bytes = 0;
    uint64_t allocs = 0, live_sites = 0;
    for (uint32_t i = 0; i < ns; i++) {
        rpp_site_counts c;
        rpp_sample_counts sc;
        read_site(i, &c, &sc);
        blocks += c.blocks;
        bytes += c.bytes;
        allocs += c.allocs;
        live_sites += c.blocks != 0;
    }
    puts_(w, ",\n  \"totals\": {\"blocks\": ");
    put_i64(w, blocks);
    puts_(w, ", \"bytes\": ");
    put_i64(w, bytes);
    puts_(w, ", \"allocs\": ");
    put_u64(w, allocs);
    puts_(w, ", \"sites\": ");
    put_u64(w, ns - 1);
    puts_(w, ", \"sites_outstanding\": ");
    put_u64(w, live_sites);
    puts_(w, ", \"untracked_frees\": ");
    put_u64(w, atomic_load(&rpp_stat.untracked_frees));
    puts_(w, ", \"dropped\": ");
    put_u64(w, atomic_load(&rpp_stat.dropped));
    puts_(w, ", \"bootstrap_bytes\": ");
    put_u64(w, atomic_load(&rpp_stat.bootstrap_bytes));
    puts_(w, "},\n  \"modules\": [");
    for (size_t i = 0; i < nmods; i++) {
        puts_(w, i ? ",\n    {" : "\n    {");
        put_key(w, "path");
        put_str(w, mods[i].path);
        puts_(w, ", \"base\": \"");
        put_hex(w, mods[i].obj.base);
        puts_(w, "\"");
        char hex[2 * sizeof mods[i].obj.build_id + 1];
        size_t nhex = rpi_module_build_id_hex(&mods[i].obj, hex);
        if (nhex) {
            puts_(w, ", \"build_id\": \"");
            put(w, hex, nhex);
            puts_(w, "\"");
        }
        if (mods[i].unloaded)
            puts_(w, ", \"unloaded\": true");
        puts_(w, "}");
    }
    puts_(w, nmods ? "\n  ],\n  \"sites\": [" : "],\n  \"sites\": [");
    int first = 1;
    /* the keys of the sites written, in order: site k has stack k */
    size_t keys_bytes = (size_t)ns * sizeof(uintptr_t) + 1;
    uintptr_t *keys = map_scratch(keys_bytes);
    size_t nkeys = 0;
    for (uint32_t i = 0; i < ns; i++) {
        rpp_site_counts c;
        rpp_sample_counts sc;
        read_site(i, &c, &sc);
        int64_t b = c.blocks;
        uint64_t a = c.allocs;
        if (rpp_sampling && sc.est_allocs > 0.0 && a == 0)
            a = 1;                  /* an estimate below one allocation: keep the site */
        if (a == 0 || (b == 0 && !rpp_cfg.all_sites))
            continue;
        uintptr_t key = c.pc, one;
        const uintptr_t *frames;
        rpp_site_frames(key & ~RPP_GEN_MASK, &frames, &one);
        c.pc = frames[0];           /* a whole stack's site is its first frame */
        const module *m = i ? module_of(c.pc, gen_of(key)) : NULL;
        puts_(w, first ? "\n    {" : ",\n    {");
        first = 0;
        put_key(w, "module");
        put_str(w, i == 0 ? "(overflow)" : m ? m->path : "?");
        puts_(w, ", \"offset\": \"");
        put_hex(w, i == 0 ? 0 : m ? c.pc - m->obj.base : c.pc);
        puts_(w, "\", \"blocks\": ");
        put_i64(w, b);
        puts_(w, ", \"bytes\": ");
        put_i64(w, c.bytes);
        puts_(w, ", \"allocs\": ");
        put_u64(w, a);
        puts_(w, ", \"alloc_bytes\": ");
        put_u64(w, c.alloc_bytes);
        if (rpp_sampling) {
            puts_(w, ", \"sampled_blocks\": ");
            put_i64(w, sc.sampled_blocks);
            puts_(w, ", \"samples\": ");
            put_i64(w, sc.samples);
            puts_(w, ", \"est_blocks\": ");
            put_est(w, sc.est_blocks);
            puts_(w, ", \"est_bytes\": ");
            put_est(w, sc.est_bytes);
            puts_(w, ", \"est_allocs\": ");
            put_est(w, sc.est_allocs);
            puts_(w, ", \"est_alloc_bytes\": ");
            put_est(w, sc.est_alloc_bytes);
        }
        if (keys) {
            puts_(w, ", \"stack\": ");
            put_u64(w, nkeys);
            keys[nkeys++] = key;
        }
        /* nearest dynamic symbol: a name even where no debug info exists.
           dladdr scans the module's symbols (tens of thousands in a program
           linked with -rdynamic, such as cc1), and whole stacks give many
           sites one first frame: the answer is kept per return address. */
        const char *sname = NULL;
        if (i && m && !m->unloaded)
            sname = symbol_of(c.pc);
        if (sname) {
            puts_(w, ", \"symbol\": ");
            put_str(w, sname);
        }
        puts_(w, "}");
    }
    puts_(w, first ? "]" : "\n  ]");
    if (keys) {
        put_stacks(w, keys, nkeys);
        munmap(keys, keys_bytes);
    }
    puts_(w, "\n}\n");
    flush(w);
    if (o.failed) {
        /* the line once the report's descriptor is closed and its signals taken */
        rpi_outfile_finish(&dest, path, 0, why, sizeof why);
        rpi_outfile_say(why, sizeof why, 0, "write failed: ", rpi_outfile_strerror(o.err), NULL);
        say_not_written(path, why);
        goto done;
    }
    if (rpi_outfile_finish(&dest, path, 1, why, sizeof why) != 0) {
        say_not_written(path, why);
        goto done;
    }
    rc = 0;
done:
    rpp_outstanding_end();
    atomic_store(&writing, 0);
    return rc;
}
