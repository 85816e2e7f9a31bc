#!/usr/bin/env bash
# Installs what the build and the tests need beyond the Rust toolchain:
# - cmake (pingora builds zlib-ng with it);
# - PostgreSQL server binaries (the multi-replica tests start a throwaway cluster).
set -euo pipefail

apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

if ! command -v cmake >/dev/null 2>&1; then
  echo "installing cmake (needed to build pingora's zlib-ng)..." >&2
  if ! apt_install cmake; then
    python3 -m pip install --quiet --user cmake
    export PATH="$HOME/.local/bin:$PATH"
  fi
  command -v cmake >/dev/null 2>&1 || { echo "cmake is still missing; install it and retry" >&2; exit 1; }
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (the multi-replica tests start a throwaway cluster)..." >&2
  apt_install postgresql || true
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    { echo "PostgreSQL is still missing (no /usr/lib/postgresql/*/bin/initdb); install Debian's postgresql package and retry" >&2; exit 1; }
fi
