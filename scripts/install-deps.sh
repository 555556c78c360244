#!/usr/bin/env bash
# Install the Debian packages twoway's build, tests and demo need.
# A no-op when all are present.  apt-get as root, sudo otherwise.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev llvm
  libssl-dev openssl libsqlite3-dev sqlite3
  libcurl4-openssl-dev curl libhttp-parser-dev libjansson-dev libcmocka-dev
  libgoogle-perftools-dev
  libpq-dev postgresql-15 postgresql-client-15 # invoice-server --db postgresql://, its tests
  libsystemd-dev # sd_notify for the Type=notify units (src/httpd/server.c)
  libtsan2 # gcc 12's ThreadSanitizer runtime (make test-tsan)
  valgrind nodejs nginx python3 python3-aiosmtpd procps gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  run() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  run() { sudo "$@"; }
else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
run apt-get update -qq
run apt-get install -y -qq --no-install-recommends "${missing[@]}"
