#include "cli/args.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "util/error.h"

namespace loopq::cli {

Args::Args(int argc, char** argv, const std::set<std::string>& value_flags,
           const std::set<std::string>& bool_flags) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    // "--name" flags, plus the single-letter short form "-o" for flags named "o".
    const bool is_long = a.size() > 2 && a.compare(0, 2, "--") == 0;
    const bool is_short = a.size() == 2 && a[0] == '-' && std::isalpha(static_cast<unsigned char>(a[1]));
    if (is_long || is_short) {
      std::string name = a.substr(is_long ? 2 : 1), value;
      bool inline_value = false;
      auto eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      if (value_flags.count(name)) {
        if (!inline_value) {
          if (i + 1 >= argc) throw Error("flag --" + name + " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      } else if (bool_flags.count(name)) {
        if (inline_value) throw Error("flag --" + name + " takes no value");
        bools_.insert(name);
      } else {
        throw Error("unknown flag --" + name + " (see --help)");
      }
      continue;
    }
    positional_.push_back(a);
  }
}

bool Args::has(const std::string& flag) const { return values_.count(flag) || bools_.count(flag); }

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) throw Error("missing required flag --" + flag + " (see --help)");
  return it->second;
}

long long Args::get_int(const std::string& flag, long long fallback, long long lo,
                        long long hi) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE)
    throw Error("flag --" + flag + " expects an integer, got '" + s + "'");
  if (v < lo || v > hi)
    throw Error("flag --" + flag + " must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got " + s);
  return v;
}

double Args::get_double(const std::string& flag, double fallback, double lo, double hi) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || v != v)
    throw Error("flag --" + flag + " expects a number, got '" + s + "'");
  if (v < lo || v > hi)
    throw Error("flag --" + flag + " must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got " + s);
  return v;
}

std::vector<long long> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<long long> out;
  size_t pos = 0;
  if (text.empty()) throw Error(what + " is empty");
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno == ERANGE)
      throw Error(what + ": '" + item + "' is not an integer");
    out.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace loopq::cli
