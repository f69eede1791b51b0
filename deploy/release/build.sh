#!/usr/bin/env bash
# Builds a signed fedguard release in DIR (default dist), for `make release`:
#
#   fedguard-linux-amd64, fedguard-linux-arm64   static binaries (CGO_ENABLED=0,
#                                                -trimpath, no build ID)
#   fedguard-linux-ARCH.cdx.json                 CycloneDX SBOM of each binary:
#                                                the Go modules linked into it,
#                                                their licenses, the binary's hashes
#   SHA256SUMS                                   SHA-256 of all of the above
#   SHA256SUMS.sigstore.json, fedguard-linux-ARCH.cdx.json.sigstore.json
#                                                cosign sign-blob signatures as
#                                                Sigstore bundles (cosign v3)
#   SHA256SUMS.sig, fedguard-linux-ARCH.cdx.json.sig
#                                                the same, as classic detached
#                                                signatures (base64 ASN.1 ECDSA
#                                                P-256 over SHA-256: cosign v2,
#                                                openssl)
#
# RELEASE_KEY is a cosign private key (`cosign generate-key-pair`; a KMS or
# PKCS#11 URI works too), COSIGN_PASSWORD unlocks it. Signing is offline: no
# transparency log upload (.ci/run and hospitals verify with the public key
# alone). See docs/release.md.
#
# The SBOM generator and cosign are pinned Go tools (tools/go.mod and
# tools/cosign/go.mod), built from the module proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-dist}
GO=${GO:-go}
: "${RELEASE_KEY:?set RELEASE_KEY to the cosign private key (see docs/release.md)}"
[[ -f $RELEASE_KEY || $RELEASE_KEY == *://* ]] || { echo "build.sh: RELEASE_KEY $RELEASE_KEY: no such file"; exit 1; }
read -ra cosign <<<"${COSIGN:-$GO tool -modfile=tools/cosign/go.mod cosign}"
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

rm -rf "$out"
mkdir -p "$out"
# cyclonedx-gomod takes the package URLs' goos/goarch from its environment,
# not from the binary it reads: it must run with the target's GOOS/GOARCH,
# so it is built once for this host rather than run by `go tool` (which
# would build it for the target).
tooldir=$(mktemp -d)
trap 'rm -rf "$tooldir"' EXIT
GOOS= GOARCH= "$GO" build -modfile=tools/go.mod -o "$tooldir/cyclonedx-gomod" github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod
for arch in amd64 arm64; do
  bin=fedguard-linux-$arch
  echo "build  $out/$bin ($version)"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -buildvcs=auto -trimpath -ldflags=-buildid= -o "$out/$bin" ./cmd/fedguard
  # From the binary's own build information: exactly the modules linked
  # in. Licenses come from the module cache; nothing is fetched.
  echo "sbom   $out/$bin.cdx.json"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOPROXY=off GOFLAGS=-mod=mod "$tooldir/cyclonedx-gomod" bin -json -licenses -noserial -notimestamp \
    -version "$version" -output "$out/$bin.cdx.json" "$out/$bin" 2>"$out/.sbom.log" ||
    { cat "$out/.sbom.log"; exit 1; }
  rm -f "$out/.sbom.log"
done
(cd "$out" && sha256sum fedguard-linux-* >SHA256SUMS)
# Each signature twice: a Sigstore bundle (cosign's default format from v3
# on) and a classic detached signature (cosign v2, and openssl). cosign
# warns that the classic flags are deprecated; its output is kept only on
# failure.
for f in SHA256SUMS fedguard-linux-amd64.cdx.json fedguard-linux-arm64.cdx.json; do
  echo "sign   $out/$f.sigstore.json, $out/$f.sig"
  log=$("${cosign[@]}" sign-blob --yes --key "$RELEASE_KEY" --tlog-upload=false --use-signing-config=false \
    --bundle "$out/$f.sigstore.json" "$out/$f" 2>&1 &&
    "${cosign[@]}" sign-blob --yes --key "$RELEASE_KEY" --tlog-upload=false --use-signing-config=false \
      --new-bundle-format=false --output-signature "$out/$f.sig" "$out/$f" 2>&1) ||
    { echo "$log"; exit 1; }
done
chmod 0644 "$out"/*.sig "$out"/*.sigstore.json
echo "release $version in $out:"
(cd "$out" && ls -l)
