package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
)

// This file holds `fedguard audit lineage`: which data versions of which
// hospitals trained a model version, from the signed manifests in the
// audit log (see package lineage and docs/lineage.md).

func init() {
	commands["audit"].sub["lineage"] = &command{
		summary: "which hospitals' data versions trained a model version, and what changed between rounds",
		run:     runAuditLineage,
	}
}

func runAuditLineage(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit lineage")
	db := fs.String("db", "", "audit database (the coordinator's DATA_DIR/audit.db)")
	key := fs.String("key", "", "the coordinator's signing.pub (PEM): every manifest read must verify under it")
	round := fs.Int64("round", -1, "the model version (round) to trace (default: the last round with a manifest)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	out := fs.String("out", "", "output file (default: standard output)")
	l, err := parseAndOpen(fs, db, args)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := required(fs, "key"); err != nil {
		return err
	}
	k, err := loadKeyFile(*key)
	if err != nil {
		return err
	}
	if k.keys == nil {
		return usageError("audit lineage: -key must be the coordinator's signing.pub (PEM), to check manifests")
	}
	rounds, err := signedRounds(l, *k.keys)
	if err != nil {
		return fmt.Errorf("audit lineage: %w", err)
	}
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

// signedRounds reads every manifest_signed event of l and opens its
// envelope with keys: a manifest that does not verify, or whose digest is
// not the one the event records, is an error. Later manifests of a round
// replace earlier ones (a round signed again after a crash).
func signedRounds(l *audit.Log, keys manifest.PublicKeys) ([]manifest.Round, error) {
	var rounds []manifest.Round
	index := map[uint64]int{}
	err := l.Events(0, func(e audit.Event) error {
		if e.Kind != audit.KindManifestSigned {
			return nil
		}
		var ms audit.ManifestSigned
		if err := json.Unmarshal(e.Payload, &ms); err != nil {
			return fmt.Errorf("event %d: %w", e.Seq, err)
		}
		r, digest, err := manifest.Open(ms.Envelope, keys)
		if err != nil {
			return fmt.Errorf("event %d: the manifest of round %d: %w", e.Seq, e.Round, err)
		}
		if hex.EncodeToString(digest[:]) != ms.SHA256 {
			return fmt.Errorf("event %d: the manifest's digest is %x, the event records %s", e.Seq, digest, ms.SHA256)
		}
		if len(rounds) > 0 && r.Federation != rounds[0].Federation {
			return fmt.Errorf("event %d: a manifest of federation %q in a log of %q", e.Seq, r.Federation, rounds[0].Federation)
		}
		if i, ok := index[r.Round]; ok {
			rounds[i] = r
			return nil
		}
		index[r.Round] = len(rounds)
		rounds = append(rounds, r)
		return nil
	})
	return rounds, err
}
