package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/certs/ca"
	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
)

// This file holds the operator's `fedguard ca` commands (the federation CA)
// and the hospital's `fedguard participant init` (key and CSR). Everything
// they do is a call into package certs or certs/ca, which also appends every
// issuance and revocation to the CA's audit log.

// parseIssuing parses the flags of a `ca` command that issues a
// certificate, like parseFlags, and then refuses a -validity (validity
// points at its value) that is not positive.
func parseIssuing(flags *flag.FlagSet, args []string, validity *time.Duration, mandatory ...string) error {
	if err := parseFlags(flags, args, mandatory...); err != nil {
		return err
	}
	if *validity <= 0 {
		return usageError("%s: -validity must be positive", strings.TrimPrefix(flags.Name(), "fedguard "))
	}
	return nil
}

// caCommand is what every `fedguard ca` command that works on an existing
// CA shares: its flag set, with -dir and the token flags (-pkcs11-*), and
// the opening of the CA once the flags are parsed.
type caCommand struct {
	flags *flag.FlagSet
	dir   *string
	hsm   *keystore.PKCS11
}

func newCACommand(env *Env, name, dirUsage string) *caCommand {
	flags := newFlagSet(env, name)
	return &caCommand{flags: flags, dir: flags.String("dir", "", dirUsage), hsm: caKeyFlags(flags)}
}

// open opens the CA in -dir, its key from ca.key or the token; done
// releases the token.
func (c *caCommand) open() (a *ca.Authority, done func(), err error) {
	return openCA(*c.dir, c.hsm)
}

func runCAInit(_ context.Context, env *Env, args []string) error {
	flags := newFlagSet(env, "ca init")
	dir := flags.String("dir", "", "directory for the new CA (created 0700, must not hold anything)")
	fed := flags.String("federation", "", "federation name: a-z, 0-9, '-', '.'")
	validity := flags.Duration("validity", certs.DefaultCAValidity, "lifetime of the CA certificate")
	hsm := caKeyFlags(flags)
	if err := parseIssuing(flags, args, validity, "dir", "federation"); err != nil {
		return err
	}
	a, keyWhere, err := initCA(*dir, *fed, *validity, hsm)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "created the CA of federation %q in %s\n", a.Federation(), *dir)
	fmt.Fprintf(env.Stdout, "  certificate %s (valid until %s): give it to the coordinator and every hospital\n",
		filepath.Join(*dir, "ca.crt"), a.Certificate().NotAfter.UTC().Format(time.RFC3339))
	if keyWhere != "" {
		fmt.Fprintf(env.Stdout, "  private key: %s; it never leaves the token\n", keyWhere)
	} else {
		fmt.Fprintf(env.Stdout, "  private key %s: keep it offline, it never leaves this directory\n", filepath.Join(*dir, "ca.key"))
	}
	fmt.Fprintf(env.Stdout, "  audit log %s: every certificate issued or revoked, verifiable with %s\n",
		filepath.Join(ca.AuditDir(*dir), "audit.db"), filepath.Join(ca.AuditDir(*dir), manifest.PublicFile))
	return nil
}

// runCAInitAudit is `ca init-audit`: the explicit, one-time migration of a
// CA made by a fedguard older than the CA audit log. The other ca commands
// refuse such a CA and name this one; nothing else ever makes a CA's log,
// since a missing log cannot be told apart from a lost one (package ca).
func runCAInitAudit(_ context.Context, env *Env, args []string) error {
	c := newCACommand(env, "ca init-audit", "CA directory of a CA that has no audit/ directory")
	if err := parseFlags(c.flags, args, "dir"); err != nil {
		return err
	}
	a, done, err := openCAWith(*c.dir, c.hsm, ca.InitAudit, ca.InitAuditWithKey)
	if err != nil {
		return err
	}
	defer done()
	issued, err := a.Issued()
	if err != nil {
		return err
	}
	adir := ca.AuditDir(*c.dir)
	fmt.Fprintf(env.Stdout, "started the audit log of the CA of federation %q: %s\n", a.Federation(), filepath.Join(adir, "audit.db"))
	fmt.Fprintf(env.Stdout, "  its checkpoints are signed by %s (0600); verify them with %s\n", filepath.Join(adir, manifest.KeyFile), filepath.Join(adir, manifest.PublicFile))
	fmt.Fprintf(env.Stdout, "  every certificate issued or revoked from now on is recorded; the %d issued before are listed by `fedguard ca list`, not in the log\n", len(issued))
	return nil
}

func runCAIssue(_ context.Context, env *Env, args []string) error {
	c := newCACommand(env, "ca issue", "CA directory")
	flags := c.flags
	outCert := flags.String("out-cert", "", "file for the coordinator certificate")
	outKey := flags.String("out-key", "", "file for the coordinator private key (0600, must not exist)")
	hosts := flags.String("host", "", "comma-separated DNS names and IP addresses the coordinator is reached at")
	validity := flags.Duration("validity", certs.DefaultCertValidity, "lifetime of the certificate")
	if err := parseIssuing(flags, args, validity, "dir", "out-cert", "out-key", "host"); err != nil {
		return err
	}
	hostList := splitList(*hosts)
	if len(hostList) == 0 {
		return usageError("ca issue: -host names no host")
	}
	a, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	cert, id, err := a.IssueServer(hostList, *validity, *outCert, *outKey)
	if kerr, oerr := (*ca.KeyFileError)(nil), (*ca.OutputFileError)(nil); errors.As(err, &kerr) || errors.As(err, &oerr) {
		return fmt.Errorf("ca issue: %w", err)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "issued %s serial %s for %s, valid until %s\n",
		id, caSerial(cert.SerialNumber),
		strings.Join(hostList, ", "), cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(env.Stdout, "  certificate %s\n  private key %s (0600)\n", *outCert, *outKey)
	return nil
}

func runCASign(_ context.Context, env *Env, args []string) error {
	c := newCACommand(env, "ca sign", "CA directory")
	flags := c.flags
	csrFile := flags.String("csr", "", "the participant's certificate signing request (PEM, at most 1 MiB)")
	out := flags.String("out", "", "file for the signed certificate")
	validity := flags.Duration("validity", certs.DefaultCertValidity, "lifetime of the certificate")
	if err := parseIssuing(flags, args, validity, "dir", "csr", "out"); err != nil {
		return err
	}
	csrPEM, err := certs.ReadPEMFile(*csrFile)
	if err != nil {
		return fmt.Errorf("ca sign: %w", err)
	}
	a, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	cert, id, err := a.Sign(csrPEM, *validity, *out)
	if rerr := (*ca.RequestError)(nil); errors.As(err, &rerr) {
		return fmt.Errorf("ca sign %s: %w", *csrFile, err)
	} else if oerr := (*ca.OutputFileError)(nil); errors.As(err, &oerr) {
		return fmt.Errorf("ca sign: %w", err)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "signed %s serial %s, valid until %s\n", id, caSerial(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(env.Stdout, "  certificate %s: send it back to %s with %s\n", *out, id.Name, filepath.Join(*c.dir, "ca.crt"))
	return nil
}

func runCARevoke(_ context.Context, env *Env, args []string) error {
	c := newCACommand(env, "ca revoke", "CA directory")
	flags := c.flags
	serial := flags.String("serial", "", "serial number to revoke, in hex")
	certFile := flags.String("cert", "", "certificate file to revoke")
	name := flags.String("name", "", "participant name: revoke every certificate issued to it")
	if err := parseFlags(flags, args, "dir"); err != nil {
		return err
	}
	n := 0
	for _, s := range []string{*serial, *certFile, *name} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError("ca revoke: give exactly one of -serial, -cert or -name")
	}
	a, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	var (
		revoked []ca.Revoked
		already bool
	)
	switch {
	case *serial != "":
		s, err := certs.ParseSerial(*serial)
		if err != nil {
			return usageError("ca revoke: %v", err)
		}
		r, was, err := a.Revoke(s)
		if err != nil {
			return err
		}
		revoked, already = []ca.Revoked{r}, was
	case *certFile != "":
		cert, err := certs.LoadCertificate(*certFile)
		if err != nil {
			return err
		}
		r, was, err := a.RevokeCertificate(cert)
		if errors.Is(err, ca.ErrForeign) {
			return fmt.Errorf("ca revoke: %s %w", *certFile, err)
		} else if err != nil {
			return err
		}
		revoked, already = []ca.Revoked{r}, was
	default:
		revoked, err = a.RevokeName(*name)
		if err != nil {
			return err
		}
		if len(revoked) == 0 {
			fmt.Fprintf(env.Stdout, "every certificate of %s was already revoked\n", *name)
		}
	}
	if already {
		fmt.Fprintf(env.Stdout, "serial %s (%s) was already revoked\n", caSerial(revoked[0].Serial), revoked[0].Identity)
		return nil
	}
	for _, r := range revoked {
		id := cmp.Or(r.Identity, "not in issued.jsonl")
		fmt.Fprintf(env.Stdout, "revoked serial %s (%s)\n", caSerial(r.Serial), id)
	}
	if len(revoked) > 0 {
		fmt.Fprintf(env.Stdout, "  the coordinator refuses them once it reloads %s\n", filepath.Join(*c.dir, "crl.pem"))
	}
	return nil
}

func runCAList(_ context.Context, env *Env, args []string) error {
	c := newCACommand(env, "ca list", "CA directory")
	if err := parseFlags(c.flags, args, "dir"); err != nil {
		return err
	}
	a, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	issued, err := a.Issued()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tIDENTITY\tNOT AFTER\tREVOKED")
	for _, r := range issued {
		revoked := "no"
		if r.Revoked {
			revoked = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Serial, r.Identity, r.NotAfter.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func runParticipantInit(_ context.Context, env *Env, args []string) error {
	flags := newFlagSet(env, "participant init")
	name := flags.String("name", "", "this hospital's participant name: a-z, 0-9, '-', '.'")
	fed := flags.String("federation", "", "the federation to join")
	dir := flags.String("dir", "", "directory for NAME.key and NAME.csr (created 0700 if missing)")
	if err := parseFlags(flags, args, "name", "federation", "dir"); err != nil {
		return err
	}
	// Validate before the name becomes a file name.
	if err := certs.ValidateName(*name); err != nil {
		return usageError("participant init: -name: %v", err)
	}
	if err := certs.ValidateName(*fed); err != nil {
		return usageError("participant init: -federation: %v", err)
	}
	keyFile := filepath.Join(*dir, *name+".key")
	csrFile := filepath.Join(*dir, *name+".csr")
	if _, err := os.Lstat(keyFile); err == nil {
		return fmt.Errorf("participant init: %s already exists, refusing to overwrite a private key", keyFile)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("participant init: %w", err)
	}
	keyPEM, csrPEM, err := certs.NewParticipantRequest(*fed, *name)
	if err != nil {
		return err
	}
	if err := certs.WritePrivateKey(keyFile, keyPEM); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(csrFile, csrPEM, 0o644); err != nil {
		return err
	}
	id := certs.Identity{Federation: *fed, Role: certs.RoleParticipant, Name: *name}
	fmt.Fprintf(env.Stdout, "wrote %s (private key, 0600: it stays here, never send it)\n", keyFile)
	fmt.Fprintf(env.Stdout, "wrote %s (certificate signing request for %s)\n", csrFile, id)
	fmt.Fprintf(env.Stdout, "next: send %s.csr to the federation operator, who runs:\n", *name)
	fmt.Fprintf(env.Stdout, "  fedguard ca sign --dir CA_DIR --csr %s.csr --out %s.crt\n", *name, *name)
	fmt.Fprintf(env.Stdout, "then put the returned %s.crt and ca.crt in %s, with the coordinator's signing.pub\n", *name, *dir)
	fmt.Fprintln(env.Stdout, "(its manifest-signing keys: the agent trains only on models they sign); check the")
	fmt.Fprintln(env.Stdout, "fingerprint of signing.pub with the operator over another channel, such as the phone")
	fmt.Fprintln(env.Stdout, "(the coordinator prints it when it creates its keys), and run:")
	fmt.Fprintf(env.Stdout, "  fedguard participant run --coordinator HOST:PORT --federation %s \\\n", *fed)
	fmt.Fprintf(env.Stdout, "    --ca %s --cert %s --key %s \\\n", filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, *name+".crt"), keyFile)
	fmt.Fprintf(env.Stdout, "    --coordinator-key %s --data DATA.csv\n", filepath.Join(*dir, manifest.PublicFile))
	return nil
}

// caSerial is how the CLI prints serials: the hex form that
// issued.jsonl, `ca list` and `ca revoke -serial` use.
func caSerial(s *big.Int) string { return s.Text(16) }
