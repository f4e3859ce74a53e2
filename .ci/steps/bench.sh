#!/usr/bin/env bash
# CI step: the quick benchmark (npm run bench -- --quick, under 2 minutes), then
# bench/check.mjs: no errors or non-2xx in pyfleet's runs, total RSS at most
# 250 MB, pyfleet at least 20x spawn. Lenient on purpose: CI machines are
# shared and noisy; the real targets are in bench/results/latest.md.
# BENCH_MEMORY=pss bounds PSS (shared pages counted once) instead of the RSS sum.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npm run bench --silent -- --quick --out "$out"
node bench/check.mjs "$out"/*-quick.json --memory "${BENCH_MEMORY:-rss}"
