package simulation

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/data/mnist"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
)

// data is a data set ready for training: features as the model reads them,
// labels as class indices.
type data struct {
	classes       int
	trainX, testX [][]float64
	trainY, testY []int
}

// load reads the data set of o (with defaults): MNIST's own training and
// test sets with pixels in [0, 1], or WDBC split 80/20, stratified by label
// with the seed, and standardized with the training rows' scaling (what
// the federation computes from the participants' aggregates).
func load(o Options) (*data, error) {
	switch o.Dataset {
	case DatasetMNIST:
		train, test, err := mnist.Load(o.MNISTDir)
		if err != nil {
			return nil, fmt.Errorf("simulation: %w", err)
		}
		return &data{
			classes: len(mnist.Classes()),
			trainX:  train.Images, trainY: train.Labels,
			testX: test.Images, testY: test.Labels,
		}, nil
	case DatasetWDBC:
		return loadWDBC(o.Seed)
	}
	return nil, fmt.Errorf("%w: unknown dataset %q", ErrOptions, o.Dataset)
}

func loadWDBC(seed uint64) (*data, error) {
	tbl, err := dataset.ReadCSV(bytes.NewReader(wdbc.CSV), dataset.ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		return nil, fmt.Errorf("simulation: wdbc: %w", err)
	}
	train, test := tbl.Split(DefaultTestFraction, derive(seed, "wdbc split"))
	sc, err := dataset.ScalingFrom(train.Stats())
	if err != nil {
		return nil, fmt.Errorf("simulation: wdbc: %w", err)
	}
	d := &data{classes: len(wdbc.Classes())}
	for _, t := range []*dataset.Table{train, test} {
		if err := t.Standardize(sc); err != nil {
			return nil, fmt.Errorf("simulation: wdbc: %w", err)
		}
	}
	if d.trainY, err = train.Encode(wdbc.Classes()); err != nil {
		return nil, fmt.Errorf("simulation: wdbc: %w", err)
	}
	if d.testY, err = test.Encode(wdbc.Classes()); err != nil {
		return nil, fmt.Errorf("simulation: wdbc: %w", err)
	}
	d.trainX, d.testX = train.X, test.X
	return d, nil
}

// seedBytes derives 32 bytes for one purpose from the seed and a few
// numbers (a round, a client): SHA-256 of a domain string, the purpose and
// the numbers, so that no two purposes share a stream.
func seedBytes(seed uint64, purpose string, xs ...uint64) [32]byte {
	b := append([]byte("fedguard simulate v1\x00"), purpose...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint64(b, seed)
	for _, x := range xs {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return sha256.Sum256(b)
}

// derive returns a PCG rng for one purpose (see seedBytes).
func derive(seed uint64, purpose string, xs ...uint64) *rand.Rand {
	s := seedBytes(seed, purpose, xs...)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(s[0:]), binary.LittleEndian.Uint64(s[8:])))
}
