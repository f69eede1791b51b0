#!/usr/bin/env bash
# Verifies a fedguard release in DIR (default dist) offline, as a hospital
# does before installing it (README, docs/release.md); for `make
# release-verify` and CI. RELEASE_PUB is the release public key (PEM).
#
#  1. The signatures of SHA256SUMS and of both SBOMs: the Sigstore bundles
#     and the detached signatures with cosign verify-blob, and the detached
#     ones again with openssl alone (for a host without cosign).
#  2. Every file against SHA256SUMS.
#  3. Each SBOM describes its binary: it records the binary's SHA-256 and
#     every module of the binary's own build information (go version -m).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-dist}
GO=${GO:-go}
: "${RELEASE_PUB:?set RELEASE_PUB to the release public key (PEM)}"
read -ra cosign <<<"${COSIGN:-$GO tool -modfile=tools/cosign/go.mod cosign}"
command -v openssl >/dev/null || { echo "verify.sh: openssl is required"; exit 1; }

sboms=(fedguard-linux-amd64.cdx.json fedguard-linux-arm64.cdx.json)
for f in SHA256SUMS "${sboms[@]}"; do
  # (cosign warns that it skips the transparency log: releases are not in one.)
  out=$("${cosign[@]}" verify-blob --key "$RELEASE_PUB" --bundle "$dir/$f.sigstore.json" \
    --insecure-ignore-tlog=true "$dir/$f" 2>&1) &&
    [[ $out == *"Verified OK"* ]] || { echo "FAIL $f: cosign verify-blob --bundle:"; echo "$out"; exit 1; }
  out=$("${cosign[@]}" verify-blob --key "$RELEASE_PUB" --signature "$dir/$f.sig" \
    --insecure-ignore-tlog=true --new-bundle-format=false "$dir/$f" 2>&1) &&
    [[ $out == *"Verified OK"* ]] || { echo "FAIL $f: cosign verify-blob --signature:"; echo "$out"; exit 1; }
  openssl dgst -sha256 -verify "$RELEASE_PUB" -signature <(base64 -d "$dir/$f.sig") "$dir/$f" >/dev/null ||
    { echo "FAIL $f: openssl dgst -verify"; exit 1; }
  echo "ok   $f: signatures (cosign bundle, cosign and openssl detached)"
done
out=$(cd "$dir" && sha256sum --check --strict SHA256SUMS 2>&1) ||
  { echo "FAIL SHA256SUMS: sha256sum --check:"; echo "$out"; exit 1; }
echo "$out" | sed 's/^/ok   /'
# Every file of the release is in SHA256SUMS, and nothing else is there.
extra=$(cd "$dir" && comm -3 <(ls | grep -v -e '^SHA256SUMS' -e '\.sig$' -e '\.sigstore\.json$' | sort) <(awk '{print $2}' SHA256SUMS | sort))
[[ -z $extra ]] || { echo "FAIL SHA256SUMS does not list exactly the release files: $extra"; exit 1; }

for arch in amd64 arm64; do
  bin=$dir/fedguard-linux-$arch
  sbom=$bin.cdx.json
  sum=$(sha256sum "$bin" | cut -d' ' -f1)
  grep -q "\"value\": \"$sum\"" "$sbom" || { echo "FAIL $sbom: does not record the SHA-256 of $bin"; exit 1; }
  n=0
  while read -r mod ver; do
    grep -qF "\"purl\": \"pkg:golang/$mod@$ver?" "$sbom" || { echo "FAIL $sbom: no component $mod@$ver (linked into $bin)"; exit 1; }
    n=$((n + 1))
  done < <("$GO" version -m "$bin" | awk '$1 == "dep" { print $2, $3 }')
  ((n > 0)) || { echo "FAIL $bin: no dependencies in its build information"; exit 1; }
  grep -q '"bomFormat": "CycloneDX"' "$sbom" || { echo "FAIL $sbom: not a CycloneDX document"; exit 1; }
  # Every package URL names the binary's architecture.
  archs=$(grep -o 'goarch=[a-z0-9]*' "$sbom" | sort -u | tr '\n' ' ')
  [[ $archs == "goarch=$arch " ]] || { echo "FAIL $sbom: package URLs name $archs, want goarch=$arch only"; exit 1; }
  echo "ok   $sbom: describes $bin ($n modules)"
done
