#!/usr/bin/env bash
# The demo command: installs the build tools when missing, starts Postgres
# and NATS when they are installed but stopped, then `upshift demo` (which
# fetches the local models when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/services.sh
cargo run --locked -- demo "$@"
