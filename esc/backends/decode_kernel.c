/* y = x w^T for a few rows of x (a decode step: 1 to 16 rows) against a large float32 weight w (out x in,
 * row-major, as nn.Linear holds it). Each output row's weights are read from memory once for all rows of
 * x, and the next group of weight rows is prefetched while this one is multiplied, so a step of 8 rows
 * costs little more than a step of 1. The prefetch asks for the second-level cache, not the first: on the
 * 2-core AMD EPYC of 2026-12-07, one thread then read the weights at 20 GB/s against 14 (torch's sum of
 * the same bytes: 20), and every linear layer of SmolLM2 at 1 row took 16-18 ms on 2 threads against
 * 22-28 (likely because a prefetch into L1 holds one of L1's few miss slots until its line arrives).
 * Built and loaded by decode_linear.py; see there for why. Plain C with GCC/Clang vector extensions: the
 * compiler picks AVX-512, AVX2 or NEON for the machine it runs on.
 */
#include <stdint.h>
#include <string.h>

#define TILE 32     /* output rows a thread takes at a time */
#define MAX_ROWS 8  /* rows of x multiplied together; more rows go through again, weights from cache */

/* LANES floats a vector, GROUP weight rows multiplied together (each loaded once for all rows of x), so
 * GROUP x MAX_ROWS accumulators, chosen for the vector registers the compiler may use. With AVX-512 (32
 * registers of 16 floats), groups of 4 took 8-13% less time than groups of 2 for 1 to 16 rows. Built
 * without AVX-512 on the same machine (16 registers of 8 floats), 16-float vectors took 4-6x the time
 * of 8-float ones at 8 and 16 rows (2026-12-07, AMD EPYC; docs/benchmarks.md). */
#if defined(__AVX512F__)
#define LANES 16
#define GROUP 4
#else
#define LANES 8
#define GROUP 2
#endif

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

/* rows [0, mb) of x against the nr (1 or GROUP) output rows from o; kvec = k rounded down to whole vectors.
 * The weight rows of the next group are prefetched while these are multiplied. */
static inline __attribute__((always_inline)) void group(int nr, int mb, const float *x, const float *w,
                                                        float *y, int64_t k, int64_t n, int64_t o) {
  const int64_t kvec = k - k % LANES;
  const float *wo = w + o * k;
  vec acc[GROUP][MAX_ROWS];
#pragma GCC unroll 8
  for (int j = 0; j < nr; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < mb; ++r) acc[j][r] = (vec){0};
  for (int64_t i = 0; i < kvec; i += LANES) {
    vec b[GROUP];
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) {
      __builtin_prefetch(wo + (GROUP + j) * k + i, 0, 2); /* into L2: see the top of the file */
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
      for (int64_t i = kvec; i < k; ++i) s += x[r * k + i] * wo[j * k + i];
      y[r * n + o + j] = s;
    }
}

/* rows [0, mb) of x against output rows [n0, n1): groups, then the last rows one at a time */
static inline __attribute__((always_inline)) void block(int mb, const float *x, const float *w, float *y,
                                                        int64_t k, int64_t n, int64_t n0, int64_t n1) {
  int64_t o = n0;
  for (; o + GROUP <= n1; o += GROUP) group(GROUP, mb, x, w, y, k, n, o);
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
