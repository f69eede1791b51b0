package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestRefusals runs one coordinator process and presents it with every kind
// of client it must refuse, checking both the client's failure and the
// operator's log record ("connection refused" / "call refused" with the
// certs.Reason* value) about exactly that connection.
func TestRefusals(t *testing.T) {
	const fed = "refusals"
	dir := t.TempDir()
	fedtest.In(t, dir, fed, "alice", "bob", "mallory")
	other := t.TempDir()
	fedtest.In(t, other, fed, "alice")
	// A CA with another name: a Go client that sends its certificate from
	// tls.Config.Certificates withholds it when the server names the CAs it
	// accepts, so this was logged as no_certificate.
	elsewhere := t.TempDir()
	fedtest.In(t, elsewhere, "elsewhere", "alice")
	cfg := fedConfig(t, dir, fed, []string{"alice", "bob"}, 2, 5)
	coord := startCoordinator(t, writeConfig(t, dir, cfg))
	caDir := filepath.Join(dir, "ca")
	caFile := filepath.Join(caDir, "ca.crt")
	pair := func(d, name string) tls.Certificate {
		return loadPair(t, filepath.Join(d, name, name+".crt"), filepath.Join(d, name, name+".key"))
	}

	// refusedRecord waits for the coordinator's record about one of the
	// client's connections.
	refusedRecord := func(t *testing.T, msg string, locals func() map[string]bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			l := locals()
			for _, r := range coord.Logs() {
				if r["msg"] == msg && l[fmt.Sprint(r["remote"])] {
					return r
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("coordinator logged no %q record for connections from %v", msg, locals())
		return nil
	}
	join := func(c fedguardv1.CoordinatorServiceClient) (*fedguardv1.JoinResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Join(ctx, &fedguardv1.JoinRequest{AgentVersion: "integration"})
	}

	t.Run("enrolled participant is admitted", func(t *testing.T) {
		c, _ := rawClient(t, coord.Addr, clientTLS(t, caFile, pair(dir, "alice")))
		resp, err := join(c)
		if err != nil {
			t.Fatalf("Join as enrolled alice: %v", err)
		}
		if resp.GetParticipant() != "alice" || resp.GetFederation() != fed {
			t.Errorf("Join = participant %q federation %q, want alice, %s", resp.GetParticipant(), resp.GetFederation(), fed)
		}
	})

	now := time.Now()
	for _, tc := range []struct {
		name   string
		cert   tls.Certificate
		reason string
	}{
		{"certificate from another CA", pair(other, "alice"), certs.ReasonUnknownAuthority},
		{"certificate from another CA of another name", pair(elsewhere, "alice"), certs.ReasonUnknownAuthority},
		{"expired", signParticipant(t, caDir, fed, "alice", now.Add(-72*time.Hour), now.Add(-24*time.Hour)), certs.ReasonExpired},
		{"not yet valid", signParticipant(t, caDir, fed, "alice", now.Add(24*time.Hour), now.Add(72*time.Hour)), certs.ReasonNotYetValid},
		{"coordinator certificate as client", loadPair(t, cfg.Cert, cfg.Key), certs.ReasonWrongRole},
		{"name not enrolled", pair(dir, "mallory"), certs.ReasonNotEnrolled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := rawClient(t, coord.Addr, clientTLS(t, caFile, tc.cert))
			resp, err := join(c)
			if err == nil {
				t.Fatalf("Join with %s succeeded (participant %q), want it refused", tc.name, resp.GetParticipant())
			}
			r := refusedRecord(t, "connection refused", rec.locals)
			if r["reason"] != tc.reason {
				t.Errorf("refusal logged with reason %v, want %q (record %v)", r["reason"], tc.reason, r)
			}
			if want := serialOf(t, tc.cert); r["serial"] != want {
				t.Errorf("refusal logged serial %v, want %s", r["serial"], want)
			}
		})
	}

	t.Run("TLS 1.2 client", func(t *testing.T) {
		cfg := clientTLS(t, caFile, pair(dir, "alice"))
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		rec := &dialRecorder{}
		conn, err := rec.dial(context.Background(), coord.Addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(conn, cfg)
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatalf("TLS 1.2 handshake succeeded (version %x), want refused", tc.ConnectionState().Version)
		}
		r := refusedRecord(t, "connection refused", rec.locals)
		if r["reason"] != certs.ReasonOther {
			t.Errorf("TLS 1.2 refusal logged with reason %v, want %q (record %v)", r["reason"], certs.ReasonOther, r)
		}
	})

	t.Run("revoked while the coordinator runs", func(t *testing.T) {
		bob := pair(dir, "bob")
		before, _ := rawClient(t, coord.Addr, clientTLS(t, caFile, bob))
		if _, err := join(before); err != nil {
			t.Fatalf("Join as bob before revocation: %v", err)
		}
		// fedtest's CA (certs.EnrolLocal) has no audit log: the ca
		// commands refuse it until the explicit migration starts one.
		mustFedguard(t, "ca", "init-audit", "--dir", caDir)
		out := mustFedguard(t, "ca", "revoke", "--dir", caDir, "--name", "bob")
		t.Logf("fedguard ca revoke: %s", out)
		// The coordinator polls crl.pem; a new connection must be refused
		// within a few seconds, without a restart.
		deadline := time.Now().Add(10 * time.Second)
		var rec *dialRecorder
		for {
			var conn *grpc.ClientConn
			conn, rec = rawConn(t, coord.Addr, clientTLS(t, caFile, bob))
			_, err := join(fedguardv1.NewCoordinatorServiceClient(conn))
			// A connection whose handshake just preceded the reload is
			// refused per call (PermissionDenied) instead: try a new one,
			// which the handshake must refuse. The old one is closed, as
			// bob may keep only limits.max_connections open.
			if err != nil && status.Code(err) != codes.PermissionDenied {
				break
			}
			conn.Close()
			if time.Now().After(deadline) {
				t.Fatalf("bob's new connections still admitted 10 s after `fedguard ca revoke`")
			}
			time.Sleep(200 * time.Millisecond)
		}
		coord.waitLog("revocation list reloaded", time.Second, func(m map[string]any) bool { return m["msg"] == "revocation list reloaded" })
		r := refusedRecord(t, "connection refused", rec.locals)
		if r["reason"] != certs.ReasonRevoked || r["serial"] != serialOf(t, bob) {
			t.Errorf("refusal of revoked bob logged reason %v serial %v, want %q %s", r["reason"], r["serial"], certs.ReasonRevoked, serialOf(t, bob))
		}
		// The connection opened before the revocation is cut per call.
		_, err := join(before)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Join on bob's pre-revocation connection = %v, want PermissionDenied", err)
		}
		r = coord.waitLog(`"call refused" for bob`, 5*time.Second, func(m map[string]any) bool {
			return m["msg"] == "call refused" && m["participant"] == "bob"
		})
		if r["reason"] != certs.ReasonRevoked {
			t.Errorf("call refusal of bob logged reason %v, want %q (record %v)", r["reason"], certs.ReasonRevoked, r)
		}
	})
}
