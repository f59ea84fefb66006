/* stale_pages.h -- stack pages a walk read, gone before the next walk
   from the same place: one scenario, run against both builds of the
   stack walker. tests/stacks/odd.c (modes stale-*) runs it under the
   interposer, whose walker learns of munmap and the like from hooks
   (csrc/preload/maps.c); tests/c/test_pool_stack_pages.c runs it with a
   pool that records stacks, in libringpool, whose walker has no hooks and
   trusts no page of a stack other than the thread's own from one walk to
   the next (RPI_STACK_NO_MAP_HOOKS, csrc/stack/unwind.c).

   body() runs at top, in the middle of a stack of the program's own (32
   pages) with rsp switched by stale_call_on, whose unwind tables still
   describe its frame as on the thread's stack (as inline assembly that
   calls a function on a stack of its own leaves them), with its caller
   240 bytes above the new stack pointer. The program left stale_call_on's
   own return address every 240 bytes above (the words such a stack holds
   when the function called itself on it), so a walk follows them up, page
   after page, checking each one readable. Then the pages above top's page
   are unmapped, made PROT_NONE, replaced by a smaller mapping or cut off
   by mremap, and body() runs at top again: those walks must end at the
   switching frame (its caller's word would lie on a page that is gone),
   not read the pages (both walkers once did, and the program died of
   SIGSEGV). With same_place, the walks before and after the cut start at
   the same place (the same depth) and the planted words reach only 4
   pages up, so that a later walk could be answered from an earlier one
   (re-reading its words) and may be only after those pages are checked
   again. */
#ifndef STALE_PAGES_H
#define STALE_PAGES_H

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* stale_call_on(top, fn): fn() with rsp switched to top; the tables still
   say the CFA is 240 bytes above rsp (the frame's own 16 + 224). */
void stale_call_on(char *top, void (*fn)(void));
__asm__(".text\n"
        ".globl stale_call_on\n"
        ".type stale_call_on, @function\n"
        "stale_call_on:\n"
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
        ".size stale_call_on, .-stale_call_on\n");

/* How the upper part of the stack stops being readable between two walks. */
enum { GONE_MUNMAP, GONE_PROT_NONE, GONE_REMAP_SMALLER, GONE_MREMAP };

static uintptr_t stale_call_on_ra;   /* stale_call_on's return address after its call */
static int stale_depth;              /* how many calls further down body() allocates */

__attribute__((noinline)) static void stale_note_ra(void)
{
    stale_call_on_ra = (uintptr_t)__builtin_return_address(0);
}

/* The scenario on stack (32 readable pages; unmapped pages on either side,
   so that no other mapping grows into its place): phase(0), the walks
   before the cut, the cut, phase(1), the walks after it; then the stack is
   unmapped. 0, or -1 when a system call failed. */
static int stale_pages_run(char *stack, int how, int same_place, void (*body)(void),
                           void (*phase)(int after))
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), size = 32 * pg;
    stale_call_on(stack + size, stale_note_ra);
    if (!stale_call_on_ra)
        return -1;
    char *top = stack + 16 * pg - 64;
    char *planted_end = same_place ? top + 4 * pg : stack + size;
    for (char *w = top + 240 - 8; w + 8 <= planted_end; w += 240)
        *(uintptr_t *)w = stale_call_on_ra;
    phase(0);
    for (int r = 0; r < 3; r++) {
        stale_depth = same_place ? 2 : r;
        stale_call_on(top, body);
    }
    char *cut = stack + 16 * pg;
    switch (how) {
    case GONE_MUNMAP:
        if (munmap(cut, size - 16 * pg) != 0)
            return -1;
        break;
    case GONE_PROT_NONE:
        if (mprotect(cut, size - 16 * pg, PROT_NONE) != 0)
            return -1;
        break;
    case GONE_REMAP_SMALLER:
        if (munmap(stack, size) != 0 ||
            mmap(stack, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                 -1, 0) != stack)
            return -1;
        break;
    default:
        if (mremap(stack, size, 16 * pg, 0) != stack)
            return -1;
        break;
    }
    phase(1);
    for (int r = 0; r < 3; r++)
        for (int d = 0; d < 3; d++) {
            stale_depth = same_place ? 2 : d;
            stale_call_on(top, body);
        }
    return munmap(stack, how == GONE_PROT_NONE ? size : 16 * pg) == 0 ? 0 : -1;
}

#endif
