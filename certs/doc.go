// Package certs is the federation's certificate authority and the TLS
// configuration of both ends of every fedguard connection. It uses only the
// standard library (crypto/x509, crypto/ecdsa P-256, crypto/tls) so that the
// code that decides who may talk to the coordinator stays small enough to
// review in one sitting.
//
// # Identity
//
// Every certificate names exactly one identity, carried as its single URI
// subject alternative name, in the SPIFFE ID form (https://spiffe.io/docs/latest/spiffe-about/spiffe-concepts/):
//
//	spiffe://FEDERATION/participant/NAME   a hospital
//	spiffe://FEDERATION/coordinator        the coordinator
//
// The role is stated twice, and both must agree: in the URI path and in the
// extended key usage. Participant certificates carry only
// ExtKeyUsageClientAuth and the coordinator's certificate only
// ExtKeyUsageServerAuth, so a hospital certificate can never serve as the
// coordinator and the coordinator's certificate is refused as a client.
// Federation and participant names are restricted to lowercase letters,
// digits, '-' and '.' (see [ValidateName]) so that they are safe in URIs,
// file names and log lines alike.
//
// A hospital's private key is generated at the hospital
// ([NewParticipantRequest]) and never leaves it: the operator only ever sees
// a certificate signing request, and [Authority.Sign] copies nothing from it
// but the public key and the one URI it checked.
//
// # Files
//
// An [Authority] lives in one directory (mode 0700):
//
//	ca.crt        the self-signed CA certificate (PEM), distributed to everyone
//	ca.key        its P-256 private key (PEM "PRIVATE KEY", PKCS #8, mode 0600)
//	crl.pem       the current certificate revocation list (PEM "X509 CRL")
//	issued.jsonl  one JSON object per issued certificate, append only:
//	              {"serial":"<hex>","identity":"spiffe://…","not_after":"<RFC 3339>","fingerprint":"<sha256 hex of DER>"}
//
// Every file is replaced atomically ([WriteFileAtomic]: temporary file, fsync,
// rename), so a crash never leaves a half-written CRL or key behind. Private
// keys are written with [WritePrivateKey], which refuses to overwrite.
// Certificate serial numbers are random 128-bit integers.
//
// # Revocation
//
// [Authority.Revoke] and [Authority.RevokeName] add serials to crl.pem, a
// standard X.509 v2 CRL (RFC 5280 §5) whose CRL number grows by one with
// every change. The coordinator holds a [RevocationList] over that file: it
// checks the CRL's signature against the CA, refuses a CRL whose number went
// backwards, and reloads when the file changes ([RevocationList.Watch]). A
// file that is corrupt, wrongly signed or older than the one in memory is
// reported and ignored: revocations are never cleared by a bad file.
//
// # TLS
//
// [ServerConfig] and [ClientConfig] build TLS 1.3-only mutual-TLS
// configurations. The server requires a client certificate without naming
// the CA in its request (so a client sends a certificate of another CA,
// which is then refused as unknown_authority rather than missing), and in
// VerifyConnection verifies it against the CA and checks that the peer is
// a participant of this federation, not revoked, and enrolled (through
// [ServerOptions].Authorize); [PeerIdentity] names only a peer so
// verified. The client verifies that the server is this
// federation's coordinator. Every refusal is a [*Refusal] with a stable
// Reason, and [Classify] maps any server-side handshake error onto one, so
// the coordinator can log and count refusals by cause. Certificates and keys
// are read through GetCertificate / GetClientCertificate and reloaded when
// the files change, so a renewed certificate is picked up without a restart.
package certs
