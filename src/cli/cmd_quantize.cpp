// loopq quantize: static post-training quantization of a looped model (RTN, SmoothQuant, GPTQ,
// QuaRot+RTN, QuaRot+GPTQ) into a quantized model directory that every other command loads.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "model/model_io.h"
#include "model/runtime.h"
#include "quant/calibration.h"
#include "quant/hadamard.h"
#include "quant/ptq.h"
#include "quant/quant_config.h"
#include "quant/quarot.h"
#include "quant/quantized_io.h"
#include "util/error.h"
#include "util/memory.h"

namespace fs = std::filesystem;

namespace loopq::cli {
namespace {

const char* kQuantizeHelp =
    "usage: loopq quantize --model DIR --method rtn|smoothquant|gptq|quarot-rtn|quarot-gptq|loopq|learned-static\n"
    "         -o OUT\n"
    "         [--w-bits 4] [--a-bits 16] [--kv-bits 16] [--group-size 0] [--w-asym] [--no-clip-search]\n"
    "         [--a-clip C] [--a-asym] [--a-group-size 0] [--kv-clip 0.95] [--kv-group-size 128] [--kv-sym]\n"
    "         [--calib FILE] [--nsamples 128] [--seqlen 2048] [--seed 0] [--batch 8]\n"
    "         [--alpha 0.5] [--percdamp 0.01] [--block-size 128] [--no-act-order]\n"
    "         [--sequential none|layer|sublayer] [--rotation-seed 0] [--threads N] [--device D]\n"
    "         [--act-mode dynamic|static] [--act-samples 512] [--fit-windows 8]\n"
    "         [--loopq-components ABCD] [--loopq-weights gptq|rtn]\n"
    "         [--opt-steps 15] [--opt-lr 5e-3] [--opt-kl 1.0] [--opt-batch 4] [--opt-seqlen 256] [--no-lwc]\n"
    "         [--opt-weights [--opt-weight-lr 0.05]]\n"
    "         [--opt-valid VALID.txt [--opt-valid-windows 8] [--opt-valid-every 5] [--opt-patience 0]]\n"
    "         [--no-trajectory-gptq] [--gptq-loop-weights w1,w2,...] [--gptq-target inputs|fp] [--loopq-smooth]\n"
    "         [--input-transform attn,o,mlp,down|none] [--kv-transform k,v|none]\n"
    "Quantizes all seven linears of every layer (embeddings, norms, lm_head, exit gate stay FP),\n"
    "one parameter set per physical layer with loop-pooled statistics (the static baselines):\n"
    "  weights      per output row (or --group-size columns), symmetric int grid [-2^(b-1), 2^(b-1)-1]\n"
    "               with QuaRot's MSE clip search unless --no-clip-search; --w-asym for 0..2^b-1\n"
    "  activations  dynamic per token, symmetric, clip --a-clip (default 0.9 at <= 4 bits, else 1.0)\n"
    "  KV cache     K after RoPE and V, per token in groups of --kv-group-size, asymmetric, clip 0.95,\n"
    "               each loop's cache slot on its own values\n"
    "  smoothquant  s = max|X|^alpha / max|W|^(1-alpha) folded into input/post-attention norms\n"
    "  gptq         damp 0.01, block 128, act-order; Hessians pooled over loops; --sequential layer\n"
    "               (default) recalibrates after each layer, sublayer after each of q/k/v, o, gate/up, down\n"
    "  quarot-*     online Hadamards at q/k/v/gate/up (residual), across heads at o_proj (+ per-head V),\n"
    "               at down_proj (44 x 2^m Kronecker for non-power-of-2 sizes), and on q/k for KV4\n"
    "  --act-mode   dynamic (default): per-token scales at run time; static: one offline scale per\n"
    "               tensor and site, chosen by the output error it causes (searched on --act-samples\n"
    "               calibration rows per site and loop); static baselines pool the loops\n"
    "  loopq        QuaRot rotations + GPTQ (or --loopq-weights rtn) as the shared backbone, plus\n"
    "               A: per-loop activation parameters (static scales or clip ratios) and a per-loop\n"
    "                  output scale/bias per channel (closed-form least squares); with\n"
    "                  --loopq-smooth also a shared smoothing vector per site, its strength chosen\n"
    "                  by the worst loop's output error, folded into norms / up / v rows\n"
    "               B: selective rotation (an online rotation is kept only where it lowers the\n"
    "                  measured output error over the loops; decisions stored in config.json)\n"
    "               C: per-loop state alignment (model.norm weight + bias per loop, closed form)\n"
    "               D: trajectory-aware optimization of all of the above plus LWC weight clipping\n"
    "                  (shared over loops) through straight-through rounding: the quantized model\n"
    "                  runs all loops on its own states; loss = sum_t ||s~_t - s_t||^2/||s_t||^2\n"
    "                  + --opt-kl x KL(p_fp || p_q) of the final readout; GPTQ Hessians come from\n"
    "                  the quantized trajectory (earlier layers quantize their activations too;\n"
    "                  each loop's rows weighted by --gptq-loop-weights) unless --no-trajectory-gptq;\n"
    "                  --gptq-target fp: GPTQ toward the FP model's outputs on its FP inputs (the\n"
    "                  least-squares target of the quantized inputs, own activation rounding included)\n"
    "  --input-transform  (rotated methods) a closed-form input-shaping transform T per listed input\n"
    "               group, applied before its rotation (stored dense [in, in], shared by all loops):\n"
    "               T² = C^-1/2 (C^1/2 G C^1/2)^1/2 C^-1/2 (C: input second moment, G = WᵀW)\n"
    "               minimises the output error of rotated rounding; C balanced over loops for loopq,\n"
    "               pooled otherwise; kept per site only where it lowers the measured error\n"
    "  --kv-transform k,v  (rotated methods, --kv-bits below 16) the same closed form per KV head\n"
    "               for the cache's rounding, applied after RoPE: k H T_k with q H T_k^-T (logit\n"
    "               error; C: key second moment, G: its queries'), v T_v with T_v^-1 folded into\n"
    "               o_proj (C: value second moment, G: o_proj's columns that read the head). Stored\n"
    "               fp32 [kv_heads, head_dim, head_dim] per layer; kept per layer and tensor only\n"
    "               where it lowers the measured error\n"
    "  --opt-weights  D and learned-static also learn the shared weight behind the integer codes\n"
    "               (straight-through rounding from the GPTQ/RTN codes; Adam steps of --opt-weight-lr\n"
    "               quantization steps): the codes may move, still one integer tensor per linear\n"
    "  learned-static  the same backbone and parameter types with one set per site for all loops,\n"
    "               learned with a layer-local loss on FP inputs (OmniQuant-style): the control for D\n"
    "  --opt-valid  validation guard for the optimization (D and learned-static alike): the first\n"
    "               --opt-valid-windows windows of --seqlen tokens of FILE (use the valid split) are\n"
    "               scored (next-token NLL of the quantized model's final readout, all loops on its\n"
    "               own states) for the bare backbone (every adaptation off), before the first step\n"
    "               and every --opt-valid-every steps; the best candidate is kept, and the losses\n"
    "               and the choice are recorded in config.json; the pass stops early after\n"
    "               --opt-patience checkpoints in a row that beat no earlier one (0: never)\n"
    "  --opt-batch/--opt-seqlen  pieces per step and their length: the calibration windows are cut\n"
    "               into --opt-seqlen pieces, so every calibration token is used\n"
    "Calibration: --nsamples windows of --seqlen tokens (default min(2048, context)) at seeded random\n"
    "offsets of --calib (use the train split). OUT is written atomically and must not exist.\n";

// A comma list of `names` (any subset, any order) or "none": which names are on. An unknown item
// is an error naming `flag`, what an item is (`kind`) and the accepted names.
template <size_t N>
std::array<bool, N> parse_name_list(const std::string& list, const char* const (&names)[N], const char* flag,
                                    const char* kind, const char* expected) {
  std::array<bool, N> on{};
  if (list == "none") return on;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    const auto pos = std::find(std::begin(names), std::end(names), item);
    if (pos == std::end(names))
      throw Error(std::string(flag) + ": unknown " + kind + " '" + item + "' (expected " + expected + ")");
    on[size_t(pos - std::begin(names))] = true;
    start = end + 1;
  }
  return on;
}

std::array<bool, 4> parse_transform_groups(const std::string& list) {
  static const char* const names[] = {"attn", "o", "mlp", "down"};
  return parse_name_list(list, names, "--input-transform", "input group", "attn, o, mlp, down or none");
}

std::array<bool, 2> parse_kv_transform(const std::string& list) {
  static const char* const names[] = {"k", "v"};
  return parse_name_list(list, names, "--kv-transform", "cache tensor", "k, v or none");
}

}  // namespace

int cmd_quantize(int argc, char** argv) {
  Args args(argc, argv,
            {"model", "method", "o", "out", "w-bits", "a-bits", "kv-bits", "group-size", "a-clip", "a-group-size",
             "kv-clip", "kv-group-size", "calib", "nsamples", "seqlen", "seed", "batch", "alpha", "percdamp",
             "block-size", "sequential", "rotation-seed", "threads", "device", "act-mode", "act-samples",
             "loopq-components", "loopq-weights", "opt-steps", "opt-lr", "opt-kl", "opt-batch", "opt-seqlen", "gptq-loop-weights", "fit-windows",
             "opt-valid", "opt-valid-windows", "opt-valid-every", "opt-patience", "gptq-target", "opt-weight-lr",
             "input-transform", "kv-transform"},
            {"w-asym", "no-clip-search", "a-asym", "kv-sym", "no-act-order", "no-lwc", "no-trajectory-gptq", "loopq-smooth", "opt-weights"});
  if (args.help()) {
    std::fputs(kQuantizeHelp, stdout);
    return 0;
  }
  const std::string model_dir = args.require("model");
  const std::string out = args.has("o") ? args.get("o") : args.get("out");
  if (out.empty()) throw Error("missing output directory -o DIR");
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)))
    throw Error(out + " already exists and is not empty; choose a new -o");
  {
    fs::path parent = fs::path(out).has_parent_path() ? fs::path(out).parent_path() : fs::path(".");
    if (!fs::is_directory(parent)) throw Error("-o " + out + ": directory " + parent.string() + " does not exist");
  }

  // Every flag is checked before the model is loaded or anything is computed.
  quant::QuantConfig qc;
  qc.method = quant::parse_method(args.require("method"));
  qc.w_bits = int(args.get_int("w-bits", 4, 2, 8));
  qc.w_symmetric = !args.has("w-asym");
  qc.w_group_size = args.get_int("group-size", 0, 0, 1 << 20);
  qc.w_clip_search = !args.has("no-clip-search");
  const long long a_bits = args.get_int("a-bits", 16, 2, 16);
  if (a_bits > 8 && a_bits != 16) throw Error("--a-bits must be in [2, 8] or 16");
  qc.act.bits = int(a_bits);
  qc.act.symmetric = !args.has("a-asym");
  qc.act.clip = args.get_double("a-clip", a_bits <= 4 ? 0.9 : 1.0, 1e-6, 1.0);
  qc.act.group_size = args.get_int("a-group-size", 0, 0, 1 << 20);
  const long long kv_bits = args.get_int("kv-bits", 16, 2, 16);
  if (kv_bits > 8 && kv_bits != 16) throw Error("--kv-bits must be in [2, 8] or 16");
  qc.kv.bits = int(kv_bits);
  qc.kv.symmetric = args.has("kv-sym");
  qc.kv.clip = args.get_double("kv-clip", 0.95, 1e-6, 1.0);
  qc.kv.group_size = args.get_int("kv-group-size", 128, 0, 1 << 20);
  qc.smooth_alpha = args.get_double("alpha", 0.5, 0.0, 1.0);
  qc.percdamp = args.get_double("percdamp", 0.01, 0.0, 10.0);
  qc.block_size = args.get_int("block-size", 128, 1, 1 << 20);
  qc.act_order = !args.has("no-act-order");
  qc.sequential = args.get("sequential", "layer");
  qc.rotation_seed = uint64_t(args.get_int("rotation-seed", 0, 0, INT64_MAX));
  const std::string act_mode = args.get("act-mode", "dynamic");
  if (act_mode != "dynamic" && act_mode != "static") throw Error("--act-mode must be dynamic or static, got '" + act_mode + "'");
  qc.act.static_scale = act_mode == "static";
  if (qc.act.static_scale && qc.act.bits == 16) throw Error("--act-mode static needs --a-bits below 16");
  qc.act_samples = args.get_int("act-samples", 512, 16, 1 << 20);
  qc.fit_windows = args.get_int("fit-windows", 8, 1, 1 << 20);
  const bool loopq = qc.method == quant::Method::LoopQ;
  const bool learned = loopq || qc.method == quant::Method::LearnedStatic;
  if (!loopq && args.has("loopq-components")) throw Error("--loopq-components needs --method loopq");
  if (!learned && args.has("loopq-weights")) throw Error("--loopq-weights needs --method loopq or learned-static");
  const std::string lw = args.get("loopq-weights", "gptq");
  if (lw != "gptq" && lw != "rtn") throw Error("--loopq-weights must be gptq or rtn, got '" + lw + "'");
  qc.loopq = quant::LoopQSpec::parse(loopq ? args.get("loopq-components", "ABCD") : "", lw == "gptq");
  if (loopq && qc.loopq.components().empty()) throw Error("--loopq-components needs at least one of A, B, C, D");
  if (args.has("loopq-smooth") && !(loopq && qc.loopq.A)) throw Error("--loopq-smooth needs --method loopq with component A");
  qc.loopq_smooth = args.has("loopq-smooth");
  qc.transform_request = parse_transform_groups(args.get("input-transform", "none"));
  if (qc.transform_request != std::array<bool, 4>{} && !quant::uses_rotation(qc.method))
    throw Error("--input-transform needs a rotated method (quarot-rtn, quarot-gptq, loopq, learned-static)");
  qc.kv_transform_request = parse_kv_transform(args.get("kv-transform", "none"));
  if (qc.kv_transform_request != std::array<bool, 2>{} && !quant::uses_rotation(qc.method))
    throw Error("--kv-transform needs a rotated method (quarot-rtn, quarot-gptq, loopq, learned-static)");
  const bool optimizes = (loopq && qc.loopq.D) || qc.method == quant::Method::LearnedStatic;
  for (const char* f : {"opt-steps", "opt-lr", "opt-kl", "opt-batch", "opt-seqlen", "no-lwc", "opt-valid", "opt-weights",
                        "opt-weight-lr"})
    if (!optimizes && args.has(f))
      throw Error(std::string("--") + f + " needs an optimizing method (loopq with component D, or learned-static)");
  qc.optimize.steps = args.get_int("opt-steps", qc.optimize.steps, 0, 1000000);
  qc.optimize.lr = args.get_double("opt-lr", qc.optimize.lr, 1e-9, 1.0);
  qc.optimize.kl_weight = args.get_double("opt-kl", qc.optimize.kl_weight, 0.0, 1e6);
  qc.optimize.batch = args.get_int("opt-batch", qc.optimize.batch, 1, 4096);
  qc.optimize.seqlen = args.get_int("opt-seqlen", qc.optimize.seqlen, 2, 1 << 20);
  qc.optimize.learn_weight_clipping = !args.has("no-lwc");
  if (args.has("opt-weight-lr") && !args.has("opt-weights")) throw Error("--opt-weight-lr needs --opt-weights");
  if (args.has("opt-weights") && args.has("no-lwc")) throw Error("--opt-weights needs learned weight clipping (drop --no-lwc)");
  qc.optimize.learn_weights = args.has("opt-weights");
  qc.optimize.weight_lr = args.get_double("opt-weight-lr", qc.optimize.weight_lr, 1e-9, 10.0);
  for (const char* f : {"opt-valid-windows", "opt-valid-every", "opt-patience"})
    if (!args.has("opt-valid") && args.has(f)) throw Error(std::string("--") + f + " needs --opt-valid FILE");
  if (args.has("opt-valid") && !fs::is_regular_file(args.get("opt-valid")))
    throw Error("--opt-valid " + args.get("opt-valid") + ": not a readable file");
  const int64_t valid_windows = args.get_int("opt-valid-windows", 8, 1, 1 << 20);
  qc.optimize.valid_every = args.get_int("opt-valid-every", qc.optimize.valid_every, 1, 1000000);
  qc.optimize.patience = args.get_int("opt-patience", qc.optimize.patience, 0, 1000000);
  const bool trajectory_gptq = loopq && qc.loopq.D && qc.loopq.gptq_weights;
  for (const char* f : {"gptq-loop-weights", "no-trajectory-gptq", "gptq-target"})
    if (!trajectory_gptq && args.has(f))
      throw Error(std::string("--") + f + " needs trajectory-aware GPTQ (loopq with component D and GPTQ weights)");
  qc.trajectory_gptq = !args.has("no-trajectory-gptq");
  if (args.has("gptq-target")) {
    const std::string t = args.get("gptq-target");
    if (t != "fp" && t != "inputs") throw Error("--gptq-target must be fp or inputs, got '" + t + "'");
    if (!qc.trajectory_gptq) throw Error("--gptq-target needs trajectory-aware GPTQ (drop --no-trajectory-gptq)");
    qc.gptq_fp_target = t == "fp";
  }
  if (args.has("gptq-loop-weights")) {
    const std::string list = args.get("gptq-loop-weights");
    size_t start = 0;
    while (start <= list.size()) {
      const size_t comma = list.find(',', start);
      const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      char* end = nullptr;
      const double w = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0') throw Error("--gptq-loop-weights: '" + item + "' is not a number");
      qc.gptq_loop_weights.push_back(w);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (quant::needs_calibration(qc) && !args.has("calib"))
    throw Error(std::string(quant::method_name(qc.method)) + (qc.act.static_scale && !loopq ? " with --act-mode static" : "") +
                " needs --calib FILE (calibration text, e.g. the train split)");
  if (args.has("calib") && !fs::is_regular_file(args.get("calib")))
    throw Error("--calib " + args.get("calib") + ": not a readable file");
  const int64_t nsamples = args.get_int("nsamples", 128, 1, 1 << 20);
  const int64_t batch = args.get_int("batch", 8, 1, 4096);
  const uint64_t seed = uint64_t(args.get_int("seed", 0, 0, INT64_MAX));
  qc.optimize.seed = seed;

  OuroModel model = load_model_from_args(args);
  const LoopLMConfig& c = model.config();
  {
    quant::QuantConfig existing;
    if (quant::read_quant_config(model_dir, existing))
      throw Error(model_dir + " is already quantized (" + quant::method_name(existing.method) + "); start from the FP model");
  }
  qc.validate(c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
  if (quant::uses_rotation(qc.method)) quant::quarot_check_sizes(c);
  const int64_t seqlen = args.get_int("seqlen", std::min<int64_t>(2048, c.max_position_embeddings), 2,
                                      c.max_position_embeddings);
  // The windows are one int64 tensor of nsamples x seqlen; a batch's attention scores come on top.
  check_fits_in_memory(saturating_product({uint64_t(nsamples), uint64_t(seqlen), 8}),
                       "--nsamples " + std::to_string(nsamples) + " x --seqlen " + std::to_string(seqlen) +
                           ": the calibration windows");
  check_fits_in_memory(saturating_product({uint64_t(std::min(batch, nsamples)), uint64_t(c.num_heads),
                                           uint64_t(seqlen), uint64_t(seqlen), 8}),
                       "--batch x --seqlen " + std::to_string(seqlen) + ": the attention scores");
  at::Tensor windows;
  if (args.has("calib")) {
    auto tokenizer = load_model_tokenizer(model_dir_of(model_dir));
    check_tokenizer_fits(*tokenizer, c);
    std::vector<int32_t> ids = tokenizer->encode(read_text_file(args.get("calib")));
    windows = quant::calibration_windows(ids, nsamples, seqlen, seed).to(model.device());
    qc.calib_file = fs::path(args.get("calib")).filename().string();
    qc.nsamples = nsamples;
    qc.seqlen = seqlen;
    qc.calib_seed = seed;
  }
  if (args.has("opt-valid")) {
    // The first --opt-valid-windows non-overlapping windows of the file, as `eval ppl` cuts them.
    check_fits_in_memory(saturating_product({uint64_t(valid_windows), uint64_t(seqlen), 8}),
                         "--opt-valid-windows " + std::to_string(valid_windows) + " x --seqlen " +
                             std::to_string(seqlen) + ": the validation windows");
    auto tokenizer = load_model_tokenizer(model_dir_of(model_dir));
    const std::vector<int32_t> ids = tokenizer->encode(read_text_file(args.get("opt-valid")));
    if (int64_t(ids.size()) < valid_windows * seqlen)
      throw Error("--opt-valid " + args.get("opt-valid") + ": " + std::to_string(ids.size()) + " tokens, fewer than " +
                  "--opt-valid-windows " + std::to_string(valid_windows) + " x --seqlen " + std::to_string(seqlen));
    std::vector<int64_t> head(ids.begin(), ids.begin() + valid_windows * seqlen);
    qc.optimize.valid_ids = std::move(head);
    qc.optimize.valid_seqlen = seqlen;
    qc.optimize.valid_file = fs::path(args.get("opt-valid")).filename().string();
  }
  at::NoGradGuard no_grad;
  std::fprintf(stderr, "quantize: %s W%dA%dKV%d%s on %s\n", quant::method_name(qc.method), qc.w_bits, qc.act.bits,
               qc.kv.bits, qc.w_group_size ? (" g" + std::to_string(qc.w_group_size)).c_str() : "", model_dir.c_str());
  quant::PtqRunOptions run;
  run.batch_size = batch;
  quant::PtqReport report = quant::quantize_model(model, qc, windows, run);
  model.to(at::kCPU);
  quant::save_quantized_model(model, qc, out, model_dir_of(model_dir));
  std::printf("wrote %s: %s%s W%dA%dKV%d (%s activations), %.1f s (calibration %.1f s over %lld passes)\n",
              out.c_str(), quant::method_name(qc.method), loopq ? ("-" + qc.loopq.components()).c_str() : "",
              qc.w_bits, qc.act.bits, qc.kv.bits, qc.act.static_scale ? "static" : "dynamic",
              report.quantize_seconds, report.calibration_seconds, (long long)report.calibration_passes);
  return 0;
}

}  // namespace loopq::cli
