/* test_pool_stack_pages.c -- pools that record stacks (RP_POOL_STACKS) on a
   stack of the program's own whose upper pages stop being readable between
   two allocations: the walk of the later allocation must not read them.

   A function runs on a stack the program mapped (as inline assembly that
   calls a function on a stack of its own does) while the unwind tables
   still describe the switching frame as on the thread's stack, with its
   caller 240 bytes above the new stack pointer. The program left the
   switching frame's own return address every 240 bytes above (the words
   such a stack holds when the function called itself on it), so a walk
   follows them up, page after page, checking each page readable. Then the
   pages above are unmapped, made PROT_NONE, replaced by a smaller mapping
   or cut off by mremap, and the same function allocates again from the
   same places: those walks end at the switching frame (its caller's word
   would lie on a page that is gone), where before they crashed the
   program (libringpool's walker kept the pages it had found readable,
   having no munmap of its own to tell it otherwise). Each case runs in a
   forked child, so that a crash is reported as this test's failure. */
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "testutil.h"

/* call_on(top, fn): fn() with rsp switched to top; the tables still say
   the CFA is 240 bytes above rsp (the frame's own 16 + 224). */
void pages_call_on(char *top, void (*fn)(void));
__asm__(".text\n"
        ".globl pages_call_on\n"
        ".type pages_call_on, @function\n"
        "pages_call_on:\n"
        ".cfi_startproc\n"
        "    pushq %rbx\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbx, -16\n"
        "    subq $224, %rsp\n"
        ".cfi_def_cfa_offset 240\n"
        "    movq %rsp, %rbx\n"
        "    movq %rdi, %rsp\n"
        "    call *%rsi\n"
        "    movq %rbx, %rsp\n"
        "    addq $224, %rsp\n"
        ".cfi_def_cfa_offset 16\n"
        "    popq %rbx\n"
        ".cfi_def_cfa_offset 8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size pages_call_on, .-pages_call_on\n");

static uintptr_t call_on_ra;    /* pages_call_on's return address after its call */
static rp_pool *stack_pool;
static int own_depth;
static const char *cur_tag;
static void *blocks[64];
static int nblocks;

__attribute__((noinline)) static void note_call_on_ra(void)
{
    call_on_ra = (uintptr_t)__builtin_return_address(0);
}

/* a block d calls further down, each with a frame of its own */
__attribute__((noinline)) static void down_alloc(int d)
{
    volatile char pad[48];
    pad[0] = (char)d;
    if (d == 0) {
        CHECK(nblocks < (int)(sizeof blocks / sizeof blocks[0]));
        blocks[nblocks++] = rp_alloc(stack_pool, 40, cur_tag);
    } else {
        down_alloc(d - 1);
    }
    pad[1] = pad[0];
}

static void own_body(void) { down_alloc(own_depth); }

enum { GONE_MUNMAP, GONE_PROT_NONE, GONE_REMAP_SMALLER, GONE_MREMAP };

/* How many frames of a stack of tag are pages_call_on's return address
   (the planted words the walk followed, and the switching frame itself):
   the least and the most over the tag's stacks. */
static void call_on_frames(const char *tag, size_t *least, size_t *most)
{
    rp_stack_stat st[64];
    size_t n = rp_pool_stack_stats(stack_pool, st, 64), seen = 0;
    CHECK(n <= 64);
    *least = SIZE_MAX;
    *most = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(st[i].tag, tag) != 0)
            continue;
        CHECK(st[i].frames != NULL);
        size_t k = 0;
        for (size_t j = 0; j < st[i].depth; j++)
            k += (uintptr_t)st[i].frames[j] == call_on_ra;
        if (k < *least) *least = k;
        if (k > *most) *most = k;
        seen += st[i].blocks;
    }
    CHECK(seen > 0);
}

/* same_place: the walks before and after the cut start at the same place
   (the same depth), and the planted words reach 4 pages up, so that the
   later walk could be answered from the earlier one (the memo re-reads its
   words): it may be only after those pages are checked again. */
static int same_place;

static char run_case(int how)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), size = 32 * pg;
    /* 32 pages with an unmapped page on either side */
    char *m = mmap(NULL, size + 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(munmap(m, pg) == 0);
    CHECK(munmap(m + pg + size, pg) == 0);
    char *stack = m + pg;
    stack_pool = tu_pool_ex("pages", RP_POOL_STACKS | RP_POOL_STACK_DEPTH(64));
    pages_call_on(stack + size, note_call_on_ra);
    CHECK(call_on_ra != 0);
    char *top = stack + 16 * pg - 64;
    char *planted_end = same_place ? top + 4 * pg : stack + size;
    for (char *w = top + 240 - 8; w + 8 <= planted_end; w += 240)
        *(uintptr_t *)w = call_on_ra;
    cur_tag = "before";
    for (int r = 0; r < 3; r++) {
        own_depth = same_place ? 2 : r;
        pages_call_on(top, own_body);
    }
    char *cut = stack + 16 * pg;
    switch (how) {
    case GONE_MUNMAP:
        CHECK(munmap(cut, size - 16 * pg) == 0);
        break;
    case GONE_PROT_NONE:
        CHECK(mprotect(cut, size - 16 * pg, PROT_NONE) == 0);
        break;
    case GONE_REMAP_SMALLER:
        CHECK(munmap(stack, size) == 0);
        CHECK(mmap(stack, 16 * pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == stack);
        break;
    default:
        CHECK(mremap(stack, size, 16 * pg, 0) == stack);
        break;
    }
    cur_tag = "after";
    for (int r = 0; r < 3; r++)
        for (int d = 0; d < 3; d++) {
            own_depth = same_place ? 2 : d;
            pages_call_on(top, own_body);
        }
    /* before: the walks climbed the planted words (up to the depth);
       after: each ended at the switching frame */
    size_t least, most;
    call_on_frames("before", &least, &most);
    CHECK(least > 8);
    call_on_frames("after", &least, &most);
    CHECK_EQ(least, 1);
    CHECK_EQ(most, 1);
    for (int i = 0; i < nblocks; i++)
        rp_free(blocks[i]);
    tu_end_pool(stack_pool);
    CHECK(munmap(stack, how == GONE_PROT_NONE ? size : 16 * pg) == 0);
    return 'k';
}

static void *case_on_thread(void *how)
{
    static char verdict;
    verdict = run_case((int)(intptr_t)how);
    return &verdict;
}

/* The case in a forked child: on its main thread, or on a thread it makes
   (whose own stack is one glibc mapped, not the process's first). */
static void in_child(int how, int on_thread, int at_same_place)
{
    same_place = at_same_place;
    int fd[2], status;
    pid_t pid = tu_fork_answering(fd);
    if (pid == 0) {
        char verdict;
        if (on_thread) {
            pthread_t t;
            void *res;
            CHECK(pthread_create(&t, NULL, case_on_thread, (void *)(intptr_t)how) == 0);
            CHECK(pthread_join(t, &res) == 0);
            verdict = *(char *)res;
        } else {
            verdict = run_case(how);
        }
        tu_child_answer(fd[1], verdict);
    }
    CHECK_INT(tu_child_verdict(pid, fd[0], fd[1], 0, &status), 'k');
}

static void test_stack_unmapped_above(void) { in_child(GONE_MUNMAP, 0, 0); }
static void test_stack_made_prot_none_above(void) { in_child(GONE_PROT_NONE, 0, 0); }
static void test_stack_replaced_by_a_smaller_mapping(void) { in_child(GONE_REMAP_SMALLER, 0, 0); }
static void test_stack_shrunk_by_mremap(void) { in_child(GONE_MREMAP, 0, 0); }
static void test_stack_unmapped_above_on_a_thread(void) { in_child(GONE_MUNMAP, 1, 0); }
static void test_stack_made_prot_none_above_on_a_thread(void) { in_child(GONE_PROT_NONE, 1, 0); }
static void test_stack_unmapped_above_at_the_same_place(void) { in_child(GONE_MUNMAP, 0, 1); }
static void test_stack_made_prot_none_above_at_the_same_place(void) { in_child(GONE_PROT_NONE, 0, 1); }

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"stack_unmapped_above", test_stack_unmapped_above},
        {"stack_made_prot_none_above", test_stack_made_prot_none_above},
        {"stack_replaced_by_a_smaller_mapping", test_stack_replaced_by_a_smaller_mapping},
        {"stack_shrunk_by_mremap", test_stack_shrunk_by_mremap},
        {"stack_unmapped_above_on_a_thread", test_stack_unmapped_above_on_a_thread},
        {"stack_made_prot_none_above_on_a_thread", test_stack_made_prot_none_above_on_a_thread},
        {"stack_unmapped_above_at_the_same_place", test_stack_unmapped_above_at_the_same_place},
        {"stack_made_prot_none_above_at_the_same_place", test_stack_made_prot_none_above_at_the_same_place},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), NULL, 0);
}
