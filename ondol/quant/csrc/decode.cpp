// One decode step through every decoder layer in a single call (ondol/model/fused.py).
//
// Decoding a token runs ~40 small operations per layer; called from Python one by one, each costs
// a few microseconds of interpreter and dispatcher time, which at 16 layers is milliseconds per
// token on top of the weight reads. Here the loop over layers, RMSNorm, RoPE, the paged KV-cache
// write, single-query attention, SwiGLU and the residual adds are plain C++; the matmuls are
// kernels.cpp's. Python calls this once per step, whatever the number of layers.
//
// It computes what ondol/model/llama.py computes, rounding where the PyTorch modules round (every
// op's output is stored in the model's dtype, bf16 or float32); the Python layers are the
// reference the tests compare it against.
//
// Shapes: x [n, H] (n sequences, one new token each); cos, sin [n, D]; k_cache, v_cache
// [layers, slots, KV, D]; write_slots [n]; read_slots [n, S] (the cache slots each row attends
// over, its first lengths[i] valid); weights: per layer the two norm weights, then q, k, v, o,
// gate, up, down as (weight or qweight, scales, zeros, bias), an empty tensor for "none".

#include "kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

using at::Tensor;
using bf16 = c10::BFloat16;

constexpr int64_t LINEARS = 7;                      // q, k, v, o, gate, up, down
constexpr int64_t PER_LAYER = 2 + 4 * LINEARS;      // two norms, then four tensors a linear
enum Kind : int64_t { DENSE = 0, INT4 = 4, INT8 = 8 };

struct Linear {
  int64_t kind, group;
  const Tensor *w, *scales, *zeros, *bias;
};

inline bool present(const Tensor& t) { return t.defined() && t.numel() > 0; }

Tensor linear(const Linear& l, const Tensor& x) {
  Tensor y;
  if (l.kind == INT8) {
    y = ondol::int8_linear_op(x, *l.w, *l.scales, l.group);
  } else if (l.kind == INT4) {
    y = ondol::int4_linear_op(x, *l.w, *l.scales, present(*l.zeros) ? std::optional<Tensor>(*l.zeros) : std::nullopt,
                              l.group);
  } else if (x.scalar_type() == at::kBFloat16 && l.w->scalar_type() == at::kBFloat16) {
    y = ondol::bf16_linear_op(x, *l.w);
  } else {
    return at::linear(x, *l.w, present(*l.bias) ? std::optional<Tensor>(*l.bias) : std::nullopt);
  }
  if (present(*l.bias)) y.add_(l.bias->to(y.scalar_type()));
  return y;
}

// RMSNorm as llama.py's: normalise in float32, round to the dtype, then scale (rounded again).
template <typename T>
void rms_norm(const T* x, const T* w, T* out, int64_t n, int64_t H, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * H;
    float ss = 0.f;
    for (int64_t k = 0; k < H; ++k) ss += static_cast<float>(xi[k]) * static_cast<float>(xi[k]);
    const float r = 1.f / std::sqrt(ss / static_cast<float>(H) + eps);
    for (int64_t k = 0; k < H; ++k) {
      const T h = static_cast<T>(static_cast<float>(xi[k]) * r);
      out[i * H + k] = static_cast<T>(static_cast<float>(w[k]) * static_cast<float>(h));
    }
  }
}

// x * cos + rotate_half(x) * sin for every head of every row, each product rounded as in rope.py.
template <typename T>
void rope(T* x, const T* cos, const T* sin, int64_t n, int64_t heads, int64_t D) {
  const int64_t half = D / 2;
  std::vector<float> v(D);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      T* p = x + (i * heads + h) * D;
      for (int64_t d = 0; d < D; ++d) v[d] = static_cast<float>(p[d]);
      for (int64_t d = 0; d < D; ++d) {
        const float rot = d < half ? -v[d + half] : v[d - half];
        const T a = static_cast<T>(v[d] * static_cast<float>(cos[i * D + d]));
        const T b = static_cast<T>(rot * static_cast<float>(sin[i * D + d]));
        p[d] = static_cast<T>(static_cast<float>(a) + static_cast<float>(b));
      }
    }
  }
}

// Up to sixteen values (the lanes of mask) as float32, zeros elsewhere.
inline __m512 load16(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline __m512 load16(const bf16* p, __mmask16 mask) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}

// out[i, h] = softmax(q[i, h] . K / sqrt(D)) V over row i's cached slots, in float32. One job per
// (row, head); the dot products and the weighted sum run sixteen lanes at a time (D <= 256,
// checked by the caller).
template <typename T>
void attend(const T* q, const T* kc, const T* vc, const int64_t* slots, int64_t S, const int64_t* lengths,
            int64_t n, int64_t H, int64_t KV, int64_t D, T* out) {
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const int64_t per_kv = H / KV, vecs = (D + 15) / 16;
  const __mmask16 last = D % 16 ? static_cast<__mmask16>((1u << (D % 16)) - 1) : static_cast<__mmask16>(0xFFFF);
  auto lanes = [&](int64_t j) { return j + 1 == vecs ? last : static_cast<__mmask16>(0xFFFF); };
  at::parallel_for(0, n * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> score;
    __m512 acc[16];  // D <= 256
    __m512 qv[16];
    for (int64_t job = begin; job < end; ++job) {
      const int64_t i = job / H, h = job % H, g = h / per_kv, len = lengths[i];
      for (int64_t j = 0; j < vecs; ++j) qv[j] = load16(q + job * D + j * 16, lanes(j));
      score.resize(len);
      float best = -INFINITY;
      for (int64_t t = 0; t < len; ++t) {
        const T* k = kc + (slots[i * S + t] * KV + g) * D;
        __m512 dot = _mm512_mul_ps(qv[0], load16(k, lanes(0)));
        for (int64_t j = 1; j < vecs; ++j) dot = _mm512_fmadd_ps(qv[j], load16(k + j * 16, lanes(j)), dot);
        score[t] = _mm512_reduce_add_ps(dot) * scale;
        best = std::max(best, score[t]);
      }
      float total = 0.f;
      for (int64_t j = 0; j < vecs; ++j) acc[j] = _mm512_setzero_ps();
      for (int64_t t = 0; t < len; ++t) {
        const float p = std::exp(score[t] - best);
        total += p;
        const T* v = vc + (slots[i * S + t] * KV + g) * D;
        const __m512 pv = _mm512_set1_ps(p);
        for (int64_t j = 0; j < vecs; ++j) acc[j] = _mm512_fmadd_ps(pv, load16(v + j * 16, lanes(j)), acc[j]);
      }
      alignas(64) float o[16];
      for (int64_t j = 0; j < vecs; ++j) {
        _mm512_store_ps(o, _mm512_div_ps(acc[j], _mm512_set1_ps(total)));
        for (int64_t d = 0; d < std::min<int64_t>(16, D - j * 16); ++d) out[job * D + j * 16 + d] = static_cast<T>(o[d]);
      }
    }
  });
}

template <typename T>
void add_into(T* x, const T* y, int64_t count) {
  for (int64_t j = 0; j < count; ++j) x[j] = static_cast<T>(static_cast<float>(x[j]) + static_cast<float>(y[j]));
}

template <typename T>
Tensor run(const Tensor& x_in, const Tensor& cos, const Tensor& sin, const std::vector<Tensor>& weights,
           const std::vector<int64_t>& kinds, const std::vector<int64_t>& groups, Tensor& k_cache, Tensor& v_cache,
           const Tensor& write_slots, const Tensor& read_slots, const Tensor& lengths, int64_t H, int64_t KV,
           double eps) {
  const int64_t n = x_in.size(0), hidden = x_in.size(1), D = cos.size(1), layers = k_cache.size(0);
  const int64_t slots = k_cache.size(1), S = read_slots.size(1);
  Tensor x = x_in.clone();
  Tensor h = at::empty_like(x);
  T* xp = x.mutable_data_ptr<T>();
  T* hp = h.mutable_data_ptr<T>();
  const T* cp = cos.const_data_ptr<T>();
  const T* sp = sin.const_data_ptr<T>();
  const int64_t* ws = write_slots.const_data_ptr<int64_t>();
  for (int64_t layer = 0; layer < layers; ++layer) {
    const Tensor* lw = weights.data() + layer * PER_LAYER;
    Linear lin[LINEARS];
    for (int64_t j = 0; j < LINEARS; ++j) {
      const Tensor* t = lw + 2 + 4 * j;
      lin[j] = {kinds[layer * LINEARS + j], groups[layer * LINEARS + j], t, t + 1, t + 2, t + 3};
    }
    // attention
    rms_norm(xp, lw[0].const_data_ptr<T>(), hp, n, hidden, static_cast<float>(eps));
    Tensor q = linear(lin[0], h), k = linear(lin[1], h), v = linear(lin[2], h);  // [n, H*D], [n, KV*D]
    rope(q.mutable_data_ptr<T>(), cp, sp, n, H, D);
    rope(k.mutable_data_ptr<T>(), cp, sp, n, KV, D);
    T* kl = k_cache.mutable_data_ptr<T>() + layer * slots * KV * D;
    T* vl = v_cache.mutable_data_ptr<T>() + layer * slots * KV * D;
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(k.const_data_ptr<T>() + i * KV * D, KV * D, kl + ws[i] * KV * D);
      std::copy_n(v.const_data_ptr<T>() + i * KV * D, KV * D, vl + ws[i] * KV * D);
    }
    Tensor att = at::empty({n, H * D}, x.options());
    attend(q.const_data_ptr<T>(), kl, vl, read_slots.const_data_ptr<int64_t>(), S, lengths.const_data_ptr<int64_t>(),
           n, H, KV, D, att.mutable_data_ptr<T>());
    add_into(xp, linear(lin[3], att).const_data_ptr<T>(), n * hidden);
    // MLP
    rms_norm(xp, lw[1].const_data_ptr<T>(), hp, n, hidden, static_cast<float>(eps));
    Tensor gate = linear(lin[4], h);
    at::silu_(gate).mul_(linear(lin[5], h));  // PyTorch's own vectorized ops, rounded as llama.py's
    add_into(xp, linear(lin[6], gate).const_data_ptr<T>(), n * hidden);
  }
  return x;
}

Tensor decode_layers(const Tensor& x, const Tensor& cos, const Tensor& sin, at::TensorList weights,
                     at::IntArrayRef kinds, at::IntArrayRef groups, Tensor k_cache, Tensor v_cache,
                     const Tensor& write_slots, const Tensor& read_slots, const Tensor& lengths, int64_t heads,
                     int64_t kv_heads, double eps) {
  const int64_t layers = k_cache.size(0);
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be contiguous [n, hidden]");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.size(0) == x.size(0), "cos/sin must be [n, D]");
  TORCH_CHECK(cos.size(1) <= 256, "head_dim must be at most 256");
  TORCH_CHECK(cos.scalar_type() == x.scalar_type() && k_cache.scalar_type() == x.scalar_type(), "one dtype throughout");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.dim() == 4, "caches [layers, slots, KV, D]");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == layers * PER_LAYER, "expected ", layers * PER_LAYER, " weights");
  TORCH_CHECK(static_cast<int64_t>(kinds.size()) == layers * LINEARS && kinds.size() == groups.size(), "kinds/groups");
  TORCH_CHECK(read_slots.is_contiguous() && read_slots.scalar_type() == at::kLong && write_slots.scalar_type() == at::kLong &&
                  lengths.scalar_type() == at::kLong, "slots and lengths are int64");
  const std::vector<Tensor> w(weights.begin(), weights.end());
  const std::vector<int64_t> kd(kinds.begin(), kinds.end()), gr(groups.begin(), groups.end());
  if (x.scalar_type() == at::kBFloat16)
    return run<bf16>(x, cos, sin, w, kd, gr, k_cache, v_cache, write_slots, read_slots, lengths, heads, kv_heads, eps);
  TORCH_CHECK(x.scalar_type() == at::kFloat, "x must be bfloat16 or float32");
  return run<float>(x, cos, sin, w, kd, gr, k_cache, v_cache, write_slots, read_slots, lengths, heads, kv_heads, eps);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ondol, m) {
  m.def("decode_layers(Tensor x, Tensor cos, Tensor sin, Tensor[] weights, int[] kinds, int[] groups, "
        "Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor write_slots, Tensor read_slots, Tensor lengths, "
        "int heads, int kv_heads, float eps) -> Tensor",
        &decode_layers);
}
