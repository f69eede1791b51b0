package participant_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// A hospital's agent: mutual TLS from the federation's certificates, the
// coordinator's manifest-signing keys pinned at enrolment, a state file that
// remembers the last round manifest accepted, local training on a CSV file,
// and a run until the federation finishes or the process is told to stop.
func ExampleAgent_Run() {
	ca, err := certs.LoadCertificate("ca.crt")
	if err != nil {
		log.Fatal(err)
	}
	tlsCfg, err := certs.ClientConfig(certs.ClientOptions{
		CA: ca, CertFile: "st-mary.crt", KeyFile: "st-mary.key",
		Federation: "oncology", ServerName: "coordinator.example.org",
	})
	if err != nil {
		log.Fatal(err)
	}
	keys, err := manifest.LoadPublicKeys("signing.pub")
	if err != nil {
		log.Fatal(err)
	}
	agent, err := participant.New(participant.Config{
		Coordinator:     "coordinator.example.org:7443",
		TLS:             tlsCfg,
		Trainer:         &participant.LocalTrainer{DataFile: "patients.csv", Ignore: []string{"id"}, Seed: 1},
		Federation:      "oncology",
		CoordinatorKeys: keys,
		StateFile:       "accepted-manifest.json",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
