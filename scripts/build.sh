#!/usr/bin/env bash
# Configures and builds loopq into ./build (Release). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# Each torch-including file needs ~1 GB to compile; cap parallelism by memory too.
mem_gb=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
(( mem_gb < jobs )) && jobs=$(( mem_gb > 0 ? mem_gb : 1 ))
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
