/* The stack table (csrc/stack/stack.c) on its own: stacks that share their
   outer frames with stacks interned before them, at every length, with
   near misses (one frame different, in the part a record shares or in its
   own part; one frame more or fewer; a stack that is all outer frames of
   another). Each stack interned must come back with an id whose frames
   are exactly its own, the same id when interned again (after the table
   grew and its records filled several chunks), and different stacks
   different ids. In half the stacks the first frame is chosen so that
   the hash collides with others of the same depth (one of 4 values before
   the depth is mixed in; the hash step is invertible), so that the table
   compares frames wherever a probe meets a record. Exits 0 when all hold, else prints
   the first failure.

   Built three ways (mk/stack.mk): as the interposer builds the table (a
   stack known by its hash and fingerprint: the forced hash collisions
   must be told apart by the fingerprint); with every fingerprint equal
   and the exact comparison of frames (RPI_STACK_FP_COLLIDE and
   RPI_STACK_EXACT: the same checks hold by the frames alone); and with
   every fingerprint equal and no comparison (RPI_STACK_FP_COLLIDE alone),
   where a stack whose hash and fingerprint are another's of the same depth
   is taken for it, as docs/preload.md says: that build checks the
   confusion stays what is documented (the first stack's id and frames
   kept, never a stack of another depth, a stack with another hash its own
   id) instead of the exactness above. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack.h"

#define BASES 8
#define STACKS 30000
#define MAXN 72

static uint64_t seed = 0x243F6A8885A308D3ull;

static uint32_t next(void)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(seed >> 33);
}

static uintptr_t base[BASES][MAXN];
static uintptr_t stacks[STACKS][MAXN];
static size_t depth[STACKS];
static uint32_t ids[STACKS];

static uint32_t intern(size_t i) { return rpi_stack_intern(stacks[i], depth[i]); }

/* This stack, as the cached walker finds it (it folds the hash and the
   fingerprint as it reads the frames; the table computes them again from
   the frames when it grows or is given frames): the id must be the one
   the same frames get from rpi_stack_intern, before and after the table
   grew. */
static __attribute__((noinline)) uint32_t walked(void)
{
    uint32_t id = rpi_stack_capture(64, 0, 0);
    __asm__ volatile("" ::: "memory");   /* not a tail call */
    return id;
}

static __attribute__((noinline)) int walk_agrees(uint32_t *want)
{
    uint32_t id = walked();
    const uintptr_t *f;
    size_t n = rpi_stack_get(id, &f);
    if (!id || !n || rpi_stack_intern(f, n) != id || (*want && id != *want)) {
        fprintf(stderr, "the walked stack: id %u (%zu frames), before %u\n", id, n, *want);
        return 1;
    }
    *want = id;
    return 0;
}

/* s[0] chosen so that the hash of s[0..n), before the depth is mixed in,
   is h: the steps undone from the outermost frame in. */
static void collide(uintptr_t *s, size_t n, uint64_t h)
{
    for (size_t k = n - 1; k >= 1; k--)
        h = (h * RPI_STACK_HASH_MUL_INVERSE) ^ s[k];
    s[0] = (uintptr_t)((h * RPI_STACK_HASH_MUL_INVERSE) ^ RPI_STACK_HASH_SEED);
}

static int check(size_t i, uint32_t id)
{
    const uintptr_t *f;
    size_t n = rpi_stack_get(id, &f);
    if (!id || n != depth[i] || memcmp(f, stacks[i], n * sizeof *f) != 0) {
        fprintf(stderr, "stack %zu (%zu frames): id %u has %zu other frames\n", i, depth[i], id, n);
        return 1;
    }
    return 0;
}

#if defined(RPI_STACK_FP_COLLIDE) && !defined(RPI_STACK_EXACT)
/* Every fingerprint equal and no comparison of frames. */
static int confusion(void)
{
    uintptr_t a[8], b[8], c[9], d[8];
    for (int k = 0; k < 8; k++)
        a[k] = 0x400000u + 16u * (next() % 4096);
    memcpy(b, a, sizeof a);
    b[5] += 16;
    collide(a, 8, 0x0123456789abcdefull);
    collide(b, 8, 0x0123456789abcdefull);   /* a's hash, other frames */
    memcpy(c + 1, b, sizeof b);
    c[0] = 0x400000u;
    collide(c, 9, 0x0123456789abcdefull);   /* a's hash before the depth, one frame more */
    memcpy(d, a, sizeof a);
    d[3] += 32;                              /* another hash */
    uint32_t ia = rpi_stack_intern(a, 8), ib = rpi_stack_intern(b, 8);
    uint32_t ic = rpi_stack_intern(c, 9), id = rpi_stack_intern(d, 8);
    const uintptr_t *f;
    if (!ia || ib != ia || rpi_stack_get(ia, &f) != 8 || memcmp(f, a, sizeof a) != 0) {
        fprintf(stderr, "the colliding stack: ids %u %u, not the first one's frames\n", ia, ib);
        return 1;
    }
    if (!ic || ic == ia || rpi_stack_get(ic, &f) != 9 || memcmp(f, c, sizeof c) != 0) {
        fprintf(stderr, "a stack one frame deeper: id %u (the first %u)\n", ic, ia);
        return 1;
    }
    if (!id || id == ia || id == ic || rpi_stack_get(id, &f) != 8 || memcmp(f, d, sizeof d) != 0) {
        fprintf(stderr, "a stack with another hash: id %u\n", id);
        return 1;
    }
    if (rpi_stack_intern(b, 8) != ia || rpi_stack_intern(a, 8) != ia || rpi_stack_intern(d, 8) != id) {
        fprintf(stderr, "another id the second time\n");
        return 1;
    }
    printf("colliding fingerprints: one id for two stacks of one hash and depth\n");
    return 0;
}
#endif

static int table_checks(void)
{
    for (int b = 0; b < BASES; b++)
        for (int k = 0; k < MAXN; k++)
            base[b][k] = 0x400000u + 16u * (next() % 4096);
    for (size_t i = 0; i < STACKS; i++) {
        uintptr_t *s = stacks[i];
        size_t n = 1 + next() % MAXN;
        size_t outer = next() % (n + 1);   /* frames taken from a base's end */
        const uintptr_t *b = base[next() % BASES];
        for (size_t k = 0; k < n - outer; k++)
            s[k] = 0x400000u + 16u * (next() % 64);
        memcpy(s + n - outer, b + MAXN - outer, outer * sizeof *s);
        switch (next() % 8) {
        case 0:     /* one frame different, anywhere */
            s[next() % n] += 16;
            break;
        case 1:     /* an earlier stack with one frame different */
            if (i) {
                size_t j = next() % i;
                n = depth[j];
                memcpy(s, stacks[j], n * sizeof *s);
                s[next() % n] ^= 32;
            }
            break;
        case 2:     /* an earlier stack without its first frame */
            if (i && depth[i - 1] > 1) {
                n = depth[i - 1] - 1;
                memcpy(s, stacks[i - 1] + 1, n * sizeof *s);
            }
            break;
        case 3:     /* an earlier stack with one frame more on the leaf side */
            if (i && depth[i - 1] < MAXN) {
                n = depth[i - 1] + 1;
                s[0] = 0x400000u + 16u * (next() % 64);
                memcpy(s + 1, stacks[i - 1], (n - 1) * sizeof *s);
            }
            break;
        case 4:     /* an earlier stack again */
            if (i) {
                size_t j = next() % i;
                n = depth[j];
                memcpy(s, stacks[j], n * sizeof *s);
            }
            break;
        default:
            break;
        }
        if (i & 1)
            collide(s, n, 0x0123456789abcdefull + next() % 4);
        depth[i] = n;
        ids[i] = intern(i);
        if (check(i, ids[i]))
            return 1;
    }
    for (size_t i = 0; i < STACKS; i++) {
        if (intern(i) != ids[i]) {
            fprintf(stderr, "stack %zu: another id the second time\n", i);
            return 1;
        }
        if (check(i, ids[i]))
            return 1;
    }
    uint32_t count = rpi_stack_count();
    if (count < STACKS / 2) {
        fprintf(stderr, "only %u ids for %d stacks\n", count, STACKS);
        return 1;
    }
    printf("%d stacks, %u ids\n", STACKS, count - 1);
    return 0;
}

int main(void)
{
    if (rpi_stack_init() != 0) {
        fprintf(stderr, "rpi_stack_init failed\n");
        return 1;
    }
#if defined(RPI_STACK_FP_COLLIDE) && !defined(RPI_STACK_EXACT)
    return confusion();
#endif
    uint32_t walked_id = 0;
    for (int round = 0; round < 2; round++) {
        if (walk_agrees(&walked_id))
            return 1;
        if (!round && table_checks())
            return 1;
    }
    return 0;
}
