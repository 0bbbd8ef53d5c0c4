#include "quant/quarot.h"

#include "util/error.h"

namespace loopq::quant {
namespace {

at::Tensor dense_of(const LinearPtr& op) {
  if (!dynamic_cast<const DenseLinear*>(op.get())) throw Error("QuaRot: expects a dense model");
  return op->dense_weight().to(at::kDouble);
}

// Folds a pre-norm γ into the input columns of the linears it feeds and resets it to ones.
void fold_norm(at::Tensor& gamma, std::vector<at::Tensor*> weights) {
  for (at::Tensor* w : weights) *w = *w * gamma.to(w->device(), at::kDouble).unsqueeze(0);
  gamma = at::ones_like(gamma);
}

}  // namespace

void quarot_check_sizes(const LoopLMConfig& c) {
  for (int64_t n : {c.hidden_size, c.intermediate_size, c.head_dim, c.num_heads})
    if (!hadamard_buildable(n))
      throw Error("QuaRot: no Hadamard matrix of order " + std::to_string(n) +
                  " can be built for this model (orders are 1, 2 or multiples of 4 with a known factor)");
}

InputRotation quarot_input_rotation(const LoopLMConfig& c, LinearSite site, uint64_t seed) {
  InputRotation r;
  switch (site) {
    case LinearSite::Q: case LinearSite::K: case LinearSite::V:
    case LinearSite::Gate: case LinearSite::Up:
      r.kind = InputRotation::Kind::Full;
      r.hadamard = std::make_shared<HadamardTransform>(c.hidden_size, random_signs(c.hidden_size, seed));
      break;
    case LinearSite::O:
      r.kind = InputRotation::Kind::Heads;
      r.hadamard = std::make_shared<HadamardTransform>(c.num_heads);
      r.head_dim = c.head_dim;
      break;
    case LinearSite::Down:
      r.kind = InputRotation::Kind::Full;
      r.hadamard = std::make_shared<HadamardTransform>(c.intermediate_size);
      break;
    default: throw Error("QuaRot: lm_head is not rotated");
  }
  return r;
}

void quarot_rotate_model(OuroModel& model, uint64_t seed) {
  const LoopLMConfig& c = model.config();
  quarot_check_sizes(c);
  const at::Device dev = model.device();
  const at::Tensor h_head = HadamardTransform(c.head_dim).matrix().to(dev);  // [hd, hd], orthonormal
  // The same rotation objects serve every layer (one R1 for the model, as QuaRot).
  std::vector<InputRotation> rot(kNumLayerSites);
  for (int s = 0; s < kNumLayerSites; ++s) rot[size_t(s)] = quarot_input_rotation(c, LinearSite(s), seed);
  auto M = [&](LinearSite s, int64_t in) { return rot[size_t(s)].matrix(in).to(dev); };
  const at::Tensor m_res = M(LinearSite::Q, c.hidden_size);
  const at::Tensor m_down = M(LinearSite::Down, c.intermediate_size);
  const at::Tensor m_heads = M(LinearSite::O, c.q_dim());
  const auto f64 = at::TensorOptions().dtype(at::kDouble).device(dev);
  const at::Tensor bd_kv = at::kron(at::eye(c.num_kv_heads, f64), h_head);
  const at::Tensor bd_q = at::kron(at::eye(c.num_heads, f64), h_head);

  for (auto& L : model.weights().layers) {
    at::Tensor w[kNumLayerSites];
    for (int s = 0; s < kNumLayerSites; ++s) w[s] = dense_of(L.linear(LinearSite(s)));
    at::Tensor &wq = w[0], &wk = w[1], &wv = w[2], &wo = w[3], &wg = w[4], &wu = w[5], &wd = w[6];
    fold_norm(L.input_norm, {&wq, &wk, &wv});
    fold_norm(L.ffn_in_norm, {&wg, &wu});
    // Online x -> x M at the input needs W -> W M, so (x M)(W M)ᵀ = x Wᵀ.
    for (at::Tensor* t : {&wq, &wk, &wv, &wg, &wu}) *t = at::matmul(*t, m_res);
    // v' = v (I ⊗ H_hd): W_v ← (I ⊗ H_hd)ᵀ W_v. Attention is linear in V, so the attention output
    // becomes z (I ⊗ H_hd); o_proj then sees z'' = z (I ⊗ H_hd)(H_heads ⊗ I) online.
    wv = at::matmul(bd_kv.t(), wv);
    wo = at::matmul(at::matmul(wo, bd_q), m_heads);
    wd = at::matmul(wd, m_down);
    for (int s = 0; s < kNumLayerSites; ++s)
      L.linear(LinearSite(s)) = std::make_shared<ActQuantDenseLinear>(w[s].to(at::kFloat), ActQuant{}, rot[size_t(s)]);
  }
}

}  // namespace loopq::quant
