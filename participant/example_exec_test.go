package participant_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// A hospital's own trainer, given as one command line: split into words
// with no shell in between.
func ExampleSplitCommand() {
	args, err := participant.SplitCommand(`python3 "/opt/my model/train.py" --amp $HOME`)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", args)
	// Output:
	// ["python3" "/opt/my model/train.py" "--amp" "$HOME"]
}

// One round with an external trainer: the agent writes the model and the
// plan, runs the program, and turns the weights it writes back into the
// update. The no-op trainer returns the model unchanged.
func ExampleExecTrainer() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tr := &participant.ExecTrainer{
		Command: []string{"sh", "testdata/trainer/noop.sh"},
		Dir:     dir,
		Log:     slog.New(slog.DiscardHandler),
	}
	spec := &fedguardv1.ModelSpec{
		FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_LOGREG,
		Features: []string{"x1", "x2"}, Label: "y", Classes: []string{"no", "yes"}, NumParams: 6,
	}
	if _, err := tr.Prepare(spec); err != nil {
		panic(err)
	}
	asg := &fedguardv1.RoundAssignment{Round: 1, Plan: &fedguardv1.TrainingPlan{LocalEpochs: 1, LearningRate: 0.1}}
	res, err := tr.Train(context.Background(), asg, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Delta, res.Samples)
	// Output:
	// [0 0 0 0 0 0] 1
}
