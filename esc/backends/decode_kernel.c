/* y = x w^T for a few rows of x (a decode step: 1 to 16 rows) against a large float32 weight w (out x in,
 * row-major, as nn.Linear holds it). Each output row's weights are read from memory once for all rows of
 * x, and the next pair of weight rows is prefetched while this pair is multiplied, so a step of 8 rows
 * costs little more than a step of 1. Built and loaded by decode_linear.py; see there for why. Plain C
 * with GCC/Clang vector extensions: the compiler picks AVX-512, AVX2 or NEON for the machine it runs on.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16
#define TILE 32     /* output rows a thread takes at a time */
#define MAX_ROWS 8  /* rows of x multiplied together; more rows go through again, weights from cache */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static inline vec load(const float *p) {
  vec v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline float total(vec v) {
  float s = 0.0f;
  for (int i = 0; i < LANES; ++i) s += v[i];
  return s;
}

#define PAIR 2 /* output rows multiplied together, each loaded once for all rows of x */

/* rows [0, mb) of x against the nr (1 or PAIR) output rows from o; k16 = k rounded down to whole vectors.
 * The weight rows of the next group are prefetched while these are multiplied. */
static inline __attribute__((always_inline)) void group(int nr, int mb, const float *x, const float *w,
                                                        float *y, int64_t k, int64_t n, int64_t o) {
  const int64_t k16 = k - k % LANES;
  const float *wo = w + o * k;
  vec acc[PAIR][MAX_ROWS];
#pragma GCC unroll 8
  for (int j = 0; j < nr; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < mb; ++r) acc[j][r] = (vec){0};
  for (int64_t i = 0; i < k16; i += LANES) {
    vec b[PAIR];
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) {
      __builtin_prefetch(wo + (PAIR + j) * k + i);
      b[j] = load(wo + j * k + i);
    }
#pragma GCC unroll 8
    for (int r = 0; r < mb; ++r) {
      const vec a = load(x + r * k + i);
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) acc[j][r] += a * b[j];
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < nr; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < mb; ++r) {
      float s = total(acc[j][r]);
      for (int64_t i = k16; i < k; ++i) s += x[r * k + i] * wo[j * k + i];
      y[r * n + o + j] = s;
    }
}

/* rows [0, mb) of x against output rows [n0, n1): pairs, then an odd last row */
static inline __attribute__((always_inline)) void block(int mb, const float *x, const float *w, float *y,
                                                        int64_t k, int64_t n, int64_t n0, int64_t n1) {
  int64_t o = n0;
  for (; o + PAIR <= n1; o += PAIR) group(PAIR, mb, x, w, y, k, n, o);
  for (; o < n1; ++o) group(1, mb, x, w, y, k, n, o);
}

/* one body per row count, so each keeps its accumulators in registers */
static void rows(int mb, const float *x, const float *w, float *y, int64_t k, int64_t n, int64_t n0,
                 int64_t n1) {
  switch (mb) {
    case 1: block(1, x, w, y, k, n, n0, n1); break;
    case 2: block(2, x, w, y, k, n, n0, n1); break;
    case 3: block(3, x, w, y, k, n, n0, n1); break;
    case 4: block(4, x, w, y, k, n, n0, n1); break;
    case 5: block(5, x, w, y, k, n, n0, n1); break;
    case 6: block(6, x, w, y, k, n, n0, n1); break;
    case 7: block(7, x, w, y, k, n, n0, n1); break;
    default: block(8, x, w, y, k, n, n0, n1); break;
  }
}

/* x: m x k, w: n x k, y: m x n, all contiguous float32; OpenMP's threads (torch's own runtime) split the
 * output rows in tiles */
void decode_linear(const float *x, const float *w, float *y, int64_t m, int64_t k, int64_t n) {
  const int64_t tiles = (n + TILE - 1) / TILE;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t n0 = t * TILE, n1 = n0 + TILE < n ? n0 + TILE : n;
    for (int64_t r = 0; r < m; r += MAX_ROWS) {
      const int mb = m - r < MAX_ROWS ? (int)(m - r) : MAX_ROWS;
      rows(mb, x + r * k, w, y + r * n, k, n, n0, n1);
    }
  }
}
