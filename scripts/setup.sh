#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain:
# - cmake (pingora builds zlib-ng with it);
# - promtool (the alert rules' unit tests), unpacked from Debian's `prometheus` package into
#   target/tools/prometheus without installing or starting the Prometheus daemon;
# - PostgreSQL server binaries (the multi-replica tests start a throwaway cluster).
# `setup.sh build` installs only what the build needs (cmake): the demo needs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
only_build=false
[ "${1:-}" = build ] && only_build=true

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

if ! command -v cmake >/dev/null 2>&1; then
  echo "installing cmake (needed to build pingora's zlib-ng)..." >&2
  if command -v apt-get >/dev/null 2>&1 && as_root true; then
    as_root apt-get update -qq && as_root apt-get install -y -qq cmake >/dev/null
  else
    python3 -m pip install --quiet --user cmake
    export PATH="$HOME/.local/bin:$PATH"
  fi
  command -v cmake >/dev/null 2>&1 || { echo "cmake is still missing; install it and retry" >&2; exit 1; }
fi

$only_build && exit 0

tools="$PWD/target/tools/prometheus"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$tools/usr/bin/promtool" ]; then
  echo "fetching promtool (Debian package prometheus, unpacked, no daemon)..." >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
      || { as_root apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; }) \
    || { echo "cannot download the prometheus package; install promtool and retry" >&2; exit 1; }
  mkdir -p "$tools"
  dpkg -x "$work"/prometheus_*.deb "$tools"
  "$tools/usr/bin/promtool" --version >/dev/null
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (the multi-replica tests start a throwaway cluster)..." >&2
  if command -v apt-get >/dev/null 2>&1 && as_root true; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || true
  fi
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    { echo "PostgreSQL is still missing (no /usr/lib/postgresql/*/bin/initdb); install Debian's postgresql package and retry" >&2; exit 1; }
fi
