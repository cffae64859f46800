#!/usr/bin/env bash
# Usage: scripts/check-glibc.sh MAX_VERSION FILE...
# Fails when an ELF binary, or the `bootstrap` inside a Lambda zip, needs a glibc symbol version
# newer than MAX_VERSION. The Lambda runtime provided.al2023 has glibc 2.34; a binary linked on a
# newer system (GitHub's ubuntu-24.04 has 2.39) can pick up newer symbol versions (C code compiled
# with _GNU_SOURCE against glibc >= 2.38 calls __isoc23_strtol@GLIBC_2.38, for one) and then fails to
# start on Lambda with "version `GLIBC_2.38' not found", which no test on the build machine shows.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 MAX_GLIBC_VERSION FILE..." >&2
  exit 2
fi
max="$1"
shift

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
for file in "$@"; do
  binary="$file"
  if [[ "$file" == *.zip ]]; then
    binary="$work/bootstrap"
    if ! unzip -p "$file" bootstrap >"$binary" 2>/dev/null; then
      echo "$file: holds no bootstrap" >&2
      failed=1
      continue
    fi
  fi
  if ! symbols="$(objdump -T "$binary" 2>/dev/null)" || ! references="$(objdump -p "$binary" 2>/dev/null)"; then
    echo "$file: not an ELF binary objdump can read" >&2
    failed=1
    continue
  fi
  # A version the binary requires with no symbol behind it (GLIBC_ABI_DT_RELR, from linking
  # with packed relative relocations, needs glibc 2.36) shows only among its version references.
  special="$(grep -o 'GLIBC_[A-Z][A-Z_]*' <<<"$references" | sort -u || true)"
  if [ -n "$special" ]; then
    echo "$file: requires glibc versions a $max runtime may lack: $(tr '\n' ' ' <<<"$special")" >&2
    failed=1
    continue
  fi
  # Every versioned glibc symbol the binary imports, as "VERSION SYMBOL".
  needed="$(sed -n 's/.*(GLIBC_\([0-9][0-9.]*\)) *\([^ ]*\)$/\1 \2/p; s/.*[[:space:]]GLIBC_\([0-9][0-9.]*\)[[:space:]]\+\([^ ]*\)$/\1 \2/p' <<<"$symbols" | sort -u)"
  # And every numbered version it references, with or without a symbol.
  referenced="$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$references" | sed 's/GLIBC_//' | sort -u || true)"
  if [ -z "$needed" ]; then
    echo "$file: no versioned glibc symbols found (not a dynamically linked glibc binary?)" >&2
    failed=1
    continue
  fi
  newest="$( (cut -d' ' -f1 <<<"$needed"; echo "$referenced") | sed '/^$/d' | sort -V | tail -1)"
  if [ "$(printf '%s\n%s\n' "$max" "$newest" | sort -V | tail -1)" != "$max" ]; then
    echo "$file: needs glibc $newest, newer than $max:" >&2
    while read -r version symbol; do
      if [ "$(printf '%s\n%s\n' "$max" "$version" | sort -V | tail -1)" != "$max" ]; then
        echo "  $symbol@GLIBC_$version" >&2
      fi
    done <<<"$needed"
    while read -r version; do
      if [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$max" "$version" | sort -V | tail -1)" != "$max" ] \
        && ! grep -q "^$version " <<<"$needed"; then
        echo "  GLIBC_$version (a version reference with no symbol)" >&2
      fi
    done <<<"$referenced"
    failed=1
  else
    echo "$file: newest glibc symbol version $newest (<= $max)"
  fi
done
exit "$failed"
