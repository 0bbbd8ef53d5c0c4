#pragma once
// One exception type for every user-facing failure. The CLI prints what() on one line and
// exits non-zero, so messages must name the file/flag/tensor at fault.
#include <stdexcept>
#include <string>

namespace loopq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace loopq
