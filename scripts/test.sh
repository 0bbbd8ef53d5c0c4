#!/usr/bin/env bash
# Sets up dependencies, builds, and runs the whole test suite through CTest.
#   scripts/test.sh              Release build in ./build, every test, then a short fuzz pass
#                                (scripts/fuzz.sh, ~20 s per target) and the torch-free tests
#                                under ASan/UBSan (build-asan-io)
#   scripts/test.sh --sanitize   the whole suite built with -fsanitize=address,undefined into
#                                ./build-asan (long: every torch file compiled instrumented)
#   scripts/test.sh --sanitize-io  only test_io under the sanitizers (the CI step)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
bash scripts/install-deps.sh

# See tests/sanitizer/README.md for why each option is set.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tests/sanitizer/ubsan.supp}"
sanitize_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# LOOPQ_JOBS caps build and test parallelism (a shared machine); default: every core.
jobs=${LOOPQ_JOBS:-$(nproc)}
test_jobs=$jobs
mem_gb=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
# Instrumented torch files need ~2 GB each to compile.
(( mem_gb / 2 < jobs )) && jobs=$(( mem_gb / 2 > 0 ? mem_gb / 2 : 1 ))

case "$mode" in
  --sanitize)
    # Leak checking is off only here: libtorch and OpenBLAS keep allocations until exit.
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOPQ_BUILD_BENCH=OFF \
      -DCMAKE_CXX_FLAGS="$sanitize_flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
    cmake --build build-asan -j "$jobs"
    cd build-asan
    ctest --output-on-failure -j "$test_jobs" --timeout 1800
    ;;
  --sanitize-io)
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
    cmake -S . -B build-asan-io -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOPQ_BUILD_BENCH=OFF \
      -DCMAKE_CXX_FLAGS="$sanitize_flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
    cmake --build build-asan-io -j "$jobs" --target test_io
    cd build-asan-io
    # Only test_io is built here; the CLI and reference tests need the full build, and the other
    # gtest binaries (not built) would only show up as *_NOT_BUILT placeholders.
    ctest --output-on-failure -j "$test_jobs" --timeout 900 -E '^(reference_|cli_)|_NOT_BUILT$'
    ;;
  "")
    bash scripts/build.sh
    (cd build && ctest --output-on-failure -j "$test_jobs" --timeout 900)
    bash scripts/fuzz.sh "${LOOPQ_FUZZ_SECONDS:-20}"
    bash scripts/test.sh --sanitize-io
    ;;
  *)
    echo "usage: scripts/test.sh [--sanitize | --sanitize-io]" >&2
    exit 2
    ;;
esac
