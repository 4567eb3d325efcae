// Fused ConvNN (feature basis) on the CPU: for every query token, score every candidate token,
// keep a running top-k (never writing a score row), weight and aggregate the k neighbours.
//
// Scores follow the reference's formulas (docs/semantics.md): cosine = unit(q) . unit(k) with
// norms clamped at 1e-12, euclidean = -|q - k|^2, dot = q . k, scaled_dot = scale * q . k.
// Ranking: NaN first, then larger scores; equal scores keep the lower candidate index (the
// candidates are visited in index order and a later one must be strictly better to pass an
// earlier one): the canonical tie rule.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

enum Similarity { kCosine = 0, kEuclidean = 1, kDot = 2, kScaledDot = 3 };
enum Rho { kOnes = 0, kSoftmax = 1, kScores = 2 };
enum Kernel { kFull = 0, kSum = 1 };

template <typename T>
inline bool ranks_above(T a, T b) {  // a ranks strictly before b (NaN first)
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return a > b;
}

// Candidates are scored kLanes at a time from the transposed features: each lane keeps its own
// accumulator, summed over d in order, so the loop vectorizes without reassociating a sum.
constexpr int64_t kLanes = 16;

// kt: the transposed features (D, stride), zero beyond the N candidates up to stride, a multiple
// of kLanes, so every block is scored whole (one loop, no tail case); only the first `lanes` of
// the last block are real candidates and read.
template <typename T, bool kSquares>
inline void score_lanes(const T* __restrict q, const T* __restrict kt, int64_t stride, int64_t j0, int64_t d,
                        T* __restrict acc) {
  T lane[kLanes] = {};
  for (int64_t c = 0; c < d; ++c) {
    const T qc = q[c];
    const T* __restrict row = kt + c * stride + j0;
    for (int64_t l = 0; l < kLanes; ++l) {
      if constexpr (kSquares) {
        const T diff = qc - row[l];
        lane[l] += diff * diff;
      } else {
        lane[l] += qc * row[l];
      }
    }
  }
  for (int64_t l = 0; l < kLanes; ++l) acc[l] = lane[l];
}

template <typename T>
inline void score_block(const T* q, const T* kt, int64_t stride, int64_t j0, int64_t lanes, int64_t d, int similarity,
                        T scale, T* acc) {
  if (similarity == kEuclidean) {
    score_lanes<T, true>(q, kt, stride, j0, d, acc);
    for (int64_t l = 0; l < lanes; ++l) acc[l] = -acc[l];
    return;
  }
  score_lanes<T, false>(q, kt, stride, j0, d, acc);
  if (similarity == kScaledDot)
    for (int64_t l = 0; l < lanes; ++l) acc[l] *= scale;
}

template <typename T>
void run(const T* feats, const T* featst, int64_t stride, const T* vals, int64_t batch, int64_t n, int64_t d, int64_t k,
         int similarity, T scale, int rho, T rho_scale, int kernel, const T* wt, const T* bias, int64_t c_out, T* out) {
  // feats (B, N, D): the scoring features (unit tokens for cosine), featst (B, D, stride) the
  // same transposed and zero-padded; vals (B, N, D) the values; wt (k, D, C_out).
  at::parallel_for(0, batch * n, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> best(k), w(k), y(std::max<int64_t>(c_out, d)), acc(kLanes);
    std::vector<int64_t> index(k);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / n, i = job % n;
      const T* tokens = feats + b * n * d;
      const T* values = vals + b * n * d;
      const T* q = tokens + i * d;
      const T* kt = featst + b * d * stride;
      int64_t filled = 0;
      for (int64_t j0 = 0; j0 < n; j0 += kLanes) {
        const int64_t lanes = std::min(kLanes, n - j0);
        score_block(q, kt, stride, j0, lanes, d, similarity, scale, acc.data());
        for (int64_t l = 0; l < lanes; ++l) {  // in index order: the canonical tie rule
          const T s = acc[l];
          if (filled == k && !ranks_above(s, best[k - 1])) continue;
          int64_t p = filled < k ? filled++ : k - 1;
          while (p > 0 && ranks_above(s, best[p - 1])) {
            best[p] = best[p - 1];
            index[p] = index[p - 1];
            --p;
          }
          best[p] = s;
          index[p] = j0 + l;
        }
      }
      if (rho == kOnes) {
        std::fill(w.begin(), w.end(), T(1));
      } else if (rho == kScores) {
        std::copy(best.begin(), best.end(), w.begin());
      } else {  // softmax over the k selected scores (torch.softmax: subtract the max)
        T top = -std::numeric_limits<T>::infinity();
        bool nan = false;
        for (int64_t t = 0; t < k; ++t) {
          const T v = rho_scale * best[t];
          nan = nan || std::isnan(v);
          top = std::max(top, v);
        }
        T total = 0;
        for (int64_t t = 0; t < k; ++t) {
          w[t] = nan ? std::numeric_limits<T>::quiet_NaN() : std::exp(rho_scale * best[t] - top);
          total += w[t];
        }
        for (int64_t t = 0; t < k; ++t) w[t] /= total;
      }
      T* dst = out + b * c_out * n + i;  // out (B, C_out, N): stride N between channels
      if (kernel == kSum) {
        for (int64_t c = 0; c < d; ++c) y[c] = bias ? bias[c] : T(0);
        for (int64_t t = 0; t < k; ++t) {
          const T* v = values + index[t] * d;
          for (int64_t c = 0; c < d; ++c) y[c] += w[t] * v[c];
        }
        for (int64_t c = 0; c < d; ++c) dst[c * n] = y[c];
        continue;
      }
      for (int64_t o = 0; o < c_out; ++o) y[o] = bias ? bias[o] : T(0);
      for (int64_t t = 0; t < k; ++t) {
        const T* v = values + index[t] * d;
        const T* wt_t = wt + t * d * c_out;
        for (int64_t c = 0; c < d; ++c) {
          const T a = w[t] * v[c];
          const T* row = wt_t + c * c_out;
          for (int64_t o = 0; o < c_out; ++o) y[o] += a * row[o];
        }
      }
      for (int64_t o = 0; o < c_out; ++o) dst[o * n] = y[o];
    }
  });
}

}  // namespace

// tokens (B, N, D) contiguous scoring features (unit vectors for cosine), values (B, N, D)
// contiguous; wt (k, D, C_out) contiguous or empty (sum kernel); bias (C_out,) or empty.
// Returns (B, C_out, N).
torch::Tensor fused_convnn(torch::Tensor tokens, torch::Tensor values, torch::Tensor wt, torch::Tensor bias, int64_t k, int64_t similarity,
                           double scale, int64_t rho, double rho_scale, int64_t kernel) {
  TORCH_CHECK(tokens.dim() == 3 && tokens.is_contiguous(), "tokens must be contiguous (B, N, D)");
  TORCH_CHECK(values.sizes() == tokens.sizes() && values.is_contiguous(), "values must be contiguous like tokens");
  const int64_t batch = tokens.size(0), n = tokens.size(1), d = tokens.size(2);
  TORCH_CHECK(k >= 1 && k <= n, "k must be in [1, N]");
  const int64_t c_out = kernel == kSum ? d : wt.size(2);
  auto out = torch::empty({batch, c_out, n}, tokens.options());
  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "fused_convnn", [&] {
    const int64_t stride = (n + kLanes - 1) / kLanes * kLanes;
    auto transposed = torch::zeros({batch, d, stride}, tokens.options());
    transposed.narrow(2, 0, n).copy_(tokens.transpose(1, 2));
    run<scalar_t>(tokens.data_ptr<scalar_t>(), transposed.data_ptr<scalar_t>(), stride, values.data_ptr<scalar_t>(), batch, n, d, k, static_cast<int>(similarity), static_cast<scalar_t>(scale),
                  static_cast<int>(rho), static_cast<scalar_t>(rho_scale), static_cast<int>(kernel),
                  kernel == kSum ? nullptr : wt.data_ptr<scalar_t>(), bias.numel() ? bias.data_ptr<scalar_t>() : nullptr,
                  c_out, out.data_ptr<scalar_t>());
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("fused_convnn", &fused_convnn, "fused ConvNN, feature basis (CPU)"); }
