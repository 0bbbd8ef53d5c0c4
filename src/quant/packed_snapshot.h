#pragma once
// The packed kernels for a model still being quantized: a copy of an in-memory model whose
// fake-quantized linears run on PackedLinear with the codes, scales and adaptations they hold at
// this moment (mid-learning, what end_weight_learning would bake). Its outputs are bit-identical
// to the reference path's (both sum the integer codes exactly, see quant_linear.h), and it runs
// faster, so LoopQ's validation guard scores its checkpoints on it.
#include <string>

#include "model/ouro_model.h"

namespace loopq::quant {

// Empty when every layer linear of `model` is a QuantLinear the packed kernels run, on the CPU;
// else the reason.
std::string why_no_packed_snapshot(const OuroModel& model);

// The copy: embedding, norms, head and attention transform, which quantization does not learn,
// are shared with `model`; each layer linear is repacked (the linears that read one input, q/k/v
// and gate/up, quantize it once) and the state alignment copied. Later changes to `model`, in
// place or not, are not seen: take a new snapshot. Throws loopq::Error where
// why_no_packed_snapshot is not empty.
OuroModel packed_snapshot(const OuroModel& model);

}  // namespace loopq::quant
