package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
)

// This file holds `fedguard audit lineage`: which data versions of which
// hospitals trained a model version, from the signed manifests in the
// audit log (see package lineage and docs/lineage.md).

func runAuditLineage(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit lineage")
	db := fs.String("db", "", "audit database (the coordinator's DATA_DIR/audit.db); or give an export FILE instead")
	key := fs.String("key", "", "the coordinator's signing.pub (PEM): every manifest read must verify under it")
	round := fs.Int64("round", -1, "the model version (round) to trace (default: the last round with a manifest)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	out := fs.String("out", "", "output file (default: standard output)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fedguard audit lineage -key signing.pub (-db audit.db | EXPORT) [flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%v", err)
	}
	if err := required(fs, "key"); err != nil {
		return err
	}
	if (*db == "") == (fs.NArg() != 1) || fs.NArg() > 1 {
		return usageError("audit lineage: give either -db or one export FILE (- for standard input)")
	}
	k, err := loadSigningPub(*key, "audit lineage", ", to check manifests")
	if err != nil {
		return err
	}
	var mc manifestCollector
	mc.keys = *k.Keys
	if *db != "" {
		if _, err := os.Stat(*db); err != nil {
			return fmt.Errorf("audit database: %w", err)
		}
		l, err := audit.Open(*db, audit.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer l.Close()
		if err := l.Events(0, mc.add); err != nil {
			return fmt.Errorf("audit lineage: %w", err)
		}
	} else {
		// An export is verified whole (chain, tree, signed checkpoints)
		// while its manifests are read.
		in, closeIn, err := input(fs.Arg(0))
		if err != nil {
			return err
		}
		defer closeIn()
		if _, err := audit.Verify(in, audit.VerifyOptions{Verifiers: k.Verifiers, Rotate: rotations(k), OnEvent: mc.add}); err != nil {
			return fmt.Errorf("audit lineage: %w", err)
		}
	}
	rounds := mc.rounds
	if len(rounds) == 0 {
		return errors.New("audit lineage: the audit log holds no signed manifest")
	}
	var upTo uint64
	for _, r := range rounds {
		upTo = max(upTo, r.Round)
	}
	if *round >= 0 {
		upTo = uint64(*round)
	}
	trace, err := lineage.Trace(rounds, upTo)
	if err != nil {
		return fmt.Errorf("audit lineage: %w", err)
	}
	w, done := output(env, *out)
	if *asJSON {
		b, err := json.MarshalIndent(struct {
			Federation string                 `json:"federation"`
			Round      uint64                 `json:"round"`
			Lineage    []lineage.ModelVersion `json:"lineage"`
		}{rounds[0].Federation, upTo, trace}, "", "  ")
		if err != nil {
			return done(err)
		}
		_, err = w.Write(append(b, '\n'))
		return done(err)
	}
	fmt.Fprintf(w, "lineage of the model of round %d of federation %s (model sha256 %s)\n\n", upTo, rounds[0].Federation, modelOf(trace, upTo))
	return done(lineage.WriteTable(w, trace))
}

func modelOf(trace []lineage.ModelVersion, round uint64) string {
	for _, mv := range trace {
		if mv.Round == round {
			return mv.ModelSHA256
		}
	}
	return "-"
}

// manifestCollector gathers the manifests of manifest_signed events, each
// opened with keys: a manifest that does not verify, or whose digest is
// not the one the event records, is an error. A later manifest of a round
// replaces an earlier one (a round signed again after a crash).
type manifestCollector struct {
	keys   manifest.PublicKeys
	rounds []manifest.Round
	index  map[uint64]int
}

func (mc *manifestCollector) add(e audit.Event) error {
	if e.Kind != audit.KindManifestSigned {
		return nil
	}
	var ms audit.ManifestSigned
	if err := json.Unmarshal(e.Payload, &ms); err != nil {
		return fmt.Errorf("event %d: %w", e.Seq, err)
	}
	r, digest, err := manifest.Open(ms.Envelope, mc.keys)
	if err != nil {
		return fmt.Errorf("event %d: the manifest of round %d: %w", e.Seq, e.Round, err)
	}
	if hex.EncodeToString(digest[:]) != ms.SHA256 {
		return fmt.Errorf("event %d: the manifest's digest is %x, the event records %s", e.Seq, digest, ms.SHA256)
	}
	if len(mc.rounds) > 0 && r.Federation != mc.rounds[0].Federation {
		return fmt.Errorf("event %d: a manifest of federation %q in a log of %q", e.Seq, r.Federation, mc.rounds[0].Federation)
	}
	if mc.index == nil {
		mc.index = map[uint64]int{}
	}
	if i, ok := mc.index[r.Round]; ok {
		mc.rounds[i] = r
		return nil
	}
	mc.index[r.Round] = len(mc.rounds)
	mc.rounds = append(mc.rounds, r)
	return nil
}
