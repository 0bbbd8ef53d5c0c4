#pragma once
// Normalizers run on the text between added tokens, before pre-tokenization.
#include <memory>
#include <string>
#include <vector>

namespace loopq::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Input and output are valid UTF-8.
  virtual std::string normalize(std::string text) const = 0;
};

class NfcNormalizer : public Normalizer {
 public:
  std::string normalize(std::string text) const override;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override;

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace loopq::tok
