/* The two kernels of a decode step (built and loaded by decode_linear.py, which says why):
 * decode_linear, the linear layers, and decode_attention, one new token's attention over the KV cache.
 *
 * decode_linear: y = x w^T for a few rows of x (a decode step: 1 to 16 rows) against a large float32
 * weight w (out x in, row-major, as nn.Linear holds it). Each output row's weights are read from memory
 * once for all rows of x, and the next group of weight rows is prefetched while this one is multiplied,
 * so a step of 8 rows costs little more than a step of 1. The prefetch asks for the second-level cache,
 * not the first: on the 2-core AMD EPYC of 2026-12-07, one thread then read the weights at 20 GB/s
 * against 14 (torch's sum of the same bytes: 20), and every linear layer of SmolLM2 at 1 row took 16-18
 * ms on 2 threads against 22-28 (likely because a prefetch into L1 holds one of L1's few miss slots until
 * its line arrives). Plain C with GCC/Clang vector extensions: the compiler picks AVX-512, AVX2 or NEON
 * for the machine it runs on.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
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

/* Keeps a loaded vector in a register: without it, GCC folds the load of a row of x into each of the
 * GROUP products that use it (GROUP loads instead of 1) when the accumulators fill the registers. */
#if defined(__x86_64__)
#define in_register(v) __asm__("" : "+v"(v))
#else
#define in_register(v) ((void)0)
#endif

#if LANES == 16
/* t[c][0] for c < count (at most 2 * LANES; t is overwritten) becomes the sum of t[c]'s lanes, read as
 * t[c / LANES][c % LANES]: the vectors are halved and added in pairs, four times over, so 16 sums cost
 * 15 vector additions where summing each vector's lanes one by one took 240 scalar ones (with 8 rows of
 * a 576-wide layer, a fifth of the kernel's time). Each sum adds its lanes in the same order whatever
 * its place in t, so a row's result still does not depend on the rows beside it. */
static inline __attribute__((always_inline)) void lane_sums(vec *t, int count) {
  const int padded = (count + LANES - 1) / LANES * LANES;
  for (int c = count; c < padded; ++c) t[c] = (vec){0};
  for (int c = 0; c < padded / 2; ++c)
    t[c] = __builtin_shufflevector(t[2 * c], t[2 * c + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                   23) +
           __builtin_shufflevector(t[2 * c], t[2 * c + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29,
                                   30, 31);
  for (int c = 0; c < padded / 4; ++c)
    t[c] = __builtin_shufflevector(t[2 * c], t[2 * c + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26,
                                   27) +
           __builtin_shufflevector(t[2 * c], t[2 * c + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29,
                                   30, 31);
  for (int c = 0; c < padded / 8; ++c)
    t[c] = __builtin_shufflevector(t[2 * c], t[2 * c + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28,
                                   29) +
           __builtin_shufflevector(t[2 * c], t[2 * c + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27,
                                   30, 31);
  for (int c = 0; c < padded / 16; ++c)
    t[c] = __builtin_shufflevector(t[2 * c], t[2 * c + 1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                   30) +
           __builtin_shufflevector(t[2 * c], t[2 * c + 1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                   31);
}
#endif

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
      vec a = load(x + r * k + i);
      in_register(a);
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) acc[j][r] += a * b[j];
    }
  }
#if LANES == 16
  vec t[2 * LANES];
  int count = 0;
#pragma GCC unroll 8
  for (int r = 0; r < mb; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) t[count++] = acc[j][r];
  lane_sums(t, count);
#pragma GCC unroll 8
  for (int r = 0; r < mb; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) {
      const int c = r * nr + j;
      float s = t[c / LANES][c % LANES];
      for (int64_t i = kvec; i < k; ++i) s += x[r * k + i] * wo[j * k + i];
      y[r * n + o + j] = s;
    }
#else
#pragma GCC unroll 8
  for (int j = 0; j < nr; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < mb; ++r) {
      float s = total(acc[j][r]);
      for (int64_t i = kvec; i < k; ++i) s += x[r * k + i] * wo[j * k + i];
      y[r * n + o + j] = s;
    }
#endif
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

/* decode_attention: softmax(q k^T * scale) v for one query token a row (a decode step), every head of every
 * row on its own (so a row's result does not depend on the rows beside it). torch's SDPA took 290 us for a
 * layer of 16 rows x 230 cached tokens of SmolLM2, where reading their keys and values is 2.8 MB; this
 * takes about 100 (2026-12-07, AMD EPYC, 2 threads): one pass over a head's keys for its scores, a vector
 * e^x for their softmax, one pass over its values. */

typedef int32_t ivec __attribute__((vector_size(LANES * sizeof(int32_t))));
#define MAX_HEAD_VECTORS 16 /* head size / LANES, at most */

static inline void put(float *p, vec v) { memcpy(p, &v, sizeof v); }
static inline vec splat(float x) { return (vec){0} + x; }

/* the sum of a vector's lanes, halving it (a tree, not left to right like total) */
static inline float tree_total(vec v) {
  typedef float f8 __attribute__((vector_size(8 * sizeof(float))));
  typedef float f4 __attribute__((vector_size(4 * sizeof(float))));
#if LANES == 16
  const f8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#else
  const f8 a = v;
#endif
  const f4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

/* e^x lane by lane for x <= 0 (a score less the largest): 2^n times a degree-7 polynomial of what is left
 * (|r| <= ln 2 / 2), within a few ulp; exactly 0 below -87 (under float's normal range) and for -inf */
static inline vec exp_nonpositive(vec x) {
  const ivec keep = x >= -87.0f;
  x = (vec)(((ivec)x & keep) | ((ivec)splat(-87.0f) & ~keep));
  const vec n = __builtin_convertvector(__builtin_convertvector(x * 1.44269504f - 0.5f, ivec), vec);
  const vec r = x - n * 0.693145752f - n * 1.42860677e-6f; /* ln 2 in two parts */
  vec p = splat(1.0f / 5040);
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const ivec two_n = (__builtin_convertvector(n, ivec) + 127) << 23;
  return (vec)((ivec)(p * (vec)two_n) & keep);
}

/* one head of one row: nv vectors a head; p: room for len rounded up to whole vectors */
static inline __attribute__((always_inline)) void attend(int nv, const float *q, const float *k,
                                                         const float *v, const uint8_t *m, float *o,
                                                         int64_t len, int64_t ksl, int64_t vsl, float scale,
                                                         float *p) {
  vec qv[MAX_HEAD_VECTORS] = {0}, acc[MAX_HEAD_VECTORS] = {0};
#pragma GCC unroll 16
  for (int c = 0; c < nv; ++c) qv[c] = load(q + c * LANES) * scale;
  float top = -INFINITY;
  for (int64_t l = 0; l < len; ++l) {
    const float *kl = k + l * ksl;
    vec s = qv[0] * load(kl);
#pragma GCC unroll 16
    for (int c = 1; c < nv; ++c) s += qv[c] * load(kl + c * LANES);
    const float x = (m && !m[l]) ? -INFINITY : tree_total(s);
    p[l] = x;
    top = x > top ? x : top;
  }
  const int64_t whole = (len + LANES - 1) / LANES * LANES;
  for (int64_t l = len; l < whole; ++l) p[l] = -INFINITY;
  vec sum = (vec){0};
  for (int64_t l = 0; l < whole; l += LANES) {
    const vec e = exp_nonpositive(load(p + l) - top);
    put(p + l, e);
    sum += e;
  }
  for (int64_t l = 0; l < len; ++l) {
    const vec w = splat(p[l]);
    const float *vl = v + l * vsl;
#pragma GCC unroll 16
    for (int c = 0; c < nv; ++c) acc[c] += w * load(vl + c * LANES);
  }
  const float s = tree_total(sum), inv = s > 0.0f ? 1.0f / s : 0.0f; /* every key masked: zeros */
#pragma GCC unroll 16
  for (int c = 0; c < nv; ++c) put(o + c * LANES, acc[c] * inv);
}

/* q: [b, heads, d] contiguous; k, v: [b, kv_heads, len, d] with strides (row, head, position) and
 * contiguous heads; mask: [b, len] bytes, 1 where a key is attended to, rows msb apart (NULL: all are);
 * out: [b, heads, d]. Query head h reads kv head h / (heads / kv_heads). Returns 0, or -1 (out is not
 * to be used) for a head size that is not whole vectors of at most MAX_HEAD_VECTORS, or heads that
 * don't divide, or a failed allocation. */
int decode_attention(const float *q, const float *k, const float *v, const uint8_t *mask, float *out,
                     int64_t b, int64_t heads, int64_t kv_heads, int64_t len, int64_t d, int64_t ksb,
                     int64_t ksh, int64_t ksl, int64_t vsb, int64_t vsh, int64_t vsl, int64_t msb,
                     float scale) {
  if (d % LANES || d / LANES > MAX_HEAD_VECTORS || d < LANES || kv_heads < 1 || heads % kv_heads) return -1;
  const int64_t group = heads / kv_heads, items = b * heads;
  const int nv = (int)(d / LANES);
  int failed = 0;
#pragma omp parallel reduction(| : failed)
  {
    float *p = malloc(sizeof(float) * (size_t)(len + LANES));
    failed = p == NULL;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items; ++i) {
      if (p == NULL) continue;
      const int64_t r = i / heads, g = i % heads / group;
      const float *qh = q + i * d, *kh = k + r * ksb + g * ksh, *vh = v + r * vsb + g * vsh;
      const uint8_t *m = mask ? mask + r * msb : NULL;
      switch (nv) { /* one body for each common head size, so its vectors stay in registers */
        case 4: attend(4, qh, kh, vh, m, out + i * d, len, ksl, vsl, scale, p); break;
        case 8: attend(8, qh, kh, vh, m, out + i * d, len, ksl, vsl, scale, p); break;
        default: attend(nv, qh, kh, vh, m, out + i * d, len, ksl, vsl, scale, p); break;
      }
    }
    free(p);
  }
  return failed ? -1 : 0;
}
