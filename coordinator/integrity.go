package coordinator

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/fedguard/fedguard/internal/buildinfo"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/safetensors"
)

// AuditFile is the audit log's name inside the data directory. The
// coordinator's signing keys sit beside it, named as package manifest says
// (signing.key, signing.pub, cosign.pub).
const AuditFile = "audit.db"

// AuditOrigin is the origin line of the federation's audit checkpoints and
// the name of the note key that signs them.
func AuditOrigin(federation string) string { return "fedguard/" + federation }

// version is the coordinator's build, for the audit record.
func version() string { return buildinfo.Read().Short() }

// openIntegrity loads the signing keys (making them for a new federation)
// and opens the audit log. Keys are never made for a federation that has
// signed manifests already: its hospitals pinned the old public key and
// would refuse everything a new one signs, so a lost key is an error that
// names the fix.
//
// A missing audit log is made only for a federation being created (init)
// that has no signed round yet; otherwise it is an error.
//
// With cfg.PKCS11 set the Ed25519 key is on a token (see openSigner); the
// returned closer releases it, and is nil for file keys.
func openIntegrity(cfg Config, now func() time.Time, signed, init bool) (signer *manifest.Signer, keys io.Closer, _ *audit.Log, err error) {
	signer, keys, err = openSigner(cfg, signed, init)
	if err != nil {
		if signed && !tokenAccess(err) {
			return nil, nil, nil, fmt.Errorf("signing keys of a federation with signed rounds (restore them from a backup: hospitals pinned their public key): %w", err)
		}
		return nil, nil, nil, fmt.Errorf("signing keys: %w", err)
	}
	defer func() {
		if err != nil && keys != nil {
			keys.Close()
		}
	}()
	origin := AuditOrigin(cfg.Federation)
	ns, err := signer.NoteSigner(origin)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("signing keys: %w", err)
	}
	path := filepath.Join(cfg.DataDir, AuditFile)
	if _, err := os.Stat(path); err != nil && (signed || !init) {
		// A fresh log would silently start a second history.
		if signed {
			return nil, nil, nil, fmt.Errorf("%w: the audit log of a federation with signed rounds is missing (%v); %s", ErrDataMismatch, err, restoreAdvice)
		}
		return nil, nil, nil, fmt.Errorf("%w: the audit log is missing (%v); %s (if this federation never fixed its scaling, --init makes a new log)", ErrDataMismatch, err, restoreAdvice)
	}
	log, err := audit.Open(path, audit.Options{Origin: origin, Signer: ns, Now: now})
	if err != nil {
		return nil, nil, nil, err
	}
	return signer, keys, log, nil
}

// PublicKeys returns the keys participants pin to verify round manifests.
func (c *Coordinator) PublicKeys() manifest.PublicKeys { return c.signer.Public() }

// record appends entries to the audit log and returns once they are
// durable. The caller acknowledges the action only after a nil return, so
// an action the log could not record does not happen. The append outlives
// a cancelled request: an event half-way to disk is finished, not dropped.
func (c *Coordinator) record(ctx context.Context, entries ...audit.Entry) error {
	began := time.Now()
	_, err := c.audit.Append(context.WithoutCancel(ctx), entries...)
	c.metrics.auditAppend.Observe(time.Since(began).Seconds())
	if err != nil {
		c.opts.log.ErrorContext(ctx, "audit log append failed", "error", err, "kind", entries[0].Kind)
		if isDiskFull(err) {
			c.pauseForDisk(ctx, err) // whoever wrote: calls are refused from now on
		}
		return fmt.Errorf("audit log: %w", err)
	}
	for _, e := range entries {
		c.metrics.auditEvents.WithLabelValues(e.Kind).Inc()
	}
	return nil
}

// event is an audit entry caused by the coordinator itself.
func event(kind string, round uint64, payload any) audit.Entry {
	return audit.Entry{Kind: kind, Actor: audit.ActorCoordinator, Round: round, Payload: payload}
}

// recordStart writes what a starting coordinator runs with: its version,
// its effective configuration's digest and the enrolment, with the
// changes since the enrolment last recorded.
func (c *Coordinator) recordStart(ctx context.Context) error {
	cfgJSON, err := json.Marshal(c.cfg)
	if err != nil {
		return err
	}
	agg, err := json.Marshal(c.cfg.Aggregation)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cfgJSON)
	entries := []audit.Entry{
		event(audit.KindCoordinatorStarted, c.lastRound, audit.CoordinatorStarted{Version: version(), Federation: c.cfg.Federation, LastRound: c.lastRound}),
		event(audit.KindConfigLoaded, c.lastRound, audit.ConfigLoaded{
			SHA256: hex.EncodeToString(sum[:]), MinParticipants: c.cfg.MinParticipants,
			Rounds: c.cfg.Training.Rounds, Aggregation: agg, Secure: c.cfg.Secure,
		}),
	}
	before, err := c.store.stateList(keyEnrolled)
	if err != nil {
		return err
	}
	now := slices.Sorted(slices.Values(c.cfg.Enrolled))
	if !slices.Equal(before, now) {
		e := audit.Enrolment{Enrolled: now}
		for _, n := range now {
			if !slices.Contains(before, n) {
				e.Added = append(e.Added, n)
			}
		}
		for _, n := range before {
			if !slices.Contains(now, n) {
				e.Removed = append(e.Removed, n)
			}
		}
		entries = append(entries, event(audit.KindEnrolment, c.lastRound, e))
	}
	if err := c.record(ctx, entries...); err != nil {
		return err
	}
	return c.store.putStateList(keyEnrolled, now)
}

// recordRevocations writes a certificate_revoked event for every serial on
// crl not recorded before (at start-up and after each reload).
func (c *Coordinator) recordRevocations(ctx context.Context, crl *certs.RevocationList) error {
	c.revokedMu.Lock()
	defer c.revokedMu.Unlock()
	before, err := c.store.stateList(keyRevoked)
	if err != nil {
		return err
	}
	var entries []audit.Entry
	all := slices.Clone(before)
	for _, r := range crl.Revoked() {
		if slices.Contains(before, r.Serial) {
			continue
		}
		all = append(all, r.Serial)
		entries = append(entries, event(audit.KindCertificateRevoked, c.lastRoundNow(),
			audit.CertificateRevoked{Serial: r.Serial, RevokedAt: r.At.UTC().Format(time.RFC3339)}))
	}
	if len(entries) == 0 {
		return nil
	}
	if err := c.record(ctx, entries...); err != nil {
		return err
	}
	slices.Sort(all)
	return c.store.putStateList(keyRevoked, all)
}

// certSeen remembers the certificates this process has recorded, so each
// appears once per start in the log (certificate_accepted).
type certSeen struct {
	mu   sync.Mutex
	seen map[string]bool
}

// recordCertificate writes certificate_accepted for the first call made
// with leaf since the coordinator started.
func (c *Coordinator) recordCertificate(ctx context.Context, name string, leaf *x509.Certificate) error {
	serial := leaf.SerialNumber.Text(16)
	c.certs.mu.Lock()
	defer c.certs.mu.Unlock()
	if c.certs.seen[serial] {
		return nil
	}
	fp := sha256.Sum256(leaf.Raw)
	err := c.record(ctx, audit.Entry{Kind: audit.KindCertificateAccepted, Actor: name, Round: c.lastRoundNow(), Payload: audit.CertificateAccepted{
		Participant: name, Serial: serial, SHA256: hex.EncodeToString(fp[:]),
		NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339), NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
	}})
	if err != nil {
		return err
	}
	c.certs.seen[serial] = true
	return nil
}

// manifestFor builds the manifest predicate of the model after round rec
// (rec == nil: the initial model, round 0).
// ruleName is the rule that forms the model: in a secure round the rule
// over bucket means.
func (c *Coordinator) ruleName() string {
	if c.cfg.Secure {
		return c.secureRule.Name()
	}
	return c.rule.Name()
}

func (c *Coordinator) manifestFor(rec *RoundRecord, modelSum [32]byte, params []float32, parent []byte, cp audit.Checkpoint) (manifest.Round, error) {
	spec, err := json.Marshal(c.cfg.Model)
	if err != nil {
		return manifest.Round{}, err
	}
	agg, err := json.Marshal(c.cfg.Aggregation)
	if err != nil {
		return manifest.Round{}, err
	}
	scaling := c.scaling.Digest()
	m := manifest.Round{
		Federation:    c.cfg.Federation,
		ModelSHA256:   hex.EncodeToString(modelSum[:]),
		NumParams:     uint64(c.spec.NumParams()),
		ModelSpec:     spec,
		ScalingSHA256: hex.EncodeToString(scaling[:]),
		Rule:          c.ruleName(),
		Parameters:    agg,
		Included:      []manifest.Contributor{},
		Excluded:      []manifest.Exclusion{},
		Checkpoint: &manifest.Checkpoint{
			Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Note: string(cp.Note),
		},
		Closed:        c.opts.now().UTC(),
		TrainerDigest: c.cfg.TrainerDigest,
	}
	if parent != nil {
		d, err := manifest.Digest(parent)
		if err != nil {
			return manifest.Round{}, fmt.Errorf("parent manifest: %w", err)
		}
		m.Parent = hex.EncodeToString(d[:])
	}
	if rec != nil {
		m.Round, m.Attempt, m.Closed = rec.Round, rec.Attempt, rec.Closed.UTC()
	}
	if err := c.addModelFile(&m, params); err != nil {
		return manifest.Round{}, err
	}
	if rec == nil {
		return m, nil
	}
	m.Privacy = privacyRecord(rec)
	m.KeyRotations = c.rotationsAfter(rec.Round - 1)
	entries := map[string]int{}
	for i, e := range rec.Report.Entries {
		entries[e.ID] = i
	}
	rule := c.ruleName()
	m.Secure = c.cfg.Secure
	for _, p := range rec.Participants {
		key := p.Name
		if p.Bucket > 0 {
			key = bucketID(p.Bucket - 1)
		}
		i, ok := entries[key]
		if ok && !rec.Report.Entries[i].Selected {
			m.Excluded = append(m.Excluded, manifest.Exclusion{Name: p.Name, Reason: "excluded by " + rule + ": " + rec.Report.Entries[i].Reason})
			continue
		}
		ct := manifest.Contributor{Name: p.Name, Samples: p.Samples, UpdateSHA256: p.SHA256, Norm: p.Norm, Bucket: p.Bucket, DataSHA256: p.DataSHA256}
		if ok {
			ct.Weight = rec.Report.Entries[i].Weight
		}
		m.Included = append(m.Included, ct)
	}
	dropped := map[string]string{}
	for _, b := range rec.Secure {
		for n, why := range b.Dropped {
			dropped[n] = fmt.Sprintf("left the secure session of bucket %d at %s", b.Bucket, why)
		}
	}
	for _, s := range rec.SatOut {
		dropped[s.Name] = "sat out: " + s.Reason
	}
	for _, n := range rec.Dropped {
		why := cmp.Or(dropped[n], "no update before the deadline")
		m.Excluded = append(m.Excluded, manifest.Exclusion{Name: n, Reason: why})
	}
	for _, r := range rec.Refused {
		m.Excluded = append(m.Excluded, manifest.Exclusion{Name: r.Name, Reason: "update refused: " + r.Reason})
	}
	return m, nil
}

// addModelFile sets m.SafetensorsSHA256, the digest of the model params as
// the safetensors file `fedguard model export` writes for m (the model's
// layout, manifest.ModelFileMetadata), so that the deployable file is a
// subject of the manifest. It streams the encoding into the hash.
func (c *Coordinator) addModelFile(m *manifest.Round, params []float32) error {
	layout, err := safetensors.SpecLayout(c.spec)
	if err != nil {
		return fmt.Errorf("model file of round %d: %w", m.Round, err)
	}
	meta, err := manifest.ModelFileMetadata(*m)
	if err != nil {
		return fmt.Errorf("model file of round %d: %w", m.Round, err)
	}
	h := sha256.New()
	if err := safetensors.Write(h, layout, params, meta); err != nil {
		return fmt.Errorf("model file of round %d: %w", m.Round, err)
	}
	m.SafetensorsSHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// signLocked checkpoints the audit log, signs the manifest of the model
// params with digest modelSum (rec == nil: the initial model) and records
// it. It returns the envelope, to be committed with the model.
func (c *Coordinator) signLocked(ctx context.Context, rec *RoundRecord, modelSum [32]byte, params []float32) ([]byte, error) {
	var parent []byte
	if rec != nil {
		parent = c.manifest
	}
	env, cp, err := c.sign(ctx, rec, modelSum, params, parent)
	if cp != nil {
		c.noteCheckpointLocked(*cp)
	}
	return env, err
}

// sign is signLocked for a caller that does not hold c.mu (the round
// close): parent is the previous round's manifest, and the checkpoint it
// took, if it got so far, is returned for the status page.
func (c *Coordinator) sign(ctx context.Context, rec *RoundRecord, modelSum [32]byte, params []float32, parent []byte) ([]byte, *audit.Checkpoint, error) {
	cp, err := c.audit.Checkpoint()
	if err != nil {
		return nil, nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	m, err := c.manifestFor(rec, modelSum, params, parent, cp)
	if err != nil {
		return nil, &cp, err
	}
	env, digest, err := manifest.Sign(c.signer, m)
	if err != nil {
		return nil, &cp, fmt.Errorf("sign manifest of round %d: %w", m.Round, err)
	}
	if err := c.record(ctx, event(audit.KindManifestSigned, m.Round, audit.ManifestSigned{
		SHA256: hex.EncodeToString(digest[:]), Envelope: env,
	})); err != nil {
		return nil, &cp, err
	}
	return env, &cp, nil
}
