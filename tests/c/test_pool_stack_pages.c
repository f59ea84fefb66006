/* test_pool_stack_pages.c -- pools that record stacks (RP_POOL_STACKS) on a
   stack of the program's own whose upper pages stop being readable between
   two allocations: the walk of the later allocation must not read them.

   The scenario is tests/stacks/stale_pages.h, which tests/stacks/odd.c
   (stale-*) runs against the interposer's walker as well: here each walk
   is a pool allocation, and the pool's stacks say how far each walk went
   (before the cut: up the planted words; after it: to the switching frame
   only). Each case runs in a forked child, so that a crash is reported as
   this test's failure. */
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "testutil.h"

#include "../stacks/stale_pages.h"

static rp_pool *stack_pool;
static const char *cur_tag;
static void *blocks[64];
static int nblocks;

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

static void own_body(void) { down_alloc(stale_depth); }

static void set_phase(int after) { cur_tag = after ? "after" : "before"; }

/* How many frames of a stack of tag are stale_call_on's return address
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
            k += (uintptr_t)st[i].frames[j] == stale_call_on_ra;
        if (k < *least) *least = k;
        if (k > *most) *most = k;
        seen += st[i].blocks;
    }
    CHECK(seen > 0);
}

static int same_place;

static char run_case(int how)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), size = 32 * pg;
    /* 32 pages with an unmapped page on either side */
    char *m = mmap(NULL, size + 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(munmap(m, pg) == 0);
    CHECK(munmap(m + pg + size, pg) == 0);
    stack_pool = tu_pool_ex("pages", RP_POOL_STACKS | RP_POOL_STACK_DEPTH(64));
    CHECK(stale_pages_run(m + pg, how, same_place, own_body, set_phase) == 0);
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
