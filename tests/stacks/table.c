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
   the first failure. */
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

int main(void)
{
    if (rpi_stack_init() != 0) {
        fprintf(stderr, "rpi_stack_init failed\n");
        return 1;
    }
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
