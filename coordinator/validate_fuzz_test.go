package coordinator

import (
	"math"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// invalidArgument fails unless err is nil or an InvalidArgument status.
func invalidArgument(t *testing.T, err error) {
	if err != nil && status.Code(err) != codes.InvalidArgument {
		t.Fatalf("validator returned %v, want an InvalidArgument status", err)
	}
}

// checkDetail fails the test unless d, a detail a validator accepted, is
// at most maxRefusalDetail bytes of printable UTF-8 (newlines and tabs
// allowed, no format or line-separator characters).
func checkDetail(t *testing.T, d string) {
	t.Helper()
	if len(d) > maxRefusalDetail || !utf8.ValidString(d) ||
		strings.IndexFunc(d, func(r rune) bool {
			return unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
		}) >= 0 {
		t.Fatalf("accepted detail %q", d)
	}
}

// FuzzValidateReportStats: the ReportStats check never panics, refuses
// with InvalidArgument only, and what it accepts has a row count in
// [1, MaxSamples] and finite sums of the model's width, with non-negative
// sums of squares.
func FuzzValidateReportStats(f *testing.F) {
	protofuzz.Seed(f,
		&fedguardv1.ReportStatsRequest{Stats: &fedguardv1.FeatureStats{Count: 3, Sum: []float64{1, 2}, SumSquares: []float64{1, 4}}},
		&fedguardv1.ReportStatsRequest{Stats: &fedguardv1.FeatureStats{Count: 0, Sum: []float64{1, 2}, SumSquares: []float64{1, 4}}},
		&fedguardv1.ReportStatsRequest{Stats: &fedguardv1.FeatureStats{Count: 1, Sum: []float64{math.NaN(), 2}, SumSquares: []float64{-1, 4}}},
		&fedguardv1.ReportStatsRequest{},
	)
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.ReportStatsRequest) {
		st, err := validateReportStatsRequest(req, 2)
		invalidArgument(t, err)
		if err != nil {
			return
		}
		if st.Count == 0 || st.Count > MaxSamples || len(st.Sum) != 2 || len(st.SumSquares) != 2 {
			t.Fatalf("accepted stats of %d rows, %d sums, %d sums of squares", st.Count, len(st.Sum), len(st.SumSquares))
		}
		for i := range 2 {
			if math.IsNaN(st.Sum[i]) || math.IsInf(st.Sum[i], 0) || !(st.SumSquares[i] >= 0) || math.IsInf(st.SumSquares[i], 0) {
				t.Fatalf("accepted feature %d with sum %v, sum of squares %v", i, st.Sum[i], st.SumSquares[i])
			}
		}
	})
}

// FuzzValidateReportValidation: the ReportValidation check never panics,
// refuses with InvalidArgument only, and what it accepts is bounded:
// a round offered so far, a known mode, at most maxValidationFindings
// findings with printable column names and counts within their totals,
// and training that agrees with the mode.
func FuzzValidateReportValidation(f *testing.F) {
	protofuzz.Seed(f,
		&fedguardv1.ReportValidationRequest{Round: 1, Mode: "warn", Training: true, Rows: 10, Columns: 3},
		&fedguardv1.ReportValidationRequest{Round: 2, Mode: "enforce", Training: false, Findings: []*fedguardv1.ValidationFinding{
			{Column: "age", Rule: "range", Severity: "error", Count: 2, Total: 10},
		}},
		&fedguardv1.ReportValidationRequest{Round: 1, Mode: "warn", Training: true,
			FeatureStats: &fedguardv1.FeatureStats{Count: 3, Sum: []float64{1, 2}, SumSquares: []float64{1, 4}}},
		&fedguardv1.ReportValidationRequest{Round: 9, Mode: "strict"},
	)
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.ReportValidationRequest) {
		err := validateReportValidationRequest(req, 1, 2)
		invalidArgument(t, err)
		if err != nil {
			return
		}
		if req.GetRound() == 0 || req.GetRound() > 2 || (req.GetMode() != "warn" && req.GetMode() != "enforce") ||
			len(req.GetFindings()) > maxValidationFindings {
			t.Fatalf("accepted round %d, mode %q, %d findings", req.GetRound(), req.GetMode(), len(req.GetFindings()))
		}
		errs := 0
		for _, fd := range req.GetFindings() {
			if len(fd.GetColumn()) > maxValidationColumn || !utf8.ValidString(fd.GetColumn()) || fd.GetCount() > fd.GetTotal() {
				t.Fatalf("accepted finding %v", fd)
			}
			if fd.GetSeverity() == "error" {
				errs++
			}
		}
		if req.GetTraining() != (req.GetMode() == "warn" || errs == 0) {
			t.Fatalf("accepted training %t with mode %s and %d errors", req.GetTraining(), req.GetMode(), errs)
		}
	})
}

// FuzzValidateReportRefusal: the ReportRefusal check never panics, refuses
// with InvalidArgument only, and what it accepts has a known reason and a
// detail of at most maxRefusalDetail bytes of printable UTF-8, which is
// what goes into the logs. (It accepted any bytes as the detail before.)
func FuzzValidateReportRefusal(f *testing.F) {
	protofuzz.Seed(f,
		&fedguardv1.ReportRefusalRequest{ManifestRound: 3, Reason: string(refusalReasons[0]), Detail: "digest mismatch"},
		&fedguardv1.ReportRefusalRequest{Reason: "nope"},
		&fedguardv1.ReportRefusalRequest{Reason: string(refusalReasons[0]), Detail: "a\x1b[31mred\r\nforged log line"},
		&fedguardv1.ReportRefusalRequest{Reason: string(refusalReasons[0]), Detail: strings.Repeat("x", maxRefusalDetail+1)},
		&fedguardv1.ReportRefusalRequest{Reason: string(refusalReasons[0]), Detail: "digest \u202e\u200bmismatch"},
	)
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.ReportRefusalRequest) {
		reason, err := validateReportRefusalRequest(req)
		invalidArgument(t, err)
		if err != nil {
			return
		}
		if string(reason) != req.GetReason() {
			t.Fatalf("accepted reason %q as %q", req.GetReason(), reason)
		}
		checkDetail(t, req.GetDetail())
	})
}

// FuzzValidateReportSatOut: the ReportSatOut check never panics, refuses
// with InvalidArgument only, and what it accepts has a reason of 1 to 64
// bytes of [a-z0-9_] and a detail of at most maxRefusalDetail bytes of
// printable UTF-8, which is what goes into the logs, the audit log, the
// status page and the manifest.
func FuzzValidateReportSatOut(f *testing.F) {
	protofuzz.Seed(f,
		&fedguardv1.ReportSatOutRequest{Round: 3, Attempt: 1, Reason: "trainer_crash", Detail: "exit status 3: CUDA out of memory"},
		&fedguardv1.ReportSatOutRequest{Reason: "Trainer crash"},
		&fedguardv1.ReportSatOutRequest{Reason: strings.Repeat("a", 65)},
		&fedguardv1.ReportSatOutRequest{Reason: "trainer_timeout", Detail: "a\x1b[31mred\r\nforged log line"},
		&fedguardv1.ReportSatOutRequest{Reason: "trainer_output", Detail: strings.Repeat("x", maxRefusalDetail+1)},
		&fedguardv1.ReportSatOutRequest{Reason: "trainer_crash", Detail: "see log\u202egol.exe\u2028forged"},
	)
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.ReportSatOutRequest) {
		err := validateReportSatOutRequest(req)
		invalidArgument(t, err)
		if err != nil {
			return
		}
		r := req.GetReason()
		if len(r) < 1 || len(r) > 64 || strings.IndexFunc(r, func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') }) >= 0 {
			t.Fatalf("accepted reason %q", r)
		}
		checkDetail(t, req.GetDetail())
	})
}

// FuzzValidateUpdateHeader: the check of an update stream's first message
// never panics, refuses with InvalidArgument only, and what it accepts is
// a header of the model's format and width, a sample count in
// [1, MaxSamples], digests of the right sizes, and a holdout evaluation
// and privacy ledger whose numbers are finite and in range, which is what
// the audit log and the manifest record of an accepted update.
func FuzzValidateUpdateHeader(f *testing.F) {
	spec := model.Spec{Kind: model.LogReg, Features: 3, Classes: 2}
	n := uint64(spec.NumParams())
	protofuzz.Seed(f,
		&fedguardv1.SubmitUpdateRequest{Round: 1, FormatVersion: model.FormatVersion, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: n, SampleCount: 10, Sha256: make([]byte, 32), DataSha256: make([]byte, 32),
			Holdout: &fedguardv1.Evaluation{Loss: 0.5, Accuracy: 0.9, Count: 4},
			Privacy: &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5, Budget: 8},
		}}},
		&fedguardv1.SubmitUpdateRequest{FormatVersion: model.FormatVersion, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: n, SampleCount: MaxSamples + 1, Sha256: make([]byte, 31),
			Holdout: &fedguardv1.Evaluation{Loss: math.NaN(), Accuracy: 2},
		}}},
		&fedguardv1.SubmitUpdateRequest{Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: 0, Data: []byte{1, 2, 3, 4}}}},
	)
	s := &service{c: &Coordinator{spec: spec}}
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.SubmitUpdateRequest) {
		h, err := s.validateUpdateHeader(req)
		if err == nil && h == nil {
			t.Fatal("validateUpdateHeader accepted no header")
		}
		invalidArgument(t, err)
		if err != nil {
			return
		}
		if req.GetFormatVersion() != model.FormatVersion || h.GetNumParams() != n ||
			h.GetSampleCount() == 0 || h.GetSampleCount() > MaxSamples ||
			len(h.GetSha256()) != 32 || (len(h.GetDataSha256()) != 0 && len(h.GetDataSha256()) != 32) {
			t.Fatalf("accepted header %v of format %d", h, req.GetFormatVersion())
		}
		if ev := h.GetHoldout(); ev != nil {
			if l, a := ev.GetLoss(), ev.GetAccuracy(); !(l >= 0) || math.IsInf(l, 0) || !(a >= 0 && a <= 1) || ev.GetCount() > MaxSamples {
				t.Fatalf("accepted holdout %v", ev)
			}
		}
		if p := h.GetPrivacy(); p != nil {
			if e, d := p.GetEpsilon(), p.GetDelta(); !(e >= 0) || math.IsInf(e, 0) || !(d > 0 && d < 1) {
				t.Fatalf("accepted privacy ledger %v", p)
			}
		}
	})
}
