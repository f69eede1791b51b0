package cli

import (
	"context"
	"fmt"

	"github.com/fedguard/fedguard/manifest"
)

// runAuditCheck runs `fedguard audit check`: audit.Log.Check on a stopped
// coordinator's audit database (or a copy), for operators and backup jobs
// that want to know a file is sound before they rely on it. `fedguard
// coordinator --check-data` also checks it against state.db.
func runAuditCheck(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "audit check")
	key := fs.String("key", "", "the coordinator's public key (DATA_DIR/signing.pub, or a note verifier key); without it checkpoint signatures are not checked")
	l, db, err := parseAndOpen(fs, args)
	if err != nil {
		fmt.Fprintf(env.Stdout, "FAILED: %s\n", db)
		return err
	}
	defer l.Close()
	var kf manifest.PublicKeyFile
	if *key != "" {
		if kf, err = manifest.LoadPublicKeyFile(*key); err != nil {
			return err
		}
	}
	verifiers := kf.Verifiers
	if kf.Keys != nil {
		// Checkpoints signed after key rotations are checked with the
		// keys the rotations recorded in the log lead to.
		ring, err := followLog(kf, l)
		if err != nil {
			fmt.Fprintf(env.Stdout, "FAILED: %s\n", db)
			return err
		}
		verifiers = keyringVerifiers{ring}
	}
	sum, err := l.Check(verifiers)
	if err != nil {
		fmt.Fprintf(env.Stdout, "FAILED: %s\n", db)
		return err
	}
	signatures := "signatures verified"
	if kf.Verifiers == nil {
		signatures = "signatures NOT checked (no --key)"
	}
	fmt.Fprintf(env.Stdout, "OK: %s: %d events, head %s; %d checkpoints (%s), the last covers %d events\n",
		db, sum.Events, sum.Head, sum.Checkpoints, signatures, sum.Covered)
	return nil
}
