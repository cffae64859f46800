#!/usr/bin/env bash
# Builds the `metriccare` wheel the Glue jobs load (functions/python): release, x86_64,
# manylinux_2_28 (Glue 5.0 is Amazon Linux 2023: glibc 2.34, Python 3.11; abi3 serves 3.11 and
# later), linked with zig so that the build machine's newer glibc does not leak in, then checked
# with auditwheel. Output: target/wheels/metriccare-<version>-cp311-abi3-manylinux_2_28_x86_64.whl,
# the file Terraform uploads (terraform/envs: glue_wheel_dir).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv-wheel/bin/maturin ] || ! cmp -s functions/python/requirements-build.txt .venv-wheel/requirements.installed; then
  python3 -m venv .venv-wheel
  .venv-wheel/bin/pip install --quiet --disable-pip-version-check -r functions/python/requirements-build.txt
  cp functions/python/requirements-build.txt .venv-wheel/requirements.installed
fi
export PATH="$PWD/.venv-wheel/bin:$PATH"

rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-gnu \
  || rustup target add x86_64-unknown-linux-gnu
rm -f target/wheels/metriccare-*manylinux_2_28_x86_64.whl
maturin build --release --zig --compatibility manylinux_2_28 --target x86_64-unknown-linux-gnu \
  -m functions/python/Cargo.toml --out target/wheels
wheel="$(ls target/wheels/metriccare-*-cp311-abi3-manylinux_2_28_x86_64.whl)"
# The manylinux check: every symbol the module needs from the system is in the policy.
auditwheel show "$wheel" | tee target/wheels/auditwheel.txt
grep -q 'manylinux_2_28_x86_64' target/wheels/auditwheel.txt
echo "built $wheel ($(du -k "$wheel" | cut -f1) KiB)"
