package participant

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/fedguard/fedguard/certs"
)

var (
	// ErrModelRefused marks a starting model that failed verification: a chunk
	// for another round, format version or size, a malformed chunk sequence,
	// or a digest that differs from the round assignment's. The agent never
	// trains on such a model; it logs the refusal and waits for the next
	// assignment, so Run does not return this error.
	ErrModelRefused = errors.New("participant: model refused")

	// ErrIncompatible marks a model specification that the local data (or
	// this agent) cannot satisfy: unknown format version or model kind,
	// missing feature or label columns, labels outside the federation's
	// classes. Retrying cannot help, so Run returns it.
	ErrIncompatible = errors.New("participant: incompatible model specification")

	// ErrCertificate marks a TLS handshake that failed because a certificate
	// was refused, by this agent (the coordinator's certificate does not
	// chain to the federation CA or names another host) or by the
	// coordinator (the hospital's certificate is unknown, expired or
	// revoked). An operator must act, so Run returns it.
	ErrCertificate = errors.New("participant: certificate refused")

	// ErrPlainRound marks a plain round offered to an agent configured
	// with RequireSecure: the coordinator would see this hospital's
	// update. An operator must act, so Run returns it.
	ErrPlainRound = errors.New("participant: plain round refused: this hospital requires secure aggregation")

	// ErrManifestRefused marks a round manifest that the agent refused:
	// unsigned, signed by a key other than the pinned one, for another
	// federation, or not extending the last manifest accepted (a rollback
	// or a fork), or one that vouches for another model than the one
	// assigned. The coordinator cannot be trusted until an operator has
	// looked, so the agent reports the refusal to it and Run returns this
	// error (wrapping a *manifest.RefusalError with the reason).
	ErrManifestRefused = errors.New("participant: round manifest refused")

	// ErrSecureRound marks a secure round the agent abandoned on its own
	// side: the round's layout cannot be derived from the assignment or
	// does not include this agent, or the coordinator's messages do not
	// fit the protocol (a relayed certificate or signature that does not
	// verify, a message out of order, an inconsistent survivor set or
	// unmask request). The agent sends nothing more in that session (the
	// coordinator counts it as dropped out), logs the error and waits for
	// the next assignment, so Run does not return this error.
	ErrSecureRound = errors.New("participant: secure round abandoned")
)

// certAlerts are the TLS alert descriptions (as crypto/tls prints them) that
// a peer sends when it refuses our certificate.
var certAlerts = []string{
	"tls: bad certificate",
	"tls: unsupported certificate",
	"tls: revoked certificate",
	"tls: expired certificate",
	"tls: unknown certificate",
	"tls: unknown certificate authority",
	"tls: access denied",
	"tls: certificate required",
}

// isCertRefusal reports whether err says that a certificate was refused.
func isCertRefusal(err error) bool {
	if err == nil {
		return false
	}
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		ierr x509.CertificateInvalidError
		herr x509.HostnameError
		rerr *certs.Refusal
		op   *net.OpError
	)
	if errors.As(err, &rerr) || errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &ierr) || errors.As(err, &herr) {
		return true
	}
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		msg := op.Err.Error()
		for _, a := range certAlerts {
			if msg == a {
				return true
			}
		}
	}
	return false
}

// refusalHint says what the hospital can do about a certificate refusal
// err. When this agent refused the coordinator's certificate for the name
// it dialled, it lists the names the certificate has and what to change;
// for another refusal of the coordinator's certificate it is empty (the
// x509 error says why). When the coordinator refused this hospital's,
// since a TLS alert carries no reason, it says what the agent can tell
// about its own certificate (out of its validity period, and since when)
// or who can tell the rest.
func (a *Agent) refusalHint(err error) string {
	var herr x509.HostnameError
	if errors.As(err, &herr) && herr.Certificate != nil {
		names := slices.Clone(herr.Certificate.DNSNames)
		for _, ip := range herr.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Sprintf(": the coordinator's certificate is for %s: dial it by one of those names (--coordinator, coordinator) "+
			"or set --server-name (server_name), or ask the federation operator for a certificate with this name (fedguard ca issue --host)",
			strings.Join(names, ", "))
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return ""
	}
	const ask = "ask the federation operator for a new certificate (fedguard ca sign of this hospital's CSR)"
	if leaf := a.ownLeaf(); leaf != nil {
		now := a.ops.Now()
		switch {
		case now.After(leaf.NotAfter):
			return fmt.Sprintf(": this hospital's certificate expired at %s; %s", leaf.NotAfter.UTC().Format(time.RFC3339), ask)
		case now.Before(leaf.NotBefore):
			return fmt.Sprintf(": this hospital's certificate is not valid before %s (is this machine's clock right?); otherwise %s",
				leaf.NotBefore.UTC().Format(time.RFC3339), ask)
		}
	}
	return ": the coordinator refused this hospital's certificate (revoked, not enrolled, or not issued by the federation's CA); " +
		"its log names the reason: ask the federation operator"
}

// ownLeaf is the client certificate this agent last presented (or, without
// a certificate callback, the configured one), parsed; nil if there is none
// or it does not parse.
func (a *Agent) ownLeaf() *x509.Certificate {
	c := a.presented.Load()
	if c == nil && a.cfg.TLS != nil && len(a.cfg.TLS.Certificates) > 0 {
		c = &a.cfg.TLS.Certificates[0]
	}
	if c == nil {
		return nil
	}
	leaf, err := certs.Leaf(c)
	if err != nil {
		return nil
	}
	return leaf
}

// certWatch wraps the agent's transport credentials to remember the last
// certificate refusal seen during a handshake or on the first reads after it
// (with TLS 1.3 the server's refusal of a client certificate arrives after the
// client's handshake has completed). gRPC reports both as Unavailable, which
// would otherwise look transient.
type certWatch struct {
	credentials.TransportCredentials
	mu   *sync.Mutex
	last *error
}

func newCertWatch(inner credentials.TransportCredentials) *certWatch {
	return &certWatch{TransportCredentials: inner, mu: new(sync.Mutex), last: new(error)}
}

func (w *certWatch) record(err error) {
	if isCertRefusal(err) {
		w.mu.Lock()
		*w.last = fmt.Errorf("%w: %w", ErrCertificate, err)
		w.mu.Unlock()
	}
}

// take returns and clears the recorded refusal (none without TLS: a nil
// certWatch).
func (w *certWatch) take() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	err := *w.last
	*w.last = nil
	return err
}

// clear forgets a refusal after a successful call proved the link works.
func (w *certWatch) clear() { _ = w.take() }

func (w *certWatch) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := w.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		w.record(err)
		return nil, nil, err
	}
	return &watchedConn{Conn: conn, w: w}, info, nil
}

func (w *certWatch) Clone() credentials.TransportCredentials {
	return &certWatch{TransportCredentials: w.TransportCredentials.Clone(), mu: w.mu, last: w.last}
}

// watchedConn records certificate refusals that arrive as TLS alerts after
// the handshake.
type watchedConn struct {
	net.Conn
	w *certWatch
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.w.record(err)
	}
	return n, err
}
