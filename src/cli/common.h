#pragma once
// Helpers shared by the model-facing subcommands.
#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "io/tokenizer/tokenizer.h"
#include "model/ouro_model.h"

namespace loopq::cli {

// Flags every model command accepts.
inline const std::set<std::string> kModelFlags = {"model", "loops", "exit", "threads", "device"};
// Flags of the commands that run a model for its outputs (forward, generate, eval, bench).
inline const std::set<std::string> kRunFlags = {"model", "loops", "exit", "threads", "device", "kernels"};

// Reads a whole file; throws naming the file.
std::string read_text_file(const std::string& path);
// Loads the model at --model with --device, after setting --threads. Commands that run a
// model (kRunFlags, run = true) take --kernels packed|reference, default packed: a quantized
// model's linears then run on the packed integer kernels, or on the fake-quant reference where
// the kernels cannot run it (with a one-line notice). Other commands get the reference path.
OuroModel load_model_from_args(const Args& args, bool run = false);
// Forward options from --loops and --exit.
ForwardOptions forward_options_from_args(const Args& args, const OuroModel& model);
// The tokenizer stored beside a model (tokenizer.json or encoder.json); throws if none.
std::unique_ptr<tok::Tokenizer> load_model_tokenizer(const std::string& model_dir);
// Ids from --ids or --text (exactly one). Ids are checked against the vocabulary.
std::vector<int64_t> ids_from_args(const Args& args, const OuroModel& model);
// Fails before any work when an output file (--FLAG PATH) cannot be created later.
void check_output_path(const std::string& path, const char* flag);
// Throws unless every id is inside the model's vocabulary.
void check_ids_in_vocab(const std::vector<int64_t>& ids, const LoopLMConfig& config);
// Checks a tokenizer can feed a model: every id it can emit exists in the model's embedding.
void check_tokenizer_fits(const tok::Tokenizer& tokenizer, const LoopLMConfig& config);

}  // namespace loopq::cli
