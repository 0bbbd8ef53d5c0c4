#pragma once
// Typed access to JSON fields with one-line errors that name the file and the field path.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace loopq::tok {

// Reads a whole file; throws loopq::Error naming it when it cannot be read.
std::string read_text_file(const std::string& path);
// Parses JSON text; malformed input throws loopq::Error naming `file`.
nlohmann::json parse_json(const std::string& text, const std::string& file);

// A JSON value together with its file and path (e.g. "model.merges[3]").
class JsonAt {
 public:
  JsonAt(const nlohmann::json& v, std::string file, std::string path)
      : v_(v), file_(std::move(file)), path_(std::move(path)) {}

  const nlohmann::json& value() const { return v_; }
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }

  bool is_null() const { return v_.is_null(); }
  // True when the object has `key` with a non-null value.
  bool has(const char* key) const;
  JsonAt operator[](const char* key) const;  // missing keys read as null
  JsonAt operator[](size_t i) const;

  // Checked conversions: throw "<file>: <path>: expected X, got Y".
  const nlohmann::json& object() const;
  const nlohmann::json& array() const;
  std::string str() const;
  bool boolean() const;
  int64_t integer() const;

  // Optional fields: the fallback when missing or null, else the checked value.
  std::string str_or(const char* key, const std::string& fallback) const;
  bool bool_or(const char* key, bool fallback) const;

  [[noreturn]] void fail(const std::string& message) const;

 private:
  const nlohmann::json& v_;
  std::string file_, path_;
};

}  // namespace loopq::tok
