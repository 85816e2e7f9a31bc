#!/usr/bin/env bash
# Installs what the build needs beyond the Rust toolchain: cmake (pingora builds zlib-ng with it).
set -euo pipefail
if command -v cmake >/dev/null 2>&1; then
  exit 0
fi
echo "installing cmake (needed to build pingora's zlib-ng)..." >&2
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq cmake >/dev/null
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null
else
  python3 -m pip install --quiet --user cmake
  export PATH="$HOME/.local/bin:$PATH"
fi
command -v cmake >/dev/null 2>&1 || { echo "cmake is still missing; install it and retry" >&2; exit 1; }
