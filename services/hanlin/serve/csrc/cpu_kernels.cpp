// Fused CPU kernels for the serving engine's decoder layer (see hanlin/serve/kernels.py).
//
// Each kernel replaces a chain of small torch ops whose per-op overhead, not their
// arithmetic, dominates a decode step: an add + RMS norm, rotary embedding + the
// KV-cache write, SiLU(gate) * up, and decode attention read straight from the
// paged cache (no gather into a padded copy). fp32 or bf16 storage, fp32 arithmetic.
// The hot loops have AVX-512 paths (intrinsics); every kernel also has a plain-loop
// path for the compiler's auto-vectorizer (`omp simd`), used for tails, head sizes the
// vector path does not take, and CPUs without AVX-512. Threads come from torch's own
// pool (at::parallel_for), so the engine's thread setting applies.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using bf16 = uint16_t;  // bf16 storage: the high half of an fp32

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const bf16* p, int64_t i) {
  uint32_t u = uint32_t(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 to_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even
  return v != v ? bf16(0x7fc0) : bf16(rounded);
}
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(bf16* p, int64_t i, float v) { p[i] = to_bf16(v); }

// `v` as the storage type would hold it.
inline float round_as(const float*, float v) { return v; }
inline float round_as(const bf16*, float v) {
  uint32_t u = uint32_t(to_bf16(v)) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// exp(x) for x <= 88: 2^n * p(f), p a degree-6 fit of 2^f on [0, 1) (relative error
// ~1e-7, fp32 rounding), highest power first. Arithmetic and bit operations only, so
// loops of it vectorize; `vexp` is the same in AVX-512.
constexpr float kExp2Poly[] = {0.00021690609f, 0.0012443082f, 0.0096784728f, 0.055483524f,
                               0.2402298f,     0.693147f,     1.0f};
constexpr float kExpLo = -87.3f, kExpHi = 88.3f, kLog2e = 1.4426950408889634f;

inline float exp_approx(float x) {
  x = std::max(x, kExpLo);
  x = std::min(x, kExpHi);
  float t = x * kLog2e;
  float n = std::floor(t);
  float f = t - n;
  float p = kExp2Poly[0];
  for (int k = 1; k < 7; ++k) p = p * f + kExp2Poly[k];
  int32_t e = int32_t(n) + 127;
  uint32_t bits = uint32_t(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

#if defined(__AVX512F__)
// 16 fp32 lanes; bf16 is widened on load and rounded to nearest even on store.
constexpr int64_t kLanes = 16;
using vec = __m512;
inline vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline vec vload(const bf16* p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline __m512i vbf16_bits(vec v) {  // rounded bf16 in each lane's low half
  __m512i u = _mm512_castps_si512(v);
  __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
  __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
}
inline void vstore(float* p, vec v) { _mm512_storeu_ps(p, v); }
inline void vstore(bf16* p, vec v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(vbf16_bits(v)));
}
inline vec vround(const float*, vec v) { return v; }
inline vec vround(const bf16*, vec v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(vbf16_bits(v), 16));
}
inline vec vexp(vec x) {  // exp_approx, 16 lanes
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  vec t = _mm512_mul_ps(x, _mm512_set1_ps(kLog2e));
  vec n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  vec f = _mm512_sub_ps(t, n);
  vec p = _mm512_set1_ps(kExp2Poly[0]);
  for (int k = 1; k < 7; ++k) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[k]));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
inline __mmask16 tail_mask(int64_t left) {
  return left >= kLanes ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
}
#endif

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
}

void check_float(const at::Tensor& t, const char* name) {
  check_cpu(t, name);
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16, got ", t.scalar_type());
}

template <typename F>
void dispatch(const at::Tensor& t, F&& f) {
  if (t.scalar_type() == at::kBFloat16) {
    f(bf16{});
  } else {
    f(float{});
  }
}

// ---- add + RMS norm --------------------------------------------------------------

template <typename T, bool kAdd>
void add_rms_norm_rows(T* x, const T* delta, const T* w, T* out, int64_t rows, int64_t n,
                       int64_t x_stride, int64_t d_stride, float eps) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      T* xr = x + r * x_stride;
      const T* dr = kAdd ? delta + r * d_stride : nullptr;
      T* orow = out + r * n;
      float ss = 0.f;
      if (kAdd) {
#pragma omp simd reduction(+ : ss)
        for (int64_t i = 0; i < n; ++i) {
          float v = round_as(xr, load(xr, i) + load(dr, i));
          store(xr, i, v);
          ss += v * v;
        }
      } else {
#pragma omp simd reduction(+ : ss)
        for (int64_t i = 0; i < n; ++i) {
          float v = load(xr, i);
          ss += v * v;
        }
      }
      float inv = 1.f / std::sqrt(ss / float(n) + eps);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        // As the torch path: normalise in fp32, cast, multiply by the weight.
        float h = round_as(orow, load(xr, i) * inv);
        store(orow, i, load(w, i) * h);
      }
    }
  });
}

// x += delta (when given, in place), then return rms_norm(x) * weight.
at::Tensor add_rms_norm(at::Tensor x, c10::optional<at::Tensor> delta, at::Tensor weight,
                        double eps) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() == 2 && x.stride(1) == 1, "x must be [rows, hidden] with unit stride");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.is_contiguous() &&
                  weight.numel() == x.size(1),
              "weight must match x's dtype and hidden size");
  const int64_t rows = x.size(0), n = x.size(1);
  at::Tensor out = at::empty({rows, n}, x.options());
  bool add = delta.has_value() && delta->defined();
  if (add) {
    TORCH_CHECK(delta->scalar_type() == x.scalar_type() && delta->dim() == 2 &&
                    delta->size(0) == rows && delta->size(1) == n && delta->stride(1) == 1,
                "delta must match x");
  }
  dispatch(x, [&](auto tag) {
    using T = decltype(tag);
    if (add) {
      add_rms_norm_rows<T, true>(ptr<T>(x), ptr<T>(*delta), ptr<T>(weight), ptr<T>(out), rows,
                                 n, x.stride(0), delta->stride(0), float(eps));
    } else {
      add_rms_norm_rows<T, false>(ptr<T>(x), nullptr, ptr<T>(weight), ptr<T>(out), rows, n,
                                  x.stride(0), 0, float(eps));
    }
  });
  return out;
}

// ---- SiLU(gate) * up --------------------------------------------------------------

at::Tensor silu_mul(at::Tensor gate_up) {
  check_float(gate_up, "gate_up");
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.is_contiguous() && gate_up.size(1) % 2 == 0,
              "gate_up must be a contiguous [rows, 2 * inter] tensor");
  const int64_t rows = gate_up.size(0), inter = gate_up.size(1) / 2;
  at::Tensor out = at::empty({rows, inter}, gate_up.options());
  dispatch(gate_up, [&](auto tag) {
    using T = decltype(tag);
    const T* in = ptr<T>(gate_up);
    T* o = ptr<T>(out);
    at::parallel_for(0, rows * inter, 4096, [&](int64_t lo, int64_t hi) {
      // Flat index range split at row ends.
      for (int64_t idx = lo; idx < hi;) {
        int64_t r = idx / inter, c0 = idx % inter;
        int64_t c1 = std::min(inter, c0 + (hi - idx));
        const T* g = in + r * 2 * inter;
        const T* u = g + inter;
        T* orow = o + r * inter;
        int64_t c = c0;
#if defined(__AVX512F__)
        for (; c + kLanes <= c1; c += kLanes) {
          vec gv = vload(g + c);
          vec e = vexp(_mm512_sub_ps(_mm512_setzero_ps(), gv));
          vec sl = vround(orow, _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.f), e)));
          vstore(orow + c, _mm512_mul_ps(sl, vload(u + c)));
        }
#endif
        for (; c < c1; ++c) {
          float gv = load(g, c);
          // silu rounded to the storage type before the product, as torch does.
          store(orow, c, round_as(orow, gv / (1.f + exp_approx(-gv))) * load(u, c));
        }
        idx += c1 - c0;
      }
    });
  });
  return out;
}

// ---- rotary embedding + KV-cache write -----------------------------------------------

// In place on qkv [T, (H + 2 KV) * D]: rotate the q and k heads of each row
// (x * cos + roll(x, D/2) * sin, rotate_half's sign folded into sin), then write the
// rotated k and the v heads into the caches [slots, KV, D] at slot_mapping[t].
void rotary_cache(at::Tensor qkv, at::Tensor cos, at::Tensor sin, at::Tensor k_cache,
                  at::Tensor v_cache, at::Tensor slot_mapping, int64_t heads, int64_t kv_heads) {
  check_float(qkv, "qkv");
  const int64_t t_rows = qkv.size(0), d = k_cache.size(2);
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous() && qkv.size(1) == (heads + 2 * kv_heads) * d,
              "qkv must be a contiguous [tokens, (heads + 2 kv_heads) * head_dim] tensor");
  TORCH_CHECK(cos.scalar_type() == qkv.scalar_type() && sin.scalar_type() == qkv.scalar_type() &&
                  cos.is_contiguous() && sin.is_contiguous() && cos.numel() == t_rows * d &&
                  sin.numel() == t_rows * d,
              "cos/sin must be contiguous [tokens, head_dim] tables in qkv's dtype");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() &&
                  k_cache.scalar_type() == qkv.scalar_type() &&
                  v_cache.scalar_type() == qkv.scalar_type() && k_cache.size(1) == kv_heads &&
                  v_cache.sizes() == k_cache.sizes(),
              "caches must be contiguous [slots, kv_heads, head_dim] in qkv's dtype");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.is_contiguous() &&
                  slot_mapping.numel() == t_rows,
              "slot_mapping must be int64 [tokens]");
  TORCH_CHECK(d % 2 == 0 && d <= 1024, "head_dim must be even and at most 1024");
  const int64_t* slots = slot_mapping.data_ptr<int64_t>();
  const int64_t num_slots = k_cache.size(0);
  for (int64_t t = 0; t < t_rows; ++t) {
    TORCH_CHECK(slots[t] >= 0 && slots[t] < num_slots, "slot_mapping out of range");
  }
  const int64_t row = (heads + 2 * kv_heads) * d, half = d / 2;
  dispatch(qkv, [&](auto tag) {
    using T = decltype(tag);
    T* base = ptr<T>(qkv);
    const T* cs = ptr<T>(cos);
    const T* sn = ptr<T>(sin);
    T* kc = ptr<T>(k_cache);
    T* vc = ptr<T>(v_cache);
    const int64_t units = t_rows * (heads + kv_heads);
    at::parallel_for(0, units, 64, [&](int64_t lo, int64_t hi) {
      float tmp[1024];
      for (int64_t u = lo; u < hi; ++u) {
        int64_t t = u / (heads + kv_heads), h = u % (heads + kv_heads);
        T* x = base + t * row + h * d;
        const T* c = cs + t * d;
        const T* s = sn + t * d;
        // Rounded after each product and the sum, as torch does in bf16.
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          tmp[i] = round_as(x, load(x, i) * load(c, i)) + round_as(x, load(x, i + half) * load(s, i));
          tmp[i + half] = round_as(x, load(x, i + half) * load(c, i + half)) +
                          round_as(x, load(x, i) * load(s, i + half));
        }
#pragma omp simd
        for (int64_t i = 0; i < d; ++i) store(x, i, tmp[i]);
        if (h >= heads) {
          int64_t kvh = h - heads;
          T* kd = kc + (slots[t] * kv_heads + kvh) * d;
          T* vd = vc + (slots[t] * kv_heads + kvh) * d;
          const T* v = base + t * row + (heads + kv_heads + kvh) * d;
          std::memcpy(kd, x, d * sizeof(T));
          std::memcpy(vd, v, d * sizeof(T));
        }
      }
    });
  });
}

// ---- decode attention over the paged cache ------------------------------------------

// One task: query heads [kvh*G, (kvh+1)*G) of sequence b against its context positions
// [j0, j1). Writes the unnormalised output, the running max and the softmax sum.
template <typename T>
void attend_chunk(const T* q, const T* kc, const T* vc, const int64_t* slots, int64_t j0,
                  int64_t j1, int64_t kv_heads, int64_t kvh, int64_t g, int64_t d, float scale,
                  float* acc, float* m_out, float* l_out, std::vector<float>& buf) {
  const int64_t n = j1 - j0;
  buf.resize(size_t(g * d + g * n));
  float* qf = buf.data();
  float* s = qf + g * d;
  for (int64_t gi = 0; gi < g; ++gi) {
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) qf[gi * d + i] = load(q, gi * d + i) * scale;
  }
  for (int64_t j = 0; j < n; ++j) {
    const T* k = kc + (slots[j0 + j] * kv_heads + kvh) * d;
    for (int64_t gi = 0; gi < g; ++gi) {
      const float* qg = qf + gi * d;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < d; ++i) dot += qg[i] * load(k, i);
      s[gi * n + j] = dot;
    }
  }
  for (int64_t gi = 0; gi < g; ++gi) {
    float* sg = s + gi * n;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) m = std::max(m, sg[j]);
    float l = 0.f;
#pragma omp simd reduction(+ : l)
    for (int64_t j = 0; j < n; ++j) {
      float p = exp_approx(sg[j] - m);
      sg[j] = p;
      l += p;
    }
    m_out[gi] = m;
    l_out[gi] = l;
  }
  std::fill(acc, acc + g * d, 0.f);
  for (int64_t j = 0; j < n; ++j) {
    const T* v = vc + (slots[j0 + j] * kv_heads + kvh) * d;
    for (int64_t gi = 0; gi < g; ++gi) {
      // Probabilities in the storage type times v, as torch's CPU flash attention does
      // (its sum stays unrounded, as here).
      float p = round_as(v, s[gi * n + j]);
      float* a = acc + gi * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) a[i] += p * load(v, i);
    }
  }
}

#if defined(__AVX512F__)
// attend_chunk for head_dim a multiple of 16 (up to 256): each key row is loaded once
// into registers for all G query heads; softmax and P V run 16 lanes at a time.
template <typename T>
void attend_chunk_vec(const T* q, const T* kc, const T* vc, const int64_t* slots, int64_t j0,
                      int64_t j1, int64_t kv_heads, int64_t kvh, int64_t g, int64_t d,
                      float scale, float* acc, float* m_out, float* l_out,
                      std::vector<float>& buf) {
  const int64_t n = j1 - j0, nv = d / kLanes;
  buf.resize(size_t(g * d + g * n));
  float* qf = buf.data();
  float* s = qf + g * d;
  for (int64_t i = 0; i < g * d; ++i) qf[i] = load(q, i) * scale;
  vec kv[16];
  for (int64_t j = 0; j < n; ++j) {
    const T* k = kc + (slots[j0 + j] * kv_heads + kvh) * d;
    for (int64_t c = 0; c < nv; ++c) kv[c] = vload(k + c * kLanes);
    for (int64_t gi = 0; gi < g; ++gi) {
      const float* qg = qf + gi * d;
      vec a = _mm512_mul_ps(kv[0], _mm512_loadu_ps(qg));
      for (int64_t c = 1; c < nv; ++c) a = _mm512_fmadd_ps(kv[c], _mm512_loadu_ps(qg + c * kLanes), a);
      s[gi * n + j] = _mm512_reduce_add_ps(a);
    }
  }
  const vec neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t gi = 0; gi < g; ++gi) {
    float* sg = s + gi * n;
    vec mv = neg_inf;
    for (int64_t j = 0; j < n; j += kLanes) {
      mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(neg_inf, tail_mask(n - j), sg + j));
    }
    const float m = _mm512_reduce_max_ps(mv);
    const vec mm = _mm512_set1_ps(m);
    vec lv = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += kLanes) {
      __mmask16 mask = tail_mask(n - j);
      vec pv = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, sg + j), mm));
      _mm512_mask_storeu_ps(sg + j, mask, pv);
      lv = _mm512_add_ps(lv, _mm512_maskz_mov_ps(mask, pv));
    }
    m_out[gi] = m;
    l_out[gi] = _mm512_reduce_add_ps(lv);
  }
  for (int64_t gi = 0; gi < g; ++gi) {
    const float* sg = s + gi * n;
    for (int64_t c0 = 0; c0 < nv; c0 += 4) {
      const int64_t cn = std::min<int64_t>(4, nv - c0);
      vec r0 = _mm512_setzero_ps(), r1 = r0, r2 = r0, r3 = r0;
      for (int64_t j = 0; j < n; ++j) {
        const T* v = vc + (slots[j0 + j] * kv_heads + kvh) * d + c0 * kLanes;
        // Probabilities in the storage type times v, as torch's CPU flash attention does
        // (its sum stays unrounded, as here).
        const vec p = _mm512_set1_ps(round_as(v, sg[j]));
        r0 = _mm512_fmadd_ps(p, vload(v), r0);
        if (cn > 1) r1 = _mm512_fmadd_ps(p, vload(v + kLanes), r1);
        if (cn > 2) r2 = _mm512_fmadd_ps(p, vload(v + 2 * kLanes), r2);
        if (cn > 3) r3 = _mm512_fmadd_ps(p, vload(v + 3 * kLanes), r3);
      }
      float* a = acc + gi * d + c0 * kLanes;
      _mm512_storeu_ps(a, r0);
      if (cn > 1) _mm512_storeu_ps(a + kLanes, r1);
      if (cn > 2) _mm512_storeu_ps(a + 2 * kLanes, r2);
      if (cn > 3) _mm512_storeu_ps(a + 3 * kLanes, r3);
    }
  }
}
#endif

// One task's chunk: the vector path where head_dim allows it, else the plain loops.
template <typename T>
void attend(const T* q, const T* kc, const T* vc, const int64_t* slots, int64_t j0, int64_t j1,
            int64_t kv_heads, int64_t kvh, int64_t g, int64_t d, float scale, float* acc,
            float* m_out, float* l_out, std::vector<float>& buf) {
#if defined(__AVX512F__)
  if (d % kLanes == 0 && d <= 16 * kLanes) {
    attend_chunk_vec<T>(q, kc, vc, slots, j0, j1, kv_heads, kvh, g, d, scale, acc, m_out, l_out,
                        buf);
    return;
  }
#endif
  attend_chunk<T>(q, kc, vc, slots, j0, j1, kv_heads, kvh, g, d, scale, acc, m_out, l_out, buf);
}

// q [B, H, D] (rows may be strided: a view into qkv), caches [slots, KV, D],
// slots [B, W] int64 (row b's first lens[b] entries are its context), lens [B].
// Returns softmax(q k^T / sqrt(D)) v, [B, H, D] in q's dtype.
at::Tensor paged_decode_attention(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache,
                                  at::Tensor slots, at::Tensor lens) {
  check_float(q, "q");
  TORCH_CHECK(q.dim() == 3 && q.stride(2) == 1 && q.stride(1) == q.size(2),
              "q must be [batch, heads, head_dim] with contiguous heads");
  const int64_t b = q.size(0), heads = q.size(1), d = q.size(2);
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() &&
                  k_cache.scalar_type() == q.scalar_type() &&
                  v_cache.scalar_type() == q.scalar_type() && k_cache.size(2) == d &&
                  v_cache.sizes() == k_cache.sizes(),
              "caches must be contiguous [slots, kv_heads, head_dim] in q's dtype");
  const int64_t kv_heads = k_cache.size(1), num_slots = k_cache.size(0);
  TORCH_CHECK(heads % kv_heads == 0, "heads must be a multiple of kv_heads");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.dim() == 2 && slots.size(0) == b &&
                  slots.is_contiguous(),
              "slots must be a contiguous int64 [batch, width] tensor");
  TORCH_CHECK(lens.scalar_type() == at::kLong && lens.numel() == b && lens.is_contiguous(),
              "lens must be int64 [batch]");
  const int64_t g = heads / kv_heads, width = slots.size(1);
  TORCH_CHECK(g <= 256, "at most 256 query heads per key/value head");
  const int64_t* sl = slots.data_ptr<int64_t>();
  const int64_t* ln = lens.data_ptr<int64_t>();
  int64_t max_len = 0;
  for (int64_t i = 0; i < b; ++i) {
    TORCH_CHECK(ln[i] >= 1 && ln[i] <= width, "lens must be in [1, width]");
    for (int64_t j = 0; j < ln[i]; ++j) {
      TORCH_CHECK(sl[i * width + j] >= 0 && sl[i * width + j] < num_slots, "slot out of range");
    }
    max_len = std::max(max_len, ln[i]);
  }
  at::Tensor out = at::empty({b, heads, d}, q.options());
  if (b == 0) return out;
  // Too few (sequence, kv head) pairs to busy every thread: split contexts into chunks
  // and merge the chunks' softmax statistics after (flash-decoding).
  const int64_t threads = at::get_num_threads();
  int64_t chunks = 1;
  if (b * kv_heads < 4 * threads) {
    chunks = std::min<int64_t>((4 * threads + b * kv_heads - 1) / (b * kv_heads),
                               std::max<int64_t>(1, max_len / 64));
  }
  const int64_t chunk_len = (max_len + chunks - 1) / chunks;
  // Tasks, longest first, dealt round-robin to the threads: uneven contexts stay balanced.
  struct Task {
    int64_t seq, kvh, c, j0, j1;
  };
  std::vector<Task> tasks;
  tasks.reserve(size_t(b * kv_heads * chunks));
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t j0 = c * chunk_len, j1 = std::min(ln[i], j0 + chunk_len);
      if (j0 >= j1) continue;
      for (int64_t h = 0; h < kv_heads; ++h) tasks.push_back({i, h, c, j0, j1});
    }
  }
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const Task& x, const Task& y) { return x.j1 - x.j0 > y.j1 - y.j0; });
  std::vector<float> acc(size_t(b * heads * chunks * d));
  std::vector<float> mx(size_t(b * heads * chunks), -std::numeric_limits<float>::infinity());
  std::vector<float> sum(size_t(b * heads * chunks), 0.f);
  const float scale = 1.f / std::sqrt(float(d));
  const int64_t n_tasks = int64_t(tasks.size());
  const int64_t workers = std::min(threads, n_tasks);
  dispatch(q, [&](auto tag) {
    using T = decltype(tag);
    const T* qp = ptr<T>(q);
    const T* kc = ptr<T>(k_cache);
    const T* vc = ptr<T>(v_cache);
    at::parallel_for(0, workers, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> buf;
      for (int64_t w = lo; w < hi; ++w) {
        for (int64_t ti = w; ti < n_tasks; ti += workers) {
          const Task& tk = tasks[size_t(ti)];
          int64_t head0 = tk.kvh * g;
          // Statistics laid out [b, heads, chunk].
          int64_t stat = (tk.seq * heads + head0) * chunks + tk.c;
          float m_loc[256], l_loc[256];
          float* a = acc.data() + ((tk.seq * kv_heads + tk.kvh) * chunks + tk.c) * g * d;
          const T* qs = qp + tk.seq * q.stride(0) + head0 * d;
          const int64_t* ss = sl + tk.seq * width;
          attend<T>(qs, kc, vc, ss, tk.j0, tk.j1, kv_heads, tk.kvh, g, d, scale, a, m_loc, l_loc,
                    buf);
          for (int64_t gi = 0; gi < g; ++gi) {
            mx[size_t(stat + gi * chunks)] = m_loc[gi];
            sum[size_t(stat + gi * chunks)] = l_loc[gi];
          }
        }
      }
    });
    T* o = ptr<T>(out);
    at::parallel_for(0, b * heads, 16, [&](int64_t lo, int64_t hi) {
      std::vector<float> res(static_cast<size_t>(d), 0.f);
      for (int64_t bh = lo; bh < hi; ++bh) {
        int64_t i = bh / heads, h = bh % heads, kvh = h / g, gi = h % g;
        const float* m = mx.data() + bh * chunks;
        const float* l = sum.data() + bh * chunks;
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t c = 0; c < chunks; ++c) top = std::max(top, m[c]);
        float total = 0.f;
        std::fill(res.begin(), res.end(), 0.f);
        for (int64_t c = 0; c < chunks; ++c) {
          if (l[c] == 0.f) continue;  // an empty chunk of a shorter context
          float wgt = std::exp(m[c] - top);
          total += l[c] * wgt;
          const float* a = acc.data() + ((i * kv_heads + kvh) * chunks + c) * g * d + gi * d;
#pragma omp simd
          for (int64_t k = 0; k < d; ++k) res[size_t(k)] += wgt * a[k];
        }
        float inv = 1.f / total;
        T* orow = o + bh * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) store(orow, k, res[size_t(k)] * inv);
      }
    });
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("add_rms_norm", &add_rms_norm, "x += delta (if given); return rms_norm(x) * weight",
        py::arg("x"), py::arg("delta"), py::arg("weight"), py::arg("eps"));
  m.def("silu_mul", &silu_mul, "silu(gate) * up of a [rows, 2 * inter] tensor");
  m.def("rotary_cache", &rotary_cache, "rotary on q/k in place, then write k/v to the cache");
  m.def("paged_decode_attention", &paged_decode_attention,
        "one query token per sequence against its context in the paged cache");
}
