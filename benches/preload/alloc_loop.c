/* An allocation-heavy loop for the interposer's overhead bench: N rounds of
   free-one/malloc-one over a working set of live blocks (mixed sizes, one
   byte written per block), then everything freed. Prints a checksum so the
   work cannot be optimised away and runs can be compared.
   usage: alloc_loop [ROUNDS] [LIVE] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 10000000;
    long live = argc > 2 ? atol(argv[2]) : 4096;
    if (rounds <= 0 || live <= 0) {
        fprintf(stderr, "alloc_loop: ROUNDS and LIVE must be positive integers\n");
        return 2;
    }
    unsigned char **slot = calloc((size_t)live, sizeof *slot);
    if (!slot)
        return 1;
    uint32_t x = 2463534242u;
    uint64_t sum = 0;
    for (long r = 0; r < rounds; r++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        long k = (long)(x % (uint32_t)live);
        if (slot[k])
            sum += slot[k][0];
        free(slot[k]);
        size_t size = 8 + ((x >> 12) & 511);
        slot[k] = malloc(size);
        if (!slot[k])
            return 1;
        slot[k][0] = (unsigned char)r;
    }
    for (long k = 0; k < live; k++)
        free(slot[k]);
    free(slot);
    printf("alloc_loop rounds=%ld live=%ld checksum=%llu\n", rounds, live,
           (unsigned long long)sum);
    return 0;
}
