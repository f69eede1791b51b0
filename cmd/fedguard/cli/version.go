package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fedguard/fedguard/internal/buildinfo"
)

// runVersion is `fedguard version`: which build this is, so that an
// operator can match a running binary with a release's signed checksums
// and the coordinator_started events of the audit log.
func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "version")
	asJSON := fs.Bool("json", false, "print JSON (version, revision, time, modified, go_version, platform)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	info := buildinfo.Read()
	if *asJSON {
		b, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		return err
	}
	_, err := fmt.Fprint(env.Stdout, info.String())
	return err
}
