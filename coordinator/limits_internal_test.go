package coordinator

import (
	"testing"

	"github.com/fedguard/fedguard/wire"
)

// TestReceiveWindows: the uploads of all enrolled participants together
// have at most windowBudget in the coordinator's receive windows, each
// between minStreamWindow and the wire's 2 MiB, in whole 64 KiB, and a
// connection's window is twice its stream's.
func TestReceiveWindows(t *testing.T) {
	for _, tc := range []struct {
		enrolled int
		stream   int32
	}{
		{0, wire.StreamWindow},
		{1, wire.StreamWindow},
		{10, wire.StreamWindow},
		{24, wire.StreamWindow},
		{30, 1600 << 10},
		{100, minStreamWindow},
		{10000, minStreamWindow},
	} {
		stream, conn := receiveWindows(tc.enrolled)
		if stream != tc.stream || conn != 2*tc.stream {
			t.Errorf("receiveWindows(%d) = %d, %d; want %d, %d", tc.enrolled, stream, conn, tc.stream, 2*tc.stream)
		}
		if n := int64(max(tc.enrolled, 1)); int64(stream)*n > windowBudget && stream != minStreamWindow {
			t.Errorf("receiveWindows(%d): %d × %d bytes is over the budget of %d", tc.enrolled, n, stream, windowBudget)
		}
	}
}
