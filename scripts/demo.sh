#!/usr/bin/env bash
# The demo command: installs the build tools when missing, then `upshift demo`
# (which fetches the local models when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo run --locked -- demo "$@"
