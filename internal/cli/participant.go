package cli

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// agentVersion is what `participant run` reports in Join.
const agentVersion = "fedguard-participant/1"

func init() {
	if commands["participant"] == nil {
		commands["participant"] = &command{summary: "the hospital agent: init, run", sub: map[string]*command{}}
	}
	commands["participant"].sub["run"] = &command{
		summary: "take part in a federation's training until it finishes",
		run:     runParticipant,
	}
}

// stringList is a repeatable flag that also accepts comma-separated values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runParticipant(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "participant run")
	coordinator := fs.String("coordinator", "", "coordinator address, HOST:PORT")
	federation := fs.String("federation", "", "federation name")
	caFile := fs.String("ca", "", "federation CA certificate (ca.crt)")
	certFile := fs.String("cert", "", "this hospital's certificate (NAME.crt)")
	keyFile := fs.String("key", "", "this hospital's private key (NAME.key)")
	data := fs.String("data", "", "local training data, CSV with a header row")
	var ignore stringList
	fs.Var(&ignore, "ignore", "CSV column to skip, e.g. a record id (repeatable, or comma-separated)")
	holdout := fs.Float64("holdout", participant.DefaultHoldout, "fraction of local rows kept for evaluation, in [0, 1)")
	seed := fs.Uint64("seed", 1, "seed of the holdout split and local shuffling")
	serverName := fs.String("server-name", "", "name expected in the coordinator's certificate (default: host of -coordinator)")
	coordKey := fs.String("coordinator-key", "", "the coordinator's manifest-signing public keys (its signing.pub), pinned at enrolment")
	requireSecure := fs.Bool("require-secure", false, "take part in secure-aggregation rounds only: stop if the coordinator asks for a plain update")
	minBucket := fs.Int("min-secure-bucket", 0, "decline secure rounds that put this hospital in a sum of fewer members")
	state := fs.String("state", "", "file keeping the last round manifest accepted (default: beside -key, NAME.accepted.json)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "coordinator", "federation", "ca", "cert", "key", "data", "coordinator-key"); err != nil {
		return err
	}
	if *state == "" {
		*state = strings.TrimSuffix(*keyFile, filepath.Ext(*keyFile)) + ".accepted.json"
	}
	keys, err := manifest.LoadPublicKeys(*coordKey)
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	if !(*holdout >= 0 && *holdout < 1) {
		return usageError("participant run: -holdout %v outside [0, 1)", *holdout)
	}
	host, _, err := net.SplitHostPort(*coordinator)
	if err != nil {
		return usageError("participant run: -coordinator %q: %v", *coordinator, err)
	}
	if *serverName == "" {
		*serverName = host
	}
	ca, err := certs.LoadCertificate(*caFile)
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	tlsCfg, err := certs.ClientConfig(certs.ClientOptions{
		CA:         ca,
		CertFile:   *certFile,
		KeyFile:    *keyFile,
		Federation: *federation,
		ServerName: *serverName,
	})
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	h := *holdout
	if h == 0 {
		h = participant.NoHoldout // an explicit 0 means no holdout, not the default
	}
	agent, err := participant.New(participant.Config{
		Coordinator:     *coordinator,
		TLS:             tlsCfg,
		Trainer:         &participant.LocalTrainer{DataFile: *data, Ignore: ignore, Holdout: h, Seed: *seed},
		Log:             env.Log,
		AgentVersion:    agentVersion,
		Federation:      *federation,
		CoordinatorKeys: keys,
		StateFile:       *state,
		RequireSecure:   *requireSecure,
		MinSecureBucket: *minBucket,
	})
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	if err := agent.Run(ctx); err != nil {
		if ctx.Err() != nil {
			env.Log.Info("participant stopped", "reason", ctx.Err())
			return nil // SIGTERM or Ctrl-C: a clean stop
		}
		return fmt.Errorf("participant run: %w", err)
	}
	return nil
}
