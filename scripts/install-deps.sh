#!/usr/bin/env bash
# Installs loopq's build and test dependencies on Debian bookworm (run as root).
# libopenblas0-pthread matters: without it libtorch falls back to a reference BLAS (~50x slower);
# the OpenMP OpenBLAS variant is avoided because it makes timings erratic.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libtorch-dev libopenblas0-pthread
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-torch python3-numpy python3-matplotlib
  # scripts/fuzz.sh: clang 14 with libFuzzer and the ASan/UBSan runtimes; GNU time for the
  # CLI resource-limit test.
  clang clang-14 libclang-rt-14-dev time
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Make sure the pthread OpenBLAS is the BLAS libtorch resolves at run time.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  path=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-pthread | head -n 1 || true)
  [ -n "$path" ] && update-alternatives --set "$alt" "$path" >/dev/null
done
echo "dependencies ok"
