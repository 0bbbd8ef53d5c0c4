// The packed kernels against the project's fake-quant reference (libtorch): activation codes,
// the FWHT against HadamardTransform::apply, and PackedLinear against QuantLinear.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>

#include "kernels/cpu/fwht.h"
#include "kernels/cpu/kernels.h"
#include "quant/hadamard.h"
#include "quant/packed_linear.h"
#include "quant/quant_linear.h"
#include "quant/quantizer.h"
#include "util/error.h"

using namespace loopq;
using namespace loopq::quant;

namespace {

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

// The kernels' dynamic quantization equals fake_quant_activation bit for bit: scale * code.
TEST(PackedKernels, ActivationCodesMatchFakeQuant) {
  at::manual_seed(0);
  for (int bits : {8, 4})
    for (double clip : {1.0, 0.9})
      for (int64_t in : {5, 64, 333}) {
        at::Tensor x = at::randn({9, in});
        x.index_put_({3}, 0.0);  // a zero row: scale 1
        x.index_put_({4, 0}, 40.0);
        const at::Tensor ref = fake_quant_activation(x, Grid{bits, true}, clip);
        kernels::QuantAct q;
        kernels::ActParams a{bits, true, float(clip), 0.0f};
        kernels::quantize_act(x.data_ptr<float>(), 9, in, in, a, in + 3, q);
        auto r = ref.accessor<float, 2>();
        for (int64_t i = 0; i < 9; ++i)
          for (int64_t k = 0; k < in; ++k)
            ASSERT_EQ(q.scale[size_t(i)] * float(q.q[size_t(i * (in + 3) + k)]), r[i][k])
                << "bits " << bits << " clip " << clip << " in " << in << " [" << i << ", " << k << "]";
      }
}

// HadamardTransform::apply on the CPU is the fwht kernel, bit for bit, at n = 2^m; the fwht
// kernel, apply and the factored GEMM (under autograd, or with a Paley core) all match the dense
// fp64 matrix. Sizes K * 2^m with Paley cores.
TEST(PackedKernels, FwhtMatchesHadamardTransform) {
  for (int64_t n : {64, 96, 704, 2048, 5632}) {
    for (bool signs : {false, true}) {
      HadamardTransform h(n, signs ? random_signs(n, 3) : at::Tensor());
      const std::vector<int64_t> f = h.factor_sizes();
      std::vector<float> core;
      int64_t k = 1;
      if (!f.empty() && (f[0] & (f[0] - 1)) != 0) {
        k = f[0];
        const at::Tensor c = hadamard_matrix(k).to(at::kFloat).contiguous();
        core.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
      }
      const at::Tensor x = at::randn({3, n});
      const at::Tensor dense = at::matmul(x.to(at::kDouble), h.matrix());
      const at::Tensor ref = h.apply(x);
      EXPECT_LT(max_abs(ref.to(at::kDouble) - dense), 1e-5 * max_abs(dense)) << "n " << n;
      const at::Tensor xg = x.clone().set_requires_grad(true);
      const at::Tensor gemm = h.apply(xg);  // the differentiable path
      EXPECT_TRUE(gemm.requires_grad());
      EXPECT_LT(max_abs(gemm.detach().to(at::kDouble) - dense), 1e-5 * max_abs(dense)) << "n " << n;
      at::Tensor y = x.clone();
      const at::Tensor s = signs ? h.signs().contiguous() : at::Tensor();
      kernels::fwht(y.data_ptr<float>(), 3, n, n, core.empty() ? nullptr : core.data(), k,
                    signs ? s.data_ptr<float>() : nullptr);
      EXPECT_LT(max_abs(y.to(at::kDouble) - dense), 1e-5 * max_abs(dense)) << "n " << n;
      if (k == 1) EXPECT_TRUE(y.equal(ref)) << "n " << n;
      kernels::fwht(y.data_ptr<float>(), 3, n, n, core.empty() ? nullptr : core.data(), k,
                    signs ? s.data_ptr<float>() : nullptr, true);
      if (k == 1) EXPECT_TRUE(y.equal(h.apply_inverse(ref))) << "n " << n;
      EXPECT_LT(max_abs(y - x), 1e-5 * max_abs(x)) << "n " << n;
    }
  }
}

struct Case {
  int wbits;
  bool wsym;
  int64_t group;
  int abits;
  double clip;
  bool rotate;
};

TEST(PackedLinear, MatchesQuantLinear) {
  at::manual_seed(1);
  const int64_t out = 72, in = 256;
  const Case cases[] = {{4, true, 0, 8, 1.0, false},  {4, true, 0, 4, 0.9, true},   {4, false, 64, 8, 1.0, false},
                        {4, true, 128, 4, 1.0, true}, {8, true, 0, 8, 1.0, false},  {8, false, 32, 8, 0.9, true}};
  for (const Case& c : cases) {
    const at::Tensor w = at::randn({out, in}) * 0.05;
    const at::Tensor bias = at::randn({out});
    QuantizedWeight qw = rtn_quantize(w, Grid{c.wbits, c.wsym}, c.group, false);
    ActQuant act;
    act.bits = c.abits;
    act.clip = c.clip;
    InputRotation rot;
    if (c.rotate) {
      rot.kind = InputRotation::Kind::Full;
      rot.hadamard = std::make_shared<HadamardTransform>(in, random_signs(in, 5));
    }
    const QuantLinear ref(qw, act, rot, bias);
    const PackedLinear packed(qw, act, rot, bias, 2);
    EXPECT_TRUE(packed.dense_weight().equal(ref.dense_weight()));
    for (const auto& shape : {std::vector<int64_t>{1, in}, std::vector<int64_t>{2, 3, in}, std::vector<int64_t>{37, in}}) {
      const at::Tensor x = at::randn(shape);
      const at::Tensor yr = ref.forward(x, 0), yp = packed.forward(x, 0);
      ASSERT_EQ(yp.sizes(), yr.sizes());
      const std::string what = "w" + std::to_string(c.wbits) + (c.wsym ? "sym" : "asym") + " g" +
                               std::to_string(c.group) + " a" + std::to_string(c.abits) + (c.rotate ? " rot" : "");
      // The same rotation, the same integer codes, exact sums and the same epilogue order.
      EXPECT_TRUE(yp.equal(yr)) << what << ": max diff " << (yp - yr).abs().max().item<double>();
      // Against a second computation: the dequantized operands multiplied in fp64.
      const at::Tensor xq = prepare_input(x, rot, act).to(at::kDouble);
      const at::Tensor y64 = at::linear(xq, ref.dense_weight().to(at::kDouble), bias.to(at::kDouble));
      EXPECT_LT((yr.to(at::kDouble) - y64).norm().item<double>(), 1e-6 * y64.norm().item<double>()) << what;
      // Under autograd the reference takes the dequantized GEMM, equal up to summation order.
      const at::Tensor xg = x.clone().set_requires_grad(true);
      const at::Tensor yg = ref.forward(xg, 0);
      EXPECT_TRUE(yg.requires_grad()) << what;
      EXPECT_LT((yg.detach() - yr).norm().item<double>(), 1e-5 * yr.norm().item<double>()) << what;
    }
  }
}

TEST(PackedLinear, PerLoopAffineAndErrors) {
  at::manual_seed(2);
  const at::Tensor w = at::randn({40, 64});
  QuantizedWeight qw = rtn_quantize(w, Grid{4, true}, 0, false);
  ActQuant act;
  act.bits = 8;
  PackedLinear p(qw, act, InputRotation{}, at::Tensor(), 1);
  const at::Tensor c = at::randn({40}), b = at::randn({40});
  p.set_loop_affine(2, c, b);
  const at::Tensor x = at::randn({5, 64});
  const at::Tensor y0 = p.forward(x, 0), y2 = p.forward(x, 2);
  EXPECT_LT(max_abs(y2 - (y0 * c + b)), 1e-5 * max_abs(y2));
  EXPECT_TRUE(p.forward(x, 1).equal(y0));
  EXPECT_THROW(p.forward(at::randn({5, 63}), 0), Error);
  EXPECT_THROW(p.set_loop_affine(0, at::randn({39}), at::Tensor()), Error);
  ActQuant a16;  // 16-bit activations: no integer kernel
  EXPECT_THROW(PackedLinear(qw, a16, InputRotation{}), Error);
  ActQuant asym = act;
  asym.symmetric = false;
  EXPECT_THROW(PackedLinear(qw, asym, InputRotation{}), Error);
  ActQuant stat = act;  // static activations need their calibrated scales first
  stat.static_scale = true;
  const PackedLinear no_scales(qw, stat, InputRotation{}, at::Tensor(), 1);
  EXPECT_THROW(no_scales.forward(x, 0), Error);
  QuantizedWeight q3 = rtn_quantize(w, Grid{3, true}, 0, false);
  EXPECT_THROW(PackedLinear(q3, act, InputRotation{}), Error);
  EXPECT_EQ(p.kind(), "packed_w4a8");
  EXPECT_EQ(p.parameter_bytes(), p.packed().bytes() + 2 * 40 * 4);  // codes, scales, loop 2's affine
}

}  // namespace
