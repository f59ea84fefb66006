/*
 * geometric.h -- the sampler's arithmetic, shared by the library's sampler
 * (memprof.c) and the interposer's (preload/sample.c): a seeded
 * xoshiro256** stream and the geometric draw of the distance to the next
 * sampled byte. Header-only (static functions), free of libm, malloc and
 * locks, so the interposer can use it anywhere.
 *
 * With U uniform on (0, 1], G = 1 + floor(ln U / ln(1 - r)) has
 * P(G > g) = (1 - r)^g: G is the distance to the first success of
 * independent Bernoulli(r) trials (the derivation is in memprof.c).
 */
#ifndef RP_GEOMETRIC_H
#define RP_GEOMETRIC_H

#include <stdint.h>

/* 2 atanh(s) for |s| small: ln((1 + s) / (1 - s)). */
static inline double rpg_atanh2(double s)
{
    double s2 = s * s, term = s, sum = 0.0;
    for (int i = 1; i < 80; i += 2) {
        double add = term / i;
        sum += add;
        if (add == 0.0 || (add > 0 ? add : -add) < 1e-18 * (sum > 0 ? sum : -sum))
            break;
        term *= s2;
    }
    return 2.0 * sum;
}

/* ln x for finite x > 0. */
static inline double rpg_ln(double x)
{
    int e = 0;
    while (x >= 1.4142135623730951) { x *= 0.5; e++; }
    while (x < 0.7071067811865476) { x *= 2.0; e--; }
    return rpg_atanh2((x - 1.0) / (x + 1.0)) + e * 0.6931471805599453;
}

/* ln(1 - r) for 0 < r < 1, accurate for small r; always negative: for the
   smallest subnormal r, -r / (2 - r) rounds to -0.0 and the series gave
   +0.0, whose inverse (+inf) made every drawn distance negative. -r is
   ln(1 - r) to the last bit there; its inverse, -inf, draws distances
   capped at INT64_MAX / 4 (nothing is sampled). */
static inline double rpg_ln1m(double r)
{
    double l = r < 0.25 ? rpg_atanh2(-r / (2.0 - r)) : rpg_ln(1.0 - r);
    return l < 0.0 ? l : -r;
}

static inline uint64_t rpg_splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Seeds a stream: seed and a stream number (a thread's) give four words. */
static inline void rpg_seed(uint64_t s[4], uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (UINT64_C(0x632BE59BD9B4E019) * (stream + 1));
    for (int i = 0; i < 4; i++)
        s[i] = rpg_splitmix(&x);
}

static inline uint64_t rpg_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rpg_next(uint64_t s[4])   /* xoshiro256** */
{
    uint64_t out = rpg_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rpg_rotl(s[3], 45);
    return out;
}

/* Distance (>= 1) to the next sampled byte; inv_log = 1 / ln(1 - r), or 0
   for r = 1 (every byte). Capped at INT64_MAX / 4. */
static inline int64_t rpg_draw(uint64_t s[4], double inv_log)
{
    if (inv_log == 0.0)
        return 1;
    double u = (double)((rpg_next(s) >> 11) + 1) * 0x1.0p-53;   /* (0, 1] */
    double g = rpg_ln(u) * inv_log;                               /* >= 0 */
    if (!(g < (double)(INT64_MAX / 4)))
        return INT64_MAX / 4;
    return (int64_t)g + 1;
}

/* ln(m 2^-53) for 1 <= m <= 2^53, without a loop: the library's sampler
   draws with it (a draw per sample, so its cost is per sample). m converts
   to a double exactly; with x = m = 2^e f, f in [sqrt(1/2), sqrt(2)),
   ln x = e ln 2 + ln f and ln f = 2 atanh(s), s = (f - 1) / (f + 1),
   |s| <= 0.1716: the series s + s^3/3 + ... + s^21/21 leaves out less than
   s^23/23 < 1e-18 (below a double's rounding of the result). */
static inline double rpg_ln_unit(uint64_t m)
{
    double x = (double)m;
    uint64_t bits;
    __builtin_memcpy(&bits, &x, sizeof bits);
    int e = (int)(bits >> 52) - 1023;
    bits = (bits & UINT64_C(0x000FFFFFFFFFFFFF)) | UINT64_C(0x3FF0000000000000);
    double f;
    __builtin_memcpy(&f, &bits, sizeof f);   /* x = 2^e f, f in [1, 2) */
    if (f >= 1.4142135623730951) {
        f *= 0.5;
        e++;
    }
    double t = (f - 1.0) / (f + 1.0), t2 = t * t;
    double p = 1.0 / 21;
    p = p * t2 + 1.0 / 19;
    p = p * t2 + 1.0 / 17;
    p = p * t2 + 1.0 / 15;
    p = p * t2 + 1.0 / 13;
    p = p * t2 + 1.0 / 11;
    p = p * t2 + 1.0 / 9;
    p = p * t2 + 1.0 / 7;
    p = p * t2 + 1.0 / 5;
    p = p * t2 + 1.0 / 3;
    return 2.0 * t + 2.0 * t * (t2 * p) + (double)(e - 53) * 0.6931471805599453;
}

/* rpg_draw for a splitmix64 stream in one word (*x): the same law. */
static inline int64_t rpg_draw1(uint64_t *x, double inv_log)
{
    if (inv_log == 0.0)
        return 1;
    double g = rpg_ln_unit((rpg_splitmix(x) >> 11) + 1) * inv_log;   /* >= 0 */
    if (!(g < (double)(INT64_MAX / 4)))
        return INT64_MAX / 4;
    return (int64_t)g + 1;
}

#endif /* RP_GEOMETRIC_H */
