#!/bin/sh
# Seed corpus for jwt_differential from tests/data/jwt: each vector raw (mode 0), and its decoded
# claims signed under the pinned header (mode 1). Run from the fuzz folder.
set -eu
out=corpus/jwt_differential
mkdir -p "$out"
for f in ../tests/data/jwt/*.jwt; do
    name=$(basename "$f" .jwt)
    { printf '\000'; tr -d '\n' < "$f"; } > "$out/raw-$name"
    payload=$(tr -d '\n' < "$f" | cut -d. -f2 | tr '_-' '/+')
    pad=$(( (4 - ${#payload} % 4) % 4 ))
    [ "$pad" -eq 3 ] && continue
    { printf '\001'; printf '%s%s' "$payload" "$(printf '%*s' "$pad" '' | tr ' ' '=')" | base64 -d 2>/dev/null || true; } > "$out/claims-$name"
done
