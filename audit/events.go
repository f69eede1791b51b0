package audit

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/manifest"
)

// Event kinds. The payload of each kind is the struct named after it below,
// and kindTable says who writes it and how the report and the metrics
// render it; a kind's payload only ever gains fields, so old exports stay
// readable.
const (
	KindCoordinatorStarted  = "coordinator_started"
	KindCoordinatorStopped  = "coordinator_stopped"
	KindConfigLoaded        = "config_loaded"
	KindEnrolment           = "enrolment"
	KindCertificateIssued   = "certificate_issued"
	KindCertificateAccepted = "certificate_accepted"
	KindCertificateRevoked  = "certificate_revoked"
	KindConnectionRefused   = "connection_refused"
	KindStatsReceived       = "stats_received"
	KindScalingFixed        = "scaling_fixed"
	KindRoundOpened         = "round_opened"
	KindCohort              = "cohort"
	KindModelPublished      = "model_published"
	KindUpdateReceived      = "update_received"
	KindUpdateRefused       = "update_refused"
	KindAggregationReport   = "aggregation_report"
	KindRoundFailed         = "round_failed"
	KindRoundClosed         = "round_closed"
	KindManifestSigned      = "manifest_signed"
	KindManifestRefused     = "manifest_refused"
	KindSecureSession       = "secure_session"
	KindSecureDeclined      = "secure_declined"
	KindAnomalyFlagged      = "anomaly_flagged"
	KindDataValidation      = "data_validation"
	KindCallRefused         = "call_refused"
	KindEventsSuppressed    = "events_suppressed"
	KindKeyRotated          = "key_rotated"
	KindRoundSatOut         = "round_sat_out"
	KindPrivacySpent        = "privacy_spent"
	KindPrivacyExhausted    = "privacy_exhausted"
)

// ActorCoordinator is the actor of every event the coordinator causes on
// its own; events caused by a participant name the participant.
const ActorCoordinator = "coordinator"

// ActorCA is the actor of the events in a federation CA's own audit log
// (certificates issued and revoked by `fedguard ca`).
const ActorCA = "ca"

// kindTable is the table of event kinds: one row per Kind constant, in
// their order (see KindSpec, and "Event kinds" in the package
// documentation for how to add one). A timeline row's function renders the
// event's line in the provenance report's timeline.
var kindTable = []KindSpec{
	timeline(KindCoordinatorStarted, WriterCoordinator, false, func(_ Event, p CoordinatorStarted) string {
		return fmt.Sprintf("version %s, federation %s, resuming after round %d", p.Version, p.Federation, p.LastRound)
	}),
	timeline(KindCoordinatorStopped, WriterCoordinator, false, func(_ Event, p CoordinatorStopped) string { return p.Reason }),
	timeline(KindConfigLoaded, WriterCoordinator, false, func(_ Event, p ConfigLoaded) string {
		agg := string(p.Aggregation)
		var buf bytes.Buffer
		if err := json.Compact(&buf, p.Aggregation); err == nil {
			agg = buf.String()
		}
		agg = cmp.Or(agg, "(none)")
		return fmt.Sprintf("configuration sha256 %s: aggregation %s, at least %d participants, %d rounds, secure aggregation %t",
			p.SHA256, agg, p.MinParticipants, p.Rounds, p.Secure)
	}),
	timeline(KindEnrolment, WriterCoordinator, false, func(_ Event, p Enrolment) string {
		d := fmt.Sprintf("%d enrolled: %s", len(p.Enrolled), listOrNone(p.Enrolled))
		if len(p.Added) > 0 {
			d += "; added " + strings.Join(p.Added, ", ")
		}
		if len(p.Removed) > 0 {
			d += "; removed " + strings.Join(p.Removed, ", ")
		}
		return d
	}),
	timeline(KindCertificateIssued, WriterCA, false, func(_ Event, p CertificateIssued) string {
		return fmt.Sprintf("certificate serial %s (sha256 %s) issued to %s, valid %s to %s",
			p.Serial, p.SHA256, p.Identity, p.NotBefore, p.NotAfter)
	}),
	timeline(KindCertificateAccepted, WriterCoordinator, false, func(_ Event, p CertificateAccepted) string {
		return fmt.Sprintf("%s connected with certificate serial %s (sha256 %s), valid %s to %s",
			p.Participant, p.Serial, p.SHA256, p.NotBefore, p.NotAfter)
	}),
	timeline(KindCertificateRevoked, WriterCoordinator|WriterCA, false, func(_ Event, p CertificateRevoked) string {
		d := fmt.Sprintf("serial %s revoked at %s", p.Serial, p.RevokedAt)
		if p.Identity != "" {
			d += " (" + p.Identity + ")"
		}
		return d
	}),
	placed[ConnectionRefused](KindConnectionRefused, WriterCoordinator, true, SectionCounted),
	timeline(KindStatsReceived, WriterCoordinator, true, func(_ Event, p StatsReceived) string {
		d := fmt.Sprintf("feature statistics over %d rows, %d features: %s", p.Rows, p.Features, listOrNone(p.Aggregates))
		if p.SHA256 != "" {
			d += ", sha256 " + p.SHA256
		}
		return d
	}),
	timeline(KindScalingFixed, WriterCoordinator, false, func(_ Event, p ScalingFixed) string {
		d := fmt.Sprintf("feature scaling sha256 %s fixed from %d rows of %s", p.SHA256, p.Rows, listOrNone(p.Participants))
		if p.Rule != "" {
			d += " by " + p.Rule
		}
		for _, cl := range p.Clipped {
			d += fmt.Sprintf("; %s clipped in %d features", cl.Participant, cl.Features)
		}
		return d
	}),
	placed[RoundOpened](KindRoundOpened, WriterCoordinator, false, SectionRound),
	placed[Cohort](KindCohort, WriterCoordinator, false, SectionRound),
	placed[ModelPublished](KindModelPublished, WriterCoordinator, false, SectionRound),
	placed[UpdateReceived](KindUpdateReceived, WriterCoordinator, false, SectionRound),
	placed[UpdateRefused](KindUpdateRefused, WriterCoordinator, true, SectionRound),
	placed[AggregationReport](KindAggregationReport, WriterCoordinator, false, SectionRound),
	placed[RoundFailed](KindRoundFailed, WriterCoordinator, false, SectionRound),
	placed[RoundClosed](KindRoundClosed, WriterCoordinator, false, SectionRound),
	placed[ManifestSigned](KindManifestSigned, WriterCoordinator, false, SectionRound),
	placed[ManifestRefused](KindManifestRefused, WriterCoordinator, true, SectionByPosition),
	placed[SecureSession](KindSecureSession, WriterCoordinator, false, SectionRound),
	placed[SecureDeclined](KindSecureDeclined, WriterCoordinator, false, SectionRound),
	timeline(KindAnomalyFlagged, WriterCoordinator, false, func(ev Event, p AnomalyFlagged) string {
		what := "update"
		if p.Feature != "" {
			what = "data statistics"
		}
		d := fmt.Sprintf("round %d attempt %d: %s's %s flagged (%s): value %.6g", ev.Round, p.Attempt, p.Participant, what, p.Kind, p.Value)
		if p.Feature != "" {
			d += fmt.Sprintf(" at feature %s (variance ratio %.3g)", p.Feature, p.VarianceRatio)
		}
		if len(p.Band) == 2 {
			d += fmt.Sprintf(" outside [%.6g, %.6g]", p.Band[0], p.Band[1])
		}
		return d
	}),
	timeline(KindDataValidation, WriterCoordinator, true, func(_ Event, p DataValidation) string { return describeValidation(p) }),
	timeline(KindCallRefused, WriterCoordinator, true, func(_ Event, p CallRefused) string {
		return fmt.Sprintf("%s refused (%s): %s", p.Method, p.Code, p.Reason)
	}),
	timeline(KindEventsSuppressed, WriterCoordinator, false, func(_ Event, p EventsSuppressed) string {
		who := cmp.Or(p.Participant, "callers without a verified identity")
		kinds := slices.Sorted(maps.Keys(p.Kinds))
		for i, k := range kinds {
			kinds[i] = fmt.Sprintf("%s %d", k, p.Kinds[k])
		}
		return fmt.Sprintf("%d events of %s beyond the per-minute limit, counted not listed (%s), %s to %s",
			p.Total, who, strings.Join(kinds, ", "), p.Since, p.Until)
	}), timeline(KindKeyRotated, WriterCoordinator, false, func(_ Event, p KeyRotated) string {
		return fmt.Sprintf("signing keys rotated (rotation %d, after round %d): %s to %s, rotation manifest sha256 %s",
			p.Seq, p.AfterRound, p.OldFingerprint, p.NewFingerprint, p.SHA256)
	}),
	timeline(KindRoundSatOut, WriterCoordinator, true, func(ev Event, p RoundSatOut) string {
		return fmt.Sprintf("round %d attempt %d sat out (%s): %s", ev.Round, p.Attempt, p.Reason, p.Detail)
	}),
	timeline(KindPrivacySpent, WriterCoordinator, false, func(ev Event, p PrivacySpent) string { return describePrivacy(ev, p) }),
	timeline(KindPrivacyExhausted, WriterCoordinator, false, func(ev Event, p PrivacyExhausted) string {
		return fmt.Sprintf("round %d not opened: %s would reach ε = %.4g > budget %.4g at δ = %g", ev.Round, p.Mechanism, p.Epsilon, p.Budget, p.Delta)
	}),
}

// CoordinatorStarted records a start of the coordinator process.
type CoordinatorStarted struct {
	Version    string `json:"version"`
	Federation string `json:"federation"`
	// LastRound is the last closed round the coordinator resumed from.
	LastRound uint64 `json:"last_round"`
}

// CoordinatorStopped records an orderly stop.
type CoordinatorStopped struct {
	Reason string `json:"reason"`
}

// ConfigLoaded records the configuration a coordinator runs with: its
// digest (SHA-256 of the file's bytes) and the settings that shape a model.
type ConfigLoaded struct {
	SHA256          string          `json:"sha256"`
	MinParticipants int             `json:"min_participants"`
	Rounds          int             `json:"rounds"`
	Aggregation     json.RawMessage `json:"aggregation"`
	Secure          bool            `json:"secure,omitempty"`
}

// Enrolment records the enrolled participants, with the changes since the
// previous enrolment event.
type Enrolment struct {
	Enrolled []string `json:"enrolled"`
	Added    []string `json:"added,omitempty"`
	Removed  []string `json:"removed,omitempty"`
}

// CertificateAccepted records the first connection made with a
// certificate: which certificate a participant used, and when it expires.
type CertificateAccepted struct {
	Participant string `json:"participant"`
	Serial      string `json:"serial"`
	SHA256      string `json:"sha256"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
}

// CertificateIssued records a certificate the federation CA issued, in
// the CA's own audit log: the register of who may connect, and until when.
type CertificateIssued struct {
	Identity  string `json:"identity"`
	Serial    string `json:"serial"`
	SHA256    string `json:"sha256"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
}

// CertificateRevoked records a revoked serial: in the CA's log when it is
// revoked (with the identity), in the coordinator's when the coordinator
// first loads a revocation list that names it.
type CertificateRevoked struct {
	Serial    string `json:"serial"`
	RevokedAt string `json:"revoked_at"`
	Identity  string `json:"identity,omitempty"`
}

// ConnectionRefused records a refused TLS handshake. Suppressed counts the
// refusals dropped since the previous event by the rate limit, so a flood
// of bad connections cannot flood the log.
type ConnectionRefused struct {
	Reason     string `json:"reason"`
	Remote     string `json:"remote"`
	Serial     string `json:"serial,omitempty"`
	Subject    string `json:"subject,omitempty"`
	Suppressed uint64 `json:"suppressed,omitempty"`
}

// CallRefused records a call the coordinator refused after the TLS
// handshake (a revoked certificate, a malformed or untimely request, a
// quota, a full disk), other than a refused update (UpdateRefused); the
// actor is the caller, or the coordinator when the call carried no
// verified identity. Serial is the caller's certificate serial (hex) when
// it was refused for a revoked certificate.
type CallRefused struct {
	Method string `json:"method"`
	// Code is the gRPC status code name, Reason its message.
	Code   string `json:"code"`
	Reason string `json:"reason"`
	Serial string `json:"serial,omitempty"`
}

// EventsSuppressed records what the per-identity limit of audited events
// left out of the log in one window: how many events of each kind
// Participant's calls caused beyond the limit (calls refused for the
// quota included). It is written when the window ends and when the
// coordinator stops, so no count is lost. Participant is empty for
// connections refused before any identity was verified.
type EventsSuppressed struct {
	Participant string            `json:"participant,omitempty"`
	Kinds       map[string]uint64 `json:"kinds"`
	Total       uint64            `json:"total"`
	Since       string            `json:"since"`
	Until       string            `json:"until"`
}

// StatsReceived lists the aggregate statistics a participant sent: only
// counts and per-feature sums leave a hospital, never rows.
type StatsReceived struct {
	Rows     uint64 `json:"rows"`
	Features int    `json:"features"`
	// Aggregates names the aggregates sent, for the record.
	Aggregates []string `json:"aggregates"`
	// SHA256 is the digest of the statistics as sent (dataset.Stats.Digest),
	// not the values: the hospital that kept its statistics can show they
	// are the ones recorded, and those of a hospital the scaling clipped
	// are pinned to its name.
	SHA256 string `json:"sha256,omitempty"`
}

// ScalingFixed records the federation-wide feature standardization.
type ScalingFixed struct {
	Participants []string `json:"participants"`
	Rows         uint64   `json:"rows"`
	SHA256       string   `json:"sha256"`
	// Rule names how the participants' statistics were combined; empty in
	// logs older than the rule ("pooled").
	Rule string `json:"rule,omitempty"`
	// Clipped lists the participants whose moments lay outside the robust
	// band in some features and were clipped to it, with how many.
	Clipped []ScalingClip `json:"clipped,omitempty"`
}

// ScalingClip names a participant whose statistics the robust scaling
// clipped, and in how many features.
type ScalingClip struct {
	Participant string `json:"participant"`
	Features    int    `json:"features"`
}

// RoundOpened records the opening of a round attempt.
type RoundOpened struct {
	Attempt  uint32 `json:"attempt"`
	Deadline string `json:"deadline"`
}

// Cohort records who was asked to train in a round attempt.
type Cohort struct {
	Attempt uint32   `json:"attempt"`
	Members []string `json:"members"`
}

// ModelPublished records the model a round trains on (the global model of
// the previous round) and the manifest that vouches for it.
type ModelPublished struct {
	ModelRound     uint64 `json:"model_round"`
	ModelSHA256    string `json:"model_sha256"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// UpdateReceived records an accepted update; the actor is the participant.
type UpdateReceived struct {
	Attempt         uint32  `json:"attempt"`
	SHA256          string  `json:"sha256"`
	Norm            float64 `json:"norm"`
	Samples         uint64  `json:"samples"`
	HoldoutCount    uint64  `json:"holdout_count"`
	HoldoutAccuracy float64 `json:"holdout_accuracy"`
	// DataSHA256 is the data version the update was trained on (package
	// lineage); omitted when the participant reported none.
	DataSHA256 string `json:"data_sha256,omitempty"`
}

// UpdateRefused records a refused update; the actor is the participant.
type UpdateRefused struct {
	Attempt uint32 `json:"attempt"`
	// Code is the gRPC status code name, Reason its message.
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// AggregationReport records the robust rule's verdict: the rule's own
// report (scores, selections, exclusions) as it serializes.
type AggregationReport struct {
	Attempt uint32          `json:"attempt"`
	Rule    string          `json:"rule"`
	Report  json.RawMessage `json:"report"`
}

// RoundFailed records a round attempt that closed without a quorum.
type RoundFailed struct {
	Attempt uint32 `json:"attempt"`
	Reason  string `json:"reason"`
	Updates int    `json:"updates"`
}

// SecureSession records how one bucket's secure aggregation ended. It
// names who was in the session at each step, never anything about one
// participant's update: the only vector the coordinator learned is the
// bucket's sum, whose digest is here.
type SecureSession struct {
	Attempt uint32   `json:"attempt"`
	Bucket  int      `json:"bucket"`
	Members []string `json:"members"`
	// Survivors are the members whose masked input is in the sum.
	Survivors []string `json:"survivors,omitempty"`
	// Dropped maps a member that left the session to the phase it left in.
	Dropped map[string]string `json:"dropped,omitempty"`
	// SumSHA256 is the digest of the unmasked sum (words, little endian).
	SumSHA256 string `json:"sum_sha256,omitempty"`
	// Weight is the total weight of the survivors' updates.
	Weight uint64 `json:"weight,omitempty"`
	// DataSHA256 maps each survivor that reported a data version with its
	// masked input to it (package lineage): a secure round's counterpart
	// of update_received's data_sha256.
	DataSHA256 map[string]string `json:"data_sha256,omitempty"`
	// Privacy maps each survivor that reported a record-level privacy
	// ledger with its masked input to it (its own claim), as
	// update_received's counterpart in the manifest.
	Privacy map[string]manifest.HospitalPrivacy `json:"privacy,omitempty"`
	// DistributedPrivacy maps each survivor that reported a
	// federation-level (distributed DP) ledger with its masked input to it
	// (its own claim).
	DistributedPrivacy map[string]manifest.HospitalDistributedPrivacy `json:"distributed_privacy,omitempty"`
	// Error says why the session failed; empty when it completed.
	Error string `json:"error,omitempty"`
}

// SecureDeclined records a participant sitting a secure round out, and
// why; the actor is the participant.
type SecureDeclined struct {
	Attempt uint32 `json:"attempt"`
	Reason  string `json:"reason"`
}

// RoundClosed records a committed round: the new global model's digest.
type RoundClosed struct {
	Attempt      uint32   `json:"attempt"`
	ModelSHA256  string   `json:"model_sha256"`
	Participants []string `json:"participants"`
	Dropped      []string `json:"dropped,omitempty"`
	// Recovered marks an event written at start-up for a round whose
	// commit outlived a crash that the event did not.
	Recovered bool `json:"recovered,omitempty"`
}

// ManifestSigned records a signed round manifest, whole, so that an
// auditor can check its signatures from the export alone.
type ManifestSigned struct {
	SHA256   string          `json:"sha256"`
	Envelope json.RawMessage `json:"envelope"`
}

// KeyRotated records a rotation of the coordinator's signing keys
// (`fedguard coordinator rotate-keys`), with the rotation manifest itself:
// signed by both the old and the new keys, it is what lets an auditor who
// holds only the old public key check the checkpoints signed after it
// (see "Key rotation" in the package documentation). The checkpoint that
// covers this event is the last one the old keys sign.
type KeyRotated struct {
	Seq            uint64          `json:"seq"`
	OldFingerprint string          `json:"old_fingerprint"`
	NewFingerprint string          `json:"new_fingerprint"`
	AfterRound     uint64          `json:"after_round"`
	SHA256         string          `json:"sha256"`
	Envelope       json.RawMessage `json:"envelope"`
}

// RoundSatOut records that a participant sat out a round it was assigned
// and why (ReportSatOut: its trainer failed); the actor is the participant
// and Round the round. Reason is a stable token (trainer_crash, …), Detail
// the agent's error message (at most 1 KiB).
type RoundSatOut struct {
	Attempt uint32 `json:"attempt"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

// ManifestRefused records a participant's refusal of a manifest; the actor
// is the participant.
type ManifestRefused struct {
	ManifestRound uint64 `json:"manifest_round"`
	Reason        string `json:"reason"`
	Detail        string `json:"detail"`
}

// DataValidation records a participant's check of its data file before a
// round (package validation); the actor is the participant. It holds
// everything the participant sent about its data, and so lists exactly
// which aggregates left the hospital: the row and column counts and, per
// finding, a count of cells, rows or sampled values out of a total, and,
// when the participant sent them for drift monitoring, the aggregates of
// its training rows named in FeatureStats. No cell value, row number or
// unnamed column header is in it.
type DataValidation struct {
	Attempt uint32 `json:"attempt"`
	// Mode is "warn" or "enforce"; Training is false when enforce mode
	// found errors and the participant sat the round out.
	Mode     string `json:"mode"`
	Training bool   `json:"training"`
	Rows     uint64 `json:"rows"`
	Columns  uint32 `json:"columns"`
	// Findings are as reported; empty when the data met the expectations.
	Findings []ValidationFinding `json:"findings"`
	// FeatureStats lists the per-feature aggregates of the training rows
	// that came with the report (as in StatsReceived: their row count, the
	// number of features and the aggregates' names); absent when none came.
	FeatureStats *StatsReceived `json:"feature_stats,omitempty"`
}

// ValidationFinding is one finding of a DataValidation: Count of Total
// cells, rows or sampled values of Column broke Rule.
type ValidationFinding struct {
	// Column is empty for a column the expectations file does not name.
	Column   string `json:"column"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Count    uint64 `json:"count"`
	Total    uint64 `json:"total"`
}

// AnomalyFlagged records that a participant's update of a round, or the
// feature statistics of its data, left the band the coordinator's anomaly
// monitoring expects (see package coordinator, "Metrics and anomaly
// flags"). Its Round is the round's number, its actor the coordinator.
type AnomalyFlagged struct {
	Attempt     uint32 `json:"attempt"`
	Participant string `json:"participant"`
	// Kind is "norm", "cosine", "excluded" or "drift".
	Kind string `json:"kind"`
	// Value is the measured value: the norm, the cosine similarity to the
	// aggregate, the rule's score, or (drift) the largest standardized
	// mean shift over the features, |mean − reference mean| / reference
	// std.
	Value float64 `json:"value"`
	// Band is the [low, high] interval Value was expected in; empty for
	// "excluded".
	Band []float64 `json:"band,omitempty"`
	// Feature names the feature of the largest shift (drift only).
	Feature string `json:"feature,omitempty"`
	// VarianceRatio is that feature's variance over the reference
	// variance (drift only).
	VarianceRatio float64 `json:"variance_ratio,omitempty"`
}

// PrivacySpent records a round's differential-privacy record, the one
// the round's manifest carries (manifest.Privacy, embedded so that its
// fields stand beside Attempt in the payload): the federation-level
// mechanism, its parameters and the ε spent by every round so far, and
// the record-level and federation-level ledgers the included hospitals
// reported (their own claims). It is written with the round's verdict,
// before the manifest is signed.
type PrivacySpent struct {
	Attempt uint32 `json:"attempt"`
	manifest.Privacy
}

// PrivacyExhausted records a round the coordinator did not open because
// its federation-level mechanism would take ε past the configured budget.
type PrivacyExhausted struct {
	Mechanism string  `json:"mechanism"`
	Epsilon   float64 `json:"epsilon"`
	Budget    float64 `json:"budget"`
	Delta     float64 `json:"delta"`
}

// describePrivacy is the timeline line of a privacy_spent event.
func describePrivacy(ev Event, p PrivacySpent) string {
	var parts []string
	if p.Mechanism != "" {
		parts = append(parts, fmt.Sprintf("%s: ε = %.4g at δ = %g", p.Mechanism, p.Epsilon, p.Delta))
	}
	for _, h := range p.Hospitals {
		s := fmt.Sprintf("%s ε = %.4g", h.Name, h.Epsilon)
		if h.Budget > 0 {
			s += fmt.Sprintf(" of %.4g", h.Budget)
		}
		parts = append(parts, s)
	}
	for _, h := range p.HospitalsDistributed {
		s := fmt.Sprintf("%s federation-level ε = %.4g after %d releases", h.Name, h.Epsilon, h.Releases)
		if h.Budget > 0 {
			s += fmt.Sprintf(" of %.4g", h.Budget)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	return fmt.Sprintf("round %d attempt %d privacy: %s", ev.Round, p.Attempt, strings.Join(parts, "; "))
}
