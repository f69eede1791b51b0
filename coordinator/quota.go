package coordinator

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// Per-identity limits on what a client's calls make the coordinator write.
//
// Every event a client can cause (a validation report, statistics, a
// manifest refusal, a refused update, a refused call, a refused
// connection) counts against its identity's quota of
// AuditEventsPerMinute per window of a minute; connections refused before
// any identity was verified share one quota. Within the quota, a refusal
// is one warning in the text log and one audit event. Beyond it, nothing
// is written for it: a report or statistics are refused with
// ResourceExhausted (nothing happened, so nothing goes unrecorded), and
// every such event is counted, by kind. The counts are written as one
// events_suppressed event (and one warning) per identity when its window
// ends, and for every open window when the coordinator stops, so each
// refusal is on the record exactly once: alone or in a count. One
// identity can thus append at most AuditEventsPerMinute events plus one
// summary a minute, whatever it sends.
const (
	// AuditEventsPerMinute is how many audit events (and refusal warnings)
	// one identity's calls may cause per minute.
	AuditEventsPerMinute = 30
	// quotaWindow is the length of a quota window.
	quotaWindow = time.Minute
	// quotaTick is how often ended windows are written out and the free
	// space is checked.
	quotaTick = 5 * time.Second
)

// submitUpdateMethod records its own refusals (update_refused).
const submitUpdateMethod = fedguardv1.CoordinatorService_SubmitUpdate_FullMethodName

// anonymous is the quota key of refusals without a verified identity.
const anonymous = ""

// window is one identity's current quota window.
type window struct {
	start      time.Time
	n          int
	suppressed map[string]uint64
	total      uint64
}

// eventQuota counts each identity's audited events per window.
type eventQuota struct {
	mu      sync.Mutex
	windows map[string]*window
	// ended are summaries of windows that ended before they were written.
	ended []audit.EventsSuppressed
}

// summary is w's suppression record for who, up to until.
func (w *window) summary(who string, until time.Time) audit.EventsSuppressed {
	return audit.EventsSuppressed{
		Participant: who, Kinds: maps.Clone(w.suppressed), Total: w.total,
		Since: w.start.UTC().Format(time.RFC3339Nano), Until: until.UTC().Format(time.RFC3339Nano),
	}
}

// current returns who's window at now, starting a new one (and keeping
// the old one's counts for the next write) when it ended.
func (q *eventQuota) current(who string, now time.Time) *window {
	if q.windows == nil {
		q.windows = map[string]*window{}
	}
	w := q.windows[who]
	if w != nil && now.Sub(w.start) < quotaWindow {
		return w
	}
	if w != nil && w.total > 0 {
		q.keep(w.summary(who, w.start.Add(quotaWindow)))
	}
	w = &window{start: now, suppressed: map[string]uint64{}}
	q.windows[who] = w
	return w
}

// keep adds an ended window's summary to those to write, merged with an
// earlier one of the same identity not yet written (while the disk is
// nearly full nothing is written), so that they stay one per identity.
func (q *eventQuota) keep(sum audit.EventsSuppressed) {
	for i := range q.ended {
		e := &q.ended[i]
		if e.Participant != sum.Participant {
			continue
		}
		for k, n := range sum.Kinds {
			e.Kinds[k] += n
		}
		e.Total += sum.Total
		e.Until = sum.Until
		return
	}
	q.ended = append(q.ended, sum)
}

// take counts one event of kind caused by who and reports whether it may
// be written; when not, it is counted as suppressed.
func (q *eventQuota) take(who, kind string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.current(who, now)
	if w.n < AuditEventsPerMinute {
		w.n++
		return true
	}
	w.suppressed[kind]++
	w.total++
	return false
}

// suppress counts one event of kind caused by who as suppressed, whatever
// the quota (while the disk is nearly full).
func (q *eventQuota) suppress(who, kind string, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.current(who, now)
	w.suppressed[kind]++
	w.total++
}

// due returns the summaries to write at now: windows that ended, or, with
// all, every window with suppressed events. Idle windows are dropped, so
// the map holds only identities active in the last minute.
func (q *eventQuota) due(now time.Time, all bool) []audit.EventsSuppressed {
	q.mu.Lock()
	defer q.mu.Unlock()
	for who, w := range q.windows {
		ended := now.Sub(w.start) >= quotaWindow
		if !ended && !all {
			continue
		}
		if w.total > 0 {
			until := now
			if ended {
				until = w.start.Add(quotaWindow)
			}
			q.keep(w.summary(who, until))
		}
		delete(q.windows, who)
	}
	out := q.ended
	q.ended = nil
	slices.SortFunc(out, func(a, b audit.EventsSuppressed) int {
		if c := strings.Compare(a.Since, b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Participant, b.Participant)
	})
	return out
}

// quotaError is a call refused because its identity's quota is used up.
// It was counted when it was refused, so the refusal interceptor leaves
// it alone.
type quotaError struct{ st *status.Status }

func (e *quotaError) Error() string              { return e.st.Err().Error() }
func (e *quotaError) GRPCStatus() *status.Status { return e.st }

// admit takes one event of kind from who's quota, or returns the
// ResourceExhausted error that refuses the call.
func (c *Coordinator) admit(who, kind string) error {
	if c.quota.take(who, kind, c.opts.now()) {
		return nil
	}
	c.metrics.eventsSuppressed.WithLabelValues(kind).Inc()
	return &quotaError{status.Newf(codes.ResourceExhausted,
		"%s caused more than %d audited events this minute; try again in a minute", who, AuditEventsPerMinute)}
}

// refusal puts one refusal on the record, within who's quota: a warning
// (msg with attrs) in the text log and entry in the audit log. Beyond the
// quota, or while the disk is nearly full, it is counted for the
// window's events_suppressed instead.
func (c *Coordinator) refusal(ctx context.Context, who string, entry audit.Entry, msg string, attrs ...any) {
	now := c.opts.now()
	if c.disk.paused.Load() {
		c.quota.suppress(who, entry.Kind, now)
		c.metrics.eventsSuppressed.WithLabelValues(entry.Kind).Inc()
		return
	}
	if !c.quota.take(who, entry.Kind, now) {
		c.metrics.eventsSuppressed.WithLabelValues(entry.Kind).Inc()
		return
	}
	c.opts.log.WarnContext(ctx, msg, attrs...)
	// A failure is logged by record; the caller hears its refusal either
	// way.
	_ = c.record(ctx, entry)
}

// flushSuppressed writes the suppression counts of ended windows (all:
// of every window) to the text log and the audit log. While the disk is
// nearly full only a stop writes them.
func (c *Coordinator) flushSuppressed(ctx context.Context, all bool) error {
	if !all && c.disk.paused.Load() {
		return nil
	}
	var errs []error
	for _, s := range c.quota.due(c.opts.now(), all) {
		who := s.Participant
		if who == anonymous {
			who = "(no verified identity)"
		}
		c.opts.log.WarnContext(ctx, "events beyond the per-identity limit were not logged one by one",
			"participant", who, "suppressed", s.Total, "kinds", s.Kinds, "since", s.Since, "until", s.Until)
		if err := c.record(ctx, event(audit.KindEventsSuppressed, c.lastRoundNow(), s)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refusalCode reports whether a call that ended with code was refused (as
// opposed to cancelled, timed out, or failed on the coordinator's side).
func refusalCode(code codes.Code) bool {
	switch code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.ResourceExhausted, codes.NotFound, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}

// callRefused records the refusal of a call to method that ended with
// err, unless it was no refusal or was counted already (quotaError).
func (c *Coordinator) callRefused(ctx context.Context, method string, err error) {
	if err == nil || errors.As(err, new(*quotaError)) {
		return
	}
	st := status.Convert(err)
	if !refusalCode(st.Code()) {
		return
	}
	who := identity(ctx).Name
	actor := who
	if actor == anonymous {
		actor = audit.ActorCoordinator
	}
	c.refusal(ctx, who, audit.Entry{Kind: audit.KindCallRefused, Actor: actor, Round: c.lastRoundNow(), Payload: audit.CallRefused{
		Method: method, Code: st.Code().String(), Reason: st.Message(),
	}}, "call refused", "participant", who, "method", method, "code", st.Code().String(), "error", st.Message())
}
