// Command-line parser: NUL-separated arguments against the flags of a real subcommand (the eval
// and quantize set), then every typed accessor the subcommands use.
#include <set>
#include <string>
#include <vector>

#include "cli/args.h"
#include "fuzz/fuzz_common.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = loopq::fuzz::split_nul(data, size, 64);
  std::vector<char*> argv;
  for (auto& p : parts) argv.push_back(p.data());
  argv.push_back(nullptr);
  static const std::set<std::string> values = {"model", "ids", "text", "loops", "exit", "threads",
                                               "device", "o", "seqlen", "nsamples", "batch",
                                               "max-new-tokens", "temperature", "top-p", "json"};
  static const std::set<std::string> bools = {"decode", "verbose", "stop-ids-none"};
  try {
    loopq::cli::Args args(static_cast<int>(parts.size()), argv.data(), values, bools);
    for (const auto& f : values) {
      (void)args.has(f);
      (void)args.get(f);
      try {
        (void)args.get_int(f, 0, -1000, 1LL << 40);
      } catch (const loopq::Error&) {
      }
      try {
        (void)args.get_double(f, 0.0, -1e9, 1e9);
      } catch (const loopq::Error&) {
      }
    }
    if (args.has("ids")) (void)loopq::cli::parse_int_list(args.get("ids"), "--ids");
    (void)args.require("model");
  } catch (const loopq::Error&) {
  }
  return 0;
}
