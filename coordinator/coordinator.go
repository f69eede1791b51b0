// Package coordinator runs a federation's rounds: it admits participants
// over mutual TLS, publishes the global model, collects updates, aggregates
// them with the configured rule and persists every closed round in bbolt.
//
// # Rounds
//
// A federation first fixes its feature scaling from the participants'
// aggregate statistics (count, sum, sum of squares per feature; no rows).
// Then round r (r = 1, 2, …) opens once every enrolled participant is
// ready, or once MinParticipants are ready and CohortTimeout has passed;
// the ready participants form the cohort. Each trains on the global model
// of round r-1 and streams back its update. The round closes when the whole
// cohort has answered or RoundTimeout passes: with at least MinParticipants
// updates the rule aggregates them and the new model and the round record
// are committed in one bbolt transaction before round r+1 is announced;
// with fewer the round is retried (same number, next attempt). Updates that
// arrive after the close are refused with FailedPrecondition, as are those
// that arrive while the rule runs: the rule, the signature and the commit
// run outside the coordinator's lock, so every RPC keeps answering while a
// robust rule works through a large cohort (closeRoundLocked).
//
// # Feature scaling
//
// Each hospital's statistics must be ones some data could have
// (dataset.CheckStats: finite moments, Σx² ≥ (Σx)²/n) or ReportStats
// refuses them. They are then combined by the robust rule of
// dataset.RobustScaling (scalingRule in the audit log), not pooled as
// sent: weights are row counts capped at the median hospital's, the
// per-feature centre and spread are weighted medians over the hospitals,
// and each hospital's mean and variance are clipped to a band of
// dataset.ClipBand (4) spreads around that centre before they are
// pooled. So with three or more hospitals reporting, one hospital,
// whatever it sends,
// moves the scaling by at most a few honest spreads (with two, each is
// bounded only by the other's band). The scaling_fixed event names the
// hospitals that were clipped, and each stats_received event carries the
// digest of the statistics as sent, so a bad one can be named and shown.
//
// What the statistics reveal, in plain and secure mode alike: ReportStats
// is not secure-aggregated (the robust rule needs each hospital's
// moments), so the coordinator learns each hospital's row count and, per
// feature, its mean and variance. Nothing finer (no row, no quantile) is
// sent. The coordinator keeps them in memory only until the scaling is
// fixed (and, derived from them, each hospital's drift reference: the
// robust scaling of the other hospitals' statistics, until it stops) and
// never writes them: the audit log holds the row count and a
// SHA-256 digest (which reveals nothing about the values to a reader who
// cannot guess them exactly), the state database only the pooled scaling,
// and other hospitals only ever see the pooled scaling. So per-hospital
// moments are protected from other hospitals and from readers of the
// log, as updates are in secure mode, but not from the coordinator
// itself, unlike secure updates.
//
// # Secure rounds
//
// With Config.Secure the coordinator never sees an update: each round runs
// SecAgg+ (package aggregation/secagg) over SecureAggregate streams, one
// session per bucket laid out by package secureround from the manifest the
// round starts from, and the rule (without its pre-steps) runs over the
// bucket means. Sessions tolerate dropouts down to their threshold; a round
// whose sessions leave fewer than MinParticipants inputs, or too few sums
// for the rule, is retried. Records, audit events and manifests hold sums
// and membership only (see secure.go).
//
// # Restarts
//
// Only closed rounds are persisted. A coordinator killed at any point
// (SIGKILL included) restarts from the last closed round; participants
// reconnect on their own and the open round starts again. In a secure
// federation the coordinator also records each attempt and its cohort
// before anyone hears of it, and a restarted coordinator offers that very
// attempt again to the same cohort: the participants resume its sessions
// where they were, so a crash at any phase, even after the hospitals
// revealed their shares, costs no hospital its round (see retry.go and
// package participant).
//
// A failed attempt is retried after an exponential backoff with jitter
// (1 s doubling to 5 min). Participants that declined a secure round as
// already revealed are left out of its later attempts; when too few are
// left, or after three identical failures in a row with the same cohort,
// the round is wedged: no attempt opens (until a participant joins again,
// in the second case), the status page and fedguard_round_wedged say so,
// and nothing is appended to the audit log meanwhile (retry.go).
//
// Before it restarts, the coordinator checks both of its files page by
// page, verifies the whole audit log and checks that the two agree, and refuses to start on a
// damaged, missing or empty file, or on a pair that tells two histories
// (see startup.go); only WithInit makes a new federation, and only in a
// directory that holds neither file.
//
// # Integrity and audit
//
// The coordinator signs every model it publishes: the initial model's
// manifest when the feature scaling is fixed, and each round's when the
// round closes (package manifest; keys in the data directory, made on
// `fedguard coordinator --init` or --init-keys). A manifest is
// committed in the same transaction as its model and is sent with every
// assignment; GetManifest serves older ones so that a participant that
// missed rounds can check the chain.
//
// Every state-changing step is appended to the audit log (package audit,
// DATA_DIR/audit.db) and is durable before it is acknowledged: an update is
// recorded before SubmitUpdate returns, a round's verdict and new model
// before the round is committed, the round's opening before anyone is told.
// After each round the log is checkpointed and the checkpoint goes into the
// manifest. A federation with signed rounds refuses to start without its
// signing key or its audit log, rather than start a second history.
//
// # Metrics and anomaly flags
//
// Each Coordinator keeps its metrics in its own Prometheus registry
// (Gatherer), served over plain HTTP at /metrics, beside /healthz, when
// Config.MetricsListen is set. Its own metrics are named fedguard_* (the
// standard go_* and process_* ones sit beside them), and no label ever
// holds a participant's name (the label sets are fixed: failure
// classes, gRPC codes, certificate refusal reasons, audit event kinds,
// phases, anomaly kinds). When a plain round closes, each update is
// flagged if its L2 norm lies more than AnomalyConfig.NormMADs median
// absolute deviations from the cohort's median norm, if its cosine
// similarity to the aggregate is below AnomalyConfig.CosineFloor, or if
// the rule excluded it; each flag is an anomaly_flagged audit event
// (AnomalyFlagged) recorded with the round's verdict and counted in
// fedguard_anomaly_flags_total{kind}. Flags change nothing in the round.
// Secure rounds are not monitored: the coordinator never sees their
// updates. deploy/ holds a Grafana dashboard and Prometheus alert rules
// over these metrics.
//
// # Status page
//
// The same listener serves a read-only page for operators at /status (and
// the same Status as JSON at /status.json): the round and its phase,
// inline SVG charts of the last StatusChartRounds rounds (accuracy, loss,
// each participant's update norm with its band, flags), each
// enrolled participant's last status, the recent anomaly flags,
// exclusions and secure sessions (the last StatusKeep of each), and the
// audit log's head and last checkpoint. It is plain HTML with no script,
// under a Content-Security-Policy that allows nothing else, and never
// shows an update's values (see status.go).
//
// # Errors on the wire
//
// Requests are validated at the gRPC edge: a malformed request or update is
// InvalidArgument, an update for a round that is not open (or from outside
// the cohort) is FailedPrecondition, a second update from the same
// participant is AlreadyExists, a revoked or unenrolled caller is
// PermissionDenied (also ending its running calls, revoke.go), a caller
// past its quota of audited events, or any caller while the disk is
// nearly full, is ResourceExhausted (quota.go, disk.go). A refused update
// changes nothing. Every refusal is one warning in the text log and one
// audit event (update_refused or call_refused), or, beyond the caller's
// quota, part of one events_suppressed count.
package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// RoundResult is what an observer learns when a round closes.
type RoundResult struct {
	Record RoundRecord
	// Model is the new global model (a copy the observer may keep).
	Model []float32
	Spec  model.Spec
	// Scaling is the federation's feature standardization.
	Scaling  dataset.Scaling
	Duration time.Duration
	// Flags are the round's anomaly flags (plain rounds only), as
	// recorded in the audit log.
	Flags []audit.AnomalyFlagged
}

// Option configures a Coordinator.
type Option func(*options)

type options struct {
	log      *slog.Logger
	observer func(RoundResult)
	now      func() time.Time
	init     bool // create a new federation if the data directory holds none
}

// WithLogger sets the structured logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithObserver calls f, from the coordinator's round loop, after each round
// is committed. The demo uses it to evaluate the global model on held-out
// data. f runs while the coordinator's state is locked: it must be quick and
// must not call the Coordinator.
func WithObserver(f func(RoundResult)) Option { return func(o *options) { o.observer = f } }

type phase int

const (
	phaseStats phase = iota
	phaseCohort
	phaseTraining
	phaseFinished
)

func (p phase) String() string {
	return [...]string{"stats", "cohort", "training", "finished"}[p]
}

// received is one accepted update of the open round.
type received struct {
	delta   []float32
	samples uint64
	norm    float64
	sum     [32]byte
	holdout *fedguardv1.Evaluation
	data    string                    // the data version (hex), "" if not reported
	privacy *manifest.HospitalPrivacy // its record-level ledger, nil if not reported
}

// openRound is the round in progress (never persisted).
type openRound struct {
	number   uint64
	attempt  uint32
	opened   time.Time
	deadline time.Time
	cohort   []string
	updates  map[string]*received
	// receiving marks participants with an update stream in flight, so one
	// participant cannot make the coordinator buffer several updates.
	receiving map[string]bool
	// refused holds the reason of each cohort member's last refused update.
	refused map[string]string
	// satOut holds the reason of each cohort member that said it sits the
	// round out (ReportSatOut); such a member sends no update.
	satOut map[string]string
	// secure is set in a secure round.
	secure *secureRound
	// spill is the attempt's spill file in a plain round that spills its
	// updates (spill.go), nil otherwise. It is removed when the attempt
	// ends: committed, failed or abandoned.
	spill *spillFile
	// closing is set once the round loop has taken the round's updates to
	// aggregate them, outside c.mu (closeRoundLocked): from then on the
	// round accepts nothing, as if it were closed already.
	closing bool
}

// wants reports whether name should be given the round: it is in the
// cohort and has not yet taken part in this attempt.
func (r *openRound) wants(name string) bool {
	if r.closing || !r.inCohort(name) || r.updates[name] != nil || r.satOut[name] != "" {
		return false
	}
	return r.secure == nil || !r.secure.joined[name]
}

func (r *openRound) inCohort(name string) bool { return slices.Contains(r.cohort, name) }

// Coordinator is one federation's coordinator.
type Coordinator struct {
	cfg       Config
	spec      model.Spec
	specProto *fedguardv1.ModelSpec
	rule      aggregation.Rule
	// secureRule aggregates bucket means in secure rounds.
	secureRule aggregation.Rule
	// dp is the federation's distributed DP, nil without (dp.go).
	dp        *federationDP
	store     stateStore
	opts      options
	enrolled  map[string]bool
	signer    *manifest.Signer
	keys      io.Closer // the PKCS #11 token of signer's key; nil for files
	audit     *audit.Log
	certs     certSeen
	quota     eventQuota
	disk      diskGuard
	live      liveCalls
	revokedMu sync.Mutex // serializes recordRevocations
	metrics   *metrics
	limits    *perIdentity
	// vecs are the model-sized vectors of updates and aggregates, reused
	// across rounds (buffers.go).
	vecs *vectors
	// spills is whether plain rounds spill their updates (spill.go).
	spills bool

	// keyring is every identity the coordinator signed with (key
	// rotation), and rotations the rotations that lead to signer's.
	keyring   manifest.Keyring
	rotations []manifest.VerifiedRotation

	metricsMu   sync.Mutex
	metricsAddr string // bound metrics listener, while Serve runs

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change
	phase     phase
	lastRound uint64
	modelSum  [32]byte // SHA-256 of lastRound's model (kept in store) in wire format v1
	manifest  []byte   // signed manifest of lastRound; nil until the scaling is fixed
	scaling   *dataset.Scaling
	// driftRefs are the hospitals' drift references, each the robust
	// scaling of the others' statistics (anomaly.References): derived
	// from the statistics when the scaling is fixed, kept in memory only,
	// so after a restart drift is checked against scaling.
	driftRefs   map[string]dataset.Scaling
	stats       map[string]dataset.Stats
	statsSince  time.Time
	ready       map[string]int // participants blocked in WaitRound (count of calls)
	cohortSince time.Time
	attempt     uint32
	round       *openRound
	told        map[string]bool // participants told that training finished
	lastCohort  []string        // cohort of the last closed round
	status      statusBook      // what the status page shows beyond the above
	retry       retryState      // failed attempts of the next round (retry.go)
	central     *centralDP      // central DP's ledger; nil without central_dp (privacy.go)

	kick chan struct{}
}

// New validates cfg, opens the state database and the audit log, checks
// them and their agreement (see startup.go), and restores the last closed
// round. It creates a new federation only WithInit.
func New(cfg Config, opts ...Option) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o := options{log: slog.Default(), now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	for _, w := range cfg.Warnings() {
		o.log.Warn("configuration warning", "warning", w)
	}
	if cfg.Model.Kind == "tensors" && len(cfg.Model.Tensors) == 0 {
		// withDefaults takes the layout from initial_model's header; say
		// why it could not.
		if cfg.InitialModel == "" {
			return nil, fmt.Errorf("%w: model kind tensors needs initial_model, the file its layout and first values come from", ErrInitialModel)
		}
		if _, err := initialLayout(cfg.InitialModel); err != nil {
			return nil, err
		}
	}
	spec, err := cfg.spec()
	if err != nil {
		return nil, err
	}
	rule, err := aggregation.New(cfg.Aggregation)
	if err != nil {
		return nil, err
	}
	var secureRule aggregation.Rule
	if cfg.Secure {
		if secureRule, err = aggregation.New(cfg.secureRule()); err != nil {
			return nil, err
		}
	}
	specJSON, err := json.Marshal(cfg.Model)
	if err != nil {
		return nil, err
	}
	// The initial model is read before anything is written, so that a
	// refused file leaves no half-made federation behind.
	var initial []float32
	if o.init && cfg.InitialModel != "" {
		if initial, err = loadInitialModel(cfg.InitialModel, spec); err != nil {
			return nil, err
		}
	}
	mode, err := planStart(cfg.DataDir, o.init)
	if err != nil {
		return nil, err
	}
	dp, err := cfg.distributedDP()
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.DataDir, cfg.Federation, specJSON, mode)
	if err != nil {
		return nil, err
	}
	// Spill files left by a stopped coordinator belong to attempts that
	// are abandoned now.
	if err := cleanSpills(cfg.DataDir); err != nil {
		st.close()
		return nil, err
	}
	c := &Coordinator{
		dp:         dp,
		cfg:        cfg,
		spec:       spec,
		rule:       rule,
		secureRule: secureRule,
		store:      st,
		opts:       o,
		enrolled:   map[string]bool{},
		changed:    make(chan struct{}),
		stats:      map[string]dataset.Stats{},
		ready:      map[string]int{},
		told:       map[string]bool{},
		kick:       make(chan struct{}, 1),
		metrics:    newMetrics(),
		limits:     newPerIdentity(),
		status:     newStatusBook(cfg.Enrolled),
		spills:     spills(cfg),
	}
	c.metrics.reg.MustRegister(c.limits.collectors()...)
	c.logSpill()
	for _, n := range cfg.Enrolled {
		c.enrolled[n] = true
	}
	c.specProto = wire.SpecToProto(spec, cfg.Model.Features, cfg.Model.Label, cfg.Model.Classes)
	p, ok, err := st.load()
	if err != nil {
		st.close()
		return nil, err
	}
	if !ok {
		if !o.init {
			st.close()
			return nil, fmt.Errorf("%w: state.db holds no initial model: the --init that made it was interrupted; run the coordinator with --init again", ErrCorrupt)
		}
		if initial == nil {
			initial = model.Init(spec, rand.New(rand.NewPCG(cfg.Seed, 0x66656467756172)))
		}
		p.model = model.AppendBytes(nil, initial)
		if err := st.saveInitial(p.model); err != nil {
			st.close()
			return nil, fmt.Errorf("save initial model: %w", err)
		}
	}
	if len(p.model) != 4*spec.NumParams() {
		st.close()
		return nil, fmt.Errorf("%w: stored model has %d bytes, spec needs %d", ErrCorrupt, len(p.model), 4*spec.NumParams())
	}
	// The model stays on disk (GetModel and runClose read it from the
	// store chunk by chunk); it is decoded here once to check it.
	c.vecs = newVectors(spec.NumParams(), len(cfg.Enrolled)+1)
	check := c.vecs.get()
	if err := model.DecodeInto(check, p.model); err != nil {
		st.close()
		return nil, fmt.Errorf("%w: stored model of round %d: %v", ErrCorrupt, p.lastRound, err)
	}
	c.vecs.put(check)
	c.lastRound, c.scaling, c.lastCohort, c.manifest = p.lastRound, p.scaling, p.cohort, p.manifest
	c.modelSum = sha256.Sum256(p.model)
	c.certs.seen = map[string]bool{}
	c.signer, c.keys, c.audit, err = openIntegrity(cfg, o.now, p.manifest != nil, o.init)
	if err != nil {
		st.close()
		return nil, err
	}
	if c.keyring, c.rotations, err = loadKeyring(cfg.DataDir, c.signer.Public()); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := crossCheck(p, c.audit, c.keyring, cfg.Federation); err != nil {
		c.Close()
		return nil, err
	}
	if cp, ok, err := c.audit.LatestCheckpoint(); err == nil && ok {
		c.status.checkpoint = checkpointStatus(cp, time.Time{})
	}
	if err := c.recordStart(context.Background()); err != nil {
		c.Close()
		if isDiskFull(err) {
			return nil, fmt.Errorf("the data directory's disk is full (%s): free space there and start again: %w", cfg.DataDir, err)
		}
		return nil, err
	}
	switch {
	case c.lastRound >= uint64(cfg.Training.Rounds):
		c.phase = phaseFinished
	case c.scaling == nil:
		c.phase = phaseStats
	default:
		c.phase = phaseCohort
	}
	if c.central, err = c.loadCentralDP(); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.Secure && c.phase == phaseCohort {
		md, err := manifest.Digest(c.manifest)
		if err == nil {
			err = c.loadSecureAttempt(md)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	c.metrics.setState(c.phase, c.lastRound)
	c.metrics.diskMinFree.Set(float64(cfg.MinFreeBytes))
	if ok {
		o.log.Info("resumed from database", "round", c.lastRound, "phase", c.phase.String())
	}
	return c, nil
}

// Close releases the audit log, the state database and the signing key's
// token, if any.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.round != nil {
		c.dropSpill(context.Background(), c.round)
	}
	c.mu.Unlock()
	err := errors.Join(c.audit.Close(), c.store.close())
	if c.keys != nil {
		err = errors.Join(err, c.keys.Close())
	}
	return err
}

// Rounds returns the records of all closed rounds, oldest first.
//
// A round is listed once it is installed, not when its close is committed:
// the close commits outside c.mu and relocks to install, and in between
// GetModel, GetManifest and the status page still answer for the round
// before. Rounds never runs ahead of them.
func (c *Coordinator) Rounds() ([]RoundRecord, error) {
	c.mu.Lock()
	last := c.lastRound
	c.mu.Unlock()
	recs, err := c.store.rounds()
	if err != nil {
		return nil, err
	}
	for len(recs) > 0 && recs[len(recs)-1].Round > last {
		recs = recs[:len(recs)-1]
	}
	return recs, nil
}

// broadcastLocked wakes every waiter; c.mu must be held.
func (c *Coordinator) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
	round := c.lastRound
	if c.round != nil {
		round = c.round.number
	}
	c.metrics.setState(c.phase, round)
}

// poke asks the round loop to re-examine the state.
func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop drives the phases until the training is finished or ctx ends.
func (c *Coordinator) loop(ctx context.Context) error {
	full := 0 // disk-full failures in a row
	for {
		next, err := c.step(ctx)
		if err != nil {
			if !isDiskFull(err) {
				return err
			}
			full++
			next = c.pauseDiskFull(ctx, err, full)
		} else {
			full = 0
		}
		c.mu.Lock()
		done := c.phase == phaseFinished
		c.mu.Unlock()
		if done {
			return nil
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-c.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// step advances the state machine as far as it can now and returns how long
// until it should look again.
func (c *Coordinator) step(ctx context.Context) (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.now()
	const idle = time.Second
	switch c.phase {
	case phaseStats:
		if c.spec.Features == 0 {
			// A tensor-layout federation without feature columns: no
			// statistics to wait for (see fixScalingLocked).
			return 0, c.fixScalingLocked(ctx)
		}
		n := len(c.stats)
		if n == 0 {
			return idle, nil
		}
		wait := c.statsSince.Add(time.Duration(c.cfg.StatsTimeout)).Sub(now)
		if n < len(c.enrolled) && (n < c.cfg.MinParticipants || wait > 0) {
			return max(min(wait, idle), time.Millisecond), nil
		}
		if err := c.fixScalingLocked(ctx); err != nil {
			return 0, err
		}
		return 0, nil
	case phaseCohort:
		if c.disk.paused.Load() {
			return idle, nil // no new round while the disk is nearly full
		}
		if wait := c.retry.at.Sub(now); wait > 0 {
			return wait, nil // back off after a failed attempt
		}
		if c.checkWedgedLocked() {
			return idle, nil
		}
		n, able := 0, len(c.enrolled)-len(c.retry.sitOut)
		for name := range c.ready {
			if c.eligibleLocked(name) {
				n++
			}
		}
		if n == 0 {
			c.cohortSince = time.Time{}
			return idle, nil
		}
		if c.cohortSince.IsZero() {
			c.cohortSince = now
		}
		wait := c.cohortSince.Add(time.Duration(c.cfg.CohortTimeout)).Sub(now)
		if resume := c.retry.resume; resume != nil {
			// The attempt to resume opens with its own cohort, once all
			// of it is back (or the cohort timeout has passed).
			back := 0
			for _, name := range resume {
				if c.ready[name] > 0 {
					back++
				}
			}
			if back < len(resume) && wait > 0 {
				return max(min(wait, idle), time.Millisecond), nil
			}
		} else if n < able && (n < c.cfg.MinParticipants || wait > 0) {
			return max(min(wait, idle), time.Millisecond), nil
		}
		if stop, err := c.centralExhaustedLocked(ctx); stop || err != nil {
			return idle, err
		}
		if err := c.openRoundLocked(ctx, now); err != nil {
			return 0, err
		}
		return time.Until(c.round.deadline), nil
	case phaseTraining:
		r := c.round
		if r.closing {
			return idle, nil // being closed by another step (the loop runs one at a time)
		}
		if r.secure != nil {
			// Each bucket ends by its own deadlines and pokes the loop.
			if !r.secure.finished() {
				return idle, nil
			}
		} else {
			// Members that sit the round out send nothing: no need to
			// wait for them.
			if len(r.updates)+len(r.satOut) < len(r.cohort) && now.Before(r.deadline) {
				return r.deadline.Sub(now), nil
			}
			if len(r.updates) < c.cfg.MinParticipants {
				return 0, c.failRoundLocked(ctx, failure{failQuorum, fmt.Sprintf("%d updates before the deadline, %d needed", len(r.updates), c.cfg.MinParticipants)}, len(r.updates))
			}
		}
		if err := c.closeRoundLocked(ctx); err != nil {
			return 0, err
		}
		return 0, nil
	}
	return idle, nil
}

// failRoundLocked ends the open round without a model; the next attempt
// starts with a new cohort.
func (c *Coordinator) failRoundLocked(ctx context.Context, f failure, updates int) error {
	r := c.round
	c.opts.log.WarnContext(ctx, "round failed, retrying", "round", r.number, "attempt", r.attempt, "reason", f.reason)
	if err := c.record(ctx, event(audit.KindRoundFailed, r.number, audit.RoundFailed{Attempt: r.attempt, Reason: f.reason, Updates: updates})); err != nil {
		return err
	}
	c.metrics.roundsFailed.WithLabelValues(f.class).Inc()
	c.metrics.dropouts.Add(float64(r.dropouts()))
	c.noteFailedLocked(r, f.reason)
	c.attempt++
	c.noteFailedAttemptLocked(c.opts.now(), f.reason, r.cohort)
	if r.secure != nil {
		if err := c.saveSecureAttemptLocked(r.secure.plan.Start, nil); err != nil {
			return err
		}
	}
	c.dropSpill(ctx, r)
	c.round, c.phase, c.cohortSince = nil, phaseCohort, time.Time{}
	c.broadcastLocked()
	return nil
}

// scalingRule names the rule that combines the hospitals' statistics.
const scalingRule = "robust-median-clip-v1"

// noScalingRule is the scaling_fixed rule of a federation whose model has no
// feature columns: no statistics phase, an empty scaling.
const noScalingRule = "none-no-feature-columns"

func (c *Coordinator) fixScalingLocked(ctx context.Context) error {
	names := make([]string, 0, len(c.stats))
	for n := range c.stats {
		names = append(names, n)
	}
	slices.Sort(names)
	parties := make([]dataset.Party, len(names))
	var rows uint64
	for i, n := range names {
		parties[i] = dataset.Party{Name: n, Stats: c.stats[n]}
		rows += c.stats[n].Count // at most MaxSamples each: no overflow
	}
	var (
		sc      dataset.Scaling
		clipped []dataset.Clipped
		err     error
		rule    = scalingRule
	)
	if c.spec.Features == 0 {
		// A model without feature columns (a tensor layout whose
		// trainers read their own data, images for instance) has nothing
		// to standardize: the statistics phase is skipped, and the empty
		// scaling, recorded as such, is what round 0's manifest vouches for.
		rule = noScalingRule
	} else if sc, clipped, err = dataset.RobustScaling(parties); err != nil {
		return fmt.Errorf("derive feature scaling: %w", err)
	}
	ev := audit.ScalingFixed{Participants: names, Rows: rows, Rule: rule}
	for _, cl := range clipped {
		ev.Clipped = append(ev.Clipped, audit.ScalingClip{Participant: cl.Name, Features: cl.Features})
		c.opts.log.WarnContext(ctx, "feature statistics clipped to the federation's robust band",
			"participant", cl.Name, "features", cl.Features)
	}
	// The initial model's manifest vouches for the scaling too, so it is
	// signed now, and committed with the scaling.
	digest := sc.Digest()
	ev.SHA256 = hex.EncodeToString(digest[:])
	if err := c.record(ctx, event(audit.KindScalingFixed, 0, ev)); err != nil {
		return err
	}
	c.scaling = &sc
	// Round 0's manifest also vouches for the model as a safetensors
	// file, so it needs the values, read from the store once.
	initial := make([]float32, c.spec.NumParams())
	err = c.addStoredModel(initial, c.lastRound)
	var genesis []byte
	if err == nil {
		genesis, err = c.signLocked(ctx, nil, c.modelSum, initial)
	}
	if err == nil {
		err = c.store.saveScaling(sc, genesis)
	}
	if err != nil {
		c.scaling = nil
		return fmt.Errorf("save feature scaling: %w", err)
	}
	c.manifest = genesis
	if c.driftRefs, err = anomaly.References(parties); err != nil {
		// RobustScaling took all of them: it takes any subset.
		c.opts.log.Error("drift references: checking drift against the federation's scaling", "error", err)
	}
	c.stats = nil
	c.phase = phaseCohort
	c.opts.log.Info("feature scaling fixed", "participants", len(names), "rows", rows, "clipped", len(clipped))
	c.broadcastLocked()
	return nil
}

func (c *Coordinator) openRoundLocked(ctx context.Context, now time.Time) error {
	cohort := make([]string, 0, len(c.ready))
	for n := range c.ready {
		if c.eligibleLocked(n) {
			cohort = append(cohort, n)
		}
	}
	if c.retry.resume != nil {
		cohort = slices.Clone(c.retry.resume)
	}
	slices.Sort(cohort)
	number, deadline := c.lastRound+1, now.Add(time.Duration(c.cfg.RoundTimeout))
	md, err := manifest.Digest(c.manifest)
	if err != nil {
		return fmt.Errorf("manifest of round %d: %w", c.lastRound, err)
	}
	if err := c.record(ctx,
		event(audit.KindRoundOpened, number, audit.RoundOpened{Attempt: c.attempt, Deadline: deadline.UTC().Format(time.RFC3339Nano)}),
		event(audit.KindCohort, number, audit.Cohort{Attempt: c.attempt, Members: cohort}),
		event(audit.KindModelPublished, number, audit.ModelPublished{
			ModelRound: c.lastRound, ModelSHA256: hex.EncodeToString(c.modelSum[:]), ManifestSHA256: hex.EncodeToString(md[:]),
		}),
	); err != nil {
		return err
	}
	r := &openRound{
		number:    number,
		attempt:   c.attempt,
		opened:    now,
		deadline:  deadline,
		cohort:    cohort,
		updates:   map[string]*received{},
		receiving: map[string]bool{},
		refused:   map[string]string{},
		satOut:    map[string]string{},
	}
	if c.cfg.Secure {
		// Durable before anyone hears of the attempt: a restarted
		// coordinator offers the same sessions again (retry.go).
		if err := c.saveSecureAttemptLocked(md, cohort); err != nil {
			return err
		}
		c.retry.resume = nil
		if err := c.startSecureLocked(ctx, r, md); err != nil {
			return fmt.Errorf("lay out secure round %d: %w", number, err)
		}
	}
	if c.spills && r.secure == nil {
		if r.spill, err = createSpill(c.cfg.DataDir, number, c.attempt, cohort, c.spec.NumParams()); err != nil {
			return fmt.Errorf("round %d: %w", number, err)
		}
	}
	c.round = r
	c.phase = phaseTraining
	c.metrics.cohortSize.Set(float64(len(cohort)))
	c.noteCohortLocked(r)
	c.opts.log.Info("round opened", "round", c.round.number, "attempt", c.round.attempt, "cohort", cohort)
	c.broadcastLocked()
	return nil
}

// closeRoundLocked aggregates the open round and commits it. c.mu must be
// held; it is released while the slow part runs (the rule, the new model,
// the audit records, the signature and the commit: everything that needs
// no shared mutable state) and held again when it returns, so that the
// coordinator answers its RPCs while a rule runs over the whole cohort.
//
// Meanwhile the round is marked closing: no update, secure session or
// assignment is accepted for it any more, and it stays c.round, so the
// status page shows it. Nothing else replaces c.round or changes the last
// round, its model or its manifest while it is closing: only the round
// loop does, and the loop is here. The check after the lock is taken again
// keeps that promise honest.
func (c *Coordinator) closeRoundLocked(ctx context.Context) error {
	r := c.round
	rule := c.rule
	var (
		rec     RoundRecord
		updates []aggregation.Update
		names   []string
	)
	if r.secure != nil {
		var failed failure
		if rec, updates, names, failed = c.secureOutcomeLocked(ctx); failed.class != "" {
			return c.failRoundLocked(ctx, failed, len(names))
		}
		rule = c.secureRule
	} else {
		rec, updates, names = c.plainOutcomeLocked()
	}
	// Rules with randomness (bucketing) draw it from the signed manifest
	// the round started from: fixed, and checked by every participant,
	// before any update of the round existed, so the coordinator cannot
	// pick the split that suits it, and anyone holding the inputs can
	// recompute the round.
	start, err := manifest.Digest(c.manifest)
	if err != nil {
		return fmt.Errorf("manifest of round %d: %w", c.lastRound, err)
	}
	// From here on the round takes nothing more, and the updates belong to
	// this call alone (r.updates is only read, as empty, by the RPCs).
	r.closing = true
	n, received := len(updates), r.updates
	r.updates = nil
	job := closeJob{
		rule: aggregation.WithRand(rule, rand.NewChaCha8(RoundSeed(start, r.number, r.attempt))), ruleName: rule.Name(),
		round: r.number, attempt: r.attempt, startRound: c.lastRound, parent: c.manifest,
		rec: rec, updates: updates, names: names, received: received, plain: r.secure == nil, spill: r.spill,
	}
	c.broadcastLocked() // update streams still arriving end now
	c.mu.Unlock()
	out, err := c.runClose(ctx, &job)
	c.mu.Lock()
	if c.round != r || c.phase != phaseTraining {
		// Only the round loop replaces the round, and it is here.
		return fmt.Errorf("round %d attempt %d changed while it was closing", r.number, r.attempt)
	}
	if out.checkpoint != nil {
		c.noteCheckpointLocked(*out.checkpoint)
	}
	if err != nil {
		if out.aggregationFailed {
			return c.failRoundLocked(ctx, failure{failAggregation, "aggregation failed: " + err.Error()}, n)
		}
		return err
	}
	rec, flags := out.rec, out.flags
	if out.central != nil {
		c.central.ledger, c.central.spent = out.central.ledger, out.central.spent
	}
	c.notePrivacyLocked(out.manifest)
	c.manifest = out.manifest
	c.lastRound, c.modelSum, c.lastCohort = r.number, out.modelSum, r.cohort
	c.dropSpill(ctx, r)
	c.round, c.attempt, c.cohortSince = nil, 0, time.Time{}
	c.resetRetryLocked()
	c.phase = phaseCohort
	if c.lastRound >= uint64(c.cfg.Training.Rounds) {
		c.phase = phaseFinished
	}
	c.metrics.roundClosed(rec, flags)
	c.noteClosedLocked(rec, flags)
	c.opts.log.InfoContext(ctx, "round closed", "round", rec.Round, "participants", len(names),
		"dropped", rec.Dropped, "model_sha256", rec.ModelSHA256, "seconds", rec.Closed.Sub(rec.Opened).Seconds())
	c.broadcastLocked()
	if c.opts.observer != nil {
		c.opts.observer(RoundResult{Record: rec, Model: out.model, Spec: c.spec, Scaling: *c.scaling, Duration: rec.Closed.Sub(rec.Opened), Flags: slices.Clone(flags)})
	}
	return nil
}

// closeJob is what closing a round needs, copied out of the shared state
// under c.mu: the slices and maps in it are not changed by anyone while
// the round closes (start and parent are replaced, never mutated).
type closeJob struct {
	rule     aggregation.Rule // seeded for this attempt
	ruleName string
	round    uint64
	attempt  uint32
	// startRound is the round whose model (in the store) this round
	// started from; parent is its signed manifest.
	startRound uint64
	parent     []byte
	rec        RoundRecord
	updates    []aggregation.Update
	names      []string
	received   map[string]*received // plain rounds: the accepted updates
	plain      bool
	// spill holds the updates of a plain round that spills (their
	// Delta is nil); read only.
	spill *spillFile
}

// closeOutcome is what runClose made.
type closeOutcome struct {
	rec               RoundRecord
	flags             []audit.AnomalyFlagged
	model             []float32 // a copy of the new model, for the observer only
	modelSum          [32]byte
	manifest          []byte
	checkpoint        *audit.Checkpoint // the round's checkpoint, once taken
	aggregationFailed bool
	central           *centralOutcome // central DP's ledger after the round
}

// runClose aggregates a round and commits it, without c.mu: it reads only
// job, the configuration, and the coordinator's parts that lock
// themselves (the audit log, the store, the metrics).
func (c *Coordinator) runClose(ctx context.Context, job *closeJob) (closeOutcome, error) {
	var out closeOutcome
	// Every rule writes all of its dst (aggregation's
	// TestAggregateWritesAllOfDst), so the vector is not cleared first:
	// clearing 40 MB at 10 M parameters was 1.6 % of the coordinator's
	// CPU (docs/capacity.md).
	delta := c.vecs.get()
	central := job.plain && c.central != nil
	if central {
		c.central.clip(job.updates)
	}
	var (
		report aggregation.Report
		rows   *spillRows
		err    error
	)
	if job.spill != nil {
		// The updates are in the spill file: aggregate out of core.
		rows, err = job.spill.rows(job.names)
		if err == nil {
			report, err = aggregation.AggregateOutOfCore(job.rule, delta, job.updates, aggregation.OutOfCore{Rows: rows})
		}
	} else {
		report, err = job.rule.Aggregate(delta, job.updates)
	}
	if err != nil {
		// Every update was checked on arrival, so this is a bug or a rule
		// precondition the configuration did not catch: retry the round.
		// In a secure round, sessions that failed can leave too few
		// buckets for the rule.
		c.opts.log.ErrorContext(ctx, "aggregation failed", "round", job.round, "error", err)
		out.aggregationFailed = true
		c.vecs.put(delta)
		return out, err
	}
	// Anomaly flags compare each update with the others and with the
	// aggregate, so they are computed before the aggregate becomes the model.
	if job.plain {
		var src aggregation.Rows
		if rows != nil {
			src = rows
		}
		if out.flags, err = anomalyFlagsFrom(c.cfg.Anomaly, job.attempt, job.names, job.received, report, src, len(delta)); err != nil {
			c.opts.log.ErrorContext(ctx, "anomaly checks failed", "round", job.round, "error", err)
			out.aggregationFailed = true
			c.vecs.put(delta)
			return out, err
		}
	}
	if central {
		// The noise goes on the rule's output, the equal-weight mean of
		// the clipped updates, before it becomes the model.
		co, err := c.central.noise(delta, len(job.updates), len(job.rec.Cohort))
		if err != nil {
			return out, err
		}
		job.rec.Privacy, out.central = co.record, &co
	}
	if c.dp != nil {
		// Distributed DP: the hospitals' noise is in the unmasked sums;
		// the round's record is the account up to this round.
		if job.rec.Privacy, err = c.distributedPrivacy(job.round); err != nil {
			return out, err
		}
	}
	// The updates are needed no more.
	job.received, job.updates = nil, nil
	// Turn the aggregate into the next model in place, adding the model
	// the round started from as it is read from the store, chunk by
	// chunk: at no point are more than the updates and one model-sized
	// vector alive.
	if err := c.addStoredModel(delta, job.startRound); err != nil {
		c.vecs.put(delta)
		return out, fmt.Errorf("round %d: the model it started from: %w", job.round, err)
	}
	next := delta
	if c.opts.observer != nil {
		out.model = slices.Clone(next)
	}
	// The encoding is the vector itself (model.WireBytes), so committing
	// the model costs no second copy; next is not read as floats again.
	encoded := model.WireBytes(next)
	// The updates' vectors, and those kept for reuse within the round, go
	// to the collector and are collected now, before bbolt copies the
	// model, rather than when the soft memory limit forces it (the heap
	// holds only pointer-free vectors, so this costs a few milliseconds).
	// Kept for the next round, they would sit idle through its downloads,
	// whose buffers then came on top of them (buffers.go).
	c.vecs.trim(0)
	runtime.GC()
	sum := sha256.Sum256(encoded)
	rec := job.rec
	rec.Report = report
	rec.ModelSHA256 = hex.EncodeToString(sum[:])
	rec.Closed = c.opts.now()
	// The log records the verdict and the new model, the checkpoint covers
	// them and the manifest covers the checkpoint; all of it is durable
	// before the commit, and the commit before anyone hears of the round.
	reportJSON, err := json.Marshal(report)
	if err != nil {
		return out, err
	}
	entries := []audit.Entry{event(audit.KindAggregationReport, job.round, audit.AggregationReport{Attempt: job.attempt, Rule: job.ruleName, Report: reportJSON})}
	for _, f := range out.flags {
		entries = append(entries, event(audit.KindAnomalyFlagged, job.round, f))
	}
	entries = append(entries, event(audit.KindRoundClosed, job.round, audit.RoundClosed{Attempt: job.attempt, ModelSHA256: rec.ModelSHA256, Participants: job.names, Dropped: rec.Dropped}))
	if p := privacyRecord(&rec); p != nil {
		entries = append(entries, event(audit.KindPrivacySpent, job.round, privacySpentEvent(job.attempt, p)))
	}
	if err := c.record(ctx, entries...); err != nil {
		return out, err
	}
	for _, f := range out.flags {
		c.opts.log.WarnContext(ctx, "anomaly flagged", "round", job.round, "participant", f.Participant, "kind", f.Kind, "value", f.Value, "band", f.Band)
	}
	env, cp, err := c.sign(ctx, &rec, sum, next, job.parent)
	if cp != nil {
		out.checkpoint = cp
	}
	if err != nil {
		return out, err
	}
	if err := c.store.commitRound(rec, encoded, env, c.cfg.KeepModels); err != nil {
		return out, fmt.Errorf("commit round %d: %w", job.round, err)
	}
	out.rec, out.modelSum, out.manifest = rec, sum, env
	return out, nil
}

// addStoredModel adds round's model, read from the store a piece at a
// time, to v element by element, saturating at the largest float32 (each
// element gets the same single float32 addition it would get from the
// whole model in memory). Each piece (256 KiB, so that it stays in the
// cache) is checked for finiteness and added as it is decoded, in one pass
// over it; a non-finite stored value fails with ErrCorrupt and
// model.DecodeInto's error, and leaves v partly added to.
func (c *Coordinator) addStoredModel(v []float32, round uint64) error {
	const per = 64 << 10
	buf := make([]byte, 4*min(per, len(v)))
	for off := 0; off < len(v); off += per {
		end := min(off+per, len(v))
		b, x := buf[:4*(end-off)], v[off:end]
		if err := c.store.readModel(round, 4*int64(off), b); err != nil {
			return err
		}
		if !addDecoded(x, b) {
			err := model.DecodeInto(make([]float32, len(x)), b)
			return fmt.Errorf("%w: stored model of round %d: %v", ErrCorrupt, round, err)
		}
	}
	return nil
}

// addDecoded adds the wire bytes b (format v1, 4·len(x) of them) to x
// element by element, saturating at the largest float32, and reports
// whether every value of b was finite (when not, x holds unspecified
// values).
func addDecoded(x []float32, b []byte) bool {
	b = b[:4*len(x)]
	bad := uint32(0)
	for i := range x {
		u := binary.LittleEndian.Uint32(b[4*i:])
		bad |= (u & 0x7f800000) + 0x00800000 // bit 31 set iff the exponent is all ones
		x[i] = model.Saturate(x[i] + math.Float32frombits(u))
	}
	return bad&0x80000000 == 0
}

// plainOutcomeLocked gathers the open round's updates and its record.
func (c *Coordinator) plainOutcomeLocked() (RoundRecord, []aggregation.Update, []string) {
	r := c.round
	names := make([]string, 0, len(r.updates))
	for n := range r.updates {
		names = append(names, n)
	}
	slices.Sort(names)
	updates := make([]aggregation.Update, len(names))
	rec := RoundRecord{Round: r.number, Attempt: r.attempt, Opened: r.opened, Cohort: r.cohort}
	var hCount, hLoss, hAcc float64
	for i, n := range names {
		u := r.updates[n]
		updates[i] = aggregation.Update{ID: n, Delta: u.delta, Samples: u.samples}
		rec.Participants = append(rec.Participants, ParticipantRecord{
			Name: n, Samples: u.samples, Norm: u.norm, SHA256: hex.EncodeToString(u.sum[:]),
			HoldoutCount: u.holdout.GetCount(), HoldoutLoss: u.holdout.GetLoss(), HoldoutAccuracy: u.holdout.GetAccuracy(),
			DataSHA256: u.data, Privacy: u.privacy,
		})
		w := float64(u.holdout.GetCount())
		hCount += w
		hLoss += w * u.holdout.GetLoss()
		hAcc += w * u.holdout.GetAccuracy()
	}
	if hCount > 0 {
		rec.HoldoutLoss, rec.HoldoutAccuracy = hLoss/hCount, hAcc/hCount
	}
	for _, n := range r.cohort {
		switch {
		case r.updates[n] != nil:
		case r.satOut[n] != "":
			// It said why it sent nothing; an update it tried to send
			// anyway was refused for that.
			rec.Dropped = append(rec.Dropped, n)
			rec.SatOut = append(rec.SatOut, RefusedUpdate{Name: n, Reason: r.satOut[n]})
		case r.refused[n] != "":
			rec.Refused = append(rec.Refused, RefusedUpdate{Name: n, Reason: r.refused[n]})
		default:
			rec.Dropped = append(rec.Dropped, n)
		}
	}
	return rec, updates, names
}

// RoundSeed is the seed of the aggregation's randomness (the bucket split)
// in a round attempt: a hash of the digest of the signed manifest the round
// started from (the manifest of round-1), the round and the attempt.
func RoundSeed(startManifest [32]byte, round uint64, attempt uint32) [32]byte {
	b := append([]byte("fedguard round seed v2\x00"), startManifest[:]...)
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.BigEndian.AppendUint32(b, attempt)
	return sha256.Sum256(b)
}

// assignmentLocked is the caller's ticket for the open round.
func (c *Coordinator) assignmentLocked() *fedguardv1.RoundAssignment {
	r := c.round
	a := &fedguardv1.RoundAssignment{
		Round:       r.number,
		Attempt:     r.attempt,
		Model:       c.specProto,
		Plan:        &fedguardv1.TrainingPlan{LocalEpochs: uint32(c.cfg.Training.LocalEpochs), LearningRate: c.cfg.Training.LearningRate, BatchSize: uint32(c.cfg.Training.BatchSize), L2: c.cfg.Training.L2},
		Deadline:    timestampOf(r.deadline),
		ModelSha256: c.modelSum[:],
		Manifest:    c.manifest,
		Seed:        c.cfg.Seed ^ (r.number * 0x9e3779b97f4a7c15) ^ uint64(r.attempt),
	}
	if c.scaling != nil {
		a.Scaling = &fedguardv1.FeatureScaling{Mean: c.scaling.Mean, Std: c.scaling.Std}
	}
	if r.secure != nil {
		a.Secure = r.secure.plan.Proto()
	}
	return a
}

// identity returns the verified caller identity put in ctx by the
// interceptors.
func identity(ctx context.Context) certs.Identity {
	id, _ := ctx.Value(identityKey{}).(certs.Identity)
	return id
}

type identityKey struct{}
