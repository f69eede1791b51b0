package simulation

import (
	"context"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// BenchmarkRound times one round (every client's local training, the
// attack, the rule and the evaluation) of 25 clients, 5 of them running
// ALIE against Krum: on WDBC, and on MNIST with the MLP 784-64-10 unless
// -short. The data are loaded before the timer starts.
func BenchmarkRound(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    Options
	}{
		{"wdbc-mlp", Options{Dataset: DatasetWDBC, Model: "mlp"}},
		{"mnist-mlp", Options{Dataset: DatasetMNIST, Model: "mlp"}},
		{"mnist-logreg", Options{Dataset: DatasetMNIST, Model: "logreg"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if testing.Short() && bc.o.Dataset == DatasetMNIST {
				b.Skip("MNIST in -short mode")
			}
			o := bc.o
			o.Clients, o.Byzantine, o.Seed = 25, 5, 1
			o.Attack = attack.Config{Name: attack.NameALIE}
			o.Aggregation = aggregation.Defaults(aggregation.NameKrum, 25, 5)
			o.Rounds = b.N
			c, d := loaded(b, o)
			b.ResetTimer()
			if _, err := run(context.Background(), c, d, time.Now(), nil); err != nil {
				b.Fatal(err)
			}
		})
	}
}
