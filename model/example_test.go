package model_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

// A hospital's round: standardize with the federation's scaling, train from the
// global model, evaluate on held-out rows, and hash the update for the record.
func ExampleTrain() {
	tab, err := dataset.ReadCSV(bytes.NewReader(wdbc.CSV), dataset.ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		panic(err)
	}
	train, test := tab.Split(0.2, rand.New(rand.NewPCG(42, 0)))
	scaling, _ := dataset.ScalingFrom(train.Stats()) // in a federation: merged Stats of all hospitals
	_ = train.Standardize(scaling)
	_ = test.Standardize(scaling)
	ytr, _ := train.Encode(wdbc.Classes())
	yte, _ := test.Encode(wdbc.Classes())

	spec := model.Spec{Kind: model.LogReg, Features: len(tab.Features), Classes: len(wdbc.Classes())}
	global := model.Init(spec, nil)
	plan := model.Plan{Epochs: 20, LearningRate: 0.05, BatchSize: 32, L2: 1e-3}
	local, err := model.Train(spec, global, train.X, ytr, plan, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	m, err := model.Evaluate(spec, local, test.X, yte)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d parameters, %d wire bytes\n", spec.NumParams(), len(model.AppendBytes(nil, local)))
	fmt.Printf("test rows %d, accuracy %.2f, loss below 0.2: %v\n", m.Count, m.Accuracy, m.Loss < 0.2)
	// Output:
	// 62 parameters, 248 wire bytes
	// test rows 113, accuracy 0.96, loss below 0.2: true
}
