package participant

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// CodeTrainer is a [Trainer] that runs code a federation can pin by
// digest (a manifest's trainer_digest) and a hospital can approve
// (ExecTrainer.Approved). The agent asks for the digest before every
// round, after the round's manifest is verified, and refuses to train when
// the manifest pins another one.
type CodeTrainer interface {
	Trainer
	// CodeDigest returns the digest ([TrainerDigest]) of the code the
	// next Train runs. When the hospital's own allow-list does not list
	// it, the error wraps [ErrTrainerNotApproved].
	CodeDigest() (string, error)
}

var _ CodeTrainer = (*ExecTrainer)(nil)

// CodeDigest implements [CodeTrainer]: the digest of Code (or of the
// program), checked against Approved.
func (t *ExecTrainer) CodeDigest() (string, error) {
	if len(t.Command) == 0 {
		return "", errors.New("participant: ExecTrainer.Command is empty")
	}
	return t.approve()
}

// checkTrainer checks, before a round trains on the model of manifest m,
// the trainer's code against the hospital's allow-list and against the
// digest m pins (TrainerDigest). Either refusal is reported to the
// coordinator, which records it in the audit log (manifest_refused, reason
// trainer_not_approved or trainer_mismatch), logged, and stops the agent,
// as a refused manifest does: an operator must fix the code, the list or
// the pin. A built-in trainer has no code digest, so a pin refuses it.
// Failing to read the code sits the round out (a *TrainerError, as Train
// would return).
func (a *Agent) checkTrainer(ctx context.Context, client fedguardv1.CoordinatorServiceClient, m manifest.Round) error {
	ct, ok := a.cfg.Trainer.(CodeTrainer)
	if !ok && m.TrainerDigest == "" {
		return nil
	}
	digest := ""
	if ok {
		d, err := ct.CodeDigest()
		switch {
		case errors.Is(err, ErrTrainerNotApproved):
			return a.refuseTrainer(ctx, client, err)
		case err != nil:
			return &TrainerError{Reason: TrainerCannotStart, Err: err}
		}
		digest = d
	}
	if m.TrainerDigest == "" || digest == m.TrainerDigest {
		return nil
	}
	have := "this agent trains with the built-in trainer, which has no code digest"
	if ok {
		have = "this hospital's trainer code has digest " + digest
	}
	return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonTrainerMismatch, Round: m.Round,
		Detail: fmt.Sprintf("the manifest of round %d pins trainer %s; %s", m.Round, m.TrainerDigest, have)})
}

// refuseTrainer reports err, a trainer the hospital's allow-list does not
// approve, as a refusal (see checkTrainer) and returns the error that
// stops the agent. The refusal names the last manifest the agent
// accepted, 0 before any.
func (a *Agent) refuseTrainer(ctx context.Context, client fedguardv1.CoordinatorServiceClient, err error) error {
	var round uint64
	if a.accepted != nil {
		round = a.accepted.Round
	}
	return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonTrainerNotApproved, Round: round, Detail: err.Error(), Err: err})
}
