/* util.c -- errors and handlers, underlying allocation with
   fault injection, and the pointer map used by destructors and checked mode. */
#include "internal.h"
#include "outfile.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ errors */
const char *rp_strerror(int error)
{
    switch (error) {
    case RP_OK: return "success";
#define RP_ERROR_MSG_(name, value, msg) case RP_##name: return msg;
    RP_ERROR_MAP(RP_ERROR_MSG_)
#undef RP_ERROR_MSG_
    default: return "unknown error";
    }
}

const char *rp_error_name(int error)
{
    switch (error) {
    case RP_OK: return "RP_OK";
#define RP_ERROR_NAME_(name, value, msg) case RP_##name: return "RP_" #name;
    RP_ERROR_MAP(RP_ERROR_NAME_)
#undef RP_ERROR_NAME_
    default: return "RP_UNKNOWN";
    }
}

static void default_oom(const char *call, size_t size, const char *tag)
{
    char shown[1200];   /* the tag by the CLI's rule, as default_error's line */
    fprintf(stderr, "ringpool: out of memory in %s(size=%zu, tag=%s)\n", call, size,
            tag ? rpi_outfile_printable(shown, sizeof shown, tag) : "(untagged)");
    abort();
}

static void default_error(int error, const char *message, const void *block)
{
    (void)block;
    /* (one line that drives no terminal: rpi_report_error) */
    fprintf(stderr, "ringpool: %s: %s\n", rp_error_name(error), message);
    abort();
}

static _Atomic(rp_oom_handler) oom_handler = default_oom;
static _Atomic(rp_error_handler) error_handler = default_error;

rp_oom_handler rp_set_oom_handler(rp_oom_handler handler)
{
    return atomic_exchange(&oom_handler, handler ? handler : default_oom);
}

rp_error_handler rp_set_error_handler(rp_error_handler handler)
{
    return atomic_exchange(&error_handler, handler ? handler : default_error);
}

void rpi_report_error(int error, const void *block, const char *fmt, ...)
{
    char raw[512], msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* the message names pools and tags (the program's: any bytes): every
       handler gets it by the CLI's rule, one line that drives no terminal
       (ringpool.h; 6 bytes at most for one of raw's 511) */
    atomic_load(&error_handler)(error, rpi_outfile_printable(msg, sizeof msg, raw), block);
}

_Noreturn void rpi_oom(const char *call, size_t size, const char *tag)
{
    atomic_load(&oom_handler)(call, size, tag);
    /* The handler returned: it declined to escape. */
    fprintf(stderr, "ringpool: out-of-memory handler returned from %s; aborting\n", call);
    abort();
}

/* ----------------------------------------------------- fault injection */
atomic_int rpi_fail_armed;
static atomic_long fail_countdown;
static atomic_int fail_sticky;
static atomic_int fail_fired;
static atomic_ulong fail_seen;

void rp_debug_fail_after(long n, int sticky)
{
    atomic_store(&fail_seen, 0);
    atomic_store(&fail_fired, 0);
    atomic_store(&fail_countdown, n);
    atomic_store(&fail_sticky, sticky != 0);
    atomic_store(&rpi_fail_armed, n > 0);
}

unsigned long rp_debug_alloc_count(void) { return atomic_load(&fail_seen); }
int rp_debug_fail_fired(void) { return atomic_load(&fail_fired); }

bool rpi_fail_now(void)
{
    atomic_fetch_add(&fail_seen, 1);
    long left = atomic_fetch_sub(&fail_countdown, 1) - 1;
    if (left == 0 || (left < 0 && atomic_load(&fail_sticky))) {
        atomic_store(&fail_fired, 1);
        return true;
    }
    return false;
}

void *rpi_sys_calloc(size_t n, size_t size)
{
    if (rpi_sys_fail())
        return NULL;
    return calloc(n, size);
}

/* --------------------------------------------------------- pointer map */
#define TOMB ((void *)1)

static size_t slot_of(const void *key, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int grow(rpi_ptrmap *m, size_t need)
{
    size_t cap = m->cap ? m->cap : 16;
    while (cap * 3 / 4 < need) cap *= 2;
    void **keys = rpi_sys_calloc(cap, sizeof *keys);
    void **vals = rpi_sys_calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        rpi_sys_free(keys);
        rpi_sys_free(vals);
        return RP_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        void *k = m->keys[i];
        if (!k || k == TOMB) continue;
        size_t j = slot_of(k, cap);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
    }
    rpi_sys_free(m->keys);
    rpi_sys_free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* count includes tombstones: used slots */
int rpi_ptrmap_reserve(rpi_ptrmap *m, size_t extra)
{
    if (m->cap && (m->count + extra) <= m->cap * 3 / 4) return 0;
    size_t live = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMB) live++;
    if (grow(m, live + extra + 1) != 0) return RP_ENOMEM;
    m->count = live;
    return 0;
}

void *rpi_ptrmap_get(const rpi_ptrmap *m, const void *key)
{
    if (!m->cap) return NULL;
    for (size_t j = slot_of(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == key) return m->vals[j];
        if (!m->keys[j]) return NULL;
    }
}

int rpi_ptrmap_put(rpi_ptrmap *m, void *key, void *val)
{
    if (m->cap) {
        /* an existing key, or a tombstone on its probe chain, needs no room */
        size_t tomb = SIZE_MAX;
        for (size_t j = slot_of(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
            if (m->keys[j] == key) { m->vals[j] = val; return 0; }
            if (m->keys[j] == TOMB && tomb == SIZE_MAX) tomb = j;
            if (!m->keys[j]) break;
        }
        if (tomb != SIZE_MAX) {
            m->keys[tomb] = key;
            m->vals[tomb] = val;
            return 0;
        }
    }
    if (rpi_ptrmap_reserve(m, 1) != 0) return RP_ENOMEM;
    size_t tomb = SIZE_MAX;
    for (size_t j = slot_of(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == key) { m->vals[j] = val; return 0; }
        if (m->keys[j] == TOMB && tomb == SIZE_MAX) tomb = j;
        if (!m->keys[j]) {
            if (tomb != SIZE_MAX) j = tomb; else m->count++;
            m->keys[j] = key;
            m->vals[j] = val;
            return 0;
        }
    }
}

void *rpi_ptrmap_del(rpi_ptrmap *m, const void *key)
{
    if (!m->cap) return NULL;
    for (size_t j = slot_of(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == key) {
            void *v = m->vals[j];
            m->keys[j] = TOMB;
            m->vals[j] = NULL;
            return v;
        }
        if (!m->keys[j]) return NULL;
    }
}

void rpi_ptrmap_free(rpi_ptrmap *m)
{
    rpi_sys_free(m->keys);
    rpi_sys_free(m->vals);
    memset(m, 0, sizeof *m);
}
