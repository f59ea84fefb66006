/* An async-signal-safe malloc family for the signal tests, loaded after the
 * interposer (LD_PRELOAD="interposer:this") so that the interposer's "real"
 * allocator is this one: lock-free bump allocation from one reserved
 * mapping, free keeps nothing. glibc's malloc takes its arena lock once a
 * second thread exists, so a handler that interrupts it deadlocks with or
 * without an interposer; with this allocator underneath, any hang or lost
 * block in the signal tests is the interposer's. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define ARENA (UINT64_C(8) << 30)   /* reserved, touched as used */

static unsigned char *base;
static _Atomic uint64_t used;
static atomic_int state;   /* 0 unmapped, 1 mapping, 2 ready */

static int ready(void)
{
    int s = atomic_load(&state);
    if (s == 2)
        return 1;
    int zero = 0;
    if (atomic_compare_exchange_strong(&state, &zero, 1)) {
        void *p = mmap(NULL, ARENA, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        base = p == MAP_FAILED ? NULL : p;
        atomic_store(&state, 2);
    }
    while (atomic_load(&state) != 2)
        ;
    return base != NULL;
}

/* 16 bytes before each payload hold its size */
static void *take(size_t size, size_t align)
{
    if (!ready() || size > ARENA / 2) {
        errno = ENOMEM;
        return NULL;
    }
    if (align < 16)
        align = 16;
    uint64_t need = (uint64_t)size + align + 16;
    uint64_t at = atomic_fetch_add(&used, need);
    if (at + need > ARENA) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t p = ((uintptr_t)base + at + 16 + align - 1) & ~(uintptr_t)(align - 1);
    memcpy((void *)(p - 16), &size, sizeof size);
    return (void *)p;
}

static size_t size_of(void *p)
{
    size_t n;
    memcpy(&n, (unsigned char *)p - 16, sizeof n);
    return n;
}

void *malloc(size_t n) { return take(n, 16); }
void free(void *p) { (void)p; }
void *calloc(size_t n, size_t k)
{
    size_t t;
    if (__builtin_mul_overflow(n, k, &t)) {
        errno = ENOMEM;
        return NULL;
    }
    return take(t, 16);   /* fresh mapping: already zero */
}
void *realloc(void *p, size_t n)
{
    void *q = take(n, 16);
    if (q && p)
        memcpy(q, p, size_of(p) < n ? size_of(p) : n);
    return q;
}
void *memalign(size_t a, size_t n) { return take(n, a); }
void *aligned_alloc(size_t a, size_t n) { return take(n, a); }
void *valloc(size_t n) { return take(n, 4096); }
void *pvalloc(size_t n) { return take((n + 4095) & ~(size_t)4095, 4096); }
int posix_memalign(void **out, size_t a, size_t n)
{
    if (a == 0 || (a & (a - 1)) || a % sizeof(void *))
        return EINVAL;
    void *p = take(n, a);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
size_t malloc_usable_size(void *p) { return p ? size_of(p) : 0; }
