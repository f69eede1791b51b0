package participant

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
)

// Ops is every effect an Agent has on the world besides its Trainer and
// its metrics listener: the connection to the coordinator, the state
// file, the clock of its retries and their randomness. [DefaultOps] is
// the production one; tests give [WithOps] another, to run the agent's
// logic over an in-process connection or on a clock they advance (as x/mod's
// sumdb client takes its ClientOps).
type Ops interface {
	// Dial returns a connection to the coordinator at target. opts are
	// the agent's dial options: mutual TLS (when Config.TLS is set),
	// keepalive, reconnection backoff, message sizes, then WithDialOptions.
	Dial(target string, opts ...grpc.DialOption) (Conn, error)
	// LoadState reads the state file at path (Config.StateFile, never
	// empty): a State with no accepted manifest and no reveals when it
	// does not exist.
	LoadState(path string) (State, error)
	// SaveState replaces the state file at path, durably and atomically;
	// st.Accepted is not nil.
	SaveState(path string, st State) error
	// Now is the clock of the retry logic: when the coordinator last
	// answered, and when to give up on it (Config.GiveUpAfter). Call
	// deadlines stay on the real clock, as contexts do.
	Now() time.Time
	// Sleep waits d, or until ctx ends (then it returns ctx.Err()): the
	// backoff between retries.
	Sleep(ctx context.Context, d time.Duration) error
	// Float64 returns a uniform number in [0, 1): the backoff's jitter.
	Float64() float64
}

// Conn is a connection to the coordinator, as grpc.ClientConn is.
type Conn interface {
	grpc.ClientConnInterface
	Close() error
}

// DefaultOps is the Ops of an Agent made without WithOps: gRPC over the
// network, the state file on disk, the system clock and math/rand/v2.
var DefaultOps Ops = defaultOps{}

type defaultOps struct{}

var _ Ops = defaultOps{}

func (defaultOps) Dial(target string, opts ...grpc.DialOption) (Conn, error) {
	return grpc.NewClient(target, opts...)
}

func (defaultOps) LoadState(path string) (State, error) { return loadState(path) }

func (defaultOps) SaveState(path string, st State) error { return saveState(path, st) }

func (defaultOps) Now() time.Time { return time.Now() }

func (defaultOps) Sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, d) }

func (defaultOps) Float64() float64 { return rand.Float64() }

// WithOps replaces the agent's Ops (default [DefaultOps]). With an Ops
// other than DefaultOps, Config.TLS may be nil: the Ops's Dial then
// brings its own transport (a test's in-process connection). Secure rounds
// still need the client certificate of a mutual TLS connection.
func WithOps(ops Ops) Option {
	return func(a *Agent) { a.ops = ops }
}
