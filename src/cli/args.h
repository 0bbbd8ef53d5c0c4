#pragma once
// Minimal flag parser shared by all subcommands: --flag value, --flag=value, boolean --flag.
// Unknown flags and missing values are errors, so typos never silently fall back to defaults.
#include <map>
#include <set>
#include <string>
#include <vector>

namespace loopq::cli {

class Args {
 public:
  // value_flags take a value; bool_flags do not. Positional arguments are collected in order.
  Args(int argc, char** argv, const std::set<std::string>& value_flags,
       const std::set<std::string>& bool_flags);

  bool has(const std::string& flag) const;
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  std::string require(const std::string& flag) const;
  long long get_int(const std::string& flag, long long fallback, long long lo, long long hi) const;
  double get_double(const std::string& flag, double fallback, double lo, double hi) const;
  const std::vector<std::string>& positional() const { return positional_; }
  bool help() const { return help_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> bools_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// Parses "1,2,3" into integers; throws loopq::Error on malformed input.
std::vector<long long> parse_int_list(const std::string& text, const std::string& what);

}  // namespace loopq::cli
