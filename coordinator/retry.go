package coordinator

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Retries, in detail. A round attempt that fails is retried as a new
// attempt, never at once: the next one opens no earlier than
// retryDelay(n) after the n-th failure in a row of the round, exponential
// from retryBackoffMin, capped at retryBackoffMax, drawn from the upper
// half of that ("equal jitter"). A coordinator whose attempts fail for a
// reason no retry fixes thus makes a handful of attempts an hour, not 50 a
// second, and the audit log grows by one attempt's events each time.
//
// A secure round has one such reason: a participant that revealed its
// shares for a session starting from the round's model declines every
// other session from it (secureround.DeclineAlreadyRevealed, see package
// participant). The coordinator leaves such a participant out of the
// round's later attempts (retryState.sitOut): it would only decline again,
// and its decline would be audited again. When fewer than
// MinParticipants enrolled participants are left, the round is wedged:
// the coordinator opens no attempt at all, says so on the status page
// (Status.Wedged), in fedguard_round_wedged and in the log, and waits for
// an operator. Nothing is appended to the audit log meanwhile. The wedge
// clears when the coordinator restarts (the participants decline once
// more, each audited once) or the enrolment changes.
//
// Any other failure that repeats, identically, stallAfter times in a row
// with the same cohort (the same reason, say too few updates because one
// member never sends its own) wedges the round the same way: no attempt
// opens until a participant joins again (a restarted hospital, a network
// back) or the coordinator restarts; each such Join allows one more
// attempt. So the audit log records at most stallAfter attempts of a
// failure that repeats, plus one per change, instead of one per retry.
//
// A coordinator crash does not wedge a secure round. Before it tells
// anyone of a secure attempt it records the attempt and its cohort in its
// state database (keyOpenSecure); a restarted coordinator offers that same
// attempt to that same cohort, hence the same sessions, and the
// participants resume them where they were (see package participant,
// "Resuming a session after a coordinator crash"): no participant has to
// decline, and none reveals anything twice.
const (
	retryBackoffMin = time.Second
	retryBackoffMax = 5 * time.Minute
	stallAfter      = 3
)

// keyOpenSecure, in the state bucket, is the secure attempt of the round
// after the last closed one: ["round", "attempt", "start manifest (hex)",
// cohort...]. With a cohort the attempt was opened (and may have
// sessions to resume); without, it is the attempt the round opens next.
var keyOpenSecure = []byte("open_secure")

// retryState is what the coordinator knows about the failed attempts of
// the round after the last closed one; c.mu guards it. The zero value is
// a round with no failed attempt.
type retryState struct {
	failures int       // attempts of the round that failed in a row
	at       time.Time // the next attempt opens no earlier
	reason   string    // why the last one failed
	cohort   []string  // the last failed attempt's cohort
	same     int       // failures in a row with that reason and cohort
	stalled  bool      // same reached stallAfter: no attempt until a Join
	// sitOut holds the participants that declined the round as already
	// revealed: later attempts leave them out.
	sitOut map[string]bool
	// resume is the cohort of the secure attempt c.attempt that a previous
	// process opened and did not end: the next attempt reopens it.
	resume []string
	// wedged says why no attempt can open; empty when one can.
	wedged string
}

// retryDelay is the wait after the n-th failed attempt in a row (n ≥ 1).
func retryDelay(n int) time.Duration {
	d := retryBackoffMin << min(n-1, 20)
	d = min(d, retryBackoffMax)
	return d/2 + rand.N(d/2+1)
}

// noteFailedAttemptLocked schedules the next attempt after a failure of
// an attempt with cohort.
func (c *Coordinator) noteFailedAttemptLocked(now time.Time, reason string, cohort []string) {
	c.retry.failures++
	if reason == c.retry.reason && slices.Equal(cohort, c.retry.cohort) {
		c.retry.same++
	} else {
		c.retry.same = 1
	}
	c.retry.reason, c.retry.cohort = reason, slices.Clone(cohort)
	c.retry.stalled = c.retry.same >= stallAfter
	d := retryDelay(c.retry.failures)
	c.retry.at = now.Add(d)
	c.retry.resume = nil
	c.metrics.failedAttempts.Set(float64(c.retry.failures))
	c.opts.log.Info("next attempt scheduled", "round", c.lastRound+1, "attempt", c.attempt, "failed_in_a_row", c.retry.failures, "in", d.Round(time.Millisecond).String())
}

// unstallLocked lets one more attempt open after a stall: a participant
// joined, something changed.
func (c *Coordinator) unstallLocked() {
	if c.retry.stalled {
		c.retry.stalled = false
		c.retry.same = stallAfter - 1
	}
}

// resetRetryLocked forgets the failures when a round closes.
func (c *Coordinator) resetRetryLocked() {
	c.retry = retryState{}
	c.metrics.failedAttempts.Set(0)
	c.metrics.wedged.Set(0)
}

// sitOutLocked leaves name out of the later attempts of round: it
// declined it as already revealed.
func (c *Coordinator) sitOutLocked(name string, round uint64) {
	if round != c.lastRound+1 || !c.enrolled[name] {
		return
	}
	if c.retry.sitOut == nil {
		c.retry.sitOut = map[string]bool{}
	}
	c.retry.sitOut[name] = true
}

// eligibleLocked reports whether name may be in the next attempt's cohort.
func (c *Coordinator) eligibleLocked(name string) bool { return !c.retry.sitOut[name] }

// checkWedgedLocked sets c.retry.wedged (and the metric) from who is left
// to take part, and reports whether the round is wedged.
func (c *Coordinator) checkWedgedLocked() bool {
	able := 0
	for n := range c.enrolled {
		if c.eligibleLocked(n) {
			able++
		}
	}
	was := c.retry.wedged
	c.retry.wedged = ""
	if able < c.cfg.MinParticipants {
		out := slices.Sorted(func(yield func(string) bool) {
			for n := range c.retry.sitOut {
				if !yield(n) {
					return
				}
			}
		})
		c.retry.wedged = fmt.Sprintf("round %d cannot open: %v revealed their shares for another session starting from its model and decline every other, "+
			"which leaves %d enrolled participants, %d needed", c.lastRound+1, out, able, c.cfg.MinParticipants)
	}
	if c.retry.wedged == "" && c.retry.stalled {
		c.retry.wedged = fmt.Sprintf("the last %d attempts of round %d failed the same way with the same cohort (%s): "+
			"no attempt opens until a participant joins again or the coordinator restarts", c.retry.same, c.lastRound+1, c.retry.reason)
	}
	if c.retry.wedged != "" && c.retry.wedged != was {
		c.opts.log.Error("round wedged: no attempt will open", "round", c.lastRound+1, "reason", c.retry.wedged)
	}
	v := 0.0
	if c.retry.wedged != "" {
		v = 1
	}
	c.metrics.wedged.Set(v)
	return c.retry.wedged != ""
}

// saveSecureAttemptLocked records, before anyone hears of it, that the
// secure attempt c.attempt of the next round starts from start with cohort
// (none: it is only the next attempt's number).
func (c *Coordinator) saveSecureAttemptLocked(start [32]byte, cohort []string) error {
	rec := append([]string{strconv.FormatUint(c.lastRound+1, 10), strconv.FormatUint(uint64(c.attempt), 10), hex.EncodeToString(start[:])}, cohort...)
	if err := c.store.putStateList(keyOpenSecure, rec); err != nil {
		return fmt.Errorf("record secure attempt %d of round %d: %w", c.attempt, c.lastRound+1, err)
	}
	return nil
}

// loadSecureAttempt restores, at start-up, the attempt a previous process
// recorded for the next round if it starts from the same manifest (start):
// its number and, if it was opened, its cohort to resume.
func (c *Coordinator) loadSecureAttempt(start [32]byte) error {
	rec, err := c.store.stateList(keyOpenSecure)
	if err != nil || len(rec) == 0 {
		return err
	}
	if len(rec) < 3 {
		return fmt.Errorf("%w: state/%s holds %d fields, want at least 3", ErrCorrupt, keyOpenSecure, len(rec))
	}
	round, err1 := strconv.ParseUint(rec[0], 10, 64)
	attempt, err2 := strconv.ParseUint(rec[1], 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: state/%s: round %q attempt %q", ErrCorrupt, keyOpenSecure, rec[0], rec[1])
	}
	if round != c.lastRound+1 || rec[2] != hex.EncodeToString(start[:]) {
		return nil // of a round that closed since
	}
	c.attempt = uint32(attempt)
	cohort := rec[3:]
	if len(cohort) == 0 {
		return nil
	}
	for i, n := range cohort {
		if !c.enrolled[n] || i > 0 && n <= cohort[i-1] {
			// The enrolment changed: the attempt cannot be offered again.
			c.attempt++
			c.opts.log.Warn("secure attempt not resumed: its cohort is no longer enrolled", "round", round, "attempt", attempt, "cohort", cohort)
			return nil
		}
	}
	c.retry.resume = slices.Clone(cohort)
	c.opts.log.Info("secure attempt to resume", "round", round, "attempt", attempt, "cohort", cohort)
	return nil
}
