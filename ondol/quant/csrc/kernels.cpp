// ondol's CPU kernels for one decode step: y[M, N] = x[M, K] @ W[N, K]^T for a few rows of x
// (M <= 16), with W in bf16, int8 or int4 (ondol/quant/formats.py), and the dequantizer the
// prefill path uses before a float32 GEMM. Built at first use by ondol/quant/build.py with the
// machine's compiler for the machine's CPU (-march=native); every op has a plain-PyTorch
// counterpart in ondol/quant/kernels.py that tests compare it against.
//
// Decode reads every weight once per token, so these loops are about streaming weight bytes at
// memory speed: rows go to torch's threads (at::parallel_for, torch's own OpenMP pool) in chunks of
// contiguous rows, and for one row of x each thread reads a chunk's rows one after another, a single
// sequential stream (reading four rows side by side measured slower; with several rows of x, bf16
// still does, to share each weight load between them). The inner loops are AVX-512: BF16 dot
// products for bf16, VNNI u8 x s8 dot products for int8 and int4 with activations rounded to int8.
//
// Shapes: x [M, K] contiguous; W rows contiguous; scales/zeros float16 [N, K / group].

#include "kernels.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <vector>

namespace {

using at::Tensor;
using bf16 = c10::BFloat16;

constexpr int64_t TILE = 4;  // rows of W per inner loop

inline float half_to_float(const c10::Half* p) { return static_cast<float>(*p); }

template <typename Out>
inline void store(Out* y, float v) { *y = static_cast<Out>(v); }

// Ask for the bytes [p + AHEAD, p + AHEAD + n) to be brought into L2. The hardware prefetchers alone
// keep too few reads in flight: prefetching 4 KB ahead raised a streamed bf16 row from 22 to
// 26-28 GB/s on a 2-core EPYC (docs/performance.md).
constexpr int64_t AHEAD = 4096;
inline void prefetch_l2(const void* p, int64_t n) {
  const char* c = static_cast<const char*>(p) + AHEAD;
  for (int64_t i = 0; i < n; i += 64) _mm_prefetch(c + i, _MM_HINT_T1);
}

// Rows of W handed to the threads in chunks through a shared counter, each chunk a whole number of
// TILEs: a thread that finishes early takes the next chunk. On a VM one vCPU often runs slower than
// the other for a while, and fixed halves left the faster one idle at the end of every matmul
// (a streamed bf16 row: 27-30 GB/s in fixed halves, 29-33 with chunks; docs/performance.md).
template <typename F>
void for_row_tiles(int64_t n, F body) {
  auto tiles = [&](int64_t n0, int64_t n1) {
    for (int64_t t = n0; t < n1; t += TILE) body(t, std::min(n1, t + TILE));
  };
  const int64_t threads = at::get_num_threads();
  // about 8 chunks a thread, 16 to 256 rows each
  const int64_t chunk = std::clamp<int64_t>(n / (threads * 8) / TILE * TILE, 16, 256);
  if (threads == 1 || n <= chunk || at::in_parallel_region()) {
    tiles(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t n0 = next.fetch_add(chunk); n0 < n; n0 = next.fetch_add(chunk)) tiles(n0, std::min(n, n0 + chunk));
  });
}

// --- bf16 ------------------------------------------------------------------------------------

inline __m512bh load_bh(const bf16* p) { return (__m512bh)_mm512_loadu_si512(p); }
inline __m512bh load_bh_tail(const bf16* p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

template <typename Out>
void bf16_linear(const bf16* x, int64_t M, int64_t K, const bf16* w, int64_t N, Out* y) {
  const int64_t body = K / 32 * 32;
  const __mmask32 tail = (K - body) ? (__mmask32)((1ull << (K - body)) - 1) : 0;
  for_row_tiles(N, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m) {
      const bf16* xm = x + m * K;
      if (M == 1 && body == K && K % 128 == 0) {
        // One row at a time, rows in memory order: each thread reads one sequential stream.
        for (int64_t n = n0; n < n1; ++n) {
          const bf16* wn = w + n * K;
          __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
          for (int64_t k = 0; k < K; k += 128) {
            prefetch_l2(wn + k, 256);
            a0 = _mm512_dpbf16_ps(a0, load_bh(wn + k), load_bh(xm + k));
            a1 = _mm512_dpbf16_ps(a1, load_bh(wn + k + 32), load_bh(xm + k + 32));
            a2 = _mm512_dpbf16_ps(a2, load_bh(wn + k + 64), load_bh(xm + k + 64));
            a3 = _mm512_dpbf16_ps(a3, load_bh(wn + k + 96), load_bh(xm + k + 96));
          }
          store(y + n, _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))));
        }
        continue;
      }
      if (n1 - n0 == TILE) {
        const bf16 *w0 = w + n0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t k = 0; k < body; k += 32) {
          const __m512bh xv = load_bh(xm + k);
          a0 = _mm512_dpbf16_ps(a0, load_bh(w0 + k), xv);
          a1 = _mm512_dpbf16_ps(a1, load_bh(w1 + k), xv);
          a2 = _mm512_dpbf16_ps(a2, load_bh(w2 + k), xv);
          a3 = _mm512_dpbf16_ps(a3, load_bh(w3 + k), xv);
        }
        if (tail) {
          const __m512bh xv = load_bh_tail(xm + body, tail);
          a0 = _mm512_dpbf16_ps(a0, load_bh_tail(w0 + body, tail), xv);
          a1 = _mm512_dpbf16_ps(a1, load_bh_tail(w1 + body, tail), xv);
          a2 = _mm512_dpbf16_ps(a2, load_bh_tail(w2 + body, tail), xv);
          a3 = _mm512_dpbf16_ps(a3, load_bh_tail(w3 + body, tail), xv);
        }
        Out* ym = y + m * N + n0;
        store(ym, _mm512_reduce_add_ps(a0));
        store(ym + 1, _mm512_reduce_add_ps(a1));
        store(ym + 2, _mm512_reduce_add_ps(a2));
        store(ym + 3, _mm512_reduce_add_ps(a3));
        continue;
      }
      for (int64_t n = n0; n < n1; ++n) {
        const bf16* wn = w + n * K;
        __m512 a = _mm512_setzero_ps();
        for (int64_t k = 0; k < body; k += 32) a = _mm512_dpbf16_ps(a, load_bh(wn + k), load_bh(xm + k));
        if (tail) a = _mm512_dpbf16_ps(a, load_bh_tail(wn + body, tail), load_bh_tail(xm + body, tail));
        store(y + m * N + n, _mm512_reduce_add_ps(a));
      }
    }
  });
}

// --- int8 with K not a multiple of 64: dequantize 16 weights at a time to float32 and multiply-add
// (activations stay exact) -------------------------------------------------------------------------

inline __m512 load_q8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <typename Out>
void int8_linear(const float* x, int64_t M, int64_t K, const int8_t* q, const c10::Half* s, int64_t group,
                 int64_t N, Out* y) {
  const int64_t groups = K / group;
  for_row_tiles(N, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      for (int64_t n = n0; n < n1; n += 2) {
        const bool two = n + 1 < n1;
        const int8_t* q0 = q + n * K;
        const int8_t* q1 = two ? q0 + K : q0;
        const c10::Half* s0 = s + n * groups;
        const c10::Half* s1 = two ? s0 + groups : s0;
        __m512 t0 = _mm512_setzero_ps(), t1 = t0;
        for (int64_t g = 0; g < groups; ++g) {
          __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
          const int64_t k0 = g * group, k1 = k0 + group;
          int64_t k = k0;
          for (; k + 32 <= k1; k += 32) {  // two independent chains per row hide the FMA latency
            const __m512 xa = _mm512_loadu_ps(xm + k), xb = _mm512_loadu_ps(xm + k + 16);
            a0 = _mm512_fmadd_ps(load_q8(q0 + k), xa, a0);
            b0 = _mm512_fmadd_ps(load_q8(q0 + k + 16), xb, b0);
            a1 = _mm512_fmadd_ps(load_q8(q1 + k), xa, a1);
            b1 = _mm512_fmadd_ps(load_q8(q1 + k + 16), xb, b1);
          }
          for (; k < k1; k += 16) {
            const __m512 xa = _mm512_loadu_ps(xm + k);
            a0 = _mm512_fmadd_ps(load_q8(q0 + k), xa, a0);
            a1 = _mm512_fmadd_ps(load_q8(q1 + k), xa, a1);
          }
          t0 = _mm512_fmadd_ps(_mm512_add_ps(a0, b0), _mm512_set1_ps(half_to_float(s0 + g)), t0);
          t1 = _mm512_fmadd_ps(_mm512_add_ps(a1, b1), _mm512_set1_ps(half_to_float(s1 + g)), t1);
        }
        store(y + m * N + n, _mm512_reduce_add_ps(t0));
        if (two) store(y + m * N + n + 1, _mm512_reduce_add_ps(t1));
      }
    }
  });
}

// --- int4: x quantized to int8 per block of 32 (llama.cpp's Q8_0 activations), u8 x s8 dot ------
//
// One 64-byte load of W holds 4 blocks of 32 weights (16 bytes each: inputs j and j + 16 in the
// low and high nibble of byte j). Its low nibbles meet x's first 16 inputs of each block and its
// high nibbles the last 16, so x is laid out once per call as, per 128 inputs, 64 bytes of
// "first halves" then 64 bytes of "second halves". A dot product then leaves block j's sum in
// lanes 4j..4j+3, scaled there by (scale of its group) x (x's scale of the block).
//
//   sum_k W[k] x[k] = sum_b dx_b * (s_b * (sum q xq - 8 sum xq) + z_b * sum xq)

struct QuantizedX {
  std::vector<int8_t> q;      // [M, chunks * 128], the layout above, zero-filled past K
  std::vector<float> scale;   // [M, chunks * 4]: dx per block
  std::vector<float> sum;     // [M, chunks * 4]: dx * sum(xq) per block (0 past K)
  int64_t chunks;
};

// One block of 32 activations rounded to int8: scale max|x| / 127, round half to even (as
// torch.round in kernels.py's int8_activations_reference). Returns the scale; sum gets sum(xq).
inline float round_block(const float* xb, int8_t* out, int32_t& sum) {
  const __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
  // cvtps rounds to nearest even (the default MXCSR mode), as std::nearbyint and torch.round
  const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(id)));
  const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, _mm512_set1_ps(id)));
  sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtepi32_epi8(qb));
  return d;
}

QuantizedX quantize_x(const float* x, int64_t M, int64_t K) {
  QuantizedX r;
  r.chunks = (K + 127) / 128;
  r.q.assign(M * r.chunks * 128, 0);
  r.scale.assign(M * r.chunks * 4, 0.f);
  r.sum.assign(M * r.chunks * 4, 0.f);
  int8_t block[32];
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < K / 32; ++b) {
      int32_t total;
      const float d = round_block(x + m * K + b * 32, block, total);
      const int64_t c = b / 4, j = b % 4;
      int8_t* dst = r.q.data() + (m * r.chunks + c) * 128;
      std::memcpy(dst + j * 16, block, 16);
      std::memcpy(dst + 64 + j * 16, block + 16, 16);
      r.scale[(m * r.chunks + c) * 4 + j] = d;
      r.sum[(m * r.chunks + c) * 4 + j] = d * static_cast<float>(total);
    }
  }
  return r;
}

// Four group scales (or zeros) of the four blocks of chunk c, as floats: one vector conversion
// (a scalar fp16 conversion per chunk costs as much as the dot products).
template <int G>
inline __m128 block_params(const c10::Half* p, int64_t c, int64_t blocks_left) {
  if (blocks_left < 4) {  // the last chunk of a row: read only the groups that exist
    alignas(16) float v[4] = {0, 0, 0, 0};
    for (int64_t j = 0; j < blocks_left; ++j) v[j] = half_to_float(p + (c * 4 + j) * 32 / G);
    return _mm_load_ps(v);
  }
  if (G == 32) return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + c * 4)));
  if (G == 64) {
    int32_t two;
    std::memcpy(&two, p + c * 2, 4);
    const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(two));  // [a, b, 0, 0]
    return _mm_unpacklo_ps(v, v);                            // [a, a, b, b]
  }
  int16_t one;
  std::memcpy(&one, p + c, 2);
  return _mm_cvtph_ps(_mm_set1_epi16(one));
}

template <int G, typename Out>
void int4_linear(const QuantizedX& xq, int64_t M, int64_t K, const uint8_t* q, const c10::Half* s,
                 const c10::Half* z, int64_t N, Out* y) {
  const int64_t row_bytes = K / 2, groups = K / G;
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  // dx * sum(xq) per group of G inputs, [M, groups]: the "- 8 s + z" part of every row is then
  // one short pass over its groups instead of work in the streaming loop.
  std::vector<float> gsum(M * groups, 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < K / 32; ++b) gsum[m * groups + b * 32 / G] += xq.sum[m * xq.chunks * 4 + b];
  for_row_tiles(N, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* xm = xq.q.data() + m * xq.chunks * 128;
      const float* dxm = xq.scale.data() + m * xq.chunks * 4;
      const float* gsm = gsum.data() + m * groups;
      for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* qn = q + n * row_bytes;
        const c10::Half* sn = s + n * groups;
        const c10::Half* zn = z ? z + n * groups : nullptr;
        __m512 total = _mm512_setzero_ps();
        auto chunk = [&](int64_t c, int64_t left, __m512 t) {
          const __m512i v = left == 4 ? _mm512_loadu_si512(qn + c * 64)
                                      : _mm512_maskz_loadu_epi8((__mmask64)((1ull << (16 * left)) - 1), qn + c * 64);
          const __m512i lo = _mm512_and_si512(v, low);
          const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
          __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xm + c * 128));
          acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(xm + c * 128 + 64));
          const __m128 scale = _mm_mul_ps(block_params<G>(sn, c, left), _mm_loadu_ps(dxm + c * 4));
          const __m512 wide = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(scale));
          return _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), wide, t);
        };
        const int64_t full = K / 128;
        __m512 total2 = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 2 <= full; c += 2) {
          prefetch_l2(qn + c * 64, 128);
          total = chunk(c, 4, total);
          total2 = chunk(c + 1, 4, total2);
        }
        for (; c < xq.chunks; ++c) total = chunk(c, std::min<int64_t>(4, K / 32 - c * 4), total);
        total = _mm512_add_ps(total, total2);
        // sum over groups of (z - 8 s) * gsum, sixteen groups at a time
        __m512 fix = _mm512_setzero_ps();
        int64_t g = 0;
        for (; g + 16 <= groups; g += 16) {
          __m512 coef = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sn + g))),
                                      _mm512_set1_ps(-8.f));
          if (zn) coef = _mm512_add_ps(coef, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(zn + g))));
          fix = _mm512_fmadd_ps(coef, _mm512_loadu_ps(gsm + g), fix);
        }
        float rest = 0.f;
        for (; g < groups; ++g) rest += ((zn ? half_to_float(zn + g) : 0.f) - 8.f * half_to_float(sn + g)) * gsm[g];
        store(y + m * N + n, _mm512_reduce_add_ps(total) + _mm512_reduce_add_ps(fix) + rest);
      }
    }
  });
}

// --- int8 x int8: activations rounded to int8 per block of 32 (llama.cpp's Q8_0 x Q8_0) ---------
//
// For 64 weights: |w| (u8) times x carrying w's sign (s8) with vpdpbusd leaves block 0's sum in
// lanes 0-7 and block 1's in lanes 8-15, scaled there by x's block scale times the weights' group
// scale. 1.6x PyTorch's _weight_int8pack_mm streaming from memory on a 2-core EPYC
// (docs/performance.md). Groups of 16 (GGUF Q6_K), 32 or any multiple of 64; K a multiple of 64.

struct QuantizedX8 {
  std::vector<int8_t> q;   // [M, K]
  std::vector<float> dx;   // [M, K / 64, 16]: lanes 0-7 block 0's scale, lanes 8-15 block 1's
};

QuantizedX8 quantize_x8(const float* x, int64_t M, int64_t K) {
  QuantizedX8 r;
  r.q.resize(M * K);
  r.dx.resize(M * (K / 64) * 16);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < K / 32; ++b) {
      int32_t total;
      const float d = round_block(x + m * K + b * 32, r.q.data() + m * K + b * 32, total);
      std::fill_n(r.dx.data() + (m * (K / 64) + b / 2) * 16 + (b % 2) * 8, 8, d);
    }
  }
  return r;
}

// The u8 x s8 products of 64 weights with x's 64 int8 activations: lanes 0-7 hold block 0's sums,
// lanes 8-15 block 1's.
inline __m512i int8_dot64(const int8_t* w, const int8_t* x) {
  const __m512i wv = _mm512_loadu_si512(w), xv = _mm512_loadu_si512(x), zero = _mm512_setzero_si512();
  const __m512i signed_x = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(wv), zero, xv);
  return _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(wv), signed_x);
}

// G: the weights' group, 16 or 32 (a scale per block, applied with x's in every chunk), or 0 for a
// multiple of 64 given at run time (the group's scale applied once per group: per-row int8 has a
// single group per row, so its loop is dot products, one conversion and one FMA per 64 bytes).
template <int G, typename Out>
void int8_vnni_linear(const QuantizedX8& xq, int64_t M, int64_t K, const int8_t* q, const c10::Half* s,
                      int64_t group, int64_t N, Out* y) {
  const int64_t groups = K / group, chunks = K / 64, per_group = group / 64;
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for_row_tiles(N, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* xm = xq.q.data() + m * K;
      const float* dxm = xq.dx.data() + m * chunks * 16;
      for (int64_t n = n0; n < n1; ++n) {
        const int8_t* qn = q + n * K;
        const c10::Half* sn = s + n * groups;
        __m512 total = _mm512_setzero_ps();
        if constexpr (G == 0) {
          for (int64_t g = 0; g < groups; ++g) {
            __m512 t0 = _mm512_setzero_ps(), t1 = t0;  // two chains hide the FMA latency
            int64_t c = g * per_group;
            auto step = [&](int64_t c, __m512 t) {  // chunk c's sums times x's block scales, added to t
              return _mm512_fmadd_ps(_mm512_cvtepi32_ps(int8_dot64(qn + c * 64, xm + c * 64)), _mm512_loadu_ps(dxm + c * 16), t);
            };
            for (; c + 2 <= (g + 1) * per_group; c += 2) {
              prefetch_l2(qn + c * 64, 128);
              t0 = step(c, t0);
              t1 = step(c + 1, t1);
            }
            if (c < (g + 1) * per_group) {
              prefetch_l2(qn + c * 64, 64);
              t0 = step(c, t0);
            }
            total = _mm512_fmadd_ps(_mm512_add_ps(t0, t1), _mm512_set1_ps(half_to_float(sn + g)), total);
          }
        } else {
          for (int64_t c = 0; c < chunks; ++c) {
            prefetch_l2(qn + c * 64, 64);
            __m512 ws;
            if constexpr (G == 16)  // four groups: lanes 4j..4j+3 hold group j's sums
              ws = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(
                                                     _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sn + 4 * c)))));
            else
              ws = _mm512_insertf32x8(_mm512_set1_ps(half_to_float(sn + 2 * c)), _mm256_set1_ps(half_to_float(sn + 2 * c + 1)), 1);
            const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(dxm + c * 16), ws);
            total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(int8_dot64(qn + c * 64, xm + c * 64)), scale, total);
          }
        }
        store(y + m * N + n, _mm512_reduce_add_ps(total));
      }
    }
  });
}

template <typename Out>
void int8_vnni_dispatch(const QuantizedX8& xq, int64_t M, int64_t K, const int8_t* q, const c10::Half* s,
                        int64_t group, int64_t N, Out* y) {
  if (group == 16) int8_vnni_linear<16>(xq, M, K, q, s, group, N, y);
  else if (group == 32) int8_vnni_linear<32>(xq, M, K, q, s, group, N, y);
  else int8_vnni_linear<0>(xq, M, K, q, s, group, N, y);
}

void check_x(const Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.size(1) == K, "x must be contiguous [M, ", K, "]");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat, "x must be bfloat16 or float32");
}

}  // namespace

// --- the ops (kernels.h; decode.cpp calls them too) ------------------------------------------

namespace ondol {

Tensor bf16_linear_op(const Tensor& x, const Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.is_contiguous() && w.scalar_type() == at::kBFloat16, "w must be contiguous bf16 [N, K]");
  const int64_t N = w.size(0), K = w.size(1), M = x.size(0);
  check_x(x, K);
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "bf16_linear takes bfloat16 x");
  Tensor y = at::empty({M, N}, x.options());
  bf16_linear(x.const_data_ptr<bf16>(), M, K, w.const_data_ptr<bf16>(), N, y.mutable_data_ptr<bf16>());
  return y;
}

Tensor int8_linear_op(const Tensor& x, const Tensor& q, const Tensor& s, int64_t group) {
  const int64_t N = q.size(0), K = q.size(1), M = x.size(0);
  check_x(x, K);
  TORCH_CHECK(q.is_contiguous() && q.scalar_type() == at::kChar, "qweight must be contiguous int8 [N, K]");
  TORCH_CHECK(group % 16 == 0 && K % group == 0, "group must be a multiple of 16 dividing K");
  TORCH_CHECK(s.is_contiguous() && s.scalar_type() == at::kHalf && s.numel() == N * (K / group), "scales must be fp16 [N, K/group]");
  const Tensor xf = x.to(at::kFloat).contiguous();
  Tensor y = at::empty({M, N}, x.options());
  if (K % 64 == 0 && (group == 16 || group == 32 || group % 64 == 0)) {
    const QuantizedX8 xq = quantize_x8(xf.const_data_ptr<float>(), M, K);
    if (x.scalar_type() == at::kBFloat16)
      int8_vnni_dispatch(xq, M, K, q.const_data_ptr<int8_t>(), s.const_data_ptr<c10::Half>(), group, N,
                       y.mutable_data_ptr<bf16>());
    else
      int8_vnni_dispatch(xq, M, K, q.const_data_ptr<int8_t>(), s.const_data_ptr<c10::Half>(), group, N,
                       y.mutable_data_ptr<float>());
    return y;
  }
  if (x.scalar_type() == at::kBFloat16)
    int8_linear(xf.const_data_ptr<float>(), M, K, q.const_data_ptr<int8_t>(), s.const_data_ptr<c10::Half>(), group, N,
                y.mutable_data_ptr<bf16>());
  else
    int8_linear(xf.const_data_ptr<float>(), M, K, q.const_data_ptr<int8_t>(), s.const_data_ptr<c10::Half>(), group, N,
                y.mutable_data_ptr<float>());
  return y;
}

namespace {
template <typename Out>
void int4_dispatch(int64_t group, const QuantizedX& xq, int64_t M, int64_t K, const uint8_t* q, const c10::Half* s,
                   const c10::Half* z, int64_t N, Out* y) {
  if (group == 32) int4_linear<32>(xq, M, K, q, s, z, N, y);
  else if (group == 64) int4_linear<64>(xq, M, K, q, s, z, N, y);
  else int4_linear<128>(xq, M, K, q, s, z, N, y);
}
}  // namespace

Tensor int4_linear_op(const Tensor& x, const Tensor& q, const Tensor& s, const std::optional<Tensor>& z, int64_t group) {
  const int64_t N = q.size(0), K = q.size(1) * 2, M = x.size(0);
  check_x(x, K);
  TORCH_CHECK(q.is_contiguous() && q.scalar_type() == at::kByte, "qweight must be contiguous uint8 [N, K/2]");
  TORCH_CHECK((group == 32 || group == 64 || group == 128) && K % group == 0, "group must be 32, 64 or 128 and divide K");
  TORCH_CHECK(s.is_contiguous() && s.scalar_type() == at::kHalf && s.numel() == N * (K / group), "scales must be fp16 [N, K/group]");
  const c10::Half* zp = nullptr;
  if (z.has_value()) {
    TORCH_CHECK(z->is_contiguous() && z->scalar_type() == at::kHalf && z->numel() == s.numel(), "zeros must match scales");
    zp = z->const_data_ptr<c10::Half>();
  }
  const Tensor xf = x.to(at::kFloat).contiguous();
  const QuantizedX xq = quantize_x(xf.const_data_ptr<float>(), M, K);
  Tensor y = at::empty({M, N}, x.options());
  if (x.scalar_type() == at::kBFloat16)
    int4_dispatch(group, xq, M, K, q.const_data_ptr<uint8_t>(), s.const_data_ptr<c10::Half>(), zp, N, y.mutable_data_ptr<bf16>());
  else
    int4_dispatch(group, xq, M, K, q.const_data_ptr<uint8_t>(), s.const_data_ptr<c10::Half>(), zp, N, y.mutable_data_ptr<float>());
  return y;
}

// W [N, K] in bf16 or float32 written into `out` (a scratch buffer the caller reuses), for the prefill GEMM.
void dequantize_op(const Tensor& q, const Tensor& s, const std::optional<Tensor>& z, int64_t bits, int64_t group,
                   Tensor& out) {
  const int64_t N = q.size(0), K = q.size(1) * (bits == 4 ? 2 : 1), groups = K / group;
  TORCH_CHECK(out.is_contiguous() && (out.scalar_type() == at::kBFloat16 || out.scalar_type() == at::kFloat) &&
                  out.numel() >= N * K, "out must be contiguous bf16 or float32 with N * K elements");
  TORCH_CHECK(s.is_contiguous() && s.scalar_type() == at::kHalf && s.numel() == N * groups, "scales must be fp16 [N, K/group]");
  const c10::Half* sp = s.const_data_ptr<c10::Half>();
  const c10::Half* zp = z.has_value() ? z->const_data_ptr<c10::Half>() : nullptr;
  bf16* o = out.scalar_type() == at::kBFloat16 ? out.mutable_data_ptr<bf16>() : nullptr;
  float* of = o ? nullptr : out.mutable_data_ptr<float>();
  const int8_t* q8 = bits == 8 ? q.const_data_ptr<int8_t>() : nullptr;
  const uint8_t* q4 = bits == 4 ? q.const_data_ptr<uint8_t>() : nullptr;
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t k = 0; k < K; k += 16) {
        const int64_t g = k / group;
        const float sc = half_to_float(sp + n * groups + g);
        __m512 vals;
        if (q8) {
          vals = _mm512_mul_ps(load_q8(q8 + n * K + k), _mm512_set1_ps(sc));
        } else {
          // 16 inputs k..k+15 are the low (k % 32 < 16) or high nibbles of their block's 16 bytes
          const uint8_t* block = q4 + n * (K / 2) + (k / 32) * 16;
          const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
          const __m512i nib = (k % 32) < 16 ? _mm512_and_si512(bytes, _mm512_set1_epi32(15))
                                            : _mm512_srli_epi32(bytes, 4);
          const float zero = zp ? half_to_float(zp + n * groups + g) : 0.f;
          vals = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(nib), _mm512_set1_ps(8.f)), _mm512_set1_ps(sc),
                                 _mm512_set1_ps(zero));
        }
        if (o) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + n * K + k), (__m256i)_mm512_cvtneps_pbh(vals));
        else _mm512_storeu_ps(of + n * K + k, vals);
      }
    }
  });
}

}  // namespace ondol

// How many calls of a parallel loop's body this library makes over torch's threads: one per thread
// when it is built with OpenMP, one in all when it is not (at::parallel_for then runs on the calling
// thread), which a test checks.
int64_t parallel_threads_op() {
  std::atomic<int64_t> calls{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) { calls += 1; });
  return calls;
}

TORCH_LIBRARY(ondol, m) {
  m.def("parallel_threads() -> int", &parallel_threads_op);
  m.def("bf16_linear(Tensor x, Tensor w) -> Tensor", &ondol::bf16_linear_op);
  m.def("int8_linear(Tensor x, Tensor q, Tensor s, int group) -> Tensor", &ondol::int8_linear_op);
  m.def("int4_linear(Tensor x, Tensor q, Tensor s, Tensor? z, int group) -> Tensor", &ondol::int4_linear_op);
  m.def("dequantize(Tensor q, Tensor s, Tensor? z, int bits, int group, Tensor(a!) out) -> ()", &ondol::dequantize_op);
}
