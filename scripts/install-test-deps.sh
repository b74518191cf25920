#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, only where it is missing:
# Debian's Chromium (driven by Playwright), PostgreSQL and MariaDB server binaries (a throwaway
# cluster / server per test run), then the npm tools (axe-core and the banners we measure against).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
{ [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null; } || missing+=(mariadb-server)
command -v npm >/dev/null || missing+=(npm)
command -v wrk >/dev/null || missing+=(wrk)  # the load generator of make bench
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing with apt-get: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" fonts-liberation >/dev/null
fi

if [ ! -f node_modules/.troth-installed ] || [ package-lock.json -nt node_modules/.troth-installed ]; then
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
  touch node_modules/.troth-installed
fi
