package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/dataset"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// Bounds of a ReportValidation request.
const (
	// maxValidationFindings is the most findings one report may carry.
	maxValidationFindings = 256
	// maxValidationColumn is the longest column name in a finding.
	maxValidationColumn = validation.MaxNameBytes
)

// validateReportValidationRequest checks a ReportValidation request against
// the round the coordinator is at (lastRound, the last closed round): the
// round is one that has been or is being offered, the mode and each
// finding's rule and severity are known, counts do not exceed their totals,
// sizes are bounded, training agrees with the mode and the findings, and
// the feature statistics, when present, are as ReportStats' for a model
// of features features.
func validateReportValidationRequest(req *fedguardv1.ReportValidationRequest, lastRound uint64, features int) error {
	if req.GetRound() == 0 || req.GetRound() > lastRound+1 {
		return status.Errorf(codes.InvalidArgument, "round %d is not a round of this federation so far (last closed: %d)", req.GetRound(), lastRound)
	}
	mode := req.GetMode()
	if mode != "warn" && mode != "enforce" {
		return status.Errorf(codes.InvalidArgument, "mode %q, want warn or enforce", truncate(mode))
	}
	if req.GetRows() > validation.MaxRows || req.GetColumns() > validation.MaxColumns {
		return status.Errorf(codes.InvalidArgument, "%d rows and %d columns exceed the limits (%d, %d)",
			req.GetRows(), req.GetColumns(), validation.MaxRows, validation.MaxColumns)
	}
	fs := req.GetFindings()
	if len(fs) > maxValidationFindings {
		return status.Errorf(codes.InvalidArgument, "%d findings, more than %d", len(fs), maxValidationFindings)
	}
	errs := 0
	for i, f := range fs {
		col := f.GetColumn()
		if len(col) > maxValidationColumn || !utf8.ValidString(col) || strings.IndexFunc(col, unicode.IsControl) >= 0 {
			return status.Errorf(codes.InvalidArgument, "finding %d: column name is not at most %d bytes of printable UTF-8", i, maxValidationColumn)
		}
		if !validation.Rule(f.GetRule()).Known() {
			return status.Errorf(codes.InvalidArgument, "finding %d: unknown rule %q", i, truncate(f.GetRule()))
		}
		switch validation.Severity(f.GetSeverity()) {
		case validation.SeverityError:
			errs++
		case validation.SeverityWarn:
		default:
			return status.Errorf(codes.InvalidArgument, "finding %d: severity %q, want warn or error", i, truncate(f.GetSeverity()))
		}
		if f.GetCount() > f.GetTotal() {
			return status.Errorf(codes.InvalidArgument, "finding %d: count %d exceeds total %d", i, f.GetCount(), f.GetTotal())
		}
	}
	if want := mode == "warn" || errs == 0; req.GetTraining() != want {
		return status.Errorf(codes.InvalidArgument, "training %t with mode %s and %d errors, want %t", req.GetTraining(), mode, errs, want)
	}
	if st := req.GetFeatureStats(); st != nil {
		if _, err := validateReportStatsRequest(&fedguardv1.ReportStatsRequest{Stats: st}, features); err != nil {
			return status.Errorf(codes.InvalidArgument, "feature_stats: %s", status.Convert(err).Message())
		}
	}
	return nil
}

// featureStatsAggregates names the aggregates a FeatureStats carries.
var featureStatsAggregates = []string{"count", "sum", "sum_of_squares"}

// ReportValidation implements fedguardv1.CoordinatorServiceServer: it puts
// the caller's data validation result on the record, as it came, so that
// the audit log lists every aggregate that left the hospital.
func (s *service) ReportValidation(ctx context.Context, req *fedguardv1.ReportValidationRequest) (*fedguardv1.ReportValidationResponse, error) {
	c := s.c
	if err := validateReportValidationRequest(req, c.lastRoundNow(), c.spec.Features); err != nil {
		return nil, err
	}
	name := identity(ctx).Name
	if err := c.admit(name, audit.KindDataValidation); err != nil {
		return nil, err
	}
	ev := audit.DataValidation{
		Attempt: req.GetAttempt(), Mode: req.GetMode(), Training: req.GetTraining(),
		Rows: req.GetRows(), Columns: req.GetColumns(), Findings: []audit.ValidationFinding{},
	}
	pst := req.GetFeatureStats()
	if pst != nil {
		sr := statsReceived(dataset.Stats{Count: pst.GetCount(), Sum: pst.GetSum(), SumSquares: pst.GetSumSquares()})
		ev.FeatureStats = &sr
	}
	errs, budget := 0, false
	for _, f := range req.GetFindings() {
		ev.Findings = append(ev.Findings, audit.ValidationFinding{
			Column: f.GetColumn(), Rule: f.GetRule(), Severity: f.GetSeverity(), Count: f.GetCount(), Total: f.GetTotal(),
		})
		if f.GetSeverity() == string(validation.SeverityError) {
			errs++
		}
		budget = budget || f.GetRule() == string(validation.RulePrivacyBudget)
	}
	level := slog.LevelInfo
	if !req.GetTraining() {
		level = slog.LevelWarn
	}
	c.opts.log.Log(ctx, level, "participant data validation", slog.String("participant", name),
		slog.Uint64("round", req.GetRound()), slog.String("mode", req.GetMode()), slog.Bool("training", req.GetTraining()),
		slog.Int("findings", len(ev.Findings)), slog.Int("errors", errs))
	entries := []audit.Entry{{Kind: audit.KindDataValidation, Actor: name, Round: req.GetRound(), Payload: ev}}
	// Drift: the statistics against the hospital's drift reference (the
	// others' robust scaling, or after a restart the federation's),
	// recorded in the same append as the report they come from.
	var flag *audit.AnomalyFlagged
	if pst != nil {
		c.mu.Lock()
		ref := c.scaling
		if r, ok := c.driftRefs[name]; ok {
			ref = &r // the others' statistics: its own do not pull the reference its way
		}
		c.mu.Unlock()
		if ref != nil {
			st := dataset.Stats{Count: pst.GetCount(), Sum: pst.GetSum(), SumSquares: pst.GetSumSquares()}
			flag = driftFlag(c.cfg.Anomaly, req.GetAttempt(), name, c.specProto.GetFeatures(), st, *ref)
		}
	}
	if flag != nil {
		entries = append(entries, event(audit.KindAnomalyFlagged, req.GetRound(), *flag))
	}
	if err := c.record(ctx, entries...); err != nil {
		return nil, status.Error(codes.Unavailable, "the audit log cannot record the validation report; try again")
	}
	if flag != nil {
		c.opts.log.WarnContext(ctx, "participant data drift", slog.String("participant", name), slog.Uint64("round", req.GetRound()),
			slog.String("feature", flag.Feature), slog.Float64("shift", flag.Value), slog.Float64("variance_ratio", flag.VarianceRatio))
		c.metrics.anomalyFlags.WithLabelValues(AnomalyDrift).Inc()
		c.noteDrift(req.GetRound(), *flag)
	}
	switch {
	case !req.GetTraining() && budget:
		// Not a finding about the data: the hospital's own privacy budget
		// would be exceeded (see participant, privacy ledger).
		c.noteStatus(name, ParticipantRefused, fmt.Sprintf("sat out round %d: its privacy budget would be exceeded", req.GetRound()))
	case !req.GetTraining():
		c.noteStatus(name, ParticipantRefused, fmt.Sprintf("refused to train in round %d: data validation (%s) found %d errors", req.GetRound(), req.GetMode(), errs))
	}
	return &fedguardv1.ReportValidationResponse{}, nil
}

// printableDetail reports whether d, a participant's free text (a manifest
// refusal's or a sit-out's detail), may go as it came into the text log,
// the audit log, the status page and a round manifest: valid UTF-8 with
// no control characters other than tab and newline, and no format
// characters or line and paragraph separators (Unicode Cf, Zl, Zp:
// bidirectional overrides, zero-width characters), which make a terminal
// or a page show other text than what is recorded.
func printableDetail(d string) bool {
	return utf8.ValidString(d) && strings.IndexFunc(d, func(r rune) bool {
		return (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
	}) < 0
}
