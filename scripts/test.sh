#!/usr/bin/env bash
# Runs every test on a fresh machine: formatting, lints, the Rust unit and integration tests, and
# the Python tests that read the silver tables with the Apache Hudi reader (`hudi` on PyPI).
# Installs what it needs itself: a virtual environment in .venv with the pinned packages.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== python environment (.venv, tests/python/requirements.txt)"
if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/requirements.installed; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/requirements.installed
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace --quiet 2>&1 | tee "$CARGO_TARGET_DIR/cargo-test.log"

echo "== python tests (Apache Hudi reader)"
cargo build --quiet -p metriccare-cli -p fhir-generator
METRICCARE_BIN="$CARGO_TARGET_DIR/debug/metriccare" \
FHIR_GENERATOR_BIN="$CARGO_TARGET_DIR/debug/fhir-generator" \
  .venv/bin/python -m pytest -q tests/python
