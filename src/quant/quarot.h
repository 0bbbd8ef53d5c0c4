#pragma once
// QuaRot on Ouro (quantization-reference.md §3.5), computed in float64 and cast back.
//
// Ouro's sandwich norms (input_layernorm_2, post_attention_layernorm_2) and the per-loop
// model.norm put a γ on the residual stream, so an offline residual rotation R1 would need an
// online un-rotate/re-rotate after every post-norm and at every loop boundary. We instead fold the
// pre-norm γ (input_layernorm, post_attention_layernorm) into the q/k/v and gate/up columns and
// rotate those linears' inputs online with one random Hadamard of the hidden size. Every quantized
// activation is then exactly what QuaRot's R1 would give it (the rms-normalised residual times
// the same orthogonal Q), at 2 Hadamards per layer application instead of 2 per layer plus 2 per
// loop boundary; the residual stream, post-norms and model.norm stay untouched.
//   - V/O: Hadamard of head_dim on v_proj's output rows (offline; rotates the V cache), and
//     H_heads ⊗ I applied online across heads at o_proj's input, with W_o ← W_o (I ⊗ H_hd)(H_heads ⊗ I).
//   - R4: exact Hadamard of the intermediate size (44 x 16 for 704) online at down_proj's input.
//   - R3: Hadamard of head_dim on q and k after RoPE (KVQuantSpec::rotate_qk), for K quantization.
// The result is an FP model (linears become ActQuantDenseLinear with their rotations) that equals
// the original to float tolerance; any weight quantizer (RTN, GPTQ) then runs on it.
#include <cstdint>

#include "model/ouro_model.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

// The online input rotation QuaRot gives linear `site` of a model with `config` (seeded residual
// signs). Used by rotate_model and by the quantized-model loader.
InputRotation quarot_input_rotation(const LoopLMConfig& config, LinearSite site, uint64_t seed);

// Rotates a dense model in place (see above). Throws if a needed Hadamard size cannot be built.
void quarot_rotate_model(OuroModel& model, uint64_t seed);

// Fails early (clear message) when the model's sizes have no Hadamard construction.
void quarot_check_sizes(const LoopLMConfig& config);

}  // namespace loopq::quant
