#!/usr/bin/env bash
# Builds loopq against a machine's own PyTorch (2.x, CUDA) instead of Debian's libtorch, e.g. on a
# GPU machine without Debian's -dev packages. DEPS_PREFIX points at an unpacked usr/ tree holding
# nlohmann-json, PCRE2 and utf8proc (Debian's .deb files extracted with dpkg -x).
set -euo pipefail
cd "$(dirname "$0")/.."
deps=${DEPS_PREFIX:-$PWD/.devdeps/root/usr}
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
libdir="$deps/lib/x86_64-linux-gnu"
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DLOOPQ_BUILD_TESTS=OFF -DLOOPQ_BUILD_BENCH=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" \
  -DPCRE2_LIBRARY="$libdir/libpcre2-8.a" -DUTF8PROC_LIBRARY="$libdir/libutf8proc.a" \
  -DPCRE2_INCLUDE_DIR="$deps/include" -DUTF8PROC_INCLUDE_DIR="$deps/include"
cmake --build build-cuda -j "$(nproc)" --target loopq
