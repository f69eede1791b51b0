//go:build cgo

package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// PKCS #11 3.0 EdDSA constants, which github.com/miekg/pkcs11 v1.1.2 does
// not define (PKCS #11 Specification v3.0, section 2.3.5).
const (
	ckkECEdwards           = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x00001057 // CKM_EDDSA
)

// Token is an open, logged-in PKCS #11 token. Its keys sign only while it
// is open. A Token is safe for concurrent use.
type Token struct {
	cfg  PKCS11
	ctx  *crypto11.Context // sessions, login, ECDSA
	slot uint

	// The EdDSA path: a second handle on the same module (the library is
	// loaded and initialised once per process, and crypto11's context
	// keeps it so while the Token is open) and one session, serialised by
	// mu. Manifests and checkpoints are signed a few times a round, so one
	// session is plenty.
	mu      sync.Mutex
	raw     *pkcs11.Ctx
	session pkcs11.SessionHandle
	closed  bool
}

// Open loads cfg.Module, finds the token labelled cfg.TokenLabel and logs
// in with the user PIN (see [PKCS11]). The errors name what is wrong:
// [ErrModule], [ErrToken], [ErrPIN]. Close the Token when its keys are no
// longer needed.
func Open(cfg PKCS11) (*Token, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, fmt.Errorf("%w %s: %w (install the token's PKCS #11 library, for SoftHSM2 the Debian package softhsm2)", ErrModule, cfg.Module, err)
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, err
	}
	// Check the token label first with a bare handle: crypto11 reports a
	// missing token without the label.
	raw := pkcs11.New(cfg.Module)
	if raw == nil {
		return nil, fmt.Errorf("%w %s: the library does not load as a PKCS #11 module", ErrModule, cfg.Module)
	}
	t := &Token{cfg: cfg, raw: raw}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: pin})
	if err != nil {
		raw.Destroy()
		var p11 pkcs11.Error
		switch {
		case errors.As(err, &p11) && (p11 == pkcs11.CKR_PIN_INCORRECT || p11 == pkcs11.CKR_PIN_LEN_RANGE || p11 == pkcs11.CKR_PIN_INVALID):
			return nil, fmt.Errorf("%w: token %q refused the PIN (%v)", ErrPIN, cfg.TokenLabel, p11)
		case errors.As(err, &p11) && p11 == pkcs11.CKR_PIN_LOCKED:
			return nil, fmt.Errorf("%w: token %q: the user PIN is locked after too many wrong ones", ErrPIN, cfg.TokenLabel)
		case err.Error() == "could not find PKCS#11 token":
			return nil, fmt.Errorf("%w: module %s offers no initialised token labelled %q", ErrToken, cfg.Module, cfg.TokenLabel)
		}
		return nil, fmt.Errorf("%w %s, token %q: %w", ErrModule, cfg.Module, cfg.TokenLabel, err)
	}
	t.ctx = ctx
	// crypto11 initialised the module; this second handle shares it.
	if err := raw.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Close()
		return nil, fmt.Errorf("%w %s: initialise: %w", ErrModule, cfg.Module, err)
	}
	if t.slot, err = findSlot(raw, cfg.TokenLabel); err != nil {
		t.Close()
		return nil, err
	}
	if t.session, err = raw.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION); err != nil {
		t.session = 0
		t.Close()
		return nil, fmt.Errorf("keystore: token %q: open session: %w", cfg.TokenLabel, err)
	}
	// Login state is per application, so crypto11's login covers this
	// session too; logging in again is harmless.
	if err := raw.Login(t.session, pkcs11.CKU_USER, pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Close()
		return nil, fmt.Errorf("%w: token %q: %w", ErrPIN, cfg.TokenLabel, err)
	}
	return t, nil
}

// findSlot returns the slot holding the token labelled label.
func findSlot(raw *pkcs11.Ctx, label string) (uint, error) {
	slots, err := raw.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("keystore: list slots: %w", err)
	}
	for _, s := range slots {
		info, err := raw.GetTokenInfo(s)
		if err == nil && info.Label == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: no token labelled %q", ErrToken, label)
}

// Close logs out and releases the module. Keys from the Token stop
// working.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	if t.session != 0 {
		_ = t.raw.CloseSession(t.session)
	}
	// Never Finalize through raw: crypto11 owns the module's
	// initialisation and finalises it when its last context closes.
	t.raw.Destroy()
	if t.ctx != nil {
		return t.ctx.Close()
	}
	return nil
}

// Label returns the token's label, for messages.
func (t *Token) Label() string { return t.cfg.TokenLabel }

// ECDSA returns the ECDSA P-256 key pair labelled label. Its Sign takes a
// SHA-256 digest and returns an ASN.1 DER signature, as x509 expects.
func (t *Token) ECDSA(label string) (crypto.Signer, error) {
	ks, err := t.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: find ECDSA key %q: %w", t.cfg.TokenLabel, label, err)
	}
	if err := t.oneLabelled(len(ks), "key pair", label); err != nil {
		return nil, err
	}
	k := ks[0]
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("keystore: token %q: key %q is a %T, want ECDSA P-256", t.cfg.TokenLabel, label, k.Public())
	}
	return k, nil
}

// GenerateECDSA makes an ECDSA P-256 key pair labelled label on the token
// (sensitive, not extractable). It refuses a label already in use, so an
// existing key is never shadowed.
func (t *Token) GenerateECDSA(label string) (crypto.Signer, error) {
	id, err := t.newKeyID(label)
	if err != nil {
		return nil, err
	}
	k, err := t.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), elliptic.P256())
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: generate ECDSA P-256 key %q: %w", t.cfg.TokenLabel, label, err)
	}
	return k, nil
}

// oneLabelled checks that exactly one object, of n found, is a what
// labelled label: none is ErrKeyNotFound, more is an ambiguous label.
func (t *Token) oneLabelled(n int, what, label string) error {
	switch n {
	case 0:
		return fmt.Errorf("%w: token %q has no %s labelled %q", ErrKeyNotFound, t.cfg.TokenLabel, what, label)
	case 1:
		return nil
	default:
		return fmt.Errorf("keystore: token %q has %d %ss labelled %q; labels must be unique", t.cfg.TokenLabel, n, what, label)
	}
}

// newKeyID checks that label is free and returns a random CKA_ID for a
// new key pair labelled label.
func (t *Token) newKeyID(label string) ([]byte, error) {
	if err := t.labelFree(label); err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	if _, err := crand.Read(id); err != nil {
		return nil, err
	}
	return id, nil
}

// labelFree refuses a label that any private key on the token has.
func (t *Token) labelFree(label string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errClosed
	}
	hs, err := t.find(pkcs11.CKO_PRIVATE_KEY, nil, label)
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return fmt.Errorf("keystore: token %q already holds a key labelled %q; refusing to make another", t.cfg.TokenLabel, label)
	}
	return nil
}

var errClosed = errors.New("keystore: token is closed")

// find returns the objects of class (and key type, if not nil) labelled
// label. t.mu must be held.
func (t *Token) find(class uint, keyType *uint, label string) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if keyType != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, *keyType))
	}
	if err := t.raw.FindObjectsInit(t.session, tmpl); err != nil {
		return nil, fmt.Errorf("keystore: token %q: find %q: %w", t.cfg.TokenLabel, label, err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := t.raw.FindObjects(t.session, 16)
		if err != nil {
			_ = t.raw.FindObjectsFinal(t.session)
			return nil, fmt.Errorf("keystore: token %q: find %q: %w", t.cfg.TokenLabel, label, err)
		}
		all = append(all, hs...)
		if len(hs) == 0 || len(all) > 16 {
			break
		}
	}
	if err := t.raw.FindObjectsFinal(t.session); err != nil {
		return nil, fmt.Errorf("keystore: token %q: find %q: %w", t.cfg.TokenLabel, label, err)
	}
	return all, nil
}

// Ed25519Key is an Ed25519 private key on a token. It implements
// crypto.Signer for pure Ed25519 (opts.HashFunc() == 0), like
// ed25519.PrivateKey, and produces the same signatures: Ed25519 is
// deterministic.
type Ed25519Key struct {
	t      *Token
	handle pkcs11.ObjectHandle
	pub    ed25519.PublicKey
}

var _ crypto.Signer = (*Ed25519Key)(nil)

// Public returns the ed25519.PublicKey.
func (k *Ed25519Key) Public() crypto.PublicKey { return k.pub }

// Sign signs message with CKM_EDDSA inside the token. rand is ignored.
// Only pure Ed25519 is offered: opts must not name a hash (Ed25519ph) or a
// context (Ed25519ctx). The signature is checked against the public key
// before it is returned, so a token that answers with another key's
// signature is caught here rather than by every hospital.
func (k *Ed25519Key) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("keystore: Ed25519 key: only pure Ed25519 is supported (opts.HashFunc() must be 0)")
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return nil, errors.New("keystore: Ed25519 key: Ed25519ctx is not supported")
	}
	t := k.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	if err := t.raw.SignInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, k.handle); err != nil {
		return nil, fmt.Errorf("keystore: token %q: EdDSA sign: %w", t.cfg.TokenLabel, err)
	}
	sig, err := t.raw.Sign(t.session, message)
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: EdDSA sign: %w", t.cfg.TokenLabel, err)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.pub, message, sig) {
		return nil, fmt.Errorf("keystore: token %q: EdDSA signature does not verify under the key's public key", t.cfg.TokenLabel)
	}
	return sig, nil
}

// Ed25519 returns the Ed25519 key pair labelled label: exactly one
// private key of type CKK_EC_EDWARDS with that label, and its public key.
func (t *Token) Ed25519(label string) (*Ed25519Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	kt := uint(ckkECEdwards)
	privs, err := t.find(pkcs11.CKO_PRIVATE_KEY, &kt, label)
	if err != nil {
		return nil, err
	}
	if err := t.oneLabelled(len(privs), "Ed25519 private key", label); err != nil {
		return nil, err
	}
	pubs, err := t.find(pkcs11.CKO_PUBLIC_KEY, &kt, label)
	if err != nil {
		return nil, err
	}
	if len(pubs) != 1 {
		return nil, fmt.Errorf("%w: token %q has %d Ed25519 public keys labelled %q, want 1", ErrKeyNotFound, t.cfg.TokenLabel, len(pubs), label)
	}
	pub, err := t.ed25519Public(pubs[0])
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: key %q: %w", t.cfg.TokenLabel, label, err)
	}
	return &Ed25519Key{t: t, handle: privs[0], pub: pub}, nil
}

// ed25519Public reads the public key's CKA_EC_PARAMS and CKA_EC_POINT.
func (t *Token) ed25519Public(h pkcs11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := t.raw.GetAttributeValue(t.session, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	return parseEd25519Point(attrs[0].Value, attrs[1].Value)
}

// GenerateEd25519 makes an Ed25519 key pair labelled label on the token
// with CKM_EC_EDWARDS_KEY_PAIR_GEN: the private key sensitive and not
// extractable. It refuses a label already in use.
func (t *Token) GenerateEd25519(label string) (*Ed25519Key, error) {
	id, err := t.newKeyID(label)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	pubT := edwardsTemplate(pkcs11.CKO_PUBLIC_KEY, label, id,
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oidEd25519))
	privT := edwardsTemplate(pkcs11.CKO_PRIVATE_KEY, label, id,
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false))
	// A generating session must be read-write.
	s, err := t.raw.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: open session: %w", t.cfg.TokenLabel, err)
	}
	defer t.raw.CloseSession(s)
	pubH, privH, err := t.raw.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT)
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: generate Ed25519 key %q: %w", t.cfg.TokenLabel, label, err)
	}
	pub, err := t.ed25519Public(pubH)
	if err != nil {
		return nil, fmt.Errorf("keystore: token %q: generated key %q: %w", t.cfg.TokenLabel, label, err)
	}
	return &Ed25519Key{t: t, handle: privH, pub: pub}, nil
}

// edwardsTemplate is the template of one half (class) of an Ed25519 key
// pair kept on the token, labelled label with CKA_ID id, with the
// attributes of that half.
func edwardsTemplate(class uint, label string, id []byte, half ...*pkcs11.Attribute) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}, half...)
}
