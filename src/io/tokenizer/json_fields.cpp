#include "io/tokenizer/json_fields.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace loopq::tok {

// The largest real tokenizer.json files are tens of MB (Qwen3: 11 MB); parsing JSON costs ~10x
// its size in memory, so a bigger file is refused before it is read.
constexpr uintmax_t kMaxTokenizerFileBytes = uintmax_t(256) << 20;

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(path + ": is a directory, expected a file");
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxTokenizerFileBytes)
    throw Error(path + ": file is " + std::to_string(size) + " bytes, over the 256 MiB limit for tokenizer files");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  return ss.str();
}

nlohmann::json parse_json(const std::string& text, const std::string& file) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range (1e400)
    throw Error(file + ": malformed JSON: " + e.what());
  }
}

namespace {
const nlohmann::json& null_json() {
  static const nlohmann::json n;
  return n;
}
}  // namespace

bool JsonAt::has(const char* key) const {
  if (!v_.is_object()) return false;
  auto it = v_.find(key);
  return it != v_.end() && !it->is_null();
}

JsonAt JsonAt::operator[](const char* key) const {
  std::string p = path_.empty() ? key : path_ + "." + key;
  if (!v_.is_object()) fail("expected an object, got " + std::string(v_.type_name()));
  auto it = v_.find(key);
  return JsonAt(it == v_.end() ? null_json() : *it, file_, p);
}

JsonAt JsonAt::operator[](size_t i) const {
  return JsonAt(array().at(i), file_, path_ + "[" + std::to_string(i) + "]");
}

void JsonAt::fail(const std::string& message) const {
  throw Error(file_ + ": " + (path_.empty() ? std::string("top level") : path_) + ": " + message);
}

const nlohmann::json& JsonAt::object() const {
  if (!v_.is_object()) fail("expected an object, got " + std::string(v_.type_name()));
  return v_;
}

const nlohmann::json& JsonAt::array() const {
  if (!v_.is_array()) fail("expected an array, got " + std::string(v_.type_name()));
  return v_;
}

std::string JsonAt::str() const {
  if (!v_.is_string()) fail("expected a string, got " + std::string(v_.type_name()));
  return v_.get<std::string>();
}

bool JsonAt::boolean() const {
  if (!v_.is_boolean()) fail("expected true/false, got " + std::string(v_.type_name()));
  return v_.get<bool>();
}

int64_t JsonAt::integer() const {
  if (v_.is_number_unsigned()) {
    auto u = v_.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) fail("integer too large");
    return static_cast<int64_t>(u);
  }
  if (!v_.is_number_integer()) fail("expected an integer, got " + std::string(v_.type_name()));
  return v_.get<int64_t>();
}

std::string JsonAt::str_or(const char* key, const std::string& fallback) const {
  return has(key) ? (*this)[key].str() : fallback;
}

bool JsonAt::bool_or(const char* key, bool fallback) const {
  return has(key) ? (*this)[key].boolean() : fallback;
}

}  // namespace loopq::tok
