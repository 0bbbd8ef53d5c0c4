#include "io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "util/error.h"

// The format is little-endian and we read lengths/offsets with memcpy.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace loopq::io {
namespace {

using nlohmann::json;

// Same limit as the reference implementation: a larger header means a corrupt or hostile file,
// and parsing it would cost gigabytes of memory.
constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;
// Real checkpoints hold thousands of tensors of rank <= 5; the limits bound the index we build.
constexpr size_t kMaxTensors = 1u << 20;
constexpr size_t kMaxRank = 64;  // libtorch's own limit on dimensions

// A JSON value for an error message: one line and bounded (dump() of a huge or deeply nested
// value from a hostile header would print megabytes and recurse as deep as the nesting).
std::string brief(const json& v) {
  if (v.is_array()) {
    bool flat = v.size() <= 8;
    for (const auto& e : v) flat = flat && e.is_primitive();
    if (!flat) return "an array of " + std::to_string(v.size()) + " items";
  } else if (v.is_object()) {
    return "an object";
  }
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 80) + "..." : s;
}

// Names come from untrusted files: keep error messages on one line and of bounded length.
std::string quote(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 200) out += "...";
  return out + "'";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses JSON, rejecting duplicate object keys at any depth: nlohmann would silently keep one of
// them, so two tensors (or two dtypes for one tensor) could disagree with other readers.
json parse_json_strict(const char* begin, const char* end, const std::string& what) {
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  bool has_duplicate = false;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !has_duplicate) {
        has_duplicate = true;
        duplicate = key;
      }
    }
    return true;
  };
  json j;
  try {
    j = json::parse(begin, end, on_event);
  } catch (const json::exception& e) {
    throw Error(what + " is not valid JSON: " + e.what());
  }
  if (has_duplicate) throw Error(what + " has duplicate key " + quote(duplicate));
  return j;
}

// A JSON value as a non-negative integer, or false (floats, negatives, strings, ...).
bool as_count(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// Product of dims; false on overflow past int64. A zero dim wins over any overflow.
bool checked_numel(const std::vector<int64_t>& shape, uint64_t* out) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
    *out = 0;
    return true;
  }
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = n;
  return true;
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Shard names must stay inside the checkpoint directory.
bool safe_relative_path(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string::npos) slash = p.size();
    if (p.compare(start, slash - start, "..") == 0 && slash - start == 2) return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

int64_t TensorInfo::numel() const {
  uint64_t n = 0;
  if (!checked_numel(shape, &n)) throw Error("tensor " + quote(name) + ": numel overflows");
  return static_cast<int64_t>(n);
}

// ---- SafetensorsFile ----------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile(path));
  file->parse();
  return file;
}

void SafetensorsFile::parse() {
  const std::string& p = path();
  const size_t size = map_.size();
  if (size < 8) {
    throw Error(p + ": file is " + std::to_string(size) +
                " bytes, too short for a safetensors header length");
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, map_.data(), 8);
  if (header_len == 0) throw Error(p + ": header length is 0");
  if (header_len > kMaxHeaderBytes) {
    throw Error(p + ": header length " + std::to_string(header_len) +
                " exceeds the 100 MB limit (not a safetensors file?)");
  }
  if (header_len > size - 8) {
    throw Error(p + ": header length " + std::to_string(header_len) + " exceeds the file size of " +
                std::to_string(size) + " bytes (truncated?)");
  }
  const char* header = reinterpret_cast<const char*>(map_.data() + 8);
  const json j = parse_json_strict(header, header + header_len, p + ": header");
  if (!j.is_object()) throw Error(p + ": header is not a JSON object");
  if (j.size() > kMaxTensors + 1)
    throw Error(p + ": header lists " + std::to_string(j.size()) + " entries, over the limit of " +
                std::to_string(kMaxTensors) + " tensors");

  const uint8_t* data_section = map_.data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  struct Entry {
    TensorInfo info;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [key, val] : j.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) throw Error(p + ": __metadata__ is not a JSON object");
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) throw Error(p + ": __metadata__ value for " + quote(mk) + " is not a string");
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor " + quote(key);
    if (!val.is_object()) throw Error(where + ": entry is not a JSON object");

    const auto dt = val.find("dtype");
    if (dt == val.end()) throw Error(where + ": missing dtype");
    if (!dt->is_string()) throw Error(where + ": dtype is not a string");
    const auto dtype = dtype_try_from_name(dt->get<std::string>());
    if (!dtype) throw Error(where + ": unknown dtype " + quote(dt->get<std::string>()));

    const auto sh = val.find("shape");
    if (sh == val.end()) throw Error(where + ": missing shape");
    if (!sh->is_array()) throw Error(where + ": shape is not an array");
    if (sh->size() > kMaxRank)
      throw Error(where + ": shape has " + std::to_string(sh->size()) + " dims, over the limit of " +
                  std::to_string(kMaxRank));
    std::vector<int64_t> shape;
    for (const auto& d : *sh) {
      uint64_t dim = 0;
      if (!as_count(d, &dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw Error(where + ": shape " + brief(*sh) + " has a dim that is not a non-negative integer");
      }
      shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t numel = 0, nbytes = 0;
    if (!checked_numel(shape, &numel) ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dtype)), &nbytes)) {
      throw Error(where + ": shape " + shape_text(shape) + " has too many elements");
    }

    const auto off = val.find("data_offsets");
    if (off == val.end()) throw Error(where + ": missing data_offsets");
    uint64_t begin = 0, end = 0;
    if (!off->is_array() || off->size() != 2 || !as_count((*off)[0], &begin) ||
        !as_count((*off)[1], &end)) {
      throw Error(where + ": data_offsets " + brief(*off) + " is not [begin, end] of non-negative integers");
    }
    const std::string range = "[" + std::to_string(begin) + "," + std::to_string(end) + ")";
    if (begin > end) throw Error(where + ": data_offsets " + range + " has begin > end");
    if (end - begin != nbytes) {
      throw Error(where + ": data range " + range + " holds " + std::to_string(end - begin) +
                  " bytes but " + dtype_name(*dtype) + " " + shape_text(shape) + " needs " +
                  std::to_string(nbytes));
    }
    if (end > data_size) {
      throw Error(where + ": data range " + range + " exceeds data section of " +
                  std::to_string(data_size) + " bytes (truncated file?)");
    }
    entries.push_back({TensorInfo{key, *dtype, std::move(shape), data_section + begin,
                                  static_cast<size_t>(nbytes)},
                       begin, end});
  }

  // File order; ties (empty tensors) broken by name so the order is deterministic.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.info.name < b.info.name;
  });
  // Overlapping ranges would let two tensors alias the same bytes. Empty tensors occupy nothing.
  const Entry* furthest = nullptr;  // non-empty entry reaching furthest so far
  for (const auto& e : entries) {
    if (e.begin == e.end) continue;
    if (furthest && e.begin < furthest->end) {
      throw Error(p + ": tensors " + quote(furthest->info.name) + " [" +
                  std::to_string(furthest->begin) + "," + std::to_string(furthest->end) + ") and " +
                  quote(e.info.name) + " [" + std::to_string(e.begin) + "," +
                  std::to_string(e.end) + ") overlap");
    }
    if (!furthest || e.end > furthest->end) furthest = &e;
  }

  tensors_.reserve(entries.size());
  for (auto& e : entries) {
    index_.emplace(e.info.name, tensors_.size());
    names_.push_back(e.info.name);
    tensors_.push_back(std::move(e.info));
  }
}

const TensorInfo& SafetensorsFile::get(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw Error(path() + ": no tensor named " + quote(name));
  return tensors_[it->second];
}

// ---- Checkpoint ---------------------------------------------------------------------------

Checkpoint Checkpoint::open(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(path + ": cannot open checkpoint: " + std::strerror(errno));
  }
  std::string file = path;
  if (S_ISDIR(st.st_mode)) {
    const std::string index = path + "/model.safetensors.index.json";
    if (is_regular_file(index)) return open_index(index);
    file = path + "/model.safetensors";
    if (!is_regular_file(file)) {
      throw Error(path + ": directory has neither model.safetensors.index.json nor model.safetensors");
    }
  } else if (ends_with(path, ".json")) {
    return open_index(path);
  }
  Checkpoint ck;
  ck.path_ = path;
  ck.shards_.push_back(SafetensorsFile::open(file));
  const SafetensorsFile& f = *ck.shards_.back();
  for (const auto& name : f.names()) ck.tensors_[name] = &f.get(name);
  ck.metadata_ = f.metadata();
  return ck;
}

Checkpoint Checkpoint::open_index(const std::string& index_path) {
  const MappedFile text(index_path);
  const char* begin = reinterpret_cast<const char*>(text.data());
  const json j = parse_json_strict(begin, begin + text.size(), index_path);
  if (!j.is_object()) throw Error(index_path + ": not a JSON object");
  const auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw Error(index_path + ": missing weight_map object");
  if (wm->empty()) throw Error(index_path + ": weight_map is empty");
  const auto meta = j.find("metadata");
  if (meta != j.end() && !meta->is_object()) throw Error(index_path + ": metadata is not a JSON object");

  // Open each shard once, in file-name order (so "first shard" is model-00001-...).
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string() || !safe_relative_path(shard.get<std::string>())) {
      throw Error(index_path + ": weight_map entry for tensor " + quote(tensor) +
                  " is not a relative shard file name");
    }
    shards.emplace(shard.get<std::string>(), nullptr);
  }
  const std::string dir = parent_dir(index_path);
  for (auto& [name, file] : shards) {
    const std::string shard_path = dir + "/" + name;
    if (!is_regular_file(shard_path)) {
      throw Error(index_path + ": shard file " + shard_path + " is missing");
    }
    file = SafetensorsFile::open(shard_path);
  }

  Checkpoint ck;
  ck.path_ = index_path;
  for (const auto& [tensor, shard] : wm->items()) {
    const auto& file = shards.at(shard.get<std::string>());
    if (!file->has(tensor)) {
      throw Error(index_path + ": weight_map puts tensor " + quote(tensor) + " in " + file->path() +
                  ", which does not contain it");
    }
    ck.tensors_[tensor] = &file->get(tensor);
  }
  for (auto& [name, file] : shards) ck.shards_.push_back(file);
  ck.metadata_ = ck.shards_.front()->metadata();
  if (meta != j.end()) {
    for (const auto& [k, v] : meta->items()) {
      ck.metadata_.emplace(k, v.is_string() ? v.get<std::string>() : v.dump());
    }
  }
  return ck;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);  // std::map: already sorted
  return out;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path_ + ": no tensor named " + quote(name));
  return *it->second;
}

// ---- writer -------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Everything is validated before the temp file is created, so bad input never touches disk.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string where = path + ": tensor " + quote(t.name);
    if (t.name == "__metadata__") throw Error(where + ": name is reserved");
    if (!seen.insert(t.name).second) throw Error(where + ": duplicate name");
    uint64_t numel = 0, nbytes = 0;
    if (!checked_numel(t.shape, &numel) ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes)) {
      throw Error(where + ": shape " + shape_text(t.shape) + " has a negative dim or too many elements");
    }
    if (t.nbytes != nbytes) {
      throw Error(where + ": nbytes is " + std::to_string(t.nbytes) + " but " + dtype_name(t.dtype) +
                  " " + shape_text(t.shape) + " needs " + std::to_string(nbytes));
    }
    if (nbytes > 0 && t.data == nullptr) throw Error(where + ": data is null");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception&) {
    throw Error(path + ": a tensor name or metadata string is not valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-aligned
  const uint64_t header_len = text.size();

  AtomicFile out(path);  // its destructor removes the temp file if anything below throws
  out.write(&header_len, 8);
  out.write(text.data(), text.size());
  for (const auto& t : tensors) {
    if (t.nbytes) out.write(t.data, t.nbytes);
  }
  out.commit();
}

}  // namespace loopq::io
