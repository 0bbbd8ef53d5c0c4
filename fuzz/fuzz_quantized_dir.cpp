// Quantized model directory: the input is config.json, a NUL, then model.safetensors. Runs the
// torch-free half of load_any_model in its order: the quantization_config block, the model
// config, the block against the model, then every quantized tensor's dtype, shape and values
// (src/quant/quantized_layout.h). The safetensors bytes go to a memfd so the real open path
// (fstat + mmap + parse) runs. Not covered here: QuaRot's Hadamard-size check and the dense
// tensors (fuzz_safetensors and load_model's name checks).
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "fuzz/fuzz_common.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/quant_config.h"
#include "quant/quantized_layout.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = loopq::fuzz::split_nul(data, size, 2);
  const std::string& config = parts[0];
  const std::string tensors = parts.size() > 1 ? parts[1] : std::string();
  const std::string dir = "fuzz-dir";
  loopq::quant::QuantConfig qc;
  loopq::LoopLMConfig c;
  try {
    if (!loopq::quant::parse_quant_config_text(config, dir + "/config.json", qc)) return 0;
    c = loopq::parse_hf_config_text(config, dir + "/config.json");
    loopq::quant::check_quant_config(dir, c, qc);
  } catch (const loopq::Error&) {
    return 0;
  }
  const int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
  if (fd < 0) __builtin_trap();
  for (size_t done = 0; done < tensors.size();) {
    const ssize_t w = ::write(fd, tensors.data() + done, tensors.size() - done);
    if (w <= 0) __builtin_trap();
    done += static_cast<size_t>(w);
  }
  try {
    auto file = loopq::io::SafetensorsFile::open("/proc/self/fd/" + std::to_string(fd));
    loopq::quant::check_quantized_tensors(dir, c, loopq::quant::quant_layout_of(qc),
                                          [&](const std::string& n) -> const loopq::io::TensorInfo* {
                                            return file->has(n) ? &file->get(n) : nullptr;
                                          });
  } catch (const loopq::Error&) {
  }
  ::close(fd);
  return 0;
}
