#!/usr/bin/env bash
# Installs, when missing, what upshift needs on a fresh machine of this kind.
#   scripts/deps.sh          build tools: cmake and clang/libclang, which
#                            llama.cpp (llama-cpp-sys-2) needs to compile
#   scripts/deps.sh --test   also what the tests use: Debian's chromium (route
#                            viewer test), postgresql-doc-15 (the collection tests'
#                            corpus) and llama-cpp-python's OpenAI-compatible
#                            server (pip builds llama.cpp once and caches the wheel)
#                            and the openai SDK (the chat completions tests)
set -euo pipefail

apt_missing=()
command -v cmake >/dev/null 2>&1 || apt_missing+=(cmake)
command -v clang >/dev/null 2>&1 || apt_missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || apt_missing+=(libclang-dev)
if [[ "${1:-}" == "--test" ]]; then
  command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
  # The corpus of the collection tests and the RAG demo.
  [[ -d /usr/share/doc/postgresql-doc-15/html ]] || apt_missing+=(postgresql-doc-15)
fi
if ((${#apt_missing[@]})); then
  echo "installing ${apt_missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" ]] && ! python3 -c 'import llama_cpp.server' 2>/dev/null; then
  echo "installing llama-cpp-python[server] (builds llama.cpp on first install, ~10 min on 2 cores; pip caches the wheel)"
  # x86-64-v3 (AVX2/FMA/F16C) like the Rust build: GGML_NATIVE would also turn
  # on AMX/AVX-512 FP16, which CPUs of this kind advertise but a VM may not
  # allow (the server then dies with "Illegal instruction").
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" python3 -m pip install --quiet --disable-pip-version-check \
    'llama-cpp-python[server]==0.3.36'
fi

# The OpenAI-compatible front door's tests drive it with the official SDK.
if [[ "${1:-}" == "--test" ]] && ! python3 -c 'import openai' 2>/dev/null; then
  echo "installing the openai Python SDK (the chat completions tests' client)"
  python3 -m pip install --quiet --disable-pip-version-check 'openai==3.63.0'
fi
