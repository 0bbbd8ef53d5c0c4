#pragma once
// safetensors reading (memory-mapped, fully validated) and writing (atomic), without torch.
//
// Format: u64 little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
// then the data section; offsets are relative to its start (byte 8 + N).
//
// Every malformed input (truncation, bad JSON, duplicate names, overlapping or out-of-range data,
// size/shape mismatch, ...) is reported as loopq::Error naming the file; nothing is trusted.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/atomic_file.h"
#include "io/dtype.h"
#include "io/mapped_file.h"

namespace loopq::io {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // [] is a scalar (1 element)
  // Points into the memory map and stays valid while the owning SafetensorsFile lives. It is NOT
  // necessarily aligned to the element size (offsets in the file are arbitrary): copy or use
  // convert_to_f32 rather than casting to float*/int32_t*.
  const uint8_t* data;
  size_t nbytes;
  int64_t numel() const;
};

// One .safetensors file, memory-mapped read-only.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<std::string>& names() const { return names_; }  // file order (by offset)
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& get(const std::string& name) const;  // throws naming the missing tensor
  const std::string& path() const { return map_.path(); }

 private:
  explicit SafetensorsFile(const std::string& path);
  void parse();

  MappedFile map_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;  // sorted by data offset; never resized after parse()
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> index_;
};

// A checkpoint: a single model.safetensors, or shards listed in model.safetensors.index.json
// ({"metadata": {...}, "weight_map": {"tensor": "model-00001-of-00002.safetensors", ...}}).
// Copies share the underlying mapped files.
class Checkpoint {
 public:
  // path: a directory (index.json preferred if present, else model.safetensors), an index.json,
  // or a .safetensors file.
  static Checkpoint open(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& get(const std::string& name) const;
  // __metadata__ of the first shard (by file name), plus entries of the index's "metadata" that
  // the shard does not define (non-string values, e.g. total_size, as their JSON text).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  static Checkpoint open_index(const std::string& index_path);

  std::string path_;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;  // keeps the TensorInfo pointers alive
  std::map<std::string, const TensorInfo*> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes a .safetensors file atomically (see AtomicFile): tensors laid out contiguously in the
// given order, header padded with spaces to a multiple of 8 bytes (so the data section starts
// 8-aligned). Validates nbytes == numel * dtype_size, non-negative dims and unique names. Throws
// loopq::Error on any failure, leaving no partial file at `path`.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace loopq::io
