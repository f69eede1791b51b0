package participant

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// The modes of data validation before each round (Config.ValidationMode).
const (
	// ValidationWarn checks the data, reports the result to the
	// coordinator and trains whatever the findings.
	ValidationWarn = "warn"
	// ValidationEnforce checks the data, reports the result, and sits the
	// round out when a finding is an error.
	ValidationEnforce = "enforce"
)

// maxReportedFindings is the most findings one ReportValidation carries
// (the coordinator's bound); errors are sent first.
const maxReportedFindings = 256

// ErrDataRefused marks a round the agent sat out because, in enforce mode,
// its data file broke its expectations (or could not be read). The agent
// reports it to the coordinator and waits for the next assignment, so Run
// does not return this error.
var ErrDataRefused = errors.New("participant: data file does not meet its expectations")

// validator checks the data file before each round.
type validator struct {
	file   string
	mode   string
	expect validation.Expectations
	named  map[string]bool // columns the expectations name
}

// newValidator loads cfg's expectations; nil when there are none.
func newValidator(cfg Config) (*validator, error) {
	if cfg.Expectations == "" {
		if cfg.ValidationMode != "" || cfg.ValidationData != "" {
			return nil, errors.New("participant: Config.ValidationMode or ValidationData without Expectations")
		}
		return nil, nil
	}
	v := &validator{file: cfg.ValidationData, mode: cfg.ValidationMode}
	switch v.mode {
	case "":
		v.mode = ValidationWarn
	case ValidationWarn, ValidationEnforce:
	default:
		return nil, fmt.Errorf("participant: Config.ValidationMode %q, want %q or %q", v.mode, ValidationWarn, ValidationEnforce)
	}
	if v.file == "" {
		lt, ok := cfg.Trainer.(*LocalTrainer)
		if !ok || lt.DataFile == "" {
			return nil, errors.New("participant: Config.ValidationData is empty and the Trainer is not a LocalTrainer with a DataFile")
		}
		v.file = lt.DataFile
	}
	e, err := validation.LoadExpectations(cfg.Expectations)
	if err != nil {
		return nil, fmt.Errorf("participant: %w", err)
	}
	v.expect = e
	v.named = map[string]bool{e.Label.Column: true}
	for _, n := range e.Ignore {
		v.named[n] = true
	}
	for _, c := range e.Columns {
		v.named[c.Name] = true
	}
	return v, nil
}

// check validates the data file and returns what may leave the hospital:
// the request to report (without round and attempt) and whether to train.
// Column names the expectations do not name are blanked, since a header
// line may itself be data.
func (v *validator) check(ctx context.Context, log *slog.Logger) (*fedguardv1.ReportValidationRequest, error) {
	req := &fedguardv1.ReportValidationRequest{Mode: v.mode}
	rep, err := v.read()
	errs := 0
	if err != nil {
		log.ErrorContext(ctx, "data validation could not read the data file", slog.Any("error", err))
		req.Findings = []*fedguardv1.ValidationFinding{{Rule: string(validation.RuleUnreadable), Severity: string(validation.SeverityError)}}
		errs = 1
	} else {
		req.Rows, req.Columns = uint64(rep.Rows), uint32(rep.Columns)
		fs := slices.Clone(rep.Findings)
		slices.SortStableFunc(fs, func(a, b validation.Finding) int {
			return cmp.Compare(severityRank(a.Severity), severityRank(b.Severity))
		})
		for _, f := range fs {
			// Findings stay in the local log with their aggregates.
			log.WarnContext(ctx, "data validation finding", slog.String("column", f.Column), slog.String("rule", string(f.Rule)),
				slog.String("severity", string(f.Severity)), slog.String("detail", f.Message))
			if f.Severity == validation.SeverityError {
				errs++
			}
			if len(req.Findings) == maxReportedFindings {
				continue
			}
			col := f.Column
			if !v.named[col] {
				col = ""
			}
			req.Findings = append(req.Findings, &fedguardv1.ValidationFinding{
				Column: col, Rule: string(f.Rule), Severity: string(f.Severity), Count: uint64(f.Count), Total: uint64(f.Total),
			})
		}
	}
	req.Training = v.mode == ValidationWarn || errs == 0
	if !req.Training {
		return req, fmt.Errorf("%w: %s: %d errors (mode enforce)", ErrDataRefused, v.file, errs)
	}
	return req, nil
}

func (v *validator) read() (validation.Report, error) {
	f, err := os.Open(v.file)
	if err != nil {
		return validation.Report{}, err
	}
	defer f.Close()
	return validation.Check(f, v.expect)
}

func severityRank(s validation.Severity) int {
	if s == validation.SeverityError {
		return 0
	}
	return 1
}

// driftStats are the aggregates of the training rows that a validation
// report carries for the coordinator's drift monitoring: the same count,
// sums and sums of squares that ReportStats sends, of the rows the trainer
// prepared. They are withheld (nil) when the agent will not train, since
// then no row of this round's data is used, and when they are not finite
// or not of the model's width.
func (a *Agent) driftStats(training bool) *fedguardv1.FeatureStats {
	if !training || a.spec.Features == 0 || checkStats(a.stats, a.spec.Features) != nil {
		return nil
	}
	return &fedguardv1.FeatureStats{Count: a.stats.Count, Sum: a.stats.Sum, SumSquares: a.stats.SumSquares}
}

// validateData runs the data check before a round, reports its result
// (with the training rows' aggregates, see driftStats) to the coordinator
// and returns an error wrapping ErrDataRefused when the
// round must be sat out. A failed report is logged, not fatal: the check
// itself is what protects the data.
func (a *Agent) validateData(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger) error {
	if a.validator == nil {
		return nil
	}
	req, refused := a.validator.check(ctx, log)
	req.Round, req.Attempt = asg.GetRound(), asg.GetAttempt()
	req.FeatureStats = a.driftStats(req.GetTraining())
	cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	_, err := client.ReportValidation(cctx, req)
	cancel()
	if err != nil {
		log.WarnContext(ctx, "data validation not reported to the coordinator", slog.Any("error", err))
	}
	log.InfoContext(ctx, "data validated", slog.String("mode", req.GetMode()), slog.Bool("training", req.GetTraining()),
		slog.Int("findings", len(req.GetFindings())))
	return refused
}
