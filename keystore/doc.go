// Package keystore keeps fedguard's long-lived signing keys on a PKCS #11
// token (an HSM, or SoftHSM2 in tests) instead of in files.
//
// # One interface, two backends
//
// The signer interface is the standard library's [crypto.Signer]: what
// package manifest signs round manifests and audit checkpoints with, and
// what package certs issues certificates with. It has two backends:
//
//   - files: today's 0600 PEM files (manifest's signing.key, certs' ca.key),
//     read by those packages into ed25519.PrivateKey and *ecdsa.PrivateKey;
//   - a token: a [Token] opened from a [PKCS11] configuration hands out keys
//     that sign inside the token and never leave it ([Token.Ed25519],
//     [Token.ECDSA]).
//
// ECDSA keys go through github.com/ThalesGroup/crypto11, which manages the
// token's sessions and login. crypto11 (v1.6.2) has no EdDSA support, so
// Ed25519 keys are found and used through the same module with
// github.com/miekg/pkcs11 (crypto11's own binding) and the PKCS #11 3.0
// mechanism CKM_EDDSA, which SoftHSM2 2.5 and later implement.
//
// # What a token cannot hold
//
// No PKCS #11 token fedguard can test against stores ML-DSA-65 keys
// (PKCS #11 3.2 defines CKK_ML_DSA; SoftHSM2 2.6 predates it). The
// coordinator's hybrid identity therefore keeps its ML-DSA-65 half in a
// 0600 file beside the data (manifest.MLDSAKeyFile) when its Ed25519 half
// is on a token; docs/keys.md says what that means for the hybrid
// guarantee.
//
// # The PIN
//
// The user PIN is read from the file named by pin_file, or else from the
// environment variable FEDGUARD_PKCS11_PIN ([PINEnv]). It is never a flag
// (flags show in ps and shell history) and never logged.
//
// # Builds without cgo
//
// PKCS #11 modules are C libraries, so the token backend needs cgo. The
// static release binaries and the container image are built with
// CGO_ENABLED=0; in them [Open] returns [ErrNoCgo], and the file backend
// is the only one.
package keystore
