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
    unzip -p "$file" bootstrap >"$binary"
  fi
  # Every versioned glibc symbol the binary imports, as "VERSION SYMBOL".
  needed="$(objdump -T "$binary" | sed -n 's/.*(GLIBC_\([0-9][0-9.]*\)) *\([^ ]*\)$/\1 \2/p; s/.*[[:space:]]GLIBC_\([0-9][0-9.]*\)[[:space:]]\+\([^ ]*\)$/\1 \2/p' | sort -u)"
  if [ -z "$needed" ]; then
    echo "$file: no versioned glibc symbols found (not a dynamically linked glibc binary?)" >&2
    failed=1
    continue
  fi
  newest="$(cut -d' ' -f1 <<<"$needed" | sort -V | tail -1)"
  if [ "$(printf '%s\n%s\n' "$max" "$newest" | sort -V | tail -1)" != "$max" ]; then
    echo "$file: needs glibc $newest, newer than $max:" >&2
    while read -r version symbol; do
      if [ "$(printf '%s\n%s\n' "$max" "$version" | sort -V | tail -1)" != "$max" ]; then
        echo "  $symbol@GLIBC_$version" >&2
      fi
    done <<<"$needed"
    failed=1
  else
    echo "$file: newest glibc symbol version $newest (<= $max)"
  fi
done
exit "$failed"
