package participant_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/participant"
)

// A hospital's agent: mutual TLS from the federation's certificates, local
// training on a CSV file, and a run until the federation finishes or the
// process is told to stop.
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
	agent, err := participant.New(participant.Config{
		Coordinator: "coordinator.example.org:7443",
		TLS:         tlsCfg,
		Trainer:     &participant.LocalTrainer{DataFile: "patients.csv", Ignore: []string{"id"}, Seed: 1},
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
