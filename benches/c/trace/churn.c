/*
 * churn.c -- a synthetic allocation workload, recorded like the real
 * programs (benches/c/trace/record.sh): LIVE mixed-size blocks, then OPS
 * random replacements (free one, allocate a new one in its place), then
 * everything freed. Sizes as bench.c's "mixed": 40 % 8-32 B, 30 % 33-128,
 * 20 % 129-512, 8 % 513-2048, 2 % 2049-4096; fixed seed.
 *   churn [LIVE [OPS]]      (defaults 10000 and 1000000)
 */
#define _POSIX_C_SOURCE 200809L   /* sizes.h reads CLOCK_MONOTONIC */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sizes.h"

static uint64_t state = RPB_SEED;
static uint64_t rng(void) { return rpg_splitmix(&state); }
static size_t mixed(void) { return rpb_mixed_size(&state); }

static size_t arg(const char *s, size_t dflt, size_t max)
{
    if (!s) return dflt;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || end == s || v == 0 || v > max) {
        fprintf(stderr, "churn: '%s' is not a whole number in [1, %zu]\n", s, max);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t live = arg(argc > 1 ? argv[1] : NULL, 10000, (size_t)1 << 24);
    size_t ops = arg(argc > 2 ? argv[2] : NULL, 1000000, (size_t)1 << 32);
    char **slot = calloc(live, sizeof *slot);
    if (!slot) return 1;
    unsigned long sum = 0;
    for (size_t i = 0; i < live; i++) {
        size_t n = mixed();
        if (!(slot[i] = malloc(n))) return 1;
        memset(slot[i], (int)i, n < 16 ? n : 16);
    }
    for (size_t i = 0; i < ops; i++) {
        size_t k = (size_t)(rng() % live), n = mixed();
        sum += (unsigned char)slot[k][0];
        free(slot[k]);
        if (!(slot[k] = malloc(n))) return 1;
        memset(slot[k], (int)i, n < 16 ? n : 16);
    }
    for (size_t i = 0; i < live; i++) free(slot[i]);
    free(slot);
    printf("churn: %zu live, %zu replacements, checksum %lu\n", live, ops, sum);
    return 0;
}
