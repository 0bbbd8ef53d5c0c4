// Incremental decoding with the per-(loop, layer) cache must reproduce the full forward
// (docs/ouro-architecture.md §14.2), including chunked prefill and padded batches.
#include <gtest/gtest.h>

#include "test_helpers.h"

using namespace loopq;
using loopq::testing::max_abs_diff;

namespace {

at::Tensor random_ids(int64_t B, int64_t S, int64_t V, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randint(0, V, {B, S}, g, at::kLong);
}

ForwardOptions all_loops(int64_t loops) {
  ForwardOptions o;
  o.loops = loops;
  o.loop_logits = true;
  o.exit = ExitMode{};  // last
  return o;
}

}  // namespace

class IncrementalDecode : public ::testing::TestWithParam<int64_t> {};

TEST_P(IncrementalDecode, TokenByTokenEqualsFullForward) {
  const int64_t loops = GetParam();
  OuroModel model = loopq::testing::tiny_model(3);
  at::Tensor ids = random_ids(1, 12, model.config().vocab_size, 7);
  ForwardResult full = model.forward(ids, all_loops(loops));

  KVCache cache = model.make_cache(1, loops, 4);  // small capacity: exercises growth too
  const int64_t prompt = 5;
  ForwardResult pre = model.forward(ids.narrow(1, 0, prompt), all_loops(loops), &cache);
  for (int64_t t = 0; t < loops; ++t)
    EXPECT_LT(max_abs_diff(pre.loop_logits[t], full.loop_logits[t].narrow(1, 0, prompt)), 1e-4);
  for (int64_t i = prompt; i < ids.size(1); ++i) {
    ForwardResult step = model.forward(ids.narrow(1, i, 1), all_loops(loops), &cache);
    for (int64_t t = 0; t < loops; ++t) {
      EXPECT_LT(max_abs_diff(step.loop_logits[t], full.loop_logits[t].narrow(1, i, 1)), 1e-4)
          << "position " << i << " loop " << t;
      EXPECT_LT(max_abs_diff(step.states[t], full.states[t].narrow(1, i, 1)), 1e-5);
    }
    EXPECT_LT(max_abs_diff(step.exit_probs, full.exit_probs.narrow(2, i, 1)), 1e-5);
    // Every one of the T*N slots holds exactly the tokens seen so far.
    ASSERT_EQ(cache.num_slots(), loops * model.config().num_layers);
    for (int64_t s = 0; s < cache.num_slots(); ++s) EXPECT_EQ(cache.slot_length(s), i + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Loops, IncrementalDecode, ::testing::Values(1, 2, 3, 4));

TEST(KVCacheTest, ChunkedPrefillEqualsFullForward) {
  OuroModel model = loopq::testing::tiny_model(4, /*kv_heads=*/1);
  at::Tensor ids = random_ids(1, 15, model.config().vocab_size, 9);
  ForwardResult full = model.forward(ids, all_loops(4));
  KVCache cache = model.make_cache(1, 4, 64);
  int64_t begin = 0;
  for (int64_t chunk : {4, 1, 7, 3}) {
    ForwardResult r = model.forward(ids.narrow(1, begin, chunk), all_loops(4), &cache);
    EXPECT_LT(max_abs_diff(r.logits, full.logits.narrow(1, begin, chunk)), 1e-4);
    begin += chunk;
  }
  EXPECT_EQ(cache.length(), 15);
}

// Batched decoding with padding must give each sequence exactly its unpadded logits (the mask
// bug of §10.2: decode-step masks must cover all cached positions, per sequence).
class PaddedBatch : public ::testing::TestWithParam<bool> {};

TEST_P(PaddedBatch, MatchesSingleSequenceRuns) {
  const bool left = GetParam();
  OuroModel model = loopq::testing::tiny_model(5);
  const int64_t V = model.config().vocab_size, loops = 3;
  const std::vector<int64_t> lengths = {9, 4, 6};
  const int64_t B = int64_t(lengths.size()), Smax = 9, decode_steps = 4;
  at::Tensor seqs = random_ids(B, Smax + decode_steps, V, 11);

  at::Tensor ids = at::zeros({B, Smax}, at::kLong), mask = at::zeros({B, Smax}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    int64_t off = left ? Smax - lengths[b] : 0;
    ids[b].narrow(0, off, lengths[b]).copy_(seqs[b].narrow(0, 0, lengths[b]));
    mask[b].narrow(0, off, lengths[b]).fill_(1);
  }
  KVCache cache = model.make_cache(B, loops, Smax + decode_steps);
  ForwardResult pre = model.forward(ids, all_loops(loops), &cache, mask);

  // Each sequence alone, prompt plus the decode tokens it will receive.
  std::vector<ForwardResult> single;
  for (int64_t b = 0; b < B; ++b) {
    at::Tensor own = at::cat({seqs[b].narrow(0, 0, lengths[b]), seqs[b].narrow(0, Smax, decode_steps)});
    single.push_back(model.forward(own.view({1, -1}), all_loops(loops)));
    int64_t off = left ? Smax - lengths[b] : 0;
    EXPECT_LT(max_abs_diff(pre.logits[b].narrow(0, off, lengths[b]),
                           single[b].logits[0].narrow(0, 0, lengths[b])), 1e-4)
        << "prefill, sequence " << b;
    EXPECT_FALSE(pre.logits.isnan().any().item<bool>()) << "padding rows must stay finite";
  }
  for (int64_t step = 0; step < decode_steps; ++step) {
    at::Tensor next = seqs.narrow(1, Smax + step, 1).contiguous();
    ForwardResult r = model.forward(next, all_loops(loops), &cache, at::ones({B, 1}, at::kLong));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < loops; ++t)
        EXPECT_LT(max_abs_diff(r.loop_logits[t][b][0], single[b].loop_logits[t][0][lengths[b] + step]), 1e-4)
            << "decode step " << step << " sequence " << b << " loop " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(LeftAndRight, PaddedBatch, ::testing::Values(true, false));

TEST(KVCacheTest, RejectsCacheWithOtherLoopCount) {
  OuroModel model = loopq::testing::tiny_model();
  KVCache cache = model.make_cache(1, 2, 8);
  ForwardOptions o;
  o.loops = 3;
  EXPECT_THROW(model.forward(at::zeros({1, 2}, at::kLong), o, &cache), loopq::Error);
}

TEST(KVCacheTest, RejectsOutOfVocabIds) {
  OuroModel model = loopq::testing::tiny_model();
  ForwardOptions o;
  EXPECT_THROW(model.forward(at::full({1, 2}, 61, at::kLong), o), loopq::Error);
  EXPECT_THROW(model.forward(at::full({1, 2}, -1, at::kLong), o), loopq::Error);
}
