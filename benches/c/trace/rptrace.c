/*
 * rptrace.c -- an LD_PRELOAD library that records a program's heap calls as
 * an allocation trace (format: trace.h) for benches/c/replay.c.
 *
 *   RPTRACE_FILE=out.trace LD_PRELOAD=build/bench-c/rptrace.so program args...
 *
 * Every malloc, calloc, realloc, reallocarray, free, posix_memalign,
 * aligned_alloc, memalign and valloc is passed to glibc's own functions
 * (__libc_malloc and friends, so no dlsym is needed and nothing recurses),
 * then recorded. The file is created (O_EXCL: an existing file is never
 * written over, and a second process inheriting the variable records
 * nothing); "%p" in the name is replaced by the process id. Without
 * RPTRACE_FILE the library only passes calls through. A forked child stops
 * recording. Records go through a 1 MiB buffer written when full and when
 * the library is unloaded at exit; a call after that is written at once.
 *
 * Nothing here calls malloc: the address -> id table and the stack of free
 * ids live in anonymous mappings, and one spin lock (taken only once the
 * process has more than one thread) orders the records of all threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rawmem.h"
#include "trace.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void  __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* ------------------------------------------------------------ state */
enum { ST_UNINIT, ST_ON, ST_OFF };
static int state = ST_UNINIT;
static int finished;                 /* past the destructor: write at once */
static atomic_int lock;
static int fd = -1;
static pid_t owner;

static unsigned char buf[1 << 20];
static size_t used;

/* address -> id: open addressing, linear probing, backward-shift delete */
struct slot { uintptr_t addr; uint32_t id; };
static struct slot *table;
static size_t cap, count;            /* cap is a power of two; count <= cap / 2 */

static uint32_t *free_ids;           /* stack of ids whose objects were freed */
static size_t nfree, free_cap;
static uint32_t next_id = 1;         /* 0 is never used */

static void say(const char *a, const char *b)
{
    int saved = errno;
    ssize_t r = write(2, "rptrace: ", 9);
    r = write(2, a, strlen(a));
    if (b) r = write(2, b, strlen(b));
    r = write(2, "\n", 1);
    (void)r;
    errno = saved;
}

static void stop(const char *why, const char *what)
{
    say(why, what);
    state = ST_OFF;
}

static void flush(void)
{
    if (!used || fd < 0) return;
    if (getpid() != owner) {          /* a forked child: its parent writes these */
        used = 0; fd = -1; state = ST_OFF;
        return;
    }
    int saved = errno;
    size_t off = 0;
    while (off < used) {
        ssize_t w = write(fd, buf + off, used - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { stop("write failed; recording stops, the trace is cut short", NULL); break; }
        off += (size_t)w;
    }
    used = 0;
    errno = saved;
}

/* "%p" -> pid; returns 0, or -1 when the name does not fit */
static int expand(const char *in, char *out, size_t outcap)
{
    size_t o = 0;
    for (const char *s = in; *s; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            char d[24]; int n = 0;
            for (unsigned long v = (unsigned long)getpid(); v || !n; v /= 10) d[n++] = (char)('0' + v % 10);
            while (n) { if (o + 1 >= outcap) return -1; out[o++] = d[--n]; }
            s++;
            continue;
        }
        if (o + 1 >= outcap) return -1;
        out[o++] = *s;
    }
    out[o] = 0;
    return 0;
}

static int start(void)
{
    const char *name = getenv("RPTRACE_FILE");
    if (!name || !*name) { state = ST_OFF; return 0; }
    char path[4096];
    if (expand(name, path, sizeof path)) { stop("RPTRACE_FILE is too long: ", name); return 0; }
    int saved = errno;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        stop(errno == EEXIST ? "exists already, not recording: " : "cannot create ", path);
        errno = saved;
        return 0;
    }
    errno = saved;
    owner = getpid();
    memcpy(buf, RPTRACE_MAGIC, RPTRACE_MAGIC_LEN);
    used = RPTRACE_MAGIC_LEN;
    state = ST_ON;
    return 1;
}

/* ------------------------------------------------------------ id table */
static size_t hash(uintptr_t a)
{
    return (size_t)(((uint64_t)a >> 4) * 0x9e3779b97f4a7c15ull);
}

static int grow(void)
{
    size_t ncap = cap ? cap * 2 : (size_t)1 << 16;
    struct slot *n = rpi_map_zeroed(ncap * sizeof *n);
    if (!n) return -1;
    for (size_t i = 0; i < cap; i++) {
        if (!table[i].addr) continue;
        size_t h = hash(table[i].addr) & (ncap - 1);
        while (n[h].addr) h = (h + 1) & (ncap - 1);
        n[h] = table[i];
    }
    if (table) munmap(table, cap * sizeof *table);
    table = n;
    cap = ncap;
    return 0;
}

static int insert(uintptr_t a, uint32_t id)
{
    if ((count + 1) * 2 > cap && grow()) return -1;
    size_t h = hash(a) & (cap - 1);
    while (table[h].addr) {
        if (table[h].addr == a) { table[h].id = id; return 0; }   /* unseen free */
        h = (h + 1) & (cap - 1);
    }
    table[h].addr = a;
    table[h].id = id;
    count++;
    return 0;
}

/* removes a and returns its id, 0 when unknown */
static uint32_t take(uintptr_t a)
{
    if (!cap) return 0;
    size_t m = cap - 1, h = hash(a) & m;
    while (table[h].addr != a) {
        if (!table[h].addr) return 0;
        h = (h + 1) & m;
    }
    uint32_t id = table[h].id;
    /* backward shift: move later members of the run into the hole */
    size_t hole = h;
    for (size_t j = (h + 1) & m; table[j].addr; j = (j + 1) & m) {
        size_t home = hash(table[j].addr) & m;
        /* j may move to hole when its home is not in (hole, j] cyclically */
        if (((j - home) & m) >= ((j - hole) & m)) {
            table[hole] = table[j];
            hole = j;
        }
    }
    table[hole].addr = 0;
    table[hole].id = 0;
    count--;
    return id;
}

static uint32_t new_id(void)
{
    return nfree ? free_ids[--nfree] : next_id++;
}

static void drop_id(uint32_t id)
{
    if (nfree == free_cap) {
        size_t ncap = free_cap ? free_cap * 2 : (size_t)1 << 16;
        uint32_t *n = rpi_map_zeroed(ncap * sizeof *n);
        if (!n) return;               /* the id is simply not reused */
        if (free_ids) { memcpy(n, free_ids, nfree * sizeof *n); munmap(free_ids, free_cap * sizeof *n); }
        free_ids = n;
        free_cap = ncap;
    }
    free_ids[nfree++] = id;
}

/* ------------------------------------------------------------ records */
static void put_byte(unsigned v) { buf[used++] = (unsigned char)v; }
static void put_num(uint64_t v)
{
    while (v >= 0x80) { buf[used++] = (unsigned char)(v | 0x80); v >>= 7; }
    buf[used++] = (unsigned char)v;
}

/* Takes the lock and makes room for one record; 0 when not recording. */
static int begin(void)
{
    if (state == ST_OFF) return 0;
    rpi_spin_lock(&lock);
    if (state == ST_UNINIT && !start()) { rpi_spin_unlock(&lock); return 0; }
    if (state != ST_ON) { rpi_spin_unlock(&lock); return 0; }
    if (used > sizeof buf - 32) flush();
    if (state != ST_ON) { rpi_spin_unlock(&lock); return 0; }
    return 1;
}

static void end(void)
{
    if (finished) flush();
    rpi_spin_unlock(&lock);
}

/* Makes p object id and writes its record "op id size"; 0 when the id table
   cannot grow (the recording stops then). */
static int put_block(unsigned op, void *p, uint32_t id, size_t size)
{
    if (insert((uintptr_t)p, id)) {
        stop("out of memory for the id table; recording stops", NULL);
        return 0;
    }
    put_byte(op);
    put_num(id);
    put_num(size);
    return 1;
}

static void rec_new(unsigned op, void *p, size_t size, unsigned align_log2)
{
    if (!p || !begin()) return;
    if (put_block(op, p, new_id(), size) && op == RPTRACE_ALIGNED) put_byte(align_log2);
    end();
}

static void rec_free(void *p)
{
    if (!p || !begin()) return;
    uint32_t id = take((uintptr_t)p);
    if (id) {                          /* unknown: allocated before recording */
        put_byte(RPTRACE_FREE);
        put_num(id);
        drop_id(id);
    }
    end();
}

/* glibc's realloc runs under the lock, so that no other thread can be handed
   the old address (and record it) before the old record is gone */
static void *rec_realloc(void *old, size_t size)
{
    if (!begin()) return __libc_realloc(old, size);
    void *p = __libc_realloc(old, size);
    if (p) {
        uint32_t id = take((uintptr_t)old);
        unsigned op = RPTRACE_REALLOC;
        if (!id) { id = new_id(); op = RPTRACE_MALLOC; }   /* unknown old block */
        put_block(op, p, id, size);
    }
    end();
    return p;
}

static unsigned log2_of(size_t a)
{
    unsigned k = 0;
    while (((size_t)1 << k) < a && k < 63) k++;
    return k;
}

/* ------------------------------------------------------------ the interface */
EXPORT void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    rec_new(RPTRACE_MALLOC, p, n, 0);
    return p;
}

EXPORT void *calloc(size_t n, size_t m)
{
    void *p = __libc_calloc(n, m);
    if (p) rec_new(RPTRACE_CALLOC, p, n * m, 0);     /* no overflow: calloc succeeded */
    return p;
}

EXPORT void free(void *p)
{
    rec_free(p);
    __libc_free(p);
}

EXPORT void *realloc(void *old, size_t n)
{
    if (!old) return malloc(n);
    if (n == 0) { free(old); return NULL; }
    return rec_realloc(old, n);
}

EXPORT void *reallocarray(void *old, size_t n, size_t m)
{
    size_t total;
    if (__builtin_mul_overflow(n, m, &total)) { errno = ENOMEM; return NULL; }
    return realloc(old, total);
}

static void *aligned(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    rec_new(RPTRACE_ALIGNED, p, n, log2_of(align));
    return p;
}

EXPORT void *memalign(size_t align, size_t n) { return aligned(align, n); }
EXPORT void *aligned_alloc(size_t align, size_t n) { return aligned(align, n); }
EXPORT void *valloc(size_t n) { return aligned((size_t)sysconf(_SC_PAGESIZE), n); }

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    int saved = errno;
    void *p = aligned(align, n);
    if (!p) { errno = saved; return ENOMEM; }
    *out = p;
    return 0;
}

__attribute__((destructor)) static void rptrace_fini(void)
{
    rpi_spin_lock(&lock);
    if (state == ST_ON) flush();
    finished = 1;
    rpi_spin_unlock(&lock);
}
