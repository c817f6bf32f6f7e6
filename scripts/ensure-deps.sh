#!/usr/bin/env bash
# Install what building, running and testing event_store needs, when it is
# missing (Debian 12, as root).  Safe to run again: installs nothing when
# everything is there.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
packages=(
    build-essential
    "postgresql-$PG_MAJOR"
    "postgresql-server-dev-$PG_MAJOR"
    "postgresql-$PG_MAJOR-cron"
    postgresql-common
    libipc-run-perl
    python3
)
# nodejs and npm: the Message DB differential test
# (test/t/010_messagedb_differential.pl) fetches the real Message DB from the
# npm registry.  Any npm on PATH will do (e.g. NodeSource's nodejs).
if ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi
# Optional extras for `--with-bench` (test/bench): pgbench ships with the
# server; gnuplot draws the benchmark plot.
if [[ "${1:-}" == "--with-bench" ]]; then
    packages+=(gnuplot-nox)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's postgresql-common creates a "main" cluster on install; it is not
# used by event_store's scripts (they make throw-away clusters) and is left
# alone.
echo "dependencies: ok (PostgreSQL $(/usr/lib/postgresql/$PG_MAJOR/bin/postgres --version | awk '{print $3}'))"
