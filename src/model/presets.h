#pragma once
// Named model shapes: the released Ouro checkpoints and loopq's embedded default.
#include <string>

#include "model/config.h"

namespace loopq {

// "ouro-1.4b", "ouro-2.6b" (docs/ouro-architecture.md §3.1) or "ouro-tiny" (models/ouro-tiny).
LoopLMConfig preset_config(const std::string& name);

}  // namespace loopq
