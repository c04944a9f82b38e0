#!/usr/bin/env bash
# llama.cpp's source (convert_hf_to_gguf.py, gguf-py, the C++ tools) for export_gguf.py, taken from
# PyPI's llama-cpp-python sdist, which vendors it (a registry download; no GitHub access needed).
#
#   bash get_llama_cpp.sh [--build] [DIR]     # DIR defaults to .cache/llama.cpp
#
# --build also compiles llama-quantize (for --quant Q4_K_M) and llama-mtmd-cli
# (CPU, Release; several minutes on 2 cores; needs cmake and a C++ compiler).
set -euo pipefail
cd "$(dirname "$0")"

VERSION=0.3.36  # llama-cpp-python release whose vendored llama.cpp export_gguf.py is tested with
BUILD=0
if [[ "${1:-}" == "--build" ]]; then BUILD=1; shift; fi
DEST="${1:-.cache/llama.cpp}"
PYTHON="${PYTHON:-python3}"

if [[ ! -f "$DEST/convert_hf_to_gguf.py" ]]; then
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    "$PYTHON" -m pip download --isolated --quiet --no-binary :all: --no-deps \
        "llama-cpp-python==$VERSION" -d "$download"
    tar -xzf "$download/llama_cpp_python-$VERSION.tar.gz" -C "$download"
    mkdir -p "$(dirname "$DEST")"
    rm -rf "$DEST"
    mv "$download/llama_cpp_python-$VERSION/vendor/llama.cpp" "$DEST"
fi
echo "llama.cpp source: $DEST"

if [[ "$BUILD" == 1 ]]; then
    cmake -S "$DEST" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build "$DEST/build" -j "$(nproc)" --target llama-quantize llama-mtmd-cli
    echo "llama.cpp tools: $DEST/build/bin"
fi
