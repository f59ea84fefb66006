/* Stacks the unwind tables describe oddly or not at all, and stacks that
   are not a thread's own: the interposer must neither crash nor hang the
   program, count every block exactly, and record no word that is not a
   return address as a frame (tests/stacks/test_odd_stacks.py).

   usage: odd MODE; each mode leaks blocks of sizes of its own and prints
   "LEAK SIZE BLOCKS" for each ("JIT LO HI" for each range of code it
   made outside every module). */
#include <dlfcn.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "stale_pages.h"

void *odd_data_word_alloc(size_t n);          /* odd_frames.S */
void *odd_noinfo_alloc(size_t n);             /* odd_noinfo.c: no unwind tables */
void *odd_noinfo_outer(int d, size_t n);
void odd_call_on(char *top, void (*fn)(void));    /* odd_frames.S: fn on another stack */
void *odd_garbage_rbp_alloc(size_t n, uintptr_t rbp);  /* odd_frames.S */

static void *volatile keep[1 << 15];
static int nkeep;
static int counts[512];

static void leak(void *p, size_t n)
{
    if (!p)
        abort();
    int k = __atomic_fetch_add(&nkeep, 1, __ATOMIC_RELAXED);
    if (k >= (int)(sizeof keep / sizeof keep[0]))
        abort();
    keep[k] = p;
    __atomic_fetch_add(&counts[n], 1, __ATOMIC_RELAXED);
}

/* n bytes, d calls further down (each with a frame of its own) */
__attribute__((noinline)) static void down_leak(int d, size_t n)
{
    char pad[48];
    __asm__ volatile("" : : "r"(pad) : "memory");
    if (d == 0)
        leak(malloc(n), n);
    else
        down_leak(d - 1, n);
    __asm__ volatile("" : : "r"(pad) : "memory");
}

static long page(void) { return sysconf(_SC_PAGESIZE); }

/* size bytes of fresh memory with an unmapped page on either side */
static char *fenced(size_t size)
{
    size_t pg = (size_t)page();
    char *m = mmap(NULL, size + 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        abort();
    munmap(m, pg);
    munmap(m + pg + size, pg);
    return m + pg;
}

/* ---------------------------------------------------- a data word read as a return address */
static void data_word(void)
{
    for (int i = 0; i < 20; i++)
        leak(odd_data_word_alloc(301), 301);
}

/* ---------------------------------------------------- code without unwind tables */
static void no_tables(void)
{
    for (int d = 0; d < 8; d++)
        leak(odd_noinfo_outer(d, 302), 302);
    for (int i = 0; i < 4; i++)
        leak(odd_noinfo_alloc(302), 302);   /* the same one-frame stack */
}

/* ---------------------------------------------------- coroutines on small stacks */
static ucontext_t main_ctx, co_ctx;

static void co_body(int depth, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        down_leak(depth + i, 304);
        swapcontext(&co_ctx, &main_ctx);
    }
}

static void co_run(char *stack, size_t size, int depth, int rounds, int link)
{
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = stack;
    co_ctx.uc_stack.ss_size = size;
    co_ctx.uc_link = link ? &main_ctx : NULL;
    makecontext(&co_ctx, (void (*)(void))co_body, 2, depth, rounds);
    for (int i = 0; i < rounds; i++)
        swapcontext(&main_ctx, &co_ctx);
    if (link)
        swapcontext(&main_ctx, &co_ctx);     /* it returns through uc_link */
}

static void coroutines(void)
{
    /* heap stacks, filled with a pattern */
    for (size_t size = 16384; size <= 65536; size *= 2) {
        char *stack = malloc(size);
        memset(stack, 0xab, size);
        co_run(stack, size, 3, 3, 1);
        free(stack);
    }
    /* stacks ending at an unmapped page; then a smaller one mapped where
       the last one was, entered at the same depth (the walker keeps the
       last walks' stack addresses) */
    size_t pg = (size_t)page();
    for (int k = 0; k < 4; k++) {
        size_t size = pg * (size_t)(4 - k % 2 * 2);
        char *stack = fenced(size);
        memset(stack, k & 1 ? 0xff : 0x41, size);
        co_run(stack, size, k, 3, k & 1);
        munmap(stack, size);
    }
    /* a stack whose every word points into libc's code */
    char *stack = fenced(4 * pg);
    for (size_t i = 0; i < 4 * pg / sizeof(void *); i++)
        ((void **)stack)[i] = (char *)&printf + 1;
    co_run(stack, 4 * pg, 2, 2, 0);
    co_run(stack, 4 * pg, 5, 2, 1);
    munmap(stack, 4 * pg);
}

/* ---------------------------------------------------- threads on small stacks */
static pthread_key_t late_key;

/* a key's destructor that allocates: it runs as the thread exits, after
   the interposer's own (made first) */
static void late_leak(void *arg)
{
    down_leak((int)(intptr_t)arg, 316);
}

static void *small_thread(void *arg)
{
    int depth = (int)(intptr_t)arg;
    for (int i = 0; i < 10; i++)
        down_leak(depth, 305);
    pthread_setspecific(late_key, (void *)(intptr_t)(depth + 1));
    return NULL;
}

static void small_stacks(void)
{
    if (pthread_key_create(&late_key, late_leak) != 0)
        abort();
    for (int depth = 0; depth <= 40; depth += 10) {
        pthread_attr_t a;
        pthread_t t;
        pthread_attr_init(&a);
        int e = pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN);
        if (!e)
            e = pthread_create(&t, &a, small_thread, (void *)(intptr_t)depth);
        if (e) {
            fprintf(stderr, "odd: a thread with a %zu-byte stack: %s\n", (size_t)PTHREAD_STACK_MIN,
                    strerror(e));
            exit(3);
        }
        pthread_join(t, NULL);
        pthread_attr_destroy(&a);
    }
    /* a stack the program mapped, between unmapped pages */
    size_t size = 64 * 1024;
    char *stack = fenced(size);
    for (int depth = 0; depth <= 50; depth += 10) {
        pthread_attr_t a;
        pthread_t t;
        pthread_attr_init(&a);
        pthread_attr_setstack(&a, stack, size);
        int e = pthread_create(&t, &a, small_thread, (void *)(intptr_t)depth);
        if (e) {
            fprintf(stderr, "odd: a thread on a mapped stack: %s\n", strerror(e));
            exit(3);
        }
        pthread_join(t, NULL);
        pthread_attr_destroy(&a);
    }
}

/* The stack a thread asking for 64 KiB has left below its first frame:
   the interposer's thread-locals are carved out of it (printed as "ROOM
   BYTES"). */
static void *room_thread(void *arg)
{
    pthread_attr_t a;
    void *lo;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &a) != 0 || pthread_attr_getstack(&a, &lo, &size) != 0)
        abort();
    pthread_attr_destroy(&a);
    *(size_t *)arg = (size_t)((char *)__builtin_frame_address(0) - (char *)lo);
    down_leak(3, 314);
    return NULL;
}

static void stack_room(void)
{
    pthread_attr_t a;
    pthread_t t;
    size_t room = 0;
    pthread_attr_init(&a);
    if (pthread_attr_setstacksize(&a, 64 * 1024) != 0 || pthread_create(&t, &a, room_thread, &room) != 0)
        abort();
    pthread_join(t, NULL);
    printf("ROOM %zu\n", room);
}

/* Thousands of threads one after the other, each allocating from deep
   calls: the walker's per-thread buffers of a thread that exited are
   taken by the next one (printed: "GROWTH KIB", resident memory gained). */
static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

__attribute__((noinline)) static void down_free(int d, size_t n)
{
    char pad[48];
    __asm__ volatile("" : : "r"(pad) : "memory");
    if (d == 0)
        free(malloc(n));
    else
        down_free(d - 1, n);
    __asm__ volatile("" : : "r"(pad) : "memory");
}

static void *churn_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        down_free(20 + i, 315);
    return NULL;
}

static void thread_churn(void)
{
    for (int round = 0; round < 2; round++) {
        long before = resident_kib();
        for (int i = 0; i < 1000; i++) {
            pthread_t t[2];
            for (int k = 0; k < 2; k++)
                if (pthread_create(&t[k], NULL, churn_thread, NULL) != 0)
                    abort();
            for (int k = 0; k < 2; k++)
                pthread_join(t[k], NULL);
        }
        if (round == 1)
            printf("GROWTH %ld\n", resident_kib() - before);
    }
    down_leak(2, 315);
}

/* ---------------------------------------------------- handlers on an alternate stack */
static void on_usr1(int sig)
{
    (void)sig;
    leak(malloc(306), 306);
    leak(calloc(1, 307), 307);
}

__attribute__((noinline)) static void raise_down(int d)
{
    char pad[32];
    __asm__ volatile("" : : "r"(pad) : "memory");
    if (d == 0)
        raise(SIGUSR1);
    else
        raise_down(d - 1);
    __asm__ volatile("" : : "r"(pad) : "memory");
}

static void alt_stack(size_t size)
{
    stack_t ss = {.ss_sp = fenced(size), .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        abort();
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
    sigaction(SIGUSR1, &sa, NULL);
    for (int d = 0; d < 300; d += 37)
        raise_down(d);
}

/* ---------------------------------------------------- longjmp out of deep calls */
static jmp_buf jb;
static sigjmp_buf sjb;

__attribute__((noinline)) static void jump_down(int d, int sig)
{
    char pad[128];
    __asm__ volatile("" : : "r"(pad) : "memory");
    if (d == 0) {
        leak(malloc(308), 308);
        if (sig)
            siglongjmp(sjb, 1);
        longjmp(jb, 1);
    }
    jump_down(d - 1, sig);
    __asm__ volatile("" : : "r"(pad) : "memory");
}

static void long_jumps(void)
{
    for (int r = 0; r < 6; r++) {
        if (!setjmp(jb))
            jump_down(40 + r * 60, 0);
        down_leak(r, 309);
        if (!sigsetjmp(sjb, 1))
            jump_down(3 + r, 1);
        down_leak(r, 309);
    }
    /* deeper than any recorded stack, and back */
    int depths[] = {10, 300, 1000, 300, 10};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++)
        down_leak(depths[i], 310);
}

/* ---------------------------------------------------- code outside every module */
typedef void *(*jit_fn)(void *(*)(size_t), size_t);

static void jit(void)
{
    /* sub $8,%rsp; mov %rdi,%rax; mov %rsi,%rdi; call *%rax; add $8,%rsp; ret */
    static const unsigned char code[] = {0x48, 0x83, 0xec, 0x08, 0x48, 0x89, 0xf8, 0x48, 0x89,
                                         0xf7, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3};
    for (int r = 0; r < 3; r++) {
        unsigned char *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memcpy(x + 64 * r, code, sizeof code);
        if (mprotect(x, 4096, PROT_READ | PROT_EXEC) != 0)
            abort();
        printf("JIT %p %p\n", (void *)x, (void *)(x + 4096));
        jit_fn f = (jit_fn)(void *)(x + 64 * r);
        leak(f(malloc, 311), 311);
        leak(f(odd_noinfo_alloc, 312), 312);
        leak(f(odd_data_word_alloc, 313), 313);
        munmap(x, 4096);
    }
}

/* Code outside every module at an address where a library is loaded
   later: the walker ends a stack at a return address outside every module
   and caches that, by address; the library's frames there must be walked
   with their own rules. jitlib.so is linked at a fixed address, which the
   loader asks for: loaded once, to learn where the call in jitlib_call
   returns, and unloaded; code of the program's own is put there, whose
   call returns at the same address, and unmapped after a few allocations;
   then the library is loaded again at the same address ("MOVED" when it
   was not). */
typedef void *(*lib_call_fn)(void *(*)(size_t), size_t);
static uintptr_t lib_ra;

static void *note_lib_ra(size_t n)
{
    (void)n;
    lib_ra = (uintptr_t)__builtin_return_address(0);
    return NULL;
}

static lib_call_fn load_jitlib(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "odd: %s\n", dlerror());
        exit(3);
    }
    return (lib_call_fn)dlsym(h, "jitlib_call");
}

static void jit_then_library(void)
{
    char path[4096];
    ssize_t len = readlink("/proc/self/exe", path, sizeof path - 32);
    if (len <= 0)
        abort();
    path[len] = 0;
    strcpy(strrchr(path, '/') + 1, "jitlib.so");
    lib_call_fn call = load_jitlib(path);
    call(note_lib_ra, 0);
    uintptr_t was = (uintptr_t)call, ra = lib_ra;
    Dl_info info;
    void *h = dladdr(call, &info) ? dlopen(info.dli_fname, RTLD_NOLOAD | RTLD_NOW) : NULL;
    if (!h || dlclose(h) != 0 || dlclose(h) != 0)   /* the reference just taken, then the first */
        abort();
    /* sub $8,%rsp; mov %rdi,%rax; mov %rsi,%rdi; call *%rax (returning at
       ra); add $8,%rsp; ret */
    static const unsigned char code[] = {0x48, 0x83, 0xec, 0x08, 0x48, 0x89, 0xf8, 0x48, 0x89,
                                         0xf7, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3};
    uintptr_t pg = (uintptr_t)page(), lo = (ra - 12) & ~(pg - 1), hi = (ra + 8 + pg - 1) & ~(pg - 1);
    if (mmap((void *)lo, hi - lo, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
             -1, 0) != (void *)lo)
        abort();
    memcpy((void *)(ra - 12), code, sizeof code);
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC) != 0)
        abort();
    printf("JIT %p %p\n", (void *)lo, (void *)hi);
    lib_call_fn jitted = (lib_call_fn)(void *)(ra - 12);
    for (int i = 0; i < 3; i++)
        leak(jitted(malloc, 320), 320);
    munmap((void *)lo, hi - lo);
    call = load_jitlib(path);
    if ((uintptr_t)call != was) {
        printf("MOVED %p %p\n", (void *)was, (void *)call);
        return;
    }
    for (int i = 0; i < 3; i++)
        leak(call(malloc, 321), 321);
    /* left loaded: the report names its frames */
}

/* ---------------------------------------------------- a call on a stack of the program's own */
static int own_depth;

static void own_body(void)
{
    down_leak(own_depth, 317);
}

static void own_stack(void)
{
    /* fn runs at the very end of a stack with a guard page above it (no
       access: an unmapped page could be taken by a later mapping): the
       tables of odd_call_on's frame put its caller's return address in
       that page (the walk read it there and crashed the program) */
    size_t size = 16 * (size_t)page();
    char *stack = fenced(size + (size_t)page());
    if (mprotect(stack + size, (size_t)page(), PROT_NONE) != 0)
        abort();
    for (int r = 0; r < 3; r++)
        for (own_depth = 0; own_depth < 4; own_depth++)
            for (size_t gap = 0; gap <= 64; gap += 16)
                odd_call_on(stack + size - gap, own_body);
}

/* ---------------------------------------------------- stack pages unmapped after a walk read them */
static uintptr_t call_on_ra;   /* odd_call_on's return address, after its call */

static void note_call_on_ra(void)
{
    call_on_ra = (uintptr_t)__builtin_return_address(0);
}

/* The scenario of tests/stacks/stale_pages.h (the walks here are the
   interposer's; tests/c/test_pool_stack_pages.c runs it with libringpool's
   walker): the upper pages of a stack of the program's own, which walks
   followed unwind tables into, unmapped (or made PROT_NONE, replaced by a
   smaller mapping, shrunk by mremap) before walks from the same place. */
static void stale_body(void)
{
    down_leak(stale_depth, 317);
}

static void stale_phase(int after) { (void)after; }

static void stale_stack(int how, int same_place)
{
    if (stale_pages_run(fenced(32 * (size_t)page()), how, same_place, stale_body, stale_phase) != 0)
        abort();
}

/* The same with a stack from malloc: a block this big is a mapping of
   its own (glibc's mmap threshold, 128 KiB), and realloc shrinks it in
   place by unmapping its upper part, free unmaps it all (glibc makes the
   system calls itself, not through the library's munmap and mremap). The
   block is shrunk by another thread, so that this one makes no other walk
   meanwhile (each would start on this thread's own stack). */
static sem_t to_helper, from_helper;
static char *shared_stack;
static size_t shared_size;

static void *shrink_helper(void *arg)
{
    (void)arg;
    down_leak(2, 317);   /* this thread's first walk made (it maps its buffers) */
    sem_post(&from_helper);
    sem_wait(&to_helper);
    char *kept = realloc(shared_stack, shared_size / 2);
    if (kept != shared_stack)
        abort();
    sem_post(&from_helper);
    return NULL;
}

static void stale_malloc_stack(void)
{
    size_t pg = (size_t)page(), size = 64 * pg;
    pthread_t t;
    if (sem_init(&to_helper, 0, 0) != 0 || sem_init(&from_helper, 0, 0) != 0 ||
        pthread_create(&t, NULL, shrink_helper, NULL) != 0)
        abort();
    sem_wait(&from_helper);
    char *stack = malloc(size);
    if (!stack)
        abort();
    shared_stack = stack;
    shared_size = size;
    odd_call_on(stack + size, note_call_on_ra);
    char *top = stack + size / 2 - 64;
    for (char *w = top + 240 - 8; w + 8 <= stack + size; w += 240)
        *(uintptr_t *)w = call_on_ra;
    for (own_depth = 0; own_depth < 3; own_depth++)
        odd_call_on(top, own_body);
    sem_post(&to_helper);
    sem_wait(&from_helper);
    for (int r = 0; r < 3; r++)
        for (own_depth = 0; own_depth < 3; own_depth++)
            odd_call_on(top, own_body);
    pthread_join(t, NULL);
    free(shared_stack);
}

/* The same with free, of a block glibc mapped only because the program
   lowered its mmap threshold (mallopt; the block is smaller than the
   default threshold): free unmaps it (glibc's own system call), a smaller
   mapping takes its place (up to the end of top's page, by a system call
   of the program's own, which the library does not see), and fn runs at
   top again: the walks from there must not read the pages of the block
   above top, which are gone. */
static void stale_free_stack(void)
{
    size_t pg = (size_t)page(), size = 24 * pg;
    if (mallopt(M_MMAP_THRESHOLD, (int)(4 * pg)) != 1)
        abort();
    /* glibc maps a block only when its heap's top cannot hold it: blocks
       from the heap are kept until one is a mapping (IS_MMAPPED, bit 1 of
       the size word before it) */
    char *heap[16], *stack = NULL;
    int nheap = 0;
    while (nheap < 16) {
        if (!(stack = malloc(size)))
            abort();
        if (((size_t *)stack)[-1] & 2)
            break;
        heap[nheap++] = stack;
        stack = NULL;
    }
    char *base = stack ? stack - 2 * sizeof(size_t) : NULL;   /* the chunk: the mapping's start */
    if (!base || (uintptr_t)base % pg != 0)
        abort();
    while (nheap > 0)
        free(heap[--nheap]);
    odd_call_on(stack + size, note_call_on_ra);
    char *top = stack + size / 2 - 64;
    for (char *w = top + 240 - 8; w + 8 <= stack + size; w += 240)
        *(uintptr_t *)w = call_on_ra;
    for (own_depth = 0; own_depth < 3; own_depth++)
        odd_call_on(top, own_body);
    /* addresses, not pointers, past the free */
    uintptr_t at = (uintptr_t)base, from = (uintptr_t)top;
    size_t kept = (from - at + pg - 1) & ~(pg - 1);
    free(stack);
    if ((uintptr_t)syscall(SYS_mmap, at, kept, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != at)
        abort();
    for (int r = 0; r < 3; r++)
        for (own_depth = 0; own_depth < 3; own_depth++)
            odd_call_on((char *)from, own_body);
    munmap((void *)at, kept);
}

/* ---------------------------------------------------- rbp not a frame pointer, deep recursion */
/* n bytes with rbp set to g, d calls further down */
__attribute__((noinline)) static void down_rbp(int d, size_t n, uintptr_t g)
{
    char pad[48];
    __asm__ volatile("" : : "r"(pad) : "memory");
    if (d == 0)
        leak(odd_garbage_rbp_alloc(n, g), n);
    else
        down_rbp(d - 1, n, g);
    __asm__ volatile("" : : "r"(pad) : "memory");
}

static void garbage_rbp(void)
{
    char here;
    const uintptr_t g[] = {0, 1, 0xdeadbeef, (uintptr_t)-8, (uintptr_t)&here - 64 * 4096,
                           (uintptr_t)&here + 64, (uintptr_t)&here, (uintptr_t)0x7ffffffff000};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        for (int d = 0; d < 6; d++)
            for (int r = 0; r < 3; r++)
                down_rbp(d, 318, g[i]);
}

static void deep_recursion(void)
{
    /* 10,000 frames and more below main, each walk cut at its depth */
    for (int i = 0; i < 30; i++)
        down_leak(10000 + i % 3, 319);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "data-word"))
        data_word();
    else if (!strcmp(mode, "no-tables"))
        no_tables();
    else if (!strcmp(mode, "coroutines"))
        coroutines();
    else if (!strcmp(mode, "small-stacks"))
        small_stacks();
    else if (!strcmp(mode, "stack-room"))
        stack_room();
    else if (!strcmp(mode, "thread-churn"))
        thread_churn();
    else if (!strcmp(mode, "alt-stack"))
        alt_stack(64 * 1024);
    else if (!strcmp(mode, "small-alt-stack"))
        alt_stack((size_t)sysconf(_SC_MINSIGSTKSZ) + 4096);
    else if (!strcmp(mode, "long-jumps"))
        long_jumps();
    else if (!strcmp(mode, "jit"))
        jit();
    else if (!strcmp(mode, "jit-then-library"))
        jit_then_library();
    else if (!strcmp(mode, "own-stack"))
        own_stack();
    else if (!strcmp(mode, "stale-munmap"))
        stale_stack(GONE_MUNMAP, 0);
    else if (!strcmp(mode, "stale-prot-none"))
        stale_stack(GONE_PROT_NONE, 0);
    else if (!strcmp(mode, "stale-remap-smaller"))
        stale_stack(GONE_REMAP_SMALLER, 0);
    else if (!strcmp(mode, "stale-mremap"))
        stale_stack(GONE_MREMAP, 0);
    else if (!strcmp(mode, "stale-munmap-same-place"))
        stale_stack(GONE_MUNMAP, 1);
    else if (!strcmp(mode, "stale-prot-none-same-place"))
        stale_stack(GONE_PROT_NONE, 1);
    else if (!strcmp(mode, "stale-malloc"))
        stale_malloc_stack();
    else if (!strcmp(mode, "stale-free"))
        stale_free_stack();
    else if (!strcmp(mode, "garbage-rbp"))
        garbage_rbp();
    else if (!strcmp(mode, "deep"))
        deep_recursion();
    else
        return 2;
    for (size_t n = 0; n < sizeof counts / sizeof counts[0]; n++)
        if (counts[n])
            printf("LEAK %zu %d\n", n, counts[n]);
    return 0;
}
