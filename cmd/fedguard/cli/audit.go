package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
)

// This file holds `fedguard audit`, the compliance officer's commands. They
// read a coordinator's audit database (read-only) or an export of it, and
// need nothing secret: only the coordinator's public key file.

// parseAndOpen declares -db, the audit database the commands that read one
// share, parses the command's flags (-db is required) and opens that
// database read-only. It returns the -db value, also with an error.
func parseAndOpen(fs *flag.FlagSet, args []string) (*audit.Log, string, error) {
	db := fs.String("db", "", "audit database (the coordinator's DATA_DIR/audit.db)")
	if err := parseFlags(fs, args, "db"); err != nil {
		return nil, *db, err
	}
	if _, err := os.Stat(*db); err != nil {
		return nil, *db, fmt.Errorf("audit database: %w", err)
	}
	l, err := audit.Open(*db, audit.Options{ReadOnly: true})
	return l, *db, err
}

// output returns the writer for -out ("" or "-": standard output) and a
// function that completes it: the file is written to a temporary name and
// renamed only when everything was written, so a failed export leaves no
// partial file behind (certs.WriteFileAtomic; a pipe or a terminal is
// written to).
func output(env *Env, path string) (io.Writer, func(err error) error) {
	if path == "" || path == "-" {
		return env.Stdout, func(err error) error { return err }
	}
	var buf bytes.Buffer
	return &buf, func(err error) error {
		if err != nil {
			return err
		}
		return certs.WriteFileAtomic(path, buf.Bytes(), 0o644)
	}
}

// loadSigningPub loads -key, which cmd needs as the coordinator's
// signing.pub (a note verifier line is refused, saying why after the
// message's end).
func loadSigningPub(path, cmd, why string) (manifest.PublicKeyFile, error) {
	k, err := manifest.LoadPublicKeyFile(path)
	if err != nil {
		return k, err
	}
	if k.Keys == nil {
		return k, usageError("%s: -key must be the coordinator's signing.pub (PEM)%s", cmd, why)
	}
	return k, nil
}

// maxProofBytes bounds an inclusion proof (audit verify -proof): one event
// of at most audit.MaxLineLen bytes, a few dozen hashes and a checkpoint.
const maxProofBytes = 16 << 20

// input opens the file an export is read from, standard input for "-";
// closeIn releases it.
func input(name string) (in io.Reader, closeIn func() error, err error) {
	if name == "-" {
		return os.Stdin, func() error { return nil }, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

func runAuditExport(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit export")
	out := fs.String("out", "", "output file (default: standard output)")
	l, _, err := parseAndOpen(fs, args)
	if err != nil {
		return err
	}
	defer l.Close()
	w, done := output(env, *out)
	return done(l.Export(w))
}

func runAuditVerify(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit verify")
	key := fs.String("key", "", "the coordinator's public key file (signing.pub, or a note verifier key)")
	proof := fs.Bool("proof", false, "FILE is an inclusion proof from 'fedguard audit prove', not an export (at most 16 MiB)")
	var witnesses stringList
	fs.Var(&witnesses, "witness", "a hospital's witness file from 'fedguard participant witness': the export must extend its checkpoint (repeatable, or comma-separated)")
	ca := fs.String("ca", "", "with -witness: the federation's CA certificate (ca.crt), which must have issued the witnesses' certificates")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := required(fs, "key"); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("audit verify: want one FILE (an export, or - for standard input), got %d arguments", fs.NArg())
	}
	k, err := manifest.LoadPublicKeyFile(*key)
	if err != nil {
		return err
	}
	if *proof && len(witnesses) > 0 {
		return usageError("audit verify: -witness checks an export, not an inclusion proof")
	}
	witnessed, err := loadWitnesses(*ca, witnesses, k.Verifiers)
	if err != nil {
		return err
	}
	in, closeIn, err := input(fs.Arg(0))
	if err != nil {
		return err
	}
	defer closeIn()
	if *proof {
		data, err := io.ReadAll(io.LimitReader(in, maxProofBytes+1))
		if err != nil {
			return err
		}
		if len(data) > maxProofBytes {
			return fmt.Errorf("audit verify: proof %s: larger than %d bytes, not an inclusion proof", fs.Arg(0), maxProofBytes)
		}
		ev, cp, err := audit.VerifyProof(data, k.Verifiers)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "OK: event %d (%s by %s, round %d) is in the log %s, checkpoint of %d events signed by the coordinator\n",
			ev.Seq, ev.Kind, ev.Actor, ev.Round, cp.Origin, cp.Size)
		return nil
	}
	sum, err := audit.Verify(in, audit.VerifyOptions{Verifiers: k.Verifiers, Rotate: rotations(k), Witnessed: witnessed})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "OK: %d events of %s verified: hash chain intact, %d signed checkpoints; the last covers %d events\n",
		sum.Events, sum.Origin, sum.Checkpoints, sum.Covered)
	if len(witnessed) > 0 {
		fmt.Fprintf(env.Stdout, "witnessed: the export extends the checkpoints of %d witnesses: %s\n", len(witnessed), describeWitnesses(witnessed))
	}
	if sum.Uncovered > 0 {
		fmt.Fprintf(env.Stdout, "note: the last %d events are chained but not yet covered by a signed checkpoint\n", sum.Uncovered)
	}
	return nil
}

func runAuditProve(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit prove")
	seq := fs.Int64("seq", -1, "sequence number of the event to prove")
	out := fs.String("out", "", "output file (default: standard output)")
	l, _, err := parseAndOpen(fs, args)
	if err != nil {
		return err
	}
	defer l.Close()
	if *seq < 0 {
		return usageError("audit prove: -seq is required and must be at least 0")
	}
	p, err := l.Prove(uint64(*seq))
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	w, done := output(env, *out)
	_, err = w.Write(append(b, '\n'))
	return done(err)
}

func runAuditReport(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit report")
	round := fs.Uint64("round", 0, "report only this round (default: every round)")
	html := fs.Bool("html", false, "write HTML instead of Markdown")
	key := fs.String("key", "", "the coordinator's signing.pub: verify the log and each round's manifest signatures")
	out := fs.String("out", "", "output file (default: standard output)")
	l, _, err := parseAndOpen(fs, args)
	if err != nil {
		return err
	}
	defer l.Close()
	opts := report.Options{Round: *round, Origin: l.Origin(), LogStatus: "not verified (no -key given): checkpoints and signatures were not checked"}
	if *key != "" {
		k, err := loadSigningPub(*key, "audit report", ", to check manifests")
		if err != nil {
			return err
		}
		ring, err := followLog(k, l)
		if err != nil {
			// The log status below says what is wrong with the log.
			ring = manifest.Keyring{*k.Keys}
		}
		opts.VerifyManifest = func(env []byte) error { _, _, err := ring.Open(env); return err }
		var verified bool
		opts.LogStatus, verified = logStatus(l, k)
		if verified {
			// Only checkpoints that verified may vouch for rounds.
			if err := l.Checkpoints(func(c audit.Checkpoint) error { opts.Checkpoints = append(opts.Checkpoints, c); return nil }); err != nil {
				return err
			}
		}
	}
	var events []audit.Event
	if err := l.Events(0, func(e audit.Event) error { events = append(events, e); return nil }); err != nil {
		return err
	}
	rep, err := report.Build(events, opts)
	if err != nil {
		return err
	}
	w, done := output(env, *out)
	if *html {
		return done(rep.WriteHTML(w))
	}
	return done(rep.WriteMarkdown(w))
}

// logStatus verifies the whole log as an auditor would, through its own
// export, and says so in one line.
func logStatus(l *audit.Log, k manifest.PublicKeyFile) (string, bool) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.Export(pw)) }()
	sum, err := audit.Verify(pr, audit.VerifyOptions{Verifiers: k.Verifiers, Rotate: rotations(k)})
	pr.Close()
	if err != nil {
		return "NOT VERIFIED: " + err.Error(), false
	}
	s := fmt.Sprintf("verified: %d events, hash chain intact, %d signed checkpoints, the last covering %d events", sum.Events, sum.Checkpoints, sum.Covered)
	if sum.Uncovered > 0 {
		s += fmt.Sprintf(" (%d later events not yet covered)", sum.Uncovered)
	}
	return s, true
}

func runAuditModel(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit model")
	dataDir, round := roundModelFlags(fs)
	outDir := fs.String("out", ".", "directory for MODEL.bin and MODEL.bin.manifest.json")
	key := fs.String("key", "", "the coordinator's signing.pub: check the manifest and the model before writing them")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nThe files it writes can be checked without fedguard, with cosign (v2.4.1 or later;\n"+
			"it checks the Ed25519 signature, against the coordinator's %s, and the model's digest):\n  %s\n",
			manifest.CosignPublicFile, cosignCommand(manifest.CosignPublicFile, "FED-model-round-000020.bin"))
	}
	if err := parseFlags(fs, args, "data-dir"); err != nil {
		return err
	}
	m, err := exportModel(*dataDir, *round)
	if err != nil {
		return err
	}
	name := manifest.SubjectName(m.Federation, m.Round)
	if *key != "" {
		k, err := loadSigningPub(*key, "audit model", "")
		if err != nil {
			return err
		}
		ring, err := rotatedKeyring(*dataDir, *k.Keys, m.Federation)
		if err != nil {
			return err
		}
		if _, err := verifyExported(m, ring); err != nil {
			return err
		}
	}
	modelPath := filepath.Join(*outDir, name)
	if err := certs.WriteFileAtomic(modelPath, m.Model, 0o644); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(modelPath+".manifest.json", m.Manifest, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s and %s (round %d)\n", modelPath, modelPath+".manifest.json", m.Round)
	fmt.Fprintf(env.Stdout, "check them without fedguard:\n  %s\n", cosignCommand(filepath.Join(*dataDir, manifest.CosignPublicFile), modelPath))
	return nil
}

// cosignCommand is the cosign command that checks the model file model
// against its manifest (model + ".manifest.json") and the coordinator's
// cosign.pub at key: --insecure-ignore-tlog because manifests are not in
// Rekor, --type because the predicate is fedguard's (see package
// manifest).
func cosignCommand(key, model string) string {
	return fmt.Sprintf("cosign verify-blob-attestation --key %s --insecure-ignore-tlog --type %s --signature %s %s",
		key, manifest.PredicateType, model+".manifest.json", model)
}
