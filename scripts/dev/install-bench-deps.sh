#!/usr/bin/env bash
# Install the Debian packages `make bench` uses, when they are missing.
#
#   wrk       HTTP load generator for the ingest benchmarks (without it they fall back to a
#             bounded aiohttp client in benchmarks/ingest.py, which is slower than the server)
#   valgrind  callgrind's instruction counts per request (benchmarks/ingest_cpu.py; skipped
#             without it)
#
# Runs apt-get only when something is missing and only as root; otherwise prints what to
# install and exits 0 (the benchmarks still run, with the fallback). Nothing to do: exits 0 silently.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v callgrind_control >/dev/null 2>&1 || missing+=(valgrind)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing benchmark packages: ${missing[*]} (Debian: sudo apt-get install ${missing[*]});" \
         "the ingest benchmarks use the aiohttp fallback, ingest_cpu is skipped" >&2
    exit 0
fi
echo "installing benchmark packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
