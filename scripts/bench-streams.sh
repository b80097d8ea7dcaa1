#!/usr/bin/env bash
# Issue 15, item 6: decision throughput with and without 500 event streams,
# in pairs run alternately (this machine's run-to-run spread is larger than
# one pair's difference). Prints one line per run; docs/performance.md has
# the figures it gave.
#   scripts/bench-streams.sh [jobs] [latency_ms] [pairs]
set -euo pipefail
jobs="${1:-2000}" latency="${2:-2000}" pairs="${3:-3}"
bin="${UPSHIFT_BIN:-target/debug/upshift}"
for rep in $(seq "$pairs"); do
  for streams in 0 500; do
    out=$("$bin" bench engine --jobs "$jobs" --backlog 0 --floor-ops 2000 \
      --latency-ms "$latency" --streams "$streams" 2>&1)
    jps=$(grep "jobs/s, steps/s" <<<"$out" | awk '{print $NF}')
    dps=$(grep "decisions/s, first" <<<"$out" | awk '{print $5}')
    held=$(grep "event streams" <<<"$out" | sed 's/  */ /g' || true)
    echo "jobs=$jobs latency_ms=$latency pair=$rep streams=$streams jobs/s=$jps decisions/s=$dps $held"
  done
done
