#!/usr/bin/env bash
# The test command: installs what the tests need when missing (scripts/deps.sh
# --test), fetches the local models (idempotent), then runs every test against
# this machine's Postgres and NATS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
cargo run --locked --quiet -- models fetch
cargo test --workspace --locked "$@"
